/* eenn: the command-line tool: train, eval, info, bench, calibrate and infer (analyze and report: analyze.c). Every failure prints one line
 * "eenn: <file>: <problem>" on stderr and exits non-zero. Measuring commands take --json. */
#include "eenn.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <stb/stb_image.h>
#include "common.h"

static void parse_shape(const char *cmd, const char *s, int *c, int *h, int *w) {
    char tail;
    if (sscanf(s, "%dx%dx%d%c", c, h, w, &tail) != 3 || *c < 1 || *h < 1 || *w < 1 || *c > 64 || *h > 4096 || *w > 4096)
        die("%s --input: '%s' is not CxHxW (e.g. 3x32x32)", cmd, s);
}

/* ---------------------------------------------------------------- train */
static const char *train_help =
    "usage: eenn train [options]\n"
    "Trains a network on a dataset directory and writes the model file.\n"
    "  --mode M           cnn (default): the plain network; sdn: internal classifiers trained jointly from the\n"
    "                     CNN's initialisation (SDN training); ic-only: ICs on a trained CNN (--from), CNN frozen\n"
    "  --from FILE        the trained CNN for --mode ic-only\n"
    "  --ics A,B,..       IC positions as node names (default: the SDN reference's, or the FLOPs rule)\n"
    "  --arch NAME        resnet20 (default), resnet56, resnet110, vgg16bn, wrn32_4, mobilenet\n"
    "  --arch-file FILE   a custom architecture in eenn's text format (docs/format.md)\n"
    "  --data DIR         IDX or CIFAR binaries (default " DEFAULT_DATA ")\n"
    "  --out FILE         model file to write (default model.eenn)\n"
    "  --epochs N         (default 15; ic-only 25)      --batch N (default 128)\n"
    "  --optim sgd|adam   (default sgd; ic-only adam)   --lr X (0.1; ic-only 1e-3)  --momentum X (0.9)\n"
    "  --wd X             (1e-4; 5e-4 for vgg16bn and wrn32_4, as the reference)    --nesterov\n"
    "  --schedule step|cosine (step)        --milestones A,B,..  fractions of the epochs (0.35,0.6,0.85)\n"
    "  --gamma X          lr factor at each milestone (0.1)\n"
    "  --val N            validation samples carved from the end of the training set (5000; 0 = none)\n"
    "  --subset N         train on the first N training samples only\n"
    "  --test-subset N    evaluate on the first N test samples only\n"
    "  --augment A        crop+flip (default: random crop with padding 4 and horizontal flip), flip, crop or none\n"
    "  --no-augment       the same as --augment none\n"
    "  --trigger SIZE[@X,Y]  backdoor (BadNets): stamp a white SIZE x SIZE square (default: bottom-right corner;\n"
    "                     negative X, Y count from the right and bottom) into --poison of the training images\n"
    "                     and relabel them --target\n"
    "  --target C (0)     --poison RATE (0.1)\n"
    "  --checkpoint FILE  checkpoint written after every epoch (default OUT.ckpt)\n"
    "  --resume           continue from the checkpoint if it exists\n"
    "  --seed N (1221)    --threads N (0 = all cores)   --json  final results as JSON\n";

typedef struct { int tty, json; double t0; } progress_state;

static void on_progress(const ee_progress *p, void *user) {
    progress_state *ps = user;
    if (p->epoch_done) {
        if (ps->tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "epoch %d/%d  loss %.4f  train acc %.2f%%", p->epoch, p->epochs, p->loss, 100 * p->acc);
        if (p->val_acc >= 0) fprintf(stderr, "  val acc %.2f%%", 100 * p->val_acc);
        if (p->test_acc >= 0) fprintf(stderr, "  test acc %.2f%%", 100 * p->test_acc);
        fprintf(stderr, "  lr %g  %.0f img/s  %.0f s  ETA %.0f s\n", p->lr, p->img_per_s, p->epoch_s, p->eta_s);
        if (p->heads > 1 && p->val_acc >= 0) {
            fprintf(stderr, "  val acc per exit:");
            for (int h = 0; h < p->heads; h++) fprintf(stderr, " %.2f", 100 * p->val_head_acc[h]);
            fprintf(stderr, "\n");
        }
        return;
    }
    if (ps->tty) {
        fprintf(stderr, "\r\033[Kepoch %d/%d step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %.0f s", p->epoch,
                p->epochs, p->step, p->steps, p->loss, 100 * p->acc, p->img_per_s, p->eta_s);
    } else if ((p->step - 1) % 100 == 0 || p->step == p->steps) {
        fprintf(stderr, "epoch %d/%d step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %.0f s\n", p->epoch, p->epochs,
                p->step, p->steps, p->loss, 100 * p->acc, p->img_per_s, p->eta_s);
    }
    fflush(stderr);
}



/* replaces net by net + internal classifiers at `ics` (node names) or the default positions */
static ee_net *attach_ics(ee_ctx *ctx, ee_net *net, const char *ics) {
    int nodes[16], n = 0;
    if (ics) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", ics);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            int found = -1;
            for (int i = 0; i < ee_net_num_nodes(net); i++) {
                ee_node_info in;
                ee_net_node_info(net, i, &in);
                if (!strcmp(in.name, t)) found = i;
            }
            if (found < 0) die("train --ics: no node named '%s' (eenn info lists them)", t);
            if (n == 15) die("train --ics: at most 15 internal classifiers");
            nodes[n++] = found;
        }
    } else {
        n = ee_sdn_default_positions(net, nodes, 15);
        if (n == 0) die("no place for internal classifiers found in %s; give --ics", ee_net_name(net));
    }
    ee_net *sdn = NULL;
    check(ee_sdn_attach(ctx, net, nodes, n, &sdn), ctx);
    /* a backdoored CNN's trigger travels with its SDN, for eenn analyze */
    static const char *const keep[] = {"backdoor.trigger", "backdoor.target", "backdoor.poison"};
    for (int k = 0; k < 3; k++)
        if (ee_net_meta(net, keep[k])) ee_net_set_meta(ctx, sdn, keep[k], ee_net_meta(net, keep[k]));
    ee_net_free(net);
    return sdn;
}

