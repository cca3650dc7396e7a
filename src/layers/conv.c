/* conv.c: 2-D convolution (stride, padding, groups incl. depthwise, optional bias) through oneDNN.
 * Activations are NHWC; user weights are OIHW (GOIHW with groups). Primitives are created once per
 * (batch size, train/eval) and cached; weights are reordered into oneDNN's preferred layout only when the
 * parameters changed (net->params_version). */
#include "../dnnl_glue.h"
#include "init.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CONV_CACHE 24
/* Winograd (wino_pays) only on calls of at least EE_WINO_MIN_BATCH samples (internal.h). Its transformed weights
 * are 1.8x (F(2x2, 3x3)) to 4x (F(4x4, 3x3)) the direct ones, and one sample does not pay for reading them. WRN-32-4
 * at batch 1 (2 threads of an AVX-512 EPYC, ms per call, Winograd on nChw16c / brgconv on NHWC): 64 channels on
 * 32x32 0.199 / 0.190, 64 -> 128 0.403 / 0.387, 128 on 16x16 0.283 / 0.191, 256 on 8x8 0.233 / 0.206, 128 -> 256
 * 0.487 / 0.386, and the stride-2 convs, which took the blocked layout of their neighbours, 0.272 / 0.232 and
 * 0.357 / 0.218. The same convs timed in a network of one stage ran much faster through Winograd (128 on 16x16:
 * 0.137 ms), because there the transformed weights stayed in the L3 cache. The whole network without Winograd at
 * batch 1: 138 / 115, 144 / 121, 142 / 119, 136 / 115, 148 / 134 img/s against Winograd on its heavy convs;
 * VGG-16-BN even at 32x32 and 64x64 inputs. From batch 2 on Winograd leads again (WRN-32-4 178 / 159 img/s at
 * batch 2). */
/* ... and then on at least this many output pixels: with fewer (ResNet-56's 64 channels on 8x8 maps in batches of
 * a few samples) the reorders and the small tiles lost */
#define WINO_PIXELS 1024
/* ... or on fewer pixels when the conv is heavy: at least this many multiply-adds per tap (pixels x cin x cout).
 * That takes WRN-32-4's 128- and 256-channel convs on 16x16 and 8x8 maps, and VGG-16-BN's from 128 channels on,
 * from batch 2 on. ResNet-56's convs stay below it in small batches. */
#define WINO_MACS ((size_t)4 << 20)

typedef struct {
    int n, train, fuse, nthr; /* nthr: oneDNN fixes a primitive's thread split when it builds it */
    int sblk, dblk;           /* inference: the input, the output stored nChw16c (ee_node.blk) */
    dnnl_primitive_t fwd, bwd_d, bwd_w, reo_f, reo_d, reo_dw;
    dnnl_memory_t src, dst, w_user, w_f, bias, dsrc, ddst, w_d, dw, dw_user, dbias, bsrc, src1;
    dnnl_memory_t pad_f, pad_d, pad_w; /* scratchpads of fwd, bwd_d, bwd_w: views of `scratch` */
    void *scratch;
    uint64_t ver_f, ver_d;
    char impl[64];
    int wino;                  /* through Winograd: the activations reordered to and from nChw16c (unless they are
                                * stored so: sblk, dblk) */
    dnnl_memory_t wsrc, wdst;  /* the blocked input and output (in backward: dx and dy); in training wdst is a view
                                * of the net's scratch, which no other layer uses in a training step */
    float *wsrc_buf, *wdst_buf;
    int shared_pad;            /* the scratchpads are views of the net's shared one (ee_dnnl.pad), set at each run */
    const float *wsrc_of;      /* training: the input whose blocked copy wsrc still holds from the forward, or NULL */
    int bwblk;                 /* training, direct algorithm: backward-weights on nChw16c copies of the input and dy
                                * (wsrc, wdst: views of ee_dnnl.xblk and the net's scratch) */
} conv_prim;

typedef struct {
    conv_prim *c;          /* CONV_CACHE of them, allocated with the first primitive (the direct kernel needs none) */
    int nc;
    float *fw, *fb;        /* inference: weights and bias with the following BN folded in (OIHW) */
    uint64_t fold_gen;     /* bumped at every fold; tags the reordered folded weights */
    uint64_t fold_ver, fold_state;
    float *dpack, *dzero;  /* the direct kernel (dconv.c): packed weights; zeros (bias, padding taps) */
    float *tpack, *tw;     /* its backward-data: transposed, flipped weights, packed (and their OIHW staging) */
    float *wbuf;           /* its weight gradient's scratch */
    uint64_t tpack_ver;
    uint64_t dpack_tag;    /* what dpack was packed from: a fold generation (bit 63 set) or a params version */
    int direct;            /* forward and backward-data kernel: -1 not chosen yet, 0 oneDNN, 1 direct */
    int wino_ok;           /* inference may run oneDNN's Winograd kernel (wino_pays) */
    int sealed;            /* inference only (ee_net_seal): the parameters hold the packed, BN-folded weights */
    struct q8_prim *q;     /* int8 inference (qscale > 0): Q8_CACHE primitives */
    int nq;
    int8_t *qw;            /* the (folded) weights quantised per output channel, OIHW */
    float *qb, *qscales;   /* the bias in the accumulator's units; per channel: input step x weight step */
    uint64_t q_pver, q_sver;
    float q_in, q_next;    /* the input step those were made for, and the next conv's when this one feeds it */
    uint8_t *qin;          /* the input, already quantised by the conv before (q8_next), max_batch of them */
    size_t qin_len;
} conv_priv;

#define Q8_CACHE 16
typedef struct q8_prim {
    int n, fuse, nthr, qout, fed; /* qout: writes the next conv's quantised input; fed: reads its own that way */
    dnnl_primitive_t fwd, quant, reo_w;
    dnnl_memory_t src_f, src_q, w_user, w_q, bias, dst, src1, pad;
    void *scratch, *qbuf;  /* scratchpad; the quantised input */
    int w_ready;
} q8_prim;

#define COUT arg.conv.out
#define K arg.conv.k
#define KH arg.conv.kh     /* the kernel's height (k unless given: 1 for text) */
#define PADH arg.conv.padh
#define STRIDE arg.conv.stride
#define PAD arg.conv.pad
#define GROUPS arg.conv.groups
#define BIAS arg.conv.bias

static size_t wcount(const ee_node *nd) { return (size_t)nd->COUT * (nd->ins.c / nd->GROUPS) * nd->KH * nd->K; }

/* a call of n samples runs oneDNN's Winograd kernel (fuse: inference with the BN, ReLU and add fused; Winograd
 * takes a ReLU or an add as a post-op, not both) */
static int wino_runs(const ee_node *nd, const conv_priv *p, int n, int fuse) {
    const size_t pixels = (size_t)n * nd->out.h * nd->out.w;
    return p->wino_ok && n >= EE_WINO_MIN_BATCH && !(fuse && nd->fuse_add >= 0 && nd->fuse_relu >= 0) &&
           (pixels >= WINO_PIXELS || pixels * nd->ins.c * nd->COUT >= WINO_MACS);
}

static ee_status conv_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)net;
    int g = nd->GROUPS;
    if (nd->ins.c % g || nd->COUT % g)
        return ee_fail(ctx, EE_ERR_FORMAT, "conv '%s': groups=%d must divide in %d and out %d channels", nd->name, g,
                       nd->ins.c, nd->COUT);
    double weights = (double)nd->COUT * (nd->ins.c / g) * nd->KH * nd->K;
    if (weights > EE_MAX_LAYER_PARAMS)
        return ee_fail(ctx, EE_ERR_FORMAT, "conv '%s': %d x %d x %d x %d = %.4g weights, more than the %.0f a layer may "
                       "have", nd->name, nd->COUT, nd->ins.c / g, nd->KH, nd->K, weights, EE_MAX_LAYER_PARAMS);
    nd->out.c = nd->COUT;
    nd->out.h = (nd->ins.h + 2 * nd->PADH - nd->KH) / nd->STRIDE + 1;
    nd->out.w = (nd->ins.w + 2 * nd->PAD - nd->K) / nd->STRIDE + 1;
    if (nd->ins.h + 2 * nd->PADH < nd->KH || nd->ins.w + 2 * nd->PAD < nd->K) nd->out.h = 0;
    nd->p_len = wcount(nd) + (nd->BIAS ? nd->COUT : 0);
    return EE_OK;
}

static void conv_tensors(ee_net *net, ee_node *nd) {
    ee_net_add_tensor(net, nd, "weight", 0, nd->p_off, 4, nd->COUT, nd->ins.c / nd->GROUPS, nd->KH, nd->K);
    if (nd->BIAS) ee_net_add_tensor(net, nd, "bias", 0, nd->p_off + wcount(nd), 1, nd->COUT, 0, 0, 0);
}

static void conv_init(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    float *w = net->params + nd->p_off;
    int fan_in = nd->ins.c / nd->GROUPS * nd->KH * nd->K, fan_out = nd->COUT / nd->GROUPS * nd->KH * nd->K;
    if (nd->init == EE_INIT_KAIMING_OUT || nd->init == EE_INIT_VGG || nd->init == EE_INIT_XAVIER)
        fan_out = nd->COUT * nd->KH * nd->K; /* PyTorch's fan_out: dim 0 x receptive field */
    ee_init_weights(ctx, nd->init, w, wcount(nd), fan_in, fan_out, nd->BIAS ? w + wcount(nd) : NULL, nd->COUT);
}

static void conv_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    double outs = (double)nd->out.c * nd->out.h * nd->out.w, per = (double)nd->ins.c / nd->GROUPS * nd->KH * nd->K;
    *macs = outs * per;
    *flops = 2 * outs * per + (nd->BIAS ? outs : 0);
    /* the SDN profiler: (k^2 Cin/g mults + k^2 Cin/g - 1 adds + bias) per output, times groups */
    *prof = outs * (2 * per - 1 + (nd->BIAS ? 1 : 0)) * nd->GROUPS;
}

