/* bench_backend_model.c: opg-bench --backend B --model PATH: a whole model on
 * backend B. Prefill tokens/s (one long prompt), decode tokens/s of one
 * sequence and of a batch of 8, and the determinism that matters to a
 * validator: the trace roots of the same jobs on B and on the cpu backend,
 * alone and batched, and a job's root batched against alone.
 *
 * Prompts are fixed pseudo-random token ids and decoding is greedy with no
 * stop token, so every run generates the same number of tokens and the
 * numbers compare across machines. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "generate.h"
#include "model.h"

#define BATCH 8
#define DECODE_PROMPT 16

static int fail(bench_model_result *r, const char *what) {
    snprintf(r->err, sizeof r->err, "%s: %s", what, opg_last_error());
    r->failed = 1;
    return -1;
}

static void fill_prompt(int32_t *ids, int64_t n, int64_t n_vocab, uint64_t seed) {
    bench_rng rng = {seed};
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)(bench_rng_u64(&rng) % (uint64_t)n_vocab);
}

/* Runs n requests together; roots[i] gets request i's trace root. */
static opg_status run_jobs(opg_model *m, opg_gen_request *reqs, int n, int64_t n_ctx,
                           uint8_t roots[][32], opg_gen_options *go) {
    opg_gen_result res[BATCH];
    memset(go, 0, sizeof *go);
    go->n_ctx = n_ctx;
    opg_status st = opg_generate(m, reqs, n, res, go);
    if (st) return st;
    for (int i = 0; i < n; i++) {
        opg_trace_root(res[i].trace, roots[i]);
        opg_gen_result_clear(&res[i]);
    }
    return OPG_OK;
}

static double rate(int64_t tokens, double s) { return s > 0 ? (double)tokens / s : -1; }

int bench_model_measure(opg_backend *be, opg_backend *ref, const char *path, int quick,
                        bench_model_result *r) {
    memset(r, 0, sizeof *r);
    const char *base = strrchr(path, '/');
    snprintf(r->model, sizeof r->model, "%s", base ? base + 1 : path);
    fprintf(stderr, "opg-bench: model %s on %s ...\n", r->model, be->ops->name);
    opg_model *m = NULL, *mref = NULL;
    int32_t *prompt = NULL, *dprompts = NULL;
    int rc = -1;
    double t0 = bench_now();
    if (opg_model_load(path, be, NULL, NULL, &m)) {
        fail(r, "load");
        goto out;
    }
    r->load_s = bench_now() - t0;
    const opg_hparams *hp = opg_model_hparams(m);
    snprintf(r->arch, sizeof r->arch, "%s", hp->arch);
    r->n_layer = hp->n_layer;
    r->n_vocab = hp->n_vocab;
    r->gen = quick ? 8 : 128;
    r->prompt = quick ? 32 : 512;
    int64_t n_ctx = r->prompt + 1 > DECODE_PROMPT + r->gen ? r->prompt + 1 : DECODE_PROMPT + r->gen;
    if (hp->n_ctx_train > 0 && n_ctx > hp->n_ctx_train) {
        snprintf(r->err, sizeof r->err, "the model's context (%lld) is shorter than %lld tokens",
                 (long long)hp->n_ctx_train, (long long)n_ctx);
        r->failed = 1;
        goto out;
    }
    r->batch = BATCH;
    prompt = malloc((size_t)r->prompt * sizeof *prompt);
    dprompts = malloc((size_t)BATCH * DECODE_PROMPT * sizeof *dprompts);
    if (!prompt || !dprompts) {
        snprintf(r->err, sizeof r->err, "out of host memory");
        r->failed = 1;
        goto out;
    }
    fill_prompt(prompt, r->prompt, hp->n_vocab, 0x5eedull);
    opg_gen_request reqs[BATCH];
    memset(reqs, 0, sizeof reqs);
    for (int i = 0; i < BATCH; i++) {
        fill_prompt(dprompts + i * DECODE_PROMPT, DECODE_PROMPT, hp->n_vocab, 1000u + (uint64_t)i);
        reqs[i].prompt = dprompts + i * DECODE_PROMPT;
        reqs[i].n_prompt = DECODE_PROMPT;
        reqs[i].max_tokens = r->gen; /* greedy (temperature 0), no stop tokens */
    }
    opg_gen_request pre = {.prompt = prompt, .n_prompt = r->prompt, .max_tokens = 1};
    uint8_t roots[BATCH][32], alone[1][32], ref_alone[1][32], ref_batch[BATCH][32], pre_root[1][32];
    opg_gen_options go;

    /* warm-up (first-use allocations, lazy module loading) off the clock */
    if (run_jobs(m, &reqs[0], 1, n_ctx, alone, &go)) { fail(r, "warm-up"); goto out; }
    if (run_jobs(m, &pre, 1, n_ctx, pre_root, &go)) { fail(r, "prefill"); goto out; }
    r->prefill_tps = rate(go.prefill_tokens, go.prefill_seconds);
    if (run_jobs(m, &reqs[0], 1, n_ctx, alone, &go)) { fail(r, "decode"); goto out; }
    r->decode_tps_1 = rate(go.decode_tokens, go.decode_seconds);
    if (run_jobs(m, reqs, BATCH, n_ctx, roots, &go)) { fail(r, "batched decode"); goto out; }
    r->decode_tps_batch = rate(go.decode_tokens, go.decode_seconds);
    opg_hex(r->root, alone[0], 32);

    fprintf(stderr, "opg-bench: the same jobs on the cpu backend ...\n");
    if (opg_model_load(path, ref, NULL, NULL, &mref)) { fail(r, "reference load"); goto out; }
    if (run_jobs(mref, &reqs[0], 1, n_ctx, ref_alone, &go)) { fail(r, "reference"); goto out; }
    if (run_jobs(mref, reqs, BATCH, n_ctx, ref_batch, &go)) { fail(r, "reference batch"); goto out; }
    opg_hex(r->root_ref, ref_alone[0], 32);
    r->same_alone = memcmp(alone[0], ref_alone[0], 32) == 0;
    r->same_batched = memcmp(roots, ref_batch, sizeof roots) == 0;
    r->same_in_batch = memcmp(roots[0], alone[0], 32) == 0;
    rc = r->same_alone && r->same_batched && r->same_in_batch ? 0 : -1;
    if (rc) snprintf(r->err, sizeof r->err, "trace roots differ (see the lines above)");
out:
    opg_model_free(mref);
    opg_model_free(m);
    free(prompt);
    free(dprompts);
    return rc;
}

