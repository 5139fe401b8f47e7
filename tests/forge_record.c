/* forge_record.c: a dishonest worker's pen, for tests/cli_verify.sh. Takes
 * a job record, changes its Result as asked, recomputes the trace root of
 * the changed output by re-execution (so that it is self-consistent) and
 * signs a new receipt for it with a fresh key: what a worker that cheats on
 * purpose would send. opg verify must still find what is wrong.
 *
 * Usage: forge_record IN OUT MODEL [n_out|-] [stop|-] [prompt_tokens|-] [tokens_csv|-] [context_size|fit|-]
 *                    [legacy|contract=N]
 *   n_out          keep the first n output tokens
 *   stop           the stop reason (opg.v1.StopReason number)
 *   prompt_tokens  usage.prompt_tokens (receipt and Result)
 *   tokens_csv     replace the output tokens ("500,1"; the trace root is then
 *                  that of the unchanged output when they cannot be re-executed)
 *   context_size   the receipt's context_size; "fit": the one a context stop
 *                  after this output needs (prompt + output - 1)
 *   legacy         "legacy": a receipt without fields 10-13 (what workers
 *                  wrote before they existed), signed by hand
 *   contract=N     the request and the receipt name contract version N
 * "-" keeps a field. Exit 0, or 1 with a message. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "chat.h"
#include "generate.h"
#include "jobrecord.h"
#include "model.h"
#include "receipt.h"
#include "tokenizer.h"
#include "trace.h"

static int die(const char *what) {
    fprintf(stderr, "forge_record: %s: %s\n", what, opg_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4 || sodium_init() < 0) {
        fprintf(stderr, "usage: forge_record IN OUT MODEL [n_out|-] [stop|-] [prompt_tokens|-] [tokens_csv|-] "
                        "[context_size|fit|-] [legacy|contract=N]\n");
        return 2;
    }
    const char *arg_n = argc > 4 ? argv[4] : "-", *arg_stop = argc > 5 ? argv[5] : "-";
    const char *arg_pt = argc > 6 ? argv[6] : "-", *arg_toks = argc > 7 && strcmp(argv[7], "-") ? argv[7] : NULL;
    const char *arg_ctx = argc > 8 ? argv[8] : "-";
    int legacy = argc > 9 && !strcmp(argv[9], "legacy");
    unsigned contract = argc > 9 && !strncmp(argv[9], "contract=", 9) ? (unsigned)atoi(argv[9] + 9) : 0;
    opg_jobrecord *rec = NULL;
    if (opg_jobrecord_load(argv[1], &rec)) return die(argv[1]);
    const Opg__V1__SubmitJob *req = (const Opg__V1__SubmitJob *)rec->request->msg;
    Opg__V1__Result *res = (Opg__V1__Result *)rec->result->msg;
    Opg__V1__Receipt *rc = NULL;
    if (opg_receipt_verify(res->receipt.data, res->receipt.len, &rc)) return die("receipt");
    opg_backend *be = NULL;
    const char *notice = NULL;
    opg_model *m = NULL;
    if (opg_backend_new_auto("cpu", 1, &be, &notice) || opg_model_load(argv[3], be, NULL, NULL, &m))
        return die(argv[3]);
    int32_t *prompt = NULL;
    int64_t n_prompt = 0;
    opg_tokenizer *tok = NULL;
    if (req->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TOKENS) {
        n_prompt = (int64_t)req->tokens->n_ids;
        prompt = malloc((size_t)n_prompt * sizeof *prompt);
        for (int64_t i = 0; prompt && i < n_prompt; i++) prompt[i] = (int32_t)req->tokens->ids[i];
    } else if (opg_tokenizer_from_gguf(opg_model_gguf(m), &tok) ||
               opg_chat_encode_prompt(tok, opg_model_gguf(m), req->text, req->chat, &prompt, &n_prompt)) {
        return die("prompt");
    }
    static uint32_t toks[4096];
    uint32_t *orig = res->output_tokens; /* put back before the record is freed */
    size_t n_orig = res->n_output_tokens;
    ProtobufCBinaryData orig_receipt = res->receipt;
    if (arg_toks) {
        size_t n = 0;
        for (char *s = (char *)arg_toks; *s && n < 4096;) {
            toks[n++] = (uint32_t)strtoul(s, &s, 10);
            if (*s == ',') s++;
        }
        res->output_tokens = toks;
        res->n_output_tokens = n;
    }
    if (strcmp(arg_n, "-")) res->n_output_tokens = (size_t)atol(arg_n);
    if (strcmp(arg_stop, "-")) res->stop_reason = (Opg__V1__StopReason)atoi(arg_stop);
    res->usage->completion_tokens = (uint32_t)res->n_output_tokens;
    if (strcmp(arg_pt, "-")) res->usage->prompt_tokens = (uint32_t)atol(arg_pt);
    /* the trace root of what it now claims, by re-execution */
    int32_t *out = malloc((res->n_output_tokens + 1) * sizeof *out);
    for (size_t i = 0; out && i < res->n_output_tokens; i++) out[i] = (int32_t)res->output_tokens[i];
    opg_sample_params sp = {0};
    if (req->sampling) {
        sp.temperature = req->sampling->temperature;
        sp.top_k = (int32_t)req->sampling->top_k;
        sp.top_p = req->sampling->top_p;
        sp.seed = req->sampling->seed;
    }
    opg_trace *tr = NULL;
    int64_t bad = -1;
    static uint8_t root[32], oh[32];
    if (opg_replay(m, prompt, n_prompt, out, (int64_t)res->n_output_tokens, &sp, 0, &tr, &bad) == OPG_OK) {
        opg_trace_root(tr, root);
        memcpy(res->trace_root.data, root, 32);
    } else if (!arg_toks || res->n_output_tokens == n_orig) {
        return die("re-execution");
    } /* else: ids it cannot run: the root stays the original's */
    opg_receipt_hash_tokens(res->output_tokens, res->n_output_tokens, oh);
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    Opg__V1__Receipt r2 = *rc;
    r2.output_hash = (ProtobufCBinaryData){32, oh};
    r2.trace_root = res->trace_root;
    r2.worker_key = (ProtobufCBinaryData){32, pk};
    r2.usage = res->usage;
    r2.stop_reason = res->stop_reason;
    if (contract) { /* a job of another contract: the request and the receipt say so */
        r2.contract_version = contract;
        ((Opg__V1__SubmitJob *)req)->contract_version = contract;
    }
    if (!strcmp(arg_ctx, "fit")) r2.context_size = res->usage->prompt_tokens + (uint32_t)res->n_output_tokens - 1;
    else if (strcmp(arg_ctx, "-")) r2.context_size = (uint32_t)atol(arg_ctx);
    uint8_t *signed_rc = NULL;
    size_t signed_len = 0;
    if (legacy) { /* opg_receipt_sign refuses it: the SignedReceipt made here */
        r2.sampling = NULL;
        r2.max_tokens = r2.context_size = 0;
        r2.stop_reason = OPG__V1__STOP_REASON__STOP_REASON_UNSPECIFIED;
        size_t rn = protobuf_c_message_get_packed_size(&r2.base), cn = strlen(OPG_RECEIPT_SIG_CONTEXT);
        uint8_t *msg = malloc(cn + rn), sig[64];
        if (!msg) return die("legacy");
        memcpy(msg, OPG_RECEIPT_SIG_CONTEXT, cn);
        protobuf_c_message_pack(&r2.base, msg + cn);
        crypto_sign_detached(sig, NULL, msg, cn + rn, sk);
        Opg__V1__SignedReceipt sr = OPG__V1__SIGNED_RECEIPT__INIT;
        sr.receipt = (ProtobufCBinaryData){rn, msg + cn};
        sr.signature = (ProtobufCBinaryData){64, sig};
        signed_len = protobuf_c_message_get_packed_size(&sr.base);
        signed_rc = malloc(signed_len);
        if (!signed_rc) return die("legacy");
        protobuf_c_message_pack(&sr.base, signed_rc);
        free(msg);
    } else if (opg_receipt_sign(&r2, sk, &signed_rc, &signed_len)) {
        return die("sign");
    }
    res->receipt = (ProtobufCBinaryData){signed_len, signed_rc};
    char *text = NULL;
    int rc_exit = 0;
    if (opg_jobrecord_format(rec->coordinator, req, res, &text) || opg_jobrecord_save(argv[2], text))
        rc_exit = die(argv[2]);
    else
        fprintf(stderr,
                "forge_record: %s: %zu output tokens, stop %d, prompt_tokens %u, context_size %u, sampler disagrees "
                "at %lld\n",
                argv[2], res->n_output_tokens, (int)res->stop_reason, res->usage->prompt_tokens, r2.context_size,
                (long long)bad);
    res->output_tokens = orig;
    res->n_output_tokens = n_orig;
    res->receipt = orig_receipt;
    free(text);
    free(signed_rc);
    opg_trace_free(tr);
    free(out);
    free(prompt);
    opg_tokenizer_free(tok);
    opg_model_free(m);
    opg_backend_free(be);
    opg_receipt_free(rc);
    opg_jobrecord_free(rec);
    return rc_exit;
}
