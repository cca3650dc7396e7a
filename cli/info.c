/* info.c: `eenn info`: parameters and FLOPs per layer of a model or an architecture, or its text. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *info_help =
    "usage: eenn info [MODEL] [--arch NAME | --arch-file FILE] [--input CxHxW] [--classes N] [--summary] [--text] [--json]\n"
    "Parameters and FLOPs per layer and in total, of a model file or a built-in architecture\n"
    "(default input 3x32x32, 10 classes). FLOPs count a multiply-add as 2; 'ref ops' is the SDN\n"
    "reference profiler's count with its quirks (docs/design.md). --summary prints the totals only;\n"
    "--text prints the architecture in eenn's text format (a start for custom networks).\n";

enum { O_ARCH = 256, O_ARCH_FILE, O_INPUT, O_CLASSES, O_LAYERS, O_SUMMARY, O_TEXT, O_JSON };
static const struct option info_opts[] = {
    {"arch", required_argument, NULL, O_ARCH}, {"arch-file", required_argument, NULL, O_ARCH_FILE},
    {"input", required_argument, NULL, O_INPUT}, {"classes", required_argument, NULL, O_CLASSES},
    {"layers", no_argument, NULL, O_LAYERS}, {"summary", no_argument, NULL, O_SUMMARY},
    {"text", no_argument, NULL, O_TEXT}, {"json", no_argument, NULL, O_JSON},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *arch = NULL, *arch_file = NULL;
    int c = 3, h = 32, w = 32, classes = 10, layers = 1, json = 0, text = 0;
    cli_args a = {"info", info_help, info_opts, NULL, argc, argv, -1, 0};
    for (int o; (o = cli_next(&a)) != -1;) {
        switch (o) {
        case O_ARCH: arch = optarg; break;
        case O_ARCH_FILE: arch_file = optarg; break;
        case O_INPUT: parse_shape(&a, &c, &h, &w); break;
        case O_CLASSES: classes = (int)cli_int(&a, 2, 100000); break;
        case O_LAYERS: layers = 1; break;
        case O_SUMMARY: layers = 0; break;
        case O_TEXT: text = 1; break;
        case O_JSON: json = 1; break;
        }
    }
    if (cli_npos(&a) > 1) usage_error("info: more than one model file given");
    if (cli_npos(&a)) model = cli_pos(&a)[0];
    if ((model != NULL) + (arch != NULL) + (arch_file != NULL) > 1)
        usage_error("info: give one of MODEL, --arch and --arch-file");
    ee_ctx *ctx = ee_ctx_new();
    ee_net *net = NULL;
    if (model) check(ee_net_load(ctx, model, &net), ctx);
    else if (arch_file) {
        char *t = read_text(arch_file);
        check(ee_net_from_text(ctx, t, arch_file, &net), ctx);
        free(t);
    } else check(ee_net_builtin(ctx, arch ? arch : "resnet56", c, h, w, classes, &net), ctx);
    ee_net_input_shape(net, &c, &h, &w);
    if (text) {
        fputs(ee_net_arch(net), stdout);
        ee_net_free(net);
        ee_ctx_free(ctx);
        return 0;
    }
    double macs = 0, flops = 0, prof = 0;
    int nn = ee_net_num_nodes(net);
    if (json) printf("{\"arch\":\"%s\",\"input\":[%d,%d,%d],\"classes\":%d,\"layers\":[", js(ee_net_name(net)), c, h, w, ee_net_classes(net));
    else if (layers) printf("%-22s %-8s %-14s %10s %12s %12s\n", "layer", "kind", "output", "params", "MFLOPs", "ref Mops");
    for (int i = 0; i < nn; i++) {
        ee_node_info in;
        ee_net_node_info(net, i, &in);
        macs += in.macs; flops += in.flops; prof += in.profiler_ops;
        if (json)
            printf("%s{\"name\":\"%s\",\"kind\":\"%s\",\"out\":[%d,%d,%d],\"params\":%zu,\"flops\":%.0f,\"macs\":%.0f,\"ref_ops\":%.0f}",
                   i ? "," : "", js(in.name), in.kind, in.c, in.h, in.w, in.params, in.flops, in.macs, in.profiler_ops);
        else if (layers) {
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%dx%d", in.c, in.h, in.w);
            printf("%-22s %-8s %-14s %10zu %12.3f %12.3f\n", in.name, in.kind, shape, in.params, in.flops / 1e6,
                   in.profiler_ops / 1e6);
        }
    }
    size_t np = ee_net_num_params(net);
    /* a model's exit policy, with its guarantee if it has one */
    ee_exit_policy pol;
    char desc[512] = "", ptext[8192] = "";
    int have = model && ee_net_num_heads(net) > 1 && model_policy(ctx, net, -1, &pol);
    if (have) {
        describe_policy(&pol, desc, sizeof desc);
        check(ee_policy_to_text(ctx, &pol, ptext, sizeof ptext), ctx);
    }
    if (json)
        printf("],\"params\":%zu,\"macs\":%.0f,\"flops\":%.0f,\"ref_ops\":%.0f,\"int8_convs\":%d%s%s%s}\n", np, macs,
               flops, prof, ee_net_int8_layers(net), have ? ",\"policy\":\"" : "", have ? js(ptext) : "", have ? "\"" : "");
    else {
        printf("%s, input %dx%dx%d, %d classes: %zu parameters (%.2fM), %.2fM MACs, %.1f MFLOPs per image "
               "(reference profiler: %.1f Mops)\n",
               ee_net_name(net), c, h, w, ee_net_classes(net), np, np / 1e6, macs / 1e6, flops / 1e6, prof / 1e6);
        if (ee_net_int8_layers(net))
            printf("int8: %d convolutions run in int8 in inference (eenn quantize; docs/int8.md)\n", ee_net_int8_layers(net));
        if (have) printf("exit policy: %s\n", desc);
    }
    ee_net_free(net);
    ee_ctx_free(ctx);
    return 0;
}

