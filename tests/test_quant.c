/* test_quant.c: the integer path of quantized weights (docs/determinism.md
 * section 5): GGUF dequantization against vectors written by the gguf
 * package, activation quantization, qdot accuracy against float64, and bit
 * identity of opg_matmul_q8a across CPU levels, thread counts and batch sizes. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "matmul.h"
#include "opg_math.h"
#include "pool.h"
#include "quant.h"
#include "quant_impl.h"

static const opg_dtype QTYPES[5] = {OPG_Q8_0, OPG_Q4_0, OPG_Q4_1, OPG_Q4_K, OPG_Q6_K};

/* ---- data helpers ----------------------------------------------------------- */

/* A random finite f16 scale of magnitude 2^lo..2^hi, random sign; zero 1 time in 16. */
static uint16_t rand_scale(tu_rng *r, float lo, float hi) {
    if (tu_int(r, 0, 15) == 0) return 0;
    float v = ldexpf(tu_uniform(r, 1.0f, 2.0f), tu_int(r, (int)lo, (int)hi));
    return opg_f32_to_f16(tu_int(r, 0, 1) ? -v : v);
}

/* rows x K weights of type t: random block bytes, with sane finite f16 scales. */
static uint8_t *make_weights(tu_rng *r, opg_dtype t, int64_t rows, int64_t K) {
    size_t rb = opg_dtype_row_bytes(t, K), bb = opg_dtype_block_bytes(t);
    uint8_t *w = tu_alloc(rb * (size_t)rows + 1);
    for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = (uint8_t)tu_u64(r);
    for (size_t off = 0; off < rb * (size_t)rows; off += bb) {
        uint8_t *b = w + off;
        uint16_t s0 = rand_scale(r, -10, -3), s1 = rand_scale(r, -10, -3);
        switch (t) {
        case OPG_Q8_0: memcpy(b, &s0, 2); break;
        case OPG_Q4_0: memcpy(b, &s0, 2); break;
        case OPG_Q4_1: memcpy(b, &s0, 2); memcpy(b + 2, &s1, 2); break;
        case OPG_Q4_K: memcpy(b, &s0, 2); memcpy(b + 2, &s1, 2); break;
        case OPG_Q6_K: memcpy(b + offsetof(opg_block_q6_K, d), &s0, 2); break;
        default: break;
        }
    }
    return w;
}

/* Exact value (and for the bound, the magnitude of its parts) of element i of
 * a weight row, decoded here independently of quant.c, in binary64 (exact:
 * f16 times a small integer). */
