/* test_parallel.c: data-parallel training (ee_parallel) with ranks as threads of one process and collectives
 * over shared memory, so it runs everywhere, sanitizers included; tests/cli_tests.sh runs the same over MPI.
 *  - with sync-BN, 2 and 3 ranks (3 splits a batch of 16 unevenly) train an SDN to the weights and statistics one
 *    process reaches on the same global batches; without sync-BN they differ (so the comparison can fail);
 *  - a failure on one rank stops every rank: the failing one with its own message, the others with EE_ERR_PEER;
 *  - a run checkpointed on 2 ranks resumes on 1 and on 3 and ends where the unbroken run does. */
#define _GNU_SOURCE
#include "testlib.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- collectives over shared memory */
#define MAXR 4
typedef struct {
    int size;
    pthread_barrier_t bar;
    void *slot[MAXR];
} shm_world;
typedef struct {
    shm_world *w;
    int rank;
} shm_rank;

static void add_floats(float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}
static void add_doubles(double *a, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

/* every rank adds the slots in rank order, so every rank gets the same bits */
static int shm_allreduce(void *user, void *buf, size_t n, int dbl) {
    shm_rank *r = user;
    shm_world *w = r->w;
    size_t bytes = n * (dbl ? sizeof(double) : sizeof(float));
    void *mine = malloc(bytes);
    if (!mine) return 1;
    memcpy(mine, buf, bytes);
    w->slot[r->rank] = mine;
    pthread_barrier_wait(&w->bar);
    memcpy(buf, w->slot[0], bytes);
    for (int k = 1; k < w->size; k++) {
        if (dbl) add_doubles(buf, w->slot[k], n);
        else add_floats(buf, w->slot[k], n);
    }
    pthread_barrier_wait(&w->bar);
    free(mine);
    return 0;
}
static int shm_broadcast(void *user, void *buf, size_t bytes) {
    shm_rank *r = user;
    shm_world *w = r->w;
    if (r->rank == 0) w->slot[0] = buf;
    pthread_barrier_wait(&w->bar);
    if (r->rank) memcpy(buf, w->slot[0], bytes);
    pthread_barrier_wait(&w->bar);
    return 0;
}

/* the largest difference of two parameter (or state) vectors relative to the largest magnitude in a */
static double rel_diff(const float *a, const float *b, size_t n) {
    double mx = 1e-30, d = 0;
    for (size_t i = 0; i < n; i++) { /* plain comparisons: gcc 12 for aarch64 fails to vectorise fmax here */
        double v = fabs(a[i]), e = fabs((double)a[i] - b[i]);
        if (v > mx) mx = v;
        if (e > d || e != e) d = e;
    }
    return d / mx;
}

/* ---------------------------------------------------------------- one training run per rank */
typedef struct {
    shm_world *w;
    shm_rank me;
    ee_parallel par;
    int sync_bn, epochs, stop, resume, fail_rank, replicas, aug, threads; /* threads: 0 means 1 */
    const char *ckpt;
    ee_status status;
    char err[256];
    float *params, *state; /* the result (rank 0 keeps it) */
} job;

/* an SDN on ResNet-20 for 28x28 inputs, the same initial weights on every call */
static ee_net *sdn(ee_ctx *ctx) {
    ee_net *cnn = NULL, *s = NULL;
    if (ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &cnn)) return NULL;
    ee_ctx_seed(ctx, 5);
    ee_net_init(ctx, cnn);
    int nodes[16], n = ee_sdn_default_positions(cnn, nodes, 16);
    ee_sdn_attach(ctx, cnn, nodes, n < 3 ? n : 3, &s);
    ee_net_free(cnn);
    return s;
}

