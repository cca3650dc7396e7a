/* testlib.c: counters, closeness and the fixture reader (format written by tests/make_fixtures.py:
 * repeated records of u32 name length, name, u32 count, count float32 little-endian). */
#include "testlib.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
