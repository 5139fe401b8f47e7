/* test_gpu_model.c: the cuda backend against the cpu backend, bit for bit:
 *  - the backend itself: zeroed alloc, upload/download/copy at byte offsets
 *    (overlapping copies as memmove), views outside their buffer refused,
 *    out of device memory -> OPG_ERR_NOMEM with its message (and the backend
 *    still usable), bad device / backend names, opg_backend_new_auto;
 *  - every backend op on both backends from the same inputs at odd byte
 *    offsets, including the host arrays (positions, tokens) changing between
 *    calls, which the cuda backend mirrors in staging buffers;
 *  - the tiny generated models (tests/data/gen_tiny_models.py, every weight
 *    type, llama/qwen2/tied): logits and trace fingerprints of a prefill, a
 *    token-by-token decode and a batch of 8 sequences of other lengths;
 *  - whole jobs (opg_generate, greedy and seeded sampling): trace roots on
 *    cuda equal cpu's, alone and batched, and opg_replay on one backend
 *    confirms the other's job;
 *  - the same jobs on the real default model when present
 *    ($OPG_MODEL or models/SmolLM2-135M-Instruct.Q4_1.gguf).
 *
 * OPG_GPU_TEST_QUICK=1 keeps three of the tiny models (compute-sanitizer).
 * Without a CUDA device (or built without CUDA) it prints
 * "skipped: no CUDA device" and exits 77, which ctest reports as skipped.
 * The tiny models' directory: $OPG_TINY_DIR, else the OPG_TINY_DIR compile
 * definition (ctest runs the gen_tiny_models fixture first). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "generate.h"
#include "model.h"
#include "opg_math.h"
#include "rope.h"
#include "status.h"
#include "tokenizer.h"
#include "trace.h"

#define CHECK_OK(call)                                                                    \
    do {                                                                                  \
        opg_status c_st_ = (call);                                                        \
        if (c_st_ != OPG_OK) {                                                            \
            print_error("%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,                 \
                        opg_strerror(c_st_), opg_last_error());                           \
            fail();                                                                       \
        }                                                                                 \
    } while (0)

/* Expects status want and a message containing needle. */
#define EXPECT_FAIL(call, want, needle)                                                   \
    do {                                                                                  \
        opg_status e_st_ = (call);                                                        \
        const char *e_msg_ = opg_last_error();                                            \
        if (e_st_ != (want) || !strstr(e_msg_, needle)) {                                 \
            print_error("%s:%d: %s: expected %s with \"%s\", got %s: \"%s\"\n", __FILE__, \
                        __LINE__, #call, opg_strerror(want), needle, opg_strerror(e_st_), \
                        e_msg_);                                                          \
            fail();                                                                       \
        }                                                                                 \
    } while (0)

static opg_backend *g_cpu, *g_cuda;

/* ---- 1. the backend itself ----------------------------------------------------- */

