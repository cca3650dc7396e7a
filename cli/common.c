/* common.c: what every eenn command shares: fatal errors as one line, option parsing, data loading. */
#include "common.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_rank = -1;
void (*cli_fail_hook)(int status);
void (*cli_peer_hook)(void);
void (*cli_pause_hook)(void);

static void vfail(int status, const char *fmt, va_list ap) __attribute__((noreturn));
static void vfail(int status, const char *fmt, va_list ap) {
    if (cli_pause_hook) cli_pause_hook();
    fputs("eenn: ", stderr);
    if (cli_rank >= 0) fprintf(stderr, "rank %d: ", cli_rank);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    if (cli_fail_hook) cli_fail_hook(status);
    exit(status);
}
void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(1, fmt, ap);
}
void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(2, fmt, ap);
}
void check(ee_status s, ee_ctx *ctx) {
    if (s == EE_ERR_PEER && cli_peer_hook) cli_peer_hook(); /* the failing rank prints why */
    if (s) die("%s", ee_ctx_error(ctx)[0] ? ee_ctx_error(ctx) : ee_status_name(s));
}
double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- option parsing */
int cli_next(cli_args *a) {
    char optstring[64];
    snprintf(optstring, sizeof optstring, ":h%s", a->shortopts ? a->shortopts : "");
    if (!a->id) { optind = 1; opterr = 0; } /* the first call for this command */
    a->li = -1;
    int c = getopt_long(a->argc, a->argv, optstring, a->opts, &a->li);
    a->id = c == -1 ? -1 : c;
    if (c == 'h') { fputs(a->help, stdout); exit(0); }
    if (c == ':')
        usage_error("%s %s: missing value", a->cmd, a->argv[optind - 1]);
    if (c == '?') {
        if (optopt) usage_error("%s: unknown option '-%c' (see eenn %s --help)", a->cmd, optopt, a->cmd);
        usage_error("%s: unknown option '%s' (see eenn %s --help)", a->cmd, a->argv[optind - 1], a->cmd);
    }
    return c;
}
const char *cli_opt(const cli_args *a) {
    static char buf[64];
    if (a->li >= 0) snprintf(buf, sizeof buf, "--%s", a->opts[a->li].name);
    else snprintf(buf, sizeof buf, "-%c", a->id);
    return buf;
}
const char *cli_val(const cli_args *a) { (void)a; return optarg; }
long cli_int(const cli_args *a, long lo, long hi) {
    const char *v = optarg;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        usage_error("%s %s: '%s' is not an integer in [%ld, %ld]", a->cmd, cli_opt(a), v, lo, hi);
    return x;
}
int cli_replicas(const cli_args *a) {
    const char *v = optarg;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!strcmp(v, "auto")) return EE_REPLICAS_AUTO;
    if (!*v || *end || errno || x < 1 || x > 64)
        usage_error("%s %s: '%s': auto, or the copies of the network (1 to 64)", a->cmd, cli_opt(a), v);
    return (int)x;
}
double cli_num(const cli_args *a, double lo, double hi) {
    const char *v = optarg;
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi))
        usage_error("%s %s: '%s' is not a number in [%g, %g]", a->cmd, cli_opt(a), v, lo, hi);
    return x;
}
int cli_npos(const cli_args *a) { return a->argc - optind; }
char **cli_pos(const cli_args *a) { return a->argv + optind; }

void parse_shape(const cli_args *a, int *c, int *h, int *w) {
    char tail;
    const char *s = optarg;
    if (sscanf(s, "%dx%dx%d%c", c, h, w, &tail) != 3 || *c < 1 || *h < 1 || *w < 1 || *c > 64 || *h > 4096 || *w > 4096)
        usage_error("%s %s: '%s' is not CxHxW (e.g. 3x32x32)", a->cmd, cli_opt(a), s);
}

double parse_fraction(const char *cmd, const char *opt, const char *v, double max) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || !(x >= 0)) usage_error("%s %s: '%s' is not a percentage or a fraction", cmd, opt, v);
    if (!strcmp(end, "%")) x /= 100;
    else if (*end) usage_error("%s %s: '%s' is not a percentage or a fraction", cmd, opt, v);
    if (x > max) usage_error("%s %s: '%s' is more than %g%%", cmd, opt, v, max * 100);
    return x;
}

