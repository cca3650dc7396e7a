/* eenn.h: the one public header of eenn, a C library for early-exit neural networks.
 *
 * Conventions:
 *  - Every function that can fail returns an ee_status; EE_OK is 0. The readable reason is kept in the
 *    ee_ctx passed in (ee_ctx_error). The library never exits and never writes to stdout.
 *  - No hidden global state: random numbers, thread count and the last error travel in an ee_ctx.
 *  - Activations are float32, NHWC (n, h, w, c). Weights are stored as PyTorch stores them (conv OIHW,
 *    linear out x in), so that files and fixtures map one to one onto PyTorch modules.
 *  - A network is a list of nodes in topological order. Any node may be marked as an output head;
 *    a forward pass can run a range of nodes and continue later on a subset of the batch.
 */
#ifndef EENN_H
#define EENN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/* the shared library exports these declarations and nothing else (it is built with -fvisibility=hidden) */
#if defined(__GNUC__) && defined(EE_BUILDING_LIBRARY)
#pragma GCC visibility push(default)
#endif

#define EE_VERSION_STRING "0.1.0"
#define EE_MAX_HEADS 16 /* output heads of a network: internal classifiers and the final one */

typedef enum {
    EE_OK = 0,
    EE_ERR_ARG,      /* an impossible argument or flag */
    EE_ERR_IO,       /* a file could not be opened, read or written */
    EE_ERR_FORMAT,   /* a file is truncated, corrupted, of another version, or does not match */
    EE_ERR_NOMEM,    /* an allocation failed */
    EE_ERR_BACKEND,  /* oneDNN refused a primitive */
    EE_ERR_NUMERIC,  /* NaN or infinite loss */
    EE_ERR_PEER,     /* data-parallel training: another rank failed (it reports why) */
} ee_status;

/* ---------------------------------------------------------------- context */
typedef struct ee_ctx ee_ctx;
ee_ctx *ee_ctx_new(void);
void ee_ctx_free(ee_ctx *ctx);
const char *ee_ctx_error(const ee_ctx *ctx); /* message of the last failure, "" if none */
/* sizeof a public struct by its name ("ee_exit_policy", "ee_train_config", ...), 0 if unknown: bindings written
 * without a compiler (Python's ctypes) check their mirrors of the structs against it */
size_t ee_abi_size(const char *type);
/* 0 (the default): every core that other processes leave free, measured while the context works (the CPU time of
 * the machine minus this process's over the last 100 ms, from /proc/stat): with one of two cores busy elsewhere,
 * OpenMP threads that wait at every barrier for a descheduled partner would run at half the speed of one. */
void ee_ctx_set_threads(ee_ctx *ctx, int threads);
int ee_ctx_threads(const ee_ctx *ctx);
/* How ee_dataset_load_dir reads a text directory: the tokens per example (0: EE_TEXT_LENGTH) and which tokens
 * (ee_text_tokens: bytes or hashed words): a text model's input, set before loading data for it. */
void ee_ctx_set_text_length(ee_ctx *ctx, int tokens);
void ee_ctx_set_text_tokens(ee_ctx *ctx, int kind);
/* The convolution kernel. AUTO: oneDNN on x86-64 CPUs with AVX-512 (its brgconv kernels), eenn's direct AVX2 kernel
 * on AVX2-only CPUs, where it measured faster: for inference, the training forward, the backward-data of stride-1
 * convs and the weight gradients; on aarch64, BUILTIN. ONEDNN or DIRECT force one (DIRECT applies to ungrouped
 * square convs with a multiple of 16 output channels where the direct kernel runs; others use oneDNN). BUILTIN:
 * eenn's own kernels only, never oneDNN: the direct kernel where it fits, plain loops (any shape, groups and
 * depthwise included) elsewhere. REFERENCE: those plain loops for every conv (slow; a reference to check the
 * other kernels against on a new CPU). Set it before preparing a network for inference (ee_net_prepare) or its
 * first pass: each conv keeps the kernel it chose then. */
typedef enum { EE_CONV_AUTO = 0, EE_CONV_ONEDNN, EE_CONV_DIRECT, EE_CONV_BUILTIN, EE_CONV_REFERENCE } ee_conv_kernel;
void ee_ctx_set_conv_kernel(ee_ctx *ctx, ee_conv_kernel k);
ee_conv_kernel ee_ctx_conv_kernel(const ee_ctx *ctx);
void ee_ctx_seed(ee_ctx *ctx, uint64_t seed);
uint64_t ee_ctx_rng_state(const ee_ctx *ctx);
void ee_ctx_set_rng_state(ee_ctx *ctx, uint64_t state);
uint64_t ee_rng_next(ee_ctx *ctx);         /* 64 random bits */
float ee_rng_uniform(ee_ctx *ctx);         /* [0, 1) */
float ee_rng_normal(ee_ctx *ctx);          /* N(0, 1) */
const char *ee_status_name(ee_status s);

/* ---------------------------------------------------------------- networks */
typedef struct ee_net ee_net;

/* The built-in layer kinds, in the order of the library's layer table. A node's kind is named by its text
 * ("conv", ...) in files and in ee_node_info; these values only name the built-in ones. */
typedef enum {
    EE_KIND_CONV = 0, EE_KIND_BN, EE_KIND_RELU, EE_KIND_MAXPOOL, EE_KIND_AVGPOOL, EE_KIND_GAP, EE_KIND_LINEAR,
    EE_KIND_DROPOUT, EE_KIND_FLATTEN, EE_KIND_ADD, EE_KIND_MIXPOOL
} ee_kind;

/* What `eenn info` shows about one node. */
typedef struct {
    const char *name;      /* unique node name */
    const char *kind;      /* "conv", "bn", ... */
    int in_c, in_h, in_w;  /* shape of the first input */
    int c, h, w;           /* output shape */
    size_t params;         /* trainable parameters */
    double macs;           /* true multiply-accumulates per image (FLOPs = 2 x macs for conv / linear) */
    double flops;          /* true floating-point operations per image */
    double profiler_ops;   /* the SDN reference profiler's count, quirks included (docs/design.md) */
    int is_head;           /* 1 if this node is an output head */
} ee_node_info;

/* Builds one of the built-in backbones: "resnet20", "resnet56", "vgg16bn", "wrn32_4", "mobilenet".
 * c, h, w: input shape; classes: output classes. Stems with stride 2 are chosen for 64-pixel inputs,
 * as in the SDN reference code. */
ee_status ee_net_builtin(ee_ctx *ctx, const char *arch, int c, int h, int w, int classes, ee_net **out);
/* The text description of a built-in backbone, for users who want to start a custom one from it.
 * The caller frees the returned string with free(). */
ee_status ee_builtin_text(ee_ctx *ctx, const char *arch, int c, int h, int w, int classes, char **text);
/* Parses an architecture description (docs/format.md). srcname is used in error messages. */
ee_status ee_net_from_text(ee_ctx *ctx, const char *text, const char *srcname, ee_net **out);
void ee_net_free(ee_net *net);
const char *ee_net_arch(const ee_net *net);   /* the canonical text of the architecture */
const char *ee_net_name(const ee_net *net);   /* the "name" of the architecture, e.g. "resnet56" */
int ee_net_num_nodes(const ee_net *net);
void ee_net_node_info(const ee_net *net, int i, ee_node_info *info);
/* The index of the node called `name`, or -1. */
int ee_net_find_node(const ee_net *net, const char *name);
int ee_net_num_heads(const ee_net *net);
int ee_net_head_node(const ee_net *net, int head);
/* The node that computes head `head`'s learned confidence (a logit; EENet exits), or -1. */
int ee_net_head_confidence(const ee_net *net, int head);
int ee_net_classes(const ee_net *net);
void ee_net_input_shape(const ee_net *net, int *c, int *h, int *w);

/* Parameters: one contiguous buffer; gradients and optimiser state have the same layout. */
size_t ee_net_num_params(const ee_net *net);
float *ee_net_params(ee_net *net); /* NULL once the net is sealed (ee_net_seal) */
/* gradients: allocated on first use (ee_net_prepare for training, or this call); NULL if out of memory */
float *ee_net_grads(ee_net *net);
/* Non-trained state (batch-norm running statistics), also one buffer. */
size_t ee_net_num_state(const ee_net *net);
float *ee_net_state(ee_net *net);
/* Named tensors (parameters and state), for files and tests. Returns -1 if absent. */
int ee_net_num_tensors(const ee_net *net);
int ee_net_find_tensor(const ee_net *net, const char *name);
void ee_net_tensor(ee_net *net, int i, const char **name, float **data, size_t *count, int *ndim, int dims[4],
                   int *is_state);
