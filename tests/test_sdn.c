/* test_sdn.c: Shallow-Deep Networks. IC positions of the four CIFAR backbones against the reference tables;
 * the ResNet-56 SDN (IC heads, every output, weighted-loss gradients) against PyTorch; IC-only training leaves
 * every CNN weight and BN statistic byte-identical; early-exit predictions agree between batch 1, batch 64 and
 * the simulated rule; q above 1 reproduces the plain network and q = 0 exits everything at IC 1; calibration
 * on hand-built outputs picks the known threshold. */
#include "internal.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the names of nodes[0..n), space-separated, into got (512 bytes: up to 16 names) */
static void position_names(const ee_net *net, const int *nodes, int n, char *got) {
    got[0] = 0;
    for (int k = 0; k < n; k++) {
        ee_node_info in;
        ee_net_node_info(net, nodes[k], &in);
        strcat(got, k ? " " : "");
        strcat(got, in.name);
    }
}

static void test_positions(void) {
    struct { const char *arch; const char *want; } t[] = {
        {"resnet56", "s1.b4.add s1.b8.add s2.b3.add s2.b7.add s3.b2.add s3.b6.add"},
        {"vgg16bn", "b2.pool b4.pool b6.relu b7.pool b9.relu b10.pool"},
        {"wrn32_4", "s1.b3.add s1.b5.add s2.b2.add s2.b4.add s3.b1.add s3.b3.add"},
        {"mobilenet", "b3.pw.relu b5.pw.relu b7.pw.relu b9.pw.relu b12.pw.relu"},
    };
    /* cumulative costs from sdn.md (reference profiler, CIFAR-10) for the ResNet-56 heads */
    ee_ctx *ctx = ee_ctx_new();
    for (int i = 0; i < 4; i++) {
        ee_net *net = NULL;
        CHECK_OK(ctx, ee_net_builtin(ctx, t[i].arch, 3, 32, 32, 10, &net));
        if (!net) continue;
        int nodes[16], n = ee_sdn_default_positions(net, nodes, 16);
        char got[512];
        position_names(net, nodes, n, got);
        CHECK(!strcmp(got, t[i].want), "%s IC positions: %s, expected %s", t[i].arch, got, t[i].want);
        ee_net_free(net);
    }
    /* the FLOPs rule reproduces the ResNet-56 table, and the Fashion-MNIST ResNet-20 costs of the PyTorch run */
    ee_net *net = NULL, *sdn = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &net));
    int nodes[16], n = ee_sdn_flops_positions(net, nodes, 16);
    CHECK_OK(ctx, ee_sdn_attach(ctx, net, nodes, n, &sdn));
    double frac[16], want[7] = {0.12, 0.35, 0.44, 0.56, 0.77, 0.89, 1.00};
    if (sdn) {
        ee_net_head_costs(sdn, frac, NULL);
        for (int k = 0; k < 7; k++) CHECK(fabs(frac[k] - want[k]) < 0.01, "ResNet-20 head %d cost %.3f, expected %.2f", k, frac[k], want[k]);
    }
    ee_net_free(net); ee_net_free(sdn);
    /* the text CNN on hashed words (a sum of vectors at its head: its bag of words, no residual block): the
     * FLOPs rule places ICs after its four blocks */
    net = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "textcnn", 2, 1, 512, 2, &net));
    if (net) {
        n = ee_sdn_default_positions(net, nodes, 16);
        char got[512];
        position_names(net, nodes, n, got);
        CHECK(!strcmp(got, "b1.relu b2.relu b3.relu b4.relu"), "textcnn IC positions: '%s'", got);
        /* its bag of words is a head before them: it stays the first exit, the ICs follow; ICs or a SideNet on the
         * result are refused (it has early exits past the first position now) */
        CHECK(ee_net_num_heads(net) == 2, "textcnn heads: %d (the bag of words and the final)", ee_net_num_heads(net));
        CHECK_OK(ctx, ee_sdn_attach(ctx, net, nodes, n, &sdn));
        if (sdn) {
            CHECK(ee_net_num_heads(sdn) == 6 && !strcmp(sdn->nodes[sdn->heads[0]].name, "bow") &&
                  !strcmp(sdn->nodes[sdn->heads[1]].name, "ic1.fc"), "textcnn SDN heads: %d, first '%s'",
                  ee_net_num_heads(sdn), sdn->nodes[sdn->heads[0]].name);
            ee_net *again = NULL;
            int at = ee_net_find_node(sdn, "b4.relu");
            CHECK(ee_sidenet_attach(ctx, sdn, at, 8, 1, &again) == EE_ERR_ARG &&
                  strstr(ee_ctx_error(ctx), "already has early exits"), "a SideNet on an SDN: %s", ee_ctx_error(ctx));
            ee_net_free(again);
            ee_net_free(sdn);
            sdn = NULL;
        }
        ee_net_free(net);
    }
    ee_ctx_free(ctx);
}

static void cmp(const char *what, const float *got, const float *want, size_t n, double atol, double rtol) {
    size_t worst = 0;
    double e = tl_close(got, want, n, atol, rtol, &worst);
    CHECK(e <= 1, "%s: off by %.3g x tolerance at %zu (eenn %.7g, PyTorch %.7g)", what, e, worst, got[worst], want[worst]);
    if (getenv("VERBOSE")) printf("  %-32s %.3g x tolerance\n", what, e);
}

static void test_torch_sdn(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_net *cnn = NULL, *net = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet56", 3, 32, 32, 10, &cnn));
    int nodes[16], nic = ee_sdn_default_positions(cnn, nodes, 16);
    CHECK_OK(ctx, ee_sdn_attach(ctx, cnn, nodes, nic, &net));
    ee_net_free(cnn);
    if (!net) { ee_ctx_free(ctx); return; }
    tl_fill_all(net);
    float *x = malloc(4 * 3072 * 4);
    tl_hash_input("input", x, 4, 3, 32, 32);
    uint8_t y[4] = {0, 1, 2, 3};
    ee_net_prepare(ctx, net, 4, 1);
    const char *F = "tests/fixtures/sdn.bin";
    char nm[64];
    size_t cnt;
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, 4, 0));
    for (int h = 0; h < 7; h++) {
        snprintf(nm, sizeof nm, "eval_out%d", h);
        float *w = tl_fixture(F, nm, &cnt);
        CHECK(w != NULL, "fixture %s", nm);
        if (w) cmp(nm, ee_net_head_output(net, h), w, 40, 1e-4, 1e-3);
        free(w);
    }
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, 4, 1));
    ee_net_zero_seeds(net);
    float wts[7] = {0.15f, 0.3f, 0.45f, 0.6f, 0.75f, 0.9f, 1.0f};
    for (int h = 0; h < 7; h++) {
        snprintf(nm, sizeof nm, "train_out%d", h);
        float *w = tl_fixture(F, nm, &cnt);
        if (w) cmp(nm, ee_net_head_output(net, h), w, 40, 1e-4, 1e-3);
        free(w);
        CHECK_OK(ctx, ee_net_loss(ctx, net, h, y, 4, wts[h], NULL, NULL));
    }
    CHECK_OK(ctx, ee_net_backward(ctx, net, 4));
    const char *tens[] = {"ic1.pool.alpha", "ic3.pool.alpha", "ic6.pool.alpha", "ic1.fc.weight", "ic4.fc.weight",
                          "ic6.fc.weight", "stem.conv.weight"};
    for (size_t i = 0; i < sizeof tens / sizeof *tens; i++) {
        snprintf(nm, sizeof nm, "grad.%s", tens[i]);
        float *w = tl_fixture(F, nm, &cnt);
        int t = ee_net_find_tensor(net, tens[i]);
        CHECK(w && t >= 0, "%s", nm);
        /* deep-path gradients are ill-conditioned at these weights: tolerance relative to the largest value */
        float mx = 0;
        for (size_t j = 0; w && j < cnt; j++) mx = fabsf(w[j]) > mx ? fabsf(w[j]) : mx;
        if (w && t >= 0) cmp(nm, ee_net_grads(net) + net->tens[t].off, w, cnt, 1e-5 + 5e-3 * mx, 2e-3);
        free(w);
    }
    free(x);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* a ResNet-20 SDN for 28x28 inputs; every step is checked, so a failure names itself instead of a NULL later */
static ee_net *small_sdn(ee_ctx *ctx) {
    ee_net *cnn = NULL, *sdn = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &cnn));
    if (!cnn) return NULL;
    CHECK_OK(ctx, ee_net_init(ctx, cnn));
    int nodes[16], n = ee_sdn_default_positions(cnn, nodes, 16);
    CHECK(n == 6, "resnet20: %d default IC positions, expected 6", n);
    CHECK_OK(ctx, ee_sdn_attach(ctx, cnn, nodes, n, &sdn));
    ee_net_free(cnn);
    return sdn;
}

/* IC-only and JEI-DNN training leave the CNN (weights and BN statistics) as it was and train the ICs; JEI stores
 * its gates as the model's policy, and a run stopped and resumed from its checkpoint ends where an unbroken one
 * does, gates included */
static void frozen_case(ee_train_mode mode) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_net *net = small_sdn(ctx);
    CHECK(net != NULL, "SDN");
    if (!net) return;
    ee_dataset *ds = tl_toy_data(256);
    /* non-trivial running statistics, to see that nothing moves them */
    for (size_t i = 0; i < ee_net_num_state(net); i++) ee_net_state(net)[i] = 0.5f + (float)(i % 7) * 0.1f;
    uint8_t mask[EE_MAX_NODES];
    ee_net_backbone_mask(net, mask);
    size_t np = ee_net_num_params(net), ns = ee_net_num_state(net);
    float *p0 = malloc(np * 4), *s0 = malloc(ns * 4);
    memcpy(p0, ee_net_params(net), np * 4);
    memcpy(s0, ee_net_state(net), ns * 4);
    ee_train_config cfg = {2, 32, {EE_OPTIM_ADAM, 1e-3f, 0, 1e-4f, 0, 0.9f, 0.999f, 1e-8f}, {EE_SCHED_STEP, 1e-3f, 0.1f, {1}, 1, 0, 0},
                           {4, 1}, NULL, 0, 0, mode, 0, 0, 0, 0, 0.5f, 1, 2, NULL, 0};
    if (mode == EE_MODE_JEI) cfg.epochs = 3;
    ee_net *twin = NULL; /* the same start, for the resumed run */
    CHECK_OK(ctx, ee_net_from_text(ctx, ee_net_arch(net), "twin", &twin));
    if (twin) {
        CHECK_OK(ctx, ee_net_init(ctx, twin));
        memcpy(ee_net_params(twin), ee_net_params(net), np * 4);
        memcpy(ee_net_state(twin), ee_net_state(net), ns * 4);
        ee_net_params_changed(twin);
    }
    uint64_t rng = ee_ctx_rng_state(ctx);
    CHECK_OK(ctx, ee_train(ctx, net, ds, ds, NULL, &cfg, NULL, NULL));
    int backbone_same = 1, ic_moved = 0;
    for (int i = 0; i < net->nnodes; i++) {
        const ee_node *nd = &net->nodes[i];
        int same = !memcmp(p0 + nd->p_off, net->params + nd->p_off, nd->p_len * 4) &&
                   !memcmp(s0 + nd->s_off, net->state + nd->s_off, nd->s_len * 4);
        if (mask[i]) backbone_same &= same;
        else ic_moved |= !same;
    }
    CHECK(backbone_same, "mode %d training changed a CNN weight or BN statistic", mode);
    CHECK(ic_moved, "mode %d training did not change the IC heads", mode);
    if (mode == EE_MODE_JEI && twin) {
        ee_exit_policy pol;
        CHECK_OK(ctx, ee_net_policy(ctx, net, &pol));
        float nz = 0;
        for (int l = 0; l < ee_net_num_heads(net) - 1; l++) nz += fabsf(pol.gate[l][0]) + fabsf(pol.gate[l][1]);
        CHECK(pol.kind == EE_SCORE_GATE && pol.gate_rule == EE_GATE_JEI && nz > 0, "JEI's gates are not the policy");
        /* stopped after 2 epochs, resumed from the checkpoint */
        char ck[] = "/tmp/eenn-jei-XXXXXX";
        int fd = mkstemp(ck);
        if (fd >= 0) close(fd);
        ee_ctx_set_rng_state(ctx, rng);
        cfg.checkpoint = ck;
        cfg.stop_epoch = 2;
        CHECK_OK(ctx, ee_train(ctx, twin, ds, ds, NULL, &cfg, NULL, NULL));
        cfg.stop_epoch = 0;
        cfg.resume = 1;
        CHECK_OK(ctx, ee_train(ctx, twin, ds, ds, NULL, &cfg, NULL, NULL));
        ee_exit_policy pt;
        CHECK_OK(ctx, ee_net_policy(ctx, twin, &pt));
        CHECK(!memcmp(pt.gate, pol.gate, sizeof pol.gate) && !memcmp(ee_net_params(twin), ee_net_params(net), np * 4),
              "JEI resumed from a checkpoint differs from the unbroken run");
        unlink(ck);
    }
    ee_net_free(twin);
    free(p0); free(s0);
    ee_dataset_free(ds);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

static void test_ic_only_frozen(void) {
    frozen_case(EE_MODE_IC_ONLY);
    frozen_case(EE_MODE_JEI);
}

/* the small SDN after a little SDN training on ds, so that confidences spread over the exits */
static ee_net *trained_sdn(ee_ctx *ctx, const ee_dataset *ds) {
    ee_net *net = small_sdn(ctx);
    if (!net) return NULL;
    ee_train_config cfg = {2, 32, {EE_OPTIM_SGD, 0.05f, 0.9f, 1e-4f, 0, 0, 0, 0}, {EE_SCHED_STEP, 0.05f, 0.1f, {0}, 0, 0, 0},
                           {0, 0}, NULL, 0, 0, EE_MODE_SDN, 0, 0, 0, 0, 0, 0, 0, NULL, 0};
    CHECK_OK(ctx, ee_train(ctx, net, ds, NULL, NULL, &cfg, NULL, NULL));
    return net;
}

