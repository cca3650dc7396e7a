/* exits.c: early exits. Per-head predictions and confidences of a dataset, the exit rule (the first IC whose
 * max softmax is >= q; otherwise the final output, or optionally the most confident of all outputs as in the
 * reference), threshold calibration on a held-out split, and real early-exit inference that stops at the exit
 * for a single sample and compacts the batch after every IC so that exited samples cost nothing more. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ee_outputs_free(ee_outputs *o) {
    if (!o) return;
    free(o->pred); free(o->conf); free(o->label); free(o->prob);
    free(o);
}

/* softmax max and argmax of one logit row */
static void top1(const float *z, int k, uint8_t *pred, float *conf) {
    int arg = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[arg]) arg = j;
    double sum = 0;
    for (int j = 0; j < k; j++) sum += exp((double)z[j] - z[arg]);
    *pred = (uint8_t)arg;
    *conf = (float)(1.0 / sum);
}

ee_status ee_collect_outputs(ee_ctx *ctx, ee_net *net, const ee_dataset *ds, int batch, int with_prob,
                             ee_outputs **out) {
    *out = NULL;
    if (batch <= 0) batch = 256;
    if (batch > ds->n) batch = ds->n;
    if (ds->c != net->in.c || ds->h != net->in.h || ds->w != net->in.w)
        return ee_fail(ctx, EE_ERR_ARG, "data is %dx%dx%d but the network takes %dx%dx%d", ds->c, ds->h, ds->w, net->in.c,
                       net->in.h, net->in.w);
    ee_status s = net->max_batch < batch ? ee_net_prepare(ctx, net, batch, net->training) : EE_OK;
    if (s) return s;
    int H = net->nheads, K = net->classes;
    ee_outputs *o = calloc(1, sizeof *o);
    float *x = ee_alloc(ee_shape_size(net->in) * batch * sizeof(float));
    int *idx = malloc(batch * sizeof(int));
    if (o) {
        o->n = ds->n; o->heads = H; o->classes = K;
        if (with_prob) o->prob = malloc((size_t)ds->n * H * K * sizeof(float));
        o->pred = malloc((size_t)ds->n * H);
        o->conf = malloc((size_t)ds->n * H * sizeof(float));
        o->label = malloc(ds->n);
    }
    if (!o || !x || !idx || !o->pred || !o->conf || !o->label || (with_prob && !o->prob)) {
        ee_outputs_free(o); ee_free(x); free(idx);
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < ds->n && !s; i += batch) {
        int n = ds->n - i < batch ? ds->n - i : batch;
        for (int j = 0; j < n; j++) idx[j] = i + j;
        ee_dataset_batch(ctx, ds, idx, n, NULL, x, o->label + i);
        if ((s = ee_net_forward(ctx, net, x, n, 0))) break;
        for (int h = 0; h < H; h++) {
            const float *z = ee_net_head_output(net, h);
            for (int j = 0; j < n; j++) {
                top1(z + (size_t)j * K, K, &o->pred[(size_t)(i + j) * H + h], &o->conf[(size_t)(i + j) * H + h]);
                if (o->prob) {
                    float *p = o->prob + ((size_t)(i + j) * H + h) * K;
                    const float *zj = z + (size_t)j * K;
                    double sum = 0, mx = zj[o->pred[(size_t)(i + j) * H + h]];
                    for (int k = 0; k < K; k++) sum += exp(zj[k] - mx);
                    for (int k = 0; k < K; k++) p[k] = (float)(exp(zj[k] - mx) / sum);
                }
            }
        }
    }
    ee_free(x); free(idx);
    if (s) { ee_outputs_free(o); return s; }
    *out = o;
    return EE_OK;
}

int ee_exit_rule(const ee_outputs *o, int i, float q, int fallback, int *answer) {
    int H = o->heads, e = H - 1, use = H - 1;
    const float *c = o->conf + (size_t)i * H;
    for (int h = 0; h < H - 1; h++)
        if (c[h] >= q) { e = use = h; break; }
    if (e == H - 1 && fallback)
        for (int h = 0; h < H; h++)
            if (c[h] > c[use]) use = h;
    *answer = use;
    return e;
}

