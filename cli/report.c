/* report.c: `eenn report`, the analysis of analyze.c as one self-contained HTML file: inline SVG charts (each with
 * a title, axes, units and one sentence on what it shows), and galleries of images embedded as PNG data URIs with
 * Grad-CAM heatmaps. No scripts, no external fonts, styles or requests: it opens offline, on a phone or a desktop.
 * Written atomically (a temporary file, then rename). */
#include "analysis.h"
#include "svg.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stb/stb_image_write.h>

/* ---------------------------------------------------------------- images */
typedef struct { unsigned char *buf; size_t len, cap; } membuf;

static void put_bytes(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->len + size > m->cap) {
        size_t cap = (m->len + size) * 2;
        unsigned char *b = realloc(m->buf, cap);
        if (!b) die("out of memory");
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, size);
    m->len += size;
}
static void png_uri(FILE *f, const unsigned char *rgb, int w, int h) {
    membuf m = {0};
    if (!stbi_write_png_to_func(put_bytes, &m, w, h, 3, rgb, w * 3)) die("cannot encode a PNG image");
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputs("data:image/png;base64,", f);
    for (size_t i = 0; i < m.len; i += 3) {
        unsigned v = m.buf[i] << 16 | (i + 1 < m.len ? m.buf[i + 1] << 8 : 0) | (i + 2 < m.len ? m.buf[i + 2] : 0);
        fputc(b64[v >> 18 & 63], f);
        fputc(b64[v >> 12 & 63], f);
        fputc(i + 1 < m.len ? b64[v >> 6 & 63] : '=', f);
        fputc(i + 2 < m.len ? b64[v & 63] : '=', f);
    }
    free(m.buf);
}

/* sample i as RGB; with cam, a heatmap (blue, low, to red, high) blended over the grey image */
static unsigned char *sample_rgb(const ee_dataset *ds, int i, const float *cam) {
    int hw = ds->h * ds->w;
    unsigned char *rgb = malloc((size_t)hw * 3);
    if (!rgb) die("out of memory");
    const uint8_t *px = ds->pixels + (size_t)i * ds->c * hw;
    for (int p = 0; p < hw; p++) {
        int r, g, b;
        if (ds->c >= 3) { r = px[p]; g = px[hw + p]; b = px[2 * hw + p]; }
        else r = g = b = px[p];
        if (cam) {
            double t = cam[p], grey = (r + g + b) / 3.0;
            double hr = 255 * fmin(1, fmax(0, 1.5 - fabs(4 * t - 3))), hg = 255 * fmin(1, fmax(0, 1.5 - fabs(4 * t - 2))),
                   hb = 255 * fmin(1, fmax(0, 1.5 - fabs(4 * t - 1)));
            r = (int)(0.45 * grey + 0.55 * hr);
            g = (int)(0.45 * grey + 0.55 * hg);
            b = (int)(0.45 * grey + 0.55 * hb);
        }
        rgb[3 * p] = (unsigned char)r; rgb[3 * p + 1] = (unsigned char)g; rgb[3 * p + 2] = (unsigned char)b;
    }
    return rgb;
}

static void img(FILE *f, const ee_dataset *ds, int i, const float *cam, const char *alt) {
    unsigned char *rgb = sample_rgb(ds, i, cam);
    fputs("<img src=\"", f);
    png_uri(f, rgb, ds->w, ds->h);
    fprintf(f, "\" alt=\"%s\" width=\"%d\" height=\"%d\">", alt, ds->w * 3 > 96 ? 96 : ds->w * 3, ds->h * 3 > 96 ? 96 : ds->h * 3);
    free(rgb);
}

/* one gallery card: the image, Grad-CAM of IC 1 and of the final output, and every exit's prediction */
static void card(FILE *f, analysis *an, const split_result *r, int i, int with_cam, const char *note) {
    int H = an->heads;
    char nm[32], nb[32];
    const ee_dataset *ds = r->ds;
    float *x = malloc((size_t)ds->c * ds->h * ds->w * sizeof(float)), *cam = malloc((size_t)ds->h * ds->w * sizeof(float));
    if (!x || !cam) die("out of memory");
    uint8_t y;
    ee_dataset_batch(an->ctx, ds, &i, 1, NULL, x, &y);
    fprintf(f, "<div class=\"card\"><div class=\"imgs\"><figure class=\"im\">");
    img(f, ds, i, NULL, "input image");
    fprintf(f, "<figcaption>input</figcaption></figure>");
    if (with_cam) {
        int heads[2] = {0, H - 1};
        for (int k = 0; k < 2; k++) {
            int cls = -1;
            check(ee_gradcam(an->ctx, an->net, x, heads[k], -1, -1, cam, &cls, NULL), an->ctx);
            fprintf(f, "<figure class=\"im\">");
            img(f, ds, i, cam, "Grad-CAM heatmap");
            fprintf(f, "<figcaption>%s: %s</figcaption></figure>", k ? "final" : "IC1", class_name(an, cls, nb, sizeof nb));
        }
    }
    fprintf(f, "</div><p><b>true: %s</b>", class_name(an, y, nb, sizeof nb));
    if (note) fprintf(f, " &middot; %s", note);
    fprintf(f, "</p><ol class=\"preds\">");
    for (int h = 0; h < H; h++) {
        int p = r->o->pred[(size_t)i * H + h];
        fprintf(f, "<li class=\"%s\">%s: %s <small>%.0f%%</small></li>", p == y ? "ok" : "bad", head_name(an->net, h, nm, sizeof nm),
                class_name(an, p, nb, sizeof nb), 100 * r->o->conf[(size_t)i * H + h]);
    }
    fprintf(f, "</ol></div>\n");
    free(x);
    free(cam);
}

