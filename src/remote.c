/* remote.c: the edge side of a split over HTTP (libcurl): the near part and its exits run here, the samples that
 * did not exit go to an `eenn serve` server (POST /v1/resume, docs/serve.md), and its answers are merged. When the
 * server cannot be reached, fails or is slower than the timeout, those samples answer from the most confident exit
 * computed here, marked EE_EXIT_DEGRADED. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef EE_NO_CURL
#include <curl/curl.h>
#endif

struct ee_remote {
    char *url;
    int timeout_ms, dtype, send_inputs;
#ifndef EE_NO_CURL
    CURL *curl;
    struct curl_slist *hdr;
#endif
    unsigned char *reply;
    size_t reply_len, reply_cap;
};

#ifndef EE_NO_CURL
static size_t on_data(char *p, size_t size, size_t nmemb, void *user) {
    ee_remote *r = user;
    size_t add = size * nmemb;
    if (r->reply_len + add > (64u << 20)) return 0; /* a reply this large is not an eenn reply */
    if (r->reply_len + add > r->reply_cap) {
        size_t cap = (r->reply_len + add) * 2;
        unsigned char *b = realloc(r->reply, cap);
        if (!b) return 0;
        r->reply = b;
        r->reply_cap = cap;
    }
    memcpy(r->reply + r->reply_len, p, add);
    r->reply_len += add;
    return add;
}
#endif

ee_status ee_remote_open(ee_ctx *ctx, const char *url, const ee_remote_opts *o, ee_remote **out) {
    *out = NULL;
    int dtype = o ? o->dtype : EE_WIRE_F32, timeout_ms = o ? o->timeout_ms : 0;
#ifdef EE_NO_CURL
    (void)url; (void)dtype; (void)timeout_ms;
    return ee_fail(ctx, EE_ERR_ARG, "this eenn was built without libcurl: no remote inference");
#else
    if (dtype < EE_WIRE_F32 || dtype > EE_WIRE_INT8) return ee_fail(ctx, EE_ERR_ARG, "unknown wire type %d", dtype);
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return ee_fail(ctx, EE_ERR_ARG, "server '%s': expected http://HOST:PORT", url);
    ee_remote *r = calloc(1, sizeof *r);
    if (!r) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    size_t n = strlen(url);
    while (n && url[n - 1] == '/') n--;
    r->url = malloc(n + 16);
    r->curl = curl_easy_init();
    if (!r->url || !r->curl) { ee_remote_close(r); return ee_fail(ctx, EE_ERR_NOMEM, "cannot start libcurl"); }
    memcpy(r->url, url, n);
    r->send_inputs = o && o->send_inputs;
    strcpy(r->url + n, r->send_inputs ? "/v1/classify" : "/v1/resume");
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    r->dtype = dtype;
    r->hdr = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    r->hdr = curl_slist_append(r->hdr, "Accept: application/octet-stream");
    r->hdr = curl_slist_append(r->hdr, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(r->curl, CURLOPT_URL, r->url);
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->hdr);
    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->curl, CURLOPT_TCP_NODELAY, 1L);
    *out = r;
    return EE_OK;
#endif
}

void ee_remote_close(ee_remote *r) {
    if (!r) return;
#ifndef EE_NO_CURL
    if (r->curl) curl_easy_cleanup(r->curl);
    curl_slist_free_all(r->hdr);
#endif
    free(r->url);
    free(r->reply);
    free(r);
}

#ifndef EE_NO_CURL
/* POSTs body; on success the reply is in r->reply. Returns 0, or -1 with why in err. */
static int post(ee_remote *r, const unsigned char *body, size_t len, char *err, size_t errn) {
    r->reply_len = 0;
    curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, (const char *)body);
    curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLcode c = curl_easy_perform(r->curl);
    if (c != CURLE_OK) { snprintf(err, errn, "%s: %s", r->url, curl_easy_strerror(c)); return -1; }
    long code = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        int m = (int)(r->reply_len < 200 ? r->reply_len : 200);
        snprintf(err, errn, "%s: HTTP %ld %.*s", r->url, code, m, r->reply ? (const char *)r->reply : "");
        for (char *p = err; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
        return -1;
    }
    return 0;
}
#endif

