/* net.c: a network as a list of nodes: construction from text, parameter layout, forward over a node range,
 * batch compaction for early exits, loss seeding and the backward pass. */
#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

const float *ee_node_input(const ee_net *net, const ee_node *nd, int i) {
    return nd->in[i] < 0 ? net->x : net->nodes[nd->in[i]].y;
}
ee_shape ee_node_input_shape(const ee_net *net, const ee_node *nd, int i) {
    return nd->in[i] < 0 ? net->in : net->nodes[nd->in[i]].out;
}
float *ee_node_input_grad(ee_net *net, ee_node *nd, int i, int *accumulate) {
    if (nd->in[i] < 0) {
        if (!net->want_dx) return NULL;
        *accumulate = net->dx_seeded;
        net->dx_seeded = 1;
        return net->dx;
    }
    ee_node *src = &net->nodes[nd->in[i]];
    if (src->frozen) return NULL;
    *accumulate = src->seeded;
    src->seeded = 1;
    return src->dy;
}

static void free_buffers(ee_net *net) {
    for (int i = 0; i < net->nnodes; i++) {
        if (!net->npool) ee_free(net->nodes[i].y);
        net->nodes[i].y = net->nodes[i].dy = NULL;
    }
    for (int b = 0; b < net->npool; b++) { ee_free(net->pool[b]); net->pool[b] = NULL; }
    net->npool = 0;
    for (int b = 0; b < net->ndpool; b++) { ee_free(net->dpool[b]); net->dpool[b] = NULL; }
    net->ndpool = 0;
    ee_free(net->x); ee_free(net->dx); ee_free(net->scratch);
    net->x = net->dx = net->scratch = NULL;
}

/* the only node reading node i, or -1 */
static int sole_consumer(const ee_net *net, int i) {
    if (net->nodes[i].consumers != 1 || net->nodes[i].keep) return -1;
    for (int j = i + 1; j < net->nnodes; j++)
        for (int k = 0; k < net->nodes[j].nin; k++)
            if (net->nodes[j].in[k] == i) return j;
    return -1;
}

static void no_fusion(ee_net *net) {
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        nd->fused = 0;
        nd->fuse_bn = nd->fuse_relu = nd->fuse_add = nd->add_other = nd->fuse_drop = -1;
    }
}

/* Inference folds a BN that only reads a conv (which nobody else reads) into the conv's weights. What only reads
 * that BN joins the conv as oneDNN post-ops: a ReLU, or a residual add whose other operand is ready before the
 * conv runs, then a ReLU that only reads the add. One pass instead of up to four; the fused nodes are skipped.
 * An add that an IC also reads keeps its output (the pre-ReLU sum) and its ReLU runs on its own. A dropout
 * between the conv and the BN (WRN's blocks: conv, dropout, BN, ReLU) is the identity in inference: it is
 * skipped, and the BN folds through it. A conv with no BN after it (pre-activation blocks: BN, ReLU, conv, add)
 * takes its residual add (and a ReLU that only reads the add) the same way. */
void ee_net_plan_fusion(ee_net *net) {
    no_fusion(net);
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *c = &net->nodes[i];
        int b = c->kind == EE_KIND_CONV ? sole_consumer(net, i) : -1, drop = -1;
        if (b >= 0 && net->nodes[b].kind == EE_KIND_DROPOUT) {
            drop = b;
            b = sole_consumer(net, b);
        }
        int r, last;
        if (b >= 0 && net->nodes[b].kind == EE_KIND_BN && net->nodes[b].nin == 1) {
            if (drop >= 0) {
                c->fuse_drop = drop;
                net->nodes[drop].fused = 1;
            }
            c->fuse_bn = b;
            net->nodes[b].fused = 1;
            r = sole_consumer(net, b);
            last = b;
        } else if (b >= 0 && drop < 0 && net->nodes[b].kind == EE_KIND_ADD) {
            r = b; /* a conv with no BN after it (pre-activation blocks): its residual add alone */
            last = i;
        } else continue;
        if (r >= 0 && net->nodes[r].kind == EE_KIND_ADD && net->nodes[r].nin == 2) {
            ee_node *a = &net->nodes[r];
            int k = a->in[0] == last ? 1 : 0;
            if (a->in[k] != last && a->in[k] < i) {
                c->fuse_add = r;
                c->add_other = k;
                a->fused = 1;
                r = sole_consumer(net, r);
            } else r = -1;
        }
        if (r >= 0 && net->nodes[r].kind == EE_KIND_RELU) { c->fuse_relu = r; net->nodes[r].fused = 1; }
    }
    /* a BN left on its own (pre-activation blocks: BN, ReLU, conv) writes max(bn(x), 0) into its ReLU's output
     * when that ReLU is its only reader: one pass instead of two */
    for (int b = 0; b < net->nnodes; b++) {
        ee_node *bn = &net->nodes[b];
        if (bn->kind != EE_KIND_BN || bn->fused || bn->nin != 1) continue;
        int r = sole_consumer(net, b);
        if (r >= 0 && net->nodes[r].kind == EE_KIND_RELU && !net->nodes[r].fused) {
            bn->fuse_relu = r;
            net->nodes[r].fused = 1;
        }
    }
}

int ee_fused_last(const ee_net *net, int i) {
    const ee_node *nd = &net->nodes[i];
    if (nd->kind == EE_KIND_CONV && (nd->fuse_bn >= 0 || nd->fuse_add >= 0))
        return nd->fuse_relu >= 0 ? nd->fuse_relu : nd->fuse_add >= 0 ? nd->fuse_add : nd->fuse_bn;
    if (nd->kind == EE_KIND_BN && nd->fuse_relu >= 0) return nd->fuse_relu;
    return i;
}

/* Training computes a BN, the residual add that only reads it and the ReLU that only reads that (or the ReLU that
 * only reads the BN) in one pass each way (bn.c): the chain's intermediate outputs are never written. The add's
 * other operand must be ready before the BN runs (a projection shortcut's BN comes after the block's second BN:
 * the later of the two takes the add). Independent of the inference plan: Grad-CAM's fusion switch and the
 * kernels do not change it. */
static void plan_train_fusion(ee_net *net) {
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        nd->tf_relu = nd->tf_add = nd->tf_other = nd->tf_bn = -1;
        nd->tf_on = 0;
    }
    for (int b = 0; b < net->nnodes; b++) {
        ee_node *bn = &net->nodes[b];
        if (bn->kind != EE_KIND_BN || bn->nin != 1) continue;
        int r = sole_consumer(net, b), a = -1, k = -1;
        if (r >= 0 && net->nodes[r].kind == EE_KIND_ADD && net->nodes[r].nin == 2) {
            ee_node *add = &net->nodes[r];
            k = add->in[0] == b ? 1 : 0;
            if (add->in[k] == b || add->in[k] >= b) continue;
            a = r;
            r = sole_consumer(net, r);
        }
        if (r < 0 || net->nodes[r].kind != EE_KIND_RELU) continue;
        bn->tf_relu = r;
        bn->tf_add = a;
        bn->tf_other = k;
        net->nodes[r].tf_bn = b;
        if (a >= 0) net->nodes[a].tf_bn = b;
    }
}

