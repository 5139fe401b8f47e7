/* test_sample.c: argmax, the counter RNG and sampling (docs/determinism.md
 * section 10) against known answers, a float64 softmax and an independent
 * float32 re-implementation of the spec whose rounding choices are pinned by
 * "mutants" that the checks must tell apart. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opg_math.h"
#include "sample.h"

/* ---- test-side reference: the spec written again, independently ---------- */

typedef struct {
    float l;
    int64_t id;
} tok;

/* (logit desc, id asc); -0 and +0 compare equal, as numbers do. */
static int tok_cmp(const void *pa, const void *pb) {
    const tok *a = pa, *b = pb;
    if (a->l > b->l) return -1;
    if (a->l < b->l) return 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Full sort with qsort, NaN dropped; returns the count. */
static int64_t ref_order(const float *l, int64_t n, int64_t *ids) {
    tok *t = malloc((size_t)(n > 0 ? n : 1) * sizeof *t);
    assert_non_null(t);
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(l[i])) t[cnt++] = (tok){l[i], i};
    qsort(t, (size_t)cnt, sizeof *t, tok_cmp);
    for (int64_t j = 0; j < cnt; j++) ids[j] = t[j].id;
    free(t);
    return cnt;
}

/* Deliberately wrong variants of one rounding choice each. A check "pins" a
 * choice when the spec and the mutant give different tokens on its inputs. */
enum {
    MUT_NONE = 0,
    MUT_F64_SUMS,  /* S, the top-p prefix sums, S', r and the walk in double */
    MUT_WALK_LE,   /* walk stops at r <= c instead of r < c */
    MUT_EXACT_R,   /* r = u*S' kept exact (double) instead of rounded to f32 */
    MUT_THR_EXACT, /* prefix sum compared with the exact P*S, not the f32 product */
    MUT_THR_GT,    /* prefix sum > P*S instead of >= */
    MUT_DIFF_DIV,  /* e = exp((l - l_first) / T) instead of exp(l/T - l_first/T) */
    MUT_COUNT
};
static const char *mut_name[MUT_COUNT] = {"none",         "f64 sums",     "walk r<=c",
                                          "exact r",      "exact P*S",    "prefix > P*S",
                                          "(l-l0)/T"};

static int64_t ref_sample(const float *l, int64_t n, float T, int32_t K, float P, float u,
                          int mut) {
    if (n <= 0) return -1;
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    float *e = malloc((size_t)n * sizeof *e);
    assert_true(ids && e);
    int64_t cnt = ref_order(l, n, ids), tokn = -1;
    if (cnt == 0) goto done;
    if (!(T > 0.0f) || K == 1) { /* the first of the order is the argmax */
        tokn = ids[0];
        goto done;
    }
    int64_t kept = K > 0 && K < cnt ? K : cnt;
    float zf = l[ids[0]] / T;
    if (isinf(zf)) { /* spec: an infinite largest z picks the top token */
        tokn = ids[0];
        goto done;
    }
    for (int64_t j = 0; j < kept; j++)
        e[j] = mut == MUT_DIFF_DIV ? opg_expf((l[ids[j]] - l[ids[0]]) / T)
                                   : opg_expf(l[ids[j]] / T - zf);
    if (P > 0.0f && P < 1.0f) {
        int64_t m = kept;
        if (mut == MUT_F64_SUMS) {
            double S = 0.0, cum = 0.0;
            for (int64_t j = 0; j < kept; j++) S += e[j];
            double thr = (double)P * S;
            for (int64_t j = 0; j < kept; j++) {
                cum += e[j];
                if (cum >= thr) { m = j + 1; break; }
            }
        } else {
            float S = 0.0f, cum = 0.0f;
            for (int64_t j = 0; j < kept; j++) S = S + e[j];
            float thr = P * S;
            for (int64_t j = 0; j < kept; j++) {
                cum = cum + e[j];
                int stop = mut == MUT_THR_EXACT ? (double)cum >= (double)P * (double)S
                         : mut == MUT_THR_GT    ? cum > thr
                                                : cum >= thr;
                if (stop) { m = j + 1; break; }
            }
        }
        kept = m;
    }
    tokn = ids[kept - 1];
    if (mut == MUT_F64_SUMS) {
        double S2 = 0.0, c = 0.0;
        for (int64_t j = 0; j < kept; j++) S2 += e[j];
        double r = (double)u * S2;
        for (int64_t j = 0; j < kept; j++) {
            c += e[j];
            if (r < c) { tokn = ids[j]; break; }
        }
    } else {
        float S2 = 0.0f, c = 0.0f;
        for (int64_t j = 0; j < kept; j++) S2 = S2 + e[j];
        float r = u * S2;
        double rx = (double)u * (double)S2; /* exact: 24-bit times 24-bit */
        for (int64_t j = 0; j < kept; j++) {
            c = c + e[j];
            int hit = mut == MUT_WALK_LE ? r <= c : mut == MUT_EXACT_R ? rx < (double)c : r < c;
            if (hit) { tokn = ids[j]; break; }
        }
    }
done:
    free(ids);
    free(e);
    return tokn;
}

