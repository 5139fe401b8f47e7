/* tokenizer.c: SentencePiece-style and GPT-2 byte-level BPE tokenizers over a
 * GGUF vocabulary (contract in tokenizer.h). The algorithms mirror llama.cpp's
 * llama-vocab.cpp so that ids match the files its tests were made from; the
 * pre-tokenizer regexes run on PCRE2 (UTF + Unicode properties) instead of
 * hand-written Unicode tables. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MAX_TEXT (1u << 30)  /* bytes of one encode call */
#define MAX_TOKENS 0x7ffffff0 /* ids are int32 */

/* ---- pre-tokenizer regexes (HF tokenizer.json / llama.cpp, verbatim) ------- */

static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_DIGIT[] = "\\p{N}";

/* End-of-generation marker texts (llama.cpp's list). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
};

/* ---- string -> int32 hash map (keys live in a pool owned elsewhere) ------- */

typedef struct {
    uint64_t h;
    uint32_t off, len;
    int32_t val; /* -1: empty slot */
} map_slot;

typedef struct {
    map_slot *s;
    size_t mask;
    const char *pool;
} strmap;

static uint64_t fnv_step(uint64_t h, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

static int map_init(strmap *m, size_t n_keys, const char *pool) {
    size_t cap = 16;
    while (cap < n_keys * 2 + 16) cap <<= 1;
    m->s = malloc(cap * sizeof *m->s);
    if (!m->s) return -1;
    for (size_t i = 0; i < cap; i++) m->s[i].val = -1;
    m->mask = cap - 1;
    m->pool = pool;
    return 0;
}

/* Inserts pool[off..off+len) -> val; an existing key is overwritten only when
 * overwrite is set. */
static void map_put(strmap *m, uint32_t off, uint32_t len, int32_t val, int overwrite) {
    uint64_t h = fnv_step(FNV_INIT, m->pool + off, len);
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        map_slot *s = &m->s[i];
        if (s->val < 0) {
            s->h = h, s->off = off, s->len = len, s->val = val;
            return;
        }
        if (s->h == h && s->len == len && memcmp(m->pool + s->off, m->pool + off, len) == 0) {
            if (overwrite) s->val = val;
            return;
        }
    }
}

static int32_t map_get(const strmap *m, const char *p, size_t len) {
    uint64_t h = fnv_step(FNV_INIT, p, len);
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        const map_slot *s = &m->s[i];
        if (s->val < 0) return -1;
        if (s->h == h && s->len == len && memcmp(m->pool + s->off, p, len) == 0) return s->val;
    }
}

/* Key a + ' ' + b without building it. */
static int32_t map_get_pair(const strmap *m, const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = fnv_step(fnv_step(fnv_step(FNV_INIT, a, na), " ", 1), b, nb);
    size_t len = na + 1 + nb;
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        const map_slot *s = &m->s[i];
        if (s->val < 0) return -1;
        if (s->h == h && s->len == len) {
            const char *k = m->pool + s->off;
            if (memcmp(k, a, na) == 0 && k[na] == ' ' && memcmp(k + na + 1, b, nb) == 0) return s->val;
        }
    }
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 character at p (RFC 3629: no overlongs,
 * surrogates or code points above U+10FFFF), or 0 when p starts an invalid
 * sequence. n >= 1 bytes are available. */
static size_t utf8_len(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

/* A symbol's length: a whole valid character, else one byte. */
static size_t char_len(const char *p, size_t n) {
    size_t l = utf8_len((const uint8_t *)p, n);
    return l ? l : 1;
}

/* ---- the tokenizer ------------------------------------------------------------ */

typedef struct {
    uint32_t off, len; /* text in pool */
    float score;
    uint8_t type;      /* opg_token_type */
    uint8_t eog;
} tok_entry;

struct opg_tokenizer {
    opg_tok_model model;
    opg_tok_pre pre;
    int32_t n;
    tok_entry *tok;
    char *pool;              /* token texts */
    strmap by_text;          /* text -> id (last id wins on duplicates, as llama.cpp) */
    char *mpool;             /* merge texts */
    strmap merges;           /* "left right" -> rank (first rank wins) */
    int32_t *special;        /* CONTROL/USER_DEFINED/UNKNOWN ids, longest text first */
    int32_t n_special;
    int32_t byte_tok[256];   /* SPM: <0xXX> (or the one-byte token); BPE: GPT-2 char of the byte */
    uint16_t b2cp[256];      /* GPT-2 byte -> code point */
    int16_t cp2b[324];       /* GPT-2 code point -> byte (-1 if none) */
    pcre2_code *re[2];
    int n_re;
    int ignore_merges;
    int add_bos, add_eos, add_space_prefix;
    int32_t bos, eos, unk, pad, eot, eom;
};

void opg_tokenizer_params_init(opg_tokenizer_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->bos_id = p->eos_id = p->unk_id = p->pad_id = p->eot_id = p->eom_id = -1;
    p->add_bos = p->add_eos = p->add_space_prefix = -1;
}

void opg_tokenizer_free(opg_tokenizer *t) {
    if (!t) return;
    free(t->tok);
    free(t->pool);
    free(t->by_text.s);
    free(t->mpool);
    free(t->merges.s);
    free(t->special);
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t);
}

