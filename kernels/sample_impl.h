/* sample_impl.h: the sequential tail of sampling (docs/determinism.md
 * section 10), shared by the reference (sample.c) and the CUDA kernel
 * (kernels/cuda/sample.cu, where nvcc compiles it __host__ __device__), so
 * both run exactly these steps. Not part of the public API. */
#ifndef OPG_SAMPLE_IMPL_H
#define OPG_SAMPLE_IMPL_H

#include <stdint.h>

#include "opg_math.h"

/* Given e[0..kept) (kept >= 1) in the sampling order, the top-p value P and
 * the draw u: S = sequential sum from +0; if 0 < P < 1 keep the shortest
 * prefix whose sequential sum reaches P * S (all when none does, i.e. S is
 * NaN); S' = sequential sum of the kept; r = u * S'; the first j with
 * r < c_j (c_j the running sum from +0), else the last kept. Returns j. */
OPG_HD int64_t opg__sample_pick(const float *e, int64_t kept, float P, float u) {
    float S = 0.0f;
    for (int64_t j = 0; j < kept; j++) S = S + e[j];
    /* S' is the same sequential sum over the kept prefix: the running sum at
     * the cut, or S itself when nothing is cut (same operations, same order) */
    float S2 = S;
    if (P > 0.0f && P < 1.0f) {
        const float thr = P * S;
        float cum = 0.0f;
        for (int64_t j = 0; j < kept; j++) {
            cum = cum + e[j];
            if (cum >= thr) {
                kept = j + 1;
                S2 = cum;
                break;
            }
        }
    }
    const float r = u * S2;
    float c = 0.0f;
    for (int64_t j = 0; j < kept; j++) {
        c = c + e[j];
        if (r < c) return j;
    }
    return kept - 1;
}

#endif
