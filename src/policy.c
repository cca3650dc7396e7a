/* policy.c: exit policies. A policy scores each exit's softmax (on logits divided by the exit's temperature) with
 * one of the score kinds of the table below, and a sample leaves at the first internal classifier whose score
 * reaches that classifier's threshold. Everything that decides exits goes through here: the simulation on
 * collected outputs (calibration, eval, analyze, report, compare) and real inference (exits.c). Also here:
 * temperature fitting, the threshold search (one shared threshold, or one per exit by coordinate descent from
 * the best shared one), and the policy's text form in the model file. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- score kinds */
/* p: softmax of one head (k classes), top: its argmax. Every score is in [0, 1], higher = more confident. */
static float score_maxprob(const double *p, int k, int top) {
    (void)k;
    return (float)p[top];
}
/* one minus the normalised entropy: BranchyNet exits when H(p) / log K is below 1 - threshold */
static float score_entropy(const double *p, int k, int top) {
    (void)top;
    double h = 0;
    for (int j = 0; j < k; j++)
        if (p[j] > 0) h -= p[j] * log(p[j]);
    return (float)(1.0 - h / log((double)k));
}
/* the largest probability minus the second largest */
static float score_margin(const double *p, int k, int top) {
    double second = 0;
    for (int j = 0; j < k; j++)
        if (j != top && p[j] > second) second = p[j];
    return (float)(p[top] - second);
}

typedef struct {
    const char *name, *what;
    float (*score)(const double *p, int k, int top); /* NULL: a learned score, not a function of the softmax */
    int strict;                                      /* exits when the score is above the threshold, not at it */
} score_kind;
/* the table of score kinds, in ee_score_kind order: a new kind is a function and a line here */
static const score_kind kinds[] = {
    {"maxprob", "the largest softmax probability (SDN, SideNet)", score_maxprob, 0},
    {"entropy", "one minus the normalised entropy (BranchyNet)", score_entropy, 0},
    {"margin", "the largest probability minus the second", score_margin, 0},
    {"confidence", "the exit's learned confidence branch, exits above the threshold (EENets)", NULL, 1},
    {"gate", "a learned gate on the exit's uncertainty features (Bolukbasi et al., JEI-DNN)", NULL, 0},
};
#define NKINDS ((int)(sizeof kinds / sizeof *kinds))

int ee_score_count(void) { return NKINDS; }
const char *ee_score_name(int kind) { return kind >= 0 && kind < NKINDS ? kinds[kind].name : NULL; }
const char *ee_score_describe(int kind) { return kind >= 0 && kind < NKINDS ? kinds[kind].what : NULL; }
int ee_score_find(const char *name) {
    for (int k = 0; k < NKINDS; k++)
        if (!strcmp(kinds[k].name, name)) return k;
    return -1;
}

/* The score of one logit row under a kind and temperature, and its argmax. With T = 1 the max-softmax score is
 * computed exactly as eenn always has (1 / sum exp(z - zmax) in double), so old thresholds behave as before. */
int ee_score_strict(int kind) { return kind >= 0 && kind < NKINDS && kinds[kind].strict; }

float ee_score_exit(int kind, const float *z, int k, float temperature, float confidence, uint8_t *pred) {
    float s = ee_score_logits(kind, z, k, temperature, pred); /* the argmax, and the score if it is the softmax's */
    return kind >= 0 && kind < NKINDS && !kinds[kind].score ? confidence : s;
}

void ee_uncertainty_features(const float *z, int k, float temperature, float *u) {
    double inv = temperature > 0 ? 1.0 / temperature : 1.0, mx = z[0];
    for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
    double s = 0, s2 = 0;
    for (int j = 0; j < k; j++) {
        double e = exp(((double)z[j] - mx) * inv);
        s += e;
        s2 += e * e;
    }
    double p1 = 0, p2 = 0, h = 0, h2 = 0;
    for (int j = 0; j < k; j++) {
        double e = exp(((double)z[j] - mx) * inv), p = e / s, q = e * e / s2;
        if (p > p1) { p2 = p1; p1 = p; } else if (p > p2) p2 = p;
        if (p > 0) h -= p * log(p);
        if (q > 0) h2 -= q * log(q);
    }
    u[0] = (float)p1;
    u[1] = (float)h;
    u[2] = (float)(p1 - p2);
    u[3] = (float)h2;
}

