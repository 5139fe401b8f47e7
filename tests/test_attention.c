/* test_attention.c: causal GQA attention (docs/determinism.md section 9):
 * accuracy against float64, prefill = decode = chunked prefill bit for bit,
 * reference = scalar = AVX2 = any thread count, batch invariance, and checks
 * that the absolute chunk / segment boundaries and the chunked dot matter. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attention.h"
#include "contract.h"
#include "cpu.h"
#include "opg_math.h"
#include "pool.h"

/* Bound stated in docs/determinism.md section 9: |out_d - exact_d| <=
 * ACC_BOUND * 2^-24 * sum_j w_j |v_j[d]| * (1 + S), w the exact softmax
 * weights, S = max_j scale * sum_d |q_d k_j[d]|. */
#define ACC_BOUND 4.0

/* One attention problem: q [n_q][n_head*hd], k, v [pos0+n_q][n_kv*hd]. */
typedef struct {
    int64_t n_q, pos0;
    int n_head, n_kv, hd;
    float scale;
    float *q, *k, *v;
} problem;

/* q uniform in [-qa, qa], k and v in [-1, 1]; wild: tu_fill_wild everywhere. */
static problem make_problem(uint64_t seed, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                            int hd, float qa, int wild) {
    problem p = {n_q, pos0, n_head, n_kv, hd, 1.0f / sqrtf((float)hd), NULL, NULL, NULL};
    size_t nq = (size_t)n_q * (size_t)n_head * (size_t)hd;
    size_t nkv = (size_t)(pos0 + n_q) * (size_t)n_kv * (size_t)hd;
    p.q = tu_alloc(nq * sizeof(float));
    p.k = tu_alloc(nkv * sizeof(float));
    p.v = tu_alloc(nkv * sizeof(float));
    tu_rng r = {seed};
    if (wild) {
        tu_fill_wild(&r, p.q, nq);
        tu_fill_wild(&r, p.k, nkv);
        tu_fill_wild(&r, p.v, nkv);
    } else {
        tu_fill(&r, p.q, nq, -qa, qa);
        tu_fill(&r, p.k, nkv, -1.0f, 1.0f);
        tu_fill(&r, p.v, nkv, -1.0f, 1.0f);
    }
    return p;
}

static void free_problem(problem *p) {
    tu_free(p->q);
    tu_free(p->k);
    tu_free(p->v);
}

static size_t out_len(const problem *p) { return (size_t)p->n_q * (size_t)p->n_head * (size_t)p->hd; }

static float *run_ref(const problem *p) {
    float *o = tu_alloc(out_len(p) * sizeof(float));
    opg_attention_ref(o, p->q, p->k, p->v, p->n_q, p->pos0, p->n_head, p->n_kv, p->hd, p->scale);
    return o;
}

static float *run_fast(const problem *p, opg_pool *pool) {
    float *o = tu_alloc(out_len(p) * sizeof(float));
    opg_attention(pool, o, p->q, p->k, p->v, p->n_q, p->pos0, p->n_head, p->n_kv, p->hd, p->scale);
    return o;
}

static int have_avx2(void) { return opg_cpu_best_level() >= OPG_CPU_AVX2; }

/* ---- an independent re-implementation of section 9 with knobs ------------
 * Chunks are cut where (key - coff) % KCHUNK == 0, segments where
 * (key - soff) % SEGMENT == 0 (a segment cut is also a chunk cut), the dot in
 * pieces of dchunk. The contract is coff = soff = 0, dchunk = OPG_DOT_CHUNK. */
typedef struct { int coff, soff, dchunk; } variant;

static int cut_at(int64_t key, int off, int period) {
    return key > 0 && (((key - off) % period) + period) % period == 0;
}

static float dot_variant(const float *a, const float *b, int n, int dchunk) {
    float total = 0.0f;
    for (int c = 0; c * dchunk < n; c++) {
        float pc = 0.0f;
        for (int d = c * dchunk; d < n && d < (c + 1) * dchunk; d++) pc = fmaf(a[d], b[d], pc);
        total = c == 0 ? pc : total + pc;
    }
    return total;
}

