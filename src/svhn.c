/* svhn.c: the SVHN cropped-digit files (train_32x32.mat, test_32x32.mat, extra_32x32.mat): MATLAB v5 files read
 * through libmatio. X is uint8 32 x 32 x 3 x N in MATLAB's column-major order (row, column, channel, image); y is
 * N x 1, labels 1..10, where 10 is the digit 0. Images become (n, c, h, w) planes, labels 0..9. */
#include "internal.h"
#ifndef EE_NO_MATIO
#include <matio.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SVHN_MAX_IMAGES 600000 /* extra_32x32.mat holds 531,131; the header is checked before any data is read */

#ifdef EE_NO_MATIO
ee_status ee_dataset_load_svhn(ee_ctx *ctx, const char *path, ee_dataset **out) {
    *out = NULL;
    return ee_fail(ctx, EE_ERR_ARG, "%s: this eenn was built without libmatio (NO_MATIO=1), so it cannot read SVHN", path);
}
#else
ee_status ee_dataset_load_svhn(ee_ctx *ctx, const char *path, ee_dataset **out) {
    *out = NULL;
    FILE *probe = fopen(path, "rb");
    if (!probe) return ee_fail(ctx, EE_ERR_IO, "%s: cannot open", path);
    fclose(probe);
    mat_t *mat = Mat_Open(path, MAT_ACC_RDONLY);
    if (!mat) return ee_fail(ctx, EE_ERR_FORMAT, "%s: not a MATLAB file", path);
    ee_status s = EE_OK;
    matvar_t *X = Mat_VarReadInfo(mat, "X"), *y = Mat_VarReadInfo(mat, "y");
    ee_dataset *ds = NULL;
    if (!X || !y) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: no %s variable (an SVHN file has X and y)", path, X ? "y" : "X");
        goto done;
    }
    if (X->class_type != MAT_C_UINT8 || X->rank != 4 || X->dims[0] != 32 || X->dims[1] != 32 || X->dims[2] != 3 ||
        X->isComplex) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: X must be uint8 32x32x3xN (the cropped digits)", path);
        goto done;
    }
    size_t n = X->dims[3];
    if (n < 1 || n > SVHN_MAX_IMAGES) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: %zu images, expected 1 to %d", path, n, SVHN_MAX_IMAGES);
        goto done;
    }
    if (y->rank != 2 || y->isComplex || y->dims[0] * y->dims[1] != n || (y->dims[0] != 1 && y->dims[1] != 1)) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: y must be a vector of %zu labels", path, n);
        goto done;
    }
    /* the data, now that the headers are known to be sane */
    Mat_VarFree(X);
    Mat_Rewind(mat);
    X = Mat_VarRead(mat, "X");
    Mat_VarFree(y);
    Mat_Rewind(mat);
    y = Mat_VarRead(mat, "y");
    if (!X || !X->data || !y || !y->data || X->nbytes != n * 3072) {
        s = ee_fail(ctx, EE_ERR_FORMAT, "%s: X or y cannot be read (truncated or corrupted)", path);
        goto done;
    }
    ds = calloc(1, sizeof *ds);
    if (ds) {
        ds->n = (int)n; ds->c = 3; ds->h = 32; ds->w = 32; ds->classes = 10;
        ds->pixels = malloc(n * 3072);
        ds->labels = malloc(n);
    }
    if (!ds || !ds->pixels || !ds->labels) { s = ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); goto done; }
    const uint8_t *src = X->data;
    for (size_t i = 0; i < n; i++) /* column-major (row, col, channel, image) to (image, channel, row, col) */
        for (int c = 0; c < 3; c++)
            for (int col = 0; col < 32; col++)
                for (int row = 0; row < 32; row++)
                    ds->pixels[((i * 3 + c) * 32 + row) * 32 + col] = src[i * 3072 + (size_t)c * 1024 + (size_t)col * 32 + row];
    for (size_t i = 0; i < n && !s; i++) {
        double v;
        switch (y->class_type) {
        case MAT_C_DOUBLE: v = ((const double *)y->data)[i]; break;
        case MAT_C_SINGLE: v = ((const float *)y->data)[i]; break;
        case MAT_C_UINT8: v = ((const uint8_t *)y->data)[i]; break;
        case MAT_C_INT32: v = ((const int32_t *)y->data)[i]; break;
        default: s = ee_fail(ctx, EE_ERR_FORMAT, "%s: y has an unsupported numeric type", path); continue;
        }
        if (!(v >= 1 && v <= 10) || v != floor(v)) {
            s = ee_fail(ctx, EE_ERR_FORMAT, "%s: label %g of image %zu is not 1..10", path, v, i + 1);
            break;
        }
        ds->labels[i] = (uint8_t)((int)v % 10); /* 10 is the digit 0 */
    }
    if (!s) ee_dataset_norm_preset(ds, "svhn");
done:
    if (X) Mat_VarFree(X);
    if (y) Mat_VarFree(y);
    Mat_Close(mat);
    if (s) ee_dataset_free(ds);
    else *out = ds;
    return s;
}
#endif
