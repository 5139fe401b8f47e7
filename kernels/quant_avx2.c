/* quant_avx2.c: AVX2 integer path, the same bits as quant.c.
 *
 * Activation quantization: 8 lanes = 8 elements of one block; every step is
 * elementwise (division, rint, clamp) or exact (max, integer sum), so lanes
 * change nothing.
 *
 * Matmul: 8 weight rows at once, one output row per float lane. Per 32-block
 * the 8 rows' exact int32 block sums are formed with byte multiplies
 * (maddubs: unsigned x signed, two products summed in int16) and a
 * horizontal-add tree that leaves row r's sum in lane r; from there each lane
 * runs exactly the f32 steps of the spec for its row (section 5: block terms
 * fma'd into the chunk accumulator in block order, chunk partials combined
 * left to right). Integer sums are exact whatever their order, so the tree
 * is free to use int16 levels as long as no partial can leave int16: the
 * bounds are stated at each tree and assume activation q in [-127, 127]
 * (which quantization guarantees). Rows left over (N % 8) use opg_qdot_ref
 * (never for the packed _X8 layouts, whose N is a multiple of 8). */
#include <immintrin.h>
#include <string.h>

#include "contract.h"
#include "quant.h"
#include "quant_impl.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization ---------------------------------------------- */

void opg__quantize_act_avx2(opg_block_q8a *out, const float *x, int64_t K) {
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
    const __m256 lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < K / OPG_QK; b++) {
        const float *xb = x + b * OPG_QK;
        __m256 v[4];
        __m256i mx = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            /* |x| as bits; signed int max orders them like the reference */
            mx = _mm256_max_epi32(mx, _mm256_and_si256(_mm256_castps_si256(v[k]), absmask));
        }
        __m128i m4 = _mm_max_epi32(_mm256_castsi256_si128(mx), _mm256_extracti128_si256(mx, 1));
        m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0x4e));
        m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0xb1));
        float amax;
        int32_t abits = _mm_cvtsi128_si32(m4);
        memcpy(&amax, &abits, sizeof amax);
        float d = amax / 127.0f;
        out[b].d = d;
        if (d == 0.0f) {
            memset(out[b].qs, 0, sizeof out[b].qs);
            out[b].sum = 0;
            continue;
        }
        const __m256 dv = _mm256_set1_ps(d);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            __m256 r = _mm256_round_ps(_mm256_div_ps(v[k], dv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m256 ok = _mm256_cmp_ps(r, r, _CMP_ORD_Q); /* NaN quotient gives 0 */
            r = _mm256_min_ps(_mm256_max_ps(r, nlim), lim);
            q[k] = _mm256_and_si256(_mm256_cvtps_epi32(r), _mm256_castps_si256(ok));
        }
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        out[b].sum = _mm_cvtsi128_si32(s4);
        /* packs interleave the 128-bit halves; the permute restores element order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)out[b].qs, _mm256_permutevar8x32_epi32(p, order));
    }
}

/* ---- helpers for 8 weight rows -------------------------------------------- */

ALWAYS_INLINE uint32_t ld32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Lane r = the 32-bit word at p + r*stride (one field of 8 rows' blocks). */
ALWAYS_INLINE __m256i load_u32x8(const uint8_t *p, size_t stride) {
    __m128i lo = _mm_cvtsi32_si128((int)ld32(p));
    lo = _mm_insert_epi32(lo, (int)ld32(p + stride), 1);
    lo = _mm_insert_epi32(lo, (int)ld32(p + 2 * stride), 2);
    lo = _mm_insert_epi32(lo, (int)ld32(p + 3 * stride), 3);
    __m128i hi = _mm_cvtsi32_si128((int)ld32(p + 4 * stride));
    hi = _mm_insert_epi32(hi, (int)ld32(p + 5 * stride), 1);
    hi = _mm_insert_epi32(hi, (int)ld32(p + 6 * stride), 2);
    hi = _mm_insert_epi32(hi, (int)ld32(p + 7 * stride), 3);
    return _mm256_set_m128i(hi, lo);
}

/* The f16 in the low 16 bits of each lane, converted exactly to f32. */
ALWAYS_INLINE __m256 f16lo_ps(__m256i v) {
    v = _mm256_and_si256(v, _mm256_set1_epi32(0xffff));
    v = _mm256_packus_epi32(v, v);           /* exact: values <= 0xffff */
    v = _mm256_permute4x64_epi64(v, 0x08);   /* 64-bit lanes 0 and 2 to the bottom */
    return _mm256_cvtph_ps(_mm256_castsi256_si128(v));
}

/* The f16 in the high 16 bits of each lane. */
ALWAYS_INLINE __m256 f16hi_ps(__m256i v) { return f16lo_ps(_mm256_srli_epi32(v, 16)); }

/* Both f16 halves of each lane at once: *lo = the low 16 bits' f16, *hi = the
 * high 16 bits', each converted exactly to f32 (lane r = lane r of v). One
 * byte shuffle gathers [lows | highs] per 128-bit half, one permute puts the
 * 8 lows in the bottom half and the 8 highs in the top. */
ALWAYS_INLINE void f16pair_ps(__m256i v, __m256 *lo, __m256 *hi) {
    const __m256i split = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                           0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, split), 0xd8);
    *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
    *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
}