/* Output of one (position t, head) pair into o[0..hd). */
static void attn_variant(float *o, const problem *p, int64_t t, int h, const float *qh, variant vr) {
    const int hd = p->hd;
    const int64_t stride = (int64_t)p->n_kv * hd;
    const int kvh = h / (p->n_head / p->n_kv);
    float accb[OPG_ATTN_MAX_HEAD_DIM], s[OPG_ATTN_KCHUNK], e[OPG_ATTN_KCHUNK];
    float M = 0, L = 0, m = 0, l = 0;
    int first_seg = 1;
    int64_t key = 0;
    while (key <= t) {
        /* one segment: [key, seg_end) */
        int64_t seg_end = key + 1;
        while (seg_end <= t && !cut_at(seg_end, vr.soff, OPG_ATTN_SEGMENT)) seg_end++;
        float *acc = first_seg ? o : accb;
        m = -INFINITY;
        l = 0.0f;
        for (int d = 0; d < hd; d++) acc[d] = 0.0f;
        while (key < seg_end) {
            int n = 1;
            while (key + n < seg_end && !cut_at(key + n, vr.coff, OPG_ATTN_KCHUNK)) n++;
            float mc = -INFINITY;
            for (int j = 0; j < n; j++) {
                const float *kj = p->k + (key + j) * stride + (int64_t)kvh * hd;
                s[j] = dot_variant(qh, kj, hd, vr.dchunk) * p->scale;
                if (j == 0 || s[j] > mc) mc = s[j];
            }
            float mn = mc > m ? mc : m;
            float alpha = opg_expf(m - mn);
            float lc = 0.0f;
            for (int j = 0; j < n; j++) {
                e[j] = opg_expf(s[j] - mn);
                lc = lc + e[j];
            }
            l = fmaf(l, alpha, lc);
            for (int d = 0; d < hd; d++) {
                float oc = 0.0f;
                for (int j = 0; j < n; j++) oc = fmaf(e[j], p->v[(key + j) * stride + (int64_t)kvh * hd + d], oc);
                acc[d] = fmaf(acc[d], alpha, oc);
            }
            m = mn;
            key += n;
        }
        if (first_seg) {
            M = m;
            L = l;
            first_seg = 0;
        } else {
            float mm = m > M ? m : M;
            float a = opg_expf(M - mm), b = opg_expf(m - mm);
            L = fmaf(L, a, l * b);
            for (int d = 0; d < hd; d++) o[d] = fmaf(o[d], a, accb[d] * b);
            M = mm;
        }
    }
    for (int d = 0; d < hd; d++) o[d] = o[d] / L;
}

/* ---- 1. accuracy against float64 ------------------------------------------ */

/* Softmax attention in binary64 for query i, head h: o[d]; w[d] = sum_j
 * softmax_j |v_j[d]|; returns S = max_j scale * sum_d |q_d k_j[d]|, the size
 * of the score sums (their rounding error, amplified by exp, dominates). */
static double attn_f64(double *o, double *w, const problem *p, int64_t i, int h) {
    const int hd = p->hd;
    const int64_t t = p->pos0 + i, stride = (int64_t)p->n_kv * hd;
    const int kvh = h / (p->n_head / p->n_kv);
    const float *qh = p->q + (i * p->n_head + h) * hd;
    double *s = test_malloc((size_t)(t + 1) * sizeof(double));
    double mx = -INFINITY, sum = 0.0, smax = 0.0;
    for (int64_t j = 0; j <= t; j++) {
        const float *kj = p->k + j * stride + (int64_t)kvh * hd;
        double dot = 0.0, mag = 0.0;
        for (int d = 0; d < hd; d++) {
            dot += (double)qh[d] * (double)kj[d];
            mag += fabs((double)qh[d] * (double)kj[d]);
        }
        s[j] = dot * (double)p->scale;
        if (s[j] > mx) mx = s[j];
        if (mag * (double)p->scale > smax) smax = mag * (double)p->scale;
    }
    for (int64_t j = 0; j <= t; j++) {
        s[j] = exp(s[j] - mx);
        sum += s[j];
    }
    for (int d = 0; d < hd; d++) {
        double acc = 0.0, aw = 0.0;
        for (int64_t j = 0; j <= t; j++) {
            double vj = (double)p->v[j * stride + (int64_t)kvh * hd + d];
            acc += s[j] * vj;
            aw += s[j] * fabs(vj);
        }
        o[d] = acc / sum;
        w[d] = aw / sum;
    }
    test_free(s);
    return smax;
}

