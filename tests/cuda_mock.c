/* cuda_mock.c: a host stand-in for the CUDA runtime calls of the cuda backend
 * and for opg's launchers (kernels/cuda/opg_cuda.h), linked into
 * test_cuda_backend_mock instead of libcudart and the CUDA kernels. It lets
 * the cuda backend's host code (runtime/cuda/backend_cuda.c: view checks,
 * staging buffers, scratch growth, out of memory, the sample op) and all of
 * test_gpu_model run in CI without a GPU, under ASan.
 *
 * "Device" memory is host memory, 256-byte aligned, filled with garbage and
 * tracked: every copy, memset and launcher argument must lie inside one live
 * allocation and device-to-device copies must not overlap (undefined on
 * CUDA), else the mock aborts naming the call. Each launcher runs the cpu
 * backend's kernel call, so the bits are the CPU's: this checks the glue and
 * the tests, never a CUDA kernel. Work runs at once, so a missing stream
 * synchronization is not caught here either. */
#include <cuda_runtime_api.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "attention.h"
#include "embed.h"
#include "matmul.h"
#include "opg_cuda.h"
#include "pool.h"
#include "rmsnorm.h"
#include "rope.h"
#include "sample.h"
#include "trace.h"

#define MOCK_MEMORY ((size_t)8 << 30) /* what the mock device "has" */

typedef struct {
    char *p;
    size_t bytes;
} mock_alloc;

static mock_alloc *g_allocs;
static size_t g_n_allocs, g_cap_allocs, g_held;
static char g_stream_tag, g_event_tag;

static void mock_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cuda_mock: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* The live allocation holding [p, p + bytes), or NULL. */
static const mock_alloc *find(const void *p, size_t bytes) {
    const char *c = p;
    for (size_t i = 0; i < g_n_allocs; i++) {
        const mock_alloc *a = &g_allocs[i];
        if (c >= a->p && c <= a->p + a->bytes && bytes <= (size_t)(a->p + a->bytes - c)) return a;
    }
    return NULL;
}

static void need(const void *p, size_t bytes, const char *what) {
    if (bytes == 0) return;
    if (!p || !find(p, bytes))
        mock_die("%s: %zu bytes at %p are not inside one device allocation", what, bytes, p);
}

/* ---- the runtime calls backend_cuda.c makes ---------------------------------------- */

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "opg cuda_mock (host memory, CPU kernels)");
    prop->major = 9;
    prop->minor = 0;
    prop->totalGlobalMem = MOCK_MEMORY;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? "out of memory (mock)" : "mock error";
}
const char *cudaGetErrorName(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? "cudaErrorMemoryAllocation" : "cudaErrorMock";
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = NULL;
    if (bytes == 0 || bytes > MOCK_MEMORY - g_held) return cudaErrorMemoryAllocation;
    size_t rounded = (bytes + 255) & ~(size_t)255;
    char *m = aligned_alloc(256, rounded);
    if (!m) return cudaErrorMemoryAllocation;
    memset(m, 0xA5, rounded); /* garbage: only what the backend writes is read */
    if (g_n_allocs == g_cap_allocs) {
        size_t cap = g_cap_allocs ? 2 * g_cap_allocs : 256;
        mock_alloc *a = realloc(g_allocs, cap * sizeof *a);
        if (!a) mock_die("out of host memory");
        g_allocs = a;
        g_cap_allocs = cap;
    }
    g_allocs[g_n_allocs++] = (mock_alloc){m, bytes};
    g_held += bytes;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    for (size_t i = 0; i < g_n_allocs; i++)
        if (g_allocs[i].p == p) {
            g_held -= g_allocs[i].bytes;
            free(p);
            g_allocs[i] = g_allocs[--g_n_allocs];
            if (g_n_allocs == 0) { /* leaves nothing for LeakSanitizer to report */
                free(g_allocs);
                g_allocs = NULL;
                g_cap_allocs = 0;
            }
            return cudaSuccess;
        }
    mock_die("cudaFree(%p): not a live device allocation", p);
    return cudaErrorInvalidValue;
}

/* A memory pool: allocations as cudaMalloc's, frees as cudaFree's (the mock
 * runs everything at once, so stream order is program order). */
