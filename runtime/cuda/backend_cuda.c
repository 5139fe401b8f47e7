/* backend_cuda.c: the cuda backend (backend.h): device buffers, weights
 * uploaded once, one stream per backend, and the CUDA launchers of
 * kernels/cuda/opg_cuda.h behind the same ops as the cpu backend, with the
 * same bits (docs/determinism.md). Built without CUDA (OPG_HAVE_CUDA unset)
 * only the entry points remain and say so.
 *
 * Memory: every opg_buf, KV cache and scratch area comes from the backend's
 * own CUDA memory pool (cudaMemPoolCreate, stream-ordered
 * cudaMallocFromPoolAsync/cudaFreeAsync on the backend's stream, release
 * threshold unlimited): freed memory stays with the backend and is handed out
 * again without a device-wide synchronization, and a free is ordered after
 * the queued kernels that still use the memory. Devices without memory pools
 * get cudaMalloc/cudaFree (after a stream synchronization).
 *
 * Host arrays the ops take (positions, RoPE frequencies, token ids) go
 * through small pinned staging buffers that remember what the device holds:
 * the positions of a forward pass are uploaded once, not twice per layer.
 *
 * Ordering: every op and copy is enqueued on the backend's stream; the stream
 * order alone makes reuse of the workspace, the staging buffers and the
 * matmul scratch safe. upload, download and fingerprint synchronize (the
 * caller's host memory is free or filled when they return), and that is where
 * an asynchronous kernel fault surfaces. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifdef OPG_HAVE_CUDA

#include <cuda_runtime_api.h>

#include "opg_cuda.h"

struct opg_buf {
    void *dev;    /* device memory */
    size_t bytes; /* as requested (the allocation is rounded up) */
};

/* A host array mirrored on the device: host is pinned and holds the bytes
 * the device copy has (len of them; 0: none yet). */
typedef struct {
    void *host, *dev;
    size_t cap, len;
    cudaEvent_t copied; /* recorded after the last copy out of host */
    int recorded;
} staged;

typedef struct {
    opg_backend base;
    int device;
    cudaMemPool_t pool; /* NULL: plain cudaMalloc */
    size_t total_mem;   /* the device's, from its properties */
    char name[256]; /* "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" */
    cudaStream_t stream;
    staged pos, freq, tok;
    void *scratch;  /* activation blocks of quantized matmuls; overlap copies; attention's
                       segment states */
    size_t scratch_cap;
    void *fp;       /* device fingerprints, uint64_t[fp_cap / 8] */
    size_t fp_cap;
    void *sample_scratch; /* opg_cuda_sample's sort and terms */
    size_t sample_cap;
    void *token;    /* device int64: the sampled id */
    size_t token_cap;
    size_t held;    /* bytes of live opg_bufs, for the out-of-memory message */
} cuda_backend;

static cuda_backend *cb(opg_backend *be) { return (cuda_backend *)be; }
static void *ptr(opg_view v) { return v.buf ? (char *)v.buf->dev + v.off : NULL; }

/* A failed CUDA runtime call: clears the error where CUDA allows (a sticky
 * fault stays) and records what failed. */
static opg_status cuda_fail(cudaError_t e, const char *what) {
    (void)cudaGetLastError();
    return opg__fail(OPG_ERR_STATE, "cuda backend: %s: %s (%s)", what, cudaGetErrorString(e),
                     cudaGetErrorName(e));
}
#define CU(call, what)                                                 \
    do {                                                               \
        cudaError_t cu_e_ = (call);                                    \
        if (cu_e_ != cudaSuccess) return cuda_fail(cu_e_, what);       \
    } while (0)

/* A launcher's return code as an opg_status with its message. */
static opg_status launched(int rc, const char *op) {
    if (rc == OPG_CUDA_OK) return OPG_OK;
    opg_status st = rc == OPG_CUDA_ERR_ARG     ? OPG_ERR_ARG
                    : rc == OPG_CUDA_ERR_NOMEM ? OPG_ERR_NOMEM
                                               : OPG_ERR_STATE;
    return opg__fail(st, "cuda backend: %s: %s", op, opg_cuda_last_error());
}

