/* attention_avx2.c: the AVX2 path of causal attention, bit-identical to the
 * reference in attention.c (docs/determinism.md section 9).
 *
 * Lanes never share an output's sum: for the scores a lane is a key, running
 * that key's own fma chain over the dims in the reference's order (each key
 * chunk is transposed once into a packed copy); for the value sums a lane is
 * a dim. The per-chunk max and the sum of p_j stay scalar, in key order.
 * A task walks the keys chunk by chunk for a whole range of heads, so the
 * cache rows (all KV heads of a position, contiguous) are read nearly in
 * order, and each packed chunk and value row serves every head of its KV
 * head. */
#include <immintrin.h>
#include <math.h>

#include "attention.h"
#include "attention_impl.h"
#include "contract.h"
#include "opg_math.h"
#include "opg_math_avx2.h"

#define KC OPG_ATTN_KCHUNK
#define NHM OPG__ATTN_GROUP

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* c[e] lane L = r[L][e] for e, L in 0..7 (an 8x8 transpose). */
ALWAYS_INLINE void load_transpose8(__m256 c[8], const float *const r[8]) {
    __m256 a0 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[0])), _mm_loadu_ps(r[4]), 1);
    __m256 a1 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[1])), _mm_loadu_ps(r[5]), 1);
    __m256 a2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[2])), _mm_loadu_ps(r[6]), 1);
    __m256 a3 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[3])), _mm_loadu_ps(r[7]), 1);
    __m256 b0 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[0] + 4)), _mm_loadu_ps(r[4] + 4), 1);
    __m256 b1 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[1] + 4)), _mm_loadu_ps(r[5] + 4), 1);
    __m256 b2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[2] + 4)), _mm_loadu_ps(r[6] + 4), 1);
    __m256 b3 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[3] + 4)), _mm_loadu_ps(r[7] + 4), 1);
    __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
    __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
    c[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    c[1] = _mm256_shuffle_ps(t0, t2, 0xee);
    c[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    c[3] = _mm256_shuffle_ps(t1, t3, 0xee);
    t0 = _mm256_unpacklo_ps(b0, b1);
    t1 = _mm256_unpackhi_ps(b0, b1);
    t2 = _mm256_unpacklo_ps(b2, b3);
    t3 = _mm256_unpackhi_ps(b2, b3);
    c[4] = _mm256_shuffle_ps(t0, t2, 0x44);
    c[5] = _mm256_shuffle_ps(t0, t2, 0xee);
    c[6] = _mm256_shuffle_ps(t1, t3, 0x44);
    c[7] = _mm256_shuffle_ps(t1, t3, 0xee);
}

/* kt[d*KC + j] = k_{c0+j}[d] for d < hd, j < KC: the chunk's keys transposed
 * once per task and chunk, so one vector load gives dim d of 8 keys and the
 * packed copy stays in L1 (cache rows n_kv*head_dim floats apart often fall in
 * one L1 set). Keys past n repeat key n-1 (computed, never used). */
static void pack_keys(float *kt, const float *kh, int64_t stride, int64_t c0, int n, int hd) {
    for (int g = 0; g < KC / 8; g++) {
        const float *r[8], *rd[8];
        __m256 c[8];
        for (int L = 0; L < 8; L++) {
            int j = g * 8 + L < n ? g * 8 + L : n - 1;
            r[L] = kh + (c0 + j) * stride;
        }
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
            for (int L = 0; L < 8; L++) rd[L] = r[L] + d;
            load_transpose8(c, rd);
            for (int e = 0; e < 8; e++) _mm256_storeu_ps(kt + (d + e) * KC + g * 8, c[e]);
        }
        if (d < hd) { /* the last hd - d < 8 dims: transpose a zero-padded copy */
            int w = hd - d;
            float tmp[8][8] = {{0}};
            for (int L = 0; L < 8; L++) {
                for (int e = 0; e < w; e++) tmp[L][e] = r[L][d + e];
                rd[L] = tmp[L];
            }
            load_transpose8(c, rd);
            for (int e = 0; e < w; e++) _mm256_storeu_ps(kt + (d + e) * KC + g * 8, c[e]);
        }
    }
}

