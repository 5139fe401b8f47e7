/* generate.c: the continuous-batching generation loop and teacher-forced replay. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    opg_kv *kv;
    int64_t fed;           /* prompt tokens fed so far */
    int done;
    int32_t last;          /* last sampled token, fed next step */
    int64_t cap;           /* capacity of result tokens */
    /* this step's outputs */
    float *logits;
    uint64_t *layer_fp;
    uint64_t logits_fp;
} seq_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void opg_gen_result_clear(opg_gen_result *r) {
    if (!r) return;
    free(r->tokens);
    opg_trace_free(r->trace);
    memset(r, 0, sizeof *r);
}

static int is_stop(const opg_gen_request *q, int32_t t) {
    for (int i = 0; i < q->n_stop; i++)
        if (q->stop[i] == t) return 1;
    return 0;
}

static opg_status push_token(opg_gen_result *r, seq_state *s, int32_t t) {
    if (r->n_tokens == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        int32_t *p = realloc(r->tokens, (size_t)cap * sizeof *p);
        if (!p) return opg__fail(OPG_ERR_NOMEM, "generate: out of memory");
        r->tokens = p;
        s->cap = cap;
    }
    r->tokens[r->n_tokens++] = t;
    return OPG_OK;
}

opg_status opg_generate(opg_model *m, const opg_gen_request *reqs, int n_reqs,
                        opg_gen_result *results, opg_gen_options *opt) {
    const opg_hparams *hp = opg_model_hparams(m);
    int64_t n_ctx = opt && opt->n_ctx > 0 ? opt->n_ctx : hp->n_ctx_train;
    int64_t step_tokens = opt && opt->step_tokens > 0 ? opt->step_tokens : 256;
    memset(results, 0, (size_t)n_reqs * sizeof *results);
    for (int i = 0; i < n_reqs; i++) {
        if (reqs[i].n_prompt < 1 || reqs[i].max_tokens < 0)
            return opg__fail(OPG_ERR_ARG, "generate: request %d needs a prompt and max_tokens >= 0", i);
        if (reqs[i].n_prompt >= n_ctx)
            return opg__fail(OPG_ERR_LIMIT,
                             "prompt too long: %lld tokens, the context holds %lld (request %d)",
                             (long long)reqs[i].n_prompt, (long long)n_ctx, i);
    }
    opg_status st = OPG_OK;
    int64_t V = hp->n_vocab;
    seq_state *ss = calloc((size_t)n_reqs, sizeof *ss);
    opg_batch_seq *batch = calloc((size_t)n_reqs, sizeof *batch);
    void *scratch = malloc(opg_sample_scratch_bytes(V));
    if (!ss || !batch || !scratch) { st = opg__fail(OPG_ERR_NOMEM, "generate: out of memory"); goto out; }
    for (int i = 0; i < n_reqs; i++) {
        seq_state *s = &ss[i];
        int64_t need = reqs[i].n_prompt + reqs[i].max_tokens;
        if ((st = opg_kv_new(m, need < n_ctx ? need : n_ctx, &s->kv))) goto out;
        if ((st = opg_trace_new(hp->n_layer, &results[i].trace))) goto out;
        s->logits = malloc((size_t)V * sizeof(float));
        s->layer_fp = malloc((size_t)hp->n_layer * sizeof(uint64_t));
        if (!s->logits || !s->layer_fp) { st = opg__fail(OPG_ERR_NOMEM, "generate: out of memory"); goto out; }
        s->done = reqs[i].max_tokens == 0;
        if (s->done) results[i].stop = OPG_STOP_MAX_TOKENS;
    }
    for (;;) {
        int nb = 0;
        int64_t budget = step_tokens, prompt_rows = 0;
        int idx[n_reqs > 0 ? n_reqs : 1];
        for (int i = 0; i < n_reqs; i++) {
            seq_state *s = &ss[i];
            if (s->done) continue;
            opg_batch_seq *b = &batch[nb];
            memset(b, 0, sizeof *b);
            b->kv = s->kv;
            if (s->fed < reqs[i].n_prompt) {
                if (budget <= 0) continue; /* its prompt continues next step */
                int64_t c = reqs[i].n_prompt - s->fed;
                if (c > budget) c = budget;
                budget -= c;
                prompt_rows += c;
                b->tokens = reqs[i].prompt + s->fed;
                b->n = c;
                s->fed += c;
                b->out_from = s->fed == reqs[i].n_prompt ? c - 1 : c;
            } else {
                b->tokens = &s->last;
                b->n = 1;
                b->out_from = 0;
            }
            if (b->out_from < b->n) {
                b->logits = s->logits;
                b->layer_fp = s->layer_fp;
                b->logits_fp = &s->logits_fp;
            }
            idx[nb++] = i;
        }
        if (nb == 0) break;
        double t0 = now_s();
        if ((st = opg_model_forward(m, batch, nb))) goto out;
        double dt = now_s() - t0;
        if (opt) {
            int64_t rows = 0;
            for (int j = 0; j < nb; j++) rows += batch[j].n;
            if (prompt_rows > 0) { opt->prefill_seconds += dt; opt->prefill_tokens += prompt_rows; }
            else { opt->decode_seconds += dt; opt->decode_tokens += rows; }
        }
        for (int j = 0; j < nb; j++) {
            int i = idx[j];
            seq_state *s = &ss[i];
            opg_gen_result *r = &results[i];
            if (batch[j].out_from >= batch[j].n) continue;
            int64_t pos = opg_kv_len(s->kv) - 1;
            int64_t t = opg_sample_ref(s->logits, V, &reqs[i].sampling, (uint64_t)r->n_tokens, scratch);
            if (t < 0) { st = opg__fail(OPG_ERR_STATE, "generate: logits are all NaN at position %lld", (long long)pos); goto out; }
            if ((st = push_token(r, s, (int32_t)t))) goto out;
            if ((st = opg_trace_add(r->trace, (int32_t)t, pos, s->layer_fp, s->logits_fp))) goto out;
            s->last = (int32_t)t;
            int stop_cb = opt && opt->on_token ? opt->on_token(opt->ctx, i, (int32_t)t) : 0;
            if (is_stop(&reqs[i], (int32_t)t)) { s->done = 1; r->stop = OPG_STOP_EOG; }
            else if (r->n_tokens >= reqs[i].max_tokens) { s->done = 1; r->stop = OPG_STOP_MAX_TOKENS; }
            else if (opg_kv_len(s->kv) >= opg_kv_capacity(s->kv)) { s->done = 1; r->stop = OPG_STOP_CONTEXT; }
            else if (stop_cb) { s->done = 1; r->stop = OPG_STOP_NONE; }
        }
    }
out:
    for (int i = 0; ss && i < n_reqs; i++) {
        opg_kv_free(ss[i].kv);
        free(ss[i].logits);
        free(ss[i].layer_fp);
    }
    if (st)
        for (int i = 0; i < n_reqs; i++) opg_gen_result_clear(&results[i]);
    free(ss);
    free(batch);
    free(scratch);
    return st;
}