/* Call after changing parameters or state by hand, so that cached (reordered, BN-folded) weights are refreshed. */
void ee_net_params_changed(ee_net *net);

/* Initialises every parameter with the scheme the architecture names (reference initialisations). */
ee_status ee_net_init(ee_ctx *ctx, ee_net *net);
/* Allocates activations for batches up to max_batch. training != 0 also allocates gradients. */
ee_status ee_net_prepare(ee_ctx *ctx, ee_net *net, int max_batch, int training);

/* Inference only from here on, with one copy of the weights instead of two: every convolution that eenn's
 * direct kernel runs gets its weights packed for that kernel, with the batch norm it absorbs folded in, in the
 * place of its parameters (as ONNX Runtime frees initializers after prepacking). Call after
 * ee_net_prepare(..., training = 0) and any ee_net_keep_output. Outputs are unchanged. Afterwards ee_net_params
 * and the parameter tensors' data are NULL, and training, saving, ee_net_init, ee_sdn_attach, ee_sdn_strip
 * and ee_net_keep_output fail with EE_ERR_ARG. Convolutions that oneDNN runs keep their parameters. */
ee_status ee_net_seal(ee_ctx *ctx, ee_net *net);

/* int8 inference (docs/int8.md). Calibrates every convolution's input step on the images x (n of them, NHWC, as
 * ee_net_forward takes them) run through the float network: the largest |value| seen (EE_QUANT_MAX), or that
 * percentile of the |values| (EE_QUANT_PERCENTILE). From then on the convolutions run in int8 in inference (input
 * to u8, or s8 where it was negative; weights to s8 per output channel, symmetric; int32 sums; one float scale per
 * channel), everything else in float, and training still runs in float. The steps are part of the architecture
 * text (conv key qscale), so a saved model stays quantised. cfg NULL: EE_QUANT_MAX. Prepares the net for
 * training-sized buffers of up to 32 images. Calling it again recalibrates from the float network. */
typedef enum { EE_QUANT_MAX = 0, EE_QUANT_PERCENTILE } ee_quant_estimator;
typedef struct {
    ee_quant_estimator estimator;
    double percentile; /* EE_QUANT_PERCENTILE: e.g. 99.99 */
} ee_quant_config;
ee_status ee_net_quantize(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_quant_config *cfg);
/* how many convolutions are quantised (qscale set) */
int ee_net_int8_layers(const ee_net *net);
/* 1 where this build runs int8 convolutions: x86-64, through oneDNN's x86 kernels. Elsewhere a quantised model
 * runs its convolutions in float, from the float weights its file keeps, and ee_net_quantize fails (on aarch64,
 * int8 convolutions through Debian's aarch64 oneDNN gave wrong answers under qemu; the cause is not known). */
int ee_int8_available(void);

/* x: (n, h, w, c) NHWC input. train: batch statistics and dropout on. */
ee_status ee_net_forward(ee_ctx *ctx, ee_net *net, const float *x, int n, int train);
/* Runs nodes [from, to) only; from = 0 also takes x. Lets a caller stop after any node and go on. */
ee_status ee_net_forward_range(ee_ctx *ctx, ee_net *net, const float *x, int from, int to, int n, int train);
/* Keeps samples keep[0..nkeep) (ascending indices into the current batch) in every activation that a node
 * at or after `from` still reads, packed at the front: the remaining nodes then run on nkeep samples. */
ee_status ee_net_compact(ee_ctx *ctx, ee_net *net, int from, const int *keep, int nkeep);
/* Inference runs the whole network on chunks of this many samples so that activations stay in cache
 * (default: chosen from the largest activation in ee_net_prepare; 0 = automatic, a huge value = off). */
void ee_net_set_eval_chunk(ee_net *net, int chunk);
/* Inference of a whole batch (ee_net_forward, not a node range; ee_infer_policy without a limit on the whole
 * batch) on a net prepared for inference only splits the samples between workers, each running its share through
 * the whole network on its own cores; the net makes copies of itself for them on first use (their own activation
 * buffers, and as many more weights). 0: automatic (one worker per core, shares of 4 samples or more, 32 for nets
 * of more than 16 MB of weights); 1: off; N >= 2: N workers, sharing the cores. Same outputs either way, up to
 * rounding. */
void ee_net_set_eval_workers(ee_net *net, int workers);
/* Output of a node for the current batch, (n, h, w, c). A net prepared for training keeps every node's output.
 * A net prepared for inference only shares activation buffers between nodes whose lifetimes do not overlap,
 * so after a forward only the heads and the nodes marked with ee_net_keep_output are still valid. */
const float *ee_net_node_output(const ee_net *net, int node);
/* Keeps a node's output valid after inference forwards (features for a side classifier, inspection). The node
 * is then never fused into the convolution before it. */
ee_status ee_net_keep_output(ee_ctx *ctx, ee_net *net, int node);
/* Bytes of activation (and, in training, gradient) buffers the prepared net holds. */
size_t ee_net_activation_bytes(const ee_net *net);
const float *ee_net_head_output(const ee_net *net, int head); /* logits (n, classes) */

/* Softmax cross-entropy of head `head` against labels, averaged over n. Seeds the head's gradient with
 * weight * dloss/dlogits (adding to it if already seeded). loss and correct may be NULL. */
ee_status ee_net_loss(ee_ctx *ctx, ee_net *net, int head, const uint8_t *labels, int n, float weight,
                      double *loss, int *correct);
/* Starts a backward pass: clears the gradient seeds. Call before ee_net_loss in a training step. */
void ee_net_zero_seeds(ee_net *net);
/* Backpropagates from every seeded head; fills ee_net_grads (overwritten, not accumulated). */
ee_status ee_net_backward(ee_ctx *ctx, ee_net *net, int n);
/* Gradient of the input (n, h, w, c) after ee_net_backward, or NULL unless ee_net_want_input_grad(1). */
void ee_net_want_input_grad(ee_net *net, int on);
const float *ee_net_input_grad(const ee_net *net);

/* ---------------------------------------------------------------- Shallow-Deep Networks */
/* IC positions (node indices, ascending) for a CNN: the SDN reference tables for resnet56, vgg16bn, wrn32_4 and
 * mobilenet (6, 6, 6 and 5 ICs); for any other network the block ends closest to 15..90% of its FLOPs.
 * Returns the count (at most max). */
int ee_sdn_default_positions(const ee_net *cnn, int *nodes, int max);
int ee_sdn_flops_positions(const ee_net *cnn, int *nodes, int max);
/* A new network: the CNN with an IC head (mixpool to 4x4, flatten, linear) after each given node. Backbone
 * weights and statistics are copied; IC heads are initialised from the context's RNG. */
ee_status ee_sdn_attach(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int nic, ee_net **sdn);
/* SideNet (Morisot): one side classifier, a perceptron with one hidden layer, after the given node of a trained
 * CNN (the MainNet): average pooling to g x g, g the largest grid up to pool dividing the map (the map as it is
 * if it is no larger; max over time for a sequence),
 * flatten, linear to hidden units, ReLU, linear to the classes (the exit). Backbone weights copied; the side
 * head initialised from the context's RNG. Trained with the MainNet frozen (EE_MODE_IC_ONLY); at inference the
 * MainNet resumes from the attachment point for the inputs that do not exit. The default node: the block end
 * closest to 30% of the network's FLOPs (ee_sidenet_default_position). */
ee_status ee_sidenet_attach(ee_ctx *ctx, const ee_net *cnn, int node, int hidden, int pool, ee_net **out);
int ee_sidenet_default_position(const ee_net *cnn);
/* The CNN inside an SDN: the network without its IC heads, weights copied. */
ee_status ee_sdn_strip(ee_ctx *ctx, const ee_net *sdn, ee_net **cnn);
/* Cumulative true FLOPs of each head (earlier IC heads included), and as a fraction of the backbone alone. */
void ee_net_head_costs(const ee_net *net, double *frac, double *flops);
/* Freezes every node the final head depends on (the CNN): eval-mode BN and dropout, no gradient, no update. */
void ee_net_freeze_backbone(ee_net *net, int on);

/* ---------------------------------------------------------------- EENets (Demir & Akbas) */
/* Early-exit blocks with a learned confidence branch (docs/design.md, "EENets"). Each exit reads a block output of
 * the backbone: a pooling step, then two independent linear heads: a confidence logit (sigmoid: "stop here") and
 * the class logits. A sample stops at the first exit whose confidence is above 0.5 (EE_SCORE_CONFIDENCE). */
