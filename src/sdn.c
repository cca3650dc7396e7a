/* sdn.c: Shallow-Deep Networks: where internal classifiers (ICs) go and how they are attached.
 * Positions: the reference code's add_ic tables for its four backbones (attach points: after the block's pool
 * for VGG, the pre-ReLU residual sum for ResNet, the pre-activation block output for WRN, the block output for
 * MobileNet); for any other network, the block ends closest to 15/30/45/60/75/90% of the network's FLOPs.
 * An IC is three nodes inserted right after its attach node: mixpool to 4x4, flatten, linear (a head). */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double TARGETS[6] = {0.15, 0.30, 0.45, 0.60, 0.75, 0.90};

/* the reference tables, by the built-in backbones' node names */
static int reference_positions(const ee_net *net, int *nodes) {
    static const char *const resnet56[] = {"s1.b4.add", "s1.b8.add", "s2.b3.add", "s2.b7.add", "s3.b2.add", "s3.b6.add", 0};
    static const char *const vgg[] = {"b2.pool", "b4.pool", "b6.relu", "b7.pool", "b9.relu", "b10.pool", 0};
    static const char *const wrn[] = {"s1.b3.add", "s1.b5.add", "s2.b2.add", "s2.b4.add", "s3.b1.add", "s3.b3.add", 0};
    static const char *const mobilenet[] = {"b3.pw.relu", "b5.pw.relu", "b7.pw.relu", "b9.pw.relu", "b12.pw.relu", 0};
    const char *const *t = !strcmp(net->arch_name, "resnet56") ? resnet56 : !strcmp(net->arch_name, "vgg16bn") ? vgg
                         : !strcmp(net->arch_name, "wrn32_4") ? wrn : !strcmp(net->arch_name, "mobilenet") ? mobilenet : NULL;
    if (!t) return 0;
    int n = 0;
    for (; t[n]; n++) {
        /* VGG at 28 px drops its last pool; a block without a pool is read after its ReLU */
        int id = ee_net_find_node(net, t[n]);
        if (id < 0 && strstr(t[n], ".pool")) {
            char alt[EE_NAME];
            snprintf(alt, sizeof alt, "%.*s.relu", (int)(strstr(t[n], ".pool") - t[n]), t[n]);
            id = ee_net_find_node(net, alt);
        }
        if (id < 0) return 0;
        nodes[n] = id;
    }
    return n;
}

/* A block end: a residual sum, a pool, or a ReLU not followed by a pool; spatial output only. */
int ee_is_block_end(const ee_net *net, int i) {
    const ee_node *nd = &net->nodes[i];
    if (nd->out.h * nd->out.w < 2 || nd->consumers == 0) return 0; /* a map: spatial, or a sequence (1 x W) */
    if (nd->kind == EE_KIND_ADD || nd->kind == EE_KIND_MAXPOOL || nd->kind == EE_KIND_AVGPOOL) return 1;
    if (nd->kind != EE_KIND_RELU) return 0;
    for (int j = i + 1; j < net->nnodes; j++)
        for (int k = 0; k < net->nodes[j].nin; k++)
            if (net->nodes[j].in[k] == i && (net->nodes[j].kind == EE_KIND_MAXPOOL || net->nodes[j].kind == EE_KIND_ADD)) return 0;
    /* inside a residual block (its output feeds an add later through a conv chain) ReLUs are not block ends
     * when the network has residual sums of maps at all (a sum of vectors, such as the text CNN's bag-of-words
     * logits added to its head's, is no residual block) */
    for (int j = 0; j < net->nnodes; j++)
        if (net->nodes[j].kind == EE_KIND_ADD && net->nodes[j].out.h * net->nodes[j].out.w >= 2) return 0;
    return 1;
}

