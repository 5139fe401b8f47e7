/* attention.cu: causal attention with GQA over the KV cache on the GPU
 * (docs/determinism.md section 9), the bits of attention.c's reference.
 *
 * Work: one block of ATT_THREADS threads per (query, head) pair, or per
 * (query, head, segment) when a long context is split. The canonical order is
 * kept as follows; everything else is a choice of who computes what.
 *   - Scores of a tile of up to 128 keys (4 chunks of 32, all inside one
 *     segment) in parallel, one key per thread: the canonical dot (a
 *     sequential fma chain from +0 per 256-dim chunk, partials added left to
 *     right) of q and the key row, then one rounded multiply by scale.
 *   - The online softmax walks the chunks of the tile in key order. Its
 *     scalars (chunk max, new max, alpha, lc, l, m) are computed by every
 *     thread with the same operations on the same shared values, so all hold
 *     the same bits; p_j = opg_expf(s_j - mn) is computed once per key into
 *     shared memory; lc is the sequential sum of p_j in key order.
 *   - Each thread owns up to 4 of the head's dims (d = tid + 128r) and runs,
 *     per chunk, oc = fma-chain of p_j * v_j[d] in key order from +0, then
 *     acc_d = fmaf(acc_d, alpha, oc).
 *   - Chunks (32 keys) and segments (1024 keys) start at absolute multiples
 *     of 32 and 1024, so a query at position t gives the same bits in any
 *     prefill or decode. Segments are merged left to right with the
 *     reference's merge, either in the same block (attn_pair_kernel) or,
 *     when a long context would leave too few blocks, after computing every
 *     segment in its own block (attn_segment_kernel + attn_merge_kernel).
 * Compiled with -fmad=false: every fma is the explicit fmaf of the spec. */
#include <limits.h>
#include <math.h>

#include "common.cuh"
#include "contract.h"
#include "opg_math.h"

#define ATT_THREADS 128                       /* threads per block */
#define ATT_TILE ATT_THREADS                  /* keys scored together (4 chunks) */
#define ATT_MAX_HEAD_DIM 512                  /* = OPG_ATTN_MAX_HEAD_DIM (attention.h) */
#define ATT_DPT (ATT_MAX_HEAD_DIM / ATT_THREADS) /* dims per thread */
/* Split long contexts into per-segment blocks when there are fewer (query,
 * head) pairs than this; a shape-only choice (both paths give the same bits). */
#define ATT_SPLIT_PAIRS 512

static_assert(ATT_TILE % OPG_ATTN_KCHUNK == 0 && OPG_ATTN_SEGMENT % ATT_TILE == 0,
              "tiles must hold whole chunks and tile a segment");

/* attention_impl.h's opg__attn_maxf: b wins only when b > a. */
__device__ __forceinline__ float attn_maxf(float a, float b) { return b > a ? b : a; }

/* Canonical dot of section 4 (attention.c's dot_canonical). */
__device__ __forceinline__ float dot_canonical(const float *a, const float *b, int n) {
    float total = 0.0f;
    for (int c0 = 0; c0 < n; c0 += OPG_DOT_CHUNK) {
        int c1 = n - c0 < OPG_DOT_CHUNK ? n : c0 + OPG_DOT_CHUNK;
        float p = 0.0f;
        for (int d = c0; d < c1; d++) p = fmaf(a[d], b[d], p);
        total = c0 == 0 ? p : total + p;
    }
    return total;
}

/* Shared memory of one block. */
struct attn_smem {
    float q[ATT_MAX_HEAD_DIM]; /* the query row of the pair */
    float s[ATT_TILE];         /* scores of the current tile */
    float p[ATT_TILE];         /* opg_expf(s_j - mn) of the current tile */
};

/* State of one segment (or of the merged prefix); m and l are the same in
 * every thread, acc[r] belongs to dim threadIdx.x + r * ATT_THREADS. */
struct attn_state {
    float m, l;
    float acc[ATT_DPT];
};

