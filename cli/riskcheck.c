/* riskcheck.c: `eenn riskcheck`: does a risk-control guarantee hold on this model and data? The paper's own
 * evaluation (Jazbec et al., NeurIPS 2024): repeated random splits of held-out data into calibration and test
 * halves; each procedure picks its threshold on the calibration half, and the test half measures its risk and
 * cost. CRC promises a mean test risk at most epsilon; UCB and LTT a share of splits above epsilon at most delta;
 * naive promises nothing. */
#include "common.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *riskcheck_help =
    "usage: eenn riskcheck MODEL --risk EPS[,EPS...] [options]\n"
    "Repeated random splits of the test images into calibration and test halves: for every epsilon and every\n"
    "risk-control procedure (naive, crc, ucb, ltt), the threshold picked on the calibration half, and on the test\n"
    "half its mean risk, how often the risk exceeded epsilon, and its average cost.\n"
    "  --risk EPS     the allowed risk against the final classifier, '1%' or 0.01; several separated by commas\n"
    "  --delta D      UCB and LTT: the risk exceeds epsilon with probability at most D (default 0.1)\n"
    "  --splits N     random splits (default 200)\n"
    "  --label-free   the consistency risk (early answer differs from the final one) instead of the gap risk\n"
    "                 (final right, early answer wrong)\n"
    "  --kind K       the confidence score: maxprob (default), entropy or margin\n"
    "  --data DIR  --seed N  --threads N  --json\n";