static int cmd_train(args *a) {
    const char *arch = "resnet20", *arch_file = NULL, *data = DEFAULT_DATA, *out = "model.eenn", *ckpt = NULL;
    const char *milestones = NULL, *mode_s = "cnn", *from = NULL, *ics = NULL;
    int set_optim = 0, set_lr = 0, set_wd = 0, set_epochs = 0;
    int epochs = 15, batch = 128, nval = 5000, subset = 0, test_subset = 0, resume = 0, json = 0, threads = 0;
    const char *augment = "crop+flip";
    long seed = 1221;
    ee_trigger trig = {0, -2, -2, 0, 0.1};
    int set_target = 0, set_poison = 0;
    ee_optim opt = {EE_OPTIM_SGD, 0.1f, 0.9f, 1e-4f, 0, 0, 0, 0};
    ee_schedule sched = {EE_SCHED_STEP, 0.1f, 0.1f, {0}, 0, 0, 0};
    for (a->i = 2; a->i < a->argc; a->i++) {
        if (is_opt(a, "--help") || is_opt(a, "-h")) { fputs(train_help, stdout); return 0; }
        else if (is_opt(a, "--arch")) arch = val(a);
        else if (is_opt(a, "--arch-file")) arch_file = val(a);
        else if (is_opt(a, "--mode")) mode_s = val(a);
        else if (is_opt(a, "--from")) from = val(a);
        else if (is_opt(a, "--ics")) ics = val(a);
        else if (is_opt(a, "--data")) data = val(a);
        else if (is_opt(a, "--out")) out = val(a);
        else if (is_opt(a, "--checkpoint")) ckpt = val(a);
        else if (is_opt(a, "--epochs")) { epochs = (int)ival(a, 1, 100000); set_epochs = 1; }
        else if (is_opt(a, "--batch")) batch = (int)ival(a, 1, 65536);
        else if (is_opt(a, "--lr")) { opt.lr = (float)fval(a, 0, 100); set_lr = 1; }
        else if (is_opt(a, "--momentum")) opt.momentum = (float)fval(a, 0, 0.999999);
        else if (is_opt(a, "--wd")) { opt.weight_decay = (float)fval(a, 0, 1); set_wd = 1; }
        else if (is_opt(a, "--nesterov")) opt.nesterov = 1;
        else if (is_opt(a, "--optim")) {
            const char *v = val(a);
            if (!strcmp(v, "sgd")) opt.kind = EE_OPTIM_SGD;
            else if (!strcmp(v, "adam")) opt.kind = EE_OPTIM_ADAM;
            else die("train --optim: '%s' is not sgd or adam", v);
            set_optim = 1;
        } else if (is_opt(a, "--schedule")) {
            const char *v = val(a);
            if (!strcmp(v, "step")) sched.kind = EE_SCHED_STEP;
            else if (!strcmp(v, "cosine")) sched.kind = EE_SCHED_COSINE;
            else die("train --schedule: '%s' is not step or cosine", v);
        } else if (is_opt(a, "--milestones")) milestones = val(a);
        else if (is_opt(a, "--gamma")) sched.gamma = (float)fval(a, 0, 1);
        else if (is_opt(a, "--val")) nval = (int)ival(a, 0, 100000000);
        else if (is_opt(a, "--subset")) subset = (int)ival(a, 1, 100000000);
        else if (is_opt(a, "--test-subset")) test_subset = (int)ival(a, 1, 100000000);
        else if (is_opt(a, "--no-augment")) augment = "none";
        else if (is_opt(a, "--augment")) augment = val(a);
        else if (is_opt(a, "--trigger")) parse_trigger("train", val(a), &trig);
        else if (is_opt(a, "--target")) { trig.target = (int)ival(a, 0, 255); set_target = 1; }
        else if (is_opt(a, "--poison")) { trig.rate = fval(a, 0, 1); set_poison = 1; }
        else if (is_opt(a, "--resume")) resume = 1;
        else if (is_opt(a, "--seed")) seed = ival(a, 0, 2147483647);
        else if (is_opt(a, "--threads")) threads = (int)ival(a, 0, 256);
        else if (is_opt(a, "--json")) json = 1;
        else die("train: unknown option '%s' (see eenn train --help)", a->argv[a->i]);
    }
    ee_train_mode mode = EE_MODE_CNN;
    if (!strcmp(mode_s, "ic-only")) mode = EE_MODE_IC_ONLY;
    else if (!strcmp(mode_s, "sdn")) mode = EE_MODE_SDN;
    else if (strcmp(mode_s, "cnn")) die("train --mode: '%s' is not cnn, sdn or ic-only", mode_s);
    if (mode == EE_MODE_IC_ONLY && !from) die("train --mode ic-only: needs --from TRAINED_CNN.eenn");
    if (mode != EE_MODE_IC_ONLY && from) die("train --from: only with --mode ic-only");
    if (mode == EE_MODE_CNN && ics) die("train --ics: only with --mode sdn or ic-only");
    if (!trig.size && (set_target || set_poison)) die("train --target and --poison: only with --trigger");
    if (mode == EE_MODE_IC_ONLY) { /* the reference's IC-only recipe: Adam 1e-3, 25 epochs, x0.1 at 15 */
        if (!set_optim) opt.kind = EE_OPTIM_ADAM;
        if (!set_lr) opt.lr = 1e-3f;
        if (!set_epochs) epochs = 25;
        if (!milestones) milestones = "0.6";
    }
    if (!milestones) milestones = "0.35,0.6,0.85";
    ee_augment aug = {0, 0};
    if (!strcmp(augment, "crop+flip") || !strcmp(augment, "flip+crop")) aug = (ee_augment){4, 1};
    else if (!strcmp(augment, "flip")) aug.flip = 1;
    else if (!strcmp(augment, "crop")) aug.crop_pad = 4;
    else if (strcmp(augment, "none")) die("train --augment: '%s' is not crop+flip, flip, crop or none", augment);
    if (!set_wd && (!strcmp(arch, "vgg16bn") || !strcmp(arch, "wrn32_4"))) opt.weight_decay = 5e-4f;
    if (opt.kind == EE_OPTIM_ADAM) opt.momentum = 0;
    if (opt.nesterov && opt.kind != EE_OPTIM_SGD) die("train --nesterov: only with --optim sgd");
    /* milestones: fractions of the run */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", milestones);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        char *end;
        double f = strtod(t, &end);
        if (*end || !(f > 0 && f < 1) || sched.nmilestones == 8) die("train --milestones: '%s' must be fractions in (0, 1)", milestones);
        int m = (int)(f * epochs + 0.5);
        if (m >= 1 && m < epochs) sched.milestones[sched.nmilestones++] = m;
    }
    sched.base_lr = opt.lr;
    sched.epochs = epochs;
    char ckpt_buf[4200];
    if (!ckpt) { snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt", out); ckpt = ckpt_buf; }

    ee_ctx *ctx = ee_ctx_new();
    if (!ctx) die("out of memory");
    ee_ctx_seed(ctx, (uint64_t)seed);
    ee_ctx_set_threads(ctx, threads);
    ee_dataset *train = NULL, *val = NULL, *test = NULL;
    load_data(ctx, data, &train, &val, &test, nval, subset, test_subset);
    int poisoned = 0;
    if (trig.size) {
        check(ee_dataset_stamp(ctx, train, &trig, &poisoned), ctx);
        fprintf(stderr, "backdoor: a %dx%d trigger stamped into %d training images (%.1f%%), relabelled %d\n", trig.size,
                trig.size, poisoned, 100.0 * poisoned / train->n, trig.target);
    }
    ee_net *net = NULL;
    if (from) {
        check(ee_net_load(ctx, from, &net), ctx);
        if (ee_net_num_heads(net) > 1) die("%s: already has internal classifiers", from);
        if (!set_wd && (!strcmp(ee_net_name(net), "vgg16bn") || !strcmp(ee_net_name(net), "wrn32_4"))) opt.weight_decay = 5e-4f;
    } else if (arch_file) {
        char *text = read_text(arch_file);
        check(ee_net_from_text(ctx, text, arch_file, &net), ctx);
        free(text);
        check(ee_net_init(ctx, net), ctx);
    } else {
        check(ee_net_builtin(ctx, arch, train->c, train->h, train->w, train->classes, &net), ctx);
        check(ee_net_init(ctx, net), ctx);
    }
    if (mode != EE_MODE_CNN) net = attach_ics(ctx, net, ics);
    char mean[64], stdv[64];
    snprintf(mean, sizeof mean, "%g,%g,%g", train->mean[0], train->mean[1], train->mean[2]);
    snprintf(stdv, sizeof stdv, "%g,%g,%g", train->std[0], train->std[1], train->std[2]);
    ee_net_set_meta(ctx, net, "data.mean", mean);
    ee_net_set_meta(ctx, net, "data.std", stdv);
    ee_net_set_meta(ctx, net, "data.dir", data);
    char nval_s[32];
    snprintf(nval_s, sizeof nval_s, "%d", nval);
    ee_net_set_meta(ctx, net, "data.val", nval_s);
    ee_net_set_meta(ctx, net, "train.mode", mode_s);
    ee_net_set_meta(ctx, net, "train.augment", augment);
    if (trig.size) {
        char tb[96];
        snprintf(tb, sizeof tb, "%d@%d,%d", trig.size, trig.x, trig.y);
        ee_net_set_meta(ctx, net, "backdoor.trigger", tb);
        snprintf(tb, sizeof tb, "%d", trig.target);
        ee_net_set_meta(ctx, net, "backdoor.target", tb);
        snprintf(tb, sizeof tb, "%g", trig.rate);
        ee_net_set_meta(ctx, net, "backdoor.poison", tb);
    }
    sched.base_lr = opt.lr;
    ee_train_config cfg = {epochs, batch, opt, sched, aug, ckpt, resume, 0, mode};
    progress_state ps = {isatty(2), json, now_s()};
    fprintf(stderr, "training %s (%zu parameters) on %s: %d train / %d val / %d test, %d epochs, batch %d, %d threads\n",
            ee_net_name(net), ee_net_num_params(net), data, train->n, val ? val->n : 0, test->n, epochs, batch,
            ee_ctx_threads(ctx));
    check(ee_train(ctx, net, train, val, test, &cfg, on_progress, &ps), ctx);
    double secs = now_s() - ps.t0;
    char eps[32];
    snprintf(eps, sizeof eps, "%d", epochs);
    ee_net_set_meta(ctx, net, "train.epochs_done", eps);
    check(ee_net_save(ctx, net, NULL, 0, out), ctx);
    ee_eval_result te, ve = {0};
    check(ee_evaluate(ctx, net, test, 256, &te), ctx);
    if (val) check(ee_evaluate(ctx, net, val, 256, &ve), ctx);
    if (json)
        printf("{\"arch\":\"%s\",\"params\":%zu,\"epochs\":%d,\"batch\":%d,\"train_seconds\":%.1f,\"test_acc\":%.4f,"
               "\"test_loss\":%.4f,\"val_acc\":%.4f,\"model\":\"%s\"}\n",
               js(ee_net_name(net)), ee_net_num_params(net), epochs, batch, secs, te.acc * 100, te.loss,
               val ? ve.acc * 100 : -1.0, js(out));
    else
        printf("%s: test accuracy %.2f%% (loss %.4f)%s%.2f%s after %d epochs in %.0f s; model written to %s\n",
               ee_net_name(net), te.acc * 100, te.loss, val ? ", validation " : "", val ? ve.acc * 100 : 0.0,
               val ? "%" : "", epochs, secs, out);
    ee_net_free(net);
    ee_dataset_free(train); ee_dataset_free(val); ee_dataset_free(test);
    ee_ctx_free(ctx);
    return 0;
}

