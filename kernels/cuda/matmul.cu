/* matmul.cu: float-weight matmul on CUDA, Y[M][N] = X[M][K] * W[N][K]^T
 * (+ bias), W f32, f16 or bf16 (converted exactly), with the canonical
 * chunked order of docs/determinism.md section 4 for every output:
 *
 *   p_c = +0; p_c = fmaf(w[k], x[k], p_c) for k in chunk c (256 k's), in order
 *   total = p_0; total = total + p_c for c = 1, 2, ...; total = total + bias
 *
 * Two kernels, chosen by M only (never by the device), same bits:
 *  - gemv_float (M <= 8): a CTA of 8 warps owns 32 weight rows x MB
 *    activation rows; lane = weight row, warp = chunk: the warps compute
 *    chunks 8r..8r+7 (split-K on chunk boundaries), each lane running its
 *    chunk's fmas in k order from a shared-memory tile; the 8 chunk partials
 *    are then folded into the running totals in chunk order by warp mm for
 *    activation row mm.
 *  - gemm_float (M > 8): a 64x64 output tile per CTA of 256 threads, 4x4
 *    outputs per thread, K in tiles of 32 (which never straddle a chunk);
 *    one accumulator per output per chunk, folded into the total at each
 *    chunk boundary.
 * The quantized path (section 5) lives in quant.cu; opg_cuda_matmul there
 * dispatches to opg_cuda__matmul_float below. */
#include "common.cuh"
#include "matmul_seq.h"

