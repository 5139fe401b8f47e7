/* test_generate.c: continuous-batching generation and teacher-forced replay
 * (runtime/generate.c) on the tiny models of tests/data/gen_tiny_models.py,
 * and the trace (runtime/trace.c) against independent re-implementations:
 *  - the same request gives the same tokens and trace root alone, batched
 *    with 7 other requests of other prompt lengths, with prefill chunks
 *    (step_tokens) of 1, 5 and 256, on 1 and 2 threads, scalar and AVX2,
 *    greedy and seeded sampling; opg_replay gives the same root and no bad
 *    token; a tampered token or prompt is found and named;
 *  - stop tokens, max_tokens (0 and small), the context limit;
 *  - the Merkle root and the leaf-tree fingerprint recomputed here with
 *    libsodium's BLAKE2b and XXH3 (docs/determinism.md section 12).
 *
 * The models' directory: $OPG_TINY_DIR, else the OPG_TINY_DIR compile
 * definition (ctest runs the gen_tiny_models fixture first). */
#include "testutil.h"

#include <math.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "backend.h"
#include "contract.h"
#include "cpu.h"
#include "generate.h"
#include "gguf.h"
#include "model.h"
#include "scheduler.h"
#include "trace.h"

/* ---- helpers ------------------------------------------------------------------ */

static const char *tiny_path(const char *name) {
    static char buf[1024];
    const char *dir = getenv("OPG_TINY_DIR");
#ifdef OPG_TINY_DIR
    if (!dir || !*dir) dir = OPG_TINY_DIR;
#endif
    if (!dir || !*dir) dir = "tiny";
    snprintf(buf, sizeof buf, "%s/tiny-%s.gguf", dir, name);
    return buf;
}

static int scalar_only(void) {
    const char *e = getenv("OPG_CPU");
    return (e && strcmp(e, "scalar") == 0) || opg_cpu_best_level() < OPG_CPU_AVX2;
}
static void restore_level(void) {
    opg_cpu_set_level(scalar_only() ? OPG_CPU_SCALAR : opg_cpu_best_level());
}

typedef struct {
    opg_backend *be;
    opg_model *m;
} loaded;

static loaded load(const char *name, int threads) {
    loaded L = {0};
    assert_int_equal(opg_backend_cpu_new(threads, &L.be), OPG_OK);
    opg_status st = opg_model_load(tiny_path(name), L.be, NULL, NULL, &L.m);
    if (st) {
        print_error("opg_model_load(%s): %s: %s\n(generate the models with "
                    "tests/data/gen_tiny_models.py DIR and set OPG_TINY_DIR=DIR, or run ctest)\n",
                    tiny_path(name), opg_strerror(st), opg_last_error());
        fail();
    }
    return L;
}
static void unload(loaded *L) {
    opg_model_free(L->m);
    opg_backend_free(L->be);
}

static void gen_ok(opg_model *m, const opg_gen_request *reqs, int n, opg_gen_result *res,
                   opg_gen_options *opt) {
    opg_status st = opg_generate(m, reqs, n, res, opt);
    if (st) {
        print_error("opg_generate: %s: %s\n", opg_strerror(st), opg_last_error());
        fail();
    }
}

static void root_of(const opg_trace *t, uint8_t r[32]) { opg_trace_root(t, r); }

static void assert_same_result(const opg_gen_result *a, const opg_gen_result *b, const char *what) {
    if (a->n_tokens != b->n_tokens || a->stop != b->stop ||
        memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens) != 0) {
        print_error("%s: %lld tokens (stop %d) vs %lld tokens (stop %d)\n", what,
                    (long long)a->n_tokens, a->stop, (long long)b->n_tokens, b->stop);
        for (int64_t i = 0; i < a->n_tokens || i < b->n_tokens; i++)
            print_error("  [%lld] %d %d\n", (long long)i, i < a->n_tokens ? a->tokens[i] : -1,
                        i < b->n_tokens ? b->tokens[i] : -1);
        fail();
    }
    uint8_t ra[32], rb[32];
    root_of(a->trace, ra);
    root_of(b->trace, rb);
    int layer;
    int64_t d = opg_trace_first_diff(a->trace, b->trace, &layer);
    if (memcmp(ra, rb, 32) != 0 || d != -1) {
        char ha[65], hb[65];
        opg_hex(ha, ra, 32);
        opg_hex(hb, rb, 32);
        print_error("%s: trace roots %s vs %s, first difference at entry %lld, layer %d\n", what,
                    ha, hb, (long long)d, layer);
        fail();
    }
    assert_int_equal(opg_trace_count(a->trace), a->n_tokens);
}

/* The request under test and 7 others of other prompt lengths (the target
 * sits at index 4 of the batch). Token ids come from a fixed generator. */
#define N_REQ 8
#define TARGET 4
#define MAX_PROMPT 48
#define PINNED_ROOT3 "39911150cb99f9e555b89c534a84c2dbe3ba8a0463bd6d2e86c1b65180c94ef1"

typedef struct {
    int32_t prompt[N_REQ][MAX_PROMPT];
    int32_t stop[2];
    opg_gen_request req[N_REQ];
} request_set;

static const opg_sample_params GREEDY = {0.0f, 0, 1.0f, 0};
static const opg_sample_params SAMPLED = {0.9f, 40, 0.95f, 0x1234abcd};

static void make_requests(request_set *rs, int64_t n_vocab, const opg_sample_params *target) {
    static const int64_t n_prompt[N_REQ] = {1, 3, 6, 9, 11, 17, 30, 45};
    static const int64_t max_tokens[N_REQ] = {5, 40, 12, 1, 24, 30, 8, 20};
    tu_rng r = {0x9e40001};
    memset(rs, 0, sizeof *rs);
    rs->stop[0] = (int32_t)(n_vocab - 1);
    rs->stop[1] = 7;
    for (int i = 0; i < N_REQ; i++) {
        for (int j = 0; j < MAX_PROMPT; j++) rs->prompt[i][j] = tu_int(&r, 0, (int)n_vocab - 1);
        opg_gen_request *q = &rs->req[i];
        q->prompt = rs->prompt[i];
        q->n_prompt = n_prompt[i];
        q->max_tokens = max_tokens[i];
        if (i == TARGET) q->sampling = *target;
        else if (i % 2) q->sampling = GREEDY;
        else {
            q->sampling = SAMPLED;
            q->sampling.seed = 1000 + (uint64_t)i;
            q->sampling.temperature = 0.5f + 0.25f * (float)i;
        }
        if (i == 1 || i == 6) {
            q->stop = rs->stop;
            q->n_stop = 2;
        }
    }
}

