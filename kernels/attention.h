/* attention.h: causal multi-head attention with GQA over a KV cache
 * (docs/determinism.md section 9).
 *
 * One sequence: n_q queries at consecutive absolute positions
 * pos0 .. pos0+n_q-1; the cache holds keys and values of positions
 * 0 .. pos0+n_q-1 (the current tokens included).
 *   q, out : [n_q][n_head * head_dim]
 *   k, v   : [positions][n_kv * head_dim]
 * n_head must be a multiple of n_kv, 1 <= head_dim <= OPG_ATTN_MAX_HEAD_DIM
 * and pos0 >= 0; a call that breaks one of these writes NaN to all of out
 * (when n_q, n_head and head_dim are positive) and nothing else. n_q <= 0 is
 * a no-op. A prefill (pos0 = 0, n_q = T) and T decode steps (n_q = 1) give
 * the same bits for every position. Neither function allocates: per-task
 * scratch lives on the stack (under 128 KB), which is what bounds head_dim. */
#ifndef OPG_ATTENTION_H
#define OPG_ATTENTION_H

#include <stdint.h>

#include "pool.h"

/* Largest head_dim accepted (2x the largest in common models). */
#define OPG_ATTN_MAX_HEAD_DIM 512

void opg_attention_ref(float *out, const float *q, const float *k, const float *v,
                       int64_t n_q, int64_t pos0, int n_head, int n_kv, int head_dim,
                       float scale);
/* Same bits; (query, head) pairs split over the pool, AVX2 when available. */
void opg_attention(opg_pool *pool, float *out, const float *q, const float *k,
                   const float *v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                   int head_dim, float scale);

#endif
