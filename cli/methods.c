/* methods.c: the exit methods `eenn compare` and `eenn report` put side by side. A method turns a model's
 * validation outputs into an exit policy for a target (an accuracy drop or a cost budget), or, for a learned rule,
 * ignores the target. A new method is one line in the table (and, if it calibrates in its own way, its function). */
#include "common.h"

static ee_status threshold_policy(ee_ctx *ctx, const exit_method *m, const ee_outputs *val, const double *cost,
                                  ee_target_kind target, double value, ee_exit_policy *p, ee_exit_stats *st) {
    ee_calibration c = {m->kind, target, value, m->per_exit, m->temperature, 0, "validation"};
    return ee_calibrate_policy(ctx, val, cost, &c, p, st);
}

/* the EENet rule as trained: confidence above 0.5, no calibration (the target is not used) */
static ee_status learned_policy(ee_ctx *ctx, const exit_method *m, const ee_outputs *val, const double *cost,
                                ee_target_kind target, double value, ee_exit_policy *p, ee_exit_stats *st) {
    (void)target; (void)value;
    ee_policy_shared(p, m->kind, val->heads, 0.5f, 0);
    snprintf(p->split, sizeof p->split, "none");
    return ee_policy_simulate(ctx, val, cost, p, st);
}

/* Bolukbasi et al.'s gates, fitted on validation with lambda searched for the target */
static ee_status bolukbasi_policy(ee_ctx *ctx, const exit_method *m, const ee_outputs *val, const double *cost,
                                  ee_target_kind target, double value, ee_exit_policy *p, ee_exit_stats *st) {
    (void)m;
    return ee_policy_fit_bolukbasi_target(ctx, val, cost, method_jumps, target, value, p, st, NULL);
}

ee_exit_policy method_stored;
const int *method_jumps;

/* JEI-DNN's gates as trained: the model's stored policy (the target is not used) */
static ee_status stored_policy(ee_ctx *ctx, const exit_method *m, const ee_outputs *val, const double *cost,
                               ee_target_kind target, double value, ee_exit_policy *p, ee_exit_stats *st) {
    (void)m; (void)target; (void)value;
    *p = method_stored;
    return ee_policy_simulate(ctx, val, cost, p, st);
}

const exit_method exit_methods[] = {
    {"maxprob, shared q (SDN)", "maxprob", EE_SCORE_MAXPROB, 0, 0, threshold_policy, 0},
    {"maxprob, per-exit", "maxprob per-exit", EE_SCORE_MAXPROB, 0, 1, threshold_policy, 0},
    {"maxprob, T, shared", "maxprob T", EE_SCORE_MAXPROB, 1, 0, threshold_policy, 0},
    {"maxprob, T, per-exit", "maxprob T per-exit", EE_SCORE_MAXPROB, 1, 1, threshold_policy, 0},
    {"entropy, shared (BranchyNet)", "entropy", EE_SCORE_ENTROPY, 0, 0, threshold_policy, 0},
    {"entropy, per-exit", "entropy per-exit", EE_SCORE_ENTROPY, 0, 1, threshold_policy, 0},
    {"entropy, T, per-exit", "entropy T per-exit", EE_SCORE_ENTROPY, 1, 1, threshold_policy, 0},
    {"margin, shared", "margin", EE_SCORE_MARGIN, 0, 0, threshold_policy, 0},
    {"margin, per-exit", "margin per-exit", EE_SCORE_MARGIN, 0, 1, threshold_policy, 0},
    {"margin, T, per-exit", "margin T per-exit", EE_SCORE_MARGIN, 1, 1, threshold_policy, 0},
    /* learned decisions on the exits' uncertainty features */
    {"learned gates (Bolukbasi)", "bolukbasi", EE_SCORE_GATE, 0, 0, bolukbasi_policy, 0},
    {"JEI-DNN gates (trained)", "jei", EE_SCORE_GATE, 0, 0, stored_policy, 1},
    /* methods on a learned confidence branch (EENet exits): skipped for models without one */
    {"confidence > 0.5 (EENet)", "confidence", EE_SCORE_CONFIDENCE, 0, 0, learned_policy, 0},
    {"confidence, shared", "confidence calibrated", EE_SCORE_CONFIDENCE, 0, 0, threshold_policy, 0},
    {"confidence, per-exit", "confidence per-exit", EE_SCORE_CONFIDENCE, 0, 1, threshold_policy, 0},
};
const int n_exit_methods = (int)(sizeof exit_methods / sizeof *exit_methods);
