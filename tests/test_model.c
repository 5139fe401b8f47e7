/* test_model.c: the Llama-family forward pass (runtime/model.c) on tiny models
 * written by tests/data/gen_tiny_models.py with the PyPI gguf package:
 *  - logits against the generator's independent float64 numpy forward pass,
 *    for every weight type, within the bound of docs/determinism.md
 *    ("Model accuracy bound"), and the argmax where the reference's top-2 gap
 *    is clearly larger than that bound;
 *  - bit identity of logits and trace fingerprints between a full prefill,
 *    token-by-token decode and chunked prefills;
 *  - batch invariance (a sequence alone == inside a batch of 8 sequences of
 *    other lengths, some of them decoding), over 1, 2 and 3 threads and the
 *    scalar and AVX2 paths;
 *  - errors: missing file, wrong architecture, missing tensor / key, wrong
 *    shape, token out of range, context overflow, malformed batches, each
 *    with its status, a message naming the problem, and no cache advanced.
 *
 * The models' directory: $OPG_TINY_DIR, else the OPG_TINY_DIR compile
 * definition (ctest runs the gen_tiny_models fixture first). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu.h"
#include "gguf.h"
#include "model.h"
#include "opg_math.h"
#include "quant.h"
#include "sample.h"
#include "status.h"
#include "trace.h"

/* ---- the accuracy bound (docs/determinism.md, "Model accuracy bound") ---------
 * Over all T x n_vocab logits of a model, with r = rms of the reference logits:
 *   max |logit - ref|  <= TOL_MAX * max(1, r)
 *   rms(logit - ref)   <= TOL_RMS * r
 * Float weights (f32, f16, bf16) differ from the reference only by f32
 * rounding; quantized weights also by opg's int8 quantization of the
 * activations (section 5), which the reference does not do. */
#define TOL_MAX_FLOAT 1e-4
#define TOL_RMS_FLOAT 1e-5
#define TOL_MAX_QUANT 0.25
#define TOL_RMS_QUANT 0.05

typedef struct {
    const char *name;
    int quantized;
} variant;

static const variant VARIANTS[] = {
    {"f32", 0},  {"f16", 0},  {"bf16", 0}, {"q8_0", 1},      {"q4_0", 1},
    {"q4_1", 1}, {"q4_K", 1}, {"q6_K", 1}, {"qwen2-f32", 0}, {"tied-f32", 0},
    {"linear-f32", 0}, /* rope.scaling.type linear, factor 4 */
    {"llama3-f32", 0}, /* Llama 3 style rope_freqs.weight divisors */
    {"tied-q8_0", 1},  /* tied output the cpu backend packs (a copy beside the file's rows) */
    {"mixed", 1},      /* a type per tensor: f16 embedding, Q6_K output, six types in the layers */
};
#define N_VARIANTS (int)(sizeof VARIANTS / sizeof VARIANTS[0])

/* ---- helpers ------------------------------------------------------------------ */

static const char *tiny_dir(void) {
    const char *e = getenv("OPG_TINY_DIR");
    if (e && *e) return e;
#ifdef OPG_TINY_DIR
    return OPG_TINY_DIR;
#else
    return "tiny";
#endif
}

static const char *tiny_path(const char *name, const char *ext) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/tiny-%s.%s", tiny_dir(), name, ext);
    return p;
}

/* The levels to run: both, unless OPG_CPU=scalar forces the portable path. */
static int levels(opg_cpu_level out[2]) {
    const char *e = getenv("OPG_CPU");
    out[0] = OPG_CPU_SCALAR;
    if (e && strcmp(e, "scalar") == 0) return 1;
    if (opg_cpu_best_level() < OPG_CPU_AVX2) {
        static int said;
        if (!said++) print_message("note: no AVX2 on this CPU, only the scalar path runs\n");
        return 1;
    }
    out[1] = OPG_CPU_AVX2;
    return 2;
}
static void restore_level(void) {
    const char *e = getenv("OPG_CPU");
    opg_cpu_set_level(e && strcmp(e, "scalar") == 0 ? OPG_CPU_SCALAR : opg_cpu_best_level());
}

typedef struct {
    opg_backend *be;
    opg_model *m;
} loaded;

static loaded load(const char *name, int threads) {
    loaded L = {0};
    const char *path = tiny_path(name, "gguf");
    opg_status st = opg_backend_cpu_new(threads, &L.be);
    assert_int_equal(st, OPG_OK);
    st = opg_model_load(path, L.be, NULL, NULL, &L.m);
    if (st) {
        print_error("opg_model_load(%s): %s: %s\n(generate the models with "
                    "tests/data/gen_tiny_models.py DIR and set OPG_TINY_DIR=DIR, or run ctest)\n",
                    path, opg_strerror(st), opg_last_error());
        fail();
    }
    return L;
}
static void unload(loaded *L) {
    opg_model_free(L->m);
    opg_backend_free(L->be);
    L->m = NULL;
    L->be = NULL;
}

typedef struct {
    uint32_t T, V;
    int32_t *tokens;
    double *logits; /* [T][V] */
} reference;

static reference read_ref(const char *name) {
    reference r = {0};
    const char *path = tiny_path(name, "ref");
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_error("cannot open %s (run tests/data/gen_tiny_models.py)\n", path);
        fail();
    }
    char magic[8];
    uint8_t hdr[8];
    assert_int_equal(fread(magic, 1, 8, f), 8);
    assert_memory_equal(magic, "OPGREF01", 8);
    assert_int_equal(fread(hdr, 1, 8, f), 8);
    r.T = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    r.V = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 | (uint32_t)hdr[7] << 24;
    assert_true(r.T >= 1 && r.T <= 4096 && r.V >= 2 && r.V <= 1 << 20);
    r.tokens = malloc(r.T * sizeof *r.tokens);
    r.logits = malloc((size_t)r.T * r.V * sizeof *r.logits);
    assert_non_null(r.tokens);
    assert_non_null(r.logits);
    /* little-endian host (x86-64, aarch64): the file's layout is the memory's */
    assert_int_equal(fread(r.tokens, 4, r.T, f), r.T);
    assert_int_equal(fread(r.logits, 8, (size_t)r.T * r.V, f), (size_t)r.T * r.V);
    fclose(f);
    return r;
}
static void free_ref(reference *r) {
    free(r->tokens);
    free(r->logits);
}