static void test_exits(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_dataset *ds = tl_toy_data(64);
    ee_net *net = trained_sdn(ctx, ds);
    if (!net) return;
    ee_outputs *o = NULL;
    CHECK_OK(ctx, ee_collect_outputs(ctx, net, ds, 64, 0, &o));
    if (!o) return;
    int H = o->heads, n = 64;
    /* q: the median confidence of IC 2, so that samples leave at several heads */
    float c2[64];
    for (int i = 0; i < n; i++) c2[i] = o->conf[i * H + 1];
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (c2[j] < c2[i]) { float t = c2[i]; c2[i] = c2[j]; c2[j] = t; }
    float q = 0.5f * (c2[n / 2 - 1] + c2[n / 2]); /* between two samples, not on one */
    double cost[16];
    ee_net_head_costs(net, cost, NULL);
    ee_exit_stats st;
    ee_exit_simulate(o, cost, q, 0, &st);
    int used = 0;
    for (int h = 0; h < H; h++) used += st.exits[h] > 0;
    CHECK(used >= 2, "the test threshold uses only %d exits", used);
    float *x = malloc((size_t)n * 784 * 4);
    int idx[64];
    for (int i = 0; i < n; i++) idx[i] = i;
    ee_dataset_batch(ctx, ds, idx, n, NULL, x, NULL);
    uint8_t pb[64], eb[64], p1[64], e1[64];
    float cb[64], c1[64];
    ee_net_prepare(ctx, net, n, 0);
    CHECK_OK(ctx, ee_infer_exits(ctx, net, x, n, q, 0, pb, cb, eb));
    for (int i = 0; i < n; i++) CHECK_OK(ctx, ee_infer_exits(ctx, net, x + (size_t)i * 784, 1, q, 0, p1 + i, c1 + i, e1 + i));
    int agree = 1, sim = 1;
    for (int i = 0; i < n; i++) {
        agree &= pb[i] == p1[i] && eb[i] == e1[i] && fabsf(cb[i] - c1[i]) < 1e-4f;
        if (getenv("VERBOSE") && (pb[i] != p1[i] || eb[i] != e1[i])) printf("  sample %d: batch %d/%d conf %.6f, single %d/%d conf %.6f (q %.6f)\n", i, pb[i], eb[i], cb[i], p1[i], e1[i], c1[i], q);
        int e = H - 1;
        for (int h = 0; h < H - 1; h++) if (o->conf[i * H + h] >= q) { e = h; break; }
        sim &= eb[i] == e && pb[i] == o->pred[i * H + e];
    }
    CHECK(agree, "early exits at batch 1 and batch 64 disagree");
    CHECK(sim, "real early exits disagree with the simulated rule");
    /* the same weights in a net prepared for inference only (activation buffers shared by lifetime), run in
     * chunks of 16 so that chunking, stopping at each IC and compaction all meet the shared buffers */
    ee_net *inf = small_sdn(ctx);
    if (inf) {
        memcpy(ee_net_params(inf), ee_net_params(net), ee_net_num_params(net) * sizeof(float));
        memcpy(ee_net_state(inf), ee_net_state(net), ee_net_num_state(net) * sizeof(float));
        ee_net_params_changed(inf);
        CHECK_OK(ctx, ee_net_prepare(ctx, inf, n, 0));
        ee_net_set_eval_chunk(inf, 16);
        CHECK(ee_net_activation_bytes(inf) * 4 < ee_net_activation_bytes(net),
              "inference-only activations %zu bytes, not far below training's %zu", ee_net_activation_bytes(inf),
              ee_net_activation_bytes(net));
        uint8_t pi[64], ei[64];
        float ci[64];
        CHECK_OK(ctx, ee_infer_exits(ctx, inf, x, n, q, 0, pi, ci, ei));
        int same = 1;
        for (int i = 0; i < n; i++) same &= pi[i] == pb[i] && ei[i] == eb[i] && fabsf(ci[i] - cb[i]) < 1e-5f;
        CHECK(same, "early exits of the inference-only net differ from the training-prepared one");
        CHECK_OK(ctx, ee_net_forward(ctx, inf, x, n, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
        for (int h = 0; h < H; h++)
            CHECK(tl_close(ee_net_head_output(inf, h), ee_net_head_output(net, h), (size_t)n * 10, 1e-5, 1e-5, NULL) <= 1,
                  "head %d of the inference-only net differs", h);
        ee_net_free(inf);
    }
    /* q above 1: the plain network's answers; q = 0: everything leaves at IC 1 */
    CHECK_OK(ctx, ee_infer_exits(ctx, net, x, n, 1.5f, 0, pb, cb, eb));
    int plain = 1, first = 1;
    for (int i = 0; i < n; i++) plain &= eb[i] == H - 1 && pb[i] == o->pred[i * H + H - 1];
    CHECK_OK(ctx, ee_infer_exits(ctx, net, x, n, 0.0f, 0, pb, cb, eb));
    for (int i = 0; i < n; i++) first &= eb[i] == 0 && pb[i] == o->pred[i * H];
    CHECK(plain, "q > 1 does not reproduce the plain network");
    CHECK(first, "q = 0 does not exit everything at IC 1");
    /* fallback: with q > 1 the answer is the most confident head */
    CHECK_OK(ctx, ee_infer_exits(ctx, net, x, n, 1.5f, 1, pb, cb, eb));
    int fb = 1;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int h = 1; h < H; h++) if (o->conf[i * H + h] > o->conf[i * H + best]) best = h;
        fb &= pb[i] == o->pred[i * H + best];
    }
    CHECK(fb, "the most-confident fallback picks another head");
    /* the CNN inside the SDN answers exactly as the SDN's final head */
    ee_net *cnn = NULL;
    CHECK_OK(ctx, ee_sdn_strip(ctx, net, &cnn));
    if (cnn) {
        CHECK(ee_net_num_heads(cnn) == 1 && ee_net_num_params(cnn) < ee_net_num_params(net), "stripped CNN shape");
        ee_net_prepare(ctx, cnn, n, 0);
        CHECK_OK(ctx, ee_net_forward(ctx, cnn, x, n, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
        CHECK(tl_close(ee_net_head_output(cnn, 0), ee_net_head_output(net, H - 1), (size_t)n * 10, 1e-5, 1e-5, NULL) <= 1,
              "the stripped CNN differs from the SDN's final head");
        ee_net_free(cnn);
    }
    free(x);
    ee_outputs_free(o);
    ee_dataset_free(ds);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* hand-built outputs: 2 ICs + final, costs 0.2, 0.5, 1; (confidence, right/wrong) per sample:
 *   s0: IC1 .95 R, IC2 .99 R, final R      s1: IC1 .6 W, IC2 .7 R, final R      s2: IC1 .9 R, IC2 .8 R, final R
 *   s3: IC1 .3 W,  IC2 .97 W, final R      s4: IC1 .2 W, IC2 .4 R, final W      final accuracy 4/5
 * No drop allowed: any q <= .97 lets s3 leave wrongly, so q in (.97, .99]: s0 at IC2, the rest final,
 * accuracy 4/5, cost (0.5 + 4) / 5 = 0.9. Drop 0.2 allowed: q in (.2, .3]: s0 s1 s2 s3 at IC1, s4 at IC2,
 * accuracy 3/5, cost (4 x 0.2 + 0.5) / 5 = 0.26, the cheapest with at least 3/5 (q <= .2 gives 2/5). */
static void test_calibration(void) {
    ee_ctx *ctx = ee_ctx_new();
    uint8_t pred[15] = {1, 1, 1, 9, 2, 2, 3, 3, 3, 0, 8, 4, 0, 5, 7};
    float conf[15] = {.95f, .99f, .5f, .6f, .7f, .5f, .9f, .8f, .5f, .3f, .97f, .5f, .2f, .4f, .5f};
    uint8_t label[5] = {1, 2, 3, 4, 5};
    ee_outputs o = {.n = 5, .heads = 3, .classes = 10, .pred = pred, .conf = conf, .label = label};
    double cost[3] = {0.2, 0.5, 1.0};
    ee_exit_stats st;
    CHECK_OK(ctx, ee_calibrate(ctx, &o, cost, 0.0, 0, &st));
    CHECK(fabs(st.acc - 0.8) < 1e-9 && fabs(st.cost - 0.9) < 1e-9 && st.q > 0.97f && st.q <= 0.99f,
          "calibration (no drop): q %.3f acc %.2f cost %.3f", st.q, st.acc, st.cost);
    CHECK_OK(ctx, ee_calibrate(ctx, &o, cost, 0.2, 0, &st));
    CHECK(fabs(st.acc - 0.6) < 1e-9 && fabs(st.cost - 0.26) < 1e-9 && st.q > 0.2f && st.q <= 0.3f,
          "calibration (0.2 drop): q %.3f acc %.2f cost %.3f", st.q, st.acc, st.cost);
    CHECK(ee_calibrate(ctx, &o, cost, 2.0, 0, &st) == EE_ERR_ARG, "a drop above 1 accepted");
    ee_ctx_free(ctx);
}

/* the score kinds on hand-computed softmaxes */
static void test_scores(void) {
    float uniform[4] = {0, 0, 0, 0}, z[3];
    CHECK(fabsf(ee_score_logits(EE_SCORE_ENTROPY, uniform, 4, 1, NULL)) < 1e-6f, "entropy score of a uniform softmax");
    CHECK(fabsf(ee_score_logits(EE_SCORE_MAXPROB, uniform, 4, 1, NULL) - 0.25f) < 1e-6f, "maxprob of a uniform softmax");
    CHECK(fabsf(ee_score_logits(EE_SCORE_MARGIN, uniform, 4, 1, NULL)) < 1e-6f, "margin of a uniform softmax");
    /* p = (0.5, 0.3, 0.2): logits log p */
    z[0] = logf(0.5f); z[1] = logf(0.3f); z[2] = logf(0.2f);
    uint8_t top = 9;
    CHECK(fabsf(ee_score_logits(EE_SCORE_MARGIN, z, 3, 1, &top) - 0.2f) < 1e-6f && top == 0, "margin of (0.5, 0.3, 0.2)");
    double h = -(0.5 * log(0.5) + 0.3 * log(0.3) + 0.2 * log(0.2)) / log(3.0);
    CHECK(fabsf(ee_score_logits(EE_SCORE_ENTROPY, z, 3, 1, NULL) - (float)(1 - h)) < 1e-6f, "entropy of (0.5, 0.3, 0.2)");
    /* temperature 2: p ~ sqrt(p) */
    double s2 = sqrt(0.5) + sqrt(0.3) + sqrt(0.2);
    CHECK(fabsf(ee_score_logits(EE_SCORE_MAXPROB, z, 3, 2, NULL) - (float)(sqrt(0.5) / s2)) < 1e-6f, "maxprob at T = 2");
    CHECK(ee_score_find("entropy") == EE_SCORE_ENTROPY && ee_score_find("nope") < 0 && ee_score_count() == 5 &&
              ee_score_find("gate") == EE_SCORE_GATE,
          "score kind table");
}

/* every kind, shared and per-exit thresholds, with and without temperatures: real exits at batch 1 and 64 give
 * the simulation's exits and predictions; deadlines and batch budgets hold; calibration keeps its promises */
static void test_policies(void) {
    ee_ctx *ctx = ee_ctx_new();
    int n = 64;
    ee_dataset *ds = tl_toy_data(n);
    ee_net *net = trained_sdn(ctx, ds);
    ee_outputs *o = NULL;
    if (net) CHECK_OK(ctx, ee_collect_outputs(ctx, net, ds, 64, 0, &o));
    if (!o) return;
    int H = o->heads;
    double cost[EE_MAX_HEADS], flops[EE_MAX_HEADS];
    ee_net_head_costs(net, cost, flops);
    float *x = malloc((size_t)n * 784 * 4);
    int idx[64];
    for (int i = 0; i < n; i++) idx[i] = i;
    ee_dataset_batch(ctx, ds, idx, n, NULL, x, NULL);
    CHECK_OK(ctx, ee_net_prepare(ctx, net, n, 0));
    float T[EE_MAX_HEADS];
    CHECK_OK(ctx, ee_fit_temperatures(ctx, o, T));
    for (int kind = 0; kind < EE_SCORE_CONFIDENCE; kind++) /* the kinds on the softmax */
        for (int variant = 0; variant < 3; variant++) {
            /* 0: shared threshold at the median score of IC 2; 1: per-exit thresholds at each IC's median;
             * 2: per-exit with the fitted temperatures */
            ee_exit_policy p;
            ee_policy_shared(&p, kind, H, 0, variant == 1);
            if (variant == 2) memcpy(p.temperature, T, sizeof T);
            for (int h = 0; h < H - 1; h++) {
                float sc[64];
                for (int i = 0; i < n; i++)
                    sc[i] = ee_score_logits(kind, o->logits + ((size_t)i * H + (variant ? h : 1)) * 10, 10,
                                            p.temperature[variant ? h : 1], NULL);
                for (int i = 0; i < n; i++)
                    for (int j = i + 1; j < n; j++)
                        if (sc[j] < sc[i]) { float t = sc[i]; sc[i] = sc[j]; sc[j] = t; }
                p.threshold[h] = 0.5f * (sc[n / 2 - 1] + sc[n / 2]);
            }
            uint8_t se[64], sp[64], pb[64], eb[64], p1[64], e1[64];
            float cb[64], c1[64];
            CHECK_OK(ctx, ee_policy_assign(ctx, o, &p, se, sp));
            CHECK_OK(ctx, ee_infer_policy(ctx, net, x, n, &p, NULL, pb, cb, eb, NULL));
            for (int i = 0; i < n; i++)
                CHECK_OK(ctx, ee_infer_policy(ctx, net, x + (size_t)i * 784, 1, &p, NULL, p1 + i, c1 + i, e1 + i, NULL));
            int same64 = 1, same1 = 1, used = 0, seen[EE_MAX_HEADS] = {0};
            for (int i = 0; i < n; i++) {
                same64 &= pb[i] == sp[i] && eb[i] == se[i];
                same1 &= p1[i] == sp[i] && e1[i] == se[i];
                used += !seen[se[i]]++;
            }
            CHECK(same64, "%s variant %d: real exits at batch 64 differ from the simulation", ee_score_name(kind), variant);
            /* the batch on this net alone, and split between 3 inference workers (ee_net_set_eval_workers) */
            for (int w = 1; w <= 3; w += 2) {
                ee_net_set_eval_workers(net, w);
                CHECK_OK(ctx, ee_infer_policy(ctx, net, x, n, &p, NULL, pb, cb, eb, NULL));
                int same = 1;
                for (int i = 0; i < n; i++) same &= pb[i] == sp[i] && eb[i] == se[i];
                CHECK(same, "%s variant %d: real exits at batch 64 with %d worker(s) differ from the simulation",
                      ee_score_name(kind), variant, w);
            }
            ee_net_set_eval_workers(net, 0);
            CHECK(same1, "%s variant %d: real exits at batch 1 differ from the simulation", ee_score_name(kind), variant);
            CHECK(used >= 2, "%s variant %d: only %d exits used", ee_score_name(kind), variant, used);
            /* the text form round-trips exactly */
            char text[2048];
            ee_exit_policy back;
            CHECK_OK(ctx, ee_policy_to_text(ctx, &p, text, sizeof text));
            CHECK_OK(ctx, ee_policy_from_text(ctx, text, &back));
            CHECK(back.kind == p.kind && back.fallback == p.fallback &&
                      !memcmp(back.threshold, p.threshold, sizeof(float) * H) &&
                      !memcmp(back.temperature, p.temperature, sizeof(float) * H),
                  "%s variant %d: policy text does not round-trip: %s", ee_score_name(kind), variant, text);
            /* anytime: a deadline between the exits; no sample pays more than it */
            ee_infer_limits lim = {flops[2] + 1, 0, 0};
            uint8_t why[64];
            CHECK_OK(ctx, ee_infer_policy(ctx, net, x, n, &p, &lim, pb, cb, eb, why));
            int within = 1, deadline = 0;
            for (int i = 0; i < n; i++) {
                within &= flops[eb[i]] <= lim.deadline_flops;
                deadline += why[i] == EE_EXIT_DEADLINE;
            }
            CHECK(within, "%s: a sample's FLOPs exceed its deadline", ee_score_name(kind));
            CHECK(deadline > 0, "%s: no sample stopped at the deadline", ee_score_name(kind));
            /* a batch budget of 40% of the dense cost: the batch's FLOPs stay within it */
            ee_infer_limits blim = {0, 0, 0.4 * flops[H - 1] * n};
            CHECK_OK(ctx, ee_infer_policy(ctx, net, x, n, &p, &blim, pb, cb, eb, why));
            double total = 0;
            for (int i = 0; i < n; i++) total += flops[eb[i]];
            CHECK(total <= blim.batch_flops * (1 + 1e-9), "%s: the batch spent %.0f FLOPs of a %.0f budget",
                  ee_score_name(kind), total, blim.batch_flops);
        }
    /* a deadline below the first exit cannot be met: a clear error */
    ee_exit_policy p0;
    ee_policy_shared(&p0, EE_SCORE_MAXPROB, H, 0.5f, 0);
    ee_infer_limits tiny = {flops[0] / 2, 0, 0};
    uint8_t a1[64], a2[64];
    float a3[64];
    CHECK(ee_infer_policy(ctx, net, x, n, &p0, &tiny, a1, a3, a2, NULL) == EE_ERR_ARG &&
              strstr(ee_ctx_error(ctx), "deadline"), "a deadline below the first exit: %s", ee_ctx_error(ctx));
    /* temperatures: a local minimum of the validation NLL (each head: T beats T x 1.1 and T / 1.1) */
    for (int h = 0; h < H; h++) {
        double nll[3];
        for (int v = 0; v < 3; v++) {
            double t = T[h] * (v == 1 ? 1.1 : v == 2 ? 1 / 1.1 : 1), tot = 0;
            for (int i = 0; i < n; i++) {
                const float *z = o->logits + ((size_t)i * H + h) * 10;
                double mx = z[0], sum = 0;
                for (int j = 1; j < 10; j++) mx = z[j] > mx ? z[j] : mx;
                for (int j = 0; j < 10; j++) sum += exp((z[j] - mx) / t);
                tot += log(sum) - (z[o->label[i]] - mx) / t;
            }
            nll[v] = tot;
        }
        CHECK(nll[0] <= nll[1] + 1e-9 && nll[0] <= nll[2] + 1e-9, "head %d: T = %g is not a minimum of the NLL", h, T[h]);
    }
    /* calibration: per-exit never worse than shared on the calibration split; a budget is kept there */
    for (int kind = 0; kind < EE_SCORE_CONFIDENCE; kind++) {
        ee_calibration c = {kind, EE_TARGET_DROP, 0.05, 0, 0, 0, ""};
        ee_exit_policy ps, pe;
        ee_exit_stats ss, se;
        CHECK_OK(ctx, ee_calibrate_policy(ctx, o, cost, &c, &ps, &ss));
        c.per_exit = 1;
        CHECK_OK(ctx, ee_calibrate_policy(ctx, o, cost, &c, &pe, &se));
        double acc[EE_MAX_HEADS];
        ee_head_accuracy(o, acc);
        CHECK(se.cost <= ss.cost + 1e-12 && se.acc >= acc[H - 1] - 0.05 - 1e-12,
              "%s: per-exit cost %.4f (acc %.4f) against shared %.4f", ee_score_name(kind), se.cost, se.acc, ss.cost);
        ee_exit_stats check_st;
        CHECK_OK(ctx, ee_policy_simulate(ctx, o, cost, &pe, &check_st));
        CHECK(fabs(check_st.cost - se.cost) < 1e-12 && fabs(check_st.acc - se.acc) < 1e-12,
              "%s: calibration's numbers are not the policy's", ee_score_name(kind));
        ee_calibration b = {kind, EE_TARGET_BUDGET, 0.5, 1, 1, 0, ""};
        CHECK_OK(ctx, ee_calibrate_policy(ctx, o, cost, &b, &pe, &se));
        CHECK(se.cost <= 0.5 + 1e-12, "%s: budget 50%%, cost %.4f", ee_score_name(kind), se.cost);
        CHECK(pe.per_exit && pe.temperature_fitted && pe.target == EE_TARGET_BUDGET && pe.samples == n,
              "%s: calibration record", ee_score_name(kind));
    }
    /* the legacy single threshold: calibration and inference agree with the policy calls */
    ee_exit_stats lg, pol;
    CHECK_OK(ctx, ee_calibrate(ctx, o, cost, 0.05, 0, &lg));
    ee_calibration c = {EE_SCORE_MAXPROB, EE_TARGET_DROP, 0.05, 0, 0, 0, ""};
    ee_exit_policy pl;
    CHECK_OK(ctx, ee_calibrate_policy(ctx, o, cost, &c, &pl, &pol));
    CHECK(lg.q == pol.q && lg.cost == pol.cost, "ee_calibrate q %g against the policy's %g", lg.q, pol.q);
    /* in the model file: stored by the library, replacing the single-threshold keys of older files */
    char path[256];
    snprintf(path, sizeof path, "/tmp/eenn-policy-%ld.eenn", (long)getpid());
    ee_net *fresh = trained_sdn(ctx, ds);
    if (fresh) {
        CHECK_OK(ctx, ee_net_set_meta(ctx, fresh, "exit.q", "0.7"));
        CHECK_OK(ctx, ee_net_set_meta(ctx, fresh, "exit.fallback", "1"));
        ee_exit_policy legacy;
        CHECK_OK(ctx, ee_net_policy(ctx, fresh, &legacy));
        CHECK(legacy.kind == EE_SCORE_MAXPROB && legacy.threshold[0] == 0.7f && legacy.threshold[H - 2] == 0.7f &&
                  legacy.fallback == 1 && legacy.temperature[3] == 1, "exit.q read as a shared max-softmax policy");
        ee_calibration b = {EE_SCORE_ENTROPY, EE_TARGET_BUDGET, 0.5, 1, 1, 0, ""};
        ee_exit_policy pe;
        CHECK_OK(ctx, ee_calibrate_policy(ctx, o, cost, &b, &pe, NULL));
        CHECK_OK(ctx, ee_net_set_policy(ctx, fresh, &pe));
        CHECK(!ee_net_meta(fresh, "exit.q") && !ee_net_meta(fresh, "exit.fallback"), "exit.q left beside the policy");
        CHECK_OK(ctx, ee_net_save(ctx, fresh, NULL, 0, path));
        ee_net *loaded = NULL;
        CHECK_OK(ctx, ee_net_load(ctx, path, &loaded));
        ee_exit_policy back;
        if (loaded) CHECK_OK(ctx, ee_net_policy(ctx, loaded, &back));
        CHECK(loaded && back.kind == EE_SCORE_ENTROPY && !memcmp(back.threshold, pe.threshold, sizeof(float) * H) &&
                  !memcmp(back.temperature, pe.temperature, sizeof(float) * H) && back.per_exit && back.samples == n,
              "the policy does not survive the model file");
        ee_net_free(loaded);
        ee_net_free(fresh);
        remove(path);
    }
    free(x);
    ee_outputs_free(o);
    ee_dataset_free(ds);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* risk control: the Hoeffding-Bentkus bound against values computed independently (Python, from the formula);
 * CRC and naive on a problem whose risk curve is known; the label-free risk equals the gap risk when the labels
 * are the final output's answers */
static void test_risk_control(void) {
    CHECK(fabs(ee_hb_pvalue(0.1, 10, 0.3) - 0.31247913942930333) < 1e-9, "HB p-value (0.1, 10, 0.3): %.12g",
          ee_hb_pvalue(0.1, 10, 0.3));
    CHECK(fabs(ee_hb_pvalue(0.02, 1000, 0.05) / 2.0818902932567515e-06 - 1) < 1e-6, "HB p-value (0.02, 1000, 0.05): %.12g",
          ee_hb_pvalue(0.02, 1000, 0.05));
    CHECK(fabs(ee_hb_pvalue(0, 100, 0.05) - 0.005920529220334054) < 1e-9, "HB p-value (0, 100, 0.05)");
    CHECK(fabs(ee_hb_pvalue(0.5, 20, 0.6) - 0.6648326359915008) < 1e-9, "HB p-value (0.5, 20, 0.6)");
    double u = ee_hb_ucb(0.1, 10, 0.31247913942930333);
    CHECK(fabs(u - 0.3) < 1e-6, "HB upper bound at the p-value's own level: %.9g, expected 0.3", u);
    /* 100 samples, 2 classes, label 0; IC1's max softmax is 0.5 + (i + 0.5)/200 and it is wrong for the 20 least
     * confident; the final head is always right. The gap risk at lambda = 0.60 - 0.01 m is 0.02 m (m <= 10). */
    enum { N = 100 };
    float logits[N * 2 * 2], conf[N * 2];
    uint8_t pred[N * 2], label[N];
    for (int i = 0; i < N; i++) {
        double s = 0.5 + (i + 0.5) / 200, a = log(s / (1 - s));
        float *ic = logits + (size_t)i * 4, *fin = ic + 2;
        ic[0] = i < 20 ? 0 : (float)a; ic[1] = i < 20 ? (float)a : 0;
        fin[0] = 5; fin[1] = 0;
        label[i] = 0;
        pred[i * 2] = i < 20; pred[i * 2 + 1] = 0;
        conf[i * 2] = (float)s; conf[i * 2 + 1] = (float)(1 / (1 + exp(-5.0)));
    }
    ee_outputs o = {N, 2, 2, pred, conf, label, NULL, logits, NULL};
    static int8_t loss[N * EE_RISK_GRID], loss_c[N * EE_RISK_GRID];
    ee_ctx *ctx = ee_ctx_new();
    CHECK_OK(ctx, ee_risk_losses(ctx, &o, EE_SCORE_MAXPROB, EE_RISK_GAP, loss, NULL));
    double r[EE_RISK_GRID], c[EE_RISK_GRID];
    ee_risk_means(loss, NULL, N, r, c);
    int curve = 1;
    for (int m = 0; m <= 10; m++) curve &= fabs(r[40 + m] - 0.02 * m) < 1e-12;
    CHECK(curve && r[0] == 0 && fabs(r[100] - 0.2) < 1e-12, "gap risk curve: %g %g %g", r[40], r[41], r[42]);
    /* epsilon 4.5%: naive takes R < 0.045 (m = 2, lambda 0.58); CRC R <= (101 x 0.045 - 1)/100 = 0.03545 (m = 1) */
    ee_risk_calibration rc = {EE_SCORE_MAXPROB, EE_RISK_GAP, EE_RC_NAIVE, 0.045, 0.1, 0};
    CHECK(ee_risk_select(&rc, N, r, c) == 42, "naive picks index %d, expected 42", ee_risk_select(&rc, N, r, c));
    rc.method = EE_RC_CRC;
    CHECK(ee_risk_select(&rc, N, r, c) == 41, "CRC picks index %d, expected 41", ee_risk_select(&rc, N, r, c));
    /* LTT at epsilon 0.25, delta 0.1: the p-values HB(0.02 m, 100, 0.25) stay below 0.1 up to m = 8 (0.057) and
     * pass it at m = 9 (0.171): the last rejected index is 48. UCB on the consistency risk (the same losses here)
     * stops at the same place. On the gap risk UCB bounds (loss + 1)/2 against (0.25 + 1)/2: HB((1 + 0.02 m)/2, 100,
     * 0.625) is 0.020, 0.034, 0.056, 0.089 for m = 0..3 and 0.137 at m = 4: index 43 */
    rc.method = EE_RC_LTT; rc.epsilon = 0.25;
    CHECK(ee_risk_select(&rc, N, r, c) == 48, "LTT picks index %d, expected 48", ee_risk_select(&rc, N, r, c));
    rc.method = EE_RC_UCB; rc.risk = EE_RISK_CONSISTENCY;
    CHECK(ee_risk_select(&rc, N, r, c) == 48, "UCB (consistency) picks index %d, expected 48", ee_risk_select(&rc, N, r, c));
    rc.risk = EE_RISK_GAP;
    CHECK(ee_risk_select(&rc, N, r, c) == 43, "UCB (gap) picks index %d, expected 43", ee_risk_select(&rc, N, r, c));
    /* with a policy: the chosen threshold exits exactly the samples above lambda = 0.59 */
    ee_exit_policy p;
    ee_exit_stats st;
    double cost[2] = {0.3, 1.0};
    rc.method = EE_RC_CRC; rc.epsilon = 0.045;
    CHECK_OK(ctx, ee_calibrate_risk(ctx, &o, cost, &rc, &p, &st));
    CHECK(st.exits[0] == 82 && p.rc_method == EE_RC_CRC && p.epsilon == 0.045 && fabs(p.empirical_risk - 0.02) < 1e-12,
          "CRC policy: %d early exits (expected 82: the samples above 0.59), risk %g", st.exits[0], p.empirical_risk);
    char text[2048];
    ee_exit_policy back;
    CHECK_OK(ctx, ee_policy_to_text(ctx, &p, text, sizeof text));
    CHECK_OK(ctx, ee_policy_from_text(ctx, text, &back));
    CHECK(back.rc_method == EE_RC_CRC && back.risk == EE_RISK_GAP && back.epsilon == 0.045 &&
              back.threshold[0] == p.threshold[0], "the guarantee does not round-trip: %s", text);
    /* label-free: with the final's answers as labels, the gap risk is the consistency risk */
    for (int i = 0; i < N; i++) label[i] = pred[i * 2 + 1];
    CHECK_OK(ctx, ee_risk_losses(ctx, &o, EE_SCORE_MAXPROB, EE_RISK_GAP, loss, NULL));
    CHECK_OK(ctx, ee_risk_losses(ctx, &o, EE_SCORE_MAXPROB, EE_RISK_CONSISTENCY, loss_c, NULL));
    CHECK(!memcmp(loss, loss_c, sizeof loss), "gap losses with the final's answers as labels differ from consistency");
    ee_ctx_free(ctx);
}

/* ---------------------------------------------------------------- EENets */
/* placement, costs, the arch text's confidence= key, and real exits on the learned confidence against the
 * simulation at batch 1 and 64 */
/* outputs built by hand: n samples, H heads, 2 classes, label 0; logits[i][h] = (a, b) */
static ee_outputs *hand_outputs(int n, int H, const float (*lg)[2], ee_outputs *o) {
    memset(o, 0, sizeof *o);
    o->n = n; o->heads = H; o->classes = 2;
    o->pred = calloc((size_t)n * H, 1);
    o->conf = calloc((size_t)n * H, sizeof(float));
    o->label = calloc((size_t)n, 1);
    o->logits = calloc((size_t)n * H * 2, sizeof(float));
    for (int i = 0; i < n * H; i++) {
        o->logits[i * 2] = lg[i][0];
        o->logits[i * 2 + 1] = lg[i][1];
        o->pred[i] = lg[i][1] > lg[i][0];
        double e = exp(-fabs((double)lg[i][0] - lg[i][1]));
        o->conf[i] = (float)(1 / (1 + e));
    }
    return o;
}
static void hand_free(ee_outputs *o) { free(o->pred); free(o->conf); free(o->label); free(o->logits); }

/* Bolukbasi et al.'s learned policy: the backward-induction labels and weights on a hand-built three-exit case
 * (four kinds of sample, each five times), a synthetic problem whose optimal policy is known, JEI-DNN's rule by
 * hand, the text form, and real inference against the simulation */
static void test_learned_policy(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    /* R: right and sure, W: wrong and sure, U/V: unsure (and wrong, since the label is 0) */
    const float R[2] = {5, -5}, W[2] = {-5, 5}, U[2] = {-0.1f, 0.1f}, V[2] = {-0.2f, 0.2f};
    /*        IC1 IC2 final: A right everywhere; B only the final; C from IC2 on; D sure at IC1, wrong after */
    const float *kinds[4][3] = {{R, R, R}, {U, U, R}, {V, R, R}, {R, W, W}};
    float lg[20 * 3][2];
    for (int i = 0; i < 20; i++)
        for (int h = 0; h < 3; h++) memcpy(lg[i * 3 + h], kinds[i % 4][h], sizeof lg[0]);
    ee_outputs o;
    hand_outputs(20, 3, (const float (*)[2])lg, &o);
    const double cost[3] = {0.2, 0.5, 1.0}, lam = 0.1;
    ee_exit_policy p;
    ee_exit_stats st;
    uint8_t lab[2 * 20];
    double wt[2 * 20];
    CHECK_OK(ctx, ee_bolukbasi_fit(ctx, &o, cost, lam, NULL, &p, &st, lab, wt));
    /* by hand, IC2 (cost 0.5) against the final (1.0, lambda 0.1): stop = err + 0.05, go on = err_final + 0.1
     *   A: 0.05 vs 0.1 stop (0.05)  B: 1.05 vs 0.1 go (0.95)  C: 0.05 vs 0.1 stop (0.05)  D: 1.05 vs 1.1 stop (0.05)
     * IC2's gate reproduces these (A, C, D sure, B unsure), so from IC1 (0.2) going on costs A 0.05, B 0.1, C 0.05,
     * D 1.05 and stopping err + 0.02:
     *   A: 0.02 vs 0.05 stop (0.03)  B: 1.02 vs 0.1 go (0.92)  C: 1.02 vs 0.05 go (0.97)  D: 0.02 vs 1.05 stop (1.03) */
    static const int want_lab[2][4] = {{1, 0, 0, 1}, {1, 0, 1, 1}};
    static const double want_wt[2][4] = {{0.03, 0.92, 0.97, 1.03}, {0.05, 0.95, 0.05, 0.05}};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 20; i++)
            CHECK(lab[k * 20 + i] == want_lab[k][i % 4] && fabs(wt[k * 20 + i] - want_wt[k][i % 4]) < 1e-9,
                  "gate %d sample %d: label %d weight %.4f, by hand %d %.4f", k, i, lab[k * 20 + i], wt[k * 20 + i],
                  want_lab[k][i % 4], want_wt[k][i % 4]);
    uint8_t ex[20];
    CHECK_OK(ctx, ee_policy_assign(ctx, &o, &p, ex, NULL));
    static const int want_exit[4] = {0, 2, 1, 0};
    int good = 1;
    for (int i = 0; i < 20; i++) good &= ex[i] == want_exit[i % 4];
    CHECK(good, "the learned policy does not send A, B, C, D to IC1, final, IC2, IC1");
    CHECK(fabs(st.acc - 1.0) < 1e-9 && fabs(st.cost - (0.2 + 1.0 + 0.5 + 0.2) / 4) < 1e-9, "policy on its data: %.3f, %.3f",
          st.acc, st.cost);
    /* the text form keeps the gates; the rule's name is checked */
    char buf[8192];
    ee_exit_policy back;
    CHECK_OK(ctx, ee_policy_to_text(ctx, &p, buf, sizeof buf));
    CHECK_OK(ctx, ee_policy_from_text(ctx, buf, &back));
    CHECK(back.kind == EE_SCORE_GATE && !memcmp(back.gate, p.gate, sizeof(float) * 2 * (EE_GATE_FEATURES + 1)) &&
          strstr(buf, "gate_rule=each"), "gate policy text: %s", buf);
    char *g = strstr(buf, " gates=");
    if (g) { *g = 0; CHECK(ee_policy_from_text(ctx, buf, &back) == EE_ERR_FORMAT, "gate policy without its gates"); }
    hand_free(&o);

    /* a synthetic problem: one IC, right exactly when its max probability is above 0.7, and a final head always
     * right; for lambda (1 - c) < 1 the best policy stops exactly the right ones. Fitted on 400 samples, checked
     * on 400 others. */
    float sl[800 * 2][2];
    uint32_t r = 12345;
    for (int i = 0; i < 800; i++) {
        r = r * 1664525u + 1013904223u;
        double pm = 0.5 + 0.5 * ((r >> 8) / 16777216.0);
        float a = (float)log(pm / (1 - pm)); /* softmax of (a, 0): max probability pm */
        int right = pm > 0.7;
        sl[i * 2][0] = right ? a : 0; sl[i * 2][1] = right ? 0 : a;
        sl[i * 2 + 1][0] = 4; sl[i * 2 + 1][1] = -4;
    }
    ee_outputs tr, te;
    hand_outputs(400, 2, (const float (*)[2])sl, &tr);
    hand_outputs(400, 2, (const float (*)[2])(sl + 800), &te);
    const double c2[2] = {0.3, 1.0};
    CHECK_OK(ctx, ee_policy_fit_bolukbasi(ctx, &tr, c2, 0.5, NULL, &p, NULL));
    uint8_t e2[400];
    CHECK_OK(ctx, ee_policy_assign(ctx, &te, &p, e2, NULL));
    int agree = 0;
    for (int i = 0; i < 400; i++) agree += e2[i] == (te.pred[i * 2] == 0 ? 0 : 1);
    CHECK(agree >= 392, "the learned gate agrees with the optimal policy on %d of 400 new samples", agree);
    hand_free(&tr);
    hand_free(&te);

    /* network selection over a DAG: three networks; the middle one is useless (unsure and wrong), the last always
     * right, the first right exactly when its max probability is above 0.7. The best policy stops the first
     * network's right answers and sends every other sample straight to the last network. */
    float dl[800 * 3][2];
    for (int i = 0; i < 800; i++) {
        r = r * 1664525u + 1013904223u;
        double pm = 0.5 + 0.5 * ((r >> 8) / 16777216.0);
        float a = (float)log(pm / (1 - pm));
        int right = pm > 0.7;
        dl[i * 3][0] = right ? a : 0; dl[i * 3][1] = right ? 0 : a;
        dl[i * 3 + 1][0] = -0.1f; dl[i * 3 + 1][1] = 0.1f;
        dl[i * 3 + 2][0] = 4; dl[i * 3 + 2][1] = -4;
    }
    hand_outputs(400, 3, (const float (*)[2])dl, &tr);
    hand_outputs(400, 3, (const float (*)[2])(dl + 1200), &te);
    const double c3[3] = {0.1, 0.5, 1.4}; /* cumulative: the last network alone costs 0.9 */
    int jt[EE_MAX_HEADS] = {2};
    ee_exit_stats sj, sn;
    CHECK_OK(ctx, ee_policy_fit_bolukbasi(ctx, &tr, c3, 0.5, jt, &p, NULL));
    CHECK(p.jump_to[0] == 2 && p.jump_to[1] == 0, "jump targets %d %d", p.jump_to[0], p.jump_to[1]);
    CHECK_OK(ctx, ee_policy_simulate(ctx, &te, c3, &p, &sj));
    uint8_t e3[400];
    CHECK_OK(ctx, ee_policy_assign(ctx, &te, &p, e3, NULL));
    int opt = 0;
    for (int i = 0; i < 400; i++) opt += e3[i] == (te.pred[i * 3] == 0 ? 0 : 2);
    int right1 = 0;
    for (int i = 0; i < 400; i++) right1 += te.pred[i * 3] == 0;
    CHECK(opt >= 392 && sj.exits[1] <= 4, "the DAG policy: %d of 400 optimal, %d at the useless network", opt, sj.exits[1]);
    CHECK(abs(sj.jumps - (400 - right1)) <= 8, "%d samples jumped, %d should have", sj.jumps, 400 - right1);
    /* the cost of a jump is the first and the last network only */
    double want = 0;
    for (int i = 0; i < 400; i++) want += e3[i] == 0 ? 0.1 : e3[i] == 2 ? 0.1 + 0.9 : 0.5;
    CHECK(fabs(sj.cost - want / 400) < 0.01, "DAG cost %.4f, by hand about %.4f", sj.cost, want / 400);
    /* without the jump the same data costs more at the same accuracy */
    ee_exit_policy pn;
    CHECK_OK(ctx, ee_policy_fit_bolukbasi(ctx, &tr, c3, 0.5, NULL, &pn, NULL));
    CHECK_OK(ctx, ee_policy_simulate(ctx, &te, c3, &pn, &sn));
    CHECK(sn.jumps == 0 && sj.cost < sn.cost - 0.05 && sj.acc >= sn.acc - 0.01, "DAG %.3f at %.3f, chain %.3f at %.3f",
          sj.acc, sj.cost, sn.acc, sn.cost);
    /* the text form keeps the jumps; a jump to the next head is refused */
    CHECK_OK(ctx, ee_policy_to_text(ctx, &p, buf, sizeof buf));
    CHECK_OK(ctx, ee_policy_from_text(ctx, buf, &back));
    CHECK(back.jump_to[0] == 2 && !memcmp(back.jump_gate, p.jump_gate, sizeof p.jump_gate) && strstr(buf, "jumps=2,0"),
          "jump policy text: %s", buf);
    back.jump_to[0] = 1;
    CHECK(ee_policy_simulate(ctx, &te, c3, &back, &sn) == EE_ERR_ARG, "a jump that skips nothing is accepted");
    hand_free(&tr);
    hand_free(&te);

    /* JEI-DNN's rule by hand: gates 0.45 and 0.4 (zero weights, bias logit g). Each alone: neither reaches 0.5, the
     * final answers. JEI: q1 = 0.45; P2 = min(0.4, 1 - 0.45) = 0.4, q2 = 0.4 / 0.55 = 0.727: exit at IC2. */
    float one[3][2] = {{1, 0}, {1, 0}, {1, 0}};
    hand_outputs(1, 3, (const float (*)[2])one, &o);
    ee_policy_shared(&p, EE_SCORE_GATE, 3, 0.5f, 0);
    p.gate[0][EE_GATE_FEATURES] = (float)log(0.45 / 0.55);
    p.gate[1][EE_GATE_FEATURES] = (float)log(0.4 / 0.6);
    CHECK_OK(ctx, ee_policy_assign(ctx, &o, &p, ex, NULL));
    CHECK(ex[0] == 2, "each gate alone: exit %d, not the final", ex[0]);
    p.gate_rule = EE_GATE_JEI;
    CHECK_OK(ctx, ee_policy_assign(ctx, &o, &p, ex, NULL));
    CHECK(ex[0] == 1, "JEI rule: exit %d, not IC2", ex[0]);
    /* and where the clipping matters: g = 0.7, 0.6: q1 = 0.7 exits; with threshold 0.8, P2 = min(0.6, 0.3) = 0.3,
     * q2 = 0.3 / 0.3 = 1: exit at IC2 */
    p.gate[0][EE_GATE_FEATURES] = (float)log(0.7 / 0.3);
    p.gate[1][EE_GATE_FEATURES] = (float)log(0.6 / 0.4);
    for (int h = 0; h < 3; h++) p.threshold[h] = 0.8f;
    CHECK_OK(ctx, ee_policy_assign(ctx, &o, &p, ex, NULL));
    CHECK(ex[0] == 1, "JEI rule with clipping: exit %d, not IC2", ex[0]);
    hand_free(&o);
    CHECK(ee_risk_losses(ctx, &te, EE_SCORE_GATE, EE_RISK_GAP, NULL, NULL) == EE_ERR_ARG, "risk control on gates");

    /* calibration error by hand: four answers at the final head with confidences 0.6, 0.7 (right, wrong) and 0.8,
     * 0.9 (both right); two equal-mass bins: |1.3 - 1| / 4 + |1.7 - 2| / 4 = 0.15 */
    {
        const double pc[4] = {0.7, 0.6, 0.9, 0.8};
        const int rt[4] = {0, 1, 1, 1};
        float el[8][2];
        for (int i = 0; i < 4; i++) {
            float a = (float)log(pc[i] / (1 - pc[i]));
            el[i * 2][0] = 0; el[i * 2][1] = 0;
            el[i * 2 + 1][0] = rt[i] ? a : 0; el[i * 2 + 1][1] = rt[i] ? 0 : a;
        }
        ee_outputs eo;
        hand_outputs(4, 2, (const float (*)[2])el, &eo);
        ee_policy_shared(&p, EE_SCORE_MAXPROB, 2, 1.01f, 0);
        double ece = -1;
        CHECK_OK(ctx, ee_policy_ece(ctx, &eo, &p, 2, &ece));
        CHECK(fabs(ece - 0.15) < 1e-6, "calibration error %.6f, by hand 0.15", ece);
        /* the final head's own reliability: the same bins, with their means (0.65, 0.5) and (0.85, 1); head 1
         * (logits 0, 0: confidence 0.5, every answer class 0 = the label) in one bin: |0.5 - 1| */
        double bc[2], ba[2], e1;
        CHECK_OK(ctx, ee_head_reliability(ctx, &eo, 1, 2, &ece, bc, ba));
        CHECK(fabs(ece - 0.15) < 1e-6 && fabs(bc[0] - 0.65) < 1e-6 && fabs(ba[0] - 0.5) < 1e-9 && fabs(bc[1] - 0.85) < 1e-6 &&
              fabs(ba[1] - 1) < 1e-9, "reliability %.4f: bins (%.3f, %.3f) (%.3f, %.3f)", ece, bc[0], ba[0], bc[1], ba[1]);
        CHECK_OK(ctx, ee_head_reliability(ctx, &eo, 0, 1, &e1, NULL, NULL));
        CHECK(fabs(e1 - 0.5) < 1e-6, "head 1 reliability %.4f, by hand 0.5", e1);
        CHECK(ee_head_reliability(ctx, &eo, 2, 1, &e1, NULL, NULL) == EE_ERR_ARG, "a head beyond the outputs");
        hand_free(&eo);
    }
    /* conformal sets: 30 calibration samples at the final head with scores 1 - p_y = i / 31; at alpha 0.1 qhat is
     * the ceil(31 x 0.9) = 28th smallest, 28 / 31; a test sample covers its label iff its p_y >= 3 / 31 */
    {
        float cl[60][2];
        for (int i = 0; i < 30; i++) {
            double py = 1 - (i + 1) / 31.0;
            cl[i * 2][0] = 0; cl[i * 2][1] = 0;
            cl[i * 2 + 1][0] = (float)log(py / (1 - py)); cl[i * 2 + 1][1] = 0;
        }
        ee_outputs co;
        hand_outputs(30, 2, (const float (*)[2])cl, &co);
        float qh[2];
        CHECK_OK(ctx, ee_conformal_fit(ctx, &co, &p, 0.1, qh));
        CHECK(fabs(qh[1] - 28 / 31.0) < 1e-5, "conformal quantile %.6f, by hand %.6f", qh[1], 28 / 31.0);
        double cov, size;
        CHECK_OK(ctx, ee_conformal_eval(ctx, &co, &p, qh, &cov, &size));
        /* the samples with p_y >= 3/31: i + 1 <= 28, so 28 of 30; the other class joins when 1 - p_y >= 3/31 */
        CHECK(fabs(cov - 28 / 30.0) < 1e-9, "conformal coverage %.4f, by hand %.4f", cov, 28 / 30.0);
        hand_free(&co);
    }

    /* real compacted inference with learned gates (each, then JEI) equals the simulation, at batch 1 and 64 */
    ee_net *sdn = small_sdn(ctx);
    ee_dataset *ds = tl_toy_data(64);
    if (sdn) {
        ee_outputs *so = NULL;
        CHECK_OK(ctx, ee_collect_outputs(ctx, sdn, ds, 64, 0, &so));
        int H = ee_net_num_heads(sdn);
        double c[EE_MAX_HEADS];
        ee_net_head_costs(sdn, c, NULL);
        float *x = malloc((size_t)64 * 784 * 4);
        int idx[64];
        for (int i = 0; i < 64; i++) idx[i] = i;
        ee_dataset_batch(ctx, ds, idx, 64, NULL, x, NULL);
        for (int rule = 0; rule < 2 && so; rule++) {
            CHECK_OK(ctx, ee_policy_fit_bolukbasi(ctx, so, c, 0.05, NULL, &p, NULL));
            p.gate_rule = rule;
            uint8_t se[64], sp[64], pb[64], eb[64], p1[64], e1[64];
            float cb[64], c1[64];
            CHECK_OK(ctx, ee_policy_assign(ctx, so, &p, se, sp));
            CHECK_OK(ctx, ee_net_prepare(ctx, sdn, 64, 0));
            CHECK_OK(ctx, ee_infer_policy(ctx, sdn, x, 64, &p, NULL, pb, cb, eb, NULL));
            for (int i = 0; i < 64; i++)
                CHECK_OK(ctx, ee_infer_policy(ctx, sdn, x + (size_t)i * 784, 1, &p, NULL, p1 + i, c1 + i, e1 + i, NULL));
            int same = 1, used[EE_MAX_HEADS] = {0}, nused = 0;
            for (int i = 0; i < 64; i++) {
                same &= pb[i] == p1[i] && eb[i] == e1[i] && eb[i] == se[i] && pb[i] == sp[i];
                nused += !used[eb[i]]++;
            }
            CHECK(same, "gate rule %d: real exits at batch 1, 64 and the simulation disagree", rule);
            if (getenv("VERBOSE")) printf("  gate rule %d: %d exits used\n", rule, nused);
            (void)H;
        }
        free(x);
        ee_outputs_free(so);
        ee_net_free(sdn);
    }
    ee_dataset_free(ds);
    ee_ctx_free(ctx);
}

/* network selection: two networks joined into a cascade keep their own outputs (parameters and statistics copied),
 * each final output is an exit whose cumulative cost counts every network run so far, against the last network;
 * real inference at batch 1 and 64 agrees with the simulation under learned gates; mismatched networks are refused */
static void test_cascade(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    static const char *const small =
        "arch s\ninput c=1 h=28 w=28\nconv name=c1 out=4 k=3 stride=2 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
        "gap name=g\nlinear name=fc out=10\n";
    ee_net *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, small, "small", &a));
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &b));
    if (!a || !b) return;
    CHECK_OK(ctx, ee_net_init(ctx, a));
    CHECK_OK(ctx, ee_net_init(ctx, b));
    for (size_t i = 0; i < ee_net_num_state(a); i++) ee_net_state(a)[i] = 0.5f + (float)(i % 5) * 0.1f;
    ee_net_params_changed(a);
    ee_net *const m[2] = {a, b};
    CHECK_OK(ctx, ee_cascade_build(ctx, m, 2, &c));
    ee_dataset *ds = tl_toy_data(64);
    if (c) {
        CHECK(ee_net_num_heads(c) == 2, "a cascade of two networks has %d heads", ee_net_num_heads(c));
        double cost[2], fa = 0, fb = 0;
        ee_net_head_costs(c, cost, NULL);
        for (int i = 0; i < ee_net_num_nodes(a); i++) { ee_node_info in; ee_net_node_info(a, i, &in); fa += in.flops; }
        for (int i = 0; i < ee_net_num_nodes(b); i++) { ee_node_info in; ee_net_node_info(b, i, &in); fb += in.flops; }
        CHECK(fabs(cost[0] - fa / fb) < 1e-9 && fabs(cost[1] - (fa + fb) / fb) < 1e-9,
              "cascade costs %.5f %.5f, expected %.5f %.5f", cost[0], cost[1], fa / fb, (fa + fb) / fb);
        /* each exit gives its own network's logits */
        ee_outputs *oc = NULL, *oa = NULL, *ob = NULL;
        CHECK_OK(ctx, ee_collect_outputs(ctx, c, ds, 64, 0, &oc));
        CHECK_OK(ctx, ee_collect_outputs(ctx, a, ds, 64, 0, &oa));
        CHECK_OK(ctx, ee_collect_outputs(ctx, b, ds, 64, 0, &ob));
        if (oc && oa && ob) {
            double d = 0;
            for (int i = 0; i < 64; i++)
                for (int k = 0; k < 10; k++) {
                    d = fmax(d, fabs(oc->logits[(i * 2) * 10 + k] - oa->logits[i * 10 + k]));
                    d = fmax(d, fabs(oc->logits[(i * 2 + 1) * 10 + k] - ob->logits[i * 10 + k]));
                }
            CHECK(d < 1e-4, "the cascade's exits differ from its networks by %.3g", d);
            /* learned gates: batch 64, batch 1 and the simulation agree */
            ee_exit_policy p;
            CHECK_OK(ctx, ee_policy_fit_bolukbasi(ctx, oc, cost, 0.02, NULL, &p, NULL));
            /* a gate that sends about half the samples on, so that both paths carry samples */
            float sc[64];
            for (int i = 0; i < 64; i++) sc[i] = ee_policy_score(&p, 0, oc->logits + (i * 2) * 10, 10, -1, NULL);
            for (int i = 0; i < 64; i++)
                for (int j = i + 1; j < 64; j++)
                    if (sc[j] < sc[i]) { float t = sc[i]; sc[i] = sc[j]; sc[j] = t; }
            p.threshold[0] = 0.5f * (sc[31] + sc[32]);
            uint8_t se[64], sp[64], pb[64], eb[64], p1[64], e1[64];
            float cb[64], c1[64];
            CHECK_OK(ctx, ee_policy_assign(ctx, oc, &p, se, sp));
            float *x = malloc((size_t)64 * 784 * 4);
            int idx[64];
            for (int i = 0; i < 64; i++) idx[i] = i;
            ee_dataset_batch(ctx, ds, idx, 64, NULL, x, NULL);
            CHECK_OK(ctx, ee_net_prepare(ctx, c, 64, 0));
            CHECK_OK(ctx, ee_infer_policy(ctx, c, x, 64, &p, NULL, pb, cb, eb, NULL));
            for (int i = 0; i < 64; i++)
                CHECK_OK(ctx, ee_infer_policy(ctx, c, x + (size_t)i * 784, 1, &p, NULL, p1 + i, c1 + i, e1 + i, NULL));
            int same = 1, first = 0;
            for (int i = 0; i < 64; i++) {
                same &= pb[i] == p1[i] && eb[i] == e1[i] && eb[i] == se[i] && pb[i] == sp[i];
                first += eb[i] == 0;
            }
            CHECK(same, "the cascade's batch path, its one-by-one path and the simulation disagree");
            CHECK(first > 0 && first < 64, "%d of 64 samples stop after the first network", first);
            free(x);
        }
        ee_outputs_free(oc); ee_outputs_free(oa); ee_outputs_free(ob);
    }
    /* three networks and the paper's DAG: after the first, a jump gate may send a sample straight to the third.
     * Hand-set gates (on the max probability, around its median) so that every path carries samples; the batch
     * path, the one-by-one path and the simulation agree, and a jump costs the first and the third network only */
    ee_net *a2 = NULL, *c3n = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, small, "small2", &a2));
    if (a2) {
        CHECK_OK(ctx, ee_net_init(ctx, a2));
        for (size_t i = 0; i < ee_net_num_state(a2); i++) ee_net_state(a2)[i] = 0.3f + (float)(i % 7) * 0.1f;
        ee_net_params_changed(a2);
        ee_net *const m3[3] = {a, a2, b};
        CHECK_OK(ctx, ee_cascade_build(ctx, m3, 3, &c3n));
    }
    if (c3n) {
        int jt[EE_MAX_HEADS], jt2[EE_MAX_HEADS];
        CHECK(ee_cascade_jumps(c3n, jt) == 1 && jt[0] == 2 && jt[1] == 0, "cascade jumps %d %d", jt[0], jt[1]);
        CHECK(c && ee_cascade_jumps(c, jt2) == 0, "a cascade of two networks has nothing to jump");
        CHECK(ee_cascade_jumps(b, jt2) == 0, "a plain network has nothing to jump");
        ee_outputs *o3 = NULL;
        CHECK_OK(ctx, ee_collect_outputs(ctx, c3n, ds, 64, 0, &o3));
        double cost3[3];
        ee_net_head_costs(c3n, cost3, NULL);
        if (o3) {
            ee_exit_policy p;
            ee_policy_shared(&p, EE_SCORE_GATE, 3, 0.5f, 0);
            float mp[2][64];
            for (int h = 0; h < 2; h++) {
                for (int i = 0; i < 64; i++) mp[h][i] = o3->conf[i * 3 + h];
                for (int i = 0; i < 64; i++)
                    for (int j = i + 1; j < 64; j++)
                        if (mp[h][j] < mp[h][i]) { float t = mp[h][i]; mp[h][i] = mp[h][j]; mp[h][j] = t; }
            }
            /* exit above the 60th percentile at the first network and the median at the second; of the others,
             * the less sure (below the 30th percentile) jump */
            float q60 = 0.5f * (mp[0][38] + mp[0][39]), q30 = 0.5f * (mp[0][18] + mp[0][19]), q50 = 0.5f * (mp[1][31] + mp[1][32]);
            float sharp = 1.0f / fmaxf(mp[0][63] - mp[0][0], 1e-6f) * 200;
            p.gate[0][0] = sharp; p.gate[0][EE_GATE_FEATURES] = -sharp * q60;
            p.gate[1][0] = sharp; p.gate[1][EE_GATE_FEATURES] = -sharp * q50;
            p.jump_to[0] = 2;
            p.jump_gate[0][0] = -sharp; p.jump_gate[0][EE_GATE_FEATURES] = sharp * q30;
            ee_exit_stats st3;
            uint8_t se[64], sp[64], pb[64], eb[64], p1[64], e1[64];
            float cb[64], c1[64];
            CHECK_OK(ctx, ee_policy_simulate(ctx, o3, cost3, &p, &st3));
            CHECK_OK(ctx, ee_policy_assign(ctx, o3, &p, se, sp));
            float *x = malloc((size_t)64 * 784 * 4);
            int idx[64];
            for (int i = 0; i < 64; i++) idx[i] = i;
            ee_dataset_batch(ctx, ds, idx, 64, NULL, x, NULL);
            CHECK_OK(ctx, ee_net_prepare(ctx, c3n, 64, 0));
            CHECK_OK(ctx, ee_infer_policy(ctx, c3n, x, 64, &p, NULL, pb, cb, eb, NULL));
            for (int i = 0; i < 64; i++)
                CHECK_OK(ctx, ee_infer_policy(ctx, c3n, x + (size_t)i * 784, 1, &p, NULL, p1 + i, c1 + i, e1 + i, NULL));
            int same = 1, at[3] = {0, 0, 0}, jumped = 0;
            double want = 0;
            for (int i = 0; i < 64; i++) {
                same &= pb[i] == p1[i] && eb[i] == e1[i] && eb[i] == se[i] && pb[i] == sp[i] && fabsf(cb[i] - c1[i]) < 1e-5f;
                at[eb[i]]++;
                int j = eb[i] == 2 && o3->conf[i * 3] < q30;
                jumped += j;
                want += j ? cost3[0] + cost3[2] - cost3[1] : cost3[eb[i]];
            }
            CHECK(same, "with jumps, the cascade's batch path, its one-by-one path and the simulation disagree");
            CHECK(at[0] > 0 && at[1] > 0 && jumped > 0 && at[2] > jumped, "exits %d %d %d, %d jumped", at[0], at[1], at[2],
                  jumped);
            CHECK(st3.jumps == jumped && fabs(st3.cost - want / 64) < 1e-9, "simulated %d jumps at cost %.5f, by hand %d at %.5f",
                  st3.jumps, st3.cost, jumped, want / 64);
            /* budgets with jumps are refused; a jump over layers the target reads is refused */
            ee_infer_limits lim = {0, 0, 1e12};
            CHECK(ee_infer_policy(ctx, c3n, x, 64, &p, &lim, pb, cb, eb, NULL) == EE_ERR_ARG, "a budget with jumps");
            free(x);
        }
        ee_outputs_free(o3);
    }
    {   /* an SDN's later exits read the trunk: no jump can skip it */
        ee_net *sdn = NULL;
        int nodes[16], nic = ee_sdn_default_positions(b, nodes, 16);
        CHECK_OK(ctx, ee_sdn_attach(ctx, b, nodes, nic, &sdn));
        if (sdn) {
            int jt[EE_MAX_HEADS];
            CHECK(ee_cascade_jumps(sdn, jt) == 0, "an SDN is not a cascade");
            ee_exit_policy p;
            ee_policy_shared(&p, EE_SCORE_GATE, ee_net_num_heads(sdn), 0.5f, 0);
            p.jump_to[0] = 2;
            float *x = calloc(784, sizeof(float));
            uint8_t pr1, e1;
            float cf1;
            CHECK_OK(ctx, ee_net_prepare(ctx, sdn, 1, 0));
            CHECK(ee_infer_policy(ctx, sdn, x, 1, &p, NULL, &pr1, &cf1, &e1, NULL) == EE_ERR_ARG &&
                  strstr(ee_ctx_error(ctx), "reads"), "a jump inside an SDN: %s", ee_ctx_error(ctx));
            free(x);
        }
        ee_net_free(sdn);
    }
    ee_net_free(a2); ee_net_free(c3n);
    /* networks that do not fit together */
    ee_net *d = NULL, *bad = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 7, &d));
    ee_net *const mm[2] = {a, d};
    CHECK(ee_cascade_build(ctx, mm, 2, &bad) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "classes"), "classes mismatch: %s",
          ee_ctx_error(ctx));
    ee_net *const one[1] = {a};
    CHECK(ee_cascade_build(ctx, one, 1, &bad) == EE_ERR_ARG, "a cascade of one network");
    ee_net_free(d);
    ee_dataset_free(ds);
    ee_net_free(a); ee_net_free(b); ee_net_free(c);
    ee_ctx_free(ctx);
}

