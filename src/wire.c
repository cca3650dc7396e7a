/* wire.c: the bytes an edge device and a server exchange (docs/serve.md, "Wire format"): a request carries a batch
 * of inputs or split-node outputs as fp32, fp16 or int8, with each sample's exit state; a reply carries each
 * sample's class, confidence, exit and why it stopped there. Little-endian, whatever the host. Parsing checks
 * every size against the buffer before reading it. */
#include "internal.h"
#include <math.h>
#include <string.h>

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void putf(unsigned char *p, float f) { uint32_t u; memcpy(&u, &f, 4); put32(p, u); }
static float getf(const unsigned char *p) { uint32_t u = get32(p); float f; memcpy(&f, &u, 4); return f; }
static void putd(unsigned char *p, double d) { uint64_t u; memcpy(&u, &d, 8); put64(p, u); }
static double getd(const unsigned char *p) { uint64_t u = get64(p); double d; memcpy(&d, &u, 8); return d; }

/* IEEE 754 half precision, round to nearest even */
static uint16_t to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, e = (x >> 23) & 0xff, m = x & 0x7fffffu;
    if (e == 0xff) return (uint16_t)(sign | 0x7c00u | (m ? 0x200u : 0)); /* inf, nan */
    int ee = (int)e - 127 + 15;
    if (ee >= 31) return (uint16_t)(sign | 0x7c00u); /* too large: inf */
    if (ee <= 0) {                                  /* subnormal or zero */
        if (ee < -10) return (uint16_t)sign;
        m |= 0x800000u;
        int shift = 14 - ee;
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = (uint32_t)ee << 10 | m >> 13, rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent: still right */
    return (uint16_t)(sign | h);
}
static float from_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, x;
    if (e == 0) {
        if (!m) x = sign;
        else { /* subnormal: normalise */
            int k = -1;
            do { k++; m <<= 1; } while (!(m & 0x400u));
            x = sign | (uint32_t)(127 - 15 - k) << 23 | (m & 0x3ffu) << 13;
        }
    } else if (e == 31) x = sign | 0x7f800000u | m << 13;
    else x = sign | (e - 15 + 127) << 23 | m << 13;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static size_t elem_size(int dtype) { return dtype == EE_WIRE_F32 ? 4 : dtype == EE_WIRE_F16 ? 2 : 1; }

ee_status ee_wire_request_size(ee_ctx *ctx, int n, int c, int h, int w, int dtype, int flags, size_t *len) {
    if (dtype < EE_WIRE_F32 || dtype > EE_WIRE_INT8) return ee_fail(ctx, EE_ERR_ARG, "unknown wire type %d", dtype);
    if (n < 0 || n > EE_WIRE_MAX_N || c < 1 || h < 1 || w < 1 || (uint64_t)c * h * w > EE_WIRE_MAX_ROW)
        return ee_fail(ctx, EE_ERR_ARG, "a request of %d samples of %dx%dx%d is outside the wire format's limits "
                       "(%d samples, %d values each)", n, c, h, w, EE_WIRE_MAX_N, EE_WIRE_MAX_ROW);
    uint64_t row = (uint64_t)c * h * w;
    *len = EE_WIRE_HEADER + (flags & EE_WIRE_STATES ? (uint64_t)n * EE_WIRE_STATE : 0) +
           (flags & EE_WIRE_LABELS ? (uint64_t)n : 0) + (dtype == EE_WIRE_INT8 ? 4ull * n : 0) + row * n * elem_size(dtype);
    return EE_OK;
}