static void test_backend_memory(void **state) {
    (void)state;
    const opg_backend_ops *o = g_cuda->ops;
    assert_string_equal(o->name, "cuda");
    /* alloc is zeroed */
    opg_buf *a = NULL, *b = NULL;
    CHECK_OK(o->alloc(g_cuda, 10000, &a));
    CHECK_OK(o->alloc(g_cuda, 4096, &b));
    uint8_t *h = tu_alloc(10000), *z = tu_alloc(10000);
    CHECK_OK(o->download(g_cuda, h, opg_view_of(a, 0), 10000));
    tu_assert_bytes(h, z, 10000, "alloc is zeroed");
    /* round trip at odd offsets */
    for (int i = 0; i < 10000; i++) h[i] = (uint8_t)(i * 7 + 3);
    CHECK_OK(o->upload(g_cuda, opg_view_of(a, 13), h, 5000));
    uint8_t *g = tu_alloc(10000);
    CHECK_OK(o->download(g_cuda, g, opg_view_of(a, 13), 5000));
    tu_assert_bytes(h, g, 5000, "upload/download at offset 13");
    CHECK_OK(o->download(g_cuda, g, opg_view_of(a, 0), 13));
    tu_assert_bytes(z, g, 13, "bytes before the upload untouched");
    /* copy between buffers, and overlapping within one (memmove) */
    CHECK_OK(o->copy(g_cuda, opg_view_of(b, 1), opg_view_of(a, 13), 4000));
    CHECK_OK(o->download(g_cuda, g, opg_view_of(b, 1), 4000));
    tu_assert_bytes(h, g, 4000, "copy");
    CHECK_OK(o->copy(g_cuda, opg_view_of(a, 113), opg_view_of(a, 13), 5000));
    CHECK_OK(o->download(g_cuda, g, opg_view_of(a, 113), 5000));
    tu_assert_bytes(h, g, 5000, "overlapping copy forward");
    CHECK_OK(o->copy(g_cuda, opg_view_of(a, 50), opg_view_of(a, 113), 5000));
    CHECK_OK(o->download(g_cuda, g, opg_view_of(a, 50), 5000));
    tu_assert_bytes(h, g, 5000, "overlapping copy backward");
    /* sync drains the queue: a copy enqueued before it is visible after */
    CHECK_OK(o->copy(g_cuda, opg_view_of(b, 0), opg_view_of(a, 0), 64));
    CHECK_OK(o->sync(g_cuda));
    CHECK_OK(g_cpu->ops->sync(g_cpu));
    /* views outside their buffer */
    EXPECT_FAIL(o->upload(g_cuda, opg_view_of(b, 4000), h, 97), OPG_ERR_ARG, "outside");
    EXPECT_FAIL(o->download(g_cuda, g, opg_view_of(b, 5000), 1), OPG_ERR_ARG, "outside");
    EXPECT_FAIL(o->copy(g_cuda, opg_view_of(b, 0), opg_view_of(a, 9000), 1001), OPG_ERR_ARG,
                "outside");
    EXPECT_FAIL(o->add(g_cuda, opg_view_of(b, 0), opg_view_of(b, 0), opg_view_of(b, 8), 1024),
                OPG_ERR_ARG, "outside");
    EXPECT_FAIL(o->matmul(g_cuda, opg_view_of(b, 0), opg_view_of(a, 0), opg_view_of(b, 0), OPG_F32,
                          opg_view_of(NULL, 0), 1, 2, 1000),
                OPG_ERR_ARG, "outside");
    /* misaligned views: a GPU faults on an f32 load at an odd offset (and the
       fault ends the context), so they are refused before any launch */
    EXPECT_FAIL(o->add(g_cuda, opg_view_of(b, 2), opg_view_of(b, 0), opg_view_of(b, 64), 16), OPG_ERR_ARG,
                "y at offset 2 is not 4-byte aligned");
    EXPECT_FAIL(o->rmsnorm(g_cuda, opg_view_of(b, 0), opg_view_of(b, 6), opg_view_of(b, 512), 1, 16, 1e-5f),
                OPG_ERR_ARG, "x at offset 6 is not 4-byte aligned");
    EXPECT_FAIL(o->matmul(g_cuda, opg_view_of(b, 0), opg_view_of(b, 64), opg_view_of(a, 1), OPG_F16,
                          opg_view_of(NULL, 0), 1, 2, 16),
                OPG_ERR_ARG, "weights at offset 1 is not 2-byte aligned");
    EXPECT_FAIL(o->matmul(g_cuda, opg_view_of(b, 0), opg_view_of(b, 64), opg_view_of(a, 2), OPG_F32,
                          opg_view_of(NULL, 0), 1, 2, 16),
                OPG_ERR_ARG, "weights at offset 2 is not 4-byte aligned");
    EXPECT_FAIL(o->embed(g_cuda, opg_view_of(b, 0), opg_view_of(a, 3), OPG_Q8_0, 32, 4, (const int32_t[1]){1}, 1),
                OPG_ERR_ARG, "table at offset 3 is not 2-byte aligned");
    uint64_t fp1;
    EXPECT_FAIL(o->fingerprint(g_cuda, &fp1, opg_view_of(b, 1), 1, 16, 16), OPG_ERR_ARG,
                "rows at offset 1 is not 4-byte aligned");
    opg_sample_params greedy = {0};
    int64_t tok1;
    EXPECT_FAIL(o->sample(g_cuda, &tok1, opg_view_of(b, 2), 16, &greedy, 0), OPG_ERR_ARG,
                "logits at offset 2 is not 4-byte aligned");
    /* out of device memory: a clear error, and the backend goes on */
    opg_buf *huge = (opg_buf *)1;
    EXPECT_FAIL(o->alloc(g_cuda, (size_t)1 << 60, &huge), OPG_ERR_NOMEM,
                "cuda backend: out of device memory allocating 1152921504606846976 bytes (free ");
    assert_null(huge);
    print_message("out-of-memory message: %s\n", opg_last_error());
    huge = (opg_buf *)1;
    EXPECT_FAIL(o->wrap_weights(g_cuda, h, (size_t)1 << 60, &huge), OPG_ERR_NOMEM,
                "out of device memory");
    assert_null(huge);
    CHECK_OK(o->upload(g_cuda, opg_view_of(b, 0), h, 64));
    CHECK_OK(o->download(g_cuda, g, opg_view_of(b, 0), 64));
    tu_assert_bytes(h, g, 64, "after out of memory");
    o->free(g_cuda, a);
    o->free(g_cuda, b);
    o->free(g_cuda, NULL);
    tu_free(h);
    tu_free(g);
    tu_free(z);
}

static void test_backend_select(void **state) {
    (void)state;
    opg_backend *be = (opg_backend *)1;
    EXPECT_FAIL(opg_backend_cuda_new(opg_backend_cuda_devices(), &be), OPG_ERR_ARG,
                "does not exist");
    assert_null(be);
    EXPECT_FAIL(opg_backend_cuda_new(-1, &be), OPG_ERR_ARG, "does not exist");
    const char *notice = "x";
    EXPECT_FAIL(opg_backend_new_auto("gpu", 1, &be, &notice), OPG_ERR_ARG, "auto, cpu, cuda");
    assert_null(be);
    assert_null(notice);
    EXPECT_FAIL(opg_backend_new_auto("cuda:x", 1, &be, &notice), OPG_ERR_ARG, "cuda:N");
    static const struct { const char *name, *want; } ok[] = {
        {"auto", "cuda"}, {NULL, "cuda"}, {"cuda", "cuda"}, {"cuda:0", "cuda"}, {"cpu", "cpu"}};
    for (int i = 0; i < 5; i++) {
        notice = "x";
        CHECK_OK(opg_backend_new_auto(ok[i].name, 1, &be, &notice));
        assert_string_equal(be->ops->name, ok[i].want);
        assert_null(notice); /* a device is present: no fallback */
        opg_backend_free(be);
    }
    opg_backend_free(NULL);
}

/* ---- 2. every op, cpu vs cuda ------------------------------------------------------ */

/* The same bytes in a buffer of each backend, at byte offset off. */
typedef struct {
    opg_buf *c, *g;
    size_t off, bytes;
} pair;

static pair pair_new(const void *host, size_t bytes, size_t off) {
    pair p = {NULL, NULL, off, bytes};
    CHECK_OK(g_cpu->ops->alloc(g_cpu, off + bytes + 64, &p.c));
    CHECK_OK(g_cuda->ops->alloc(g_cuda, off + bytes + 64, &p.g));
    if (host) {
        CHECK_OK(g_cpu->ops->upload(g_cpu, opg_view_of(p.c, off), host, bytes));
        CHECK_OK(g_cuda->ops->upload(g_cuda, opg_view_of(p.g, off), host, bytes));
    }
    return p;
}
static opg_view vc(const pair *p) { return opg_view_of(p->c, p->off); }
static opg_view vg(const pair *p) { return opg_view_of(p->g, p->off); }
/* The whole buffers (guard bytes included) must agree. */
static void pair_same(const pair *p, const char *what) {
    size_t n = p->off + p->bytes + 64;
    uint8_t *a = tu_alloc(n), *b = tu_alloc(n);
    CHECK_OK(g_cpu->ops->download(g_cpu, a, opg_view_of(p->c, 0), n));
    CHECK_OK(g_cuda->ops->download(g_cuda, b, opg_view_of(p->g, 0), n));
    if (p->bytes % 4 == 0 && p->off % 4 == 0)
        tu_assert_bits((const float *)a, (const float *)b, n / 4, what);
    else
        tu_assert_bytes(a, b, n, what);
    tu_free(a);
    tu_free(b);
}
static void pair_free(pair *p) {
    g_cpu->ops->free(g_cpu, p->c);
    g_cuda->ops->free(g_cuda, p->g);
}

