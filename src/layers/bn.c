/* bn.c: batch normalisation over NHWC activations, PyTorch semantics: batch statistics (biased variance) in
 * training, running statistics updated with `momentum` and the unbiased variance, running statistics in eval.
 * Per-channel sums are reduced per thread chunk in double and combined in a fixed order, so results are
 * deterministic for a given thread count. Parameters: weight (gamma), bias (beta); state: running mean/var. */
#include "../internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && !defined(EE_NO_AVX2)
#define EE_BN_AVX2 1 /* sum_avx2 is compiled for AVX2 + FMA and runs where the CPU has them */
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAXT 64
typedef struct {
    float *mean, *invstd;  /* of the last training forward */
    double *part;          /* MAXT x 2c partial sums */
    float *fpart;          /* MAXT x 2c partial sums of one block of rows */
    double *sums;          /* 2c reduced sums */
    float *k;              /* 4c: backward coefficients and eval-mode means */
    double rows;           /* rows of the last training forward's statistics (over every rank with sync-BN) */
    int last_train;
    int sums_ready;        /* sums holds this backward's sums (computed by the fused ReLU's backward pass) */
    uint8_t *bits;         /* training with a fused ReLU (c a multiple of 8): its mask, one bit per element */
    size_t bits_len;
    int have_bits;         /* bits holds the mask of the last training forward */
    const float *chain_g;  /* the ReLU's dy, masked by bits: the BN's dy, which the fused backward did not write */
} bn_priv;

static ee_status bn_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)ctx; (void)net;
    nd->out = nd->ins;
    nd->p_len = 2 * (size_t)nd->ins.c;
    nd->s_len = 2 * (size_t)nd->ins.c;
    return EE_OK;
}
static void bn_tensors(ee_net *net, ee_node *nd) {
    int c = nd->ins.c;
    ee_net_add_tensor(net, nd, "weight", 0, nd->p_off, 1, c, 0, 0, 0);
    ee_net_add_tensor(net, nd, "bias", 0, nd->p_off + c, 1, c, 0, 0, 0);
    ee_net_add_tensor(net, nd, "running_mean", 1, nd->s_off, 1, c, 0, 0, 0);
    ee_net_add_tensor(net, nd, "running_var", 1, nd->s_off + c, 1, c, 0, 0, 0);
}
static void bn_init(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)ctx;
    int c = nd->ins.c;
    for (int i = 0; i < c; i++) {
        net->params[nd->p_off + i] = 1;
        net->params[nd->p_off + c + i] = 0;
        net->state[nd->s_off + i] = 0;
        net->state[nd->s_off + c + i] = 1;
    }
}
static void bn_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    double e = (double)ee_shape_size(nd->out);
    *macs = 0;
    *flops = 2 * e; /* scale and shift once folded */
    *prof = 2 * e;
}
static void bn_release(ee_node *nd) {
    bn_priv *p = nd->priv;
    if (!p) return;
    free(p->mean); free(p->invstd); free(p->part); free(p->fpart); free(p->sums); free(p->k); ee_free(p->bits);
    free(p);
    nd->priv = NULL;
}
static bn_priv *priv(ee_ctx *ctx, ee_node *nd) {
    if (nd->priv) return nd->priv;
    int c = nd->ins.c;
    bn_priv *p = calloc(1, sizeof *p);
    if (p) {
        p->mean = malloc(c * sizeof(float));
        p->invstd = malloc(c * sizeof(float));
        p->part = malloc((size_t)MAXT * 2 * c * sizeof(double));
        p->fpart = malloc((size_t)MAXT * 2 * c * sizeof(float));
        p->sums = malloc(2 * c * sizeof(double));
        p->k = malloc(4 * c * sizeof(float));
    }
    if (!p || !p->mean || !p->invstd || !p->part || !p->fpart || !p->sums || !p->k) {
        if (p) { free(p->mean); free(p->invstd); free(p->part); free(p->fpart); free(p->sums); free(p->k); free(p); }
        ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        return NULL;
    }
    nd->priv = p;
    return p;
}

