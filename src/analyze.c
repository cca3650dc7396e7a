/* analyze.c: the diagnosis half of the SDN paper. Per-sample exits, wasteful and destructive overthinking
 * (section 5 of the SDN paper, Kaya et al., ICML 2019), the confusion metric and how well a score flags the final output's
 * errors (AUROC and the reference's above/below-the-mean counts), BadNets-style trigger stamping for the
 * backdoor study, and Grad-CAM for any exit. Everything except Grad-CAM works on collected outputs, so it can be
 * checked on hand-built outputs. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ee_nominal_costs(int heads, double *cost) {
    int ics = heads - 1;
    for (int h = 0; h < ics; h++) cost[h] = ics <= 6 ? 0.15 * (h + 1) : 0.9 * (h + 1) / ics;
    cost[heads - 1] = 1.0;
}

void ee_overthinking(const ee_outputs *o, const double *cost, ee_overthink *r) {
    int H = o->heads;
    double nominal[EE_MAX_HEADS];
    ee_nominal_costs(H, nominal);
    memset(r, 0, sizeof *r);
    r->n = o->n;
    r->heads = H;
    double tot_nom = 0, tot = 0, cd[EE_MAX_HEADS] = {0}, cc[EE_MAX_HEADS] = {0};
    for (int i = 0; i < o->n; i++) {
        const uint8_t *p = o->pred + (size_t)i * H;
        const float *c = o->conf + (size_t)i * H;
        uint8_t y = o->label[i];
        int first = -1, ic_right = 0, end_wrong = p[H - 1] != y;
        for (int h = 0; h < H; h++) {
            if (p[h] != y) continue;
            r->correct[h]++;
            cc[h] += c[h];
            if (first < 0) { first = h; r->first_correct[h]++; }
            if (h < H - 1) {
                ic_right = 1;
                if (end_wrong) { r->destructive[h]++; cd[h] += c[h]; }
            }
        }
        for (int h = first < 0 ? H : first; h < H; h++) r->cum_correct[h]++;
        r->wasteful += ic_right;
        /* the oracle exits at the first IC that is right; a sample no IC gets right pays the full network */
        int oe = first >= 0 && first < H - 1 ? first : H - 1;
        r->oracle_exits[oe]++;
        tot_nom += nominal[oe];
        tot += cost[oe];
        if (end_wrong) {
            r->end_wrong++;
            r->destructive_any += ic_right;
        }
    }
    r->oracle_cost_nominal = o->n ? tot_nom / o->n : 0;
    r->oracle_cost = o->n ? tot / o->n : 0;
    r->destructive_frac = r->end_wrong ? (double)r->destructive_any / r->end_wrong : 0;
    for (int h = 0; h < H; h++) {
        r->conf_destructive[h] = r->destructive[h] ? cd[h] / r->destructive[h] : 0;
        r->conf_correct[h] = r->correct[h] ? cc[h] / r->correct[h] : 0;
    }
}

ee_status ee_confusion_scores(ee_ctx *ctx, const ee_outputs *o, float *score) {
    if (!o->prob) return ee_fail(ctx, EE_ERR_ARG, "the confusion metric needs every head's softmax (collect with probabilities)");
    int H = o->heads, K = o->classes;
    for (int i = 0; i < o->n; i++) {
        const float *fin = o->prob + ((size_t)i * H + H - 1) * K;
        double s = 0;
        for (int h = 0; h < H; h++) {
            const float *p = o->prob + ((size_t)i * H + h) * K;
            for (int k = 0; k < K; k++) s += fabs((double)p[k] - fin[k] + 1e-6);
        }
        score[i] = (float)s;
    }
    return EE_OK;
}

