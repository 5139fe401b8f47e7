/* rope.h: rotary position embedding, normal (Llama) and NeoX layouts, from
 * the contract's own frequency and sin/cos tables (docs/determinism.md section 7). */
#ifndef OPG_ROPE_H
#define OPG_ROPE_H

#include <stdint.h>

#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { OPG_ROPE_NORMAL = 0, OPG_ROPE_NEOX = 2 } opg_rope_mode; /* GGUF's values */

/* inv_freq[i] for i in [0, n_dims/2), binary64. n_dims even, > 0; base > 0. */
void opg_rope_freqs(double *inv_freq, int n_dims, double base);
/* cos/sin of angle pos * inv_freq[i] for i in [0, n_half), rounded to f32. */
void opg_rope_table(float *cos_out, float *sin_out, int64_t pos, const double *inv_freq,
                    int n_half);

/* Rotates one token's heads in place: x is [n_heads][head_dim]; the first
 * n_dims dimensions of each head rotate (n_dims <= head_dim, even), the rest
 * stay. cs/sn are the table of that token's position (n_dims/2 each).
 * An n_dims that is odd, <= 0 or > head_dim leaves x unchanged (here and in
 * opg_rope); a mode other than OPG_ROPE_NEOX rotates as OPG_ROPE_NORMAL. */
void opg_rope_apply_ref(float *x, int n_heads, int head_dim, int n_dims, const float *cs,
                        const float *sn, opg_rope_mode mode);

/* n_tok tokens of [n_heads][head_dim] each (contiguous), token t at
 * position pos[t]: builds each table and applies it; tokens split over the
 * pool. Same bits as the reference. */
void opg_rope(opg_pool *pool, float *x, int64_t n_tok, const int32_t *pos, int n_heads,
              int head_dim, int n_dims, const double *inv_freq, opg_rope_mode mode);

#ifdef __cplusplus
}
#endif

#endif
