/* cascade.c: `eenn cascade`: network selection (Bolukbasi et al.): trained networks of growing size joined into one
 * model that runs them in order and stops after any of them when its learned gate says so. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *cascade_help =
    "usage: eenn cascade A.eenn B.eenn [C.eenn ...] -o CASCADE.eenn [--lambda X | --max-drop X | --budget X]\n"
    "Joins separately trained networks (the same input, classes and normalisation; cheapest first) into one model\n"
    "that runs them one after the other on the same image. After each network a logistic gate on its answer's\n"
    "uncertainty (max probability, entropy, margin) decides to stop or to run the next; the gates are learned on\n"
    "the validation split from the last network backwards for 0-1 error + lambda x cost (Bolukbasi et al., ICML\n"
    "2017). A sample's cost is what it ran (costs as fractions of the last network's FLOPs); batches shrink between\n"
    "networks. eval, infer, compare and bench take the file like any model with early exits.\n"
    "  -o FILE          the cascade to write (atomically)\n"
    "  --lambda X       the cost weight of the gates\n"
    "  --max-drop X     instead: lambda searched on validation for the lowest cost within X of the last network\n"
    "                   (default 1%)\n"
    "  --budget X       or: the most accurate within an average cost of X of the last network's ('40%')\n"
    "  --no-jumps       with three or more networks: no jumps ahead (by default the gate after each network but\n"
    "                   the last two may also send a sample straight to the last network, the paper's DAG)\n"
    "  --val N          validation images (default: the number the networks were trained with)\n"
    "  --data DIR  --threads N  --json\n";

enum { O_LAMBDA = 256, O_MAX_DROP, O_BUDGET, O_NO_JUMPS, O_VAL, O_DATA, O_THREADS, O_JSON };
static const struct option cascade_opts[] = {
    {"lambda", required_argument, NULL, O_LAMBDA}, {"max-drop", required_argument, NULL, O_MAX_DROP},
    {"budget", required_argument, NULL, O_BUDGET}, {"val", required_argument, NULL, O_VAL},
    {"no-jumps", no_argument, NULL, O_NO_JUMPS},
    {"data", required_argument, NULL, O_DATA}, {"threads", required_argument, NULL, O_THREADS},
    {"json", no_argument, NULL, O_JSON}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_cascade(int argc, char **argv) {
    const char *data = NULL, *out = NULL;
    int nval = -1, json = 0, threads = 0, set_lambda = 0;
    double lambda = 0, value = 0.01;
    ee_target_kind target = EE_TARGET_DROP;
    int set_target = 0, no_jumps = 0;
    cli_args a = {"cascade", cascade_help, cascade_opts, "o:", argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        switch (o) {
        case 'o': out = optarg; break;
        case O_LAMBDA: lambda = cli_num(&a, 0, 1e6); set_lambda = 1; break;
        case O_MAX_DROP:
            if (set_target && target != EE_TARGET_DROP) usage_error("cascade: --max-drop and --budget exclude each other");
            target = EE_TARGET_DROP;
            value = parse_fraction("cascade", "--max-drop", optarg, 1);
            set_target = 1;
            break;
        case O_BUDGET:
            if (set_target && target != EE_TARGET_BUDGET) usage_error("cascade: --max-drop and --budget exclude each other");
            target = EE_TARGET_BUDGET;
            value = parse_fraction("cascade", "--budget", optarg, 1);
            if (value <= 0) usage_error("cascade --budget: '%s' must be above 0", optarg);
            set_target = 1;
            break;
        case O_VAL: nval = (int)cli_int(&a, 1, 100000000); break;
        case O_NO_JUMPS: no_jumps = 1; break;
        case O_DATA: data = optarg; break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        }
    }
    int n = cli_npos(&a);
    if (n < 2 || n > 8) usage_error("cascade: give 2 to 8 trained networks, cheapest first (see eenn cascade --help)");
    if (!out) usage_error("cascade: give the file to write with -o CASCADE.eenn");
    if (set_lambda && set_target) usage_error("cascade: --lambda and a target (--max-drop, --budget) exclude each other");
    char **paths = cli_pos(&a);
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *m[8];
    for (int k = 0; k < n; k++) {
        load_model(ctx, paths[k], &m[k]);
        /* one image goes to every network: they must see it normalised the same way */
        static const char *const keys[] = {"data.mean", "data.std"};
        for (int j = 0; j < 2 && k; j++) {
            const char *x = ee_net_meta(m[0], keys[j]), *y = ee_net_meta(m[k], keys[j]);
            if ((x || y) && (!x || !y || strcmp(x, y)))
                die("%s: was trained with %s %s, %s with %s: the networks of a cascade share their input", paths[k], keys[j],
                    y ? y : "(none)", paths[0], x ? x : "(none)");
        }
    }
    ee_net *net = NULL;
    ee_status s = ee_cascade_build(ctx, m, n, &net);
    if (s) die("cascade of %s ...: %s", paths[0], ee_ctx_error(ctx));
    static const char *const copy[] = {"data.mean", "data.std", "data.dir", "data.val", "data.classes"};
    for (int j = 0; j < 5; j++)
        if (ee_net_meta(m[0], copy[j])) check(ee_net_set_meta(ctx, net, copy[j], ee_net_meta(m[0], copy[j])), ctx);
    char list[2048] = "";
    for (int k = 0; k < n; k++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", k ? "," : "", paths[k]);
    }
    check(ee_net_set_meta(ctx, net, "cascade.members", list), ctx);
    for (int k = 0; k < n; k++) ee_net_free(m[k]);
    ee_outputs *val = validation_outputs(ctx, net, out, data, nval);
    int H = ee_net_num_heads(net);
    double cost[EE_MAX_HEADS], acc[EE_MAX_HEADS];
    ee_net_head_costs(net, cost, NULL);
    ee_head_accuracy(val, acc);
    ee_exit_policy p;
    ee_exit_stats st;
    int jump_to[EE_MAX_HEADS], jumps = !no_jumps && ee_cascade_jumps(net, jump_to);
    if (set_lambda) check(ee_policy_fit_bolukbasi(ctx, val, cost, lambda, jumps ? jump_to : NULL, &p, &st), ctx);
    else check(ee_policy_fit_bolukbasi_target(ctx, val, cost, jumps ? jump_to : NULL, target, value, &p, &st, &lambda), ctx);
    check(ee_net_set_policy(ctx, net, &p), ctx);
    char b[64];
    snprintf(b, sizeof b, "%g", lambda);
    check(ee_net_set_meta(ctx, net, "policy.method", "bolukbasi"), ctx);
    check(ee_net_set_meta(ctx, net, "policy.lambda", b), ctx);
    check(ee_net_save(ctx, net, NULL, 0, out), ctx);
    if (json) {
        printf("{\"cascade\":\"%s\",\"networks\":%d,\"heads\":%d,\"val_n\":%d,\"lambda\":%g,\"costs\":[", js(out), n, H,
               val->n, lambda);
        for (int h = 0; h < H; h++) printf("%s%.5f", h ? "," : "", cost[h]);
        printf("],\"val_acc\":[");
        for (int h = 0; h < H; h++) printf("%s%.4f", h ? "," : "", acc[h] * 100);
        printf("],\"early_exit\":");
        print_exit_stats(&st, H, val->n, acc[H - 1], 1);
        printf("}\n");
    } else {
        printf("%s: %d networks, %d exits; validation accuracy and cumulative cost (%% of the last network's FLOPs):\n",
               out, n, H);
        for (int h = 0; h < H; h++) printf("  exit %d  %6.2f%%  %6.1f%%\n", h + 1, acc[h] * 100, cost[h] * 100);
        printf("gates learned on %d validation images, lambda %g%s:\n", val->n, lambda, set_lambda ? "" : " (searched)");
        print_exit_stats(&st, H, val->n, acc[H - 1], 0);
        char desc[512];
        printf("policy: %s\n", describe_policy(&p, desc, sizeof desc));
    }
    ee_outputs_free(val);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}