/* ---------------------------------------------------------------- the charts */
static void exit_labels(const analysis *an, char lab[][16], const char **ptr) {
    for (int h = 0; h < an->heads; h++) { head_name(an->net, h, lab[h], 16); ptr[h] = lab[h]; }
}

static void chart_exits(FILE *f, const analysis *an, const split_result *r) {
    int H = an->heads;
    char lab[EE_MAX_HEADS][16];
    const char *ptr[EE_MAX_HEADS];
    exit_labels(an, lab, ptr);
    double acc[EE_MAX_HEADS], cost[EE_MAX_HEADS];
    for (int h = 0; h < H; h++) { acc[h] = 100 * r->acc[h]; cost[h] = 100 * an->cost[h]; }
    char cap[400];
    snprintf(cap, sizeof cap, "Each internal classifier (IC) is an exit part-way through the network: IC1 costs %.0f%% of the full "
             "network and is right on %.1f%% of the test images; the final output costs 100%% and is right on %.1f%%.",
             cost[0], acc[0], acc[H - 1]);
    figure(f, "Accuracy and cost of every exit", cap);
    plot p;
    plot_begin(&p, f, -0.5, H - 0.5, 0, 100, "exit (from the earliest IC to the final output)", "percent", ptr, H);
    bars(&p, cost, H, 0, 2, "#bbb", 0);
    bars(&p, acc, H, 1, 2, palette[0], 1);
    legend(&p, palette[0], "test accuracy (%)", 0);
    legend(&p, "#bbb", "cost: FLOPs up to this exit (% of the CNN)", 0);
    plot_end(&p, "bar chart of accuracy and cost per exit");
}

static void chart_wasteful(FILE *f, const analysis *an, const split_result *r) {
    int H = an->heads, n = r->o->n;
    char lab[EE_MAX_HEADS][16];
    const char *ptr[EE_MAX_HEADS];
    exit_labels(an, lab, ptr);
    double xs[EE_MAX_HEADS], first[EE_MAX_HEADS], cum[EE_MAX_HEADS];
    for (int h = 0; h < H; h++) {
        xs[h] = h;
        first[h] = 100.0 * r->ot.first_correct[h] / n;
        cum[h] = 100.0 * r->ot.cum_correct[h] / n;
    }
    char cap[480];
    snprintf(cap, sizeof cap, "Wasteful overthinking: %.1f%% of the images are already right at some IC, so the layers after "
             "it are wasted on them. An oracle that stops at the first IC that is right would spend %.1f%% of the CNN's "
             "FLOPs (%.1f%% with the paper's nominal costs).", 100.0 * r->ot.wasteful / n, 100 * r->ot.oracle_cost,
             100 * r->ot.oracle_cost_nominal);
    figure(f, "Wasteful effect: where images are first classified correctly", cap);
    plot p;
    plot_begin(&p, f, -0.5, H - 0.5, 0, 100, "exit", "percent of test images", ptr, H);
    bars(&p, first, H, 0, 1, palette[2], 1);
    line(&p, xs, cum, H, palette[0], 1, 0);
    legend(&p, palette[2], "right here for the first time", 0);
    legend(&p, palette[0], "right here or at an earlier exit (cumulative)", 0);
    plot_end(&p, "bar chart of first-correct exits");
}

static void chart_destructive(FILE *f, const analysis *an, const split_result *r, const char *title, const char *what) {
    int H = an->heads;
    char lab[EE_MAX_HEADS][16];
    const char *ptr[EE_MAX_HEADS];
    exit_labels(an, lab, ptr);
    double d[EE_MAX_HEADS], ymax = 1;
    for (int h = 0; h < H - 1; h++) {
        d[h] = r->ot.end_wrong ? 100.0 * r->ot.destructive[h] / r->ot.end_wrong : 0;
        if (d[h] > ymax) ymax = d[h];
    }
    char cap[480];
    snprintf(cap, sizeof cap, "Destructive overthinking%s: of the final output's %d errors, %d (%.1f%%) were classified "
             "correctly by at least one IC before the network changed its mind. Bars: the share each IC gets right.",
             what, r->ot.end_wrong, r->ot.destructive_any, 100 * r->ot.destructive_frac);
    figure(f, title, cap);
    plot p;
    plot_begin(&p, f, -0.5, H - 1.5, 0, ymax * 1.1, "internal classifier", "% of the final output's errors", ptr, H - 1);
    bars(&p, d, H - 1, 0, 1, palette[3], 1);
    legend(&p, palette[3], "final output wrong, this IC right", 0);
    plot_end(&p, "bar chart of destructive overthinking per IC");
}