typedef enum {
    EE_DIST_FINE = 0,   /* exit i where the backbone prefix reaches F (1 - 0.95^(i+1)) (the code's default) */
    EE_DIST_LINEAR,     /* F (i+1) / (N+1) */
    EE_DIST_PARETO,     /* F (1 - 0.8^(i+1)) */
    EE_DIST_GOLD_RATIO, /* F phi^(i-N), phi = 1.61803398875 */
} ee_eenet_dist;
typedef enum {
    EE_EENET_POOL = 0,  /* global average pool, then the two heads (the code's default) */
    EE_EENET_PLAIN,     /* the flattened map, then the two heads */
    EE_EENET_BNPOOL,    /* batch norm, global average pool, the two heads */
    /* a flag added to the type, not in the paper: the confidence branch is a linear layer on the four uncertainty
     * features of the exit's own softmax (max probability, entropy, margin, entropy of p^2; the `uncertainty`
     * layer, detached) instead of on the exit's features */
    EE_EENET_UNCERTAINTY_GATE = 16,
} ee_eenet_exit;
typedef enum {
    EE_EENET_V0 = 0,    /* sum of every exit's cross-entropy: no cost, confidences untrained (first stage) */
    EE_EENET_V1,        /* -log Y_0[y] + lambda C_0, Y and C mixed from the last exit backwards */
    EE_EENET_V2,        /* sum over every exit i of -log Y_i[y] + lambda C_i (the code's default) */
    EE_EENET_V1_CE,     /* not in the paper: v1 plus every exit's own cross-entropy (v0), so that an exit whose */
    EE_EENET_V2_CE,     /* confidence is low still learns to classify; v2 likewise */
    EE_EENET_V4,        /* the code's experimental v4: each input's exit tag t = argmin_i -log p_i[y] + lambda c_i
                         * (from this batch's own forward pass); -log p_t[y] + lambda c_t, plus for every early exit
                         * a class-balanced binary cross-entropy teaching its confidence 1 on inputs tagged there */
    EE_EENET_V4_CE,     /* v4 plus every exit's own cross-entropy */
} ee_eenet_loss_kind;
const char *ee_eenet_dist_name(int dist);       /* "fine", "linear", "pareto", "gold_ratio" */
int ee_eenet_dist_find(const char *name);        /* -1 if unknown */
const char *ee_eenet_exit_name(int type);       /* "pool", "plain", "bnpool" */
int ee_eenet_exit_find(const char *name);
/* Exit positions (node indices, ascending) for n early exits in a CNN: after each block output (a ResNet block's
 * final ReLU, a pre-activation block's sum, a pool or a block's ReLU), in order, the first whose backbone prefix
 * reaches the distribution's next FLOPs threshold; at most one exit per block. EE_ERR_ARG if fewer than n fit. */
ee_status ee_eenet_positions(ee_ctx *ctx, const ee_net *cnn, int n, ee_eenet_dist dist, int *nodes);
/* A new network: the CNN with an EENet exit after each given node (weights copied, exits initialised from the
 * context's RNG as PyTorch's Linear). */
ee_status ee_eenet_attach(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int n, ee_eenet_exit type,
                          ee_net **out);
/* The paper's cost of each head: the backbone prefix up to the exit plus that exit's own block, as a fraction of
 * the backbone's FLOPs (earlier exits' blocks not counted); the final head costs 1. */
void ee_eenet_costs(const ee_net *net, double *cost);
/* The EENet loss of the current forward (every head, every confidence node) against labels, with costs cost[]
 * (ee_eenet_costs); seeds the gradients of the heads and confidence nodes (replacing any seed) when the net is
 * training. loss and correct (of the final head) may be NULL. */
ee_status ee_eenet_loss(ee_ctx *ctx, ee_net *net, const uint8_t *labels, int n, const double *cost, float lambda,
                        ee_eenet_loss_kind kind, double *loss, int *correct);

/* ---------------------------------------------------------------- optimisers and schedules */
typedef enum { EE_OPTIM_SGD = 0, EE_OPTIM_ADAM } ee_optim_kind;
typedef struct {
    ee_optim_kind kind;
    float lr, momentum, weight_decay;
    int nesterov;
    float beta1, beta2, eps; /* Adam */
} ee_optim;
typedef struct ee_optim_state ee_optim_state;
ee_status ee_optim_state_new(ee_ctx *ctx, const ee_net *net, const ee_optim *opt, ee_optim_state **st);
void ee_optim_state_free(ee_optim_state *st);
/* One step with learning rate lr on ee_net_params using ee_net_grads (PyTorch's SGD / Adam semantics). */
ee_status ee_optim_step(ee_ctx *ctx, ee_net *net, ee_optim_state *st, float lr);
size_t ee_optim_state_size(const ee_optim_state *st);
float *ee_optim_state_data(ee_optim_state *st);
int64_t *ee_optim_state_steps(ee_optim_state *st);

typedef enum { EE_SCHED_STEP = 0, EE_SCHED_COSINE } ee_sched_kind;
typedef struct {
    ee_sched_kind kind;
    float base_lr, gamma;   /* step: lr = base * gamma^(milestones passed) */
    int milestones[8];      /* epochs (0-based) at which the lr is multiplied by gamma */
    int nmilestones;
    int epochs;             /* cosine: period */
    float min_lr;
} ee_schedule;
float ee_schedule_lr(const ee_schedule *s, int epoch);

/* ---------------------------------------------------------------- data */
typedef struct {
    int n, c, h, w, classes;
    uint8_t *pixels;       /* (n, c, h, w) as stored in the files */
    uint8_t *labels;       /* n */
    float mean[4], std[4]; /* per-channel normalisation, in units of pixel/255 */
} ee_dataset;

/* IDX image + label files, gzipped or raw (MNIST, Fashion-MNIST). */
ee_status ee_dataset_load_idx(ee_ctx *ctx, const char *images, const char *labels, ee_dataset **out);
/* CIFAR binary batches: fine = 0 for CIFAR-10 (1 label byte), 1 for CIFAR-100 fine labels, 2 coarse. */
ee_status ee_dataset_load_cifar(ee_ctx *ctx, const char *const *files, int nfiles, int cifar100_label,
                                ee_dataset **out);
/* Tiny ImageNet (tiny-imagenet-200 layout): train = train/WNID/images/NAME.JPEG, test = the official val set
 * (val/images + val/val_annotations.txt). Classes: the sorted wnids.txt. */
ee_status ee_dataset_load_tinyimagenet(ee_ctx *ctx, const char *dir, int train, ee_dataset **out);
/* SVHN's cropped digits (train_32x32.mat, test_32x32.mat; MATLAB v5 through libmatio): 3x32x32, labels 0..9 (the
 * files' label 10 is the digit 0). */
ee_status ee_dataset_load_svhn(ee_ctx *ctx, const char *path, ee_dataset **out);
/* Text (docs/format.md): DIR/train.tsv and DIR/test.tsv, label<TAB>text a line (UTF-8; \t, \n, \\ escaped in the
 * text). Classes: train.tsv's distinct labels in byte order. Each example is its first `length` bytes,
 * zero-padded, as a 1 x 1 x length sample whose values are the byte values (mean 0, std 1/255). Bad lines fail
 * with the file and line. */
#define EE_TEXT_LENGTH 1024
/* Tokens. EE_TOKENS_BYTES: each byte is a token (ids 0..255; 1 channel). EE_TOKENS_WORDS: hashed words: a word is
 * a run of ASCII letters and digits (lowercased) and bytes >= 0x80, every other byte but white space is a token
 * of its own, and a token's id is 1 + FNV-1a(token) mod 65535 (0 pads), stored as two channels, high and low
 * byte (an `embed` layer reads both). */
typedef enum { EE_TOKENS_BYTES = 0, EE_TOKENS_WORDS } ee_text_tokens;
/* The ids of a text's first `length` tokens into ids[length] (zero-padded); returns the tokens found (at most
 * length). */
int ee_text_tokenize(const char *text, size_t len, int kind, int length, uint16_t *ids);
ee_status ee_dataset_load_text(ee_ctx *ctx, const char *dir, const char *split, int kind, int length,
                               ee_dataset **out);
