/* dnnl.c: the oneDNN engine and stream of a network, and GEMM through oneDNN's sgemm. */
#include "dnnl_glue.h"
#include <stdlib.h>

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
