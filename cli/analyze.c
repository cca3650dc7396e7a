/* analyze.c: `eenn analyze`, the SDN paper's diagnosis of overthinking (sdn.md sections 5-7): wasteful and
 * destructive effects, the confusion metric against the max-softmax baseline, the accuracy-cost curve, per-class
 * exits and, for a backdoored model, how the trigger induces destructive overthinking. `eenn report` (report.c)
 * draws the same measurements. */
#include "analysis.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const fmnist_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *const cifar10_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                              "dog", "frog", "horse", "ship", "truck"};

const char *class_name(const analysis *an, int k, char *buf, size_t n) {
    const char *d = an->data ? an->data : "";
    if (an->classes == 10 && strstr(d, "fashion")) return fmnist_names[k];
    if (an->classes == 10 && (strstr(d, "cifar-10") || strstr(d, "cifar10"))) return cifar10_names[k];
    snprintf(buf, n, "class %d", k);
    return buf;
}

static ee_dataset *copy_dataset(const ee_dataset *ds) {
    ee_dataset *c = malloc(sizeof *c);
    if (!c) die("out of memory");
    *c = *ds;
    size_t px = (size_t)ds->n * ds->c * ds->h * ds->w;
    c->pixels = malloc(px ? px : 1);
    c->labels = malloc(ds->n ? ds->n : 1);
    if (!c->pixels || !c->labels) die("out of memory");
    memcpy(c->pixels, ds->pixels, px);
    memcpy(c->labels, ds->labels, ds->n);
    return c;
}

static void step(const char *what) { fprintf(stderr, "analyze: %s\n", what); fflush(stderr); }

/* outputs, overthinking, exits at q and the confusion scores of one split */
static void analyse_split(analysis *an, split_result *r, ee_dataset *ds) {
    ee_ctx *ctx = an->ctx;
    int H = an->heads;
    r->ds = ds;
    check(ee_collect_outputs(ctx, an->net, ds, 256, 1, &r->o), ctx);
    ee_head_accuracy(r->o, r->acc);
    ee_overthinking(r->o, an->cost, &r->ot);
    check(ee_policy_simulate(ctx, r->o, an->cost, &an->policy, &r->at_q), ctx);
    r->exit_of = malloc(ds->n);
    r->pred_of = malloc(ds->n);
    r->confusion = malloc((size_t)ds->n * sizeof(float));
    float *soft = malloc((size_t)ds->n * sizeof(float));
    if (!r->exit_of || !r->pred_of || !r->confusion || !soft) die("out of memory");
    check(ee_policy_assign(ctx, r->o, &an->policy, r->exit_of, r->pred_of), ctx);
    check(ee_confusion_scores(ctx, r->o, r->confusion), ctx);
    for (int i = 0; i < ds->n; i++) {
        r->confusion[i] = (float)((r->confusion[i] - an->mu) / an->sigma);
        soft[i] = r->o->conf[(size_t)i * H + H - 1];
    }
    ee_score_stats_of(r->o, r->confusion, 1, &r->conf_stats);
    ee_score_stats_of(r->o, soft, -1, &r->soft_stats);
    free(soft);
}

static int by_cost(const void *a, const void *b) {
    const ee_exit_stats *x = a, *y = b;
    return (x->cost > y->cost) - (x->cost < y->cost);
}