ee_status ee_infer_remote(ee_ctx *ctx, ee_net *net, ee_remote *r, const float *x, int n, const ee_exit_policy *p,
                          const ee_split *sp, uint8_t *pred, float *conf, uint8_t *exit_head, uint8_t *why,
                          ee_remote_stats *rs) {
    ee_remote_stats none;
    if (!rs) rs = &none;
    memset(rs, 0, sizeof *rs);
    if (n < 1) return EE_OK;
    size_t row = (size_t)sp->c * sp->h * sp->w, len = 0;
    ee_exit_state *st = malloc(sizeof *st * n), *lst = malloc(sizeof *st * n);
    int *left = malloc(sizeof(int) * n), nleft = 0;
    float *act = malloc(row * n * sizeof(float));
    uint8_t *rp = malloc(n), *re = malloc(n), *rw = malloc(n);
    float *rc = malloc(sizeof(float) * n);
    unsigned char *buf = NULL;
    ee_status s = EE_OK;
    if (!st || !lst || !left || !act || !rp || !re || !rw || !rc) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); goto done; }
    if ((s = ee_infer_edge(ctx, net, x, n, p, sp, pred, conf, exit_head, why, st, left, &nleft, act))) goto done;
    rs->sent = nleft;
    if (!nleft) goto done;
    for (int i = 0; i < nleft; i++) lst[i] = st[left[i]];
    if (r->send_inputs) { /* the inputs of the samples that go on, in place of their split outputs */
        size_t in = ee_shape_size(net->in);
        if (in > row) {
            float *a2 = realloc(act, in * n * sizeof(float));
            if (!a2) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); goto done; }
            act = a2;
        }
        for (int i = 0; i < nleft; i++) memcpy(act + (size_t)i * in, x + (size_t)left[i] * in, in * sizeof(float));
    }
    int c = r->send_inputs ? net->in.c : sp->c, h = r->send_inputs ? net->in.h : sp->h;
    int w = r->send_inputs ? net->in.w : sp->w;
    if ((s = ee_wire_request_size(ctx, nleft, c, h, w, r->dtype, r->send_inputs ? 0 : EE_WIRE_STATES, &len))) goto done;
    if (!(buf = malloc(len))) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); goto done; }
    if ((s = ee_wire_encode_request(ctx, ee_net_fingerprint(net), r->send_inputs ? "" : net->nodes[sp->node].name, act,
                                    nleft, c, h, w, r->dtype, r->send_inputs ? NULL : lst, NULL, buf, len, &len)))
        goto done;
    rs->bytes_sent = len;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int failed = 1;
#ifndef EE_NO_CURL
    failed = post(r, buf, len, rs->error, sizeof rs->error);
    rs->bytes_received = r->reply_len;
    if (!failed) {
        if (ee_wire_parse_reply(ctx, r->reply, r->reply_len, nleft, rp, rc, re, rw)) {
            snprintf(rs->error, sizeof rs->error, "%s: %s", r->url, ee_ctx_error(ctx));
            failed = 1;
        }
    }
#else
    snprintf(rs->error, sizeof rs->error, "built without libcurl");
#endif
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rs->round_trip_us = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) * 1e-3;
    for (int i = 0; i < nleft; i++) {
        int o = left[i];
        if (!failed) {
            pred[o] = rp[i]; conf[o] = rc[i]; exit_head[o] = re[i];
            if (why) why[o] = rw[i];
        } else { /* the most confident exit computed here */
            if (st[o].best < 0) {
                s = ee_fail(ctx, EE_ERR_IO, "%s, and no exit before the split to answer from", rs->error);
                goto done;
            }
            pred[o] = st[o].best_pred; conf[o] = st[o].best_conf; exit_head[o] = (uint8_t)(sp->heads - 1);
            if (why) why[o] = EE_EXIT_DEGRADED;
            rs->degraded++;
        }
    }
done:
    free(st); free(lst); free(left); free(act); free(rp); free(re); free(rw); free(rc); free(buf);
    return s;
}
