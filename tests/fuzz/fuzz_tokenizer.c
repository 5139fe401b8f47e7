/* fuzz_tokenizer.c: libFuzzer target for prompt text -> token ids -> text
 * (runtime/tokenizer.c) and the chat templates (runtime/chat.c): what a
 * worker does with every client's text prompt.
 *
 * Eight vocabularies are built once, in memory, so the target needs no file:
 * byte-level BPE under each pre-tokenizer (gpt-2, llama3, qwen2, smollm) and
 * with only the printable ASCII bytes (no unknown token), SentencePiece with
 * byte-fallback tokens with and without the space prefix, and without byte
 * tokens (an unknown token instead). Each has merges/pieces several levels
 * deep, CONTROL and USER_DEFINED special tokens, one of them a prefix of
 * another.
 *
 * Input: byte 0 picks the vocabulary (bits 0-2) and the flags (bit 3
 * OPG_TOK_PARSE_SPECIAL, bit 4 OPG_TOK_STRICT_UTF8, bit 5 OPG_TOK_ADD_SPECIAL,
 * bit 6 chat: render the text as one user message first, bit 7 with byte 1
 * picking the chat format); the rest is the text.
 *
 * Checked with __builtin_trap(), so a broken promise is a crash the fuzzer
 * keeps (tokenizer.h is the contract):
 *  - asking for the count (cap 0) and encoding into exactly that many ids
 *    agree; one id fewer is OPG_ERR_LIMIT with the same count; a second
 *    encode gives the same ids; every id is inside the vocabulary;
 *  - under OPG_TOK_STRICT_UTF8, invalid UTF-8 (checked here independently)
 *    is OPG_ERR_ARG and valid text is not refused for it; errors carry a
 *    message and only the vocabularies lacking characters may fail;
 *  - without OPG_TOK_PARSE_SPECIAL, plain text never yields a CONTROL token,
 *    nor an UNKNOWN one where every byte has a token (BOS/EOS added by a
 *    flag aside);
 *  - round trip: decode(encode(text)) with OPG_TOK_DECODE_STRIP_PREFIX |
 *    OPG_TOK_DECODE_SPECIAL is the text byte for byte (SPM: U+2581 comes back
 *    as ' '), for every vocabulary that has every byte;
 *  - streaming: the token_to_piece pieces joined are decode's bytes; decode
 *    into exactly its length (no room for the NUL) is OPG_ERR_LIMIT;
 *  - chat: one user message renders exactly as chat.h specifies for the
 *    format, and the rendering encodes with special tokens parsed. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "tokenizer.h"

#define CHECK(c)                        \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)

enum { BPE_GPT2, BPE_LLAMA3, BPE_QWEN2, BPE_SMOLLM, BPE_ASCII, SPM_PREFIX, SPM_NOPREFIX, SPM_NOBYTES, N_VOCAB };

static opg_tokenizer *g_tok[N_VOCAB];
static int g_complete[N_VOCAB]; /* a successful encode round-trips (no unknown token stands in) */

/* ---- vocabularies ----------------------------------------------------------- */

typedef struct {
    char **tok;
    int32_t *type;
    float *score;
    size_t n, cap;
    char **merge;
    size_t n_merge, cap_merge;
} vocab;

static void *grow_or_die(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap * 2 : 256;
    while (c < need) c *= 2;
    p = realloc(p, c * elem);
    if (!p) abort();
    *cap = c;
    return p;
}

static void add_tok(vocab *v, const char *s, size_t len, int32_t type, float score) {
    size_t cap = v->cap;
    v->tok = grow_or_die(v->tok, &cap, v->n + 1, sizeof *v->tok);
    cap = v->cap;
    v->type = grow_or_die(v->type, &cap, v->n + 1, sizeof *v->type);
    cap = v->cap;
    v->score = grow_or_die(v->score, &cap, v->n + 1, sizeof *v->score);
    v->cap = cap;
    char *t = malloc(len + 1);
    if (!t) abort();
    memcpy(t, s, len);
    t[len] = 0;
    v->tok[v->n] = t;
    v->type[v->n] = type;
    v->score[v->n++] = score;
}