ALWAYS_INLINE __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
ALWAYS_INLINE __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

/* Lane r = the sum of the 8 int32 lanes of s[r] (exact). */
ALWAYS_INLINE __m256i hsum8_epi32(const __m256i s[8]) {
    __m256i a = _mm256_hadd_epi32(s[0], s[1]);
    __m256i b = _mm256_hadd_epi32(s[2], s[3]);
    __m256i c = _mm256_hadd_epi32(s[4], s[5]);
    __m256i d = _mm256_hadd_epi32(s[6], s[7]);
    __m256i ab = _mm256_hadd_epi32(a, b); /* halves: rows 0..3 over elements 0-3 | 4-7 */
    __m256i cd = _mm256_hadd_epi32(c, d);
    __m256i lo = _mm256_permute2x128_si256(ab, cd, 0x20);
    __m256i hi = _mm256_permute2x128_si256(ab, cd, 0x31);
    return _mm256_add_epi32(lo, hi);
}

/* Lane r = the sum of the 16 int16 lanes of P[r]. Three levels of pairwise
 * int16 adds, then int32: exact when any 8 lanes of one P[r] sum within
 * int16 (every |lane| <= 4095 suffices). */
ALWAYS_INLINE __m256i hsum8_epi16(const __m256i P[8]) {
    __m256i a = _mm256_hadd_epi16(P[0], P[1]);
    __m256i b = _mm256_hadd_epi16(P[2], P[3]);
    __m256i c = _mm256_hadd_epi16(P[4], P[5]);
    __m256i d = _mm256_hadd_epi16(P[6], P[7]);
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(a, b), _mm256_hadd_epi16(c, d));
    /* h: rows 0..7 over lanes 0-7 | rows 0..7 over lanes 8-15 */
    return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(h)),
                            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(h, 1)));
}

/* ---- exact block sums of 8 rows, lane r = row r -------------------------------
 * Operand ranges (maddubs adds two u8*s8 products with int16 saturation):
 * Q8_0 |q| <= 128 as |q| x (x*sign q): pairs <= 2*128*127 = 32512; 4-bit q:
 * pairs <= 2*15*127 = 3810; Q6_K q <= 63: pairs <= 16002. None saturates. */

/* Q8_0: sum q*x over the block; p = qs of row 0, rb bytes from one row's qs to
 * the next (row_bytes; 32 in the packed layout). */
ALWAYS_INLINE __m256i sums_q8_0(const uint8_t *p, size_t rb, __m256i ax) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        __m256i q = loadu256(p + r * rb);
        s[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(ax, q)), ones);
    }
    return hsum8_epi32(s);
}

/* Q4_0/Q4_1: sum q*x with q the unsigned nibbles; p = qs of row 0 (x8: the
 * 8 rows' qs of the block in the packed layout). Rows r and
 * r+4 share a vector (16 bytes each), against x[0..15] (low nibbles) and
 * x[16..31] (high nibbles) broadcast to both halves: every int16 lane then
 * holds 4 products (<= 7620), two hadd levels 16 (<= 30480), then int32.
 * The final lanes come out in row order: [rows 0-3 | rows 4-7]. */
ALWAYS_INLINE __m256i sums_q4(const uint8_t *p, size_t rb, int x8, __m256i xlo, __m256i xhi) {
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    __m256i P[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        /* x8 (quant.h): rows k and k+4 are already side by side at p + 32k */
        __m256i v = x8 ? loadu256(p + 32 * k)
                       : _mm256_set_m128i(loadu128(p + (k + 4) * rb), loadu128(p + k * rb));
        __m256i lo = _mm256_and_si256(v, m0f), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
        P[k] = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
    }
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(P[0], P[1]), _mm256_hadd_epi16(P[2], P[3]));
    return _mm256_madd_epi16(h, _mm256_set1_epi16(1));
}

/* The same from nibbles already split (expand_q4_x8): ex[k] the low nibbles
 * of load k, ex[4 + k] the high ones. */
