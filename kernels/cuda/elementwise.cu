/* elementwise.cu: the CUDA kernels of RMSNorm, RoPE, SwiGLU, add, softmax,
 * embedding lookup and argmax (docs/determinism.md sections 6, 7, 8, 10).
 *
 * Each output value is computed by exactly the operation sequence of its C
 * reference (rmsnorm.c, rope.c, act.c, softmax.c, embed.c + quant.c's
 * opg_dequantize_row_ref, sample.c's opg_argmax_ref), with the shared math of
 * opg_math.h; threads only decide who computes what:
 *   - a canonical sum (RMSNorm's sum of squares, softmax's sum of e_i) gives
 *     each 256-chunk to one thread, which runs the chunk's sequential chain
 *     from +0; thread 0 then adds the chunk partials left to right;
 *   - maxima and argmax reduce (value, index) pairs keeping the lowest index
 *     among equal values, which is exactly the element a sequential strict-">"
 *     scan picks, so even the sign of a zero maximum matches the reference;
 *   - everything else is elementwise (one thread per output value).
 * Block and grid sizes depend only on the shapes. Compiled with -fmad=false:
 * a*b+c below is two roundings; fmaf appears exactly where the reference has
 * fmaf. */
#include <limits.h>
#include <math.h>

#include "argmax.cuh"
#include "common.cuh"
#include "contract.h"
#include "opg_math.h"

#define EW_THREADS 256   /* threads of the reducing kernels (rows) */
#define EW_ELEMS 256     /* threads of the elementwise kernels */
#define EW_MAX_GRID 65535 /* grid-stride loops cover the rest */
#define ROPE_MAX_THREADS 128 /* threads of a RoPE row: one per rotated pair, up to this */

/* ---- block-wide helpers ------------------------------------------------- */

/* Canonical sum of n terms term(k), k in [0, n) (docs/determinism.md sections
 * 4 and 8): chunk c = [256c, 256c+256) is summed by one thread from +0 in
 * increasing k with step(p, k); thread 0 adds the partials left to right
 * (total = p_0, then total + p_c). Returns the total in every thread. */
template <typename Step>
__device__ float block_canonical_sum(int64_t n, Step step) {
    __shared__ float part[EW_THREADS];
    __shared__ float total_sh;
    const int tid = (int)threadIdx.x;
    const int64_t n_chunks = (n + OPG_DOT_CHUNK - 1) / OPG_DOT_CHUNK;
    float total = 0.0f; /* meaningful in thread 0 only */
    for (int64_t r0 = 0; r0 < n_chunks; r0 += EW_THREADS) {
        int64_t c = r0 + tid;
        if (c < n_chunks) {
            int64_t k0 = c * OPG_DOT_CHUNK;
            int64_t k1 = n - k0 < OPG_DOT_CHUNK ? n : k0 + OPG_DOT_CHUNK;
            float p = 0.0f;
            for (int64_t k = k0; k < k1; k++) p = step(p, k);
            part[tid] = p;
        }
        __syncthreads();
        if (tid == 0) {
            int64_t m = n_chunks - r0 < EW_THREADS ? n_chunks - r0 : EW_THREADS;
            for (int64_t j = 0; j < m; j++) total = r0 + j == 0 ? part[j] : total + part[j];
        }
        __syncthreads(); /* part[] is rewritten by the next round */
    }
    if (tid == 0) total_sh = total;
    __syncthreads();
    return total_sh;
}

/* ---- RMSNorm (section 6) -------------------------------------------------- */

/* One block per row: y = (x * inv) * w, inv = 1 / sqrt(ss / D + eps). */
__global__ void __launch_bounds__(EW_THREADS)
rmsnorm_kernel(float *y, const float *x, const float *w, int64_t D, float eps) {
    const float *xr = x + (int64_t)blockIdx.x * D;
    float *yr = y + (int64_t)blockIdx.x * D;
    float ss = block_canonical_sum(D, [xr](float p, int64_t k) { return fmaf(xr[k], xr[k], p); });
    float ms = ss / (float)D;
    float inv = 1.0f / sqrtf(ms + eps);
    for (int64_t i = threadIdx.x; i < D; i += EW_THREADS) yr[i] = (xr[i] * inv) * w[i];
}

extern "C" int opg_cuda_rmsnorm(opg_cuda_stream s, float *y, const float *x, const float *w,
                                int64_t M, int64_t D, float eps) {
    if (M < 0 || D < 0 || M > INT_MAX)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "rmsnorm: bad shape M=%lld D=%lld",
                              (long long)M, (long long)D);
    if (M == 0 || D == 0) return OPG_CUDA_OK;
    rmsnorm_kernel<<<(unsigned)M, EW_THREADS, 0, (cudaStream_t)s>>>(y, x, w, D, eps);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}

