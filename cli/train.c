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
    "                     sidenet: one side classifier (Morisot's SideNet: pooling, a hidden layer, the classes)\n"
    "                     on a trained CNN (--from), CNN frozen; Adam 1e-3, 10 epochs\n"
    "                     eenet: EENet exits with learned confidence branches and the cost-aware loss (Demir &\n"
    "                     Akbas; recipe: Adam 1e-3, lr x0.1 at 50%% and 75%%)\n"
    "                     jei: JEI-DNN (Regol et al.): ICs and gates on their uncertainty learned jointly on a\n"
    "                     frozen CNN (--from); recipe: ICs Adam 1e-3, gates SGD 0.01 (momentum 0.9, wd 5e-4), both\n"
    "                     cosine to 2%%, batch 64, 10 epochs; the gates become the model's exit policy\n"
    "  --from FILE        the trained CNN for --mode ic-only, sidenet or jei (or to start an EENet's backbone from)\n"
    "  --at NODE          SideNet: the node it reads (default: the block end nearest 30%% of the FLOPs)\n"
    "  --hidden H         SideNet: hidden units (256)   --pool P  SideNet: average pooling to P x P first (4)\n"
    "  --warmup-epochs N  JEI: epochs of the ICs alone first (3)   --phase-batches N  JEI: batches per phase (200)\n"
    "  --exits N          EENet: early exits (2)       --distribution fine|linear|pareto|gold_ratio (fine)\n"
    "  --lambda X         EENet, JEI: the cost weight (EENet 1.0, JEI 0.7)  --exit-type pool|plain|bnpool (pool)\n"
    "  --gate features|uncertainty  EENet: what the confidence branch reads: the exit's features (the paper), or\n"
    "                     the max probability, entropy, margin and p^2 entropy of its own softmax (not in the paper)\n"
    "  --loss v0|v1|v2|two-stage  EENet loss (v2); two-stage: v0 for --stage1-epochs (25), then v1\n"
    "  --stage1-epochs N  with v1 or v2: v0 for the first N epochs, then that loss\n"
    "                     v1+ce, v2+ce (not in the paper): plus every exit's own cross-entropy, so that exits\n"
    "                     with closed gates keep learning to classify\n"
    "                     v4, v4+ce: the code's experimental v4: each input tagged with its best exit by\n"
    "                     -log p + lambda cost, confidences taught those tags (class-balanced cross-entropy)\n"
    "  --ics A,B,..       IC positions as node names (default: the SDN reference's, or the FLOPs rule)\n"
    "  --arch NAME        resnet20 (default), resnet56, resnet110, vgg16bn, wrn32_4, mobilenet\n"
    "  --arch-file FILE   a custom architecture in eenn's text format (docs/format.md)\n"
    "  --data DIR         IDX or CIFAR binaries, or text (train.tsv, test.tsv: docs/format.md; then the text CNN,\n"
    "                     Adam 1e-3, 10 epochs, batch 64, a tenth for validation) (default " DEFAULT_DATA ")\n"
    "  --tokens T         text: words (hashed, the default) or bytes\n"
    "  --text-length N    text: the tokens of each example the network reads (words 512, bytes 1024)\n"
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
    "  --stop-after N     stop after epoch N of the schedule, leaving the checkpoint to --resume from (for example\n"
    "                     the first stage of two-stage EENet training, shared by runs at several --lambda)\n"
    "  --seed N (1221)    --threads N (0 = all cores)   --json  final results as JSON\n"
    "Data-parallel training: mpirun -np N eenn train ... (docs/cluster.md): every rank takes its share of each\n"
    "global batch of --batch samples and the gradients are summed over the ranks; rank 0 reports, checkpoints and\n"
    "writes the model; --resume works with any N. Threads per rank: the cores divided by the ranks on a machine.\n"
    "  --sync-bn          batch norm over the whole global batch (default: each rank's share)\n"
    "  --replicas auto|N  one process: N copies of the network train in N threads, as ranks with sync-BN (the\n"
    "                     same steps up to float rounding), the cores shared evenly between them (8 cores, 4\n"
    "                     replicas: 2 threads each). auto (default): one per core (--threads, or the idle cores)\n"
    "                     for a network whose convolutions have at most 64 channels (ResNet-56: 1.04-1.30x one\n"
    "                     copy on 2 cores; wider ones lose, docs/benchmarks.md), at most one per 32 samples of\n"
    "                     the batch; else 1, one copy on all the cores\n"
    "  --hierarchical --split NODE  hierarchical training (Sepehri et al.; --mode sdn): this process, the edge,\n"
    "                     trains the layers up to NODE on the exits before it and sends NODE's outputs and the\n"
    "                     labels to a cloud process, which trains the rest; no gradient goes back\n"
    "  --cloud URL        the cloud: a running `eenn train --hierarchical-cloud --listen HOST:PORT` (default: one\n"
    "                     started here on loopback, with --cloud-threads N)\n"
    "  --link-mbit R      simulate a link of R Mbit/s to the cloud    --wire fp32|fp16|int8 (fp32)\n";

typedef struct { int tty, json; double t0; const char *rule; } progress_state;

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
            if (p->val_exit_acc >= 0)
                fprintf(stderr, "  exits at %s: val acc %.2f%%, cost %.1f%%", ps->rule, 100 * p->val_exit_acc,
                        100 * p->val_exit_cost);
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