/* One sequence's outputs: logits, layer and logits fingerprints of rows. */
typedef struct {
    int64_t rows, V, n_layer;
    float *logits;
    uint64_t *layer_fp, *logits_fp;
} outputs;

static outputs outputs_new(const opg_model *m, int64_t rows) {
    const opg_hparams *hp = opg_model_hparams(m);
    outputs o = {rows, hp->n_vocab, hp->n_layer, NULL, NULL, NULL};
    o.logits = calloc((size_t)(rows ? rows : 1) * (size_t)o.V, sizeof(float));
    o.layer_fp = calloc((size_t)(rows ? rows : 1) * (size_t)o.n_layer, sizeof(uint64_t));
    o.logits_fp = calloc((size_t)(rows ? rows : 1), sizeof(uint64_t));
    assert_true(o.logits && o.layer_fp && o.logits_fp);
    return o;
}
static void outputs_free(outputs *o) {
    free(o->logits);
    free(o->layer_fp);
    free(o->logits_fp);
}
/* The batch entry writing rows [row0, row0 + n - out_from) of o. */
static opg_batch_seq seq_into(opg_kv *kv, const int32_t *tokens, int64_t n, int64_t out_from,
                              outputs *o, int64_t row0) {
    opg_batch_seq s = {kv, tokens, n, out_from, NULL, NULL, NULL, NULL, 0, NULL};
    if (o) {
        s.logits = o->logits + row0 * o->V;
        s.layer_fp = o->layer_fp + row0 * o->n_layer;
        s.logits_fp = o->logits_fp + row0;
    }
    return s;
}

static void forward_ok(opg_model *m, opg_batch_seq *s, int n) {
    opg_status st = opg_model_forward(m, s, n);
    if (st) {
        print_error("opg_model_forward: %s: %s\n", opg_strerror(st), opg_last_error());
        fail();
    }
}

static void assert_same_outputs(const outputs *a, const outputs *b, int64_t rows, const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: logits", what);
    tu_assert_bits(a->logits, b->logits, (size_t)(rows * a->V), msg);
    snprintf(msg, sizeof msg, "%s: layer fingerprints", what);
    tu_assert_bytes(a->layer_fp, b->layer_fp, (size_t)(rows * a->n_layer) * 8, msg);
    snprintf(msg, sizeof msg, "%s: logits fingerprints", what);
    tu_assert_bytes(a->logits_fp, b->logits_fp, (size_t)rows * 8, msg);
}

/* Full prefill of tokens[0..n) into a fresh cache, every row's outputs. */
static outputs prefill_all(opg_model *m, const int32_t *tokens, int64_t n) {
    outputs o = outputs_new(m, n);
    opg_kv *kv = NULL;
    assert_int_equal(opg_kv_new(m, n, &kv), OPG_OK);
    opg_batch_seq s = seq_into(kv, tokens, n, 0, &o, 0);
    forward_ok(m, &s, 1);
    assert_int_equal(opg_kv_len(kv), n);
    opg_kv_free(kv);
    return o;
}

/* ---- 1. accuracy against the float64 reference ----------------------------------- */

static void test_accuracy(void **state) {
    (void)state;
    opg_cpu_level lv[2];
    int nl = levels(lv);
    print_message("%-10s %12s %12s %10s %10s %10s %8s %5s\n", "variant", "max|diff|", "rms(ref)",
                  "max rel", "rms rel", "tol", "checked", "agree");
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        const variant *var = &VARIANTS[vi];
        reference ref = read_ref(var->name);
        loaded L = load(var->name, 2);
        const opg_hparams *hp = opg_model_hparams(L.m);
        assert_int_equal(hp->n_vocab, ref.V);
        double ss = 0;
        for (size_t i = 0; i < (size_t)ref.T * ref.V; i++) ss += ref.logits[i] * ref.logits[i];
        double rms = sqrt(ss / ((double)ref.T * ref.V));
        double tol = var->quantized ? TOL_MAX_QUANT : TOL_MAX_FLOAT;
        double tol_rms = var->quantized ? TOL_RMS_QUANT : TOL_RMS_FLOAT;
        double bound = tol * (rms > 1 ? rms : 1);
        outputs first = {0};
        for (int li = 0; li < nl; li++) {
            opg_cpu_set_level(lv[li]);
            outputs o = prefill_all(L.m, ref.tokens, ref.T);
            double maxd = 0, ssd = 0;
            int checked = 0, agree = 0;
            for (uint32_t t = 0; t < ref.T; t++) {
                const double *r = ref.logits + (size_t)t * ref.V;
                const float *y = o.logits + (size_t)t * ref.V;
                int64_t best = 0, second = -1;
                for (uint32_t j = 0; j < ref.V; j++) {
                    assert_true(isfinite(y[j]));
                    double d = fabs((double)y[j] - r[j]);
                    if (d > maxd) maxd = d;
                    ssd += d * d;
                    if (j == 0) continue;
                    if (r[j] > r[best]) { second = best; best = j; }
                    else if (second < 0 || r[j] > r[second]) second = j;
                }
                /* every logit is within `bound`: a top-2 gap over twice the
                 * bound fixes the argmax */
                if (opg_argmax_ref(y, ref.V) == best) agree++;
                if (r[best] - r[second] > 2 * bound) {
                    checked++;
                    int64_t am = opg_argmax_ref(y, ref.V);
                    if (am != best) {
                        print_error("%s row %u: argmax %lld, reference %lld (gap %g, bound %g)\n",
                                    var->name, t, (long long)am, (long long)best,
                                    r[best] - r[second], bound);
                        fail();
                    }
                }
            }
            if (li == 0) {
                print_message("%-10s %12.3e %12.3e %10.3e %10.3e %10.1e %5d/%-2u %5d\n", var->name,
                              maxd, rms, maxd / (rms > 1 ? rms : 1),
                              sqrt(ssd / ((double)ref.T * ref.V)) / rms, tol, checked, ref.T, agree);
                first = o;
            } else {
                assert_same_outputs(&first, &o, ref.T, var->name);
                outputs_free(&o);
            }
            if (maxd > bound) {
                print_error("%s: max |logit - reference| = %g > bound %g (tol %g x max(1, rms %g))\n",
                            var->name, maxd, bound, tol, rms);
                fail();
            }
            double rmsd = sqrt(ssd / ((double)ref.T * ref.V));
            if (rmsd > tol_rms * rms) {
                print_error("%s: rms(logit - reference) = %g > %g x rms %g\n", var->name, rmsd,
                            tol_rms, rms);
                fail();
            }
            /* the float types are far inside their bound: every row decides */
            if (!var->quantized) assert_int_equal(checked, ref.T);
        }
        outputs_free(&first);
        restore_level();
        unload(&L);
        free_ref(&ref);
    }
}