void ee_exit_simulate(const ee_outputs *o, const double *cost, float q, int fallback, ee_exit_stats *st) {
    int H = o->heads, right = 0;
    double total = 0;
    memset(st, 0, sizeof *st);
    for (int i = 0; i < o->n; i++) {
        const uint8_t *p = o->pred + (size_t)i * H;
        int use, e = ee_exit_rule(o, i, q, fallback, &use);
        st->exits[e]++;
        total += cost[e];
        right += p[use] == o->label[i];
    }
    st->acc = (double)right / o->n;
    st->cost = total / o->n;
    st->q = q;
}

void ee_head_accuracy(const ee_outputs *o, double *acc) {
    for (int h = 0; h < o->heads; h++) {
        int right = 0;
        for (int i = 0; i < o->n; i++) right += o->pred[(size_t)i * o->heads + h] == o->label[i];
        acc[h] = (double)right / o->n;
    }
}

ee_status ee_calibrate(ee_ctx *ctx, const ee_outputs *val, const double *cost, double max_drop, int fallback,
                       ee_exit_stats *best) {
    if (!(max_drop >= 0 && max_drop <= 1)) return ee_fail(ctx, EE_ERR_ARG, "the accuracy drop must be in [0, 1]");
    if (val->heads < 2) return ee_fail(ctx, EE_ERR_ARG, "the network has no internal classifiers to calibrate");
    double acc[EE_MAX_HEADS];
    ee_head_accuracy(val, acc);
    double floor_acc = acc[val->heads - 1] - max_drop;
    /* q = 1.01 never exits early: always allowed */
    ee_exit_simulate(val, cost, 1.01f, fallback, best);
    for (int i = 0; i <= 1000 + 40; i++) {
        /* a uniform grid, then a fine one near 1 where softmax confidences pile up */
        float q = i <= 1000 ? i / 1000.0f : (float)(1.0 - pow(10.0, -3.0 - (i - 1000) * 0.1));
        ee_exit_stats st;
        ee_exit_simulate(val, cost, q, fallback, &st);
        if (st.acc >= floor_acc - 1e-12 && (st.cost < best->cost - 1e-12 || (fabs(st.cost - best->cost) <= 1e-12 && st.acc > best->acc)))
            *best = st;
    }
    return EE_OK;
}

/* Real early exits: run up to each IC, let samples whose confidence reaches q leave, compact the rest. */
ee_status ee_infer_exits(ee_ctx *ctx, ee_net *net, const float *x, int n, float q, int fallback, uint8_t *pred,
                         float *conf, uint8_t *exit_head) {
    if (n > net->max_batch) return ee_fail(ctx, EE_ERR_ARG, "batch of %d exceeds the prepared size %d", n, net->max_batch);
    int H = net->nheads, K = net->classes, from = 0, active = n;
    int orig[4096], *map = n <= 4096 ? orig : malloc(n * sizeof(int)), keep_buf[4096], *keep = n <= 4096 ? keep_buf : malloc(n * sizeof(int));
    float best_c[4096], *bc = n <= 4096 ? best_c : malloc(n * sizeof(float));
    if (!map || !keep || !bc) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) { map[i] = i; bc[i] = -1; }
    ee_status s = EE_OK;
    for (int h = 0; h < H && active > 0 && !s; h++) {
        int to = h == H - 1 ? net->nnodes : net->heads[h] + 1;
        if ((s = ee_net_forward_range(ctx, net, from ? NULL : x, from, to, active, 0))) break;
        const float *z = ee_net_head_output(net, h);
        int nk = 0;
        for (int j = 0; j < active; j++) {
            uint8_t p;
            float c;
            top1(z + (size_t)j * K, K, &p, &c);
            int o = map[j];
            if (h == H - 1 || c >= q) {
                if (h == H - 1 && fallback && bc[o] > c) { exit_head[o] = (uint8_t)h; continue; }
                pred[o] = p; conf[o] = c; exit_head[o] = (uint8_t)h;
            } else {
                if (fallback && c > bc[o]) { bc[o] = c; pred[o] = p; conf[o] = c; }
                keep[nk++] = j;
            }
        }
        if (h == H - 1) break;
        if (nk < active && nk > 0) {
            if ((s = ee_net_compact(ctx, net, to, keep, nk))) break;
            for (int j = 0; j < nk; j++) map[j] = map[keep[j]];
        }
        active = nk;
        from = to;
    }
    if (map != orig) free(map);
    if (keep != keep_buf) free(keep);
    if (bc != best_c) free(bc);
    return s;
}