static void q8_release(conv_priv *p) {
    for (int i = 0; i < p->nq; i++) {
        q8_prim *c = &p->q[i];
        dnnl_primitive_t prims[] = {c->fwd, c->quant, c->reo_w};
        for (size_t j = 0; j < sizeof prims / sizeof *prims; j++)
            if (prims[j]) dnnl_primitive_destroy(prims[j]);
        dnnl_memory_t mems[] = {c->src_f, c->src_q, c->w_user, c->w_q, c->bias, c->dst, c->src1, c->pad};
        for (size_t j = 0; j < sizeof mems / sizeof *mems; j++)
            if (mems[j] && !(j == 3 && c->w_q == c->w_user)) dnnl_memory_destroy(mems[j]);
        ee_free(c->scratch);
        ee_free(c->qbuf);
    }
    free(p->q);
    p->q = NULL;
    p->nq = 0;
}

static void conv_release(ee_node *nd) {
    conv_priv *p = nd->priv;
    if (!p) return;
    q8_release(p);
    ee_free(p->qin);
    free(p->qw);
    free(p->qb);
    free(p->qscales);
    free(p->fw);
    free(p->fb);
    ee_free(p->dpack);
    free(p->dzero);
    ee_free(p->tpack);
    free(p->tw);
    ee_free(p->wbuf);
    for (int i = 0; i < p->nc; i++) {
        conv_prim *c = &p->c[i];
        dnnl_primitive_t prims[] = {c->fwd, c->bwd_d, c->bwd_w, c->reo_f, c->reo_d, c->reo_dw};
        for (size_t j = 0; j < sizeof prims / sizeof *prims; j++)
            if (prims[j]) dnnl_primitive_destroy(prims[j]);
        dnnl_memory_t mems[] = {c->src, c->dst, c->w_user, c->w_f, c->bias, c->dsrc, c->ddst, c->w_d, c->dw,
                                c->dw_user, c->dbias, c->bsrc, c->src1, c->pad_f, c->pad_d, c->pad_w, c->wsrc, c->wdst};
        for (size_t j = 0; j < sizeof mems / sizeof *mems; j++)
            if (mems[j] && !(j == 3 && c->w_f == c->w_user) && !(j == 7 && c->w_d == c->w_user) &&
                !(j == 8 && c->dw == c->dw_user))
                dnnl_memory_destroy(mems[j]);
        ee_free(c->scratch);
        ee_free(c->wsrc_buf);
        ee_free(c->wdst_buf);
    }
    free(p->c);
    free(p);
    nd->priv = NULL;
}

#define TRY(x) do { if ((x) != dnnl_success) goto fail; } while (0)

static void dims4(dnnl_dims_t d, int a, int b, int c, int e) { d[0] = a; d[1] = b; d[2] = c; d[3] = e; }

/* weights descriptor: 4-D OIHW, or 5-D GOIHW with groups */
static void weights_md_of(const ee_node *nd, dnnl_memory_desc_t *md, int any, dnnl_data_type_t dt) {
    dnnl_dims_t d;
    int g = nd->GROUPS;
    if (g == 1) {
        dims4(d, nd->COUT, nd->ins.c, nd->KH, nd->K);
        dnnl_memory_desc_init_by_tag(md, 4, d, dt, any ? dnnl_format_tag_any : dnnl_oihw);
    } else {
        d[0] = g; d[1] = nd->COUT / g; d[2] = nd->ins.c / g; d[3] = nd->KH; d[4] = nd->K;
        dnnl_memory_desc_init_by_tag(md, 5, d, dt, any ? dnnl_format_tag_any : dnnl_goihw);
    }
}
static void weights_md(const ee_node *nd, dnnl_memory_desc_t *md, int any) { weights_md_of(nd, md, any, dnnl_f32); }

/* makes `*mem` hold the layout `want`; if it differs from `user`, allocates it and a reorder user->want or
 * want->user (dir 1) */