/* ---- 2. prefill vs decode vs chunked prefill ----------------------------------- */

static void run_chunked(opg_model *m, const int32_t *tokens, int64_t n, int64_t chunk,
                        outputs *o) {
    opg_kv *kv = NULL;
    assert_int_equal(opg_kv_new(m, n, &kv), OPG_OK);
    for (int64_t p0 = 0; p0 < n; p0 += chunk) {
        int64_t c = n - p0 < chunk ? n - p0 : chunk;
        opg_batch_seq s = seq_into(kv, tokens + p0, c, 0, o, p0);
        forward_ok(m, &s, 1);
        assert_int_equal(opg_kv_len(kv), p0 + c);
    }
    opg_kv_free(kv);
}

static void test_prefill_decode(void **state) {
    (void)state;
    opg_cpu_level lv[2];
    int nl = levels(lv);
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        const variant *var = &VARIANTS[vi];
        reference ref = read_ref(var->name);
        loaded L = load(var->name, 2);
        for (int li = 0; li < nl; li++) {
            opg_cpu_set_level(lv[li]);
            outputs full = prefill_all(L.m, ref.tokens, ref.T);
            static const int64_t chunks[] = {1, 3, 7, 64};
            for (int ci = 0; ci < 4; ci++) {
                outputs o = outputs_new(L.m, ref.T);
                run_chunked(L.m, ref.tokens, ref.T, chunks[ci], &o);
                char what[96];
                snprintf(what, sizeof what, "%s %s chunk %lld vs prefill", var->name,
                         opg_cpu_level_name(lv[li]), (long long)chunks[ci]);
                assert_same_outputs(&full, &o, ref.T, what);
                outputs_free(&o);
            }
            /* a last-row-only prefill gives the last row of the full one */
            outputs last = outputs_new(L.m, 1);
            opg_kv *kv = NULL;
            assert_int_equal(opg_kv_new(L.m, ref.T, &kv), OPG_OK);
            opg_batch_seq s = seq_into(kv, ref.tokens, ref.T, ref.T - 1, &last, 0);
            forward_ok(L.m, &s, 1);
            opg_kv_free(kv);
            outputs tail = full;
            tail.logits += (ref.T - 1) * full.V;
            tail.layer_fp += (ref.T - 1) * full.n_layer;
            tail.logits_fp += ref.T - 1;
            assert_same_outputs(&tail, &last, 1, "last row only vs full prefill");
            outputs_free(&last);
            /* the logits fingerprint is the trace fingerprint of the logits row */
            for (uint32_t t = 0; t < ref.T; t++)
                assert_true(full.logits_fp[t] ==
                            opg_trace_fingerprint(full.logits + (size_t)t * full.V, full.V));
            outputs_free(&full);
        }
        restore_level();
        unload(&L);
        free_ref(&ref);
    }
}

/* ---- 3. batch invariance, threads, SIMD level ------------------------------------ */

#define N_SEQ 8
#define MAX_LEN 24

typedef struct {
    int64_t pre;            /* tokens already in the cache before the batched step */
    int64_t n;              /* tokens in the batched step */
    int64_t out_from;
    int32_t tokens[MAX_LEN];
} seq_plan;

/* Sequence 3 is the one of the issue (the .ref tokens, a prefill of 20 rows
 * with all outputs); the others have other lengths and tokens, some decode a
 * single token after a prefix already cached, one outputs nothing. */
static void make_plans(seq_plan p[N_SEQ], const reference *ref) {
    static const int64_t pre[N_SEQ] = {0, 5, 0, 0, 11, 0, 3, 0};
    static const int64_t n[N_SEQ] = {1, 1, 13, 20, 1, 7, 17, 24};
    static const int64_t of[N_SEQ] = {0, 0, 12, 0, 0, 7, 2, 23};
    tu_rng r = {0x5eed0001};
    for (int s = 0; s < N_SEQ; s++) {
        p[s].pre = pre[s];
        p[s].n = n[s];
        p[s].out_from = of[s];
        for (int i = 0; i < MAX_LEN; i++) p[s].tokens[i] = tu_int(&r, 0, (int)ref->V - 1);
    }
    memcpy(p[3].tokens, ref->tokens, 20 * sizeof(int32_t));
    p[3].pre = 0;
}

