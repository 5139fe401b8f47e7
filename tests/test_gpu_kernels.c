/* test_gpu_kernels.c: every CUDA launcher of kernels/cuda/opg_cuda.h against
 * its C reference, bit for bit, on random shapes: M = 1, odd and large M,
 * odd N and K, partial RoPE dims, long attention contexts, fingerprint rows
 * around the 1024-value leaf. Outputs sit between guard words that must stay
 * untouched, in-place calls (as the model makes them) are checked too, and a
 * few special values (zeros of both signs, subnormals; NaN where the
 * contract defines the result) go through each elementwise op.
 *
 * Without a CUDA device (or built without CUDA) it prints
 * "skipped: no CUDA device" and exits 77, which ctest reports as skipped.
 * OPG_GPU_TEST_QUICK=1 shrinks the large shapes (compute-sanitizer runs). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef OPG_HAVE_CUDA

#include <cuda_runtime_api.h>

#include "act.h"
#include "attention.h"
#include "embed.h"
#include "matmul.h"
#include "opg_cuda.h"
#include "opg_math.h"
#include "quant.h"
#include "rmsnorm.h"
#include "rope.h"
#include "sample.h"
#include "softmax.h"
#include "trace.h"

static opg_cuda_stream g_stream;
static int g_quick;

#define GUARD 64 /* guard floats on each side of an output */
#define GUARD_BITS 0x7fc0dead

/* ---- device helpers ------------------------------------------------------------ */