void run_analysis(const analysis_opts *opt, analysis *an) {
    memset(an, 0, sizeof *an);
    double t0 = now_s();
    an->model = opt->model;
    an->ctx = ee_ctx_new();
    if (!an->ctx) die("out of memory");
    ee_ctx *ctx = an->ctx;
    ee_ctx_set_threads(ctx, opt->threads);
    load_model(ctx, opt->model, &an->net);
    ee_net *net = an->net;
    an->heads = ee_net_num_heads(net);
    an->classes = ee_net_classes(net);
    if (an->heads < 2) die("%s: has no internal classifiers to analyse (train it with --mode ic-only or sdn)", opt->model);
    an->data = opt->data ? opt->data : ee_net_meta(net, "data.dir") ? ee_net_meta(net, "data.dir") : DEFAULT_DATA;
    ee_net_head_costs(net, an->cost, NULL);
    ee_nominal_costs(an->heads, an->nominal);
    ee_dataset *train = NULL, *val = NULL, *test = NULL;
    int nval = ee_net_meta(net, "data.val") ? atoi(ee_net_meta(net, "data.val")) : 0;
    load_data(ctx, an->data, &train, nval > 0 ? &val : NULL, &test, nval, 0, opt->test_subset);
    apply_norm(net, train);
    apply_norm(net, test);
    if (val) apply_norm(net, val);

    /* the exit policy: a threshold given, the model's, or calibrated now like `eenn calibrate --max-drop 1%` */
    if (!model_policy(ctx, net, opt->q, &an->policy)) {
        if (!val) die("%s: not calibrated and trained without a validation split; give --q", opt->model);
        step("no exit policy in the model: calibrating one threshold on the validation split (at most 1% drop)");
        ee_outputs *vo = NULL;
        ee_exit_stats best;
        check(ee_collect_outputs(ctx, net, val, 256, 0, &vo), ctx);
        ee_calibration c = {EE_SCORE_MAXPROB, EE_TARGET_DROP, 0.01, 0, 0, 0, "validation"};
        check(ee_calibrate_policy(ctx, vo, an->cost, &c, &an->policy, &best), ctx);
        an->q_calibrated_here = 1;
        ee_outputs_free(vo);
    }
    an->q = an->policy.threshold[0];
    an->fallback = an->policy.fallback;
    ee_outputs *vo = NULL;
    if (val) {
        step("outputs on the validation split (conformal sets, exit methods)");
        check(ee_collect_outputs(ctx, net, val, 256, 0, &vo), ctx);
    }

    /* z-normalisation of the confusion metric: mean and population std on the un-augmented training images */
    if (opt->train_subset > 0 && opt->train_subset < train->n) train->n = opt->train_subset;
    char msg[160];
    snprintf(msg, sizeof msg, "confusion statistics on %d un-augmented training images", train->n);
    step(msg);
    ee_outputs *to = NULL;
    check(ee_collect_outputs(ctx, net, train, 256, 1, &to), ctx);
    float *ts = malloc((size_t)train->n * sizeof(float));
    if (!ts) die("out of memory");
    check(ee_confusion_scores(ctx, to, ts), ctx);
    double s = 0, s2 = 0;
    for (int i = 0; i < train->n; i++) { s += ts[i]; s2 += (double)ts[i] * ts[i]; }
    an->mu = s / train->n;
    an->sigma = sqrt(fmax(s2 / train->n - an->mu * an->mu, 1e-12));
    an->train_n = train->n;
    free(ts);
    ee_outputs_free(to);
    ee_dataset_free(train);
    ee_dataset_free(val);

    snprintf(msg, sizeof msg, "every exit on %d test images", test->n);
    step(msg);
    analyse_split(an, &an->clean, test);
    an->ece = an->conf_cov = an->conf_size = -1;
    check(ee_policy_ece(ctx, an->clean.o, &an->policy, 15, &an->ece), ctx);
    for (int h = 0; h < an->heads; h++)
        check(ee_head_reliability(ctx, an->clean.o, h, 15, &an->head_ece[h], an->rel_conf[h], an->rel_acc[h]), ctx);
    if (vo) {
        float qhat[EE_MAX_HEADS];
        check(ee_conformal_fit(ctx, vo, &an->policy, 0.05, qhat), ctx);
        check(ee_conformal_eval(ctx, an->clean.o, &an->policy, qhat, &an->conf_cov, &an->conf_size), ctx);
    }
    if (vo && opt->method_curves) { /* every method without temperatures, calibrated for each budget on validation, run on test */
        static const double budgets[] = {0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
        step("exit methods: calibrating each for 12 cost budgets");
        an->nbudgets = 12;
        for (int m = 0; m < n_exit_methods && an->ncurves < EE_MAX_HEADS; m++) {
            if (exit_methods[m].temperature || exit_methods[m].kind == EE_SCORE_GATE ||
                (exit_methods[m].kind == EE_SCORE_CONFIDENCE && !vo->gate))
                continue;
            for (int b = 0; b < an->nbudgets; b++) {
                ee_exit_policy p;
                check(exit_methods[m].calibrate(ctx, &exit_methods[m], vo, an->cost, EE_TARGET_BUDGET, budgets[b], &p,
                                                NULL), ctx);
                check(ee_policy_simulate(ctx, an->clean.o, an->cost, &p, &an->method_curve[an->ncurves][b]), ctx);
            }
            an->curve_method[an->ncurves++] = m;
        }
    }
    ee_outputs_free(vo);
    if (opt->method_curves) { /* risk control: 50 random halves of the test images */
        step("risk control: 50 random calibration/test halves of the test images");
        static const double eps[] = {0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1};
        risk_split_stats res[7 * 4];
        risk_splits(ctx, an->clean.o, an->cost, EE_SCORE_MAXPROB, EE_RISK_GAP, 0.1, eps, 7, 50, res);
        an->nrc = 7;
        for (int e = 0; e < an->nrc; e++)
            for (int m = 0; m < 4; m++) {
                an->rc_eps[e] = eps[e];
                an->rc_risk[m][e] = res[e * 4 + m].risk;
                an->rc_cost[m][e] = res[e * 4 + m].cost;
            }
    }

    /* the accuracy-cost curve: a uniform grid of q, a fine one near 1, and q > 1 (no early exit) */
    for (int i = 0; i <= 100 && an->ncurve < CURVE_MAX; i++)
        ee_exit_simulate(an->clean.o, an->cost, i / 100.0f, an->fallback, &an->curve[an->ncurve++]);
    static const float fine[] = {0.995f, 0.998f, 0.999f, 0.9995f, 0.9999f, 0.99999f, 1.01f};
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++)
        ee_exit_simulate(an->clean.o, an->cost, fine[i], an->fallback, &an->curve[an->ncurve++]);
    qsort(an->curve, an->ncurve, sizeof *an->curve, by_cost);

    /* backdoor: the model's trigger (or the one given) stamped into every test image, true labels kept */
    const char *tr = opt->trigger ? opt->trigger : ee_net_meta(net, "backdoor.trigger");
    if (tr && strcmp(tr, "none")) {
        an->has_trigger = 1;
        parse_trigger("analyze", tr, &an->trig);
        const char *tg = ee_net_meta(net, "backdoor.target");
        an->trig.target = opt->target >= 0 ? opt->target : tg ? atoi(tg) : 0;
        if (an->trig.target >= an->classes) die("analyze --target: class %d of %d", an->trig.target, an->classes);
        ee_trigger stamp = an->trig;
        stamp.target = -1;
        stamp.rate = 1;
        ee_dataset *td = copy_dataset(test);
        int cnt;
        check(ee_dataset_stamp(ctx, td, &stamp, &cnt), ctx);
        snprintf(msg, sizeof msg, "every exit on the %d test images with the %dx%d trigger", td->n, stamp.size, stamp.size);
        step(msg);
        analyse_split(an, &an->trig_res, td);
        const ee_outputs *o = an->trig_res.o;
        int hits[EE_MAX_HEADS] = {0}, hit_q = 0;
        for (int i = 0; i < o->n; i++) {
            if (o->label[i] == an->trig.target) continue;
            an->nontarget++;
            for (int h = 0; h < an->heads; h++) hits[h] += o->pred[(size_t)i * an->heads + h] == an->trig.target;
            hit_q += an->trig_res.pred_of[i] == an->trig.target;
        }
        for (int h = 0; h < an->heads; h++) an->attack[h] = an->nontarget ? (double)hits[h] / an->nontarget : 0;
        an->attack_at_q = an->nontarget ? (double)hit_q / an->nontarget : 0;
    }
    an->seconds = now_s() - t0;
}