static ee_status alloc_buffers(ee_ctx *ctx, ee_net *net, int max_batch, int training);

void ee_net_drop_workers(ee_net *net) {
    for (int k = 0; k < EE_MAX_WORKERS - 1; k++) {
        ee_net_free(net->wk_net[k]);
        ee_ctx_free(net->wk_ctx[k]);
        net->wk_net[k] = NULL;
        net->wk_ctx[k] = NULL;
    }
}

ee_status ee_net_set_fusion(ee_ctx *ctx, ee_net *net, int on) {
    ee_status s = ee_net_check_unsealed(ctx, net, "change which layers are fused");
    if (s) return s;
    ee_net_drop_workers(net); /* made again, with the new plan, on their next use */
    net->fusion_off = !on;
    plan_train_fusion(net);
    if (on) ee_net_plan_fusion(net);
    else no_fusion(net);
    /* which node writes which activation changed: an inference-only net shares buffers by lifetime */
    return net->max_batch && !net->training ? alloc_buffers(ctx, net, net->max_batch, 0) : EE_OK;
}

void *ee_node_scratch(ee_node *nd, size_t bytes) {
    if (nd->priv_bytes < bytes) {
        free(nd->priv);
        nd->priv = malloc(bytes);
        nd->priv_bytes = nd->priv ? bytes : 0;
    }
    return nd->priv;
}
void ee_node_release_scratch(ee_node *nd) {
    free(nd->priv);
    nd->priv = NULL;
    nd->priv_bytes = 0;
}

void ee_net_add_tensor(ee_net *net, ee_node *nd, const char *suffix, int is_state, size_t off, int ndim, int d0,
                       int d1, int d2, int d3) {
    ee_tensor *t = &net->tens[net->ntens++];
    snprintf(t->name, sizeof t->name, "%s.%s", nd->name, suffix);
    t->node = (int)(nd - net->nodes);
    t->ndim = ndim;
    t->dims[0] = d0; t->dims[1] = d1; t->dims[2] = d2; t->dims[3] = d3;
    t->count = 1;
    for (int i = 0; i < ndim; i++) t->count *= t->dims[i];
    t->is_state = is_state;
    t->off = off;
    nd->ntens++;
}

static ee_status finalize(ee_ctx *ctx, ee_net *net) {
    size_t np = 0, ns = 0;
    double in_values = (double)net->in.c * net->in.h * net->in.w;
    if (in_values > EE_MAX_SAMPLE_VALUES)
        return ee_fail(ctx, EE_ERR_FORMAT, "input %dx%dx%d: %.4g values per sample, more than %.0f", net->in.c, net->in.h,
                       net->in.w, in_values, EE_MAX_SAMPLE_VALUES);
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        nd->ins = ee_node_input_shape(net, nd, 0);
        ee_status s = ee_layers[nd->kind]->shape(ctx, net, nd);
        if (s) return s;
        if (nd->out.c < 1 || nd->out.h < 1 || nd->out.w < 1)
            return ee_fail(ctx, EE_ERR_FORMAT, "node '%s': output shape %dx%dx%d is empty (input %dx%dx%d too small)",
                           nd->name, nd->out.c, nd->out.h, nd->out.w, nd->ins.c, nd->ins.h, nd->ins.w);
        double values = (double)nd->out.c * nd->out.h * nd->out.w;
        if (values > EE_MAX_SAMPLE_VALUES)
            return ee_fail(ctx, EE_ERR_FORMAT, "node '%s': output %dx%dx%d has %.4g values per sample, more than %.0f",
                           nd->name, nd->out.c, nd->out.h, nd->out.w, values, EE_MAX_SAMPLE_VALUES);
        if ((double)nd->p_len > EE_MAX_LAYER_PARAMS || (double)np + nd->p_len > EE_MAX_NET_PARAMS)
            return ee_fail(ctx, EE_ERR_FORMAT, "node '%s': %zu parameters take the network past %.0f", nd->name,
                           nd->p_len, EE_MAX_NET_PARAMS);
        nd->p_off = np; np += nd->p_len;
        nd->s_off = ns; ns += nd->s_len;
        for (int j = 0; j < nd->nin; j++)
            if (nd->in[j] >= 0) net->nodes[nd->in[j]].consumers++;
    }
    ee_node *last = &net->nodes[net->nnodes - 1];
    if (last->out.h != 1 || last->out.w != 1)
        return ee_fail(ctx, EE_ERR_FORMAT, "the final node '%s' must produce a vector (1x1 spatial), not %dx%dx%d",
                       last->name, last->out.c, last->out.h, last->out.w);
    net->classes = last->out.c;
    for (int h = 0; h < net->nheads; h++) {
        ee_node *hd = &net->nodes[net->heads[h]];
        if (hd->out.h != 1 || hd->out.w != 1 || hd->out.c != net->classes)
            return ee_fail(ctx, EE_ERR_FORMAT, "head '%s' must output %d classes", hd->name, net->classes);
        hd->keep = 1;
        if (hd->conf >= 0) {
            ee_node *g = &net->nodes[hd->conf];
            if (ee_shape_size(g->out) != 1)
                return ee_fail(ctx, EE_ERR_FORMAT, "head '%s': its confidence node '%s' must output one value, not %dx%dx%d",
                               hd->name, g->name, g->out.c, g->out.h, g->out.w);
            g->keep = 1;
        }
    }
    net->nparams = np;
    net->nstate = ns;
    net->params = ee_alloc(np * sizeof(float));
    net->state = ee_alloc(ns * sizeof(float));
    net->tens = calloc((size_t)net->nnodes * 4 + 1, sizeof(ee_tensor));
    if (!net->params || !net->state || !net->tens) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        nd->tens0 = net->ntens;
        if (ee_layers[nd->kind]->tensors) ee_layers[nd->kind]->tensors(net, nd);
    }
    net->arch_text = ee_arch_to_text(net);
    if (!net->arch_text) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    ee_net_plan_fusion(net);
    plan_train_fusion(net);
    return EE_OK; /* oneDNN's engine: on first use (ee_dnnl_get) */
}

ee_status ee_net_from_text(ee_ctx *ctx, const char *text, const char *srcname, ee_net **out) {
    *out = NULL;
    ee_net *net = calloc(1, sizeof *net);
    if (!net) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    ee_status s = ee_arch_parse(ctx, text, srcname, net);
    if (!s && (s = finalize(ctx, net)) && s != EE_ERR_NOMEM && srcname) {
        /* shape errors name their node; say which text it is in */
        char msg[sizeof ctx->err];
        snprintf(msg, sizeof msg, "%s", ctx->err);
        ee_fail(ctx, s, "%s: %s", srcname, msg);
    }
    if (s) { ee_net_free(net); return s; }
    *out = net;
    return EE_OK;
}

