/* sample.cu: temperature/top-k/top-p sampling on the device
 * (docs/determinism.md section 10), the same token as sample.c's
 * opg_sample_ref.
 *
 *  - greedy (T <= 0 or NaN, or top_k == 1): the block argmax of argmax.cuh,
 *    -1 when every logit is NaN;
 *  - otherwise the order (logit desc, id asc), NaN dropped, comes from a
 *    stable radix sort (CUB) of keys that order the logits descending as
 *    numbers: -0 is keyed as +0, so equal values keep their ids ascending,
 *    and NaN gets the largest key, so the NaN are the sorted tail. The first
 *    min(top_k, non-NaN) ids are the reference's (its partial selection gives
 *    a full sort's prefix). Then e_j = opg_expf(l_j / T - z_first) for every
 *    kept j in parallel (each e_j is one element's own sequence), and one
 *    thread runs the sequential sums of the spec (S, the top-p prefix, S',
 *    the walk with r = u * S') in opg__sample_pick, the reference's own
 *    code (sample_impl.h). u = opg_rng_uniform(seed, step) is the
 *    reference's own value, computed on the host by the launcher. */
#include <cub/device/device_radix_sort.cuh>

#include "argmax.cuh"
#include "common.cuh"
#include "opg_math.h"
#include "sample.h"
#include "sample_impl.h"

namespace {

constexpr int SAMPLE_THREADS = 256;
constexpr uint32_t NAN_KEY = 0xffffffffu;

/* Ascending keys = logits descending as numbers; NaN last. */
__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_keys(uint32_t *keys, int32_t *ids, const float *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float l = x[i];
        uint32_t key = NAN_KEY;
        if (l == l) {
            const uint32_t b = opg_f32_bits(l == 0.0f ? 0.0f : l); /* -0 ties with +0 */
            const uint32_t up = (b & 0x80000000u) ? ~b : (b | 0x80000000u); /* ascending */
            key = ~up; /* descending; -inf gives 0xff800000 < NAN_KEY */
        }
        keys[i] = key;
        ids[i] = (int32_t)i;
    }
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_greedy(int64_t *out, const float *x, int64_t n) {
    const int64_t i = block_argmax<SAMPLE_THREADS>(x, n, false);
    if (threadIdx.x == 0) *out = i; /* -1: every logit NaN */
}

/* The reference's steps after the order, given the sorted keys and ids. */
__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_finish(int64_t *out, const float *x, int64_t n, const uint32_t *keys,
              const int32_t *ids, float *e, float T, int32_t top_k, float P,
              float u) {
    __shared__ int64_t kept_sh;
    __shared__ float zfirst_sh;
    const int tid = (int)threadIdx.x;
    if (tid == 0) {
        /* non-NaN count: the NaN keys are the sorted tail */
        int64_t lo = 0, hi = n;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (keys[mid] == NAN_KEY) hi = mid;
            else lo = mid + 1;
        }
        int64_t kept = top_k > 0 && (int64_t)top_k < n ? (int64_t)top_k : n;
        if (kept > lo) kept = lo;
        float zf = 0.0f;
        if (kept == 0) {
            *out = -1; /* every logit NaN */
        } else {
            zf = x[ids[0]] / T;
            if (zf - zf != 0.0f) { /* infinite z_first: the top token */
                *out = ids[0];
                kept = 0;
            }
        }
        kept_sh = kept;
        zfirst_sh = zf;
    }
    __syncthreads();
    int64_t kept = kept_sh;
    if (kept == 0) return;
    const float zf = zfirst_sh;
    for (int64_t j = tid; j < kept; j += SAMPLE_THREADS) {
        const float z = x[ids[j]] / T;
        e[j] = opg_expf(z - zf);
    }
    __syncthreads(); /* e[] written by the block, read by thread 0 */
    if (tid == 0) *out = ids[opg__sample_pick(e, kept, P, u)];
}

/* Scratch layout: keys in/out, ids in/out, e, then CUB's temporary storage,
 * each 256-byte aligned. */
struct sample_layout {
    size_t keys_in, keys_out, ids_in, ids_out, e, temp, temp_bytes, total;
};

size_t align256(size_t v) { return (v + 255) & ~(size_t)255; }

int layout_for(int64_t n, sample_layout *L) {
    size_t temp_bytes = 0;
    cudaError_t e = cub::DeviceRadixSort::SortPairs(
        nullptr, temp_bytes, (const uint32_t *)nullptr, (uint32_t *)nullptr,
        (const int32_t *)nullptr, (int32_t *)nullptr, (int)n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    const size_t v = align256((size_t)n * 4);
    L->keys_in = 0;
    L->keys_out = v;
    L->ids_in = 2 * v;
    L->ids_out = 3 * v;
    L->e = 4 * v;
    L->temp = 5 * v;
    L->temp_bytes = temp_bytes;
    L->total = 5 * v + align256(temp_bytes);
    return 0;
}

constexpr int64_t MAX_SAMPLE_N = 0x7fffffff; /* CUB's item count and the ids are int */

} // namespace

extern "C" size_t opg_cuda_sample_scratch_bytes(int64_t n) {
    if (n <= 0 || n > MAX_SAMPLE_N) return 0;
    sample_layout L;
    return layout_for(n, &L) == 0 ? L.total : 0;
}

extern "C" int opg_cuda_sample(opg_cuda_stream s, int64_t *out, const float *x, int64_t n,
                               const opg_sample_params *p, uint64_t step, void *scratch) {
    if (!out || !p || n > MAX_SAMPLE_N || (n > 0 && !x))
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "opg_cuda_sample: n=%lld or a NULL argument",
                              (long long)n);
    cudaStream_t st = (cudaStream_t)s;
    if (n <= 0) {
        OPG_CUDA_CHECK(cudaMemsetAsync(out, 0xff, sizeof *out, st)); /* -1 */
        return OPG_CUDA_OK;
    }
    const float T = p->temperature;
    if (!(T > 0.0f) || p->top_k == 1) {
        sample_greedy<<<1, SAMPLE_THREADS, 0, st>>>(out, x, n);
        OPG_CUDA_CHECK_LAUNCH();
        return OPG_CUDA_OK;
    }
    sample_layout L;
    if (layout_for(n, &L) != 0)
        return opg_cuda__fail(OPG_CUDA_ERR_LAUNCH, "opg_cuda_sample: CUB cannot size its sort");
    if (!scratch || ((uintptr_t)scratch & 255) != 0)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG,
                              "opg_cuda_sample: scratch NULL or not 256-byte aligned (needs %zu "
                              "bytes)", L.total);
    char *b = (char *)scratch;
    uint32_t *keys_in = (uint32_t *)(b + L.keys_in), *keys_out = (uint32_t *)(b + L.keys_out);
    int32_t *ids_in = (int32_t *)(b + L.ids_in), *ids_out = (int32_t *)(b + L.ids_out);
    int64_t grid = (n + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    if (grid > 65535) grid = 65535; /* the kernel strides over the rest */
    sample_keys<<<(unsigned)grid, SAMPLE_THREADS, 0, st>>>(keys_in, ids_in, x, n);
    OPG_CUDA_CHECK_LAUNCH();
    size_t temp_bytes = L.temp_bytes;
    OPG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(b + L.temp, temp_bytes, keys_in, keys_out,
                                                   ids_in, ids_out, (int)n, 0, 32, st));
    const float u = opg_rng_uniform(p->seed, step); /* the reference's own draw */
    sample_finish<<<1, SAMPLE_THREADS, 0, st>>>(out, x, n, keys_out, ids_out,
                                                (float *)(b + L.e), T, p->top_k, p->top_p, u);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}
