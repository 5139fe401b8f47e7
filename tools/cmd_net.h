/* cmd_net.h: the opg commands that talk to the network (built with OPG_NETWORK). */
#ifndef OPG_CMD_NET_H
#define OPG_CMD_NET_H

#include <stdint.h>

#include "client.h"
#include "tokenizer.h"

int opg_cmd_submit(int argc, char **argv);
/* opg status|result|cancel JOB: one job at a coordinator (cmd_job.c). */
int opg_cmd_status(int argc, char **argv);
int opg_cmd_result(int argc, char **argv);
int opg_cmd_cancel(int argc, char **argv);
int opg_cmd_keygen(int argc, char **argv);
/* opg verify RECORD: a saved job record re-checked offline (cmd_verify.c). */
int opg_cmd_verify(int argc, char **argv);

/* ---- shared by the commands that talk to a coordinator (cmd_net.c) ---- */

/* Where the coordinator is, and as whom to connect. */
typedef struct {
    char *endpoint, *key_path, *server_key;
    int64_t timeout_ms;
} opg_tool_conn;
#define OPG_TOOL_CONN_DEFAULTS {"tcp://127.0.0.1:5556", NULL, NULL, 120000}
/* Their options, for an opg_opt table (net/opts.h). */
#define OPG_TOOL_CONN_OPTS(c)                                                                                   \
    {"coordinator", 'C', OPG_OPT_STR, &(c).endpoint, 0, 0, "ENDPOINT", "the coordinator's client endpoint"},    \
    {"key", 'k', OPG_OPT_STR, &(c).key_path, 0, 0, "FILE", "this client's identity key (with --server-key)"},    \
    {"server-key", 0, OPG_OPT_STR, &(c).server_key, 0, 0, "Z85", "the coordinator's public key: CurveZMQ"},      \
    {"timeout-ms", 0, OPG_OPT_INT, &(c).timeout_ms, 1, INT_MAX, "MS", "longest silence from the coordinator"}

/* Connects as conn says. On failure prints "opg CMD: why" to stderr and
 * returns the exit code (2: bad options, 1: anything else); 0 and *out
 * (caller frees: opg_client_free) on success. */
int opg_tool_connect(const char *cmd, const opg_tool_conn *conn, opg_client **out);

/* Prints streamed tokens to stdout (opg_client_tokens_fn): their text with
 * tok, their ids without; nothing when quiet. ctx: an opg_tool_stream,
 * zero-initialized but for tok and quiet; it keeps the ids it printed (free
 * with opg_tool_stream_clear). */
typedef struct {
    const opg_tokenizer *tok;
    int quiet;
    uint32_t *seen; /* ids printed, in order */
    size_t n_seen, cap_seen;
    int lost;       /* out of memory for seen: no check */
} opg_tool_stream;
void opg_tool_print_tokens(void *ctx, uint32_t index, const uint32_t *tokens, size_t n);

/* After a stream ended with r: when r's tokens do not begin with those
 * printed (the job ran again, after its worker or the coordinator was lost,
 * on a smaller context, or a worker's stream and Result disagree), says so
 * on stderr and prints r's output on a line of its own (the job's answer is
 * r). 1 when it did. */
int opg_tool_stream_check(opg_tool_stream *so, const Opg__V1__Result *r);
void opg_tool_stream_clear(opg_tool_stream *so);

/* --save FILE, checked before anything runs (a record that cannot be
 * written would be lost after the job): FILE must not exist and its folder
 * must be writable. 0, or prints why and returns 2. */
int opg_tool_check_save(const char *cmd, const char *path);
/* Writes the job record of req and res to path (net/jobrecord.h) and prints
 * "record=PATH"; 0, or prints why and returns 1. */
int opg_tool_save_record(const char *cmd, const char *path, const char *endpoint, const Opg__V1__SubmitJob *req,
                         const Opg__V1__Result *res);

/* The summary line of a finished job: job, tokens, stop, receipt size, trace root. */
void opg_tool_print_summary(uint64_t job, const Opg__V1__Result *r);

#endif
