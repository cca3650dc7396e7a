/* test_core.c: hand-computed and round-trip tests of everything around the layers: optimisers and schedules,
 * the architecture parser (strictness, line numbers), parameter and FLOP counts of the SDN backbones, model
 * files (round trip; truncated, corrupted, wrong-version and mismatched files), the IDX and CIFAR loaders on
 * files generated here in the published layouts, batch compaction, and bit-identical training from a seed. */
#include "internal.h"
#include "dnnl_glue.h"
#define EE_STR_DNNL2(x) #x
#define EE_STR_DNNL1(x) EE_STR_DNNL2(x)
#define EE_STR_DNNL_MAJOR EE_STR_DNNL1(DNNL_VERSION_MAJOR)
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

static void test_sgd_adam(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, "input c=2 h=1 w=1\nlinear out=2 bias=0\n", "t", &net));
    float *p = ee_net_params(net), *g = ee_net_grads(net);
    /* SGD, momentum 0.9, wd 0.1, lr 0.5, grads 1 then 2: hand-computed
     * step1: d = 1 + 0.1*1 = 1.1, buf = 1.1, p = 1 - 0.55 = 0.45
     * step2: d = 2 + 0.045 = 2.045, buf = 0.99 + 2.045 = 3.035, p = 0.45 - 1.5175 = -1.0675 */
    ee_optim o = {EE_OPTIM_SGD, 0.5f, 0.9f, 0.1f, 0, 0, 0, 0};
    ee_optim_state *st;
    CHECK_OK(ctx, ee_optim_state_new(ctx, net, &o, &st));
    p[0] = 1; g[0] = 1;
    ee_optim_step(ctx, net, st, 0.5f);
    CHECK(fabsf(p[0] - 0.45f) < 1e-6f, "SGD step 1: %g", p[0]);
    g[0] = 2;
    ee_optim_step(ctx, net, st, 0.5f);
    CHECK(fabsf(p[0] + 1.0675f) < 1e-5f, "SGD step 2: %g", p[0]);
    ee_optim_state_free(st);
    /* Nesterov, no wd: step1 d=1, buf=1, upd = 1 + 0.9 = 1.9 -> p = 1 - 0.19 = 0.81 (lr 0.1) */
    ee_optim on = {EE_OPTIM_SGD, 0.1f, 0.9f, 0, 1, 0, 0, 0};
    CHECK_OK(ctx, ee_optim_state_new(ctx, net, &on, &st));
    p[0] = 1; g[0] = 1;
    ee_optim_step(ctx, net, st, 0.1f);
    CHECK(fabsf(p[0] - 0.81f) < 1e-6f, "Nesterov step: %g", p[0]);
    ee_optim_state_free(st);
    /* Adam: the first step moves by lr * sign(g) (bias-corrected m/sqrt(v) = 1) */
    ee_optim oa = {EE_OPTIM_ADAM, 0.01f, 0, 0, 0, 0.9f, 0.999f, 1e-8f};
    CHECK_OK(ctx, ee_optim_state_new(ctx, net, &oa, &st));
    p[0] = 1; g[0] = 3; p[1] = 2; g[1] = -0.5f;
    ee_optim_step(ctx, net, st, 0.01f);
    CHECK(fabsf(p[0] - 0.99f) < 1e-6f && fabsf(p[1] - 2.01f) < 1e-6f, "Adam step 1: %g %g", p[0], p[1]);
    /* step 2 with g = 1: m = 0.09*3... computed in double below */
    double m = 0.1 * 3, v = 0.001 * 9;
    g[0] = 1;
    m = 0.9 * m + 0.1 * 1; v = 0.999 * v + 0.001 * 1;
    double want = 0.99 - 0.01 * (m / (1 - 0.81)) / (sqrt(v / (1 - 0.998001)) + 1e-8);
    ee_optim_step(ctx, net, st, 0.01f);
    CHECK(fabs(p[0] - want) < 1e-6, "Adam step 2: %g vs %g", p[0], want);
    ee_optim_state_free(st);
    ee_optim bad = {EE_OPTIM_SGD, -1, 0, 0, 0, 0, 0, 0};
    CHECK(ee_optim_state_new(ctx, net, &bad, &st) == EE_ERR_ARG, "negative lr accepted");
    ee_schedule s = {EE_SCHED_STEP, 0.1f, 0.1f, {35, 60, 85}, 3, 100, 0};
    CHECK(fabsf(ee_schedule_lr(&s, 34) - 0.1f) < 1e-7f && fabsf(ee_schedule_lr(&s, 35) - 0.01f) < 1e-8f &&
          fabsf(ee_schedule_lr(&s, 99) - 1e-4f) < 1e-9f, "multi-step schedule");
    ee_schedule c = {EE_SCHED_COSINE, 0.1f, 0, {0}, 0, 10, 0};
    CHECK(fabsf(ee_schedule_lr(&c, 0) - 0.1f) < 1e-7f && fabsf(ee_schedule_lr(&c, 5) - 0.05f) < 1e-6f, "cosine schedule");
    ee_net_free(net);
    ee_ctx_free(ctx);
}

static void expect_parse_error(const char *text, const char *needle) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    ee_status s = ee_net_from_text(ctx, text, "arch.txt", &net);
    CHECK(s != EE_OK && strstr(ee_ctx_error(ctx), needle), "expected error containing '%s', got '%s'", needle,
          ee_ctx_error(ctx));
    ee_net_free(net);
    ee_ctx_free(ctx);
}

static void test_arch(void) {
    expect_parse_error("input c=1 h=8 w=8\nconv out=4 k=3 colour=red\n", "arch.txt:2: unknown key 'colour'");
    expect_parse_error("input c=1 h=8 w=8\nconv out=4\n", "arch.txt:2: conv needs out= and k=");
    expect_parse_error("input c=1 h=8 w=8\n\n# c\nconv out= k=3\n", "arch.txt:4: key 'out' has no value");
    expect_parse_error("input c=1 h=8 w=8\nconv out=4x k=3\n", "arch.txt:2: key 'out' needs an integer");
    expect_parse_error("input c=1 h=8 w=8\nfoo\n", "arch.txt:2: unknown layer kind 'foo'");
    expect_parse_error("conv out=4 k=3\n", "arch.txt:1: the 'input' line must come before");
    expect_parse_error("input c=1 h=8 w=8\nadd in=input\n", "add needs in=A,B");
    expect_parse_error("input c=1 h=8 w=8\nrelu in=nothere\n", "input 'nothere' is not an earlier node");
    expect_parse_error("input c=1 h=8 w=8\nconv out=4 k=3\n", "must produce a vector");
    expect_parse_error("input c=3 h=8 w=8\nconv out=4 k=3 groups=2\ngap\nlinear out=2\n", "groups=2 must divide");
    expect_parse_error("input c=1 h=8 w=8\nlinear out=3\n", "needs a vector input");
    expect_parse_error("input c=1 h=2 w=2\nconv out=2 k=5\ngap\nlinear out=2\n", "is empty");
    expect_parse_error("input c=1 h=8 w=8\nconv out=4 k=3 k=5\n", "arch.txt:2: key 'k' is given twice");
    expect_parse_error("input h=3 h=8 w=8\ngap\n", "arch.txt:1: key 'h' is given twice");
    /* sizes that wrapped around: refused before anything is allocated */
    expect_parse_error("input c=1 h=28 w=28\nconv out=16384 k=28\nconv out=65536 k=65536 pad=32768 bias=0\ngap\nlinear out=10\n",
                       "arch.txt: conv 'conv1': 65536 x 16384 x 65536 x 65536 = 4.612e+18 weights, more than the 1073741824");
    expect_parse_error("input c=4096 h=4096 w=4096\ngap\nlinear out=2\n", "values per sample, more than 268435456");
    expect_parse_error("input c=64 h=2048 w=2048\nconv out=65536 k=1\ngap\nlinear out=2\n",
                       "output 65536x2048x2048 has 2.749e+11 values per sample");
    expect_parse_error("input c=1 h=1 w=1\nlinear out=16777216\nlinear out=16777216\n", "linear 'linear1': 16777216 x 16777216");
    expect_parse_error("input c=1 h=8 w=8\ninput c=1 h=8 w=8\ngap\n", "arch.txt:2: a second 'input' line");
    expect_parse_error("input c=1 h=8 w=8\nconv name=conv1 out=4 k=3\nconv out=4 k=3\n",
                       "arch.txt:3: node name 'conv1' is used twice");
    expect_parse_error("input c=1 h=8 w=8\nmaxpool stride=2\n", "arch.txt:2: maxpool needs k=");
    expect_parse_error("input c=1 h=8 w=8\nrelu in=input,input\n", "relu takes one input");
    expect_parse_error("input c=1 h=8 w=8\nbn eps=0\n", "key 'eps' has a bad number");
    ee_ctx *ctx = ee_ctx_new();
    /* the layer table names the built-in kinds in ee_kind order */
    static const char *const kinds[] = {"conv", "bn", "relu", "maxpool", "avgpool", "gap", "linear", "dropout",
                                        "flatten", "add", "mixpool"};
    CHECK(ee_nlayers >= 11, "layer table has %d kinds", ee_nlayers);
    for (int k = 0; k < 11 && k < ee_nlayers; k++)
        CHECK(!strcmp(ee_layers[k]->name, kinds[k]), "layer table entry %d is %s, expected %s", k, ee_layers[k]->name,
              kinds[k]);
    CHECK(!strcmp(ee_layers[EE_KIND_MIXPOOL]->name, "mixpool") && !strcmp(ee_layers[EE_KIND_CONV]->name, "conv"),
          "EE_KIND_* do not index the layer table");
    /* every built-in architecture: text -> net -> canonical text -> net -> the same text, and that text is the one
     * the files in tests/fixtures/arch/ hold (written by an earlier build: model files stay byte-compatible) */
    static const char *const archs[] = {"resnet20", "resnet56", "resnet110", "vgg16bn", "wrn32_4", "mobilenet"};
    static const int shapes[][3] = {{1, 28, 28}, {3, 32, 32}, {3, 64, 64}};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 3; j++) {
            const int *sh = shapes[j];
            ee_net *a = NULL, *b = NULL, *c = NULL;
            char *text = NULL;
            CHECK_OK(ctx, ee_builtin_text(ctx, archs[i], sh[0], sh[1], sh[2], 10, &text));
            CHECK_OK(ctx, ee_net_from_text(ctx, text ? text : "", archs[i], &a));
            if (a) CHECK_OK(ctx, ee_net_from_text(ctx, ee_net_arch(a), "canonical", &b));
            CHECK(a && b && !strcmp(ee_net_arch(a), ee_net_arch(b)), "%s %dx%dx%d: canonical text does not round-trip",
                  archs[i], sh[0], sh[1], sh[2]);
            char path[256];
            snprintf(path, sizeof path, "tests/fixtures/arch/%s-%dx%dx%d.txt", archs[i], sh[0], sh[1], sh[2]);
            FILE *f = fopen(path, "rb");
            if (f && a) {
                static char want[1 << 17];
                size_t len = fread(want, 1, sizeof want - 1, f);
                want[len] = 0;
                CHECK(!strcmp(want, ee_net_arch(a)), "%s: the canonical text differs from the fixture", path);
            }
            if (f) fclose(f);
            /* the same with internal classifiers attached */
            int nodes[16], n = a ? ee_sdn_default_positions(a, nodes, 15) : 0;
            if (a) CHECK_OK(ctx, ee_sdn_attach(ctx, a, nodes, n, &c));
            ee_net_free(b);
            b = NULL;
            if (c) CHECK_OK(ctx, ee_net_from_text(ctx, ee_net_arch(c), "canonical", &b));
            CHECK(c && b && !strcmp(ee_net_arch(c), ee_net_arch(b)), "%s SDN: canonical text does not round-trip",
                  archs[i]);
            free(text);
            ee_net_free(a); ee_net_free(b); ee_net_free(c);
        }
    /* parameter counts of the SDN paper's CIFAR-10 backbones and the reference profiler's GOps (sdn.md) */
    struct { const char *arch; double params, ref_gops; } want[] = {
        {"resnet56", 0.86e6, 0.253}, {"vgg16bn", 15.25e6, 0.628}, {"wrn32_4", 7.40e6, 2.375}, {"mobilenet", 3.22e6, 0.750}};
    for (int i = 0; i < 4; i++) {
        ee_net *n = NULL;
        CHECK_OK(ctx, ee_net_builtin(ctx, want[i].arch, 3, 32, 32, 10, &n));
        if (!n) continue;
        double prof = 0;
        for (int j = 0; j < ee_net_num_nodes(n); j++) { ee_node_info in; ee_net_node_info(n, j, &in); prof += in.profiler_ops; }
        double np = (double)ee_net_num_params(n);
        CHECK(fabs(np / want[i].params - 1) < 0.01, "%s: %.0f parameters, expected %.2fM", want[i].arch, np, want[i].params / 1e6);
        CHECK(fabs(prof / 1e9 / want[i].ref_gops - 1) < 0.005, "%s: %.4f reference GOps, expected %.3f", want[i].arch,
              prof / 1e9, want[i].ref_gops);
        ee_net_free(n);
    }
    /* Tiny ImageNet: stride-2 stems keep ResNet at 32x32 after the stem; VGG's 64-pixel head is 2048 wide */
    ee_net *t = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet56", 3, 64, 64, 200, &t));
    if (t) { ee_node_info in; ee_net_node_info(t, 0, &in); CHECK(in.h == 32, "ResNet 64px stem output %d", in.h); ee_net_free(t); }
    CHECK_OK(ctx, ee_net_builtin(ctx, "vgg16bn", 3, 64, 64, 200, &t));
    if (t) { CHECK(fabs(ee_net_num_params(t) / 21.22e6 - 1) < 0.01, "VGG TinyImageNet params %zu", ee_net_num_params(t)); ee_net_free(t); }
    for (int i = 0; i < 4; i++) { /* every backbone builds at Fashion-MNIST's 1x28x28 */
        CHECK_OK(ctx, ee_net_builtin(ctx, want[i].arch, 1, 28, 28, 10, &t));
        ee_net_free(t);
    }
    ee_ctx_free(ctx);
}

