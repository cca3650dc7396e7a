/* train.c: the training loop (shuffled mini-batches, augmentation, the heads weighted by the training mode,
 * SGD/Adam with a schedule), per-epoch validation and test evaluation, atomic checkpoints after every epoch and resume. */
#include "internal.h"
#include <inttypes.h>
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

ee_status ee_evaluate(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int batch, ee_eval_result *res) {
    memset(res, 0, sizeof *res);
    if (batch <= 0) batch = 256;
    ee_status s = check_data(ctx, net, ds, "evaluation");
    if (s) return s;
    if (batch > ds->n) batch = ds->n;
    if (net->max_batch < batch && (s = ee_net_prepare(ctx, net, batch, net->training))) return s;
    size_t img = ee_shape_size(net->in);
    float *x = ee_alloc(img * batch * sizeof(float));
    uint8_t *y = malloc(batch);
    int *idx = malloc(batch * sizeof(int));
    if (!x || !y || !idx) { ee_free(x); free(y); free(idx); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    double t0 = now_s(), loss_sum = 0;
    for (int i = 0; i < ds->n && !s; i += batch) {
        int n = ds->n - i < batch ? ds->n - i : batch, right = 0;
        for (int j = 0; j < n; j++) idx[j] = i + j;
        ee_dataset_batch(ctx, ds, idx, n, NULL, x, y);
        double l = 0;
        if (!(s = ee_net_forward(ctx, net, x, n, 0)) &&
            !(s = ee_net_loss(ctx, net, net->nheads - 1, y, n, 0, &l, &right))) {
            loss_sum += l * n;
            res->correct += right;
        }
    }
    res->seconds = now_s() - t0;
    res->n = ds->n;
    res->loss = loss_sum / ds->n;
    res->acc = (double)res->correct / ds->n;
    res->img_per_s = ds->n / (res->seconds > 0 ? res->seconds : 1e-9);
    ee_free(x); free(y); free(idx);
    return s;
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

ee_status ee_train(ee_ctx *ctx, ee_net *net, const ee_dataset *train, const ee_dataset *val, const ee_dataset *test,
                   const ee_train_config *cfg, ee_progress_fn fn, void *user) {
    int B = cfg->batch;
    if (B < 1 || cfg->epochs < 1) return ee_fail(ctx, EE_ERR_ARG, "batch (%d) and epochs (%d) must be positive", B, cfg->epochs);
    if (B > train->n) B = train->n;
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
    if (!s) s = ee_net_prepare(ctx, net, B, 1);
    if (s) return s;
    ee_optim_state *st = NULL;
    if ((s = ee_optim_state_new(ctx, net, &cfg->optim, &st))) return s;
    int start = 0;
    if (cfg->resume && cfg->checkpoint && file_exists(cfg->checkpoint) &&
        (s = load_checkpoint(ctx, net, st, cfg->checkpoint, &start, jei ? jst : NULL, njst))) {
        ee_optim_state_free(st);
        return s;
    }
    size_t img = ee_shape_size(net->in);
    float *x = ee_alloc(img * B * sizeof(float));
    uint8_t *y = malloc(B);
    int *perm = malloc(train->n * sizeof(int));
    if (!x || !y || !perm) s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    int steps = (train->n + B - 1) / B, every = cfg->progress_every > 0 ? cfg->progress_every : 20;
    int last = cfg->stop_epoch > 0 && cfg->stop_epoch < cfg->epochs ? cfg->stop_epoch : cfg->epochs;
    for (int epoch = start; epoch < last && !s; epoch++) {
        for (int i = 0; i < train->n; i++) perm[i] = i;
        ee_shuffle(ctx, perm, train->n);
        float lr = ee_schedule_lr(&cfg->sched, epoch), hw[EE_MAX_HEADS], hw_end[EE_MAX_HEADS], hw_start[EE_MAX_HEADS];
        /* SDN training: the IC weights rise within each epoch from the last epoch's weights (0.01 before the first)
         * to this epoch's, so that they reach the reference's value at every epoch's end without jumping there at
         * the first step; a one-epoch run would otherwise start with every IC at full weight and diverge */
        ee_train_head_weights(net, cfg->mode, epoch, cfg->epochs, hw_end);
        if (epoch > 0) ee_train_head_weights(net, cfg->mode, epoch - 1, cfg->epochs, hw_start);
        else for (int h = 0; h < net->nheads; h++) hw_start[h] = cfg->mode == EE_MODE_SDN && h < net->nheads - 1 ? 0.01f : hw_end[h];
        ee_net_freeze_backbone(net, cfg->mode == EE_MODE_IC_ONLY || jei);
        for (int l = 0; l < G && jei; l++) jpos[l] = jpw[l];
        double t0 = now_s(), loss_sum = 0;
        long seen = 0, right_sum = 0;
        for (int step = 0; step < steps && !s; step++) {
            int n = step == steps - 1 ? train->n - step * B : B;
            ee_dataset_batch(ctx, train, perm + (size_t)step * B, n, &cfg->aug, x, y);
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
            if (s) {
                if (s == EE_ERR_NUMERIC)
                    s = ee_fail(ctx, s, "loss became NaN/Inf at epoch %d step %d (lr %g): training diverged", epoch + 1,
                                step + 1, lr);
                break;
            }
            if (!gate_phase && ((s = ee_net_backward(ctx, net, n)) || (s = ee_optim_step(ctx, net, st, lr)))) break;
            loss_sum += l_final * n;
            right_sum += right;
            seen += n;
            if (fn && (step % every == 0 || step == steps - 1)) {
                double el = now_s() - t0, rate = seen / (el > 0 ? el : 1e-9);
                long left = (long)(cfg->epochs - epoch) * train->n - seen;
                ee_progress p = {epoch + 1, cfg->epochs, step + 1, steps, loss_sum / seen, (double)right_sum / seen,
                                 rate, left / rate, lr, 0, 0, 0, 0, el, net->nheads, {0}, -1, -1};
                fn(&p, user);
            }
        }
        if (s) break;
        ee_progress p = {epoch + 1, cfg->epochs, steps, steps, loss_sum / seen, (double)right_sum / seen, 0, 0, lr, 1,
                         -1, -1, -1, now_s() - t0, net->nheads, {0}, -1, -1};
        p.img_per_s = seen / (p.epoch_s > 0 ? p.epoch_s : 1e-9);
        p.eta_s = (double)(cfg->epochs - epoch - 1) * train->n / (p.img_per_s > 0 ? p.img_per_s : 1);
        ee_eval_result r;
        if (val && !(s = ee_evaluate(ctx, net, val, B, &r))) { p.val_acc = r.acc; p.val_loss = r.loss; }
        if (!s && val && net->nheads > 1) { /* every exit's validation accuracy */
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
        if (!s && test && !(s = ee_evaluate(ctx, net, test, B, &r))) p.test_acc = r.acc;
        if (!s && cfg->checkpoint) s = save_checkpoint(ctx, net, st, epoch + 1, cfg->checkpoint, jei ? jst : NULL, njst);
        if (!s && fn) fn(&p, user);
    }
    ee_net_freeze_backbone(net, 0);
    ee_free(x);
    free(y);
    free(perm);
    ee_optim_state_free(st);
    return s;
}