static const char *same(int v) { return v ? "same" : "DIFF"; }

void bench_model_print(FILE *f, const bench_model_result *r) {
    fprintf(f, "\nmodel %s", r->model);
    if (r->n_layer) fprintf(f, " (%s, %d layers, vocabulary %lld)", r->arch, r->n_layer,
                            (long long)r->n_vocab);
    fputc('\n', f);
    if (r->load_s > 0) fprintf(f, "  load            %.2f s\n", r->load_s);
    if (r->prefill_tps > 0)
        fprintf(f, "  prefill         %.1f tokens/s (prompt of %lld)\n", r->prefill_tps,
                (long long)r->prompt);
    if (r->decode_tps_1 > 0)
        fprintf(f, "  decode, 1 seq   %.1f tokens/s (%lld tokens after %d)\n", r->decode_tps_1,
                (long long)r->gen, DECODE_PROMPT);
    if (r->decode_tps_batch > 0)
        fprintf(f, "  decode, %d seqs  %.1f tokens/s in all\n", r->batch, r->decode_tps_batch);
    if (r->root_ref[0]) {
        fprintf(f, "  trace root of job 0 alone: %s\n", r->root);
        fprintf(f, "    = on the cpu backend:           %s\n", same(r->same_alone));
        fprintf(f, "  %d jobs batched = on the cpu backend: %s\n", r->batch, same(r->same_batched));
        fprintf(f, "  job 0 batched = alone:          %s\n", same(r->same_in_batch));
    }
    if (r->err[0]) fprintf(f, "  %s\n", r->err);
}

void bench_model_json(cJSON *obj, const char *key, const bench_model_result *r) {
    cJSON *o = bench_json_add_obj(obj, key);
    bench_json_add_str(o, "file", r->model);
    bench_json_add_str(o, "arch", r->arch);
    bench_json_add_int(o, "layers", r->n_layer);
    bench_json_add_int(o, "vocab", r->n_vocab);
    bench_json_add_int(o, "prompt", r->prompt);
    bench_json_add_int(o, "gen", r->gen);
    bench_json_add_int(o, "batch", r->batch);
    bench_json_add_num(o, "load_s", r->load_s);
    bench_json_add_num(o, "prefill_tps", r->prefill_tps);
    bench_json_add_num(o, "decode_tps_1", r->decode_tps_1);
    bench_json_add_num(o, "decode_tps_batch", r->decode_tps_batch);
    bench_json_add_str(o, "trace_root", r->root);
    bench_json_add_str(o, "trace_root_cpu", r->root_ref);
    bench_json_add_bool(o, "same_alone", r->same_alone);
    bench_json_add_bool(o, "same_batched", r->same_batched);
    bench_json_add_bool(o, "same_in_batch", r->same_in_batch);
    bench_json_add_str(o, "error", r->err);
}
