/* math_impl.h: internal entry points to the AVX2 elementary functions (tests only). */
#ifndef OPG_MATH_IMPL_H
#define OPG_MATH_IMPL_H

#include <stdint.h>

/* Call only when opg_cpu_best_level() >= OPG_CPU_AVX2. */
void opg__expf_avx2_array(float *y, const float *x, int64_t n);
void opg__siluf_avx2_array(float *y, const float *x, int64_t n);

#endif
