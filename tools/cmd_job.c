/* cmd_job.c: `opg status`, `opg result` and `opg cancel`: one job at a
 * coordinator, by id (what `opg submit` printed, e.g. with --no-wait or
 * before it was interrupted). A client sees only its own jobs: another
 * client's id is answered as an unknown one (docs/protocol.md). */
#include "cmd_net.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "default_model.h"
#include "gguf.h"
#include "opts.h"
#include "receipt.h"


static const char *state_name(int state) {
    static const char *names[] = {"unknown", "queued", "running", "done", "failed", "cancelled"};
    return state >= 0 && state <= 5 ? names[state] : "unknown";
}

/* A job id: decimal, 1 .. 2^63 - 1 (the store's ids). 0 and *id, or -1. */
static int parse_job_id(const char *s, uint64_t *id) {
    if (!s || !*s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || v > (unsigned long long)INT64_MAX) return -1;
    *id = v;
    return 0;
}

/* What the three commands share: options parsed, one job id, a client.
 * Returns -1 to go on (*cl connected, *id set), else the exit code. */
static int job_command(const char *cmd, const char *usage, const opg_opt *opts, int n_opts, int argc, char **argv,
                       const opg_tool_conn *conn, uint64_t *id, opg_client **cl) {
    int help = 0;
    opg_strv pos = {0};
    opg_status pst = opg_opts_parse(opts, n_opts, argc, argv, &help, &pos);
    int bad_id = !pst && !help && (pos.n != 1 || parse_job_id(pos.v[0], id) != 0);
    if (pst || help || bad_id) {
        /* on an error the options hold what was parsed: a help text now would
           show those as the defaults, so only a pointer to it */
        if (!help) {
            if (pst) fprintf(stderr, "opg %s: %s\n", cmd, opg_last_error());
            else if (pos.n != 1) fprintf(stderr, "opg %s: one job id expected\n", cmd);
            else fprintf(stderr, "opg %s: '%s' is not a job id (a number from 1 to %lld)\n", cmd, pos.v[0],
                         (long long)INT64_MAX);
            fprintf(stderr, "(opg %s --help lists the options)\n", cmd);
        } else {
            char *text = opg_opts_help(opts, n_opts, usage);
            if (text) fputs(text, stdout);
            free(text);
        }
        opg_strv_clear(&pos);
        return help ? 0 : 2;
    }
    opg_strv_clear(&pos);
    int crc = opg_tool_connect(cmd, conn, cl);
    return crc ? crc : -1;
}

/* The error of a request about a job (the coordinator's messages name the
 * job: "no job 7", "job 7 was cancelled"). */
static int job_error(const char *cmd, uint64_t id, opg_status st) {
    const char *msg = opg_last_error();
    char named[32]; /* a worker's own text ("prompt too long: ...") does not say which job */
    snprintf(named, sizeof named, "job %llu", (unsigned long long)id);
    const char *at = strstr(msg, named);
    int says = at && (at[strlen(named)] < '0' || at[strlen(named)] > '9');
    if (says) fprintf(stderr, "opg %s: %s (%s)\n", cmd, msg, opg_strerror(st));
    else fprintf(stderr, "opg %s: %s: %s (%s)\n", cmd, named, msg, opg_strerror(st));
    return 1;
}

int opg_cmd_status(int argc, char **argv) {
    opg_tool_conn conn = OPG_TOOL_CONN_DEFAULTS;
    const opg_opt opts[] = {OPG_TOOL_CONN_OPTS(conn)};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    uint64_t id = 0;
    opg_client *cl = NULL;
    int rc = job_command("status", "opg status JOB [options]\nPrints a job's state and the tokens it has so far.",
                         opts, n_opts, argc, argv, &conn, &id, &cl);
    if (rc < 0) {
        int state = 0;
        uint32_t done = 0;
        opg_status st = opg_client_status(cl, id, (int)conn.timeout_ms, &state, &done);
        if (st) rc = job_error("status", id, st);
        else {
            printf("job=%llu state=%s tokens=%u\n", (unsigned long long)id, state_name(state), done);
            rc = 0;
        }
    }
    opg_client_free(cl);
    opg_opts_free(opts, n_opts);
    return rc;
}