static void write_bytes(const char *path, const void *d, size_t n, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, d, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(d, 1, n, f);
        fclose(f);
    }
}

static void make_idx(const char *dir, const char *pre, int n, int gz, int truncate) {
    char p[1200];
    size_t len = 16 + (size_t)n * 28 * 28;
    uint8_t *im = calloc(1, len), lb[8 + 64];
    uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 28, 0, 0, 0, 28};
    memcpy(im, hdr, 16);
    for (int i = 0; i < n; i++) im[16 + (size_t)i * 784 + i] = (uint8_t)(10 * i);
    uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)n};
    memcpy(lb, lh, 8);
    for (int i = 0; i < n; i++) lb[8 + i] = (uint8_t)(i % 10);
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, pre, gz ? ".gz" : "");
    write_bytes(p, im, truncate ? len - 100 : len, gz);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, pre, gz ? ".gz" : "");
    write_bytes(p, lb, 8 + n, gz);
    free(im);
}

static void test_data(void) {
    ee_ctx *ctx = ee_ctx_new();
    char d[512], p[600], q[600];
    {   /* a 20 KB gzip file whose header announces 10 images but inflates to 20 MB: reading stops at the header's
         * size instead of inflating it all */
        ee_dataset *bomb = NULL;
        ee_status s = ee_dataset_load_idx(ctx, "tests/fixtures/bomb-images-idx3-ubyte.gz",
                                          "tests/fixtures/bomb-labels-idx1-ubyte.gz", &bomb);
        CHECK(s == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "trailing bytes: header says 10 images of 28x28") &&
                  strstr(ee_ctx_error(ctx), "reading stopped there") && !bomb,
              "decompression bomb: '%s'", ee_ctx_error(ctx));
    }
    for (int gz = 0; gz < 2; gz++) {
        snprintf(d, sizeof d, "%s/idx%d", tmpdir, gz);
        snprintf(p, sizeof p, "mkdir -p %s", d);
        CHECK(system(p) == 0, "mkdir");
        make_idx(d, "train", 20, gz, 0);
        make_idx(d, "t10k", 7, gz, 0);
        ee_dataset *ds = NULL;
        CHECK_OK(ctx, ee_dataset_load_dir(ctx, d, "train", &ds));
        if (ds) {
            CHECK(ds->n == 20 && ds->h == 28 && ds->c == 1 && ds->labels[13] == 3 && ds->pixels[5 * 784 + 5] == 50,
                  "IDX contents (gz=%d)", gz);
            ee_dataset *val = NULL;
            CHECK_OK(ctx, ee_dataset_split(ctx, ds, 5, &val));
            CHECK(ds->n == 15 && val && val->n == 5 && val->labels[0] == 5, "validation split");
            /* normalised NHWC batch, flip and crop */
            float x[2 * 784];
            uint8_t y[2];
            int idx[2] = {1, 2};
            ds->mean[0] = 0.5f; ds->std[0] = 0.25f;
            ee_dataset_batch(ctx, ds, idx, 2, NULL, x, y);
            CHECK(fabsf(x[1] - (10 / 255.0f - 0.5f) / 0.25f) < 1e-5f && fabsf(x[784 + 2] - (20 / 255.0f - 0.5f) / 0.25f) < 1e-5f && y[1] == 2, "batch values");
            ee_augment aug = {0, 1};
            int flipped = 0;
            for (int t = 0; t < 20; t++) { ee_dataset_batch(ctx, ds, idx, 1, &aug, x, y); flipped += x[26] > -1.9f; }
            CHECK(flipped > 0 && flipped < 20, "horizontal flip happens about half of the time (%d/20)", flipped);
            ee_dataset_free(val);
        }
        ee_dataset_free(ds);
        /* truncated image file */
        make_idx(d, "train", 20, gz, 1);
        CHECK(ee_dataset_load_dir(ctx, d, "train", &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "train-images") &&
                  (strstr(ee_ctx_error(ctx), "truncated")),
              "truncated IDX: '%s'", ee_ctx_error(ctx));
    }
    /* corrupted gzip and a label file of another kind */
    snprintf(p, sizeof p, "%s/bad-images.gz", tmpdir);
    write_bytes(p, "\x1f\x8b\x08\x00garbagegarbage", 18, 0);
    snprintf(q, sizeof q, "%s/idx1/train-labels-idx1-ubyte.gz", tmpdir);
    ee_dataset *ds = NULL;
    CHECK(ee_dataset_load_idx(ctx, p, q, &ds) != EE_OK && strstr(ee_ctx_error(ctx), "bad-images.gz"), "corrupt gzip: '%s'",
          ee_ctx_error(ctx));
    snprintf(p, sizeof p, "%s/idx1/train-images-idx3-ubyte.gz", tmpdir);
    CHECK(ee_dataset_load_idx(ctx, q, q, &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "not an IDX image file"),
          "labels as images: '%s'", ee_ctx_error(ctx));
    /* CIFAR-10: 5 data batches + test batch of 3 records each: label byte + 3072 pixels (R, G, B planes) */
    snprintf(d, sizeof d, "%s/cifar10", tmpdir);
    snprintf(p, sizeof p, "mkdir -p %s", d);
    CHECK(system(p) == 0, "mkdir");
    uint8_t rec[3 * 3073];
    for (int r = 0; r < 3; r++) {
        rec[r * 3073] = (uint8_t)(r + 7);
        for (int k = 0; k < 3072; k++) rec[r * 3073 + 1 + k] = (uint8_t)(k / 1024 * 100 + r);
    }
    for (int b = 1; b <= 5; b++) { snprintf(p, sizeof p, "%s/data_batch_%d.bin", d, b); write_bytes(p, rec, sizeof rec, 0); }
    snprintf(p, sizeof p, "%s/test_batch.bin", d);
    write_bytes(p, rec, sizeof rec, 0);
    CHECK_OK(ctx, ee_dataset_load_dir(ctx, d, "train", &ds));
    if (ds) {
        CHECK(ds->n == 15 && ds->c == 3 && ds->labels[4] == 8 && ds->pixels[4 * 3072 + 2048 + 5] == 201 && ds->classes == 10,
              "CIFAR-10 contents");
        CHECK(fabsf(ds->mean[0] - 0.485f) < 1e-6f, "CIFAR-10 uses the reference's ImageNet normalisation");
        float x[3072];
        int idx = 4;
        ee_dataset_batch(ctx, ds, &idx, 1, NULL, x, NULL);
        CHECK(fabsf(x[2] - (201 / 255.0f - 0.406f) / 0.225f) < 1e-5f, "CIFAR NHWC channel order");
        ee_dataset_free(ds);
    }
    write_bytes(p, rec, sizeof rec - 5, 0);
    CHECK(ee_dataset_load_dir(ctx, d, "test", &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "test_batch.bin"),
          "truncated CIFAR: '%s'", ee_ctx_error(ctx));
    rec[0] = 12;
    write_bytes(p, rec, sizeof rec, 0);
    CHECK(ee_dataset_load_dir(ctx, d, "test", &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "label 12"),
          "bad CIFAR label: '%s'", ee_ctx_error(ctx));
    /* CIFAR-100: coarse + fine label bytes */
    snprintf(d, sizeof d, "%s/cifar100", tmpdir);
    snprintf(p, sizeof p, "mkdir -p %s", d);
    CHECK(system(p) == 0, "mkdir");
    uint8_t r100[2 * 3074] = {0};
    r100[0] = 3; r100[1] = 77; r100[3074] = 19; r100[3075] = 99;
    snprintf(p, sizeof p, "%s/train.bin", d);
    write_bytes(p, r100, sizeof r100, 0);
    CHECK_OK(ctx, ee_dataset_load_dir(ctx, d, "train", &ds));
    if (ds) { CHECK(ds->n == 2 && ds->labels[0] == 77 && ds->labels[1] == 99 && ds->classes == 100, "CIFAR-100 fine labels"); ee_dataset_free(ds); }
    ee_ctx_free(ctx);
}

