/* train.c: `eenn train`: a CNN, an SDN trained jointly, or internal classifiers on a trained CNN (IC-only), with
 * a live progress line, a checkpoint after every epoch and --resume. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
            int found = ee_net_find_node(net, t);
            if (found < 0) usage_error("train --ics: no node named '%s' (eenn info lists them)", t);
            if (n == 15) usage_error("train --ics: at most 15 internal classifiers");
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

enum {
    O_ARCH = 256, O_ARCH_FILE, O_MODE, O_FROM, O_ICS, O_DATA, O_OUT, O_CHECKPOINT, O_EPOCHS, O_BATCH, O_LR, O_MOMENTUM,
    O_WD, O_NESTEROV, O_OPTIM, O_SCHEDULE, O_MILESTONES, O_GAMMA, O_VAL, O_SUBSET, O_TEST_SUBSET, O_NO_AUGMENT,
    O_AUGMENT, O_TRIGGER, O_TARGET, O_POISON, O_RESUME, O_SEED, O_THREADS, O_JSON
};
static const struct option train_opts[] = {
    {"arch", required_argument, NULL, O_ARCH}, {"arch-file", required_argument, NULL, O_ARCH_FILE},
    {"mode", required_argument, NULL, O_MODE}, {"from", required_argument, NULL, O_FROM},
    {"ics", required_argument, NULL, O_ICS}, {"data", required_argument, NULL, O_DATA},
    {"out", required_argument, NULL, O_OUT}, {"checkpoint", required_argument, NULL, O_CHECKPOINT},
    {"epochs", required_argument, NULL, O_EPOCHS}, {"batch", required_argument, NULL, O_BATCH},
    {"lr", required_argument, NULL, O_LR}, {"momentum", required_argument, NULL, O_MOMENTUM},
    {"wd", required_argument, NULL, O_WD}, {"nesterov", no_argument, NULL, O_NESTEROV},
    {"optim", required_argument, NULL, O_OPTIM}, {"schedule", required_argument, NULL, O_SCHEDULE},
    {"milestones", required_argument, NULL, O_MILESTONES}, {"gamma", required_argument, NULL, O_GAMMA},
    {"val", required_argument, NULL, O_VAL}, {"subset", required_argument, NULL, O_SUBSET},
    {"test-subset", required_argument, NULL, O_TEST_SUBSET}, {"no-augment", no_argument, NULL, O_NO_AUGMENT},
    {"augment", required_argument, NULL, O_AUGMENT}, {"trigger", required_argument, NULL, O_TRIGGER},
    {"target", required_argument, NULL, O_TARGET}, {"poison", required_argument, NULL, O_POISON},
    {"resume", no_argument, NULL, O_RESUME}, {"seed", required_argument, NULL, O_SEED},
    {"threads", required_argument, NULL, O_THREADS}, {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_train(int argc, char **argv) {
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
    cli_args a = {"train", train_help, train_opts, NULL, argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;) {
        const char *v = optarg;
        switch (c) {
        case O_ARCH: arch = v; break;
        case O_ARCH_FILE: arch_file = v; break;
        case O_MODE: mode_s = v; break;
        case O_FROM: from = v; break;
        case O_ICS: ics = v; break;
        case O_DATA: data = v; break;
        case O_OUT: out = v; break;
        case O_CHECKPOINT: ckpt = v; break;
        case O_EPOCHS: epochs = (int)cli_int(&a, 1, 100000); set_epochs = 1; break;
        case O_BATCH: batch = (int)cli_int(&a, 1, 65536); break;
        case O_LR: opt.lr = (float)cli_num(&a, 0, 100); set_lr = 1; break;
        case O_MOMENTUM: opt.momentum = (float)cli_num(&a, 0, 0.999999); break;
        case O_WD: opt.weight_decay = (float)cli_num(&a, 0, 1); set_wd = 1; break;
        case O_NESTEROV: opt.nesterov = 1; break;
        case O_OPTIM:
            if (!strcmp(v, "sgd")) opt.kind = EE_OPTIM_SGD;
            else if (!strcmp(v, "adam")) opt.kind = EE_OPTIM_ADAM;
            else usage_error("train --optim: '%s' is not sgd or adam", v);
            set_optim = 1;
            break;
        case O_SCHEDULE:
            if (!strcmp(v, "step")) sched.kind = EE_SCHED_STEP;
            else if (!strcmp(v, "cosine")) sched.kind = EE_SCHED_COSINE;
            else usage_error("train --schedule: '%s' is not step or cosine", v);
            break;
        case O_MILESTONES: milestones = v; break;
        case O_GAMMA: sched.gamma = (float)cli_num(&a, 0, 1); break;
        case O_VAL: nval = (int)cli_int(&a, 0, 100000000); break;
        case O_SUBSET: subset = (int)cli_int(&a, 1, 100000000); break;
        case O_TEST_SUBSET: test_subset = (int)cli_int(&a, 1, 100000000); break;
        case O_NO_AUGMENT: augment = "none"; break;
        case O_AUGMENT: augment = v; break;
        case O_TRIGGER: parse_trigger("train", v, &trig); break;
        case O_TARGET: trig.target = (int)cli_int(&a, 0, 255); set_target = 1; break;
        case O_POISON: trig.rate = cli_num(&a, 0, 1); set_poison = 1; break;
        case O_RESUME: resume = 1; break;
        case O_SEED: seed = cli_int(&a, 0, 2147483647); break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        }
    }
    if (cli_npos(&a)) usage_error("train: unexpected argument '%s' (see eenn train --help)", cli_pos(&a)[0]);
    ee_train_mode mode = EE_MODE_CNN;
    if (!strcmp(mode_s, "ic-only")) mode = EE_MODE_IC_ONLY;
    else if (!strcmp(mode_s, "sdn")) mode = EE_MODE_SDN;
    else if (strcmp(mode_s, "cnn")) usage_error("train --mode: '%s' is not cnn, sdn or ic-only", mode_s);
    if (mode == EE_MODE_IC_ONLY && !from) usage_error("train --mode ic-only: needs --from TRAINED_CNN.eenn");
    if (mode != EE_MODE_IC_ONLY && from) usage_error("train --from: only with --mode ic-only");
    if (mode == EE_MODE_CNN && ics) usage_error("train --ics: only with --mode sdn or ic-only");
    if (!trig.size && (set_target || set_poison)) usage_error("train --target and --poison: only with --trigger");
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
    else if (strcmp(augment, "none")) usage_error("train --augment: '%s' is not crop+flip, flip, crop or none", augment);
    if (!set_wd && (!strcmp(arch, "vgg16bn") || !strcmp(arch, "wrn32_4"))) opt.weight_decay = 5e-4f;
    if (opt.kind == EE_OPTIM_ADAM) opt.momentum = 0;
    if (opt.nesterov && opt.kind != EE_OPTIM_SGD) usage_error("train --nesterov: only with --optim sgd");
    /* milestones: fractions of the run */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", milestones);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        char *end;
        double f = strtod(t, &end);
        if (*end || !(f > 0 && f < 1) || sched.nmilestones == 8) usage_error("train --milestones: '%s' must be fractions in (0, 1)", milestones);
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