/* Makes this backend's device current on the calling thread (a no-op when it
 * already is; the CUDA current device is per thread). */
static opg_status enter(cuda_backend *c) {
    CU(cudaSetDevice(c->device), "cudaSetDevice");
    return OPG_OK;
}

/* Device memory from the backend's pool (or cudaMalloc), usable by the
 * backend's stream from now on, with the out-of-memory message of backend.h. */
static opg_status dev_alloc(cuda_backend *c, size_t bytes, void **out) {
    *out = NULL;
    size_t rounded = (bytes + 255) & ~(size_t)255;
    if (rounded < bytes) rounded = bytes; /* wrapped: let CUDA refuse it */
    if (!rounded) rounded = 256;
    /* more than the device has is out of memory whatever the allocator would
     * call it (a pool may answer "invalid value") */
    const int too_big = c->total_mem && rounded > c->total_mem;
    cudaError_t e = too_big ? cudaErrorMemoryAllocation
                    : c->pool ? cudaMallocFromPoolAsync(out, rounded, c->pool, c->stream)
                              : cudaMalloc(out, rounded);
    if (e == cudaErrorMemoryAllocation && c->pool && !too_big) {
        /* the pool keeps what was freed: hand its unused memory back to the
         * device (others may hold some of it now) and try once more */
        (void)cudaGetLastError();
        (void)cudaStreamSynchronize(c->stream);
        (void)cudaMemPoolTrimTo(c->pool, 0);
        e = cudaMallocFromPoolAsync(out, rounded, c->pool, c->stream);
    }
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        uint64_t pooled = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        if (c->pool) (void)cudaMemPoolGetAttribute(c->pool, cudaMemPoolAttrReservedMemCurrent, &pooled);
        (void)cudaGetLastError();
        *out = NULL;
        return opg__fail(OPG_ERR_NOMEM,
                         "cuda backend: out of device memory allocating %zu bytes (free %zu of "
                         "%zu; this backend holds %zu in buffers, %llu reserved in its pool)",
                         bytes, free_b, total_b, c->held, (unsigned long long)pooled);
    }
    if (e != cudaSuccess) {
        *out = NULL;
        return cuda_fail(e, "device allocation");
    }
    return OPG_OK;
}

/* Frees dev_alloc's memory after the work queued on the stream (NULL: no-op).
 * Errors are cleared: a free has nothing to report that a later
 * synchronizing call would not. */
static void dev_free(cuda_backend *c, void *p) {
    if (!p) return;
    if (c->pool) {
        cudaFreeAsync(p, c->stream);
    } else {
        cudaStreamSynchronize(c->stream); /* queued kernels may still use it */
        cudaFree(p);
    }
    (void)cudaGetLastError();
}

/* Grows a device scratch area to at least bytes (contents not kept). */
static opg_status grow(cuda_backend *c, void **p, size_t *cap, size_t bytes) {
    if (bytes <= *cap && *p) return OPG_OK;
    size_t want = bytes > 2 * *cap ? bytes : 2 * *cap;
    dev_free(c, *p);
    *p = NULL;
    *cap = 0;
    opg_status st = dev_alloc(c, want, p);
    if (st) return st;
    *cap = want;
    return OPG_OK;
}

static void staged_free(cuda_backend *c, staged *s) {
    if (s->host) cudaFreeHost(s->host);
    dev_free(c, s->dev);
    if (s->copied) cudaEventDestroy(s->copied);
    memset(s, 0, sizeof *s);
}

/* The device copy of host[0..bytes): uploads only when the bytes differ from
 * what the device already holds. */
