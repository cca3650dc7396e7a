/* modeldiff: the largest difference between the parameters (and batch-norm statistics) of two model files of one
 * architecture, for tests: modeldiff A B [TOL] prints it and exits 1 if it exceeds TOL (relative to the largest
 * magnitude of that tensor, at least 1). */
#include "eenn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: modeldiff A B [TOL]\n"); return 2; }
    double tol = argc > 3 ? atof(argv[3]) : 1e-4, worst = 0;
    const char *worst_name = "";
    ee_ctx *ctx = ee_ctx_new();
    ee_net *a = NULL, *b = NULL;
    if (ee_net_load(ctx, argv[1], &a) || ee_net_load(ctx, argv[2], &b)) {
        fprintf(stderr, "modeldiff: %s\n", ee_ctx_error(ctx));
        return 2;
    }
    if (ee_net_num_tensors(a) != ee_net_num_tensors(b)) { fprintf(stderr, "modeldiff: different networks\n"); return 2; }
    for (int i = 0; i < ee_net_num_tensors(a); i++) {
        const char *na, *nb;
        float *da, *db;
        size_t ca, cb;
        int nd, dims[4], st;
        ee_net_tensor(a, i, &na, &da, &ca, &nd, dims, &st);
        ee_net_tensor(b, i, &nb, &db, &cb, &nd, dims, &st);
        if (ca != cb) { fprintf(stderr, "modeldiff: %s: different sizes\n", na); return 2; }
        double mag = 1, d = 0;
        for (size_t j = 0; j < ca; j++) mag = fmax(mag, fabs(da[j]));
        for (size_t j = 0; j < ca; j++) d = fmax(d, fabs((double)da[j] - db[j]));
        if (!(d / mag <= worst) || d != d) { worst = d / mag; worst_name = na; }
    }
    printf("largest difference %.3g (%s)\n", worst, worst_name);
    ee_net_free(a); ee_net_free(b);
    ee_ctx_free(ctx);
    return worst <= tol ? 0 : 1;
}