static float gate_value(const float *w, const float *u) {
    double a = w[EE_GATE_FEATURES];
    for (int f = 0; f < EE_GATE_FEATURES; f++) a += (double)w[f] * u[f];
    return (float)(1.0 / (1.0 + exp(-a)));
}

float ee_policy_score(const ee_exit_policy *p, int h, const float *z, int k, float confidence, uint8_t *pred) {
    if (p->kind != EE_SCORE_GATE) return ee_score_exit(p->kind, z, k, p->temperature[h], confidence, pred);
    ee_score_logits(EE_SCORE_GATE, z, k, 1, pred);
    float u[EE_GATE_FEATURES];
    ee_uncertainty_features(z, k, p->temperature[h], u);
    return gate_value(p->gate[h], u);
}

int ee_policy_has_jumps(const ee_exit_policy *p) {
    int H = p->heads > 0 && p->heads <= EE_MAX_HEADS ? p->heads : EE_MAX_HEADS;
    for (int h = 0; h < H - 1; h++)
        if (p->jump_to[h]) return 1;
    return 0;
}

float ee_policy_jump_score(const ee_exit_policy *p, int h, const float *z, int k) {
    if (!p->jump_to[h]) return 0;
    float u[EE_GATE_FEATURES];
    ee_uncertainty_features(z, k, p->temperature[h], u);
    return gate_value(p->jump_gate[h], u);
}

double ee_policy_path_cost(const double *cost, const uint8_t *ran, int exit_head) {
    int jumped = 0;
    for (int h = 0; h < exit_head; h++) jumped |= !ran[h];
    if (!jumped) return cost[exit_head];
    double c = 0;
    for (int h = 0; h <= exit_head; h++)
        if (ran[h]) c += cost[h] - (h ? cost[h - 1] : 0);
    return c;
}

float ee_gate_jei_step(double *sum_g, double *prod, float g) {
    double P = fmax(0.0, fmin((double)g, 1.0 - *sum_g)), q;
    if (*prod > 1e-12) q = fmin(1.0, fmax(0.0, P / *prod));
    else q = P > 0 ? 1 : 0;
    *sum_g += g;
    *prod *= 1 - q;
    return (float)q;
}

float ee_score_logits(int kind, const float *z, int k, float temperature, uint8_t *pred) {
    int top = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[top]) top = j;
    if (kind < 0 || kind >= NKINDS || !kinds[kind].score) { /* no learned confidence here */
        if (pred) *pred = (uint8_t)top;
        return -1;
    }
    double p[1024], *pp = k <= 1024 ? p : malloc(sizeof(double) * k), sum = 0;
    if (!pp) return 0;
    double inv = temperature > 0 ? 1.0 / temperature : 1.0;
    for (int j = 0; j < k; j++) sum += (pp[j] = exp(((double)z[j] - z[top]) * inv));
    for (int j = 0; j < k; j++) pp[j] /= sum;
    float s = kind == EE_SCORE_MAXPROB ? (float)(1.0 / sum) : kinds[kind].score(pp, k, top);
    if (pp != p) free(pp);
    if (pred) *pred = (uint8_t)top;
    return s;
}

/* ---------------------------------------------------------------- the decision */
void ee_policy_shared(ee_exit_policy *p, int kind, int heads, float q, int fallback) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->heads = heads;
    p->fallback = fallback;
    for (int h = 0; h < EE_MAX_HEADS; h++) { p->threshold[h] = q; p->temperature[h] = 1; }
}

/* the exit of one sample from its heads' scores: the first IC whose score reaches its threshold, else the final
 * head; *answer is the head whose prediction is used (with fallback: the most confident head it ran). With jumps
 * (jscore: the jump gates' values), a sample that does not exit at h and whose jump gate reaches 0.5 goes on at
 * head jump_to[h]; ran[h] (may be NULL) says which heads it ran. */