static void add_merge(vocab *v, const char *a, const char *b) {
    v->merge = grow_or_die(v->merge, &v->cap_merge, v->n_merge + 1, sizeof *v->merge);
    size_t la = strlen(a), lb = strlen(b);
    char *m = malloc(la + lb + 2);
    if (!m) abort();
    memcpy(m, a, la);
    m[la] = ' ';
    memcpy(m + la + 1, b, lb + 1);
    v->merge[v->n_merge++] = m;
    char *r = malloc(la + lb + 1);
    if (!r) abort();
    memcpy(r, a, la);
    memcpy(r + la, b, lb + 1);
    add_tok(v, r, la + lb, OPG_TOKEN_NORMAL, 0);
    free(r);
}

static void vocab_free(vocab *v) {
    for (size_t i = 0; i < v->n; i++) free(v->tok[i]);
    for (size_t i = 0; i < v->n_merge; i++) free(v->merge[i]);
    free(v->tok);
    free(v->type);
    free(v->score);
    free(v->merge);
}

/* GPT-2's printable code point for a byte, as UTF-8. */
static void gpt2_char(int b, char out[3]) {
    int k = 0, cp = b;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
        if (!keep && c == b) cp = 256 + k;
        if (!keep) k++;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
}

/* Special tokens every vocabulary has: the chat formats' markers (CONTROL),
 * a USER_DEFINED token, and a USER_DEFINED prefix of a CONTROL one (the
 * longer text is cut first). */
static void add_specials(vocab *v) {
    static const char *const control[] = {"<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
                                          "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                          "<|endoftext|>"};
    for (size_t i = 0; i < sizeof control / sizeof *control; i++)
        add_tok(v, control[i], strlen(control[i]), OPG_TOKEN_CONTROL, 0);
    add_tok(v, "<tool>", 6, OPG_TOKEN_USER_DEFINED, 0);
    add_tok(v, "<|im", 4, OPG_TOKEN_USER_DEFINED, 0);
}

static const char ALPHA[] = "etaoinshrdlu0123456789 .,\n<|>";
static const char SPM_ALPHA[] = " etaoinshrdl"; /* ' ' stands for U+2581 */

static opg_tokenizer *make_bpe(const char *pre, int ascii_only) {
    vocab v = {0};
    for (int b = 0; b < 256; b++) {
        if (ascii_only && (b < 32 || b > 126)) continue;
        char c[3];
        gpt2_char(b, c);
        add_tok(&v, c, strlen(c), OPG_TOKEN_NORMAL, 0);
    }
    /* merges two and three levels deep over a small alphabet, ranks in order */
    const size_t na = sizeof ALPHA - 1;
    char a[3], b[3], ab[8];
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < na; j++) {
            gpt2_char((unsigned char)ALPHA[i], a);
            gpt2_char((unsigned char)ALPHA[j], b);
            add_merge(&v, a, b);
        }
    for (size_t i = 0; i < 12; i++)
        for (size_t j = 0; j < na; j++) {
            gpt2_char(' ', a);
            gpt2_char((unsigned char)ALPHA[i], b);
            snprintf(ab, sizeof ab, "%s%s", a, b);
            gpt2_char((unsigned char)ALPHA[j], b);
            add_merge(&v, ab, b);
        }
    add_merge(&v, "th", "e");
    add_merge(&v, "\xC4\xA0" "th", "e");
    add_merge(&v, "\xC4\xA0" "the", "re"); /* "Ġthere": four levels */
    add_specials(&v);
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    p.model = OPG_TOK_BPE;
    p.pre = pre;
    p.n_tokens = v.n;
    p.tokens = (const char *const *)v.tok;
    p.types = v.type;
    p.n_merges = v.n_merge;
    p.merges = (const char *const *)v.merge;
    p.bos_id = p.eos_id = (int32_t)(v.n - 3); /* <|endoftext|> */
    opg_tokenizer *t = NULL;
    if (opg_tokenizer_new(&p, &t) != OPG_OK) abort();
    vocab_free(&v);
    return t;
}