/* Tiny ImageNet: 3 classes, 2 training JPEGs each, 3 validation JPEGs with annotations, in the published layout */
static void test_tinyimagenet(void) {
    ee_ctx *ctx = ee_ctx_new();
    char d[512], p[1200];
    const char *wn[3] = {"n02123394", "n01443537", "n02099601"}; /* sorted: n01443537 n02099601 n02123394 */
    snprintf(d, sizeof d, "%s/tiny-imagenet-200", tmpdir);
    uint8_t img[64 * 64 * 3];
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "mkdir -p %s/train/%s/images %s/val/images", d, wn[k], d);
        CHECK(system(p) == 0, "mkdir");
        for (int i = 0; i < 2; i++) {
            for (int q = 0; q < 64 * 64; q++) { img[q * 3] = (uint8_t)(40 * k + 20 * i); img[q * 3 + 1] = 128; img[q * 3 + 2] = 200; }
            snprintf(p, sizeof p, "%s/train/%s/images/%s_%d.JPEG", d, wn[k], wn[k], i);
            CHECK(stbi_write_jpg(p, 64, 64, 3, img, 95), "write %s", p);
        }
    }
    snprintf(p, sizeof p, "%s/wnids.txt", d);
    FILE *f = fopen(p, "w");
    fprintf(f, "%s\n%s\n%s\n", wn[0], wn[1], wn[2]);
    fclose(f);
    snprintf(p, sizeof p, "%s/val/val_annotations.txt", d);
    f = fopen(p, "w");
    for (int i = 0; i < 3; i++) fprintf(f, "val_%d.JPEG\t%s\t0\t0\t63\t63\n", i, wn[2 - i]);
    fclose(f);
    for (int i = 0; i < 3; i++) {
        for (int q = 0; q < 64 * 64; q++) { img[q * 3] = (uint8_t)(60 * i); img[q * 3 + 1] = 10; img[q * 3 + 2] = 250; }
        snprintf(p, sizeof p, "%s/val/images/val_%d.JPEG", d, i);
        stbi_write_jpg(p, 64, 64, 3, img, 95);
    }
    ee_dataset *ds = NULL;
    CHECK_OK(ctx, ee_dataset_load_dir(ctx, d, "train", &ds));
    if (ds) {
        /* class 0 is n01443537 (wn[1]); its images have red 40 and 60 */
        CHECK(ds->n == 6 && ds->c == 3 && ds->h == 64 && ds->classes == 3 && ds->labels[0] == 0 && ds->labels[5] == 2,
              "Tiny ImageNet train: n %d classes %d", ds->n, ds->classes);
        CHECK(abs(ds->pixels[0] - 40) <= 3 && abs(ds->pixels[4096] - 128) <= 3 && abs(ds->pixels[8192 + 77] - 200) <= 3,
              "Tiny ImageNet pixels %d %d %d", ds->pixels[0], ds->pixels[4096], ds->pixels[8192 + 77]);
        CHECK(fabsf(ds->mean[0] - 0.4802f) < 1e-6f, "Tiny ImageNet normalisation");
        ee_dataset_free(ds);
    }
    CHECK_OK(ctx, ee_dataset_load_dir(ctx, d, "test", &ds));
    if (ds) {
        /* val_0 is wn[2] = n02099601 -> class 1; val_2 is wn[0] = n02123394 -> class 2 */
        CHECK(ds->n == 3 && ds->labels[0] == 1 && ds->labels[1] == 0 && ds->labels[2] == 2 && abs(ds->pixels[2 * 12288] - 120) <= 3,
              "Tiny ImageNet val labels %d %d %d", ds->labels[0], ds->labels[1], ds->labels[2]);
        ee_dataset_free(ds);
    }
    /* a broken image and an unknown class give errors that name the file */
    snprintf(p, sizeof p, "%s/val/images/val_1.JPEG", d);
    write_bytes(p, "not a jpeg", 10, 0);
    CHECK(ee_dataset_load_dir(ctx, d, "test", &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "val_1.JPEG"),
          "broken JPEG: %s", ee_ctx_error(ctx));
    snprintf(p, sizeof p, "%s/val/val_annotations.txt", d);
    const char *bad_line = "val_0.JPEG\tn09999999\t0\t0\t1\t1\n";
    write_bytes(p, bad_line, strlen(bad_line), 0);
    CHECK(ee_dataset_load_dir(ctx, d, "test", &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "val_annotations.txt:1"),
          "unknown class: %s", ee_ctx_error(ctx));
    ee_ctx_free(ctx);
}

#ifndef EE_NO_MATIO
/* SVHN: files written by an independent MAT-file writer (tests/make_svhn.py), the same data written compressed by
 * libmatio (as MATLAB saves by default), and broken files */
#include <matio.h>
static int svhn_pixel(int r, int c, int k, int i) { return (7 * r + 3 * c + 50 * k + 11 * i) % 256; }
static void check_svhn(const ee_dataset *ds, const uint8_t *labels, int n, const char *what) {
    CHECK(ds->n == n && ds->c == 3 && ds->h == 32 && ds->w == 32 && ds->classes == 10, "%s: shape", what);
    int ok = 1;
    for (int i = 0; i < ds->n && i < n; i++) {
        ok &= ds->labels[i] == labels[i];
        for (int k = 0; k < 3; k++)
            for (int r = 0; r < 32; r++)
                for (int c = 0; c < 32; c++) ok &= ds->pixels[(((size_t)i * 3 + k) * 32 + r) * 32 + c] == svhn_pixel(r, c, k, i);
    }
    CHECK(ok, "%s: pixels (row, column, channel) or labels (10 -> 0) misplaced", what);
    CHECK(fabsf(ds->mean[2] - 0.5f) < 1e-6f && fabsf(ds->std[0] - 0.5f) < 1e-6f, "%s: normalisation 0.5", what);
}
static void write_svhn_matio(const char *path, int n, const double *y, int x_channels, int compress) {
    mat_t *m = Mat_CreateVer(path, NULL, MAT_FT_MAT5);
    CHECK(m != NULL, "matio cannot create %s", path);
    if (!m) return;
    size_t dx[4] = {32, 32, (size_t)x_channels, (size_t)n}, dy[2] = {(size_t)n, 1};
    uint8_t *x = malloc((size_t)n * 1024 * x_channels);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < x_channels; k++)
            for (int c = 0; c < 32; c++)
                for (int r = 0; r < 32; r++) x[(((size_t)i * x_channels + k) * 32 + c) * 32 + r] = (uint8_t)svhn_pixel(r, c, k, i);
    matvar_t *vx = Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, 4, dx, x, 0);
    matvar_t *vy = Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dy, (void *)y, 0);
    Mat_VarWrite(m, vx, compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE);
    Mat_VarWrite(m, vy, compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE);
    Mat_VarFree(vx);
    Mat_VarFree(vy);
    Mat_Close(m);
    free(x);
}
static void test_svhn(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_dataset *ds = NULL;
    static const uint8_t train[5] = {1, 0, 5, 3, 0}, test[3] = {2, 7, 0};
    CHECK_OK(ctx, ee_dataset_load_dir(ctx, "tests/fixtures/svhn", "train", &ds));
    if (ds) check_svhn(ds, train, 5, "SVHN train (hand-written MAT-file)");
    ee_dataset_free(ds);
    ds = NULL;
    CHECK_OK(ctx, ee_dataset_load_dir(ctx, "tests/fixtures/svhn", "test", &ds));
    if (ds) check_svhn(ds, test, 3, "SVHN test");
    ee_dataset_free(ds);
    char p[512];
    double y[4] = {10, 4, 9, 1};
    static const uint8_t want[4] = {0, 4, 9, 1};
    snprintf(p, sizeof p, "%s/svhn-z.mat", tmpdir);
    write_svhn_matio(p, 4, y, 3, 1);
    ds = NULL;
    CHECK_OK(ctx, ee_dataset_load_svhn(ctx, p, &ds));
    if (ds) check_svhn(ds, want, 4, "SVHN written compressed by libmatio");
    ee_dataset_free(ds);
    /* broken files: each a clear error, never a crash */
    snprintf(p, sizeof p, "%s/svhn-gray.mat", tmpdir);
    write_svhn_matio(p, 4, y, 1, 0);
    ds = NULL;
    CHECK(ee_dataset_load_svhn(ctx, p, &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "32x32x3"), "1-channel X: %s",
          ee_ctx_error(ctx));
    double bad[4] = {10, 4, 11, 1};
    snprintf(p, sizeof p, "%s/svhn-label.mat", tmpdir);
    write_svhn_matio(p, 4, bad, 3, 1);
    CHECK(ee_dataset_load_svhn(ctx, p, &ds) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "label 11"), "label 11: %s",
          ee_ctx_error(ctx));
    /* truncated: the hand-written file cut in its X data */
    FILE *f = fopen("tests/fixtures/svhn/train_32x32.mat", "rb");
    static unsigned char buf[20000];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    snprintf(p, sizeof p, "%s/svhn-cut.mat", tmpdir);
    f = fopen(p, "wb");
    if (f) { fwrite(buf, 1, len / 2, f); fclose(f); }
    CHECK(ee_dataset_load_svhn(ctx, p, &ds) == EE_ERR_FORMAT && ds == NULL, "truncated SVHN file: %s", ee_ctx_error(ctx));
    snprintf(p, sizeof p, "%s/svhn-text.mat", tmpdir);
    f = fopen(p, "wb");
    if (f) { fputs("not a MAT-file at all, just some text that is long enough to have a header\n", f); fclose(f); }
    CHECK(ee_dataset_load_svhn(ctx, p, &ds) == EE_ERR_FORMAT, "a text file read as SVHN: %s", ee_ctx_error(ctx));
    CHECK(ee_dataset_load_svhn(ctx, "/nonexistent/train_32x32.mat", &ds) == EE_ERR_IO, "missing SVHN file");
    ee_ctx_free(ctx);
}
#else
/* a build without libmatio refuses SVHN with a message */
static void test_svhn(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_dataset *ds = NULL;
    CHECK(ee_dataset_load_svhn(ctx, "tests/fixtures/svhn/train_32x32.mat", &ds) == EE_ERR_ARG && !ds &&
              strstr(ee_ctx_error(ctx), "without libmatio"), "SVHN without libmatio: %s", ee_ctx_error(ctx));
    ee_ctx_free(ctx);
}
#endif