#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t ck_e_ = (call);                                                       \
        if (ck_e_ != cudaSuccess) {                                                       \
            print_error("%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                     \
                        cudaGetErrorString(ck_e_));                                       \
            fail();                                                                       \
        }                                                                                 \
    } while (0)

/* Runs a launcher, expects 0, then waits for it and checks for a fault. */
#define LAUNCH(call)                                                                      \
    do {                                                                                  \
        int l_rc_ = (call);                                                               \
        if (l_rc_ != OPG_CUDA_OK) {                                                       \
            print_error("%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call, l_rc_,  \
                        opg_cuda_last_error());                                           \
            fail();                                                                       \
        }                                                                                 \
        CK(cudaStreamSynchronize((cudaStream_t)g_stream));                                \
        CK(cudaGetLastError());                                                           \
    } while (0)

static void *dev_alloc(size_t bytes) {
    void *p = NULL;
    CK(cudaMalloc(&p, bytes ? bytes : 4));
    return p;
}
/* cudaMemcpy from pageable memory returns before its DMA is done, ordered on
 * the legacy stream only, which g_stream (non-blocking) does not wait for:
 * the device synchronization makes the bytes there before any launch. */
static void *dev_from(const void *host, size_t bytes) {
    void *p = dev_alloc(bytes);
    if (bytes) CK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
    return p;
}
static void to_host(void *host, const void *dev, size_t bytes) {
    CK(cudaDeviceSynchronize());
    if (bytes) CK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
}
static void dev_free(void *p) { CK(cudaFree(p)); }

/* An output of n floats on the device with GUARD guard floats on each side;
 * .out points at the first output float. */
typedef struct {
    float *base, *out;
    size_t n;
} guarded;

static guarded guarded_new(size_t n) {
    guarded g = {NULL, NULL, n};
    size_t total = n + 2 * GUARD;
    uint32_t *h = malloc(total * 4);
    assert_non_null(h);
    for (size_t i = 0; i < total; i++) h[i] = GUARD_BITS;
    g.base = dev_from(h, total * 4);
    g.out = g.base + GUARD;
    free(h);
    return g;
}
/* Copies the output to host (n floats) and checks the guards. */
static void guarded_get(const guarded *g, float *host, const char *what) {
    size_t total = g->n + 2 * GUARD;
    uint32_t *h = malloc(total * 4);
    assert_non_null(h);
    to_host(h, g->base, total * 4);
    for (size_t i = 0; i < total; i++) {
        if (i >= GUARD && i < GUARD + g->n) continue;
        if (h[i] != GUARD_BITS) {
            print_error("%s: guard word %lld (relative to the output) overwritten: 0x%08x\n", what,
                        (long long)i - GUARD, h[i]);
            tu_mismatch();
            break;
        }
    }
    memcpy(host, h + GUARD, g->n * 4);
    free(h);
}
static void guarded_free(guarded *g) { dev_free(g->base); }

static int64_t big(int64_t full, int64_t quick) { return g_quick ? quick : full; }

/* ---- data ------------------------------------------------------------------------ */

static const opg_dtype ALL_TYPES[8] = {OPG_F32,  OPG_F16,  OPG_BF16, OPG_Q8_0,
                                       OPG_Q4_0, OPG_Q4_1, OPG_Q4_K, OPG_Q6_K};

static uint16_t rand_scale(tu_rng *r, int lo, int hi) {
    if (tu_int(r, 0, 15) == 0) return 0;
    float v = ldexpf(tu_uniform(r, 1.0f, 2.0f), tu_int(r, lo, hi));
    return opg_f32_to_f16(tu_int(r, 0, 1) ? -v : v);
}

/* rows x K weights of type t: float types from tu_fill_wild (finite), quantized
 * ones random block bytes with finite f16 scales. */
static void *make_weights(tu_rng *r, opg_dtype t, int64_t rows, int64_t K, size_t *bytes) {
    size_t rb = opg_dtype_row_bytes(t, K), n = (size_t)rows * rb;
    *bytes = n;
    uint8_t *w = tu_alloc(n + 4);
    if (t == OPG_F32) {
        tu_fill_wild(r, (float *)w, (size_t)rows * (size_t)K);
        return w;
    }
    if (t == OPG_F16 || t == OPG_BF16) {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < (size_t)rows * (size_t)K; i++) {
            float v = tu_uniform(r, -2.0f, 2.0f);
            h[i] = t == OPG_F16 ? opg_f32_to_f16(v) : opg_f32_to_bf16(v);
        }
        return w;
    }
    for (size_t i = 0; i < n; i++) w[i] = (uint8_t)tu_u64(r);
    size_t bb = opg_dtype_block_bytes(t);
    for (size_t off = 0; off < n; off += bb) {
        uint8_t *b = w + off;
        uint16_t s0 = rand_scale(r, -10, -3), s1 = rand_scale(r, -10, -3);
        switch (t) {
        case OPG_Q8_0:
        case OPG_Q4_0: memcpy(b, &s0, 2); break;
        case OPG_Q4_1:
        case OPG_Q4_K: memcpy(b, &s0, 2); memcpy(b + 2, &s1, 2); break;
        case OPG_Q6_K: memcpy(b + offsetof(opg_block_q6_K, d), &s0, 2); break;
        default: break;
        }
    }
    return w;
}

static float *rand_floats(tu_rng *r, size_t n, int wild) {
    float *x = tu_alloc(n * 4 + 4);
    if (wild) tu_fill_wild(r, x, n);
    else tu_fill(r, x, n, -1.0f, 1.0f);
    return x;
}

/* ---- matmul and activation quantization ------------------------------------------- */

static void check_matmul(tu_rng *r, opg_dtype t, int64_t M, int64_t N, int64_t K, int bias) {
    char what[128];
    snprintf(what, sizeof what, "matmul %s M=%lld N=%lld K=%lld%s", opg_dtype_name(t),
             (long long)M, (long long)N, (long long)K, bias ? " +bias" : "");
    size_t wb;
    void *w = make_weights(r, t, N, K, &wb);
    float *x = rand_floats(r, (size_t)(M * K), 1);
    float *b = bias ? rand_floats(r, (size_t)N, 1) : NULL;
    float *want = tu_alloc((size_t)(M * N) * 4), *got = tu_alloc((size_t)(M * N) * 4);
    assert_int_equal(opg_matmul_ref(want, x, w, t, b, M, N, K), 0);

    void *dw = dev_from(w, wb), *dx = dev_from(x, (size_t)(M * K) * 4);
    void *db = b ? dev_from(b, (size_t)N * 4) : NULL;
    /* exactly the advertised scratch, so an overrun is a sanitizer error */
    size_t sb = opg_cuda_matmul_scratch_bytes(M, K);
    void *ds = opg_dtype_is_quant(t) ? dev_alloc(sb) : NULL;
    guarded y = guarded_new((size_t)(M * N));
    LAUNCH(opg_cuda_matmul(g_stream, y.out, dx, dw, t, db, M, N, K, ds));
    guarded_get(&y, got, what);
    tu_assert_bits(want, got, (size_t)(M * N), what);

    guarded_free(&y);
    dev_free(dw);
    dev_free(dx);
    if (db) dev_free(db);
    if (ds) dev_free(ds);
    tu_free(w);
    tu_free(x);
    if (b) tu_free(b);
    tu_free(want);
    tu_free(got);
}

static void test_matmul(void **state) {
    (void)state;
    tu_rng r = {0x6b0001};
    /* K multiples of 256 so every type takes them; M across the GEMV/GEMM
     * crossover (float: gemv_float up to 8; quantized: the dp4a kernel up to
     * 8, int8 tensor cores from 9, tiles of 64x64 cut by odd M and N); N odd
     * and even */
    const int64_t shapes[][3] = {
        {1, 1, 256},   {1, 67, 256},  {2, 33, 512},  {3, 129, 768}, {7, 5, 256},
        {8, 64, 512},  {9, 31, 1024}, {16, 17, 256}, {33, 96, 512}, {1, 576, 1536},
        {big(130, 40), 77, 768},      {big(517, 65), big(193, 64), big(2304, 512)},
    };
    for (int ti = 0; ti < 8; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            check_matmul(&r, ALL_TYPES[ti], shapes[si][0], shapes[si][1], shapes[si][2],
                         (int)(si & 1));
    /* the block-32 types and the float types at K that are not multiples of 256 */
    const int64_t k32[] = {32, 96, 160, 1056};
    for (int ti = 0; ti < 6; ti++)
        for (int ki = 0; ki < 4; ki++) check_matmul(&r, ALL_TYPES[ti], 1 + 4 * ki, 19, k32[ki], ki & 1);
    /* float weights at any K, odd ones included */
    const int64_t kf[] = {1, 2, 3, 7, 31, 33, 67, 1000, 4097};
    for (int ti = 0; ti < 3; ti++)
        for (int ki = 0; ki < 9; ki++) check_matmul(&r, ALL_TYPES[ti], ki % 3 ? 1 : 11, 13, kf[ki], ki & 1);
    /* M = 1 against large M: a row's bits do not depend on its batch */
    for (int ti = 0; ti < 8; ti++) check_matmul(&r, ALL_TYPES[ti], big(300, 48), 96, 512, 0);
}

static void test_matmul_args(void **state) {
    (void)state;
    float *d = dev_alloc(4096 * 4);
    /* quantized weights need K a multiple of the block */
    int rc = opg_cuda_matmul(g_stream, d, d, d, OPG_Q4_0, NULL, 1, 1, 48, d);
    assert_int_equal(rc, OPG_CUDA_ERR_ARG);
    assert_true(opg_cuda_last_error()[0] != 0);
    rc = opg_cuda_matmul(g_stream, d, d, d, OPG_Q4_K, NULL, 1, 1, 128, d);
    assert_int_equal(rc, OPG_CUDA_ERR_ARG);
    rc = opg_cuda_matmul(g_stream, d, d, d, (opg_dtype)99, NULL, 1, 1, 32, d);
    assert_int_equal(rc, OPG_CUDA_ERR_ARG);
    CK(cudaStreamSynchronize((cudaStream_t)g_stream));
    dev_free(d);
}

static void test_quantize_act(void **state) {
    (void)state;
    tu_rng r = {0x6b0002};
    const int64_t shapes[][2] = {{1, 32}, {1, 576}, {3, 1536}, {17, 256}, {big(200, 20), 2048}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t M = shapes[si][0], K = shapes[si][1], nb = M * K / 32;
        for (int wild = 0; wild <= 1; wild++) {
            float *x = rand_floats(&r, (size_t)(M * K), wild);
            /* blocks of zeros (d = 0), of one sign, and specials */
            if (K >= 96) {
                for (int i = 0; i < 32; i++) x[i] = i & 1 ? -0.0f : 0.0f;
                for (int i = 32; i < 64; i++) x[i] = fabsf(x[i]);
                x[64] = 0x1p-149f;
                x[65] = -0x1p-140f;
                x[66] = 3.0e38f;
            }
            opg_block_q8a *want = tu_alloc((size_t)nb * sizeof *want);
            opg_block_q8a *got = tu_alloc((size_t)nb * sizeof *got);
            for (int64_t m = 0; m < M; m++) opg_quantize_act_ref(want + m * (K / 32), x + m * K, K);
            float *dx = dev_from(x, (size_t)(M * K) * 4);
            opg_block_q8a *dq = dev_alloc((size_t)nb * sizeof *dq);
            LAUNCH(opg_cuda_quantize_act(g_stream, dq, dx, M, K));
            to_host(got, dq, (size_t)nb * sizeof *got);
            char what[96];
            snprintf(what, sizeof what, "quantize_act M=%lld K=%lld wild=%d", (long long)M,
                     (long long)K, wild);
            tu_assert_bytes(want, got, (size_t)nb * sizeof *got, what);
            dev_free(dx);
            dev_free(dq);
            tu_free(x);
            tu_free(want);
            tu_free(got);
        }
    }
}

/* ---- elementwise and normalisation ---------------------------------------------- */

static void test_rmsnorm(void **state) {
    (void)state;
    tu_rng r = {0x6b0003};
    const int64_t shapes[][2] = {{1, 1},   {1, 7},     {1, 576},  {3, 1000},
                                 {2, 4096}, {37, 333}, {big(300, 30), 576}, {1, big(16384, 4096)}};
    const float eps[2] = {1e-5f, 1e-6f};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t M = shapes[si][0], D = shapes[si][1];
        size_t n = (size_t)(M * D);
        for (int wild = 0; wild <= 1; wild++) {
            float *x = rand_floats(&r, n, wild), *w = rand_floats(&r, (size_t)D, 0);
            float *want = tu_alloc(n * 4), *got = tu_alloc(n * 4);
            for (int64_t m = 0; m < M; m++)
                opg_rmsnorm_ref(want + m * D, x + m * D, w, D, eps[wild]);
            float *dx = dev_from(x, n * 4), *dw = dev_from(w, (size_t)D * 4);
            guarded y = guarded_new(n);
            char what[96];
            snprintf(what, sizeof what, "rmsnorm M=%lld D=%lld", (long long)M, (long long)D);
            LAUNCH(opg_cuda_rmsnorm(g_stream, y.out, dx, dw, M, D, eps[wild]));
            guarded_get(&y, got, what);
            tu_assert_bits(want, got, n, what);
            /* in place, as the model's final norm runs */
            LAUNCH(opg_cuda_rmsnorm(g_stream, dx, dx, dw, M, D, eps[wild]));
            to_host(got, dx, n * 4);
            tu_assert_bits(want, got, n, "rmsnorm in place");
            guarded_free(&y);
            dev_free(dx);
            dev_free(dw);
            tu_free(x);
            tu_free(w);
            tu_free(want);
            tu_free(got);
        }
    }
}

static void rope_ref(float *x, int64_t n_tok, const int32_t *pos, int n_heads, int head_dim,
                     int n_dims, const double *inv_freq, opg_rope_mode mode) {
    int n_half = n_dims / 2;
    float *cs = tu_alloc((size_t)(n_half + 1) * 4), *sn = tu_alloc((size_t)(n_half + 1) * 4);
    for (int64_t t = 0; t < n_tok; t++) {
        opg_rope_table(cs, sn, pos[t], inv_freq, n_half);
        opg_rope_apply_ref(x + t * n_heads * head_dim, n_heads, head_dim, n_dims, cs, sn, mode);
    }
    tu_free(cs);
    tu_free(sn);
}

static void test_rope(void **state) {
    (void)state;
    tu_rng r = {0x6b0004};
    /* n_tok, n_heads, head_dim, n_dims, base */
    const struct { int64_t n_tok; int n_heads, head_dim, n_dims; double base; } cases[] = {
        {1, 1, 2, 2, 10000.0},        {1, 9, 64, 64, 10000.0},   {5, 3, 64, 64, 100000.0},
        {7, 4, 128, 128, 500000.0},   {3, 2, 80, 80, 10000.0},   {2, 5, 96, 32, 10000.0},
        {11, 2, 128, 64, 1000000.0},  {1, 32, 128, 128, 500000.0},
        {big(257, 33), 15, 64, 64, 10000.0},
        {3, 2, 512, 384, 10000.0},    {2, 3, 512, 512, 1000000.0}, /* over 128 rotated pairs a thread */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t T = cases[ci].n_tok;
        int H = cases[ci].n_heads, hd = cases[ci].head_dim, nd = cases[ci].n_dims;
        size_t n = (size_t)T * (size_t)H * (size_t)hd;
        double *freq = tu_alloc((size_t)nd / 2 * 8 + 8);
        opg_rope_freqs(freq, nd, cases[ci].base);
        int32_t *pos = tu_alloc((size_t)T * 4);
        for (int64_t t = 0; t < T; t++)
            pos[t] = t % 3 == 2 ? tu_int(&r, 0, 1 << 20) : (int32_t)(t + tu_int(&r, 0, 4000));
        pos[0] = 0;
        for (int mi = 0; mi < 2; mi++) {
            opg_rope_mode mode = mi ? OPG_ROPE_NEOX : OPG_ROPE_NORMAL;
            float *x = rand_floats(&r, n, 1), *want = tu_alloc(n * 4), *got = tu_alloc(n * 4);
            memcpy(want, x, n * 4);
            rope_ref(want, T, pos, H, hd, nd, freq, mode);
            float *dx = dev_from(x, n * 4);
            int32_t *dpos = dev_from(pos, (size_t)T * 4);
            double *dfreq = dev_from(freq, (size_t)nd / 2 * 8);
            LAUNCH(opg_cuda_rope(g_stream, dx, T, dpos, H, hd, nd, dfreq, mode));
            to_host(got, dx, n * 4);
            char what[128];
            snprintf(what, sizeof what, "rope %s T=%lld H=%d hd=%d dims=%d",
                     mode ? "neox" : "normal", (long long)T, H, hd, nd);
            tu_assert_bits(want, got, n, what);
            dev_free(dx);
            dev_free(dpos);
            dev_free(dfreq);
            tu_free(x);
            tu_free(want);
            tu_free(got);
        }
        tu_free(freq);
        tu_free(pos);
    }
}

static const int64_t ELEM_SIZES[] = {1, 2, 7, 31, 32, 33, 1000, 1023, 1025, 65537, 1 << 20};

static void add_specials(float *x, size_t n, int with_nan) {
    static const float sp[] = {0.0f, -0.0f, 0x1p-149f, -0x1p-126f, 3.4e38f, -3.4e38f, 1e-30f};
    for (size_t i = 0; i < n && i < 7; i++) x[i] = sp[i];
    if (with_nan && n > 9) {
        x[8] = NAN;
        x[9] = INFINITY;
    }
}

static void test_swiglu_add(void **state) {
    (void)state;
    tu_rng r = {0x6b0005};
    for (size_t si = 0; si < sizeof ELEM_SIZES / sizeof ELEM_SIZES[0]; si++) {
        int64_t n = ELEM_SIZES[si];
        if (g_quick && n > 70000) continue;
        for (int special = 0; special <= 1; special++) {
            float *a = rand_floats(&r, (size_t)n, 1), *b = rand_floats(&r, (size_t)n, 1);
            if (special) {
                add_specials(a, (size_t)n, 1);
                add_specials(b + (n > 3 ? 3 : 0), (size_t)(n > 3 ? n - 3 : n), 1);
            }
            float *want = tu_alloc((size_t)n * 4), *got = tu_alloc((size_t)n * 4);
            float *da = dev_from(a, (size_t)n * 4), *db = dev_from(b, (size_t)n * 4);
            guarded y = guarded_new((size_t)n);
            char what[96];

            opg_swiglu_ref(want, a, b, n);
            snprintf(what, sizeof what, "swiglu n=%lld%s", (long long)n, special ? " specials" : "");
            LAUNCH(opg_cuda_swiglu(g_stream, y.out, da, db, n));
            guarded_get(&y, got, what);
            tu_assert_bits_nan(want, got, (size_t)n, what);

            for (int64_t i = 0; i < n; i++) want[i] = a[i] + b[i];
            snprintf(what, sizeof what, "add n=%lld%s", (long long)n, special ? " specials" : "");
            LAUNCH(opg_cuda_add(g_stream, y.out, da, db, n));
            guarded_get(&y, got, what);
            tu_assert_bits_nan(want, got, (size_t)n, what);

            /* in place, as the model runs them: add(X, X, O), swiglu(G, G, U) */
            LAUNCH(opg_cuda_add(g_stream, da, da, db, n));
            to_host(got, da, (size_t)n * 4);
            tu_assert_bits_nan(want, got, (size_t)n, "add in place");
            memcpy(a, got, (size_t)n * 4);
            opg_swiglu_ref(want, a, b, n);
            LAUNCH(opg_cuda_swiglu(g_stream, da, da, db, n));
            to_host(got, da, (size_t)n * 4);
            tu_assert_bits_nan(want, got, (size_t)n, "swiglu in place");

            guarded_free(&y);
            dev_free(da);
            dev_free(db);
            tu_free(a);
            tu_free(b);
            tu_free(want);
            tu_free(got);
        }
    }
}

static void test_softmax(void **state) {
    (void)state;
    tu_rng r = {0x6b0006};
    const int64_t shapes[][2] = {{1, 1}, {1, 2}, {3, 7}, {5, 1000}, {64, 77}, {1, 49152},
                                 {2, big(151936, 32000)}, {big(100, 10), 1025}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t M = shapes[si][0], n = shapes[si][1];
        size_t t = (size_t)(M * n);
        for (int wild = 0; wild <= 1; wild++) {
            float *x = rand_floats(&r, t, 0);
            if (wild)
                for (size_t i = 0; i < t; i++) x[i] *= 40.0f;
            float *want = tu_alloc(t * 4), *got = tu_alloc(t * 4);
            for (int64_t m = 0; m < M; m++) opg_softmax_ref(want + m * n, x + m * n, n);
            float *dx = dev_from(x, t * 4);
            guarded y = guarded_new(t);
            char what[96];
            snprintf(what, sizeof what, "softmax M=%lld n=%lld", (long long)M, (long long)n);
            LAUNCH(opg_cuda_softmax(g_stream, y.out, dx, M, n));
            guarded_get(&y, got, what);
            tu_assert_bits(want, got, t, what);
            LAUNCH(opg_cuda_softmax(g_stream, dx, dx, M, n));
            to_host(got, dx, t * 4);
            tu_assert_bits(want, got, t, "softmax in place");
            guarded_free(&y);
            dev_free(dx);
            tu_free(x);
            tu_free(want);
            tu_free(got);
        }
    }
}

static void test_embed(void **state) {
    (void)state;
    tu_rng r = {0x6b0007};
    const int64_t dims[] = {256, 768, 2048}; /* multiples of every block */
    for (int ti = 0; ti < 8; ti++)
        for (int di = 0; di < 3; di++) {
            opg_dtype t = ALL_TYPES[ti];
            int64_t dim = dims[di], V = 97 + 13 * di, n = di == 2 ? big(300, 40) : 1 + 9 * di;
            size_t tb;
            void *table = make_weights(&r, t, V, dim, &tb);
            int32_t *tok = tu_alloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) tok[i] = tu_int(&r, 0, (int)V - 1);
            tok[0] = (int32_t)V - 1;
            if (n > 2) tok[1] = 0, tok[2] = 0;
            size_t on = (size_t)(n * dim);
            float *want = tu_alloc(on * 4), *got = tu_alloc(on * 4);
            assert_int_equal(opg_embed_ref(want, table, t, dim, V, tok, n), 0);
            void *dt = dev_from(table, tb);
            int32_t *dtok = dev_from(tok, (size_t)n * 4);
            guarded y = guarded_new(on);
            char what[96];
            snprintf(what, sizeof what, "embed %s dim=%lld n=%lld", opg_dtype_name(t),
                     (long long)dim, (long long)n);
            LAUNCH(opg_cuda_embed(g_stream, y.out, dt, t, dim, dtok, n));
            guarded_get(&y, got, what);
            tu_assert_bits(want, got, on, what);
            guarded_free(&y);
            dev_free(dt);
            dev_free(dtok);
            tu_free(table);
            tu_free(tok);
            tu_free(want);
            tu_free(got);
        }
}

static void test_argmax(void **state) {
    (void)state;
    tu_rng r = {0x6b0008};
    const int64_t sizes[] = {1, 2, 3, 31, 32, 33, 1000, 1024, 1025, 49152, 151936};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        for (int variant = 0; variant < 6; variant++) {
            float *x = rand_floats(&r, (size_t)n, 0);
            switch (variant) {
            case 1: /* ties: the lowest index wins */
                for (int64_t i = 0; i < n; i++) x[i] = (float)(tu_int(&r, 0, 3));
                break;
            case 2: /* NaN never wins */
                for (int64_t i = 0; i < n; i += 3) x[i] = NAN;
                if (n > 1) x[n - 1] = NAN;
                break;
            case 3: /* all NaN: index 0 */
                for (int64_t i = 0; i < n; i++) x[i] = NAN;
                break;
            case 4: /* -0 == +0 (a tie), all non-positive */
                for (int64_t i = 0; i < n; i++) x[i] = i % 2 ? 0.0f : -0.0f;
                if (n > 5) x[5] = -1.0f;
                break;
            case 5: /* the max at the very end, -inf elsewhere */
                for (int64_t i = 0; i < n; i++) x[i] = -INFINITY;
                x[n - 1] = -3.0f;
                break;
            default: break;
            }
            int64_t want = opg_argmax_ref(x, n), got = -7;
            float *dx = dev_from(x, (size_t)n * 4);
            LAUNCH(opg_cuda_argmax(g_stream, &got, dx, n));
            if (got != want) {
                print_error("argmax n=%lld variant %d: %lld, reference %lld\n", (long long)n,
                            variant, (long long)got, (long long)want);
                tu_mismatch();
            }
            dev_free(dx);
            tu_free(x);
        }
    }
}

/* ---- sampling -------------------------------------------------------------------- */

/* opg_cuda_sample against opg_sample_ref: logits with ties, NaN, -inf, +inf,
 * -0/+0, all NaN; greedy, top-k (1, small, larger than the vocabulary),
 * top-p (tiny, typical, 1 = off), temperatures that overflow l/T; several
 * steps per setting (the RNG counter). */
static void test_sample(void **state) {
    (void)state;
    tu_rng r = {0x6b000a};
    const int64_t sizes[] = {1, 2, 7, 33, 1000, 1025, big(49152, 4096), big(151936, 5000)};
    const struct { float T; int32_t K; float P; } ps[] = {
        {0.0f, 0, 0.0f},   {-1.0f, 40, 0.9f}, {NAN, 0, 0.0f},    {0.7f, 1, 0.0f},
        {0.7f, 0, 0.0f},   {0.7f, 40, 0.0f},  {1.0f, 0, 0.9f},   {1.3f, 50, 0.95f},
        {0.8f, 3, 1.0f},   {1.0f, 0, 1e-6f},  {1e-30f, 0, 0.5f}, {2.0f, 1 << 30, 0.5f},
    };
    const size_t n_ps = sizeof ps / sizeof ps[0];
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        size_t sb = opg_cuda_sample_scratch_bytes(n);
        assert_true(sb > 0);
        void *scratch = dev_alloc(sb);
        void *host_scratch = tu_alloc(opg_sample_scratch_bytes(n));
        int64_t *dout = dev_alloc(sizeof(int64_t));
        for (int variant = 0; variant < 7; variant++) {
            float *x = rand_floats(&r, (size_t)n, 0);
            for (int64_t i = 0; i < n; i++) x[i] *= 8.0f;
            switch (variant) {
            case 1: /* many ties */
                for (int64_t i = 0; i < n; i++) x[i] = (float)tu_int(&r, 0, 5);
                break;
            case 2: /* NaN scattered, -inf and +-0 */
                for (int64_t i = 0; i < n; i += 3) x[i] = NAN;
                for (int64_t i = 1; i < n; i += 7) x[i] = -INFINITY;
                for (int64_t i = 2; i < n; i += 5) x[i] = i % 2 ? 0.0f : -0.0f;
                break;
            case 3: /* all NaN: -1 */
                for (int64_t i = 0; i < n; i++) x[i] = NAN;
                break;
            case 4: /* an infinite logit: the top token */
                x[n / 2] = INFINITY;
                break;
            case 5: /* all -inf but one NaN */
                for (int64_t i = 0; i < n; i++) x[i] = -INFINITY;
                x[0] = NAN;
                break;
            case 6: /* one dominant logit */
                x[n - 1] = 1e4f;
                break;
            default: break;
            }
            float *dx = dev_from(x, (size_t)n * 4);
            for (size_t pi = 0; pi < n_ps; pi++)
                for (uint64_t step = 0; step < 3; step++) {
                    opg_sample_params p = {ps[pi].T, ps[pi].K, ps[pi].P, 1234567u + pi};
                    int64_t want = opg_sample_ref(x, n, &p, step, host_scratch), got = -7;
                    LAUNCH(opg_cuda_sample(g_stream, dout, dx, n, &p, step, scratch));
                    CK(cudaMemcpy(&got, dout, sizeof got, cudaMemcpyDeviceToHost));
                    if (got != want) {
                        print_error("sample n=%lld variant %d T=%g K=%d P=%g step %llu: %lld, "
                                    "reference %lld\n", (long long)n, variant, (double)p.temperature,
                                    p.top_k, (double)p.top_p, (unsigned long long)step,
                                    (long long)got, (long long)want);
                        tu_mismatch();
                    }
                }
            dev_free(dx);
            tu_free(x);
        }
        dev_free(dout);
        dev_free(scratch);
        tu_free(host_scratch);
    }
    /* n = 0: -1; a bad scratch is refused with a message */
    int64_t *dout = dev_alloc(sizeof(int64_t)), got = 0;
    opg_sample_params p = {1.0f, 0, 0.0f, 1};
    LAUNCH(opg_cuda_sample(g_stream, dout, NULL, 0, &p, 0, NULL));
    CK(cudaMemcpy(&got, dout, sizeof got, cudaMemcpyDeviceToHost));
    assert_int_equal(got, -1);
    float *dx = dev_alloc(64 * 4);
    assert_int_equal(opg_cuda_sample(g_stream, dout, dx, 64, &p, 0, NULL), OPG_CUDA_ERR_ARG);
    assert_true(strstr(opg_cuda_last_error(), "scratch") != NULL);
    dev_free(dx);
    dev_free(dout);
}

/* ---- attention ------------------------------------------------------------------ */

static void check_attention(tu_rng *r, int64_t n_q, int64_t pos0, int n_head, int n_kv, int hd,
                            float qa) {
    size_t nq = (size_t)n_q * (size_t)n_head * (size_t)hd;
    size_t nkv = (size_t)(pos0 + n_q) * (size_t)n_kv * (size_t)hd;
    float *q = tu_alloc(nq * 4), *k = tu_alloc(nkv * 4), *v = tu_alloc(nkv * 4);
    tu_fill(r, q, nq, -qa, qa);
    tu_fill(r, k, nkv, -1.0f, 1.0f);
    tu_fill(r, v, nkv, -1.0f, 1.0f);
    float scale = 1.0f / sqrtf((float)hd);
    float *want = tu_alloc(nq * 4), *got = tu_alloc(nq * 4);
    opg_attention_ref(want, q, k, v, n_q, pos0, n_head, n_kv, hd, scale);
    float *dq = dev_from(q, nq * 4), *dk = dev_from(k, nkv * 4), *dv = dev_from(v, nkv * 4);
    guarded o = guarded_new(nq);
    char what[128];
    snprintf(what, sizeof what, "attention n_q=%lld pos0=%lld heads=%d/%d hd=%d", (long long)n_q,
             (long long)pos0, n_head, n_kv, hd);
    /* a long context with few (query, head) pairs is split: segment states in scratch */
    size_t sb = opg_cuda_attention_scratch_bytes(n_q, pos0, n_head, hd);
    void *ds = sb ? dev_alloc(sb) : NULL;
    if (sb) {
        assert_int_equal(opg_cuda_attention(g_stream, o.out, dq, dk, dv, n_q, pos0, n_head, n_kv,
                                            hd, scale, NULL),
                         OPG_CUDA_ERR_ARG);
        assert_true(strstr(opg_cuda_last_error(), "scratch") != NULL);
    }
    LAUNCH(opg_cuda_attention(g_stream, o.out, dq, dk, dv, n_q, pos0, n_head, n_kv, hd, scale,
                              ds));
    guarded_get(&o, got, what);
    if (ds) dev_free(ds);
    tu_assert_bits(want, got, nq, what);
    guarded_free(&o);
    dev_free(dq);
    dev_free(dk);
    dev_free(dv);
    tu_free(q);
    tu_free(k);
    tu_free(v);
    tu_free(want);
    tu_free(got);
}

static void test_attention(void **state) {
    (void)state;
    tu_rng r = {0x6b0009};
    /* n_q, pos0, n_head, n_kv, head_dim */
    const int64_t cases[][5] = {
        {1, 0, 1, 1, 1},      {1, 0, 4, 2, 64},      {7, 0, 9, 3, 64},    {20, 0, 4, 2, 64},
        {1, 1, 3, 1, 17},     {5, 3, 6, 2, 80},      {3, 40, 2, 2, 96},   {33, 250, 4, 4, 128},
        {1, 300, 15, 5, 64},  {2, 1000, 8, 1, 128},  {1, 0, 2, 1, 512},   {4, 60, 2, 2, 512},
        {1, big(4095, 700), 9, 3, 64},               {big(300, 40), 0, 9, 3, 64},
        {1, big(8191, 900), 32, 8, 128},             {big(64, 9), big(4000, 300), 4, 2, 64},
        {1, 1100, 2, 1, 32},  {3, 2040, 4, 2, 16}, /* split, also with quick shapes */
        /* >= 512 (query, head) pairs over > 1024 positions: a long prefill,
           its segments merged inside each block */
        {16, 1100, 32, 8, 64}, {4, big(2100, 1030), 128, 8, 128}, {8, big(3000, 1100), 64, 64, 256},
    };
    assert_true(opg_cuda_attention_scratch_bytes(1, 1100, 2, 32) > 0);
    assert_int_equal(opg_cuda_attention_scratch_bytes(1, 1000, 2, 32), 0);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int qi = 0; qi < 2; qi++)
            check_attention(&r, cases[ci][0], cases[ci][1], (int)cases[ci][2], (int)cases[ci][3],
                            (int)cases[ci][4], qi ? 8.0f : 1.0f);
}

