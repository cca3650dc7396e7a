/* dnnl.c: the oneDNN engine and stream of a network, and GEMM through oneDNN's sgemm. */
#include "dnnl_glue.h"
#include <stdlib.h>
#include <time.h>

ee_status ee_dnnl_init(ee_ctx *ctx, ee_net *net) {
    ee_dnnl *d = calloc(1, sizeof *d);
    if (!d) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    net->dnnl = d;
    if (dnnl_engine_create(&d->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&d->strm, d->eng, dnnl_stream_default_flags) != dnnl_success)
        return ee_fail(ctx, EE_ERR_BACKEND, "oneDNN: cannot create a CPU engine");
    return EE_OK;
}

void ee_dnnl_free(ee_net *net) {
    ee_dnnl *d = net->dnnl;
    if (!d) return;
    if (d->strm) dnnl_stream_destroy(d->strm);
    if (d->eng) dnnl_engine_destroy(d->eng);
    free(d);
    net->dnnl = NULL;
}

void ee_sgemm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
              float beta, float *c, int ldc) {
    dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
    ee_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int reps = 0;
    double dt;
    do {
        ee_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        reps++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    } while (dt < seconds || reps < 3);
    *gflops = 2.0 * n * n * (double)n * reps / dt / 1e9;
    ee_free(a); ee_free(b); ee_free(c);
    return EE_OK;
}
