/* backend_cpu.c: the cpu backend: host buffers and the kernels/ CPU paths
 * (AVX2 when present, the C reference otherwise; same bits either way). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "attention.h"
#include "backend.h"
#include "cpu.h"
#include "embed.h"
#include "matmul.h"
#include "pool.h"
#include "quant.h"
#include "rmsnorm.h"
#include "sample.h"
#include "trace.h"

struct opg_buf {
    void *data;
    size_t bytes;
    int owned; /* 0 for wrapped host weights */
};

typedef struct {
    opg_backend base;
    opg_pool *pool;
    void *sample_scratch; /* opg_sample_ref's, grown on demand */
    size_t sample_cap;
} cpu_backend;

static opg_pool *pool_of(opg_backend *be) { return ((cpu_backend *)be)->pool; }
static void *ptr(opg_view v) { return v.buf ? (char *)v.buf->data + v.off : NULL; }

static void cpu_destroy(opg_backend *be) {
    cpu_backend *c = (cpu_backend *)be;
    opg_pool_free(c->pool);
    free(c->sample_scratch);
    free(c);
}

/* An owned buffer of bytes (64-byte aligned, rounded up to 64), zeroed or not. */
static opg_status new_buf(size_t bytes, int zero, opg_buf **out) {
    *out = NULL;
    opg_buf *b = calloc(1, sizeof *b);
    if (!b) return opg__fail(OPG_ERR_NOMEM, "cpu backend: out of memory");
    size_t rounded = (bytes + 63) & ~(size_t)63;
    b->data = aligned_alloc(64, rounded ? rounded : 64);
    if (!b->data) {
        free(b);
        return opg__fail(OPG_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    }
    if (zero) memset(b->data, 0, rounded);
    b->bytes = bytes;
    b->owned = 1;
    *out = b;
    return OPG_OK;
}

static opg_status cpu_alloc(opg_backend *be, size_t bytes, opg_buf **out) {
    (void)be;
    return new_buf(bytes, 1, out);
}

static void cpu_free(opg_backend *be, opg_buf *b) {
    (void)be;
    if (!b) return;
    if (b->owned) free(b->data);
    free(b);
}

static opg_status check_range(opg_view v, size_t bytes, const char *what) {
    if (!v.buf || v.off > v.buf->bytes || bytes > v.buf->bytes - v.off)
        return opg__fail(OPG_ERR_ARG, "cpu backend: %s of %zu bytes at %zu outside its buffer",
                         what, bytes, v.off);
    return OPG_OK;
}

static opg_status cpu_upload(opg_backend *be, opg_view dst, const void *src, size_t bytes) {
    (void)be;
    opg_status st = check_range(dst, bytes, "upload");
    if (st) return st;
    memcpy(ptr(dst), src, bytes);
    return OPG_OK;
}

static opg_status cpu_download(opg_backend *be, void *dst, opg_view src, size_t bytes) {
    (void)be;
    opg_status st = check_range(src, bytes, "download");
    if (st) return st;
    memcpy(dst, ptr(src), bytes);
    return OPG_OK;
}

static opg_status cpu_wrap(opg_backend *be, const void *host, size_t bytes, opg_buf **out) {
    (void)be;
    opg_buf *b = calloc(1, sizeof *b);
    if (!b) return opg__fail(OPG_ERR_NOMEM, "cpu backend: out of memory");
    b->data = (void *)host; /* read only by every op that takes weights */
    b->bytes = bytes;
    *out = b;
    return OPG_OK;
}

/* Quantized matrices in whole groups of 8 rows get the 8-row interleaved
 * layout (kernels/quant.h) when the AVX2 kernel runs: one stream instead of 8,
 * same bits (the scalar path gains nothing from it: it unpacks every block).
 * Q8_0's GEMM (M > 1) is ~10% slower packed, its GEMV 20-45% faster
 * (docs/benchmarks.md); decode is what a GEMV-bound step waits on.
 * A copy (the model then drops the file's pages; a tied output's copy
 * serves embed too, kernels/embed.h); OPG_CPU_REPACK=0 in the environment
 * keeps the file's layout, for less memory. */
static opg_status cpu_wrap_matrix(opg_backend *be, const void *host, size_t bytes, opg_dtype wt,
                                  int64_t N, int64_t K, opg_buf **out, opg_dtype *out_wt) {
    *out_wt = wt;
    const char *env = getenv("OPG_CPU_REPACK");
    if ((env && strcmp(env, "0") == 0) || opg_cpu_get_level() != OPG_CPU_AVX2 ||
        !opg_dtype_is_quant(wt) || opg_dtype_is_x8(wt) || N % 8 != 0 ||
        K % opg_dtype_block_elems(wt) != 0 ||
        opg_dtype_row_bytes(wt, K) * (size_t)N != bytes)
        return cpu_wrap(be, host, bytes, out);
    opg_status st = new_buf(bytes, 0, out); /* every byte is written by the packing */
    if (st) return st;
    if (opg_pack_x8((*out)->data, host, wt, N, K) != 0) { /* cannot happen: checked above */
        cpu_free(be, *out);
        *out = NULL;
        return opg__fail(OPG_ERR_ARG, "cpu backend: cannot pack a %s matrix %lldx%lld", opg_dtype_name(wt),
                         (long long)N, (long long)K);
    }
    *out_wt = opg_dtype_x8(wt);
    return OPG_OK;
}

static opg_status cpu_matmul(opg_backend *be, opg_view y, opg_view x, opg_view w, opg_dtype wt,
                             opg_view bias, int64_t M, int64_t N, int64_t K) {
    if (opg_matmul(pool_of(be), ptr(y), ptr(x), ptr(w), wt, ptr(bias), M, N, K) != 0)
        return opg__fail(OPG_ERR_ARG, "matmul: unsupported weight type %s or shape %lldx%lldx%lld",
                         opg_dtype_name(wt), (long long)M, (long long)N, (long long)K);
    return OPG_OK;
}

static opg_status cpu_rmsnorm(opg_backend *be, opg_view y, opg_view x, opg_view w, int64_t M,
                              int64_t D, float eps) {
    opg_rmsnorm(pool_of(be), ptr(y), ptr(x), ptr(w), M, D, eps);
    return OPG_OK;
}

static opg_status cpu_rope(opg_backend *be, opg_view x, int64_t n_tok, const int32_t *pos,
                           int n_heads, int head_dim, int n_dims, const double *inv_freq,
                           opg_rope_mode mode) {
    opg_rope(pool_of(be), ptr(x), n_tok, pos, n_heads, head_dim, n_dims, inv_freq, mode);
    return OPG_OK;
}

static opg_status cpu_attention(opg_backend *be, opg_view out, opg_view q, opg_view k,
                                opg_view v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                                int head_dim, float scale) {
    opg_attention(pool_of(be), ptr(out), ptr(q), ptr(k), ptr(v), n_q, pos0, n_head, n_kv,
                  head_dim, scale);
    return OPG_OK;
}

static opg_status cpu_swiglu(opg_backend *be, opg_view out, opg_view gate, opg_view up,
                             int64_t n) {
    opg_swiglu(pool_of(be), ptr(out), ptr(gate), ptr(up), n);
    return OPG_OK;
}

static opg_status cpu_add(opg_backend *be, opg_view y, opg_view a, opg_view b, int64_t n) {
    (void)be;
    float *py = ptr(y);
    const float *pa = ptr(a), *pb = ptr(b);
    for (int64_t i = 0; i < n; i++) py[i] = pa[i] + pb[i];
    return OPG_OK;
}

static opg_status cpu_embed(opg_backend *be, opg_view out, opg_view table, opg_dtype t,
                            int64_t dim, int64_t n_vocab, const int32_t *tokens, int64_t n) {
    (void)be;
    if (opg_embed_ref(ptr(out), ptr(table), t, dim, n_vocab, tokens, n) != 0)
        return opg__fail(OPG_ERR_ARG, "embedding: token id outside [0, %lld) or bad table type",
                         (long long)n_vocab);
    return OPG_OK;
}

static opg_status cpu_copy(opg_backend *be, opg_view dst, opg_view src, size_t bytes) {
    (void)be;
    memmove(ptr(dst), ptr(src), bytes);
    return OPG_OK;
}

static opg_status cpu_fingerprint(opg_backend *be, uint64_t *out, opg_view x, int64_t n,
                                  int64_t len, int64_t stride) {
    (void)be;
    const float *p = ptr(x);
    for (int64_t i = 0; i < n; i++) out[i] = opg_trace_fingerprint(p + i * stride, len);
    return OPG_OK;
}

static opg_status cpu_sample(opg_backend *be, int64_t *token, opg_view logits, int64_t n,
                             const opg_sample_params *p, uint64_t step) {
    cpu_backend *c = (cpu_backend *)be;
    *token = -1;
    if (n <= 0) return OPG_OK;
    size_t need = opg_sample_scratch_bytes(n);
    if (need == SIZE_MAX || (uint64_t)n > SIZE_MAX / sizeof(float))
        return opg__fail(OPG_ERR_ARG, "sample: %lld logits", (long long)n);
    opg_status st = check_range(logits, (size_t)n * sizeof(float), "sample logits");
    if (st) return st;
    if (need > c->sample_cap) {
        void *s = realloc(c->sample_scratch, need);
        if (!s) return opg__fail(OPG_ERR_NOMEM, "cpu backend: out of memory");
        c->sample_scratch = s;
        c->sample_cap = need;
    }
    *token = opg_sample_ref(ptr(logits), n, p, step, c->sample_scratch);
    return OPG_OK;
}

static opg_status cpu_sync(opg_backend *be) {
    (void)be;
    return OPG_OK;
}

static const opg_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .wrap_weights = cpu_wrap,
    .wrap_matrix = cpu_wrap_matrix,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .embed = cpu_embed,
    .copy = cpu_copy,
    .fingerprint = cpu_fingerprint,
    .sample = cpu_sample,
    .sync = cpu_sync,
};

opg_status opg_backend_cpu_new(int n_threads, opg_backend **out) {
    *out = NULL;
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return opg__fail(OPG_ERR_NOMEM, "cpu backend: out of memory");
    c->pool = opg_pool_new(n_threads);
    if (!c->pool) {
        free(c);
        return opg__fail(OPG_ERR_NOMEM, "cpu backend: cannot start %d threads", n_threads);
    }
    c->base.ops = &cpu_ops;
    *out = &c->base;
    return OPG_OK;
}

void opg_backend_free(opg_backend *be) {
    if (be) be->ops->destroy(be);
}