static opg_tokenizer *make_spm(int prefix, int byte_tokens) {
    vocab v = {0};
    add_tok(&v, "<unk>", 5, OPG_TOKEN_UNKNOWN, 0);
    add_tok(&v, "<s>", 3, OPG_TOKEN_CONTROL, 0);
    add_tok(&v, "</s>", 4, OPG_TOKEN_CONTROL, 0);
    if (byte_tokens)
        for (int b = 0; b < 256; b++) {
            static const char hex[] = "0123456789ABCDEF";
            char h[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            add_tok(&v, h, 6, OPG_TOKEN_BYTE, 0);
        }
    static const char sp[] = "\xE2\x96\x81";
    add_tok(&v, sp, 3, OPG_TOKEN_NORMAL, -1.0f);
    for (int c = 0x21; c < 0x7f; c++) {
        char s = (char)c;
        add_tok(&v, &s, 1, OPG_TOKEN_NORMAL, -2.0f - (float)c / 128);
    }
    add_tok(&v, "\xC3\xA9", 2, OPG_TOKEN_NORMAL, -3.0f);            /* é */
    add_tok(&v, "\xE6\x97\xA5\xE6\x9C\xAC", 6, OPG_TOKEN_NORMAL, -4.0f); /* 日本 */
    /* pieces of two and three characters, scores falling with the order */
    const size_t na = sizeof SPM_ALPHA - 1;
    float score = -5.0f;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 1; j < na; j++) {
            char s[8];
            size_t l = 0;
            if (SPM_ALPHA[i] == ' ') memcpy(s, sp, 3), l = 3;
            else s[l++] = SPM_ALPHA[i];
            s[l++] = SPM_ALPHA[j];
            add_tok(&v, s, l, OPG_TOKEN_NORMAL, score);
            score -= 0.01f;
        }
    /* ("▁t", "▁a" come from the pairs above; "<s", "<un", ... let merges
       spell "<s>", "</s>" and "<unk>", which plain text must not yield) */
    static const char *const words[] = {"\xE2\x96\x81th", "\xE2\x96\x81the", "the", "ing",
                                        "\xE2\x96\x81\xE2\x96\x81", "[INST]", "[/INST]", "<<SYS>>",
                                        "<s", "</", "</s", "<u", "<un", "<unk"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        add_tok(&v, words[i], strlen(words[i]), OPG_TOKEN_NORMAL, -0.5f - (float)i / 16);
    add_specials(&v);
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    p.model = OPG_TOK_SPM;
    p.n_tokens = v.n;
    p.tokens = (const char *const *)v.tok;
    p.types = v.type;
    p.scores = v.score;
    p.unk_id = 0;
    p.bos_id = 1;
    p.eos_id = 2;
    p.add_space_prefix = prefix;
    opg_tokenizer *t = NULL;
    if (opg_tokenizer_new(&p, &t) != OPG_OK) abort();
    vocab_free(&v);
    return t;
}

static void init(void) {
    static const char *const pre[] = {"gpt-2", "llama3", "qwen2", "smollm"};
    for (int i = BPE_GPT2; i <= BPE_SMOLLM; i++) {
        g_tok[i] = make_bpe(pre[i - BPE_GPT2], 0);
        g_complete[i] = 1;
    }
    g_tok[BPE_ASCII] = make_bpe("gpt-2", 1);
    g_complete[BPE_ASCII] = 1; /* it fails on the other bytes instead */
    g_tok[SPM_PREFIX] = make_spm(1, 1);
    g_tok[SPM_NOPREFIX] = make_spm(0, 1);
    g_tok[SPM_NOBYTES] = make_spm(1, 0);
    g_complete[SPM_PREFIX] = g_complete[SPM_NOPREFIX] = 1;
}

/* ---- oracles ------------------------------------------------------------------ */

/* Well-formed UTF-8 (Unicode Table 3-7), written independently of the tokenizer's. */
static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t l;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c <= 0x7F) l = 1;
        else if (c >= 0xC2 && c <= 0xDF) l = 2;
        else if (c >= 0xE0 && c <= 0xEF) l = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) l = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return 0;
        if (n - i < l) return 0;
        for (size_t k = 1; k < l; k++) {
            uint8_t d = s[i + k];
            if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return 0;
        }
        i += l;
    }
    return 1;
}