ee_status ee_net_builtin(ee_ctx *ctx, const char *arch, int c, int h, int w, int classes, ee_net **out) {
    *out = NULL;
    if (c < 1 || h < 1 || w < 1 || classes < 2 || classes > 100000)
        return ee_fail(ctx, EE_ERR_ARG, "bad input shape %dx%dx%d or class count %d", c, h, w, classes);
    char *text = ee_arch_builtin(arch, c, h, w, classes, ctx);
    if (!text) return EE_ERR_ARG;
    ee_status s = ee_net_from_text(ctx, text, arch, out);
    free(text);
    return s;
}

void ee_net_free(ee_net *net) {
    if (!net) return;
    ee_net_drop_workers(net);
    for (int i = 0; i < net->nnodes; i++)
        if (ee_layers[net->nodes[i].kind]->release) ee_layers[net->nodes[i].kind]->release(&net->nodes[i]);
    ee_dnnl_free(net);
    free_buffers(net);
    ee_free(net->params); ee_free(net->grads); ee_free(net->state);
    free(net->tens);
    free(net->arch_text);
    for (int i = 0; i < net->nmeta; i++) { free(net->meta_keys[i]); free(net->meta_vals[i]); }
    free(net->meta_keys); free(net->meta_vals);
    free(net);
}

ee_status ee_net_clone(ee_ctx *ctx, const ee_net *src, const char *what, ee_net **out) {
    ee_net *n = NULL;
    ee_status s = ee_net_from_text(ctx, src->arch_text, what, &n);
    for (int i = 0; i < src->nmeta && !s; i++) s = ee_net_set_meta(ctx, n, src->meta_keys[i], src->meta_vals[i]);
    if (!s && (n->nparams != src->nparams || n->nstate != src->nstate))
        s = ee_fail(ctx, EE_ERR_ARG, "%s of '%s' has another number of parameters", what, src->arch_name);
    if (s) { ee_net_free(n); return s; }
    memcpy(n->params, src->params, src->nparams * sizeof(float));
    memcpy(n->state, src->state, src->nstate * sizeof(float));
    ee_net_params_changed(n);
    n->eval_chunk = src->eval_chunk;
    n->blk_off = src->blk_off;
    for (int i = 0; i < n->nnodes; i++) n->nodes[i].keep = src->nodes[i].keep; /* ee_net_keep_output */
    if ((s = ee_net_set_fusion(ctx, n, !src->fusion_off))) { ee_net_free(n); return s; } /* the same fusion plan */
    if (src->sealed) { /* the parameters copied are the packed weights where ee_net_seal packed them */
        n->sealed = 1;
        n->fp_weights = src->fp_weights;
        for (int i = 0; i < n->nnodes && !s; i++)
            if (n->nodes[i].kind == EE_KIND_CONV) s = ee_conv_seal_copy(ctx, &src->nodes[i], &n->nodes[i]);
        if (s) { ee_net_free(n); return s; }
    }
    *out = n;
    return EE_OK;
}

const char *ee_net_arch(const ee_net *net) { return net->arch_text; }
const char *ee_net_name(const ee_net *net) { return net->arch_name[0] ? net->arch_name : "custom"; }
int ee_net_num_nodes(const ee_net *net) { return net->nnodes; }
int ee_net_num_heads(const ee_net *net) { return net->nheads; }
int ee_net_head_node(const ee_net *net, int head) { return net->heads[head]; }
int ee_net_head_confidence(const ee_net *net, int head) { return net->nodes[net->heads[head]].conf; }
int ee_net_classes(const ee_net *net) { return net->classes; }
void ee_net_input_shape(const ee_net *net, int *c, int *h, int *w) { *c = net->in.c; *h = net->in.h; *w = net->in.w; }
size_t ee_net_num_params(const ee_net *net) { return net->nparams; }
float *ee_net_params(ee_net *net) { return net->sealed ? NULL : net->params; }
/* gradients exist only in nets that train (an inference-only net does not hold a second copy of the weights) */
float *ee_net_grads(ee_net *net) {
    if (!net->grads) net->grads = ee_alloc(net->nparams * sizeof(float));
    return net->grads;
}
size_t ee_net_num_state(const ee_net *net) { return net->nstate; }
float *ee_net_state(ee_net *net) { return net->state; }
int ee_net_num_tensors(const ee_net *net) { return net->ntens; }
void ee_net_params_changed(ee_net *net) { net->params_version++; net->state_version++; }

int ee_net_find_tensor(const ee_net *net, const char *name) {
    for (int i = 0; i < net->ntens; i++)
        if (!strcmp(net->tens[i].name, name)) return i;
    return -1;
}
void ee_net_tensor(ee_net *net, int i, const char **name, float **data, size_t *count, int *ndim, int dims[4],
                   int *is_state) {
    ee_tensor *t = &net->tens[i];
    if (name) *name = t->name;
    if (data) *data = t->is_state ? net->state + t->off : net->sealed ? NULL : net->params + t->off;
    if (count) *count = t->count;
    if (ndim) *ndim = t->ndim;
    if (dims) memcpy(dims, t->dims, sizeof t->dims);
    if (is_state) *is_state = t->is_state;
}

int ee_net_find_node(const ee_net *net, const char *name) {
    for (int i = 0; i < net->nnodes; i++)
        if (!strcmp(net->nodes[i].name, name)) return i;
    return -1;
}

void ee_net_node_info(const ee_net *net, int i, ee_node_info *info) {
    const ee_node *nd = &net->nodes[i];
    memset(info, 0, sizeof *info);
    info->name = nd->name;
    info->kind = ee_layers[nd->kind]->name;
    info->in_c = nd->ins.c; info->in_h = nd->ins.h; info->in_w = nd->ins.w;
    info->c = nd->out.c; info->h = nd->out.h; info->w = nd->out.w;
    info->params = nd->p_len;
    if (ee_layers[nd->kind]->count) ee_layers[nd->kind]->count(net, nd, &info->macs, &info->flops, &info->profiler_ops);
    for (int h = 0; h < net->nheads; h++)
        if (net->heads[h] == i) info->is_head = 1;
}

ee_status ee_net_check_unsealed(ee_ctx *ctx, const ee_net *net, const char *what) {
    if (!net->sealed) return EE_OK;
    return ee_fail(ctx, EE_ERR_ARG, "cannot %s: the network was sealed for inference (ee_net_seal), its convolution "
                   "weights are packed in place of the parameters", what);
}

ee_status ee_net_seal(ee_ctx *ctx, ee_net *net) {
    if (net->sealed) return EE_OK;
    if (!net->max_batch || net->training)
        return ee_fail(ctx, EE_ERR_ARG, "seal a network prepared for inference only (ee_net_prepare with training 0)");
    if (net->fusion_off) return ee_fail(ctx, EE_ERR_ARG, "cannot seal a network whose fusion is switched off");
    net->fp_weights = ee_net_weights_hash(net); /* the weights' fingerprint, before they are packed */
    net->sealed = 1; /* at once: if a conv fails below, those sealed before it stay sealed, and consistent */
    for (int i = 0; i < net->nnodes; i++) {
        ee_status s = net->nodes[i].kind == EE_KIND_CONV ? ee_conv_seal(ctx, net, &net->nodes[i]) : EE_OK;
        if (s) return s;
    }
    return EE_OK;
}

