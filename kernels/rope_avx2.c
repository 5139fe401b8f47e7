/* rope_avx2.c: AVX2 RoPE with the reference's bits: the sin/cos table on 4
 * binary64 lanes (opg_sincos_f64 step for step), the rotation on 8 pairs. */
#include "elementwise_impl.h"
#include "opg_math_avx2.h"

/* opg_sincos_f64 on 4 lanes: the same reduction, polynomials and quadrant
 * selection. The quadrant is k mod 4 computed exactly in binary64 (equal to
 * (int64_t)k & 3 wherever the scalar cast is defined), so no integer
 * conversion limits the range. */
static inline void sincos4(__m256d x, __m256d *s_out, __m256d *c_out) {
    const __m256d neg0 = _mm256_set1_pd(-0.0);
    __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(0.6366197723675814)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d nk = _mm256_xor_pd(k, neg0);
    __m256d r = _mm256_fmadd_pd(nk, _mm256_set1_pd(1.57079632673412561417e+00), x);
    r = _mm256_fmadd_pd(nk, _mm256_set1_pd(6.07710050630396597660e-11), r);
    r = _mm256_fmadd_pd(nk, _mm256_set1_pd(2.02226624871116645580e-21), r);
    __m256d z = _mm256_mul_pd(r, r);
    __m256d ps = _mm256_set1_pd(-8.22063524662433e-18);
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(2.8114572543455206e-15));
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(-7.647163731819816e-13));
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(1.6059043836821613e-10));
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(-2.505210838544172e-08));
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(2.7557319223985893e-06));
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(-0.0001984126984126984));
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(0.008333333333333333));
    ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(-0.16666666666666666));
    __m256d sr = _mm256_fmadd_pd(_mm256_mul_pd(r, z), ps, r);
    __m256d pc = _mm256_set1_pd(-1.5619206968586225e-16);
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(4.779477332387385e-14));
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(-1.1470745597729725e-11));
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(2.08767569878681e-09));
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(-2.755731922398589e-07));
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(2.48015873015873e-05));
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(-0.001388888888888889));
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(0.041666666666666664));
    pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(-0.5));
    __m256d cr = _mm256_fmadd_pd(z, pc, _mm256_set1_pd(1.0));
    /* q = k - 4*floor(k/4): every step exact for integral k */
    __m256d k4 = _mm256_floor_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.25)));
    __m256d q = _mm256_sub_pd(k, _mm256_mul_pd(_mm256_set1_pd(4.0), k4));
    __m256d q1 = _mm256_cmp_pd(q, _mm256_set1_pd(1.0), _CMP_EQ_OQ);
    __m256d q2 = _mm256_cmp_pd(q, _mm256_set1_pd(2.0), _CMP_EQ_OQ);
    __m256d q3 = _mm256_cmp_pd(q, _mm256_set1_pd(3.0), _CMP_EQ_OQ);
    __m256d nsr = _mm256_xor_pd(sr, neg0), ncr = _mm256_xor_pd(cr, neg0);
    __m256d s = _mm256_blendv_pd(sr, cr, q1);
    s = _mm256_blendv_pd(s, nsr, q2);
    s = _mm256_blendv_pd(s, ncr, q3);
    __m256d c = _mm256_blendv_pd(cr, nsr, q1);
    c = _mm256_blendv_pd(c, ncr, q2);
    c = _mm256_blendv_pd(c, sr, q3);
    *s_out = s;
    *c_out = c;
}

void opg__rope_table_avx2(float *cos_out, float *sin_out, int64_t pos, const double *inv_freq,
                          int n) {
    __m256d vpos = _mm256_set1_pd((double)pos);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d s, c;
        sincos4(_mm256_mul_pd(vpos, _mm256_loadu_pd(inv_freq + i)), &s, &c);
        _mm_storeu_ps(cos_out + i, _mm256_cvtpd_ps(c)); /* round to nearest, as (float) */
        _mm_storeu_ps(sin_out + i, _mm256_cvtpd_ps(s));
    }
    for (; i < n; i++) {
        double s, c;
        opg_sincos_f64((double)pos * inv_freq[i], &s, &c);
        cos_out[i] = (float)c;
        sin_out[i] = (float)s;
    }
}

/* The four steps of the pair rotation on 8 pairs; fmsub(a, b, t) is one
 * rounding of the exact a*b - t, i.e. the reference's fmaf(a, b, -t). */
static inline void rotate8(__m256 x0, __m256 x1, __m256 c, __m256 s, __m256 *y0, __m256 *y1) {
    __m256 t = _mm256_mul_ps(x1, s);
    *y0 = _mm256_fmsub_ps(x0, c, t);
    __m256 u = _mm256_mul_ps(x1, c);
    *y1 = _mm256_fmadd_ps(x0, s, u);
}

static inline void rotate1(float *x0, float *x1, float c, float s) {
    float t = *x1 * s;
    float y0 = fmaf(*x0, c, -t);
    float u = *x1 * c;
    float y1 = fmaf(*x0, s, u);
    *x0 = y0;
    *x1 = y1;
}

/* 64-bit quarters [A B C D] -> [A C B D]. */
static inline __m256 swap_mid64(__m256 v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
}

void opg__rope_apply_pairs_avx2(float *x, int n_heads, int head_dim, int n_dims,
                                const float *cs, const float *sn, int i0, int n,
                                opg_rope_mode mode) {
    int half = n_dims / 2;
    for (int h = 0; h < n_heads; h++) {
        float *xh = x + (int64_t)h * head_dim;
        int j = 0;
        if (mode == OPG_ROPE_NEOX) {
            for (; j + 8 <= n; j += 8) {
                float *p0 = xh + i0 + j, *p1 = p0 + half;
                __m256 y0, y1;
                rotate8(_mm256_loadu_ps(p0), _mm256_loadu_ps(p1), _mm256_loadu_ps(cs + j),
                        _mm256_loadu_ps(sn + j), &y0, &y1);
                _mm256_storeu_ps(p0, y0);
                _mm256_storeu_ps(p1, y1);
            }
            for (; j < n; j++) rotate1(&xh[i0 + j], &xh[i0 + j + half], cs[j], sn[j]);
        } else {
            for (; j + 8 <= n; j += 8) {
                float *p = xh + 2 * (i0 + j);
                __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
                /* even / odd elements: [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6] */
                __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
                __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
                ev = swap_mid64(ev);
                od = swap_mid64(od);
                __m256 y0, y1;
                rotate8(ev, od, _mm256_loadu_ps(cs + j), _mm256_loadu_ps(sn + j), &y0, &y1);
                __m256 lo = _mm256_unpacklo_ps(y0, y1), hi = _mm256_unpackhi_ps(y0, y1);
                _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
                _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
            }
            for (; j < n; j++) rotate1(&xh[2 * (i0 + j)], &xh[2 * (i0 + j) + 1], cs[j], sn[j]);
        }
    }
}
