/* test_tokenizer.c: the SPM and byte-level BPE tokenizers. Ids against those
 * an independent tokenizer produced (../shared/testdata/tokenizer: vocab-only
 * GGUF files with .inp inputs and .out ids), round trips over those inputs
 * and random text and bytes, special tokens, BOS/EOS, capacity and invalid
 * UTF-8 errors; the pre-tokenizer variants on small in-memory vocabularies. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "tokenizer.h"

#define SEP "\n__ggml_vocab_test__\n"

/* ---- helpers ------------------------------------------------------------------ */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static const char *shared_path(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/testdata/tokenizer/%s", tu_shared_dir(), name);
    return path;
}

/* Opens a shared vocabulary, or skips the test visibly. */
static opg_tokenizer *open_shared(const char *name, opg_gguf **g_out) {
    const char *path = shared_path(name);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        print_message("skipped: ../shared/testdata not present (%s)\n", path);
        skip();
    }
    opg_gguf *g = NULL;
    opg_status st = opg_gguf_open(path, &g);
    if (st) print_message("%s: %s\n", path, opg_last_error());
    assert_int_equal(st, OPG_OK);
    opg_tokenizer *t = NULL;
    st = opg_tokenizer_from_gguf(g, &t);
    if (st) print_message("%s: %s\n", path, opg_last_error());
    assert_int_equal(st, OPG_OK);
    if (g_out) *g_out = g;
    else opg_gguf_close(g);
    return t;
}

/* Encodes into a malloc'd array (checks the count query path too). */
static int32_t *enc(const opg_tokenizer *t, const char *s, size_t len, unsigned flags, size_t *n) {
    size_t need = 0;
    opg_status st = opg_tokenizer_encode(t, s, len, flags, NULL, 0, &need);
    if (st != OPG_OK && st != OPG_ERR_LIMIT) print_message("encode: %s\n", opg_last_error());
    assert_true(st == OPG_OK || st == OPG_ERR_LIMIT);
    assert_true(st == OPG_ERR_LIMIT || need == 0);
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
    assert_non_null(ids);
    st = opg_tokenizer_encode(t, s, len, flags, ids, need, n);
    if (st) print_message("encode: %s\n", opg_last_error());
    assert_int_equal(st, OPG_OK);
    assert_int_equal(*n, need);
    return ids;
}

static char *dec(const opg_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, size_t *len) {
    size_t need = 0;
    opg_status st = opg_tokenizer_decode(t, ids, n, flags, NULL, 0, &need);
    assert_int_equal(st, OPG_ERR_LIMIT);
    char *s = malloc(need + 1);
    assert_non_null(s);
    st = opg_tokenizer_decode(t, ids, n, flags, s, need + 1, len);
    if (st) print_message("decode: %s\n", opg_last_error());
    assert_int_equal(st, OPG_OK);
    assert_int_equal(*len, need);
    assert_int_equal(s[need], 0);
    return s;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    char line[8192];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 16 < sizeof line; i++) o += (size_t)snprintf(line + o, sizeof line - o, " %d", ids[i]);
    line[o] = 0;
    print_message("  %s (%zu):%s\n", what, n, line);
}

static void print_text(const char *what, const char *s, size_t len) {
    char line[4096];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < sizeof line; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') line[o++] = (char)c;
        else o += (size_t)snprintf(line + o, sizeof line - o, "\\x%02x", c);
    }
    line[o] = 0;
    print_message("  %s: \"%s\"\n", what, line);
}

/* What decode(encode(s)) must give: s itself, except that SPM cannot tell a
 * literal U+2581 from an escaped space (sentencepiece's own ambiguity), so
 * each U+2581 in s comes back as ' '. */
static size_t expected_back(const opg_tokenizer *t, const char *s, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (opg_tokenizer_model(t) == OPG_TOK_SPM && len - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = s[i++];
        }
    }
    return o;
}

/* Round trip text -> ids -> text under the encode flags (the BOS / EOS the
 * flags add are checked and dropped before decoding); 1 when exact. */
static int round_trips(const opg_tokenizer *t, const char *s, size_t len, unsigned enc_flags, int verbose) {
    size_t n, m;
    int32_t *ids = enc(t, s, len, enc_flags, &n);
    int32_t *body = ids;
    size_t nb = n;
    int bos = (enc_flags & OPG_TOK_ADD_BOS) || ((enc_flags & OPG_TOK_ADD_SPECIAL) && opg_tokenizer_add_bos(t));
    int eos = (enc_flags & OPG_TOK_ADD_EOS) || ((enc_flags & OPG_TOK_ADD_SPECIAL) && opg_tokenizer_add_eos(t));
    if (bos) {
        assert_true(nb >= 1 && body[0] == opg_tokenizer_bos(t));
        body++, nb--;
    }
    if (eos) {
        assert_true(nb >= 1 && body[nb - 1] == opg_tokenizer_eos(t));
        nb--;
    }
    char *back = dec(t, body, nb, OPG_TOK_DECODE_STRIP_PREFIX | OPG_TOK_DECODE_SPECIAL, &m);
    char *want = malloc(len + 1);
    assert_non_null(want);
    size_t wn = expected_back(t, s, len, want);
    int ok = m == wn && memcmp(back, want, wn) == 0;
    if (!ok && verbose) {
        print_text("text", s, len);
        print_ids("ids", ids, n);
        print_text("decoded", back, m);
    }
    free(want);
    free(ids);
    free(back);
    return ok;
}

/* ---- the independent ids ------------------------------------------------------ */

/* Every input of name.inp encodes (no BOS, specials not parsed: how the .out
 * files were made) to the ids on the same line of name.out. */
