/* data.c: datasets: IDX (MNIST, Fashion-MNIST; gzipped or raw, through zlib) and the CIFAR-10/100 binary
 * format, a validation split, per-dataset normalisation, augmentation (random crop with zero padding,
 * horizontal flip) and batches written as normalised NHWC floats. Every file is checked against its format:
 * magic numbers, dimensions, counts, label ranges and truncation give errors that name the file. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <math.h>
#include <stb/stb_image.h>
#include <zlib.h>

static double sqrt_pos(double v) { return v > 0 ? sqrt(v) : 0; }

/* the most pixel data an IDX image file may announce (8 GiB), and the largest CIFAR batch file (CIFAR-100's
 * train.bin is 50,000 records of 3,074 bytes); docs/format.md */
#define IDX_MAX_BYTES 8589934592.0
#define CIFAR_MAX_BYTES ((size_t)60000 * 3074)

/* Reads a whole (possibly gzipped) file, but never more than max + 1 bytes of it: a file that inflates past
 * what its header announces stops there (len = max + 1 tells the caller), so a small compressed file cannot
 * make eenn inflate gigabytes. */
static ee_status read_all(ee_ctx *ctx, const char *path, uint8_t **data, size_t *len, size_t max) {
    gzFile f = gzopen(path, "rb");
    if (!f) return ee_fail(ctx, EE_ERR_IO, "%s: cannot open", path);
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) { gzclose(f); return ee_fail(ctx, EE_ERR_NOMEM, "%s: out of memory", path); }
        int r = gzread(f, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
        if (r < 0) {
            int e;
            const char *m = gzerror(f, &e);
            ee_status s = ee_fail(ctx, EE_ERR_FORMAT, "%s: corrupted compressed data (%s)", path, m);
            free(buf); gzclose(f);
            return s;
        }
        if (r == 0) break;
        n += r;
        if (n > max) { /* more than announced: stop reading */
            gzclose(f);
            *data = buf;
            *len = n;
            return EE_OK;
        }
        if (n == cap) { uint8_t *nb = realloc(buf, cap *= 2); if (!nb) free(buf); buf = nb; }
    }
    /* a truncated gzip stream reads as a short file: zlib reports it on close */
    int e = gzclose_r(f);
    if (e != Z_OK && e != Z_BUF_ERROR) { free(buf); return ee_fail(ctx, EE_ERR_FORMAT, "%s: truncated or corrupted gzip data", path); }
    if (e == Z_BUF_ERROR) { free(buf); return ee_fail(ctx, EE_ERR_FORMAT, "%s: truncated gzip stream", path); }
    *data = buf;
    *len = n;
    return EE_OK;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static ee_dataset *ds_new(int n, int c, int h, int w) {
    ee_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return NULL;
    ds->n = n; ds->c = c; ds->h = h; ds->w = w;
    ds->pixels = malloc((size_t)n * c * h * w + 1);
    ds->labels = malloc((size_t)n + 1);
    if (!ds->pixels || !ds->labels) { ee_dataset_free(ds); return NULL; }
    for (int i = 0; i < c && i < 4; i++) { ds->mean[i] = 0; ds->std[i] = 1; }
    return ds;
}
void ee_dataset_free(ee_dataset *ds) {
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
    free(ds);
}

static void set_classes(ee_dataset *ds) {
    int mx = 0;
    for (int i = 0; i < ds->n; i++) if (ds->labels[i] > mx) mx = ds->labels[i];
    ds->classes = mx + 1 < 10 ? 10 : mx + 1;
}

/* the first n bytes of a (possibly gzipped) file, for its header; returns how many were read */
static int peek(const char *path, uint8_t *buf, int n) {
    gzFile f = gzopen(path, "rb");
    if (!f) return -1;
    int r = gzread(f, buf, (unsigned)n);
    gzclose(f);
    return r;
}