static void free_split(split_result *r) {
    ee_outputs_free(r->o);
    ee_dataset_free(r->ds);
    free(r->exit_of);
    free(r->pred_of);
    free(r->confusion);
}

void free_analysis(analysis *an) {
    free_split(&an->clean);
    if (an->has_trigger) free_split(&an->trig_res);
    ee_net_free(an->net);
    ee_ctx_free(an->ctx);
}

/* ---------------------------------------------------------------- text and JSON */
static void print_split_text(const analysis *an, const split_result *r, const char *title) {
    int H = an->heads, n = r->o->n;
    const ee_overthink *ot = &r->ot;
    char nm[32];
    printf("\n%s: %d images\n", title, n);
    printf("  %-6s %7s %8s %9s %9s %9s %9s %11s %19s\n", "exit", "cost", "nominal", "accuracy", "right", "cum.right",
           "first", "rescues", "conf rescued/right");
    for (int h = 0; h < H; h++) {
        printf("  %-6s %6.1f%% %7.0f%% %8.2f%% %9d %9d %9d", head_name(an->net, h, nm, sizeof nm), an->cost[h] * 100,
               an->nominal[h] * 100, r->acc[h] * 100, ot->correct[h], ot->cum_correct[h], ot->first_correct[h]);
        if (h < H - 1) printf(" %11d %9.3f / %.3f\n", ot->destructive[h], ot->conf_destructive[h], ot->conf_correct[h]);
        else printf(" %11s %19s\n", "-", "-");
    }
    printf("  (right: images the exit gets right; cum.right: right at this exit or an earlier one; first: right here\n"
           "   for the first time; rescues: the final output's errors that this IC gets right)\n");
    printf("  wasteful effect: %d of %d images (%.1f%%) are already right at some IC; %.1f%% are right at the final output only\n",
           ot->wasteful, n, 100.0 * ot->wasteful / n, 100.0 * ot->first_correct[H - 1] / n);
    printf("  oracle (exit at the first IC that is right): %.1f%% of the CNN's cost with the nominal costs, %.1f%% in FLOPs\n",
           ot->oracle_cost_nominal * 100, ot->oracle_cost * 100);
    printf("  destructive effect: %d of the final output's %d errors (%.1f%%) are right at some IC\n", ot->destructive_any,
           ot->end_wrong, ot->destructive_frac * 100);
    char d[512];
    printf("  early exits (%s): accuracy %.2f%% (final %.2f%%), cost %.1f%% of the CNN\n",
           describe_policy(&an->policy, d, sizeof d), r->at_q.acc * 100, r->acc[H - 1] * 100, r->at_q.cost * 100);
    if (r == &an->clean && an->ece >= 0)
        printf("  their calibration error (15 bins) %.2f%%%s", an->ece * 100, an->conf_cov >= 0 ? "" : "\n");
    if (r == &an->clean && an->conf_cov >= 0)
        printf("; conformal sets at 95%% (per exit, fitted on validation): coverage %.2f%%, mean size %.2f\n",
               an->conf_cov * 100, an->conf_size);
    if (r == &an->clean) {
        printf("  each exit's own calibration error (max softmax, 15 bins):");
        for (int h = 0; h < H; h++) printf(" %.2f%%", an->head_ece[h] * 100);
        printf("\n");
    }
}

