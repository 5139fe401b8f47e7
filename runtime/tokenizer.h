/* tokenizer.h: text <-> token ids from a model's GGUF vocabulary.
 *
 * Two vocabulary kinds (GGUF key tokenizer.ggml.model):
 *   "llama"  SentencePiece-style (OPG_TOK_SPM): spaces escaped to U+2581,
 *            a space prefixed when add_space_prefix, score-driven bigram
 *            merges, unknown characters as byte-fallback tokens <0xXX>.
 *   "gpt2"   byte-level BPE (OPG_TOK_BPE): the text is split by the
 *            pre-tokenizer regex of tokenizer.ggml.pre, every byte mapped to
 *            GPT-2's printable code point, then merges applied by rank.
 * Pre-tokenizers (tokenizer.ggml.pre) for "gpt2" vocabularies: "gpt-2" and
 * "default" (GPT-2's regex), "llama-bpe"/"llama3"/"llama-v3" (Llama 3),
 * "qwen2" (Qwen2), "smollm" (digits split one by one, then GPT-2's regex).
 * Any other value is OPG_ERR_UNSUPPORTED.
 *
 * Semantics follow llama.cpp's llama-vocab.cpp (whose test files check the
 * ids), with these deliberate differences, all confined to odd input:
 *  - text encoded as plain text (not a special-token match) never yields a
 *    CONTROL or UNKNOWN token, even if a merge would spell one;
 *  - invalid UTF-8 is kept byte for byte: SPM cuts it into one-byte symbols
 *    (each becomes its byte-fallback token, or unk without byte tokens); the
 *    BPE pre-tokenizer never matches an invalid byte, so each maximal run of
 *    them between matches is its own piece, encoded byte-level;
 *  - decoding never applies "clean up tokenization spaces";
 *  - a character with no token in an incomplete vocabulary becomes the
 *    unknown token, and without one the encode fails (OPG_ERR_UNSUPPORTED)
 *    for both kinds; llama.cpp's BPE drops it silently.
 *
 * Special tokens: tokens of type CONTROL, USER_DEFINED or UNKNOWN. Before the
 * normal algorithm the text is cut at occurrences of their texts, longest
 * token text first (each token splits every remaining plain fragment at all
 * its occurrences); USER_DEFINED tokens are always cut out, CONTROL and
 * UNKNOWN only with OPG_TOK_PARSE_SPECIAL. Tokens whose text is an
 * end-of-turn marker ("<|eot_id|>", "<|im_end|>", "<|endoftext|>", ...) are
 * typed CONTROL whatever the file says.
 *
 * Round trip (decode with OPG_TOK_DECODE_STRIP_PREFIX | OPG_TOK_DECODE_SPECIAL
 * of encode of text):
 *  - BPE with a complete byte alphabet: every byte string comes back exactly,
 *    with or without OPG_TOK_PARSE_SPECIAL;
 *  - SPM with byte-fallback tokens: every byte string comes back exactly,
 *    except that a literal U+2581 in the text comes back as ' ' (escaped
 *    spaces and U+2581 are one symbol: SentencePiece's own ambiguity). The
 *    space the encoder prefixes to each plain fragment (at the start and
 *    after each special token) is the one the decoder strips; without the
 *    strip flag the result has that one extra leading space per fragment.
 *
 * Thread safety: a tokenizer is immutable once built; every function below
 * may run concurrently on one handle. Ownership: the caller owns the handle
 * (opg_tokenizer_free); it copies everything it needs, so the GGUF file or
 * arrays it was built from may be released right after. */
#ifndef OPG_TOKENIZER_H
#define OPG_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "status.h"

typedef struct opg_tokenizer opg_tokenizer;

typedef enum {
    OPG_TOK_SPM = 1, /* tokenizer.ggml.model "llama" */
    OPG_TOK_BPE = 2, /* tokenizer.ggml.model "gpt2" */
} opg_tok_model;

