/* learned.c: exit decisions learned from data rather than thresholds on a score. Bolukbasi et al., "Adaptive
 * Neural Networks for Efficient Inference" (ICML 2017): one objective, the expected loss plus lambda times the
 * expected cost, reduced to weighted binary classification one exit at a time, from the last exit backwards.
 * The gate of exit k sees its uncertainty features u (ee_uncertainty_features) and is a logistic model
 * sigmoid(w . u + b) (EE_SCORE_GATE, threshold 0.5). For each calibration sample, stopping at k costs
 * err_k + lambda c_k (err: 0-1 error, c: cumulative cost as a fraction of the CNN's); going on costs what the
 * already trained later gates make it pay. The label is the cheaper choice and the weight the difference, so the
 * gate is fitted where the choice matters. Network selection over a DAG (a cascade whose first networks may send
 * a sample straight to a later one) adds a second gate at such a node: jump or take the next network, fitted the
 * same way on the cost of each way on, before the exit gate (which then weighs stopping against the way on the
 * jump gate chose). */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NF EE_GATE_FEATURES
#define NP (NF + 1)

/* solves a (NP x NP, row major) x = b in place by Gaussian elimination with partial pivoting; 0 if singular */
static int solve(double *a, double *b) {
    for (int c = 0; c < NP; c++) {
        int piv = c;
        for (int r = c + 1; r < NP; r++)
            if (fabs(a[r * NP + c]) > fabs(a[piv * NP + c])) piv = r;
        if (fabs(a[piv * NP + c]) < 1e-300) return 0;
        if (piv != c) {
            for (int k = 0; k < NP; k++) { double t = a[c * NP + k]; a[c * NP + k] = a[piv * NP + k]; a[piv * NP + k] = t; }
            double t = b[c]; b[c] = b[piv]; b[piv] = t;
        }
        for (int r = c + 1; r < NP; r++) {
            double f = a[r * NP + c] / a[c * NP + c];
            for (int k = c; k < NP; k++) a[r * NP + k] -= f * a[c * NP + k];
            b[r] -= f * b[c];
        }
    }
    for (int c = NP - 1; c >= 0; c--) {
        for (int k = c + 1; k < NP; k++) b[c] -= a[c * NP + k] * b[k];
        b[c] /= a[c * NP + c];
    }
    return 1;
}