static float *rnd(tu_rng *r, size_t n) {
    float *x = tu_alloc(n * 4 + 4);
    tu_fill(r, x, n, -1.0f, 1.0f);
    return x;
}

static void test_backend_ops(void **state) {
    (void)state;
    tu_rng r = {0x6c0001};
    const opg_backend_ops *C = g_cpu->ops, *G = g_cuda->ops;
    const opg_view none = {NULL, 0};
    /* matmul: float and quantized weights, with and without bias, at offsets */
    {
        const int64_t M = 5, N = 37, K = 512;
        float *x = rnd(&r, (size_t)(M * K)), *bias = rnd(&r, (size_t)N);
        pair px = pair_new(x, (size_t)(M * K) * 4, 128), pb = pair_new(bias, (size_t)N * 4, 4);
        static const opg_dtype types[] = {OPG_F32, OPG_F16, OPG_Q8_0, OPG_Q4_K, OPG_Q6_K};
        for (int ti = 0; ti < 5; ti++) {
            opg_dtype t = types[ti];
            size_t wb = (size_t)N * opg_dtype_row_bytes(t, K);
            uint8_t *w = tu_alloc(wb);
            if (t == OPG_F32) tu_fill(&r, (float *)w, (size_t)(N * K), -1.0f, 1.0f);
            else if (t == OPG_F16)
                for (size_t i = 0; i < (size_t)(N * K); i++)
                    ((uint16_t *)w)[i] = opg_f32_to_f16(tu_uniform(&r, -1.0f, 1.0f));
            else {
                for (size_t i = 0; i < wb; i++) w[i] = (uint8_t)tu_u64(&r);
                size_t bb = opg_dtype_block_bytes(t);
                uint16_t s = opg_f32_to_f16(0.01f);
                for (size_t off = 0; off < wb; off += bb)
                    memcpy(w + off + (t == OPG_Q6_K ? offsetof(opg_block_q6_K, d) : 0), &s, 2);
            }
            opg_buf *wc = NULL, *wg = NULL;
            CHECK_OK(C->wrap_weights(g_cpu, w, wb, &wc));
            CHECK_OK(G->wrap_weights(g_cuda, w, wb, &wg));
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                pair py = pair_new(NULL, (size_t)(M * N) * 4, 36);
                CHECK_OK(C->matmul(g_cpu, vc(&py), vc(&px), opg_view_of(wc, 0), t,
                                   with_bias ? vc(&pb) : none, M, N, K));
                CHECK_OK(G->matmul(g_cuda, vg(&py), vg(&px), opg_view_of(wg, 0), t,
                                   with_bias ? vg(&pb) : none, M, N, K));
                char what[64];
                snprintf(what, sizeof what, "backend matmul %s bias=%d", opg_dtype_name(t),
                         with_bias);
                pair_same(&py, what);
                pair_free(&py);
            }
            C->free(g_cpu, wc);
            G->free(g_cuda, wg);
            tu_free(w);
        }
        pair_free(&px);
        pair_free(&pb);
        tu_free(x);
        tu_free(bias);
    }
    /* sample: the same token from the same logits at an offset, whatever the
     * params; growing vocabularies regrow the device scratch */
    {
        const int64_t sizes[] = {5, 1000, 49152};
        for (int si = 0; si < 3; si++) {
            const int64_t n = sizes[si];
            float *x = rnd(&r, (size_t)n);
            if (n > 10) x[3] = x[7] = NAN;
            pair pl = pair_new(x, (size_t)n * 4, 20);
            const opg_sample_params ps[] = {
                {0.0f, 0, 0.0f, 1}, {0.8f, 40, 0.9f, 2}, {1.0f, 0, 0.0f, 3}, {1.2f, 0, 0.5f, 4}};
            for (int pi = 0; pi < 4; pi++)
                for (uint64_t step = 0; step < 4; step++) {
                    int64_t tc = -7, tg = -8;
                    CHECK_OK(C->sample(g_cpu, &tc, vc(&pl), n, &ps[pi], step));
                    CHECK_OK(G->sample(g_cuda, &tg, vg(&pl), n, &ps[pi], step));
                    assert_true(tc >= 0 && tc < n);
                    if (tg != tc) {
                        print_error("sample n=%lld params %d step %llu: cuda %lld, cpu %lld\n", (long long)n, pi,
                                    (unsigned long long)step, (long long)tg, (long long)tc);
                        tu_mismatch();
                    }
                }
            EXPECT_FAIL(G->sample(g_cuda, (int64_t[1]){0}, vg(&pl), n + 100, &ps[1], 0), OPG_ERR_ARG,
                        "outside");
            EXPECT_FAIL(C->sample(g_cpu, (int64_t[1]){0}, vc(&pl), n + 100, &ps[1], 0), OPG_ERR_ARG,
                        "outside");
            pair_free(&pl);
            tu_free(x);
        }
    }
    /* rmsnorm (also in place), swiglu, add */
    {
        const int64_t M = 3, D = 576, n = M * D;
        float *x = rnd(&r, (size_t)n), *w = rnd(&r, (size_t)D), *u = rnd(&r, (size_t)n);
        pair px = pair_new(x, (size_t)n * 4, 8), pw = pair_new(w, (size_t)D * 4, 0),
             pu = pair_new(u, (size_t)n * 4, 64), py = pair_new(NULL, (size_t)n * 4, 4);
        CHECK_OK(C->rmsnorm(g_cpu, vc(&py), vc(&px), vc(&pw), M, D, 1e-5f));
        CHECK_OK(G->rmsnorm(g_cuda, vg(&py), vg(&px), vg(&pw), M, D, 1e-5f));
        pair_same(&py, "backend rmsnorm");
        CHECK_OK(C->rmsnorm(g_cpu, vc(&px), vc(&px), vc(&pw), M, D, 1e-6f));
        CHECK_OK(G->rmsnorm(g_cuda, vg(&px), vg(&px), vg(&pw), M, D, 1e-6f));
        pair_same(&px, "backend rmsnorm in place");
        CHECK_OK(C->swiglu(g_cpu, vc(&py), vc(&px), vc(&pu), n));
        CHECK_OK(G->swiglu(g_cuda, vg(&py), vg(&px), vg(&pu), n));
        pair_same(&py, "backend swiglu");
        CHECK_OK(C->add(g_cpu, vc(&px), vc(&px), vc(&py), n));
        CHECK_OK(G->add(g_cuda, vg(&px), vg(&px), vg(&py), n));
        pair_same(&px, "backend add in place");
        pair_free(&px);
        pair_free(&pw);
        pair_free(&pu);
        pair_free(&py);
        tu_free(x);
        tu_free(w);
        tu_free(u);
    }
    /* rope with positions and frequencies that change, repeat and change back
     * (the cuda backend uploads them only when they differ) */
    {
        const int64_t T = 6;
        const int H = 4, hd = 64;
        size_t n = (size_t)T * H * hd;
        float *x = rnd(&r, n);
        pair px = pair_new(x, n * 4, 40);
        /* f1/f3 and p1/p4 differ only after their first element */
        double f1[32], f2[16], f3[32];
        opg_rope_freqs(f1, 64, 10000.0);
        opg_rope_freqs(f2, 32, 500000.0);
        opg_rope_freqs(f3, 64, 500000.0);
        int32_t p1[6] = {0, 1, 2, 3, 4, 5}, p2[6] = {9, 10, 11, 12, 13, 14};
        int32_t p3[3] = {7, 100000, 3}, p4[6] = {0, 1, 2, 3, 4, 77};
        /* differs from p1 in its very last byte only (little endian) */
        int32_t p5[6] = {0, 1, 2, 3, 4, 5 + (1 << 24)};
        struct { int64_t t; const int32_t *pos; int nd; const double *f; opg_rope_mode m; } calls[] = {
            {6, p1, 64, f1, OPG_ROPE_NORMAL}, {6, p1, 64, f1, OPG_ROPE_NORMAL},
            {6, p2, 64, f1, OPG_ROPE_NEOX},   {3, p3, 32, f2, OPG_ROPE_NORMAL},
            {6, p1, 64, f1, OPG_ROPE_NEOX},   {6, p2, 32, f2, OPG_ROPE_NEOX},
            {6, p4, 64, f1, OPG_ROPE_NORMAL}, {6, p4, 64, f3, OPG_ROPE_NORMAL},
            {6, p1, 64, f3, OPG_ROPE_NORMAL}, {6, p1, 64, f1, OPG_ROPE_NORMAL},
            {6, p5, 64, f1, OPG_ROPE_NORMAL}, {6, p1, 64, f1, OPG_ROPE_NORMAL},
            {6, p1, 63, f1, OPG_ROPE_NORMAL}, /* odd n_dims: unchanged */
        };
        for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
            CHECK_OK(C->rope(g_cpu, vc(&px), calls[i].t, calls[i].pos, H, hd, calls[i].nd,
                             calls[i].f, calls[i].m));
            /* the host arrays are copies, changed after use on the cuda side */
            int32_t pos[6];
            double fr[32];
            memcpy(pos, calls[i].pos, (size_t)calls[i].t * 4);
            memcpy(fr, calls[i].f, (size_t)(calls[i].nd / 2) * 8);
            CHECK_OK(G->rope(g_cuda, vg(&px), calls[i].t, pos, H, hd, calls[i].nd, fr,
                             calls[i].m));
            memset(pos, 0x55, sizeof pos);
            memset(fr, 0x55, sizeof fr);
            char what[64];
            snprintf(what, sizeof what, "backend rope call %zu", i);
            pair_same(&px, what);
        }
        pair_free(&px);
        tu_free(x);
    }
    /* attention over a cache at an offset, decode steps after a prefill, and
     * past the first 1024-key segment (the cuda backend's split path, whose
     * segment states live in the backend's scratch) */
    {
        const int H = 6, KV = 2, hd = 64;
        const int64_t ctx = 1100, qrow = H * hd, kvrow = KV * hd;
        float *k = rnd(&r, (size_t)(ctx * kvrow)), *v = rnd(&r, (size_t)(ctx * kvrow));
        float *q = rnd(&r, (size_t)(ctx * qrow));
        pair pk = pair_new(k, (size_t)(ctx * kvrow) * 4, 256), pv = pair_new(v, (size_t)(ctx * kvrow) * 4, 0);
        pair pq = pair_new(q, (size_t)(ctx * qrow) * 4, 12), po = pair_new(NULL, (size_t)(ctx * qrow) * 4, 0);
        const int64_t steps[][2] = {{0, 17}, {17, 1}, {18, 1}, {19, 21}, {1090, 1}, {1091, 9}};
        for (int s = 0; s < 6; s++) {
            int64_t p0 = steps[s][0], nq = steps[s][1];
            size_t qo = (size_t)(p0 * qrow) * 4;
            CHECK_OK(C->attention(g_cpu, opg_view_of(po.c, qo), opg_view_of(pq.c, pq.off + qo),
                                  vc(&pk), vc(&pv), nq, p0, H, KV, hd, 0.125f));
            CHECK_OK(G->attention(g_cuda, opg_view_of(po.g, qo), opg_view_of(pq.g, pq.off + qo),
                                  vg(&pk), vg(&pv), nq, p0, H, KV, hd, 0.125f));
        }
        pair_same(&po, "backend attention");
        pair_free(&pk);
        pair_free(&pv);
        pair_free(&pq);
        pair_free(&po);
        tu_free(k);
        tu_free(v);
        tu_free(q);
    }
    /* embedding with token lists that change between calls; bad ids refused */
    {
        const int64_t V = 50, dim = 256;
        size_t tb = (size_t)V * opg_dtype_row_bytes(OPG_Q8_0, dim);
        uint8_t *table = tu_alloc(tb);
        for (size_t i = 0; i < tb; i++) table[i] = (uint8_t)tu_u64(&r);
        uint16_t s = opg_f32_to_f16(0.02f);
        for (size_t off = 0; off < tb; off += sizeof(opg_block_q8_0)) memcpy(table + off, &s, 2);
        opg_buf *tc = NULL, *tg = NULL;
        CHECK_OK(C->wrap_weights(g_cpu, table, tb, &tc));
        CHECK_OK(G->wrap_weights(g_cuda, table, tb, &tg));
        pair po = pair_new(NULL, (size_t)(8 * dim) * 4, 20);
        int32_t t1[8] = {0, 49, 3, 3, 17, 1, 2, 48}, t2[8] = {5, 5, 5, 5, 5, 5, 5, 5};
        int32_t t3[8] = {0, 49, 3, 3, 17, 1, 2, 47}; /* t1 but the last */
        const int32_t *lists[6] = {t1, t2, t2, t1, t3, t1};
        for (int i = 0; i < 6; i++) {
            int64_t n = i < 4 ? 8 - i : 8;
            CHECK_OK(C->embed(g_cpu, vc(&po), opg_view_of(tc, 0), OPG_Q8_0, dim, V, lists[i], n));
            CHECK_OK(G->embed(g_cuda, vg(&po), opg_view_of(tg, 0), OPG_Q8_0, dim, V, lists[i], n));
            pair_same(&po, "backend embed");
        }
        int32_t bad[2] = {1, 50};
        EXPECT_FAIL(G->embed(g_cuda, vg(&po), opg_view_of(tg, 0), OPG_Q8_0, dim, V, bad, 2),
                    OPG_ERR_ARG, "token id outside [0, 50)");
        C->free(g_cpu, tc);
        G->free(g_cuda, tg);
        pair_free(&po);
        tu_free(table);
    }
    /* fingerprints of strided rows */
    {
        const int64_t n = 3, len = 1500, stride = 1600;
        size_t tot = (size_t)((n - 1) * stride + len);
        float *x = rnd(&r, tot);
        pair px = pair_new(x, tot * 4, 44);
        uint64_t a[3], b[3];
        CHECK_OK(C->fingerprint(g_cpu, a, vc(&px), n, len, stride));
        CHECK_OK(G->fingerprint(g_cuda, b, vg(&px), n, len, stride));
        tu_assert_bytes(a, b, sizeof a, "backend fingerprint");
        for (int64_t i = 0; i < n; i++) assert_true(a[i] == opg_trace_fingerprint(x + i * stride, len));
        pair_free(&px);
        tu_free(x);
    }
}

