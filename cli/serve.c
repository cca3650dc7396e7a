/* serve.c: `eenn serve MODEL --listen HOST:PORT`, an HTTP server (libmicrohttpd) that classifies whole inputs
 * with early exits and finishes the samples an edge device sends from a split (docs/serve.md). One worker thread
 * owns the network; connection threads parse and check requests, queue them, and wait. The worker merges queued
 * requests of the same kind into one batch. The queue is bounded: when full, requests get 503 at once. */
#define _DEFAULT_SOURCE
#include "common.h"
#include "http.h"
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stb/stb_image.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_SPLITS 32

typedef struct job {
    int kind;               /* -1: whole inputs; else the index of its split */
    int n;
    float *x;               /* n rows */
    ee_exit_state *st;      /* split requests: n states */
    uint8_t *pred, *exit_head, *why;
    float *conf;
    int done;
    ee_status status;
    char err[300];
    struct job *next;
} job;

typedef struct {
    ee_ctx *ctx;
    ee_net *net;
    ee_exit_policy pol;
    uint64_t fp;
    int C, H, W, K, max_batch;
    const char *model;
    ee_split split[MAX_SPLITS];
    char split_name[MAX_SPLITS][EE_WIRE_NAME];
    int nsplits;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    job *head, *tail;
    long queued, queue_cap;   /* samples waiting or running, and the most allowed */
    size_t max_body;
    int stop;
    unsigned long requests, samples, rejected_busy, rejected_bad;
    char names_buf[4096];
    char *cname[256];
} server;

/* ---------------------------------------------------------------- the worker */
static void run_group(server *S, job **g, int ng) {
    int kind = g[0]->kind, tot = 0;
    for (int i = 0; i < ng; i++) tot += g[i]->n;
    const ee_split *sp = kind >= 0 ? &S->split[kind] : NULL;
    size_t row = sp ? (size_t)sp->c * sp->h * sp->w : (size_t)S->C * S->H * S->W;
    ee_status s = EE_OK;
    const char *oom = NULL;
    if (ng == 1) { /* one request: straight from its buffers, in chunks of the prepared batch */
        job *j = g[0];
        for (int i = 0; i < j->n && !s; i += S->max_batch) {
            int m = j->n - i < S->max_batch ? j->n - i : S->max_batch;
            s = sp ? ee_infer_resume(S->ctx, S->net, j->x + (size_t)i * row, m, &S->pol, sp, j->st + i, j->pred + i,
                                     j->conf + i, j->exit_head + i, j->why + i)
                   : ee_infer_policy(S->ctx, S->net, j->x + (size_t)i * row, m, &S->pol, NULL, j->pred + i, j->conf + i,
                                     j->exit_head + i, j->why + i);
        }
    } else { /* several: one batch */
        float *x = malloc(row * tot * sizeof(float));
        ee_exit_state *st = sp ? malloc(sizeof *st * tot) : NULL;
        uint8_t *pred = malloc(tot), *ex = malloc(tot), *why = malloc(tot);
        float *conf = malloc(sizeof(float) * tot);
        if (!x || (sp && !st) || !pred || !ex || !why || !conf) { s = EE_ERR_NOMEM; oom = "out of memory"; }
        for (int i = 0, o = 0; i < ng && !s; o += g[i]->n, i++) {
            memcpy(x + (size_t)o * row, g[i]->x, row * g[i]->n * sizeof(float));
            if (sp) memcpy(st + o, g[i]->st, sizeof *st * g[i]->n);
        }
        if (!s)
            s = sp ? ee_infer_resume(S->ctx, S->net, x, tot, &S->pol, sp, st, pred, conf, ex, why)
                   : ee_infer_policy(S->ctx, S->net, x, tot, &S->pol, NULL, pred, conf, ex, why);
        for (int i = 0, o = 0; i < ng && !s; o += g[i]->n, i++) {
            memcpy(g[i]->pred, pred + o, g[i]->n); memcpy(g[i]->exit_head, ex + o, g[i]->n);
            memcpy(g[i]->why, why + o, g[i]->n); memcpy(g[i]->conf, conf + o, sizeof(float) * g[i]->n);
        }
        free(x); free(st); free(pred); free(ex); free(why); free(conf);
    }
    for (int i = 0; i < ng; i++) {
        g[i]->status = s;
        if (s) snprintf(g[i]->err, sizeof g[i]->err, "%s", oom ? oom : ee_ctx_error(S->ctx));
    }
}