static opg_status stage(cuda_backend *c, staged *s, const void *host, size_t bytes,
                        const void **dev) {
    *dev = NULL;
    if (bytes == 0) return OPG_OK;
    if (s->len == bytes && memcmp(s->host, host, bytes) == 0) {
        *dev = s->dev;
        return OPG_OK;
    }
    if (s->recorded) CU(cudaEventSynchronize(s->copied), "staging: cudaEventSynchronize");
    s->recorded = 0;
    s->len = 0;
    if (bytes > s->cap) {
        size_t want = bytes > 2 * s->cap ? bytes : 2 * s->cap;
        if (want < 4096) want = 4096;
        /* the event above: no copy from the old host buffer is pending */
        if (s->host) CU(cudaFreeHost(s->host), "staging: cudaFreeHost");
        s->host = NULL;
        dev_free(c, s->dev); /* after the queued kernels that read it */
        s->dev = NULL;
        s->cap = 0;
        cudaError_t e = cudaMallocHost(&s->host, want);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            s->host = NULL;
            return opg__fail(OPG_ERR_NOMEM, "cuda backend: cannot pin %zu bytes of host memory (%s)",
                             want, cudaGetErrorString(e));
        }
        opg_status st = dev_alloc(c, want, &s->dev);
        if (st) return st;
        s->cap = want;
    }
    memcpy(s->host, host, bytes);
    CU(cudaMemcpyAsync(s->dev, s->host, bytes, cudaMemcpyHostToDevice, c->stream),
       "staging: cudaMemcpyAsync");
    cudaError_t er = cudaEventRecord(s->copied, c->stream);
    if (er != cudaSuccess) {
        /* no event to wait on: drain the copy before the host buffer is reused */
        (void)cudaStreamSynchronize(c->stream);
        return cuda_fail(er, "staging: cudaEventRecord");
    }
    s->recorded = 1;
    s->len = bytes;
    *dev = s->dev;
    return OPG_OK;
}

/* ---- views ---------------------------------------------------------------------- */

/* v must address `bytes` bytes inside its buffer, at an offset that is a
 * multiple of align. A device access outside would corrupt memory silently,
 * and a misaligned one (an f32 load at an odd offset) is a sticky fault that
 * ends every later op of the context, so every op checks its views. Buffers
 * start 256-byte aligned: the offset decides. */
static opg_status need(opg_view v, int64_t bytes, size_t align, const char *op, const char *what) {
    if (!v.buf && bytes == 0) return OPG_OK;
    if (!v.buf) return opg__fail(OPG_ERR_ARG, "cuda backend: %s: no %s buffer", op, what);
    if (bytes < 0 || v.off > v.buf->bytes || (uint64_t)bytes > v.buf->bytes - v.off)
        return opg__fail(OPG_ERR_ARG,
                         "cuda backend: %s: %s of %lld bytes at offset %zu is outside its "
                         "buffer of %zu bytes",
                         op, what, (long long)bytes, v.off, v.buf->bytes);
    if (v.off % align)
        return opg__fail(OPG_ERR_ARG, "cuda backend: %s: %s at offset %zu is not %zu-byte aligned", op, what, v.off,
                         align);
    return OPG_OK;
}

/* The alignment the kernels' loads need: f32 values 4 bytes; f16/bf16 and
 * the quantized blocks, read in 16-bit halves, 2. */
static size_t weight_align(opg_dtype t) { return t == OPG_F32 ? 4 : 2; }

/* Bytes of n f32 values; -1 for a negative or absurd n (refused by need). */
static int64_t f32s(int64_t n) { return n < 0 || n > (INT64_MAX / 8) ? -1 : n * 4; }
static int64_t prod(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a && b > INT64_MAX / 8 / a) return -1;
    return a * b;
}

#define NEED_ALIGNED(v, bytes, align, what)                      \
    do {                                                         \
        opg_status need_st_ = need(v, bytes, align, op, what);   \
        if (need_st_) return need_st_;                           \
    } while (0)
#define NEED(v, bytes, what) NEED_ALIGNED(v, bytes, 1, what)     /* bytes */
#define NEED_F32(v, bytes, what) NEED_ALIGNED(v, bytes, 4, what) /* f32 values */
#define TRY(expr)                                                \
    do {                                                         \
        opg_status try_st_ = (expr);                             \
        if (try_st_) return try_st_;                             \
    } while (0)

/* ---- memory ---------------------------------------------------------------------- */