/* ---- 3. tiny models --------------------------------------------------------------- */

static const char *tiny_dir(void) {
    const char *e = getenv("OPG_TINY_DIR");
    if (e && *e) return e;
#ifdef OPG_TINY_DIR
    return OPG_TINY_DIR;
#else
    return "tiny";
#endif
}

static const char *VARIANTS[] = {"f32",  "f16",  "bf16",      "q8_0",     "q4_0",    "q4_1",
                                 "q4_K", "q6_K", "qwen2-f32", "tied-f32", "tied-q8_0", "mixed"};
#define N_VARIANTS (int)(sizeof VARIANTS / sizeof VARIANTS[0])

/* OPG_GPU_TEST_QUICK=1 (compute-sanitizer, the ASan build of the CUDA
 * emulation): the tiny models of three weight paths only (float, Q4_1's
 * integer blocks, Q6_K's half scales). */
static int skip_variant(int vi) {
    const char *q = getenv("OPG_GPU_TEST_QUICK");
    if (!q || !*q || strcmp(q, "0") == 0) return 0;
    return strcmp(VARIANTS[vi], "f32") != 0 && strcmp(VARIANTS[vi], "q4_1") != 0 &&
           strcmp(VARIANTS[vi], "q6_K") != 0;
}

static opg_model *load_on(opg_backend *be, const char *path) {
    opg_model *m = NULL;
    opg_status st = opg_model_load(path, be, NULL, NULL, &m);
    if (st) {
        print_error("opg_model_load(%s) on %s: %s: %s\n(generate the tiny models with "
                    "tests/data/gen_tiny_models.py DIR and set OPG_TINY_DIR=DIR, or run ctest)\n",
                    path, be->ops->name, opg_strerror(st), opg_last_error());
        fail();
    }
    return m;
}