static void *worker(void *arg) {
    server *S = arg;
    job *g[256];
    pthread_mutex_lock(&S->mu);
    for (;;) {
        while (!S->head && !S->stop) pthread_cond_wait(&S->work, &S->mu);
        if (!S->head) break;
        /* the first request, and the queued ones of its kind that fit in one batch with it */
        int ng = 0, tot = 0, kind = S->head->kind;
        job **pp = &S->head;
        while (*pp && ng < 256) {
            job *j = *pp;
            if (j->kind == kind && (ng == 0 || tot + j->n <= S->max_batch)) {
                g[ng++] = j;
                tot += j->n;
                *pp = j->next;
            } else pp = &j->next;
        }
        S->tail = NULL;
        for (job *j = S->head; j; j = j->next) S->tail = j;
        pthread_mutex_unlock(&S->mu);
        run_group(S, g, ng);
        pthread_mutex_lock(&S->mu);
        for (int i = 0; i < ng; i++) g[i]->done = 1;
        S->queued -= tot;
        pthread_cond_broadcast(&S->done);
    }
    pthread_mutex_unlock(&S->mu);
    return NULL;
}

/* ---------------------------------------------------------------- HTTP */
typedef struct {
    unsigned char *body;
    size_t len, cap;
    int too_large;
} request;

