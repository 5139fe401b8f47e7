/* bench_cases.c: the list of ops and shapes opg-bench measures, full and
 * --quick. Shapes are Llama-7B-like: hidden 4096, FFN 11008, 32 query heads
 * over 8 KV heads of 128 (GQA), vocabulary 32000. Case names are the same in
 * both modes; the shape column says what ran. */
#include "bench.h"

#include <string.h>

typedef struct {
    bench_case *cases;
    int n, max;
} case_list;

static bench_case *add(case_list *l, const char *name, const char *group, const bench_kind *k) {
    if (l->n >= l->max) return NULL;
    bench_case *c = &l->cases[l->n++];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->group = group;
    c->kind = k;
    return c;
}

static void add_matmul(case_list *l, const char *name, const char *group, opg_dtype wt,
                       int64_t M, int64_t NK) {
    bench_case *c = add(l, name, group, &bench_kind_matmul);
    if (!c) return;
    c->p.wt = wt;
    c->p.M = M;
    c->p.N = NK;
    c->p.K = NK;
}

static void add_attention(case_list *l, const char *name, int64_t n_q, int64_t pos0) {
    bench_case *c = add(l, name, "attention", &bench_kind_attention);
    if (!c) return;
    c->p.n_q = n_q;
    c->p.pos0 = pos0;
    c->p.n_head = 32;
    c->p.n_kv = 8;
    c->p.head_dim = 128;
}

static void add_row_op(case_list *l, const char *name, const bench_kind *k, int64_t M, int64_t N) {
    bench_case *c = add(l, name, name, k);
    if (!c) return;
    c->p.M = M;
    c->p.N = N;
    c->p.K = N;
}

int bench_cases_build(bench_case *cases, int max, int quick) {
    static const struct { const char *gemv, *gemm; opg_dtype t; } types[] = {
        {"gemv_f32", "gemm_f32", OPG_F32},    {"gemv_f16", "gemm_f16", OPG_F16},
        {"gemv_bf16", "gemm_bf16", OPG_BF16}, {"gemv_q8_0", "gemm_q8_0", OPG_Q8_0},
        {"gemv_q4_0", "gemm_q4_0", OPG_Q4_0}, {"gemv_q4_1", "gemm_q4_1", OPG_Q4_1},
        {"gemv_q4_K", "gemm_q4_K", OPG_Q4_K}, {"gemv_q6_K", "gemm_q6_K", OPG_Q6_K},
        /* the cpu backend's packed layouts (kernels/quant.h) */
        {"gemv_q4_0x8", "gemm_q4_0x8", OPG_Q4_0_X8}, {"gemv_q4_1x8", "gemm_q4_1x8", OPG_Q4_1_X8},
        {"gemv_q8_0x8", "gemm_q8_0x8", OPG_Q8_0_X8}, {"gemv_q4_Kx8", "gemm_q4_Kx8", OPG_Q4_K_X8},
        {"gemv_q6_Kx8", "gemm_q6_Kx8", OPG_Q6_K_X8},
    };
    const int ntypes = (int)(sizeof types / sizeof types[0]);
    const int64_t dim = quick ? 1024 : 4096;
    case_list l = {cases, 0, max};

    for (int i = 0; i < ntypes; i++) add_matmul(&l, types[i].gemv, "gemv", types[i].t, 1, dim);
    for (int i = 0; i < ntypes; i++)
        add_matmul(&l, types[i].gemm, "gemm", types[i].t, quick ? 16 : 64, dim);
    if (!quick) {
        add_matmul(&l, "gemm_big_f32", "gemm", OPG_F32, 256, dim);
        add_matmul(&l, "gemm_big_q8_0", "gemm", OPG_Q8_0, 256, dim);
    }
    add_row_op(&l, "quantize_act", &bench_kind_quantize_act, 1, 4096);
    add_row_op(&l, "rmsnorm", &bench_kind_rmsnorm, 1, 4096);
    add_row_op(&l, "swiglu", &bench_kind_swiglu, 1, 11008);
    add_row_op(&l, "softmax", &bench_kind_softmax, 1, 32000);

    bench_case *c = add(&l, "rope", "rope", &bench_kind_rope);
    if (c) {
        c->p.n_q = 1;
        c->p.n_head = 32;
        c->p.head_dim = 128;
    }
    /* decode: one query at the last of P cached positions; quick crosses one
     * 1024-key segment boundary so the segment merge runs too */
    add_attention(&l, "attn_decode_short", 1, (quick ? 128 : 512) - 1);
    add_attention(&l, "attn_decode_long", 1, (quick ? 1100 : 4096) - 1);
    add_attention(&l, "attn_prefill", quick ? 64 : 256, 0);

    c = add(&l, "sample", "sample", &bench_kind_sample);
    if (c) {
        c->p.N = 32000;
        c->p.top_k = 40;
        c->p.top_p = 0.9f;
        c->p.temperature = 0.8f;
    }
    return l.n;
}