/* The (query, head) pair a block works on. */
struct attn_pair {
    const float *kh, *vh; /* row 0 of this KV head; rows `stride` floats apart */
    int64_t stride;
    int64_t t; /* absolute position of the query: keys 0..t */
};

__device__ attn_pair pair_setup(attn_smem *sm, const float *q, const float *k, const float *v,
                                int64_t pair, int64_t pos0, int n_head, int n_kv, int hd) {
    const int64_t i = pair / n_head;
    const int h = (int)(pair % n_head);
    const int kvh = h / (n_head / n_kv);
    attn_pair pr;
    pr.stride = (int64_t)n_kv * hd;
    pr.kh = k + (int64_t)kvh * hd;
    pr.vh = v + (int64_t)kvh * hd;
    pr.t = pos0 + i;
    const float *qh = q + (i * n_head + h) * hd;
    for (int d = (int)threadIdx.x; d < hd; d += ATT_THREADS) sm->q[d] = qh[d];
    __syncthreads();
    return pr;
}

/* Online softmax of keys [k0, k1), k0 a multiple of OPG_ATTN_SEGMENT
 * (attention.c's segment_ref). Called by all threads of the block. */
__device__ __forceinline__ void attn_segment(attn_state *st, attn_smem *sm, const attn_pair &pr,
                                             int64_t k0, int64_t k1, int hd, float scale) {
    const int tid = (int)threadIdx.x;
    float m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int r = 0; r < ATT_DPT; r++) st->acc[r] = 0.0f;
    for (int64_t t0 = k0; t0 < k1; t0 += ATT_TILE) {
        const int nt = k1 - t0 < ATT_TILE ? (int)(k1 - t0) : ATT_TILE;
        __syncthreads(); /* everyone is done with the previous tile's s and p */
        if (tid < nt) sm->s[tid] = dot_canonical(sm->q, pr.kh + (t0 + tid) * pr.stride, hd) * scale;
        __syncthreads();
        for (int c = 0; c < nt; c += OPG_ATTN_KCHUNK) {
            const int n = nt - c < OPG_ATTN_KCHUNK ? nt - c : OPG_ATTN_KCHUNK;
            const float *s = sm->s + c;
            float mc = s[0];
            for (int j = 1; j < n; j++) mc = attn_maxf(mc, s[j]);
            const float mn = attn_maxf(m, mc);
            const float alpha = opg_expf(m - mn); /* first chunk: opg_expf(-inf) = +0 */
            if (tid >= c && tid < c + n) sm->p[tid] = opg_expf(sm->s[tid] - mn);
            __syncthreads();
            const float *p = sm->p + c;
            float lc = 0.0f;
            for (int j = 0; j < n; j++) lc = lc + p[j];
            l = fmaf(l, alpha, lc);
            const float *vc = pr.vh + (t0 + c) * pr.stride;
#pragma unroll
            for (int r = 0; r < ATT_DPT; r++) {
                const int d = tid + r * ATT_THREADS;
                if (d < hd) {
                    float oc = 0.0f;
                    for (int j = 0; j < n; j++) oc = fmaf(p[j], vc[j * pr.stride + d], oc);
                    st->acc[r] = fmaf(st->acc[r], alpha, oc);
                }
            }
            m = mn;
        }
    }
    st->m = m;
    st->l = l;
}

/* state = merge(state, b) (attention.c's merge of segment g into the prefix). */
__device__ __forceinline__ void attn_merge(attn_state *a, const attn_state *b, int hd) {
    const float mm = attn_maxf(a->m, b->m);
    const float fa = opg_expf(a->m - mm), fb = opg_expf(b->m - mm);
    a->l = fmaf(a->l, fa, b->l * fb);
#pragma unroll
    for (int r = 0; r < ATT_DPT; r++)
        if ((int)threadIdx.x + r * ATT_THREADS < hd)
            a->acc[r] = fmaf(a->acc[r], fa, b->acc[r] * fb);
    a->m = mm;
}