typedef struct {
    int64_t rows, V, L;
    float *logits;
    uint64_t *layer_fp, *logits_fp;
} outs;

static outs outs_new(const opg_model *m, int64_t rows) {
    const opg_hparams *hp = opg_model_hparams(m);
    outs o = {rows, hp->n_vocab, hp->n_layer, NULL, NULL, NULL};
    size_t r = (size_t)(rows ? rows : 1);
    o.logits = calloc(r * (size_t)o.V, 4);
    o.layer_fp = calloc(r * (size_t)o.L, 8);
    o.logits_fp = calloc(r, 8);
    assert_true(o.logits && o.layer_fp && o.logits_fp);
    return o;
}
static void outs_free(outs *o) {
    free(o->logits);
    free(o->layer_fp);
    free(o->logits_fp);
}
static opg_batch_seq seq_of(opg_kv *kv, const int32_t *t, int64_t n, int64_t out_from, outs *o,
                            int64_t row0) {
    opg_batch_seq s = {kv, t, n, out_from, NULL, NULL, NULL, NULL, 0, NULL};
    if (o) {
        s.logits = o->logits + row0 * o->V;
        s.layer_fp = o->layer_fp + row0 * o->L;
        s.logits_fp = o->logits_fp + row0;
    }
    return s;
}
static void outs_same(const outs *a, const outs *b, int64_t rows, const char *what) {
    char msg[192];
    /* where it first goes wrong: a layer's fingerprint names the layer */
    for (int64_t i = 0; i < rows * a->L; i++)
        if (a->layer_fp[i] != b->layer_fp[i]) {
            print_error("%s: first difference at row %lld, layer %lld of %lld\n", what, (long long)(i / a->L),
                        (long long)(i % a->L), (long long)a->L);
            break;
        }
    snprintf(msg, sizeof msg, "%s: logits", what);
    tu_assert_bits(a->logits, b->logits, (size_t)(rows * a->V), msg);
    snprintf(msg, sizeof msg, "%s: layer fingerprints", what);
    tu_assert_bytes(a->layer_fp, b->layer_fp, (size_t)(rows * a->L) * 8, msg);
    snprintf(msg, sizeof msg, "%s: logits fingerprints", what);
    tu_assert_bytes(a->logits_fp, b->logits_fp, (size_t)rows * 8, msg);
}