static void check_vocab_file(const char *name, size_t expect_lines) {
    opg_tokenizer *t = open_shared(name, NULL);
    char inp_name[256], out_name[256];
    snprintf(inp_name, sizeof inp_name, "%s.inp", name);
    snprintf(out_name, sizeof out_name, "%s.out", name);
    size_t inp_len, out_len;
    char *inp = read_file(shared_path(inp_name), &inp_len);
    assert_non_null(inp);
    char *out = read_file(shared_path(out_name), &out_len);
    assert_non_null(out);

    size_t n_in = 0, matched = 0, round = 0, first_bad = (size_t)-1;
    char *p = inp, *end = inp + inp_len, *line = out, *out_end = out + out_len;
    while (p < end) {
        char *q = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        assert_non_null(q); /* every input is followed by the separator */
        size_t len = (size_t)(q - p);
        /* expected ids: one line of .out */
        char *eol = memchr(line, '\n', (size_t)(out_end - line));
        assert_non_null(eol);
        *eol = 0;
        int32_t want[1024];
        size_t n_want = 0;
        for (char *s = line, *e; *s; s = e) {
            long v = strtol(s, &e, 10);
            if (e == s) break;
            assert_true(n_want < 1024);
            want[n_want++] = (int32_t)v;
        }
        size_t n_got;
        int32_t *got = enc(t, p, len, 0, &n_got);
        if (n_got == n_want && memcmp(got, want, n_got * sizeof *got) == 0) {
            matched++;
        } else if (first_bad == (size_t)-1) {
            first_bad = n_in;
            print_message("%s: input %zu differs from the independent ids\n", name, n_in);
            print_text("input", p, len);
            print_ids("expected", want, n_want);
            print_ids("got", got, n_got);
        }
        round += (size_t)round_trips(t, p, len, 0, 1);
        round += (size_t)round_trips(t, p, len, OPG_TOK_PARSE_SPECIAL | OPG_TOK_ADD_SPECIAL, 1);
        free(got);
        n_in++;
        p = q + strlen(SEP);
        line = eol + 1;
    }
    print_message("%s: %zu of %zu inputs match the independent ids; %zu of %zu round trips exact\n", name,
                  matched, n_in, round, 2 * n_in);
    assert_int_equal(n_in, expect_lines);
    assert_true(line == out_end); /* as many .out lines as inputs */
    assert_int_equal(matched, n_in);
    assert_int_equal(round, 2 * n_in);
    free(inp);
    free(out);
    opg_tokenizer_free(t);
}

static void test_spm_ids(void **state) {
    (void)state;
    check_vocab_file("ggml-vocab-llama-spm.gguf", 46);
}

static void test_bpe_ids(void **state) {
    (void)state;
    check_vocab_file("ggml-vocab-gpt-2.gguf", 46);
}

/* ---- metadata ----------------------------------------------------------------- */

static void test_metadata(void **state) {
    (void)state;
    opg_tokenizer *t = open_shared("ggml-vocab-llama-spm.gguf", NULL);
    assert_int_equal(opg_tokenizer_model(t), OPG_TOK_SPM);
    assert_int_equal(opg_tokenizer_n_vocab(t), 32000);
    assert_int_equal(opg_tokenizer_bos(t), 1);
    assert_int_equal(opg_tokenizer_eos(t), 2);
    assert_int_equal(opg_tokenizer_unk(t), 0);
    assert_int_equal(opg_tokenizer_pad(t), -1);
    assert_true(opg_tokenizer_add_bos(t));
    assert_false(opg_tokenizer_add_eos(t));
    assert_true(opg_tokenizer_add_space_prefix(t));
    assert_true(opg_tokenizer_is_eog(t, 2));
    assert_false(opg_tokenizer_is_eog(t, 1));
    assert_false(opg_tokenizer_is_eog(t, -1));
    assert_false(opg_tokenizer_is_eog(t, 32000));
    assert_int_equal(opg_tokenizer_token_type(t, 1), OPG_TOKEN_CONTROL);
    assert_int_equal(opg_tokenizer_token_type(t, 3), OPG_TOKEN_BYTE);
    assert_int_equal(opg_tokenizer_token_type(t, 99999), OPG_TOKEN_UNDEFINED);
    assert_int_equal(opg_tokenizer_find(t, "\xE2\x96\x81", 3), 29871);
    assert_int_equal(opg_tokenizer_find(t, "<0x0A>", 6), 13);
    assert_int_equal(opg_tokenizer_find(t, "no such token at all", 20), -1);
    size_t len;
    const char *s = opg_tokenizer_token_text(t, 2, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "</s>", 4);
    assert_null(opg_tokenizer_token_text(t, 32000, &len));
    assert_int_equal(len, 0);
    /* pieces: U+2581 -> space, byte tokens -> the byte, control -> text only on request */
    char buf[64];
    int32_t hello = opg_tokenizer_find(t, "\xE2\x96\x81Hello", 8);
    assert_int_equal(hello, 15043);
    assert_int_equal(opg_tokenizer_token_to_piece(t, hello, 0, buf, sizeof buf, &len), OPG_OK);
    assert_string_equal(buf, " Hello");
    assert_int_equal(opg_tokenizer_token_to_piece(t, 13, 0, buf, sizeof buf, &len), OPG_OK);
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], '\n');
    assert_int_equal(opg_tokenizer_token_to_piece(t, 2, 0, buf, sizeof buf, &len), OPG_OK);
    assert_int_equal(len, 0);
    assert_int_equal(opg_tokenizer_token_to_piece(t, 2, OPG_TOK_DECODE_SPECIAL, buf, sizeof buf, &len), OPG_OK);
    assert_string_equal(buf, "</s>");
    assert_int_equal(opg_tokenizer_token_to_piece(t, hello, 0, buf, 6, &len), OPG_ERR_LIMIT);
    assert_int_equal(len, 6);
    assert_int_equal(opg_tokenizer_token_to_piece(t, -1, 0, buf, sizeof buf, &len), OPG_ERR_ARG);
    opg_tokenizer_free(t);

    t = open_shared("ggml-vocab-gpt-2.gguf", NULL);
    assert_int_equal(opg_tokenizer_model(t), OPG_TOK_BPE);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_GPT2);
    assert_int_equal(opg_tokenizer_n_vocab(t), 50257);
    assert_int_equal(opg_tokenizer_bos(t), 50256);
    assert_int_equal(opg_tokenizer_eos(t), 50256);
    assert_int_equal(opg_tokenizer_unk(t), -1);
    assert_false(opg_tokenizer_add_bos(t));
    assert_false(opg_tokenizer_add_space_prefix(t));
    assert_true(opg_tokenizer_is_eog(t, 50256));
    /* GPT-2's "\u0120Hello" is " Hello" */
    int32_t id = opg_tokenizer_find(t, "\xC4\xA0Hello", 7);
    assert_int_equal(id, 18435);
    assert_int_equal(opg_tokenizer_token_to_piece(t, id, 0, buf, sizeof buf, &len), OPG_OK);
    assert_string_equal(buf, " Hello");
    opg_tokenizer_free(t);
    opg_tokenizer_free(NULL); /* no-op */
}

