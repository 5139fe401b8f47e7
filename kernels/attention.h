/* attention.h: causal multi-head attention with GQA over a KV cache
 * (docs/determinism.md section 9).
 *
 * One sequence: n_q queries at consecutive absolute positions
 * pos0 .. pos0+n_q-1; the cache holds keys and values of positions
 * 0 .. pos0+n_q-1 (the current tokens included).
 *   q, out : [n_q][n_head * head_dim]
 *   k, v   : [positions][n_kv * head_dim]
 * n_head must be a multiple of n_kv. A prefill (pos0 = 0, n_q = T) and T
 * decode steps (n_q = 1) give the same bits for every position. */
#ifndef OPG_ATTENTION_H
#define OPG_ATTENTION_H

#include <stdint.h>

#include "pool.h"

void opg_attention_ref(float *out, const float *q, const float *k, const float *v,
                       int64_t n_q, int64_t pos0, int n_head, int n_kv, int head_dim,
                       float scale);
/* Same bits; (query, head) pairs split over the pool, AVX2 when available. */
void opg_attention(opg_pool *pool, float *out, const float *q, const float *k,
                   const float *v, int64_t n_q, int64_t pos0, int n_head, int n_kv,
                   int head_dim, float scale);

#endif
