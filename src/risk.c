/* risk.c: exit thresholds with a statistical guarantee (Jazbec et al., "Fast yet Safe: Early-Exiting with Risk
 * Control", NeurIPS 2024). One threshold lambda shared by every exit, on the descending grid 1.00, 0.99, ..., 0.00;
 * a sample leaves at the first IC whose score is strictly above lambda, as the paper's code does. The risk of a
 * lambda is the mean per-sample loss against the same network's final output:
 *  - gap (labels): 1[early answer wrong] - 1[final answer wrong], in {-1, 0, 1};
 *  - consistency (no labels): 1[early answer != final answer], in {0, 1}.
 * At lambda = 1 nothing exits early and every loss is 0. The procedures pick lambda from the calibration losses:
 *  - naive: the smallest lambda whose empirical risk is below epsilon (no guarantee);
 *  - CRC (conformal risk control): the smallest lambda with n/(n+1) R(lambda) + B/(n+1) <= epsilon, B = 1: the
 *    expected risk is at most epsilon (needs losses bounded by B and non-increasing in lambda);
 *  - UCB: scanning down from lambda = 1, the last lambda before the first whose Hoeffding-Bentkus upper
 *    confidence bound at level delta reaches epsilon: risk at most epsilon with probability 1 - delta (needs the
 *    risk monotone in lambda). The gap losses are mapped from [-1, 1] to [0, 1] for the bound, so negative
 *    losses count;
 *  - LTT (Learn-Then-Test): per lambda the null hypothesis "risk > epsilon" with the Hoeffding-Bentkus p-value of
 *    the losses clipped at 0, tested in fixed sequence down from lambda = 1; lambda is the last rejected one.
 *    Risk at most epsilon with probability 1 - delta, with no monotonicity assumption. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const rc_names[] = {"none", "naive", "crc", "ucb", "ltt"};
static const char *const risk_names[] = {"gap", "consistency"};
const char *ee_rc_method_name(int m) { return m >= 0 && m <= EE_RC_LTT ? rc_names[m] : NULL; }
int ee_rc_method_find(const char *name) {
    for (int m = 0; m <= EE_RC_LTT; m++)
        if (!strcmp(rc_names[m], name)) return m;
    return -1;
}
const char *ee_risk_name(int r) { return r >= 0 && r <= EE_RISK_CONSISTENCY ? risk_names[r] : NULL; }
int ee_risk_find(const char *name) {
    for (int r = 0; r <= EE_RISK_CONSISTENCY; r++)
        if (!strcmp(risk_names[r], name)) return r;
    return -1;
}

double ee_risk_lambda(int k) { return (EE_RISK_GRID - 1 - k) / (double)(EE_RISK_GRID - 1); }

ee_status ee_risk_losses(ee_ctx *ctx, const ee_outputs *o, int kind, ee_risk_kind risk, int8_t *loss,
                         uint8_t *exit_at) {
    if (!o->logits && kind != EE_SCORE_MAXPROB)
        return ee_fail(ctx, EE_ERR_ARG, "these outputs hold no logits: only the maxprob kind can be scored");
    if (kind == EE_SCORE_GATE)
        return ee_fail(ctx, EE_ERR_ARG, "risk control chooses one threshold on a score; a learned gate policy decides "
                       "by itself");
    if (kind == EE_SCORE_CONFIDENCE && !o->gate)
        return ee_fail(ctx, EE_ERR_ARG, "the 'confidence' score needs exits with a learned confidence branch (EENet "
                       "exits); this network has none");
    if (risk != EE_RISK_GAP && risk != EE_RISK_CONSISTENCY) return ee_fail(ctx, EE_ERR_ARG, "unknown risk %d", risk);
    int H = o->heads, K = o->classes;
    if (H < 2 || H > EE_MAX_HEADS) return ee_fail(ctx, EE_ERR_ARG, "%d heads: risk control needs 2 to %d", H, EE_MAX_HEADS);
    float score[EE_MAX_HEADS];
    uint8_t pred[EE_MAX_HEADS];
    for (int i = 0; i < o->n; i++) {
        for (int h = 0; h < H; h++) {
            if (o->logits)
                score[h] = ee_score_exit(kind, o->logits + ((size_t)i * H + h) * K, K, 1,
                                         o->gate ? o->gate[(size_t)i * H + h] : -1, &pred[h]);
            else { score[h] = o->conf[(size_t)i * H + h]; pred[h] = o->pred[(size_t)i * H + h]; }
        }
        int final_wrong = pred[H - 1] != o->label[i];
        for (int k = 0; k < EE_RISK_GRID; k++) {
            double lam = ee_risk_lambda(k);
            int e = H - 1;
            for (int h = 0; h < H - 1; h++)
                if (score[h] > lam) { e = h; break; }
            if (exit_at) exit_at[(size_t)i * EE_RISK_GRID + k] = (uint8_t)e;
            int l = risk == EE_RISK_GAP ? (pred[e] != o->label[i]) - final_wrong : pred[e] != pred[H - 1];
            loss[(size_t)i * EE_RISK_GRID + k] = (int8_t)l;
        }
    }
    return EE_OK;
}

/* ---------------------------------------------------------------- the Hoeffding-Bentkus bound */
/* P(Binomial(n, p) <= k), its terms by recurrence in log space */
static double binom_cdf(int k, int n, double p) {
    if (k < 0) return 0;
    if (k >= n) return 1;
    if (p <= 0) return 1;
    if (p >= 1) return 0;
    double lr = log(p) - log1p(-p), lt = n * log1p(-p), sum = 0;
    for (int j = 0; j <= k; j++) {
        sum += exp(lt);
        lt += log((double)(n - j) / (j + 1)) + lr;
    }
    return sum > 1 ? 1 : sum;
}

