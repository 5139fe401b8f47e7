/* test_cuda_matmul_seq.c: the operation sequences of the CUDA matmul kernels
 * (kernels/cuda/matmul_seq.h, compiled here as plain C) against the C
 * reference, bit for bit, on the host (no GPU needed). The loops below
 * replay the kernels' work split: the quantized kernel's lanes (4 integer
 * parts per 32-block, added as integers, then the 8 f32 terms of a chunk in
 * block order, chunks folded in order; the tensor-core kernel's per-half
 * integer sums), the packed weight words against the plain values; the activation quantizer's warp (max
 * of the |x_i| bit patterns, then per-element values, then the sum); the
 * float kernels' chunk partials folded in order (GEMV: 8 chunks per round;
 * GEMM: one fold per chunk), with the weight read by opg_cu_wf32. What this
 * cannot check is the CUDA code around these calls: that is the GPU tests'. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/matmul_seq.h"
#include "matmul.h"
#include "quant.h"

static const opg_dtype QTYPES[5] = {OPG_Q8_0, OPG_Q4_0, OPG_Q4_1, OPG_Q4_K, OPG_Q6_K};

/* A random finite f16 scale of magnitude 2^lo..2^hi, random sign; zero 1 time in 16. */
static uint16_t rand_scale(tu_rng *r, int lo, int hi) {
    if (tu_int(r, 0, 15) == 0) return 0;
    float v = ldexpf(tu_uniform(r, 1.0f, 2.0f), tu_int(r, lo, hi));
    return opg_f32_to_f16(tu_int(r, 0, 1) ? -v : v);
}

/* One weight row of type t: random block bytes; sane f16 scales unless raw. */
static uint8_t *make_row(tu_rng *r, opg_dtype t, int64_t K, int raw) {
    size_t rb = opg_dtype_row_bytes(t, K), bb = opg_dtype_block_bytes(t);
    uint8_t *w = tu_alloc(rb + 1);
    for (size_t i = 0; i < rb; i++) w[i] = (uint8_t)tu_u64(r);
    if (raw) return w;
    for (size_t off = 0; off < rb; off += bb) {
        uint8_t *b = w + off;
        uint16_t s0 = rand_scale(r, -10, -3), s1 = rand_scale(r, -10, -3);
        switch (t) {
        case OPG_Q8_0: case OPG_Q4_0: memcpy(b, &s0, 2); break;
        case OPG_Q4_1: case OPG_Q4_K: memcpy(b, &s0, 2); memcpy(b + 2, &s1, 2); break;
        case OPG_Q6_K: memcpy(b + offsetof(opg_block_q6_K, d), &s0, 2); break;
        default: break;
        }
    }
    return w;
}

/* The activation quantizer kernel's sequence for one block (one warp). */
static void quantize_block_as_kernel(opg_block_q8a *out, const float *x) {
    uint32_t bits = 0;
    for (int i = 0; i < 32; i++) { /* a max: the kernel's shuffle tree gives the same */
        uint32_t b = opg_f32_bits(x[i]) & 0x7fffffffu;
        if (b > bits) bits = b;
    }
    float d = opg_bits_f32(bits) / 127.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; i++) {
        int q = opg_cu_q8a_value(x[i], d);
        out->qs[i] = (int8_t)q;
        sum += q;
    }
    out->d = d;
    out->sum = sum;
}

/* The quantized kernel's sequence for one output (one warp). */
static float qdot_as_kernel(const void *wrow, opg_dtype t, const opg_block_q8a *xq, int64_t K) {
    int64_t nb = K / 32, nchunks = (nb + 7) / 8;
    float total = 0.0f;
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t b0 = c * 8;
        int nbc = nb - b0 < 8 ? (int)(nb - b0) : 8;
        int32_t part[32] = {0}, I[32];
        for (int lane = 0; lane < 32; lane++) {
            int bl = lane >> 2, p = lane & 3;
            if (bl < nbc) part[lane] = opg_cu_qpart(wrow, t, b0 + bl, p, xq[b0 + bl].qs + 8 * p);
        }
        for (int lane = 0; lane < 32; lane++) { /* shfl_xor 1 then 2 */
            int g = lane & ~3;
            I[lane] = (part[g] + part[g + 1]) + (part[g + 2] + part[g + 3]);
        }
        float acc = 0.0f;
        for (int j = 0; j < nbc; j++) acc = opg_cu_qterm(wrow, t, b0 + j, &xq[b0 + j], I[4 * j], acc);
        total = opg_cu_fold(total, acc, c);
    }
    return total;
}

/* The integer value element e (0..31) of 32-block blk multiplies in the
 * spec's sums, read the plain way (one byte or nibble at a time). */
