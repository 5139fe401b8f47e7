/* test_xxh3.c: kernels/opg_xxh3.h (the XXH3-64 port the GPU fingerprint runs)
 * against libxxhash's XXH3_64bits, on the CPU: every length 0..5000, random
 * lengths up to 100k, every alignment, the boundaries of each size class,
 * and the trace fingerprint of docs/determinism.md section 12 rebuilt from
 * opg_xxh3_64_f32 (every NaN read as 0x7fc00000) equal to
 * opg_trace_fingerprint, also over NaNs of any sign and payload. */
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "opg_xxh3.h"
#include "trace.h"

#define BIG (100 * 1000 + 64)

static uint8_t *random_bytes(tu_rng *r, size_t n) {
    uint8_t *b = tu_alloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(tu_u64(r) >> 56);
    return b;
}

static void check_one(const uint8_t *p, size_t len) {
    uint64_t want = XXH3_64bits(p, len);
    uint64_t got = opg_xxh3_64(p, len);
    if (got != want) {
        print_error("len %zu: opg_xxh3_64 = %016" PRIx64 ", XXH3_64bits = %016" PRIx64 "\n",
                    len, got, want);
        fail();
    }
}

/* A known answer independent of the installed library: XXH3_64bits of the
 * empty input (xxhash's published value). */
static void test_known_answers(void **state) {
    (void)state;
    assert_true(opg_xxh3_64(NULL, 0) == 0x2D06800538D394C2ull);
    assert_true(opg_xxh3_64("", 0) == XXH3_64bits("", 0));
}

static void test_every_length(void **state) {
    (void)state;
    tu_rng r = {1};
    uint8_t *b = random_bytes(&r, 5001);
    for (size_t len = 0; len <= 5000; len++) check_one(b, len);
    /* The same lengths over data that ends exactly at the buffer's end, so a
     * read past the input (len-8, len-16, len-64 offsets) would show up in
     * ASan builds. */
    for (size_t len = 0; len <= 5000; len++) check_one(b + 5001 - len, len);
    tu_free(b);
}

static void test_alignments(void **state) {
    (void)state;
    tu_rng r = {2};
    uint8_t *b = random_bytes(&r, 8192);
    static const size_t lens[] = {0,   1,   3,   4,   8,   9,    16,   17,   128,  129,
                                  240, 241, 255, 256, 1023, 1024, 1025, 4095, 4096, 4097};
    for (size_t off = 0; off < 8; off++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) check_one(b + off, lens[i]);
    tu_free(b);
}

static void test_random_lengths(void **state) {
    (void)state;
    tu_rng r = {3};
    uint8_t *b = random_bytes(&r, BIG);
    for (int it = 0; it < 2000; it++) {
        size_t len = (size_t)(tu_u64(&r) % 100001);
        size_t off = (size_t)(tu_u64(&r) % 64);
        check_one(b + off, len);
    }
    /* Block boundaries of the long path (1024-byte blocks, 64-byte stripes). */
    for (size_t k = 1; k <= 97; k++)
        for (int d = -65; d <= 65; d++) {
            size_t len = k * 1024 + (size_t)(int64_t)d;
            if (len <= BIG) check_one(b, len);
        }
    tu_free(b);
}

/* Patterns where a wrong carry or shift in the 128-bit multiply would show:
 * all-ones and all-zero bytes, single set bytes. */
static void test_patterns(void **state) {
    (void)state;
    uint8_t *b = tu_alloc(4096);
    for (int v = 0; v < 256; v += 255) {
        memset(b, v, 4096);
        for (size_t len = 0; len <= 4096; len += 1) check_one(b, len);
    }
    memset(b, 0, 4096);
    for (size_t pos = 0; pos < 300; pos++) {
        b[pos] = 0x80;
        check_one(b, 300);
        check_one(b, 4096);
        b[pos] = 0;
    }
    tu_free(b);
}

/* n random f32 words: finite values, and about 1 in 8 a NaN of random sign
 * and payload (quiet or signalling), 1 in 16 an infinity. */
static float *nan_floats(tu_rng *r, size_t n) {
    float *x = tu_alloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) {
        uint64_t u = tu_u64(r);
        uint32_t w = (uint32_t)(u >> 32);
        switch (u & 15) {
        case 0: case 1: w = (w & 0x807fffffu) | 0x7f800000u; if (!(w & 0x7fffffu)) w |= 1; break; /* NaN */
        case 2: w = (w & 0x80000000u) | 0x7f800000u; break;                                   /* +-inf */
        default: break;
        }
        memcpy(x + i, &w, 4);
    }
    return x;
}

