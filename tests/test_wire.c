/* test_wire.c: the split's wire format: fp32 is exact, fp16 rounds to nearest even (hand-checked bit patterns,
 * subnormals, overflow), int8 is within half a step of each sample's scale; truncated, padded, oversized or
 * foreign bodies are refused with a message; replies round-trip. */
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the fp16 bits the wire holds for v: encode one value, read the two data bytes */
static unsigned half_bits(ee_ctx *ctx, float v) {
    unsigned char buf[EE_WIRE_HEADER + 2];
    size_t len;
    if (ee_wire_encode_request(ctx, 1, "", &v, 1, 1, 1, 1, EE_WIRE_F16, NULL, NULL, buf, sizeof buf, &len)) return 0xffffffffu;
    return buf[EE_WIRE_HEADER] | buf[EE_WIRE_HEADER + 1] << 8;
}

static float through(ee_ctx *ctx, float v, int dtype) {
    unsigned char buf[EE_WIRE_HEADER + 8];
    size_t len;
    ee_wire_request rq;
    float out = NAN;
    if (ee_wire_encode_request(ctx, 1, "", &v, 1, 1, 1, 1, dtype, NULL, NULL, buf, sizeof buf, &len) ||
        ee_wire_parse_request(ctx, buf, len, &rq) || ee_wire_request_data(ctx, &rq, &out, NULL, NULL))
        return NAN;
    return out;
}

