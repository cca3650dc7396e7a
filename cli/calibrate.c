/* calibrate.c: `eenn calibrate`: the early-exit threshold of a model with internal classifiers, picked on its
 * held-out validation split and stored in the model file. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (end == v || !(x >= 0)) usage_error("calibrate --max-drop: '%s' is not a percentage or a fraction", v);
    if (!strcmp(end, "%")) x /= 100;
    else if (*end) usage_error("calibrate --max-drop: '%s' is not a percentage or a fraction", v);
    if (x > 1) usage_error("calibrate --max-drop: '%s' is more than 100%%", v);
    return x;
}

enum { O_MAX_DROP = 256, O_FALLBACK, O_VAL, O_DATA, O_THREADS, O_JSON };
static const struct option calibrate_opts[] = {
    {"max-drop", required_argument, NULL, O_MAX_DROP}, {"fallback", no_argument, NULL, O_FALLBACK},
    {"val", required_argument, NULL, O_VAL}, {"data", required_argument, NULL, O_DATA},
    {"threads", required_argument, NULL, O_THREADS}, {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_calibrate(int argc, char **argv) {
    const char *model = NULL, *data = NULL;
    double drop = 0.01;
    int nval = -1, fallback = 0, json = 0, threads = 0;
    cli_args a = {"calibrate", calibrate_help, calibrate_opts, NULL, argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;) {
        switch (c) {
        case O_MAX_DROP: drop = parse_drop(optarg); break;
        case O_FALLBACK: fallback = 1; break;
        case O_VAL: nval = (int)cli_int(&a, 1, 100000000); break;
        case O_DATA: data = optarg; break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        }
    }
    if (cli_npos(&a) != 1) usage_error("calibrate: give one model file (see eenn calibrate --help)");
    model = cli_pos(&a)[0];
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

