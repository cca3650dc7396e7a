/* common.c: what every eenn command shares: fatal errors as one line, option parsing, data loading. */
#include "common.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("eenn: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}
void check(ee_status s, ee_ctx *ctx) {
    if (s) die("%s", ee_ctx_error(ctx)[0] ? ee_ctx_error(ctx) : ee_status_name(s));
}
double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- option parsing */
int is_opt(args *a, const char *name) { return !strcmp(a->argv[a->i], name); }
const char *val(args *a) {
    if (a->i + 1 >= a->argc) die("%s %s: missing value", a->cmd, a->argv[a->i]);
    return a->argv[++a->i];
}
long ival(args *a, long lo, long hi) {
    const char *opt = a->argv[a->i], *v = val(a);
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) die("%s %s: '%s' is not an integer in [%ld, %ld]", a->cmd, opt, v, lo, hi);
    return x;
}
double fval(args *a, double lo, double hi) {
    const char *opt = a->argv[a->i], *v = val(a);
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) die("%s %s: '%s' is not a number in [%g, %g]", a->cmd, opt, v, lo, hi);
    return x;
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
    die("%s --trigger: '%s' is not SIZE or SIZE@X,Y (negative X, Y count from the right and bottom)", cmd, s);
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
