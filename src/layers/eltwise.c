/* eltwise.c: ReLU and the residual add: elementwise layers over NHWC activations. */
#include "../internal.h"

/* dst (+)= src * (y > 0), or dst (+)= src */
static void add_or_set(float *dst, const float *src, const float *mask, size_t len, int acc) {
    /* four branch-free loops, so that each vectorises */
    if (mask && acc) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < len; i++) dst[i] += mask[i] > 0 ? src[i] : 0.0f;
    } else if (mask) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < len; i++) dst[i] = mask[i] > 0 ? src[i] : 0.0f;
    } else if (acc) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < len; i++) dst[i] += src[i];
    } else {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < len; i++) dst[i] = src[i];
    }
}

static ee_status same_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    nd->out = nd->ins;
    if (nd->kind == EE_KIND_ADD) {
        ee_shape b = ee_node_input_shape(net, nd, 1);
        if (b.c != nd->ins.c || b.h != nd->ins.h || b.w != nd->ins.w)
            return ee_fail(ctx, EE_ERR_FORMAT, "add '%s': input shapes %dx%dx%d and %dx%dx%d differ", nd->name,
                           nd->ins.c, nd->ins.h, nd->ins.w, b.c, b.h, b.w);
    }
    return EE_OK;
}
static void elt_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    *macs = 0;
    *flops = (double)ee_shape_size(nd->out);
    *prof = nd->kind == EE_KIND_RELU ? *flops : 0; /* the reference profiler ignores residual adds */
}

static ee_status relu_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)ctx; (void)train;
    const float *x = ee_node_input(net, nd, 0);
    size_t len = ee_shape_size(nd->out) * n;
    float *y = nd->y;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) y[i] = x[i] > 0 ? x[i] : 0;
    return EE_OK;
}
static ee_status relu_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    const ee_node *bn = nd->tf_bn >= 0 ? &net->nodes[nd->tf_bn] : NULL;
    if (bn && nd->tf_bn > net->bwd_stop && bn->tf_on && !bn->frozen && nd->last_train)
        return ee_bn_chain_backward(ctx, net, nd, n); /* with its BN's sums (and its add's split) */
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (dx) add_or_set(dx, nd->dy, nd->y, ee_shape_size(nd->out) * n, acc);
    return EE_OK;
}

static ee_status add_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)ctx; (void)train;
    const float *a = ee_node_input(net, nd, 0), *b = ee_node_input(net, nd, 1);
    size_t len = ee_shape_size(nd->out) * n;
    float *y = nd->y;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) y[i] = a[i] + b[i];
    return EE_OK;
}
static ee_status add_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    for (int k = 0; k < 2; k++) {
        int acc;
        float *dx = ee_node_input_grad(net, nd, k, &acc);
        if (dx) add_or_set(dx, nd->dy, NULL, ee_shape_size(nd->out) * n, acc);
    }
    return EE_OK;
}

const ee_layer_ops ee_relu_ops = {
    .name = "relu", .nin = 1, .shape = same_shape, .forward = relu_forward, .backward = relu_backward,
    .count = elt_count,
};
const ee_layer_ops ee_add_ops = {
    .name = "add", .nin = 2, .shape = same_shape, .forward = add_forward, .backward = add_backward,
    .count = elt_count,
};