ALWAYS_INLINE __m256i sums_q4_ex(const __m256i *ex, __m256i xlo, __m256i xhi) {
    __m256i P[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        P[k] = _mm256_add_epi16(_mm256_maddubs_epi16(ex[k], xlo), _mm256_maddubs_epi16(ex[4 + k], xhi));
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(P[0], P[1]), _mm256_hadd_epi16(P[2], P[3]));
    return _mm256_madd_epi16(h, _mm256_set1_epi16(1));
}

/* GEMM: the nibbles of chunk c's nblk packed Q4_0/Q4_1 blocks of 8 rows,
 * split once into ex[8 * i ..] for every activation row that uses them. */
ALWAYS_INLINE void expand_q4_x8(__m256i *ex, const uint8_t *w8, opg_dtype wt, int64_t c, int nblk) {
    const size_t bb = wt == OPG_Q4_0_X8 ? sizeof(opg_block_q4_0) : sizeof(opg_block_q4_1);
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    for (int i = 0; i < nblk; i++) {
        const uint8_t *p = w8 + (size_t)(c * 8 + i) * 8 * bb + 8 * (bb - 16);
        for (int k = 0; k < 4; k++) {
            __m256i v = loadu256(p + 32 * k);
            ex[8 * i + k] = _mm256_and_si256(v, m0f);
            ex[8 * i + 4 + k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
        }
    }
}

/* Q4_K: sub-blocks 2i (low nibbles) and 2i+1 (high) of the same 32 bytes;
 * p = qs + 32i of row 0. */
ALWAYS_INLINE void sums_q4_K(const uint8_t *p, size_t rb, __m256i ax0, __m256i ax1, __m256i *I0,
                             __m256i *I1) {
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    __m256i P0[8], P1[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        __m256i v = loadu256(p + r * rb);
        P0[r] = _mm256_maddubs_epi16(_mm256_and_si256(v, m0f), ax0);
        P1[r] = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m0f), ax1);
    }
    *I0 = hsum8_epi16(P0);
    *I1 = hsum8_epi16(P1);
}

/* Q6_K sub-block j = 4h + g of the super-block at p (row 0): returns
 * sc_2j * sum_{first 16} (q-32)*x + sc_2j+1 * sum_{last 16} (q-32)*x per row.
 * Per row the int16 lanes hold sum (q-32)*x of 2 elements (<= 8128); two hadd
 * levels give sums of 8 elements (<= 32512), in the lanes
 * [r r r' r' ... | same for the last 16] for 4 rows, so one madd with the
 * scales laid out the same way (sc0123 / sc4567) finishes each half. */
ALWAYS_INLINE __m256i sums_q6_K(const uint8_t *p, size_t rb, int x8, int j, __m256i ax,
                                __m256i sc0123, __m256i sc4567) {
    const int h = j / 4, g = j % 4;
    const __m256i m0f = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const __m256i x32 = _mm256_maddubs_epi16(_mm256_set1_epi8(32), ax);
    /* x8 (quant.h): ql bytes 32k..32k+31 of the 8 rows at 256k, row after
     * row, then qh bytes 32k.. at 1024 + 256k */
    const uint8_t *pl = x8 ? p + 256 * (2 * h + (g & 1)) : p + offsetof(opg_block_q6_K, ql) + 64 * h + 32 * (g & 1);
    const uint8_t *ph = x8 ? p + 1024 + 256 * h : p + offsetof(opg_block_q6_K, qh) + 32 * h;
    const size_t stride = x8 ? 32 : rb;
    __m256i P[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        __m256i ql = loadu256(pl + r * stride);
        __m256i lo = _mm256_and_si256(g < 2 ? ql : _mm256_srli_epi16(ql, 4), m0f);
        __m256i qh = loadu256(ph + r * stride);
        /* bits 2g, 2g+1 of qh to bits 4, 5 */
        __m256i hb = g == 0 ? _mm256_slli_epi16(qh, 4)
                   : g == 1 ? _mm256_slli_epi16(qh, 2)
                   : g == 2 ? qh
                            : _mm256_srli_epi16(qh, 2);
        __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hb, m30));
        P[r] = _mm256_sub_epi16(_mm256_maddubs_epi16(q, ax), x32);
    }
    __m256i a = _mm256_hadd_epi16(_mm256_hadd_epi16(P[0], P[1]), _mm256_hadd_epi16(P[2], P[3]));
    __m256i b = _mm256_hadd_epi16(_mm256_hadd_epi16(P[4], P[5]), _mm256_hadd_epi16(P[6], P[7]));
    __m256i x = _mm256_madd_epi16(a, sc0123); /* rows 0-3: first 16 | last 16 */
    __m256i y = _mm256_madd_epi16(b, sc4567);
    return _mm256_add_epi32(_mm256_permute2x128_si256(x, y, 0x20),
                            _mm256_permute2x128_si256(x, y, 0x31));
}

