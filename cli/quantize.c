/* quantize.c: `eenn quantize`: post-training int8 quantisation of a trained model (docs/int8.md), its exit policy
 * recalibrated on the quantised network, written as a new model file. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *quantize_help =
    "usage: eenn quantize MODEL -o OUT [options]\n"
    "Post-training int8 quantisation: every convolution runs in int8 in inference (weights per output channel,\n"
    "symmetric; the input's step calibrated on training images), everything between them in float, so the exits\n"
    "stay. The model's exit policy is then recalibrated on the quantised network the way it was calibrated (the\n"
    "same score, target and risk bound), since confidences move. The float model is left as it is.\n"
    "  -o, --output OUT   the quantised model\n"
    "  --calib N          calibration images: the first N of the training set (default 1000)\n"
    "  --estimator E      the input step from the largest |value| seen (max, default) or a percentile of them\n"
    "                     (percentile; --percentile P, default 99.99)\n"
    "  --val N            validation images for the policy (default: the number the model was trained with)\n"
    "  --data DIR  --threads N  --json\n";

enum { O_CALIB = 256, O_ESTIMATOR, O_PERCENTILE, O_VAL, O_DATA, O_THREADS, O_JSON };
static const struct option quantize_opts[] = {
    {"output", required_argument, NULL, 'o'}, {"calib", required_argument, NULL, O_CALIB},
    {"estimator", required_argument, NULL, O_ESTIMATOR}, {"percentile", required_argument, NULL, O_PERCENTILE},
    {"val", required_argument, NULL, O_VAL}, {"data", required_argument, NULL, O_DATA},
    {"threads", required_argument, NULL, O_THREADS}, {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

/* the stored policy recalibrated on o the way it was made; 0 if it was learned or set, not calibrated for a
 * target (learned gates, EENets' trained rule) */
static int recalibrate(ee_ctx *ctx, const ee_exit_policy *old, const ee_outputs *o, const double *cost,
                       ee_exit_policy *p, ee_exit_stats *st) {
    if (old->kind == EE_SCORE_GATE) return 0;
    if (old->rc_method == EE_RC_NONE && old->target != EE_TARGET_DROP && old->target != EE_TARGET_BUDGET) return 0;
    if (old->rc_method != EE_RC_NONE) {
        ee_risk_calibration rc = {old->kind, (ee_risk_kind)old->risk, (ee_rc_method)old->rc_method, old->epsilon,
                                  old->delta, 0};
        check(ee_calibrate_risk(ctx, o, cost, &rc, p, st), ctx);
    } else {
        ee_calibration c = {old->kind, old->target, old->target_value, old->per_exit, old->temperature_fitted,
                            old->fallback, "validation"};
        check(ee_calibrate_policy(ctx, o, cost, &c, p, st), ctx);
    }
    return 1;
}