static int nthreads(void) {
#ifdef _OPENMP
    int t = omp_get_max_threads();
    return t > MAXT ? MAXT : t;
#else
    return 1;
#endif
}

/* What reduce() sums over the rows, per channel j: STATS: x and (x - m)^2; GRAD: dy and dy (x - m); CHAIN (the
 * backward of a ReLU that its BN computed, ee_bn_chain_backward): v = mask > 0 ? dy : 0 is first written to the
 * BN's dy bd (added if bacc) and to the shortcut's dy od (if any; added if oacc), then v and v (x - m) are summed;
 * CHAINB: the same with the mask as bits and without bd, which the BN's backward does not read (it masks dy
 * itself). */
enum { STATS, GRAD, CHAIN, CHAINB };
typedef struct {
    const float *x, *dy, *mask, *m;
    const uint8_t *bits;
    float *bd, *od;
    int c, mode, bacc, oacc;
} sum_job;

/* bit k of a byte of the mask: element 8 i + k of the tensor (rows of c channels, c a multiple of 8) */
static inline int mask_bit(const uint8_t *bits, size_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

/* The sums of rows [r0, r1) added into acc[2c] (double): blocks of RBLK rows are summed in float (vectorised, 16
 * terms: relative error ~1e-6 of the block) and each block's sums are added to acc in double, so long sums keep
 * double accuracy at float speed (measured: 2-3x faster than summing every row in double, which took 15% of
 * ResNet-56 training). The dy buffers never overlap (net.c places them). */
#define RBLK 16
#ifdef EE_BN_AVX2
/* The rows of one block for NV vectors of 8 channels from j (NV = 1 or 2): the block's two float sums per vector
 * stay in registers over its rows and go straight into the double totals. Several channel vectors in one sweep
 * of the rows give independent dependency chains (one vector's 16 adds in a row were latency-bound: the pass ran
 * at about half the memory bandwidth of a plain streaming loop). The same operations in the same order per lane
 * as the portable path: the results are bit-identical. MODE is a constant at every call, so the loop holds no
 * branch on it. */
#define SUM_NV_MAX 2
#define ROWS_PER_TASK 256 /* rows per call of the AVX2 loops below, which the threads share */
static inline size_t task_end(size_t b, size_t rows) {
    return (b + 1) * ROWS_PER_TASK < rows ? (b + 1) * ROWS_PER_TASK : rows;
}
/* the 8 lanes of one byte of the mask: all ones where its bit is set */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 bits_mask_avx2(uint8_t b, __m256i sel) {
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(b), sel), sel));
}
__attribute__((target("avx2,fma"), always_inline)) static inline void
sum_block_avx2(const int MODE, const int NV, const float *restrict x, const float *restrict dy,
               const float *restrict mask, const uint8_t *restrict bits, float *restrict bd, float *restrict od,
               const float *restrict m, int c, int bacc, int oacc, size_t b0, size_t b1, int j,
               double *restrict acc) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 mv[SUM_NV_MAX], sa[SUM_NV_MAX], sb[SUM_NV_MAX];
    for (int k = 0; k < NV; k++) { mv[k] = _mm256_loadu_ps(m + j + 8 * k); sa[k] = zero; sb[k] = zero; }
    for (size_t r = b0; r < b1; r++) {
        const size_t o0 = r * c + j;
        for (int k = 0; k < NV; k++) {
            const size_t o = o0 + 8 * (size_t)k;
            __m256 xv = _mm256_loadu_ps(x + o), d = _mm256_sub_ps(xv, mv[k]), v;
            if (MODE == STATS) {
                sa[k] = _mm256_add_ps(sa[k], xv);
                sb[k] = _mm256_fmadd_ps(d, d, sb[k]);
                continue;
            }
            v = _mm256_loadu_ps(dy + o);
            if (MODE == CHAIN) {
                v = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(mask + o), zero, _CMP_GT_OQ), v);
                if (od) _mm256_storeu_ps(od + o, oacc ? _mm256_add_ps(_mm256_loadu_ps(od + o), v) : v);
                if (bacc) v = _mm256_add_ps(_mm256_loadu_ps(bd + o), v);
                _mm256_storeu_ps(bd + o, v);
            } else if (MODE == CHAINB) {
                v = _mm256_and_ps(bits_mask_avx2(bits[o >> 3], sel), v);
                if (od) _mm256_storeu_ps(od + o, oacc ? _mm256_add_ps(_mm256_loadu_ps(od + o), v) : v);
            }
            sa[k] = _mm256_add_ps(sa[k], v);
            sb[k] = _mm256_fmadd_ps(v, d, sb[k]);
        }
    }
    for (int k = 0; k < NV; k++) {
        double *pa = acc + j + 8 * k, *pb = acc + c + j + 8 * k;
        _mm256_storeu_pd(pa, _mm256_add_pd(_mm256_loadu_pd(pa), _mm256_cvtps_pd(_mm256_castps256_ps128(sa[k]))));
        _mm256_storeu_pd(pa + 4, _mm256_add_pd(_mm256_loadu_pd(pa + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(sa[k], 1))));
        _mm256_storeu_pd(pb, _mm256_add_pd(_mm256_loadu_pd(pb), _mm256_cvtps_pd(_mm256_castps256_ps128(sb[k]))));
        _mm256_storeu_pd(pb + 4, _mm256_add_pd(_mm256_loadu_pd(pb + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(sb[k], 1))));
    }
}
/* rows [r0, r1) in blocks of RBLK, 16 channels per sweep (8 for a last odd vector); c a multiple of 8 */
__attribute__((target("avx2,fma"), always_inline)) static inline void
sum_rows_avx2(const int MODE, const sum_job *jb, size_t r0, size_t r1, double *restrict acc) {
    const float *restrict x = jb->x, *restrict dy = jb->dy, *restrict mask = jb->mask, *restrict m = jb->m;
    const uint8_t *restrict bits = jb->bits;
    float *restrict bd = jb->bd, *restrict od = jb->od;
    const int c = jb->c, bacc = jb->bacc, oacc = jb->oacc;
    for (size_t b0 = r0; b0 < r1; b0 += RBLK) {
        const size_t b1 = b0 + RBLK < r1 ? b0 + RBLK : r1;
        int j = 0;
        for (; j + 16 <= c; j += 16)
            sum_block_avx2(MODE, 2, x, dy, mask, bits, bd, od, m, c, bacc, oacc, b0, b1, j, acc);
        if (j < c) sum_block_avx2(MODE, 1, x, dy, mask, bits, bd, od, m, c, bacc, oacc, b0, b1, j, acc);
    }
}
__attribute__((target("avx2,fma"))) static void sum_avx2(const sum_job *jb, size_t r0, size_t r1, double *restrict acc) {
    if (jb->mode == STATS) sum_rows_avx2(STATS, jb, r0, r1, acc);
    else if (jb->mode == GRAD) sum_rows_avx2(GRAD, jb, r0, r1, acc);
    else if (jb->mode == CHAIN) sum_rows_avx2(CHAIN, jb, r0, r1, acc);
    else sum_rows_avx2(CHAINB, jb, r0, r1, acc);
}
#endif