/* SideNet: the side head's nodes and shapes, the backbone's weights kept, its default place, bad arguments */
static void test_sidenet(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_net *cnn = NULL, *side = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &cnn));
    if (!cnn) return;
    CHECK_OK(ctx, ee_net_init(ctx, cnn));
    int at = ee_sidenet_default_position(cnn);
    ee_node_info in;
    ee_net_node_info(cnn, at, &in);
    CHECK(at > 0 && !strcmp(in.name, "s1.b3.add"), "SideNet default place %s", at >= 0 ? in.name : "none");
    CHECK_OK(ctx, ee_sidenet_attach(ctx, cnn, at, 32, 4, &side));
    if (side) {
        CHECK(ee_net_num_heads(side) == 2, "a SideNet model has %d heads", ee_net_num_heads(side));
        int pool = ee_net_find_node(side, "side.pool"), fc1 = ee_net_find_node(side, "side.fc1");
        ee_node_info pi, fi;
        ee_net_node_info(side, pool, &pi);
        ee_net_node_info(side, fc1, &fi);
        /* 16 x 28 x 28 pooled by 7 to 16 x 4 x 4 = 256 features, 32 hidden */
        CHECK(pool >= 0 && pi.c == 16 && pi.h == 4 && pi.w == 4 && fi.c == 32 && fi.params == 256 * 32 + 32,
              "side head shapes: pool %dx%dx%d, fc1 %d (%zu parameters)", pi.c, pi.h, pi.w, fi.c, fi.params);
        CHECK(ee_net_head_node(side, 0) == ee_net_find_node(side, "side.fc2"), "the SideNet's exit is side.fc2");
        /* the backbone computes what the CNN does */
        float x[784], *y0 = malloc(40), *y1 = malloc(40);
        for (int i = 0; i < 784; i++) x[i] = (float)sin(i * 0.1);
        CHECK_OK(ctx, ee_net_prepare(ctx, cnn, 1, 0));
        CHECK_OK(ctx, ee_net_prepare(ctx, side, 1, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, cnn, x, 1, 0));
        memcpy(y0, ee_net_head_output(cnn, 0), 40);
        CHECK_OK(ctx, ee_net_forward(ctx, side, x, 1, 0));
        memcpy(y1, ee_net_head_output(side, 1), 40);
        CHECK(!memcmp(y0, y1, 40), "the SideNet's MainNet differs from the CNN");
        free(y0); free(y1);
    }
    ee_net *bad = NULL;
    /* a grid that does not divide the 28 x 28 map: the largest that does, 4 x 4 (windows of 7) */
    CHECK_OK(ctx, ee_sidenet_attach(ctx, cnn, at, 32, 5, &bad));
    if (bad) {
        ee_node_info pi;
        ee_net_node_info(bad, ee_net_find_node(bad, "side.pool"), &pi);
        CHECK(pi.h == 4 && pi.w == 4, "SideNet pooling grid %dx%d for pool 5 on 28x28", pi.h, pi.w);
        ee_net_free(bad);
        bad = NULL;
    }
    CHECK(ee_sidenet_attach(ctx, cnn, at, 0, 4, &bad) == EE_ERR_ARG, "a SideNet without hidden units");
    CHECK(side && ee_sidenet_attach(ctx, side, at, 32, 4, &bad) == EE_ERR_ARG, "a SideNet on a network with exits");
    ee_net_free(side);
    ee_net_free(cnn);
    ee_ctx_free(ctx);
}

