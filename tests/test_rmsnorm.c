/* test_rmsnorm.c: RMSNorm (docs/determinism.md section 6): the reference
 * against the spec written out here and against float64, and every path
 * (scalar, AVX2, thread pools, batch sizes) against the reference bit for bit. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>

#include "cpu.h"
#include "opg_math.h"
#include "rmsnorm.h"

/* Bound stated in docs/determinism.md section 6 (ulp of each y_i against
 * the float64 RMSNorm of the same f32 inputs). */
#define RMSNORM_MAX_ULP 6.0

static const float EPS = 1e-5f;

/* Section 6 transcribed independently of kernels/rmsnorm.c. */
static void spec_rmsnorm(float *y, const float *x, const float *w, int64_t D, float eps) {
    float total = 0.0f;
    for (int64_t c = 0; c * 256 < D; c++) {
        float p = 0.0f;
        for (int64_t k = c * 256; k < D && k < c * 256 + 256; k++) p = fmaf(x[k], x[k], p);
        total = c == 0 ? p : total + p;
    }
    float inv = 1.0f / sqrtf(total / (float)D + eps);
    for (int64_t i = 0; i < D; i++) y[i] = (x[i] * inv) * w[i];
}

static void restore_level(void) { opg_cpu_set_level(opg_cpu_best_level()); }

static void test_known_values(void **state) {
    (void)state;
    enum { D = 300 };
    float x[D], w[D], y[D];
    for (int i = 0; i < D; i++) { x[i] = i % 2 ? -2.0f : 2.0f; w[i] = (float)(i - 150); }
    /* ss = 4*D, ms = 4, sqrt = 2, inv = 0.5: every step exact */
    opg_rmsnorm_ref(y, x, w, D, 0.0f);
    for (int i = 0; i < D; i++) assert_true(y[i] == (i % 2 ? -1.0f : 1.0f) * w[i]);
    /* y may alias x */
    opg_rmsnorm_ref(x, x, w, D, 0.0f);
    tu_assert_bits(x, y, D, "in place");
}

static void test_matches_spec(void **state) {
    (void)state;
    tu_rng r = {11};
    const int64_t Ds[] = {1, 7, 255, 256, 257, 1000, 4099};
    for (size_t t = 0; t < sizeof Ds / sizeof Ds[0]; t++) {
        int64_t D = Ds[t];
        float *x = tu_alloc(D * 4), *w = tu_alloc(D * 4);
        float *a = tu_alloc(D * 4), *b = tu_alloc(D * 4);
        for (int rep = 0; rep < 4; rep++) {
            tu_fill_wild(&r, x, D);
            tu_fill(&r, w, D, -2.0f, 2.0f);
            opg_rmsnorm_ref(a, x, w, D, EPS);
            spec_rmsnorm(b, x, w, D, EPS);
            tu_assert_bits(a, b, D, "reference vs spec transcription");
        }
        tu_free(x); tu_free(w); tu_free(a); tu_free(b);
    }
}

static double measure(tu_rng *r, int64_t D, int rows, int wild) {
    float *x = tu_alloc(D * 4), *w = tu_alloc(D * 4), *y = tu_alloc(D * 4);
    double worst = 0;
    for (int rep = 0; rep < rows; rep++) {
        if (wild) tu_fill_wild(r, x, D);
        else tu_fill(r, x, D, -3.0f, 3.0f);
        tu_fill(r, w, D, 0.25f, 2.0f);
        opg_rmsnorm_ref(y, x, w, D, EPS);
        double ss = 0;
        for (int64_t i = 0; i < D; i++) ss += (double)x[i] * x[i];
        double inv = 1.0 / sqrt(ss / (double)D + (double)EPS);
        for (int64_t i = 0; i < D; i++) {
            double e = tu_ulp_vs_f64(y[i], (double)x[i] * inv * (double)w[i]);
            if (e > worst) worst = e;
        }
    }
    tu_free(x); tu_free(w); tu_free(y);
    return worst;
}

