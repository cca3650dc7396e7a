/* testlib.c: counters, closeness and the fixture reader (format written by tests/make_fixtures.py:
 * repeated records of u32 name length, name, u32 count, count float32 little-endian). */
#include "testlib.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int tl_pass, tl_fail;

int tl_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, tl_pass, tl_fail);
    return tl_fail ? 1 : 0;
}

double tl_close(const float *a, const float *b, size_t n, double atol, double rtol, size_t *worst) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (atol + rtol * fabs(b[i]));
        if (!(e <= m)) { m = isnan(e) ? INFINITY : e; if (worst) *worst = i; }
    }
    return m;
}

float *tl_fixture(const char *file, const char *name, size_t *count) {
    FILE *f = fopen(file, "rb");
    if (!f) { fprintf(stderr, "cannot open fixture %s\n", file); return NULL; }
    for (;;) {
        uint32_t nl, n;
        char nm[256];
        if (fread(&nl, 4, 1, f) != 1 || nl >= sizeof nm || fread(nm, 1, nl, f) != nl || fread(&n, 4, 1, f) != 1) break;
        nm[nl] = 0;
        if (!strcmp(nm, name)) {
            float *d = malloc((size_t)n * 4 + 4);
            if (d && fread(d, 4, n, f) != n) { free(d); d = NULL; }
            fclose(f);
            if (count) *count = n;
            return d;
        }
        fseek(f, (long)n * 4, SEEK_CUR);
    }
    fclose(f);
    fprintf(stderr, "fixture %s has no tensor %s\n", file, name);
    return NULL;
}

/* ---- deterministic weights and inputs shared with tests/make_fixtures.py (hval, fill) */
static double hval(uint32_t seed, size_t i) {
    uint32_t h = (uint32_t)((uint64_t)i * 2654435761u + seed);
    h ^= h >> 16;
    h = (uint32_t)((uint64_t)h * 0x45D9F3Bu);
    h ^= h >> 16;
    return h / 4294967296.0;
}
static int ends(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}
/* the fill rule of make_fixtures.py */
void tl_hash_fill(const char *name, float *dst, size_t n, int ndim, const int *dims) {
    uint32_t seed = (uint32_t)crc32(0, (const Bytef *)name, (uInt)strlen(name));
    for (size_t i = 0; i < n; i++) {
        double u = hval(seed, i), v;
        if (ends(name, "running_var")) v = 0.5 + u;
        else if (ends(name, "running_mean") || ends(name, "bias")) v = 0.2 * (2 * u - 1);
        else if (ends(name, "weight") && ndim == 1) v = 0.8 + 0.4 * u;
        else v = (2 * u - 1) * sqrt(3.0 / (double)(n / dims[0]));
        dst[i] = (float)v;
    }
}
/* NCHW hash input placed NHWC */
void tl_hash_input(const char *name, float *x, int n, int c, int h, int w) {
    uint32_t seed = (uint32_t)crc32(0, (const Bytef *)name, (uInt)strlen(name));
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < h * w; i++)
                x[((size_t)b * h * w + i) * c + ch] = (float)(2 * hval(seed, (((size_t)b * c + ch) * h * w) + i) - 1);
}
void tl_nchw_to_nhwc(const float *src, float *dst, int n, int c, int hw) {
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++) dst[((size_t)b * hw + i) * c + ch] = src[((size_t)b * c + ch) * hw + i];
}
void tl_fill_all(ee_net *net) {
    for (int t = 0; t < ee_net_num_tensors(net); t++) {
        const char *nm;
        float *d;
        size_t cnt;
        int nd, dims[4];
        ee_net_tensor(net, t, &nm, &d, &cnt, &nd, dims, NULL);
        tl_hash_fill(nm, d, cnt, nd, dims);
    }
    ee_net_params_changed(net);
}

/* a small synthetic dataset the nets can partly learn: the class is the brightest of ten image regions */
ee_dataset *tl_toy_data(int n) {
    ee_dataset *ds = calloc(1, sizeof *ds);
    ds->n = n; ds->c = 1; ds->h = 28; ds->w = 28; ds->classes = 10;
    ds->pixels = malloc((size_t)n * 784);
    ds->labels = malloc(n);
    ds->mean[0] = 0.3f; ds->std[0] = 0.3f;
    uint64_t r = 99;
    for (int i = 0; i < n; i++) {
        int k = i % 10;
        for (int p = 0; p < 784; p++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            int region = (p / 28) / 3;
            ds->pixels[(size_t)i * 784 + p] = (uint8_t)((r >> 57) + (region == k ? 90 + (r >> 60) * 8 : 0));
        }
        ds->labels[i] = (uint8_t)k;
    }
    return ds;
}