int opg_cmd_cancel(int argc, char **argv) {
    opg_tool_conn conn = OPG_TOOL_CONN_DEFAULTS;
    const opg_opt opts[] = {OPG_TOOL_CONN_OPTS(conn)};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    uint64_t id = 0;
    opg_client *cl = NULL;
    int rc = job_command("cancel", "opg cancel JOB [options]\n"
                                   "Cancels a job and prints its final state: cancelled, or done/failed when it\n"
                                   "finished first.",
                         opts, n_opts, argc, argv, &conn, &id, &cl);
    if (rc < 0) {
        int state = 0;
        opg_status st = opg_client_cancel(cl, id, (int)conn.timeout_ms, &state);
        if (st) rc = job_error("cancel", id, st);
        else {
            printf("job=%llu state=%s\n", (unsigned long long)id, state_name(state));
            rc = 0;
        }
    }
    opg_client_free(cl);
    opg_opts_free(opts, n_opts);
    return rc;
}

/* The tokenizer of the GGUF file at path and the file's model id (SHA-256);
 * NULL when it cannot be opened or has no tokenizer (said on stderr when the
 * user named the file). */
static opg_tokenizer *open_tokenizer(const char *path, int named, uint8_t id[32]) {
    opg_gguf *g = NULL;
    opg_tokenizer *tok = NULL;
    if (opg_gguf_open(path, &g) != OPG_OK) {
        if (named) fprintf(stderr, "opg result: %s: printing token ids\n", opg_last_error());
    } else {
        opg_gguf_sha256(g, id);
        if (opg_tokenizer_from_gguf(g, &tok) != OPG_OK) {
            if (named) fprintf(stderr, "opg result: %s has no tokenizer: printing token ids\n", path);
            tok = NULL;
        }
    }
    opg_gguf_close(g);
    return tok;
}

/* Whether id is the model the Result's receipt names. */
static int is_jobs_model(const Opg__V1__Result *r, const uint8_t id[32]) {
    Opg__V1__Receipt *rc = NULL;
    int same = opg_receipt_decode(r->receipt.data, r->receipt.len, &rc) == OPG_OK && !memcmp(rc->model_id.data, id, 32);
    opg_receipt_free(rc);
    return same;
}

