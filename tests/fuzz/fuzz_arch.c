/* fuzz_arch.c: libFuzzer harness for the architecture text (ee_net_from_text): any text gives a network or an
 * error with a message, and every text it accepts survives its own round trip (text -> net -> canonical text ->
 * net -> the same canonical text). */
#include "eenn.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL, *back = NULL;
    if (ee_net_from_text(ctx, text, "fuzz", &net) == EE_OK) {
        if (ee_net_from_text(ctx, ee_net_arch(net), "canonical", &back) != EE_OK) abort();
        if (strcmp(ee_net_arch(net), ee_net_arch(back))) abort();
    } else if (!ee_ctx_error(ctx)[0]) {
        abort();
    }
    ee_net_free(net);
    ee_net_free(back);
    ee_ctx_free(ctx);
    free(text);
    return 0;
}