/* Tokens [0..n) in chunks of `chunk`, every row's outputs. */
static outs run_chunks(opg_model *m, const int32_t *tok, int64_t n, int64_t chunk) {
    outs o = outs_new(m, n);
    opg_kv *kv = NULL;
    CHECK_OK(opg_kv_new(m, n, &kv));
    for (int64_t p0 = 0; p0 < n; p0 += chunk) {
        int64_t c = n - p0 < chunk ? n - p0 : chunk;
        opg_batch_seq s = seq_of(kv, tok + p0, c, 0, &o, p0);
        CHECK_OK(opg_model_forward(m, &s, 1));
    }
    opg_kv_free(kv);
    return o;
}

#define N_SEQ 8
#define MAX_LEN 24

/* 8 sequences of other lengths, some decoding after a cached prefix, one
 * with no output; batched = 0 runs the step of each alone. */
static void run_plan(opg_model *m, int batched, int64_t V, outs o[N_SEQ]) {
    static const int64_t pre[N_SEQ] = {0, 5, 0, 0, 11, 0, 3, 0};
    static const int64_t n[N_SEQ] = {1, 1, 13, 20, 1, 7, 17, 24};
    static const int64_t of[N_SEQ] = {0, 0, 12, 0, 0, 7, 2, 23};
    tu_rng r = {0x6c0002};
    int32_t tok[N_SEQ][MAX_LEN];
    for (int s = 0; s < N_SEQ; s++)
        for (int i = 0; i < MAX_LEN; i++) tok[s][i] = tu_int(&r, 0, (int)V - 1);
    opg_kv *kv[N_SEQ];
    opg_batch_seq b[N_SEQ];
    for (int s = 0; s < N_SEQ; s++) {
        CHECK_OK(opg_kv_new(m, MAX_LEN, &kv[s]));
        if (pre[s]) {
            opg_batch_seq p = seq_of(kv[s], tok[s], pre[s], pre[s], NULL, 0);
            CHECK_OK(opg_model_forward(m, &p, 1));
        }
        o[s] = outs_new(m, n[s] - of[s]);
        b[s] = seq_of(kv[s], tok[s] + pre[s], n[s], of[s], &o[s], 0);
    }
    if (batched) CHECK_OK(opg_model_forward(m, b, N_SEQ));
    else
        for (int s = 0; s < N_SEQ; s++) CHECK_OK(opg_model_forward(m, &b[s], 1));
    for (int s = 0; s < N_SEQ; s++) opg_kv_free(kv[s]);
}

static void test_tiny_forward(void **state) {
    (void)state;
    static const int64_t n_out[N_SEQ] = {1, 1, 1, 20, 1, 0, 15, 1};
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        if (skip_variant(vi)) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/tiny-%s.gguf", tiny_dir(), VARIANTS[vi]);
        opg_model *mc = load_on(g_cpu, path), *mg = load_on(g_cuda, path);
        const int64_t V = opg_model_hparams(mc)->n_vocab, T = 20;
        int32_t tok[20];
        tu_rng r = {0x6c0003 + (uint64_t)vi};
        for (int i = 0; i < T; i++) tok[i] = tu_int(&r, 0, (int)V - 1);
        /* prefill on cpu is the baseline; cuda prefill, decode and chunks */
        outs base = run_chunks(mc, tok, T, T);
        static const int64_t chunks[] = {20, 1, 7};
        for (int ci = 0; ci < 3; ci++) {
            outs o = run_chunks(mg, tok, T, chunks[ci]);
            char what[96];
            snprintf(what, sizeof what, "%s: cuda chunk %lld vs cpu prefill", VARIANTS[vi],
                     (long long)chunks[ci]);
            outs_same(&base, &o, T, what);
            outs_free(&o);
        }
        outs_free(&base);
        /* 8 sequences: cpu each alone vs cuda batched and alone */
        outs oc[N_SEQ], og[N_SEQ];
        run_plan(mc, 0, V, oc);
        for (int batched = 1; batched >= 0; batched--) {
            run_plan(mg, batched, V, og);
            for (int s = 0; s < N_SEQ; s++) {
                char what[96];
                snprintf(what, sizeof what, "%s: seq %d, cuda %s vs cpu alone", VARIANTS[vi], s,
                         batched ? "batched" : "alone");
                outs_same(&oc[s], &og[s], n_out[s], what);
                outs_free(&og[s]);
            }
        }
        for (int s = 0; s < N_SEQ; s++) outs_free(&oc[s]);
        opg_model_free(mg);
        opg_model_free(mc);
    }
}

/* ---- 4. whole jobs: trace roots ------------------------------------------------------ */

#define N_JOBS 4

/* Runs the jobs on m, alone (one opg_generate each) or together: res[0..n)
 * (the caller clears them) and their roots. */
