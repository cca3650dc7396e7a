/* test_quant.c: int8 inference (ee_net_quantize, layers/conv.c). Four convs' int8 outputs against a reference
 * computed here from the definitions (input rounded to its step, weights per channel, integer sums, one scale per
 * channel, folded BN bias, ReLU): the signed image; 16 -> 16, which oneDNN's jit_int8 kernel runs; 16 -> 32 with
 * stride 2 and a bias; 128 -> 128, which its brgconv kernel runs on AVX-512. Also the calibrated steps against the
 * ranges measured here; the whole network near the float one; a saved and reloaded model computing the same bits;
 * an inference-only net (residual added in place) the same as a training-prepared one; and bad calls refused. */
#include "internal.h"
#include "testlib.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *NET =
    "arch qtiny\ninput c=3 h=9 w=9\n"
    "conv name=c1 out=16 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
    "conv name=c2 out=16 k=3 pad=1 bias=0\nbn name=b2\nrelu name=r2a\n"
    "conv name=c2b out=16 k=3 pad=1 bias=0\nbn name=b2b\nadd name=a2 in=b2b,r1\nrelu name=r2\n"
    "conv name=c3 out=32 k=3 stride=2 pad=1 bias=1\nrelu name=r3\n"
    "conv name=c4 out=32 k=3 pad=1 groups=32 bias=0\nbn name=b4\nrelu name=r4\ngap name=pool\nlinear name=fc out=5\n";

enum { N = 24 };

static ee_net *make(ee_ctx *ctx, const char *text) {
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, text, "qtiny", &net));
    if (net) tl_fill_all(net);
    return net;
}

/* max over the calibration batch of one node's output (a float net prepared for training keeps them all) */
static void range_of(const ee_net *net, const char *node, int n, double *lo, double *hi) {
    const float *y = ee_net_node_output(net, ee_net_find_node(net, node));
    size_t len = (size_t)n * ee_shape_size(net->nodes[ee_net_find_node(net, node)].out);
    *lo = 1e30; *hi = -1e30;
    for (size_t i = 0; i < len; i++) { *lo = fmin(*lo, y[i]); *hi = fmax(*hi, y[i]); }
}

/* Conv `conv` of qnet (k x k, padding k / 2, its BN `bn` folded in when given, then a ReLU whose output is `out`)
 * against a reference from the definitions: its input `in` rounded to the conv's step and saturated (to -128..127
 * or 0..255), the folded weights rounded per output channel, integer sums, one scale per channel, the folded bias,
 * the ReLU. Returns how many outputs are off by more than the tolerance; *worst is the largest error in tolerances. */
