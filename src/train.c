/* train.c: the training loop (shuffled mini-batches, augmentation, the heads weighted by the training mode,
 * SGD/Adam with a schedule), per-epoch validation and test evaluation, atomic checkpoints after every epoch and resume. */
#include "internal.h"
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static ee_status check_data(ee_ctx *ctx, const ee_net *net, const ee_dataset *ds, const char *what) {
    if (ds->c != net->in.c || ds->h != net->in.h || ds->w != net->in.w)
        return ee_fail(ctx, EE_ERR_ARG, "%s data is %dx%dx%d but the network takes %dx%dx%d", what, ds->c, ds->h, ds->w,
                       net->in.c, net->in.h, net->in.w);
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] >= net->classes)
            return ee_fail(ctx, EE_ERR_ARG, "%s data has label %d but the network has %d classes", what, ds->labels[i],
                           net->classes);
    return EE_OK;
}

/* the final head's summed loss and right answers on samples [i0, i1) of ds */
static ee_status evaluate_range(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int i0, int i1, int batch,
                                double *loss_sum, long *correct) {
    *loss_sum = 0;
    *correct = 0;
    if (batch > i1 - i0) batch = i1 - i0;
    if (net->training && net->max_batch > 0 && batch > net->max_batch) batch = net->max_batch; /* no second set of
                                                                      * training buffers (a replica's share is smaller) */
    if (batch < 1) return EE_OK;
    ee_status s = EE_OK;
    if (net->max_batch < batch && (s = ee_net_prepare(ctx, net, batch, net->training))) return s;
    size_t img = ee_shape_size(net->in);
    float *x = ee_alloc(img * batch * sizeof(float));
    uint8_t *y = malloc(batch);
    int *idx = malloc(batch * sizeof(int));
    if (!x || !y || !idx) { ee_free(x); free(y); free(idx); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    for (int i = i0; i < i1 && !s; i += batch) {
        int n = i1 - i < batch ? i1 - i : batch, right = 0;
        for (int j = 0; j < n; j++) idx[j] = i + j;
        ee_dataset_batch(ctx, ds, idx, n, NULL, x, y);
        double l = 0;
        if (!(s = ee_net_forward(ctx, net, x, n, 0)) &&
            !(s = ee_net_loss(ctx, net, net->nheads - 1, y, n, 0, &l, &right))) {
            *loss_sum += l * n;
            *correct += right;
        }
    }
    ee_free(x); free(y); free(idx);
    return s;
}

ee_status ee_evaluate(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int batch, ee_eval_result *res) {
    memset(res, 0, sizeof *res);
    if (batch <= 0) batch = 256;
    ee_status s = check_data(ctx, net, ds, "evaluation");
    if (s) return s;
    double t0 = now_s(), loss_sum = 0;
    long correct = 0;
    s = evaluate_range(ctx, net, ds, 0, ds->n, batch, &loss_sum, &correct);
    res->seconds = now_s() - t0;
    res->n = ds->n;
    res->correct = (int)correct;
    res->loss = loss_sum / ds->n;
    res->acc = (double)res->correct / ds->n;
    res->img_per_s = ds->n / (res->seconds > 0 ? res->seconds : 1e-9);
    return s;
}

/* ---------------------------------------------------------------- data-parallel pieces */
static int par_on(const ee_parallel *p) { return p && p->size > 1; }

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Every rank says whether it failed; all fail if one did: the failing rank with its own message, the others
 * with EE_ERR_PEER naming it. */
static ee_status par_status(ee_ctx *ctx, ee_parallel *p, ee_status s) {
    if (!par_on(p)) return s;
    float flags[256], *f = p->size <= 256 ? flags : calloc((size_t)p->size, sizeof(float));
    if (!f) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    memset(f, 0, (size_t)p->size * sizeof(float));
    f[p->rank] = s ? 1.0f : 0.0f;
    int bad = p->allreduce(p->user, f, (size_t)p->size, 0), first = -1;
    for (int r = 0; r < p->size && !bad && first < 0; r++)
        if (f[r] != 0) first = r;
    if (f != flags) free(f);
    if (s) return s;
    if (bad) return ee_fail(ctx, EE_ERR_PEER, "the allreduce over the ranks failed");
    if (first >= 0) return ee_fail(ctx, EE_ERR_PEER, "training stopped: rank %d failed", first);
    return EE_OK;
}

static ee_status par_sum(ee_ctx *ctx, ee_parallel *p, void *buf, size_t n, int dbl) {
    if (!par_on(p) || !n) return EE_OK;
    return p->allreduce(p->user, buf, n, dbl) ? ee_fail(ctx, EE_ERR_PEER, "the allreduce over the ranks failed") : EE_OK;
}

static ee_status par_bcast(ee_ctx *ctx, ee_parallel *p, void *buf, size_t bytes) {
    if (!par_on(p) || !bytes) return EE_OK;
    return p->broadcast(p->user, buf, bytes) ? ee_fail(ctx, EE_ERR_PEER, "the broadcast from rank 0 failed") : EE_OK;
}

/* the final head's validation or test result over every rank's share of ds */
static ee_status evaluate_par(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int batch, ee_parallel *p,
                              ee_eval_result *res) {
    if (!par_on(p)) return ee_evaluate(ctx, net, ds, batch, res);
    memset(res, 0, sizeof *res);
    double v[2] = {0, 0};
    long correct = 0;
    int i0 = (int)((long)ds->n * p->rank / p->size), i1 = (int)((long)ds->n * (p->rank + 1) / p->size);
    ee_status s = par_status(ctx, p, evaluate_range(ctx, net, ds, i0, i1, batch, &v[0], &correct));
    v[1] = (double)correct;
    if (!s) s = par_sum(ctx, p, v, 2, 1);
    res->n = ds->n;
    res->correct = (int)v[1];
    res->loss = v[0] / ds->n;
    res->acc = v[1] / ds->n;
    return s;
}

/* the seeds (loss gradients) of this rank's n samples rescaled from its own mean to the global batch's */
static void scale_seeds(ee_net *net, int n, float f) {
    for (int i = 0; i < net->nnodes; i++) {
        ee_node *nd = &net->nodes[i];
        if (!nd->seeded || !nd->dy) continue;
        size_t len = ee_shape_size(nd->out) * (size_t)n;
        for (size_t j = 0; j < len; j++) nd->dy[j] *= f;
    }
}

/* Resume on rank 0 and broadcast: epoch, RNG, steps, parameters, statistics, optimiser state and extra state; with
 * no checkpoint, rank 0's initial weights, so that every rank starts from the same ones. */
static ee_status par_start(ee_ctx *ctx, ee_net *net, ee_optim_state *st, ee_parallel *p, ee_status s0, int *start,
                           float *extra, int nextra) {
    int64_t hdr[4] = {s0 != EE_OK, *start, (int64_t)ee_ctx_rng_state(ctx), *ee_optim_state_steps(st)};
    ee_status s = par_bcast(ctx, p, hdr, sizeof hdr);
    if (s) return s;
    if (hdr[0]) return p->rank == 0 ? s0 : ee_fail(ctx, EE_ERR_PEER, "training stopped: rank 0 failed");
    *start = (int)hdr[1];
    ee_ctx_set_rng_state(ctx, (uint64_t)hdr[2]);
    *ee_optim_state_steps(st) = hdr[3];
    if ((s = par_bcast(ctx, p, net->params, net->nparams * sizeof(float))) ||
        (s = par_bcast(ctx, p, net->state, net->nstate * sizeof(float))) ||
        (s = par_bcast(ctx, p, ee_optim_state_data(st), ee_optim_state_size(st) * sizeof(float))) ||
        (extra && (s = par_bcast(ctx, p, extra, (size_t)nextra * sizeof(float)))))
        return s;
    ee_net_params_changed(net);
    return EE_OK;
}

static int file_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* extra: training state beyond the optimiser's (JEI-DNN's gates), saved as train.extra; NULL if none */
static ee_status save_checkpoint(ee_ctx *ctx, ee_net *net, ee_optim_state *st, int epoch, const char *path,
                                 float *extra, int nextra) {
    char ep[32], rng[32], steps[32];
    snprintf(ep, sizeof ep, "%d", epoch);
    snprintf(rng, sizeof rng, "%" PRIu64, ee_ctx_rng_state(ctx));
    snprintf(steps, sizeof steps, "%" PRId64, *ee_optim_state_steps(st));
    ee_meta meta[3] = {{"train.epoch", ep}, {"train.rng", rng}, {"train.steps", steps}};
    io_tensor t[2] = {{"train.optim", ee_optim_state_data(st), ee_optim_state_size(st), 1, {(int)ee_optim_state_size(st)}},
                      {"train.extra", extra, (size_t)nextra, 1, {nextra}}};
    return ee_io_write(ctx, net, meta, 3, t, extra ? 2 : 1, path);
}

