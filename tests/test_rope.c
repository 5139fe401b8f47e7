/* test_rope.c: RoPE (docs/determinism.md section 7): frequency and sin/cos
 * tables against the spec and libm, the rotation against float64, every path
 * (scalar, AVX2 table and rotation, thread pools) against the reference bit
 * for bit, and a token's bits depending only on its own position. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpu.h"
#include "elementwise_impl.h"
#include "opg_math.h"
#include "rope.h"

/* Bounds stated in docs/determinism.md section 7. */
#define TABLE_MAX_ERR 1.0  /* |cos_i - cos|, |sin_i - sin| in units of 2^-24, against
                              libm cos/sin of pos * pow(base, -2i/d) */
#define ROPE_MAX_ERR 2.0   /* |y - y64| in ulps of |(x0, x1)| */
#define FREQ_MAX_REL 4e-15 /* inv_freq vs libm pow(base, -2i/d) */

static void restore_level(void) { opg_cpu_set_level(opg_cpu_best_level()); }

/* Reference result for n_tok tokens, token by token: table, then rotation. */
static void ref_rope(float *x, int64_t n_tok, const int32_t *pos, int n_heads, int head_dim,
                     int n_dims, const double *inv_freq, opg_rope_mode mode) {
    float *cs = tu_alloc((size_t)n_dims * 2 + 4), *sn = tu_alloc((size_t)n_dims * 2 + 4);
    for (int64_t t = 0; t < n_tok; t++) {
        opg_rope_table(cs, sn, pos[t], inv_freq, n_dims / 2);
        opg_rope_apply_ref(x + t * n_heads * head_dim, n_heads, head_dim, n_dims, cs, sn, mode);
    }
    tu_free(cs); tu_free(sn);
}

/* Section 7 transcribed independently of kernels/rope.c. */
static void test_matches_spec(void **state) {
    (void)state;
    const double bases[] = {10000.0, 500000.0, 1000000.0, 0.5};
    const int dims[] = {2, 64, 80, 128, 4098};
    tu_rng r = {41};
    for (int b = 0; b < 4; b++)
        for (int d = 0; d < 5; d++) {
            int n_dims = dims[d], half = n_dims / 2;
            double *f = tu_alloc(half * 8);
            float *cs = tu_alloc(half * 4), *sn = tu_alloc(half * 4);
            opg_rope_freqs(f, n_dims, bases[b]);
            for (int i = 0; i < half; i++) {
                double e = opg_exp_f64(-((double)(2 * i) / (double)n_dims) * opg_log_f64(bases[b]));
                assert_true(opg_f64_bits(f[i]) == opg_f64_bits(e));
                double p = pow(bases[b], -(double)(2 * i) / n_dims);
                assert_true(fabs(f[i] - p) <= FREQ_MAX_REL * p);
            }
            for (int k = 0; k < 8; k++) {
                int32_t pos = k == 0 ? 0 : tu_int(&r, 0, 1 << 20);
                opg_rope_table(cs, sn, pos, f, half);
                for (int i = 0; i < half; i++) {
                    double s, c;
                    opg_sincos_f64((double)pos * f[i], &s, &c);
                    float fc = (float)c, fs = (float)s;
                    tu_assert_bits(&cs[i], &fc, 1, "cos table");
                    tu_assert_bits(&sn[i], &fs, 1, "sin table");
                }
            }
            tu_free(f); tu_free(cs); tu_free(sn);
        }
    /* the rotation's four steps */
    float x[4] = {0.75f, -1.25f, 3.0f, 0.1f}, cs[2] = {0.6f, -0.28f}, sn[2] = {0.8f, 0.96f};
    float y[4];
    memcpy(y, x, sizeof x);
    opg_rope_apply_ref(y, 1, 4, 4, cs, sn, OPG_ROPE_NORMAL);
    for (int i = 0; i < 2; i++) {
        float x0 = x[2 * i], x1 = x[2 * i + 1];
        float t = x1 * sn[i], y0 = fmaf(x0, cs[i], -t), u = x1 * cs[i], y1 = fmaf(x0, sn[i], u);
        tu_assert_bits(&y[2 * i], &y0, 1, "normal y0");
        tu_assert_bits(&y[2 * i + 1], &y1, 1, "normal y1");
    }
    memcpy(y, x, sizeof x);
    opg_rope_apply_ref(y, 1, 4, 4, cs, sn, OPG_ROPE_NEOX);
    for (int i = 0; i < 2; i++) {
        float x0 = x[i], x1 = x[i + 2];
        float t = x1 * sn[i], y0 = fmaf(x0, cs[i], -t), u = x1 * cs[i], y1 = fmaf(x0, sn[i], u);
        tu_assert_bits(&y[i], &y0, 1, "neox y0");
        tu_assert_bits(&y[i + 2], &y1, 1, "neox y1");
    }
}