/* opg_xxh3_64_f32 = XXH3_64bits of the values with every NaN made
 * 0x7fc00000, on every length 0..1100 values and long ones; = opg_xxh3_64
 * where there is no NaN. */
static void test_f32_canonical_nan(void **state) {
    (void)state;
    tu_rng r = {5};
    enum { MAXN = 26000 };
    float *x = nan_floats(&r, MAXN);
    uint32_t *canon = tu_alloc(MAXN * 4);
    for (size_t i = 0; i < MAXN; i++) {
        memcpy(canon + i, x + i, 4);
        if ((canon[i] & 0x7fffffffu) > 0x7f800000u) canon[i] = 0x7fc00000u;
    }
    static const size_t longer[] = {1023, 1024, 1025, 4096, 25000, MAXN};
    for (size_t k = 0; k <= 1100 + sizeof longer / sizeof longer[0]; k++) {
        size_t n = k <= 1100 ? k : longer[k - 1101];
        for (size_t off = 0; off < 2 && off + n <= MAXN; off++) {
            uint64_t want = XXH3_64bits(canon + off, n * 4), got = opg_xxh3_64_f32(x + off, n);
            if (got != want) {
                print_error("%zu values at %zu: opg_xxh3_64_f32 = %016" PRIx64 ", XXH3 of the canonical = %016" PRIx64
                            "\n",
                            n, off, got, want);
                fail();
            }
        }
    }
    /* one NaN changes nothing but its own value: any payload, either sign */
    assert_true(opg_xxh3_64_f32((const float *)canon, 300) == XXH3_64bits(canon, 1200));
    tu_rng rf = {6};
    float *f = tu_alloc(300 * 4);
    for (int i = 0; i < 300; i++) f[i] = tu_uniform(&rf, -1.0f, 1.0f);
    assert_true(opg_xxh3_64_f32(f, 300) == opg_xxh3_64(f, 1200));
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffffffffu, 0x7fc0dead};
    uint64_t h0 = 0;
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        memcpy(f + 137, &nans[i], 4);
        uint64_t h = opg_xxh3_64_f32(f, 300);
        if (i == 0) h0 = h;
        assert_true(h == h0);
    }
    f[137] = 1.0f;
    assert_true(opg_xxh3_64_f32(f, 300) != h0);
    tu_free(f);
    tu_free(canon);
    tu_free(x);
}

/* docs/determinism.md section 12, written with opg_xxh3_64_f32 the way the
 * GPU kernel computes it: leaf hashes of 1024 floats (NaN as 0x7fc00000),
 * then the hash of their little-endian bytes. */
static uint64_t fingerprint_xxh3(const float *x, int64_t n) {
    if (n <= 0) return opg_xxh3_64(NULL, 0);
    int64_t n_leaves = (n + 1023) / 1024;
    uint8_t *leaves = tu_alloc((size_t)n_leaves * 8);
    for (int64_t i = 0; i < n_leaves; i++) {
        int64_t len = n - i * 1024 < 1024 ? n - i * 1024 : 1024;
        uint64_t h = opg_xxh3_64_f32(x + i * 1024, (size_t)len);
        for (int k = 0; k < 8; k++) leaves[8 * i + k] = (uint8_t)(h >> (8 * k));
    }
    uint64_t fp = opg_xxh3_64(leaves, (size_t)n_leaves * 8);
    tu_free(leaves);
    return fp;
}

static void check_fingerprints(const float *x) {
    const int64_t ns[] = {0, 1, 2, 255, 1023, 1024, 1025, 2048, 4097, 49152, 65536, 70001, 152064};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        uint64_t want = opg_trace_fingerprint(x, ns[i]);
        uint64_t got = fingerprint_xxh3(x, ns[i]);
        if (got != want) {
            print_error("n %" PRId64 ": %016" PRIx64 " vs opg_trace_fingerprint %016" PRIx64 "\n",
                        ns[i], got, want);
            fail();
        }
    }
}

static void test_fingerprint(void **state) {
    (void)state;
    assert_int_equal(OPG_TRACE_LEAF_FLOATS, 1024);
    tu_rng r = {4};
    float *x = tu_alloc(152064 * sizeof(float));
    tu_fill_wild(&r, x, 152064);
    check_fingerprints(x);
    tu_free(x);
    x = nan_floats(&r, 152064); /* NaNs of any sign and payload, infinities */
    check_fingerprints(x);
    tu_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_every_length),
        cmocka_unit_test(test_alignments),
        cmocka_unit_test(test_random_lengths),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_f32_canonical_nan),
        cmocka_unit_test(test_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
