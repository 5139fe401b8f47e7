/* coord.c: the coordinator's event loop, dispatch and client API (coord.h).
 *
 * In memory: every unfinished job (hash by id), one FIFO per model of queued
 * jobs, the connected workers with the jobs each runs. On disk (jobstore):
 * every job and every final result. A job's life: SubmitJob -> stored ->
 * acked -> queued -> Job sent to a worker (running) -> Result stored -> sent
 * to whoever waits -> dropped from memory. */
#include "coord.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>
#include <utlist.h>
#include <zmq.h>

#include "contract.h"
#include "jobstore.h"
#include "lattrace.h"
#include "pool.h"
#include "receipt.h"
#include "sock.h"
#include "zap.h"

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x
#define BATCH_MAX 4096 /* messages handled per transaction */
#define DISPATCH_LOOKAHEAD 64 /* jobs of a queue left waiting (for a context, a price) before a pass gives up on it */
#define MIN_CLIENT_RID 16 /* bytes of a client's routing id with CurveZMQ (handle_client) */
#define MAX_SUBS_PER_JOB 1024 /* requests waiting on one job (Stream, GetResult with wait) */
#define PRUNE_EVERY_MS 100 /* retention: a prune step at most this often ... */
#define PRUNE_ROWS 4096    /* ... looking at this many finished jobs (40k/s: more than the dispatch peak) */

enum { SUB_RESULT = 0, SUB_STREAM = 1, SUB_STATUS = 2 };

typedef struct sub {
    opg_peer peer;
    int stream;        /* SUB_STREAM: tokens then the final frame; SUB_RESULT: the final
                          frame (GetResult with wait); SUB_STATUS: a StatusReply (Cancel) */
    uint32_t sent;     /* tokens already sent to a stream */
    int lagging;       /* a Tokens frame to it was dropped (its queue was full): it gets no more
                          until the job's end (the rest, then the Result) or its next Stream */
    struct sub *prev, *next; /* utlist DL: appended in O(1) */
} sub;

struct worker;

typedef struct job {
    uint64_t id;
    int state;                 /* OPG_JOB_QUEUED, _RUNNING; final_state once decided */
    int final_state;           /* set when finished in this batch, before commit */
    uint8_t model[32];
    uint8_t *req;              /* packed SubmitJob */
    size_t req_len;
    uint32_t max_tokens;
    uint64_t need;             /* cache positions it needs to run to max_tokens (job_need) */
    uint64_t prompt_len;       /* its prompt in tokens; for a text prompt 0 until a worker says (Error.prompt_tokens) */
    int text_prompt;
    int parked;                /* in its queue's parked list: no registered worker can take it */
    uint32_t sent_ctx;         /* the context its worker named when the job was sent to it */
    uint32_t sent_min;         /* the Job.min_tokens it was sent with */
    uint64_t max_price;
    int has_owner;             /* 0: stored before owners existed, any client may see it */
    char owner[OPG_JOBSTORE_MAX_OWNER + 1]; /* the submitting client's User-Id ("" without CURVE) */
    int attempts;              /* workers lost while running it */
    int alone;                 /* a worker running it failed: it runs alone on a worker from now on */
    int lost_alone;            /* workers that failed while it ran alone on them */
    int result_pending;        /* its Result waits for the batch's signature checks */
    struct worker *w;          /* while running */
    int64_t t_submit, t_dispatch;
    uint32_t *toks;            /* output tokens seen so far (for streams and Status) */
    uint32_t n_toks, cap_toks;
    uint32_t n_out;            /* output tokens of its Result, once DONE */
    uint8_t *final_frame;      /* Result or Error frame, once final */
    size_t final_len;
    sub *subs;
    int n_subs;
    struct job *prev, *next;   /* model queue (utlist) */
    struct job *fin_next;      /* finished-in-this-batch list */
    UT_hash_handle hh;
} job;

typedef struct mqueue {
    uint8_t model[32];
    job *head;
    job *parked;               /* jobs no registered worker can take (its price, ...): back at the next Ready */
    int64_t n;                 /* both lists */
    /* a dispatch pass's place in this queue (dispatch_pass) */
    job *cur;                  /* the next job it looks at; NULL: done with this queue */
    int waiting;               /* jobs it left waiting, ahead of cur */
    struct mqueue *active_next;
    UT_hash_handle hh;
} mqueue;

typedef struct worker {
    opg_peer peer;
    char name[OPG_PROTO_MAX_NAME + 1];
    uint8_t (*models)[32];
    uint32_t *contexts;        /* Ready.model_contexts: per model */
    size_t n_models;
    int backend;
    uint32_t slots;
    uint64_t price;
    uint8_t key[32];           /* Ready.worker_key: signs its receipts (required) */
    int takes_min;             /* Ready.takes_min_tokens: it may be sent Job.min_tokens */
    uint64_t *jobs;            /* ids of the jobs it runs */
    uint32_t n_jobs, cap_jobs;
    int64_t last_seen;
    uint32_t hb_ms;            /* its Heartbeat.interval_ms; 0: not said */
    uint64_t hold;             /* the job (alone) it runs alone, or drains for; 0: none (worker_hold) */
    struct worker *prev, *next;
} worker;

/* A Result whose receipt fields hold, waiting for the batch's signature
 * checks (--receipts full): settled before the commit. */
typedef struct {
    opg_peer peer;             /* its worker (looked up again: it may be gone) */
    uint64_t job_id;
    uint32_t n_out;
    uint8_t *frame;            /* the encoded Result, stored once accepted */
    size_t frame_len;
    uint8_t *receipt;          /* a copy of its SignedReceipt */
    size_t receipt_len;
    int ok;                    /* set by the check */
    char why[160];
    int64_t contra_from;       /* stream_contradicted's first position, or -1 */
} pending_result;

/* A client answer that waits for the batch's commit, sent in arrival order:
 * a SubmitAck for j; an Error (err, msg, about job err_job or 0); or the
 * StatusReply or JobRequest of j (asked about before its ack). */
enum { ANSWER_ACK, ANSWER_ERROR, ANSWER_STATUS, ANSWER_REQUEST };
typedef struct ack {
    opg_peer peer;
    int kind;
    job *j;
    opg_status err;
    uint64_t err_job;
    char *msg;
    struct ack *next;
} ack;

struct opg_coord {
    opg_coord_config cfg;
    void *zctx, *wsock, *csock;
    void *mon[2];              /* with CURVE: PAIRs with the handshake failures of wsock, csock */
    int64_t mon_logged_ms[2];  /* handshake_failed: one line per socket per 10 s at most ... */
    int64_t mon_unlogged[2];   /* ... the failures since counted into the next one */
    opg_zap *zap;
    opg_jobstore *store;
    char wep[256], cep[256];
    job *jobs;                 /* hash: unfinished jobs (and those finished in this batch) */
    mqueue *queues;            /* hash by model */
    int64_t n_queued, n_running;
    worker *workers;
    int n_workers;
    int in_txn;
    ack *acks, *acks_tail;     /* SubmitJob answers waiting for the commit */
    int64_t n_acked_pending;   /* jobs among them (count against queue_max) */
    pending_result *pend;      /* this batch's Results waiting for their signature check */
    size_t n_pend, cap_pend;
    opg_pool *verify_pool;     /* checks those signatures in parallel */
    opg_status store_error;    /* a store write failed: the loop stops */
    char store_msg[384];
    job *finished;             /* jobs finished in this batch */
    int64_t next_hb;
    uint64_t hb_seq;
    int64_t next_prune;        /* retention: when the next prune step is due */
    uint64_t prune_cursor;     /* where it goes on (opg_jobstore_prune) */
    int dispatch_dirty;
    /* metrics ids (-1 when no registry) */
    int m_submitted, m_done, m_failed, m_cancelled, m_requeued, m_tokens, m_rejected, m_dropped, m_pruned;
    int m_queue, m_running, m_workers, m_slots, m_latency, m_wait, m_models;
};

/* ---- small helpers ----------------------------------------------------------------- */
#define LOG(lvl, ev, ...) opg_log_emit(&c->cfg.log, lvl, ev, __VA_ARGS__)

static void metric_add(opg_coord *c, int id, double v) {
    if (c->cfg.metrics && id >= 0) opg_metrics_add(c->cfg.metrics, id, v);
}
static void metric_set(opg_coord *c, int id, double v) {
    if (c->cfg.metrics && id >= 0) opg_metrics_set(c->cfg.metrics, id, v);
}
static void metric_observe(opg_coord *c, int id, double v) {
    if (c->cfg.metrics && id >= 0) opg_metrics_observe(c->cfg.metrics, id, v);
}

