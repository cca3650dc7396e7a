/* test_grad.c: central finite differences against the analytic gradient of every layer kind, for parameters
 * and inputs, through a small network that ends in softmax cross-entropy. Also checks the conv forward against
 * a naive loop (the oracle), including stride, padding and groups. */
#include "internal.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 4

static double loss_at(ee_ctx *ctx, ee_net *net, const float *x, const uint8_t *y, uint64_t rng) {
    ee_ctx_set_rng_state(ctx, rng); /* the same dropout mask every time */
    ee_net_params_changed(net);
    double l = 0;
    ee_net_forward(ctx, net, x, N, 1);
    ee_net_loss(ctx, net, ee_net_num_heads(net) - 1, y, N, 0, &l, NULL);
    return l;
}

static double rel_err(const double *a, const double *b, size_t n) {
    double d = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) { d += (a[i] - b[i]) * (a[i] - b[i]); na += a[i] * a[i]; nb += b[i] * b[i]; }
    double den = sqrt(na > nb ? na : nb);
    return den > 0 ? sqrt(d) / den : sqrt(d);
}

static ee_conv_kernel gc_kernel = EE_CONV_AUTO; /* the convolution kernel gradcheck's networks use */
static const char *kname(ee_conv_kernel k) {
    return k == EE_CONV_DIRECT ? "direct" : k == EE_CONV_REFERENCE ? "reference" : k == EE_CONV_BUILTIN ? "builtin"
                                                                                                           : "oneDNN";
}
/* what the direct kernel is compared with: oneDNN, except on aarch64, where Debian's oneDNN computes some
 * convolutions wrong and eenn does not use it (the plain loops, EE_CONV_REFERENCE, instead) */
#ifdef __aarch64__
static const ee_conv_kernel base_kernel = EE_CONV_REFERENCE;
#else
static const ee_conv_kernel base_kernel = EE_CONV_ONEDNN;
#endif

static void gradcheck(const char *label, const char *text, double tol) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_ctx_set_conv_kernel(ctx, gc_kernel);
    ee_net *net = NULL;
    ee_status s = ee_net_from_text(ctx, text, label, &net);
    CHECK(s == EE_OK, "%s: %s", label, ee_ctx_error(ctx));
    if (s) { ee_ctx_free(ctx); return; }
    ee_net_init(ctx, net);
    int c, h, w;
    ee_net_input_shape(net, &c, &h, &w);
    size_t nin = (size_t)N * c * h * w, np = ee_net_num_params(net);
    float *x = malloc(nin * sizeof(float)), *p = ee_net_params(net);
    uint8_t y[N];
    for (size_t i = 0; i < nin; i++) x[i] = ee_rng_normal(ctx);
    /* keep BN-free nets well scaled: bigger weights make every layer matter */
    for (int i = 0; i < N; i++) y[i] = (uint8_t)(i % ee_net_classes(net));
    CHECK_OK(ctx, ee_net_prepare(ctx, net, N, 1));
    ee_net_want_input_grad(net, 1);
    uint64_t rng = 12345;
    ee_ctx_set_rng_state(ctx, rng);
    ee_net_params_changed(net);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, N, 1));
    ee_net_zero_seeds(net);
    CHECK_OK(ctx, ee_net_loss(ctx, net, ee_net_num_heads(net) - 1, y, N, 1.0f, NULL, NULL));
    CHECK_OK(ctx, ee_net_backward(ctx, net, N));
    double *ga = calloc(np + nin, sizeof(double)), *gf = calloc(np + nin, sizeof(double));
    if (!ga || !gf) abort();
    for (size_t i = 0; i < np; i++) ga[i] = ee_net_grads(net)[i];
    const float *dx = ee_net_input_grad(net);
    CHECK(dx != NULL, "%s: no input gradient", label);
    for (size_t i = 0; i < nin; i++) ga[np + i] = dx ? dx[i] : 0;
    const float hstep = getenv("EE_FD_STEP") ? (float)atof(getenv("EE_FD_STEP")) : 2e-3f;
    for (size_t i = 0; i < np + nin; i++) {
        float *v = i < np ? &p[i] : &x[i - np], old = *v;
        *v = old + hstep;
        double lp = loss_at(ctx, net, x, y, rng);
        *v = old - hstep;
        double lm = loss_at(ctx, net, x, y, rng);
        *v = old;
        gf[i] = (lp - lm) / (2 * hstep);
    }
    double ep = rel_err(ga, gf, np), ex = rel_err(ga + np, gf + np, nin);
    if (tol > 0) {
        CHECK(ep < tol, "%s: parameter gradient relative error %.3g (tolerance %.3g)", label, ep, tol);
        CHECK(ex < tol, "%s: input gradient relative error %.3g (tolerance %.3g)", label, ex, tol);
    } else {
        /* ReLU and max-pool kinks: a finite difference that crosses a kink is wrong by design, so require that
         * nearly every element agrees instead of a norm bound */
        size_t good = 0;
        for (size_t i = 0; i < np + nin; i++) good += fabs(ga[i] - gf[i]) <= 2e-4 + 2e-2 * fabs(gf[i]);
        double frac = (double)good / (np + nin);
        CHECK(frac >= 0.9, "%s: only %.1f%% of gradient elements match finite differences", label, 100 * frac);
        CHECK(ep < 0.1 && ex < 0.1, "%s: gradient relative error %.3g / %.3g", label, ep, ex);
    }
    if (getenv("VERBOSE")) printf("  %-28s params %.2e  input %.2e\n", label, ep, ex);
    free(ga); free(gf); free(x);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* naive NHWC convolution, the oracle for the oneDNN path */
