/* test_math.c: the contract's own exp / sin / cos / log and the half-format
 * conversions, against libm in float64 (bounds from docs/determinism.md). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu.h"
#include "math_impl.h"
#include "opg_math.h"

/* Bounds stated in docs/determinism.md section 3. */
#define EXP_MAX_ULP 1.0
#define SINCOS_MAX_ULP 1.0
#define EXP64_MAX_REL 4e-16
#define LOG64_MAX_REL 4e-16

/* exp over every 29th f32 of its finite-result domain (every f32 with
 * OPG_TEST_EXHAUSTIVE=1), plus the edges. */
static void test_expf_accuracy(void **state) {
    (void)state;
    const char *ex = getenv("OPG_TEST_EXHAUSTIVE");
    uint64_t step = ex && *ex == '1' ? 1 : 29;
    double worst = 0.0;
    float worst_x = 0.0f;
    uint64_t n = 0;
    for (uint64_t u = 0; u <= 0xffffffffull; u += step) {
        float x = opg_bits_f32((uint32_t)u);
        if (!(x >= OPG_EXP_LO && x <= 88.7f)) continue;
        double ref = exp((double)x);
        double e = tu_ulp_vs_f64(opg_expf(x), ref);
        n++;
        if (e > worst) { worst = e; worst_x = x; }
    }
    print_message("opg_expf: %llu points, max error %.3f ulp at x=%.9g\n",
                  (unsigned long long)n, worst, (double)worst_x);
    assert_true(n * step > 2000000000ull); /* the whole domain was walked */
    assert_true(worst <= EXP_MAX_ULP);
}

static void test_expf_special(void **state) {
    (void)state;
    assert_true(opg_f32_bits(opg_expf(0.0f)) == opg_f32_bits(1.0f));
    assert_true(opg_f32_bits(opg_expf(-0.0f)) == opg_f32_bits(1.0f));
    assert_true(opg_expf(-INFINITY) == 0.0f && !signbit(opg_expf(-INFINITY)));
    assert_true(isinf(opg_expf(INFINITY)) && opg_expf(INFINITY) > 0);
    assert_true(isnan(opg_expf(NAN)));
    assert_true(isinf(opg_expf(89.0f)));
    assert_true(opg_expf(-104.0f) == 0.0f);
    /* largest finite result and smallest subnormal region stay close to libm */
    assert_true(tu_ulp_vs_f64(opg_expf(88.72f), exp((double)88.72f)) <= EXP_MAX_ULP);
    assert_true(tu_ulp_vs_f64(opg_expf(-100.0f), exp((double)-100.0f)) <= EXP_MAX_ULP);
    assert_true(opg_expf(-103.9f) > 0.0f);
}

static void test_silu(void **state) {
    (void)state;
    double worst = 0;
    for (float x = -60.0f; x <= 60.0f; x += 0.0137f) {
        double ref = (double)x / (1.0 + exp(-(double)x));
        double e = tu_ulp_vs_f64(opg_siluf(x), ref);
        if (e > worst) worst = e;
    }
    print_message("opg_siluf: max error %.3f ulp on [-60, 60]\n", worst);
    assert_true(worst <= 2.0); /* see docs/determinism.md */
    assert_true(opg_siluf(0.0f) == 0.0f);
    assert_true(opg_siluf(-200.0f) == -0.0f);
    assert_true(opg_siluf(200.0f) == 200.0f);
}

/* sin/cos: rounded from binary64, so within 1 f32 ulp of the exact value on
 * |x| <= 2^24. Dense near zero, sampled over the whole domain. */
static void test_sincos_accuracy(void **state) {
    (void)state;
    double worst = 0;
    float worst_x = 0;
    tu_rng r = {42};
    for (int i = 0; i < 4000000; i++) {
        float x;
        if (i < 2000000) x = tu_uniform(&r, -8.0f, 8.0f);
        else x = ldexpf(tu_uniform(&r, -1.0f, 1.0f), tu_int(&r, 0, 24));
        double s = tu_ulp_vs_f64(opg_sinf(x), sin((double)x));
        double c = tu_ulp_vs_f64(opg_cosf(x), cos((double)x));
        if (s > worst) { worst = s; worst_x = x; }
        if (c > worst) { worst = c; worst_x = x; }
    }
    print_message("opg_sinf/opg_cosf: max error %.3f ulp at x=%.9g\n", worst, (double)worst_x);
    assert_true(worst <= SINCOS_MAX_ULP);
    assert_true(opg_sinf(0.0f) == 0.0f && opg_cosf(0.0f) == 1.0f);
}