int ee_sdn_flops_positions(const ee_net *net, int *nodes, int max) {
    double total = 0, *cum = malloc(net->nnodes * sizeof(double));
    if (!cum) return 0;
    for (int i = 0; i < net->nnodes; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        total += in.flops;
        cum[i] = total;
    }
    int n = 0, last = -1;
    for (int t = 0; t < 6 && n < max; t++) {
        int best = -1;
        double bd = 1e300;
        for (int i = last + 1; i < net->nnodes; i++) {
            if (!ee_is_block_end(net, i)) continue;
            double d = fabs(cum[i] / total - TARGETS[t]);
            if (d < bd) { bd = d; best = i; }
        }
        if (best < 0) break;
        nodes[n++] = last = best;
    }
    free(cum);
    return n;
}

int ee_sdn_default_positions(const ee_net *net, int *nodes, int max) {
    int tmp[8];
    int n = reference_positions(net, tmp);
    if (n > 0 && n <= max) { memcpy(nodes, tmp, n * sizeof(int)); return n; }
    return ee_sdn_flops_positions(net, nodes, max);
}

/* A new network: cnn with the text blocks[k] inserted right after node nodes[k] (increasing) of its canonical text
 * (line i + 2 is node i); backbone weights, statistics and metadata copied by name, the new nodes initialised
 * from the context's RNG. */
ee_status ee_net_insert_blocks(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int n, char *const *blocks,
                               const char *srcname, ee_net **out) {
    *out = NULL;
    const char *src = cnn->arch_text;
    size_t cap = strlen(src) + 1;
    for (int k = 0; k < n; k++) cap += strlen(blocks[k]);
    char *text = malloc(cap), *w = text;
    if (!text) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    int line = 0, k = 0;
    for (const char *s = src; *s;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s + 1) : strlen(s);
        memcpy(w, s, len);
        w += len;
        s += len;
        if (k < n && line - 2 == nodes[k]) {
            size_t bl = strlen(blocks[k]);
            memcpy(w, blocks[k], bl);
            w += bl;
            k++;
        }
        line++;
    }
    *w = 0;
    ee_net *net = NULL;
    ee_status s = ee_net_from_text(ctx, text, srcname, &net);
    free(text);
    if (s) return s;
    if ((s = ee_net_init(ctx, net))) { ee_net_free(net); return s; }
    for (int t = 0; t < cnn->ntens; t++) {
        const ee_tensor *a = &cnn->tens[t];
        int j = ee_net_find_tensor(net, a->name);
        if (j < 0) continue;
        memcpy((net->tens[j].is_state ? net->state : net->params) + net->tens[j].off,
               (a->is_state ? cnn->state : cnn->params) + a->off, a->count * sizeof(float));
    }
    for (int i = 0; i < cnn->nmeta && !s; i++) s = ee_net_set_meta(ctx, net, cnn->meta_keys[i], cnn->meta_vals[i]);
    if (s) { ee_net_free(net); return s; }
    ee_net_params_changed(net);
    *out = net;
    return EE_OK;
}

/* checks exit positions for a CNN without exits: increasing nodes with a map, before the final layer. A head
 * before the first position is kept (the text CNN's bag of words reads the input: an exit at no cost); heads
 * further on mean the network already has early exits. */
ee_status ee_check_exit_positions(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int n, const char *what) {
    if (cnn->sealed) return ee_net_check_unsealed(ctx, cnn, "attach exits");
    if (n < 1 || n > EE_MAX_HEADS - 1) return ee_fail(ctx, EE_ERR_ARG, "between 1 and %d %s, not %d", EE_MAX_HEADS - 1, what, n);
    for (int k = 0; k < n; k++) {
        if (nodes[k] < 0 || nodes[k] >= cnn->nnodes - 1 || (k && nodes[k] <= nodes[k - 1]))
            return ee_fail(ctx, EE_ERR_ARG, "%s positions must be increasing nodes before the final layer", what);
        if (cnn->nodes[nodes[k]].out.h < 1) return ee_fail(ctx, EE_ERR_ARG, "bad %s position", what);
    }
    for (int h = 0; h < cnn->nheads - 1; h++)
        if (ee_head_end(cnn, h) >= nodes[0]) return ee_fail(ctx, EE_ERR_ARG, "the network already has early exits");
    return EE_OK;
}

