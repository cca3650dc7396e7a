/* init.h: the reference initialisation schemes for weight tensors (conv and linear share them). */
#ifndef EE_INIT_H
#define EE_INIT_H
#include "../internal.h"
#include <math.h>

/* w: count weights with the given fan-in / fan-out; b: bias of nb values or NULL */
static inline void ee_init_weights(ee_ctx *ctx, int scheme, float *w, size_t count, int fan_in, int fan_out, float *b,
                                   int nb) {
    float bound = 1.0f / sqrtf((float)fan_in);
    switch (scheme) {
    case EE_INIT_KAIMING_OUT: ee_fill_normal(ctx, w, count, sqrtf(2.0f / fan_out)); break;
    case EE_INIT_VGG: ee_fill_normal(ctx, w, count, sqrtf(2.0f / fan_out)); break;
    case EE_INIT_XAVIER: {
        float a = sqrtf(2.0f) * sqrtf(6.0f / (fan_in + fan_out));
        ee_fill_uniform(ctx, w, count, -a, a);
        break;
    }
    case EE_INIT_NORMAL001: ee_fill_normal(ctx, w, count, 0.01f); break;
    default: ee_fill_uniform(ctx, w, count, -bound, bound); break;
    }
    if (b) {
        if (scheme == EE_INIT_TORCH) ee_fill_uniform(ctx, b, nb, -bound, bound);
        else for (int i = 0; i < nb; i++) b[i] = 0;
    }
}
#endif