/* ---- round trips of random text and bytes ------------------------------------- */

/* Random text from pieces that stress both algorithms: ASCII words, runs of
 * spaces, newlines and tabs, digits, apostrophes, multi-byte characters,
 * special-token texts, and (when raw) arbitrary bytes. */
static size_t random_text(tu_rng *r, char *buf, size_t cap, int raw_bytes) {
    static const char *const parts[] = {
        "Hello", " world", "  ", " ", "\n", "\n\n", "\t", "'s", "'LL", "12345", "3", " (", ")", "!!",
        "\xC3\xBC", "\xE2\x96\x81", "\xF0\x9F\x98\x81", "\xE6\x88\x91", "\xD0\xBD\xD0\xB0", "<s>", "</s>",
        "<unk>", "<|endoftext|>", "<|endoftext", "\xC2\xA0", "\xE3\x80\x80", "\r\n", "$", "a", "Z",
    };
    size_t n = 0, k = (size_t)tu_int(r, 0, 24);
    for (size_t i = 0; i < k; i++) {
        if (raw_bytes && tu_int(r, 0, 3) == 0) {
            size_t m = (size_t)tu_int(r, 1, 4);
            for (size_t j = 0; j < m && n < cap; j++) buf[n++] = (char)tu_int(r, 0, 255);
        } else {
            const char *p = parts[tu_int(r, 0, (int)(sizeof parts / sizeof *parts) - 1)];
            size_t l = strlen(p);
            if (n + l > cap) break;
            memcpy(buf + n, p, l);
            n += l;
        }
    }
    return n;
}

static void round_trip_random(const char *name) {
    opg_tokenizer *t = open_shared(name, NULL);
    tu_rng r = {0x70c0ffee};
    char buf[512];
    int fails = 0;
    const unsigned modes[] = {0, OPG_TOK_PARSE_SPECIAL, OPG_TOK_ADD_SPECIAL | OPG_TOK_PARSE_SPECIAL,
                              OPG_TOK_ADD_BOS | OPG_TOK_ADD_EOS};
    for (int it = 0; it < 3000; it++) {
        size_t n = random_text(&r, buf, sizeof buf, it % 2);
        for (size_t m = 0; m < 4; m++)
            if (!round_trips(t, buf, n, modes[m], fails < 3)) fails++;
    }
    /* purely random bytes */
    for (int it = 0; it < 2000; it++) {
        size_t n = (size_t)tu_int(&r, 0, 64);
        for (size_t i = 0; i < n; i++) buf[i] = (char)tu_int(&r, 0, 255);
        if (!round_trips(t, buf, n, 0, fails < 3)) fails++;
    }
    /* every single byte and every byte pair starting with a lead byte */
    for (int b = 0; b < 256; b++) {
        buf[0] = (char)b;
        if (!round_trips(t, buf, 1, 0, fails < 3)) fails++;
        for (int c = 0; c < 256; c += 7) {
            buf[1] = (char)c;
            if (!round_trips(t, buf, 2, 0, fails < 3)) fails++;
        }
    }
    print_message("%s: %d round-trip failures\n", name, fails);
    assert_int_equal(fails, 0);
    opg_tokenizer_free(t);
}

static void test_spm_round_trip(void **state) {
    (void)state;
    round_trip_random("ggml-vocab-llama-spm.gguf");
}

static void test_bpe_round_trip(void **state) {
    (void)state;
    round_trip_random("ggml-vocab-gpt-2.gguf");
}

/* Without the strip flag SPM decoding keeps the prefixed space of each
 * plain fragment: exactly one more space per fragment. */
static void test_spm_prefix_space(void **state) {
    (void)state;
    opg_tokenizer *t = open_shared("ggml-vocab-llama-spm.gguf", NULL);
    size_t n, m;
    int32_t *ids = enc(t, "Hi<s>there", 10, OPG_TOK_PARSE_SPECIAL, &n);
    char *s = dec(t, ids, n, OPG_TOK_DECODE_SPECIAL, &m);
    assert_string_equal(s, " Hi<s> there");
    free(s);
    s = dec(t, ids, n, OPG_TOK_DECODE_SPECIAL | OPG_TOK_DECODE_STRIP_PREFIX, &m);
    assert_string_equal(s, "Hi<s>there");
    free(s);
    s = dec(t, ids, n, OPG_TOK_DECODE_STRIP_PREFIX, &m); /* control token not rendered */
    assert_string_equal(s, "Hithere");
    free(s);
    free(ids);
    opg_tokenizer_free(t);
}

/* ---- special tokens, BOS / EOS ---------------------------------------------- */

static void test_special_tokens(void **state) {
    (void)state;
    opg_tokenizer *t = open_shared("ggml-vocab-gpt-2.gguf", NULL);
    const char *s = "Hello<|endoftext|> world";
    size_t n, n1, n2;
    int32_t *on = enc(t, s, strlen(s), OPG_TOK_PARSE_SPECIAL, &n);
    int32_t *a = enc(t, "Hello", 5, 0, &n1);
    int32_t *b = enc(t, " world", 6, 0, &n2);
    assert_int_equal(n, n1 + 1 + n2);
    assert_memory_equal(on, a, n1 * sizeof *a);
    assert_int_equal(on[n1], 50256);
    assert_memory_equal(on + n1 + 1, b, n2 * sizeof *b);
    int32_t *off = enc(t, s, strlen(s), 0, &n);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(off[i], 50256);
    assert_true(n > n1 + 1 + n2);
    free(on), free(a), free(b), free(off);
    /* decode renders control tokens only when asked */
    int32_t ids[] = {15496, 50256};
    char buf[64];
    size_t len;
    assert_int_equal(opg_tokenizer_decode(t, ids, 2, 0, buf, sizeof buf, &len), OPG_OK);
    assert_string_equal(buf, "Hello");
    assert_int_equal(opg_tokenizer_decode(t, ids, 2, OPG_TOK_DECODE_SPECIAL, buf, sizeof buf, &len), OPG_OK);
    assert_string_equal(buf, "Hello<|endoftext|>");
    opg_tokenizer_free(t);

    t = open_shared("ggml-vocab-llama-spm.gguf", NULL);
    s = "<s>Hi</s>";
    int32_t *sp = enc(t, s, strlen(s), OPG_TOK_PARSE_SPECIAL, &n);
    a = enc(t, "Hi", 2, 0, &n1); /* "▁Hi": the fragment after <s> gets the prefix */
    assert_int_equal(n, n1 + 2);
    assert_int_equal(sp[0], 1);
    assert_memory_equal(sp + 1, a, n1 * sizeof *a);
    assert_int_equal(sp[n - 1], 2);
    off = enc(t, s, strlen(s), 0, &n);
    for (size_t i = 0; i < n; i++) assert_true(off[i] != 1 && off[i] != 2);
    free(sp), free(a), free(off);
    opg_tokenizer_free(t);
}