ee_status ee_fit_gate(ee_ctx *ctx, const float *u, const uint8_t *label, const double *weight, int n, double l2,
                      float *w) {
    if (n < 1) return ee_fail(ctx, EE_ERR_ARG, "no samples to fit a gate on");
    if (!(l2 >= 0)) return ee_fail(ctx, EE_ERR_ARG, "the gate's L2 weight must be >= 0, not %g", l2);
    /* standardised features (weighted), so that one L2 weight fits every feature's scale */
    double mu[NF] = {0}, sd[NF] = {0}, W = 0, pos = 0;
    for (int i = 0; i < n; i++) {
        if (!(weight[i] >= 0) || !isfinite(weight[i])) return ee_fail(ctx, EE_ERR_ARG, "gate sample %d: weight %g", i, weight[i]);
        W += weight[i];
        pos += weight[i] * (label[i] != 0);
        for (int f = 0; f < NF; f++) mu[f] += weight[i] * u[(size_t)i * NF + f];
    }
    memset(w, 0, sizeof(float) * NP);
    if (W <= 0) return EE_OK; /* nothing to learn: a gate at exactly 0.5 */
    if (pos <= 0 || pos >= W) { /* one class only: a confident constant gate */
        w[NF] = pos > 0 ? 20.0f : -20.0f;
        return EE_OK;
    }
    for (int f = 0; f < NF; f++) mu[f] /= W;
    for (int i = 0; i < n; i++)
        for (int f = 0; f < NF; f++) { double d = u[(size_t)i * NF + f] - mu[f]; sd[f] += weight[i] * d * d; }
    for (int f = 0; f < NF; f++) sd[f] = sd[f] / W > 1e-12 ? sqrt(sd[f] / W) : 0;
    /* Newton's method on the weighted logistic loss / W + l2/2 |w|^2 (the bias not penalised) */
    double th[NP] = {0};
    th[NF] = log(pos / (W - pos));
    for (int it = 0; it < 50; it++) {
        double g[NP] = {0}, hs[NP * NP] = {0};
        for (int i = 0; i < n; i++) {
            if (weight[i] == 0) continue;
            double x[NP];
            for (int f = 0; f < NF; f++) x[f] = sd[f] > 0 ? (u[(size_t)i * NF + f] - mu[f]) / sd[f] : 0;
            x[NF] = 1;
            double a = 0;
            for (int k = 0; k < NP; k++) a += th[k] * x[k];
            double p = 1 / (1 + exp(-a)), r = weight[i] / W;
            for (int k = 0; k < NP; k++) {
                g[k] += r * (p - (label[i] != 0)) * x[k];
                for (int m = 0; m < NP; m++) hs[k * NP + m] += r * p * (1 - p) * x[k] * x[m];
            }
        }
        for (int k = 0; k < NF; k++) { g[k] += l2 * th[k]; hs[k * NP + k] += l2; }
        hs[NF * NP + NF] += 1e-9;
        double step[NP];
        memcpy(step, g, sizeof step);
        if (!solve(hs, step)) break;
        double big = 0;
        for (int k = 0; k < NP; k++) big = fmax(big, fabs(step[k]));
        double scale = big > 5 ? 5 / big : 1; /* damped: separable data would otherwise run off to infinity */
        for (int k = 0; k < NP; k++) th[k] -= scale * step[k];
        if (big < 1e-9) break;
    }
    /* back to raw features: w . (u - mu) / sd + b */
    double b = th[NF];
    for (int f = 0; f < NF; f++) {
        double wf = sd[f] > 0 ? th[f] / sd[f] : 0;
        w[f] = (float)wf;
        b -= wf * mu[f];
    }
    w[NF] = (float)b;
    for (int k = 0; k < NP; k++)
        if (!isfinite(w[k])) return ee_fail(ctx, EE_ERR_NUMERIC, "the gate fit diverged");
    return EE_OK;
}

/* the gate's decision on features u (the raw linear part at or above 0: sigmoid at or above 0.5) */
static int gate_fires(const float *w, const float *u) {
    double a = w[NF];
    for (int f = 0; f < NF; f++) a += (double)w[f] * u[f];
    return a >= 0;
}