int opg_cmd_result(int argc, char **argv) {
    opg_tool_conn conn = OPG_TOOL_CONN_DEFAULTS;
    char *model = NULL, *save = NULL;
    int wait = 0, stream = 0, quiet = 0;
    const opg_opt opts[] = {
        OPG_TOOL_CONN_OPTS(conn),
        {"wait", 'w', OPG_OPT_BOOL, &wait, 0, 0, NULL, "wait for the job to finish (at most --timeout-ms)"},
        {"stream", 0, OPG_OPT_BOOL, &stream, 0, 0, NULL,
         "print its tokens as they come, from the first (waits; --timeout-ms bounds the silence)"},
        {"model", 'm', OPG_OPT_STR, &model, 0, 0, "PATH",
         "the job's GGUF model, to print text (default: $OPG_MODEL or the default model, when it is the job's; else ids)"},
        {"quiet", 'q', OPG_OPT_BOOL, &quiet, 0, 0, NULL, "only the summary line"},
        {"save", 0, OPG_OPT_STR, &save, 0, 0, "FILE",
         "write the job record (the request as the coordinator stored it, the result, the receipt) to FILE, "
         "which must not exist: opg verify FILE"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    uint64_t id = 0;
    opg_client *cl = NULL;
    opg_frame *f = NULL, *req = NULL;
    opg_tokenizer *tok = NULL;
    opg_tool_stream so = {NULL, 0, NULL, 0, 0, 0};
    int rc = job_command("result",
                         "opg result JOB [options]\n"
                         "Prints a finished job's output and its summary line (trace root, receipt size);\n"
                         "--save keeps its job record for opg verify.\n"
                         "Exit 0 done; 1 failed, cancelled, not finished (without --wait) or unknown.",
                         opts, n_opts, argc, argv, &conn, &id, &cl);
    if (rc >= 0) goto out;
    if (save && (rc = opg_tool_check_save("result", save)) != 0) goto out;
    rc = 1;
    opg_status st;
    const char *path = model ? model : opg_tool_default_model();
    uint8_t file_id[32];
    so.quiet = quiet;
    if (!wait && !stream) { /* "not finished" is a state, not an error: ask first */
        int state = 0;
        uint32_t done = 0;
        if ((st = opg_client_status(cl, id, (int)conn.timeout_ms, &state, &done))) {
            job_error("result", id, st);
            goto out;
        }
        if (state == OPG__V1__JOB_STATE__JOB_STATE_QUEUED || state == OPG__V1__JOB_STATE__JOB_STATE_RUNNING) {
            fprintf(stderr, "opg result: job %llu is not finished (%s, %u tokens so far; --wait waits for it)\n",
                    (unsigned long long)id, state_name(state), done);
            goto out;
        }
    }
    if (stream) {
        /* text as it comes, with the file's tokenizer when the job's request
           names that model (the owner may ask for it); a job whose request
           cannot be had is checked by its receipt, at the end */
        if (!quiet) so.tok = tok = open_tokenizer(path, model != NULL, file_id);
        if (tok && opg_client_request(cl, id, (int)conn.timeout_ms, &req) == OPG_OK) {
            const Opg__V1__SubmitJob *sj = ((const Opg__V1__JobRequest *)req->msg)->request;
            if (memcmp(sj->model_id.data, file_id, 32) != 0) {
                if (model) fprintf(stderr, "opg result: %s is not the job's model: printing token ids\n", model);
                opg_tokenizer_free(tok);
                so.tok = tok = NULL;
            }
        }
        st = opg_client_stream(cl, id, opg_tool_print_tokens, &so, (int)conn.timeout_ms, &f);
        if (!st && !quiet) putchar('\n');
    } else {
        st = opg_client_result(cl, id, wait, (int)conn.timeout_ms, &f);
    }
    if (st == OPG_ERR_TIMEOUT && (wait || stream)) {
        fprintf(stderr, "opg result: job %llu: %s for %lld ms (--timeout-ms; opg status %llu shows its state)\n",
                (unsigned long long)id, stream ? "no token and no result" : "not finished",
                (long long)conn.timeout_ms, (unsigned long long)id);
        goto out;
    }
    if (st) {
        job_error("result", id, st);
        goto out;
    }
    const Opg__V1__Result *r = (const Opg__V1__Result *)f->msg;
    if (stream) opg_tool_stream_check(&so, r);
    if (stream && tok && !is_jobs_model(r, file_id))
        fprintf(stderr, "opg result: the text above was read with %s's tokenizer, which is not the job's model: "
                        "-m THE_JOBS_MODEL reads it right\n", path);
    if (!stream && !quiet) {
        tok = open_tokenizer(path, model != NULL, file_id);
        if (tok && !is_jobs_model(r, file_id)) {
            if (model) fprintf(stderr, "opg result: %s is not the job's model: printing token ids\n", model);
            opg_tokenizer_free(tok);
            tok = NULL;
        }
        so.tok = tok;
        opg_tool_print_tokens(&so, 0, r->output_tokens, r->n_output_tokens);
        putchar('\n');
    }
    opg_tool_print_summary(id, r);
    rc = 0;
    if (save) {
        if (!req && (st = opg_client_request(cl, id, (int)conn.timeout_ms, &req))) {
            rc = job_error("result", id, st);
            goto out;
        }
        rc = opg_tool_save_record("result", save, conn.endpoint,
                                  ((const Opg__V1__JobRequest *)req->msg)->request, r);
    }
out:
    opg_tool_stream_clear(&so);
    opg_frame_free(&req);
    opg_frame_free(&f);
    opg_tokenizer_free(tok);
    opg_client_free(cl);
    opg_opts_free(opts, n_opts);
    return rc;
}