static void test_bos_eos(void **state) {
    (void)state;
    opg_tokenizer *t = open_shared("ggml-vocab-llama-spm.gguf", NULL);
    size_t n, n0;
    int32_t *plain = enc(t, "Hello world", 11, 0, &n0);
    int32_t *ids = enc(t, "Hello world", 11, OPG_TOK_ADD_SPECIAL, &n);
    assert_int_equal(n, n0 + 1); /* add_bos_token true, add_eos_token false */
    assert_int_equal(ids[0], 1);
    assert_memory_equal(ids + 1, plain, n0 * sizeof *plain);
    free(ids);
    ids = enc(t, "Hello world", 11, OPG_TOK_ADD_SPECIAL | OPG_TOK_ADD_EOS, &n);
    assert_int_equal(n, n0 + 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 2);
    free(ids);
    ids = enc(t, "", 0, OPG_TOK_ADD_SPECIAL, &n); /* sentencepiece: "" -> [BOS] */
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    ids = enc(t, "", 0, 0, &n);
    assert_int_equal(n, 0);
    free(ids), free(plain);
    opg_tokenizer_free(t);

    t = open_shared("ggml-vocab-gpt-2.gguf", NULL);
    plain = enc(t, "Hello world", 11, 0, &n0);
    ids = enc(t, "Hello world", 11, OPG_TOK_ADD_SPECIAL, &n); /* GPT-2 adds nothing */
    assert_int_equal(n, n0);
    free(ids);
    ids = enc(t, "Hello world", 11, OPG_TOK_ADD_BOS | OPG_TOK_ADD_EOS, &n);
    assert_int_equal(n, n0 + 2);
    assert_int_equal(ids[0], 50256);
    assert_int_equal(ids[n - 1], 50256);
    free(ids), free(plain);
    opg_tokenizer_free(t);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_capacity(void **state) {
    (void)state;
    opg_tokenizer *t = open_shared("ggml-vocab-gpt-2.gguf", NULL);
    const char *s = "Hello world, this is a test of the capacity check";
    size_t need, n;
    int32_t *ids = enc(t, s, strlen(s), 0, &need);
    assert_true(need > 5);
    int32_t small[4];
    assert_int_equal(opg_tokenizer_encode(t, s, strlen(s), 0, small, 4, &n), OPG_ERR_LIMIT);
    assert_int_equal(n, need);
    char want[64];
    snprintf(want, sizeof want, "%zu token ids needed, capacity is 4", need);
    print_message("%s\n", opg_last_error());
    assert_non_null(strstr(opg_last_error(), want));
    assert_int_equal(opg_tokenizer_encode(t, s, strlen(s), 0, NULL, 0, &n), OPG_ERR_LIMIT);
    assert_int_equal(n, need);
    /* decode: cap must hold the NUL as well */
    char buf[128];
    size_t len;
    size_t slen = strlen(s);
    assert_int_equal(opg_tokenizer_decode(t, ids, need, 0, buf, slen, &len), OPG_ERR_LIMIT);
    assert_int_equal(len, slen);
    assert_int_equal(opg_tokenizer_decode(t, ids, need, 0, buf, slen + 1, &len), OPG_OK);
    assert_string_equal(buf, s);
    /* bad arguments */
    int32_t bad[] = {1, 50257};
    assert_int_equal(opg_tokenizer_decode(t, bad, 2, 0, buf, sizeof buf, &len), OPG_ERR_ARG);
    print_message("%s\n", opg_last_error());
    assert_int_equal(opg_tokenizer_encode(t, NULL, 3, 0, small, 4, &n), OPG_ERR_ARG);
    assert_int_equal(opg_tokenizer_encode(t, NULL, 0, 0, small, 4, &n), OPG_OK);
    assert_int_equal(n, 0);
    free(ids);
    opg_tokenizer_free(t);
}

static void test_invalid_utf8(void **state) {
    (void)state;
    const char bad[] = "ok \xff\xfe then \xE2\x82 cut \xED\xA0\x80 surrogate \xC0\xAF overlong";
    size_t len = sizeof bad - 1, n;
    const char *names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"};
    for (int f = 0; f < 2; f++) {
        opg_tokenizer *t = open_shared(names[f], NULL);
        int32_t ids[256];
        assert_int_equal(opg_tokenizer_encode(t, bad, len, OPG_TOK_STRICT_UTF8, ids, 256, &n), OPG_ERR_ARG);
        print_message("%s\n", opg_last_error());
        assert_non_null(strstr(opg_last_error(), "invalid UTF-8 at byte 3"));
        assert_int_equal(opg_tokenizer_encode(t, "fine \xC3\xBC", 7, OPG_TOK_STRICT_UTF8, ids, 256, &n), OPG_OK);
        /* lenient: kept byte for byte */
        assert_true(round_trips(t, bad, len, 0, 1));
        if (f == 0) {
            /* SPM: an invalid byte is its byte-fallback token <0xFF> = 3 + 0xFF */
            assert_int_equal(opg_tokenizer_encode(t, "\xff", 1, 0, ids, 256, &n), OPG_OK);
            assert_int_equal(n, 2); /* "▁", <0xFF> */
            assert_int_equal(ids[0], 29871);
            assert_int_equal(ids[1], 3 + 0xFF);
        } else {
            /* GPT-2: the byte's own character token (0xFF -> "ÿ", id 131) */
            assert_int_equal(opg_tokenizer_encode(t, "\xff", 1, 0, ids, 256, &n), OPG_OK);
            assert_int_equal(n, 1);
            assert_int_equal(ids[0], opg_tokenizer_find(t, "\xC3\xBF", 2));
        }
        opg_tokenizer_free(t);
    }
}

/* ---- in-memory vocabularies: pre-tokenizer variants ------------------------------ */

/* A byte-level vocabulary: the 256 GPT-2 byte characters (id = byte), then
 * the merge results of merges (in rank order), then extra tokens. */
typedef struct {
    char *tok[600];
    int32_t types[600];
    size_t n;
} mini_vocab;

static void gpt2_char(int b, char *out) {
    int k = 0, cp = -1;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
        int v = keep ? c : 256 + k++;
        if (c == b) cp = v;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
}

static opg_tokenizer *mini_bpe(const char *pre, const char *const *merges, size_t n_merges, const char *const *extra,
                               const int32_t *extra_types, size_t n_extra, mini_vocab *v) {
    v->n = 0;
    for (int b = 0; b < 256; b++) {
        char c[4];
        gpt2_char(b, c);
        v->tok[v->n] = strdup(c);
        v->types[v->n++] = OPG_TOKEN_NORMAL;
    }
    for (size_t i = 0; i < n_merges; i++) {
        char *m = strdup(merges[i]), *sp = strchr(m + 1, ' ');
        assert_non_null(sp);
        memmove(sp, sp + 1, strlen(sp)); /* "a b" -> "ab" */
        v->tok[v->n] = m;
        v->types[v->n++] = OPG_TOKEN_NORMAL;
    }
    for (size_t i = 0; i < n_extra; i++) {
        v->tok[v->n] = strdup(extra[i]);
        v->types[v->n++] = extra_types[i];
    }
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    p.model = OPG_TOK_BPE;
    p.pre = pre;
    p.n_tokens = v->n;
    p.tokens = (const char *const *)v->tok;
    p.types = v->types;
    p.n_merges = n_merges;
    p.merges = merges;
    opg_tokenizer *t = NULL;
    opg_status st = opg_tokenizer_new(&p, &t);
    if (st) print_message("%s\n", opg_last_error());
    assert_int_equal(st, OPG_OK);
    return t;
}

static void mini_free(mini_vocab *v, opg_tokenizer *t) {
    for (size_t i = 0; i < v->n; i++) free(v->tok[i]);
    opg_tokenizer_free(t);
}

/* Encodes s and renders the tokens as "a|b|c" (pieces joined by '|'). */
static void split_as(const opg_tokenizer *t, const char *s, char *out, size_t cap) {
    size_t n, o = 0;
    int32_t *ids = enc(t, s, strlen(s), OPG_TOK_PARSE_SPECIAL, &n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        assert_int_equal(opg_tokenizer_token_to_piece(t, ids[i], OPG_TOK_DECODE_SPECIAL, out + o, cap - o, &len),
                         OPG_OK);
        o += len;
        if (i + 1 < n) out[o++] = '|';
    }
    out[o] = 0;
    free(ids);
}

#define EXPECT_SPLIT(t, s, want)                                                                             \
    do {                                                                                                     \
        char got_[512];                                                                                      \
        split_as(t, s, got_, sizeof got_);                                                                   \
        if (strcmp(got_, want) != 0) print_message("split of \"%s\": want \"%s\", got \"%s\"\n", s, want, got_); \
        assert_string_equal(got_, want);                                                                     \
    } while (0)

/* Merges that would join characters across every boundary the regexes
 * differ on, so the token boundaries show the pre-tokenizer's pieces. */
static const char *const MERGES[] = {
    "1 2", "12 3", "123 4", "4 5", "h e", "he l", "hel l", "hell o", "$ hello", "' S", "' s", "\xC4\x8A \xC4\x8A",
    "\xC4\xA0 \xC4\x8A", "\xC4\xA0 \xC4\x8A\xC4\x8A", "I T", "a b", "ab c", "\xC4\xA0 ab", "\xC4\xA0 abc",
    "c \xC4\xA0", "! !", "\xC4\xA0 !", "\xC4\xA0 \xC4\xA0",
}; /* \xC4\xA0 = GPT-2's space, \xC4\x8A its newline */
#define N_MERGES (sizeof MERGES / sizeof *MERGES)

static void test_pre_gpt2(void **state) {
    (void)state;
    mini_vocab v;
    opg_tokenizer *t = mini_bpe("gpt-2", MERGES, N_MERGES, NULL, NULL, 0, &v);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_GPT2);
    EXPECT_SPLIT(t, "12345", "1234|5");       /* \p{N}+ whole */
    EXPECT_SPLIT(t, "$hello", "$|hello");     /* punctuation apart from letters */
    EXPECT_SPLIT(t, "IT'S it's", "IT|'|S| |i|t|'s"); /* contractions lower case only */
    EXPECT_SPLIT(t, "abc \n\nabc", "abc| \n|\n|abc"); /* \s+(?!\S) leaves the last space */
    EXPECT_SPLIT(t, "abc   abc", "abc|  | abc");
    EXPECT_SPLIT(t, "!!!! !!", "!!|!!| |!!"); /* equal ranks: leftmost first */
    mini_free(&v, t);
    /* "default" is GPT-2's regex too */
    t = mini_bpe("default", MERGES, N_MERGES, NULL, NULL, 0, &v);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_GPT2);
    EXPECT_SPLIT(t, "12345", "1234|5");
    mini_free(&v, t);
}

