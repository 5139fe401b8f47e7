/* gguf.c: the GGUF (v2, v3) reader: mmap, validation of every field, lookups.
 *
 * Everything in the file is untrusted. The parser walks the header once with
 * a bounds-checked cursor; a count is compared with the bytes that remain
 * before anything is allocated for it, so allocations stay proportional to
 * the file size (and below fixed caps); every tensor extent is computed with
 * overflow checks and must lie inside the data section. After a successful
 * open the accessors only index arrays that were validated here.
 *
 * Rules beyond the GGUF spec (decisions, see gguf.h):
 *  - keys and tensor names are non-empty and contain no NUL byte (so the
 *    C-string lookups are unambiguous); duplicates are format errors;
 *  - nested arrays are rejected (ggml rejects them too);
 *  - bool values must be 0 or 1;
 *  - tensors: 1..4 dims, each ne in 1..INT64_MAX, product fits int64, ne[0]
 *    a multiple of the type's block; data offset aligned; tensors lie inside
 *    the data section and do not overlap (any order, gaps allowed);
 *  - general.alignment, when present, is a uint32 power of two, at least 8
 *    (the spec's "multiple of 8"). */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4
/* Caps far above any real model (llama.cpp files carry tens of kvs and at
 * most a few thousand tensors); beyond them: OPG_ERR_LIMIT. */
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_TENSORS (1u << 20)
/* Smallest encodings: key (8-byte length + 1 byte) + type (4) + uint8 value (1);
 * name (8 + 1) + n_dims (4) + one ne (8) + type (4) + offset (8). */
#define GGUF_MIN_KV_BYTES 14u
#define GGUF_MIN_TENSOR_BYTES 33u

/* ---- ggml types ---------------------------------------------------------------
 * Block elements and bytes per block of every type ggml defines, from ggml's
 * type_traits (= GGML_QUANT_SIZES of the gguf Python package). Ids that ggml
 * removed (4, 5, 31-33, 36-38) have block 0: unknown. */
typedef struct { const char *name; uint32_t blck; uint32_t bytes; } ggml_type_info;

static const ggml_type_info k_ggml_types[] = {
    [0] = {"f32", 1, 4},        [1] = {"f16", 1, 2},
    [2] = {"q4_0", 32, 18},     [3] = {"q4_1", 32, 20},
    [6] = {"q5_0", 32, 22},     [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},     [9] = {"q8_1", 32, 40},
    [10] = {"q2_K", 256, 84},   [11] = {"q3_K", 256, 110},
    [12] = {"q4_K", 256, 144},  [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},  [15] = {"q8_K", 256, 292},
    [16] = {"iq2_xxs", 256, 66}, [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},  [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},  [23] = {"iq4_xs", 256, 136},
    [24] = {"i8", 1, 1},        [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},       [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},       [29] = {"iq1_m", 256, 56},
    [30] = {"bf16", 1, 2},
    [34] = {"tq1_0", 256, 54},  [35] = {"tq2_0", 256, 66},
    [39] = {"mxfp4", 32, 17},   [40] = {"nvfp4", 64, 36},
    [41] = {"q1_0", 128, 18},
};
#define N_GGML_TYPES (sizeof k_ggml_types / sizeof k_ggml_types[0])

static const ggml_type_info *ggml_type_get(uint32_t t) {
    if (t >= N_GGML_TYPES || k_ggml_types[t].blck == 0) return NULL;
    return &k_ggml_types[t];
}

const char *opg_gguf_ggml_type_name(uint32_t ggml_type) {
    const ggml_type_info *ti = ggml_type_get(ggml_type);
    return ti ? ti->name : "unknown";
}

int opg_gguf_ggml_type_block(uint32_t ggml_type, size_t *block_bytes) {
    const ggml_type_info *ti = ggml_type_get(ggml_type);
    if (block_bytes) *block_bytes = ti ? ti->bytes : 0;
    return ti ? (int)ti->blck : 0;
}

/* ---- value types ---------------------------------------------------------------- */
static const char *const k_type_names[] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

const char *opg_gguf_type_name(opg_gguf_type t) {
    if ((unsigned)t < sizeof k_type_names / sizeof k_type_names[0]) return k_type_names[t];
    return "invalid";
}

/* Bytes of a scalar of type t; 0 for string, array and unknown types. */
static size_t scalar_size(uint32_t t) {
    switch (t) {
    case OPG_GGUF_UINT8: case OPG_GGUF_INT8: case OPG_GGUF_BOOL: return 1;
    case OPG_GGUF_UINT16: case OPG_GGUF_INT16: return 2;
    case OPG_GGUF_UINT32: case OPG_GGUF_INT32: case OPG_GGUF_FLOAT32: return 4;
    case OPG_GGUF_UINT64: case OPG_GGUF_INT64: case OPG_GGUF_FLOAT64: return 8;
    }
    return 0;
}