ee_status ee_wire_encode_request(ee_ctx *ctx, uint64_t fingerprint, const char *split, const float *x, int n, int c,
                                 int h, int w, int dtype, const ee_exit_state *st, const uint8_t *labels,
                                 unsigned char *buf, size_t cap, size_t *len) {
    size_t need;
    int flags = (st ? EE_WIRE_STATES : 0) | (labels ? EE_WIRE_LABELS : 0);
    ee_status s = ee_wire_request_size(ctx, n, c, h, w, dtype, flags, &need);
    if (s) return s;
    if (cap < need) return ee_fail(ctx, EE_ERR_ARG, "wire buffer of %zu bytes, %zu needed", cap, need);
    if (split && strlen(split) >= EE_WIRE_NAME) return ee_fail(ctx, EE_ERR_ARG, "split name '%s' is too long", split);
    memset(buf, 0, EE_WIRE_HEADER);
    memcpy(buf, "EEQ1", 4);
    put32(buf + 4, EE_WIRE_HEADER);
    put64(buf + 8, fingerprint);
    if (split) memcpy(buf + 16, split, strlen(split));
    put32(buf + 80, (uint32_t)n); put32(buf + 84, (uint32_t)c); put32(buf + 88, (uint32_t)h); put32(buf + 92, (uint32_t)w);
    put32(buf + 96, (uint32_t)dtype);
    put32(buf + 100, (uint32_t)flags);
    unsigned char *p = buf + EE_WIRE_HEADER;
    for (int i = 0; st && i < n; i++, p += EE_WIRE_STATE) {
        memset(p, 0, EE_WIRE_STATE);
        putf(p, st[i].best); putf(p + 4, st[i].best_conf); putd(p + 8, st[i].jsum); putd(p + 16, st[i].jprod);
        p[24] = st[i].best_pred;
    }
    if (labels) {
        memcpy(p, labels, (size_t)n);
        p += n;
    }
    size_t row = (size_t)c * h * w;
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * row;
        if (dtype == EE_WIRE_F32)
            for (size_t k = 0; k < row; k++, p += 4) putf(p, r[k]);
        else if (dtype == EE_WIRE_F16)
            for (size_t k = 0; k < row; k++, p += 2) { uint16_t v = to_half(r[k]); p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
    }
    if (dtype == EE_WIRE_INT8) { /* symmetric, one scale per sample: max |x| / 127 */
        unsigned char *q = p + 4 * (size_t)n;
        for (int i = 0; i < n; i++) {
            const float *r = x + (size_t)i * row;
            float mx = 0;
            for (size_t k = 0; k < row; k++) mx = fmaxf(mx, fabsf(r[k]));
            float scale = mx > 0 && isfinite(mx) ? mx / 127.0f : 1.0f;
            putf(p + 4 * i, scale);
            for (size_t k = 0; k < row; k++) {
                float v = nearbyintf(r[k] / scale);
                v = v > 127 ? 127 : v < -127 ? -127 : v;
                *q++ = (unsigned char)(int8_t)v;
            }
        }
    }
    *len = need;
    return EE_OK;
}

ee_status ee_wire_parse_request(ee_ctx *ctx, const unsigned char *buf, size_t len, ee_wire_request *rq) {
    memset(rq, 0, sizeof *rq);
    if (len < 8 || memcmp(buf, "EEQ1", 4))
        return ee_fail(ctx, EE_ERR_FORMAT, len < 4 ? "request of %zu bytes: too short for a header" :
                       "not an eenn request (the body does not start with EEQ1; %zu bytes)", len);
    uint32_t hl = get32(buf + 4);
    if (hl != EE_WIRE_HEADER)
        return ee_fail(ctx, EE_ERR_FORMAT, "request header of %u bytes; this version reads %d", hl, EE_WIRE_HEADER);
    if (len < EE_WIRE_HEADER) return ee_fail(ctx, EE_ERR_FORMAT, "request truncated in its header (%zu bytes)", len);
    rq->fingerprint = get64(buf + 8);
    memcpy(rq->split, buf + 16, EE_WIRE_NAME);
    if (rq->split[EE_WIRE_NAME - 1]) return ee_fail(ctx, EE_ERR_FORMAT, "request split name is not terminated");
    uint32_t n = get32(buf + 80), c = get32(buf + 84), h = get32(buf + 88), w = get32(buf + 92);
    uint32_t dtype = get32(buf + 96), flags = get32(buf + 100);
    if (dtype > EE_WIRE_INT8) return ee_fail(ctx, EE_ERR_FORMAT, "request data type %u is unknown (0 fp32, 1 fp16, 2 int8)", dtype);
    if (flags > 3) return ee_fail(ctx, EE_ERR_FORMAT, "request flags %#x are unknown", flags);
    if (n > EE_WIRE_MAX_N || c < 1 || h < 1 || w < 1 || c > EE_WIRE_MAX_ROW || h > EE_WIRE_MAX_ROW ||
        w > EE_WIRE_MAX_ROW || (uint64_t)c * h * w > EE_WIRE_MAX_ROW)
        return ee_fail(ctx, EE_ERR_FORMAT, "request of %u samples of %ux%ux%u is outside the limits (%d samples, "
                       "%d values each)", n, c, h, w, EE_WIRE_MAX_N, EE_WIRE_MAX_ROW);
    size_t need;
    ee_status s = ee_wire_request_size(ctx, (int)n, (int)c, (int)h, (int)w, (int)dtype, (int)flags, &need);
    if (s) return s;
    if (len != need)
        return ee_fail(ctx, EE_ERR_FORMAT, "request of %zu bytes, but its header describes %zu (%s)", len, need,
                       len < need ? "truncated" : "trailing bytes");
    rq->n = (int)n; rq->c = (int)c; rq->h = (int)h; rq->w = (int)w; rq->dtype = (int)dtype;
    rq->with_state = (int)(flags & EE_WIRE_STATES);
    rq->with_labels = (int)(flags & EE_WIRE_LABELS) >> 1;
    rq->body = buf + EE_WIRE_HEADER;
    return EE_OK;
}

