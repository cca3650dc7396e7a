/* infer.c: `eenn infer`: classify images and dataset files with early exits. */
#include "common.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_image.h>

static const char *infer_help =
    "usage: eenn infer MODEL INPUT... [options]\n"
    "Classifies inputs with early exits: PNG or JPEG images (converted to the model's channels and resized\n"
    "to its input size), IDX image files (MNIST, Fashion-MNIST; .gz or raw) and CIFAR binary batches; for a text\n"
    "model, text files or - (standard input): one example a line (\\t, \\n and \\\\ escaped, as in a dataset's\n"
    "text column), or a dataset's .tsv file (label<TAB>text), whose labels are shown.\n"
    "Prints, for each input, the class, its confidence, the exit taken and its cost (%% of the CNN).\n"
    "  --q X          one shared max-softmax threshold (default: the model's calibrated policy; 1.01 = never\n"
    "                 exit early)\n"
    "  --deadline D   anytime: at most D per image, as a share of the CNN's FLOPs ('40%') or in microseconds\n"
    "                 ('300us'); when it runs out the most confident exit so far answers, and the output says so\n"
    "  --batch-budget B  a FLOPs budget for each batch, B of the CNN's FLOPs per image ('30%'), spent on the images\n"
    "                 the exits are least sure of (budgeted batch classification)\n"
    "  --fallback     the most confident output when no IC fires (default: as calibrated)\n"
    "  --limit N      at most N images from each IDX or CIFAR file (default 20); at most N examples from each\n"
    "                 text input (default: all)\n"
    "  --max-image-side N  refuse PNG/JPEG images wider or taller than N pixels before decoding them (8192)\n"
    "  --batch N      images per batch (default 64)   --threads N   --json (one object per input)\n"
    "  --split NODE --server URL  edge and server (docs/serve.md): run up to NODE and its exits here, send the\n"
    "                 inputs that did not exit to `eenn serve` at URL (http://HOST:PORT), merge its answers; if it\n"
    "                 fails or is slower than --timeout, they answer from the most confident exit here (degraded)\n"
    "  --wire fp32|fp16|int8  what the split outputs travel as (fp32: the same answers as one machine)\n"
    "  --timeout MS   the server's time to answer a batch (5000)\n"
    "  --send activations|inputs  what goes to the server for the inputs that did not exit: the split node's\n"
    "                 outputs (the server resumes there), or the inputs themselves (it runs them from the start;\n"
    "                 fewer bytes when the input is smaller than the activation)\n";

typedef struct { float *x; int n, cap; char **names; size_t img; } input_set;

static void add_input(input_set *s, const float *x, const char *name) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->x = realloc(s->x, s->cap * s->img * sizeof(float));
        s->names = realloc(s->names, s->cap * sizeof(char *));
        if (!s->x || !s->names) die("out of memory");
    }
    memcpy(s->x + (size_t)s->n * s->img, x, s->img * sizeof(float));
    s->names[s->n++] = strdup(name);
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* text: one example a line (or label<TAB>text in a .tsv file), its first W bytes as the model's input */
static void load_text(const ee_net *net, const char *path, input_set *s, int limit) {
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) die("%s: cannot open", path);
    int tsv = has_suffix(path, ".tsv"), n = 0;
    float *x = malloc(s->img * sizeof(float));
    uint16_t *ids = malloc(sizeof(uint16_t) * W);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    for (int ln = 1; n < limit && (len = getline(&line, &cap, f)) != -1; ln++) {
        if (len && line[len - 1] == '\n') line[--len] = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (!len) continue;
        char *text = line, *label = NULL;
        if (tsv) {
            char *tab = strchr(line, '\t');
            if (!tab || tab == line) die("%s:%d: no label and tab (a .tsv line is label<TAB>text)", path, ln);
            *tab = 0;
            label = line;
            text = tab + 1;
        }
        size_t k = 0; /* unescaped in place */
        for (char *r = text; *r; r++) {
            char c = *r;
            if (c == '\\' && r[1]) { r++; c = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r; }
            text[k++] = c;
        }
        ee_text_tokenize(text, k, C == 2 ? EE_TOKENS_WORDS : EE_TOKENS_BYTES, W, ids);
        for (int q = 0; q < W; q++) {
            if (C == 2) { x[q * 2] = (float)(ids[q] >> 8); x[q * 2 + 1] = (float)(ids[q] & 255); }
            else x[q] = ids[q];
        }
        char name[4400];
        if (label) snprintf(name, sizeof name, "%s:%d (label %.60s)", path, ln, label);
        else snprintf(name, sizeof name, "%s:%d", path, ln);
        add_input(s, x, name);
        n++;
    }
    free(line);
    free(x);
    free(ids);
    if (f != stdin) fclose(f);
    if (!n) die("%s: no text", path);
}