/* ---- the handle ----------------------------------------------------------------- */
typedef struct {
    const char *key;  /* into the file, not NUL-terminated */
    size_t key_len;
    uint32_t type;      /* opg_gguf_type */
    uint32_t elem_type; /* arrays */
    uint64_t count;     /* arrays: elements; strings: bytes */
    size_t off;         /* file offset of the scalar / string bytes / first element */
    size_t *str_off;    /* string arrays: file offset of element i's u64 length */
} gguf_kv;

/* Sorted views for duplicate detection and O(log n) lookup by name. */
typedef struct { const char *s; size_t len; uint32_t idx; } name_ref;

struct opg_gguf {
    const uint8_t *base;
    size_t size;
    int mapped; /* base came from mmap: munmap at close */
    uint32_t version;
    uint32_t alignment;
    size_t data_off; /* start of the data section (header end, aligned) */

    int64_t n_kv;
    gguf_kv *kv;
    name_ref *kv_sorted;

    int64_t n_tensors;
    opg_gguf_tensor *tensors;
    name_ref *t_sorted;

    pthread_mutex_t sha_lock;
    int sha_done;
    uint8_t sha[32];
};

/* ---- helpers -------------------------------------------------------------------- */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Printable, bounded copy of untrusted bytes for error messages. */
#define ESC_MAX 48
typedef struct { char s[ESC_MAX * 4 + 8]; } esc_buf;
static const char *esc(esc_buf *b, const char *s, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len && i < ESC_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            b->s[o++] = (char)c;
        } else {
            o += (size_t)snprintf(b->s + o, 5, "\\x%02x", c);
        }
    }
    if (len > ESC_MAX) { memcpy(b->s + o, "...", 3); o += 3; }
    b->s[o] = 0;
    return b->s;
}

typedef struct { const uint8_t *p; size_t size, pos; } cursor;

static opg_status need(const cursor *c, size_t n, const char *what) {
    if (c->size - c->pos < n)
        return opg__fail(OPG_ERR_FORMAT,
                         "unexpected end of file reading %s at offset %zu: need %zu bytes, "
                         "%zu left (file size %zu)",
                         what, c->pos, n, c->size - c->pos, c->size);
    return OPG_OK;
}

static opg_status get_u32(cursor *c, uint32_t *v, const char *what) {
    opg_status st = need(c, 4, what);
    if (st) return st;
    *v = rd32(c->p + c->pos);
    c->pos += 4;
    return OPG_OK;
}

static opg_status get_u64(cursor *c, uint64_t *v, const char *what) {
    opg_status st = need(c, 8, what);
    if (st) return st;
    *v = rd64(c->p + c->pos);
    c->pos += 8;
    return OPG_OK;
}

/* GGUF string: u64 length + bytes. */
static opg_status get_str(cursor *c, const char **s, size_t *len, const char *what) {
    size_t at = c->pos;
    uint64_t n;
    opg_status st = get_u64(c, &n, what);
    if (st) return st;
    if (n > c->size - c->pos)
        return opg__fail(OPG_ERR_FORMAT,
                         "%s: string length %llu at offset %zu exceeds the %zu bytes left "
                         "in the file",
                         what, (unsigned long long)n, at, c->size - c->pos);
    *s = (const char *)c->p + c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return OPG_OK;
}

static int name_cmp(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->s, y->s, n);
    if (r) return r;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Index of name in the sorted view, or -1. */
static int64_t name_find(const name_ref *v, int64_t n, const char *s, size_t len) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        size_t m = v[mid].len < len ? v[mid].len : len;
        int r = memcmp(v[mid].s, s, m);
        if (r == 0 && v[mid].len != len) r = v[mid].len < len ? -1 : 1;
        if (r == 0) return v[mid].idx;
        if (r < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

/* Non-empty, no NUL byte: keys and tensor names are looked up by C string. */
static opg_status check_name(const char *s, size_t len, const char *what, int64_t i, size_t at) {
    if (len == 0)
        return opg__fail(OPG_ERR_FORMAT, "%s %lld at offset %zu is empty", what, (long long)i, at);
    const char *z = memchr(s, 0, len);
    if (z) {
        esc_buf b;
        return opg__fail(OPG_ERR_FORMAT, "%s %lld '%s' at offset %zu contains a NUL byte", what,
                         (long long)i, esc(&b, s, len), at);
    }
    return OPG_OK;
}

/* ---- metadata ------------------------------------------------------------------- */
static opg_status check_bools(const uint8_t *p, uint64_t n, size_t at, const char *key, size_t klen) {
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] > 1) {
            esc_buf b;
            return opg__fail(OPG_ERR_FORMAT, "key '%s': bool value %u at offset %zu (must be 0 or 1)",
                             esc(&b, key, klen), p[i], at + (size_t)i);
        }
    }
    return OPG_OK;
}

