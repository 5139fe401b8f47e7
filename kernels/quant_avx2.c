/* quant_avx2.c: AVX2 integer path, the same bits as quant.c.
 *
 * Activation quantization: 8 lanes = 8 elements of one block; every step is
 * elementwise (division, rint, clamp) or exact (max, integer sum), so lanes
 * change nothing.
 *
 * Matmul: 8 weight rows at once, one output row per float lane. Per 32-block
 * the 8 rows' exact int32 block sums are formed with byte multiplies
 * (maddubs: unsigned x signed, pairs summed in int16 without saturation for
 * every operand range here) and a horizontal-add tree that leaves row r's sum
 * in lane r; from there each lane runs exactly the f32 steps of the spec for
 * its row (section 5: block terms fma'd into the chunk accumulator in block
 * order, chunk partials combined left to right). Integer sums are exact, so
 * their evaluation order is free. Rows left over (N % 8) use opg_qdot_ref. */
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
    return _mm256_setr_epi32((int)ld32(p), (int)ld32(p + stride), (int)ld32(p + 2 * stride),
                             (int)ld32(p + 3 * stride), (int)ld32(p + 4 * stride),
                             (int)ld32(p + 5 * stride), (int)ld32(p + 6 * stride),
                             (int)ld32(p + 7 * stride));
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

/* Lane r = the sum of the 8 int32 lanes of s[r] (exact). */
ALWAYS_INLINE __m256i hsum8(const __m256i s[8]) {
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

/* 32 unsigned 4-bit values from 16 bytes: low nibbles are elements 0..15,
 * high nibbles 16..31 (Q4_0/Q4_1 order). */
ALWAYS_INLINE __m256i unpack_nibbles16(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m256i w = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(w, _mm256_set1_epi8(0x0f));
}

ALWAYS_INLINE __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* ---- one 8-row chunk per type ----------------------------------------------
 * prep_*: the per-chunk weight data shared by all activation rows (scales
 * of the 8 rows, converted or unpacked once); chunk_*: the partial p_c of the
 * 8 rows against one activation row, exactly the spec's acc sequence. */

typedef struct {
    __m256 d[8], m[8];           /* Q8_0/Q4_0/Q4_1: per block; Q4_K/Q6_K: d[0], m[0] */
    __m256i sc[8], mn[8];        /* Q4_K: 6-bit scale and min per sub-block */
    __m256i sclo[8], schi[8];    /* Q6_K: int16 scales of each row, halves broadcast */
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
            __m256i dm = load_u32x8(w8 + (c * 8 + i) * sizeof(opg_block_q4_1), rb);
            pr->d[i] = f16lo_ps(dm);
            pr->m[i] = f16hi_ps(dm);
        }
        break;
    case OPG_Q4_K: {
        const uint8_t *base = w8 + c * sizeof(opg_block_q4_K);
        __m256i dd = load_u32x8(base, rb);
        pr->d[0] = f16lo_ps(dd);
        pr->m[0] = f16hi_ps(dd);
        /* get_scale_min_k4 on 4 packed bytes at a time (as ggml's vec_dot_q4_K) */
        __m256i w0 = load_u32x8(base + 4, rb), w1 = load_u32x8(base + 8, rb);
        __m256i w2 = load_u32x8(base + 12, rb);
        const __m256i m3f = _mm256_set1_epi8(0x3f), m0f = _mm256_set1_epi8(0x0f);
        const __m256i m30 = _mm256_set1_epi8(0x30), mff = _mm256_set1_epi32(0xff);
        __m256i sc_lo = _mm256_and_si256(w0, m3f), mn_lo = _mm256_and_si256(w1, m3f);
        __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(w2, m0f),
                                        _mm256_and_si256(_mm256_srli_epi32(w0, 2), m30));
        __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, 4), m0f),
                                        _mm256_and_si256(_mm256_srli_epi32(w1, 2), m30));
        pr->sc[0] = _mm256_and_si256(sc_lo, mff);
        pr->sc[1] = _mm256_and_si256(_mm256_srli_epi32(sc_lo, 8), mff);
        pr->sc[2] = _mm256_and_si256(_mm256_srli_epi32(sc_lo, 16), mff);
        pr->sc[3] = _mm256_srli_epi32(sc_lo, 24);
        pr->sc[4] = _mm256_and_si256(sc_hi, mff);
        pr->sc[5] = _mm256_and_si256(_mm256_srli_epi32(sc_hi, 8), mff);
        pr->sc[6] = _mm256_and_si256(_mm256_srli_epi32(sc_hi, 16), mff);
        pr->sc[7] = _mm256_srli_epi32(sc_hi, 24);
        pr->mn[0] = _mm256_and_si256(mn_lo, mff);
        pr->mn[1] = _mm256_and_si256(_mm256_srli_epi32(mn_lo, 8), mff);
        pr->mn[2] = _mm256_and_si256(_mm256_srli_epi32(mn_lo, 16), mff);
        pr->mn[3] = _mm256_srli_epi32(mn_lo, 24);
        pr->mn[4] = _mm256_and_si256(mn_hi, mff);
        pr->mn[5] = _mm256_and_si256(_mm256_srli_epi32(mn_hi, 8), mff);
        pr->mn[6] = _mm256_and_si256(_mm256_srli_epi32(mn_hi, 16), mff);
        pr->mn[7] = _mm256_srli_epi32(mn_hi, 24);
        break;
    }
    case OPG_Q6_K: {
        const uint8_t *base = w8 + c * sizeof(opg_block_q6_K);
        /* d is the last field: read the word ending at it, not past the row */
        pr->d[0] = f16hi_ps(load_u32x8(base + offsetof(opg_block_q6_K, d) - 2, rb));
        for (int r = 0; r < 8; r++) {
            __m128i s8 = _mm_loadu_si128((const __m128i *)(base + r * rb + offsetof(opg_block_q6_K, scales)));
            __m256i s16 = _mm256_cvtepi8_epi16(s8);
            pr->sclo[r] = _mm256_permute2x128_si256(s16, s16, 0x00);
            pr->schi[r] = _mm256_permute2x128_si256(s16, s16, 0x11);
        }
        break;
    }
    default: break;
    }
}