/* ---- one 8-row chunk per type ----------------------------------------------
 * prep_chunk: the per-chunk weight data shared by all activation rows (the 8
 * rows' scales, converted or unpacked once); chunk_dot: the partial p_c of
 * the 8 rows against one activation row, exactly the spec's acc sequence. */

typedef struct {
    __m256 d[8], m[8];          /* Q8_0/Q4_0/Q4_1: per block; Q4_K/Q6_K: d[0], m[0] */
    __m256i sc[8], mn[8];       /* Q4_K: 6-bit scale and min per sub-block;
                                   Q6_K: int16 scales per sub-block, rows 0-3 / 4-7 */
} chunk_prep;

ALWAYS_INLINE void prep_chunk(chunk_prep *pr, opg_dtype wt, const uint8_t *w8, size_t rb,
                              int64_t c, int nblk) {
    switch (wt) {
    case OPG_Q8_0:
        for (int i = 0; i < nblk; i++)
            pr->d[i] = f16lo_ps(load_u32x8(w8 + (c * 8 + i) * sizeof(opg_block_q8_0), rb));
        break;
    case OPG_Q4_0:
        for (int i = 0; i < nblk; i++)
            pr->d[i] = f16lo_ps(load_u32x8(w8 + (c * 8 + i) * sizeof(opg_block_q4_0), rb));
        break;
    case OPG_Q4_1:
        for (int i = 0; i < nblk; i++) {
            f16pair_ps(load_u32x8(w8 + (c * 8 + i) * sizeof(opg_block_q4_1), rb), &pr->d[i],
                       &pr->m[i]);
        }
        break;
    /* packed (quant.h): the 8 rows' scale words are contiguous, the same lanes */
    case OPG_Q4_0_X8:
    case OPG_Q8_0_X8: {
        const size_t bb = wt == OPG_Q4_0_X8 ? sizeof(opg_block_q4_0) : sizeof(opg_block_q8_0);
        for (int i = 0; i < nblk; i++) pr->d[i] = _mm256_cvtph_ps(loadu128(w8 + (c * 8 + i) * 8 * bb));
        break;
    }
    case OPG_Q4_1_X8:
        for (int i = 0; i < nblk; i++)
            f16pair_ps(loadu256(w8 + (c * 8 + i) * 8 * sizeof(opg_block_q4_1)), &pr->d[i], &pr->m[i]);
        break;
    case OPG_Q4_K:
    case OPG_Q4_K_X8: {
        /* x8 (quant.h): the 8 rows' words d|dmin, then the three words of their
         * scales, each as 8 contiguous words: the lanes load_u32x8 gathers */
        const int x8 = wt == OPG_Q4_K_X8;
        const uint8_t *base = w8 + c * (x8 ? 8 : 1) * sizeof(opg_block_q4_K);
        __m256i dd = x8 ? loadu256(base) : load_u32x8(base, rb);
        pr->d[0] = f16lo_ps(dd);
        pr->m[0] = f16hi_ps(dd);
        /* get_scale_min_k4 on 4 packed bytes at a time (as ggml's vec_dot_q4_K) */
        __m256i w0 = x8 ? loadu256(base + 32) : load_u32x8(base + 4, rb);
        __m256i w1 = x8 ? loadu256(base + 64) : load_u32x8(base + 8, rb);
        __m256i w2 = x8 ? loadu256(base + 96) : load_u32x8(base + 12, rb);
        const __m256i m3f = _mm256_set1_epi8(0x3f), m0f = _mm256_set1_epi8(0x0f);
        const __m256i m30 = _mm256_set1_epi8(0x30), mff = _mm256_set1_epi32(0xff);
        __m256i sc4[2], mn4[2];
        sc4[0] = _mm256_and_si256(w0, m3f);
        mn4[0] = _mm256_and_si256(w1, m3f);
        sc4[1] = _mm256_or_si256(_mm256_and_si256(w2, m0f),
                                 _mm256_and_si256(_mm256_srli_epi32(w0, 2), m30));
        mn4[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, 4), m0f),
                                 _mm256_and_si256(_mm256_srli_epi32(w1, 2), m30));
        for (int j = 0; j < 8; j++) {
            pr->sc[j] = _mm256_and_si256(_mm256_srli_epi32(sc4[j / 4], 8 * (j % 4)), mff);
            pr->mn[j] = _mm256_and_si256(_mm256_srli_epi32(mn4[j / 4], 8 * (j % 4)), mff);
        }
        break;
    }
    case OPG_Q6_K:
    case OPG_Q6_K_X8: {
        /* x8 (quant.h): the 8 rows' 16 scale bytes at 1536, their d at 1664 */
        const int x8 = wt == OPG_Q6_K_X8;
        const uint8_t *base = w8 + c * (x8 ? 8 : 1) * sizeof(opg_block_q6_K);
        /* d is the last field: read the word ending at it, not past the row */
        pr->d[0] = x8 ? _mm256_cvtph_ps(loadu128(base + 1664))
                      : f16hi_ps(load_u32x8(base + offsetof(opg_block_q6_K, d) - 2, rb));
        /* transpose the rows' scales: word j of row r = (sc_2j, sc_2j+1) */
        __m128i s[8], t[8], u[8];
        for (int r = 0; r < 8; r++)
            s[r] = x8 ? loadu128(base + 1536 + 16 * r) : loadu128(base + r * rb + offsetof(opg_block_q6_K, scales));
        for (int k = 0; k < 4; k++) {
            t[2 * k] = _mm_unpacklo_epi16(s[2 * k], s[2 * k + 1]);
            t[2 * k + 1] = _mm_unpackhi_epi16(s[2 * k], s[2 * k + 1]);
        }
        for (int k = 0; k < 2; k++) {
            u[4 * k + 0] = _mm_unpacklo_epi32(t[4 * k + 0], t[4 * k + 2]); /* words 0,1 */
            u[4 * k + 1] = _mm_unpackhi_epi32(t[4 * k + 0], t[4 * k + 2]); /* words 2,3 */
            u[4 * k + 2] = _mm_unpacklo_epi32(t[4 * k + 1], t[4 * k + 3]); /* words 4,5 */
            u[4 * k + 3] = _mm_unpackhi_epi32(t[4 * k + 1], t[4 * k + 3]); /* words 6,7 */
        }
        const __m128i pick0123 = _mm_setr_epi8(0, 0, 2, 2, 4, 4, 6, 6, 1, 1, 3, 3, 5, 5, 7, 7);
        const __m128i pick4567 = _mm_setr_epi8(8, 8, 10, 10, 12, 12, 14, 14, 9, 9, 11, 11, 13, 13, 15, 15);
        for (int j = 0; j < 8; j++) {
            /* T: word r = (sc_2j, sc_2j+1) of row r */
            __m128i T = j % 2 ? _mm_unpackhi_epi64(u[j / 2], u[4 + j / 2])
                              : _mm_unpacklo_epi64(u[j / 2], u[4 + j / 2]);
            pr->sc[j] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(T, pick0123));
            pr->mn[j] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(T, pick4567));
        }
        break;
    }
    default: break;
    }
}