static void *run(void *arg) {
    job *j = arg;
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, j->threads > 0 ? j->threads : 1);
    ee_net *net = sdn(ctx);
    if (!net) fprintf(stderr, "rank %d: no network: %s\n", j->me.rank, ee_ctx_error(ctx));
    ee_dataset *ds = tl_toy_data(48);
    if (j->fail_rank == j->me.rank) ds->labels[3] = 200; /* this rank's data is bad */
    ee_ctx_seed(ctx, 11);
    ee_train_config cfg = {0};
    cfg.epochs = j->epochs;
    cfg.batch = 16;
    cfg.optim = (ee_optim){EE_OPTIM_SGD, 0.002f, 0.9f, 1e-4f, 0, 0.9f, 0.999f, 1e-8f};
    cfg.sched = (ee_schedule){EE_SCHED_STEP, 0.002f, 0.1f, {0}, 0, 0, 0};
    cfg.mode = EE_MODE_SDN;
    cfg.checkpoint = j->ckpt;
    cfg.resume = j->resume;
    cfg.stop_epoch = j->stop;
    cfg.replicas = j->replicas;
    if (j->aug) cfg.aug = (ee_augment){2, 1};
    if (j->w) {
        j->par.rank = j->me.rank;
        j->par.size = j->w->size;
        j->par.sync_bn = j->sync_bn;
        j->par.allreduce = shm_allreduce;
        j->par.broadcast = shm_broadcast;
        j->par.user = &j->me;
        cfg.parallel = &j->par;
    }
    j->status = net ? ee_train(ctx, net, ds, NULL, NULL, &cfg, NULL, NULL) : EE_ERR_NOMEM;
    snprintf(j->err, sizeof j->err, "%s", ee_ctx_error(ctx));
    if (net && !j->status) {
        j->params = malloc(ee_net_num_params(net) * sizeof(float));
        j->state = malloc(ee_net_num_state(net) * sizeof(float));
        memcpy(j->params, ee_net_params(net), ee_net_num_params(net) * sizeof(float));
        memcpy(j->state, ee_net_state(net), ee_net_num_state(net) * sizeof(float));
    }
    ee_dataset_free(ds);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return NULL;
}

/* ranks = 0: one process without ee_parallel; else that many threads. jobs[0] holds rank 0's result. */
static void train(int ranks, job *proto, job *jobs) {
    shm_world w = {.size = ranks};
    if (ranks) pthread_barrier_init(&w.bar, NULL, (unsigned)ranks);
    pthread_t th[MAXR];
    for (int r = 0; r < (ranks ? ranks : 1); r++) {
        jobs[r] = *proto;
        jobs[r].w = ranks ? &w : NULL;
        jobs[r].me = (shm_rank){&w, r};
    }
    if (!ranks) run(&jobs[0]);
    else {
        for (int r = 0; r < ranks; r++) pthread_create(&th[r], NULL, run, &jobs[r]);
        for (int r = 0; r < ranks; r++) pthread_join(th[r], NULL);
        pthread_barrier_destroy(&w.bar);
    }
}
static void release(job *jobs, int n) {
    for (int r = 0; r < n; r++) { free(jobs[r].params); free(jobs[r].state); jobs[r].params = jobs[r].state = NULL; }
}

static size_t sizes(size_t *ns) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = sdn(ctx);
    size_t np = net ? ee_net_num_params(net) : 0;
    *ns = net ? ee_net_num_state(net) : 0;
    ee_net_free(net);
    ee_ctx_free(ctx);
    return np;
}

