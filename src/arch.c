/* arch.c: the architecture text format (docs/format.md): a strict line parser, the canonical writer, and the
 * built-in SDN backbones (ResNet-20/56, VGG-16-BN, WRN-32-4, MobileNet v1) generated as text.
 * One line per node: `KIND key=value ...`. Unknown kinds or keys, missing or malformed values and
 * dangling references are errors that name the line. */
#include "internal.h"
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const ee_init_names[EE_INIT_COUNT] = {"torch", "kaiming_out", "vgg", "xavier", "normal001"};

typedef struct {
    ee_ctx *ctx;
    const char *src;
    int line;
    /* confidence= names a later node (a gate that reads its head's logits): resolved after the last line */
    int npend, pend_node[EE_MAX_HEADS], pend_line[EE_MAX_HEADS];
    char pend_name[EE_MAX_HEADS][EE_NAME];
} parser;

static ee_status perr(parser *p, const char *fmt, const char *a, const char *b) {
    char msg[300];
    snprintf(msg, sizeof msg, fmt, a, b ? b : "");
    return ee_fail(p->ctx, EE_ERR_FORMAT, "%s:%d: %s", p->src, p->line, msg);
}

static ee_status parse_int(parser *p, const char *key, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        char range[64];
        snprintf(range, sizeof range, "an integer in [%d, %d]", lo, hi);
        return perr(p, "key '%s' needs %s", key, range);
    }
    *out = (int)x;
    return EE_OK;
}
static ee_status parse_float(parser *p, const char *key, const char *v, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi)) return perr(p, "key '%s' has a bad number '%s'", key, v);
    *out = x;
    return EE_OK;
}

/* an earlier node of the net being parsed, or -2 */
static int find_node(const ee_net *net, const char *name) {
    int i = ee_net_find_node(net, name);
    return i < 0 ? -2 : i;
}

/* a layer key's value in a node (ints and floats are kept in their own types, read here as double) */
static void *key_slot(ee_node *nd, const ee_layer_key *key) { return (char *)&nd->arg + key->slot; }
static double get_key(const ee_node *nd, const ee_layer_key *key) {
    const char *at = (const char *)&nd->arg + key->slot;
    if (key->type == EE_KEY_INIT) return nd->init;
    return key->type == EE_KEY_INT ? *(const int *)(const void *)at : *(const float *)(const void *)at;
}
static void put_key(ee_node *nd, const ee_layer_key *key, double v) {
    if (key->type == EE_KEY_INIT) nd->init = (int)v;
    else if (key->type == EE_KEY_INT) *(int *)key_slot(nd, key) = (int)v;
    else *(float *)key_slot(nd, key) = (float)v;
}
static ee_status set_key(parser *p, ee_node *nd, const ee_layer_key *key, const char *v) {
    if (key->type == EE_KEY_INIT) {
        for (int j = 0; j < EE_INIT_COUNT; j++)
            if (!strcmp(v, ee_init_names[j])) { nd->init = j; return EE_OK; }
        return perr(p, "unknown init '%s'", v, NULL);
    }
    if (key->type == EE_KEY_INT) return parse_int(p, key->name, v, (int)key->lo, (int)key->hi, key_slot(nd, key));
    return parse_float(p, key->name, v, (float)key->lo, (float)key->hi, key_slot(nd, key));
}

