/* svg.h: inline SVG charts (svg.c) for eenn report and eenn compare. */
#ifndef EENN_CLI_SVG_H
#define EENN_CLI_SVG_H
#include "common.h"
#include <stdio.h>

extern const char *const palette[16];
extern const char *const html_css; /* the stylesheet of eenn's HTML pages */
typedef struct {
    FILE *f;
    double x0, x1, y0, y1;
    int W, H, L, R, T, B;
    int nleg;
    double legx, legy;
} plot;
void esc(FILE *f, const char *s);          /* s with HTML's special characters escaped */
double PX(const plot *p, double x);
double PY(const plot *p, double y);
/* a <figure> with a title and a one-sentence caption; plot_end closes it */
void figure(FILE *f, const char *title, const char *caption);
double nice_step(double range);
/* the frame: grid, ticks at round numbers and axis titles, legends in a band above. xcat: category labels for
 * x = 0..ncat-1 (NULL: numeric x, its range widened to round numbers). */
void plot_begin(plot *p, FILE *f, double x0, double x1, double y0, double y1, const char *xlabel, const char *ylabel,
                const char *const *xcat, int ncat);
/* the same with room for legend_rows rows of legend above the plot */
void plot_begin_rows(plot *p, FILE *f, double x0, double x1, double y0, double y1, const char *xlabel,
                     const char *ylabel, const char *const *xcat, int ncat, int legend_rows);
void legend(plot *p, const char *color, const char *label, int dashed);
void line(plot *p, const double *x, const double *y, int n, const char *color, int dots, int dashed);
void bars(plot *p, const double *y, int n, int k, int nb, const char *color, int labels);
void marker(plot *p, double x, double y, const char *color, const char *label);
void plot_end(plot *p, const char *alt);
/* an HTML file written atomically: opened as OUT.tmp.PID (its name in tmp), renamed over out on close; dies on
 * failure */
FILE *html_open(const char *out, char *tmp, size_t cap);
void html_close(FILE *f, const char *tmp, const char *out);
#endif
