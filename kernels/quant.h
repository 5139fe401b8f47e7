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

/* ---- the 8-row interleaved layout (the _X8 types, dtype.h) ----------------
 * Why: the AVX2 kernel reads 8 weight rows at once; in GGUF's layout those are
 * 8 strided streams and each block's scales a gather. Packed, rows 8g..8g+7
 * (group g) keep their bytes (8 * row_bytes at 8g * row_bytes), and inside the
 * group block b of the 8 rows (the type's own blocks: 32 elements, or 256 for
 * Q4_K/Q6_K) is one run of 8 * block_bytes bytes at b * 8 * block_bytes. The
 * block is cut into pieces, and the run holds piece 0 of the 8 rows, then
 * piece 1 of the 8 rows, ..., each in row order:
 *   Q4_0: d (2 bytes) | qs (16)        Q4_1: d, m (4) | qs (16)
 *   Q8_0: d (2) | qs (32)
 *   Q4_K: d, dmin (4) | scales 0-3 | 4-7 | 8-11 (4 each) | qs in 4 pieces of 32
 *   Q6_K: ql in 4 pieces of 32 | qh in 2 of 32 | scales (16) | d (2)
 * except that the 16-byte qs of Q4_0/Q4_1 go in the row order 0,4,1,5,2,6,3,7
 * (one 32-byte load holds rows k and k+4, the pairs the kernel forms). No
 * value changes, so a packed matrix gives the same bits. */

/* Packs the N x K matrix src of quantized GGUF type t into dst
 * (opg_dtype_row_bytes(t, K) * N bytes, not overlapping src). Returns 0, or
 * -1 for another type (an _X8 one too), N not a multiple of 8, or K not one
 * of the type's block. */
int opg_pack_x8(void *dst, const void *src, opg_dtype t, int64_t N, int64_t K);
/* Row n of the packed matrix w (an _X8 type) in GGUF's layout:
 * opg_dtype_row_bytes(wt, K) bytes into out. */
void opg_unpack_x8_row(void *out, const void *w, opg_dtype wt, int64_t n, int64_t K);
/* Row n of the packed matrix w dequantized into y[K], the same values as
 * opg_dequantize_row_ref of the row in GGUF's layout. Returns 0, or -1 when
 * wt is not an _X8 type or K not a multiple of its block. */
int opg_dequantize_x8_row(float *y, const void *w, opg_dtype wt, int64_t n, int64_t K);

/* Dequantizes one row of K elements of any dtype (f32/f16/bf16 too) into y,
 * exactly as GGUF defines the values. Returns 0, or -1 for an unknown or _X8
 * type or a K that is not a multiple of the block. */
int opg_dequantize_row_ref(float *y, const void *w, opg_dtype t, int64_t K);

/* ---- fast path (AVX2 when available), same bits --------------------------- */
void opg_quantize_act(opg_block_q8a *out, const float *x, int64_t K);

#endif