enum MHD_Result http_reply(struct MHD_Connection *con, unsigned status, const char *type, void *data, size_t len,
                           int owned) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, owned ? MHD_RESPMEM_MUST_FREE
                                                                               : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (owned) free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ok = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_error(struct MHD_Connection *con, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_error(struct MHD_Connection *con, unsigned status, const char *fmt, ...) {
    char msg[600], body[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", js(msg));
    return http_reply(con, status, "application/json", body, (size_t)n, 0);
}

/* the split called name: cached after the first request (under S->mu); -1 with err if there is none */
static int find_split(server *S, const char *name, char *err, size_t errn) {
    for (int i = 0; i < S->nsplits; i++)
        if (!strcmp(S->split_name[i], name)) return i;
    if (S->nsplits == MAX_SPLITS) { snprintf(err, errn, "too many different split points"); return -1; }
    ee_ctx *c = ee_ctx_new();
    ee_split sp;
    ee_status s = c ? ee_split_at(c, S->net, name, &sp) : EE_ERR_NOMEM;
    if (s) snprintf(err, errn, "%s", c ? ee_ctx_error(c) : "out of memory");
    ee_ctx_free(c);
    if (s) return -1;
    S->split[S->nsplits] = sp;
    snprintf(S->split_name[S->nsplits], EE_WIRE_NAME, "%s", name);
    return S->nsplits++;
}

/* queues j and waits for it; 0, or -1 if the queue is full */
static int submit(server *S, job *j) {
    pthread_mutex_lock(&S->mu);
    if (S->queued > 0 && S->queued + j->n > S->queue_cap) {
        S->rejected_busy++;
        pthread_mutex_unlock(&S->mu);
        return -1;
    }
    S->queued += j->n;
    S->requests++;
    S->samples += (unsigned long)j->n;
    if (S->tail) S->tail->next = j;
    else S->head = j;
    S->tail = j;
    pthread_cond_signal(&S->work);
    while (!j->done) pthread_cond_wait(&S->done, &S->mu);
    pthread_mutex_unlock(&S->mu);
    return 0;
}

static enum MHD_Result answer(server *S, struct MHD_Connection *con, job *j) {
    if (j->status) return reply_error(con, 500, "%s", j->err);
    const char *acc = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Accept");
    if (acc && strstr(acc, "application/octet-stream")) {
        size_t len = ee_wire_reply_size(j->n);
        unsigned char *b = malloc(len);
        if (!b) return reply_error(con, 500, "out of memory");
        ee_wire_encode_reply(j->pred, j->conf, j->exit_head, j->why, j->n, b);
        return http_reply(con, 200, "application/octet-stream", b, len, 1);
    }
    static const char *const reason[] = {"policy", "final", "deadline", "budget", "degraded"};
    size_t cap = 256 + (size_t)j->n * 200, len = 0;
    char *b = malloc(cap);
    if (!b) return reply_error(con, 500, "out of memory");
    len += (size_t)snprintf(b + len, cap - len, "{\"n\":%d,\"results\":[", j->n);
    for (int i = 0; i < j->n; i++) {
        char nm[32], cn[160] = "";
        head_name(S->net, j->exit_head[i], nm, sizeof nm);
        if (S->cname[j->pred[i]]) snprintf(cn, sizeof cn, ",\"name\":\"%s\"", js(S->cname[j->pred[i]]));
        len += (size_t)snprintf(b + len, cap - len, "%s{\"class\":%d%s,\"confidence\":%.6f,\"exit\":\"%s\","
                                "\"exit_index\":%d,\"stopped_by\":\"%s\"}", i ? "," : "", j->pred[i], cn, j->conf[i], nm,
                                j->exit_head[i], reason[j->why[i] < 5 ? j->why[i] : 0]);
    }
    len += (size_t)snprintf(b + len, cap - len, "]}\n");
    return http_reply(con, 200, "application/json", b, len, 1);
}

static void free_job(job *j) {
    free(j->x); free(j->st); free(j->pred); free(j->exit_head); free(j->why); free(j->conf);
}

static int alloc_job(job *j, int n, size_t row, int with_state) {
    memset(j, 0, sizeof *j);
    j->n = n;
    j->x = malloc(row * (n ? n : 1) * sizeof(float));
    j->st = with_state ? malloc(sizeof *j->st * (n ? n : 1)) : NULL;
    j->pred = malloc(n ? n : 1); j->exit_head = malloc(n ? n : 1); j->why = malloc(n ? n : 1);
    j->conf = malloc(sizeof(float) * (n ? n : 1));
    return j->x && (!with_state || j->st) && j->pred && j->exit_head && j->why && j->conf;
}

/* POST /v1/classify (whole inputs: a request frame, or a PNG / JPEG image) and /v1/resume (a split) */
static enum MHD_Result post(server *S, struct MHD_Connection *con, request *r, int resume) {
    const char *type = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Type");
    job j;
    size_t in_row = (size_t)S->C * S->H * S->W;
    if (!resume && type && (!strncmp(type, "image/png", 9) || !strncmp(type, "image/jpeg", 10))) {
        int w, h, ch;
        if (S->H == 1 || (S->C != 1 && S->C != 3)) return reply_error(con, 400, "this model does not take images");
        if (r->len > INT32_MAX || !stbi_info_from_memory(r->body, (int)r->len, &w, &h, &ch))
            return reply_error(con, 400, "the body is not a PNG or JPEG image (%zu bytes)", r->len);
        if (w > 8192 || h > 8192) return reply_error(con, 413, "image of %dx%d pixels: larger than 8192", w, h);
        unsigned char *px = stbi_load_from_memory(r->body, (int)r->len, &w, &h, &ch, S->C);
        if (!px) return reply_error(con, 400, "cannot decode the image (%s)", stbi_failure_reason());
        if (!alloc_job(&j, 1, in_row, 0)) { stbi_image_free(px); free_job(&j); return reply_error(con, 500, "out of memory"); }
        pixels_to_input(S->net, px, w, h, j.x);
        stbi_image_free(px);
        j.kind = -1;
    } else {
        ee_ctx *c = ee_ctx_new();
        ee_wire_request rq;
        if (!c) return reply_error(con, 500, "out of memory");
        if (ee_wire_parse_request(c, r->body, r->len, &rq)) {
            enum MHD_Result res = reply_error(con, 400, "%s", ee_ctx_error(c));
            ee_ctx_free(c);
            S->rejected_bad++;
            return res;
        }
        if (rq.fingerprint != S->fp) {
            ee_ctx_free(c);
            S->rejected_bad++;
            return reply_error(con, 409, "model fingerprint %016llx does not match the server's %016llx (%s): both "
                               "sides must run the same model file", (unsigned long long)rq.fingerprint,
                               (unsigned long long)S->fp, S->model);
        }
        int kind = -1, c0 = S->C, h0 = S->H, w0 = S->W;
        if (resume) {
            char err[400];
            if (!rq.split[0]) { ee_ctx_free(c); return reply_error(con, 400, "/v1/resume needs a split node name"); }
            pthread_mutex_lock(&S->mu);
            kind = find_split(S, rq.split, err, sizeof err);
            pthread_mutex_unlock(&S->mu);
            if (kind < 0) { ee_ctx_free(c); S->rejected_bad++; return reply_error(con, 404, "%s", err); }
            c0 = S->split[kind].c; h0 = S->split[kind].h; w0 = S->split[kind].w;
        } else if (rq.split[0]) {
            ee_ctx_free(c);
            return reply_error(con, 400, "/v1/classify takes whole inputs; send split outputs to /v1/resume");
        }
        if (rq.c != c0 || rq.h != h0 || rq.w != w0) {
            ee_ctx_free(c);
            S->rejected_bad++;
            return reply_error(con, 400, "samples of %dx%dx%d, but %s takes %dx%dx%d", rq.c, rq.h, rq.w,
                               resume ? rq.split : "the model", c0, h0, w0);
        }
        if (rq.n < 1) { ee_ctx_free(c); return reply_error(con, 400, "a request with no samples"); }
        if (!alloc_job(&j, rq.n, (size_t)c0 * h0 * w0, resume)) {
            free_job(&j);
            ee_ctx_free(c);
            return reply_error(con, 500, "out of memory");
        }
        if (ee_wire_request_data(c, &rq, j.x, j.st, NULL)) {
            enum MHD_Result res = reply_error(con, 400, "%s", ee_ctx_error(c));
            free_job(&j);
            ee_ctx_free(c);
            return res;
        }
        ee_ctx_free(c);
        j.kind = kind;
    }
    enum MHD_Result res;
    if (submit(S, &j)) res = reply_error(con, 503, "busy: %ld samples queued (the limit is %ld); try again", S->queued,
                                         S->queue_cap);
    else res = answer(S, con, &j);
    free_job(&j);
    return res;
}

static enum MHD_Result info(server *S, struct MHD_Connection *con) {
    char pol[2048], *b = malloc(16384);
    if (!b) return reply_error(con, 500, "out of memory");
    describe_policy(&S->pol, pol, sizeof pol);
    int heads = ee_net_num_heads(S->net);
    size_t n = (size_t)snprintf(b, 16384, "{\"model\":\"%s\",\"arch\":\"%s\",\"fingerprint\":\"%016llx\",\"input\":[%d,%d,%d],"
                                "\"classes\":%d,\"heads\":%d,\"policy\":\"%s\",\"max_batch\":%d,\"queue_capacity\":%ld,"
                                "\"split_points\":[", js(S->model), js(ee_net_name(S->net)), (unsigned long long)S->fp,
                                S->C, S->H, S->W, S->K, heads, js(pol), S->max_batch, S->queue_cap);
    /* the block outputs where the network can be cut: a split is possible after each node that ee_split_at takes */
    int first = 1;
    ee_ctx *c = ee_ctx_new();
    for (int i = 0; c && i < ee_net_num_nodes(S->net) && n < 15000; i++) {
        ee_node_info ni;
        ee_net_node_info(S->net, i, &ni);
        ee_split sp;
        if (ee_split_at(c, S->net, ni.name, &sp)) continue;
        n += (size_t)snprintf(b + n, 16384 - n, "%s{\"node\":\"%s\",\"shape\":[%d,%d,%d],\"exits_before\":%d,"
                              "\"flops_before\":%.4f}", first ? "" : ",", js(ni.name), sp.c, sp.h, sp.w, sp.heads,
                              sp.flops_frac);
        first = 0;
    }
    ee_ctx_free(c);
    pthread_mutex_lock(&S->mu);
    n += (size_t)snprintf(b + n, 16384 - n, "],\"requests\":%lu,\"samples\":%lu,\"rejected_busy\":%lu,"
                          "\"rejected_bad\":%lu}\n", S->requests, S->samples, S->rejected_busy, S->rejected_bad);
    pthread_mutex_unlock(&S->mu);
    return http_reply(con, 200, "application/json", b, n, 1);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_len, void **state) {
    (void)version;
    server *S = cls;
    request *r = *state;
    if (!r) { /* the headers: refuse an oversized body before it is read */
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *state = r;
        const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > S->max_body)
            return reply_error(con, 413, "a body of %s bytes; the limit is %zu (--max-body)", cl, S->max_body);
        return MHD_YES;
    }
    if (*upload_len) {
        if (!r->too_large) {
            if (r->len + *upload_len > S->max_body) r->too_large = 1;
            else {
                if (r->len + *upload_len > r->cap) {
                    size_t cap = (r->len + *upload_len) * 2;
                    if (cap > S->max_body) cap = S->max_body;
                    unsigned char *b = realloc(r->body, cap);
                    if (!b) return MHD_NO;
                    r->body = b;
                    r->cap = cap;
                }
                memcpy(r->body + r->len, upload, *upload_len);
                r->len += *upload_len;
            }
        }
        *upload_len = 0;
        return MHD_YES;
    }
    if (r->too_large) return reply_error(con, 413, "the body is larger than %zu bytes (--max-body)", S->max_body);
    int get = !strcmp(method, "GET"), postm = !strcmp(method, "POST");
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/health")) {
        if (!get) return reply_error(con, 405, "%s %s: use GET", method, url);
        char b[128];
        pthread_mutex_lock(&S->mu);
        int n = snprintf(b, sizeof b, "{\"status\":\"ok\",\"queued\":%ld}\n", S->queued);
        pthread_mutex_unlock(&S->mu);
        return http_reply(con, 200, "application/json", b, (size_t)n, 0);
    }
    if (!strcmp(url, "/v1/info")) {
        if (!get) return reply_error(con, 405, "%s %s: use GET", method, url);
        return info(S, con);
    }
    if (!strcmp(url, "/v1/classify") || !strcmp(url, "/v1/resume")) {
        if (!postm) return reply_error(con, 405, "%s %s: use POST", method, url);
        if (!r->len) return reply_error(con, 400, "%s: an empty body", url);
        return post(S, con, r, !strcmp(url, "/v1/resume"));
    }
    return reply_error(con, 404, "no endpoint %s (GET /health, GET /v1/info, POST /v1/classify, POST /v1/resume)", url);
}