static int qvalue_plain(const uint8_t *wrow, opg_dtype t, int64_t blk, int e) {
    switch (t) {
    case OPG_Q8_0: return ((const opg_block_q8_0 *)wrow + blk)->qs[e];
    case OPG_Q4_0: case OPG_Q4_1: {
        const uint8_t *qs = t == OPG_Q4_0 ? ((const opg_block_q4_0 *)wrow + blk)->qs
                                          : ((const opg_block_q4_1 *)wrow + blk)->qs;
        int q = e < 16 ? (qs[e] & 15) : (qs[e - 16] >> 4);
        return t == OPG_Q4_0 ? q - 8 : q;
    }
    case OPG_Q4_K: {
        const opg_block_q4_K *b = (const opg_block_q4_K *)wrow + blk / 8;
        int j = (int)(blk % 8);
        return (b->qs[32 * (j / 2) + e] >> (4 * (j % 2))) & 15;
    }
    case OPG_Q6_K: { /* ggml's dequantize_row_q6_K layout */
        const opg_block_q6_K *b = (const opg_block_q6_K *)wrow + blk / 8;
        int i = (int)(blk % 8) * 32 + e, h = i / 128, g = (i % 128) / 32, l = i % 32;
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int lo = g == 0 ? (ql[l] & 15) : g == 1 ? (ql[l + 32] & 15) : g == 2 ? (ql[l] >> 4) : (ql[l + 32] >> 4);
        return (lo | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
    }
    default: return 0;
    }
}

/* opg_cu_qword's packed bytes are the plain values, for every block and word
 * of random rows (raw bytes: every bit pattern of the values occurs). */
static void test_qword(void **state) {
    (void)state;
    tu_rng r = {777};
    for (int ti = 0; ti < 5; ti++) {
        opg_dtype t = QTYPES[ti];
        for (int rep = 0; rep < 20; rep++) {
            const int64_t K = 512;
            uint8_t *w = make_row(&r, t, K, 1);
            for (int64_t blk = 0; blk < K / 32; blk++)
                for (int g = 0; g < 8; g++) {
                    uint32_t word = opg_cu_qword(w, t, blk, g);
                    for (int i = 0; i < 4; i++) {
                        int got = (int8_t)(uint8_t)(word >> 8 * i), want = qvalue_plain(w, t, blk, 4 * g + i);
                        if (got != want)
                            fail_msg("%s block %lld element %d: word byte %d, plain value %d",
                                     opg_dtype_name(t), (long long)blk, 4 * g + i, got, want);
                    }
                }
            tu_free(w);
        }
    }
    /* dp4a emulation: signed bytes, accumulated */
    assert_int_equal(opg_cu_dp4a(0x80FF017Fu, 0x7F8002FFu, 5), 5 + (-128 * 127) + (-1 * -128) + 2 - 127);
}

/* The tensor-core kernel's sequence for one output: per block, the exact sum
 * over each 16-element half (what wmma's int8 mma computes), Q6_K's halves
 * combined with their scales, then the same f32 terms and folds. */
static float qdot_as_tc_kernel(const void *wrow, opg_dtype t, const opg_block_q8a *xq, int64_t K) {
    int64_t nb = K / 32, nchunks = (nb + 7) / 8;
    float total = 0.0f;
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t b0 = c * 8;
        int nbc = nb - b0 < 8 ? (int)(nb - b0) : 8;
        float acc = 0.0f;
        for (int j = 0; j < nbc; j++) {
            int32_t half[2] = {0, 0};
            for (int g = 0; g < 8; g++) { /* the smem tile's words */
                uint32_t wv = opg_cu_qword(wrow, t, b0 + j, g);
                for (int i = 0; i < 4; i++)
                    half[g / 4] += (int8_t)(uint8_t)(wv >> 8 * i) * xq[b0 + j].qs[4 * g + i];
            }
            int32_t I = t == OPG_Q6_K ? opg_cu_q6k_combine(wrow, b0 + j, half[0], half[1])
                                      : half[0] + half[1];
            acc = opg_cu_qterm(wrow, t, b0 + j, &xq[b0 + j], I, acc);
        }
        total = opg_cu_fold(total, acc, c);
    }
    return total;
}

static void test_quantize_act(void **state) {
    (void)state;
    tu_rng r = {31};
    enum { NB = 64 };
    float x[NB * 32];
    opg_block_q8a ref[NB], got[NB];
    for (int round = 0; round < 40; round++) {
        if (round % 2) tu_fill_wild(&r, x, NB * 32);
        else tu_fill(&r, x, NB * 32, -3.0f, 3.0f);
        if (round == 4) /* a block of zeros, one of subnormals, one with non-finite values */
            for (int i = 0; i < 32; i++) {
                x[i] = 0.0f;
                x[32 + i] = opg_bits_f32((uint32_t)(i * 977)) * (i % 2 ? -1.0f : 1.0f);
                x[64 + i] = i == 3 ? INFINITY : i == 9 ? NAN : (float)i;
            }
        opg_quantize_act_ref(ref, x, NB * 32);
        for (int b = 0; b < NB; b++) quantize_block_as_kernel(&got[b], x + 32 * b);
        tu_assert_bytes(got, ref, sizeof ref, "quantized activations");
    }
}

