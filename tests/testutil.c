/* testutil.c: see testutil.h. */
#include "testutil.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "opg_math.h"

uint64_t tu_u64(tu_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float tu_uniform(tu_rng *r, float lo, float hi) {
    float u = (float)(tu_u64(r) >> 40) * 0x1p-24f;
    return lo + (hi - lo) * u;
}

int tu_int(tu_rng *r, int lo, int hi) {
    return lo + (int)(tu_u64(r) % (uint64_t)(hi - lo + 1));
}

void tu_fill(tu_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = tu_uniform(r, lo, hi);
}

void tu_fill_wild(tu_rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t u = tu_u64(r);
        switch (u & 15) {
        case 0: x[i] = 0.0f; break;
        case 1: x[i] = -0.0f; break;
        default: {
            float m = tu_uniform(r, 0.5f, 1.0f);
            int e = (int)((u >> 8) % 24) - 12;
            x[i] = ldexpf((u >> 4) & 1 ? -m : m, e);
        }
        }
    }
}

int tu_keep_going;
static int g_mismatches;

int tu_select_tests(const struct CMUnitTest *tests, size_t n) {
    const char *list = getenv("OPG_TEST_LIST"), *only = getenv("OPG_TEST_ONLY");
    if (list && *list && strcmp(list, "0") != 0) {
        for (size_t i = 0; i < n; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    if (!only || !*only) return -1;
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) hits += fnmatch(only, tests[i].name, 0) == 0;
    if (!hits) {
        fprintf(stderr, "OPG_TEST_ONLY=%s names no test of this binary (OPG_TEST_LIST=1 lists them)\n", only);
        return 1;
    }
    cmocka_set_test_filter(only);
    return -1;
}

void tu_mismatch(void) {
    if (!tu_keep_going) fail();
    g_mismatches++;
}

int tu_check_mismatches(void **state) {
    (void)state;
    int n = g_mismatches;
    g_mismatches = 0;
    if (n) print_error("%d case(s) above differ\n", n);
    return n ? -1 : 0;
}

/* nan_eq: any NaN equals any NaN */
static void compare_f32(const float *a, const float *b, size_t n, int nan_eq, const char *what, const char *file,
                        int line) {
    size_t first = n, last = 0, count = 0;
    uint64_t max_ulp = 0;
    for (size_t i = 0; i < n; i++) {
        if (opg_f32_bits(a[i]) == opg_f32_bits(b[i]) || (nan_eq && isnan(a[i]) && isnan(b[i]))) continue;
        if (first == n) first = i;
        last = i;
        count++;
        uint64_t u = isnan(a[i]) || isnan(b[i]) ? UINT64_MAX : tu_ulp_f32(a[i], b[i]);
        if (u > max_ulp) max_ulp = u;
    }
    if (count) {
        char far[32] = "a NaN";
        if (max_ulp != UINT64_MAX) snprintf(far, sizeof far, "%llu ulp", (unsigned long long)max_ulp);
        print_error("%s:%d: %s: %zu of %zu values differ in bits (first [%zu], last [%zu], most %s); "
                    "first: %.9g (0x%08x) vs %.9g (0x%08x)\n",
                    file, line, what, count, n, first, last, far, (double)a[first],
                    opg_f32_bits(a[first]), (double)b[first], opg_f32_bits(b[first]));
        tu_mismatch();
    }
}

void tu_assert_bits_(const float *a, const float *b, size_t n, const char *what, const char *file, int line) {
    compare_f32(a, b, n, 0, what, file, line);
}

void tu_assert_bits_nan_(const float *a, const float *b, size_t n, const char *what, const char *file, int line) {
    compare_f32(a, b, n, 1, what, file, line);
}

void tu_assert_bytes_(const void *a, const void *b, size_t n, const char *what,
                      const char *file, int line) {
    const unsigned char *x = a, *y = b;
    size_t first = n, last = 0, count = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            if (first == n) first = i;
            last = i;
            count++;
        }
    }
    if (count) {
        print_error("%s:%d: %s: %zu of %zu bytes differ (first [%zu]: 0x%02x vs 0x%02x, last [%zu])\n", file,
                    line, what, count, n, first, x[first], y[first], last);
        tu_mismatch();
    }
}

