/* fuzz_gguf.c: libFuzzer target for the GGUF loader.
 *
 * Opens the input with opg_gguf_open_memory and, when it opens, walks every
 * accessor: every key (looked up again by name), every value through every
 * typed getter, every element of every array, every byte of every string and
 * tensor. The input buffer is exactly the input's size, so ASan reports any
 * read outside it. Invariants the loader promises are checked with
 * __builtin_trap() so a violation is a crash the fuzzer keeps.
 *
 * Then what else reads a model file's metadata before any weight: the
 * tokenizer built from tokenizer.ggml.* (a fixed text encoded, decoded, and
 * tokens rendered) and the chat template's detection. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "tokenizer.h"

#define CHECK(c)                        \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)

static volatile uint64_t g_sink;

/* Reads every byte, so ASan sees any pointer or length that is off. */
static uint64_t touch(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + b[i];
    return s;
}

static int inside(const uint8_t *base, size_t size, const void *p, size_t n) {
    const uint8_t *q = p;
    return q >= base && q <= base + size && n <= (size_t)(base + size - q);
}

static void walk_kv(const opg_gguf *g, const uint8_t *base, size_t size, int64_t i) {
    size_t klen;
    const char *k = opg_gguf_kv_key(g, i, &klen);
    CHECK(k && klen > 0 && inside(base, size, k, klen));
    CHECK(memchr(k, 0, klen) == NULL);
    char *key = malloc(klen + 1);
    if (!key) return;
    memcpy(key, k, klen);
    key[klen] = 0;
    CHECK(opg_gguf_find_key(g, key) == i); /* keys are unique */

    opg_gguf_type t = opg_gguf_kv_type(g, i);
    CHECK(t >= OPG_GGUF_UINT8 && t <= OPG_GGUF_FLOAT64);
    CHECK(strcmp(opg_gguf_type_name(t), "invalid") != 0);
    int64_t iv;
    double dv;
    int bv;
    const char *s;
    size_t len;
    opg_status st = opg_gguf_get_int(g, key, &iv);
    CHECK(st == OPG_OK || st == OPG_ERR_FORMAT);
    st = opg_gguf_get_float(g, key, &dv);
    CHECK((st == OPG_OK) == (t == OPG_GGUF_FLOAT32 || t == OPG_GGUF_FLOAT64));
    st = opg_gguf_get_bool(g, key, &bv);
    CHECK((st == OPG_OK) == (t == OPG_GGUF_BOOL));
    if (st == OPG_OK) CHECK(bv == 0 || bv == 1);
    st = opg_gguf_get_str(g, key, &s, &len);
    CHECK((st == OPG_OK) == (t == OPG_GGUF_STRING));
    if (st == OPG_OK) {
        CHECK(inside(base, size, s, len));
        g_sink += touch(s, len);
    }
    opg_gguf_type et;
    uint64_t count;
    const void *data;
    st = opg_gguf_get_array(g, key, &et, &count, &data);
    CHECK((st == OPG_OK) == (t == OPG_GGUF_ARRAY));
    if (st == OPG_OK) {
        if (et == OPG_GGUF_STRING) {
            CHECK(data == NULL);
            CHECK(count <= size / 8);
            for (uint64_t j = 0; j < count; j++) {
                CHECK(opg_gguf_get_array_str(g, key, j, &s, &len) == OPG_OK);
                CHECK(inside(base, size, s, len));
                g_sink += touch(s, len);
            }
            CHECK(opg_gguf_get_array_str(g, key, count, &s, &len) == OPG_ERR_ARG);
        } else {
            size_t esz = et == OPG_GGUF_UINT8 || et == OPG_GGUF_INT8 || et == OPG_GGUF_BOOL ? 1
                         : et == OPG_GGUF_UINT16 || et == OPG_GGUF_INT16                     ? 2
                         : et == OPG_GGUF_UINT32 || et == OPG_GGUF_INT32 || et == OPG_GGUF_FLOAT32 ? 4
                         : 8;
            CHECK(et >= OPG_GGUF_UINT8 && et <= OPG_GGUF_FLOAT64 && et != OPG_GGUF_STRING &&
                  et != OPG_GGUF_ARRAY);
            CHECK(count <= size / esz && inside(base, size, data, (size_t)count * esz));
            g_sink += touch(data, (size_t)count * esz);
            CHECK(opg_gguf_get_array_str(g, key, 0, &s, &len) == OPG_ERR_FORMAT);
        }
    }
    free(key);
}

static void walk_tensor(const opg_gguf *g, const uint8_t *base, size_t size, int64_t i) {
    opg_gguf_tensor t;
    CHECK(opg_gguf_tensor_info(g, i, &t) == OPG_OK);
    CHECK(t.name_len > 0 && inside(base, size, t.name, t.name_len));
    CHECK(t.n_dims >= 1 && t.n_dims <= 4);
    size_t bb;
    int be = opg_gguf_ggml_type_block((uint32_t)t.type, &bb);
    CHECK(be > 0 && t.ne[0] % be == 0);
    CHECK(strcmp(opg_gguf_ggml_type_name((uint32_t)t.type), "unknown") != 0);
    unsigned __int128 bytes = (unsigned __int128)(uint64_t)(t.ne[0] / be) * bb;
    for (int d = 0; d < 4; d++) {
        CHECK(t.ne[d] >= 1);
        if (d >= t.n_dims) CHECK(t.ne[d] == 1);
        if (d > 0) bytes *= (uint64_t)t.ne[d];
    }
    CHECK(bytes == t.size);
    CHECK(t.offset % opg_gguf_alignment(g) == 0);
    CHECK((const uint8_t *)t.data == base + opg_gguf_data_offset(g) + t.offset);
    CHECK(inside(base, size, t.data, t.size));
    g_sink += touch(t.data, t.size);

    char *name = malloc(t.name_len + 1);
    if (!name) return;
    memcpy(name, t.name, t.name_len);
    name[t.name_len] = 0;
    CHECK(opg_gguf_find_tensor(g, name) == i); /* names are unique */
    free(name);
}

