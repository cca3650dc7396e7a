/* common.h: helpers shared by the eenn commands (cli/common.c). */
#ifndef EENN_CLI_COMMON_H
#define EENN_CLI_COMMON_H
#include "eenn.h"
#include <stdio.h>

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* prints "eenn: <message>" on stderr and exits 1 */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* dies with the context's message if s is not EE_OK */
void check(ee_status s, ee_ctx *ctx);
double now_s(void);

typedef struct { int argc; char **argv; int i; const char *cmd; } args;
int is_opt(args *a, const char *name);
const char *val(args *a);                       /* the option's value, or die */
long ival(args *a, long lo, long hi);           /* an integer value in [lo, hi], or die */
double fval(args *a, double lo, double hi);     /* a number in [lo, hi], or die */

char *read_text(const char *path);
void load_data(ee_ctx *ctx, const char *dir, ee_dataset **train, ee_dataset **val, ee_dataset **test, int nval,
               int subset, int test_subset);
/* the normalisation the model was trained with (its data.mean / data.std metadata) */
void apply_norm(const ee_net *net, ee_dataset *ds);
/* "IC3" or "final" */
const char *head_name(const ee_net *net, int h, char *buf, size_t n);

/* s as the inside of a JSON string (quotes, backslashes and control characters escaped), in one of 8 rotating
 * buffers: valid until 8 more calls, so that one printf can take several */
const char *js(const char *s);

/* "SIZE" (bottom-right corner) or "SIZE@X,Y" into t->size, x, y */
void parse_trigger(const char *cmd, const char *s, ee_trigger *t);

int cmd_analyze(args *a);
int cmd_report(args *a);
#endif