static char g_pool_tag;
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr attr, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    *v = attr == cudaDevAttrMemoryPoolsSupported ? 1 : 0;
    return cudaSuccess;
}
cudaError_t cudaMemPoolCreate(cudaMemPool_t *pool, const struct cudaMemPoolProps *props) {
    if (props->location.type != cudaMemLocationTypeDevice || props->location.id != 0)
        mock_die("cudaMemPoolCreate: not a pool on device 0");
    *pool = (cudaMemPool_t)(void *)&g_pool_tag;
    return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *v) {
    (void)pool, (void)attr, (void)v;
    return cudaSuccess;
}
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep) {
    (void)pool, (void)keep;
    return cudaSuccess;
}
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *v) {
    (void)pool, (void)attr;
    *(uint64_t *)v = 0; /* the mock frees at once: nothing stays reserved */
    return cudaSuccess;
}
cudaError_t cudaMemPoolDestroy(cudaMemPool_t pool) {
    (void)pool;
    return cudaSuccess;
}
cudaError_t cudaMallocFromPoolAsync(void **p, size_t bytes, cudaMemPool_t pool, cudaStream_t s) {
    (void)s;
    if (pool != (cudaMemPool_t)(void *)&g_pool_tag) mock_die("cudaMallocFromPoolAsync: unknown pool");
    return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
    (void)s;
    return cudaFree(p);
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *free_b = MOCK_MEMORY - g_held;
    *total_b = MOCK_MEMORY;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t s) {
    (void)s;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice)
        need(dst, bytes, "cudaMemcpyAsync destination");
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice)
        need(src, bytes, "cudaMemcpyAsync source");
    if (kind == cudaMemcpyDeviceToHost && find(dst, 1)) mock_die("D2H copy into device memory");
    if (kind == cudaMemcpyHostToDevice && find(src, 1)) mock_die("H2D copy from device memory");
    if (kind == cudaMemcpyDeviceToDevice && (const char *)dst < (const char *)src + bytes &&
        (const char *)src < (const char *)dst + bytes)
        mock_die("overlapping device-to-device copy (undefined on CUDA)");
    if (bytes) memcpy(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s) {
    (void)s;
    need(p, bytes, "cudaMemsetAsync");
    memset(p, v, bytes);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    (void)flags;
    *s = (cudaStream_t)(void *)&g_stream_tag;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    (void)s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    (void)flags;
    *e = (cudaEvent_t)(void *)&g_event_tag;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)e, (void)s;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    (void)e;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    (void)e;
    return cudaSuccess;
}

/* ---- the launchers: the cpu backend's kernel calls ------------------------------------ */

static opg_pool *pool(void) {
    static opg_pool *p;
    if (!p && !(p = opg_pool_new(2))) mock_die("cannot start the kernel pool");
    return p;
}

static char g_msg[256];
const char *opg_cuda_last_error(void) { return g_msg; }
int opg_cuda_device_count(void) { return 1; }

static int fail_arg(const char *what) {
    snprintf(g_msg, sizeof g_msg, "%s (cuda_mock)", what);
    return OPG_CUDA_ERR_ARG;
}

static size_t f32s(int64_t a, int64_t b) { return (size_t)a * (size_t)b * sizeof(float); }

size_t opg_cuda_matmul_scratch_bytes(int64_t M, int64_t K) {
    return M <= 0 || K <= 0 ? 0 : (size_t)M * (size_t)(K / 32) * sizeof(opg_block_q8a);
}

int opg_cuda_matmul(opg_cuda_stream s, float *y, const float *x, const void *w, opg_dtype wt,
                    const float *bias, int64_t M, int64_t N, int64_t K, void *xq_scratch) {
    (void)s;
    size_t row = opg_dtype_row_bytes(wt, K);
    if (M < 0 || N < 0 || K < 0 || (K > 0 && row == 0)) return fail_arg("matmul: bad shape");
    need(y, f32s(M, N), "matmul y");
    need(x, f32s(M, K), "matmul x");
    need(w, (size_t)N * row, "matmul weights");
    if (bias) need(bias, f32s(1, N), "matmul bias");
    if (opg_dtype_is_quant(wt)) need(xq_scratch, opg_cuda_matmul_scratch_bytes(M, K), "matmul scratch");
    if (opg_matmul(pool(), y, x, w, wt, bias, M, N, K) != 0) return fail_arg("matmul: refused");
    return OPG_CUDA_OK;
}

int opg_cuda_rmsnorm(opg_cuda_stream s, float *y, const float *x, const float *w, int64_t M,
                     int64_t D, float eps) {
    (void)s;
    need(y, f32s(M, D), "rmsnorm y");
    need(x, f32s(M, D), "rmsnorm x");
    need(w, f32s(1, D), "rmsnorm weight");
    opg_rmsnorm(pool(), y, x, w, M, D, eps);
    return OPG_CUDA_OK;
}

