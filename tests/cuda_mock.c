/* cuda_mock.c: a host stand-in for the CUDA runtime calls of the cuda backend
 * and of the tests, in two builds:
 *  - test_cuda_backend_mock: also stands in for opg's launchers
 *    (kernels/cuda/opg_cuda.h), each running the cpu backend's kernel call,
 *    so the bits are the CPU's: it checks the backend's host code
 *    (runtime/cuda/backend_cuda.c: view checks, staging buffers, scratch
 *    growth, out of memory, the sample op) and the tests, never a CUDA kernel;
 *  - OPG_CUDA_MOCK_EMU (the test_cuda_emu_* tests): the launchers are the
 *    real kernels/cuda sources run by the CUDA emulation (tests/cuemu), which
 *    asks this file whether a kernel's pointer is device memory.
 *
 * "Device" memory is host memory, 256-byte aligned, filled with garbage and
 * tracked: every copy, memset and launcher argument must lie inside one live
 * allocation and device-to-device copies must not overlap (undefined on
 * CUDA), else the mock aborts naming the call. Kernels and device-side copies
 * run at once, but a device-to-host copy only lands at the next stream or
 * event synchronization (its destination reads as garbage until then), and
 * a pinned host buffer that a queued host-to-device copy reads must not
 * change before a synchronization (else abort): a missing synchronization
 * shows. Events and pinned buffers are tracked. OPG_MOCK_NO_POOLS=1 makes
 * the device report no memory pools (the backend's cudaMalloc path). In the
 * first build device addresses are offset into non-canonical space, so host
 * code that dereferences one faults (the emulated kernels dereference them,
 * so there they are the host addresses). A sticky device fault can be set
 * (cuda_mock_fault). */
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
static char g_stream_tag;

/* Work that completes only at a synchronization: D2H copies (the bytes as
 * they were when queued) and H2D copies out of pinned memory (a snapshot of
 * the source, which must still match then). */
typedef struct {
    int d2h;
    void *host;     /* D2H destination / H2D pinned source */
    void *snap;     /* the bytes */
    size_t bytes;
} mock_pending;
static mock_pending g_pending[64];
static int g_n_pending;

static void *g_pinned[64];     /* live cudaMallocHost blocks */
static size_t g_pinned_bytes[64];
static char g_events[16];      /* event i is &g_events[i]; g_event_live[i] */
static int g_event_live[16];

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

/* The pinned block holding [p, p + bytes), or -1. */
static int pinned_of(const void *p, size_t bytes) {
    for (int i = 0; i < 64; i++)
        if (g_pinned[i] && (const char *)p >= (char *)g_pinned[i] &&
            bytes <= (size_t)((char *)g_pinned[i] + g_pinned_bytes[i] - (const char *)p))
            return i;
    return -1;
}

/* A synchronization: queued D2H copies land, pinned sources are checked. */
static void complete_pending(const char *at) {
    for (int i = 0; i < g_n_pending; i++) {
        mock_pending *q = &g_pending[i];
        if (q->d2h) memcpy(q->host, q->snap, q->bytes);
        else if (memcmp(q->host, q->snap, q->bytes) != 0)
            mock_die("%s: a pinned buffer changed while a queued copy still read it", at);
        free(q->snap);
    }
    g_n_pending = 0;
}

/* cudaMemcpy from pageable host memory to the device returns once the bytes
 * are staged; the DMA is ordered on the legacy stream only, which a stream
 * made cudaStreamNonBlocking (all of opg's) does not wait for, so a kernel
 * launched on one right after may still read the old bytes. Such copies land
 * here at the next device-wide or legacy-stream synchronization (device
 * memory keeps its garbage until then). */
static mock_pending g_legacy[64];
static int g_n_legacy;

static void complete_legacy(void) {
    for (int i = 0; i < g_n_legacy; i++) {
        memcpy(g_legacy[i].host, g_legacy[i].snap, g_legacy[i].bytes);
        free(g_legacy[i].snap);
    }
    g_n_legacy = 0;
}

static void queue_legacy(void *dev, const void *src, size_t bytes) {
    if (g_n_legacy == 64) complete_legacy();
    void *snap = malloc(bytes ? bytes : 1);
    if (!snap) mock_die("out of host memory");
    memcpy(snap, src, bytes);
    g_legacy[g_n_legacy++] = (mock_pending){0, dev, snap, bytes};
}

