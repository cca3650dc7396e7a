/* eval.c: `eenn eval`: accuracy per exit and cumulative cost of one model, early exits at its threshold, the
 * threshold sweep, or several models side by side, exit by exit. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *eval_help =
    "usage: eenn eval MODEL [MODEL...] [options]\n"
    "Accuracy of a model on a dataset split. For a model with internal classifiers (an SDN): the accuracy and\n"
    "cumulative cost of every exit and, if the model was calibrated, early exits at its threshold. Several\n"
    "models (e.g. CNN, IC-only and SDN training) are compared side by side, exit by exit.\n"
    "  --data DIR     dataset directory (default: the one the model was trained on)\n"
    "  --split S      test (default) or train\n"
    "  --subset N     the first N images of the split only\n"
    "  --q X          early-exit threshold (default: the calibrated one stored in the model)\n"
    "  --sweep        the SDN reference's threshold sweep: accuracy, exits and cost for each q\n"
    "  --conformal A  with an exit policy: the expected calibration error of its answers (15 equal-mass bins) and\n"
    "                 per-exit conformal prediction sets at level 1 - A fitted on the validation split (JEI-DNN),\n"
    "                 their coverage and mean size (default 0.05; 0: neither)\n"
    "  --batch N      (default 256)   --threads N   --json\n";


typedef struct {
    const char *path;
    ee_net *net;
    ee_outputs *out;
    double acc[16], cost[16];
    int heads;
    double secs;
} eval_model;


enum { O_DATA = 256, O_SPLIT, O_SUBSET, O_BATCH, O_THREADS, O_Q, O_SWEEP, O_JSON, O_CONFORMAL };
static const struct option eval_opts[] = {
    {"data", required_argument, NULL, O_DATA}, {"split", required_argument, NULL, O_SPLIT},
    {"subset", required_argument, NULL, O_SUBSET},
    {"batch", required_argument, NULL, O_BATCH}, {"threads", required_argument, NULL, O_THREADS},
    {"q", required_argument, NULL, O_Q}, {"sweep", no_argument, NULL, O_SWEEP}, {"json", no_argument, NULL, O_JSON},
    {"conformal", required_argument, NULL, O_CONFORMAL},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_eval(int argc, char **argv) {
    const char *data = NULL, *split = "test";
    int batch = 256, json = 0, threads = 0, sweep = 0, subset = 0;
    double qopt = -1, alpha = 0.05;
    cli_args a = {"eval", eval_help, eval_opts, NULL, argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;) {
        switch (c) {
        case O_DATA: data = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_SUBSET: subset = (int)cli_int(&a, 1, 100000000); break;
        case O_BATCH: batch = (int)cli_int(&a, 1, 65536); break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_Q: qopt = cli_num(&a, 0, 2); break;
        case O_SWEEP: sweep = 1; break;
        case O_JSON: json = 1; break;
        case O_CONFORMAL: alpha = cli_num(&a, 0, 0.5); break;
        }
    }
    int nmodels = cli_npos(&a);
    char **models = cli_pos(&a);
    if (!nmodels) usage_error("eval: no model file given (see eenn eval --help)");
    if (nmodels > 8) usage_error("eval: at most 8 models");
    if (strcmp(split, "test") && strcmp(split, "train")) usage_error("eval --split: '%s' is not test or train", split);
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    eval_model m[8];
    memset(m, 0, sizeof m);
    ee_dataset *ds = NULL;
    int maxh = 0;
    for (int k = 0; k < nmodels; k++) {
        m[k].path = models[k];
        load_model(ctx, models[k], &m[k].net);
        if (!ds) {
            if (!data) data = ee_net_meta(m[k].net, "data.dir") ? ee_net_meta(m[k].net, "data.dir") : DEFAULT_DATA;
            check(ee_dataset_load_dir(ctx, data, split, &ds), ctx);
            if (subset && subset < ds->n) ds->n = subset;
        }
        apply_norm(m[k].net, ds);
        check(ee_net_prepare(ctx, m[k].net, batch, 0), ctx);
        check(ee_net_seal(ctx, m[k].net), ctx);
        double t0 = now_s();
        ee_status cs = ee_collect_outputs(ctx, m[k].net, ds, batch, 0, &m[k].out);
        if (cs) die("%s (%s split) with %s: %s", data, split, models[k], ee_ctx_error(ctx));
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
                /* EENet exits: the paper's cost convention beside eenn's true cumulative FLOPs */
                int gated = ee_net_head_confidence(net, 0) >= 0;
                double paper[EE_MAX_HEADS];
                ee_eenet_costs(net, paper);
                printf("  %-6s %10s %10s%s\n", "exit", "cost", "accuracy", gated ? "  paper cost" : "");
                for (int h = 0; h < H; h++) {
                    char nm[32];
                    printf("  %-6s %9.1f%% %9.2f%%", head_name(net, h, nm, sizeof nm), m[k].cost[h] * 100, m[k].acc[h] * 100);
                    if (gated) printf(" %10.1f%%", paper[h] * 100);
                    printf("\n");
                }
                if (gated)
                    printf("  (cost: true cumulative FLOPs, earlier exits' heads included; paper cost: the EENets "
                           "convention, the backbone prefix and this exit's own head)\n");
            }
        }
        if (H > 1) {
            ee_exit_policy pol;
            int have = model_policy(ctx, net, qopt, &pol), fallback = have ? pol.fallback : 0;
            if (have) {
                ee_exit_stats st;
                char desc[512];
                check(ee_policy_simulate(ctx, m[k].out, m[k].cost, &pol, &st), ctx);
                /* how trustworthy the answers are: calibration error, conformal sets fitted on validation */
                double ece = -1, cov = -1, size = -1;
                if (alpha > 0) {
                    check(ee_policy_ece(ctx, m[k].out, &pol, 15, &ece), ctx);
                    ee_outputs *vo = validation_outputs(ctx, net, m[k].path, data, -1);
                    float qhat[EE_MAX_HEADS];
                    check(ee_conformal_fit(ctx, vo, &pol, alpha, qhat), ctx);
                    check(ee_conformal_eval(ctx, m[k].out, &pol, qhat, &cov, &size), ctx);
                    ee_outputs_free(vo);
                }
                if (json) {
                    printf(",\"policy\":\"%s\",\"early_exit\":", js(describe_policy(&pol, desc, sizeof desc)));
                    print_exit_stats(&st, H, ds->n, m[k].acc[H - 1], 1);
                    if (alpha > 0)
                        printf(",\"ece\":%.5f,\"conformal\":{\"alpha\":%g,\"coverage\":%.5f,\"mean_set_size\":%.4f}", ece,
                               alpha, cov, size);
                } else {
                    printf("early exits (%s: %s):\n",
                           qopt >= 0 ? "threshold given"
                           : pol.kind == EE_SCORE_CONFIDENCE && !strcmp(pol.split, "none") ? "rule learned in training"
                                                                                         : "calibrated policy",
                           describe_policy(&pol, desc, sizeof desc));
                    print_exit_stats(&st, H, ds->n, m[k].acc[H - 1], 0);
                    if (alpha > 0)
                        printf("  calibration error (15 bins) %.2f%%; conformal sets at %g%%: coverage %.2f%%, mean size "
                               "%.2f classes\n", ece * 100, (1 - alpha) * 100, cov * 100, size);
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

