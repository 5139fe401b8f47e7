/* embed.c: token embedding lookup (docs/determinism.md section 10): each row
 * is the GGUF dequantization of its table row (exact for f32/f16/bf16). */
#include "embed.h"

#include "quant.h"

int opg_embed_ref(float *out, const void *table, opg_dtype t, int64_t dim, int64_t n_vocab,
                  const int32_t *tokens, int64_t n) {
    size_t row_bytes = opg_dtype_row_bytes(t, dim);
    const int x8 = opg_dtype_is_x8(t);
    if (dim <= 0 || row_bytes == 0 || n_vocab < 0 || n < 0 || (x8 && n_vocab % 8 != 0)) return -1;
    for (int64_t i = 0; i < n; i++) {
        int32_t tok = tokens[i];
        if (tok < 0 || tok >= n_vocab) return -1;
        /* a packed table (a tied output the cpu backend packed): block by
         * block out of the 8 rows' runs */
        if (x8) {
            if (opg_dequantize_x8_row(out + i * dim, table, t, tok, dim) != 0) return -1;
            continue;
        }
        const unsigned char *row = (const unsigned char *)table + (size_t)tok * row_bytes;
        if (opg_dequantize_row_ref(out + i * dim, row, t, dim) != 0) return -1;
    }
    return 0;
}