/* ---- trace fingerprints --------------------------------------------------------- */

static void test_fingerprint(void **state) {
    (void)state;
    tu_rng r = {0x6b000a};
    /* rows, len, stride */
    const int64_t cases[][3] = {
        {1, 1, 1},     {1, 2, 2},       {3, 5, 7},        {2, 1023, 1023}, {2, 1024, 1024},
        {5, 1025, 2000}, {4, 576, 576}, {1, 2048, 2048},  {3, 3000, 3001}, {1, 49152, 49152},
        {2, 151936, 151936}, {big(64, 8), 576, 1152},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t n = cases[ci][0], len = cases[ci][1], stride = cases[ci][2];
        size_t tot = (size_t)((n - 1) * stride + len);
        float *x = rand_floats(&r, tot, 1);
        if (ci % 2) /* NaNs of any sign and payload: each hashed as 0x7fc00000 */
            for (size_t i = ci % 7; i < tot; i += 97) {
                uint32_t w = (uint32_t)tu_u64(&r) | 0x7f800001u;
                memcpy(x + i, &w, 4);
            }
        uint64_t *want = tu_alloc((size_t)n * 8), *got = tu_alloc((size_t)n * 8 + 16);
        for (int64_t i = 0; i < n; i++) want[i] = opg_trace_fingerprint(x + i * stride, len);
        float *dx = dev_from(x, tot * 4);
        /* guard words after the n results */
        uint64_t guard[2] = {0x1122334455667788ull, 0x99aabbccddeeff00ull};
        uint64_t *dout = dev_alloc((size_t)n * 8 + 16);
        CK(cudaMemcpy(dout + n, guard, 16, cudaMemcpyHostToDevice));
        CK(cudaDeviceSynchronize()); /* as in dev_from */
        LAUNCH(opg_cuda_fingerprint(g_stream, dout, dx, n, len, stride));
        to_host(got, dout, (size_t)n * 8 + 16);
        char what[96];
        snprintf(what, sizeof what, "fingerprint n=%lld len=%lld stride=%lld", (long long)n,
                 (long long)len, (long long)stride);
        tu_assert_bytes(want, got, (size_t)n * 8, what);
        tu_assert_bytes(guard, got + n, 16, "fingerprint guard");
        dev_free(dx);
        dev_free(dout);
        tu_free(x);
        tu_free(want);
        tu_free(got);
    }
}