static void test_equivalence(void) {
    size_t ns, np = sizes(&ns);
    /* with augmentation: each sample of a batch draws its crop and flip from the same stream on any number of
     * ranks */
    job proto = {.epochs = 2, .fail_rank = -1, .aug = 1}, one[1], j2[2], j3[3], loc[2];
    train(0, &proto, one); /* 3 steps of 16 per epoch */
    CHECK(one[0].status == EE_OK && one[0].params, "one process: %s", one[0].err);
    proto.sync_bn = 1;
    train(2, &proto, j2);
    train(3, &proto, j3);
    proto.sync_bn = 0;
    train(2, &proto, loc);
    if (!one[0].params || !j2[0].params || !j3[0].params || !loc[0].params) {
        CHECK(0, "a parallel run failed: %s / %s / %s", j2[0].err, j3[0].err, loc[0].err);
        release(one, 1); release(j2, 2); release(j3, 3); release(loc, 2);
        return;
    }
    /* float tolerance: summation orders differ (a thread count changes them as much), and differences grow with
     * every step; a small learning rate keeps them near their source */
    double e2 = rel_diff(j2[0].params, one[0].params, np), e3 = rel_diff(j3[0].params, one[0].params, np);
    CHECK(e2 < 2e-4, "2 ranks with sync-BN: weights differ from one process by %g", e2);
    CHECK(e3 < 2e-4, "3 ranks (uneven shares) with sync-BN: weights differ from one process by %g", e3);
    e2 = rel_diff(j2[0].state, one[0].state, ns);
    e3 = rel_diff(j3[0].state, one[0].state, ns);
    CHECK(e2 < 2e-4 && e3 < 2e-4, "sync-BN: BN statistics differ from one process by %g (2 ranks), %g (3)", e2, e3);
    for (int r = 1; r < 3; r++)
        CHECK(j3[r].params && !memcmp(j3[r].params, j3[0].params, np * sizeof(float)) &&
                  !memcmp(j3[r].state, j3[0].state, ns * sizeof(float)),
              "rank %d ends with other weights than rank 0", r);
    /* without sync-BN each rank normalises by its own 8 samples: another model (what makes the above a test) */
    double el = rel_diff(loc[0].params, one[0].params, np);
    CHECK(el > 5e-4, "2 ranks without sync-BN are as close to one process as with it (%g)", el);
    CHECK(!memcmp(loc[1].params, loc[0].params, np * sizeof(float)), "without sync-BN the ranks' weights drift apart");
    release(one, 1); release(j2, 2); release(j3, 3); release(loc, 2);
}

/* ee_train_config.replicas: copies of the network in threads of one process, ranks with sync-BN, end where one
 * network does (2 and 3 replicas, the same tolerance as ranks), and a failure says what failed */
static void test_replicas(void) {
    size_t ns, np = sizes(&ns);
    job proto = {.epochs = 2, .fail_rank = -1, .aug = 1}, one[1], r2[1], r3[1], r4[1], bad[1];
    train(0, &proto, one);
    proto.replicas = 2;
    train(0, &proto, r2);
    proto.replicas = 3;
    train(0, &proto, r3);
    CHECK(r2[0].status == EE_OK && r3[0].status == EE_OK, "replicas: %s / %s", r2[0].err, r3[0].err);
    if (one[0].params && r2[0].params && r3[0].params) {
        double e2 = rel_diff(r2[0].params, one[0].params, np), e3 = rel_diff(r3[0].params, one[0].params, np);
        double s2 = rel_diff(r2[0].state, one[0].state, ns), s3 = rel_diff(r3[0].state, one[0].state, ns);
        CHECK(e2 < 2e-4 && e3 < 2e-4, "2 / 3 replicas: weights differ from one network by %g / %g", e2, e3);
        CHECK(s2 < 2e-4 && s3 < 2e-4, "2 / 3 replicas: BN statistics differ from one network by %g / %g", s2, s3);
        CHECK(e2 > 0 || s2 > 0 || memcmp(r2[0].params, one[0].params, np * sizeof(float)) == 0,
              "replicas: comparison broken");
    }
    /* 2 replicas on 4 threads: 2 threads each (the cores shared), the same steps */
    job t4 = proto;
    t4.replicas = 2;
    t4.threads = 4;
    train(0, &t4, r4);
    CHECK(r4[0].status == EE_OK, "2 replicas x 2 threads: %s", r4[0].err);
    if (one[0].params && r4[0].params) {
        double e = rel_diff(r4[0].params, one[0].params, np), st = rel_diff(r4[0].state, one[0].state, ns);
        CHECK(e < 2e-4 && st < 2e-4, "2 replicas x 2 threads: weights / BN statistics differ from one network by %g / %g",
              e, st);
    }
    proto.replicas = 2;
    proto.fail_rank = 0; /* the data itself is bad: every replica stops, and the error says why */
    train(0, &proto, bad);
    CHECK(bad[0].status == EE_ERR_ARG && strstr(bad[0].err, "label 200"), "replicas on bad data: %d %s", bad[0].status,
          bad[0].err);
    release(one, 1); release(r2, 1); release(r3, 1); release(r4, 1); release(bad, 1);
}

