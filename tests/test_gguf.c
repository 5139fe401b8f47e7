/* test_gguf.c: the GGUF loader against fixtures written independently by the
 * PyPI gguf package (tests/data/gen_gguf_fixtures.py), and against hostile
 * inputs made here from those fixtures: truncation at every byte, every field
 * patched out of range. Every rejected input must fail cleanly (run under the
 * Asan build) with a status and a message naming the problem. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"

/* ---- helpers ------------------------------------------------------------------ */
static char *path_in(const char *dir, const char *sub, const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s%s%s", dir, sub, *sub ? "/" : "", name);
    return p;
}
static const char *fixture(const char *name) { return path_in(tu_data_dir(), "gguf", name); }

/* Whole file into an exact-size malloc (so ASan sees any read past its end). */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_error("cannot open %s: %s\n", path, strerror(errno));
        fail();
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static opg_gguf *open_ok(const char *path) {
    opg_gguf *g = NULL;
    opg_status st = opg_gguf_open(path, &g);
    if (st != OPG_OK) {
        print_error("opg_gguf_open(%s): %s: %s\n", path, opg_strerror(st), opg_last_error());
        fail();
    }
    assert_non_null(g);
    return g;
}

/* Opens a private exact-size copy of buf[0..n) and checks the status and that
 * the message contains needle. */
