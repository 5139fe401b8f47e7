/* quant.cu: the integer path of quantized weights on CUDA
 * (docs/determinism.md section 5) and opg_cuda_matmul, the launcher that
 * dispatches float weights to matmul.cu and quantized ones here.
 *
 *  - quantize_act: one warp per 32-element activation block, lane i = x_i.
 *    amax = the |x_i| with the largest bit pattern (a warp max of the bit
 *    patterns: exact, and a NaN orders above +inf as in quant.c);
 *    d = amax / 127.0f; q_i = opg_cu_q8a_value(x_i, d) (rint of the IEEE
 *    quotient, clamped; NaN gives 0); sum = exact warp sum of the q_i.
 *  - qmatmul: one warp per weight row n and MB activation rows; the row's
 *    chunks (8 blocks = 256 elements) are walked in order. Inside a chunk,
 *    lane 4b + p computes the exact integer part p (8 elements) of block b;
 *    the 4 parts are added by shuffles (integers: exact in any order); then
 *    every lane runs the 8 f32 block terms of the spec in block order from
 *    acc = +0 (opg_cu_qterm, shared with the host test), and folds the chunk
 *    into the total (total = p_0, then total + p_c), then + bias.
 * The work split depends only on the shapes. */
#include "common.cuh"
#include "matmul_seq.h"

/* matmul.cu */
int opg_cuda__matmul_float(cudaStream_t s, float *y, const float *x, const void *w, opg_dtype wt,
                           const float *bias, int64_t M, int64_t N, int64_t K);

namespace {

constexpr unsigned FULL = 0xffffffffu;
constexpr int QA_WARPS = 8; /* activation blocks per CTA */

__global__ void __launch_bounds__(QA_WARPS * 32)
quantize_act(opg_block_q8a *__restrict__ out, const float *__restrict__ x, int64_t nblocks) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t b = (int64_t)blockIdx.x * QA_WARPS + warp; b < nblocks;
         b += (int64_t)gridDim.x * QA_WARPS) { /* warp-uniform */
        const float xi = x[b * OPG_QK + lane]; /* rows are K = nb * 32 floats: flat */
        uint32_t bits = opg_f32_bits(xi) & 0x7fffffffu; /* |x_i| as bits, NaN payload kept */
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) bits = max(bits, __shfl_xor_sync(FULL, bits, off));
        const float amax = opg_bits_f32(bits);
        const float d = amax / 127.0f;
        const int q = opg_cu_q8a_value(xi, d);
        int sum = q;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(FULL, sum, off);
        out[b].qs[lane] = (int8_t)q;
        if (lane == 0) {
            out[b].d = d;
            out[b].sum = sum;
        }
    }
}

constexpr int QM_WARPS = 4; /* weight rows per CTA */

template <int T, int MB>
__global__ void __launch_bounds__(QM_WARPS * 32)
qmatmul(float *__restrict__ y, const opg_block_q8a *__restrict__ xq,
        const unsigned char *__restrict__ w, size_t row_bytes, const float *__restrict__ bias,
        int64_t M, int64_t N, int64_t K) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int bl = lane >> 2, p = lane & 3; /* block in chunk, part of block */
    const int64_t n = (int64_t)blockIdx.x * QM_WARPS + warp;
    if (n >= N) return; /* warp-uniform; no block-wide barrier below */
    const unsigned char *wrow = w + (size_t)n * row_bytes;
    const int64_t nb = K / OPG_QK, nchunks = (nb + OPG_QCHUNK_BLOCKS - 1) / OPG_QCHUNK_BLOCKS;
    const int64_t mgroups = (M + MB - 1) / MB;

    for (int64_t mg = blockIdx.y; mg < mgroups; mg += gridDim.y) {
        const int64_t m0 = mg * MB;
        float total[MB];
#pragma unroll
        for (int mm = 0; mm < MB; mm++) total[mm] = 0.0f; /* K == 0: +0 */
        for (int64_t c = 0; c < nchunks; c++) {
            const int64_t b0 = c * OPG_QCHUNK_BLOCKS;
            const int nbc = nb - b0 < OPG_QCHUNK_BLOCKS ? (int)(nb - b0) : OPG_QCHUNK_BLOCKS;
            /* exact integer sums: lane (bl, p) -> part p of block b0 + bl */
            int32_t I[MB];
#pragma unroll
            for (int mm = 0; mm < MB; mm++) {
                I[mm] = 0;
                const int64_t m = m0 + mm;
                if (bl < nbc && m < M)
                    I[mm] = opg_cu_qpart(wrow, T, b0 + bl, p, xq[m * nb + b0 + bl].qs + 8 * p);
                I[mm] += __shfl_xor_sync(FULL, I[mm], 1);
                I[mm] += __shfl_xor_sync(FULL, I[mm], 2);
            }
            /* the f32 terms in block order, then the chunk fold */
#pragma unroll
            for (int mm = 0; mm < MB; mm++) {
                const int64_t m = m0 + mm;
                float acc = 0.0f;
                for (int j = 0; j < nbc; j++) { /* nbc is warp-uniform */
                    const int32_t Ij = __shfl_sync(FULL, I[mm], 4 * j);
                    if (m < M) acc = opg_cu_qterm(wrow, T, b0 + j, &xq[m * nb + b0 + j], Ij, acc);
                }
                total[mm] = opg_cu_fold(total[mm], acc, c);
            }
        }
        if (lane == 0) {
#pragma unroll
            for (int mm = 0; mm < MB; mm++) {
                const int64_t m = m0 + mm;
                if (m < M) {
                    float v = total[mm];
                    if (bias) v = v + bias[n];
                    y[m * N + n] = v;
                }
            }
        }
    }
}