static void test_accuracy(void **state) {
    (void)state;
    tu_rng r = {12};
    const int64_t Ds[] = {64, 576, 2048, 4096, 5120, 8192, 16384};
    double worst = 0;
    for (size_t t = 0; t < sizeof Ds / sizeof Ds[0]; t++) {
        double u = measure(&r, Ds[t], 24, 0), v = measure(&r, Ds[t], 24, 1);
        print_message("rmsnorm D=%lld: max %.3f ulp (uniform), %.3f ulp (wild)\n",
                      (long long)Ds[t], u, v);
        worst = fmax(worst, fmax(u, v));
    }
    assert_true(worst <= RMSNORM_MAX_ULP);
}

/* Every path and thread count gives the reference's bits. */
static void check_paths(tu_rng *r, int64_t M, int64_t D, opg_pool *pools[3]) {
    size_t n = (size_t)(M * D);
    float *x = tu_alloc(n * 4), *w = tu_alloc(D * 4), *ref = tu_alloc(n * 4), *y = tu_alloc(n * 4);
    tu_fill_wild(r, x, n);
    tu_fill_wild(r, w, D);
    if (M > 3) { x[2 * D] = NAN; x[3 * D + D / 2] = INFINITY; } /* NaN in, NaN out, same bits */
    for (int64_t m = 0; m < M; m++) opg_rmsnorm_ref(ref + m * D, x + m * D, w, D, EPS);
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        char what[96];
        snprintf(what, sizeof what, "%s M=%lld D=%lld no pool", opg_cpu_level_name(lv),
                 (long long)M, (long long)D);
        opg_rmsnorm(NULL, y, x, w, M, D, EPS);
        tu_assert_bits(ref, y, n, what);
        for (int p = 0; p < 3; p++) {
            snprintf(what, sizeof what, "%s M=%lld D=%lld threads=%d", opg_cpu_level_name(lv),
                     (long long)M, (long long)D, p + 1);
            opg_rmsnorm(pools[p], y, x, w, M, D, EPS);
            tu_assert_bits(ref, y, n, what);
        }
        /* in place */
        for (size_t i = 0; i < n; i++) y[i] = x[i];
        opg_rmsnorm(pools[2], y, y, w, M, D, EPS);
        tu_assert_bits(ref, y, n, "in place");
    }
    restore_level();
    tu_free(x); tu_free(w); tu_free(ref); tu_free(y);
}

static void test_paths_bits(void **state) {
    (void)state;
    opg_pool *pools[3] = {opg_pool_new(1), opg_pool_new(2), opg_pool_new(3)};
    for (int p = 0; p < 3; p++) assert_non_null(pools[p]);
    tu_rng r = {13};
    const int64_t Ds[] = {1, 7, 255, 256, 257, 2563, 4096 + 3};
    const int64_t Ms[] = {1, 257};
    for (size_t i = 0; i < sizeof Ds / sizeof Ds[0]; i++)
        for (size_t j = 0; j < sizeof Ms / sizeof Ms[0]; j++) check_paths(&r, Ms[j], Ds[i], pools);
    for (int t = 0; t < 12; t++) check_paths(&r, tu_int(&r, 1, 40), tu_int(&r, 1, 3000), pools);
    for (int p = 0; p < 3; p++) opg_pool_free(pools[p]);
}

/* A row alone (M = 1) has the bits it has inside a batch of 37. */
static void test_batch_invariance(void **state) {
    (void)state;
    enum { M = 37, D = 2304 + 5 };
    tu_rng r = {14};
    float *x = tu_alloc(M * D * 4), *w = tu_alloc(D * 4);
    float *all = tu_alloc(M * D * 4), *one = tu_alloc(D * 4);
    tu_fill_wild(&r, x, M * D);
    tu_fill(&r, w, D, -1.0f, 1.0f);
    opg_pool *pool = opg_pool_new(3);
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        opg_rmsnorm(pool, all, x, w, M, D, EPS);
        for (int m = 0; m < M; m++) {
            opg_rmsnorm(NULL, one, x + m * D, w, 1, D, EPS);
            tu_assert_bits(one, all + m * D, D, "row alone vs in batch of 37");
        }
    }
    restore_level();
    opg_pool_free(pool);
    tu_free(x); tu_free(w); tu_free(all); tu_free(one);
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