static void test_known_values(void **state) {
    (void)state;
    double f[4];
    opg_rope_freqs(f, 8, 10000.0);
    assert_true(f[0] == 1.0);
    float cs[4], sn[4];
    opg_rope_table(cs, sn, 0, f, 4);
    for (int i = 0; i < 4; i++) assert_true(cs[i] == 1.0f && sn[i] == 0.0f);
    /* shapes the header rules out (n_dims odd, 0 or above head_dim) change nothing */
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, v[8];
    const int bad[][2] = {{8, 3}, {8, 0}, {4, 6}};
    int32_t p5 = 5;
    for (int b = 0; b < 3; b++) {
        memcpy(v, w, sizeof w);
        opg_rope(NULL, v, 1, &p5, 1, bad[b][0], bad[b][1], f, OPG_ROPE_NORMAL);
        opg_rope_apply_ref(v, 1, bad[b][0], bad[b][1], cs, sn, OPG_ROPE_NEOX);
        tu_assert_bits(w, v, 8, "invalid shape is a no-op");
    }
    /* position 0 is the identity (for nonzero values) */
    float x[8] = {1, -2, 3, -4, 5, -6, 7, -8}, y[8];
    for (int mode = 0; mode <= 2; mode += 2) {
        memcpy(y, x, sizeof x);
        int32_t p0 = 0;
        opg_rope(NULL, y, 1, &p0, 1, 8, 8, f, (opg_rope_mode)mode);
        tu_assert_bits(x, y, 8, "position 0");
    }
}

/* Table and rotation against float64 with libm, positions up to 100000. */
static void test_accuracy(void **state) {
    (void)state;
    const double bases[] = {10000.0, 500000.0, 1000000.0};
    enum { D = 128, H = D / 2 };
    tu_rng r = {42};
    double f[H];
    float cs[H], sn[H], x[D], y[D];
    double wt = 0, wr = 0;
    for (int b = 0; b < 3; b++) {
        opg_rope_freqs(f, D, bases[b]);
        for (int k = 0; k < 3000; k++) {
            int32_t pos = k < 1000 ? k : tu_int(&r, 0, 100000);
            opg_rope_table(cs, sn, pos, f, H);
            tu_fill(&r, x, D, -4.0f, 4.0f);
            for (int mode = 0; mode <= 2; mode += 2) {
                memcpy(y, x, sizeof x);
                opg_rope_apply_ref(y, 1, D, D, cs, sn, (opg_rope_mode)mode);
                for (int i = 0; i < H; i++) {
                    double th = (double)pos * pow(bases[b], -(double)(2 * i) / D);
                    double c = cos(th), s = sin(th);
                    if (mode == 0) wt = fmax(wt, fmax(fabs(cs[i] - c), fabs(sn[i] - s)) / 0x1p-24);
                    int i0 = mode == OPG_ROPE_NEOX ? i : 2 * i;
                    int i1 = mode == OPG_ROPE_NEOX ? i + H : 2 * i + 1;
                    double x0 = x[i0], x1 = x[i1];
                    double y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
                    int e;
                    frexp(hypot(x0, x1), &e);
                    double unit = ldexp(1.0, e - 24); /* ulp of |(x0, x1)| */
                    wr = fmax(wr, fmax(fabs(y[i0] - y0), fabs(y[i1] - y1)) / unit);
                }
            }
        }
    }
    print_message("rope: table max %.3f x 2^-24, rotation max %.3f ulp of |(x0,x1)| "
                  "(positions <= 100000)\n", wt, wr);
    assert_true(wt <= TABLE_MAX_ERR);
    assert_true(wr <= ROPE_MAX_ERR);
}

