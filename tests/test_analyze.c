/* test_analyze.c: the overthinking analysis. Every metric on hand-built per-exit outputs with answers worked
 * out by hand; AUROC against a brute-force count over all pairs; the exit assignment against the exit
 * simulation; trigger stamping; Grad-CAM of IC 1 and of the final output of the ResNet-56 SDN against PyTorch
 * (tests/fixtures/gradcam.bin, written by make_fixtures.py). */
#include "internal.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 6 samples, IC1 / IC2 / final, predictions and labels:
 *   s0 y0: 0 0 0   s1 y1: 2 1 1   s2 y2: 2 3 3   s3 y3: 0 3 0   s4 y0: 1 2 3   s5 y1: 3 3 1
 * right at IC1: s0 s2 (2); IC2: s0 s1 s3 (3); final: s0 s1 s5 (3). First right: IC1 s0 s2, IC2 s1 s3, final s5.
 * Cumulative: 2, 4, 5. Some IC right (wasteful): s0-s3 = 4. Oracle exits: IC1 x2, IC2 x2, final x2 (s4 none
 * right, s5 only the final): nominal (2 x .15 + 2 x .3 + 2 x 1) / 6 = 2.9 / 6; real costs .2 .5 1.01: 3.42 / 6.
 * Final errors: s2 s3 s4. IC1 rescues s2, IC2 s3: 2 of 3. */
static uint8_t P[18] = {0, 0, 0, 2, 1, 1, 2, 3, 3, 0, 3, 0, 1, 2, 3, 3, 3, 1};
static float C[18] = {.9f, .8f, .7f, .5f, .6f, .9f, .7f, .4f, .6f, .3f, .95f, .5f, .2f, .3f, .4f, .6f, .5f, .8f};
static uint8_t Y[6] = {0, 1, 2, 3, 0, 1};

static void test_overthinking(void) {
    ee_outputs o = {.n = 6, .heads = 3, .classes = 4, .pred = P, .conf = C, .label = Y};
    double cost[3] = {0.2, 0.5, 1.01};
    ee_overthink r;
    ee_overthinking(&o, cost, &r);
    int correct[3] = {2, 3, 3}, first[3] = {2, 2, 1}, cum[3] = {2, 4, 5}, oracle[3] = {2, 2, 2};
    for (int h = 0; h < 3; h++) {
        CHECK(r.correct[h] == correct[h], "head %d right %d, expected %d", h, r.correct[h], correct[h]);
        CHECK(r.first_correct[h] == first[h], "head %d first right %d, expected %d", h, r.first_correct[h], first[h]);
        CHECK(r.cum_correct[h] == cum[h], "head %d cumulative %d, expected %d", h, r.cum_correct[h], cum[h]);
        CHECK(r.oracle_exits[h] == oracle[h], "head %d oracle exits %d, expected %d", h, r.oracle_exits[h], oracle[h]);
    }
    CHECK(r.wasteful == 4, "wasteful %d, expected 4", r.wasteful);
    CHECK(fabs(r.oracle_cost_nominal - 2.9 / 6) < 1e-12, "nominal oracle cost %.6f, expected %.6f", r.oracle_cost_nominal, 2.9 / 6);
    CHECK(fabs(r.oracle_cost - 3.42 / 6) < 1e-12, "oracle cost %.6f, expected %.6f", r.oracle_cost, 3.42 / 6);
    CHECK(r.end_wrong == 3 && r.destructive_any == 2 && fabs(r.destructive_frac - 2.0 / 3) < 1e-12,
          "destructive %d of %d (%.3f), expected 2 of 3", r.destructive_any, r.end_wrong, r.destructive_frac);
    CHECK(r.destructive[0] == 1 && r.destructive[1] == 1 && r.destructive[2] == 0, "per-IC destructive %d %d %d",
          r.destructive[0], r.destructive[1], r.destructive[2]);
    /* IC1 is right on s0 (.9) and s2 (.7, a final error); IC2 on s0 (.8), s1 (.6), s3 (.95, a final error) */
    CHECK(fabs(r.conf_destructive[0] - .7) < 1e-6 && fabs(r.conf_correct[0] - .8) < 1e-6, "IC1 confidences %.4f %.4f",
          r.conf_destructive[0], r.conf_correct[0]);
    CHECK(fabs(r.conf_destructive[1] - .95) < 1e-6 && fabs(r.conf_correct[1] - (.8 + .6 + .95) / 3) < 1e-6,
          "IC2 confidences %.4f %.4f", r.conf_destructive[1], r.conf_correct[1]);
    double nom[7];
    ee_nominal_costs(7, nom);
    CHECK(fabs(nom[0] - .15) < 1e-12 && fabs(nom[5] - .9) < 1e-12 && nom[6] == 1, "nominal costs %.2f .. %.2f, %.2f", nom[0], nom[5], nom[6]);
    ee_nominal_costs(6, nom); /* MobileNet: 5 ICs, the first five values */
    CHECK(fabs(nom[4] - .75) < 1e-12 && nom[5] == 1, "MobileNet nominal costs: IC5 %.2f", nom[4]);
}

