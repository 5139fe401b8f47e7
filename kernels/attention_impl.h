/* attention_impl.h: internals shared by the attention reference (attention.c)
 * and its AVX2 path (attention_avx2.c). Not part of the public API. */
#ifndef OPG_ATTENTION_IMPL_H
#define OPG_ATTENTION_IMPL_H

#include <stdint.h>

/* The max of docs/determinism.md section 9, one definition for every path so
 * that even NaN scores (outside the tested promise) give the same bits:
 * b wins only when b > a. For NaN-free inputs any max gives the same result
 * bits (only the sign of a zero max can differ, and it reaches nothing but
 * opg_expf of a difference, where +0 and -0 both give 1). */
static inline float opg__attn_maxf(float a, float b) { return b > a ? b : a; }

/* The arguments of one opg_attention call (see attention.h for the shapes). */
typedef struct {
    float *out;
    const float *q, *k, *v;
    int64_t n_q, pos0;
    int n_head, n_kv, head_dim;
    float scale;
} opg__attn_args;

/* Reference for one (query i, head h) pair; writes out[i][h*head_dim ..].
 * seg: scratch of head_dim floats (the state of segments after the first). */
void opg__attention_pair_ref(const opg__attn_args *a, int64_t i, int h, float *seg);

/* Heads whose scores and value sums the AVX2 path computes together: they
 * share a KV head, so each packed key chunk and value row serves all. */
#define OPG__ATTN_GROUP 4
/* Bounds of one AVX2 task (its scratch is on the stack): heads, and heads
 * times head_dim. */
#define OPG__ATTN_TASK_HEADS 256
#define OPG__ATTN_TASK_FLOATS 8192

/* AVX2 path for query i and heads h_lo .. h_lo+nh-1 (any KV heads), with
 * nh <= OPG__ATTN_TASK_HEADS and nh * head_dim <= OPG__ATTN_TASK_FLOATS.
 * Walks the keys chunk by chunk for all these heads at once, so the cache
 * rows are read nearly contiguously. Same bits as opg__attention_pair_ref on
 * each pair. Call only when opg_cpu_get_level() == OPG_CPU_AVX2. */
void opg__attention_avx2(const opg__attn_args *a, int64_t i, int h_lo, int nh);

#endif
