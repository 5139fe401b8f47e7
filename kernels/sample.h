/* sample.h: argmax, the counter-based RNG and temperature/top-k/top-p
 * sampling (docs/determinism.md section 10). */
#ifndef OPG_SAMPLE_H
#define OPG_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* also used by kernels/cuda/sample.cu */
#endif

/* splitmix64-based counter RNG: the same (seed, counter) gives the same bits. */
uint64_t opg_rng_u64(uint64_t seed, uint64_t counter);
/* Uniform in [0, 1) with 24 random bits, exact. */
float opg_rng_uniform(uint64_t seed, uint64_t counter);

/* Index of the largest value, lowest index on ties, NaN ignored; 0 when all
 * are NaN or n <= 0. */
int64_t opg_argmax_ref(const float *x, int64_t n);

typedef struct {
    float temperature; /* <= 0: greedy */
    int32_t top_k;     /* <= 0: all tokens */
    float top_p;       /* outside (0, 1): no nucleus cut */
    uint64_t seed;
} opg_sample_params;

/* Samples a token from logits[0..n) for step `step` of a job. Needs scratch
 * of opg_sample_scratch_bytes(n) bytes, 8-byte aligned (caller owns it; any
 * malloc'd block will do). Returns the token id (>= 0), or -1 when n <= 0 or
 * every logit is NaN. */
int64_t opg_sample_ref(const float *logits, int64_t n, const opg_sample_params *p,
                       uint64_t step, void *scratch);
/* Enough scratch for opg_sample_ref over n logits, whatever the params. */
size_t opg_sample_scratch_bytes(int64_t n);

/* The sampling order of the contract: writes to ids[0..) the token ids sorted
 * by (logit desc, id asc), NaN dropped, and with top_k > 0 only the first
 * min(top_k, count) of them (found by partial selection, the same ids as a
 * full sort's prefix). ids must hold n entries. Returns how many were
 * written (0 when n <= 0 or all are NaN). */
int64_t opg_sample_order_ref(const float *logits, int64_t n, int32_t top_k, int64_t *ids);

#ifdef __cplusplus
}
#endif

#endif