/* the float sums of one block of rows [r0, r1) into s[2c] (zeroed first) */
static void sum_block(const sum_job *jb, size_t r0, size_t r1, float *restrict s) {
    const int c = jb->c;
    const float *restrict m = jb->m;
    float *restrict fa = s, *restrict fb = s + c;
    memset(s, 0, 2 * c * sizeof(float));
    for (size_t r = r0; r < r1; r++) {
        const float *restrict xr = jb->x + r * c;
        if (jb->mode == STATS) {
            for (int j = 0; j < c; j++) { float v = xr[j] - m[j]; fa[j] += xr[j]; fb[j] += v * v; }
            continue;
        }
        const float *restrict g = jb->dy + r * c;
        if (jb->mode == GRAD) {
            for (int j = 0; j < c; j++) { fa[j] += g[j]; fb[j] += g[j] * (xr[j] - m[j]); }
            continue;
        }
        /* CHAIN: the mask from the ReLU's output, into bd; CHAINB: from the bits, no bd */
        const float *restrict mk = jb->mode == CHAIN ? jb->mask + r * c : NULL;
        float *restrict bd = jb->mode == CHAIN ? jb->bd + r * c : NULL, *restrict od = jb->od ? jb->od + r * c : NULL;
        for (int j = 0; j < c; j++) {
            float v = (mk ? mk[j] > 0 : mask_bit(jb->bits, r * c + j)) ? g[j] : 0.0f;
            if (od) od[j] = jb->oacc ? od[j] + v : v;
            if (bd) {
                if (jb->bacc) v += bd[j];
                bd[j] = v;
            }
            fa[j] += v;
            fb[j] += v * (xr[j] - m[j]);
        }
    }
}