constexpr int64_t MAX_GRID_Y = 65535;
constexpr int64_t MAX_GRID_X = 2147483647;

template <int T, int MB>
void launch_q(cudaStream_t s, float *y, const opg_block_q8a *xq, const void *w, size_t row_bytes,
              const float *bias, int64_t M, int64_t N, int64_t K) {
    const int64_t gy = (M + MB - 1) / MB;
    dim3 grid((unsigned)((N + QM_WARPS - 1) / QM_WARPS), (unsigned)(gy < MAX_GRID_Y ? gy : MAX_GRID_Y));
    qmatmul<T, MB><<<grid, QM_WARPS * 32, 0, s>>>(y, xq, (const unsigned char *)w, row_bytes,
                                                  bias, M, N, K);
}

template <int T>
void launch_qt(cudaStream_t s, float *y, const opg_block_q8a *xq, const void *w, size_t row_bytes,
               const float *bias, int64_t M, int64_t N, int64_t K) {
    if (M == 1) launch_q<T, 1>(s, y, xq, w, row_bytes, bias, M, N, K);
    else if (M == 2) launch_q<T, 2>(s, y, xq, w, row_bytes, bias, M, N, K);
    else if (M <= 4) launch_q<T, 4>(s, y, xq, w, row_bytes, bias, M, N, K);
    else launch_q<T, 8>(s, y, xq, w, row_bytes, bias, M, N, K);
}

} // namespace

extern "C" size_t opg_cuda_matmul_scratch_bytes(int64_t M, int64_t K) {
    if (M <= 0 || K <= 0) return 0;
    return (size_t)M * (size_t)(K / OPG_QK) * sizeof(opg_block_q8a);
}

extern "C" int opg_cuda_quantize_act(opg_cuda_stream s, opg_block_q8a *out, const float *x,
                                     int64_t M, int64_t K) {
    if (M < 0 || K < 0 || K % OPG_QK != 0)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_quantize_act: bad shape M=%lld K=%lld",
                              (long long)M, (long long)K);
    const int64_t nblocks = M * (K / OPG_QK);
    if (nblocks == 0) return OPG_CUDA_OK;
    if (!out || !x)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_quantize_act: NULL buffer");
    int64_t grid = (nblocks + QA_WARPS - 1) / QA_WARPS;
    if (grid > MAX_GRID_X) grid = MAX_GRID_X; /* the kernel strides over the rest */
    quantize_act<<<(unsigned)grid, QA_WARPS * 32, 0, (cudaStream_t)s>>>(out, x, nblocks);
    OPG_CUDA_CHECK(cudaGetLastError());
    return OPG_CUDA_OK;
}

extern "C" int opg_cuda_matmul(opg_cuda_stream s, float *y, const float *x, const void *w,
                               opg_dtype wt, const float *bias, int64_t M, int64_t N, int64_t K,
                               void *xq_scratch) {
    const int be = opg_dtype_block_elems(wt);
    if (be == 0 || M < 0 || N < 0 || K < 0 || K % be != 0)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG,
                              "opg_cuda_matmul: unsupported type %d or shape M=%lld N=%lld K=%lld",
                              (int)wt, (long long)M, (long long)N, (long long)K);
    if (M == 0 || N == 0) return OPG_CUDA_OK;
    if (!y || (K > 0 && (!x || !w)))
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_matmul: NULL buffer");
    cudaStream_t st = (cudaStream_t)s;
    if (!opg_dtype_is_quant(wt)) {
        if ((N + 31) / 32 > MAX_GRID_X)
            return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_matmul: N=%lld too large",
                                  (long long)N);
        return opg_cuda__matmul_float(st, y, x, w, wt, bias, M, N, K);
    }
    if ((N + QM_WARPS - 1) / QM_WARPS > MAX_GRID_X)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_matmul: N=%lld too large", (long long)N);
    opg_block_q8a *xq = (opg_block_q8a *)xq_scratch;
    if (K > 0) {
        if (!xq || ((uintptr_t)xq % alignof(opg_block_q8a)) != 0)
            return opg_cuda__fail(OPG_CUDA_ERR_ARG,
                                  "opg_cuda_matmul: xq_scratch NULL or misaligned (needs %zu bytes)",
                                  opg_cuda_matmul_scratch_bytes(M, K));
        int r = opg_cuda_quantize_act(s, xq, x, M, K);
        if (r != OPG_CUDA_OK) return r;
    }
    const size_t row_bytes = opg_dtype_row_bytes(wt, K);
    switch (wt) {
    case OPG_Q8_0: launch_qt<OPG_Q8_0>(st, y, xq, w, row_bytes, bias, M, N, K); break;
    case OPG_Q4_0: launch_qt<OPG_Q4_0>(st, y, xq, w, row_bytes, bias, M, N, K); break;
    case OPG_Q4_1: launch_qt<OPG_Q4_1>(st, y, xq, w, row_bytes, bias, M, N, K); break;
    case OPG_Q4_K: launch_qt<OPG_Q4_K>(st, y, xq, w, row_bytes, bias, M, N, K); break;
    case OPG_Q6_K: launch_qt<OPG_Q6_K>(st, y, xq, w, row_bytes, bias, M, N, K); break;
    default:
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_matmul: type %d has no CUDA kernel",
                              (int)wt);
    }
    OPG_CUDA_CHECK(cudaGetLastError());
    return OPG_CUDA_OK;
}