ee_status ee_net_init(ee_ctx *ctx, ee_net *net) {
    ee_status s = ee_net_check_unsealed(ctx, net, "initialise the parameters");
    if (s) return s;
    for (int i = 0; i < net->nnodes; i++)
        if (ee_layers[net->nodes[i].kind]->init) ee_layers[net->nodes[i].kind]->init(ctx, net, &net->nodes[i]);
    ee_net_params_changed(net);
    return EE_OK;
}

/* Lifetimes of the activations in an inference forward (train = 0) with the current fusion plan: def_step is
 * the node whose forward writes y (a fused conv writes into the last node of its chain), last_step the last
 * node whose forward reads it. Heads and kept nodes live to the end. */
static void plan_lifetimes(ee_net *net) {
    for (int i = 0; i < net->nnodes; i++) {
        net->nodes[i].def_step = -1;
        net->nodes[i].last_step = net->nodes[i].keep ? EE_MAX_NODES : -1;
    }
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        if (nd->fused) continue;
        int target = ee_fused_last(net, i);
        for (int j = 0; j < nd->nin; j++)
            if (nd->in[j] >= 0 && net->nodes[nd->in[j]].last_step < i) net->nodes[nd->in[j]].last_step = i;
        if (nd->kind == EE_KIND_CONV && nd->fuse_add >= 0) {
            int o = net->nodes[nd->fuse_add].in[nd->add_other];
            if (o >= 0 && net->nodes[o].last_step < i) net->nodes[o].last_step = i;
        }
        net->nodes[target].def_step = i;
        if (net->nodes[target].last_step < i) net->nodes[target].last_step = i;
    }
}

/* Inference-only nets whose convs run oneDNN's Winograd kernel: an activation that only oneDNN's convs and BNs
 * write and read, and that a Winograd conv writes or reads, is stored in oneDNN's blocked layout nChw16c
 * (ee_node.blk): the Winograd convs then take and give it as it is, without the reorders around every call
 * (WRN-32-4 at batch 1, when it ran Winograd: about 1 ms of 7), and a BN converts between the layouts in its own
 * pass over the tensor. A residual add that a conv takes has its operand and its sum in one layout, so each such
 * chain (a stage's residual stream) is decided as one. Activations that no Winograd conv touches stay NHWC:
 * oneDNN's other convs run 7-10% slower on nChw16c than brgconv on NHWC (ResNet-56's at batch 64). So do those
 * that anything else reads (pools, heads, exit branches, kept and split outputs). The plan (blk_many) holds for
 * passes of at least EE_WINO_MIN_BATCH samples; a pass of fewer runs no Winograd and stores everything NHWC
 * (use_plan). */
static int blk_root(int *up, int i) {
    while (up[i] != i) i = up[i] = up[up[i]];
    return i;
}
/* 16 channels: nChw16c and NHWC are the same bytes; such a tensor is marked NHWC and takes either role */
static int wild(const ee_net *net, int i) { return net->nodes[i].out.c == 16; }
static void plan_blocked(ee_ctx *ctx, ee_net *net) {
    uint8_t ok[EE_MAX_NODES], wino[EE_MAX_NODES];
    int up[EE_MAX_NODES];
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        nd->blk = nd->blk_many = wino[i] = 0;
        up[i] = i;
        ok[i] = !net->blk_off && nd->def_step >= 0 && nd->last_step < EE_MAX_NODES && !nd->keep && nd->out.c % 16 == 0 &&
                nd->out.c > 16 && nd->out.h * nd->out.w > 1;
    }
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        if (nd->fused) continue;
        /* 0: NHWC only; 1: either layout (a BN, a oneDNN conv); 2: a conv that runs Winograd in every pass the
         * plan is for */
        int cap = nd->kind == EE_KIND_BN ? nd->nin == 1 : nd->kind == EE_KIND_CONV ? ee_conv_blk_ok(ctx, nd) : 0;
        int t[4], m = 0;
        t[m++] = ee_fused_last(net, i);
        for (int j = 0; j < nd->nin; j++) t[m++] = nd->in[j];
        int o = nd->kind == EE_KIND_CONV && nd->fuse_add >= 0 ? net->nodes[nd->fuse_add].in[nd->add_other] : -1;
        t[m++] = o;
        for (int k = 0; k < m; k++)
            if (t[k] >= 0) {
                if (!cap) ok[t[k]] = 0;
                if (cap == 2) wino[t[k]] = 1;
            }
        if (o >= 0 && !wild(net, o)) up[blk_root(up, o)] = blk_root(up, t[0]);
        if (cap == 1 && nd->kind == EE_KIND_CONV && !wild(net, t[0])) { /* oneDNN's direct convs: one layout both sides */
            if (nd->in[0] < 0) ok[t[0]] = 0;
            else if (!wild(net, nd->in[0])) up[blk_root(up, nd->in[0])] = blk_root(up, t[0]);
        }
    }
    uint8_t cok[EE_MAX_NODES], cw[EE_MAX_NODES];
    for (int i = 0; i < net->nnodes; i++) cok[i] = 1, cw[i] = 0;
    for (int i = 0; i < net->nnodes; i++) {
        int r = blk_root(up, i);
        cok[r] &= ok[i];
        cw[r] |= wino[i];
    }
    for (int i = 0; i < net->nnodes; i++) {
        int r = blk_root(up, i);
        net->nodes[i].blk = net->nodes[i].blk_many = ok[i] && cok[r] && cw[r];
    }
}

/* the layouts of a pass of n samples that starts here (a forward from the first node, or a split's activation
 * set): plan_blocked's, or NHWC throughout when n is too small for Winograd */
static void use_plan(ee_net *net, int n) {
    for (int i = 0; i < net->nnodes; i++) net->nodes[i].blk = n >= EE_WINO_MIN_BATCH ? net->nodes[i].blk_many : 0;
}

void ee_node_output_get(const ee_net *net, int node, float *to, int n) {
    const ee_node *nd = &net->nodes[node];
    if (nd->blk) ee_reblock(nd->y, to, n, nd->out, 1, NULL);
    else memcpy(to, nd->y, (size_t)n * ee_shape_size(nd->out) * sizeof(float));
}
void ee_node_output_set(ee_net *net, int node, const float *from, int n) {
    use_plan(net, n);
    ee_node *nd = &net->nodes[node];
    if (nd->blk) ee_reblock(from, nd->y, n, nd->out, 0, NULL);
    else memcpy(nd->y, from, (size_t)n * ee_shape_size(nd->out) * sizeof(float));
}

/* Training nets: every node its own activation; gradients by lifetime (plan_gradients). Inference-only nets: activations share buffers
 * whenever their lifetimes do not overlap (greedy, in execution order, best fit), so ResNet-56 at batch 128
 * holds a handful of activations instead of one per node. A buffer is freed only after the step that last
 * reads it, so no node writes over its own input. Stopping after any node and going on later (forward_range,
 * compaction) is safe: what a later node reads was written before and is not reused until that node ran. */