#define expect_fail(buf, n, want, needle) expect_fail_(buf, n, want, needle, __LINE__)
static void expect_fail_(const uint8_t *buf, size_t n, opg_status want, const char *needle, int line) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, buf, n);
    opg_gguf *g = (opg_gguf *)1;
    opg_status st = opg_gguf_open_memory(copy, n, &g);
    const char *msg = opg_last_error();
    int ok = st == want && g == NULL && msg[0] != 0 && (!needle || strstr(msg, needle));
    if (!ok) {
        print_error("line %d: expected %s with \"%s\", got %s: \"%s\"\n", line, opg_strerror(want),
                    needle ? needle : "", opg_strerror(st), msg);
        opg_gguf_close(st == OPG_OK ? g : NULL);
        free(copy);
        fail();
    }
    free(copy);
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static float half_to_float(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? INFINITY : ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* gen_gguf_fixtures.py: pattern_bytes */
static uint8_t pattern_byte(size_t j, int k) { return (uint8_t)((j * 7 + (size_t)k * 13) & 0xff); }

/* gen_gguf_fixtures.py: array_strings */
static void arr_str_expect(int i, char *out, size_t cap) {
    out[0] = 0;
    if (i % 37 == 0) return;
    char one[16];
    snprintf(one, sizeof one, "s%d", i);
    for (int r = 0; r < 1 + i % 3; r++) strncat(out, one, cap - strlen(out) - 1);
}

static int str_eq(const char *s, size_t len, const char *want) {
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ---- fixture contents (shared by v2 and v3) ------------------------------------ */
static void check_kvs(opg_gguf *g) {
    int64_t i64;
    double d;
    int b;
    const char *s;
    size_t len;
    assert_int_equal(opg_gguf_get_int(g, "test.u8", &i64), OPG_OK);  assert_int_equal(i64, 200);
    assert_int_equal(opg_gguf_get_int(g, "test.i8", &i64), OPG_OK);  assert_int_equal(i64, -100);
    assert_int_equal(opg_gguf_get_int(g, "test.u16", &i64), OPG_OK); assert_int_equal(i64, 60000);
    assert_int_equal(opg_gguf_get_int(g, "test.i16", &i64), OPG_OK); assert_int_equal(i64, -30000);
    assert_int_equal(opg_gguf_get_int(g, "test.u32", &i64), OPG_OK); assert_true(i64 == 4000000000ll);
    assert_int_equal(opg_gguf_get_int(g, "test.i32", &i64), OPG_OK); assert_true(i64 == -2000000000ll);
    assert_int_equal(opg_gguf_get_int(g, "test.u64", &i64), OPG_OK); assert_true(i64 == 123456789012ll);
    assert_int_equal(opg_gguf_get_int(g, "test.i64", &i64), OPG_OK);
    assert_true(i64 == -(INT64_C(1) << 62) - 7);
    assert_int_equal(opg_gguf_get_int(g, "test.u64_big", &i64), OPG_ERR_FORMAT);
    assert_non_null(strstr(opg_last_error(), "does not fit"));
    assert_int_equal(opg_gguf_get_int(g, "test.bool_t", &i64), OPG_OK); assert_int_equal(i64, 1);
    assert_int_equal(opg_gguf_get_int(g, "test.str", &i64), OPG_ERR_FORMAT);
    assert_non_null(strstr(opg_last_error(), "test.str"));
    assert_int_equal(opg_gguf_get_int(g, "test.f32", &i64), OPG_ERR_FORMAT);
    assert_int_equal(opg_gguf_get_int(g, "no.such.key", &i64), OPG_ERR_NOT_FOUND);
    assert_non_null(strstr(opg_last_error(), "no.such.key"));

    assert_int_equal(opg_gguf_get_float(g, "test.f32", &d), OPG_OK); assert_true(d == 0.15625);
    assert_int_equal(opg_gguf_get_float(g, "test.f64", &d), OPG_OK); assert_true(d == 2.718281828459045);
    assert_int_equal(opg_gguf_get_float(g, "test.u8", &d), OPG_ERR_FORMAT);

    assert_int_equal(opg_gguf_get_bool(g, "test.bool_t", &b), OPG_OK); assert_int_equal(b, 1);
    assert_int_equal(opg_gguf_get_bool(g, "test.bool_f", &b), OPG_OK); assert_int_equal(b, 0);
    assert_int_equal(opg_gguf_get_bool(g, "test.u8", &b), OPG_ERR_FORMAT);

    assert_int_equal(opg_gguf_get_str(g, "test.str", &s, &len), OPG_OK);
    assert_true(str_eq(s, len, "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93"));
    assert_int_equal(opg_gguf_get_str(g, "general.architecture", &s, &len), OPG_OK);
    assert_true(str_eq(s, len, "opgtest"));
    assert_int_equal(opg_gguf_get_str(g, "test.str_empty", &s, &len), OPG_OK);
    assert_int_equal(len, 0);
    assert_int_equal(opg_gguf_get_str(g, "test.str_raw", &s, &len), OPG_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(s, "\xff\xfe\0raw", 6);
    assert_int_equal(opg_gguf_get_str(g, "test.u8", &s, &len), OPG_ERR_FORMAT);

    /* numeric arrays: element type, count and every element */
    opg_gguf_type et;
    uint64_t n;
    const void *data;
    const uint8_t *p;
#define ARR(key, type, cnt)                                                          \
    do {                                                                             \
        assert_int_equal(opg_gguf_get_array(g, key, &et, &n, &data), OPG_OK);         \
        assert_int_equal(et, type);                                                  \
        assert_int_equal(n, cnt);                                                    \
        p = data;                                                                    \
    } while (0)
    ARR("test.arr_u8", OPG_GGUF_UINT8, 6);
    for (int i = 0; i < 6; i++) assert_int_equal(p[i], 250 + i);
    ARR("test.arr_i8", OPG_GGUF_INT8, 4);
    assert_int_equal((int8_t)p[0], -128); assert_int_equal((int8_t)p[3], 127);
    ARR("test.arr_u16", OPG_GGUF_UINT16, 3);
    { uint16_t v[3]; memcpy(v, p, 6); assert_int_equal(v[2], 65535); assert_int_equal(v[1], 1); }
    ARR("test.arr_i16", OPG_GGUF_INT16, 3);
    { int16_t v[3]; memcpy(v, p, 6); assert_int_equal(v[0], -32768); assert_int_equal(v[2], 32767); }
    ARR("test.arr_u32", OPG_GGUF_UINT32, 10);
    for (int i = 0; i < 10; i++) { uint32_t v; memcpy(&v, p + 4 * i, 4); assert_int_equal(v, (uint32_t)i * 1000003u); }
    ARR("test.arr_i32", OPG_GGUF_INT32, 100);
    for (int i = 0; i < 100; i++) { int32_t v; memcpy(&v, p + 4 * i, 4); assert_int_equal(v, i - 50); }
    ARR("test.arr_u64", OPG_GGUF_UINT64, 3);
    { uint64_t v[3]; memcpy(v, p, 24); assert_true(v[0] == UINT64_MAX && v[1] == 0 && v[2] == 42); }
    ARR("test.arr_i64", OPG_GGUF_INT64, 2);
    { int64_t v[2]; memcpy(v, p, 16); assert_true(v[0] == INT64_MIN && v[1] == INT64_MAX); }
    ARR("test.arr_f32", OPG_GGUF_FLOAT32, 7);
    for (int i = 0; i < 7; i++) { float v; memcpy(&v, p + 4 * i, 4); assert_true(v == i * 0.5f - 1.0f); }
    ARR("test.arr_f64", OPG_GGUF_FLOAT64, 3);
    { double v[3]; memcpy(v, p, 24); assert_true(v[0] == 1.0 / 3.0 && v[1] == 0 && signbit(v[1]) && v[2] == 1e300); }
    ARR("test.arr_bool", OPG_GGUF_BOOL, 4);
    assert_memory_equal(p, "\1\0\1\1", 4);
#undef ARR

    /* string array: O(1) element access */
    assert_int_equal(opg_gguf_get_array(g, "test.arr_str", &et, &n, &data), OPG_OK);
    assert_int_equal(et, OPG_GGUF_STRING);
    assert_int_equal(n, 300);
    assert_null(data);
    for (int i = 0; i < 300; i++) {
        char want[64];
        arr_str_expect(i, want, sizeof want);
        assert_int_equal(opg_gguf_get_array_str(g, "test.arr_str", (uint64_t)i, &s, &len), OPG_OK);
        if (!str_eq(s, len, want)) {
            print_error("arr_str[%d]: got '%.*s', want '%s'\n", i, (int)len, s, want);
            fail();
        }
    }
    assert_int_equal(opg_gguf_get_array_str(g, "test.arr_str", 300, &s, &len), OPG_ERR_ARG);
    assert_non_null(strstr(opg_last_error(), "out of range"));
    assert_int_equal(opg_gguf_get_array_str(g, "test.arr_i32", 0, &s, &len), OPG_ERR_FORMAT);
    assert_int_equal(opg_gguf_get_array_str(g, "test.str", 0, &s, &len), OPG_ERR_FORMAT);
    assert_int_equal(opg_gguf_get_array(g, "test.str", &et, &n, &data), OPG_ERR_FORMAT);
    assert_int_equal(opg_gguf_get_array(g, "nope", &et, &n, &data), OPG_ERR_NOT_FOUND);

    /* walk by index: every key is found at its own index */
    assert_int_equal(opg_gguf_kv_count(g), 30);
    for (int64_t i = 0; i < opg_gguf_kv_count(g); i++) {
        const char *k = opg_gguf_kv_key(g, i, &len);
        assert_non_null(k);
        char key[128];
        assert_true(len < sizeof key);
        memcpy(key, k, len);
        key[len] = 0;
        assert_int_equal(opg_gguf_find_key(g, key), i);
        assert_true(opg_gguf_kv_type(g, i) >= OPG_GGUF_UINT8 && opg_gguf_kv_type(g, i) <= OPG_GGUF_FLOAT64);
    }
    assert_int_equal(opg_gguf_kv_type(g, opg_gguf_find_key(g, "general.alignment")), OPG_GGUF_UINT32);
    assert_int_equal(opg_gguf_kv_type(g, opg_gguf_find_key(g, "test.arr_str")), OPG_GGUF_ARRAY);
    assert_int_equal(opg_gguf_kv_type(g, -1), OPG_GGUF_INVALID);
    assert_int_equal(opg_gguf_kv_type(g, 30), OPG_GGUF_INVALID);
    assert_null(opg_gguf_kv_key(g, 30, &len));
    assert_int_equal(len, 0);
    assert_int_equal(opg_gguf_find_key(g, "test"), -1);
    assert_int_equal(opg_gguf_find_key(g, "test.u8x"), -1);
    assert_int_equal(opg_gguf_find_key(g, ""), -1);
}

static void expect_tensor(opg_gguf *g, const char *name, opg_dtype type, int n_dims, int64_t ne0,
                          int64_t ne1, int64_t ne2, int64_t ne3, size_t size, opg_gguf_tensor *t) {
    int64_t i = opg_gguf_find_tensor(g, name);
    if (i < 0) {
        print_error("tensor %s not found\n", name);
        fail();
    }
    assert_int_equal(opg_gguf_tensor_info(g, i, t), OPG_OK);
    assert_true(str_eq(t->name, t->name_len, name));
    assert_int_equal(t->type, type);
    assert_int_equal(t->n_dims, n_dims);
    assert_int_equal(t->ne[0], ne0); assert_int_equal(t->ne[1], ne1);
    assert_int_equal(t->ne[2], ne2); assert_int_equal(t->ne[3], ne3);
    assert_int_equal(t->size, size);
    assert_int_equal(t->offset % opg_gguf_alignment(g), 0);
    assert_non_null(t->data);
}

static void check_tensors(opg_gguf *g) {
    opg_gguf_tensor t;
    assert_int_equal(opg_gguf_tensor_count(g), 8);
    assert_int_equal(opg_gguf_alignment(g), 64);
    assert_int_equal(opg_gguf_data_offset(g) % 64, 0);

    expect_tensor(g, "t.f32", OPG_F32, 2, 8, 3, 1, 1, 96, &t);
    assert_int_equal(t.offset, 0);
    for (int i = 0; i < 24; i++) {
        float v;
        memcpy(&v, (const uint8_t *)t.data + 4 * i, 4);
        assert_true(v == i * 0.25f - 2.0f);
    }
    expect_tensor(g, "t.f16", OPG_F16, 3, 4, 2, 2, 1, 32, &t);
    for (int i = 0; i < 16; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t.data + 2 * i, 2);
        assert_true(half_to_float(h) == i * 0.5f - 4.0f);
    }
    /* q8_0 quantized by the Python package: our block layout must decode it */
    expect_tensor(g, "t.q8_0", OPG_Q8_0, 2, 64, 2, 1, 1, 4 * sizeof(opg_block_q8_0), &t);
    for (int blk = 0; blk < 4; blk++) {
        opg_block_q8_0 q;
        memcpy(&q, (const uint8_t *)t.data + blk * sizeof q, sizeof q);
        float dq = half_to_float(q.d);
        for (int j = 0; j < 32; j++) {
            int i = blk * 32 + j;
            float x = sinf((float)i * 0.1f) * 3.0f;
            assert_true(fabsf(dq * q.qs[j] - x) <= dq * 0.5f + 1e-3f);
        }
    }
    struct { const char *name; opg_dtype type; int64_t ne0, ne1; size_t size; int k; } raw[] = {
        {"t.q4_K", OPG_Q4_K, 256, 2, 288, 3},
        {"t.q6_K", OPG_Q6_K, 512, 1, 420, 4},
        {"t.q5_K", (opg_dtype)13, 256, 1, 176, 5},
        {"t.iq2_xxs", (opg_dtype)16, 256, 3, 198, 6},
    };
    for (size_t r = 0; r < sizeof raw / sizeof raw[0]; r++) {
        expect_tensor(g, raw[r].name, raw[r].type, 2, raw[r].ne0, raw[r].ne1, 1, 1, raw[r].size, &t);
        for (size_t j = 0; j < t.size; j++)
            assert_int_equal(((const uint8_t *)t.data)[j], pattern_byte(j, raw[r].k));
    }
    /* q5_K and iq2_xxs: known to GGML, not computed by opg, still open */
    assert_int_equal(opg_dtype_block_elems((opg_dtype)13), 0);
    assert_string_equal(opg_gguf_ggml_type_name(13), "q5_K");
    expect_tensor(g, "t.i32", (opg_dtype)26, 4, 2, 3, 1, 2, 48, &t);
    for (int i = 0; i < 12; i++) {
        int32_t v;
        memcpy(&v, (const uint8_t *)t.data + 4 * i, 4);
        assert_int_equal(v, i * 1000 - 5000);
    }

    /* tensors in file order; extents inside the file, data at data_offset + offset */
    const char *order[] = {"t.f32", "t.f16", "t.q8_0", "t.q4_K", "t.q6_K", "t.q5_K", "t.iq2_xxs", "t.i32"};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(opg_gguf_tensor_info(g, i, &t), OPG_OK);
        assert_true(str_eq(t.name, t.name_len, order[i]));
        assert_true(opg_gguf_data_offset(g) + t.offset + t.size <= opg_gguf_file_size(g));
    }
    assert_int_equal(opg_gguf_tensor_info(g, 8, &t), OPG_ERR_ARG);
    assert_int_equal(opg_gguf_tensor_info(g, -1, &t), OPG_ERR_ARG);
    assert_int_equal(opg_gguf_find_tensor(g, "t.f3"), -1);
    assert_int_equal(opg_gguf_find_tensor(g, "t.f32x"), -1);
}

static void test_fixture(void **state) {
    const char *name = *state;
    opg_gguf *g = open_ok(fixture(name));
    assert_int_equal(opg_gguf_version(g), strstr(name, "v2") ? 2 : 3);
    check_kvs(g);
    check_tensors(g);
    opg_gguf_close(g);

    /* the same through opg_gguf_open_memory, and tensor data points into it */
    size_t n;
    uint8_t *buf = slurp(fixture(name), &n);
    assert_int_equal(opg_gguf_open_memory(buf, n, &g), OPG_OK);
    assert_int_equal(opg_gguf_file_size(g), n);
    check_kvs(g);
    check_tensors(g);
    opg_gguf_tensor t;
    assert_int_equal(opg_gguf_tensor_info(g, 0, &t), OPG_OK);
    assert_ptr_equal(t.data, buf + opg_gguf_data_offset(g) + t.offset);
    opg_gguf_close(g);
    free(buf);
}

/* ---- SHA-256 = hashlib's (SHA256SUMS, written by the generator) ----------------- */
static void test_sha256(void **state) {
    (void)state;
    FILE *f = fopen(fixture("SHA256SUMS"), "r");
    assert_non_null(f);
    char hex[65], name[256];
    int checked = 0;
    while (fscanf(f, "%64s %255s", hex, name) == 2) {
        if (strstr(name, "big_endian") || strstr(name, "nested")) continue; /* do not open */
        opg_gguf *g = open_ok(fixture(name));
        uint8_t d[32], d2[32];
        char got[65];
        opg_gguf_sha256(g, d);
        for (int i = 0; i < 32; i++) snprintf(got + 2 * i, 3, "%02x", d[i]);
        if (strcmp(got, hex) != 0) {
            print_error("%s: sha256 %s, hashlib %s\n", name, got, hex);
            fail();
        }
        opg_gguf_sha256(g, d2); /* cached */
        assert_memory_equal(d, d2, 32);
        opg_gguf_close(g);

        size_t n;
        uint8_t *buf = slurp(fixture(name), &n);
        assert_int_equal(opg_gguf_open_memory(buf, n, &g), OPG_OK);
        opg_gguf_sha256(g, d2);
        assert_memory_equal(d, d2, 32);
        opg_gguf_close(g);
        /* the caller's memory, page-aligned (as anonymous memory is): the
         * hash leaves it alone (it drops hashed pages of its own file
         * mapping only) */
        uint8_t *anon = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(anon != MAP_FAILED);
        memcpy(anon, buf, n);
        assert_int_equal(opg_gguf_open_memory(anon, n, &g), OPG_OK);
        opg_gguf_sha256(g, d2);
        assert_memory_equal(d, d2, 32);
        opg_gguf_close(g);
        assert_memory_equal(anon, buf, n);
        munmap(anon, n);
        free(buf);
        checked++;
    }
    fclose(f);
    assert_int_equal(checked, 4);
}

/* ---- every GGML type: sizes from GGML_QUANT_SIZES (stored in the file) ---------- */
static void test_all_ggml_types(void **state) {
    (void)state;
    opg_gguf *g = open_ok(fixture("all_ggml_types.gguf"));
    opg_gguf_type et;
    uint64_t n, n2, n3;
    const void *ids, *nbytes, *blck;
    assert_int_equal(opg_gguf_get_array(g, "test.type_ids", &et, &n, &ids), OPG_OK);
    assert_int_equal(opg_gguf_get_array(g, "test.type_nbytes", &et, &n2, &nbytes), OPG_OK);
    assert_int_equal(opg_gguf_get_array(g, "test.type_blck", &et, &n3, &blck), OPG_OK);
    assert_true(n == n2 && n == n3);
    assert_int_equal(opg_gguf_tensor_count(g), (int64_t)n);
    assert_true(n >= 33);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id, bl;
        uint64_t nb;
        memcpy(&id, (const uint8_t *)ids + 4 * i, 4);
        memcpy(&bl, (const uint8_t *)blck + 4 * i, 4);
        memcpy(&nb, (const uint8_t *)nbytes + 8 * i, 8);
        opg_gguf_tensor t;
        assert_int_equal(opg_gguf_tensor_info(g, (int64_t)i, &t), OPG_OK);
        size_t bb;
        int be = opg_gguf_ggml_type_block(id, &bb);
        /* tensor names are the Python enum names: Q4_K, IQ2_XXS, ... */
        if ((uint32_t)t.type != id || t.size != nb || (uint32_t)be != bl || bb * 2 != nb ||
            t.ne[0] != (int64_t)bl || t.ne[1] != 2 ||
            strlen(opg_gguf_ggml_type_name(id)) != t.name_len ||
            strncasecmp(opg_gguf_ggml_type_name(id), t.name, t.name_len) != 0) {
            print_error("type %u (%.*s): opg says %s block %d x %zu bytes, size %zu; gguf-py: "
                        "block %u, %llu bytes for 2 blocks\n",
                        id, (int)t.name_len, t.name, opg_gguf_ggml_type_name(id), be, bb, t.size, bl,
                        (unsigned long long)nb);
            fail();
        }
        for (size_t j = 0; j < t.size; j++)
            assert_int_equal(((const uint8_t *)t.data)[j], pattern_byte(j, (int)i));
    }
    /* ids ggml removed or never defined */
    uint32_t bad[] = {4, 5, 31, 32, 33, 36, 37, 38, 42, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t bb = 1;
        assert_int_equal(opg_gguf_ggml_type_block(bad[i], &bb), 0);
        assert_int_equal(bb, 0);
        assert_string_equal(opg_gguf_ggml_type_name(bad[i]), "unknown");
    }
    assert_string_equal(opg_gguf_type_name(OPG_GGUF_FLOAT64), "float64");
    assert_string_equal(opg_gguf_type_name((opg_gguf_type)13), "invalid");
    opg_gguf_close(g);
}

