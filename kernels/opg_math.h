/* opg_math.h: the contract's own elementary functions and number formats.
 *
 * One source for the C reference, the AVX2 paths (which mirror these operation
 * sequences lane by lane) and the CUDA kernels (nvcc compiles this same file
 * as __host__ __device__). Only IEEE-754 + - * / sqrt fma and exact integer
 * operations appear, each written out, so every backend produces the same
 * bits. docs/determinism.md section 3 is the prose version of this file.
 *
 * Requires: -ffp-contract=off (C) / -fmad=false (CUDA). */
#ifndef OPG_MATH_H
#define OPG_MATH_H

#include <stdint.h>
#include <math.h>

#ifdef __CUDACC__
#define OPG_HD static __host__ __device__ __forceinline__
#else
#define OPG_HD static inline
#endif

/* ---- bit casts ----------------------------------------------------------- */
OPG_HD uint32_t opg_f32_bits(float f) { union { float f; uint32_t u; } v; v.f = f; return v.u; }
OPG_HD float opg_bits_f32(uint32_t u) { union { float f; uint32_t u; } v; v.u = u; return v.f; }
OPG_HD uint64_t opg_f64_bits(double f) { union { double f; uint64_t u; } v; v.f = f; return v.u; }
OPG_HD double opg_bits_f64(uint64_t u) { union { double f; uint64_t u; } v; v.u = u; return v.f; }

/* ---- half formats: conversions to f32 are exact -------------------------- */
OPG_HD float opg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return opg_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, nan */
    if (exp != 0) return opg_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return opg_bits_f32(sign);
    /* subnormal half: normalise into an f32 (exact) */
    int e = -1;
    do { man <<= 1; e++; } while ((man & 0x400u) == 0);
    return opg_bits_f32(sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13));
}