/* decode into a fresh buffer; also checks the capacity rule */
static char *decode(const opg_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, size_t *len) {
    size_t need = 0;
    opg_status st = opg_tokenizer_decode(t, ids, n, flags, NULL, 0, &need);
    CHECK(st == OPG_ERR_LIMIT); /* the NUL alone needs a byte */
    char *out = malloc(need + 1);
    if (!out) return NULL;
    if (need) {
        size_t got = 0;
        CHECK(opg_tokenizer_decode(t, ids, n, flags, out, need, &got) == OPG_ERR_LIMIT && got == need);
    }
    size_t got = 0;
    CHECK(opg_tokenizer_decode(t, ids, n, flags, out, need + 1, &got) == OPG_OK && got == need);
    CHECK(out[need] == 0);
    *len = need;
    return out;
}

static void check_pieces(const opg_tokenizer *t, const int32_t *ids, size_t n) {
    size_t len;
    char *whole = decode(t, ids, n, OPG_TOK_DECODE_SPECIAL, &len);
    if (!whole) return;
    size_t at = 0;
    char piece[256];
    for (size_t i = 0; i < n; i++) {
        size_t pl = 0;
        CHECK(opg_tokenizer_token_to_piece(t, ids[i], OPG_TOK_DECODE_SPECIAL, piece, sizeof piece, &pl) == OPG_OK);
        CHECK(pl <= len - at && memcmp(whole + at, piece, pl) == 0);
        at += pl;
    }
    CHECK(at == len);
    free(whole);
}

