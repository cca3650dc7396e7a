/* testlib.h: a minimal test harness. Each CHECK counts a pass or a failure; main returns the failure count
 * and prints "N passed, N failed" so that CI can read the result. */
#ifndef EE_TESTLIB_H
#define EE_TESTLIB_H
#include "eenn.h"
#include <stdio.h>

extern int tl_pass, tl_fail;
#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) tl_pass++;                                                          \
        else {                                                                        \
            tl_fail++;                                                                \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                      \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)
#define CHECK_OK(ctx, expr)                                                           \
    do {                                                                              \
        ee_status s_ = (expr);                                                        \
        CHECK(s_ == EE_OK, "%s -> %s: %s", #expr, ee_status_name(s_), ee_ctx_error(ctx)); \
    } while (0)
int tl_summary(const char *name);
/* max |a-b| / (atol + rtol*|b|) over n values: <= 1 passes */
double tl_close(const float *a, const float *b, size_t n, double atol, double rtol, size_t *worst);
/* reads a fixture file (tests/fixtures/NAME.bin): returns the tensor named `name` (malloc-ed) or NULL */
float *tl_fixture(const char *file, const char *name, size_t *count);
/* the fixture generator's weights and inputs: hash of the tensor name (tests/make_fixtures.py) */
void tl_hash_fill(const char *name, float *dst, size_t n, int ndim, const int *dims);
void tl_hash_input(const char *name, float *x, int n, int c, int h, int w); /* NCHW values placed NHWC */
void tl_nchw_to_nhwc(const float *src, float *dst, int n, int c, int hw);
void tl_fill_all(ee_net *net);
/* a small synthetic dataset of 28x28 images that nets can partly learn: the class is the brightest of ten regions */
ee_dataset *tl_toy_data(int n);
#endif
