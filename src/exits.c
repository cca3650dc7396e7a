/* exits.c: early exits. Per-head predictions, confidences and logits of a dataset, and real early-exit inference
 * under an exit policy (policy.c decides): it stops at the exit for a single sample and compacts the batch after
 * every IC so that exited samples cost nothing more, with per-sample deadlines and a batch FLOPs budget. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ee_outputs_free(ee_outputs *o) {
    if (!o) return;
    free(o->pred); free(o->conf); free(o->label); free(o->prob); free(o->logits); free(o->gate);
    free(o);
}

static float sigmoidf_(float g) { return (float)(1.0 / (1.0 + exp(-(double)g))); }

/* 1 if some head has a learned confidence branch */
static int has_gates(const ee_net *net) {
    for (int h = 0; h < net->nheads; h++)
        if (net->nodes[net->heads[h]].conf >= 0) return 1;
    return 0;
}

/* the learned confidence of head h for sample j of the current batch: the sigmoid of its confidence node; a head
 * without one: -1 for an IC (never exits on it), 1 for the final head (it always answers) */
static float head_gate(const ee_net *net, int h, int j) {
    int g = net->nodes[net->heads[h]].conf;
    if (g < 0) return h == net->nheads - 1 ? 1.0f : -1.0f;
    return sigmoidf_(net->nodes[g].y[j]);
}

/* softmax max and argmax of one logit row */
static void top1(const float *z, int k, uint8_t *pred, float *conf) {
    int arg = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[arg]) arg = j;
    double sum = 0;
    for (int j = 0; j < k; j++) sum += exp((double)z[j] - z[arg]);
    *pred = (uint8_t)arg;
    *conf = (float)(1.0 / sum);
}

ee_status ee_collect_outputs(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int batch, int with_prob,
                             ee_outputs **out) {
    *out = NULL;
    if (batch <= 0) batch = 256;
    if (batch > ds->n) batch = ds->n;
    if (ds->c != net->in.c || ds->h != net->in.h || ds->w != net->in.w)
        return ee_fail(ctx, EE_ERR_ARG, "data is %dx%dx%d but the network takes %dx%dx%d", ds->c, ds->h, ds->w, net->in.c,
                       net->in.h, net->in.w);
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] >= net->classes)
            return ee_fail(ctx, EE_ERR_ARG, "image %d has label %d but the network has %d classes (labels 0 to %d)", i,
                           ds->labels[i], net->classes, net->classes - 1);
    ee_status s = net->max_batch < batch ? ee_net_prepare(ctx, net, batch, net->training) : EE_OK;
    if (s) return s;
    int H = net->nheads, K = net->classes, gated = has_gates(net);
    ee_outputs *o = calloc(1, sizeof *o);
    float *x = ee_alloc(ee_shape_size(net->in) * batch * sizeof(float));
    int *idx = malloc(batch * sizeof(int));
    if (o) {
        o->n = ds->n; o->heads = H; o->classes = K;
        if (with_prob) o->prob = malloc((size_t)ds->n * H * K * sizeof(float));
        o->pred = malloc((size_t)ds->n * H);
        o->conf = malloc((size_t)ds->n * H * sizeof(float));
        o->label = malloc(ds->n);
        o->logits = malloc((size_t)ds->n * H * K * sizeof(float));
        if (gated) o->gate = malloc((size_t)ds->n * H * sizeof(float));
    }
    if (!o || !x || !idx || !o->pred || !o->conf || !o->label || !o->logits || (with_prob && !o->prob) ||
        (gated && !o->gate)) {
        ee_outputs_free(o); ee_free(x); free(idx);
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < ds->n && !s; i += batch) {
        int n = ds->n - i < batch ? ds->n - i : batch;
        for (int j = 0; j < n; j++) idx[j] = i + j;
        ee_dataset_batch(ctx, ds, idx, n, NULL, x, o->label + i);
        if ((s = ee_net_forward(ctx, net, x, n, 0))) break;
        for (int h = 0; h < H; h++) {
            const float *z = ee_net_head_output(net, h);
            for (int j = 0; j < n; j++) {
                if (o->gate) o->gate[(size_t)(i + j) * H + h] = head_gate(net, h, j);
                memcpy(o->logits + ((size_t)(i + j) * H + h) * K, z + (size_t)j * K, sizeof(float) * K);
                top1(z + (size_t)j * K, K, &o->pred[(size_t)(i + j) * H + h], &o->conf[(size_t)(i + j) * H + h]);
                if (o->prob) {
                    float *p = o->prob + ((size_t)(i + j) * H + h) * K;
                    const float *zj = z + (size_t)j * K;
                    double sum = 0, mx = zj[o->pred[(size_t)(i + j) * H + h]];
                    for (int k = 0; k < K; k++) sum += exp(zj[k] - mx);
                    for (int k = 0; k < K; k++) p[k] = (float)(exp(zj[k] - mx) / sum);
                }
            }
        }
    }
    ee_free(x); free(idx);
    if (s) { ee_outputs_free(o); return s; }
    *out = o;
    return EE_OK;
}