static void conv_naive(const float *x, const float *wt, const float *b, float *y, int n, int C, int H, int W, int O, int k,
                       int s, int pad, int g, int OH, int OW) {
    int cg = C / g, og = O / g;
    for (int i = 0; i < n; i++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int o = 0; o < O; o++) {
                    double acc = b ? b[o] : 0;
                    int grp = o / og;
                    for (int ci = 0; ci < cg; ci++)
                        for (int ki = 0; ki < k; ki++)
                            for (int kj = 0; kj < k; kj++) {
                                int ih = oh * s - pad + ki, iw = ow * s - pad + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)x[(((size_t)i * H + ih) * W + iw) * C + grp * cg + ci] *
                                       wt[(((size_t)o * cg + ci) * k + ki) * k + kj];
                            }
                    y[(((size_t)i * OH + oh) * OW + ow) * O + o] = (float)acc;
                }
}

static void conv_oracle_k(int C, int H, int O, int k, int s, int pad, int g, int bias, ee_conv_kernel kern) {
    char text[512];
    snprintf(text, sizeof text, "input c=%d h=%d w=%d\nconv name=c out=%d k=%d stride=%d pad=%d groups=%d bias=%d\n"
             "gap\nlinear out=2\n", C, H, H, O, k, s, pad, g, bias);
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_conv_kernel(ctx, kern);
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, text, "oracle", &net));
    if (!net) { ee_ctx_free(ctx); return; }
    ee_net_init(ctx, net);
    int n = 3, OH = (H + 2 * pad - k) / s + 1;
    size_t nin = (size_t)n * C * H * H, nout = (size_t)n * O * OH * OH;
    float *x = malloc(nin * 4), *ref = malloc(nout * 4);
    for (size_t i = 0; i < nin; i++) x[i] = ee_rng_normal(ctx);
    CHECK_OK(ctx, ee_net_keep_output(ctx, net, 0)); /* an inference-only net keeps heads only */
    ee_net_prepare(ctx, net, n, 0);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
    float *wt = ee_net_params(net);
    conv_naive(x, wt, bias ? wt + (size_t)O * (C / g) * k * k : NULL, ref, n, C, H, H, O, k, s, pad, g, OH, OH);
    double e = tl_close(ee_net_node_output(net, 0), ref, nout, 1e-4, 1e-4, NULL);
    CHECK(e <= 1, "conv %d->%d k%d s%d p%d g%d bias%d (%s kernel): differs from the naive oracle (%.3g)", C, O, k, s,
          pad, g, bias, kname(kern), e);
    free(x); free(ref);
    ee_net_free(net);
    ee_ctx_free(ctx);
}
static void conv_oracle(int C, int H, int O, int k, int s, int pad, int g, int bias) {
    conv_oracle_k(C, H, O, k, s, pad, g, bias, base_kernel);
    conv_oracle_k(C, H, O, k, s, pad, g, bias, EE_CONV_DIRECT);
    conv_oracle_k(C, H, O, k, s, pad, g, bias, EE_CONV_REFERENCE);
}