static ee_status parse_line(parser *p, ee_net *net, char *line, int *saw_input) {
    char *tok[32];
    int nt = 0;
    for (char *sv = NULL, *s = strtok_r(line, " \t\r", &sv); s; s = strtok_r(NULL, " \t\r", &sv)) {
        if (nt == 32) return perr(p, "too many fields%s", "", NULL);
        tok[nt++] = s;
    }
    if (!nt) return EE_OK;
    if (!strcmp(tok[0], "arch")) {
        if (nt != 2 || strlen(tok[1]) >= EE_NAME) return perr(p, "'arch' takes one name%s", "", NULL);
        strcpy(net->arch_name, tok[1]);
        return EE_OK;
    }
    if (!strcmp(tok[0], "input")) {
        if (*saw_input) return perr(p, "a second 'input' line%s", "", NULL);
        int got = 0, seen[3] = {0, 0, 0};
        for (int i = 1; i < nt; i++) {
            char *eq = strchr(tok[i], '=');
            if (!eq) return perr(p, "'%s' is not key=value", tok[i], NULL);
            *eq = 0;
            int *dst = !strcmp(tok[i], "c") ? &net->in.c : !strcmp(tok[i], "h") ? &net->in.h
                     : !strcmp(tok[i], "w") ? &net->in.w : NULL;
            if (!dst) return perr(p, "unknown key '%s' for input (c, h, w)", tok[i], NULL);
            if (seen[dst == &net->in.c ? 0 : dst == &net->in.h ? 1 : 2]++) return perr(p, "key '%s' is given twice", tok[i], NULL);
            ee_status s = parse_int(p, tok[i], eq + 1, 1, 4096, dst);
            if (s) return s;
            got++;
        }
        if (got != 3) return perr(p, "input needs c=, h= and w=%s", "", NULL);
        *saw_input = 1;
        return EE_OK;
    }
    int kind = -1;
    for (int k = 0; k < ee_nlayers; k++)
        if (!strcmp(tok[0], ee_layers[k]->name)) kind = k;
    if (kind < 0) return perr(p, "unknown layer kind '%s'", tok[0], NULL);
    const ee_layer_ops *ops = ee_layers[kind];
    if (!*saw_input) return perr(p, "the 'input' line must come before '%s'", tok[0], NULL);
    if (net->nnodes == EE_MAX_NODES) return perr(p, "more than %s nodes", "512", NULL);
    ee_node *nd = &net->nodes[net->nnodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->in[0] = net->nnodes - 1;
    nd->nin = 1;
    snprintf(nd->name, EE_NAME, "%s%d", ops->name, net->nnodes);
    nd->conf = -1;
    int have[EE_ARGS_BYTES] = {0}, head = 0, named = 0, inputs = 0, headed = 0, confed = 0;
    for (int i = 1; i < nt; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq || eq == tok[i]) return perr(p, "'%s' is not key=value", tok[i], NULL);
        *eq = 0;
        const char *k = tok[i], *v = eq + 1;
        if (!*v) return perr(p, "key '%s' has no value", k, NULL);
        int j = -1, *seen = &j;
        ee_status s = EE_OK;
        if (!strcmp(k, "name")) {
            seen = &named;
            if (strlen(v) >= EE_NAME || strchr(v, ',')) return perr(p, "bad node name '%s'", v, NULL);
            strcpy(nd->name, v);
        } else if (!strcmp(k, "in")) {
            seen = &inputs;
            char buf[160];
            snprintf(buf, sizeof buf, "%s", v);
            nd->nin = 0;
            for (char *q = buf, *c; q; q = c) {
                c = strchr(q, ',');
                if (c) *c++ = 0;
                if (nd->nin == 2) return perr(p, "at most two inputs%s", "", NULL);
                int id = !strcmp(q, "input") ? -1 : find_node(net, q);
                if (id < -1) return perr(p, "input '%s' is not an earlier node", q, NULL);
                nd->in[nd->nin++] = id;
            }
        } else if (!strcmp(k, "head")) {
            seen = &headed;
            s = parse_int(p, k, v, 0, 1, &head);
        } else if (!strcmp(k, "confidence")) { /* the head's learned confidence branch (an EENet exit) */
            seen = &confed;
            nd->conf = find_node(net, v);
            if (nd->conf < 0) { /* a later node, or none: checked at the end */
                if (p->npend == EE_MAX_HEADS || strlen(v) >= EE_NAME) return perr(p, "confidence '%s': too many or too long", v, NULL);
                p->pend_node[p->npend] = net->nnodes;
                p->pend_line[p->npend] = p->line;
                snprintf(p->pend_name[p->npend++], EE_NAME, "%s", v);
            }
        } else {
            for (int t = 0; t < ops->nkeys; t++)
                if (!strcmp(k, ops->keys[t].name)) j = t;
            if (j < 0) return perr(p, "unknown key '%s' for %s", k, ops->name);
            seen = &have[j];
            s = set_key(p, nd, &ops->keys[j], v);
        }
        if (s) return s;
        if ((*seen)++) return perr(p, "key '%s' is given twice", k, NULL);
    }
    if (find_node(net, nd->name) >= 0) return perr(p, "node name '%s' is used twice", nd->name, NULL);
    char missing[128] = "";
    for (int t = 0; t < ops->nkeys; t++) {
        const ee_layer_key *key = &ops->keys[t];
        if (key->required) {
            size_t len = strlen(missing);
            snprintf(missing + len, sizeof missing - len, "%s%s=", len ? " and " : "", key->name);
        }
        if (have[t] || key->type == EE_KEY_INIT) continue;
        double def = key->def;
        for (int u = 0; key->def_from && u < t; u++)
            if (!strcmp(ops->keys[u].name, key->def_from)) def = get_key(nd, &ops->keys[u]);
        put_key(nd, key, def);
    }
    for (int t = 0; t < ops->nkeys; t++)
        if (ops->keys[t].required && !have[t]) return perr(p, "%s needs %s", ops->name, missing);
    if (nd->nin != ops->nin) {
        if (ops->nin == 2) return perr(p, "%s needs in=A,B (two inputs)", ops->name, NULL);
        return perr(p, "%s takes one input", ops->name, NULL);
    }
    if (confed && !head) return perr(p, "confidence= needs head=1 on the same line%s", "", NULL);
    if (head) {
        if (net->nheads == EE_MAX_HEADS) return perr(p, "too many heads%s", "", NULL);
        net->heads[net->nheads++] = net->nnodes;
    }
    net->nnodes++;
    return EE_OK;
}