/* The free buffer (owner < 0) that fits `need` floats most tightly, else the largest free one grown to fit,
 * else a new one; it becomes t's. */
static int take_buffer(size_t *cap, int *owner, int *nb, size_t need, int t, int own) {
    size_t best_cap = 0;
    int best = -1;
    for (int b = 0; b < *nb && !own; b++) {
        if (owner[b] >= 0) continue;
        int fits = cap[b] >= need, best_fits = best >= 0 && best_cap >= need;
        if (best < 0 || (fits && (!best_fits || cap[b] < best_cap)) || (!fits && !best_fits && cap[b] > best_cap))
            best = b, best_cap = cap[b];
    }
    if (best < 0) { best = (*nb)++; cap[best] = 0; }
    if (cap[best] < need) cap[best] = need;
    owner[best] = t;
    return best;
}

/* Training nets: the gradients dy share buffers by their lifetimes in the backward pass, which runs the nodes
 * in reverse. A head's (and a confidence node's) dy lives from the loss that seeds it; any other node's from the backward of its last
 * consumer, which writes it first, to its own backward, which reads it last. A node's input gradients are
 * placed before its own dy is released, so no backward writes over the dy it reads. ResNet-56 at batch 128:
 * a few buffers instead of one per node (half of the training activations). What reads a dy after the whole
 * backward has to stop the backward early instead (ee_net_backward_until). */
static int plan_gradients(ee_net *net, int max_batch) {
    size_t cap[EE_MAX_NODES];
    int owner[EE_MAX_NODES], buf_of[EE_MAX_NODES], nb = 0, placed[EE_MAX_NODES];
    for (int i = 0; i < net->nnodes; i++) placed[i] = 0;
    /* step nnodes: the loss seeds the heads; step i < nnodes: node i's backward writes its inputs' dy */
    for (int step = net->nnodes; step >= 0; step--) {
        int tg[2 * EE_MAX_HEADS + 2], m = 0;
        if (step == net->nnodes) /* the heads, and the confidence nodes of EENet exits */
            for (int k = 0; k < net->nheads; k++) {
                tg[m++] = net->heads[k];
                if (net->nodes[net->heads[k]].conf >= 0) tg[m++] = net->nodes[net->heads[k]].conf;
            }
        else
            for (int k = 0; k < net->nodes[step].nin; k++) tg[m++] = net->nodes[step].in[k];
        /* a ReLU computed with its BN and add in training: its backward writes the add's inputs' dy */
        const ee_node *sn = step < net->nnodes ? &net->nodes[step] : NULL;
        if (sn && sn->kind == EE_KIND_RELU && sn->tf_bn >= 0 && net->nodes[sn->tf_bn].tf_add >= 0) {
            const ee_node *add = &net->nodes[net->nodes[sn->tf_bn].tf_add];
            tg[m++] = add->in[0];
            tg[m++] = add->in[1];
        }
        for (int k = 0; k < m; k++) {
            int t = tg[k];
            if (t < 0 || placed[t]) continue; /* the network input, or a dy already live */
            buf_of[t] = take_buffer(cap, owner, &nb, ee_shape_size(net->nodes[t].out) * max_batch, t, 0);
            placed[t] = 1;
        }
        /* node `step` has read its dy; a ReLU computed with its BN is read once more by the BN's backward, which
         * masks it instead of reading a dy of its own (bn.c) */
        if (step < net->nnodes && placed[step] && !(sn->kind == EE_KIND_RELU && sn->tf_bn >= 0))
            owner[buf_of[step]] = -1;
        if (step < net->nnodes && net->nodes[step].kind == EE_KIND_BN && net->nodes[step].tf_relu >= 0 &&
            placed[net->nodes[step].tf_relu])
            owner[buf_of[net->nodes[step].tf_relu]] = -1;
    }
    net->ndpool = nb;
    for (int b = 0; b < nb; b++) {
        net->dpool_len[b] = cap[b];
        if (!(net->dpool[b] = ee_alloc_huge(cap[b] * sizeof(float)))) return 0;
    }
    for (int i = 0; i < net->nnodes; i++) net->nodes[i].dy = placed[i] ? net->dpool[buf_of[i]] : NULL;
    return 1;
}

static ee_status alloc_buffers(ee_ctx *ctx, ee_net *net, int max_batch, int training) {
    free_buffers(net);
    for (int i = 0; i < net->nnodes; i++) net->nodes[i].add_inplace = net->nodes[i].blk = net->nodes[i].blk_many = 0;
    size_t mx = ee_shape_size(net->in);
    net->x = ee_alloc(mx * max_batch * sizeof(float));
    int ok = net->x != NULL;
    for (int i = 0; i < net->nnodes; i++)
        if (ee_shape_size(net->nodes[i].out) > mx) mx = ee_shape_size(net->nodes[i].out);
    if (training) {
        ok = ee_net_grads(net) != NULL;
        for (int i = 0; i < net->nnodes && ok; i++) {
            ee_node *nd = &net->nodes[i];
            ok = (nd->y = ee_alloc_huge(ee_shape_size(nd->out) * max_batch * sizeof(float))) != NULL;
        }
        if (ok) ok = plan_gradients(net, max_batch);
        if (ok) {
            net->scratch_len = mx * max_batch;
            ok = (net->scratch = ee_alloc_huge(net->scratch_len * sizeof(float))) &&
                 (net->dx = ee_alloc(ee_shape_size(net->in) * max_batch * sizeof(float)));
        }
    } else if (ok) {
        plan_lifetimes(net);
        plan_blocked(ctx, net);
        size_t cap[EE_MAX_NODES];
        int owner[EE_MAX_NODES], buf_of[EE_MAX_NODES], nb = 0;
        for (int step = 0; step < net->nnodes; step++) {
            for (int t = 0; t < net->nnodes; t++) { /* the activations this step writes */
                if (net->nodes[t].def_step != step) continue;
                size_t need = ee_shape_size(net->nodes[t].out) * max_batch;
                ee_node *c = &net->nodes[step];
                int o = c->kind == EE_KIND_CONV && c->fuse_add >= 0 ? net->nodes[c->fuse_add].in[c->add_other] : -1;
                /* not when the shortcut is also the conv's input: the conv would overwrite what it still reads */
                if (o >= 0 && o != c->in[0] && net->nodes[o].last_step == step && !net->nodes[o].keep &&
                    ee_shape_size(net->nodes[o].out) == ee_shape_size(net->nodes[t].out)) {
                    /* the residual sum goes into the shortcut's buffer, which nothing reads afterwards */
                    c->add_inplace = 1;
                    owner[buf_of[o]] = t;
                    buf_of[t] = buf_of[o];
                    continue;
                }
                /* what lives to the end (heads, confidence nodes, kept outputs) gets a buffer of its own: inference
                 * runs chunk after chunk, and an earlier owner of a shared buffer, recomputed for the next chunk
                 * with a shorter row, would write over this node's rows of the chunks before */
                buf_of[t] = take_buffer(cap, owner, &nb, need, t, net->nodes[t].last_step == EE_MAX_NODES);
            }
            for (int b = 0; b < nb; b++) /* free what no later step reads */
                if (owner[b] >= 0 && net->nodes[owner[b]].last_step <= step) owner[b] = -1;
        }
        for (int b = 0; b < nb && ok; b++) {
            ok = (net->pool[b] = ee_alloc(cap[b] * sizeof(float))) != NULL;
            net->pool_len[b] = cap[b];
        }
        net->npool = nb;
        for (int i = 0; i < net->nnodes && ok; i++)
            net->nodes[i].y = net->nodes[i].def_step >= 0 ? net->pool[buf_of[i]] : NULL;
    }
    if (!ok) {
        free_buffers(net);
        net->max_batch = 0;
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory for activations at batch %d", max_batch);
    }
    net->max_batch = max_batch;
    net->training = training;
    return EE_OK;
}

