/* fuzz_data.c: libFuzzer harness for the dataset readers: the first byte chooses IDX (the rest split into an
 * image file and a label file, each possibly gzipped as given) or a CIFAR-10/100 batch; any bytes give a dataset
 * or an error with a message. */
#include "eenn.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void put(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(d, 1, n, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    char a[64], b[64];
    snprintf(a, sizeof a, "/tmp/eenn-fuzz-a-%ld", (long)getpid());
    snprintf(b, sizeof b, "/tmp/eenn-fuzz-b-%ld", (long)getpid());
    ee_ctx *ctx = ee_ctx_new();
    ee_dataset *ds = NULL;
    ee_status s;
    int mode = data[0] % 3;
    data++, size--;
    if (mode == 0) {
        size_t cut = size / 2;
        put(a, data, cut);
        put(b, data + cut, size - cut);
        s = ee_dataset_load_idx(ctx, a, b, &ds);
    } else {
        put(a, data, size);
        const char *files[1] = {a};
        s = ee_dataset_load_cifar(ctx, files, 1, mode - 1, &ds);
    }
    if (s != EE_OK && !ee_ctx_error(ctx)[0]) abort();
    ee_dataset_free(ds);
    ee_ctx_free(ctx);
    remove(a);
    remove(b);
    return 0;
}
