/* compare.c: `eenn compare`: every exit method on the same models and data, in one table. Each method is
 * calibrated on the model's validation split for the same target (an accuracy drop or a cost budget), then
 * evaluated on the test split: accuracy, average FLOPs, and real early-exit inference measured at batch 1 (img/s,
 * p50/p99 latency) and batch 128. */
#include "common.h"
#include "svg.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *compare_help =
    "usage: eenn compare MODEL... [--max-drop X | --budget B[,B...]] [options]\n"
    "Every exit method on the same models and data: each is calibrated on the model's validation split for the\n"
    "same target, then run on the test split. Per method: validation accuracy and cost (what the thresholds were\n"
    "chosen on), test accuracy, its drop against the final classifier, average FLOPs relative to the CNN, and real\n"
    "early-exit inference measured at batch 1 (img/s, p50/p99 latency) and batch 128. Methods: every score kind\n"
    "(maxprob, entropy, margin), with one shared or per-exit thresholds, on raw or temperature-scaled logits (T);\n"
    "for models with EENet exits also their learned confidence: the trained rule (above 0.5, no calibration) and\n"
    "thresholds on it calibrated like the others. Costs: eenn's true cumulative FLOPs (earlier exits' heads\n"
    "included) and, as 'paper', the EENets convention (the backbone prefix plus this exit's own head only).\n"
    "With several models, a last table puts every model's rows together.\n"
    "  --max-drop X   the target: at most X below the final classifier on validation (default 1%)\n"
    "  --budget B     instead: the most accurate policy within an average cost of B of the CNN; several\n"
    "                 budgets separated by commas ('25%,50%,75%')\n"
    "  --speed-n N    test images timed at batch 1 (default 500; batch 128 times 4N); 0 = no timing\n"
    "  --test-subset N  the first N test images only\n"
    "  --methods A,B  only these methods, by short name (maxprob, 'maxprob per-exit', entropy, margin, confidence,\n"
    "                 ...; eenn compare --methods list prints them)\n"
    "  --chart FILE   an HTML page with the accuracy-cost chart of every model: its maxprob threshold curve (one\n"
    "                 shared q from 0 to 1) on the test images, and the point of its EENet rule, labelled with the\n"
    "                 lambda it was trained with\n"
    "  --data DIR  --threads N  --json\n";