static ee_status load_checkpoint(ee_ctx *ctx, ee_net *net, ee_optim_state *st, const char *path, int *epoch,
                                 float *extra, int nextra) {
    ee_net *ck = NULL;
    ee_status s = ee_net_load(ctx, path, &ck);
    if (s) return s;
    const char *ep = ee_net_meta(ck, "train.epoch"), *rng = ee_net_meta(ck, "train.rng"), *steps = ee_net_meta(ck, "train.steps");
    if (strcmp(ck->arch_text, net->arch_text))
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: checkpoint is for another architecture", path);
    else if (!ep || !rng || !steps)
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: not a training checkpoint (no train.epoch)", path);
    else if (!(s = ee_io_read(ctx, path, NULL, "train.optim", ee_optim_state_data(st), ee_optim_state_size(st))) &&
             !(extra && (s = ee_io_read(ctx, path, NULL, "train.extra", extra, (size_t)nextra)))) {
        memcpy(net->params, ck->params, net->nparams * sizeof(float));
        memcpy(net->state, ck->state, net->nstate * sizeof(float));
        ee_net_params_changed(net);
        *epoch = atoi(ep);
        ee_ctx_set_rng_state(ctx, strtoull(rng, NULL, 10));
        *ee_optim_state_steps(st) = strtoll(steps, NULL, 10);
        for (int i = 0; i < ck->nmeta; i++)
            if (strncmp(ck->meta_keys[i], "train.", 6) && (s = ee_net_set_meta(ctx, net, ck->meta_keys[i], ck->meta_vals[i])))
                break;
    }
    ee_net_free(ck);
    return s;
}

