/* hier.c: hierarchical training (Sepehri et al., "Hierarchical Training of Deep Neural Networks Using Early
 * Exiting"): `eenn train --hierarchical --split NODE`. The edge process trains the layers up to the split on the
 * exits before it and sends the split node's outputs with the labels to a cloud process; the cloud trains the
 * rest on them; no gradient goes back, so the edge never waits for the cloud's backward pass (only for a full
 * send queue). The cloud is `eenn train --hierarchical-cloud --listen HOST:PORT` (started here on loopback unless
 * --cloud URL names one). The transport is the server's: HTTP (libmicrohttpd, libcurl) and the wire format. */
#define _DEFAULT_SOURCE
#include "common.h"
#include "http.h"
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */
static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec t = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&t, &t) && errno == EINTR) {}
}

/* reads a whole file (a model written to a temporary path) */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = b ? (size_t)n : 0;
    return b;
}

/* a model held in memory: written to a temporary file and loaded from it */
static ee_status load_bytes(ee_ctx *ctx, const unsigned char *b, size_t len, ee_net **net) {
    char path[] = "/tmp/eenn-hier-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return EE_ERR_IO;
    FILE *f = fdopen(fd, "wb");
    size_t w = f ? fwrite(b, 1, len, f) : 0;
    if (f) fclose(f);
    ee_status s = w == len ? ee_net_load(ctx, path, net) : EE_ERR_IO;
    unlink(path);
    return s;
}

static unsigned char *save_bytes(ee_ctx *ctx, ee_net *net, size_t *len) {
    char path[] = "/tmp/eenn-hier-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    close(fd);
    unsigned char *b = ee_net_save(ctx, net, NULL, 0, path) ? NULL : slurp(path, len);
    unlink(path);
    return b;
}

/* ---------------------------------------------------------------- the cloud */
#define CLOUD_QUEUE 8

typedef struct {
    unsigned char *body;
    size_t len;
    float lr;
    int epoch, epochs;
} tjob;

typedef struct {
    ee_ctx *ctx;
    ee_net *net;
    ee_split sp;
    ee_optim opt;
    ee_optim_state *ost;
    int batch, running;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    tjob q[CLOUD_QUEUE];
    int qh, qn, busy, stop;
    /* since the last stats call, and in all */
    double loss_sum, busy_s;
    long batches, seen, right, total_batches;
    char error[400];
} cloud;

static void *cloud_worker(void *arg) {
    cloud *C = arg;
    float *x = NULL;
    uint8_t *y = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&C->mu);
    for (;;) {
        while (!C->qn && !C->stop) pthread_cond_wait(&C->work, &C->mu);
        if (!C->qn) break;
        tjob j = C->q[C->qh];
        C->qh = (C->qh + 1) % CLOUD_QUEUE;
        C->qn--;
        C->busy = 1;
        pthread_mutex_unlock(&C->mu);
        double t0 = now_s(), loss = 0;
        int right = 0, n = 0;
        ee_wire_request rq;
        char msg[300] = "";
        ee_status s = C->error[0] ? EE_ERR_ARG : ee_wire_parse_request(C->ctx, j.body, j.len, &rq);
        if (!s && (rq.c != C->sp.c || rq.h != C->sp.h || rq.w != C->sp.w || !rq.with_labels || rq.n < 1 ||
                   rq.n > C->batch)) {
            snprintf(msg, sizeof msg, "a training batch of %d x %dx%dx%d%s, the split takes up to %d x %dx%dx%d", rq.n,
                     rq.c, rq.h, rq.w, rq.with_labels ? "" : " without labels", C->batch, C->sp.c, C->sp.h, C->sp.w);
            s = EE_ERR_ARG;
        }
        if (!s) {
            n = rq.n;
            size_t need = (size_t)n * C->sp.c * C->sp.h * C->sp.w;
            if (need > cap) {
                free(x);
                x = malloc(need * sizeof(float));
                cap = x ? need : 0;
            }
            free(y);
            y = malloc((size_t)n);
            if (!x || !y) { s = EE_ERR_NOMEM; snprintf(msg, sizeof msg, "out of memory"); }
        }
        if (!s) s = ee_wire_request_data(C->ctx, &rq, x, NULL, y);
        float w[EE_MAX_HEADS];
        if (!s) {
            ee_train_head_weights(C->net, EE_MODE_SDN, j.epoch, j.epochs, w);
            s = ee_split_train_far(C->ctx, C->net, &C->sp, x, y, n, w, &loss, &right);
        }
        if (!s) s = ee_optim_step(C->ctx, C->net, C->ost, j.lr);
        free(j.body);
        pthread_mutex_lock(&C->mu);
        if (s && !C->error[0]) snprintf(C->error, sizeof C->error, "cloud: %s", msg[0] ? msg : ee_ctx_error(C->ctx));
        if (!s) {
            C->loss_sum += loss * n;
            C->seen += n;
            C->right += right;
            C->batches++;
            C->total_batches++;
        }
        C->busy_s += now_s() - t0;
        C->busy = 0;
        pthread_cond_broadcast(&C->idle);
    }
    pthread_mutex_unlock(&C->mu);
    free(x);
    free(y);
    return NULL;
}