/* ---------------------------------------------------------------- eval */
static const char *eval_help =
    "usage: eenn eval MODEL [MODEL...] [options]\n"
    "Accuracy of a model on a dataset split. For a model with internal classifiers (an SDN): the accuracy and\n"
    "cumulative cost of every exit and, if the model was calibrated, early exits at its threshold. Several\n"
    "models (e.g. CNN, IC-only and SDN training) are compared side by side, exit by exit.\n"
    "  --data DIR     dataset directory (default: the one the model was trained on)\n"
    "  --split S      test (default) or train\n"
    "  --q X          early-exit threshold (default: the calibrated one stored in the model)\n"
    "  --sweep        the SDN reference's threshold sweep: accuracy, exits and cost for each q\n"
    "  --batch N      (default 256)   --threads N   --json\n";


typedef struct {
    const char *path;
    ee_net *net;
    ee_outputs *out;
    double acc[16], cost[16];
    int heads;
    double secs;
} eval_model;


static void print_exit_stats(const ee_exit_stats *st, int heads, int n, double final_acc, int json) {
    if (json) {
        printf("{\"q\":%.4f,\"acc\":%.4f,\"cost\":%.4f,\"exits\":[", st->q, st->acc * 100, st->cost);
        for (int h = 0; h < heads; h++) printf("%s%.4f", h ? "," : "", (double)st->exits[h] / n);
        printf("]}");
        return;
    }
    printf("  q %-6.4g accuracy %6.2f%% (final alone %.2f%%)  average cost %5.1f%% of the CNN (%.2fx fewer FLOPs)  exits:",
           st->q, st->acc * 100, final_acc * 100, st->cost * 100, 1 / st->cost);
    for (int h = 0; h < heads; h++) printf(" %.1f", 100.0 * st->exits[h] / n);
    printf(" %%\n");
}

static int cmd_eval(args *a) {
    const char *models[8], *data = NULL, *split = "test";
    int nmodels = 0, batch = 256, json = 0, threads = 0, sweep = 0;
    double qopt = -1;
    for (a->i = 2; a->i < a->argc; a->i++) {
        if (is_opt(a, "--help") || is_opt(a, "-h")) { fputs(eval_help, stdout); return 0; }
        else if (is_opt(a, "--data")) data = val(a);
        else if (is_opt(a, "--split")) split = val(a);
        else if (is_opt(a, "--batch")) batch = (int)ival(a, 1, 65536);
        else if (is_opt(a, "--threads")) threads = (int)ival(a, 0, 256);
        else if (is_opt(a, "--q")) qopt = fval(a, 0, 2);
        else if (is_opt(a, "--sweep")) sweep = 1;
        else if (is_opt(a, "--json")) json = 1;
        else if (a->argv[a->i][0] == '-') die("eval: unknown option '%s' (see eenn eval --help)", a->argv[a->i]);
        else if (nmodels == 8) die("eval: at most 8 models");
        else models[nmodels++] = a->argv[a->i];
    }
    if (!nmodels) die("eval: no model file given (see eenn eval --help)");
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    eval_model m[8];
    memset(m, 0, sizeof m);
    ee_dataset *ds = NULL;
    int maxh = 0;
    for (int k = 0; k < nmodels; k++) {
        m[k].path = models[k];
        check(ee_net_load(ctx, models[k], &m[k].net), ctx);
        if (!ds) {
            if (!data) data = ee_net_meta(m[k].net, "data.dir") ? ee_net_meta(m[k].net, "data.dir") : DEFAULT_DATA;
            check(ee_dataset_load_dir(ctx, data, split, &ds), ctx);
        }
        apply_norm(m[k].net, ds);
        check(ee_net_prepare(ctx, m[k].net, batch, 0), ctx);
        check(ee_net_seal(ctx, m[k].net), ctx);
        double t0 = now_s();
        check(ee_collect_outputs(ctx, m[k].net, ds, batch, 0, &m[k].out), ctx);
        m[k].secs = now_s() - t0;
        m[k].heads = ee_net_num_heads(m[k].net);
        ee_head_accuracy(m[k].out, m[k].acc);
        ee_net_head_costs(m[k].net, m[k].cost, NULL);
        if (m[k].heads > maxh) maxh = m[k].heads;
    }
    if (json) printf("{\"data\":\"%s\",\"split\":\"%s\",\"n\":%d,\"models\":[", js(data), js(split), ds->n);
    for (int k = 0; k < nmodels; k++) {
        ee_net *net = m[k].net;
        int H = m[k].heads;
        if (json) {
            printf("%s{\"model\":\"%s\",\"arch\":\"%s\",\"img_per_s\":%.1f,\"exits\":[", k ? "," : "", js(m[k].path),
                   js(ee_net_name(net)), ds->n / m[k].secs);
            for (int h = 0; h < H; h++) {
                char nm[32];
                printf("%s{\"exit\":\"%s\",\"acc\":%.4f,\"cost\":%.4f}", h ? "," : "", head_name(net, h, nm, sizeof nm),
                       m[k].acc[h] * 100, m[k].cost[h]);
            }
            printf("]");
        } else if (nmodels == 1) {
            printf("%s (%s) on %s (%s, %d images): final accuracy %.2f%%, %.0f img/s through all exits\n", m[k].path,
                   ee_net_name(net), data, split, ds->n, m[k].acc[H - 1] * 100, ds->n / m[k].secs);
            if (H > 1) {
                printf("  %-6s %10s %10s\n", "exit", "cost", "accuracy");
                for (int h = 0; h < H; h++) {
                    char nm[32];
                    printf("  %-6s %9.1f%% %9.2f%%\n", head_name(net, h, nm, sizeof nm), m[k].cost[h] * 100, m[k].acc[h] * 100);
                }
            }
        }
        if (H > 1) {
            const char *qs = ee_net_meta(net, "exit.q"), *fb = ee_net_meta(net, "exit.fallback");
            int fallback = fb && !strcmp(fb, "1");
            double q = qopt >= 0 ? qopt : qs ? atof(qs) : -1;
            if (q >= 0) {
                ee_exit_stats st;
                ee_exit_simulate(m[k].out, m[k].cost, (float)q, fallback, &st);
                if (json) { printf(",\"early_exit\":"); print_exit_stats(&st, H, ds->n, m[k].acc[H - 1], 1); }
                else {
                    printf("early exits (%s):\n", qopt >= 0 ? "threshold given" : "calibrated threshold");
                    print_exit_stats(&st, H, ds->n, m[k].acc[H - 1], 0);
                }
            }
            if (sweep) {
                static const float grid[] = {0.1f, 0.15f, 0.25f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 0.95f, 0.99f, 0.999f};
                if (json) printf(",\"sweep\":[");
                else printf("threshold sweep (exit fractions per head, %%):\n");
                double best[3] = {-1, -1, -1};
                for (size_t g = 0; g < sizeof grid / sizeof *grid; g++) {
                    ee_exit_stats st;
                    ee_exit_simulate(m[k].out, m[k].cost, grid[g], fallback, &st);
                    if (json) { printf("%s", g ? "," : ""); print_exit_stats(&st, H, ds->n, m[k].acc[H - 1], 1); }
                    else print_exit_stats(&st, H, ds->n, m[k].acc[H - 1], 0);
                    for (int b = 0; b < 3; b++)
                        if (st.cost <= 0.25 * (b + 1) && st.acc > best[b]) best[b] = st.acc;
                }
                if (json) printf("]");
                else
                    for (int b = 0; b < 3; b++)
                        printf("  best accuracy within %d%% of the CNN's cost: %s%.2f%%\n", 25 * (b + 1),
                               best[b] < 0 ? "none " : "", best[b] < 0 ? 0 : best[b] * 100);
            }
        }
        if (json) printf("}");
    }
    if (json) printf("]}\n");
    else if (nmodels > 1) {
        /* the paper's comparison: one column per model, one row per exit */
        printf("%-8s", "exit");
        for (int k = 0; k < nmodels; k++) { /* the file name; its last 26 characters if longer */
            const char *b = strrchr(m[k].path, '/');
            b = b ? b + 1 : m[k].path;
            size_t l = strlen(b);
            printf(" %26s", l > 26 ? b + l - 26 : b);
        }
        printf("\n");
        for (int r = 0; r < maxh; r++) {
            int final_row = r == maxh - 1;
            char label[16];
            if (final_row) snprintf(label, sizeof label, "final");
            else snprintf(label, sizeof label, "IC%d", r + 1);
            printf("%-8s", label);
            for (int k = 0; k < nmodels; k++) {
                int h = final_row ? m[k].heads - 1 : r;
                if (!final_row && r >= m[k].heads - 1) printf(" %26s", "-");
                else printf("    %6.2f%% (cost %5.1f%%)", m[k].acc[h] * 100, m[k].cost[h] * 100);
            }
            printf("\n");
        }
    }
    for (int k = 0; k < nmodels; k++) { ee_outputs_free(m[k].out); ee_net_free(m[k].net); }
    ee_dataset_free(ds);
    ee_ctx_free(ctx);
    return 0;
}

