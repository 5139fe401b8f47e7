/* matmul_impl.h: internal entry points of the float matmul shared by matmul.c,
 * matmul_avx2.c and the tests (not part of the public API). */
#ifndef OPG_MATMUL_IMPL_H
#define OPG_MATMUL_IMPL_H

#include <stdint.h>

#include "dtype.h"
#include "pool.h"

/* Which AVX2 kernel computes the float matmul. Both give the reference's
 * bits for every M; the choice is speed only, so tests force each one. */
typedef enum {
    OPG__MM_AUTO = 0, /* GEMV for small M, GEMM otherwise */
    OPG__MM_GEMV = 1, /* W transposed 8x8 in registers, lanes = rows of W */
    OPG__MM_GEMM = 2, /* W packed into k-major panels, 6x16 register tile */
} opg__mm_path;

/* Float path (wt is OPG_F32, OPG_F16 or OPG_BF16) on AVX2+FMA, threaded on
 * pool (may be NULL). Requires M, N, K > 0 and opg_cpu_best_level() >=
 * OPG_CPU_AVX2; y must not overlap x, w or bias. Allocates nothing. */
void opg__matmul_float_avx2(opg_pool *pool, float *y, const float *x, const void *w,
                            opg_dtype wt, const float *bias, int64_t M, int64_t N, int64_t K,
                            opg__mm_path path);

#endif
