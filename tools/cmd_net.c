/* cmd_net.c: `opg submit` (a job to a coordinator), `opg keygen`, and what
 * the commands that talk to a coordinator share (cmd_net.h). */
#include "cmd_net.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "contract.h"
#include "default_model.h"
#include "gguf.h"
#include "jobrecord.h"
#include "keys.h"
#include "opts.h"
#include "piece.h"
#include "prompt.h"
#include "tokenizer.h"
#include "trace.h"


static int parse_hex32(const char *s, uint8_t out[32]) {
    if (!s || strlen(s) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

int opg_tool_connect(const char *cmd, const opg_tool_conn *conn, opg_client **out) {
    *out = NULL;
    opg_keypair key;
    uint8_t spk[32];
    if (conn->server_key && !conn->key_path) {
        fprintf(stderr, "opg %s: --server-key needs --key (the coordinator admits clients by key)\n", cmd);
        return 2;
    }
    if (conn->key_path && !conn->server_key) { /* it would go unused: the link would not be CurveZMQ */
        fprintf(stderr, "opg %s: --key needs --server-key (the coordinator's public key, for CurveZMQ)\n", cmd);
        return 2;
    }
    if (conn->server_key &&
        (opg_key_parse_public(conn->server_key, spk) != OPG_OK || opg_key_load(conn->key_path, &key) != OPG_OK)) {
        fprintf(stderr, "opg %s: %s\n", cmd, opg_last_error());
        return 1;
    }
    opg_status st = opg_client_new(conn->endpoint, conn->server_key ? &key : NULL, conn->server_key ? spk : NULL, out);
    if (conn->server_key) opg_keypair_wipe(&key); /* the client keeps its own copy */
    if (st) {
        fprintf(stderr, "opg %s: %s\n", cmd, opg_last_error());
        return 1;
    }
    return 0;
}

int opg_tool_check_save(const char *cmd, const char *path) {
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "opg %s: --save %s: exists (a job record is never overwritten)\n", cmd, path);
        return 2;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "opg %s: --save %s: cannot write in %s: %s\n", cmd, path, dir, strerror(errno));
        return 2;
    }
    return 0;
}

int opg_tool_save_record(const char *cmd, const char *path, const char *endpoint, const Opg__V1__SubmitJob *req,
                         const Opg__V1__Result *res) {
    char *rec = NULL;
    int rc = 0;
    if (opg_jobrecord_format(endpoint, req, res, &rec) != OPG_OK || opg_jobrecord_save(path, rec) != OPG_OK) {
        fprintf(stderr, "opg %s: --save: %s\n", cmd, opg_last_error());
        rc = 1;
    } else {
        printf("record=%s\n", path);
    }
    free(rec);
    return rc;
}

void opg_tool_print_summary(uint64_t job, const Opg__V1__Result *r) {
    static const char *stops[] = {"-", "eos", "max_tokens", "cancelled", "context"};
    char hex[65];
    opg_hex(hex, r->trace_root.data, 32);
    printf("job=%llu tokens=%zu stop=%s receipt_bytes=%zu trace_root=%s\n", (unsigned long long)job,
           r->n_output_tokens, stops[r->stop_reason < 5 ? r->stop_reason : 0], r->receipt.len, hex);
}

void opg_tool_print_tokens(void *ctx, uint32_t index, const uint32_t *t, size_t n) {
    opg_tool_stream *so = ctx;
    if (so->quiet) return;
    if (!so->lost && so->n_seen + n > so->cap_seen) { /* kept for opg_tool_stream_check */
        size_t cap = so->cap_seen ? 2 * so->cap_seen : 256;
        while (cap < so->n_seen + n) cap *= 2;
        uint32_t *p = realloc(so->seen, cap * sizeof *p);
        if (p) {
            so->seen = p;
            so->cap_seen = cap;
        } else {
            so->lost = 1; /* without memory: no check */
        }
    }
    if (!so->lost) {
        memcpy(so->seen + so->n_seen, t, n * sizeof *t);
        so->n_seen += n;
    }
    for (size_t i = 0; i < n; i++) {
        if (!so->tok) {
            printf("%s%u", index + i ? " " : "", t[i]);
            continue;
        }
        opg_tool_write_piece(so->tok, (int32_t)t[i], stdout);
    }
    fflush(stdout);
}

int opg_tool_stream_check(opg_tool_stream *so, const Opg__V1__Result *r) {
    size_t same = 0;
    while (same < so->n_seen && same < r->n_output_tokens && so->seen[same] == r->output_tokens[same]) same++;
    if (so->quiet || so->lost || same == so->n_seen) return 0;
    fflush(stdout); /* the stream's last line before the notice, also when both go to one file */
    fprintf(stderr, "opg: the job's result differs from the tokens streamed above from token %zu on (%zu streamed, "
                    "%zu in the result: it ran again, after its worker or the coordinator was lost, or a worker's "
                    "stream and result disagree); the result:\n",
            same, so->n_seen, r->n_output_tokens);
    opg_tool_stream again = {so->tok, 0, NULL, 0, 0, 0};
    opg_tool_print_tokens(&again, 0, r->output_tokens, r->n_output_tokens);
    opg_tool_stream_clear(&again);
    putchar('\n');
    return 1;
}

