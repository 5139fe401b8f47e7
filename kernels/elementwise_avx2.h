/* elementwise_avx2.h: eight canonical chunk chains at once, one per lane, for
 * the AVX2 RMSNorm and softmax. Include only from *_avx2.c files.
 *
 * A chunk partial of section 4 is one sequential chain and cannot be split
 * across lanes; but eight independent chains (eight rows, or eight chunks of
 * one row) can run side by side, lane j doing exactly the scalar sequence of
 * chain j. Loads are transposed 8x8 so lane j sees element k of chain j. */
#ifndef OPG_ELEMENTWISE_AVX2_H
#define OPG_ELEMENTWISE_AVX2_H

#include <immintrin.h>
#include <stdint.h>

/* r[j] holds row j of an 8x8 block; afterwards r[k] holds column k. */
static inline void ew_transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Element k of the eight chains p[0..7], as one vector (lane j = p[j][k]). */
static inline __m256 ew_column8(const float *const p[8], int64_t k) {
    return _mm256_setr_ps(p[0][k], p[1][k], p[2][k], p[3][k], p[4][k], p[5][k], p[6][k],
                          p[7][k]);
}

/* Lane j: acc = +0; acc = fmaf(p[j][k], p[j][k], acc) for k = 0..n-1
 * (the chunk partial of a dot of a vector with itself). */
static inline __m256 ew_sumsq8(const float *const p[8], int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t n8 = n / 8 * 8;
    for (int64_t k = 0; k < n8; k += 8) {
        __m256 r[8];
        for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(p[j] + k);
        ew_transpose8(r);
        for (int j = 0; j < 8; j++) acc = _mm256_fmadd_ps(r[j], r[j], acc);
    }
    for (int64_t k = n8; k < n; k++) {
        __m256 v = ew_column8(p, k);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    return acc;
}

/* Lane j: acc = +0; acc = acc + p[j][k] for k = 0..n-1 (a canonical sum's
 * chunk partial). */
static inline __m256 ew_sum8(const float *const p[8], int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t n8 = n / 8 * 8;
    for (int64_t k = 0; k < n8; k += 8) {
        __m256 r[8];
        for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(p[j] + k);
        ew_transpose8(r);
        for (int j = 0; j < 8; j++) acc = _mm256_add_ps(acc, r[j]);
    }
    for (int64_t k = n8; k < n; k++) acc = _mm256_add_ps(acc, ew_column8(p, k));
    return acc;
}

#endif
