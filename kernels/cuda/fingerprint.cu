/* fingerprint.cu: the trace fingerprint of docs/determinism.md section 12 on
 * the GPU, equal to runtime/trace.c's opg_trace_fingerprint: XXH3-64 of each
 * leaf of 1024 floats (the last may be shorter; every NaN hashed as
 * 0x7fc00000, read so, not copied), then XXH3-64 of the leaf
 * hashes as little-endian bytes. The hash is opg_xxh3.h, the same source the
 * host test (tests/test_xxh3.c) checks against libxxhash.
 *
 * One block per row: its threads hash the leaves in parallel (one leaf per
 * thread) into shared memory, then thread 0 hashes the leaf hashes. */
#include <limits.h>

#include "common.cuh"
#include "opg_xxh3.h"

#define FP_LEAF_FLOATS 1024 /* = OPG_TRACE_LEAF_FLOATS (runtime/trace.h) */
#define FP_THREADS 128
#define FP_MAX_LEAVES 4096 /* 32 KB of leaf hashes in shared memory: rows up to 4M floats */

__global__ void __launch_bounds__(FP_THREADS)
fingerprint_kernel(uint64_t *out, const float *x, int64_t len, int64_t stride) {
    __shared__ uint8_t leaves[FP_MAX_LEAVES * 8];
    const float *row = x + (int64_t)blockIdx.x * stride;
    if (len <= 0) { /* opg_trace_fingerprint of an empty row: XXH3 of no bytes */
        if (threadIdx.x == 0) out[blockIdx.x] = opg_xxh3_64(NULL, 0);
        return;
    }
    const int64_t n_leaves = (len + FP_LEAF_FLOATS - 1) / FP_LEAF_FLOATS;
    for (int64_t i = threadIdx.x; i < n_leaves; i += FP_THREADS) {
        int64_t n = len - i * FP_LEAF_FLOATS;
        if (n > FP_LEAF_FLOATS) n = FP_LEAF_FLOATS;
        uint64_t h = opg_xxh3_64_f32(row + i * FP_LEAF_FLOATS, (size_t)n); /* NaN as 0x7fc00000 */
        for (int b = 0; b < 8; b++) leaves[8 * i + b] = (uint8_t)(h >> (8 * b));
    }
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = opg_xxh3_64(leaves, (size_t)n_leaves * 8);
}

extern "C" int opg_cuda_fingerprint(opg_cuda_stream s, uint64_t *out, const float *x, int64_t n,
                                    int64_t len, int64_t stride) {
    if (n < 0 || n > INT_MAX || len < 0 || stride < 0 ||
        (len + FP_LEAF_FLOATS - 1) / FP_LEAF_FLOATS > FP_MAX_LEAVES)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG,
                              "fingerprint: bad shape n=%lld len=%lld stride=%lld (len <= %d)",
                              (long long)n, (long long)len, (long long)stride,
                              FP_MAX_LEAVES * FP_LEAF_FLOATS);
    if (n == 0) return OPG_CUDA_OK;
    fingerprint_kernel<<<(unsigned)n, FP_THREADS, 0, (cudaStream_t)s>>>(out, x, len, stride);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}