typedef struct {
    unsigned char *body;
    size_t len, cap;
} upload;

static enum MHD_Result respond_json(struct MHD_Connection *con, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result respond_json(struct MHD_Connection *con, unsigned status, const char *fmt, ...) {
    char b[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    return http_reply(con, status, "application/json", b, (size_t)(n < (int)sizeof b ? n : (int)sizeof b - 1), 0);
}

static const char *header(struct MHD_Connection *con, const char *key) {
    return MHD_lookup_connection_value(con, MHD_HEADER_KIND, key);
}

static enum MHD_Result cloud_start(cloud *C, struct MHD_Connection *con, upload *u) {
    const char *split = header(con, "X-EENN-Split"), *batch = header(con, "X-EENN-Batch");
    const char *optim = header(con, "X-EENN-Optim"), *mom = header(con, "X-EENN-Momentum");
    const char *wd = header(con, "X-EENN-Weight-Decay"), *nest = header(con, "X-EENN-Nesterov");
    if (!split || !batch || !optim || !mom || !wd)
        return respond_json(con, 400, "{\"error\":\"a start request needs X-EENN-Split, -Batch, -Optim, -Momentum and "
                            "-Weight-Decay\"}\n");
    pthread_mutex_lock(&C->mu);
    while (C->qn || C->busy) pthread_cond_wait(&C->idle, &C->mu);
    ee_net *net = NULL;
    ee_split sp;
    ee_optim opt = {!strcmp(optim, "adam") ? EE_OPTIM_ADAM : EE_OPTIM_SGD, 0, (float)atof(mom), (float)atof(wd),
                    nest && !strcmp(nest, "1"), 0, 0, 0};
    int b = atoi(batch);
    ee_optim_state *ost = NULL;
    ee_status s = load_bytes(C->ctx, u->body, u->len, &net);
    if (!s) s = ee_split_at(C->ctx, net, split, &sp);
    if (!s && (b < 1 || b > 65536)) {
        ee_net_free(net);
        pthread_mutex_unlock(&C->mu);
        return respond_json(con, 400, "{\"error\":\"X-EENN-Batch %d is not a batch size\"}\n", b);
    }
    if (!s) s = ee_net_prepare(C->ctx, net, b, 1);
    if (!s) s = ee_optim_state_new(C->ctx, net, &opt, &ost);
    if (s) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", s == EE_ERR_IO ? "cannot store the model" : ee_ctx_error(C->ctx));
        ee_net_free(net);
        pthread_mutex_unlock(&C->mu);
        return respond_json(con, 400, "{\"error\":\"%s\"}\n", js(msg));
    }
    ee_net_free(C->net);
    ee_optim_state_free(C->ost);
    C->net = net;
    C->sp = sp;
    C->opt = opt;
    C->ost = ost;
    C->batch = b;
    C->running = 1;
    C->error[0] = 0;
    C->loss_sum = C->busy_s = 0;
    C->batches = C->seen = C->right = C->total_batches = 0;
    pthread_mutex_unlock(&C->mu);
    fprintf(stderr, "cloud: training %s from %s on (%zu parameters in all)\n", ee_net_name(net), split,
            ee_net_num_params(net));
    return respond_json(con, 200, "{\"status\":\"started\"}\n");
}

static enum MHD_Result cloud_handle(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                                    const char *version, const char *data, size_t *data_len, void **state) {
    (void)version;
    cloud *C = cls;
    upload *u = *state;
    if (!u) {
        if (!(u = calloc(1, sizeof *u))) return MHD_NO;
        *state = u;
        return MHD_YES;
    }
    if (*data_len) {
        if (u->len + *data_len > (1u << 30)) return MHD_NO; /* 1 GB: no model or batch is that large */
        if (u->len + *data_len > u->cap) {
            size_t cap = (u->len + *data_len) * 2;
            unsigned char *b = realloc(u->body, cap);
            if (!b) return MHD_NO;
            u->body = b;
            u->cap = cap;
        }
        memcpy(u->body + u->len, data, *data_len);
        u->len += *data_len;
        *data_len = 0;
        return MHD_YES;
    }
    int post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) return respond_json(con, 200, "{\"status\":\"ok\"}\n");
    if (post && !strcmp(url, "/v1/train/start")) return cloud_start(C, con, u);
    if (post && !strcmp(url, "/v1/train/batch")) {
        const char *lr = header(con, "X-EENN-LR"), *ep = header(con, "X-EENN-Epoch"), *eps = header(con, "X-EENN-Epochs");
        if (!lr || !ep || !eps || !u->len)
            return respond_json(con, 400, "{\"error\":\"a batch needs a body and X-EENN-LR, -Epoch, -Epochs\"}\n");
        pthread_mutex_lock(&C->mu);
        if (!C->running) {
            pthread_mutex_unlock(&C->mu);
            return respond_json(con, 409, "{\"error\":\"no training started (POST /v1/train/start first)\"}\n");
        }
        if (C->error[0]) {
            char e[400];
            snprintf(e, sizeof e, "%s", C->error);
            pthread_mutex_unlock(&C->mu);
            return respond_json(con, 500, "{\"error\":\"%s\"}\n", js(e));
        }
        if (C->qn == CLOUD_QUEUE) {
            pthread_mutex_unlock(&C->mu);
            return respond_json(con, 503, "{\"error\":\"busy: %d batches queued\"}\n", CLOUD_QUEUE);
        }
        tjob *j = &C->q[(C->qh + C->qn) % CLOUD_QUEUE];
        *j = (tjob){u->body, u->len, (float)atof(lr), atoi(ep), atoi(eps)};
        u->body = NULL; /* the queue owns it now */
        C->qn++;
        pthread_cond_signal(&C->work);
        pthread_mutex_unlock(&C->mu);
        return respond_json(con, 202, "{\"status\":\"queued\"}\n");
    }
    if (!strcmp(url, "/v1/train/stats")) {
        pthread_mutex_lock(&C->mu);
        char e[400];
        snprintf(e, sizeof e, "%s", C->error);
        double loss = C->seen ? C->loss_sum / C->seen : 0, acc = C->seen ? (double)C->right / C->seen : 0;
        long b = C->batches, q = C->qn;
        double busy = C->busy_s;
        C->loss_sum = 0;
        C->seen = C->right = C->batches = 0;
        pthread_mutex_unlock(&C->mu);
        return respond_json(con, 200, "{\"batches\":%ld,\"loss\":%.6f,\"acc\":%.6f,\"queued\":%ld,\"busy_s\":%.3f,"
                            "\"error\":\"%s\"}\n", b, loss, acc, q, busy, js(e));
    }
    if (post && !strcmp(url, "/v1/train/finish")) { /* every queued batch trained, then the whole model */
        pthread_mutex_lock(&C->mu);
        while (C->qn || C->busy) pthread_cond_wait(&C->idle, &C->mu);
        if (C->error[0] || !C->running) {
            char e[400];
            snprintf(e, sizeof e, "%s", C->running ? C->error : "no training started");
            pthread_mutex_unlock(&C->mu);
            return respond_json(con, 500, "{\"error\":\"%s\"}\n", js(e));
        }
        size_t len = 0;
        unsigned char *b = save_bytes(C->ctx, C->net, &len);
        fprintf(stderr, "cloud: finished after %ld batches, %.1f s of training\n", C->total_batches, C->busy_s);
        pthread_mutex_unlock(&C->mu);
        if (!b) return respond_json(con, 500, "{\"error\":\"cannot write the model\"}\n");
        return http_reply(con, 200, "application/octet-stream", b, len, 1);
    }
    return respond_json(con, 404, "{\"error\":\"no endpoint %s %s\"}\n", method, js(url));
}

