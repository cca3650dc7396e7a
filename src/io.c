/* io.c: the model file (docs/format.md): magic, version, architecture text, metadata, a directory of named
 * tensors, 64-byte aligned little-endian float32 data and a CRC-32 trailer. Written atomically (temp file,
 * fsync, rename). Loading checks every field and refuses truncated, corrupted, wrong-version and mismatched
 * files with a message that names the file. Tensors named "train.*" carry training state (checkpoints). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "internal.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char MAGIC[8] = {'E', 'E', 'N', 'N', 'M', 'O', 'D', 'L'};
static const char TRAILER[8] = {'E', 'E', 'N', 'N', '_', 'E', 'N', 'D'};
#define FORMAT_VERSION 1u

uint32_t ee_crc32(uint32_t crc, const void *buf, size_t len) {
    while (len) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = (uint32_t)crc32(crc, buf, chunk);
        buf = (const char *)buf + chunk;
        len -= chunk;
    }
    return crc;
}

typedef struct { uint8_t *p; size_t len, cap; int oom; } wbuf;
static void put(wbuf *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t nc = (b->len + n) * 2 + 4096;
        uint8_t *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    if (data) memcpy(b->p + b->len, data, n);
    else memset(b->p + b->len, 0, n);
    b->len += n;
}
static void put32(wbuf *b, uint32_t v) { uint8_t x[4] = {v, v >> 8, v >> 16, v >> 24}; put(b, x, 4); }
static void put64(wbuf *b, uint64_t v) { put32(b, (uint32_t)v); put32(b, (uint32_t)(v >> 32)); }
static void putstr(wbuf *b, const char *s) { put32(b, (uint32_t)strlen(s)); put(b, s, strlen(s)); }

/* removes PATH.tmp.PID files whose writer is gone (a killed run): they can never be renamed into place */
static void remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4200], prefix[4300];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash && slash == path) snprintf(dir, sizeof dir, "/");
    snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : path);
    size_t np = strlen(prefix);
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, np)) continue;
        char *end;
        long pid = strtol(e->d_name + np, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) {
            char full[8400];
            snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
            remove(full);
        }
    }
    closedir(d);
}

ee_status ee_io_write(ee_ctx *ctx, const ee_net *net, const ee_meta *meta, int nmeta, const io_tensor *extra,
                      int nextra, const char *path) {
    if (net->sealed) return ee_net_check_unsealed(ctx, net, "save the network");
    wbuf b = {0};
    put(&b, MAGIC, 8);
    put32(&b, FORMAT_VERSION);
    putstr(&b, net->arch_text);
    /* metadata: the network's own, then the caller's (which wins on load) */
    put32(&b, (uint32_t)(net->nmeta + nmeta));
    for (int i = 0; i < net->nmeta; i++) { putstr(&b, net->meta_keys[i]); putstr(&b, net->meta_vals[i]); }
    for (int i = 0; i < nmeta; i++) { putstr(&b, meta[i].key); putstr(&b, meta[i].value); }
    int nt = net->ntens + nextra;
    io_tensor *all = calloc(nt + 1, sizeof *all);
    if (!all) { free(b.p); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < net->ntens; i++) {
        const ee_tensor *t = &net->tens[i];
        all[i] = (io_tensor){t->name, (t->is_state ? net->state : net->params) + t->off, t->count, t->ndim,
                             {t->dims[0], t->dims[1], t->dims[2], t->dims[3]}};
    }
    for (int i = 0; i < nextra; i++) all[net->ntens + i] = extra[i];
    put32(&b, (uint32_t)nt);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        putstr(&b, all[i].name);
        put32(&b, (uint32_t)all[i].ndim);
        for (int d = 0; d < all[i].ndim; d++) put32(&b, (uint32_t)all[i].dims[d]);
        put64(&b, off);
        put64(&b, all[i].count);
        off += (all[i].count * 4 + 63) / 64 * 64;
    }
    put(&b, NULL, (64 - b.len % 64) % 64);
    for (int i = 0; i < nt; i++) {
        put(&b, all[i].data, all[i].count * 4); /* little-endian hosts only (x86-64, arm64) */
        put(&b, NULL, (64 - all[i].count * 4 % 64) % 64);
    }
    free(all);
    if (b.oom) { free(b.p); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    put32(&b, ee_crc32(0, b.p, b.len));
    put(&b, TRAILER, 8);
    /* a symbolic link is written through to its target, and an existing file keeps its permissions */
    char dst[4200], tmp[4300];
    char *real = realpath(path, NULL);
    snprintf(dst, sizeof dst, "%s", real ? real : path);
    free(real);
    struct stat old;
    int have_old = stat(dst, &old) == 0;
    remove_stale_temps(dst);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) { free(b.p); return ee_fail(ctx, EE_ERR_IO, "%s: cannot create file", tmp); }
    int ok = fwrite(b.p, 1, b.len, f) == b.len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (ok && have_old) ok = fchmod(fileno(f), old.st_mode & 07777) == 0;
    ok = (fclose(f) == 0) && ok;
    free(b.p);
    if (!ok || rename(tmp, dst) != 0) {
        remove(tmp);
        return ee_fail(ctx, EE_ERR_IO, "%s: write failed (disk full or read-only?)", path);
    }
    return EE_OK;
}

