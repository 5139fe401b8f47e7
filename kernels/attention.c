/* attention.c: causal attention with GQA over the KV cache, the reference of
 * docs/determinism.md section 9 (read them side by side), and the dispatcher
 * that splits the work over the pool and picks the AVX2 path. */
#include "attention.h"

#include <math.h>

#include "attention_impl.h"
#include "contract.h"
#include "cpu.h"
#include "matmul.h"
#include "opg_math.h"

/* Online softmax of one segment, keys [k0, k1) with k0 a multiple of
 * OPG_ATTN_SEGMENT, so every chunk below starts at an absolute multiple of
 * OPG_ATTN_KCHUNK. kh, vh: row 0 of this KV head, rows `stride` apart. */
static void segment_ref(float *m_out, float *l_out, float *acc, const float *qh,
                        const float *kh, const float *vh, int64_t stride, int64_t k0,
                        int64_t k1, int head_dim, float scale) {
    float s[OPG_ATTN_KCHUNK], p[OPG_ATTN_KCHUNK];
    float m = -INFINITY, l = 0.0f;
    for (int d = 0; d < head_dim; d++) acc[d] = 0.0f;
    for (int64_t c0 = k0; c0 < k1; c0 += OPG_ATTN_KCHUNK) {
        int n = k1 - c0 < OPG_ATTN_KCHUNK ? (int)(k1 - c0) : OPG_ATTN_KCHUNK;
        for (int j = 0; j < n; j++) s[j] = opg_dot_f32_ref(qh, kh + (c0 + j) * stride, head_dim) * scale;
        float mc = s[0];
        for (int j = 1; j < n; j++) mc = opg__attn_maxf(mc, s[j]);
        float mn = opg__attn_maxf(m, mc);
        float alpha = opg_expf(m - mn); /* first chunk: opg_expf(-inf) = +0 */
        for (int j = 0; j < n; j++) p[j] = opg_expf(s[j] - mn);
        float lc = 0.0f;
        for (int j = 0; j < n; j++) lc = lc + p[j];
        l = fmaf(l, alpha, lc);
        for (int d = 0; d < head_dim; d++) {
            float oc = 0.0f;
            for (int j = 0; j < n; j++) oc = fmaf(p[j], vh[(c0 + j) * stride + d], oc);
            acc[d] = fmaf(acc[d], alpha, oc);
        }
        m = mn;
    }
    *m_out = m;
    *l_out = l;
}

void opg__attention_pair_ref(const opg__attn_args *a, int64_t i, int h, float *seg) {
    const int hd = a->head_dim;
    const int64_t t = a->pos0 + i;             /* absolute position: sees keys 0..t */
    const int64_t stride = (int64_t)a->n_kv * hd;
    const int kvh = h / (a->n_head / a->n_kv);
    const float *qh = a->q + (i * a->n_head + h) * hd;
    const float *kh = a->k + (int64_t)kvh * hd, *vh = a->v + (int64_t)kvh * hd;
    float *o = a->out + (i * a->n_head + h) * hd; /* holds the merged state's acc */
    float m, l;
    int64_t end0 = t + 1 < OPG_ATTN_SEGMENT ? t + 1 : OPG_ATTN_SEGMENT;
    segment_ref(&m, &l, o, qh, kh, vh, stride, 0, end0, hd, a->scale);
    for (int64_t g0 = OPG_ATTN_SEGMENT; g0 <= t; g0 += OPG_ATTN_SEGMENT) {
        int64_t g1 = t + 1 - g0 < OPG_ATTN_SEGMENT ? t + 1 : g0 + OPG_ATTN_SEGMENT;
        float mb, lb;
        segment_ref(&mb, &lb, seg, qh, kh, vh, stride, g0, g1, hd, a->scale);
        float mm = opg__attn_maxf(m, mb);
        float fa = opg_expf(m - mm), fb = opg_expf(mb - mm);
        l = fmaf(l, fa, lb * fb);
        for (int d = 0; d < hd; d++) o[d] = fmaf(o[d], fa, seg[d] * fb);
        m = mm;
    }
    for (int d = 0; d < hd; d++) o[d] = o[d] / l;
}

