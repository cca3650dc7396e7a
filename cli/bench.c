/* bench.c: `eenn bench`: inference and training speed with memory, the GEMM ceiling, and the measured speedup of
 * early exits against the same network without them. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *bench_help =
    "usage: eenn bench [options]\n"
    "Times inference (eval mode) and training steps (forward, backward, SGD) on random data.\n"
    "Default: resnet56 and vgg16bn at 3x32x32 and resnet56 at 1x28x28; inference at batch 1 and 128,\n"
    "training at batch 128.\n"
    "  --arch NAME      one architecture only      --input CxHxW   its input shape\n"
    "  --arch-file FILE a custom architecture in eenn's text format (docs/format.md), at its own input shape\n"
    "  --batch N        inference batch size only  --no-train      skip training\n"
    "  --train-only     training only (its batch stays 128)\n"
    "  --replicas auto|N training as `eenn train --replicas` runs it (default auto, as there): N > 1 copies of\n"
    "                   the network in threads sharing the cores (sync-BN), timed through the training loop on\n"
    "                   random data; 1: one copy on all the cores\n"
    "  --seconds X      time per measurement (default 3)\n"
    "  --threads N      (0 = all cores)            --json\n"
    "  --exits MODEL    early exits of an SDN on its real test data, beside its CNN without ICs: measured\n"
    "                   wall-clock speedup next to the FLOPs reduction, at batch 1 (with p50/p99 latency)\n"
    "                   and batch 128; --q X overrides the calibrated threshold, --n N images (default 2000)\n"
    "  --save-model FILE with --arch: write the randomly initialised network that is timed (--seed N, default\n"
    "                   1221), so that peers (PyTorch, ONNX Runtime) can be timed on the same weights\n"
    "  --conv K         the convolution kernel: auto (default: eenn's direct kernel on AVX2-only CPUs, oneDNN on\n"
    "                   AVX-512 CPUs, builtin on aarch64), onednn, direct (the AVX2 or NEON kernel; in a NO_AVX2=1\n"
    "                   build, the portable generic-vector one), builtin (eenn's own kernels only: direct where it\n"
    "                   fits, plain loops elsewhere) or reference (the plain loops everywhere)\n"
    "  --chunk N        inference runs the whole network on chunks of N samples (default: 32 or 64, chosen from\n"
    "                   the largest activation so that a chunk stays in cache)\n"
    "  --workers N      inference splits a batch's samples between N workers, one per core share (0: automatic,\n"
    "                   the default; 1: off, every layer on all the cores)\n"
    "  --gemm           the fp32 GEMM ceiling instead: 1024^3 sgemm through oneDNN, in GFLOP/s\n"
    "  --allreduce      under mpirun -np N: the time to sum a network's gradients over the ranks (what data-parallel\n"
    "                   training adds to every step), for --arch (default resnet56 and wrn32_4 at 3x32x32)\n"
    "  --exits MODEL --split NODE --server URL  an edge device and `eenn serve` (docs/serve.md): --clients 1,4,16\n"
    "                   client threads, each running the model up to NODE and sending the rest to URL, for\n"
    "                   --seconds each; requests/s, latency p50/p99, bytes sent per input, the share kept on the\n"
    "                   device, beside the whole model here; --batch N per request (1), --wire fp32|fp16|int8,\n"
    "                   --send activations|inputs (eenn infer --help)\n";

typedef struct { const char *arch; int c, h, w; } bench_net;

/* a field of /proc/self/status in MB (VmRSS: resident now, VmHWM: peak so far, RssAnon: allocated memory,
 * RssFile: mapped library code and files); 0 if unknown */
static double status_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) { kb = atof(line + strlen(key)); break; }
    fclose(f);
    return kb / 1024;
}

