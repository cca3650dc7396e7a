/* common.h: helpers shared by the eenn commands (cli/common.c). */
#ifndef EENN_CLI_COMMON_H
#define EENN_CLI_COMMON_H
#include "eenn.h"
#include <getopt.h>
#include <stdio.h>

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* prints "eenn: <message>" on stderr and exits 1 (a failure: a file, the data, the library) */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* the same with exit status 2: the command line itself is wrong (an unknown option, a bad value, a missing
 * argument, options that exclude each other) */
void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* dies with the context's message if s is not EE_OK */
void check(ee_status s, ee_ctx *ctx);
/* data-parallel training (mpi.c): this process's rank in failure lines (-1: one process), what a failure does
 * after printing its line (stop every rank), what a rank does when another one failed, and what it does before
 * printing (ranks other than 0 wait for rank 0 to report a failure they share) */
extern int cli_rank;
extern void (*cli_fail_hook)(int status);
extern void (*cli_peer_hook)(void);
extern void (*cli_pause_hook)(void);
/* starts MPI when an MPI launcher started this process, and fills par (size 1 otherwise); returns the size */
int mpi_start(ee_parallel *par);
void mpi_finish(void);
int mpi_local_size(void);
int mpi_time_allreduce(size_t n, double secs, double *mean, double *p50, double *p99, int *reps);
double now_s(void);
/* qsort comparison of doubles, ascending (latency percentiles) */
int cmp_double(const void *a, const void *b);

/* Options of one command, parsed with getopt_long: `--opt value`, `--opt=value`, `--` and `-h`/`--help` work as
 * in other GNU tools, and options may come before or after the positional arguments. */
typedef struct {
    const char *cmd, *help;       /* "train"; printed on -h / --help */
    const struct option *opts;    /* ends with a zero entry */
    const char *shortopts;        /* short options besides -h ("o:" for -o FILE), or NULL */
    int argc;
    char **argv;                  /* argv[0] is the command's name */
    int li;                       /* the long option just read (index into opts), or -1 for a short one */
    int id;                       /* its id */
} cli_args;
/* The next option's id (its struct option val), or -1 when the options are done: then a->argv[optind ..
 * a->argc) are the positional arguments. -h and --help print the help and exit 0; an unknown option or a missing
 * value is a usage error. */
int cli_next(cli_args *a);
const char *cli_opt(const cli_args *a);             /* "--lr", for messages */
const char *cli_val(const cli_args *a);             /* the option's value */
long cli_int(const cli_args *a, long lo, long hi);  /* an integer value in [lo, hi], or a usage error */
double cli_num(const cli_args *a, double lo, double hi); /* a number in [lo, hi], or a usage error */
int cli_replicas(const cli_args *a);                /* --replicas: auto (EE_REPLICAS_AUTO) or 1-64 */
/* the positional arguments: count and first */
int cli_npos(const cli_args *a);
char **cli_pos(const cli_args *a);

char *read_text(const char *path);
void load_data(ee_ctx *ctx, const char *dir, ee_dataset **train, ee_dataset **val, ee_dataset **test, int nval,
               int subset, int test_subset);
/* the normalisation the model was trained with (its data.mean / data.std metadata) */
void apply_norm(const ee_net *net, ee_dataset *ds);
/* the model's input normalisation (data.mean / data.std; 0 and 1 if absent), 3 channels */
void model_norm(const ee_net *net, float mean[3], float std[3]);
/* 8-bit pixels (w x h, as many channels as the model's input) to the model's input: nearest-neighbour resize,
 * then the model's normalisation; x holds c*h*w floats */
void pixels_to_input(const ee_net *net, const unsigned char *px, int w, int h, float *x);
/* "IC3" or "final" */
const char *head_name(const ee_net *net, int h, char *buf, size_t n);

/* s as the inside of a JSON string (quotes, backslashes and control characters escaped), in one of 8 rotating
 * buffers: valid until 8 more calls, so that one printf can take several */
const char *js(const char *s);

/* "SIZE" (bottom-right corner) or "SIZE@X,Y" into t->size, x, y; a usage error if it is neither */
void parse_trigger(const char *cmd, const char *s, ee_trigger *t);

