/* linear.c: fully connected layer y = x W^T + b on (n, in) vectors; W is (out, in) as in PyTorch.
 * The input must be a vector per sample (after gap or flatten). GEMMs run through oneDNN's sgemm. */
#include "init.h"
#include <string.h>

static ee_status linear_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)net;
    if (nd->ins.h != 1 || nd->ins.w != 1)
        return ee_fail(ctx, EE_ERR_FORMAT, "linear '%s' needs a vector input (put gap or flatten before it), got %dx%dx%d",
                       nd->name, nd->ins.c, nd->ins.h, nd->ins.w);
    double weights = (double)nd->arg.linear.out * nd->ins.c;
    if (weights > EE_MAX_LAYER_PARAMS)
        return ee_fail(ctx, EE_ERR_FORMAT, "linear '%s': %d x %d = %.4g weights, more than the %.0f a layer may have",
                       nd->name, nd->arg.linear.out, nd->ins.c, weights, EE_MAX_LAYER_PARAMS);
    nd->out.c = nd->arg.linear.out;
    nd->out.h = nd->out.w = 1;
    nd->p_len = (size_t)nd->arg.linear.out * nd->ins.c + (nd->arg.linear.bias ? nd->arg.linear.out : 0);
    return EE_OK;
}
static void linear_tensors(ee_net *net, ee_node *nd) {
    ee_net_add_tensor(net, nd, "weight", 0, nd->p_off, 2, nd->arg.linear.out, nd->ins.c, 0, 0);
    if (nd->arg.linear.bias) ee_net_add_tensor(net, nd, "bias", 0, nd->p_off + (size_t)nd->arg.linear.out * nd->ins.c, 1, nd->arg.linear.out, 0, 0, 0);
}
static void linear_init(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    float *w = net->params + nd->p_off;
    size_t nw = (size_t)nd->arg.linear.out * nd->ins.c;
    ee_init_weights(ctx, nd->init, w, nw, nd->ins.c, nd->arg.linear.out, nd->arg.linear.bias ? w + nw : NULL, nd->arg.linear.out);
}
static void linear_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    double in = nd->ins.c, out = nd->arg.linear.out;
    *macs = in * out;
    *flops = 2 * in * out + (nd->arg.linear.bias ? out : 0);
    *prof = (2 * in - 1) * out; /* the reference profiler: bias not counted */
}
static ee_status linear_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)train;
    int in = nd->ins.c, out = nd->arg.linear.out;
    const float *x = ee_node_input(net, nd, 0), *w = net->params + nd->p_off, *b = w + (size_t)in * out;
    ee_status s = ee_sgemm(ctx, 'N', 'T', n, out, in, 1.0f, x, in, w, in, 0.0f, nd->y, out);
    if (s) return s;
    if (nd->arg.linear.bias)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) nd->y[(size_t)i * out + j] += b[j];
    return EE_OK;
}
static ee_status linear_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    int in = nd->ins.c, out = nd->arg.linear.out;
    const float *x = ee_node_input(net, nd, 0), *w = net->params + nd->p_off, *dy = nd->dy;
    float *dw = net->grads + nd->p_off, *db = dw + (size_t)in * out;
    ee_status s = ee_sgemm(ctx, 'T', 'N', out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
    if (s) return s;
    if (nd->arg.linear.bias) {
        for (int j = 0; j < out; j++) db[j] = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) db[j] += dy[(size_t)i * out + j];
    }
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    return dx ? ee_sgemm(ctx, 'N', 'N', n, in, out, 1.0f, dy, out, w, in, acc ? 1.0f : 0.0f, dx, in) : EE_OK;
}

static const ee_layer_key linear_keys[] = {
    EE_KEY_REQ("out", EE_KEY_INT, linear.out, 1, 1 << 24),
    EE_KEY("bias", EE_KEY_INT, linear.bias, 0, 1, 1),
    EE_KEY("init", EE_KEY_INIT, any, 0, 0, 0),
};
const ee_layer_ops ee_linear_ops = {
    .name = "linear", .keys = linear_keys, .nkeys = EE_NKEYS(linear_keys), .nin = 1,
    .shape = linear_shape, .tensors = linear_tensors, .init = linear_init, .forward = linear_forward,
    .backward = linear_backward, .count = linear_count,
};
