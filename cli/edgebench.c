/* edgebench.c: `eenn bench --exits MODEL --split NODE --server URL`: an edge device and a server, measured. Each
 * client is a thread with its own copy of the model that runs the part up to the split with its exits and sends
 * the rest to the server (ee_infer_remote), over and over on the model's test images: requests per second,
 * latency p50/p99, bytes sent per input, the share of inputs that never leave the device; beside the same model
 * run whole on this machine, one request at a time. */
#include "common.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *server, *split;
    const float *x;
    int nimg, batch, wire, send_inputs, index;
    double secs;
    /* results */
    double *lat;
    int nlat, cap, sent, degraded, inputs, failed;
    size_t bytes;
    char err[300];
} client;

static void *run_client(void *arg) {
    client *c = arg;
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_net *net = NULL;
    ee_exit_policy pol;
    ee_split sp;
    ee_remote *r = NULL;
    int C, H, W;
    if (ee_net_load(ctx, c->model, &net) || ee_net_policy(ctx, net, &pol) || ee_split_at(ctx, net, c->split, &sp) ||
        ee_net_prepare(ctx, net, c->batch, 0) || ee_net_seal(ctx, net) ||
        ee_remote_open(ctx, c->server, &(ee_remote_opts){c->wire, 10000, c->send_inputs}, &r)) {
        snprintf(c->err, sizeof c->err, "%s", ee_ctx_error(ctx));
        c->failed = 1;
        goto done;
    }
    ee_net_input_shape(net, &C, &H, &W);
    size_t img = (size_t)C * H * W;
    uint8_t pred[4096], ex[4096], why[4096];
    float conf[4096];
    double t0 = now_s();
    /* each client starts at its own place in the test images */
    for (int i = (c->index * 997) % c->nimg; now_s() - t0 < c->secs;) {
        if (i + c->batch > c->nimg) i = 0;
        ee_remote_stats rs;
        double a0 = now_s();
        if (ee_infer_remote(ctx, net, r, c->x + (size_t)i * img, c->batch, &pol, &sp, pred, conf, ex, why, &rs)) {
            snprintf(c->err, sizeof c->err, "%s", ee_ctx_error(ctx));
            c->failed = 1;
            break;
        }
        if (c->nlat == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 4096;
            double *l = realloc(c->lat, sizeof(double) * c->cap);
            if (!l) { c->failed = 1; snprintf(c->err, sizeof c->err, "out of memory"); break; }
            c->lat = l;
        }
        c->lat[c->nlat++] = now_s() - a0;
        c->sent += rs.sent;
        c->bytes += rs.bytes_sent;
        c->degraded += rs.degraded;
        if (rs.degraded && !c->err[0]) snprintf(c->err, sizeof c->err, "%s", rs.error);
        c->inputs += c->batch;
        i += c->batch;
    }
done:
    ee_remote_close(r);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return NULL;
}

