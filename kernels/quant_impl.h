/* quant_impl.h: internal entry points of the integer path shared by quant.c,
 * quant_avx2.c and qmatmul.c (and the tests). Not part of the public API. */
#ifndef OPG_QUANT_IMPL_H
#define OPG_QUANT_IMPL_H

#include <stdint.h>

#include "dtype.h"

/* Q4_K: 6-bit scale and min of sub-block j in [0, 8) (ggml's get_scale_min_k4). */
void opg__q4k_scale_min(const uint8_t *scales, int j, int *sc, int *m);

/* ---- AVX2 (quant_avx2.c); call only when opg_cpu_get_level() == OPG_CPU_AVX2 */

/* Same bits as opg_quantize_act_ref. */
void opg__quantize_act_avx2(opg_block_q8a *out, const float *x, int64_t K);

/* Output tile y[m][n] for m in [m0, m1), n in [n0, n1) of
 * Y[M][N] = dequant(W)[N][K] . Xq[M][K] (+ bias), same bits as opg_qdot_ref
 * (+ bias[n]) per output. w is the whole weight matrix (row n at
 * n * opg_dtype_row_bytes(wt, K)), xq the whole activation matrix (row m at
 * m * K/32 blocks), y row major with N columns. wt must be quantized and K a
 * multiple of its block (checked by the caller); for an _X8 type (quant.h) w
 * is the packed matrix and n0 a multiple of 8. */
void opg__qmatmul_tile_avx2(float *y, const opg_block_q8a *xq, const void *w, opg_dtype wt,
                            const float *bias, int64_t N, int64_t K, int64_t m0, int64_t m1,
                            int64_t n0, int64_t n1);

#endif