static void results_clear(opg_gen_result *r, int n) {
    for (int i = 0; i < n; i++) opg_gen_result_clear(&r[i]);
}

/* ---- 5. invariance of generation; replay --------------------------------------- */

static void check_replay(opg_model *m, const opg_gen_request *q, const opg_gen_result *res) {
    const int64_t V = opg_model_hparams(m)->n_vocab;
    uint8_t want[32], got[32];
    root_of(res->trace, want);
    static const int64_t steps[] = {256, 3, 1};
    for (int si = 0; si < 3; si++) {
        opg_trace *tr = NULL;
        int64_t bad = 7;
        opg_status st = opg_replay(m, q->prompt, q->n_prompt, res->tokens, res->n_tokens,
                                   &q->sampling, steps[si], &tr, &bad);
        if (st) {
            print_error("opg_replay: %s: %s\n", opg_strerror(st), opg_last_error());
            fail();
        }
        assert_int_equal(bad, -1);
        root_of(tr, got);
        int layer;
        assert_int_equal(opg_trace_first_diff(res->trace, tr, &layer), -1);
        tu_assert_bytes(want, got, 32, "replay root");
        opg_trace_free(tr);
    }
    /* tampered tokens: one in the middle (fed back, so later entries change
     * too) and the last one (never fed: only the sampler check sees it) */
    int32_t *t = malloc((size_t)res->n_tokens * sizeof *t);
    assert_non_null(t);
    int64_t where[2] = {res->n_tokens / 3, res->n_tokens - 1};
    for (int wi = 0; wi < 2; wi++) {
        memcpy(t, res->tokens, (size_t)res->n_tokens * sizeof *t);
        int64_t k = where[wi];
        t[k] = (int32_t)((t[k] + 1) % V);
        opg_trace *tr = NULL;
        int64_t bad = -1;
        assert_int_equal(opg_replay(m, q->prompt, q->n_prompt, t, res->n_tokens, &q->sampling, 5,
                                    &tr, &bad),
                         OPG_OK);
        assert_int_equal(bad, k);
        root_of(tr, got);
        assert_memory_not_equal(want, got, 32);
        int layer = 99;
        assert_int_equal(opg_trace_first_diff(res->trace, tr, &layer), k);
        assert_int_equal(layer, -1); /* the token itself */
        opg_trace_free(tr);
    }
    free(t);
    /* a changed prompt: same tokens claimed, the first entry's hidden state
     * after layer 0 differs */
    int32_t *p = malloc((size_t)q->n_prompt * sizeof *p);
    assert_non_null(p);
    memcpy(p, q->prompt, (size_t)q->n_prompt * sizeof *p);
    p[0] = (int32_t)((p[0] + 1) % V);
    opg_trace *tr = NULL;
    int64_t bad;
    assert_int_equal(opg_replay(m, p, q->n_prompt, res->tokens, res->n_tokens, &q->sampling, 256,
                                &tr, &bad),
                     OPG_OK);
    int layer = 99;
    assert_int_equal(opg_trace_first_diff(res->trace, tr, &layer), 0);
    assert_int_equal(layer, 0);
    root_of(tr, got);
    assert_memory_not_equal(want, got, 32);
    opg_trace_free(tr);
    free(p);
}

/* The trace entries are the model's fingerprints of a plain prefill over
 * prompt + output[0 .. n-2] (independent of opg_replay's code). */
static void check_entries_by_prefill(opg_model *m, const opg_gen_request *q,
                                     const opg_gen_result *res) {
    const opg_hparams *hp = opg_model_hparams(m);
    int64_t n_out = res->n_tokens, n_all = q->n_prompt + n_out - 1;
    int32_t *all = malloc((size_t)n_all * sizeof *all);
    uint64_t *lfp = malloc((size_t)n_out * (size_t)hp->n_layer * 8), *gfp = malloc((size_t)n_out * 8);
    assert_true(all && lfp && gfp);
    memcpy(all, q->prompt, (size_t)q->n_prompt * sizeof *all);
    memcpy(all + q->n_prompt, res->tokens, (size_t)(n_out - 1) * sizeof *all);
    opg_kv *kv = NULL;
    assert_int_equal(opg_kv_new(m, n_all, &kv), OPG_OK);
    opg_batch_seq s = {kv, all, n_all, q->n_prompt - 1, NULL, lfp, gfp, NULL, 0, NULL};
    assert_int_equal(opg_model_forward(m, &s, 1), OPG_OK);
    assert_int_equal(opg_trace_count(res->trace), n_out);
    assert_int_equal(opg_trace_layers(res->trace), hp->n_layer);
    for (int64_t i = 0; i < n_out; i++) {
        opg_trace_entry e = opg_trace_get(res->trace, i);
        assert_int_equal(e.token, res->tokens[i]);
        assert_int_equal(e.pos, q->n_prompt - 1 + i);
        assert_true(e.logits_fp == gfp[i]);
        tu_assert_bytes(e.layer_fp, lfp + i * hp->n_layer, (size_t)hp->n_layer * 8, "layer fps");
    }
    opg_kv_free(kv);
    free(all);
    free(lfp);
    free(gfp);
}

