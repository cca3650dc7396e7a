/* roofline.c: the two hardware limits of a convolution on this CPU, with 1 and 2 threads, for `make bench`
 * (scripts/bench_compare.py):
 * - the fp32 FMA peak: each thread runs 12 independent chains of vector FMAs (enough to cover the FMA latency on
 *   two pipes), 512-bit where the CPU has AVX-512, 256-bit otherwise;
 * - the memory read bandwidth: the threads sum the halves of a 256 MB buffer, far larger than any cache.
 * No kernel does more multiply-adds per second than the first, and a layer whose weights do not stay in cache
 * (VGG-16-BN's last convs at batch 1) streams them no faster than the second. Each figure is the best of three.
 * Prints one JSON object: {"simd_bits": B, "gflops": {"1": G, "2": G}, "read_gbs": {"1": B, "2": B}}.
 * Build: cc -O2 -pthread scripts/roofline.c -o roofline */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define ITERS 100000000L /* one block of 12 FMAs per iteration */

__attribute__((target("avx2,fma"))) static float chains256(long iters) {
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

__attribute__((target("avx512f"))) static float chains512(long iters) {
    __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    float out[16];
    _mm512_storeu_ps(out, s);
    return out[0];
}

/* the sum of n floats (n a multiple of 32), four independent vector sums */
__attribute__((target("avx2,fma"))) static float read_all(const float *p, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return out[0];
}

#define BUF_FLOATS ((size_t)64 << 20) /* 256 MB */

static int wide; /* 1: AVX-512 */
static float *buf;
static volatile float sink;

typedef struct {
    int mem, part, parts;
} job;

static void *worker(void *arg) {
    const job *j = arg;
    if (j->mem) {
        size_t n = BUF_FLOATS / j->parts;
        sink = read_all(buf + n * j->part, n);
    } else {
        sink = wide ? chains512(ITERS) : chains256(ITERS);
    }
    return NULL;
}

/* best of three runs of `threads` threads: GFLOP/s (mem 0) or GB/s read (mem 1) */
static double best_of_3(int mem, int threads) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t t[2];
        job jobs[2];
        double t0 = now();
        for (int i = 0; i < threads; i++) {
            jobs[i] = (job){mem, i, threads};
            if (pthread_create(&t[i], NULL, worker, &jobs[i])) return 0;
        }
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        double dt = now() - t0;
        double v = mem ? BUF_FLOATS * sizeof(float) / dt / 1e9 : (double)threads * ITERS * 12 * (wide ? 16 : 8) * 2 / dt / 1e9;
        if (v > best) best = v;
    }
    return best;
}

int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "fma_peak: this CPU has no AVX2 + FMA\n");
        return 1;
    }
    wide = __builtin_cpu_supports("avx512f");
    buf = aligned_alloc(64, BUF_FLOATS * sizeof(float));
    if (!buf) {
        fprintf(stderr, "roofline: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < BUF_FLOATS; i++) buf[i] = 1.0f; /* touch every page before timing */
    double g1 = best_of_3(0, 1), g2 = best_of_3(0, 2), b1 = best_of_3(1, 1), b2 = best_of_3(1, 2);
    free(buf);
    printf("{\"simd_bits\": %d, \"gflops\": {\"1\": %.1f, \"2\": %.1f}, \"read_gbs\": {\"1\": %.1f, \"2\": %.1f}}\n",
           wide ? 512 : 256, g1, g2, b1, b2);
    return g1 > 0 && g2 > 0 && b1 > 0 && b2 > 0 ? 0 : 1;
}
