/* svg.c: the inline SVG charts of eenn report and eenn compare: axes at round numbers, legends, lines, bars
 * and markers; and writing an HTML file atomically. */
#include "svg.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                                      "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"};

void esc(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* ---------------------------------------------------------------- SVG plots */

double PX(const plot *p, double x) { return p->L + (x - p->x0) / (p->x1 - p->x0) * (p->W - p->L - p->R); }
double PY(const plot *p, double y) { return p->H - p->B - (y - p->y0) / (p->y1 - p->y0) * (p->H - p->T - p->B); }

void figure(FILE *f, const char *title, const char *caption) {
    fprintf(f, "<figure><h3>");
    esc(f, title);
    fprintf(f, "</h3><p class=\"cap\">");
    esc(f, caption);
    fprintf(f, "</p>\n");
}

double nice_step(double range) {
    double raw = range / 5, mag = pow(10, floor(log10(raw))), m = raw / mag;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * mag;
}

/* the frame: grid, ticks at round numbers and axis titles, legends in a band above. xcat: category labels for
 * x = 0..ncat-1 (NULL: numeric x, its range widened to round numbers). */
void plot_begin(plot *p, FILE *f, double x0, double x1, double y0, double y1, const char *xlabel,
                       const char *ylabel, const char *const *xcat, int ncat) {
    plot_begin_rows(p, f, x0, x1, y0, y1, xlabel, ylabel, xcat, ncat, 2);
}

void plot_begin_rows(plot *p, FILE *f, double x0, double x1, double y0, double y1, const char *xlabel,
                     const char *ylabel, const char *const *xcat, int ncat, int legend_rows) {
    double ys = nice_step(y1 - y0);
    y0 = floor(y0 / ys + 1e-9) * ys;
    y1 = ceil(y1 / ys - 1e-9) * ys;
    double xs = 0;
    if (!xcat) {
        xs = nice_step(x1 - x0);
        x0 = floor(x0 / xs + 1e-9) * xs;
        x1 = ceil(x1 / xs - 1e-9) * xs;
    }
    p->f = f;
    p->x0 = x0; p->x1 = x1; p->y0 = y0; p->y1 = y1;
    p->W = 560; p->L = 66; p->R = 14; p->T = 18 + 20 * (legend_rows > 2 ? legend_rows : 2); p->B = 58;
    p->H = 342 + p->T;
    p->nleg = 0;
    p->legx = p->L;
    p->legy = 16;
    fprintf(f, "<svg viewBox=\"0 0 %d %d\" role=\"img\" font-size=\"15\" font-family=\"sans-serif\">\n", p->W, p->H);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#999\"/>\n", p->L, p->T,
            p->W - p->L - p->R, p->H - p->T - p->B);
    for (double v = y0; v <= y1 + ys * 1e-6; v += ys) {
        double y = PY(p, v);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>", p->L, p->W - p->R, y, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", p->L - 5, y + 4, fabs(v) < ys * 1e-6 ? 0 : v);
    }
    if (xcat) {
        for (int i = 0; i < ncat; i++)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>", PX(p, i), p->H - p->B + 16, xcat[i]);
    } else {
        for (double v = x0; v <= x1 + xs * 1e-6; v += xs) {
            double x = PX(p, v);
            fprintf(f, "<line y1=\"%d\" y2=\"%d\" x1=\"%.1f\" x2=\"%.1f\" stroke=\"#e5e5e5\"/>", p->T, p->H - p->B, x, x);
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.4g</text>", x, p->H - p->B + 16, fabs(v) < xs * 1e-6 ? 0 : v);
        }
    }
    fprintf(f, "\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\">", (double)(p->L + p->W - p->R) / 2, p->H - 10);
    esc(f, xlabel);
    fprintf(f, "</text><text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\" font-weight=\"bold\">",
            (double)(p->T + p->H - p->B) / 2);
    esc(f, ylabel);
    fprintf(f, "</text>\n");
}