ee_status ee_dataset_load_idx(ee_ctx *ctx, const char *images, const char *labels, ee_dataset **out) {
    *out = NULL;
    uint8_t *im = NULL, *lb = NULL, hi[16], hl[8];
    size_t nim, nlb;
    /* the headers first: the files are read only as far as they announce (and one byte more) */
    int pi = peek(images, hi, 16), pl = peek(labels, hl, 8);
    size_t max_im = pi == 16 && be32(hi) == 0x803 && be32(hi + 8) <= 4096 && be32(hi + 12) <= 4096 &&
                            (double)be32(hi + 4) * be32(hi + 8) * be32(hi + 12) <= IDX_MAX_BYTES
                        ? 16 + (size_t)be32(hi + 4) * be32(hi + 8) * be32(hi + 12) : 16;
    size_t max_lb = pl == 8 && be32(hl) == 0x801 ? 8 + (size_t)be32(hl + 4) : 8;
    ee_status s = read_all(ctx, images, &im, &nim, max_im);
    if (s) return s;
    if ((s = read_all(ctx, labels, &lb, &nlb, max_lb))) { free(im); return s; }
    ee_dataset *ds = NULL;
    if (nim < 16 || be32(im) != 0x803) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: not an IDX image file (magic 0x%08x, expected 0x00000803)", images,
                    nim >= 4 ? be32(im) : 0);
    } else if (nlb < 8 || be32(lb) != 0x801) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: not an IDX label file (magic 0x%08x, expected 0x00000801)", labels,
                    nlb >= 4 ? be32(lb) : 0);
    } else {
        uint32_t n = be32(im + 4), h = be32(im + 8), w = be32(im + 12), nl = be32(lb + 4);
        if (!n || !h || !w || h > 4096 || w > 4096 || n > 100000000u || (double)n * h * w > IDX_MAX_BYTES)
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s: implausible dimensions %ux%ux%u", images, n, h, w);
        else if (nim != 16 + (size_t)n * h * w)
            s = nim < 16 + (size_t)n * h * w
                    ? ee_fail(ctx, EE_ERR_FORMAT, "%s: truncated: header says %u images of %ux%u (%zu bytes), file has %zu",
                              images, n, h, w, 16 + (size_t)n * h * w, nim)
                    : ee_fail(ctx, EE_ERR_FORMAT, "%s: trailing bytes: header says %u images of %ux%u (%zu bytes), the file "
                              "has more (reading stopped there)", images, n, h, w, 16 + (size_t)n * h * w);
        else if (nl != n)
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s: %u labels for %u images in %s", labels, nl, n, images);
        else if (nlb != 8 + (size_t)n)
            s = nlb < 8 + (size_t)n
                    ? ee_fail(ctx, EE_ERR_FORMAT, "%s: truncated: header says %u labels, file has %zu bytes of them", labels,
                              n, nlb - 8)
                    : ee_fail(ctx, EE_ERR_FORMAT, "%s: trailing bytes: header says %u labels, the file has more", labels, n);
        else if (!(ds = ds_new(n, 1, h, w)))
            s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
        else {
            memcpy(ds->pixels, im + 16, (size_t)n * h * w);
            memcpy(ds->labels, lb + 8, n);
            set_classes(ds);
            if (ds->classes > 256) s = ee_fail(ctx, EE_ERR_FORMAT, "%s: label out of range", labels);
        }
    }
    free(im);
    free(lb);
    if (s) { ee_dataset_free(ds); return s; }
    *out = ds;
    return EE_OK;
}

ee_status ee_dataset_load_cifar(ee_ctx *ctx, const char *const *files, int nfiles, int cifar100_label,
                                ee_dataset **out) {
    *out = NULL;
    int lbytes = cifar100_label ? 2 : 1;
    size_t rec = lbytes + 3072, total = 0;
    uint8_t **bufs = calloc(nfiles, sizeof *bufs);
    size_t *lens = calloc(nfiles, sizeof *lens);
    ee_status s = bufs && lens ? EE_OK : ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nfiles && !s; i++) {
        if ((s = read_all(ctx, files[i], &bufs[i], &lens[i], CIFAR_MAX_BYTES))) break;
        if (lens[i] > CIFAR_MAX_BYTES) {
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s: larger than any CIFAR batch file (more than %zu bytes)", files[i],
                        CIFAR_MAX_BYTES);
            break;
        }
        if (lens[i] == 0 || lens[i] % rec)
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s: %zu bytes is not a whole number of %zu-byte CIFAR-%s records (truncated?)",
                        files[i], lens[i], rec, cifar100_label ? "100" : "10");
        total += lens[i] / rec;
    }
    ee_dataset *ds = NULL;
    if (!s && !(ds = ds_new((int)total, 3, 32, 32))) s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int i = 0; i < nfiles && !s; i++)
        for (size_t r = 0; r < lens[i] / rec && !s; r++, k++) {
            const uint8_t *p = bufs[i] + r * rec;
            int label = cifar100_label == 2 ? p[0] : p[lbytes - 1];
            int limit = cifar100_label == 0 ? 10 : cifar100_label == 1 ? 100 : 20;
            if (label >= limit)
                s = ee_fail(ctx, EE_ERR_FORMAT, "%s: record %zu has label %d, CIFAR-%s has %d classes", files[i], r, label,
                            cifar100_label ? "100" : "10", limit);
            ds->labels[k] = (uint8_t)label;
            memcpy(ds->pixels + k * 3072, p + lbytes, 3072);
        }
    if (ds) ds->classes = cifar100_label == 0 ? 10 : cifar100_label == 1 ? 100 : 20;
    for (int i = 0; i < nfiles && bufs; i++) free(bufs[i]);
    free(bufs);
    free(lens);
    if (s) { ee_dataset_free(ds); return s; }
    *out = ds;
    return EE_OK;
}

