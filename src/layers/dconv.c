/* dconv.c: a direct NHWC convolution for AVX2 + FMA and NEON machines, with the folded BN bias, the residual add and the
 * ReLU applied as the outputs are stored. conv.c runs inference, the training forward, the backward-data of
 * stride-1 convs (a transposed conv) and the weight gradients through it. Its weight gradients took ResNet-56
 * training from 88-90 to 97-98 img/s (batch 128), against oneDNN's jit:avx2 backward-weights.
 *
 * Why it exists: oneDNN 2.6 has no brgconv kernels without AVX-512. On an AVX2-only CPU (measured on a 2-core
 * AMD EPYC) its jit:avx2 convolutions on NHWC activations ran ResNet-56 at 0.65x (batch 1) and 0.76x (batch 128)
 * of ONNX Runtime, whose MLAS direct kernels this mirrors. On AVX-512 machines oneDNN's brgconv stays in use
 * (conv.c decides; ee_ctx_set_conv_kernel overrides). On aarch64 it is the default.
 *
 * Layout: weights are packed per block of 16 output channels as [cout/16][kh][kw][cin][16] (32 on maps at most 3
 * wide). A micro-kernel computes up to 6 output pixels of one row x 16 channels (or 3 x 32) in 12 8-float
 * accumulators (12 ymm registers; 24 of NEON's 32): per input channel, one load per weight vector and one broadcast
 * per pixel feed 12 vector FMAs. Taps in the padding read a row of zeros, so border pixels take the same path.
 * Each sample's result is independent of the batch size and of the thread count. */
#include "../internal.h"
#include <string.h>

/* The micro-kernels below are written once over an 8-float vector type `vf` and its six operations, with three
 * definitions of them:
 *  - x86-64: AVX2 + FMA intrinsics (the Makefile adds -mavx2 -mfma for this file alone). They run only where
 *    ee_dconv_available() (dconv_cpu.c) finds those instructions: the rest of the library runs on any x86-64 CPU.
 *  - aarch64: NEON, a pair of 4-float registers per vf, with fused multiply-adds. oneDNN's aarch64 build in Debian
 *    runs convolutions through its reference GEMM, so this kernel is what convolutions run on ARM boards.
 *  - anything else, and x86-64 built with NO_AVX2=1: GCC's generic vectors, which the compiler lowers to the
 *    machine's own (SSE2 on x86-64: multiply and add, not fused). Used where asked for (EE_CONV_DIRECT); it is how
 *    the portable path is tested and measured on an x86 machine. */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && !defined(EE_NO_AVX2)
#include <immintrin.h>
typedef __m256 vf;
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vf_bcast(const float *p) { return _mm256_broadcast_ss(p); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); } /* a * b + c */
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_relu(vf a) { return _mm256_max_ps(a, _mm256_setzero_ps()); }
/* keeps a vector in a register: gcc 12 would fold the weight load into every pixel's FMA, which doubles the loads
 * (4 pixels x 2 vectors: 12 loads per 8 FMAs, load-bound) */