static void completed(void *cls, struct MHD_Connection *con, void **state, enum MHD_RequestTerminationCode code) {
    (void)cls; (void)con; (void)code;
    request *r = *state;
    if (r) { free(r->body); free(r); }
    *state = NULL;
}

static const char *serve_help =
    "usage: eenn serve MODEL [--listen HOST:PORT] [options]\n"
    "Serves MODEL over HTTP (docs/serve.md): GET /health, GET /v1/info (the model, its fingerprint, its split\n"
    "points), POST /v1/classify (whole inputs: an eenn request frame, or a PNG/JPEG image), POST /v1/resume (the\n"
    "outputs of a split node from an edge device: eenn infer --split NODE --server URL). Concurrent requests of\n"
    "the same kind are batched. Stops on SIGINT or SIGTERM.\n"
    "  --listen HOST:PORT  (127.0.0.1:8080)     --batch N  the largest batch run at once (128)\n"
    "  --queue N           samples queued at most; beyond it requests get 503 busy (4096)\n"
    "  --max-body BYTES    the largest request body (64 MB); larger ones get 413\n"
    "  --connections N     connections at once (256)    --threads N (0 = the free cores)\n"
    "  --workers N         a batch's samples split between N workers, one per core share (0: automatic, the\n"
    "                      default; 1: off, every layer on all the cores)\n"
    "  --q Q               one shared max-softmax threshold instead of the model's policy\n";