static void hex8(char out[17], const uint8_t *b) {
    for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int peer_eq(const opg_peer *a, const opg_peer *b) {
    return a->rid_len == b->rid_len && memcmp(a->rid, b->rid, a->rid_len) == 0;
}

static opg_status begin(opg_coord *c) {
    /* after a failed write SQLite may have rolled the transaction back: a
       later write would commit on its own, outside the batch */
    if (c->store_error) return opg__fail(c->store_error, "job store: %s", c->store_msg);
    if (c->in_txn) return OPG_OK;
    opg_status st = opg_jobstore_begin(c->store);
    if (st == OPG_OK) c->in_txn = 1;
    return st;
}

/* ---- queues ------------------------------------------------------------------------ */
static mqueue *queue_of(opg_coord *c, const uint8_t model[32], int create) {
    mqueue *q = NULL;
    HASH_FIND(hh, c->queues, model, 32, q);
    if (!q && create) {
        q = calloc(1, sizeof *q);
        if (!q) return NULL;
        memcpy(q->model, model, 32);
        HASH_ADD(hh, c->queues, model, 32, q);
    }
    return q;
}

/* Appends j (a new job: the newest), or with front (a job going back: an
 * older one) puts it before the first newer job, so a queue stays in id
 * order: oldest first, within a model and across them (dispatch_pass). */
static int enqueue(opg_coord *c, job *j, int front) {
    mqueue *q = queue_of(c, j->model, 1);
    if (!q) return -1;
    job *at = NULL;
    if (front)
        for (at = q->head; at && at->id < j->id; at = at->next) {}
    if (at) DL_PREPEND_ELEM(q->head, at, j);
    else DL_APPEND(q->head, j);
    q->n++;
    c->n_queued++;
    j->state = OPG_JOB_QUEUED;
    c->dispatch_dirty = 1;
    return 0;
}

/* Puts a queue's parked jobs back among the others, by job id (both lists
 * are in id order but for jobs re-queued at the front, which are older
 * than those behind them anyway). */
static void unpark(mqueue *q) {
    job *merged = NULL;
    while (q->head || q->parked) {
        job **from = !q->parked || (q->head && q->head->id < q->parked->id) ? &q->head : &q->parked;
        job *j = *from;
        DL_DELETE(*from, j);
        j->parked = 0;
        DL_APPEND(merged, j);
    }
    q->head = merged;
}

static void dequeue(opg_coord *c, job *j) {
    mqueue *q = queue_of(c, j->model, 0);
    if (!q || j->state != OPG_JOB_QUEUED) return;
    if (j->parked) DL_DELETE(q->parked, j);
    else DL_DELETE(q->head, j);
    j->parked = 0;
    j->prev = j->next = NULL;
    q->n--;
    c->n_queued--;
}

static void job_free(job *j) {
    if (!j) return;
    sub *s, *t;
    DL_FOREACH_SAFE(j->subs, s, t) free(s);
    free(j->req);
    free(j->toks);
    free(j->final_frame);
    free(j);
}

/* Cache positions a job needs to run to max_tokens: the scheduler caches
 * every token but the last and wants the prompt shorter than the context
 * (runtime/scheduler.c), so prompt + max(max_tokens, 2) - 1. */
static uint64_t job_need(uint64_t prompt_tokens, uint32_t max_tokens) {
    return prompt_tokens + (max_tokens > 2 ? max_tokens : 2) - 1;
}

/* A job from its packed SubmitJob (already validated by the frame decoder or
 * when it was stored); dec is that message decoded, or NULL to unpack req
 * here (on_submit has it decoded already: one unpack less per job). */
static job *job_new(uint64_t id, const uint8_t *req, size_t len, const Opg__V1__SubmitJob *dec, const char *owner,
                    int64_t t_submit) {
    Opg__V1__SubmitJob *own = dec ? NULL : opg__v1__submit_job__unpack(NULL, len, req);
    const Opg__V1__SubmitJob *sj = dec ? dec : own;
    if (!sj) return NULL;
    job *j = calloc(1, sizeof *j);
    if (j) j->req = malloc(len ? len : 1);
    if (!j || !j->req || sj->model_id.len != 32) {
        if (j) free(j->req);
        free(j);
        if (own) opg__v1__submit_job__free_unpacked(own, NULL);
        return NULL;
    }
    j->id = id;
    memcpy(j->req, req, len);
    j->req_len = len;
    memcpy(j->model, sj->model_id.data, 32);
    j->max_tokens = sj->max_tokens;
    j->text_prompt = sj->prompt_case != OPG__V1__SUBMIT_JOB__PROMPT_TOKENS;
    j->prompt_len = j->text_prompt ? 0 : sj->tokens->n_ids;
    j->need = job_need(j->text_prompt ? 1 : j->prompt_len, sj->max_tokens);
    j->max_price = sj->max_price;
    if (owner) {
        j->has_owner = 1;
        snprintf(j->owner, sizeof j->owner, "%s", owner);
    }
    j->t_submit = t_submit;
    if (own) opg__v1__submit_job__free_unpacked(own, NULL);
    return j;
}

/* ---- workers ----------------------------------------------------------------------- */
static worker *worker_find(opg_coord *c, const opg_peer *p) {
    worker *w;
    DL_FOREACH(c->workers, w) if (peer_eq(&w->peer, p)) return w;
    return NULL;
}

static void worker_drop_job(worker *w, uint64_t id) {
    for (uint32_t i = 0; i < w->n_jobs; i++)
        if (w->jobs[i] == id) {
            w->jobs[i] = w->jobs[--w->n_jobs];
            return;
        }
}

static int worker_add_job(worker *w, uint64_t id) {
    if (w->n_jobs == w->cap_jobs) {
        uint32_t cap = w->cap_jobs ? 2 * w->cap_jobs : 8;
        uint64_t *p = realloc(w->jobs, cap * sizeof *p);
        if (!p) return -1;
        w->jobs = p;
        w->cap_jobs = cap;
    }
    w->jobs[w->n_jobs++] = id;
    return 0;
}

/* The context w gives jobs of model (>= 2), 0 when it does not serve it. */
static uint32_t worker_context(const worker *w, const uint8_t model[32]) {
    for (size_t i = 0; i < w->n_models; i++)
        if (!memcmp(w->models[i], model, 32)) return w->contexts[i];
    return 0;
}

static void finish_job(opg_coord *c, job *j, int state, uint8_t *frame, size_t len);
static void store_failed(opg_coord *c, opg_status st);

/* A running job goes back to the front of its queue (its worker is lost or
 * failed transiently), or fails once it has lost max_attempts workers
 * (count_attempt: this counts as one, as a worker lost while running it),
 * or max_lost_alone workers while it ran alone on them (requeue_lost). */
static void requeue_as(opg_coord *c, job *j, const char *why, int count_attempt) {
    if (j->w && j->w->hold == j->id) j->w->hold = 0; /* it leaves that worker (lost, refused, ...) */
    if (j->w) worker_drop_job(j->w, j->id);
    j->w = NULL;
    if (j->state == OPG_JOB_RUNNING) c->n_running--;
    j->state = 0; /* in no queue, not running */
    j->attempts += count_attempt != 0;
    if (j->attempts >= c->cfg.max_attempts || j->lost_alone >= c->cfg.max_lost_alone) {
        char msg[256];
        if (j->lost_alone >= c->cfg.max_lost_alone)
            snprintf(msg, sizeof msg, "job %llu failed: %d workers lost while it ran alone on them (last: %s)",
                     (unsigned long long)j->id, j->lost_alone, why);
        else
            snprintf(msg, sizeof msg, "job %llu failed: %d workers lost while running it (last: %s)",
                     (unsigned long long)j->id, j->attempts, why);
        Opg__V1__Error e = OPG__V1__ERROR__INIT;
        e.job_id = j->id;
        e.code = OPG_ERR_STATE;
        e.message = msg;
        uint8_t *buf = NULL;
        size_t len = 0;
        if (opg_frame_encode(T(ERROR), &e.base, &buf, &len) == OPG_OK) finish_job(c, j, OPG_JOB_FAILED, buf, len);
        return;
    }
    if (count_attempt) {
        /* kept for a restart: a job that brought workers down stays suspect */
        opg_job_tries t = {j->attempts, j->alone, j->lost_alone};
        opg_status st = begin(c);
        if (st == OPG_OK) st = opg_jobstore_set_tries(c->store, j->id, &t);
        if (st) {
            store_failed(c, st); /* the loop stops before the commit */
            LOG(OPG_LOG_ERROR, "store_failed", "job=%llu error=\"%s\"", (unsigned long long)j->id,
                opg_last_error());
        }
    }
    metric_add(c, c->m_requeued, 1);
    LOG(OPG_LOG_WARN, "job_requeued", "job=%llu attempt=%d why=\"%s\"", (unsigned long long)j->id, j->attempts, why);
    enqueue(c, j, 1);
}

static void requeue(opg_coord *c, job *j, const char *why) { requeue_as(c, j, why, 1); }

/* j's worker w failed under it (worker_remove's suspect). Every job of such
 * a worker runs alone from then on (pick_worker), so a job that brings its
 * worker down (a kernel fault its shape meets: the same on every worker)
 * shows itself and stops no other job; once max_lost_alone workers failed
 * while it ran alone on them, it fails. */
static void requeue_lost(opg_coord *c, worker *w, job *j, const char *why) {
    j->lost_alone += j->alone && w->hold == j->id;
    j->alone = 1;
    requeue(c, j, why);
}

/* suspect: the worker failed under its jobs (its backend failed, or it fell
 * silent: a crash), so one of them may be to blame (requeue_lost); else
 * (it could not be sent to, gave up its link, ...) its jobs are re-queued
 * as they were. */
static void worker_remove(opg_coord *c, worker *w, const char *why, int suspect) {
    char name[80], q[600];
    opg_log_q(name, sizeof name, w->name);
    LOG(OPG_LOG_WARN, "worker_lost", "worker=%s jobs=%u why=%s", name, w->n_jobs, opg_log_q(q, sizeof q, why));
    c->dispatch_dirty = 1; /* fewer contexts: a job waiting for this one's may now take a smaller one */
    while (w->n_jobs > 0) {
        uint64_t id = w->jobs[w->n_jobs - 1];
        job *j = NULL;
        HASH_FIND(hh, c->jobs, &id, sizeof id, j);
        if (j && j->w == w && !j->final_state && suspect) requeue_lost(c, w, j, why);
        else if (j && j->w == w && !j->final_state) requeue(c, j, why);
        else worker_drop_job(w, id);
    }
    DL_DELETE(c->workers, w);
    c->n_workers--;
    free(w->models);
    free(w->contexts);
    free(w->jobs);
    free(w);
}

/* ---- finishing, delivering ----------------------------------------------------------- */
/* Records the first failed store write; opg_coord_run stops on it (a
 * restart on the store recovers every committed job). */
static void store_failed(opg_coord *c, opg_status st) {
    if (c->store_error) return;
    c->store_error = st;
    snprintf(c->store_msg, sizeof c->store_msg, "%s", opg_last_error());
}

/* Records the job's final state in the store (inside the batch's transaction)
 * and puts it on the finished list; delivery happens after the commit. Takes
 * frame (the Result or Error frame, malloc'd). */
static void finish_job(opg_coord *c, job *j, int state, uint8_t *frame, size_t len) {
    if (j->final_state) {
        free(frame);
        return;
    }
    int changed = 0; /* 0: the store had it final already (a restart raced it); same outcome */
    opg_status st = begin(c);
    if (st == OPG_OK) st = opg_jobstore_finish(c->store, j->id, state, frame, len, opg_wall_ms(), &changed);
    if (st) {
        /* the job stays as it was, and the loop stops before the commit: a
           result the store did not take must not look delivered */
        store_failed(c, st);
        LOG(OPG_LOG_ERROR, "store_failed", "job=%llu error=\"%s\"", (unsigned long long)j->id, opg_last_error());
        free(frame);
        return;
    }
    if (j->state == OPG_JOB_QUEUED) dequeue(c, j);
    if (j->state == OPG_JOB_RUNNING) c->n_running--;
    if (j->w) worker_drop_job(j->w, j->id);
    j->w = NULL;
    j->final_state = state;
    j->final_frame = frame;
    j->final_len = len;
    j->fin_next = c->finished;
    c->finished = j;
    c->dispatch_dirty = 1;
}

/* OPG_ERR_NOT_FOUND when the client's connection is gone (ROUTER_MANDATORY). */
static opg_status send_client(opg_coord *c, const opg_peer *p, opg_msg_type type, const ProtobufCMessage *m) {
    opg_status st = opg_sock_send(c->csock, p, type, m);
    if (st == OPG_ERR_LIMIT) metric_add(c, c->m_dropped, 1); /* a slow client loses messages, dispatch goes on */
    return st;
}

static void send_client_raw(opg_coord *c, const opg_peer *p, const uint8_t *buf, size_t len) {
    if (opg_sock_send_raw(c->csock, p, buf, len) == OPG_ERR_LIMIT) metric_add(c, c->m_dropped, 1);
}

static opg_status send_tokens(opg_coord *c, const opg_peer *p, uint64_t id, const uint32_t *toks, uint32_t from,
                              uint32_t to) {
    if (to <= from) return OPG_OK;
    Opg__V1__Tokens t = OPG__V1__TOKENS__INIT;
    t.job_id = id;
    t.index = from;
    t.n_token_ids = to - from;
    t.token_ids = (uint32_t *)toks + from;
    return send_client(c, p, T(TOKENS), &t.base);
}

/* After the commit: the final frame to every subscriber (streams first get
 * the tokens they have not seen), then the job leaves memory. */
static void deliver_finished(opg_coord *c) {
    job *j = c->finished, *next;
    int64_t now = opg_now_ms();
    for (; j; j = next) {
        next = j->fin_next;
        if (j->final_state == OPG_JOB_DONE) {
            /* the stored frame is decoded again only for a stream that still
               misses tokens (most jobs have none: one decode less per job) */
            int behind = 0;
            for (sub *s = j->subs; s; s = s->next) behind |= s->stream == SUB_STREAM && s->sent < j->n_out;
            opg_frame *f = NULL;
            if (behind && opg_frame_decode(j->final_frame, j->final_len, &f) == OPG_OK && f->type == T(RESULT)) {
                const Opg__V1__Result *res = (const Opg__V1__Result *)f->msg;
                for (sub *s = j->subs; s; s = s->next)
                    if (s->stream == SUB_STREAM && s->sent < res->n_output_tokens)
                        send_tokens(c, &s->peer, j->id, res->output_tokens, s->sent, (uint32_t)res->n_output_tokens);
            }
            opg_frame_free(&f);
            metric_add(c, c->m_tokens, (double)j->n_out);
            metric_add(c, c->m_done, 1);
            metric_observe(c, c->m_latency, (double)(now - j->t_submit) / 1000.0);
        } else if (j->final_state == OPG_JOB_FAILED) {
            metric_add(c, c->m_failed, 1);
        } else {
            metric_add(c, c->m_cancelled, 1);
        }
        for (sub *s = j->subs; s; s = s->next) {
            if (s->stream == SUB_STATUS) {
                Opg__V1__StatusReply r = OPG__V1__STATUS_REPLY__INIT;
                r.job_id = j->id;
                r.state = j->final_state;
                r.tokens_done = j->n_toks;
                send_client(c, &s->peer, T(STATUS_REPLY), &r.base);
            } else {
                send_client_raw(c, &s->peer, j->final_frame, j->final_len);
            }
        }
        OPG_LT(j->id, OPG_LT_C_DELIVER, 0);
        LOG(OPG_LOG_DEBUG, "job_final", "job=%llu state=%d ms=%lld", (unsigned long long)j->id, j->final_state,
            (long long)(now - j->t_submit));
        HASH_DEL(c->jobs, j);
        job_free(j);
    }
    c->finished = NULL;
}

/* ---- dispatch ---------------------------------------------------------------------- */
static int can_take(const worker *w, const job *j, uint32_t *ctx);

/* Job.min_tokens for j on w: the whole job when its prompt is text of a
 * length not known here and another worker has a larger context (w then
 * runs it only if it holds it all, else says how long the prompt is:
 * Error.prompt_tokens, and the job goes where it fits, pick_worker); else 0.
 * Never to a worker that did not say it takes the field. */
static uint32_t min_tokens_for(const opg_coord *c, const worker *w, const job *j) {
    uint32_t ctx_w = worker_context(w, j->model), ctx;
    if (!w->takes_min || !j->text_prompt || j->prompt_len) return 0;
    const worker *o;
    DL_FOREACH(c->workers, o)
        if (can_take(o, j, &ctx) && ctx > ctx_w) return j->max_tokens;
    return 0;
}

static int send_job(opg_coord *c, worker *w, job *j) {
    Opg__V1__SubmitJob *sj = opg__v1__submit_job__unpack(NULL, j->req_len, j->req);
    if (!sj) return -1;
    Opg__V1__Job m = OPG__V1__JOB__INIT;
    m.job_id = j->id;
    m.model_id = sj->model_id;
    if (sj->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TEXT) {
        m.prompt_case = OPG__V1__JOB__PROMPT_TEXT;
        m.text = sj->text;
    } else {
        m.prompt_case = OPG__V1__JOB__PROMPT_TOKENS;
        m.tokens = sj->tokens;
    }
    m.sampling = sj->sampling;
    m.max_tokens = sj->max_tokens;
    m.client_id = sj->client_id;
    m.contract_version = sj->contract_version;
    m.chat = sj->chat;
    m.min_tokens = j->sent_min = min_tokens_for(c, w, j);
    opg_status st = opg_sock_send(c->wsock, &w->peer, T(JOB), &m.base);
    opg__v1__submit_job__free_unpacked(sj, NULL);
    return st == OPG_OK ? 0 : -1;
}

/* Whether a (for job j, of context ctx_a) is a better choice than b (ctx_b):
 * a context that holds the job; else the larger context; then the cheaper;
 * then the more free slots. */
static int better_worker(const job *j, const worker *a, uint32_t ctx_a, const worker *b, uint32_t ctx_b) {
    int fa = ctx_a >= j->need, fb = ctx_b >= j->need;
    if (fa != fb) return fa;
    if (!fa && ctx_a != ctx_b) return ctx_a > ctx_b;
    if (a->price != b->price) return a->price < b->price;
    return a->slots - a->n_jobs > b->slots - b->n_jobs;
}

/* Whether w may run j at all: it serves j's model (*ctx: its context), is
 * not draining and its price is within the job's max_price. */
static int can_take(const worker *w, const job *j, uint32_t *ctx) {
    *ctx = worker_context(w, j->model);
    if (!*ctx || !w->slots) return 0;
    return !(j->max_price && w->price && w->price > j->max_price / (j->max_tokens ? j->max_tokens : 1));
}

/* Why pick_worker found no worker for j. */
enum { PICK_OK, PICK_NO_SLOT, PICK_WAIT, PICK_NO_TAKER };

/* The job w is held for, 0 for none: a job that must run alone (job.alone)
 * and runs on w, or is queued (not parked) and waits for w, which could take
 * it, to drain (hold_for). A hold that no longer holds (its job ran
 * elsewhere, finished, or w changed) is cleared here, and the dispatch runs
 * again: jobs passed over w for it may take it now. */
static uint64_t worker_hold(opg_coord *c, worker *w) {
    if (!w->hold) return 0;
    job *j = NULL;
    uint32_t ctx;
    HASH_FIND(hh, c->jobs, &w->hold, sizeof w->hold, j);
    int ok = j && !j->final_state && j->alone &&
             ((j->state == OPG_JOB_RUNNING && j->w == w) ||
              (j->state == OPG_JOB_QUEUED && !j->parked && can_take(w, j, &ctx)));
    if (!ok) {
        w->hold = 0;
        c->dispatch_dirty = 1;
    }
    return w->hold;
}

/* Whether w may get j now as far as running alone goes: a job that must run
 * alone (job.alone) only a worker with no jobs that is not held for another;
 * any other job only a worker not held (worker_hold). */
static int alone_allows(opg_coord *c, worker *w, const job *j) {
    uint64_t hold = worker_hold(c, w);
    return j->alone ? w->n_jobs == 0 && (!hold || hold == j->id) : !hold;
}

/* Whether w is a worker pick_worker's context rules let j run on (slots
 * aside): when some worker can hold j's prompt, w can; when some worker holds
 * the whole job (job_need), w does. A hold is set only on such a worker
 * (hold_for) but may stop being one (a bigger worker registers). */
static int hold_fits(const opg_coord *c, const worker *w, const job *j) {
    uint32_t ctx_w, ctx;
    if (!can_take(w, j, &ctx_w)) return 0;
    int any_fits = 0, any_holds_prompt = 0;
    const worker *o;
    DL_FOREACH(c->workers, o) {
        if (!can_take(o, j, &ctx)) continue;
        any_fits |= ctx >= j->need;
        any_holds_prompt |= ctx > j->prompt_len;
    }
    return (!any_holds_prompt || ctx_w > j->prompt_len) && (ctx_w >= j->need || !any_fits);
}

/* For a job that must run alone and found no idle worker: holds the best
 * worker that could take it (by pick_worker's rules, busy or not) for it, so
 * that worker gets no new jobs, drains, and then runs j (without this a busy
 * fleet would never come to an idle worker; dispatch_pass gives a held
 * worker its job as soon as it is idle). Nothing when a worker is held for j
 * already or every candidate is held for another. */
static void hold_for(opg_coord *c, job *j, int any_fits, int any_holds_prompt) {
    worker *w, *best = NULL;
    uint32_t best_ctx = 0, ctx;
    DL_FOREACH(c->workers, w) {
        uint64_t hold = worker_hold(c, w);
        if (hold == j->id && hold_fits(c, w, j)) return;
        if (hold == j->id) w->hold = hold = 0; /* a better one came since: choose again */
        if (hold || !can_take(w, j, &ctx)) continue;
        if (any_holds_prompt && ctx <= j->prompt_len) continue;
        if (!best || better_worker(j, w, ctx, best, best_ctx)) {
            best = w;
            best_ctx = ctx;
        }
    }
    if (!best || (best_ctx < j->need && any_fits)) return;
    best->hold = j->id;
    char name[80];
    LOG(OPG_LOG_INFO, "worker_held", "worker=%s job=%llu jobs=%u", opg_log_q(name, sizeof name, best->name),
        (unsigned long long)j->id, best->n_jobs);
}

/* The worker for j now, among those that can take it (can_take) with a free
 * slot: one whose context holds the whole job (job_need). When such a worker
 * is registered but busy, the job waits for it (PICK_WAIT); only when none is
 * registered does a smaller context take it, the largest first (the job then
 * stops early with "context") but never one that cannot hold its prompt
 * while another can. A job that must run alone takes only an idle worker
 * and otherwise holds one for itself (hold_for); other jobs pass over held
 * workers (alone_allows). *why: PICK_OK; PICK_NO_SLOT when no worker of the
 * model has a free slot at all (nothing behind j can run either);
 * PICK_NO_TAKER when no registered worker can take it (a price, the model)
 * and none will until another Ready. */
static worker *pick_worker(opg_coord *c, job *j, int *why) {
    worker *w, *best = NULL;
    uint32_t best_ctx = 0, ctx;
    int any_fits = 0, any_taker = 0, any_holds_prompt = 0, any_slot = 0;
    DL_FOREACH(c->workers, w) { /* is there anyone to wait for? */
        if (worker_context(w, j->model) && w->slots && w->n_jobs < w->slots) any_slot = 1;
        if (!can_take(w, j, &ctx)) continue;
        any_taker = 1;
        any_fits |= ctx >= j->need;
        any_holds_prompt |= ctx > j->prompt_len;
    }
    DL_FOREACH(c->workers, w) {
        if (!can_take(w, j, &ctx) || w->n_jobs >= w->slots || !alone_allows(c, w, j)) continue;
        if (any_holds_prompt && ctx <= j->prompt_len) continue; /* it would refuse the prompt */
        if (!best || better_worker(j, w, ctx, best, best_ctx)) {
            best = w;
            best_ctx = ctx;
        }
    }
    *why = PICK_OK;
    if (best && (best_ctx >= j->need || !any_fits)) return best;
    if (j->alone && any_taker) hold_for(c, j, any_fits, any_holds_prompt);
    *why = !any_slot ? PICK_NO_SLOT : !any_taker ? PICK_NO_TAKER : PICK_WAIT;
    return NULL;
}

/* Whether a worker serving model has a free slot (else pick_worker says
 * PICK_NO_SLOT for every job of it). */
static int model_has_slot(const opg_coord *c, const uint8_t model[32]) {
    const worker *w;
    DL_FOREACH(c->workers, w)
        if (worker_context(w, model) && w->slots && w->n_jobs < w->slots) return 1;
    return 0;
}

/* Sends j to w; 0 when it went. A worker that cannot be sent to (its queue
 * is full or it vanished) is dropped, its jobs and j go back to the front of
 * their queues (-1). */
static int dispatch_to(opg_coord *c, worker *w, job *j, int64_t now) {
    dequeue(c, j);
    if (send_job(c, w, j) != 0 || worker_add_job(w, j->id) != 0) {
        enqueue(c, j, 1);
        worker_remove(c, w, "cannot send to it", 0);
        return -1;
    }
    j->state = OPG_JOB_RUNNING;
    j->w = w;
    if (j->alone) {
        worker *o;
        DL_FOREACH(c->workers, o) /* another worker held for it is free again: jobs passed it over */
            if (o != w && o->hold == j->id) {
                o->hold = 0;
                c->dispatch_dirty = 1;
            }
        w->hold = j->id;
        char name[80];
        LOG(OPG_LOG_INFO, "job_alone", "job=%llu worker=%s", (unsigned long long)j->id,
            opg_log_q(name, sizeof name, w->name));
    }
    j->sent_ctx = worker_context(w, j->model);
    j->t_dispatch = now;
    OPG_LT(j->id, OPG_LT_C_JOB, 0);
    c->n_running++;
    metric_observe(c, c->m_wait, (double)(now - j->t_submit) / 1000.0);
    return 0;
}

/* One pass over the queued jobs of every model, oldest job (lowest id)
 * first across models, so one model's backlog cannot take the free slots
 * of workers serving several models ahead of another model's older jobs.
 * Within a model a job that must wait (pick_worker) does not hold up the
 * jobs behind it, up to DISPATCH_LOOKAHEAD of them; a model none of whose
 * workers has a free slot is done for the pass. Returns -1 when a worker was
 * dropped (jobs went back to queue fronts): the caller passes again. */
static int dispatch_pass(opg_coord *c, int64_t now) {
    /* first every idle worker held for a queued job: it runs that job (the
       scan below might not reach the job: jobs ahead of it that wait count
       against the lookahead) */
    worker *hw;
    DL_FOREACH(c->workers, hw) {
        uint64_t id = worker_hold(c, hw);
        if (!id || hw->n_jobs || !hw->slots) continue;
        job *j = NULL;
        HASH_FIND(hh, c->jobs, &id, sizeof id, j);
        if (j->state != OPG_JOB_QUEUED) continue;
        if (!hold_fits(c, hw, j)) { /* a better worker came since: the scan picks or holds again */
            hw->hold = 0;
            continue;
        }
        if (dispatch_to(c, hw, j, now) != 0) return -1;
    }
    mqueue *q, *tmp, *active = NULL;
    HASH_ITER(hh, c->queues, q, tmp) {
        q->cur = q->head;
        q->waiting = 0;
        /* only models some worker has a free slot for: the scan below looks
           at every active queue per job (a queue per model id asked for) */
        if (q->cur && model_has_slot(c, q->model)) LL_PREPEND2(active, q, active_next);
    }
    while (active) {
        mqueue *oldest = active;
        LL_FOREACH2(active, q, active_next)
            if (q->cur->id < oldest->cur->id) oldest = q;
        q = oldest;
        job *j = q->cur;
        q->cur = j->next;
        int why = 0;
        worker *w = pick_worker(c, j, &why);
        if (why == PICK_NO_SLOT) { /* nobody can take any of this model's jobs now */
            q->cur = NULL;
        } else if (why == PICK_NO_TAKER) { /* out of the way until a worker's Ready changes that */
            DL_DELETE(q->head, j);
            DL_APPEND(q->parked, j);
            j->parked = 1;
        } else if (!w) { /* it waits for a worker whose context holds it: a later job may run */
            if (++q->waiting >= DISPATCH_LOOKAHEAD) q->cur = NULL;
        } else if (dispatch_to(c, w, j, now) != 0) {
            return -1;
        }
        if (!q->cur) LL_DELETE2(active, q, active_next);
    }
    return 0;
}

static void dispatch(opg_coord *c) {
    if (!c->dispatch_dirty) return;
    int64_t now = opg_now_ms();
    do { /* each further pass follows a dropped worker: there are finitely many */
        c->dispatch_dirty = 0;
    } while (dispatch_pass(c, now) != 0);
    mqueue *q, *tmp;
    HASH_ITER(hh, c->queues, q, tmp) {
        if (!q->head && !q->parked) { /* a queue per model id ever asked for would grow without bound */
            HASH_DEL(c->queues, q);
            free(q);
        }
    }
}

/* ---- worker messages ----------------------------------------------------------------- */
static void settle_results(opg_coord *c);

static void send_heartbeat(opg_coord *c, const worker *w);

static void on_ready(opg_coord *c, const opg_peer *p, const Opg__V1__Ready *r) {
    worker *w = worker_find(c, p);
    if (r->worker_key.len != 32) {
        /* its receipts could not be tied to it: any key would do (protocol.md) */
        if (w) {
            settle_results(c); /* its Results so far count, as on a Disconnect */
            worker_remove(c, w, "Ready without worker_key", 0);
        }
        Opg__V1__Disconnect d = OPG__V1__DISCONNECT__INIT;
        d.reason = "Ready without worker_key: this coordinator takes Results only with receipts signed by the "
                   "key named in Ready";
        opg_sock_send(c->wsock, p, T(DISCONNECT), &d.base);
        char name[80];
        LOG(OPG_LOG_WARN, "worker_refused", "worker=%s why=\"no worker_key in Ready\"",
            opg_log_q(name, sizeof name, r->name && r->name[0] ? r->name : "-"));
        return;
    }
    int is_new = !w;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) return;
        w->peer = *p;
        DL_APPEND(c->workers, w);
        c->n_workers++;
    }
    uint8_t(*models)[32] = r->n_models ? malloc(r->n_models * 32) : NULL;
    uint32_t *contexts = r->n_models ? malloc(r->n_models * sizeof *contexts) : NULL;
    if (r->n_models && (!models || !contexts)) {
        free(models);
        free(contexts);
        return;
    }
    for (size_t i = 0; i < r->n_models; i++) {
        memcpy(models[i], r->models[i].data, 32);
        contexts[i] = r->model_contexts[i]; /* one per model: the frame check */
    }
    free(w->models);
    free(w->contexts);
    w->models = models;
    w->contexts = contexts;
    w->n_models = r->n_models;
    for (size_t i = 0; i < w->n_models; i++) { /* a new or changed worker: parked jobs may run now */
        mqueue *q = queue_of(c, w->models[i], 0);
        if (q && q->parked) unpark(q);
    }
    w->backend = r->backend;
    w->slots = r->free_slots;
    w->price = r->price_per_token;
    w->takes_min = r->takes_min_tokens;
    memcpy(w->key, r->worker_key.data, 32);
    snprintf(w->name, sizeof w->name, "%s", r->name && r->name[0] ? r->name : "-");
    w->last_seen = opg_now_ms();
    c->dispatch_dirty = 1;
    if (is_new) send_heartbeat(c, w); /* our period, before the worker's window for us runs out */
    char name[80], key[80], mh[17] = "-";
    if (w->n_models) hex8(mh, w->models[0]);
    LOG(OPG_LOG_INFO, is_new ? "worker_ready" : "worker_update",
        "worker=%s slots=%u models=%zu model=%s ctx=%u backend=%d key=%s", opg_log_q(name, sizeof name, w->name),
        w->slots, w->n_models, mh, w->n_models ? w->contexts[0] : 0, w->backend,
        p->user_id[0] ? opg_log_q(key, sizeof key, p->user_id) : "-");
}