void ee_train_head_weights(const ee_net *net, ee_train_mode mode, int epoch, int epochs, float *w) {
    int nic = net->nheads - 1;
    for (int h = 0; h < nic; h++) {
        float cap = 0.15f * (h + 1), e = (float)(epoch + 1);
        float tau = 0.01f + e * cap / epochs;
        w[h] = mode == EE_MODE_IC_ONLY ? 1.0f : mode == EE_MODE_SDN ? (tau < cap ? tau : cap) : 1.0f;
    }
    w[nic] = mode == EE_MODE_IC_ONLY || mode == EE_MODE_JEI ? 0.0f : 1.0f;
}

/* JEI-DNN's gates as an exit policy: kind gate, the conditional rule, threshold 0.5, learned in training */
static void jei_policy(const ee_net *net, float (*gw)[EE_GATE_FEATURES + 1], ee_exit_policy *pol) {
    ee_policy_shared(pol, EE_SCORE_GATE, net->nheads, 0.5f, 0);
    pol->gate_rule = EE_GATE_JEI;
    memcpy(pol->gate, gw, sizeof(float) * (net->nheads - 1) * (EE_GATE_FEATURES + 1));
    snprintf(pol->split, sizeof pol->split, "none");
}

static ee_status train_one(ee_ctx *ctx, ee_net *net, const ee_dataset *train, const ee_dataset *val,
                           const ee_dataset *test, const ee_train_config *cfg, ee_progress_fn fn, void *user) {
    int B = cfg->batch;
    if (B < 1 || cfg->epochs < 1) return ee_fail(ctx, EE_ERR_ARG, "batch (%d) and epochs (%d) must be positive", B, cfg->epochs);
    if (B > train->n) B = train->n;
    ee_parallel *par = cfg->parallel;
    int P = par ? par->size : 1, rank = par ? par->rank : 0, dp = par_on(par);
    if (par && (P < 1 || rank < 0 || rank >= P || (P > 1 && (!par->allreduce || !par->broadcast))))
        return ee_fail(ctx, EE_ERR_ARG, "data-parallel training: rank %d of %d, or its collectives missing", rank, P);
    if (B < P)
        return ee_fail(ctx, EE_ERR_ARG, "the global batch (%d) is smaller than the number of ranks (%d)", B, P);
    int BL = (B + P - 1) / P; /* the largest share of a global batch */
    if (par) { par->comm_s = 0; par->comm_calls = 0; }
    if (cfg->mode != EE_MODE_CNN && net->nheads < 2)
        return ee_fail(ctx, EE_ERR_ARG, "IC-only, SDN and EENet training need a network with early exits");
    double ecost[EE_MAX_HEADS];
    if (cfg->mode == EE_MODE_EENET) {
        ee_eenet_costs(net, ecost);
        if (!(cfg->eenet_lambda >= 0) || cfg->eenet_stage1 < 0 || (int)cfg->eenet_loss < 0 || cfg->eenet_loss > EE_EENET_V4_CE)
            return ee_fail(ctx, EE_ERR_ARG, "EENet training: lambda %g, loss %d or first-stage epochs %d out of range",
                           cfg->eenet_lambda, cfg->eenet_loss, cfg->eenet_stage1);
        for (int h = 0; h < net->nheads - 1; h++)
            if (net->nodes[net->heads[h]].conf < 0)
                return ee_fail(ctx, EE_ERR_ARG, "EENet training needs EENet exits (a confidence branch at every exit)");
    }
    /* JEI-DNN: gate weights and their momentum, the gate loss's positive weights; saved with every checkpoint */
    int jei = cfg->mode == EE_MODE_JEI, G = net->nheads - 1;
    float jst[EE_MAX_HEADS * (2 * (EE_GATE_FEATURES + 1) + 1)] = {0};
    float (*gw)[EE_GATE_FEATURES + 1] = (float (*)[EE_GATE_FEATURES + 1])jst;
    float (*gm)[EE_GATE_FEATURES + 1] = (float (*)[EE_GATE_FEATURES + 1])(jst + G * (EE_GATE_FEATURES + 1));
    float *jpw = jst + 2 * G * (EE_GATE_FEATURES + 1);
    int njst = jei ? G * (2 * (EE_GATE_FEATURES + 1) + 1) : 0;
    double jcost[EE_MAX_HEADS], jpos[EE_MAX_HEADS];
    if (jei) {
        if (!(cfg->jei_lambda >= 0) || cfg->jei_warmup < 0 || cfg->jei_switch < 1)
            return ee_fail(ctx, EE_ERR_ARG, "JEI-DNN training: lambda %g, warm-up %d or phase length %d out of range",
                           cfg->jei_lambda, cfg->jei_warmup, cfg->jei_switch);
        ee_net_head_costs(net, jcost, NULL);
        for (int l = 0; l < G; l++) jpw[l] = 1;
    }
    ee_status s = check_data(ctx, net, train, "training");
    if (!s && val) s = check_data(ctx, net, val, "validation");
    if (!s && test) s = check_data(ctx, net, test, "test");
    if (!s) s = ee_net_prepare(ctx, net, BL, 1);
    if (dp) s = par_status(ctx, par, s);
    if (s) return s;
    ee_optim_state *st = NULL;
    if ((s = ee_optim_state_new(ctx, net, &cfg->optim, &st))) return s;
    int start = 0;
    if (rank == 0 && cfg->resume && cfg->checkpoint && file_exists(cfg->checkpoint))
        s = load_checkpoint(ctx, net, st, cfg->checkpoint, &start, jei ? jst : NULL, njst);
    if (dp) s = par_start(ctx, net, st, par, s, &start, jei ? jst : NULL, njst);
    if (s) {
        ee_optim_state_free(st);
        return s;
    }
    net->par = dp ? par : NULL;
    size_t img = ee_shape_size(net->in);
    float *x = ee_alloc(img * BL * sizeof(float));
    uint8_t *y = malloc(B);
    int *perm = malloc(train->n * sizeof(int));
    if (!x || !y || !perm) s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    int steps = (train->n + B - 1) / B, every = cfg->progress_every > 0 ? cfg->progress_every : 20;
    int last = cfg->stop_epoch > 0 && cfg->stop_epoch < cfg->epochs ? cfg->stop_epoch : cfg->epochs;
    for (int epoch = start; epoch < last && !s; epoch++) {
        for (int i = 0; i < train->n; i++) perm[i] = i;
        ee_shuffle(ctx, perm, train->n);
        /* data-parallel: the same permutation on every rank */
        uint64_t rng0 = ee_ctx_rng_state(ctx);
        float lr = ee_schedule_lr(&cfg->sched, epoch), hw[EE_MAX_HEADS], hw_end[EE_MAX_HEADS], hw_start[EE_MAX_HEADS];
        /* SDN training: the IC weights rise within each epoch from the last epoch's weights (0.01 before the first)
         * to this epoch's, so that they reach the reference's value at every epoch's end without jumping there at
         * the first step; a one-epoch run would otherwise start with every IC at full weight and diverge */
        ee_train_head_weights(net, cfg->mode, epoch, cfg->epochs, hw_end);
        if (epoch > 0) ee_train_head_weights(net, cfg->mode, epoch - 1, cfg->epochs, hw_start);
        else for (int h = 0; h < net->nheads; h++) hw_start[h] = cfg->mode == EE_MODE_SDN && h < net->nheads - 1 ? 0.01f : hw_end[h];
        ee_net_freeze_backbone(net, cfg->mode == EE_MODE_IC_ONLY || jei);
        for (int l = 0; l < G && jei; l++) jpos[l] = jpw[l];
        double t0 = now_s(), loss_sum = 0, tot[3] = {0, 0, 0}; /* tot: loss sum, right, seen over every rank */
        long seen = 0, right_sum = 0, gseen = 0;
        for (int step = 0; step < steps && !s; step++) {
            int ng = step == steps - 1 ? train->n - step * B : B;
            if (ng < P) continue; /* a last batch too small to give every rank a sample */
            int lo = (int)((long)ng * rank / P), n = (int)((long)ng * (rank + 1) / P) - lo;
            /* augmentation draws from a stream of each step, sample i of the global batch from its i-th share:
             * the same crops and flips on any number of ranks or replicas; dropout then draws from a stream of
             * each rank */
            const uint64_t bst = mix64(rng0 ^ mix64((uint64_t)step << 20));
            ee_ctx_set_rng_state(ctx, bst);
            ee_rng_skip(ctx, (uint64_t)lo * (uint64_t)ee_augment_draws(&cfg->aug));
            ee_dataset_batch(ctx, train, perm + (size_t)step * B + lo, n, &cfg->aug, x, y);
            if (dp) ee_ctx_set_rng_state(ctx, mix64(bst ^ mix64((uint64_t)rank + 1)));
            if ((s = ee_net_forward(ctx, net, x, n, 1))) break;
            ee_net_zero_seeds(net);
            for (int h = 0; h < net->nheads; h++)
                hw[h] = hw_start[h] + (hw_end[h] - hw_start[h]) * (float)(step + 1) / (float)steps;
            double l_final = 0;
            int right = 0;
            int own_loss = cfg->mode == EE_MODE_EENET || (jei && epoch >= cfg->jei_warmup), gate_phase = 0;
            if (cfg->mode == EE_MODE_EENET) {
                ee_eenet_loss_kind lk = epoch < cfg->eenet_stage1 ? EE_EENET_V0 : cfg->eenet_loss;
                s = ee_eenet_loss(ctx, net, y, n, ecost, cfg->eenet_lambda, lk, &l_final, &right);
            } else if (own_loss) { /* JEI-DNN after its warm-up: gate and classifier phases, the gate phase first */
                long k = (long)(epoch - cfg->jei_warmup) * steps + step;
                gate_phase = (k / cfg->jei_switch) % 2 == 0;
                const float *hl[EE_MAX_HEADS];
                float *dl[EE_MAX_HEADS] = {0}, gg[EE_MAX_HEADS][EE_GATE_FEATURES + 1];
                for (int h = 0; h < net->nheads; h++) {
                    ee_node *hd = &net->nodes[net->heads[h]];
                    hl[h] = hd->y;
                    if (!gate_phase && h < G) { dl[h] = hd->dy; hd->seeded = 1; }
                }
                double gl, cl;
                s = ee_jei_loss(ctx, hl, y, n, net->nheads, net->classes, jcost, cfg->jei_lambda, jpos,
                                (const float (*)[EE_GATE_FEATURES + 1])gw, &gl, gg, &cl, dl);
                if (dp) s = par_status(ctx, par, s);
                if (!s && dp && gate_phase) { /* the gates' gradient over the global batch */
                    for (int l = 0; l < G; l++)
                        for (int f = 0; f <= EE_GATE_FEATURES; f++) gg[l][f] *= (float)n / (float)ng;
                    s = par_sum(ctx, par, gg, (size_t)G * (EE_GATE_FEATURES + 1), 0);
                }
                l_final = gate_phase ? gl : cl;
                const float *zf = hl[G];
                for (int i = 0; i < n; i++) {
                    int top = 0;
                    for (int j = 1; j < net->classes; j++) top = zf[(size_t)i * net->classes + j] > zf[(size_t)i * net->classes + top] ? j : top;
                    right += top == y[i];
                }
                /* the gates' own SGD, JEI-DNN's: lr 0.01 on the run's schedule, momentum 0.9, weight decay 5e-4 */
                float glr = 0.01f * (cfg->sched.base_lr > 0 ? lr / cfg->sched.base_lr : 1);
                for (int l = 0; l < G && gate_phase && !s; l++)
                    for (int f = 0; f <= EE_GATE_FEATURES; f++) {
                        float g = gg[l][f] + 5e-4f * gw[l][f];
                        gm[l][f] = 0.9f * gm[l][f] + g;
                        gw[l][f] -= glr * gm[l][f];
                    }
            }
            if (jei && !own_loss) /* JEI-DNN's warm-up: sum over ICs of (G + 1 - l) CE_l; the final head frozen */
                for (int h = 0; h < G; h++) hw[h] = (float)(G + 1 - h);
            for (int h = 0; h < net->nheads && !s && !own_loss; h++) {
                double l;
                int r;
                s = ee_net_loss(ctx, net, h, y, n, hw[h], &l, &r);
                if (h == net->nheads - 1) { l_final = l; right = r; }
            }
            if (s == EE_ERR_NUMERIC)
                s = ee_fail(ctx, s, "loss became NaN/Inf at epoch %d step %d (lr %g): training diverged", epoch + 1,
                            step + 1, lr);
            if (dp && !own_loss) s = par_status(ctx, par, s);
            if (s) break;
            if (!gate_phase) {
                if (n != ng) scale_seeds(net, n, (float)n / (float)ng);
                if ((s = ee_net_backward(ctx, net, n))) break;
                if (dp) {
                    double c0 = now_s();
                    s = par_sum(ctx, par, net->grads, net->nparams, 0);
                    par->comm_s += now_s() - c0;
                    par->comm_calls++;
                    if (s) break;
                }
                if ((s = ee_optim_step(ctx, net, st, lr))) break;
            }
            loss_sum += l_final * n;
            right_sum += right;
            seen += n;
            gseen += ng;
            if (step % every == 0 || step == steps - 1) {
                tot[0] = loss_sum; tot[1] = (double)right_sum; tot[2] = (double)seen;
                if ((s = par_sum(ctx, par, tot, 3, 1))) break;
            }
            if (fn && rank == 0 && (step % every == 0 || step == steps - 1)) {
                double el = now_s() - t0, rate = gseen / (el > 0 ? el : 1e-9);
                long left = (long)(cfg->epochs - epoch) * train->n - gseen;
                ee_progress p = {epoch + 1, cfg->epochs, step + 1, steps, tot[0] / tot[2], tot[1] / tot[2],
                                 rate, left / rate, lr, 0, 0, 0, 0, el, net->nheads, {0}, -1, -1};
                fn(&p, user);
            }
        }
        if (s) break;
        if (!dp) { tot[0] = loss_sum; tot[1] = (double)right_sum; tot[2] = (double)seen; }
        /* the next epoch's shuffle follows from this one's, however many draws augmentation and dropout made on
         * however many ranks: the same permutations for any number of ranks, and after a resume */
        ee_ctx_set_rng_state(ctx, mix64(rng0 ^ 0x5EEDull));
        /* each rank's own BN statistics: their average (as the model every rank then evaluates and saves) */
        if (dp && !par->sync_bn && net->nstate) {
            if ((s = par_sum(ctx, par, net->state, net->nstate, 0))) break;
            for (size_t i = 0; i < net->nstate; i++) net->state[i] /= (float)P;
            net->state_version++;
        }
        ee_progress p = {epoch + 1, cfg->epochs, steps, steps, tot[0] / tot[2], tot[1] / tot[2], 0, 0, lr, 1,
                         -1, -1, -1, now_s() - t0, net->nheads, {0}, -1, -1};
        p.img_per_s = gseen / (p.epoch_s > 0 ? p.epoch_s : 1e-9);
        p.eta_s = (double)(cfg->epochs - epoch - 1) * train->n / (p.img_per_s > 0 ? p.img_per_s : 1);
        ee_eval_result r;
        if (val && !(s = evaluate_par(ctx, net, val, B, par, &r))) { p.val_acc = r.acc; p.val_loss = r.loss; }
        /* every exit's validation accuracy (rank 0 reports it; JEI-DNN's gate weights need it everywhere) */
        if (!s && val && net->nheads > 1 && (rank == 0 || jei)) {
            ee_outputs *o = NULL;
            if (!(s = ee_collect_outputs(ctx, net, val, B, 0, &o))) ee_head_accuracy(o, p.val_head_acc);
            if (!s && cfg->mode == EE_MODE_EENET) { /* the learned rule: confidence above 0.5 */
                ee_exit_policy pol;
                ee_exit_stats es;
                ee_policy_shared(&pol, EE_SCORE_CONFIDENCE, net->nheads, 0.5f, 0);
                if (!(s = ee_policy_simulate(ctx, o, ecost, &pol, &es))) { p.val_exit_acc = es.acc; p.val_exit_cost = es.cost; }
            }
            if (!s && jei && epoch + 1 >= cfg->jei_warmup) { /* the JEI gates' rule on validation; next weights */
                ee_exit_policy pol;
                ee_exit_stats es;
                jei_policy(net, gw, &pol);
                if (!(s = ee_policy_simulate(ctx, o, jcost, &pol, &es))) { p.val_exit_acc = es.acc; p.val_exit_cost = es.cost; }
                double pw[EE_MAX_HEADS];
                ee_jei_pos_weights(o, jcost, cfg->jei_lambda, pw);
                for (int l = 0; l < G; l++) jpw[l] = (float)pw[l];
            }
            ee_outputs_free(o);
        }
        if (!s && jei && epoch + 1 >= cfg->jei_warmup) { /* the gates so far are the model's policy */
            ee_exit_policy pol;
            jei_policy(net, gw, &pol);
            s = ee_net_set_policy(ctx, net, &pol);
        }
        if (dp) s = par_status(ctx, par, s);
        if (!s && test && !(s = evaluate_par(ctx, net, test, B, par, &r))) p.test_acc = r.acc;
        if (!s && cfg->checkpoint && rank == 0)
            s = save_checkpoint(ctx, net, st, epoch + 1, cfg->checkpoint, jei ? jst : NULL, njst);
        if (dp) s = par_status(ctx, par, s);
        if (!s && fn && rank == 0) fn(&p, user);
    }
    net->par = NULL;
    ee_net_freeze_backbone(net, 0);
    ee_free(x);
    free(y);
    free(perm);
    ee_optim_state_free(st);
    return s;
}

