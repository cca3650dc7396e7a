/* uncertainty.c: four measures of how unsure an exit is, from its logits: the largest softmax probability, the
 * entropy of the softmax (nats), the margin between the two largest probabilities, and the entropy of the
 * squared distribution p^2 / sum p^2. They are the inputs of JEI-DNN's gates; a linear layer on them is a gate
 * that reads the exit's answer instead of its features. The node passes no gradient back to the logits (the
 * features are detached, as in JEI-DNN): a gate cannot make its classifier more or less sure. */
#include "../internal.h"
#include <string.h>

static ee_status unc_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)net;
    if (nd->ins.h != 1 || nd->ins.w != 1 || nd->ins.c < 2)
        return ee_fail(ctx, EE_ERR_ARG, "uncertainty '%s': needs a vector of at least 2 logits, not %dx%dx%d", nd->name,
                       nd->ins.c, nd->ins.h, nd->ins.w);
    nd->out.c = EE_GATE_FEATURES;
    nd->out.h = nd->out.w = 1;
    return EE_OK;
}

static ee_status unc_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)ctx; (void)train;
    const float *x = ee_node_input(net, nd, 0);
    int k = nd->ins.c;
#pragma omp parallel for schedule(static) if (n > 64)
    for (int b = 0; b < n; b++) ee_uncertainty_features(x + (size_t)b * k, k, 1.0f, nd->y + (size_t)b * EE_GATE_FEATURES);
    return EE_OK;
}

/* detached: nothing flows back; a buffer this node would be first to write is cleared */
static ee_status unc_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (dx && !acc) memset(dx, 0, sizeof(float) * (size_t)n * nd->ins.c);
    return EE_OK;
}

static void unc_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    *macs = 0;
    *flops = *prof = 8.0 * nd->ins.c; /* two exponentials, two logarithms and a few sums per class */
}

const ee_layer_ops ee_uncertainty_ops = {
    .name = "uncertainty", .nin = 1, .shape = unc_shape, .forward = unc_forward, .backward = unc_backward,
    .count = unc_count,
};