static void cloud_done(void *cls, struct MHD_Connection *con, void **state, enum MHD_RequestTerminationCode code) {
    (void)cls; (void)con; (void)code;
    upload *u = *state;
    if (u) { free(u->body); free(u); }
    *state = NULL;
}

int hier_cloud(const char *listen, int threads, const char *port_file) {
    char host[256];
    struct sockaddr_in addr;
    http_parse_listen("train --listen", listen, host, sizeof host, &addr);
    static cloud C;
    C.ctx = ee_ctx_new();
    ee_ctx_set_threads(C.ctx, threads);
    pthread_mutex_init(&C.mu, NULL);
    pthread_cond_init(&C.work, NULL);
    pthread_cond_init(&C.idle, NULL);
    sigset_t sigs;
    http_block_signals(&sigs);
    pthread_t w;
    if (pthread_create(&w, NULL, cloud_worker, &C)) die("cloud: cannot start the training thread");
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
                                            ntohs(addr.sin_port), NULL, NULL, cloud_handle, &C, MHD_OPTION_SOCK_ADDR,
                                            (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, cloud_done, &C,
                                            MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!d) die("cloud: cannot listen on %s (%s)", listen, errno ? strerror(errno) : "libmicrohttpd failed");
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = di ? di->port : ntohs(addr.sin_port);
    fprintf(stderr, "cloud: listening on http://%s:%u for hierarchical training\n", host, bound);
    if (port_file) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", bound) < 0 || fclose(f) || rename(tmp, port_file)) die("%s: cannot write", port_file);
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    MHD_stop_daemon(d);
    pthread_mutex_lock(&C.mu);
    C.stop = 1;
    pthread_cond_signal(&C.work);
    pthread_mutex_unlock(&C.mu);
    pthread_join(w, NULL);
    ee_optim_state_free(C.ost);
    ee_net_free(C.net);
    ee_ctx_free(C.ctx);
    return 0;
}