/* part[h][g] = fma chain over dims [d0, d1) from +0 of q_h against keys
 * 8g..8g+7 (lane = key): one chunk of the canonical dot for 32 keys and nq
 * heads, 4*nq independent chains. */
ALWAYS_INLINE void dot_chunk(__m256 part[2][4], const float *const q[2], const int nq,
                             const float *kt, int d0, int d1) {
#pragma GCC unroll 2
    for (int h = 0; h < nq; h++)
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) part[h][g] = _mm256_setzero_ps();
    for (int d = d0; d < d1; d++) {
        const float *kd = kt + d * KC;
        __m256 k4[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) k4[g] = _mm256_loadu_ps(kd + 8 * g);
#pragma GCC unroll 2
        for (int h = 0; h < nq; h++) {
            const __m256 b = _mm256_set1_ps(q[h][d]);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) part[h][g] = _mm256_fmadd_ps(b, k4[g], part[h][g]);
        }
    }
}

/* s[h][j] = canonical dot(q_h, k_j) * scale for the chunk's 32 key lanes,
 * nq (1 or 2, a constant at each call site) heads at once. */
ALWAYS_INLINE void chunk_scores(float *const s[2], const float *const q[2], const int nq,
                                const float *kt, int hd, float scale) {
    __m256 tot[2][4], part[2][4];
    dot_chunk(tot, q, nq, kt, 0, hd < OPG_DOT_CHUNK ? hd : OPG_DOT_CHUNK);
    for (int d0 = OPG_DOT_CHUNK; d0 < hd; d0 += OPG_DOT_CHUNK) {
        dot_chunk(part, q, nq, kt, d0, hd - d0 < OPG_DOT_CHUNK ? hd : d0 + OPG_DOT_CHUNK);
        for (int h = 0; h < nq; h++)
            for (int g = 0; g < 4; g++) tot[h][g] = _mm256_add_ps(tot[h][g], part[h][g]);
    }
    const __m256 vs = _mm256_set1_ps(scale);
#pragma GCC unroll 2
    for (int h = 0; h < nq; h++)
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) _mm256_storeu_ps(s[h] + 8 * g, _mm256_mul_ps(tot[h][g], vs));
}

/* For dims [d, d + 8W) of every head h < nh: acc[h] = fmaf(acc[h], alpha_h,
 * oc), oc = fma chain of p[h][j] * v_j over the n keys from +0 in key order
 * (lane = dim). Each V row piece is loaded once for all heads; nh and W are
 * constants at each call site (nh*W chains). */
