/* cmd_verify.c: `opg verify RECORD`: checks a job record (net/jobrecord.h)
 * offline, as a validator would: the worker's receipt (signature, and that
 * it names this request and this result), the result's own consistency, and
 * the trace root by re-executing the job (teacher-forced prefill, on the cpu
 * backend unless told otherwise). Exit 0: valid; 3: the record does not
 * hold (what failed is printed); 1: it could not be checked; 2: usage. */
#include "cmd_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "chat.h"
#include "contract.h"
#include "default_model.h"
#include "generate.h"
#include "jobrecord.h"
#include "model.h"
#include "opts.h"
#include "receipt.h"
#include "tokenizer.h"
#include "trace.h"


static void hex(char *out, const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* One check's line; returns ok. */
static int report(const char *what, int ok, const char *detail) {
    printf("%-14s %s%s%s\n", what, ok ? "ok" : "FAILED", detail && detail[0] ? ": " : "", detail ? detail : "");
    return ok;
}

int opg_cmd_verify(int argc, char **argv) {
    char *model_path = (char *)opg_tool_default_model(), *backend = "cpu";
    int64_t threads = 0;
    const opg_opt opts[] = {
        {"model", 'm', OPG_OPT_STR, &model_path, 0, 0, "PATH", "the job's GGUF model (its SHA-256 must be the job's model id)"},
        {"threads", 't', OPG_OPT_INT, &threads, 0, 1024, "T", "CPU threads (0: all)"},
        {"backend", 0, OPG_OPT_STR, &backend, 0, 0, "B", "cpu, cuda, cuda:N or auto: where to re-execute (the bits are the same)"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *usage = "opg verify RECORD [options]\n"
                        "Checks a job record (opg submit --save) offline: the worker's signed receipt, and the\n"
                        "trace root by re-executing the job. Exit 0 valid, 3 invalid, 1 error, 2 usage.";
    int help = 0;
    opg_strv pos = {0};
    opg_status pst = opg_opts_parse(opts, n_opts, argc, argv, &help, &pos);
    if (pst || help || pos.n != 1 || !opg_backend_name_ok(backend)) {
        int bad = !help;
        if (bad) /* no help text: the options now hold what was parsed, not the defaults */
            fprintf(stderr, "opg verify: %s\n(opg verify --help lists the options)\n",
                    pst          ? opg_last_error()
                    : pos.n != 1 ? "one job record file expected"
                                 : "--backend must be auto, cpu, cuda or cuda:N");
        char *text = bad ? NULL : opg_opts_help(opts, n_opts, usage);
        if (text) fputs(text, stdout);
        free(text);
        opg_strv_clear(&pos);
        opg_opts_free(opts, n_opts);
        return bad ? 2 : 0;
    }
    int rc = 1, valid = 1;
    opg_jobrecord *rec = NULL;
    Opg__V1__Receipt *rcpt = NULL;
    opg_backend *be = NULL;
    opg_model *m = NULL;
    opg_tokenizer *tok = NULL;
    int32_t *prompt = NULL, *out = NULL;
    int64_t n_prompt = 0;
    opg_trace *trace = NULL;
    char line[256], h1[65], h2[65];
    opg_status st = opg_jobrecord_load(pos.v[0], &rec);
    if (st) {
        fprintf(stderr, "opg verify: %s\n", opg_last_error());
        goto done;
    }
    const Opg__V1__SubmitJob *req = (const Opg__V1__SubmitJob *)rec->request->msg;
    const Opg__V1__Result *res = (const Opg__V1__Result *)rec->result->msg;
    printf("job            %llu (%s), %zu output tokens\n", (unsigned long long)rec->job_id,
           rec->coordinator[0] ? rec->coordinator : "coordinator not recorded", res->n_output_tokens);
    if (rec->job_id != res->job_id) { /* the record's own copy of the id was changed, or the result swapped */
        snprintf(line, sizeof line, "the result is of job %llu, the record of job %llu",
                 (unsigned long long)res->job_id, (unsigned long long)rec->job_id);
        valid &= report("record job", 0, line);
    }

    /* 1. the receipt: signed by its key, naming this request and result */
    st = opg_receipt_verify(res->receipt.data, res->receipt.len, &rcpt);
    if (st == OPG_OK || st == OPG_ERR_DENIED) {
        valid &= report("signature", st == OPG_OK, st == OPG_OK ? "" : opg_last_error());
    } else { /* not a receipt this opg reads: its signature was not even looked at */
        snprintf(line, sizeof line, "%s (not a receipt of this protocol: an older or newer opg's, or damaged)",
                 opg_last_error());
        valid &= report("receipt", 0, line);
    }
    if (rcpt) {
        hex(h1, rcpt->worker_key.data, 32);
        printf("worker key     ed25519:%s\n", h1);
        uint8_t oh[32];
        opg_receipt_hash_tokens(res->output_tokens, res->n_output_tokens, oh);
        valid &= report("receipt job", rcpt->job_id == res->job_id, NULL);
        valid &= report("receipt model", !memcmp(rcpt->model_id.data, req->model_id.data, 32), NULL);
        valid &= report("receipt output", !memcmp(rcpt->output_hash.data, oh, 32), NULL);
        valid &= report("receipt root", !memcmp(rcpt->trace_root.data, res->trace_root.data, 32), NULL);
        valid &= report("receipt usage", rcpt->usage->completion_tokens == res->usage->completion_tokens &&
                                             rcpt->usage->prompt_tokens == res->usage->prompt_tokens, NULL);
        valid &= report("receipt stop", rcpt->stop_reason == res->stop_reason,
                        rcpt->stop_reason == res->stop_reason ? "" : "the Result's stop reason is not the one signed");
        /* what the worker ran the job with, as it signed it: when the
           record's request says otherwise, one of the two was changed */
        int same_params = rcpt->max_tokens == req->max_tokens &&
                          opg_proto_sampling_equal(rcpt->sampling, req->sampling) &&
                          rcpt->contract_version == req->contract_version;
        valid &= report("receipt params", same_params,
                        same_params ? "" : "the worker signed other sampling parameters, max_tokens or contract "
                                           "than the request's");
        if (!valid) goto verdict; /* the record does not hold: no need to re-run it */
        if (rcpt->contract_version != OPG_CONTRACT_VERSION) {
            /* another contract's arithmetic is not ours to re-run: that is
               no fault of the worker's */
            printf("contract       v%u, this opg runs v%d: not checked\n", rcpt->contract_version,
                   OPG_CONTRACT_VERSION);
            fprintf(stderr, "opg verify: the job ran contract v%u; this opg runs v%d and cannot re-execute it\n",
                    rcpt->contract_version, OPG_CONTRACT_VERSION);
            goto done;
        }
    }

    /* 2. the model: the file given must be the job's */
    const char *notice = NULL;
    if (!valid) goto verdict; /* the receipt failed already: that is the answer */
    if ((st = opg_backend_new_auto(backend, (int)threads, &be, &notice))) {
        fprintf(stderr, "opg verify: backend: %s\n", opg_last_error());
        goto done;
    }
    if (notice) fprintf(stderr, "opg verify: %s\n", notice);
    if ((st = opg_model_load(model_path, be, NULL, NULL, &m))) {
        fprintf(stderr, "opg verify: %s\n", opg_last_error());
        goto done;
    }
    uint8_t mid[32];
    opg_model_id(m, mid);
    hex(h1, req->model_id.data, 32);
    hex(h2, mid, 32);
    if (memcmp(mid, req->model_id.data, 32)) {
        fprintf(stderr, "opg verify: %s is model sha256:%s, the job's is sha256:%s: give that model with -m\n",
                model_path, h2, h1);
        goto done;
    }
    printf("model          sha256:%s (%s)\n", h1, model_path);

    /* 3. the prompt as the worker saw it: the ids, or the text encoded as a worker does */
    if (req->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TOKENS) {
        n_prompt = (int64_t)req->tokens->n_ids;
        prompt = malloc((size_t)n_prompt * sizeof *prompt);
        if (!prompt) goto oom;
        for (int64_t i = 0; i < n_prompt; i++) prompt[i] = (int32_t)req->tokens->ids[i];
    } else {
        if ((st = opg_tokenizer_from_gguf(opg_model_gguf(m), &tok)) ||
            (st = opg_chat_encode_prompt(tok, opg_model_gguf(m), req->text, req->chat, &prompt, &n_prompt))) {
            fprintf(stderr, "opg verify: the prompt: %s\n", opg_last_error());
            goto done;
        }
    }
    uint8_t ph[32];
    uint32_t *u = malloc((size_t)(n_prompt ? n_prompt : 1) * sizeof *u);
    if (!u) goto oom;
    for (int64_t i = 0; i < n_prompt; i++) u[i] = (uint32_t)prompt[i];
    opg_receipt_hash_tokens(u, (size_t)n_prompt, ph);
    free(u);
    int same_prompt = !memcmp(rcpt->prompt_hash.data, ph, 32) && rcpt->usage->prompt_tokens == (uint64_t)n_prompt;
    snprintf(line, sizeof line, "%lld tokens%s", (long long)n_prompt,
             same_prompt ? "" : ": the worker signed another prompt or length than the request's (one of the "
                                "two was changed)");
    valid &= report("receipt prompt", same_prompt, line);
    /* informational: a worker may run a shorter context than the job
       could use; it is signed, so whoever pays can see it */
    int64_t could_use = n_prompt + (int64_t)req->max_tokens - 1;
    printf("context        %u positions (the worker's)%s\n", rcpt->context_size,
           (int64_t)rcpt->context_size < could_use ? ", fewer than the job could fill" : "");

    /* 4. the result's own consistency: it stops where it says it stops */
    if (!tok && opg_tokenizer_from_gguf(opg_model_gguf(m), &tok) != OPG_OK) tok = NULL;
    size_t n_out = res->n_output_tokens, first_eog = n_out;
    for (size_t i = 0; tok && i < n_out; i++)
        if (opg_tokenizer_is_eog(tok, (int32_t)res->output_tokens[i])) {
            first_eog = i;
            break;
        }
    /* A worker generates at least one token and stops at the first
     * end-of-generation token (its stop list is the tokenizer's), at
     * max_tokens, or when its context is full (the receipt's context_size:
     * every position holds a token, and the last token is sampled, never
     * cached); it never sends a Result for a cancelled job. */
    int stop_ok = 1;
    const char *why = "";
    /* past the receipt's checks rcpt is there: a record without one failed them */
    switch (rcpt->stop_reason) { /* what the worker signed */
    case OPG__V1__STOP_REASON__STOP_REASON_EOS:
        stop_ok = tok && n_out > 0 && first_eog == n_out - 1;
        why = tok ? "eos, so the last token and no other is an end-of-generation token"
                  : "eos, but the model has no tokenizer, so no end-of-generation token";
        break;
    case OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS:
        stop_ok = n_out == req->max_tokens && first_eog == n_out;
        why = "max_tokens, so exactly max_tokens tokens and no end-of-generation token";
        break;
    case OPG__V1__STOP_REASON__STOP_REASON_CONTEXT:
        stop_ok = n_out > 0 && n_out < req->max_tokens && first_eog == n_out &&
                  n_prompt + (int64_t)n_out == (int64_t)rcpt->context_size + 1;
        why = "context full, so at least one token, fewer than max_tokens, none of them an end, and prompt + "
              "output = the receipt's context_size + 1";
        break;
    default:
        stop_ok = 0;
        why = "a Result of a cancelled job (a worker sends none)";
        break;
    }
    valid &= report("stop", stop_ok, stop_ok ? "" : why);

    /* 5. re-execution: the trace root, and the sampler's choices */
    out = malloc((n_out ? n_out : 1) * sizeof *out);
    if (!out) goto oom;
    for (size_t i = 0; i < n_out; i++) out[i] = (int32_t)res->output_tokens[i];
    opg_sample_params sp = {0};
    if (req->sampling) {
        sp.temperature = req->sampling->temperature;
        sp.top_k = (int32_t)(req->sampling->top_k > INT32_MAX ? INT32_MAX : req->sampling->top_k);
        sp.top_p = req->sampling->top_p;
        sp.seed = req->sampling->seed;
    }
    /* ids the model has: else the re-execution could not run them (and a
       worker could not have produced them) */
    const int64_t n_vocab = opg_model_hparams(m)->n_vocab;
    int64_t oov = -1;
    for (size_t i = 0; i < n_out && oov < 0; i++)
        if ((int64_t)out[i] < 0 || (int64_t)out[i] >= n_vocab) oov = (int64_t)i;
    for (int64_t i = 0; i < n_prompt && oov < 0; i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab) oov = (int64_t)n_out + i;
    snprintf(line, sizeof line, "%s token %lld is outside the vocabulary [0, %lld)",
             oov < (int64_t)n_out ? "output" : "prompt", (long long)(oov < (int64_t)n_out ? oov : oov - (int64_t)n_out),
             (long long)n_vocab);
    if (!report("token ids", oov < 0, oov < 0 ? "" : line)) valid = 0;
    if (!valid) goto verdict; /* a re-execution would tell nothing more, at the cost of a prefill */
    int64_t bad = -1;
    if ((st = opg_replay(m, prompt, n_prompt, out, (int64_t)n_out, &sp, 0, &trace, &bad))) {
        fprintf(stderr, "opg verify: re-execution: %s\n", opg_last_error());
        goto done;
    }
    uint8_t root[32];
    opg_trace_root(trace, root);
    hex(h1, root, 32);
    int same = !memcmp(root, res->trace_root.data, 32);
    if (!same) {
        hex(h2, res->trace_root.data, 32);
        snprintf(line, sizeof line, "re-executed %s, the result says %s", h1, h2);
    }
    valid &= report("trace root", same, same ? h1 : line);
    snprintf(line, sizeof line, "the sampler picks another token at output %lld", (long long)bad);
    valid &= report("sampling", bad < 0, bad < 0 ? "" : line);

verdict:
    printf("verdict        %s\n", valid ? "VALID" : "INVALID");
    rc = valid ? 0 : 3;
    goto done;
oom:
    fprintf(stderr, "opg verify: out of memory\n");
done:
    opg_trace_free(trace);
    free(out);
    free(prompt);
    opg_tokenizer_free(tok);
    opg_model_free(m);
    opg_backend_free(be);
    opg_receipt_free(rcpt);
    opg_jobrecord_free(rec);
    opg_strv_clear(&pos);
    opg_opts_free(opts, n_opts);
    return rc;
}