static void load_image(ee_ctx *ctx, const ee_net *net, const char *path, input_set *s, int limit, int max_side) {
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    ee_dataset norm = {0};
    model_norm(net, norm.mean, norm.std);
    float *x = malloc(s->img * sizeof(float));
    if (has_suffix(path, ".png") || has_suffix(path, ".jpg") || has_suffix(path, ".jpeg") || has_suffix(path, ".PNG") ||
        has_suffix(path, ".JPG")) {
        int w, h, ch;
        /* the header first: a huge image is refused before it is decoded */
        if (stbi_info(path, &w, &h, &ch) && (w > max_side || h > max_side)) {
            free(x);
            die("%s: %dx%d pixels, larger than --max-image-side %d (decoding it would take %.1f GB)", path, w, h,
                max_side, 3.0 * w * h / 1e9);
        }
        unsigned char *px = stbi_load(path, &w, &h, &ch, C == 1 ? 1 : 3);
        if (!px || (C != 1 && C != 3)) {
            free(x); /* a clean exit for the leak checker */
            if (px) stbi_image_free(px);
            if (!px) die("%s: cannot read the image (%s)", path, stbi_failure_reason());
            die("%s: the model takes %d channels; images give 1 or 3", path, C);
        }
        pixels_to_input(net, px, w, h, x);
        stbi_image_free(px);
        add_input(s, x, path);
        free(x);
        return;
    }
    ee_dataset *ds = NULL;
    char lab[4200];
    ee_status st = EE_ERR_FORMAT;
    if (has_suffix(path, ".bin")) {
        const char *files[1] = {path};
        st = ee_dataset_load_cifar(ctx, files, 1, ee_net_classes(net) == 100 ? 1 : 0, &ds);
    } else {
        /* IDX images: use the matching labels file if there is one, else a dummy */
        snprintf(lab, sizeof lab, "%s", path);
        char *p = strstr(lab, "images-idx3");
        if (p) memcpy(p, "labels-idx1", 11);
        FILE *f = p ? fopen(lab, "rb") : NULL;
        if (f) { fclose(f); st = ee_dataset_load_idx(ctx, path, lab, &ds); }
        else die("%s: not a PNG/JPEG image, and no matching IDX labels file (%s)", path, p ? lab : "images-idx3 name expected");
    }
    check(st, ctx);
    if (ds->c != C || ds->h != H || ds->w != W) die("%s: images are %dx%dx%d, the model takes %dx%dx%d", path, ds->c, ds->h, ds->w, C, H, W);
    memcpy(ds->mean, norm.mean, sizeof norm.mean);
    memcpy(ds->std, norm.std, sizeof norm.std);
    for (int i = 0; i < ds->n && i < limit; i++) {
        char name[4300];
        snprintf(name, sizeof name, "%s#%d (label %d)", path, i, ds->labels[i]);
        ee_dataset_batch(ctx, ds, &i, 1, NULL, x, NULL);
        add_input(s, x, name);
    }
    ee_dataset_free(ds);
    free(x);
}

enum { O_Q = 256, O_FALLBACK, O_LIMIT, O_BATCH, O_THREADS, O_JSON, O_DEADLINE, O_BATCH_BUDGET, O_MAX_SIDE, O_SPLIT,
       O_SERVER, O_WIRE, O_TIMEOUT, O_SEND };