static dnnl_status_t layout(ee_dnnl *d, dnnl_memory_t user, const dnnl_memory_desc_t *want, dnnl_memory_t *mem,
                            dnnl_primitive_t *reo, int dir) {
    const dnnl_memory_desc_t *umd;
    dnnl_memory_get_memory_desc(user, &umd);
    if (dnnl_memory_desc_equal(umd, want)) { *mem = user; return dnnl_success; }
    dnnl_status_t s = dnnl_memory_create(mem, want, d->eng, DNNL_MEMORY_ALLOCATE);
    if (s != dnnl_success) return s;
    dnnl_primitive_desc_t rpd;
    s = dir ? dnnl_reorder_primitive_desc_create(&rpd, want, d->eng, umd, d->eng, NULL)
            : dnnl_reorder_primitive_desc_create(&rpd, umd, d->eng, want, d->eng, NULL);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(reo, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return s;
}

/* A forward primitive's attributes: our scratchpad, and the post-ops of the chain the conv heads in inference
 * (fuse > 0): the residual add (a sum into dst, which holds the shortcut, when fuse == 2; a binary add of the
 * shortcut otherwise), then the ReLU. With Winograd (wino) the ReLU alone: the reorder back sums the add. */
static dnnl_status_t fused_attr(const ee_node *nd, int fuse, int wino, const dnnl_memory_desc_t *dmd,
                                dnnl_primitive_attr_t *attr) {
    dnnl_status_t s = dnnl_primitive_attr_create(attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    const int add = fuse && !wino && nd->fuse_add >= 0, relu = fuse && nd->fuse_relu >= 0;
    if (s != dnnl_success || (!add && !relu)) return s;
    dnnl_post_ops_t po;
    if ((s = dnnl_post_ops_create(&po)) != dnnl_success) return s;
    if (add) s = fuse == 2 ? dnnl_post_ops_append_sum(po, 1.0f) : dnnl_post_ops_append_binary(po, dnnl_binary_add, dmd);
    if (s == dnnl_success && relu) s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po); /* the attributes keep their own copy */
    return s;
}

/* A buffer the net's convs share (ee_dnnl.pad, .xblk) grown to at least `bytes`; 0 if out of memory. */
static int grow_shared(void **buf, size_t *len, size_t bytes) {
    if (*len >= bytes) return 1;
    ee_free(*buf);
    *len = 0;
    if (!(*buf = ee_alloc(bytes))) return 0;
    *len = bytes;
    return 1;
}

/* A primitive that oneDNN would run through its reference (C loop) implementation. */
static int ref_impl(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    return pd && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
           strncmp(impl, "ref", 3) == 0;
}

/* Backward-weights on nChw16c copies of the input and dy (conv_prim.bwblk): oneDNN's NHWC kernel for it is slow
 * on 3x3 convs of many channels and on 16-channel inputs with many outputs. Timed inside training steps at batch
 * 128 on 2 threads of an AVX-512 EPYC, copies included (ms per call, NHWC / nChw16c): WRN-32-4's 16 -> 64 3x3 22.3
 * / 9.8-12.0 and 1x1 7.7-10.1 / 4.5-5.5, 128 -> 128 stride 2 47.7-52.6 / 37.3-42.0, 256 -> 256 stride 2 38.0-48.7 /
 * 34.7-39.3. Where the NHWC kernel already runs near the forward's rate the copies cost more than they save:
 * WRN-32-4's 1x1 stride-2 shortcuts (64 -> 128 4.5-5.8 / 8.0-8.5, 128 -> 256 2.6-3.1 / 4.4-4.8) and every conv of
 * ResNet-56 (32 -> 32 1.86-2.44 / 2.33-3.68, 16 -> 32 and 32 -> 64 stride 2 1.00-1.60 / 1.43-2.24), although
 * timed alone on buffers not in cache those ran 1.2-1.7x faster blocked: in a step, dy is still in cache from
 * backward-data. */
static int bwd_blocked_pays(const ee_node *nd) {
    if (nd->GROUPS != 1 || nd->ins.c % 16 || nd->COUT % 16) return 0;
    return (nd->ins.c == 16 && nd->COUT >= 64) || (nd->ins.c >= 64 && nd->K > 1);
}

/* A primitive descriptor for op_desc from oneDNN's implementation whose name starts with `prefer` (say
 * "jit_int8"), when it has one for these shapes; otherwise its first choice, as dnnl_primitive_desc_create. */
static dnnl_status_t pd_prefer(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t op_desc, const_dnnl_primitive_attr_t attr,
                               dnnl_engine_t eng, const_dnnl_primitive_desc_t hint, const char *prefer) {
    *pd = NULL;
    dnnl_primitive_desc_iterator_t it = NULL;
    if (prefer && dnnl_primitive_desc_iterator_create(&it, op_desc, attr, eng, hint) == dnnl_success) {
        const size_t len = strlen(prefer);
        do {
            dnnl_primitive_desc_t q = dnnl_primitive_desc_iterator_fetch(it);
            const char *impl = NULL;
            if (!q) break;
            if (dnnl_primitive_desc_query(q, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
                !strncmp(impl, prefer, len)) {
                *pd = q;
                break;
            }
            dnnl_primitive_desc_destroy(q);
        } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
        dnnl_primitive_desc_iterator_destroy(it);
        if (*pd) return dnnl_success;
    }
    return dnnl_primitive_desc_create(pd, op_desc, attr, eng, hint);
}

/* The forward primitive descriptor and, in training (battr set), backward-data and backward-weights ones, all with
 * the algorithm alg on the given activation layouts. On failure nothing is left allocated. */
static dnnl_status_t make_pds(ee_dnnl *d, int train, dnnl_alg_kind_t alg, const_dnnl_primitive_attr_t attr,
                              const_dnnl_primitive_attr_t battr, const dnnl_memory_desc_t *smd,
                              const dnnl_memory_desc_t *wany, const dnnl_memory_desc_t *bp, const dnnl_memory_desc_t *dmd,
                              const dnnl_dims_t str, const dnnl_dims_t pad, dnnl_primitive_desc_t *fpd,
                              dnnl_primitive_desc_t *dpd, dnnl_primitive_desc_t *wpd) {
    dnnl_convolution_desc_t cd, bdd, bwd;
    dnnl_status_t s = dnnl_convolution_forward_desc_init(&cd, train ? dnnl_forward_training : dnnl_forward_inference, alg,
                                                         smd, wany, bp, dmd, str, pad, pad);
    *fpd = *dpd = *wpd = NULL;
    if (s == dnnl_success) s = dnnl_primitive_desc_create(fpd, &cd, attr, d->eng, NULL);
    if (s == dnnl_success && train) {
        s = dnnl_convolution_backward_data_desc_init(&bdd, alg, smd, wany, dmd, str, pad, pad);
        if (s == dnnl_success) s = dnnl_primitive_desc_create(dpd, &bdd, battr, d->eng, *fpd);
        if (s == dnnl_success) s = dnnl_convolution_backward_weights_desc_init(&bwd, alg, smd, wany, bp, dmd, str, pad, pad);
        if (s == dnnl_success) s = dnnl_primitive_desc_create(wpd, &bwd, battr, d->eng, *fpd);
    }
    if (s != dnnl_success) {
        dnnl_primitive_desc_t *all[3] = {fpd, dpd, wpd};
        for (int k = 0; k < 3; k++)
            if (*all[k]) { dnnl_primitive_desc_destroy(*all[k]); *all[k] = NULL; }
    }
    return s;
}

/* NHWC <-> nChw16c (oneDNN's blocked layout: [n][c / 16][h][w][16]) for c a multiple of 16, n samples of shape sh:
 * into the blocked x16 (back = 0), or out of it into x (back = 1), plus the values at `plus` when given (it may
 * be x itself). At least as fast as oneDNN's jit:uni reorder here, and it fuses the residual add. back = 2: the
 * same layout on both sides, plus given (to = from + plus, element by element). */
void ee_reblock(const float *from, float *to, int n, ee_shape sh, int back, const float *plus) {
    const size_t hw = (size_t)sh.h * sh.w;
    const int c = sh.c, cb = c / 16;
    if (back == 2) {
        const size_t len = (size_t)n * hw * c;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < len; k++) to[k] = from[k] + plus[k];
        return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int b = 0; b < cb; b++) {
            const size_t flat0 = (size_t)i * hw * c + (size_t)b * 16, blk0 = ((size_t)i * cb + b) * hw * 16;
            for (size_t q = 0; q < hw; q++) {
                const size_t f = flat0 + q * c, k = blk0 + q * 16;
                if (!back) memcpy(to + k, from + f, 16 * sizeof(float));
                else if (!plus) memcpy(to + f, from + k, 16 * sizeof(float));
                else
                    for (int j = 0; j < 16; j++) to[f + j] = from[k + j] + plus[f + j];
            }
        }
}

/* the conv runs in int8 in inference (ee_net_quantize set its input step, and this build has int8 kernels) */
static int q8_on(const ee_node *nd) { return nd->arg.conv.qscale > 0 && ee_int8_available(); }

static conv_priv *new_priv(ee_ctx *ctx, ee_node *nd) {
    conv_priv *p = nd->priv = calloc(1, sizeof *p);
    if (!p) ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    else p->direct = -1;
    return p;
}

/* In inference a conv heads a fused chain (ee_net_plan_fusion) when it absorbs a BN or, with no BN after it, a
 * residual add: it then writes into the chain's last node, with the add and the ReLU applied as it stores. */
static int chained(const ee_node *nd) { return nd->fuse_bn >= 0 || nd->fuse_add >= 0; }

static conv_prim *get_prim(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    conv_priv *p = nd->priv;
    if (!p && !(p = new_priv(ctx, nd))) return NULL;
#ifdef _OPENMP
    int nthr = omp_get_max_threads(); /* the threads this pass may use (ee_threads_apply) */
#else
    int nthr = 1;
#endif
    int fuse = !train && chained(nd) ? 1 + (nd->fuse_add >= 0 && nd->add_inplace) : 0; /* 2: sum in place */
    const int self = (int)(nd - net->nodes);
    const int sblk = !train && nd->in[0] >= 0 && net->nodes[nd->in[0]].blk;
    const int dblk = !train && net->nodes[fuse ? ee_fused_last(net, self) : self].blk;
    for (int i = 0; i < p->nc; i++)
        if (p->c[i].n == n && p->c[i].train == train && p->c[i].fuse == fuse && p->c[i].nthr == nthr &&
            p->c[i].sblk == sblk && p->c[i].dblk == dblk)
            return &p->c[i];
    if (p->nc == CONV_CACHE) { /* evict everything: rare (many distinct batch sizes) */
        conv_release(nd);
        return get_prim(ctx, net, nd, n, train);
    }
    ee_dnnl *d = ee_dnnl_get(ctx, net); /* loads oneDNN on the first primitive */
    if (!d) return NULL;
    if (!p->c && !(p->c = calloc(CONV_CACHE, sizeof *p->c))) { ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); return NULL; }
    conv_prim *c = &p->c[p->nc];
    memset(c, 0, sizeof *c);
    c->n = n; c->train = train; c->fuse = fuse; c->nthr = nthr; c->sblk = sblk; c->dblk = dblk;
    c->ver_f = c->ver_d = (uint64_t)-1;
    /* Winograd post-ops: a ReLU, or a residual add (added by the reblock back), not both (training has none) */
    c->wino = wino_runs(nd, p, n, fuse);
    dnnl_dims_t sd, dd, bd = {nd->COUT}, str = {nd->STRIDE, nd->STRIDE}, pad = {nd->PADH, nd->PAD};
    dims4(sd, n, nd->ins.c, nd->ins.h, nd->ins.w);
    dims4(dd, n, nd->COUT, nd->out.h, nd->out.w);
    dnnl_memory_desc_t smd, dmd, wany, wuser, bmd;
    /* 16 channels are the same bytes in both layouts: such a side is described as the other side is stored */
    dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, sblk || (nd->ins.c == 16 && dblk) ? dnnl_nChw16c : dnnl_nhwc);
    dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, dblk || (nd->COUT == 16 && sblk) ? dnnl_nChw16c : dnnl_nhwc);
    dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
    weights_md(nd, &wany, 1);
    weights_md(nd, &wuser, 0);
    const dnnl_memory_desc_t *bp = nd->BIAS || (fuse && nd->fuse_bn >= 0) ? &bmd : NULL;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t attr = NULL, battr = NULL;
    /* Scratchpads are ours (user mode): allocated once per cached primitive, with slack at the end. oneDNN 2.6's
     * jit_1x1:avx2 training conv with stride 2 and few channels writes up to 12 bytes past the scratchpad it
     * asks for (seen under valgrind on an AVX2 CPU; with library-managed scratchpads that corrupted the heap). */
    dnnl_memory_desc_t wsmd, wdmd; /* Winograd: nChw16c activations */
    dnnl_memory_desc_init_by_tag(&wsmd, 4, sd, dnnl_f32, dnnl_nChw16c);
    dnnl_memory_desc_init_by_tag(&wdmd, 4, dd, dnnl_f32, dnnl_nChw16c);
    TRY(fused_attr(nd, fuse, c->wino, &dmd, &attr));
    if (train) { /* backward passes: the scratchpad mode only */
        TRY(dnnl_primitive_attr_create(&battr));
        TRY(dnnl_primitive_attr_set_scratchpad_mode(battr, dnnl_scratchpad_mode_user));
    }
    if (c->wino && make_pds(d, train, dnnl_convolution_winograd, attr, battr, &wsmd, &wany, bp, &wdmd, str, pad, &fpd,
                            &dpd, &wpd) != dnnl_success) {
        c->wino = p->wino_ok = 0; /* not for this shape after all: the direct algorithm */
        dnnl_primitive_attr_destroy(attr);
        attr = NULL;
        TRY(fused_attr(nd, fuse, 0, &dmd, &attr));
    }
    if (!c->wino)
        TRY(make_pds(d, train, dnnl_convolution_direct, attr, battr, &smd, &wany, bp, &dmd, str, pad, &fpd, &dpd, &wpd));
    if (train && !c->wino && bwd_blocked_pays(nd)) { /* its own descriptor, kept if oneDNN has a kernel for it */
        dnnl_convolution_desc_t bwd;
        dnnl_primitive_desc_t bpd = NULL;
        if (dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &wsmd, &wany, bp, &wdmd, str,
                                                        pad, pad) == dnnl_success &&
            dnnl_primitive_desc_create(&bpd, &bwd, battr, d->eng, fpd) == dnnl_success && !ref_impl(bpd)) {
            dnnl_primitive_desc_destroy(wpd);
            wpd = bpd;
            c->bwblk = 1;
            if (nd->ins.c != 16 && !grow_shared(&d->xblk, &d->xblk_len, ee_shape_size(nd->ins) * n * sizeof(float)))
                goto fail;
            TRY(dnnl_memory_create(&c->wsrc, &wsmd, d->eng, DNNL_MEMORY_NONE));
            TRY(dnnl_memory_create(&c->wdst, &wdmd, d->eng, DNNL_MEMORY_NONE));
        } else if (bpd) {
            dnnl_primitive_desc_destroy(bpd);
        }
    }
    if (c->wino) { /* the blocked activations (ee_reblock() converts those stored NHWC) */
        /* a blocked output is written in place, unless a residual add follows (added after the conv) */
        const int wbuf = !train && (!dblk || nd->fuse_add >= 0);
        if (!sblk && !(c->wsrc_buf = ee_alloc(ee_shape_size(nd->ins) * n * sizeof(float)))) goto fail;
        if (wbuf && !(c->wdst_buf = ee_alloc(ee_shape_size(nd->out) * n * sizeof(float)))) goto fail;
        TRY(dnnl_memory_create(&c->wsrc, &wsmd, d->eng, sblk ? DNNL_MEMORY_NONE : c->wsrc_buf));
        TRY(dnnl_memory_create(&c->wdst, &wdmd, d->eng, wbuf ? c->wdst_buf : DNNL_MEMORY_NONE));
    }
    const char *impl = "";
    dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(c->impl, sizeof c->impl, "%s", impl);
    TRY(dnnl_primitive_create(&c->fwd, fpd));
    TRY(dnnl_memory_create(&c->src, &smd, d->eng, DNNL_MEMORY_NONE));
    TRY(dnnl_memory_create(&c->dst, &dmd, d->eng, DNNL_MEMORY_NONE));
    TRY(dnnl_memory_create(&c->w_user, &wuser, d->eng, DNNL_MEMORY_NONE));
    TRY(dnnl_memory_create(&c->bias, &bmd, d->eng, DNNL_MEMORY_NONE));
    if (fuse == 1 && nd->fuse_add >= 0 && !c->wino) TRY(dnnl_memory_create(&c->src1, &dmd, d->eng, DNNL_MEMORY_NONE));
    TRY(layout(d, c->w_user, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0), &c->w_f, &c->reo_f, 0));
    if (train) {
        TRY(dnnl_primitive_create(&c->bwd_d, dpd));
        TRY(dnnl_primitive_create(&c->bwd_w, wpd));
        TRY(dnnl_memory_create(&c->dsrc, &smd, d->eng, DNNL_MEMORY_NONE));
        TRY(dnnl_memory_create(&c->bsrc, &smd, d->eng, DNNL_MEMORY_NONE));
        TRY(dnnl_memory_create(&c->ddst, &dmd, d->eng, DNNL_MEMORY_NONE));
        TRY(dnnl_memory_create(&c->dbias, &bmd, d->eng, DNNL_MEMORY_NONE));
        TRY(dnnl_memory_create(&c->dw_user, &wuser, d->eng, DNNL_MEMORY_NONE));
        TRY(layout(d, c->w_user, dnnl_primitive_desc_query_md(dpd, dnnl_query_weights_md, 0), &c->w_d, &c->reo_d, 0));
        TRY(layout(d, c->dw_user, dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0), &c->dw, &c->reo_dw, 1));
    }
    { /* one buffer serves the three scratchpads: the passes of one conv never run at the same time */
        dnnl_primitive_desc_t pds[3] = {fpd, dpd, wpd};
        dnnl_memory_t *pads[3] = {&c->pad_f, &c->pad_d, &c->pad_w};
        size_t most = 0;
        for (int k = 0; k < 3; k++) {
            size_t sz = pds[k] ? dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pds[k], dnnl_query_scratchpad_md, 0)) : 0;
            if (sz > most) most = sz;
        }
        c->shared_pad = train && c->wino;
        if (c->shared_pad && !grow_shared(&d->pad, &d->pad_len, most + 4096)) goto fail;
        if (!c->shared_pad && !(c->scratch = ee_alloc(most + 4096))) goto fail;
        for (int k = 0; k < 3; k++)
            if (pds[k]) TRY(dnnl_memory_create(pads[k], dnnl_primitive_desc_query_md(pds[k], dnnl_query_scratchpad_md, 0),
                                               d->eng, c->shared_pad ? DNNL_MEMORY_NONE : c->scratch));
    }
    dnnl_primitive_attr_destroy(attr);
    if (battr) dnnl_primitive_attr_destroy(battr);
    dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    p->nc++;
    return c;
