/* bench_ops.c: benchmark kinds for the non-matmul ops: RMSNorm, SwiGLU,
 * softmax, RoPE, attention over a KV cache, and sampling.
 *
 * Row ops run on inputs that stay in cache (as in a real forward pass, where
 * the activation row was just written). Attention decode rotates KV-cache
 * copies past 4x the LLC, like the GEMV weights, because in decoding the
 * cache is streamed from memory. */
#include "bench.h"

#include <math.h>
#include <string.h>

#include "act.h"
#include "attention.h"
#include "rmsnorm.h"
#include "rope.h"
#include "sample.h"
#include "softmax.h"

/* Output range [off, off+len) and the whole output are the same buffer. */
static void whole_output(bench_case *c, void *out, size_t bytes) {
    c->out = out;
    c->out_bytes = bytes;
    c->sub_off = 0;
    c->sub_len = bytes;
}

static float *alloc_f32(size_t n) { return bench_alloc(sizeof(float) * n); }

/* Ends a teardown: the state itself, and no dangling output pointer. */
static void drop_state(bench_case *c) {
    bench_free(c->state);
    c->state = NULL;
    c->out = NULL;
}

/* ---- RMSNorm: M rows of D (p.M, p.N) ------------------------------------------- */

typedef struct { float *x, *w, *y; } rn_state; /* x, y [M][D]; w [D] */
#define RN_EPS 1e-5f

static int rn_setup(bench_case *c, const bench_env *env) {
    const int64_t M = c->p.M, D = c->p.N;
    rn_state *s = bench_alloc(sizeof *s);
    c->state = s;
    s->x = alloc_f32((size_t)(M * D));
    s->w = alloc_f32((size_t)D);
    s->y = alloc_f32((size_t)(M * D));
    bench_rng r = {11};
    bench_fill_f32(&r, s->x, (size_t)(M * D), -2.0f, 2.0f);
    bench_fill_f32(&r, s->w, (size_t)D, 0.5f, 1.5f);
    snprintf(c->shape, sizeof c->shape, "%lldx%lld", (long long)M, (long long)D);
    c->flops = 4.0 * (double)(M * D);
    c->bytes = 4.0 * (double)(2 * M * D + D);
    whole_output(c, s->y, sizeof(float) * (size_t)(M * D));
    return 0;
}

static int rn_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    rn_state *s = c->state;
    opg_rmsnorm(pool, s->y, s->x, s->w, c->p.M, c->p.N, RN_EPS);
    return 0;
}

static int rn_ref(bench_case *c) {
    rn_state *s = c->state;
    for (int64_t m = 0; m < c->p.M; m++)
        opg_rmsnorm_ref(s->y + m * c->p.N, s->x + m * c->p.N, s->w, c->p.N, RN_EPS);
    return 0;
}

static void rn_teardown(bench_case *c) {
    rn_state *s = c->state;
    if (!s) return;
    bench_free(s->x);
    bench_free(s->w);
    bench_free(s->y);
    drop_state(c);
}

const bench_kind bench_kind_rmsnorm = {rn_setup, rn_run, rn_ref, rn_teardown};

/* ---- SwiGLU: n = p.N --------------------------------------------------------------- */

typedef struct { float *gate, *up, *out; } sw_state; /* [n] each */

static int sw_setup(bench_case *c, const bench_env *env) {
    const int64_t n = c->p.N;
    sw_state *s = bench_alloc(sizeof *s);
    c->state = s;
    s->gate = alloc_f32((size_t)n);
    s->up = alloc_f32((size_t)n);
    s->out = alloc_f32((size_t)n);
    bench_rng r = {22};
    bench_fill_f32(&r, s->gate, (size_t)n, -8.0f, 8.0f);
    bench_fill_f32(&r, s->up, (size_t)n, -2.0f, 2.0f);
    snprintf(c->shape, sizeof c->shape, "%lld", (long long)n);
    c->flops = 4.0 * (double)n;
    c->bytes = 12.0 * (double)n;
    whole_output(c, s->out, sizeof(float) * (size_t)n);
    return 0;
}

