/* argmax.cuh: the block-wide argmax of the contract (docs/determinism.md
 * section 10), shared by elementwise.cu (softmax's maximum, argmax) and
 * sample.cu (greedy sampling). */
#ifndef OPG_CUDA_ARGMAX_CUH
#define OPG_CUDA_ARGMAX_CUH

#include <math.h>
#include <stdint.h>

/* Index of the largest non-NaN x[i], i in [0, n), lowest index on ties
 * (values compare as numbers: -0 == +0); -1 when there is none. With
 * skip_neg_inf, -inf elements are skipped too (a scan from m = -inf with
 * strict > never takes them). Call with THREADS threads in the block, from
 * all of them. Returns the index in every thread. */
namespace { /* one copy per .cu: no symbol shared across objects */

template <int THREADS>
__device__ __forceinline__ int64_t block_argmax(const float *x, int64_t n, bool skip_neg_inf) {
    static_assert(THREADS > 0 && (THREADS & (THREADS - 1)) == 0, "the tree halves THREADS");
    __shared__ float bv[THREADS];
    __shared__ int64_t bi[THREADS];
    const int tid = (int)threadIdx.x;
    float v = 0.0f;
    int64_t idx = -1;
    /* Each thread scans its own indices in increasing order with strict >,
     * so it keeps the lowest index of its maximum. */
    for (int64_t i = tid; i < n; i += THREADS) {
        float xi = x[i];
        if (xi != xi) continue;
        if (skip_neg_inf && !(xi > -INFINITY)) continue;
        if (idx < 0 || xi > v) {
            v = xi;
            idx = i;
        }
    }
    bv[tid] = v;
    bi[tid] = idx;
    __syncthreads();
    /* Tree over threads: the winner of two candidates is the larger value, or
     * the lower index of equal values; the result does not depend on the tree. */
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) {
            float ov = bv[tid + s];
            int64_t oi = bi[tid + s];
            int64_t mi = bi[tid];
            float mv = bv[tid];
            if (oi >= 0 && (mi < 0 || ov > mv || (ov == mv && oi < mi))) {
                bv[tid] = ov;
                bi[tid] = oi;
            }
        }
        __syncthreads();
    }
    int64_t r = bi[0];
    __syncthreads(); /* bi[] may be reused by a later call */
    return r;
}

} // namespace

#endif