/* h1(a, b) = a ln(a/b) + (1 - a) ln((1 - a)/(1 - b)) */
static double h1(double a, double b) {
    double t1 = a > 0 ? a * log(a / b) : 0, t2 = a < 1 ? (1 - a) * log((1 - a) / (1 - b)) : 0;
    return t1 + t2;
}

double ee_hb_pvalue(double rhat, int n, double alpha) {
    if (!(alpha > 0 && alpha < 1) || n < 1) return alpha >= 1 ? 1 : 0;
    double hoeffding = exp(-n * h1(fmin(rhat, alpha), alpha));
    double bentkus = exp(1.0) * binom_cdf((int)ceil(n * rhat - 1e-9), n, alpha);
    return fmin(hoeffding, bentkus);
}

double ee_hb_ucb(double rhat, int n, double delta) {
    /* the largest alpha whose p-value is still at least delta: p decreases in alpha above rhat */
    if (rhat >= 1 || ee_hb_pvalue(rhat, n, 1 - 1e-12) >= delta) return 1;
    double lo = rhat > 0 ? rhat : 0, hi = 1 - 1e-12;
    for (int it = 0; it < 60; it++) {
        double mid = (lo + hi) / 2;
        if (ee_hb_pvalue(rhat, n, mid) >= delta) lo = mid;
        else hi = mid;
    }
    return hi;
}

/* is the upper confidence bound of a mean rhat of [0, 1] losses below a? Since the p-value decreases in alpha
 * above rhat: exactly when rhat < a and p_HB(rhat, n, a) < delta */
static int ucb_below(double rhat, int n, double delta, double a) {
    return rhat < a && ee_hb_pvalue(rhat, n, a) < delta;
}

