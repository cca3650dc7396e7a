/* mixpool.c: the SDN internal classifier's feature reduction: out = a * maxpool + (1 - a) * avgpool, with one
 * learnable scalar a per layer (initialised U(0, 1), unconstrained, as in the reference), pooling to out x out.
 * When H is a multiple of `out` the windows are the reference's kernel = stride = H/out; otherwise they are
 * PyTorch's adaptive windows [floor(i H/out), ceil((i+1) H/out)). A map already no larger than out passes
 * through unchanged (the reference's "no reduction" case). */
#include "../internal.h"
#include <float.h>
#include <string.h>

static int passthrough(const ee_node *nd) { return nd->ins.h <= nd->arg.mixpool.out && nd->ins.w <= nd->arg.mixpool.out; }
static int lo(int i, int in, int out) { return i * in / out; }
static int hi(int i, int in, int out) { return ((i + 1) * in + out - 1) / out; }

static ee_status mix_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)ctx; (void)net;
    nd->out.c = nd->ins.c;
    nd->out.h = passthrough(nd) ? nd->ins.h : nd->arg.mixpool.out;
    nd->out.w = passthrough(nd) ? nd->ins.w : nd->arg.mixpool.out;
    nd->p_len = 1;
    return EE_OK;
}
static void mix_tensors(ee_net *net, ee_node *nd) { ee_net_add_tensor(net, nd, "alpha", 0, nd->p_off, 1, 1, 0, 0, 0); }
static void mix_init(ee_ctx *ctx, ee_net *net, ee_node *nd) { net->params[nd->p_off] = ee_rng_uniform(ctx); }
static void mix_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    *macs = 0;
    if (passthrough(nd)) { *flops = *prof = 0; return; }
    double outs = (double)ee_shape_size(nd->out), k = (double)nd->ins.h / nd->out.h;
    *flops = outs * (2 * k * k + 3);
    *prof = outs * ((k - 1) + k); /* the reference's MaxPool (k-1) + AvgPool k; the mixing is not counted */
}

static ee_status mix_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    const float *x = ee_node_input(net, nd, 0);
    float a = net->params[nd->p_off];
    if (passthrough(nd)) {
        memcpy(nd->y, x, ee_shape_size(nd->out) * n * sizeof(float));
        return EE_OK;
    }
    /* a net prepared for training may run backward after an eval forward too (Grad-CAM, one sample) */
    int keep = train || net->training;
    int *args = keep ? ee_node_scratch(nd, ee_shape_size(nd->out) * n * sizeof(int)) : NULL;
    if (keep && !args) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    int C = nd->ins.c, H = nd->ins.h, W = nd->ins.w, O = nd->arg.mixpool.out;
    /* channels are contiguous (NHWC): accumulate a block of channels per window pixel, so the inner loop is a
     * vector loop instead of a stride-C gather */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n * O; i++) {
        int b = i / O, oh = i % O, h0 = lo(oh, H, O), h1 = hi(oh, H, O);
        float mx[256], sum[256];
        int am[256];
        for (int ow = 0; ow < O; ow++) {
            int w0 = lo(ow, W, O), w1 = hi(ow, W, O);
            float *y = nd->y + (((size_t)b * O + oh) * O + ow) * C;
            int *arg = args ? args + (((size_t)b * O + oh) * O + ow) * C : NULL;
            float inv = 1.0f / ((h1 - h0) * (w1 - w0));
            for (int c0 = 0; c0 < C; c0 += 256) {
                int cn = C - c0 < 256 ? C - c0 : 256;
                for (int c = 0; c < cn; c++) { mx[c] = -FLT_MAX; sum[c] = 0; am[c] = 0; }
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) {
                        const float *xr = x + (((size_t)b * H + ih) * W + iw) * C + c0;
                        int pos = ih * W + iw;
                        if (arg) /* training: the first argmax of each window, for backward */
                            for (int c = 0; c < cn; c++) {
                                float v = xr[c];
                                sum[c] += v;
                                if (v > mx[c]) { mx[c] = v; am[c] = pos; }
                            }
                        else
                            for (int c = 0; c < cn; c++) {
                                sum[c] += xr[c];
                                mx[c] = xr[c] > mx[c] ? xr[c] : mx[c];
                            }
                    }
                for (int c = 0; c < cn; c++) y[c0 + c] = a * mx[c] + (1 - a) * sum[c] * inv;
                if (arg)
                    for (int c = 0; c < cn; c++) arg[c0 + c] = am[c];
            }
        }
    }
    return EE_OK;
}

static ee_status mix_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    const float *x = ee_node_input(net, nd, 0);
    float a = net->params[nd->p_off];
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    size_t len = ee_shape_size(nd->out) * n;
    if (passthrough(nd)) {
        if (dx)
            for (size_t i = 0; i < len; i++) dx[i] = acc ? dx[i] + nd->dy[i] : nd->dy[i];
        net->grads[nd->p_off] = 0;
        return EE_OK;
    }
    const int *args = nd->priv;
    int C = nd->ins.c, H = nd->ins.h, W = nd->ins.w, O = nd->arg.mixpool.out;
    double da = 0;
    for (int b = 0; b < n; b++) {
        if (dx && !acc) memset(dx + (size_t)b * H * W * C, 0, (size_t)H * W * C * sizeof(float));
        for (int oh = 0; oh < O; oh++)
            for (int ow = 0; ow < O; ow++) {
                int h0 = lo(oh, H, O), h1 = hi(oh, H, O), w0 = lo(ow, W, O), w1 = hi(ow, W, O);
                float inv = 1.0f / ((h1 - h0) * (w1 - w0));
                size_t o = (((size_t)b * O + oh) * O + ow) * C;
                for (int c = 0; c < C; c++) {
                    float g = nd->dy[o + c], sum = 0;
                    for (int ih = h0; ih < h1; ih++)
                        for (int iw = w0; iw < w1; iw++) {
                            size_t xi = (((size_t)b * H + ih) * W + iw) * C + c;
                            sum += x[xi];
                            if (dx) dx[xi] += (1 - a) * inv * g;
                        }
                    int am = args[o + c];
                    float mx = x[((size_t)b * H * W + am) * C + c];
                    if (dx) dx[((size_t)b * H * W + am) * C + c] += a * g;
                    da += (double)g * (mx - sum * inv);
                }
            }
    }
    net->grads[nd->p_off] = (float)da;
    return EE_OK;
}


static const ee_layer_key mix_keys[] = {
    EE_KEY("out", EE_KEY_INT, mixpool.out, 1, 4096, 4),
};
const ee_layer_ops ee_mixpool_ops = {
    .name = "mixpool", .keys = mix_keys, .nkeys = EE_NKEYS(mix_keys), .nin = 1,
    .shape = mix_shape, .tensors = mix_tensors, .init = mix_init, .forward = mix_forward, .backward = mix_backward,
    .count = mix_count, .release = ee_node_release_scratch,
};