/* Software prefetch of n cache lines from p on (a hint: no value depends on it). */
ALWAYS_INLINE void prefetch_lines(const uint8_t *p, int n) {
    for (int l = 0; l < n; l++) _mm_prefetch((const char *)(p + (size_t)l * 64), _MM_HINT_T0);
}

/* p_c for 8 rows (w8: row 0 of the 8, rb bytes per row) against the
 * activation row xa (all its blocks). pf: NULL, or where block i of the
 * chunk prefetches pf_lines lines from (pf + i*pf_lines*64), spread over
 * the block loop so the loads in flight stay few (see dot8). ex: NULL, or
 * the chunk's nibbles from expand_q4_x8 (packed Q4_0/Q4_1 only). */
ALWAYS_INLINE __m256 chunk_dot(const chunk_prep *pr, opg_dtype wt, const uint8_t *w8,
                               size_t rb, int64_t c, int nblk, const opg_block_q8a *xa,
                               const uint8_t *pf, int pf_lines, const __m256i *ex) {
    __m256 acc = _mm256_setzero_ps();
    const opg_block_q8a *a = xa + c * 8;
    switch (wt) {
    case OPG_Q8_0:
    case OPG_Q8_0_X8:
        for (int i = 0; i < nblk; i++) {
            if (pf) prefetch_lines(pf + (size_t)i * pf_lines * 64, pf_lines);
            const int x8 = wt == OPG_Q8_0_X8; /* x8: the 8 rows' qs follow their 8 scales */
            const uint8_t *p = x8 ? w8 + (c * 8 + i) * 8 * sizeof(opg_block_q8_0) + 8 * 2
                                  : w8 + (c * 8 + i) * sizeof(opg_block_q8_0) + offsetof(opg_block_q8_0, qs);
            __m256 I = _mm256_cvtepi32_ps(sums_q8_0(p, x8 ? 32 : rb, loadu256(a[i].qs)));
            __m256 s = _mm256_mul_ps(pr->d[i], _mm256_set1_ps(a[i].d));
            acc = _mm256_fmadd_ps(s, I, acc);
        }
        break;
    case OPG_Q4_0:
    case OPG_Q4_0_X8:
        for (int i = 0; i < nblk; i++) {
            if (pf) prefetch_lines(pf + (size_t)i * pf_lines * 64, pf_lines);
            const int x8 = wt == OPG_Q4_0_X8;
            const uint8_t *p = x8 ? w8 + (c * 8 + i) * 8 * sizeof(opg_block_q4_0) + 8 * 2
                                  : w8 + (c * 8 + i) * sizeof(opg_block_q4_0) + offsetof(opg_block_q4_0, qs);
            __m256i xlo = _mm256_broadcastsi128_si256(loadu128(a[i].qs));
            __m256i xhi = _mm256_broadcastsi128_si256(loadu128(a[i].qs + 16));
            /* sum (q-8)*x = sum q*x - 8*sum x */
            __m256i q = ex ? sums_q4_ex(ex + 8 * i, xlo, xhi) : sums_q4(p, rb, x8, xlo, xhi);
            __m256i Ii = _mm256_sub_epi32(q, _mm256_set1_epi32(8 * a[i].sum));
            __m256 s = _mm256_mul_ps(pr->d[i], _mm256_set1_ps(a[i].d));
            acc = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(Ii), acc);
        }
        break;
    case OPG_Q4_1:
    case OPG_Q4_1_X8:
        for (int i = 0; i < nblk; i++) {
            if (pf) prefetch_lines(pf + (size_t)i * pf_lines * 64, pf_lines);
            const int x8 = wt == OPG_Q4_1_X8;
            const uint8_t *p = x8 ? w8 + (c * 8 + i) * 8 * sizeof(opg_block_q4_1) + 8 * 4
                                  : w8 + (c * 8 + i) * sizeof(opg_block_q4_1) + offsetof(opg_block_q4_1, qs);
            __m256i xlo = _mm256_broadcastsi128_si256(loadu128(a[i].qs));
            __m256i xhi = _mm256_broadcastsi128_si256(loadu128(a[i].qs + 16));
            __m256i q = ex ? sums_q4_ex(ex + 8 * i, xlo, xhi) : sums_q4(p, rb, x8, xlo, xhi);
            __m256 A = _mm256_mul_ps(pr->d[i], _mm256_cvtepi32_ps(q));
            __m256 B = _mm256_mul_ps(pr->m[i], _mm256_set1_ps((float)a[i].sum));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(a[i].d), _mm256_add_ps(A, B), acc);
        }
        break;
    case OPG_Q4_K:
    case OPG_Q4_K_X8: {
        /* x8: after the 128 bytes of scale words, qs bytes 32i..32i+31 of the
         * 8 rows are 256 contiguous bytes, row after row */
        const int x8 = wt == OPG_Q4_K_X8;
        const uint8_t *p = x8 ? w8 + c * 8 * sizeof(opg_block_q4_K) + 128
                              : w8 + c * sizeof(opg_block_q4_K) + offsetof(opg_block_q4_K, qs);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m256i I[2];
            sums_q4_K(p + (x8 ? 256 : 32) * i, x8 ? 32 : rb, loadu256(a[2 * i].qs),
                      loadu256(a[2 * i + 1].qs), &I[0], &I[1]);
#pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                const int j = 2 * i + k;
                __m256i scI = _mm256_mullo_epi32(pr->sc[j], I[k]);
                __m256i mS = _mm256_mullo_epi32(pr->mn[j], _mm256_set1_epi32(a[j].sum));
                __m256 A = _mm256_mul_ps(pr->d[0], _mm256_cvtepi32_ps(scI));
                __m256 B = _mm256_mul_ps(pr->m[0], _mm256_cvtepi32_ps(mS));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(a[j].d), _mm256_sub_ps(A, B), acc);
            }
        }
        break;
    }
    case OPG_Q6_K:
    case OPG_Q6_K_X8: {
        const int x8 = wt == OPG_Q6_K_X8;
        const uint8_t *p = w8 + c * (x8 ? 8 : 1) * sizeof(opg_block_q6_K);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i I = sums_q6_K(p, rb, x8, j, loadu256(a[j].qs), pr->sc[j], pr->mn[j]);
            __m256 s = _mm256_mul_ps(pr->d[0], _mm256_set1_ps(a[j].d));
            acc = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(I), acc);
        }
        break;
    }
    default: break;
    }
    return acc;
}

