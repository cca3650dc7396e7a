/* dconv.c: a direct NHWC convolution for inference on AVX2 + FMA machines, with the folded BN bias, the residual
 * add and the ReLU applied as the outputs are stored.
 *
 * Why it exists: oneDNN 2.6 has no brgconv kernels without AVX-512. On an AVX2-only CPU (measured on a 2-core
 * AMD EPYC) its jit:avx2 convolutions on NHWC activations ran ResNet-56 at 0.65x (batch 1) and 0.76x (batch 128)
 * of ONNX Runtime, whose MLAS direct kernels this mirrors. On AVX-512 machines oneDNN's brgconv stays in use
 * (conv.c decides; ee_ctx_set_conv_kernel overrides).
 *
 * Layout: weights are packed per block of 16 output channels as [cout/16][kh][kw][cin][16]. A micro-kernel
 * computes up to 6 output pixels of one row x 16 channels in 12 ymm accumulators: per input channel two weight
 * loads and one broadcast per pixel feed 12 FMAs. Taps in the padding read a row of zeros, so border pixels
 * take the same path. Each sample's result is
 * independent of the batch size and of the thread count. */
#include "../internal.h"
#include <string.h>

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define EE_DCONV 1
#endif

#define CB 16 /* output channels per block */

typedef struct {
    int cin, h, w, cout, k, s, pad, oh, ow;
} geom;

static geom geom_of(const ee_node *nd) {
    geom g = {nd->ins.c, nd->ins.h, nd->ins.w, nd->a[0], nd->a[1], nd->a[2], nd->a[3], nd->out.h, nd->out.w};
    return g;
}

int ee_dconv_available(void) {
#ifdef EE_DCONV
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int ee_dconv_preferred(void) {
#ifdef EE_DCONV
    return ee_dconv_available() && !__builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int ee_dconv_fits(const ee_node *nd) {
    return nd->kind == EE_CONV && nd->a[4] == 1 && nd->a[0] % CB == 0 && nd->a[1] <= 7 && ee_dconv_available();
}

size_t ee_dconv_packed_len(const ee_node *nd) { return (size_t)nd->a[0] * nd->ins.c * nd->a[1] * nd->a[1]; }

/* OIHW -> [o/16][kh][kw][i][16] */
void ee_dconv_pack(const ee_node *nd, const float *w, float *packed) {
    geom g = geom_of(nd);
    for (int o = 0; o < g.cout; o++)
        for (int i = 0; i < g.cin; i++)
            for (int kh = 0; kh < g.k; kh++)
                for (int kw = 0; kw < g.k; kw++)
                    packed[((((size_t)(o / CB) * g.k + kh) * g.k + kw) * g.cin + i) * CB + o % CB] =
                        w[(((size_t)o * g.cin + i) * g.k + kh) * g.k + kw];
}

#ifdef EE_DCONV
/* bias, then the residual, then ReLU, on 16 channels of one output pixel */
static inline __attribute__((always_inline)) void store16(float *y, const float *res, __m256 v0, __m256 v1,
                                                          __m256 b0, __m256 b1, int relu) {
    v0 = _mm256_add_ps(v0, b0);
    v1 = _mm256_add_ps(v1, b1);
    if (res) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(res));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(res + 8));
    }
    if (relu) {
        v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
        v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
    }
    _mm256_storeu_ps(y, v0);
    _mm256_storeu_ps(y + 8, v1);
}

/* nb pixels of one output row (nb is a constant at every call, so the pixel loops unroll into registers),
 * the first reading input column iw0. Rows outside the input are skipped; a tap that falls in the padding reads
 * from `zero` (cin zeros) instead, so border pixels take the same path as the interior. */
static inline __attribute__((always_inline)) void row_kernel(const geom *g, const float *x, const float *wb, int ih0,
                                                             int iw0, int nb, const float *zero, const float *bias,
                                                             const float *res, float *y, int relu) {
    __m256 a0[6], a1[6];
    const float *src[6];
    for (int p = 0; p < nb; p++) a0[p] = a1[p] = _mm256_setzero_ps();
    const int cin = g->cin;
    for (int kh = 0; kh < g->k; kh++) {
        int ih = ih0 + kh;
        if (ih < 0 || ih >= g->h) continue;
        const float *xr = x + (size_t)ih * g->w * cin;
        const float *wr = wb + (size_t)kh * g->k * cin * CB;
        for (int kw = 0; kw < g->k; kw++) {
            for (int p = 0; p < nb; p++) {
                int iw = iw0 + p * g->s + kw;
                src[p] = iw >= 0 && iw < g->w ? xr + (size_t)iw * cin : zero;
            }
            const float *wp = wr + (size_t)kw * cin * CB;
            for (int ci = 0; ci < cin; ci++) {
                __m256 w0 = _mm256_loadu_ps(wp + ci * CB), w1 = _mm256_loadu_ps(wp + ci * CB + 8);
                for (int p = 0; p < nb; p++) {
                    __m256 b = _mm256_broadcast_ss(src[p] + ci);
                    a0[p] = _mm256_fmadd_ps(b, w0, a0[p]);
                    a1[p] = _mm256_fmadd_ps(b, w1, a1[p]);
                }
            }
        }
    }
    __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
    for (int p = 0; p < nb; p++)
        store16(y + (size_t)p * g->cout, res ? res + (size_t)p * g->cout : NULL, a0[p], a1[p], b0, b1, relu);
}

#define ROW(NB) row_kernel(&g, xi, wb, ih0, ow * g.s - g.pad, NB, zero, bb, rr ? rr + (size_t)ow * g.cout : NULL, \
                           yr + (size_t)ow * g.cout, relu)
#endif

/* y = relu?(conv(x) + bias + res?) for n samples; res may alias y (the residual sum written in place).
 * zero: cin zeros. */
void ee_dconv_forward(const ee_node *nd, int n, const float *x, const float *packed, const float *bias,
                      const float *res, float *y, int relu, const float *zero) {
#ifdef EE_DCONV
    const geom g = geom_of(nd);
    const int ncb = g.cout / CB;
    /* a row in segments of at most 6 pixels, as even as possible (8 = 4 + 4, not 6 + 2): short segments leave
     * too few independent accumulators to hide the FMA latency */
    const int nseg = (g.ow + 5) / 6;
#pragma omp parallel for collapse(3) schedule(static)
    for (int i = 0; i < n; i++)
        for (int oh = 0; oh < g.oh; oh++)
            for (int cb = 0; cb < ncb; cb++) {
                const float *xi = x + (size_t)i * g.h * g.w * g.cin;
                const float *wb = packed + (size_t)cb * g.k * g.k * g.cin * CB, *bb = bias + cb * CB;
                size_t orow = ((size_t)i * g.oh + oh) * g.ow;
                float *yr = y + orow * g.cout + cb * CB;
                const float *rr = res ? res + orow * g.cout + cb * CB : NULL;
                int ih0 = oh * g.s - g.pad, ow = 0;
                for (int sg = 0; sg < nseg; sg++) {
                    int len = (g.ow - ow) / (nseg - sg);
                    switch (len) {
                    case 6: ROW(6); break;
                    case 5: ROW(5); break;
                    case 4: ROW(4); break;
                    case 3: ROW(3); break;
                    case 2: ROW(2); break;
                    default: ROW(1); break;
                    }
                    ow += len;
                }
            }
#else
    (void)nd; (void)n; (void)x; (void)packed; (void)bias; (void)res; (void)y; (void)relu; (void)zero;
#endif
}
