/* backend.h: the interface between the model code and whatever runs the ops.
 *
 * The model (model.c) only ever calls these functions on opaque buffers;
 * the cpu backend (backend_cpu.c) runs the kernels/ reference-equivalent
 * paths on host memory, the cuda backend (cuda/backend_cuda.c) the CUDA kernels on device
 * memory. Every op has the bits docs/determinism.md defines, so the model's
 * outputs and trace do not depend on the backend.
 *
 * Buffers hold f32 activations (or raw weight bytes); offsets and sizes are
 * in bytes unless the parameter says elements. */
#ifndef OPG_BACKEND_H
#define OPG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "rope.h"
#include "sample.h"
#include "status.h"

typedef struct opg_backend opg_backend;
typedef struct opg_buf opg_buf;

/* A view into a buffer: base + byte offset. Ops take views so the model can
 * address rows of a batch or a cache slot without copies. A view of f32
 * values (activations, f32 weights) must be at a multiple of 4 bytes, one of
 * other weights at a multiple of 2 (the cuda backend refuses others with
 * OPG_ERR_ARG; upload, download and copy take any offset). */
typedef struct {
    opg_buf *buf;
    size_t off;
} opg_view;

typedef struct opg_backend_ops {
    const char *name; /* "cpu", "cuda" */
    void (*destroy)(opg_backend *be);
    /* Memory. alloc returns zeroed memory; free(NULL) is a no-op. */
    opg_status (*alloc)(opg_backend *be, size_t bytes, opg_buf **out);
    void (*free)(opg_backend *be, opg_buf *b);
    opg_status (*upload)(opg_backend *be, opg_view dst, const void *src, size_t bytes);
    opg_status (*download)(opg_backend *be, void *dst, opg_view src, size_t bytes);
    /* Weights that already live in host memory (an mmap'd GGUF): the cpu
     * backend wraps them without a copy, a device backend uploads them. */
    opg_status (*wrap_weights)(opg_backend *be, const void *host, size_t bytes, opg_buf **out);
    /* Optional (NULL: wrap_weights): a weight matrix [N][K] of GGUF type wt
     * for matmul. The backend may lay it out anew for its kernels (the cpu
     * backend: quantized types as their _X8 ones in a copy, kernels/quant.h,
     * same values); *out_wt is the type to give matmul with it. A tied
     * output's rows are embedded from that copy too, so embed must accept
     * every type this returns. The backend neither changes nor releases host. */
    opg_status (*wrap_matrix)(opg_backend *be, const void *host, size_t bytes, opg_dtype wt,
                              int64_t N, int64_t K, opg_buf **out, opg_dtype *out_wt);

    /* ---- ops (all f32 activations, row-major, rows contiguous) ---- */
    /* y[M][N] = x[M][K] * w[N][K]^T (+ bias[N], f32 view or buf NULL) */
    opg_status (*matmul)(opg_backend *be, opg_view y, opg_view x, opg_view w, opg_dtype wt,
                         opg_view bias, int64_t M, int64_t N, int64_t K);
    /* y[M][D] = rmsnorm(x) * w */
    opg_status (*rmsnorm)(opg_backend *be, opg_view y, opg_view x, opg_view w, int64_t M,
                          int64_t D, float eps);
    /* x[n_tok][n_heads*head_dim] rotated in place; pos: host array of n_tok positions;
     * inv_freq: host table of n_dims/2 binary64 frequencies. */
    opg_status (*rope)(opg_backend *be, opg_view x, int64_t n_tok, const int32_t *pos,
                       int n_heads, int head_dim, int n_dims, const double *inv_freq,
                       opg_rope_mode mode);
    /* Causal attention of n_q queries at pos0.. over cache rows 0..pos0+n_q-1. */
    opg_status (*attention)(opg_backend *be, opg_view out, opg_view q, opg_view k, opg_view v,
                            int64_t n_q, int64_t pos0, int n_head, int n_kv, int head_dim,
                            float scale);
    /* out[n] = silu(gate[n]) * up[n] */
    opg_status (*swiglu)(opg_backend *be, opg_view out, opg_view gate, opg_view up, int64_t n);
    /* y[n] = a[n] + b[n] (one rounding each) */
    opg_status (*add)(opg_backend *be, opg_view y, opg_view a, opg_view b, int64_t n);
    /* out[n][dim] = rows tokens[] (host array) of table; checks token range */
    opg_status (*embed)(opg_backend *be, opg_view out, opg_view table, opg_dtype t, int64_t dim,
                        int64_t n_vocab, const int32_t *tokens, int64_t n);
    /* Copies bytes between views of this backend. */
    opg_status (*copy)(opg_backend *be, opg_view dst, opg_view src, size_t bytes);
    /* Trace fingerprints (docs/determinism.md, "Trace") of n rows of len f32
     * each, row stride `stride` elements, written to host out[n]. */
    opg_status (*fingerprint)(opg_backend *be, uint64_t *out, opg_view x, int64_t n,
                              int64_t len, int64_t stride);
    /* *token = opg_sample_ref of the n f32 logits at `logits` for step `step`
     * of a job (docs/determinism.md section 10; the cuda backend samples on
     * the device): -1 when n <= 0 or every logit is NaN. Synchronizes: the
     * token is on the host when it returns. */
    opg_status (*sample)(opg_backend *be, int64_t *token, opg_view logits, int64_t n,
                         const opg_sample_params *p, uint64_t step);
    /* Returns when every op enqueued so far has finished (a no-op on the cpu,
     * whose ops finish before they return); where an asynchronous device
     * fault surfaces. For timing and for callers that read results some other
     * way than download. */
    opg_status (*sync)(opg_backend *be);
    /* The device it runs on, for humans ("NVIDIA H100 80GB HBM3 (sm_90, ...)");
     * NULL for the cpu backend. */
    const char *(*device)(opg_backend *be);
} opg_backend_ops;

