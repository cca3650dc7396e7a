/* policy.c: `eenn policy`: a learned exit policy (Bolukbasi et al.'s adaptive early exit) for a model with early
 * exits: a logistic gate per exit on its uncertainty features, fitted on the validation split from the last exit
 * backwards for 0-1 error + lambda x cost. One lambda, or a target, stores the policy in the model file; several
 * lambdas trace the accuracy-cost curve on validation and test. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *policy_help =
    "usage: eenn policy MODEL (--lambda X[,Y,...] | --max-drop X | --budget X) [options]\n"
    "Learns an exit policy on the held-out validation split (Bolukbasi et al., ICML 2017): after each internal\n"
    "classifier a logistic gate on its max probability, entropy, margin and p^2 entropy decides to stop or go on,\n"
    "trained from the last exit backwards for the objective 0-1 error + lambda x cost (cost: a fraction of the CNN's\n"
    "FLOPs). The gates are stored in the model file (rewritten atomically) as its exit policy (kind gate).\n"
    "  --lambda X       the cost weight; several (0.01,0.05,0.1) trace the curve on validation and test and\n"
    "                   store nothing\n"
    "  --max-drop X     instead: the lambda (searched on validation) with the lowest cost within X of the final\n"
    "                   classifier ('1%')\n"
    "  --budget X       or: the most accurate within an average cost of X of the CNN ('40%')\n"
    "  --no-jumps       for a cascade of three or more networks: no jumps ahead (by default a gate after each\n"
    "                   network but the last two may also send a sample straight to the last, the paper's DAG)\n"
    "  --dry-run        report, but do not change the model file\n"
    "  --val N          validation images (default: the number the model was trained with)\n"
    "  --test-subset N  test images for the curve (default: all)\n"
    "  --data DIR  --threads N  --json\n";

enum { O_LAMBDA = 256, O_MAX_DROP, O_BUDGET, O_DRY, O_NO_JUMPS, O_VAL, O_TEST_SUBSET, O_DATA, O_THREADS, O_JSON };
static const struct option policy_opts[] = {
    {"lambda", required_argument, NULL, O_LAMBDA}, {"max-drop", required_argument, NULL, O_MAX_DROP},
    {"budget", required_argument, NULL, O_BUDGET}, {"dry-run", no_argument, NULL, O_DRY},
    {"no-jumps", no_argument, NULL, O_NO_JUMPS},
    {"val", required_argument, NULL, O_VAL}, {"test-subset", required_argument, NULL, O_TEST_SUBSET},
    {"data", required_argument, NULL, O_DATA}, {"threads", required_argument, NULL, O_THREADS},
    {"json", no_argument, NULL, O_JSON}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

/* a comma-separated list of numbers >= 0 */
static int parse_lambdas(const char *v, double *out, int cap) {
    int n = 0;
    for (const char *s = v; *s;) {
        char *end;
        double x = strtod(s, &end);
        if (end == s || !(x >= 0) || x > 1e6 || (*end && *end != ',')) usage_error("policy --lambda: '%s' is not a list of numbers >= 0", v);
        if (n == cap) usage_error("policy --lambda: at most %d values", cap);
        out[n++] = x;
        s = *end ? end + 1 : end;
    }
    if (!n) usage_error("policy --lambda: no value");
    return n;
}

