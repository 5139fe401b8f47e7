/* test_matmul.c: the float dot / GEMV / GEMM of docs/determinism.md section 4:
 * accuracy against float64, bit identity of every path (scalar, AVX2 GEMV and
 * GEMM, 1-3 threads) with the reference, batch invariance, the order in which
 * chunk partials combine, the edge shapes, and the Q8_0 entry point. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "cpu.h"
#include "matmul.h"
#include "matmul_impl.h"
#include "opg_math.h"
#include "pool.h"

static const opg_dtype FLOAT_TYPES[3] = {OPG_F32, OPG_F16, OPG_BF16};
static opg_pool *g_pools[3]; /* 1, 2 and 3 threads */

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        g_pools[i] = opg_pool_new(i + 1);
        if (!g_pools[i]) return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) opg_pool_free(g_pools[i]);
    return 0;
}

static size_t esize(opg_dtype wt) { return wt == OPG_F32 ? 4 : 2; }

/* W [N][K] of type wt, with its exact f32 values in wf ([N][K], may be NULL).
 * wild: tu_fill_wild values, plus in f16/bf16 raw bit patterns (subnormals
 * included; bf16 exponents kept below 2^14 so no product overflows). */
static void *make_w(tu_rng *r, opg_dtype wt, int64_t N, int64_t K, int wild, float *wf) {
    size_t n = (size_t)(N * K);
    float *v = tu_alloc(n * sizeof *v + 4);
    if (wild) tu_fill_wild(r, v, n);
    else tu_fill(r, v, n, -1.0f, 1.0f);
    void *w = tu_alloc(n * esize(wt) + 4);
    for (size_t i = 0; i < n; i++) {
        if (wt == OPG_F32) {
            ((float *)w)[i] = v[i];
            continue;
        }
        uint16_t *h = w;
        uint64_t u = tu_u64(r);
        if (wild && (u & 7) == 0) {
            if (wt == OPG_F16) h[i] = (uint16_t)(u >> 16) & 0xfbffu; /* exponent < 31: finite */
            else h[i] = (uint16_t)((((u >> 16) & 0x8000u) | (((u >> 20) % 141) << 7) | ((u >> 32) & 0x7fu)));
        } else {
            h[i] = wt == OPG_F16 ? opg_f32_to_f16(v[i]) : opg_f32_to_bf16(v[i]);
        }
    }
    if (wf) {
        for (size_t i = 0; i < n; i++) {
            wf[i] = wt == OPG_F32   ? ((float *)w)[i]
                    : wt == OPG_F16 ? opg_f16_to_f32(((uint16_t *)w)[i])
                                    : opg_bf16_to_f32(((uint16_t *)w)[i]);
        }
    }
    tu_free(v);
    return w;
}

/* Runs opg_matmul on every level and pool, and the AVX2 float path with each
 * kernel forced, and asserts each gives the bits of expect. The scalar path
 * (the reference dot per output, slow under ASan) runs on the pools named in
 * scalar_pools (bit i = i+1 threads). */