/* ---------------------------------------------------------------- the edge */
typedef struct {
    unsigned char *body;
    size_t len;
    float lr;
    int epoch, epochs;
} outgoing;

typedef struct {
    CURL *curl;
    char url[512];
    double mbit;               /* simulated link rate (0: as fast as loopback) */
    pthread_mutex_t mu;
    pthread_cond_t more, room;
    outgoing q[4];
    int qh, qn, stop, sending;
    size_t bytes;
    double link_s, sent_s;     /* simulated transmission time, and the whole time spent sending */
    long retries;
    char error[1024];
} sender;

/* a reply body, one per connection (the sender thread and the main thread each have theirs) */
typedef struct {
    unsigned char *b;
    size_t len;
} reply_buf;

static size_t on_reply(char *p, size_t size, size_t nmemb, void *user) {
    reply_buf *R = user;
    size_t add = size * nmemb;
    unsigned char *b = realloc(R->b, R->len + add + 1);
    if (!b) return 0;
    R->b = b;
    memcpy(R->b + R->len, p, add);
    R->len += add;
    R->b[R->len] = 0;
    return add;
}

/* one HTTP request to the cloud; the reply in R; returns the status, or -1 (the error in err) */
static long http(const sender *S, reply_buf *R, CURL *c, const char *path, const void *body, size_t len,
                 struct curl_slist *hdr, char *err, size_t errn) {
    char url[600];
    snprintf(url, sizeof url, "%s%s", S->url, path);
    R->len = 0;
    if (R->b) R->b[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_reply);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, R);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) { snprintf(err, errn, "%.400s: %s", url, curl_easy_strerror(rc)); return -1; }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 400)
        snprintf(err, errn, "%.400s: HTTP %ld %.300s", url, code, R->b ? (const char *)R->b : "");
    return code;
}