static job *worker_job(opg_coord *c, worker *w, uint64_t id) {
    job *j = NULL;
    HASH_FIND(hh, c->jobs, &id, sizeof id, j);
    if (!j || j->final_state || j->w != w) return NULL; /* not (or no longer) this worker's */
    return j;
}

static void on_tokens(opg_coord *c, worker *w, const Opg__V1__Tokens *t) {
    job *j = worker_job(c, w, t->job_id);
    if (!j) return;
    uint32_t end = t->index + (uint32_t)t->n_token_ids;
    if (t->index > j->n_toks || end <= j->n_toks || end > j->max_tokens) return; /* gap, repeat or too long */
    if (end > j->cap_toks) {
        uint32_t cap = j->cap_toks ? j->cap_toks : 16;
        while (cap < end) cap *= 2;
        uint32_t *p = realloc(j->toks, cap * sizeof *p);
        if (!p) return;
        j->toks = p;
        j->cap_toks = cap;
    }
    uint32_t from = j->n_toks;
    memcpy(j->toks + from, t->token_ids + (from - t->index), (end - from) * sizeof(uint32_t));
    j->n_toks = end;
    sub *s, *tmp;
    DL_FOREACH_SAFE(j->subs, s, tmp) {
        if (s->stream != SUB_STREAM || s->lagging) continue;
        opg_status st = send_tokens(c, &s->peer, j->id, j->toks, s->sent, end);
        if (st == OPG_ERR_NOT_FOUND) {
            /* its connection is gone: whoever connects next with the same
               routing id (another client, maybe) must not get the rest */
            DL_DELETE(j->subs, s);
            j->n_subs--;
            free(s);
            continue;
        }
        /* dropped (its queue full): no gap in what it gets, and no growing
           frame tried again at every step for a client that does not read */
        if (st == OPG_OK) s->sent = end;
        else s->lagging = 1;
    }
}

