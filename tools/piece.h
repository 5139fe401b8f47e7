/* piece.h: streaming a token's text to a FILE, for the opg commands that
 * print generated text as it comes (opg run, opg submit). */
#ifndef OPG_TOOLS_PIECE_H
#define OPG_TOOLS_PIECE_H

#include <stdint.h>
#include <stdio.h>

#include "tokenizer.h"

/* Writes token's piece (opg_tokenizer_token_to_piece, flags 0) to f, whole
 * however long; a token without text writes nothing. */
void opg_tool_write_piece(const opg_tokenizer *tok, int32_t token, FILE *f);

#endif
