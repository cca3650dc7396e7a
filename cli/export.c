/* export.c: `eenn export MODEL -o DIR`: the model with its exits as ONNX graphs (one per segment between exits, and
 * the dense network), for ONNX Runtime. The export itself is scripts/eenn_export.py, run with PyTorch's exporter;
 * this command finds it (beside the build, or in the installed share/eenn) and runs it. */
#include "common.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EE_DATADIR
#define EE_DATADIR "/usr/local/share/eenn"
#endif

static const char *export_help =
    "usage: eenn export MODEL -o DIR [--q X]\n"
    "Writes the model with its exits as ONNX (docs/onnx.md): DIR/segment1.onnx ... one graph per segment between\n"
    "exits (each takes the activation the previous exit read and gives its exit's logits and the next activation),\n"
    "DIR/dense.onnx (the network without exits) and DIR/model.json (the policy and the input normalisation, also in\n"
    "each graph's metadata). peers/onnx_exits.js runs it with ONNX Runtime and real exits. Needs Debian's\n"
    "python3-torch (the exporter). --q X: one max-probability threshold instead of the stored policy.\n";

static int readable(const char *p) { return access(p, R_OK) == 0; }

int cmd_export(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(export_help, stdout); return 0; }
    if (argc < 2) usage_error("export: give the model file and -o DIR (eenn export --help)");
    int has_out = 0;
    for (int i = 1; i < argc; i++) has_out |= !strcmp(argv[i], "-o") || !strcmp(argv[i], "--out");
    if (!has_out) usage_error("export: give the output directory with -o DIR");
    /* the script: $EENN_SCRIPTS, then ../scripts beside this binary (a build tree), then the installed copy */
    char self[PATH_MAX], script[PATH_MAX + 64];
    const char *env = getenv("EENN_SCRIPTS");
    script[0] = 0;
    if (env) snprintf(script, sizeof script, "%s/eenn_export.py", env);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (!readable(script) && n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) *slash = 0;
        snprintf(script, sizeof script, "%s/../scripts/eenn_export.py", self);
    }
    if (!readable(script)) snprintf(script, sizeof script, "%s/eenn_export.py", EE_DATADIR);
    if (!readable(script)) die("export: scripts/eenn_export.py not found (set EENN_SCRIPTS to its directory)");
    const char *py = readable("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) die("out of memory");
    args[0] = (char *)py;
    args[1] = script;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    fflush(stdout);
    execvp(py, args);
    die("export: cannot run %s (install python3 and python3-torch)", py);
}