/* p_c for 8 rows (w8: row 0 of the 8, rb bytes per row) against the
 * activation row xa (all its blocks). */
ALWAYS_INLINE __m256 chunk_dot(const chunk_prep *pr, opg_dtype wt, const uint8_t *w8,
                               size_t rb, int64_t c, int nblk, const opg_block_q8a *xa) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    __m256i s[8];
    switch (wt) {
    case OPG_Q8_0:
        for (int i = 0; i < nblk; i++) {
            const opg_block_q8a *a = xa + c * 8 + i;
            const __m256i ax = loadu256(a->qs);
            const uint8_t *p = w8 + (c * 8 + i) * sizeof(opg_block_q8_0) + offsetof(opg_block_q8_0, qs);
            for (int r = 0; r < 8; r++) {
                __m256i q = loadu256(p + r * rb);
                /* q*x = |q| * (x*sign(q)): unsigned x signed for maddubs; |q| <= 128 */
                __m256i prod = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(ax, q));
                s[r] = _mm256_madd_epi16(prod, ones);
            }
            __m256 I = _mm256_cvtepi32_ps(hsum8(s));
            __m256 sd = _mm256_mul_ps(pr->d[i], _mm256_set1_ps(a->d));
            acc = _mm256_fmadd_ps(sd, I, acc);
        }
        break;
    case OPG_Q4_0:
        for (int i = 0; i < nblk; i++) {
            const opg_block_q8a *a = xa + c * 8 + i;
            const __m256i ax = loadu256(a->qs);
            const uint8_t *p = w8 + (c * 8 + i) * sizeof(opg_block_q4_0) + offsetof(opg_block_q4_0, qs);
            for (int r = 0; r < 8; r++)
                s[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles16(p + r * rb), ax), ones);
            /* sum (q-8)*x = sum q*x - 8*sum x */
            __m256i Ii = _mm256_sub_epi32(hsum8(s), _mm256_set1_epi32(8 * a->sum));
            __m256 sd = _mm256_mul_ps(pr->d[i], _mm256_set1_ps(a->d));
            acc = _mm256_fmadd_ps(sd, _mm256_cvtepi32_ps(Ii), acc);
        }
        break;
    case OPG_Q4_1:
        for (int i = 0; i < nblk; i++) {
            const opg_block_q8a *a = xa + c * 8 + i;
            const __m256i ax = loadu256(a->qs);
            const uint8_t *p = w8 + (c * 8 + i) * sizeof(opg_block_q4_1) + offsetof(opg_block_q4_1, qs);
            for (int r = 0; r < 8; r++)
                s[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles16(p + r * rb), ax), ones);
            __m256 A = _mm256_mul_ps(pr->d[i], _mm256_cvtepi32_ps(hsum8(s)));
            __m256 B = _mm256_mul_ps(pr->m[i], _mm256_set1_ps((float)a->sum));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(a->d), _mm256_add_ps(A, B), acc);
        }
        break;
    case OPG_Q4_K: {
        const uint8_t *p = w8 + c * sizeof(opg_block_q4_K) + offsetof(opg_block_q4_K, qs);
        const __m256i m0f = _mm256_set1_epi8(0x0f);
        for (int j = 0; j < 8; j++) {
            const opg_block_q8a *a = xa + c * 8 + j;
            const __m256i ax = loadu256(a->qs);
            for (int r = 0; r < 8; r++) {
                __m256i v = loadu256(p + r * rb + 32 * (j / 2));
                __m256i q = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(v, 4) : v, m0f);
                s[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(q, ax), ones);
            }
            __m256i scI = _mm256_mullo_epi32(pr->sc[j], hsum8(s));
            __m256i mS = _mm256_mullo_epi32(pr->mn[j], _mm256_set1_epi32(a->sum));
            __m256 A = _mm256_mul_ps(pr->d[0], _mm256_cvtepi32_ps(scI));
            __m256 B = _mm256_mul_ps(pr->m[0], _mm256_cvtepi32_ps(mS));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(a->d), _mm256_sub_ps(A, B), acc);
        }
        break;
    }
    case OPG_Q6_K: {
        const uint8_t *p = w8 + c * sizeof(opg_block_q6_K);
        const __m256i m0f = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
        for (int j = 0; j < 8; j++) {
            const int h = j / 4, g = j % 4;
            const opg_block_q8a *a = xa + c * 8 + j;
            const __m256i ax = loadu256(a->qs);
            /* sum (q-32)*x per pair = maddubs(q, x) - maddubs(32, x), both exact in int16 */
            const __m256i x32 = _mm256_maddubs_epi16(_mm256_set1_epi8(32), ax);
            /* int16 scale of the first 16 elements in the low half, of the last 16 in the high */
            const __m256i pick = _mm256_setr_epi8(
                (char)(4 * g), (char)(4 * g + 1), (char)(4 * g), (char)(4 * g + 1), (char)(4 * g), (char)(4 * g + 1),
                (char)(4 * g), (char)(4 * g + 1), (char)(4 * g), (char)(4 * g + 1), (char)(4 * g), (char)(4 * g + 1),
                (char)(4 * g), (char)(4 * g + 1), (char)(4 * g), (char)(4 * g + 1),
                (char)(4 * g + 2), (char)(4 * g + 3), (char)(4 * g + 2), (char)(4 * g + 3), (char)(4 * g + 2),
                (char)(4 * g + 3), (char)(4 * g + 2), (char)(4 * g + 3), (char)(4 * g + 2), (char)(4 * g + 3),
                (char)(4 * g + 2), (char)(4 * g + 3), (char)(4 * g + 2), (char)(4 * g + 3), (char)(4 * g + 2),
                (char)(4 * g + 3));
            for (int r = 0; r < 8; r++) {
                const uint8_t *pr_ = p + r * rb;
                __m256i ql = loadu256(pr_ + 64 * h + 32 * (g & 1));
                __m256i lo = _mm256_and_si256(g < 2 ? ql : _mm256_srli_epi16(ql, 4), m0f);
                __m256i qh = loadu256(pr_ + offsetof(opg_block_q6_K, qh) + 32 * h);
                __m256i hb = g == 0 ? _mm256_slli_epi16(qh, 4)
                           : g == 1 ? _mm256_slli_epi16(qh, 2)
                           : g == 2 ? qh
                                    : _mm256_srli_epi16(qh, 2);
                __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hb, m30));
                __m256i prod = _mm256_sub_epi16(_mm256_maddubs_epi16(q, ax), x32);
                __m256i scv = _mm256_shuffle_epi8(h ? pr->schi[r] : pr->sclo[r], pick);
                s[r] = _mm256_madd_epi16(prod, scv);
            }
            __m256 sd = _mm256_mul_ps(pr->d[0], _mm256_set1_ps(a->d));
            acc = _mm256_fmadd_ps(sd, _mm256_cvtepi32_ps(hsum8(s)), acc);
        }
        break;
    }
    default: break;
    }
    return acc;
}