/* legend entries flow left to right in the band above the plot, wrapping to a second row */
void legend(plot *p, const char *color, const char *label, int dashed) {
    double w = strlen(label) * 7.6 + 40;
    if (p->legx + w > p->W - p->R && p->legx > p->L) { p->legx = p->L; p->legy += 20; }
    double x = p->legx, y = p->legy;
    p->legx += w;
    p->nleg++;
    fprintf(p->f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%d\"%s/>", x, x + 20, y - 4,
            y - 4, color, dashed ? 3 : 8, dashed ? " stroke-dasharray=\"5 3\"" : "");
    fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\">", x + 26, y);
    esc(p->f, label);
    fprintf(p->f, "</text>\n");
}

void line(plot *p, const double *x, const double *y, int n, const char *color, int dots, int dashed) {
    fprintf(p->f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
            dashed ? " stroke-dasharray=\"5 3\"" : "");
    for (int i = 0; i < n; i++) fprintf(p->f, "%.1f,%.1f ", PX(p, x[i]), PY(p, y[i]));
    fprintf(p->f, "\"/>\n");
    if (dots)
        for (int i = 0; i < n; i++) fprintf(p->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", PX(p, x[i]), PY(p, y[i]), color);
}

/* bar k of nb in each category i */
void bars(plot *p, const double *y, int n, int k, int nb, const char *color, int labels) {
    double slot = (PX(p, 1) - PX(p, 0)) * 0.8, w = slot / nb;
    for (int i = 0; i < n; i++) {
        double x = PX(p, i) - slot / 2 + k * w, top = PY(p, y[i]), base = PY(p, p->y0 > 0 ? p->y0 : 0);
        fprintf(p->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>", x, top < base ? top : base,
                w - 1, fabs(base - top), color);
        if (labels) fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%.3g</text>", x + w / 2, top - 3, y[i]);
    }
    fprintf(p->f, "\n");
}

void marker(plot *p, double x, double y, const char *color, const char *label) {
    int right = PX(p, x) > p->W * 0.7;
    fprintf(p->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"none\" stroke=\"%s\" stroke-width=\"3\"/>", PX(p, x), PY(p, y), color);
    fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\" font-weight=\"bold\"%s>", PX(p, x) + (right ? -9 : 9), PY(p, y) + 20,
            color, right ? " text-anchor=\"end\"" : "");
    esc(p->f, label);
    fprintf(p->f, "</text>\n");
}

void plot_end(plot *p, const char *alt) {
    fprintf(p->f, "<desc>");
    esc(p->f, alt);
    fprintf(p->f, "</desc></svg></figure>\n");
}

const char *const html_css =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f6f4;color:#222;"
    "line-height:1.45}main{max-width:980px;margin:auto;padding:12px 16px 40px}h1{font-size:1.5em;margin:.6em 0 .2em}"
    "h2{margin-top:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}h3{margin:.2em 0}"
    "figure{margin:18px 0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px}"
    "svg{width:100%;height:auto;display:block}.cap{margin:.2em 0 .6em;color:#444}"
    ".kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}"
    ".kpi{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}.kpi b{display:block;font-size:1.5em}"
    ".gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}"
    ".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;font-size:.9em}"
    ".imgs{display:flex;gap:6px}.im{margin:0;padding:0;border:0;text-align:center;font-size:.8em}"
    ".im img{image-rendering:pixelated;display:block;border:1px solid #ccc}"
    ".preds{columns:2;margin:.3em 0;padding-left:1.2em}.ok{color:#1a7f37}.bad{color:#c62828}"
    "table{border-collapse:collapse;background:#fff;font-size:.92em}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}"
    ".scroll{overflow-x:auto}code{background:#eee;padding:0 3px}";

FILE *html_open(const char *out, char *tmp, size_t cap) {
    snprintf(tmp, cap, "%s.tmp.%ld", out, (long)getpid());
    return fopen(tmp, "wb");
}

void html_close(FILE *f, const char *tmp, const char *out) {
    if (fflush(f) || ferror(f) || fsync(fileno(f))) { fclose(f); remove(tmp); die("%s: write failed", out); }
    fclose(f);
    if (rename(tmp, out)) { remove(tmp); die("%s: cannot write (rename failed)", out); }
}