static void check_paths(const float *expect, const float *x, const void *w, opg_dtype wt,
                        const float *bias, int64_t M, int64_t N, int64_t K, int scalar_pools) {
    size_t ny = (size_t)(M * N);
    float *y = tu_alloc(ny * sizeof *y + 4);
    char what[200];
    opg_cpu_level best = opg_cpu_best_level();
    opg_cpu_set_level(OPG_CPU_SCALAR);
    for (int p = 0; p < 3; p++) {
        if (!(scalar_pools & (1 << p))) continue;
        memset(y, 0xff, ny * sizeof *y); /* NaN: an output never written shows */
        assert_int_equal(opg_matmul(g_pools[p], y, x, w, wt, bias, M, N, K), 0);
        snprintf(what, sizeof what, "%s M=%lld N=%lld K=%lld bias=%d scalar %d threads",
                 opg_dtype_name(wt), (long long)M, (long long)N, (long long)K, bias != NULL, p + 1);
        tu_assert_bits(expect, y, ny, what);
    }
    if (best >= OPG_CPU_AVX2) {
        opg_cpu_set_level(OPG_CPU_AVX2);
        for (int p = 0; p < 3; p++) {
            memset(y, 0xff, ny * sizeof *y);
            assert_int_equal(opg_matmul(g_pools[p], y, x, w, wt, bias, M, N, K), 0);
            snprintf(what, sizeof what, "%s M=%lld N=%lld K=%lld bias=%d avx2 %d threads",
                     opg_dtype_name(wt), (long long)M, (long long)N, (long long)K, bias != NULL,
                     p + 1);
            tu_assert_bits(expect, y, ny, what);
        }
        if (K > 0 && !opg_dtype_is_quant(wt)) {
            for (int path = OPG__MM_GEMV; path <= OPG__MM_GEMM; path++) {
                for (int p = 0; p < 3; p += 2) {
                    memset(y, 0xff, ny * sizeof *y);
                    opg__matmul_float_avx2(p == 0 ? NULL : g_pools[p], y, x, w, wt, bias, M, N,
                                           K, (opg__mm_path)path);
                    snprintf(what, sizeof what, "%s M=%lld N=%lld K=%lld bias=%d avx2 %s %s",
                             opg_dtype_name(wt), (long long)M, (long long)N, (long long)K,
                             bias != NULL, path == OPG__MM_GEMV ? "gemv" : "gemm",
                             p == 0 ? "no pool" : "3 threads");
                    tu_assert_bits(expect, y, ny, what);
                }
            }
        }
    }
    opg_cpu_set_level(best);
    tu_free(y);
}

/* ---- 1. accuracy against float64 ---------------------------------------------
 * Each product w_k*x_k enters one fma (one rounding); a term of chunk c then
 * sees at most L_c - 1 more fma roundings in its chunk (L_c <= 256) and one
 * rounding per later chunk addition, and the bias one more. With u = 2^-24 and
 * gamma_n = n*u / (1 - n*u) the standard recursive-summation argument gives,
 * barring overflow and underflow,
 *     |y - y_exact| <= gamma_n * (sum_k |w_k x_k| + |bias|),
 *     n = min(K, 256) + ceil(K / 256) - 1  (+ 1 with a bias).
 * The float64 reference itself (exact products, a K-term double sum) is off by
 * at most (K + 1) * 2^-53 * the same sum, which the check adds. */
static double gamma_n(int64_t K, int has_bias) {
    double n = (double)(K < OPG_DOT_CHUNK ? K : OPG_DOT_CHUNK) +
               (double)((K + OPG_DOT_CHUNK - 1) / OPG_DOT_CHUNK) - 1.0 + (has_bias ? 1.0 : 0.0);
    double u = 0x1p-24;
    return n * u / (1.0 - n * u);
}

