/* rmsnorm.h: y = x / sqrt(mean(x^2) + eps) * w, row by row
 * (docs/determinism.md section 6). */
#ifndef OPG_RMSNORM_H
#define OPG_RMSNORM_H

#include <stdint.h>

#include "pool.h"

/* One row of D elements. y may alias x. */
void opg_rmsnorm_ref(float *y, const float *x, const float *w, int64_t D, float eps);
/* M rows (contiguous, D apart), AVX2 when available, rows split over the pool. */
void opg_rmsnorm(opg_pool *pool, float *y, const float *x, const float *w, int64_t M,
                 int64_t D, float eps);

#endif
