/* gconv.c: eenn's own convolution for every shape: groups (depthwise included), rectangular kernels, any stride,
 * padding and channel counts; forward, backward-data and weight gradient. Plain loops over NHWC activations that
 * the compiler vectorises along the channels. It runs where neither the direct kernel (dconv.c) nor oneDNN should:
 * with EE_CONV_BUILTIN, which is the default on aarch64, where Debian's oneDNN computes some convolutions wrong
 * (its reference GEMM and depthwise paths there) and the direct kernel does not fit (output channels not a
 * multiple of 16, depthwise and rectangular kernels, stride-2 backward-data). Every output is summed in a fixed
 * order whatever the thread count. */
#include "../internal.h"
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* per-thread scratch: one slice per thread of the parallel regions below */
static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

typedef struct {
    int cin, h, w, cout, kh, kw, s, ph, pw, oh, ow, g, cig, cog;
} ggeom;

static ggeom ggeom_of(const ee_node *nd) {
    const ee_conv_args *a = &nd->arg.conv;
    ggeom q = {nd->ins.c, nd->ins.h, nd->ins.w, a->out, a->kh, a->k, a->stride, a->padh, a->pad, nd->out.h,
               nd->out.w, a->groups, nd->ins.c / a->groups, a->out / a->groups};
    return q;
}

static int depthwise(const ggeom *q) { return q->cig == 1 && q->cog == 1; }

/* OIHW -> [g][kh][kw][ci][co]: a tap's weights of one input channel are the group's output channels in a row.
 * transpose: [g][kh][kw][co][ci] instead (backward-data). Depthwise: [kh][kw][c]. */
static float *pack(const ggeom *q, const float *w, int transpose) {
    size_t len = (size_t)q->cout * q->cig * q->kh * q->kw;
    float *p = malloc(len * sizeof(float) + 1);
    if (!p) return NULL;
    for (int o = 0; o < q->cout; o++) {
        int g = o / q->cog, co = o % q->cog;
        for (int ci = 0; ci < q->cig; ci++)
            for (int y = 0; y < q->kh; y++)
                for (int x = 0; x < q->kw; x++) {
                    size_t tap = ((size_t)g * q->kh + y) * q->kw + x;
                    size_t at = transpose ? (tap * q->cog + co) * q->cig + ci : (tap * q->cig + ci) * q->cog + co;
                    if (depthwise(q)) at = ((size_t)y * q->kw + x) * q->cout + o;
                    p[at] = w[(((size_t)o * q->cig + ci) * q->kh + y) * q->kw + x];
                }
    }
    return p;
}

/* One tap's contribution, out[g][j] += sum_i in[g][i] x W[g][tap][i][j] for every group: the forward pass with
 * (in, out) = (x, y) on the packed weights, backward-data with (dy, dx) on the transposed ones (nin, nout: the
 * group's channels on each side). Depthwise: out[c] += in[c] x W[tap][c]. */
static inline __attribute__((always_inline)) void tap_madd(const ggeom *q, const float *wp, int tap, const float *in,
                                                              int nin, float *out, int nout) {
    const int groups = q->g, cout = q->cout;
    const size_t per_g = (size_t)q->kh * q->kw * nin * nout; /* one group's packed weights */
    if (depthwise(q)) {
        const float *wt = wp + (size_t)tap * cout;
        for (int c = 0; c < cout; c++) out[c] += in[c] * wt[c];
        return;
    }
    for (int g = 0; g < groups; g++) {
        const float *wt = wp + g * per_g + (size_t)tap * nin * nout, *ig = in + (size_t)g * nin;
        float *og = out + (size_t)g * nout;
        for (int i = 0; i < nin; i++) {
            const float v = ig[i], *wr = wt + (size_t)i * nout;
            for (int j = 0; j < nout; j++) og[j] += v * wr[j];
        }
    }
}

/* y = relu?(conv(x) + bias + res?) for n samples (bias, res may be NULL; res may alias y, the residual sum
 * written in place). w: OIHW. */
ee_status ee_gconv_forward(const ee_node *nd, int n, const float *x, const float *w, const float *bias,
                           const float *res, float *y, int relu) {
    const ggeom q = ggeom_of(nd);
    const int nt = max_threads();
    float *wp = pack(&q, w, 0), *accs = malloc(sizeof(float) * q.cout * nt);
    if (!wp || !accs) { free(wp); free(accs); return EE_ERR_NOMEM; }
    const size_t in_img = (size_t)q.h * q.w * q.cin;
#pragma omp parallel num_threads(nt)
    {
        float *acc = accs + (size_t)q.cout * thread_num();
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < q.oh; oy++)
                for (int ox = 0; ox < q.ow; ox++) {
                    const float *xi = x + (size_t)i * in_img;
                    for (int o = 0; o < q.cout; o++) acc[o] = bias ? bias[o] : 0.0f;
                    for (int ky = 0; ky < q.kh; ky++) {
                        int iy = oy * q.s + ky - q.ph;
                        if (iy < 0 || iy >= q.h) continue;
                        for (int kx = 0; kx < q.kw; kx++) {
                            int ix = ox * q.s + kx - q.pw;
                            if (ix < 0 || ix >= q.w) continue;
                            tap_madd(&q, wp, ky * q.kw + kx, xi + ((size_t)iy * q.w + ix) * q.cin, q.cig, acc, q.cog);
                        }
                    }
                    size_t op = (((size_t)i * q.oh + oy) * q.ow + ox) * q.cout;
                    for (int o = 0; o < q.cout; o++) {
                        float v = acc[o] + (res ? res[op + o] : 0.0f);
                        y[op + o] = relu && v < 0 ? 0.0f : v;
                    }
                }
    }
    free(wp);
    free(accs);
    return EE_OK;
}

