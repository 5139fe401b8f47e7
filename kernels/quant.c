/* quant.c: the reference integer path of quantized weights (docs/determinism.md
 * section 5): activation quantization, the canonical quantized dot and GGUF
 * dequantization. Plain loops that mirror the spec line by line; the AVX2
 * paths (quant_avx2.c) must give the same bits.
 *
 * GGUF block layouts (ggml's; structs in dtype.h, f16 fields little-endian):
 *   Q8_0 (32 el, 34 B)  {f16 d; int8 qs[32]}            x[j] = d*qs[j]
 *   Q4_0 (32 el, 18 B)  {f16 d; u8 qs[16]}              q[j] = qs[j] & 15, q[j+16] = qs[j] >> 4
 *                                                      (j < 16); x = d*(q-8)
 *   Q4_1 (32 el, 20 B)  {f16 d, m; u8 qs[16]}           nibbles as Q4_0; x = d*q + m
 *   Q4_K (256 el, 144 B){f16 d, dmin; u8 scales[12]; u8 qs[128]}
 *       eight 32-element sub-blocks j, each with a 6-bit scale sc_j and min m_j
 *       packed in scales[] (ggml's get_scale_min_k4, see q4k_scale_min);
 *       sub-blocks 2i and 2i+1 are the low and high nibbles of qs[32i..32i+31];
 *       x = (d*sc_j)*q - dmin*m_j
 *   Q6_K (256 el, 210 B){u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d}
 *       two halves of 128 elements; half h uses ql[64h..64h+63], qh[32h..32h+31];
 *       for l < 32, element 128h + l + 32g (g = 0..3) has 6-bit q =
 *         g=0: ql[l] & 15      | ((qh[l] >> 0) & 3) << 4
 *         g=1: ql[l+32] & 15   | ((qh[l] >> 2) & 3) << 4
 *         g=2: ql[l] >> 4      | ((qh[l] >> 4) & 3) << 4
 *         g=3: ql[l+32] >> 4   | ((qh[l] >> 6) & 3) << 4
 *       (ql, qh relative to the half); element i has scale scales[i/16];
 *       x = (d*scales[i/16]) * (q-32)
 */
#include "quant.h"

#include <math.h>
#include <string.h>

#include "contract.h"
#include "cpu.h"
#include "opg_math.h"
#include "quant_impl.h"

/* ---- activation quantization ---------------------------------------------- */

void opg_quantize_act_ref(opg_block_q8a *out, const float *x, int64_t K) {
    for (int64_t b = 0; b < K / OPG_QK; b++) {
        const float *xb = x + b * OPG_QK;
        /* amax = max |x_i|, exact. Compared as bits: non-negative floats order
         * like their bit patterns, and a NaN orders above +inf, so a NaN input
         * makes d NaN (NaN in, NaN out) the same way on every path. */
        float amax = 0.0f;
        for (int i = 0; i < OPG_QK; i++) {
            float a = fabsf(xb[i]);
            if (opg_f32_bits(a) > opg_f32_bits(amax)) amax = a;
        }
        float d = amax / 127.0f;
        int32_t sum = 0;
        for (int i = 0; i < OPG_QK; i++) {
            int q = 0;
            if (d != 0.0f) {
                float v = rintf(xb[i] / d);
                if (v != v) q = 0;              /* non-finite input: d is inf or NaN */
                else if (v > 127.0f) q = 127;   /* only reachable for subnormal d */
                else if (v < -127.0f) q = -127;
                else q = (int)v;
            }
            out[b].qs[i] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].sum = sum;
    }
}

void opg_quantize_act(opg_block_q8a *out, const float *x, int64_t K) {
    if (opg_cpu_get_level() == OPG_CPU_AVX2) opg__quantize_act_avx2(out, x, K);
    else opg_quantize_act_ref(out, x, K);
}

/* ---- block terms: T_j of the spec, added into the chunk accumulator ------- */