static void test_pre_llama3(void **state) {
    (void)state;
    mini_vocab v;
    opg_tokenizer *t = mini_bpe("llama-bpe", MERGES, N_MERGES, NULL, NULL, 0, &v);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_LLAMA3);
    assert_true(opg_tokenizer_add_bos(t)); /* llama.cpp's default for Llama 3 */
    EXPECT_SPLIT(t, "12345", "123|45");        /* \p{N}{1,3} */
    EXPECT_SPLIT(t, "$hello", "$hello");       /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    EXPECT_SPLIT(t, "IT'S it's", "IT|'S| |i|t|'s"); /* (?i:'s ...) */
    EXPECT_SPLIT(t, "abc \n\nabc", "abc| \n\n|abc"); /* \s*[\r\n]+ */
    EXPECT_SPLIT(t, "abc   abc", "abc|  | abc");
    mini_free(&v, t);
    /* ignore_merges: a whole word that is a token wins over the merges */
    const char *extra[] = {"hello"};
    const int32_t types[] = {OPG_TOKEN_NORMAL};
    const char *const m2[] = {"h e", "l l", "he ll", "hell o"};
    t = mini_bpe("llama3", m2, 4, extra, types, 1, &v);
    size_t n;
    int32_t *ids = enc(t, "hello", 5, 0, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], (int32_t)v.n - 1); /* the extra token, not the merge result "hello" */
    free(ids);
    mini_free(&v, t);
}

