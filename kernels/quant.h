/* quant.h: the integer path of quantized weights (docs/determinism.md section 5):
 * activation quantization, exact block dots with canonical f32 accumulation,
 * and GGUF dequantization. Block layouts are in dtype.h. */
#ifndef OPG_QUANT_H
#define OPG_QUANT_H

#include <stdint.h>

#include "dtype.h"

/* ---- reference ------------------------------------------------------------ */

/* Quantizes K floats (K % 32 == 0) into K/32 activation blocks. Every q is in
 * [-127, 127]; opg_qdot_ref and opg_matmul_q8a expect blocks with that
 * property (the AVX2 kernels' int16 partial sums rely on it), and with
 * sum == the sum of qs. */
void opg_quantize_act_ref(opg_block_q8a *out, const float *x, int64_t K);

/* Canonical dot of one quantized weight row (K elements) with quantized
 * activations xq (K/32 blocks). wt must be a quantized GGUF type; K a multiple
 * of its block. */
float opg_qdot_ref(const void *wrow, opg_dtype wt, const opg_block_q8a *xq, int64_t K);
/* The same for row n of the matrix w (K columns), in GGUF's layout or an _X8
 * one (opg_pack_x8). */
float opg_qdot_row_ref(const void *w, opg_dtype wt, int64_t n, const opg_block_q8a *xq, int64_t K);

/* ---- the 8-row interleaved layout (OPG_Q4_0_X8, OPG_Q4_1_X8, OPG_Q8_0_X8) --
 * Why: the AVX2 kernel reads 8 weight rows at once; in GGUF's layout those are
 * 8 strided streams and each block's scales a gather. Packed, rows 8g..8g+7
 * (group g) keep their bytes (8 * row_bytes at 8g * row_bytes), and inside the
 * group block b of the 8 rows is one run of 8 * block_bytes bytes at
 * b * 8 * block_bytes: first the 8 rows' scale words in row order (Q4_0 and
 * Q8_0: d, 2 bytes; Q4_1: d then m, 4 bytes), then their qs: Q4_0/Q4_1 16
 * bytes each in the row order 0,4,1,5,2,6,3,7 (one 32-byte load holds rows k
 * and k+4, the pairs the kernel forms), Q8_0 32 bytes each in row order. No
 * value changes, so a packed matrix gives the same bits. */

/* Packs the N x K matrix src of type t (OPG_Q4_0, OPG_Q4_1 or OPG_Q8_0) into
 * dst (opg_dtype_row_bytes(t, K) * N bytes, not overlapping src). Returns 0,
 * or -1 for another type, N not a multiple of 8, or K not one of 32. */
int opg_pack_x8(void *dst, const void *src, opg_dtype t, int64_t N, int64_t K);
/* Row n of the packed matrix w (an _X8 type) in GGUF's layout:
 * opg_dtype_row_bytes(wt, K) bytes into out. */
void opg_unpack_x8_row(void *out, const void *w, opg_dtype wt, int64_t n, int64_t K);

/* Dequantizes one row of K elements of any dtype (f32/f16/bf16 too) into y,
 * exactly as GGUF defines the values. Returns 0, or -1 for an unknown or _X8
 * type or a K that is not a multiple of the block. */
int opg_dequantize_row_ref(float *y, const void *w, opg_dtype t, int64_t K);

/* ---- fast path (AVX2 when available), same bits --------------------------- */
void opg_quantize_act(opg_block_q8a *out, const float *x, int64_t K);

#endif
