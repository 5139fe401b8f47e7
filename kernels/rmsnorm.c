/* rmsnorm.c: the reference RMSNorm (docs/determinism.md section 6) and the
 * dispatcher that splits rows over the pool and picks the AVX2 path. */
#include "rmsnorm.h"

#include <math.h>

#include "contract.h"
#include "cpu.h"
#include "elementwise_impl.h"
#include "matmul.h"

void opg_rmsnorm_ref(float *y, const float *x, const float *w, int64_t D, float eps) {
    float ss = opg_dot_f32_ref(x, x, D); /* the canonical dot of section 4 */
    float ms = ss / (float)D;
    float inv = 1.0f / sqrtf(ms + eps);
    for (int64_t i = 0; i < D; i++) y[i] = (x[i] * inv) * w[i];
}

typedef struct {
    float *y;
    const float *x, *w;
    int64_t M, D, rows_per_task;
    float eps;
    opg_cpu_level level;
} rms_job;

static void rms_task(void *ctx, int64_t t) {
    const rms_job *j = ctx;
    int64_t r0 = t * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < j->M ? r0 + j->rows_per_task : j->M;
    if (j->level == OPG_CPU_AVX2) {
        opg__rmsnorm_rows_avx2(j->y + r0 * j->D, j->x + r0 * j->D, j->w, r1 - r0, j->D, j->eps);
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        opg_rmsnorm_ref(j->y + r * j->D, j->x + r * j->D, j->w, j->D, j->eps);
}

void opg_rmsnorm(opg_pool *pool, float *y, const float *x, const float *w, int64_t M,
                 int64_t D, float eps) {
    if (M <= 0 || D <= 0) return;
    /* Task size only balances work (rows are independent, so it changes no
     * bit): a few tasks per thread, at least ~16K elements each, whole
     * groups of 8 rows for the AVX2 row lanes. */
    int64_t threads = opg_pool_threads(pool);
    int64_t rpt = (M + 4 * threads - 1) / (4 * threads);
    int64_t min_rows = (16384 + D - 1) / D;
    if (rpt < min_rows) rpt = min_rows;
    rpt = (rpt + 7) / 8 * 8;
    rms_job j = {y, x, w, M, D, rpt, eps, opg_cpu_get_level()};
    opg_pool_run(pool, rms_task, &j, (M + rpt - 1) / rpt);
}
