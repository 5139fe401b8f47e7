/* test_embed.c: embedding lookup (docs/determinism.md section 10): every
 * dtype's row equals opg_dequantize_row_ref of the table row (and the exact
 * f32 for f32/f16/bf16, d*q for Q8_0); out-of-range tokens and unsupported
 * shapes are errors that leave the output untouched from that token on. */
#include "testutil.h"

#include <string.h>

#include "dtype.h"
#include "embed.h"
#include "opg_math.h"
#include "quant.h"

/* A table of n_vocab random rows of dtype t: random bytes, with every f16
 * scale field replaced by a finite value so rows are ordinary numbers. */
static void *make_table(tu_rng *r, opg_dtype t, int64_t dim, int64_t n_vocab) {
    size_t rb = opg_dtype_row_bytes(t, dim), bytes = rb * (size_t)n_vocab;
    unsigned char *p = tu_alloc(bytes);
    for (size_t i = 0; i < bytes; i++) p[i] = (unsigned char)tu_u64(r);
    int64_t n_blocks = dim / opg_dtype_block_elems(t) * n_vocab;
    for (int64_t b = 0; b < n_blocks; b++) {
        uint16_t d = opg_f32_to_f16(tu_uniform(r, -0.05f, 0.05f));
        uint16_t m = opg_f32_to_f16(tu_uniform(r, -0.05f, 0.05f));
        switch (t) {
        case OPG_F32: ((float *)p)[b] = tu_uniform(r, -2.0f, 2.0f); break;
        case OPG_F16: ((uint16_t *)p)[b] = opg_f32_to_f16(tu_uniform(r, -2.0f, 2.0f)); break;
        case OPG_BF16: ((uint16_t *)p)[b] = opg_f32_to_bf16(tu_uniform(r, -2.0f, 2.0f)); break;
        case OPG_Q8_0: ((opg_block_q8_0 *)p)[b].d = d; break;
        case OPG_Q4_0: ((opg_block_q4_0 *)p)[b].d = d; break;
        case OPG_Q4_1: ((opg_block_q4_1 *)p)[b].d = d; ((opg_block_q4_1 *)p)[b].m = m; break;
        case OPG_Q4_K: ((opg_block_q4_K *)p)[b].d = d; ((opg_block_q4_K *)p)[b].dmin = m; break;
        case OPG_Q6_K: ((opg_block_q6_K *)p)[b].d = d; break;
        case OPG_Q4_0_X8: case OPG_Q4_1_X8: case OPG_Q8_0_X8: case OPG_Q4_K_X8:
        case OPG_Q6_K_X8: break; /* not embedding types */
        }
    }
    return p;
}

static const opg_dtype ALL[] = {OPG_F32, OPG_F16, OPG_BF16, OPG_Q8_0,
                                OPG_Q4_0, OPG_Q4_1, OPG_Q4_K, OPG_Q6_K};

static void check_type(tu_rng *r, opg_dtype t, int64_t dim) {
    enum { V = 50, N = 64 };
    unsigned char *table = make_table(r, t, dim, V);
    size_t rb = opg_dtype_row_bytes(t, dim);
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = i == 0 ? 0 : i == 1 ? V - 1 : tu_int(r, 0, V - 1);
    float *out = tu_alloc(N * dim * 4), *row = tu_alloc(dim * 4);
    assert_int_equal(opg_embed_ref(out, table, t, dim, V, tok, N), 0);
    for (int i = 0; i < N; i++) {
        const unsigned char *src = table + (size_t)tok[i] * rb;
        assert_int_equal(opg_dequantize_row_ref(row, src, t, dim), 0);
        tu_assert_bits(row, out + i * dim, dim, opg_dtype_name(t));
        /* independent spellings of the plain types and Q8_0 */
        for (int64_t k = 0; k < dim; k++) {
            float e;
            switch (t) {
            case OPG_F32: memcpy(&e, src + 4 * k, 4); break;
            case OPG_F16: e = opg_f16_to_f32(((const uint16_t *)src)[k]); break;
            case OPG_BF16: e = opg_bf16_to_f32(((const uint16_t *)src)[k]); break;
            case OPG_Q8_0: {
                const opg_block_q8_0 *b = (const opg_block_q8_0 *)src + k / 32;
                e = opg_f16_to_f32(b->d) * (float)b->qs[k % 32];
                break;
            }
            default: e = row[k]; break;
            }
            tu_assert_bits(&e, out + i * dim + k, 1, "exact value");
        }
    }
    tu_free(table); tu_free(out); tu_free(row);
}

static void test_every_dtype(void **state) {
    (void)state;
    tu_rng r = {51};
    for (size_t i = 0; i < sizeof ALL / sizeof ALL[0]; i++) {
        check_type(&r, ALL[i], 512);
        check_type(&r, ALL[i], opg_dtype_block_elems(ALL[i]) * 3);
    }
    check_type(&r, OPG_F32, 7);
    check_type(&r, OPG_F16, 1);
    check_type(&r, OPG_BF16, 255);
}

/* Batch invariance: a token's row looked up alone equals its row in a batch
 * of 37 tokens (repeats included), every dtype. */