/* check() for attaching exits to the network of --from: a failure names that file */
static void check_from(ee_status s, ee_ctx *ctx, const char *from) {
    if (s && from) die("%s: %s", from, ee_ctx_error(ctx));
    check(s, ctx);
}

/* replaces net by net + internal classifiers at `ics` (node names) or the default positions */
static ee_net *attach_ics(ee_ctx *ctx, ee_net *net, const char *ics, const char *from) {
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
    check_from(ee_sdn_attach(ctx, net, nodes, n, &sdn), ctx, from);
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
    O_AUGMENT, O_TRIGGER, O_TARGET, O_POISON, O_RESUME, O_SEED, O_THREADS, O_JSON, O_SYNC_BN, O_REPLICAS, O_EXITS, O_DIST, O_LAMBDA,
    O_EXIT_TYPE, O_LOSS, O_STAGE1, O_STOP_AFTER, O_GATE, O_WARMUP, O_PHASE, O_AT, O_HIDDEN, O_POOL, O_TEXT_LENGTH,
    O_TOKENS, O_HIER, O_HIER_CLOUD, O_SPLIT, O_CLOUD, O_LINK, O_WIRE, O_LISTEN, O_PORT_FILE, O_CLOUD_THREADS
};
static const struct option train_opts_list[] = {
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
    {"sync-bn", no_argument, NULL, O_SYNC_BN}, {"replicas", required_argument, NULL, O_REPLICAS},
    {"exits", required_argument, NULL, O_EXITS}, {"distribution", required_argument, NULL, O_DIST},
    {"lambda", required_argument, NULL, O_LAMBDA}, {"exit-type", required_argument, NULL, O_EXIT_TYPE},
    {"loss", required_argument, NULL, O_LOSS}, {"stage1-epochs", required_argument, NULL, O_STAGE1},
    {"stop-after", required_argument, NULL, O_STOP_AFTER}, {"gate", required_argument, NULL, O_GATE},
    {"warmup-epochs", required_argument, NULL, O_WARMUP}, {"phase-batches", required_argument, NULL, O_PHASE},
    {"at", required_argument, NULL, O_AT}, {"hidden", required_argument, NULL, O_HIDDEN},
    {"pool", required_argument, NULL, O_POOL}, {"text-length", required_argument, NULL, O_TEXT_LENGTH},
    {"tokens", required_argument, NULL, O_TOKENS}, {"hierarchical", no_argument, NULL, O_HIER},
    {"hierarchical-cloud", no_argument, NULL, O_HIER_CLOUD}, {"split", required_argument, NULL, O_SPLIT},
    {"cloud", required_argument, NULL, O_CLOUD}, {"link-mbit", required_argument, NULL, O_LINK},
    {"wire", required_argument, NULL, O_WIRE}, {"listen", required_argument, NULL, O_LISTEN},
    {"port-file", required_argument, NULL, O_PORT_FILE}, {"cloud-threads", required_argument, NULL, O_CLOUD_THREADS},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

/* everything the command line says, after the recipe's defaults are applied */
typedef struct {
    const char *arch, *arch_file, *data, *out, *ckpt, *milestones, *mode_s, *from, *ics, *augment, *at;
    int sidenet, hidden, pool, set_side;
    int text, set_arch, set_augment, set_val; /* text: the data directory holds train.tsv */
    int text_length, words;
    const char *tokens;
    char at_buf[64];
    int set_optim, set_lr, set_wd, set_epochs, set_target, set_poison, set_eenet, set_batch;
    const char *loss_s;
    int exits, dist, exit_type, stage1, set_stage1, stop_after, unc_gate, set_lambda, warmup, phase, set_jei;
    float lambda;
    ee_eenet_loss_kind loss;
    int epochs, batch, nval, subset, test_subset, resume, json, threads;
    long seed;
    ee_train_mode mode;
    ee_trigger trig;
    ee_optim opt;
    ee_schedule sched;
    ee_augment aug;
    char ckpt_buf[4200];
    int hier, hier_cloud, wire, cloud_threads, sync_bn, replicas;
    const char *split, *cloud, *listen, *port_file;
    double link_mbit;
} train_opts;

static void parse_train(int argc, char **argv, train_opts *o) {
    *o = (train_opts){.arch = "resnet20", .data = DEFAULT_DATA, .out = "model.eenn", .mode_s = "cnn",
                      .augment = "crop+flip", .epochs = 15, .batch = 128, .nval = 5000, .seed = 1221, .replicas = EE_REPLICAS_AUTO,
                      .trig = {0, -2, -2, 0, 0.1}, .opt = {EE_OPTIM_SGD, 0.1f, 0.9f, 1e-4f, 0, 0, 0, 0},
                      .sched = {EE_SCHED_STEP, 0.1f, 0.1f, {0}, 0, 0, 0}, .exits = 2, .lambda = 1.0f,
                      .loss_s = "v2", .stage1 = 25, .warmup = 3, .phase = 200, .hidden = 256, .pool = 4};
    cli_args a = {"train", train_help, train_opts_list, NULL, argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;) {
        const char *v = optarg;
        switch (c) {
        case O_ARCH: o->arch = v; o->set_arch = 1; break;
        case O_ARCH_FILE: o->arch_file = v; break;
        case O_MODE: o->mode_s = v; break;
        case O_FROM: o->from = v; break;
        case O_ICS: o->ics = v; break;
        case O_AT: o->at = v; o->set_side = 1; break;
        case O_HIDDEN: o->hidden = (int)cli_int(&a, 1, 65536); o->set_side = 1; break;
        case O_POOL: o->pool = (int)cli_int(&a, 1, 64); o->set_side = 1; break;
        case O_TEXT_LENGTH: o->text_length = (int)cli_int(&a, 8, 1 << 20); break;
        case O_TOKENS:
            if (strcmp(v, "words") && strcmp(v, "bytes")) usage_error("train --tokens: '%s' is not words or bytes", v);
            o->tokens = v;
            break;
        case O_DATA: o->data = v; break;
        case O_OUT: o->out = v; break;
        case O_CHECKPOINT: o->ckpt = v; break;
        case O_EPOCHS: o->epochs = (int)cli_int(&a, 1, 100000); o->set_epochs = 1; break;
        case O_BATCH: o->batch = (int)cli_int(&a, 1, 65536); o->set_batch = 1; break;
        case O_LR: o->opt.lr = (float)cli_num(&a, 0, 100); o->set_lr = 1; break;
        case O_MOMENTUM: o->opt.momentum = (float)cli_num(&a, 0, 0.999999); break;
        case O_WD: o->opt.weight_decay = (float)cli_num(&a, 0, 1); o->set_wd = 1; break;
        case O_NESTEROV: o->opt.nesterov = 1; break;
        case O_OPTIM:
            if (!strcmp(v, "sgd")) o->opt.kind = EE_OPTIM_SGD;
            else if (!strcmp(v, "adam")) o->opt.kind = EE_OPTIM_ADAM;
            else usage_error("train --optim: '%s' is not sgd or adam", v);
            o->set_optim = 1;
            break;
        case O_SCHEDULE:
            if (!strcmp(v, "step")) o->sched.kind = EE_SCHED_STEP;
            else if (!strcmp(v, "cosine")) o->sched.kind = EE_SCHED_COSINE;
            else usage_error("train --schedule: '%s' is not step or cosine", v);
            break;
        case O_MILESTONES: o->milestones = v; break;
        case O_GAMMA: o->sched.gamma = (float)cli_num(&a, 0, 1); break;
        case O_VAL: o->nval = (int)cli_int(&a, 0, 100000000); o->set_val = 1; break;
        case O_SUBSET: o->subset = (int)cli_int(&a, 1, 100000000); break;
        case O_TEST_SUBSET: o->test_subset = (int)cli_int(&a, 1, 100000000); break;
        case O_NO_AUGMENT: o->augment = "none"; o->set_augment = 1; break;
        case O_AUGMENT: o->augment = v; o->set_augment = 1; break;
        case O_TRIGGER: parse_trigger("train", v, &o->trig); break;
        case O_TARGET: o->trig.target = (int)cli_int(&a, 0, 255); o->set_target = 1; break;
        case O_POISON: o->trig.rate = cli_num(&a, 0, 1); o->set_poison = 1; break;
        case O_RESUME: o->resume = 1; break;
        case O_HIER: o->hier = 1; break;
        case O_HIER_CLOUD: o->hier_cloud = 1; break;
        case O_SPLIT: o->split = v; break;
        case O_CLOUD: o->cloud = v; break;
        case O_LINK: o->link_mbit = cli_num(&a, 0.001, 1e6); break;
        case O_LISTEN: o->listen = v; break;
        case O_PORT_FILE: o->port_file = v; break;
        case O_CLOUD_THREADS: o->cloud_threads = (int)cli_int(&a, 0, 256); break;
        case O_WIRE:
            if (!strcmp(v, "fp32")) o->wire = EE_WIRE_F32;
            else if (!strcmp(v, "fp16")) o->wire = EE_WIRE_F16;
            else if (!strcmp(v, "int8")) o->wire = EE_WIRE_INT8;
            else usage_error("train --wire: '%s' is not fp32, fp16 or int8", v);
            break;
        case O_SEED: o->seed = cli_int(&a, 0, 2147483647); break;
        case O_THREADS: o->threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: o->json = 1; break;
        case O_SYNC_BN: o->sync_bn = 1; break;
        case O_REPLICAS: o->replicas = cli_replicas(&a); break;
        case O_EXITS: o->exits = (int)cli_int(&a, 1, EE_MAX_HEADS - 1); o->set_eenet = 1; break;
        case O_DIST:
            if ((o->dist = ee_eenet_dist_find(v)) < 0)
                usage_error("train --distribution: '%s' is not fine, linear, pareto or gold_ratio", v);
            o->set_eenet = 1;
            break;
        case O_LAMBDA: o->lambda = (float)cli_num(&a, 0, 1e6); o->set_lambda = 1; break;
        case O_WARMUP: o->warmup = (int)cli_int(&a, 0, 100000); o->set_jei = 1; break;
        case O_PHASE: o->phase = (int)cli_int(&a, 1, 100000000); o->set_jei = 1; break;
        case O_EXIT_TYPE:
            if ((o->exit_type = ee_eenet_exit_find(v)) < 0) usage_error("train --exit-type: '%s' is not pool, plain or bnpool", v);
            o->set_eenet = 1;
            break;
        case O_LOSS: o->loss_s = v; o->set_eenet = 1; break;
        case O_GATE:
            if (strcmp(v, "features") && strcmp(v, "uncertainty"))
                usage_error("train --gate: '%s' is not features or uncertainty", v);
            o->unc_gate = !strcmp(v, "uncertainty");
            o->set_eenet = 1;
            break;
        case O_STOP_AFTER: o->stop_after = (int)cli_int(&a, 1, 100000); break;
        case O_STAGE1: o->stage1 = (int)cli_int(&a, 0, 100000); o->set_stage1 = 1; o->set_eenet = 1; break;
        }
    }
    if (cli_npos(&a)) usage_error("train: unexpected argument '%s' (see eenn train --help)", cli_pos(&a)[0]);
}

/* checks the options against each other and fills in the recipe: the mode's defaults, augmentation, weight decay,
 * the lr milestones as epochs, the checkpoint's name */
static void resolve_recipe(train_opts *o) {
    o->mode = EE_MODE_CNN;
    o->sidenet = !strcmp(o->mode_s, "sidenet");
    if (!strcmp(o->mode_s, "ic-only") || o->sidenet) o->mode = EE_MODE_IC_ONLY; /* SideNet: one side head, CNN frozen */
    else if (!strcmp(o->mode_s, "sdn")) o->mode = EE_MODE_SDN;
    else if (!strcmp(o->mode_s, "eenet")) o->mode = EE_MODE_EENET;
    else if (!strcmp(o->mode_s, "jei")) o->mode = EE_MODE_JEI;
    else if (strcmp(o->mode_s, "cnn") && !o->sidenet)
        usage_error("train --mode: '%s' is not cnn, sdn, ic-only, sidenet, eenet or jei", o->mode_s);
    if (o->set_side && !o->sidenet) usage_error("train --at, --hidden, --pool: only with --mode sidenet");
    if (o->sidenet && o->ics) usage_error("train --ics: not with --mode sidenet (its one exit goes --at a node)");
    if ((o->mode == EE_MODE_IC_ONLY || o->mode == EE_MODE_JEI) && !o->from)
        usage_error("train --mode %s: needs --from TRAINED_CNN.eenn", o->mode_s);
    if (o->mode != EE_MODE_IC_ONLY && o->mode != EE_MODE_EENET && o->mode != EE_MODE_JEI && o->from)
        usage_error("train --from: only with --mode ic-only, eenet or jei");
    if ((o->mode == EE_MODE_CNN || o->mode == EE_MODE_EENET) && o->ics)
        usage_error("train --ics: only with --mode sdn, ic-only or jei");
    if (o->mode != EE_MODE_EENET && o->set_eenet)
        usage_error("train --exits, --distribution, --exit-type, --gate, --loss, --stage1-epochs: only with --mode eenet");
    if (o->mode != EE_MODE_EENET && o->mode != EE_MODE_JEI && o->set_lambda)
        usage_error("train --lambda: only with --mode eenet or jei");
    if (o->mode != EE_MODE_JEI && o->set_jei) usage_error("train --warmup-epochs, --phase-batches: only with --mode jei");
    if (o->mode == EE_MODE_JEI) {
        /* JEI-DNN's code: 10 epochs, batch 64, cosine annealing, lambda 0.7; its SGD 0.01 (the gates keep it) is
         * for linear heads on a ViT's normalised tokens: eenn's ICs on raw feature maps diverge under it with the
         * warm-up weights, so they train with eenn's IC-only optimiser, Adam 1e-3 (cosine to 2e-5) */
        if (!o->set_lambda) o->lambda = 0.7f;
        if (!o->set_optim) o->opt.kind = EE_OPTIM_ADAM;
        if (!o->set_lr) o->opt.lr = 1e-3f;
        if (!o->set_epochs) o->epochs = 10;
        if (!o->set_batch) o->batch = 64;
        o->sched.kind = EE_SCHED_COSINE;
        o->sched.min_lr = o->opt.lr * 0.02f;
        if (o->warmup >= o->epochs)
            usage_error("train --warmup-epochs %d: must be below --epochs %d (the gates need epochs)", o->warmup, o->epochs);
    }
    if (o->mode == EE_MODE_EENET) { /* the EENets code's recipe: Adam 1e-3, weight decay 1e-4 */
        if (!strcmp(o->loss_s, "v0")) o->loss = EE_EENET_V0;
        else if (!strcmp(o->loss_s, "v1")) o->loss = EE_EENET_V1;
        else if (!strcmp(o->loss_s, "v2")) o->loss = EE_EENET_V2;
        else if (!strcmp(o->loss_s, "two-stage")) o->loss = EE_EENET_V1;
        else if (!strcmp(o->loss_s, "v1+ce")) o->loss = EE_EENET_V1_CE;
        else if (!strcmp(o->loss_s, "v2+ce")) o->loss = EE_EENET_V2_CE;
        else if (!strcmp(o->loss_s, "v4")) o->loss = EE_EENET_V4;
        else if (!strcmp(o->loss_s, "v4+ce")) o->loss = EE_EENET_V4_CE;
        else usage_error("train --loss: '%s' is not v0, v1, v2, two-stage, v1+ce, v2+ce, v4 or v4+ce", o->loss_s);
        if (strcmp(o->loss_s, "two-stage") && !o->set_stage1) o->stage1 = 0; /* v0 first only when asked */
        if (o->stage1 > 0 && o->stage1 >= o->epochs) {
            usage_error("train --stage1-epochs %d: must be below --epochs %d (the second stage needs epochs)", o->stage1,
                        o->epochs);
        }
        if (!o->set_optim) o->opt.kind = EE_OPTIM_ADAM;
        if (!o->set_lr) o->opt.lr = 1e-3f;
        if (!o->milestones) o->milestones = "0.5,0.75";
    }
    if (!o->trig.size && (o->set_target || o->set_poison))
        usage_error("train --target and --poison: only with --trigger");
    if (o->mode == EE_MODE_IC_ONLY) { /* the reference's IC-only recipe: Adam 1e-3, 25 epochs, x0.1 at 15 */
        if (!o->set_optim) o->opt.kind = EE_OPTIM_ADAM;
        if (!o->set_lr) o->opt.lr = 1e-3f;
        if (!o->set_epochs) o->epochs = o->sidenet ? 10 : 25; /* a SideNet is one small head: 10 epochs */
        if (!o->milestones) o->milestones = "0.6";
    }
    if ((o->text_length || o->tokens) && !o->text)
        usage_error("train --text-length, --tokens: %s holds no text (train.tsv)", o->data);
    if ((o->text_length || o->tokens) && o->from)
        usage_error("train --text-length, --tokens: the network of --from fixes them");
    o->words = !o->tokens || !strcmp(o->tokens, "words");
    if (o->text && !o->text_length && !o->from) o->text_length = o->words ? 512 : EE_TEXT_LENGTH;
    if (o->text) { /* text: the byte-level text CNN, Adam 1e-3, 10 epochs, batch 64, no image augmentation */
        if (!o->set_arch && !o->arch_file) o->arch = "textcnn";
        if (o->set_augment && strcmp(o->augment, "none"))
            usage_error("train --augment %s: crops and flips are for images; %s holds text", o->augment, o->data);
        o->augment = "none";
        if (o->mode == EE_MODE_CNN || o->mode == EE_MODE_SDN) {
            if (!o->set_optim) o->opt.kind = EE_OPTIM_ADAM;
            if (!o->set_lr) o->opt.lr = 1e-3f;
            if (!o->set_epochs) o->epochs = 10;
        }
        if (!o->set_batch) o->batch = 64;
    }
    if (!o->milestones) o->milestones = "0.35,0.6,0.85";
    const char *aug = o->augment;
    if (!strcmp(aug, "crop+flip") || !strcmp(aug, "flip+crop")) o->aug = (ee_augment){4, 1};
    else if (!strcmp(aug, "flip")) o->aug = (ee_augment){0, 1};
    else if (!strcmp(aug, "crop")) o->aug = (ee_augment){4, 0};
    else if (!strcmp(aug, "none")) o->aug = (ee_augment){0, 0};
    else usage_error("train --augment: '%s' is not crop+flip, flip, crop or none", aug);
    if (!o->set_wd && (!strcmp(o->arch, "vgg16bn") || !strcmp(o->arch, "wrn32_4"))) o->opt.weight_decay = 5e-4f;
    if (o->opt.kind == EE_OPTIM_ADAM) o->opt.momentum = 0;
    if (o->opt.nesterov && o->opt.kind != EE_OPTIM_SGD) usage_error("train --nesterov: only with --optim sgd");
    /* milestones: fractions of the run */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", o->milestones);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        char *end;
        double f = strtod(t, &end);
        if (*end || !(f > 0 && f < 1) || o->sched.nmilestones == 8)
            usage_error("train --milestones: '%s' must be fractions in (0, 1)", o->milestones);
        int m = (int)(f * o->epochs + 0.5);
        if (m >= 1 && m < o->epochs) o->sched.milestones[o->sched.nmilestones++] = m;
    }
    o->sched.epochs = o->epochs;
    if (!o->ckpt) {
        snprintf(o->ckpt_buf, sizeof o->ckpt_buf, "%s.ckpt", o->out);
        o->ckpt = o->ckpt_buf;
    }
}

