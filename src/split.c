/* split.c: a network cut in two at one node, for an edge device and a server. The near side runs the layers up to
 * the split with their exits; only the samples that did not exit cross, as the split node's output and a little
 * per-sample state; the far side resumes at the next node with the exits after it. Both sides together answer
 * exactly as one machine running ee_infer_policy would. Also the model fingerprint both sides compare. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

void ee_exit_state_init(ee_exit_state *st) {
    memset(st, 0, sizeof *st);
    st->best = -1;
    st->jprod = 1;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t ee_net_weights_hash(const ee_net *net) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, net->arch_text, strlen(net->arch_text));
    h = fnv(h, net->params, net->nparams * sizeof(float));
    h = fnv(h, net->state, net->nstate * sizeof(float));
    return h;
}

uint64_t ee_net_fingerprint(const ee_net *net) {
    uint64_t h = net->sealed ? net->fp_weights : ee_net_weights_hash(net);
    const char *pol = ee_net_meta(net, "policy");
    h = fnv(h, "\n", 1);
    if (pol) h = fnv(h, pol, strlen(pol));
    return h;
}

/* 1 for the nodes the final head depends on: the backbone, without the exit branches */
static void main_path(const ee_net *net, uint8_t *on) {
    memset(on, 0, (size_t)net->nnodes);
    on[net->heads[net->nheads - 1]] = 1;
    for (int i = net->nnodes - 1; i >= 0; i--)
        if (on[i])
            for (int j = 0; j < net->nodes[i].nin; j++)
                if (net->nodes[i].in[j] >= 0) on[net->nodes[i].in[j]] = 1;
}

ee_status ee_split_at(ee_ctx *ctx, const ee_net *net, const char *name, ee_split *sp) {
    memset(sp, 0, sizeof *sp);
    int s = ee_net_find_node(net, name);
    if (s < 0) return ee_fail(ctx, EE_ERR_ARG, "no node '%s' to split at", name);
    uint8_t on[EE_MAX_NODES];
    main_path(net, on);
    int fin = net->heads[net->nheads - 1];
    if (!on[s] || s >= fin)
        return ee_fail(ctx, EE_ERR_ARG, "cannot split at '%s': %s", name,
                       s >= fin ? "it is the final head or after it" : "it is not on the path to the final head (an exit branch?)");
    /* inference computes a conv, its BN, residual add and ReLU in one pass (ee_net_plan_fusion): only the last
     * node of such a chain has an output to send */
    for (int i = 0; i < net->nnodes; i++) {
        const ee_node *c = &net->nodes[i];
        int last = ee_fused_last(net, i);
        if (last == i) continue;
        if ((i == s || c->fuse_drop == s || c->fuse_bn == s || c->fuse_add == s || c->fuse_relu == s) && s != last)
            return ee_fail(ctx, EE_ERR_ARG, "cannot split at '%s': inference computes it inside one pass with '%s' "
                           "(conv, dropout, batch norm, add, ReLU fused); split at '%s'", name, net->nodes[last].name,
                           net->nodes[last].name);
    }
    /* the far side starts at the next backbone node: exit branches that hang off the split stay on the near side */
    int r = s + 1;
    while (r < fin && !on[r]) r++;
    for (int i = r; i < net->nnodes; i++)
        for (int j = 0; j < net->nodes[i].nin; j++) {
            int in = net->nodes[i].in[j];
            if (in == s || in >= r) continue;
            return ee_fail(ctx, EE_ERR_ARG, "cannot split at '%s': node '%s' after it reads %s%s from before it; split "
                           "where one tensor alone crosses (a block's output)", name, net->nodes[i].name,
                           in < 0 ? "the network input" : "'", in < 0 ? "" : net->nodes[in].name);
        }
    sp->node = s;
    sp->resume = r;
    while (sp->heads < net->nheads - 1 && ee_head_end(net, sp->heads) < r) sp->heads++;
    sp->c = net->nodes[s].out.c;
    sp->h = net->nodes[s].out.h;
    sp->w = net->nodes[s].out.w;
    double before = 0, all = 0;
    for (int i = 0; i < net->nnodes; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        all += in.flops;
        if (i < r) before += in.flops;
    }
    sp->flops_frac = all > 0 ? before / all : 0;
    return EE_OK;
}