ee_status ee_net_save(ee_ctx *ctx, const ee_net *net, const ee_meta *meta, int nmeta, const char *path) {
    return ee_io_write(ctx, net, meta, nmeta, NULL, 0, path);
}

/* ---------------------------------------------------------------- reading */
typedef struct { const uint8_t *p; size_t len, pos; int bad; } rbuf;
static const uint8_t *take(rbuf *r, size_t n) {
    if (r->bad || n > r->len - r->pos) { r->bad = 1; return NULL; }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}
static uint32_t get32(rbuf *r) {
    const uint8_t *q = take(r, 4);
    return q ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24 : 0;
}
static uint64_t get64(rbuf *r) { uint64_t lo = get32(r); return lo | (uint64_t)get32(r) << 32; }
static char *getstr(rbuf *r, size_t maxlen) {
    uint32_t n = get32(r);
    if (n > maxlen) { r->bad = 1; return NULL; }
    const uint8_t *q = take(r, n);
    if (!q) return NULL;
    char *s = malloc(n + 1);
    if (!s) { r->bad = 1; return NULL; }
    memcpy(s, q, n);
    s[n] = 0;
    if (strlen(s) != n) { free(s); r->bad = 1; return NULL; }
    return s;
}

typedef struct { char *name; int ndim, dims[4]; uint64_t off, count; } dir_entry;

static ee_status read_file(ee_ctx *ctx, const char *path, uint8_t **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ee_fail(ctx, EE_ERR_IO, "%s: cannot open", path);
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
        fclose(f);
        return ee_fail(ctx, EE_ERR_IO, "%s: %s", path, S_ISDIR(st.st_mode) ? "is a directory, not a model file"
                                                                           : "is not a regular file");
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = sz > 0 ? malloc(sz) : NULL;
    if (sz <= 0 || !buf || fread(buf, 1, sz, f) != (size_t)sz) {
        fclose(f);
        free(buf);
        return ee_fail(ctx, sz == 0 ? EE_ERR_FORMAT : EE_ERR_IO, "%s: %s", path, sz == 0 ? "empty file" : "cannot read");
    }
    fclose(f);
    *data = buf;
    *len = (size_t)sz;
    return EE_OK;
}