/* the network to train: a trained CNN (ic-only), a custom architecture or a built-in one, with ICs attached for
 * the SDN modes */
static ee_net *build_net(ee_ctx *ctx, train_opts *o, const ee_dataset *train) {
    ee_net *net = NULL;
    if (o->from) {
        load_model(ctx, o->from, &net);
        if (!o->set_wd && (!strcmp(ee_net_name(net), "vgg16bn") || !strcmp(ee_net_name(net), "wrn32_4")))
            o->opt.weight_decay = 5e-4f;
    } else if (o->arch_file) {
        char *text = read_text(o->arch_file);
        check(ee_net_from_text(ctx, text, o->arch_file, &net), ctx);
        free(text);
        check(ee_net_init(ctx, net), ctx);
    } else {
        check(ee_net_builtin(ctx, o->arch, train->c, train->h, train->w, train->classes, &net), ctx);
        check(ee_net_init(ctx, net), ctx);
    }
    if (o->mode == EE_MODE_EENET) {
        int nodes[EE_MAX_HEADS];
        check_from(ee_eenet_positions(ctx, net, o->exits, (ee_eenet_dist)o->dist, nodes), ctx, o->from);
        ee_net *ee = NULL;
        check_from(ee_eenet_attach(ctx, net, nodes, o->exits,
                                   (ee_eenet_exit)(o->exit_type | (o->unc_gate ? EE_EENET_UNCERTAINTY_GATE : 0)), &ee),
                   ctx, o->from);
        ee_net_free(net);
        return ee;
    }
    if (o->sidenet) {
        int at = o->at ? ee_net_find_node(net, o->at) : ee_sidenet_default_position(net);
        if (at < 0) {
            if (o->at) usage_error("train --at: no node named '%s' in %s (eenn info lists them)", o->at, o->from);
            die("%s: no block end for a SideNet found; give --at", o->from);
        }
        ee_net *side = NULL;
        check_from(ee_sidenet_attach(ctx, net, at, o->hidden, o->pool, &side), ctx, o->from);
        ee_node_info in;
        ee_net_node_info(net, at, &in);
        snprintf(o->at_buf, sizeof o->at_buf, "%s", in.name);
        fprintf(stderr, "SideNet after %s (%dx%dx%d): pooled to at most %dx%d, %d hidden units\n", in.name, in.c, in.h,
                in.w, o->pool, o->pool, o->hidden);
        ee_net_free(net);
        return side;
    }
    return o->mode == EE_MODE_CNN ? net : attach_ics(ctx, net, o->ics, o->from);
}

