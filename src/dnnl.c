/* dnnl.c: oneDNN, loaded on first use; the engine and stream of a network; GEMM. */
#define EE_DNNL_LOADER /* this file calls the table's pointers by name */
#include "dnnl_glue.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define EE_STR2(x) #x
#define EE_STR(x) EE_STR2(x)
/* the library of the major version eenn is built against (Debian's libdnnl2: libdnnl.so.2) */
#define EE_DNNL_SONAME "libdnnl.so." EE_STR(DNNL_VERSION_MAJOR)

ee_dnnl_api ee_dnnl_fn;
static pthread_once_t dnnl_once = PTHREAD_ONCE_INIT;
static int dnnl_loaded;
static char dnnl_why[320];

/* opens `soname` and fills *api; 0, or -1 with the reason in why */
static int load_api(const char *soname, ee_dnnl_api *api, char *why, size_t nwhy) {
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, nwhy, "%s", e ? e : "dlopen failed");
        return -1;
    }
#define EE_DNNL_SYM(name)                                                                                     \
    if (!(api->name = (__typeof__(api->name))dlsym(h, "dnnl_" #name))) {                                      \
        snprintf(why, nwhy, "%s has no symbol dnnl_%s", soname, #name);                                       \
        dlclose(h);                                                                                           \
        return -1;                                                                                            \
    }
    EE_DNNL_FUNCS(EE_DNNL_SYM)
#undef EE_DNNL_SYM
    return 0; /* the library stays loaded for the process's lifetime, as the dynamic linker would keep it */
}

static void dnnl_load_once(void) {
    dnnl_loaded = !load_api(EE_DNNL_SONAME, &ee_dnnl_fn, dnnl_why, sizeof dnnl_why);
}

ee_status ee_dnnl_probe(ee_ctx *ctx, const char *soname) {
    ee_dnnl_api api;
    char why[320];
    if (load_api(soname, &api, why, sizeof why))
        return ee_fail(ctx, EE_ERR_BACKEND, "cannot load oneDNN (%s): %s", soname, why);
    return EE_OK;
}

ee_status ee_dnnl_load(ee_ctx *ctx) {
    pthread_once(&dnnl_once, dnnl_load_once);
    return dnnl_loaded ? EE_OK
                       : ee_fail(ctx, EE_ERR_BACKEND, "cannot load oneDNN (%s): %s", EE_DNNL_SONAME, dnnl_why);
}

ee_dnnl *ee_dnnl_get(ee_ctx *ctx, ee_net *net) {
    if (net->dnnl) return net->dnnl;
    if (ee_dnnl_load(ctx)) return NULL;
    ee_dnnl *d = calloc(1, sizeof *d);
    if (!d) { ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); return NULL; }
    if (ee_dnnl_fn.engine_create(&d->eng, dnnl_cpu, 0) != dnnl_success ||
        ee_dnnl_fn.stream_create(&d->strm, d->eng, dnnl_stream_default_flags) != dnnl_success) {
        if (d->eng) ee_dnnl_fn.engine_destroy(d->eng);
        free(d);
        ee_fail(ctx, EE_ERR_BACKEND, "oneDNN: cannot create a CPU engine");
        return NULL;
    }
    net->dnnl = d;
    return d;
}

void ee_dnnl_free(ee_net *net) {
    ee_dnnl *d = net->dnnl;
    if (!d) return;
    if (d->strm) ee_dnnl_fn.stream_destroy(d->strm);
    if (d->eng) ee_dnnl_fn.engine_destroy(d->eng);
    ee_free(d->pad);
    ee_free(d->xblk);
    free(d);
    net->dnnl = NULL;
}

/* Products of at most this many multiply-adds (ResNet-56's classifier, 64 x 10, up to batch 204) are summed here: a
 * library call costs more than they do, and a net whose convolutions all run on the direct kernel then never
 * loads oneDNN. Larger ones go to oneDNN's sgemm. */
#define EE_SMALL_GEMM 131072

ee_status ee_sgemm(ee_ctx *ctx, char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc) {
    if ((double)m * n * k <= EE_SMALL_GEMM) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float s = 0;
                for (int l = 0; l < k; l++)
                    s += (ta == 'N' ? a[(size_t)i * lda + l] : a[(size_t)l * lda + i]) *
                         (tb == 'N' ? b[(size_t)l * ldb + j] : b[(size_t)j * ldb + l]);
                float *o = c + (size_t)i * ldc + j;
                *o = beta == 0.0f ? alpha * s : alpha * s + beta * *o;
            }
        return EE_OK;
    }
    ee_status s = ee_dnnl_load(ctx);
    if (s) return s;
    if (ee_dnnl_fn.sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) != dnnl_success)
        return ee_fail(ctx, EE_ERR_BACKEND, "oneDNN sgemm failed (%dx%dx%d)", m, n, k);
    return EE_OK;
}

/* The machine's fp32 GEMM rate as this library reaches it: square n x n x n products through the same sgemm the
 * linear layers use, repeated for `seconds`. */
ee_status ee_bench_sgemm(ee_ctx *ctx, int n, double seconds, double *gflops) {
    if (n < 16 || n > 8192) return ee_fail(ctx, EE_ERR_ARG, "GEMM size %d is not in [16, 8192]", n);
    size_t len = (size_t)n * n;
    float *a = ee_alloc(len * sizeof(float)), *b = ee_alloc(len * sizeof(float)), *c = ee_alloc(len * sizeof(float));
    if (!a || !b || !c) { ee_free(a); ee_free(b); ee_free(c); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    for (size_t i = 0; i < len; i++) { a[i] = ee_rng_uniform(ctx) - 0.5f; b[i] = ee_rng_uniform(ctx) - 0.5f; }
    ee_threads_apply(ctx);
    ee_status s = ee_sgemm(ctx, 'N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    if (s) { ee_free(a); ee_free(b); ee_free(c); return s; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int reps = 0;
    double dt;
    do {
        if ((s = ee_sgemm(ctx, 'N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n))) break;
        reps++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    } while (dt < seconds || reps < 3);
    if (!s) *gflops = 2.0 * n * n * (double)n * reps / dt / 1e9;
    ee_free(a); ee_free(b); ee_free(c);
    return s;
}
