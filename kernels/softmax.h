/* softmax.h: y = exp(x - max) / sum, canonical sum (docs/determinism.md section 8). */
#ifndef OPG_SOFTMAX_H
#define OPG_SOFTMAX_H

#include <stdint.h>

#include "pool.h"

/* One row of n > 0 values; y may alias x. */
void opg_softmax_ref(float *y, const float *x, int64_t n);
/* M rows of n values, AVX2 when available, rows split over the pool. */
void opg_softmax(opg_pool *pool, float *y, const float *x, int64_t M, int64_t n);

#endif
