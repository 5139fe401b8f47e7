/* trace.c: fingerprints (XXH3) and the per-job Merkle trace root (BLAKE2b). */
#include "trace.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "contract.h"

struct opg_trace {
    int n_layers;
    int64_t n, cap;
    int32_t *tokens;
    int64_t *pos;
    uint64_t *logits_fp;
    uint64_t *layer_fp; /* [cap][n_layers] */
};

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* XXH3 of a leaf of len floats, every NaN hashed as 0x7fc00000: which NaN
 * an operation returns (sign, payload) IEEE 754 leaves open, and the C
 * reference, AVX2 and CUDA paths differ in it. A leaf without NaN (the
 * rule) is hashed in place. */
static uint64_t fp_leaf(const float *x, int64_t len) {
    int64_t i = 0;
    uint32_t w;
    for (; i < len; i++) {
        memcpy(&w, x + i, 4);
        if ((w & 0x7fffffffu) > 0x7f800000u) break;
    }
    if (i == len) return XXH3_64bits(x, (size_t)len * 4);
    uint32_t canon[OPG_TRACE_LEAF_FLOATS];
    memcpy(canon, x, (size_t)len * 4);
    for (; i < len; i++)
        if ((canon[i] & 0x7fffffffu) > 0x7f800000u) canon[i] = 0x7fc00000u;
    return XXH3_64bits(canon, (size_t)len * 4);
}

uint64_t opg_trace_fingerprint(const float *x, int64_t n) {
    /* Leaves let a GPU hash a long row in parallel with the same result;
     * here their hashes stream into the outer hash (same value as hashing
     * them all at once), so no row is too long and nothing is allocated. */
    if (n <= 0) return XXH3_64bits("", 0);
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_64bits_reset(&st);
    for (int64_t i = 0; i * OPG_TRACE_LEAF_FLOATS < n; i++) {
        int64_t len = n - i * OPG_TRACE_LEAF_FLOATS;
        if (len > OPG_TRACE_LEAF_FLOATS) len = OPG_TRACE_LEAF_FLOATS;
        uint8_t leaf[8];
        put_u64(leaf, fp_leaf(x + i * OPG_TRACE_LEAF_FLOATS, len)); /* little-endian on every platform */
        XXH3_64bits_update(&st, leaf, 8);
    }
    return XXH3_64bits_digest(&st);
}

opg_status opg_trace_new(int n_layers, opg_trace **out) {
    *out = NULL;
    if (n_layers < 0) return opg__fail(OPG_ERR_ARG, "trace: negative layer count");
    opg_trace *t = calloc(1, sizeof *t);
    if (!t) return opg__fail(OPG_ERR_NOMEM, "trace: out of memory");
    t->n_layers = n_layers;
    *out = t;
    return OPG_OK;
}

void opg_trace_free(opg_trace *t) {
    if (!t) return;
    free(t->tokens);
    free(t->pos);
    free(t->logits_fp);
    free(t->layer_fp);
    free(t);
}

opg_status opg_trace_add(opg_trace *t, int32_t token, int64_t pos, const uint64_t *layer_fp,
                         uint64_t logits_fp) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 64;
        int32_t *tk = realloc(t->tokens, (size_t)cap * sizeof *tk);
        if (tk) t->tokens = tk;
        int64_t *ps = realloc(t->pos, (size_t)cap * sizeof *ps);
        if (ps) t->pos = ps;
        uint64_t *lf = realloc(t->logits_fp, (size_t)cap * sizeof *lf);
        if (lf) t->logits_fp = lf;
        uint64_t *ly = realloc(t->layer_fp, (size_t)cap * (size_t)(t->n_layers ? t->n_layers : 1) * 8);
        if (ly) t->layer_fp = ly;
        if (!tk || !ps || !lf || !ly) return opg__fail(OPG_ERR_NOMEM, "trace: out of memory");
        t->cap = cap;
    }
    t->tokens[t->n] = token;
    t->pos[t->n] = pos;
    t->logits_fp[t->n] = logits_fp;
    if (t->n_layers) memcpy(t->layer_fp + t->n * t->n_layers, layer_fp, (size_t)t->n_layers * 8);
    t->n++;
    return OPG_OK;
}

