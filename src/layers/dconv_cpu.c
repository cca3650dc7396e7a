/* dconv_cpu.c: whether the direct AVX2 convolution (dconv.c) can run here. Compiled for any x86-64 CPU, unlike
 * dconv.c: this is what the rest of the library asks before it calls into that file. The kernels exist on x86-64
 * builds without NO_AVX2 (the Makefile compiles dconv.c for AVX2 + FMA there). */
#include "../internal.h"

#if defined(__x86_64__) && !defined(EE_NO_AVX2)
#define EE_DCONV_BUILT 1
#endif

int ee_dconv_available(void) {
#ifdef EE_DCONV_BUILT
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int ee_dconv_preferred(void) {
#ifdef EE_DCONV_BUILT
    return ee_dconv_available() && !__builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int ee_dconv_fits(const ee_node *nd) {
    return nd->kind == EE_KIND_CONV && nd->arg.conv.groups == 1 && nd->arg.conv.out % 16 == 0 &&
           nd->arg.conv.k <= 7 && nd->arg.conv.kh == nd->arg.conv.k && nd->arg.conv.padh == nd->arg.conv.pad &&
           ee_dconv_available();
}
