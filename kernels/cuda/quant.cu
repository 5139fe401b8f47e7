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
 *    into the total (total = p_0, then total + p_c), then + bias. The parts
 *    are two dp4a each over packed weight words (opg_cu_qword).
 *  - qmatmul_tc (M > 8 on sm_72 and later): int8 tensor cores (wmma 16x16x16,
 *    s8 x s8 -> s32) compute the exact integer sum of every (row, weight row,
 *    block) of a 64x64 output tile, one 32-block at a time: the block's
 *    activation and weight words go to shared memory, each warp multiplies
 *    its 16 activation rows by the 64 weight rows (the two 16-element halves
 *    accumulated, or kept apart and combined with their scales for Q6_K),
 *    stores the int32 sums, and every lane then takes the f32 term of its 32
 *    outputs in block order, exactly as qmatmul does.
 * Which kernel runs depends on M and the build's PTX target, never on data;
 * both give the same bits (integers are exact; the f32 steps are the same). */
#include <atomic>
#include <mma.h>

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

/* ---- int8 tensor cores ---------------------------------------------------------- */

constexpr int TC_WARPS = 4;               /* a warp per 16 activation rows */
constexpr int TC_TM = 16 * TC_WARPS;      /* activation rows per CTA */
constexpr int TC_TN = 64;                 /* weight rows per CTA */
constexpr int TC_MIN_M = 9;               /* below: qmatmul (GEMV-like shapes) */

template <int T>
__global__ void __launch_bounds__(TC_WARPS * 32)
qmatmul_tc(float *__restrict__ y, const opg_block_q8a *__restrict__ xq,
           const unsigned char *__restrict__ w, size_t row_bytes, const float *__restrict__ bias,
           int64_t M, int64_t N, int64_t K) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 720
    using namespace nvcuda;
    constexpr int HALVES = T == OPG_Q6_K ? 2 : 1; /* int32 sums kept per half */
    /* one 32-block: [half][row][16 values]; wmma wants 256-bit aligned tiles */
    __shared__ __align__(32) int8_t As[2][TC_TM][16];
    __shared__ __align__(32) int8_t Bs[2][TC_TN][16];
    __shared__ __align__(32) int32_t Is[TC_WARPS][HALVES][16][TC_TN];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t n0 = (int64_t)blockIdx.x * TC_TN, m0 = (int64_t)blockIdx.y * TC_TM;
    const int64_t nb = K / OPG_QK, nchunks = (nb + OPG_QCHUNK_BLOCKS - 1) / OPG_QCHUNK_BLOCKS;
    /* lane's outputs: rows m0 + 16 warp + r (r < 16), weight rows n0 + lane + 32 cc */
    float total[16][2], acc[16][2];
#pragma unroll
    for (int r = 0; r < 16; r++) total[r][0] = total[r][1] = 0.0f; /* K == 0: +0 */

    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t b0 = c * OPG_QCHUNK_BLOCKS;
        const int nbc = nb - b0 < OPG_QCHUNK_BLOCKS ? (int)(nb - b0) : OPG_QCHUNK_BLOCKS;
#pragma unroll
        for (int r = 0; r < 16; r++) acc[r][0] = acc[r][1] = 0.0f;
        for (int j = 0; j < nbc; j++) {
            const int64_t blk = b0 + j;
            __syncthreads(); /* the previous block's tiles are consumed */
            /* 8 words per row: word g holds elements 4g..4g+3 (half g / 4) */
            for (int i = tid; i < TC_TM * 8; i += TC_WARPS * 32) {
                const int r = i >> 3, g = i & 7;
                const int64_t m = m0 + r;
                uint32_t v = 0; /* rows past M multiply as zeros */
                if (m < M) v = opg_cu_ld32((const uint8_t *)xq[m * nb + blk].qs + 4 * g);
                reinterpret_cast<uint32_t *>(As[g >> 2][r])[g & 3] = v;
            }
            for (int i = tid; i < TC_TN * 8; i += TC_WARPS * 32) {
                const int r = i >> 3, g = i & 7;
                const int64_t n = n0 + r;
                uint32_t v = 0;
                if (n < N) v = opg_cu_qword(w + (size_t)n * row_bytes, T, blk, g);
                reinterpret_cast<uint32_t *>(Bs[g >> 2][r])[g & 3] = v;
            }
            __syncthreads();
            /* the warp's 16 rows x 64 weight rows of exact block sums */
            wmma::fragment<wmma::matrix_a, 16, 16, 16, signed char, wmma::row_major> fa[2];
            wmma::load_matrix_sync(fa[0], &As[0][16 * warp][0], 16);
            wmma::load_matrix_sync(fa[1], &As[1][16 * warp][0], 16);
#pragma unroll
            for (int nf = 0; nf < TC_TN / 16; nf++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, signed char, wmma::col_major> fb;
                wmma::fragment<wmma::accumulator, 16, 16, 16, int> fc;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    if (h == 0 || HALVES == 2) wmma::fill_fragment(fc, 0);
                    wmma::load_matrix_sync(fb, &Bs[h][16 * nf][0], 16);
                    wmma::mma_sync(fc, fa[h], fb, fc);
                    if (h == 1 || HALVES == 2)
                        wmma::store_matrix_sync(&Is[warp][HALVES == 2 ? h : 0][0][16 * nf], fc,
                                                TC_TN, wmma::mem_row_major);
                }
            }
            __syncwarp();
            /* the f32 term of each of the lane's outputs, in block order */
