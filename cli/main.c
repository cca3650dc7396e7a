/* main.c: the eenn command-line tool. Each command lives in a file of its own (train.c, eval.c, ...). Every
 * failure prints one line "eenn: <file>: <problem>" on stderr; usage errors exit 2, other failures 1. Measuring
 * commands take --json. */
#include "common.h"
#include <string.h>

static const char *main_help =
    "eenn " EE_VERSION_STRING ": early-exit neural networks (Shallow-Deep Networks) in C\n"
    "usage: eenn COMMAND [options]   (eenn COMMAND --help for details)\n"
    "  train   train a CNN, or an SDN (--mode sdn, or --mode ic-only on a trained CNN)\n"
    "  eval    accuracy of a model (per exit for an SDN), or several models side by side\n"
    "  info    parameters and FLOPs per layer of a model or a built-in architecture\n"
    "  calibrate  pick a model's exit policy on the validation split (an accuracy drop or a cost budget)\n"
    "  policy     learn a model's exit policy: gates on its exits' uncertainty (Bolukbasi et al.)\n"
    "  cascade    join trained networks into one that stops after any of them (network selection)\n"
    "  infer   classify images or dataset files with early exits (also split with a server: --split --server)\n"
    "  serve   an HTTP server: classifies inputs, and finishes the samples an edge device sends from a split\n"
    "  compare every exit method on the same models and data: accuracy, FLOPs, measured speed\n"
    "  riskcheck  whether risk-controlled thresholds keep their guarantee, over random calibration/test splits\n"
    "  bench   inference and training speed, and measured early-exit speedup (--exits)\n"
    "  export  the model with its exits as ONNX graphs, one per segment, for ONNX Runtime\n"
    "  quantize  int8 convolutions for a trained model, its exit policy recalibrated\n"
    "  analyze overthinking in an SDN: wasteful and destructive effects, confusion metric, backdoors\n"
    "  report  the analysis as one self-contained HTML page with charts, Grad-CAM and image galleries\n";

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { fputs(main_help, stdout); return argc < 2 ? 2 : 0; }
    if (!strcmp(argv[1], "--version")) { puts("eenn " EE_VERSION_STRING); return 0; }
    static const struct { const char *name; int (*run)(int, char **); } commands[] = {
        {"train", cmd_train}, {"eval", cmd_eval}, {"info", cmd_info}, {"bench", cmd_bench},
        {"calibrate", cmd_calibrate}, {"policy", cmd_policy}, {"cascade", cmd_cascade}, {"infer", cmd_infer}, {"serve", cmd_serve}, {"compare", cmd_compare}, {"riskcheck", cmd_riskcheck}, {"export", cmd_export}, {"quantize", cmd_quantize}, {"analyze", cmd_analyze},
        {"report", cmd_report}};
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    usage_error("unknown command '%s' (eenn --help lists them)", argv[1]);
}