typedef struct { float s; uint8_t pos; } scored;
static int by_score(const void *a, const void *b) {
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

double ee_auroc(const float *score, const uint8_t *positive, int n) {
    scored *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return NAN;
    long npos = 0, nneg = 0;
    for (int i = 0; i < n; i++) { v[i].s = score[i]; v[i].pos = positive[i] != 0; npos += v[i].pos; }
    nneg = n - npos;
    if (!npos || !nneg) { free(v); return 0.5; }
    qsort(v, n, sizeof *v, by_score);
    /* Mann-Whitney: for each tie group, negatives below it count fully, negatives inside it one half */
    double wins = 0;
    long neg_below = 0;
    for (int i = 0; i < n;) {
        int j = i;
        long p = 0, q = 0;
        while (j < n && v[j].s == v[i].s) { p += v[j].pos; q += !v[j].pos; j++; }
        wins += p * (neg_below + 0.5 * q);
        neg_below += q;
        i = j;
    }
    free(v);
    return wins / ((double)npos * nneg);
}

void ee_score_stats_of(const ee_outputs *o, const float *score, int sign, ee_score_stats *st) {
    int H = o->heads;
    memset(st, 0, sizeof *st);
    double s[2] = {0}, s2[2] = {0};
    int cnt[2] = {0};
    uint8_t *wrong = malloc(o->n ? o->n : 1);
    float *signed_score = malloc((size_t)(o->n ? o->n : 1) * sizeof(float));
    for (int i = 0; i < o->n; i++) {
        int w = o->pred[(size_t)i * H + H - 1] != o->label[i];
        if (wrong) wrong[i] = (uint8_t)w;
        if (signed_score) signed_score[i] = sign * score[i];
        s[w] += score[i];
        s2[w] += (double)score[i] * score[i];
        cnt[w]++;
    }
    st->n_right = cnt[0];
    st->n_wrong = cnt[1];
    st->mean_right = cnt[0] ? s[0] / cnt[0] : 0;
    st->mean_wrong = cnt[1] ? s[1] / cnt[1] : 0;
    st->std_right = cnt[0] ? sqrt(fmax(0, s2[0] / cnt[0] - st->mean_right * st->mean_right)) : 0;
    st->std_wrong = cnt[1] ? sqrt(fmax(0, s2[1] / cnt[1] - st->mean_wrong * st->mean_wrong)) : 0;
    for (int i = 0; i < o->n; i++) {
        int w = o->pred[(size_t)i * H + H - 1] != o->label[i];
        double v = sign * (double)score[i];
        /* sign * score is meant to be high on errors */
        if (!w && cnt[1] && v > sign * st->mean_wrong) st->right_flagged++;
        if (w && cnt[0] && v < sign * st->mean_right) st->wrong_missed++;
    }
    st->auroc = wrong && signed_score ? ee_auroc(signed_score, wrong, o->n) : NAN;
    free(wrong);
    free(signed_score);
}

ee_status ee_dataset_stamp(ee_ctx *ctx, ee_dataset *ds, const ee_trigger *t, int *count) {
    if (count) *count = 0;
    if (t->size < 1 || t->size > ds->h || t->size > ds->w)
        return ee_fail(ctx, EE_ERR_ARG, "trigger size %d does not fit %dx%d images", t->size, ds->h, ds->w);
    int x0 = t->x < 0 ? ds->w - t->size + t->x + 1 : t->x, y0 = t->y < 0 ? ds->h - t->size + t->y + 1 : t->y;
    if (x0 < 0 || y0 < 0 || x0 + t->size > ds->w || y0 + t->size > ds->h)
        return ee_fail(ctx, EE_ERR_ARG, "a %dx%d trigger at (%d, %d) leaves the %dx%d image", t->size, t->size, t->x,
                       t->y, ds->w, ds->h);
    if (t->target >= ds->classes) return ee_fail(ctx, EE_ERR_ARG, "target class %d of %d", t->target, ds->classes);
    if (!(t->rate >= 0 && t->rate <= 1)) return ee_fail(ctx, EE_ERR_ARG, "poisoning rate %g is not in [0, 1]", t->rate);
    int stamped = 0;
    size_t plane = (size_t)ds->h * ds->w;
    for (int i = 0; i < ds->n; i++) {
        if (t->rate < 1 && !(ee_rng_uniform(ctx) < t->rate)) continue;
        for (int c = 0; c < ds->c; c++) {
            uint8_t *img = ds->pixels + ((size_t)i * ds->c + c) * plane;
            for (int y = y0; y < y0 + t->size; y++) memset(img + (size_t)y * ds->w + x0, 255, t->size);
        }
        if (t->target >= 0) ds->labels[i] = (uint8_t)t->target;
        stamped++;
    }
    if (count) *count = stamped;
    return EE_OK;
}

/* the last spatial map on the first-input path into a head, skipping the head's own pooling and reshaping */
static int gradcam_node(const ee_net *net, int head) {
    int i = net->heads[head];
    while (i >= 0) {
        const ee_node *nd = &net->nodes[i];
        int pooling = nd->kind == EE_KIND_LINEAR || nd->kind == EE_KIND_FLATTEN || nd->kind == EE_KIND_DROPOUT ||
                      nd->kind == EE_KIND_GAP || nd->kind == EE_KIND_MIXPOOL || nd->kind == EE_KIND_MAXPOOL || nd->kind == EE_KIND_AVGPOOL;
        if (!pooling && nd->out.h * nd->out.w > 1) return i;
        i = nd->in[0];
    }
    return -1;
}

/* PyTorch's bilinear interpolation with align_corners=False */
static void upsample(const float *src, int sh, int sw, float *dst, int dh, int dw) {
    for (int y = 0; y < dh; y++) {
        double fy = ((double)y + 0.5) * sh / dh - 0.5;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
        double ly = fy - y0;
        for (int x = 0; x < dw; x++) {
            double fx = ((double)x + 0.5) * sw / dw - 0.5;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
            double lx = fx - x0;
            dst[y * dw + x] = (float)((1 - ly) * ((1 - lx) * src[y0 * sw + x0] + lx * src[y0 * sw + x1]) +
                                      ly * ((1 - lx) * src[y1 * sw + x0] + lx * src[y1 * sw + x1]));
        }
    }
}

ee_status ee_gradcam(ee_ctx *ctx, ee_net *net, const float *x, int head, int cls, int node, float *cam,
                     int *cls_out, int *node_out) {
    if (head < 0 || head >= net->nheads) return ee_fail(ctx, EE_ERR_ARG, "no head %d (the network has %d)", head, net->nheads);
    if (cls >= net->classes) return ee_fail(ctx, EE_ERR_ARG, "no class %d (the network has %d)", cls, net->classes);
    if (node < 0) node = gradcam_node(net, head);
    if (node < 0 || node >= net->nnodes || net->nodes[node].out.h * net->nodes[node].out.w < 1)
        return ee_fail(ctx, EE_ERR_ARG, "no feature map to explain head %d", head);
    /* a net prepared for inference only is re-prepared for training at batch 1 (buffers for the gradients), and
     * for its former batch size afterwards */
    int old_batch = net->max_batch, old_training = net->training;
    ee_status s = ee_net_prepare(ctx, net, net->training ? net->max_batch : 1, 1);
    if (s) return s;
    /* an unfused eval forward keeps every activation; nothing may be frozen for the backward to reach the map */
    int frozen[EE_MAX_NODES];
    for (int i = 0; i < net->nnodes; i++) { frozen[i] = net->nodes[i].frozen; net->nodes[i].frozen = 0; }
    float *saved = NULL;
    size_t np = net->nparams;
    if ((s = ee_net_set_fusion(ctx, net, 0))) goto done;
    if (!(saved = malloc((np ? np : 1) * sizeof(float)))) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(saved, net->grads, np * sizeof(float)); /* a training loop's gradients survive */
    if ((s = ee_net_forward(ctx, net, x, 1, 0))) goto done;
    ee_node *hd = &net->nodes[net->heads[head]];
    int K = hd->out.c;
    if (cls < 0) {
        cls = 0;
        for (int k = 1; k < K; k++)
            if (hd->y[k] > hd->y[cls]) cls = k;
    }
    ee_net_zero_seeds(net);
    memset(hd->dy, 0, K * sizeof(float));
    hd->dy[cls] = 1;
    hd->seeded = 1;
    /* up to the node: its dy is then complete, and still in place (gradients share buffers in a backward) */
    if ((s = ee_net_backward_until(ctx, net, 1, node))) goto done;
    const ee_node *t = &net->nodes[node];
    int h = t->out.h, w = t->out.w, c = t->out.c;
    float *map = calloc((size_t)h * w, sizeof(float)), *alpha = calloc(c, sizeof(float));
    if (!map || !alpha) { free(map); free(alpha); s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); goto done; }
    if (t->seeded) {
        for (int p = 0; p < h * w; p++)
            for (int k = 0; k < c; k++) alpha[k] += t->dy[(size_t)p * c + k];
        for (int k = 0; k < c; k++) alpha[k] /= (float)(h * w);
        for (int p = 0; p < h * w; p++) {
            double v = 0;
            for (int k = 0; k < c; k++) v += (double)alpha[k] * t->y[(size_t)p * c + k];
            map[p] = v > 0 ? (float)v : 0;
        }
    }
    upsample(map, h, w, cam, net->in.h, net->in.w);
    float mx = 0;
    for (int p = 0; p < net->in.h * net->in.w; p++) mx = cam[p] > mx ? cam[p] : mx;
    if (mx > 0)
        for (int p = 0; p < net->in.h * net->in.w; p++) cam[p] /= mx;
    free(map);
    free(alpha);
    if (cls_out) *cls_out = cls;
    if (node_out) *node_out = node;
done:
    if (saved) { memcpy(net->grads, saved, np * sizeof(float)); free(saved); }
    ee_net_zero_seeds(net);
    ee_status s2 = ee_net_set_fusion(ctx, net, 1);
    if (!s) s = s2;
    for (int i = 0; i < net->nnodes; i++) net->nodes[i].frozen = frozen[i];
    if (!s && old_batch > net->max_batch) s = ee_net_prepare(ctx, net, old_batch, old_training);
    return s;
}