ee_status ee_net_prepare(ee_ctx *ctx, ee_net *net, int max_batch, int training) {
    if (max_batch < 1) return ee_fail(ctx, EE_ERR_ARG, "batch size must be at least 1, not %d", max_batch);
    if (max_batch <= net->max_batch && (training <= net->training)) return EE_OK;
    if (training && net->sealed) return ee_net_check_unsealed(ctx, net, "prepare for training");
    ee_status s = alloc_buffers(ctx, net, max_batch, training);
    if (s) return s;
    if (!net->eval_chunk) {
        /* 32 or 64 samples: small enough that a chunk's activations stay in cache, large enough that the GEMMs of
         * deep layers with tiny maps stay efficient (measured: chunks of 4-8 cost VGG-16 up to 14%) */
        size_t per = 1;
        for (int i = 0; i < net->nnodes; i++) if (ee_shape_size(net->nodes[i].out) > per) per = ee_shape_size(net->nodes[i].out);
        net->eval_chunk = (size_t)64 * per * sizeof(float) <= (8u << 20) ? 64 : 32;
    }
    return EE_OK;
}

/* moves every activation pointer `rows` samples on, so that a chunk of the batch runs as if it were a batch */
static void shift_rows(ee_net *net, ptrdiff_t rows) {
    net->x += rows * (ptrdiff_t)ee_shape_size(net->in);
    for (int i = 0; i < net->nnodes; i++)
        if (net->nodes[i].y) net->nodes[i].y += rows * (ptrdiff_t)ee_shape_size(net->nodes[i].out);
}

void ee_net_set_eval_chunk(ee_net *net, int chunk) { net->eval_chunk = chunk; }
void ee_net_set_eval_workers(ee_net *net, int workers) { net->eval_workers = workers < 0 ? 0 : workers; }

static ee_status forward_body(ee_ctx *ctx, ee_net *net, int from, int to, int n, int train);
static ee_status forward_workers(ee_ctx *ctx, ee_net *net, int n, int W);

ee_status ee_net_forward_range(ee_ctx *ctx, ee_net *net, const float *x, int from, int to, int n, int train) {
    if (n < 1 || n > net->max_batch)
        return ee_fail(ctx, EE_ERR_ARG, "batch of %d exceeds the prepared size %d (call ee_net_prepare)", n, net->max_batch);
    if (from < 0 || to > net->nnodes || from > to) return ee_fail(ctx, EE_ERR_ARG, "bad node range [%d, %d)", from, to);
    if (train && !net->training) return ee_fail(ctx, EE_ERR_ARG, "network not prepared for training");
    ee_threads_apply(ctx);
    if (from == 0 && x) memcpy(net->x, x, ee_shape_size(net->in) * n * sizeof(float));
    if (from == 0) use_plan(net, n);
    net->cur_n = n;
    const int W = ee_eval_workers(net, n, from, to, train);
    return W > 1 ? forward_workers(ctx, net, n, W) : forward_body(ctx, net, from, to, n, train);
}

/* Inference of a whole batch on several cores, sample-parallel: W workers each run a share of the samples
 * through the whole network on their own cores (1 each on 2 cores), the first share on this net and the others
 * on copies of it (their own buffers and primitives, the same weights, kept until the net is freed). No core
 * waits for another between layers, as the threads of one layer's kernel do. Timed on a 2-core AVX-512 EPYC as
 * two single-thread halves against one 2-thread batch (img/s): ResNet-56 at batch 128 1744 / 1596, 1719 / 1488,
 * 1748 / 1551, at batch 8 1677 / 1448; MobileNet at 128 3340 / 2951, at 8 2984 / 2623; VGG-16-BN at 128 755 /
 * 691 and at 64 774 / 681, but at 32 552 / 656 and at 8 375 / 438; WRN-32-4 level at 128 and 64 (282 / 285, 209 /
 * 210), at 8 219 / 245. A share reads every weight once per chunk, so networks with more than 16 MB of weights
 * split only into shares of 32 samples or more; the others from 4. Shares of at least 2 samples run the same
 * activation plan as the whole batch (use_plan), so the kept outputs copied back have one layout. */
