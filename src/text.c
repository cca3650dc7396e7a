/* text.c: text classification data (docs/format.md, "Text datasets"). A directory holds train.tsv and test.tsv,
 * one example a line, label<TAB>text, UTF-8, with \t, \n and \\ escaped in the text. Labels are arbitrary
 * strings; the classes are the distinct labels of train.tsv in byte order, so both splits (and every model
 * trained on the directory) number them alike. An example becomes its first `length` tokens (zero-padded): a
 * C x 1 x length "image" whose values are the token ids (normalisation mean 0, std 1/255), which an `embed`
 * layer turns into vectors. Tokens are bytes (C = 1) or hashed words (C = 2: the id's high and low byte); neither
 * needs a vocabulary to download. */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* one line at a time, any length */
typedef struct { char *s; size_t cap; } linebuf;
static long read_line(FILE *f, linebuf *b) {
    size_t n = 0;
    for (int c; (c = fgetc(f)) != EOF;) {
        if (n + 2 > b->cap) {
            size_t nc = b->cap ? b->cap * 2 : 4096;
            char *t = realloc(b->s, nc);
            if (!t) return -2;
            b->s = t;
            b->cap = nc;
        }
        if (c == '\n') { b->s[n] = 0; return (long)n; }
        b->s[n++] = (char)c;
    }
    if (!n) return -1;
    b->s[n] = 0;
    return (long)n;
}

/* 1 if s[0..n) is valid UTF-8 */
static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int k = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (k < 0 || i + (size_t)k >= n + (k ? 0 : 1)) return 0;
        for (int j = 1; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

/* the labels of train.tsv, distinct, in byte order */
typedef struct { char **name; int n, cap; } labelset;
static void labels_free(labelset *l) {
    for (int i = 0; i < l->n; i++) free(l->name[i]);
    free(l->name);
}
static int label_find(const labelset *l, const char *s) {
    int lo = 0, hi = l->n - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2, c = strcmp(l->name[m], s);
        if (!c) return m;
        if (c < 0) lo = m + 1; else hi = m - 1;
    }
    return -1;
}
static int label_add(labelset *l, const char *s) {
    if (label_find(l, s) >= 0) return 0;
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 16;
        char **t = realloc(l->name, sizeof(char *) * nc);
        if (!t) return -1;
        l->name = t;
        l->cap = nc;
    }
    int at = l->n;
    while (at > 0 && strcmp(l->name[at - 1], s) > 0) at--;
    memmove(l->name + at + 1, l->name + at, sizeof(char *) * (l->n - at));
    if (!(l->name[at] = strdup(s))) return -1;
    l->n++;
    return 0;
}

/* Parses one line in place: the label (up to the first tab) and the unescaped text; an error message if bad. */
static const char *parse_line(char *s, size_t len, char **label, size_t *tlen) {
    if (len && s[len - 1] == '\r') s[--len] = 0;
    char *tab = memchr(s, '\t', len);
    if (!tab) return "no tab between the label and the text";
    *tab = 0;
    if (tab == s) return "empty label";
    if (!utf8_ok((unsigned char *)s, len)) return "not UTF-8";
    *label = s;
    char *r = tab + 1, *w = tab + 1, *end = s + len;
    while (r < end) {
        if (*r != '\\') { *w++ = *r++; continue; }
        if (r + 1 == end) return "a lone backslash at the end of the text";
        char e = r[1];
        *w++ = e == 't' ? '\t' : e == 'n' ? '\n' : e == '\\' ? '\\' : 0;
        if (!w[-1]) return "an unknown escape (only \\t, \\n and \\\\ are)";
        r += 2;
    }
    *tlen = (size_t)(w - (tab + 1));
    return NULL;
}

static ee_status scan_labels(ee_ctx *ctx, const char *path, labelset *l) {
    FILE *f = fopen(path, "rb");
    if (!f) return ee_fail(ctx, EE_ERR_IO, "%s: cannot open", path);
    linebuf b = {0};
    ee_status s = EE_OK;
    long len;
    for (int ln = 1; (len = read_line(f, &b)) != -1; ln++) {
        if (len == -2) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); break; }
        if (!len) continue;
        char *tab = memchr(b.s, '\t', (size_t)len);
        if (!tab || tab == b.s) {
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s:%d: %s", path, ln, tab ? "empty label" : "no tab between the label and the text");
            break;
        }
        *tab = 0;
        if (l->n >= 256 && label_find(l, b.s) < 0) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s:%d: more than 256 labels", path, ln); break; }
        if (label_add(l, b.s)) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); break; }
    }
    free(b.s);
    fclose(f);
    if (!s && !l->n) s = ee_fail(ctx, EE_ERR_FORMAT, "%s: no examples", path);
    return s;
}

