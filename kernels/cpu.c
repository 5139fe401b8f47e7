/* cpu.c: run-time CPU feature detection and the path override. */
#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int g_level = -1;

#if defined(__x86_64__) || defined(__i386__)
/* CPUID.1:ECX.F16C; clang before 16 has no "f16c" for __builtin_cpu_supports */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

opg_cpu_level opg_cpu_best_level(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* avx2 also means the OS saves the YMM registers (checked via XGETBV) */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
        return OPG_CPU_AVX2;
#endif
    return OPG_CPU_SCALAR;
}

opg_cpu_level opg_cpu_get_level(void) {
    int l = atomic_load(&g_level);
    if (l >= 0) return (opg_cpu_level)l;
    opg_cpu_level best = opg_cpu_best_level();
    const char *env = getenv("OPG_CPU");
    if (env && strcmp(env, "scalar") == 0) best = OPG_CPU_SCALAR;
    atomic_store(&g_level, (int)best);
    return best;
}

opg_cpu_level opg_cpu_set_level(opg_cpu_level level) {
    opg_cpu_level best = opg_cpu_best_level();
    if (level > best) level = best;
    atomic_store(&g_level, (int)level);
    return level;
}

const char *opg_cpu_level_name(opg_cpu_level level) {
    return level == OPG_CPU_AVX2 ? "avx2" : "scalar";
}