typedef enum {
    OPG_TOK_PRE_NONE = 0,   /* SPM: no regex pre-tokenizer */
    OPG_TOK_PRE_GPT2 = 1,
    OPG_TOK_PRE_LLAMA3 = 2, /* also whole-word lookup before merges (ignore_merges) */
    OPG_TOK_PRE_QWEN2 = 3,
    OPG_TOK_PRE_SMOLLM = 4,
} opg_tok_pre;

/* Token types: GGUF tokenizer.ggml.token_type numbering (never renumbered). */
typedef enum {
    OPG_TOKEN_UNDEFINED = 0,
    OPG_TOKEN_NORMAL = 1,
    OPG_TOKEN_UNKNOWN = 2,
    OPG_TOKEN_CONTROL = 3,
    OPG_TOKEN_USER_DEFINED = 4,
    OPG_TOKEN_UNUSED = 5,
    OPG_TOKEN_BYTE = 6,
} opg_token_type;

/* Encode flags. */
#define OPG_TOK_ADD_SPECIAL   0x01u /* BOS / EOS as the vocabulary says (add_bos_token, add_eos_token) */
#define OPG_TOK_ADD_BOS       0x02u /* BOS first, whatever the vocabulary says */
#define OPG_TOK_ADD_EOS       0x04u /* EOS last, whatever the vocabulary says */
#define OPG_TOK_PARSE_SPECIAL 0x08u /* CONTROL / UNKNOWN token texts in the input become their ids */
#define OPG_TOK_STRICT_UTF8   0x10u /* invalid UTF-8 input is OPG_ERR_ARG (else encoded byte for byte) */