static void print_scores_text(const split_result *r) {
    const ee_score_stats *c = &r->conf_stats, *b = &r->soft_stats;
    printf("  %-26s %14s %14s %7s %26s\n", "error detector", "mean right", "mean wrong", "AUROC", "reference counts");
    printf("  %-26s %6.2f +- %-5.2f %6.2f +- %-5.2f %7.3f   %4d right above, %4d wrong below\n", "confusion (z-score)",
           c->mean_right, c->std_right, c->mean_wrong, c->std_wrong, c->auroc, c->right_flagged, c->wrong_missed);
    printf("  %-26s %6.3f +- %-5.3f %6.3f +- %-5.3f %7.3f   %4d right below, %4d wrong above\n", "final max softmax",
           b->mean_right, b->std_right, b->mean_wrong, b->std_wrong, b->auroc, b->right_flagged, b->wrong_missed);
    printf("  (AUROC: the chance that a random error scores as more suspect than a random right answer; %d right, %d wrong)\n",
           c->n_right, c->n_wrong);
}

static void json_split(const analysis *an, const split_result *r) {
    int H = an->heads;
    const ee_overthink *ot = &r->ot;
    printf("{\"n\":%d,\"exits\":[", r->o->n);
    for (int h = 0; h < H; h++) {
        char nm[32];
        printf("%s{\"exit\":\"%s\",\"cost\":%.5f,\"nominal_cost\":%.2f,\"acc\":%.4f,\"right\":%d,\"cum_right\":%d,"
               "\"first_right\":%d,\"oracle_exits\":%d", h ? "," : "", head_name(an->net, h, nm, sizeof nm), an->cost[h],
               an->nominal[h], r->acc[h] * 100, ot->correct[h], ot->cum_correct[h], ot->first_correct[h], ot->oracle_exits[h]);
        if (h < H - 1)
            printf(",\"rescues\":%d,\"conf_rescued\":%.4f,\"conf_right\":%.4f", ot->destructive[h], ot->conf_destructive[h],
                   ot->conf_correct[h]);
        printf("}");
    }
    printf("],\"wasteful\":%d,\"wasteful_frac\":%.5f,\"oracle_cost_nominal\":%.5f,\"oracle_cost\":%.5f,", ot->wasteful,
           (double)ot->wasteful / r->o->n, ot->oracle_cost_nominal, ot->oracle_cost);
    printf("\"final_errors\":%d,\"destructive\":%d,\"destructive_frac\":%.5f,", ot->end_wrong, ot->destructive_any,
           ot->destructive_frac);
    printf("\"early_exit\":{\"q\":%.5f,\"acc\":%.4f,\"cost\":%.5f,\"exits\":[", an->q, r->at_q.acc * 100, r->at_q.cost);
    for (int h = 0; h < H; h++) printf("%s%d", h ? "," : "", r->at_q.exits[h]);
    printf("]},");
    if (r == &an->clean)
        printf("\"ece\":%.5f,\"conformal\":{\"alpha\":0.05,\"coverage\":%.5f,\"mean_set_size\":%.4f},", an->ece,
               an->conf_cov, an->conf_size);
    if (r == &an->clean) {
        printf("\"head_ece\":[");
        for (int h = 0; h < H; h++) printf("%s%.5f", h ? "," : "", an->head_ece[h]);
        printf("],");
    }
    const ee_score_stats *sc[2] = {&r->conf_stats, &r->soft_stats};
    const char *nmz[2] = {"confusion", "max_softmax"};
    for (int k = 0; k < 2; k++)
        printf("\"%s\":{\"mean_right\":%.5f,\"std_right\":%.5f,\"mean_wrong\":%.5f,\"std_wrong\":%.5f,\"auroc\":%.5f,"
               "\"right_flagged\":%d,\"wrong_missed\":%d}%s", nmz[k], sc[k]->mean_right, sc[k]->std_right, sc[k]->mean_wrong,
               sc[k]->std_wrong, sc[k]->auroc, sc[k]->right_flagged, sc[k]->wrong_missed, k ? "" : ",");
    printf(",\"per_class_exits\":[");
    for (int k = 0; k < an->classes; k++) {
        int cnt[EE_MAX_HEADS] = {0};
        for (int i = 0; i < r->o->n; i++)
            if (r->o->label[i] == k) cnt[r->exit_of[i]]++;
        printf("%s[", k ? "," : "");
        for (int h = 0; h < H; h++) printf("%s%d", h ? "," : "", cnt[h]);
        printf("]");
    }
    printf("]}");
}

