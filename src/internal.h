/* internal.h: structures shared by the library's files; not installed. */
#ifndef EE_INTERNAL_H
#define EE_INTERNAL_H

#include "eenn.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#define EE_MAX_NODES 512
/* oneDNN's Winograd convolutions run on calls of at least this many samples (layers/conv.c: wino_pays); a pass of
 * fewer stores every activation NHWC (net.c: plan_blocked) */
#define EE_WINO_MIN_BATCH 2
/* size limits of a network (docs/format.md): every shape, parameter and buffer size is checked against them in
 * 64-bit or floating-point arithmetic before anything is allocated */
#define EE_MAX_SAMPLE_VALUES ((double)(1 << 28)) /* values of one node's output for one sample */
#define EE_MAX_LAYER_PARAMS ((double)(1 << 30))  /* parameters of one layer */
#define EE_MAX_NET_PARAMS ((double)(1u << 31))   /* parameters of the network */
#define EE_NAME 48

struct ee_ctx {
    char err[512];
    int threads;
    int conv_kernel;      /* ee_conv_kernel: the inference convolution kernel */
    int text_length;      /* tokens per text example ee_dataset_load_dir reads (0: EE_TEXT_LENGTH) */
    int text_tokens;      /* ee_text_tokens */
    /* threads 0: the cores other processes leave free, measured from /proc/stat at most every 100 ms */
    double load_t, load_busy, load_self;
    int load_threads;
    uint64_t rng;
};