static void test_io(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *a = NULL, *b = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &a));
    ee_net_init(ctx, a);
    for (size_t i = 0; i < ee_net_num_state(a); i++) ee_net_state(a)[i] = (float)i * 0.25f;
    ee_net_set_meta(ctx, a, "note", "hello");
    char path[512], bad[600], cmd[1400];
    snprintf(path, sizeof path, "%s/m.eenn", tmpdir);
    CHECK_OK(ctx, ee_net_save(ctx, a, NULL, 0, path));
    CHECK_OK(ctx, ee_net_load(ctx, path, &b));
    if (b) {
        CHECK(!strcmp(ee_net_arch(a), ee_net_arch(b)), "architecture round trip");
        CHECK(!memcmp(ee_net_params(a), ee_net_params(b), ee_net_num_params(a) * 4), "parameters round trip");
        CHECK(!memcmp(ee_net_state(a), ee_net_state(b), ee_net_num_state(a) * 4), "BN statistics round trip");
        CHECK(ee_net_meta(b, "note") && !strcmp(ee_net_meta(b, "note"), "hello"), "metadata round trip");
        ee_net_free(b);
    }
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n);
    CHECK(fread(buf, 1, n, f) == (size_t)n, "read");
    fclose(f);
    struct { const char *what, *needle; long len; long flip; uint8_t val; } cases[] = {
        {"truncated", "truncated", n / 2, -1, 0},
        {"empty", "empty", 0, -1, 0},
        {"corrupted", "checksum", n, n / 2, 0x5A},
        {"wrong magic", "not an eenn model", n, 0, 'X'},
        {"wrong version", "format version 7", n, 8, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(bad, sizeof bad, "%s/bad%zu.eenn", tmpdir, i);
        uint8_t *c = malloc(n);
        memcpy(c, buf, n);
        if (cases[i].flip >= 0) c[cases[i].flip] ^= cases[i].flip == 8 ? (c[8] ^ cases[i].val) : cases[i].val;
        write_bytes(bad, c, cases[i].len, 0);
        free(c);
        ee_status s = ee_net_load(ctx, bad, &b);
        CHECK(s == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), cases[i].needle) && strstr(ee_ctx_error(ctx), bad),
              "%s file: '%s'", cases[i].what, ee_ctx_error(ctx));
        CHECK(b == NULL, "%s file returned a network", cases[i].what);
    }
    /* a well-formed file whose tensors do not fit its architecture (as another tool might write) */
    {
        ee_net *c5 = NULL;
        CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 5, &c5));
        if (c5) {
            char *keep = a->arch_text;
            a->arch_text = (char *)ee_net_arch(c5); /* 5-class text, 10-class tensors */
            snprintf(bad, sizeof bad, "%s/mismatch.eenn", tmpdir);
            CHECK_OK(ctx, ee_net_save(ctx, a, NULL, 0, bad));
            a->arch_text = keep;
            CHECK(ee_net_load(ctx, bad, &b) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "fc.weight' has the wrong shape"),
                  "mismatched file: '%s'", ee_ctx_error(ctx));
            ee_net_free(c5);
        }
    }
    CHECK(ee_net_load(ctx, "/nonexistent/x.eenn", &b) == EE_ERR_IO && strstr(ee_ctx_error(ctx), "/nonexistent/x.eenn"),
          "missing file");
    /* hostile contents: a directory, the magic alone, bytes appended, NaN weights, a zero normalisation */
    CHECK(ee_net_load(ctx, tmpdir, &b) == EE_ERR_IO && strstr(ee_ctx_error(ctx), "is a directory"), "directory: '%s'",
          ee_ctx_error(ctx));
    snprintf(bad, sizeof bad, "%s/magic.eenn", tmpdir);
    write_bytes(bad, buf, 8, 0);
    CHECK(ee_net_load(ctx, bad, &b) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "truncated (8 bytes"), "magic only: '%s'",
          ee_ctx_error(ctx));
    snprintf(bad, sizeof bad, "%s/appended.eenn", tmpdir);
    {
        uint8_t *c = malloc(n + 5);
        memcpy(c, buf, n);
        memcpy(c + n, "junk\n", 5);
        write_bytes(bad, c, n + 5, 0);
        free(c);
    }
    CHECK(ee_net_load(ctx, bad, &b) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "5 bytes of trailing data after the end marker"),
          "appended bytes: '%s'", ee_ctx_error(ctx));
    {
        float keep = ee_net_params(a)[3];
        ee_net_params(a)[3] = NAN;
        snprintf(bad, sizeof bad, "%s/nan.eenn", tmpdir);
        CHECK_OK(ctx, ee_net_save(ctx, a, NULL, 0, bad));
        CHECK(ee_net_load(ctx, bad, &b) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "holds NaN at index 3"),
              "NaN weight: '%s'", ee_ctx_error(ctx));
        ee_net_params(a)[3] = keep;
        ee_meta zero = {"data.std", "0,0,0"};
        snprintf(bad, sizeof bad, "%s/std.eenn", tmpdir);
        CHECK_OK(ctx, ee_net_save(ctx, a, &zero, 1, bad));
        CHECK(ee_net_load(ctx, bad, &b) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "data.std '0,0,0' is not a positive"),
              "zero data.std: '%s'", ee_ctx_error(ctx));
        ee_meta junk = {"data.mean", "grey"};
        CHECK_OK(ctx, ee_net_save(ctx, a, &junk, 1, bad));
        CHECK(ee_net_load(ctx, bad, &b) == EE_ERR_FORMAT && strstr(ee_ctx_error(ctx), "data.mean 'grey' is not a number"),
              "unparsable data.mean: '%s'", ee_ctx_error(ctx));
    }
    /* saving through a symbolic link writes its target; an existing file keeps its mode; temp files of killed
     * writers beside it are removed */
    {
        char link[600], stale[700];
        snprintf(link, sizeof link, "%s/link.eenn", tmpdir);
        CHECK(symlink(path, link) == 0, "symlink");
        CHECK(chmod(path, 0600) == 0, "chmod");
        snprintf(stale, sizeof stale, "%s.tmp.2147483", path); /* above any pid_max */
        write_bytes(stale, "x", 1, 0);
        CHECK_OK(ctx, ee_net_set_meta(ctx, a, "note", "through the link"));
        CHECK_OK(ctx, ee_net_save(ctx, a, NULL, 0, link));
        struct stat ls, ts;
        CHECK(lstat(link, &ls) == 0 && S_ISLNK(ls.st_mode), "the symbolic link was replaced by a file");
        CHECK(stat(path, &ts) == 0 && (ts.st_mode & 0777) == 0600, "the file's mode was not kept: %o", ts.st_mode & 0777);
        CHECK(access(stale, F_OK) != 0, "a stale temp file was left: %s", stale);
        ee_net *c = NULL;
        CHECK_OK(ctx, ee_net_load(ctx, path, &c));
        CHECK(c && ee_net_meta(c, "note") && !strcmp(ee_net_meta(c, "note"), "through the link"),
              "the target was not written through the link");
        ee_net_free(c);
        remove(link);
    }
    /* atomic save: no temp file left behind, an unwritable path fails cleanly */
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp > /dev/null", tmpdir);
    CHECK(system(cmd) != 0, "a temporary file was left behind");
    CHECK(ee_net_save(ctx, a, NULL, 0, "/nonexistent/dir/m.eenn") == EE_ERR_IO, "save to a missing directory");
    free(buf);
    ee_net_free(a);
    ee_ctx_free(ctx);
}

/* stopping after node k, dropping samples and continuing gives the same outputs as a full pass on the subset */
static void test_compact(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &net));
    ee_net_init(ctx, net);
    int n = 9, keep[4] = {0, 3, 4, 8};
    float *x = malloc(n * 784 * 4), *xs = malloc(4 * 784 * 4), ref[40];
    for (int i = 0; i < n * 784; i++) x[i] = ee_rng_normal(ctx);
    for (int j = 0; j < 4; j++) memcpy(xs + j * 784, x + keep[j] * 784, 784 * 4);
    ee_net_prepare(ctx, net, n, 0);
    CHECK_OK(ctx, ee_net_forward(ctx, net, xs, 4, 0));
    memcpy(ref, ee_net_head_output(net, 0), sizeof ref);
    int mid = ee_net_num_nodes(net) / 2;
    CHECK_OK(ctx, ee_net_forward_range(ctx, net, x, 0, mid, n, 0));
    CHECK_OK(ctx, ee_net_compact(ctx, net, mid, keep, 4));
    CHECK_OK(ctx, ee_net_forward_range(ctx, net, NULL, mid, ee_net_num_nodes(net), 4, 0));
    CHECK(tl_close(ee_net_head_output(net, 0), ref, 40, 1e-5, 1e-4, NULL) <= 1, "compacted batch differs from a direct pass");
    /* cache-sized chunks give the same outputs as one pass over the whole batch */
    float full[90];
    ee_net_set_eval_chunk(net, 1 << 30);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
    memcpy(full, ee_net_head_output(net, 0), sizeof full);
    ee_net_set_eval_chunk(net, 4);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
    CHECK(tl_close(ee_net_head_output(net, 0), full, 90, 1e-5, 1e-4, NULL) <= 1, "chunked inference differs");
    int badk[2] = {3, 1};
    CHECK(ee_net_compact(ctx, net, mid, badk, 2) == EE_ERR_ARG, "unsorted compaction accepted");
    free(x); free(xs);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* ee_net_seal: the packed, BN-folded weights in place of the parameters give the same outputs as the unsealed
 * net (bit for bit: the same folded values, packed the same way), at the prepared batch and after a larger
 * prepare; what needs the parameters then fails with a message. */