/* Runs the plans: each sequence's prefix `pre` alone, then the batched step
 * (batched = 1: one forward over all 8; 0: each sequence alone). */
static void run_plans(opg_model *m, const seq_plan p[N_SEQ], int batched, outputs o[N_SEQ]) {
    opg_kv *kv[N_SEQ];
    opg_batch_seq b[N_SEQ];
    for (int s = 0; s < N_SEQ; s++) {
        assert_int_equal(opg_kv_new(m, MAX_LEN, &kv[s]), OPG_OK);
        if (p[s].pre) {
            opg_batch_seq pre = seq_into(kv[s], p[s].tokens, p[s].pre, p[s].pre, NULL, 0);
            forward_ok(m, &pre, 1);
        }
        o[s] = outputs_new(m, p[s].n - p[s].out_from);
        b[s] = seq_into(kv[s], p[s].tokens + p[s].pre, p[s].n, p[s].out_from, &o[s], 0);
    }
    if (batched) forward_ok(m, b, N_SEQ);
    else
        for (int s = 0; s < N_SEQ; s++) forward_ok(m, &b[s], 1);
    for (int s = 0; s < N_SEQ; s++) {
        assert_int_equal(opg_kv_len(kv[s]), p[s].pre + p[s].n);
        opg_kv_free(kv[s]);
    }
}

static void test_batch_invariance(void **state) {
    (void)state;
    opg_cpu_level lv[2];
    int nl = levels(lv);
    static const char *models[] = {"f32", "q4_K", "qwen2-f32", "q8_0"};
    for (int mi = 0; mi < 4; mi++) {
        reference ref = read_ref(models[mi]);
        seq_plan p[N_SEQ];
        make_plans(p, &ref);
        outputs base[N_SEQ];
        int have_base = 0;
        for (int threads = 1; threads <= 3; threads++) {
            loaded L = load(models[mi], threads);
            for (int li = 0; li < nl; li++) {
                opg_cpu_set_level(lv[li]);
                for (int batched = 0; batched <= 1; batched++) {
                    outputs o[N_SEQ];
                    run_plans(L.m, p, batched, o);
                    if (!have_base) {
                        memcpy(base, o, sizeof o);
                        have_base = 1;
                        /* the sequence alone is a plain full prefill */
                        outputs full = prefill_all(L.m, ref.tokens, 20);
                        assert_same_outputs(&full, &o[3], 20, "sequence 3 alone vs prefill");
                        outputs_free(&full);
                        continue;
                    }
                    for (int s = 0; s < N_SEQ; s++) {
                        char what[128];
                        snprintf(what, sizeof what, "%s seq %d, %d threads, %s, %s", models[mi], s,
                                 threads, opg_cpu_level_name(lv[li]), batched ? "batched" : "alone");
                        assert_same_outputs(&base[s], &o[s], p[s].n - p[s].out_from, what);
                        outputs_free(&o[s]);
                    }
                }
            }
            restore_level();
            unload(&L);
        }
        for (int s = 0; s < N_SEQ; s++) outputs_free(&base[s]);
        free_ref(&ref);
    }
}

/* ---- 4. errors ------------------------------------------------------------------ */

#define expect_load_fail(path, want, needle) expect_load_fail_(path, want, needle, __LINE__)
static void expect_load_fail_(const char *path, opg_status want, const char *needle, int line) {
    opg_backend *be = NULL;
    assert_int_equal(opg_backend_cpu_new(1, &be), OPG_OK);
    opg_model *m = (opg_model *)1;
    opg_status st = opg_model_load(path, be, NULL, NULL, &m);
    const char *msg = opg_last_error();
    if (st != want || m != NULL || !msg[0] || (needle && !strstr(msg, needle))) {
        print_error("line %d: load(%s): expected %s with \"%s\", got %s: \"%s\"\n", line, path,
                    opg_strerror(want), needle ? needle : "", opg_strerror(st), msg);
        if (st == OPG_OK) opg_model_free(m);
        opg_backend_free(be);
        fail();
    }
    opg_backend_free(be);
}

#define expect_forward_fail(m, s, n, want, needle) expect_forward_fail_(m, s, n, want, needle, __LINE__)
static void expect_forward_fail_(opg_model *m, opg_batch_seq *s, int n, opg_status want,
                                 const char *needle, int line) {
    int64_t len[16];
    for (int i = 0; i < n; i++) len[i] = s[i].kv ? opg_kv_len(s[i].kv) : -1;
    opg_status st = opg_model_forward(m, s, n);
    const char *msg = opg_last_error();
    if (st != want || !msg[0] || (needle && !strstr(msg, needle))) {
        print_error("line %d: forward: expected %s with \"%s\", got %s: \"%s\"\n", line,
                    opg_strerror(want), needle ? needle : "", opg_strerror(st), msg);
        fail();
    }
    for (int i = 0; i < n; i++)
        if (s[i].kv && opg_kv_len(s[i].kv) != len[i]) {
            print_error("line %d: sequence %d's cache advanced by a failed forward\n", line, i);
            fail();
        }
}