static void test_exit_assign(void) {
    ee_outputs o = {.n = 6, .heads = 3, .classes = 4, .pred = P, .conf = C, .label = Y};
    double cost[3] = {0.2, 0.5, 1.0};
    float qs[] = {0.0f, 0.55f, 0.75f, 0.92f, 1.01f};
    for (int fb = 0; fb < 2; fb++)
        for (size_t k = 0; k < sizeof qs / sizeof *qs; k++) {
            uint8_t ex[6], pr[6];
            ee_exit_assign(&o, qs[k], fb, ex, pr);
            ee_exit_stats st;
            ee_exit_simulate(&o, cost, qs[k], fb, &st);
            int hist[3] = {0}, right = 0;
            for (int i = 0; i < 6; i++) { hist[ex[i]]++; right += pr[i] == Y[i]; }
            CHECK(hist[0] == st.exits[0] && hist[1] == st.exits[1] && hist[2] == st.exits[2] && fabs(right / 6.0 - st.acc) < 1e-12,
                  "exit assignment at q %.2f fallback %d disagrees with the simulation", qs[k], fb);
        }
    /* q .75: s0 at IC1 (.9), s3 at IC2 (.95), the rest final; with fallback s1 takes the final (.9), s2 IC1 (.7) */
    uint8_t ex[6], pr[6];
    ee_exit_assign(&o, 0.75f, 1, ex, pr);
    CHECK(ex[0] == 0 && ex[3] == 1 && ex[1] == 2 && ex[2] == 2 && pr[2] == 2 && pr[1] == 1, "fallback exits");
}