static const char *analyze_help =
    "usage: eenn analyze MODEL [DATA] [options]\n"
    "Overthinking in an SDN (the diagnosis of Kaya et al., ICML 2019), on the test split:\n"
    "  - wasteful effect: per exit the images it gets right, cumulatively right and right for the first time,\n"
    "    and the oracle cost (exit at the first IC that is right), with nominal costs and with real FLOPs;\n"
    "  - destructive effect: the final output's errors that some IC gets right, per IC and in total;\n"
    "  - the confusion metric (disagreement between the ICs and the final output, z-normalised on the\n"
    "    un-augmented training images) against the final max softmax, as detectors of the final's errors;\n"
    "  - the accuracy-cost curve over thresholds, and per-class exits at the threshold;\n"
    "  - for a backdoored model (trained with --trigger), the same on triggered test images.\n"
    "  DATA, --data DIR   dataset directory (default: the one the model was trained on)\n"
    "  --q X              threshold (default: the calibrated one; else calibrated on the validation split)\n"
    "  --trigger SIZE[@X,Y]  stamp this trigger into the test images (default: the model's; 'none': skip)\n"
    "  --target C         the backdoor's target class (default: the model's)\n"
    "  --train-subset N   training images for the confusion normalisation (default: all)\n"
    "  --test-subset N    the first N test images only (default: all)\n"
    "  --threads N  --json\n";