static int decide(const ee_exit_policy *p, const float *score, const float *jscore, int heads, int *answer,
                  uint8_t *ran) {
    int e = heads - 1, use = heads - 1, strict = ee_score_strict(p->kind);
    float jq[EE_MAX_HEADS];
    uint8_t went[EE_MAX_HEADS];
    memset(went, 1, sizeof went);
    if (ee_policy_jei(p)) { /* the gates' conditional exit probabilities, exit by exit */
        double sum = 0, prod = 1;
        for (int h = 0; h < heads - 1; h++) jq[h] = ee_gate_jei_step(&sum, &prod, score[h]);
        jq[heads - 1] = score[heads - 1];
        score = jq;
    }
    for (int h = 0; h < heads - 1; h++) {
        if (strict ? score[h] > p->threshold[h] : score[h] >= p->threshold[h]) { e = use = h; break; }
        if (jscore && p->jump_to[h] > h + 1 && jscore[h] >= 0.5f) {
            for (int s = h + 1; s < p->jump_to[h]; s++) went[s] = 0;
            h = p->jump_to[h] - 1;
        }
    }
    if (e == heads - 1 && p->fallback)
        for (int h = 0; h < heads; h++)
            if (went[h] && score[h] > score[use]) use = h;
    for (int h = e + 1; h < heads; h++) went[h] = 0;
    if (ran) memcpy(ran, went, (size_t)heads);
    *answer = use;
    return e;
}

/* scores and predictions of every head of every sample of o under p's kind and temperatures */
typedef struct {
    int n, heads;
    float *score, *jscore; /* jscore: the jump gates' values, if the policy jumps (else NULL) */
    uint8_t *pred;
    const uint8_t *label;
} scored;

static void scored_free(scored *s) { free(s->score); free(s->jscore); free(s->pred); }

