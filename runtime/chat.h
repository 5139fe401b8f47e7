/* chat.h: chat templates of the common instruct formats, rendered in C.
 *
 * A conversation (role, content pairs) becomes the one string the model was
 * trained on; encode it with OPG_TOK_PARSE_SPECIAL and WITHOUT
 * OPG_TOK_ADD_SPECIAL / OPG_TOK_ADD_BOS: the string already holds the BOS
 * text where the format's official template puts one.
 *
 *   OPG_CHAT_CHATML  (Qwen2, SmolLM2, ...)
 *       "<|im_start|>" role "\n" content "<|im_end|>\n"  per message;
 *       generation prompt "<|im_start|>assistant\n". Any role; no default
 *       system message is invented (Qwen's and SmolLM's own templates add one
 *       when the conversation has none: pass it explicitly).
 *   OPG_CHAT_LLAMA3  (Meta-Llama-3-*-Instruct)
 *       "<|begin_of_text|>" before the first message, then per message
 *       "<|start_header_id|>" role "<|end_header_id|>\n\n" trim(content)
 *       "<|eot_id|>"; generation prompt
 *       "<|start_header_id|>assistant<|end_header_id|>\n\n". Any role.
 *       (Llama 3.1+ templates also invent a system preamble with knowledge
 *       and current dates when none is given; this renderer does not.)
 *   OPG_CHAT_LLAMA2  (Llama-2-*-chat, Meta's template)
 *       an optional first "system" message goes into the first user turn as
 *       "<<SYS>>\n" system "\n<</SYS>>\n\n"; then user and assistant strictly
 *       alternate starting with user: "<s>[INST] " strip(user) " [/INST]" and
 *       " " strip(assistant) " </s>" (with a system message, the strip covers
 *       "<<SYS>>..." + user as one string, as Meta's template does). The
 *       format has no generation prompt (the model answers after "[/INST]").
 *       Any other role or order, or a system message with no user message
 *       after it: OPG_ERR_ARG.
 * trim/strip remove leading and trailing ASCII whitespace (" \t\n\v\f\r"). */
#ifndef OPG_CHAT_H
#define OPG_CHAT_H

#include <stddef.h>

#include "gguf.h"
#include "tokenizer.h"
#include "status.h"

typedef enum {
    OPG_CHAT_CHATML = 1,
    OPG_CHAT_LLAMA3 = 2,
    OPG_CHAT_LLAMA2 = 3,
} opg_chat_format;

typedef struct {
    const char *role;    /* NUL-terminated, e.g. "system", "user", "assistant" */
    const char *content; /* NUL-terminated */
} opg_chat_msg;

/* "chatml", "llama3", "llama2" (exact, lower case) -> format; else
 * OPG_ERR_NOT_FOUND naming the known names. */
opg_status opg_chat_format_from_name(const char *name, opg_chat_format *out);
/* Static name of a format ("chatml", ...), "unknown" otherwise. */
const char *opg_chat_format_name(opg_chat_format f);

/* Picks the format from a Jinja chat template's text by its markers:
 * "<|im_start|>" -> ChatML; "<|start_header_id|>" and "<|end_header_id|>"
 * -> Llama 3; "[INST]" and "<<SYS>>" -> Llama 2. Anything else (Mistral's
 * "[INST]" without "<<SYS>>", Gemma, Phi-3, ...) is OPG_ERR_UNSUPPORTED. */
opg_status opg_chat_format_detect(const char *tmpl, size_t len, opg_chat_format *out);
/* Same on the file's tokenizer.chat_template; OPG_ERR_NOT_FOUND when absent. */
opg_status opg_chat_format_from_gguf(const opg_gguf *g, opg_chat_format *out);

/* Renders n messages (n may be 0) and, when add_generation_prompt, the cue
 * for the assistant's reply. *out is a malloc'd NUL-terminated string the
 * caller frees with free(); *out_len its length (out_len may be NULL). On
 * error *out is NULL. */
opg_status opg_chat_apply(opg_chat_format f, const opg_chat_msg *msgs, size_t n, int add_generation_prompt,
                          char **out, size_t *out_len);

/* A prompt as token ids: text encoded with the tokenizer's special tokens
 * (BOS where the model wants it), or with chat set, rendered first as one user
 * message through the file's chat template and encoded with special tokens
 * parsed. *ids (caller frees with free()) holds *n ids; *n may be 0. */
opg_status opg_chat_encode_prompt(const opg_tokenizer *tok, const opg_gguf *g, const char *text, int chat,
                                  int32_t **ids, int64_t *n);

#endif