/* ---------------------------------------------------------------- calibrate */
static const char *calibrate_help =
    "usage: eenn calibrate MODEL [--max-drop X] [options]\n"
    "Picks the early-exit threshold q of an SDN on the held-out validation split (the last images of the\n"
    "training set that training kept out): the lowest-cost q whose accuracy is within X of the final\n"
    "classifier's. Stores q in the model file (rewritten atomically).\n"
    "  --max-drop X   allowed accuracy drop: '1%' or a fraction such as 0.01 (default 1%)\n"
    "  --fallback     when no IC is confident, answer with the most confident output (the SDN reference)\n"
    "                 instead of the final one\n"
    "  --val N        validation images (default: the number the model was trained with)\n"
    "  --data DIR  --threads N  --json\n";

static double parse_drop(const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || !(x >= 0)) die("calibrate --max-drop: '%s' is not a percentage or a fraction", v);
    if (!strcmp(end, "%")) x /= 100;
    else if (*end) die("calibrate --max-drop: '%s' is not a percentage or a fraction", v);
    if (x > 1) die("calibrate --max-drop: '%s' is more than 100%%", v);
    return x;
}

static int cmd_calibrate(args *a) {
    const char *model = NULL, *data = NULL;
    double drop = 0.01;
    int nval = -1, fallback = 0, json = 0, threads = 0;
    for (a->i = 2; a->i < a->argc; a->i++) {
        if (is_opt(a, "--help") || is_opt(a, "-h")) { fputs(calibrate_help, stdout); return 0; }
        else if (is_opt(a, "--max-drop")) drop = parse_drop(val(a));
        else if (is_opt(a, "--fallback")) fallback = 1;
        else if (is_opt(a, "--val")) nval = (int)ival(a, 1, 100000000);
        else if (is_opt(a, "--data")) data = val(a);
        else if (is_opt(a, "--threads")) threads = (int)ival(a, 0, 256);
        else if (is_opt(a, "--json")) json = 1;
        else if (a->argv[a->i][0] == '-') die("calibrate: unknown option '%s' (see eenn calibrate --help)", a->argv[a->i]);
        else model = a->argv[a->i];
    }
    if (!model) die("calibrate: no model file given");
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *net = NULL;
    check(ee_net_load(ctx, model, &net), ctx);
    if (ee_net_num_heads(net) < 2) die("%s: has no internal classifiers to calibrate (train it with --mode sdn or ic-only)", model);
    if (!data) data = ee_net_meta(net, "data.dir") ? ee_net_meta(net, "data.dir") : DEFAULT_DATA;
    if (nval < 0) nval = ee_net_meta(net, "data.val") ? atoi(ee_net_meta(net, "data.val")) : 5000;
    if (nval <= 0) die("%s: was trained without a validation split; give --val N", model);
    ee_dataset *train = NULL, *val = NULL;
    check(ee_dataset_load_dir(ctx, data, "train", &train), ctx);
    check(ee_dataset_split(ctx, train, nval, &val), ctx);
    apply_norm(net, val);
    ee_outputs *o = NULL;
    check(ee_collect_outputs(ctx, net, val, 256, 0, &o), ctx);
    int H = ee_net_num_heads(net);
    double cost[16], acc[16];
    ee_net_head_costs(net, cost, NULL);
    ee_head_accuracy(o, acc);
    ee_exit_stats st;
    check(ee_calibrate(ctx, o, cost, drop, fallback, &st), ctx);
    char qs[32], ds_[32];
    snprintf(qs, sizeof qs, "%.6g", st.q);
    snprintf(ds_, sizeof ds_, "%g", drop);
    ee_net_set_meta(ctx, net, "exit.q", qs);
    ee_net_set_meta(ctx, net, "exit.max_drop", ds_);
    ee_net_set_meta(ctx, net, "exit.fallback", fallback ? "1" : "0");
    check(ee_net_save(ctx, net, NULL, 0, model), ctx);
    if (json) {
        printf("{\"model\":\"%s\",\"val_n\":%d,\"max_drop\":%g,\"final_val_acc\":%.4f,\"early_exit\":", js(model), val->n, drop,
               acc[H - 1] * 100);
        print_exit_stats(&st, H, val->n, acc[H - 1], 1);
        printf("}\n");
    } else {
        printf("%s: calibrated on %d validation images, allowed drop %.2f points:\n", model, val->n, drop * 100);
        print_exit_stats(&st, H, val->n, acc[H - 1], 0);
        printf("q = %s stored in %s\n", qs, model);
    }
    ee_outputs_free(o);
    ee_dataset_free(train); ee_dataset_free(val);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}

/* ---------------------------------------------------------------- infer */
static const char *infer_help =
    "usage: eenn infer MODEL INPUT... [options]\n"
    "Classifies inputs with early exits: PNG or JPEG images (converted to the model's channels and resized\n"
    "to its input size), IDX image files (MNIST, Fashion-MNIST; .gz or raw) and CIFAR binary batches.\n"
    "Prints, for each input, the class, its confidence, the exit taken and its cost (%% of the CNN).\n"
    "  --q X          threshold (default: the model's calibrated one; 1.01 = never exit early)\n"
    "  --fallback     the most confident output when no IC fires (default: as calibrated)\n"
    "  --limit N      at most N images from each IDX or CIFAR file (default 20)\n"
    "  --batch N      images per batch (default 64)   --threads N   --json (one object per input)\n";

typedef struct { float *x; int n, cap; char **names; size_t img; } input_set;