static void seal_case(const char *arch, int c, int hw) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_conv_kernel(ctx, EE_CONV_DIRECT); /* oneDNN where the direct kernel cannot run */
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, arch, c, hw, hw, 10, &net));
    ee_net_init(ctx, net);
    for (int t = 0; t < ee_net_num_tensors(net); t++) { /* BN statistics and affine parameters far from 0 and 1 */
        const char *name;
        float *d;
        size_t cnt;
        ee_net_tensor(net, t, &name, &d, &cnt, NULL, NULL, NULL);
        int bn = strstr(name, ".bn") != NULL, var = strstr(name, "running_var") != NULL;
        for (size_t i = 0; bn && i < cnt; i++)
            d[i] = var ? 0.3f + ee_rng_uniform(ctx) : strstr(name, "weight") ? 0.5f + ee_rng_uniform(ctx)
                                                                               : 0.2f * ee_rng_normal(ctx);
    }
    ee_net_params_changed(net);
    int n = 7, img = c * hw * hw;
    float *x = malloc((size_t)2 * n * img * 4), ref[140], ref1[10];
    for (int i = 0; i < 2 * n * img; i++) x[i] = ee_rng_normal(ctx);
    CHECK_OK(ctx, ee_net_prepare(ctx, net, n, 0));
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
    memcpy(ref, ee_net_head_output(net, 0), n * 10 * 4);
    double mag = 0;
    for (int i = 0; i < n * 10; i++) mag += fabs(ref[i]);
    CHECK(mag > 1e-3 * n, "%s: outputs too small to compare (%g)", arch, mag);
    CHECK_OK(ctx, ee_net_seal(ctx, net));
    CHECK(ee_net_params(net) == NULL, "%s: a sealed net still hands out its parameters", arch);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
    CHECK(!memcmp(ee_net_head_output(net, 0), ref, n * 10 * 4), "%s: sealed outputs differ (%g vs %g)", arch,
          ee_net_head_output(net, 0)[0], ref[0]);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x + (size_t)(n - 1) * img, 1, 0));
    memcpy(ref1, ee_net_head_output(net, 0), sizeof ref1);
    /* other batch sizes sum in other orders (pixel segments, oneDNN primitives): close, not bit-identical */
    CHECK(tl_close(ref1, ref + (n - 1) * 10, 10, 1e-5, 1e-4, NULL) <= 1, "%s: sealed batch-1 output differs", arch);
    CHECK_OK(ctx, ee_net_prepare(ctx, net, 2 * n, 0)); /* a larger batch after sealing */
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, 2 * n, 0));
    CHECK(tl_close(ee_net_head_output(net, 0), ref, n * 10, 1e-5, 1e-4, NULL) <= 1,
          "%s: sealed outputs differ after a re-prepare", arch);
    /* split between inference workers, whose copies take the packed weights as they are */
    float *one = malloc((size_t)2 * n * 10 * 4);
    ee_net_set_eval_workers(net, 1);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, 2 * n, 0));
    memcpy(one, ee_net_head_output(net, 0), (size_t)2 * n * 10 * 4);
    ee_net_set_eval_workers(net, 3);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, 2 * n, 0));
    CHECK(tl_close(ee_net_head_output(net, 0), one, 2 * n * 10, 1e-5, 1e-4, NULL) <= 1,
          "%s: a sealed net split between 3 workers differs (%g vs %g)", arch, ee_net_head_output(net, 0)[2 * n * 10 - 1],
          one[2 * n * 10 - 1]);
    ee_net_set_eval_workers(net, 0);
    free(one);
    char path[400];
    snprintf(path, sizeof path, "%s/sealed.eenn", tmpdir);
    CHECK(ee_net_save(ctx, net, NULL, 0, path) == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "sealed"),
          "%s: saving a sealed net: %s", arch, ee_ctx_error(ctx));
    CHECK(ee_net_prepare(ctx, net, n, 1) == EE_ERR_ARG, "%s: a sealed net prepared for training", arch);
    CHECK(ee_net_init(ctx, net) == EE_ERR_ARG, "%s: a sealed net re-initialised", arch);
    CHECK(ee_net_keep_output(ctx, net, 3) == EE_ERR_ARG, "%s: fusion changed on a sealed net", arch);
    CHECK(ee_net_seal(ctx, net) == EE_OK, "%s: sealing twice", arch);
    free(x);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* A dropout between a conv and its BN (WRN's blocks: conv, dropout, BN, ReLU) is the identity in inference: the
 * BN folds through it and the dropout is skipped; a BN that no conv absorbs computes its ReLU in the same pass.
 * The outputs must be those of the same net without the dropout (bit-identical: the same fused passes) and,
 * within rounding, those of the unfused passes (the dropout's and the BN's outputs kept). */
static void test_dropout_fusion(void) {
    static const char *with =
        "input c=3 h=9 w=9\nconv name=c1 out=16 k=3 pad=1 bias=1\ndropout name=d p=0.3\nbn name=b1\nrelu name=r1\n"
        "conv name=c2 out=16 k=3 pad=1 bias=0\nbn name=b2\nadd name=a in=b2,r1\nrelu name=r2\nbn name=b3\n"
        "relu name=r3\ngap name=pool\nlinear name=fc out=5 head=1\n";
    char without[600];
    const char *cut = strstr(with, "dropout"), *rest = strchr(cut, '\n') + 1;
    snprintf(without, sizeof without, "%.*s%s", (int)(cut - with), with, rest);
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net[3] = {NULL, NULL, NULL};
    const int n = 3, img = 3 * 9 * 9;
    float x[3 * 3 * 9 * 9], out[3][15];
    for (int i = 0; i < n * img; i++) x[i] = ee_rng_normal(ctx);
    for (int k = 0; k < 3; k++) {
        CHECK_OK(ctx, ee_net_from_text(ctx, k == 1 ? without : with, "dropout-fusion", &net[k]));
        if (k == 2) { /* unfused: the dropout's and the standalone BN's outputs kept */
            CHECK_OK(ctx, ee_net_keep_output(ctx, net[k], ee_net_find_node(net[k], "d")));
            CHECK_OK(ctx, ee_net_keep_output(ctx, net[k], ee_net_find_node(net[k], "b3")));
        }
        ee_ctx_seed(ctx, 7);
        ee_net_init(ctx, net[k]);
        for (int t = 0; t < ee_net_num_tensors(net[k]); t++) { /* BN statistics far from 0 and 1 */
            const char *name;
            float *d;
            size_t cnt;
            ee_net_tensor(net[k], t, &name, &d, &cnt, NULL, NULL, NULL);
            for (size_t i = 0; name[0] == 'b' && i < cnt; i++)
                d[i] = strstr(name, "var") ? 0.3f + 0.1f * (float)(i % 7) : 0.1f * (float)(i % 5) - 0.2f;
        }
        ee_net_params_changed(net[k]);
        CHECK_OK(ctx, ee_net_prepare(ctx, net[k], n, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net[k], x, n, 0));
        memcpy(out[k], ee_net_head_output(net[k], 0), sizeof out[k]);
    }
    int c1 = ee_net_find_node(net[0], "c1"), d = ee_net_find_node(net[0], "d");
    CHECK(net[0]->nodes[c1].fuse_drop == d && net[0]->nodes[d].fused && net[0]->nodes[c1].fuse_bn >= 0,
          "dropout fusion: conv, dropout and BN not fused in inference");
    CHECK(net[2]->nodes[c1].fuse_bn < 0, "dropout fusion: a kept dropout output still fused");
    int b3 = ee_net_find_node(net[0], "b3"), r3 = ee_net_find_node(net[0], "r3");
    CHECK(net[0]->nodes[b3].fuse_relu == r3 && net[0]->nodes[r3].fused && net[2]->nodes[b3].fuse_relu < 0,
          "BN + ReLU fusion: a standalone BN and its ReLU not fused in inference (or fused though kept)");
    CHECK(!memcmp(out[0], out[1], sizeof out[0]), "dropout fusion: outputs differ from the net without dropout "
          "(%g vs %g)", out[0][0], out[1][0]);
    CHECK(tl_close(out[0], out[2], 15, 1e-5, 1e-4, NULL) <= 1, "dropout fusion: fused and unfused outputs differ "
          "(%g vs %g)", out[0][0], out[2][0]);
    /* training still drops: two training forwards of the same batch differ */
    CHECK_OK(ctx, ee_net_prepare(ctx, net[0], n, 1));
    CHECK_OK(ctx, ee_net_forward(ctx, net[0], x, n, 1));
    memcpy(out[1], ee_net_head_output(net[0], 0), sizeof out[1]);
    CHECK_OK(ctx, ee_net_forward(ctx, net[0], x, n, 1));
    CHECK(memcmp(out[1], ee_net_head_output(net[0], 0), sizeof out[1]), "dropout fusion: training no longer drops");
    for (int k = 0; k < 3; k++) ee_net_free(net[k]);
    ee_ctx_free(ctx);
}

/* A conv with no BN after it takes its residual add (pre-activation blocks: BN, ReLU, conv, add), and a ReLU
 * that only reads the add; a 1 x 1 projection shortcut takes the add whose other operand is the block's conv. The
 * fused net (the sum written into the shortcut's dead buffer, or, with the shortcut kept, added as a oneDNN
 * binary post-op) must match the unfused one on every conv kernel, sealed too. */
static void test_preact_add_fusion(void) {
    static const char *arch =
        "input c=3 h=9 w=9\nconv name=stem out=16 k=3 pad=1 bias=1\nbn name=b1\nrelu name=r1\n"
        "conv name=c1 out=16 k=3 pad=1 bias=1\nadd name=a1 in=c1,stem\nbn name=b2\nrelu name=r2\n"
        "conv name=c2 out=32 k=3 stride=2 pad=1 bias=0\nconv name=sc in=a1 out=32 k=1 stride=2 pad=0 bias=1\n"
        "add name=a2 in=c2,sc\nrelu name=r3\ngap name=pool\nlinear name=fc out=5 head=1\n";
    static const ee_conv_kernel kernels[] = {EE_CONV_ONEDNN, EE_CONV_DIRECT, EE_CONV_REFERENCE};
    ee_ctx *ctx = ee_ctx_new();
    const int n = 3, img = 3 * 9 * 9;
    float x[3 * 3 * 9 * 9], ref[15];
    for (int i = 0; i < n * img; i++) x[i] = ee_rng_normal(ctx);
    for (int v = 0; v < 7; v++) { /* 0: unfused; then fused or stem kept, on each kernel; 6: sealed, direct */
        int kind = v == 0 ? EE_CONV_REFERENCE : v == 6 ? EE_CONV_DIRECT : (int)kernels[(v - 1) / 2];
        int keep_stem = v >= 1 && v <= 5 && (v - 1) % 2;
        if (kind == EE_CONV_DIRECT && !ee_dconv_available()) continue;
        ee_ctx_set_conv_kernel(ctx, (ee_conv_kernel)kind);
        ee_net *net = NULL;
        CHECK_OK(ctx, ee_net_from_text(ctx, arch, "preact-fusion", &net));
        if (!net) break;
        if (v == 0) {
            CHECK_OK(ctx, ee_net_keep_output(ctx, net, ee_net_find_node(net, "c1")));
            CHECK_OK(ctx, ee_net_keep_output(ctx, net, ee_net_find_node(net, "sc")));
        }
        if (keep_stem) CHECK_OK(ctx, ee_net_keep_output(ctx, net, ee_net_find_node(net, "stem")));
        ee_ctx_seed(ctx, 11);
        ee_net_init(ctx, net);
        ee_net_params_changed(net);
        CHECK_OK(ctx, ee_net_prepare(ctx, net, n, 0));
        if (v == 6) CHECK_OK(ctx, ee_net_seal(ctx, net));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, n, 0));
        const float *out = ee_net_head_output(net, 0);
        int c1 = ee_net_find_node(net, "c1"), sc = ee_net_find_node(net, "sc");
        int a1 = ee_net_find_node(net, "a1"), a2 = ee_net_find_node(net, "a2"), r3 = ee_net_find_node(net, "r3");
        if (v == 0) {
            CHECK(net->nodes[c1].fuse_add < 0 && net->nodes[sc].fuse_add < 0, "pre-activation fusion: kept outputs fused");
            memcpy(ref, out, sizeof ref);
        } else {
            CHECK(net->nodes[c1].fuse_add == a1 && net->nodes[sc].fuse_add == a2 && net->nodes[sc].fuse_relu == r3 &&
                      net->nodes[c1].fuse_bn < 0,
                  "pre-activation fusion: conv + add (+ ReLU) without a BN not fused (variant %d)", v);
            CHECK(net->nodes[c1].add_inplace == !keep_stem, "pre-activation fusion: variant %d sums %s", v,
                  keep_stem ? "in place into a kept output" : "as a binary post-op where it could in place");
            CHECK(tl_close(out, ref, 15, 1e-5, 1e-4, NULL) <= 1, "pre-activation fusion: kernel %d%s%s: fused and "
                  "unfused outputs differ (%g vs %g)", kind, keep_stem ? ", shortcut kept" : "", v == 6 ? ", sealed" : "",
                  out[0], ref[0]);
        }
        ee_net_free(net);
    }
    ee_ctx_free(ctx);
}

/* The same architecture with oneDNN's kernels (Winograd where it pays; net[0]) and with the plain loops (net[1]),
 * seeded alike, run forward in inference on x (n samples); each one's first head output (len floats) into out[k].
 * net[k] is NULL where building it failed (already reported). */
