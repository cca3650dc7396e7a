/* core.c: the context (errors, RNG, threads), aligned allocation and random fills. */
#define _DEFAULT_SOURCE /* madvise */
#include "internal.h"
#include <sys/mman.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

ee_ctx *ee_ctx_new(void) {
    ee_ctx *c = calloc(1, sizeof *c);
    if (c) ee_ctx_seed(c, 1221);
    return c;
}
void ee_ctx_free(ee_ctx *ctx) { free(ctx); }
const char *ee_ctx_error(const ee_ctx *ctx) { return ctx ? ctx->err : "no context"; }
void ee_ctx_set_threads(ee_ctx *ctx, int threads) { ctx->threads = threads < 0 ? 0 : threads; }
void ee_ctx_set_text_length(ee_ctx *ctx, int tokens) { ctx->text_length = tokens > 0 ? tokens : 0; }
void ee_ctx_set_text_tokens(ee_ctx *ctx, int kind) { ctx->text_tokens = kind == EE_TOKENS_WORDS; }
void ee_ctx_set_conv_kernel(ee_ctx *ctx, ee_conv_kernel k) {
    ctx->conv_kernel = k >= EE_CONV_AUTO && k <= EE_CONV_REFERENCE ? k : EE_CONV_AUTO;
}
ee_conv_kernel ee_ctx_conv_kernel(const ee_ctx *ctx) { return (ee_conv_kernel)ctx->conv_kernel; }
int ee_core_share(int cores, int parts, int k) { return cores <= parts ? 1 : cores / parts + (k < cores % parts); }
int ee_ctx_threads(const ee_ctx *ctx) {
#ifdef _OPENMP
    return ctx->threads > 0 ? ctx->threads : omp_get_num_procs();
#else
    (void)ctx;
    return 1;
#endif
}
/* jiffies the whole machine has been busy, and this process's own (all its threads); 0 if unreadable */
static int cpu_times(double *busy, double *self) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]);
    fclose(f);
    if (n < 5) return 0;
    *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]); /* all but idle and iowait */
    f = fopen("/proc/self/stat", "r");
    if (!f) return 0;
    char buf[1024];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return 0;
    *self = (double)(ut + st);
    return 1;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* threads for "all cores": the cores that other processes left free over the last 100 ms or more */
static int free_cores(ee_ctx *ctx, int ncpu) {
    double now = mono_s(), busy, self;
    if (ctx->load_t > 0 && now - ctx->load_t < 0.1) return ctx->load_threads;
    if (!cpu_times(&busy, &self)) return ncpu;
    int t = ncpu;
    if (ctx->load_t > 0) {
        double hz = (double)sysconf(_SC_CLK_TCK), wall = (now - ctx->load_t) * hz;
        double others = wall > 0 ? (busy - ctx->load_busy - (self - ctx->load_self)) / wall : 0; /* cores */
        t = ncpu - (int)floor(others + 0.65); /* a core counts as taken from 35% busy */
        if (t < 1) t = 1;
        if (t > ncpu) t = ncpu;
    }
    ctx->load_t = now;
    ctx->load_busy = busy;
    ctx->load_self = self;
    ctx->load_threads = t;
    return t;
}

int ee_ctx_idle_cores(ee_ctx *ctx) {
#ifdef _OPENMP
    int ncpu = omp_get_num_procs();
    if (ncpu > omp_get_thread_limit()) ncpu = omp_get_thread_limit();
    if (ncpu < 2) return 1;
    if (ctx->load_t <= 0 || mono_s() - ctx->load_t > 1.0) { /* no recent history: watch the machine for 100 ms */
        ctx->load_t = 0;
        free_cores(ctx, ncpu);
        struct timespec d = {0, 100000000L};
        nanosleep(&d, NULL);
    }
    return free_cores(ctx, ncpu);
#else
    (void)ctx;
    return 1;
#endif
}

void ee_threads_apply(ee_ctx *ctx) {
#ifdef _OPENMP
    int t = ee_ctx_threads(ctx);
    if (ctx->threads <= 0 && t > 1) t = free_cores(ctx, t);
    /* never more than OMP_THREAD_LIMIT allows: oneDNN splits its work for the threads it is told of and waits
     * for all of them */
    if (t > omp_get_thread_limit()) t = omp_get_thread_limit();
    if (omp_get_max_threads() != t) omp_set_num_threads(t);
#else
    (void)ctx;
#endif
}

ee_status ee_fail(ee_ctx *ctx, ee_status s, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
        va_end(ap);
    }
    return s;
}

const char *ee_status_name(ee_status s) {
    static const char *const names[] = {"ok", "bad argument", "I/O error", "bad file format", "out of memory",
                                        "oneDNN error", "numerical error", "another rank failed"};
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "unknown error";
}

/* splitmix64: tiny, fast, and its whole state is one integer that a checkpoint can store */
void ee_ctx_seed(ee_ctx *ctx, uint64_t seed) { ctx->rng = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull; }
uint64_t ee_ctx_rng_state(const ee_ctx *ctx) { return ctx->rng; }
void ee_ctx_set_rng_state(ee_ctx *ctx, uint64_t state) { ctx->rng = state; }
/* the state n draws on: splitmix64's state is a counter */
void ee_rng_skip(ee_ctx *ctx, uint64_t n) { ctx->rng += n * 0x9E3779B97F4A7C15ull; }
uint64_t ee_rng_next(ee_ctx *ctx) {
    uint64_t z = (ctx->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
float ee_rng_uniform(ee_ctx *ctx) { return (float)(ee_rng_next(ctx) >> 40) * (1.0f / 16777216.0f); }
float ee_rng_normal(ee_ctx *ctx) {
    double u1 = ((ee_rng_next(ctx) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (ee_rng_next(ctx) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void *ee_alloc(size_t bytes) {
    size_t sz = (bytes + 63) / 64 * 64;
    if (sz == 0) sz = 64;
    void *p = aligned_alloc(64, sz);
    if (p) memset(p, 0, sz);
    return p;
}
void *ee_alloc_huge(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge) return ee_alloc(bytes);
    size_t sz = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, sz);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, sz, MADV_HUGEPAGE); /* a hint: without it (or refused) the pages are the usual ones */
#endif
    memset(p, 0, sz);
    return p;
}
void ee_free(void *p) { free(p); }

void ee_fill_uniform(ee_ctx *ctx, float *p, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * ee_rng_uniform(ctx);
}
void ee_fill_normal(ee_ctx *ctx, float *p, size_t n, float stdv) {
    for (size_t i = 0; i < n; i++) p[i] = stdv * ee_rng_normal(ctx);
}

size_t ee_abi_size(const char *type) {
    static const struct { const char *name; size_t size; } t[] = {
        {"ee_exit_policy", sizeof(ee_exit_policy)}, {"ee_train_config", sizeof(ee_train_config)},
        {"ee_progress", sizeof(ee_progress)},       {"ee_dataset", sizeof(ee_dataset)},
        {"ee_outputs", sizeof(ee_outputs)},         {"ee_optim", sizeof(ee_optim)},
        {"ee_schedule", sizeof(ee_schedule)},       {"ee_augment", sizeof(ee_augment)},
        {"ee_calibration", sizeof(ee_calibration)}, {"ee_exit_stats", sizeof(ee_exit_stats)},
        {"ee_eval_result", sizeof(ee_eval_result)}, {"ee_parallel", sizeof(ee_parallel)},
        {"ee_quant_config", sizeof(ee_quant_config)},
    };
    for (size_t i = 0; type && i < sizeof t / sizeof *t; i++)
        if (!strcmp(type, t[i].name)) return t[i].size;
    return 0;
}

