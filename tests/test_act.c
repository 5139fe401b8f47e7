/* test_act.c: SiLU and SwiGLU (docs/determinism.md section 8): accuracy in
 * ulp against float64, and every path (scalar, AVX2, thread pools) against
 * the reference bit for bit, special values included. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>

#include "act.h"
#include "cpu.h"
#include "opg_math.h"

/* Bounds stated in docs/determinism.md sections 3 and 8 (ulp against
 * float64, gate in [-88, 88]). */
#define SILU_MAX_ULP 2.5
#define SWIGLU_MAX_ULP 4.0

static void restore_level(void) { opg_cpu_set_level(opg_cpu_best_level()); }

static double silu64(double g) { return g / (1.0 + exp(-g)); }

static void test_known_values(void **state) {
    (void)state;
    float g[6] = {0.0f, -0.0f, 200.0f, -200.0f, 1.0f, NAN};
    float u[6] = {5.0f, 5.0f, 0.5f, 2.0f, -3.0f, 1.0f};
    float y[6], s[6];
    opg_swiglu_ref(y, g, u, 6);
    opg_silu_ref(s, g, 6);
    assert_true(y[0] == 0.0f && y[1] == 0.0f);
    assert_true(y[2] == 100.0f);                  /* silu(200) = 200 exactly in f32 */
    assert_true(y[3] == 0.0f && signbit(y[3]));   /* -0 * 2 */
    assert_true(isnan(y[5]) && isnan(s[5]));
    for (int i = 0; i < 6; i++) {
        float e = opg_siluf(g[i]);
        tu_assert_bits(&s[i], &e, 1, "silu_ref is opg_siluf");
        float w = e * u[i];
        tu_assert_bits(&y[i], &w, 1, "swiglu is silu(g) * u, one rounding");
    }
}

static void test_accuracy(void **state) {
    (void)state;
    tu_rng r = {31};
    enum { N = 1 << 16 };
    static float g[N], u[N], y[N], s[N];
    double ws = 0, wg = 0;
    float ws_x = 0;
    for (int rep = 0; rep < 40; rep++) {
        /* half uniform over the range, half on [-20, -12] where the error peaks */
        tu_fill(&r, g, N / 2, -88.0f, 88.0f);
        tu_fill(&r, g + N / 2, N / 2, -20.0f, -12.0f);
        tu_fill(&r, u, N, -4.0f, 4.0f);
        for (int i = 0; i < N; i++)
            if (fabsf(u[i]) < 0x1p-20f) u[i] = 1.0f; /* products stay normal */
        opg_silu_ref(s, g, N);
        opg_swiglu_ref(y, g, u, N);
        for (int i = 0; i < N; i++) {
            double ref = silu64(g[i]);
            double e = tu_ulp_vs_f64(s[i], ref);
            if (e > ws) { ws = e; ws_x = g[i]; }
            e = tu_ulp_vs_f64(y[i], ref * (double)u[i]);
            if (e > wg) wg = e;
        }
    }
    print_message("silu: max %.3f ulp (at %.9g); swiglu: max %.3f ulp, gate in [-88, 88]\n", ws,
                  (double)ws_x, wg);
    assert_true(ws <= SILU_MAX_ULP);
    assert_true(wg <= SWIGLU_MAX_ULP);
    /* below -88.72, expf(-g) overflows and SiLU is -0 (documented) */
    float z = opg_siluf(-89.0f);
    assert_true(z == 0.0f && signbit(z));
}

static void check_paths(tu_rng *r, int64_t n, opg_pool *pools[3]) {
    float *g = tu_alloc(n * 4), *u = tu_alloc(n * 4), *ref = tu_alloc(n * 4), *y = tu_alloc(n * 4);
    tu_fill_wild(r, g, n);
    tu_fill_wild(r, u, n);
    const float special[] = {NAN, INFINITY, -INFINITY, 88.8f, -88.8f, -104.0f, 1e-45f, -0.0f};
    for (int64_t i = 0; i < n; i += 97) {
        g[i] = special[(i / 97) % 8];
        if (i + 1 < n) u[i + 1] = special[(i / 97 + 3) % 8];
    }
    opg_swiglu_ref(ref, g, u, n);
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        char what[96];
        snprintf(what, sizeof what, "%s n=%lld no pool", opg_cpu_level_name(lv), (long long)n);
        opg_swiglu(NULL, y, g, u, n);
        tu_assert_bits(ref, y, n, what);
        for (int p = 0; p < 3; p++) {
            snprintf(what, sizeof what, "%s n=%lld threads=%d", opg_cpu_level_name(lv),
                     (long long)n, p + 1);
            opg_swiglu(pools[p], y, g, u, n);
            tu_assert_bits(ref, y, n, what);
        }
        /* out aliasing gate, then up */
        for (int64_t i = 0; i < n; i++) y[i] = g[i];
        opg_swiglu(pools[2], y, y, u, n);
        tu_assert_bits(ref, y, n, "out = gate");
        for (int64_t i = 0; i < n; i++) y[i] = u[i];
        opg_swiglu(pools[1], y, g, y, n);
        tu_assert_bits(ref, y, n, "out = up");
    }
    restore_level();
    tu_free(g); tu_free(u); tu_free(ref); tu_free(y);
}

static void test_paths_bits(void **state) {
    (void)state;
    opg_pool *pools[3] = {opg_pool_new(1), opg_pool_new(2), opg_pool_new(3)};
    for (int p = 0; p < 3; p++) assert_non_null(pools[p]);
    tu_rng r = {32};
    const int64_t ns[] = {1, 7, 255, 256, 257, 4096 + 3, 3 * 8192 + 5, 257 * 4099};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) check_paths(&r, ns[i], pools);
    for (int t = 0; t < 10; t++) check_paths(&r, tu_int(&r, 1, 40000), pools);
    for (int p = 0; p < 3; p++) opg_pool_free(pools[p]);
}

/* Batch invariance: row i of a 37-row batch (rows of 4099, split over the
 * pool's fixed blocks) equals the same row computed alone, on every path. */
static void test_batch_invariance(void **state) {
    (void)state;
    enum { M = 37, D = 4099 };
    tu_rng r = {33};
    float *g = tu_alloc(sizeof(float) * M * D), *u = tu_alloc(sizeof(float) * M * D);
    float *all = tu_alloc(sizeof(float) * M * D), *one = tu_alloc(sizeof(float) * D);
    tu_fill_wild(&r, g, (size_t)M * D);
    tu_fill(&r, u, (size_t)M * D, -3.0f, 3.0f);
    opg_pool *pool = opg_pool_new(2);
    assert_non_null(pool);
    for (int level = 0; level <= 1; level++) {
        opg_cpu_set_level(level ? opg_cpu_best_level() : OPG_CPU_SCALAR);
        opg_swiglu(pool, all, g, u, (int64_t)M * D);
        for (int i = 0; i < M; i += 6) {
            opg_swiglu(NULL, one, g + (size_t)i * D, u + (size_t)i * D, D);
            tu_assert_bits(one, all + (size_t)i * D, D, "swiglu row alone vs in a batch of 37");
        }
    }
    restore_level();
    opg_pool_free(pool);
    tu_free(g); tu_free(u); tu_free(all); tu_free(one);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_paths_bits),
        cmocka_unit_test(test_batch_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
