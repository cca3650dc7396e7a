/* eenet.c: EENets (Demir & Akbas, "Early-exit Convolutional Neural Networks"): exit blocks with a learned
 * confidence branch, their placement by the FLOPs of the backbone prefix, the paper's per-exit costs and the
 * cost-aware loss. The predictions and costs are mixed from the last exit backwards,
 *     Y_N = p_N, C_N = 1;  Y_i = h_i p_i + (1 - h_i) Y_(i+1),  C_i = h_i c_i + (1 - h_i) C_(i+1),
 * and the loss is the negative log of the mixed probability of the label plus lambda times the expected cost:
 * v1 at exit 0 only, v2 summed over every exit; v0 is the plain sum of every exit's cross-entropy. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const dist_names[] = {"fine", "linear", "pareto", "gold_ratio"};
static const char *const exit_names[] = {"pool", "plain", "bnpool"};

const char *ee_eenet_dist_name(int d) { return d >= 0 && d < 4 ? dist_names[d] : NULL; }
int ee_eenet_dist_find(const char *name) {
    for (int d = 0; d < 4; d++)
        if (!strcmp(name, dist_names[d])) return d;
    return -1;
}
const char *ee_eenet_exit_name(int t) { return t >= 0 && t < 3 ? exit_names[t] : NULL; }
int ee_eenet_exit_find(const char *name) {
    for (int t = 0; t < 3; t++)
        if (!strcmp(name, exit_names[t])) return t;
    return -1;
}

/* the FLOPs threshold of exit i of n (a fraction of the backbone), as the EENets code sets them */
static double dist_threshold(ee_eenet_dist d, int i, int n) {
    switch (d) {
    case EE_DIST_LINEAR: return (double)(i + 1) / (n + 1);
    case EE_DIST_PARETO: return 1 - pow(0.8, i + 1);
    case EE_DIST_GOLD_RATIO: return pow(1.61803398875, i - n);
    default: return 1 - pow(0.95, i + 1);
    }
}

/* the output of the block ending at node i, where an exit reads it: after the ReLU that alone reads a residual sum
 * (a post-activation ResNet block), else the block end itself; -1 if i is no block end */
static int block_output(const ee_net *net, int i) {
    if (!ee_is_block_end(net, i)) return -1;
    if (net->nodes[i].kind == EE_KIND_ADD && net->nodes[i].consumers == 1)
        for (int j = i + 1; j < net->nnodes; j++)
            if (net->nodes[j].in[0] == i && net->nodes[j].nin == 1 && net->nodes[j].kind == EE_KIND_RELU) return j;
    return i;
}

ee_status ee_eenet_positions(ee_ctx *ctx, const ee_net *net, int n, ee_eenet_dist dist, int *nodes) {
    if (n < 1 || n > EE_MAX_HEADS - 1) return ee_fail(ctx, EE_ERR_ARG, "between 1 and %d early exits, not %d", EE_MAX_HEADS - 1, n);
    if ((int)dist < 0 || dist > EE_DIST_GOLD_RATIO) return ee_fail(ctx, EE_ERR_ARG, "unknown exit distribution %d", dist);
    if (net->nheads != 1)
        return ee_fail(ctx, EE_ERR_ARG, "the network already has early exits (%s: EENet exits need a network with one "
                       "head and a confidence branch at every exit%s)", net->arch_name,
                       !strcmp(net->arch_name, "textcnn") ? "; the text CNN's bag of words is a head of its own: train "
                       "EENet exits on a network without it, with --arch-file" : "");
    double total = 0;
    for (int i = 0; i < net->nnodes; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        total += in.flops;
    }
    double prefix = 0;
    int placed = 0, last = -1;
    for (int i = 0; i < net->nnodes - 1 && placed < n; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        prefix += in.flops;
        int at = block_output(net, i);
        if (at < 0) continue;
        /* the block's output may be a later ReLU: count the prefix up to it */
        double upto = prefix;
        for (int j = i + 1; j <= at; j++) {
            ee_net_node_info(net, j, &in);
            upto += in.flops;
        }
        if (at <= last || at >= net->nnodes - 1) continue;
        if (upto >= dist_threshold(dist, placed, n) * total) nodes[placed++] = last = at;
    }
    if (placed < n)
        return ee_fail(ctx, EE_ERR_ARG, "only %d of %d exits fit in %s with the %s distribution (one per block)", placed, n,
                       ee_net_name(net), dist_names[dist]);
    return EE_OK;
}

