/* dconv_cpu.c: whether the direct convolution (dconv.c) can run here, and whether it should by default. Compiled
 * for any CPU, unlike dconv.c on x86-64 (AVX2 + FMA there): this is what the rest of the library asks before it
 * calls into that file. */
#include "../internal.h"

#if defined(__x86_64__) && !defined(EE_NO_AVX2)
#define EE_DCONV_X86 1 /* dconv.c built for AVX2 + FMA: it runs only on a CPU that has them */
#endif

int ee_avx2_available(void) {
#ifdef EE_DCONV_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int ee_dconv_available(void) {
#ifdef EE_DCONV_X86
    return ee_avx2_available();
#else
    return 1; /* NEON on aarch64, the compiler's generic vectors elsewhere */
#endif
}

/* The default: on x86-64 the AVX2 kernel where oneDNN has no AVX-512 brgconv kernels (measured: dconv.c's header),
 * never the generic vectors (oneDNN's SSE4.1 and AVX kernels are there); on aarch64 the NEON kernel, since
 * oneDNN's aarch64 build runs convolutions through its reference GEMM */
int ee_dconv_preferred(void) {
#ifdef EE_DCONV_X86
    return ee_avx2_available() && !__builtin_cpu_supports("avx512f");
#elif defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}

int ee_dconv_fits(const ee_node *nd) {
    return nd->kind == EE_KIND_CONV && nd->arg.conv.groups == 1 && nd->arg.conv.out % 16 == 0 &&
           nd->arg.conv.k <= 7 && nd->arg.conv.kh == nd->arg.conv.k && nd->arg.conv.padh == nd->arg.conv.pad &&
           ee_dconv_available();
}

/* Debian's aarch64 oneDNN 2.6 runs convolutions through its reference GEMM and computes some of them wrong (its
 * depthwise and some GEMM cases, seen under qemu): there every convolution runs on eenn's own kernels. */
int ee_conv_builtin_default(void) {
#if defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}