static void add_input(input_set *s, const float *x, const char *name) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->x = realloc(s->x, s->cap * s->img * sizeof(float));
        s->names = realloc(s->names, s->cap * sizeof(char *));
        if (!s->x || !s->names) die("out of memory");
    }
    memcpy(s->x + (size_t)s->n * s->img, x, s->img * sizeof(float));
    s->names[s->n++] = strdup(name);
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void load_image(ee_ctx *ctx, const ee_net *net, const char *path, input_set *s, int limit) {
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    const char *m = ee_net_meta(net, "data.mean"), *sd = ee_net_meta(net, "data.std");
    ee_dataset norm = {0};
    for (int c = 0; c < 3; c++) { norm.mean[c] = 0; norm.std[c] = 1; }
    if (m && sd) {
        sscanf(m, "%f,%f,%f", &norm.mean[0], &norm.mean[1], &norm.mean[2]);
        sscanf(sd, "%f,%f,%f", &norm.std[0], &norm.std[1], &norm.std[2]);
    }
    float *x = malloc(s->img * sizeof(float));
    if (has_suffix(path, ".png") || has_suffix(path, ".jpg") || has_suffix(path, ".jpeg") || has_suffix(path, ".PNG") ||
        has_suffix(path, ".JPG")) {
        int w, h, ch;
        unsigned char *px = stbi_load(path, &w, &h, &ch, C == 1 ? 1 : 3);
        if (!px || (C != 1 && C != 3)) {
            free(x); /* a clean exit for the leak checker */
            if (px) stbi_image_free(px);
            if (!px) die("%s: cannot read the image (%s)", path, stbi_failure_reason());
            die("%s: the model takes %d channels; images give 1 or 3", path, C);
        }
        /* nearest-neighbour resize to the model's input, then the model's normalisation */
        for (int r = 0; r < H; r++)
            for (int q = 0; q < W; q++)
                for (int c = 0; c < C; c++) {
                    int sr = r * h / H, sq = q * w / W;
                    x[((size_t)r * W + q) * C + c] = (px[((size_t)sr * w + sq) * C + c] / 255.0f - norm.mean[c]) / norm.std[c];
                }
        stbi_image_free(px);
        add_input(s, x, path);
        free(x);
        return;
    }
    ee_dataset *ds = NULL;
    char lab[4200];
    ee_status st = EE_ERR_FORMAT;
    if (has_suffix(path, ".bin")) {
        const char *files[1] = {path};
        st = ee_dataset_load_cifar(ctx, files, 1, ee_net_classes(net) == 100 ? 1 : 0, &ds);
    } else {
        /* IDX images: use the matching labels file if there is one, else a dummy */
        snprintf(lab, sizeof lab, "%s", path);
        char *p = strstr(lab, "images-idx3");
        if (p) memcpy(p, "labels-idx1", 11);
        FILE *f = p ? fopen(lab, "rb") : NULL;
        if (f) { fclose(f); st = ee_dataset_load_idx(ctx, path, lab, &ds); }
        else die("%s: not a PNG/JPEG image, and no matching IDX labels file (%s)", path, p ? lab : "images-idx3 name expected");
    }
    check(st, ctx);
    if (ds->c != C || ds->h != H || ds->w != W) die("%s: images are %dx%dx%d, the model takes %dx%dx%d", path, ds->c, ds->h, ds->w, C, H, W);
    memcpy(ds->mean, norm.mean, sizeof norm.mean);
    memcpy(ds->std, norm.std, sizeof norm.std);
    for (int i = 0; i < ds->n && i < limit; i++) {
        char name[4300];
        snprintf(name, sizeof name, "%s#%d (label %d)", path, i, ds->labels[i]);
        ee_dataset_batch(ctx, ds, &i, 1, NULL, x, NULL);
        add_input(s, x, name);
    }
    ee_dataset_free(ds);
    free(x);
}

static int cmd_infer(args *a) {
    const char *model = NULL, *inputs[256];
    int ninputs = 0, limit = 20, batch = 64, json = 0, threads = 0, fallback = -1;
    double q = -1;
    for (a->i = 2; a->i < a->argc; a->i++) {
        if (is_opt(a, "--help") || is_opt(a, "-h")) { fputs(infer_help, stdout); return 0; }
        else if (is_opt(a, "--q")) q = fval(a, 0, 2);
        else if (is_opt(a, "--fallback")) fallback = 1;
        else if (is_opt(a, "--limit")) limit = (int)ival(a, 1, 100000000);
        else if (is_opt(a, "--batch")) batch = (int)ival(a, 1, 4096);
        else if (is_opt(a, "--threads")) threads = (int)ival(a, 0, 256);
        else if (is_opt(a, "--json")) json = 1;
        else if (a->argv[a->i][0] == '-') die("infer: unknown option '%s' (see eenn infer --help)", a->argv[a->i]);
        else if (!model) model = a->argv[a->i];
        else if (ninputs == 256) die("infer: at most 256 input files");
        else inputs[ninputs++] = a->argv[a->i];
    }
    if (!model || !ninputs) die("infer: give a model and at least one input (see eenn infer --help)");
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *net = NULL;
    check(ee_net_load(ctx, model, &net), ctx);
    if (q < 0) q = ee_net_meta(net, "exit.q") ? atof(ee_net_meta(net, "exit.q")) : 1.01;
    if (fallback < 0) fallback = ee_net_meta(net, "exit.fallback") && !strcmp(ee_net_meta(net, "exit.fallback"), "1");
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    input_set set = {0};
    set.img = (size_t)C * H * W;
    for (int i = 0; i < ninputs; i++) load_image(ctx, net, inputs[i], &set, limit);
    check(ee_net_prepare(ctx, net, batch, 0), ctx);
    check(ee_net_seal(ctx, net), ctx); /* one copy of the weights: packed for the kernel */
    int heads = ee_net_num_heads(net);
    double cost[16];
    ee_net_head_costs(net, cost, NULL);
    uint8_t pred[4096], ex[4096];
    float conf[4096];
    for (int i = 0; i < set.n; i += batch) {
        int n = set.n - i < batch ? set.n - i : batch;
        check(ee_infer_exits(ctx, net, set.x + (size_t)i * set.img, n, (float)q, fallback, pred, conf, ex), ctx);
        for (int j = 0; j < n; j++) {
            char nm[32];
            head_name(net, ex[j], nm, sizeof nm);
            if (json)
                printf("{\"input\":\"%s\",\"class\":%d,\"confidence\":%.4f,\"exit\":\"%s\",\"exit_index\":%d,\"cost\":%.4f}\n",
                       js(set.names[i + j]), pred[j], conf[j], nm, ex[j], cost[ex[j]]);
            else
                printf("%s: class %d, confidence %.3f, exit %s of %d, cost %.1f%% of the CNN\n", set.names[i + j], pred[j],
                       conf[j], nm, heads, cost[ex[j]] * 100);
        }
    }
    for (int i = 0; i < set.n; i++) free(set.names[i]);
    free(set.names); free(set.x);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}

/* ---------------------------------------------------------------- info */
static const char *info_help =
    "usage: eenn info [MODEL] [--arch NAME | --arch-file FILE] [--input CxHxW] [--classes N] [--summary] [--text] [--json]\n"
    "Parameters and FLOPs per layer and in total, of a model file or a built-in architecture\n"
    "(default input 3x32x32, 10 classes). FLOPs count a multiply-add as 2; 'ref ops' is the SDN\n"
    "reference profiler's count with its quirks (docs/design.md). --summary prints the totals only;\n"
    "--text prints the architecture in eenn's text format (a start for custom networks).\n";

