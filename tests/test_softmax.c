/* test_softmax.c: softmax (docs/determinism.md section 8): the reference
 * against the spec written out here and against float64, and every path
 * (scalar, AVX2, thread pools, batch sizes) against the reference bit for bit. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>

#include "cpu.h"
#include "opg_math.h"
#include "softmax.h"

/* Bound stated in docs/determinism.md section 8, in ulp of each y_i: against
 * the float64 softmax of the f32-rounded arguments d_i = x_i - m (what exp,
 * the sum and the division add), and against the exact float64 softmax for
 * inputs in [-8, 8] (where rounding d_i adds at most 4 ulp). */
#define SOFTMAX_MAX_ULP 32.0

/* Section 8 transcribed independently of kernels/softmax.c. */
static void spec_softmax(float *y, const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float total = 0.0f;
    for (int64_t c = 0; c * 256 < n; c++) {
        float p = 0.0f;
        for (int64_t k = c * 256; k < n && k < c * 256 + 256; k++) p = p + opg_expf(x[k] - m);
        total = c == 0 ? p : total + p;
    }
    for (int64_t i = 0; i < n; i++) y[i] = opg_expf(x[i] - m) / total;
}

static void restore_level(void) { opg_cpu_set_level(opg_cpu_best_level()); }

static void test_known_values(void **state) {
    (void)state;
    float x[4] = {1.0f, 1.0f, 1.0f, 1.0f}, y[4];
    opg_softmax_ref(y, x, 4);
    for (int i = 0; i < 4; i++) assert_true(y[i] == 0.25f);
    float z[3] = {-1000.0f, 5.0f, -1000.0f};
    opg_softmax_ref(z, z, 3); /* in place; exp(-1005) is +0 */
    assert_true(z[0] == 0.0f && z[1] == 1.0f && z[2] == 0.0f && !signbit(z[0]));
    float one = 42.0f;
    opg_softmax_ref(&one, &one, 1);
    assert_true(one == 1.0f);
    /* NaN in, NaN out (every output) */
    float a[5] = {0.5f, NAN, 2.0f, -1.0f, 3.0f}, b[5];
    opg_softmax_ref(b, a, 5);
    for (int i = 0; i < 5; i++) assert_true(isnan(b[i]));
}

static void test_matches_spec(void **state) {
    (void)state;
    tu_rng r = {21};
    const int64_t ns[] = {1, 7, 255, 256, 257, 1000, 4099};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        float *x = tu_alloc(n * 4), *a = tu_alloc(n * 4), *b = tu_alloc(n * 4);
        for (int rep = 0; rep < 4; rep++) {
            if (rep % 2) tu_fill_wild(&r, x, n);
            else tu_fill(&r, x, n, -20.0f, 20.0f);
            opg_softmax_ref(a, x, n);
            spec_softmax(b, x, n);
            tu_assert_bits(a, b, n, "reference vs spec transcription");
        }
        tu_free(x); tu_free(a); tu_free(b);
    }
}

/* Max ulp error of y against the float64 softmax of x, computed from the
 * exact x_i - m (exact_arg = 1) or from the f32-rounded x_i - m. */
static double measure(tu_rng *r, int64_t n, int rows, float range, int exact_arg) {
    float *x = tu_alloc(n * 4), *y = tu_alloc(n * 4);
    double *e = tu_alloc(n * 8);
    double worst = 0;
    for (int rep = 0; rep < rows; rep++) {
        tu_fill(r, x, n, -range, range);
        opg_softmax_ref(y, x, n);
        float m = x[0];
        for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            e[i] = exp(exact_arg ? (double)x[i] - (double)m : (double)(x[i] - m));
            s += e[i];
        }
        for (int64_t i = 0; i < n; i++) {
            double u = tu_ulp_vs_f64(y[i], e[i] / s);
            if (u > worst) worst = u;
        }
    }
    tu_free(x); tu_free(y); tu_free(e);
    return worst;
}