static void wino_pair(ee_ctx *ctx, const char *arch, const float *x, int n, float *out[2], size_t len, ee_net *net[2]) {
    net[0] = net[1] = NULL;
    for (int k = 0; k < 2; k++) {
        ee_ctx_set_conv_kernel(ctx, k ? EE_CONV_REFERENCE : EE_CONV_AUTO);
        CHECK_OK(ctx, ee_net_from_text(ctx, arch, "winograd", &net[k]));
        if (!net[k]) break;
        ee_ctx_seed(ctx, 5);
        ee_net_init(ctx, net[k]);
        CHECK_OK(ctx, ee_net_prepare(ctx, net[k], n, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net[k], x, n, 0));
        memcpy(out[k], ee_net_head_output(net[k], 0), len * sizeof(float));
    }
}

/* Inference runs 3x3 stride-1 convs of 64 channels and more through oneDNN's Winograd kernel on AVX-512 CPUs
 * (activations reordered to nChw16c and back): with a fused BN and ReLU, with a residual add summed by the reorder
 * back (into the shortcut's dead buffer, or after copying it), and not with both an add and a ReLU. Outputs
 * against the plain loops, within Winograd's rounding. */
static void test_winograd(void) {
    static const char *arch =
        "input c=64 h=16 w=16\nconv name=c1 out=64 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
        "conv name=c2 out=64 k=3 pad=1 bias=1\nadd name=a1 in=c2,r1\nbn name=b2\nrelu name=r2\n"
        "conv name=c3 out=64 k=3 pad=1 bias=1\nadd name=a2 in=c3,a1\n"
        "conv name=c4 out=64 k=3 pad=1 bias=0\nbn name=b4\nadd name=a4 in=b4,a2\nrelu name=r4\n"
        "gap name=pool\nlinear name=fc out=5 head=1\n";
    ee_ctx *ctx = ee_ctx_new();
    const int n = 4, img = 64 * 16 * 16; /* 1024 output pixels: enough for Winograd */
    float *x = malloc(sizeof(float) * n * img), out[2][20], *o[2] = {out[0], out[1]};
    for (int i = 0; i < n * img; i++) x[i] = ee_rng_normal(ctx);
    ee_net *net[2];
    wino_pair(ctx, arch, x, n, o, 20, net);
    if (net[0] && net[1]) {
        CHECK(tl_close(out[0], out[1], 20, 1e-4, 1e-3, NULL) <= 1, "Winograd: outputs differ from the plain loops "
              "(%g vs %g)", out[0][0], out[1][0]);
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx512f") && !ee_dconv_preferred()) {
            const ee_net *w = net[0];
            int c2 = ee_net_find_node(w, "c2"), c3 = ee_net_find_node(w, "c3");
            CHECK(ee_conv_wino_used(&w->nodes[ee_net_find_node(w, "c1")]) && ee_conv_wino_used(&w->nodes[c2]) &&
                      ee_conv_wino_used(&w->nodes[c3]),
                  "Winograd: not used for 64-channel 3x3 convs on an AVX-512 CPU");
            CHECK(!w->nodes[c2].add_inplace && w->nodes[c3].add_inplace, "Winograd: the test no longer covers both "
                  "residual paths (copied shortcut, in place)");
            CHECK(!ee_conv_wino_used(&w->nodes[ee_net_find_node(w, "c4")]), "Winograd: used with an add and a ReLU");
        }
#endif
    }
    for (int k = 0; k < 2; k++) ee_net_free(net[k]);
    free(x);
    ee_ctx_free(ctx);
}

/* Winograd runs on calls of at least two samples: on fewer than 1024 output pixels only heavy convs (WRN's and
 * VGG's: 256 channels on 8x8 maps), not ResNet-56's 64 channels on 8x8, where the reorders and the small tiles
 * lost; and never on one sample, where reading its transformed weights costs more than it saves. */
static void test_winograd_small_batch(int c, int hw, int n, int want) {
    char arch[512];
    snprintf(arch, sizeof arch,
             "input c=%d h=%d w=%d\nconv name=c1 out=%d k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
             "conv name=c2 out=%d k=3 pad=1 bias=1\nadd name=a1 in=c2,r1\n"
             "gap name=pool\nlinear name=fc out=5 head=1\n", c, hw, hw, c, c);
    ee_ctx *ctx = ee_ctx_new();
    const int img = c * hw * hw;
    float *x = malloc(sizeof(float) * img * n), out[2][10], *o[2] = {out[0], out[1]};
    for (int i = 0; i < img * n; i++) x[i] = ee_rng_normal(ctx);
    ee_net *net[2];
    wino_pair(ctx, arch, x, n, o, 5 * (size_t)n, net);
    if (net[0] && net[1]) {
        CHECK(tl_close(out[0], out[1], 5 * (size_t)n, 1e-4, 1e-3, NULL) <= 1, "Winograd at batch %d, %d channels on "
              "%dx%d: outputs differ from the plain loops (%g vs %g)", n, c, hw, hw, out[0][0], out[1][0]);
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx512f") && !ee_dconv_preferred()) {
            const ee_net *w = net[0];
            CHECK(ee_conv_wino_used(&w->nodes[ee_net_find_node(w, "c1")]) == want &&
                      ee_conv_wino_used(&w->nodes[ee_net_find_node(w, "c2")]) == want,
                  "Winograd at batch %d, %d channels on %dx%d: %s", n, c, hw, hw, want ? "not used" : "used");
        }
#endif
    }
    for (int k = 0; k < 2; k++) ee_net_free(net[k]);
    free(x);
    ee_ctx_free(ctx);
}

/* Inference split between workers (ee_net_set_eval_workers) gives the same outputs as one pass: two heads and a
 * kept output, uneven shares (13 samples in 3), shares run in chunks, blocked tensors inside, and new weights
 * after the workers' copies were made. Nothing is split where it must not be: a node range, a net that trains. */
static void test_workers(void) {
    static const char *arch =
        "input c=3 h=16 w=16\nconv name=stem out=16 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
        "conv name=c1 out=64 k=3 pad=1 bias=0\nbn name=b2\nrelu name=r2\nconv name=c2 out=64 k=3 pad=1 bias=0\n"
        "conv name=sc in=stem out=64 k=1 pad=0 bias=0\nadd name=a1 in=c2,sc\ngap name=icpool in=a1\n"
        "linear name=ic out=5 head=1\nbn name=b3 in=a1\nrelu name=r3\nconv name=c3 out=32 k=3 stride=2 pad=1 bias=1\n"
        "relu name=r4\ngap name=pool\nlinear name=fc out=5 head=1\n";
    enum { N = 13, IMG = 3 * 16 * 16, MID = 64 * 16 * 16 };
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, arch, "workers", &net));
    if (!net) { ee_ctx_free(ctx); return; }
    ee_ctx_seed(ctx, 11);
    ee_net_init(ctx, net);
    for (int i = 0; i < net->nnodes; i++) /* BN statistics away from the identity */
        if (net->nodes[i].kind == EE_KIND_BN) {
            float *st = ee_net_state(net) + net->nodes[i].s_off;
            for (int j = 0; j < net->nodes[i].out.c; j++) { st[j] = 0.1f * (j % 5); st[net->nodes[i].out.c + j] = 0.5f + 0.1f * (j % 7); }
        }
    ee_net_params_changed(net);
    const int r2 = ee_net_find_node(net, "r2");
    CHECK_OK(ctx, ee_net_keep_output(ctx, net, r2));
    CHECK_OK(ctx, ee_net_prepare(ctx, net, N, 0));
    float *x = malloc(sizeof(float) * N * IMG), *kref = malloc(sizeof(float) * N * MID), *kw = malloc(sizeof(float) * N * MID);
    float ref[2][N * 5];
    for (int i = 0; i < N * IMG; i++) x[i] = ee_rng_normal(ctx);
    for (int round = 0; round < 2; round++) {
        ee_net_set_eval_workers(net, 1);
        ee_net_set_eval_chunk(net, 0);
        size_t one = ee_net_activation_bytes(net);
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, N, 0));
        for (int h = 0; h < 2; h++) memcpy(ref[h], ee_net_head_output(net, h), sizeof ref[h]);
        ee_node_output_get(net, r2, kref, N);
        for (int w = 2; w <= 3; w++)
            for (int chunk = 0; chunk <= 2; chunk += 2) {
                ee_net_set_eval_workers(net, w);
                ee_net_set_eval_chunk(net, chunk);
                memset(net->nodes[net->heads[0]].y, 0, sizeof ref[0]);
                CHECK_OK(ctx, ee_net_forward(ctx, net, x, N, 0));
                /* a share runs other kernel blockings than the whole batch: equal to rounding, as chunks are */
                for (int h = 0; h < 2; h++)
                    CHECK(tl_close(ee_net_head_output(net, h), ref[h], N * 5, 1e-5, 1e-4, NULL) <= 1, "workers: %d "
                          "workers, chunks of %d, head %d differs from one pass (%g vs %g)", w, chunk, h,
                          ee_net_head_output(net, h)[N * 5 - 1], ref[h][N * 5 - 1]);
                ee_node_output_get(net, r2, kw, N);
                CHECK(tl_close(kw, kref, N * MID, 1e-5, 1e-4, NULL) <= 1, "workers: %d workers, chunks of %d, the kept "
                      "output differs (last sample %g vs %g)", w, chunk, kw[N * MID - 1], kref[N * MID - 1]);
            }
        CHECK(round || ee_net_activation_bytes(net) > one, "workers: their activation buffers are not counted");
        /* new weights: the copies follow */
        float *p = ee_net_params(net);
        for (size_t i = 0; i < ee_net_num_params(net); i++) p[i] *= (i % 3) ? 0.9f : -1.1f;
        ee_net_params_changed(net);
    }
    /* an output kept after the copies were made: they are made again */
    const int r3 = ee_net_find_node(net, "r3");
    ee_net_set_eval_workers(net, 1);
    CHECK_OK(ctx, ee_net_keep_output(ctx, net, r3));
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, N, 0));
    ee_node_output_get(net, r3, kref, N);
    ee_net_set_eval_workers(net, 2);
    CHECK_OK(ctx, ee_net_forward(ctx, net, x, N, 0));
    ee_node_output_get(net, r3, kw, N);
    CHECK(tl_close(kw, kref, N * MID, 1e-5, 1e-4, NULL) <= 1, "workers: an output kept after they were made differs "
          "(last sample %g vs %g)", kw[N * MID - 1], kref[N * MID - 1]);
    /* a node range runs on this net alone: its other nodes' rows stay valid up to the stop */
    ee_net_set_eval_workers(net, 2);
    const int a1 = ee_net_find_node(net, "a1");
    CHECK(ee_eval_workers(net, N, 0, a1, 0) == 1 && ee_eval_workers(net, N, 0, net->nnodes, 0) == 2 &&
          ee_eval_workers(net, 3, 0, net->nnodes, 0) == 1, "workers: split where it must not be");
    ee_net_set_eval_workers(net, 0);
    CHECK(ee_eval_workers(net, N, 0, net->nnodes, 1) == 1, "workers: a training pass split");
    free(x); free(kref); free(kw);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* Inference stores the activations between oneDNN's Winograd convs in nChw16c (net.c: plan_blocked). A
 * pre-activation network like WRN's (a 16-channel stem, a 1x1 projection shortcut, a strided conv, an exit branch
 * on a later block's output) gives the same outputs with and without the blocked tensors and as the plain loops:
 * on one batch, on a batch run in chunks, after compaction with a blocked activation live, and through a split's
 * copy of a blocked activation. */