/* out[j] (j < c) and out[c + j]: the two sums of sum_job over all rows. Rows are split in T contiguous chunks
 * summed in order, each in blocks of RBLK rows. */
static void reduce(const sum_job *jb, size_t rows, double *part, float *fpart, double *out) {
    int T = nthreads(), c = jb->c;
    /* T chunks whatever number of threads actually runs (OMP_THREAD_LIMIT, nesting): the same sums either way */
#pragma omp parallel for schedule(static, 1) num_threads(T)
    for (int t = 0; t < T; t++) {
        size_t r0 = rows * t / T, r1 = rows * (t + 1) / T;
        double *acc = part + (size_t)t * 2 * c;
        float *fs = fpart + (size_t)t * 2 * c;
        memset(acc, 0, 2 * c * sizeof(double));
#ifdef EE_BN_AVX2
        if (c % 8 == 0 && ee_avx2_available()) {
            sum_avx2(jb, r0, r1, acc);
            continue;
        }
#endif
        for (size_t b0 = r0; b0 < r1; b0 += RBLK) {
            sum_block(jb, b0, b0 + RBLK < r1 ? b0 + RBLK : r1, fs);
            for (int j = 0; j < 2 * c; j++) acc[j] += fs[j];
        }
    }
    memset(out, 0, 2 * c * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int j = 0; j < 2 * c; j++) out[j] += part[(size_t)t * 2 * c + j];
}

/* y = x * scale + shift per channel */
static void affine(float *y, const float *x, const float *scale, const float *shift, size_t rows, int c) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        for (int j = 0; j < c; j++) yr[j] = xr[j] * scale[j] + shift[j];
    }
}

/* inference with either side stored nChw16c (ee_node.blk; c a multiple of 16): y = x * scale + shift, or
 * max(that, 0), each side in its own layout: the BN does the reorder as it passes over the tensor. 16 channels
 * at a time as one generic vector (GCC and clang split it into the widest the target has). */
typedef float f32x16 __attribute__((vector_size(64)));
typedef int i32x16 __attribute__((vector_size(64)));
static void affine_blk(float *y, int yblk, const float *x, int xblk, const float *scale, const float *shift, int n,
                       ee_shape s, int relu) {
    const size_t hw = (size_t)s.h * s.w, xs = xblk ? 16 : (size_t)s.c, ys = yblk ? 16 : (size_t)s.c;
    const int cb = s.c / 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int b = 0; b < cb; b++) {
            const size_t flat0 = (size_t)i * hw * s.c + (size_t)b * 16, blk0 = ((size_t)i * cb + b) * hw * 16;
            const float *xb = x + (xblk ? blk0 : flat0);
            float *yb = y + (yblk ? blk0 : flat0);
            f32x16 sc, sh, v;
            const f32x16 zero = {0};
            memcpy(&sc, scale + 16 * b, sizeof sc);
            memcpy(&sh, shift + 16 * b, sizeof sh);
            for (size_t q = 0; q < hw; q++) {
                memcpy(&v, xb + q * xs, sizeof v);
                v = v * sc + sh;
                if (relu) v = (f32x16)((i32x16)v & (v > zero));
                memcpy(yb + q * ys, &v, sizeof v);
            }
        }
}