static opg_status compile_re(opg_tokenizer *t, const char *pattern) {
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return opg__fail(OPG_ERR_UNSUPPORTED, "tokenizer: PCRE2 rejects pre-tokenizer regex at %zu: %s",
                         (size_t)erroff, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter is the fallback */
    t->re[t->n_re++] = re;
    return OPG_OK;
}

static int name_is(const char *s, const char *const *names) {
    for (; *names; names++)
        if (strcmp(s, *names) == 0) return 1;
    return 0;
}

static opg_status set_pre(opg_tokenizer *t, const char *pre) {
    static const char *const gpt2[] = {"default", "gpt-2", NULL};
    static const char *const llama3[] = {"llama-bpe", "llama3", "llama-v3", NULL};
    static const char *const qwen2[] = {"qwen2", NULL};
    static const char *const smollm[] = {"smollm", NULL};
    if (t->model == OPG_TOK_SPM) {
        t->pre = OPG_TOK_PRE_NONE;
        return OPG_OK;
    }
    if (!pre) pre = "default";
    if (name_is(pre, gpt2)) {
        t->pre = OPG_TOK_PRE_GPT2;
        return compile_re(t, RE_GPT2);
    }
    if (name_is(pre, llama3)) {
        t->pre = OPG_TOK_PRE_LLAMA3;
        t->ignore_merges = 1;
        return compile_re(t, RE_LLAMA3);
    }
    if (name_is(pre, qwen2)) {
        t->pre = OPG_TOK_PRE_QWEN2;
        return compile_re(t, RE_QWEN2);
    }
    if (name_is(pre, smollm)) {
        t->pre = OPG_TOK_PRE_SMOLLM;
        opg_status st = compile_re(t, RE_DIGIT);
        return st ? st : compile_re(t, RE_GPT2);
    }
    return opg__fail(OPG_ERR_UNSUPPORTED,
                     "tokenizer: pre-tokenizer '%.64s' not supported (gpt-2, default, llama-bpe, llama3, "
                     "qwen2, smollm)",
                     pre);
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const opg_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->tok[x].len, ly = t->tok[y].len;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int is_special_type(uint8_t type) {
    return type == OPG_TOKEN_CONTROL || type == OPG_TOKEN_USER_DEFINED || type == OPG_TOKEN_UNKNOWN;
}

/* Token texts and merges, each as (pointer, length). */
typedef struct {
    const char *(*tok)(const void *src, size_t i, size_t *len);
    const char *(*merge)(const void *src, size_t i, size_t *len);
    const void *src;
} text_source;

static const char *params_tok(const void *src, size_t i, size_t *len) {
    const opg_tokenizer_params *p = src;
    const char *s = p->tokens[i];
    *len = s ? (p->token_lens ? p->token_lens[i] : strlen(s)) : 0;
    return s ? s : "";
}

static const char *params_merge(const void *src, size_t i, size_t *len) {
    const opg_tokenizer_params *p = src;
    const char *s = p->merges[i];
    *len = s ? strlen(s) : 0;
    return s ? s : "";
}

static opg_status check_id(const char *what, int32_t id, size_t n) {
    if (id < -1 || (id >= 0 && (size_t)id >= n))
        return opg__fail(OPG_ERR_ARG, "tokenizer: %s id %d out of range (vocabulary of %zu)", what, id, n);
    return OPG_OK;
}

static opg_status build(const opg_tokenizer_params *p, const text_source *ts, opg_tokenizer **out) {
    *out = NULL;
    if (p->model != OPG_TOK_SPM && p->model != OPG_TOK_BPE)
        return opg__fail(OPG_ERR_ARG, "tokenizer: model %d is neither SPM nor BPE", (int)p->model);
    if (p->n_tokens == 0 || p->n_tokens > MAX_TOKENS)
        return opg__fail(OPG_ERR_ARG, "tokenizer: vocabulary of %zu tokens", p->n_tokens);
    if (p->n_merges > MAX_TOKENS) return opg__fail(OPG_ERR_ARG, "tokenizer: %zu merges", p->n_merges);
    const size_t n = p->n_tokens;
    opg_status st;
    if ((st = check_id("bos", p->bos_id, n)) || (st = check_id("eos", p->eos_id, n)) ||
        (st = check_id("unknown", p->unk_id, n)) || (st = check_id("padding", p->pad_id, n)) ||
        (st = check_id("eot", p->eot_id, n)) || (st = check_id("eom", p->eom_id, n)))
        return st;

    opg_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return opg__fail(OPG_ERR_NOMEM, "tokenizer: out of memory");
    t->model = p->model;
    t->n = (int32_t)n;
    t->bos = p->bos_id, t->eos = p->eos_id, t->unk = p->unk_id;
    t->pad = p->pad_id, t->eot = p->eot_id, t->eom = p->eom_id;
    if ((st = set_pre(t, p->pre))) goto fail;
    t->add_bos = p->add_bos >= 0 ? !!p->add_bos : (t->model == OPG_TOK_SPM || t->pre == OPG_TOK_PRE_LLAMA3);
    t->add_eos = p->add_eos >= 0 ? !!p->add_eos : 0;
    t->add_space_prefix = p->add_space_prefix >= 0 ? !!p->add_space_prefix : t->model == OPG_TOK_SPM;

    /* token texts into one pool */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        ts->tok(ts->src, i, &len);
        if (len > UINT32_MAX - total) {
            st = opg__fail(OPG_ERR_LIMIT, "tokenizer: token texts exceed 4 GiB");
            goto fail;
        }
        total += len;
    }
    t->tok = calloc(n, sizeof *t->tok);
    t->pool = malloc(total + 1);
    if (!t->tok || !t->pool || map_init(&t->by_text, n, t->pool)) goto nomem;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = ts->tok(ts->src, i, &len);
        memcpy(t->pool + off, s, len);
        t->tok[i].off = (uint32_t)off;
        t->tok[i].len = (uint32_t)len;
        t->tok[i].score = p->scores ? p->scores[i] : 0.0f;
        int32_t ty = p->types ? p->types[i] : OPG_TOKEN_NORMAL;
        t->tok[i].type = (uint8_t)(ty >= OPG_TOKEN_UNDEFINED && ty <= OPG_TOKEN_BYTE ? ty : OPG_TOKEN_UNDEFINED);
        if (len) map_put(&t->by_text, (uint32_t)off, (uint32_t)len, (int32_t)i, 1);
        off += len;
    }

    /* end of generation: the ids named, plus the marker texts, typed CONTROL */
    for (size_t k = 0; k < sizeof EOG_TEXTS / sizeof *EOG_TEXTS; k++) {
        int32_t id = map_get(&t->by_text, EOG_TEXTS[k], strlen(EOG_TEXTS[k]));
        if (id >= 0) {
            t->tok[id].eog = 1;
            t->tok[id].type = OPG_TOKEN_CONTROL;
        }
    }
    if (t->eos >= 0) t->tok[t->eos].eog = 1;
    if (t->eot >= 0) t->tok[t->eot].eog = 1;
    if (t->eom >= 0) t->tok[t->eom].eog = 1;

    /* special tokens, longest text first */
    t->special = malloc(n * sizeof *t->special);
    if (!t->special) goto nomem;
    for (size_t i = 0; i < n; i++)
        if (is_special_type(t->tok[i].type) && t->tok[i].len) t->special[t->n_special++] = (int32_t)i;
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);

    /* byte tokens */
    for (int b = 0, k = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        t->b2cp[b] = (uint16_t)(keep ? b : 256 + k++);
    }
    for (int c = 0; c < 324; c++) t->cp2b[c] = -1;
    for (int b = 0; b < 256; b++) t->cp2b[t->b2cp[b]] = (int16_t)b;
    for (int b = 0; b < 256; b++) {
        char s[8];
        int32_t id;
        if (t->model == OPG_TOK_SPM) {
            static const char hex[] = "0123456789ABCDEF";
            char h[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            id = map_get(&t->by_text, h, 6);
            if (id < 0) {
                s[0] = (char)b;
                id = map_get(&t->by_text, s, 1);
            }
        } else {
            uint16_t c = t->b2cp[b];
            size_t l = 1;
            if (c < 0x80) s[0] = (char)c;
            else s[0] = (char)(0xC0 | (c >> 6)), s[1] = (char)(0x80 | (c & 0x3F)), l = 2;
            id = map_get(&t->by_text, s, l);
        }
        t->byte_tok[b] = id;
    }

    /* BPE merges: "left right" split at the first space after the first byte */
    if (t->model == OPG_TOK_BPE) {
        size_t mtotal = 0;
        for (size_t i = 0; i < p->n_merges; i++) {
            size_t len;
            ts->merge(ts->src, i, &len);
            if (len > UINT32_MAX - mtotal) {
                st = opg__fail(OPG_ERR_LIMIT, "tokenizer: merge texts exceed 4 GiB");
                goto fail;
            }
            mtotal += len;
        }
        t->mpool = malloc(mtotal + 1);
        if (!t->mpool || map_init(&t->merges, p->n_merges, t->mpool)) goto nomem;
        size_t moff = 0;
        for (size_t i = 0; i < p->n_merges; i++) {
            size_t len;
            const char *s = ts->merge(ts->src, i, &len);
            if (len < 3 || !memchr(s + 1, ' ', len - 1)) continue; /* no pair: unusable, as llama.cpp */
            memcpy(t->mpool + moff, s, len);
            map_put(&t->merges, (uint32_t)moff, (uint32_t)len, (int32_t)i, 0);
            moff += len;
        }
    }
    *out = t;
    return OPG_OK;
nomem:
    st = opg__fail(OPG_ERR_NOMEM, "tokenizer: out of memory for a vocabulary of %zu tokens", n);
fail:
    opg_tokenizer_free(t);
    return st;
}