/* Library call with scratch of exactly the advertised size (ASan sees overruns). */
static int64_t lib_sample(const float *l, int64_t n, float T, int32_t K, float P, uint64_t seed,
                          uint64_t step) {
    opg_sample_params p = {T, K, P, seed};
    void *scratch = tu_alloc(opg_sample_scratch_bytes(n));
    int64_t t = opg_sample_ref(l, n, &p, step, scratch);
    tu_free(scratch);
    return t;
}

/* ---- RNG ------------------------------------------------------------------ */

/* Computed independently in Python from the formula of section 10:
 *   mix(z): z ^= z>>30; z = z*0xbf58476d1ce4e5b9 & M; z ^= z>>27;
 *           z = z*0x94d049bb133111eb & M; z ^= z>>31     (M = 2^64-1)
 *   rng(s, c) = mix((mix(s) + (c+1)*0x9e3779b97f4a7c15) & M)
 * and u = (z >> 40) / 2^24. */
static const struct {
    uint64_t seed, counter, z;
    uint32_t top24;
} rng_kat[] = {
    {0x0ull, 0x0ull, 0xe220a8397b1dcdafull, 14819496u},
    {0x0ull, 0x1ull, 0x6e789e6aa1b965f4ull, 7239838u},
    {0x1ull, 0x0ull, 0xbfef8030ddc2d772ull, 12578688u},
    {0x2aull, 0x7ull, 0x272404a0a3926552ull, 2565124u},
    {0xdeadbeefcafef00dull, 123456789ull, 0xd5255e53c3bc57adull, 13968734u},
    {0xffffffffffffffffull, 0xffffffffffffffffull, 0x4bffd802ebfb15e4ull, 4980696u},
    {12345ull, 0xffffffff00000000ull, 0x3768ea903ecf5ae2ull, 3631338u},
};

static void test_rng_known_answers(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof rng_kat / sizeof rng_kat[0]; i++) {
        uint64_t z = opg_rng_u64(rng_kat[i].seed, rng_kat[i].counter);
        if (z != rng_kat[i].z)
            print_error("rng(%#llx, %#llx) = %#llx, expected %#llx\n",
                        (unsigned long long)rng_kat[i].seed,
                        (unsigned long long)rng_kat[i].counter, (unsigned long long)z,
                        (unsigned long long)rng_kat[i].z);
        assert_true(z == rng_kat[i].z);
        assert_true((uint32_t)(z >> 40) == rng_kat[i].top24);
        float u = opg_rng_uniform(rng_kat[i].seed, rng_kat[i].counter);
        float want = (float)((double)rng_kat[i].top24 / 16777216.0);
        assert_true(opg_f32_bits(u) == opg_f32_bits(want));
    }
    /* The first splitmix64 output of seed 0 is the well-known constant. */
    assert_true(opg_rng_u64(0, 0) == 0xe220a8397b1dcdafull);
}