static void test_blocked(void) {
    static const char *arch =
        "input c=3 h=32 w=32\nconv name=stem out=16 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
        "conv name=c1 out=64 k=3 pad=1 bias=0\nbn name=b2\nrelu name=r2\nconv name=c2 out=64 k=3 pad=1 bias=0\n"
        "conv name=sc in=stem out=64 k=1 pad=0 bias=0\nadd name=a1 in=c2,sc\n"
        "bn name=b3\nrelu name=r3\nconv name=c3 out=64 k=3 pad=1 bias=0\nbn name=b4\nrelu name=r4\n"
        "conv name=c4 out=64 k=3 pad=1 bias=1\nadd name=a2 in=c4,a1\n"
        "bn name=b5\nrelu name=r5\nconv name=c5 out=128 k=3 pad=1 bias=0\nbn name=b6\nrelu name=r6\n"
        "conv name=c6 out=128 k=3 stride=2 pad=1 bias=0\nconv name=sc2 in=r5 out=128 k=1 stride=2 pad=0 bias=0\n"
        "add name=a3 in=c6,sc2\ngap name=icpool in=a3\nlinear name=ic out=5 head=1\n"
        "bn name=b7 in=a3\nrelu name=r7\ngap name=pool\nlinear name=fc out=5 head=1\n";
    ee_ctx *ctx = ee_ctx_new();
    enum { N = 5, IMG = 3 * 32 * 32, A2 = 64 * 32 * 32 };
    float *x = malloc(sizeof(float) * N * IMG), out[3][2][N * 5], *act[2] = {malloc(sizeof(float) * N * A2), malloc(sizeof(float) * N * A2)};
    for (int i = 0; i < N * IMG; i++) x[i] = ee_rng_normal(ctx);
    ee_net *net[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) { /* blocked, all NHWC, the plain loops */
        ee_ctx_set_conv_kernel(ctx, k == 2 ? EE_CONV_REFERENCE : EE_CONV_AUTO);
        CHECK_OK(ctx, ee_net_from_text(ctx, arch, "blocked", &net[k]));
        if (!net[k]) goto done;
        net[k]->blk_off = k > 0;
        ee_ctx_seed(ctx, 7);
        ee_net_init(ctx, net[k]);
        for (int i = 0; i < net[k]->nnodes; i++) /* BN statistics away from the identity */
            if (net[k]->nodes[i].kind == EE_KIND_BN) {
                float *st = ee_net_state(net[k]) + net[k]->nodes[i].s_off;
                for (int j = 0; j < net[k]->nodes[i].out.c; j++) { st[j] = 0.1f * (j % 5); st[net[k]->nodes[i].out.c + j] = 0.5f + 0.1f * (j % 7); }
            }
        ee_net_params_changed(net[k]);
        CHECK_OK(ctx, ee_net_prepare(ctx, net[k], N, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net[k], x, N, 0));
        for (int h = 0; h < 2; h++) memcpy(out[k][h], ee_net_head_output(net[k], h), sizeof out[k][h]);
    }
    for (int h = 0; h < 2; h++) {
        CHECK(tl_close(out[0][h], out[1][h], N * 5, 1e-5, 1e-4, NULL) <= 1, "blocked activations: head %d differs "
              "from the all-NHWC run (%g vs %g)", h, out[0][h][0], out[1][h][0]);
        CHECK(tl_close(out[0][h], out[2][h], N * 5, 1e-4, 1e-3, NULL) <= 1, "blocked activations: head %d differs "
              "from the plain loops (%g vs %g)", h, out[0][h][0], out[2][h][0]);
    }
    ee_net *b = net[0];
    const int a1 = ee_net_find_node(b, "a1"), a2 = ee_net_find_node(b, "a2"), a3 = ee_net_find_node(b, "a3"),
              r2 = ee_net_find_node(b, "r2"), r4 = ee_net_find_node(b, "r4"), b5 = ee_net_find_node(b, "b5");
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && !ee_dconv_preferred()) {
        CHECK(b->nodes[a1].blk && b->nodes[a2].blk && b->nodes[r2].blk && b->nodes[r4].blk,
              "blocked activations: the first stage's tensors are not stored nChw16c on an AVX-512 CPU");
        CHECK(!b->nodes[a3].blk && !b->nodes[ee_net_find_node(b, "stem")].blk && !b->nodes[ee_net_find_node(b, "r7")].blk,
              "blocked activations: a tensor that an exit branch, a pool or the stem touches is stored nChw16c");
    }
#endif
    for (int i = 0; i < b->nnodes; i++)
        CHECK(!net[1]->nodes[i].blk, "blocked activations: stored nChw16c although switched off");
    /* in chunks of 2 */
    ee_net_set_eval_chunk(b, 2);
    CHECK_OK(ctx, ee_net_forward(ctx, b, x, N, 0));
    CHECK(tl_close(ee_net_head_output(b, 1), out[1][1], N * 5, 1e-5, 1e-4, NULL) <= 1,
          "blocked activations: a batch run in chunks differs");
    ee_net_set_eval_chunk(b, 0);
    /* stopped before b5 (a2 live, blocked), a2 read out as NHWC, compacted to samples 1 and 3, then finished */
    for (int k = 0; k < 2; k++) {
        CHECK_OK(ctx, ee_net_forward_range(ctx, net[k], x, 0, b5, N, 0));
        ee_node_output_get(net[k], a2, act[k], N);
    }
    CHECK(tl_close(act[0], act[1], (size_t)N * A2, 1e-5, 1e-4, NULL) <= 1, "blocked activations: a split's copy differs");
    ee_node_output_set(b, a2, act[1], N); /* and back in: the same activation */
    ee_node_output_get(b, a2, act[0], N);
    CHECK(!memcmp(act[0], act[1], sizeof(float) * N * A2), "blocked activations: a split's copy does not round-trip");
    const int keep[2] = {1, 3};
    CHECK_OK(ctx, ee_net_compact(ctx, b, b5, keep, 2));
    CHECK_OK(ctx, ee_net_forward_range(ctx, b, NULL, b5, b->nnodes, 2, 0));
    for (int j = 0; j < 2; j++)
        CHECK(tl_close(ee_net_head_output(b, 1) + 5 * j, out[1][1] + 5 * keep[j], 5, 1e-5, 1e-4, NULL) <= 1,
              "blocked activations: sample %d after compaction differs", keep[j]);
    /* a pass of one sample runs no Winograd and stores every activation NHWC, from the input and from a split's
     * activation set; the next batch is blocked again */
    CHECK_OK(ctx, ee_net_forward(ctx, b, x + 2 * IMG, 1, 0));
    CHECK(tl_close(ee_net_head_output(b, 1), out[1][1] + 5 * 2, 5, 1e-5, 1e-4, NULL) <= 1,
          "blocked activations: a pass of one sample differs");
    int nblk = 0;
    for (int i = 0; i < b->nnodes; i++) nblk += b->nodes[i].blk;
    CHECK(nblk == 0, "blocked activations: %d tensors stored nChw16c in a pass of one sample", nblk);
    ee_node_output_set(b, a2, act[1] + (size_t)3 * A2, 1);
    CHECK_OK(ctx, ee_net_forward_range(ctx, b, NULL, b5, b->nnodes, 1, 0));
    CHECK(tl_close(ee_net_head_output(b, 1), out[1][1] + 5 * 3, 5, 1e-5, 1e-4, NULL) <= 1,
          "blocked activations: one sample resumed from a split's activation differs");
    CHECK_OK(ctx, ee_net_forward(ctx, b, x, N, 0));
    CHECK(tl_close(ee_net_head_output(b, 1), out[1][1], N * 5, 1e-5, 1e-4, NULL) <= 1,
          "blocked activations: a batch after a pass of one sample differs");
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && !ee_dconv_preferred())
        CHECK(b->nodes[a1].blk && b->nodes[a2].blk, "blocked activations: not blocked again in a batch after a pass "
              "of one sample");
#endif
done:
    for (int k = 0; k < 3; k++) ee_net_free(net[k]);
    free(x);
    free(act[0]);
    free(act[1]);
    ee_ctx_free(ctx);
}

/* Training runs the same convs through Winograd too (forward, backward-data, backward-weights on nChw16c; dy in the
 * net's scratch, the blocked input kept from the forward): every parameter's gradient and the input's against the
 * plain loops, through the residual paths where dx is added to another consumer's share. A second backward
 * after one forward (the blocked input then holds dx and is rebuilt) gives the same gradients. On 16x16 maps,
 * and on 7x7 ones at batch 128 (tiles cut at the edge). */
static void winograd_training(int hw, int n) {
    static const char *arch =
        "conv name=c1 out=64 k=3 pad=1 bias=0\nbn name=b1\nrelu name=r1\n"
        "conv name=c2 out=64 k=3 pad=1 bias=1\nadd name=a1 in=c2,r1\nbn name=b2\nrelu name=r2\n"
        "conv name=c3 out=64 k=3 pad=1 bias=1\nadd name=a2 in=c3,a1\n"
        "gap name=pool\nlinear name=fc out=5 head=1\n";
    char text[1024];
    snprintf(text, sizeof text, "input c=64 h=%d w=%d\n%s", hw, hw, arch);
    ee_ctx *ctx = ee_ctx_new();
    const int img = 64 * hw * hw;
    float *x = malloc(sizeof(float) * n * img), *g[3] = {NULL, NULL, NULL}, *dx[3] = {NULL, NULL, NULL};
    uint8_t y[128];
    for (int i = 0; i < n; i++) y[i] = (uint8_t)(i * 7 % 5);
    for (int i = 0; i < n * img; i++) x[i] = ee_rng_normal(ctx);
    ee_net *net[2] = {NULL, NULL};
    size_t np = 0;
    for (int k = 0; k < 2; k++) {
        ee_ctx_set_conv_kernel(ctx, k ? EE_CONV_REFERENCE : EE_CONV_AUTO);
        CHECK_OK(ctx, ee_net_from_text(ctx, text, "winograd", &net[k]));
        if (!net[k]) break;
        ee_ctx_seed(ctx, 9);
        ee_net_init(ctx, net[k]);
        ee_net_want_input_grad(net[k], 1);
        CHECK_OK(ctx, ee_net_prepare(ctx, net[k], n, 1));
        CHECK_OK(ctx, ee_net_forward(ctx, net[k], x, n, 1));
        np = ee_net_num_params(net[k]);
        for (int rep = 0; rep < (k ? 1 : 2); rep++) { /* AUTO: twice after the same forward */
            int slot = k ? 1 : rep ? 2 : 0;
            ee_net_zero_seeds(net[k]);
            CHECK_OK(ctx, ee_net_loss(ctx, net[k], 0, y, n, 1.0f, NULL, NULL));
            CHECK_OK(ctx, ee_net_backward(ctx, net[k], n));
            g[slot] = malloc(np * sizeof(float));
            dx[slot] = malloc((size_t)n * img * sizeof(float));
            memcpy(g[slot], ee_net_grads(net[k]), np * sizeof(float));
            memcpy(dx[slot], ee_net_input_grad(net[k]), (size_t)n * img * sizeof(float));
        }
    }
    if (g[0] && g[1] && g[2]) {
        /* within 1e-3 of each tensor's largest value: Winograd's rounding on sums of up to 576 x 1024 terms */
        double gmax = 0, dmax = 0;
        for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g[1][i]));
        for (size_t i = 0; i < (size_t)n * img; i++) dmax = fmax(dmax, fabs(dx[1][i]));
        size_t worst = 0;
        double e = tl_close(g[0], g[1], np, 1e-3 * gmax, 1e-3, &worst);
        CHECK(e <= 1 && gmax > 0, "Winograd training (%dx%d): parameter gradients differ from the plain loops (%g vs %g at "
              "%zu)", hw, hw, g[0][worst], g[1][worst], worst);
        e = tl_close(dx[0], dx[1], (size_t)n * img, 1e-3 * dmax, 1e-3, &worst);
        CHECK(e <= 1 && dmax > 0, "Winograd training: input gradients differ from the plain loops (%g vs %g at %zu)",
              dx[0][worst], dx[1][worst], worst);
        CHECK(!memcmp(g[0], g[2], np * sizeof(float)) && !memcmp(dx[0], dx[2], (size_t)n * img * sizeof(float)),
              "Winograd training: a second backward after one forward gives other gradients");
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx512f") && !ee_dconv_preferred()) {
            const ee_net *w = net[0];
            CHECK(ee_conv_wino_used(&w->nodes[ee_net_find_node(w, "c1")]) &&
                      ee_conv_wino_used(&w->nodes[ee_net_find_node(w, "c3")]),
                  "Winograd: not used in training for 64-channel 3x3 convs on an AVX-512 CPU");
        }