static opg_status parse_value(cursor *c, gguf_kv *kv) {
    esc_buf b;
    size_t at = c->pos;
    size_t sz = scalar_size(kv->type);
    if (sz) {
        opg_status st = need(c, sz, "a metadata value");
        if (st) return st;
        kv->off = c->pos;
        if (kv->type == OPG_GGUF_BOOL) {
            st = check_bools(c->p + c->pos, 1, c->pos, kv->key, kv->key_len);
            if (st) return st;
        }
        c->pos += sz;
        return OPG_OK;
    }
    if (kv->type == OPG_GGUF_STRING) {
        const char *s;
        size_t len;
        opg_status st = get_str(c, &s, &len, "string value");
        if (st) return st;
        kv->off = (size_t)((const uint8_t *)s - c->p);
        kv->count = len;
        return OPG_OK;
    }
    if (kv->type != OPG_GGUF_ARRAY)
        return opg__fail(OPG_ERR_FORMAT, "key '%s': unknown value type %u at offset %zu",
                         esc(&b, kv->key, kv->key_len), kv->type, at - 4);

    uint64_t count;
    opg_status st = get_u32(c, &kv->elem_type, "an array element type");
    if (!st) st = get_u64(c, &count, "an array element count");
    if (st) return st;
    kv->count = count;
    size_t left = c->size - c->pos;
    if (kv->elem_type == OPG_GGUF_ARRAY)
        return opg__fail(OPG_ERR_FORMAT, "key '%s': nested arrays are not supported (offset %zu)",
                         esc(&b, kv->key, kv->key_len), at);
    sz = scalar_size(kv->elem_type);
    if (sz) {
        if (count > left / sz)
            return opg__fail(OPG_ERR_FORMAT,
                             "key '%s': array of %llu %s elements at offset %zu exceeds the %zu "
                             "bytes left in the file",
                             esc(&b, kv->key, kv->key_len), (unsigned long long)count,
                             k_type_names[kv->elem_type], at, left);
        kv->off = c->pos;
        if (kv->elem_type == OPG_GGUF_BOOL) {
            st = check_bools(c->p + c->pos, count, c->pos, kv->key, kv->key_len);
            if (st) return st;
        }
        c->pos += (size_t)count * sz;
        return OPG_OK;
    }
    if (kv->elem_type != OPG_GGUF_STRING)
        return opg__fail(OPG_ERR_FORMAT, "key '%s': unknown array element type %u at offset %zu",
                         esc(&b, kv->key, kv->key_len), kv->elem_type, at);
    /* Every string takes at least its 8-byte length: the index (8 bytes per
     * string) is never larger than the file. */
    if (count > left / 8)
        return opg__fail(OPG_ERR_FORMAT,
                         "key '%s': array of %llu strings at offset %zu exceeds the %zu bytes "
                         "left in the file",
                         esc(&b, kv->key, kv->key_len), (unsigned long long)count, at, left);
    kv->off = c->pos;
    kv->str_off = malloc((count ? (size_t)count : 1) * sizeof *kv->str_off);
    if (!kv->str_off)
        return opg__fail(OPG_ERR_NOMEM, "key '%s': no memory for the index of %llu strings",
                         esc(&b, kv->key, kv->key_len), (unsigned long long)count);
    for (uint64_t i = 0; i < count; i++) {
        const char *s;
        size_t len;
        kv->str_off[i] = c->pos;
        st = get_str(c, &s, &len, "string array element");
        if (st) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", opg_last_error());
            return opg__fail(st, "key '%s', element %llu: %s", esc(&b, kv->key, kv->key_len),
                             (unsigned long long)i, msg);
        }
    }
    return OPG_OK;
}

static opg_status parse_kvs(opg_gguf *g, cursor *c) {
    for (int64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        size_t at = c->pos;
        opg_status st = get_str(c, &kv->key, &kv->key_len, "metadata key");
        if (!st) st = check_name(kv->key, kv->key_len, "metadata key", i, at);
        if (!st) st = get_u32(c, &kv->type, "a metadata value type");
        if (!st) st = parse_value(c, kv);
        if (st) return st;
    }
    g->kv_sorted = malloc((size_t)(g->n_kv ? g->n_kv : 1) * sizeof *g->kv_sorted);
    if (!g->kv_sorted) return opg__fail(OPG_ERR_NOMEM, "no memory for the key index");
    for (int64_t i = 0; i < g->n_kv; i++)
        g->kv_sorted[i] = (name_ref){g->kv[i].key, g->kv[i].key_len, (uint32_t)i};
    qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, name_cmp);
    for (int64_t i = 1; i < g->n_kv; i++) {
        const name_ref *a = &g->kv_sorted[i - 1], *b = &g->kv_sorted[i];
        if (a->len == b->len && memcmp(a->s, b->s, a->len) == 0) {
            esc_buf e;
            return opg__fail(OPG_ERR_FORMAT, "duplicate metadata key '%s' (pairs %u and %u)",
                             esc(&e, a->s, a->len), a->idx, b->idx);
        }
    }
    return OPG_OK;
}