/* ---- RoPE (section 7) ----------------------------------------------------- */

/* One block per token; thread i builds table entry i (cos, sin of
 * pos * inv_freq[i] in binary64 with opg_sincos_f64, each rounded once to
 * f32, as opg_rope_table) and rotates pair i of every head. */
__global__ void __launch_bounds__(ROPE_MAX_THREADS)
rope_kernel(float *x, const int32_t *pos, int n_heads, int head_dim, int n_dims,
            const double *inv_freq, int neox) {
    const int64_t t = blockIdx.x;
    const int half = n_dims / 2;
    float *xt = x + t * n_heads * (int64_t)head_dim;
    const int64_t p = pos[t];
    for (int i = (int)threadIdx.x; i < half; i += (int)blockDim.x) {
        double a = (double)p * inv_freq[i];
        double sd, cd;
        opg_sincos_f64(a, &sd, &cd);
        const float cs = (float)cd, sn = (float)sd;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        for (int h = 0; h < n_heads; h++) {
            float *xh = xt + (int64_t)h * head_dim;
            float x0 = xh[i0], x1 = xh[i1];
            float tt = x1 * sn;
            float y0 = fmaf(x0, cs, -tt);
            float u = x1 * cs;
            float y1 = fmaf(x0, sn, u);
            xh[i0] = y0;
            xh[i1] = y1;
        }
    }
}

extern "C" int opg_cuda_rope(opg_cuda_stream s, float *x, int64_t n_tok, const int32_t *pos,
                             int n_heads, int head_dim, int n_dims, const double *inv_freq,
                             opg_rope_mode mode) {
    if (n_tok < 0 || n_tok > INT_MAX || n_heads < 0 || head_dim < 0)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "rope: bad shape n_tok=%lld n_heads=%d head_dim=%d",
                              (long long)n_tok, n_heads, head_dim);
    /* As opg_rope: an n_dims that is odd, <= 0 or > head_dim leaves x unchanged. */
    if (n_tok == 0 || n_heads == 0 || n_dims <= 0 || n_dims > head_dim || n_dims % 2 != 0)
        return OPG_CUDA_OK;
    int half = n_dims / 2;
    int threads = half < ROPE_MAX_THREADS ? (half + 31) / 32 * 32 : ROPE_MAX_THREADS;
    rope_kernel<<<(unsigned)n_tok, threads, 0, (cudaStream_t)s>>>(
        x, pos, n_heads, head_dim, n_dims, inv_freq, mode == OPG_ROPE_NEOX);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}

/* ---- SwiGLU, add (section 8; the residual add) ---------------------------- */

__global__ void __launch_bounds__(EW_ELEMS)
swiglu_kernel(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * EW_ELEMS + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * EW_ELEMS)
        out[i] = opg_siluf(gate[i]) * up[i];
}

__global__ void __launch_bounds__(EW_ELEMS)
add_kernel(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * EW_ELEMS + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * EW_ELEMS)
        y[i] = a[i] + b[i];
}

static unsigned elem_grid(int64_t n) {
    int64_t g = (n + EW_ELEMS - 1) / EW_ELEMS;
    return (unsigned)(g < EW_MAX_GRID ? g : EW_MAX_GRID);
}

extern "C" int opg_cuda_swiglu(opg_cuda_stream s, float *out, const float *gate, const float *up,
                               int64_t n) {
    if (n < 0) return opg_cuda__fail(OPG_CUDA_ERR_ARG, "swiglu: n=%lld", (long long)n);
    if (n == 0) return OPG_CUDA_OK;
    swiglu_kernel<<<elem_grid(n), EW_ELEMS, 0, (cudaStream_t)s>>>(out, gate, up, n);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}

extern "C" int opg_cuda_add(opg_cuda_stream s, float *y, const float *a, const float *b,
                            int64_t n) {
    if (n < 0) return opg_cuda__fail(OPG_CUDA_ERR_ARG, "add: n=%lld", (long long)n);
    if (n == 0) return OPG_CUDA_OK;
    add_kernel<<<elem_grid(n), EW_ELEMS, 0, (cudaStream_t)s>>>(y, a, b, n);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}

/* ---- softmax (section 8) -------------------------------------------------- */

/* One block per row. m = the reference's max (the first of the largest
 * values; -inf when there is none), e_i = opg_expf(x_i - m) written to y by
 * the thread that sums its chunk, s = canonical sum, y_i = e_i / s. */