static void *send_loop(void *arg) {
    sender *S = arg;
    CURL *c = curl_easy_init();
    char err[1024];
    reply_buf R = {0};
    pthread_mutex_lock(&S->mu);
    for (;;) {
        while (!S->qn && !S->stop) pthread_cond_wait(&S->more, &S->mu);
        if (!S->qn) break;
        outgoing o = S->q[S->qh];
        S->sending = 1;
        pthread_mutex_unlock(&S->mu);
        double t0 = now_s();
        /* the link: the bytes take len * 8 / rate to cross before the cloud has them */
        double link = S->mbit > 0 ? o.len * 8.0 / (S->mbit * 1e6) : 0;
        sleep_s(link);
        char h1[64], h2[64], h3[64];
        snprintf(h1, sizeof h1, "X-EENN-LR: %.9g", o.lr);
        snprintf(h2, sizeof h2, "X-EENN-Epoch: %d", o.epoch);
        snprintf(h3, sizeof h3, "X-EENN-Epochs: %d", o.epochs);
        struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/octet-stream");
        hdr = curl_slist_append(hdr, "Expect:");
        hdr = curl_slist_append(hdr, h1);
        hdr = curl_slist_append(hdr, h2);
        hdr = curl_slist_append(hdr, h3);
        long code;
        long retries = 0;
        while ((code = c ? http(S, &R, c, "/v1/train/batch", o.body, o.len, hdr, err, sizeof err) : -1) == 503) {
            retries++;
            sleep_s(0.002); /* the cloud's queue is full: it trains slower than the edge sends */
        }
        curl_slist_free_all(hdr);
        free(o.body);
        pthread_mutex_lock(&S->mu);
        S->retries += retries;
        if (code != 202 && !S->error[0]) snprintf(S->error, sizeof S->error, "%s", c ? err : "cannot start libcurl");
        S->bytes += o.len;
        S->link_s += link;
        S->sent_s += now_s() - t0;
        S->qh = (S->qh + 1) % 4;
        S->qn--;
        S->sending = 0;
        pthread_cond_broadcast(&S->room);
    }
    pthread_mutex_unlock(&S->mu);
    if (c) curl_easy_cleanup(c);
    free(R.b);
    return NULL;
}

/* a number from a small JSON object: "key":value */
static double json_num(const char *s, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = s ? strstr(s, k) : NULL;
    return p ? atof(p + strlen(k)) : 0;
}