/* Same inputs, same bits; u in [0, 1) on the 2^-24 grid; bins uniform. */
static void test_rng_uniform(void **state) {
    (void)state;
    enum { BINS = 256, N = 1 << 20 };
    static uint32_t bin[BINS];
    const uint64_t seeds[2] = {7, 0x0123456789abcdefull};
    for (int s = 0; s < 3; s++) {
        memset(bin, 0, sizeof bin);
        uint64_t bits[64] = {0};
        for (uint64_t c = 0; c < N; c++) {
            /* s == 2 walks the seeds at a fixed counter: jobs differ by seed. */
            uint64_t seed = s < 2 ? seeds[s] : c, ctr = s < 2 ? c : 3;
            float u = opg_rng_uniform(seed, ctr);
            assert_true(u >= 0.0f && u < 1.0f);
            float scaled = u * 16777216.0f;
            assert_true(scaled == floorf(scaled));
            if ((c & 1023) == 0) {
                assert_true(opg_f32_bits(u) == opg_f32_bits(opg_rng_uniform(seed, ctr)));
                assert_true(opg_rng_u64(seed, ctr) == opg_rng_u64(seed, ctr));
            }
            bin[(int)(u * BINS)]++;
            uint64_t z = opg_rng_u64(seed, ctr);
            for (int b = 0; b < 64; b++) bits[b] += (z >> b) & 1;
        }
        /* chi-square with 255 degrees of freedom: mean 255, sd sqrt(510) = 22.6;
         * the bound 255 + 6 sd = 390 is far in the tail of the null, and the
         * inputs are fixed, so this is a deterministic pass/fail. */
        double chi2 = 0, expect = (double)N / BINS;
        for (int b = 0; b < BINS; b++) chi2 += (bin[b] - expect) * (bin[b] - expect) / expect;
        print_message("rng uniform stream %d: chi2 = %.1f (df 255, bound 390)\n", s, chi2);
        assert_true(chi2 < 390.0);
        /* each of the 64 bits is set half of the time within 6 sd (sd = 512) */
        for (int b = 0; b < 64; b++) assert_true(fabs((double)bits[b] - N / 2.0) < 6 * 512.0);
    }
    /* neighbouring counters and seeds give different words */
    assert_true(opg_rng_u64(1, 0) != opg_rng_u64(1, 1));
    assert_true(opg_rng_u64(1, 0) != opg_rng_u64(2, 0));
}

/* ---- argmax --------------------------------------------------------------- */

static void test_argmax(void **state) {
    (void)state;
    const float a[] = {1.0f, 3.0f, 2.0f, 3.0f, -5.0f};
    assert_int_equal(opg_argmax_ref(a, 5), 1); /* tie: lowest index */
    const float b[] = {NAN, 1.0f, NAN, 4.0f, 4.0f, NAN};
    assert_int_equal(opg_argmax_ref(b, 6), 3);
    const float c[] = {NAN, NAN, NAN};
    assert_int_equal(opg_argmax_ref(c, 3), 0); /* all NaN */
    const float d[] = {-INFINITY, -INFINITY, NAN, -INFINITY};
    assert_int_equal(opg_argmax_ref(d, 4), 0);
    const float e[] = {NAN, -INFINITY, -1e30f, -INFINITY};
    assert_int_equal(opg_argmax_ref(e, 4), 2);
    const float f[] = {-1.0f, INFINITY, INFINITY};
    assert_int_equal(opg_argmax_ref(f, 3), 1);
    const float g[] = {7.0f};
    assert_int_equal(opg_argmax_ref(g, 1), 0);
    const float h[] = {-0.0f, 0.0f, -0.0f}; /* -0 == +0: a tie */
    assert_int_equal(opg_argmax_ref(h, 3), 0);
    const float h2[] = {-1.0f, 0.0f, -0.0f};
    assert_int_equal(opg_argmax_ref(h2, 3), 1);
    assert_int_equal(opg_argmax_ref(a, 0), 0);
    assert_int_equal(opg_argmax_ref(NULL, 0), 0);
    /* the max sitting at the last index, and a large row */
    tu_rng r = {11};
    enum { N = 150000 };
    float *x = tu_alloc(N * sizeof *x);
    tu_fill(&r, x, N, -20.0f, 20.0f);
    x[N - 1] = 100.0f;
    assert_int_equal(opg_argmax_ref(x, N), N - 1);
    x[777] = 100.0f;
    assert_int_equal(opg_argmax_ref(x, N), 777);
    tu_free(x);
}

/* ---- order: partial top-k selection equals the full sort ------------------ */

static void fill_ties(tu_rng *r, float *x, int64_t n) {
    static const float vals[] = {-2.0f, -1.0f, -0.0f, 0.0f, 0.5f, 3.0f, -INFINITY, INFINITY, NAN};
    for (int64_t i = 0; i < n; i++) x[i] = vals[tu_int(r, 0, 8)];
}

