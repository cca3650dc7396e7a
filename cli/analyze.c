#include "common.h"
int cmd_analyze(args *a) { (void)a; return 0; } int cmd_report(args *a) { (void)a; return 0; }