int cmd_policy(int argc, char **argv) {
    const char *data = NULL;
    int nval = -1, json = 0, threads = 0, dry = 0, test_subset = 0, nl = 0, no_jumps = 0;
    double lambdas[64];
    ee_target_kind target = EE_TARGET_NONE;
    double value = 0;
    cli_args a = {"policy", policy_help, policy_opts, NULL, argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        switch (o) {
        case O_LAMBDA: nl = parse_lambdas(optarg, lambdas, 64); break;
        case O_MAX_DROP:
            if (target == EE_TARGET_BUDGET) usage_error("policy: --max-drop and --budget exclude each other");
            target = EE_TARGET_DROP;
            value = parse_fraction("policy", "--max-drop", optarg, 1);
            break;
        case O_BUDGET:
            if (target == EE_TARGET_DROP) usage_error("policy: --max-drop and --budget exclude each other");
            target = EE_TARGET_BUDGET;
            value = parse_fraction("policy", "--budget", optarg, 1);
            if (value <= 0) usage_error("policy --budget: '%s' must be above 0", optarg);
            break;
        case O_DRY: dry = 1; break;
        case O_NO_JUMPS: no_jumps = 1; break;
        case O_VAL: nval = (int)cli_int(&a, 1, 100000000); break;
        case O_TEST_SUBSET: test_subset = (int)cli_int(&a, 1, 100000000); break;
        case O_DATA: data = optarg; break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        }
    }
    if (cli_npos(&a) != 1) usage_error("policy: give one model file (see eenn policy --help)");
    if (!nl && target == EE_TARGET_NONE) usage_error("policy: give --lambda X, --max-drop X or --budget X");
    if (nl && target != EE_TARGET_NONE) usage_error("policy: --lambda and a target (--max-drop, --budget) exclude each other");
    const char *model = cli_pos(&a)[0];
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *net = NULL;
    load_model(ctx, model, &net);
    int H = ee_net_num_heads(net);
    if (H < 2) die("%s: has no early exits to learn a policy for (train it with --mode sdn or ic-only)", model);
    int jump_to[EE_MAX_HEADS];
    const int *jumps = !no_jumps && ee_cascade_jumps(net, jump_to) ? jump_to : NULL;
    const char *dir = data ? data : ee_net_meta(net, "data.dir") ? ee_net_meta(net, "data.dir") : DEFAULT_DATA;
    ee_outputs *val = validation_outputs(ctx, net, model, dir, nval), *test = NULL;
    double cost[EE_MAX_HEADS], vacc[EE_MAX_HEADS], tacc[EE_MAX_HEADS];
    ee_net_head_costs(net, cost, NULL);
    ee_head_accuracy(val, vacc);
    if (nl > 1) { /* the curve: validation and test for every lambda */
        ee_dataset *ds = NULL;
        check(ee_dataset_load_dir(ctx, dir, "test", &ds), ctx);
        if (test_subset && test_subset < ds->n) ds->n = test_subset;
        apply_norm(net, ds);
        check(ee_collect_outputs(ctx, net, ds, 256, 0, &test), ctx);
        ee_dataset_free(ds);
        ee_head_accuracy(test, tacc);
        if (json) printf("{\"model\":\"%s\",\"val_n\":%d,\"test_n\":%d,\"final_val_acc\":%.4f,\"final_test_acc\":%.4f,"
                         "\"curve\":[", js(model), val->n, test->n, vacc[H - 1] * 100, tacc[H - 1] * 100);
        else
            printf("%s: learned exit policy (Bolukbasi et al.) on %d validation images; final classifier %.2f%% "
                   "validation, %.2f%% test\n  lambda   val acc    cost | test acc    cost   exits (test, %%)\n",
                   model, val->n, vacc[H - 1] * 100, tacc[H - 1] * 100);
        for (int i = 0; i < nl; i++) {
            ee_exit_policy p;
            ee_exit_stats vs, ts;
            check(ee_policy_fit_bolukbasi(ctx, val, cost, lambdas[i], jumps, &p, &vs), ctx);
            check(ee_policy_simulate(ctx, test, cost, &p, &ts), ctx);
            if (json) {
                printf("%s{\"lambda\":%g,\"val_acc\":%.4f,\"val_cost\":%.4f,\"test_acc\":%.4f,\"test_cost\":%.4f,\"exits\":[",
                       i ? "," : "", lambdas[i], vs.acc * 100, vs.cost, ts.acc * 100, ts.cost);
                for (int h = 0; h < H; h++) printf("%s%.4f", h ? "," : "", (double)ts.exits[h] / test->n);
                printf("]}");
            } else {
                printf("  %-7g %6.2f%%  %5.1f%% |  %6.2f%%  %5.1f%%  ", lambdas[i], vs.acc * 100, vs.cost * 100, ts.acc * 100,
                       ts.cost * 100);
                for (int h = 0; h < H; h++) printf(" %.1f", 100.0 * ts.exits[h] / test->n);
                printf("\n");
            }
        }
        if (json) printf("]}\n");
        ee_outputs_free(test);
    } else {
        ee_exit_policy p;
        ee_exit_stats st;
        double lam = nl ? lambdas[0] : 0;
        if (nl) check(ee_policy_fit_bolukbasi(ctx, val, cost, lam, jumps, &p, &st), ctx);
        else check(ee_policy_fit_bolukbasi_target(ctx, val, cost, jumps, target, value, &p, &st, &lam), ctx);
        char b[64];
        snprintf(b, sizeof b, "%g", lam);
        if (!dry) {
            check(ee_net_set_policy(ctx, net, &p), ctx);
            check(ee_net_set_meta(ctx, net, "policy.method", "bolukbasi"), ctx);
            check(ee_net_set_meta(ctx, net, "policy.lambda", b), ctx);
            check(ee_net_save(ctx, net, NULL, 0, model), ctx);
        }
        char desc[512], text[8192];
        check(ee_policy_to_text(ctx, &p, text, sizeof text), ctx);
        if (json) {
            printf("{\"model\":\"%s\",\"val_n\":%d,\"lambda\":%g,\"final_val_acc\":%.4f,\"stored\":%s,\"policy\":\"%s\","
                   "\"early_exit\":", js(model), val->n, lam, vacc[H - 1] * 100, dry ? "false" : "true", js(text));
            print_exit_stats(&st, H, val->n, vacc[H - 1], 1);
            printf("}\n");
        } else {
            printf("%s: learned exit policy on %d validation images, lambda %g%s:\n", model, val->n, lam,
                   nl ? "" : " (searched for the target)");
            print_exit_stats(&st, H, val->n, vacc[H - 1], 0);
            printf("policy %s %s: %s\n", dry ? "not stored (--dry-run) in" : "stored in", model,
                   describe_policy(&p, desc, sizeof desc));
        }
    }
    ee_outputs_free(val);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}