/* sync-BN (data-parallel training): s[0..k) summed over every rank, in place */
static int sync_on(const ee_net *net) { return net->par && net->par->sync_bn && net->par->size > 1; }
static ee_status sync_sums(ee_ctx *ctx, ee_net *net, double *s, size_t k) {
    return net->par->allreduce(net->par->user, s, k, 1) ? ee_fail(ctx, EE_ERR_PEER, "sync-BN: the allreduce over the ranks failed")
                                                         : EE_OK;
}

/* y = max(x * scale + shift (+ o), 0) per channel, and the mask y > 0 as bits (if bits: c a multiple of 8, so
 * that every row starts a byte) */
#ifdef EE_BN_AVX2
/* rows [r0, r1); the threads split the rows outside (clang outlines an OpenMP loop into a function without this
 * one's target) */
__attribute__((target("avx2,fma"))) static void relu_rows_avx2(float *y, uint8_t *bits, const float *x, const float *o,
                                                               const float *scale, const float *shift, size_t r0,
                                                               size_t r1, int c) {
    const __m256 zero = _mm256_setzero_ps();
    for (size_t r = r0; r < r1; r++) {
        for (int j = 0; j < c; j += 8) {
            const size_t i = r * c + j;
            /* multiply, then add: the portable loop's roundings */
            __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(scale + j)),
                                     _mm256_loadu_ps(shift + j));
            if (o) v = _mm256_add_ps(v, _mm256_loadu_ps(o + i));
            const __m256 pos = _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
            _mm256_storeu_ps(y + i, _mm256_and_ps(pos, v));
            if (bits) bits[i >> 3] = (uint8_t)_mm256_movemask_ps(pos);
        }
    }
}
#endif
static void relu_rows(float *y, uint8_t *bits, const float *x, const float *o, const float *scale,
                      const float *shift, size_t rows, int c) {
#ifdef EE_BN_AVX2
    if (c % 8 == 0 && ee_avx2_available()) {
        const size_t nb = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < nb; b++)
            relu_rows_avx2(y, bits, x, o, scale, shift, b * ROWS_PER_TASK, task_end(b, rows), c);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *orow = o ? o + r * c : NULL;
        float *yr = y + r * c;
        if (orow)
            for (int j = 0; j < c; j++) { float v = xr[j] * scale[j] + shift[j] + orow[j]; yr[j] = v > 0 ? v : 0; }
        else
            for (int j = 0; j < c; j++) { float v = xr[j] * scale[j] + shift[j]; yr[j] = v > 0 ? v : 0; }
        if (bits)
            for (int j = 0; j < c; j += 8) {
                unsigned b = 0;
                for (int k = 0; k < 8; k++) b |= (unsigned)(yr[j + k] > 0) << k;
                bits[(r * c + j) >> 3] = (uint8_t)b;
            }
    }
}