int cmd_quantize(int argc, char **argv) {
    const char *out = NULL, *data = NULL;
    int ncal = 1000, nval = -1, threads = 0, json = 0;
    ee_quant_config qc = {EE_QUANT_MAX, 99.99};
    cli_args a = {"quantize", quantize_help, quantize_opts, "o:", argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        switch (o) {
        case 'o': out = optarg; break;
        case O_CALIB: ncal = (int)cli_int(&a, 1, 10000000); break;
        case O_ESTIMATOR:
            if (!strcmp(optarg, "max")) qc.estimator = EE_QUANT_MAX;
            else if (!strcmp(optarg, "percentile")) qc.estimator = EE_QUANT_PERCENTILE;
            else usage_error("quantize --estimator: '%s' is not max or percentile", optarg);
            break;
        case O_PERCENTILE: qc.percentile = cli_num(&a, 50.000001, 100); break;
        case O_VAL: nval = (int)cli_int(&a, 1, 100000000); break;
        case O_DATA: data = optarg; break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        }
    }
    if (cli_npos(&a) != 1) usage_error("quantize: give one model file (see eenn quantize --help)");
    if (!out) usage_error("quantize: give the output file with -o OUT");
    const char *model = cli_pos(&a)[0];
    if (!strcmp(model, out)) usage_error("quantize: -o %s would overwrite the float model", out);
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *net = NULL;
    load_model(ctx, model, &net);
    int H = ee_net_num_heads(net);
    /* one read of the training set: the validation split, and the calibration images (its first ncal, which the
     * split leaves in place) */
    ee_dataset *train = NULL, *val = NULL;
    load_validation(ctx, net, model, data, nval, &train, &val);
    ee_outputs *of = NULL, *oq = NULL; /* the validation outputs of the float and the int8 network */
    check(ee_collect_outputs(ctx, net, val, 256, 0, &of), ctx);
    if (ncal > train->n) ncal = train->n;
    int c, h, w;
    ee_net_input_shape(net, &c, &h, &w);
    float *x = malloc((size_t)ncal * c * h * w * sizeof(float));
    int *idx = malloc((size_t)ncal * sizeof(int));
    uint8_t *y = malloc((size_t)ncal);
    if (!x || !idx || !y) die("out of memory");
    for (int i = 0; i < ncal; i++) idx[i] = i;
    ee_dataset_batch(ctx, train, idx, ncal, NULL, x, y);
    check(ee_net_quantize(ctx, net, x, ncal, &qc), ctx);
    free(x); free(idx); free(y);
    check(ee_collect_outputs(ctx, net, val, 256, 0, &oq), ctx);
    ee_dataset_free(train);
    ee_dataset_free(val);
    double cost[EE_MAX_HEADS], accf[EE_MAX_HEADS], accq[EE_MAX_HEADS];
    ee_net_head_costs(net, cost, NULL);
    ee_head_accuracy(of, accf);
    ee_head_accuracy(oq, accq);
    ee_exit_policy old, p;
    ee_exit_stats stf, stq;
    int has = ee_net_policy(ctx, net, &old) == EE_OK, recal = 0;
    if (has) {
        check(ee_policy_simulate(ctx, of, cost, &old, &stf), ctx);
        recal = recalibrate(ctx, &old, oq, cost, &p, &stq);
        if (recal) check(ee_net_set_policy(ctx, net, &p), ctx);
        else check(ee_policy_simulate(ctx, oq, cost, &old, &stq), ctx);
    }
    check(ee_net_save(ctx, net, NULL, 0, out), ctx);
    char desc[512];
    if (json) {
        printf("{\"model\":\"%s\",\"output\":\"%s\",\"int8_convs\":%d,\"calib_n\":%d,\"estimator\":\"%s\",",
               js(model), js(out), ee_net_int8_layers(net), ncal, qc.estimator == EE_QUANT_MAX ? "max" : "percentile");
        if (qc.estimator == EE_QUANT_PERCENTILE) printf("\"percentile\":%g,", qc.percentile);
        printf("\"val_n\":%d,\"heads\":[", oq->n);
        for (int k = 0; k < H; k++)
            printf("%s{\"fp32_acc\":%.4f,\"int8_acc\":%.4f}", k ? "," : "", accf[k] * 100, accq[k] * 100);
        printf("]");
        if (has) {
            printf(",\"policy_recalibrated\":%s,\"fp32_exits\":", recal ? "true" : "false");
            print_exit_stats(&stf, H, of->n, accf[H - 1], 1);
            printf(",\"int8_exits\":");
            print_exit_stats(&stq, H, oq->n, accq[H - 1], 1);
        }
        printf("}\n");
    } else {
        printf("%s: %d convolutions in int8 (input steps from %s on %d training images)\n", out,
               ee_net_int8_layers(net), qc.estimator == EE_QUANT_MAX ? "the largest |value|" : "a percentile", ncal);
        printf("final head on %d validation images: float %.2f%%, int8 %.2f%%\n", oq->n, accf[H - 1] * 100,
               accq[H - 1] * 100);
        if (has) {
            printf("float model, its policy:    ");
            print_exit_stats(&stf, H, of->n, accf[H - 1], 0);
            printf("int8 model, %s: ", recal ? "recalibrated" : "policy kept");
            print_exit_stats(&stq, H, oq->n, accq[H - 1], 0);
            printf("policy stored in %s: %s\n", out, describe_policy(recal ? &p : &old, desc, sizeof desc));
        }
    }
    ee_outputs_free(of);
    ee_outputs_free(oq);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}