/* Whether r's receipt is what the worker signed for exactly this result,
 * all but the signature (settle_results checks that, --receipts full):
 * strictly decoded (proto/receipt.h), naming the key the worker registered,
 * this job, its model, its prompt (when given as token ids), sampling
 * parameters and max_tokens, r's output tokens, trace root and usage, and
 * this contract, r's stop reason; and that stop reason must be one the
 * scheduler gives (a max_tokens stop has max_tokens tokens, a context stop
 * fills the receipt's context_size).
 * A Result failing it is refused: the stored result of a job is final, and
 * its receipt is what clients and validators check. 1, or 0 with why. */
static int receipt_holds(const worker *w, const job *j, const Opg__V1__Result *r, char *why, size_t n) {
    Opg__V1__Receipt *rc = NULL;
    if (opg_receipt_decode(r->receipt.data, r->receipt.len, &rc) != OPG_OK) {
        snprintf(why, n, "receipt: %s", opg_last_error());
        return 0;
    }
    uint8_t h[32];
    const char *bad = NULL;
    opg_receipt_hash_tokens(r->output_tokens, r->n_output_tokens, h);
    if (memcmp(rc->worker_key.data, w->key, 32)) bad = "signed by another key than the worker's";
    else if (rc->job_id != r->job_id) bad = "for another job";
    else if (memcmp(rc->model_id.data, j->model, 32)) bad = "for another model";
    else if (memcmp(rc->trace_root.data, r->trace_root.data, 32)) bad = "another trace root than the Result's";
    else if (memcmp(rc->output_hash.data, h, 32)) bad = "another output than the Result's";
    else if (rc->contract_version != OPG_CONTRACT_VERSION) bad = "another determinism contract";
    else if (rc->usage->completion_tokens != r->usage->completion_tokens ||
             rc->usage->prompt_tokens != r->usage->prompt_tokens)
        bad = "another usage than the Result's";
    else if (rc->stop_reason != r->stop_reason) bad = "another stop reason than the Result's";
    if (!bad) {
        Opg__V1__SubmitJob *sj = opg__v1__submit_job__unpack(NULL, j->req_len, j->req);
        uint64_t p = rc->usage->prompt_tokens, out = rc->usage->completion_tokens;
        if (!sj) bad = "the job's request cannot be read back";
        else if (rc->max_tokens != sj->max_tokens) bad = "another max_tokens than the job's";
        else if (!opg_proto_sampling_equal(rc->sampling, sj->sampling)) bad = "other sampling parameters than the job's";
        /* what a worker's scheduler can end with (runtime/scheduler.c): at
           least one token (max_tokens >= 1), then an end-of-generation token,
           max_tokens (checked before the context), or a full context; never
           cancelled (a cancelled job gets no Result) */
        else if (out == 0) bad = "no output token";
        else if (r->stop_reason != OPG__V1__STOP_REASON__STOP_REASON_EOS &&
                 r->stop_reason != OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS &&
                 r->stop_reason != OPG__V1__STOP_REASON__STOP_REASON_CONTEXT)
            bad = "a stop reason a worker never sends";
        else if (r->stop_reason == OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS && out != sj->max_tokens)
            bad = "a max_tokens stop short of max_tokens";
        else if (r->stop_reason == OPG__V1__STOP_REASON__STOP_REASON_CONTEXT &&
                 (out >= sj->max_tokens || p + out != (uint64_t)rc->context_size + 1))
            bad = "a context stop before its context_size is full, or at max_tokens";
        else if (rc->context_size != worker_context(w, j->model))
            bad = "another context_size than the worker's Ready names for the model";
        else if (sj->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TOKENS) {
            opg_receipt_hash_tokens(sj->tokens->ids, sj->tokens->n_ids, h);
            if (memcmp(rc->prompt_hash.data, h, 32)) bad = "another prompt than the job's";
            else if (rc->usage->prompt_tokens != sj->tokens->n_ids) bad = "another prompt length than the job's";
        }
        if (sj) opg__v1__submit_job__free_unpacked(sj, NULL);
    }
    opg_receipt_free(rc);
    if (bad) snprintf(why, n, "receipt %s", bad);
    return !bad;
}