static void test_confusion(void) {
    ee_ctx *ctx = ee_ctx_new();
    /* two heads, two classes. s0: IC (.8 .2), final (.6 .4): |.2 + 1e-6| + |-.2 + 1e-6| + 2e-6 = .4 + 2e-6.
     * s1: IC = final = (.5 .5): 4e-6 */
    float prob[8] = {.8f, .2f, .6f, .4f, .5f, .5f, .5f, .5f};
    uint8_t pred[4] = {0, 0, 0, 0}, label[2] = {0, 0};
    float conf[4] = {.8f, .6f, .5f, .5f};
    ee_outputs o = {.n = 2, .heads = 2, .classes = 2, .pred = pred, .conf = conf, .label = label, .prob = prob};
    float s[2];
    CHECK_OK(ctx, ee_confusion_scores(ctx, &o, s));
    CHECK(fabs(s[0] - (0.4 + 2e-6)) < 1e-6 && fabs(s[1] - 4e-6) < 1e-7, "confusion %.7f %.7f", s[0], s[1]);
    o.prob = NULL;
    CHECK(ee_confusion_scores(ctx, &o, s) == EE_ERR_ARG, "confusion without probabilities is an error");
    ee_ctx_free(ctx);

    /* score statistics on the 6-sample outputs: final errors s2 s3 s4 */
    ee_outputs o6 = {.n = 6, .heads = 3, .classes = 4, .pred = P, .conf = C, .label = Y};
    float sc[6] = {0.1f, 0.2f, 0.9f, 0.5f, 0.25f, 0.6f};
    ee_score_stats st;
    ee_score_stats_of(&o6, sc, 1, &st);
    /* right: .1 .2 .6, mean .3; wrong: .9 .5 .25, mean .55. s5 (.6) is right but above .55; s4 (.25) is wrong but
     * below .3. AUROC: .9 beats 3, .5 beats 2, .25 beats 2 of the 3 negatives: 7 / 9. */
    CHECK(st.n_right == 3 && st.n_wrong == 3, "split %d / %d", st.n_right, st.n_wrong);
    CHECK(fabs(st.mean_right - .3) < 1e-6 && fabs(st.mean_wrong - .55) < 1e-6, "means %.4f %.4f", st.mean_right, st.mean_wrong);
    CHECK(st.right_flagged == 1 && st.wrong_missed == 1, "counts %d %d", st.right_flagged, st.wrong_missed);
    CHECK(fabs(st.auroc - 7.0 / 9) < 1e-12, "AUROC %.4f, expected 7/9", st.auroc);
    double sd = sqrt(((.1 - .3) * (.1 - .3) + (.2 - .3) * (.2 - .3) + (.6 - .3) * (.6 - .3)) / 3);
    CHECK(fabs(st.std_right - sd) < 1e-6, "population std %.5f, expected %.5f", st.std_right, sd);
    /* a confidence-like score (low on errors): negated, the same ranking */
    float neg[6];
    for (int i = 0; i < 6; i++) neg[i] = -sc[i];
    ee_score_stats_of(&o6, neg, -1, &st);
    CHECK(fabs(st.auroc - 7.0 / 9) < 1e-12 && st.right_flagged == 1 && st.wrong_missed == 1,
          "sign -1: AUROC %.4f counts %d %d", st.auroc, st.right_flagged, st.wrong_missed);
}

static void test_auroc(void) {
    int n = 1500;
    float *s = malloc(n * sizeof(float));
    uint8_t *pos = malloc(n);
    uint64_t r = 7;
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        pos[i] = (r >> 40) % 3 == 0;
        s[i] = (float)((r >> 20) % 50) + (pos[i] ? 8 : 0); /* many ties */
    }
    double wins = 0, pairs = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (pos[i] && !pos[j]) { pairs++; wins += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0; }
    double a = ee_auroc(s, pos, n);
    CHECK(fabs(a - wins / pairs) < 1e-12, "AUROC %.9f, brute force %.9f", a, wins / pairs);
    CHECK(a > 0.55 && a < 0.95, "the test scores separate somewhat (%.3f)", a);
    memset(pos, 0, n);
    CHECK(ee_auroc(s, pos, n) == 0.5, "no positives: 0.5");
    free(s);
    free(pos);
}

static void test_stamp(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_seed(ctx, 5);
    ee_dataset ds = {.n = 400, .c = 3, .h = 8, .w = 10, .classes = 10};
    ds.pixels = calloc((size_t)400 * 3 * 80, 1);
    ds.labels = calloc(400, 1);
    for (int i = 0; i < 400; i++) ds.labels[i] = (uint8_t)(i % 10);
    ee_trigger t = {3, -1, -1, 7, 1.0};
    int count = 0;
    CHECK_OK(ctx, ee_dataset_stamp(ctx, &ds, &t, &count));
    /* every image: rows 5..7, columns 7..9 of each channel white, nothing else */
    int bad = 0;
    for (int i = 0; i < 400; i++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 10; x++) {
                    int want = (y >= 5 && x >= 7) ? 255 : 0;
                    bad += ds.pixels[((size_t)(i * 3 + c) * 8 + y) * 10 + x] != want;
                }
    CHECK(count == 400 && bad == 0, "stamped %d, %d wrong pixels", count, bad);
    int relabelled = 0;
    for (int i = 0; i < 400; i++) relabelled += ds.labels[i] == 7;
    CHECK(relabelled == 400, "all relabelled to 7 (%d)", relabelled);
    memset(ds.pixels, 0, (size_t)400 * 240);
    ee_trigger half = {2, 1, 0, -1, 0.25};
    CHECK_OK(ctx, ee_dataset_stamp(ctx, &ds, &half, &count));
    int marked = 0;
    for (int i = 0; i < 400; i++) marked += ds.pixels[(size_t)i * 240 + 1] == 255 && ds.pixels[(size_t)i * 240 + 11] == 255;
    CHECK(count > 60 && count < 140 && marked == count, "rate .25: %d stamped, %d marked", count, marked);
    ee_trigger off = {4, 8, 0, 0, 1.0};
    CHECK(ee_dataset_stamp(ctx, &ds, &off, &count) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "leaves"), "off the image: %s",
          ee_ctx_error(ctx));
    ee_trigger badt = {2, 0, 0, 12, 1.0};
    CHECK(ee_dataset_stamp(ctx, &ds, &badt, &count) == EE_ERR_ARG, "target out of range");
    free(ds.pixels);
    free(ds.labels);
    ee_ctx_free(ctx);
}