/* ---- the tile ---------------------------------------------------------------- */

#define MSUB 32 /* activation rows whose running totals are kept per chunk pass */

/* Rows [n, n+8) x activation rows [m0, m1): chunk by chunk, so the 8 rows'
 * chunk of weights stays in L1 while every activation row uses it. */
ALWAYS_INLINE void tile8(float *y, const opg_block_q8a *xq, const uint8_t *w8, opg_dtype wt,
                         const float *bias, int64_t n, int64_t N, int64_t K, int64_t m0,
                         int64_t m1) {
    const size_t rb = opg_dtype_row_bytes(wt, K);
    const int64_t nb = K / OPG_QK;
    const __m256 bv = bias ? _mm256_loadu_ps(bias + n) : _mm256_setzero_ps();
    chunk_prep pr;
    for (int64_t ms = m0; ms < m1; ms += MSUB) {
        int64_t me = ms + MSUB < m1 ? ms + MSUB : m1;
        __m256 total[MSUB];
        for (int64_t m = ms; m < me; m++) total[m - ms] = _mm256_setzero_ps(); /* K == 0: +0 */
        for (int64_t c = 0; c * OPG_QCHUNK_BLOCKS < nb; c++) {
            int nblk = nb - c * 8 < 8 ? (int)(nb - c * 8) : 8;
            prep_chunk(&pr, wt, w8, rb, c, nblk);
            for (int64_t m = ms; m < me; m++) {
                __m256 p = chunk_dot(&pr, wt, w8, rb, c, nblk, xq + m * nb);
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
DEFINE_TILE8(tile8_q4_K, OPG_Q4_K)
DEFINE_TILE8(tile8_q6_K, OPG_Q6_K)

void opg__qmatmul_tile_avx2(float *y, const opg_block_q8a *xq, const void *w, opg_dtype wt,
                            const float *bias, int64_t N, int64_t K, int64_t m0, int64_t m1,
                            int64_t n0, int64_t n1) {
    const size_t rb = opg_dtype_row_bytes(wt, K);
    const int64_t nb = K / OPG_QK;
    const uint8_t *wb = w;
    int64_t n = n0;
    for (; n + 8 <= n1; n += 8) {
        const uint8_t *w8 = wb + (size_t)n * rb;
        switch (wt) {
        case OPG_Q8_0: tile8_q8_0(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_0: tile8_q4_0(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_1: tile8_q4_1(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q4_K: tile8_q4_K(y, xq, w8, bias, n, N, K, m0, m1); break;
        case OPG_Q6_K: tile8_q6_K(y, xq, w8, bias, n, N, K, m0, m1); break;
        default: return;
        }
    }
    for (; n < n1; n++) {
        for (int64_t m = m0; m < m1; m++) {
            float v = opg_qdot_ref(wb + (size_t)n * rb, wt, xq + m * nb, K);
            if (bias) v = v + bias[n];
            y[m * N + n] = v;
        }
    }
}