/* dx (NHWC; overwritten, or added to when acc) from dy and the OIHW weights. The samples are split between the
 * threads, each output pixel adding its taps' contributions to dx in the same order. */
ee_status ee_gconv_backward_data(const ee_node *nd, int n, const float *dy, const float *w, float *dx, int acc) {
    const ggeom q = ggeom_of(nd);
    float *wp = pack(&q, w, 1);
    if (!wp) return EE_ERR_NOMEM;
    const size_t in_img = (size_t)q.h * q.w * q.cin;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        float *dxi = dx + (size_t)i * in_img;
        if (!acc) memset(dxi, 0, in_img * sizeof(float));
        for (int oy = 0; oy < q.oh; oy++)
            for (int ox = 0; ox < q.ow; ox++) {
                const float *d = dy + (((size_t)i * q.oh + oy) * q.ow + ox) * q.cout;
                for (int ky = 0; ky < q.kh; ky++) {
                    int iy = oy * q.s + ky - q.ph;
                    if (iy < 0 || iy >= q.h) continue;
                    for (int kx = 0; kx < q.kw; kx++) {
                        int ix = ox * q.s + kx - q.pw;
                        if (ix < 0 || ix >= q.w) continue;
                        tap_madd(&q, wp, ky * q.kw + kx, d, q.cog, dxi + ((size_t)iy * q.w + ix) * q.cin, q.cig);
                    }
                }
            }
    }
    free(wp);
    return EE_OK;
}

/* dW (OIHW, overwritten) and db (if not NULL) from the input x and dy. Work items are (tap, group, block of 16
 * output channels), or (tap, block of 64 channels) for depthwise, each summing over the whole batch: one sample's
 * sum in float, the samples' sums in double. */
ee_status ee_gconv_backward_weights(const ee_node *nd, int n, const float *x, const float *dy, float *dw, float *db) {
    const ggeom q = ggeom_of(nd);
    const int taps = q.kh * q.kw, dwise = depthwise(&q);
    const int cb = dwise ? 64 : 16, nblk = dwise ? (q.cout + cb - 1) / cb : q.g * ((q.cog + cb - 1) / cb);
    const size_t in_img = (size_t)q.h * q.w * q.cin, out_img = (size_t)q.oh * q.ow * q.cout;
    const size_t per = (size_t)cb * (dwise ? 1 : q.cig);
    const int nt = max_threads();
    float *fbuf = malloc(sizeof(float) * per * nt);
    double *dbuf = malloc(sizeof(double) * per * nt);
    if (!fbuf || !dbuf) { free(fbuf); free(dbuf); return EE_ERR_NOMEM; }
#pragma omp parallel num_threads(nt)
    {
        float *fs = fbuf + per * thread_num();
        double *ds = dbuf + per * thread_num();
#pragma omp for schedule(dynamic, 1)
        for (int item = 0; item < taps * nblk; item++) {
            int tap = item / nblk, blk = item % nblk, ky = tap / q.kw, kx = tap % q.kw;
            int g, o0, nco; /* the group, its first output channel (absolute) and the block's width */
            if (dwise) {
                g = 0;
                o0 = blk * cb;
                nco = q.cout - o0 < cb ? q.cout - o0 : cb;
            } else {
                int per_g = (q.cog + cb - 1) / cb;
                g = blk / per_g;
                int c0 = (blk % per_g) * cb;
                o0 = g * q.cog + c0;
                nco = q.cog - c0 < cb ? q.cog - c0 : cb;
            }
            const int ncin = dwise ? 1 : q.cig;
            memset(ds, 0, sizeof(double) * per);
            for (int i = 0; i < n; i++) {
                memset(fs, 0, sizeof(float) * per);
                const float *xi = x + (size_t)i * in_img, *di = dy + (size_t)i * out_img;
                for (int oy = 0; oy < q.oh; oy++) {
                    int iy = oy * q.s + ky - q.ph;
                    if (iy < 0 || iy >= q.h) continue;
                    for (int ox = 0; ox < q.ow; ox++) {
                        int ix = ox * q.s + kx - q.pw;
                        if (ix < 0 || ix >= q.w) continue;
                        const float *xp = xi + ((size_t)iy * q.w + ix) * q.cin;
                        const float *d = di + ((size_t)oy * q.ow + ox) * q.cout + o0;
                        if (dwise) {
                            for (int c = 0; c < nco; c++) fs[c] += d[c] * xp[o0 + c];
                            continue;
                        }
                        const float *xg = xp + (size_t)g * q.cig;
                        for (int co = 0; co < nco; co++) {
                            const float dv = d[co];
                            float *f = fs + (size_t)co * ncin;
                            for (int ci = 0; ci < ncin; ci++) f[ci] += dv * xg[ci];
                        }
                    }
                }
                for (size_t j = 0; j < (size_t)nco * ncin; j++) ds[j] += fs[j];
            }
            for (int co = 0; co < nco; co++)
                for (int ci = 0; ci < ncin; ci++)
                    dw[(((size_t)(o0 + co) * q.cig + ci) * q.kh + ky) * q.kw + kx] = (float)ds[(size_t)co * ncin + ci];
        }
    }
    free(fbuf);
    free(dbuf);
    if (db) {
        const size_t pix = (size_t)n * q.oh * q.ow;
#pragma omp parallel for schedule(static)
        for (int o = 0; o < q.cout; o++) {
            double t = 0;
            for (size_t p = 0; p < pix; p++) t += dy[p * q.cout + o];
            db[o] = (float)t;
        }
    }
    return EE_OK;
}