static void test_order_topk_vs_full_sort(void **state) {
    (void)state;
    tu_rng r = {2024};
    const int64_t sizes[] = {1, 2, 3, 7, 10, 57, 300, 1000, 150000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        float *x = tu_alloc((size_t)n * sizeof *x);
        int64_t *full = tu_alloc((size_t)n * sizeof *full);
        int64_t *got = tu_alloc((size_t)n * sizeof *got);
        int reps = n >= 100000 ? 1 : n >= 1000 ? 4 : 30;
        for (int rep = 0; rep < reps; rep++) {
            if (rep % 3 == 2) tu_fill(&r, x, (size_t)n, -1.0f, 1.0f); /* few ties */
            else fill_ties(&r, x, n);                                 /* many ties */
            int64_t cnt = ref_order(x, n, full);
            const int64_t ks[] = {1, 2, 5, 40, n, n + 1, 0, -3, INT32_MAX};
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                int32_t k = (int32_t)ks[ki];
                int64_t want = k > 0 && k < cnt ? k : cnt;
                int64_t m = opg_sample_order_ref(x, n, k, got);
                assert_int_equal(m, want);
                for (int64_t j = 0; j < m; j++) {
                    if (got[j] != full[j])
                        print_error("n=%lld k=%d: order[%lld] = %lld, full sort has %lld\n",
                                    (long long)n, k, (long long)j, (long long)got[j],
                                    (long long)full[j]);
                    assert_true(got[j] == full[j]);
                }
            }
        }
        tu_free(x);
        tu_free(full);
        tu_free(got);
    }
    const float allnan[] = {NAN, NAN};
    int64_t ids[2];
    assert_int_equal(opg_sample_order_ref(allnan, 2, 0, ids), 0);
    assert_int_equal(opg_sample_order_ref(allnan, 0, 5, ids), 0);
}

/* ---- sampling: the edges -------------------------------------------------- */

static void test_sample_edges(void **state) {
    (void)state;
    tu_rng r = {5};
    float x[64];
    for (int rep = 0; rep < 50; rep++) {
        fill_ties(&r, x, 64);
        x[rep] = NAN;
        int64_t am = opg_argmax_ref(x, 64);
        uint64_t seed = tu_u64(&r);
        /* T <= 0 or top_k == 1: greedy, whatever the other knobs say */
        assert_int_equal(lib_sample(x, 64, 0.0f, 0, 0.9f, seed, rep), am);
        assert_int_equal(lib_sample(x, 64, -0.0f, 5, 1.0f, seed, rep), am);
        assert_int_equal(lib_sample(x, 64, -2.0f, 0, 0.0f, seed, rep), am);
        assert_int_equal(lib_sample(x, 64, 1.0f, 1, 0.5f, seed, rep), am);
        assert_int_equal(lib_sample(x, 64, 100.0f, 1, 1.0f, seed, rep), am);
    }
    /* -1: no logits or no non-NaN logit, in every mode */
    const float nan3[] = {NAN, NAN, NAN};
    const float one[] = {-3.0f};
    assert_int_equal(lib_sample(nan3, 3, 1.0f, 0, 1.0f, 1, 0), -1);
    assert_int_equal(lib_sample(nan3, 3, 0.0f, 0, 1.0f, 1, 0), -1);
    assert_int_equal(lib_sample(nan3, 3, 1.0f, 1, 1.0f, 1, 0), -1);
    assert_int_equal(lib_sample(nan3, 3, 1.0f, 2, 0.5f, 1, 0), -1);
    assert_int_equal(lib_sample(one, 0, 1.0f, 0, 1.0f, 1, 0), -1);
    assert_int_equal(lib_sample(one, -4, 1.0f, 0, 1.0f, 1, 0), -1);
    assert_int_equal(lib_sample(one, 0, 0.0f, 0, 1.0f, 1, 0), -1);
    opg_sample_params p = {1.0f, 0, 1.0f, 1};
    assert_int_equal(opg_sample_ref(one, 0, &p, 0, NULL), -1);
    assert_true(opg_sample_scratch_bytes(0) == 0 && opg_sample_scratch_bytes(-1) == 0);
    assert_true(opg_sample_scratch_bytes(150000) >= 150000 * (sizeof(int64_t) + sizeof(float)));
    /* n == 1 */
    for (uint64_t s = 0; s < 20; s++) assert_int_equal(lib_sample(one, 1, 0.7f, 0, 0.3f, s, s), 0);

    /* tiny top_p keeps only the top token: ids 5 and 9 tie at the top */
    float y[16];
    for (int i = 0; i < 16; i++) y[i] = 1.0f - 0.01f * (float)i;
    y[5] = y[9] = 2.0f;
    for (uint64_t s = 0; s < 500; s++) {
        assert_int_equal(lib_sample(y, 16, 1.0f, 0, 1e-6f, 99, s), 5);
        assert_int_equal(lib_sample(y, 16, 50.0f, 0, 1e-30f, 99, s), 5);
    }

    /* NaN and -inf logits are never drawn (their e is NaN-free 0 or absent) */
    float z[257];
    for (int i = 0; i < 257; i++) z[i] = i % 3 == 0 ? NAN : i % 7 == 0 ? -INFINITY : tu_uniform(&r, -1, 1);
    for (uint64_t s = 0; s < 3000; s++) {
        int64_t t = lib_sample(z, 257, 3.0f, 0, 1.0f, 4242, s);
        assert_true(t >= 0 && t < 257);
        assert_false(isnan(z[t]));
        assert_false(isinf(z[t]));
    }
}