static void test_generate_invariance(void **state) {
    (void)state;
    static const char *models[] = {"f32", "q4_1"};
    static const opg_sample_params *modes[] = {&GREEDY, &SAMPLED};
    static const int64_t steps[] = {1, 5, 256};
    for (int mi = 0; mi < 2; mi++) {
        loaded L1 = load(models[mi], 1), L2 = load(models[mi], 2);
        const int64_t V = opg_model_hparams(L1.m)->n_vocab;
        for (int md = 0; md < 2; md++) {
            request_set rs;
            make_requests(&rs, V, modes[md]);
            restore_level();
            /* every request alone, 1 thread, one prefill step: the baseline */
            opg_gen_result base[N_REQ];
            for (int i = 0; i < N_REQ; i++) gen_ok(L1.m, &rs.req[i], 1, &base[i], NULL);
            const opg_gen_result *b = &base[TARGET];
            assert_int_equal(b->n_tokens, rs.req[TARGET].max_tokens);
            assert_int_equal(b->stop, OPG_STOP_MAX_TOKENS);
            print_message("%s %s: %lld tokens, first %d %d %d %d\n", models[mi],
                          md ? "sampled" : "greedy", (long long)b->n_tokens, b->tokens[0],
                          b->tokens[1], b->tokens[2], b->tokens[3]);
            for (int th = 1; th <= 2; th++) {
                opg_model *m = th == 1 ? L1.m : L2.m;
                for (int si = 0; si < 3; si++) {
                    opg_gen_options opt = {0};
                    opt.step_tokens = steps[si];
                    char what[128];
                    opg_gen_result one;
                    gen_ok(m, &rs.req[TARGET], 1, &one, &opt);
                    snprintf(what, sizeof what, "%s %s alone, %d threads, step %lld", models[mi],
                             md ? "sampled" : "greedy", th, (long long)steps[si]);
                    assert_same_result(b, &one, what);
                    opg_gen_result_clear(&one);
                    opg_gen_result all[N_REQ];
                    memset(&opt, 0, sizeof opt);
                    opt.step_tokens = steps[si];
                    gen_ok(m, rs.req, N_REQ, all, &opt);
                    int64_t sum = 0;
                    for (int i = 0; i < N_REQ; i++) {
                        snprintf(what, sizeof what, "%s %s request %d of 8, %d threads, step %lld",
                                 models[mi], md ? "sampled" : "greedy", i, th, (long long)steps[si]);
                        assert_same_result(&base[i], &all[i], what);
                        sum += rs.req[i].n_prompt;
                    }
                    assert_int_equal(opt.prefill_tokens, sum);
                    results_clear(all, N_REQ);
                }
            }
            if (!scalar_only()) {
                /* the other SIMD level, batched, 2 threads */
                opg_cpu_set_level(OPG_CPU_SCALAR);
                opg_gen_options opt = {0};
                opt.step_tokens = 5;
                opg_gen_result all[N_REQ];
                gen_ok(L2.m, rs.req, N_REQ, all, &opt);
                for (int i = 0; i < N_REQ; i++) assert_same_result(&base[i], &all[i], "scalar vs avx2");
                results_clear(all, N_REQ);
                restore_level();
            }
            check_replay(L2.m, &rs.req[TARGET], b);
            check_entries_by_prefill(L1.m, &rs.req[TARGET], b);
            /* a different seed changes a sampled run's tokens */
            if (md == 1) {
                opg_gen_request q = rs.req[TARGET];
                q.sampling.seed ^= 1;
                opg_gen_result other;
                gen_ok(L1.m, &q, 1, &other, NULL);
                assert_true(other.n_tokens != b->n_tokens ||
                            memcmp(other.tokens, b->tokens, (size_t)b->n_tokens * 4) != 0);
                opg_gen_result_clear(&other);
            }
            results_clear(base, N_REQ);
        }
        unload(&L1);
        unload(&L2);
    }
    restore_level();
}

/* ---- 6. stop tokens, max_tokens, context ---------------------------------------- */

typedef struct {
    int n[2];
    int32_t tok[2][64];
    int stop_after;
} cb_log;

static int on_token(void *ctx, int seq, int32_t t) {
    cb_log *c = ctx;
    assert_true(seq >= 0 && seq < 2);
    c->tok[seq][c->n[seq]++] = t;
    return seq == 1 && c->n[1] == c->stop_after;
}

static void assert_prefix(const opg_gen_result *full, const opg_gen_result *r, int64_t n) {
    assert_int_equal(r->n_tokens, n);
    assert_true(n <= full->n_tokens);
    assert_memory_equal(r->tokens, full->tokens, (size_t)n * sizeof *r->tokens);
    assert_int_equal(opg_trace_count(r->trace), n);
    /* each entry is the full run's */
    for (int64_t i = 0; i < n; i++) {
        opg_trace_entry a = opg_trace_get(full->trace, i), b = opg_trace_get(r->trace, i);
        assert_int_equal(a.token, b.token);
        assert_int_equal(a.pos, b.pos);
        assert_true(a.logits_fp == b.logits_fp);
    }
}