enum { O_MAX_DROP = 256, O_BUDGET, O_SPEED_N, O_TEST_SUBSET, O_DATA, O_THREADS, O_JSON, O_METHODS, O_CHART };
static const struct option compare_opts[] = {
    {"max-drop", required_argument, NULL, O_MAX_DROP}, {"budget", required_argument, NULL, O_BUDGET},
    {"speed-n", required_argument, NULL, O_SPEED_N}, {"test-subset", required_argument, NULL, O_TEST_SUBSET},
    {"data", required_argument, NULL, O_DATA}, {"methods", required_argument, NULL, O_METHODS},
    {"chart", required_argument, NULL, O_CHART},
    {"threads", required_argument, NULL, O_THREADS}, {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

typedef struct { double img_s1, img_s128, p50_ms, p99_ms; } speed;

/* real inference of the first n images of x (NHWC, img floats each): under p, or densely (p NULL) */
static speed measure(ee_ctx *ctx, ee_net *net, const ee_exit_policy *p, const float *x, size_t img, int n) {
    speed r = {0, 0, 0, 0};
    if (n <= 0) return r;
    int n128 = 4 * n;
    uint8_t *pred = malloc(n128), *ex = malloc(n128);
    float *conf = malloc(sizeof(float) * n128);
    double *lat = malloc(sizeof(double) * n);
    if (!pred || !ex || !conf || !lat) die("out of memory");
#define RUN(xx, m) (p ? ee_infer_policy(ctx, net, xx, m, p, NULL, pred, conf, ex, NULL) : ee_net_forward(ctx, net, xx, m, 0))
    for (int i = 0; i < 8 && i < n; i++) check(RUN(x + i * img, 1), ctx); /* warm-up */
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        double a = now_s();
        check(RUN(x + i * img, 1), ctx);
        lat[i] = now_s() - a;
    }
    r.img_s1 = n / (now_s() - t0);
    qsort(lat, n, sizeof *lat, cmp_double);
    r.p50_ms = lat[n / 2] * 1e3;
    r.p99_ms = lat[(n * 99) / 100] * 1e3;
    check(RUN(x, n128 < 128 ? n128 : 128), ctx); /* warm-up */
    t0 = now_s();
    for (int i = 0; i < n128; i += 128) check(RUN(x + i * img, n128 - i < 128 ? n128 - i : 128), ctx);
    r.img_s128 = n128 / (now_s() - t0);
#undef RUN
    free(pred); free(ex); free(conf); free(lat);
    return r;
}

/* a row of the table of every model */
typedef struct {
    char model[160], method[48];
    double acc, drop, cost, paper, sp1, sp128;
} summary_row;

/* the curve and the learned point of one model for the chart */
typedef struct {
    char model[160], lambda[32];
    double x[102], y[102];
    int n, has_point;
    double px, py;
} chart_model;

static void write_chart(const char *out, const chart_model *cm, int n) {
    char tmp[4200];
    FILE *f = html_open(out, tmp, sizeof tmp);
    if (!f) die("%s: cannot write", out);
    fprintf(f, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
               "content=\"width=device-width,initial-scale=1\"><title>eenn compare</title><style>%s</style></head>"
               "<body><main>\n<h1>Exit methods compared</h1>\n", html_css);
    double ymin = 100;
    for (int m = 0; m < n; m++) {
        for (int i = 0; i < cm[m].n; i++) ymin = fmin(ymin, cm[m].y[i]);
        if (cm[m].has_point) ymin = fmin(ymin, cm[m].py);
    }
    ymin = fmax(ymin, 50);
    figure(f, "Test accuracy against average cost",
           "Lines: one max-softmax threshold q shared by every exit, from 0 to 1 (the SDN rule), run on the test "
           "images. Circles: a model's learned EENet rule (confidence above 0.5), labelled with the cost weight lambda "
           "it was trained with. Cost: eenn's true cumulative FLOPs, as a share of the model's backbone without exits. "
           "Higher and further left is better.");
    plot p;
    int rows = 1;
    double used = 0;
    for (int m = 0; m < n; m++) { /* the legend's rows, as legend() will wrap them */
        const char *base = strrchr(cm[m].model, '/');
        double w = strlen(base ? base + 1 : cm[m].model) * 7.6 + 40;
        if (used + w > 560 - 66 - 14 && used > 0) { rows++; used = 0; }
        used += w;
    }
    plot_begin_rows(&p, f, 0, 100, floor(ymin / 2) * 2, 100, "average cost (% of the CNN's FLOPs)", "test accuracy (%)",
                    NULL, 0, rows);
    for (int m = 0; m < n; m++) {
        const char *col = palette[m % 16];
        if (cm[m].n) line(&p, cm[m].x, cm[m].y, cm[m].n, col, 0, 0);
        if (cm[m].has_point) {
            char lab[64];
            snprintf(lab, sizeof lab, "%s%s", cm[m].lambda[0] ? "lambda " : "", cm[m].lambda[0] ? cm[m].lambda : "0.5");
            marker(&p, cm[m].px, cm[m].py, col, lab);
        }
        const char *base = strrchr(cm[m].model, '/');
        legend(&p, col, base ? base + 1 : cm[m].model, 0);
    }
    plot_end(&p, "accuracy against cost: a threshold curve per model and the EENet rule's points");
    fprintf(f, "</main></body></html>\n");
    html_close(f, tmp, out);
}

/* 1 if method m is listed in the comma-separated short names (or no list is given) */
static int method_selected(const char *list, int m) {
    if (!list) return 1;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
        if (!strcmp(t, exit_methods[m].short_name)) return 1;
    return 0;
}

int cmd_compare(int argc, char **argv) {
    const char *methods = NULL, *chart = NULL;
    const char *data = NULL;
    double drop = 0.01, budgets[16];
    int nbudget = 0, speed_n = 500, threads = 0, json = 0, set_drop = 0, test_subset = 0;
    cli_args a = {"compare", compare_help, compare_opts, NULL, argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        switch (o) {
        case O_MAX_DROP: drop = parse_fraction("compare", "--max-drop", optarg, 1); set_drop = 1; break;
        case O_BUDGET: parse_fraction_list("compare", "--budget", optarg, 1, budgets, &nbudget, 16); break;
        case O_SPEED_N: speed_n = (int)cli_int(&a, 0, 100000); break;
        case O_TEST_SUBSET: test_subset = (int)cli_int(&a, 1, 100000000); break;
        case O_DATA: data = optarg; break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        case O_METHODS: methods = optarg; break;
        case O_CHART: chart = optarg; break;
        }
    }
    if (methods && !strcmp(methods, "list")) {
        for (int m = 0; m < n_exit_methods; m++) printf("%-24s %s\n", exit_methods[m].short_name, exit_methods[m].name);
        return 0;
    }
    if (methods) { /* every name must be a method */
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", methods);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            int found = 0;
            for (int m = 0; m < n_exit_methods; m++) found |= !strcmp(t, exit_methods[m].short_name);
            if (!found) usage_error("compare --methods: no method '%s' (eenn compare --methods list)", t);
        }
    }
    if (!cli_npos(&a)) usage_error("compare: no model file given (see eenn compare --help)");
    if (set_drop && nbudget) usage_error("compare: --max-drop and --budget exclude each other");
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    int ntargets = nbudget ? nbudget : 1, nsum = 0, nmodels = cli_npos(&a);
    summary_row *sum = calloc((size_t)nmodels * n_exit_methods * ntargets, sizeof *sum);
    chart_model *cm = calloc(nmodels, sizeof *cm);
    if (!sum || !cm) die("out of memory");
    if (json) printf("{\"methods\":%d,\"models\":[", n_exit_methods);
    for (int k = 0; k < cli_npos(&a); k++) {
        const char *model = cli_pos(&a)[k];
        double t_start = now_s();
        ee_net *net = NULL, *cnn = NULL;
        load_model(ctx, model, &net);
        int H = ee_net_num_heads(net);
        if (H < 2) die("%s: has no internal classifiers to compare exits on", model);
        /* a model trained with JEI-DNN: its gates, as trained, are one of the methods */
        int stored_jei = ee_net_policy(ctx, net, &method_stored) == EE_OK && method_stored.kind == EE_SCORE_GATE &&
                         method_stored.gate_rule == EE_GATE_JEI;
        /* a cascade of three or more networks: Bolukbasi's policy may jump ahead, as the paper's DAG */
        static int jump_to[EE_MAX_HEADS];
        method_jumps = ee_cascade_jumps(net, jump_to) ? jump_to : NULL;
        const char *dir = data ? data : ee_net_meta(net, "data.dir") ? ee_net_meta(net, "data.dir") : DEFAULT_DATA;
        fprintf(stderr, "compare: %s: outputs of every exit on the validation and test splits\n", model);
        ee_outputs *val = validation_outputs(ctx, net, model, dir, -1), *test = NULL;
        ee_dataset *ds = NULL;
        check(ee_dataset_load_dir(ctx, dir, "test", &ds), ctx);
        if (test_subset && test_subset < ds->n) ds->n = test_subset;
        apply_norm(net, ds);
        check(ee_collect_outputs(ctx, net, ds, 256, 0, &test), ctx);
        double cost[EE_MAX_HEADS], paper[EE_MAX_HEADS], vacc[EE_MAX_HEADS], tacc[EE_MAX_HEADS];
        ee_net_head_costs(net, cost, NULL);
        ee_eenet_costs(net, paper);
        { /* the chart: the shared max-softmax threshold over q on test, and the learned rule's point */
            chart_model *c = &cm[k];
            snprintf(c->model, sizeof c->model, "%s", model);
            const char *lam = ee_net_meta(net, "eenet.lambda");
            snprintf(c->lambda, sizeof c->lambda, "%s", lam ? lam : "");
            for (int i = 0; i <= 101; i++) {
                ee_exit_policy p;
                ee_exit_stats st;
                ee_policy_shared(&p, EE_SCORE_MAXPROB, H, i == 101 ? 1.01f : (float)(i / 100.0), 0);
                check(ee_policy_simulate(ctx, test, cost, &p, &st), ctx);
                c->x[c->n] = 100 * st.cost;
                c->y[c->n++] = 100 * st.acc;
            }
            if (test->gate) {
                ee_exit_policy p;
                ee_exit_stats st;
                ee_policy_shared(&p, EE_SCORE_CONFIDENCE, H, 0.5f, 0);
                check(ee_policy_simulate(ctx, test, cost, &p, &st), ctx);
                c->has_point = 1;
                c->px = 100 * st.cost;
                c->py = 100 * st.acc;
            }
        }
        ee_head_accuracy(val, vacc);
        ee_head_accuracy(test, tacc);
        /* the timed images, and the nets as deployed: sealed, the CNN without its ICs beside the SDN */
        int ntime = speed_n > 0 ? (4 * speed_n < ds->n ? 4 * speed_n : ds->n) : 0, nb1 = ntime / 4;
        int C, IH, IW;
        ee_net_input_shape(net, &C, &IH, &IW);
        size_t img = (size_t)C * IH * IW;
        float *x = malloc(sizeof(float) * img * (ntime ? ntime : 1));
        int *idx = malloc(sizeof(int) * (ntime ? ntime : 1));
        if (!x || !idx) die("out of memory");
        for (int i = 0; i < ntime; i++) idx[i] = i;
        if (ntime) ee_dataset_batch(ctx, ds, idx, ntime, NULL, x, NULL);
        check(ee_sdn_strip(ctx, net, &cnn), ctx);
        check(ee_net_prepare(ctx, net, 128, 0), ctx);
        check(ee_net_prepare(ctx, cnn, 128, 0), ctx);
        check(ee_net_seal(ctx, net), ctx);
        check(ee_net_seal(ctx, cnn), ctx);
        speed dense = measure(ctx, cnn, NULL, x, img, nb1);
        if (json)
            printf("%s{\"model\":\"%s\",\"arch\":\"%s\",\"val_n\":%d,\"test_n\":%d,\"final_val_acc\":%.4f,"
                   "\"final_test_acc\":%.4f,\"timed_images\":[%d,%d],\"cnn\":{\"img_s_b1\":%.1f,\"img_s_b128\":%.1f,"
                   "\"p50_ms\":%.4f,\"p99_ms\":%.4f},\"targets\":[", k ? "," : "", js(model), js(ee_net_name(net)),
                   val->n, test->n, vacc[H - 1] * 100, tacc[H - 1] * 100, nb1, 4 * nb1, dense.img_s1,
                   dense.img_s128, dense.p50_ms, dense.p99_ms);
        else {
            printf("%s (%s): %d validation / %d test images; final classifier %.2f%% validation, %.2f%% test\n",
                   model, ee_net_name(net), val->n, test->n, vacc[H - 1] * 100, tacc[H - 1] * 100);
            if (nb1)
                printf("CNN without exits: %.0f img/s at batch 1 (p50 %.3f ms, p99 %.3f ms), %.0f img/s at batch 128\n",
                       dense.img_s1, dense.p50_ms, dense.p99_ms, dense.img_s128);
            else printf("(speed not measured: --speed-n 0)\n");
            printf("exit costs, %% of the CNN: true cumulative");
            for (int h = 0; h < H; h++) printf(" %.1f", 100 * cost[h]);
            printf("; paper convention");
            for (int h = 0; h < H; h++) printf(" %.1f", 100 * paper[h]);
            printf("\n");
        }
        for (int t = 0; t < ntargets; t++) {
            ee_target_kind target = nbudget ? EE_TARGET_BUDGET : EE_TARGET_DROP;
            double value = nbudget ? budgets[t] : drop;
            if (json)
                printf("%s{\"target\":\"%s\",\"value\":%g,\"rows\":[", t ? "," : "",
                       target == EE_TARGET_DROP ? "drop" : "budget", value);
            else {
                if (target == EE_TARGET_DROP)
                    printf("\ntarget: at most %.2f points below the final classifier on validation\n", value * 100);
                else
                    printf("\ntarget: the most accurate policy within %.1f%% of the CNN's cost on validation\n", value * 100);
                printf("%-30s %8s %7s | %8s %7s %7s %7s %7s | %8s %8s %7s %7s\n", "method", "val acc", "cost", "test acc",
                       "drop", "cost", "paper", "FLOPs", "b1 img/s", "b128", "p50 ms", "p99 ms");
            }
            for (int m = 0, first = 1; m < n_exit_methods; m++) {
                if (!method_selected(methods, m) || (exit_methods[m].kind == EE_SCORE_CONFIDENCE && !val->gate)) continue;
                if (exit_methods[m].needs_stored_jei && !stored_jei) continue;
                ee_exit_policy p;
                ee_exit_stats vs, ts, tp;
                check(exit_methods[m].calibrate(ctx, &exit_methods[m], val, cost, target, value, &p, &vs), ctx);
                check(ee_policy_simulate(ctx, test, cost, &p, &ts), ctx);
                check(ee_policy_simulate(ctx, test, paper, &p, &tp), ctx);
                speed sp = measure(ctx, net, &p, x, img, nb1);
                char desc[512];
                describe_policy(&p, desc, sizeof desc);
                if (json) {
                    printf("%s{\"method\":\"%s\",\"policy\":\"%s\",\"val_acc\":%.4f,\"val_cost\":%.5f,\"test_acc\":%.4f,"
                           "\"test_drop\":%.4f,\"test_cost\":%.5f,\"test_cost_paper\":%.5f,\"flops_speedup\":%.3f,"
                           "\"img_s_b1\":%.1f,\"img_s_b128\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"speedup_b1\":%.3f,"
                           "\"speedup_b128\":%.3f,\"exits\":[", first ? "" : ",", js(exit_methods[m].name), js(desc),
                           vs.acc * 100, vs.cost, ts.acc * 100, (tacc[H - 1] - ts.acc) * 100, ts.cost, tp.cost,
                           1 / ts.cost, sp.img_s1, sp.img_s128, sp.p50_ms,
                           sp.p99_ms, dense.img_s1 > 0 ? sp.img_s1 / dense.img_s1 : 0,
                           dense.img_s128 > 0 ? sp.img_s128 / dense.img_s128 : 0);
                    for (int h = 0; h < H; h++) printf("%s%.4f", h ? "," : "", (double)ts.exits[h] / test->n);
                    printf("]}");
                } else {
                    printf("%-30s %7.2f%% %6.1f%% | %7.2f%% %7.2f %6.1f%% %6.1f%% %6.2fx | %8.0f %8.0f %7.3f %7.3f\n",
                           exit_methods[m].name, vs.acc * 100, vs.cost * 100, ts.acc * 100, (tacc[H - 1] - ts.acc) * 100,
                           ts.cost * 100, tp.cost * 100, 1 / ts.cost, sp.img_s1, sp.img_s128, sp.p50_ms, sp.p99_ms);
                }
                first = 0;
                summary_row *r = &sum[nsum++];
                snprintf(r->model, sizeof r->model, "%s", model);
                snprintf(r->method, sizeof r->method, "%s", exit_methods[m].name);
                r->acc = ts.acc * 100;
                r->drop = (tacc[H - 1] - ts.acc) * 100;
                r->cost = ts.cost * 100;
                r->paper = tp.cost * 100;
                r->sp1 = dense.img_s1 > 0 ? sp.img_s1 / dense.img_s1 : 0;
                r->sp128 = dense.img_s128 > 0 ? sp.img_s128 / dense.img_s128 : 0;
                fflush(stdout);
            }
            if (json) printf("]}");
        }
        double secs = now_s() - t_start;
        if (json) printf("],\"seconds\":%.1f}", secs);
        else
            printf("(drop: test points below the final classifier; FLOPs: the CNN's FLOPs over the average; %d images "
                   "timed at batch 1, %d at batch 128; %.0f s)\n\n", nb1, 4 * nb1, secs);
        free(x); free(idx);
        ee_outputs_free(val); ee_outputs_free(test);
        ee_dataset_free(ds);
        ee_net_free(net); ee_net_free(cnn);
    }
    if (json) printf("]}\n");
    else if (nmodels > 1 && nsum) { /* every model's rows in one table */
        printf("all models (test split%s)\n%-44s %-30s %8s %7s %7s %7s %8s %8s\n", nbudget > 1 ? ", every target" : "",
               "model", "method", "test acc", "drop", "cost", "paper", "b1 x", "b128 x");
        for (int i = 0; i < nsum; i++) {
            printf("%-44s %-30s %7.2f%% %7.2f %6.1f%% %6.1f%%", sum[i].model, sum[i].method, sum[i].acc, sum[i].drop,
                   sum[i].cost, sum[i].paper);
            if (speed_n > 0) printf(" %7.2fx %7.2fx\n", sum[i].sp1, sum[i].sp128);
            else printf(" %8s %8s\n", "-", "-");
        }
        printf("(cost: true cumulative FLOPs; paper: the EENets convention; b1 x, b128 x: measured speed over the same "
               "backbone without exits)\n");
    }
    if (chart) {
        write_chart(chart, cm, nmodels);
        fprintf(stderr, "compare: chart written to %s\n", chart);
    }
    free(sum);
    free(cm);
    ee_ctx_free(ctx);
    return 0;
}