static ee_status bn_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    bn_priv *p = priv(ctx, nd);
    if (!p) return EE_ERR_NOMEM;
    int c = nd->ins.c;
    size_t rows = (size_t)n * nd->ins.h * nd->ins.w;
    const float *x = ee_node_input(net, nd, 0);
    const float *gamma = net->params + nd->p_off, *beta = gamma + c;
    float *rm = net->state + nd->s_off, *rv = rm + c;
    float eps = nd->arg.bn.eps, mom = nd->arg.bn.momentum;
    float scale[4096], shift[4096];
    float *sc = c <= 4096 ? scale : malloc(2 * c * sizeof(float)), *sh = c <= 4096 ? shift : sc + c;
    if (!sc) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    p->last_train = train;
    p->have_bits = 0;
    p->chain_g = NULL;
    if (train) {
        double sums[2 * 4096 + 1], *s = c <= 4096 ? sums : malloc((2 * c + 1) * sizeof(double)); /* + sync-BN's count */
        /* shift by the first row for a stable one-pass variance */
        float ref[4096], *rf = c <= 4096 ? ref : malloc(c * sizeof(float));
        if (!s || !rf) {
            if (s && s != sums) free(s);
            if (rf && rf != ref) free(rf);
            if (sc != scale) free(sc);
            return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        }
        /* sync-BN: the running mean as the shift, the same on every rank (their statistics stay equal), so that
         * the sums of every rank add up: one pass and one sum over the ranks */
        const int sync = sync_on(net);
        memcpy(rf, sync ? rm : x, c * sizeof(float));
        sum_job jb = {.x = x, .m = rf, .c = c, .mode = STATS};
        reduce(&jb, rows, p->part, p->fpart, s);
        double M = (double)rows;
        ee_status e = EE_OK;
        if (sync) {
            s[2 * c] = M;
            if (!(e = sync_sums(ctx, net, s, 2 * (size_t)c + 1))) M = s[2 * c];
        }
        if (e) {
            if (s != sums) free(s);
            if (rf != ref) free(rf);
            if (sc != scale) free(sc);
            return e;
        }
        p->rows = M;
        for (int j = 0; j < c; j++) {
            double mean = s[j] / M, d = mean - rf[j];
            double var = s[c + j] / M - d * d;
            if (var < 0) var = 0;
            p->mean[j] = (float)mean;
            p->invstd[j] = (float)(1.0 / sqrt(var + eps));
            double unb = M > 1 ? var * M / (M - 1) : var;
            rm[j] = (1 - mom) * rm[j] + mom * (float)mean;
            rv[j] = (1 - mom) * rv[j] + mom * (float)unb;
            sc[j] = gamma[j] * p->invstd[j];
            sh[j] = beta[j] - p->mean[j] * sc[j];
        }
        if (s != sums) free(s);
        if (rf != ref) free(rf);
        net->state_version++;
    } else {
        for (int j = 0; j < c; j++) {
            sc[j] = gamma[j] / sqrtf(rv[j] + eps);
            sh[j] = beta[j] - rm[j] * sc[j];
        }
    }
    /* the ReLU that only reads this BN (training: after the residual add) in the same pass, into its output */
    int relu = train ? (nd->tf_on ? nd->tf_relu : -1) : nd->fuse_relu;
    const int xblk = !train && nd->in[0] >= 0 && net->nodes[nd->in[0]].blk, yblk = !train && net->nodes[relu >= 0 ? relu : (int)(nd - net->nodes)].blk;
    if (xblk || yblk)
        affine_blk(relu >= 0 ? net->nodes[relu].y : nd->y, yblk, x, xblk, sc, sh, n, nd->ins, relu >= 0);
    else if (relu >= 0) {
        const float *o = train && nd->tf_add >= 0 ? ee_node_input(net, &net->nodes[nd->tf_add], nd->tf_other) : NULL;
        uint8_t *bits = NULL;
        if (train && c % 8 == 0) { /* the mask as bits too, for the fused backward */
            size_t need = rows * (size_t)c / 8;
            if (p->bits_len < need) {
                ee_free(p->bits);
                p->bits_len = 0;
                if (!(p->bits = ee_alloc(need))) {
                    if (sc != scale) free(sc);
                    return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
                }
                p->bits_len = need;
            }
            bits = p->bits;
            p->have_bits = 1;
        }
        relu_rows(net->nodes[relu].y, bits, x, o, sc, sh, rows, c);
    } else
        affine(nd->y, x, sc, sh, rows, c);
    if (sc != scale) free(sc);
    return EE_OK;
}