/* text: the tokenizer by hand, the loader (escapes, classes, errors with file and line), a two-channel embedding */
static void test_text(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    uint16_t ids[8];
    /* bytes: the bytes, zero-padded */
    CHECK(ee_text_tokenize("Hi!", 3, EE_TOKENS_BYTES, 5, ids) == 3 && ids[0] == 'H' && ids[2] == '!' && ids[3] == 0 &&
          ids[4] == 0, "byte tokens");
    /* words: "Buy NOW!!" is buy, now, !, ! (case folded, punctuation alone, spaces dropped) */
    CHECK(ee_text_tokenize("Buy NOW!! ", 10, EE_TOKENS_WORDS, 8, ids) == 4, "four word tokens");
    uint16_t again[8];
    ee_text_tokenize("buy now ! !", 11, EE_TOKENS_WORDS, 8, again);
    uint32_t h = 2166136261u;
    for (const char *c = "buy"; *c; c++) h = (h ^ (unsigned char)*c) * 16777619u;
    CHECK(!memcmp(ids, again, sizeof ids) && ids[0] == 1 + h % 65535u && ids[2] == ids[3] && ids[4] == 0,
          "word tokens: %u %u %u %u", ids[0], ids[1], ids[2], ids[3]);
    /* the loader: escapes, classes in byte order, and errors that name the file and line */
    char dir[] = "/tmp/eenn-text-XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); ee_ctx_free(ctx); return; }
    char p[256];
    snprintf(p, sizeof p, "%s/train.tsv", dir);
    FILE *f = fopen(p, "w");
    fputs("spam\tbuy\\tnow\\n\\\\x\nham\thello\n\nham\tbye\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/test.tsv", dir);
    f = fopen(p, "w");
    fputs("ham\thi\n", f);
    fclose(f);
    ee_dataset *ds = NULL;
    CHECK_OK(ctx, ee_dataset_load_text(ctx, dir, "train", EE_TOKENS_BYTES, 12, &ds));
    if (ds) {
        /* "buy\tnow\n\x": 10 bytes; labels ham = 0, spam = 1; the empty line skipped */
        CHECK(ds->n == 3 && ds->classes == 2 && ds->labels[0] == 1 && ds->labels[1] == 0 && ds->w == 12 &&
              !memcmp(ds->pixels, "buy\tnow\n\\x\0\0", 12), "text loader: %d examples, labels %d %d", ds->n,
              ds->labels[0], ds->labels[1]);
        ee_dataset_free(ds);
    }
    char names[64];
    CHECK_OK(ctx, ee_text_classes(ctx, dir, names, sizeof names));
    CHECK(!strcmp(names, "ham,spam"), "classes '%s'", names);
    static const char *const bad[][2] = {{"ham\thi\nham no tab\n", ":2: no tab"},
                                         {"ham\tbad \\q escape\n", ":1: an unknown escape"},
                                         {"ham\tok\neggs\tx\n", ":2: label 'eggs' is not one of train.tsv's"},
                                         {"ham\t\xff\xfe\n", ":1: not UTF-8"}};
    for (int k = 0; k < 4; k++) {
        f = fopen(p, "w");
        fputs(bad[k][0], f);
        fclose(f);
        CHECK(ee_dataset_load_text(ctx, dir, "test", EE_TOKENS_WORDS, 8, &ds) == EE_ERR_FORMAT &&
              strstr(ee_ctx_error(ctx), "test.tsv") && strstr(ee_ctx_error(ctx), bad[k][1]), "bad line %d: %s", k,
              ee_ctx_error(ctx));
    }
    remove(p);
    snprintf(p, sizeof p, "%s/train.tsv", dir);
    remove(p);
    rmdir(dir);
    /* two channels: the id is high * 256 + low */
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, "input c=2 h=1 w=3\nembed name=L out=2 vocab=65536\ngmp\nlinear out=2\n", "emb2", &net));
    if (net) {
        CHECK_OK(ctx, ee_net_init(ctx, net));
        CHECK_OK(ctx, ee_net_prepare(ctx, net, 1, 0));
        const float x[6] = {1, 2, 0, 7, 255, 255}; /* ids 258, 7, 65535 */
        CHECK_OK(ctx, ee_net_forward_range(ctx, net, x, 0, 1, 1, 0));
        const float *w = ee_net_params(net), *y = ee_net_node_output(net, 0);
        CHECK(y[0] == w[258 * 2] && y[1] == w[258 * 2 + 1] && y[2] == w[7 * 2] && y[5] == w[65535 * 2 + 1],
              "two-channel embedding rows");
        ee_net_free(net);
    }
    ee_ctx_free(ctx);
}