/* The class names of a text directory, comma-separated in class order, into buf. */
ee_status ee_text_classes(ee_ctx *ctx, const char *dir, char *buf, size_t cap);
/* A dataset directory: "fashion-mnist"/"mnist" IDX names, cifar-10/100 binary names, Tiny ImageNet, SVHN
 * (train_32x32.mat, test_32x32.mat) or text (train.tsv, test.tsv; ee_ctx_set_text_length bytes). split: "train" or
 * "test". Sets the per-dataset normalisation. */
ee_status ee_dataset_load_dir(ee_ctx *ctx, const char *dir, const char *split, ee_dataset **out);
void ee_dataset_free(ee_dataset *ds);
/* Moves the last `count` samples of ds into a new dataset (the validation split). */
ee_status ee_dataset_split(ee_ctx *ctx, ee_dataset *ds, int count, ee_dataset **tail);
/* Sets mean/std from the pixels of ds. */
void ee_dataset_compute_norm(ee_dataset *ds);
/* Named normalisation presets ("fashion-mnist", "mnist", "cifar10", "cifar100", "tinyimagenet", "svhn").
 * Returns 0 if unknown. */
int ee_dataset_norm_preset(ee_dataset *ds, const char *name);

typedef struct {
    int crop_pad;   /* random crop with this zero padding; 0 = off */
    int flip;       /* random horizontal flip */
} ee_augment;
/* Writes samples idx[0..n) normalised as NHWC floats into x and their labels into y. aug may be NULL. */
void ee_dataset_batch(ee_ctx *ctx, const ee_dataset *ds, const int *idx, int n, const ee_augment *aug,
                      float *x, uint8_t *y);
/* Fisher-Yates shuffle of perm[0..n) with the context's RNG. */
void ee_shuffle(ee_ctx *ctx, int *perm, int n);

/* ---------------------------------------------------------------- model files (docs/format.md) */
typedef struct {
    const char *key, *value;
} ee_meta;
/* Writes the architecture, every named tensor and the metadata, atomically (temp file + rename). */
ee_status ee_net_save(ee_ctx *ctx, const ee_net *net, const ee_meta *meta, int nmeta, const char *path);
/* Reads and validates a model file. */
ee_status ee_net_load(ee_ctx *ctx, const char *path, ee_net **out);
/* Metadata of the last loaded file: value for key or NULL. */
const char *ee_net_meta(const ee_net *net, const char *key);
/* Sets a metadata entry kept with the network and written by ee_net_save. */
ee_status ee_net_set_meta(ee_ctx *ctx, ee_net *net, const char *key, const char *value);

/* ---------------------------------------------------------------- training and evaluation */
typedef struct {
    int epoch, epochs, step, steps;   /* step within the epoch */
    double loss, acc, img_per_s, eta_s, lr;
    int epoch_done;                   /* 1 on the end-of-epoch call */
    double val_acc, val_loss, test_acc, epoch_s;
    int heads;                        /* > 1 for an SDN: val_head_acc holds every exit's validation accuracy */
    double val_head_acc[EE_MAX_HEADS];
    double val_exit_acc, val_exit_cost; /* EENets: validation accuracy and average cost (paper's costs) at the
                                         * confidence rule; -1 otherwise */
} ee_progress;
typedef void (*ee_progress_fn)(const ee_progress *p, void *user);

typedef enum {
    EE_MODE_CNN = 0,   /* every head with weight 1 (a plain CNN has one) */
    EE_MODE_IC_ONLY,   /* the CNN frozen (BN statistics included), the sum of the IC losses (SDN reference) */
    EE_MODE_SDN,       /* joint: sum_i tau_i(e) CE_i + CE_final, tau_i(e) = min(C_i, 0.01 + e C_i / E), C_i = 0.15 i */
    EE_MODE_EENET,     /* the EENet loss (ee_eenet_loss) with the config's lambda and loss kind */
    EE_MODE_JEI,       /* JEI-DNN: the CNN frozen; the ICs warmed up (sum (G+1-l) CE_l), then gate and classifier
                        * phases alternating (ee_jei_loss); the gates become the model's policy (kind gate, rule
                        * jei, threshold 0.5) */
} ee_train_mode;

/* Data-parallel training (Horovod and PyTorch's DistributedDataParallel do the same): `size` processes, the
 * ranks, each hold the whole network; each takes its contiguous share of every global batch of ee_train_config.batch
 * samples, and the parameter gradients are summed over the ranks before every optimiser step, so that every rank
 * takes the same step as one process on the whole batch. The library does no communication itself: the caller
 * supplies the two collectives (eenn's CLI implements them with MPI). Every rank must call ee_train with the same
 * network, data, seed and config. Rank 0 alone writes checkpoints and reports progress; a checkpoint is read by
 * rank 0 and broadcast, so it resumes with any number of ranks. */
typedef struct {
    int rank, size;
    /* batch norm over the whole global batch (its statistics and their gradients reduced over the ranks), as
     * PyTorch's SyncBatchNorm; 0: each rank's own share, as DistributedDataParallel by default (the running
     * statistics are then averaged over the ranks after every epoch) */
    int sync_bn;
    /* sums buf[0..n) over all ranks in place, the same result on every rank; floats, or doubles if dbl.
     * 0 on success. Called by every rank in the same order. */
    int (*allreduce)(void *user, void *buf, size_t n, int dbl);
    /* copies rank 0's buf[0..bytes) to every rank; 0 on success */
    int (*broadcast)(void *user, void *buf, size_t bytes);
    void *user;
    double comm_s;   /* out: seconds spent in the gradient allreduce (the communication cost per step) */
    long comm_calls; /* out: gradient allreduces */
} ee_parallel;

typedef struct {
    int epochs, batch;
    ee_optim optim;
    ee_schedule sched;
    ee_augment aug;
    const char *checkpoint;  /* written atomically after every epoch; NULL = none */
    int resume;              /* continue from checkpoint if it exists */
    int progress_every;      /* steps between progress calls */
    ee_train_mode mode;
    /* EE_MODE_EENET: the cost weight, the loss, and (two-stage training) the epochs trained with EE_EENET_V0 first */
    float eenet_lambda;
    ee_eenet_loss_kind eenet_loss;
    int eenet_stage1;
    int stop_epoch;          /* > 0: stop after this many epochs of the `epochs`-long schedule (a checkpoint to
                              * resume from, e.g. a shared first stage); 0: run them all */
    /* EE_MODE_JEI: the cost weight, the warm-up epochs, the batches per phase (200 in the code) */
    float jei_lambda;
    int jei_warmup, jei_switch;
    ee_parallel *parallel;   /* NULL (or size 1): one process */
    /* > 1 (one process, no `parallel`): that many replicas of the network train in threads of this process, the
     * cores shared evenly between them (ee_train_replica_threads), as data-parallel ranks over shared memory with
     * batch norm over the whole batch (sync-BN): each takes its share of every batch and the gradients are summed
     * before the step, so the step is the one-replica step up to float rounding, with the same augmentation (dropout
     * draws from a stream of each replica). On few cores this beats one network on all of them when its layers are
     * too small to split well between threads (ResNet-56), and loses when they are not (WRN-32-4, VGG-16). `net`
     * keeps the result; the progress callback runs in the calling thread. 0 or 1: one network, on ee_ctx_threads
     * cores. EE_REPLICAS_AUTO: as many as ee_train_auto_replicas says. */
    int replicas;
} ee_train_config;
#define EE_REPLICAS_AUTO (-1)
/* The replicas EE_REPLICAS_AUTO trains with: one per core (ee_ctx_threads, or for 0 the cores that other
 * processes leave free, watched for 100 ms) for a network whose convolutions all have at most 64 output channels,
 * with at least 32 samples of `batch` per replica; else 1 (one network). */
int ee_train_auto_replicas(ee_ctx *ctx, const ee_net *net, int batch);
/* The threads replica `rank` of `replicas` trains on: an even share of the cores (ee_ctx_threads, or for 0 the
 * cores that other processes leave free), the first cores % replicas replicas taking one more; at least 1. On 8
 * cores, 4 replicas run 2 threads each. */
int ee_train_replica_threads(ee_ctx *ctx, int replicas, int rank);
/* The loss weight of each head at (0-based) epoch for a mode: weights[nheads]. */
void ee_train_head_weights(const ee_net *net, ee_train_mode mode, int epoch, int epochs, float *weights);

typedef struct {
    double loss, acc;     /* of the final head */
    int n, correct;
    double seconds, img_per_s;
} ee_eval_result;

/* Trains net by cfg: every head weighted as cfg->mode says (ee_train_head_weights), a checkpoint after every
 * epoch. val / test may be NULL; they are evaluated after each epoch and reported through progress. */