static void test_no_tensors(void **state) {
    (void)state;
    opg_gguf *g = open_ok(fixture("no_tensors.gguf"));
    assert_int_equal(opg_gguf_tensor_count(g), 0);
    assert_int_equal(opg_gguf_alignment(g), 32);
    const char *s;
    size_t len;
    assert_int_equal(opg_gguf_get_array_str(g, "tokenizer.ggml.tokens", 3, &s, &len), OPG_OK);
    assert_true(str_eq(s, len, "b"));
    opg_gguf_tensor t;
    assert_int_equal(opg_gguf_tensor_info(g, 0, &t), OPG_ERR_ARG);
    assert_int_equal(opg_gguf_find_tensor(g, "t"), -1);
    opg_gguf_close(g);
}

static void test_rejected_fixtures(void **state) {
    (void)state;
    size_t n;
    uint8_t *b = slurp(fixture("big_endian.gguf"), &n);
    expect_fail(b, n, OPG_ERR_UNSUPPORTED, "big-endian");
    free(b);
    b = slurp(fixture("nested_array.gguf"), &n);
    expect_fail(b, n, OPG_ERR_FORMAT, "nested arrays");
    free(b);
    /* through opg_gguf_open: the message starts with the path */
    opg_gguf *g = (opg_gguf *)1;
    assert_int_equal(opg_gguf_open(fixture("nested_array.gguf"), &g), OPG_ERR_FORMAT);
    assert_null(g);
    assert_non_null(strstr(opg_last_error(), "nested_array.gguf: "));
}