static void test_accuracy(void **state) {
    (void)state;
    static const int64_t shapes[][3] = {/* M, N, K */
                                        {3, 17, 1},   {2, 9, 255},  {2, 9, 256},  {2, 9, 257},
                                        {1, 33, 1000}, {5, 16, 4109}, {1, 8, 20000}};
    tu_rng r = {1234};
    for (int t = 0; t < 3; t++) {
        opg_dtype wt = FLOAT_TYPES[t];
        /* in units of u * S (S = sum |w x| + |bias|), over all K and over K >= 1000;
         * and as a fraction of the bound */
        double worst_u = 0.0, worst_u_long = 0.0, worst_frac = 0.0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            for (int hb = 0; hb < 2; hb++) {
                float *x = tu_alloc((size_t)(M * K) * sizeof(float));
                float *wf = tu_alloc((size_t)(N * K) * sizeof(float));
                float *bias = tu_alloc((size_t)N * sizeof(float));
                float *y = tu_alloc((size_t)(M * N) * sizeof(float));
                tu_fill(&r, x, (size_t)(M * K), -1.0f, 1.0f);
                tu_fill(&r, bias, (size_t)N, -1.0f, 1.0f);
                void *w = make_w(&r, wt, N, K, 0, wf);
                assert_int_equal(opg_matmul_ref(y, x, w, wt, hb ? bias : NULL, M, N, K), 0);
                double g = gamma_n(K, hb);
                for (int64_t m = 0; m < M; m++) {
                    for (int64_t n = 0; n < N; n++) {
                        double exact = 0.0, S = 0.0;
                        for (int64_t k = 0; k < K; k++) {
                            double p = (double)wf[n * K + k] * (double)x[m * K + k]; /* exact */
                            exact += p;
                            S += fabs(p);
                        }
                        if (hb) { exact += (double)bias[n]; S += fabs((double)bias[n]); }
                        double err = fabs((double)y[m * N + n] - exact);
                        double bound = g * S + (double)(K + 1) * 0x1p-53 * S;
                        if (err > bound) {
                            print_error("%s M=%lld N=%lld K=%lld: y[%lld][%lld] = %.9g, exact %.17g,"
                                        " err %.3g > bound %.3g\n",
                                        opg_dtype_name(wt), (long long)M, (long long)N,
                                        (long long)K, (long long)m, (long long)n,
                                        (double)y[m * N + n], exact, err, bound);
                            fail();
                        }
                        if (S > 0) {
                            double eu = err / (0x1p-24 * S);
                            if (eu > worst_u) worst_u = eu;
                            if (K >= 1000 && eu > worst_u_long) worst_u_long = eu;
                            if (err / bound > worst_frac) worst_frac = err / bound;
                        }
                    }
                }
                tu_free(w); tu_free(x); tu_free(wf); tu_free(bias); tu_free(y);
            }
        }
        print_message("%s: max |y - exact| = %.3f u*S (K >= 1000: %.3f u*S); at most %.3f of the bound\n",
                      opg_dtype_name(wt), worst_u, worst_u_long, worst_frac);
    }
}

/* ---- 2. bit identity of every path with the reference -------------------------- */

static void run_identity_case(tu_rng *r, opg_dtype wt, int64_t M, int64_t N, int64_t K,
                              int wild, int has_bias, int scalar_pools) {
    float *x = tu_alloc((size_t)(M * K) * sizeof(float) + 4);
    float *bias = tu_alloc((size_t)N * sizeof(float) + 4);
    float *expect = tu_alloc((size_t)(M * N) * sizeof(float) + 4);
    if (wild) { tu_fill_wild(r, x, (size_t)(M * K)); tu_fill_wild(r, bias, (size_t)N); }
    else { tu_fill(r, x, (size_t)(M * K), -2.0f, 2.0f); tu_fill(r, bias, (size_t)N, -1.0f, 1.0f); }
    void *w = make_w(r, wt, N, K, wild, NULL);
    const float *b = has_bias ? bias : NULL;
    assert_int_equal(opg_matmul_ref(expect, x, w, wt, b, M, N, K), 0);
    /* the reference matmul is the reference dot (+ bias), output by output */
    for (int64_t m = 0; m < M; m += M > 1 ? M - 1 : 1) {
        for (int64_t n = 0; n < N; n += N > 2 ? N / 2 : 1) {
            const void *wr = (const unsigned char *)w + (size_t)(n * K) * esize(wt);
            float d = wt == OPG_F32   ? opg_dot_f32_ref(wr, x + m * K, K)
                      : wt == OPG_F16 ? opg_dot_f16_ref(wr, x + m * K, K)
                                      : opg_dot_bf16_ref(wr, x + m * K, K);
            if (b) d = d + b[n];
            tu_assert_bits(&d, &expect[m * N + n], 1, "reference matmul vs reference dot");
        }
    }
    check_paths(expect, x, w, wt, b, M, N, K, scalar_pools);
    tu_free(w); tu_free(x); tu_free(bias); tu_free(expect);
}