#define VF_PIN(v) __asm__("" : "+x"(v))
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
typedef struct {
    float32x4_t lo, hi;
} vf;
static inline vf vf_zero(void) { vf r = {vdupq_n_f32(0), vdupq_n_f32(0)}; return r; }
static inline vf vf_load(const float *p) { vf r = {vld1q_f32(p), vld1q_f32(p + 4)}; return r; }
static inline void vf_store(float *p, vf v) { vst1q_f32(p, v.lo); vst1q_f32(p + 4, v.hi); }
static inline vf vf_bcast(const float *p) { float32x4_t b = vld1q_dup_f32(p); vf r = {b, b}; return r; }
static inline vf vf_fma(vf a, vf b, vf c) { vf r = {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; return r; }
static inline vf vf_add(vf a, vf b) { vf r = {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; return r; }
static inline vf vf_relu(vf a) { vf r = {vmaxq_f32(a.lo, vdupq_n_f32(0)), vmaxq_f32(a.hi, vdupq_n_f32(0))}; return r; }
#define VF_PIN(v) __asm__("" : "+w"((v).lo), "+w"((v).hi))
#else
typedef float v4 __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
typedef struct {
    v4 lo, hi;
} vf;
static inline vf vf_zero(void) { vf r = {{0}, {0}}; return r; }
static inline vf vf_load(const float *p) { vf r; memcpy(&r, p, sizeof r); return r; }
static inline void vf_store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vf_bcast(const float *p) { float s = *p; vf r = {{s, s, s, s}, {s, s, s, s}}; return r; }
static inline vf vf_fma(vf a, vf b, vf c) { vf r = {a.lo * b.lo + c.lo, a.hi * b.hi + c.hi}; return r; }
static inline vf vf_add(vf a, vf b) { vf r = {a.lo + b.lo, a.hi + b.hi}; return r; }
static inline vf vf_relu(vf a) {
    v4 z = {0}; /* the lanes above zero kept (a comparison's lanes are all ones or zeros); NaN goes to 0 */
    vf r = {(v4)((v4i)a.lo & (a.lo > z)), (v4)((v4i)a.hi & (a.hi > z))};
    return r;
}
#define VF_PIN(v) ((void)0)
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    int cin, h, w, cout, k, s, pad, oh, ow;
} geom;

static geom geom_of(const ee_node *nd) {
    geom g = {nd->ins.c, nd->ins.h, nd->ins.w, nd->arg.conv.out, nd->arg.conv.k, nd->arg.conv.stride, nd->arg.conv.pad, nd->out.h, nd->out.w};
    return g;
}

/* output channels per weight block: 16 (6 pixels x 2 vectors per step), or 32 on maps at most 3 wide (3 pixels x
 * 4 vectors), where rows are too short to fill enough accumulators with pixels; not for 1x1 stride-1 convs, which
 * run the batch's pixels as one long row. 4-wide rows take 16 channels x 4 pixels: two 2-pixel steps of 32
 * channels read each weight twice as often, and a 32-channel block of a 512-channel 3x3 conv (590 KB) no longer
 * fits in L2 (VGG-16-BN best of 3: batch 1 113 -> 138 img/s, batch 128 206 -> 232) */
static int pointwise(const ee_node *nd) { return nd->arg.conv.k == 1 && nd->arg.conv.stride == 1 && nd->arg.conv.pad == 0; }
static int block_of(const ee_node *nd) {
    return !pointwise(nd) && nd->out.w <= 3 && nd->arg.conv.out % 32 == 0 ? 32 : 16;
}

size_t ee_dconv_packed_len(const ee_node *nd) { return (size_t)nd->arg.conv.out * nd->ins.c * nd->arg.conv.k * nd->arg.conv.k; }

/* one block of cb output channels, OIHW -> [kh][kw][i][cb], channel o scaled by scale[o] (NULL: unscaled) */
static void pack_block(const geom *g, int cb, const float *src, float *dst, const float *scale) {
    for (int oo = 0; oo < cb; oo++)
        for (int i = 0; i < g->cin; i++)
            for (int kh = 0; kh < g->k; kh++)
                for (int kw = 0; kw < g->k; kw++) {
                    float v = src[(((size_t)oo * g->cin + i) * g->k + kh) * g->k + kw];
                    dst[(((size_t)kh * g->k + kw) * g->cin + i) * cb + oo] = scale ? v * scale[oo] : v;
                }
}

/* OIHW -> [o/CB][kh][kw][i][CB] */
void ee_dconv_pack(const ee_node *nd, const float *w, float *packed) {
    geom g = geom_of(nd);
    const int cb = block_of(nd);
    const size_t blk = (size_t)cb * g.cin * g.k * g.k;
    for (int ob = 0; ob < g.cout / cb; ob++) pack_block(&g, cb, w + ob * blk, packed + ob * blk, NULL);
}

/* The same layout written over the OIHW weights themselves, each output channel o scaled by scale[o] (NULL: 1):
 * a block of cb output channels is contiguous in both layouts, so one block of scratch (ee_dconv_block_len
 * floats) is all it takes. Values are bit-identical to scaling first and packing then. */
size_t ee_dconv_block_len(const ee_node *nd) { return (size_t)block_of(nd) * nd->ins.c * nd->arg.conv.k * nd->arg.conv.k; }
void ee_dconv_pack_inplace(const ee_node *nd, float *w, const float *scale, float *tmp) {
    geom g = geom_of(nd);
    const int cb = block_of(nd);
    const size_t blk = ee_dconv_block_len(nd);
    for (int ob = 0; ob < g.cout / cb; ob++) {
        memcpy(tmp, w + ob * blk, blk * sizeof(float));
        pack_block(&g, cb, tmp, w + ob * blk, scale ? scale + ob * cb : NULL);
    }
}


/* nb pixels of one output row x nv vectors of 8 channels (both constants at every call, so the loops unroll into
 * nb x nv accumulators), the first pixel reading input column iw0. Rows outside the input are skipped; a tap
 * that falls in the padding reads from `zero` (cin zeros), so border pixels take the same path as the interior.
 * Then bias, residual and ReLU as the outputs are stored. */
static inline __attribute__((always_inline)) void row_kernel(const geom *g, const float *x, const float *wb, int ih0,
                                                             int iw0, int nb, int nv, int contig, const float *zero,
                                                             const float *bias, const float *res, float *y,
                                                             int relu) {
    vf acc[6][4];
    const float *src[6];
    const int cin = g->cin, cb = 8 * nv;
    for (int p = 0; p < nb; p++)
        for (int v = 0; v < nv; v++) acc[p][v] = vf_zero();
    for (int kh = 0; kh < g->k; kh++) {
        int ih = ih0 + kh;
        if (ih < 0 || ih >= g->h) continue;
        const float *xr = x + (size_t)ih * g->w * cin;
        const float *wr = wb + (size_t)kh * g->k * cin * cb;
        /* contig (stride 1, every tap of the segment inside the row): pixel p's taps along the row are the k cin
         * floats from its first column on, and the weights of one kh are [kw][ci] in the same order, so the k
         * taps run as one loop of k cin steps */
        const int nkw = contig ? 1 : g->k, len = contig ? g->k * cin : cin;
        for (int kw = 0; kw < nkw; kw++) {
            for (int p = 0; p < nb; p++) {
                int iw = iw0 + p * g->s + kw;
                src[p] = contig || (iw >= 0 && iw < g->w) ? xr + (size_t)iw * cin : zero;
            }
            const float *wp = wr + (size_t)kw * cin * cb;
            /* unrolled twice: 24 instructions per input channel otherwise leave the front end, not the FMA units,
             * the limit (measured +6-11% at batch 1 with 1 thread, ResNet-56 and VGG-16-BN) */
#pragma GCC unroll 2
            for (int ci = 0; ci < len; ci++) {
                vf wv[4];
                for (int v = 0; v < nv; v++) {
                    wv[v] = vf_load(wp + ci * cb + 8 * v);
                    VF_PIN(wv[v]);
                }
                for (int p = 0; p < nb; p++) {
                    vf b = vf_bcast(src[p] + ci);
                    for (int v = 0; v < nv; v++) acc[p][v] = vf_fma(b, wv[v], acc[p][v]);
                }
            }
        }
    }
    for (int p = 0; p < nb; p++)
        for (int v = 0; v < nv; v++) {
            float *yo = y + (size_t)p * g->cout + 8 * v;
            vf o = vf_add(acc[p][v], vf_load(bias + 8 * v));
            if (res) o = vf_add(o, vf_load(res + (size_t)p * g->cout + 8 * v));
            if (relu) o = vf_relu(o);
            vf_store(yo, o);
        }
}

/* one row of output pixels for one channel block, in segments of at most 6 (16 channels) or 3 (32 channels)
 * pixels, as even as possible (8 = 4 + 4, not 6 + 2): short segments leave too few independent accumulators to
 * hide the FMA latency */
static void row(const geom *g, const float *xi, const float *wb, int ih0, int cb, const float *zero,
                const float *bb, const float *rr, float *yr, int relu) {
    const int most = cb == 32 ? 3 : 6, nseg = (g->ow + most - 1) / most;
    int ow = 0;
    for (int sg = 0; sg < nseg; sg++) {
        int len = (g->ow - ow) / (nseg - sg), iw0 = ow * g->s - g->pad;
        const float *r = rr ? rr + (size_t)ow * g->cout : NULL;
        float *y = yr + (size_t)ow * g->cout;
        const int contig = g->s == 1 && g->k > 1 && iw0 >= 0 && iw0 + len + g->k - 1 <= g->w;
#define K(NB, NV) (contig ? row_kernel(g, xi, wb, ih0, iw0, NB, NV, 1, zero, bb, r, y, relu) \
                          : row_kernel(g, xi, wb, ih0, iw0, NB, NV, 0, zero, bb, r, y, relu))
        if (cb == 32) {
            if (len == 3) K(3, 4);
            else if (len == 2) K(2, 4);
            else K(1, 4);
        } else {
            switch (len) {
            case 6: K(6, 2); break;
            case 5: K(5, 2); break;
            case 4: K(4, 2); break;
            case 3: K(3, 2); break;
            case 2: K(2, 2); break;
            default: K(1, 2); break;
            }
        }
#undef K
        ow += len;
    }
}