static void run_jobs(opg_model *m, const opg_gen_request *q, int n, int batched, opg_gen_result res[],
                     uint8_t roots[][32]) {
    memset(res, 0, (size_t)n * sizeof *res);
    if (batched) {
        opg_gen_options opt = {0};
        opt.step_tokens = 7; /* prefill in chunks, next to decoding neighbours */
        CHECK_OK(opg_generate(m, q, n, res, &opt));
    } else {
        for (int i = 0; i < n; i++) CHECK_OK(opg_generate(m, &q[i], 1, &res[i], NULL));
    }
    for (int i = 0; i < n; i++) {
        assert_true(res[i].n_tokens > 0);
        opg_trace_root(res[i].trace, roots[i]);
    }
}

static void hex_of(char out[65], const uint8_t r[32]) { opg_hex(out, r, 32); }

/* Where a job's trace on cuda first departs from the cpu's: the entry (a
 * position) and the layer, which names the op to look at. */
static void say_first_diff(const char *name, int i, const char *run, const opg_trace *cpu, const opg_trace *cuda) {
    int layer = -2;
    int64_t e = opg_trace_first_diff(cpu, cuda, &layer);
    if (e < 0) return;
    int L = opg_trace_layers(cpu);
    char where[48];
    if (layer == L) snprintf(where, sizeof where, "the logits");
    else if (layer < 0) snprintf(where, sizeof where, "the token or position");
    else snprintf(where, sizeof where, "layer %d of %d", layer, L);
    print_error("%s job %d, cuda %s vs cpu: first difference at trace entry %lld, %s\n", name, i, run,
                (long long)e, where);
}

/* The jobs' roots on cpu alone == cuda alone == cuda batched; cpu's job 0 is
 * confirmed by teacher-forced replay on cuda and cuda's by replay on cpu. */
static void check_jobs(opg_model *mc, opg_model *mg, const opg_gen_request *q, int n,
                       const char *name) {
    uint8_t rc[N_JOBS][32], ra[N_JOBS][32], rb[N_JOBS][32];
    opg_gen_result res_c[N_JOBS], res_a[N_JOBS], res_b[N_JOBS];
    run_jobs(mc, q, n, 0, res_c, rc);
    run_jobs(mg, q, n, 0, res_a, ra);
    run_jobs(mg, q, n, 1, res_b, rb);
    for (int i = 0; i < n; i++) {
        char h1[65], h2[65], h3[65];
        hex_of(h1, rc[i]);
        hex_of(h2, ra[i]);
        hex_of(h3, rb[i]);
        if (i == 0) print_message("%-10s job 0 root %s (cpu) %s (cuda)\n", name, h1, h2);
        if (memcmp(rc[i], ra[i], 32) || memcmp(rc[i], rb[i], 32)) {
            print_error("%s job %d: trace roots differ: cpu alone %s, cuda alone %s, cuda "
                        "batched %s\n", name, i, h1, h2, h3);
            say_first_diff(name, i, "alone", res_c[i].trace, res_a[i].trace);
            say_first_diff(name, i, "batched", res_c[i].trace, res_b[i].trace);
            tu_mismatch();
        }
    }
    opg_gen_result job_c = res_c[0], job_g = res_a[0];
    for (int i = 0; i < n; i++) {
        if (i) opg_gen_result_clear(&res_c[i]);
        if (i) opg_gen_result_clear(&res_a[i]);
        opg_gen_result_clear(&res_b[i]);
    }
    struct { opg_model *m; opg_gen_result *job; const char *what; } rp[2] = {
        {mg, &job_c, "cpu job replayed on cuda"}, {mc, &job_g, "cuda job replayed on cpu"}};
    for (int k = 0; k < 2; k++) {
        opg_trace *t = NULL;
        int64_t bad = 7;
        CHECK_OK(opg_replay(rp[k].m, q[0].prompt, q[0].n_prompt, rp[k].job->tokens,
                            rp[k].job->n_tokens, &q[0].sampling, 5, &t, &bad));
        uint8_t root[32], want[32];
        opg_trace_root(t, root);
        opg_trace_root(rp[k].job->trace, want);
        int layer = -2;
        int64_t diff = opg_trace_first_diff(rp[k].job->trace, t, &layer);
        if (bad != -1 || diff != -1 || memcmp(root, want, 32)) {
            print_error("%s %s: first bad token %lld, first difference at %lld layer %d\n", name,
                        rp[k].what, (long long)bad, (long long)diff, layer);
            tu_mismatch();
        }
        opg_trace_free(t);
    }
    opg_gen_result_clear(&job_c);
    opg_gen_result_clear(&job_g);
}

/* Job k: a prompt of its own length; even jobs greedy, odd ones sampled. */
static void make_jobs(opg_gen_request q[N_JOBS], int32_t prompts[N_JOBS][40], int64_t V,
                      int64_t max_tokens) {
    tu_rng r = {0x6c0004};
    static const int64_t len[N_JOBS] = {9, 1, 23, 14};
    memset(q, 0, N_JOBS * sizeof *q);
    for (int k = 0; k < N_JOBS; k++) {
        for (int i = 0; i < len[k]; i++) prompts[k][i] = tu_int(&r, 0, (int)V - 1);
        q[k].prompt = prompts[k];
        q[k].n_prompt = len[k];
        q[k].max_tokens = max_tokens + k;
        q[k].sampling.temperature = k % 2 ? 0.9f : 0.0f;
        q[k].sampling.top_k = k == 3 ? 0 : 40;
        q[k].sampling.top_p = k == 1 ? 0.9f : 1.0f;
        q[k].sampling.seed = 77 + (uint64_t)k;
    }
}