static void test_accuracy(void **state) {
    (void)state;
    tu_rng r = {22};
    const int64_t ns[] = {2, 10, 300, 4096, 32000, 152064};
    double worst = 0;
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int rows = ns[t] > 10000 ? 4 : 40;
        double a = measure(&r, ns[t], rows, 8.0f, 1);
        double b = measure(&r, ns[t], rows, 8.0f, 0), c = measure(&r, ns[t], rows, 30.0f, 0);
        print_message("softmax n=%lld: max %.3f ulp vs exact (x in [-8,8]); vs rounded x-m: "
                      "%.3f ulp ([-8,8]), %.3f ulp ([-30,30])\n", (long long)ns[t], a, b, c);
        worst = fmax(worst, fmax(a, fmax(b, c)));
    }
    assert_true(worst <= SOFTMAX_MAX_ULP);
}

static void check_paths(tu_rng *r, int64_t M, int64_t n, opg_pool *pools[3]) {
    size_t len = (size_t)(M * n);
    float *x = tu_alloc(len * 4), *ref = tu_alloc(len * 4), *y = tu_alloc(len * 4);
    tu_fill_wild(r, x, len);
    for (size_t i = 0; i < len; i++) x[i] *= 0x1p-6f; /* keep many e_i away from 0 */
    if (M > 4) {
        x[2 * n] = NAN;                                  /* a NaN row */
        x[3 * n + n / 2] = INFINITY;                     /* inf - inf = NaN */
        for (int64_t i = 0; i < n; i++) x[4 * n + i] = i % 3 ? -0.0f : 0.0f; /* zero max */
    }
    for (int64_t m = 0; m < M; m++) opg_softmax_ref(ref + m * n, x + m * n, n);
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        char what[96];
        snprintf(what, sizeof what, "%s M=%lld n=%lld no pool", opg_cpu_level_name(lv),
                 (long long)M, (long long)n);
        opg_softmax(NULL, y, x, M, n);
        tu_assert_bits(ref, y, len, what);
        for (int p = 0; p < 3; p++) {
            snprintf(what, sizeof what, "%s M=%lld n=%lld threads=%d", opg_cpu_level_name(lv),
                     (long long)M, (long long)n, p + 1);
            opg_softmax(pools[p], y, x, M, n);
            tu_assert_bits(ref, y, len, what);
        }
        for (size_t i = 0; i < len; i++) y[i] = x[i];
        opg_softmax(pools[1], y, y, M, n);
        tu_assert_bits(ref, y, len, "in place");
    }
    restore_level();
    tu_free(x); tu_free(ref); tu_free(y);
}

static void test_paths_bits(void **state) {
    (void)state;
    opg_pool *pools[3] = {opg_pool_new(1), opg_pool_new(2), opg_pool_new(3)};
    for (int p = 0; p < 3; p++) assert_non_null(pools[p]);
    tu_rng r = {23};
    const int64_t ns[] = {1, 7, 255, 256, 257, 2563, 4096 + 3};
    const int64_t Ms[] = {1, 257};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (size_t j = 0; j < sizeof Ms / sizeof Ms[0]; j++) check_paths(&r, Ms[j], ns[i], pools);
    for (int t = 0; t < 12; t++) check_paths(&r, tu_int(&r, 1, 40), tu_int(&r, 1, 5000), pools);
    check_paths(&r, 2, 152064, pools); /* a vocabulary-sized row: 594 chunks */
    for (int p = 0; p < 3; p++) opg_pool_free(pools[p]);
}

static void test_batch_invariance(void **state) {
    (void)state;
    enum { M = 37, N = 2304 + 5 };
    tu_rng r = {24};
    float *x = tu_alloc(M * N * 4), *all = tu_alloc(M * N * 4), *one = tu_alloc(N * 4);
    tu_fill(&r, x, M * N, -10.0f, 10.0f);
    opg_pool *pool = opg_pool_new(3);
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        opg_softmax(pool, all, x, M, N);
        for (int m = 0; m < M; m++) {
            opg_softmax(NULL, one, x + m * N, 1, N);
            tu_assert_bits(one, all + m * N, N, "row alone vs in batch of 37");
        }
    }
    restore_level();
    opg_pool_free(pool);
    tu_free(x); tu_free(all); tu_free(one);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_matches_spec),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_paths_bits),
        cmocka_unit_test(test_batch_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
