/* jobstore.h: the coordinator's durable job store, one SQLite file.
 *
 * Every job a client submits is written here before it is acknowledged, and
 * its outcome when it ends, so a coordinator that crashes or restarts loses
 * no acknowledged job: on start it walks opg_jobstore_pending and re-queues
 * what had not finished.
 *
 * Durability: the file is in WAL mode with synchronous=FULL, so a write that
 * returned OPG_OK (outside a transaction) or a commit that returned OPG_OK is
 * on disk. Group commit: the coordinator wraps a batch of inserts and finishes
 * in begin/commit so one fsync covers many jobs; acknowledge the batch only
 * after commit returns OPG_OK.
 *
 * The file: application_id 0x4f504731 ("OPG1") and user_version 3 (the
 * schema version); open refuses any other SQLite file (not created by opg:
 * OPG_ERR_FORMAT; a schema version it does not know: OPG_ERR_UNSUPPORTED)
 * before changing it. An empty or missing file gets the schema; a schema 1
 * file (before job owners) or 2 (before tries) is upgraded in place, in one
 * transaction, its jobs left without an owner (1) and without tries.
 *
 * Owners: each job may record who submitted it (the coordinator stores the
 * client's CurveZMQ public key in Z85, or "" for a connection without CURVE),
 * at most OPG_JOBSTORE_MAX_OWNER bytes of text. The store only keeps it; the
 * coordinator decides who may see a job.
 *
 * Errors: every message (opg_last_error) names the file and carries SQLite's
 * own text. SQLite's codes map to: cannot open, disk full, read-only, I/O
 * error -> OPG_ERR_IO; not a database, corrupt -> OPG_ERR_FORMAT; blob too
 * big -> OPG_ERR_LIMIT; out of memory -> OPG_ERR_NOMEM; the file locked by
 * another process past the busy timeout (5 s) -> OPG_ERR_TIMEOUT.
 *
 * Thread safety: a handle is used by one thread at a time (the coordinator's
 * store thread). Several handles or processes may open the same file (WAL);
 * writers take turns. Do not carry an open handle across fork(). */
#ifndef OPG_JOBSTORE_H
#define OPG_JOBSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct opg_jobstore opg_jobstore;

/* Job states: the same numbers as opg.v1.JobState in proto/opg.proto (never
 * renumbered: they are stored in the file). RUNNING exists for the protocol;
 * the coordinator keeps it in memory only and never writes it. */
enum { OPG_JOB_QUEUED = 1, OPG_JOB_RUNNING = 2, OPG_JOB_DONE = 3, OPG_JOB_FAILED = 4, OPG_JOB_CANCELLED = 5 };

#define OPG_JOBSTORE_MAX_OWNER 63

/* What the coordinator learnt of a job from the workers lost under it, kept
 * so that a restarted coordinator still runs a suspect job alone and still
 * fails it after its limits (docs/protocol.md, "Worker link"). All 0 for a
 * job no worker was lost under. */
typedef struct {
    int attempts;   /* workers lost while running it (>= 0) */
    int alone;      /* 1: it runs alone on a worker from now on */
    int lost_alone; /* workers that failed while it ran alone on them (>= 0) */
} opg_job_tries;

typedef struct {
    uint64_t id;
    int state;                  /* OPG_JOB_* */
    int64_t created_ms, finished_ms; /* finished_ms is 0 while not final */
    uint8_t *request;           /* packed SubmitJob, owned; never NULL after a successful get */
    size_t request_len;
    uint8_t *result;            /* packed Result (DONE) or Error (FAILED), owned; NULL when
                                   finish was given no result (and while not final) */
    size_t result_len;
    int has_owner;              /* 0: stored without an owner (owner is "") */
    char owner[OPG_JOBSTORE_MAX_OWNER + 1];
    opg_job_tries tries;        /* as set_tries last wrote them; all 0 if never */
} opg_job_row;

/* Opens or creates the store at path (the directory must exist). On success
 * *out owns the connection; close it with opg_jobstore_close. On error *out
 * is NULL: OPG_ERR_IO when the file cannot be opened or created (missing
 * directory, permissions), OPG_ERR_FORMAT when it is not a database, is
 * corrupt or is another program's SQLite file, OPG_ERR_UNSUPPORTED for an opg
 * store of another schema version. A store left by a crash is recovered
 * (SQLite replays or drops the WAL). */
opg_status opg_jobstore_open(const char *path, opg_jobstore **out);
/* opg_jobstore_open for this handle alone among those opened this way: it
 * first takes an exclusive lock (flock) on the file "<path>.lock" beside the
 * store (beside the file a symbolic link names; created when missing, left in place; it holds the taker's pid as
 * text), held until close, and only then opens (and may upgrade) the
 * store. Held by another handle or process -> OPG_ERR_STATE, the message
 * naming the holder's pid, and the store untouched; the lock file cannot be
 * made -> OPG_ERR_IO. The coordinator opens its store this way, so a second
 * coordinator on the same store refuses to start instead of running its
 * jobs twice; plain opens (the tests, the sqlite3 shell, .backup) are not
 * kept out. On a network file system flock may lock nothing. */