static void test_stops_and_limits(void **state) {
    (void)state;
    restore_level();
    loaded L = load("q8_0", 2);
    const int64_t V = opg_model_hparams(L.m)->n_vocab;
    request_set rs;
    make_requests(&rs, V, &GREEDY);
    opg_gen_request q = rs.req[TARGET]; /* 11-token prompt, greedy */
    q.max_tokens = 40;
    opg_gen_result full;
    gen_ok(L.m, &q, 1, &full, NULL);
    assert_int_equal(full.n_tokens, 40);
    assert_int_equal(full.stop, OPG_STOP_MAX_TOKENS);

    /* stop token: one the model emits (its first occurrence ends the output) */
    int64_t k = 4, first = 0;
    while (full.tokens[first] != full.tokens[k]) first++;
    int32_t stop[3] = {-5, full.tokens[k], (int32_t)V + 3}; /* ids never emitted are harmless */
    opg_gen_request qs = q;
    qs.stop = stop;
    qs.n_stop = 3;
    opg_gen_result r;
    gen_ok(L.m, &qs, 1, &r, NULL);
    assert_int_equal(r.stop, OPG_STOP_EOG);
    assert_prefix(&full, &r, first + 1);
    assert_int_equal(r.tokens[r.n_tokens - 1], full.tokens[k]);
    opg_gen_result_clear(&r);
    /* a stop token emitted first: one token */
    stop[1] = full.tokens[0];
    gen_ok(L.m, &qs, 1, &r, NULL);
    assert_int_equal(r.stop, OPG_STOP_EOG);
    assert_prefix(&full, &r, 1);
    opg_gen_result_clear(&r);

    /* max_tokens 0: nothing, an empty trace (root of zeros) */
    opg_gen_request q0 = q;
    q0.max_tokens = 0;
    gen_ok(L.m, &q0, 1, &r, NULL);
    assert_int_equal(r.n_tokens, 0);
    assert_int_equal(r.stop, OPG_STOP_MAX_TOKENS);
    assert_non_null(r.trace);
    assert_int_equal(opg_trace_count(r.trace), 0);
    uint8_t root[32], zero[32] = {0};
    opg_trace_root(r.trace, root);
    assert_memory_equal(root, zero, 32);
    opg_gen_result_clear(&r);
    for (int64_t mt = 1; mt <= 3; mt++) {
        q0.max_tokens = mt;
        gen_ok(L.m, &q0, 1, &r, NULL);
        assert_int_equal(r.stop, OPG_STOP_MAX_TOKENS);
        assert_prefix(&full, &r, mt);
        opg_gen_result_clear(&r);
    }

    /* context: a prompt that fills the context is refused, nothing generated,
     * every result of the call cleared */
    opg_gen_options opt = {0};
    opt.n_ctx = q.n_prompt;
    opg_gen_request two[2] = {rs.req[0], q}; /* 1-token prompt fits, 11 do not */
    opg_gen_result res2[2];
    memset(res2, 0x5a, sizeof res2);
    assert_int_equal(opg_generate(L.m, two, 2, res2, &opt), OPG_ERR_LIMIT);
    assert_non_null(strstr(opg_last_error(), "prompt too long"));
    for (int i = 0; i < 2; i++) {
        assert_null(res2[i].tokens);
        assert_null(res2[i].trace);
        assert_int_equal(res2[i].n_tokens, 0);
    }
    opt.n_ctx = q.n_prompt - 3;
    assert_int_equal(opg_generate(L.m, &q, 1, &r, &opt), OPG_ERR_LIMIT);
    /* generation reaching the context: the cache holds n_ctx positions, the
     * last token comes from the logits at position n_ctx - 1 */
    opt.n_ctx = 16;
    gen_ok(L.m, &q, 1, &r, &opt);
    assert_int_equal(r.stop, OPG_STOP_CONTEXT);
    assert_prefix(&full, &r, 16 - q.n_prompt + 1);
    assert_int_equal(opg_trace_get(r.trace, r.n_tokens - 1).pos, 15);
    check_replay(L.m, &q, &r);
    opg_gen_result_clear(&r);
    /* n_ctx = prompt + 1: two tokens (positions n_prompt-1 and n_prompt) */
    opt.n_ctx = q.n_prompt + 1;
    gen_ok(L.m, &q, 1, &r, &opt);
    assert_int_equal(r.stop, OPG_STOP_CONTEXT);
    assert_prefix(&full, &r, 2);
    opg_gen_result_clear(&r);
    /* max_tokens reached exactly when the context fills: max_tokens wins */
    opt.n_ctx = 16;
    q0.max_tokens = 16 - q.n_prompt + 1;
    gen_ok(L.m, &q0, 1, &r, &opt);
    assert_int_equal(r.stop, OPG_STOP_MAX_TOKENS);
    assert_prefix(&full, &r, q0.max_tokens);
    opg_gen_result_clear(&r);

    /* the token callback: every token in order; non-zero stops that sequence */
    cb_log log = {{0, 0}, {{0}}, 3};
    memset(&opt, 0, sizeof opt);
    opt.on_token = on_token;
    opt.ctx = &log;
    opg_gen_request cb[2] = {q, q};
    cb[0].max_tokens = 10;
    gen_ok(L.m, cb, 2, res2, &opt);
    assert_int_equal(res2[0].stop, OPG_STOP_MAX_TOKENS);
    assert_prefix(&full, &res2[0], 10);
    assert_int_equal(res2[1].stop, OPG_STOP_NONE);
    assert_prefix(&full, &res2[1], 3);
    assert_int_equal(log.n[0], 10);
    assert_int_equal(log.n[1], 3);
    assert_memory_equal(log.tok[0], full.tokens, 10 * sizeof(int32_t));
    assert_memory_equal(log.tok[1], full.tokens, 3 * sizeof(int32_t));
    results_clear(res2, 2);

    /* bad requests */
    opg_gen_request bad = q;
    bad.n_prompt = 0;
    assert_int_equal(opg_generate(L.m, &bad, 1, &r, NULL), OPG_ERR_ARG);
    assert_true(opg_last_error()[0] != 0);
    bad = q;
    bad.max_tokens = -1;
    assert_int_equal(opg_generate(L.m, &bad, 1, &r, NULL), OPG_ERR_ARG);
    int32_t badp[3] = {1, (int32_t)V, 2};
    bad = q;
    bad.prompt = badp;
    bad.n_prompt = 3;
    memset(res2, 0x5a, sizeof res2);
    two[0] = q;
    two[1] = bad;
    assert_int_equal(opg_generate(L.m, two, 2, res2, NULL), OPG_ERR_ARG);
    assert_non_null(strstr(opg_last_error(), "token id"));
    for (int i = 0; i < 2; i++) {
        assert_null(res2[i].tokens);
        assert_null(res2[i].trace);
    }
    /* replay arguments */
    opg_trace *tr = (opg_trace *)1;
    int64_t fb;
    assert_int_equal(opg_replay(L.m, q.prompt, 0, full.tokens, 3, &q.sampling, 0, &tr, &fb),
                     OPG_ERR_ARG);
    assert_null(tr);
    /* replay of an empty output: an empty trace */
    assert_int_equal(opg_replay(L.m, q.prompt, q.n_prompt, NULL, 0, &q.sampling, 0, &tr, &fb), OPG_OK);
    assert_int_equal(opg_trace_count(tr), 0);
    assert_int_equal(fb, -1);
    opg_trace_free(tr);

    opg_gen_result_clear(&full);
    opg_gen_result_clear(NULL);
    unload(&L);
}

/* ---- 7. trace root and fingerprints, recomputed independently ------------------- */

static void le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

typedef struct {
    int32_t token;
    uint32_t pos;
    uint64_t layer[3];
    uint64_t logits;
} hand_entry;

/* docs/determinism.md section 12: leaf = BLAKE2b-256(0x00 || u32 version ||
 * u32 i || i32 token || u32 pos || u32 n_layers || u64 layer fps || u64 logits fp) */