static void chart_curve(FILE *f, const analysis *an) {
    const split_result *r = &an->clean;
    int H = an->heads, n = an->ncurve;
    double *x = malloc(n * sizeof(double)), *y = malloc(n * sizeof(double)), ymin = 100;
    if (!x || !y) die("out of memory");
    for (int i = 0; i < n; i++) {
        x[i] = 100 * an->curve[i].cost;
        y[i] = 100 * an->curve[i].acc;
        if (y[i] < ymin) ymin = y[i];
    }
    char cap[600], d[256];
    int learned = an->policy.kind == EE_SCORE_CONFIDENCE;
    if (learned) /* an EENet: the marker is its own rule, the curve the max-softmax rule on its softmax branches */
        snprintf(cap, sizeof cap, "Each point is one max-softmax threshold q applied to the exits' softmax branches: an image "
                 "leaves at the first exit whose top softmax probability is at least q. The model's own rule (%s, the "
                 "confidence branches it learned) keeps %.2f%% accuracy (final output alone: %.2f%%) for %.1f%% of the "
                 "cost.", describe_policy(&an->policy, d, sizeof d), 100 * r->at_q.acc, 100 * r->acc[H - 1],
                 100 * r->at_q.cost);
    else
        snprintf(cap, sizeof cap, "Each point is one confidence threshold q: an image leaves at the first IC whose top "
                 "softmax probability is at least q. At the threshold calibrated on held-out data (q = %.3g) the network "
                 "keeps %.2f%% accuracy (final output alone: %.2f%%) for %.1f%% of the cost.", an->q, 100 * r->at_q.acc,
                 100 * r->acc[H - 1], 100 * r->at_q.cost);
    figure(f, "Accuracy against average cost, over thresholds", cap);
    plot p;
    double lo = floor(ymin / 5) * 5;
    plot_begin(&p, f, 0, 100, lo, 100, "average cost (% of the CNN's FLOPs)", "test accuracy (%)", NULL, 0);
    line(&p, x, y, n, palette[0], 0, 0);
    legend(&p, palette[0], "early exits, q from 0 to 1", 0);
    marker(&p, 100 * r->at_q.cost, 100 * r->at_q.acc, palette[3], learned ? "learned rule" : "calibrated q");
    marker(&p, 100 * an->cost[H - 1], 100 * r->acc[H - 1], "#333", "no early exit");
    plot_end(&p, "line chart of accuracy against cost");
    free(x);
    free(y);
}

/* one accuracy-cost curve per exit method, each point a policy calibrated on validation for a cost budget */
/* reliability diagram: each exit's accuracy against its confidence, bin by bin (up to four exits: the first,
 * two between, the final) */
static void chart_reliability(FILE *f, const analysis *an) {
    int H = an->heads, show[4], ns = 0;
    if (H <= 4)
        for (int h = 0; h < H; h++) show[ns++] = h;
    else {
        show[0] = 0; show[1] = H / 3; show[2] = 2 * H / 3; show[3] = H - 1;
        ns = 4;
    }
    char cap[700];
    size_t len = (size_t)snprintf(cap, sizeof cap, "Each point is one of 15 equal-mass bins of the test images sorted "
                                  "by an exit's top softmax probability: its mean confidence and its accuracy. A "
                                  "calibrated exit lies on the diagonal. Calibration error (ECE) per exit:");
    for (int h = 0; h < H && len < sizeof cap; h++)
        len += (size_t)snprintf(cap + len, sizeof cap - len, " %.2f%%", an->head_ece[h] * 100);
    if (len < sizeof cap) snprintf(cap + len, sizeof cap - len, " (first to final).");
    figure(f, "Reliability of each exit's confidence", cap);
    double lo = 100;
    for (int k = 0; k < ns; k++)
        for (int b = 0; b < 15; b++) {
            lo = fmin(lo, 100 * an->rel_conf[show[k]][b]);
            lo = fmin(lo, 100 * an->rel_acc[show[k]][b]);
        }
    lo = fmax(0, floor(lo / 10) * 10);
    plot p;
    plot_begin(&p, f, lo, 100, lo, 100, "mean confidence (%)", "accuracy (%)", NULL, 0);
    double d[2] = {lo, 100};
    line(&p, d, d, 2, "#999", 0, 1);
    legend(&p, "#999", "calibrated", 1);
    for (int k = 0; k < ns; k++) {
        double x[15], y[15];
        for (int b = 0; b < 15; b++) { x[b] = 100 * an->rel_conf[show[k]][b]; y[b] = 100 * an->rel_acc[show[k]][b]; }
        char name[64];
        if (show[k] == H - 1) snprintf(name, sizeof name, "final (ECE %.2f%%)", an->head_ece[show[k]] * 100);
        else snprintf(name, sizeof name, "exit %d (ECE %.2f%%)", show[k] + 1, an->head_ece[show[k]] * 100);
        line(&p, x, y, 15, palette[k], 1, 0);
        legend(&p, palette[k], name, 0);
    }
    plot_end(&p, "line chart of accuracy against confidence per exit");
}