int64_t opg_trace_count(const opg_trace *t) { return t->n; }
int opg_trace_layers(const opg_trace *t) { return t->n_layers; }

opg_trace_entry opg_trace_get(const opg_trace *t, int64_t i) {
    opg_trace_entry e = {t->tokens[i], t->pos[i], t->logits_fp[i], t->layer_fp + i * t->n_layers};
    return e;
}

/* Leaf i: BLAKE2b-256(0x00 || version u32 || index u32 || token i32 ||
 * position u32 || n_layers u32 || layer fps u64... || logits fp u64), LE. */
static void leaf_hash(const opg_trace *t, int64_t i, uint8_t out[32]) {
    crypto_generichash_state st;
    uint8_t head[1 + 20];
    head[0] = 0x00;
    put_u32(head + 1, OPG_CONTRACT_VERSION);
    put_u32(head + 5, (uint32_t)i);
    put_u32(head + 9, (uint32_t)t->tokens[i]);
    put_u32(head + 13, (uint32_t)t->pos[i]);
    put_u32(head + 17, (uint32_t)t->n_layers);
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, head, sizeof head);
    uint8_t b[8];
    for (int l = 0; l < t->n_layers; l++) {
        put_u64(b, t->layer_fp[i * t->n_layers + l]);
        crypto_generichash_update(&st, b, 8);
    }
    put_u64(b, t->logits_fp[i]);
    crypto_generichash_update(&st, b, 8);
    crypto_generichash_final(&st, out, 32);
}

void opg_trace_root(const opg_trace *t, uint8_t root[32]) {
    memset(root, 0, 32);
    if (t->n == 0) return;
    uint8_t (*level)[32] = malloc((size_t)t->n * 32);
    if (!level) return; /* cannot happen for traces that could be built */
    for (int64_t i = 0; i < t->n; i++) leaf_hash(t, i, level[i]);
    /* Inner node: BLAKE2b-256(0x01 || left || right); an odd last node moves up. */
    for (int64_t n = t->n; n > 1; n = (n + 1) / 2) {
        for (int64_t i = 0; i < n / 2; i++) {
            uint8_t in[65];
            in[0] = 0x01;
            memcpy(in + 1, level[2 * i], 32);
            memcpy(in + 33, level[2 * i + 1], 32);
            crypto_generichash(level[i], 32, in, sizeof in, NULL, 0);
        }
        if (n & 1) memmove(level[n / 2], level[n - 1], 32);
    }
    memcpy(root, level[0], 32);
    free(level);
}

int64_t opg_trace_first_diff(const opg_trace *a, const opg_trace *b, int *layer) {
    int64_t n = a->n < b->n ? a->n : b->n;
    *layer = -1;
    if (a->n_layers != b->n_layers) return 0;
    for (int64_t i = 0; i < n; i++) {
        if (a->tokens[i] != b->tokens[i] || a->pos[i] != b->pos[i]) return i;
        for (int l = 0; l < a->n_layers; l++)
            if (a->layer_fp[i * a->n_layers + l] != b->layer_fp[i * b->n_layers + l]) {
                *layer = l;
                return i;
            }
        if (a->logits_fp[i] != b->logits_fp[i]) { *layer = a->n_layers; return i; }
    }
    return a->n == b->n ? -1 : n;
}

void opg_hex(char *out, const uint8_t *bytes, int n) {
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) {
        out[2 * i] = d[bytes[i] >> 4];
        out[2 * i + 1] = d[bytes[i] & 15];
    }
    out[2 * n] = 0;
}