/* Decode flags (distinct bits from the encode flags). */
#define OPG_TOK_DECODE_SPECIAL      0x100u /* CONTROL / UNKNOWN tokens as their text; else nothing */
#define OPG_TOK_DECODE_STRIP_PREFIX 0x200u /* SPM with add_space_prefix: drop the one leading space
                                              of the first text piece at the start and after each
                                              special token (undoes the encoder's prefix) */

/* In-memory vocabulary (tests, tools). Start from opg_tokenizer_params_init. */
typedef struct {
    opg_tok_model model;
    const char *pre;             /* pre-tokenizer name as in tokenizer.ggml.pre; NULL = "default" */
    size_t n_tokens;
    const char *const *tokens;   /* n_tokens token texts */
    const size_t *token_lens;    /* their byte lengths; NULL = NUL-terminated */
    const float *scores;         /* n_tokens SPM scores; NULL = all 0 */
    const int32_t *types;        /* n_tokens opg_token_type; NULL = all NORMAL */
    size_t n_merges;
    const char *const *merges;   /* BPE: "left right", rank = index (NUL-terminated) */
    int32_t bos_id, eos_id, unk_id, pad_id, eot_id, eom_id; /* -1 = none */
    int add_bos, add_eos;        /* 0/1, -1 = the model's default (llama.cpp's) */
    int add_space_prefix;        /* SPM only: 0/1, -1 = default (1) */
} opg_tokenizer_params;

/* Sets every id to -1, every flag to -1 (default), everything else to 0/NULL. */
void opg_tokenizer_params_init(opg_tokenizer_params *p);

/* Builds a tokenizer from a vocabulary. Copies what it needs. On error *out
 * is NULL: OPG_ERR_ARG for inconsistent params (count, id out of range),
 * OPG_ERR_UNSUPPORTED for an unknown pre-tokenizer. Caller owns *out. */
opg_status opg_tokenizer_new(const opg_tokenizer_params *p, opg_tokenizer **out);

/* Builds a tokenizer from a GGUF file's tokenizer.ggml.* metadata: model,
 * pre, tokens, scores, token_type, merges, bos/eos/eot/eom/unknown/padding
 * token ids, add_bos_token, add_eos_token, add_space_prefix. Missing
 * optional keys take llama.cpp's defaults (SPM: bos 1, eos 2, unk 0, add
 * BOS; Llama 3 pre-tokenizer: add BOS). Errors: OPG_ERR_NOT_FOUND (no
 * tokenizer.ggml.model / tokens / merges for BPE), OPG_ERR_FORMAT (a key of
 * the wrong type or length, an id out of range), OPG_ERR_UNSUPPORTED (other
 * model or pre-tokenizer). Caller owns *out; g may be closed afterwards. */
opg_status opg_tokenizer_from_gguf(const opg_gguf *g, opg_tokenizer **out);

/* Frees; NULL is a no-op. */
void opg_tokenizer_free(opg_tokenizer *t);

/* Encodes len bytes of text (need not be NUL-terminated) into ids[0..*n_out).
 * When cap is too small: OPG_ERR_LIMIT, *n_out = the count needed (so
 * cap = 0, ids = NULL asks for the count), ids contents unspecified.
 * OPG_ERR_ARG: text NULL with len > 0, BOS/EOS asked for but the vocabulary
 * has none, invalid UTF-8 under OPG_TOK_STRICT_UTF8 (the message names the
 * byte offset). OPG_ERR_LIMIT also for text over 1 GiB. */
opg_status opg_tokenizer_encode(const opg_tokenizer *t, const char *text, size_t len,
                                unsigned flags, int32_t *ids, size_t cap, size_t *n_out);

/* Decodes n ids into out: *n_out bytes plus a terminating NUL (cap must be
 * at least *n_out + 1). Too small: OPG_ERR_LIMIT, *n_out = bytes needed
 * (without the NUL). OPG_ERR_ARG for an id out of range. Flags: the
 * OPG_TOK_DECODE_* bits. The bytes need not be valid UTF-8 (a byte-fallback
 * sequence may be cut). */
opg_status opg_tokenizer_decode(const opg_tokenizer *t, const int32_t *ids, size_t n,
                                unsigned flags, char *out, size_t cap, size_t *n_out);

/* Bytes of one token as decode renders it alone (no prefix stripping):
 * SPM U+2581 -> ' ', <0xXX> -> the byte; BPE GPT-2 code points -> bytes;
 * USER_DEFINED -> its text; CONTROL / UNKNOWN -> text with
 * OPG_TOK_DECODE_SPECIAL, else nothing. Same cap / NUL / LIMIT rules as
 * decode. For streaming, concatenate pieces: a piece may end inside a
 * UTF-8 character. */
opg_status opg_tokenizer_token_to_piece(const opg_tokenizer *t, int32_t id, unsigned flags,
                                        char *out, size_t cap, size_t *n_out);

/* The vocabulary's raw text of id (GPT-2 / U+2581 escaped), not NUL-
 * terminated, valid until free; NULL (and *len 0) when id is out of range. */
const char *opg_tokenizer_token_text(const opg_tokenizer *t, int32_t id, size_t *len);
/* Id of the token whose raw text is exactly s[0..len), or -1. */
int32_t opg_tokenizer_find(const opg_tokenizer *t, const char *s, size_t len);

int32_t opg_tokenizer_n_vocab(const opg_tokenizer *t);
opg_tok_model opg_tokenizer_model(const opg_tokenizer *t);
opg_tok_pre opg_tokenizer_pre(const opg_tokenizer *t);
/* Type of id (OPG_TOKEN_UNDEFINED when out of range). */
opg_token_type opg_tokenizer_token_type(const opg_tokenizer *t, int32_t id);
/* Special ids, -1 when the vocabulary has none. */
int32_t opg_tokenizer_bos(const opg_tokenizer *t);
int32_t opg_tokenizer_eos(const opg_tokenizer *t);
int32_t opg_tokenizer_unk(const opg_tokenizer *t);
int32_t opg_tokenizer_pad(const opg_tokenizer *t);
/* End of generation: EOS, EOT, EOM, or a token whose text is an end-of-turn
 * marker ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
 * "<|endoftext|>", "<|eom_id|>", "<EOT>"). */
int opg_tokenizer_is_eog(const opg_tokenizer *t, int32_t id);
/* Whether ADD_SPECIAL adds BOS / EOS, and whether SPM prefixes a space. */
int opg_tokenizer_add_bos(const opg_tokenizer *t);
int opg_tokenizer_add_eos(const opg_tokenizer *t);
int opg_tokenizer_add_space_prefix(const opg_tokenizer *t);

#endif