#pragma unroll
            for (int cc = 0; cc < 2; cc++) {
                const int64_t n = n0 + lane + 32 * cc;
                if (n >= N) continue;
                const unsigned char *wrow = w + (size_t)n * row_bytes;
#pragma unroll
                for (int r = 0; r < 16; r++) {
                    const int64_t m = m0 + 16 * warp + r;
                    if (m >= M) continue;
                    int32_t I = Is[warp][0][r][lane + 32 * cc];
                    if (HALVES == 2)
                        I = opg_cu_q6k_combine(wrow, blk, I, Is[warp][HALVES - 1][r][lane + 32 * cc]);
                    acc[r][cc] = opg_cu_qterm(wrow, T, blk, &xq[m * nb + blk], I, acc[r][cc]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < 16; r++) {
            total[r][0] = opg_cu_fold(total[r][0], acc[r][0], c);
            total[r][1] = opg_cu_fold(total[r][1], acc[r][1], c);
        }
    }
#pragma unroll
    for (int cc = 0; cc < 2; cc++) {
        const int64_t n = n0 + lane + 32 * cc;
        if (n >= N) continue;
#pragma unroll
        for (int r = 0; r < 16; r++) {
            const int64_t m = m0 + 16 * warp + r;
            if (m >= M) continue;
            float v = total[r][cc];
            if (bias) v = v + bias[n];
            y[m * N + n] = v;
        }
    }
#else
    __trap(); /* never launched: tc_usable sees the PTX target below 72 */
#endif
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

/* Whether qmatmul_tc<T> as loaded on device dev has its tensor-core body:
 * the PTX target it was built from (the build's architectures, JIT included)
 * decides, not the device; below sm_72 the body is __trap(). Cached per
 * device; backends on several host threads may ask at once (every one
 * computes the same answer). */
template <int T>
bool tc_usable(int dev) {
    static std::atomic<signed char> known[64]; /* 0 unknown, 1 yes, -1 no */
    const bool cached = dev >= 0 && dev < 64;
    const signed char k = cached ? known[dev].load(std::memory_order_relaxed) : 0;
    if (k) return k > 0;
    cudaFuncAttributes a;
    bool ok = cudaFuncGetAttributes(&a, qmatmul_tc<T>) == cudaSuccess && a.ptxVersion >= 72;
    (void)cudaGetLastError();
    if (cached) known[dev].store(ok ? 1 : -1, std::memory_order_relaxed);
    return ok;
}

/* qmatmul_tc covers M in grid.y tiles of 64 rows: up to 65535 of them. */
template <int T>
void launch_tc(cudaStream_t s, float *y, const opg_block_q8a *xq, const void *w, size_t row_bytes,
               const float *bias, int64_t M, int64_t N, int64_t K) {
    dim3 grid((unsigned)((N + TC_TN - 1) / TC_TN), (unsigned)((M + TC_TM - 1) / TC_TM));
    qmatmul_tc<T><<<grid, TC_WARPS * 32, 0, s>>>(y, xq, (const unsigned char *)w, row_bytes, bias,
                                                 M, N, K);
}

template <int T>
void launch_qt(cudaStream_t s, float *y, const opg_block_q8a *xq, const void *w, size_t row_bytes,
               const float *bias, int64_t M, int64_t N, int64_t K, bool tc) {
    if (tc) launch_tc<T>(s, y, xq, w, row_bytes, bias, M, N, K);
    else if (M == 1) launch_q<T, 1>(s, y, xq, w, row_bytes, bias, M, N, K);
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
    /* the _X8 layouts are the CPU's (quant.h); device weights stay GGUF's */
    if (be == 0 || opg_dtype_is_x8(wt) || M < 0 || N < 0 || K < 0 || K % be != 0)
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
    /* int8 tensor cores for GEMM shapes where the device has them (wmma s8:
     * sm_72 and later); same bits either way */
    const bool tc_shape = M >= TC_MIN_M && (M + TC_TM - 1) / TC_TM <= MAX_GRID_Y;
    int dev = 0;
    if (tc_shape) OPG_CUDA_CHECK(cudaGetDevice(&dev));
    switch (wt) {
    case OPG_Q8_0: launch_qt<OPG_Q8_0>(st, y, xq, w, row_bytes, bias, M, N, K, tc_shape && tc_usable<OPG_Q8_0>(dev)); break;
    case OPG_Q4_0: launch_qt<OPG_Q4_0>(st, y, xq, w, row_bytes, bias, M, N, K, tc_shape && tc_usable<OPG_Q4_0>(dev)); break;
    case OPG_Q4_1: launch_qt<OPG_Q4_1>(st, y, xq, w, row_bytes, bias, M, N, K, tc_shape && tc_usable<OPG_Q4_1>(dev)); break;
    case OPG_Q4_K: launch_qt<OPG_Q4_K>(st, y, xq, w, row_bytes, bias, M, N, K, tc_shape && tc_usable<OPG_Q4_K>(dev)); break;
    case OPG_Q6_K: launch_qt<OPG_Q6_K>(st, y, xq, w, row_bytes, bias, M, N, K, tc_shape && tc_usable<OPG_Q6_K>(dev)); break;
    default:
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_matmul: type %d has no CUDA kernel",
                              (int)wt);
    }
    OPG_CUDA_CHECK(cudaGetLastError());
    return OPG_CUDA_OK;
}