/* the uncertainty layer against the four features computed by hand in double, and its backward: nothing reaches
 * the logits (detached), so a network whose only path to the loss runs through it gets no input gradient */
static void test_uncertainty(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, "input c=4 h=1 w=1\nuncertainty name=u in=input\nlinear name=fin in=u out=2\n",
                                   "unc", &net));
    if (!net) { ee_ctx_free(ctx); return; }
    static const float x[3][4] = {{2, 1, 0, -1}, {0, 0, 0, 0}, {30, -20, 29.5f, 5}};
    CHECK_OK(ctx, ee_net_init(ctx, net));
    CHECK_OK(ctx, ee_net_prepare(ctx, net, 3, 1));
    CHECK_OK(ctx, ee_net_forward(ctx, net, &x[0][0], 3, 1));
    const float *u = net->nodes[0].y;
    for (int b = 0; b < 3; b++) {
        double e[4], s = 0, s2 = 0, mx = -1e30;
        for (int j = 0; j < 4; j++) mx = x[b][j] > mx ? x[b][j] : mx;
        for (int j = 0; j < 4; j++) { e[j] = exp(x[b][j] - mx); s += e[j]; s2 += e[j] * e[j]; }
        double p[4], h = 0, h2 = 0;
        for (int j = 0; j < 4; j++) {
            p[j] = e[j] / s;
            h -= p[j] * log(p[j]);
            double q = e[j] * e[j] / s2;
            h2 -= q > 0 ? q * log(q) : 0;
        }
        double a = 0, c = 0; /* the two largest */
        for (int j = 0; j < 4; j++) { if (p[j] > a) { c = a; a = p[j]; } else if (p[j] > c) c = p[j]; }
        double want[4] = {a, h, a - c, h2};
        for (int f = 0; f < 4; f++)
            CHECK(fabs(u[b * 4 + f] - want[f]) < 1e-5 * (1 + fabs(want[f])), "row %d feature %d: %.7g, not %.7g", b, f,
                  u[b * 4 + f], want[f]);
    }
    CHECK(fabs(u[4 + 1] - log(4.0)) < 1e-6 && u[4 + 2] == 0, "equal logits: entropy log 4 and margin 0");
    /* backward: the input gradient of a net whose input only the uncertainty node reads is zero */
    ee_net_want_input_grad(net, 1);
    uint8_t y[3] = {0, 1, 0};
    CHECK_OK(ctx, ee_net_forward(ctx, net, &x[0][0], 3, 1));
    ee_net_zero_seeds(net);
    CHECK_OK(ctx, ee_net_loss(ctx, net, 0, y, 3, 1.0f, NULL, NULL));
    CHECK_OK(ctx, ee_net_backward(ctx, net, 3));
    const float *dx = ee_net_input_grad(net);
    int zero = dx != NULL;
    for (int i = 0; dx && i < 12; i++) zero &= dx[i] == 0;
    CHECK(zero, "the uncertainty features pass a gradient to their input");
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* a short EENet training on toy data; its gates then send samples to several exits, and the real exits at batch
 * 1 and 64 agree with each other and with the simulation */