void opg_tool_stream_clear(opg_tool_stream *so) {
    free(so->seen);
    so->seen = NULL;
    so->n_seen = so->cap_seen = 0;
    so->lost = 0;
}

int opg_cmd_submit(int argc, char **argv) {
    char *model = (char *)opg_tool_default_model(), *model_id = NULL, *prompt = NULL, *save = NULL;
    char *prompt_file = NULL, *prompt_buf = NULL;
    const char *text_in = NULL;
    opg_tool_conn conn = OPG_TOOL_CONN_DEFAULTS;
    int chat = 0, no_wait = 0, quiet = 0;
    int64_t max_tokens = 64, seed = 0, top_k = 40, max_price = 0;
    double temp = 0.0, top_p = 0.95;
    const opg_opt opts[] = {
        OPG_TOOL_CONN_OPTS(conn),
        {"model", 'm', OPG_OPT_STR, &model, 0, 0, "PATH", "local GGUF file: its SHA-256 is the model id, its tokenizer prints the output"},
        {"model-id", 0, OPG_OPT_STR, &model_id, 0, 0, "HEX", "model id (SHA-256) when the file is not here; output printed as ids"},
        {"prompt", 'p', OPG_OPT_STR, &prompt, 0, 0, "TEXT", "the prompt"},
        {"prompt-file", 'f', OPG_OPT_STR, &prompt_file, 0, 0, "FILE",
         "the prompt is FILE's text (\"-\": standard input; at most 1 MiB), for prompts longer than a command line holds"},
        {"chat", 0, OPG_OPT_BOOL, &chat, 0, 0, NULL, "the worker wraps the prompt in the model's chat template"},
        {"max-tokens", 'n', OPG_OPT_INT, &max_tokens, 1, 65536, "N", "tokens to generate at most"},
        {"seed", 0, OPG_OPT_INT, &seed, 0, INT64_MAX, "S", "sampling seed"},
        {"temp", 0, OPG_OPT_DOUBLE, &temp, 0, 0, "T", "temperature, 0 = greedy (0..100)"},
        {"top-k", 0, OPG_OPT_INT, &top_k, 0, 1 << 24, "K", "top-k cut, 0 = off"},
        {"top-p", 0, OPG_OPT_DOUBLE, &top_p, 0, 0, "P", "nucleus cut (0..1)"},
        {"max-price", 0, OPG_OPT_INT, &max_price, 0, INT64_MAX, "N", "most the job may cost (0: no limit)"},
        {"no-wait", 0, OPG_OPT_BOOL, &no_wait, 0, 0, NULL, "print the job id and return (opg result JOB gets it later)"},
        {"quiet", 'q', OPG_OPT_BOOL, &quiet, 0, 0, NULL, "no streamed text, only the summary lines"},
        {"save", 0, OPG_OPT_STR, &save, 0, 0, "FILE",
         "write the job record (request, result, receipt) to FILE, which must not exist: opg verify FILE"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    char *text = NULL;
    int code = opg_opts_main(opts, n_opts, argc, argv,
                             "opg submit -p PROMPT | -f FILE [options]\n"
                             "Submits a job to a coordinator, streams its output and prints its trace root.", &text);
    if (code >= 0) {
        if (code) fprintf(stderr, "opg submit: %s\n", text ? text : opg_last_error());
        else if (text) fputs(text, stdout);
        free(text);
        opg_opts_free(opts, n_opts);
        return code;
    }
    int rc = 1;
    opg_status st = OPG_OK;
    opg_gguf *g = NULL;
    opg_tokenizer *tok = NULL;
    opg_client *cl = NULL;
    opg_frame *res = NULL;
    uint8_t id[32];
    if (prompt && prompt[0] && prompt_file) {
        fprintf(stderr, "opg submit: give the prompt once: -p TEXT or -f FILE\n");
        rc = 2;
        goto out;
    }
    if (prompt_file && opg_tool_read_prompt("opg submit", prompt_file, OPG_PROTO_MAX_PROMPT_TEXT, &prompt_buf))
        goto out;
    text_in = prompt_buf ? prompt_buf : prompt; /* prompt itself belongs to opts */
    if (!text_in || !text_in[0] || !(temp >= 0 && temp <= 100) || !(top_p >= 0 && top_p <= 1)) {
        fprintf(stderr, "opg submit: %s\n", !text_in || !text_in[0]     ? "a prompt is required (-p TEXT or -f FILE)"
                                             : !(temp >= 0 && temp <= 100) ? "--temp must be in 0..100"
                                                                           : "--top-p must be in 0..1");
        rc = 2;
        goto out;
    }
    if (save && no_wait) {
        fprintf(stderr, "opg submit: --save %s: needs the result (not with --no-wait; opg result JOB --save "
                        "writes it later)\n", save);
        rc = 2;
        goto out;
    }
    if (save && (rc = opg_tool_check_save("submit", save)) != 0) goto out;
    rc = 1;
    if (model_id) {
        if (parse_hex32(model_id, id)) {
            fprintf(stderr, "opg submit: --model-id must be 64 hex digits\n");
            rc = 2;
            goto out;
        }
    } else {
        if ((st = opg_gguf_open(model, &g))) {
            const char *msg = opg_last_error(); /* one that starts with the path gets no second one */
            int named = strncmp(msg, model, strlen(model)) == 0 && msg[strlen(model)] == ':';
            fprintf(stderr, "opg submit: %s%s%s\n%s", named ? "" : model, named ? "" : ": ", msg,
                    strcmp(model, OPG_DEFAULT_MODEL) == 0 ? "  (scripts/fetch-model.sh downloads the default model)\n" : "");
            goto out;
        }
        opg_gguf_sha256(g, id);
        if (opg_tokenizer_from_gguf(g, &tok) != OPG_OK) tok = NULL; /* ids are printed instead */
    }
    int crc = opg_tool_connect("submit", &conn, &cl);
    if (crc) {
        rc = crc;
        goto out;
    }
    Opg__V1__SamplingParams sp = OPG__V1__SAMPLING_PARAMS__INIT;
    sp.temperature = (float)temp;
    sp.top_k = (uint32_t)top_k;
    sp.top_p = (float)top_p;
    sp.seed = (uint64_t)seed;
    Opg__V1__SubmitJob sj = OPG__V1__SUBMIT_JOB__INIT;
    sj.model_id.data = id;
    sj.model_id.len = 32;
    sj.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TEXT;
    sj.text = (char *)text_in;
    sj.chat = chat;
    sj.sampling = &sp;
    sj.max_tokens = (uint32_t)max_tokens;
    sj.max_price = (uint64_t)max_price;
    sj.contract_version = OPG_CONTRACT_VERSION;
    uint64_t job = 0;
    if ((st = opg_client_submit(cl, &sj, (int)conn.timeout_ms, &job))) {
        fprintf(stderr, "opg submit: %s (%s)\n", opg_last_error(), opg_strerror(st));
        goto out;
    }
    printf("job=%llu\n", (unsigned long long)job);
    fflush(stdout);
    if (no_wait) {
        rc = 0;
        goto out;
    }
    opg_tool_stream so = {tok, quiet, NULL, 0, 0, 0};
    st = opg_client_stream(cl, job, opg_tool_print_tokens, &so, (int)conn.timeout_ms, &res);
    if (st) {
        opg_tool_stream_clear(&so);
        fprintf(stderr, "\nopg submit: job %llu: %s (%s)\n", (unsigned long long)job, opg_last_error(), opg_strerror(st));
        goto out;
    }
    if (!quiet) putchar('\n');
    const Opg__V1__Result *r = (const Opg__V1__Result *)res->msg;
    opg_tool_stream_check(&so, r);
    opg_tool_stream_clear(&so);
    opg_tool_print_summary(job, r);
    rc = save ? opg_tool_save_record("submit", save, conn.endpoint, &sj, r) : 0;
out:
    opg_frame_free(&res);
    opg_client_free(cl);
    opg_tokenizer_free(tok);
    opg_gguf_close(g);
    opg_opts_free(opts, n_opts);
    free(prompt_buf);
    return rc;
}

int opg_cmd_keygen(int argc, char **argv) {
    char *out = NULL;
    const opg_opt opts[] = {
        {"out", 'o', OPG_OPT_STR, &out, 0, 0, "FILE", "where to write the new key (never overwritten; mode 0600)"},
    };
    int help = 0;
    if (opg_opts_parse(opts, 1, argc, argv, &help, NULL)) {
        fprintf(stderr, "opg keygen: %s\n", opg_last_error());
        return 2;
    }
    if (help || !out) {
        char *t = opg_opts_help(opts, 1,
                                "opg keygen -o FILE\n"
                                "Writes a new node identity (Ed25519 seed; its X25519 form is the CurveZMQ key)\n"
                                "and prints its public key, which goes in the peers' allow lists.");
        if (t) fputs(t, help ? stdout : stderr);
        free(t);
        opg_opts_free(opts, 1);
        return help ? 0 : 2;
    }
    char pub[41];
    opg_status st = opg_keygen_file(out, pub);
    if (st) {
        fprintf(stderr, "opg keygen: %s (%s)\n", opg_last_error(), opg_strerror(st));
        opg_opts_free(opts, 1);
        return 1;
    }
    printf("%s\n", pub);
    fprintf(stderr, "opg keygen: wrote %s; its public key (above) goes in allow lists\n", out);
    opg_opts_free(opts, 1);
    return 0;
}