static ee_status score_outputs(ee_ctx *ctx, const ee_outputs *o, const ee_exit_policy *p, scored *s) {
    int H = o->heads, K = o->classes;
    s->n = o->n; s->heads = H; s->label = o->label;
    s->score = malloc(sizeof(float) * o->n * H);
    s->pred = malloc((size_t)o->n * H);
    s->jscore = ee_policy_has_jumps(p) ? calloc((size_t)o->n * H, sizeof(float)) : NULL;
    if (!s->score || !s->pred || (ee_policy_has_jumps(p) && !s->jscore)) {
        scored_free(s);
        return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    if (!o->logits) { /* outputs without logits: max softmax only, as collected */
        if (p->kind != EE_SCORE_MAXPROB) {
            scored_free(s);
            return ee_fail(ctx, EE_ERR_ARG, "these outputs hold no logits: only the maxprob kind can be scored");
        }
        memcpy(s->score, o->conf, sizeof(float) * o->n * H);
        memcpy(s->pred, o->pred, (size_t)o->n * H);
        return EE_OK;
    }
    if (p->kind == EE_SCORE_CONFIDENCE && !o->gate) {
        scored_free(s);
        return ee_fail(ctx, EE_ERR_ARG, "the '%s' exit policy needs exits with a learned confidence branch (EENet "
                       "exits: eenn train --mode eenet); this network has none", kinds[p->kind].name);
    }
    for (int i = 0; i < o->n; i++)
        for (int h = 0; h < H; h++)
            s->score[(size_t)i * H + h] = ee_policy_score(p, h, o->logits + ((size_t)i * H + h) * K, K,
                                                          o->gate ? o->gate[(size_t)i * H + h] : -1,
                                                          &s->pred[(size_t)i * H + h]);
    if (s->jscore)
        for (int i = 0; i < o->n; i++)
            for (int h = 0; h < H - 1; h++)
                s->jscore[(size_t)i * H + h] = ee_policy_jump_score(p, h, o->logits + ((size_t)i * H + h) * K, K);
    return EE_OK;
}

static void simulate_scored(const scored *s, const double *cost, const ee_exit_policy *p, ee_exit_stats *st) {
    int H = s->heads, right = 0;
    double total = 0;
    memset(st, 0, sizeof *st);
    uint8_t ran[EE_MAX_HEADS];
    for (int i = 0; i < s->n; i++) {
        int use, e = decide(p, s->score + (size_t)i * H, s->jscore ? s->jscore + (size_t)i * H : NULL, H, &use, ran);
        st->exits[e]++;
        if (s->jscore) {
            double c = ee_policy_path_cost(cost, ran, e);
            st->jumps += c != cost[e] || memchr(ran, 0, (size_t)e) != NULL;
            total += c;
        } else
            total += cost[e];
        right += s->pred[(size_t)i * H + use] == s->label[i];
    }
    st->acc = s->n ? (double)right / s->n : 0;
    st->cost = s->n ? total / s->n : 0;
    st->q = p->threshold[0];
}

static ee_status check_policy(ee_ctx *ctx, const ee_exit_policy *p, int heads) {
    if (p->kind < 0 || p->kind >= NKINDS) return ee_fail(ctx, EE_ERR_ARG, "unknown exit score kind %d", p->kind);
    if (p->heads && p->heads != heads)
        return ee_fail(ctx, EE_ERR_ARG, "the exit policy is for %d heads, the network has %d", p->heads, heads);
    for (int h = 0; h < heads; h++)
        if (!(p->temperature[h] > 0) || !isfinite(p->temperature[h]) || isnan(p->threshold[h]))
            return ee_fail(ctx, EE_ERR_ARG, "exit %d: temperature %g or threshold %g is not usable", h + 1,
                           p->temperature[h], p->threshold[h]);
    if (p->gate_rule != EE_GATE_EACH && p->gate_rule != EE_GATE_JEI)
        return ee_fail(ctx, EE_ERR_ARG, "unknown gate rule %d", p->gate_rule);
    for (int h = 0; h < heads; h++)
        for (int f = 0; f <= EE_GATE_FEATURES; f++)
            if (!isfinite(p->gate[h][f]) || !isfinite(p->jump_gate[h][f]))
                return ee_fail(ctx, EE_ERR_ARG, "exit %d: gate weight %d is not finite", h + 1, f);
    for (int h = 0; h < heads - 1; h++) {
        int t = p->jump_to[h];
        if (!t) continue;
        if (p->kind != EE_SCORE_GATE || p->gate_rule != EE_GATE_EACH)
            return ee_fail(ctx, EE_ERR_ARG, "jumps ahead need learned gates, each on its own (kind gate, rule each)");
        if (t <= h + 1 || t >= heads)
            return ee_fail(ctx, EE_ERR_ARG, "exit %d: a jump to head %d must skip at least one head and land on one "
                           "of the %d", h + 1, t + 1, heads);
    }
    for (int h = heads - 1; h < EE_MAX_HEADS; h++)
        if (p->jump_to[h]) return ee_fail(ctx, EE_ERR_ARG, "a jump from head %d, beyond the last IC", h + 1);
    return EE_OK;
}

ee_status ee_policy_simulate(ee_ctx *ctx, const ee_outputs *o, const double *cost, const ee_exit_policy *p,
                             ee_exit_stats *st) {
    scored s;
    ee_status r = check_policy(ctx, p, o->heads);
    if (r || (r = score_outputs(ctx, o, p, &s))) return r;
    simulate_scored(&s, cost, p, st);
    scored_free(&s);
    return EE_OK;
}

ee_status ee_policy_assign(ee_ctx *ctx, const ee_outputs *o, const ee_exit_policy *p, uint8_t *exit_head,
                           uint8_t *pred) {
    scored s;
    ee_status r = check_policy(ctx, p, o->heads);
    if (r || (r = score_outputs(ctx, o, p, &s))) return r;
    for (int i = 0; i < o->n; i++) {
        int use, e = decide(p, s.score + (size_t)i * o->heads, s.jscore ? s.jscore + (size_t)i * o->heads : NULL,
                            o->heads, &use, NULL);
        if (exit_head) exit_head[i] = (uint8_t)e;
        if (pred) pred[i] = s.pred[(size_t)i * o->heads + use];
    }
    scored_free(&s);
    return EE_OK;
}

/* the legacy single-threshold max-softmax calls, through the same decision */
void ee_exit_simulate(const ee_outputs *o, const double *cost, float q, int fallback, ee_exit_stats *st) {
    ee_exit_policy p;
    ee_policy_shared(&p, EE_SCORE_MAXPROB, o->heads, q, fallback);
    scored s = {o->n, o->heads, o->conf, NULL, o->pred, o->label};
    simulate_scored(&s, cost, &p, st);
}
void ee_exit_assign(const ee_outputs *o, float q, int fallback, uint8_t *exit_head, uint8_t *pred) {
    ee_exit_policy p;
    ee_policy_shared(&p, EE_SCORE_MAXPROB, o->heads, q, fallback);
    for (int i = 0; i < o->n; i++) {
        int use, e = decide(&p, o->conf + (size_t)i * o->heads, NULL, o->heads, &use, NULL);
        if (exit_head) exit_head[i] = (uint8_t)e;
        if (pred) pred[i] = o->pred[(size_t)i * o->heads + use];
    }
}
/* for real inference (exits.c) */
int ee_policy_decide(const ee_exit_policy *p, const float *score, int heads, int *answer) {
    return decide(p, score, NULL, heads, answer, NULL);
}

/* ---------------------------------------------------------------- temperatures */
/* mean negative log-likelihood of the labels under softmax(z / T) for head h */
static double nll(const ee_outputs *o, int h, double T) {
    int H = o->heads, K = o->classes;
    double total = 0;
    for (int i = 0; i < o->n; i++) {
        const float *z = o->logits + ((size_t)i * H + h) * K;
        double mx = z[0];
        for (int j = 1; j < K; j++)
            if (z[j] > mx) mx = z[j];
        double sum = 0;
        for (int j = 0; j < K; j++) sum += exp((z[j] - mx) / T);
        total += log(sum) - (z[o->label[i]] - mx) / T;
    }
    return total / o->n;
}

ee_status ee_fit_temperatures(ee_ctx *ctx, const ee_outputs *val, float *temperature) {
    if (!val->logits) return ee_fail(ctx, EE_ERR_ARG, "temperature fitting needs the outputs' logits");
    if (val->n < 1) return ee_fail(ctx, EE_ERR_ARG, "no samples to fit temperatures on");
    /* golden-section search of log T in [log 0.05, log 20]: the NLL is unimodal in T for a fixed head */
    const double g = (sqrt(5.0) - 1) / 2;
    for (int h = 0; h < val->heads; h++) {
        double a = log(0.05), b = log(20.0), c = b - g * (b - a), d = a + g * (b - a);
        double fc = nll(val, h, exp(c)), fd = nll(val, h, exp(d));
        for (int it = 0; it < 40; it++) {
            if (fc < fd) { b = d; d = c; fd = fc; c = b - g * (b - a); fc = nll(val, h, exp(c)); }
            else { a = c; c = d; fc = fd; d = a + g * (b - a); fd = nll(val, h, exp(d)); }
        }
        temperature[h] = (float)exp((a + b) / 2);
        if (!isfinite(temperature[h])) return ee_fail(ctx, EE_ERR_NUMERIC, "exit %d: temperature fit diverged", h + 1);
    }
    return EE_OK;
}

/* ---------------------------------------------------------------- threshold search */
#define NGRID (1001 + 40)
/* the candidate thresholds: a uniform grid on [0, 1], then a fine one near 1 where confidences pile up */
static float grid_value(int i) {
    return i <= 1000 ? i / 1000.0f : (float)(1.0 - pow(10.0, -3.0 - (i - 1000) * 0.1));
}

/* is a better than b for the target? drop: the lower cost among those within the accuracy floor (ties: the
 * higher accuracy); budget: the higher accuracy among those within the budget (ties: the lower cost) */
int ee_stats_better(const ee_exit_stats *a, const ee_exit_stats *b, ee_target_kind t, double limit) {
    const double eps = 1e-12;
    if (t == EE_TARGET_BUDGET) {
        int ia = a->cost <= limit + eps, ib = b->cost <= limit + eps;
        if (ia != ib) return ia;
        if (!ia) return a->cost < b->cost - eps; /* neither fits: the cheaper one */
        return a->acc > b->acc + eps || (fabs(a->acc - b->acc) <= eps && a->cost < b->cost - eps);
    }
    int ia = a->acc >= limit - eps, ib = b->acc >= limit - eps;
    if (ia != ib) return ia;
    if (!ia) return a->acc > b->acc + eps;
    return a->cost < b->cost - eps || (fabs(a->cost - b->cost) <= eps && a->acc > b->acc + eps);
}

ee_status ee_calibrate_policy(ee_ctx *ctx, const ee_outputs *val, const double *cost, const ee_calibration *c,
                              ee_exit_policy *p, ee_exit_stats *st) {
    if (val->heads < 2) return ee_fail(ctx, EE_ERR_ARG, "the network has no internal classifiers to calibrate");
    if (c->kind < 0 || c->kind >= NKINDS) return ee_fail(ctx, EE_ERR_ARG, "unknown exit score kind %d", c->kind);
    if (c->target == EE_TARGET_DROP && !(c->value >= 0 && c->value <= 1))
        return ee_fail(ctx, EE_ERR_ARG, "the accuracy drop must be in [0, 1], not %g", c->value);
    if (c->target == EE_TARGET_BUDGET && !(c->value > 0 && c->value <= 10))
        return ee_fail(ctx, EE_ERR_ARG, "the cost budget must be a positive fraction of the CNN's cost, not %g",
                       c->value);
    if (c->target != EE_TARGET_DROP && c->target != EE_TARGET_BUDGET)
        return ee_fail(ctx, EE_ERR_ARG, "calibration needs a target: an accuracy drop or a cost budget");
    int H = val->heads;
    ee_exit_policy cur;
    ee_policy_shared(&cur, c->kind, H, 1.01f, c->fallback);
    if (c->fit_temperature) {
        ee_status s = ee_fit_temperatures(ctx, val, cur.temperature);
        if (s) return s;
    }
    scored sc;
    ee_status s = score_outputs(ctx, val, &cur, &sc);
    if (s) return s;
    double acc[EE_MAX_HEADS];
    ee_head_accuracy(val, acc);
    double limit = c->target == EE_TARGET_DROP ? acc[H - 1] - c->value : c->value;
    /* one shared threshold: every grid value (1.01 never exits early, always within a drop target) */
    ee_exit_stats best, t;
    simulate_scored(&sc, cost, &cur, &best);
    float bestq = 1.01f;
    for (int i = 0; i < NGRID; i++) {
        for (int h = 0; h < H; h++) cur.threshold[h] = grid_value(i);
        simulate_scored(&sc, cost, &cur, &t);
        if (ee_stats_better(&t, &best, c->target, limit)) { best = t; bestq = grid_value(i); }
    }
    for (int h = 0; h < H; h++) cur.threshold[h] = bestq;
    /* one threshold per exit: coordinate descent from the best shared threshold, exit by exit, keeping a change
     * only if it is better for the target; so never worse than the shared threshold on this split */
    if (c->per_exit) {
        for (int sweep = 0; sweep < 6; sweep++) {
            int changed = 0;
            for (int h = 0; h < H - 1; h++) {
                float keep = cur.threshold[h], bh = keep;
                for (int i = 0; i <= NGRID; i++) {
                    cur.threshold[h] = i == NGRID ? 1.01f : grid_value(i);
                    simulate_scored(&sc, cost, &cur, &t);
                    if (ee_stats_better(&t, &best, c->target, limit)) { best = t; bh = cur.threshold[h]; }
                }
                cur.threshold[h] = bh;
                changed |= bh != keep;
            }
            if (!changed) break;
        }
    }
    scored_free(&sc);
    cur.per_exit = c->per_exit;
    cur.temperature_fitted = c->fit_temperature;
    cur.target = c->target;
    cur.target_value = c->value;
    snprintf(cur.split, sizeof cur.split, "%s", c->split[0] ? c->split : "validation");
    cur.samples = val->n;
    best.q = cur.threshold[0];
    *p = cur;
    if (st) *st = best;
    return EE_OK;
}

/* the legacy call: one shared max-softmax threshold within an accuracy drop */
ee_status ee_calibrate(ee_ctx *ctx, const ee_outputs *val, const double *cost, double max_drop, int fallback,
                       ee_exit_stats *best) {
    if (!(max_drop >= 0 && max_drop <= 1)) return ee_fail(ctx, EE_ERR_ARG, "the accuracy drop must be in [0, 1]");
    ee_calibration c = {EE_SCORE_MAXPROB, EE_TARGET_DROP, max_drop, 0, 0, fallback, ""};
    ee_exit_policy p;
    ee_outputs shallow = *val;
    shallow.logits = NULL; /* exactly the collected max softmax */
    return ee_calibrate_policy(ctx, &shallow, cost, &c, &p, best);
}

/* ---------------------------------------------------------------- in the model file */
#define POLICY_KEY "exit.policy"

static void put_list(char *buf, size_t cap, const char *key, const float *v, int n) {
    size_t len = strlen(buf);
    len += (size_t)snprintf(buf + len, cap - len, " %s=", key);
    for (int h = 0; h < n && len < cap; h++) len += (size_t)snprintf(buf + len, cap - len, "%s%.9g", h ? "," : "", v[h]);
}

ee_status ee_policy_to_text(ee_ctx *ctx, const ee_exit_policy *p, char *buf, size_t cap) {
    if (p->kind < 0 || p->kind >= NKINDS) return ee_fail(ctx, EE_ERR_ARG, "unknown exit score kind %d", p->kind);
    int n = p->heads > 0 && p->heads <= EE_MAX_HEADS ? p->heads : 0;
    if (!n) return ee_fail(ctx, EE_ERR_ARG, "an exit policy needs its number of heads (1 to %d)", EE_MAX_HEADS);
    snprintf(buf, cap, "kind=%s heads=%d fallback=%d per_exit=%d temperature_fitted=%d target=%s:%.9g split=%s "
             "samples=%d", kinds[p->kind].name, n, p->fallback, p->per_exit, p->temperature_fitted,
             p->target == EE_TARGET_DROP ? "drop" : p->target == EE_TARGET_BUDGET ? "budget" : "none",
             p->target_value, p->split[0] ? p->split : "-", p->samples);
    if (p->rc_method > 0) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, " guarantee=%s risk=%s epsilon=%.9g delta=%.9g calibration_risk=%.9g",
                 ee_rc_method_name(p->rc_method), ee_risk_name(p->risk), p->epsilon, p->delta, p->empirical_risk);
    }
    put_list(buf, cap, "thresholds", p->threshold, n);
    put_list(buf, cap, "temperatures", p->temperature, n);
    if (p->kind == EE_SCORE_GATE) { /* every IC's weights and bias, in exit order */
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, " gate_rule=%s", p->gate_rule == EE_GATE_JEI ? "jei" : "each");
        put_list(buf, cap, "gates", &p->gate[0][0], (n - 1) * (EE_GATE_FEATURES + 1));
        if (ee_policy_has_jumps(p)) {
            float t[EE_MAX_HEADS];
            for (int h = 0; h < n - 1; h++) t[h] = (float)p->jump_to[h];
            put_list(buf, cap, "jumps", t, n - 1);
            put_list(buf, cap, "jump_gates", &p->jump_gate[0][0], (n - 1) * (EE_GATE_FEATURES + 1));
        }
    }
    if (strlen(buf) + 1 >= cap) return ee_fail(ctx, EE_ERR_ARG, "exit policy text too long");
    return EE_OK;
}

