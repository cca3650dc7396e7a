/* pool.c: max pooling, average pooling (zero padding counted, as PyTorch's default), global average pooling and
 * global max pooling (`gmp`: the max over time of text CNNs) over NHWC activations. Max pooling keeps the argmax
 * of each output for the backward pass (the gradient goes to the first maximum, as PyTorch's). */
#include "../internal.h"
#include <float.h>
#include <stdlib.h>
#include <string.h>

static ee_status pool_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)ctx; (void)net;
    int k = nd->arg.pool.k, s = nd->arg.pool.stride, p = nd->arg.pool.pad;
    if (p * 2 > k) return ee_fail(ctx, EE_ERR_FORMAT, "pool '%s': pad %d exceeds half the kernel %d", nd->name, p, k);
    nd->out.c = nd->ins.c;
    nd->out.h = nd->ins.h + 2 * p < k ? 0 : (nd->ins.h + 2 * p - k) / s + 1;
    nd->out.w = nd->ins.w + 2 * p < k ? 0 : (nd->ins.w + 2 * p - k) / s + 1;
    return EE_OK;
}
static ee_status gap_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)ctx; (void)net;
    nd->out.c = nd->ins.c;
    nd->out.h = nd->out.w = 1;
    return EE_OK;
}
static void pool_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    double outs = (double)ee_shape_size(nd->out), k = nd->arg.pool.k;
    *macs = 0;
    if (nd->kind == EE_KIND_GAP) {
        *flops = (double)ee_shape_size(nd->ins);
        *prof = outs * nd->ins.h; /* the reference's AvgPool(H): k = H (an int) per output, not H^2 */
    } else {
        *flops = outs * k * k;
        /* the reference profiler counts (k-1) per output for max, k for avg: the kernel is an int, not k^2 */
        *prof = outs * (nd->kind == EE_KIND_MAXPOOL ? k - 1 : k);
    }
}

static ee_status maxpool_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    /* training keeps the argmax of every output for the backward pass */
    /* a net prepared for training may run backward after an eval forward too (Grad-CAM, one sample) */
    int keep = train || net->training;
    int *args = keep ? ee_node_scratch(nd, ee_shape_size(nd->out) * n * sizeof(int)) : NULL;
    if (keep && !args) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    int k = nd->arg.pool.k, s = nd->arg.pool.stride, pad = nd->arg.pool.pad, C = nd->ins.c, H = nd->ins.h, W = nd->ins.w;
    int OH = nd->out.h, OW = nd->out.w;
    const float *x = ee_node_input(net, nd, 0);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n * OH; i++) {
        int b = i / OH, oh = i % OH;
        const float *xb = x + (size_t)b * H * W * C;
        for (int ow = 0; ow < OW; ow++) {
            float *y = nd->y + (((size_t)b * OH + oh) * OW + ow) * C;
            int *arg = args ? args + (((size_t)b * OH + oh) * OW + ow) * C : NULL;
            for (int c = 0; c < C; c++) y[c] = -FLT_MAX;
            for (int ki = 0; ki < k; ki++) {
                int ih = oh * s - pad + ki;
                if (ih < 0 || ih >= H) continue;
                for (int kj = 0; kj < k; kj++) {
                    int iw = ow * s - pad + kj;
                    if (iw < 0 || iw >= W) continue;
                    const float *xr = xb + ((size_t)ih * W + iw) * C;
                    for (int c = 0; c < C; c++)
                        if (xr[c] > y[c]) { y[c] = xr[c]; if (arg) arg[c] = (ih * W + iw) * C + c; }
                }
            }
        }
    }
    return EE_OK;
}
static ee_status maxpool_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    const int *args = nd->priv;
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (!dx) return EE_OK;
    size_t in1 = ee_shape_size(nd->ins), out1 = ee_shape_size(nd->out);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        float *d = dx + b * in1;
        if (!acc) memset(d, 0, in1 * sizeof(float));
        const float *g = nd->dy + b * out1;
        const int *arg = args + b * out1;
        for (size_t o = 0; o < out1; o++) d[arg[o]] += g[o];
    }
    return EE_OK;
}

