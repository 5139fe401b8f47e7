/* coord.h: the coordinator: takes jobs from clients, keeps them durable,
 * dispatches them to workers and returns their results (docs/protocol.md).
 *
 * One thread runs everything (opg_coord_run): two ROUTER sockets (workers,
 * clients), the job store (SQLite, coordinator/jobstore.h) and the dispatch
 * queues. Messages are handled in batches: every write of a batch goes into
 * one transaction, and nothing the batch decided (a SubmitAck, a Result to a
 * client, a Job to a worker) leaves before that transaction is on disk. A job
 * is acknowledged only once stored; a worker that goes silent for
 * liveness x heartbeat_ms loses its jobs to the queue; a job completes once
 * (the first Result from its assigned worker wins, later ones are dropped);
 * a restarted coordinator queues every job its store holds unfinished. */
#ifndef OPG_COORD_H
#define OPG_COORD_H

#include <signal.h>
#include <stdint.h>

#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "status.h"

typedef struct {
    const char *workers_endpoint;   /* ZeroMQ bind endpoint, e.g. "tcp://127.0.0.1:5555" ("...:*": any port) */
    const char *clients_endpoint;   /* e.g. "tcp://127.0.0.1:5556" */
    const char *db_path;            /* SQLite job store, created when missing */
    int heartbeat_ms;               /* heartbeat period both ways; 0: 1000 */
    int liveness;                   /* missed heartbeats before a worker is lost; 0: 3 */
    int max_attempts;               /* workers lost by one job (and transient worker errors) before it fails; 0: 5 */
    /* A job whose worker failed under it (Disconnect.backend_failed, or a
     * heartbeat timeout) runs alone on a worker from then on (no other job
     * beside it, so a job that brings workers down stops no other job); it
     * fails once this many workers failed while it ran alone on them. 0: 2 */
    int max_lost_alone;
    int64_t queue_max;              /* queued jobs before SubmitJob is refused; 0: 1000000 */
    int client_hwm;                 /* messages queued per client before its messages drop; 0: 1000 */
    /* Retention: a finished job (its request and result) is deleted from the
     * store this long after it finished; 0: kept forever. The job with the
     * highest id is always kept (ids are never given twice). */
    int64_t retention_ms;
    /* How much of a Result's receipt is checked before the job is DONE:
     * OPG_RECEIPTS_FULL (0, the default): strict decoding, every field tied
     * to the job and the Result, the Ed25519 signature by the worker's Ready
     * key (~50 us of CPU per job); OPG_RECEIPTS_FIELDS: all but the signature,
     * for a fleet whose workers the operator runs (the client and the
     * validators can still check it). */
    int receipts;
    /* Threads that verify a batch's receipt signatures, the loop's own
     * thread included; 0: one per online CPU, at most 4. */
    int verify_threads;
    /* CurveZMQ: with key set, both sockets are CURVE servers and a ZAP
     * handler admits only the listed public keys (domain "workers" and
     * "clients"). Without a key both endpoints must be local
     * (opg_endpoint_is_local): nothing unencrypted leaves the machine. */
    const opg_keypair *key;
    const uint8_t (*worker_keys)[32];
    size_t n_worker_keys;
    const uint8_t (*client_keys)[32];
    size_t n_client_keys;
    opg_log log;                    /* where log lines go (sink NULL: none) */
    opg_metrics *metrics;           /* registry to publish into, or NULL */
} opg_coord_config;

enum { OPG_RECEIPTS_FULL = 0, OPG_RECEIPTS_FIELDS = 1 };

typedef struct opg_coord opg_coord;

/* Opens the store, binds both sockets, starts ZAP when keyed, and queues
 * every unfinished job of the store. The config's pointers are borrowed for
 * the coordinator's life. Caller owns *out: opg_coord_free. */
opg_status opg_coord_new(const opg_coord_config *cfg, opg_coord **out);
/* Runs until *stop becomes non-zero (a signal handler sets it), then
 * returns OPG_OK; an error only when the store cannot be written (nothing
 * unstored was acknowledged: a restart resumes). */
opg_status opg_coord_run(opg_coord *c, volatile sig_atomic_t *stop);
/* Closes sockets and the store. NULL is a no-op. */
void opg_coord_free(opg_coord *c);

/* The bound endpoints (with the real port when bound to "*"). */
const char *opg_coord_workers_endpoint(const opg_coord *c);
const char *opg_coord_clients_endpoint(const opg_coord *c);

#endif