/* ---- tensors -------------------------------------------------------------------- */
static opg_status parse_tensor_info(opg_gguf *g, cursor *c, int64_t i) {
    opg_gguf_tensor *t = &g->tensors[i];
    esc_buf b;
    size_t at = c->pos;
    opg_status st = get_str(c, &t->name, &t->name_len, "tensor name");
    if (!st) st = check_name(t->name, t->name_len, "tensor name", i, at);
    if (st) return st;
    const char *nm = esc(&b, t->name, t->name_len);

    uint32_t n_dims;
    at = c->pos;
    st = get_u32(c, &n_dims, "a tensor's n_dims");
    if (st) return st;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return opg__fail(OPG_ERR_FORMAT, "tensor '%s': n_dims %u at offset %zu (must be 1..%d)", nm,
                         n_dims, at, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    int64_t nelem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= (int)n_dims) continue;
        uint64_t ne;
        at = c->pos;
        st = get_u64(c, &ne, "a tensor dimension");
        if (st) return st;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return opg__fail(OPG_ERR_FORMAT, "tensor '%s': ne[%d] = %llu at offset %zu (must be 1..2^63-1)",
                             nm, d, (unsigned long long)ne, at);
        t->ne[d] = (int64_t)ne;
        if (__builtin_mul_overflow(nelem, t->ne[d], &nelem))
            return opg__fail(OPG_ERR_FORMAT, "tensor '%s': element count overflows int64 at ne[%d] (offset %zu)",
                             nm, d, at);
    }

    uint32_t type;
    at = c->pos;
    st = get_u32(c, &type, "a tensor type");
    if (st) return st;
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti)
        return opg__fail(OPG_ERR_FORMAT, "tensor '%s': unknown ggml type %u at offset %zu", nm, type, at);
    t->type = (opg_dtype)type;
    if (t->ne[0] % ti->blck != 0)
        return opg__fail(OPG_ERR_FORMAT,
                         "tensor '%s': ne[0] = %lld is not a multiple of the %s block size %u",
                         nm, (long long)t->ne[0], ti->name, ti->blck);
    /* bytes = ne0/blck * bytes_per_block * ne1 * ne2 * ne3 */
    uint64_t bytes = (uint64_t)(t->ne[0] / ti->blck);
    int ovf = __builtin_mul_overflow(bytes, (uint64_t)ti->bytes, &bytes);
    for (int d = 1; d < GGUF_MAX_DIMS && !ovf; d++)
        ovf = __builtin_mul_overflow(bytes, (uint64_t)t->ne[d], &bytes);
    if (ovf || bytes > SIZE_MAX)
        return opg__fail(OPG_ERR_FORMAT, "tensor '%s': byte size overflows (%s, ne %lld x %lld x %lld x %lld)",
                         nm, ti->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3]);
    t->size = (size_t)bytes;
    return get_u64(c, &t->offset, "a tensor data offset");
}