struct opg_backend {
    const opg_backend_ops *ops;
};

/* The cpu backend with n_threads workers (<= 0: one per CPU). Caller owns it:
 * opg_backend_free. */
opg_status opg_backend_cpu_new(int n_threads, opg_backend **out);
/* The cuda backend on CUDA device `device` (0-based), runtime/cuda/backend_cuda.c:
 * device buffers (one cudaMalloc each, zeroed), weights uploaded once by
 * wrap_weights, KV caches and workspace in device memory, one stream per
 * backend on which every op is enqueued in order; upload, download and
 * fingerprint synchronize. At creation a one-element kernel runs and is
 * checked, so a device the kernels cannot run on is refused here, not
 * mid-job. Errors:
 *   OPG_ERR_UNSUPPORTED  opg built without CUDA, no usable driver or device,
 *                        or the kernels cannot run on it (message says which);
 *   OPG_ERR_ARG          device out of range; an op's view outside its buffer;
 *   OPG_ERR_NOMEM        "cuda backend: out of device memory allocating N
 *                        bytes (free F of T)";
 *   OPG_ERR_STATE        a CUDA call or kernel failed (the device or context
 *                        is then unusable: free the backend).
 * Exists in every build (callers need no #ifdef). Caller owns *out:
 * opg_backend_free. */
opg_status opg_backend_cuda_new(int device, opg_backend **out);
/* Usable CUDA devices; 0 when built without CUDA or without driver/device. */
int opg_backend_cuda_devices(void);

/* A backend by name: "cpu"; "cuda" (device 0) or "cuda:N"; "auto" (or NULL):
 * the cuda backend on device 0 when it can be created, else the cpu backend.
 * n_threads is the cpu backend's (see opg_backend_cpu_new). When auto falls
 * back to cpu, *notice (if notice is not NULL) gets a one-line explanation
 * without a trailing newline (thread-local static text, valid until the
 * next call), else NULL; the binary decides whether to print it. "cuda" never
 * falls back: it fails as opg_backend_cuda_new does. OPG_ERR_ARG for an
 * unknown name. Caller owns *out: opg_backend_free. */
opg_status opg_backend_new_auto(const char *name, int n_threads, opg_backend **out,
                                const char **notice);
/* Whether opg_backend_new_auto knows name ("auto" or NULL, "cpu", "cuda",
 * "cuda:N" with N <= 1024), whether or not that device exists here: a name
 * it does not know is the user's mistake (usage), a device that is missing
 * is not. */
int opg_backend_name_ok(const char *name);
/* Frees any backend; NULL is a no-op. */
void opg_backend_free(opg_backend *be);
/* be's device name ("" when it has none, as on the cpu). */
const char *opg_backend_device(opg_backend *be);

static inline opg_view opg_view_of(opg_buf *b, size_t off) {
    opg_view v = {b, off};
    return v;
}

#endif