static void exact_weight(const uint8_t *row, opg_dtype t, int64_t i, double *w, double *mag) {
    switch (t) {
    case OPG_Q8_0: {
        const opg_block_q8_0 *b = (const opg_block_q8_0 *)row + i / 32;
        *w = (double)opg_f16_to_f32(b->d) * b->qs[i % 32];
        *mag = fabs(*w);
        return;
    }
    case OPG_Q4_0: case OPG_Q4_1: {
        const uint8_t *b = row + (size_t)(i / 32) * opg_dtype_block_bytes(t);
        uint16_t dh, mh = 0;
        memcpy(&dh, b, 2);
        if (t == OPG_Q4_1) memcpy(&mh, b + 2, 2);
        const uint8_t *qs = b + (t == OPG_Q4_1 ? 4 : 2);
        int l = (int)(i % 32);
        int q = l < 16 ? qs[l] & 15 : qs[l - 16] >> 4;
        double d = opg_f16_to_f32(dh), m = opg_f16_to_f32(mh);
        if (t == OPG_Q4_0) { *w = d * (q - 8); *mag = fabs(*w); }
        else { *w = d * q + m; *mag = fabs(d * q) + fabs(m); }
        return;
    }
    case OPG_Q4_K: {
        const opg_block_q4_K *b = (const opg_block_q4_K *)row + i / 256;
        int e = (int)(i % 256), j = e / 32, l = e % 32;
        const uint8_t *s = b->scales;
        int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        int q = (b->qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
        double a = (double)opg_f16_to_f32(b->d) * sc * q, c = (double)opg_f16_to_f32(b->dmin) * m;
        *w = a - c;
        *mag = fabs(a) + fabs(c);
        return;
    }
    case OPG_Q6_K: {
        const opg_block_q6_K *b = (const opg_block_q6_K *)row + i / 256;
        int e = (int)(i % 256), h = e / 128, g = (e % 128) / 32, l = e % 32;
        int ql = b->ql[64 * h + l + 32 * (g & 1)];
        int lo = g < 2 ? ql & 15 : ql >> 4;
        int hi = (b->qh[32 * h + l] >> (2 * g)) & 3;
        *w = (double)opg_f16_to_f32(b->d) * b->scales[e / 16] * ((lo | (hi << 4)) - 32);
        *mag = fabs(*w);
        return;
    }
    default: *w = *mag = 0; return;
    }
}

static float *load_floats(const uint8_t *p, size_t n) {
    float *y = tu_alloc(n * sizeof *y);
    memcpy(y, p, n * sizeof *y);
    return y;
}

/* ---- 1. dequantization against the gguf package ----------------------------- */

static void test_dequant_gguf_vectors(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/quant_vectors.bin", tu_data_dir());
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = tu_alloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    assert_memory_equal(buf, "OPGQVEC1", 8);
    uint32_t count, seen = 0;
    memcpy(&count, buf + 8, 4);
    size_t off = 12;
    int n_values = 0;
    for (uint32_t rec = 0; rec < count; rec++) {
        uint32_t hdr[3];
        assert_true(off + 12 <= (size_t)size);
        memcpy(hdr, buf + off, 12);
        off += 12;
        opg_dtype t = (opg_dtype)hdr[0];
        int64_t n = hdr[1];
        assert_int_equal(opg_dtype_row_bytes(t, n), hdr[2]);
        assert_true(off + hdr[2] + 4 * (size_t)n <= (size_t)size);
        /* copies, so the row is aligned as in a real tensor and ASan sees its end */
        uint8_t *row = tu_alloc(hdr[2]);
        memcpy(row, buf + off, hdr[2]);
        float *want = load_floats(buf + off + hdr[2], (size_t)n);
        off += hdr[2] + 4 * (size_t)n;
        float *got = tu_alloc((size_t)n * sizeof *got);
        assert_int_equal(opg_dequantize_row_ref(got, row, t, n), 0);
        char what[64];
        snprintf(what, sizeof what, "dequantize %s record %u", opg_dtype_name(t), rec);
        tu_assert_bits(got, want, (size_t)n, what);
        /* the layouts of this test's own decoder agree: f32 value within 1/2 ulp of exact */
        if (opg_dtype_is_quant(t)) {
            for (int64_t i = 0; i < n; i++) {
                double w, mag;
                exact_weight(row, t, i, &w, &mag);
                assert_true(fabs((double)got[i] - w) <= fabs(w) * 0x1p-24);
            }
        }
        for (int k = 0; k < 8; k++) {
            static const opg_dtype all[8] = {OPG_F32, OPG_F16, OPG_BF16, OPG_Q8_0,
                                             OPG_Q4_0, OPG_Q4_1, OPG_Q4_K, OPG_Q6_K};
            if (all[k] == t) seen |= 1u << k;
        }
        n_values += (int)n;
        tu_free(row); tu_free(want); tu_free(got);
    }
    assert_int_equal(off, (size_t)size);
    assert_int_equal(seen, 0xffu); /* every type has vectors */
    print_message("%d values in %u records match gguf bit for bit\n", n_values, count);
    tu_free(buf);
}

static void test_dequant_errors(void **state) {
    (void)state;
    float y[64];
    uint8_t w[512] = {0};
    assert_int_equal(opg_dequantize_row_ref(y, w, OPG_Q8_0, 48), -1);
    assert_int_equal(opg_dequantize_row_ref(y, w, OPG_Q4_K, 32), -1);
    assert_int_equal(opg_dequantize_row_ref(y, w, (opg_dtype)99, 32), -1);
    assert_int_equal(opg_dequantize_row_ref(y, w, OPG_F16, -1), -1);
    assert_int_equal(opg_dequantize_row_ref(y, w, OPG_Q8_0, 0), 0);
}

/* ---- 2. activation quantization ---------------------------------------------- */

static void quantize_both_ways(opg_block_q8a *ref, const float *x, int64_t K) {
    opg_quantize_act_ref(ref, x, K);
    opg_block_q8a *fast = tu_alloc((size_t)(K / 32) * sizeof *fast);
    opg_cpu_set_level(OPG_CPU_AVX2);
    opg_quantize_act(fast, x, K);
    tu_assert_bytes(fast, ref, (size_t)(K / 32) * sizeof *fast, "opg_quantize_act vs ref");
    opg_cpu_set_level(OPG_CPU_SCALAR);
    opg_quantize_act(fast, x, K);
    tu_assert_bytes(fast, ref, (size_t)(K / 32) * sizeof *fast, "opg_quantize_act scalar vs ref");
    opg_cpu_set_level(opg_cpu_best_level());
    tu_free(fast);
}

static void check_sum(const opg_block_q8a *b) {
    int32_t s = 0;
    for (int i = 0; i < 32; i++) s += b->qs[i];
    assert_int_equal(s, b->sum);
}

static void test_quantize_act_cases(void **state) {
    (void)state;
    float x[5 * 32];
    opg_block_q8a q[5];

    /* block 0: amax 127 so d == 1 exactly; halves round to even */
    static const float b0[16] = {127.0f, -127.0f, 2.5f, -2.5f, 3.5f, -3.5f, 0.5f, -0.5f,
                                 1.5f, 126.5f, -126.5f, 0.0f, -0.0f, 2.4999998f, 7.0f, -8.0f};
    static const int q0[16] = {127, -127, 2, -2, 4, -4, 0, 0, 2, 126, -126, 0, 0, 2, 7, -8};
    for (int i = 0; i < 32; i++) x[i] = i < 16 ? b0[i] : 1.0f;
    /* block 1: all +0 and -0: d = +0, q = 0 */
    for (int i = 0; i < 32; i++) x[32 + i] = i % 2 ? -0.0f : 0.0f;
    /* block 2: inexact d = 1/127; the amax element gives exactly +-127 */
    for (int i = 0; i < 32; i++) x[64 + i] = (float)(i - 16) / 16.0f;
    /* block 3: subnormal amax 190 * 2^-149: d rounds to 2^-149, x/d = 190 is clamped */
    for (int i = 0; i < 32; i++) x[96 + i] = ldexpf((float)(i == 0 ? 190 : i == 1 ? -190 : i), -149);
    /* block 4: one huge value among tiny ones: the tiny ones quantize to 0 */
    for (int i = 0; i < 32; i++) x[128 + i] = i == 5 ? -3.0e38f : 1.0e-30f;

    quantize_both_ways(q, x, 5 * 32);
    for (int b = 0; b < 5; b++) check_sum(&q[b]);

    assert_true(q[0].d == 1.0f);
    for (int i = 0; i < 16; i++) assert_int_equal(q[0].qs[i], q0[i]);
    for (int i = 16; i < 32; i++) assert_int_equal(q[0].qs[i], 1);
    assert_int_equal(q[0].sum, 127 - 127 + 2 - 2 + 4 - 4 + 2 + 126 - 126 + 2 + 7 - 8 + 16);

    assert_int_equal(opg_f32_bits(q[1].d), 0u); /* +0, not -0 */
    assert_int_equal(q[1].sum, 0);
    for (int i = 0; i < 32; i++) assert_int_equal(q[1].qs[i], 0);

    assert_true(q[2].d == 1.0f / 127.0f);
    assert_int_equal(q[2].qs[0], -127);
    assert_int_equal(q[2].qs[16], 0);
    for (int i = 0; i < 32; i++) {
        double want = nearbyint((double)((float)(i - 16) / 16.0f / q[2].d)); /* no ties here */
        assert_int_equal(q[2].qs[i], (int)want);
    }

    assert_true(q[3].d == ldexpf(1.0f, -149));
    assert_int_equal(q[3].qs[0], 127);
    assert_int_equal(q[3].qs[1], -127);
    for (int i = 2; i < 32; i++) assert_int_equal(q[3].qs[i], i);

    assert_int_equal(q[4].qs[5], -127);
    assert_int_equal(q[4].sum, -127);
}

/* Non-finite inputs: deterministic (same bits on every path), d not finite. */
static void test_quantize_act_nonfinite(void **state) {
    (void)state;
    float x[3 * 32];
    tu_rng r = {11};
    tu_fill(&r, x, 3 * 32, -1.0f, 1.0f);
    x[3] = INFINITY;
    x[32 + 7] = NAN;
    x[64 + 1] = -INFINITY;
    x[64 + 2] = NAN;
    opg_block_q8a q[3];
    quantize_both_ways(q, x, 3 * 32);
    assert_true(isinf(q[0].d));
    assert_true(isnan(q[1].d) && isnan(q[2].d));
    for (int b = 0; b < 3; b++) check_sum(&q[b]);
}

static void test_quantize_act_random(void **state) {
    (void)state;
    tu_rng r = {2024};
    const int64_t K = 32 * 2048;
    float *x = tu_alloc((size_t)K * sizeof *x);
    opg_block_q8a *q = tu_alloc((size_t)(K / 32) * sizeof *q);
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 0) tu_fill(&r, x, (size_t)K, -3.0f, 3.0f);
        else if (pass == 1) tu_fill_wild(&r, x, (size_t)K);
        else {
            /* integers and half-integers times powers of two: many exact ties */
            for (int64_t i = 0; i < K; i++)
                x[i] = ldexpf((float)tu_int(&r, -254, 254) * 0.5f, tu_int(&r, -130, 20));
        }
        quantize_both_ways(q, x, K);
        for (int64_t b = 0; b < K / 32; b++) {
            check_sum(&q[b]);
            /* |x - d*q| <= d/2 (+ the rounding of x/d) unless clamped */
            for (int i = 0; i < 32; i++) {
                double xi = x[32 * b + i], d = q[b].d;
                if (d > 0x1p-126) assert_true(fabs(xi - d * q[b].qs[i]) <= d * (0.5 + 1e-5));
            }
        }
    }
    tu_free(x);
    tu_free(q);
}