/* ---- the tile ---------------------------------------------------------------- */

#ifndef PF_TILES
#define PF_TILES 1 /* GEMV: how many 8-row tiles ahead to prefetch */
#endif
#define PF_MAX_TILE_BYTES 12288 /* larger tiles (K over ~4.6K at Q4_1) are not prefetched */
#define MSUB 32 /* activation rows whose running totals are kept per chunk pass */

/* One activation row against 8 weight rows (the GEMV case: every weight
 * byte is used once, so nothing is staged). */
ALWAYS_INLINE __m256 dot8(const opg_block_q8a *xa, const uint8_t *w8, opg_dtype wt, size_t rb,
                          int64_t nb) {
    chunk_prep pr;
    __m256 total = _mm256_setzero_ps(); /* K == 0: +0 */
    /* Short rows: the hardware prefetcher picks up the 8 rows' streams late,
     * so the tile PF_TILES ahead is prefetched while this one runs (a hint
     * only: prefetching past the matrix is harmless and changes no value).
     * Long rows need no help, and a tile much over half of L1 would only
     * evict itself. The prefetches go a few lines per block inside the block
     * loop: issued as one burst per chunk they filled the load queue, and
     * the GEMV's speed then swung by up to 3x with the code's alignment
     * (docs/benchmarks.md, 2026-12-07). Q4_K/Q6_K chunks are one 256-element
     * block each, with their own loops: they keep one burst per chunk. */
    const size_t tile_bytes = 8 * rb;
    const int pf = tile_bytes <= PF_MAX_TILE_BYTES && nb > 0;
    const uint8_t *ahead = w8 + PF_TILES * tile_bytes;
    const int burst = wt == OPG_Q4_K || wt == OPG_Q4_K_X8 || wt == OPG_Q6_K || wt == OPG_Q6_K_X8;
    /* lines per 32-element block: together they cover the whole tile */
    const int pf_lines = pf ? (int)((tile_bytes + (size_t)nb * 64 - 1) / ((size_t)nb * 64)) : 0;
    const size_t per_chunk = pf ? (tile_bytes + (size_t)nb - 1) / (size_t)nb * OPG_QCHUNK_BLOCKS : 0;
    for (int64_t c = 0; c * OPG_QCHUNK_BLOCKS < nb; c++) {
        int nblk = nb - c * 8 < 8 ? (int)(nb - c * 8) : 8;
        const uint8_t *pfc = NULL;
        if (pf && burst) {
            size_t o0 = (size_t)c * per_chunk, o1 = o0 + per_chunk + 64;
            if (o1 > tile_bytes + 64) o1 = tile_bytes + 64;
            for (size_t o = o0; o < o1; o += 64) _mm_prefetch((const char *)(ahead + o), _MM_HINT_T0);
        } else if (pf) {
            pfc = ahead + (size_t)c * OPG_QCHUNK_BLOCKS * (size_t)pf_lines * 64;
        } else if (wt == OPG_Q6_K_X8) {
            /* a packed Q6_K chunk is read out of order (its scales at the
               end first, then ql and qh in turns), which the hardware
               prefetcher follows badly: the next chunk (or the next tile's
               first) is fetched while this one computes. 1.4-1.6x on the
               4096 x 4096 GEMV; Q4_K's chunks, read in order, gain nothing
               (docs/benchmarks.md, 2026-12-07 16:25-16:30) */
            const size_t cb = 8 * sizeof(opg_block_q6_K);
            prefetch_lines(w8 + (size_t)(c + 1) * cb, (int)(cb / 64) + 1);
        }
        prep_chunk(&pr, wt, w8, rb, c, nblk);
        __m256 p = chunk_dot(&pr, wt, w8, rb, c, nblk, xa, pfc, pf_lines, NULL);
        total = c == 0 ? p : _mm256_add_ps(total, p);
    }
    return total;
}