/* The AVX2 table (binary64 lanes) gives opg_rope_table's bits. */
static void test_table_avx2(void **state) {
    (void)state;
    if (opg_cpu_best_level() < OPG_CPU_AVX2) { skip(); return; }
    const double bases[] = {10000.0, 500000.0, 1000000.0, 0.5, 1.5};
    enum { H = 131 };
    double f[H];
    float c0[H], s0[H], c1[H], s1[H];
    tu_rng r = {43};
    for (int b = 0; b < 5; b++) {
        opg_rope_freqs(f, 2 * H, bases[b]);
        for (int k = 0; k < 1500; k++) {
            int64_t pos = k < 500 ? k : k < 1000 ? tu_int(&r, 0, 1 << 24)
                                    : (int64_t)(tu_u64(&r) >> 32) - 2147483648LL;
            int n = tu_int(&r, 1, H);
            opg_rope_table(c0, s0, pos, f, n);
            opg__rope_table_avx2(c1, s1, pos, f, n);
            tu_assert_bits(c0, c1, n, "avx2 cos table");
            tu_assert_bits(s0, s1, n, "avx2 sin table");
        }
    }
}

static void check_paths(tu_rng *r, int64_t n_tok, int n_heads, int head_dim, int n_dims,
                        opg_rope_mode mode, double base, opg_pool *pools[3]) {
    size_t n = (size_t)(n_tok * n_heads * head_dim);
    float *x = tu_alloc(n * 4), *ref = tu_alloc(n * 4), *y = tu_alloc(n * 4);
    int32_t *pos = tu_alloc(n_tok * 4);
    double *f = tu_alloc((size_t)n_dims * 4 + 8);
    opg_rope_freqs(f, n_dims, base);
    tu_fill_wild(r, x, n);
    for (int64_t t = 0; t < n_tok; t++) pos[t] = t % 3 ? tu_int(r, 0, 1 << 24) : tu_int(r, 0, 4096);
    memcpy(ref, x, n * 4);
    ref_rope(ref, n_tok, pos, n_heads, head_dim, n_dims, f, mode);
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        char what[128];
        for (int p = -1; p < 3; p++) {
            snprintf(what, sizeof what, "%s tok=%lld heads=%d hd=%d nd=%d mode=%d threads=%d",
                     opg_cpu_level_name(lv), (long long)n_tok, n_heads, head_dim, n_dims,
                     (int)mode, p + 1);
            memcpy(y, x, n * 4);
            opg_rope(p < 0 ? NULL : pools[p], y, n_tok, pos, n_heads, head_dim, n_dims, f, mode);
            tu_assert_bits(ref, y, n, what);
        }
    }
    restore_level();
    tu_free(x); tu_free(ref); tu_free(y); tu_free(pos); tu_free(f);
}

static void test_paths_bits(void **state) {
    (void)state;
    opg_pool *pools[3] = {opg_pool_new(1), opg_pool_new(2), opg_pool_new(3)};
    for (int p = 0; p < 3; p++) assert_non_null(pools[p]);
    tu_rng r = {44};
    /* head_dim, n_dims */
    const int shapes[][2] = {{2, 2}, {7, 6}, {7, 2}, {64, 64}, {80, 32}, {128, 128},
                             {255, 254}, {255, 64}, {256, 256}, {257, 256}, {4099, 4098}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int mode = 0; mode <= 2; mode += 2) {
            int hd = shapes[s][0], nd = shapes[s][1];
            check_paths(&r, 1, 3, hd, nd, (opg_rope_mode)mode, 10000.0, pools);
            check_paths(&r, hd > 300 ? 9 : 257, hd > 300 ? 1 : 2, hd, nd, (opg_rope_mode)mode,
                        500000.0, pools);
        }
    for (int t = 0; t < 12; t++) {
        int hd = tu_int(&r, 1, 160) * 2 + tu_int(&r, 0, 1);
        int nd = 2 * tu_int(&r, 1, hd / 2);
        check_paths(&r, tu_int(&r, 1, 40), tu_int(&r, 1, 8), hd, nd,
                    (opg_rope_mode)(2 * tu_int(&r, 0, 1)), 10000.0, pools);
    }
    for (int p = 0; p < 3; p++) opg_pool_free(pools[p]);
}

/* A token's bits depend only on its position: the same token computed in a
 * batch of 37 tokens at other positions, and alone, agree. */