/* One block per (query, head): segments in order, merged as they come. */
__global__ void __launch_bounds__(ATT_THREADS)
attn_pair_kernel(float *out, const float *q, const float *k, const float *v,
                 int64_t pos0, int n_head, int n_kv, int hd, float scale) {
    __shared__ attn_smem sm;
    const int64_t pair = blockIdx.x;
    const attn_pair pr = pair_setup(&sm, q, k, v, pair, pos0, n_head, n_kv, hd);
    attn_state st, sb;
    const int64_t end0 = pr.t + 1 < OPG_ATTN_SEGMENT ? pr.t + 1 : OPG_ATTN_SEGMENT;
    attn_segment(&st, &sm, pr, 0, end0, hd, scale);
    for (int64_t g0 = OPG_ATTN_SEGMENT; g0 <= pr.t; g0 += OPG_ATTN_SEGMENT) {
        const int64_t g1 = pr.t + 1 - g0 < OPG_ATTN_SEGMENT ? pr.t + 1 : g0 + OPG_ATTN_SEGMENT;
        attn_segment(&sb, &sm, pr, g0, g1, hd, scale);
        attn_merge(&st, &sb, hd);
    }
    float *o = out + pair * hd;
#pragma unroll
    for (int r = 0; r < ATT_DPT; r++) {
        const int d = (int)threadIdx.x + r * ATT_THREADS;
        if (d < hd) o[d] = st.acc[r] / st.l;
    }
}

/* Split path, step 1: block (pair, segment g) writes the segment's state to
 * seg[pair][g] = {m, l, acc[0..hd)} (hd + 2 floats), for g <= t / 1024. */
__global__ void __launch_bounds__(ATT_THREADS)
attn_segment_kernel(float *seg, const float *q, const float *k, const float *v,
                    int64_t pos0, int n_head, int n_kv, int hd, float scale,
                    int n_seg) {
    __shared__ attn_smem sm;
    const int64_t pair = blockIdx.x;
    const int64_t g0 = (int64_t)blockIdx.y * OPG_ATTN_SEGMENT;
    if (g0 > pos0 + pair / n_head) return; /* whole block: the query does not reach it */
    const attn_pair pr = pair_setup(&sm, q, k, v, pair, pos0, n_head, n_kv, hd);
    const int64_t g1 = pr.t + 1 - g0 < OPG_ATTN_SEGMENT ? pr.t + 1 : g0 + OPG_ATTN_SEGMENT;
    attn_state st;
    attn_segment(&st, &sm, pr, g0, g1, hd, scale);
    float *o = seg + (pair * n_seg + blockIdx.y) * (int64_t)(hd + 2);
    if (threadIdx.x == 0) {
        o[0] = st.m;
        o[1] = st.l;
    }
#pragma unroll
    for (int r = 0; r < ATT_DPT; r++) {
        const int d = (int)threadIdx.x + r * ATT_THREADS;
        if (d < hd) o[2 + d] = st.acc[r];
    }
}

/* Split path, step 2: block per pair merges its segments left to right and
 * divides, with the operations of attn_pair_kernel. */
__global__ void __launch_bounds__(ATT_THREADS)
attn_merge_kernel(float *out, const float *seg, int64_t pos0, int n_head, int hd,
                  int n_seg) {
    const int64_t pair = blockIdx.x;
    const int64_t t = pos0 + pair / n_head;
    const float *sp = seg + pair * n_seg * (int64_t)(hd + 2);
    attn_state st, sb;
    st.m = sp[0];
    st.l = sp[1];
#pragma unroll
    for (int r = 0; r < ATT_DPT; r++) {
        const int d = (int)threadIdx.x + r * ATT_THREADS;
        st.acc[r] = d < hd ? sp[2 + d] : 0.0f;
    }
    for (int64_t g = 1; g * OPG_ATTN_SEGMENT <= t; g++) {
        const float *sg = sp + g * (hd + 2);
        sb.m = sg[0];
        sb.l = sg[1];
#pragma unroll
        for (int r = 0; r < ATT_DPT; r++) {
            const int d = (int)threadIdx.x + r * ATT_THREADS;
            sb.acc[r] = d < hd ? sg[2 + d] : 0.0f;
        }
        attn_merge(&st, &sb, hd);
    }
    float *o = out + pair * hd;
#pragma unroll
    for (int r = 0; r < ATT_DPT; r++) {
        const int d = (int)threadIdx.x + r * ATT_THREADS;
        if (d < hd) o[d] = st.acc[r] / st.l;
    }
}