#endif
    }
    for (int k = 0; k < 3; k++) { free(g[k]); free(dx[k]); }
    for (int k = 0; k < 2; k++) ee_net_free(net[k]);
    free(x);
    ee_ctx_free(ctx);
}

static void test_winograd_training(void) {
    winograd_training(16, 4); /* 4 x 4 output tiles per map */
    winograd_training(7, 128); /* maps that are no multiple of the tile: Fashion-MNIST's last stage, batch 128 */
}

static void test_seal(void) {
    seal_case("resnet20", 1, 28); /* stem, stride-2 convs, 1x1 shortcuts, fused residual adds */
    seal_case("mobilenet", 3, 32); /* depthwise convs stay on oneDNN, pointwise ones are sealed */
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &net));
    CHECK(ee_net_seal(ctx, net) == EE_ERR_ARG, "sealing an unprepared net");
    CHECK_OK(ctx, ee_net_prepare(ctx, net, 2, 1));
    CHECK(ee_net_seal(ctx, net) == EE_ERR_ARG, "sealing a net prepared for training");
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* oneDNN is loaded on first use: the loader's errors name the library and the reason; a net whose convs all run
 * on the direct kernel never creates a oneDNN engine, one with a depthwise conv does (except with eenn's own
 * kernels only: EE_CONV_BUILTIN, the default on aarch64) */
static void test_dnnl_loader(void) {
    ee_ctx *ctx = ee_ctx_new();
    CHECK_OK(ctx, ee_dnnl_probe(ctx, "libdnnl.so." EE_STR_DNNL_MAJOR));
    CHECK(ee_dnnl_probe(ctx, "libeenn-no-such-library.so.9") == EE_ERR_BACKEND &&
              strstr(ee_ctx_error(ctx), "libeenn-no-such-library.so.9"),
          "a missing library: %s", ee_ctx_error(ctx));
    CHECK(ee_dnnl_probe(ctx, "libz.so.1") == EE_ERR_BACKEND && strstr(ee_ctx_error(ctx), "no symbol dnnl_"),
          "a library without oneDNN's symbols: %s", ee_ctx_error(ctx));
    if (ee_dconv_preferred()) { /* AUTO picks the direct kernel (an AVX2 CPU without AVX-512) */
        ee_net *net = NULL;
        float x[784] = {0};
        CHECK_OK(ctx, ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &net));
        ee_net_init(ctx, net);
        CHECK_OK(ctx, ee_net_prepare(ctx, net, 1, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, 1, 0));
        CHECK(net->dnnl == NULL, "resnet20 inference on the direct kernel created a oneDNN engine");
        ee_net_free(net);
        CHECK_OK(ctx, ee_net_builtin(ctx, "mobilenet", 1, 28, 28, 10, &net));
        ee_net_init(ctx, net);
        CHECK_OK(ctx, ee_net_prepare(ctx, net, 1, 0));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, 1, 0));
        if (ee_conv_builtin_default()) /* aarch64: eenn's own kernels only, oneDNN never loaded */
            CHECK(net->dnnl == NULL, "mobilenet's depthwise convs created a oneDNN engine on aarch64");
        else
            CHECK(net->dnnl != NULL, "mobilenet's depthwise convs ran without a oneDNN engine");
        ee_net_free(net);
    }
    /* EE_CONV_BUILTIN: no convolution reaches oneDNN, in inference or training */
    ee_ctx_set_conv_kernel(ctx, EE_CONV_BUILTIN);
    for (int train = 0; train < 2; train++) {
        ee_net *net = NULL;
        float x[2 * 784] = {0};
        uint8_t y[2] = {1, 2};
        CHECK_OK(ctx, ee_net_builtin(ctx, "mobilenet", 1, 28, 28, 10, &net));
        ee_net_init(ctx, net);
        CHECK_OK(ctx, ee_net_prepare(ctx, net, 2, train));
        CHECK_OK(ctx, ee_net_forward(ctx, net, x, 2, train));
        if (train) {
            ee_net_zero_seeds(net);
            CHECK_OK(ctx, ee_net_loss(ctx, net, ee_net_num_heads(net) - 1, y, 2, 1.0f, NULL, NULL));
            CHECK_OK(ctx, ee_net_backward(ctx, net, 2));
        }
        CHECK(net->dnnl == NULL, "mobilenet with EE_CONV_BUILTIN (%s) created a oneDNN engine",
              train ? "training" : "inference");
        ee_net_free(net);
    }
    ee_ctx_free(ctx);
}

/* the same seed with one thread gives bit-identical weights; resume continues exactly */
static void train_small(const char *ckpt, int epochs, int resume, float *out, size_t *np) {
    ee_ctx *ctx = ee_ctx_new();
    ee_ctx_set_threads(ctx, 1);
    ee_ctx_seed(ctx, 7);
    ee_net *net = NULL;
    ee_net_from_text(ctx, "input c=1 h=8 w=8\nconv out=4 k=3 pad=1\nbn\nrelu\nmaxpool k=2\ndropout p=0.2\nflatten\nlinear out=3\n",
                     "small", &net);
    ee_net_init(ctx, net);
    ee_dataset ds = {64, 1, 8, 8, 3, malloc(64 * 64), malloc(64), {0.5f}, {0.3f}};
    for (int i = 0; i < 64 * 64; i++) ds.pixels[i] = (uint8_t)((i * 37) % 251);
    for (int i = 0; i < 64; i++) ds.labels[i] = (uint8_t)(ds.pixels[i * 64 + 9] % 3);
    ee_train_config cfg = {epochs, 16, {EE_OPTIM_SGD, 0.05f, 0.9f, 1e-4f, 1, 0, 0, 0}, {EE_SCHED_STEP, 0.05f, 0.1f, {2}, 1, 0, 0},
                           {1, 1}, ckpt, resume, 0, EE_MODE_CNN, 0, 0, 0, 0, 0, 0, 0, NULL, 0};
    ee_status s = ee_train(ctx, net, &ds, NULL, NULL, &cfg, NULL, NULL);
    CHECK(s == EE_OK, "training: %s", ee_ctx_error(ctx));
    *np = ee_net_num_params(net);
    memcpy(out, ee_net_params(net), *np * 4);
    free(ds.pixels); free(ds.labels);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

/* a NaN loss stops training with a clear error instead of silently producing garbage */
static void test_nan(void) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    CHECK_OK(ctx, ee_net_from_text(ctx, "input c=1 h=4 w=4\nflatten\nlinear out=3\n", "nan", &net));
    ee_net_init(ctx, net);
    ee_net_params(net)[0] = NAN;
    ee_dataset ds = {8, 1, 4, 4, 3, calloc(8, 16), calloc(8, 1), {0.5f}, {0.3f}};
    for (int i = 0; i < 8 * 16; i++) ds.pixels[i] = (uint8_t)(i * 7);
    ee_train_config cfg = {1, 4, {EE_OPTIM_SGD, 0.1f, 0, 0, 0, 0, 0, 0}, {EE_SCHED_STEP, 0.1f, 0.1f, {0}, 0, 0, 0}, {0, 0}, NULL, 0, 0, EE_MODE_CNN, 0, 0, 0, 0, 0, 0, 0, NULL, 0};
    ee_status s = ee_train(ctx, net, &ds, NULL, NULL, &cfg, NULL, NULL);
    CHECK(s == EE_ERR_NUMERIC && strstr(ee_ctx_error(ctx), "diverged"), "NaN loss: %s", ee_ctx_error(ctx));
    ds.labels[3] = 7;
    ee_net_params(net)[0] = 0;
    s = ee_train(ctx, net, &ds, NULL, NULL, &cfg, NULL, NULL);
    CHECK(s == EE_ERR_ARG && strstr(ee_ctx_error(ctx), "label 7"), "label out of range: %s", ee_ctx_error(ctx));
    free(ds.pixels); free(ds.labels);
    ee_net_free(net);
    ee_ctx_free(ctx);
}

static void test_determinism(void) {
    float a[1024], b[1024], c[1024];
    size_t na, nb, nc;
    char ck[512];
    snprintf(ck, sizeof ck, "%s/small.ckpt", tmpdir);
    train_small(NULL, 3, 0, a, &na);
    train_small(NULL, 3, 0, b, &nb);
    CHECK(na == nb && !memcmp(a, b, na * 4), "same seed, one thread: weights differ");
    /* 2 epochs with a checkpoint, then resume to 3: identical to 3 straight epochs */
    remove(ck);
    train_small(ck, 2, 0, c, &nc);
    train_small(ck, 3, 1, c, &nc);
    CHECK(nc == na && !memcmp(a, c, na * 4), "resumed training differs from an uninterrupted run");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/eenn-test-%ld", (long)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd) != 0) return 1;
    test_sgd_adam();
    test_arch();
    test_data();
    test_tinyimagenet();
    test_svhn();
    test_io();
    test_compact();
    test_seal();
    test_dropout_fusion();
    test_preact_add_fusion();
    test_winograd();
    test_winograd_small_batch(256, 8, 2, 1);
    test_winograd_small_batch(256, 8, 1, 0);
    test_winograd_small_batch(64, 8, 2, 0);
    test_winograd_training();
    test_blocked();
    test_workers();
    test_dnnl_loader();
    test_determinism();
    test_nan();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return tl_summary("test_core");
}