/* EE_REPLICAS_AUTO: one replica per core for narrow networks with 32+ samples each, else one network */
static void test_auto_replicas(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = sdn(ctx), *wide = NULL;
    ee_net_builtin(ctx, "wrn32_4", 3, 32, 32, 10, &wide);
    CHECK(net && wide, "networks: %s", ee_ctx_error(ctx));
    if (net && wide) {
        ee_ctx_set_threads(ctx, 2);
        CHECK(ee_train_auto_replicas(ctx, net, 128) == 2, "ResNet-20, 2 cores, batch 128: %d replicas",
              ee_train_auto_replicas(ctx, net, 128));
        CHECK(ee_train_auto_replicas(ctx, net, 63) == 1, "batch 63 (under 32 a replica): %d replicas",
              ee_train_auto_replicas(ctx, net, 63));
        CHECK(ee_train_auto_replicas(ctx, wide, 128) == 1, "WRN-32-4 (256 channels): %d replicas",
              ee_train_auto_replicas(ctx, wide, 128));
        ee_ctx_set_threads(ctx, 4);
        CHECK(ee_train_auto_replicas(ctx, net, 96) == 3, "4 cores, batch 96: %d replicas (3 of 32)",
              ee_train_auto_replicas(ctx, net, 96));
        /* the cores shared between the replicas: 8 cores at batch 128, 4 replicas of 2 threads; 5 cores, 2
         * replicas: 3 and 2; fewer cores than replicas: 1 each */
        ee_ctx_set_threads(ctx, 8);
        CHECK(ee_train_auto_replicas(ctx, net, 128) == 4, "8 cores, batch 128: %d replicas (4 of 32)",
              ee_train_auto_replicas(ctx, net, 128));
        CHECK(ee_train_replica_threads(ctx, 4, 0) == 2 && ee_train_replica_threads(ctx, 4, 3) == 2,
              "8 cores, 4 replicas: %d and %d threads", ee_train_replica_threads(ctx, 4, 0), ee_train_replica_threads(ctx, 4, 3));
        ee_ctx_set_threads(ctx, 5);
        CHECK(ee_train_replica_threads(ctx, 2, 0) == 3 && ee_train_replica_threads(ctx, 2, 1) == 2,
              "5 cores, 2 replicas: %d and %d threads", ee_train_replica_threads(ctx, 2, 0), ee_train_replica_threads(ctx, 2, 1));
        CHECK(ee_train_replica_threads(ctx, 8, 7) == 1 && ee_train_replica_threads(ctx, 2, 2) == 1,
              "5 cores, 8 replicas / a rank out of range: %d / %d threads", ee_train_replica_threads(ctx, 8, 7),
              ee_train_replica_threads(ctx, 2, 2));
        ee_ctx_set_threads(ctx, 1);
        CHECK(ee_train_auto_replicas(ctx, net, 128) == 1, "1 thread: %d replicas", ee_train_auto_replicas(ctx, net, 128));
        ee_ctx_set_threads(ctx, 0); /* the idle cores: at least 1, at most the machine's */
        int r = ee_train_auto_replicas(ctx, net, 128);
        CHECK(r >= 1 && r <= 4, "all cores: %d replicas", r);
        /* auto through ee_train: below 64 samples a batch it is one network; a bad value is refused */
        ee_dataset *ds = tl_toy_data(8);
        ee_train_config cfg = {0};
        cfg.epochs = 1;
        cfg.batch = 4;
        cfg.optim = (ee_optim){EE_OPTIM_SGD, 0.01f, 0.9f, 0, 0, 0.9f, 0.999f, 1e-8f};
        cfg.sched = (ee_schedule){EE_SCHED_STEP, 0.01f, 0.1f, {0}, 0, 0, 0};
        cfg.replicas = EE_REPLICAS_AUTO;
        CHECK(ee_train(ctx, net, ds, NULL, NULL, &cfg, NULL, NULL) == EE_OK, "auto replicas: %s", ee_ctx_error(ctx));
        cfg.replicas = -2;
        CHECK(ee_train(ctx, net, ds, NULL, NULL, &cfg, NULL, NULL) == EE_ERR_ARG, "replicas -2 accepted");
        ee_dataset_free(ds);
    }
    ee_net_free(net);
    ee_net_free(wide);
    ee_ctx_free(ctx);
}

