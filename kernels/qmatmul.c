/* qmatmul.c: opg_matmul_q8a (matmul.h), the threaded integer-path matmul.
 *
 * The output is cut into tiles of QM_NROWS weight rows x QM_MROWS
 * activation rows, one pool task each (for M <= QM_MROWS, gemv_rows: a
 * share of rows that depends on N and the thread count). Every output value is computed whole
 * inside one task by the canonical sequence of docs/determinism.md section 5
 * (opg_qdot_row_ref, then + bias), so the tiling, the thread count and the CPU
 * level never change a bit; the tile sizes only matter for speed. */
#include "matmul.h"

#include "cpu.h"
#include "quant.h"
#include "quant_impl.h"

#define QM_NROWS 64 /* weight rows per task: a multiple of the AVX2 kernel's 8 */
/* M <= QM_MROWS (decode of one sequence, or of a batch of up to 32: one
 * task along M): each thread gets the same number of tasks of at most this
 * many rows, so a small matrix is one contiguous run of rows per thread.
 * Every task start is a stream start the prefetchers must catch up with:
 * 64-row tasks claimed in turn by 2 threads ran the SmolLM2-135M decode
 * matrices at ~20 GB/s, per-thread runs at ~35, and a decode batch of 8
 * sequences gained ~15% too (docs/benchmarks.md, 2026-12-07). The cap keeps
 * big matrices dynamically balanced. Speed only: no bit depends on the
 * tiling. */
#define QM_GEMV_MAX_ROWS 512
#define QM_MROWS 32 /* activation rows per task */
/* the _X8 layouts (quant.h) are cut only at whole groups of 8 rows */
_Static_assert(QM_NROWS % 8 == 0 && QM_GEMV_MAX_ROWS % 8 == 0, "tiles of whole 8-row groups");

/* Weight rows per GEMV task for N rows on `threads` threads: N split into a
 * multiple of `threads` equal parts of at most QM_GEMV_MAX_ROWS, rounded up
 * to whole 8-row groups. */
static int64_t gemv_rows(int64_t N, int64_t threads) {
    int64_t per_thread = (N + threads - 1) / threads;
    int64_t rounds = (per_thread + QM_GEMV_MAX_ROWS - 1) / QM_GEMV_MAX_ROWS;
    int64_t rows = (per_thread + rounds - 1) / rounds;
    return (rows + 7) / 8 * 8;
}

typedef struct {
    float *y;
    const opg_block_q8a *xq;
    const unsigned char *w;
    opg_dtype wt;
    const float *bias;
    int64_t M, N, K;
    int64_t n_rows;  /* weight rows per tile */
    int64_t n_tiles; /* tiles along N */
    int avx2;
} qm_job;

static void qm_task(void *ctx, int64_t t) {
    const qm_job *j = ctx;
    int64_t n0 = (t % j->n_tiles) * j->n_rows, m0 = (t / j->n_tiles) * QM_MROWS;
    int64_t n1 = n0 + j->n_rows < j->N ? n0 + j->n_rows : j->N;
    int64_t m1 = m0 + QM_MROWS < j->M ? m0 + QM_MROWS : j->M;
    if (j->avx2) {
        opg__qmatmul_tile_avx2(j->y, j->xq, j->w, j->wt, j->bias, j->N, j->K, m0, m1, n0, n1);
        return;
    }
    int64_t nb = j->K / OPG_QK;
    for (int64_t m = m0; m < m1; m++) {
        for (int64_t n = n0; n < n1; n++) {
            float v = opg_qdot_row_ref(j->w, j->wt, n, j->xq + m * nb, j->K);
            if (j->bias) v = v + j->bias[n];
            j->y[m * j->N + n] = v;
        }
    }
}

int opg_matmul_q8a(opg_pool *pool, float *y, const opg_block_q8a *xq, const void *w,
                   opg_dtype wt, const float *bias, int64_t M, int64_t N, int64_t K) {
    if (!opg_dtype_is_quant(wt) || M < 0 || N < 0 || K < 0) return -1;
    if (K % opg_dtype_block_elems(wt) != 0) return -1;
    if (opg_dtype_is_x8(wt) && N % 8 != 0) return -1; /* packed in whole groups of 8 rows */
    if (M == 0 || N == 0) return 0;
    if (!y || (K > 0 && (!xq || !w))) return -1;
    const int64_t n_rows = M <= QM_MROWS ? gemv_rows(N, opg_pool_threads(pool)) : QM_NROWS;
    qm_job j = {
        .y = y, .xq = xq, .w = w, .wt = wt, .bias = bias, .M = M, .N = N, .K = K,
        .n_rows = n_rows,
        .n_tiles = (N + n_rows - 1) / n_rows,
        .avx2 = opg_cpu_get_level() == OPG_CPU_AVX2,
    };
    int64_t m_tiles = (M + QM_MROWS - 1) / QM_MROWS;
    opg_pool_run(pool, qm_task, &j, j.n_tiles * m_tiles);
    return 0;
}