ee_status ee_arch_parse(ee_ctx *ctx, const char *text, const char *srcname, ee_net *net) {
    parser p = {.ctx = ctx, .src = srcname ? srcname : "<arch>"};
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    if (!buf) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    memcpy(buf, text, len + 1);
    int saw_input = 0;
    ee_status s = EE_OK;
    for (char *line = buf, *next; line && !s; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        p.line++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        s = parse_line(&p, net, line, &saw_input);
    }
    free(buf);
    if (s) return s;
    if (!saw_input) return ee_fail(ctx, EE_ERR_FORMAT, "%s: no 'input c= h= w=' line", p.src);
    if (!net->nnodes) return ee_fail(ctx, EE_ERR_FORMAT, "%s: no layers", p.src);
    if (!net->nheads) net->heads[net->nheads++] = net->nnodes - 1;
    if (net->heads[net->nheads - 1] != net->nnodes - 1)
        return ee_fail(ctx, EE_ERR_FORMAT, "%s: the last node must be the final head", p.src);
    for (int i = 0; i < p.npend; i++) {
        p.line = p.pend_line[i];
        int g = find_node(net, p.pend_name[i]);
        if (g < 0) return perr(&p, "confidence '%s' is not a node", p.pend_name[i], NULL);
        net->nodes[p.pend_node[i]].conf = g;
    }
    /* a gate after its head is decided before the rest of the network runs: only the exit's own nodes between */
    uint8_t mask[EE_MAX_NODES];
    ee_net_backbone_mask(net, mask);
    for (int h = 0; h + 1 < net->nheads; h++) {
        int hd = net->heads[h], g = net->nodes[hd].conf;
        for (int j = hd + 1; j <= g; j++)
            if (mask[j] || j == net->heads[h + 1])
                return ee_fail(ctx, EE_ERR_FORMAT, "%s: the confidence node '%s' of head '%s' must come before node '%s'",
                               p.src, net->nodes[g].name, net->nodes[hd].name, net->nodes[j].name);
    }
    return EE_OK;
}

/* ---------------------------------------------------------------- canonical text */
typedef struct { char *s; size_t len, cap; int oom; } sbuf;
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if (b->s && b->len + (size_t)n < b->cap) { b->len += n; return; }
        size_t nc = (b->cap + n + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = nc;
    }
}