static void my_leaf(const hand_entry *e, uint32_t i, int n_layers, uint8_t out[32]) {
    uint8_t buf[1 + 20 + 8 * 3 + 8];
    size_t n = 0;
    buf[n++] = 0x00;
    le32(buf + n, OPG_CONTRACT_VERSION); n += 4;
    le32(buf + n, i); n += 4;
    le32(buf + n, (uint32_t)e->token); n += 4;
    le32(buf + n, e->pos); n += 4;
    le32(buf + n, (uint32_t)n_layers); n += 4;
    for (int l = 0; l < n_layers; l++) { le64(buf + n, e->layer[l]); n += 8; }
    le64(buf + n, e->logits); n += 8;
    assert_int_equal(crypto_generichash(out, 32, buf, n, NULL, 0), 0);
}
static void my_node(const uint8_t l[32], const uint8_t r[32], uint8_t out[32]) {
    uint8_t buf[65];
    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    assert_int_equal(crypto_generichash(out, 32, buf, 65, NULL, 0), 0);
}

static opg_trace *hand_trace(const hand_entry *e, int n, int n_layers) {
    opg_trace *t = NULL;
    assert_int_equal(opg_trace_new(n_layers, &t), OPG_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(opg_trace_add(t, e[i].token, e[i].pos, e[i].layer, e[i].logits), OPG_OK);
    return t;
}

static void test_trace_root(void **state) {
    (void)state;
    assert_true(sodium_init() >= 0);
    assert_int_equal(OPG_CONTRACT_VERSION, 1);
    const hand_entry E[5] = {
        {17, 10, {0x0123456789abcdefULL, 0xfedcba9876543210ULL, 1}, 0xdeadbeefcafef00dULL},
        {-1, 11, {0, ~0ULL, 42}, 7},
        {95, 12, {3, 2, 1}, 0x8000000000000000ULL},
        {0, 13, {9, 9, 9}, 9},
        {2147483647, 4294967295u, {1, 2, 3}, 4},
    };
    uint8_t L[5][32], got[32], want[32], n01[32], n23[32], n0123[32];
    for (int i = 0; i < 5; i++) my_leaf(&E[i], (uint32_t)i, 3, L[i]);

    /* empty: 32 zero bytes */
    opg_trace *t = hand_trace(E, 0, 3);
    opg_trace_root(t, got);
    memset(want, 0, 32);
    tu_assert_bytes(got, want, 32, "empty root");
    opg_trace_free(t);
    /* one entry: the leaf */
    t = hand_trace(E, 1, 3);
    opg_trace_root(t, got);
    tu_assert_bytes(got, L[0], 32, "1-entry root");
    opg_trace_free(t);
    /* three entries: node(node(L0, L1), L2) (L2 moves up unchanged) */
    t = hand_trace(E, 3, 3);
    opg_trace_root(t, got);
    my_node(L[0], L[1], n01);
    my_node(n01, L[2], want);
    tu_assert_bytes(got, want, 32, "3-entry root");
    /* pinned: the root of this trace under contract version 1 */
    char hex[65];
    opg_hex(hex, got, 32);
    print_message("3-entry root %s\n", hex);
    assert_string_equal(hex, PINNED_ROOT3);
    /* entries read back as added */
    assert_int_equal(opg_trace_count(t), 3);
    assert_int_equal(opg_trace_layers(t), 3);
    opg_trace_entry e1 = opg_trace_get(t, 1);
    assert_int_equal(e1.token, -1);
    assert_int_equal(e1.pos, 11);
    assert_true(e1.logits_fp == 7 && e1.layer_fp[1] == ~0ULL && e1.layer_fp[2] == 42);
    opg_trace_free(t);
    /* five entries: node(node(node(L0,L1), node(L2,L3)), L4) */
    t = hand_trace(E, 5, 3);
    opg_trace_root(t, got);
    my_node(L[2], L[3], n23);
    my_node(n01, n23, n0123);
    my_node(n0123, L[4], want);
    tu_assert_bytes(got, want, 32, "5-entry root");
    opg_trace_free(t);
    /* a trace of 200 entries (odd levels on the way up) against a plain
     * level-by-level build here */
    hand_entry big[200];
    uint8_t lv[200][32];
    for (int i = 0; i < 200; i++) {
        big[i] = E[i % 5];
        big[i].pos = (uint32_t)i;
        big[i].logits ^= (uint64_t)i * 0x9e3779b97f4a7c15ULL;
        my_leaf(&big[i], (uint32_t)i, 3, lv[i]);
    }
    for (int n = 200; n > 1;) {
        int m = 0;
        for (int i = 0; i + 1 < n; i += 2) my_node(lv[i], lv[i + 1], lv[m++]);
        if (n % 2) memcpy(lv[m++], lv[n - 1], 32);
        n = m;
    }
    t = hand_trace(big, 200, 3);
    opg_trace_root(t, got);
    tu_assert_bytes(got, lv[0], 32, "200-entry root");
    opg_trace_free(t);
    /* no layers at all */
    t = hand_trace(E, 1, 0);
    uint8_t buf[1 + 20 + 8];
    buf[0] = 0;
    le32(buf + 1, OPG_CONTRACT_VERSION); le32(buf + 5, 0); le32(buf + 9, 17); le32(buf + 13, 10);
    le32(buf + 17, 0); le64(buf + 21, E[0].logits);
    crypto_generichash(want, 32, buf, sizeof buf, NULL, 0);
    opg_trace_root(t, got);
    tu_assert_bytes(got, want, 32, "0-layer root");
    opg_trace_free(t);
}

static void test_trace_first_diff(void **state) {
    (void)state;
    const hand_entry E[4] = {
        {1, 0, {1, 2, 3}, 4}, {2, 1, {5, 6, 7}, 8}, {3, 2, {9, 10, 11}, 12}, {4, 3, {1, 1, 1}, 1},
    };
    hand_entry F[4];
    opg_trace *a = hand_trace(E, 4, 3), *b;
    int layer = 99;
#define DIFF(mutate, want_i, want_layer)                              \
    do {                                                              \
        memcpy(F, E, sizeof F);                                       \
        mutate;                                                       \
        b = hand_trace(F, 4, 3);                                      \
        assert_int_equal(opg_trace_first_diff(a, b, &layer), want_i); \
        assert_int_equal(layer, want_layer);                          \
        assert_int_equal(opg_trace_first_diff(b, a, &layer), want_i); \
        opg_trace_free(b);                                            \
    } while (0)
    DIFF((void)0, -1, -1);
    DIFF(F[2].token = 30, 2, -1);
    DIFF(F[1].pos = 7, 1, -1);
    DIFF(F[1].layer[0] = 0, 1, 0);
    DIFF((F[3].layer[2] = 0, F[3].logits = 0), 3, 2);
    DIFF(F[2].logits = 0, 2, 3); /* the logits: layer n_layers */
    DIFF((F[1].logits = 0, F[2].token = 0), 1, 3);
#undef DIFF
    /* a prefix: the first index past the shorter */
    b = hand_trace(E, 2, 3);
    assert_int_equal(opg_trace_first_diff(a, b, &layer), 2);
    assert_int_equal(layer, -1);
    opg_trace_free(b);
    /* other layer counts differ at once */
    b = hand_trace(E, 4, 2);
    assert_int_equal(opg_trace_first_diff(a, b, &layer), 0);
    opg_trace_free(b);
    opg_trace_free(a);
}

/* docs/determinism.md section 12: XXH3-64 of each 1024-float leaf (the last
 * may be shorter), then XXH3-64 of the little-endian u64 leaf hashes. */
static uint64_t my_fingerprint(const float *x, int64_t n) {
    int64_t leaves = (n + 1023) / 1024;
    uint8_t *h = malloc((size_t)(leaves ? leaves : 1) * 8);
    assert_non_null(h);
    for (int64_t i = 0; i < leaves; i++) {
        int64_t len = n - 1024 * i < 1024 ? n - 1024 * i : 1024;
        uint8_t *bytes = malloc((size_t)len * 4);
        for (int64_t j = 0; j < len; j++) {
            uint32_t u;
            memcpy(&u, &x[1024 * i + j], 4);
            if (isnan(x[1024 * i + j])) u = 0x7fc00000u; /* the one NaN of the trace */
            le32(bytes + 4 * j, u);
        }
        le64(h + 8 * i, XXH3_64bits(bytes, (size_t)len * 4));
        free(bytes);
    }
    uint64_t r = XXH3_64bits(h, (size_t)leaves * 8);
    free(h);
    return r;
}

static void test_fingerprint(void **state) {
    (void)state;
    assert_int_equal(OPG_TRACE_LEAF_FLOATS, 1024);
    tu_rng r = {77};
    enum { MAXN = 70000 };
    float *x = malloc(MAXN * sizeof *x);
    assert_non_null(x);
    tu_fill_wild(&r, x, MAXN);
    static const int64_t ns[] = {0, 1, 5, 96, 1023, 1024, 1025, 2048, 2500, 4097, 65536, 66000};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        uint64_t a = opg_trace_fingerprint(x, ns[i]), b = my_fingerprint(x, ns[i]);
        if (a != b) {
            print_error("n = %lld: fingerprint %016llx, recomputed %016llx\n", (long long)ns[i],
                        (unsigned long long)a, (unsigned long long)b);
            fail();
        }
    }
    /* a long row is not the XXH3 of its bytes, and one flipped bit anywhere
     * (here: in the last, short leaf; a -0 for +0) changes it */
    assert_true(opg_trace_fingerprint(x, 2500) != XXH3_64bits(x, 2500 * 4));
    uint64_t before = opg_trace_fingerprint(x, 2500);
    x[2400] = 0.0f;
    uint64_t z = opg_trace_fingerprint(x, 2500);
    x[2400] = -0.0f;
    assert_true(opg_trace_fingerprint(x, 2500) != z);
    assert_true(before != z || before != opg_trace_fingerprint(x, 2500));
    /* every NaN is the same NaN: sign and payload are not hashed (which NaN
       an operation returns differs between the paths), but NaN is not a value */
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffffffffu, 0x7fa5a5a5u};
    uint64_t fp_nan[5];
    for (int i = 0; i < 5; i++) {
        memcpy(&x[3], &nans[i], 4);
        memcpy(&x[1500], &nans[4 - i], 4);
        memcpy(&x[65999], &nans[i], 4);
        fp_nan[i] = opg_trace_fingerprint(x, 66000);
        assert_true(fp_nan[i] == my_fingerprint(x, 66000));
        assert_true(fp_nan[i] == fp_nan[0]);
    }
    x[1500] = INFINITY;
    assert_true(opg_trace_fingerprint(x, 66000) != fp_nan[0]);
    free(x);
    char hex[9];
    const uint8_t bytes[4] = {0x00, 0x0f, 0xa5, 0xff};
    opg_hex(hex, bytes, 4);
    assert_string_equal(hex, "000fa5ff");
}