/* what both sides refuse */
static ee_status split_check(ee_ctx *ctx, const ee_net *net, const ee_exit_policy *p, const ee_split *sp, int n) {
    if (sp->node < 0 || sp->node >= net->nnodes || sp->resume <= sp->node || sp->resume > net->nnodes ||
        net->nodes[sp->node].out.c != sp->c || net->nodes[sp->node].out.h != sp->h || net->nodes[sp->node].out.w != sp->w)
        return ee_fail(ctx, EE_ERR_ARG, "the split does not belong to this network (use ee_split_at)");
    if (ee_policy_has_jumps(p))
        return ee_fail(ctx, EE_ERR_ARG, "a policy that jumps ahead (a cascade) cannot be split");
    if (n > net->max_batch) return ee_fail(ctx, EE_ERR_ARG, "batch of %d exceeds the prepared size %d", n, net->max_batch);
    return EE_OK;
}

/* Both halves split a batch between the net's inference workers as ee_infer_policy does (ee_net_run_shares):
 * every sample is independent. Share k runs on the net (k = 0) or on worker copy k - 1; without workers the
 * whole batch is share 0. */
typedef struct {
    const float *x, *act;
    const ee_exit_policy *p;
    const ee_split *sp;
    ee_exit_state *st;
    uint8_t *pred, *exit_head, *why;
    float *conf;
    int *left;                                        /* edge: each share's own list, from its first row on */
    int r0[EE_MAX_WORKERS], nleft[EE_MAX_WORKERS];
} half_job;

static ee_status edge_share(ee_ctx *ctx, ee_net *net, int k, int r0, int m, void *user) {
    half_job *j = user;
    infer_seg seg = {0, 0, j->sp->resume, j->left + r0, 0};
    j->r0[k] = r0;
    ee_status s = ee_infer_segment(ctx, net, j->x + (size_t)r0 * ee_shape_size(net->in), m, j->p, NULL, &seg,
                                   j->st + r0, j->pred + r0, j->conf + r0, j->exit_head + r0, j->why ? j->why + r0 : NULL);
    j->nleft[k] = seg.nleft;
    return s;
}

static ee_status resume_share(ee_ctx *ctx, ee_net *net, int k, int r0, int m, void *user) {
    (void)k;
    half_job *j = user;
    const ee_split *sp = j->sp;
    ee_node_output_set(net, sp->node, j->act + (size_t)r0 * sp->c * sp->h * sp->w, m);
    infer_seg seg = {sp->resume, sp->heads, net->nnodes, NULL, 0};
    return ee_infer_segment(ctx, net, NULL, m, j->p, NULL, &seg, j->st + r0, j->pred + r0, j->conf + r0,
                            j->exit_head + r0, j->why ? j->why + r0 : NULL);
}

/* the workers a batch of n splits between (1: none) */
static int half_workers(ee_ctx *ctx, const ee_net *net, int n) {
    if (n < 2) return 1;
    ee_threads_apply(ctx);
    return ee_eval_workers(net, n, 0, net->nnodes, 0);
}

ee_status ee_infer_edge(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_exit_policy *p, const ee_split *sp,
                        uint8_t *pred, float *conf, uint8_t *exit_head, uint8_t *why, ee_exit_state *st, int *left,
                        int *nleft, float *act) {
    ee_status s = split_check(ctx, net, p, sp, n);
    *nleft = 0;
    if (s || n < 1) return s;
    for (int i = 0; i < n; i++) ee_exit_state_init(&st[i]);
    const int W = half_workers(ctx, net, n);
    half_job j = {.x = x, .p = p, .sp = sp, .st = st, .pred = pred, .exit_head = exit_head, .why = why,
                  .conf = conf, .left = left};
    if ((s = W > 1 ? ee_net_run_shares(ctx, net, n, W, edge_share, &j) : edge_share(ctx, net, 0, 0, n, &j))) return s;
    /* the shares' lists and activations one after the other: the samples that go on, in batch order */
    const size_t row = (size_t)sp->c * sp->h * sp->w;
    for (int k = 0; k < W; k++) {
        for (int i = 0; i < j.nleft[k]; i++) left[*nleft + i] = left[j.r0[k] + i] + j.r0[k];
        if (j.nleft[k]) ee_node_output_get(k ? net->wk_net[k - 1] : net, sp->node, act + *nleft * row, j.nleft[k]);
        *nleft += j.nleft[k];
    }
    return EE_OK;
}