/* what the model file records of its data and training, for eval, calibrate and analyze */
static void record_meta(ee_ctx *ctx, ee_net *net, const train_opts *o, const ee_dataset *train) {
    char mean[64], stdv[64], nval[32];
    snprintf(mean, sizeof mean, "%g,%g,%g", train->mean[0], train->mean[1], train->mean[2]);
    snprintf(stdv, sizeof stdv, "%g,%g,%g", train->std[0], train->std[1], train->std[2]);
    snprintf(nval, sizeof nval, "%d", o->nval);
    check(ee_net_set_meta(ctx, net, "data.mean", mean), ctx);
    check(ee_net_set_meta(ctx, net, "data.std", stdv), ctx);
    check(ee_net_set_meta(ctx, net, "data.dir", o->data), ctx);
    check(ee_net_set_meta(ctx, net, "data.val", nval), ctx);
    check(ee_net_set_meta(ctx, net, "train.mode", o->mode_s), ctx);
    check(ee_net_set_meta(ctx, net, "train.augment", o->augment), ctx);
    if (o->text) { /* the labels of the text directory, in class order */
        char names[4096];
        check(ee_text_classes(ctx, o->data, names, sizeof names), ctx);
        check(ee_net_set_meta(ctx, net, "data.classes", names), ctx);
    }
    if (o->sidenet) {
        char b[96];
        check(ee_net_set_meta(ctx, net, "sidenet.at", o->at_buf), ctx);
        snprintf(b, sizeof b, "%d", o->hidden);
        check(ee_net_set_meta(ctx, net, "sidenet.hidden", b), ctx);
        snprintf(b, sizeof b, "%d", o->pool);
        check(ee_net_set_meta(ctx, net, "sidenet.pool", b), ctx);
    }
    if (o->mode == EE_MODE_JEI) {
        char b[96];
        snprintf(b, sizeof b, "%g", o->lambda);
        check(ee_net_set_meta(ctx, net, "jei.lambda", b), ctx);
        snprintf(b, sizeof b, "%d", o->warmup);
        check(ee_net_set_meta(ctx, net, "jei.warmup_epochs", b), ctx);
        snprintf(b, sizeof b, "%d", o->phase);
        check(ee_net_set_meta(ctx, net, "jei.phase_batches", b), ctx);
    }
    if (o->mode == EE_MODE_EENET) {
        char b[96];
        snprintf(b, sizeof b, "%g", o->lambda);
        check(ee_net_set_meta(ctx, net, "eenet.lambda", b), ctx);
        check(ee_net_set_meta(ctx, net, "eenet.loss", o->loss_s), ctx);
        check(ee_net_set_meta(ctx, net, "eenet.distribution", ee_eenet_dist_name(o->dist)), ctx);
        check(ee_net_set_meta(ctx, net, "eenet.exit_type", ee_eenet_exit_name(o->exit_type)), ctx);
        check(ee_net_set_meta(ctx, net, "eenet.gate", o->unc_gate ? "uncertainty" : "features"), ctx);
        /* the learned rule is the model's exit policy from the start: confidence above 0.5 */
        ee_exit_policy pol;
        ee_policy_shared(&pol, EE_SCORE_CONFIDENCE, ee_net_num_heads(net), 0.5f, 0);
        snprintf(pol.split, sizeof pol.split, "none");
        check(ee_net_set_policy(ctx, net, &pol), ctx);
    }
    if (o->trig.size) {
        char tb[96];
        snprintf(tb, sizeof tb, "%d@%d,%d", o->trig.size, o->trig.x, o->trig.y);
        check(ee_net_set_meta(ctx, net, "backdoor.trigger", tb), ctx);
        snprintf(tb, sizeof tb, "%d", o->trig.target);
        check(ee_net_set_meta(ctx, net, "backdoor.target", tb), ctx);
        snprintf(tb, sizeof tb, "%g", o->trig.rate);
        check(ee_net_set_meta(ctx, net, "backdoor.poison", tb), ctx);
    }
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    parse_train(argc, argv, &o);
    if (o.hier_cloud) /* the cloud side of hierarchical training: it gets its model from the edge */
        return hier_cloud(o.listen ? o.listen : "127.0.0.1:8081", o.threads, o.port_file);
    if (!o.hier && (o.split || o.cloud || o.link_mbit > 0 || o.listen))
        usage_error("train --split, --cloud, --link-mbit: only with --hierarchical (--listen: with --hierarchical-cloud)");
    if (o.hier) {
        if (!o.split) usage_error("train --hierarchical: give --split NODE (a node after an internal classifier)");
        if (o.resume) usage_error("train --hierarchical: --resume is not supported (the two sides checkpoint apart)");
        if (strcmp(o.mode_s, "sdn")) usage_error("train --hierarchical: trains an SDN (--mode sdn)");
    }
    {
        char tsv[4200];
        snprintf(tsv, sizeof tsv, "%s/train.tsv", o.data);
        FILE *f = fopen(tsv, "rb");
        if (f) { o.text = 1; fclose(f); }
    }
    resolve_recipe(&o);
    ee_parallel par;
    int ranks = mpi_start(&par), rank = par.rank;
    par.sync_bn = o.sync_bn;
    if (ranks > 1 && o.hier) usage_error("train --hierarchical runs on one process, not under mpirun");
    if (o.replicas > 1 && (ranks > 1 || o.hier))
        usage_error("train --replicas: one process only (not under mpirun, not with --hierarchical)");
    if (o.replicas != EE_REPLICAS_AUTO && o.replicas > o.batch) usage_error("train --replicas: %d replicas for a batch of %d", o.replicas, o.batch);
    if (ranks > 1 && o.batch < ranks)
        usage_error("train --batch: the global batch (%d) is smaller than the number of ranks (%d)", o.batch, ranks);
    if (ranks > 1 && o.threads == 0) { /* the machine's cores shared by the ranks the launcher put on it */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = (int)(cores / mpi_local_size());
        if (o.threads < 1) o.threads = 1;
    }
    ee_ctx *ctx = ee_ctx_new();
    if (!ctx) die("out of memory");
    ee_ctx_seed(ctx, (uint64_t)o.seed);
    ee_ctx_set_threads(ctx, o.threads);
    ee_dataset *train = NULL, *val = NULL, *test = NULL;
    if (o.text_length) ee_ctx_set_text_length(ctx, o.text_length);
    if (o.text && !o.from) ee_ctx_set_text_tokens(ctx, o.words ? EE_TOKENS_WORDS : EE_TOKENS_BYTES);
    if (o.text && o.from) { /* the network decides how many bytes of each example it reads */
        ee_net *m = NULL;
        load_model(ctx, o.from, &m);
        ee_net_free(m);
    }
    if (o.text && !o.set_val) { /* text corpora are small: a tenth of the training file for validation */
        load_data(ctx, o.data, &train, NULL, &test, 0, 0, o.test_subset);
        o.nval = train->n / 10;
        if (o.nval > 0) check(ee_dataset_split(ctx, train, o.nval, &val), ctx);
        if (o.subset > 0 && o.subset < train->n) train->n = o.subset;
    } else
        load_data(ctx, o.data, &train, &val, &test, o.nval, o.subset, o.test_subset);
    if (o.trig.size) {
        int poisoned = 0;
        check(ee_dataset_stamp(ctx, train, &o.trig, &poisoned), ctx);
        fprintf(stderr, "backdoor: a %dx%d trigger stamped into %d training images (%.1f%%), relabelled %d\n",
                o.trig.size, o.trig.size, poisoned, 100.0 * poisoned / train->n, o.trig.target);
    }
    { /* labels decide a built-in network's classes: say so when some of them have no training image */
        int seen[256] = {0}, empty = 0;
        for (int i = 0; i < train->n; i++) seen[train->labels[i]] = 1;
        for (int k = 0; k < train->classes && k < 256; k++) empty += !seen[k];
        if (empty)
            fprintf(stderr, "note: the labels run from 0 to %d, so the network has %d classes, but %d of them have no "
                    "training image\n", train->classes - 1, train->classes, empty);
    }
    ee_net *net = build_net(ctx, &o, train);
    record_meta(ctx, net, &o, train);
    if (o.replicas == EE_REPLICAS_AUTO)
        o.replicas = ranks > 1 || o.hier ? 1 : ee_train_auto_replicas(ctx, net, o.batch < train->n ? o.batch : train->n);
    o.sched.base_lr = o.opt.lr;
    ee_train_config cfg = {o.epochs, o.batch, o.opt, o.sched, o.aug, o.ckpt, o.resume, 0, o.mode, o.lambda, o.loss,
                           o.stage1, o.stop_after, o.lambda, o.warmup, o.phase, ranks > 1 ? &par : NULL,
                           o.replicas};
    progress_state ps = {isatty(2), o.json, now_s(), o.mode == EE_MODE_JEI ? "the JEI gates" : "confidence > 0.5"};
    if (!o.hier && rank == 0) { /* hierarchical training says what it trains where, once the split is checked */
        fprintf(stderr, "training %s (%zu parameters) on %s: %d train / %d val / %d test, %d epochs, batch %d, %d threads",
            ee_net_name(net), ee_net_num_params(net), o.data, train->n, val ? val->n : 0, test->n, o.epochs, o.batch,
            ee_ctx_threads(ctx));
        if (ranks > 1) fprintf(stderr, " x %d ranks%s", ranks, o.sync_bn ? ", sync-BN" : "");
        if (o.replicas > 1) {
            /* the first replicas take the cores left over: the last one has the fewest */
            const int most = ee_train_replica_threads(ctx, o.replicas, 0);
            const int least = ee_train_replica_threads(ctx, o.replicas, o.replicas - 1);
            if (most == least) fprintf(stderr, ": %d replicas x %d thread%s, sync-BN", o.replicas, most, most > 1 ? "s" : "");
            else fprintf(stderr, ": %d replicas x %d-%d threads, sync-BN", o.replicas, least, most);
        }
        fputc('\n', stderr);
    }
    hier_result hres = {0};
    if (o.hier) {
        hier_opts ho = {o.split, o.cloud, o.link_mbit, o.wire, o.cloud_threads, o.epochs, o.batch, o.opt, o.sched,
                        o.aug, &hres};
        hier_edge(ctx, net, &ho, train, test);
    } else
        check(ee_train(ctx, net, train, val, test, &cfg, on_progress, &ps), ctx);
    if (rank > 0) { /* rank 0 writes the model and reports */
        ee_net_free(net);
        ee_dataset_free(train); ee_dataset_free(val); ee_dataset_free(test);
        ee_ctx_free(ctx);
        mpi_finish();
        return 0;
    }
    record_meta(ctx, net, &o, train); /* this run's settings, not those of a checkpoint it resumed from */
    double secs = now_s() - ps.t0;
    if (o.stop_after > 0 && o.stop_after < o.epochs) {
        printf("stopped after epoch %d of %d: the checkpoint %s resumes from here (--resume)\n", o.stop_after, o.epochs,
               o.ckpt);
        ee_net_free(net);
        ee_dataset_free(train); ee_dataset_free(val); ee_dataset_free(test);
        ee_ctx_free(ctx);
        mpi_finish();
        return 0;
    }
    char eps[32];
    snprintf(eps, sizeof eps, "%d", o.epochs);
    check(ee_net_set_meta(ctx, net, "train.epochs_done", eps), ctx);
    check(ee_net_save(ctx, net, NULL, 0, o.out), ctx);
    ee_eval_result te, ve = {0};
    check(ee_evaluate(ctx, net, test, 256, &te), ctx);
    if (val) check(ee_evaluate(ctx, net, val, 256, &ve), ctx);
    /* every exit's test accuracy, for networks with more than one */
    int heads = ee_net_num_heads(net);
    double hacc[EE_MAX_HEADS] = {0};
    char accs[EE_MAX_HEADS * 12] = "";
    if (heads > 1) {
        ee_outputs *out = NULL;
        check(ee_collect_outputs(ctx, net, test, 256, 0, &out), ctx);
        ee_head_accuracy(out, hacc);
        ee_outputs_free(out);
        for (int h = 0, n = 0; h < heads; h++)
            n += snprintf(accs + n, sizeof accs - n, o.json ? "%s%.2f" : "%s%.2f", h ? (o.json ? "," : " ") : "", 100 * hacc[h]);
    }
    if (o.json) {
        printf("{\"arch\":\"%s\",\"params\":%zu,\"epochs\":%d,\"batch\":%d,\"train_seconds\":%.1f,\"test_acc\":%.4f,"
               "\"test_loss\":%.4f,\"val_acc\":%.4f,\"model\":\"%s\"",
               js(ee_net_name(net)), ee_net_num_params(net), o.epochs, o.batch, secs, te.acc * 100, te.loss,
               val ? ve.acc * 100 : -1.0, js(o.out));
        if (heads > 1) printf(",\"test_exit_acc\":[%s]", accs);
        if (ranks > 1)
            printf(",\"parallel\":{\"ranks\":%d,\"threads_per_rank\":%d,\"sync_bn\":%s,\"allreduces\":%ld,"
                   "\"allreduce_ms\":%.3f}", ranks, ee_ctx_threads(ctx), o.sync_bn ? "true" : "false", par.comm_calls,
                   par.comm_calls ? 1e3 * par.comm_s / par.comm_calls : 0.0);
        printf(",\"replicas\":%d", o.replicas);
        if (o.hier)
            printf(",\"hierarchical\":{\"split\":\"%s\",\"link_mbit\":%g,\"wall_s\":%.1f,\"edge_s\":%.1f,\"cloud_s\":%.1f,"
                   "\"link_s\":%.1f,\"mb_sent\":%.1f,\"edge_waited_s\":%.1f,\"split_training_estimate_s\":%.1f}",
                   js(o.split), o.link_mbit, hres.wall_s, hres.edge_s, hres.cloud_s, hres.link_s, hres.bytes / 1e6,
                   hres.wait_s, hres.serial_s);
        printf("}\n");
    } else {
        if (heads > 1) printf("test accuracy per exit: %s\n", accs);
        char vtxt[48] = "";
        if (val) snprintf(vtxt, sizeof vtxt, ", validation %.2f%%", ve.acc * 100);
        printf("%s: test accuracy %.2f%% (loss %.4f)%s after %d epochs in %.0f s; model written to %s\n",
               ee_net_name(net), te.acc * 100, te.loss, vtxt, o.epochs, secs, o.out);
    }
    ee_net_free(net);
    ee_dataset_free(train); ee_dataset_free(val); ee_dataset_free(test);
    ee_ctx_free(ctx);
    mpi_finish();
    return 0;
}
