/* client.h: the client side of the coordinator's API (docs/protocol.md,
 * "Client API"): submit, status, result, stream, cancel.
 *
 * One DEALER socket; calls are synchronous, one at a time, each waiting at
 * most timeout_ms for its answer (OPG_ERR_TIMEOUT after). Answers are matched
 * to the request (by type and job id), and anything else that arrives, such
 * as the late answer of an earlier call that timed out, is dropped. An Error
 * from the coordinator returns its code, with its message as opg_last_error. */
#ifndef OPG_CLIENT_H
#define OPG_CLIENT_H

#include <stdint.h>

#include "frame.h"
#include "keys.h"
#include "status.h"

typedef struct opg_client opg_client;

/* Connects to endpoint. With server_key (the coordinator's curve public
 * key) the link is CurveZMQ with key as this client's identity; without it
 * the endpoint must be local (opg_endpoint_is_local). Caller owns *out. */
opg_status opg_client_new(const char *endpoint, const opg_keypair *key, const uint8_t *server_key, opg_client **out);
void opg_client_free(opg_client *c);

/* Submits a job; *job_id once the coordinator stored it. */
opg_status opg_client_submit(opg_client *c, const Opg__V1__SubmitJob *job, int timeout_ms, uint64_t *job_id);
/* The job's state and tokens produced so far. */
opg_status opg_client_status(opg_client *c, uint64_t job_id, int timeout_ms, int *state, uint32_t *tokens_done);
/* The job's Result frame (caller frees: opg_frame_free; (Opg__V1__Result *)(*out)->msg). wait: block until
 * the job finishes (at most timeout_ms); else OPG_ERR_STATE while it runs. A failed or cancelled job
 * returns the Error's code. */
opg_status opg_client_result(opg_client *c, uint64_t job_id, int wait, int timeout_ms, opg_frame **out);
/* Streams the job: on_tokens for every new piece (index = position of the
 * first token in the output; pieces come in order, each position once, with
 * no gap), then the Result as opg_client_result. timeout_ms bounds the
 * silence between two messages. */
typedef void (*opg_client_tokens_fn)(void *ctx, uint32_t index, const uint32_t *tokens, size_t n);
opg_status opg_client_stream(opg_client *c, uint64_t job_id, opg_client_tokens_fn on_tokens, void *ctx,
                             int timeout_ms, opg_frame **out);
/* The SubmitJob the job was accepted with, as the coordinator stored it: a
 * JobRequest frame (caller frees: opg_frame_free; ((Opg__V1__JobRequest
 * *)(*out)->msg)->request). */
opg_status opg_client_request(opg_client *c, uint64_t job_id, int timeout_ms, opg_frame **out);
/* Cancels the job; *state gets its final state (CANCELLED, or DONE/FAILED if it finished first). */
opg_status opg_client_cancel(opg_client *c, uint64_t job_id, int timeout_ms, int *state);

#endif