static void test_errors(void **state) {
    (void)state;
    opg_cpu_set_level(OPG_CPU_SCALAR);
    expect_load_fail(tiny_path("does-not-exist", "gguf"), OPG_ERR_IO, "does-not-exist");
    expect_load_fail(tiny_path("bad-arch", "gguf"), OPG_ERR_UNSUPPORTED, "gpt2");
    expect_load_fail(tiny_path("missing-tensor", "gguf"), OPG_ERR_FORMAT, "blk.1.ffn_down.weight");
    expect_load_fail(tiny_path("bad-shape", "gguf"), OPG_ERR_FORMAT, "blk.0.attn_k.weight");
    expect_load_fail(tiny_path("missing-key", "gguf"), OPG_ERR_NOT_FOUND, "llama.block_count");
    /* a reference file is no GGUF */
    expect_load_fail(tiny_path("f32", "ref"), OPG_ERR_FORMAT, NULL);

    loaded L = load("f32", 2);
    loaded L2 = load("q8_0", 1);
    reference ref = read_ref("f32");
    const int64_t V = opg_model_hparams(L.m)->n_vocab;
    opg_kv *kv = NULL, *kv2 = NULL, *other = NULL;
    assert_int_equal(opg_kv_new(L.m, 8, &kv), OPG_OK);
    assert_int_equal(opg_kv_new(L.m, 8, &kv2), OPG_OK);
    assert_int_equal(opg_kv_new(L2.m, 8, &other), OPG_OK);
    assert_int_equal(opg_kv_capacity(kv), 8);
    outputs o = outputs_new(L.m, 8);

    /* token ids out of range, in either sequence of a batch */
    int32_t bad_hi[3] = {1, (int32_t)V, 2}, bad_neg[2] = {3, -1};
    opg_batch_seq s[2] = {seq_into(kv, ref.tokens, 3, 2, &o, 0), seq_into(kv2, bad_hi, 3, 2, NULL, 0)};
    expect_forward_fail(L.m, s, 2, OPG_ERR_ARG, "token id 96");
    s[1] = seq_into(kv2, bad_neg, 2, 0, NULL, 0);
    expect_forward_fail(L.m, s, 2, OPG_ERR_ARG, "token id -1");

    /* context: 5 fit, then 4 more of a cache of 8 do not (in a batch with a
     * sequence that fits: neither advances) */
    s[0] = seq_into(kv, ref.tokens, 5, 5, NULL, 0);
    forward_ok(L.m, s, 1);
    assert_int_equal(opg_kv_len(kv), 5);
    s[0] = seq_into(kv2, ref.tokens, 2, 2, NULL, 0);
    s[1] = seq_into(kv, ref.tokens + 5, 4, 0, &o, 0);
    expect_forward_fail(L.m, s, 2, OPG_ERR_LIMIT, "sequence 1 needs 9 positions");
    opg_kv *big = NULL;
    assert_int_equal(opg_kv_new(L.m, 0, &big), OPG_ERR_ARG);
    assert_null(big);
    assert_int_equal(opg_kv_new(L.m, ((int64_t)1 << 24) + 1, &big), OPG_ERR_ARG);
    assert_true(strstr(opg_last_error(), "context") != NULL);

    /* malformed batches */
    opg_batch_seq bad = seq_into(NULL, ref.tokens, 1, 0, NULL, 0);
    expect_forward_fail(L.m, &bad, 1, OPG_ERR_ARG, "sequence 0 is malformed");
    bad = seq_into(kv2, ref.tokens, -1, 0, NULL, 0);
    expect_forward_fail(L.m, &bad, 1, OPG_ERR_ARG, "malformed");
    bad = seq_into(kv2, ref.tokens, 2, 3, NULL, 0);
    expect_forward_fail(L.m, &bad, 1, OPG_ERR_ARG, "malformed");
    bad = seq_into(kv2, ref.tokens, 2, -1, NULL, 0);
    expect_forward_fail(L.m, &bad, 1, OPG_ERR_ARG, "malformed");
    bad = seq_into(kv2, NULL, 2, 0, NULL, 0);
    expect_forward_fail(L.m, &bad, 1, OPG_ERR_ARG, "malformed");
    bad = seq_into(other, ref.tokens, 2, 0, NULL, 0);
    expect_forward_fail(L.m, &bad, 1, OPG_ERR_ARG, "malformed");
    s[0] = seq_into(kv2, ref.tokens, 1, 0, NULL, 0);
    s[1] = seq_into(kv2, ref.tokens, 1, 0, NULL, 0);
    expect_forward_fail(L.m, s, 2, OPG_ERR_ARG, "appears twice");

    /* after all these failures the caches are intact: finishing the sequence
     * (3 more tokens, exactly full) gives the bits of a clean prefill */
    s[0] = seq_into(kv, ref.tokens + 5, 3, 0, &o, 5);
    forward_ok(L.m, s, 1);
    assert_int_equal(opg_kv_len(kv), 8);
    outputs full = prefill_all(L.m, ref.tokens, 8);
    outputs tail = full, got = o;
    tail.logits += 5 * V; tail.layer_fp += 5 * full.n_layer; tail.logits_fp += 5;
    got.logits += 5 * V; got.layer_fp += 5 * o.n_layer; got.logits_fp += 5;
    assert_same_outputs(&tail, &got, 3, "after failed forwards");
    outputs_free(&full);
    /* a full cache takes nothing more; an empty step is fine */
    s[0] = seq_into(kv, ref.tokens, 1, 0, &o, 0);
    expect_forward_fail(L.m, s, 1, OPG_ERR_LIMIT, "context limit");
    s[0] = seq_into(kv, ref.tokens, 0, 0, &o, 0);
    forward_ok(L.m, s, 1);
    assert_int_equal(opg_kv_len(kv), 8);
    /* truncate forgets positions; re-running them gives the same bits */
    opg_kv_truncate(kv, 6);
    assert_int_equal(opg_kv_len(kv), 6);
    opg_kv_truncate(kv, 7); /* beyond len: no-op */
    assert_int_equal(opg_kv_len(kv), 6);
    outputs again = outputs_new(L.m, 2);
    s[0] = seq_into(kv, ref.tokens + 6, 2, 0, &again, 0);
    forward_ok(L.m, s, 1);
    got = o;
    got.logits += 6 * V; got.layer_fp += 6 * o.n_layer; got.logits_fp += 6;
    assert_same_outputs(&got, &again, 2, "after truncate");
    outputs_free(&again);

    outputs_free(&o);
    opg_kv_free(kv);
    opg_kv_free(kv2);
    opg_kv_free(other);
    free_ref(&ref);
    unload(&L2);
    unload(&L);
    restore_level();
}