static void chart_methods(FILE *f, const analysis *an) {
    if (!an->ncurves) return;
    const split_result *r = &an->clean;
    int H = an->heads;
    double ymin = 100;
    for (int c = 0; c < an->ncurves; c++)
        for (int b = 0; b < an->nbudgets; b++) ymin = fmin(ymin, 100 * an->method_curve[c][b].acc);
    figure(f, "Accuracy against average cost, per exit method",
           "Each point is a policy calibrated on the validation split for a cost budget (15% to 100% of the CNN), then "
           "run on the test images: maxprob is the SDN's top softmax probability, entropy BranchyNet's rule, margin the "
           "gap between the two most likely classes; per-exit curves search one threshold per exit, the others share "
           "one. A curve higher and further left is a better method (eenn compare gives the numbers).");
    plot p;
    plot_begin(&p, f, 0, 100, floor(ymin / 5) * 5, 100, "average cost (% of the CNN's FLOPs)", "test accuracy (%)", NULL, 0);
    for (int c = 0; c < an->ncurves; c++) {
        double x[12], y[12];
        for (int b = 0; b < an->nbudgets; b++) {
            x[b] = 100 * an->method_curve[c][b].cost;
            y[b] = 100 * an->method_curve[c][b].acc;
        }
        const exit_method *m = &exit_methods[an->curve_method[c]];
        line(&p, x, y, an->nbudgets, palette[c % 16], 1, m->per_exit);
        legend(&p, palette[c % 16], m->short_name, m->per_exit);
    }
    marker(&p, 100 * an->cost[H - 1], 100 * r->acc[H - 1], "#333", "no early exit");
    plot_end(&p, "line chart of accuracy against cost for each exit method");
}

/* risk control: the test risk each procedure reaches against the epsilon it was asked for, and its cost */
static void chart_risk(FILE *f, const analysis *an) {
    if (!an->nrc) return;
    static const char *const names[4] = {"naive", "CRC", "UCB", "LTT"};
    double x[8], y[8], top = 0;
    for (int e = 0; e < an->nrc; e++) {
        x[e] = 100 * an->rc_eps[e];
        top = fmax(top, x[e]);
    }
    figure(f, "Risk control: test risk against the allowed risk",
           "Each procedure picks one shared threshold on a random half of the test images for an allowed gap risk "
           "epsilon (the final output right, the early exit wrong, minus the reverse), and the other half measures "
           "it; means over 50 halves. On or below the dashed diagonal the risk is kept: CRC promises it in "
           "expectation, UCB and LTT with probability 0.9, naive not at all.");
    plot p;
    plot_begin(&p, f, 0, top, 0, top, "allowed risk epsilon (%)", "mean test risk (%)", NULL, 0);
    double d[2] = {0, top};
    line(&p, d, d, 2, "#999", 0, 1);
    legend(&p, "#999", "risk = epsilon", 1);
    for (int m = 0; m < 4; m++) {
        for (int e = 0; e < an->nrc; e++) y[e] = 100 * an->rc_risk[m][e];
        line(&p, x, y, an->nrc, palette[m], 1, m == 1); /* CRC dashed: it often takes naive's threshold */
        legend(&p, palette[m], names[m], m == 1);
    }
    plot_end(&p, "line chart of the test risk of each risk-control procedure against epsilon");
    figure(f, "Risk control: the price of the guarantee",
           "The average cost of the thresholds of the chart above, on the test halves: the guarantees of UCB and LTT "
           "cost more computation than the naive threshold at the same epsilon (CRC's correction is small at these sample "
           "sizes, so it often takes the naive threshold).");
    plot_begin(&p, f, 0, top, 0, 100, "allowed risk epsilon (%)", "average cost (% of the CNN's FLOPs)", NULL, 0);
    for (int m = 0; m < 4; m++) {
        for (int e = 0; e < an->nrc; e++) y[e] = 100 * an->rc_cost[m][e];
        line(&p, x, y, an->nrc, palette[m], 1, m == 1);
        legend(&p, palette[m], names[m], m == 1);
    }
    plot_end(&p, "line chart of the cost of each risk-control procedure against epsilon");
}