__global__ void __launch_bounds__(EW_THREADS)
softmax_kernel(float *y, const float *x, int64_t n) {
    __shared__ float m_sh;
    const float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    int64_t im = block_argmax<EW_THREADS>(xr, n, true);
    if (threadIdx.x == 0) m_sh = im < 0 ? -INFINITY : xr[im];
    __syncthreads(); /* m read before any y (which may alias x) is written */
    const float m = m_sh;
    float sum = block_canonical_sum(n, [xr, yr, m](float p, int64_t k) {
        float e = opg_expf(xr[k] - m);
        yr[k] = e;
        return p + e;
    });
    /* block_canonical_sum ends with __syncthreads: every e_k is visible. */
    for (int64_t i = threadIdx.x; i < n; i += EW_THREADS) yr[i] = yr[i] / sum;
}

extern "C" int opg_cuda_softmax(opg_cuda_stream s, float *y, const float *x, int64_t M,
                                int64_t n) {
    if (M < 0 || n < 0 || M > INT_MAX)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "softmax: bad shape M=%lld n=%lld", (long long)M,
                              (long long)n);
    if (M == 0 || n == 0) return OPG_CUDA_OK;
    softmax_kernel<<<(unsigned)M, EW_THREADS, 0, (cudaStream_t)s>>>(y, x, n);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}

/* ---- embedding (section 10): GGUF dequantization of the token's row -------- */

/* ggml's get_scale_min_k4 (quant.c's opg__q4k_scale_min). */
__device__ __forceinline__ void q4k_scale_min(const uint8_t *scales, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* Element e of a row of type t, exactly as opg_dequantize_row_ref computes it. */
__device__ float dequant_elem(const unsigned char *row, opg_dtype t, int64_t e) {
    switch (t) {
    case OPG_F32: return ((const float *)row)[e];
    case OPG_F16: return opg_f16_to_f32(((const uint16_t *)row)[e]);
    case OPG_BF16: return opg_bf16_to_f32(((const uint16_t *)row)[e]);
    case OPG_Q8_0: {
        const opg_block_q8_0 *x = (const opg_block_q8_0 *)row + e / 32;
        float d = opg_f16_to_f32(x->d);
        return d * (float)x->qs[e % 32];
    }
    case OPG_Q4_0: {
        const opg_block_q4_0 *x = (const opg_block_q4_0 *)row + e / 32;
        int l = (int)(e % 32);
        float d = opg_f16_to_f32(x->d);
        int q = l < 16 ? (x->qs[l] & 15) : (x->qs[l - 16] >> 4);
        return d * (float)(q - 8);
    }
    case OPG_Q4_1: {
        const opg_block_q4_1 *x = (const opg_block_q4_1 *)row + e / 32;
        int l = (int)(e % 32);
        float d = opg_f16_to_f32(x->d), m = opg_f16_to_f32(x->m);
        int q = l < 16 ? (x->qs[l] & 15) : (x->qs[l - 16] >> 4);
        return d * (float)q + m;
    }
    case OPG_Q4_K: {
        const opg_block_q4_K *x = (const opg_block_q4_K *)row + e / 256;
        int i = (int)(e % 256), j = i / 32, l = i % 32;
        float d = opg_f16_to_f32(x->d), dmin = opg_f16_to_f32(x->dmin);
        int sc, m;
        q4k_scale_min(x->scales, j, &sc, &m);
        float ds = d * (float)sc, dm = dmin * (float)m;
        const uint8_t *qs = x->qs + 32 * (j / 2);
        int shift = (j % 2) * 4;
        return ds * (float)((qs[l] >> shift) & 15) - dm;
    }
    case OPG_Q6_K: {
        const opg_block_q6_K *x = (const opg_block_q6_K *)row + e / 256;
        int i = (int)(e % 256);
        int h = i / 128, g = (i % 128) / 32, l = i % 32;
        const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
        int lo = g == 0   ? (ql[l] & 15)
                 : g == 1 ? (ql[l + 32] & 15)
                 : g == 2 ? (ql[l] >> 4)
                          : (ql[l + 32] >> 4);
        int hi = (qh[l] >> (2 * g)) & 3;
        float d = opg_f16_to_f32(x->d);
        float ds = d * (float)x->scales[i / 16];
        return ds * (float)((lo | (hi << 4)) - 32);
    }
    case OPG_Q4_0_X8: case OPG_Q4_1_X8: case OPG_Q8_0_X8: case OPG_Q4_K_X8:
    case OPG_Q6_K_X8: break; /* refused by embed_type */
    }
    return 0.0f; /* unreachable: the launcher accepts only the types above */
}

/* Block (token, tile of EW_ELEMS elements). */
__global__ void __launch_bounds__(EW_ELEMS)
embed_kernel(float *out, const unsigned char *table, opg_dtype t, int64_t dim,
             size_t row_bytes, const int32_t *tokens) {
    const int64_t i = blockIdx.x;
    const int64_t e = (int64_t)blockIdx.y * EW_ELEMS + threadIdx.x;
    if (e >= dim) return;
    const unsigned char *row = table + (size_t)tokens[i] * row_bytes;
    out[i * dim + e] = dequant_elem(row, t, e);
}

/* Elements and bytes per block of the types the embedding accepts (dtype.c's
 * tables, repeated here: those functions are C and host-only). */
static int embed_type(opg_dtype t, int64_t *block_elems, size_t *block_bytes) {
    switch (t) {
    case OPG_F32: *block_elems = 1; *block_bytes = 4; return 1;
    case OPG_F16: *block_elems = 1; *block_bytes = 2; return 1;
    case OPG_BF16: *block_elems = 1; *block_bytes = 2; return 1;
    case OPG_Q8_0: *block_elems = 32; *block_bytes = sizeof(opg_block_q8_0); return 1;
    case OPG_Q4_0: *block_elems = 32; *block_bytes = sizeof(opg_block_q4_0); return 1;
    case OPG_Q4_1: *block_elems = 32; *block_bytes = sizeof(opg_block_q4_1); return 1;
    case OPG_Q4_K: *block_elems = 256; *block_bytes = sizeof(opg_block_q4_K); return 1;
    case OPG_Q6_K: *block_elems = 256; *block_bytes = sizeof(opg_block_q6_K); return 1;
    case OPG_Q4_0_X8: case OPG_Q4_1_X8: case OPG_Q8_0_X8: case OPG_Q4_K_X8:
    case OPG_Q6_K_X8: return 0; /* not row-addressable (quant.h) */
    }
    return 0;
}

extern "C" int opg_cuda_embed(opg_cuda_stream s, float *out, const void *table, opg_dtype t,
                              int64_t dim, const int32_t *tokens, int64_t n) {
    int64_t be;
    size_t bb;
    if (!embed_type(t, &be, &bb))
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "embed: unsupported type %d", (int)t);
    int64_t tiles = (dim + EW_ELEMS - 1) / EW_ELEMS;
    if (dim <= 0 || dim % be != 0 || n < 0 || n > INT_MAX || tiles > EW_MAX_GRID)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "embed: bad shape dim=%lld n=%lld for type %d",
                              (long long)dim, (long long)n, (int)t);
    if (n == 0) return OPG_CUDA_OK;
    size_t row_bytes = (size_t)(dim / be) * bb;
    dim3 grid((unsigned)n, (unsigned)tiles);
    embed_kernel<<<grid, EW_ELEMS, 0, (cudaStream_t)s>>>(out, (const unsigned char *)table, t, dim,
                                                          row_bytes, tokens);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}