opg_status opg_jobstore_open_exclusive(const char *path, opg_jobstore **out);
/* Closes the store (and releases its lock); an open transaction is rolled
 * back. NULL is a no-op. */
void opg_jobstore_close(opg_jobstore *s);

/* Group commit. begin starts a write transaction and takes the write lock at
 * once (another writer waits there, not halfway through the batch); begin
 * inside a transaction -> OPG_ERR_STATE, as is commit outside one. Writes
 * outside begin/commit are each their own transaction. When commit fails, nothing of the batch is durable: call
 * rollback (SQLite may already have rolled back on its own after an I/O
 * error; rollback with no transaction open is therefore OPG_OK). */
opg_status opg_jobstore_begin(opg_jobstore *s);
opg_status opg_jobstore_commit(opg_jobstore *s);
opg_status opg_jobstore_rollback(opg_jobstore *s);

/* Adds a QUEUED job with a copy of request (len bytes; request may be NULL
 * when len is 0) and its owner (a NUL-terminated text of at most
 * OPG_JOBSTORE_MAX_OWNER bytes, "" allowed; NULL: no owner; longer ->
 * OPG_ERR_ARG) and sets *job_id. Ids start at 1 and increase; an id once
 * committed is never given again, across restarts too (an id handed out in a
 * transaction that was rolled back may be). Invariant behind it: a new id is
 * the highest stored id + 1 (a SQLite rowid without AUTOINCREMENT), and
 * nothing deletes the row with the highest id (prune keeps it). */
opg_status opg_jobstore_insert(opg_jobstore *s, const uint8_t *request, size_t len, const char *owner,
                               int64_t now_ms, uint64_t *job_id);

/* Moves a job to a final state (DONE, FAILED or CANCELLED) with a copy of its
 * result blob (result may be NULL: no result is stored) and finished_ms =
 * now_ms. Idempotent: when the job is already final nothing changes (the
 * first outcome stays) and *changed = 0, else *changed = 1 (changed may be
 * NULL). Unknown id -> OPG_ERR_NOT_FOUND; state not final -> OPG_ERR_ARG. */
opg_status opg_jobstore_finish(opg_jobstore *s, uint64_t job_id, int state, const uint8_t *result, size_t len,
                               int64_t now_ms, int *changed);

/* Records a job's tries (replacing what was stored), inside a begin/commit
 * or on its own, like any write. Only for a job not final: a final one ->
 * OPG_ERR_STATE and nothing changes; unknown id -> OPG_ERR_NOT_FOUND; a
 * negative count or alone other than 0/1 -> OPG_ERR_ARG. A job's tries are
 * deleted with it (prune). */
opg_status opg_jobstore_set_tries(opg_jobstore *s, uint64_t job_id, const opg_job_tries *t);

/* Reads a job into *row (overwritten, not freed first); the caller owns the
 * blobs and releases them with opg_job_row_clear. Unknown id ->
 * OPG_ERR_NOT_FOUND, and on any error *row is zeroed. */
opg_status opg_jobstore_get(opg_jobstore *s, uint64_t job_id, opg_job_row *row);
/* Frees the row's blobs and zeroes it. NULL is a no-op. */
void opg_job_row_clear(opg_job_row *row);

/* One job of the pending walk. request and owner (NULL: none) point into
 * the store's row: valid only during the call. */
typedef struct {
    uint64_t id;
    const uint8_t *request; /* never NULL, also when request_len is 0 */
    size_t request_len;
    const char *owner;
    int64_t created_ms;
    opg_job_tries tries;
} opg_job_pending;

/* Calls fn for every job not final (QUEUED or RUNNING) in id order: what a
 * restarted coordinator re-queues. fn returning nonzero stops the walk (still
 * OPG_OK). A stored owner or tries that are not what insert and set_tries
 * write stop the walk with OPG_ERR_FORMAT. fn must not call into the same
 * handle (the walk holds its statement open). */
typedef int (*opg_jobstore_fn)(void *ctx, const opg_job_pending *job);
opg_status opg_jobstore_pending(opg_jobstore *s, opg_jobstore_fn fn, void *ctx);

/* Retention: deletes final jobs that finished before before_ms, with their
 * results, looking at the next max_rows (>= 1) final jobs after id *cursor in
 * id order; *cursor then moves past them, or back to 0 once it reached the
 * last (the next call starts over). Start with *cursor = 0 and keep calling
 * with the same variable: each final job is looked at once per pass, and a
 * call costs O(max_rows), however large the store. Never deletes the job
 * with the highest id (ids are never given twice), nor a job not final.
 * *deleted (may be NULL) gets how many went. Inside a begin/commit or on its
 * own, like any write. */
opg_status opg_jobstore_prune(opg_jobstore *s, int64_t before_ms, int max_rows, uint64_t *cursor,
                              int64_t *deleted);

/* Number of jobs per state: counts[state] for state 1..5 (counts[0] is set to
 * 0). Counted row by row (O(jobs), one read transaction): for tests and
 * tools, not for the job path. */
opg_status opg_jobstore_counts(opg_jobstore *s, int64_t counts[6]);

#endif