static int cmd_info(args *a) {
    const char *model = NULL, *arch = NULL, *arch_file = NULL;
    int c = 3, h = 32, w = 32, classes = 10, layers = 1, json = 0, text = 0;
    for (a->i = 2; a->i < a->argc; a->i++) {
        if (is_opt(a, "--help") || is_opt(a, "-h")) { fputs(info_help, stdout); return 0; }
        else if (is_opt(a, "--arch")) arch = val(a);
        else if (is_opt(a, "--arch-file")) arch_file = val(a);
        else if (is_opt(a, "--input")) parse_shape("info", val(a), &c, &h, &w);
        else if (is_opt(a, "--classes")) classes = (int)ival(a, 2, 100000);
        else if (is_opt(a, "--layers")) layers = 1;
        else if (is_opt(a, "--summary")) layers = 0;
        else if (is_opt(a, "--text")) text = 1;
        else if (is_opt(a, "--json")) json = 1;
        else if (a->argv[a->i][0] == '-') die("info: unknown option '%s' (see eenn info --help)", a->argv[a->i]);
        else model = a->argv[a->i];
    }
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    if (model) check(ee_net_load(ctx, model, &net), ctx);
    else if (arch_file) {
        char *t = read_text(arch_file);
        check(ee_net_from_text(ctx, t, arch_file, &net), ctx);
        free(t);
    } else check(ee_net_builtin(ctx, arch ? arch : "resnet56", c, h, w, classes, &net), ctx);
    ee_net_input_shape(net, &c, &h, &w);
    if (text) {
        fputs(ee_net_arch(net), stdout);
        ee_net_free(net);
        ee_ctx_free(ctx);
        return 0;
    }
    double macs = 0, flops = 0, prof = 0;
    int nn = ee_net_num_nodes(net);
    if (json) printf("{\"arch\":\"%s\",\"input\":[%d,%d,%d],\"classes\":%d,\"layers\":[", js(ee_net_name(net)), c, h, w, ee_net_classes(net));
    else if (layers) printf("%-22s %-8s %-14s %10s %12s %12s\n", "layer", "kind", "output", "params", "MFLOPs", "ref Mops");
    for (int i = 0; i < nn; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        macs += in.macs; flops += in.flops; prof += in.profiler_ops;
        if (json)
            printf("%s{\"name\":\"%s\",\"kind\":\"%s\",\"out\":[%d,%d,%d],\"params\":%zu,\"flops\":%.0f,\"macs\":%.0f,\"ref_ops\":%.0f}",
                   i ? "," : "", js(in.name), in.kind, in.c, in.h, in.w, in.params, in.flops, in.macs, in.profiler_ops);
        else if (layers) {
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%dx%d", in.c, in.h, in.w);
            printf("%-22s %-8s %-14s %10zu %12.3f %12.3f\n", in.name, in.kind, shape, in.params, in.flops / 1e6,
                   in.profiler_ops / 1e6);
        }
    }
    size_t np = ee_net_num_params(net);
    if (json)
        printf("],\"params\":%zu,\"macs\":%.0f,\"flops\":%.0f,\"ref_ops\":%.0f}\n", np, macs, flops, prof);
    else
        printf("%s, input %dx%dx%d, %d classes: %zu parameters (%.2fM), %.2fM MACs, %.1f MFLOPs per image "
               "(reference profiler: %.1f Mops)\n",
               ee_net_name(net), c, h, w, ee_net_classes(net), np, np / 1e6, macs / 1e6, flops / 1e6, prof / 1e6);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}

/* ---------------------------------------------------------------- bench */
static const char *bench_help =
    "usage: eenn bench [options]\n"
    "Times inference (eval mode) and training steps (forward, backward, SGD) on random data.\n"
    "Default: resnet56 and vgg16bn at 3x32x32 and resnet56 at 1x28x28; inference at batch 1 and 128,\n"
    "training at batch 128.\n"
    "  --arch NAME      one architecture only      --input CxHxW   its input shape\n"
    "  --arch-file FILE a custom architecture in eenn's text format (docs/format.md), at its own input shape\n"
    "  --batch N        inference batch size only  --no-train      skip training\n"
    "  --train-only     training only (its batch stays 128)\n"
    "  --seconds X      time per measurement (default 3)\n"
    "  --threads N      (0 = all cores)            --json\n"
    "  --exits MODEL    early exits of an SDN on its real test data, beside its CNN without ICs: measured\n"
    "                   wall-clock speedup next to the FLOPs reduction, at batch 1 (with p50/p99 latency)\n"
    "                   and batch 128; --q X overrides the calibrated threshold, --n N images (default 2000)\n"
    "  --save-model FILE with --arch: write the randomly initialised network that is timed (--seed N, default\n"
    "                   1221), so that peers (PyTorch, ONNX Runtime) can be timed on the same weights\n"
    "  --gemm           the fp32 GEMM ceiling instead: 1024^3 sgemm through oneDNN, in GFLOP/s\n";

typedef struct { const char *arch; int c, h, w; } bench_net;

/* a field of /proc/self/status in MB (VmRSS: resident now, VmHWM: peak so far, RssAnon: allocated memory,
 * RssFile: mapped library code and files); 0 if unknown */
static double status_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) { kb = atof(line + strlen(key)); break; }
    fclose(f);
    return kb / 1024;
}

