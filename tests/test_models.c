/* test_models.c: every published model in models/ loads and gives the logits recorded in
 * tests/fixtures/models-logits.bin: all heads, on the first test images of Fashion-MNIST, normalised as the model
 * says. The file was written by an earlier build of the library (`test_models --write`), so a change to the layer
 * table, the text format or the model reader that altered what a model computes fails here.
 * Fixture records: u32 name length, name, u32 heads, u32 classes, u32 images, then heads x images x classes
 * float32 logits. */
#include "eenn.h"
#include "testlib.h"
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE "tests/fixtures/models-logits.bin"
#define NIMG 16
#define DATA "/usr/share/datasets/fashion-mnist"

/* logits of every head for the first NIMG test images: heads x NIMG x classes floats (malloc-ed) */
static float *model_logits(ee_ctx *ctx, const char *path, const ee_dataset *test, int *heads, int *classes) {
    ee_net *net = NULL;
    if (ee_net_load(ctx, path, &net)) return NULL;
    ee_dataset ds = *test;
    const char *m = ee_net_meta(net, "data.mean"), *s = ee_net_meta(net, "data.std");
    if (m && s) {
        sscanf(m, "%f,%f,%f", &ds.mean[0], &ds.mean[1], &ds.mean[2]);
        sscanf(s, "%f,%f,%f", &ds.std[0], &ds.std[1], &ds.std[2]);
    }
    int H = ee_net_num_heads(net), K = ee_net_classes(net), idx[NIMG];
    for (int i = 0; i < NIMG; i++) idx[i] = i;
    float *x = malloc(sizeof(float) * NIMG * ds.c * ds.h * ds.w), *out = malloc(sizeof(float) * H * NIMG * K);
    ee_dataset_batch(ctx, &ds, idx, NIMG, NULL, x, NULL);
    if (!ee_net_prepare(ctx, net, NIMG, 0) && !ee_net_forward(ctx, net, x, NIMG, 0)) {
        for (int h = 0; h < H; h++) memcpy(out + (size_t)h * NIMG * K, ee_net_head_output(net, h), sizeof(float) * NIMG * K);
    } else {
        free(out);
        out = NULL;
    }
    free(x);
    ee_net_free(net);
    *heads = H;
    *classes = K;
    return out;
}

static int is_model(const char *name) {
    size_t n = strlen(name);
    return n > 5 && !strcmp(name + n - 5, ".eenn");
}

int main(int argc, char **argv) {
    int write = argc > 1 && !strcmp(argv[1], "--write");
    ee_ctx *ctx = ee_ctx_new();
    ee_dataset *test = NULL;
    CHECK_OK(ctx, ee_dataset_load_dir(ctx, DATA, "test", &test));
    DIR *dir = opendir("models");
    CHECK(dir != NULL, "no models/ directory");
    if (!test || !dir) return tl_summary("test_models");
    FILE *fx = fopen(FIXTURE, write ? "wb" : "rb");
    CHECK(fx != NULL, "cannot open %s", FIXTURE);
    char names[64][256];
    int nmodels = 0;
    for (struct dirent *e; (e = readdir(dir)) && nmodels < 64;)
        if (is_model(e->d_name)) snprintf(names[nmodels++], sizeof names[0], "%.255s", e->d_name);
    closedir(dir);
    CHECK(nmodels >= 6, "models/ holds %d models", nmodels);
    for (int k = 0; k < nmodels && fx; k++) {
        char path[400];
        snprintf(path, sizeof path, "models/%.255s", names[k]);
        int H = 0, K = 0;
        float *got = model_logits(ctx, path, test, &H, &K);
        CHECK(got != NULL, "%s: %s", path, ee_ctx_error(ctx));
        if (!got) continue;
        size_t n = (size_t)H * NIMG * K;
        if (write) {
            uint32_t hdr[4] = {(uint32_t)strlen(names[k]), (uint32_t)H, (uint32_t)K, NIMG};
            fwrite(hdr, 4, 1, fx);
            fwrite(names[k], 1, hdr[0], fx);
            fwrite(hdr + 1, 4, 3, fx);
            fwrite(got, sizeof(float), n, fx);
            free(got);
            continue;
        }
        /* find this model's record */
        rewind(fx);
        float *want = NULL;
        for (;;) {
            uint32_t nl, dims[3];
            char nm[256];
            if (fread(&nl, 4, 1, fx) != 1 || nl >= sizeof nm || fread(nm, 1, nl, fx) != nl || fread(dims, 4, 3, fx) != 3)
                break;
            nm[nl] = 0;
            size_t cnt = (size_t)dims[0] * dims[1] * dims[2];
            if (!strcmp(nm, names[k])) {
                CHECK(dims[0] == (uint32_t)H && dims[1] == (uint32_t)K && dims[2] == NIMG, "%s: %d heads x %d classes, "
                      "the fixture has %u x %u", path, H, K, dims[0], dims[1]);
                want = malloc(cnt * sizeof(float));
                if (want && (cnt != n || fread(want, sizeof(float), cnt, fx) != cnt)) { free(want); want = NULL; }
                break;
            }
            fseek(fx, (long)(cnt * sizeof(float)), SEEK_CUR);
        }
        CHECK(want != NULL, "%s: no logits recorded in %s (a new model: run build/tests/test_models --write)", path,
              FIXTURE);
        if (want) {
            size_t worst = 0;
            /* across convolution kernels (oneDNN or the direct one) the sums differ in order: 1e-3 is far below
             * what a changed weight or layer does */
            double e = tl_close(got, want, n, 1e-3, 1e-3, &worst);
            CHECK(e <= 1, "%s: logits differ from the recorded ones (worst: %g against %g)", path, got[worst],
                  want[worst]);
        }
        free(want);
        free(got);
    }
    if (fx) fclose(fx);
    if (write) printf("logits of %d models written to %s\n", nmodels, FIXTURE);
    ee_dataset_free(test);
    ee_ctx_free(ctx);
    return tl_summary("test_models");
}