/* ---- truncation at every byte --------------------------------------------------- */
static void truncate_all(const char *name) {
    size_t n;
    uint8_t *buf = slurp(fixture(name), &n);
    opg_gguf *g;
    assert_int_equal(opg_gguf_open_memory(buf, n, &g), OPG_OK);
    size_t end = opg_gguf_data_offset(g);
    assert_true(opg_gguf_tensor_count(g) > 0);
    for (int64_t i = 0; i < opg_gguf_tensor_count(g); i++) {
        opg_gguf_tensor t;
        assert_int_equal(opg_gguf_tensor_info(g, i, &t), OPG_OK);
        size_t e = opg_gguf_data_offset(g) + t.offset + t.size;
        if (e > end) end = e;
    }
    opg_gguf_close(g);
    int fails = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        assert_non_null(cut);
        memcpy(cut, buf, len);
        g = (opg_gguf *)1;
        opg_status st = opg_gguf_open_memory(cut, len, &g);
        if (len < end) {
            if (st != OPG_ERR_FORMAT || g != NULL || !opg_last_error()[0]) {
                print_error("%s cut at %zu: %s: %s\n", name, len, opg_strerror(st), opg_last_error());
                fail();
            }
            fails++;
        } else {
            /* only the zero padding after the last tensor was cut */
            assert_int_equal(st, OPG_OK);
            opg_gguf_close(g);
        }
        free(cut);
    }
    print_message("%s: %d truncations rejected, %zu valid (trailing padding)\n", name, fails, n - end);
    assert_int_equal((size_t)fails, end);
    free(buf);
}