int parse_fraction_list(const char *cmd, const char *opt, const char *v, double max, double *out, int *n, int cap) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (*n == cap) usage_error("%s %s: at most %d values", cmd, opt, cap);
        double x = parse_fraction(cmd, opt, t, max);
        if (!(x > 0)) usage_error("%s %s: '%s' must be above 0", cmd, opt, t);
        out[(*n)++] = x;
    }
    return *n;
}

void risk_splits(ee_ctx *ctx, const ee_outputs *o, const double *cost, int kind, ee_risk_kind risk, double delta,
                 const double *eps, int neps, int splits, risk_split_stats *res) {
    int n = o->n, ncal = n / 2, ntest = n - ncal;
    if (ncal < 1 || ntest < 1) die("%d images: too few to split into calibration and test halves", n);
    int8_t *loss = malloc((size_t)n * EE_RISK_GRID);
    uint8_t *exit_at = malloc((size_t)n * EE_RISK_GRID);
    int *perm = malloc(sizeof(int) * n);
    double *r2 = calloc((size_t)neps * 4, sizeof(double));
    if (!loss || !exit_at || !perm || !r2) die("out of memory");
    check(ee_risk_losses(ctx, o, kind, risk, loss, exit_at), ctx);
    memset(res, 0, sizeof *res * neps * 4);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int s = 0; s < splits; s++) {
        ee_shuffle(ctx, perm, n);
        double rc[EE_RISK_GRID], clip[EE_RISK_GRID], rt[EE_RISK_GRID], tclip[EE_RISK_GRID], ct[EE_RISK_GRID];
        ee_risk_means(loss, perm, ncal, rc, clip);
        ee_risk_means(loss, perm + ncal, ntest, rt, tclip);
        for (int k = 0; k < EE_RISK_GRID; k++) {
            double c = 0;
            for (int j = ncal; j < n; j++) c += cost[exit_at[(size_t)perm[j] * EE_RISK_GRID + k]];
            ct[k] = c / ntest;
        }
        for (int e = 0; e < neps; e++)
            for (int m = 0; m < 4; m++) {
                ee_risk_calibration cal = {kind, risk, (ee_rc_method)(EE_RC_NAIVE + m), eps[e], delta, 0};
                int k = ee_risk_select(&cal, ncal, rc, clip);
                risk_split_stats *r = &res[e * 4 + m];
                r->risk += rt[k];
                r2[e * 4 + m] += rt[k] * rt[k];
                r->above += rt[k] > eps[e];
                r->cost += ct[k];
                r->lambda += ee_risk_lambda(k);
            }
    }
    for (int i = 0; i < neps * 4; i++) {
        risk_split_stats *r = &res[i];
        r->risk /= splits; r->above /= splits; r->cost /= splits; r->lambda /= splits;
        /* the standard error of the mean test risk over the splits */
        r->risk_se = splits > 1 ? sqrt(fmax(r2[i] / splits - r->risk * r->risk, 0) / (splits - 1)) : 0;
    }
    free(loss); free(exit_at); free(perm); free(r2);
}

void load_model(ee_ctx *ctx, const char *path, ee_net **net) {
    check(ee_net_load(ctx, path, net), ctx);
    int c, h, w;
    ee_net_input_shape(*net, &c, &h, &w);
    if ((c == 1 || c == 2) && h == 1 && w > 1) { /* a text model reads w tokens an example: bytes, or hashed words */
        ee_ctx_set_text_length(ctx, w);
        ee_ctx_set_text_tokens(ctx, c == 2 ? EE_TOKENS_WORDS : EE_TOKENS_BYTES);
    }
}

void load_validation(ee_ctx *ctx, const ee_net *net, const char *model, const char *data, int nval,
                     ee_dataset **train, ee_dataset **val) {
    if (!data) data = ee_net_meta(net, "data.dir") ? ee_net_meta(net, "data.dir") : DEFAULT_DATA;
    if (nval < 0) nval = ee_net_meta(net, "data.val") ? atoi(ee_net_meta(net, "data.val")) : 5000;
    if (nval <= 0) die("%s: was trained without a validation split; give --val N", model);
    check(ee_dataset_load_dir(ctx, data, "train", train), ctx);
    check(ee_dataset_split(ctx, *train, nval, val), ctx);
    apply_norm(net, *train);
    apply_norm(net, *val);
}

