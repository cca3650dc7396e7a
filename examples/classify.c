/* classify.c: the smallest program against the installed library: build (or load) a network and classify
 * one blank image. Build: cc classify.c $(pkg-config --cflags --libs --static eenn) */
#include <eenn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    ee_status s = argc > 1 ? ee_net_load(ctx, argv[1], &net) : ee_net_builtin(ctx, "resnet20", 1, 28, 28, 10, &net);
    if (!s && argc == 1) s = ee_net_init(ctx, net);
    if (!s) s = ee_net_prepare(ctx, net, 1, 0);
    if (!s) s = ee_net_seal(ctx, net); /* inference only: one copy of the weights */
    int c, h, w;
    float *x = NULL;
    if (!s) {
        ee_net_input_shape(net, &c, &h, &w);
        x = calloc((size_t)c * h * w, sizeof(float));
        s = ee_net_forward(ctx, net, x, 1, 0);
    }
    if (s) {
        fprintf(stderr, "classify: %s\n", ee_ctx_error(ctx));
        return 1;
    }
    const float *logits = ee_net_head_output(net, ee_net_num_heads(net) - 1);
    int best = 0;
    for (int k = 1; k < ee_net_classes(net); k++)
        if (logits[k] > logits[best]) best = k;
    printf("class %d\n", best);
    free(x);
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}