/* ---- the scheduler: sequences joining between steps, cancel ---------------------- */
typedef struct {
    opg_gen_result res[8];
    int done[8];
    int64_t tokens_seen[8];
} sched_log;

static int sl_token(void *ctx, uint64_t tag, int64_t index, int32_t token) {
    sched_log *l = ctx;
    assert_true(tag < 8);
    assert_int_equal(index, l->tokens_seen[tag]); /* in order, each once */
    (void)token;
    l->tokens_seen[tag]++;
    return 0;
}
static void sl_done(void *ctx, uint64_t tag, opg_gen_result *r) {
    sched_log *l = ctx;
    assert_true(tag < 8);
    assert_int_equal(l->done[tag], 0);
    l->done[tag] = 1;
    l->res[tag] = *r;
}

/* A sequence whose logits turn all NaN ends alone (OPG_STOP_NAN, the
 * tokens before kept): the others of its batch get exactly what they get
 * alone. */
static void test_nan_sequence(void **state) {
    (void)state;
    char path[64];
    tu_inf_embedding_model(tiny_path("f32"), 5, path, sizeof path);
    opg_backend *be = NULL;
    opg_model *m = NULL;
    assert_int_equal(opg_backend_cpu_new(2, &be), OPG_OK);
    assert_int_equal(opg_model_load(path, be, NULL, NULL, &m), OPG_OK);
    const int32_t clean[] = {1, 2, 3, 4}, poisoned[] = {1, 2, 5, 3};
    opg_gen_request q[2] = {
        {clean, 4, 12, GREEDY, NULL, 0},
        {poisoned, 4, 12, SAMPLED, NULL, 0},
    };
    opg_gen_result alone, both[2];
    gen_ok(m, &q[0], 1, &alone, NULL);
    assert_true(alone.stop != OPG_STOP_NAN); /* the clean job never feeds token 5 */
    gen_ok(m, q, 2, both, NULL);
    assert_same_result(&alone, &both[0], "the clean job batched with one turning NaN");
    assert_int_equal(both[1].stop, OPG_STOP_NAN);
    assert_int_equal(both[1].n_tokens, 0);
    /* alone, a one-token prompt of it: no token at all */
    opg_gen_result nan1;
    const int32_t feeds5[] = {5};
    opg_gen_request q1 = {feeds5, 1, 3, GREEDY, NULL, 0};
    gen_ok(m, &q1, 1, &nan1, NULL);
    assert_int_equal(nan1.stop, OPG_STOP_NAN);
    opg_gen_result_clear(&nan1);
    opg_gen_result_clear(&alone);
    results_clear(both, 2);
    opg_model_free(m);
    opg_backend_free(be);
    unlink(path);
}