#define WORKER_HEAVY_BYTES (16u << 20)
/* the cores this pass may use (ee_threads_apply ran) */
static int pass_cores(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
/* the first sample of share k of n in W */
static int share_start(int n, int k, int W) { return (int)((long)n * k / W); }

int ee_eval_workers(const ee_net *net, int n, int from, int to, int train) {
    if (train || net->training || from != 0 || to != net->nnodes || net->eval_workers == 1 || n < 4)
        return 1;
    const int T = pass_cores();
    int W;
    if (net->eval_workers > 1) W = net->eval_workers; /* asked for: that many whatever the cores */
    else {
        const int per = net->nparams * sizeof(float) > WORKER_HEAVY_BYTES ? 32 : 4;
        W = n / per < T ? n / per : T;
    }
    if (W > n / 2) W = n / 2;
    return W > EE_MAX_WORKERS ? EE_MAX_WORKERS : W;
}

typedef struct {
    ee_ctx *ctx;
    ee_net *net;
    int k, r0, m;
    ee_share_fn fn;
    void *user;
    ee_status s;
} worker_job;
static void *worker_run(void *arg) {
    worker_job *j = arg;
    j->s = j->fn(j->ctx, j->net, j->k, j->r0, j->m, j->user);
    return NULL;
}

ee_status ee_net_run_shares(ee_ctx *ctx, ee_net *net, int n, int W, ee_share_fn fn, void *user) {
    ee_status s = EE_OK;
    const int T = pass_cores();
    if (net->wk_pver != net->params_version || net->wk_sver != net->state_version) { /* new weights since */
        for (int k = 0; k < EE_MAX_WORKERS - 1; k++)
            if (net->wk_net[k]) {
                memcpy(net->wk_net[k]->params, net->params, net->nparams * sizeof(float));
                memcpy(net->wk_net[k]->state, net->state, net->nstate * sizeof(float));
                ee_net_params_changed(net->wk_net[k]);
            }
        net->wk_pver = net->params_version;
        net->wk_sver = net->state_version;
    }
    for (int k = 1; k < W && !s; k++) { /* the copies, made on first use */
        if (!net->wk_ctx[k - 1] && !(net->wk_ctx[k - 1] = ee_ctx_new())) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        if (!net->wk_net[k - 1] && !(s = ee_net_clone(ctx, net, "an inference worker", &net->wk_net[k - 1])))
            net->wk_net[k - 1]->eval_workers = 1;
    }
    if (s) return s;
    worker_job job[EE_MAX_WORKERS];
    pthread_t th[EE_MAX_WORKERS];
    int started = 1;
    for (int k = 0; k < W; k++) {
        const int r0 = share_start(n, k, W);
        job[k] = (worker_job){k ? net->wk_ctx[k - 1] : ctx, k ? net->wk_net[k - 1] : net, k, r0,
                              share_start(n, k + 1, W) - r0, fn, user, EE_OK};
    }
    for (int k = 1; k < W && !s; k++) {
        ee_ctx_set_threads(job[k].ctx, ee_core_share(T, W, k));
        ee_ctx_set_conv_kernel(job[k].ctx, ee_ctx_conv_kernel(ctx));
        if ((s = ee_net_prepare(job[k].ctx, job[k].net, job[k].m, 0))) ee_fail(ctx, s, "%s", ee_ctx_error(job[k].ctx));
    }
    for (; started < W && !s; started++)
        if (pthread_create(&th[started], NULL, worker_run, &job[started])) {
            s = ee_fail(ctx, EE_ERR_NOMEM, "cannot start an inference thread");
            break; /* th[started] was not started: not joined below */
        }
    if (!s) { /* the first share here, on this thread's share of the cores */
        const int threads = ctx->threads;
        ctx->threads = ee_core_share(T, W, 0);
#ifdef _OPENMP
        omp_set_num_threads(ctx->threads);
#endif
        s = fn(ctx, net, 0, 0, job[0].m, user);
        ctx->threads = threads;
#ifdef _OPENMP
        omp_set_num_threads(T);
#endif
    }
    for (int k = 1; k < started; k++) {
        pthread_join(th[k], NULL);
        if (!s && job[k].s) s = ee_fail(ctx, job[k].s, "%s", ee_ctx_error(job[k].ctx));
    }
    return s;
}

/* a share of a whole-network inference pass: the first on this net, whose input buffer holds the batch (its
 * pointer moves while the first share runs in chunks: the others take its address from before) */
typedef struct { const float *x; size_t img; } forward_job;
static ee_status forward_share(ee_ctx *ctx, ee_net *net, int k, int r0, int m, void *user) {
    const forward_job *j = user;
    if (!k) return forward_body(ctx, net, 0, net->nnodes, m, 0);
    return ee_net_forward(ctx, net, j->x + (size_t)r0 * j->img, m, 0);
}

static ee_status forward_workers(ee_ctx *ctx, ee_net *net, int n, int W) {
    forward_job j = {net->x, ee_shape_size(net->in)};
    ee_status s = ee_net_run_shares(ctx, net, n, W, forward_share, &j);
    if (s) return s;
    /* what outlives the pass (heads, confidences, kept outputs) into this net's rows of those samples */
    for (int i = 0; i < net->nnodes; i++) {
        const ee_node *nd = &net->nodes[i];
        if (!nd->y || nd->def_step < 0 || nd->last_step != EE_MAX_NODES) continue;
        const size_t row = ee_shape_size(nd->out);
        for (int k = 1; k < W; k++) {
            const int r0 = share_start(n, k, W);
            memcpy(nd->y + r0 * row, net->wk_net[k - 1]->nodes[i].y, (size_t)(share_start(n, k + 1, W) - r0) * row * sizeof(float));
        }
    }
    net->cur_n = n;
    return EE_OK;
}

static ee_status forward_body(ee_ctx *ctx, ee_net *net, int from, int to, int n, int train) {
    /* inference: the whole range on one cache-sized chunk of samples at a time, instead of each layer over the
     * whole batch (samples are independent in eval mode) */
    int chunk = !train && net->eval_chunk > 0 && n > net->eval_chunk ? net->eval_chunk : n;
    ee_status s = EE_OK;
#ifdef _OPENMP
    /* int8 inference whose convolutions all run on one thread (ee_conv_q8_small): the whole range does, so that
     * the other layers (the exits' heads) do not wake the second thread between them */
    const int nthr = omp_get_max_threads();
    int one = !train && nthr > 1, convs = 0;
    for (int i = from; i < to && one; i++)
        if (net->nodes[i].kind == EE_KIND_CONV) {
            convs++;
            one = ee_conv_q8_small(&net->nodes[i], chunk);
        }
    one = one && convs > 0;
    if (one) omp_set_num_threads(1);
#endif
    for (int c0 = 0; c0 < n && !s; c0 += chunk) {
        int m = n - c0 < chunk ? n - c0 : chunk;
        if (c0) shift_rows(net, chunk);
        for (int i = from; i < to && !s; i++) {
            ee_node *nd = &net->nodes[i];
            int tr = train && !nd->frozen;
            if (!tr && nd->fused) continue; /* computed by the fused convolution before it */
            if (nd->kind == EE_KIND_BN) /* the BN's training pass computes its add and ReLU too if they run as well */
                nd->tf_on = tr && nd->tf_relu >= 0 && nd->tf_relu < to && !net->nodes[nd->tf_relu].frozen &&
                            (nd->tf_add < 0 || !net->nodes[nd->tf_add].frozen);
            nd->last_train = tr;
            if (tr && nd->tf_bn >= 0 && net->nodes[nd->tf_bn].tf_on) continue; /* computed by that BN */
            s = ee_layers[nd->kind]->forward(ctx, net, nd, m, tr);
        }
    }
#ifdef _OPENMP
    if (one) omp_set_num_threads(nthr);
#endif
    if (chunk < n) shift_rows(net, -(ptrdiff_t)((n - 1) / chunk) * chunk);
    return s;
}

ee_status ee_net_forward(ee_ctx *ctx, ee_net *net, const float *x, int n, int train) {
    return ee_net_forward_range(ctx, net, x, 0, net->nnodes, n, train);
}

/* Gathers rows keep[] of buf (rows of `row` floats) to the front; keep is ascending so this is in place. */
static void gather_rows(float *buf, size_t row, const int *keep, int nkeep) {
    for (int j = 0; j < nkeep; j++)
        if (keep[j] != j) memmove(buf + (size_t)j * row, buf + (size_t)keep[j] * row, row * sizeof(float));
}

ee_status ee_net_compact(ee_ctx *ctx, ee_net *net, int from, const int *keep, int nkeep) {
    for (int j = 0; j < nkeep; j++)
        if (keep[j] < 0 || keep[j] >= net->cur_n || (j && keep[j] <= keep[j - 1]))
            return ee_fail(ctx, EE_ERR_ARG, "compaction indices must be ascending and below %d", net->cur_n);
    /* which activations does any node >= from still read? */
    int need_x = 0;
    for (int i = from; i < net->nnodes; i++)
        for (int j = 0; j < net->nodes[i].nin; j++)
            if (net->nodes[i].in[j] < 0) need_x = 1;
    if (need_x) gather_rows(net->x, ee_shape_size(net->in), keep, nkeep);
    for (int s = 0; s < from && s < net->nnodes; s++) {
        const ee_node *nd = &net->nodes[s];
        int needed;
        if (!net->training) /* shared buffers: exactly the activations written before `from` and read after it */
            needed = nd->def_step >= 0 && nd->def_step < from && nd->last_step >= from;
        else {
            needed = nd->keep;
            for (int i = from; i < net->nnodes && !needed; i++)
                for (int j = 0; j < net->nodes[i].nin; j++)
                    if (net->nodes[i].in[j] == s) needed = 1;
        }
        if (needed) gather_rows(nd->y, ee_shape_size(nd->out), keep, nkeep);
    }
    net->cur_n = nkeep;
    return EE_OK;
}

const float *ee_net_node_output(const ee_net *net, int node) { return net->nodes[node].y; }

ee_status ee_net_keep_output(ee_ctx *ctx, ee_net *net, int node) {
    if (node < 0 || node >= net->nnodes) return ee_fail(ctx, EE_ERR_ARG, "no node %d (the network has %d)", node, net->nnodes);
    if (net->nodes[node].keep) return EE_OK;
    net->nodes[node].keep = 1;
    return ee_net_set_fusion(ctx, net, !net->fusion_off); /* re-plan fusion and buffers */
}

size_t ee_net_activation_bytes(const ee_net *net) {
    if (!net->max_batch) return 0;
    size_t n = ee_shape_size(net->in), b = net->max_batch;
    if (net->training) {
        for (int i = 0; i < net->nnodes; i++) n += ee_shape_size(net->nodes[i].out);
        n += net->scratch_len / b + ee_shape_size(net->in);
        n *= b;
        for (int k = 0; k < net->ndpool; k++) n += net->dpool_len[k];
        return n * sizeof(float);
    }
    n *= b;
    for (int k = 0; k < net->npool; k++) n += net->pool_len[k];
    size_t wk = 0; /* the inference workers' copies (ee_net_set_eval_workers) */
    for (int k = 0; k < EE_MAX_WORKERS - 1; k++)
        if (net->wk_net[k]) wk += ee_net_activation_bytes(net->wk_net[k]);
    return n * sizeof(float) + wk;
}
const float *ee_net_head_output(const ee_net *net, int head) { return net->nodes[net->heads[head]].y; }

void ee_net_zero_seeds(ee_net *net) {
    for (int i = 0; i < net->nnodes; i++) net->nodes[i].seeded = 0;
    net->dx_seeded = 0;
}

ee_status ee_net_loss(ee_ctx *ctx, ee_net *net, int head, const uint8_t *labels, int n, float weight, double *loss,
                      int *correct) {
    if (head < 0 || head >= net->nheads) return ee_fail(ctx, EE_ERR_ARG, "no head %d", head);
    ee_node *nd = &net->nodes[net->heads[head]];
    int k = nd->out.c, right = 0;
    double total = 0;
    int seed = net->training && nd->dy && weight != 0;
    int acc = nd->seeded;
    for (int i = 0; i < n; i++) {
        const float *z = nd->y + (size_t)i * k;
        if (labels[i] >= k) return ee_fail(ctx, EE_ERR_ARG, "label %d out of range for %d classes", labels[i], k);
        float mx = z[0];
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > mx) { mx = z[j]; arg = j; }
        double sum = 0;
        for (int j = 0; j < k; j++) sum += exp((double)z[j] - mx);
        double lse = mx + log(sum);
        total += lse - z[labels[i]];
        right += arg == labels[i];
        if (seed) {
            float *g = nd->dy + (size_t)i * k;
            for (int j = 0; j < k; j++) {
                float v = (float)((exp((double)z[j] - lse) - (j == labels[i])) * weight / n);
                g[j] = acc ? g[j] + v : v;
            }
        }
    }
    if (seed) nd->seeded = 1;
    if (!isfinite(total)) return ee_fail(ctx, EE_ERR_NUMERIC, "loss is not finite (NaN or Inf): training diverged");
    if (loss) *loss = total / n;
    if (correct) *correct = right;
    return EE_OK;
}