/* An accepted Result of j (n_out tokens) that does not begin with the tokens
 * streamed: from, the first position that differs (or the Result's length
 * when it is a shorter prefix of them); -1: none. */
static void log_contradicted(opg_coord *c, const job *j, const worker *w, int64_t from) {
    if (from < 0) return;
    char name[80];
    LOG(OPG_LOG_WARN, "stream_contradicted", "job=%llu worker=%s streamed=%u tokens=%u from=%lld",
        (unsigned long long)j->id, opg_log_q(name, sizeof name, w->name), j->n_toks, j->n_out, (long long)from);
}

static void on_result(opg_coord *c, worker *w, const Opg__V1__Result *r) {
    job *j = worker_job(c, w, r->job_id);
    if (!j) {
        worker_drop_job(w, r->job_id);
        c->dispatch_dirty = 1;
        LOG(OPG_LOG_DEBUG, "result_dropped", "job=%llu", (unsigned long long)r->job_id);
        return;
    }
    char why[512];
    if (r->n_output_tokens > j->max_tokens) snprintf(why, sizeof why, "more tokens than max_tokens");
    if (r->n_output_tokens > j->max_tokens || !receipt_holds(w, j, r, why, sizeof why)) {
        char q[600];
        LOG(OPG_LOG_WARN, "result_refused", "job=%llu why=%s", (unsigned long long)j->id, opg_log_q(q, sizeof q, why));
        requeue(c, j, "invalid result");
        return;
    }
    /* tokens streamed (by a worker lost since, or this one) that this
       Result does not begin with: a rerun on a smaller context, or a worker
       that is wrong. Which one only a validator can tell; the Result,
       signed, is the job's answer (logged once accepted), and clients
       compare (opg submit says so) */
    uint32_t same = 0;
    while (same < j->n_toks && same < r->n_output_tokens && r->output_tokens[same] == j->toks[same]) same++;
    int64_t contra_from = same < j->n_toks ? (int64_t)same : -1;
    OPG_LT(j->id, OPG_LT_C_RESULT, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (opg_frame_encode(T(RESULT), &r->base, &buf, &len)) return;
    if (c->cfg.receipts == OPG_RECEIPTS_FIELDS) {
        j->n_out = (uint32_t)r->n_output_tokens;
        log_contradicted(c, j, w, contra_from);
        finish_job(c, j, OPG_JOB_DONE, buf, len);
        return;
    }
    /* the signature: checked with the batch's others, in parallel, before the commit */
    if (c->n_pend == c->cap_pend) {
        size_t cap = c->cap_pend ? 2 * c->cap_pend : 64;
        pending_result *p = realloc(c->pend, cap * sizeof *p);
        if (!p) {
            free(buf);
            return; /* the worker's Result is lost: its job stays RUNNING on it until it is lost */
        }
        c->pend = p;
        c->cap_pend = cap;
    }
    pending_result *p = &c->pend[c->n_pend];
    memset(p, 0, sizeof *p);
    p->receipt = malloc(r->receipt.len ? r->receipt.len : 1);
    if (!p->receipt) {
        free(buf);
        return;
    }
    memcpy(p->receipt, r->receipt.data, r->receipt.len);
    p->receipt_len = r->receipt.len;
    p->peer = w->peer;
    p->job_id = j->id;
    p->n_out = (uint32_t)r->n_output_tokens;
    p->contra_from = contra_from;
    p->frame = buf;
    p->frame_len = len;
    j->result_pending = 1;
    c->n_pend++;
}

static void verify_task(void *ctx, int64_t i) {
    pending_result *p = (pending_result *)ctx + i;
    Opg__V1__Receipt *rc = NULL;
    p->ok = opg_receipt_verify(p->receipt, p->receipt_len, &rc) == OPG_OK; /* its error message is per thread */
    if (!p->ok) snprintf(p->why, sizeof p->why, "receipt: %s", opg_last_error());
    opg_receipt_free(rc);
}

/* Checks the signatures of the Results waiting (on the verify pool's
 * threads: ~50 us each), then finishes each whose job is still its worker's,
 * or refuses it (the job re-queued). A job cancelled, re-queued or whose
 * worker was lost since its Result came no longer counts it. */
static void settle_results(opg_coord *c) {
    if (!c->n_pend) return;
    opg_pool_run(c->verify_pool, verify_task, c->pend, (int64_t)c->n_pend);
    for (size_t i = 0; i < c->n_pend; i++) {
        pending_result *p = &c->pend[i];
        worker *w = worker_find(c, &p->peer);
        job *j = NULL;
        HASH_FIND(hh, c->jobs, &p->job_id, sizeof p->job_id, j);
        if (j) j->result_pending = 0;
        if (j && (!w || j->final_state || j->w != w)) j = NULL;
        if (!j) {
            free(p->frame);
            LOG(OPG_LOG_DEBUG, "result_dropped", "job=%llu", (unsigned long long)p->job_id);
        } else if (!p->ok) {
            char q[400];
            free(p->frame);
            LOG(OPG_LOG_WARN, "result_refused", "job=%llu why=%s", (unsigned long long)j->id,
                opg_log_q(q, sizeof q, p->why));
            requeue(c, j, "invalid result");
        } else {
            j->n_out = p->n_out;
            log_contradicted(c, j, w, p->contra_from);
            finish_job(c, j, OPG_JOB_DONE, p->frame, p->frame_len);
        }
        free(p->receipt);
    }
    c->n_pend = 0;
}

static void on_worker_error(opg_coord *c, worker *w, const Opg__V1__Error *e) {
    job *j = e->job_id ? worker_job(c, w, e->job_id) : NULL;
    char msg[600];
    opg_log_q(msg, sizeof msg, e->message);
    char name[80];
    LOG(OPG_LOG_WARN, "worker_error", "worker=%s job=%llu code=%d message=%s", opg_log_q(name, sizeof name, w->name),
        (unsigned long long)e->job_id, (int)e->code, msg);
    if (!j) return;
    /* transient trouble on that worker: another may succeed; anything else
       (an unknown model ...) fails the same everywhere */
    if (e->code == OPG_ERR_NOMEM || e->code == OPG_ERR_IO || e->code == OPG_ERR_TIMEOUT) {
        requeue(c, j, "worker error");
        return;
    }
    /* a prompt that worker's context cannot hold (a text prompt: its length
       was not known here): now known, it may fit another worker's */
    if (e->code == OPG_ERR_LIMIT && e->prompt_tokens) {
        /* believed only when the context the worker named when it got the
           job cannot hold that length and, for ids (counted here), when it
           is their number: then the worker is passed over from now on
           (pick_worker), so the job cannot come back to it, and a re-queue
           costs no attempt */
        if (job_need(e->prompt_tokens, j->sent_min) <= j->sent_ctx ||
            (!j->text_prompt && e->prompt_tokens != j->prompt_len)) {
            requeue(c, j, "a worker refused a prompt its context holds");
            return;
        }
        if (j->text_prompt && e->prompt_tokens > j->prompt_len) { /* ids: known here, a worker cannot change them */
            j->prompt_len = e->prompt_tokens;
            j->need = job_need(j->prompt_len, j->max_tokens);
        }
        /* refused for the output asked for (Job.min_tokens), not the prompt:
           with the prompt's length known the job goes where it fits best,
           back to this worker when none is larger */
        int held_elsewhere = e->prompt_tokens < j->sent_ctx;
        worker *o;
        uint32_t ctx;
        DL_FOREACH(c->workers, o) held_elsewhere |= can_take(o, j, &ctx) && ctx > j->prompt_len;
        if (held_elsewhere) { /* not the worker's fault: no attempt counted */
            requeue_as(c, j,
                       e->prompt_tokens >= j->sent_ctx ? "prompt longer than the worker's context"
                                                       : "the output asked for does not fit the worker's context",
                       0);
            return;
        }
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (opg_frame_encode(T(ERROR), &e->base, &buf, &len)) return;
    finish_job(c, j, OPG_JOB_FAILED, buf, len);
}

static void answer_error(opg_coord *c, const opg_peer *p, uint64_t job_id, opg_status err, const char *msg);

/* Receives one message from sock (named for the log): 1 with *f decoded, 0
 * when none was waiting, -1 when it was malformed (answered with an Error
 * when the sender is known, counted, logged). */
static int recv_one(opg_coord *c, void *sock, const char *name, opg_peer *p, opg_frame **f) {
    opg_status st = opg_sock_recv(sock, 1, p, f);
    if (st == OPG_ERR_TIMEOUT) return 0;
    if (st == OPG_OK) return 1;
    metric_add(c, c->m_rejected, 1);
    LOG(OPG_LOG_WARN, "frame_rejected", "socket=%s code=%d error=\"%s\"", name, st, opg_last_error());
    /* a client's answer waits its turn behind the acks of the batch (it may
       have been a SubmitJob); a worker's goes now */
    if (p->rid_len && sock == c->csock) answer_error(c, p, 0, st, opg_last_error());
    else if (p->rid_len) opg_sock_send_error(sock, p, 0, st, opg_last_error());
    return -1;
}

/* Handles one message from a worker: 1, or 0 when none was waiting. */
static int handle_worker(opg_coord *c) {
    opg_peer p;
    opg_frame *f = NULL;
    int got = recv_one(c, c->wsock, "workers", &p, &f);
    if (got <= 0) return got < 0;
    worker *w = worker_find(c, &p);
    if (w) w->last_seen = opg_now_ms();
    switch (f->type) {
    case T(READY): on_ready(c, &p, (Opg__V1__Ready *)f->msg); break;
    case T(HEARTBEAT):
        if (w) w->hb_ms = ((const Opg__V1__Heartbeat *)f->msg)->interval_ms;
        break;
    case T(TOKENS): if (w) on_tokens(c, w, (Opg__V1__Tokens *)f->msg); break;
    case T(RESULT): if (w) on_result(c, w, (Opg__V1__Result *)f->msg); break;
    case T(ERROR): if (w) on_worker_error(c, w, (Opg__V1__Error *)f->msg); break;
    case T(DISCONNECT):
        settle_results(c); /* a draining worker's last Results come just before: they count */
        if (w) { /* its reason (a worker whose backend failed says why) */
            const Opg__V1__Disconnect *d = (const Opg__V1__Disconnect *)f->msg;
            char why[OPG_PROTO_MAX_SHORT_STRING + 32];
            snprintf(why, sizeof why, "disconnected: %s", d->reason && *d->reason ? d->reason : "no reason given");
            worker_remove(c, w, why, d->backend_failed);
        }
        w = NULL;
        break;
    default:
        opg_sock_send_error(c->wsock, &p, 0, OPG_ERR_ARG, "message not valid from a worker");
        break;
    }
    /* Majordomo: a peer that has not said Ready is told to start over */
    if (!w && f->type != T(READY) && f->type != T(DISCONNECT)) {
        Opg__V1__Disconnect d = OPG__V1__DISCONNECT__INIT;
        d.reason = "unknown worker: send Ready first";
        opg_sock_send(c->wsock, &p, T(DISCONNECT), &d.base);
    }
    opg_frame_free(&f);
    return 1;
}

/* ---- client messages ----------------------------------------------------------------- */
static void reply_status(opg_coord *c, const opg_peer *p, uint64_t id, int state, uint32_t done) {
    Opg__V1__StatusReply r = OPG__V1__STATUS_REPLY__INIT;
    r.job_id = id;
    r.state = state;
    r.tokens_done = done;
    send_client(c, p, T(STATUS_REPLY), &r.base);
}

static job *active_job(opg_coord *c, uint64_t id) {
    job *j = NULL;
    HASH_FIND(hh, c->jobs, &id, sizeof id, j);
    return j;
}

/* Who may ask about, stream or cancel a job: the client that submitted it,
 * known by its CurveZMQ key (ZAP's User-Id; "" for every client of an
 * endpoint without CURVE); a job stored before owners existed, anyone. */
static int owner_is(int has_owner, const char *owner, const opg_peer *p) {
    return !has_owner || strcmp(owner, p->user_id) == 0;
}

/* Another client's job is answered as an unknown one: ids are sequential,
 * and whether one exists is none of that client's business. */
static void answer_not_found(opg_coord *c, const opg_peer *p, uint64_t id) {
    char msg[96];
    snprintf(msg, sizeof msg, "no job %llu", (unsigned long long)id);
    opg_sock_send_error(c->csock, p, id, OPG_ERR_NOT_FOUND, msg);
}

/* The job in memory with this id if p may see it; *denied = 1 when it exists
 * but belongs to another client. */
static job *client_job(opg_coord *c, const opg_peer *p, uint64_t id, int *denied) {
    job *j = active_job(c, id);
    *denied = j && !owner_is(j->has_owner, j->owner, p);
    return *denied ? NULL : j;
}

static void push_answer(opg_coord *c, ack *a) {
    if (c->acks_tail) c->acks_tail->next = a;
    else c->acks = a;
    c->acks_tail = a;
}

/* An Error to a client (a refused SubmitJob, a malformed frame, ...): it
 * goes out after the commit with the batch's SubmitAcks, so a client
 * pipelining requests gets its answers in order. */
static void answer_error(opg_coord *c, const opg_peer *p, uint64_t job_id, opg_status err, const char *msg) {
    ack *a = calloc(1, sizeof *a);
    char *m = a ? strdup(msg) : NULL;
    if (!m) { /* no memory to hold it: answer now, out of order rather than never */
        free(a);
        opg_sock_send_error(c->csock, p, job_id, err, msg);
        return;
    }
    a->peer = *p;
    a->kind = ANSWER_ERROR;
    a->err = err;
    a->err_job = job_id;
    a->msg = m;
    push_answer(c, a);
}

/* A StatusReply (kind ANSWER_STATUS) or JobRequest (ANSWER_REQUEST) about
 * j, submitted in this batch (not acknowledged yet): after its ack, with its
 * state then. */
static void answer_later(opg_coord *c, const opg_peer *p, job *j, int kind) {
    ack *a = calloc(1, sizeof *a);
    if (!a) {
        opg_sock_send_error(c->csock, p, j->id, OPG_ERR_NOMEM, "coordinator out of memory");
        return;
    }
    a->peer = *p;
    a->kind = kind;
    a->j = j;
    push_answer(c, a);
}

/* A JobRequest: job id and its stored SubmitJob (req, len bytes). */
static void send_job_request(opg_coord *c, const opg_peer *p, uint64_t id, const uint8_t *req, size_t len) {
    Opg__V1__SubmitJob *sj = opg__v1__submit_job__unpack(NULL, len, req);
    if (!sj) {
        opg_sock_send_error(c->csock, p, id, OPG_ERR_FORMAT, "the job's stored request cannot be read back");
        return;
    }
    Opg__V1__JobRequest m = OPG__V1__JOB_REQUEST__INIT;
    m.job_id = id;
    m.request = sj;
    send_client(c, p, T(JOB_REQUEST), &m.base);
    opg__v1__submit_job__free_unpacked(sj, NULL);
}

static void on_submit(opg_coord *c, const opg_peer *p, const Opg__V1__SubmitJob *sj) {
    if (sj->contract_version != OPG_CONTRACT_VERSION) {
        char msg[128];
        snprintf(msg, sizeof msg, "determinism contract v%u not served here (this network runs v%d)",
                 sj->contract_version, OPG_CONTRACT_VERSION);
        answer_error(c, p, 0, OPG_ERR_UNSUPPORTED, msg);
        return;
    }
    if (c->n_queued + c->n_acked_pending >= c->cfg.queue_max) {
        answer_error(c, p, 0, OPG_ERR_LIMIT, "queue full: try again later");
        return;
    }
    size_t len = protobuf_c_message_get_packed_size(&sj->base);
    uint8_t *buf = malloc(len ? len : 1);
    ack *a = calloc(1, sizeof *a);
    if (!buf || !a) {
        free(buf);
        free(a);
        answer_error(c, p, 0, OPG_ERR_NOMEM, "coordinator out of memory");
        return;
    }
    protobuf_c_message_pack(&sj->base, buf);
    uint64_t id = 0;
    opg_status st = begin(c);
    if (st == OPG_OK) st = opg_jobstore_insert(c->store, buf, len, p->user_id, opg_wall_ms(), &id);
    job *j = st == OPG_OK ? job_new(id, buf, len, sj, p->user_id, opg_now_ms()) : NULL;
    free(buf);
    if (!j) {
        free(a);
        /* stored but not in memory (out of memory): the batch must not commit
           a job its client is told was refused */
        if (!st) opg__fail(OPG_ERR_NOMEM, "out of memory for job %llu", (unsigned long long)id);
        store_failed(c, st ? st : OPG_ERR_NOMEM);
        LOG(OPG_LOG_ERROR, "store_failed", "error=\"%s\"", opg_last_error());
        answer_error(c, p, 0, st ? st : OPG_ERR_NOMEM, "coordinator cannot store the job");
        return;
    }
    j->state = 0; /* becomes QUEUED after the commit */
    OPG_LT(id, OPG_LT_C_SUBMIT, 0);
    HASH_ADD(hh, c->jobs, id, sizeof j->id, j);
    a->peer = *p;
    a->kind = ANSWER_ACK;
    a->j = j;
    push_answer(c, a);
    c->n_acked_pending++;
}

/* Status, GetResult or Stream of a job no longer in memory: from the store. */
/* Job id from the store into *row when p may see it; else answers p (as
 * for an unknown id when it is another client's) and returns nonzero. */
static int stored_job(opg_coord *c, const opg_peer *p, uint64_t id, opg_job_row *row) {
    opg_status st = opg_jobstore_get(c->store, id, row);
    if (st == OPG_OK && !owner_is(row->has_owner, row->owner, p)) {
        opg_job_row_clear(row);
        st = OPG_ERR_NOT_FOUND;
    }
    if (st == OPG_ERR_NOT_FOUND) answer_not_found(c, p, id);
    else if (st) opg_sock_send_error(c->csock, p, id, st, opg_last_error());
    return st != OPG_OK;
}

static void on_final_lookup(opg_coord *c, const opg_peer *p, uint64_t id, int stream, int status_only) {
    opg_job_row row;
    if (stored_job(c, p, id, &row)) return;
    opg_frame *f = NULL;
    const Opg__V1__Result *r = NULL;
    if (row.state == OPG_JOB_DONE && row.result && opg_frame_decode(row.result, row.result_len, &f) == OPG_OK &&
        f->type == T(RESULT))
        r = (const Opg__V1__Result *)f->msg;
    if (status_only || !row.result) {
        reply_status(c, p, id, row.state, r ? (uint32_t)r->n_output_tokens : 0);
    } else {
        if (stream && r) send_tokens(c, p, id, r->output_tokens, 0, (uint32_t)r->n_output_tokens);
        send_client_raw(c, p, row.result, row.result_len);
    }
    opg_frame_free(&f);
    opg_job_row_clear(&row);
}

/* GetRequest of a job no longer in memory: from the store. */
static void on_request_lookup(opg_coord *c, const opg_peer *p, uint64_t id) {
    opg_job_row row;
    if (stored_job(c, p, id, &row)) return;
    send_job_request(c, p, id, row.request, row.request_len);
    opg_job_row_clear(&row);
}

static void add_sub(opg_coord *c, job *j, const opg_peer *p, int stream) {
    /* the same request again from the same client (it asks again after its
       link came back, not knowing whether this coordinator still had it):
       one is enough. A stream's tokens are sent again from 0 (some may have
       gone into the lost connection; the client keeps each index once) */
    if (stream != SUB_STATUS)
        for (sub *o = j->subs; o; o = o->next)
            if (o->stream == stream && peer_eq(&o->peer, p)) {
                if (stream == SUB_STREAM && !j->final_state) { /* from 0 again */
                    o->sent = 0;
                    o->lagging = send_tokens(c, p, j->id, j->toks, 0, j->n_toks) != OPG_OK;
                    if (!o->lagging) o->sent = j->n_toks;
                }
                return;
            }
    /* each costs memory and a send when the job ends; a Cancel's answer only
       waits for this batch's commit, so it is always taken */
    if (stream != SUB_STATUS && j->n_subs >= MAX_SUBS_PER_JOB) {
        char msg[128];
        snprintf(msg, sizeof msg, "job %llu: %d requests already wait on it", (unsigned long long)j->id,
                 MAX_SUBS_PER_JOB);
        opg_sock_send_error(c->csock, p, j->id, OPG_ERR_LIMIT, msg);
        return;
    }
    sub *s = calloc(1, sizeof *s);
    if (!s) {
        opg_sock_send_error(c->csock, p, j->id, OPG_ERR_NOMEM, "coordinator out of memory");
        return;
    }
    s->peer = *p;
    s->stream = stream;
    if (stream == SUB_STREAM && j->n_toks && !j->final_state) {
        s->lagging = send_tokens(c, p, j->id, j->toks, 0, j->n_toks) != OPG_OK;
        if (!s->lagging) s->sent = j->n_toks;
    }
    DL_APPEND(j->subs, s); /* delivered in the order asked */
    j->n_subs++;
}

static void on_cancel(opg_coord *c, const opg_peer *p, uint64_t id) {
    int denied = 0;
    job *j = client_job(c, p, id, &denied);
    if (denied) {
        answer_not_found(c, p, id);
        return;
    }
    if (j && j->result_pending) { /* its Result came first: it finishes DONE, as without the wait */
        settle_results(c);
        j = active_job(c, id);
    }
    if (!j) {
        on_final_lookup(c, p, id, 0, 1); /* already final (or unknown): its state */
        return;
    }
    /* answered after the commit; for a job submitted in this batch, in order
       with the other answers about it (after its ack) */
    int unacked = !j->state;
    if (j->final_state) { /* finishing in this batch */
        if (unacked) answer_later(c, p, j, ANSWER_STATUS);
        else add_sub(c, j, p, SUB_STATUS);
        return;
    }
    worker *w = j->w;
    char msg[96];
    snprintf(msg, sizeof msg, "job %llu was cancelled", (unsigned long long)id);
    Opg__V1__Error e = OPG__V1__ERROR__INIT;
    e.job_id = id;
    e.code = OPG_ERR_DENIED;
    e.message = msg;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (opg_frame_encode(T(ERROR), &e.base, &buf, &len)) return;
    finish_job(c, j, OPG_JOB_CANCELLED, buf, len);
    if (w) {
        Opg__V1__Cancel cm = OPG__V1__CANCEL__INIT;
        cm.job_id = id;
        opg_sock_send(c->wsock, &w->peer, T(CANCEL), &cm.base);
    }
    if (unacked) answer_later(c, p, j, ANSWER_STATUS);
    else add_sub(c, j, p, SUB_STATUS);
}

/* The job a client request is about (0: a SubmitJob or anything else), for
 * an Error that its client matches to the request. */
static uint64_t request_job_id(const opg_frame *f) {
    switch (f->type) {
    case T(STATUS): return ((const Opg__V1__Status *)f->msg)->job_id;
    case T(GET_RESULT): return ((const Opg__V1__GetResult *)f->msg)->job_id;
    case T(STREAM): return ((const Opg__V1__Stream *)f->msg)->job_id;
    case T(CANCEL): return ((const Opg__V1__Cancel *)f->msg)->job_id;
    case T(GET_REQUEST): return ((const Opg__V1__GetRequest *)f->msg)->job_id;
    default: return 0;
    }
}

/* Handles one message from a client: 1, or 0 when none was waiting. */
static int handle_client(opg_coord *c) {
    opg_peer p;
    opg_frame *f = NULL;
    int got = recv_one(c, c->csock, "clients", &p, &f);
    if (got <= 0) return got < 0;
    uint64_t id = 0;
    job *j = NULL;
    int denied = 0;
    if (c->cfg.key && p.rid_len < MIN_CLIENT_RID) {
        /* answers go to a routing id: one another client could guess (ZeroMQ's
           own are a counter) could be taken over once this connection is gone */
        answer_error(c, &p, request_job_id(f), OPG_ERR_DENIED,
                     "use a random routing id of at least 16 bytes on this endpoint (docs/protocol.md)");
        opg_frame_free(&f);
        return 1;
    }
    switch (f->type) {
    case T(SUBMIT_JOB):
        on_submit(c, &p, (Opg__V1__SubmitJob *)f->msg);
        break;
    case T(STATUS):
        id = ((Opg__V1__Status *)f->msg)->job_id;
        j = client_job(c, &p, id, &denied);
        if (denied) answer_not_found(c, &p, id);
        else if (j && j->state && !j->final_state) reply_status(c, &p, id, j->state, j->n_toks);
        else if (j && j->final_state) add_sub(c, j, &p, SUB_STATUS); /* final once committed */
        else if (j) answer_later(c, &p, j, ANSWER_STATUS); /* submitted in this batch: after its ack */
        else on_final_lookup(c, &p, id, 0, 1);
        break;
    case T(GET_RESULT): {
        Opg__V1__GetResult *g = (Opg__V1__GetResult *)f->msg;
        j = client_job(c, &p, g->job_id, &denied);
        OPG_LT(g->job_id, j ? OPG_LT_C_GETRESULT : OPG_LT_C_LOOKUP, 0);
        if (denied) answer_not_found(c, &p, g->job_id);
        else if (j && (g->wait || j->final_state)) add_sub(c, j, &p, SUB_RESULT);
        else if (j) {
            char msg[96];
            snprintf(msg, sizeof msg, "job %llu is not finished", (unsigned long long)g->job_id);
            if (j->state) opg_sock_send_error(c->csock, &p, g->job_id, OPG_ERR_STATE, msg);
            else answer_error(c, &p, g->job_id, OPG_ERR_STATE, msg); /* submitted in this batch: after its ack */
        } else on_final_lookup(c, &p, g->job_id, 0, 0);
        break;
    }
    case T(STREAM):
        id = ((Opg__V1__Stream *)f->msg)->job_id;
        j = client_job(c, &p, id, &denied);
        if (denied) answer_not_found(c, &p, id);
        else if (j) add_sub(c, j, &p, SUB_STREAM);
        else on_final_lookup(c, &p, id, 1, 0);
        break;
    case T(CANCEL):
        on_cancel(c, &p, ((Opg__V1__Cancel *)f->msg)->job_id);
        break;
    case T(GET_REQUEST):
        id = ((Opg__V1__GetRequest *)f->msg)->job_id;
        j = client_job(c, &p, id, &denied);
        if (denied) answer_not_found(c, &p, id);
        else if (j && j->state) send_job_request(c, &p, id, j->req, j->req_len);
        else if (j) answer_later(c, &p, j, ANSWER_REQUEST); /* submitted in this batch: after its ack */
        else on_request_lookup(c, &p, id);
        break;
    default:
        answer_error(c, &p, 0, OPG_ERR_ARG, "message not valid from a client");
        break;
    }
    opg_frame_free(&f);
    return 1;
}

/* ---- commit ----------------------------------------------------------------------- */
static opg_status commit(opg_coord *c) {
    if (!c->in_txn && !c->acks) return OPG_OK;
    if (c->in_txn) { /* else only refusals wait: nothing to store */
        c->in_txn = 0;
        opg_status st = opg_jobstore_commit(c->store);
        OPG_LT(0, OPG_LT_C_SYNCED, 0);
        if (st) {
            char why[512];
            snprintf(why, sizeof why, "%s", opg_last_error());
            opg_jobstore_rollback(c->store);
            LOG(OPG_LOG_ERROR, "store_commit_failed", "error=\"%s\"", why);
            return opg__fail(st, "job store: %s", why);
        }
    }
    for (ack *a = c->acks, *n; a; a = n) {
        n = a->next;
        if (a->kind == ANSWER_ERROR) {
            opg_sock_send_error(c->csock, &a->peer, a->err_job, a->err, a->msg);
            free(a->msg);
            free(a);
            continue;
        }
        if (a->kind == ANSWER_STATUS) { /* its ack went before it: queued, or final in this batch */
            job *sj = a->j;
            reply_status(c, &a->peer, sj->id, sj->final_state ? sj->final_state : sj->state, sj->n_toks);
            free(a);
            continue;
        }
        if (a->kind == ANSWER_REQUEST) {
            send_job_request(c, &a->peer, a->j->id, a->j->req, a->j->req_len);
            free(a);
            continue;
        }
        Opg__V1__SubmitAck m = OPG__V1__SUBMIT_ACK__INIT;
        m.job_id = a->j->id;
        send_client(c, &a->peer, T(SUBMIT_ACK), &m.base);
        OPG_LT(m.job_id, OPG_LT_C_ACK, 0);
        /* cancelled in the same batch (a Cancel may name an id before its
           ack): final already, deliver_finished frees it, so never queued */
        if (!a->j->final_state) enqueue(c, a->j, 0);
        metric_add(c, c->m_submitted, 1);
        free(a);
    }
    c->acks = c->acks_tail = NULL;
    c->n_acked_pending = 0;
    deliver_finished(c);
    return OPG_OK;
}

/* A store write of this batch failed: nothing of the batch is committed or
 * answered (acks and results wait for the commit), and the loop stops. */
static opg_status stop_on_store_error(opg_coord *c) {
    if (!c->store_error) return OPG_OK;
    if (c->in_txn) opg_jobstore_rollback(c->store);
    c->in_txn = 0;
    LOG(OPG_LOG_ERROR, "store_commit_failed", "error=\"%s\"", c->store_msg);
    return opg__fail(c->store_error, "job store: %s", c->store_msg);
}

/* ---- heartbeats ----------------------------------------------------------------------- */
static void send_heartbeat(opg_coord *c, const worker *w) {
    Opg__V1__Heartbeat hb = OPG__V1__HEARTBEAT__INIT;
    hb.seq = ++c->hb_seq;
    hb.time_unix_ms = (uint64_t)opg_wall_ms();
    hb.interval_ms = (uint32_t)c->cfg.heartbeat_ms;
    opg_sock_send(c->wsock, &w->peer, T(HEARTBEAT), &hb.base);
}

static void heartbeat(opg_coord *c, int64_t now) {
    if (now < c->next_hb) return;
    c->next_hb = now + c->cfg.heartbeat_ms;
    worker *w, *t;
    DL_FOREACH_SAFE(c->workers, w, t) {
        if (now - w->last_seen > opg_proto_silence_ms(c->cfg.heartbeat_ms, w->hb_ms, c->cfg.liveness)) {
            worker_remove(c, w, "heartbeat timeout", 1);
            c->dispatch_dirty = 1;
            continue;
        }
        send_heartbeat(c, w);
    }
}

/* Retention (--retention-s): one bounded step of deleting final jobs older
 * than the retention, in the loop's transaction (committed with the batch). */
static void prune(opg_coord *c, int64_t now) {
    if (c->cfg.retention_ms <= 0 || now < c->next_prune) return;
    c->next_prune = now + PRUNE_EVERY_MS;
    int64_t deleted = 0;
    opg_status st = begin(c);
    if (st == OPG_OK)
        st = opg_jobstore_prune(c->store, opg_wall_ms() - c->cfg.retention_ms, PRUNE_ROWS, &c->prune_cursor,
                                &deleted);
    if (st) {
        store_failed(c, st);
        LOG(OPG_LOG_ERROR, "store_failed", "error=\"%s\"", opg_last_error());
        return;
    }
    if (deleted) {
        metric_add(c, c->m_pruned, (double)deleted);
        LOG(OPG_LOG_DEBUG, "pruned", "jobs=%lld", (long long)deleted);
    }
}

static void update_gauges(opg_coord *c) {
    if (!c->cfg.metrics) return;
    uint64_t slots = 0;
    worker *w;
    DL_FOREACH(c->workers, w) slots += w->slots;
    metric_set(c, c->m_queue, (double)c->n_queued);
    metric_set(c, c->m_models, (double)HASH_COUNT(c->queues));
    metric_set(c, c->m_running, (double)c->n_running);
    metric_set(c, c->m_workers, (double)c->n_workers);
    metric_set(c, c->m_slots, (double)slots);
}

static void read_monitors(opg_coord *c);

opg_status opg_coord_run(opg_coord *c, volatile sig_atomic_t *stop) {
    zmq_pollitem_t items[4] = {{c->wsock, 0, ZMQ_POLLIN, 0}, {c->csock, 0, ZMQ_POLLIN, 0},
                               {c->mon[0], 0, ZMQ_POLLIN, 0}, {c->mon[1], 0, ZMQ_POLLIN, 0}};
    int n_items = c->mon[0] && c->mon[1] ? 4 : 2;
    opg_status st = OPG_OK;
    while (!stop || !*stop) {
        int64_t now = opg_now_ms();
        int64_t wake = c->next_hb; /* the next heartbeat, or the next prune step when sooner */
        if (c->cfg.retention_ms > 0 && c->next_prune < wake) wake = c->next_prune;
        long timeout = wake > now && !c->dispatch_dirty ? (long)(wake - now) : 0;
        if (zmq_poll(items, n_items, timeout) < 0 && zmq_errno() != EINTR) {
            st = opg__fail(OPG_ERR_IO, "poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (n_items == 4 && (items[2].revents | items[3].revents)) read_monitors(c);
        /* Both sockets in turn, each until it has nothing waiting. A
         * non-blocking receive that finds a message costs no system call;
         * asking ZMQ_EVENTS first cost a poll(2) per message and socket. */
        OPG_LT(0, OPG_LT_C_WAKE, 0);
        int more_w = 1, more_c = 1, n = 0;
        while ((more_w || more_c) && n < BATCH_MAX) {
            if (more_w && (more_w = handle_worker(c))) n++;
            if (more_c && (more_c = handle_client(c))) n++;
        }
        OPG_LT(0, OPG_LT_C_BATCH, (uint32_t)n);
        settle_results(c);
        if ((st = stop_on_store_error(c)) || (st = commit(c))) break;
        OPG_LT(0, OPG_LT_C_COMMIT, 0);
        now = opg_now_ms();
        heartbeat(c, now);
        prune(c, now);
        /* jobs failed by lost workers, jobs pruned */
        if ((st = stop_on_store_error(c)) || (st = commit(c))) break;
        dispatch(c);
        OPG_LT(0, OPG_LT_C_DISPATCH, 0);
        update_gauges(c);
    }
    /* what the last dispatch wrote (a job failed or re-queued by a worker
       it could not reach) is kept on a clean stop too */
    if (st == OPG_OK && !(st = stop_on_store_error(c))) st = commit(c);
    return st;
}

/* ---- setup ---------------------------------------------------------------------------- */
static int restore_one(void *ctx, const opg_job_pending *p) {
    opg_coord *c = ctx;
    job *j = job_new(p->id, p->request, p->request_len, NULL, p->owner, opg_now_ms());
    if (!j) {
        LOG(OPG_LOG_ERROR, "job_unreadable", "job=%llu", (unsigned long long)p->id);
        return 0;
    }
    j->attempts = p->tries.attempts;
    j->alone = p->tries.alone;
    j->lost_alone = p->tries.lost_alone;
    HASH_ADD(hh, c->jobs, id, sizeof j->id, j);
    enqueue(c, j, 0);
    return 0;
}

static opg_status bind_sock(opg_coord *c, void **sock, const char *ep, const char *domain, char *out, size_t outn) {
    *sock = zmq_socket(c->zctx, ZMQ_ROUTER);
    if (!*sock) return opg__fail(OPG_ERR_IO, "socket: %s", zmq_strerror(zmq_errno()));
    int hwm = strcmp(domain, "clients") == 0 ? c->cfg.client_hwm : 100000;
    opg_status st = opg_sock_setup(*sock, 1, hwm, 100000, 0);
    if (st) return st;
    if (c->cfg.key && (st = opg_sock_curve_server(*sock, c->cfg.key, domain))) return st;
    opg_sock_ipv6_for(*sock, ep);
    if (zmq_bind(*sock, ep) != 0) {
        int e = zmq_errno();
        return opg__fail(OPG_ERR_IO, "cannot bind the %s endpoint %s: %s%s", domain, ep, zmq_strerror(e),
                         e == ENODEV ? " (a bind takes an IP address, an interface name or *, not a host name:"
                                       " e.g. tcp://127.0.0.1:PORT)" : "");
    }
    size_t n = outn;
    if (zmq_getsockopt(*sock, ZMQ_LAST_ENDPOINT, out, &n) != 0) snprintf(out, outn, "%s", ep);
    return OPG_OK;
}

/* With CURVE, a peer that does not speak it (or expects another server key)
 * fails the handshake before ZAP sees a key: the socket's monitor reports
 * it (libzmq names no peer address there, only the endpoint). */
static opg_status monitor_handshakes(opg_coord *c, void *sock, int i, const char *domain) {
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://opg-coordinator-monitor-%s", domain);
    int zero = 0;
    /* not ..._AUTH: a key ZAP refused, logged as zap_refuse with the key */
    if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0 ||
        !(c->mon[i] = zmq_socket(c->zctx, ZMQ_PAIR)) || zmq_setsockopt(c->mon[i], ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_connect(c->mon[i], ep) != 0)
        return opg__fail(OPG_ERR_IO, "monitor of the %s socket: %s", domain, zmq_strerror(zmq_errno()));
    return OPG_OK;
}

/* Logs the handshake failures the monitors hold (event=handshake_failed). */
static void read_monitors(opg_coord *c) {
    static const char *const domains[2] = {"workers", "clients"};
    for (int i = 0; i < 2; i++) {
        uint16_t ev;
        uint32_t val;
        while (opg_sock_monitor_event(c->mon[i], &ev, &val)) {
            /* a misconfigured peer retries every 100 ms (libzmq's reconnect), a
               health check every few seconds: a line per 10 s says enough */
            int64_t now = opg_now_ms();
            if (c->mon_logged_ms[i] && now - c->mon_logged_ms[i] < 10000) {
                c->mon_unlogged[i]++;
                continue;
            }
            c->mon_logged_ms[i] = now;
            const char *why = ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? "protocol" : "no_detail";
            LOG(OPG_LOG_WARN, "handshake_failed",
                "domain=%s why=%s code=0x%x more_since_last=%lld hint=\"a peer without CURVE, one with another "
                "server key, or a connection closed mid-handshake (a TCP health check, a port scan)\"",
                domains[i], why, (unsigned)val, (long long)c->mon_unlogged[i]);
            c->mon_unlogged[i] = 0;
        }
    }
}

static void register_metrics(opg_coord *c) {
    opg_metrics *m = c->cfg.metrics;
    int *all[] = {&c->m_submitted, &c->m_done, &c->m_failed, &c->m_cancelled, &c->m_requeued, &c->m_tokens,
                  &c->m_rejected, &c->m_dropped, &c->m_queue, &c->m_running, &c->m_workers, &c->m_slots,
                  &c->m_latency, &c->m_wait, &c->m_models, &c->m_pruned};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) *all[i] = -1;
    if (!m) return;
    c->m_submitted = opg_metrics_counter(m, "opg_jobs_submitted_total", NULL, "Jobs accepted (stored and acknowledged).");
    c->m_done = opg_metrics_counter(m, "opg_jobs_finished_total", "state=\"done\"", "Jobs finished, by final state.");
    c->m_failed = opg_metrics_counter(m, "opg_jobs_finished_total", "state=\"failed\"", "Jobs finished, by final state.");
    c->m_cancelled = opg_metrics_counter(m, "opg_jobs_finished_total", "state=\"cancelled\"", "Jobs finished, by final state.");
    c->m_requeued = opg_metrics_counter(m, "opg_jobs_requeued_total", NULL, "Jobs put back in the queue: a worker lost, a transient worker error or refused Result, a context too small.");
    c->m_tokens = opg_metrics_counter(m, "opg_tokens_generated_total", NULL, "Output tokens of finished jobs.");
    c->m_rejected = opg_metrics_counter(m, "opg_frames_rejected_total", NULL, "Malformed, oversized or wrong-version frames.");
    c->m_dropped = opg_metrics_counter(m, "opg_client_messages_dropped_total", NULL, "Messages to clients dropped because their queue was full.");
    c->m_pruned = opg_metrics_counter(m, "opg_jobs_pruned_total", NULL, "Finished jobs deleted from the store after the retention (--retention-s).");
    c->m_queue = opg_metrics_gauge(m, "opg_queue_depth", NULL, "Jobs waiting for a worker.");
    c->m_running = opg_metrics_gauge(m, "opg_jobs_running", NULL, "Jobs running on a worker.");
    c->m_workers = opg_metrics_gauge(m, "opg_workers", NULL, "Connected workers.");
    c->m_slots = opg_metrics_gauge(m, "opg_worker_slots", NULL, "Job slots of the connected workers.");
    c->m_models = opg_metrics_gauge(m, "opg_model_queues", NULL, "Models with jobs waiting (one queue each).");
    c->m_latency = opg_metrics_histogram(m, "opg_job_latency_seconds", NULL, "From acknowledgement to result.",
                                         opg_metrics_latency_bounds, opg_metrics_n_latency_bounds);
    c->m_wait = opg_metrics_histogram(m, "opg_job_queue_seconds", NULL, "From acknowledgement to dispatch.",
                                      opg_metrics_latency_bounds, opg_metrics_n_latency_bounds);
}

opg_status opg_coord_new(const opg_coord_config *cfg, opg_coord **out) {
    *out = NULL;
    if (!cfg || !cfg->workers_endpoint || !cfg->clients_endpoint || !cfg->db_path)
        return opg__fail(OPG_ERR_ARG, "coordinator: endpoints and a store path are required");
    opg_lt_init("coord");
    const char *eps[2] = {cfg->workers_endpoint, cfg->clients_endpoint};
    for (int i = 0; i < 2; i++) {
        opg_status est = opg_endpoint_check(eps[i]);
        if (est) return est;
    }
    if (!cfg->key) {
        for (int i = 0; i < 2; i++)
            if (!opg_endpoint_is_local(eps[i]))
                return opg__fail(OPG_ERR_DENIED,
                                 "endpoint %s leaves this machine: CurveZMQ is required (give a key, opg keygen)",
                                 eps[i]);
    }
    opg_coord *c = calloc(1, sizeof *c);
    if (!c) return opg__fail(OPG_ERR_NOMEM, "coordinator: out of memory");
    c->cfg = *cfg;
    if (c->cfg.heartbeat_ms <= 0) c->cfg.heartbeat_ms = 1000;
    if (c->cfg.liveness <= 0) c->cfg.liveness = 3;
    if (c->cfg.max_attempts <= 0) c->cfg.max_attempts = 5;
    if (c->cfg.max_lost_alone <= 0) c->cfg.max_lost_alone = 2;
    if (c->cfg.queue_max <= 0) c->cfg.queue_max = 1000000;
    if (c->cfg.client_hwm <= 0) c->cfg.client_hwm = 1000;
    if (c->cfg.verify_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->cfg.verify_threads = n < 1 ? 1 : n > 4 ? 4 : (int)n;
    }
    /* NULL (one thread, or no threads to be had): the checks run on the loop's thread */
    if (c->cfg.receipts != OPG_RECEIPTS_FIELDS && c->cfg.verify_threads > 1)
        c->verify_pool = opg_pool_new(c->cfg.verify_threads);
    register_metrics(c);
    opg_status st = opg_jobstore_open_exclusive(cfg->db_path, &c->store); /* one coordinator per store */
    if (st) goto fail;
    if (!(c->zctx = zmq_ctx_new())) {
        st = opg__fail(OPG_ERR_IO, "zmq context: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (cfg->key) {
        if ((st = opg_zap_start(c->zctx, &c->zap))) goto fail;
        opg_zap_set_log(c->zap, &c->cfg.log); /* refused peers show in the log */
        for (size_t i = 0; i < cfg->n_worker_keys; i++)
            if ((st = opg_zap_allow(c->zap, "workers", cfg->worker_keys[i]))) goto fail;
        for (size_t i = 0; i < cfg->n_client_keys; i++)
            if ((st = opg_zap_allow(c->zap, "clients", cfg->client_keys[i]))) goto fail;
    }
    if ((st = bind_sock(c, &c->wsock, cfg->workers_endpoint, "workers", c->wep, sizeof c->wep))) goto fail;
    if ((st = bind_sock(c, &c->csock, cfg->clients_endpoint, "clients", c->cep, sizeof c->cep))) goto fail;
    if (cfg->key && ((st = monitor_handshakes(c, c->wsock, 0, "workers")) ||
                     (st = monitor_handshakes(c, c->csock, 1, "clients"))))
        goto fail;
    if ((st = opg_jobstore_pending(c->store, restore_one, c))) goto fail;
    if (c->n_queued)
        LOG(OPG_LOG_INFO, "jobs_restored", "queued=%lld", (long long)c->n_queued);
    c->next_hb = opg_now_ms() + c->cfg.heartbeat_ms;
    *out = c;
    return OPG_OK;
fail:
    opg_coord_free(c);
    return st;
}

void opg_coord_free(opg_coord *c) {
    if (!c) return;
    worker *w, *wt;
    DL_FOREACH_SAFE(c->workers, w, wt) {
        DL_DELETE(c->workers, w);
        free(w->models);
        free(w->contexts);
        free(w->jobs);
        free(w);
    }
    for (ack *a = c->acks, *n; a; a = n) {
        n = a->next;
        free(a->msg);
        free(a);
    }
    for (size_t i = 0; i < c->n_pend; i++) {
        free(c->pend[i].frame);
        free(c->pend[i].receipt);
    }
    free(c->pend);
    opg_pool_free(c->verify_pool);
    job *j, *jt;
    HASH_ITER(hh, c->jobs, j, jt) {
        HASH_DEL(c->jobs, j);
        job_free(j);
    }
    mqueue *q, *qt;
    HASH_ITER(hh, c->queues, q, qt) {
        HASH_DEL(c->queues, q);
        free(q);
    }
    if (c->wsock) zmq_close(c->wsock);
    if (c->csock) zmq_close(c->csock);
    for (int i = 0; i < 2; i++)
        if (c->mon[i]) zmq_close(c->mon[i]);
    opg_zap_stop(c->zap);
    if (c->zctx) zmq_ctx_term(c->zctx);
    if (c->in_txn) opg_jobstore_rollback(c->store);
    opg_jobstore_close(c->store);
    free(c);
}

const char *opg_coord_workers_endpoint(const opg_coord *c) { return c->wep; }
const char *opg_coord_clients_endpoint(const opg_coord *c) { return c->cep; }