static void test_bit_identity(void **state) {
    (void)state;
    static const int64_t Ks[] = {1, 7, 31, 255, 256, 257, 1000, 4096 + 13};
    static const int64_t Ns[] = {1, 7, 33, 129, 1001};
    tu_rng r = {99};
    int cases = 0;
    for (int t = 0; t < 3; t++) {
        opg_dtype wt = FLOAT_TYPES[t];
        for (size_t ik = 0; ik < sizeof Ks / sizeof Ks[0]; ik++) {
            for (size_t in = 0; in < sizeof Ns / sizeof Ns[0]; in++) {
                int64_t K = Ks[ik], N = Ns[in];
                int v = (int)(ik * 5 + in + (size_t)t);
                /* M = 1 everywhere; a small M (2..8: every GEMV row group and
                 * GEMM row tail) where that stays cheap for the reference */
                run_identity_case(&r, wt, 1, N, K, v & 1, (v >> 1) & 1, 1 << (v % 3));
                cases++;
                if (N * K <= 300000) {
                    run_identity_case(&r, wt, 2 + v % 7, N, K, !(v & 1), !((v >> 1) & 1), 7);
                    cases++;
                }
            }
        }
        /* M = 257: a GEMM tile boundary (240) and a 6-row tail */
        for (size_t ik = 0; ik < sizeof Ks / sizeof Ks[0]; ik++) {
            int64_t K = Ks[ik], N = K > 1000 ? 7 : Ns[(ik + (size_t)t) % 4];
            run_identity_case(&r, wt, 257, N, K, (int)(ik & 1), (int)((ik >> 1) & 1), 1 << (ik % 3));
            cases++;
        }
    }
    print_message("%d shapes, each bit-identical on every path\n", cases);
}

/* M = 0, N = 0 and K = 0 shapes, bad arguments. */
static void test_edges(void **state) {
    (void)state;
    float x[4 * 8], w[8 * 8], y[5 * 8], y2[5 * 8], bias[8];
    tu_rng r = {5};
    tu_fill(&r, x, 32, -1, 1);
    tu_fill(&r, w, 64, -1, 1);
    tu_fill(&r, bias, 8, -1, 1);
    bias[3] = -0.0f; /* +0 + -0 = +0 */
    opg_cpu_level best = opg_cpu_best_level();
    for (int lv = 0; lv <= (int)best; lv++) {
        opg_cpu_set_level((opg_cpu_level)lv);
        for (int which = 0; which < 2; which++) { /* 0: reference, 1: opg_matmul */
#define MM(y_, wt_, b_, M_, N_, K_)                                                    \
    (which ? opg_matmul(g_pools[2], y_, x, w, wt_, b_, M_, N_, K_)                     \
           : opg_matmul_ref(y_, x, w, wt_, b_, M_, N_, K_))
            /* empty outputs: success, y untouched */
            memset(y, 0x7f, sizeof y);
            memcpy(y2, y, sizeof y);
            assert_int_equal(MM(y, OPG_F32, bias, 0, 5, 8), 0);
            assert_int_equal(MM(y, OPG_F16, bias, 4, 0, 8), 0);
            assert_int_equal(MM(y, OPG_BF16, NULL, 0, 0, 0), 0);
            tu_assert_bits(y, y2, 40, "M = 0 or N = 0 writes nothing");
            /* K = 0: every output is +0, then + bias */
            for (int t = 0; t < 3; t++) {
                memset(y, 0xff, sizeof y);
                assert_int_equal(MM(y, FLOAT_TYPES[t], NULL, 4, 8, 0), 0);
                for (int i = 0; i < 32; i++) assert_int_equal(opg_f32_bits(y[i]), 0);
                assert_int_equal(MM(y, FLOAT_TYPES[t], bias, 4, 8, 0), 0);
                for (int i = 0; i < 32; i++)
                    assert_int_equal(opg_f32_bits(y[i]), opg_f32_bits(0.0f + bias[i % 8]));
                assert_int_equal(opg_f32_bits(y[3]), 0);
            }
            /* bad arguments */
            assert_int_equal(MM(y, (opg_dtype)-1, NULL, 1, 1, 8), -1);
            assert_int_equal(MM(y, (opg_dtype)7, NULL, 1, 1, 8), -1);
            assert_int_equal(MM(y, OPG_F32, NULL, -1, 1, 8), -1);
            assert_int_equal(MM(y, OPG_F32, NULL, 1, -1, 8), -1);
            assert_int_equal(MM(y, OPG_F32, NULL, 1, 1, -8), -1);
            assert_int_equal(MM(y, OPG_Q8_0, NULL, 1, 1, 33), -1); /* K not a block multiple */
            assert_int_equal(MM(y, OPG_Q4_K, NULL, 1, 1, 32), -1);
#undef MM
        }
    }
    opg_cpu_set_level(best);
    assert_true(opg_dot_f32_ref(x, w, 0) == 0.0f && !signbit(opg_dot_f32_ref(x, w, 0)));
}