/* returns s after formatting the message into ctx */
ee_status ee_fail(ee_ctx *ctx, ee_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef struct { int c, h, w; } ee_shape;

/* Parameter initialisation schemes, named in the architecture text. */
enum {
    EE_INIT_TORCH = 0,   /* PyTorch default: kaiming_uniform(a=sqrt 5) weights, U(+-1/sqrt(fan_in)) bias */
    EE_INIT_KAIMING_OUT, /* kaiming_normal, fan_out, relu gain (ResNet) */
    EE_INIT_VGG,         /* N(0, sqrt(2/(k*k*cout))), zero bias (VGG conv) */
    EE_INIT_XAVIER,      /* xavier_uniform gain sqrt 2, zero bias (WRN) */
    EE_INIT_NORMAL001,   /* N(0, 0.01), zero bias (reference linear layers) */
    EE_INIT_COUNT
};
extern const char *const ee_init_names[EE_INIT_COUNT];

/* The arguments of a node, named per kind. The layer table's keys (ee_layer_key) say where each text key lands.
 * A layer kind of its own may keep its arguments in `any` through a struct declared in its file (EE_ARGS). */
/* k, pad: width; kh, padh: height. qscale > 0: an int8 convolution in inference, its input quantised with this
 * step (qsigned: to -127..127, else to 0..255; ee_net_quantize) */
typedef struct { int out, k, stride, pad, groups, bias, kh, padh; float qscale; int qsigned; } ee_conv_args;
typedef struct { int k, stride, pad; } ee_pool_args;    /* maxpool, avgpool */
typedef struct { int out, bias; } ee_linear_args;
typedef struct { float momentum, eps; } ee_bn_args;
typedef struct { float p; } ee_dropout_args;
typedef struct { int out; } ee_mixpool_args;          /* output side of the mixed max-average pool */
#define EE_ARGS_BYTES 64
typedef union {
    ee_conv_args conv;
    ee_pool_args pool;
    ee_linear_args linear;
    ee_bn_args bn;
    ee_dropout_args dropout;
    ee_mixpool_args mixpool;
    _Alignas(8) unsigned char any[EE_ARGS_BYTES];
} ee_layer_args;
/* a layer kind's own argument struct T inside a node (at most EE_ARGS_BYTES, checked where it is declared) */
#define EE_ARGS(nd, T) ((T *)(void *)(nd)->arg.any)

typedef struct ee_node {
    int kind;             /* index into ee_layers */
    int conf;             /* on a head: the node computing its learned confidence (a logit; EENet exits), or -1 */
    char name[EE_NAME];
    int in[2], nin;       /* input nodes; -1 is the network input */
    ee_shape ins, out;    /* first input's shape and the output shape */
    ee_layer_args arg;
    int init;             /* the initialisation scheme (EE_INIT_*) of a layer with weights */
    size_t p_off, p_len, s_off, s_len; /* params and state */
    int ntens, tens0;     /* named tensors of this node in net->tens */
    float *y, *dy;        /* activations and their gradients, max_batch x size */
    void *priv;           /* layer-private data (oneDNN primitives, saved statistics, masks) */
    size_t priv_bytes;    /* size of priv when it is a plain scratch buffer (ee_node_scratch) */
    int consumers;
    int seeded;           /* dy holds a value in this backward pass */
    int keep;             /* output needed after the node that reads it last (heads) */
    int last_train;       /* mode of this node's last forward (backward after an eval forward: Grad-CAM) */
    int frozen;           /* runs in eval mode, gets no gradient and no optimiser update (IC-only training) */
    int fused;            /* inference: this BN or ReLU is computed by the conv before it (folded BN, ReLU post-op) */
    int fuse_bn, fuse_relu; /* on a conv: the BN and ReLU nodes it absorbs in inference, or -1 (fuse_relu on a BN
                             * that no conv absorbs: the ReLU it computes in inference) */
    int fuse_drop;        /* on a conv: a dropout between it and that BN (the identity in inference), skipped; or -1 */
    int fuse_add, add_other; /* on a conv: the residual add it absorbs (a oneDNN binary post-op), and which input
                              * of that add is the other operand (the shortcut); -1 if none */
    int blk;              /* inference-only nets: y is stored in oneDNN's blocked layout nChw16c, [n][c/16][h][w][16],
                           * not NHWC, in the running pass (plan_blocked in net.c): blk_many in passes of at least
                           * EE_WINO_MIN_BATCH samples, 0 in passes of fewer */
    int blk_many;
    int add_inplace;      /* on a conv with a fused add, in an inference-only net: the shortcut's buffer is dead after
                           * this conv, so the conv writes into it and adds with oneDNN's sum post-op */
    int tf_relu, tf_add, tf_other; /* on a BN, in training: the ReLU that only reads it (or the residual add that only
                                    * reads it, input tf_other of that add being the shortcut, and the ReLU that only
                                    * reads the add), computed in the BN's own pass: forward, max(bn(x) [+ shortcut], 0)
                                    * straight into the ReLU's output; backward, the ReLU's mask, the add's split and
                                    * the BN's sums in one pass (bn.c). -1: none */
    int tf_bn;            /* on that ReLU or add: the BN that computes it, or -1 */
    int tf_on;            /* on such a BN: its last training forward computed the chain (the whole chain ran) */
    int def_step, last_step; /* inference-only nets: the node whose forward writes y (-1: never written, it is
                              * fused away) and the last node whose forward reads it (EE_MAX_NODES: kept) */
} ee_node;

typedef struct {
    char name[EE_NAME + 24];
    int node, ndim, dims[4], is_state;
    size_t off, count;
} ee_tensor;

#define EE_MAX_WORKERS 16
struct ee_net {
    char arch_name[EE_NAME];
    char *arch_text;
    ee_shape in;
    int classes;
    int nnodes;
    ee_node nodes[EE_MAX_NODES];
    int heads[EE_MAX_HEADS], nheads;
    double head_flops[EE_MAX_HEADS]; /* FLOPs per sample up to each head, filled on first use (0: not yet) */
    ee_tensor *tens;
    int ntens;
    float *params, *grads, *state;
    size_t nparams, nstate;
    uint64_t params_version;
    uint64_t state_version; /* bumped when BN running statistics change (folded inference weights follow) */
    int max_batch, training, cur_n;
    int eval_chunk;       /* inference runs the whole network on chunks of this many samples (cache-sized) */
    float *x;             /* copy of the network input, max_batch */
    float *dx;            /* input gradient if wanted */
    int want_dx, dx_seeded;
    int any_frozen;
    float *pool[EE_MAX_NODES]; /* inference-only nets: activation buffers shared by nodes whose lifetimes do not
                                * overlap (npool of them); training nets give every node its own y */
    size_t pool_len[EE_MAX_NODES]; /* floats in each */
    int npool;
    float *dpool[EE_MAX_NODES]; /* training nets: the gradients dy, shared by nodes whose backward lifetimes do not
                                 * overlap (ndpool of them) */
    size_t dpool_len[EE_MAX_NODES];
    int ndpool;
    int fusion_off;       /* inference fusion switched off (Grad-CAM) */
    int blk_off;          /* inference keeps every activation NHWC (no nChw16c tensors: tests compare the two) */
    int bwd_stop;         /* the running backward stops after this node (ee_net_backward_until) */
    int sealed;           /* ee_net_seal: inference only, packed weights in place of some parameters */
    uint64_t fp_weights;  /* sealed nets: the hash of the architecture and weights, taken before sealing */
    float *scratch;       /* max activation size x max_batch, for gradient accumulation */
    size_t scratch_len;
    void *dnnl;           /* engine and stream (dnnl.c) */
    char **meta_keys, **meta_vals;
    int nmeta;
    ee_parallel *par;     /* data-parallel training in progress (ee_train): sync-BN reduces over its ranks */
    int eval_workers;     /* inference on several cores: 0 automatic, 1 off, N >= 2 that many (ee_net_set_eval_workers) */
    ee_net *wk_net[EE_MAX_WORKERS - 1]; /* the workers' copies of the net (the first worker is the net itself) */
    ee_ctx *wk_ctx[EE_MAX_WORKERS - 1];
    uint64_t wk_pver, wk_sver; /* the params_version and state_version the copies hold */
};

/* A key of a layer's text line (docs/format.md): where its value goes, what it accepts and its default. The
 * parser, the canonical writer and the model files read these, so a key is declared once, here. */
typedef enum {
    EE_KEY_INT,    /* an int in ee_layer_args at `slot`, written as %d */
    EE_KEY_FLOAT,  /* a float in ee_layer_args at `slot`, written as %g */
    EE_KEY_INIT,   /* the node's initialisation scheme (ee_init_names), written by name */
} ee_key_type;
typedef struct {
    const char *name;
    ee_key_type type;
    size_t slot;            /* offsetof(ee_layer_args, ...) */
    double lo, hi;          /* accepted range */
    double def;             /* the value when the key is absent (not required) */
    int required;
    const char *def_from;   /* if set: absent, the key takes the value of this earlier key (pool stride = k) */
    int quiet;              /* not written when it equals def_from's key (conv kh = k), or without def_from, its
                             * default (conv qscale=0) */
} ee_layer_key;
#define EE_KEY(nm, ty, member, lo, hi, def) {nm, ty, offsetof(ee_layer_args, member), lo, hi, def, 0, NULL, 0}
#define EE_KEY_REQ(nm, ty, member, lo, hi) {nm, ty, offsetof(ee_layer_args, member), lo, hi, 0, 1, NULL, 0}

/* One layer kind: its name and text keys, and what it computes. A new kind is a file that defines one of these
 * and a line in the table (layers/table.c). */
typedef struct {
    const char *name;
    const ee_layer_key *keys;   /* in the order the canonical text writes them */
    int nkeys;
    int nin;                    /* inputs: 1, or 2 (add) */
    /* checks arguments, sets node->out, p_len and s_len; returns EE_OK or an error with a message */
    ee_status (*shape)(ee_ctx *ctx, ee_net *net, ee_node *nd);
    /* declares named tensors (ee_net_add_tensor) */
    void (*tensors)(ee_net *net, ee_node *nd);
    void (*init)(ee_ctx *ctx, ee_net *net, ee_node *nd);
    ee_status (*forward)(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train);
    ee_status (*backward)(ee_ctx *ctx, ee_net *net, ee_node *nd, int n);
    void (*count)(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof_ops);
    void (*release)(ee_node *nd);
} ee_layer_ops;
/* the layer table (layers/table.c), indexed by ee_node.kind; the built-in kinds come first, in ee_kind order */
extern const ee_layer_ops *const ee_layers[];
extern const int ee_nlayers;
#define EE_NKEYS(keys) ((int)(sizeof(keys) / sizeof *(keys)))

/* the backward of a ReLU that its BN computed in training (bn.c) */
ee_status ee_bn_chain_backward(ee_ctx *ctx, ee_net *net, ee_node *relu, int n);
/* an int8 convolution (in inference) of at most EE_Q8_SMALL multiply-adds on n samples: it runs on one thread */
#define EE_Q8_SMALL (3.0 * 1024 * 1024)
int ee_conv_q8_small(const ee_node *nd, int n);

/* ee_net_backward over the nodes after `stop` only: their gradients, and stop's dy complete (net.c) */
ee_status ee_net_backward_until(ee_ctx *ctx, ee_net *net, int n, int stop);

/* packs a conv's weights in place of its parameters when the direct kernel runs it (ee_net_seal; conv.c) */
ee_status ee_conv_seal(ee_ctx *ctx, ee_net *net, ee_node *nd);
ee_status ee_conv_seal_copy(ee_ctx *ctx, const ee_node *from, ee_node *nd);
/* EE_ERR_ARG with a message if the net is sealed: `what` cannot be done any more */
ee_status ee_net_check_unsealed(ee_ctx *ctx, const ee_net *net, const char *what);
/* how many workers ee_net_forward_range splits this pass between (1: none; net.c, ee_net_set_eval_workers) */
int ee_eval_workers(const ee_net *net, int n, int from, int to, int train);
/* Runs fn on W contiguous shares of n samples at once: share 0 on net in this thread, share k on the net's
 * worker copy k - 1 (made on first use, prepared for m samples, its weights brought up to date) in a thread of
 * its own, each on an even share of the cores (net.c, ee_net_set_eval_workers). The first error wins. */
typedef ee_status (*ee_share_fn)(ee_ctx *ctx, ee_net *net, int k, int r0, int m, void *user);
ee_status ee_net_run_shares(ee_ctx *ctx, ee_net *net, int n, int W, ee_share_fn fn, void *user);
/* frees the inference workers' copies of the net (made again on their next use): its plan or layers changed */
void ee_net_drop_workers(ee_net *net);
/* a second network with the same architecture, metadata, parameters and statistics (`what` names it in errors) */
ee_status ee_net_clone(ee_ctx *ctx, const ee_net *src, const char *what, ee_net **out);
/* inference: the node whose output the fused chain that node i heads writes (a conv with its BN, dropout, add
 * and ReLU; a BN with its ReLU), or i itself */
int ee_fused_last(const ee_net *net, int i);

/* the direct convolution (layers/dconv.c; AVX2, NEON or generic vectors): inference, training forward, stride-1 backward-data, weight
 * gradients */
int ee_avx2_available(void);   /* x86-64 built with AVX2 kernels, running on an AVX2 + FMA CPU */
int ee_dconv_available(void);  /* the direct convolution runs here: AVX2 + FMA, NEON, or generic vectors */
int ee_dconv_preferred(void);  /* the default kernel here: faster than oneDNN on this CPU */
int ee_dconv_fits(const ee_node *nd);
int ee_conv_builtin_default(void); /* EE_CONV_AUTO means eenn's own kernels only (aarch64) */
int ee_conv_wino_used(const ee_node *nd); /* a primitive of this conv runs oneDNN's Winograd kernel (inference or training) */
/* the layouts inference may store this conv's input and output in: 0 NHWC, 1 NHWC or nChw16c, 2 either and
 * oneDNN runs it through Winograd at every batch of at least EE_WINO_MIN_BATCH samples */
int ee_conv_blk_ok(ee_ctx *ctx, ee_node *nd);
/* NHWC -> nChw16c (back 0), nChw16c -> NHWC (back 1), adding `plus` (same layout as `to`, may be `to`) when not
 * NULL; back 2: to = from + plus in one layout. c a multiple of 16 */
void ee_reblock(const float *from, float *to, int n, ee_shape sh, int back, const float *plus);
/* node `node`'s output for n samples, read out as NHWC into `to`, or set from NHWC `from` (either layout inside;
 * setting starts a pass of n samples from there, in the layouts planned for n) */
void ee_node_output_get(const ee_net *net, int node, float *to, int n);
void ee_node_output_set(ee_net *net, int node, const float *from, int n);
/* gconv.c: every convolution shape, plain loops; EE_ERR_NOMEM when scratch cannot be had */
ee_status ee_gconv_forward(const ee_node *nd, int n, const float *x, const float *w_oihw, const float *bias,
                           const float *res, float *y, int relu);
ee_status ee_gconv_backward_data(const ee_node *nd, int n, const float *dy, const float *w_oihw, float *dx, int acc);
ee_status ee_gconv_backward_weights(const ee_node *nd, int n, const float *x, const float *dy, float *dw_oihw,
                                    float *db);
size_t ee_dconv_packed_len(const ee_node *nd);
void ee_dconv_pack(const ee_node *nd, const float *w_oihw, float *packed);
size_t ee_dconv_block_len(const ee_node *nd);
void ee_dconv_pack_inplace(const ee_node *nd, float *w_oihw, const float *scale, float *tmp);
void ee_dconv_forward(const ee_node *nd, int n, const float *x, const float *packed, const float *bias,
                      const float *res, float *y, int relu, const float *zero);
void ee_dconv_backward_weights(const ee_node *nd, int n, const float *x, const float *dy, float *dw_oihw, float *db,
                               float *buf);

/* log sum_j exp(z_j) of k logits, shifted by their maximum */
double ee_logsumexp(const float *z, int k);

/* the last node head h needs before its exit can be decided: the head, or its confidence node if that comes after
 * it (a gate that reads the head's own logits) */
static inline int ee_head_end(const ee_net *net, int h) {
    int hd = net->heads[h], g = net->nodes[hd].conf;
    return g > hd ? g : hd;
}

/* early-exit inference over part of the network (exits.c): from node node0 (its input put in place by the caller;
 * 0: from x) and head head0, with the per-sample state st carried in (NULL: fresh), up to node `stop`, where the
 * samples still going are listed in left (nleft of them). seg NULL: the whole network. */
typedef struct {
    int node0, head0, stop;
    int *left, nleft;
} infer_seg;
ee_status ee_infer_segment(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_exit_policy *p,
                           const ee_infer_limits *lim, infer_seg *seg, ee_exit_state *st, uint8_t *pred, float *conf,
                           uint8_t *exit_head, uint8_t *why);

/* 64-bit FNV-1a of the architecture text, the parameters and the state (split.c) */
uint64_t ee_net_weights_hash(const ee_net *net);

/* helpers */
static inline size_t ee_shape_size(ee_shape s) { return (size_t)s.c * s.h * s.w; }
const float *ee_node_input(const ee_net *net, const ee_node *nd, int i);
ee_shape ee_node_input_shape(const ee_net *net, const ee_node *nd, int i);
/* gradient buffer of input i and whether this node must add into it (1) or may overwrite it (0); NULL if the
 * input needs no gradient */
float *ee_node_input_grad(ee_net *net, ee_node *nd, int i, int *accumulate);
void ee_net_add_tensor(ee_net *net, ee_node *nd, const char *suffix, int is_state, size_t off, int ndim, int d0,
                       int d1, int d2, int d3);
/* the node's scratch buffer (nd->priv) grown to at least `bytes` and kept between calls; NULL if out of memory */
void *ee_node_scratch(ee_node *nd, size_t bytes);
void ee_node_release_scratch(ee_node *nd);
void *ee_alloc(size_t bytes);  /* 64-byte aligned, zeroed; NULL on failure */
void ee_free(void *p);
void ee_fill_uniform(ee_ctx *ctx, float *p, size_t n, float lo, float hi);
void ee_fill_normal(ee_ctx *ctx, float *p, size_t n, float stdv);

/* oneDNN glue (dnnl.c; dnnl_glue.h) */
/* marks conv -> BN (-> ReLU) chains that inference runs as one fused convolution */
void ee_net_plan_fusion(ee_net *net);
/* on = 0: no BN folding or ReLU post-ops, so that an eval forward keeps every activation (Grad-CAM backward) */
/* fusion on or off; an inference-only net re-plans its shared activation buffers (EE_ERR_NOMEM possible) */
ee_status ee_net_set_fusion(ee_ctx *ctx, ee_net *net, int on);
/* the exit of a sample from its heads' scores under p (policy.c); *answer is the head whose prediction is used */
int ee_policy_decide(const ee_exit_policy *p, const float *score, int heads, int *answer);
/* JEI-DNN's rule, one gate at a time: from gate g_l and the state (the sum of earlier g, the product of earlier
 * 1 - q; start at 0 and 1), the conditional exit probability q_l; the state moves on */
float ee_gate_jei_step(double *sum_g, double *prod, float g);
/* is a better than b for the target (policy.c)? drop: the lower cost within the accuracy floor `limit`; budget: the
 * higher accuracy within the cost `limit` */
/* ee_policy_fit_bolukbasi, also giving each gate's training labels and weights (learned.c): labels[k * n + i],
 * weights[k * n + i] for IC k and sample i (either may be NULL) */
ee_status ee_bolukbasi_fit(ee_ctx *ctx, const ee_outputs *val, const double *cost, double lambda, const int *jump_to,
                           ee_exit_policy *p, ee_exit_stats *st, uint8_t *labels, double *weights);
int ee_stats_better(const ee_exit_stats *a, const ee_exit_stats *b, ee_target_kind t, double limit);
/* 1 if p jumps ahead after some IC; head h's jump gate value (0 if it has none); the cost of a path that ran the
 * heads with ran[h] set and exited at exit_head: cost[exit_head] if it skipped none, else the sum of the segments
 * it ran (cost is cumulative per head) (policy.c) */
int ee_policy_has_jumps(const ee_exit_policy *p);
float ee_policy_jump_score(const ee_exit_policy *p, int h, const float *logits, int k);
double ee_policy_path_cost(const double *cost, const uint8_t *ran, int exit_head);
/* 1 if p's scores must pass through ee_gate_jei_step before the thresholds */
static inline int ee_policy_jei(const ee_exit_policy *p) { return p->kind == EE_SCORE_GATE && p->gate_rule == EE_GATE_JEI; }
/* removes a metadata entry if present (net.c) */
void ee_net_unset_meta(ee_net *net, const char *key);
void ee_dnnl_free(ee_net *net);
void ee_threads_apply(ee_ctx *ctx);
/* the threads of part k when `parts` parts share `cores` cores evenly (the first cores % parts take one more; at
 * least 1 each): training replicas, inference workers */
int ee_core_share(int cores, int parts, int k);
/* row-major C(m,n) = alpha * op(A) op(B) + beta * C; small products in plain C, others through oneDNN */
ee_status ee_sgemm(ee_ctx *ctx, char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc);

/* crc32 of the model file (zlib) */
uint32_t ee_crc32(uint32_t crc, const void *buf, size_t len);

/* architecture text */
ee_status ee_arch_parse(ee_ctx *ctx, const char *text, const char *srcname, ee_net *net);
char *ee_arch_builtin(const char *arch, int c, int h, int w, int classes, ee_ctx *ctx);
char *ee_arch_to_text(const ee_net *net); /* malloc-ed canonical text, NULL if out of memory */

void ee_net_backbone_mask(const ee_net *net, uint8_t *mask);
/* exits (sdn.c): cnn with text blocks inserted after nodes[k], weights copied; position checks */
ee_status ee_net_insert_blocks(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int n, char *const *blocks,
                               const char *srcname, ee_net **out);
ee_status ee_check_exit_positions(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int n, const char *what);
/* a block end of a CNN for exit placement (sdn.c): a residual sum, a pool, or a ReLU not followed by a pool */
int ee_is_block_end(const ee_net *net, int i);

/* model files (io.c) */
typedef struct { const char *name; const float *data; size_t count; int ndim, dims[4]; } io_tensor;
ee_status ee_io_write(ee_ctx *ctx, const ee_net *net, const ee_meta *meta, int nmeta, const io_tensor *extra,
                      int nextra, const char *path);
ee_status ee_io_read(ee_ctx *ctx, const char *path, ee_net **net_out, const char *extra_name, float *extra_dst,
                     size_t extra_count);

/* the cores that other processes leave free, measured over the last 100 ms (or since the last measurement, if
 * that was under a second ago); 1 without OpenMP */
int ee_ctx_idle_cores(ee_ctx *ctx);
/* ee_alloc in whole 2 MB pages that the kernel is asked to back with huge pages (from 4 MB; freed with
 * ee_free): a training network's activations and gradients, which every step sweeps, with 512 times fewer page
 * faults when they are first touched. Steps measured 1.02x and 1.10x (ResNet-56), 1.06x and 1.01x (WRN-32-4) in
 * alternating runs: at most a little faster. */
void *ee_alloc_huge(size_t bytes);
/* n draws of ee_rng_next skipped at once */
void ee_rng_skip(ee_ctx *ctx, uint64_t n);
/* the draws ee_dataset_batch makes for each sample with this augmentation */
int ee_augment_draws(const ee_augment *aug);

#endif