ee_outputs *validation_outputs(ee_ctx *ctx, ee_net *net, const char *model, const char *data, int nval) {
    ee_dataset *train = NULL, *val = NULL;
    load_validation(ctx, net, model, data, nval, &train, &val);
    ee_outputs *o = NULL;
    check(ee_collect_outputs(ctx, net, val, 256, 0, &o), ctx);
    ee_dataset_free(train);
    ee_dataset_free(val);
    return o;
}

int model_policy(ee_ctx *ctx, const ee_net *net, double q, ee_exit_policy *p) {
    ee_exit_policy stored;
    ee_status s = ee_net_policy(ctx, net, &stored);
    if (s && s != EE_ERR_ARG) check(s, ctx); /* a stored policy that does not parse */
    if (q >= 0) {
        ee_policy_shared(p, EE_SCORE_MAXPROB, ee_net_num_heads(net), (float)q, s ? 0 : stored.fallback);
        return 1;
    }
    if (s) return 0;
    *p = stored;
    return 1;
}

const char *describe_policy(const ee_exit_policy *p, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "%s, ", ee_score_name(p->kind));
    int shared = 1;
    for (int h = 1; h < p->heads - 1; h++) shared &= p->threshold[h] == p->threshold[0];
    if (shared && p->kind == EE_SCORE_CONFIDENCE) /* strictly above, as the EENets rule */
        len = (size_t)snprintf(buf, n, "learned confidence above %.4g", p->threshold[0]);
    else if (p->kind == EE_SCORE_GATE) {
        len = (size_t)snprintf(buf, n, "learned gates on the exits' uncertainty (%s), exit at %s %.4g",
                               p->gate_rule == EE_GATE_JEI ? "JEI-DNN" : "Bolukbasi et al.",
                               p->gate_rule == EE_GATE_JEI ? "conditional probability" : "gate", p->threshold[0]);
        for (int h = 0; h < p->heads - 1 && len < n; h++)
            if (p->jump_to[h])
                len += (size_t)snprintf(buf + len, n - len, ", jump gate after exit %d to exit %d", h + 1, p->jump_to[h] + 1);
    }
    else if (shared) len += (size_t)snprintf(buf + len, n - len, "q %.4g", p->threshold[0]);
    else {
        len += (size_t)snprintf(buf + len, n - len, "thresholds");
        for (int h = 0; h < p->heads - 1 && len < n; h++)
            len += (size_t)snprintf(buf + len, n - len, " %.3g", p->threshold[h] > 1 ? (double)INFINITY : p->threshold[h]);
    }
    if (p->temperature_fitted && len < n) len += (size_t)snprintf(buf + len, n - len, ", fitted temperatures");
    if (p->fallback && len < n) len += (size_t)snprintf(buf + len, n - len, ", fallback");
    if (p->rc_method > 0 && len < n) {
        if (p->rc_method == EE_RC_NAIVE)
            snprintf(buf + len, n - len, "; naive: %s risk below %.3g%% on %d calibration images, no guarantee",
                     ee_risk_name(p->risk), p->epsilon * 100, p->samples);
        else if (p->rc_method == EE_RC_CRC)
            snprintf(buf + len, n - len, "; guarantee (CRC): expected %s risk at most %.3g%% (%d calibration images)",
                     ee_risk_name(p->risk), p->epsilon * 100, p->samples);
        else
            snprintf(buf + len, n - len, "; guarantee (%s): %s risk at most %.3g%% with probability %.3g (%d calibration "
                     "images)", p->rc_method == EE_RC_UCB ? "UCB" : "LTT", ee_risk_name(p->risk), p->epsilon * 100,
                     1 - p->delta, p->samples);
    }
    return buf;
}

void print_exit_stats(const ee_exit_stats *st, int heads, int n, double final_acc, int json) {
    if (json) {
        printf("{\"q\":%.4f,\"acc\":%.4f,\"cost\":%.4f,\"exits\":[", st->q, st->acc * 100, st->cost);
        for (int h = 0; h < heads; h++) printf("%s%.4f", h ? "," : "", (double)st->exits[h] / n);
        printf("],\"jumped\":%.4f}", n ? (double)st->jumps / n : 0);
        return;
    }
    printf("  q %-6.4g accuracy %6.2f%% (final alone %.2f%%)  average cost %5.1f%% of the CNN (%.2fx fewer FLOPs)  exits:",
           st->q, st->acc * 100, final_acc * 100, st->cost * 100, 1 / st->cost);
    for (int h = 0; h < heads; h++) printf(" %.1f", 100.0 * st->exits[h] / n);
    printf(" %%");
    if (st->jumps) printf(", %d jumped ahead (%.1f%%)", st->jumps, 100.0 * st->jumps / n);
    printf("\n");
}