static void test_truncation(void **state) {
    (void)state;
    truncate_all("kv_tensors_v3.gguf");
    truncate_all("all_ggml_types.gguf");
    /* specific messages */
    size_t n;
    uint8_t *buf = slurp(fixture("kv_tensors_v3.gguf"), &n);
    expect_fail(buf, 0, OPG_ERR_FORMAT, "empty");
    expect_fail(buf, 3, OPG_ERR_FORMAT, "magic");
    expect_fail(buf, 6, OPG_ERR_FORMAT, "version");
    expect_fail(buf, 20, OPG_ERR_FORMAT, "count");
    expect_fail(buf, 30, OPG_ERR_FORMAT, "kv_count 30 at offset 16 is impossible");
    expect_fail(buf, 500, OPG_ERR_FORMAT, "end of file");
    expect_fail(buf, n - 100, OPG_ERR_FORMAT, "extends past the end");
    free(buf);
}

/* ---- hostile fields, patched into the valid v3 fixture ------------------------- */
typedef struct {
    uint8_t *orig, *buf;
    size_t n;
    opg_gguf *g; /* over orig, to locate fields */
} patcher;

static void pt_init(patcher *p) {
    p->orig = slurp(fixture("kv_tensors_v3.gguf"), &p->n);
    p->buf = malloc(p->n);
    assert_non_null(p->buf);
    assert_int_equal(opg_gguf_open_memory(p->orig, p->n, &p->g), OPG_OK);
}
static void pt_free(patcher *p) {
    opg_gguf_close(p->g);
    free(p->orig);
    free(p->buf);
}
static uint8_t *pt_reset(patcher *p) {
    memcpy(p->buf, p->orig, p->n);
    return p->buf;
}
/* File offset just after the key of key (its u32 value type). */
static size_t kv_after_key(patcher *p, const char *key) {
    int64_t i = opg_gguf_find_key(p->g, key);
    assert_true(i >= 0);
    size_t len;
    const char *k = opg_gguf_kv_key(p->g, i, &len);
    return (size_t)((const uint8_t *)k - p->orig) + len;
}
/* File offset just after the name of tensor name (its u32 n_dims). */
static size_t ti_after_name(patcher *p, const char *name, int *n_dims) {
    opg_gguf_tensor t;
    assert_int_equal(opg_gguf_tensor_info(p->g, opg_gguf_find_tensor(p->g, name), &t), OPG_OK);
    *n_dims = t.n_dims;
    return (size_t)((const uint8_t *)t.name - p->orig) + t.name_len;
}

static void test_hostile_header(void **state) {
    (void)state;
    patcher P;
    pt_init(&P);
    uint8_t *b;
    b = pt_reset(&P); b[0] = 'X';
    expect_fail(b, P.n, OPG_ERR_FORMAT, "magic");
    b = pt_reset(&P); put32(b + 4, 1);
    expect_fail(b, P.n, OPG_ERR_UNSUPPORTED, "version 1");
    b = pt_reset(&P); put32(b + 4, 4);
    expect_fail(b, P.n, OPG_ERR_UNSUPPORTED, "version 4");
    b = pt_reset(&P); put32(b + 4, 0);
    expect_fail(b, P.n, OPG_ERR_UNSUPPORTED, "version 0");
    b = pt_reset(&P); put32(b + 4, 0x03000000u);
    expect_fail(b, P.n, OPG_ERR_UNSUPPORTED, "big-endian");
    /* counts the file cannot hold */
    b = pt_reset(&P); put64(b + 8, UINT64_C(1) << 62);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "tensor_count");
    b = pt_reset(&P); put64(b + 8, UINT64_MAX);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "tensor_count");
    b = pt_reset(&P); put64(b + 16, UINT64_MAX);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "kv_count");
    b = pt_reset(&P); put64(b + 16, 1000);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "kv_count");
    /* one more tensor than there are: the parser runs into the data */
    b = pt_reset(&P); put64(b + 8, 9);
    expect_fail(b, P.n, OPG_ERR_FORMAT, NULL);
    /* fewer kvs than there are: the rest reads as tensor infos */
    b = pt_reset(&P); put64(b + 16, 29);
    expect_fail(b, P.n, OPG_ERR_FORMAT, NULL);
    pt_free(&P);

    /* the caps: counts the bytes could hold but opg refuses (OPG_ERR_LIMIT) */
    size_t big = 24 + 14 * ((size_t)(1u << 20) + 1);
    uint8_t *z = calloc(1, big);
    assert_non_null(z);
    memcpy(z, "GGUF", 4);
    put32(z + 4, 3);
    put64(z + 16, (1u << 20) + 1);
    expect_fail(z, big, OPG_ERR_LIMIT, "kv_count");
    free(z);
    big = 24 + 33 * ((size_t)(1u << 20) + 1);
    z = calloc(1, big);
    assert_non_null(z);
    memcpy(z, "GGUF", 4);
    put32(z + 4, 3);
    put64(z + 8, (1u << 20) + 1);
    expect_fail(z, big, OPG_ERR_LIMIT, "tensor_count");
    free(z);
}