char *ee_arch_to_text(const ee_net *net) {
    sbuf b = {0};
    sb_printf(&b, "arch %s\ninput c=%d h=%d w=%d\n", net->arch_name[0] ? net->arch_name : "custom", net->in.c,
              net->in.h, net->in.w);
    for (int i = 0; i < net->nnodes; i++) {
        const ee_node *nd = &net->nodes[i];
        const ee_layer_ops *ops = ee_layers[nd->kind];
        sb_printf(&b, "%s name=%s", ops->name, nd->name);
        /* inputs are always explicit, so that lines (e.g. internal classifiers) can be inserted anywhere */
        sb_printf(&b, " in=%s", nd->in[0] < 0 ? "input" : net->nodes[nd->in[0]].name);
        if (nd->nin == 2) sb_printf(&b, ",%s", nd->in[1] < 0 ? "input" : net->nodes[nd->in[1]].name);
        for (int t = 0; t < ops->nkeys; t++) {
            const ee_layer_key *key = &ops->keys[t];
            double v = get_key(nd, key);
            if (key->quiet && key->def_from) {
                int same = 0;
                for (int u = 0; u < t; u++)
                    if (!strcmp(ops->keys[u].name, key->def_from)) same = get_key(nd, &ops->keys[u]) == v;
                if (same) continue;
            }
            if (key->quiet && !key->def_from && v == key->def) continue;
            if (key->type == EE_KEY_INIT) sb_printf(&b, " %s=%s", key->name, ee_init_names[nd->init]);
            else if (key->type == EE_KEY_INT) sb_printf(&b, " %s=%d", key->name, (int)v);
            else { /* %g where it reads back as the same float (momentum=0.1), all nine digits where not */
                char g[32];
                snprintf(g, sizeof g, "%g", v);
                if (strtof(g, NULL) != (float)v) snprintf(g, sizeof g, "%.9g", v);
                sb_printf(&b, " %s=%s", key->name, g);
            }
        }
        for (int h = 0; h < net->nheads; h++)
            if (net->heads[h] == i) sb_printf(&b, " head=1");
        if (nd->conf >= 0) sb_printf(&b, " confidence=%s", net->nodes[nd->conf].name);
        sb_printf(&b, "\n");
    }
    if (b.oom) { free(b.s); return NULL; }
    return b.s;
}

/* ---------------------------------------------------------------- built-in backbones (../docs/design.md) */
static void conv_bn_relu(sbuf *b, const char *nm, const char *in, int out, int k, int stride, int groups, int bias,
                         const char *init, int relu) {
    sb_printf(b, "conv name=%s.conv%s%s out=%d k=%d stride=%d pad=%d groups=%d bias=%d init=%s\n", nm, in ? " in=" : "",
              in ? in : "", out, k, stride, k / 2, groups, bias, init);
    sb_printf(b, "bn name=%s.bn\n", nm);
    if (relu) sb_printf(b, "relu name=%s.relu\n", nm);
}

static void build_resnet(sbuf *b, int nblocks, int h, int classes) {
    int stem_stride = h >= 64 ? 2 : 1, c = 16;
    conv_bn_relu(b, "stem", NULL, 16, 3, stem_stride, 1, 0, "kaiming_out", 1);
    char prev[EE_NAME] = "stem.relu";
    for (int st = 0; st < 3; st++) {
        int w = 16 << st;
        for (int j = 0; j < nblocks; j++) {
            int s = (j == 0 && st > 0) ? 2 : 1;
            char nm[24], a[32], sc[32];
            snprintf(nm, sizeof nm, "s%d.b%d", st + 1, j + 1);
            snprintf(a, sizeof a, "%s.1", nm);
            conv_bn_relu(b, a, prev, w, 3, s, 1, 0, "kaiming_out", 1);
            snprintf(a, sizeof a, "%s.2", nm);
            conv_bn_relu(b, a, NULL, w, 3, 1, 1, 0, "kaiming_out", 0);
            if (s != 1 || c != w) {
                snprintf(sc, sizeof sc, "%s.sc", nm);
                conv_bn_relu(b, sc, prev, w, 1, s, 1, 0, "kaiming_out", 0);
                sb_printf(b, "add name=%s.add in=%s.2.bn,%s.sc.bn\n", nm, nm, nm);
            } else {
                sb_printf(b, "add name=%s.add in=%s.2.bn,%s\n", nm, nm, prev);
            }
            sb_printf(b, "relu name=%s.out\n", nm);
            snprintf(prev, sizeof prev, "%s.out", nm);
            c = w;
        }
    }
    sb_printf(b, "gap name=pool\nlinear name=fc out=%d init=normal001 head=1\n", classes);
}