ALWAYS_INLINE void v_block(float *const acc[NHM], const float p[NHM][KC], const __m256 va[NHM],
                           const int nh, const int W, int n, const float *vd, int64_t stride,
                           int d) {
    __m256 o[NHM][8];
#pragma GCC unroll 4
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 8
        for (int w = 0; w < W; w++) o[h][w] = _mm256_setzero_ps();
    for (int j = 0; j < n; j++) {
        const float *row = vd + j * stride;
        __m256 x[8];
#pragma GCC unroll 8
        for (int w = 0; w < W; w++) x[w] = _mm256_loadu_ps(row + 8 * w);
#pragma GCC unroll 4
        for (int h = 0; h < nh; h++) {
            const __m256 pj = _mm256_set1_ps(p[h][j]);
#pragma GCC unroll 8
            for (int w = 0; w < W; w++) o[h][w] = _mm256_fmadd_ps(pj, x[w], o[h][w]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 8
        for (int w = 0; w < W; w++) {
            float *a = acc[h] + d + 8 * w;
            _mm256_storeu_ps(a, _mm256_fmadd_ps(_mm256_loadu_ps(a), va[h], o[h][w]));
        }
}

/* Wide blocks of 8W dims while they fit (about 8 chains), then 8 dims. */
#define V_BLOCKS(NH, W)                                                                   \
    do {                                                                                  \
        for (; d + 8 * (W) <= hd; d += 8 * (W)) v_block(acc, p, va, NH, W, n, v0 + d, stride, d); \
        for (; d + 8 <= hd; d += 8) v_block(acc, p, va, NH, 1, n, v0 + d, stride, d);     \
    } while (0)

/* The value sums of one chunk for the nh heads; v0: row of key c0. */
static void accumulate_v(float *const acc[NHM], const float p[NHM][KC], const float *alpha, int nh,
                         int n, const float *v0, int64_t stride, int hd) {
    __m256 va[NHM];
    for (int h = 0; h < nh; h++) va[h] = _mm256_set1_ps(alpha[h]);
    for (int h = nh; h < NHM; h++) va[h] = _mm256_setzero_ps();
    int d = 0;
    switch (nh) {
    case 1: V_BLOCKS(1, 8); break;
    case 2: V_BLOCKS(2, 4); break;
    case 3: V_BLOCKS(3, 2); break;
    default: V_BLOCKS(NHM, 2); break;
    }
    for (int h = 0; h < nh; h++)
        for (int e = d; e < hd; e++) {
            float oc = 0.0f;
            for (int j = 0; j < n; j++) oc = fmaf(p[h][j], v0[j * stride + e], oc);
            acc[h][e] = fmaf(acc[h][e], alpha[h], oc);
        }
}

/* One chunk [c0, c0+n) for the ns <= NHM heads of one KV head (kh, vh: its
 * rows; kt: its keys, packed): scores, the online-softmax step of section 9,
 * value sums. */
static void chunk_heads(int ns, const float *const qh[NHM], float *const acc[NHM], float *m,
                        float *l, const float *kt, const float *vh, int64_t stride, int64_t c0,
                        int n, int hd, float scale) {
    float s[NHM][KC], p[NHM][KC], alpha[NHM];
    int h = 0;
    for (; h + 2 <= ns; h += 2) {
        float *const sp[2] = {s[h], s[h + 1]};
        const float *const qp[2] = {qh[h], qh[h + 1]};
        chunk_scores(sp, qp, 2, kt, hd, scale);
    }
    if (h < ns) {
        float *const sp[2] = {s[h], s[h]};
        const float *const qp[2] = {qh[h], qh[h]};
        chunk_scores(sp, qp, 1, kt, hd, scale);
    }
    for (h = 0; h < ns; h++) {
        float mc = s[h][0];
        for (int j = 1; j < n; j++) mc = opg__attn_maxf(mc, s[h][j]);
        float mn = opg__attn_maxf(m[h], mc);
        alpha[h] = opg_expf(m[h] - mn); /* first chunk: opg_expf(-inf) = +0 */
        const __m256 vmn = _mm256_set1_ps(mn);
        for (int g = 0; g < KC / 8; g++)
            _mm256_storeu_ps(p[h] + 8 * g, opg_expf_avx2(_mm256_sub_ps(_mm256_loadu_ps(s[h] + 8 * g), vmn)));
        float lc = 0.0f;
        for (int j = 0; j < n; j++) lc = lc + p[h][j];
        l[h] = fmaf(l[h], alpha[h], lc);
        m[h] = mn;
    }
    accumulate_v(acc, (const float(*)[KC])p, alpha, ns, n, vh + c0 * stride, stride, hd);
}

/* What one task computes: query i at position t, heads [h_lo, h_lo+nh). */
typedef struct {
    const opg__attn_args *a;
    int64_t i, t;
    int h_lo, nh;
    float *kt; /* KC * head_dim floats */
} task;

/* Online softmax of the segment [k0, k1) for all heads of the task, chunk
 * by chunk; within a chunk, KV head by KV head (keys packed once for the
 * task's heads of that KV head). acc: nh rows of head_dim. */
static void segment_avx2(const task *tk, int64_t k0, int64_t k1, float *m, float *l, float *acc) {
    const opg__attn_args *a = tk->a;
    const int hd = a->head_dim, group = a->n_head / a->n_kv;
    const int64_t stride = (int64_t)a->n_kv * hd;
    for (int x = 0; x < tk->nh; x++) {
        m[x] = -INFINITY;
        l[x] = 0.0f;
    }
    for (int64_t e = 0; e < (int64_t)tk->nh * hd; e++) acc[e] = 0.0f;
    for (int64_t c0 = k0; c0 < k1; c0 += KC) {
        int n = k1 - c0 < KC ? (int)(k1 - c0) : KC;
        for (int x = 0; x < tk->nh;) {
            int kvh = (tk->h_lo + x) / group;
            int xe = (kvh + 1) * group - tk->h_lo; /* past this KV head's last head */
            if (xe > tk->nh) xe = tk->nh;
            const float *kh = a->k + (int64_t)kvh * hd, *vh = a->v + (int64_t)kvh * hd;
            pack_keys(tk->kt, kh, stride, c0, n, hd);
            for (int x0 = x; x0 < xe; x0 += NHM) {
                int ns = xe - x0 < NHM ? xe - x0 : NHM;
                const float *qh[NHM] = {0};
                float *ac[NHM] = {0};
                for (int y = 0; y < ns; y++) {
                    qh[y] = a->q + (tk->i * a->n_head + tk->h_lo + x0 + y) * hd;
                    ac[y] = acc + (int64_t)(x0 + y) * hd;
                }
                chunk_heads(ns, qh, ac, m + x0, l + x0, tk->kt, vh, stride, c0, n, hd, a->scale);
            }
            x = xe;
        }
    }
}

void opg__attention_avx2(const opg__attn_args *a, int64_t i, int h_lo, int nh) {
    const int hd = a->head_dim;
    float kt[KC * OPG_ATTN_MAX_HEAD_DIM];
    float seg[OPG__ATTN_TASK_FLOATS];
    float m[OPG__ATTN_TASK_HEADS], l[OPG__ATTN_TASK_HEADS];
    float mb[OPG__ATTN_TASK_HEADS], lb[OPG__ATTN_TASK_HEADS];
    const task tk = {a, i, a->pos0 + i, h_lo, nh, kt};
    const int64_t t = tk.t;
    float *o = a->out + (i * a->n_head + h_lo) * hd; /* nh rows: the merged state's acc */
    int64_t end0 = t + 1 < OPG_ATTN_SEGMENT ? t + 1 : OPG_ATTN_SEGMENT;
    segment_avx2(&tk, 0, end0, m, l, o);
    for (int64_t g0 = OPG_ATTN_SEGMENT; g0 <= t; g0 += OPG_ATTN_SEGMENT) {
        int64_t g1 = t + 1 - g0 < OPG_ATTN_SEGMENT ? t + 1 : g0 + OPG_ATTN_SEGMENT;
        segment_avx2(&tk, g0, g1, mb, lb, seg);
        for (int x = 0; x < nh; x++) {
            float *ox = o + (int64_t)x * hd, *sx = seg + (int64_t)x * hd;
            float mm = opg__attn_maxf(m[x], mb[x]);
            float fa = opg_expf(m[x] - mm), fb = opg_expf(mb[x] - mm);
            l[x] = fmaf(l[x], fa, lb[x] * fb);
            const __m256 va = _mm256_set1_ps(fa), vb = _mm256_set1_ps(fb);
            int d = 0;
            for (; d + 8 <= hd; d += 8)
                _mm256_storeu_ps(ox + d, _mm256_fmadd_ps(_mm256_loadu_ps(ox + d), va,
                                                         _mm256_mul_ps(_mm256_loadu_ps(sx + d), vb)));
            for (; d < hd; d++) ox[d] = fmaf(ox[d], fa, sx[d] * fb);
            m[x] = mm;
        }
    }
    for (int x = 0; x < nh; x++) {
        float *ox = o + (int64_t)x * hd;
        const __m256 vl = _mm256_set1_ps(l[x]);
        int d = 0;
        for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(ox + d, _mm256_div_ps(_mm256_loadu_ps(ox + d), vl));
        for (; d < hd; d++) ox[d] = ox[d] / l[x];
    }
}