/* ---- 3. batch invariance -------------------------------------------------------- */

static void test_batch_invariance(void **state) {
    (void)state;
    enum { M = 37, N = 129, K = 1000 };
    tu_rng r = {37};
    opg_cpu_level best = opg_cpu_best_level();
    float *x = tu_alloc(M * K * sizeof(float));
    float *bias = tu_alloc(N * sizeof(float));
    float *yb = tu_alloc(M * N * sizeof(float));
    float *y1 = tu_alloc(M * N * sizeof(float));
    tu_fill_wild(&r, x, M * K);
    tu_fill(&r, bias, N, -1, 1);
    for (int t = 0; t < 3; t++) {
        void *w = make_w(&r, FLOAT_TYPES[t], N, K, 1, NULL);
        for (int lv = (int)best; lv >= 0; lv--) {
            opg_cpu_set_level((opg_cpu_level)lv);
            assert_int_equal(opg_matmul(g_pools[1], yb, x, w, FLOAT_TYPES[t], bias, M, N, K), 0);
            /* each row alone (GEMV), and rows 5..8 as a batch of 4 */
            for (int m = 0; m < M; m++)
                assert_int_equal(opg_matmul(g_pools[2], y1 + m * N, x + m * K, w, FLOAT_TYPES[t],
                                            bias, 1, N, K), 0);
            tu_assert_bits(yb, y1, M * N, "row of M=37 vs the same row with M=1");
            assert_int_equal(opg_matmul(NULL, y1, x + 5 * K, w, FLOAT_TYPES[t], bias, 4, N, K), 0);
            tu_assert_bits(yb + 5 * N, y1, 4 * N, "rows 5..8 of M=37 vs M=4");
        }
        opg_cpu_set_level(best);
        /* and the reference agrees with the batch */
        assert_int_equal(opg_matmul_ref(y1, x + 36 * K, w, FLOAT_TYPES[t], bias, 1, N, K), 0);
        tu_assert_bits(yb + 36 * N, y1, N, "reference M=1 vs fast M=37");
        tu_free(w);
    }
    tu_free(x); tu_free(bias); tu_free(yb); tu_free(y1);
}

/* ---- 4. the order of the chunk combination ---------------------------------------- */

/* One long fma chain, ignoring chunks: what the contract does NOT compute. */
static float dot_unchunked(const float *a, const float *b, int64_t K) {
    float s = 0.0f;
    for (int64_t k = 0; k < K; k++) s = fmaf(a[k], b[k], s);
    return s;
}

/* Values placed so that the contract's order gives one result and another
 * plausible order another, proven by computing that other order here. Each
 * case also runs through every fast path, as a row of W with x = 1. */