ee_status ee_train(ee_ctx *ctx, ee_net *net, const ee_dataset *train, const ee_dataset *val,
                   const ee_dataset *test, const ee_train_config *cfg, ee_progress_fn fn, void *user);
/* Evaluates the last head; batch 0 means 256. */
ee_status ee_evaluate(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int batch, ee_eval_result *res);

/* ---------------------------------------------------------------- early exits */
/* Predictions, confidences (max softmax) and logits of every head on a dataset, for exit analysis and calibration. */
typedef struct {
    int n, heads, classes;
    uint8_t *pred;   /* n x heads */
    float *conf;     /* n x heads */
    uint8_t *label;  /* n */
    float *prob;     /* n x heads x classes softmax; NULL unless asked for (the confusion metric needs it) */
    float *logits;   /* n x heads x classes: what exit policies score */
    float *gate;     /* n x heads: each head's learned confidence (sigmoid), -1 for a head without a confidence
                      * branch; NULL if the network has none */
} ee_outputs;
/* Runs every head on ds (eval mode, un-augmented); batch 0 means 256. with_prob: also keep every head's
 * softmax (o->prob). */
ee_status ee_collect_outputs(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int batch, int with_prob,
                             ee_outputs **out);
void ee_outputs_free(ee_outputs *o);
void ee_head_accuracy(const ee_outputs *o, double *acc);

typedef struct {
    float q;                      /* the (first) threshold */
    double acc, cost;             /* accuracy and average cost (in the units of `cost`) */
    int exits[EE_MAX_HEADS];
    int jumps;                    /* samples that jumped ahead (policies with jumps, ee_exit_policy.jump_to) */
} ee_exit_stats;

/* ---------------------------------------------------------------- exit policies */
/* How confident an exit is, from its softmax on logits divided by the exit's temperature; every score is in
 * [0, 1] and higher means more confident. A new kind is one function and one line in the table of policy.c. */
typedef enum {
    EE_SCORE_MAXPROB = 0, /* the largest probability (SDN, SideNet) */
    EE_SCORE_ENTROPY,     /* 1 - H(p) / log K: BranchyNet's rule, normalised entropy at most 1 - threshold */
    EE_SCORE_MARGIN,      /* the largest probability minus the second */
    EE_SCORE_CONFIDENCE,  /* the exit's learned confidence branch, sigmoid(g) (EENets); needs heads with a
                           * confidence node (ee_net_head_confidence); exits when it is strictly above the
                           * threshold, as the EENets code does (h > 0.5); temperatures do not apply */
    EE_SCORE_GATE,        /* a learned gate of the policy itself: sigmoid(w . u + b) on the exit's uncertainty
                           * features u (ee_uncertainty_features), w and b per exit in ee_exit_policy.gate
                           * (Bolukbasi et al.'s policies, JEI-DNN's gates); exits at or above the threshold */
} ee_score_kind;
/* The four uncertainty features of one logit row at temperature T (JEI-DNN's gate inputs, also the `uncertainty`
 * layer): the largest softmax probability, the entropy (nats), the margin between the two largest probabilities,
 * and the entropy of p^2 / sum p^2. */
#define EE_GATE_FEATURES 4
void ee_uncertainty_features(const float *logits, int k, float temperature, float *u);
/* How gate scores become exits: each gate alone (exit where sigmoid(w . u + b) reaches the threshold), or
 * JEI-DNN's rule: the exit distribution P_l = max(0, min(g_l, 1 - sum_(j<l) g_j)), and exit at the first l whose
 * conditional probability q_l = P_l / prod_(j<l) (1 - q_j) reaches the threshold (0.5). */
typedef enum { EE_GATE_EACH = 0, EE_GATE_JEI } ee_gate_rule;
int ee_score_count(void);
const char *ee_score_name(int kind);      /* "maxprob", "entropy", "margin"; NULL if out of range */
const char *ee_score_describe(int kind);  /* one line for help texts */
int ee_score_find(const char *name);      /* the kind, or -1 */
/* the score of one logit row (k classes) at temperature T, and its argmax in *pred (may be NULL) */
float ee_score_logits(int kind, const float *logits, int k, float temperature, uint8_t *pred);
/* the same for an exit that may have a learned confidence (sigmoid output in [0, 1]; ignored unless kind is
 * EE_SCORE_CONFIDENCE, for which an exit without one scores -1 and never answers) */
float ee_score_exit(int kind, const float *logits, int k, float temperature, float confidence, uint8_t *pred);
/* 1 if a score must be strictly above the threshold to exit (the confidence kind), 0 if reaching it is enough */
int ee_score_strict(int kind);

typedef enum { EE_TARGET_NONE = 0, EE_TARGET_DROP, EE_TARGET_BUDGET } ee_target_kind;

/* An exit policy: a sample leaves at the first internal classifier h whose score reaches threshold[h]; if none
 * does, the final head answers (with fallback: the head with the highest score). The library stores it in the
 * model file (ee_net_set_policy) with how it was calibrated. */
typedef struct {
    int kind;                         /* ee_score_kind */
    int heads;                        /* the network's heads, ICs and the final one */
    float threshold[EE_MAX_HEADS];    /* per IC; above 1 never exits there (the final head's is unused) */
    float temperature[EE_MAX_HEADS];  /* head h's logits are divided by this before the softmax; 1 = none */
    int fallback;
    /* EE_SCORE_GATE: per IC, EE_GATE_FEATURES weights then the bias, and how gates combine (ee_gate_rule) */
    float gate[EE_MAX_HEADS][EE_GATE_FEATURES + 1];
    int gate_rule;
    /* EE_SCORE_GATE with EE_GATE_EACH, for networks whose later parts read only the input (cascades of whole
     * networks, ee_cascade_build): after IC h, a sample that does not exit jumps to head jump_to[h] (0 = never),
     * skipping every head in between and their layers, when its jump gate sigmoid(jump_gate[h] . u + b) reaches
     * 0.5 (Bolukbasi et al.'s DAG of networks); its cost is then only what it ran */
    int jump_to[EE_MAX_HEADS];
    float jump_gate[EE_MAX_HEADS][EE_GATE_FEATURES + 1];
    /* how it was calibrated */
    int per_exit;                     /* thresholds searched per exit (else one shared threshold) */
    int temperature_fitted;           /* temperatures fitted by NLL on the calibration split */
    ee_target_kind target;
    double target_value;              /* the allowed accuracy drop, or the cost budget, as a fraction */
    char split[16];                   /* "validation" */
    int samples;                      /* calibration samples */
    /* the guarantee, if the threshold was chosen with risk control (ee_calibrate_risk); rc_method EE_RC_NONE
     * otherwise */
    int rc_method;                    /* ee_rc_method */
    int risk;                         /* ee_risk_kind */
    double epsilon, delta;            /* the risk bound, and (UCB, LTT) its failure probability */
    double empirical_risk;            /* the risk on the calibration samples */
} ee_exit_policy;
/* one shared threshold q for every IC, temperatures 1 */
void ee_policy_shared(ee_exit_policy *p, int kind, int heads, float q, int fallback);
/* The model's policy: the stored one, or for files calibrated before policies existed the single max-softmax
 * threshold of their exit.q. EE_ERR_ARG if the model was never calibrated. */
ee_status ee_net_policy(ee_ctx *ctx, const ee_net *net, ee_exit_policy *p);
/* Keeps p with the network; ee_net_save writes it. */
ee_status ee_net_set_policy(ee_ctx *ctx, ee_net *net, const ee_exit_policy *p);
/* The policy's one-line text form (as stored in the model file), and back. */
ee_status ee_policy_to_text(ee_ctx *ctx, const ee_exit_policy *p, char *buf, size_t cap);
ee_status ee_policy_from_text(ee_ctx *ctx, const char *text, ee_exit_policy *p);

/* Exits under p on collected outputs: accuracy, average cost (cost[h]: the cost charged for exiting at head h) and
 * exit counts; or each sample's exit and prediction (either may be NULL). */
ee_status ee_policy_simulate(ee_ctx *ctx, const ee_outputs *o, const double *cost, const ee_exit_policy *p,
                             ee_exit_stats *st);
ee_status ee_policy_assign(ee_ctx *ctx, const ee_outputs *o, const ee_exit_policy *p, uint8_t *exit_head,
                           uint8_t *pred);
/* The score of head h's logit row under p (its kind, temperature and, for EE_SCORE_GATE, its gate; confidence is
 * the head's learned confidence for EE_SCORE_CONFIDENCE), and its argmax in *pred (may be NULL). */