/* A backend call that fails (out of memory; here each call in turn): a
 * load gives the error and no model, a forward gives it and advances no
 * cache, and the same forward run again afterwards gives a clean run's bits.
 * The ASan build also checks that nothing leaks on any of these paths. */
static void test_backend_failures(void **state) {
    (void)state;
    static const char *const models[] = {"q4_1", "f32"};
    for (int mi = 0; mi < 2; mi++) {
        long load_calls = -1;
        for (long k = 0; load_calls < 0; k++) {
            opg_backend *cpu = NULL;
            assert_int_equal(opg_backend_cpu_new(1, &cpu), OPG_OK);
            opg_backend *be = tu_faulty_backend(cpu);
            tu_faulty_arm(be, k, OPG_ERR_NOMEM);
            opg_model *m = (opg_model *)1;
            opg_status st = opg_model_load(tiny_path(models[mi], "gguf"), be, NULL, NULL, &m);
            if (st == OPG_OK) {
                load_calls = tu_faulty_calls(be);
                assert_true(k >= load_calls && load_calls > 5);
                opg_model_free(m);
            } else if (st != OPG_ERR_NOMEM || m != NULL || !strstr(opg_last_error(), "injected")) {
                print_error("%s, load failing at call %ld: %s: \"%s\"\n", models[mi], k, opg_strerror(st),
                            opg_last_error());
                fail();
            }
            opg_backend_free(be);
        }

        opg_backend *cpu = NULL;
        assert_int_equal(opg_backend_cpu_new(2, &cpu), OPG_OK);
        opg_backend *be = tu_faulty_backend(cpu);
        opg_model *m = NULL;
        assert_int_equal(opg_model_load(tiny_path(models[mi], "gguf"), be, NULL, NULL, &m), OPG_OK);
        const int64_t V = opg_model_hparams(m)->n_vocab;
        int32_t tok[12];
        for (int i = 0; i < 12; i++) tok[i] = (int32_t)((17 * i + 5) % V);
        outputs want = prefill_all(m, tok, 12), want2 = prefill_all(m, tok + 4, 6);
        opg_kv *kv = NULL, *kv2 = NULL;
        assert_int_equal(opg_kv_new(m, 12, &kv), OPG_OK);
        assert_int_equal(opg_kv_new(m, 6, &kv2), OPG_OK);
        outputs o = outputs_new(m, 12), o2 = outputs_new(m, 6);
        opg_batch_seq s[2] = {seq_into(kv, tok, 5, 0, &o, 0)};
        forward_ok(m, s, 1);
        /* then 7 more rows of kv batched with a 6-row prefill of kv2 */
        long fwd_calls = -1;
        for (long k = 0; fwd_calls < 0; k++) {
            s[0] = seq_into(kv, tok + 5, 7, 0, &o, 5);
            s[1] = seq_into(kv2, tok + 4, 6, 0, &o2, 0);
            long c0 = tu_faulty_calls(be);
            tu_faulty_arm(be, k, OPG_ERR_NOMEM);
            int64_t len = opg_kv_len(kv);
            opg_status st = opg_model_forward(m, s, 2);
            tu_faulty_arm(be, -1, OPG_ERR_NOMEM);
            if (st == OPG_OK) {
                fwd_calls = tu_faulty_calls(be) - c0;
                assert_true(k >= fwd_calls && fwd_calls > 10);
                break;
            }
            if (st != OPG_ERR_NOMEM || !strstr(opg_last_error(), "injected") || opg_kv_len(kv) != len ||
                opg_kv_len(kv2) != 0) {
                print_error("%s, forward failing at call %ld: %s: \"%s\", cache lengths %lld %lld\n", models[mi],
                            k, opg_strerror(st), opg_last_error(), (long long)opg_kv_len(kv),
                            (long long)opg_kv_len(kv2));
                fail();
            }
        }
        char what[96];
        snprintf(what, sizeof what, "%s after %ld failed forwards", models[mi], fwd_calls);
        assert_same_outputs(&want, &o, 12, what);
        assert_same_outputs(&want2, &o2, 6, what);
        outputs_free(&want);
        outputs_free(&want2);
        outputs_free(&o);
        outputs_free(&o2);
        opg_kv_free(kv);
        opg_kv_free(kv2);
        opg_model_free(m);
        opg_backend_free(be);
    }
}

static void test_hparams(void **state) {
    (void)state;
    static const struct { const char *name, *arch; int bias, tied, rope; } want[] = {
        {"f32", "llama", 0, 0, OPG_ROPE_NORMAL},
        {"qwen2-f32", "qwen2", 1, 0, OPG_ROPE_NEOX},
        {"tied-f32", "llama", 0, 1, OPG_ROPE_NORMAL},
        {"tied-q8_0", "llama", 0, 1, OPG_ROPE_NORMAL},
    };
    for (int i = 0; i < 4; i++) {
        loaded L = load(want[i].name, 1);
        const opg_hparams *hp = opg_model_hparams(L.m);
        assert_string_equal(hp->arch, want[i].arch);
        assert_int_equal(hp->n_layer, 2);
        assert_int_equal(hp->n_embd, 256);
        assert_int_equal(hp->n_ff, 512);
        assert_int_equal(hp->n_head, 4);
        assert_int_equal(hp->n_head_kv, 2);
        assert_int_equal(hp->head_dim, 64);
        assert_int_equal(hp->n_rot, 64);
        assert_int_equal(hp->n_vocab, 96);
        assert_int_equal(hp->n_ctx_train, 256);
        assert_true(hp->norm_eps == 1e-5f);
        assert_true(hp->rope_base == 10000.0);
        assert_int_equal(hp->rope_mode, want[i].rope);
        assert_int_equal(hp->has_qkv_bias, want[i].bias);
        assert_int_equal(hp->tied_output, want[i].tied);
        assert_ptr_equal(opg_model_backend(L.m), L.be);
        assert_non_null(opg_model_gguf(L.m));
        uint8_t id[32], zero[32] = {0};
        opg_model_id(L.m, id);
        assert_memory_not_equal(id, zero, 32);
        unload(&L);
    }
}