/* "CxHxW" (e.g. 3x32x32) into c, h, w, or a usage error naming cmd and option */
void parse_shape(const cli_args *a, int *c, int *h, int *w);
/* The exit policy to use for a model: with q >= 0 one shared max-softmax threshold q (the stored policy's fallback
 * kept); else the model's own. Returns 0 if the model has none (and q < 0), 1 otherwise. */
int model_policy(ee_ctx *ctx, const ee_net *net, double q, ee_exit_policy *p);
/* "maxprob, per-exit thresholds 0.81 0.92 ..., fitted temperatures" */
const char *describe_policy(const ee_exit_policy *p, char *buf, size_t n);
/* "1%" or a fraction such as 0.01, in [0, max]; a usage error naming cmd and opt otherwise */
double parse_fraction(const char *cmd, const char *opt, const char *v, double max);
/* a comma-separated list of such fractions, each in (0, max], appended to out[*n] (at most cap); returns *n */
int parse_fraction_list(const char *cmd, const char *opt, const char *v, double max, double *out, int *n, int cap);
/* Risk control checked over `splits` random calibration/test halves of o (the paper's evaluation): for every
 * epsilon e and procedure m (naive, crc, ucb, ltt), res[e * 4 + m] holds the means over the splits of the test
 * risk (with its standard error), of the share of splits above epsilon, of the cost and of lambda. */
typedef struct { double risk, risk_se, above, cost, lambda; } risk_split_stats;
void risk_splits(ee_ctx *ctx, const ee_outputs *o, const double *cost, int kind, ee_risk_kind risk, double delta,
                 const double *eps, int neps, int splits, risk_split_stats *res);
/* every head's outputs on the model's validation split (the last nval training images; nval < 0: as many as the
 * model was trained with), normalised as the model expects */
/* ee_net_load, dying with the message on failure; a text model also sets the bytes its data is read with */
void load_model(ee_ctx *ctx, const char *path, ee_net **net);
ee_outputs *validation_outputs(ee_ctx *ctx, ee_net *net, const char *model, const char *data, int nval);
/* the same split: the training set without its last nval images (train) and those images (val), both normalised
 * as the model expects */
void load_validation(ee_ctx *ctx, const ee_net *net, const char *model, const char *data, int nval,
                     ee_dataset **train, ee_dataset **val);
/* an early-exit summary line (text) or object (JSON) */
void print_exit_stats(const ee_exit_stats *st, int heads, int n, double final_acc, int json);

/* An exit method (methods.c): how it turns validation outputs into an exit policy for a target. */
typedef struct exit_method exit_method;
struct exit_method {
    const char *name, *short_name;
    int kind, temperature, per_exit;
    ee_status (*calibrate)(ee_ctx *ctx, const exit_method *m, const ee_outputs *val, const double *cost,
                           ee_target_kind target, double value, ee_exit_policy *p, ee_exit_stats *st);
    int needs_stored_jei;  /* only for models whose stored policy is JEI-DNN's gates (method_stored is set) */
};
/* the model's stored policy, for the methods that use it as trained (set by compare before calibrate) */
extern ee_exit_policy method_stored;
/* the DAG of a cascade's jumps for Bolukbasi's policy (ee_cascade_jumps), or NULL */
extern const int *method_jumps;
extern const exit_method exit_methods[];
extern const int n_exit_methods;

/* the commands: argv[0] is the command's name */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_cascade(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_serve(int argc, char **argv);
/* hierarchical training (hier.c): the edge's settings, and what it measured */
typedef struct {
    double wall_s, edge_s, cloud_s, link_s, bytes, serial_s, wait_s;
} hier_result;
typedef struct {
    const char *split, *cloud;   /* the split node; the cloud's URL (NULL: a cloud process started on loopback) */
    double link_mbit;            /* a simulated link rate (0: none) */
    int wire, cloud_threads, epochs, batch;
    ee_optim opt;
    ee_schedule sched;
    ee_augment aug;
    hier_result *result;
} hier_opts;
int hier_edge(ee_ctx *ctx, ee_net *net, const hier_opts *o, const ee_dataset *train, const ee_dataset *test);
int hier_cloud(const char *listen, int threads, const char *port_file);
/* eenn bench --exits MODEL --split NODE --server URL (edgebench.c) */
int bench_split(const char *model, const char *server, const char *split, const char *clients, double secs, int batch,
                int wire, int send_inputs, int threads, int nimg, int json);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_riskcheck(int argc, char **argv);
int cmd_export(int argc, char **argv);
#endif