static int exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

int ee_dataset_norm_preset(ee_dataset *ds, const char *name) {
    static const struct { const char *name; float mean[3], std[3]; } presets[] = {
        {"fashion-mnist", {0.2860f}, {0.3530f}},
        {"mnist", {0.1307f}, {0.3081f}},
        /* the SDN reference normalises CIFAR-10 with ImageNet statistics (a quirk kept on purpose) */
        {"cifar10", {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}},
        {"cifar100", {0.507f, 0.487f, 0.441f}, {0.267f, 0.256f, 0.276f}},
        {"tinyimagenet", {0.4802f, 0.4481f, 0.3975f}, {0.2302f, 0.2265f, 0.2262f}},
        {"svhn", {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}}, /* as the EENets code */
    };
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcmp(name, presets[i].name)) {
            for (int c = 0; c < ds->c && c < 3; c++) { ds->mean[c] = presets[i].mean[c]; ds->std[c] = presets[i].std[c]; }
            return 1;
        }
    return 0;
}

/* ---------------------------------------------------------------- Tiny ImageNet (tiny-imagenet-200 layout) */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* decodes one 64x64 RGB JPEG into (3, 64, 64) planes */
static ee_status tin_image(ee_ctx *ctx, const char *path, uint8_t *dst) {
    int w, h, ch;
    unsigned char *px = stbi_load(path, &w, &h, &ch, 3);
    if (!px) return ee_fail(ctx, EE_ERR_FORMAT, "%s: cannot decode the image (%s)", path, stbi_failure_reason());
    if (w != 64 || h != 64) { stbi_image_free(px); return ee_fail(ctx, EE_ERR_FORMAT, "%s: %dx%d, Tiny ImageNet images are 64x64", path, w, h); }
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 64 * 64; i++) dst[c * 4096 + i] = px[i * 3 + c];
    stbi_image_free(px);
    return EE_OK;
}

static ee_status tin_add(ee_ctx *ctx, ee_dataset *ds, int *cap, const char *path, int label) {
    if (ds->n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        uint8_t *p = realloc(ds->pixels, (size_t)*cap * 12288), *l = p ? realloc(ds->labels, *cap) : NULL;
        if (p) ds->pixels = p;
        if (l) ds->labels = l;
        if (!p || !l) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    }
    ee_status s = tin_image(ctx, path, ds->pixels + (size_t)ds->n * 12288);
    if (!s) ds->labels[ds->n++] = (uint8_t)label;
    return s;
}

/* train: DIR/train/WNID/images/NAME.JPEG; test: the official val set, DIR/val/images/NAME.JPEG labelled by
 * DIR/val/val_annotations.txt (the SDN reference's test set). Classes are the sorted lines of wnids.txt.
 * Labels are stored in a byte: the 200 classes fit. */