static void test_pre_qwen2_smollm(void **state) {
    (void)state;
    mini_vocab v;
    opg_tokenizer *t = mini_bpe("qwen2", MERGES, N_MERGES, NULL, NULL, 0, &v);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_QWEN2);
    assert_false(opg_tokenizer_add_bos(t));
    EXPECT_SPLIT(t, "12345", "1|2|3|4|5"); /* \p{N} one by one */
    EXPECT_SPLIT(t, "$hello", "$hello");
    EXPECT_SPLIT(t, "IT'S", "IT|'S");
    EXPECT_SPLIT(t, "abc \n\nabc", "abc| \n\n|abc");
    mini_free(&v, t);
    t = mini_bpe("smollm", MERGES, N_MERGES, NULL, NULL, 0, &v);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_SMOLLM);
    EXPECT_SPLIT(t, "12345", "1|2|3|4|5"); /* digits split first ... */
    EXPECT_SPLIT(t, "$hello", "$|hello");  /* ... then GPT-2's regex */
    EXPECT_SPLIT(t, "IT'S it's", "IT|'|S| |i|t|'s");
    EXPECT_SPLIT(t, "ab1c ab", "ab|1|c| ab");
    mini_free(&v, t);
}

static void test_pre_unknown(void **state) {
    (void)state;
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    const char *toks[] = {"a", "b"};
    p.model = OPG_TOK_BPE;
    p.pre = "deepseek-coder";
    p.n_tokens = 2;
    p.tokens = toks;
    opg_tokenizer *t = (opg_tokenizer *)1;
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_ERR_UNSUPPORTED);
    assert_null(t);
    print_message("%s\n", opg_last_error());
    assert_non_null(strstr(opg_last_error(), "deepseek-coder"));
    p.pre = "gpt-2";
    p.bos_id = 2; /* out of range */
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_ERR_ARG);
    p.bos_id = -1;
    p.model = (opg_tok_model)7;
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_ERR_ARG);
    assert_int_equal(opg_tokenizer_new(NULL, &t), OPG_ERR_ARG);
}

/* USER_DEFINED tokens are cut out even without PARSE_SPECIAL; CONTROL ones
 * only with it; longer special texts win; plain text never yields CONTROL. */
static void test_user_defined(void **state) {
    (void)state;
    const char *extra[] = {"<ctl>", "<u>", "<u>x", "ab"};
    const int32_t types[] = {OPG_TOKEN_CONTROL, OPG_TOKEN_USER_DEFINED, OPG_TOKEN_USER_DEFINED,
                             OPG_TOKEN_CONTROL};
    const char *const merges[] = {"a b"}; /* would spell the CONTROL token "ab" */
    mini_vocab v;
    opg_tokenizer *t = mini_bpe("gpt-2", merges, 1, extra, types, 4, &v);
    int32_t ctl = opg_tokenizer_find(t, "<ctl>", 5), u = opg_tokenizer_find(t, "<u>", 3);
    int32_t ux = opg_tokenizer_find(t, "<u>x", 4), ab = opg_tokenizer_find(t, "ab", 2);
    assert_true(ctl > 0 && u > 0 && ux > 0 && ab > 0);
    size_t n;
    int32_t *ids = enc(t, "q<u>y<u>x<ctl>", 14, 0, &n);
    /* q, <u>, y, <u>x, then "<ctl>" as plain characters */
    assert_int_equal(n, 4 + 5);
    assert_int_equal(ids[0], 'q');
    assert_int_equal(ids[1], u);
    assert_int_equal(ids[2], 'y');
    assert_int_equal(ids[3], ux);
    for (size_t i = 4; i < n; i++) assert_int_not_equal(ids[i], ctl);
    free(ids);
    ids = enc(t, "<ctl>ab", 7, OPG_TOK_PARSE_SPECIAL, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], ctl);
    assert_int_equal(ids[1], ab); /* "ab" is a CONTROL text, parsed as special */
    free(ids);
    ids = enc(t, "ab", 2, 0, &n); /* plain: the merge spells a CONTROL token, so bytes instead */
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 'a');
    assert_int_equal(ids[1], 'b');
    free(ids);
    mini_free(&v, t);
}

/* A BPE vocabulary without some characters: those become unk, and without
 * an unk token the encode fails (dropping them would change the prompt). */
static void test_bpe_incomplete(void **state) {
    (void)state;
    const char *tokens[] = {"a", "b", "<unk>"};
    const int32_t types[] = {OPG_TOKEN_NORMAL, OPG_TOKEN_NORMAL, OPG_TOKEN_UNKNOWN};
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    p.model = OPG_TOK_BPE;
    p.pre = "gpt-2";
    p.n_tokens = 3;
    p.tokens = tokens;
    p.types = types;
    p.unk_id = 2;
    opg_tokenizer *t = NULL;
    int32_t ids[8];
    size_t n = 99;
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_OK);
    assert_int_equal(opg_tokenizer_encode(t, "abxa", 4, 0, ids, 8, &n), OPG_OK);
    int32_t want[] = {0, 1, 2, 0};
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want, sizeof want);
    opg_tokenizer_free(t);
    p.n_tokens = 2; /* no unk */
    p.unk_id = -1;
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_OK);
    assert_int_equal(opg_tokenizer_encode(t, "ab", 2, 0, ids, 8, &n), OPG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(opg_tokenizer_encode(t, "abxa", 4, 0, ids, 8, &n), OPG_ERR_UNSUPPORTED);
    assert_non_null(strstr(opg_last_error(), "has no token"));
    opg_tokenizer_free(t);
}

/* A small SPM vocabulary: scores decide the merges; unknown characters fall
 * back to bytes, or to unk when there are no byte tokens. */