opg_status opg_replay(opg_model *m, const int32_t *prompt, int64_t n_prompt,
                      const int32_t *output, int64_t n_output,
                      const opg_sample_params *sampling, int64_t step_tokens,
                      opg_trace **trace_out, int64_t *first_bad) {
    const opg_hparams *hp = opg_model_hparams(m);
    *trace_out = NULL;
    *first_bad = -1;
    if (n_prompt < 1 || n_output < 0)
        return opg__fail(OPG_ERR_ARG, "replay: needs a prompt and a non-negative output length");
    if (step_tokens <= 0) step_tokens = 256;
    /* The sequence fed: prompt, then every output token but the last. */
    int64_t n_all = n_prompt + (n_output > 0 ? n_output - 1 : 0);
    int32_t *all = malloc((size_t)(n_all ? n_all : 1) * sizeof *all);
    float *logits = malloc((size_t)step_tokens * (size_t)hp->n_vocab * sizeof(float));
    uint64_t *lfp = malloc((size_t)step_tokens * (size_t)hp->n_layer * sizeof(uint64_t));
    uint64_t *gfp = malloc((size_t)step_tokens * sizeof(uint64_t));
    void *scratch = malloc(opg_sample_scratch_bytes(hp->n_vocab));
    opg_kv *kv = NULL;
    opg_trace *tr = NULL;
    opg_status st = OPG_OK;
    if (!all || !logits || !lfp || !gfp || !scratch) { st = opg__fail(OPG_ERR_NOMEM, "replay: out of memory"); goto out; }
    memcpy(all, prompt, (size_t)n_prompt * sizeof *all);
    if (n_output > 1) memcpy(all + n_prompt, output, (size_t)(n_output - 1) * sizeof *all);
    if ((st = opg_kv_new(m, n_all, &kv))) goto out;
    if ((st = opg_trace_new(hp->n_layer, &tr))) goto out;
    for (int64_t p0 = 0; p0 < n_all; p0 += step_tokens) {
        int64_t c = n_all - p0 < step_tokens ? n_all - p0 : step_tokens;
        /* rows at positions >= n_prompt-1 produce output tokens */
        int64_t first_out = n_prompt - 1 - p0;
        if (first_out < 0) first_out = 0;
        if (n_output == 0 || first_out > c) first_out = c;
        opg_batch_seq b = {kv, all + p0, c, first_out, logits, lfp, gfp};
        if ((st = opg_model_forward(m, &b, 1))) goto out;
        for (int64_t r = first_out; r < c; r++) {
            int64_t k = p0 + r - (n_prompt - 1); /* output index */
            const float *lg = logits + (size_t)(r - first_out) * (size_t)hp->n_vocab;
            int64_t t = opg_sample_ref(lg, hp->n_vocab, sampling, (uint64_t)k, scratch);
            if (t != output[k] && *first_bad < 0) *first_bad = k;
            if ((st = opg_trace_add(tr, output[k], p0 + r, lfp + (r - first_out) * hp->n_layer,
                                    gfp[r - first_out])))
                goto out;
        }
    }
    *trace_out = tr;
    tr = NULL;
out:
    opg_trace_free(tr);
    opg_kv_free(kv);
    free(all);
    free(logits);
    free(lfp);
    free(gfp);
    free(scratch);
    return st;
}