ee_status ee_text_classes(ee_ctx *ctx, const char *dir, char *buf, size_t cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s/train.tsv", dir);
    labelset l = {0};
    ee_status s = scan_labels(ctx, path, &l);
    if (!s) {
        size_t len = 0;
        buf[0] = 0;
        for (int i = 0; i < l.n && !s; i++) {
            if (strchr(l.name[i], '\n') || strchr(l.name[i], ',')) {
                s = ee_fail(ctx, EE_ERR_FORMAT, "%s: label '%s' holds a comma", path, l.name[i]);
                break;
            }
            int w = snprintf(buf + len, cap - len, "%s%s", i ? "," : "", l.name[i]);
            if (w < 0 || (size_t)w >= cap - len) { s = ee_fail(ctx, EE_ERR_ARG, "%s: the labels are too long", path); break; }
            len += (size_t)w;
        }
    }
    labels_free(&l);
    return s;
}

static int word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

int ee_text_tokenize(const char *text, size_t len, int kind, int length, uint16_t *ids) {
    const unsigned char *s = (const unsigned char *)text;
    int n = 0;
    if (kind != EE_TOKENS_WORDS) {
        for (; n < length && (size_t)n < len; n++) ids[n] = s[n];
    } else {
        for (size_t i = 0; i < len && n < length;) {
            unsigned char c = s[i];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') { i++; continue; }
            uint32_t h = 2166136261u; /* FNV-1a over the token's bytes, letters lowercased */
            size_t j = i;
            if (word_byte(c))
                while (j < len && word_byte(s[j])) {
                    unsigned char b = s[j++];
                    h = (h ^ (b >= 'A' && b <= 'Z' ? b + 32 : b)) * 16777619u;
                }
            else
                h = (h ^ s[j++]) * 16777619u;
            ids[n++] = (uint16_t)(1 + h % 65535u);
            i = j;
        }
    }
    int found = n;
    for (; n < length; n++) ids[n] = 0;
    return found;
}

ee_status ee_dataset_load_text(ee_ctx *ctx, const char *dir, const char *split, int kind, int length,
                               ee_dataset **out) {
    *out = NULL;
    int C = kind == EE_TOKENS_WORDS ? 2 : 1;
    if (length < 1 || length > 1 << 20) return ee_fail(ctx, EE_ERR_ARG, "text length %d: 1 to %d bytes", length, 1 << 20);
    if (strcmp(split, "train") && strcmp(split, "test"))
        return ee_fail(ctx, EE_ERR_ARG, "split must be train or test, not '%s'", split);
    char tpath[4096], path[4096];
    snprintf(tpath, sizeof tpath, "%s/train.tsv", dir);
    snprintf(path, sizeof path, "%s/%s.tsv", dir, split);
    labelset l = {0};
    ee_status s = scan_labels(ctx, tpath, &l);
    if (s) { labels_free(&l); return s; }
    FILE *f = fopen(path, "rb");
    if (!f) { labels_free(&l); return ee_fail(ctx, EE_ERR_IO, "%s: cannot open", path); }
    int cap = 1024, n = 0;
    size_t per = (size_t)C * length;
    uint8_t *px = malloc((size_t)cap * per), *lab = malloc((size_t)cap);
    uint16_t *ids = malloc(sizeof(uint16_t) * length);
    linebuf b = {0};
    long len;
    for (int ln = 1; !s && (len = read_line(f, &b)) != -1; ln++) {
        if (len == -2) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); break; }
        if (!len) continue;
        char *label;
        size_t tl;
        const char *err = parse_line(b.s, (size_t)len, &label, &tl);
        if (err) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s:%d: %s", path, ln, err); break; }
        int k = label_find(&l, label);
        if (k < 0) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s:%d: label '%.60s' is not one of train.tsv's", path, ln, label); break; }
        if (n == cap) {
            cap *= 2;
            uint8_t *p2 = realloc(px, (size_t)cap * per), *l2 = p2 ? realloc(lab, (size_t)cap) : NULL;
            if (p2) px = p2;
            if (l2) lab = l2;
            if (!p2 || !l2) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); break; }
        }
        if (!px || !lab || !ids) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); break; }
        const char *text = strchr(b.s, 0) + 1;
        ee_text_tokenize(text, tl, kind, length, ids);
        uint8_t *row = px + (size_t)n * per; /* planar: the high bytes, then the low bytes (words) */
        for (int q = 0; q < length; q++) {
            if (C == 2) { row[q] = (uint8_t)(ids[q] >> 8); row[length + q] = (uint8_t)ids[q]; }
            else row[q] = (uint8_t)ids[q];
        }
        lab[n++] = (uint8_t)k;
    }
    free(b.s);
    free(ids);
    if (!s && ferror(f)) s = ee_fail(ctx, EE_ERR_IO, "%s: read error", path);
    fclose(f);
    if (!s && !n) s = ee_fail(ctx, EE_ERR_FORMAT, "%s: no examples", path);
    ee_dataset *ds = s ? NULL : calloc(1, sizeof *ds);
    if (!s && !ds) s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    if (s) { free(px); free(lab); labels_free(&l); return s; }
    ds->n = n; ds->c = C; ds->h = 1; ds->w = length;
    ds->pixels = px;
    ds->labels = lab;
    ds->classes = l.n;
    for (int c = 0; c < C; c++) { ds->mean[c] = 0; ds->std[c] = 1.0f / 255; } /* the values are the ids' bytes */
    labels_free(&l);
    *out = ds;
    return EE_OK;
}