/* overlaid histograms of a score for right and wrong final predictions */
static void chart_hist(FILE *f, const analysis *an, const split_result *r, const float *score, const char *title,
                       const char *xlabel, const char *cap, double lo, double hi) {
    int H = an->heads, n = r->o->n, bins = 25;
    double h[2][25] = {{0}}, tot[2] = {0}, mean[2] = {0}, ymax = 1;
    for (int i = 0; i < n; i++) {
        int w = r->o->pred[(size_t)i * H + H - 1] != r->o->label[i];
        int b = (int)((score[i] - lo) / (hi - lo) * bins);
        b = b < 0 ? 0 : b >= bins ? bins - 1 : b;
        h[w][b]++;
        tot[w]++;
        mean[w] += score[i];
    }
    for (int w = 0; w < 2; w++) {
        mean[w] /= tot[w] > 0 ? tot[w] : 1;
        for (int b = 0; b < bins; b++) {
            h[w][b] = tot[w] ? 100 * h[w][b] / tot[w] : 0;
            if (h[w][b] > ymax) ymax = h[w][b];
        }
    }
    figure(f, title, cap);
    plot p;
    plot_begin(&p, f, lo, hi, 0, ymax * 1.05, xlabel, "% of the group", NULL, 0);
    const char *col[2] = {palette[2], palette[3]};
    for (int w = 0; w < 2; w++) {
        for (int b = 0; b < bins; b++) {
            double x0 = PX(&p, lo + (hi - lo) * b / bins), x1 = PX(&p, lo + (hi - lo) * (b + 1) / bins);
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.45\"/>", x0,
                    PY(&p, h[w][b]), x1 - x0, PY(&p, 0) - PY(&p, h[w][b]), col[w]);
        }
        double mx = PX(&p, fmin(hi, fmax(lo, mean[w])));
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/>\n",
                mx, mx, p.T, p.H - p.B, col[w]);
    }
    char l[2][64];
    snprintf(l[0], 64, "final output right (%.0f images)", tot[0]);
    snprintf(l[1], 64, "final output wrong (%.0f images)", tot[1]);
    legend(&p, col[0], l[0], 0);
    legend(&p, col[1], l[1], 0);
    legend(&p, "#555", "group means", 1);
    plot_end(&p, "histogram");
}

/* ROC curves of the two error detectors */
static void roc_points(const split_result *r, int H, const float *score, int sign, double *fx, double *fy, int npts) {
    int n = r->o->n, pos = 0;
    for (int i = 0; i < n; i++) pos += r->o->pred[(size_t)i * H + H - 1] != r->o->label[i];
    float lo = 1e30f, hi = -1e30f;
    for (int i = 0; i < n; i++) { float s = sign * score[i]; lo = s < lo ? s : lo; hi = s > hi ? s : hi; }
    for (int k = 0; k < npts; k++) {
        double t = hi - (hi - lo) * k / (npts - 1.0) - (k == npts - 1 ? 1 : 0);
        int tp = 0, fp = 0;
        for (int i = 0; i < n; i++)
            if (sign * score[i] >= t) {
                if (r->o->pred[(size_t)i * H + H - 1] != r->o->label[i]) tp++; else fp++;
            }
        fx[k] = n - pos ? 100.0 * fp / (n - pos) : 0;
        fy[k] = pos ? 100.0 * tp / pos : 0;
    }
}

static void chart_roc(FILE *f, const analysis *an, const split_result *r, const float *soft) {
    int H = an->heads, np = 101;
    double fx[101], fy[101], gx[101], gy[101], dx[2] = {0, 100};
    roc_points(r, H, r->confusion, 1, fx, fy, np);
    roc_points(r, H, soft, -1, gx, gy, np);
    char cap[400], l1[80], l2[80];
    snprintf(cap, sizeof cap, "How well each score finds the final output's mistakes: a curve closer to the top-left corner is "
             "better, and the area under it (AUROC) is the chance that a random mistake looks more suspicious than a random "
             "correct answer. Confusion: %.3f; max softmax: %.3f.", r->conf_stats.auroc, r->soft_stats.auroc);
    figure(f, "Finding errors: the confusion metric against the max-softmax confidence", cap);
    plot p;
    plot_begin(&p, f, 0, 100, 0, 100, "correct answers flagged (false positive rate, %)", "mistakes flagged (true positive rate, %)", NULL, 0);
    line(&p, dx, dx, 2, "#999", 0, 1);
    line(&p, fx, fy, np, palette[4], 0, 0);
    line(&p, gx, gy, np, palette[1], 0, 0);
    snprintf(l1, sizeof l1, "confusion metric (AUROC %.3f)", r->conf_stats.auroc);
    snprintf(l2, sizeof l2, "low final max softmax (AUROC %.3f)", r->soft_stats.auroc);
    legend(&p, palette[4], l1, 0);
    legend(&p, palette[1], l2, 0);
    legend(&p, "#999", "chance", 1);
    plot_end(&p, "ROC curves");
}

static void chart_classes(FILE *f, const analysis *an) {
    const split_result *r = &an->clean;
    int H = an->heads, K = an->classes > 20 ? 20 : an->classes;
    int W = 560, rowh = 26, L = 118, T = 10, Hh = T + K * rowh + 90;
    char cap[400], nb[32], nm[32], d[256];
    snprintf(cap, sizeof cap, "Easy classes leave early and hard ones late: for each class, the share of its test images that "
             "take each exit under the model's exit policy (%s).", describe_policy(&an->policy, d, sizeof d));
    figure(f, "Which exit each class takes", cap);
    fprintf(f, "<svg viewBox=\"0 0 %d %d\" role=\"img\" font-size=\"15\" font-family=\"sans-serif\">\n", W, Hh);
    for (int k = 0; k < K; k++) {
        int cnt[EE_MAX_HEADS] = {0}, tot = 0;
        for (int i = 0; i < r->o->n; i++)
            if (r->o->label[i] == k) { cnt[r->exit_of[i]]++; tot++; }
        double x = L, y = T + k * rowh;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", L - 6, y + 18);
        esc(f, class_name(an, k, nb, sizeof nb));
        fprintf(f, "</text>");
        for (int h = 0; h < H; h++) {
            double w = tot ? (W - L - 20.0) * cnt[h] / tot : 0;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>", x, y + 2, w, rowh - 4, palette[h]);
            x += w;
        }
        fprintf(f, "\n");
    }
    double ax = T + K * rowh + 4;
    for (int i = 0; i <= 4; i++) {
        double x = L + (W - L - 20.0) * i / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>", x, ax + 14, 25 * i);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-weight=\"bold\">percent of the class's test images</text>",
            L + (W - L - 20.0) / 2, ax + 34);
    for (int h = 0; h < H; h++) {
        double x = 10 + h * 64.0, y = ax + 52;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>", x, y,
                palette[h], x + 16, y + 11, head_name(an->net, h, nm, sizeof nm));
    }
    fprintf(f, "<desc>stacked bars of exits per class</desc></svg></figure>\n");
}

