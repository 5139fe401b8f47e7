/* matmul_seq.h: the per-output operation sequences of the matmul kernels
 * (docs/determinism.md sections 4 and 5) as OPG_HD code, shared by the CUDA
 * kernels (kernels/cuda/matmul.cu, quant.cu; nvcc compiles it __host__
 * __device__) and a host test (tests/test_cuda_matmul_seq.c) that checks it
 * bit for bit against the C reference (matmul.c, quant.c). Plain C: no CUDA
 * construct appears here, only the order of the IEEE operations.
 *
 * Quantized split: the kernels compute the exact integer sum I of a 32-block
 * in 4 parts of 8 activation elements (part p covers elements 8p..8p+7, one
 * lane each) and add the parts as integers (exact, any order); the f32 block
 * term of the spec then takes the whole I. */
#ifndef OPG_CUDA_MATMUL_SEQ_H
#define OPG_CUDA_MATMUL_SEQ_H

#include <stdint.h>

#include "contract.h"
#include "dtype.h"
#include "opg_math.h"

/* ---- both paths --------------------------------------------------------- */

/* Chunk c's partial folded into the running total: total = p_0, then
 * total + p_c (never +0 + p_0: a -0 chunk keeps its sign). */
OPG_HD float opg_cu_fold(float total, float p, int64_t c) { return c == 0 ? p : total + p; }

/* ---- float path: weight element k of a row as an exact f32 ---------------- */
OPG_HD float opg_cu_wf32(const void *wrow, int wt, int64_t k) {
    if (wt == OPG_F16) return opg_f16_to_f32(((const uint16_t *)wrow)[k]);
    if (wt == OPG_BF16) return opg_bf16_to_f32(((const uint16_t *)wrow)[k]);
    return ((const float *)wrow)[k];
}

/* ---- activation quantization (one element of a block, given d) ------------ */

/* d = amax / 127.0f is computed by the caller from amax = the |x_i| with the
 * largest bit pattern (a NaN orders above +inf). */
OPG_HD int opg_cu_q8a_value(float x, float d) {
    if (d == 0.0f) return 0;
    float v = rintf(x / d);
    if (v != v) return 0;         /* non-finite input: d is inf or NaN */
    if (v > 127.0f) return 127;   /* only reachable for subnormal d */
    if (v < -127.0f) return -127;
    return (int)v;
}

/* ---- quantized path: integer part p (0..3) of 32-block blk of a row -------
 * qx points at the 8 activation values a->qs + 8p. */