fail:
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (battr) dnnl_primitive_attr_destroy(battr);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    p->nc++; /* so that release frees what was created */
    conv_release(nd);
    ee_fail(ctx, EE_ERR_BACKEND, "oneDNN could not build conv '%s' (%d->%d k%d s%d g%d at %dx%d, batch %d)", nd->name,
            nd->ins.c, nd->COUT, nd->K, nd->STRIDE, nd->GROUPS, nd->ins.h, nd->ins.w, n);
    return NULL;
}

static ee_status run(ee_ctx *ctx, ee_dnnl *d, dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args,
                     const char *what) {
    if (dnnl_primitive_execute(p, d->strm, nargs, args) != dnnl_success)
        return ee_fail(ctx, EE_ERR_BACKEND, "oneDNN failed to run %s", what);
    return EE_OK;
}

static ee_status reorder(ee_ctx *ctx, ee_dnnl *d, dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return run(ctx, d, r, 2, a, "a weight reorder");
}

/* w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * that + beta. The folded bias fb is
 * kept; the folded weights fw only while a primitive still has to reorder them (need_w), since every cached
 * primitive holds its own copy in its preferred layout: one copy of the weights fewer in an inference process. */
static float bn_scale(const ee_net *net, const ee_node *nd, int o) {
    const ee_node *bn = &net->nodes[nd->fuse_bn];
    return net->params[bn->p_off + o] / sqrtf(net->state[bn->s_off + nd->COUT + o] + bn->arg.bn.eps); /* gamma, var */
}

static ee_status fold_bn(ee_ctx *ctx, ee_net *net, ee_node *nd, int need_w) {
    conv_priv *p = nd->priv;
    int current = p->fb && p->fold_ver == net->params_version && p->fold_state == net->state_version;
    if (current && (p->fw || !need_w)) return EE_OK;
    size_t nw = wcount(nd), per = nw / nd->COUT;
    if (!p->fb) p->fb = malloc(nd->COUT * sizeof(float));
    if (need_w && !p->fw) p->fw = malloc(nw * sizeof(float));
    if (!p->fb || (need_w && !p->fw)) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    const ee_node *bn = &net->nodes[nd->fuse_bn];
    const float *w = net->params + nd->p_off, *beta = net->params + bn->p_off + nd->COUT;
    const float *mean = net->state + bn->s_off;
    for (int o = 0; o < nd->COUT; o++) {
        float sc = bn_scale(net, nd, o), b = nd->BIAS ? w[nw + o] : 0.0f;
        if (p->fw)
            for (size_t i = 0; i < per; i++) p->fw[o * per + i] = w[o * per + i] * sc;
        p->fb[o] = (b - mean[o]) * sc + beta[o];
    }
    p->fold_ver = net->params_version;
    p->fold_state = net->state_version;
    if (!current) p->fold_gen++; /* new values: every reordered copy is stale */
    return EE_OK;
}

/* where a conv with a fused BN writes: the last node it absorbs */
static float *fused_output(ee_net *net, const ee_node *nd) {
    return net->nodes[ee_fused_last(net, (int)(nd - net->nodes))].y;
}

/* Inference with a fused BN: the folded bias, and the folded weights too unless the kernel's own copy of them
 * (reordered or packed; has_copy) already carries the current tag (`have`); the output goes into the last fused
 * node. *tag: what the folded values are tagged with. A chain without a BN keeps *w, *b and the parameters' tag. */
static ee_status folded(ee_ctx *ctx, ee_net *net, ee_node *nd, int has_copy, uint64_t have, float **w, float **b,
                        float **y, uint64_t *tag) {
    conv_priv *p = nd->priv;
    *y = fused_output(net, nd);
    if (nd->fuse_bn < 0) { /* a residual add alone: the conv's own weights and bias */
        *tag = net->params_version;
        return EE_OK;
    }
    ee_status s = fold_bn(ctx, net, nd, 0); /* bias current; the weights only if the copy needs them */
    *tag = p->fold_gen | (1ull << 63);
    if (!s && (!has_copy || have != *tag)) s = fold_bn(ctx, net, nd, 1);
    if (s) return s;
    *w = p->fw;
    *b = p->fb;
    return EE_OK;
}

static ee_status conv_run(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train, size_t off) {
    conv_prim *c = get_prim(ctx, net, nd, n, train);
    if (!c) return EE_ERR_BACKEND;
    ee_dnnl *d = EE_DNNL(net);
    float *w = net->params + nd->p_off, *b = w + wcount(nd), *y = nd->y;
    uint64_t want = net->params_version;
    conv_priv *p = nd->priv;
    if (!train && chained(nd)) { /* inference: folded BN, output straight into the last fused node */
        ee_status s = folded(ctx, net, nd, c->reo_f != NULL, c->ver_f, &w, &b, &y, &want);
        if (s) return s;
    }
    int nargs = nd->BIAS || (!train && nd->fuse_bn >= 0) ? 4 : 3;
    dnnl_exec_arg_t a[6] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->w_f}, {DNNL_ARG_DST, c->dst},
                            {DNNL_ARG_BIAS, c->bias}, {0, NULL}, {0, NULL}};
    if (!train && nd->fuse_add >= 0 && !nd->add_inplace && !c->wino) { /* the shortcut operand */
        const ee_node *add = &net->nodes[nd->fuse_add];
        dnnl_memory_set_data_handle(c->src1, (void *)(ee_node_input(net, add, nd->add_other) + off * ee_shape_size(nd->out)));
        a[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, c->src1};
    }
    dnnl_memory_set_data_handle(c->src, (void *)(ee_node_input(net, nd, 0) + off * ee_shape_size(nd->ins)));
    dnnl_memory_set_data_handle(c->dst, y + off * ee_shape_size(nd->out));
    dnnl_memory_set_data_handle(c->w_user, w);
    dnnl_memory_set_data_handle(c->bias, b);
    ee_status s;
    if (c->wino) { /* NHWC -> nChw16c, the conv, and back (adding the shortcut when an add is fused) */
        a[0].memory = c->wsrc;
        a[2].memory = c->wdst;
        if (train) dnnl_memory_set_data_handle(c->wdst, net->scratch);
        if (c->dblk && !c->wdst_buf) dnnl_memory_set_data_handle(c->wdst, y + off * ee_shape_size(nd->out));
        if (c->sblk) dnnl_memory_set_data_handle(c->wsrc, (void *)(ee_node_input(net, nd, 0) + off * ee_shape_size(nd->ins)));
        else ee_reblock(ee_node_input(net, nd, 0) + off * ee_shape_size(nd->ins), c->wsrc_buf, n, nd->ins, 0, NULL);
        c->wsrc_of = train ? ee_node_input(net, nd, 0) : NULL; /* backward-weights reads it again */
    }
    if (c->reo_f && c->ver_f != want) {
        if ((s = reorder(ctx, d, c->reo_f, c->w_user, c->w_f))) return s;
        c->ver_f = want;
        if (w == p->fw) { free(p->fw); p->fw = NULL; } /* refolded if another batch size needs it */
    }
    if (c->shared_pad) dnnl_memory_set_data_handle(c->pad_f, d->pad);
    a[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->pad_f};
    if ((s = run(ctx, d, c->fwd, nargs, a, "a convolution"))) return s;
    if (c->wino) {
        dnnl_stream_wait(d->strm);
        const float *plus = NULL; /* the shortcut of a fused add, in place in y or where it lives */
        if (!train && nd->fuse_add >= 0)
            plus = nd->add_inplace ? y + off * ee_shape_size(nd->out)
                                   : ee_node_input(net, &net->nodes[nd->fuse_add], nd->add_other) + off * ee_shape_size(nd->out);
        if (train || c->wdst_buf) /* a blocked output takes only the add */
            ee_reblock(train ? net->scratch : c->wdst_buf, y + off * ee_shape_size(nd->out), n, nd->out, c->dblk ? 2 : 1, plus);
    }
    dnnl_stream_wait(d->strm);
    return EE_OK;
}