int parse_analysis_opt(const cli_args *a, int id, analysis_opts *o) {
    switch (id) {
    case O_AN_DATA: o->data = optarg; return 1;
    case O_AN_Q: o->q = cli_num(a, 0, 2); return 1;
    case O_AN_TRIGGER: {
        o->trigger = optarg;
        ee_trigger t;
        if (strcmp(o->trigger, "none")) parse_trigger(a->cmd, o->trigger, &t); /* fail before any work */
        return 1;
    }
    case O_AN_TARGET: o->target = (int)cli_int(a, 0, 255); return 1;
    case O_AN_TRAIN_SUBSET: o->train_subset = (int)cli_int(a, 1, 100000000); return 1;
    case O_AN_TEST_SUBSET: o->test_subset = (int)cli_int(a, 1, 100000000); return 1;
    case O_AN_THREADS: o->threads = (int)cli_int(a, 0, 256); return 1;
    }
    return 0;
}

void analysis_positional(const cli_args *a, analysis_opts *o) {
    int n = cli_npos(a);
    char **pos = cli_pos(a);
    if (n < 1) usage_error("%s: no model file given (see eenn %s --help)", a->cmd, a->cmd);
    if (n > 2) usage_error("%s: unexpected argument '%s'", a->cmd, pos[2]);
    o->model = pos[0];
    if (n == 2) {
        if (o->data) usage_error("%s: the data directory is given twice ('%s' and --data)", a->cmd, pos[1]);
        o->data = pos[1];
    }
}