ee_status ee_wire_request_data(ee_ctx *ctx, const ee_wire_request *rq, float *x, ee_exit_state *st, uint8_t *labels) {
    const unsigned char *p = rq->body;
    for (int i = 0; rq->with_state && i < rq->n; i++, p += EE_WIRE_STATE) {
        if (!st) continue;
        st[i].best = getf(p); st[i].best_conf = getf(p + 4); st[i].jsum = getd(p + 8); st[i].jprod = getd(p + 16);
        st[i].best_pred = p[24];
    }
    for (int i = 0; !rq->with_state && st && i < rq->n; i++) ee_exit_state_init(&st[i]);
    if (rq->with_labels) {
        if (labels) memcpy(labels, p, (size_t)rq->n);
        p += rq->n;
    } else if (labels)
        memset(labels, 0, (size_t)rq->n);
    size_t row = (size_t)rq->c * rq->h * rq->w, all = row * rq->n;
    if (rq->dtype == EE_WIRE_F32)
        for (size_t k = 0; k < all; k++, p += 4) x[k] = getf(p);
    else if (rq->dtype == EE_WIRE_F16)
        for (size_t k = 0; k < all; k++, p += 2) x[k] = from_half((uint16_t)(p[0] | p[1] << 8));
    else {
        const unsigned char *q = p + 4 * (size_t)rq->n;
        for (int i = 0; i < rq->n; i++) {
            float scale = getf(p + 4 * i);
            if (!isfinite(scale) || scale <= 0) return ee_fail(ctx, EE_ERR_FORMAT, "sample %d: int8 scale %g", i, scale);
            for (size_t k = 0; k < row; k++) x[(size_t)i * row + k] = (float)(int8_t)*q++ * scale;
        }
    }
    for (size_t k = 0; k < all; k++)
        if (!isfinite(x[k]))
            return ee_fail(ctx, EE_ERR_FORMAT, "sample %zu holds a value that is not finite", k / row);
    return EE_OK;
}

size_t ee_wire_reply_size(int n) { return 8 + (size_t)n * 8; }

void ee_wire_encode_reply(const uint8_t *pred, const float *conf, const uint8_t *exit_head, const uint8_t *why, int n,
                          unsigned char *buf) {
    memcpy(buf, "EER1", 4);
    put32(buf + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        unsigned char *p = buf + 8 + (size_t)i * 8;
        p[0] = pred[i]; p[1] = exit_head[i]; p[2] = why ? why[i] : 0; p[3] = 0;
        putf(p + 4, conf[i]);
    }
}

ee_status ee_wire_parse_reply(ee_ctx *ctx, const unsigned char *buf, size_t len, int n, uint8_t *pred, float *conf,
                              uint8_t *exit_head, uint8_t *why) {
    if (len < 8 || memcmp(buf, "EER1", 4)) return ee_fail(ctx, EE_ERR_FORMAT, "not an eenn reply (%zu bytes)", len);
    if (get32(buf + 4) != (uint32_t)n || len != ee_wire_reply_size(n))
        return ee_fail(ctx, EE_ERR_FORMAT, "reply for %u samples in %zu bytes; %d were sent", get32(buf + 4), len, n);
    for (int i = 0; i < n; i++) {
        const unsigned char *p = buf + 8 + (size_t)i * 8;
        pred[i] = p[0]; exit_head[i] = p[1];
        if (why) why[i] = p[2];
        conf[i] = getf(p + 4);
    }
    return EE_OK;
}