/* Shapes the functions accept (attention.h); 0 = compute, 1 = fill NaN,
 * -1 = nothing to write. */
static int check_args(const opg__attn_args *a) {
    if (a->n_q <= 0 || a->n_head <= 0 || a->head_dim <= 0) return -1;
    if (a->n_kv <= 0 || a->n_head % a->n_kv != 0 || a->head_dim > OPG_ATTN_MAX_HEAD_DIM ||
        a->pos0 < 0)
        return 1;
    return 0;
}

static void fill_nan(const opg__attn_args *a) {
    int64_t n = a->n_q * a->n_head * a->head_dim;
    for (int64_t e = 0; e < n; e++) a->out[e] = NAN;
}

void opg_attention_ref(float *out, const float *q, const float *k, const float *v,
                       int64_t n_q, int64_t pos0, int n_head, int n_kv, int head_dim,
                       float scale) {
    opg__attn_args a = {out, q, k, v, n_q, pos0, n_head, n_kv, head_dim, scale};
    int c = check_args(&a);
    if (c < 0) return;
    if (c > 0) { fill_nan(&a); return; }
    float seg[OPG_ATTN_MAX_HEAD_DIM];
    for (int64_t i = 0; i < n_q; i++)
        for (int h = 0; h < n_head; h++) opg__attention_pair_ref(&a, i, h, seg);
}

/* ---- dispatcher ------------------------------------------------------------
 * Every (query, head) output row is computed whole inside one task, so neither
 * the task split nor the thread that runs a task can change a bit. */

static void task_scalar(void *ctx, int64_t task) {
    const opg__attn_args *a = ctx;
    float seg[OPG_ATTN_MAX_HEAD_DIM];
    opg__attention_pair_ref(a, task / a->n_head, (int)(task % a->n_head), seg);
}

/* AVX2 tasks: (query, a range of heads); `parts` near-equal ranges per query,
 * enough to give every thread work in a decode step, few enough that each
 * task reads long contiguous stretches of the cache rows. */
typedef struct {
    const opg__attn_args *a;
    int parts;
} avx2_ctx;

static void task_avx2(void *ctx, int64_t task) {
    const avx2_ctx *c = ctx;
    int64_t i = task / c->parts;
    int part = (int)(task % c->parts);
    int lo = (int)((int64_t)part * c->a->n_head / c->parts);
    int hi = (int)((int64_t)(part + 1) * c->a->n_head / c->parts);
    if (hi > lo) opg__attention_avx2(c->a, i, lo, hi - lo);
}

void opg_attention(opg_pool *pool, float *out, const float *q, const float *k,
                   const float *v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                   int head_dim, float scale) {
    opg__attn_args a = {out, q, k, v, n_q, pos0, n_head, n_kv, head_dim, scale};
    int c = check_args(&a);
    if (c < 0) return;
    if (c > 0) { fill_nan(&a); return; }
    if (opg_cpu_get_level() == OPG_CPU_AVX2) {
        int64_t threads = opg_pool_threads(pool);
        int64_t parts = n_q >= threads ? 1 : (threads + n_q - 1) / n_q;
        int64_t max_heads = OPG__ATTN_TASK_FLOATS / head_dim;
        if (max_heads > OPG__ATTN_TASK_HEADS) max_heads = OPG__ATTN_TASK_HEADS;
        if (parts < (n_head + max_heads - 1) / max_heads) parts = (n_head + max_heads - 1) / max_heads;
        if (parts > n_head) parts = n_head;
        avx2_ctx x = {&a, (int)parts};
        opg_pool_run(pool, task_avx2, &x, n_q * parts);
    } else {
        opg_pool_run(pool, task_scalar, &a, n_q * n_head);
    }
}