/* f32 -> f16, round to nearest even, overflow to inf, nan kept quiet. */
OPG_HD uint16_t opg_f32_to_f16(float f) {
    uint32_t x = opg_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (ax < 0x38800000u) { /* f16 subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((ax >> 13) - (112u << 10)), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

OPG_HD float opg_bf16_to_f32(uint16_t h) { return opg_bits_f32((uint32_t)h << 16); }

/* f32 -> bf16, round to nearest even, nan kept quiet. */
OPG_HD uint16_t opg_f32_to_bf16(float f) {
    uint32_t x = opg_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ---- exp (f32), the hot one: softmax, attention, SiLU ---------------------
 * n = rint(x * log2e); r = x - n*ln2 (two fma steps, Cody-Waite);
 * p = degree-7 polynomial in r (Horner, fma); result = (p * 2^e1) * 2^e2
 * with e1 = floor(n/2), e2 = n - e1, so results that are subnormal are
 * rounded exactly once. Error bound: docs/determinism.md (tested). */
#define OPG_EXP_HI 88.72283935546875f
#define OPG_EXP_LO (-103.97208404541015625f)
#define OPG_LOG2E_F 1.44269502162933349609375f
#define OPG_LN2_HI_F 0.693145751953125f
#define OPG_LN2_LO_F 1.428606765330187045e-06f
#define OPG_EXP_C6 1.9875691500e-4f
#define OPG_EXP_C5 1.3981999507e-3f
#define OPG_EXP_C4 8.3334519073e-3f
#define OPG_EXP_C3 4.1665795894e-2f
#define OPG_EXP_C2 1.6666665459e-1f
#define OPG_EXP_C1 5.0000001201e-1f

OPG_HD float opg_pow2i_f32(int e) { return opg_bits_f32((uint32_t)(e + 127) << 23); } /* e in [-126,127] */

OPG_HD float opg_expf(float x) {
    if (x != x) return x;
    if (x > OPG_EXP_HI) return opg_bits_f32(0x7f800000u);
    if (x < OPG_EXP_LO) return 0.0f;
    float n = rintf(x * OPG_LOG2E_F);
    float r = fmaf(n, -OPG_LN2_HI_F, x);
    r = fmaf(n, -OPG_LN2_LO_F, r);
    float p = OPG_EXP_C6;
    p = fmaf(p, r, OPG_EXP_C5);
    p = fmaf(p, r, OPG_EXP_C4);
    p = fmaf(p, r, OPG_EXP_C3);
    p = fmaf(p, r, OPG_EXP_C2);
    p = fmaf(p, r, OPG_EXP_C1);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int ni = (int)n;           /* exact: n is integral, in [-150, 128] */
    int e1 = ni >> 1;          /* floor(n/2): arithmetic shift */
    int e2 = ni - e1;
    return (p * opg_pow2i_f32(e1)) * opg_pow2i_f32(e2);
}

/* SiLU: x / (1 + exp(-x)), three rounded steps. */
OPG_HD float opg_siluf(float x) {
    float e = opg_expf(-x);
    float d = 1.0f + e;
    return x / d;
}

/* ---- double-precision helpers for tables (RoPE frequencies and angles) ----
 * Not in any hot loop; computed in binary64 with fixed sequences so the
 * rounded f32 results are correctly rounded in practice (bound tested). */
OPG_HD double opg_pow2i_f64(int e) { return opg_bits_f64((uint64_t)(e + 1023) << 52); } /* e in [-1022,1023] */

/* exp(x) for x in [-700, 700]; returns 0 / inf outside. */
OPG_HD double opg_exp_f64(double x) {
    if (x != x) return x;
    if (x > 700.0) return opg_bits_f64(0x7ff0000000000000ull);
    if (x < -700.0) return 0.0;
    double n = rint(x * 1.4426950408889634);
    double r = fma(n, -6.93147180369123816490e-01, x); /* ln2 high part (fdlibm) */
    r = fma(n, -1.90821492927058770002e-10, r);          /* ln2 low part */
    double p = 1.1470745597729725e-11;                   /* 1/14! */
    p = fma(p, r, 1.6059043836821613e-10);
    p = fma(p, r, 2.08767569878681e-09);
    p = fma(p, r, 2.505210838544172e-08);
    p = fma(p, r, 2.755731922398589e-07);
    p = fma(p, r, 2.7557319223985893e-06);
    p = fma(p, r, 2.48015873015873e-05);
    p = fma(p, r, 0.0001984126984126984);
    p = fma(p, r, 0.001388888888888889);
    p = fma(p, r, 0.008333333333333333);
    p = fma(p, r, 0.041666666666666664);
    p = fma(p, r, 0.16666666666666666);
    p = fma(p, r, 0.5);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    int ni = (int)n;
    int e1 = ni >> 1, e2 = ni - e1;
    return (p * opg_pow2i_f64(e1)) * opg_pow2i_f64(e2);
}

/* log(x) for finite x > 0 (normal or subnormal); nan for x < 0 or nan,
 * -inf for 0, inf for inf. log(m*2^e) = e*ln2 + 2*atanh((m-1)/(m+1)). */
OPG_HD double opg_log_f64(double x) {
    if (x != x || x < 0.0) return opg_bits_f64(0x7ff8000000000000ull);
    if (x == 0.0) return opg_bits_f64(0xfff0000000000000ull);
    if (x > 1.7976931348623157e308) return x;
    int e = 0;
    if (x < 2.2250738585072014e-308) { x = x * 18014398509481984.0; e = -54; } /* 2^54 */
    uint64_t b = opg_f64_bits(x);
    e += (int)((b >> 52) & 0x7ff) - 1023;
    double m = opg_bits_f64((b & 0x000fffffffffffffull) | 0x3ff0000000000000ull); /* [1,2) */
    if (m > 1.4142135623730951) { m = m * 0.5; e += 1; }
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double p = 0.04;                 /* 1/25 */
    p = fma(p, z, 0.043478260869565216);
    p = fma(p, z, 0.047619047619047616);
    p = fma(p, z, 0.05263157894736842);
    p = fma(p, z, 0.058823529411764705);
    p = fma(p, z, 0.06666666666666667);
    p = fma(p, z, 0.07692307692307693);
    p = fma(p, z, 0.09090909090909091);
    p = fma(p, z, 0.1111111111111111);
    p = fma(p, z, 0.14285714285714285);
    p = fma(p, z, 0.2);
    p = fma(p, z, 0.3333333333333333);
    double lm = fma(2.0 * s, z * p, 2.0 * s); /* 2s + 2s*z*p */
    double de = (double)e;
    return fma(de, 6.93147180369123816490e-01, fma(de, 1.90821492927058770002e-10, lm));
}

/* sin and cos of x for |x| <= 2^24 (the RoPE angle domain); Cody-Waite
 * reduction by pi/2 in three fma steps, Taylor polynomials on [-pi/4, pi/4]. */
OPG_HD void opg_sincos_f64(double x, double *s_out, double *c_out) {
    double k = rint(x * 0.6366197723675814);
    double r = fma(-k, 1.57079632673412561417e+00, x);
    r = fma(-k, 6.07710050630396597660e-11, r);
    r = fma(-k, 2.02226624871116645580e-21, r);
    double z = r * r;
    double ps = -8.22063524662433e-18;
    ps = fma(ps, z, 2.8114572543455206e-15);
    ps = fma(ps, z, -7.647163731819816e-13);
    ps = fma(ps, z, 1.6059043836821613e-10);
    ps = fma(ps, z, -2.505210838544172e-08);
    ps = fma(ps, z, 2.7557319223985893e-06);
    ps = fma(ps, z, -0.0001984126984126984);
    ps = fma(ps, z, 0.008333333333333333);
    ps = fma(ps, z, -0.16666666666666666);
    double sr = fma(r * z, ps, r);           /* r + r^3 * P(z) */
    double pc = -1.5619206968586225e-16;
    pc = fma(pc, z, 4.779477332387385e-14);
    pc = fma(pc, z, -1.1470745597729725e-11);
    pc = fma(pc, z, 2.08767569878681e-09);
    pc = fma(pc, z, -2.755731922398589e-07);
    pc = fma(pc, z, 2.48015873015873e-05);
    pc = fma(pc, z, -0.001388888888888889);
    pc = fma(pc, z, 0.041666666666666664);
    pc = fma(pc, z, -0.5);
    double cr = fma(z, pc, 1.0);             /* 1 + z * Q(z) */
    int q = (int)((int64_t)k & 3);
    double s = q == 0 ? sr : q == 1 ? cr : q == 2 ? -sr : -cr;
    double c = q == 0 ? cr : q == 1 ? -sr : q == 2 ? -cr : sr;
    *s_out = s;
    *c_out = c;
}

/* f32 sin/cos: the f64 result rounded once. */
OPG_HD float opg_sinf(float x) { double s, c; opg_sincos_f64((double)x, &s, &c); return (float)s; }
OPG_HD float opg_cosf(float x) { double s, c; opg_sincos_f64((double)x, &s, &c); return (float)c; }

#endif /* OPG_MATH_H */
