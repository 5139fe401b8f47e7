/* bench_matmul.c: benchmark kinds for the matmul family: GEMV/GEMM
 * (opg_matmul, every weight type) and activation quantization.
 *
 * Weights are rotated: `copies` identical copies whose total exceeds 4x the
 * LLC, so a GEMV streams its weights from memory as in real decoding instead
 * of finding them in cache. Quantized weights are random blocks with sane
 * f16 scales (no NaN or inf). */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "opg_math.h"
#include "quant.h"

typedef struct {
    float *x;      /* [M][K] activations */
    uint8_t *w;    /* copies x [N][row bytes] weights, stride apart */
    size_t wbytes; /* one copy */
    size_t stride;
    float *y;      /* [M][N] output (c->out) */
    int64_t sub_m; /* rows of a SUBSET run */
} mm_state;

static uint16_t rand_f16(bench_rng *r, float lo, float hi) {
    return opg_f32_to_f16(bench_rng_uniform(r, lo, hi));
}

/* Makes random quantized blocks look like real ones: small finite scales,
 * Q8_0 values in GGUF's range. */
static void fix_scales(bench_rng *r, uint8_t *w, opg_dtype wt, size_t nblocks) {
    for (size_t i = 0; i < nblocks; i++) {
        switch (wt) {
        case OPG_Q8_0: {
            opg_block_q8_0 *b = (opg_block_q8_0 *)w + i;
            b->d = rand_f16(r, 1e-4f, 1e-3f);
            for (int j = 0; j < 32; j++) /* GGUF's quantizer gives [-127, 127] */
                if (b->qs[j] == -128) b->qs[j] = -127;
            break;
        }
        case OPG_Q4_0: ((opg_block_q4_0 *)w)[i].d = rand_f16(r, 1e-3f, 1e-2f); break;
        case OPG_Q4_1: {
            opg_block_q4_1 *b = (opg_block_q4_1 *)w + i;
            b->d = rand_f16(r, 1e-3f, 1e-2f);
            b->m = rand_f16(r, -0.08f, 0.0f);
            break;
        }
        case OPG_Q4_K: {
            opg_block_q4_K *b = (opg_block_q4_K *)w + i;
            b->d = rand_f16(r, 1e-4f, 1e-3f);
            b->dmin = rand_f16(r, 1e-4f, 1e-3f);
            break;
        }
        case OPG_Q6_K: {
            opg_block_q6_K *b = (opg_block_q6_K *)w + i;
            b->d = rand_f16(r, 1e-5f, 1e-4f);
            for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)((int)(bench_rng_u64(r) & 127) - 64);
            break;
        }
        default: break;
        }
    }
}

/* One copy of [N][K] weights of type wt (bench.h). */
void bench_fill_weights(bench_rng *r, uint8_t *w, opg_dtype wt, int64_t N, int64_t K) {
    size_t n = (size_t)(N * K);
    if (opg_dtype_is_x8(wt)) { /* the cpu backend's packed copy (quant.h) */
        const opg_dtype base = opg_dtype_base(wt);
        uint8_t *tmp = bench_alloc(opg_dtype_row_bytes(base, K) * (size_t)N);
        bench_fill_weights(r, tmp, base, N, K);
        if (opg_pack_x8(w, tmp, base, N, K) != 0) abort(); /* N % 8 != 0: a bench bug */
        bench_free(tmp);
    } else if (wt == OPG_F32) {
        bench_fill_f32(r, (float *)w, n, -0.05f, 0.05f);
    } else if (wt == OPG_F16 || wt == OPG_BF16) {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < n; i++) {
            float v = bench_rng_uniform(r, -0.05f, 0.05f);
            h[i] = wt == OPG_F16 ? opg_f32_to_f16(v) : opg_f32_to_bf16(v);
        }
    } else {
        size_t nblocks = n / (size_t)opg_dtype_block_elems(wt);
        bench_fill_bytes(r, w, nblocks * opg_dtype_block_bytes(wt));
        fix_scales(r, w, wt, nblocks);
    }
}