/* The backward of a ReLU that a BN (not frozen) computed in training (net.c: plan_train_fusion), in one pass: the
 * ReLU's mask, the residual add's split (the shortcut's dy gets the masked gradient too) and the BN's two sums,
 * which its own backward then takes instead of reading x and dy again (the same row chunks and blocks as its own
 * reduce). */
ee_status ee_bn_chain_backward(ee_ctx *ctx, ee_net *net, ee_node *relu, int n) {
    ee_node *nd = &net->nodes[relu->tf_bn];
    bn_priv *p = priv(ctx, nd);
    if (!p) return EE_ERR_NOMEM;
    const int c = nd->ins.c;
    const size_t rows = (size_t)n * nd->ins.h * nd->ins.w;
    const float *x = ee_node_input(net, nd, 0), *g = relu->dy, *mask = relu->y, *m = p->mean;
    int bacc = 0, oacc = 0;
    float *bd, *od = NULL;
    if (nd->tf_add >= 0) {
        ee_node *add = &net->nodes[nd->tf_add];
        bd = ee_node_input_grad(net, add, 1 - nd->tf_other, &bacc);
        od = ee_node_input_grad(net, add, nd->tf_other, &oacc);
    } else
        bd = ee_node_input_grad(net, relu, 0, &bacc);
    /* with the mask as bits and the BN's dy written by no one else: the BN's backward masks the ReLU's dy itself
     * (net.c keeps that dy until then), so bd is neither written here nor read there */
    const int use_bits = p->have_bits && !bacc;
    sum_job jb = {.x = x, .dy = g, .mask = mask, .bits = p->bits, .m = m, .bd = bd, .od = od, .c = c,
                  .mode = use_bits ? CHAINB : CHAIN, .bacc = bacc, .oacc = oacc};
    reduce(&jb, rows, p->part, p->fpart, p->sums);
    p->sums_ready = 1;
    p->chain_g = use_bits ? g : NULL;
    return EE_OK;
}

/* dx (added if acc) = k1 dy' + k2 x + k3, dy' = dy where the bit is set, else 0 */
#ifdef EE_BN_AVX2
__attribute__((target("avx2,fma"))) static void dx_bits_avx2(float *dx, const float *dy, const uint8_t *bits,
                                                             const float *x, const float *k1, const float *k2,
                                                             const float *k3, size_t r0, size_t r1, int c, int acc) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (size_t r = r0; r < r1; r++) {
        for (int j = 0; j < c; j += 8) {
            const size_t i = r * c + j;
            __m256 g = _mm256_and_ps(bits_mask_avx2(bits[i >> 3], sel), _mm256_loadu_ps(dy + i));
            __m256 d = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(k1 + j), g),
                                                   _mm256_mul_ps(_mm256_loadu_ps(k2 + j), _mm256_loadu_ps(x + i))),
                                     _mm256_loadu_ps(k3 + j));
            if (acc) d = _mm256_add_ps(_mm256_loadu_ps(dx + i), d);
            _mm256_storeu_ps(dx + i, d);
        }
    }
}
#endif
static void dx_bits(float *dx, const float *dy, const uint8_t *bits, const float *x, const float *k1,
                    const float *k2, const float *k3, size_t rows, int c, int acc) {
#ifdef EE_BN_AVX2
    if (ee_avx2_available()) {
        const size_t nb = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < nb; b++)
            dx_bits_avx2(dx, dy, bits, x, k1, k2, k3, b * ROWS_PER_TASK, task_end(b, rows), c, acc);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *g = dy + r * c;
        float *d = dx + r * c;
        for (int j = 0; j < c; j++) {
            float gj = mask_bit(bits, r * c + j) ? g[j] : 0.0f, v = k1[j] * gj + k2[j] * xr[j] + k3[j];
            d[j] = acc ? d[j] + v : v;
        }
    }
}