static void test_tiny_jobs(void **state) {
    (void)state;
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        if (skip_variant(vi)) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/tiny-%s.gguf", tiny_dir(), VARIANTS[vi]);
        opg_model *mc = load_on(g_cpu, path), *mg = load_on(g_cuda, path);
        opg_gen_request q[N_JOBS];
        int32_t prompts[N_JOBS][40];
        make_jobs(q, prompts, opg_model_hparams(mc)->n_vocab, 12);
        check_jobs(mc, mg, q, N_JOBS, VARIANTS[vi]);
        opg_model_free(mg);
        opg_model_free(mc);
    }
}

/* ---- 5. the real model ----------------------------------------------------------------- */

static void test_real_model(void **state) {
    (void)state;
    const char *path = getenv("OPG_MODEL");
    char def[1024];
    if (!path || !*path) {
        snprintf(def, sizeof def, "%s/../../models/SmolLM2-135M-Instruct.Q4_1.gguf",
                 tu_data_dir());
        path = def;
    }
    if (access(path, R_OK) != 0) {
        print_message("note: %s not present (scripts/fetch-model.sh fetches it): real-model "
                      "part not run\n", path);
        return;
    }
    opg_model *mc = load_on(g_cpu, path), *mg = load_on(g_cuda, path);
    opg_tokenizer *tok = NULL;
    CHECK_OK(opg_tokenizer_from_gguf(opg_model_gguf(mc), &tok));
    static const char *texts[N_JOBS] = {
        "The capital of France is", "Once upon a time", "1, 2, 3, 4,",
        "Explain in one paragraph why the sky is blue."};
    int32_t ids[N_JOBS][64];
    opg_gen_request q[N_JOBS];
    memset(q, 0, sizeof q);
    for (int k = 0; k < N_JOBS; k++) {
        size_t n = 0;
        CHECK_OK(opg_tokenizer_encode(tok, texts[k], strlen(texts[k]), OPG_TOK_ADD_SPECIAL, ids[k],
                                      64, &n));
        q[k].prompt = ids[k];
        q[k].n_prompt = (int64_t)n;
        q[k].max_tokens = 24;
        q[k].sampling.temperature = k % 2 ? 0.8f : 0.0f;
        q[k].sampling.top_k = 40;
        q[k].sampling.top_p = 0.95f;
        q[k].sampling.seed = 7 + (uint64_t)k;
    }
    check_jobs(mc, mg, q, N_JOBS, "SmolLM2");
    opg_tokenizer_free(tok);
    opg_model_free(mg);
    opg_model_free(mc);
}

#ifdef OPG_CUDA_MOCK
/* tests/cuda_mock.c: from now on the device "faulted" (sticky), or cleared. */
void cuda_mock_fault(int on);

/* An asynchronous device fault (only the mock can make one on demand):
 * enqueueing may succeed (the fault is not seen yet: the mock's launchers)
 * or report it (a real launcher's cudaGetLastError: the emulated kernels);
 * every synchronizing call then reports OPG_ERR_STATE with the device's
 * message, and none hands out stale data. */
static void test_async_fault(void **state) {
    (void)state;
    opg_backend *be = NULL;
    CHECK_OK(opg_backend_cuda_new(0, &be));
    const opg_backend_ops *o = be->ops;
    opg_buf *b = NULL;
    CHECK_OK(o->alloc(be, 4096, &b));
    float h[4] = {1, 2, 3, 4}, got[4] = {0};
    CHECK_OK(o->upload(be, opg_view_of(b, 0), h, sizeof h));
    cuda_mock_fault(1);
    opg_status st = o->add(be, opg_view_of(b, 16), opg_view_of(b, 0), opg_view_of(b, 0), 4);
#ifdef OPG_CUDA_MOCK_EMU
    if (st != OPG_OK)
        EXPECT_FAIL(st, OPG_ERR_STATE, "illegal memory access");
#else
    CHECK_OK(st);
#endif
    EXPECT_FAIL(o->sync(be), OPG_ERR_STATE, "illegal memory access");
    EXPECT_FAIL(o->download(be, got, opg_view_of(b, 16), sizeof got), OPG_ERR_STATE,
                "an earlier op may have failed on the device");
    uint64_t fp = 0;
    EXPECT_FAIL(o->fingerprint(be, &fp, opg_view_of(b, 0), 1, 4, 4), OPG_ERR_STATE, "fingerprint");
    int64_t tok = 7;
    opg_sample_params sp = {0.0f, 0, 0.0f, 1};
    EXPECT_FAIL(o->sample(be, &tok, opg_view_of(b, 0), 4, &sp, 0), OPG_ERR_STATE, "sample");
    EXPECT_FAIL(o->upload(be, opg_view_of(b, 0), h, sizeof h), OPG_ERR_STATE, "upload");
    cuda_mock_fault(0);
    o->free(be, b);
    opg_backend_free(be);
}
#endif

static int setup(void **state) {
    (void)state;
    if (opg_backend_cpu_new(2, &g_cpu) != OPG_OK) return -1;
    if (opg_backend_cuda_new(0, &g_cuda) != OPG_OK) {
        print_error("opg_backend_cuda_new(0): %s\n", opg_last_error());
        return -1;
    }
    return 0;
}
static int teardown(void **state) {
    (void)state;
    opg_backend_free(g_cuda);
    opg_backend_free(g_cpu);
    return 0;
}

int main(void) {
    /* every differing case of a run is printed, not just the first (a run
       on a GPU is rare); each test fails at its end if any differed */
    tu_keep_going = 1;
#define T_(f) cmocka_unit_test_teardown(f, tu_check_mismatches)
    const struct CMUnitTest tests[] = {
        T_(test_backend_memory), T_(test_backend_select), T_(test_backend_ops),
        T_(test_tiny_forward),   T_(test_tiny_jobs),      T_(test_real_model),
#ifdef OPG_CUDA_MOCK
        T_(test_async_fault),
#endif
    };
#undef T_
    const size_t n_tests = sizeof tests / sizeof tests[0];
    int sel = tu_select_tests(tests, n_tests); /* before the device: listing needs none */
    if (sel >= 0) return sel;
    if (opg_backend_cuda_devices() == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    return _cmocka_run_group_tests("test_gpu_model", tests, n_tests, setup, teardown);
}
