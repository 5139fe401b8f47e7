/* opg_math_avx2.h: 8-lane AVX2 mirrors of opg_math.h (same operation
 * sequence per lane, hence the same bits). Include only from *_avx2.c files. */
#ifndef OPG_MATH_AVX2_H
#define OPG_MATH_AVX2_H

#include <immintrin.h>

#include "opg_math.h"

/* opg_expf on 8 lanes. Out-of-range lanes are computed on a clamped value and
 * then replaced by +inf / +0 / the NaN input, exactly as the scalar branches. */
static inline __m256 opg_expf_avx2(__m256 x) {
    const __m256 hi = _mm256_set1_ps(OPG_EXP_HI), lo = _mm256_set1_ps(OPG_EXP_LO);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi); /* NaN lanes become lo here */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(OPG_LOG2E_F)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-OPG_LN2_HI_F), xc);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-OPG_LN2_LO_F), r);
    __m256 p = _mm256_set1_ps(OPG_EXP_C6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPG_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPG_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPG_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPG_EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPG_EXP_C1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n); /* exact: n integral */
    __m256i e1 = _mm256_srai_epi32(ni, 1);
    __m256i e2 = _mm256_sub_epi32(ni, e1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return y;
}

/* opg_siluf on 8 lanes: x / (1 + exp(-x)). */
static inline __m256 opg_siluf_avx2(__m256 x) {
    __m256 e = opg_expf_avx2(_mm256_xor_ps(x, _mm256_set1_ps(-0.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

#endif
