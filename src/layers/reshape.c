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
    float p = nd->arg.dropout.p;
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
    const float *m = nd->arg.dropout.p > 0 && nd->last_train ? nd->priv : NULL; /* eval forward: the identity */
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

static const ee_layer_key dropout_keys[] = {
    EE_KEY("p", EE_KEY_FLOAT, dropout.p, 0, 0.999, 0.5),
};
const ee_layer_ops ee_dropout_ops = {
    .name = "dropout", .keys = dropout_keys, .nkeys = EE_NKEYS(dropout_keys), .nin = 1, .shape = keep_shape,
    .forward = dropout_forward, .backward = dropout_backward, .count = zero_count, .release = ee_node_release_scratch,
};
const ee_layer_ops ee_flatten_ops = {
    .name = "flatten", .nin = 1, .shape = flatten_shape, .forward = flatten_forward, .backward = flatten_backward,
    .count = zero_count,
};