static void test_failure(void) {
    job proto = {.epochs = 1, .fail_rank = 1}, j[2];
    train(2, &proto, j);
    CHECK(j[1].status == EE_ERR_ARG && strstr(j[1].err, "label 200"), "the failing rank: %d %s", j[1].status, j[1].err);
    CHECK(j[0].status == EE_ERR_PEER && strstr(j[0].err, "rank 1"), "the other rank: %d %s", j[0].status, j[0].err);
    release(j, 2);
    /* a global batch smaller than the ranks */
    job p2 = {.epochs = 1, .fail_rank = -1}, k[3];
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = sdn(ctx);
    ee_dataset *ds = tl_toy_data(8);
    ee_parallel par = {0, 3, 0, shm_allreduce, shm_broadcast, NULL, 0, 0};
    ee_train_config cfg = {0};
    cfg.epochs = 1;
    cfg.batch = 2;
    cfg.optim = (ee_optim){EE_OPTIM_SGD, 0.05f, 0.9f, 0, 0, 0.9f, 0.999f, 1e-8f};
    cfg.sched = (ee_schedule){EE_SCHED_STEP, 0.05f, 0.1f, {0}, 0, 0, 0};
    cfg.parallel = &par;
    CHECK(ee_train(ctx, net, ds, NULL, NULL, &cfg, NULL, NULL) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "ranks"),
          "batch 2 on 3 ranks: %s", ee_ctx_error(ctx));
    ee_dataset_free(ds);
    ee_net_free(net);
    ee_ctx_free(ctx);
    (void)p2; (void)k;
}

static void test_resume(void) {
    size_t ns, np = sizes(&ns);
    char path[64];
    snprintf(path, sizeof path, "/tmp/ee_par_%d.ckpt", (int)getpid());
    job proto = {.epochs = 3, .sync_bn = 1, .fail_rank = -1}, full[2], a[2], b[1], c[3];
    train(2, &proto, full);
    /* 2 ranks stop after epoch 1; 1 process resumes to epoch 2, then 3 ranks finish */
    proto.ckpt = path;
    proto.stop = 1;
    train(2, &proto, a);
    proto.resume = 1;
    proto.stop = 2;
    train(0, &proto, b);
    proto.stop = 0;
    train(3, &proto, c);
    CHECK(a[0].status == EE_OK && b[0].status == EE_OK && c[0].status == EE_OK, "resume runs: %s / %s / %s", a[0].err,
          b[0].err, c[0].err);
    if (full[0].params && c[0].params) {
        double e = rel_diff(c[0].params, full[0].params, np), es = rel_diff(c[0].state, full[0].state, ns);
        CHECK(e < 2e-4 && es < 2e-4, "stopped on 2 ranks, resumed on 1 then 3: %g from an unbroken run (statistics %g)",
              e, es);
    }
    release(full, 2); release(a, 2); release(b, 1); release(c, 3);
    remove(path);
}

int main(void) {
    test_equivalence();
    test_replicas();
    test_auto_replicas();
    test_failure();
    test_resume();
    return tl_summary("test_parallel");
}