static int extent_cmp(const void *a, const void *b) {
    const opg_gguf_tensor *x = *(const opg_gguf_tensor *const *)a, *y = *(const opg_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x < y ? -1 : x > y;
}

static opg_status place_tensors(opg_gguf *g) {
    esc_buf b, b2;
    size_t data_size = g->size - g->data_off;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        opg_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return opg__fail(OPG_ERR_FORMAT, "tensor '%s': data offset %llu is not a multiple of the alignment %u",
                             esc(&b, t->name, t->name_len), (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->size > data_size - t->offset)
            return opg__fail(OPG_ERR_FORMAT,
                             "tensor '%s': data at offset %llu + %zu bytes extends past the end of "
                             "the file (data section: %zu bytes from file offset %zu)",
                             esc(&b, t->name, t->name_len), (unsigned long long)t->offset, t->size,
                             data_size, g->data_off);
        t->data = g->base + g->data_off + t->offset;
    }
    /* No two tensors share bytes: sort the extents by offset. */
    if (g->n_tensors > 1) {
        const opg_gguf_tensor **v = malloc((size_t)g->n_tensors * sizeof *v);
        if (!v) return opg__fail(OPG_ERR_NOMEM, "no memory for the tensor extents");
        for (int64_t i = 0; i < g->n_tensors; i++) v[i] = &g->tensors[i];
        qsort(v, (size_t)g->n_tensors, sizeof *v, extent_cmp);
        for (int64_t i = 1; i < g->n_tensors; i++) {
            const opg_gguf_tensor *p = v[i - 1], *q = v[i];
            if (p->offset + p->size > q->offset) {
                opg_status st = opg__fail(OPG_ERR_FORMAT,
                                          "tensors '%s' (data offset %llu, %zu bytes) and '%s' "
                                          "(data offset %llu) overlap",
                                          esc(&b, p->name, p->name_len), (unsigned long long)p->offset,
                                          p->size, esc(&b2, q->name, q->name_len),
                                          (unsigned long long)q->offset);
                free(v);
                return st;
            }
        }
        free(v);
    }
    return OPG_OK;
}

/* ---- open ----------------------------------------------------------------------- */
static opg_status parse(opg_gguf *g) {
    cursor c = {g->base, g->size, 0};
    opg_status st = need(&c, 4, "the magic");
    if (st) return st;
    if (memcmp(g->base, "GGUF", 4) != 0) {
        esc_buf b;
        return opg__fail(OPG_ERR_FORMAT, "not a GGUF file: magic '%s' at offset 0 (expected 'GGUF')",
                         esc(&b, (const char *)g->base, 4));
    }
    c.pos = 4;
    st = get_u32(&c, &g->version, "the version");
    if (st) return st;
    if (g->version != 2 && g->version != 3) {
        uint32_t sw = __builtin_bswap32(g->version);
        if (sw >= 1 && sw <= 3)
            return opg__fail(OPG_ERR_UNSUPPORTED,
                             "big-endian GGUF file (version field at offset 4 reads 0x%08x, "
                             "byte-swapped %u): opg reads little-endian files only",
                             g->version, sw);
        return opg__fail(OPG_ERR_UNSUPPORTED,
                         "GGUF version %u at offset 4 is not supported (opg reads versions 2 and 3)",
                         g->version);
    }

    uint64_t n_tensors, n_kv;
    st = get_u64(&c, &n_tensors, "the tensor count");
    if (!st) st = get_u64(&c, &n_kv, "the metadata key/value count");
    if (st) return st;
    size_t left = c.size - c.pos;
    if (n_kv > left / GGUF_MIN_KV_BYTES)
        return opg__fail(OPG_ERR_FORMAT,
                         "kv_count %llu at offset 16 is impossible: the %zu bytes left hold at "
                         "most %zu key/value pairs",
                         (unsigned long long)n_kv, left, left / GGUF_MIN_KV_BYTES);
    if (n_tensors > left / GGUF_MIN_TENSOR_BYTES)
        return opg__fail(OPG_ERR_FORMAT,
                         "tensor_count %llu at offset 8 is impossible: the %zu bytes left hold at "
                         "most %zu tensor infos",
                         (unsigned long long)n_tensors, left, left / GGUF_MIN_TENSOR_BYTES);
    if (n_kv > GGUF_MAX_KV)
        return opg__fail(OPG_ERR_LIMIT, "kv_count %llu exceeds opg's limit of %u",
                         (unsigned long long)n_kv, GGUF_MAX_KV);
    if (n_tensors > GGUF_MAX_TENSORS)
        return opg__fail(OPG_ERR_LIMIT, "tensor_count %llu exceeds opg's limit of %u",
                         (unsigned long long)n_tensors, GGUF_MAX_TENSORS);

    g->n_kv = (int64_t)n_kv;
    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    if (!g->kv) return opg__fail(OPG_ERR_NOMEM, "no memory for %llu key/value pairs", (unsigned long long)n_kv);
    st = parse_kvs(g, &c);
    if (st) return st;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = name_find(g->kv_sorted, g->n_kv, "general.alignment", strlen("general.alignment"));
    if (ai >= 0) {
        const gguf_kv *kv = &g->kv[ai];
        if (kv->type != OPG_GGUF_UINT32)
            return opg__fail(OPG_ERR_FORMAT, "general.alignment has type %s (must be uint32)",
                             opg_gguf_type_name((opg_gguf_type)kv->type));
        uint32_t a = rd32(g->base + kv->off);
        if (a == 0 || (a & (a - 1)) != 0)
            return opg__fail(OPG_ERR_FORMAT, "general.alignment = %u at offset %zu is not a power of two",
                             a, kv->off);
        /* the spec's "multiple of 8": below it, tensors used in place could
         * start off their element size (a misaligned float load) */
        if (a < 8)
            return opg__fail(OPG_ERR_FORMAT,
                             "general.alignment = %u at offset %zu is below 8 (the GGUF spec asks for a "
                             "multiple of 8)", a, kv->off);
        g->alignment = a;
    }

    left = c.size - c.pos;
    if (n_tensors > left / GGUF_MIN_TENSOR_BYTES)
        return opg__fail(OPG_ERR_FORMAT,
                         "tensor_count %llu is impossible: the %zu bytes after the metadata (offset "
                         "%zu) hold at most %zu tensor infos",
                         (unsigned long long)n_tensors, left, c.pos, left / GGUF_MIN_TENSOR_BYTES);
    g->n_tensors = (int64_t)n_tensors;
    g->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
    g->t_sorted = malloc((size_t)(n_tensors ? n_tensors : 1) * sizeof *g->t_sorted);
    if (!g->tensors || !g->t_sorted)
        return opg__fail(OPG_ERR_NOMEM, "no memory for %llu tensor infos", (unsigned long long)n_tensors);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        st = parse_tensor_info(g, &c, i);
        if (st) return st;
        g->t_sorted[i] = (name_ref){g->tensors[i].name, g->tensors[i].name_len, (uint32_t)i};
    }
    qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, name_cmp);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const name_ref *a = &g->t_sorted[i - 1], *b = &g->t_sorted[i];
        if (a->len == b->len && memcmp(a->s, b->s, a->len) == 0) {
            esc_buf e;
            return opg__fail(OPG_ERR_FORMAT, "duplicate tensor name '%s' (tensors %u and %u)",
                             esc(&e, a->s, a->len), a->idx, b->idx);
        }
    }

    /* The data section starts at the header's end rounded up to the alignment.
     * A file without tensors may end before that (no padding needed). */
    size_t hdr_end = c.pos;
    size_t pad = (g->alignment - hdr_end % g->alignment) % g->alignment;
    if (pad > c.size - hdr_end) {
        if (g->n_tensors > 0)
            return opg__fail(OPG_ERR_FORMAT,
                             "unexpected end of file in the padding before the data section: "
                             "header ends at offset %zu, alignment %u, file size %zu",
                             hdr_end, g->alignment, c.size);
        g->data_off = c.size;
    } else {
        g->data_off = hdr_end + pad;
    }
    return place_tensors(g);
}

