/* chat.c: the ChatML, Llama 3 and Llama 2 chat templates (contract in chat.h). */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (len > b->cap - b->n - 1 || !b->p) {
        size_t c = b->cap ? b->cap : 256;
        while (c - b->n - 1 < len) {
            if (c > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            c *= 2;
        }
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = c;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

/* content without leading and trailing ASCII whitespace */
static void sb_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && is_ws(s[a])) a++;
    while (n > a && is_ws(s[n - 1])) n--;
    sb_put(b, s + a, n - a);
}

static const char *const NAMES[] = {NULL, "chatml", "llama3", "llama2"};

opg_status opg_chat_format_from_name(const char *name, opg_chat_format *out) {
    if (!name || !out) return opg__fail(OPG_ERR_ARG, "chat: NULL argument");
    for (int f = OPG_CHAT_CHATML; f <= OPG_CHAT_LLAMA2; f++)
        if (strcmp(name, NAMES[f]) == 0) {
            *out = (opg_chat_format)f;
            return OPG_OK;
        }
    return opg__fail(OPG_ERR_NOT_FOUND, "chat: unknown template name '%.64s' (chatml, llama3, llama2)", name);
}

const char *opg_chat_format_name(opg_chat_format f) {
    return f >= OPG_CHAT_CHATML && f <= OPG_CHAT_LLAMA2 ? NAMES[f] : "unknown";
}

static int has(const char *s, size_t len, const char *needle) {
    return s && memmem(s, len, needle, strlen(needle)) != NULL;
}

opg_status opg_chat_format_detect(const char *tmpl, size_t len, opg_chat_format *out) {
    if ((!tmpl && len) || !out) return opg__fail(OPG_ERR_ARG, "chat: NULL argument");
    if (has(tmpl, len, "<|im_start|>")) *out = OPG_CHAT_CHATML;
    else if (has(tmpl, len, "<|start_header_id|>") && has(tmpl, len, "<|end_header_id|>")) *out = OPG_CHAT_LLAMA3;
    else if (has(tmpl, len, "[INST]") && has(tmpl, len, "<<SYS>>")) *out = OPG_CHAT_LLAMA2;
    else
        return opg__fail(OPG_ERR_UNSUPPORTED,
                         "chat: template not recognised (supported: ChatML, Llama 3, Llama 2); pick one by name");
    return OPG_OK;
}

opg_status opg_chat_format_from_gguf(const opg_gguf *g, opg_chat_format *out) {
    if (!g || !out) return opg__fail(OPG_ERR_ARG, "chat: NULL argument");
    const char *s;
    size_t len;
    opg_status st = opg_gguf_get_str(g, "tokenizer.chat_template", &s, &len);
    if (st == OPG_ERR_NOT_FOUND) return opg__fail(st, "chat: the file has no tokenizer.chat_template");
    if (st) return opg__fail(OPG_ERR_FORMAT, "chat: tokenizer.chat_template is not a string");
    return opg_chat_format_detect(s, len, out);
}

static opg_status llama2(sbuf *b, const opg_chat_msg *m, size_t n) {
    size_t i = 0;
    const char *sys = NULL;
    if (n && strcmp(m[0].role, "system") == 0) sys = m[i++].content;
    for (size_t k = 0; i < n; i++, k++) {
        const char *want = k % 2 == 0 ? "user" : "assistant";
        if (strcmp(m[i].role, want) != 0)
            return opg__fail(OPG_ERR_ARG,
                             "chat: llama2: message %zu has role '%.32s', expected '%s' (an optional first "
                             "system message, then user and assistant alternating)",
                             i, m[i].role, want);
        if (k % 2 == 0) {
            sb_str(b, "<s>[INST] ");
            if (k == 0 && sys) {
                /* Meta's template strips the whole "<<SYS>>...user" content */
                sbuf c = {0};
                sb_str(&c, "<<SYS>>\n");
                sb_str(&c, sys);
                sb_str(&c, "\n<</SYS>>\n\n");
                sb_str(&c, m[i].content);
                if (c.oom) {
                    free(c.p);
                    b->oom = 1;
                    return OPG_OK;
                }
                sb_trimmed(b, c.p);
                free(c.p);
            } else {
                sb_trimmed(b, m[i].content);
            }
            sb_str(b, " [/INST]");
        } else {
            sb_str(b, " ");
            sb_trimmed(b, m[i].content);
            sb_str(b, " </s>");
        }
    }
    if (sys && n == 1) /* a system message alone: nothing to attach it to */
        return opg__fail(OPG_ERR_ARG, "chat: llama2: a system message needs a user message after it");
    return OPG_OK;
}