static int get_list(const char *v, float *out, int n) {
    for (int h = 0; h < n; h++) {
        char *end;
        out[h] = strtof(v, &end);
        if (end == v) return -1;
        v = end;
        if (h < n - 1) { if (*v != ',') return -1; v++; }
    }
    return *v == 0 || *v == ' ' ? 0 : -1;
}

ee_status ee_policy_from_text(ee_ctx *ctx, const char *text, ee_exit_policy *p) {
    memset(p, 0, sizeof *p);
    char buf[8192];
    if (strlen(text) >= sizeof buf) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: text too long");
    strcpy(buf, text);
    int have = 0;
    const char *thr = NULL, *tem = NULL, *gates = NULL, *jumps = NULL, *jgates = NULL;
    for (char *sv = NULL, *t = strtok_r(buf, " ", &sv); t; t = strtok_r(NULL, " ", &sv)) {
        char *eq = strchr(t, '=');
        if (!eq) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: '%s' is not key=value", t);
        *eq = 0;
        const char *k = t, *v = eq + 1;
        if (!strcmp(k, "kind")) {
            if ((p->kind = ee_score_find(v)) < 0) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: unknown kind '%s'", v);
            have |= 1;
        } else if (!strcmp(k, "heads")) {
            p->heads = atoi(v);
            if (p->heads < 1 || p->heads > EE_MAX_HEADS) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: %s heads", v);
            have |= 2;
        } else if (!strcmp(k, "fallback")) p->fallback = atoi(v) != 0;
        else if (!strcmp(k, "per_exit")) p->per_exit = atoi(v) != 0;
        else if (!strcmp(k, "temperature_fitted")) p->temperature_fitted = atoi(v) != 0;
        else if (!strcmp(k, "target")) {
            p->target = !strncmp(v, "drop:", 5) ? EE_TARGET_DROP : !strncmp(v, "budget:", 7) ? EE_TARGET_BUDGET
                                                                                            : EE_TARGET_NONE;
            const char *c = strchr(v, ':');
            p->target_value = c ? atof(c + 1) : 0;
        } else if (!strcmp(k, "split")) snprintf(p->split, sizeof p->split, "%s", strcmp(v, "-") ? v : "");
        else if (!strcmp(k, "samples")) p->samples = atoi(v);
        else if (!strcmp(k, "guarantee")) {
            if ((p->rc_method = ee_rc_method_find(v)) < 0) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: unknown guarantee '%s'", v);
        } else if (!strcmp(k, "risk")) {
            if ((p->risk = ee_risk_find(v)) < 0) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: unknown risk '%s'", v);
        } else if (!strcmp(k, "epsilon")) p->epsilon = atof(v);
        else if (!strcmp(k, "delta")) p->delta = atof(v);
        else if (!strcmp(k, "calibration_risk")) p->empirical_risk = atof(v);
        else if (!strcmp(k, "thresholds")) thr = text + (v - buf);
        else if (!strcmp(k, "temperatures")) tem = text + (v - buf);
        else if (!strcmp(k, "gates")) gates = text + (v - buf);
        else if (!strcmp(k, "jumps")) jumps = text + (v - buf);
        else if (!strcmp(k, "jump_gates")) jgates = text + (v - buf);
        else if (!strcmp(k, "gate_rule")) {
            if (strcmp(v, "each") && strcmp(v, "jei")) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: unknown gate rule '%s'", v);
            p->gate_rule = !strcmp(v, "jei") ? EE_GATE_JEI : EE_GATE_EACH;
        }
        /* unknown keys are skipped: a later version may record more */
    }
    if ((have & 3) != 3 || !thr || !tem) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: kind, heads, thresholds or "
                                                         "temperatures missing in '%s'", text);
    if (get_list(thr, p->threshold, p->heads) || get_list(tem, p->temperature, p->heads))
        return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: %d thresholds and temperatures expected in '%s'", p->heads, text);
    for (int h = p->heads; h < EE_MAX_HEADS; h++) { p->threshold[h] = 1.01f; p->temperature[h] = 1; }
    if (p->kind == EE_SCORE_GATE && (!gates || get_list(gates, &p->gate[0][0], (p->heads - 1) * (EE_GATE_FEATURES + 1))))
        return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: %d gate weights expected in '%s'",
                       (p->heads - 1) * (EE_GATE_FEATURES + 1), text);
    if (jumps) {
        float t[EE_MAX_HEADS];
        if (!jgates || get_list(jumps, t, p->heads - 1) ||
            get_list(jgates, &p->jump_gate[0][0], (p->heads - 1) * (EE_GATE_FEATURES + 1)))
            return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: %d jumps and %d jump gate weights expected in '%s'",
                           p->heads - 1, (p->heads - 1) * (EE_GATE_FEATURES + 1), text);
        for (int h = 0; h < p->heads - 1; h++) {
            if (t[h] != (float)(int)t[h]) return ee_fail(ctx, EE_ERR_FORMAT, "exit policy: jump target %g is not a head", t[h]);
            p->jump_to[h] = (int)t[h];
        }
    }
    return check_policy(ctx, p, p->heads);
}