/* ---- 3. accuracy of qdot against float64 ------------------------------------ */

/* Guaranteed bound (docs/determinism.md section 5), no underflow assumed: with
 * u = 2^-24, C = K/256 chunks and E the exact sum over blocks of
 * dx * sum_i w_i * qx_i (w_i the exact GGUF weight value),
 *   |qdot - E| <= gamma(C + 9) * A,  gamma(n) = n*u / (1 - n*u),
 * A = sum over blocks of |dx| * sum_i mag_i * |qx_i|, mag_i = |w_i| for
 * Q8_0/Q4_0/Q6_K and |d*sc*q| + |dmin*m| (Q4_K), |d*q| + |m| (Q4_1).
 * Why: a block term is at most two roundings (s = d*dx, or a, b and t) before
 * its fma into acc; it then takes part in at most 8 fma roundings of its
 * chunk, and the chunk partial in at most C-1 additions: C + 9 in all. */
static void test_qdot_accuracy(void **state) {
    (void)state;
    tu_rng r = {77};
    const int64_t K = 4096, rows = 48;
    const double u = 0x1p-24;
    float *x = tu_alloc((size_t)K * sizeof *x);
    opg_block_q8a *xq = tu_alloc((size_t)(K / 32) * sizeof *xq);
    for (int ti = 0; ti < 5; ti++) {
        opg_dtype t = QTYPES[ti];
        uint8_t *w = make_weights(&r, t, rows, K);
        size_t rb = opg_dtype_row_bytes(t, K);
        double worst = 0, worst_qrel = 0, sum_qrel = 0;
        int64_t C = K / 256;
        double gamma = (double)(C + 9) * u / (1.0 - (double)(C + 9) * u);
        for (int64_t n = 0; n < rows; n++) {
            if (n % 2) tu_fill(&r, x, (size_t)K, -1.0f, 1.0f);
            else tu_fill_wild(&r, x, (size_t)K);
            opg_quantize_act_ref(xq, x, K);
            const uint8_t *row = w + (size_t)n * rb;
            float got = opg_qdot_ref(row, t, xq, K);
            double E = 0, A = 0, X = 0, XA = 0, qerr = 0;
            for (int64_t i = 0; i < K; i++) {
                double wi, mag, dx = xq[i / 32].d;
                exact_weight(row, t, i, &wi, &mag);
                E += wi * (dx * xq[i / 32].qs[i % 32]);
                A += mag * fabs(dx * xq[i / 32].qs[i % 32]);
                X += wi * (double)x[i];
                XA += fabs(wi * (double)x[i]);
                qerr += fabs(wi) * dx * (0.5 + 1e-5); /* |x - dx*qx| <= dx/2 (+ x/d rounding) */
            }
            double err = fabs((double)got - E);
            /* + a little for E's own binary64 rounding */
            if (!(err <= gamma * A + 1e-12 * A)) {
                fail_msg("%s row %lld: qdot %.9g exact %.17g err %.3g > bound %.3g",
                         opg_dtype_name(t), (long long)n, (double)got, E, err, gamma * A);
            }
            if (A > 0 && err / (u * A) > worst) worst = err / (u * A);
            /* against the unquantized x: only the activation rounding, bounded */
            double qrel = XA > 0 ? fabs((double)got - X) / XA : 0;
            assert_true(fabs((double)got - X) <= qerr + gamma * A + 1e-12 * A);
            if (qrel > worst_qrel) worst_qrel = qrel;
            sum_qrel += qrel;
        }
        print_message("%s K=%lld: max |qdot - exact| = %.3f u*A (bound %d u*A); vs unquantized x: "
                      "relative error (/sum|w*x|) max %.2e mean %.2e\n",
                      opg_dtype_name(t), (long long)K, worst, (int)(C + 9), worst_qrel,
                      sum_qrel / (double)rows);
        tu_free(w);
    }
    tu_free(x);
    tu_free(xq);
}

