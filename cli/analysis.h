/* analysis.h: everything `eenn analyze` measures about an SDN on a dataset, shared with `eenn report`. */
#ifndef EENN_CLI_ANALYSIS_H
#define EENN_CLI_ANALYSIS_H
#include "common.h"

#define CURVE_MAX 160

typedef struct {
    ee_dataset *ds;            /* the (possibly triggered) test images, normalised as the model expects */
    ee_outputs *o;             /* every head's outputs, softmax included */
    double acc[EE_MAX_HEADS];
    ee_overthink ot;
    ee_exit_stats at_q;        /* early exits at the analysis threshold */
    uint8_t *exit_of, *pred_of; /* per sample, at the threshold */
    float *confusion;          /* z-normalised confusion score per sample */
    ee_score_stats conf_stats, soft_stats; /* confusion (high = suspect) and the final's max softmax (low = suspect) */
} split_result;

typedef struct {
    const char *model, *data;
    ee_ctx *ctx;
    ee_net *net;
    int heads, classes;
    double cost[EE_MAX_HEADS], nominal[EE_MAX_HEADS];
    ee_exit_policy policy;     /* the exits analysed: the model's policy, --q, or calibrated on the validation split */
    double q;                  /* its first threshold, for the text */
    int fallback, q_calibrated_here;
    double mu, sigma;          /* of the raw confusion score on the un-augmented training images */
    int train_n;
    split_result clean;
    ee_exit_stats curve[CURVE_MAX];
    int ncurve;
    /* backdoor: the test images with the trigger stamped in, their true labels kept */
    int has_trigger;
    ee_trigger trig;
    split_result trig_res;
    double attack[EE_MAX_HEADS];  /* per exit: share of non-target images predicted as the target */
    double attack_at_q;
    int nontarget;
    /* the accuracy-cost curve of every exit method without temperatures (methods.c): each calibrated on the
     * validation split for a cost budget, then run on the test images; report only */
    int ncurves, nbudgets;
    int curve_method[EE_MAX_HEADS];
    ee_exit_stats method_curve[EE_MAX_HEADS][12];
    /* risk control on the test images (the gap risk), 50 random calibration/test halves per epsilon: the mean test
     * risk and cost of each procedure (naive, crc, ucb, ltt) */
    int nrc;
    double rc_eps[8], rc_risk[4][8], rc_cost[4][8];
    /* how trustworthy the policy's answers on the test images are: calibration error (15 equal-mass bins) and
     * per-exit conformal sets at 95% fitted on the validation split (-1: not measured) */
    double ece, conf_cov, conf_size;
    /* each exit's own reliability on the test split: its ECE and the 15 equal-mass bins' mean confidence and
     * accuracy (a reliability diagram; SideNet's claim is that its side outputs are calibrated) */
    double head_ece[EE_MAX_HEADS], rel_conf[EE_MAX_HEADS][15], rel_acc[EE_MAX_HEADS][15];
    double seconds;
} analysis;

typedef struct {
    const char *model, *data;
    double q;                  /* < 0: the model's calibrated q, else calibrated here on the validation split */
    int train_subset;          /* images of the training split for the confusion normalisation (0 = all) */
    int test_subset;           /* the first N test images only (0 = all) */
    const char *trigger;       /* NULL: the model's own backdoor trigger, if any; "none": no backdoor study */
    int target;                /* < 0: the model's */
    int threads;
    int method_curves;         /* also the accuracy-cost curves of the exit methods (report) */
} analysis_opts;

/* the options analyze and report share; 0 if a->argv[a->i] is none of them */
/* the options analyze and report share: ANALYSIS_OPTIONS goes into their struct option lists */
enum { O_AN_DATA = 256, O_AN_Q, O_AN_TRIGGER, O_AN_TARGET, O_AN_TRAIN_SUBSET, O_AN_TEST_SUBSET, O_AN_THREADS, O_AN_END };
#define ANALYSIS_OPTIONS                                                                                           \
    {"data", required_argument, NULL, O_AN_DATA}, {"q", required_argument, NULL, O_AN_Q},                          \
        {"trigger", required_argument, NULL, O_AN_TRIGGER}, {"target", required_argument, NULL, O_AN_TARGET},      \
        {"train-subset", required_argument, NULL, O_AN_TRAIN_SUBSET},                                              \
        {"test-subset", required_argument, NULL, O_AN_TEST_SUBSET}, {"threads", required_argument, NULL, O_AN_THREADS}
/* takes option `id` into o if it is one of ANALYSIS_OPTIONS: 1, else 0 */
int parse_analysis_opt(const cli_args *a, int id, analysis_opts *o);
/* MODEL [DATA] after the options */
void analysis_positional(const cli_args *a, analysis_opts *o);
void run_analysis(const analysis_opts *opt, analysis *an);
void free_analysis(analysis *an);
const char *class_name(const analysis *an, int k, char *buf, size_t n);
#endif