/* Rows [n, n+8) x activation rows [m0, m1). Several activation rows go
 * chunk by chunk, so the 8 rows' chunk of weights stays in L1 while each
 * activation row uses it. */
ALWAYS_INLINE void tile8(float *y, const opg_block_q8a *xq, const uint8_t *w8, opg_dtype wt,
                         const float *bias, int64_t n, int64_t N, int64_t K, int64_t m0,
                         int64_t m1) {
    const size_t rb = opg_dtype_row_bytes(wt, K);
    const int64_t nb = K / OPG_QK;
    const __m256 bv = bias ? _mm256_loadu_ps(bias + n) : _mm256_setzero_ps();
    if (m1 - m0 == 1) {
        __m256 t = dot8(xq + m0 * nb, w8, wt, rb, nb);
        if (bias) t = _mm256_add_ps(t, bv);
        _mm256_storeu_ps(y + m0 * N + n, t);
        return;
    }
    chunk_prep pr;
    /* packed Q4: the nibbles split once per chunk, not once per activation row */
    const int expand = wt == OPG_Q4_0_X8 || wt == OPG_Q4_1_X8;
    __m256i ex[OPG_QCHUNK_BLOCKS * 8];
    for (int64_t ms = m0; ms < m1; ms += MSUB) {
        int64_t me = ms + MSUB < m1 ? ms + MSUB : m1;
        __m256 total[MSUB];
        for (int64_t m = ms; m < me; m++) total[m - ms] = _mm256_setzero_ps(); /* K == 0: +0 */
        for (int64_t c = 0; c * OPG_QCHUNK_BLOCKS < nb; c++) {
            int nblk = nb - c * 8 < 8 ? (int)(nb - c * 8) : 8;
            prep_chunk(&pr, wt, w8, rb, c, nblk);
            if (expand) expand_q4_x8(ex, w8, wt, c, nblk);
            for (int64_t m = ms; m < me; m++) {
                __m256 p = chunk_dot(&pr, wt, w8, rb, c, nblk, xq + m * nb, NULL, 0, expand ? ex : NULL);
                total[m - ms] = c == 0 ? p : _mm256_add_ps(total[m - ms], p);
            }
        }
        for (int64_t m = ms; m < me; m++) {
            __m256 t = total[m - ms];
            if (bias) t = _mm256_add_ps(t, bv);
            _mm256_storeu_ps(y + m * N + n, t);
        }
    }
}