static void test_qdot(void **state) {
    (void)state;
    tu_rng r = {4243};
    static const int64_t ks[] = {32, 64, 96, 224, 256, 288, 512, 800, 2048, 4096, 4352};
    for (int ti = 0; ti < 5; ti++) {
        opg_dtype t = QTYPES[ti];
        int be = opg_dtype_block_elems(t);
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            int64_t K = ks[ki];
            if (K % be) continue;
            float *x = tu_alloc((size_t)K * sizeof *x);
            opg_block_q8a *xq = tu_alloc((size_t)(K / 32) * sizeof *xq);
            for (int rep = 0; rep < 6; rep++) {
                if (rep % 2) tu_fill_wild(&r, x, (size_t)K);
                else tu_fill(&r, x, (size_t)K, -1.0f, 1.0f);
                opg_quantize_act_ref(xq, x, K);
                uint8_t *w = make_row(&r, t, K, rep == 5);
                float want = opg_qdot_ref(w, t, xq, K);
                for (int tc = 0; tc < 2; tc++) {
                    float got = tc ? qdot_as_tc_kernel(w, t, xq, K) : qdot_as_kernel(w, t, xq, K);
                    char what[64];
                    snprintf(what, sizeof what, "qdot%s %s K=%lld rep %d", tc ? " (tc)" : "",
                             opg_dtype_name(t), (long long)K, rep);
                    if (want != want) /* raw bytes: NaN scales; only "NaN out" is promised */
                        assert_true(got != got);
                    else
                        tu_assert_bits(&got, &want, 1, what);
                }
                tu_free(w);
            }
            tu_free(x);
            tu_free(xq);
        }
    }
}

/* Float: chunk partials computed as the kernels do, folded in order. */
static float fdot_as_kernel(const void *wrow, opg_dtype t, const float *x, int64_t K) {
    int64_t nchunks = (K + 255) / 256;
    float total = 0.0f;
    for (int64_t cr = 0; cr < nchunks; cr += 8) { /* GEMV round: 8 chunks, then 8 folds */
        float part[8];
        for (int w = 0; w < 8 && cr + w < nchunks; w++) {
            int64_t kb = (cr + w) * 256, ke = K - kb < 256 ? K : kb + 256;
            float acc = 0.0f;
            for (int64_t k0 = kb; k0 < ke; k0 += 16) /* shared tiles of 16 k's */
                for (int64_t k = k0; k < ke && k < k0 + 16; k++)
                    acc = fmaf(opg_cu_wf32(wrow, t, k), x[k], acc);
            part[w] = acc;
        }
        for (int j = 0; j < 8 && cr + j < nchunks; j++) total = opg_cu_fold(total, part[j], cr + j);
    }
    return total;
}

static void test_float_dot(void **state) {
    (void)state;
    tu_rng r = {515};
    static const int64_t ks[] = {0, 1, 15, 17, 255, 256, 257, 1000, 2048, 2049, 4096, 5000};
    static const opg_dtype ft[3] = {OPG_F32, OPG_F16, OPG_BF16};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        int64_t K = ks[ki];
        float *x = tu_alloc((size_t)(K + 1) * sizeof *x), *wf = tu_alloc((size_t)(K + 1) * 4);
        uint16_t *wh = tu_alloc((size_t)(K + 1) * 2);
        for (int rep = 0; rep < 4; rep++) {
            if (rep % 2) tu_fill_wild(&r, x, (size_t)K);
            else tu_fill(&r, x, (size_t)K, -1.0f, 1.0f);
            tu_fill(&r, wf, (size_t)K, -1.0f, 1.0f);
            if (rep == 3 && K >= 256) /* a first chunk of tiny negative products: -0 */
                for (int64_t k = 0; k < 256; k++) { x[k] = 1e-30f; wf[k] = -1e-30f; }
            for (int ti = 0; ti < 3; ti++) {
                const void *w = wf;
                if (ft[ti] != OPG_F32) {
                    for (int64_t k = 0; k < K; k++)
                        wh[k] = ft[ti] == OPG_F16 ? opg_f32_to_f16(wf[k]) : opg_f32_to_bf16(wf[k]);
                    w = wh;
                }
                float want = 0.0f;
                opg_matmul_ref(&want, x, w, ft[ti], NULL, 1, 1, K);
                float got = fdot_as_kernel(w, ft[ti], x, K);
                char what[64];
                snprintf(what, sizeof what, "dot %s K=%lld rep %d", opg_dtype_name(ft[ti]),
                         (long long)K, rep);
                tu_assert_bits(&got, &want, 1, what);
            }
        }
        tu_free(x);
        tu_free(wf);
        tu_free(wh);
    }
}

static void test_fold_keeps_negative_zero(void **state) {
    (void)state;
    float t = opg_cu_fold(123.0f, -0.0f, 0);
    assert_true(t == 0.0f && signbit(t));
    t = opg_cu_fold(t, -0.0f, 1);
    assert_true(t == 0.0f && signbit(t));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qword),
        cmocka_unit_test(test_quantize_act),
        cmocka_unit_test(test_qdot),
        cmocka_unit_test(test_float_dot),
        cmocka_unit_test(test_fold_keeps_negative_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