enum { O_RISK = 256, O_DELTA, O_SPLITS, O_LABEL_FREE, O_KIND, O_DATA, O_SEED, O_THREADS, O_JSON };
static const struct option riskcheck_opts[] = {
    {"risk", required_argument, NULL, O_RISK}, {"delta", required_argument, NULL, O_DELTA},
    {"splits", required_argument, NULL, O_SPLITS}, {"label-free", no_argument, NULL, O_LABEL_FREE},
    {"kind", required_argument, NULL, O_KIND}, {"data", required_argument, NULL, O_DATA},
    {"seed", required_argument, NULL, O_SEED}, {"threads", required_argument, NULL, O_THREADS},
    {"json", no_argument, NULL, O_JSON}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_riskcheck(int argc, char **argv) {
    double eps[16], delta = 0.1;
    int neps = 0, splits = 200, label_free = 0, kind = EE_SCORE_MAXPROB, threads = 0, json = 0;
    long seed = 1221;
    const char *data = NULL;
    cli_args a = {"riskcheck", riskcheck_help, riskcheck_opts, NULL, argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        switch (o) {
        case O_RISK: parse_fraction_list("riskcheck", "--risk", optarg, 0.999999, eps, &neps, 16); break;
        case O_DELTA: delta = cli_num(&a, 1e-6, 0.999999); break;
        case O_SPLITS: splits = (int)cli_int(&a, 1, 100000); break;
        case O_LABEL_FREE: label_free = 1; break;
        case O_KIND:
            if ((kind = ee_score_find(optarg)) < 0 || kind == EE_SCORE_GATE)
                usage_error("riskcheck --kind: '%s' is not maxprob, entropy, margin or confidence", optarg);
            break;
        case O_DATA: data = optarg; break;
        case O_SEED: seed = cli_int(&a, 0, 2147483647); break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        }
    }
    if (cli_npos(&a) != 1) usage_error("riskcheck: give one model file (see eenn riskcheck --help)");
    if (!neps) usage_error("riskcheck: give --risk EPS (e.g. --risk 0.5%%,1%%,2%%,5%%)");
    const char *model = cli_pos(&a)[0];
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_ctx_seed(ctx, (uint64_t)seed);
    ee_net *net = NULL;
    load_model(ctx, model, &net);
    int H = ee_net_num_heads(net);
    if (H < 2) die("%s: has no internal classifiers", model);
    if (!data) data = ee_net_meta(net, "data.dir") ? ee_net_meta(net, "data.dir") : DEFAULT_DATA;
    ee_dataset *ds = NULL;
    check(ee_dataset_load_dir(ctx, data, "test", &ds), ctx);
    apply_norm(net, ds);
    ee_outputs *o = NULL;
    fprintf(stderr, "riskcheck: every exit on %d test images\n", ds->n);
    check(ee_collect_outputs(ctx, net, ds, 256, 0, &o), ctx);
    int n = o->n, ncal = n / 2, ntest = n - ncal;
    if (ncal < 1 || ntest < 1) die("%s: too few test images to split", data);
    ee_risk_kind risk = label_free ? EE_RISK_CONSISTENCY : EE_RISK_GAP;
    double cost[EE_MAX_HEADS];
    ee_net_head_costs(net, cost, NULL);
    enum { NM = 4 };
    static const int methods[NM] = {EE_RC_NAIVE, EE_RC_CRC, EE_RC_UCB, EE_RC_LTT};
    risk_split_stats res[16 * NM];
    double t0 = now_s();
    risk_splits(ctx, o, cost, kind, risk, delta, eps, neps, splits, res);
    double secs = now_s() - t0;
    if (json)
        printf("{\"model\":\"%s\",\"risk\":\"%s\",\"kind\":\"%s\",\"delta\":%g,\"splits\":%d,\"calibration_n\":%d,"
               "\"test_n\":%d,\"results\":[", js(model), ee_risk_name(risk), ee_score_name(kind), delta, splits, ncal,
               ntest);
    else
        printf("%s: %s risk, %s score, %d random splits of %d test images into %d calibration and %d test; delta %g\n"
               "%-8s %-6s %20s %16s %10s %8s %8s\n", model, ee_risk_name(risk), ee_score_name(kind), splits, n, ncal,
               ntest, delta, "epsilon", "method", "mean test risk (se)", "splits above eps", "mean cost", "lambda", "holds");
    for (int e = 0; e < neps; e++)
        for (int m = 0; m < NM; m++) {
            const risk_split_stats *r = &res[e * NM + m];
            double mr = r->risk, oc = r->above, mc = r->cost, ml = r->lambda, se = r->risk_se;
            /* what each procedure promises: CRC the mean, UCB and LTT the share above epsilon, naive nothing */
            /* CRC's promise is about a mean: within two standard errors of epsilon is Monte Carlo noise */
            const char *holds = methods[m] == EE_RC_NAIVE ? "-"
                                : methods[m] == EE_RC_CRC ? (mr <= eps[e] ? "yes" : mr - 2 * se <= eps[e] ? "noise" : "NO")
                                                          : (oc <= delta ? "yes" : "NO");
            if (json)
                printf("%s{\"epsilon\":%g,\"method\":\"%s\",\"mean_test_risk\":%.6f,\"share_above_epsilon\":%.4f,"
                       "\"risk_standard_error\":%.6f,\"mean_cost\":%.5f,\"mean_lambda\":%.4f,\"guarantee_holds\":%s}",
                       e || m ? "," : "", eps[e], ee_rc_method_name(methods[m]), mr, oc, se, mc, ml,
                       methods[m] == EE_RC_NAIVE ? "null" : holds[0] != 'N' ? "true" : "false");
            else
                printf("%-8.4g %-6s %9.3f%% +- %.3f %15.1f%% %9.1f%% %8.3f %8s\n", eps[e] * 100,
                       ee_rc_method_name(methods[m]), mr * 100, se * 100, oc * 100, mc * 100, ml, holds);
        }
    if (json) printf("],\"seconds\":%.2f}\n", secs);
    else printf("(cost: %% of the CNN's FLOPs; holds: CRC mean risk <= epsilon ('noise': above it by less than two\n"
                " standard errors), UCB/LTT share of splits above epsilon <= delta)\n");
    ee_outputs_free(o);
    ee_dataset_free(ds);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}
