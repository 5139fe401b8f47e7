/* piece.c: see piece.h. */
#include "piece.h"

#include <stdlib.h>

void opg_tool_write_piece(const opg_tokenizer *tok, int32_t token, FILE *f) {
    char buf[256], *piece = buf;
    size_t n = 0;
    opg_status st = opg_tokenizer_token_to_piece(tok, token, 0, buf, sizeof buf, &n);
    if (st == OPG_ERR_LIMIT && n >= sizeof buf && (piece = malloc(n + 1)) != NULL)
        st = opg_tokenizer_token_to_piece(tok, token, 0, piece, n + 1, &n); /* a long token */
    if (st == OPG_OK) fwrite(piece, 1, n, f);
    if (piece != buf) free(piece);
}
