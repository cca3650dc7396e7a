/* conformal.c: how trustworthy an early-exit model's answers are, as JEI-DNN measures it. The expected
 * calibration error of the answers a policy gives (each sample's answer from the exit it takes, its confidence
 * that exit's max softmax), and split-conformal prediction sets per exit: a quantile of the scores 1 - p_y of the
 * calibration samples that left at that exit, so that sets {k : p_k >= 1 - qhat} cover the label with probability
 * at least 1 - alpha. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float conf; int right; } answer;
static int cmp_answer(const void *a, const void *b) {
    float x = ((const answer *)a)->conf, y = ((const answer *)b)->conf;
    return (x > y) - (x < y);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* softmax of head h of sample i at temperature T into p[k] */
static void softmax_of(const ee_outputs *o, int i, int h, float T, double *p) {
    int K = o->classes;
    const float *z = o->logits + ((size_t)i * o->heads + h) * K;
    double mx = z[0], s = 0, inv = T > 0 ? 1.0 / T : 1.0;
    for (int j = 1; j < K; j++) mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < K; j++) s += (p[j] = exp((z[j] - mx) * inv));
    for (int j = 0; j < K; j++) p[j] /= s;
}

ee_status ee_policy_ece(ee_ctx *ctx, const ee_outputs *o, const ee_exit_policy *pol, int bins, double *ece) {
    if (!o->logits) return ee_fail(ctx, EE_ERR_ARG, "the calibration error needs the outputs' logits");
    if (bins < 1 || o->n < 1) return ee_fail(ctx, EE_ERR_ARG, "%d bins, %d samples", bins, o->n);
    int n = o->n, K = o->classes;
    uint8_t *ex = malloc((size_t)n);
    answer *ans = malloc(sizeof(answer) * n);
    double *p = malloc(sizeof(double) * K);
    if (!ex || !ans || !p) {
        free(ex); free(ans); free(p);
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    ee_status s = ee_policy_assign(ctx, o, pol, ex, NULL);
    for (int i = 0; i < n && !s; i++) {
        softmax_of(o, i, ex[i], pol->temperature[ex[i]], p);
        int top = 0;
        for (int j = 1; j < K; j++) top = p[j] > p[top] ? j : top;
        ans[i].conf = (float)p[top];
        ans[i].right = top == o->label[i];
    }
    if (!s) {
        /* equal-mass bins over the confidences sorted (JEI-DNN's quantile bins) */
        qsort(ans, (size_t)n, sizeof *ans, cmp_answer);
        double e = 0;
        for (int b = 0; b < bins; b++) {
            int lo = (int)((long)b * n / bins), hi = (int)((long)(b + 1) * n / bins);
            if (hi <= lo) continue;
            double c = 0, a = 0;
            for (int j = lo; j < hi; j++) { c += ans[j].conf; a += ans[j].right; }
            e += fabs(c - a) / n;
        }
        *ece = e;
    }
    free(ex); free(ans); free(p);
    return s;
}

ee_status ee_head_reliability(ee_ctx *ctx, const ee_outputs *o, int head, int bins, double *ece, double *conf,
                              double *acc) {
    if (!o->logits) return ee_fail(ctx, EE_ERR_ARG, "the calibration error needs the outputs' logits");
    if (bins < 1 || o->n < bins) return ee_fail(ctx, EE_ERR_ARG, "%d bins for %d samples", bins, o->n);
    if (head < 0 || head >= o->heads) return ee_fail(ctx, EE_ERR_ARG, "no head %d (the outputs have %d)", head + 1, o->heads);
    int n = o->n, K = o->classes;
    answer *ans = malloc(sizeof(answer) * n);
    double *p = malloc(sizeof(double) * K);
    if (!ans || !p) {
        free(ans); free(p);
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        softmax_of(o, i, head, 1.0f, p);
        int top = 0;
        for (int j = 1; j < K; j++) top = p[j] > p[top] ? j : top;
        ans[i].conf = (float)p[top];
        ans[i].right = top == o->label[i];
    }
    qsort(ans, (size_t)n, sizeof *ans, cmp_answer);
    double e = 0;
    for (int b = 0; b < bins; b++) {
        int lo = (int)((long)b * n / bins), hi = (int)((long)(b + 1) * n / bins);
        double c = 0, a = 0;
        for (int j = lo; j < hi; j++) { c += ans[j].conf; a += ans[j].right; }
        e += fabs(c - a) / n;
        if (conf) conf[b] = hi > lo ? c / (hi - lo) : 0;
        if (acc) acc[b] = hi > lo ? a / (hi - lo) : 0;
    }
    *ece = e;
    free(ans); free(p);
    return EE_OK;
}

ee_status ee_conformal_fit(ee_ctx *ctx, const ee_outputs *val, const ee_exit_policy *pol, double alpha, float *qhat) {
    if (!val->logits) return ee_fail(ctx, EE_ERR_ARG, "conformal sets need the outputs' logits");
    if (!(alpha > 0 && alpha < 1)) return ee_fail(ctx, EE_ERR_ARG, "alpha must be in (0, 1), not %g", alpha);
    int n = val->n, H = val->heads, K = val->classes;
    if (n < 1) return ee_fail(ctx, EE_ERR_ARG, "no calibration samples");
    uint8_t *ex = malloc((size_t)n);
    float *mine = malloc(sizeof(float) * n), *all = malloc(sizeof(float) * n);
    double *p = malloc(sizeof(double) * K);
    if (!ex || !mine || !all || !p) {
        free(ex); free(mine); free(all); free(p);
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    ee_status s = ee_policy_assign(ctx, val, pol, ex, NULL);
    for (int h = 0; h < H && !s; h++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            softmax_of(val, i, h, pol->temperature[h], p);
            all[i] = (float)(1 - p[val->label[i]]);
            if (ex[i] == h) mine[m++] = all[i];
        }
        /* the exit's own samples, or all of them at this exit if it has 20 or fewer */
        float *sc = m > 20 ? mine : all;
        int c = m > 20 ? m : n;
        qsort(sc, (size_t)c, sizeof(float), cmp_float);
        /* the `higher' quantile at level ceil((c + 1)(1 - alpha)) / c */
        int rank = (int)ceil((c + 1) * (1 - alpha)); /* 1-based */
        qhat[h] = rank > c ? 1.0f : sc[rank - 1];
    }
    free(ex); free(mine); free(all); free(p);
    return s;
}

ee_status ee_conformal_eval(ee_ctx *ctx, const ee_outputs *o, const ee_exit_policy *pol, const float *qhat,
                            double *coverage, double *mean_size) {
    if (!o->logits) return ee_fail(ctx, EE_ERR_ARG, "conformal sets need the outputs' logits");
    int n = o->n, K = o->classes;
    uint8_t *ex = malloc((size_t)n);
    double *p = malloc(sizeof(double) * K);
    if (!ex || !p) { free(ex); free(p); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    ee_status s = ee_policy_assign(ctx, o, pol, ex, NULL);
    long covered = 0, size = 0;
    for (int i = 0; i < n && !s; i++) {
        softmax_of(o, i, ex[i], pol->temperature[ex[i]], p);
        double t = 1 - qhat[ex[i]];
        for (int j = 0; j < K; j++)
            if (p[j] >= t) { size++; covered += j == o->label[i]; }
    }
    if (!s) {
        *coverage = n ? (double)covered / n : 0;
        *mean_size = n ? (double)size / n : 0;
    }
    free(ex); free(p);
    return s;
}
