/* quant.c: post-training int8 quantisation (docs/int8.md). Each convolution's input step is calibrated on sample
 * images run through the float network; the weights are quantised per output channel when the int8 convolution
 * first runs (layers/conv.c). */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QBINS 4096

typedef struct {
    double amax, amin;
    double *hist; /* QBINS bins of |x| over [0, amax] */
} qstat;

/* one pass over the calibration images: the range of every conv's input (pass 0), or their histograms (pass 1) */
static ee_status scan(ee_ctx *ctx, ee_net *net, const float *x, int n, int batch, qstat *st, int pass) {
    const size_t per_img = (size_t)net->in.c * net->in.h * net->in.w;
    for (int i0 = 0; i0 < n; i0 += batch) {
        int b = n - i0 < batch ? n - i0 : batch;
        ee_status s = ee_net_forward(ctx, net, x + (size_t)i0 * per_img, b, 0);
        if (s) return s;
        for (int i = 0; i < net->nnodes; i++) {
            const ee_node *nd = &net->nodes[i];
            if (nd->kind != EE_KIND_CONV) continue;
            const float *v = ee_node_input(net, nd, 0);
            size_t len = (size_t)b * ee_shape_size(nd->ins);
            qstat *q = &st[i];
            if (pass == 0) {
                double hi = q->amax, lo = q->amin;
                for (size_t k = 0; k < len; k++) {
                    if (!isfinite(v[k]))
                        return ee_fail(ctx, EE_ERR_ARG, "quantize: the input of conv '%s' holds %g on a calibration "
                                       "image", nd->name, v[k]);
                    if (v[k] > hi) hi = v[k];
                    if (v[k] < lo) lo = v[k];
                }
                q->amax = hi;
                q->amin = lo;
            } else {
                double top = fmax(fabs(q->amin), q->amax);
                if (top <= 0) continue;
                for (size_t k = 0; k < len; k++) {
                    int bin = (int)(fabs(v[k]) / top * QBINS);
                    q->hist[bin < QBINS ? bin : QBINS - 1]++;
                }
            }
        }
    }
    return EE_OK;
}

int ee_int8_available(void) {
#if defined(__x86_64__)
    return 1;
#else
    return 0;
#endif
}

ee_status ee_net_quantize(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_quant_config *cfg) {
    ee_quant_config def = {EE_QUANT_MAX, 99.99};
    const ee_quant_config *c = cfg ? cfg : &def;
    ee_status s = ee_net_check_unsealed(ctx, net, "quantize");
    if (s) return s;
    ee_net_drop_workers(net); /* their copies hold the float layers */
    if (!ee_int8_available())
        return ee_fail(ctx, EE_ERR_ARG, "quantize: int8 inference is built for x86-64 only (this build would run "
                       "the convolutions in float)");
    if (n < 1) return ee_fail(ctx, EE_ERR_ARG, "quantize: no calibration images");
    if (c->estimator != EE_QUANT_MAX && c->estimator != EE_QUANT_PERCENTILE)
        return ee_fail(ctx, EE_ERR_ARG, "quantize: unknown estimator %d", (int)c->estimator);
    if (c->estimator == EE_QUANT_PERCENTILE && !(c->percentile > 50 && c->percentile <= 100))
        return ee_fail(ctx, EE_ERR_ARG, "quantize: percentile %g is not in (50, 100]", c->percentile);
    /* the float network is what is measured */
    for (int i = 0; i < net->nnodes; i++)
        if (net->nodes[i].kind == EE_KIND_CONV) net->nodes[i].arg.conv.qscale = 0, net->nodes[i].arg.conv.qsigned = 0;
    const int batch = n < 32 ? n : 32;
    if ((s = ee_net_prepare(ctx, net, batch, 1))) return s; /* a training net keeps every node's output */
    qstat *st = calloc(net->nnodes, sizeof *st);
    if (!st) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    s = scan(ctx, net, x, n, batch, st, 0);
    if (!s && c->estimator == EE_QUANT_PERCENTILE) {
        for (int i = 0; i < net->nnodes && !s; i++)
            if (net->nodes[i].kind == EE_KIND_CONV && !(st[i].hist = calloc(QBINS, sizeof(double))))
                s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        if (!s) s = scan(ctx, net, x, n, batch, st, 1);
    }
    for (int i = 0; i < net->nnodes && !s; i++) {
        ee_node *nd = &net->nodes[i];
        if (nd->kind != EE_KIND_CONV) continue;
        const qstat *q = &st[i];
        int sgn = q->amin < 0;
        double top = fmax(fabs(q->amin), q->amax), clip = top;
        if (c->estimator == EE_QUANT_PERCENTILE && top > 0) {
            double total = 0, want, run = 0;
            for (int k = 0; k < QBINS; k++) total += q->hist[k];
            want = total * c->percentile / 100.0;
            int k = 0;
            for (; k < QBINS - 1 && run + q->hist[k] < want; k++) run += q->hist[k];
            clip = top * (k + 1) / QBINS; /* the upper edge of the bin where the percentile falls */
        }
        if (!(clip > 0)) clip = 1; /* an input that is all zeros: any step */
        nd->arg.conv.qscale = (float)(clip / (sgn ? 127.0 : 255.0));
        nd->arg.conv.qsigned = sgn;
    }
    for (int i = 0; i < net->nnodes; i++) free(st[i].hist);
    free(st);
    if (s) {
        for (int i = 0; i < net->nnodes; i++)
            if (net->nodes[i].kind == EE_KIND_CONV) net->nodes[i].arg.conv.qscale = 0;
        return s;
    }
    char *text = ee_arch_to_text(net);
    if (!text) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    free(net->arch_text);
    net->arch_text = text;
    return EE_OK;
}

int ee_net_int8_layers(const ee_net *net) {
    int k = 0;
    for (int i = 0; i < net->nnodes; i++) k += net->nodes[i].kind == EE_KIND_CONV && net->nodes[i].arg.conv.qscale > 0;
    return k;
}