/* The weight gradient of one tile, 16 output channels x nc (<= 6) input channels of one tap (kh, kw), summed
 * over output rows [r0, r1) of one sample and added to acc_mem (in buf, [kh][kw][ci][cout]): per output pixel,
 * two loads of dy and nc broadcasts of x feed 2 nc FMAs. */
static inline __attribute__((always_inline)) void wgrad_tile(const geom *g, const float *xs, const float *dys, int r0,
                                                             int r1, int kh, int kw, int ci0, int nc, float *acc_mem) {
    vf acc[6][2];
    for (int c = 0; c < nc; c++) acc[c][0] = acc[c][1] = vf_zero();
    /* output columns whose input column ox * s + kw - pad lies inside the row */
    int lo = g->pad - kw, ox0 = lo > 0 ? (lo + g->s - 1) / g->s : 0;
    int hi = g->w - 1 + g->pad - kw, ox1 = hi < 0 ? 0 : hi / g->s + 1;
    if (ox1 > g->ow) ox1 = g->ow;
    const size_t xstep = (size_t)g->s * g->cin;
    for (int oy = r0; oy < r1; oy++) {
        int iy = oy * g->s + kh - g->pad;
        if (iy < 0 || iy >= g->h || ox0 >= ox1) continue;
        const float *d = dys + ((size_t)oy * g->ow + ox0) * g->cout;
        const float *xp = xs + ((size_t)iy * g->w + ox0 * g->s + kw - g->pad) * g->cin + ci0;
        for (int ox = ox0; ox < ox1; ox++, d += g->cout, xp += xstep) {
            vf d0 = vf_load(d), d1 = vf_load(d + 8);
            for (int c = 0; c < nc; c++) {
                vf b = vf_bcast(xp + c);
                acc[c][0] = vf_fma(b, d0, acc[c][0]);
                acc[c][1] = vf_fma(b, d1, acc[c][1]);
            }
        }
    }
    for (int c = 0; c < nc; c++) { /* a sum over these rows, added to the running total: shorter sums */
        float *m = acc_mem + (size_t)c * g->cout;
        vf_store(m, vf_add(vf_load(m), acc[c][0]));
        vf_store(m + 8, vf_add(vf_load(m + 8), acc[c][1]));
    }
}

