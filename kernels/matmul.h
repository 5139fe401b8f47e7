/* matmul.h: dot, GEMV and GEMM, Y[M][N] = X[M][K] * W[N][K]^T (+ bias[N]).
 *
 * X and Y are f32, row major, contiguous. W is row major in any dtype of
 * dtype.h, each row opg_dtype_row_bytes(wt, K) bytes. f32/f16/bf16 weights
 * take the float path (docs/determinism.md section 4); quantized weights take
 * the integer path (section 5): X is quantized per 32-block first.
 * bias may be NULL. No function here allocates except opg_matmul (scratch
 * for quantized activations) and none keeps a pointer after returning. */
#ifndef OPG_MATMUL_H
#define OPG_MATMUL_H

#include <stdint.h>

#include "dtype.h"
#include "pool.h"

/* ---- reference (the contract in code; single thread, plain C) ------------ */

/* Canonical dot of length K >= 0 (0 gives +0). */
float opg_dot_f32_ref(const float *a, const float *b, int64_t K);
/* Same with b given as f16 / bf16 bits (converted exactly). */
float opg_dot_f16_ref(const uint16_t *w, const float *x, int64_t K);
float opg_dot_bf16_ref(const uint16_t *w, const float *x, int64_t K);

/* Full matmul by the reference. Returns 0, or -1 for an unsupported dtype,
 * a K that is not a multiple of wt's block, negative sizes, an _X8 type
 * (quant.h: w packed by opg_pack_x8) with N not a multiple of 8, or out of
 * memory. */
int opg_matmul_ref(float *y, const float *x, const void *w, opg_dtype wt,
                   const float *bias, int64_t M, int64_t N, int64_t K);

/* ---- fast path (AVX2 when available, else reference), threaded ----------- */

/* Same result bits as opg_matmul_ref for any pool size and CPU level.
 * Returns as opg_matmul_ref. pool may be NULL (calling thread only). */
int opg_matmul(opg_pool *pool, float *y, const float *x, const void *w, opg_dtype wt,
               const float *bias, int64_t M, int64_t N, int64_t K);

/* Integer path with activations already quantized (xq: M rows of K/32
 * blocks, see quant.h), so several weights can share one quantization.
 * wt must be a quantized type. Returns 0 or -1 as above. The blocks must be
 * as opg_quantize_act makes them (every q in [-127, 127], sum = the sum of
 * qs): the AVX2 kernels rely on both, so for other blocks the result is
 * undefined and may differ between CPU levels. */
int opg_matmul_q8a(opg_pool *pool, float *y, const opg_block_q8a *xq, const void *w,
                   opg_dtype wt, const float *bias, int64_t M, int64_t N, int64_t K);

#endif
