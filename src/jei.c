/* jei.c: JEI-DNN (Regol, Chataoui and Coates, "Jointly-Learned Exit and Inference for a Dynamic Neural Network",
 * ICLR 2024): gates learned together with the exits' classifiers (the inference modules, IMs) on a frozen
 * backbone. The gate of IC l is sigmoid(w_l . u_l + b_l) on the four uncertainty features of its IM's softmax
 * (detached); the gates define an exit distribution P_l = max(0, min(g_l, 1 - sum_(j<l) g_j)), the final head
 * taking what is left. Training alternates between two losses on the same batches:
 * - gate phase: each sample's best exit l* = argmin_l CE_l + lambda c_l (c_final = 1), gate targets
 *   t_l = [l >= l*] ("exit here or at a later gate"), binary cross-entropy on the gates' logits with the positive
 *   weight min(5, (N - n_l) / max(n_l, 0.1)) from the validation split's counts n_l of l* = l, averaged over
 *   samples and gates;
 * - classifier phase: the IMs' cross-entropies weighted by the exit distribution, sum_l P_l CE_l, averaged over
 *   samples (the gates held constant). The released code's expression for this phase reduces to the unweighted
 *   mean of the cross-entropies; eenn follows the paper's intent, the exit-weighted loss. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NF EE_GATE_FEATURES
#define NP (NF + 1)

/* -log softmax(z)[y] */
static double ce(const float *z, int k, int y) { return ee_logsumexp(z, k) - z[y]; }

void ee_jei_exit_distribution(const float *g, int gates, float *P) {
    double sum = 0, used = 0;
    for (int l = 0; l < gates; l++) {
        double p = fmax(0.0, fmin((double)g[l], 1.0 - sum));
        P[l] = (float)p;
        sum += g[l];
        used += p;
    }
    P[gates] = (float)fmax(0.0, 1.0 - used);
}

int ee_jei_best_exit(const float *const *head_logits, int i, int heads, int k, int label, const double *cost, double lambda) {
    int best = heads - 1;
    double bl = INFINITY;
    for (int h = 0; h < heads; h++) {
        double l = ce(head_logits[h] + (size_t)i * k, k, label) + lambda * (h == heads - 1 ? 1.0 : cost[h]);
        if (l < bl) { bl = l; best = h; } /* ties: the earlier exit */
    }
    return best;
}

ee_status ee_jei_loss(ee_ctx *ctx, const float *const *head_logits, const uint8_t *labels, int n, int heads, int k,
                      const double *cost, double lambda, const double *pos_weight, const float (*gate)[EE_GATE_FEATURES + 1],
                      double *gate_loss, float (*gate_grad)[EE_GATE_FEATURES + 1], double *cls_loss,
                      float *const *dlogits) {
    int G = heads - 1;
    if (G < 1 || G >= EE_MAX_HEADS) return ee_fail(ctx, EE_ERR_ARG, "JEI-DNN needs 1 to %d early exits, not %d", EE_MAX_HEADS - 1, G);
    if (n < 1) return ee_fail(ctx, EE_ERR_ARG, "an empty batch");
    if (!(lambda >= 0)) return ee_fail(ctx, EE_ERR_ARG, "lambda must be >= 0, not %g", lambda);
    for (int i = 0; i < n; i++)
        if (labels[i] >= k) return ee_fail(ctx, EE_ERR_ARG, "label %d out of range for %d classes", labels[i], k);
    if (gate_grad) memset(gate_grad, 0, sizeof(float) * G * NP);
    double gl = 0, cl = 0, gg[EE_MAX_HEADS][NP];
    memset(gg, 0, sizeof gg);
    for (int i = 0; i < n; i++) {
        int y = labels[i], best = ee_jei_best_exit(head_logits, i, heads, k, y, cost, lambda);
        float g[EE_MAX_HEADS], P[EE_MAX_HEADS], u[EE_MAX_HEADS][NF];
        for (int l = 0; l < G; l++) {
            ee_uncertainty_features(head_logits[l] + (size_t)i * k, k, 1.0f, u[l]);
            double a = gate[l][NF];
            for (int f = 0; f < NF; f++) a += (double)gate[l][f] * u[l][f];
            double sg = 1 / (1 + exp(-a)), t = l >= best, pw = pos_weight ? pos_weight[l] : 1;
            /* BCE with logits and a positive weight, as log-sigmoid terms that stay finite for large |a| */
            double ls = a >= 0 ? -log1p(exp(-a)) : a - log1p(exp(a)), lns = ls - a; /* log s, log (1 - s) */
            gl += -(pw * t * ls + (1 - t) * lns);
            double d = pw * t * (sg - 1) + (1 - t) * sg;
            for (int f = 0; f < NF; f++) gg[l][f] += d * u[l][f];
            gg[l][NF] += d;
            g[l] = (float)sg;
        }
        ee_jei_exit_distribution(g, G, P);
        for (int h = 0; h < heads; h++) {
            const float *z = head_logits[h] + (size_t)i * k;
            double lse = ee_logsumexp(z, k);
            cl += P[h] * (lse - z[y]);
            if (!dlogits || !dlogits[h]) continue;
            for (int j = 0; j < k; j++)
                dlogits[h][(size_t)i * k + j] = (float)(P[h] * (exp(z[j] - lse) - (j == y)) / n);
        }
    }
    if (gate_grad)
        for (int l = 0; l < G; l++)
            for (int f = 0; f < NP; f++) gate_grad[l][f] = (float)(gg[l][f] / ((double)n * G));
    if (gate_loss) *gate_loss = gl / ((double)n * G);
    if (cls_loss) *cls_loss = cl / n;
    if (!isfinite(gl) || !isfinite(cl)) return ee_fail(ctx, EE_ERR_NUMERIC, "JEI-DNN loss is not finite");
    return EE_OK;
}

void ee_jei_pos_weights(const ee_outputs *val, const double *cost, double lambda, double *pos_weight) {
    int H = val->heads, K = val->classes, cnt[EE_MAX_HEADS] = {0};
    const float *hl[EE_MAX_HEADS];
    float *tmp = malloc(sizeof(float) * (size_t)val->n * K * H);
    if (!tmp) { for (int l = 0; l < H - 1; l++) pos_weight[l] = 1; return; }
    for (int h = 0; h < H; h++) {
        for (int i = 0; i < val->n; i++)
            memcpy(tmp + ((size_t)h * val->n + i) * K, val->logits + ((size_t)i * H + h) * K, sizeof(float) * K);
        hl[h] = tmp + (size_t)h * val->n * K;
    }
    for (int i = 0; i < val->n; i++) cnt[ee_jei_best_exit(hl, i, H, K, val->label[i], cost, lambda)]++;
    for (int l = 0; l < H - 1; l++) pos_weight[l] = fmin(5.0, (val->n - cnt[l]) / fmax(cnt[l], 0.1));
    free(tmp);
}
