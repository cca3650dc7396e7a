/* text.c: the token tables of text models (max over time, `gmp`, is with the other pools in pool.c). Their input
 * is one id per position (1 x H x W values, or 2 x H x W: the id's high and low byte, for ids beyond 255; a text
 * sample, docs/format.md); no gradient flows to the ids.
 * - `embed`: a table of vectors, one per token id, as PyTorch's nn.Embedding; its output is the id's row at every
 *   position (out x H x W).
 * - `bag`: a bag of words, as nn.EmbeddingBag(mode="sum") with per-sample weights: the sum of the rows of the
 *   distinct ids of a sample, each weighted by log(1 + its count), the weights of a sample scaled to unit L2 norm
 *   (out x 1 x 1). Id 0, the padding of a text sample, is not a word. The classic features of a linear text
 *   classifier (log counts, normalised so a long text weighs as much as a short one), inside a network. */
#include "init.h"
#include <math.h>
#include <string.h>

typedef struct { int out, vocab; } embed_args;
_Static_assert(sizeof(embed_args) <= EE_ARGS_BYTES, "embed arguments");
#define EMB(nd) EE_ARGS(nd, embed_args)

static ee_status embed_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)net;
    if (nd->ins.c != 1 && nd->ins.c != 2)
        return ee_fail(ctx, EE_ERR_FORMAT, "embed '%s' needs one token id per position (1 channel, or 2: high and low "
                       "byte), got %d channels", nd->name, nd->ins.c);
    double weights = (double)EMB(nd)->vocab * EMB(nd)->out;
    if (weights > EE_MAX_LAYER_PARAMS)
        return ee_fail(ctx, EE_ERR_FORMAT, "embed '%s': %d x %d = %.4g weights, more than the %.0f a layer may have",
                       nd->name, EMB(nd)->vocab, EMB(nd)->out, weights, EE_MAX_LAYER_PARAMS);
    nd->out.c = EMB(nd)->out;
    nd->out.h = nd->ins.h;
    nd->out.w = nd->ins.w;
    nd->p_len = (size_t)EMB(nd)->vocab * EMB(nd)->out;
    return EE_OK;
}
static void embed_tensors(ee_net *net, ee_node *nd) {
    ee_net_add_tensor(net, nd, "weight", 0, nd->p_off, 2, EMB(nd)->vocab, EMB(nd)->out, 0, 0);
}
/* N(0, 1), as nn.Embedding (init=torch), or N(0, 0.01) (init=normal001: rows that training never reaches, such
 * as hashed words seen only at test time, then add next to nothing) */
static void embed_init(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    ee_fill_normal(ctx, net->params + nd->p_off, nd->p_len, nd->init == EE_INIT_NORMAL001 ? 0.01f : 1.0f);
}
static void embed_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    (void)nd;
    *macs = *flops = *prof = 0; /* a lookup: no arithmetic */
}
/* the token id at a position (C values: the id, or its high and low byte), which must be a row of the table */
static int token(const float *v, int C, int vocab) {
    long t = lrintf(v[0]);
    if (C == 2) {
        long lo = lrintf(v[1]);
        if (t < 0 || t > 255 || lo < 0 || lo > 255) return -1;
        t = t * 256 + lo;
    }
    return t >= 0 && t < vocab ? (int)t : -1;
}
static ee_status embed_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)train;
    const float *x = ee_node_input(net, nd, 0), *w = net->params + nd->p_off;
    int E = EMB(nd)->out, V = EMB(nd)->vocab, C = nd->ins.c;
    size_t P = (size_t)n * nd->ins.h * nd->ins.w;
    int bad = -1;
#pragma omp parallel for schedule(static) reduction(max : bad)
    for (size_t q = 0; q < P; q++) {
        int t = token(x + q * C, C, V);
        if (t < 0) { bad = (int)(q % 0x7fffffff); memset(nd->y + q * E, 0, sizeof(float) * E); continue; }
        memcpy(nd->y + q * E, w + (size_t)t * E, sizeof(float) * E);
    }
    if (bad >= 0)
        return ee_fail(ctx, EE_ERR_ARG, "embed '%s': input value %g is not a token id below %d", nd->name,
                       x[(size_t)bad * C], V);
    return EE_OK;
}
static ee_status embed_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    (void)ctx;
    const float *x = ee_node_input(net, nd, 0);
    float *dw = net->grads + nd->p_off;
    int E = EMB(nd)->out, V = EMB(nd)->vocab, C = nd->ins.c;
    size_t P = (size_t)n * nd->ins.h * nd->ins.w;
    memset(dw, 0, sizeof(float) * nd->p_len);
    /* rows are shared between positions: one thread per slice of the embedding dimension */
#pragma omp parallel for schedule(static)
    for (int e0 = 0; e0 < E; e0 += 8) {
        int e1 = e0 + 8 < E ? e0 + 8 : E;
        for (size_t q = 0; q < P; q++) {
            int t = token(x + q * C, C, V);
            if (t < 0) continue;
            for (int e = e0; e < e1; e++) dw[(size_t)t * E + e] += nd->dy[q * E + e];
        }
    }
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc); /* ids have no gradient */
    if (dx && !acc) memset(dx, 0, sizeof(float) * P * C);
    return EE_OK;
}
/* the scratch of a bag (the node's scratch buffer): a vocab-long counter array, zeroed when allocated and left
 * zeroed by every call, then the distinct ids of one sample and their weights */
typedef struct { unsigned short *cnt; int *ids; float *wts; } bag_ws;

/* bag: the distinct ids of sample x and their weights into ws, in order of first occurrence. Returns the number
 * of distinct ids, or -1 - q for the first position q that holds no token id. */