ee_status ee_sdn_attach(ee_ctx *ctx, const ee_net *cnn, const int *nodes, int nic, ee_net **out) {
    *out = NULL;
    ee_status s = ee_check_exit_positions(ctx, cnn, nodes, nic, "internal classifiers");
    if (s) return s;
    /* an IC: three lines after its attach node */
    const char *init = !strcmp(cnn->arch_name, "vgg16bn") ? "normal001" : "torch";
    char *blocks[EE_MAX_HEADS] = {0};
    for (int k = 0; k < nic && !s; k++) {
        blocks[k] = malloc(400);
        if (!blocks[k]) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); break; }
        if (cnn->nodes[nodes[k]].out.h == 1) /* a sequence (text): max over time, as the network's own head */
            snprintf(blocks[k], 400, "gmp name=ic%d.pool in=%s\nlinear name=ic%d.fc in=ic%d.pool out=%d init=%s head=1\n",
                     k + 1, cnn->nodes[nodes[k]].name, k + 1, k + 1, cnn->classes, init);
        else
            snprintf(blocks[k], 400,
                     "mixpool name=ic%d.pool in=%s out=4\nflatten name=ic%d.flat in=ic%d.pool\n"
                     "linear name=ic%d.fc in=ic%d.flat out=%d init=%s head=1\n",
                     k + 1, cnn->nodes[nodes[k]].name, k + 1, k + 1, k + 1, k + 1, cnn->classes, init);
    }
    if (!s) s = ee_net_insert_blocks(ctx, cnn, nodes, nic, blocks, "sdn", out);
    for (int k = 0; k < nic; k++) free(blocks[k]);
    return s;
}

int ee_sidenet_default_position(const ee_net *cnn) {
    double total = 0, cum = 0, bd = 1e300;
    for (int i = 0; i < cnn->nnodes; i++) {
        ee_node_info in;
        ee_net_node_info(cnn, i, &in);
        total += in.flops;
    }
    int best = -1;
    for (int i = 0; i < cnn->nnodes; i++) {
        ee_node_info in;
        ee_net_node_info(cnn, i, &in);
        cum += in.flops;
        if (!ee_is_block_end(cnn, i)) continue;
        double d = fabs(cum / total - 0.30);
        if (d < bd) { bd = d; best = i; }
    }
    return best;
}

ee_status ee_sidenet_attach(ee_ctx *ctx, const ee_net *cnn, int node, int hidden, int pool, ee_net **out) {
    *out = NULL;
    ee_status s = ee_check_exit_positions(ctx, cnn, &node, 1, "SideNet");
    if (s) return s;
    if (hidden < 1 || hidden > 65536) return ee_fail(ctx, EE_ERR_ARG, "a SideNet needs 1 to 65536 hidden units, not %d", hidden);
    const ee_node *at = &cnn->nodes[node];
    if (pool < 1) return ee_fail(ctx, EE_ERR_ARG, "the SideNet's pooling grid must be at least 1, not %d", pool);
    char blk[640];
    int len = 0;
    if (at->out.h == 1 && at->out.w > 1) /* a sequence (text): max over time */
        len = snprintf(blk, sizeof blk, "gmp name=side.pool in=%s\nflatten name=side.flat in=side.pool\n", at->name);
    else if (at->out.h > pool || at->out.w > pool) {
        if (at->out.h != at->out.w)
            return ee_fail(ctx, EE_ERR_ARG, "node '%s' has a %dx%d map: the SideNet pools square maps", at->name,
                           at->out.h, at->out.w);
        int g = pool; /* the largest grid up to pool that divides the map: 7x7 with pool 4 pools to 1x1 */
        while (at->out.h % g) g--;
        int k = at->out.h / g;
        len = snprintf(blk, sizeof blk, "avgpool name=side.pool in=%s k=%d stride=%d\n"
                       "flatten name=side.flat in=side.pool\n", at->name, k, k);
    } else
        len = snprintf(blk, sizeof blk, "flatten name=side.flat in=%s\n", at->name);
    snprintf(blk + len, sizeof blk - (size_t)len,
             "linear name=side.fc1 in=side.flat out=%d init=torch\nrelu name=side.relu in=side.fc1\n"
             "linear name=side.fc2 in=side.relu out=%d init=torch head=1\n", hidden, cnn->classes);
    char *blocks[1] = {blk};
    return ee_net_insert_blocks(ctx, cnn, &node, 1, blocks, "sidenet", out);
}