static int int8_reference(const ee_net *qnet, const float *in, const char *conv, const char *bn, const char *out,
                          int n, double *worst) {
    const ee_node *c = &qnet->nodes[ee_net_find_node(qnet, conv)];
    const ee_node *b = bn ? &qnet->nodes[ee_net_find_node(qnet, bn)] : NULL;
    const float *w = qnet->params + c->p_off, *bias = c->arg.conv.bias ? w + (size_t)c->arg.conv.out * c->ins.c * 9 : NULL;
    const float *got = ee_net_node_output(qnet, ee_net_find_node(qnet, out));
    const int CI = c->ins.c, CO = c->arg.conv.out, H = c->ins.h, W = c->ins.w, OH = c->out.h, OW = c->out.w;
    const int K = c->arg.conv.k, S = c->arg.conv.stride, P = c->arg.conv.pad, per = CI * K * K;
    const float qs = c->arg.conv.qscale;
    const long qlo = c->arg.conv.qsigned ? -128 : 0, qhi = c->arg.conv.qsigned ? 127 : 255;
    float *fw = malloc(sizeof(float) * per);
    int *wq = malloc(sizeof(int) * per), bad = 0;
    *worst = 0;
    for (int o = 0; o < CO; o++) {
        float sc = 1, shift = 0, m = 0;
        if (b) {
            const float *gamma = qnet->params + b->p_off, *beta = gamma + CO, *mean = qnet->state + b->s_off;
            sc = gamma[o] / sqrtf(mean[CO + o] + 1e-5f);
            shift = beta[o] - mean[o] * sc;
        }
        const float fb = (bias ? bias[o] : 0) * sc + shift;
        for (int i = 0; i < per; i++) { fw[i] = w[(size_t)o * per + i] * sc; m = fmaxf(m, fabsf(fw[i])); }
        const float step = m / 127;
        for (int i = 0; i < per; i++) wq[i] = (int)lrintf(fw[i] / step);
        for (int s = 0; s < n; s++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    long acc = 0;
                    for (int ci = 0; ci < CI; ci++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int iy = oy * S + ky - P, ix = ox * S + kx - P;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                long q = lrintf(in[((size_t)(s * H + iy) * W + ix) * CI + ci] / qs);
                                q = q > qhi ? qhi : q < qlo ? qlo : q;
                                acc += q * wq[(ci * K + ky) * K + kx];
                            }
                    float want = (float)acc * (qs * step) + fb;
                    want = want > 0 ? want : 0;
                    float g = got[((size_t)(s * OH + oy) * OW + ox) * CO + o];
                    double e = fabs(g - want) / (1e-5 + 1e-5 * fabs(want));
                    *worst = fmax(*worst, e);
                    bad += e > 1;
                }
    }
    free(fw);
    free(wq);
    return bad;
}