static void test_chunk_order(void **state) {
    (void)state;
    enum { K = 1024 };
    static float a[K], ones[K];
    for (int k = 0; k < K; k++) ones[k] = 1.0f;
    const float e = 0x1p-24f; /* half an ulp of 1 */

    /* A: chunking matters. p_0 = 1, p_1 = e + e = 2e (exact), total = 1 + 2e.
     * A single chain would round 1 + e back to 1 twice (ties to even). */
    memset(a, 0, sizeof a);
    a[0] = 1.0f; a[256] = e; a[257] = e;
    float want_a = 1.0f + 2 * e;
    assert_true(dot_unchunked(a, ones, 512) == 1.0f && want_a != 1.0f);
    float got = opg_dot_f32_ref(a, ones, 512);
    tu_assert_bits(&want_a, &got, 1, "chunks are summed separately");

    /* B: left to right. p_0 = 1, p_1 = e, p_2 = e: (1 + e) + e = 1 (each a
     * tie to even); right to left or pairwise, 1 + (e + e) = 1 + 2e. */
    memset(a, 0, sizeof a);
    a[0] = 1.0f; a[256] = e; a[600] = e;
    float want_b = 1.0f;
    float p0 = 1.0f, p1 = e, p2 = e;
    assert_true(p0 + (p1 + p2) != want_b);
    got = opg_dot_f32_ref(a, ones, 768);
    tu_assert_bits(&want_b, &got, 1, "chunk partials combine left to right");

    /* C: total = p_0, not +0 + p_0. Every product underflows to -0, and
     * -0 + -0 = -0 keeps the sign; an extra +0 would make it +0. */
    for (int k = 0; k < K; k++) a[k] = -0x1p-100f;
    float tiny[K];
    for (int k = 0; k < K; k++) tiny[k] = 0x1p-100f;
    float want_c = -0.0f;
    assert_true(opg_f32_bits(0.0f + want_c) != opg_f32_bits(want_c));
    for (int64_t kc = 1; kc <= 300; kc += 299) {
        got = opg_dot_f32_ref(a, tiny, kc);
        tu_assert_bits(&want_c, &got, 1, "an underflowed -0 chunk keeps its sign");
    }

    /* The same three rows through every fast path, f32 and bf16 (all
     * values are exact in bf16), with M = 1 and M = 8. */
    float *wa = tu_alloc(3 * K * sizeof(float)), *xs = tu_alloc(8 * K * sizeof(float));
    uint16_t *wh = tu_alloc(3 * K * sizeof(uint16_t));
    memset(wa, 0, 3 * K * sizeof(float));
    wa[0] = 1.0f; wa[256] = e; wa[257] = e;                     /* A, K = 1024 */
    wa[K] = 1.0f; wa[K + 256] = e; wa[K + 600] = e;             /* B */
    wa[2 * K + 1000] = 1.0f; wa[2 * K + 1001] = e; wa[2 * K + 1002] = e; /* A inside chunk 3 */
    for (int i = 0; i < 3 * K; i++) wh[i] = opg_f32_to_bf16(wa[i]);
    for (int i = 0; i < 8 * K; i++) xs[i] = 1.0f;
    float want[8 * 3];
    for (int m = 0; m < 8; m++) { want[3 * m] = want_a; want[3 * m + 1] = want_b; want[3 * m + 2] = 1.0f; }
    for (int M = 1; M <= 8; M += 7) {
        check_paths(want, xs, wa, OPG_F32, NULL, M, 3, K, 1);
        check_paths(want, xs, wh, OPG_BF16, NULL, M, 3, K, 4);
    }
    /* C as a one-row matmul, K = 1 and K = 300 (the tail of a vector tile) */
    for (int64_t kc = 1; kc <= 300; kc += 299) check_paths(&want_c, tiny, a, OPG_F32, NULL, 1, 1, kc, 7);
    tu_free(wa); tu_free(xs); tu_free(wh);
}

/* ---- quantized weights: opg_matmul (quantize + opg_matmul_q8a) = the reference ---- */

static void test_q8_0_entry(void **state) {
    (void)state;
    tu_rng r = {808};
    static const int64_t shapes[][3] = {{1, 33, 256}, {5, 70, 512}, {3, 9, 32}, {40, 65, 288}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        size_t nb = (size_t)(N * K / OPG_QK);
        opg_block_q8_0 *w = tu_alloc(nb * sizeof *w);
        for (size_t i = 0; i < nb; i++) {
            w[i].d = opg_f32_to_f16(tu_uniform(&r, -0.01f, 0.01f));
            for (int q = 0; q < 32; q++) w[i].qs[q] = (int8_t)tu_int(&r, -127, 127);
        }
        float *x = tu_alloc((size_t)(M * K) * sizeof(float));
        float *bias = tu_alloc((size_t)N * sizeof(float));
        float *expect = tu_alloc((size_t)(M * N) * sizeof(float));
        tu_fill_wild(&r, x, (size_t)(M * K));
        tu_fill(&r, bias, (size_t)N, -1, 1);
        const float *b = (s & 1) ? bias : NULL;
        assert_int_equal(opg_matmul_ref(expect, x, w, OPG_Q8_0, b, M, N, K), 0);
        check_paths(expect, x, w, OPG_Q8_0, b, M, N, K, 7);
        tu_free(w); tu_free(x); tu_free(bias); tu_free(expect);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_bit_identity),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_chunk_order),
        cmocka_unit_test(test_q8_0_entry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