/* zeros for the direct kernel: the bias of a conv without one, and the input row that padding taps read; as
 * many as the larger channel count, since backward-data runs the kernel with the channels swapped */
static const float *zeros(ee_ctx *ctx, conv_priv *p, const ee_node *nd) {
    if (!p->dzero) p->dzero = calloc(nd->ins.c > nd->COUT ? nd->ins.c : nd->COUT, sizeof(float));
    if (!p->dzero) ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    return p->dzero;
}

/* Inference with a fused residual add: the other operand, or the output y itself when the sum is written in
 * place; NULL without one. */
static const float *fused_residual(ee_net *net, const ee_node *nd, const float *y) {
    if (nd->fuse_add < 0) return NULL;
    return nd->add_inplace ? y : ee_node_input(net, &net->nodes[nd->fuse_add], nd->add_other);
}

/* A forward pass through the direct kernel: the weights packed once per change. In inference the BN is folded in,
 * the output goes into the last fused node and the residual is read from the shortcut (or from that output itself
 * when the sum is written in place); training runs the conv alone. */
static ee_status direct_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    conv_priv *p = nd->priv;
    float *w = net->params + nd->p_off, *b = nd->BIAS ? w + wcount(nd) : NULL;
    uint64_t tag = net->params_version;
    float *y = nd->y;
    const float *res = NULL;
    const float *z = zeros(ctx, p, nd);
    if (!z) return EE_ERR_NOMEM;
    if (!train && chained(nd)) {
        if (p->sealed) {
            if (nd->fuse_bn >= 0) b = p->fb;
            y = fused_output(net, nd);
        } else {
            ee_status s = folded(ctx, net, nd, p->dpack != NULL, p->dpack_tag, &w, &b, &y, &tag);
            if (s) return s;
        }
        res = fused_residual(net, nd, y);
    }
    if (!p->sealed && (!p->dpack || p->dpack_tag != tag)) {
        if (!p->dpack && !(p->dpack = ee_alloc(ee_dconv_packed_len(nd) * sizeof(float))))
            return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        ee_dconv_pack(nd, w, p->dpack);
        p->dpack_tag = tag;
        if (w == p->fw) { free(p->fw); p->fw = NULL; }
    }
    /* a sealed conv's parameters are its packed weights */
    ee_dconv_forward(nd, n, ee_node_input(net, nd, 0), p->sealed ? w : p->dpack, b ? b : z, res, y,
                     !train && nd->fuse_relu >= 0 && chained(nd), z);
    return EE_OK;
}

/* The kernel, chosen once per node: oneDNN where it has its AVX-512 brgconv kernels, the direct AVX2 kernel
 * elsewhere (measured: dconv.c's header), unless the context forces one. With eenn's own kernels
 * (EE_CONV_BUILTIN, the default on aarch64) the direct kernel where it fits and gconv.c's loops elsewhere;
 * EE_CONV_REFERENCE: gconv.c's loops for every conv. */
enum { K_ONEDNN = 0, K_DIRECT = 1, K_GENERIC = 2 };
/* Inference and training run oneDNN's Winograd kernel (F(4x4, 3x3), AVX-512; activations reblocked to nChw16c and
 * back) on 3x3 stride-1 convs of at least 64 channels in and out. Measured per call at batch 128, 2 threads of an
 * AVX-512 EPYC (ms, brgconv on NHWC / Winograd on nChw16c, reorders not included): 64 channels at 32x32 25.4 /
 * 13.0, 128 at 16x16 21.6 / 12.2, 256 at 8x8 21.5 / 8.8, 64 at 8x8 1.28 / 0.75; but 32 at 16x16 1.38 / 1.06 and
 * 16 at 32x32 1.99 / 2.29, where the reorders would eat the gain. In training, 64 at 8x8: forward, backward-data,
 * backward-weights 1.27 / 0.79, 1.48 / 0.76, 1.45 / 1.34; 32 at 16x16 1.57 / 1.11, 1.49 / 1.07, 1.42 / 1.87, even
 * with the four reblocks (measured: ResNet-56 training steps within noise, 67 MB more), so not taken; 16
 * channels lost 15%. Where oneDNN has no Winograd kernel (no AVX-512) the primitive is refused and the direct
 * algorithm is used. */
static int wino_pays(const ee_node *nd) {
    return nd->GROUPS == 1 && nd->K == 3 && nd->KH == 3 && nd->STRIDE == 1 && nd->PAD == 1 && nd->PADH == 1 &&
           nd->ins.c >= 64 && nd->COUT >= 64 && nd->ins.c % 16 == 0 && nd->COUT % 16 == 0;
}
static int builtin_only(ee_ctx *ctx) {
    int k = ee_ctx_conv_kernel(ctx);
    return k == EE_CONV_BUILTIN || k == EE_CONV_REFERENCE || (k != EE_CONV_ONEDNN && ee_conv_builtin_default());
}
static int kernel_of(ee_ctx *ctx, ee_node *nd) {
    conv_priv *p = nd->priv;
    if (p->direct < 0) {
        int k = ee_ctx_conv_kernel(ctx);
        int fits = ee_dconv_fits(nd) && !q8_on(nd);
        if (k == EE_CONV_REFERENCE) p->direct = K_GENERIC;
        else if (k == EE_CONV_ONEDNN) p->direct = K_ONEDNN;
        else if (fits && (k != EE_CONV_AUTO || ee_dconv_preferred() || ee_conv_builtin_default())) p->direct = K_DIRECT;
        else p->direct = builtin_only(ctx) ? K_GENERIC : K_ONEDNN;
        p->wino_ok = k == EE_CONV_AUTO && p->direct == K_ONEDNN && wino_pays(nd);
    }
    return p->direct;
}
static int use_direct(ee_ctx *ctx, ee_node *nd) { return kernel_of(ctx, nd) == K_DIRECT; }

/* The layouts inference may store this conv's input and output in (net.c: plan_blocked): 0 NHWC only (eenn's own
 * kernels, int8, groups); 1 NHWC or nChw16c (oneDNN's direct algorithm takes either); 2 the same, and oneDNN runs
 * the conv through Winograd in every call of at least EE_WINO_MIN_BATCH samples (its output pixels, or its work
 * per tap, clear the bar at that many), which wants nChw16c. Should oneDNN refuse the Winograd primitive after all
 * (an AVX-512 CPU without AVX-512BW), its direct algorithm computes the same, slowly where the two sides' layouts
 * differ. */
int ee_conv_blk_ok(ee_ctx *ctx, ee_node *nd) {
    if (!nd->priv && !new_priv(ctx, nd)) return 0;
    if (q8_on(nd) || kernel_of(ctx, nd) != K_ONEDNN || nd->GROUPS != 1) return 0;
    return wino_runs(nd, nd->priv, EE_WINO_MIN_BATCH, 1) ? 2 : 1;
}

/* A forward pass through gconv.c: in inference with the BN folded in, written into the last fused node, the
 * residual and the ReLU applied as the outputs are stored, as direct_forward does. */
static ee_status generic_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    float *w = net->params + nd->p_off, *b = nd->BIAS ? w + wcount(nd) : NULL, *y = nd->y;
    const float *res = NULL;
    uint64_t tag;
    if (!train && chained(nd)) {
        ee_status s = folded(ctx, net, nd, 0, 0, &w, &b, &y, &tag);
        if (s) return s;
        res = fused_residual(net, nd, y);
    }
    ee_status s = ee_gconv_forward(nd, n, ee_node_input(net, nd, 0), w, b, res, y,
                                   !train && nd->fuse_relu >= 0 && chained(nd));
    return s ? ee_fail(ctx, s, "out of memory") : EE_OK;
}

/* ee_net_seal: the packed weights (BN folded in when the BN is fused) replace the parameters, so that an
 * inference process holds one copy of them. Only where the direct kernel runs the conv; oneDNN keeps its own
 * reordered copies and needs the parameters for every new batch size. */