static int mm_setup(bench_case *c, const bench_env *env) {
    const int64_t M = c->p.M, N = c->p.N, K = c->p.K;
    mm_state *s = bench_alloc(sizeof *s);
    c->state = s;
    s->wbytes = (size_t)N * opg_dtype_row_bytes(c->p.wt, K);
    if (s->wbytes == 0) {
        snprintf(c->err, sizeof c->err, "K=%lld is not a multiple of the %s block", (long long)K,
                 opg_dtype_name(c->p.wt));
        return -1;
    }
    s->stride = (s->wbytes + 4095) / 4096 * 4096;
    c->copies = bench_copies_for(env, s->wbytes);
    s->w = bench_alloc(s->stride * (size_t)c->copies);
    s->x = bench_alloc(sizeof(float) * (size_t)(M * K));
    s->y = bench_alloc(sizeof(float) * (size_t)(M * N));
    s->sub_m = M < 4 ? M : 4;

    bench_rng r = {(uint64_t)c->p.wt * 1000003u + (uint64_t)M};
    bench_fill_weights(&r, s->w, c->p.wt, N, K);
    for (int i = 1; i < c->copies; i++) memcpy(s->w + (size_t)i * s->stride, s->w, s->wbytes);
    bench_fill_f32(&r, s->x, (size_t)(M * K), -1.0f, 1.0f);

    snprintf(c->shape, sizeof c->shape, "%lldx%lldx%lld", (long long)M, (long long)N,
             (long long)K);
    c->dtype = opg_dtype_name(c->p.wt);
    c->flops = 2.0 * (double)M * (double)N * (double)K;
    c->bytes = (double)s->wbytes + 4.0 * (double)(M * K + M * N);
    c->mem_bound = M == 1;
    c->out = s->y;
    c->out_bytes = sizeof(float) * (size_t)(M * N);
    c->sub_off = 0;
    c->sub_len = sizeof(float) * (size_t)(s->sub_m * N);
    return 0;
}

static int mm_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    mm_state *s = c->state;
    int64_t M = mode == BENCH_SUBSET ? s->sub_m : c->p.M;
    return opg_matmul(pool, s->y, s->x, s->w + (size_t)copy * s->stride, c->p.wt, NULL, M,
                      c->p.N, c->p.K);
}

static int mm_ref(bench_case *c) {
    mm_state *s = c->state;
    return opg_matmul_ref(s->y, s->x, s->w, c->p.wt, NULL, s->sub_m, c->p.N, c->p.K);
}

static void mm_teardown(bench_case *c) {
    mm_state *s = c->state;
    if (!s) return;
    bench_free(s->x);
    bench_free(s->w);
    bench_free(s->y);
    bench_free(s);
    c->state = NULL;
    c->out = NULL;
}

const bench_kind bench_kind_matmul = {mm_setup, mm_run, mm_ref, mm_teardown};

/* ---- quantize_act: K floats -> K/32 activation blocks ----------------------------- */

typedef struct {
    float *x;           /* [K] */
    opg_block_q8a *q;   /* [K/32] (c->out) */
} qa_state;

static int qa_setup(bench_case *c, const bench_env *env) {
    const int64_t K = c->p.K;
    qa_state *s = bench_alloc(sizeof *s);
    c->state = s;
    if (K % OPG_QK != 0) {
        snprintf(c->err, sizeof c->err, "K=%lld is not a multiple of 32", (long long)K);
        return -1;
    }
    s->x = bench_alloc(sizeof(float) * (size_t)K);
    s->q = bench_alloc(sizeof(opg_block_q8a) * (size_t)(K / OPG_QK));
    bench_rng r = {77};
    bench_fill_f32(&r, s->x, (size_t)K, -3.0f, 3.0f);
    snprintf(c->shape, sizeof c->shape, "%lld", (long long)K);
    c->dtype = "q8a";
    c->flops = 0;
    c->bytes = 4.0 * (double)K + (double)sizeof(opg_block_q8a) * (double)(K / OPG_QK);
    c->out = s->q;
    c->out_bytes = sizeof(opg_block_q8a) * (size_t)(K / OPG_QK);
    c->sub_off = 0;
    c->sub_len = c->out_bytes;
    return 0;
}

static int qa_run(bench_case *c, opg_pool *pool, int copy, bench_mode mode) {
    qa_state *s = c->state;
    opg_quantize_act(s->q, s->x, c->p.K); /* single-threaded by design: one row */
    return 0;
}

static int qa_ref(bench_case *c) {
    qa_state *s = c->state;
    opg_quantize_act_ref(s->q, s->x, c->p.K);
    return 0;
}

static void qa_teardown(bench_case *c) {
    qa_state *s = c->state;
    if (!s) return;
    bench_free(s->x);
    bench_free(s->q);
    bench_free(s);
    c->state = NULL;
    c->out = NULL;
}

const bench_kind bench_kind_quantize_act = {qa_setup, qa_run, qa_ref, qa_teardown};