static int sw_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    sw_state *s = c->state;
    opg_swiglu(pool, s->out, s->gate, s->up, c->p.N);
    return 0;
}

static int sw_ref(bench_case *c) {
    sw_state *s = c->state;
    opg_swiglu_ref(s->out, s->gate, s->up, c->p.N);
    return 0;
}

static void sw_teardown(bench_case *c) {
    sw_state *s = c->state;
    if (!s) return;
    bench_free(s->gate);
    bench_free(s->up);
    bench_free(s->out);
    drop_state(c);
}

const bench_kind bench_kind_swiglu = {sw_setup, sw_run, sw_ref, sw_teardown};

/* ---- softmax: M rows of n (p.M, p.N) -------------------------------------------- */

typedef struct { float *x, *y; } sm_state; /* [M][n] each */

static int sm_setup(bench_case *c, const bench_env *env) {
    const int64_t M = c->p.M, n = c->p.N;
    sm_state *s = bench_alloc(sizeof *s);
    c->state = s;
    s->x = alloc_f32((size_t)(M * n));
    s->y = alloc_f32((size_t)(M * n));
    bench_rng r = {33};
    bench_fill_f32(&r, s->x, (size_t)(M * n), -12.0f, 12.0f);
    snprintf(c->shape, sizeof c->shape, "%lldx%lld", (long long)M, (long long)n);
    c->flops = 5.0 * (double)(M * n);
    c->bytes = 8.0 * (double)(M * n);
    whole_output(c, s->y, sizeof(float) * (size_t)(M * n));
    return 0;
}

static int sm_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    sm_state *s = c->state;
    opg_softmax(pool, s->y, s->x, c->p.M, c->p.N);
    return 0;
}

static int sm_ref(bench_case *c) {
    sm_state *s = c->state;
    for (int64_t m = 0; m < c->p.M; m++)
        opg_softmax_ref(s->y + m * c->p.N, s->x + m * c->p.N, c->p.N);
    return 0;
}

static void sm_teardown(bench_case *c) {
    sm_state *s = c->state;
    if (!s) return;
    bench_free(s->x);
    bench_free(s->y);
    drop_state(c);
}

const bench_kind bench_kind_softmax = {sm_setup, sm_run, sm_ref, sm_teardown};

/* ---- RoPE: p.n_q tokens of [n_head][head_dim], in place --------------------------- */

typedef struct {
    float *x;        /* [tokens][n_head][head_dim], rotated in place (c->out) */
    float *x0;       /* pristine copy of x */
    double *inv_freq; /* [head_dim / 2] */
    int32_t *pos;    /* [tokens] */
    float *cs, *sn;  /* [head_dim / 2] table of one position (reference) */
} rp_state;
#define RP_BASE 10000.0

static int rp_setup(bench_case *c, const bench_env *env) {
    const int64_t T = c->p.n_q;
    const int H = c->p.n_head, hd = c->p.head_dim;
    const size_t n = (size_t)T * (size_t)H * (size_t)hd;
    rp_state *s = bench_alloc(sizeof *s);
    c->state = s;
    s->x = alloc_f32(n);
    s->x0 = alloc_f32(n);
    s->inv_freq = bench_alloc(sizeof(double) * (size_t)(hd / 2));
    s->pos = bench_alloc(sizeof(int32_t) * (size_t)T);
    s->cs = alloc_f32((size_t)(hd / 2));
    s->sn = alloc_f32((size_t)(hd / 2));
    bench_rng r = {44};
    bench_fill_f32(&r, s->x0, n, -1.0f, 1.0f);
    memcpy(s->x, s->x0, sizeof(float) * n);
    for (int64_t t = 0; t < T; t++) s->pos[t] = (int32_t)(1000 + t);
    opg_rope_freqs(s->inv_freq, hd, RP_BASE);
    snprintf(c->shape, sizeof c->shape, "%lldx%dx%d", (long long)T, H, hd);
    c->flops = 3.0 * (double)n; /* 6 per rotated pair; the sin/cos table is not counted */
    c->bytes = 8.0 * (double)n;
    whole_output(c, s->x, sizeof(float) * n);
    return 0;
}