/* ---- argmax (section 10) -------------------------------------------------- */

__global__ void __launch_bounds__(EW_THREADS)
argmax_kernel(int64_t *out, const float *x, int64_t n) {
    int64_t i = block_argmax<EW_THREADS>(x, n, false);
    if (threadIdx.x == 0) *out = i < 0 ? 0 : i; /* all NaN (or n = 0): index 0 */
}

extern "C" int opg_cuda_argmax(opg_cuda_stream s, int64_t *host_out, const float *x, int64_t n) {
    if (n < 0) return opg_cuda__fail(OPG_CUDA_ERR_ARG, "argmax: n=%lld", (long long)n);
    cudaStream_t st = (cudaStream_t)s;
    int64_t *d_out = NULL;
    /* from the device's pool; where there are no pools, cudaMalloc */
    const bool pooled = cudaMallocAsync((void **)&d_out, sizeof *d_out, st) == cudaSuccess;
    if (!pooled) {
        (void)cudaGetLastError();
        OPG_CUDA_CHECK(cudaMalloc((void **)&d_out, sizeof *d_out));
    }
    argmax_kernel<<<1, EW_THREADS, 0, st>>>(d_out, x, n);
    /* The slot is freed on every path; the first error is the one reported. */
    cudaError_t e = cudaGetLastError();
    const char *what = "argmax_kernel launch";
    if (e == cudaSuccess) {
        e = cudaMemcpyAsync(host_out, d_out, sizeof *d_out, cudaMemcpyDeviceToHost, st);
        what = "cudaMemcpyAsync(host_out)";
    }
    cudaError_t ef = pooled ? cudaFreeAsync(d_out, st) : cudaSuccess;
    if (e == cudaSuccess && ef != cudaSuccess) e = ef, what = "cudaFreeAsync";
    if (e == cudaSuccess) e = cudaStreamSynchronize(st), what = "cudaStreamSynchronize";
    ef = pooled ? cudaSuccess : cudaFree(d_out); /* after the copy: cudaFree waits for the device */
    if (e == cudaSuccess && ef != cudaSuccess) e = ef, what = "cudaFree";
    if (e != cudaSuccess)
        return opg_cuda__fail(OPG_CUDA_ERR_LAUNCH, "argmax: %s failed at %s:%d: %s", what,
                              __FILE__, __LINE__, cudaGetErrorString(e));
    return OPG_CUDA_OK;
}