/* A residual block in inference, where BN folds into the convs and the residual add and ReLUs are applied as the
 * outputs are stored: the direct kernel against oneDNN, on the same weights and BN statistics. */
static void fused_block_kernels(int C, int H, int O, int s) {
    char text[1024];
    snprintf(text, sizeof text,
             "input c=%d h=%d w=%d\nconv name=c1 out=%d k=3 stride=%d pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
             "conv name=c2 out=%d k=3 pad=1 bias=0\nbn name=b2\nconv name=sc in=input out=%d k=1 stride=%d bias=0\n"
             "bn name=bs\nadd name=a in=b2,bs\nrelu name=r2\nconv name=c3 out=%d k=3 pad=1 bias=1\nbn name=b3\n"
             "add name=a2 in=b3,r2\nrelu\ngap\nlinear out=3\n", C, H, H, O, s, O, O, s, O);
    int n = 5;
    float *out[3] = {NULL, NULL, NULL};
    size_t len = 0;
    const ee_conv_kernel kern[3] = {base_kernel, EE_CONV_DIRECT, EE_CONV_REFERENCE};
    for (int v = 0; v < 3; v++) {
        ee_ctx *ctx = ee_ctx_new();
        ee_ctx_set_conv_kernel(ctx, kern[v]);
        ee_net *net = NULL;
        CHECK_OK(ctx, ee_net_from_text(ctx, text, "block", &net));
        if (!net) { ee_ctx_free(ctx); return; }
        ee_net_init(ctx, net);
        float *st = ee_net_state(net); /* running statistics away from 0 and 1, so the folding matters */
        for (size_t i = 0; i < ee_net_num_state(net); i++) st[i] = 0.5f + ee_rng_uniform(ctx);
        float *pr = ee_net_params(net);
        for (size_t i = 0; i < ee_net_num_params(net); i++) pr[i] += 0.05f * ee_rng_normal(ctx);
        ee_net_params_changed(net);
        int gap_node = 13; /* the GAP: its input is the last ReLU, fused into c3 */
        CHECK_OK(ctx, ee_net_keep_output(ctx, net, gap_node));
        size_t nin = (size_t)n * C * H * H;
        float *x = malloc(nin * 4);
        for (size_t i = 0; i < nin; i++) x[i] = ee_rng_normal(ctx);
        CHECK_OK(ctx, ee_net_prepare(ctx, net, n, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
        len = (size_t)n * O;
        out[v] = malloc(len * 4);
        memcpy(out[v], ee_net_node_output(net, gap_node), len * 4);
        free(x);
        ee_net_free(net);
        ee_ctx_free(ctx);
    }
    double e = tl_close(out[1], out[0], len, 1e-4, 1e-4, NULL);
    CHECK(e <= 1, "fused block %d->%d at %d, stride %d: the direct kernel differs from %s (%.3g)", C, O, H, s,
          kname(base_kernel), e);
    e = tl_close(out[2], out[0], len, 1e-4, 1e-4, NULL);
    CHECK(e <= 1, "fused block %d->%d at %d, stride %d: the plain loops differ from %s (%.3g)", C, O, H, s,
          kname(base_kernel), e);
    free(out[0]); free(out[1]); free(out[2]);
}


/* Training gradients of every parameter, direct kernel against oneDNN on the same weights and a bigger batch
 * than the gradchecks (several row chunks and samples per weight tile); and the direct kernel's gradients
 * bit-identical with 1 and 2 threads (no BN here: its statistics are summed per thread). */
static void train_grads_kernels(int C, int H, int O, int k, int s, int pad, int bias, int n) {
    char text[512];
    snprintf(text, sizeof text, "input c=%d h=%d w=%d\nconv out=%d k=%d stride=%d pad=%d bias=%d\nrelu\n"
             "conv out=16 k=3 pad=1 bias=0\nrelu\ngap\nlinear out=3\n", C, H, H, O, k, s, pad, bias);
    float *gr[5] = {NULL, NULL, NULL, NULL, NULL};
    size_t np = 0;
    const ee_conv_kernel kern[5] = {base_kernel, EE_CONV_DIRECT, EE_CONV_DIRECT, EE_CONV_REFERENCE, EE_CONV_REFERENCE};
    for (int v = 0; v < 5; v++) {
        ee_ctx *ctx = ee_ctx_new();
        ee_ctx_set_conv_kernel(ctx, kern[v]);
        if (v == 2 || v == 4) ee_ctx_set_threads(ctx, 1);
        ee_net *net = NULL;
        CHECK_OK(ctx, ee_net_from_text(ctx, text, "wgrad", &net));
        if (!net) { ee_ctx_free(ctx); return; }
        ee_net_init(ctx, net);
        np = ee_net_num_params(net);
        size_t nin = (size_t)n * C * H * H;
        float *x = malloc(nin * 4);
        uint8_t *y = malloc(n);
        for (size_t i = 0; i < nin; i++) x[i] = ee_rng_normal(ctx);
        for (int i = 0; i < n; i++) y[i] = (uint8_t)(i % 3);
        CHECK_OK(ctx, ee_net_prepare(ctx, net, n, 1));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 1));
        ee_net_zero_seeds(net);
        CHECK_OK(ctx, ee_net_loss(ctx, net, ee_net_num_heads(net) - 1, y, n, 1.0f, NULL, NULL));
        CHECK_OK(ctx, ee_net_backward(ctx, net, n));
        gr[v] = malloc(np * 4);
        memcpy(gr[v], ee_net_grads(net), np * 4);
        free(x); free(y);
        ee_net_free(net);
        ee_ctx_free(ctx);
    }
    double e = tl_close(gr[1], gr[0], np, 1e-4, 2e-3, NULL);
    CHECK(e <= 1, "training gradients, conv %d->%d k%d s%d p%d bias%d at %d, batch %d: direct differs from %s "
          "(%.3g)", C, O, k, s, pad, bias, H, n, kname(base_kernel), e);
    e = tl_close(gr[3], gr[0], np, 1e-4, 2e-3, NULL);
    CHECK(e <= 1, "training gradients, conv %d->%d k%d s%d p%d bias%d at %d, batch %d: the plain loops differ from %s "
          "(%.3g)", C, O, k, s, pad, bias, H, n, kname(base_kernel), e);
    CHECK(memcmp(gr[3], gr[4], np * 4) == 0, "training gradients, conv %d->%d k%d s%d at %d: the plain loops differ "
          "between 1 and 2 threads", C, O, k, s, H);
    /* without the direct kernel (an x86-64 CPU without AVX2, or O not a multiple of 16) oneDNN runs the first
     * conv, which is not bit-exact */
    CHECK(!ee_dconv_available() || O % 16 || memcmp(gr[1], gr[2], np * 4) == 0, "training gradients, conv %d->%d k%d s%d at %d: the direct kernel "
              "differs between 1 and 2 threads", C, O, k, s, H);
    for (int v = 0; v < 5; v++) free(gr[v]);
}