static void chart_backdoor(FILE *f, const analysis *an) {
    int H = an->heads;
    char lab[EE_MAX_HEADS][16];
    const char *ptr[EE_MAX_HEADS];
    exit_labels(an, lab, ptr);
    double xs[EE_MAX_HEADS], clean[EE_MAX_HEADS], trig[EE_MAX_HEADS], att[EE_MAX_HEADS];
    for (int h = 0; h < H; h++) {
        xs[h] = h;
        clean[h] = 100 * an->clean.acc[h];
        trig[h] = 100 * an->trig_res.acc[h];
        att[h] = 100 * an->attack[h];
    }
    char cap[520];
    snprintf(cap, sizeof cap, "The model was trained with a backdoor: a %dx%d white square makes it answer class %d. Early ICs "
             "mostly ignore the trigger, so on triggered images they still find the true class while the final output is "
             "hijacked (attack success %.1f%%). Early exits at q = %.3g answer %.1f%% of triggered images correctly, against "
             "%.1f%% for the final output.", an->trig.size, an->trig.size, an->trig.target, att[H - 1], an->q,
             100 * an->trig_res.at_q.acc, trig[H - 1]);
    figure(f, "Backdoor: what the trigger does to each exit", cap);
    plot p;
    plot_begin(&p, f, -0.5, H - 0.5, 0, 100, "exit", "percent of test images", ptr, H);
    line(&p, xs, clean, H, palette[2], 1, 0);
    line(&p, xs, trig, H, palette[0], 1, 0);
    line(&p, xs, att, H, palette[3], 1, 1);
    legend(&p, palette[2], "accuracy, clean images", 0);
    legend(&p, palette[0], "true-class accuracy, triggered images", 0);
    legend(&p, palette[3], "attack success: triggered images sent to the target", 1);
    plot_end(&p, "line chart of backdoor effect per exit");
}

/* ---------------------------------------------------------------- the page */

static void kpi(FILE *f, const char *value, const char *label) {
    fprintf(f, "<div class=\"kpi\"><b>%s</b>", value);
    esc(f, label);
    fprintf(f, "</div>");
}

