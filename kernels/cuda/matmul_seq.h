/* matmul_seq.h: the per-output operation sequences of the matmul kernels
 * (docs/determinism.md sections 4 and 5) as OPG_HD code, shared by the CUDA
 * kernels (kernels/cuda/matmul.cu, quant.cu; nvcc compiles it __host__
 * __device__) and a host test (tests/test_cuda_matmul_seq.c) that checks it
 * bit for bit against the C reference (matmul.c, quant.c). Plain C: no CUDA
 * construct appears here, only the order of the IEEE operations.
 *
 * Quantized split: the kernels compute the exact integer sum I of a 32-block
 * from packed int8 words (opg_cu_qword): qmatmul in 4 parts of 8 activation
 * elements (part p covers elements 8p..8p+7, one lane each, two dp4a) added
 * as integers, qmatmul_tc with int8 tensor cores over the two 16-element
 * halves (exact, any order); the f32 block term of the spec then takes the
 * whole I. */
#ifndef OPG_CUDA_MATMUL_SEQ_H
#define OPG_CUDA_MATMUL_SEQ_H

#include <stdint.h>
#include <string.h>

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

/* ---- quantized path: weight values as packed int8 words --------------------
 * The integer sums take the weight values 4 at a time, as the 4 signed bytes
 * of a 32-bit word (element 4g + i in byte i), so the GPU can multiply them
 * with dp4a (qmatmul) or feed them to int8 tensor cores (qmatmul_tc). The
 * words are built with exact integer operations only; integer sums are exact
 * in any order, so the grouping changes no bit. */

/* 4 bytes at p (2-byte aligned, as every block field of a row is), little
 * endian. Two 16-bit loads on the device; memcpy (the same value) here. */
OPG_HD uint32_t opg_cu_ld32(const uint8_t *p) {
#if defined(__CUDA_ARCH__) || defined(OPG_CUEMU) /* OPG_CUEMU: tests/cuemu runs device code */
    const uint16_t *h = (const uint16_t *)p;
    return (uint32_t)h[0] | ((uint32_t)h[1] << 16);
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

/* c + sum over the 4 byte lanes of a_i * b_i, bytes signed: __dp4a. */
OPG_HD int32_t opg_cu_dp4a(uint32_t a, uint32_t b, int32_t c) {
#if defined(__CUDA_ARCH__) || defined(OPG_CUEMU)
    return __dp4a((int)a, (int)b, c);
#else
    for (int i = 0; i < 4; i++) c += (int32_t)(int8_t)(uint8_t)(a >> 8 * i) * (int8_t)(uint8_t)(b >> 8 * i);
    return c;
#endif
}

/* Bytewise q - 8 for nibbles q in 0..15 and q - 32 for 6-bit q: adding
 * 128 - k never carries (q + 128 - k < 256) and the xor with 0x80 turns the
 * byte q + 128 - k into the two's complement byte of q - k. */
OPG_HD uint32_t opg_cu_sub8(uint32_t q) { return (q + 0x78787878u) ^ 0x80808080u; }
OPG_HD uint32_t opg_cu_sub32(uint32_t q) { return (q + 0x60606060u) ^ 0x80808080u; }

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

/* Elements 4g..4g+3 (g in 0..7) of global 32-block blk of a weight row of
 * type wt, as the integer sums multiply them (section 5's table): Q8_0 q,
 * Q4_0 q - 8, Q4_1 q, Q4_K q (the scale comes after), Q6_K q - 32 (each
 * 16-element half has its own scale, applied after). */
OPG_HD uint32_t opg_cu_qword(const void *wrow, int wt, int64_t blk, int g) {
    switch (wt) {
    case OPG_Q8_0:
        return opg_cu_ld32((const uint8_t *)((const opg_block_q8_0 *)wrow + blk)->qs + 4 * g);
    case OPG_Q4_0: case OPG_Q4_1: {
        /* element e < 16: low nibble of qs[e]; e >= 16: high nibble of qs[e - 16] */
        const uint8_t *qs = wt == OPG_Q4_0 ? ((const opg_block_q4_0 *)wrow + blk)->qs
                                           : ((const opg_block_q4_1 *)wrow + blk)->qs;
        uint32_t q = (opg_cu_ld32(qs + 4 * (g & 3)) >> (4 * (g >> 2))) & 0x0F0F0F0Fu;
        return wt == OPG_Q4_0 ? opg_cu_sub8(q) : q;
    }
    case OPG_Q4_K: {
        const opg_block_q4_K *b = (const opg_block_q4_K *)wrow + blk / 8;
        int j = (int)(blk % 8);
        return (opg_cu_ld32(b->qs + 32 * (j / 2) + 4 * g) >> (4 * (j % 2))) & 0x0F0F0F0Fu;
    }
    case OPG_Q6_K: {
        /* element l = 4g+i of sub-block j: its low 4 bits from ql (byte l or
         * l + 32 of the 128-half, low or high nibble by j), its high 2 bits
         * from qh (byte l, bits 2(j%4)) */
        const opg_block_q6_K *b = (const opg_block_q6_K *)wrow + blk / 8;
        int j = (int)(blk % 8), h = j / 4, gg = j % 4;
        uint32_t lo = (opg_cu_ld32(b->ql + 64 * h + 32 * (gg & 1) + 4 * g) >> (4 * (gg >> 1))) & 0x0F0F0F0Fu;
        uint32_t hi = (opg_cu_ld32(b->qh + 32 * h + 4 * g) >> (2 * gg)) & 0x03030303u;
        return opg_cu_sub32(lo | (hi << 4));
    }
    default: return 0;
    }
}

/* Q6_K's block I from the sums over its two 16-element halves:
 * I = sc_2j * lo + sc_2j+1 * hi (integers: exact). */
OPG_HD int32_t opg_cu_q6k_combine(const void *wrow, int64_t blk, int32_t lo, int32_t hi) {
    const opg_block_q6_K *b = (const opg_block_q6_K *)wrow + blk / 8;
    int j = (int)(blk % 8);
    return (int32_t)b->scales[2 * j] * lo + (int32_t)b->scales[2 * j + 1] * hi;
}

/* ---- quantized path: integer part p (0..3) of 32-block blk of a row -------
 * Elements 8p..8p+7 against qx (the 8 activation values a->qs + 8p): two
 * dp4a. Q6_K parts 0, 1 lie in the first half and 2, 3 in the second, so a
 * part returns its half's scale times its sum: the 4 parts add up to the
 * spec's I. */
OPG_HD int32_t opg_cu_qpart(const void *wrow, int wt, int64_t blk, int p, const int8_t *qx) {
    const uint8_t *x = (const uint8_t *)qx;
    int32_t s = opg_cu_dp4a(opg_cu_qword(wrow, wt, blk, 2 * p), opg_cu_ld32(x),
                            opg_cu_dp4a(opg_cu_qword(wrow, wt, blk, 2 * p + 1), opg_cu_ld32(x + 4), 0));
    if (wt == OPG_Q6_K) {
        const opg_block_q6_K *b = (const opg_block_q6_K *)wrow + blk / 8;
        return (int32_t)b->scales[2 * (int)(blk % 8) + p / 2] * s;
    }
    return s;
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
