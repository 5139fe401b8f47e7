/* act.c: the reference SiLU / SwiGLU (docs/determinism.md section 8) and the
 * dispatcher that splits SwiGLU over the pool and picks the AVX2 path. */
#include "act.h"

#include "cpu.h"
#include "elementwise_impl.h"
#include "opg_math.h"

void opg_swiglu_ref(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = opg_siluf(gate[i]) * up[i];
}

void opg_silu_ref(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = opg_siluf(x[i]);
}

/* Elements are independent: the block size only balances work. */
#define SWIGLU_BLOCK 8192

typedef struct {
    float *out;
    const float *gate, *up;
    int64_t n;
    opg_cpu_level level;
} swiglu_job;

static void swiglu_task(void *ctx, int64_t t) {
    const swiglu_job *j = ctx;
    int64_t i0 = t * SWIGLU_BLOCK;
    int64_t len = i0 + SWIGLU_BLOCK < j->n ? SWIGLU_BLOCK : j->n - i0;
    if (j->level == OPG_CPU_AVX2)
        opg__swiglu_avx2(j->out + i0, j->gate + i0, j->up + i0, len);
    else
        opg_swiglu_ref(j->out + i0, j->gate + i0, j->up + i0, len);
}

void opg_swiglu(opg_pool *pool, float *out, const float *gate, const float *up, int64_t n) {
    if (n <= 0) return;
    swiglu_job j = {out, gate, up, n, opg_cpu_get_level()};
    opg_pool_run(pool, swiglu_task, &j, (n + SWIGLU_BLOCK - 1) / SWIGLU_BLOCK);
}