static void cuda_destroy(opg_backend *be) {
    cuda_backend *c = cb(be);
    int ok = cudaSetDevice(c->device) == cudaSuccess;
    if (ok && c->stream) cudaStreamSynchronize(c->stream);
    staged_free(c, &c->pos);
    staged_free(c, &c->freq);
    staged_free(c, &c->tok);
    if (ok) {
        dev_free(c, c->scratch);
        dev_free(c, c->fp);
        dev_free(c, c->sample_scratch);
        dev_free(c, c->token);
        if (c->stream) cudaStreamSynchronize(c->stream); /* the frees are done */
    }
    if (c->pool) cudaMemPoolDestroy(c->pool);
    if (c->stream) cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

static void cuda_free(opg_backend *be, opg_buf *b);

/* A new opg_buf of bytes device bytes (contents undefined), counted in held. */
static opg_status new_buf(cuda_backend *c, size_t bytes, opg_buf **out) {
    *out = NULL;
    TRY(enter(c));
    opg_buf *b = calloc(1, sizeof *b);
    if (!b) return opg__fail(OPG_ERR_NOMEM, "cuda backend: out of host memory");
    opg_status st = dev_alloc(c, bytes, &b->dev);
    if (st) {
        free(b);
        return st;
    }
    b->bytes = bytes;
    c->held += bytes;
    *out = b;
    return OPG_OK;
}

static opg_status cuda_alloc(opg_backend *be, size_t bytes, opg_buf **out) {
    cuda_backend *c = cb(be);
    *out = NULL;
    opg_buf *b;
    TRY(new_buf(c, bytes, &b));
    /* zeroed, as the interface promises; ordered before any later op */
    cudaError_t e = cudaMemsetAsync(b->dev, 0, bytes, c->stream);
    if (e != cudaSuccess) {
        opg_status st = cuda_fail(e, "alloc: cudaMemsetAsync");
        cuda_free(be, b);
        return st;
    }
    *out = b;
    return OPG_OK;
}

static void cuda_free(opg_backend *be, opg_buf *b) {
    if (!b) return;
    cuda_backend *c = cb(be);
    /* after the queued kernels that may still use it (the model frees its
     * workspace right before a forward pass allocates a larger one) */
    if (cudaSetDevice(c->device) == cudaSuccess) dev_free(c, b->dev);
    (void)cudaGetLastError();
    c->held -= b->bytes <= c->held ? b->bytes : c->held;
    free(b);
}

static opg_status cuda_upload(opg_backend *be, opg_view dst, const void *src, size_t bytes) {
    cuda_backend *c = cb(be);
    const char *op = "upload";
    NEED(dst, (int64_t)bytes, "destination");
    if (bytes == 0) return OPG_OK;
    TRY(enter(c));
    CU(cudaMemcpyAsync(ptr(dst), src, bytes, cudaMemcpyHostToDevice, c->stream),
       "upload: cudaMemcpyAsync");
    /* the caller may reuse src at once, and sees a fault here, not later */
    CU(cudaStreamSynchronize(c->stream), "upload: cudaStreamSynchronize");
    return OPG_OK;
}

static opg_status cuda_download(opg_backend *be, void *dst, opg_view src, size_t bytes) {
    cuda_backend *c = cb(be);
    const char *op = "download";
    NEED(src, (int64_t)bytes, "source");
    if (bytes == 0) return OPG_OK;
    TRY(enter(c));
    CU(cudaMemcpyAsync(dst, ptr(src), bytes, cudaMemcpyDeviceToHost, c->stream),
       "download: cudaMemcpyAsync");
    CU(cudaStreamSynchronize(c->stream),
       "download: cudaStreamSynchronize (an earlier op may have failed on the device)");
    return OPG_OK;
}

static opg_status cuda_wrap(opg_backend *be, const void *host, size_t bytes, opg_buf **out) {
    cuda_backend *c = cb(be);
    *out = NULL;
    opg_buf *b;
    TRY(new_buf(c, bytes, &b));
    /* once, at load, on the backend's stream (a non-blocking stream does
     * not wait for the legacy default stream), then synchronized: the
     * mapping may go away afterwards */
    cudaError_t e = cudaMemcpyAsync(b->dev, host, bytes, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        opg_status st = cuda_fail(e, "wrap_weights: cudaMemcpyAsync");
        cuda_free(be, b);
        return st;
    }
    *out = b;
    return OPG_OK;
}

/* ---- ops ------------------------------------------------------------------------- */

static opg_status cuda_matmul(opg_backend *be, opg_view y, opg_view x, opg_view w, opg_dtype wt,
                              opg_view bias, int64_t M, int64_t N, int64_t K) {
    cuda_backend *c = cb(be);
    const char *op = "matmul";
    size_t row = opg_dtype_row_bytes(wt, K);
    if (M < 0 || N < 0 || K < 0 || (K > 0 && row == 0))
        return opg__fail(OPG_ERR_ARG, "matmul: unsupported weight type %s or shape %lldx%lldx%lld",
                         opg_dtype_name(wt), (long long)M, (long long)N, (long long)K);
    NEED_F32(y, f32s(prod(M, N)), "y");
    NEED_F32(x, f32s(prod(M, K)), "x");
    NEED_ALIGNED(w, prod(N, (int64_t)row), weight_align(wt), "weights");
    if (bias.buf) NEED_F32(bias, f32s(N), "bias");
    if (M == 0 || N == 0) return OPG_OK;
    TRY(enter(c));
    void *scratch = NULL;
    if (opg_dtype_is_quant(wt)) {
        TRY(grow(c, &c->scratch, &c->scratch_cap, opg_cuda_matmul_scratch_bytes(M, K)));
        scratch = c->scratch;
    }
    return launched(opg_cuda_matmul(c->stream, ptr(y), ptr(x), ptr(w), wt, ptr(bias), M, N, K,
                                    scratch),
                    op);
}

static opg_status cuda_rmsnorm(opg_backend *be, opg_view y, opg_view x, opg_view w, int64_t M,
                               int64_t D, float eps) {
    cuda_backend *c = cb(be);
    const char *op = "rmsnorm";
    NEED_F32(y, f32s(prod(M, D)), "y");
    NEED_F32(x, f32s(prod(M, D)), "x");
    NEED_F32(w, f32s(D), "weight");
    if (M == 0 || D == 0) return OPG_OK;
    TRY(enter(c));
    return launched(opg_cuda_rmsnorm(c->stream, ptr(y), ptr(x), ptr(w), M, D, eps), op);
}

static opg_status cuda_rope(opg_backend *be, opg_view x, int64_t n_tok, const int32_t *pos,
                            int n_heads, int head_dim, int n_dims, const double *inv_freq,
                            opg_rope_mode mode) {
    cuda_backend *c = cb(be);
    const char *op = "rope";
    NEED_F32(x, f32s(prod(n_tok, prod(n_heads, head_dim))), "x");
    /* rope.h: an n_dims that is odd, <= 0 or > head_dim leaves x unchanged */
    if (n_tok == 0 || n_heads <= 0 || n_dims <= 0 || n_dims % 2 || n_dims > head_dim)
        return OPG_OK;
    TRY(enter(c));
    const void *dpos, *dfreq;
    TRY(stage(c, &c->pos, pos, (size_t)n_tok * sizeof *pos, &dpos));
    TRY(stage(c, &c->freq, inv_freq, (size_t)(n_dims / 2) * sizeof *inv_freq, &dfreq));
    return launched(opg_cuda_rope(c->stream, ptr(x), n_tok, dpos, n_heads, head_dim, n_dims, dfreq,
                                  mode),
                    op);
}

static opg_status cuda_attention(opg_backend *be, opg_view out, opg_view q, opg_view k,
                                 opg_view v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                                 int head_dim, float scale) {
    cuda_backend *c = cb(be);
    const char *op = "attention";
    if (n_q <= 0) return OPG_OK; /* attention.h: a no-op */
    int64_t qrow = prod(n_head, head_dim), kvrow = prod(n_kv, head_dim);
    NEED_F32(out, f32s(prod(n_q, qrow)), "out");
    NEED_F32(q, f32s(prod(n_q, qrow)), "q");
    if (pos0 >= 0) {
        NEED_F32(k, f32s(prod(pos0 + n_q, kvrow)), "k cache");
        NEED_F32(v, f32s(prod(pos0 + n_q, kvrow)), "v cache");
    }
    TRY(enter(c));
    /* a long context split across blocks keeps its segment states here */
    const size_t need = opg_cuda_attention_scratch_bytes(n_q, pos0, n_head, head_dim);
    if (need) TRY(grow(c, &c->scratch, &c->scratch_cap, need));
    return launched(opg_cuda_attention(c->stream, ptr(out), ptr(q), ptr(k), ptr(v), n_q, pos0,
                                       n_head, n_kv, head_dim, scale, need ? c->scratch : NULL),
                    op);
}

static opg_status cuda_swiglu(opg_backend *be, opg_view out, opg_view gate, opg_view up,
                              int64_t n) {
    cuda_backend *c = cb(be);
    const char *op = "swiglu";
    NEED_F32(out, f32s(n), "out");
    NEED_F32(gate, f32s(n), "gate");
    NEED_F32(up, f32s(n), "up");
    if (n == 0) return OPG_OK;
    TRY(enter(c));
    return launched(opg_cuda_swiglu(c->stream, ptr(out), ptr(gate), ptr(up), n), op);
}

static opg_status cuda_add(opg_backend *be, opg_view y, opg_view a, opg_view b, int64_t n) {
    cuda_backend *c = cb(be);
    const char *op = "add";
    NEED_F32(y, f32s(n), "y");
    NEED_F32(a, f32s(n), "a");
    NEED_F32(b, f32s(n), "b");
    if (n == 0) return OPG_OK;
    TRY(enter(c));
    return launched(opg_cuda_add(c->stream, ptr(y), ptr(a), ptr(b), n), op);
}

static opg_status cuda_embed(opg_backend *be, opg_view out, opg_view table, opg_dtype t,
                             int64_t dim, int64_t n_vocab, const int32_t *tokens, int64_t n) {
    cuda_backend *c = cb(be);
    const char *op = "embedding";
    size_t row = opg_dtype_row_bytes(t, dim);
    if (dim <= 0 || n_vocab <= 0 || row == 0 || n < 0)
        return opg__fail(OPG_ERR_ARG, "embedding: token id outside [0, %lld) or bad table type",
                         (long long)n_vocab);
    /* the launcher trusts its ids: the range check is here, on the host */
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return opg__fail(OPG_ERR_ARG, "embedding: token id outside [0, %lld) or bad table type",
                             (long long)n_vocab);
    NEED_F32(out, f32s(prod(n, dim)), "out");
    NEED_ALIGNED(table, prod(n_vocab, (int64_t)row), weight_align(t), "table");
    if (n == 0) return OPG_OK;
    TRY(enter(c));
    const void *dtok;
    TRY(stage(c, &c->tok, tokens, (size_t)n * sizeof *tokens, &dtok));
    return launched(opg_cuda_embed(c->stream, ptr(out), ptr(table), t, dim, dtok, n), op);
}

static opg_status cuda_copy(opg_backend *be, opg_view dst, opg_view src, size_t bytes) {
    cuda_backend *c = cb(be);
    const char *op = "copy";
    NEED(dst, (int64_t)bytes, "destination");
    NEED(src, (int64_t)bytes, "source");
    if (bytes == 0 || (dst.buf == src.buf && dst.off == src.off)) return OPG_OK;
    TRY(enter(c));
    int overlap = dst.buf == src.buf && dst.off < src.off + bytes && src.off < dst.off + bytes;
    if (!overlap) {
        CU(cudaMemcpyAsync(ptr(dst), ptr(src), bytes, cudaMemcpyDeviceToDevice, c->stream),
           "copy: cudaMemcpyAsync");
        return OPG_OK;
    }
    /* memmove semantics (the cpu backend's) through the scratch area: device
     * copies of overlapping ranges are undefined */
    TRY(grow(c, &c->scratch, &c->scratch_cap, bytes));
    CU(cudaMemcpyAsync(c->scratch, ptr(src), bytes, cudaMemcpyDeviceToDevice, c->stream),
       "copy: cudaMemcpyAsync");
    CU(cudaMemcpyAsync(ptr(dst), c->scratch, bytes, cudaMemcpyDeviceToDevice, c->stream),
       "copy: cudaMemcpyAsync");
    return OPG_OK;
}

static opg_status cuda_fingerprint(opg_backend *be, uint64_t *out, opg_view x, int64_t n,
                                   int64_t len, int64_t stride) {
    cuda_backend *c = cb(be);
    const char *op = "fingerprint";
    if (n <= 0) return OPG_OK;
    if (len < 0 || stride < 0)
        return opg__fail(OPG_ERR_ARG, "cuda backend: fingerprint: len %lld, stride %lld",
                         (long long)len, (long long)stride);
    int64_t span = prod(n - 1, stride);
    NEED_F32(x, f32s(span < 0 ? -1 : span + len), "rows");
    TRY(enter(c));
    size_t fp_bytes = (size_t)n * sizeof *out;
    TRY(grow(c, &c->fp, &c->fp_cap, fp_bytes));
    TRY(launched(opg_cuda_fingerprint(c->stream, c->fp, ptr(x), n, len, stride), op));
    CU(cudaMemcpyAsync(out, c->fp, fp_bytes, cudaMemcpyDeviceToHost, c->stream),
       "fingerprint: cudaMemcpyAsync");
    CU(cudaStreamSynchronize(c->stream),
       "fingerprint: cudaStreamSynchronize (an earlier op may have failed on the device)");
    return OPG_OK;
}

static opg_status cuda_sample(opg_backend *be, int64_t *token, opg_view logits, int64_t n,
                              const opg_sample_params *p, uint64_t step) {
    cuda_backend *c = cb(be);
    const char *op = "sample";
    *token = -1;
    if (n <= 0) return OPG_OK;
    NEED_F32(logits, f32s(n), "logits");
    TRY(enter(c));
    /* greedy sampling (argmax) needs no sort scratch */
    const int greedy = !(p->temperature > 0.0f) || p->top_k == 1;
    size_t need = opg_cuda_sample_scratch_bytes(n);
    if (need == 0) return opg__fail(OPG_ERR_ARG, "cuda backend: sample: %lld logits", (long long)n);
    if (!greedy) TRY(grow(c, &c->sample_scratch, &c->sample_cap, need));
    TRY(grow(c, &c->token, &c->token_cap, sizeof *token));
    TRY(launched(opg_cuda_sample(c->stream, c->token, ptr(logits), n, p, step,
                                 greedy ? NULL : c->sample_scratch),
                 op));
    CU(cudaMemcpyAsync(token, c->token, sizeof *token, cudaMemcpyDeviceToHost, c->stream),
       "sample: cudaMemcpyAsync");
    CU(cudaStreamSynchronize(c->stream),
       "sample: cudaStreamSynchronize (an earlier op may have failed on the device)");
    return OPG_OK;
}

static opg_status cuda_sync(opg_backend *be) {
    cuda_backend *c = cb(be);
    TRY(enter(c));
    CU(cudaStreamSynchronize(c->stream),
       "sync: cudaStreamSynchronize (an earlier op may have failed on the device)");
    return OPG_OK;
}

static const char *cuda_device(opg_backend *be) { return cb(be)->name; }

static const opg_backend_ops cuda_ops = {
    .name = "cuda",
    .device = cuda_device,
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .wrap_weights = cuda_wrap,
    .matmul = cuda_matmul,
    .rmsnorm = cuda_rmsnorm,
    .rope = cuda_rope,
    .attention = cuda_attention,
    .swiglu = cuda_swiglu,
    .add = cuda_add,
    .embed = cuda_embed,
    .copy = cuda_copy,
    .fingerprint = cuda_fingerprint,
    .sample = cuda_sample,
    .sync = cuda_sync,
};

int opg_backend_cuda_devices(void) { return opg_cuda_device_count(); }

/* Runs one tiny kernel and reads its result back: a device the fat binary has
 * no code for, or a driver too old for its PTX, fails here. */
static opg_status self_test(cuda_backend *c) {
    opg_buf *b = NULL;
    TRY(cuda_alloc(&c->base, 3 * sizeof(float), &b));
    const float in[2] = {1.5f, 2.25f};
    float got = 0;
    opg_status st = cuda_upload(&c->base, opg_view_of(b, 0), in, sizeof in);
    if (!st) st = cuda_add(&c->base, opg_view_of(b, 8), opg_view_of(b, 0), opg_view_of(b, 4), 1);
    if (!st) st = cuda_download(&c->base, &got, opg_view_of(b, 8), sizeof got);
    cuda_free(&c->base, b);
    if (!st && got != 3.75f)
        st = opg__fail(OPG_ERR_STATE, "cuda backend: self-test: 1.5 + 2.25 gave %g", (double)got);
    return st;
}

/* The backend's memory pool, where the device supports pools (else, or when
 * creating it fails, c->pool stays NULL and dev_alloc uses cudaMalloc):
 * device memory, kept when freed (release threshold unlimited), so
 * steady-state allocations never go back to the driver; dev_alloc trims it
 * before giving up on an allocation. Never fails the backend. */
static cudaError_t create_pool(cuda_backend *c) {
    int supported = 0;
    if (cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, c->device) !=
            cudaSuccess ||
        !supported) {
        (void)cudaGetLastError();
        return cudaSuccess;
    }
    struct cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = c->device;
    if (cudaMemPoolCreate(&c->pool, &props) != cudaSuccess) {
        c->pool = NULL; /* some virtualized setups: plain cudaMalloc then */
    } else {
        uint64_t threshold = UINT64_MAX;
        if (cudaMemPoolSetAttribute(c->pool, cudaMemPoolAttrReleaseThreshold, &threshold) !=
            cudaSuccess) {
            cudaMemPoolDestroy(c->pool);
            c->pool = NULL;
        }
    }
    (void)cudaGetLastError();
    return cudaSuccess;
}