static ee_status bn_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    bn_priv *p = priv(ctx, nd);
    if (!p) return EE_ERR_NOMEM;
    int c = nd->ins.c;
    size_t rows = (size_t)n * nd->ins.h * nd->ins.w;
    const float *x = ee_node_input(net, nd, 0), *dy = nd->dy;
    const float *gamma = net->params + nd->p_off;
    float *dgamma = net->grads + nd->p_off, *dbeta = dgamma + c;
    double *s = p->sums;
    float *k1 = p->k, *k2 = k1 + c, *k3 = k2 + c;
    const float *mean = p->mean;
    if (!p->last_train) { /* eval-mode backward (Grad-CAM through a frozen net): the running statistics */
        const float *rm = net->state + nd->s_off, *rv = rm + c;
        float *evm = k3 + c;
        for (int j = 0; j < c; j++) { evm[j] = rm[j]; p->invstd[j] = 1.0f / sqrtf(rv[j] + nd->arg.bn.eps); }
        mean = evm;
    }
    const float *chain_g = p->sums_ready && p->last_train ? p->chain_g : NULL;
    p->chain_g = NULL;
    if (p->sums_ready && p->last_train) p->sums_ready = 0; /* summed by the ReLU's backward in the same pass */
    else {
        sum_job jb = {.x = x, .dy = dy, .m = mean, .c = c, .mode = GRAD};
        reduce(&jb, rows, p->part, p->fpart, s);
    }
    for (int j = 0; j < c; j++) {
        dbeta[j] = (float)s[j];
        dgamma[j] = (float)(s[c + j] * p->invstd[j]);
    }
    /* sync-BN: gamma's and beta's gradients are this rank's (the gradient allreduce adds them up), dx takes the
     * sums over every rank (PyTorch's SyncBatchNorm does the same) */
    double M = (double)rows;
    if (p->last_train) {
        M = p->rows;
        ee_status e = sync_on(net) ? sync_sums(ctx, net, s, 2 * (size_t)c) : EE_OK;
        if (e) return e;
    }
    for (int j = 0; j < c; j++) {
        double db = s[j], dg = s[c + j] * p->invstd[j];
        /* dx = gamma*invstd * (dy - db/M - xhat*dg/M) = k1*dy + k2*x + k3 */
        float gi = gamma[j] * p->invstd[j];
        if (p->last_train) {
            k1[j] = gi;
            k2[j] = (float)(-gi * p->invstd[j] * dg / M);
            k3[j] = (float)(-gi * db / M - k2[j] * (double)mean[j]);
        } else {
            k1[j] = gi; k2[j] = 0; k3[j] = 0;
        }
    }
    int acc = 0;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (dx && chain_g)
        dx_bits(dx, chain_g, p->bits, x, k1, k2, k3, rows, c, acc);
    else if (dx) {
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * c, *g = dy + r * c;
            float *d = dx + r * c;
            if (acc) for (int j = 0; j < c; j++) d[j] += k1[j] * g[j] + k2[j] * xr[j] + k3[j];
            else for (int j = 0; j < c; j++) d[j] = k1[j] * g[j] + k2[j] * xr[j] + k3[j];
        }
    }
    return EE_OK;
}

static const ee_layer_key bn_keys[] = {
    EE_KEY("momentum", EE_KEY_FLOAT, bn.momentum, 0, 1, 0.1),
    EE_KEY("eps", EE_KEY_FLOAT, bn.eps, 1e-12, 1, 1e-5),
};
const ee_layer_ops ee_bn_ops = {
    .name = "bn", .keys = bn_keys, .nkeys = EE_NKEYS(bn_keys), .nin = 1,
    .shape = bn_shape, .tensors = bn_tensors, .init = bn_init, .forward = bn_forward, .backward = bn_backward,
    .count = bn_count, .release = bn_release,
};
