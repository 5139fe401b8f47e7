/* worker.h: the worker: connects to a coordinator, takes jobs, runs them on
 * its models with continuous batching and returns tokens, results and signed
 * receipts (docs/protocol.md, "Worker link").
 *
 * One thread: a DEALER socket to the coordinator and one scheduler per model
 * (runtime/scheduler.h). Between forward steps it reads the socket, so new jobs
 * join the running batch and heartbeats keep flowing. Text prompts are
 * tokenized on a second thread (tokq.h) and join the batch when encoded, so a
 * long prompt does not stall the running jobs' steps. The link follows the
 * Paranoid Pirate pattern: Ready on connect, heartbeats both ways, and when
 * the coordinator is silent for liveness x heartbeat_ms (or says Disconnect)
 * the worker drops its jobs (the coordinator re-queues them), closes the
 * socket, waits (back-off doubling from reconnect_ms to reconnect_max_ms) and
 * connects afresh. On stop it drains: Ready with no free slots, finishes what
 * it runs, says Disconnect, returns; or, asked to stop at once, gives its
 * jobs back. */
#ifndef OPG_WORKER_H
#define OPG_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "status.h"

typedef struct {
    const char *coordinator;        /* endpoint, e.g. "tcp://127.0.0.1:5555" */
    /* CurveZMQ: the coordinator's curve public key; NULL only for a local
     * endpoint (opg_endpoint_is_local). */
    const uint8_t *server_key;
    /* Identity: CURVE client key and the Ed25519 key that signs receipts.
     * NULL: a fresh key for this run (receipts still signed, not CURVE). */
    const opg_keypair *key;
    const char *name;               /* label in the coordinator's logs; NULL: host name */
    opg_model **models;             /* borrowed; at least one */
    int n_models;
    int slots;                      /* jobs run at once; 0: 8 */
    uint64_t price_per_token;
    int heartbeat_ms;               /* 0: 1000 */
    int liveness;                   /* 0: 3 */
    int reconnect_ms;               /* first back-off; 0: 250 */
    int reconnect_max_ms;           /* 0: 8000 */
    int stream_ms;                  /* Tokens frames per job at most this often; 0: 50 */
    int64_t n_ctx;                  /* context per job; 0: the model's */
    opg_log log;
    opg_metrics *metrics;           /* or NULL */
    /* Tests: called on the tokenizing thread before each text prompt is
     * encoded, with its job id (see worker/tokq.h). NULL: none. */
    void (*tokenize_hook)(void *ctx, uint64_t job_id);
    void *tokenize_hook_ctx;
} opg_worker_config;

typedef struct opg_worker opg_worker;

/* Prepares tokenizers and schedulers; connects in opg_worker_run. The
 * config's pointers are borrowed for the worker's life. */
opg_status opg_worker_new(const opg_worker_config *cfg, opg_worker **out);
/* Runs until *stop is set: 1 drains (no new jobs, the running ones
 * finish), then returns OPG_OK; 2 (also during a drain) stops at once: the
 * running jobs are dropped and the Disconnect gives them back to the
 * coordinator, which re-queues them; OPG_OK. Errors: the
 * backend failed (OPG_ERR_STATE, a device fault; or any failure of a step
 * other than OPG_ERR_NOMEM, which only fails that step's jobs back to the
 * coordinator): the worker has said Disconnect, so the coordinator re-queues
 * its jobs; start it again on a fresh backend. OPG_ERR_IO: its socket. */
opg_status opg_worker_run(opg_worker *w, volatile sig_atomic_t *stop);
void opg_worker_free(opg_worker *w);

#endif
