/* reshape.c: dropout (inverted, mask kept for backward) and flatten, which turns an NHWC map into a vector in
 * PyTorch's (c, h, w) order so that weights after it match PyTorch's. */
#include "../internal.h"
#include <stdlib.h>
#include <string.h>

static ee_status keep_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)ctx; (void)net;
    nd->out = nd->ins;
    return EE_OK;
}
static ee_status flatten_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)ctx; (void)net;
    nd->out.c = (int)ee_shape_size(nd->ins);
    nd->out.h = nd->out.w = 1;
    return EE_OK;
}
static void zero_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net; (void)nd;
    *macs = *flops = *prof = 0;
}

/* per-sample splitmix streams seeded from the context: the mask does not depend on the thread count */
static inline uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static ee_status dropout_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    const float *x = ee_node_input(net, nd, 0);
    size_t per = ee_shape_size(nd->out), len = per * n;
    float p = nd->f[0];
    if (!train || p == 0) {
        memcpy(nd->y, x, len * sizeof(float));
        return EE_OK;
    }
    float *mask = ee_node_scratch(nd, len * sizeof(float));
    if (!mask) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    uint64_t base = ee_rng_next(ctx);
    float scale = 1.0f / (1.0f - p);
    uint64_t thr = (uint64_t)((double)p * 18446744073709551616.0);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        uint64_t s = base ^ ((uint64_t)b * 0xD1B54A32D192ED03ull);
        float *m = mask + (size_t)b * per;
        const float *xb = x + (size_t)b * per;
        float *yb = nd->y + (size_t)b * per;
        for (size_t i = 0; i < per; i++) {
            m[i] = mix(&s) < thr ? 0.0f : scale;
            yb[i] = xb[i] * m[i];
        }
    }
    return EE_OK;
}
static ee_status dropout_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (!dx) return EE_OK;
    size_t len = ee_shape_size(nd->out) * n;
    const float *m = nd->f[0] > 0 && nd->last_train ? nd->priv : NULL; /* eval forward: the identity */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) {
        float v = m ? nd->dy[i] * m[i] : nd->dy[i];
        dx[i] = acc ? dx[i] + v : v;
    }
    return EE_OK;
}

static ee_status flatten_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)ctx; (void)train;
    const float *x = ee_node_input(net, nd, 0);
    int C = nd->ins.c, P = nd->ins.h * nd->ins.w;
    for (int b = 0; b < n; b++)
        for (int q = 0; q < P; q++)
            for (int c = 0; c < C; c++) nd->y[(size_t)b * C * P + (size_t)c * P + q] = x[((size_t)b * P + q) * C + c];
    return EE_OK;
}
static ee_status flatten_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (!dx) return EE_OK;
    int C = nd->ins.c, P = nd->ins.h * nd->ins.w;
    for (int b = 0; b < n; b++)
        for (int q = 0; q < P; q++)
            for (int c = 0; c < C; c++) {
                float v = nd->dy[(size_t)b * C * P + (size_t)c * P + q];
                float *d = &dx[((size_t)b * P + q) * C + c];
                *d = acc ? *d + v : v;
            }
    return EE_OK;
}

extern const ee_layer_ops ee_conv_ops, ee_bn_ops, ee_relu_ops, ee_maxpool_ops, ee_avgpool_ops, ee_gap_ops,
    ee_linear_ops, ee_add_ops, ee_mixpool_ops;
static const ee_layer_ops ee_dropout_ops = {"dropout", keep_shape, NULL, NULL, dropout_forward, dropout_backward,
                                            zero_count, ee_node_release_scratch};
static const ee_layer_ops ee_flatten_ops = {"flatten", flatten_shape, NULL, NULL, flatten_forward, flatten_backward,
                                            zero_count, NULL};

/* the layer table: one line per kind, in ee_kind order */
const ee_layer_ops *const ee_layers[EE_KIND_COUNT] = {
    &ee_conv_ops, &ee_bn_ops, &ee_relu_ops, &ee_maxpool_ops, &ee_avgpool_ops,
    &ee_gap_ops, &ee_linear_ops, &ee_dropout_ops, &ee_flatten_ops, &ee_add_ops, &ee_mixpool_ops,
};