/* The cpu backend's wrap_matrix: quantized matrices of whole groups of
 * 8 rows come back packed (kernels/quant.h) and multiply to the same bits as
 * the GGUF layout; other types and partial groups stay as they are. */
static void test_wrap_matrix(void **state) {
    (void)state;
    opg_backend *be;
    assert_int_equal(opg_backend_cpu_new(2, &be), OPG_OK);
    const opg_backend_ops *o = be->ops;
    assert_non_null(o->wrap_matrix);
    tu_rng r = {31};
    const int64_t M = 3;
    static const struct { opg_dtype t; int64_t N, K; opg_dtype want; } cases[] = {
        {OPG_Q4_1, 24, 320, OPG_Q4_1_X8}, {OPG_Q4_0, 16, 320, OPG_Q4_0_X8},
        {OPG_Q8_0, 16, 320, OPG_Q8_0_X8}, {OPG_Q4_K, 16, 512, OPG_Q4_K_X8},
        {OPG_Q6_K, 16, 512, OPG_Q6_K_X8}, {OPG_Q4_1, 12, 320, OPG_Q4_1},
        {OPG_Q8_0, 12, 320, OPG_Q8_0},    {OPG_Q6_K, 12, 512, OPG_Q6_K},
        {OPG_F16, 16, 320, OPG_F16},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const opg_dtype t = cases[ci].t;
        const int64_t N = cases[ci].N, K = cases[ci].K;
        const size_t rb = opg_dtype_row_bytes(t, K), bb = opg_dtype_block_bytes(t);
        uint8_t *w = tu_alloc(rb * (size_t)N);
        for (size_t i = 0; i < rb * (size_t)N; i++) w[i] = (uint8_t)tu_u64(&r);
        for (size_t off = 0; off < rb * (size_t)N; off += bb) { /* finite f16 scales */
            uint16_t h = opg_f32_to_f16(tu_uniform(&r, -0.05f, 0.05f));
            if (t == OPG_Q6_K) memcpy(w + off + offsetof(opg_block_q6_K, d), &h, 2);
            else memcpy(w + off, &h, 2);
            if (t == OPG_Q4_1 || t == OPG_Q4_K) memcpy(w + off + 2, &h, 2);
        }
        opg_buf *plain, *packed;
        opg_dtype pt;
        assert_int_equal(o->wrap_weights(be, w, rb * (size_t)N, &plain), OPG_OK);
        assert_int_equal(o->wrap_matrix(be, w, rb * (size_t)N, t, N, K, &packed, &pt), OPG_OK);
        assert_int_equal(pt, cases[ci].want);
        uint8_t *back = tu_alloc(rb * (size_t)N), *row = tu_alloc(rb);
        assert_int_equal(o->download(be, back, opg_view_of(packed, 0), rb * (size_t)N), OPG_OK);
        for (int64_t n = 0; n < N; n++) {
            if (opg_dtype_is_x8(pt)) opg_unpack_x8_row(row, back, pt, n, K);
            else memcpy(row, back + (size_t)n * rb, rb);
            assert_memory_equal(row, w + (size_t)n * rb, rb);
        }
        opg_buf *x, *y1, *y2;
        float xs[3 * 512];
        tu_fill(&r, xs, (size_t)(M * K), -2.0f, 2.0f);
        assert_int_equal(o->alloc(be, sizeof xs, &x), OPG_OK);
        assert_int_equal(o->alloc(be, (size_t)(M * N) * 4, &y1), OPG_OK);
        assert_int_equal(o->alloc(be, (size_t)(M * N) * 4, &y2), OPG_OK);
        assert_int_equal(o->upload(be, opg_view_of(x, 0), xs, sizeof xs), OPG_OK);
        opg_view none = {0};
        assert_int_equal(o->matmul(be, opg_view_of(y1, 0), opg_view_of(x, 0), opg_view_of(plain, 0), t,
                                   none, M, N, K), OPG_OK);
        assert_int_equal(o->matmul(be, opg_view_of(y2, 0), opg_view_of(x, 0), opg_view_of(packed, 0), pt,
                                   none, M, N, K), OPG_OK);
        float a[3 * 24], b[3 * 24];
        assert_int_equal(o->download(be, a, opg_view_of(y1, 0), (size_t)(M * N) * 4), OPG_OK);
        assert_int_equal(o->download(be, b, opg_view_of(y2, 0), (size_t)(M * N) * 4), OPG_OK);
        tu_assert_bits(b, a, (size_t)(M * N), opg_dtype_name(pt));
        o->free(be, x); o->free(be, y1); o->free(be, y2); o->free(be, plain); o->free(be, packed);
        /* OPG_CPU_REPACK=0: the file's layout, wrapped without a copy */
        opg_buf *kept;
        setenv("OPG_CPU_REPACK", "0", 1);
        assert_int_equal(o->wrap_matrix(be, w, rb * (size_t)N, t, N, K, &kept, &pt), OPG_OK);
        unsetenv("OPG_CPU_REPACK");
        assert_int_equal(pt, t);
        assert_int_equal(o->download(be, back, opg_view_of(kept, 0), rb * (size_t)N), OPG_OK);
        assert_memory_equal(back, w, rb * (size_t)N);
        o->free(be, kept);
        tu_free(w); tu_free(back); tu_free(row);
    }
    opg_backend_free(be);
}