static int bag_words(const float *x, int C, int V, int P, const bag_ws *ws) {
    unsigned short *cnt = ws->cnt;
    int *ids = ws->ids, m = 0;
    float *wts = ws->wts;
    for (int q = 0; q < P; q++) {
        int t = token(x + (size_t)q * C, C, V);
        if (t < 0) {
            for (int i = 0; i < m; i++) cnt[ids[i]] = 0; /* the counters this sample touched */
            return -1 - q;
        }
        if (t && cnt[t]++ == 0) ids[m++] = t;
    }
    double ss = 0;
    for (int i = 0; i < m; i++) {
        wts[i] = log1pf((float)cnt[ids[i]]);
        cnt[ids[i]] = 0;
        ss += (double)wts[i] * wts[i];
    }
    float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
    for (int i = 0; i < m; i++) wts[i] *= inv;
    return m;
}
static ee_status bag_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    ee_status s = embed_shape(ctx, net, nd);
    if (s) return s;
    if ((size_t)nd->ins.h * nd->ins.w > 65535)
        return ee_fail(ctx, EE_ERR_FORMAT, "bag '%s': %d x %d positions, more than the 65,535 a bag counts", nd->name,
                       nd->ins.h, nd->ins.w);
    nd->out.h = nd->out.w = 1;
    return EE_OK;
}
static ee_status bag_scratch(ee_ctx *ctx, ee_node *nd, bag_ws *ws) {
    size_t V = (size_t)EMB(nd)->vocab, P = (size_t)nd->ins.h * nd->ins.w;
    size_t cb = (V * sizeof(unsigned short) + 15) / 16 * 16;
    int fresh = nd->priv_bytes < cb + P * 8;
    unsigned char *p = ee_node_scratch(nd, cb + P * 8);
    if (!p) return ee_fail(ctx, EE_ERR_NOMEM, "bag '%s': out of memory", nd->name);
    if (fresh) memset(p, 0, cb);
    *ws = (bag_ws){(unsigned short *)(void *)p, (int *)(void *)(p + cb), (float *)(void *)(p + cb + P * 4)};
    return EE_OK;
}
static ee_status bag_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)train;
    const float *x = ee_node_input(net, nd, 0), *w = net->params + nd->p_off;
    int E = EMB(nd)->out, V = EMB(nd)->vocab, C = nd->ins.c, P = nd->ins.h * nd->ins.w;
    bag_ws ws;
    ee_status s = bag_scratch(ctx, nd, &ws);
    if (s) return s;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * P * C;
        float *y = nd->y + (size_t)i * E;
        int m = bag_words(xi, C, V, P, &ws);
        if (m < 0)
            return ee_fail(ctx, EE_ERR_ARG, "bag '%s': input value %g is not a token id below %d", nd->name,
                           xi[(size_t)(-1 - m) * C], V);
        memset(y, 0, sizeof(float) * E);
        for (int k = 0; k < m; k++) {
            const float *row = w + (size_t)ws.ids[k] * E;
            for (int e = 0; e < E; e++) y[e] += ws.wts[k] * row[e];
        }
    }
    return EE_OK;
}
/* the words are counted again rather than kept from the forward pass: O(H x W) a sample, and no state that a
 * forward on other inputs (an evaluation between training steps) could leave stale */
static ee_status bag_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    const float *x = ee_node_input(net, nd, 0);
    float *dw = net->grads + nd->p_off;
    int E = EMB(nd)->out, V = EMB(nd)->vocab, C = nd->ins.c, P = nd->ins.h * nd->ins.w;
    bag_ws ws;
    ee_status s = bag_scratch(ctx, nd, &ws);
    if (s) return s;
    memset(dw, 0, sizeof(float) * nd->p_len);
    for (int i = 0; i < n; i++) {
        const float *dy = nd->dy + (size_t)i * E;
        int m = bag_words(x + (size_t)i * P * C, C, V, P, &ws); /* forward checked the ids */
        for (int k = 0; k < m; k++) {
            float *row = dw + (size_t)ws.ids[k] * E;
            for (int e = 0; e < E; e++) row[e] += ws.wts[k] * dy[e];
        }
    }
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    if (dx && !acc) memset(dx, 0, sizeof(float) * (size_t)n * P * C);
    return EE_OK;
}
static void bag_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    *macs = (double)nd->ins.h * nd->ins.w * EMB(nd)->out; /* at most one weighted row per position */
    *flops = *prof = 2 * *macs;
}

static const ee_layer_key embed_keys[] = {
    {"out", EE_KEY_INT, offsetof(ee_layer_args, any) + offsetof(embed_args, out), 1, 65536, 0, 1, NULL, 0},
    {"vocab", EE_KEY_INT, offsetof(ee_layer_args, any) + offsetof(embed_args, vocab), 1, 1 << 24, 256, 0, NULL, 0},
    EE_KEY("init", EE_KEY_INIT, any, 0, 0, 0),
};
const ee_layer_ops ee_embed_ops = {
    .name = "embed", .keys = embed_keys, .nkeys = EE_NKEYS(embed_keys), .nin = 1, .shape = embed_shape,
    .tensors = embed_tensors, .init = embed_init, .forward = embed_forward, .backward = embed_backward,
    .count = embed_count,
};
const ee_layer_ops ee_bag_ops = {
    .name = "bag", .keys = embed_keys, .nkeys = EE_NKEYS(embed_keys), .nin = 1, .shape = bag_shape,
    .tensors = embed_tensors, .init = embed_init, .forward = bag_forward, .backward = bag_backward,
    .count = bag_count, .release = ee_node_release_scratch,
};