float ee_policy_score(const ee_exit_policy *p, int head, const float *logits, int k, float confidence, uint8_t *pred);
/* A logistic gate sigmoid(w . u + b) fitted by weighted binary cross-entropy (Newton's method on standardised
 * features, L2 weight l2 on w): u is n x EE_GATE_FEATURES, label 1 = exit, w gets the weights then the bias. */
ee_status ee_fit_gate(ee_ctx *ctx, const float *u, const uint8_t *label, const double *weight, int n, double l2,
                      float *w);
/* Bolukbasi et al.'s adaptive early exit: an EE_SCORE_GATE policy learned on val by backward induction, from the
 * last exit to the first, for the objective 0-1 error + lambda x cost (cost[h]: the cumulative cost of head h as
 * a fraction of the CNN's). jump_to (NULL, or one entry per IC, 0 = none): the DAG of network selection, where
 * after IC h a sample may also jump to head jump_to[h]; a jump gate is learned there too (ee_exit_policy).
 * st (may be NULL): the policy on val. */
ee_status ee_policy_fit_bolukbasi(ee_ctx *ctx, const ee_outputs *val, const double *cost, double lambda,
                                  const int *jump_to, ee_exit_policy *p, ee_exit_stats *st);
/* The same for a target (an accuracy drop below the final head, or a cost budget): lambda searched on a grid from
 * 0 to 10 for the best policy on val; the lambda chosen in *lambda_out (may be NULL). */
ee_status ee_policy_fit_bolukbasi_target(ee_ctx *ctx, const ee_outputs *val, const double *cost, const int *jump_to,
                                         ee_target_kind target, double value, ee_exit_policy *p, ee_exit_stats *st,
                                         double *lambda_out);
/* JEI-DNN (Regol et al., ICLR 2024). The exit distribution of gate values g[gates]: P_l = max(0, min(g_l, 1 -
 * sum_(j<l) g_j)) and the rest, P[gates], for the final head. */
void ee_jei_exit_distribution(const float *g, int gates, float *P);
/* A sample's best exit, argmin_h CE_h + lambda cost_h (the final head's cost 1; ties go to the earlier exit);
 * head_logits[h] holds n x k logits of head h. */
int ee_jei_best_exit(const float *const *head_logits, int i, int heads, int k, int label, const double *cost, double lambda);
/* JEI-DNN's two losses on a batch (head_logits[h]: n x k): the gate loss (BCE with logits on targets
 * [l >= best exit], positive weights pos_weight[l] (NULL: 1), averaged over samples and gates) and its gradient
 * with respect to each gate's weights and bias; the classifier loss (sum_h P_h CE_h, averaged over samples) and
 * its gradient with respect to every head's logits (dlogits[h], n x k; NULL or a NULL entry: not wanted). */
ee_status ee_jei_loss(ee_ctx *ctx, const float *const *head_logits, const uint8_t *labels, int n, int heads, int k,
                      const double *cost, double lambda, const double *pos_weight, const float (*gate)[EE_GATE_FEATURES + 1],
                      double *gate_loss, float (*gate_grad)[EE_GATE_FEATURES + 1], double *cls_loss, float *const *dlogits);
/* The gate loss's positive weights from validation outputs: min(5, (N - n_l) / max(n_l, 0.1)), n_l the samples whose
 * best exit is l. */
void ee_jei_pos_weights(const ee_outputs *val, const double *cost, double lambda, double *pos_weight);
/* The expected calibration error of the answers p gives on o (each sample's answer and confidence from the exit it
 * takes), over `bins` equal-mass bins of confidence (JEI-DNN: 15). */
ee_status ee_policy_ece(ee_ctx *ctx, const ee_outputs *o, const ee_exit_policy *p, int bins, double *ece);
/* One head's reliability: its max softmax (temperature 1) against its accuracy in `bins` equal-mass bins of the
 * samples sorted by confidence; the ECE, and each bin's mean confidence and accuracy (arrays of bins; may be NULL),
 * for a reliability diagram. */
ee_status ee_head_reliability(ee_ctx *ctx, const ee_outputs *o, int head, int bins, double *ece, double *conf,
                              double *acc);
/* Split-conformal prediction sets per exit (JEI-DNN): qhat[h], the ceil((m + 1)(1 - alpha))-th smallest score
 * 1 - p_y of the m calibration samples of val that p sends to exit h (all of val's samples at that exit if m <= 20);
 * the set of a sample leaving at h is {k : p_k >= 1 - qhat[h]}. */
ee_status ee_conformal_fit(ee_ctx *ctx, const ee_outputs *val, const ee_exit_policy *p, double alpha, float *qhat);
/* The sets' coverage (the share holding the label) and mean size on o. */
ee_status ee_conformal_eval(ee_ctx *ctx, const ee_outputs *o, const ee_exit_policy *p, const float *qhat,
                            double *coverage, double *mean_size);
/* Network selection (Bolukbasi et al.): separately trained networks with the same input and classes joined into
 * one cascade network, in order (cheapest first). Every member's nodes are renamed m1., m2., ... and read the
 * input; every member's heads are heads of the cascade, so each member's final output is an exit, its cost what
 * the sample has run so far. The members' parameters and statistics are copied; the cascade's backbone is the last
 * member. An exit policy (e.g. ee_policy_fit_bolukbasi) then decides after each network. */
ee_status ee_cascade_build(ee_ctx *ctx, ee_net *const *members, int n, ee_net **out);
/* Bolukbasi et al.'s DAG over a cascade: after the last exit of each network but the last two, a sample may jump
 * straight to the last network. Fills jump_to[EE_MAX_HEADS] (0 = no jump; for ee_policy_fit_bolukbasi) and returns
 * the number of jumps: 0 for a network whose parts do not each read the input alone, or with fewer than three. */
int ee_cascade_jumps(const ee_net *net, int *jump_to);
/* Per-head temperatures minimising the negative log-likelihood of val's labels (temperature scaling). */
ee_status ee_fit_temperatures(ee_ctx *ctx, const ee_outputs *val, float *temperature);

/* What calibration holds to. EE_TARGET_DROP: the lowest average cost whose accuracy is at least the final head's
 * minus value; EE_TARGET_BUDGET: the highest accuracy whose average cost is at most value (a fraction of the
 * CNN's cost, in the units of `cost`). */
typedef struct {
    int kind;              /* ee_score_kind */
    ee_target_kind target;
    double value;
    int per_exit;          /* one threshold per exit (coordinate descent from the best shared one) */
    int fit_temperature;   /* temperatures fitted first */
    int fallback;
    char split[16];        /* recorded in the policy ("validation" if empty) */
} ee_calibration;
/* Searches the thresholds on val (docs/design.md, "Exit policies"); st: the policy's numbers on val (may be NULL).
 * Per-exit thresholds are never worse on val than the best shared threshold. */
ee_status ee_calibrate_policy(ee_ctx *ctx, const ee_outputs *val, const double *cost, const ee_calibration *c,
                              ee_exit_policy *p, ee_exit_stats *st);

/* Limits of one inference call (0: none). deadline_flops / deadline_us: per sample, an anytime answer: before
 * computing the next exit, a sample whose deadline would be passed stops and answers with the most confident
 * exit computed so far. batch_flops: a FLOPs budget for the whole batch, spent on the least confident samples:
 * after each IC, if the budget cannot take every remaining sample to the next exit, the most confident of them
 * answer here. FLOPs are the network's true FLOPs up to each exit. */
typedef struct {
    double deadline_flops, deadline_us, batch_flops;
} ee_infer_limits;
enum { EE_EXIT_POLICY = 0, EE_EXIT_FINAL = 1, EE_EXIT_DEADLINE = 2, EE_EXIT_BUDGET = 3 };
/* Early-exit inference on n samples (x NHWC) under policy p: each sample stops at its exit, the batch is compacted
 * after every IC. Writes the class, its confidence (max softmax of the answering head), the exit whose cost was
 * paid and, if why is not NULL, why it stopped there (EE_EXIT_*). lim may be NULL. */
ee_status ee_infer_policy(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_exit_policy *p,
                          const ee_infer_limits *lim, uint8_t *pred, float *conf, uint8_t *exit_head, uint8_t *why);

/* ---------------------------------------------------------------- split inference: edge and server */
/* A network cut at one node (docs/serve.md): the near side (an edge device) runs the layers up to the split and
 * their exits; only the samples that did not exit cross, as the split node's output plus their exit state; the far
 * side (a server) resumes at the next node with the exits after it. Together they answer exactly as
 * ee_infer_policy on one machine. */