static void test_spm_in_memory(void **state) {
    (void)state;
    /* "\u2581a": with \x escapes the a would be read as a hex digit */
    const char *toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc", "\u2581a",
                          "<0x21>", "<0xC3>", "<0xA9>"};
    const float scores[] = {0, 0, 0, -1, -2, -2, -2, -5, -1, -3, 0, 0, 0};
    const int32_t types[] = {OPG_TOKEN_UNKNOWN, OPG_TOKEN_CONTROL, OPG_TOKEN_CONTROL, 1, 1, 1, 1, 1, 1, 1,
                             OPG_TOKEN_BYTE, OPG_TOKEN_BYTE, OPG_TOKEN_BYTE};
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    p.model = OPG_TOK_SPM;
    p.n_tokens = 13;
    p.tokens = toks;
    p.scores = scores;
    p.types = types;
    p.bos_id = 1, p.eos_id = 2, p.unk_id = 0;
    opg_tokenizer *t;
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_OK);
    assert_true(opg_tokenizer_add_bos(t));
    assert_true(opg_tokenizer_add_space_prefix(t));
    size_t n;
    int32_t ids[16];
    /* "▁abc": bc (-1) beats ▁a (-3) and ab (-5): ▁ a bc -> then ▁a (-3) */
    assert_int_equal(opg_tokenizer_encode(t, "abc", 3, 0, ids, 16, &n), OPG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 9);
    assert_int_equal(ids[1], 8);
    /* "!" and "é" have no token: byte fallback; "d" has no byte token: unk */
    assert_int_equal(opg_tokenizer_encode(t, "!\xC3\xA9" "d", 4, 0, ids, 16, &n), OPG_OK);
    int32_t want[] = {3, 10, 11, 12, 0};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    opg_tokenizer_free(t);
    /* add_space_prefix off */
    p.add_space_prefix = 0;
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_OK);
    assert_int_equal(opg_tokenizer_encode(t, "ab", 2, 0, ids, 16, &n), OPG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 7);
    opg_tokenizer_free(t);
}

/* ---- large inputs -------------------------------------------------------------- */

static void test_long_inputs(void **state) {
    (void)state;
    const char *names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"};
    /* a missing ../shared skips (a longjmp) before anything is allocated */
    for (int f = 0; f < 2; f++) {
        struct stat sb;
        if (stat(shared_path(names[f]), &sb) != 0) {
            print_message("skipped: ../shared/testdata not present (%s)\n", shared_path(names[f]));
            skip();
        }
    }
    opg_tokenizer *toks[2];
    for (int f = 0; f < 2; f++) toks[f] = open_shared(names[f], NULL);
    size_t big = 256u << 10;
    char *s = malloc(big);
    assert_non_null(s);
    for (int f = 0; f < 2; f++) {
        opg_tokenizer *t = toks[f];
        /* 256 KiB of spaces then a letter (regex backtracking), of one
         * letter (one huge pre-token / one huge SPM fragment), and of text */
        memset(s, ' ', big);
        s[big - 1] = 'x';
        assert_true(round_trips(t, s, big, 0, 1));
        memset(s, 'a', big);
        assert_true(round_trips(t, s, big, 0, 1));
        tu_rng r = {42};
        size_t n = 0;
        while (n + 600 < big) n += random_text(&r, s + n, 512, 1);
        assert_true(round_trips(t, s, n, OPG_TOK_PARSE_SPECIAL, 1));
        opg_tokenizer_free(t);
    }
    free(s);
}


/* ---- GGUF metadata: defaults and hostile values --------------------------------- */

/* What a test GGUF holds; fields left 0/NULL are not written. */
typedef struct {
    const char *model, *pre;
    int n_tokens;            /* tokens "a", "b", ..., "<|eot_id|>" last */
    int scores_n;            /* float32 scores count (0: none) */
    int types_n;             /* int32 token types count (0: none) */
    uint32_t types_elem;     /* element type of the types array */
    int merges;              /* write merges "a b" */
    int bos;                 /* write bos id = bos - 1 when bos > 0 */
    int add_bos;             /* 1: false, 2: true, 3: a string (wrong type) */
} gguf_spec;