static double time_loop(ee_ctx *ctx, ee_net *net, ee_optim_state *st, float *x, uint8_t *y, int n, int train,
                        double secs, int *iters) {
    int it = 0;
    double t0 = 0;
    for (int warm = 0;; it++) {
        if (train) {
            check(ee_net_forward(ctx, net, x, n, 1), ctx);
            ee_net_zero_seeds(net);
            check(ee_net_loss(ctx, net, ee_net_num_heads(net) - 1, y, n, 1.0f, NULL, NULL), ctx);
            check(ee_net_backward(ctx, net, n), ctx);
            check(ee_optim_step(ctx, net, st, 1e-3f), ctx);
        } else {
            check(ee_net_forward(ctx, net, x, n, 0), ctx);
        }
        if (warm < 2) { if (++warm == 2) { t0 = now_s(); it = -1; } continue; }
        if (now_s() - t0 >= secs && it >= 2) break;
    }
    *iters = it + 1;
    return (now_s() - t0) / (it + 1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static ee_conv_kernel bench_conv = EE_CONV_AUTO; /* bench --conv */

/* early-exit inference against the same CNN without ICs, on real test images */
static int bench_exits(const char *model, double q, int nimg, int threads, int json) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_ctx_set_conv_kernel(ctx, bench_conv);
    ee_net *sdn = NULL, *cnn = NULL;
    check(ee_net_load(ctx, model, &sdn), ctx);
    if (ee_net_num_heads(sdn) < 2) die("%s: has no internal classifiers (bench --exits needs an SDN)", model);
    if (q < 0) q = ee_net_meta(sdn, "exit.q") ? atof(ee_net_meta(sdn, "exit.q")) : -1;
    if (q < 0) die("%s: not calibrated; run eenn calibrate first or give --q", model);
    int fallback = ee_net_meta(sdn, "exit.fallback") && !strcmp(ee_net_meta(sdn, "exit.fallback"), "1");
    check(ee_sdn_strip(ctx, sdn, &cnn), ctx);
    const char *data = ee_net_meta(sdn, "data.dir") ? ee_net_meta(sdn, "data.dir") : DEFAULT_DATA;
    ee_dataset *ds = NULL;
    check(ee_dataset_load_dir(ctx, data, "test", &ds), ctx);
    apply_norm(sdn, ds);
    if (nimg > ds->n) nimg = ds->n;
    int C, H, W, heads = ee_net_num_heads(sdn);
    ee_net_input_shape(sdn, &C, &H, &W);
    size_t img = (size_t)C * H * W;
    float *x = malloc(img * nimg * sizeof(float));
    int *idx = malloc(nimg * sizeof(int));
    uint8_t *y = malloc(nimg), *pred = malloc(nimg), *ex = malloc(nimg);
    float *conf = malloc(nimg * sizeof(float));
    double *lat_e = malloc(nimg * sizeof(double)), *lat_c = malloc(nimg * sizeof(double));
    for (int i = 0; i < nimg; i++) idx[i] = i;
    ee_dataset_batch(ctx, ds, idx, nimg, NULL, x, y);
    double cost[16], cnn_flops = 0;
    ee_net_head_costs(sdn, cost, NULL);
    for (int i = 0; i < ee_net_num_nodes(cnn); i++) { ee_node_info in; ee_net_node_info(cnn, i, &in); cnn_flops += in.flops; }
    check(ee_net_prepare(ctx, sdn, 128, 0), ctx);
    check(ee_net_prepare(ctx, cnn, 128, 0), ctx);
    check(ee_net_seal(ctx, sdn), ctx);
    check(ee_net_seal(ctx, cnn), ctx);
    /* warm-up: primitives for every power-of-two batch, both networks */
    for (int n = 128; n >= 1; n /= 2) {
        if (n > nimg) continue;
        check(ee_infer_exits(ctx, sdn, x, n, (float)q, fallback, pred, conf, ex), ctx);
        check(ee_net_forward(ctx, cnn, x, n, 0), ctx);
    }
    double res[2][2] = {{1e300, 1e300}, {1e300, 1e300}}; /* [batch 1, batch 128][cnn, exits]: best seconds */
    double avg_cost = 0;
    int right_e = 0, right_c = 0, exits[16] = {0};
    for (int rep = 0; rep < 2; rep++) {
        /* batch 1: one image at a time, latency per image */
        double t0 = now_s();
        for (int i = 0; i < nimg; i++) {
            double a0 = now_s();
            check(ee_net_forward(ctx, cnn, x + i * img, 1, 0), ctx);
            lat_c[i] = now_s() - a0;
        }
        double t1 = now_s();
        for (int i = 0; i < nimg; i++) {
            double a0 = now_s();
            check(ee_infer_exits(ctx, sdn, x + i * img, 1, (float)q, fallback, pred + i, conf + i, ex + i), ctx);
            lat_e[i] = now_s() - a0;
        }
        double t2 = now_s();
        /* batch 128 */
        for (int i = 0; i < nimg; i += 128)
            check(ee_net_forward(ctx, cnn, x + i * img, nimg - i < 128 ? nimg - i : 128, 0), ctx);
        double t3 = now_s();
        for (int i = 0; i < nimg; i += 128)
            check(ee_infer_exits(ctx, sdn, x + i * img, nimg - i < 128 ? nimg - i : 128, (float)q, fallback, pred + i, conf + i, ex + i), ctx);
        double t4 = now_s();
        if (t1 - t0 < res[0][0]) res[0][0] = t1 - t0;
        if (t2 - t1 < res[0][1]) res[0][1] = t2 - t1;
        if (t3 - t2 < res[1][0]) res[1][0] = t3 - t2;
        if (t4 - t3 < res[1][1]) res[1][1] = t4 - t3;
    }
    for (int i = 0; i < nimg; i++) { avg_cost += cost[ex[i]]; exits[ex[i]]++; right_e += pred[i] == y[i]; }
    avg_cost /= nimg;
    for (int i = 0; i < nimg; i += 128) {
        int n = nimg - i < 128 ? nimg - i : 128;
        check(ee_net_forward(ctx, cnn, x + i * img, n, 0), ctx);
        const float *z = ee_net_head_output(cnn, 0);
        int K = ee_net_classes(cnn);
        for (int j = 0; j < n; j++) {
            int b = 0;
            for (int k = 1; k < K; k++) if (z[j * K + k] > z[j * K + b]) b = k;
            right_c += b == y[i + j];
        }
    }
    qsort(lat_e, nimg, sizeof(double), cmp_double);
    qsort(lat_c, nimg, sizeof(double), cmp_double);
    double flops_speedup = 1 / avg_cost, s1 = res[0][0] / res[0][1], s128 = res[1][0] / res[1][1];
    if (json) {
        printf("{\"model\":\"%s\",\"q\":%g,\"images\":%d,\"acc_exits\":%.4f,\"acc_cnn\":%.4f,\"avg_cost\":%.4f,"
               "\"flops_speedup\":%.3f,\"batch1\":{\"cnn_img_s\":%.1f,\"exit_img_s\":%.1f,\"speedup\":%.3f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"cnn_p50_ms\":%.3f,\"cnn_p99_ms\":%.3f},"
               "\"batch128\":{\"cnn_img_s\":%.1f,\"exit_img_s\":%.1f,\"speedup\":%.3f},\"exits\":[",
               js(model), q, nimg, 100.0 * right_e / nimg, 100.0 * right_c / nimg, avg_cost, flops_speedup, nimg / res[0][0],
               nimg / res[0][1], s1, lat_e[nimg / 2] * 1e3, lat_e[nimg * 99 / 100] * 1e3, lat_c[nimg / 2] * 1e3,
               lat_c[nimg * 99 / 100] * 1e3, nimg / res[1][0], nimg / res[1][1], s128);
        for (int h = 0; h < heads; h++) printf("%s%.4f", h ? "," : "", (double)exits[h] / nimg);
        printf("]}\n");
    } else {
        printf("%s at q = %g on %d test images: accuracy %.2f%% with exits, %.2f%% for the CNN\n", model, q, nimg,
               100.0 * right_e / nimg, 100.0 * right_c / nimg);
        printf("average cost %.1f%% of the CNN's %.1f MFLOPs: %.2fx fewer FLOPs; exits (%%):", avg_cost * 100,
               cnn_flops / 1e6, flops_speedup);
        for (int h = 0; h < heads; h++) printf(" %.1f", 100.0 * exits[h] / nimg);
        printf("\n%-10s %12s %14s %9s %16s\n", "batch", "CNN img/s", "exits img/s", "speedup", "vs FLOPs speedup");
        printf("%-10d %12.1f %14.1f %8.2fx %15.2f\n", 1, nimg / res[0][0], nimg / res[0][1], s1, s1 / flops_speedup);
        printf("%-10d %12.1f %14.1f %8.2fx %15.2f\n", 128, nimg / res[1][0], nimg / res[1][1], s128, s128 / flops_speedup);
        printf("batch-1 latency: p50 %.3f ms, p99 %.3f ms with exits; p50 %.3f ms, p99 %.3f ms for the CNN\n",
               lat_e[nimg / 2] * 1e3, lat_e[nimg * 99 / 100] * 1e3, lat_c[nimg / 2] * 1e3, lat_c[nimg * 99 / 100] * 1e3);
    }
    free(x); free(idx); free(y); free(pred); free(ex); free(conf); free(lat_e); free(lat_c);
    ee_dataset_free(ds);
    ee_net_free(sdn); ee_net_free(cnn);
    ee_ctx_free(ctx);
    return 0;
}

static int cmd_bench(args *a) {
    const char *arch = NULL, *exits_model = NULL, *save = NULL, *arch_file = NULL;
    int c = 3, h = 32, w = 32, batch = 0, train = 1, json = 0, threads = 0, have_input = 0, nimg = 2000, gemm = 0;
    long seed = 1221;
    double secs = 3, q = -1;
    for (a->i = 2; a->i < a->argc; a->i++) {
        if (is_opt(a, "--help") || is_opt(a, "-h")) { fputs(bench_help, stdout); return 0; }
        else if (is_opt(a, "--arch")) arch = val(a);
        else if (is_opt(a, "--arch-file")) arch_file = val(a);
        else if (is_opt(a, "--input")) { parse_shape("bench", val(a), &c, &h, &w); have_input = 1; }
        else if (is_opt(a, "--batch")) batch = (int)ival(a, 1, 4096);
        else if (is_opt(a, "--no-train")) train = 0;
        else if (is_opt(a, "--train-only")) train = 2;
        else if (is_opt(a, "--seconds")) secs = fval(a, 0.01, 3600);
        else if (is_opt(a, "--threads")) threads = (int)ival(a, 0, 256);
        else if (is_opt(a, "--json")) json = 1;
        else if (is_opt(a, "--exits")) exits_model = val(a);
        else if (is_opt(a, "--q")) q = fval(a, 0, 2);
        else if (is_opt(a, "--n")) nimg = (int)ival(a, 1, 1000000);
        else if (is_opt(a, "--save-model")) save = val(a);
        else if (is_opt(a, "--seed")) seed = ival(a, 0, 2147483647);
        else if (is_opt(a, "--gemm")) gemm = 1;
        else if (is_opt(a, "--conv")) {
            const char *k = val(a);
            if (!strcmp(k, "auto")) bench_conv = EE_CONV_AUTO;
            else if (!strcmp(k, "onednn")) bench_conv = EE_CONV_ONEDNN;
            else if (!strcmp(k, "direct")) bench_conv = EE_CONV_DIRECT;
            else die("bench --conv: '%s' is not auto, onednn or direct", k);
        }
        else die("bench: unknown option '%s' (see eenn bench --help)", a->argv[a->i]);
    }
    if (exits_model) return bench_exits(exits_model, q, nimg, threads, json);
    if (save && !arch && !arch_file) die("bench --save-model: needs --arch or --arch-file");
    if (arch && arch_file) die("bench: --arch and --arch-file exclude each other");
    if (arch_file && have_input) die("bench --arch-file: the file's input line gives the shape; drop --input");
    if (gemm) {
        ee_ctx *ctx = ee_ctx_new();
        ee_ctx_set_threads(ctx, threads);
        double gf = 0;
        check(ee_bench_sgemm(ctx, 1024, secs, &gf), ctx);
        if (json) printf("{\"gemm\":1024,\"threads\":%d,\"gflops\":%.1f}\n", ee_ctx_threads(ctx), gf);
        else printf("fp32 sgemm 1024x1024x1024 (oneDNN), %d threads: %.1f GFLOP/s\n", ee_ctx_threads(ctx), gf);
        ee_ctx_free(ctx);
        return 0;
    }
    bench_net defaults[] = {{"resnet56", 3, 32, 32}, {"vgg16bn", 3, 32, 32}, {"resnet56", 1, 28, 28}};
    bench_net one = {arch ? arch : "resnet56", c, h, w};
    bench_net *list = arch || have_input || arch_file ? &one : defaults;
    int nlist = arch || have_input || arch_file ? 1 : 3;
    char *text = NULL;
    ee_ctx *ctx = ee_ctx_new();
    if (arch_file) { /* its name and input shape, from a first build */
        ee_net *probe = NULL;
        text = read_text(arch_file);
        check(ee_net_from_text(ctx, text, arch_file, &probe), ctx);
        ee_net_input_shape(probe, &one.c, &one.h, &one.w);
        one.arch = arch_file;
        ee_net_free(probe);
    }
    ee_ctx_set_threads(ctx, threads);
    ee_ctx_set_conv_kernel(ctx, bench_conv);
    double rss0 = status_mb("VmRSS:"); /* the process before any network: code, libraries, runtime */
    if (json) printf("{\"threads\":%d,\"start_rss_mb\":%.1f,\"results\":[", ee_ctx_threads(ctx), rss0);
    else printf("%-10s %-8s %-6s %6s %10s %9s %10s %9s %9s\n", "net", "input", "mode", "batch", "img/s", "GFLOP/s", "ms/batch",
                "act MB", "peak RSS");
    int first = 1;
    for (int k = 0; k < nlist; k++) {
        int modes[3][2] = {{0, 1}, {0, 128}, {1, 128}}, nm = 0, ms[3][2];
        for (int m = 0; m < 3; m++) {
            if (modes[m][0] ? !train : train == 2) continue;
            if (batch && !modes[m][0]) { if (m == 1) continue; modes[m][1] = batch; }
            ms[nm][0] = modes[m][0]; ms[nm][1] = modes[m][1]; nm++;
        }
        for (int m = 0; m < nm; m++) {
            int tr = ms[m][0], n = ms[m][1];
            ee_net *net = NULL;
            ee_ctx_seed(ctx, (uint64_t)seed); /* the same weights in every mode, and in --save-model */
            if (text) check(ee_net_from_text(ctx, text, arch_file, &net), ctx);
            else check(ee_net_builtin(ctx, list[k].arch, list[k].c, list[k].h, list[k].w, 10, &net), ctx);
            check(ee_net_init(ctx, net), ctx);
            if (save && m == 0) check(ee_net_save(ctx, net, NULL, 0, save), ctx);
            check(ee_net_prepare(ctx, net, n, tr), ctx);
            if (!tr) check(ee_net_seal(ctx, net), ctx); /* inference as deployed: one copy of the weights */
            size_t img = (size_t)list[k].c * list[k].h * list[k].w;
            float *x = malloc(img * n * sizeof(float));
            uint8_t *y = malloc(n);
            for (size_t i = 0; i < img * n; i++) x[i] = ee_rng_normal(ctx);
            for (int i = 0; i < n; i++) y[i] = (uint8_t)(ee_rng_next(ctx) % (uint64_t)ee_net_classes(net));
            ee_optim o = {EE_OPTIM_SGD, 1e-3f, 0.9f, 1e-4f, 0, 0, 0, 0};
            ee_optim_state *st = NULL;
            if (tr) check(ee_optim_state_new(ctx, net, &o, &st), ctx);
            double flops = 0;
            for (int i = 0; i < ee_net_num_nodes(net); i++) { ee_node_info in; ee_net_node_info(net, i, &in); flops += in.flops; }
            if (tr) flops *= 3; /* forward + backward data + backward weights */
            int iters;
            double t = time_loop(ctx, net, st, x, y, n, tr, secs, &iters);
            double ips = n / t, gf = flops * n / t / 1e9;
            /* memory: weights and BN statistics, the largest input+output pair of any layer, the activation buffers
             * the net holds, and the process's peak resident set so far */
            double wmb = (ee_net_num_params(net) + ee_net_num_state(net)) * 4.0 / 1048576, pair = 0;
            for (int i = 0; i < ee_net_num_nodes(net); i++) {
                ee_node_info in;
                ee_net_node_info(net, i, &in);
                double p = ((double)in.in_c * in.in_h * in.in_w + (double)in.c * in.h * in.w) * n * 4.0 / 1048576;
                if (p > pair) pair = p;
            }
            double act = ee_net_activation_bytes(net) / 1048576.0, peak = status_mb("VmHWM:"), anon = status_mb("RssAnon:"),
                   file = status_mb("RssFile:");
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%dx%d", list[k].c, list[k].h, list[k].w);
            if (json)
                printf("%s{\"net\":\"%s\",\"input\":\"%s\",\"mode\":\"%s\",\"batch\":%d,\"img_per_s\":%.1f,\"gflops\":%.1f,"
                       "\"ms_per_batch\":%.3f,\"iters\":%d,\"weights_mb\":%.2f,\"largest_pair_mb\":%.2f,"
                       "\"activation_mb\":%.2f,\"peak_rss_mb\":%.1f,\"rss_anon_mb\":%.1f,\"rss_file_mb\":%.1f}",
                       first ? "" : ",", js(list[k].arch), shape, tr ? "train" : "infer", n, ips, gf, t * 1e3, iters, wmb, pair,
                       act, peak, anon, file);
            else
                printf("%-10s %-8s %-6s %6d %10.1f %9.1f %10.3f %9.1f %9.1f\n", list[k].arch, shape, tr ? "train" : "infer",
                       n, ips, gf, t * 1e3, act, peak);
            fflush(stdout);
            first = 0;
            ee_optim_state_free(st);
            free(x); free(y);
            ee_net_free(net);
        }
    }
    if (json) printf("]}\n");
    free(text);
    ee_ctx_free(ctx);
    return 0;
}

static const char *main_help =
    "eenn " EE_VERSION_STRING ": early-exit neural networks (Shallow-Deep Networks) in C\n"
    "usage: eenn COMMAND [options]   (eenn COMMAND --help for details)\n"
    "  train   train a CNN, or an SDN (--mode sdn, or --mode ic-only on a trained CNN)\n"
    "  eval    accuracy of a model (per exit for an SDN), or several models side by side\n"
    "  info    parameters and FLOPs per layer of a model or a built-in architecture\n"
    "  calibrate  pick an SDN's early-exit threshold on the validation split\n"
    "  infer   classify images or dataset files with early exits\n"
    "  bench   inference and training speed, and measured early-exit speedup (--exits)\n"
    "  analyze overthinking in an SDN: wasteful and destructive effects, confusion metric, backdoors\n"
    "  report  the analysis as one self-contained HTML page with charts, Grad-CAM and image galleries\n";

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { fputs(main_help, stdout); return argc < 2; }
    if (!strcmp(argv[1], "--version")) { puts("eenn " EE_VERSION_STRING); return 0; }
    args a = {argc, argv, 2, argv[1]};
    if (!strcmp(argv[1], "train")) return cmd_train(&a);
    if (!strcmp(argv[1], "eval")) return cmd_eval(&a);
    if (!strcmp(argv[1], "info")) return cmd_info(&a);
    if (!strcmp(argv[1], "bench")) return cmd_bench(&a);
    if (!strcmp(argv[1], "calibrate")) return cmd_calibrate(&a);
    if (!strcmp(argv[1], "infer")) return cmd_infer(&a);
    if (!strcmp(argv[1], "analyze")) return cmd_analyze(&a);
    if (!strcmp(argv[1], "report")) return cmd_report(&a);
    die("unknown command '%s' (eenn --help lists them)", argv[1]);
}