static void check_eenet_exits(ee_ctx *ctx, ee_net *ee, ee_dataset *ds, int H, ee_eenet_loss_kind loss) {
    ee_train_config cfg = {2, 32, {EE_OPTIM_ADAM, 1e-3f, 0, 1e-4f, 0, 0.9f, 0.999f, 1e-8f},
                           {EE_SCHED_STEP, 1e-3f, 0.1f, {0}, 0, 0, 0}, {0, 0}, NULL, 0, 0, EE_MODE_EENET, 0.5f,
                           loss, 1, 0, 0, 0, 0, NULL, 0};
    CHECK_OK(ctx, ee_train(ctx, ee, ds, NULL, NULL, &cfg, NULL, NULL));
    ee_outputs *o = NULL;
    CHECK_OK(ctx, ee_collect_outputs(ctx, ee, ds, 64, 0, &o));
    if (o) {
        CHECK(o->gate != NULL, "no confidences collected");
        const int n = 64;
        /* the threshold: the median of the first exit's confidence: half the samples leave there, the rest later */
        float g[64];
        for (int i = 0; i < n; i++) g[i] = o->gate[i * H];
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                if (g[j] < g[i]) { float t = g[i]; g[i] = g[j]; g[j] = t; }
        ee_exit_policy p;
        ee_policy_shared(&p, EE_SCORE_CONFIDENCE, H, 0.5f * (g[n / 2 - 1] + g[n / 2]), 0);
        uint8_t se[64], sp[64], pb[64], eb[64], p1[64], e1[64];
        float cb[64], c1[64];
        CHECK_OK(ctx, ee_policy_assign(ctx, o, &p, se, sp));
        float *x = malloc((size_t)n * 784 * 4);
        int idx[64];
        for (int i = 0; i < n; i++) idx[i] = i;
        ee_dataset_batch(ctx, ds, idx, n, NULL, x, NULL);
        CHECK_OK(ctx, ee_net_prepare(ctx, ee, n, 0));
        CHECK_OK(ctx, ee_infer_policy(ctx, ee, x, n, &p, NULL, pb, cb, eb, NULL));
        for (int i = 0; i < n; i++)
            CHECK_OK(ctx, ee_infer_policy(ctx, ee, x + (size_t)i * 784, 1, &p, NULL, p1 + i, c1 + i, e1 + i, NULL));
        int same = 1, sim = 1, used[EE_MAX_HEADS] = {0}, nused = 0;
        for (int i = 0; i < n; i++) {
            same &= pb[i] == p1[i] && eb[i] == e1[i];
            sim &= eb[i] == se[i] && pb[i] == sp[i];
            /* by hand: the first exit whose confidence is strictly above the threshold */
            int e = H - 1;
            for (int h = 0; h < H - 1; h++)
                if (o->gate[i * H + h] > p.threshold[h]) { e = h; break; }
            sim &= se[i] == e;
            nused += !used[eb[i]]++;
        }
        CHECK(nused >= 2, "the test threshold uses only %d exits (loss %d, gates %g .. %g, median %g)", nused, (int)loss, g[0], g[n - 1], p.threshold[0]);
        CHECK(same, "EENet exits at batch 1 and batch 64 disagree");
        CHECK(sim, "EENet real exits disagree with the simulation");
        /* the strict rule: a threshold equal to a confidence does not let that sample out */
        ee_policy_shared(&p, EE_SCORE_CONFIDENCE, H, o->gate[0], 0);
        CHECK_OK(ctx, ee_policy_assign(ctx, o, &p, se, NULL));
        CHECK(se[0] != 0, "a confidence equal to the threshold exits");
        /* the policy's text form names the kind */
        char buf[1024];
        ee_exit_policy q;
        CHECK_OK(ctx, ee_policy_to_text(ctx, &p, buf, sizeof buf));
        CHECK_OK(ctx, ee_policy_from_text(ctx, buf, &q));
        CHECK(q.kind == EE_SCORE_CONFIDENCE && strstr(buf, "kind=confidence"), "policy text: %s", buf);
        free(x);
        ee_outputs_free(o);
    }
}