ee_status ee_conv_seal(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    if (!nd->priv && !new_priv(ctx, nd)) return EE_ERR_NOMEM;
    conv_priv *p = nd->priv;
    if (p->sealed || !use_direct(ctx, nd)) return EE_OK;
    ee_status s = nd->fuse_bn >= 0 ? fold_bn(ctx, net, nd, 0) : EE_OK; /* the folded bias */
    if (s) return s;
    float *tmp = malloc(ee_dconv_block_len(nd) * sizeof(float)), *scale = NULL;
    if (tmp && nd->fuse_bn >= 0 && (scale = malloc(nd->COUT * sizeof(float))))
        for (int o = 0; o < nd->COUT; o++) scale[o] = bn_scale(net, nd, o);
    if (!tmp || (nd->fuse_bn >= 0 && !scale)) { free(tmp); free(scale); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    ee_dconv_pack_inplace(nd, net->params + nd->p_off, scale, tmp);
    free(tmp);
    free(scale);
    free(p->fw);
    p->fw = NULL;
    ee_free(p->dpack);
    p->dpack = NULL;
    p->sealed = 1;
    return EE_OK;
}

/* A copy of a sealed net (its inference workers, net.c): the parameters copied from the sealed net hold this
 * conv's packed weights already; the copy takes the seal and the folded bias along with them. */
ee_status ee_conv_seal_copy(ee_ctx *ctx, const ee_node *from, ee_node *nd) {
    const conv_priv *q = from->priv;
    if (!q || !q->sealed) return EE_OK;
    if (!nd->priv && !new_priv(ctx, nd)) return EE_ERR_NOMEM;
    conv_priv *p = nd->priv;
    if (q->fb) {
        if (!p->fb && !(p->fb = malloc(nd->COUT * sizeof(float)))) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        memcpy(p->fb, q->fb, nd->COUT * sizeof(float));
    }
    p->direct = q->direct;
    p->sealed = 1;
    return EE_OK;
}

/* Backward-data of a stride-1 conv is a stride-1 conv of dy with the weights transposed (in <-> out) and flipped,
 * padded k-1-pad: the direct kernel runs it on a node with the shapes swapped, adding into dx when it
 * accumulates (the residual operand is dx itself). */
static int direct_bwd_data_fits(const ee_node *nd) {
    return nd->STRIDE == 1 && nd->PAD <= nd->K - 1 && nd->ins.c % 16 == 0;
}
static ee_status direct_backward_data(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, float *dx, int acc) {
    conv_priv *p = nd->priv;
    ee_node t = *nd; /* the transposed conv: dy (cout channels) -> dx (cin channels) */
    t.ins = nd->out;
    t.out = nd->ins;
    t.COUT = nd->ins.c;
    t.PAD = nd->K - 1 - nd->PAD;
    t.BIAS = 0;
    const float *z = zeros(ctx, p, nd);
    if (!z) return EE_ERR_NOMEM;
    if (!p->tpack || p->tpack_ver != net->params_version) {
        size_t nw = wcount(nd);
        if (!p->tpack && !(p->tpack = ee_alloc(nw * sizeof(float)))) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        if (!p->tw && !(p->tw = malloc(nw * sizeof(float)))) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        const float *w = net->params + nd->p_off;
        int k = nd->K, ci = nd->ins.c, co = nd->COUT;
        for (int o = 0; o < co; o++)
            for (int i = 0; i < ci; i++)
                for (int kh = 0; kh < k; kh++)
                    for (int kw = 0; kw < k; kw++)
                        p->tw[(((size_t)i * co + o) * k + (k - 1 - kh)) * k + (k - 1 - kw)] =
                            w[(((size_t)o * ci + i) * k + kh) * k + kw];
        ee_dconv_pack(&t, p->tw, p->tpack);
        p->tpack_ver = net->params_version;
    }
    ee_dconv_forward(&t, n, nd->dy, p->tpack, z, acc ? dx : NULL, dx, 0, z);
    return EE_OK;
}


/* Inference runs a batch as power-of-two chunks (100 = 64 + 32 + 4), so that the shrinking batches of early
 * exits reuse at most eight cached primitives per layer instead of creating one per size: run(n, off) for each
 * chunk of n samples starting at sample off. */
typedef ee_status (*chunk_fn)(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, size_t off);
static ee_status in_chunks(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, chunk_fn run) {
    size_t off = 0;
    for (int chunk = 1 << 30; n > 0; chunk >>= 1)
        if (n >= chunk) {
            ee_status s = run(ctx, net, nd, chunk, off);
            if (s) return s;
            off += chunk;
            n -= chunk;
        }
    return EE_OK;
}
static ee_status conv_eval(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, size_t off) {
    return conv_run(ctx, net, nd, n, 0, off);
}

/* ---------------------------------------------------------------- int8 inference
 * A conv with qscale > 0 runs in int8 in inference: its float input is quantised (step qscale, to u8, or to s8
 * when qsigned) by a oneDNN reorder, the convolution sums u8/s8 x s8 products in int32, and one multiply per
 * output channel (qscale x the channel's weight step) takes the sums back to floats, followed by the folded BN
 * bias, the residual add and the ReLU as post-ops. Everything between convolutions (pools, heads, exits) stays in
 * float, so an int8 network keeps its exits and its batch compaction unchanged. */

/* The weights: the (BN-folded) float weights quantised symmetrically per output channel, to -127..127 with step
 * max|w| / 127; the bias in the accumulator's units (oneDNN adds it before the output scale); the output scales.
 * Redone when the parameters, the BN statistics or the input step change. */
/* An int8 conv P whose output (after its fused BN and ReLU) only the next node reads, when that is an int8 conv
 * C: P writes C's quantised input itself (its output scales divided by C's step, rounded and saturated by oneDNN
 * as C's own quantisation would), and C skips that pass: no float output written and read back, one reorder
 * fewer (the first conv of every ResNet block). Only in inference-only nets, where nothing else reads that
 * output (not kept, not a head). Returns C's index, or -1. */
static int q8_next(const ee_net *net, const ee_node *P) {
    if (net->training || P->arg.conv.qscale <= 0 || P->fuse_add >= 0 || !ee_int8_available()) return -1;
    int f = P->fuse_bn >= 0 ? (P->fuse_relu >= 0 ? P->fuse_relu : P->fuse_bn) : (int)(P - net->nodes);
    const ee_node *F = &net->nodes[f];
    if (F->consumers != 1 || F->keep || f + 1 >= net->nnodes) return -1;
    const ee_node *C = &net->nodes[f + 1];
    if (C->kind != EE_KIND_CONV || C->in[0] != f || C->arg.conv.qscale <= 0) return -1;
    return f + 1;
}
/* the conv that quantises C's input for it, or -1 */
static int q8_prev(const ee_net *net, const ee_node *C) {
    int f = C->in[0], self = (int)(C - net->nodes);
    for (int i = f; i >= 0 && i >= f - 3; i--)
        if (net->nodes[i].kind == EE_KIND_CONV && q8_next(net, &net->nodes[i]) == self) return i;
    return -1;
}
/* C's buffer for its quantised input */
static uint8_t *q8_inbuf(ee_ctx *ctx, ee_net *net, ee_node *C) {
    if (!C->priv && !new_priv(ctx, C)) return NULL;
    conv_priv *p = C->priv;
    size_t len = (size_t)net->max_batch * ee_shape_size(C->ins);
    if (p->qin_len < len) {
        ee_free(p->qin);
        if (!(p->qin = ee_alloc(len))) { p->qin_len = 0; ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); return NULL; }
        p->qin_len = len;
    }
    return p->qin;
}