/* A hand-checkable dot: d = 1 weights and activations with d = 1 exactly. */
static void test_qdot_exact_small(void **state) {
    (void)state;
    opg_block_q8_0 w[9];
    float x[9 * 32];
    int64_t want = 0;
    for (int b = 0; b < 9; b++) {
        w[b].d = opg_f32_to_f16(1.0f);
        for (int i = 0; i < 32; i++) {
            w[b].qs[i] = (int8_t)(i == 0 ? -128 : (b * 7 + i * 3) % 41 - 20);
            x[32 * b + i] = i == 1 ? 127.0f : (float)((b + i) % 9 - 4);
            want += (int64_t)w[b].qs[i] * (int64_t)x[32 * b + i];
        }
    }
    opg_block_q8a xq[9];
    opg_quantize_act_ref(xq, x, 9 * 32);
    assert_true(xq[0].d == 1.0f);
    float got = opg_qdot_ref(w, OPG_Q8_0, xq, 9 * 32);
    assert_true(got == (float)want); /* all partials are small integers: exact */
    assert_true(opg_qdot_ref(w, OPG_Q8_0, xq, 0) == 0.0f);
}

/* ---- 4./5. matmul bit identity and batch invariance ------------------------------ */

/* y = the definition: opg_qdot_ref per output, then + bias. */
static void matmul_by_definition(float *y, const opg_block_q8a *xq, const uint8_t *w, opg_dtype t,
                                 const float *bias, int64_t M, int64_t N, int64_t K) {
    size_t rb = opg_dtype_row_bytes(t, K);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float v = opg_qdot_ref(w + (size_t)n * rb, t, xq + m * (K / 32), K);
            y[m * N + n] = bias ? v + bias[n] : v;
        }
}