opg_status opg_tokenizer_new(const opg_tokenizer_params *p, opg_tokenizer **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "tokenizer: out is NULL");
    *out = NULL;
    if (!p || !p->tokens) return opg__fail(OPG_ERR_ARG, "tokenizer: no params or no tokens");
    if (p->n_merges && !p->merges) return opg__fail(OPG_ERR_ARG, "tokenizer: n_merges without merges");
    text_source ts = {params_tok, params_merge, p};
    return build(p, &ts, out);
}

/* ---- from GGUF ---------------------------------------------------------------- */

typedef struct {
    const opg_gguf *g;
} gguf_src;

static const char *gguf_tok(const void *src, size_t i, size_t *len) {
    const char *s = "";
    *len = 0;
    (void)opg_gguf_get_array_str(((const gguf_src *)src)->g, "tokenizer.ggml.tokens", i, &s, len);
    return s;
}

static const char *gguf_merge(const void *src, size_t i, size_t *len) {
    const char *s = "";
    *len = 0;
    (void)opg_gguf_get_array_str(((const gguf_src *)src)->g, "tokenizer.ggml.merges", i, &s, len);
    return s;
}

/* Optional id key: absent keeps *id; present must fit the vocabulary. */
static opg_status gguf_id(const opg_gguf *g, const char *key, int32_t *id, uint64_t n) {
    int64_t v;
    opg_status st = opg_gguf_get_int(g, key, &v);
    if (st == OPG_ERR_NOT_FOUND) return OPG_OK;
    if (st) return opg__fail(OPG_ERR_FORMAT, "tokenizer: %s is not an integer", key);
    if (v < 0 || (uint64_t)v >= n)
        return opg__fail(OPG_ERR_FORMAT, "tokenizer: %s = %lld out of range (vocabulary of %llu)", key,
                         (long long)v, (unsigned long long)n);
    *id = (int32_t)v;
    return OPG_OK;
}