typedef struct {
    float best, best_conf;  /* the best exit score so far (-1: none yet), and that exit's max softmax */
    double jsum, jprod;     /* JEI-DNN's running sum of gates and product of 1 - q */
    uint8_t best_pred;      /* that exit's class */
} ee_exit_state;
void ee_exit_state_init(ee_exit_state *st);
enum { EE_EXIT_DEGRADED = 4 }; /* why: the far side did not answer; the most confident exit computed answered */
typedef struct {
    int node;          /* the split node: its output crosses */
    int resume;        /* the first node the far side runs */
    int heads;         /* exits computed before the split */
    int c, h, w;       /* the shape of what crosses, per sample */
    double flops_frac; /* the share of the network's FLOPs computed before the split, its exits included */
} ee_split;
/* The split after node `name`. Exit branches that read it stay on the near side; refused where more than the
 * node's output would have to cross (inside a residual block), or off the path to the final head. */
ee_status ee_split_at(ee_ctx *ctx, const ee_net *net, const char *name, ee_split *sp);
/* The near side on n samples (x as for ee_infer_policy): the samples that exit get pred, conf, exit_head and why
 * (may be NULL); the *nleft others are listed in left (their indices, ascending) and their split-node outputs
 * written to act, nleft rows of c*h*w floats in that order; st[i] (n of them) is each sample's exit state. */
ee_status ee_infer_edge(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_exit_policy *p, const ee_split *sp,
                        uint8_t *pred, float *conf, uint8_t *exit_head, uint8_t *why, ee_exit_state *st, int *left,
                        int *nleft, float *act);
/* The far side on n samples' split-node outputs (act) and their exit states st (NULL: none computed before). */
ee_status ee_infer_resume(ee_ctx *ctx, ee_net *net, const float *act, int n, const ee_exit_policy *p,
                          const ee_split *sp, ee_exit_state *st, uint8_t *pred, float *conf, uint8_t *exit_head,
                          uint8_t *why);
/* A 64-bit hash of the architecture, the weights, the batch-norm statistics and the stored exit policy: both sides
 * of a split must agree on it. Not a cryptographic hash: it catches mismatched models, not forgeries. */
uint64_t ee_net_fingerprint(const ee_net *net);

/* Hierarchical training (Sepehri et al., "Hierarchical Training of Deep Neural Networks Using Early Exiting";
 * docs/serve.md): the near part (an edge device) trains on the exits before the split only, and sends the split
 * node's output with the labels; the far part (a server) trains the rest on them as constant inputs. No gradient
 * crosses back, so neither side waits for the other's backward pass. weights: each head's loss weight (nheads;
 * each side reads its own heads'). The caller steps the optimiser after each call; the gradients outside a side's
 * part are zero. */
ee_status ee_split_train_edge(ee_ctx *ctx, ee_net *net, const ee_split *sp, const float *x, const uint8_t *labels,
                              int n, const float *weights, float *act, double *loss, int *correct);
ee_status ee_split_train_far(ee_ctx *ctx, ee_net *net, const ee_split *sp, const float *act, const uint8_t *labels,
                             int n, const float *weights, double *loss, int *correct);
/* dst's far part (nodes from sp->resume on: parameters and batch-norm statistics) from src */
ee_status ee_split_merge(ee_ctx *ctx, ee_net *dst, const ee_net *src, const ee_split *sp);

/* The wire format of a split (docs/serve.md, "Wire format"), little-endian. A request: a 112-byte header (magic
 * "EEQ1", header size, the model fingerprint, the split node's name or "" for whole inputs, n, c, h, w, the data
 * type, flags), then with flag 1 each sample's exit state (32 bytes), with flag 2 each sample's label (1 byte;
 * hierarchical training), then the data: fp32, fp16, or int8 with one
 * fp32 scale per sample first (symmetric: max |x| / 127). A reply: "EER1", n, then 8 bytes a sample: class, exit,
 * why, 0, and the confidence as fp32. */
enum { EE_WIRE_F32 = 0, EE_WIRE_F16 = 1, EE_WIRE_INT8 = 2 };
enum { EE_WIRE_STATES = 1, EE_WIRE_LABELS = 2 }; /* request flags */
#define EE_WIRE_HEADER 112
#define EE_WIRE_STATE 32
#define EE_WIRE_NAME 64
#define EE_WIRE_MAX_N 65536          /* samples in one request */
#define EE_WIRE_MAX_ROW (1 << 24)    /* values per sample */
typedef struct {
    uint64_t fingerprint;
    char split[EE_WIRE_NAME];        /* "" for whole inputs */
    int n, c, h, w, dtype, with_state, with_labels;
    const unsigned char *body;       /* into the parsed buffer */
} ee_wire_request;
/* flags: EE_WIRE_STATES, EE_WIRE_LABELS */
ee_status ee_wire_request_size(ee_ctx *ctx, int n, int c, int h, int w, int dtype, int flags, size_t *len);
/* x: n rows of c*h*w floats; st: n exit states, labels: n labels, either NULL (not sent); buf: cap bytes; *len: the
 * bytes written */
ee_status ee_wire_encode_request(ee_ctx *ctx, uint64_t fingerprint, const char *split, const float *x, int n, int c,
                                 int h, int w, int dtype, const ee_exit_state *st, const uint8_t *labels,
                                 unsigned char *buf, size_t cap, size_t *len);
/* checks the header and that len is exactly the size it describes (a clear error otherwise) */
ee_status ee_wire_parse_request(ee_ctx *ctx, const unsigned char *buf, size_t len, ee_wire_request *rq);
/* the data as floats (x: n*c*h*w), the exit states (st: n, may be NULL; fresh ones if none were sent) and the
 * labels (n, may be NULL; zeros if none were sent); refuses values that are not finite */
ee_status ee_wire_request_data(ee_ctx *ctx, const ee_wire_request *rq, float *x, ee_exit_state *st, uint8_t *labels);
size_t ee_wire_reply_size(int n);
void ee_wire_encode_reply(const uint8_t *pred, const float *conf, const uint8_t *exit_head, const uint8_t *why, int n,
                          unsigned char *buf);
ee_status ee_wire_parse_reply(ee_ctx *ctx, const unsigned char *buf, size_t len, int n, uint8_t *pred, float *conf,
                              uint8_t *exit_head, uint8_t *why);

/* The edge side over HTTP (libcurl): a connection to an `eenn serve` server at url ("http://HOST:PORT"), kept
 * open between calls. */
typedef struct {
    int dtype;        /* what crosses travels as (EE_WIRE_*) */
    int timeout_ms;   /* past it the server counts as failed (0: 5000) */
    int send_inputs;  /* 1: send the inputs of the samples that go on (POST /v1/classify: the server runs them from
                       * the start) instead of the split node's outputs; fewer bytes when the input is smaller than
                       * the activation (a 28x28 image against 16x28x28 floats) */
} ee_remote_opts;
typedef struct ee_remote ee_remote;
ee_status ee_remote_open(ee_ctx *ctx, const char *url, const ee_remote_opts *o, ee_remote **out);
void ee_remote_close(ee_remote *r);
typedef struct {
    int sent;                  /* samples sent to the server */
    size_t bytes_sent, bytes_received;
    int degraded;              /* samples answered here because the server failed (why = EE_EXIT_DEGRADED) */
    double round_trip_us;      /* the request, from sending to the reply parsed */
    char error[256];           /* why the server failed, if it did */
} ee_remote_stats;
/* ee_infer_edge here, the samples that did not exit sent to the server, and its answers merged: the same answers
 * as ee_infer_policy on one machine (with EE_WIRE_F32). If the server fails, those samples answer from their most
 * confident exit before the split, marked EE_EXIT_DEGRADED, and the call still succeeds (rs says why); it fails
 * only if there is no exit before the split to answer from. rs may be NULL. */
ee_status ee_infer_remote(ee_ctx *ctx, ee_net *net, ee_remote *r, const float *x, int n, const ee_exit_policy *p,
                          const ee_split *sp, uint8_t *pred, float *conf, uint8_t *exit_head, uint8_t *why,
                          ee_remote_stats *rs);

/* ---------------------------------------------------------------- risk control */
/* Thresholds with a statistical guarantee (Jazbec et al., "Fast yet Safe: Early-Exiting with Risk Control",
 * NeurIPS 2024; docs/design.md, "Risk control"). One threshold lambda shared by every exit, on the grid 1.00,
 * 0.99, ..., 0.00 (index k: lambda = 1 - k/100); a sample leaves at the first IC whose score is above lambda. The
 * risk is measured against the same network's final output. */