static void test_batch_invariance(void **state) {
    (void)state;
    enum { V = 50, DIM = 512, M = 37 };
    tu_rng r = {53};
    for (size_t i = 0; i < sizeof ALL / sizeof ALL[0]; i++) {
        void *table = make_table(&r, ALL[i], DIM, V);
        float *all = tu_alloc(sizeof(float) * M * DIM), *one = tu_alloc(sizeof(float) * DIM);
        int32_t tok[M];
        for (int t = 0; t < M; t++) tok[t] = tu_int(&r, 0, V - 1);
        tok[M - 1] = tok[0];
        assert_int_equal(opg_embed_ref(all, table, ALL[i], DIM, V, tok, M), 0);
        for (int t = 0; t < M; t++) {
            assert_int_equal(opg_embed_ref(one, table, ALL[i], DIM, V, &tok[t], 1), 0);
            tu_assert_bits(one, all + (size_t)t * DIM, DIM, "embedding alone vs in a batch of 37");
        }
        tu_free(table); tu_free(all); tu_free(one);
    }
}

static void test_errors(void **state) {
    (void)state;
    enum { V = 10, DIM = 64 };
    tu_rng r = {52};
    float *table = make_table(&r, OPG_F32, DIM, V);
    float out[4 * DIM], sentinel[4 * DIM];
    for (int i = 0; i < 4 * DIM; i++) sentinel[i] = -123.0f;
    const int32_t bad[] = {-1, V, V + 1000, INT32_MIN};
    for (int b = 0; b < 4; b++) {
        int32_t tok[4] = {3, 0, bad[b], 1}; /* the third token is out of range */
        memcpy(out, sentinel, sizeof out);
        assert_int_equal(opg_embed_ref(out, table, OPG_F32, DIM, V, tok, 4), -1);
        tu_assert_bits(out, table + 3 * DIM, DIM, "rows before the bad token written");
        tu_assert_bits(out + DIM, table, DIM, "rows before the bad token written");
        tu_assert_bits(out + 2 * DIM, sentinel, 2 * DIM, "untouched from the bad token on");
    }
    int32_t ok[2] = {V - 1, 0};
    memcpy(out, sentinel, sizeof out);
    /* unsupported type, dim not a multiple of the block, bad dim: nothing written */
    assert_int_equal(opg_embed_ref(out, table, (opg_dtype)7, DIM, V, ok, 2), -1);
    assert_int_equal(opg_embed_ref(out, table, OPG_Q8_0, 48, V, ok, 2), -1);
    assert_int_equal(opg_embed_ref(out, table, OPG_Q4_K, 128, V, ok, 2), -1);
    assert_int_equal(opg_embed_ref(out, table, OPG_F32, 0, V, ok, 2), -1);
    assert_int_equal(opg_embed_ref(out, table, OPG_F32, -4, V, ok, 2), -1);
    tu_assert_bits(out, sentinel, 4 * DIM, "nothing written on a shape error");
    /* no tokens: success, nothing written */
    assert_int_equal(opg_embed_ref(out, table, OPG_F32, DIM, V, ok, 0), 0);
    tu_assert_bits(out, sentinel, 4 * DIM, "nothing written for n = 0");
    /* a vocabulary of 0 rejects every token */
    assert_int_equal(opg_embed_ref(out, table, OPG_F32, DIM, 0, ok + 1, 1), -1);
    /* a packed table needs whole groups of 8 rows */
    memcpy(out, sentinel, sizeof out);
    assert_int_equal(opg_embed_ref(out, table, OPG_Q8_0_X8, DIM, V, ok, 2), -1);
    tu_assert_bits(out, sentinel, 4 * DIM, "nothing written for a partial packed group");
    tu_free(table);
}

/* A packed table (a tied output the cpu backend packed, quant.h) gives every
 * row the same bits as the table in GGUF's layout. */
static void test_packed_table(void **state) {
    (void)state;
    enum { V = 48, DIM = 768, N = 40 };
    tu_rng r = {54};
    for (size_t i = 0; i < sizeof ALL / sizeof ALL[0]; i++) {
        const opg_dtype t = ALL[i], tx = opg_dtype_x8(t);
        if (tx == t) continue;
        unsigned char *table = make_table(&r, t, DIM, V);
        size_t bytes = opg_dtype_row_bytes(t, DIM) * V;
        unsigned char *packed = tu_alloc(bytes);
        assert_int_equal(opg_pack_x8(packed, table, t, V, DIM), 0);
        int32_t tok[N];
        for (int k = 0; k < N; k++) tok[k] = k < 8 ? k * 7 % V : tu_int(&r, 0, V - 1);
        float *want = tu_alloc(sizeof(float) * N * DIM), *got = tu_alloc(sizeof(float) * N * DIM);
        assert_int_equal(opg_embed_ref(want, table, t, DIM, V, tok, N), 0);
        assert_int_equal(opg_embed_ref(got, packed, tx, DIM, V, tok, N), 0);
        tu_assert_bits(got, want, (size_t)N * DIM, opg_dtype_name(tx));
        tu_free(table); tu_free(packed); tu_free(want); tu_free(got);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_dtype),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_packed_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