/* Error in units of 2^-24 * w[d] * (1 + S), the bound of section 9. */
static void test_accuracy_f64(void **state) {
    (void)state;
    /* (n_q, pos0): short, across the first segment's end, two merges */
    const int64_t spans[][2] = {{40, 0}, {6, 1020}, {4, 2096}};
    const int dims[] = {64, 128};
    const float qas[] = {1.0f, 8.0f}; /* score std about 0.33 and 2.7 */
    double worst = 0.0, worst_plain = 0.0;
    for (size_t si = 0; si < 3; si++)
        for (size_t di = 0; di < 2; di++)
            for (size_t qi = 0; qi < 2; qi++) {
                problem p = make_problem(100 + si * 10 + di * 3 + qi, spans[si][0], spans[si][1], 4, 2,
                                         dims[di], qas[qi], 0);
                float *o = run_fast(&p, NULL);
                double *r = test_malloc((size_t)p.hd * sizeof(double));
                double *w = test_malloc((size_t)p.hd * sizeof(double));
                for (int64_t i = 0; i < p.n_q; i++)
                    for (int h = 0; h < p.n_head; h++) {
                        double S = attn_f64(r, w, &p, i, h);
                        for (int d = 0; d < p.hd; d++) {
                            double got = o[(i * p.n_head + h) * p.hd + d];
                            double e = fabs(got - r[d]) / (w[d] * 0x1p-24);
                            if (e > worst_plain) worst_plain = e;
                            if (e / (1.0 + S) > worst) worst = e / (1.0 + S);
                        }
                    }
                test_free(r);
                test_free(w);
                tu_free(o);
                free_problem(&p);
            }
    print_message("attention vs float64: max error %.3f x 2^-24 x sum_j w_j |v_j| x (1 + S) "
                  "(%.2f x 2^-24 x sum_j w_j |v_j| without the (1 + S))\n", worst, worst_plain);
    assert_true(worst <= ACC_BOUND);
    assert_true(worst > 0.0); /* the comparison saw rounding at all */
}

/* ---- 2. prefill = decode = chunked prefill --------------------------------- */

/* Runs the whole sequence of p (pos0 must be 0) as consecutive calls of the
 * given query counts (cycled), with opg_attention or the reference. */
static float *run_chunked(const problem *p, const int *sizes, int n_sizes, opg_pool *pool, int ref) {
    float *o = tu_alloc(out_len(p) * sizeof(float));
    const int64_t row = (int64_t)p->n_head * p->hd;
    int64_t pos = 0;
    for (int c = 0; pos < p->n_q; c++) {
        int64_t n = sizes[c % n_sizes];
        if (n > p->n_q - pos) n = p->n_q - pos;
        if (ref)
            opg_attention_ref(o + pos * row, p->q + pos * row, p->k, p->v, n, pos, p->n_head, p->n_kv,
                              p->hd, p->scale);
        else
            opg_attention(pool, o + pos * row, p->q + pos * row, p->k, p->v, n, pos, p->n_head, p->n_kv,
                          p->hd, p->scale);
        pos += n;
    }
    return o;
}