typedef enum {
    EE_RISK_GAP = 0,      /* 1[early answer wrong] - 1[final answer wrong]: needs labels */
    EE_RISK_CONSISTENCY,  /* 1[early answer != final answer]: no labels needed */
} ee_risk_kind;
typedef enum {
    EE_RC_NONE = 0,
    EE_RC_NAIVE,   /* the smallest lambda whose calibration risk is below epsilon: no guarantee */
    EE_RC_CRC,     /* conformal risk control: expected risk at most epsilon */
    EE_RC_UCB,     /* Hoeffding-Bentkus upper confidence bound: risk at most epsilon with probability 1 - delta */
    EE_RC_LTT,     /* Learn-Then-Test, fixed-sequence testing: risk at most epsilon with probability 1 - delta */
} ee_rc_method;
#define EE_RISK_GRID 101
const char *ee_rc_method_name(int method);  /* "naive", "crc", "ucb", "ltt" ("none" for EE_RC_NONE) */
int ee_rc_method_find(const char *name);
const char *ee_risk_name(int risk);         /* "gap", "consistency" */
int ee_risk_find(const char *name);
double ee_risk_lambda(int k);               /* the grid's k-th threshold: 1 - k/100 */
typedef struct {
    int kind;              /* ee_score_kind, on raw logits */
    ee_risk_kind risk;
    ee_rc_method method;
    double epsilon, delta;
    int reserved;
} ee_risk_calibration;
/* Per-sample losses (n x EE_RISK_GRID, in {-1, 0, 1}) and exits (may be NULL) at every grid threshold. */
ee_status ee_risk_losses(ee_ctx *ctx, const ee_outputs *o, int kind, ee_risk_kind risk, int8_t *loss,
                         uint8_t *exit_at);
/* Mean losses of samples idx[0..n) (all if idx is NULL) per grid threshold, and the same clipped at 0. */
void ee_risk_means(const int8_t *loss, const int *idx, int n, double *rhat, double *rhat_clip);
/* The grid index a procedure picks from n calibration samples' mean losses. */
int ee_risk_select(const ee_risk_calibration *rc, int n, const double *rhat, const double *rhat_clip);
/* The Hoeffding-Bentkus p-value of "mean loss > alpha" for n losses in [0, 1] with mean rhat, and the upper
 * confidence bound at level delta (the largest alpha whose p-value is at least delta). */
double ee_hb_pvalue(double rhat, int n, double alpha);
double ee_hb_ucb(double rhat, int n, double delta);
/* A shared-threshold policy picked by a procedure on calibration outputs, with its guarantee recorded. */
ee_status ee_calibrate_risk(ee_ctx *ctx, const ee_outputs *cal, const double *cost, const ee_risk_calibration *rc,
                            ee_exit_policy *p, ee_exit_stats *st);

/* The single max-softmax threshold q of the SDN paper, as policies with one shared threshold:
 * exits on collected outputs, calibration within an accuracy drop, real inference, and each sample's exit. */
void ee_exit_simulate(const ee_outputs *o, const double *cost, float q, int fallback, ee_exit_stats *st);
ee_status ee_calibrate(ee_ctx *ctx, const ee_outputs *val, const double *cost, double max_drop, int fallback,
                       ee_exit_stats *best);
ee_status ee_infer_exits(ee_ctx *ctx, ee_net *net, const float *x, int n, float q, int fallback, uint8_t *pred,
                         float *conf, uint8_t *exit_head);
void ee_exit_assign(const ee_outputs *o, float q, int fallback, uint8_t *exit_head, uint8_t *pred);

/* ---------------------------------------------------------------- overthinking (SDN paper, section 5) */
/* The reference's nominal cost of each head: 0.15, 0.30, ... for the ICs (evenly spread up to 0.9 when there are
 * more than six), 1.0 for the final output. */
void ee_nominal_costs(int heads, double *cost);

typedef struct {
    int n, heads;
    int correct[EE_MAX_HEADS];        /* samples head h gets right */
    int cum_correct[EE_MAX_HEADS];    /* samples some head <= h gets right */
    int first_correct[EE_MAX_HEADS];  /* samples head h is the first to get right */
    int wasteful;                            /* samples some IC (not the final) gets right */
    int oracle_exits[EE_MAX_HEADS];   /* the oracle's exit: the first head that is right; none: the final */
    double oracle_cost_nominal;              /* average oracle cost with the nominal costs (reference "Total Comp") */
    double oracle_cost;                      /* the same with the given real costs */
    int end_wrong;                           /* samples the final output gets wrong */
    int destructive[EE_MAX_HEADS];    /* of those, the samples IC h gets right */
    int destructive_any;                     /* of those, the samples some IC gets right */
    double destructive_frac;                 /* destructive_any / end_wrong (0 if no errors) */
    /* IC h's mean confidence on the final's errors it gets right, and on all samples it gets right (the
     * reference prints both; it adds 0.1 to the denominators, these are plain means) */
    double conf_destructive[EE_MAX_HEADS], conf_correct[EE_MAX_HEADS];
} ee_overthink;
/* Wasteful and destructive overthinking of outputs o. cost: real cumulative cost of exiting at each head. */
void ee_overthinking(const ee_outputs *o, const double *cost, ee_overthink *r);

/* ---------------------------------------------------------------- the confusion metric (section 6) */
/* conf(x) = sum over every head h of || softmax_h(x) - softmax_final(x) + 1e-6 ||_1 (the reference's
 * pairwise_distance). Needs o->prob. */
ee_status ee_confusion_scores(ee_ctx *ctx, const ee_outputs *o, float *score);
/* P(score of a random positive > score of a random negative), ties counting one half. 0.5 without both. */
double ee_auroc(const float *score, const uint8_t *positive, int n);

typedef struct {
    int n_right, n_wrong;               /* samples the final output gets right / wrong */
    double mean_right, std_right, mean_wrong, std_wrong;
    double auroc;                       /* how well the score flags the final's errors (higher = more suspect) */
    int right_flagged;                  /* right samples on the wrong side of the wrong samples' mean */
    int wrong_missed;                   /* wrong samples on the right side of the right samples' mean */
} ee_score_stats;
/* Statistics of a score that should be high on the final head's errors (sign = +1) or low on them (sign = -1,
 * e.g. the max softmax): the reference's counts, and the AUROC of sign * score. */
void ee_score_stats_of(const ee_outputs *o, const float *score, int sign, ee_score_stats *st);

/* ---------------------------------------------------------------- backdoors (section 7) */
typedef struct {
    int size;         /* a size x size white square */
    int x, y;         /* top-left corner; negative: counted from the right / bottom edge (-1: touching it) */
    int target;       /* label of stamped training samples; -1 keeps the true labels */
    double rate;      /* fraction of the samples stamped, chosen with the context's RNG; 1 = all */
} ee_trigger;
/* Stamps the trigger into ds in place (pixels set to 255 in every channel). With target >= 0, stamped samples
 * are relabelled, as in BadNets poisoning. Returns the number of samples stamped in *count. */
ee_status ee_dataset_stamp(ee_ctx *ctx, ee_dataset *ds, const ee_trigger *t, int *count);

/* ---------------------------------------------------------------- Grad-CAM (section 7) */
/* Grad-CAM of one sample x (h, w, c NHWC) for head `head` and class `cls` (-1: the head's prediction): the feature
 * map of `node` (-1: the last spatial map the head reads; an IC's attach point, the backbone's last map for the
 * final output) weighted by the spatial mean of the gradient of the class logit, ReLU, bilinearly upsampled to
 * the input size (PyTorch align_corners=False) and divided by its maximum. cam: h x w. Any of cls_out, node_out
 * may be NULL. The network's parameters, statistics and gradients are unchanged, and it can run the batch size it
 * was prepared for afterwards (activation buffers may be reallocated). */
ee_status ee_gradcam(ee_ctx *ctx, ee_net *net, const float *x, int head, int cls, int node, float *cam,
                     int *cls_out, int *node_out);

/* ---------------------------------------------------------------- benchmarking */
/* The fp32 GEMM rate this library reaches on the machine (n x n x n sgemm through oneDNN, the context's threads),
 * in GFLOP/s: the ceiling that convolutions lowered to GEMM are compared with. */
ee_status ee_bench_sgemm(ee_ctx *ctx, int n, double seconds, double *gflops);

#if defined(__GNUC__) && defined(EE_BUILDING_LIBRARY)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