/* A vocabulary from the file: built or refused with a message; when built,
 * a text with special tokens, digits, non-ASCII and an invalid byte encodes
 * to ids inside the vocabulary (or fails with a message: a vocabulary may
 * lack characters), which decode; every token renders. */
static void walk_tokenizer(const opg_gguf *g) {
    opg_tokenizer *t = (opg_tokenizer *)1;
    opg_status st = opg_tokenizer_from_gguf(g, &t);
    if (st != OPG_OK) {
        CHECK(t == NULL);
        CHECK(st == OPG_ERR_NOT_FOUND || st == OPG_ERR_FORMAT || st == OPG_ERR_UNSUPPORTED ||
              st == OPG_ERR_ARG || st == OPG_ERR_LIMIT);
        CHECK(opg_last_error()[0] != 0);
    } else {
        int32_t n_vocab = opg_tokenizer_n_vocab(t);
        CHECK(n_vocab >= 1);
        static const char text[] = "<s>Hello <|im_start|>w\xC3\xB6rld  12345\n\xE2\x96\x81x \xFF<|eot_id|>";
        int32_t ids[256];
        size_t n = 0;
        st = opg_tokenizer_encode(t, text, sizeof text - 1, OPG_TOK_PARSE_SPECIAL | OPG_TOK_ADD_SPECIAL, ids,
                                  sizeof ids / sizeof *ids, &n);
        if (st == OPG_OK) {
            for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < n_vocab);
            char out[1024];
            size_t len = 0;
            st = opg_tokenizer_decode(t, ids, n, OPG_TOK_DECODE_SPECIAL | OPG_TOK_DECODE_STRIP_PREFIX, out,
                                      sizeof out, &len);
            CHECK(st == OPG_OK || st == OPG_ERR_LIMIT);
            if (st == OPG_OK) CHECK(out[len] == 0);
        } else {
            CHECK(n == 0 && opg_last_error()[0] != 0);
        }
        for (int32_t id = 0; id < n_vocab && id < 1024; id++) {
            char piece[64];
            size_t len = 0;
            st = opg_tokenizer_token_to_piece(t, id, OPG_TOK_DECODE_SPECIAL, piece, sizeof piece, &len);
            CHECK(st == OPG_OK || (st == OPG_ERR_LIMIT && len >= sizeof piece));
            size_t tl = 0;
            const char *tt = opg_tokenizer_token_text(t, id, &tl);
            CHECK(tt != NULL);
            g_sink += touch(tt, tl) + (uint64_t)opg_tokenizer_is_eog(t, id);
        }
        opg_tokenizer_free(t);
    }
    opg_chat_format f;
    st = opg_chat_format_from_gguf(g, &f);
    CHECK(st == OPG_OK || st == OPG_ERR_NOT_FOUND || st == OPG_ERR_UNSUPPORTED || st == OPG_ERR_FORMAT);
    if (st == OPG_OK) CHECK(f >= OPG_CHAT_CHATML && f <= OPG_CHAT_LLAMA2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    opg_gguf *g = (opg_gguf *)1;
    opg_status st = opg_gguf_open_memory(data, size, &g);
    if (st != OPG_OK) {
        /* every failure: NULL handle, a known status and a message */
        CHECK(g == NULL);
        CHECK(st == OPG_ERR_FORMAT || st == OPG_ERR_UNSUPPORTED || st == OPG_ERR_LIMIT);
        CHECK(opg_last_error()[0] != 0);
        g_sink += strlen(opg_last_error());
        return 0;
    }
    CHECK(g != NULL);
    CHECK(opg_gguf_version(g) == 2 || opg_gguf_version(g) == 3);
    CHECK(opg_gguf_file_size(g) == size);
    uint32_t a = opg_gguf_alignment(g);
    CHECK(a >= 8 && (a & (a - 1)) == 0);
    CHECK(opg_gguf_data_offset(g) <= size);
    uint8_t sha[32];
    opg_gguf_sha256(g, sha);
    g_sink += sha[0];

    int64_t n_kv = opg_gguf_kv_count(g), n_t = opg_gguf_tensor_count(g);
    CHECK(n_kv >= 0 && n_t >= 0);
    for (int64_t i = 0; i < n_kv; i++) walk_kv(g, data, size, i);
    CHECK(opg_gguf_kv_key(g, n_kv, NULL) == NULL);
    CHECK(opg_gguf_kv_type(g, n_kv) == OPG_GGUF_INVALID);
    CHECK(opg_gguf_find_key(g, "") == -1);
    int64_t iv;
    CHECK(opg_gguf_get_int(g, "", &iv) == OPG_ERR_NOT_FOUND);
    for (int64_t i = 0; i < n_t; i++) walk_tensor(g, data, size, i);
    opg_gguf_tensor t;
    CHECK(opg_gguf_tensor_info(g, n_t, &t) == OPG_ERR_ARG);
    CHECK(opg_gguf_find_tensor(g, "") == -1);
    walk_tokenizer(g);
    opg_gguf_close(g);
    return 0;
}