static void check_prefill_decode(int64_t T, int n_head, int n_kv, int hd, opg_pool *pool, int ref) {
    problem p = make_problem(7 + (uint64_t)T, T, 0, n_head, n_kv, hd, 6.0f, 0);
    const int one = 1, odd[] = {1, 5, 13, 32, 33}, big[] = {300, 700, 64};
    float *full = ref ? run_ref(&p) : run_fast(&p, pool);
    float *dec = run_chunked(&p, &one, 1, pool, ref);
    float *chk = run_chunked(&p, odd, 5, pool, ref);
    float *chk2 = run_chunked(&p, big, 3, pool, ref);
    tu_assert_bits(full, dec, out_len(&p), "prefill vs decode steps");
    tu_assert_bits(full, chk, out_len(&p), "prefill vs chunks of 1,5,13,32,33");
    tu_assert_bits(full, chk2, out_len(&p), "prefill vs chunks of 300,700,64");
    tu_free(full);
    tu_free(dec);
    tu_free(chk);
    tu_free(chk2);
    free_problem(&p);
}

static void test_prefill_decode(void **state) {
    (void)state;
    opg_pool *pool = opg_pool_new(2);
    assert_non_null(pool);
    opg_cpu_level levels[] = {OPG_CPU_SCALAR, OPG_CPU_AVX2};
    for (int li = 0; li < 2; li++) {
        if (levels[li] == OPG_CPU_AVX2 && !have_avx2()) {
            print_message("prefill/decode: no AVX2 on this CPU, AVX2 part skipped\n");
            continue;
        }
        opg_cpu_set_level(levels[li]);
        check_prefill_decode(100, 8, 2, 64, pool, 0);
        check_prefill_decode(1100, 4, 2, 16, pool, 0);
        check_prefill_decode(2100, 2, 1, 8, pool, 0);
    }
    opg_cpu_set_level(opg_cpu_best_level());
    check_prefill_decode(1100, 2, 1, 17, NULL, 1); /* the reference itself */
    opg_pool_free(pool);
}

/* ---- 3. reference = scalar = AVX2 = any thread count ----------------------- */

static void check_paths(const problem *p, opg_pool *pools[3], const char *what) {
    char msg[160];
    float *ref = run_ref(p);
    opg_cpu_set_level(OPG_CPU_SCALAR);
    float *o = run_fast(p, NULL);
    snprintf(msg, sizeof msg, "%s: scalar dispatch vs reference", what);
    tu_assert_bits(ref, o, out_len(p), msg);
    tu_free(o);
    o = run_fast(p, pools[2]);
    snprintf(msg, sizeof msg, "%s: scalar, 3 threads vs reference", what);
    tu_assert_bits(ref, o, out_len(p), msg);
    tu_free(o);
    if (have_avx2()) {
        opg_cpu_set_level(OPG_CPU_AVX2);
        o = run_fast(p, NULL);
        snprintf(msg, sizeof msg, "%s: AVX2 vs reference", what);
        tu_assert_bits(ref, o, out_len(p), msg);
        tu_free(o);
        for (int t = 0; t < 3; t++) {
            o = run_fast(p, pools[t]);
            snprintf(msg, sizeof msg, "%s: AVX2, %d threads vs reference", what, t + 1);
            tu_assert_bits(ref, o, out_len(p), msg);
            tu_free(o);
        }
    }
    opg_cpu_set_level(opg_cpu_best_level());
    tu_free(ref);
}