char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: cannot open", path);
    size_t n = 0, cap = 4096;
    char *s = malloc(cap);
    for (size_t r; s && (r = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) { char *t = realloc(s, cap *= 2); if (!t) free(s); s = t; }
    }
    if (!s || ferror(f)) die("%s: cannot read", path);
    fclose(f);
    s[n] = 0;
    if (strlen(s) != n) die("%s: not a text file", path);
    return s;
}
void load_data(ee_ctx *ctx, const char *dir, ee_dataset **train, ee_dataset **val, ee_dataset **test, int nval,
                      int subset, int test_subset) {
    if (train) {
        check(ee_dataset_load_dir(ctx, dir, "train", train), ctx);
        if (val && nval > 0) check(ee_dataset_split(ctx, *train, nval, val), ctx);
        if (subset > 0 && subset < (*train)->n) (*train)->n = subset;
    }
    if (test) {
        check(ee_dataset_load_dir(ctx, dir, "test", test), ctx);
        if (test_subset > 0 && test_subset < (*test)->n) (*test)->n = test_subset;
    }
}
void apply_norm(const ee_net *net, ee_dataset *ds) {
    const char *m = ee_net_meta(net, "data.mean"), *s = ee_net_meta(net, "data.std");
    if (m && s) {
        sscanf(m, "%f,%f,%f", &ds->mean[0], &ds->mean[1], &ds->mean[2]);
        sscanf(s, "%f,%f,%f", &ds->std[0], &ds->std[1], &ds->std[2]);
    }
}
const char *head_name(const ee_net *net, int h, char *buf, size_t n) {
    if (h == ee_net_num_heads(net) - 1) snprintf(buf, n, "final");
    else snprintf(buf, n, "IC%d", h + 1);
    return buf;
}

void parse_trigger(const char *cmd, const char *s, ee_trigger *t) {
    char tail;
    t->x = t->y = -2; /* bottom-right, one pixel in from the edges (the reference's 5x5 at (26, 26) of 32) */
    if (sscanf(s, "%d%c", &t->size, &tail) == 1) return;
    if (sscanf(s, "%d@%d,%d%c", &t->size, &t->x, &t->y, &tail) == 3) return;
    usage_error("%s --trigger: '%s' is not SIZE or SIZE@X,Y (negative X, Y count from the right and bottom)", cmd, s);
}

const char *js(const char *s) {
    static char ring[8][2048];
    static int next;
    char *b = ring[next++ & 7];
    size_t o = 0;
    for (; s && *s && o + 8 < sizeof ring[0]; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { b[o++] = '\\'; b[o++] = (char)ch; }
        else if (ch < 0x20) o += (size_t)snprintf(b + o, sizeof ring[0] - o, "\\u%04x", ch);
        else b[o++] = (char)ch;
    }
    b[o] = 0;
    return b;
}

void model_norm(const ee_net *net, float mean[3], float std[3]) {
    const char *m = ee_net_meta(net, "data.mean"), *sd = ee_net_meta(net, "data.std");
    for (int c = 0; c < 3; c++) { mean[c] = 0; std[c] = 1; }
    if (m && sd) {
        sscanf(m, "%f,%f,%f", &mean[0], &mean[1], &mean[2]);
        sscanf(sd, "%f,%f,%f", &std[0], &std[1], &std[2]);
    }
}

void pixels_to_input(const ee_net *net, const unsigned char *px, int w, int h, float *x) {
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    float mean[3], std[3];
    model_norm(net, mean, std);
    for (int r = 0; r < H; r++)
        for (int q = 0; q < W; q++)
            for (int c = 0; c < C; c++) {
                int sr = r * h / H, sq = q * w / W;
                x[((size_t)r * W + q) * C + c] = (px[((size_t)sr * w + sq) * C + c] / 255.0f - mean[c]) / std[c];
            }
}

int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