/* Training computes BN -> ReLU and BN -> add -> ReLU chains in one pass each way (net.c: plan_train_fusion). The
 * same network with every BN and add output kept runs each node on its own: a forward and backward, then a split
 * forward (a range ending between a BN and its ReLU) and a backward stopped at a fused add, must give the same
 * outputs, gradients and running statistics. 2 threads: the sums' per-thread chunks too. */
static void train_fusion_matches(int n, ee_conv_kernel kern) {
    const char *text =
        "input c=16 h=6 w=6\nconv name=c0 out=16 k=3 pad=1 bias=0\nbn name=b0\nrelu name=r0\n"
        "conv name=c1 out=16 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\nconv name=c2 out=16 k=3 pad=1 bias=0\n"
        "bn name=b2\nadd name=a1 in=b2,r0\nrelu name=o1\n"
        "conv name=c3 out=32 k=3 stride=2 pad=1 bias=0\nbn name=b3\nrelu name=r3\nconv name=c4 out=32 k=3 pad=1 bias=0\n"
        "bn name=b4\nconv name=sc in=o1 out=32 k=1 stride=2 bias=0\nbn name=sb\nadd name=a2 in=b4,sb\nrelu name=o2\n"
        "gap\nlinear out=3\n";
    ee_net *net[2] = {NULL, NULL};
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 2);
    ee_ctx_set_conv_kernel(ctx, kern);
    for (int k = 0; k < 2; k++) {
        CHECK_OK(ctx, ee_net_from_text(ctx, text, "fusion", &net[k]));
        if (!net[k]) { ee_ctx_free(ctx); return; }
        ee_ctx_set_rng_state(ctx, 77);
        CHECK_OK(ctx, ee_net_init(ctx, net[k]));
        for (int i = 0; k == 1 && i < net[k]->nnodes; i++)
            if (net[k]->nodes[i].kind == EE_KIND_BN || net[k]->nodes[i].kind == EE_KIND_ADD) CHECK_OK(ctx, ee_net_keep_output(ctx, net[k], i));
        CHECK_OK(ctx, ee_net_prepare(ctx, net[k], n, 1));
        ee_net_want_input_grad(net[k], 1);
    }
    ee_net *f = net[0], *u = net[1];
    CHECK(f->nodes[ee_net_find_node(f, "b0")].tf_relu >= 0 && f->nodes[ee_net_find_node(f, "b2")].tf_add >= 0 &&
          f->nodes[ee_net_find_node(f, "sb")].tf_add >= 0 && f->nodes[ee_net_find_node(f, "b4")].tf_add < 0,
          "fusion: the training chains are not the expected ones");
    CHECK(u->nodes[ee_net_find_node(u, "b0")].tf_relu < 0 && u->nodes[ee_net_find_node(u, "sb")].tf_relu < 0,
          "fusion: kept outputs still fused");
    size_t nin = (size_t)n * 16 * 36;
    float *x = malloc(nin * sizeof(float));
    uint8_t y[64];
    for (size_t i = 0; i < nin; i++) x[i] = ee_rng_normal(ctx);
    for (int i = 0; i < n; i++) y[i] = (uint8_t)(i % 3);
    const int r0 = ee_net_find_node(f, "r0"), a1 = ee_net_find_node(f, "a1");
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 2; k++) {
            if (round == 0) CHECK_OK(ctx, ee_net_forward(ctx, net[k], x, n, 1));
            else { /* the first range ends between b0 and r0 */
                CHECK_OK(ctx, ee_net_forward_range(ctx, net[k], x, 0, r0, n, 1));
                CHECK_OK(ctx, ee_net_forward_range(ctx, net[k], NULL, r0, net[k]->nnodes, n, 1));
            }
            ee_net_zero_seeds(net[k]);
            CHECK_OK(ctx, ee_net_loss(ctx, net[k], 0, y, n, 1.0f, NULL, NULL));
            if (round == 0) CHECK_OK(ctx, ee_net_backward(ctx, net[k], n));
            else CHECK_OK(ctx, ee_net_backward_until(ctx, net[k], n, a1));
        }
        size_t worst;
        double e = tl_close(ee_net_head_output(f, 0), ee_net_head_output(u, 0), (size_t)n * 3, 1e-5, 1e-5, &worst);
        CHECK(e <= 1, "fusion round %d: logits differ (%.3g x tolerance)", round, e);
        e = tl_close(f->grads, u->grads, f->nparams, 1e-6, 1e-4, &worst);
        CHECK(e <= 1, "fusion round %d: parameter gradient %zu differs (%.3g x tolerance)", round, worst, e);
        e = tl_close(f->state, u->state, f->nstate, 1e-6, 1e-5, &worst);
        CHECK(e <= 1, "fusion round %d: running statistics differ (%.3g x tolerance)", round, e);
        if (round == 0) {
            e = tl_close(ee_net_input_grad(f), ee_net_input_grad(u), nin, 1e-6, 1e-4, &worst);
            CHECK(e <= 1, "fusion: input gradient differs (%.3g x tolerance)", e);
        } else {
            e = tl_close(f->nodes[a1].dy, u->nodes[a1].dy, (size_t)n * 16 * 36, 1e-7, 1e-5, &worst);
            CHECK(e <= 1, "fusion: the gradient at a backward's stop (a fused add) differs (%.3g x tolerance)", e);
        }
    }
    free(x);
    ee_net_free(f);
    ee_net_free(u);
    ee_ctx_free(ctx);
}