static const struct option infer_opts[] = {
    {"q", required_argument, NULL, O_Q}, {"fallback", no_argument, NULL, O_FALLBACK},
    {"limit", required_argument, NULL, O_LIMIT}, {"batch", required_argument, NULL, O_BATCH},
    {"threads", required_argument, NULL, O_THREADS}, {"json", no_argument, NULL, O_JSON},
    {"deadline", required_argument, NULL, O_DEADLINE}, {"batch-budget", required_argument, NULL, O_BATCH_BUDGET},
    {"max-image-side", required_argument, NULL, O_MAX_SIDE}, {"split", required_argument, NULL, O_SPLIT},
    {"server", required_argument, NULL, O_SERVER}, {"wire", required_argument, NULL, O_WIRE},
    {"timeout", required_argument, NULL, O_TIMEOUT}, {"send", required_argument, NULL, O_SEND},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_infer(int argc, char **argv) {
    int limit = -1, batch = 64, json = 0, threads = 0, fallback = -1;
    const char *deadline = NULL;
    double batch_budget = 0;
    int max_side = 8192, wire = EE_WIRE_F32, timeout_ms = 5000, send_inputs = 0;
    const char *split = NULL, *server = NULL;
    double q = -1;
    cli_args a = {"infer", infer_help, infer_opts, NULL, argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;) {
        switch (c) {
        case O_Q: q = cli_num(&a, 0, 2); break;
        case O_FALLBACK: fallback = 1; break;
        case O_LIMIT: limit = (int)cli_int(&a, 1, 100000000); break;
        case O_BATCH: batch = (int)cli_int(&a, 1, 4096); break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        case O_DEADLINE: deadline = optarg; break;
        case O_MAX_SIDE: max_side = (int)cli_int(&a, 1, 1 << 20); break;
        case O_SPLIT: split = optarg; break;
        case O_SERVER: server = optarg; break;
        case O_TIMEOUT: timeout_ms = (int)cli_int(&a, 1, 3600000); break;
        case O_SEND:
            if (!strcmp(optarg, "inputs")) send_inputs = 1;
            else if (strcmp(optarg, "activations")) usage_error("infer --send: '%s' is not activations or inputs", optarg);
            break;
        case O_WIRE:
            if (!strcmp(optarg, "fp32") || !strcmp(optarg, "f32")) wire = EE_WIRE_F32;
            else if (!strcmp(optarg, "fp16") || !strcmp(optarg, "f16")) wire = EE_WIRE_F16;
            else if (!strcmp(optarg, "int8")) wire = EE_WIRE_INT8;
            else usage_error("infer --wire: '%s' is not fp32, fp16 or int8", optarg);
            break;
        case O_BATCH_BUDGET:
            batch_budget = parse_fraction("infer", "--batch-budget", optarg, 100);
            if (!(batch_budget > 0)) usage_error("infer --batch-budget: '%s' must be above 0", optarg);
            break;
        }
    }
    if (cli_npos(&a) < 2) usage_error("infer: give a model and at least one input (see eenn infer --help)");
    if (!split != !server) usage_error("infer: --split and --server go together (the split node, and the server that finishes)");
    if (server && (deadline || batch_budget > 0)) usage_error("infer: --deadline and --batch-budget do not work with --server");
    const char *model = cli_pos(&a)[0];
    char **inputs = cli_pos(&a) + 1;
    int ninputs = cli_npos(&a) - 1;
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *net = NULL;
    load_model(ctx, model, &net);
    ee_exit_policy pol;
    if (!model_policy(ctx, net, q, &pol)) /* never calibrated: no early exit */
        ee_policy_shared(&pol, EE_SCORE_MAXPROB, ee_net_num_heads(net), 1.01f, 0);
    if (fallback >= 0) pol.fallback = fallback;
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    input_set set = {0};
    set.img = (size_t)C * H * W;
    int text = (C == 1 || C == 2) && H == 1 && W > 1;
    for (int i = 0; i < ninputs; i++) {
        if (text) load_text(net, inputs[i], &set, limit < 0 ? INT_MAX : limit);
        else load_image(ctx, net, inputs[i], &set, limit < 0 ? 20 : limit, max_side);
    }
    /* class names, if the model has them (text models record their labels) */
    char names_buf[4096] = "", *cname[256] = {0};
    if (ee_net_meta(net, "data.classes")) {
        snprintf(names_buf, sizeof names_buf, "%s", ee_net_meta(net, "data.classes"));
        int k = 0;
        for (char *t = strtok(names_buf, ","); t && k < 256; t = strtok(NULL, ",")) cname[k++] = t;
    }
    check(ee_net_prepare(ctx, net, batch, 0), ctx);
    check(ee_net_seal(ctx, net), ctx); /* one copy of the weights: packed for the kernel */
    int heads = ee_net_num_heads(net);
    double cost[EE_MAX_HEADS], flops[EE_MAX_HEADS];
    ee_net_head_costs(net, cost, flops);
    ee_infer_limits lim = {0, 0, 0};
    if (deadline) { /* a share of the CNN's FLOPs ("40%") or microseconds ("500us") */
        size_t l = strlen(deadline);
        if (l > 2 && !strcmp(deadline + l - 2, "us")) {
            char *end;
            lim.deadline_us = strtod(deadline, &end);
            if (end != deadline + l - 2 || !(lim.deadline_us > 0)) usage_error("infer --deadline: '%s' is not a time", deadline);
        } else {
            lim.deadline_flops = parse_fraction("infer", "--deadline", deadline, 100) * flops[heads - 1] / cost[heads - 1];
            if (!(lim.deadline_flops > 0)) usage_error("infer --deadline: '%s' must be above 0", deadline);
        }
    }
    ee_split sp;
    ee_remote *remote = NULL;
    ee_remote_stats rs, total = {0};
    if (server) {
        if (ee_split_at(ctx, net, split, &sp)) die("%s: %s", model, ee_ctx_error(ctx));
        ee_remote_opts ro = {wire, timeout_ms, send_inputs};
        check(ee_remote_open(ctx, server, &ro, &remote), ctx);
    }
    uint8_t pred[4096], ex[4096], why[4096];
    float conf[4096];
    static const char *const reason[] = {"policy", "final", "deadline", "budget", "degraded"};
    for (int i = 0; i < set.n; i += batch) {
        int n = set.n - i < batch ? set.n - i : batch;
        /* a FLOPs budget for each batch: the share of the CNN's FLOPs per image, times the batch */
        if (batch_budget > 0) lim.batch_flops = batch_budget * flops[heads - 1] / cost[heads - 1] * n;
        if (remote) {
            check(ee_infer_remote(ctx, net, remote, set.x + (size_t)i * set.img, n, &pol, &sp, pred, conf, ex, why, &rs), ctx);
            total.sent += rs.sent;
            total.bytes_sent += rs.bytes_sent;
            total.degraded += rs.degraded;
            if (rs.degraded && !total.error[0]) memcpy(total.error, rs.error, sizeof rs.error);
        } else
            check(ee_infer_policy(ctx, net, set.x + (size_t)i * set.img, n, &pol, &lim, pred, conf, ex, why), ctx);
        for (int j = 0; j < n; j++) {
            char nm[32];
            head_name(net, ex[j], nm, sizeof nm);
            char cn[128] = "";
            if (cname[pred[j]]) snprintf(cn, sizeof cn, json ? ",\"name\":\"%s\"" : " (%s)", json ? js(cname[pred[j]]) : cname[pred[j]]);
            if (json)
                printf("{\"input\":\"%s\",\"class\":%d%s,\"confidence\":%.4f,\"exit\":\"%s\",\"exit_index\":%d,\"cost\":%.4f,"
                       "\"stopped_by\":\"%s\"}\n", js(set.names[i + j]), pred[j], cn, conf[j], nm, ex[j], cost[ex[j]], reason[why[j]]);
            else
                printf("%s: class %d%s, confidence %.3f, exit %s of %d, cost %.1f%% of the CNN%s\n", set.names[i + j], pred[j],
                       cn, conf[j], nm, heads, cost[ex[j]] * 100,
                       why[j] == EE_EXIT_DEGRADED ? " (degraded: the server did not answer; the most confident exit here)"
                       : why[j] == EE_EXIT_DEADLINE ? " (deadline: the most confident exit so far)"
                       : why[j] == EE_EXIT_BUDGET ? " (batch budget: the most confident exit so far)" : "");
        }
    }
    if (remote) {
        fprintf(stderr, "split after %s: %d of %d inputs answered here (%.1f%%), %d sent to %s, %.0f bytes per input "
                "(%s)%s%s\n", split, set.n - total.sent, set.n, 100.0 * (set.n - total.sent) / set.n, total.sent, server,
                (double)total.bytes_sent / set.n, send_inputs ? (wire == EE_WIRE_F32 ? "inputs, fp32" : wire == EE_WIRE_F16 ? "inputs, fp16" : "inputs, int8") : wire == EE_WIRE_F32 ? "fp32" : wire == EE_WIRE_F16 ? "fp16" : "int8",
                total.degraded ? "; degraded answers: " : "", total.degraded ? total.error : "");
        ee_remote_close(remote);
    }
    for (int i = 0; i < set.n; i++) free(set.names[i]);
    free(set.names); free(set.x);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}