static void build_vgg(sbuf *b, int h, int classes) {
    static const int ch[13] = {64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512};
    static const int pool[13] = {0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1};
    int size = h;
    for (int i = 0; i < 13; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "b%d", i + 1);
        conv_bn_relu(b, nm, NULL, ch[i], 3, 1, 1, 1, "vgg", 1);
        /* a pool that would shrink the map below 1x1 (28-pixel inputs) is left out */
        if (pool[i] && size >= 2) { sb_printf(b, "maxpool name=b%d.pool k=2 stride=2\n", i + 1); size /= 2; }
    }
    int fc1 = size > 1 ? 2048 : 512, fc2 = size > 1 ? 1024 : 512;
    sb_printf(b, "flatten name=flat\n");
    sb_printf(b, "linear name=fc1 out=%d init=normal001\nrelu name=fc1.relu\ndropout name=fc1.drop p=0.5\n", fc1);
    /* the reference has no ReLU after the second FC: kept */
    sb_printf(b, "linear name=fc2 out=%d init=normal001\ndropout name=fc2.drop p=0.5\n", fc2);
    sb_printf(b, "linear name=fc out=%d init=normal001 head=1\n", classes);
}

static void build_wrn(sbuf *b, int h, int classes) {
    int stem_stride = h >= 64 ? 2 : 1, c = 16;
    sb_printf(b, "conv name=stem out=16 k=3 stride=%d pad=1 bias=1 init=xavier\n", stem_stride);
    char prev[EE_NAME] = "stem";
    for (int st = 0; st < 3; st++) {
        int w = 64 << st;
        for (int j = 0; j < 5; j++) {
            int s = (j == 0 && st > 0) ? 2 : 1;
            char nm[24];
            snprintf(nm, sizeof nm, "s%d.b%d", st + 1, j + 1);
            sb_printf(b, "bn name=%s.bn1 in=%s\nrelu name=%s.relu1\n", nm, prev, nm);
            sb_printf(b, "conv name=%s.conv1 out=%d k=3 stride=1 pad=1 bias=1 init=xavier\n", nm, w);
            sb_printf(b, "dropout name=%s.drop p=0.3\nbn name=%s.bn2\nrelu name=%s.relu2\n", nm, nm, nm);
            sb_printf(b, "conv name=%s.conv2 out=%d k=3 stride=%d pad=1 bias=1 init=xavier\n", nm, w, s);
            if (s != 1 || c != w) {
                sb_printf(b, "conv name=%s.sc in=%s out=%d k=1 stride=%d pad=0 bias=1 init=xavier\n", nm, prev, w, s);
                sb_printf(b, "add name=%s.add in=%s.conv2,%s.sc\n", nm, nm, nm);
            } else {
                sb_printf(b, "add name=%s.add in=%s.conv2,%s\n", nm, nm, prev);
            }
            snprintf(prev, sizeof prev, "%s.add", nm);
            c = w;
        }
    }
    /* the reference builds this BN with momentum 0.9 */
    sb_printf(b, "bn name=head.bn momentum=0.9\nrelu name=head.relu\ngap name=pool\n");
    sb_printf(b, "linear name=fc out=%d init=normal001 head=1\n", classes);
}