/* ---------------------------------------------------------------- the procedures */
int ee_risk_select(const ee_risk_calibration *rc, int n, const double *rhat, const double *rhat_clip) {
    const double eps = rc->epsilon, delta = rc->delta;
    int best = 0;
    switch (rc->method) {
    case EE_RC_NAIVE:
        for (int k = 0; k < EE_RISK_GRID; k++)
            if (rhat[k] < eps) best = k;
        return best;
    case EE_RC_CRC: {
        const double B = 1;
        for (int k = 0; k < EE_RISK_GRID; k++)
            if (rhat[k] <= ((n + 1) * eps - B) / n + 1e-12) best = k;
        return best;
    }
    case EE_RC_UCB:
        for (int k = 0; k < EE_RISK_GRID; k++) {
            /* gap losses in [-1, 1] are bounded as (loss + 1) / 2 in [0, 1]: the bound's eps is (eps + 1) / 2 */
            int ok = rc->risk == EE_RISK_GAP ? ucb_below((rhat[k] + 1) / 2, n, delta, (eps + 1) / 2)
                                             : ucb_below(rhat[k], n, delta, eps);
            if (!ok) break;
            best = k;
        }
        return best;
    case EE_RC_LTT:
        for (int k = 0; k < EE_RISK_GRID; k++) {
            if (!(ee_hb_pvalue(rhat_clip[k], n, eps) <= delta)) break;
            best = k;
        }
        return best;
    default:
        return 0;
    }
}

/* mean losses of samples idx[0..n) (all samples if idx is NULL) at every grid point; clipped at 0 in clip */
void ee_risk_means(const int8_t *loss, const int *idx, int n, double *rhat, double *clip) {
    for (int k = 0; k < EE_RISK_GRID; k++) rhat[k] = clip[k] = 0;
    for (int j = 0; j < n; j++) {
        const int8_t *l = loss + (size_t)(idx ? idx[j] : j) * EE_RISK_GRID;
        for (int k = 0; k < EE_RISK_GRID; k++) { rhat[k] += l[k]; clip[k] += l[k] > 0 ? l[k] : 0; }
    }
    for (int k = 0; k < EE_RISK_GRID; k++) { rhat[k] /= n; clip[k] /= n; }
}

ee_status ee_calibrate_risk(ee_ctx *ctx, const ee_outputs *cal, const double *cost, const ee_risk_calibration *rc,
                            ee_exit_policy *p, ee_exit_stats *st) {
    if (cal->heads < 2) return ee_fail(ctx, EE_ERR_ARG, "the network has no internal classifiers to calibrate");
    if (rc->method < EE_RC_NAIVE || rc->method > EE_RC_LTT) return ee_fail(ctx, EE_ERR_ARG, "unknown risk-control method");
    if (!(rc->epsilon > 0 && rc->epsilon < 1)) return ee_fail(ctx, EE_ERR_ARG, "epsilon must be in (0, 1), not %g", rc->epsilon);
    if ((rc->method == EE_RC_UCB || rc->method == EE_RC_LTT) && !(rc->delta > 0 && rc->delta < 1))
        return ee_fail(ctx, EE_ERR_ARG, "delta must be in (0, 1), not %g", rc->delta);
    if (cal->n < 1) return ee_fail(ctx, EE_ERR_ARG, "no calibration samples");
    int8_t *loss = malloc((size_t)cal->n * EE_RISK_GRID);
    if (!loss) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    ee_status s = ee_risk_losses(ctx, cal, rc->kind, rc->risk, loss, NULL);
    if (s) { free(loss); return s; }
    double rhat[EE_RISK_GRID], clip[EE_RISK_GRID];
    ee_risk_means(loss, NULL, cal->n, rhat, clip);
    free(loss);
    int k = ee_risk_select(rc, cal->n, rhat, clip);
    /* the policy's rule is score >= threshold: the next float above lambda makes it the paper's score > lambda */
    float thr = nextafterf((float)ee_risk_lambda(k), 2.0f);
    ee_policy_shared(p, rc->kind, cal->heads, thr, 0);
    p->target = EE_TARGET_NONE;
    snprintf(p->split, sizeof p->split, "validation");
    p->samples = cal->n;
    p->rc_method = rc->method;
    p->risk = rc->risk;
    p->epsilon = rc->epsilon;
    p->delta = rc->method == EE_RC_UCB || rc->method == EE_RC_LTT ? rc->delta : 0;
    p->empirical_risk = rhat[k];
    if (st) {
        ee_exit_stats t;
        if ((s = ee_policy_simulate(ctx, cal, cost, p, &t))) return s;
        *st = t;
    }
    return EE_OK;
}