ee_status ee_infer_resume(ee_ctx *ctx, ee_net *net, const float *act, int n, const ee_exit_policy *p,
                          const ee_split *sp, ee_exit_state *st, uint8_t *pred, float *conf, uint8_t *exit_head,
                          uint8_t *why) {
    ee_status s = split_check(ctx, net, p, sp, n);
    if (s || n < 1) return s;
    ee_exit_state *own = NULL;
    if (!st) {
        if (!(own = malloc(sizeof *own * n))) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n; i++) ee_exit_state_init(&own[i]);
        st = own;
    }
    const int W = half_workers(ctx, net, n);
    half_job j = {.act = act, .p = p, .sp = sp, .st = st, .pred = pred, .exit_head = exit_head, .why = why,
                  .conf = conf};
    s = W > 1 ? ee_net_run_shares(ctx, net, n, W, resume_share, &j) : resume_share(ctx, net, 0, 0, n, &j);
    free(own);
    return s;
}

/* ---------------------------------------------------------------- hierarchical training (Sepehri et al.) */
static ee_status train_check(ee_ctx *ctx, const ee_net *net, const ee_split *sp, int n) {
    if (!net->training) return ee_fail(ctx, EE_ERR_ARG, "network not prepared for training");
    if (sp->node < 0 || sp->node >= net->nnodes || sp->resume <= sp->node || sp->resume > net->nnodes)
        return ee_fail(ctx, EE_ERR_ARG, "the split does not belong to this network (use ee_split_at)");
    if (n < 1 || n > net->max_batch) return ee_fail(ctx, EE_ERR_ARG, "batch of %d, prepared for %d", n, net->max_batch);
    return EE_OK;
}

/* seeds heads [h0, h1) with their weighted cross-entropy: the weighted sum in *loss, the last head's correct
 * answers in *correct (either may be NULL) */
static ee_status seed_losses(ee_ctx *ctx, ee_net *net, int h0, int h1, const uint8_t *labels, int n,
                             const float *weights, double *loss, int *correct) {
    ee_net_zero_seeds(net);
    double total = 0;
    for (int h = h0; h < h1; h++) {
        double l = 0;
        ee_status s = ee_net_loss(ctx, net, h, labels, n, weights[h], &l, h == h1 - 1 ? correct : NULL);
        if (s) return s;
        total += weights[h] * l;
    }
    if (loss) *loss = total;
    return EE_OK;
}

ee_status ee_split_train_edge(ee_ctx *ctx, ee_net *net, const ee_split *sp, const float *x, const uint8_t *labels,
                              int n, const float *weights, float *act, double *loss, int *correct) {
    ee_status s = train_check(ctx, net, sp, n);
    if (s) return s;
    if (sp->heads < 1) return ee_fail(ctx, EE_ERR_ARG, "no exit before the split: the near part has no loss to train on");
    if ((s = ee_net_forward_range(ctx, net, x, 0, sp->resume, n, 1))) return s;
    if ((s = seed_losses(ctx, net, 0, sp->heads, labels, n, weights, loss, correct))) return s;
    /* only the exits before the split are seeded: the gradient stays in the near part */
    if ((s = ee_net_backward(ctx, net, n))) return s;
    if (act) memcpy(act, net->nodes[sp->node].y, (size_t)n * sp->c * sp->h * sp->w * sizeof(float));
    return EE_OK;
}

ee_status ee_split_train_far(ee_ctx *ctx, ee_net *net, const ee_split *sp, const float *act, const uint8_t *labels,
                             int n, const float *weights, double *loss, int *correct) {
    ee_status s = train_check(ctx, net, sp, n);
    if (s) return s;
    memcpy(net->nodes[sp->node].y, act, (size_t)n * sp->c * sp->h * sp->w * sizeof(float));
    if ((s = ee_net_forward_range(ctx, net, NULL, sp->resume, net->nnodes, n, 1))) return s;
    if ((s = seed_losses(ctx, net, sp->heads, net->nheads, labels, n, weights, loss, correct))) return s;
    /* the split node's output is a constant here: the backward stops at it, nothing goes back */
    return ee_net_backward_until(ctx, net, n, sp->node);
}

ee_status ee_split_merge(ee_ctx *ctx, ee_net *dst, const ee_net *src, const ee_split *sp) {
    if (strcmp(dst->arch_text, src->arch_text))
        return ee_fail(ctx, EE_ERR_ARG, "the far part comes from a different architecture");
    if (dst->sealed || src->sealed) return ee_fail(ctx, EE_ERR_ARG, "cannot merge sealed networks");
    for (int i = sp->resume; i < dst->nnodes; i++) {
        const ee_node *a = &dst->nodes[i];
        memcpy(dst->params + a->p_off, src->params + a->p_off, a->p_len * sizeof(float));
        memcpy(dst->state + a->s_off, src->state + a->s_off, a->s_len * sizeof(float));
    }
    ee_net_params_changed(dst);
    return EE_OK;
}