/* dW (OIHW, overwritten) and db (if not NULL) of a conv from its input x and output gradient dy, both NHWC.
 * buf: ee_dconv_packed_len floats of scratch. The tiles (tap, 16 output channels, up to 6 input channels) are
 * split between the threads, and each thread walks the whole batch a few rows at a time for all of its tiles, so
 * that those rows stay in cache. Every tile is summed in the same order whatever the thread count: the result
 * is bit-identical with 1 or 2 threads. */
void ee_dconv_backward_weights(const ee_node *nd, int n, const float *x, const float *dy, float *dw, float *db,
                               float *buf) {
    const geom g = geom_of(nd);
    const int taps = g.k * g.k, ncob = g.cout / 16, ncig = (g.cin + 5) / 6;
    const int ntiles = taps * ncob * ncig;
    const size_t in_img = (size_t)g.h * g.w * g.cin, out_img = (size_t)g.oh * g.ow * g.cout;
    /* rows per step: about 128 output pixels */
    const int rows = g.ow >= 128 ? 1 : 128 / g.ow;
    memset(buf, 0, (size_t)taps * g.cin * g.cout * sizeof(float));
#pragma omp parallel
    {
#ifdef _OPENMP
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int t = 0, nt = 1;
#endif
        /* tiles in order (tap, ci group, co block); a contiguous share of the input channels per thread */
        long total = (long)taps * ncob * g.cin;
        long w0 = total * t / nt, w1 = total * (t + 1) / nt, seen = 0;
        int t0 = ntiles, t1 = ntiles;
        for (int i = 0; i < ntiles; i++) {
            int cig = (i / ncob) % ncig, nc = g.cin - cig * 6 < 6 ? g.cin - cig * 6 : 6;
            if (seen >= w0 && t0 == ntiles) t0 = i;
            if (seen >= w1) { t1 = i; break; }
            seen += nc;
        }
        for (int i = 0; i < n; i++) {
            const float *xs = x + (size_t)i * in_img, *dys = dy + (size_t)i * out_img;
            for (int r0 = 0; r0 < g.oh; r0 += rows) {
                int r1 = r0 + rows < g.oh ? r0 + rows : g.oh;
                for (int ti = t0; ti < t1; ti++) {
                    int cob = ti % ncob, cig = (ti / ncob) % ncig, tap = ti / (ncob * ncig);
                    int kh = tap / g.k, kw = tap % g.k, ci0 = cig * 6, nc = g.cin - ci0 < 6 ? g.cin - ci0 : 6;
                    float *am = buf + ((size_t)tap * g.cin + ci0) * g.cout + cob * 16;
                    const float *dc = dys + cob * 16;
                    switch (nc) {
                    case 6: wgrad_tile(&g, xs, dc, r0, r1, kh, kw, ci0, 6, am); break;
                    case 5: wgrad_tile(&g, xs, dc, r0, r1, kh, kw, ci0, 5, am); break;
                    case 4: wgrad_tile(&g, xs, dc, r0, r1, kh, kw, ci0, 4, am); break;
                    case 3: wgrad_tile(&g, xs, dc, r0, r1, kh, kw, ci0, 3, am); break;
                    case 2: wgrad_tile(&g, xs, dc, r0, r1, kh, kw, ci0, 2, am); break;
                    default: wgrad_tile(&g, xs, dc, r0, r1, kh, kw, ci0, 1, am); break;
                    }
                }
            }
        }
    }
    /* [kh][kw][ci][co] -> OIHW */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < g.cout; o++)
        for (int ci = 0; ci < g.cin; ci++)
            for (int tap = 0; tap < taps; tap++)
                dw[((size_t)o * g.cin + ci) * taps + tap] = buf[((size_t)tap * g.cin + ci) * g.cout + o];
    if (db) {
        const size_t pix = (size_t)n * g.oh * g.ow;
#pragma omp parallel for schedule(static)
        for (int o = 0; o < g.cout; o += 8) { /* blocks of 256 pixels summed in float, the blocks in double */
            double tot[8] = {0};
            for (size_t p0 = 0; p0 < pix; p0 += 256) {
                float s[8] = {0};
                for (size_t p = p0; p < pix && p < p0 + 256; p++)
                    for (int j = 0; j < 8; j++) s[j] += dy[p * g.cout + o + j];
                for (int j = 0; j < 8; j++) tot[j] += s[j];
            }
            for (int j = 0; j < 8; j++) db[o + j] = (float)tot[j];
        }
    }
}