typedef struct { int64_t M, N, K; } shape;

static void check_matmul_all_ways(tu_rng *r, opg_dtype t, shape s, opg_pool **pools) {
    uint8_t *w = make_weights(r, t, s.N, s.K);
    /* whole groups of 8 rows: also packed (opg_pack_x8), which must give
     * the same bits on every path */
    const opg_dtype tx = opg_dtype_x8(t);
    uint8_t *wx = NULL;
    if (tx != t && s.N % 8 == 0) {
        wx = tu_alloc(opg_dtype_row_bytes(t, s.K) * (size_t)s.N + 1);
        assert_int_equal(opg_pack_x8(wx, w, t, s.N, s.K), 0);
    }
    float *x = tu_alloc((size_t)(s.M * s.K + 1) * sizeof *x);
    opg_block_q8a *xq = tu_alloc((size_t)(s.M * s.K / 32 + 1) * sizeof *xq);
    float *bias = tu_alloc((size_t)s.N * sizeof *bias);
    float *want = tu_alloc((size_t)(s.M * s.N) * sizeof *want);
    float *got = tu_alloc((size_t)(s.M * s.N) * sizeof *got);
    if (tu_int(r, 0, 1)) tu_fill_wild(r, x, (size_t)(s.M * s.K));
    else tu_fill(r, x, (size_t)(s.M * s.K), -2.0f, 2.0f);
    tu_fill(r, bias, (size_t)s.N, -1.0f, 1.0f);
    opg_quantize_act_ref(xq, x, s.M * s.K);
    for (int b = 0; b < 2; b++) {
        const float *bp = b ? bias : NULL;
        matmul_by_definition(want, xq, w, t, bp, s.M, s.N, s.K);
        for (int level = 0; level < 2; level++) {
            opg_cpu_set_level(level ? OPG_CPU_AVX2 : OPG_CPU_SCALAR);
            for (int p = 0; p < 4; p++) {
                if (level == 0 && p != 0 && p != 3) continue; /* the reference is slow */
                for (int packed = 0; packed <= (wx != NULL); packed++) {
                    memset(got, 0xff, (size_t)(s.M * s.N) * sizeof *got);
                    assert_int_equal(opg_matmul_q8a(pools[p], got, xq, packed ? wx : w, packed ? tx : t, bp,
                                                    s.M, s.N, s.K), 0);
                    char what[128];
                    snprintf(what, sizeof what, "%s M=%lld N=%lld K=%lld bias=%d %s threads=%d",
                             opg_dtype_name(packed ? tx : t), (long long)s.M, (long long)s.N,
                             (long long)s.K, b, opg_cpu_level_name(opg_cpu_get_level()),
                             opg_pool_threads(pools[p]));
                    tu_assert_bits(got, want, (size_t)(s.M * s.N), what);
                }
            }
        }
    }
    opg_cpu_set_level(opg_cpu_best_level());
    if (wx) tu_free(wx);
    tu_free(w); tu_free(x); tu_free(xq); tu_free(bias); tu_free(want); tu_free(got);
}

