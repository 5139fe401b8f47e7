/* opg_cuda.h: launchers of the CUDA kernels (kernels/cuda/<op>.cu), one per
 * op, callable from C. Each runs exactly the operation sequence of its C
 * reference (docs/determinism.md), so its output bits equal the CPU's.
 *
 * Conventions (STYLE.md): every pointer argument is device memory unless
 * named host_*; every launcher takes the stream to run on, checks its shapes,
 * launches, calls cudaGetLastError through OPG_CUDA_CHECK and returns 0, or
 * a negative opg_cuda error code with a message in opg_cuda_last_error().
 * Launchers never synchronize unless they say so. Work splits (grid sizes,
 * split-K on chunk boundaries) depend only on the shapes, never on the
 * device, so every GPU model gives the same bits. */
#ifndef OPG_CUDA_H
#define OPG_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "rope.h"
#include "sample.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *opg_cuda_stream; /* = cudaStream_t */

enum {
    OPG_CUDA_OK = 0,
    OPG_CUDA_ERR_LAUNCH = -1,  /* a CUDA runtime call or launch failed */
    OPG_CUDA_ERR_ARG = -2,     /* shape or type not supported */
    OPG_CUDA_ERR_NOMEM = -3,   /* device allocation failed */
};

/* Message of the last failing launcher on this thread (names the statement,
 * file and line of the failing CUDA call). */
const char *opg_cuda_last_error(void);

/* Number of usable CUDA devices (0 when no driver or no device). */
int opg_cuda_device_count(void);

/* ---- matmul (section 4, 5) -------------------------------------------------- */
/* y[M][N] = x[M][K] * w[N][K]^T (+ bias[N] or NULL), float or quantized w.
 * xq_scratch: device buffer of at least opg_cuda_matmul_scratch_bytes(M, K)
 * bytes for the quantized activations (may be NULL for float weights). */
int opg_cuda_matmul(opg_cuda_stream s, float *y, const float *x, const void *w, opg_dtype wt,
                    const float *bias, int64_t M, int64_t N, int64_t K, void *xq_scratch);
size_t opg_cuda_matmul_scratch_bytes(int64_t M, int64_t K);
/* Activation quantization alone (opg_block_q8a blocks, M rows of K/32). */
int opg_cuda_quantize_act(opg_cuda_stream s, opg_block_q8a *out, const float *x, int64_t M,
                          int64_t K);

/* ---- elementwise and normalisation (sections 6, 7, 8, 10) ------------------ */
int opg_cuda_rmsnorm(opg_cuda_stream s, float *y, const float *x, const float *w, int64_t M,
                     int64_t D, float eps);
/* pos: device int32[n_tok]; inv_freq: device double[n_dims/2]. */
int opg_cuda_rope(opg_cuda_stream s, float *x, int64_t n_tok, const int32_t *pos, int n_heads,
                  int head_dim, int n_dims, const double *inv_freq, opg_rope_mode mode);
int opg_cuda_swiglu(opg_cuda_stream s, float *out, const float *gate, const float *up, int64_t n);
int opg_cuda_add(opg_cuda_stream s, float *y, const float *a, const float *b, int64_t n);
int opg_cuda_softmax(opg_cuda_stream s, float *y, const float *x, int64_t M, int64_t n);
/* tokens: device int32[n], already range-checked by the caller. */
int opg_cuda_embed(opg_cuda_stream s, float *out, const void *table, opg_dtype t, int64_t dim,
                   const int32_t *tokens, int64_t n);
/* host_out[0] = argmax of x[0..n) (lowest index on ties, NaN ignored); synchronizes. */
int opg_cuda_argmax(opg_cuda_stream s, int64_t *host_out, const float *x, int64_t n);

/* ---- sampling (section 10) ---------------------------------------------------- */
/* Device scratch opg_cuda_sample needs for n logits (0 when n <= 0 or n >= 2^31). */
size_t opg_cuda_sample_scratch_bytes(int64_t n);
/* out[0] (device int64) = opg_sample_ref(x, n, p, step): the token id, -1
 * when n <= 0 or every logit is NaN. x: device f32[n]; p: host; scratch:
 * device, opg_cuda_sample_scratch_bytes(n) bytes, 256-byte aligned (unused
 * for greedy sampling, may then be NULL). Does not synchronize. */
int opg_cuda_sample(opg_cuda_stream s, int64_t *out, const float *x, int64_t n,
                    const opg_sample_params *p, uint64_t step, void *scratch);

/* ---- attention (section 9) --------------------------------------------------- */
/* Device scratch the attention of this shape needs: the segment states of a
 * long context split across blocks (0 when it is not split, or the shape is
 * invalid). */
size_t opg_cuda_attention_scratch_bytes(int64_t n_q, int64_t pos0, int n_head, int head_dim);
/* scratch: device, opg_cuda_attention_scratch_bytes(...) bytes, 4-byte
 * aligned (may be NULL when that is 0). */
int opg_cuda_attention(opg_cuda_stream s, float *out, const float *q, const float *k,
                       const float *v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                       int head_dim, float scale, void *scratch);

/* ---- trace (section 12) ------------------------------------------------------ */
/* out[i] = opg_trace_fingerprint of row i (len floats, rows stride apart),
 * device out[n]. */
int opg_cuda_fingerprint(opg_cuda_stream s, uint64_t *out, const float *x, int64_t n,
                         int64_t len, int64_t stride);

#ifdef __cplusplus
}
#endif

#endif