/* Same (seed, step), same token; steps and seeds spread over the tokens. */
static void test_sample_steps(void **state) {
    (void)state;
    float x[16] = {0};
    /* known answers from the RNG table: u(0,0) = 0.8833..., u(0,1) = 0.4315...;
     * four equal logits: e = 1, S' = 4, r = 4u, token = floor(4u) */
    assert_int_equal(lib_sample(x, 4, 1.0f, 0, 1.0f, 0, 0), 3);
    assert_int_equal(lib_sample(x, 4, 1.0f, 0, 1.0f, 0, 1), 1);
    int hist_step[16] = {0}, hist_seed[16] = {0};
    for (uint64_t s = 0; s < 64; s++) {
        int64_t a = lib_sample(x, 16, 1.0f, 0, 1.0f, 77, s);
        assert_int_equal(a, lib_sample(x, 16, 1.0f, 0, 1.0f, 77, s));
        hist_step[a]++;
        hist_seed[lib_sample(x, 16, 1.0f, 0, 1.0f, s, 5)]++;
    }
    int distinct_step = 0, distinct_seed = 0;
    for (int i = 0; i < 16; i++) {
        distinct_step += hist_step[i] > 0;
        distinct_seed += hist_seed[i] > 0;
    }
    assert_true(distinct_step >= 8);
    assert_true(distinct_seed >= 8);
}

/* ---- sampling: the distribution ------------------------------------------- */

/* float64 target: softmax((l - max)/T) over the top-k order, then the
 * shortest prefix of mass >= P, renormalised. Returns the kept count and
 * the probabilities in order; the margin says how far P is from the nearest
 * prefix mass, so a float32 cut can be trusted to agree. */
static int64_t f64_target(const float *l, int64_t n, double T, int32_t K, double P,
                          int64_t *ids, double *prob, double *margin) {
    int64_t cnt = ref_order(l, n, ids);
    int64_t kept = K > 0 && K < cnt ? K : cnt;
    double S = 0;
    for (int64_t j = 0; j < kept; j++) S += prob[j] = exp(((double)l[ids[j]] - l[ids[0]]) / T);
    *margin = 1.0;
    if (P > 0 && P < 1) {
        double cum = 0;
        int64_t m = kept;
        for (int64_t j = 0; j < kept; j++) {
            cum += prob[j] / S;
            if (fabs(cum - P) < *margin) *margin = fabs(cum - P);
            if (cum >= P && m == kept) m = j + 1;
        }
        kept = m;
        S = 0;
        for (int64_t j = 0; j < kept; j++) S += prob[j];
    }
    for (int64_t j = 0; j < kept; j++) prob[j] /= S;
    return kept;
}

static double chi2_of(const int *count, const int64_t *ids, const double *prob, int64_t kept,
                      double N) {
    double chi2 = 0;
    for (int64_t j = 0; j < kept; j++) {
        double ex = N * prob[j];
        chi2 += (count[ids[j]] - ex) * (count[ids[j]] - ex) / ex;
    }
    return chi2;
}