void opg_gguf_drop_pages(const opg_gguf *g, const void *p, size_t bytes) {
    if (!g || !g->mapped || !p) return;
    uintptr_t base = (uintptr_t)g->base, a = (uintptr_t)p;
    if (a < base || a - base > g->size || bytes > g->size - (a - base)) return;
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    uintptr_t lo = (a + (uintptr_t)ps - 1) / (uintptr_t)ps * (uintptr_t)ps;
    uintptr_t hi = (a + bytes) / (uintptr_t)ps * (uintptr_t)ps;
    /* a private read-only file mapping: dropped pages fault back in from the file */
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void opg_gguf_close(opg_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->t_sorted);
    if (g->mapped) munmap((void *)g->base, g->size);
    pthread_mutex_destroy(&g->sha_lock);
    free(g);
}

static opg_status open_bytes(const void *data, size_t size, int mapped, opg_gguf **out) {
    opg_gguf *g = calloc(1, sizeof *g);
    if (!g) return opg__fail(OPG_ERR_NOMEM, "no memory for the GGUF handle");
    g->base = data;
    g->size = size;
    g->mapped = mapped;
    pthread_mutex_init(&g->sha_lock, NULL);
    opg_status st = parse(g);
    if (st) {
        g->mapped = 0; /* the caller unmaps */
        opg_gguf_close(g);
        return st;
    }
    *out = g;
    return OPG_OK;
}

/* Prefixes the current message with "<who>: ". */
static opg_status prefix_error(opg_status st, const char *who) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", opg_last_error());
    return opg__fail(st, "%s: %s", who, msg);
}

opg_status opg_gguf_open_memory(const void *data, size_t size, opg_gguf **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "gguf: out is NULL");
    *out = NULL;
    if (!data && size) return opg__fail(OPG_ERR_ARG, "gguf: data is NULL");
    if (size == 0) return opg__fail(OPG_ERR_FORMAT, "gguf: empty input (0 bytes), not a GGUF file");
    opg_status st = open_bytes(data, size, 0, out);
    return st ? prefix_error(st, "gguf") : OPG_OK;
}