static void test_matmul_bit_identity(void **state) {
    (void)state;
    if (opg_cpu_best_level() < OPG_CPU_AVX2)
        print_message("no AVX2 on this CPU: only the scalar path is compared\n");
    opg_pool *pools[4] = {NULL, opg_pool_new(1), opg_pool_new(2), opg_pool_new(3)};
    assert_non_null(pools[1]);
    assert_non_null(pools[2]);
    assert_non_null(pools[3]);
    tu_rng r = {4242};
    /* K multiples of 32 that are not of 256 for the 32-block types */
    static const shape small_k[] = {{1, 1, 32}, {1, 7, 96}, {3, 33, 288}, {1, 129, 800},
                                    {257, 9, 160}, {5, 64, 256}, {2, 71, 1056}, {1, 8, 8192},
                                    {1, 200, 576}, {37, 48, 288}, {3, 16, 96},
                                    /* GEMVs over more than QM_GEMV_MAX_ROWS (512) rows per thread */
                                    {1, 1096, 64}, {1, 1101, 32}};
    static const shape k_quants[] = {{1, 1, 256}, {1, 7, 512}, {3, 33, 768}, {1, 129, 256},
                                     {257, 9, 256}, {4, 72, 1280}, {1, 8, 4096},
                                     /* whole 8-row groups: the packed K-quants too */
                                     {1, 40, 768}, {33, 16, 512}};
    for (int ti = 0; ti < 5; ti++) {
        opg_dtype t = QTYPES[ti];
        int kq = t == OPG_Q4_K || t == OPG_Q6_K;
        const shape *sh = kq ? k_quants : small_k;
        int ns = kq ? (int)(sizeof k_quants / sizeof *k_quants) : (int)(sizeof small_k / sizeof *small_k);
        for (int i = 0; i < ns; i++) check_matmul_all_ways(&r, t, sh[i], pools);
        /* and one random shape */
        shape rs = {tu_int(&r, 1, 20), tu_int(&r, 1, 40), (int64_t)tu_int(&r, 1, kq ? 3 : 24) * (kq ? 256 : 32)};
        check_matmul_all_ways(&r, t, rs, pools);
    }
    for (int p = 1; p < 4; p++) opg_pool_free(pools[p]);
}

static void test_matmul_batch_invariance(void **state) {
    (void)state;
    opg_pool *pool = opg_pool_new(2);
    assert_non_null(pool);
    tu_rng r = {99};
    const int64_t M = 37, N = 45, K = 512;
    float *x = tu_alloc((size_t)(M * K) * sizeof *x);
    opg_block_q8a *xq = tu_alloc((size_t)(M * K / 32) * sizeof *xq);
    float *bias = tu_alloc((size_t)N * sizeof *bias);
    float *yb = tu_alloc((size_t)(M * N) * sizeof *yb);
    float y1[45];
    tu_fill_wild(&r, x, (size_t)(M * K));
    tu_fill(&r, bias, (size_t)N, -1.0f, 1.0f);
    opg_quantize_act_ref(xq, x, M * K);
    for (int ti = 0; ti < 5; ti++) {
        opg_dtype t = QTYPES[ti];
        uint8_t *w = make_weights(&r, t, N, K);
        for (int level = 0; level < 2; level++) {
            opg_cpu_set_level(level ? OPG_CPU_AVX2 : OPG_CPU_SCALAR);
            assert_int_equal(opg_matmul_q8a(pool, yb, xq, w, t, bias, M, N, K), 0);
            for (int64_t m = 0; m < M; m++) {
                assert_int_equal(opg_matmul_q8a(NULL, y1, xq + m * (K / 32), w, t, bias, 1, N, K), 0);
                char what[96];
                snprintf(what, sizeof what, "%s %s row %lld alone vs in M=%lld", opg_dtype_name(t),
                         opg_cpu_level_name(opg_cpu_get_level()), (long long)m, (long long)M);
                tu_assert_bits(y1, yb + m * N, (size_t)N, what);
            }
        }
        tu_free(w);
    }
    opg_cpu_set_level(opg_cpu_best_level());
    opg_pool_free(pool);
    tu_free(x); tu_free(xq); tu_free(bias); tu_free(yb);
}

/* Extreme operands at the int16 limits of the AVX2 reduction trees: weight
 * bytes all 0x00 / 0xFF / 0x80 / 0x7F (q = -128, 127, all-15 nibbles, Q6_K
 * q - 32 = -32 or 31) against activations of all +127 or all -127. */