static void queue(int d2h, void *host, const void *src, size_t bytes) {
    if (g_n_pending == 64) complete_pending("queue full"); /* a real stream would block too */
    void *snap = malloc(bytes ? bytes : 1);
    if (!snap) mock_die("out of host memory");
    memcpy(snap, src, bytes);
    g_pending[g_n_pending++] = (mock_pending){d2h, host, snap, bytes};
}

/* Device addresses are the host memory's plus DEV_OFFSET: non-canonical on
 * x86-64, so host code that dereferences a device pointer faults here as it
 * would with real device memory, while pointer arithmetic on them works. */
#ifdef OPG_CUDA_MOCK_EMU
#define DEV_OFFSET ((uintptr_t)0)
#else
#define DEV_OFFSET ((uintptr_t)1 << 46)
#endif
static void *to_dev(void *host) { return (void *)((uintptr_t)host + DEV_OFFSET); }
static void *real(const void *dev) { return dev ? (void *)((uintptr_t)dev - DEV_OFFSET) : NULL; }

/* The host memory behind device range [p, p + bytes) after checking that it
 * lies inside one live allocation (NULL for an empty range). */
static void *need(const void *p, size_t bytes, const char *what) {
    if (bytes == 0) return real(p);
    if (!p || !find(real(p), bytes))
        mock_die("%s: %zu bytes at %p are not inside one device allocation", what, bytes, p);
    return real(p);
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
#ifdef OPG_CUDA_MOCK_EMU
    snprintf(prop->name, sizeof prop->name, "opg cuda_mock (host memory, emulated CUDA kernels)");
#else
    snprintf(prop->name, sizeof prop->name, "opg cuda_mock (host memory, CPU kernels)");
#endif
    prop->major = 9;
    prop->minor = 0;
    prop->totalGlobalMem = MOCK_MEMORY;
    return cudaSuccess;
}

/* A sticky device fault (cuda_mock_fault): like an illegal address in a
 * kernel, every later synchronizing call and cudaGetLastError report it. */
static int g_fault;
void cuda_mock_fault(int on) {
    g_fault = on;
    if (!on) complete_pending("cuda_mock_fault(0)");
}

cudaError_t cudaGetLastError(void) { return g_fault ? cudaErrorIllegalAddress : cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? "out of memory (mock)"
           : e == cudaErrorIllegalAddress ? "an illegal memory access was encountered (mock)"
                                          : "mock error";
}
const char *cudaGetErrorName(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? "cudaErrorMemoryAllocation" : "cudaErrorMock";
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = NULL;
    if (bytes == 0 || bytes > MOCK_MEMORY - g_held) return cudaErrorMemoryAllocation;
    void *vm = NULL; /* exactly bytes: ASan sees a kernel reading past the end */
    if (posix_memalign(&vm, 256, bytes) != 0) return cudaErrorMemoryAllocation;
    char *m = vm;
    memset(m, 0xA5, bytes); /* garbage: only what the backend writes is read */
    if (g_n_allocs == g_cap_allocs) {
        size_t cap = g_cap_allocs ? 2 * g_cap_allocs : 256;
        mock_alloc *a = realloc(g_allocs, cap * sizeof *a);
        if (!a) mock_die("out of host memory");
        g_allocs = a;
        g_cap_allocs = cap;
    }
    g_allocs[g_n_allocs++] = (mock_alloc){m, bytes};
    g_held += bytes;
    *p = to_dev(m);
    return cudaSuccess;
}

static cudaError_t mock_free(void *p);
cudaError_t cudaFree(void *p) {
    complete_pending("cudaFree"); /* cudaFree synchronizes the device */
    complete_legacy();
    return mock_free(p);
}