static int rp_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    rp_state *s = c->state;
    if (mode != BENCH_TIMED) memcpy(s->x, s->x0, c->out_bytes); /* timed calls just keep rotating */
    opg_rope(pool, s->x, c->p.n_q, s->pos, c->p.n_head, c->p.head_dim, c->p.head_dim,
             s->inv_freq, OPG_ROPE_NORMAL);
    return 0;
}

static int rp_ref(bench_case *c) {
    rp_state *s = c->state;
    const int H = c->p.n_head, hd = c->p.head_dim;
    memcpy(s->x, s->x0, c->out_bytes);
    for (int64_t t = 0; t < c->p.n_q; t++) {
        opg_rope_table(s->cs, s->sn, s->pos[t], s->inv_freq, hd / 2);
        opg_rope_apply_ref(s->x + t * H * hd, H, hd, hd, s->cs, s->sn, OPG_ROPE_NORMAL);
    }
    return 0;
}

static void rp_teardown(bench_case *c) {
    rp_state *s = c->state;
    if (!s) return;
    bench_free(s->x);
    bench_free(s->x0);
    bench_free(s->inv_freq);
    bench_free(s->pos);
    bench_free(s->cs);
    bench_free(s->sn);
    drop_state(c);
}

const bench_kind bench_kind_rope = {rp_setup, rp_run, rp_ref, rp_teardown};

/* ---- attention: p.n_q queries from p.pos0 over a KV cache of pos0+n_q ------------ */

typedef struct {
    float *q;      /* [n_q][n_head * head_dim] */
    float *out;    /* [n_q][n_head * head_dim] (c->out) */
    float *kv;     /* copies x {k, v}, each [positions][n_kv * head_dim] */
    size_t kv_floats; /* floats of one k (or v) */
    int64_t sub_q; /* last queries of a SUBSET run */
} at_state;

static int at_setup(bench_case *c, const bench_env *env) {
    const int64_t nq = c->p.n_q, pos0 = c->p.pos0, P = pos0 + nq;
    const int H = c->p.n_head, KV = c->p.n_kv, hd = c->p.head_dim;
    const size_t qn = (size_t)nq * (size_t)H * (size_t)hd;
    at_state *s = bench_alloc(sizeof *s);
    c->state = s;
    s->kv_floats = (size_t)P * (size_t)KV * (size_t)hd;
    c->mem_bound = nq == 1; /* decode streams the cache; prefill reuses it */
    c->copies = c->mem_bound ? bench_copies_for(env, 2 * sizeof(float) * s->kv_floats) : 1;
    s->q = alloc_f32(qn);
    s->out = alloc_f32(qn);
    s->kv = alloc_f32(2 * s->kv_floats * (size_t)c->copies);
    s->sub_q = nq < 16 ? nq : 16;
    bench_rng r = {55};
    bench_fill_f32(&r, s->q, qn, -1.0f, 1.0f);
    bench_fill_f32(&r, s->kv, 2 * s->kv_floats, -1.0f, 1.0f);
    for (int i = 1; i < c->copies; i++)
        memcpy(s->kv + (size_t)i * 2 * s->kv_floats, s->kv, 2 * sizeof(float) * s->kv_floats);

    double keys = 0; /* keys seen, summed over the queries */
    for (int64_t t = pos0; t < P; t++) keys += (double)(t + 1);
    snprintf(c->shape, sizeof c->shape, "q%lld@%lld h%d/%d d%d", (long long)nq, (long long)pos0,
             H, KV, hd);
    c->flops = 4.0 * (double)H * (double)hd * keys; /* q.k and p*v: 2 flops each per key and dim */
    c->bytes = 4.0 * (double)(2 * s->kv_floats + 2 * qn);
    c->out = s->out;
    c->out_bytes = sizeof(float) * qn;
    c->sub_len = sizeof(float) * (size_t)s->sub_q * (size_t)H * (size_t)hd;
    c->sub_off = c->out_bytes - c->sub_len;
    return 0;
}

