#include "analysis.h"
int cmd_report(args *a) { (void)a; return 0; }