static opg_status gguf_flag(const opg_gguf *g, const char *key, int *out) {
    int v;
    opg_status st = opg_gguf_get_bool(g, key, &v);
    if (st == OPG_ERR_NOT_FOUND) return OPG_OK;
    if (st) return opg__fail(OPG_ERR_FORMAT, "tokenizer: %s is not a bool", key);
    *out = v;
    return OPG_OK;
}

opg_status opg_tokenizer_from_gguf(const opg_gguf *g, opg_tokenizer **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "tokenizer: out is NULL");
    *out = NULL;
    if (!g) return opg__fail(OPG_ERR_ARG, "tokenizer: gguf is NULL");
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    const char *s;
    size_t len;
    opg_status st = opg_gguf_get_str(g, "tokenizer.ggml.model", &s, &len);
    if (st == OPG_ERR_NOT_FOUND) return opg__fail(st, "tokenizer: no tokenizer.ggml.model in the file");
    if (st) return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.model is not a string");
    if (len == 5 && memcmp(s, "llama", 5) == 0) p.model = OPG_TOK_SPM;
    else if (len == 4 && memcmp(s, "gpt2", 4) == 0) p.model = OPG_TOK_BPE;
    else
        return opg__fail(OPG_ERR_UNSUPPORTED, "tokenizer: tokenizer.ggml.model '%.*s' not supported (llama, gpt2)",
                         (int)(len > 64 ? 64 : len), s);

    char pre[65] = "default";
    st = opg_gguf_get_str(g, "tokenizer.ggml.pre", &s, &len);
    if (st == OPG_OK) {
        if (len > 64 || memchr(s, 0, len))
            return opg__fail(OPG_ERR_UNSUPPORTED, "tokenizer: tokenizer.ggml.pre '%.*s...' not supported", 32, s);
        memcpy(pre, s, len);
        pre[len] = 0;
    } else if (st != OPG_ERR_NOT_FOUND) {
        return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.pre is not a string");
    }
    p.pre = pre;

    opg_gguf_type et;
    uint64_t n;
    const void *data;
    st = opg_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n, &data);
    if (st == OPG_ERR_NOT_FOUND) return opg__fail(st, "tokenizer: no tokenizer.ggml.tokens in the file");
    if (st || et != OPG_GGUF_STRING)
        return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens is not an array of strings");
    if (n == 0 || n > MAX_TOKENS)
        return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens holds %llu tokens",
                         (unsigned long long)n);
    p.n_tokens = (size_t)n;

    float *scores = NULL;
    int32_t *types = NULL;
    uint64_t m;
    st = opg_gguf_get_array(g, "tokenizer.ggml.scores", &et, &m, &data);
    if (st == OPG_OK) {
        if (et != OPG_GGUF_FLOAT32 || m != n)
            return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores is not %llu float32",
                             (unsigned long long)n);
        if (!(scores = malloc(n * sizeof *scores))) return opg__fail(OPG_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(scores, data, n * sizeof *scores);
        p.scores = scores;
    } else if (st != OPG_ERR_NOT_FOUND) {
        return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores is not an array");
    }
    st = opg_gguf_get_array(g, "tokenizer.ggml.token_type", &et, &m, &data);
    if (st == OPG_OK) {
        if ((et != OPG_GGUF_INT32 && et != OPG_GGUF_UINT32) || m != n) {
            free(scores);
            return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.token_type is not %llu int32",
                             (unsigned long long)n);
        }
        if (!(types = malloc(n * sizeof *types))) {
            free(scores);
            return opg__fail(OPG_ERR_NOMEM, "tokenizer: out of memory");
        }
        memcpy(types, data, n * sizeof *types);
        p.types = types;
    } else if (st != OPG_ERR_NOT_FOUND) {
        free(scores);
        return opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.token_type is not an array");
    }

    if (p.model == OPG_TOK_BPE) {
        st = opg_gguf_get_array(g, "tokenizer.ggml.merges", &et, &m, &data);
        if (st == OPG_ERR_NOT_FOUND) st = opg__fail(st, "tokenizer: gpt2 vocabulary without tokenizer.ggml.merges");
        else if (st || et != OPG_GGUF_STRING || m > MAX_TOKENS)
            st = opg__fail(OPG_ERR_FORMAT, "tokenizer: tokenizer.ggml.merges is not an array of strings");
        if (st) goto done;
        p.n_merges = (size_t)m;
        /* llama.cpp's defaults (none for BPE) */
    } else {
        p.bos_id = n > 1 ? 1 : -1;
        p.eos_id = n > 2 ? 2 : -1;
        p.unk_id = 0;
    }
    if ((st = gguf_id(g, "tokenizer.ggml.bos_token_id", &p.bos_id, n)) ||
        (st = gguf_id(g, "tokenizer.ggml.eos_token_id", &p.eos_id, n)) ||
        (st = gguf_id(g, "tokenizer.ggml.unknown_token_id", &p.unk_id, n)) ||
        (st = gguf_id(g, "tokenizer.ggml.padding_token_id", &p.pad_id, n)) ||
        (st = gguf_id(g, "tokenizer.ggml.eot_token_id", &p.eot_id, n)) ||
        (st = gguf_id(g, "tokenizer.ggml.eom_token_id", &p.eom_id, n)) ||
        (st = gguf_flag(g, "tokenizer.ggml.add_bos_token", &p.add_bos)) ||
        (st = gguf_flag(g, "tokenizer.ggml.add_eos_token", &p.add_eos)) ||
        (st = gguf_flag(g, "tokenizer.ggml.add_space_prefix", &p.add_space_prefix)))
        goto done;

    gguf_src src = {g};
    text_source ts = {gguf_tok, gguf_merge, &src};
    st = build(&p, &ts, out);