void ee_net_want_input_grad(ee_net *net, int on) { net->want_dx = on; }
const float *ee_net_input_grad(const ee_net *net) { return net->want_dx && net->dx_seeded ? net->dx : NULL; }

ee_status ee_net_backward(ee_ctx *ctx, ee_net *net, int n) { return ee_net_backward_until(ctx, net, n, -1); }

ee_status ee_net_backward_until(ee_ctx *ctx, ee_net *net, int n, int stop) {
    if (!net->training) return ee_fail(ctx, EE_ERR_ARG, "network not prepared for training");
    ee_threads_apply(ctx);
    memset(net->grads, 0, net->nparams * sizeof(float));
    net->bwd_stop = stop;
    for (int i = net->nnodes - 1; i > stop; i--) {
        ee_node *nd = &net->nodes[i];
        if (!nd->seeded || nd->frozen) continue; /* no gradient reaches this node, or it is frozen */
        ee_status s = ee_layers[nd->kind]->backward(ctx, net, nd, n);
        if (s) return s;
    }
    return EE_OK;
}

const char *ee_net_meta(const ee_net *net, const char *key) {
    for (int i = 0; i < net->nmeta; i++)
        if (!strcmp(net->meta_keys[i], key)) return net->meta_vals[i];
    return NULL;
}

void ee_net_unset_meta(ee_net *net, const char *key) {
    for (int i = 0; i < net->nmeta; i++)
        if (!strcmp(net->meta_keys[i], key)) {
            free(net->meta_keys[i]);
            free(net->meta_vals[i]);
            net->nmeta--;
            memmove(net->meta_keys + i, net->meta_keys + i + 1, sizeof *net->meta_keys * (net->nmeta - i));
            memmove(net->meta_vals + i, net->meta_vals + i + 1, sizeof *net->meta_vals * (net->nmeta - i));
            return;
        }
}

ee_status ee_net_set_meta(ee_ctx *ctx, ee_net *net, const char *key, const char *value) {
    for (int i = 0; i < net->nmeta; i++)
        if (!strcmp(net->meta_keys[i], key)) {
            char *v = strdup(value);
            if (!v) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
            free(net->meta_vals[i]);
            net->meta_vals[i] = v;
            return EE_OK;
        }
    char **k = realloc(net->meta_keys, (net->nmeta + 1) * sizeof *k);
    if (k) net->meta_keys = k;
    char **v = realloc(net->meta_vals, (net->nmeta + 1) * sizeof *v);
    if (v) net->meta_vals = v;
    if (!k || !v) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    net->meta_keys[net->nmeta] = strdup(key);
    net->meta_vals[net->nmeta] = strdup(value);
    if (!net->meta_keys[net->nmeta] || !net->meta_vals[net->nmeta]) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    net->nmeta++;
    return EE_OK;
}
