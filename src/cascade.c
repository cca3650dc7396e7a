/* cascade.c: network selection (Bolukbasi et al., ICML 2017): separately trained networks run one after the other
 * on the same input, a cheap one first, and a policy after each decides to stop or to run the next. eenn builds
 * the cascade as one network: every member's nodes, renamed m1., m2., ..., each member reading the input, every
 * member's heads kept in order (a member with early exits brings them along). Each member's final head is then
 * an exit of the cascade, so the early-exit machinery applies unchanged: cumulative costs are what a sample has
 * run (every earlier member included), real inference compacts the batch between networks, and the backbone (the
 * ancestors of the last node) is the last member alone, the network the cascade is measured against. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* appends member k's node lines (its canonical text without the arch and input lines) with every node name, input
 * and confidence link prefixed "m<k>." */
static int append_member(char **buf, size_t *len, size_t *cap, const char *text, int k) {
    const char *s = strchr(text, '\n');
    if (!s) return 0;
    s = strchr(s + 1, '\n'); /* past "arch" and "input" */
    if (!s) return 0;
    s++;
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t ll = e ? (size_t)(e - s) : strlen(s);
        /* the worst case: every token gains a prefix */
        size_t need = *len + ll * 3 + 64;
        if (need > *cap) {
            size_t nc = need * 2;
            char *nb = realloc(*buf, nc);
            if (!nb) return 0;
            *buf = nb;
            *cap = nc;
        }
        char line[4096];
        if (ll >= sizeof line) return 0;
        memcpy(line, s, ll);
        line[ll] = 0;
        char *w = *buf + *len;
        int first = 1;
        for (char *sv = NULL, *t = strtok_r(line, " ", &sv); t; t = strtok_r(NULL, " ", &sv)) {
            w += sprintf(w, "%s", first ? "" : " ");
            first = 0;
            char *eq = strchr(t, '=');
            if (eq && (!strncmp(t, "name=", 5) || !strncmp(t, "in=", 3) || !strncmp(t, "confidence=", 11))) {
                *eq = 0;
                w += sprintf(w, "%s=", t);
                int firstv = 1;
                for (char *v = eq + 1, *c; v; v = c) {
                    c = strchr(v, ',');
                    if (c) *c++ = 0;
                    if (!firstv) *w++ = ',';
                    w += strcmp(v, "input") ? sprintf(w, "m%d.%s", k, v) : sprintf(w, "input");
                    firstv = 0;
                }
            } else
                w += sprintf(w, "%s", t);
        }
        w += sprintf(w, "\n");
        *len = (size_t)(w - *buf);
        s = e ? e + 1 : s + ll;
    }
    return 1;
}

ee_status ee_cascade_build(ee_ctx *ctx, ee_net *const *members, int n, ee_net **out) {
    *out = NULL;
    if (n < 2 || n > 8) return ee_fail(ctx, EE_ERR_ARG, "a cascade needs 2 to 8 networks, not %d", n);
    int heads = 0;
    for (int k = 0; k < n; k++) {
        const ee_net *m = members[k];
        if (m->sealed) return ee_net_check_unsealed(ctx, m, "join a cascade");
        if (m->in.c != members[0]->in.c || m->in.h != members[0]->in.h || m->in.w != members[0]->in.w)
            return ee_fail(ctx, EE_ERR_ARG, "network %d takes %dx%dx%d inputs, network 1 %dx%dx%d", k + 1, m->in.c, m->in.h,
                           m->in.w, members[0]->in.c, members[0]->in.h, members[0]->in.w);
        if (m->classes != members[0]->classes)
            return ee_fail(ctx, EE_ERR_ARG, "network %d has %d classes, network 1 %d", k + 1, m->classes, members[0]->classes);
        heads += m->nheads;
    }
    if (heads > EE_MAX_HEADS) return ee_fail(ctx, EE_ERR_ARG, "%d heads in all: a cascade holds at most %d", heads, EE_MAX_HEADS);
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    if (!text) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    len = (size_t)snprintf(text, cap, "arch cascade\ninput c=%d h=%d w=%d\n", members[0]->in.c, members[0]->in.h,
                           members[0]->in.w);
    for (int k = 0; k < n; k++)
        if (!append_member(&text, &len, &cap, members[k]->arch_text, k + 1)) {
            free(text);
            return ee_fail(ctx, EE_ERR_NOMEM, "out of memory (or a line too long) joining network %d", k + 1);
        }
    ee_net *net = NULL;
    ee_status s = ee_net_from_text(ctx, text, "cascade", &net);
    free(text);
    if (s) return s;
    if ((s = ee_net_init(ctx, net))) { ee_net_free(net); return s; }
    for (int k = 0; k < n; k++) {
        const ee_net *m = members[k];
        for (int t = 0; t < m->ntens; t++) {
            char nm[EE_NAME + 48];
            snprintf(nm, sizeof nm, "m%d.%s", k + 1, m->tens[t].name);
            int j = ee_net_find_tensor(net, nm);
            if (j < 0 || net->tens[j].count != m->tens[t].count) {
                ee_net_free(net);
                return ee_fail(ctx, EE_ERR_FORMAT, "network %d: tensor %s has no place in the cascade", k + 1, m->tens[t].name);
            }
            memcpy((net->tens[j].is_state ? net->state : net->params) + net->tens[j].off,
                   (m->tens[t].is_state ? m->state : m->params) + m->tens[t].off, m->tens[t].count * sizeof(float));
        }
    }
    ee_net_params_changed(net);
    *out = net;
    return EE_OK;
}

/* the parts of a network that read the input alone: node s starts one if no node from s on reads a node before s */
static int starts_part(const ee_net *net, int s) {
    for (int i = s; i < net->nnodes; i++)
        for (int j = 0; j < net->nodes[i].nin; j++)
            if (net->nodes[i].in[j] >= 0 && net->nodes[i].in[j] < s) return 0;
    return 1;
}

int ee_cascade_jumps(const ee_net *net, int *jump_to) {
    int H = net->nheads, part[EE_MAX_HEADS], parts = 1;
    for (int h = 0; h < EE_MAX_HEADS; h++) jump_to[h] = 0;
    part[0] = 0;
    for (int h = 1; h < H; h++) {
        if (starts_part(net, ee_head_end(net, h - 1) + 1)) parts++;
        part[h] = parts - 1;
    }
    if (parts < 3) return 0;
    int first_last = 0; /* the first head of the last part */
    while (part[first_last] != parts - 1) first_last++;
    int n = 0;
    for (int h = 0; h < H - 1; h++)
        if (part[h] < parts - 2 && part[h + 1] != part[h]) { jump_to[h] = first_last; n++; }
    return n;
}