opg_status opg_backend_cuda_new(int device, opg_backend **out) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return opg__fail(OPG_ERR_UNSUPPORTED, "cuda backend: no usable CUDA driver or device: %s",
                         cudaGetErrorString(e));
    }
    if (n <= 0) return opg__fail(OPG_ERR_UNSUPPORTED, "cuda backend: no CUDA device");
    if (device < 0 || device >= n)
        return opg__fail(OPG_ERR_ARG, "cuda backend: device %d does not exist (%d device%s)",
                         device, n, n == 1 ? "" : "s");
    cuda_backend *c = calloc(1, sizeof *c);
    if (!c) return opg__fail(OPG_ERR_NOMEM, "cuda backend: out of host memory");
    c->base.ops = &cuda_ops;
    c->device = device;
    opg_status st = OPG_OK;
    struct cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&c->pos.copied, cudaEventDisableTiming)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&c->freq.copied, cudaEventDisableTiming)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&c->tok.copied, cudaEventDisableTiming)) != cudaSuccess ||
        (e = create_pool(c)) != cudaSuccess) {
        (void)cudaGetLastError();
        st = opg__fail(OPG_ERR_UNSUPPORTED, "cuda backend: device %d is not usable: %s", device,
                       cudaGetErrorString(e));
    }
    if (!st) {
        c->total_mem = prop.totalGlobalMem;
        snprintf(c->name, sizeof c->name, "%.200s (sm_%d%d, %.1f GiB)", prop.name, prop.major,
                 prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
        if ((st = self_test(c)))
            st = opg__fail(OPG_ERR_UNSUPPORTED,
                           "cuda backend: device %d, %s, cannot run opg's kernels: %.300s", device,
                           c->name, opg_last_error());
    }
    if (st) {
        cuda_destroy(&c->base);
        return st;
    }
    *out = &c->base;
    return OPG_OK;
}

#else /* !OPG_HAVE_CUDA */

opg_status opg_backend_cuda_new(int device, opg_backend **out) {
    (void)device;
    *out = NULL;
    return opg__fail(OPG_ERR_UNSUPPORTED,
                     "cuda backend: this opg was built without CUDA (configure with nvcc on the "
                     "PATH, or -DOPG_CUDA=ON)");
}

int opg_backend_cuda_devices(void) { return 0; }

#endif