static int64_t ordered(float f) {
    int32_t i = (int32_t)opg_f32_bits(f);
    return i < 0 ? (int64_t)INT32_MIN - i : i;
}

uint64_t tu_ulp_f32(float a, float b) {
    if (a == b) return 0;
    int64_t d = ordered(a) - ordered(b);
    return (uint64_t)(d < 0 ? -d : d);
}

double tu_ulp_vs_f64(float a, double ref) {
    if ((double)a == ref) return 0.0;
    double r = fabs(ref);
    int e;
    frexp(r, &e);               /* r = m * 2^e, m in [0.5, 1) */
    int ulp_e = e - 24;
    if (ulp_e < -149) ulp_e = -149; /* subnormal spacing */
    return fabs((double)a - ref) / ldexp(1.0, ulp_e);
}

void *tu_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) {
        print_error("out of memory (%zu bytes)\n", bytes);
        fail();
    }
    memset(p, 0, bytes);
    return p;
}

void tu_free(void *p) { free(p); }

const char *tu_data_dir(void) { return OPG_TEST_DATA_DIR; }
const char *tu_shared_dir(void) { return OPG_SHARED_DIR; }

void tu_gguf_put(tu_gguf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
void tu_gguf_u32(tu_gguf *b, uint32_t v) { tu_gguf_put(b, &v, 4); }
void tu_gguf_u64(tu_gguf *b, uint64_t v) { tu_gguf_put(b, &v, 8); }
void tu_gguf_str(tu_gguf *b, const char *s) {
    tu_gguf_u64(b, strlen(s));
    tu_gguf_put(b, s, strlen(s));
}
void tu_gguf_begin(tu_gguf *b) {
    memset(b, 0, sizeof *b);
    tu_gguf_put(b, "GGUF", 4);
    tu_gguf_u32(b, 3);
    tu_gguf_u64(b, 0); /* tensors */
    tu_gguf_u64(b, 0); /* key/value count, patched by tu_gguf_end */
}
void tu_gguf_end(tu_gguf *b) { memcpy(b->p + 16, &b->n_kv, 8); }
void tu_gguf_key(tu_gguf *b, const char *key, uint32_t type) {
    tu_gguf_str(b, key);
    tu_gguf_u32(b, type);
    b->n_kv++;
}
void tu_gguf_kv_str(tu_gguf *b, const char *key, const char *v) {
    tu_gguf_key(b, key, OPG_GGUF_STRING);
    tu_gguf_str(b, v);
}
void tu_gguf_kv_u32(tu_gguf *b, const char *key, uint32_t v) {
    tu_gguf_key(b, key, OPG_GGUF_UINT32);
    tu_gguf_u32(b, v);
}
void tu_gguf_kv_bool(tu_gguf *b, const char *key, int v) {
    tu_gguf_key(b, key, OPG_GGUF_BOOL);
    uint8_t c = (uint8_t)v;
    tu_gguf_put(b, &c, 1);
}
void tu_gguf_kv_strs(tu_gguf *b, const char *key, const char *const *v, size_t n) {
    tu_gguf_key(b, key, OPG_GGUF_ARRAY);
    tu_gguf_u32(b, OPG_GGUF_STRING);
    tu_gguf_u64(b, n);
    for (size_t i = 0; i < n; i++) tu_gguf_str(b, v[i]);
}
void tu_gguf_kv_i32s(tu_gguf *b, const char *key, uint32_t type, const int32_t *v, size_t n) {
    tu_gguf_key(b, key, OPG_GGUF_ARRAY);
    tu_gguf_u32(b, type);
    tu_gguf_u64(b, n);
    tu_gguf_put(b, v, n * 4);
}