void ee_head_accuracy(const ee_outputs *o, double *acc) {
    for (int h = 0; h < o->heads; h++) {
        int right = 0;
        for (int i = 0; i < o->n; i++) right += o->pred[(size_t)i * o->heads + h] == o->label[i];
        acc[h] = (double)right / o->n;
    }
}

/* time since t0 in microseconds */
static double elapsed_us(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e6 + (t.tv_nsec - t0->tv_nsec) * 1e-3;
}

typedef struct { float score; int j; } ranked;
#define SMALL_BATCH 16 /* batches up to this size keep their work arrays on the stack */
/* ee_infer_segment's work arrays, bytes per sample: the exit state (when it owns it), the ranks, three ints (map,
 * keep, dest), two floats (score, confidence) and the class */
#define WORK_PER_SAMPLE (sizeof(ee_exit_state) + sizeof(ranked) + 3 * sizeof(int) + 2 * sizeof(float) + 1)
static int by_score_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    return x->score < y->score ? 1 : x->score > y->score ? -1 : x->j - y->j;
}

/* Can samples jump from head h to head t, skipping the layers in between? Only if nothing from head t's part of
 * the network on reads anything but the input or that part itself (a cascade of whole networks). */
static ee_status check_jump(ee_ctx *ctx, const ee_net *net, int h, int t) {
    int start = ee_head_end(net, t - 1) + 1;
    for (int i = start; i < net->nnodes; i++)
        for (int j = 0; j < net->nodes[i].nin; j++) {
            int r = net->nodes[i].in[j];
            if (r >= 0 && r < start)
                return ee_fail(ctx, EE_ERR_ARG, "the exit policy jumps from head %d to head %d, but node '%s' after "
                               "the jump reads '%s' from before it: only parts that read the input alone (cascades) "
                               "can be jumped to", h + 1, t + 1, net->nodes[i].name, net->nodes[r].name);
        }
    return EE_OK;
}

/* Real early exits: run up to each IC, score its outputs under the policy, let the samples that exit leave and
 * compact the rest. Every sample keeps its best-scoring head so far, for the fallback and for anytime answers.
 * Samples that jump ahead wait, and join the batch again (their input rows copied back) at their head's part.
 * seg (may be NULL: the whole network from the input) runs part of the network only: from node seg->node0 (whose
 * input the caller has put in place) and head seg->head0, with the per-sample state st carried in, and up to node
 * seg->stop, where the samples still going are listed in seg->left (their state in st). */