static void test_eenet(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_net *cnn = NULL, *ee = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &cnn));
    if (!cnn) return;
    CHECK_OK(ctx, ee_net_init(ctx, cnn));
    /* placement: for each distribution, every exit is a block output (the ReLU after a residual sum); its prefix
     * reaches the threshold, and the block output before it (if not an exit already) does not */
    int nn = ee_net_num_nodes(cnn);
    double cum[EE_MAX_NODES], tot = 0;
    for (int i = 0; i < nn; i++) {
        ee_node_info in;
        ee_net_node_info(cnn, i, &in);
        tot += in.flops;
        cum[i] = tot;
    }
    static const double want[4][4] = {{0.05, 0.0975, 0.142625, 0.18549375}, {0.2, 0.4, 0.6, 0.8},
                                      {0.2, 0.36, 0.488, 0.5904},
                                      {0.145898033, 0.236067977, 0.381966011, 0.618033989}};
    for (int d = 0; d < 4; d++) {
        int nodes[4];
        CHECK_OK(ctx, ee_eenet_positions(ctx, cnn, 4, (ee_eenet_dist)d, nodes));
        int prev_end = -1;
        for (int k = 0; k < 4; k++) {
            ee_node_info in;
            ee_net_node_info(cnn, nodes[k], &in);
            CHECK(!strcmp(in.kind, "relu") && strstr(in.name, ".out"), "%s exit %d at %s, not a block output",
                  ee_eenet_dist_name(d), k, in.name);
            CHECK(cum[nodes[k]] >= want[d][k] * tot - 1e-6, "%s exit %d: prefix %.3f below %.3f", ee_eenet_dist_name(d),
                  k, cum[nodes[k]] / tot, want[d][k]);
            /* the previous block output after the previous exit must be below the threshold */
            for (int j = nodes[k] - 1; j > prev_end; j--) {
                ee_net_node_info(cnn, j, &in);
                if (!strcmp(in.kind, "relu") && strstr(in.name, ".out")) {
                    CHECK(cum[j] < want[d][k] * tot, "%s exit %d: the earlier block output %s already reaches %.3f",
                          ee_eenet_dist_name(d), k, in.name, want[d][k]);
                    break;
                }
            }
            prev_end = nodes[k];
        }
    }
    int bad[16];
    CHECK(ee_eenet_positions(ctx, cnn, 10, EE_DIST_FINE, bad) == EE_ERR_ARG, "10 exits in 9 blocks");
    /* every built-in backbone takes EENet exits (VGG: after its pools, WRN: the pre-activation sums, MobileNet: the
     * blocks' ReLUs), with each distribution */
    static const char *const archs[] = {"resnet56", "vgg16bn", "wrn32_4", "mobilenet"};
    ee_ctx *actx = ee_ctx_new(); /* its own random numbers: the training below keeps its seed */
    for (int a = 0; a < 4; a++) {
        ee_net *b = NULL, *e = NULL;
        CHECK_OK(actx, ee_net_builtin(actx, archs[a], 3, 32, 32, 10, &b));
        if (!b) continue;
        for (int d = 0; d < 4; d++) {
            int pos[4];
            ee_status st = ee_eenet_positions(actx, b, 4, (ee_eenet_dist)d, pos);
            CHECK(st == EE_OK, "%s, %s: %s", archs[a], ee_eenet_dist_name(d), ee_ctx_error(actx));
            if (st) continue;
            CHECK_OK(actx, ee_eenet_attach(actx, b, pos, 4, (ee_eenet_exit)(d % 3), &e));
            if (e) CHECK(ee_net_num_heads(e) == 5 && ee_net_head_confidence(e, 3) >= 0, "%s: exits attached", archs[a]);
            ee_net_free(e);
            e = NULL;
        }
        ee_net_free(b);
    }
    ee_ctx_free(actx);
    int nodes[3];
    CHECK_OK(ctx, ee_eenet_positions(ctx, cnn, 3, EE_DIST_LINEAR, nodes));
    CHECK_OK(ctx, ee_eenet_attach(ctx, cnn, nodes, 3, EE_EENET_POOL, &ee));
    if (!ee) { ee_net_free(cnn); ee_ctx_free(ctx); return; }
    int H = ee_net_num_heads(ee);
    CHECK(H == 4, "3 exits and the final head, not %d heads", H);
    for (int h = 0; h < H - 1; h++) CHECK(ee_net_head_confidence(ee, h) >= 0, "exit %d has no confidence node", h);
    CHECK(ee_net_head_confidence(ee, H - 1) < 0, "the final head has a confidence node");
    /* the paper's costs: prefix + the exit's own gap and two linears; the final 1 */
    double cost[EE_MAX_HEADS], cum_cost[EE_MAX_HEADS];
    ee_eenet_costs(ee, cost);
    ee_net_head_costs(ee, cum_cost, NULL);
    for (int h = 0; h < H - 1; h++) {
        double own = 64 * 0 + 0; /* gap: C*H*W adds; conf: 2C + 1; fc: 2*10*C + 10 (eenn's true FLOPs) */
        ee_node_info in;
        int node = ee_net_head_node(ee, h);
        for (int j = node - 2; j <= node; j++) { ee_net_node_info(ee, j, &in); own += in.flops; }
        double want_c = (cum[nodes[h]] + own) / tot;
        CHECK(fabs(cost[h] - want_c) < 1e-9, "exit %d: paper cost %.6f, expected %.6f", h, cost[h], want_c);
        CHECK(cum_cost[h] >= cost[h] - 1e-12, "exit %d: true cumulative cost below the paper's", h);
    }
    CHECK(cost[H - 1] == 1.0, "the final head's paper cost is 1");
    /* the text round trip keeps the confidence links; bad links are refused */
    ee_net *back = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, ee_net_arch(ee), "eenet", &back));
    if (back) {
        CHECK(!strcmp(ee_net_arch(back), ee_net_arch(ee)), "canonical text does not round-trip");
        for (int h = 0; h < H; h++) CHECK(ee_net_head_confidence(back, h) == ee_net_head_confidence(ee, h), "link %d", h);
        ee_net_free(back);
    }
    static const char *const badtext[] = {
        "input c=1 h=4 w=4\ngap\nlinear name=g out=1\nlinear name=f in=gap0 out=3 confidence=g\n", /* no head=1 */
        "input c=1 h=4 w=4\ngap\nlinear name=f in=gap0 out=3 head=1 confidence=zz\nlinear out=3\n", /* unknown */
        "input c=1 h=4 w=4\ngap\nlinear name=g out=2\nlinear name=f in=gap0 out=3 head=1 confidence=g\nlinear in=gap0 out=3\n",
        "input c=1 h=4 w=4\ngap\nlinear name=g out=1\nlinear name=f in=gap0 out=3 head=1 confidence=g confidence=g\nlinear in=gap0 out=3\n",
        /* a later confidence node that the rest of the network reads */
        "input c=1 h=4 w=4\ngap\nlinear name=f in=gap0 out=3 head=1 confidence=g\nlinear name=g in=gap0 out=1\nlinear in=g out=3\n",
        /* a later confidence node behind the next head */
        ("input c=1 h=4 w=4\ngap\nlinear name=f in=gap0 out=3 head=1 confidence=g\nlinear name=f2 in=gap0 out=3 head=1\n"
         "linear name=g in=f out=1\nlinear in=gap0 out=3\n"),
    };
    for (int b = 0; b < 6; b++) {
        ee_net *x = NULL;
        CHECK(ee_net_from_text(ctx, badtext[b], "bad", &x) == EE_ERR_FORMAT, "bad confidence text %d accepted", b);
        ee_net_free(x);
    }
    ee_dataset *ds = tl_toy_data(64);
    check_eenet_exits(ctx, ee, ds, H, EE_EENET_V2);
    /* gates on the exits' own uncertainty features, after their heads: the costs count them, the text keeps the
     * later confidence links, and v4 trains them */
    ee_net *eu = NULL;
    CHECK_OK(ctx, ee_eenet_attach(ctx, cnn, nodes, 3, (ee_eenet_exit)(EE_EENET_POOL | EE_EENET_UNCERTAINTY_GATE), &eu));
    if (eu) {
        ee_eenet_costs(eu, cost);
        ee_net_head_costs(eu, cum_cost, NULL);
        double prev = 0;
        for (int h = 0; h < H - 1; h++) {
            int node = ee_net_head_node(eu, h), g = ee_net_head_confidence(eu, h);
            CHECK(g == node + 2, "exit %d: the gate is node %d, the head %d", h, g, node);
            double own = 0;
            ee_node_info in;
            for (int j = node - 1; j <= g; j++) { ee_net_node_info(eu, j, &in); own += in.flops; }
            CHECK(fabs(cost[h] - (cum[nodes[h]] + own) / tot) < 1e-9, "exit %d: paper cost with the gate", h);
            /* the true cumulative cost includes every exit's gate so far */
            double all = 0;
            for (int j = 0; j <= g; j++) { ee_net_node_info(eu, j, &in); all += in.flops; }
            CHECK(fabs(cum_cost[h] - all / tot) < 1e-9 && cum_cost[h] > prev, "exit %d: cumulative cost %.6f, not %.6f", h,
                  cum_cost[h], all / tot);
            prev = cum_cost[h];
        }
        ee_net *eb = NULL;
        CHECK_OK(ctx, ee_net_from_text(ctx, ee_net_arch(eu), "eenet-unc", &eb));
        if (eb) {
            CHECK(!strcmp(ee_net_arch(eb), ee_net_arch(eu)), "canonical text with later gates does not round-trip");
            for (int h = 0; h < H; h++) CHECK(ee_net_head_confidence(eb, h) == ee_net_head_confidence(eu, h), "link %d", h);
            ee_net_free(eb);
        }
        check_eenet_exits(ctx, eu, ds, H, EE_EENET_V4_CE);
        /* inference in chunks (as large batches run) gives each sample what batch 1 gives: the heads and gates that
         * live to the end keep buffers that no earlier node with shorter rows writes into in a later chunk
         * (5 plain exits: the later heads would otherwise reuse the buffers of earlier exits' features) */
        ee_net *e5 = NULL;
        int n5[5];
        CHECK_OK(ctx, ee_eenet_positions(ctx, cnn, 5, EE_DIST_LINEAR, n5));
        CHECK_OK(ctx, ee_eenet_attach(ctx, cnn, n5, 5, (ee_eenet_exit)(EE_EENET_PLAIN | EE_EENET_UNCERTAINTY_GATE), &e5));
        ee_dataset *d128 = tl_toy_data(128);
        ee_outputs *o1 = NULL, *oc = NULL;
        if (e5) {
            CHECK_OK(ctx, ee_net_prepare(ctx, e5, 128, 0));
            CHECK_OK(ctx, ee_collect_outputs(ctx, e5, d128, 128, 0, &oc));
            CHECK_OK(ctx, ee_collect_outputs(ctx, e5, d128, 1, 0, &o1));
        }
        if (o1 && oc) { /* equal up to the rounding of other GEMM kernels at another batch size */
            double dg = 0, dz = 0;
            for (int i = 0; i < 128 * 6; i++) dg = fmax(dg, fabs(o1->gate[i] - oc->gate[i]));
            for (int i = 0; i < 128 * 6 * 10; i++) dz = fmax(dz, fabs(o1->logits[i] - oc->logits[i]));
            CHECK(dg < 1e-4 && dz < 1e-3, "gates (%.3g) or logits (%.3g) in chunks differ from batch 1", dg, dz);
        }
        ee_outputs_free(o1);
        ee_outputs_free(oc);
        ee_dataset_free(d128);
        ee_net_free(e5);
        ee_net_free(eu);
    }
    /* a network without confidence branches refuses the confidence policy, in simulation and inference */
    ee_net *sdn = small_sdn(ctx);
    if (sdn) {
        ee_outputs *so = NULL;
        CHECK_OK(ctx, ee_collect_outputs(ctx, sdn, ds, 64, 0, &so));
        ee_exit_policy p;
        ee_exit_stats st;
        ee_policy_shared(&p, EE_SCORE_CONFIDENCE, ee_net_num_heads(sdn), 0.5f, 0);
        double c[EE_MAX_HEADS];
        ee_net_head_costs(sdn, c, NULL);
        CHECK(so && !so->gate && ee_policy_simulate(ctx, so, c, &p, &st) == EE_ERR_ARG, "confidence policy on an SDN");
        float x1[784] = {0};
        uint8_t pr, ex;
        float cf;
        CHECK(ee_infer_policy(ctx, sdn, x1, 1, &p, NULL, &pr, &cf, &ex, NULL) == EE_ERR_ARG, "confidence inference on an SDN");
        ee_outputs_free(so);
        ee_net_free(sdn);
    }
    ee_dataset_free(ds);
    ee_net_free(ee);
    ee_net_free(cnn);
    ee_ctx_free(ctx);
}


