/* fuzz_wire.c: libFuzzer harness for the server's request parser (ee_wire_parse_request, ee_wire_request_data)
 * and the reply parser: any bytes give a request or an error with a message; an accepted fp32 or fp16 request
 * encodes back to the same bytes (the states' padding aside: a request must carry zeros there to be re-encoded
 * equal, so the comparison is of what was decoded). */
#include "eenn.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    ee_ctx *ctx = ee_ctx_new();
    ee_wire_request rq;
    if (ee_wire_parse_request(ctx, data, size, &rq) == EE_OK) {
        size_t row = (size_t)rq.c * rq.h * rq.w;
        float *x = malloc(row * (rq.n ? rq.n : 1) * sizeof(float));
        ee_exit_state *st = malloc(sizeof *st * (rq.n ? rq.n : 1));
        uint8_t *lab = malloc(rq.n ? rq.n : 1);
        if (x && st && lab && ee_wire_request_data(ctx, &rq, x, st, lab) == EE_OK && rq.dtype != EE_WIRE_INT8) {
            /* decoded values encode and decode to themselves */
            size_t len = 0;
            unsigned char *buf = malloc(size);
            float *y = malloc(row * (rq.n ? rq.n : 1) * sizeof(float));
            ee_wire_request r2;
            if (!buf || !y || ee_wire_encode_request(ctx, rq.fingerprint, rq.split, x, rq.n, rq.c, rq.h, rq.w, rq.dtype,
                                                     rq.with_state ? st : NULL, rq.with_labels ? lab : NULL, buf,
                                                     size, &len) ||
                len != size || ee_wire_parse_request(ctx, buf, len, &r2) || ee_wire_request_data(ctx, &r2, y, NULL, NULL) ||
                memcmp(x, y, row * rq.n * sizeof(float)))
                abort();
            free(buf);
            free(y);
        } else if (x && st && !ee_ctx_error(ctx)[0] && rq.dtype != EE_WIRE_INT8) {
            abort();
        }
        free(x);
        free(st);
        free(lab);
    } else if (!ee_ctx_error(ctx)[0]) {
        abort();
    }
    /* the same bytes as a reply for 1..4 samples */
    uint8_t p[4], e[4], w[4];
    float c[4];
    for (int n = 1; n <= 4; n++) ee_wire_parse_reply(ctx, data, size, n, p, c, e, w);
    ee_ctx_free(ctx);
    return 0;
}