static void test_paths_bit_identical(void **state) {
    (void)state;
    if (!have_avx2()) print_message("paths: no AVX2 on this CPU, AVX2 comparisons skipped\n");
    opg_pool *pools[3];
    for (int t = 0; t < 3; t++) {
        pools[t] = opg_pool_new(t + 1);
        assert_non_null(pools[t]);
    }
    const int heads[][2] = {{8, 2}, {6, 6}, {4, 1}};
    const int dims[] = {64, 80, 128, 17, 256, 300};
    tu_rng r = {2024};
    char what[96];
    /* n_q = 1 (a decode step) makes the AVX2 path cut the heads into one
     * range per thread, some across KV-head groups; n_q = 7 gives one task
     * per query. */
    for (int hi = 0; hi < 3; hi++)
        for (int di = 0; di < 6; di++)
            for (int wild = 0; wild < 2; wild++)
                for (int64_t n_q = 1; n_q <= 7; n_q += 6) {
                    int64_t pos0 = tu_int(&r, 0, 150);
                    problem p = make_problem(tu_u64(&r), n_q, pos0, heads[hi][0], heads[hi][1], dims[di],
                                             4.0f, wild);
                    snprintf(what, sizeof what, "heads %d/%d hd %d n_q %lld pos0 %lld%s", heads[hi][0],
                             heads[hi][1], dims[di], (long long)n_q, (long long)pos0, wild ? " wild" : "");
                    check_paths(&p, pools, what);
                    free_problem(&p);
                }
    /* more heads * head_dim than one AVX2 task holds: several ranges even
     * for one thread */
    problem w = make_problem(13, 3, 70, 40, 8, 256, 4.0f, 0);
    check_paths(&w, pools, "40/8 heads of 256 dims");
    free_problem(&w);
    /* across the 1024-key segment boundary (one merge), also with a
     * two-chunk dot */
    problem p = make_problem(11, 20, 1015, 8, 2, 64, 4.0f, 0);
    check_paths(&p, pools, "segment boundary, hd 64");
    free_problem(&p);
    p = make_problem(12, 6, 1020, 4, 1, 300, 4.0f, 1);
    check_paths(&p, pools, "segment boundary, hd 300 wild");
    free_problem(&p);
    for (int t = 0; t < 3; t++) opg_pool_free(pools[t]);
}

/* ---- 4. batch invariance ---------------------------------------------------- */

static void test_batch_invariance(void **state) {
    (void)state;
    opg_pool *pool = opg_pool_new(2);
    assert_non_null(pool);
    problem p = make_problem(37, 37, 1000, 8, 2, 128, 6.0f, 0);
    const int64_t row = (int64_t)p.n_head * p.hd;
    opg_cpu_level levels[] = {OPG_CPU_SCALAR, OPG_CPU_AVX2};
    for (int li = 0; li < 2; li++) {
        if (levels[li] == OPG_CPU_AVX2 && !have_avx2()) continue;
        opg_cpu_set_level(levels[li]);
        float *batch = run_fast(&p, pool);
        float *one = tu_alloc((size_t)row * sizeof(float));
        for (int64_t i = 0; i < p.n_q; i++) {
            opg_attention(pool, one, p.q + i * row, p.k, p.v, 1, p.pos0 + i, p.n_head, p.n_kv, p.hd, p.scale);
            tu_assert_bits(batch + i * row, one, (size_t)row, "query alone vs in a batch of 37");
        }
        tu_free(one);
        tu_free(batch);
    }
    opg_cpu_set_level(opg_cpu_best_level());
    free_problem(&p);
    opg_pool_free(pool);
}

/* Causality: keys after t never reach query t; key t does. */
static void test_causal(void **state) {
    (void)state;
    problem p = make_problem(5, 3, 40, 4, 2, 32, 4.0f, 0);
    const int64_t row = (int64_t)p.n_head * p.hd, kvrow = (int64_t)p.n_kv * p.hd;
    float *before = run_fast(&p, NULL);
    p.k[(p.pos0 + 2) * kvrow + 3] += 0.5f; /* key of the last query only */
    p.v[(p.pos0 + 2) * kvrow + 5] += 0.5f;
    float *after = run_fast(&p, NULL);
    tu_assert_bits(before, after, (size_t)(2 * row), "queries before the changed key");
    assert_true(memcmp(before + 2 * row, after + 2 * row, (size_t)row * sizeof(float)) != 0);
    tu_free(before);
    tu_free(after);
    free_problem(&p);
}

/* ---- 5. the contract's boundaries matter ------------------------------------ */

/* Counts outputs where the variant differs in bits from the reference, over
 * the queries of p (after checking nothing else about them). */
static size_t count_diff(const problem *p, const float *ref, variant vr) {
    float o[OPG_ATTN_MAX_HEAD_DIM];
    size_t diff = 0;
    for (int64_t i = 0; i < p->n_q; i++)
        for (int h = 0; h < p->n_head; h++) {
            attn_variant(o, p, p->pos0 + i, h, p->q + (i * p->n_head + h) * p->hd, vr);
            const float *x = ref + (i * p->n_head + h) * p->hd;
            for (int d = 0; d < p->hd; d++) diff += opg_f32_bits(o[d]) != opg_f32_bits(x[d]);
        }
    return diff;
}