static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* A network cut in two (an edge and a server, each with its own copy of the weights, sealed for inference): the
 * edge's exits, the split node's outputs of the samples that go on, and the server's exits give exactly what one
 * machine gives, at every split point, with and without the fallback to the most confident IC (the exit state
 * crosses too), and through the wire format at fp32; once more with each side's batch split between inference
 * workers (3 on the edge, 2 on the server). Split points inside a fused conv chain or on an exit branch
 * are refused; the fingerprint follows the weights and the policy, sealed or not. */
static void test_split(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_dataset *ds = tl_toy_data(64);
    ee_net *net = trained_sdn(ctx, ds), *edge = small_sdn(ctx), *srv = small_sdn(ctx);
    if (!net || !edge || !srv) return;
    int n = 64, H = ee_net_num_heads(net);
    ee_net *copies[2] = {edge, srv};
    for (int k = 0; k < 2; k++) {
        memcpy(ee_net_params(copies[k]), ee_net_params(net), ee_net_num_params(net) * sizeof(float));
        memcpy(ee_net_state(copies[k]), ee_net_state(net), ee_net_num_state(net) * sizeof(float));
        ee_net_params_changed(copies[k]);
    }
    uint64_t fp_net = ee_net_fingerprint(net);
    CHECK(fp_net == ee_net_fingerprint(edge), "the same weights give different fingerprints");
    float *x = malloc((size_t)n * 784 * 4), *act = malloc((size_t)n * 16 * 28 * 28 * 4 * 2);
    int idx[64];
    for (int i = 0; i < n; i++) idx[i] = i;
    ee_dataset_batch(ctx, ds, idx, n, NULL, x, NULL);
    CHECK_OK(ctx, ee_net_prepare(ctx, net, n, 0));
    CHECK_OK(ctx, ee_net_prepare(ctx, edge, n, 0));
    CHECK_OK(ctx, ee_net_prepare(ctx, srv, n, 0));
    CHECK_OK(ctx, ee_net_seal(ctx, edge));
    CHECK_OK(ctx, ee_net_seal(ctx, srv));
    CHECK(ee_net_fingerprint(edge) == fp_net, "sealing changed the fingerprint");
    ee_net_params(net)[5] += 1e-3f;
    CHECK(ee_net_fingerprint(net) != fp_net, "a changed weight keeps the fingerprint");
    ee_net_params(net)[5] -= 1e-3f;
    ee_net_params_changed(net);
    /* a threshold between two samples' IC-2 confidences, so that samples leave at several heads */
    ee_outputs *o = NULL;
    CHECK_OK(ctx, ee_collect_outputs(ctx, net, ds, 64, 0, &o));
    if (!o) return;
    float c2[64];
    for (int i = 0; i < n; i++) c2[i] = o->conf[i * H + 1];
    qsort(c2, n, sizeof *c2, cmp_float);
    float q = 0.5f * (c2[n / 2 - 1] + c2[n / 2]);
    float o2conf[64]; /* the final head's confidence: an answer with another came from an IC */
    for (int i = 0; i < n; i++) o2conf[i] = o->conf[i * H + H - 1];
    ee_outputs_free(o);
    int nsplit = 0, checked = 0, mixed = 0;
    /* one pass on each side, then the batch split between 3 workers on the edge and 2 on the server */
    for (int wk = 0; wk < 6; wk++) {
        const int fb = wk % 3;
        ee_net_set_eval_workers(edge, wk < 3 ? 1 : 3);
        ee_net_set_eval_workers(srv, wk < 3 ? 1 : 2);
        ee_exit_policy p;
        /* 2: no early exit, with the fallback: the most confident IC (its state sent across) answers when it beats
         * the final head */
        ee_policy_shared(&p, EE_SCORE_MAXPROB, H, fb == 2 ? 1.01f : q, fb > 0);
        uint8_t pw[64], ew[64], ww[64];
        float cw[64];
        CHECK_OK(ctx, ee_infer_policy(ctx, net, x, n, &p, NULL, pw, cw, ew, ww));
        if (fb == 2) { /* samples the fallback answers from an IC at the final exit */
            int fallen = 0;
            for (int j = 0; j < n; j++) fallen += ew[j] == H - 1 && fabsf(cw[j] - o2conf[j]) > 1e-6f;
            int fin = 0; for (int j = 0; j < n; j++) fin += ew[j] == H - 1;
            CHECK(fallen > 0, "no sample answered by the fallback: the exit state is not tested (%d at the final exit)", fin);
        }
        for (int i = 0; i < ee_net_num_nodes(net); i++) {
            ee_node_info in;
            ee_net_node_info(net, i, &in);
            ee_split sp;
            if (ee_split_at(ctx, net, in.name, &sp)) continue;
            nsplit += !wk;
            uint8_t pe[64], ee_[64], we[64], pr[64], er[64], wr[64];
            float ce[64], cr[64];
            ee_exit_state st[64], sent_st[64];
            int left[64], nleft = -1;
            memset(pe, 255, sizeof pe);
            CHECK_OK(ctx, ee_infer_edge(ctx, edge, x, n, &p, &sp, pe, ce, ee_, we, st, left, &nleft, act));
            /* through the wire: the rows and states of the samples that go on */
            for (int j = 0; j < nleft; j++) sent_st[j] = st[left[j]];
            size_t len = 0, cap = 0;
            ee_wire_request_size(ctx, nleft ? nleft : 1, sp.c, sp.h, sp.w, EE_WIRE_F32, EE_WIRE_STATES, &cap);
            unsigned char *buf = malloc(cap);
            ee_wire_request rq;
            float *back = malloc(cap);
            if (nleft) {
                CHECK_OK(ctx, ee_wire_encode_request(ctx, fp_net, in.name, act, nleft, sp.c, sp.h, sp.w, EE_WIRE_F32,
                                                     sent_st, NULL, buf, cap, &len));
                CHECK_OK(ctx, ee_wire_parse_request(ctx, buf, len, &rq));
                CHECK_OK(ctx, ee_wire_request_data(ctx, &rq, back, sent_st, NULL));
                CHECK_OK(ctx, ee_infer_resume(ctx, srv, back, nleft, &p, &sp, sent_st, pr, cr, er, wr));
            }
            for (int j = 0; j < nleft; j++) {
                int o2 = left[j];
                pe[o2] = pr[j]; ce[o2] = cr[j]; ee_[o2] = er[j]; we[o2] = wr[j];
            }
            int same = 1;
            for (int j = 0; j < n; j++)
                same &= pe[j] == pw[j] && ee_[j] == ew[j] && we[j] == ww[j] && fabsf(ce[j] - cw[j]) < 1e-6f;
            CHECK(same, "split at %s (fallback %d, %s): the answers differ from one machine's", in.name, fb,
                  wk < 3 ? "one pass" : "workers");
            mixed += nleft > 0 && nleft < n;
            checked++;
            free(buf);
            free(back);
        }
    }
    CHECK(nsplit >= 10 && checked == 6 * nsplit, "%d split points found, %d checked", nsplit, checked);
    CHECK(mixed >= 4, "only %d splits had samples both exit at the edge and go on", mixed);
    ee_split sp;
    CHECK(ee_split_at(ctx, net, "s1.b2.1.conv", &sp) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "fused"),
          "a split inside a fused chain: %s", ee_ctx_error(ctx));
    CHECK(ee_split_at(ctx, net, "ic1.fc", &sp) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "exit branch"),
          "a split on an exit branch: %s", ee_ctx_error(ctx));
    CHECK(ee_split_at(ctx, net, "s1.b2.1.relu", &sp) == EE_ERR_ARG, "a split inside a residual block is accepted");
    CHECK(ee_split_at(ctx, net, "nope", &sp) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "no node 'nope'"), "unknown node");
    free(x);
    free(act);
    ee_net_free(net);
    ee_net_free(edge);
    ee_net_free(srv);
    ee_dataset_free(ds);
    ee_ctx_free(ctx);
}

/* Hierarchical training's two halves against joint training: on the same weights and batch, the far part's
 * gradient equals the joint SDN gradient for every parameter after the split (no loss before the split reaches
 * them), and the near part's gradient equals the gradient of the near exits' losses alone (the joint one minus
 * what flows back from the far heads). */
static void test_split_training(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_dataset *ds = tl_toy_data(32);
    ee_net *a = small_sdn(ctx), *b = small_sdn(ctx);
    if (!a || !b) return;
    memcpy(ee_net_params(b), ee_net_params(a), ee_net_num_params(a) * sizeof(float));
    memcpy(ee_net_state(b), ee_net_state(a), ee_net_num_state(a) * sizeof(float));
    ee_net_params_changed(b);
    int n = 32, H = ee_net_num_heads(a), idx[32];
    for (int i = 0; i < n; i++) idx[i] = i;
    float *x = malloc((size_t)n * 784 * 4), *act = malloc((size_t)n * 16 * 784 * 4);
    uint8_t y[32];
    ee_dataset_batch(ctx, ds, idx, n, NULL, x, y);
    CHECK_OK(ctx, ee_net_prepare(ctx, a, n, 1));
    CHECK_OK(ctx, ee_net_prepare(ctx, b, n, 1));
    ee_split sp;
    CHECK_OK(ctx, ee_split_at(ctx, a, "s1.b3.add", &sp));
    float w[EE_MAX_HEADS];
    ee_train_head_weights(a, EE_MODE_SDN, 3, 10, w);
    size_t np = ee_net_num_params(a);
    float *joint = malloc(np * 4), *near = malloc(np * 4), *far = malloc(np * 4);
    /* joint: every head */
    CHECK_OK(ctx, ee_net_forward(ctx, a, x, n, 1));
    ee_net_zero_seeds(a);
    for (int h = 0; h < H; h++) CHECK_OK(ctx, ee_net_loss(ctx, a, h, y, n, w[h], NULL, NULL));
    CHECK_OK(ctx, ee_net_backward(ctx, a, n));
    memcpy(joint, ee_net_grads(a), np * 4);
    /* near only, on a fresh forward of the same net */
    CHECK_OK(ctx, ee_net_forward(ctx, a, x, n, 1));
    ee_net_zero_seeds(a);
    for (int h = 0; h < sp.heads; h++) CHECK_OK(ctx, ee_net_loss(ctx, a, h, y, n, w[h], NULL, NULL));
    CHECK_OK(ctx, ee_net_backward(ctx, a, n));
    memcpy(near, ee_net_grads(a), np * 4);
    /* the two halves on b */
    CHECK_OK(ctx, ee_split_train_edge(ctx, b, &sp, x, y, n, w, act, NULL, NULL));
    CHECK(tl_close(ee_net_grads(b), near, np, 1e-6, 1e-4, NULL) <= 1, "the edge's gradient is not the near exits' alone");
    CHECK(tl_close(act, ee_net_node_output(a, sp.node), (size_t)n * 16 * 784, 1e-6, 1e-5, NULL) <= 1,
          "the edge sends something else than the split node's output");
    CHECK_OK(ctx, ee_split_train_far(ctx, b, &sp, act, y, n, w, NULL, NULL));
    memcpy(far, ee_net_grads(b), np * 4);
    /* a separate copy that never ran the near part (the cloud's) computes the same far gradient */
    ee_net *c = small_sdn(ctx);
    if (c) {
        memcpy(ee_net_params(c), ee_net_params(a), np * sizeof(float));
        memcpy(ee_net_state(c), ee_net_state(a), ee_net_num_state(a) * sizeof(float));
        ee_net_params_changed(c);
        CHECK_OK(ctx, ee_net_prepare(ctx, c, n, 1));
        double l1 = 0, l2 = 0;
        CHECK_OK(ctx, ee_split_train_far(ctx, c, &sp, act, y, n, w, &l1, NULL));
        CHECK_OK(ctx, ee_split_train_far(ctx, b, &sp, act, y, n, w, &l2, NULL));
        CHECK(fabs(l1 - l2) < 1e-5 * fabs(l2) + 1e-6, "a fresh cloud copy gets loss %g, the edge's own net %g", l1, l2);
        CHECK(tl_close(ee_net_grads(c), ee_net_grads(b), np, 1e-6, 1e-4, NULL) <= 1, "a fresh cloud copy gets another gradient");
        ee_net_free(c);
    }
    /* compare parameter by parameter: after the split, far == joint; before, far == 0 */
    int bad_after = 0, bad_before = 0, after = 0;
    for (int t = 0; t < ee_net_num_tensors(b); t++) {
        const char *name;
        float *d;
        size_t cnt;
        int nd, dims[4], st;
        ee_net_tensor(b, t, &name, &d, &cnt, &nd, dims, &st);
        if (st) continue;
        size_t off = (size_t)(d - ee_net_params(b));
        char node[64];
        snprintf(node, sizeof node, "%s", name);
        char *dot = strrchr(node, '.');
        if (dot) *dot = 0;
        int k = ee_net_find_node(b, node);
        if (k >= sp.resume) {
            after++;
            bad_after += tl_close(far + off, joint + off, cnt, 1e-6, 1e-4, NULL) > 1;
        } else
            for (size_t i = 0; i < cnt; i++) bad_before += far[off + i] != 0;
    }
    CHECK(after > 10 && !bad_after, "%d of %d tensors after the split differ from the joint gradient", bad_after, after);
    CHECK(!bad_before, "%d gradients before the split are not zero on the far side", bad_before);
    free(x); free(act); free(joint); free(near); free(far);
    ee_net_free(a); ee_net_free(b);
    ee_dataset_free(ds);
    ee_ctx_free(ctx);
}

int main(void) {
    test_split_training();
    test_split();
    test_uncertainty();
    test_learned_policy();
    test_cascade();
    test_sidenet();
    test_text();
    test_eenet();
    test_positions();
    test_torch_sdn();
    test_ic_only_frozen();
    test_exits();
    test_calibration();
    test_scores();
    test_policies();
    test_risk_control();
    return tl_summary("test_sdn");
}