static void test_matmul_extremes(void **state) {
    (void)state;
    static const uint8_t fills[4] = {0x00, 0xFF, 0x80, 0x7F};
    const int64_t N = 16, K = 512; /* whole 8-row groups: packed too */
    float x[2 * 512], want[2 * 16], got[2 * 16];
    opg_block_q8a xq[2 * 16];
    for (int ti = 0; ti < 5; ti++) {
        opg_dtype t = QTYPES[ti];
        size_t rb = opg_dtype_row_bytes(t, K), bb = opg_dtype_block_bytes(t);
        uint8_t *w = tu_alloc(rb * (size_t)N), *wx = tu_alloc(rb * (size_t)N);
        const opg_dtype tx = opg_dtype_x8(t);
        for (int f = 0; f < 4; f++) {
            memset(w, fills[f], rb * (size_t)N);
            for (size_t off = 0; off < rb * (size_t)N; off += bb) { /* finite scales */
                uint16_t h = opg_f32_to_f16(0.015625f), mh = opg_f32_to_f16(-0.25f);
                if (t == OPG_Q6_K) memcpy(w + off + offsetof(opg_block_q6_K, d), &h, 2);
                else memcpy(w + off, &h, 2);
                if (t == OPG_Q4_1 || t == OPG_Q4_K) memcpy(w + off + 2, &mh, 2);
            }
            assert_int_equal(opg_pack_x8(wx, w, t, N, K), 0);
            for (int sx = 0; sx < 3; sx++) {
                for (int i = 0; i < 2 * K; i++) x[i] = sx == 0 ? 1.0f : sx == 1 ? -1.0f : (i / K ? -1.0f : 1.0f);
                opg_quantize_act_ref(xq, x, 2 * K);
                assert_int_equal(xq[0].qs[0], sx == 1 ? -127 : 127);
                for (int64_t M = 1; M <= 2; M++) {
                    matmul_by_definition(want, xq, w, t, NULL, M, N, K);
                    opg_cpu_set_level(OPG_CPU_AVX2);
                    assert_int_equal(opg_matmul_q8a(NULL, got, xq, w, t, NULL, M, N, K), 0);
                    opg_cpu_set_level(opg_cpu_best_level());
                    char what[96];
                    snprintf(what, sizeof what, "%s fill 0x%02x x sign %d M=%lld", opg_dtype_name(t),
                             fills[f], sx, (long long)M);
                    tu_assert_bits(got, want, (size_t)(M * N), what);
                    opg_cpu_set_level(OPG_CPU_AVX2);
                    assert_int_equal(opg_matmul_q8a(NULL, got, xq, wx, tx, NULL, M, N, K), 0);
                    opg_cpu_set_level(opg_cpu_best_level());
                    tu_assert_bits(got, want, (size_t)(M * N), opg_dtype_name(tx));
                }
            }
        }
        tu_free(w);
        tu_free(wx);
    }
}

/* opg_pack_x8: every row comes back unchanged through opg_unpack_x8_row, the
 * layout is the documented one, and the bad arguments are refused. */