opg_status opg_gguf_open(const char *path, opg_gguf **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "gguf: out is NULL");
    *out = NULL;
    if (!path) return opg__fail(OPG_ERR_ARG, "gguf: path is NULL");
    /* O_NONBLOCK: a FIFO given as the model is refused below instead of
       waiting for a writer; on a regular file it changes nothing */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return opg__fail(OPG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return opg__fail(OPG_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return opg__fail(OPG_ERR_IO, "%s: is a directory, not a GGUF file", path);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return opg__fail(OPG_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return opg__fail(OPG_ERR_FORMAT, "%s: empty file (0 bytes), not a GGUF file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return opg__fail(OPG_ERR_LIMIT, "%s: file of %lld bytes does not fit the address space", path,
                         (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (p == MAP_FAILED) return opg__fail(OPG_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
    opg_status st = open_bytes(p, size, 1, out);
    if (st) {
        munmap(p, size);
        return prefix_error(st, path);
    }
    return OPG_OK;
}

/* ---- accessors ------------------------------------------------------------------ */
uint32_t opg_gguf_version(const opg_gguf *g) { return g ? g->version : 0; }
size_t opg_gguf_file_size(const opg_gguf *g) { return g ? g->size : 0; }
uint32_t opg_gguf_alignment(const opg_gguf *g) { return g ? g->alignment : 0; }
size_t opg_gguf_data_offset(const opg_gguf *g) { return g ? g->data_off : 0; }

void opg_gguf_sha256(opg_gguf *g, uint8_t out[32]) {
    if (!g || !out) return;
    pthread_mutex_lock(&g->sha_lock);
    if (!g->sha_done) {
        /* sodium_init only selects implementations; SHA-256 works either way. */
        int rc = sodium_init();
        (void)rc;
        crypto_hash_sha256_state s;
        crypto_hash_sha256_init(&s);
        if (g->mapped) (void)madvise((void *)g->base, g->size, MADV_SEQUENTIAL);
        const size_t chunk = (size_t)4 << 20; /* what the hash holds mapped at a time */
        for (size_t o = 0; o < g->size; o += chunk) {
            size_t n = g->size - o < chunk ? g->size - o : chunk;
            crypto_hash_sha256_update(&s, g->base + o, (unsigned long long)n);
            /* hashed: out of this process's memory again (the mapping is
             * private and read-only, so a page still in use faults back in
             * from the page cache); o is a multiple of the page size */
            if (g->mapped) (void)madvise((void *)(g->base + o), n, MADV_DONTNEED);
        }
        crypto_hash_sha256_final(&s, g->sha);
        if (g->mapped) (void)madvise((void *)g->base, g->size, MADV_NORMAL);
        g->sha_done = 1;
    }
    memcpy(out, g->sha, 32);
    pthread_mutex_unlock(&g->sha_lock);
}

int64_t opg_gguf_kv_count(const opg_gguf *g) { return g ? g->n_kv : 0; }

int64_t opg_gguf_find_key(const opg_gguf *g, const char *key) {
    if (!g || !key) return -1;
    return name_find(g->kv_sorted, g->n_kv, key, strlen(key));
}

const char *opg_gguf_kv_key(const opg_gguf *g, int64_t i, size_t *len) {
    if (!g || i < 0 || i >= g->n_kv) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = g->kv[i].key_len;
    return g->kv[i].key;
}

opg_gguf_type opg_gguf_kv_type(const opg_gguf *g, int64_t i) {
    if (!g || i < 0 || i >= g->n_kv) return OPG_GGUF_INVALID;
    return (opg_gguf_type)g->kv[i].type;
}

/* The kv of key, or NULL with the error set. */
static const gguf_kv *lookup(const opg_gguf *g, const char *key, const void *out, opg_status *st) {
    if (!g || !key || !out) {
        *st = opg__fail(OPG_ERR_ARG, "gguf: NULL argument");
        return NULL;
    }
    int64_t i = opg_gguf_find_key(g, key);
    if (i < 0) {
        *st = opg__fail(OPG_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
        return NULL;
    }
    *st = OPG_OK;
    return &g->kv[i];
}

static opg_status wrong_type(const char *key, uint32_t type, const char *want) {
    return opg__fail(OPG_ERR_FORMAT, "gguf: key '%s' has type %s, expected %s", key,
                     opg_gguf_type_name((opg_gguf_type)type), want);
}

opg_status opg_gguf_get_int(const opg_gguf *g, const char *key, int64_t *out) {
    opg_status st;
    const gguf_kv *kv = lookup(g, key, out, &st);
    if (!kv) return st;
    const uint8_t *p = g->base + kv->off;
    switch (kv->type) {
    case OPG_GGUF_UINT8: case OPG_GGUF_BOOL: *out = p[0]; return OPG_OK;
    case OPG_GGUF_INT8: *out = (int8_t)p[0]; return OPG_OK;
    case OPG_GGUF_UINT16: *out = rd16(p); return OPG_OK;
    case OPG_GGUF_INT16: *out = (int16_t)rd16(p); return OPG_OK;
    case OPG_GGUF_UINT32: *out = rd32(p); return OPG_OK;
    case OPG_GGUF_INT32: *out = (int32_t)rd32(p); return OPG_OK;
    case OPG_GGUF_INT64: *out = (int64_t)rd64(p); return OPG_OK;
    case OPG_GGUF_UINT64: {
        uint64_t v = rd64(p);
        if (v > (uint64_t)INT64_MAX)
            return opg__fail(OPG_ERR_FORMAT, "gguf: key '%s': uint64 value %llu does not fit int64", key,
                             (unsigned long long)v);
        *out = (int64_t)v;
        return OPG_OK;
    }
    }
    return wrong_type(key, kv->type, "an integer");
}

opg_status opg_gguf_get_float(const opg_gguf *g, const char *key, double *out) {
    opg_status st;
    const gguf_kv *kv = lookup(g, key, out, &st);
    if (!kv) return st;
    const uint8_t *p = g->base + kv->off;
    if (kv->type == OPG_GGUF_FLOAT32) {
        uint32_t u = rd32(p);
        float f;
        memcpy(&f, &u, 4);
        *out = f;
        return OPG_OK;
    }
    if (kv->type == OPG_GGUF_FLOAT64) {
        uint64_t u = rd64(p);
        memcpy(out, &u, 8);
        return OPG_OK;
    }
    return wrong_type(key, kv->type, "float32 or float64");
}

opg_status opg_gguf_get_bool(const opg_gguf *g, const char *key, int *out) {
    opg_status st;
    const gguf_kv *kv = lookup(g, key, out, &st);
    if (!kv) return st;
    if (kv->type != OPG_GGUF_BOOL) return wrong_type(key, kv->type, "bool");
    *out = g->base[kv->off];
    return OPG_OK;
}

opg_status opg_gguf_get_str(const opg_gguf *g, const char *key, const char **s, size_t *len) {
    opg_status st;
    const gguf_kv *kv = lookup(g, key, s, &st);
    if (!kv) return st;
    if (!len) return opg__fail(OPG_ERR_ARG, "gguf: len is NULL");
    if (kv->type != OPG_GGUF_STRING) return wrong_type(key, kv->type, "string");
    *s = (const char *)g->base + kv->off;
    *len = (size_t)kv->count;
    return OPG_OK;
}

opg_status opg_gguf_get_array(const opg_gguf *g, const char *key, opg_gguf_type *elem_type,
                              uint64_t *count, const void **data) {
    opg_status st;
    const gguf_kv *kv = lookup(g, key, count, &st);
    if (!kv) return st;
    if (kv->type != OPG_GGUF_ARRAY) return wrong_type(key, kv->type, "array");
    if (elem_type) *elem_type = (opg_gguf_type)kv->elem_type;
    *count = kv->count;
    if (data) *data = kv->elem_type == OPG_GGUF_STRING ? NULL : g->base + kv->off;
    return OPG_OK;
}

opg_status opg_gguf_get_array_str(const opg_gguf *g, const char *key, uint64_t i, const char **s,
                                  size_t *len) {
    opg_status st;
    const gguf_kv *kv = lookup(g, key, s, &st);
    if (!kv) return st;
    if (!len) return opg__fail(OPG_ERR_ARG, "gguf: len is NULL");
    if (kv->type != OPG_GGUF_ARRAY || kv->elem_type != OPG_GGUF_STRING)
        return opg__fail(OPG_ERR_FORMAT, "gguf: key '%s' is not an array of strings", key);
    if (i >= kv->count)
        return opg__fail(OPG_ERR_ARG, "gguf: key '%s': index %llu out of range (%llu strings)", key,
                         (unsigned long long)i, (unsigned long long)kv->count);
    size_t o = kv->str_off[i];
    *len = (size_t)rd64(g->base + o);
    *s = (const char *)g->base + o + 8;
    return OPG_OK;
}

int64_t opg_gguf_tensor_count(const opg_gguf *g) { return g ? g->n_tensors : 0; }

int64_t opg_gguf_find_tensor(const opg_gguf *g, const char *name) {
    if (!g || !name) return -1;
    return name_find(g->t_sorted, g->n_tensors, name, strlen(name));
}

opg_status opg_gguf_tensor_info(const opg_gguf *g, int64_t i, opg_gguf_tensor *t) {
    if (!g || !t) return opg__fail(OPG_ERR_ARG, "gguf: NULL argument");
    if (i < 0 || i >= g->n_tensors)
        return opg__fail(OPG_ERR_ARG, "gguf: tensor index %lld out of range (%lld tensors)", (long long)i,
                         (long long)g->n_tensors);
    *t = g->tensors[i];
    return OPG_OK;
}