int opg_cuda_rope(opg_cuda_stream s, float *x, int64_t n_tok, const int32_t *pos, int n_heads,
                  int head_dim, int n_dims, const double *inv_freq, opg_rope_mode mode) {
    (void)s;
    need(x, f32s(n_tok, (int64_t)n_heads * head_dim), "rope x");
    need(pos, (size_t)n_tok * sizeof *pos, "rope positions");
    need(inv_freq, (size_t)(n_dims / 2) * sizeof *inv_freq, "rope frequencies");
    opg_rope(pool(), x, n_tok, pos, n_heads, head_dim, n_dims, inv_freq, mode);
    return OPG_CUDA_OK;
}

int opg_cuda_swiglu(opg_cuda_stream s, float *out, const float *gate, const float *up, int64_t n) {
    (void)s;
    need(out, f32s(1, n), "swiglu out");
    need(gate, f32s(1, n), "swiglu gate");
    need(up, f32s(1, n), "swiglu up");
    opg_swiglu(pool(), out, gate, up, n);
    return OPG_CUDA_OK;
}

int opg_cuda_add(opg_cuda_stream s, float *y, const float *a, const float *b, int64_t n) {
    (void)s;
    need(y, f32s(1, n), "add y");
    need(a, f32s(1, n), "add a");
    need(b, f32s(1, n), "add b");
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    return OPG_CUDA_OK;
}

int opg_cuda_embed(opg_cuda_stream s, float *out, const void *table, opg_dtype t, int64_t dim,
                   const int32_t *tokens, int64_t n) {
    (void)s;
    size_t row = opg_dtype_row_bytes(t, dim);
    need(out, f32s(n, dim), "embed out");
    need(tokens, (size_t)n * sizeof *tokens, "embed tokens");
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0) mock_die("embed: token %d reached the launcher", tokens[i]);
        need((const char *)table + (size_t)tokens[i] * row, row, "embed table row");
    }
    if (opg_embed_ref(out, table, t, dim, INT32_MAX, tokens, n) != 0) return fail_arg("embed");
    return OPG_CUDA_OK;
}

int opg_cuda_attention(opg_cuda_stream s, float *out, const float *q, const float *k,
                       const float *v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                       int head_dim, float scale) {
    (void)s;
    if (n_q <= 0) return OPG_CUDA_OK;
    if (n_head <= 0 || n_kv <= 0 || head_dim <= 0 || n_head % n_kv || pos0 < 0)
        return fail_arg("attention: bad heads or position");
    need(out, f32s(n_q, (int64_t)n_head * head_dim), "attention out");
    need(q, f32s(n_q, (int64_t)n_head * head_dim), "attention q");
    need(k, f32s(pos0 + n_q, (int64_t)n_kv * head_dim), "attention k");
    need(v, f32s(pos0 + n_q, (int64_t)n_kv * head_dim), "attention v");
    opg_attention(pool(), out, q, k, v, n_q, pos0, n_head, n_kv, head_dim, scale);
    return OPG_CUDA_OK;
}

int opg_cuda_fingerprint(opg_cuda_stream s, uint64_t *out, const float *x, int64_t n, int64_t len,
                         int64_t stride) {
    (void)s;
    need(out, (size_t)n * sizeof *out, "fingerprint out");
    if (n > 0) need(x, f32s(1, (n - 1) * stride + len), "fingerprint rows");
    for (int64_t i = 0; i < n; i++) out[i] = opg_trace_fingerprint(x + i * stride, len);
    return OPG_CUDA_OK;
}

size_t opg_cuda_sample_scratch_bytes(int64_t n) {
    return n <= 0 ? 0 : opg_sample_scratch_bytes(n) + 256;
}

int opg_cuda_sample(opg_cuda_stream s, int64_t *out, const float *x, int64_t n,
                    const opg_sample_params *p, uint64_t step, void *scratch) {
    (void)s;
    need(out, sizeof *out, "sample out");
    if (n <= 0) {
        *out = -1;
        return OPG_CUDA_OK;
    }
    need(x, f32s(1, n), "sample logits");
    if (!(p->temperature > 0.0f) || p->top_k == 1) { /* greedy: no scratch (opg_cuda.h) */
        static char unused[8];
        *out = opg_sample_ref(x, n, p, step, unused);
        return OPG_CUDA_OK;
    }
    if (((uintptr_t)scratch & 255) != 0) return fail_arg("sample: scratch not 256-byte aligned");
    need(scratch, opg_cuda_sample_scratch_bytes(n), "sample scratch");
    *out = opg_sample_ref(x, n, p, step, scratch);
    return OPG_CUDA_OK;
}