static void exit_table(FILE *f, const analysis *an, const split_result *r) {
    int H = an->heads;
    char nm[32];
    fprintf(f, "<div class=\"scroll\"><table><tr><th>exit</th><th>cost (FLOPs)</th><th>nominal cost</th><th>accuracy</th>"
               "<th>right</th><th>cumulatively right</th><th>first right</th><th>final's errors it gets right</th></tr>\n");
    for (int h = 0; h < H; h++) {
        fprintf(f, "<tr><td>%s</td><td>%.1f%%</td><td>%.0f%%</td><td>%.2f%%</td><td>%d</td><td>%d</td><td>%d</td><td>", head_name(an->net, h, nm, sizeof nm),
                100 * an->cost[h], 100 * an->nominal[h], 100 * r->acc[h], r->ot.correct[h], r->ot.cum_correct[h], r->ot.first_correct[h]);
        if (h < H - 1) fprintf(f, "%d", r->ot.destructive[h]);
        else fprintf(f, "&ndash;");
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table></div>\n");
}

static int by_desc(const void *a, const void *b) {
    const float *x = a, *y = b;
    return (x[0] < y[0]) - (x[0] > y[0]);
}

static void write_report(FILE *f, analysis *an, int ngal) {
    int H = an->heads;
    const split_result *r = &an->clean;
    int n = r->o->n;
    char v[64];
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>eenn report: ");
    esc(f, an->model);
    fprintf(f, "</title><style>%s</style></head><body><main>\n<h1>Overthinking report: ", html_css);
    esc(f, an->model);
    fprintf(f, "</h1><p>A %s with %d internal classifiers (ICs), on %d test images of <code>", ee_net_name(an->net), H - 1, n);
    esc(f, an->data);
    fprintf(f, "</code>. An early-exit network answers at the first IC that is confident enough and skips the rest. "
               "<em>Overthinking</em> (Kaya et al., ICML 2019) is what happens without it: the network keeps computing on "
               "images it already got right (wasteful), and sometimes changes a right answer into a wrong one (destructive).</p>\n");
    fprintf(f, "<div class=\"kpis\">");
    snprintf(v, sizeof v, "%.2f%%", 100 * r->acc[H - 1]);
    kpi(f, v, "accuracy of the final output (the full network)");
    snprintf(v, sizeof v, "%.2f%% at %.0f%%", 100 * r->at_q.acc, 100 * r->at_q.cost);
    kpi(f, v, "early-exit accuracy at that share of the FLOPs (calibrated q)");
    snprintf(v, sizeof v, "%.1f%%", 100.0 * r->ot.wasteful / n);
    kpi(f, v, "images already right at some IC (wasteful effect)");
    snprintf(v, sizeof v, "%.1f%%", 100 * r->ot.destructive_frac);
    kpi(f, v, "of the final output's errors right at some IC (destructive effect)");
    snprintf(v, sizeof v, "%.3f vs %.3f", r->conf_stats.auroc, r->soft_stats.auroc);
    kpi(f, v, "AUROC of the confusion metric vs the max softmax, as error detectors");
    if (an->ece >= 0) {
        snprintf(v, sizeof v, "%.2f%%", 100 * an->ece);
        kpi(f, v, "calibration error of the early-exit answers (15 equal-mass bins)");
    }
    if (an->conf_cov >= 0) {
        snprintf(v, sizeof v, "%.1f%%, %.2f", 100 * an->conf_cov, an->conf_size);
        kpi(f, v, "coverage and mean size of per-exit conformal sets at 95% (fitted on validation)");
    }
    if (an->has_trigger) {
        snprintf(v, sizeof v, "%.1f%% &rarr; %.1f%%", 100 * an->trig_res.acc[H - 1], 100 * an->trig_res.at_q.acc);
        fprintf(f, "<div class=\"kpi\"><b>%s</b>true-class accuracy on triggered images: final output &rarr; early exits</div>", v);
    }
    fprintf(f, "</div>\n<h2>Exits</h2>\n");
    exit_table(f, an, r);
    chart_exits(f, an, r);
    chart_curve(f, an);
    chart_reliability(f, an);
    chart_methods(f, an);
    chart_risk(f, an);
    chart_classes(f, an);
    fprintf(f, "<h2>Wasteful and destructive overthinking</h2>\n");
    chart_wasteful(f, an, r);
    chart_destructive(f, an, r, "Destructive effect: right early, wrong at the end", "");

    /* gallery: right at an IC (IC1 first), wrong at the end */
    fprintf(f, "<h3>Images the network overthinks destructively</h3><p class=\"cap\">Right at an early IC, wrong at the final "
               "output. Heatmaps: Grad-CAM, the image regions that drive the prediction of IC1 and of the final output "
               "(red: strong, blue: none). Below: the prediction and confidence at every exit (green right, red wrong).</p>"
               "<div class=\"gallery\">\n");
    int shown = 0;
    for (int pass = 0; pass < 2 && shown < ngal; pass++)
        for (int i = 0; i < n && shown < ngal; i++) {
            const uint8_t *p = r->o->pred + (size_t)i * H;
            uint8_t y = r->o->label[i];
            if (p[H - 1] == y) continue;
            int first_right = p[0] == y, some = 0;
            for (int h = 0; h < H - 1; h++) some |= p[h] == y;
            if ((pass == 0 && first_right) || (pass == 1 && some && !first_right)) { card(f, an, r, i, 1, NULL); shown++; }
        }
    if (!shown) fprintf(f, "<p>None in this test set.</p>");
    fprintf(f, "</div>\n");

    fprintf(f, "<h2>The confusion metric</h2><p>Confusion is the total L1 distance between the softmax of every exit and the "
               "final softmax: how much the exits disagree with the final answer. It is z-normalised with the mean (%.3f) and "
               "standard deviation (%.3f) on %d un-augmented training images.</p>\n", an->mu, an->sigma, an->train_n);
    float *soft = malloc((size_t)n * sizeof(float));
    if (!soft) die("out of memory");
    float zlo = 1e30f, zhi = -1e30f;
    for (int i = 0; i < n; i++) {
        soft[i] = r->o->conf[(size_t)i * H + H - 1];
        zlo = r->confusion[i] < zlo ? r->confusion[i] : zlo;
        zhi = r->confusion[i] > zhi ? r->confusion[i] : zhi;
    }
    char cap[400];
    snprintf(cap, sizeof cap, "Confusion is higher when the final output is wrong: mean %.2f on its errors against %.2f on its "
             "right answers (dashed lines).", r->conf_stats.mean_wrong, r->conf_stats.mean_right);
    chart_hist(f, an, r, r->confusion, "Confusion score, right and wrong final predictions", "confusion (z-score)", cap,
               floor(zlo), ceil(zhi));
    snprintf(cap, sizeof cap, "The baseline: the final output's top softmax probability is lower on its errors (mean %.3f) than on "
             "its right answers (mean %.3f).", r->soft_stats.mean_wrong, r->soft_stats.mean_right);
    chart_hist(f, an, r, soft, "Max-softmax confidence of the final output, right and wrong predictions",
               "max softmax probability", cap, 0, 1);
    chart_roc(f, an, r, soft);
    fprintf(f, "<h3>The images the confusion metric flags most</h3><p class=\"cap\">The %d test images with the highest "
               "confusion score: the exits disagree most on them.</p><div class=\"gallery\">\n", ngal);
    float (*order)[2] = malloc((size_t)n * sizeof *order);
    if (!order) die("out of memory");
    for (int i = 0; i < n; i++) { order[i][0] = r->confusion[i]; order[i][1] = (float)i; }
    qsort(order, n, sizeof *order, by_desc);
    int flagged_wrong = 0;
    for (int k = 0; k < ngal && k < n; k++) {
        int i = (int)order[k][1];
        char note[64];
        snprintf(note, sizeof note, "confusion z = %.2f", r->confusion[i]);
        flagged_wrong += r->o->pred[(size_t)i * H + H - 1] != r->o->label[i];
        card(f, an, r, i, 0, note);
    }
    fprintf(f, "</div><p>%d of these %d are mistakes of the final output (its error rate overall: %.1f%%).</p>\n", flagged_wrong,
            ngal < n ? ngal : n, 100.0 * r->ot.end_wrong / n);
    free(order);
    free(soft);

    if (an->has_trigger) {
        const split_result *t = &an->trig_res;
        fprintf(f, "<h2>Backdoor</h2><p>Every test image stamped with the trigger (a %dx%d white square), true labels kept. "
                   "Attack success counts the %d images not of the target class %d.</p>\n", an->trig.size, an->trig.size,
                an->nontarget, an->trig.target);
        exit_table(f, an, t);
        chart_backdoor(f, an);
        chart_destructive(f, an, t, "Backdoor: destructive overthinking induced by the trigger", " on triggered images");
        fprintf(f, "<h3>Triggered images the early ICs still get right</h3><p class=\"cap\">IC1 finds the true class, the "
                   "final output answers the target: compare where each looks (Grad-CAM).</p><div class=\"gallery\">\n");
        int s = 0;
        for (int i = 0; i < t->o->n && s < ngal; i++) {
            const uint8_t *p = t->o->pred + (size_t)i * H;
            if (p[0] == t->o->label[i] && p[H - 1] == an->trig.target && t->o->label[i] != an->trig.target) { card(f, an, t, i, 1, NULL); s++; }
        }
        if (!s) fprintf(f, "<p>None in this test set.</p>");
        fprintf(f, "</div>\n");
    }
    fprintf(f, "<p class=\"cap\">Written by eenn %s in %.0f s. Costs are true FLOPs of the network up to each exit, IC heads "
               "included, relative to the network without ICs; nominal costs are the SDN paper's 15%%, 30%%, ... per IC.</p>\n"
               "</main></body></html>\n", EE_VERSION_STRING, an->seconds);
}

static const char *report_help =
    "usage: eenn report MODEL [DATA] -o REPORT.html [options]\n"
    "Writes the analysis of `eenn analyze` as one self-contained HTML file (inline SVG charts, embedded\n"
    "images, no scripts or external resources): per-exit accuracy and cost, the accuracy-cost curve, per-class\n"
    "exits, wasteful and destructive overthinking with a gallery of destructive images and their Grad-CAM\n"
    "heatmaps for IC1 and the final output, the confusion metric against the max softmax, the images it flags,\n"
    "and the backdoor study for a backdoored model.\n"
    "  -o, --out FILE     the HTML file (default report.html), written atomically\n"
    "  --gallery N        images per gallery (default 12)\n"
    "  DATA, --data DIR  --q X  --trigger SIZE[@X,Y]  --target C  --train-subset N  --test-subset N\n"
    "  --threads N: as in analyze\n";

enum { O_OUT = O_AN_END, O_GALLERY };
static const struct option report_opts[] = {ANALYSIS_OPTIONS, {"out", required_argument, NULL, O_OUT},
                                            {"gallery", required_argument, NULL, O_GALLERY},
                                            {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_report(int argc, char **argv) {
    analysis_opts opt = {NULL, NULL, -1, 0, 0, NULL, -1, 0, 1};
    const char *out = "report.html";
    int ngal = 12;
    cli_args a = {"report", report_help, report_opts, "o:", argc, argv, -1, 0};
    for (int c; (c = cli_next(&a)) != -1;)
        if (c == O_OUT || c == 'o') out = optarg;
        else if (c == O_GALLERY) ngal = (int)cli_int(&a, 0, 1000);
        else parse_analysis_opt(&a, c, &opt);
    analysis_positional(&a, &opt);
    analysis an;
    run_analysis(&opt, &an);
    fprintf(stderr, "report: charts and galleries (Grad-CAM)\n");
    char tmp[4200];
    FILE *f = html_open(out, tmp, sizeof tmp);
    if (!f) die("%s: cannot write", out);
    write_report(f, &an, ngal);
    html_close(f, tmp, out);
    printf("report written to %s: final accuracy %.2f%%, wasteful %.1f%%, destructive %.1f%%, confusion AUROC %.3f "
           "(max softmax %.3f)\n", out, 100 * an.clean.acc[an.heads - 1], 100.0 * an.clean.ot.wasteful / an.clean.o->n,
           100 * an.clean.ot.destructive_frac, an.clean.conf_stats.auroc, an.clean.soft_stats.auroc);
    free_analysis(&an);
    return 0;
}
