/* matmul.c: the reference float dot / GEMV / GEMM (docs/determinism.md
 * section 4, line by line), the reference of the quantized path built from
 * quant.h, and the public entry points that dispatch to the fast paths. */
#include "matmul.h"

#include <stdlib.h>

#include "contract.h"
#include "cpu.h"
#include "matmul_impl.h"
#include "opg_math.h"
#include "quant.h"

/* ---- reference: canonical dot --------------------------------------------- */

/* The three dots differ only in how w[k] becomes an f32 (exactly). The
 * combination is "total = p_0", not "total = +0 + p_0": a chunk that
 * underflows to -0 keeps its sign. K == 0 has no chunk and gives +0. */

float opg_dot_f32_ref(const float *a, const float *b, int64_t K) {
    float total = 0.0f;
    for (int64_t c0 = 0; c0 < K; c0 += OPG_DOT_CHUNK) {
        int64_t c1 = K - c0 < OPG_DOT_CHUNK ? K : c0 + OPG_DOT_CHUNK;
        float p = 0.0f;
        for (int64_t k = c0; k < c1; k++) p = fmaf(a[k], b[k], p);
        total = c0 == 0 ? p : total + p;
    }
    return total;
}

float opg_dot_f16_ref(const uint16_t *w, const float *x, int64_t K) {
    float total = 0.0f;
    for (int64_t c0 = 0; c0 < K; c0 += OPG_DOT_CHUNK) {
        int64_t c1 = K - c0 < OPG_DOT_CHUNK ? K : c0 + OPG_DOT_CHUNK;
        float p = 0.0f;
        for (int64_t k = c0; k < c1; k++) p = fmaf(opg_f16_to_f32(w[k]), x[k], p);
        total = c0 == 0 ? p : total + p;
    }
    return total;
}

float opg_dot_bf16_ref(const uint16_t *w, const float *x, int64_t K) {
    float total = 0.0f;
    for (int64_t c0 = 0; c0 < K; c0 += OPG_DOT_CHUNK) {
        int64_t c1 = K - c0 < OPG_DOT_CHUNK ? K : c0 + OPG_DOT_CHUNK;
        float p = 0.0f;
        for (int64_t k = c0; k < c1; k++) p = fmaf(opg_bf16_to_f32(w[k]), x[k], p);
        total = c0 == 0 ? p : total + p;
    }
    return total;
}

/* Canonical dot of one float weight row (wt is f32, f16 or bf16). */
static float dot_row_ref(const void *wrow, opg_dtype wt, const float *x, int64_t K) {
    switch (wt) {
    case OPG_F16: return opg_dot_f16_ref(wrow, x, K);
    case OPG_BF16: return opg_dot_bf16_ref(wrow, x, K);
    default: return opg_dot_f32_ref(wrow, x, K);
    }
}

/* Shape and type check shared by both entry points; *row_bytes gets the
 * stride of W (opg_dtype_row_bytes cannot tell K == 0 from an error). */
static int check_args(opg_dtype wt, int64_t M, int64_t N, int64_t K, size_t *row_bytes) {
    int be = opg_dtype_block_elems(wt);
    if (be == 0 || M < 0 || N < 0 || K < 0 || K % be != 0) return -1;
    if (opg_dtype_is_x8(wt) && N % 8 != 0) return -1; /* whole groups of 8 rows (quant.h) */
    *row_bytes = (size_t)(K / be) * opg_dtype_block_bytes(wt);
    return 0;
}

int opg_matmul_ref(float *y, const float *x, const void *w, opg_dtype wt,
                   const float *bias, int64_t M, int64_t N, int64_t K) {
    size_t rb;
    if (check_args(wt, M, N, K, &rb) != 0) return -1;
    if (M == 0 || N == 0) return 0;
    const unsigned char *wb = w;
    if (opg_dtype_is_quant(wt)) {
        int64_t nb = K / OPG_QK;
        opg_block_q8a *xq = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *xq);
        if (!xq) return -1;
        for (int64_t m = 0; m < M; m++) {
            opg_quantize_act_ref(xq, x + m * K, K);
            for (int64_t n = 0; n < N; n++) {
                float total = opg_qdot_row_ref(wb, wt, n, xq, K);
                if (bias) total = total + bias[n];
                y[m * N + n] = total;
            }
        }
        free(xq);
        return 0;
    }
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            float total = dot_row_ref(wb + (size_t)n * rb, wt, x + m * K, K);
            if (bias) total = total + bias[n];
            y[m * N + n] = total;
        }
    }
    return 0;
}

/* ---- fast path ------------------------------------------------------------- */

/* Portable threaded path: tiles of outputs, each output by the reference dot. */
enum { SCALAR_TILE_N = 32, SCALAR_TILE_M = 64 };

typedef struct {
    float *y;
    const float *x;
    const unsigned char *w;
    size_t rb;
    opg_dtype wt;
    const float *bias;
    int64_t M, N, K, tiles_n;
} scalar_job;

static void scalar_task(void *ctx, int64_t t) {
    const scalar_job *j = ctx;
    int64_t n0 = (t % j->tiles_n) * SCALAR_TILE_N, m0 = (t / j->tiles_n) * SCALAR_TILE_M;
    int64_t n1 = n0 + SCALAR_TILE_N < j->N ? n0 + SCALAR_TILE_N : j->N;
    int64_t m1 = m0 + SCALAR_TILE_M < j->M ? m0 + SCALAR_TILE_M : j->M;
    for (int64_t m = m0; m < m1; m++) {
        for (int64_t n = n0; n < n1; n++) {
            float total = dot_row_ref(j->w + (size_t)n * j->rb, j->wt, j->x + m * j->K, j->K);
            if (j->bias) total = total + j->bias[n];
            j->y[m * j->N + n] = total;
        }
    }
}

typedef struct {
    opg_block_q8a *xq;
    const float *x;
    int64_t K;
} quant_job;

static void quant_task(void *ctx, int64_t m) {
    const quant_job *j = ctx;
    opg_quantize_act(j->xq + m * (j->K / OPG_QK), j->x + m * j->K, j->K);
}

int opg_matmul(opg_pool *pool, float *y, const float *x, const void *w, opg_dtype wt,
               const float *bias, int64_t M, int64_t N, int64_t K) {
    size_t rb;
    if (check_args(wt, M, N, K, &rb) != 0) return -1;
    if (M == 0 || N == 0) return 0;
    if (opg_dtype_is_quant(wt)) {
        int64_t nb = K / OPG_QK;
        opg_block_q8a *xq = malloc((size_t)(M * nb > 0 ? M * nb : 1) * sizeof *xq);
        if (!xq) return -1;
        quant_job qj = {xq, x, K};
        opg_pool_run(pool, quant_task, &qj, M);
        int r = opg_matmul_q8a(pool, y, xq, w, wt, bias, M, N, K);
        free(xq);
        return r;
    }
    if (K == 0) { /* no chunk: total = +0, then the bias */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) y[m * N + n] = bias ? 0.0f + bias[n] : 0.0f;
        return 0;
    }
    if (opg_cpu_get_level() == OPG_CPU_AVX2) {
        opg__matmul_float_avx2(pool, y, x, w, wt, bias, M, N, K, OPG__MM_AUTO);
        return 0;
    }
    scalar_job j = {y, x, w, rb, wt, bias, M, N, K, (N + SCALAR_TILE_N - 1) / SCALAR_TILE_N};
    opg_pool_run(pool, scalar_task, &j, j.tiles_n * ((M + SCALAR_TILE_M - 1) / SCALAR_TILE_M));
    return 0;
}