/* training through ee_train with replicas: the time per step from the third step (primitives built) to the last */
typedef struct { double t_warm, t_last; int steps_warm, steps_last; } rep_clock;
static void rep_tick(const ee_progress *p, void *user) {
    rep_clock *c = user;
    if (p->epoch_done) return;
    if (p->step == 3) { c->t_warm = now_s(); c->steps_warm = p->step; }
    c->t_last = now_s();
    c->steps_last = p->step;
}
static double time_replicas(ee_ctx *ctx, ee_net *net, int replicas, int n, double secs, int *iters) {
    int c, h, w;
    ee_net_input_shape(net, &c, &h, &w);
    /* as many steps as --seconds takes at the one-process rate measured first on a few steps */
    ee_dataset ds = {0};
    const int probe = 6;
    rep_clock clk = {0};
    ee_train_config cfg = {0};
    cfg.epochs = 1;
    cfg.batch = n;
    cfg.optim = (ee_optim){EE_OPTIM_SGD, 1e-3f, 0.9f, 1e-4f, 0, 0, 0, 0};
    cfg.sched = (ee_schedule){EE_SCHED_STEP, 1e-3f, 1.0f, {0}, 0, 0, 0};
    cfg.progress_every = 1;
    cfg.mode = EE_MODE_CNN;
    cfg.replicas = replicas;
    for (int pass = 0; pass < 2; pass++) {
        int steps = probe;
        if (pass) {
            double per = clk.steps_last > clk.steps_warm ? (clk.t_last - clk.t_warm) / (clk.steps_last - clk.steps_warm) : 1;
            steps = 3 + (int)(secs / (per > 1e-6 ? per : 1e-6)) + 1;
            if (steps < probe) steps = probe;
        }
        ds = (ee_dataset){steps * n, c, h, w, ee_net_classes(net), NULL, NULL, {0.5f, 0.5f, 0.5f, 0.5f},
                          {0.25f, 0.25f, 0.25f, 0.25f}};
        ds.pixels = malloc((size_t)ds.n * c * h * w);
        ds.labels = malloc((size_t)ds.n);
        if (!ds.pixels || !ds.labels) die("out of memory");
        for (size_t i = 0; i < (size_t)ds.n * c * h * w; i++) ds.pixels[i] = (uint8_t)(ee_rng_next(ctx) >> 56);
        for (int i = 0; i < ds.n; i++) ds.labels[i] = (uint8_t)(ee_rng_next(ctx) % (uint64_t)ds.classes);
        clk = (rep_clock){0};
        check(ee_train(ctx, net, &ds, NULL, NULL, &cfg, rep_tick, &clk), ctx);
        free(ds.pixels);
        free(ds.labels);
    }
    *iters = clk.steps_last - clk.steps_warm;
    return *iters > 0 ? (clk.t_last - clk.t_warm) / *iters : 0;
}

static double time_loop(ee_ctx *ctx, ee_net *net, ee_optim_state *st, float *x, uint8_t *y, int n, int train,
                        double secs, int *iters) {
    int it = 0;
    double t0 = 0;
    for (int warm = 0;; it++) {
        if (train) {
            check(ee_net_forward(ctx, net, x, n, 1), ctx);
            ee_net_zero_seeds(net);
            check(ee_net_loss(ctx, net, ee_net_num_heads(net) - 1, y, n, 1.0f, NULL, NULL), ctx);
            check(ee_net_backward(ctx, net, n), ctx);
            check(ee_optim_step(ctx, net, st, 1e-3f), ctx);
        } else {
            check(ee_net_forward(ctx, net, x, n, 0), ctx);
        }
        if (warm < 2) { if (++warm == 2) { t0 = now_s(); it = -1; } continue; }
        if (now_s() - t0 >= secs && it >= 2) break;
    }
    *iters = it + 1;
    return (now_s() - t0) / (it + 1);
}