int main(void) {
    const char *head = "gap\nlinear out=3\n";
    char t[1024];
#define NET(label, body, tol) do { snprintf(t, sizeof t, "input c=3 h=6 w=6\n%s%s", body, head); gradcheck(label, t, tol); } while (0)
    NET("conv k3 s1 p1 bias", "conv out=4 k=3 stride=1 pad=1 bias=1\n", 2e-3);
    NET("conv k3 s2 p1 no bias", "conv out=5 k=3 stride=2 pad=1 bias=0\n", 2e-3);
    NET("conv k1 s2", "conv out=4 k=1 stride=2 pad=0 bias=1\n", 2e-3);
    NET("conv groups=3", "conv out=6 k=3 stride=1 pad=1 groups=3 bias=1\n", 2e-3);
    NET("conv depthwise", "conv out=3 k=3 stride=2 pad=1 groups=3 bias=0\nconv out=4 k=1 bias=0\n", 2e-3);
    NET("bn (train)", "conv out=4 k=3 pad=1 bias=0\nbn\n", 5e-3);
    NET("relu", "relu\n", 5e-3);
    NET("maxpool k2 s2", "maxpool k=2 stride=2\n", 5e-3);
    NET("maxpool k3 s2 p1", "maxpool k=3 stride=2 pad=1\n", 5e-3);
    NET("conv relu maxpool", "conv out=4 k=3 pad=1\nrelu\nmaxpool k=3 stride=2 pad=1\n", -1);
    NET("avgpool k2 s2", "conv out=4 k=3 pad=1\navgpool k=2 stride=2\n", 2e-3);
    NET("avgpool k3 s1 p1", "conv out=4 k=3 pad=1\navgpool k=3 stride=1 pad=1\n", 2e-3);
    NET("dropout", "conv out=4 k=3 pad=1\ndropout p=0.3\n", 2e-3);
    NET("residual add", "conv name=a out=3 k=3 pad=1\nadd in=a,input\nconv out=4 k=3 pad=1\n", 2e-3);
    NET("bn relu add block",
        "conv name=c1 out=4 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\nconv name=c2 out=4 k=3 pad=1 bias=0\nbn name=b2\n"
        "conv name=sc in=input out=4 k=1 bias=0\nadd in=b2,sc\nrelu\n", -1);
    /* 24 channels: the vectorised BN sums take a sweep of 16 channels and one of 8 */
    NET("bn (train), 24 channels", "conv out=24 k=3 pad=1 bias=0\nbn\n", 5e-3);
    NET("bn relu add block, 24 channels",
        "conv name=c1 out=24 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\nconv name=c2 out=24 k=3 pad=1 bias=0\n"
        "bn name=b2\nconv name=sc in=input out=24 k=1 bias=0\nadd in=b2,sc\nrelu\n", -1);
    gradcheck("flatten + linear (bias, no bias)",
              "input c=2 h=3 w=3\nflatten\nlinear out=5 bias=0\nrelu\nlinear out=3 bias=1\n", 5e-3);
    gradcheck("bn on vectors + dropout", "input c=2 h=3 w=3\nflatten\nlinear out=6\nbn\ndropout p=0.5\nlinear out=3\n", 5e-3);
    gradcheck("mixpool 8->4 (reference windows)", "input c=3 h=8 w=8\nmixpool out=4\nflatten\nlinear out=3\n", 5e-3);
    gradcheck("mixpool 7->4 (adaptive windows)", "input c=2 h=7 w=7\nmixpool out=4\nflatten\nlinear out=3\n", 5e-3);
    gradcheck("mixpool 2x2 passthrough", "input c=3 h=2 w=2\nmixpool out=4\nflatten\nlinear out=3\n", 5e-3);
    gradcheck("gap multi-use", "input c=3 h=4 w=4\nconv name=a out=3 k=3 pad=1\nadd in=a,a\ngap\nlinear out=3\n", 2e-3);
    /* training through the direct kernel (forward, and backward-data of stride-1 convs as a transposed conv);
     * 16 channels so that it applies (on a CPU without AVX2 these run on oneDNN). Deeper nets: the finite
     * differences in float carry ~2e-3 of noise here with either kernel. */
    gc_kernel = EE_CONV_DIRECT;
    gradcheck("direct: conv k3 s1 p1 16->16 (bias)",
              "input c=16 h=5 w=5\nconv out=16 k=3 pad=1 bias=1\nconv out=16 k=3 pad=1 bias=0\ngap\nlinear out=3\n", 5e-3);
    gradcheck("direct: k5 p1, k1, residual (accumulating dx)",
              "input c=16 h=6 w=6\nconv name=a out=32 k=5 pad=1 bias=0\nconv name=b out=16 k=1 bias=0\n"
              "conv name=c in=b out=16 k=3 pad=1 bias=1\nadd in=c,b\nconv out=32 k=3 stride=2 pad=1\ngap\nlinear out=3\n", 5e-3);
    /* the plain loops (every shape: groups, depthwise, rectangular kernels, strides) */
    gc_kernel = EE_CONV_REFERENCE;
    NET("reference: conv k3 s2 p1 no bias", "conv out=5 k=3 stride=2 pad=1 bias=0\n", 2e-3);
    NET("reference: conv groups=3", "conv out=6 k=3 stride=1 pad=1 groups=3 bias=1\n", 2e-3);
    NET("reference: conv depthwise", "conv out=3 k=3 stride=2 pad=1 groups=3 bias=0\nconv out=4 k=1 bias=0\n", 2e-3);
    NET("reference: conv 1x5 and 3x1", "conv out=4 k=5 kh=1 pad=2 padh=0 bias=1\nconv out=4 k=1 kh=3 padh=1 pad=0\n",
        3e-3); /* oneDNN's finite-difference error here: 2.2e-3 */
    NET("reference: bn relu add block",
        "conv name=c1 out=4 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\nconv name=c2 out=4 k=3 pad=1 bias=0\nbn name=b2\n"
        "conv name=sc in=input out=4 k=1 bias=0\nadd in=b2,sc\nrelu\n", -1);
    gc_kernel = EE_CONV_BUILTIN;
    gradcheck("builtin: direct and plain loops, stride-2 backward-data",
              "input c=16 h=6 w=6\nconv out=16 k=3 pad=1 bias=1\nconv out=16 k=3 stride=2 pad=1 bias=0\n"
              "conv out=16 k=3 groups=16 pad=1\nconv out=8 k=1\ngap\nlinear out=3\n", 8e-3); /* oneDNN: 6.1e-3 */
    gc_kernel = EE_CONV_AUTO;
    conv_oracle(3, 8, 8, 3, 1, 1, 1, 1);
    conv_oracle(16, 9, 32, 3, 2, 1, 1, 0);
    conv_oracle(8, 7, 8, 3, 1, 1, 8, 0);
    conv_oracle(6, 8, 9, 3, 2, 0, 3, 1);
    conv_oracle(4, 5, 6, 1, 1, 0, 1, 1);
    /* shapes the direct kernel takes: widths that split into 1..6-pixel segments, strides, 1x1 and 5x5 */
    conv_oracle(3, 13, 16, 3, 1, 1, 1, 1);
    conv_oracle(16, 8, 32, 3, 2, 1, 1, 0);
    conv_oracle(24, 7, 16, 3, 1, 1, 1, 0);
    conv_oracle(5, 11, 32, 5, 2, 2, 1, 1);
    conv_oracle(32, 6, 16, 1, 2, 0, 1, 0);
    conv_oracle(8, 2, 48, 3, 1, 1, 1, 1);
    conv_oracle(7, 1, 16, 3, 1, 1, 1, 1);
    conv_oracle(16, 4, 64, 3, 1, 1, 1, 1); /* 4-wide rows: 16 channels x 4 pixels */
    conv_oracle(24, 3, 32, 3, 1, 1, 1, 0); /* maps at most 3 wide: 32-channel blocks */
    conv_oracle(32, 2, 64, 3, 1, 1, 1, 1);
    conv_oracle(64, 4, 32, 3, 2, 1, 1, 1);
    conv_oracle(32, 2, 64, 1, 1, 0, 1, 1); /* 1x1 stride 1: the batch's pixels as one row (12 = 6 + 6) */
    conv_oracle(16, 7, 32, 1, 1, 0, 1, 0); /* 147 pixels: segments of 48, 48, 48 and 3 */
    conv_oracle(32, 7, 32, 3, 1, 1, 32, 1); /* depthwise, and a depth multiplier of 2 */
    conv_oracle(16, 6, 32, 3, 2, 1, 16, 0);
    fused_block_kernels(16, 9, 16, 1);
    fused_block_kernels(8, 10, 32, 2);
    fused_block_kernels(32, 4, 64, 1);
    train_grads_kernels(3, 32, 16, 3, 1, 1, 1, 8);   /* a stem: 3 input channels, bias */
    train_grads_kernels(16, 16, 32, 3, 2, 1, 0, 12); /* stride 2 */
    train_grads_kernels(13, 9, 16, 3, 1, 1, 1, 7);   /* input channels in groups of 6, 6 and 1 */
    train_grads_kernels(16, 8, 48, 1, 2, 0, 0, 9);   /* a 1x1 shortcut */
    train_grads_kernels(32, 4, 32, 1, 1, 0, 1, 6);   /* pointwise (its backward-data is pointwise too) */
    train_grads_kernels(8, 11, 16, 5, 1, 2, 1, 5);   /* 5x5 */
    train_grads_kernels(1, 28, 16, 3, 1, 1, 0, 4);   /* Fashion-MNIST's stem */
    train_grads_kernels(5, 7, 10, 3, 2, 1, 1, 6);    /* output channels that are not a multiple of 16 */
    /* oneDNN's backward-weights on nChw16c copies: a 16-channel input (no copy) and a 64-channel one */
    train_grads_kernels(16, 10, 64, 3, 1, 1, 1, 6);
    train_grads_kernels(64, 9, 64, 3, 2, 1, 0, 5);
    train_fusion_matches(5, EE_CONV_AUTO);
    train_fusion_matches(37, EE_CONV_AUTO);
    train_fusion_matches(5, EE_CONV_BUILTIN);
    train_fusion_matches(37, EE_CONV_REFERENCE);
    return tl_summary("test_grad");
}
