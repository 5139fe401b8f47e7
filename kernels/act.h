/* act.h: elementwise activations, SiLU and SwiGLU (docs/determinism.md section 8). */
#ifndef OPG_ACT_H
#define OPG_ACT_H

#include <stdint.h>

#include "pool.h"

/* out[i] = opg_siluf(gate[i]) * up[i]. out may alias gate or up. */
void opg_swiglu_ref(float *out, const float *gate, const float *up, int64_t n);
/* Same bits, AVX2 when available, split over the pool in fixed blocks. */
void opg_swiglu(opg_pool *pool, float *out, const float *gate, const float *up, int64_t n);

/* out[i] = opg_siluf(x[i]). */
void opg_silu_ref(float *out, const float *x, int64_t n);

#endif