enum { O_LISTEN = 256, O_BATCH, O_QUEUE, O_MAXBODY, O_CONN, O_THREADS, O_WORKERS, O_Q };
static const struct option serve_opts[] = {
    {"listen", required_argument, NULL, O_LISTEN}, {"batch", required_argument, NULL, O_BATCH},
    {"queue", required_argument, NULL, O_QUEUE}, {"max-body", required_argument, NULL, O_MAXBODY},
    {"connections", required_argument, NULL, O_CONN}, {"threads", required_argument, NULL, O_THREADS},
    {"workers", required_argument, NULL, O_WORKERS}, {"q", required_argument, NULL, O_Q},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_serve(int argc, char **argv) {
    const char *listen = "127.0.0.1:8080";
    int batch = 128, conns = 256, threads = 0, workers = 0;
    long queue = 4096;
    double q = -1;
    size_t max_body = 64u << 20;
    cli_args a = {"serve", serve_help, serve_opts, NULL, argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;) {
        switch (c) {
        case O_LISTEN: listen = optarg; break;
        case O_BATCH: batch = (int)cli_int(&a, 1, 4096); break;
        case O_QUEUE: queue = cli_int(&a, 1, 1 << 24); break;
        case O_MAXBODY: max_body = (size_t)cli_int(&a, 1024, 1L << 34); break;
        case O_CONN: conns = (int)cli_int(&a, 1, 65536); break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_WORKERS: workers = (int)cli_int(&a, 0, 16); break;
        case O_Q: q = cli_num(&a, 0, 2); break;
        }
    }
    if (cli_npos(&a) != 1) usage_error("serve: give one model (see eenn serve --help)");
    char host[256];
    struct sockaddr_in addr;
    http_parse_listen("serve --listen", listen, host, sizeof host, &addr);

    static server S; /* the process's one server: its threads and the signal handling below share it */
    S.model = cli_pos(&a)[0];
    S.ctx = ee_ctx_new();
    ee_ctx_set_threads(S.ctx, threads);
    load_model(S.ctx, S.model, &S.net);
    if (!model_policy(S.ctx, S.net, q, &S.pol)) ee_policy_shared(&S.pol, EE_SCORE_MAXPROB, ee_net_num_heads(S.net), 1.01f, 0);
    ee_net_input_shape(S.net, &S.C, &S.H, &S.W);
    S.K = ee_net_classes(S.net);
    S.max_batch = batch;
    S.queue_cap = queue;
    S.max_body = max_body;
    if (ee_net_meta(S.net, "data.classes")) {
        snprintf(S.names_buf, sizeof S.names_buf, "%s", ee_net_meta(S.net, "data.classes"));
        int k = 0;
        char *save = NULL;
        for (char *t = strtok_r(S.names_buf, ",", &save); t && k < 256; t = strtok_r(NULL, ",", &save)) S.cname[k++] = t;
    }
    check(ee_net_prepare(S.ctx, S.net, batch, 0), S.ctx);
    check(ee_net_seal(S.ctx, S.net), S.ctx);
    ee_net_set_eval_workers(S.net, workers);
    S.fp = ee_net_fingerprint(S.net);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.work, NULL);
    pthread_cond_init(&S.done, NULL);
    sigset_t sigs;
    http_block_signals(&sigs);
    pthread_t w;
    if (pthread_create(&w, NULL, worker, &S)) die("serve: cannot start the worker thread");
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, ntohs(addr.sin_port), NULL, NULL, handle, &S,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)conns,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_NOTIFY_COMPLETED, completed, &S, MHD_OPTION_END);
    if (!d) die("serve: cannot listen on %s (%s)", listen, errno ? strerror(errno) : "libmicrohttpd failed");
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "eenn serve: %s (%s, fingerprint %016llx) on http://%s:%u; batch %d, queue %ld samples\n",
            S.model, ee_net_name(S.net), (unsigned long long)S.fp, host, di ? di->port : ntohs(addr.sin_port), batch, queue);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "eenn serve: %s: stopping after %lu requests (%lu samples; %lu refused busy, %lu bad)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", S.requests, S.samples, S.rejected_busy, S.rejected_bad);
    MHD_stop_daemon(d);
    pthread_mutex_lock(&S.mu);
    S.stop = 1;
    pthread_cond_signal(&S.work);
    pthread_mutex_unlock(&S.mu);
    pthread_join(w, NULL);
    ee_net_free(S.net);
    ee_ctx_free(S.ctx);
    return 0;
}

void http_parse_listen(const char *opt, const char *listen, char *host, size_t hostn, struct sockaddr_in *addr) {
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= hostn || !colon[1])
        usage_error("%s: '%s' is not HOST:PORT", opt, listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) usage_error("%s: '%s' is not a port", opt, colon + 1);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &ai) || !ai) die("%s: cannot resolve '%s'", opt, host);
    memcpy(addr, ai->ai_addr, sizeof *addr);
    freeaddrinfo(ai);
    addr->sin_port = htons((uint16_t)port);
}

void http_block_signals(sigset_t *sigs) {
    sigemptyset(sigs);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}