/* A caller whose floating-point environment breaks the contract (a library
 * built with -ffast-math sets flush-to-zero and denormals-are-zero; here
 * also rounding toward zero, which changes nearly every result) gets the
 * same jobs: opg runs its work, on its pool's threads too (created under
 * that environment, so they inherit it), under the contract's, and gives
 * the caller its own back. */
static void test_fp_environment(void **state) {
    (void)state;
#if defined(__x86_64__)
    loaded L = load("q4_1", 1);
    const int64_t V = opg_model_hparams(L.m)->n_vocab;
    request_set rs;
    make_requests(&rs, V, &SAMPLED);
    opg_gen_result base[N_REQ];
    gen_ok(L.m, rs.req, N_REQ, base, NULL);
    unload(&L);
    const unsigned int normal = _mm_getcsr(), bad = (normal & ~0x6000u) | 0x8000u | 0x0040u | 0x6000u;
    _mm_setcsr(bad);
    L = load("q4_1", 2); /* its pool's threads start with FTZ, DAZ and round toward zero */
    opg_gen_result all[N_REQ];
    gen_ok(L.m, rs.req, N_REQ, all, NULL);
    unsigned int after = _mm_getcsr();
    opg_trace *tr = NULL;
    int64_t bad_at = 0;
    opg_status st = opg_replay(L.m, rs.req[TARGET].prompt, rs.req[TARGET].n_prompt, all[TARGET].tokens,
                               all[TARGET].n_tokens, &rs.req[TARGET].sampling, 7, &tr, &bad_at);
    unsigned int after_replay = _mm_getcsr();
    _mm_setcsr(normal);
    assert_int_equal(st, OPG_OK);
    assert_int_equal(bad_at, -1);
    assert_true(after == bad && after_replay == bad); /* the caller's, given back */
    uint8_t want[32], got[32];
    root_of(base[TARGET].trace, want);
    root_of(tr, got);
    tu_assert_bytes(want, got, 32, "replay under FTZ/DAZ/round-toward-zero");
    opg_trace_free(tr);
    for (int i = 0; i < N_REQ; i++) {
        char what[96];
        snprintf(what, sizeof what, "request %d under FTZ/DAZ/round-toward-zero", i);
        assert_same_result(&base[i], &all[i], what);
    }
    results_clear(base, N_REQ);
    results_clear(all, N_REQ);
    unload(&L);
#else
    skip();
#endif
}

static void test_sched_join_and_cancel(void **state) {
    (void)state;
    loaded L = load("f32", 2);
    const opg_hparams *hp = opg_model_hparams(L.m);
    int32_t prompts[4][9];
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 9; i++) prompts[j][i] = (int32_t)((7 * j + 3 * i + 1) % hp->n_vocab);
    opg_gen_request q[4];
    for (int j = 0; j < 4; j++) {
        memset(&q[j], 0, sizeof q[j]);
        q[j].prompt = prompts[j];
        q[j].n_prompt = 3 + 2 * j;
        q[j].max_tokens = 10 + j;
        q[j].sampling.temperature = j % 2 ? 0.8f : 0.0f;
        q[j].sampling.seed = 11u + (uint64_t)j;
    }
    /* reference: each alone */
    uint8_t ref[4][32];
    opg_gen_result alone[4];
    for (int j = 0; j < 4; j++) {
        gen_ok(L.m, &q[j], 1, &alone[j], NULL);
        root_of(alone[j].trace, ref[j]);
    }
    /* request j joins after j*3 steps, prefill chunks of 2 rows; the caller's
       prompt buffer is clobbered after each add (the scheduler copies it). */
    sched_log lg;
    memset(&lg, 0, sizeof lg);
    opg_sched_options so = {0, 2, NULL, NULL};
    opg_sched_events ev = {sl_token, sl_done, &lg};
    opg_sched *s = NULL;
    assert_int_equal(opg_sched_new(L.m, &so, &ev, &s), OPG_OK);
    int added = 0;
    int32_t scratch_prompt[9];
    for (int step = 0; step < 200 && (added < 4 || opg_sched_active(s) > 0); step++) {
        if (added < 4 && step == added * 3) {
            memcpy(scratch_prompt, prompts[added], sizeof scratch_prompt);
            opg_gen_request r = q[added];
            r.prompt = scratch_prompt;
            assert_int_equal(opg_sched_add(s, &r, (uint64_t)added), OPG_OK);
            memset(scratch_prompt, 0x7f, sizeof scratch_prompt);
            added++;
        }
        assert_int_equal(opg_sched_step(s), OPG_OK);
    }
    for (int j = 0; j < 4; j++) {
        assert_int_equal(lg.done[j], 1);
        assert_int_equal(lg.res[j].n_tokens, alone[j].n_tokens);
        assert_int_equal(lg.tokens_seen[j], alone[j].n_tokens);
        assert_memory_equal(lg.res[j].tokens, alone[j].tokens, (size_t)alone[j].n_tokens * sizeof(int32_t));
        uint8_t root[32];
        root_of(lg.res[j].trace, root);
        assert_memory_equal(root, ref[j], 32);
        opg_gen_result_clear(&lg.res[j]);
    }
    /* cancel: ends with what it has, stop reason NONE, once */
    memset(&lg, 0, sizeof lg);
    assert_int_equal(opg_sched_add(s, &q[3], 5), OPG_OK);
    assert_int_equal(opg_sched_add(s, &q[2], 6), OPG_OK);
    for (int i = 0; i < 6; i++) assert_int_equal(opg_sched_step(s), OPG_OK);
    assert_int_equal(opg_sched_cancel(s, 5), 1);
    assert_int_equal(opg_sched_cancel(s, 5), 0);
    assert_int_equal(lg.done[5], 1);
    assert_int_equal(lg.res[5].stop, OPG_STOP_NONE);
    assert_true(lg.res[5].n_tokens > 0 && lg.res[5].n_tokens < q[3].max_tokens);
    assert_memory_equal(lg.res[5].tokens, alone[3].tokens, (size_t)lg.res[5].n_tokens * sizeof(int32_t));
    assert_int_equal(opg_sched_active(s), 1);
    /* bad requests add nothing */
    opg_gen_request bad = q[0];
    bad.n_prompt = 0;
    assert_int_equal(opg_sched_add(s, &bad, 7), OPG_ERR_ARG);
    assert_int_equal(opg_sched_active(s), 1);
    opg_gen_result_clear(&lg.res[5]);
    opg_sched_free(s); /* frees job 6 unfinished, without on_done */
    assert_int_equal(lg.done[6], 0);
    for (int j = 0; j < 4; j++) opg_gen_result_clear(&alone[j]);
    unload(&L);
}