ee_status ee_dataset_load_tinyimagenet(ee_ctx *ctx, const char *dir, int train, ee_dataset **out) {
    *out = NULL;
    char path[4096], line[1024];
    snprintf(path, sizeof path, "%s/wnids.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return ee_fail(ctx, EE_ERR_IO, "%s: cannot open", path);
    char *wn[256];
    int nw = 0;
    ee_status s = EE_OK;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        if (nw == 256) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s: more than 256 classes", path); break; }
        wn[nw++] = strdup(line);
    }
    fclose(f);
    if (!s && nw < 2) s = ee_fail(ctx, EE_ERR_FORMAT, "%s: fewer than 2 classes", path);
    qsort(wn, nw, sizeof *wn, cmp_str);
    ee_dataset *ds = calloc(1, sizeof *ds);
    int cap = 0;
    if (!ds) s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    if (!s && train) {
        for (int k = 0; k < nw && !s; k++) {
            snprintf(path, sizeof path, "%s/train/%s/images", dir, wn[k]);
            DIR *d = opendir(path);
            if (!d) { s = ee_fail(ctx, EE_ERR_IO, "%s: cannot open the directory", path); break; }
            char **names = NULL;
            int nn = 0, nc = 0;
            for (struct dirent *e; (e = readdir(d));) {
                if (e->d_name[0] == '.') continue;
                if (nn == nc) { nc = nc ? nc * 2 : 512; char **t = realloc(names, nc * sizeof *t); if (!t) break; names = t; }
                names[nn++] = strdup(e->d_name);
            }
            closedir(d);
            qsort(names, nn, sizeof *names, cmp_str); /* a fixed order, whatever the file system's */
            for (int i = 0; i < nn; i++) {
                char img[4400];
                snprintf(img, sizeof img, "%s/%s", path, names[i]);
                if (!s) s = tin_add(ctx, ds, &cap, img, k);
                free(names[i]);
            }
            free(names);
        }
    } else if (!s) {
        snprintf(path, sizeof path, "%s/val/val_annotations.txt", dir);
        f = fopen(path, "r");
        if (!f) s = ee_fail(ctx, EE_ERR_IO, "%s: cannot open", path);
        for (int ln = 1; f && !s && fgets(line, sizeof line, f); ln++) {
            char *sv = NULL, *file = strtok_r(line, "\t", &sv), *id = strtok_r(NULL, "\t\r\n", &sv);
            if (!file || !id) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s:%d: expected 'FILE<tab>WNID...'", path, ln); break; }
            int k = -1;
            for (int j = 0; j < nw; j++) if (!strcmp(wn[j], id)) k = j;
            if (k < 0) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s:%d: class '%s' is not in wnids.txt", path, ln, id); break; }
            char img[4400];
            snprintf(img, sizeof img, "%s/val/images/%s", dir, file);
            s = tin_add(ctx, ds, &cap, img, k);
        }
        if (f) fclose(f);
    }
    for (int k = 0; k < nw; k++) free(wn[k]);
    if (!s && ds->n == 0) s = ee_fail(ctx, EE_ERR_FORMAT, "%s: no images", dir);
    if (s) { ee_dataset_free(ds); return s; }
    ds->c = 3; ds->h = 64; ds->w = 64;
    ds->classes = nw;
    ee_dataset_norm_preset(ds, "tinyimagenet");
    *out = ds;
    return EE_OK;
}

ee_status ee_dataset_load_dir(ee_ctx *ctx, const char *dir, const char *split, ee_dataset **out) {
    *out = NULL;
    int train = !strcmp(split, "train");
    if (!train && strcmp(split, "test")) return ee_fail(ctx, EE_ERR_ARG, "split must be train or test, not '%s'", split);
    char a[4096], b[4096];
    const char *pre = train ? "train" : "t10k";
    for (int gz = 1; gz >= 0; gz--) {
        snprintf(a, sizeof a, "%s/%s-images-idx3-ubyte%s", dir, pre, gz ? ".gz" : "");
        snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte%s", dir, pre, gz ? ".gz" : "");
        if (exists(a) && exists(b)) {
            ee_status s = ee_dataset_load_idx(ctx, a, b, out);
            if (s) return s;
            ee_dataset_norm_preset(*out, strstr(dir, "fashion") ? "fashion-mnist" : "mnist");
            return EE_OK;
        }
    }
    snprintf(a, sizeof a, "%s/data_batch_1.bin", dir);
    if (exists(a)) {
        char names[6][4096];
        const char *files[6];
        int nf = 0;
        if (train)
            for (int i = 1; i <= 5; i++) { snprintf(names[nf], sizeof names[nf], "%s/data_batch_%d.bin", dir, i); files[nf] = names[nf]; nf++; }
        else { snprintf(names[0], sizeof names[0], "%s/test_batch.bin", dir); files[0] = names[0]; nf = 1; }
        ee_status s = ee_dataset_load_cifar(ctx, files, nf, 0, out);
        if (!s) ee_dataset_norm_preset(*out, "cifar10");
        return s;
    }
    snprintf(a, sizeof a, "%s/wnids.txt", dir);
    if (exists(a)) return ee_dataset_load_tinyimagenet(ctx, dir, train, out);
    snprintf(a, sizeof a, "%s/%s_32x32.mat", dir, train ? "train" : "test");
    if (exists(a)) return ee_dataset_load_svhn(ctx, a, out);
    snprintf(a, sizeof a, "%s/train.tsv", dir);
    if (exists(a))
        return ee_dataset_load_text(ctx, dir, split, ctx->text_tokens, ctx->text_length ? ctx->text_length : EE_TEXT_LENGTH,
                                    out);
    snprintf(a, sizeof a, "%s/%s.bin", dir, train ? "train" : "test");
    if (exists(a)) {
        const char *files[1] = {a};
        ee_status s = ee_dataset_load_cifar(ctx, files, 1, 1, out);
        if (!s) ee_dataset_norm_preset(*out, "cifar100");
        return s;
    }
    return ee_fail(ctx, EE_ERR_IO, "%s: no dataset found (expected IDX files %s-images-idx3-ubyte[.gz], CIFAR binaries, "
                   "Tiny ImageNet's wnids.txt, SVHN's train_32x32.mat or text's train.tsv)",
                   dir, pre);
}