static void test_hostile_kv(void **state) {
    (void)state;
    patcher P;
    pt_init(&P);
    uint8_t *b;
    size_t o;
    /* string lengths: key of the first pair (offset 24) */
    b = pt_reset(&P); put64(b + 24, P.n);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "string length");
    b = pt_reset(&P); put64(b + 24, UINT64_C(1) << 63);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "string length");
    b = pt_reset(&P); put64(b + 24, UINT64_MAX);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "offset 24");
    /* string value */
    o = kv_after_key(&P, "test.str");
    b = pt_reset(&P); put64(b + o + 4, UINT64_C(1) << 63);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "string length");
    /* value types */
    o = kv_after_key(&P, "test.u8");
    b = pt_reset(&P); put32(b + o, 13);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "unknown value type 13");
    b = pt_reset(&P); put32(b + o, UINT32_MAX);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "unknown value type");
    /* arrays: element type, nesting, count */
    o = kv_after_key(&P, "test.arr_i32");
    b = pt_reset(&P); put32(b + o + 4, 13);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "unknown array element type 13");
    b = pt_reset(&P); put32(b + o + 4, OPG_GGUF_ARRAY);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "nested arrays");
    b = pt_reset(&P); put64(b + o + 8, UINT64_C(1) << 62);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "exceeds");
    b = pt_reset(&P); put64(b + o + 8, UINT64_MAX);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "test.arr_i32");
    o = kv_after_key(&P, "test.arr_str");
    b = pt_reset(&P); put64(b + o + 8, UINT64_C(1) << 61);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "strings");
    b = pt_reset(&P); put64(b + o + 8, 301); /* one string too many: runs into the tensor infos */
    expect_fail(b, P.n, OPG_ERR_FORMAT, NULL);
    /* an element's length beyond the file */
    b = pt_reset(&P); put64(b + o + 16, P.n);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "element 0");
    /* bools must be 0 or 1 */
    o = kv_after_key(&P, "test.bool_f");
    b = pt_reset(&P); b[o + 4] = 2;
    expect_fail(b, P.n, OPG_ERR_FORMAT, "bool value 2");
    o = kv_after_key(&P, "test.arr_bool");
    b = pt_reset(&P); b[o + 16 + 3] = 0xff;
    expect_fail(b, P.n, OPG_ERR_FORMAT, "bool value 255");
    /* duplicate key: "test.u8" renamed "test.i8" */
    o = kv_after_key(&P, "test.u8");
    b = pt_reset(&P); b[o - 2] = 'i';
    expect_fail(b, P.n, OPG_ERR_FORMAT, "duplicate metadata key 'test.i8'");
    /* NUL inside a key */
    b = pt_reset(&P); b[o - 3] = 0;
    expect_fail(b, P.n, OPG_ERR_FORMAT, "NUL byte");
    /* general.alignment: 0, 3, 4, 1, 2^31 (valid power of two, offsets then misaligned), wrong type */
    o = kv_after_key(&P, "general.alignment");
    b = pt_reset(&P); put32(b + o + 4, 0);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "alignment = 0");
    b = pt_reset(&P); put32(b + o + 4, 3);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "not a power of two");
    b = pt_reset(&P); put32(b + o + 4, 4); /* divides every offset, but under the spec's 8 */
    expect_fail(b, P.n, OPG_ERR_FORMAT, "below 8");
    b = pt_reset(&P); put32(b + o + 4, 1);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "below 8");
    b = pt_reset(&P); put32(b + o + 4, 128);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "alignment 128");
    b = pt_reset(&P); put32(b + o + 4, 1u << 31);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "padding");
    b = pt_reset(&P); put32(b + o, OPG_GGUF_INT32);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "general.alignment has type int32");
    /* alignment 32 still divides every offset (all multiples of 64): opens */
    b = pt_reset(&P); put32(b + o + 4, 32);
    {
        opg_gguf *g;
        assert_int_equal(opg_gguf_open_memory(b, P.n, &g), OPG_OK);
        assert_int_equal(opg_gguf_alignment(g), 32);
        opg_gguf_close(g);
    }
    pt_free(&P);
}