static void test_position_only(void **state) {
    (void)state;
    enum { T = 37, NH = 4, HD = 128 };
    tu_rng r = {45};
    float *x = tu_alloc(T * NH * HD * 4), *all = tu_alloc(T * NH * HD * 4);
    float *one = tu_alloc(NH * HD * 4);
    int32_t pos[T];
    double f[HD / 2];
    opg_pool *pool = opg_pool_new(3);
    tu_fill_wild(&r, x, T * NH * HD);
    for (int t = 0; t < T; t++) pos[t] = t == 5 ? pos[2] : tu_int(&r, 0, 200000);
    memcpy(x + 5 * NH * HD, x + 2 * NH * HD, NH * HD * 4); /* token 5 repeats token 2 */
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        for (int mode = 0; mode <= 2; mode += 2)
            for (int nd = 32; nd <= HD; nd += HD - 32) { /* partial and full rotary */
                opg_rope_freqs(f, nd, 10000.0);
                memcpy(all, x, T * NH * HD * 4);
                opg_rope(pool, all, T, pos, NH, HD, nd, f, (opg_rope_mode)mode);
                for (int t = 0; t < T; t++) {
                    memcpy(one, x + t * NH * HD, NH * HD * 4);
                    opg_rope(NULL, one, 1, &pos[t], NH, HD, nd, f, (opg_rope_mode)mode);
                    tu_assert_bits(one, all + t * NH * HD, NH * HD, "token alone vs in batch");
                }
                tu_assert_bits(all + 2 * NH * HD, all + 5 * NH * HD, NH * HD,
                               "same token, same position, different batch slot");
            }
    }
    restore_level();
    opg_pool_free(pool);
    tu_free(x); tu_free(all); tu_free(one);
}

/* Partial rotary: dims >= n_dims keep their bits; the first n_dims rotate
 * exactly as a head of n_dims dims would. NeoX is the normal layout on
 * de-interleaved data. */
static void test_layouts(void **state) {
    (void)state;
    enum { NH = 3, HD = 96, ND = 64 };
    tu_rng r = {46};
    float x[NH * HD], y[NH * HD], z[NH * ND], a[NH * ND], b[NH * ND];
    double f[ND / 2];
    opg_rope_freqs(f, ND, 10000.0);
    tu_fill_wild(&r, x, NH * HD);
    for (int h = 0; h < NH; h++) x[h * HD + ND + 3] = NAN;
    int32_t pos = 12345;
    for (int lv = OPG_CPU_SCALAR; lv <= (int)opg_cpu_best_level(); lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        for (int mode = 0; mode <= 2; mode += 2) {
            memcpy(y, x, sizeof x);
            opg_rope(NULL, y, 1, &pos, NH, HD, ND, f, (opg_rope_mode)mode);
            for (int h = 0; h < NH; h++) {
                tu_assert_bits(x + h * HD + ND, y + h * HD + ND, HD - ND, "pass-through dims");
                memcpy(z + h * ND, x + h * HD, ND * 4);
            }
            opg_rope(NULL, z, 1, &pos, NH, ND, ND, f, (opg_rope_mode)mode);
            for (int h = 0; h < NH; h++)
                tu_assert_bits(z + h * ND, y + h * HD, ND, "partial = full rotary of n_dims");
        }
        /* NeoX pairs (i, i+32) == normal pairs (2i, 2i+1) after de-interleaving */
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < ND / 2; i++) {
                a[h * ND + 2 * i] = x[h * HD + i];
                a[h * ND + 2 * i + 1] = x[h * HD + i + ND / 2];
                b[h * ND + i] = x[h * HD + i];
                b[h * ND + i + ND / 2] = x[h * HD + i + ND / 2];
            }
        opg_rope(NULL, a, 1, &pos, NH, ND, ND, f, OPG_ROPE_NORMAL);
        opg_rope(NULL, b, 1, &pos, NH, ND, ND, f, OPG_ROPE_NEOX);
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < ND / 2; i++) {
                tu_assert_bits(&a[h * ND + 2 * i], &b[h * ND + i], 1, "neox vs normal x0");
                tu_assert_bits(&a[h * ND + 2 * i + 1], &b[h * ND + i + ND / 2], 1,
                               "neox vs normal x1");
            }
    }
    restore_level();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_spec),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_table_avx2),
        cmocka_unit_test(test_paths_bits),
        cmocka_unit_test(test_position_only),
        cmocka_unit_test(test_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
