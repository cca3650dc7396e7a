/* calibrate.c: `eenn calibrate`: the exit policy of a model with internal classifiers (its score kind, its
 * thresholds, shared or one per exit, and temperatures), searched on the held-out validation split for an
 * accuracy drop or a cost budget, and stored in the model file. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *calibrate_help =
    "usage: eenn calibrate MODEL [--max-drop X | --budget X] [options]\n"
    "Picks the exit policy of a model with internal classifiers on the held-out validation split (the last images\n"
    "of the training set that training kept out) and stores it in the model file (rewritten atomically).\n"
    "  --max-drop X   the lowest average cost whose accuracy is within X of the final classifier's: '1%' or a\n"
    "                 fraction such as 0.01 (default 1%)\n"
    "  --budget X     instead: the most accurate policy whose average cost is at most X of the CNN's ('40%')\n"
    "  --kind K       the confidence score: maxprob (default; SDN), entropy (BranchyNet), margin, or confidence\n"
    "                 (the learned confidence branch of EENet exits: thresholds on it instead of the trained 0.5)\n"
    "  --per-exit     one threshold per exit, searched jointly (default: one shared threshold)\n"
    "  --temperature  fit a temperature per exit first (NLL on the validation split), score scaled logits\n"
    "  --risk EPS     instead: a threshold with a guarantee (risk control, Jazbec et al. 2024): the risk against\n"
    "                 the final classifier at most EPS ('1%'), by --method naive, crc (in expectation), ucb or ltt\n"
    "                 (with probability 1 - --delta, default 0.1); --label-free: the consistency risk (the early\n"
    "                 answer differs from the final one) instead of the gap risk (final right, early wrong), so\n"
    "                 unlabelled data will do. One threshold shared by every exit.\n"
    "  --fallback     when no IC is confident, answer with the most confident output (the SDN reference)\n"
    "                 instead of the final one\n"
    "  --val N        validation images (default: the number the model was trained with)\n"
    "  --data DIR  --threads N  --json\n";

enum {
    O_MAX_DROP = 256, O_BUDGET, O_KIND, O_PER_EXIT, O_TEMPERATURE, O_FALLBACK, O_VAL, O_DATA, O_THREADS, O_JSON, O_RISK,
    O_DELTA, O_METHOD, O_LABEL_FREE
};
static const struct option calibrate_opts[] = {
    {"max-drop", required_argument, NULL, O_MAX_DROP}, {"budget", required_argument, NULL, O_BUDGET},
    {"kind", required_argument, NULL, O_KIND}, {"per-exit", no_argument, NULL, O_PER_EXIT},
    {"temperature", no_argument, NULL, O_TEMPERATURE}, {"fallback", no_argument, NULL, O_FALLBACK},
    {"val", required_argument, NULL, O_VAL}, {"data", required_argument, NULL, O_DATA},
    {"threads", required_argument, NULL, O_THREADS}, {"json", no_argument, NULL, O_JSON},
    {"risk", required_argument, NULL, O_RISK}, {"delta", required_argument, NULL, O_DELTA},
    {"method", required_argument, NULL, O_METHOD}, {"label-free", no_argument, NULL, O_LABEL_FREE},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_calibrate(int argc, char **argv) {
    const char *data = NULL;
    ee_calibration c = {EE_SCORE_MAXPROB, EE_TARGET_DROP, 0.01, 0, 0, 0, "validation"};
    int nval = -1, json = 0, threads = 0, set_drop = 0, set_budget = 0, set_rc = 0;
    ee_risk_calibration rc = {EE_SCORE_MAXPROB, EE_RISK_GAP, EE_RC_CRC, 0, 0.1, 0};
    cli_args a = {"calibrate", calibrate_help, calibrate_opts, NULL, argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        switch (o) {
        case O_MAX_DROP: c.value = parse_fraction("calibrate", "--max-drop", optarg, 1); set_drop = 1; break;
        case O_BUDGET:
            c.target = EE_TARGET_BUDGET;
            c.value = parse_fraction("calibrate", "--budget", optarg, 1);
            if (c.value <= 0) usage_error("calibrate --budget: '%s' must be above 0", optarg);
            set_budget = 1;
            break;
        case O_KIND:
            if ((c.kind = ee_score_find(optarg)) < 0)
                usage_error("calibrate --kind: '%s' is not maxprob, entropy, margin or confidence", optarg);
            if (c.kind == EE_SCORE_GATE)
                usage_error("calibrate --kind gate: learned gates decide by themselves; eenn policy fits them");
            break;
        case O_PER_EXIT: c.per_exit = 1; break;
        case O_TEMPERATURE: c.fit_temperature = 1; break;
        case O_FALLBACK: c.fallback = 1; break;
        case O_VAL: nval = (int)cli_int(&a, 1, 100000000); break;
        case O_DATA: data = optarg; break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        case O_RISK:
            rc.epsilon = parse_fraction("calibrate", "--risk", optarg, 1);
            if (!(rc.epsilon > 0 && rc.epsilon < 1)) usage_error("calibrate --risk: '%s' must be in (0, 100%%)", optarg);
            set_rc |= 1;
            break;
        case O_DELTA: rc.delta = cli_num(&a, 1e-6, 0.999999); set_rc |= 2; break;
        case O_METHOD:
            if ((int)(rc.method = ee_rc_method_find(optarg)) <= 0)
                usage_error("calibrate --method: '%s' is not naive, crc, ucb or ltt", optarg);
            set_rc |= 2;
            break;
        case O_LABEL_FREE: rc.risk = EE_RISK_CONSISTENCY; set_rc |= 2; break;
        }
    }
    if (set_rc && !(set_rc & 1)) usage_error("calibrate: --method, --delta and --label-free go with --risk EPS");
    if ((set_rc & 1) && (set_drop || set_budget || c.per_exit || c.fit_temperature || c.fallback))
        usage_error("calibrate --risk: one shared threshold on raw scores; --max-drop, --budget, --per-exit, "
                    "--temperature and --fallback do not apply");
    if (cli_npos(&a) != 1) usage_error("calibrate: give one model file (see eenn calibrate --help)");
    if (set_drop && set_budget) usage_error("calibrate: --max-drop and --budget exclude each other");
    const char *model = cli_pos(&a)[0];
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *net = NULL;
    load_model(ctx, model, &net);
    if (ee_net_num_heads(net) < 2) die("%s: has no internal classifiers to calibrate (train it with --mode sdn or ic-only)", model);
    ee_outputs *o = validation_outputs(ctx, net, model, data, nval);
    int H = ee_net_num_heads(net);
    double cost[EE_MAX_HEADS], acc[EE_MAX_HEADS];
    ee_net_head_costs(net, cost, NULL);
    ee_head_accuracy(o, acc);
    ee_exit_policy p;
    ee_exit_stats st;
    rc.kind = c.kind;
    if (set_rc & 1) check(ee_calibrate_risk(ctx, o, cost, &rc, &p, &st), ctx);
    else check(ee_calibrate_policy(ctx, o, cost, &c, &p, &st), ctx);
    check(ee_net_set_policy(ctx, net, &p), ctx);
    check(ee_net_save(ctx, net, NULL, 0, model), ctx);
    char desc[512], text[8192];
    check(ee_policy_to_text(ctx, &p, text, sizeof text), ctx);
    if (json) {
        printf("{\"model\":\"%s\",\"val_n\":%d,\"target\":\"%s\",\"value\":%g,\"final_val_acc\":%.4f,\"policy\":\"%s\","
               "\"early_exit\":", js(model), o->n, (set_rc & 1) ? "risk" : c.target == EE_TARGET_DROP ? "drop" : "budget",
               (set_rc & 1) ? rc.epsilon : c.value, acc[H - 1] * 100, js(text));
        print_exit_stats(&st, H, o->n, acc[H - 1], 1);
        printf("}\n");
    } else {
        if (set_rc & 1)
            printf("%s: calibrated on %d validation images, %s, %s risk at most %.2f%%:\n", model, o->n,
                   ee_rc_method_name(rc.method), ee_risk_name(rc.risk), rc.epsilon * 100);
        else if (c.target == EE_TARGET_DROP)
            printf("%s: calibrated on %d validation images, allowed drop %.2f points:\n", model, o->n, c.value * 100);
        else
            printf("%s: calibrated on %d validation images, cost budget %.1f%% of the CNN:\n", model, o->n, c.value * 100);
        print_exit_stats(&st, H, o->n, acc[H - 1], 0);
        printf("policy stored in %s: %s\n", model, describe_policy(&p, desc, sizeof desc));
    }
    ee_outputs_free(o);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}