ee_status ee_infer_segment(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_exit_policy *p,
                           const ee_infer_limits *lim, infer_seg *seg, ee_exit_state *st, uint8_t *pred, float *conf,
                           uint8_t *exit_head, uint8_t *why) {
    if (n > net->max_batch) return ee_fail(ctx, EE_ERR_ARG, "batch of %d exceeds the prepared size %d", n, net->max_batch);
    if (seg) seg->nleft = 0;
    if (n < 1) return EE_OK;
    int H = net->nheads, K = net->classes, from = seg ? seg->node0 : 0, active = n;
    int h0 = seg ? seg->head0 : 0, stop = seg ? seg->stop : net->nnodes;
    if (p->kind < 0 || p->kind >= ee_score_count()) return ee_fail(ctx, EE_ERR_ARG, "unknown exit score kind %d", p->kind);
    if (p->heads && p->heads != H)
        return ee_fail(ctx, EE_ERR_ARG, "the exit policy is for %d heads, the network has %d", p->heads, H);
    if (p->kind == EE_SCORE_CONFIDENCE && !has_gates(net))
        return ee_fail(ctx, EE_ERR_ARG, "the 'confidence' exit policy needs exits with a learned confidence branch "
                       "(EENet exits: eenn train --mode eenet); this network has none");
    int jumps = ee_policy_has_jumps(p);
    for (int h = 0; jumps && h < H - 1; h++) {
        ee_status r;
        if (p->jump_to[h] && (p->jump_to[h] <= h + 1 || p->jump_to[h] >= H))
            return ee_fail(ctx, EE_ERR_ARG, "exit %d: jump target %d is not a later head", h + 1, p->jump_to[h] + 1);
        if (p->jump_to[h] && (r = check_jump(ctx, net, h, p->jump_to[h]))) return r;
    }
    ee_infer_limits none = {0, 0, 0};
    if (!lim) lim = &none;
    if (jumps && (lim->deadline_flops > 0 || lim->deadline_us > 0 || lim->batch_flops > 0))
        return ee_fail(ctx, EE_ERR_ARG, "deadlines and budgets are not supported with a policy that jumps ahead");
    /* the costs up to each head depend on the architecture only: computed once per net */
    if (!(net->head_flops[H - 1] > 0)) ee_net_head_costs(net, NULL, net->head_flops);
    const double *flops = net->head_flops;
    if (lim->deadline_flops > 0 && lim->deadline_flops < flops[0])
        return ee_fail(ctx, EE_ERR_ARG, "a deadline of %.0f FLOPs is below the first exit's %.0f", lim->deadline_flops,
                       flops[0]);
    if (lim->batch_flops > 0 && lim->batch_flops < flops[0] * n)
        return ee_fail(ctx, EE_ERR_ARG, "a budget of %.0f FLOPs cannot take %d samples to the first exit (%.0f each)",
                       lim->batch_flops, n, flops[0]);
    /* the per-sample work arrays, in one block: on the stack for small batches (one image at a time on a device
     * makes this call thousands of times a second), else one allocation */
    int jei = ee_policy_jei(p), own = !st, waiting = 0;
    const size_t per = WORK_PER_SAMPLE - (own ? 0 : sizeof *st);
    _Alignas(16) unsigned char small[SMALL_BATCH * WORK_PER_SAMPLE];
    unsigned char *block = n <= SMALL_BATCH ? small : malloc(per * (size_t)n);
    if (!block) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    /* widest alignment first: the states and ranks hold doubles or floats and ints */
    unsigned char *at = block;
    if (own) { st = (ee_exit_state *)(void *)at; at += sizeof *st * (size_t)n; }
    ranked *rank = (ranked *)(void *)at;
    at += sizeof(ranked) * (size_t)n;
    int *map = (int *)(void *)at, *keep = map + n, *dest = map + 2 * n; /* dest: jumps' head (-1: not waiting) */
    float *sc = (float *)(void *)(map + 3 * n), *cf = sc + n;
    uint8_t *pr = (uint8_t *)(cf + n);
    /* st: each sample's best head so far (score, class, confidence) and, for JEI-DNN's rule, its sum of gates and
     * product of 1 - q so far, carried across a split */
    size_t row = ee_shape_size(net->in);
    ee_status s = EE_OK;
    for (int i = 0; i < n; i++) {
        map[i] = i;
        dest[i] = -1;
        if (own) ee_exit_state_init(&st[i]);
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double spent = 0; /* FLOPs the batch has used so far */
    int strict = ee_score_strict(p->kind);
    for (int h = h0; h < H && (active > 0 || waiting > 0); h++) {
        int to = h == H - 1 ? net->nnodes : ee_head_end(net, h) + 1;
        if (to > stop) { /* the split: the samples still going are run up to it and listed */
            if (active && from < stop && (s = ee_net_forward_range(ctx, net, from ? NULL : x, from, stop, active, 0))) break;
            for (int j = 0; j < active; j++) seg->left[j] = map[j];
            seg->nleft = active;
            active = 0;
            break;
        }
        if (waiting) { /* the samples that jumped to this head join, in input order after the others */
            for (int i = 0; i < n; i++)
                if (dest[i] == h) {
                    memcpy(net->x + (size_t)active * row, x + (size_t)i * row, row * sizeof(float));
                    map[active++] = i;
                    dest[i] = -1;
                    waiting--;
                }
        }
        if (!active) { from = to; continue; }
        if ((s = ee_net_forward_range(ctx, net, from ? NULL : x, from, to, active, 0))) break;
        spent += (flops[h] - (h ? flops[h - 1] : 0)) * active;
        const float *z = ee_net_head_output(net, h);
        for (int j = 0; j < active; j++) {
            int o = map[j];
            sc[j] = ee_policy_score(p, h, z + (size_t)j * K, K, p->kind == EE_SCORE_CONFIDENCE ? head_gate(net, h, j) : -1,
                                    &pr[j]);
            if (jei && h < H - 1) sc[j] = ee_gate_jei_step(&st[o].jsum, &st[o].jprod, sc[j]);
            /* the max softmax of this head: the confidence reported when it answers */
            cf[j] = p->kind == EE_SCORE_MAXPROB && p->temperature[h] == 1.0f
                        ? sc[j] : ee_score_logits(EE_SCORE_MAXPROB, z + (size_t)j * K, K, 1, NULL);
            if (h < H - 1 && sc[j] > st[o].best) { st[o].best = sc[j]; st[o].best_pred = pr[j]; st[o].best_conf = cf[j]; }
        }
        /* the answer of sample j if it stops here: this head's, or (with fallback at the final head, or when a
         * limit stops it) the most confident IC's so far if it beats this head (ties go to this head, as in the
         * simulation) */
#define ANSWER(j, reason, use_best)                                                                                  \
    do {                                                                                                             \
        int o_ = map[j], b_ = (use_best) && st[o_].best > sc[j];                                                     \
        pred[o_] = b_ ? st[o_].best_pred : pr[j];                                                                    \
        conf[o_] = b_ ? st[o_].best_conf : cf[j];                                                                    \
        exit_head[o_] = (uint8_t)h;                                                                                  \
        if (why) why[o_] = (uint8_t)(reason);                                                                        \
    } while (0)
        int nk = 0;
        for (int j = 0; j < active; j++) {
            if (h == H - 1) ANSWER(j, EE_EXIT_FINAL, p->fallback);
            else if (strict ? sc[j] > p->threshold[h] : sc[j] >= p->threshold[h]) ANSWER(j, EE_EXIT_POLICY, 0);
            else if (jumps && p->jump_to[h] && ee_policy_jump_score(p, h, z + (size_t)j * K, K) >= 0.5f) {
                dest[map[j]] = p->jump_to[h];
                waiting++;
            } else keep[nk++] = j;
        }
        if (h == H - 1) break;
        /* the limits: can the remaining samples afford the next exit? */
        double seg = flops[h + 1] - flops[h];
        int force_all = 0;
        if (lim->deadline_flops > 0 && flops[h + 1] > lim->deadline_flops) force_all = 1;
        if (lim->deadline_us > 0 && nk > 0) {
            double us = elapsed_us(&t0), rate = us / (spent > 0 ? spent : 1); /* microseconds per FLOP so far */
            if (us + rate * seg * nk > lim->deadline_us) force_all = 1;
        }
        if (force_all) {
            for (int k = 0; k < nk; k++) ANSWER(keep[k], EE_EXIT_DEADLINE, 1);
            nk = 0;
        } else if (lim->batch_flops > 0 && nk > 0) {
            double room = lim->batch_flops - spent;
            int afford = seg > 0 ? (int)fmin((double)nk, floor(room / seg + 1e-9)) : nk;
            if (afford < 0) afford = 0;
            if (afford < nk) { /* the most confident of the remaining samples answer here */
                for (int k = 0; k < nk; k++) rank[k] = (ranked){sc[keep[k]], keep[k]};
                qsort(rank, nk, sizeof *rank, by_score_desc);
                int stop = nk - afford;
                for (int k = 0; k < stop; k++) ANSWER(rank[k].j, EE_EXIT_BUDGET, 1);
                /* keep the others in batch order */
                int m = 0;
                for (int k = stop; k < nk; k++) keep[m++] = rank[k].j;
                for (int a = 1; a < m; a++)
                    for (int b = a; b > 0 && keep[b - 1] > keep[b]; b--) { int t = keep[b]; keep[b] = keep[b - 1]; keep[b - 1] = t; }
                nk = m;
            }
        }
#undef ANSWER
        if (nk < active && nk > 0) {
            if ((s = ee_net_compact(ctx, net, to, keep, nk))) break;
            for (int j = 0; j < nk; j++) map[j] = map[keep[j]];
        }
        active = nk;
        from = to;
    }
    if (block != small) free(block);
    return s;
}

/* a share of ee_infer_policy's batch, on the net or one of its inference workers (ee_net_run_shares) */
typedef struct {
    const float *x;
    const ee_exit_policy *p;
    const ee_infer_limits *lim;
    uint8_t *pred, *exit_head, *why;
    float *conf;
} policy_job;
static ee_status policy_share(ee_ctx *ctx, ee_net *net, int k, int r0, int m, void *user) {
    (void)k;
    const policy_job *j = user;
    return ee_infer_segment(ctx, net, j->x + (size_t)r0 * ee_shape_size(net->in), m, j->p, j->lim, NULL, NULL,
                            j->pred + r0, j->conf + r0, j->exit_head + r0, j->why ? j->why + r0 : NULL);
}

ee_status ee_infer_policy(ee_ctx *ctx, ee_net *net, const float *x, int n, const ee_exit_policy *p,
                          const ee_infer_limits *lim, uint8_t *pred, float *conf, uint8_t *exit_head, uint8_t *why) {
    /* Samples are independent unless a limit spans the batch (a FLOPs budget, a deadline in time): then a batch
     * of several shares splits them between the net's inference workers, as ee_net_forward does */
    if (n > 1 && n <= net->max_batch && !(lim && (lim->batch_flops > 0 || lim->deadline_us > 0))) {
        ee_threads_apply(ctx);
        const int W = ee_eval_workers(net, n, 0, net->nnodes, 0);
        if (W > 1) {
            policy_job j = {x, p, lim, pred, exit_head, why, conf};
            return ee_net_run_shares(ctx, net, n, W, policy_share, &j);
        }
    }
    return ee_infer_segment(ctx, net, x, n, p, lim, NULL, NULL, pred, conf, exit_head, why);
}

ee_status ee_infer_exits(ee_ctx *ctx, ee_net *net, const float *x, int n, float q, int fallback, uint8_t *pred,
                         float *conf, uint8_t *exit_head) {
    ee_exit_policy p;
    ee_policy_shared(&p, EE_SCORE_MAXPROB, net->nheads, q, fallback);
    return ee_infer_policy(ctx, net, x, n, &p, NULL, pred, conf, exit_head, NULL);
}