ee_status ee_dataset_split(ee_ctx *ctx, ee_dataset *ds, int count, ee_dataset **tail) {
    *tail = NULL;
    if (count <= 0 || count >= ds->n)
        return ee_fail(ctx, EE_ERR_ARG, "validation split of %d must be between 1 and %d", count, ds->n - 1);
    ee_dataset *t = ds_new(count, ds->c, ds->h, ds->w);
    if (!t) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    size_t img = (size_t)ds->c * ds->h * ds->w;
    int keep = ds->n - count;
    memcpy(t->pixels, ds->pixels + keep * img, count * img);
    memcpy(t->labels, ds->labels + keep, count);
    t->classes = ds->classes;
    memcpy(t->mean, ds->mean, sizeof t->mean);
    memcpy(t->std, ds->std, sizeof t->std);
    ds->n = keep;
    *tail = t;
    return EE_OK;
}

void ee_dataset_compute_norm(ee_dataset *ds) {
    size_t hw = (size_t)ds->h * ds->w;
    for (int c = 0; c < ds->c && c < 4; c++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < ds->n; i++) {
            const uint8_t *p = ds->pixels + ((size_t)i * ds->c + c) * hw;
            for (size_t q = 0; q < hw; q++) { double v = p[q] / 255.0; s += v; s2 += v * v; }
        }
        double cnt = (double)ds->n * hw, m = s / cnt;
        ds->mean[c] = (float)m;
        ds->std[c] = (float)sqrt_pos(s2 / cnt - m * m);
    }
}

void ee_shuffle(ee_ctx *ctx, int *perm, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(ee_rng_next(ctx) % (uint64_t)(i + 1));
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
}

int ee_augment_draws(const ee_augment *aug) {
    return aug ? (aug->flip ? 1 : 0) + (aug->crop_pad > 0 ? 2 : 0) : 0;
}

void ee_dataset_batch(ee_ctx *ctx, const ee_dataset *ds, const int *idx, int n, const ee_augment *aug, float *x,
                      uint8_t *y) {
    int C = ds->c, H = ds->h, W = ds->w;
    float scale[4], shift[4], pad_val[4];
    for (int c = 0; c < C && c < 4; c++) {
        scale[c] = 1.0f / (255.0f * ds->std[c]);
        shift[c] = -ds->mean[c] / ds->std[c];
        pad_val[c] = shift[c];
    }
    for (int i = 0; i < n; i++) {
        int dy = 0, dx = 0, flip = 0;
        if (aug && aug->flip) flip = ee_rng_next(ctx) & 1;
        if (aug && aug->crop_pad > 0) {
            int span = 2 * aug->crop_pad + 1;
            dy = (int)(ee_rng_next(ctx) % span) - aug->crop_pad;
            dx = (int)(ee_rng_next(ctx) % span) - aug->crop_pad;
        }
        const uint8_t *src = ds->pixels + (size_t)idx[i] * C * H * W;
        float *dst = x + (size_t)i * H * W * C;
        for (int r = 0; r < H; r++)
            for (int q = 0; q < W; q++) {
                int sr = r + dy, sq = (flip ? W - 1 - q : q) + dx;
                float *d = dst + ((size_t)r * W + q) * C;
                int inside = sr >= 0 && sr < H && sq >= 0 && sq < W;
                for (int c = 0; c < C; c++)
                    d[c] = inside ? src[((size_t)c * H + sr) * W + sq] * scale[c] + shift[c] : pad_val[c];
            }
        if (y) y[i] = ds->labels[idx[i]];
    }
}