int main(void) {
    ee_ctx *ctx = ee_ctx_new();
    /* fp16: hand-computed patterns */
    struct { float v; unsigned bits; } h[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.5f, 0x3800}, {65504.0f, 0x7bff}, {65520.0f, 0x7c00}, /* rounds up to inf */
        {1e6f, 0x7c00}, {5.9604645e-8f, 0x0001}, /* 2^-24, the smallest subnormal */ {2.9e-8f, 0x0000},
        {6.1035156e-5f, 0x0400}, /* 2^-14, the smallest normal */ {1.0009765625f, 0x3c01},
        {1.00048828125f, 0x3c00}, /* halfway between 1 and 1+2^-10: to even */ {1.00146484375f, 0x3c02}, /* up, to even */
        {0.333333f, 0x3555}, {0.0f, 0x0000}, {-0.0f, 0x8000}};
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) {
        unsigned b = half_bits(ctx, h[i].v);
        CHECK(b == h[i].bits, "fp16 of %g: %#06x, expected %#06x", h[i].v, b, h[i].bits);
    }
    CHECK(through(ctx, 5.9604645e-8f, EE_WIRE_F16) == 5.9604645e-8f, "fp16 subnormal does not come back");
    CHECK(through(ctx, 0.333333f, EE_WIRE_F16) == 0.333251953125f, "fp16 0.333333 -> %g", through(ctx, 0.333333f, EE_WIRE_F16));
    CHECK(through(ctx, -1234.5f, EE_WIRE_F32) == -1234.5f, "fp32 is not exact");
    /* a batch: fp32 exact with the states, fp16 within 2^-11 relative, int8 within half a step */
    enum { N = 5, C = 3, HH = 4, W = 2 };
    size_t row = C * HH * W;
    float x[N * C * HH * W], back[N * C * HH * W];
    for (size_t k = 0; k < N * row; k++) x[k] = (float)sin(0.37 * k) * (1 + (float)(k / row));
    ee_exit_state st[N], st2[N];
    uint8_t lab[N] = {3, 1, 4, 1, 5};
    for (int i = 0; i < N; i++) {
        ee_exit_state_init(&st[i]);
        st[i].best = 0.1f * i; st[i].best_conf = 0.5f + 0.01f * i; st[i].best_pred = (uint8_t)(7 - i);
        st[i].jsum = 1.0 / 3 + i; st[i].jprod = 0.25 * i;
    }
    for (int d = EE_WIRE_F32; d <= EE_WIRE_INT8; d++) {
        size_t cap, len;
        CHECK_OK(ctx, ee_wire_request_size(ctx, N, C, HH, W, d, EE_WIRE_STATES | EE_WIRE_LABELS, &cap));
        unsigned char *buf = malloc(cap + 8);
        CHECK_OK(ctx, ee_wire_encode_request(ctx, 0x1234567890abcdefull, "s1.b8.add", x, N, C, HH, W, d, st, lab, buf, cap, &len));
        CHECK(len == cap, "encoded %zu bytes, the size said %zu", len, cap);
        ee_wire_request rq;
        CHECK_OK(ctx, ee_wire_parse_request(ctx, buf, len, &rq));
        CHECK(rq.fingerprint == 0x1234567890abcdefull && !strcmp(rq.split, "s1.b8.add") && rq.n == N && rq.c == C &&
              rq.h == HH && rq.w == W && rq.dtype == d && rq.with_state, "the header did not come back");
        uint8_t lab2[N];
        CHECK_OK(ctx, ee_wire_request_data(ctx, &rq, back, st2, lab2));
        CHECK(rq.with_labels && !memcmp(lab, lab2, N), "the labels did not come back");
        int st_ok = 1;
        for (int i = 0; i < N; i++) st_ok &= !memcmp(&st[i].best, &st2[i].best, 4) && st[i].best_conf == st2[i].best_conf &&
                                             st[i].jsum == st2[i].jsum && st[i].jprod == st2[i].jprod &&
                                             st[i].best_pred == st2[i].best_pred;
        CHECK(st_ok, "type %d: the exit states did not come back exactly", d);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            float mx = 0;
            for (size_t k = 0; k < row; k++) mx = fmaxf(mx, fabsf(x[i * row + k]));
            for (size_t k = 0; k < row; k++) {
                double e = fabs(back[i * row + k] - x[i * row + k]);
                double tol = d == EE_WIRE_F32 ? 0 : d == EE_WIRE_F16 ? fabs(x[i * row + k]) / 2048 + 1e-7 : mx / 127 / 2 * 1.0001;
                if (e > tol) worst = fmax(worst, e / tol);
                if (e > tol && !tol) worst = 2;
            }
        }
        CHECK(worst <= 1, "type %d: a value off by %.3g times its tolerance", d, worst);
        /* truncated, padded, foreign, bad header fields */
        CHECK(ee_wire_parse_request(ctx, buf, len - 1, &rq) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "truncated"),
              "a truncated request: %s", ee_ctx_error(ctx));
        CHECK(ee_wire_parse_request(ctx, buf, len + 3, &rq) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "trailing"),
              "a padded request: %s", ee_ctx_error(ctx));
        CHECK(ee_wire_parse_request(ctx, buf, 50, &rq) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "header"),
              "a request cut in its header: %s", ee_ctx_error(ctx));
        buf[0] = 'G';
        CHECK(ee_wire_parse_request(ctx, buf, len, &rq) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "EEQ1"),
              "a foreign body: %s", ee_ctx_error(ctx));
        buf[0] = 'E';
        buf[80] = 0xff; buf[81] = 0xff; buf[82] = 0xff; buf[83] = 0x7f; /* n = 2^31 - 1 */
        CHECK(ee_wire_parse_request(ctx, buf, len, &rq) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "limits"),
              "a huge n: %s", ee_ctx_error(ctx));
        free(buf);
    }
    /* a value that is not finite is refused */
    {
        float bad[2] = {1, NAN};
        unsigned char buf[EE_WIRE_HEADER + 8];
        size_t len;
        ee_wire_request rq;
        float out[2];
        CHECK_OK(ctx, ee_wire_encode_request(ctx, 1, "", bad, 1, 2, 1, 1, EE_WIRE_F32, NULL, NULL, buf, sizeof buf, &len));
        CHECK_OK(ctx, ee_wire_parse_request(ctx, buf, len, &rq));
        CHECK(ee_wire_request_data(ctx, &rq, out, NULL, NULL) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "not finite"),
              "a NaN in a request: %s", ee_ctx_error(ctx));
    }
    /* replies */
    uint8_t p[3] = {1, 9, 200}, e[3] = {0, 6, 2}, w[3] = {0, 1, 4}, p2[3], e2[3], w2[3];
    float c[3] = {0.5f, 0.99f, 0.125f}, c2[3];
    unsigned char rb[64];
    ee_wire_encode_reply(p, c, e, w, 3, rb);
    CHECK_OK(ctx, ee_wire_parse_reply(ctx, rb, ee_wire_reply_size(3), 3, p2, c2, e2, w2));
    CHECK(!memcmp(p, p2, 3) && !memcmp(e, e2, 3) && !memcmp(w, w2, 3) && !memcmp(c, c2, sizeof c), "a reply did not come back");
    CHECK(ee_wire_parse_reply(ctx, rb, ee_wire_reply_size(3), 4, p2, c2, e2, w2) == EE_ERR_FORMAT, "a reply for another n");
    CHECK(ee_wire_parse_reply(ctx, rb, 10, 3, p2, c2, e2, w2) == EE_ERR_FORMAT, "a short reply");
    ee_ctx_free(ctx);
    return tl_summary("test_wire");
}