static void test_sample_distribution(void **state) {
    (void)state;
    enum { V = 32, N = 200000 };
    const struct {
        float T;
        int32_t K;
        float P;
    } cfg[] = {{1.0f, 0, 1.0f}, {0.7f, 10, 1.0f}, {1.3f, 0, 0.8f}, {0.9f, 12, 0.9f}};
    tu_rng r = {31337};
    float l[V];
    tu_fill(&r, l, V, -3.0f, 3.0f);
    l[4] = l[9]; /* a tie, which must split mass equally */
    static int count[V];
    int64_t ids[V];
    double prob[V], wrongp[V];
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        double margin;
        int64_t kept = f64_target(l, V, cfg[c].T, cfg[c].K, cfg[c].P, ids, prob, &margin);
        assert_true(margin > 1e-3); /* the cut is not at a rounding-sized boundary */
        memset(count, 0, sizeof count);
        for (uint64_t s = 0; s < N; s++) {
            opg_sample_params p = {cfg[c].T, cfg[c].K, cfg[c].P, 0xc0ffee + c};
            static char scratch[V * 16] __attribute__((aligned(8)));
            assert_true(opg_sample_scratch_bytes(V) <= sizeof scratch);
            int64_t t = opg_sample_ref(l, V, &p, s, scratch);
            assert_true(t >= 0 && t < V);
            count[t]++;
        }
        int64_t inside = 0;
        for (int64_t j = 0; j < kept; j++) inside += count[ids[j]];
        assert_int_equal(inside, N); /* nothing outside top-k / top-p */
        /* Tolerance: Pearson chi-square over the kept tokens, df = kept-1,
         * bound df + 6*sqrt(2 df) + 6 (a p-value far below 1e-6 under the
         * target); plus each token within 6 binomial sd. Seeded, so the
         * outcome is fixed; float32 vs float64 probability differences
         * (~1e-7 relative) are far below what N = 200000 can resolve. */
        double df = (double)(kept - 1);
        double bound = df + 6.0 * sqrt(2.0 * df) + 6.0;
        double chi2 = chi2_of(count, ids, prob, kept, N);
        print_message("sample T=%.2f K=%d P=%.2f: %lld kept, chi2 = %.2f (bound %.1f)\n",
                      (double)cfg[c].T, cfg[c].K, (double)cfg[c].P, (long long)kept, chi2, bound);
        assert_true(chi2 < bound);
        for (int64_t j = 0; j < kept; j++) {
            double ex = N * prob[j], sd = sqrt(ex * (1.0 - prob[j]));
            assert_true(fabs(count[ids[j]] - ex) <= 6.0 * sd + 1.0);
        }
        /* The check has power: a 10% wrong temperature is rejected. */
        double wm;
        int64_t wk = f64_target(l, V, cfg[c].T * 1.1, cfg[c].K, cfg[c].P, ids, wrongp, &wm);
        if (!(cfg[c].P > 0.0f && cfg[c].P < 1.0f)) { /* else the wrong cut may differ */
            assert_int_equal(wk, kept);
            assert_true(chi2_of(count, ids, wrongp, wk, N) > bound);
        }
    }
}

/* ---- sampling vs the independent f32 re-implementation -------------------- */

static long mut_hits[MUT_COUNT];

/* Checks the library against the spec at (seed, step) and tallies which
 * mutants would have answered differently there. */
static void check_point(const float *l, int64_t n, float T, int32_t K, float P, uint64_t seed,
                        uint64_t step) {
    float u = opg_rng_uniform(seed, step);
    int64_t want = ref_sample(l, n, T, K, P, u, MUT_NONE);
    int64_t got = lib_sample(l, n, T, K, P, seed, step);
    if (got != want)
        print_error("n=%lld T=%.9g K=%d P=%.9g seed=%llu step=%llu: lib %lld, spec %lld\n",
                    (long long)n, (double)T, K, (double)P, (unsigned long long)seed,
                    (unsigned long long)step, (long long)got, (long long)want);
    assert_true(got == want);
    for (int m = 1; m < MUT_COUNT; m++)
        if (ref_sample(l, n, T, K, P, u, m) != want) mut_hits[m]++;
}

static void test_sample_vs_reference_random(void **state) {
    (void)state;
    tu_rng r = {8675309};
    enum { NMAX = 300 };
    float l[NMAX];
    const int64_t sizes[] = {1, 2, 3, 5, 17, 64, 200, 300};
    for (int cs = 0; cs < 1200; cs++) {
        int64_t n = sizes[tu_int(&r, 0, 7)];
        switch (tu_int(&r, 0, 3)) {
        case 0: tu_fill(&r, l, (size_t)n, -8.0f, 8.0f); break;
        case 1: fill_ties(&r, l, n); break;
        case 2: tu_fill_wild(&r, l, (size_t)n); break;
        default: /* large logits: l/T rounds coarsely */
            for (int64_t i = 0; i < n; i++) l[i] = 3000.0f + tu_uniform(&r, 0.0f, 4.0f);
        }
        if (tu_int(&r, 0, 9) == 0)
            for (int64_t i = 0; i < n; i += 4) l[i] = NAN;
        const float Ts[] = {0.0f, -1.0f, 1.0f, 0.05f, 0.7f, 2.5f, 1e30f, tu_uniform(&r, 0.1f, 3.0f)};
        const float Ps[] = {1.0f, 0.0f, 1.5f, -0.5f, NAN, 1e-7f, 0.5f, 0.95f, tu_uniform(&r, 0.01f, 0.99f)};
        float T = Ts[tu_int(&r, 0, 7)];
        float P = Ps[tu_int(&r, 0, 8)];
        const int32_t Ks[] = {0, -1, 1, 2, 5, 40, (int32_t)n, (int32_t)n + 3, tu_int(&r, 1, (int)n)};
        int32_t K = Ks[tu_int(&r, 0, 8)];
        uint64_t seed = tu_u64(&r);
        for (int s = 0; s < 4; s++) check_point(l, n, T, K, P, seed, tu_u64(&r) >> tu_int(&r, 0, 63));
    }
}