static void test_hostile_tensors(void **state) {
    (void)state;
    patcher P;
    pt_init(&P);
    uint8_t *b;
    int nd;
    size_t o = ti_after_name(&P, "t.f32", &nd); /* n_dims; ne at o+4; type, offset after */
    assert_int_equal(nd, 2);
    size_t o_type = o + 4 + 8 * 2, o_off = o_type + 4;
    b = pt_reset(&P); put32(b + o, 0);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "n_dims 0");
    b = pt_reset(&P); put32(b + o, 5);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "n_dims 5");
    b = pt_reset(&P); put64(b + o + 4, 0);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "ne[0] = 0");
    b = pt_reset(&P); put64(b + o + 12, UINT64_C(1) << 63);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "ne[1]");
    b = pt_reset(&P); put64(b + o + 4, UINT64_C(1) << 40); put64(b + o + 12, UINT64_C(1) << 40);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "element count overflows");
    b = pt_reset(&P); put64(b + o + 4, UINT64_C(1) << 61); /* elements fit int64, bytes do not */
    expect_fail(b, P.n, OPG_ERR_FORMAT, "byte size overflows");
    b = pt_reset(&P); put64(b + o + 12, 1000);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "extends past the end");
    b = pt_reset(&P); put64(b + o + 4, 16); /* 16x3 f32 = 192 bytes: runs into t.f16 */
    expect_fail(b, P.n, OPG_ERR_FORMAT, "overlap");
    /* types */
    b = pt_reset(&P); put32(b + o_type, 4);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "unknown ggml type 4");
    b = pt_reset(&P); put32(b + o_type, 42);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "unknown ggml type 42");
    b = pt_reset(&P); put32(b + o_type, UINT32_MAX);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "unknown ggml type");
    b = pt_reset(&P); put32(b + o_type, OPG_Q8_0); /* ne[0] = 8 is not a multiple of 32 */
    expect_fail(b, P.n, OPG_ERR_FORMAT, "multiple of the q8_0 block");
    /* offsets */
    b = pt_reset(&P); put64(b + o_off, 1);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "not a multiple of the alignment 64");
    b = pt_reset(&P); put64(b + o_off, UINT64_C(1) << 63);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "extends past the end");
    b = pt_reset(&P); put64(b + o_off, UINT64_MAX - 63);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "extends past the end");
    b = pt_reset(&P); put64(b + o_off, P.n - opg_gguf_data_offset(P.g)); /* starts at EOF */
    expect_fail(b, P.n, OPG_ERR_FORMAT, "extends past the end");
    /* the last tensor one alignment unit further: past EOF */
    size_t ol = ti_after_name(&P, "t.i32", &nd);
    size_t ol_off = ol + 4 + 8 * (size_t)nd + 4;
    b = pt_reset(&P); put64(b + ol_off, get64(P.orig + ol_off) + 64);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "t.i32");
    /* t.f16 moved onto t.f32: overlap */
    size_t o2 = ti_after_name(&P, "t.f16", &nd);
    b = pt_reset(&P); put64(b + o2 + 4 + 8 * (size_t)nd + 4, 0);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "overlap");
    /* swapping two tensors' offsets (same size class) is fine: any order is allowed */
    /* duplicate name: "t.f16" renamed "t.f32" */
    b = pt_reset(&P); b[o2 - 2] = '3'; b[o2 - 1] = '2';
    expect_fail(b, P.n, OPG_ERR_FORMAT, "duplicate tensor name 't.f32'");
    b = pt_reset(&P); b[o2 - 1] = 0;
    expect_fail(b, P.n, OPG_ERR_FORMAT, "NUL byte");
    /* name length beyond the file */
    b = pt_reset(&P); put64(b + o - 5 - 8, UINT64_C(1) << 63);
    expect_fail(b, P.n, OPG_ERR_FORMAT, "tensor name: string length");
    pt_free(&P);
}

/* ---- hand-built minimal files ---------------------------------------------------- */
typedef struct { uint8_t b[512]; size_t n; } builder;
static void bu32(builder *w, uint32_t v) { put32(w->b + w->n, v); w->n += 4; }
static void bu64(builder *w, uint64_t v) { put64(w->b + w->n, v); w->n += 8; }
static void bstr(builder *w, const char *s, size_t len) { bu64(w, len); memcpy(w->b + w->n, s, len); w->n += len; }
static void bhdr(builder *w, uint64_t n_tensors, uint64_t n_kv) {
    w->n = 0;
    memcpy(w->b, "GGUF", 4);
    w->n = 4;
    bu32(w, 3);
    bu64(w, n_tensors);
    bu64(w, n_kv);
}

static void test_minimal_files(void **state) {
    (void)state;
    builder w;
    opg_gguf *g;
    /* header only: valid, nothing inside */
    bhdr(&w, 0, 0);
    uint8_t *exact = malloc(w.n);
    memcpy(exact, w.b, w.n);
    assert_int_equal(opg_gguf_open_memory(exact, w.n, &g), OPG_OK);
    assert_int_equal(opg_gguf_kv_count(g), 0);
    assert_int_equal(opg_gguf_tensor_count(g), 0);
    assert_int_equal(opg_gguf_find_key(g, "a"), -1);
    int64_t v;
    assert_int_equal(opg_gguf_get_int(g, "a", &v), OPG_ERR_NOT_FOUND);
    assert_int_equal(opg_gguf_data_offset(g), 24);
    opg_gguf_close(g);
    free(exact);
    /* empty key */
    bhdr(&w, 0, 1);
    bstr(&w, "", 0); bu32(&w, OPG_GGUF_UINT8); w.b[w.n++] = 1;
    w.b[w.n++] = 0; /* the smallest valid pair is 14 bytes */
    expect_fail(w.b, w.n, OPG_ERR_FORMAT, "metadata key 0 at offset 24 is empty");
    /* empty array: valid */
    bhdr(&w, 0, 1);
    bstr(&w, "a", 1); bu32(&w, OPG_GGUF_ARRAY); bu32(&w, OPG_GGUF_STRING); bu64(&w, 0);
    assert_int_equal(opg_gguf_open_memory(w.b, w.n, &g), OPG_OK);
    {
        uint64_t n;
        const char *s;
        size_t len;
        assert_int_equal(opg_gguf_get_array(g, "a", NULL, &n, NULL), OPG_OK);
        assert_int_equal(n, 0);
        assert_int_equal(opg_gguf_get_array_str(g, "a", 0, &s, &len), OPG_ERR_ARG);
    }
    opg_gguf_close(g);
    /* one f32 tensor of 8 elements, data right after the 32-aligned header */
    bhdr(&w, 1, 0);
    bstr(&w, "t", 1); bu32(&w, 1); bu64(&w, 8); bu32(&w, OPG_F32); bu64(&w, 0);
    size_t hdr = w.n; /* 24 + 9 + 4 + 8 + 4 + 8 = 57 -> data at 64 */
    assert_int_equal(hdr, 57);
    memset(w.b + w.n, 0, 64 + 32 - w.n);
    w.n = 64 + 32;
    assert_int_equal(opg_gguf_open_memory(w.b, w.n, &g), OPG_OK);
    assert_int_equal(opg_gguf_data_offset(g), 64);
    opg_gguf_close(g);
    expect_fail(w.b, 60, OPG_ERR_FORMAT, "padding");
    expect_fail(w.b, 64, OPG_ERR_FORMAT, "extends past the end");
    expect_fail(w.b, 64 + 31, OPG_ERR_FORMAT, "extends past the end");
    /* empty tensor name */
    bhdr(&w, 1, 0);
    bstr(&w, "", 0); bu32(&w, 1); bu64(&w, 8); bu32(&w, OPG_F32); bu64(&w, 0);
    memset(w.b + w.n, 0, 128 - w.n);
    w.n = 128;
    expect_fail(w.b, w.n, OPG_ERR_FORMAT, "tensor name 0 at offset 24 is empty");
    /* the key/value count checks account for the smallest pair: 14 bytes */
    bhdr(&w, 0, 2);
    bstr(&w, "a", 1); bu32(&w, OPG_GGUF_UINT8); w.b[w.n++] = 1;
    assert_int_equal(w.n, 38);
    expect_fail(w.b, w.n, OPG_ERR_FORMAT, "kv_count 2 at offset 16 is impossible");
    memset(w.b + w.n, 0, 14);
    w.n += 14; /* a second key of length 0 */
    expect_fail(w.b, w.n, OPG_ERR_FORMAT, "metadata key 1 at offset 38 is empty");
}