/* marks the nodes the final head depends on: the backbone (the CNN), as opposed to IC heads */
void ee_net_backbone_mask(const ee_net *net, uint8_t *mask) {
    memset(mask, 0, net->nnodes);
    mask[net->nnodes - 1] = 1;
    for (int i = net->nnodes - 1; i >= 0; i--)
        if (mask[i])
            for (int k = 0; k < net->nodes[i].nin; k++)
                if (net->nodes[i].in[k] >= 0) mask[net->nodes[i].in[k]] = 1;
}

void ee_net_head_costs(const ee_net *net, double *frac, double *flops) {
    uint8_t mask[EE_MAX_NODES];
    ee_net_backbone_mask(net, mask);
    double total = 0, backbone = 0, cum[EE_MAX_HEADS];
    int h = 0;
    for (int i = 0; i < net->nnodes; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        total += in.flops;
        if (mask[i]) backbone += in.flops;
        if (h < net->nheads && ee_head_end(net, h) == i) cum[h++] = total;
    }
    for (int k = 0; k < net->nheads; k++) {
        if (frac) frac[k] = cum[k] / backbone;
        if (flops) flops[k] = cum[k];
    }
}

void ee_net_freeze_backbone(ee_net *net, int on) {
    uint8_t mask[EE_MAX_NODES];
    ee_net_backbone_mask(net, mask);
    for (int i = 0; i < net->nnodes; i++) net->nodes[i].frozen = on && mask[i];
    net->any_frozen = on;
}

ee_status ee_sdn_strip(ee_ctx *ctx, const ee_net *sdn, ee_net **out) {
    *out = NULL;
    if (sdn->sealed) return ee_net_check_unsealed(ctx, sdn, "strip the internal classifiers");
    uint8_t mask[EE_MAX_NODES];
    ee_net_backbone_mask(sdn, mask);
    /* canonical text: line 0 arch, line 1 input, line i + 2 node i; drop the IC nodes and their head marks */
    size_t len = strlen(sdn->arch_text);
    char *text = malloc(len + 1), *w = text;
    if (!text) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    int line = 0;
    for (const char *s = sdn->arch_text; *s; line++) {
        const char *e = strchr(s, '\n');
        size_t l = e ? (size_t)(e - s + 1) : strlen(s);
        if (line < 2 || mask[line - 2]) {
            memcpy(w, s, l);
            w[l] = 0;
            char *hd = line - 2 < sdn->nnodes - 1 ? strstr(w, " head=1") : NULL;
            if (hd) memmove(hd, hd + 7, strlen(hd + 7) + 1);
            w += strlen(w);
        }
        s += l;
    }
    *w = 0;
    ee_status st = ee_net_from_text(ctx, text, "cnn", out);
    free(text);
    if (st) return st;
    ee_net *cnn = *out;
    for (int t = 0; t < cnn->ntens; t++) {
        int j = ee_net_find_tensor(sdn, cnn->tens[t].name);
        const ee_tensor *a = &sdn->tens[j];
        memcpy((cnn->tens[t].is_state ? cnn->state : cnn->params) + cnn->tens[t].off,
               (a->is_state ? sdn->state : sdn->params) + a->off, a->count * sizeof(float));
    }
    for (int i = 0; i < sdn->nmeta && !st; i++) st = ee_net_set_meta(ctx, cnn, sdn->meta_keys[i], sdn->meta_vals[i]);
    if (st) { ee_net_free(cnn); *out = NULL; return st; }
    ee_net_params_changed(cnn);
    return EE_OK;
}