static void build_mobilenet(sbuf *b, int classes) {
    static const int cfg[13][2] = {{64, 1}, {128, 2}, {128, 1}, {256, 2}, {256, 1}, {512, 2}, {512, 1},
                                   {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};
    conv_bn_relu(b, "stem", NULL, 32, 3, 1, 1, 0, "torch", 1);
    int c = 32;
    for (int i = 0; i < 13; i++) {
        char nm[24];
        snprintf(nm, sizeof nm, "b%d.dw", i + 1);
        conv_bn_relu(b, nm, NULL, c, 3, cfg[i][1], c, 0, "torch", 1);
        snprintf(nm, sizeof nm, "b%d.pw", i + 1);
        conv_bn_relu(b, nm, NULL, cfg[i][0], 1, 1, 1, 0, "torch", 1);
        c = cfg[i][0];
    }
    sb_printf(b, "gap name=pool\nlinear name=fc out=%d init=torch head=1\n", classes);
}

/* A text CNN in the style of Kim (2014): an embedding of the tokens (hashed words, 64 wide, or bytes, 32),
 * 1 x 5 convolutions with batch norm and ReLU (three of them halving the sequence), max over time, dropout 0.5
 * and a linear head. Four blocks rather than Kim's one, so that early exits have places to go. */
static void build_textcnn(sbuf *b, int c, int classes) {
    static const int cfg[4][2] = {{64, 1}, {128, 2}, {128, 2}, {256, 2}};
    /* small initial vectors: a word first seen at test time must not add noise to the max over time */
    if (c == 2) /* hashed words; and a bag of words beside the convolutions: logistic regression on the words' log
                 * counts, an exit of its own (its loss keeps it a classifier when the convolutions have learned
                 * the training set) whose logits are added to the head's (docs/design.md, "Text") */
        sb_printf(b, "embed name=emb out=64 vocab=65536 init=normal001\n"
                  "bag name=bow in=input out=%d vocab=65536 init=normal001 head=1\n", classes);
    else sb_printf(b, "embed name=emb out=32 vocab=256 init=normal001\n"); /* bytes */
    for (int i = 0; i < 4; i++)
        sb_printf(b, "conv name=b%d.conv%s out=%d k=5 kh=1 stride=%d pad=2 padh=0 bias=0 init=torch\nbn name=b%d.bn\n"
                  "relu name=b%d.relu\n", i + 1, i ? "" : " in=emb", cfg[i][0], cfg[i][1], i + 1, i + 1);
    sb_printf(b, "gmp name=pool\ndropout name=drop p=0.5\nlinear name=fc out=%d init=torch%s\n", classes,
              c == 2 ? "\nadd name=out in=fc,bow head=1" : " head=1");
}

char *ee_arch_builtin(const char *arch, int c, int h, int w, int classes, ee_ctx *ctx) {
    sbuf b = {0};
    const char *nm = arch;
    if (!strcmp(arch, "wideresnet32_4")) nm = "wrn32_4";
    sb_printf(&b, "arch %s\ninput c=%d h=%d w=%d\n", nm, c, h, w);
    if (!strcmp(arch, "resnet56")) build_resnet(&b, 9, h, classes);
    else if (!strcmp(arch, "resnet20")) build_resnet(&b, 3, h, classes);
    else if (!strcmp(arch, "resnet110")) build_resnet(&b, 18, h, classes);
    else if (!strcmp(arch, "vgg16bn") || !strcmp(arch, "vgg16")) build_vgg(&b, h, classes);
    else if (!strcmp(nm, "wrn32_4")) build_wrn(&b, h, classes);
    else if (!strcmp(arch, "mobilenet")) build_mobilenet(&b, classes);
    else if (!strcmp(arch, "textcnn")) {
        if ((c != 1 && c != 2) || h != 1) {
            free(b.s);
            ee_fail(ctx, EE_ERR_ARG, "textcnn reads text (1 x 1 x length bytes, or 2 x 1 x length hashed words), not "
                    "%dx%dx%d inputs", c, h, w);
            return NULL;
        }
        build_textcnn(&b, c, classes);
    } else {
        free(b.s);
        ee_fail(ctx, EE_ERR_ARG, "unknown architecture '%s' (resnet20, resnet56, resnet110, vgg16bn, wrn32_4, mobilenet, "
                "textcnn)", arch);
        return NULL;
    }
    if (b.oom) { free(b.s); ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); return NULL; }
    return b.s;
}

ee_status ee_builtin_text(ee_ctx *ctx, const char *arch, int c, int h, int w, int classes, char **text) {
    *text = ee_arch_builtin(arch, c, h, w, classes, ctx);
    return *text ? EE_OK : EE_ERR_ARG;
}