ee_status ee_bolukbasi_fit(ee_ctx *ctx, const ee_outputs *val, const double *cost, double lambda, const int *jump_to,
                           ee_exit_policy *p, ee_exit_stats *st, uint8_t *labels, double *weights) {
    int H = val->heads, K = val->classes, n = val->n;
    if (H < 2) return ee_fail(ctx, EE_ERR_ARG, "the network has no early exits to learn a policy for");
    if (!val->logits) return ee_fail(ctx, EE_ERR_ARG, "a learned policy needs the outputs' logits");
    if (n < 1) return ee_fail(ctx, EE_ERR_ARG, "no samples to learn a policy on");
    if (!(lambda >= 0) || !isfinite(lambda)) return ee_fail(ctx, EE_ERR_ARG, "lambda must be a number >= 0, not %g", lambda);
    for (int k = 0; jump_to && k < H - 1; k++)
        if (jump_to[k] && (jump_to[k] <= k + 1 || jump_to[k] >= H))
            return ee_fail(ctx, EE_ERR_ARG, "exit %d: a jump to head %d must skip at least one head", k + 1, jump_to[k] + 1);
    ee_exit_policy q;
    ee_policy_shared(&q, EE_SCORE_GATE, H, 0.5f, 0);
    float *u = malloc(sizeof(float) * (size_t)n * NF);
    /* ahead[h * n + i]: what sample i pays from head h on if it has reached h (its error where the trained gates
     * make it stop, plus lambda times the cost of what it runs after h) */
    double *ahead = malloc(sizeof(double) * (size_t)n * H), *cont = malloc(sizeof(double) * n);
    double *wt = malloc(sizeof(double) * n);
    uint8_t *lab = malloc((size_t)n);
    if (!u || !ahead || !cont || !wt || !lab) {
        free(u); free(ahead); free(cont); free(wt); free(lab);
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    ee_status s = EE_OK;
#define ERR(i, h) (double)(val->pred[(size_t)(i) * H + (h)] != val->label[i])
#define SEG(h) (cost[h] - ((h) ? cost[(h) - 1] : 0))
    for (int i = 0; i < n; i++) ahead[(size_t)(H - 1) * n + i] = ERR(i, H - 1);
    for (int k = H - 2; k >= 0 && !s; k--) {
        for (int i = 0; i < n; i++) {
            ee_uncertainty_features(val->logits + ((size_t)i * H + k) * K, K, 1.0f, u + (size_t)i * NF);
            cont[i] = lambda * SEG(k + 1) + ahead[(size_t)(k + 1) * n + i];
        }
        int t = jump_to ? jump_to[k] : 0;
        if (t) { /* the DAG: going on means the next head or a jump to head t, whichever the jump gate picks */
            for (int i = 0; i < n; i++) {
                double jump = lambda * SEG(t) + ahead[(size_t)t * n + i];
                lab[i] = jump < cont[i];
                wt[i] = fabs(jump - cont[i]);
            }
            q.jump_to[k] = t;
            if ((s = ee_fit_gate(ctx, u, lab, wt, n, 1e-3, q.jump_gate[k]))) break;
            for (int i = 0; i < n; i++)
                if (gate_fires(q.jump_gate[k], u + (size_t)i * NF)) cont[i] = lambda * SEG(t) + ahead[(size_t)t * n + i];
        }
        for (int i = 0; i < n; i++) {
            double stop = ERR(i, k);
            lab[i] = stop <= cont[i]; /* ties stop: the same loss for less work */
            wt[i] = fabs(stop - cont[i]);
        }
        if (labels) memcpy(labels + (size_t)k * n, lab, (size_t)n);
        if (weights) memcpy(weights + (size_t)k * n, wt, sizeof(double) * n);
        if ((s = ee_fit_gate(ctx, u, lab, wt, n, 1e-3, q.gate[k]))) break;
        /* what each sample pays from here on, under the gates just fitted */
        for (int i = 0; i < n; i++)
            ahead[(size_t)k * n + i] = gate_fires(q.gate[k], u + (size_t)i * NF) ? ERR(i, k) : cont[i];
    }
#undef ERR
#undef SEG
    free(u); free(ahead); free(cont); free(wt); free(lab);
    if (s) return s;
    snprintf(q.split, sizeof q.split, "validation");
    q.samples = n;
    if (st && (s = ee_policy_simulate(ctx, val, cost, &q, st))) return s;
    *p = q;
    return EE_OK;
}

ee_status ee_policy_fit_bolukbasi(ee_ctx *ctx, const ee_outputs *val, const double *cost, double lambda,
                                  const int *jump_to, ee_exit_policy *p, ee_exit_stats *st) {
    return ee_bolukbasi_fit(ctx, val, cost, lambda, jump_to, p, st, NULL, NULL);
}

ee_status ee_policy_fit_bolukbasi_target(ee_ctx *ctx, const ee_outputs *val, const double *cost, const int *jump_to,
                                         ee_target_kind target, double value, ee_exit_policy *p, ee_exit_stats *st,
                                         double *lambda_out) {
    if (target != EE_TARGET_DROP && target != EE_TARGET_BUDGET)
        return ee_fail(ctx, EE_ERR_ARG, "a target is needed: an accuracy drop or a cost budget");
    double acc[EE_MAX_HEADS];
    ee_head_accuracy(val, acc);
    double limit = target == EE_TARGET_DROP ? acc[val->heads - 1] - value : value;
    ee_exit_policy best, cur;
    ee_exit_stats bs, cs;
    double bl = 0;
    /* lambda 0 (no cost: stop only where it costs no accuracy), then 48 values from 1e-4 to 10 */
    for (int g = 0; g <= 48; g++) {
        double lam = g ? pow(10.0, -4 + 5.0 * (g - 1) / 47) : 0;
        ee_status s = ee_policy_fit_bolukbasi(ctx, val, cost, lam, jump_to, &cur, &cs);
        if (s) return s;
        if (!g || ee_stats_better(&cs, &bs, target, limit)) { best = cur; bs = cs; bl = lam; }
    }
    best.target = target;
    best.target_value = value;
    *p = best;
    if (st) *st = bs;
    if (lambda_out) *lambda_out = bl;
    return EE_OK;
}
