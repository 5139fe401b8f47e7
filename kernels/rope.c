/* rope.c: the reference RoPE (docs/determinism.md section 7): frequency and
 * sin/cos tables in binary64 with the contract's own functions, the pair
 * rotation, and the batched form that splits tokens over the pool. */
#include "rope.h"

#include <math.h>

#include "cpu.h"
#include "elementwise_impl.h"
#include "opg_math.h"

void opg_rope_freqs(double *inv_freq, int n_dims, double base) {
    double log_base = opg_log_f64(base);
    for (int i = 0; i < n_dims / 2; i++)
        inv_freq[i] = opg_exp_f64(-((double)(2 * i) / (double)n_dims) * log_base);
}

void opg_rope_table(float *cos_out, float *sin_out, int64_t pos, const double *inv_freq,
                    int n_half) {
    for (int i = 0; i < n_half; i++) {
        double a = (double)pos * inv_freq[i];
        double s, c;
        opg_sincos_f64(a, &s, &c);
        cos_out[i] = (float)c;
        sin_out[i] = (float)s;
    }
}

/* (x0, x1) -> (x0*cos - x1*sin, x0*sin + x1*cos) in the contract's four steps. */
static inline void rotate_pair(float *x0, float *x1, float cs, float sn) {
    float t = *x1 * sn;
    float y0 = fmaf(*x0, cs, -t);
    float u = *x1 * cs;
    float y1 = fmaf(*x0, sn, u);
    *x0 = y0;
    *x1 = y1;
}

void opg__rope_apply_pairs(float *x, int n_heads, int head_dim, int n_dims, const float *cs,
                           const float *sn, int i0, int n, opg_rope_mode mode) {
    int half = n_dims / 2;
    for (int h = 0; h < n_heads; h++) {
        float *xh = x + (int64_t)h * head_dim;
        for (int j = 0; j < n; j++) {
            int i = i0 + j;
            if (mode == OPG_ROPE_NEOX) rotate_pair(&xh[i], &xh[i + half], cs[j], sn[j]);
            else rotate_pair(&xh[2 * i], &xh[2 * i + 1], cs[j], sn[j]);
        }
    }
}

/* Dimensions n_dims..head_dim-1 are left as they are (partial rotary). */
void opg_rope_apply_ref(float *x, int n_heads, int head_dim, int n_dims, const float *cs,
                        const float *sn, opg_rope_mode mode) {
    if (n_dims <= 0 || n_dims > head_dim || n_dims % 2 != 0) return;
    opg__rope_apply_pairs(x, n_heads, head_dim, n_dims, cs, sn, 0, n_dims / 2, mode);
}

/* Pairs per table block: the table is built and applied a block at a time
 * so no allocation is needed for any n_dims. */
#define ROPE_BLOCK 128

typedef struct {
    float *x;
    const int32_t *pos;
    const double *inv_freq;
    int n_heads, head_dim, n_dims;
    opg_rope_mode mode;
    opg_cpu_level level;
} rope_job;

static void rope_task(void *ctx, int64_t t) {
    const rope_job *j = ctx;
    float *xt = j->x + t * (int64_t)j->n_heads * j->head_dim;
    float cs[ROPE_BLOCK], sn[ROPE_BLOCK];
    int half = j->n_dims / 2;
    for (int i0 = 0; i0 < half; i0 += ROPE_BLOCK) {
        int n = half - i0 < ROPE_BLOCK ? half - i0 : ROPE_BLOCK;
        if (j->level == OPG_CPU_AVX2) {
            opg__rope_table_avx2(cs, sn, j->pos[t], j->inv_freq + i0, n);
            opg__rope_apply_pairs_avx2(xt, j->n_heads, j->head_dim, j->n_dims, cs, sn, i0, n,
                                       j->mode);
        } else {
            opg_rope_table(cs, sn, j->pos[t], j->inv_freq + i0, n);
            opg__rope_apply_pairs(xt, j->n_heads, j->head_dim, j->n_dims, cs, sn, i0, n,
                                  j->mode);
        }
    }
}

void opg_rope(opg_pool *pool, float *x, int64_t n_tok, const int32_t *pos, int n_heads,
              int head_dim, int n_dims, const double *inv_freq, opg_rope_mode mode) {
    if (n_tok <= 0 || n_dims <= 0 || n_dims > head_dim || n_dims % 2 != 0) return;
    /* One task per token: a token's bits depend only on its own position. */
    rope_job j = {x, pos, inv_freq, n_heads, head_dim, n_dims, mode, opg_cpu_get_level()};
    opg_pool_run(pool, rope_task, &j, n_tok);
}