/* The text as the round trip gives it back: SPM turns U+2581 into ' '. */
static size_t expected_back(const opg_tokenizer *t, const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (opg_tokenizer_model(t) == OPG_TOK_SPM && n - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out[o++] = ' ';
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

static void check_encode(int v, const char *text, size_t len, unsigned flags) {
    const opg_tokenizer *t = g_tok[v];
    size_t n = 0;
    opg_status st = opg_tokenizer_encode(t, text, len, flags, NULL, 0, &n);
    int bad_utf8 = (flags & OPG_TOK_STRICT_UTF8) && !valid_utf8((const uint8_t *)text, len);
    if (bad_utf8) {
        CHECK(st == OPG_ERR_ARG && n == 0 && opg_last_error()[0]);
        return;
    }
    if (st != OPG_OK && st != OPG_ERR_LIMIT) {
        /* only a vocabulary without some byte and without an unknown token */
        CHECK(v == BPE_ASCII && st == OPG_ERR_UNSUPPORTED && n == 0 && opg_last_error()[0]);
        return;
    }
    CHECK((st == OPG_OK) == (n == 0));
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    if (!ids) return;
    size_t n2 = 0;
    if (n) CHECK(opg_tokenizer_encode(t, text, len, flags, ids, n - 1, &n2) == OPG_ERR_LIMIT && n2 == n);
    CHECK(opg_tokenizer_encode(t, text, len, flags, ids, n, &n2) == OPG_OK && n2 == n);
    int32_t *again = malloc((n + 1) * sizeof *again);
    if (again) {
        CHECK(opg_tokenizer_encode(t, text, len, flags, again, n + 1, &n2) == OPG_OK && n2 == n);
        CHECK(memcmp(ids, again, n * sizeof *ids) == 0);
        free(again);
    }
    int added = !!(flags & OPG_TOK_ADD_SPECIAL);
    int bos = added && opg_tokenizer_add_bos(t), eos = added && opg_tokenizer_add_eos(t);
    if (bos) CHECK(n >= 1 && ids[0] == opg_tokenizer_bos(t));
    for (size_t i = 0; i < n; i++) {
        CHECK(ids[i] >= 0 && ids[i] < opg_tokenizer_n_vocab(t));
        int boundary = (bos && i == 0) || (eos && i == n - 1);
        opg_token_type ty = opg_tokenizer_token_type(t, ids[i]);
        if (!(flags & OPG_TOK_PARSE_SPECIAL) && !boundary) {
            CHECK(ty != OPG_TOKEN_CONTROL);
            /* nor UNKNOWN, but for a character no token spells (SPM_NOBYTES) */
            if (g_complete[v]) CHECK(ty != OPG_TOKEN_UNKNOWN);
        }
    }
    check_pieces(t, ids, n);
    if (g_complete[v] && !added) {
        size_t back_len;
        char *back = decode(t, ids, n, OPG_TOK_DECODE_STRIP_PREFIX | OPG_TOK_DECODE_SPECIAL, &back_len);
        char *want = malloc(len + 1);
        if (back && want) {
            size_t want_len = expected_back(t, text, len, want);
            CHECK(back_len == want_len && memcmp(back, want, want_len) == 0);
        }
        free(back);
        free(want);
    }
    free(ids);
}

/* chat.h's rendering of one user message with the generation prompt. */
static char *expected_chat(opg_chat_format f, const char *content) {
    size_t n = strlen(content), a = 0;
    if (f != OPG_CHAT_CHATML) {
        while (a < n && strchr(" \t\n\v\f\r", content[a])) a++;
        while (n > a && strchr(" \t\n\v\f\r", content[n - 1])) n--;
    }
    const char *pre = f == OPG_CHAT_CHATML ? "<|im_start|>user\n"
                      : f == OPG_CHAT_LLAMA3 ? "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                                             : "<s>[INST] ";
    const char *post = f == OPG_CHAT_CHATML ? "<|im_end|>\n<|im_start|>assistant\n"
                       : f == OPG_CHAT_LLAMA3 ? "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
                                              : " [/INST]";
    size_t lp = strlen(pre), lq = strlen(post);
    char *s = malloc(lp + (n - a) + lq + 1);
    if (!s) return NULL;
    memcpy(s, pre, lp);
    memcpy(s + lp, content + a, n - a);
    memcpy(s + lp + n - a, post, lq + 1);
    return s;
}

static void check_chat(int v, opg_chat_format f, const char *text, size_t len) {
    char *content = malloc(len + 1);
    if (!content) return;
    memcpy(content, text, len);
    content[len] = 0; /* a prompt is a C string: the first NUL ends it */
    opg_chat_msg msg = {"user", content};
    char *out = NULL;
    size_t out_len = 0;
    CHECK(opg_chat_apply(f, &msg, 1, 1, &out, &out_len) == OPG_OK);
    char *want = expected_chat(f, content);
    if (want) CHECK(strcmp(out, want) == 0 && strlen(out) == out_len);
    free(want);
    check_encode(v, out, out_len, OPG_TOK_PARSE_SPECIAL);
    free(out);
    free(content);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok[0]) init();
    if (size < 1) return 0;
    int v = data[0] & 7;
    unsigned flags = 0;
    if (data[0] & 0x08) flags |= OPG_TOK_PARSE_SPECIAL;
    if (data[0] & 0x10) flags |= OPG_TOK_STRICT_UTF8;
    if (data[0] & 0x20) flags |= OPG_TOK_ADD_SPECIAL;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 0x40) {
        opg_chat_format f = OPG_CHAT_CHATML;
        if ((data[0] & 0x80) && len) {
            f = (opg_chat_format)(OPG_CHAT_CHATML + data[1] % 3);
            text++, len--;
        }
        check_chat(v, f, text, len);
        return 0;
    }
    check_encode(v, text, len, flags);
    return 0;
}
