/* cpu.h: which CPU code path the kernels take (decided once at run time).
 *
 * Every level computes the same bits (the contract); the level only changes
 * speed. OPG_CPU=scalar in the environment forces the portable C path. */
#ifndef OPG_CPU_H
#define OPG_CPU_H

typedef enum { OPG_CPU_SCALAR = 0, OPG_CPU_AVX2 = 1 } opg_cpu_level;

/* The level in use: the best the CPU supports, unless overridden. */
opg_cpu_level opg_cpu_get_level(void);
/* Overrides the level (tests use it to run every path); a level the CPU
 * lacks is lowered to the best supported. Returns the level now in use. */
opg_cpu_level opg_cpu_set_level(opg_cpu_level level);
/* Best level this CPU supports. */
opg_cpu_level opg_cpu_best_level(void);
/* "scalar" or "avx2". Static string. */
const char *opg_cpu_level_name(opg_cpu_level level);

#endif