/* y = relu?(conv(x) + bias + res?) for n samples; res may alias y (the residual sum written in place).
 * zero: cin zeros. */
void ee_dconv_forward(const ee_node *nd, int n, const float *x, const float *packed, const float *bias,
                      const float *res, float *y, int relu, const float *zero) {
    const geom g = geom_of(nd);
    const int cb = block_of(nd), ncb = g.cout / cb;
    const size_t wblock = (size_t)g.k * g.k * g.cin * cb, in_img = (size_t)g.h * g.w * g.cin;
    /* Deep layers with small maps have more weights than input: there every channel block's weights go once
     * through all samples (block outermost); elsewhere each sample's input goes once through all blocks. */
    const int blocks_outer = wblock * ncb > in_img;
    if (pointwise(nd)) {
        /* 1x1, stride 1, no padding: the pixels of the whole batch are one long row, cut into segments of 48
         * (whole 6-pixel steps: 12 accumulators), instead of rows as short as 2 pixels (MobileNet's last maps) */
        const size_t P = (size_t)n * g.h * g.w, SEG = 48;
        const long nseg = (long)((P + SEG - 1) / SEG);
        const int cb_outer = wblock * ncb > SEG * g.cin;
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
        for (long a = 0; a < (cb_outer ? ncb : nseg); a++)
            for (long c = 0; c < (cb_outer ? nseg : ncb); c++) {
                long b = cb_outer ? a : c, sg = cb_outer ? c : a;
                size_t p0 = (size_t)sg * SEG, len = P - p0 < SEG ? P - p0 : SEG;
                geom g1 = g;
                g1.h = g1.oh = 1;
                g1.w = g1.ow = (int)len;
                row(&g1, x + p0 * g.cin, packed + (size_t)b * wblock, 0, cb, zero, bias + b * cb,
                    res ? res + p0 * g.cout + b * cb : NULL, y + p0 * g.cout + b * cb, relu);
            }
        return;
    }
    /* dynamic: on a shared machine one core is often slowed, and static halves made the other wait (a third of
     * the time in libgomp's barrier at batch 128); every work item computes whole outputs, so the result does not
     * depend on the schedule */
#pragma omp parallel for collapse(3) schedule(dynamic, 4)
    for (int a = 0; a < (blocks_outer ? ncb : n); a++)
        for (int i2 = 0; i2 < (blocks_outer ? n : g.oh); i2++)
            for (int i3 = 0; i3 < (blocks_outer ? g.oh : ncb); i3++) {
                int b = blocks_outer ? a : i3, i = blocks_outer ? i2 : a, oh = blocks_outer ? i3 : i2;
                const float *xi = x + (size_t)i * in_img, *wb = packed + (size_t)b * wblock;
                size_t orow = ((size_t)i * g.oh + oh) * g.ow;
                row(&g, xi, wb, oh * g.s - g.pad, cb, zero, bias + b * cb, res ? res + orow * g.cout + b * cb : NULL,
                    y + orow * g.cout + b * cb, relu);
            }
}