static int at_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    at_state *s = c->state;
    const float *k = s->kv + (size_t)copy * 2 * s->kv_floats, *v = k + s->kv_floats;
    const float scale = 1.0f / sqrtf((float)c->p.head_dim);
    int64_t first = mode == BENCH_SUBSET ? c->p.n_q - s->sub_q : 0; /* first query run */
    size_t off = (size_t)first * (size_t)c->p.n_head * (size_t)c->p.head_dim;
    opg_attention(pool, s->out + off, s->q + off, k, v, c->p.n_q - first, c->p.pos0 + first,
                  c->p.n_head, c->p.n_kv, c->p.head_dim, scale);
    return 0;
}

static int at_ref(bench_case *c) {
    at_state *s = c->state;
    const float scale = 1.0f / sqrtf((float)c->p.head_dim);
    int64_t first = c->p.n_q - s->sub_q;
    size_t off = (size_t)first * (size_t)c->p.n_head * (size_t)c->p.head_dim;
    opg_attention_ref(s->out + off, s->q + off, s->kv, s->kv + s->kv_floats, s->sub_q,
                      c->p.pos0 + first, c->p.n_head, c->p.n_kv, c->p.head_dim, scale);
    return 0;
}

static void at_teardown(bench_case *c) {
    at_state *s = c->state;
    if (!s) return;
    bench_free(s->q);
    bench_free(s->out);
    bench_free(s->kv);
    drop_state(c);
}

const bench_kind bench_kind_attention = {at_setup, at_run, at_ref, at_teardown};

/* ---- sample: temperature / top-k / top-p over p.N logits ----------------------- */

typedef struct {
    float *logits;  /* [n] */
    void *scratch;  /* opg_sample_scratch_bytes(n) */
    int64_t *token; /* the result (c->out) */
} sa_state;

static int sa_setup(bench_case *c, const bench_env *env) {
    const int64_t n = c->p.N;
    sa_state *s = bench_alloc(sizeof *s);
    c->state = s;
    s->logits = alloc_f32((size_t)n);
    s->scratch = bench_alloc(opg_sample_scratch_bytes(n));
    s->token = bench_alloc(sizeof(int64_t));
    bench_rng r = {66};
    bench_fill_f32(&r, s->logits, (size_t)n, -10.0f, 10.0f);
    snprintf(c->shape, sizeof c->shape, "%lld k%d p%.2g", (long long)n, (int)c->p.top_k,
             (double)c->p.top_p);
    c->flops = 0;
    c->bytes = 4.0 * (double)n;
    whole_output(c, s->token, sizeof(int64_t));
    return 0;
}

static int sa_call(bench_case *c, uint64_t step) {
    sa_state *s = c->state;
    opg_sample_params sp = {c->p.temperature, c->p.top_k, c->p.top_p, 1234};
    *s->token = opg_sample_ref(s->logits, c->p.N, &sp, step, s->scratch);
    return *s->token < 0 ? -1 : 0;
}

/* Only a reference exists (sampling is a small serial tail); timed calls
 * advance the step so each draws a fresh random number. */
static int sa_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    static uint64_t timed_step;
    return sa_call(c, mode == BENCH_TIMED ? ++timed_step : 0);
}

static int sa_ref(bench_case *c) { return sa_call(c, 0); }

static void sa_teardown(bench_case *c) {
    sa_state *s = c->state;
    if (!s) return;
    bench_free(s->logits);
    bench_free(s->scratch);
    bench_free(s->token);
    drop_state(c);
}

const bench_kind bench_kind_sample = {sa_setup, sa_run, sa_ref, sa_teardown};