/* Loads the file; if net_out is NULL, fills `extra` (name match) into dst instead. */
ee_status ee_io_read(ee_ctx *ctx, const char *path, ee_net **net_out, const char *extra_name, float *extra_dst,
                     size_t extra_count) {
    uint8_t *buf = NULL;
    size_t len = 0;
    ee_status s = read_file(ctx, path, &buf, &len);
    if (s) return s;
    ee_net *net = NULL;
    dir_entry *dir = NULL;
    uint32_t nt = 0;
    char *arch = NULL;
    rbuf r = {buf, len, 0, 0};
    if (len < 8 || memcmp(buf, MAGIC, 8)) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s: not an eenn model file (bad magic)", path); goto done; }
    r.pos = 8;
    if (len < 12 + 12) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s: truncated (%zu bytes: shorter than any model file)", path, len); goto done; }
    uint32_t ver = get32(&r);
    if (ver != FORMAT_VERSION) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: format version %u, this eenn reads version %u", path, ver, FORMAT_VERSION);
        goto done;
    }
    if (memcmp(buf + len - 8, TRAILER, 8)) {
        /* an end marker further in with bytes after it: something was appended, not cut off */
        size_t at = 0;
        for (size_t i = len - 8; i-- > 12 && !at;)
            if (!memcmp(buf + i, TRAILER, 8) && ee_crc32(0, buf, i - 4) ==
                    ((uint32_t)buf[i - 4] | (uint32_t)buf[i - 3] << 8 | (uint32_t)buf[i - 2] << 16 | (uint32_t)buf[i - 1] << 24))
                at = i;
        if (at) s = ee_fail(ctx, EE_ERR_FORMAT, "%s: %zu bytes of trailing data after the end marker", path, len - at - 8);
        else s = ee_fail(ctx, EE_ERR_FORMAT, "%s: truncated (no end marker; the file is incomplete)", path);
        goto done;
    }
    uint32_t want = (uint32_t)buf[len - 12] | (uint32_t)buf[len - 11] << 8 | (uint32_t)buf[len - 10] << 16 |
                    (uint32_t)buf[len - 9] << 24;
    if (ee_crc32(0, buf, len - 12) != want) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: checksum mismatch (the file is corrupted)", path);
        goto done;
    }
    r.len = len - 12;
    arch = getstr(&r, 1 << 24);
    if (!arch) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s: bad architecture section", path); goto done; }
    if (net_out) {
        char src[4300];
        snprintf(src, sizeof src, "%s (architecture)", path);
        if ((s = ee_net_from_text(ctx, arch, src, &net))) goto done;
    }
    uint32_t nm = get32(&r);
    if (nm > 100000) r.bad = 1;
    for (uint32_t i = 0; i < nm && !r.bad; i++) {
        char *k = getstr(&r, 1 << 20), *v = getstr(&r, 1 << 24);
        if (k && v && net && (s = ee_net_set_meta(ctx, net, k, v))) { free(k); free(v); goto done; }
        free(k);
        free(v);
    }
    nt = get32(&r);
    if (nt > 1000000) r.bad = 1;
    dir = r.bad ? NULL : calloc(nt + 1, sizeof *dir);
    for (uint32_t i = 0; i < nt && dir && !r.bad; i++) {
        dir[i].name = getstr(&r, 200);
        dir[i].ndim = (int)get32(&r);
        if (dir[i].ndim < 0 || dir[i].ndim > 4) { r.bad = 1; break; }
        for (int d = 0; d < dir[i].ndim; d++) dir[i].dims[d] = (int)get32(&r);
        dir[i].off = get64(&r);
        dir[i].count = get64(&r);
    }
    if (r.bad || !dir) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s: malformed header", path); goto done; }
    size_t data0 = (r.pos + 63) / 64 * 64;
    for (uint32_t i = 0; i < nt; i++)
        if (dir[i].off > r.len || data0 + dir[i].off + dir[i].count * 4 > r.len || dir[i].count > (1ull << 40)) {
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s: tensor '%s' lies outside the file", path, dir[i].name);
            goto done;
        }
    if (!net_out) {
        for (uint32_t i = 0; i < nt; i++)
            if (!strcmp(dir[i].name, extra_name)) {
                if (dir[i].count != extra_count) {
                    s = ee_fail(ctx, EE_ERR_FORMAT, "%s: '%s' has %llu values, expected %zu", path, extra_name,
                                (unsigned long long)dir[i].count, extra_count);
                    goto done;
                }
                memcpy(extra_dst, buf + data0 + dir[i].off, extra_count * 4);
                goto done;
            }
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: no '%s' in this file", path, extra_name);
        goto done;
    }
    /* every tensor of the network must be present with the same shape, and nothing else but train.* */
    for (int t = 0; t < net->ntens && !s; t++) {
        ee_tensor *tt = &net->tens[t];
        uint32_t i = 0;
        while (i < nt && strcmp(dir[i].name, tt->name)) i++;
        if (i == nt) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s: tensor '%s' is missing", path, tt->name); break; }
        int same = dir[i].ndim == tt->ndim && dir[i].count == tt->count;
        for (int d = 0; d < tt->ndim && same; d++) same = dir[i].dims[d] == tt->dims[d];
        if (!same) { s = ee_fail(ctx, EE_ERR_FORMAT, "%s: tensor '%s' has the wrong shape for this architecture", path, tt->name); break; }
        memcpy((tt->is_state ? net->state : net->params) + tt->off, buf + data0 + dir[i].off, tt->count * 4);
    }
    for (uint32_t i = 0; i < nt && !s; i++)
        if (strncmp(dir[i].name, "train.", 6) && ee_net_find_tensor(net, dir[i].name) < 0)
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s: tensor '%s' does not belong to this architecture", path, dir[i].name);
    /* the values themselves: finite weights and statistics, a usable normalisation */
    for (int t = 0; t < net->ntens && !s; t++) {
        const ee_tensor *tt = &net->tens[t];
        const float *v = (tt->is_state ? net->state : net->params) + tt->off;
        for (size_t i = 0; i < tt->count; i++)
            if (!isfinite(v[i])) {
                s = ee_fail(ctx, EE_ERR_FORMAT, "%s: tensor '%s' holds %s at index %zu", path, tt->name,
                            isnan(v[i]) ? "NaN" : "an infinite value", i);
                break;
            }
    }
    for (int k = 0; k < 2 && !s; k++) {
        const char *key = k ? "data.std" : "data.mean", *v = ee_net_meta(net, key);
        if (!v) continue;
        float x[3];
        int got = sscanf(v, "%f,%f,%f", &x[0], &x[1], &x[2]);
        int ok = got == 1 || got == 3;
        /* only the network's input channels are used (a 1-channel model stores "m,0,0") */
        for (int j = 0; j < got && j < net->in.c && ok; j++) ok = isfinite(x[j]) && (!k || x[j] > 0);
        if (!ok) s = ee_fail(ctx, EE_ERR_FORMAT, "%s: %s '%s' is not %s", path, key, v,
                             k ? "a positive scale per channel" : "a number per channel");
    }
    if (!s) { net->params_version++; net->state_version++; }
done:
    for (uint32_t i = 0; dir && i < nt; i++) free(dir[i].name);
    free(dir);
    free(arch);
    free(buf);
    if (s) { ee_net_free(net); return s; }
    if (net_out) *net_out = net;
    return EE_OK;
}

ee_status ee_net_load(ee_ctx *ctx, const char *path, ee_net **out) {
    *out = NULL;
    return ee_io_read(ctx, path, out, NULL, NULL, 0);
}