static ee_status q8_weights(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    conv_priv *p = nd->priv;
    const float qs = nd->arg.conv.qscale;
    const int next = q8_next(net, nd);
    const float qn = next >= 0 ? net->nodes[next].arg.conv.qscale : 0;
    if (p->qw && p->q_pver == net->params_version && p->q_sver == net->state_version && p->q_in == qs &&
        p->q_next == qn)
        return EE_OK;
    size_t nw = wcount(nd), per = nw / nd->COUT;
    const float *w = net->params + nd->p_off, *b = nd->BIAS ? w + nw : NULL;
    if (nd->fuse_bn >= 0) {
        ee_status s = fold_bn(ctx, net, nd, 1);
        if (s) return s;
        w = p->fw;
        b = p->fb;
    }
    if (!p->qw) p->qw = malloc(nw);
    if (!p->qb) p->qb = malloc(nd->COUT * sizeof(float));
    if (!p->qscales) p->qscales = malloc(nd->COUT * sizeof(float));
    if (!p->qw || !p->qb || !p->qscales) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    for (int o = 0; o < nd->COUT; o++) {
        const float *wo = w + (size_t)o * per;
        float m = 0;
        for (size_t i = 0; i < per; i++) m = fabsf(wo[i]) > m ? fabsf(wo[i]) : m;
        float step = m > 0 ? m / 127.0f : 1.0f;
        for (size_t i = 0; i < per; i++) {
            long q = lrintf(wo[i] / step);
            p->qw[(size_t)o * per + i] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
        p->qscales[o] = qs * step;
        p->qb[o] = b ? b[o] / p->qscales[o] : 0.0f;
    }
    if (nd->fuse_bn >= 0) { free(p->fw); p->fw = NULL; }
    p->q_pver = net->params_version;
    p->q_sver = net->state_version;
    p->q_in = qs;
    p->q_next = qn;
    q8_release(p); /* the primitives were built with the old output scales */
    return EE_OK;
}

/* oneDNN 2.6 picks its brgemm kernel (brgconv) for int8 convolutions on NHWC; its older jit_int8 kernels run the
 * same integer arithmetic (bit-identical outputs here) with much less work around each call where the channels are
 * few. Per call on the AVX-512 EPYC, 2 threads, brgconv / jit_int8 (ms): ResNet-56 on 28x28 inputs, 16 -> 16 at
 * batch 64 0.371 / 0.185, 32 -> 32 0.245 / 0.148, 64 -> 64 0.190 / 0.129, its 1x1 shortcuts 0.169 / 0.053 and
 * 0.092 / 0.033; at batch 1 0.0092 / 0.0066, 0.0066 / 0.0055, 0.0061 / 0.0049. WRN-32-4's 1x1 convs 1.3-2.5x
 * faster. From 128 input channels on the two are level (WRN-32-4's 128 and 256 at batch 1: 0.92-1.01), so
 * those keep oneDNN's choice. */
static int q8_jit_pays(const ee_node *nd) { return nd->K == 1 || nd->ins.c <= 64; }

static q8_prim *q8_get(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    conv_priv *p = nd->priv;
#ifdef _OPENMP
    int nthr = omp_get_max_threads();
#else
    int nthr = 1;
#endif
    int fuse = chained(nd) ? 1 + (nd->fuse_add >= 0 && nd->add_inplace) : 0;
    const int next = q8_next(net, nd), fed = q8_prev(net, nd) >= 0, qout = next >= 0;
    for (int i = 0; i < p->nq; i++)
        if (p->q[i].n == n && p->q[i].fuse == fuse && p->q[i].nthr == nthr && p->q[i].qout == qout &&
            p->q[i].fed == fed)
            return &p->q[i];
    if (p->nq == Q8_CACHE) q8_release(p);
    ee_dnnl *d = ee_dnnl_get(ctx, net);
    if (!d) return NULL;
    if (!p->q && !(p->q = calloc(Q8_CACHE, sizeof *p->q))) { ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); return NULL; }
    q8_prim *c = &p->q[p->nq];
    memset(c, 0, sizeof *c);
    c->n = n; c->fuse = fuse; c->nthr = nthr; c->qout = qout; c->fed = fed;
    dnnl_dims_t sd, dd, bd = {nd->COUT}, str = {nd->STRIDE, nd->STRIDE}, pad = {nd->PADH, nd->PAD};
    dims4(sd, n, nd->ins.c, nd->ins.h, nd->ins.w);
    dims4(dd, n, nd->COUT, nd->out.h, nd->out.w);
    dnnl_memory_desc_t sfmd, sqmd, dmd, wany, wuser, bmd;
    dnnl_memory_desc_init_by_tag(&sfmd, 4, sd, dnnl_f32, dnnl_nhwc);
    dnnl_memory_desc_init_by_tag(&sqmd, 4, sd, nd->arg.conv.qsigned ? dnnl_s8 : dnnl_u8, dnnl_nhwc);
    dnnl_memory_desc_init_by_tag(&dmd, 4, dd,
                                 !qout ? dnnl_f32 : net->nodes[next].arg.conv.qsigned ? dnnl_s8 : dnnl_u8, dnnl_nhwc);
    float *oscale = p->qscales, *nscale = NULL;
    if (qout) { /* straight to the next conv's steps */
        if (!(nscale = malloc(nd->COUT * sizeof(float)))) { ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); return NULL; }
        for (int o = 0; o < nd->COUT; o++) nscale[o] = p->qscales[o] / net->nodes[next].arg.conv.qscale;
        oscale = nscale;
    }
    dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
    weights_md_of(nd, &wany, 1, dnnl_s8);
    weights_md_of(nd, &wuser, 0, dnnl_s8);
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t fpd = NULL, rpd = NULL;
    dnnl_primitive_attr_t attr = NULL, rattr = NULL;
    const float inv = 1.0f / nd->arg.conv.qscale;
    TRY(fused_attr(nd, fuse, 0, &dmd, &attr));
    TRY(dnnl_primitive_attr_set_output_scales(attr, nd->COUT, 1 << 1, oscale));
    TRY(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &sqmd, &wany, &bmd,
                                           &dmd, str, pad, pad));
    TRY(pd_prefer(&fpd, &cd, attr, d->eng, NULL, q8_jit_pays(nd) ? "jit_int8" : NULL));
    TRY(dnnl_primitive_create(&c->fwd, fpd));
    /* the input's quantisation: x / qscale, rounded to the nearest integer and saturated */
    TRY(dnnl_primitive_attr_create(&rattr));
    TRY(dnnl_primitive_attr_set_output_scales(rattr, 1, 0, &inv));
    TRY(dnnl_reorder_primitive_desc_create(&rpd, &sfmd, d->eng, &sqmd, d->eng, rattr));
    TRY(dnnl_primitive_create(&c->quant, rpd));
    if (!fed && !(c->qbuf = ee_alloc(dnnl_memory_desc_get_size(&sqmd) + 64))) goto fail;
    TRY(dnnl_memory_create(&c->src_f, &sfmd, d->eng, DNNL_MEMORY_NONE));
    TRY(dnnl_memory_create(&c->src_q, &sqmd, d->eng, fed ? DNNL_MEMORY_NONE : c->qbuf));
    TRY(dnnl_memory_create(&c->dst, &dmd, d->eng, DNNL_MEMORY_NONE));
    TRY(dnnl_memory_create(&c->bias, &bmd, d->eng, DNNL_MEMORY_NONE));
    TRY(dnnl_memory_create(&c->w_user, &wuser, d->eng, DNNL_MEMORY_NONE));
    if (fuse == 1 && nd->fuse_add >= 0) TRY(dnnl_memory_create(&c->src1, &dmd, d->eng, DNNL_MEMORY_NONE));
    TRY(layout(d, c->w_user, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0), &c->w_q, &c->reo_w, 0));
    {
        const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(fpd, dnnl_query_scratchpad_md, 0);
        if (!(c->scratch = ee_alloc(dnnl_memory_desc_get_size(pmd) + 4096))) goto fail;
        TRY(dnnl_memory_create(&c->pad, pmd, d->eng, c->scratch));
    }
    dnnl_primitive_attr_destroy(attr);
    dnnl_primitive_attr_destroy(rattr);
    dnnl_primitive_desc_destroy(fpd);
    dnnl_primitive_desc_destroy(rpd);
    free(nscale);
    p->nq++;
    return c;
fail:
    free(nscale);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (rattr) dnnl_primitive_attr_destroy(rattr);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    p->nq++; /* so that release frees what was created */
    q8_release(p);
    ee_fail(ctx, EE_ERR_BACKEND, "oneDNN could not build the int8 conv '%s' (%d->%d k%d s%d g%d at %dx%d, batch %d)",
            nd->name, nd->ins.c, nd->COUT, nd->K, nd->STRIDE, nd->GROUPS, nd->ins.h, nd->ins.w, n);
    return NULL;
}

static ee_status q8_run(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, size_t off) {
    q8_prim *c = q8_get(ctx, net, nd, n);
    if (!c) return EE_ERR_BACKEND;
    ee_dnnl *d = EE_DNNL(net);
    conv_priv *p = nd->priv;
    void *y = chained(nd) ? fused_output(net, nd) + off * ee_shape_size(nd->out) : nd->y + off * ee_shape_size(nd->out);
    ee_status s;
    if (c->qout) { /* into the next conv's quantised input */
        uint8_t *q = q8_inbuf(ctx, net, &net->nodes[q8_next(net, nd)]);
        if (!q) return EE_ERR_NOMEM;
        y = q + off * ee_shape_size(nd->out);
    }
    if (c->fed) { /* the conv before quantised the input */
        dnnl_memory_set_data_handle(c->src_q, p->qin + off * ee_shape_size(nd->ins));
    } else {
        dnnl_memory_set_data_handle(c->src_f, (void *)(ee_node_input(net, nd, 0) + off * ee_shape_size(nd->ins)));
        dnnl_exec_arg_t qa[2] = {{DNNL_ARG_FROM, c->src_f}, {DNNL_ARG_TO, c->src_q}};
        if ((s = run(ctx, d, c->quant, 2, qa, "the quantisation of a conv's input"))) return s;
    }
    dnnl_memory_set_data_handle(c->w_user, p->qw);
    if (c->reo_w && !c->w_ready) {
        if ((s = reorder(ctx, d, c->reo_w, c->w_user, c->w_q))) return s;
        c->w_ready = 1;
    }
    dnnl_memory_set_data_handle(c->bias, p->qb);
    dnnl_memory_set_data_handle(c->dst, y);
    int nargs = 4;
    dnnl_exec_arg_t a[6] = {{DNNL_ARG_SRC, c->src_q}, {DNNL_ARG_WEIGHTS, c->w_q}, {DNNL_ARG_DST, c->dst},
                            {DNNL_ARG_BIAS, c->bias}, {0, NULL}, {0, NULL}};
    if (c->src1) {
        const ee_node *add = &net->nodes[nd->fuse_add];
        dnnl_memory_set_data_handle(c->src1, (void *)(ee_node_input(net, add, nd->add_other) + off * ee_shape_size(nd->out)));
        a[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, c->src1};
    }
    a[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->pad};
    if ((s = run(ctx, d, c->fwd, nargs, a, "an int8 convolution"))) return s;
    dnnl_stream_wait(d->strm);
    return EE_OK;
}

/* int8 convolutions of at most EE_Q8_SMALL multiply-adds run on one thread: splitting them costs more than it
 * saves. Measured on the ResNet-56 SDN with exits, 2 threads (its convs take 1.8M at batch 1): batch 1 4900 img/s
 * with every conv on 2 threads, 6400 from 3M on one; batch 128 (compacted batches of a few images after each exit)
 * 11,100 at 3M, 10,300 at 8M. A pass whose convs are all that small runs on one thread throughout (net.c). */
int ee_conv_q8_small(const ee_node *nd, int n) {
    double macs, flops, prof;
    conv_count(NULL, nd, &macs, &flops, &prof);
    return q8_on(nd) && n * macs <= EE_Q8_SMALL;
}

static ee_status q8_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    ee_status s = q8_weights(ctx, net, nd);
    if (s) return s;
#ifdef _OPENMP
    const int nthr = omp_get_max_threads();
    const int one = nthr > 1 && ee_conv_q8_small(nd, n);
    if (one) omp_set_num_threads(1);
#endif
    s = in_chunks(ctx, net, nd, n, q8_run);
#ifdef _OPENMP
    if (one) omp_set_num_threads(nthr);
#endif
    return s;
}

/* Inference: int8, or the direct kernel, or oneDNN in power-of-two chunks (in_chunks). */
int ee_conv_wino_used(const ee_node *nd) {
    const conv_priv *p = nd->kind == EE_KIND_CONV ? nd->priv : NULL;
    for (int i = 0; p && i < p->nc; i++)
        if (p->c[i].wino) return 1;
    return 0;
}