static cudaError_t mock_free(void *dp) {
    if (!dp) return cudaSuccess;
    void *p = real(dp);
    for (size_t i = 0; i < g_n_allocs; i++)
        if (g_allocs[i].p == p) {
            for (int k = 0; k < g_n_legacy; k++)
                if ((char *)g_legacy[k].host >= (char *)p && (char *)g_legacy[k].host < (char *)p + g_allocs[i].bytes)
                    mock_die("stream-ordered free of %p while a cudaMemcpy into it may be in flight", dp);
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
    mock_die("free of %p: not a live device allocation", dp);
    return cudaErrorInvalidValue;
}

/* OPG_MOCK_NO_POOLS=1: the device has no memory pools. */
static int mock_no_pools(void) {
    const char *no_pools = getenv("OPG_MOCK_NO_POOLS");
    return no_pools && *no_pools == '1';
}

/* A memory pool: allocations as cudaMalloc's, frees as cudaFree's (the mock
 * runs everything at once, so stream order is program order). */
static char g_pool_tag;
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr attr, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    *v = attr == cudaDevAttrMemoryPoolsSupported && !mock_no_pools() ? 1 : 0;
    return cudaSuccess;
}
cudaError_t cudaMemPoolCreate(cudaMemPool_t *pool, const struct cudaMemPoolProps *props) {
    if (props->allocType != cudaMemAllocationTypePinned ||
        props->location.type != cudaMemLocationTypeDevice || props->location.id != 0)
        mock_die("cudaMemPoolCreate: not a pinned-allocation pool on device 0");
    *pool = (cudaMemPool_t)(void *)&g_pool_tag;
    return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *v) {
    (void)pool, (void)v;
    if (attr != cudaMemPoolAttrReleaseThreshold) mock_die("cudaMemPoolSetAttribute: unexpected attribute");
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
    return mock_free(p); /* stream order = program order here */
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *free_b = MOCK_MEMORY - g_held;
    *total_b = MOCK_MEMORY;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = NULL;
    for (int i = 0; i < 64; i++)
        if (!g_pinned[i]) {
            if (!(*p = malloc(bytes ? bytes : 1))) return cudaErrorMemoryAllocation;
            g_pinned[i] = *p;
            g_pinned_bytes[i] = bytes;
            return cudaSuccess;
        }
    mock_die("more than 64 pinned host buffers");
    return cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    for (int i = 0; i < 64; i++)
        if (g_pinned[i] == p) {
            for (int k = 0; k < g_n_pending; k++)
                if (pinned_of(g_pending[k].host, 1) == i)
                    mock_die("cudaFreeHost: a queued copy still uses this pinned buffer");
            free(p);
            g_pinned[i] = NULL;
            return cudaSuccess;
        }
    mock_die("cudaFreeHost(%p): not from cudaMallocHost", p);
    return cudaErrorInvalidValue;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t s) {
    (void)s;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice)
        dst = need(dst, bytes, "cudaMemcpyAsync destination");
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice)
        src = need(src, bytes, "cudaMemcpyAsync source");
    if (kind == cudaMemcpyDeviceToHost && find(real(dst), 1)) mock_die("D2H copy into device memory");
    if (kind == cudaMemcpyHostToDevice && find(real(src), 1)) mock_die("H2D copy from device memory");
    if (kind == cudaMemcpyDeviceToDevice && (const char *)dst < (const char *)src + bytes &&
        (const char *)src < (const char *)dst + bytes)
        mock_die("overlapping device-to-device copy (undefined on CUDA)");
    if (!bytes) return cudaSuccess;
    if (kind == cudaMemcpyDeviceToHost) {
        /* lands at the next synchronization; garbage until then */
        queue(1, dst, src, bytes);
        memset(dst, 0xA5, bytes);
        return cudaSuccess;
    }
    if (kind == cudaMemcpyHostToDevice && pinned_of(src, bytes) >= 0)
        queue(0, (void *)src, src, bytes); /* the host must leave it alone until then */
    memcpy(dst, src, bytes); /* pageable sources are staged by the call itself */
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    if (g_fault) return cudaErrorIllegalAddress;
    complete_legacy(); /* what the legacy stream ran before it */
    if (kind == cudaMemcpyHostToDevice && bytes && pinned_of(src, bytes) < 0) {
        void *d = need(dst, bytes, "cudaMemcpy destination");
        if (find(real(src), 1)) mock_die("H2D copy from device memory");
        queue_legacy(d, src, bytes);
        return cudaSuccess;
    }
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, (cudaStream_t)(void *)&g_stream_tag);
    complete_pending("cudaMemcpy"); /* synchronous */
    return e;
}

cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s) {
    (void)s;
    if (mock_no_pools()) return cudaErrorNotSupported; /* a device without memory pools */
    return cudaMalloc(p, bytes);
}

cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    if (g_fault) return cudaErrorIllegalAddress;
    complete_pending("cudaDeviceSynchronize");
    complete_legacy();
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t bytes) {
    if (g_fault) return cudaErrorIllegalAddress;
    complete_legacy(); /* legacy-stream order */
    memset(need(p, bytes, "cudaMemset"), v, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s) {
    (void)s;
    memset(need(p, bytes, "cudaMemsetAsync"), v, bytes);
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
    if (s != (cudaStream_t)(void *)&g_stream_tag) mock_die("cudaStreamSynchronize: unknown stream");
    if (g_fault) return cudaErrorIllegalAddress; /* queued copies never land */
    complete_pending("cudaStreamSynchronize");
    return cudaSuccess;
}

static int event_index(cudaEvent_t e, const char *what) {
    for (int i = 0; i < 16; i++)
        if ((cudaEvent_t)(void *)&g_events[i] == e && g_event_live[i]) return i;
    mock_die("%s: not a live event", what);
    return -1;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    (void)flags;
    for (int i = 0; i < 16; i++)
        if (!g_event_live[i]) {
            g_event_live[i] = 1;
            *e = (cudaEvent_t)(void *)&g_events[i];
            return cudaSuccess;
        }
    mock_die("more than 16 events");
    return cudaErrorInvalidValue;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)event_index(e, "cudaEventRecord");
    if (s != (cudaStream_t)(void *)&g_stream_tag) mock_die("cudaEventRecord: unknown stream");
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    (void)event_index(e, "cudaEventSynchronize");
    if (g_fault) return cudaErrorIllegalAddress;
    complete_pending("cudaEventSynchronize"); /* one stream: everything before it */
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    g_event_live[event_index(e, "cudaEventDestroy")] = 0;
    return cudaSuccess;
}

#ifdef OPG_CUDA_MOCK_EMU
/* ---- what the CUDA emulation asks (tests/cuemu/cuemu.h) ------------------------------- */

int cuemu_device_ptr_ok(const void *p) { return find(real(p), 0) != NULL; }

int cuemu_ptx_version(void) {
    const char *e = getenv("OPG_CUEMU_PTX");
    return e && *e ? atoi(e) : 90;
}

#else
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
    y = need(y, f32s(M, N), "matmul y");
    x = need(x, f32s(M, K), "matmul x");
    w = need(w, (size_t)N * row, "matmul weights");
    if (bias) bias = need(bias, f32s(1, N), "matmul bias");
    if (opg_dtype_is_quant(wt)) need(xq_scratch, opg_cuda_matmul_scratch_bytes(M, K), "matmul scratch");
    if (opg_matmul(pool(), y, x, w, wt, bias, M, N, K) != 0) return fail_arg("matmul: refused");
    return OPG_CUDA_OK;
}

int opg_cuda_rmsnorm(opg_cuda_stream s, float *y, const float *x, const float *w, int64_t M,
                     int64_t D, float eps) {
    (void)s;
    y = need(y, f32s(M, D), "rmsnorm y");
    x = need(x, f32s(M, D), "rmsnorm x");
    w = need(w, f32s(1, D), "rmsnorm weight");
    opg_rmsnorm(pool(), y, x, w, M, D, eps);
    return OPG_CUDA_OK;
}

int opg_cuda_rope(opg_cuda_stream s, float *x, int64_t n_tok, const int32_t *pos, int n_heads,
                  int head_dim, int n_dims, const double *inv_freq, opg_rope_mode mode) {
    (void)s;
    x = need(x, f32s(n_tok, (int64_t)n_heads * head_dim), "rope x");
    pos = need(pos, (size_t)n_tok * sizeof *pos, "rope positions");
    inv_freq = need(inv_freq, (size_t)(n_dims / 2) * sizeof *inv_freq, "rope frequencies");
    opg_rope(pool(), x, n_tok, pos, n_heads, head_dim, n_dims, inv_freq, mode);
    return OPG_CUDA_OK;
}

int opg_cuda_swiglu(opg_cuda_stream s, float *out, const float *gate, const float *up, int64_t n) {
    (void)s;
    out = need(out, f32s(1, n), "swiglu out");
    gate = need(gate, f32s(1, n), "swiglu gate");
    up = need(up, f32s(1, n), "swiglu up");
    opg_swiglu(pool(), out, gate, up, n);
    return OPG_CUDA_OK;
}

int opg_cuda_add(opg_cuda_stream s, float *y, const float *a, const float *b, int64_t n) {
    (void)s;
    y = need(y, f32s(1, n), "add y");
    a = need(a, f32s(1, n), "add a");
    b = need(b, f32s(1, n), "add b");
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    return OPG_CUDA_OK;
}