done:
    free(scores);
    free(types);
    return st;
}

/* ---- encode ------------------------------------------------------------------- */

typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* bytes in the session buffer; n == 0: merged away */
} sym;

typedef struct {
    double key;      /* SPM: -score, BPE: rank; smaller first */
    int32_t left, right;
    uint32_t size;   /* bytes of the pair when queued */
} bigram;

typedef struct {
    const opg_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    sym *syms;
    size_t n_syms, cap_syms;
    bigram *heap;
    size_t n_heap, cap_heap;
    char *buf;
    size_t n_buf, cap_buf;
    pcre2_match_data *md;
} session;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return -1;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

#define NOMEM() opg__fail(OPG_ERR_NOMEM, "tokenizer: out of memory while encoding")

static opg_status emit(session *s, int32_t id) {
    if (grow((void **)&s->ids, &s->cap_ids, s->n_ids + 1, sizeof *s->ids)) return NOMEM();
    s->ids[s->n_ids++] = id;
    return OPG_OK;
}

/* Id of a token spelled s[0..len) that plain text may produce (never a
 * CONTROL or UNKNOWN token), or -1. */
static int32_t lookup_plain(const opg_tokenizer *t, const char *p, size_t len) {
    int32_t id = map_get(&t->by_text, p, len);
    if (id < 0) return -1;
    uint8_t ty = t->tok[id].type;
    return ty == OPG_TOKEN_CONTROL || ty == OPG_TOKEN_UNKNOWN ? -1 : id;
}

