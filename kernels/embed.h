/* embed.h: token embedding lookup (dequantized rows, docs/determinism.md section 10). */
#ifndef OPG_EMBED_H
#define OPG_EMBED_H

#include <stdint.h>

#include "dtype.h"

/* out[i][:] = row tokens[i] of table ([n_vocab][dim] in dtype t, an _X8 one
 * too: quant.h), for i < n. Returns 0, or -1 (out untouched from that token
 * on) when a token is outside [0, n_vocab), t/dim are unsupported, or (_X8)
 * n_vocab is not a multiple of 8. */
int opg_embed_ref(float *out, const void *table, opg_dtype t, int64_t dim, int64_t n_vocab,
                  const int32_t *tokens, int64_t n);

#endif