static ee_status conv_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    if (!nd->priv && !new_priv(ctx, nd)) return EE_ERR_NOMEM;
    if (!train && q8_on(nd)) return q8_forward(ctx, net, nd, n);
    int kind = kernel_of(ctx, nd);
    if (kind == K_GENERIC) return generic_forward(ctx, net, nd, n, train);
    if (train) return kind == K_DIRECT ? direct_forward(ctx, net, nd, n, 1) : conv_run(ctx, net, nd, n, 1, 0);
    if (kind == K_DIRECT) return direct_forward(ctx, net, nd, n, 0);
    return in_chunks(ctx, net, nd, n, conv_eval);
}

/* oneDNN's backward-weights: the weight (and bias) gradients from the input src and dy ddst, memories in the
 * layouts the primitive was built for, reordered back to OIHW */
static ee_status weight_grads(ee_ctx *ctx, ee_net *net, ee_node *nd, conv_prim *c, dnnl_memory_t src, dnnl_memory_t ddst) {
    ee_dnnl *d = EE_DNNL(net);
    float *g = net->grads + nd->p_off;
    ee_status s;
    dnnl_memory_set_data_handle(c->dw_user, g);
    dnnl_memory_set_data_handle(c->dbias, g + wcount(nd));
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, c->dw},
                            {DNNL_ARG_SCRATCHPAD, c->pad_w}, {DNNL_ARG_DIFF_BIAS, c->dbias}};
    if ((s = run(ctx, d, c->bwd_w, nd->BIAS ? 5 : 4, a, "a convolution backward (weights)"))) return s;
    if (c->reo_dw && (s = reorder(ctx, d, c->reo_dw, c->dw, c->dw_user))) return s;
    dnnl_stream_wait(d->strm);
    return EE_OK;
}

/* Backward-weights on nChw16c copies (bwblk): the input into the shared ee_dnnl.xblk (sized when the primitive was
 * built), dy into the net's scratch (free again once dx is done); 16 channels are the same bytes in both layouts
 * and need no copy. */
static ee_status blocked_weight_grads(ee_ctx *ctx, ee_net *net, ee_node *nd, conv_prim *c) {
    ee_dnnl *d = EE_DNNL(net);
    const float *x = ee_node_input(net, nd, 0);
    if (nd->ins.c == 16) {
        dnnl_memory_set_data_handle(c->wsrc, (void *)x);
    } else {
        ee_reblock(x, d->xblk, c->n, nd->ins, 0, NULL);
        dnnl_memory_set_data_handle(c->wsrc, d->xblk);
    }
    if (nd->COUT == 16) {
        dnnl_memory_set_data_handle(c->wdst, nd->dy);
    } else {
        ee_reblock(nd->dy, net->scratch, c->n, nd->out, 0, NULL);
        dnnl_memory_set_data_handle(c->wdst, net->scratch);
    }
    return weight_grads(ctx, net, nd, c, c->wsrc, c->wdst);
}

/* oneDNN's backward-data: dx into dsrc from dy in ddst, the weights reordered for it when the parameters changed */
static ee_status data_grads(ee_ctx *ctx, ee_net *net, ee_node *nd, conv_prim *c, dnnl_memory_t ddst, dnnl_memory_t dsrc) {
    ee_dnnl *d = EE_DNNL(net);
    ee_status s;
    dnnl_memory_set_data_handle(c->w_user, net->params + nd->p_off);
    if (c->reo_d && c->ver_d != net->params_version) {
        if ((s = reorder(ctx, d, c->reo_d, c->w_user, c->w_d))) return s;
        c->ver_d = net->params_version;
    }
    dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, c->w_d}, {DNNL_ARG_DIFF_SRC, dsrc},
                            {DNNL_ARG_SCRATCHPAD, c->pad_d}};
    if ((s = run(ctx, d, c->bwd_d, 4, a, "a convolution backward (data)"))) return s;
    dnnl_stream_wait(d->strm);
    return EE_OK;
}

/* Training through Winograd: dy to nChw16c (in the net's scratch); the weight gradients from the blocked input the
 * forward left in wsrc (reblocked again if another pass overwrote it); then dx into wsrc, which nothing reads any
 * more, and back to NHWC (added into dx when it already holds another consumer's share). */
static ee_status wino_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, conv_prim *c, float *dx, int acc) {
    const float *x = ee_node_input(net, nd, 0);
    ee_dnnl *d = EE_DNNL(net);
    ee_status s;
    dnnl_memory_set_data_handle(c->wdst, net->scratch);
    ee_reblock(nd->dy, net->scratch, c->n, nd->out, 0, NULL);
    if (c->wsrc_of != x) ee_reblock(x, c->wsrc_buf, c->n, nd->ins, 0, NULL);
    c->wsrc_of = NULL; /* dx goes there next */
    dnnl_memory_set_data_handle(c->pad_w, d->pad);
    dnnl_memory_set_data_handle(c->pad_d, d->pad);
    if ((s = weight_grads(ctx, net, nd, c, c->wsrc, c->wdst))) return s;
    if (dx) {
        if ((s = data_grads(ctx, net, nd, c, c->wdst, c->wsrc))) return s;
        ee_reblock(c->wsrc_buf, dx, c->n, nd->ins, 1, acc ? dx : NULL);
    }
    return EE_OK;
}

/* The direct kernel computes the weight gradients and, where it fits, dx; oneDNN's primitives are built only for
 * what is left to them. */
static ee_status conv_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    if (!nd->priv && !new_priv(ctx, nd)) return EE_ERR_NOMEM;
    ee_status s;
    float *w = net->params + nd->p_off, *g = net->grads + nd->p_off;
    int acc = 0, kind = kernel_of(ctx, nd), direct = kind == K_DIRECT;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (kind == K_GENERIC || (dx && direct && !direct_bwd_data_fits(nd) && builtin_only(ctx))) {
        /* gconv.c: everything (or the backward-data the direct kernel cannot do) without oneDNN */
        if (dx && (s = ee_gconv_backward_data(nd, n, nd->dy, w, dx, acc))) return ee_fail(ctx, s, "out of memory");
        dx = NULL;
        if (kind == K_GENERIC) {
            s = ee_gconv_backward_weights(nd, n, ee_node_input(net, nd, 0), nd->dy, g, nd->BIAS ? g + wcount(nd) : NULL);
            return s ? ee_fail(ctx, s, "out of memory") : EE_OK;
        }
    }
    int direct_dx = dx && direct && direct_bwd_data_fits(nd);
    conv_prim *c = NULL;
    if (!direct || (dx && !direct_dx)) {
        if (!(c = get_prim(ctx, net, nd, n, 1))) return EE_ERR_BACKEND;
        dnnl_memory_set_data_handle(c->ddst, nd->dy);
        if (c->wino) return wino_backward(ctx, net, nd, c, dx, acc);
    }
    if (direct_dx) {
        if ((s = direct_backward_data(ctx, net, nd, n, dx, acc))) return s;
    } else if (dx) {
        float *target = acc ? net->scratch : dx;
        dnnl_memory_set_data_handle(c->dsrc, target);
        if ((s = data_grads(ctx, net, nd, c, c->ddst, c->dsrc))) return s;
        if (acc) {
            size_t len = ee_shape_size(nd->ins) * n;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < len; i++) dx[i] += target[i];
        }
    }
    if (direct) {
        conv_priv *p = nd->priv;
        if (!p->wbuf && !(p->wbuf = ee_alloc(ee_dconv_packed_len(nd) * sizeof(float))))
            return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        ee_dconv_backward_weights(nd, n, ee_node_input(net, nd, 0), nd->dy, g, nd->BIAS ? g + wcount(nd) : NULL,
                                  p->wbuf);
        return EE_OK;
    }
    if (c->bwblk) return blocked_weight_grads(ctx, net, nd, c);
    dnnl_memory_set_data_handle(c->bsrc, (void *)ee_node_input(net, nd, 0));
    return weight_grads(ctx, net, nd, c, c->bsrc, c->ddst);
}

static const ee_layer_key conv_keys[] = {
    EE_KEY_REQ("out", EE_KEY_INT, conv.out, 1, 65536),
    EE_KEY_REQ("k", EE_KEY_INT, conv.k, 1, 65536),
    EE_KEY("stride", EE_KEY_INT, conv.stride, 1, 65536, 1),
    EE_KEY("pad", EE_KEY_INT, conv.pad, 0, 65536, 0),
    EE_KEY("groups", EE_KEY_INT, conv.groups, 1, 65536, 1),
    EE_KEY("bias", EE_KEY_INT, conv.bias, 0, 1, 1),
    EE_KEY("init", EE_KEY_INIT, any, 0, 0, 0),
    /* a rectangular kernel (kh x k) and its own height padding: 1 x k convolutions over text */
    {"kh", EE_KEY_INT, offsetof(ee_layer_args, conv.kh), 1, 65536, 0, 0, "k", 1},
    {"padh", EE_KEY_INT, offsetof(ee_layer_args, conv.padh), 0, 65536, 0, 0, "pad", 1},
    /* int8 inference (ee_net_quantize): the input's quantisation step, and whether it is signed */
    {"qscale", EE_KEY_FLOAT, offsetof(ee_layer_args, conv.qscale), 0, 1e30, 0, 0, NULL, 1},
    {"qsigned", EE_KEY_INT, offsetof(ee_layer_args, conv.qsigned), 0, 1, 0, 0, NULL, 1},
};
const ee_layer_ops ee_conv_ops = {
    .name = "conv", .keys = conv_keys, .nkeys = EE_NKEYS(conv_keys), .nin = 1,
    .shape = conv_shape, .tensors = conv_tensors, .init = conv_init, .forward = conv_forward,
    .backward = conv_backward, .count = conv_count, .release = conv_release,
};