opg_status opg_chat_apply(opg_chat_format f, const opg_chat_msg *msgs, size_t n, int add_generation_prompt,
                          char **out, size_t *out_len) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!out || (!msgs && n)) return opg__fail(OPG_ERR_ARG, "chat: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return opg__fail(OPG_ERR_ARG, "chat: message %zu has a NULL role or content", i);
    sbuf b = {0};
    sb_put(&b, "", 0); /* an empty conversation is "" */
    opg_status st = OPG_OK;
    switch (f) {
    case OPG_CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            sb_str(&b, "<|im_start|>");
            sb_str(&b, msgs[i].role);
            sb_str(&b, "\n");
            sb_str(&b, msgs[i].content);
            sb_str(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt) sb_str(&b, "<|im_start|>assistant\n");
        break;
    case OPG_CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            if (i == 0) sb_str(&b, "<|begin_of_text|>"); /* as Meta's template: BOS with the first message */
            sb_str(&b, "<|start_header_id|>");
            sb_str(&b, msgs[i].role);
            sb_str(&b, "<|end_header_id|>\n\n");
            sb_trimmed(&b, msgs[i].content);
            sb_str(&b, "<|eot_id|>");
        }
        if (add_generation_prompt) sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case OPG_CHAT_LLAMA2: st = llama2(&b, msgs, n); break;
    default: st = opg__fail(OPG_ERR_ARG, "chat: unknown format %d", (int)f);
    }
    if (!st && b.oom) st = opg__fail(OPG_ERR_NOMEM, "chat: out of memory");
    if (st) {
        free(b.p);
        return st;
    }
    *out = b.p;
    if (out_len) *out_len = b.n;
    return OPG_OK;
}

opg_status opg_chat_encode_prompt(const opg_tokenizer *tok, const opg_gguf *g, const char *text, int chat,
                                  int32_t **ids, int64_t *n) {
    *ids = NULL;
    *n = 0;
    char *templated = NULL;
    const char *src = text;
    unsigned flags = OPG_TOK_ADD_SPECIAL;
    if (chat) {
        opg_chat_format fmt;
        opg_status st = opg_chat_format_from_gguf(g, &fmt);
        if (st) return st;
        opg_chat_msg msg = {"user", text};
        if ((st = opg_chat_apply(fmt, &msg, 1, 1, &templated, NULL))) return st;
        src = templated;
        /* the rendered template already holds BOS where the format wants it */
        flags = OPG_TOK_PARSE_SPECIAL;
    }
    size_t need = 0, len = strlen(src);
    opg_status st = opg_tokenizer_encode(tok, src, len, flags, NULL, 0, &need);
    if (st && st != OPG_ERR_LIMIT) {
        free(templated);
        return st;
    }
    *ids = malloc((need ? need : 1) * sizeof **ids);
    if (!*ids) {
        free(templated);
        return opg__fail(OPG_ERR_NOMEM, "prompt: out of memory");
    }
    st = opg_tokenizer_encode(tok, src, len, flags, *ids, need, &need);
    free(templated);
    if (st) {
        free(*ids);
        *ids = NULL;
        return st;
    }
    *n = (int64_t)need;
    return OPG_OK;
}