/* early-exit inference against the same CNN without ICs, on real test images */
static int bench_exits(const char *model, double q, int nimg, int threads, int json, ee_conv_kernel conv, int workers) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, threads);
    ee_ctx_set_conv_kernel(ctx, conv);
    ee_net *sdn = NULL, *cnn = NULL;
    load_model(ctx, model, &sdn);
    if (ee_net_num_heads(sdn) < 2) die("%s: has no internal classifiers (bench --exits needs an SDN)", model);
    ee_exit_policy pol;
    if (!model_policy(ctx, sdn, q, &pol)) die("%s: not calibrated; run eenn calibrate first or give --q", model);
    char desc[512];
    describe_policy(&pol, desc, sizeof desc);
    check(ee_sdn_strip(ctx, sdn, &cnn), ctx);
    const char *data = ee_net_meta(sdn, "data.dir") ? ee_net_meta(sdn, "data.dir") : DEFAULT_DATA;
    ee_dataset *ds = NULL;
    check(ee_dataset_load_dir(ctx, data, "test", &ds), ctx);
    apply_norm(sdn, ds);
    if (nimg > ds->n) nimg = ds->n;
    int C, H, W, heads = ee_net_num_heads(sdn);
    ee_net_input_shape(sdn, &C, &H, &W);
    size_t img = (size_t)C * H * W;
    float *x = malloc(img * nimg * sizeof(float));
    int *idx = malloc(nimg * sizeof(int));
    uint8_t *y = malloc(nimg), *pred = malloc(nimg), *ex = malloc(nimg);
    float *conf = malloc(nimg * sizeof(float));
    double *lat_e = malloc(nimg * sizeof(double)), *lat_c = malloc(nimg * sizeof(double));
    for (int i = 0; i < nimg; i++) idx[i] = i;
    ee_dataset_batch(ctx, ds, idx, nimg, NULL, x, y);
    double cost[16], cnn_flops = 0;
    ee_net_head_costs(sdn, cost, NULL);
    for (int i = 0; i < ee_net_num_nodes(cnn); i++) { ee_node_info in; ee_net_node_info(cnn, i, &in); cnn_flops += in.flops; }
    check(ee_net_prepare(ctx, sdn, 128, 0), ctx);
    check(ee_net_prepare(ctx, cnn, 128, 0), ctx);
    check(ee_net_seal(ctx, sdn), ctx);
    check(ee_net_seal(ctx, cnn), ctx);
    ee_net_set_eval_workers(sdn, workers);
    ee_net_set_eval_workers(cnn, workers);
    /* warm-up: primitives for every power-of-two batch, both networks */
    for (int n = 128; n >= 1; n /= 2) {
        if (n > nimg) continue;
        check(ee_infer_policy(ctx, sdn, x, n, &pol, NULL, pred, conf, ex, NULL), ctx);
        check(ee_net_forward(ctx, cnn, x, n, 0), ctx);
    }
    double res[2][2] = {{1e300, 1e300}, {1e300, 1e300}}; /* [batch 1, batch 128][cnn, exits]: best seconds */
    double avg_cost = 0;
    int right_e = 0, right_c = 0, exits[16] = {0};
    for (int rep = 0; rep < 2; rep++) {
        /* batch 1: one image at a time, latency per image */
        double t0 = now_s();
        for (int i = 0; i < nimg; i++) {
            double a0 = now_s();
            check(ee_net_forward(ctx, cnn, x + i * img, 1, 0), ctx);
            lat_c[i] = now_s() - a0;
        }
        double t1 = now_s();
        for (int i = 0; i < nimg; i++) {
            double a0 = now_s();
            check(ee_infer_policy(ctx, sdn, x + i * img, 1, &pol, NULL, pred + i, conf + i, ex + i, NULL), ctx);
            lat_e[i] = now_s() - a0;
        }
        double t2 = now_s();
        /* batch 128 */
        for (int i = 0; i < nimg; i += 128)
            check(ee_net_forward(ctx, cnn, x + i * img, nimg - i < 128 ? nimg - i : 128, 0), ctx);
        double t3 = now_s();
        for (int i = 0; i < nimg; i += 128)
            check(ee_infer_policy(ctx, sdn, x + i * img, nimg - i < 128 ? nimg - i : 128, &pol, NULL, pred + i, conf + i, ex + i, NULL), ctx);
        double t4 = now_s();
        if (t1 - t0 < res[0][0]) res[0][0] = t1 - t0;
        if (t2 - t1 < res[0][1]) res[0][1] = t2 - t1;
        if (t3 - t2 < res[1][0]) res[1][0] = t3 - t2;
        if (t4 - t3 < res[1][1]) res[1][1] = t4 - t3;
    }
    for (int i = 0; i < nimg; i++) { avg_cost += cost[ex[i]]; exits[ex[i]]++; right_e += pred[i] == y[i]; }
    avg_cost /= nimg;
    for (int i = 0; i < nimg; i += 128) {
        int n = nimg - i < 128 ? nimg - i : 128;
        check(ee_net_forward(ctx, cnn, x + i * img, n, 0), ctx);
        const float *z = ee_net_head_output(cnn, 0);
        int K = ee_net_classes(cnn);
        for (int j = 0; j < n; j++) {
            int b = 0;
            for (int k = 1; k < K; k++) if (z[j * K + k] > z[j * K + b]) b = k;
            right_c += b == y[i + j];
        }
    }
    qsort(lat_e, nimg, sizeof(double), cmp_double);
    qsort(lat_c, nimg, sizeof(double), cmp_double);
    double flops_speedup = 1 / avg_cost, s1 = res[0][0] / res[0][1], s128 = res[1][0] / res[1][1];
    if (json) {
        printf("{\"model\":\"%s\",\"policy\":\"%s\",\"q\":%g,\"images\":%d,\"acc_exits\":%.4f,\"acc_cnn\":%.4f,\"avg_cost\":%.4f,"
               "\"flops_speedup\":%.3f,\"batch1\":{\"cnn_img_s\":%.1f,\"exit_img_s\":%.1f,\"speedup\":%.3f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"cnn_p50_ms\":%.3f,\"cnn_p99_ms\":%.3f},"
               "\"batch128\":{\"cnn_img_s\":%.1f,\"exit_img_s\":%.1f,\"speedup\":%.3f},\"exits\":[",
               js(model), js(desc), pol.threshold[0], nimg, 100.0 * right_e / nimg, 100.0 * right_c / nimg, avg_cost, flops_speedup, nimg / res[0][0],
               nimg / res[0][1], s1, lat_e[nimg / 2] * 1e3, lat_e[nimg * 99 / 100] * 1e3, lat_c[nimg / 2] * 1e3,
               lat_c[nimg * 99 / 100] * 1e3, nimg / res[1][0], nimg / res[1][1], s128);
        for (int h = 0; h < heads; h++) printf("%s%.4f", h ? "," : "", (double)exits[h] / nimg);
        printf("]}\n");
    } else {
        printf("%s (%s) on %d test images: accuracy %.2f%% with exits, %.2f%% for the CNN\n", model, desc, nimg,
               100.0 * right_e / nimg, 100.0 * right_c / nimg);
        printf("average cost %.1f%% of the CNN's %.1f MFLOPs: %.2fx fewer FLOPs; exits (%%):", avg_cost * 100,
               cnn_flops / 1e6, flops_speedup);
        for (int h = 0; h < heads; h++) printf(" %.1f", 100.0 * exits[h] / nimg);
        printf("\n%-10s %12s %14s %9s %16s\n", "batch", "CNN img/s", "exits img/s", "speedup", "vs FLOPs speedup");
        printf("%-10d %12.1f %14.1f %8.2fx %15.2f\n", 1, nimg / res[0][0], nimg / res[0][1], s1, s1 / flops_speedup);
        printf("%-10d %12.1f %14.1f %8.2fx %15.2f\n", 128, nimg / res[1][0], nimg / res[1][1], s128, s128 / flops_speedup);
        printf("batch-1 latency: p50 %.3f ms, p99 %.3f ms with exits; p50 %.3f ms, p99 %.3f ms for the CNN\n",
               lat_e[nimg / 2] * 1e3, lat_e[nimg * 99 / 100] * 1e3, lat_c[nimg / 2] * 1e3, lat_c[nimg * 99 / 100] * 1e3);
    }
    free(x); free(idx); free(y); free(pred); free(ex); free(conf); free(lat_e); free(lat_c);
    ee_dataset_free(ds);
    ee_net_free(sdn); ee_net_free(cnn);
    ee_ctx_free(ctx);
    return 0;
}