static int bigram_less(const bigram *a, const bigram *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static opg_status heap_push(session *s, bigram b) {
    if (grow((void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof *s->heap)) return NOMEM();
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_less(&b, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = b;
    return OPG_OK;
}

static bigram heap_pop(session *s) {
    bigram top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bigram_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Splits buf[0..n_buf) into character symbols. */
static opg_status make_symbols(session *s) {
    s->n_syms = 0;
    s->n_heap = 0;
    for (size_t off = 0; off < s->n_buf;) {
        size_t l = char_len(s->buf + off, s->n_buf - off);
        if (grow((void **)&s->syms, &s->cap_syms, s->n_syms + 1, sizeof *s->syms)) return NOMEM();
        int32_t i = (int32_t)s->n_syms++;
        s->syms[i] = (sym){i - 1, off + l == s->n_buf ? -1 : i + 1, (uint32_t)off, (uint32_t)l};
        off += l;
    }
    return OPG_OK;
}

static opg_status add_bigram(session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return OPG_OK;
    const opg_tokenizer *t = s->t;
    const sym *a = &s->syms[left], *b = &s->syms[right];
    bigram g = {0, left, right, a->n + b->n};
    if (t->model == OPG_TOK_SPM) {
        int32_t id = lookup_plain(t, s->buf + a->off, a->n + b->n);
        if (id < 0) return OPG_OK;
        g.key = -(double)t->tok[id].score;
    } else {
        const char *l = s->buf + a->off;
        if (a->n > 1 && memchr(l + 1, ' ', a->n - 1)) return OPG_OK; /* never a key: see build() */
        int32_t rank = map_get_pair(&t->merges, l, a->n, s->buf + b->off, b->n);
        if (rank < 0) return OPG_OK;
        g.key = (double)rank;
    }
    return heap_push(s, g);
}

/* The bigram merge loop shared by SPM (best score first) and BPE (lowest
 * rank first); ties go to the leftmost pair. */
static opg_status merge_symbols(session *s) {
    opg_status st;
    for (int32_t i = 1; i < (int32_t)s->n_syms; i++)
        if ((st = add_bigram(s, i - 1, i))) return st;
    while (s->n_heap) {
        bigram g = heap_pop(s);
        sym *a = &s->syms[g.left], *b = &s->syms[g.right];
        /* stale: one side merged away or grown since it was queued */
        if (a->n == 0 || b->n == 0 || a->n + b->n != g.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = g.left;
        if ((st = add_bigram(s, a->prev, g.left)) || (st = add_bigram(s, g.left, a->next))) return st;
    }
    return OPG_OK;
}

/* SPM over one plain fragment: escape spaces, optional prefix, merge, and
 * fall back to bytes for symbols that are not tokens. */
static opg_status spm_fragment(session *s, const char *text, size_t len, int prefix) {
    const opg_tokenizer *t = s->t;
    s->n_buf = 0;
    size_t need = (len + (prefix ? 1 : 0)) * 3;
    if (grow((void **)&s->buf, &s->cap_buf, need + 1, 1)) return NOMEM();
    if (prefix) memcpy(s->buf, "\xE2\x96\x81", 3), s->n_buf = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(s->buf + s->n_buf, "\xE2\x96\x81", 3), s->n_buf += 3;
        else s->buf[s->n_buf++] = text[i];
    }
    opg_status st;
    if ((st = make_symbols(s)) || (st = merge_symbols(s))) return st;
    for (int32_t i = s->n_syms ? 0 : -1; i >= 0; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        const char *p = s->buf + y->off;
        int32_t id = lookup_plain(t, p, y->n);
        if (id >= 0) {
            if ((st = emit(s, id))) return st;
            continue;
        }
        int all = 1;
        for (uint32_t j = 0; j < y->n; j++) all &= t->byte_tok[(uint8_t)p[j]] >= 0;
        if (all) {
            for (uint32_t j = 0; j < y->n; j++)
                if ((st = emit(s, t->byte_tok[(uint8_t)p[j]]))) return st;
        } else if (t->unk >= 0) {
            if ((st = emit(s, t->unk))) return st;
        } else {
            return opg__fail(OPG_ERR_UNSUPPORTED,
                             "tokenizer: a character has no token and the vocabulary has neither byte "
                             "tokens nor an unknown token");
        }
    }
    return OPG_OK;
}

/* BPE over one pre-tokenized word. */
static opg_status bpe_word(session *s, const char *w, size_t len) {
    const opg_tokenizer *t = s->t;
    if (len == 0) return OPG_OK;
    if (grow((void **)&s->buf, &s->cap_buf, len * 2 + 1, 1)) return NOMEM();
    s->n_buf = 0;
    for (size_t i = 0; i < len; i++) {
        uint16_t c = t->b2cp[(uint8_t)w[i]];
        if (c < 0x80) s->buf[s->n_buf++] = (char)c;
        else s->buf[s->n_buf++] = (char)(0xC0 | (c >> 6)), s->buf[s->n_buf++] = (char)(0x80 | (c & 0x3F));
    }
    opg_status st;
    if (t->ignore_merges) {
        int32_t id = lookup_plain(t, s->buf, s->n_buf);
        if (id >= 0) return emit(s, id);
    }
    if ((st = make_symbols(s)) || (st = merge_symbols(s))) return st;
    for (int32_t i = 0; i >= 0; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        int32_t id = lookup_plain(t, s->buf + y->off, y->n);
        if (id >= 0) {
            if ((st = emit(s, id))) return st;
            continue;
        }
        /* not a token (incomplete vocabulary): character by character */
        for (uint32_t o = 0; o < y->n;) {
            size_t l = char_len(s->buf + y->off + o, y->n - o);
            id = lookup_plain(t, s->buf + y->off + o, l);
            if (id < 0) id = t->unk;
            /* dropping the character would change the prompt unseen */
            if (id < 0)
                return opg__fail(OPG_ERR_UNSUPPORTED,
                                 "tokenizer: a character has no token and the vocabulary has no "
                                 "unknown token");
            if ((st = emit(s, id))) return st;
            o += (uint32_t)l;
        }
    }
    return OPG_OK;
}

/* Applies pre-tokenizer regex `level` to text[0..len): every match and every
 * gap between matches is a piece, handed to the next level (the next regex
 * sees the piece alone, as llama.cpp and HF's Sequence do). */
static opg_status pretokenize(session *s, int level, const char *text, size_t len) {
    const opg_tokenizer *t = s->t;
    if (level == t->n_re) return bpe_word(s, text, len);
    opg_status st;
    size_t pos = 0;
    while (pos < len) {
        int rc = pcre2_match(t->re[level], (PCRE2_SPTR)text, len, pos, 0, s->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return opg__fail(OPG_ERR_LIMIT, "tokenizer: pre-tokenizer regex failed at byte %zu: %s", pos,
                             (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t a = ov[0], b = ov[1];
        if (b == a) b = a + char_len(text + a, len - a); /* no pattern matches empty; guard anyway */
        if (a > pos && (st = pretokenize(s, level + 1, text + pos, a - pos))) return st;
        if ((st = pretokenize(s, level + 1, text + a, b - a))) return st;
        pos = b;
    }
    if (pos < len) return pretokenize(s, level + 1, text + pos, len - pos);
    return OPG_OK;
}

typedef struct {
    int32_t id; /* -1: plain text */
    size_t off, len;
} fragment;

/* Cuts text at special-token texts (tokenizer.h: longest token first, all
 * occurrences, llama.cpp's order). *out is malloc'd. */
static opg_status partition(const opg_tokenizer *t, const char *text, size_t len, int parse_special,
                            fragment **out, size_t *n_out) {
    size_t n = 0, cap = 8;
    fragment *f = malloc(cap * sizeof *f), *g = NULL;
    if (!f) return NOMEM();
    if (len) f[n++] = (fragment){-1, 0, len};
    for (int32_t k = 0; k < t->n_special && n; k++) {
        const tok_entry *e = &t->tok[t->special[k]];
        if (!parse_special && e->type != OPG_TOKEN_USER_DEFINED) continue;
        const char *needle = t->pool + e->off;
        if (!memmem(text, len, needle, e->len)) continue; /* cheap common case */
        size_t gn = 0, gcap = n + 8;
        g = malloc(gcap * sizeof *g);
        if (!g) goto nomem;
        for (size_t i = 0; i < n; i++) {
            if (f[i].id >= 0) {
                if (grow((void **)&g, &gcap, gn + 1, sizeof *g)) goto nomem;
                g[gn++] = f[i];
                continue;
            }
            size_t off = f[i].off, end = f[i].off + f[i].len;
            for (;;) {
                const char *m = end - off >= e->len ? memmem(text + off, end - off, needle, e->len) : NULL;
                if (grow((void **)&g, &gcap, gn + 2, sizeof *g)) goto nomem;
                if (!m) {
                    if (end > off) g[gn++] = (fragment){-1, off, end - off};
                    break;
                }
                size_t at = (size_t)(m - text);
                if (at > off) g[gn++] = (fragment){-1, off, at - off};
                g[gn++] = (fragment){t->special[k], at, e->len};
                off = at + e->len;
            }
        }
        free(f);
        f = g, n = gn, cap = gcap, g = NULL;
    }
    *out = f;
    *n_out = n;
    return OPG_OK;
nomem:
    free(f);
    free(g);
    return NOMEM();
}

opg_status opg_tokenizer_encode(const opg_tokenizer *t, const char *text, size_t len, unsigned flags,
                                int32_t *ids, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len) || (!ids && cap))
        return opg__fail(OPG_ERR_ARG, "tokenizer: encode: NULL argument");
    if (len > MAX_TEXT) return opg__fail(OPG_ERR_LIMIT, "tokenizer: text of %zu bytes (limit %u)", len, MAX_TEXT);
    if (flags & OPG_TOK_STRICT_UTF8) {
        for (size_t i = 0; i < len;) {
            size_t l = utf8_len((const uint8_t *)text + i, len - i);
            if (!l) return opg__fail(OPG_ERR_ARG, "tokenizer: invalid UTF-8 at byte %zu", i);
            i += l;
        }
    }
    int add_bos = (flags & OPG_TOK_ADD_BOS) || ((flags & OPG_TOK_ADD_SPECIAL) && t->add_bos);
    int add_eos = (flags & OPG_TOK_ADD_EOS) || ((flags & OPG_TOK_ADD_SPECIAL) && t->add_eos);
    if (add_bos && t->bos < 0) return opg__fail(OPG_ERR_ARG, "tokenizer: BOS asked for, the vocabulary has none");
    if (add_eos && t->eos < 0) return opg__fail(OPG_ERR_ARG, "tokenizer: EOS asked for, the vocabulary has none");

    session s = {.t = t};
    fragment *frags = NULL;
    size_t n_frags = 0;
    opg_status st = OPG_OK;
    if (t->model == OPG_TOK_BPE && !(s.md = pcre2_match_data_create_from_pattern(t->re[0], NULL))) {
        st = NOMEM();
        goto done;
    }
    if ((st = partition(t, text, len, !!(flags & OPG_TOK_PARSE_SPECIAL), &frags, &n_frags))) goto done;
    if (add_bos && (st = emit(&s, t->bos))) goto done;
    int prev_special = 1; /* SPM: a space prefix at the start and after each special token */
    for (size_t i = 0; i < n_frags; i++) {
        const fragment *f = &frags[i];
        if (f->id >= 0) {
            st = emit(&s, f->id);
            prev_special = 1;
        } else if (t->model == OPG_TOK_SPM) {
            st = spm_fragment(&s, text + f->off, f->len, t->add_space_prefix && prev_special);
            prev_special = 0;
        } else {
            st = pretokenize(&s, 0, text + f->off, f->len);
        }
        if (st) goto done;
    }
    if (add_eos && (st = emit(&s, t->eos))) goto done;
    *n_out = s.n_ids;
    if (s.n_ids > cap) {
        st = opg__fail(OPG_ERR_LIMIT, "tokenizer: %zu token ids needed, capacity is %zu", s.n_ids, cap);
        goto done;
    }
    if (s.n_ids) memcpy(ids, s.ids, s.n_ids * sizeof *ids);
done:
    if (st && st != OPG_ERR_LIMIT) *n_out = 0;
    free(frags);
    free(s.ids);
    free(s.syms);
    free(s.heap);
    free(s.buf);
    pcre2_match_data_free(s.md);
    return st;
}

/* ---- decode ------------------------------------------------------------------- */

typedef struct {
    char *out;
    size_t cap, n;
    int strip; /* drop the next byte if it is a space */
} sink;

static void put(sink *k, const char *p, size_t len) {
    if (!len) return;
    if (k->strip) {
        k->strip = 0;
        if (*p == ' ') p++, len--;
    }
    if (k->n < k->cap && len) memcpy(k->out + k->n, p, len <= k->cap - k->n ? len : k->cap - k->n);
    k->n += len;
}

static void put_byte(sink *k, uint8_t b) {
    char c = (char)b;
    put(k, &c, 1);
}

static int byte_token_value(const char *p, size_t len) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static void render(const opg_tokenizer *t, int32_t id, unsigned flags, sink *k) {
    const tok_entry *e = &t->tok[id];
    const char *p = t->pool + e->off;
    size_t len = e->len;
    switch (e->type) {
    case OPG_TOKEN_CONTROL:
    case OPG_TOKEN_UNKNOWN:
        if (flags & OPG_TOK_DECODE_SPECIAL) put(k, p, len);
        return;
    case OPG_TOKEN_USER_DEFINED: put(k, p, len); return;
    case OPG_TOKEN_BYTE: {
        int v = byte_token_value(p, len);
        if (v >= 0) put_byte(k, (uint8_t)v);
        return;
    }
    case OPG_TOKEN_NORMAL: break;
    default: return; /* UNUSED / UNDEFINED render nothing, as llama.cpp */
    }
    if (t->model == OPG_TOK_SPM) {
        size_t run = 0;
        for (size_t i = 0; i < len;) {
            if (len - i >= 3 && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
                put(k, p + run, i - run);
                put(k, " ", 1);
                i += 3;
                run = i;
            } else {
                i++;
            }
        }
        put(k, p + run, len - run);
        return;
    }
    for (size_t i = 0; i < len;) {
        size_t l = utf8_len((const uint8_t *)p + i, len - i);
        uint32_t c = 0x110000;
        if (l == 1) c = (uint8_t)p[i];
        else if (l == 2) c = ((uint32_t)(p[i] & 0x1F) << 6) | (uint32_t)(p[i + 1] & 0x3F);
        if (c < 324 && t->cp2b[c] >= 0) put_byte(k, (uint8_t)t->cp2b[c]);
        else put(k, p + i, l ? l : 1); /* not a GPT-2 byte character: as is */
        i += l ? l : 1;
    }
}

static opg_status finish(sink *k, size_t *n_out) {
    *n_out = k->n;
    if (k->n >= k->cap)
        return opg__fail(OPG_ERR_LIMIT, "tokenizer: %zu bytes (+1 for the NUL) needed, capacity is %zu", k->n,
                         k->cap);
    k->out[k->n] = 0;
    return OPG_OK;
}

opg_status opg_tokenizer_decode(const opg_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char *out,
                                size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!ids && n) || (!out && cap))
        return opg__fail(OPG_ERR_ARG, "tokenizer: decode: NULL argument");
    sink k = {out, cap, 0, 0};
    int strip = (flags & OPG_TOK_DECODE_STRIP_PREFIX) && t->model == OPG_TOK_SPM && t->add_space_prefix;
    int at_start = 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n)
            return opg__fail(OPG_ERR_ARG, "tokenizer: id %d at position %zu out of range (vocabulary of %d)", id, i,
                             t->n);
        if (is_special_type(t->tok[id].type)) {
            render(t, id, flags, &k);
            at_start = 1;
        } else {
            k.strip = strip && at_start;
            render(t, id, flags, &k);
            k.strip = 0;
            at_start = 0;
        }
    }
    return finish(&k, n_out);
}

opg_status opg_tokenizer_token_to_piece(const opg_tokenizer *t, int32_t id, unsigned flags, char *out, size_t cap,
                                        size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!out && cap)) return opg__fail(OPG_ERR_ARG, "tokenizer: token_to_piece: NULL argument");
    if (id < 0 || id >= t->n)
        return opg__fail(OPG_ERR_ARG, "tokenizer: id %d out of range (vocabulary of %d)", id, t->n);
    sink k = {out, cap, 0, 0};
    render(t, id, flags, &k);
    return finish(&k, n_out);
}