static void test_pack_x8(void **state) {
    (void)state;
    tu_rng r = {808};
    static const opg_dtype types[5] = {OPG_Q4_0, OPG_Q4_1, OPG_Q8_0, OPG_Q4_K, OPG_Q6_K};
    static const opg_dtype packed[5] = {OPG_Q4_0_X8, OPG_Q4_1_X8, OPG_Q8_0_X8, OPG_Q4_K_X8, OPG_Q6_K_X8};
    for (int ti = 0; ti < 5; ti++) {
        const opg_dtype t = types[ti], tx = packed[ti];
        assert_int_equal(opg_dtype_x8(t), tx);
        assert_int_equal(opg_dtype_x8(tx), tx);
        const int kq = t == OPG_Q4_K || t == OPG_Q6_K;
        const int64_t N = 24, K = kq ? 768 : 96;
        const size_t rb = opg_dtype_row_bytes(t, K), bb = opg_dtype_block_bytes(t);
        assert_int_equal(opg_dtype_row_bytes(tx, K), rb);
        assert_int_equal(opg_dtype_base(tx), t);
        assert_true(opg_dtype_is_x8(tx) && !opg_dtype_is_x8(t) && opg_dtype_is_quant(tx));
        uint8_t *w = make_weights(&r, t, N, K);
        uint8_t *wx = tu_alloc(rb * (size_t)N);
        uint8_t *row = tu_alloc(rb);
        assert_int_equal(opg_pack_x8(wx, w, t, N, K), 0);
        for (int64_t n = 0; n < N; n++) {
            memset(row, 0xa5, rb);
            opg_unpack_x8_row(row, wx, tx, n, K);
            assert_memory_equal(row, w + (size_t)n * rb, rb);
        }
        /* group 1, block 2 of row 5 (quant.h): */
        const int64_t nb = K / opg_dtype_block_elems(t);
        const uint8_t *run = wx + (size_t)(1 * nb + 2) * 8 * bb, *blk = w + (size_t)(8 + 5) * rb + 2 * bb;
        if (t == OPG_Q4_K) { /* words d|dmin, scales 0-3, 4-7, 8-11 of the 8 rows, then 4 x 32 qs bytes */
            for (int j = 0; j < 4; j++) assert_memory_equal(run + 32 * j + 5 * 4, blk + 4 * j, 4);
            for (int i = 0; i < 4; i++) assert_memory_equal(run + 128 + 256 * i + 5 * 32, blk + 16 + 32 * i, 32);
        } else if (t == OPG_Q6_K) { /* 6 x 32 bytes of ql then qh, 16 of scales, 2 of d */
            for (int i = 0; i < 6; i++) assert_memory_equal(run + 256 * i + 5 * 32, blk + 32 * i, 32);
            assert_memory_equal(run + 1536 + 5 * 16, blk + 192, 16);
            assert_memory_equal(run + 1664 + 5 * 2, blk + 208, 2);
        } else { /* the 8 scale words, then the qs: Q4 in slot 3 (0,4,1,5,...) of 16 bytes, Q8_0 in slot 5 of 32 */
            const size_t qb = t == OPG_Q8_0 ? 32 : 16, sb = bb - qb;
            const size_t slot = t == OPG_Q8_0 ? 5 : 3;
            assert_memory_equal(run + 5 * sb, blk, sb);
            assert_memory_equal(run + 8 * sb + slot * qb, blk + sb, qb);
        }
        /* refused: other types, partial groups, K off the block; X8 rows are not dequantizable */
        assert_int_equal(opg_pack_x8(wx, w, OPG_BF16, 8, 32), -1);
        assert_int_equal(opg_pack_x8(wx, w, OPG_F16, 8, 32), -1);
        assert_int_equal(opg_pack_x8(wx, w, tx, 8, 32), -1);
        assert_int_equal(opg_pack_x8(wx, w, t, 12, 32), -1);
        assert_int_equal(opg_pack_x8(wx, w, t, 8, 48), -1);
        float *y = tu_alloc((size_t)K * sizeof *y), *yr = tu_alloc((size_t)K * sizeof *yr);
        assert_int_equal(opg_dequantize_row_ref(y, wx, tx, K), -1);
        /* rows of the packed matrix dequantize to the GGUF row's values */
        for (int64_t n = 0; n < N; n += 5) {
            assert_int_equal(opg_dequantize_x8_row(y, wx, tx, n, K), 0);
            assert_int_equal(opg_dequantize_row_ref(yr, w + (size_t)n * rb, t, K), 0);
            tu_assert_bits(y, yr, (size_t)K, opg_dtype_name(tx));
        }
        assert_int_equal(opg_dequantize_x8_row(y, wx, t, 0, K), -1); /* not a packed type */
        assert_int_equal(opg_dequantize_x8_row(y, wx, tx, 0, K - 16), -1); /* K off the block */
        assert_int_equal(opg_dequantize_x8_row(y, wx, tx, -1, K), -1);
        tu_free(y); tu_free(yr);
        opg_block_q8a xq[3] = {{0}};
        float out[12];
        assert_int_equal(opg_matmul_q8a(NULL, out, xq, wx, tx, NULL, 1, 12, K), -1);
        tu_free(w); tu_free(wx); tu_free(row);
    }
}

static void test_matmul_args(void **state) {
    (void)state;
    float y[4] = {0};
    opg_block_q8a xq[8] = {{0}};
    opg_block_q8_0 w[8] = {{0}};
    assert_int_equal(opg_matmul_q8a(NULL, y, xq, w, OPG_F32, NULL, 1, 1, 32), -1);
    assert_int_equal(opg_matmul_q8a(NULL, y, xq, w, OPG_Q8_0, NULL, 1, 1, 48), -1);
    assert_int_equal(opg_matmul_q8a(NULL, y, xq, w, OPG_Q4_K, NULL, 1, 1, 32), -1);
    assert_int_equal(opg_matmul_q8a(NULL, y, xq, w, OPG_Q8_0, NULL, -1, 1, 32), -1);
    assert_int_equal(opg_matmul_q8a(NULL, y, xq, w, OPG_Q8_0, NULL, 0, 1, 32), 0);
    /* K = 0: every output is +0 (+ bias) */
    float bias[4] = {1.0f, -2.0f, 0.5f, 3.0f};
    assert_int_equal(opg_matmul_q8a(NULL, y, xq, w, OPG_Q8_0, bias, 1, 4, 0), 0);
    tu_assert_bits(y, bias, 4, "K=0 gives the bias");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_gguf_vectors),
        cmocka_unit_test(test_dequant_errors),
        cmocka_unit_test(test_quantize_act_cases),
        cmocka_unit_test(test_quantize_act_nonfinite),
        cmocka_unit_test(test_quantize_act_random),
        cmocka_unit_test(test_qdot_exact_small),
        cmocka_unit_test(test_qdot_accuracy),
        cmocka_unit_test(test_matmul_bit_identity),
        cmocka_unit_test(test_matmul_batch_invariance),
        cmocka_unit_test(test_matmul_extremes),
        cmocka_unit_test(test_matmul_args),
        cmocka_unit_test(test_pack_x8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
