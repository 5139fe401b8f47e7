/* softmax.c: the reference softmax (docs/determinism.md section 8) and the
 * dispatcher that splits rows over the pool and picks the AVX2 path. */
#include "softmax.h"

#include <math.h>

#include "contract.h"
#include "cpu.h"
#include "elementwise_impl.h"
#include "opg_math.h"

/* Canonical sum of section 4/8: sequential sum from +0 per 256-chunk,
 * chunk partials added left to right. */
static float sum_canonical(const float *e, int64_t n) {
    float total = 0.0f;
    for (int64_t c0 = 0; c0 < n; c0 += OPG_DOT_CHUNK) {
        int64_t c1 = c0 + OPG_DOT_CHUNK < n ? c0 + OPG_DOT_CHUNK : n;
        float p = 0.0f;
        for (int64_t k = c0; k < c1; k++) p = p + e[k];
        total = c0 == 0 ? p : total + p;
    }
    return total;
}

void opg_softmax_ref(float *y, const float *x, int64_t n) {
    /* NaN never becomes the max; a NaN input still makes every output NaN
     * through its e_i and the sum. */
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    for (int64_t i = 0; i < n; i++) y[i] = opg_expf(x[i] - m);
    float s = sum_canonical(y, n);
    for (int64_t i = 0; i < n; i++) y[i] = y[i] / s;
}

typedef struct {
    float *y;
    const float *x;
    int64_t M, n, rows_per_task;
    opg_cpu_level level;
} softmax_job;

static void softmax_task(void *ctx, int64_t t) {
    const softmax_job *j = ctx;
    int64_t r0 = t * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < j->M ? r0 + j->rows_per_task : j->M;
    if (j->level == OPG_CPU_AVX2) {
        opg__softmax_rows_avx2(j->y + r0 * j->n, j->x + r0 * j->n, r1 - r0, j->n);
        return;
    }
    for (int64_t r = r0; r < r1; r++) opg_softmax_ref(j->y + r * j->n, j->x + r * j->n, j->n);
}

void opg_softmax(opg_pool *pool, float *y, const float *x, int64_t M, int64_t n) {
    if (M <= 0 || n <= 0) return;
    /* Rows are independent: the task size only balances work. */
    int64_t threads = opg_pool_threads(pool);
    int64_t rpt = (M + 4 * threads - 1) / (4 * threads);
    int64_t min_rows = (16384 + n - 1) / n;
    if (rpt < min_rows) rpt = min_rows;
    softmax_job j = {y, x, M, n, rpt, opg_cpu_get_level()};
    opg_pool_run(pool, softmax_task, &j, (M + rpt - 1) / rpt);
}
