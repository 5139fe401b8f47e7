/* elementwise_impl.h: internal entry points of the AVX2 paths of RMSNorm,
 * RoPE, SwiGLU and softmax (the public wrappers and the tests call them).
 * Each computes exactly the bits of its reference in kernels/<op>.c.
 * Call only when opg_cpu_get_level() == OPG_CPU_AVX2. */
#ifndef OPG_ELEMENTWISE_IMPL_H
#define OPG_ELEMENTWISE_IMPL_H

#include <stdint.h>

#include "rope.h"

/* Rows of opg_rmsnorm_ref: n_rows rows of D elements (contiguous, D apart).
 * Groups of 8 rows take one row per lane; the rows left over take the
 * chunks of their sum of squares 8 at a time, one chunk per lane. */
void opg__rmsnorm_rows_avx2(float *y, const float *x, const float *w, int64_t n_rows,
                            int64_t D, float eps);

/* Rows of opg_softmax_ref: n_rows rows of n values. */
void opg__softmax_rows_avx2(float *y, const float *x, int64_t n_rows, int64_t n);

/* opg_swiglu_ref over n elements. */
void opg__swiglu_avx2(float *out, const float *gate, const float *up, int64_t n);

/* opg_rope_table for the n entries of inv_freq (4 binary64 lanes). */
void opg__rope_table_avx2(float *cos_out, float *sin_out, int64_t pos, const double *inv_freq,
                          int n);

/* The rotation of opg_rope_apply_ref restricted to the pairs [i0, i0 + n) of
 * every head: cs[j], sn[j] belong to pair i0 + j. Scalar and AVX2 forms. */
void opg__rope_apply_pairs(float *x, int n_heads, int head_dim, int n_dims, const float *cs,
                           const float *sn, int i0, int n, opg_rope_mode mode);
void opg__rope_apply_pairs_avx2(float *x, int n_heads, int head_dim, int n_dims,
                                const float *cs, const float *sn, int i0, int n,
                                opg_rope_mode mode);

#endif
