/* generate.c: generation to completion over the scheduler (scheduler.h), and teacher-forced replay. */
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fpenv.h"
#include "scheduler.h"

void opg_gen_result_clear(opg_gen_result *r) {
    if (!r) return;
    free(r->tokens);
    opg_trace_free(r->trace);
    memset(r, 0, sizeof *r);
}

/* opg_generate is the scheduler run to completion; tags are request indices. */
typedef struct {
    opg_gen_result *results;
    opg_gen_options *opt;
} gen_ctx;

static int gen_on_token(void *ctx, uint64_t tag, int64_t index, int32_t token) {
    (void)index;
    gen_ctx *g = ctx;
    return g->opt && g->opt->on_token ? g->opt->on_token(g->opt->ctx, (int)tag, token) : 0;
}

static void gen_on_done(void *ctx, uint64_t tag, opg_gen_result *r) {
    gen_ctx *g = ctx;
    g->results[tag] = *r;
}

opg_status opg_generate(opg_model *m, const opg_gen_request *reqs, int n_reqs,
                        opg_gen_result *results, opg_gen_options *opt) {
    memset(results, 0, (size_t)n_reqs * sizeof *results);
    gen_ctx g = {results, opt};
    opg_sched_options so = {opt ? opt->n_ctx : 0, opt ? opt->step_tokens : 0, NULL, NULL};
    opg_sched_events ev = {gen_on_token, gen_on_done, &g};
    opg_sched *s = NULL;
    opg_status st = opg_sched_new(m, &so, &ev, &s);
    if (st) return st;
    for (int i = 0; i < n_reqs && st == OPG_OK; i++) {
        st = opg_sched_add(s, &reqs[i], (uint64_t)i);
        if (st) {
            char why[400];
            snprintf(why, sizeof why, "%s", opg_last_error());
            opg__fail(st, "%s (request %d)", why, i);
        }
    }
    while (st == OPG_OK && opg_sched_active(s) > 0) st = opg_sched_step(s);
    if (st == OPG_OK && opt) {
        const opg_sched_stats *ss = opg_sched_stats_get(s);
        opt->prefill_tokens += ss->prefill_tokens;
        opt->decode_tokens += ss->decode_tokens;
        opt->prefill_seconds += ss->prefill_seconds;
        opt->decode_seconds += ss->decode_seconds;
    }
    opg_sched_free(s);
    if (st)
        for (int i = 0; i < n_reqs; i++) opg_gen_result_clear(&results[i]);
    return st;
}

static opg_status replay(opg_model *m, const int32_t *prompt, int64_t n_prompt,
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
    /* the rows are sampled where the forward pass ran: only ids come back */
    int64_t *picked = malloc((size_t)step_tokens * sizeof *picked);
    uint64_t *lfp = malloc((size_t)step_tokens * (size_t)hp->n_layer * sizeof(uint64_t));
    uint64_t *gfp = malloc((size_t)step_tokens * sizeof(uint64_t));
    opg_kv *kv = NULL;
    opg_trace *tr = NULL;
    opg_status st = OPG_OK;
    if (!all || !picked || !lfp || !gfp) { st = opg__fail(OPG_ERR_NOMEM, "replay: out of memory"); goto out; }
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
        /* row first_out is output index p0 + first_out - (n_prompt - 1) */
        uint64_t step0 = (uint64_t)(p0 + first_out - (n_prompt - 1));
        opg_batch_seq b = {kv, all + p0, c, first_out, NULL, lfp, gfp, sampling, step0, picked};
        if ((st = opg_model_forward(m, &b, 1))) goto out;
        for (int64_t r = first_out; r < c; r++) {
            int64_t k = p0 + r - (n_prompt - 1); /* output index */
            int64_t t = picked[r - first_out];
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
    free(picked);
    free(lfp);
    free(gfp);
    return st;
}

/* Under the contract's floating-point environment (fpenv.h): it samples. */
opg_status opg_replay(opg_model *m, const int32_t *prompt, int64_t n_prompt,
                      const int32_t *output, int64_t n_output,
                      const opg_sample_params *sampling, int64_t step_tokens,
                      opg_trace **trace_out, int64_t *first_bad) {
    opg_fpenv saved;
    opg_fpenv_enter(&saved);
    opg_status st = replay(m, prompt, n_prompt, output, n_output, sampling, step_tokens, trace_out, first_bad);
    opg_fpenv_leave(&saved);
    return st;
}