namespace {

constexpr int CHUNK = OPG_DOT_CHUNK;

/* Weight element i (flat index) of a matrix of type T, as an exact f32. */
template <int T> __device__ __forceinline__ float wload(const void *w, int64_t i) {
    return opg_cu_wf32(w, T, i);
}

/* ---- GEMV ------------------------------------------------------------------ */

constexpr int GV_WARPS = 8;  /* chunks in flight per CTA */
constexpr int GV_ROWS = 32;  /* weight rows per CTA = lanes */
constexpr int GV_KT = 16;    /* k's per shared tile (divides CHUNK) */

template <int T, int MB>
__global__ void __launch_bounds__(GV_WARPS * 32)
gemv_float(float *__restrict__ y, const float *__restrict__ x, const void *__restrict__ w,
           const float *__restrict__ bias, int64_t M, int64_t N, int64_t K) {
    __shared__ float ws[GV_WARPS][GV_ROWS][GV_KT + 1]; /* +1: lanes read rows */
    __shared__ float xs[GV_WARPS][MB][GV_KT];
    __shared__ float part[GV_WARPS][MB][GV_ROWS];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n0 = (int64_t)blockIdx.x * GV_ROWS;
    const int64_t nchunks = (K + CHUNK - 1) / CHUNK;
    const int64_t mgroups = (M + MB - 1) / MB;

    for (int64_t mg = blockIdx.y; mg < mgroups; mg += gridDim.y) {
        const int64_t m0 = mg * MB;
        float total = 0.0f; /* output (m0 + warp, n0 + lane) when warp < MB; K == 0: +0 */
        for (int64_t cr = 0; cr < nchunks; cr += GV_WARPS) {
            const int64_t c = cr + warp;
            float acc[MB];
#pragma unroll
            for (int mm = 0; mm < MB; mm++) acc[mm] = 0.0f;
            if (c < nchunks) { /* warp-uniform */
                const int64_t kb = c * CHUNK, ke = K - kb < CHUNK ? K : kb + CHUNK;
                for (int64_t k0 = kb; k0 < ke; k0 += GV_KT) {
                    const int kn = ke - k0 < GV_KT ? (int)(ke - k0) : GV_KT;
                    for (int i = lane; i < GV_ROWS * GV_KT; i += 32) {
                        const int r = i / GV_KT, kk = i % GV_KT;
                        const int64_t n = n0 + r, k = k0 + kk;
                        ws[warp][r][kk] = (n < N && kk < kn) ? wload<T>(w, n * K + k) : 0.0f;
                    }
                    for (int i = lane; i < MB * GV_KT; i += 32) {
                        const int mm = i / GV_KT, kk = i % GV_KT;
                        const int64_t m = m0 + mm, k = k0 + kk;
                        xs[warp][mm][kk] = (m < M && kk < kn) ? x[m * K + k] : 0.0f;
                    }
                    __syncwarp();
                    for (int kk = 0; kk < kn; kk++) { /* k in increasing order */
                        const float wv = ws[warp][lane][kk];
#pragma unroll
                        for (int mm = 0; mm < MB; mm++)
                            acc[mm] = __fmaf_rn(wv, xs[warp][mm][kk], acc[mm]);
                    }
                    __syncwarp();
                }
            }
#pragma unroll
            for (int mm = 0; mm < MB; mm++) part[warp][mm][lane] = acc[mm];
            __syncthreads();
            if (warp < MB) {
                for (int j = 0; j < GV_WARPS && cr + j < nchunks; j++) /* chunk order */
                    total = opg_cu_fold(total, part[j][warp][lane], cr + j);
            }
            __syncthreads();
        }
        if (warp < MB) {
            const int64_t m = m0 + warp, n = n0 + lane;
            if (m < M && n < N) {
                if (bias) total = total + bias[n];
                y[m * N + n] = total;
            }
        }
    }
}

/* ---- GEMM ------------------------------------------------------------------ */

constexpr int GM_BM = 64, GM_BN = 64, GM_BK = 32; /* GM_BK divides CHUNK */
constexpr int GM_THREADS = 256;                    /* 16 x 16, 4 x 4 outputs each */

template <int T>
__global__ void __launch_bounds__(GM_THREADS)
gemm_float(float *__restrict__ y, const float *__restrict__ x, const void *__restrict__ w,
           const float *__restrict__ bias, int64_t M, int64_t N, int64_t K) {
    __shared__ float xs[GM_BK][GM_BM + 1]; /* k-major; +1: conflict-free stores */
    __shared__ float ws[GM_BK][GM_BN + 1];

    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t n0 = (int64_t)blockIdx.x * GM_BN;
    const int64_t nchunks = (K + CHUNK - 1) / CHUNK;
    const int64_t mtiles = (M + GM_BM - 1) / GM_BM;

    for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {
        const int64_t m0 = mt * GM_BM;
        /* this thread's outputs: m = m0 + ty + 16 i, n = n0 + tx + 16 j */
        float total[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) total[i][j] = 0.0f; /* K == 0: +0 */
        for (int64_t c = 0; c < nchunks; c++) {
            const int64_t kb = c * CHUNK, ke = K - kb < CHUNK ? K : kb + CHUNK;
            float acc[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
            for (int64_t k0 = kb; k0 < ke; k0 += GM_BK) {
                const int kn = ke - k0 < GM_BK ? (int)(ke - k0) : GM_BK;
                for (int i = tid; i < GM_BM * GM_BK; i += GM_THREADS) {
                    const int r = i / GM_BK, kk = i % GM_BK;
                    const int64_t m = m0 + r, n = n0 + r, k = k0 + kk;
                    xs[kk][r] = (m < M && kk < kn) ? x[m * K + k] : 0.0f;
                    ws[kk][r] = (n < N && kk < kn) ? wload<T>(w, n * K + k) : 0.0f;
                }
                __syncthreads();
                for (int kk = 0; kk < kn; kk++) { /* k in increasing order */
                    float a[4], b[4];
#pragma unroll
                    for (int i = 0; i < 4; i++) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
                    for (int j = 0; j < 4; j++) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
                    for (int i = 0; i < 4; i++)
#pragma unroll
                        for (int j = 0; j < 4; j++) acc[i][j] = __fmaf_rn(b[j], a[i], acc[i][j]);
                }
                __syncthreads();
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) total[i][j] = opg_cu_fold(total[i][j], acc[i][j], c);
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int64_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
                if (m < M && n < N) {
                    float v = total[i][j];
                    if (bias) v = v + bias[n];
                    y[m * N + n] = v;
                }
            }
        }
    }
}

constexpr int64_t MAX_GRID_Y = 65535;

template <int T, int MB>
void launch_gemv(cudaStream_t s, float *y, const float *x, const void *w, const float *bias,
                 int64_t M, int64_t N, int64_t K) {
    const int64_t gy = (M + MB - 1) / MB;
    dim3 grid((unsigned)((N + GV_ROWS - 1) / GV_ROWS), (unsigned)(gy < MAX_GRID_Y ? gy : MAX_GRID_Y));
    gemv_float<T, MB><<<grid, GV_WARPS * 32, 0, s>>>(y, x, w, bias, M, N, K);
}

template <int T>
void launch_float(cudaStream_t s, float *y, const float *x, const void *w, const float *bias,
                  int64_t M, int64_t N, int64_t K) {
    if (M == 1) launch_gemv<T, 1>(s, y, x, w, bias, M, N, K);
    else if (M == 2) launch_gemv<T, 2>(s, y, x, w, bias, M, N, K);
    else if (M <= 4) launch_gemv<T, 4>(s, y, x, w, bias, M, N, K);
    else if (M <= 8) launch_gemv<T, 8>(s, y, x, w, bias, M, N, K);
    else {
        const int64_t gy = (M + GM_BM - 1) / GM_BM;
        dim3 grid((unsigned)((N + GM_BN - 1) / GM_BN), (unsigned)(gy < MAX_GRID_Y ? gy : MAX_GRID_Y));
        gemm_float<T><<<grid, GM_THREADS, 0, s>>>(y, x, w, bias, M, N, K);
    }
}

} // namespace

/* Float path of opg_cuda_matmul (called from quant.cu after the argument
 * checks: wt is f32/f16/bf16, M, N > 0, K >= 0, N / 32 fits a grid). */
int opg_cuda__matmul_float(cudaStream_t s, float *y, const float *x, const void *w, opg_dtype wt,
                           const float *bias, int64_t M, int64_t N, int64_t K) {
    switch (wt) {
    case OPG_F32: launch_float<OPG_F32>(s, y, x, w, bias, M, N, K); break;
    case OPG_F16: launch_float<OPG_F16>(s, y, x, w, bias, M, N, K); break;
    case OPG_BF16: launch_float<OPG_BF16>(s, y, x, w, bias, M, N, K); break;
    default: return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_matmul: %d is not a float type", (int)wt);
    }
    OPG_CUDA_CHECK(cudaGetLastError());
    return OPG_CUDA_OK;
}
