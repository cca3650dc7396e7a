/* fuzz_model.c: libFuzzer harness for the model file reader (ee_net_load): any bytes give a network or an error
 * with a message, never a crash, a leak or undefined behaviour. A network that loads must save and load again. */
#include "eenn.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64], again[80];
    snprintf(path, sizeof path, "/tmp/eenn-fuzz-model-%ld.eenn", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    if (ee_net_load(ctx, path, &net) == EE_OK) {
        snprintf(again, sizeof again, "%s.again", path);
        ee_net *back = NULL;
        if (ee_net_save(ctx, net, NULL, 0, again) != EE_OK || ee_net_load(ctx, again, &back) != EE_OK) abort();
        ee_net_free(back);
        remove(again);
    } else if (!ee_ctx_error(ctx)[0]) {
        abort(); /* a failure without a message */
    }
    ee_net_free(net);
    ee_ctx_free(ctx);
    remove(path);
    return 0;
}