ee_status ee_net_policy(ee_ctx *ctx, const ee_net *net, ee_exit_policy *p) {
    const char *text = ee_net_meta(net, POLICY_KEY);
    if (text) {
        ee_status s = ee_policy_from_text(ctx, text, p);
        if (!s && p->heads != net->nheads)
            return ee_fail(ctx, EE_ERR_FORMAT, "the stored exit policy is for %d heads, the network has %d", p->heads,
                           net->nheads);
        return s;
    }
    /* files calibrated before policies: one shared max-softmax threshold in exit.q */
    const char *q = ee_net_meta(net, "exit.q"), *fb = ee_net_meta(net, "exit.fallback"), *d = ee_net_meta(net, "exit.max_drop");
    if (!q) return ee_fail(ctx, EE_ERR_ARG, "no exit policy: the model was not calibrated (eenn calibrate)");
    char *end;
    float qv = strtof(q, &end);
    if (end == q || *end || isnan(qv)) return ee_fail(ctx, EE_ERR_FORMAT, "exit.q '%s' is not a number", q);
    ee_policy_shared(p, EE_SCORE_MAXPROB, net->nheads, qv, fb && !strcmp(fb, "1"));
    if (d) { p->target = EE_TARGET_DROP; p->target_value = atof(d); snprintf(p->split, sizeof p->split, "validation"); }
    return EE_OK;
}

ee_status ee_net_set_policy(ee_ctx *ctx, ee_net *net, const ee_exit_policy *p) {
    ee_exit_policy q = *p;
    if (!q.heads) q.heads = net->nheads;
    ee_status s = check_policy(ctx, &q, net->nheads);
    if (s) return s;
    char buf[8192];
    if ((s = ee_policy_to_text(ctx, &q, buf, sizeof buf))) return s;
    /* the single-threshold keys of older files would contradict the policy: they go */
    ee_net_unset_meta(net, "exit.q");
    ee_net_unset_meta(net, "exit.fallback");
    ee_net_unset_meta(net, "exit.max_drop");
    return ee_net_set_meta(ctx, net, POLICY_KEY, buf);
}
