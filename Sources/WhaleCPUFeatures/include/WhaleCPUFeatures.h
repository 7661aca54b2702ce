// What the CPU that Swift compiles for can do, as clang sees it: Swift cannot test target features in `#if`,
// but it imports these macros as constants, and a branch on a constant is folded away, so a kernel written
// with `if WHALE_X86_AVX512_VNNI != 0 { … }` contains only the path the target has. The values follow the
// build's target CPU (`WHALE_CPU`, Package.swift): the clang importer shares Swift's target.
#ifndef WHALE_CPU_FEATURES_H
#define WHALE_CPU_FEATURES_H

/// 1 when the target has AVX-512 VNNI (`vpdpbusd` on 512-bit registers: 64 unsigned × signed byte products
/// summed in fours into 32-bit lanes, one instruction): Intel Ice Lake / Sapphire Rapids, AMD Zen 4 and later.
#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__)
#define WHALE_X86_AVX512_VNNI 1
#else
#define WHALE_X86_AVX512_VNNI 0
#endif

/// Asks the CPU to start loading the cache line holding `address` into its caches: a hint, which never
/// faults (an address past the end of a mapping is fine). Swift has no prefetch of its own, and the clang
/// intrinsics module's `_m_prefetch` imports as a no-op, so the kernels call this ([STREAM_PREFETCH]).
static inline __attribute__((always_inline)) void whale_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/// 1 when the CPU running this (not the one the build targets) is AMD's: CPUID leaf 0's vendor string is
/// "AuthenticAMD". Decides whether the kernels prefetch the weight stream ([STREAM_PREFETCH]).
static inline int whale_cpu_is_amd(void) {
#if defined(__x86_64__)
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return 0;
    return ebx == 0x68747541u && edx == 0x69746e65u && ecx == 0x444d4163u;  // "Auth" "enti" "cAMD"
#else
    return 0;
#endif
}

#endif