/* ---------------------------------------------------------------- replicas: data-parallel threads of one process */
#define MAX_REPLICAS 64
#define SPIN_S 50e-6
/* The replicas meet at every batch norm (sync-BN), several hundred times a step, usually within microseconds of
 * each other: a barrier that spins first wakes them much sooner than one that sleeps. After a spin of about
 * 50 us it sleeps, so that a replica whose core another process took gets that core back from the one waiting
 * for it. Sense-reversing: the last to arrive flips `sense`, and wakes the sleepers if there are any (a sleeper
 * counts itself before it checks `sense`, the last arrival flips `sense` before it checks the count: one of them
 * sees the other). */
typedef struct {
    atomic_int count, sense, sleepers;
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} spin_barrier;
static void spin_wait(spin_barrier *b, int *mine) {
    const int s = !*mine;
    *mine = s;
    if (atomic_fetch_add(&b->count, 1) == b->size - 1) {
        atomic_store(&b->count, 0);
        atomic_store(&b->sense, s);
        if (atomic_load(&b->sleepers)) {
            pthread_mutex_lock(&b->mu);
            pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
        }
        return;
    }
    double t0 = 0;
    for (long i = 1;; i++) {
        if (atomic_load(&b->sense) == s) return;
        if (i % 1024 == 0) {
            const double t = now_s();
            if (t0 == 0) t0 = t;
            else if (t - t0 > SPIN_S) break;
        }
    }
    pthread_mutex_lock(&b->mu);
    atomic_fetch_add(&b->sleepers, 1);
    while (atomic_load(&b->sense) != s) pthread_cond_wait(&b->cv, &b->mu);
    atomic_fetch_sub(&b->sleepers, 1);
    pthread_mutex_unlock(&b->mu);
}