/* Q4_K's 6-bit scale and min of sub-block j (ggml's get_scale_min_k4). */
OPG_HD void opg_cu_q4k_scale_min(const uint8_t *scales, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* Q6_K's 6-bit value (0..63, before the -32) of element i in [0, 256). */
OPG_HD int opg_cu_q6k_value(const opg_block_q6_K *b, int i) {
    int h = i / 128, g = (i % 128) / 32, l = i % 32;
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    int lo = g == 0 ? (ql[l] & 15) : g == 1 ? (ql[l + 32] & 15) : g == 2 ? (ql[l] >> 4) : (ql[l + 32] >> 4);
    int hi = (qh[l] >> (2 * g)) & 3;
    return lo | (hi << 4);
}

/* Q8_0: sum of q * qx over the part. */
OPG_HD int32_t opg_cu_qpart_q8_0(const opg_block_q8_0 *w, int p, const int8_t *qx) {
    int32_t I = 0;
    for (int i = 0; i < 8; i++) I += (int32_t)w->qs[8 * p + i] * qx[i];
    return I;
}

/* Q4_0: element e < 16 is the low nibble of qs[e], e >= 16 the high nibble of
 * qs[e - 16]; value q - 8. */
OPG_HD int32_t opg_cu_qpart_q4_0(const opg_block_q4_0 *w, int p, const int8_t *qx) {
    int32_t I = 0;
    for (int i = 0; i < 8; i++) {
        int e = 8 * p + i;
        int q = e < 16 ? (w->qs[e] & 15) : (w->qs[e - 16] >> 4);
        I += (q - 8) * qx[i];
    }
    return I;
}

/* Q4_1: nibbles as Q4_0, value q. */
OPG_HD int32_t opg_cu_qpart_q4_1(const opg_block_q4_1 *w, int p, const int8_t *qx) {
    int32_t I = 0;
    for (int i = 0; i < 8; i++) {
        int e = 8 * p + i;
        int q = e < 16 ? (w->qs[e] & 15) : (w->qs[e - 16] >> 4);
        I += q * qx[i];
    }
    return I;
}

/* Q4_K sub-block j of super-block w: sum of q * qx (the scale comes after). */
OPG_HD int32_t opg_cu_qpart_q4_K(const opg_block_q4_K *w, int j, int p, const int8_t *qx) {
    const uint8_t *qs = w->qs + 32 * (j / 2);
    int shift = (j % 2) * 4;
    int32_t I = 0;
    for (int i = 0; i < 8; i++) I += ((qs[8 * p + i] >> shift) & 15) * qx[i];
    return I;
}

/* Q6_K sub-block j of super-block w: parts 0, 1 are the first 16 elements
 * (scale scales[2j]), parts 2, 3 the last 16 (scales[2j+1]); the part returns
 * its scale times its sum, so the sum of the 4 parts is the spec's
 * I = sc_2j * lo + sc_2j+1 * hi (integers: exact). */
OPG_HD int32_t opg_cu_qpart_q6_K(const opg_block_q6_K *w, int j, int p, const int8_t *qx) {
    int32_t s = 0;
    for (int i = 0; i < 8; i++) s += (opg_cu_q6k_value(w, 32 * j + 8 * p + i) - 32) * qx[i];
    return (int32_t)w->scales[2 * j + p / 2] * s;
}

/* Part p of global 32-block blk of a weight row of type wt. */
OPG_HD int32_t opg_cu_qpart(const void *wrow, int wt, int64_t blk, int p, const int8_t *qx) {
    switch (wt) {
    case OPG_Q8_0: return opg_cu_qpart_q8_0((const opg_block_q8_0 *)wrow + blk, p, qx);
    case OPG_Q4_0: return opg_cu_qpart_q4_0((const opg_block_q4_0 *)wrow + blk, p, qx);
    case OPG_Q4_1: return opg_cu_qpart_q4_1((const opg_block_q4_1 *)wrow + blk, p, qx);
    case OPG_Q4_K:
        return opg_cu_qpart_q4_K((const opg_block_q4_K *)wrow + blk / 8, (int)(blk % 8), p, qx);
    case OPG_Q6_K:
        return opg_cu_qpart_q6_K((const opg_block_q6_K *)wrow + blk / 8, (int)(blk % 8), p, qx);
    default: return 0;
    }
}

/* ---- quantized path: the f32 block term of the spec, given the whole I ---- */

/* T_blk added into the chunk accumulator acc, exactly the table's steps. */
OPG_HD float opg_cu_qterm(const void *wrow, int wt, int64_t blk, const opg_block_q8a *a,
                          int32_t I, float acc) {
    switch (wt) {
    case OPG_Q8_0: {
        const opg_block_q8_0 *w = (const opg_block_q8_0 *)wrow + blk;
        float s = opg_f16_to_f32(w->d) * a->d;
        return fmaf(s, (float)I, acc);
    }
    case OPG_Q4_0: {
        const opg_block_q4_0 *w = (const opg_block_q4_0 *)wrow + blk;
        float s = opg_f16_to_f32(w->d) * a->d;
        return fmaf(s, (float)I, acc);
    }
    case OPG_Q4_1: {
        const opg_block_q4_1 *w = (const opg_block_q4_1 *)wrow + blk;
        float A = opg_f16_to_f32(w->d) * (float)I;
        float B = opg_f16_to_f32(w->m) * (float)a->sum;
        float t = A + B;
        return fmaf(a->d, t, acc);
    }
    case OPG_Q4_K: {
        const opg_block_q4_K *w = (const opg_block_q4_K *)wrow + blk / 8;
        int sc, m;
        opg_cu_q4k_scale_min(w->scales, (int)(blk % 8), &sc, &m);
        float A = opg_f16_to_f32(w->d) * (float)(sc * I);
        float B = opg_f16_to_f32(w->dmin) * (float)(m * a->sum);
        float t = A - B;
        return fmaf(a->d, t, acc);
    }
    case OPG_Q6_K: {
        const opg_block_q6_K *w = (const opg_block_q6_K *)wrow + blk / 8;
        float s = opg_f16_to_f32(w->d) * a->d;
        return fmaf(s, (float)I, acc);
    }
    default: return acc;
    }
}

#endif