int main(void) {
    ee_ctx *ctx = ee_ctx_new();
    float *x = malloc((size_t)N * 3 * 81 * sizeof(float));
    tl_hash_input("qinput", x, N, 3, 9, 9);
    for (size_t i = 0; i < (size_t)N * 243; i++) x[i] *= 2.5f; /* inputs in [-2.5, 2.5] */

    /* the float reference */
    ee_net *fnet = make(ctx, NET), *qnet = make(ctx, NET);
    if (!fnet || !qnet) return tl_summary("test_quant");
    CHECK_OK(ctx, ee_net_prepare(ctx, fnet, N, 1));
    CHECK_OK(ctx, ee_net_forward(ctx, fnet, x, N, 0));
    float *flog = malloc((size_t)N * 5 * sizeof(float));
    memcpy(flog, ee_net_head_output(fnet, 0), (size_t)N * 5 * sizeof(float));

    if (!ee_int8_available()) { /* refused; a quantised model from elsewhere runs in float */
        CHECK(ee_net_quantize(ctx, qnet, x, N, NULL) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "x86-64"),
              "quantize without int8: %s", ee_ctx_error(ctx));
        size_t len = strlen(NET) + 64, pre = (size_t)(strstr(NET, "bias=0\n") - NET) + 6; /* c1's line */
        char *text = malloc(len);
        snprintf(text, len, "%.*s qscale=0.02 qsigned=1%s", (int)pre, NET, NET + pre);
        ee_net *q = make(ctx, text);
        if (q) {
            CHECK(ee_net_int8_layers(q) == 1, "quantised conv in the text: %d", ee_net_int8_layers(q));
            CHECK_OK(ctx, ee_net_prepare(ctx, q, N, 0));
            CHECK_OK(ctx, ee_net_forward(ctx, q, x, N, 0));
            double e = tl_close(ee_net_head_output(q, 0), flog, N * 5, 1e-5, 1e-4, NULL);
            CHECK(e <= 1, "a quantised model without int8 runs in float: %.3g x tolerance", e);
            ee_net_free(q);
        }
        free(text);
        free(flog); free(x);
        ee_net_free(fnet); ee_net_free(qnet);
        ee_ctx_free(ctx);
        return tl_summary("test_quant");
    }
    CHECK_OK(ctx, ee_net_quantize(ctx, qnet, x, N, NULL));
    CHECK(ee_int8_available() && ee_net_int8_layers(qnet) == 5, "%d int8 convs, not 5", ee_net_int8_layers(qnet));
    /* the steps: the largest |input| over 127 (signed: the image) or 255 (after a ReLU) */
    double amax = 0;
    for (size_t i = 0; i < (size_t)N * 243; i++) amax = fmax(amax, fabs(x[i]));
    const ee_node *c1 = &qnet->nodes[ee_net_find_node(qnet, "c1")];
    CHECK(c1->arg.conv.qsigned == 1 && fabs(c1->arg.conv.qscale - amax / 127) < 1e-7 * amax,
          "c1: step %g signed %d, want %g signed", c1->arg.conv.qscale, c1->arg.conv.qsigned, amax / 127);
    const char *ins[4][2] = {{"c2", "r1"}, {"c2b", "r2a"}, {"c3", "r2"}, {"c4", "r3"}};
    for (int k = 0; k < 4; k++) {
        double lo, hi;
        range_of(fnet, ins[k][1], N, &lo, &hi);
        const ee_node *c = &qnet->nodes[ee_net_find_node(qnet, ins[k][0])];
        CHECK(lo >= 0 && c->arg.conv.qsigned == 0 && fabs(c->arg.conv.qscale - hi / 255) < 1e-6 * hi,
              "%s: step %g signed %d, input range [%g, %g]", ins[k][0], c->arg.conv.qscale, c->arg.conv.qsigned, lo, hi);
    }
    /* the architecture text carries the steps, the float one does not */
    CHECK(strstr(ee_net_arch(qnet), "qscale=") && strstr(ee_net_arch(qnet), "qsigned=1") &&
          !strstr(ee_net_arch(fnet), "qscale"), "arch text: %s", ee_net_arch(qnet));

    /* int8 inference against the integer reference: c1 (3 signed input channels), c2 (16 -> 16, oneDNN's jit_int8
     * kernel), c3 (16 -> 32, stride 2, a bias and no BN) */
    CHECK_OK(ctx, ee_net_forward(ctx, qnet, x, N, 0));
    {
        const char *cs[3][4] = {{"c1", "", "b1", "r1"}, {"c2", "r1", "b2", "r2a"}, {"c3", "r2", NULL, "r3"}};
        for (int k = 0; k < 3; k++) {
            const float *in = *cs[k][1] ? ee_net_node_output(qnet, ee_net_find_node(qnet, cs[k][1])) : x;
            double worst;
            int bad = int8_reference(qnet, in, cs[k][0], cs[k][2], cs[k][3], N, &worst);
            CHECK(bad == 0, "%s int8 output: %d values off the integer reference, worst %.3g x tolerance", cs[k][0], bad,
                  worst);
            if (getenv("VERBOSE")) printf("  %s against the integer reference: worst %.3g x tolerance\n", cs[k][0], worst);
        }
    }
    /* the whole network near the float one: int8 steps move logits by a few percent of their spread */
    const float *qlog = ee_net_head_output(qnet, 0);
    double dmax = 0, spread = 0;
    for (int i = 0; i < N * 5; i++) { dmax = fmax(dmax, fabs(qlog[i] - flog[i])); spread = fmax(spread, fabs(flog[i])); }
    CHECK(dmax < 0.05 * spread && dmax > 0, "int8 logits differ from float by %g (largest |logit| %g)", dmax, spread);
    if (getenv("VERBOSE")) printf("  int8 vs float logits: max difference %.3g of %.3g\n", dmax, spread);

    /* saved and reloaded: the same bits; an inference-only net (sum in place) the same values */
    char path[] = "/tmp/eenn_quantXXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK_OK(ctx, ee_net_save(ctx, qnet, NULL, 0, path));
    ee_net *back = NULL;
    CHECK_OK(ctx, ee_net_load(ctx, path, &back));
    unlink(path);
    if (back) {
        CHECK(ee_net_int8_layers(back) == 5, "reloaded: %d int8 convs", ee_net_int8_layers(back));
        CHECK_OK(ctx, ee_net_prepare(ctx, back, N, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, back, x, N, 0));
        double e = tl_close(ee_net_head_output(back, 0), qlog, N * 5, 1e-6, 1e-5, NULL);
        CHECK(e <= 1, "reloaded, inference-only: logits %.3g x tolerance from the quantised net's", e);
        int inplace = 0;
        for (int i = 0; i < back->nnodes; i++) inplace += back->nodes[i].add_inplace;
        CHECK(inplace == 1, "the residual add is not in place (%d)", inplace);
        /* batch by batch (1, then the rest) gives the same per-sample answers */
        CHECK_OK(ctx, ee_net_forward(ctx, back, x, 1, 0));
        e = tl_close(ee_net_head_output(back, 0), qlog, 5, 1e-6, 1e-5, NULL);
        CHECK(e <= 1, "batch 1: %.3g x tolerance", e);
        ee_net_free(back);
    }

    /* percentile: steps no larger than the largest value's */
    ee_net *pnet = make(ctx, NET);
    ee_quant_config pc = {EE_QUANT_PERCENTILE, 99.0};
    CHECK_OK(ctx, ee_net_quantize(ctx, pnet, x, N, &pc));
    for (int i = 0; i < pnet->nnodes; i++)
        if (pnet->nodes[i].kind == EE_KIND_CONV)
            CHECK(pnet->nodes[i].arg.conv.qscale <= qnet->nodes[i].arg.conv.qscale * 1.0001f &&
                  pnet->nodes[i].arg.conv.qscale > 0.3f * qnet->nodes[i].arg.conv.qscale,
                  "%s: percentile step %g, max step %g", pnet->nodes[i].name, pnet->nodes[i].arg.conv.qscale,
                  qnet->nodes[i].arg.conv.qscale);
    /* bad calls */
    CHECK(ee_net_quantize(ctx, pnet, x, 0, NULL) == EE_ERR_ARG, "no calibration images accepted");
    pc.percentile = 30;
    CHECK(ee_net_quantize(ctx, pnet, x, N, &pc) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "percentile"),
          "percentile 30: %s", ee_ctx_error(ctx));
    x[5] = NAN;
    CHECK(ee_net_quantize(ctx, pnet, x, N, NULL) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "c1"),
          "a NaN image: %s", ee_ctx_error(ctx));
    CHECK(ee_net_int8_layers(pnet) == 0, "a failed calibration leaves %d int8 convs", ee_net_int8_layers(pnet));
    /* a malformed step in a model's text */
    ee_net *badnet = NULL;
    CHECK(ee_net_from_text(ctx, "input c=1 h=4 w=4\nconv out=16 k=3 qscale=-1\ngap\nlinear out=2\n", "bad", &badnet) ==
              EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "qscale"), "qscale=-1: %s", ee_ctx_error(ctx));
    ee_net_free(badnet);
    /* a conv of 128 input channels keeps oneDNN's first choice of int8 kernel (here brgconv on AVX-512): the
     * same reference */
    ee_net *wide = make(ctx, "arch qwide\ninput c=128 h=16 w=16\nconv name=w1 out=128 k=3 pad=1 bias=0\nbn name=wb\n"
                             "relu name=wr\ngap name=pool\nlinear name=fc out=3\n");
    if (wide) {
        float *xw = malloc((size_t)8 * 128 * 256 * sizeof(float));
        tl_hash_input("qwide", xw, 8, 128, 16, 16);
        CHECK_OK(ctx, ee_net_quantize(ctx, wide, xw, 8, NULL));
        CHECK_OK(ctx, ee_net_forward(ctx, wide, xw, 8, 0));
        double worst;
        int bad = int8_reference(wide, xw, "w1", "wb", "wr", 8, &worst);
        CHECK(bad == 0, "128 -> 128 int8 output: %d values off the integer reference, worst %.3g x tolerance", bad, worst);
        free(xw);
        ee_net_free(wide);
    }
    ee_net_free(pnet);
    free(flog);
    free(x);
    ee_net_free(fnet);
    ee_net_free(qnet);
    ee_ctx_free(ctx);
    return tl_summary("test_quant");
}