typedef struct {
    spin_barrier bar;
    int size;
    void *slot[MAX_REPLICAS];    /* the broadcast's source */
    void *sum[2][MAX_REPLICAS];  /* each replica's two copies for sums, used in turn */
    size_t sum_len;              /* bytes in each */
    pthread_mutex_t mu; /* the start gate: the threads wait until every one of them exists (go 1) or not (-1) */
    pthread_cond_t cv;
    int go;
} rep_world;
typedef struct {
    rep_world *w;
    int rank, sense, turn;
    /* the replica's training run (ranks 1 and up run in threads of their own) */
    ee_ctx *ctx;
    ee_net *net;
    const ee_dataset *train, *val, *test;
    ee_train_config cfg;
    ee_parallel par;
    ee_status status;
} rep_rank;

/* Every replica copies its buffer into its copy for this turn and, once all have, adds the copies of all in
 * rank order into its buffer: the same bits on every replica, one barrier a sum. The copies alternate between
 * two sets: a replica can only reach the sum after next, which writes this set again, once every other replica
 * has arrived at the next one, done reading this one. */
static int rep_allreduce(void *user, void *buf, size_t n, int dbl) {
    rep_rank *r = user;
    rep_world *w = r->w;
    const size_t bytes = n * (dbl ? sizeof(double) : sizeof(float));
    void *const *set = w->sum[r->turn];
    r->turn ^= 1;
    const int fits = bytes <= w->sum_len; /* sized for the largest sum before the start */
    if (fits) memcpy(set[r->rank], buf, bytes);
    spin_wait(&w->bar, &r->sense); /* every replica meets the others even when it fails */
    if (!fits) return 1;
    if (dbl) {
        double *t = buf;
        memcpy(t, set[0], bytes);
        for (int k = 1; k < w->size; k++) {
            const double *o = set[k];
            for (size_t i = 0; i < n; i++) t[i] += o[i];
        }
    } else {
        float *t = buf;
        memcpy(t, set[0], bytes);
        for (int k = 1; k < w->size; k++) {
            const float *o = set[k];
            for (size_t i = 0; i < n; i++) t[i] += o[i];
        }
    }
    return 0;
}
static int rep_broadcast(void *user, void *buf, size_t bytes) {
    rep_rank *r = user;
    rep_world *w = r->w;
    if (r->rank == 0) w->slot[0] = buf;
    spin_wait(&w->bar, &r->sense);
    if (r->rank) memcpy(buf, w->slot[0], bytes);
    spin_wait(&w->bar, &r->sense);
    return 0;
}