int bench_split(const char *model, const char *server, const char *split, const char *clients, double secs,
                int batch, int wire, int send_inputs, int threads, int nimg, int json) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_net *net = NULL;
    load_model(ctx, model, &net);
    ee_exit_policy pol;
    if (!model_policy(ctx, net, -1, &pol)) die("%s: not calibrated; run eenn calibrate first", model);
    ee_split sp;
    if (ee_split_at(ctx, net, split, &sp)) die("%s: %s", model, ee_ctx_error(ctx));
    const char *data = ee_net_meta(net, "data.dir") ? ee_net_meta(net, "data.dir") : DEFAULT_DATA;
    ee_dataset *ds = NULL;
    check(ee_dataset_load_dir(ctx, data, "test", &ds), ctx);
    apply_norm(net, ds);
    if (nimg > ds->n) nimg = ds->n;
    if (batch > nimg) batch = nimg;
    int C, H, W;
    ee_net_input_shape(net, &C, &H, &W);
    size_t img = (size_t)C * H * W;
    float *x = malloc(img * nimg * sizeof(float));
    int *idx = malloc(sizeof(int) * nimg);
    if (!x || !idx) die("out of memory");
    for (int i = 0; i < nimg; i++) idx[i] = i;
    ee_dataset_batch(ctx, ds, idx, nimg, NULL, x, NULL);
    free(idx);
    ee_dataset_free(ds);
    /* the whole model on this machine, one request of `batch` at a time, 1 thread as each client */
    ee_ctx_set_threads(ctx, 1);
    check(ee_net_prepare(ctx, net, batch, 0), ctx);
    check(ee_net_seal(ctx, net), ctx);
    uint8_t pred[4096], ex[4096];
    float conf[4096];
    int nloc = 0, cap = 4096;
    double *lat = malloc(sizeof(double) * cap), t0 = now_s();
    for (int i = 0; i < 3; i++) check(ee_infer_policy(ctx, net, x, batch, &pol, NULL, pred, conf, ex, NULL), ctx);
    t0 = now_s();
    for (int i = 0; now_s() - t0 < secs && nloc < cap; i += batch) {
        if (i + batch > nimg) i = 0;
        double a0 = now_s();
        check(ee_infer_policy(ctx, net, x + (size_t)i * img, batch, &pol, NULL, pred, conf, ex, NULL), ctx);
        lat[nloc++] = now_s() - a0;
    }
    double local_rate = nloc * batch / (now_s() - t0);
    qsort(lat, nloc, sizeof *lat, cmp_double);
    double lp50 = lat[nloc / 2] * 1e3, lp99 = lat[(int)(nloc * 0.99)] * 1e3;
    free(lat);
    /* bytes a sent sample costs, per wire type (the header shared by a request's samples) */
    size_t row_bytes[3];
    for (int d = 0; d < 3; d++) {
        size_t one;
        check(ee_wire_request_size(ctx, 1, sp.c, sp.h, sp.w, d, EE_WIRE_STATES, &one), ctx);
        row_bytes[d] = one;
    }
    if (!json) {
        printf("%s split after %s (%dx%dx%d, %d exits before it, %.1f%% of the FLOPs), server %s, batch %d, %s\n",
               model, split, sp.c, sp.h, sp.w, sp.heads, 100 * sp.flops_frac, server, batch,
               wire == EE_WIRE_F32 ? "fp32" : wire == EE_WIRE_F16 ? "fp16" : "int8");
        printf("whole model here (1 thread): %.0f img/s, latency p50 %.3f ms, p99 %.3f ms\n", local_rate, lp50, lp99);
        printf("%-8s %10s %10s %10s %12s %10s %9s %7s\n", "clients", "img/s", "p50 ms", "p99 ms", "bytes/input",
               "kept here", "degraded", "errors");
    } else
        printf("{\"model\":\"%s\",\"split\":\"%s\",\"server\":\"%s\",\"batch\":%d,\"wire\":\"%s\",\"flops_before\":%.4f,"
               "\"local\":{\"img_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f},\"bytes_per_sent_sample\":{\"fp32\":%zu,"
               "\"fp16\":%zu,\"int8\":%zu},\"input_bytes_8bit\":%zu,\"clients\":[", js(model), js(split), js(server),
               batch, wire == EE_WIRE_F32 ? "fp32" : wire == EE_WIRE_F16 ? "fp16" : "int8", sp.flops_frac, local_rate,
               lp50, lp99, row_bytes[0], row_bytes[1], row_bytes[2], img);
    char list[256];
    snprintf(list, sizeof list, "%s", clients);
    int first = 1, bad = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int n = atoi(tok);
        if (n < 1 || n > 256) usage_error("bench --clients: '%s' is not a count from 1 to 256", tok);
        client *cl = calloc((size_t)n, sizeof *cl);
        pthread_t *th = malloc(sizeof *th * n);
        if (!cl || !th) die("out of memory");
        double s0 = now_s();
        for (int k = 0; k < n; k++) {
            cl[k] = (client){model, server, split, x, nimg, batch, wire, send_inputs, k, secs, NULL, 0, 0, 0, 0, 0, 0, 0, ""};
            if (pthread_create(&th[k], NULL, run_client, &cl[k])) die("cannot start client thread %d", k);
        }
        for (int k = 0; k < n; k++) pthread_join(th[k], NULL);
        double wall = now_s() - s0;
        int nl = 0, inputs = 0, sent = 0, degraded = 0, failed = 0;
        size_t bytes = 0;
        for (int k = 0; k < n; k++) nl += cl[k].nlat;
        double *all = malloc(sizeof(double) * (nl ? nl : 1));
        nl = 0;
        const char *why = "";
        for (int k = 0; k < n; k++) {
            memcpy(all + nl, cl[k].lat, sizeof(double) * cl[k].nlat);
            nl += cl[k].nlat;
            inputs += cl[k].inputs; sent += cl[k].sent; degraded += cl[k].degraded; failed += cl[k].failed;
            bytes += cl[k].bytes;
            if (cl[k].err[0] && !why[0]) why = cl[k].err;
        }
        qsort(all, nl, sizeof *all, cmp_double);
        double p50 = nl ? all[nl / 2] * 1e3 : 0, p99 = nl ? all[(int)(nl * 0.99)] * 1e3 : 0;
        double rate = inputs / wall, kept = inputs ? 100.0 * (inputs - sent) / inputs : 0;
        double bpi = inputs ? (double)bytes / inputs : 0;
        if (!json)
            printf("%-8d %10.0f %10.3f %10.3f %12.0f %9.1f%% %9d %7d\n", n, rate, p50, p99, bpi, kept, degraded, failed);
        else
            printf("%s{\"clients\":%d,\"img_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"bytes_per_input\":%.1f,"
                   "\"kept_on_device_pct\":%.2f,\"requests\":%d,\"inputs\":%d,\"sent\":%d,\"degraded\":%d,\"errors\":%d}",
                   first ? "" : ",", n, rate, p50, p99, bpi, kept, nl, inputs, sent, degraded, failed);
        if ((degraded || failed) && why[0]) fprintf(stderr, "eenn bench: %d clients: %s\n", n, why);
        bad += degraded + failed;
        first = 0;
        for (int k = 0; k < n; k++) free(cl[k].lat);
        free(cl); free(th); free(all);
    }
    if (json) printf("]}\n");
    else
        printf("bytes per sent sample: fp32 %zu, fp16 %zu, int8 %zu (an 8-bit input image: %zu)\n", row_bytes[0],
               row_bytes[1], row_bytes[2], img);
    free(x);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return bad ? 1 : 0;
}