static int setup(void **state) {
    (void)state;
    cudaStream_t s;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) return -1;
    g_stream = (opg_cuda_stream)s;
    return 0;
}
static int teardown(void **state) {
    (void)state;
    cudaStreamDestroy((cudaStream_t)g_stream);
    return 0;
}

#endif /* OPG_HAVE_CUDA */

int main(void) {
#ifndef OPG_HAVE_CUDA
    printf("skipped: no CUDA device\n");
    fprintf(stderr, "(this build has no CUDA: nvcc was not found or -DOPG_CUDA=OFF)\n");
    return 77;
#else
    /* every differing case of a run is printed, not just the first (a run
       on a GPU is rare); each test fails at its end if any differed */
    tu_keep_going = 1;
#define T_(f) cmocka_unit_test_teardown(f, tu_check_mismatches)
    const struct CMUnitTest tests[] = {
        T_(test_matmul),  T_(test_matmul_args), T_(test_quantize_act), T_(test_rmsnorm),
        T_(test_rope),    T_(test_swiglu_add),  T_(test_softmax),      T_(test_embed),
        T_(test_argmax),  T_(test_sample),      T_(test_attention),    T_(test_fingerprint),
    };
#undef T_
    const size_t n_tests = sizeof tests / sizeof tests[0];
    int sel = tu_select_tests(tests, n_tests); /* before the device: listing needs none */
    if (sel >= 0) return sel;
    if (opg_cuda_device_count() == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    const char *q = getenv("OPG_GPU_TEST_QUICK");
    g_quick = q && *q && strcmp(q, "0") != 0;
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("device 0: %s, sm_%d%d%s\n", prop.name, prop.major, prop.minor,
               g_quick ? " (quick shapes)" : "");
    return _cmocka_run_group_tests("test_gpu_kernels", tests, n_tests, setup, teardown);
#endif
}