/* Q4_K's 6-bit scale and min of sub-block j (ggml's get_scale_min_k4). */
void opg__q4k_scale_min(const uint8_t *scales, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* Q6_K's 6-bit value (0..63, before the -32) of element i in [0, 256). */
static int q6k_value(const opg_block_q6_K *b, int i) {
    int h = i / 128, g = (i % 128) / 32, l = i % 32;
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    int lo = g == 0 ? (ql[l] & 15) : g == 1 ? (ql[l + 32] & 15) : g == 2 ? (ql[l] >> 4) : (ql[l + 32] >> 4);
    int hi = (qh[l] >> (2 * g)) & 3;
    return lo | (hi << 4);
}

static float term_q8_0(const opg_block_q8_0 *w, const opg_block_q8a *a, float acc) {
    int32_t I = 0;
    for (int i = 0; i < 32; i++) I += (int32_t)w->qs[i] * a->qs[i];
    float s = opg_f16_to_f32(w->d) * a->d;
    return fmaf(s, (float)I, acc);
}

static float term_q4_0(const opg_block_q4_0 *w, const opg_block_q8a *a, float acc) {
    int32_t I = 0;
    for (int j = 0; j < 16; j++) {
        I += ((w->qs[j] & 15) - 8) * a->qs[j];
        I += ((w->qs[j] >> 4) - 8) * a->qs[j + 16];
    }
    float s = opg_f16_to_f32(w->d) * a->d;
    return fmaf(s, (float)I, acc);
}

static float term_q4_1(const opg_block_q4_1 *w, const opg_block_q8a *a, float acc) {
    int32_t I = 0;
    for (int j = 0; j < 16; j++) {
        I += (w->qs[j] & 15) * a->qs[j];
        I += (w->qs[j] >> 4) * a->qs[j + 16];
    }
    float A = opg_f16_to_f32(w->d) * (float)I;
    float B = opg_f16_to_f32(w->m) * (float)a->sum;
    float t = A + B;
    return fmaf(a->d, t, acc);
}

/* Sub-block j (0..7) of a Q4_K super-block. */
static float term_q4_K(const opg_block_q4_K *w, int j, const opg_block_q8a *a, float acc) {
    int sc, m;
    opg__q4k_scale_min(w->scales, j, &sc, &m);
    const uint8_t *qs = w->qs + 32 * (j / 2);
    int shift = (j % 2) * 4;
    int32_t I = 0;
    for (int l = 0; l < 32; l++) I += ((qs[l] >> shift) & 15) * a->qs[l];
    float A = opg_f16_to_f32(w->d) * (float)(sc * I);
    float B = opg_f16_to_f32(w->dmin) * (float)(m * a->sum);
    float t = A - B;
    return fmaf(a->d, t, acc);
}

/* Sub-block j (0..7) of a Q6_K super-block. */
static float term_q6_K(const opg_block_q6_K *w, int j, const opg_block_q8a *a, float acc) {
    int32_t lo = 0, hi = 0;
    for (int l = 0; l < 16; l++) lo += (q6k_value(w, 32 * j + l) - 32) * a->qs[l];
    for (int l = 16; l < 32; l++) hi += (q6k_value(w, 32 * j + l) - 32) * a->qs[l];
    int32_t I = w->scales[2 * j] * lo + w->scales[2 * j + 1] * hi;
    float s = opg_f16_to_f32(w->d) * a->d;
    return fmaf(s, (float)I, acc);
}

/* Term of 32-block k (global index in the row) of a weight row. */
static float block_term(const void *wrow, opg_dtype wt, int64_t k, const opg_block_q8a *a,
                        float acc) {
    switch (wt) {
    case OPG_Q8_0: return term_q8_0((const opg_block_q8_0 *)wrow + k, a, acc);
    case OPG_Q4_0: return term_q4_0((const opg_block_q4_0 *)wrow + k, a, acc);
    case OPG_Q4_1: return term_q4_1((const opg_block_q4_1 *)wrow + k, a, acc);
    case OPG_Q4_K: return term_q4_K((const opg_block_q4_K *)wrow + k / 8, (int)(k % 8), a, acc);
    case OPG_Q6_K: return term_q6_K((const opg_block_q6_K *)wrow + k / 8, (int)(k % 8), a, acc);
    default: return acc;
    }
}

/* ---- the canonical quantized dot ------------------------------------------ */

/* The packed layout (quant.h) as a table: a block is cut into pieces (byte
 * offset and size in GGUF's block); the run of 8 rows' block holds piece 0 of
 * the 8 rows, then piece 1 of the 8 rows, ...; inside a piece row r sits at
 * slot r, or for the Q4_0/Q4_1 qs ("paired") at slot 0,2,4,6,1,3,5,7. */
typedef struct { uint8_t off, size, paired; } x8_piece;

static int x8_pieces(opg_dtype base, const x8_piece **out) {
    static const x8_piece q4_0[] = {{0, 2, 0}, {2, 16, 1}};
    static const x8_piece q4_1[] = {{0, 4, 0}, {4, 16, 1}};
    static const x8_piece q8_0[] = {{0, 2, 0}, {2, 32, 0}};
    static const x8_piece q4_K[] = {{0, 4, 0},   {4, 4, 0},   {8, 4, 0},   {12, 4, 0},
                                    {16, 32, 0}, {48, 32, 0}, {80, 32, 0}, {112, 32, 0}};
    static const x8_piece q6_K[] = {{0, 32, 0},   {32, 32, 0},  {64, 32, 0}, {96, 32, 0},
                                    {128, 32, 0}, {160, 32, 0}, {192, 16, 0}, {208, 2, 0}};
    switch (base) {
    case OPG_Q4_0: *out = q4_0; return 2;
    case OPG_Q4_1: *out = q4_1; return 2;
    case OPG_Q8_0: *out = q8_0; return 2;
    case OPG_Q4_K: *out = q4_K; return 8;
    case OPG_Q6_K: *out = q6_K; return 8;
    default: *out = NULL; return 0;
    }
}

/* Where piece i of row r (0..7) sits in its 8 rows' run. */
static size_t x8_slot(const x8_piece *pc, int i, int r) {
    static const int q4_slot[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    size_t o = 0;
    for (int k = 0; k < i; k++) o += 8 * (size_t)pc[k].size;
    return o + (size_t)(pc[i].paired ? q4_slot[r] : r) * pc[i].size;
}

/* Packs row r's GGUF block blk into its 8 rows' run. */
static void x8_put(uint8_t *run, const uint8_t *blk, opg_dtype base, int r) {
    const x8_piece *pc;
    int np = x8_pieces(base, &pc);
    for (int i = 0; i < np; i++) memcpy(run + x8_slot(pc, i, r), blk + pc[i].off, pc[i].size);
}

/* Row r's GGUF block, out of its 8 rows' run. */
static void x8_get(uint8_t *blk, const uint8_t *run, opg_dtype base, int r) {
    const x8_piece *pc;
    int np = x8_pieces(base, &pc);
    for (int i = 0; i < np; i++) memcpy(blk + pc[i].off, run + x8_slot(pc, i, r), pc[i].size);
}

/* Block b (of the type's own blocks, nb per row) of row n in the packed
 * layout, copied into GGUF's block layout. */
static void x8_block(void *out, const uint8_t *w, opg_dtype base, int64_t n, int64_t b, int64_t nb) {
    const size_t bb = opg_dtype_block_bytes(base);
    const uint8_t *run = w + ((size_t)(n / 8) * (size_t)nb + (size_t)b) * 8 * bb;
    x8_get(out, run, base, (int)(n % 8));
}

/* wrow: the row (GGUF types), or the whole packed matrix and its row n (_X8). */
static float qdot(const void *wrow, opg_dtype wt, int64_t n, const opg_block_q8a *xq, int64_t K) {
    int64_t nb = K / OPG_QK;
    const opg_dtype base = opg_dtype_base(wt);
    float total = 0.0f; /* K == 0: +0, as the float dot */
    for (int64_t c = 0; c * OPG_QCHUNK_BLOCKS < nb; c++) {
        int64_t b0 = c * OPG_QCHUNK_BLOCKS;
        int64_t b1 = b0 + OPG_QCHUNK_BLOCKS < nb ? b0 + OPG_QCHUNK_BLOCKS : nb;
        float p = 0.0f;
        for (int64_t b = b0; b < b1; b++) {
            if (base != wt) {
                /* the type's block holding 32-block b (K-quants: 8 per block) */
                const int per = opg_dtype_block_elems(base) / OPG_QK;
                opg_block_q6_K blk; /* the largest of the packed block types */
                x8_block(&blk, wrow, base, n, b / per, nb / per);
                p = block_term(&blk, base, b % per, &xq[b], p);
            } else {
                p = block_term(wrow, wt, b, &xq[b], p);
            }
        }
        total = c == 0 ? p : total + p;
    }
    return total;
}

float opg_qdot_ref(const void *wrow, opg_dtype wt, const opg_block_q8a *xq, int64_t K) {
    return qdot(wrow, wt, 0, xq, K);
}

float opg_qdot_row_ref(const void *w, opg_dtype wt, int64_t n, const opg_block_q8a *xq, int64_t K) {
    if (opg_dtype_is_x8(wt)) return qdot(w, wt, n, xq, K);
    return qdot((const uint8_t *)w + (size_t)n * opg_dtype_row_bytes(wt, K), wt, 0, xq, K);
}

/* ---- the 8-row interleaved layout ------------------------------------------ */

int opg_pack_x8(void *dst, const void *src, opg_dtype t, int64_t N, int64_t K) {
    const x8_piece *pc;
    const int be = opg_dtype_block_elems(t);
    if (opg_dtype_is_x8(t) || x8_pieces(t, &pc) == 0 || N < 0 || N % 8 != 0 || K < 0 || K % be != 0)
        return -1;
    const int64_t nb = K / be;
    const size_t bb = opg_dtype_block_bytes(t), rb = (size_t)nb * bb;
    for (int64_t g = 0; g < N / 8; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *run = (uint8_t *)dst + ((size_t)g * (size_t)nb + (size_t)b) * 8 * bb;
            for (int r = 0; r < 8; r++) {
                const uint8_t *blk = (const uint8_t *)src + (size_t)(8 * g + r) * rb + (size_t)b * bb;
                x8_put(run, blk, t, r);
            }
        }
    return 0;
}

void opg_unpack_x8_row(void *out, const void *w, opg_dtype wt, int64_t n, int64_t K) {
    const opg_dtype base = opg_dtype_base(wt);
    const int64_t nb = K / opg_dtype_block_elems(base);
    const size_t bb = opg_dtype_block_bytes(base);
    for (int64_t b = 0; b < nb; b++) x8_block((uint8_t *)out + (size_t)b * bb, w, base, n, b, nb);
}

int opg_dequantize_x8_row(float *y, const void *w, opg_dtype wt, int64_t n, int64_t K) {
    const opg_dtype base = opg_dtype_base(wt);
    const int be = opg_dtype_block_elems(base);
    if (!opg_dtype_is_x8(wt) || n < 0 || K < 0 || K % be != 0) return -1;
    const int64_t nb = K / be;
    opg_block_q6_K blk; /* the largest of the packed block types */
    for (int64_t b = 0; b < nb; b++) {
        x8_block(&blk, w, base, n, b, nb);
        if (opg_dequantize_row_ref(y + b * be, &blk, base, be) != 0) return -1;
    }
    return 0;
}

/* ---- dequantization (GGUF's definition, no fma) --------------------------- */

int opg_dequantize_row_ref(float *y, const void *w, opg_dtype t, int64_t K) {
    int be = opg_dtype_block_elems(t);
    if (be == 0 || K < 0 || K % be != 0) return -1;
    switch (t) {
    case OPG_Q4_0_X8: case OPG_Q4_1_X8: case OPG_Q8_0_X8: case OPG_Q4_K_X8: case OPG_Q6_K_X8:
        return -1; /* not row-addressable: opg_unpack_x8_row */
    case OPG_F32: {
        const float *x = w;
        for (int64_t i = 0; i < K; i++) y[i] = x[i];
        return 0;
    }
    case OPG_F16: {
        const uint16_t *x = w;
        for (int64_t i = 0; i < K; i++) y[i] = opg_f16_to_f32(x[i]);
        return 0;
    }
    case OPG_BF16: {
        const uint16_t *x = w;
        for (int64_t i = 0; i < K; i++) y[i] = opg_bf16_to_f32(x[i]);
        return 0;
    }
    case OPG_Q8_0:
        for (int64_t b = 0; b < K / 32; b++) {
            const opg_block_q8_0 *x = (const opg_block_q8_0 *)w + b;
            float d = opg_f16_to_f32(x->d);
            for (int i = 0; i < 32; i++) y[32 * b + i] = d * (float)x->qs[i];
        }
        return 0;
    case OPG_Q4_0:
        for (int64_t b = 0; b < K / 32; b++) {
            const opg_block_q4_0 *x = (const opg_block_q4_0 *)w + b;
            float d = opg_f16_to_f32(x->d);
            for (int j = 0; j < 16; j++) {
                y[32 * b + j] = d * (float)((x->qs[j] & 15) - 8);
                y[32 * b + j + 16] = d * (float)((x->qs[j] >> 4) - 8);
            }
        }
        return 0;
    case OPG_Q4_1:
        for (int64_t b = 0; b < K / 32; b++) {
            const opg_block_q4_1 *x = (const opg_block_q4_1 *)w + b;
            float d = opg_f16_to_f32(x->d), m = opg_f16_to_f32(x->m);
            for (int j = 0; j < 16; j++) {
                y[32 * b + j] = d * (float)(x->qs[j] & 15) + m;
                y[32 * b + j + 16] = d * (float)(x->qs[j] >> 4) + m;
            }
        }
        return 0;
    case OPG_Q4_K:
        for (int64_t b = 0; b < K / 256; b++) {
            const opg_block_q4_K *x = (const opg_block_q4_K *)w + b;
            float d = opg_f16_to_f32(x->d), dmin = opg_f16_to_f32(x->dmin);
            for (int j = 0; j < 8; j++) {
                int sc, m;
                opg__q4k_scale_min(x->scales, j, &sc, &m);
                float ds = d * (float)sc, dm = dmin * (float)m;
                const uint8_t *qs = x->qs + 32 * (j / 2);
                int shift = (j % 2) * 4;
                for (int l = 0; l < 32; l++)
                    y[256 * b + 32 * j + l] = ds * (float)((qs[l] >> shift) & 15) - dm;
            }
        }
        return 0;
    case OPG_Q6_K:
        for (int64_t b = 0; b < K / 256; b++) {
            const opg_block_q6_K *x = (const opg_block_q6_K *)w + b;
            float d = opg_f16_to_f32(x->d);
            for (int i = 0; i < 256; i++) {
                float ds = d * (float)x->scales[i / 16];
                y[256 * b + i] = ds * (float)(q6k_value(x, i) - 32);
            }
        }
        return 0;
    }
    return -1;
}