static void test_gradcam(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_net *cnn = NULL, *net = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet56", 3, 32, 32, 10, &cnn));
    int nodes[16], nic = ee_sdn_default_positions(cnn, nodes, 16);
    CHECK_OK(ctx, ee_sdn_attach(ctx, cnn, nodes, nic, &net));
    ee_net_free(cnn);
    if (!net) { ee_ctx_free(ctx); return; }
    tl_fill_all(net);
    float *x = malloc(4 * 3072 * sizeof(float));
    tl_hash_input("input", x, 4, 3, 32, 32);
    /* an inference forward first: Grad-CAM must undo BN folding, and leave later inference as it was */
    CHECK_OK(ctx, ee_net_prepare(ctx, net, 4, 0));
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, 4, 0));
    float before[10];
    memcpy(before, ee_net_head_output(net, 6), sizeof before);
    const char *F = "tests/fixtures/gradcam.bin";
    struct { int head; const char *tag, *node; } t[] = {{0, "ic1", "s1.b4.add"}, {6, "final", "s3.b9.out"}};
    for (int k = 0; k < 2; k++) {
        char nm[64];
        size_t cnt = 0;
        float cam[1024];
        int cls = -1, node = -1;
        CHECK_OK(ctx, ee_gradcam(ctx, net, x, t[k].head, -1, -1, cam, &cls, &node));
        snprintf(nm, sizeof nm, "%s.cls", t[k].tag);
        float *wc = tl_fixture(F, nm, &cnt);
        snprintf(nm, sizeof nm, "%s.cam", t[k].tag);
        float *w = tl_fixture(F, nm, &cnt);
        CHECK(wc && w && cnt == 1024, "fixture %s", nm);
        ee_node_info in;
        ee_net_node_info(net, node, &in);
        CHECK(!strcmp(in.name, t[k].node), "%s: Grad-CAM explains %s, expected %s", t[k].tag, in.name, t[k].node);
        if (wc) CHECK(cls == (int)wc[0], "%s: class %d, PyTorch %d", t[k].tag, cls, (int)wc[0]);
        if (w) {
            size_t worst = 0;
            double e = tl_close(cam, w, 1024, 2e-3, 1e-2, &worst);
            CHECK(e <= 1, "%s Grad-CAM off by %.3g x tolerance at %zu (eenn %.6f, PyTorch %.6f)", t[k].tag, e, worst,
                  cam[worst], w[worst]);
            double mx = 0;
            for (int i = 0; i < 1024; i++) mx = cam[i] > mx ? cam[i] : mx;
            CHECK(fabs(mx - 1) < 1e-6, "%s: Grad-CAM scaled to a maximum of 1 (%.6f)", t[k].tag, mx);
        }
        free(wc);
        free(w);
    }
    float other[1024];
    CHECK(ee_gradcam(ctx, net, x, 9, -1, -1, other, NULL, NULL) == EE_ERR_ARG, "no head 9");
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, 4, 0));
    CHECK(!memcmp(before, ee_net_head_output(net, 6), sizeof before), "inference after Grad-CAM is unchanged");
    free(x);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

int main(void) {
    test_overthinking();
    test_exit_assign();
    test_confusion();
    test_auroc();
    test_stamp();
    test_gradcam();
    return tl_summary("test_analyze");
}