static void *rep_run(void *arg) {
    rep_rank *r = arg;
    rep_world *w = r->w;
    pthread_mutex_lock(&w->mu);
    while (!w->go) pthread_cond_wait(&w->cv, &w->mu);
    const int go = w->go;
    pthread_mutex_unlock(&w->mu);
    r->status = go > 0 ? train_one(r->ctx, r->net, r->train, r->val, r->test, &r->cfg, NULL, NULL) : EE_ERR_PEER;
    return NULL;
}

/* The cores training may use: ee_ctx_threads, or for 0 the ones that other processes leave free. Replicas share
 * them evenly (on 8 cores, 4 replicas of 2 threads each), the first cores % R taking one more; with fewer cores
 * than replicas every replica still runs one thread. */
static int train_cores(ee_ctx *ctx) { return ctx->threads > 0 ? ctx->threads : ee_ctx_idle_cores(ctx); }
int ee_train_replica_threads(ee_ctx *ctx, int replicas, int rank) {
    if (replicas < 1 || rank < 0 || rank >= replicas) return 1;
    return ee_core_share(train_cores(ctx), replicas, rank);
}

static ee_status train_replicas(ee_ctx *ctx, ee_net *net, const ee_dataset *train, const ee_dataset *val,
                                const ee_dataset *test, const ee_train_config *cfg, ee_progress_fn fn, void *user) {
    const int R = cfg->replicas;
    if (R > MAX_REPLICAS) return ee_fail(ctx, EE_ERR_ARG, "%d training replicas: at most %d", R, MAX_REPLICAS);
    if (net->sealed) return ee_net_check_unsealed(ctx, net, "train the network");
    rep_world w = {.size = R, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    atomic_init(&w.bar.count, 0);
    atomic_init(&w.bar.sense, 0);
    atomic_init(&w.bar.sleepers, 0);
    w.bar.size = R;
    pthread_mutex_init(&w.bar.mu, NULL);
    pthread_cond_init(&w.bar.cv, NULL);
    rep_rank *rk = calloc((size_t)R, sizeof *rk);
    pthread_t th[MAX_REPLICAS];
    if (!rk) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    /* the largest sum: the gradients, the statistics, a batch norm's sums and count in double (ee_train's others
     * are a few values) */
    size_t most = (net->nparams > net->nstate ? net->nparams : net->nstate) * sizeof(float);
    for (int i = 0; i < net->nnodes; i++)
        if (most < (2 * (size_t)net->nodes[i].out.c + 1) * sizeof(double))
            most = (2 * (size_t)net->nodes[i].out.c + 1) * sizeof(double);
    if (most < 64 * sizeof(double)) most = 64 * sizeof(double);
    w.sum_len = most;
    ee_status s = EE_OK;
    const int cores = train_cores(ctx);
    for (int r = 0; r < R; r++) {
        rep_rank *q = &rk[r];
        q->w = &w;
        q->rank = r;
        q->train = train; q->val = val; q->test = test;
        q->cfg = *cfg;
        q->cfg.replicas = 0;
        q->cfg.parallel = &q->par;
        q->par = (ee_parallel){r, R, 1, rep_allreduce, rep_broadcast, q, 0, 0};
        for (int t = 0; t < 2 && !s; t++)
            if (!(w.sum[t][r] = malloc(most))) s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        if (r == 0) { q->ctx = ctx; q->net = net; continue; }
        if (!s && !(q->ctx = ee_ctx_new())) s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        if (s) continue;
        ee_ctx_set_conv_kernel(q->ctx, ee_ctx_conv_kernel(ctx));
        ee_ctx_set_rng_state(q->ctx, ee_ctx_rng_state(ctx));
        ee_ctx_set_threads(q->ctx, ee_core_share(cores, R, r));
        s = ee_net_clone(ctx, net, "a training replica", &q->net);
    }
    int started = 1;
    for (; started < R && !s; started++)
        if (pthread_create(&th[started], NULL, rep_run, &rk[started])) {
            s = ee_fail(ctx, EE_ERR_NOMEM, "cannot start a training thread");
            break;
        }
    pthread_mutex_lock(&w.mu);
    w.go = s ? -1 : 1;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    if (s) {
        for (int r = 1; r < started; r++) pthread_join(th[r], NULL);
    } else {
        const int threads = ctx->threads;
        ee_ctx_set_threads(ctx, ee_core_share(cores, R, 0));
        rk[0].status = train_one(ctx, net, train, val, test, &rk[0].cfg, fn, user);
        ee_ctx_set_threads(ctx, threads);
        for (int r = 1; r < R; r++) pthread_join(th[r], NULL);
        /* the first replica that failed on its own (the others stop with EE_ERR_PEER) says why */
        s = rk[0].status;
        for (int r = 0; r < R && s; r++)
            if (rk[r].status && rk[r].status != EE_ERR_PEER) {
                s = rk[r].status;
                if (r) ee_fail(ctx, s, "%s", ee_ctx_error(rk[r].ctx));
                break;
            }
    }
    for (int r = 0; r < R; r++) {
        free(w.sum[0][r]);
        free(w.sum[1][r]);
        if (r) { ee_net_free(rk[r].net); ee_ctx_free(rk[r].ctx); }
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.bar.mu);
    pthread_cond_destroy(&w.bar.cv);
    free(rk);
    return s;
}

/* Replicas win where one network's layers are too small to keep two threads busy. Measured on 2 cores
 * (docs/benchmarks.md): ResNet-56 (16-64 channels) 1.04-1.30x the one network on both cores; WRN-32-4 (up to 256)
 * 0.77-0.89x, VGG-16 (512) 0.80-0.98x, MobileNet (1024) 0.91-1.15x. The widest convolution decides. */
#define AUTO_MAX_CHANNELS 64
#define AUTO_MIN_SHARE 32
int ee_train_auto_replicas(ee_ctx *ctx, const ee_net *net, int batch) {
    int convs = 0;
    for (int i = 0; i < net->nnodes; i++)
        if (net->nodes[i].kind == EE_KIND_CONV) {
            if (net->nodes[i].out.c > AUTO_MAX_CHANNELS) return 1;
            convs++;
        }
    if (!convs || net->sealed || batch < 2 * AUTO_MIN_SHARE) return 1;
    int r = train_cores(ctx);
    if (r > batch / AUTO_MIN_SHARE) r = batch / AUTO_MIN_SHARE;
    if (r > MAX_REPLICAS) r = MAX_REPLICAS;
    return r > 1 ? r : 1;
}

ee_status ee_train(ee_ctx *ctx, ee_net *net, const ee_dataset *train, const ee_dataset *val, const ee_dataset *test,
                   const ee_train_config *cfg, ee_progress_fn fn, void *user) {
    int replicas = cfg->replicas;
    if (replicas < EE_REPLICAS_AUTO) return ee_fail(ctx, EE_ERR_ARG, "training replicas: %d", replicas);
    if (par_on(cfg->parallel)) replicas = 1;
    else if (replicas == EE_REPLICAS_AUTO)
        replicas = ee_train_auto_replicas(ctx, net, cfg->batch < train->n ? cfg->batch : train->n);
    if (replicas > 1) {
        ee_train_config c = *cfg;
        c.replicas = replicas;
        return train_replicas(ctx, net, train, val, test, &c, fn, user);
    }
    return train_one(ctx, net, train, val, test, cfg, fn, user);
}