static void test_f64_helpers(void **state) {
    (void)state;
    double we = 0, wl = 0;
    tu_rng r = {7};
    for (int i = 0; i < 1000000; i++) {
        double x = (double)tu_uniform(&r, -40.0f, 40.0f) + (double)tu_uniform(&r, 0, 1) * 1e-7;
        double e = fabs(opg_exp_f64(x) - exp(x)) / exp(x);
        if (e > we) we = e;
        double y = ldexp((double)tu_uniform(&r, 0.5f, 1.0f), tu_int(&r, -60, 60));
        double l = log(y);
        double el = fabs(opg_log_f64(y) - l) / (fabs(l) > 1e-300 ? fabs(l) : 1.0);
        if (el > wl) wl = el;
    }
    print_message("opg_exp_f64 max rel err %.3g, opg_log_f64 max rel err %.3g\n", we, wl);
    assert_true(we <= EXP64_MAX_REL);
    assert_true(wl <= LOG64_MAX_REL);
    assert_true(opg_log_f64(1.0) == 0.0);
    assert_true(opg_exp_f64(0.0) == 1.0);
    assert_true(isinf(opg_log_f64(0.0)) && opg_log_f64(0.0) < 0);
    assert_true(isnan(opg_log_f64(-1.0)));
    assert_true(fabs(opg_log_f64(4.9406564584124654e-324) - log(4.9406564584124654e-324)) < 1e-12);
}

/* f16 -> f32 is exact for all 65536 patterns; f32 -> f16 rounds to nearest
 * even (checked against the exact midpoint rule on every f16 neighbourhood). */
static void test_half_formats(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = opg_f16_to_f32((uint16_t)h);
        int exp = (h >> 10) & 31, man = h & 1023;
        double ref = exp == 0 ? ldexp(man, -24) : exp == 31 ? (man ? NAN : INFINITY)
                                                           : ldexp(1024 + man, exp - 25);
        if (h & 0x8000) ref = -ref;
        if (isnan(ref)) { assert_true(isnan(f)); continue; }
        assert_true((double)f == ref);
        assert_int_equal(opg_f32_to_f16(f), h); /* round trip */
        assert_true(opg_f32_bits(opg_bf16_to_f32(opg_f32_to_bf16(f))) == opg_f32_bits(f) ||
                    fabsf(opg_bf16_to_f32(opg_f32_to_bf16(f)) - f) <= fabsf(f) * 0x1p-8f);
    }
    /* ties to even */
    assert_int_equal(opg_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(opg_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(opg_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(opg_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(opg_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(opg_f32_to_f16(0x1.000002p-25f), 0x0001);
    assert_int_equal(opg_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(opg_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
}

/* The AVX2 mirrors give the scalar bits on every lane, including the edges. */
static void test_avx2_bits(void **state) {
    (void)state;
    if (opg_cpu_best_level() < OPG_CPU_AVX2) { skip(); return; }
    enum { N = 1 << 16 };
    static float x[N], a[N], b[N];
    for (uint64_t base = 0; base <= 0xffffffffull; base += (uint64_t)N * 97) {
        for (int i = 0; i < N; i++) x[i] = opg_bits_f32((uint32_t)(base + (uint64_t)i * 97));
        for (int i = 0; i < N; i++) a[i] = opg_expf(x[i]);
        opg__expf_avx2_array(b, x, N);
        tu_assert_bits(a, b, N, "expf avx2 vs scalar");
        for (int i = 0; i < N; i++) a[i] = opg_siluf(x[i]);
        opg__siluf_avx2_array(b, x, N);
        tu_assert_bits(a, b, N, "siluf avx2 vs scalar");
    }
    float edge[16] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, OPG_EXP_HI, OPG_EXP_LO, 89.0f,
                      -104.0f, -103.9f, 88.72f, 1e-45f, -1e-45f, 0.5f, -87.5f, 3.0f};
    for (int i = 0; i < 16; i++) a[i] = opg_expf(edge[i]);
    opg__expf_avx2_array(b, edge, 16);
    tu_assert_bits(a, b, 16, "expf avx2 edges");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_special),
        cmocka_unit_test(test_expf_accuracy),
        cmocka_unit_test(test_silu),
        cmocka_unit_test(test_sincos_accuracy),
        cmocka_unit_test(test_f64_helpers),
        cmocka_unit_test(test_half_formats),
        cmocka_unit_test(test_avx2_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
