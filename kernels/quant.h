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
 * activations xq (K/32 blocks). wt must be quantized; K a multiple of its block. */
float opg_qdot_ref(const void *wrow, opg_dtype wt, const opg_block_q8a *xq, int64_t K);

/* Dequantizes one row of K elements of any dtype (f32/f16/bf16 too) into y,
 * exactly as GGUF defines the values. Returns 0, or -1 for an unknown type or
 * a K that is not a multiple of the block. */
int opg_dequantize_row_ref(float *y, const void *w, opg_dtype t, int64_t K);

/* ---- fast path (AVX2 when available), same bits --------------------------- */
void opg_quantize_act(opg_block_q8a *out, const float *x, int64_t K);

#endif