int opg_cuda_embed(opg_cuda_stream s, float *out, const void *table, opg_dtype t, int64_t dim,
                   const int32_t *tokens, int64_t n) {
    (void)s;
    size_t row = opg_dtype_row_bytes(t, dim);
    out = need(out, f32s(n, dim), "embed out");
    tokens = need(tokens, (size_t)n * sizeof *tokens, "embed tokens");
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0) mock_die("embed: token %d reached the launcher", tokens[i]);
        need((const char *)table + (size_t)tokens[i] * row, row, "embed table row");
    }
    if (opg_embed_ref(out, real(table), t, dim, INT32_MAX, tokens, n) != 0) return fail_arg("embed");
    return OPG_CUDA_OK;
}

/* Segment states whenever the context spans segments (attention.cu splits
 * only some of those shapes; asking more often exercises the caller's
 * scratch more). */
size_t opg_cuda_attention_scratch_bytes(int64_t n_q, int64_t pos0, int n_head, int head_dim) {
    if (n_q <= 0 || pos0 < 0 || n_head <= 0 || head_dim <= 0) return 0;
    int64_t n_seg = (pos0 + n_q + 1023) / 1024;
    return n_seg > 1 ? (size_t)(n_q * n_head) * (size_t)n_seg * (size_t)(head_dim + 2) * 4 : 0;
}

int opg_cuda_attention(opg_cuda_stream s, float *out, const float *q, const float *k,
                       const float *v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                       int head_dim, float scale, void *scratch) {
    (void)s;
    if (n_q <= 0) return OPG_CUDA_OK;
    if (n_head <= 0 || n_kv <= 0 || head_dim <= 0 || n_head % n_kv || pos0 < 0)
        return fail_arg("attention: bad heads or position");
    size_t sb = opg_cuda_attention_scratch_bytes(n_q, pos0, n_head, head_dim);
    if (sb) memset(need(scratch, sb, "attention scratch"), 0xA5, sb); /* the kernels' use */
    out = need(out, f32s(n_q, (int64_t)n_head * head_dim), "attention out");
    q = need(q, f32s(n_q, (int64_t)n_head * head_dim), "attention q");
    k = need(k, f32s(pos0 + n_q, (int64_t)n_kv * head_dim), "attention k");
    v = need(v, f32s(pos0 + n_q, (int64_t)n_kv * head_dim), "attention v");
    opg_attention(pool(), out, q, k, v, n_q, pos0, n_head, n_kv, head_dim, scale);
    return OPG_CUDA_OK;
}

int opg_cuda_fingerprint(opg_cuda_stream s, uint64_t *out, const float *x, int64_t n, int64_t len,
                         int64_t stride) {
    (void)s;
    out = need(out, (size_t)n * sizeof *out, "fingerprint out");
    if (n > 0) x = need(x, f32s(1, (n - 1) * stride + len), "fingerprint rows");
    for (int64_t i = 0; i < n; i++) out[i] = opg_trace_fingerprint(x + i * stride, len);
    return OPG_CUDA_OK;
}

size_t opg_cuda_sample_scratch_bytes(int64_t n) {
    return n <= 0 || n > 0x7fffffff ? 0 : opg_sample_scratch_bytes(n) + 256; /* sample.cu's limit */
}

int opg_cuda_sample(opg_cuda_stream s, int64_t *out, const float *x, int64_t n,
                    const opg_sample_params *p, uint64_t step, void *scratch) {
    (void)s;
    out = need(out, sizeof *out, "sample out");
    if (n <= 0) {
        *out = -1;
        return OPG_CUDA_OK;
    }
    x = need(x, f32s(1, n), "sample logits");
    if (!(p->temperature > 0.0f) || p->top_k == 1) { /* greedy: no scratch (opg_cuda.h) */
        static char unused[8];
        *out = opg_sample_ref(x, n, p, step, unused);
        return OPG_CUDA_OK;
    }
    if (((uintptr_t)scratch & 255) != 0) return fail_arg("sample: scratch not 256-byte aligned");
    scratch = need(scratch, opg_cuda_sample_scratch_bytes(n), "sample scratch");
    *out = opg_sample_ref(x, n, p, step, scratch);
    return OPG_CUDA_OK;
}
#endif