ee_status ee_eenet_attach(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int n, ee_eenet_exit type, ee_net **out) {
    *out = NULL;
    int unc = (type & EE_EENET_UNCERTAINTY_GATE) != 0;
    type &= ~EE_EENET_UNCERTAINTY_GATE;
    if ((int)type < 0 || type > EE_EENET_BNPOOL) return ee_fail(ctx, EE_ERR_ARG, "unknown exit type %d", type);
    ee_status s = ee_check_exit_positions(ctx, cnn, nodes, n, "early exits");
    if (s) return s;
    char *blocks[EE_MAX_HEADS] = {0};
    for (int k = 0; k < n && !s; k++) {
        blocks[k] = malloc(600);
        if (!blocks[k]) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); break; }
        const char *at = cnn->nodes[nodes[k]].name;
        char pre[200], feat[EE_NAME + 16];
        int e = k + 1;
        if (type == EE_EENET_PLAIN) {
            snprintf(pre, sizeof pre, "flatten name=ee%d.flat in=%s\n", e, at);
            snprintf(feat, sizeof feat, "ee%d.flat", e);
        } else if (type == EE_EENET_BNPOOL) {
            snprintf(pre, sizeof pre, "bn name=ee%d.bn in=%s\ngap name=ee%d.pool in=ee%d.bn\n", e, at, e, e);
            snprintf(feat, sizeof feat, "ee%d.pool", e);
        } else {
            snprintf(pre, sizeof pre, "gap name=ee%d.pool in=%s\n", e, at);
            snprintf(feat, sizeof feat, "ee%d.pool", e);
        }
        if (unc) /* the gate reads the exit's own answer: after the head, on its four uncertainty features */
            snprintf(blocks[k], 600,
                     "%slinear name=ee%d.fc in=%s out=%d init=torch head=1 confidence=ee%d.conf\n"
                     "uncertainty name=ee%d.unc in=ee%d.fc\nlinear name=ee%d.conf in=ee%d.unc out=1 init=torch\n",
                     pre, e, feat, cnn->classes, e, e, e, e, e);
        else
            snprintf(blocks[k], 600,
                     "%slinear name=ee%d.conf in=%s out=1 init=torch\n"
                     "linear name=ee%d.fc in=%s out=%d init=torch head=1 confidence=ee%d.conf\n",
                     pre, e, feat, e, feat, cnn->classes, e);
    }
    if (!s) s = ee_net_insert_blocks(ctx, cnn, nodes, n, blocks, "eenet", out);
    for (int k = 0; k < n; k++) free(blocks[k]);
    return s;
}

void ee_eenet_costs(const ee_net *net, double *cost) {
    uint8_t back[EE_MAX_NODES], mine[EE_MAX_NODES];
    ee_net_backbone_mask(net, back);
    double flops[EE_MAX_NODES], total = 0;
    for (int i = 0; i < net->nnodes; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        flops[i] = in.flops;
        if (back[i]) total += in.flops;
    }
    for (int h = 0; h < net->nheads; h++) {
        int hn = net->heads[h];
        if (h == net->nheads - 1) { cost[h] = 1.0; break; }
        /* the exit's own nodes: what its head and confidence node read that is not backbone */
        memset(mine, 0, net->nnodes);
        mine[hn] = 1;
        if (net->nodes[hn].conf >= 0) mine[net->nodes[hn].conf] = 1;
        double c = 0;
        int deepest = 0;
        for (int i = ee_head_end(net, h); i >= 0; i--) {
            if (!mine[i]) continue;
            for (int k = 0; k < net->nodes[i].nin; k++) {
                int j = net->nodes[i].in[k];
                if (j < 0) continue;
                if (back[j]) { if (j > deepest) deepest = j; }
                else mine[j] = 1;
            }
            c += flops[i];
        }
        for (int i = 0; i <= deepest; i++)
            if (back[i]) c += flops[i];
        cost[h] = total > 0 ? c / total : 1;
    }
}