/* Inputs built so that each rounding choice of the walk decides a token; the
 * library must follow the spec and every mutant must be caught somewhere. */
static void test_sample_rounding_pinned(void **state) {
    (void)state;
    memset(mut_hits, 0, sizeof mut_hits);

    /* (1) 3001 equal logits: every e = 1, c_j = j+1, S' = 3001. Where
     * fl(u*3001) is an integer R, the walk must skip c = R (r < c is strict)
     * and return token R; about half of those have an exact u*3001 just below R
     * that f32 rounds up, which pins "r rounded to f32". */
    {
        enum { N = 3001 };
        float *l = tu_alloc(N * sizeof *l);
        for (int i = 0; i < N; i++) l[i] = 0.25f;
        int hits = 0;
        for (uint64_t s = 0; s < (1u << 18); s++) {
            float u = opg_rng_uniform(17, s);
            float rr = u * (float)N;
            if (rr != floorf(rr) || rr < 1.0f) continue;
            hits++;
            assert_int_equal(lib_sample(l, N, 0.9f, 0, 1.0f, 17, s), (int64_t)rr);
            check_point(l, N, 0.9f, 0, 1.0f, 17, s);
        }
        print_message("equal logits: %d steps with r on a boundary\n", hits);
        assert_true(hits >= 10);
        tu_free(l);
    }

    /* (2) Absorption: one token with e = 1 and 4000 with e = exp(-17) < 2^-24,
     * each below half an ulp of the running f32 sum, so S' = 1 and only the
     * top token can ever be drawn; exact sums would draw a tail token when
     * u > 1 - 1.7e-4. */
    {
        enum { N = 4001, TOP = 1234 };
        float *l = tu_alloc(N * sizeof *l);
        for (int i = 0; i < N; i++) l[i] = -17.0f;
        l[TOP] = 0.0f;
        assert_true(opg_expf(-17.0f) < 0x1p-24f);
        int hits = 0;
        for (uint64_t s = 0; s < (1u << 18); s++) {
            float u = opg_rng_uniform(23, s);
            if (u < 0.9998f && s % 4096 != 0) continue;
            hits++;
            assert_int_equal(lib_sample(l, N, 1.0f, 0, 1.0f, 23, s), TOP);
            check_point(l, N, 1.0f, 0, 1.0f, 23, s);
        }
        assert_true(hits >= 10);
        tu_free(l);
    }

    /* (3) top-p boundary: P chosen so that the f32 product P*S equals the
     * prefix sum of m tokens exactly while the exact product is above it.
     * The spec keeps m tokens; ">" or an exact threshold would keep m+1. */
    {
        tu_rng r = {99};
        enum { N = 8 };
        float l[N];
        int found = 0;
        for (int trial = 0; trial < 2000 && !found; trial++) {
            tu_fill(&r, l, N, -1.5f, 1.5f);
            int64_t ids[N];
            ref_order(l, N, ids);
            float e[N], S = 0.0f;
            for (int j = 0; j < N; j++) S = S + (e[j] = opg_expf(l[ids[j]] / 1.0f - l[ids[0]] / 1.0f));
            int m = 1 + tu_int(&r, 0, N - 3); /* keep m tokens, 1 <= m <= N-2 */
            float cum = 0.0f;
            for (int j = 0; j < m; j++) cum = cum + e[j];
            float Pt = cum / S;
            for (int k = 0; k < 8; k++) Pt = nextafterf(Pt, 0.0f);
            for (int t = 0; t < 16 && !found; t++, Pt = nextafterf(Pt, 2.0f)) {
                float prod = Pt * S;
                if (prod == cum && (double)Pt * (double)S > (double)cum && Pt > 0.0f && Pt < 1.0f) {
                    found = 1;
                    int cut_seen = 0;
                    for (uint64_t s = 0; s < 3000; s++) {
                        float u = opg_rng_uniform(5, s);
                        int64_t got = lib_sample(l, N, 1.0f, 0, Pt, 5, s);
                        for (int j = m; j < N; j++) assert_true(got != ids[j]);
                        if (ref_sample(l, N, 1.0f, 0, Pt, u, MUT_THR_EXACT) == ids[m]) cut_seen++;
                        check_point(l, N, 1.0f, 0, Pt, 5, s);
                    }
                    print_message("top-p boundary: P=%.9g keeps %d; the cut token would have "
                                  "been drawn %d times of 3000\n", (double)Pt, m, cut_seen);
                    assert_true(cut_seen > 0);
                }
            }
        }
        assert_true(found);
    }

    /* (4) Large logits over a small temperature: l/T rounds coarsely (ulp
     * 2^-6 near 143000), so exp(l/T - l0/T) and exp((l - l0)/T) differ by
     * up to ~1.5% and the walk's boundaries move. */
    {
        tu_rng r = {4711};
        enum { N = 48 };
        float l[N];
        for (int i = 0; i < N; i++) l[i] = 100000.0f + tu_uniform(&r, 0.0f, 4.0f);
        for (uint64_t s = 0; s < 6000; s++) {
            float u = opg_rng_uniform(31, s);
            if (ref_sample(l, N, 0.7f, 0, 1.0f, u, MUT_DIFF_DIV) != ref_sample(l, N, 0.7f, 0, 1.0f, u, MUT_NONE)
                || s % 64 == 0)
                check_point(l, N, 0.7f, 0, 1.0f, 31, s);
        }
    }

    for (int m = 1; m < MUT_COUNT; m++) {
        print_message("mutant '%s' caught at %ld points\n", mut_name[m], mut_hits[m]);
        assert_true(mut_hits[m] > 0);
    }
}