static opg_status tok_from_spec(const gguf_spec *sp, opg_tokenizer **t) {
    tu_gguf b;
    tu_gguf_begin(&b);
    static const char *const toks[] = {"a", "b", "c", "ab", "<|eot_id|>"};
    if (sp->model) tu_gguf_kv_str(&b, "tokenizer.ggml.model", sp->model);
    if (sp->pre) tu_gguf_kv_str(&b, "tokenizer.ggml.pre", sp->pre);
    if (sp->n_tokens) tu_gguf_kv_strs(&b, "tokenizer.ggml.tokens", toks, (size_t)sp->n_tokens);
    if (sp->scores_n) {
        float sc[8] = {0};
        tu_gguf_key(&b, "tokenizer.ggml.scores", OPG_GGUF_ARRAY);
        tu_gguf_u32(&b, OPG_GGUF_FLOAT32);
        tu_gguf_u64(&b, (uint64_t)sp->scores_n);
        tu_gguf_put(&b, sc, (size_t)sp->scores_n * 4);
    }
    if (sp->types_n) {
        int32_t ty[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        tu_gguf_kv_i32s(&b, "tokenizer.ggml.token_type", sp->types_elem ? sp->types_elem : OPG_GGUF_INT32, ty,
                   (size_t)sp->types_n);
    }
    if (sp->merges) {
        static const char *const m[] = {"a b"};
        tu_gguf_kv_strs(&b, "tokenizer.ggml.merges", m, 1);
    }
    if (sp->bos) tu_gguf_kv_u32(&b, "tokenizer.ggml.bos_token_id", (uint32_t)(sp->bos - 1));
    if (sp->add_bos == 1 || sp->add_bos == 2) tu_gguf_kv_bool(&b, "tokenizer.ggml.add_bos_token", sp->add_bos == 2);
    if (sp->add_bos == 3) tu_gguf_kv_str(&b, "tokenizer.ggml.add_bos_token", "yes");
    tu_gguf_end(&b);
    opg_gguf *g = NULL;
    opg_status st = opg_gguf_open_memory(b.p, b.n, &g);
    if (st) print_message("gguf: %s\n", opg_last_error());
    assert_int_equal(st, OPG_OK);
    *t = (opg_tokenizer *)1;
    st = opg_tokenizer_from_gguf(g, t);
    if (st) {
        assert_null(*t);
        print_message("  -> %s: %s\n", opg_strerror(st), opg_last_error());
    }
    opg_gguf_close(g);
    free(b.p);
    return st;
}

static void test_gguf_metadata(void **state) {
    (void)state;
    opg_tokenizer *t;
    /* Llama 3 pre-tokenizer: BOS by default, unless the file says otherwise */
    gguf_spec ok = {.model = "gpt2", .pre = "llama-bpe", .n_tokens = 5, .merges = 1, .bos = 1};
    assert_int_equal(tok_from_spec(&ok, &t), OPG_OK);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_LLAMA3);
    assert_true(opg_tokenizer_add_bos(t));
    assert_int_equal(opg_tokenizer_bos(t), 0);
    assert_int_equal(opg_tokenizer_eos(t), -1);
    assert_true(opg_tokenizer_is_eog(t, 4)); /* "<|eot_id|>" by its text */
    assert_int_equal(opg_tokenizer_token_type(t, 4), OPG_TOKEN_CONTROL);
    int32_t ids[8];
    size_t n;
    assert_int_equal(opg_tokenizer_encode(t, "abc", 3, 0, ids, 8, &n), OPG_OK);
    assert_int_equal(n, 2); /* "ab" (merge), "c" */
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 2);
    assert_int_equal(opg_tokenizer_encode(t, "abc", 3, OPG_TOK_ADD_EOS, ids, 8, &n), OPG_ERR_ARG); /* no EOS */
    opg_tokenizer_free(t);
    ok.add_bos = 1;
    assert_int_equal(tok_from_spec(&ok, &t), OPG_OK);
    assert_false(opg_tokenizer_add_bos(t));
    opg_tokenizer_free(t);
    /* no pre key: "default" = GPT-2's rules */
    ok.pre = NULL;
    assert_int_equal(tok_from_spec(&ok, &t), OPG_OK);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_GPT2);
    opg_tokenizer_free(t);
    /* SPM defaults: bos 1, eos 2, unk 0, add BOS, space prefix */
    gguf_spec spm = {.model = "llama", .n_tokens = 5, .scores_n = 5, .types_n = 5};
    assert_int_equal(tok_from_spec(&spm, &t), OPG_OK);
    assert_int_equal(opg_tokenizer_model(t), OPG_TOK_SPM);
    assert_int_equal(opg_tokenizer_pre(t), OPG_TOK_PRE_NONE);
    assert_int_equal(opg_tokenizer_bos(t), 1);
    assert_int_equal(opg_tokenizer_eos(t), 2);
    assert_int_equal(opg_tokenizer_unk(t), 0);
    assert_true(opg_tokenizer_add_bos(t) && opg_tokenizer_add_space_prefix(t));
    opg_tokenizer_free(t);

    /* errors, each with a message */
    gguf_spec bad;
    bad = (gguf_spec){.n_tokens = 5};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_NOT_FOUND); /* no model */
    bad = (gguf_spec){.model = "bert", .n_tokens = 5};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_UNSUPPORTED);
    bad = (gguf_spec){.model = "gpt2", .pre = "tekken", .n_tokens = 5, .merges = 1};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_UNSUPPORTED);
    bad = (gguf_spec){.model = "gpt2", .n_tokens = 5};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_NOT_FOUND); /* no merges */
    bad = (gguf_spec){.model = "llama"};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_NOT_FOUND); /* no tokens */
    bad = (gguf_spec){.model = "llama", .n_tokens = 5, .scores_n = 4};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_FORMAT);
    bad = (gguf_spec){.model = "llama", .n_tokens = 5, .types_n = 6};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_FORMAT);
    bad = (gguf_spec){.model = "llama", .n_tokens = 5, .types_n = 5, .types_elem = OPG_GGUF_FLOAT32};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_FORMAT);
    bad = (gguf_spec){.model = "llama", .n_tokens = 5, .bos = 6}; /* id 5 of 5 */
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_FORMAT);
    bad = (gguf_spec){.model = "llama", .n_tokens = 5, .add_bos = 3};
    assert_int_equal(tok_from_spec(&bad, &t), OPG_ERR_FORMAT);
    assert_int_equal(opg_tokenizer_from_gguf(NULL, &t), OPG_ERR_ARG);
}

/* ---- one handle, several threads -------------------------------------------------- */

typedef struct {
    const opg_tokenizer *t;
    int seed, fails;
} thread_arg;

static void *encode_thread(void *p) {
    thread_arg *a = p;
    tu_rng r = {(uint64_t)a->seed};
    char buf[512];
    int32_t x[1024], y[1024];
    for (int it = 0; it < 300; it++) {
        size_t len = random_text(&r, buf, sizeof buf, 1), n1, n2;
        /* the same text twice, interleaved with the other threads' work */
        if (opg_tokenizer_encode(a->t, buf, len, OPG_TOK_PARSE_SPECIAL, x, 1024, &n1) ||
            opg_tokenizer_encode(a->t, buf, len, OPG_TOK_PARSE_SPECIAL, y, 1024, &n2) || n1 != n2 ||
            memcmp(x, y, n1 * sizeof *x) != 0)
            a->fails++;
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    opg_tokenizer *t = open_shared("ggml-vocab-gpt-2.gguf", NULL);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){t, i + 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_thread, &args[i]), 0);
    }
    int fails = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        fails += args[i].fails;
    }
    assert_int_equal(fails, 0);
    opg_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_ids),          cmocka_unit_test(test_bpe_ids),
        cmocka_unit_test(test_metadata),         cmocka_unit_test(test_spm_round_trip),
        cmocka_unit_test(test_bpe_round_trip),   cmocka_unit_test(test_spm_prefix_space),
        cmocka_unit_test(test_special_tokens),   cmocka_unit_test(test_bos_eos),
        cmocka_unit_test(test_capacity),         cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_pre_gpt2),         cmocka_unit_test(test_pre_llama3),
        cmocka_unit_test(test_pre_qwen2_smollm), cmocka_unit_test(test_pre_unknown),
        cmocka_unit_test(test_user_defined),     cmocka_unit_test(test_spm_in_memory),
        cmocka_unit_test(test_bpe_incomplete),
        cmocka_unit_test(test_long_inputs),      cmocka_unit_test(test_gguf_metadata),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