/* ---- queries ------------------------------------------------------------------ */

const char *opg_tokenizer_token_text(const opg_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->tok[id].len;
    return t->pool + t->tok[id].off;
}

int32_t opg_tokenizer_find(const opg_tokenizer *t, const char *s, size_t len) {
    if (!t || (!s && len) || !len) return -1;
    return map_get(&t->by_text, s, len);
}

int32_t opg_tokenizer_n_vocab(const opg_tokenizer *t) { return t ? t->n : 0; }
opg_tok_model opg_tokenizer_model(const opg_tokenizer *t) { return t ? t->model : (opg_tok_model)0; }
opg_tok_pre opg_tokenizer_pre(const opg_tokenizer *t) { return t ? t->pre : OPG_TOK_PRE_NONE; }

opg_token_type opg_tokenizer_token_type(const opg_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n) return OPG_TOKEN_UNDEFINED;
    return (opg_token_type)t->tok[id].type;
}

int32_t opg_tokenizer_bos(const opg_tokenizer *t) { return t ? t->bos : -1; }
int32_t opg_tokenizer_eos(const opg_tokenizer *t) { return t ? t->eos : -1; }
int32_t opg_tokenizer_unk(const opg_tokenizer *t) { return t ? t->unk : -1; }
int32_t opg_tokenizer_pad(const opg_tokenizer *t) { return t ? t->pad : -1; }

int opg_tokenizer_is_eog(const opg_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n && t->tok[id].eog;
}

int opg_tokenizer_add_bos(const opg_tokenizer *t) { return t && t->add_bos; }
int opg_tokenizer_add_eos(const opg_tokenizer *t) { return t && t->add_eos; }
int opg_tokenizer_add_space_prefix(const opg_tokenizer *t) { return t && t->add_space_prefix; }