enum {
    O_ARCH = 256, O_ARCH_FILE, O_INPUT, O_BATCH, O_NO_TRAIN, O_TRAIN_ONLY, O_SECONDS, O_THREADS, O_JSON, O_EXITS, O_Q,
    O_N, O_SAVE_MODEL, O_SEED, O_GEMM, O_CONV, O_SERVER, O_SPLIT, O_CLIENTS, O_WIRE, O_SEND, O_ALLREDUCE,
    O_CHUNK, O_REPLICAS, O_WORKERS
};
static const struct option bench_opts[] = {
    {"arch", required_argument, NULL, O_ARCH}, {"arch-file", required_argument, NULL, O_ARCH_FILE},
    {"input", required_argument, NULL, O_INPUT}, {"batch", required_argument, NULL, O_BATCH},
    {"no-train", no_argument, NULL, O_NO_TRAIN}, {"train-only", no_argument, NULL, O_TRAIN_ONLY},
    {"seconds", required_argument, NULL, O_SECONDS}, {"threads", required_argument, NULL, O_THREADS},
    {"json", no_argument, NULL, O_JSON}, {"exits", required_argument, NULL, O_EXITS},
    {"q", required_argument, NULL, O_Q}, {"n", required_argument, NULL, O_N},
    {"save-model", required_argument, NULL, O_SAVE_MODEL}, {"seed", required_argument, NULL, O_SEED},
    {"gemm", no_argument, NULL, O_GEMM}, {"allreduce", no_argument, NULL, O_ALLREDUCE}, {"conv", required_argument, NULL, O_CONV},
    {"server", required_argument, NULL, O_SERVER}, {"split", required_argument, NULL, O_SPLIT},
    {"clients", required_argument, NULL, O_CLIENTS}, {"wire", required_argument, NULL, O_WIRE},
    {"send", required_argument, NULL, O_SEND}, {"chunk", required_argument, NULL, O_CHUNK},
        {"workers", required_argument, NULL, O_WORKERS},
    {"replicas", required_argument, NULL, O_REPLICAS},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_bench(int argc, char **argv) {
    const char *arch = NULL, *exits_model = NULL, *save = NULL, *arch_file = NULL;
    int c = 3, h = 32, w = 32, batch = 0, train = 1, json = 0, threads = 0, have_input = 0, nimg = 2000, gemm = 0;
    int allreduce = 0, chunk = 0, workers = 0, replicas = EE_REPLICAS_AUTO;
    long seed = 1221;
    double secs = 3, q = -1;
    ee_conv_kernel bench_conv = EE_CONV_AUTO;
    const char *server = NULL, *split = NULL, *clients = "1,4,16";
    int wire = EE_WIRE_F32, send_inputs = 0;
    cli_args a = {"bench", bench_help, bench_opts, NULL, argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        const char *v = optarg;
        switch (o) {
        case O_ARCH: arch = v; break;
        case O_ARCH_FILE: arch_file = v; break;
        case O_INPUT: parse_shape(&a, &c, &h, &w); have_input = 1; break;
        case O_BATCH: batch = (int)cli_int(&a, 1, 4096); break;
        case O_NO_TRAIN: train = 0; break;
        case O_TRAIN_ONLY: train = 2; break;
        case O_SECONDS: secs = cli_num(&a, 0.01, 3600); break;
        case O_THREADS: threads = (int)cli_int(&a, 0, 256); break;
        case O_JSON: json = 1; break;
        case O_EXITS: exits_model = v; break;
        case O_Q: q = cli_num(&a, 0, 2); break;
        case O_N: nimg = (int)cli_int(&a, 1, 1000000); break;
        case O_SAVE_MODEL: save = v; break;
        case O_SEED: seed = cli_int(&a, 0, 2147483647); break;
        case O_GEMM: gemm = 1; break;
        case O_ALLREDUCE: allreduce = 1; break;
        case O_CHUNK: chunk = (int)cli_int(&a, 1, 4096); break;
        case O_WORKERS: workers = (int)cli_int(&a, 0, 16); break;
        case O_REPLICAS: replicas = cli_replicas(&a); break;
        case O_SERVER: server = v; break;
        case O_SPLIT: split = v; break;
        case O_CLIENTS: clients = v; break;
        case O_SEND:
            if (!strcmp(v, "inputs")) send_inputs = 1;
            else if (strcmp(v, "activations")) usage_error("bench --send: '%s' is not activations or inputs", v);
            break;
        case O_WIRE:
            if (!strcmp(v, "fp32")) wire = EE_WIRE_F32;
            else if (!strcmp(v, "fp16")) wire = EE_WIRE_F16;
            else if (!strcmp(v, "int8")) wire = EE_WIRE_INT8;
            else usage_error("bench --wire: '%s' is not fp32, fp16 or int8", v);
            break;
        case O_CONV:
            if (!strcmp(v, "auto")) bench_conv = EE_CONV_AUTO;
            else if (!strcmp(v, "onednn")) bench_conv = EE_CONV_ONEDNN;
            else if (!strcmp(v, "direct")) bench_conv = EE_CONV_DIRECT;
            else if (!strcmp(v, "builtin")) bench_conv = EE_CONV_BUILTIN;
            else if (!strcmp(v, "reference")) bench_conv = EE_CONV_REFERENCE;
            else usage_error("bench --conv: '%s' is not auto, onednn, direct, builtin or reference", v);
            break;
        }
    }
    if (cli_npos(&a)) usage_error("bench: unexpected argument '%s' (see eenn bench --help)", cli_pos(&a)[0]);
    if (!server != !split) usage_error("bench: --server and --split go together");
    if (server) {
        if (!exits_model) usage_error("bench --server: give the model with --exits MODEL");
        return bench_split(exits_model, server, split, clients, secs, batch ? batch : 1, wire, send_inputs, threads, nimg,
                           json);
    }
    if (exits_model) return bench_exits(exits_model, q, nimg, threads, json, bench_conv, workers);
    if (save && !arch && !arch_file) usage_error("bench --save-model: needs --arch or --arch-file");
    if (arch && arch_file) usage_error("bench: --arch and --arch-file exclude each other");
    if (arch_file && have_input) usage_error("bench --arch-file: the file's input line gives the shape; drop --input");
    if (gemm) {
        ee_ctx *ctx = ee_ctx_new();
        ee_ctx_set_threads(ctx, threads);
        double gf = 0;
        check(ee_bench_sgemm(ctx, 1024, secs, &gf), ctx);
        if (json) printf("{\"gemm\":1024,\"threads\":%d,\"gflops\":%.1f}\n", ee_ctx_threads(ctx), gf);
        else printf("fp32 sgemm 1024x1024x1024 (oneDNN), %d threads: %.1f GFLOP/s\n", ee_ctx_threads(ctx), gf);
        ee_ctx_free(ctx);
        return 0;
    }
    if (allreduce) {
        ee_parallel par;
        int ranks = mpi_start(&par);
        if (ranks < 2) usage_error("bench --allreduce: start it with mpirun -np N (N >= 2)");
        bench_net two[] = {{"resnet56", 3, 32, 32}, {"wrn32_4", 3, 32, 32}}, one = {arch ? arch : "resnet56", c, h, w};
        bench_net *list = arch ? &one : two;
        int nlist = arch ? 1 : 2;
        ee_ctx *ctx = ee_ctx_new();
        if (json && par.rank == 0) printf("{\"ranks\":%d,\"allreduce\":[", ranks);
        for (int i = 0; i < nlist; i++) {
            ee_net *net = NULL;
            check(ee_net_builtin(ctx, list[i].arch, list[i].c, list[i].h, list[i].w, 10, &net), ctx);
            size_t n = ee_net_num_params(net);
            double mean, p50, p99;
            int reps;
            mpi_time_allreduce(n, secs, &mean, &p50, &p99, &reps);
            /* bus bandwidth as NCCL's tests define it: a ring moves 2 (N-1)/N of the buffer through each link */
            double busbw = 2.0 * (ranks - 1) / ranks * n * 4 / (p50 * 1e-3) / 1e9;
            if (par.rank == 0) {
                if (json)
                    printf("%s{\"arch\":\"%s\",\"params\":%zu,\"mb\":%.2f,\"reps\":%d,\"ms_mean\":%.3f,\"ms_p50\":%.3f,"
                           "\"ms_p99\":%.3f,\"bus_gbyte_s\":%.2f}", i ? "," : "", js(list[i].arch), n, n * 4 / 1e6, reps, mean,
                           p50, p99, busbw);
                else
                    printf("%s: %zu gradients (%.2f MB) summed over %d ranks: %.3f ms median, %.3f ms mean, %.3f ms p99 "
                           "(%d times); bus bandwidth %.2f GB/s\n", list[i].arch, n, n * 4 / 1e6, ranks, p50, mean, p99, reps,
                           busbw);
            }
            ee_net_free(net);
        }
        if (json && par.rank == 0) printf("]}\n");
        ee_ctx_free(ctx);
        mpi_finish();
        return 0;
    }
    bench_net defaults[] = {{"resnet56", 3, 32, 32}, {"vgg16bn", 3, 32, 32}, {"resnet56", 1, 28, 28}};
    bench_net one = {arch ? arch : "resnet56", c, h, w};
    bench_net *list = arch || have_input || arch_file ? &one : defaults;
    int nlist = arch || have_input || arch_file ? 1 : 3;
    char *text = NULL;
    ee_ctx *ctx = ee_ctx_new();
    if (arch_file) { /* its name and input shape, from a first build */
        ee_net *probe = NULL;
        text = read_text(arch_file);
        check(ee_net_from_text(ctx, text, arch_file, &probe), ctx);
        ee_net_input_shape(probe, &one.c, &one.h, &one.w);
        one.arch = arch_file;
        ee_net_free(probe);
    }
    ee_ctx_set_threads(ctx, threads);
    ee_ctx_set_conv_kernel(ctx, bench_conv);
    double rss0 = status_mb("VmRSS:"); /* the process before any network: code, libraries, runtime */
    if (json) printf("{\"threads\":%d,\"start_rss_mb\":%.1f,\"results\":[", ee_ctx_threads(ctx), rss0);
    else printf("%-10s %-8s %-6s %6s %10s %9s %10s %9s %9s\n", "net", "input", "mode", "batch", "img/s", "GFLOP/s", "ms/batch",
                "act MB", "peak RSS");
    int first = 1;
    for (int k = 0; k < nlist; k++) {
        int modes[3][2] = {{0, 1}, {0, 128}, {1, 128}}, nm = 0, ms[3][2];
        for (int m = 0; m < 3; m++) {
            if (modes[m][0] ? !train : train == 2) continue;
            if (batch && !modes[m][0]) { if (m == 1) continue; modes[m][1] = batch; }
            ms[nm][0] = modes[m][0]; ms[nm][1] = modes[m][1]; nm++;
        }
        for (int m = 0; m < nm; m++) {
            int tr = ms[m][0], n = ms[m][1];
            ee_net *net = NULL;
            ee_ctx_seed(ctx, (uint64_t)seed); /* the same weights in every mode, and in --save-model */
            if (text) check(ee_net_from_text(ctx, text, arch_file, &net), ctx);
            else check(ee_net_builtin(ctx, list[k].arch, list[k].c, list[k].h, list[k].w, 10, &net), ctx);
            check(ee_net_init(ctx, net), ctx);
            if (save && m == 0) check(ee_net_save(ctx, net, NULL, 0, save), ctx);
            check(ee_net_prepare(ctx, net, n, tr), ctx);
            if (!tr) check(ee_net_seal(ctx, net), ctx); /* inference as deployed: one copy of the weights */
            if (!tr && chunk) ee_net_set_eval_chunk(net, chunk);
            if (!tr) ee_net_set_eval_workers(net, workers);
            size_t img = (size_t)list[k].c * list[k].h * list[k].w;
            float *x = malloc(img * n * sizeof(float));
            uint8_t *y = malloc(n);
            for (size_t i = 0; i < img * n; i++) x[i] = ee_rng_normal(ctx);
            for (int i = 0; i < n; i++) y[i] = (uint8_t)(ee_rng_next(ctx) % (uint64_t)ee_net_classes(net));
            ee_optim o = {EE_OPTIM_SGD, 1e-3f, 0.9f, 1e-4f, 0, 0, 0, 0};
            ee_optim_state *st = NULL;
            if (tr) check(ee_optim_state_new(ctx, net, &o, &st), ctx);
            double flops = 0;
            for (int i = 0; i < ee_net_num_nodes(net); i++) { ee_node_info in; ee_net_node_info(net, i, &in); flops += in.flops; }
            if (tr) flops *= 3; /* forward + backward data + backward weights */
            int iters;
            const int reps = !tr ? 1 : replicas == EE_REPLICAS_AUTO ? ee_train_auto_replicas(ctx, net, n) : replicas;
            double t = reps > 1 ? time_replicas(ctx, net, reps, n, secs, &iters)
                                : time_loop(ctx, net, st, x, y, n, tr, secs, &iters);
            double ips = n / t, gf = flops * n / t / 1e9;
            /* memory: weights and BN statistics, the largest input+output pair of any layer, the activation buffers
             * the net holds, and the process's peak resident set so far */
            double wmb = (ee_net_num_params(net) + ee_net_num_state(net)) * 4.0 / 1048576, pair = 0;
            for (int i = 0; i < ee_net_num_nodes(net); i++) {
                ee_node_info in;
                ee_net_node_info(net, i, &in);
                double p = ((double)in.in_c * in.in_h * in.in_w + (double)in.c * in.h * in.w) * n * 4.0 / 1048576;
                if (p > pair) pair = p;
            }
            double act = ee_net_activation_bytes(net) / 1048576.0, peak = status_mb("VmHWM:"), anon = status_mb("RssAnon:"),
                   file = status_mb("RssFile:");
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%dx%d", list[k].c, list[k].h, list[k].w);
            if (json)
                printf("%s{\"net\":\"%s\",\"input\":\"%s\",\"mode\":\"%s\",\"batch\":%d,\"img_per_s\":%.1f,\"gflops\":%.1f,"
                       "\"ms_per_batch\":%.3f,\"iters\":%d,\"weights_mb\":%.2f,\"largest_pair_mb\":%.2f,"
                       "\"activation_mb\":%.2f,\"peak_rss_mb\":%.1f,\"rss_anon_mb\":%.1f,\"rss_file_mb\":%.1f,\"replicas\":%d}",
                       first ? "" : ",", js(list[k].arch), shape, tr ? "train" : "infer", n, ips, gf, t * 1e3, iters, wmb, pair,
                       act, peak, anon, file, reps);
            else
                printf("%-10s %-8s %-6s %6d %10.1f %9.1f %10.3f %9.1f %9.1f\n", list[k].arch, shape, tr ? "train" : "infer",
                       n, ips, gf, t * 1e3, act, peak);
            fflush(stdout);
            first = 0;
            ee_optim_state_free(st);
            free(x); free(y);
            ee_net_free(net);
        }
    }
    if (json) printf("]}\n");
    free(text);
    ee_ctx_free(ctx);
    return 0;
}