/* Infinite scaled logits: the top token, never the "fall-through" last one. */
static void test_sample_infinite_scale(void **state) {
    (void)state;
    void *scratch = tu_alloc(opg_sample_scratch_bytes(8));
    float l[4] = {97.0f, 100.0f, 99.0f, 98.0f};
    opg_sample_params p = {1e-37f, 0, 1.0f, 5};
    for (uint64_t step = 0; step < 16; step++)
        assert_int_equal(opg_sample_ref(l, 4, &p, step, scratch), 1); /* l/T overflows */
    float inf_l[4] = {1.0f, INFINITY, 3.0f, INFINITY};
    p.temperature = 0.7f;
    p.top_p = 0.9f;
    for (uint64_t step = 0; step < 16; step++)
        assert_int_equal(opg_sample_ref(inf_l, 4, &p, step, scratch), 1);
    float neg[3] = {-INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(opg_sample_ref(neg, 3, &p, 0, scratch), 0);
    p.temperature = NAN; /* NaN temperature: greedy */
    assert_int_equal(opg_sample_ref(l, 4, &p, 0, scratch), 1);
    tu_free(scratch);
}

/* Batch invariance: sampling or argmax of row i of a 37-row logits batch
 * equals the same row copied out alone (a row's token depends only on its
 * own logits, seed and step). */
static void test_rows_of_a_batch(void **state) {
    (void)state;
    enum { M = 37, V = 3001 };
    tu_rng r = {91};
    float *batch = tu_alloc(sizeof(float) * M * V), *row = tu_alloc(sizeof(float) * V);
    void *scratch = tu_alloc(opg_sample_scratch_bytes(V));
    for (size_t i = 0; i < (size_t)M * V; i++) batch[i] = tu_uniform(&r, -8.0f, 8.0f);
    opg_sample_params p = {0.9f, 40, 0.95f, 1234};
    for (int i = 0; i < M; i++) {
        memcpy(row, batch + (size_t)i * V, sizeof(float) * V);
        assert_int_equal(opg_argmax_ref(batch + (size_t)i * V, V), opg_argmax_ref(row, V));
        for (uint64_t step = 0; step < 4; step++)
            assert_int_equal(opg_sample_ref(batch + (size_t)i * V, V, &p, step, scratch),
                             opg_sample_ref(row, V, &p, step, scratch));
    }
    tu_free(batch); tu_free(row); tu_free(scratch);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_known_answers),
        cmocka_unit_test(test_rng_uniform),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_order_topk_vs_full_sort),
        cmocka_unit_test(test_sample_edges),
        cmocka_unit_test(test_sample_steps),
        cmocka_unit_test(test_sample_distribution),
        cmocka_unit_test(test_sample_vs_reference_random),
        cmocka_unit_test(test_sample_rounding_pinned),
        cmocka_unit_test(test_sample_infinite_scale),
        cmocka_unit_test(test_rows_of_a_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