double ee_logsumexp(const float *z, int k) {
    float mx = z[0];
    for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
    double sum = 0;
    for (int j = 0; j < k; j++) sum += exp((double)z[j] - mx);
    return mx + log(sum);
}

ee_status ee_eenet_loss(ee_ctx *ctx, ee_net *net, const uint8_t *labels, int n, const double *cost, float lambda,
                        ee_eenet_loss_kind kind, double *loss, int *correct) {
    int H = net->nheads, N = H - 1, K = net->classes;
    if ((int)kind < 0 || kind > EE_EENET_V4_CE) return ee_fail(ctx, EE_ERR_ARG, "unknown EENet loss %d", kind);
    /* every exit's own cross-entropy added */
    int ce = kind == EE_EENET_V1_CE || kind == EE_EENET_V2_CE || kind == EE_EENET_V4_CE;
    if (ce) kind = kind == EE_EENET_V1_CE ? EE_EENET_V1 : kind == EE_EENET_V2_CE ? EE_EENET_V2 : EE_EENET_V4;
    if (H < 2) return ee_fail(ctx, EE_ERR_ARG, "the EENet loss needs a network with early exits");
    if (kind != EE_EENET_V0)
        for (int h = 0; h < N; h++)
            if (net->nodes[net->heads[h]].conf < 0)
                return ee_fail(ctx, EE_ERR_ARG, "exit %d has no confidence branch: the EENet loss needs EENet exits", h + 1);
    if (!(lambda >= 0) || !isfinite(lambda)) return ee_fail(ctx, EE_ERR_ARG, "lambda must be a number >= 0, not %g", lambda);
    int seed = net->training;
    for (int h = 0; h < H && seed; h++) {
        ee_node *hd = &net->nodes[net->heads[h]];
        if (!hd->dy || (hd->conf >= 0 && !net->nodes[hd->conf].dy))
            return ee_fail(ctx, EE_ERR_ARG, "head '%s' has no gradient buffer", hd->name);
    }
    double total = 0, p[EE_MAX_HEADS], hg[EE_MAX_HEADS], Y[EE_MAX_HEADS], C[EE_MAX_HEADS];
    double lse[EE_MAX_HEADS], dpy[EE_MAX_HEADS], dh[EE_MAX_HEADS];
    int right = 0;
    /* v4: every input's exit tag first, since the class balance of each confidence's cross-entropy is the
     * batch's share of inputs tagged at that exit */
    int *tag = NULL, tagged[EE_MAX_HEADS] = {0};
    if (kind == EE_EENET_V4) {
        tag = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
        if (!tag) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory for %d exit tags", n);
        for (int i = 0; i < n; i++) {
            int y = labels[i];
            if (y >= K) { free(tag); return ee_fail(ctx, EE_ERR_ARG, "label %d out of range for %d classes", y, K); }
            double best = INFINITY;
            tag[i] = N;
            for (int h = 0; h < H; h++) { /* strict <: ties go to the earlier exit, as in the code */
                const float *z = net->nodes[net->heads[h]].y + (size_t)i * K;
                double l = ee_logsumexp(z, K) - z[y] + lambda * (h == N ? 1.0 : cost[h]);
                if (l < best) { best = l; tag[i] = h; }
            }
            tagged[tag[i]]++;
        }
    }
    for (int i = 0; i < n; i++) {
        int y = labels[i];
        if (y >= K) return ee_fail(ctx, EE_ERR_ARG, "label %d out of range for %d classes", y, K);
        for (int h = 0; h < H; h++) { /* p_h[y] through the log-sum-exp, the confidences */
            const float *z = net->nodes[net->heads[h]].y + (size_t)i * K;
            float mx = z[0];
            int arg = 0;
            for (int j = 1; j < K; j++)
                if (z[j] > mx) { mx = z[j]; arg = j; }
            double sum = 0;
            for (int j = 0; j < K; j++) sum += exp((double)z[j] - mx);
            lse[h] = mx + log(sum);
            p[h] = exp(z[y] - lse[h]);
            int g = net->nodes[net->heads[h]].conf;
            hg[h] = g >= 0 && h < N ? 1.0 / (1.0 + exp(-(double)net->nodes[g].y[i])) : 0;
            if (h == N) right += arg == y;
        }
        double li = 0;
        if (kind == EE_EENET_V0) {
            for (int h = 0; h < H; h++) { li += lse[h] - net->nodes[net->heads[h]].y[(size_t)i * K + y]; dpy[h] = 0; }
        } else if (kind == EE_EENET_V4) {
            int t = tag[i];
            li += -log(fmax(p[t], 1e-300)) + lambda * (t == N ? 1.0 : cost[t]);
            for (int h = 0; h < H; h++) dpy[h] = h == t ? -1.0 / fmax(p[t], 1e-300) : 0;
            for (int h = 0; h < N; h++) { /* weight: the share of the other side, so both sides weigh the same */
                int pos = t == h;
                double w = pos ? (double)(n - tagged[h]) / n : (double)tagged[h] / n;
                li += -w * (pos ? fmax(log(hg[h]), -100.0) : fmax(log1p(-hg[h]), -100.0));
                dh[h] = w * (hg[h] - pos); /* d/dg of the cross-entropy, through the sigmoid */
            }
        } else {
            Y[N] = p[N];
            C[N] = 1;
            for (int h = N - 1; h >= 0; h--) {
                Y[h] = hg[h] * p[h] + (1 - hg[h]) * Y[h + 1];
                C[h] = hg[h] * cost[h] + (1 - hg[h]) * C[h + 1];
            }
            /* the mixed probability is clamped away from 0 so that its log stays finite */
            for (int h = 0; h <= (kind == EE_EENET_V1 ? 0 : N); h++) li += -log(fmax(Y[h], 1e-300)) + lambda * C[h];
            /* backwards through the mixing, from exit 0 on: G = dL/dY_h, B = dL/dC_h */
            double G = 0, B = 0;
            for (int h = 0; h < N; h++) {
                if (h == 0 || kind == EE_EENET_V2) { G += -1.0 / fmax(Y[h], 1e-300); B += lambda; }
                dpy[h] = hg[h] * G;
                dh[h] = G * (p[h] - Y[h + 1]) + B * (cost[h] - C[h + 1]);
                G *= 1 - hg[h];
                B *= 1 - hg[h];
            }
            if (kind == EE_EENET_V2) G += -1.0 / fmax(Y[N], 1e-300);
            dpy[N] = G;
        }
        if (ce)
            for (int h = 0; h < H; h++) li += lse[h] - net->nodes[net->heads[h]].y[(size_t)i * K + y];
        total += li;
        if (!seed) continue;
        for (int h = 0; h < H; h++) {
            ee_node *hd = &net->nodes[net->heads[h]];
            const float *z = hd->y + (size_t)i * K;
            float *gz = hd->dy + (size_t)i * K;
            /* dL/dz_j: v0 the cross-entropy's p_j - [j = y]; else dL/dp_y * p_y ([j = y] - p_j) */
            for (int j = 0; j < K; j++) {
                double pj = exp(z[j] - lse[h]);
                double d = kind == EE_EENET_V0 ? pj - (j == y) : dpy[h] * p[h] * ((j == y) - pj);
                if (ce) d += pj - (j == y);
                gz[j] = (float)(d / n);
            }
            if (hd->conf >= 0) {
                ee_node *g = &net->nodes[hd->conf];
                g->dy[i] = kind == EE_EENET_V0 || h == N ? 0.0f
                           : kind == EE_EENET_V4             ? (float)(dh[h] / n)
                                                             : (float)(dh[h] * hg[h] * (1 - hg[h]) / n);
            }
        }
    }
    free(tag);
    if (seed)
        for (int h = 0; h < H; h++) {
            ee_node *hd = &net->nodes[net->heads[h]];
            hd->seeded = 1;
            if (hd->conf >= 0) net->nodes[hd->conf].seeded = 1;
        }
    if (!isfinite(total)) return ee_fail(ctx, EE_ERR_NUMERIC, "loss is not finite (NaN or Inf): training diverged");
    if (loss) *loss = total / n;
    if (correct) *correct = right;
    return EE_OK;
}