/* The loader hands every matmul-only weight to wrap_matrix (counted through a
 * copy of the cpu backend's ops); on the AVX2 path the Q4_1 model's matrices
 * come back packed, on the scalar path none; the file's pages the loader
 * dropped read back as the file's bytes (model id and a tensor's bytes
 * against a second, untouched opening of the file). */
static const opg_backend_ops *g_cpu_ops;
static int g_wraps, g_packed;
static opg_dtype g_embed_type; /* the table type of the last embed */

static opg_status recording_embed(opg_backend *be, opg_view out, opg_view table, opg_dtype t, int64_t dim,
                                  int64_t n_vocab, const int32_t *tokens, int64_t n) {
    g_embed_type = t;
    return g_cpu_ops->embed(be, out, table, t, dim, n_vocab, tokens, n);
}

static opg_status counting_wrap_matrix(opg_backend *be, const void *host, size_t bytes, opg_dtype wt,
                                       int64_t N, int64_t K, opg_buf **out, opg_dtype *out_wt) {
    g_wraps++;
    opg_status st = g_cpu_ops->wrap_matrix(be, host, bytes, wt, N, K, out, out_wt);
    if (!st && opg_dtype_is_x8(*out_wt)) g_packed++;
    return st;
}

static void test_model_repacks(void **state) {
    (void)state;
    const opg_cpu_level best = opg_cpu_best_level();
    /* q4_1, q4_K, q6_K: their own output matrix; tied-q8_0: the output is
     * token_embd, of which the backend gets a copy to pack (wrap_matrix once
     * more), which embed then reads too */
    static const char *models[5] = {"q4_1", "q4_K", "q6_K", "tied-q8_0", "mixed"};
    for (int mi = 0; mi < 5; mi++)
    for (int scalar = 0; scalar <= 1; scalar++) {
        const char *path = tiny_path(models[mi], "gguf");
        if (!scalar && best < OPG_CPU_AVX2) continue;
        opg_cpu_set_level(scalar ? OPG_CPU_SCALAR : OPG_CPU_AVX2);
        opg_backend *be;
        assert_int_equal(opg_backend_cpu_new(1, &be), OPG_OK);
        static opg_backend_ops ops;
        g_cpu_ops = be->ops;
        ops = *be->ops;
        ops.wrap_matrix = counting_wrap_matrix;
        ops.embed = recording_embed;
        be->ops = &ops;
        g_wraps = g_packed = 0;
        opg_model *m;
        assert_int_equal(opg_model_load(path, be, NULL, NULL, &m), OPG_OK);
        const opg_hparams *hp = opg_model_hparams(m);
        const int tied = mi == 3;
        assert_int_equal(hp->tied_output, tied);
        /* the layers' 7 matrices and the output matrix (q4_1: its own; tied:
         * the copy of token_embd) */
        assert_int_equal(g_wraps, 7 * hp->n_layer + 1);
        /* every quantized matrix is packed (N % 8 == 0); mixed's BF16 ones are not */
        int quantized = 0;
        opg_gguf *gf = opg_model_gguf(m);
        for (int64_t i = 0; i < opg_gguf_tensor_count(gf); i++) {
            opg_gguf_tensor t;
            assert_int_equal(opg_gguf_tensor_info(gf, i, &t), OPG_OK);
            if (t.n_dims == 2 && opg_dtype_is_quant(t.type) &&
                !(t.name_len == 17 && memcmp(t.name, "token_embd.weight", 17) == 0))
                quantized++;
        }
        if (tied) quantized++; /* the output's copy of token_embd */
        assert_true(quantized > 0 && (mi != 4 || quantized < g_wraps));
        if (scalar) assert_int_equal(g_packed, 0);
        else assert_int_equal(g_packed, quantized);
        /* a tied table packed for the output is the one embed reads */
        opg_kv *kv = NULL;
        assert_int_equal(opg_kv_new(m, 4, &kv), OPG_OK);
        const int32_t tok[2] = {1, 2};
        opg_batch_seq s = {.kv = kv, .tokens = tok, .n = 2, .out_from = 2};
        g_embed_type = (opg_dtype)-1;
        assert_int_equal(opg_model_forward(m, &s, 1), OPG_OK);
        opg_kv_free(kv);
        opg_gguf_tensor te;
        opg_gguf *gm = opg_model_gguf(m);
        assert_int_equal(opg_gguf_tensor_info(gm, opg_gguf_find_tensor(gm, "token_embd.weight"), &te), OPG_OK);
        assert_int_equal(g_embed_type, tied && !scalar ? opg_dtype_x8(te.type) : te.type);
        opg_gguf *g2;
        assert_int_equal(opg_gguf_open(path, &g2), OPG_OK);
        uint8_t a[32], b[32];
        opg_model_id(m, a);
        opg_gguf_sha256(g2, b);
        assert_memory_equal(a, b, 32);
        opg_gguf *g1 = opg_model_gguf(m);
        int64_t i1 = opg_gguf_find_tensor(g1, "blk.1.ffn_down.weight");
        int64_t i2 = opg_gguf_find_tensor(g2, "blk.1.ffn_down.weight");
        opg_gguf_tensor t1, t2;
        assert_int_equal(opg_gguf_tensor_info(g1, i1, &t1), OPG_OK);
        assert_int_equal(opg_gguf_tensor_info(g2, i2, &t2), OPG_OK);
        assert_int_equal(t1.size, t2.size);
        assert_memory_equal(t1.data, t2.data, t1.size);
        opg_gguf_close(g2);
        opg_model_free(m);
        opg_backend_free(be);
    }
    opg_cpu_set_level(best);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_repacks),
        cmocka_unit_test(test_wrap_matrix),
        cmocka_unit_test(test_hparams),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_prefill_decode),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_backend_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