/* A step that fails (here: each backend call of the step in turn returns
 * out of memory, in a prefill step and in a decode step): a sequence that
 * had finished in it (max_tokens 0) is still delivered by that step, not by
 * a later cancel of another one (the worker frees a job in on_done, from
 * inside its walk over its jobs); the others are left for the caller to
 * cancel; and the scheduler then runs the same jobs to the same bits (its
 * recycled sequences carry nothing of the failed step). */
static void test_sched_step_failure(void **state) {
    (void)state;
    opg_backend *cpu = NULL;
    assert_int_equal(opg_backend_cpu_new(2, &cpu), OPG_OK);
    opg_backend *be = tu_faulty_backend(cpu);
    opg_model *m = NULL;
    assert_int_equal(opg_model_load(tiny_path("q4_1"), be, NULL, NULL, &m), OPG_OK);
    const int32_t p0[] = {3, 1, 4}, p1[] = {1, 5, 9, 2, 6}, p2[] = {5, 3, 5, 8, 9, 7, 9, 3, 2};
    const opg_gen_request none = {p0, 3, 0, GREEDY, NULL, 0};
    const opg_gen_request q[2] = {{p1, 5, 6, GREEDY, NULL, 0}, {p2, 9, 4, SAMPLED, NULL, 0}};
    opg_gen_result alone[2];
    for (int j = 0; j < 2; j++) gen_ok(m, &q[j], 1, &alone[j], NULL);
    for (int fail_step = 0; fail_step <= 2; fail_step += 2) {
        long step_calls = -1;
        for (long k = 0; step_calls < 0; k++) {
            sched_log lg;
            memset(&lg, 0, sizeof lg);
            opg_sched_events ev = {sl_token, sl_done, &lg};
            opg_sched *s = NULL;
            assert_int_equal(opg_sched_new(m, NULL, &ev, &s), OPG_OK);
            for (int j = 0; j < 2; j++) assert_int_equal(opg_sched_add(s, &q[j], (uint64_t)j + 1), OPG_OK);
            for (int i = 0; i < fail_step; i++) assert_int_equal(opg_sched_step(s), OPG_OK);
            assert_int_equal(opg_sched_add(s, &none, 0), OPG_OK);
            long c0 = tu_faulty_calls(be);
            tu_faulty_arm(be, k, OPG_ERR_NOMEM);
            opg_status st = opg_sched_step(s);
            tu_faulty_arm(be, -1, OPG_ERR_NOMEM);
            if (st == OPG_OK) { /* k is past the step's last call: every call has failed once */
                step_calls = tu_faulty_calls(be) - c0;
                assert_true(k >= step_calls && step_calls > 10);
                for (int j = 0; j < 3; j++) opg_gen_result_clear(&lg.res[j]);
                opg_sched_free(s);
                break;
            }
            if (st != OPG_ERR_NOMEM || !strstr(opg_last_error(), "injected")) {
                print_error("step %d, call %ld: %s: %s\n", fail_step, k, opg_strerror(st), opg_last_error());
                fail();
            }
            if (!lg.done[0]) {
                print_error("step %d failing at call %ld: the finished sequence was not delivered\n", fail_step, k);
                fail();
            }
            assert_int_equal(lg.res[0].stop, OPG_STOP_MAX_TOKENS);
            assert_int_equal(lg.res[0].n_tokens, 0);
            assert_int_equal(lg.done[1] + lg.done[2], 0);
            assert_int_equal(opg_sched_active(s), 2);
            for (int j = 1; j <= 2; j++) {
                assert_int_equal(opg_sched_cancel(s, (uint64_t)j), 1);
                assert_int_equal(lg.done[j], 1);
                assert_int_equal(lg.res[j].stop, OPG_STOP_NONE);
            }
            assert_int_equal(opg_sched_active(s), 0);
            for (int j = 0; j < 3; j++) opg_gen_result_clear(&lg.res[j]);
            /* the same jobs again, on the sequences the failed step left */
            memset(&lg, 0, sizeof lg);
            for (int j = 0; j < 2; j++) assert_int_equal(opg_sched_add(s, &q[j], (uint64_t)j + 1), OPG_OK);
            for (int i = 0; i < 100 && opg_sched_active(s) > 0; i++) assert_int_equal(opg_sched_step(s), OPG_OK);
            for (int j = 0; j < 2; j++) {
                char what[96];
                snprintf(what, sizeof what, "job %d after a step failing at call %ld of step %d", j, k, fail_step);
                assert_int_equal(lg.done[j + 1], 1);
                assert_same_result(&alone[j], &lg.res[j + 1], what);
                opg_gen_result_clear(&lg.res[j + 1]);
            }
            opg_sched_free(s);
        }
    }
    for (int j = 0; j < 2; j++) opg_gen_result_clear(&alone[j]);
    opg_model_free(m);
    opg_backend_free(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_root),
        cmocka_unit_test(test_trace_first_diff),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_stops_and_limits),
        cmocka_unit_test(test_generate_invariance),
        cmocka_unit_test(test_sched_join_and_cancel),
        cmocka_unit_test(test_fp_environment),
        cmocka_unit_test(test_nan_sequence),
        cmocka_unit_test(test_sched_step_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