/* ---- open(): paths, errno, directories, empty files --------------------------- */
static void test_open_errors(void **state) {
    (void)state;
    opg_gguf *g = (opg_gguf *)1;
    assert_int_equal(opg_gguf_open("/nonexistent/dir/model.gguf", &g), OPG_ERR_IO);
    assert_null(g);
    assert_non_null(strstr(opg_last_error(), "/nonexistent/dir/model.gguf"));
    assert_non_null(strstr(opg_last_error(), strerror(ENOENT)));
    assert_int_equal(opg_gguf_open(tu_data_dir(), &g), OPG_ERR_IO);
    assert_non_null(strstr(opg_last_error(), "directory"));
    assert_int_equal(opg_gguf_open("/dev/null", &g), OPG_ERR_IO);
    assert_non_null(strstr(opg_last_error(), "regular"));
    /* a FIFO is refused at once, not waited on for a writer */
    char fifo[] = "/tmp/opg_gguf_fifo_XXXXXX";
    int tmp = mkstemp(fifo);
    assert_true(tmp >= 0);
    close(tmp);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(opg_gguf_open(fifo, &g), OPG_ERR_IO);
    assert_non_null(strstr(opg_last_error(), "regular"));
    unlink(fifo);
    assert_int_equal(opg_gguf_open(NULL, &g), OPG_ERR_ARG);
    assert_int_equal(opg_gguf_open(fixture("no_tensors.gguf"), NULL), OPG_ERR_ARG);
    assert_int_equal(opg_gguf_open_memory(NULL, 10, &g), OPG_ERR_ARG);
    assert_int_equal(opg_gguf_open_memory(NULL, 0, &g), OPG_ERR_FORMAT);
    opg_gguf_close(NULL);

    char tmpl[] = "/tmp/opg_test_gguf_XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(opg_gguf_open(tmpl, &g), OPG_ERR_FORMAT);
    assert_non_null(strstr(opg_last_error(), "empty file"));
    assert_non_null(strstr(opg_last_error(), tmpl));
    /* a truncated file: the message names the path and the problem */
    size_t n;
    uint8_t *buf = slurp(fixture("kv_tensors_v3.gguf"), &n);
    assert_int_equal(write(fd, buf, 1000), 1000);
    close(fd);
    assert_int_equal(opg_gguf_open(tmpl, &g), OPG_ERR_FORMAT);
    print_message("%s\n", opg_last_error());
    assert_true(strncmp(opg_last_error(), tmpl, strlen(tmpl)) == 0);
    assert_non_null(strstr(opg_last_error(), "exceeds"));
    unlink(tmpl);
    free(buf);
}

/* ---- real vocabulary files from ../shared ------------------------------------ */
static void test_shared_vocab(void **state) {
    (void)state;
    const char *names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"};
    for (int f = 0; f < 2; f++) {
        const char *path = path_in(tu_shared_dir(), "testdata/tokenizer", names[f]);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            print_message("skipped: ../shared not present (%s)\n", path);
            skip();
        }
        opg_gguf *g = open_ok(path);
        opg_gguf_type et;
        uint64_t n;
        assert_int_equal(opg_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n, NULL), OPG_OK);
        assert_int_equal(et, OPG_GGUF_STRING);
        assert_true(n > 1000);
        const char *s;
        size_t len;
        size_t total = 0;
        for (uint64_t i = 0; i < n; i++) {
            assert_int_equal(opg_gguf_get_array_str(g, "tokenizer.ggml.tokens", i, &s, &len), OPG_OK);
            total += len;
        }
        const char *model;
        size_t mlen;
        assert_int_equal(opg_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen), OPG_OK);
        uint8_t d[32];
        opg_gguf_sha256(g, d);
        print_message("%s: v%u, %lld kvs, %lld tensors, %llu tokens (%zu bytes), model %.*s, "
                      "sha256 %02x%02x%02x%02x...\n",
                      names[f], opg_gguf_version(g), (long long)opg_gguf_kv_count(g),
                      (long long)opg_gguf_tensor_count(g), (unsigned long long)n, total, (int)mlen,
                      model, d[0], d[1], d[2], d[3]);
        opg_gguf_close(g);
    }
}

int main(void) {
    static const char *v3 = "kv_tensors_v3.gguf", *v2 = "kv_tensors_v2.gguf";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_fixture, (void *)v3),
        cmocka_unit_test_prestate(test_fixture, (void *)v2),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_all_ggml_types),
        cmocka_unit_test(test_no_tensors),
        cmocka_unit_test(test_rejected_fixtures),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_hostile_header),
        cmocka_unit_test(test_hostile_kv),
        cmocka_unit_test(test_hostile_tensors),
        cmocka_unit_test(test_minimal_files),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_shared_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