static void test_boundaries_matter(void **state) {
    (void)state;
    const variant spec = {0, 0, OPG_DOT_CHUNK};
    /* The independent re-implementation with the contract's boundaries gives
     * the reference's bits (short, across a segment, with a chunked dot). */
    problem a = make_problem(51, 5, 60, 2, 1, 48, 8.0f, 0);
    problem b = make_problem(52, 4, 2046, 2, 1, 24, 8.0f, 0);
    problem c = make_problem(53, 3, 1030, 2, 2, 300, 8.0f, 0);
    problem *all[] = {&a, &b, &c};
    float *ref[3];
    for (int i = 0; i < 3; i++) {
        ref[i] = run_ref(all[i]);
        assert_int_equal(count_diff(all[i], ref[i], spec), 0);
    }
    /* Chunks counted from the start of a chunked prefill (pos0 = 60) instead
     * of key 0: different bits. */
    size_t d1 = count_diff(&a, ref[0], (variant){60 % OPG_ATTN_KCHUNK, 0, OPG_DOT_CHUNK});
    /* Chunks counted back from the query (ending at t) instead: different. */
    size_t d2 = count_diff(&b, ref[1], (variant){(int)((b.pos0 + 1) % OPG_ATTN_KCHUNK), 0, OPG_DOT_CHUNK});
    /* Segments not at multiples of 1024 (chunks still absolute): different. */
    size_t d3 = count_diff(&b, ref[1], (variant){0, 512, OPG_DOT_CHUNK});
    /* One unchunked fma chain for a 300-dim dot: different. */
    size_t d4 = count_diff(&c, ref[2], (variant){0, 0, 1 << 20});
    print_message("outputs that change: relative chunks %zu/%zu, chunks ending at t %zu/%zu, "
                  "shifted segments %zu/%zu, unchunked dot %zu/%zu\n",
                  d1, out_len(&a), d2, out_len(&b), d3, out_len(&b), d4, out_len(&c));
    assert_true(d1 > 0);
    assert_true(d2 > 0);
    assert_true(d3 > 0);
    assert_true(d4 > 0);
    for (int i = 0; i < 3; i++) {
        tu_free(ref[i]);
        free_problem(all[i]);
    }
}

/* ---- argument checks -------------------------------------------------------- */

static void test_bad_args(void **state) {
    (void)state;
    float q[4 * 8] = {0}, k[4 * 8] = {0}, v[4 * 8] = {0}, o[4 * 8];
    for (int i = 0; i < 32; i++) o[i] = 7.0f;
    opg_attention(NULL, o, q, k, v, 0, 0, 4, 2, 8, 1.0f); /* n_q = 0: untouched */
    opg_attention_ref(o, q, k, v, 0, 3, 4, 2, 8, 1.0f);
    for (int i = 0; i < 32; i++) assert_true(o[i] == 7.0f);
    opg_attention(NULL, o, q, k, v, 1, 0, 4, 3, 8, 1.0f); /* 4 heads, 3 kv heads */
    for (int i = 0; i < 32; i++) assert_true(isnan(o[i]));
    for (int i = 0; i < 32; i++) o[i] = 7.0f;
    opg_attention_ref(o, q, k, v, 1, -1, 4, 2, 8, 1.0f); /* negative position */
    for (int i = 0; i < 32; i++) assert_true(isnan(o[i]));
    /* all-zero q and k: uniform weights over the 1 key, output = v */
    for (int i = 0; i < 16; i++) v[i] = (float)i;
    opg_attention(NULL, o, q, k, v, 1, 0, 4, 2, 8, 1.0f);
    for (int h = 0; h < 4; h++)
        for (int d = 0; d < 8; d++) assert_true(o[h * 8 + d] == v[(h / 2) * 8 + d]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_accuracy_f64),
        cmocka_unit_test(test_prefill_decode),
        cmocka_unit_test(test_paths_bit_identical),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_causal),
        cmocka_unit_test(test_boundaries_matter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