#define DEFINE_TILE8(name, type)                                                           \
    static void name(float *y, const opg_block_q8a *xq, const uint8_t *w8, const float *bias, \
                     int64_t n, int64_t N, int64_t K, int64_t m0, int64_t m1) {            \
        tile8(y, xq, w8, type, bias, n, N, K, m0, m1);                                     \
    }
DEFINE_TILE8(tile8_q8_0, OPG_Q8_0)
DEFINE_TILE8(tile8_q4_0, OPG_Q4_0)
DEFINE_TILE8(tile8_q4_1, OPG_Q4_1)
DEFINE_TILE8(tile8_q4_0_x8, OPG_Q4_0_X8)
DEFINE_TILE8(tile8_q4_1_x8, OPG_Q4_1_X8)
DEFINE_TILE8(tile8_q8_0_x8, OPG_Q8_0_X8)
DEFINE_TILE8(tile8_q4_K_x8, OPG_Q4_K_X8)
DEFINE_TILE8(tile8_q6_K_x8, OPG_Q6_K_X8)
DEFINE_TILE8(tile8_q4_K, OPG_Q4_K)
DEFINE_TILE8(tile8_q6_K, OPG_Q6_K)

void opg__qmatmul_tile_avx2(float *y, const opg_block_q8a *xq, const void *w, opg_dtype wt,
                            const float *bias, int64_t N, int64_t K, int64_t m0, int64_t m1,
                            int64_t n0, int64_t n1) {
    const size_t rb = opg_dtype_row_bytes(wt, K);
    const int64_t nb = K / OPG_QK;
    const uint8_t *wb = w;
    /* n0 is a multiple of 8 (qmatmul.c asserts its tiles so): w8 below is then
     * the start of an 8-row group in the packed layouts too */
    int64_t n = n0;
    for (; n + 8 <= n1; n += 8) {
        const uint8_t *w8 = wb + (size_t)n * rb;
        switch (wt) {
        case OPG_Q8_0: tile8_q8_0(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_0: tile8_q4_0(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_1: tile8_q4_1(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_0_X8: tile8_q4_0_x8(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_1_X8: tile8_q4_1_x8(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q8_0_X8: tile8_q8_0_x8(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_K_X8: tile8_q4_K_x8(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q6_K_X8: tile8_q6_K_x8(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_K: tile8_q4_K(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q6_K: tile8_q6_K(y, xq, w8, bias, n, N, K, m0, m1); break;
        default: return;
        }
    }
    for (; n < n1; n++) { /* rows past the last 8 (none for _X8 types: N % 8 == 0) */
        for (int64_t m = m0; m < m1; m++) {
            float v = opg_qdot_row_ref(wb, wt, n, xq + m * nb, K);
            if (bias) v = v + bias[n];
            y[m * N + n] = v;
        }
    }
}