enum { O_JSON = O_AN_END };
static const struct option analyze_opts[] = {ANALYSIS_OPTIONS, {"json", no_argument, NULL, O_JSON},
                                             {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_analyze(int argc, char **argv) {
    analysis_opts opt = {NULL, NULL, -1, 0, 0, NULL, -1, 0, 0};
    int json = 0;
    cli_args a = {"analyze", analyze_help, analyze_opts, NULL, argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;)
        if (c == O_JSON) json = 1;
        else parse_analysis_opt(&a, c, &opt);
    analysis_positional(&a, &opt);
    analysis an;
    run_analysis(&opt, &an);
    int H = an.heads;
    if (json) {
        printf("{\"model\":\"%s\",\"arch\":\"%s\",\"data\":\"%s\",\"q\":%.5f,\"q_source\":\"%s\",\"confusion_mu\":%.6f,"
               "\"confusion_sigma\":%.6f,\"confusion_train_n\":%d,\"seconds\":%.1f,\"test\":",
               js(an.model), js(ee_net_name(an.net)), js(an.data), an.q, an.q_calibrated_here ? "calibrated now" : opt.q >= 0 ? "given" : "model",
               an.mu, an.sigma, an.train_n, an.seconds);
        json_split(&an, &an.clean);
        printf(",\"curve\":[");
        for (int i = 0; i < an.ncurve; i++)
            printf("%s{\"q\":%.5f,\"acc\":%.4f,\"cost\":%.5f}", i ? "," : "", an.curve[i].q, an.curve[i].acc * 100, an.curve[i].cost);
        printf("]");
        if (an.has_trigger) {
            printf(",\"backdoor\":{\"trigger\":\"%d@%d,%d\",\"target\":%d,\"nontarget_n\":%d,\"attack_success\":[", an.trig.size,
                   an.trig.x, an.trig.y, an.trig.target, an.nontarget);
            for (int h = 0; h < H; h++) printf("%s%.4f", h ? "," : "", an.attack[h] * 100);
            printf("],\"attack_success_early_exit\":%.4f,\"triggered\":", an.attack_at_q * 100);
            json_split(&an, &an.trig_res);
            printf("}");
        }
        printf("}\n");
    } else {
        char d[512];
        printf("%s (%s, %d exits) on %s; exit policy: %s (%s)\n", an.model, ee_net_name(an.net), H, an.data,
               describe_policy(&an.policy, d, sizeof d),
               an.q_calibrated_here ? "calibrated now on the validation split, at most 1% drop" : opt.q >= 0 ? "given"
               : an.policy.kind == EE_SCORE_CONFIDENCE && !strcmp(an.policy.split, "none") ? "learned in training"
                                                                                              : "calibrated");
        if (an.clean.o->gate)
            printf("(the exits are gates: each has a learned confidence branch that decides, and a softmax branch that "
                   "answers; overthinking below\n is measured on the softmax branches, as for any exit, and the curve "
                   "over q applies the max-softmax rule to them)\n");
        print_split_text(&an, &an.clean, "clean test images");
        printf("\nconfusion metric: sum over exits of the L1 distance between each exit's softmax and the final's,\n"
               "z-normalised with mean %.4f and std %.4f of %d un-augmented training images\n", an.mu, an.sigma, an.train_n);
        print_scores_text(&an.clean);
        printf("\naccuracy against average cost (one max-softmax threshold q from 0 to 1):\n  %8s %9s %8s\n", "q",
               "accuracy", "cost");
        double last = -1;
        for (int i = 0; i < an.ncurve; i++) {
            if (an.curve[i].cost - last < 0.04 && i != an.ncurve - 1) continue;
            last = an.curve[i].cost;
            printf("  %8.5g %8.2f%% %7.1f%%\n", an.curve[i].q, an.curve[i].acc * 100, an.curve[i].cost * 100);
        }
        printf("\nper-class exits under the exit policy (%% of the class's test images):\n  %-12s", "class");
        char nm[32];
        for (int h = 0; h < H; h++) printf(" %6s", head_name(an.net, h, nm, sizeof nm));
        printf("\n");
        for (int k = 0; k < an.classes && k < 200; k++) {
            int cnt[EE_MAX_HEADS] = {0}, tot = 0;
            for (int i = 0; i < an.clean.o->n; i++)
                if (an.clean.o->label[i] == k) { cnt[an.clean.exit_of[i]]++; tot++; }
            printf("  %-12.12s", class_name(&an, k, nm, sizeof nm));
            for (int h = 0; h < H; h++) printf(" %5.1f%%", tot ? 100.0 * cnt[h] / tot : 0);
            printf("\n");
        }
        if (an.has_trigger) {
            const split_result *t = &an.trig_res;
            print_split_text(&an, t, "backdoor: test images with the trigger (true labels kept)");
            printf("  attack success (non-target images classified as the target %d), per exit:", an.trig.target);
            for (int h = 0; h < H; h++) printf(" %.1f%%", an.attack[h] * 100);
            printf("\n  true-class accuracy on triggered images: final %.2f%%, early exits %.2f%% (clean final %.2f%%);\n"
                   "  early exits recover %.1f%% of the accuracy the trigger took\n",
                   t->acc[H - 1] * 100, t->at_q.acc * 100, an.clean.acc[H - 1] * 100,
                   an.clean.acc[H - 1] > t->acc[H - 1]
                       ? 100 * (t->at_q.acc - t->acc[H - 1]) / (an.clean.acc[H - 1] - t->acc[H - 1]) : 0.0);
        }
    }
    free_analysis(&an);
    return 0;
}