int hier_edge(ee_ctx *ctx, ee_net *net, const hier_opts *o, const ee_dataset *train, const ee_dataset *test) {
    ee_split sp;
    if (ee_split_at(ctx, net, o->split, &sp)) die("train --split: %s", ee_ctx_error(ctx));
    if (sp.heads < 1)
        die("train --split %s: no exit before it, so the edge has no loss to train on; split after an internal "
            "classifier", o->split);
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) die("cannot start libcurl");
    static sender S;
    pid_t child = 0;
    char port_file[] = "/tmp/eenn-cloud-port-XXXXXX";
    if (o->cloud) snprintf(S.url, sizeof S.url, "%s", o->cloud);
    else { /* a cloud process of our own on loopback */
        int fd = mkstemp(port_file);
        if (fd < 0) die("cannot create a temporary file");
        close(fd);
        unlink(port_file);
        char thr[16];
        snprintf(thr, sizeof thr, "%d", o->cloud_threads);
        child = fork();
        if (child < 0) die("cannot start the cloud process");
        if (!child) {
            execl("/proc/self/exe", "eenn", "train", "--hierarchical-cloud", "--listen", "127.0.0.1:0", "--port-file",
                  port_file, "--threads", thr, (char *)NULL);
            _exit(127);
        }
        unsigned port = 0;
        for (int i = 0; i < 200 && !port; i++) {
            FILE *f = fopen(port_file, "r");
            if (f) { if (fscanf(f, "%u", &port) != 1) port = 0; fclose(f); }
            if (!port) sleep_s(0.05);
        }
        unlink(port_file);
        if (!port) { kill(child, SIGTERM); die("the cloud process did not start"); }
        snprintf(S.url, sizeof S.url, "http://127.0.0.1:%u", port);
    }
    size_t n_url = strlen(S.url);
    while (n_url && S.url[n_url - 1] == '/') S.url[--n_url] = 0;
    S.mbit = o->link_mbit;
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.more, NULL);
    pthread_cond_init(&S.room, NULL);
    CURL *ctl = curl_easy_init();
    char err[1024];
    reply_buf R = {0};
    /* start: the initial model, the split and the optimiser */
    size_t mlen = 0;
    unsigned char *mb = save_bytes(ctx, net, &mlen);
    if (!mb || !ctl) die("cannot send the model to the cloud: %s", ee_ctx_error(ctx));
    char hs[5][128];
    snprintf(hs[0], sizeof hs[0], "X-EENN-Split: %s", o->split);
    snprintf(hs[1], sizeof hs[1], "X-EENN-Batch: %d", o->batch);
    snprintf(hs[2], sizeof hs[2], "X-EENN-Optim: %s", o->opt.kind == EE_OPTIM_ADAM ? "adam" : "sgd");
    snprintf(hs[3], sizeof hs[3], "X-EENN-Momentum: %.9g", o->opt.momentum);
    snprintf(hs[4], sizeof hs[4], "X-EENN-Weight-Decay: %.9g", o->opt.weight_decay);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    hdr = curl_slist_append(hdr, "Expect:");
    for (int i = 0; i < 5; i++) hdr = curl_slist_append(hdr, hs[i]);
    hdr = curl_slist_append(hdr, o->opt.nesterov ? "X-EENN-Nesterov: 1" : "X-EENN-Nesterov: 0");
    if (http(&S, &R, ctl, "/v1/train/start", mb, mlen, hdr, err, sizeof err) != 200) {
        if (child) kill(child, SIGTERM);
        die("%s", err);
    }
    curl_slist_free_all(hdr);
    free(mb);
    pthread_t th;
    if (pthread_create(&th, NULL, send_loop, &S)) die("cannot start the sender thread");

    check(ee_net_prepare(ctx, net, o->batch, 1), ctx);
    ee_optim_state *ost = NULL;
    check(ee_optim_state_new(ctx, net, &o->opt, &ost), ctx);
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    size_t img = (size_t)C * H * W, row = (size_t)sp.c * sp.h * sp.w;
    float *x = malloc(img * o->batch * sizeof(float)), *act = malloc(row * o->batch * sizeof(float));
    uint8_t *y = malloc((size_t)o->batch);
    int *perm = malloc(sizeof(int) * train->n);
    if (!x || !act || !y || !perm) die("out of memory");
    int steps = (train->n + o->batch - 1) / o->batch, tty = isatty(2);
    double t0 = now_s(), edge_s = 0, wait_s = 0;
    fprintf(stderr, "hierarchical training of %s: the edge trains up to %s (%d exits, %.1f%% of the FLOPs), the cloud "
            "(%s) the rest; %d x %dx%dx%d floats and the labels cross per batch%s\n", ee_net_name(net), o->split,
            sp.heads, 100 * sp.flops_frac, S.url, o->batch, sp.c, sp.h, sp.w,
            o->link_mbit > 0 ? "" : ", as fast as loopback");
    if (o->link_mbit > 0) fprintf(stderr, "the link is simulated at %g Mbit/s\n", o->link_mbit);
    for (int e = 0; e < o->epochs; e++) {
        float lr = ee_schedule_lr(&o->sched, e);
        float w[EE_MAX_HEADS];
        ee_train_head_weights(net, EE_MODE_SDN, e, o->epochs, w);
        for (int i = 0; i < train->n; i++) perm[i] = i;
        for (int i = train->n - 1; i > 0; i--) {
            int k = (int)(ee_rng_next(ctx) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[k];
            perm[k] = t;
        }
        double loss_sum = 0, e0 = now_s();
        long right = 0, seen = 0;
        for (int s = 0; s < steps; s++) {
            int n = train->n - s * o->batch < o->batch ? train->n - s * o->batch : o->batch;
            double a0 = now_s();
            ee_dataset_batch(ctx, train, perm + (size_t)s * o->batch, n, &o->aug, x, y);
            double l = 0;
            int r = 0;
            check(ee_split_train_edge(ctx, net, &sp, x, y, n, w, act, &l, &r), ctx);
            if (!(l == l) || l > 1e30) die("the edge's loss became %g at epoch %d step %d (lr %g): training diverged", l, e + 1, s + 1, lr);
            check(ee_optim_step(ctx, net, ost, lr), ctx);
            size_t len = 0;
            check(ee_wire_request_size(ctx, n, sp.c, sp.h, sp.w, o->wire, EE_WIRE_LABELS, &len), ctx);
            unsigned char *b = malloc(len);
            if (!b) die("out of memory");
            check(ee_wire_encode_request(ctx, 0, o->split, act, n, sp.c, sp.h, sp.w, o->wire, NULL, y, b, len, &len), ctx);
            edge_s += now_s() - a0;
            double q0 = now_s();
            pthread_mutex_lock(&S.mu);
            while (S.qn == 4 && !S.error[0]) pthread_cond_wait(&S.room, &S.mu);
            if (S.error[0]) {
                pthread_mutex_unlock(&S.mu);
                if (child) kill(child, SIGTERM);
                die("%s", S.error);
            }
            S.q[(S.qh + S.qn) % 4] = (outgoing){b, len, lr, e, o->epochs};
            S.qn++;
            pthread_cond_signal(&S.more);
            pthread_mutex_unlock(&S.mu);
            wait_s += now_s() - q0;
            loss_sum += l * n;
            right += r;
            seen += n;
            double el = now_s() - t0, done = (double)e * steps + s + 1, eta = el / done * ((double)o->epochs * steps - done);
            if (tty)
                fprintf(stderr, "\r\033[Kepoch %d/%d step %d/%d  edge loss %.4f  edge exit acc %.2f%%  %.0f img/s  ETA %.0f s",
                        e + 1, o->epochs, s + 1, steps, loss_sum / seen, 100.0 * right / seen, seen / (now_s() - e0), eta);
            else if (s % 100 == 0 || s == steps - 1)
                fprintf(stderr, "epoch %d/%d step %d/%d  edge loss %.4f  edge exit acc %.2f%%  %.0f img/s  ETA %.0f s\n",
                        e + 1, o->epochs, s + 1, steps, loss_sum / seen, 100.0 * right / seen, seen / (now_s() - e0), eta);
        }
        /* the cloud's numbers since the last epoch (the batches it has trained so far) */
        long code = http(&S, &R, ctl, "/v1/train/stats", NULL, 0, NULL, err, sizeof err);
        if (code != 200) { if (child) kill(child, SIGTERM); die("%s", err); }
        const char *cerr = strstr((char *)R.b, "\"error\":\"");
        if (cerr && cerr[9] != '"') { if (child) kill(child, SIGTERM); die("%s", (char *)R.b); }
        double el = now_s() - t0;
        if (tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "epoch %d/%d  edge loss %.4f  edge exit acc %.2f%%  cloud loss %.4f  final acc %.2f%% (%ld "
                "batches)  lr %g  %.0f img/s  %.0f s  sent %.1f MB  ETA %.0f s\n", e + 1, o->epochs, loss_sum / seen,
                100.0 * right / seen, json_num((char *)R.b, "loss"), 100 * json_num((char *)R.b, "acc"),
                (long)json_num((char *)R.b, "batches"), lr, seen / (now_s() - e0), now_s() - e0, S.bytes / 1e6,
                el / (e + 1) * (o->epochs - e - 1));
    }
    /* the last batches, then the cloud's part of the model */
    pthread_mutex_lock(&S.mu);
    S.stop = 1;
    pthread_cond_signal(&S.more);
    pthread_mutex_unlock(&S.mu);
    pthread_join(th, NULL);
    if (S.error[0]) { if (child) kill(child, SIGTERM); die("%s", S.error); }
    double edge_done = now_s() - t0;
    hdr = curl_slist_append(NULL, "Expect:");
    long code = http(&S, &R, ctl, "/v1/train/finish", "", 0, hdr, err, sizeof err);
    curl_slist_free_all(hdr);
    if (code != 200) { if (child) kill(child, SIGTERM); die("%s", err); }
    double wall = now_s() - t0;
    ee_net *far = NULL;
    check(load_bytes(ctx, R.b, R.len, &far), ctx);
    http(&S, &R, ctl, "/v1/train/stats", NULL, 0, NULL, err, sizeof err);
    double cloud_s = json_num((char *)R.b, "busy_s");
    if (child) {
        kill(child, SIGTERM);
        waitpid(child, NULL, 0);
    }
    check(ee_split_merge(ctx, net, far, &sp), ctx);
    ee_net_free(far);
    curl_easy_cleanup(ctl);
    ee_optim_state_free(ost);
    free(x); free(act); free(y); free(perm);
    /* the time model of the paper: split training with the gradient sent back serialises edge, link, cloud,
     * link and edge per batch; here they overlap */
    double link_s = S.link_s;
    double serial = edge_s + cloud_s + 2 * link_s;
    fprintf(stderr, "trained in %.0f s (the edge done after %.0f s): edge compute %.0f s, cloud compute %.0f s, link "
            "%.0f s simulated, %.1f MB sent, the edge waited %.0f s for a full send queue; split training that sends "
            "the gradient back would take about %.0f s (edge + cloud + the link twice, one after another)\n",
            wall, edge_done, edge_s, cloud_s, link_s, S.bytes / 1e6, wait_s, serial);
    hier_result *res = o->result;
    if (res) {
        res->wall_s = wall; res->edge_s = edge_s; res->cloud_s = cloud_s; res->link_s = link_s;
        res->bytes = (double)S.bytes; res->serial_s = serial; res->wait_s = wait_s;
    }
    (void)test;
    free(R.b);
    curl_global_cleanup();
    return 0;
}