/* The split (segment + merge kernels) is taken when the context spans more
 * than one segment and there are too few (query, head) pairs to fill the
 * device; a shape-only choice. n_seg: segments of the last query, the one
 * that sees the most keys. */
static bool attn_split(int64_t n_q, int64_t pos0, int n_head, int64_t *n_seg) {
    *n_seg = (pos0 + n_q + OPG_ATTN_SEGMENT - 1) / OPG_ATTN_SEGMENT;
    return *n_seg > 1 && n_q * n_head < ATT_SPLIT_PAIRS;
}

extern "C" size_t opg_cuda_attention_scratch_bytes(int64_t n_q, int64_t pos0, int n_head,
                                                   int head_dim) {
    int64_t n_seg;
    if (n_q <= 0 || pos0 < 0 || n_head <= 0 || head_dim <= 0 || head_dim > ATT_MAX_HEAD_DIM ||
        n_q > INT_MAX || pos0 > INT64_MAX / 2 || !attn_split(n_q, pos0, n_head, &n_seg) ||
        n_seg > 65535)
        return 0;
    return (size_t)(n_q * n_head) * (size_t)n_seg * (size_t)(head_dim + 2) * sizeof(float);
}

extern "C" int opg_cuda_attention(opg_cuda_stream s, float *out, const float *q, const float *k,
                                  const float *v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                                  int head_dim, float scale, void *scratch) {
    if (n_q < 0 || pos0 < 0 || n_head <= 0 || n_kv <= 0 || n_head % n_kv != 0 || head_dim <= 0 ||
        head_dim > ATT_MAX_HEAD_DIM)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG,
                              "attention: bad shape n_q=%lld pos0=%lld n_head=%d n_kv=%d "
                              "head_dim=%d (n_head a multiple of n_kv, head_dim <= %d)",
                              (long long)n_q, (long long)pos0, n_head, n_kv, head_dim,
                              ATT_MAX_HEAD_DIM);
    if (n_q == 0) return OPG_CUDA_OK;
    const int64_t pairs = n_q * n_head;
    int64_t n_seg;
    const bool split = attn_split(n_q, pos0, n_head, &n_seg);
    if (pairs > INT_MAX || n_seg > 65535)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG, "attention: too large (n_q=%lld pos0=%lld)",
                              (long long)n_q, (long long)pos0);
    cudaStream_t st = (cudaStream_t)s;
    if (!split) {
        attn_pair_kernel<<<(unsigned)pairs, ATT_THREADS, 0, st>>>(out, q, k, v, pos0, n_head, n_kv,
                                                                  head_dim, scale);
        OPG_CUDA_CHECK_LAUNCH();
        return OPG_CUDA_OK;
    }
    if (!scratch || ((uintptr_t)scratch % alignof(float)) != 0)
        return opg_cuda__fail(OPG_CUDA_ERR_ARG,
                              "attention: scratch NULL or misaligned (needs %zu bytes)",
                              opg_cuda_attention_scratch_bytes(n_q, pos0, n_head, head_dim));
    float *seg = (float *)scratch;
    dim3 grid((unsigned)pairs, (unsigned)n_seg);
    attn_segment_kernel<<<grid, ATT_THREADS, 0, st>>>(seg, q, k, v, pos0, n_head, n_kv, head_dim,
                                                      scale, (int)n_seg);
    OPG_CUDA_CHECK_LAUNCH();
    attn_merge_kernel<<<(unsigned)pairs, ATT_THREADS, 0, st>>>(out, seg, pos0, n_head, head_dim,
                                                               (int)n_seg);
    OPG_CUDA_CHECK_LAUNCH();
    return OPG_CUDA_OK;
}
