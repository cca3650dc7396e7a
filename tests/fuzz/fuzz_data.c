/* fuzz_data.c: libFuzzer harness for the dataset readers: the first byte chooses IDX (the rest split into an
 * image file and a label file, each possibly gzipped as given), a CIFAR-10/100 batch, or a text directory (the
 * rest split into train.tsv and test.tsv, read as bytes and as hashed words); any bytes give a dataset or an
 * error with a message. */
#include "eenn.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
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
    int mode = data[0] % 4;
    data++, size--;
    if (mode == 3) { /* text: DIR/train.tsv and DIR/test.tsv */
        char dir[64], tr[96], te[96];
        snprintf(dir, sizeof dir, "/tmp/eenn-fuzz-t-%ld", (long)getpid());
        snprintf(tr, sizeof tr, "%s/train.tsv", dir);
        snprintf(te, sizeof te, "%s/test.tsv", dir);
        mkdir(dir, 0700);
        size_t cut = size / 2;
        put(tr, data, cut);
        put(te, data + cut, size - cut);
        for (int kind = 0; kind < 2; kind++) {
            s = ee_dataset_load_text(ctx, dir, kind ? "test" : "train", kind ? EE_TOKENS_WORDS : EE_TOKENS_BYTES, 64, &ds);
            if (s != EE_OK && !ee_ctx_error(ctx)[0]) abort();
            if (!s && (ds->n < 1 || ds->classes < 1 || ds->c != (kind ? 2 : 1))) abort();
            ee_dataset_free(ds);
            ds = NULL;
        }
        remove(tr);
        remove(te);
        rmdir(dir);
        ee_ctx_free(ctx);
        return 0;
    }
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