static ee_status avgpool_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)ctx; (void)train;
    int k = nd->arg.pool.k, s = nd->arg.pool.stride, pad = nd->arg.pool.pad, C = nd->ins.c, H = nd->ins.h, W = nd->ins.w;
    int OH = nd->out.h, OW = nd->out.w;
    const float *x = ee_node_input(net, nd, 0);
    float inv = 1.0f / (k * k);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n * OH; i++) {
        int b = i / OH, oh = i % OH;
        for (int ow = 0; ow < OW; ow++) {
            float *y = nd->y + (((size_t)b * OH + oh) * OW + ow) * C;
            for (int c = 0; c < C; c++) y[c] = 0;
            for (int ki = 0; ki < k; ki++) {
                int ih = oh * s - pad + ki;
                if (ih < 0 || ih >= H) continue;
                for (int kj = 0; kj < k; kj++) {
                    int iw = ow * s - pad + kj;
                    if (iw < 0 || iw >= W) continue;
                    const float *xr = x + (((size_t)b * H + ih) * W + iw) * C;
                    for (int c = 0; c < C; c++) y[c] += xr[c];
                }
            }
            for (int c = 0; c < C; c++) y[c] *= inv;
        }
    }
    return EE_OK;
}
static ee_status avgpool_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (!dx) return EE_OK;
    int k = nd->arg.pool.k, s = nd->arg.pool.stride, pad = nd->arg.pool.pad, C = nd->ins.c, H = nd->ins.h, W = nd->ins.w;
    int OH = nd->out.h, OW = nd->out.w;
    float inv = 1.0f / (k * k);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        float *d = dx + (size_t)b * H * W * C;
        if (!acc) memset(d, 0, (size_t)H * W * C * sizeof(float));
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *g = nd->dy + (((size_t)b * OH + oh) * OW + ow) * C;
                for (int ki = 0; ki < k; ki++) {
                    int ih = oh * s - pad + ki;
                    if (ih < 0 || ih >= H) continue;
                    for (int kj = 0; kj < k; kj++) {
                        int iw = ow * s - pad + kj;
                        if (iw < 0 || iw >= W) continue;
                        float *dr = d + ((size_t)ih * W + iw) * C;
                        for (int c = 0; c < C; c++) dr[c] += g[c] * inv;
                    }
                }
            }
    }
    return EE_OK;
}

static ee_status gap_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)ctx; (void)train;
    int C = nd->ins.c, P = nd->ins.h * nd->ins.w;
    const float *x = ee_node_input(net, nd, 0);
    float inv = 1.0f / P;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        float *y = nd->y + (size_t)b * C;
        const float *xb = x + (size_t)b * P * C;
        for (int c = 0; c < C; c++) y[c] = 0;
        for (int q = 0; q < P; q++)
            for (int c = 0; c < C; c++) y[c] += xb[(size_t)q * C + c];
        for (int c = 0; c < C; c++) y[c] *= inv;
    }
    return EE_OK;
}
static ee_status gap_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (!dx) return EE_OK;
    int C = nd->ins.c, P = nd->ins.h * nd->ins.w;
    float inv = 1.0f / P;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        const float *g = nd->dy + (size_t)b * C;
        float *d = dx + (size_t)b * P * C;
        for (int q = 0; q < P; q++)
            for (int c = 0; c < C; c++) d[(size_t)q * C + c] = (acc ? d[(size_t)q * C + c] : 0) + g[c] * inv;
    }
    return EE_OK;
}

static void gmp_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    *macs = 0;
    *flops = *prof = (double)ee_shape_size(nd->ins); /* one comparison per input */
}
/* the argmax of each channel over every position, as maxpool keeps it (an index into the sample's input) */
static ee_status gmp_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    int keep = train || net->training, C = nd->ins.c, P = nd->ins.h * nd->ins.w;
    int *args = keep ? ee_node_scratch(nd, (size_t)n * C * sizeof(int)) : NULL;
    if (keep && !args) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    const float *x = ee_node_input(net, nd, 0);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        const float *xb = x + (size_t)b * P * C;
        float *y = nd->y + (size_t)b * C;
        int *arg = args ? args + (size_t)b * C : NULL;
        for (int c = 0; c < C; c++) { y[c] = -FLT_MAX; if (arg) arg[c] = c; }
        for (int q = 0; q < P; q++)
            for (int c = 0; c < C; c++)
                if (xb[(size_t)q * C + c] > y[c]) { y[c] = xb[(size_t)q * C + c]; if (arg) arg[c] = q * C + c; }
    }
    return EE_OK;
}

/* the stride defaults to the kernel size, as in PyTorch */
static const ee_layer_key pool_keys[] = {
    EE_KEY_REQ("k", EE_KEY_INT, pool.k, 1, 4096),
    {"stride", EE_KEY_INT, offsetof(ee_layer_args, pool.stride), 1, 4096, 0, 0, "k", 0},
    EE_KEY("pad", EE_KEY_INT, pool.pad, 0, 4096, 0),
};
const ee_layer_ops ee_maxpool_ops = {
    .name = "maxpool", .keys = pool_keys, .nkeys = EE_NKEYS(pool_keys), .nin = 1, .shape = pool_shape,
    .forward = maxpool_forward, .backward = maxpool_backward, .count = pool_count, .release = ee_node_release_scratch,
};
const ee_layer_ops ee_avgpool_ops = {
    .name = "avgpool", .keys = pool_keys, .nkeys = EE_NKEYS(pool_keys), .nin = 1, .shape = pool_shape,
    .forward = avgpool_forward, .backward = avgpool_backward, .count = pool_count,
};
const ee_layer_ops ee_gap_ops = {
    .name = "gap", .nin = 1, .shape = gap_shape, .forward = gap_forward, .backward = gap_backward, .count = pool_count,
};
const ee_layer_ops ee_gmp_ops = {
    .name = "gmp", .nin = 1, .shape = gap_shape, .forward = gmp_forward, .backward = maxpool_backward,
    .count = gmp_count, .release = ee_node_release_scratch,
};
