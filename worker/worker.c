/* worker.c: the worker's event loop (worker.h). */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>
#include <zmq.h>

#include "chat.h"
#include "contract.h"
#include "lattrace.h"
#include "receipt.h"
#include "scheduler.h"
#include "sock.h"
#include "tokenizer.h"
#include "tokq.h"
#include "trace.h"

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x

typedef struct {
    opg_model *m;
    uint8_t id[32];
    opg_tokenizer *tok;
    int32_t *stop;             /* end-of-generation tokens */
    int n_stop;
    opg_sched *sched;
} wmodel;

typedef struct wjob {
    uint64_t id;
    int model;
    uint32_t *prompt;          /* for the receipt's prompt hash */
    uint32_t n_prompt;
    Opg__V1__SamplingParams sampling; /* for the receipt: what it ran with */
    uint32_t max_tokens;
    uint32_t min_tokens;  /* Job.min_tokens: refused unless the context holds the prompt and these */
    uint32_t *pending;         /* tokens not yet sent in a Tokens frame */
    uint32_t n_pending, cap_pending, sent;
    int64_t last_flush;
    int cancelled;
    int tokenizing;            /* its text prompt is in the tokq (request tok_seq), not yet in the scheduler */
    uint64_t tok_seq;
    UT_hash_handle hh;
} wjob;

struct opg_worker {
    opg_worker_config cfg;
    opg_keypair key;
    wmodel *models;
    void *zctx, *sock;
    wjob *jobs;
    int n_jobs;                /* in jobs: in the scheduler, or tokenizing */
    int n_tokenizing;
    opg_tokq *tokq;            /* text prompts are encoded there, off this loop */
    int draining;
    int64_t last_heard, next_hb;
    uint64_t hb_seq;
    uint32_t peer_hb_ms;       /* the coordinator's Heartbeat.interval_ms on this link; 0: not known */
    opg_frame **deferred;      /* read during a step (poll_link), handled after it */
    int n_deferred, cap_deferred;
    int backoff_ms;
    char name[OPG_PROTO_MAX_NAME + 1];
    int m_done, m_failed, m_cancelled, m_refused, m_tokens, m_running, m_reconnects, m_step;
    opg_status fatal;          /* the backend failed (fail_worker): run stops with it */
    char fatal_msg[512];
};

#define LOG(lvl, ev, ...) opg_log_emit(&w->cfg.log, lvl, ev, __VA_ARGS__)

static void metric_add(opg_worker *w, int id, double v) {
    if (w->cfg.metrics && id >= 0) opg_metrics_add(w->cfg.metrics, id, v);
}

/* The backend failed in a way no job is to blame for and that leaves it
 * unusable (OPG_ERR_STATE: a device fault ends a CUDA context): every later
 * step would fail, and with it every job sent here. So the worker stops:
 * its jobs go back to the coordinator (a worker that disconnects has its
 * jobs re-queued, each counting an attempt) and opg_worker_run returns the
 * error, for a supervisor to start the worker again on a fresh backend.
 * Other failures of a step are the step's own (out of memory: maybe for now
 * only) or a bug that a job's shape triggers, the same on every worker:
 * those fail the step's jobs, and the worker goes on. */
static void fail_worker(opg_worker *w, opg_status st, const char *why) {
    if (w->fatal) return;
    w->fatal = st;
    snprintf(w->fatal_msg, sizeof w->fatal_msg, "%s", why);
    char q[600];
    LOG(OPG_LOG_ERROR, "backend_failed", "error=%s", opg_log_q(q, sizeof q, why));
}

/* ---- sending ----------------------------------------------------------------------- */
static void send_msg(opg_worker *w, opg_msg_type type, const ProtobufCMessage *m) {
    opg_status st = opg_sock_send(w->sock, NULL, type, m);
    if (st && st != OPG_ERR_LIMIT)
        LOG(OPG_LOG_WARN, "send_failed", "type=%s error=\"%s\"", opg_frame_type_name(type), opg_last_error());
}

/* The context a job of this model gets, as Ready and the receipts name it (a
 * training context over 2^32 never fills: saturated). */
static uint32_t model_context(const wmodel *wm) {
    int64_t n = opg_sched_n_ctx(wm->sched);
    return n > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static void send_ready(opg_worker *w) {
    Opg__V1__Ready r = OPG__V1__READY__INIT;
    ProtobufCBinaryData ids[w->cfg.n_models];
    uint32_t ctx[w->cfg.n_models];
    for (int i = 0; i < w->cfg.n_models; i++) {
        ids[i].data = w->models[i].id;
        ids[i].len = 32;
        ctx[i] = model_context(&w->models[i]);
    }
    r.n_models = (size_t)w->cfg.n_models;
    r.models = ids;
    r.n_model_contexts = (size_t)w->cfg.n_models;
    r.model_contexts = ctx;
    r.takes_min_tokens = 1;
    opg_backend *be = opg_model_backend(w->models[0].m);
    r.backend = strcmp(be->ops->name, "cuda") == 0 ? OPG__V1__BACKEND__BACKEND_CUDA : OPG__V1__BACKEND__BACKEND_CPU;
    r.gpu_name = (char *)opg_backend_device(be);
    r.free_slots = w->draining ? 0u : (uint32_t)w->cfg.slots;
    r.price_per_token = w->cfg.price_per_token;
    r.name = w->name;
    r.worker_key.data = w->key.sign_pk;
    r.worker_key.len = 32;
    send_msg(w, T(READY), &r.base);
}

static void send_error(opg_worker *w, uint64_t job_id, opg_status code, const char *msg) {
    if (opg_sock_send_error(w->sock, NULL, job_id, code, msg))
        LOG(OPG_LOG_WARN, "send_failed", "type=Error error=\"%s\"", opg_last_error());
}

/* ---- jobs ------------------------------------------------------------------------- */
static void wjob_free(opg_worker *w, wjob *j) {
    HASH_DEL(w->jobs, j);
    w->n_jobs--;
    if (j->tokenizing) {
        if (w->tokq) opg_tokq_drop(w->tokq, j->tok_seq);
        w->n_tokenizing--;
    }
    free(j->prompt);
    free(j->pending);
    free(j);
    if (w->cfg.metrics && w->m_running >= 0) opg_metrics_set(w->cfg.metrics, w->m_running, w->n_jobs);
}

static wjob *find_job(opg_worker *w, uint64_t id) {
    wjob *j = NULL;
    HASH_FIND(hh, w->jobs, &id, sizeof id, j);
    return j;
}

static void flush_tokens(opg_worker *w, wjob *j) {
    if (!j->n_pending) return;
    Opg__V1__Tokens t = OPG__V1__TOKENS__INIT;
    t.job_id = j->id;
    t.index = j->sent;
    t.n_token_ids = j->n_pending;
    t.token_ids = j->pending;
    send_msg(w, T(TOKENS), &t.base);
    j->sent += j->n_pending;
    j->n_pending = 0;
    j->last_flush = opg_now_ms();
}

static int on_token(void *ctx, uint64_t tag, int64_t index, int32_t token) {
    opg_worker *w = ctx;
    wjob *j = find_job(w, tag);
    (void)index;
    if (!j) return 1;
    if (j->n_pending == j->cap_pending) {
        uint32_t cap = j->cap_pending ? 2 * j->cap_pending : 16;
        uint32_t *p = realloc(j->pending, cap * sizeof *p);
        if (!p) return 0; /* the Result still carries every token */
        j->pending = p;
        j->cap_pending = cap;
    }
    j->pending[j->n_pending++] = (uint32_t)token;
    return 0;
}

static void on_done(void *ctx, uint64_t tag, opg_gen_result *r) {
    opg_worker *w = ctx;
    wjob *j = find_job(w, tag);
    if (!j || j->cancelled) {
        if (j) {
            metric_add(w, w->m_cancelled, 1);
            wjob_free(w, j);
        }
        opg_gen_result_clear(r);
        return;
    }
    OPG_LT(j->id, OPG_LT_W_DONE, 0);
    if (r->stop == OPG_STOP_NAN) { /* the job's own failure: the same on every worker */
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the logits are all NaN at position %lld (after %lld output tokens): the model overflows "
                 "on this input, no token can be sampled",
                 (long long)(j->n_prompt - 1 + r->n_tokens), (long long)r->n_tokens);
        send_error(w, j->id, OPG_ERR_STATE, msg);
        metric_add(w, w->m_failed, 1);
        goto done;
    }
    wmodel *wm = &w->models[j->model];
    uint32_t *out = malloc((size_t)(r->n_tokens ? r->n_tokens : 1) * sizeof *out);
    if (!out) {
        send_error(w, j->id, OPG_ERR_NOMEM, "worker out of memory");
        goto done;
    }
    for (int64_t i = 0; i < r->n_tokens; i++) out[i] = (uint32_t)r->tokens[i];
    Opg__V1__Usage usage = OPG__V1__USAGE__INIT;
    usage.prompt_tokens = j->n_prompt;
    usage.completion_tokens = (uint32_t)r->n_tokens;
    uint8_t root[32], ph[32], oh[32];
    opg_trace_root(r->trace, root);
    opg_receipt_hash_tokens(j->prompt, j->n_prompt, ph);
    opg_receipt_hash_tokens(out, (size_t)r->n_tokens, oh);
    Opg__V1__Receipt rc = OPG__V1__RECEIPT__INIT;
    rc.job_id = j->id;
    rc.model_id = (ProtobufCBinaryData){32, wm->id};
    rc.prompt_hash = (ProtobufCBinaryData){32, ph};
    rc.output_hash = (ProtobufCBinaryData){32, oh};
    rc.trace_root = (ProtobufCBinaryData){32, root};
    rc.contract_version = OPG_CONTRACT_VERSION;
    rc.worker_key = (ProtobufCBinaryData){32, w->key.sign_pk};
    rc.time_unix_ms = (uint64_t)opg_wall_ms();
    rc.usage = &usage;
    rc.sampling = &j->sampling;
    rc.max_tokens = j->max_tokens;
    rc.context_size = model_context(wm);
    rc.stop_reason = r->stop == OPG_STOP_EOG       ? OPG__V1__STOP_REASON__STOP_REASON_EOS
                     : r->stop == OPG_STOP_CONTEXT ? OPG__V1__STOP_REASON__STOP_REASON_CONTEXT
                                                   : OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS;
    uint8_t *signed_rc = NULL;
    size_t signed_len = 0;
    if (opg_receipt_sign(&rc, w->key.sign_sk, &signed_rc, &signed_len)) {
        send_error(w, j->id, OPG_ERR_STATE, opg_last_error());
        free(out);
        goto done;
    }
    Opg__V1__Result res = OPG__V1__RESULT__INIT;
    res.job_id = j->id;
    res.n_output_tokens = (size_t)r->n_tokens;
    res.output_tokens = out;
    res.usage = &usage;
    res.trace_root = (ProtobufCBinaryData){32, root};
    res.stop_reason = rc.stop_reason;
    res.receipt = (ProtobufCBinaryData){signed_len, signed_rc};
    j->n_pending = 0; /* the Result carries them */
    send_msg(w, T(RESULT), &res.base);
    OPG_LT(j->id, OPG_LT_W_SENT, 0);
    metric_add(w, w->m_done, 1);
    metric_add(w, w->m_tokens, (double)r->n_tokens);
    LOG(OPG_LOG_DEBUG, "job_done", "job=%llu tokens=%lld", (unsigned long long)j->id, (long long)r->n_tokens);
    free(signed_rc);
    free(out);
done:
    opg_gen_result_clear(r);
    wjob_free(w, j);
}

static int model_index(opg_worker *w, const ProtobufCBinaryData *id) {
    for (int i = 0; i < w->cfg.n_models; i++)
        if (id->len == 32 && !memcmp(w->models[i].id, id->data, 32)) return i;
    return -1;
}

/* Puts a job whose prompt is ids (n of them; taken over) into its model's
 * scheduler, or answers it with an Error and frees it. */
static void start_job(opg_worker *w, wjob *j, int32_t *ids, int64_t n) {
    wmodel *wm = &w->models[j->model];
    opg_status st = OPG_OK;
    int64_t n_ctx = opg_sched_n_ctx(wm->sched);
    int64_t need = n + (j->min_tokens > 2 ? j->min_tokens : 2) - 1; /* the coordinator's job_need */
    /* the context holds the prompt but not the output the coordinator asked
       for (another worker may hold it all, or it has streamed them already) */
    int short_ctx = n >= n_ctx || (j->min_tokens && need > n_ctx);
    if (short_ctx && n < n_ctx)
        st = opg__fail(OPG_ERR_LIMIT, "the prompt (%lld tokens) and %u output tokens need %lld cache positions, "
                                      "the context holds %lld",
                       (long long)n, j->min_tokens, (long long)need, (long long)n_ctx);
    j->prompt = st ? NULL : malloc((size_t)(n ? n : 1) * sizeof *j->prompt);
    if (!st && !j->prompt) st = opg__fail(OPG_ERR_NOMEM, "worker out of memory");
    if (st == OPG_OK) {
        opg_gen_request q = {0};
        q.prompt = ids;
        q.n_prompt = n;
        q.max_tokens = j->max_tokens;
        q.sampling.temperature = j->sampling.temperature;
        q.sampling.top_k = (int32_t)(j->sampling.top_k > INT32_MAX ? INT32_MAX : j->sampling.top_k);
        q.sampling.top_p = j->sampling.top_p;
        q.sampling.seed = j->sampling.seed;
        q.stop = wm->stop;
        q.n_stop = wm->n_stop;
        st = opg_sched_add(wm->sched, &q, j->id);
    }
    if (st == OPG_ERR_LIMIT && short_ctx) {
        /* the prompt (or the output asked for) does not fit this worker's
           context: the coordinator learns the prompt's length and may find a
           worker whose context holds it */
        Opg__V1__Error e = OPG__V1__ERROR__INIT;
        char msg[OPG_PROTO_MAX_SHORT_STRING + 1];
        snprintf(msg, sizeof msg, "%s", opg_last_error());
        e.job_id = j->id;
        e.code = st;
        e.message = msg;
        e.prompt_tokens = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        send_msg(w, T(ERROR), &e.base);
        metric_add(w, w->m_refused, 1);
    } else if (st == OPG_ERR_STATE) { /* the KV cache's allocation met a broken backend */
        fail_worker(w, st, opg_last_error());
    } else if (st) {
        send_error(w, j->id, st, opg_last_error());
        metric_add(w, w->m_failed, 1);
    }
    if (st) {
        free(ids);
        wjob_free(w, j);
        return;
    }
    for (int64_t i = 0; i < n; i++) j->prompt[i] = (uint32_t)ids[i];
    j->n_prompt = (uint32_t)n;
    j->last_flush = opg_now_ms();
    free(ids);
}

static void on_job(opg_worker *w, const Opg__V1__Job *m) {
    if (find_job(w, m->job_id)) return; /* already running it */
    if (w->fatal) return; /* stopping: the Disconnect gives it back */
    if (w->draining) {
        send_error(w, m->job_id, OPG_ERR_TIMEOUT, "worker draining: job not taken");
        return;
    }
    if (m->contract_version != OPG_CONTRACT_VERSION) {
        char msg[96];
        snprintf(msg, sizeof msg, "determinism contract v%u not supported (this worker runs v%d)",
                 m->contract_version, OPG_CONTRACT_VERSION);
        send_error(w, m->job_id, OPG_ERR_UNSUPPORTED, msg);
        return;
    }
    int mi = model_index(w, &m->model_id);
    if (mi < 0) {
        send_error(w, m->job_id, OPG_ERR_NOT_FOUND, "model not loaded on this worker");
        return;
    }
    int text = m->prompt_case == OPG__V1__JOB__PROMPT_TEXT;
    if (text && !w->models[mi].tok) {
        send_error(w, m->job_id, OPG_ERR_UNSUPPORTED, "this model has no tokenizer: send the prompt as token ids");
        metric_add(w, w->m_failed, 1);
        return;
    }
    /* ids above INT32_MAX would turn negative as the runtime's int32 ids:
       refused here, as sent (the runtime refuses the rest of the vocabulary's outside) */
    for (size_t i = 0; !text && i < m->tokens->n_ids; i++)
        if (m->tokens->ids[i] > INT32_MAX) {
            char why[160];
            snprintf(why, sizeof why, "prompt token %zu: token id %u outside the vocabulary [0, %lld)", i,
                     m->tokens->ids[i], (long long)opg_model_hparams(w->models[mi].m)->n_vocab);
            send_error(w, m->job_id, OPG_ERR_ARG, why);
            metric_add(w, w->m_failed, 1);
            return;
        }
    wjob *j = calloc(1, sizeof *j);
    int32_t *ids = NULL;
    int64_t n = text ? 0 : (int64_t)m->tokens->n_ids;
    if (j && !text) ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    opg_status st = !j || (!text && !ids) ? opg__fail(OPG_ERR_NOMEM, "worker out of memory") : OPG_OK;
    if (st == OPG_OK && text) {
        wmodel *wm = &w->models[mi];
        st = opg_tokq_submit(w->tokq, wm->tok, opg_model_gguf(wm->m), m->text, m->chat, m->job_id, &j->tok_seq);
    }
    if (st) {
        send_error(w, m->job_id, st, opg_last_error());
        metric_add(w, w->m_failed, 1);
        free(j);
        free(ids);
        return;
    }
    j->id = m->job_id;
    j->model = mi;
    opg__v1__sampling_params__init(&j->sampling);
    if (m->sampling) {
        j->sampling.temperature = m->sampling->temperature;
        j->sampling.top_k = m->sampling->top_k;
        j->sampling.top_p = m->sampling->top_p;
        j->sampling.seed = m->sampling->seed;
    }
    j->max_tokens = m->max_tokens;
    j->min_tokens = m->min_tokens;
    j->tokenizing = text;
    HASH_ADD(hh, w->jobs, id, sizeof j->id, j);
    w->n_jobs++;
    w->n_tokenizing += text;
    if (w->cfg.metrics && w->m_running >= 0) opg_metrics_set(w->cfg.metrics, w->m_running, w->n_jobs);
    if (text) return; /* take_tokenized starts it */
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)m->tokens->ids[i];
    start_job(w, j, ids, n);
}

/* Starts the jobs whose text prompts the tokq has encoded. */
static void take_tokenized(opg_worker *w) {
    opg_tokq_result r;
    while (opg_tokq_take(w->tokq, &r)) {
        wjob *j = find_job(w, r.tag);
        if (!j || !j->tokenizing || j->tok_seq != r.seq) { /* dropped jobs' results never come: defensive */
            free(r.ids);
            continue;
        }
        j->tokenizing = 0;
        w->n_tokenizing--;
        if (r.st == OPG_OK && r.n == 0) {
            r.st = OPG_ERR_ARG;
            snprintf(r.error, sizeof r.error, "the prompt encodes to no tokens");
        }
        if (r.st) {
            send_error(w, j->id, r.st, r.error);
            metric_add(w, w->m_failed, 1);
            free(r.ids);
            wjob_free(w, j);
            continue;
        }
        start_job(w, j, r.ids, r.n);
        if (w->fatal) return;
    }
}

static void on_cancel(opg_worker *w, uint64_t id) {
    wjob *j = find_job(w, id);
    if (!j) return;
    if (j->tokenizing) { /* not in the scheduler yet: on_done would never come */
        metric_add(w, w->m_cancelled, 1);
        wjob_free(w, j);
        return;
    }
    j->cancelled = 1;
    opg_sched_cancel(w->models[j->model].sched, id); /* on_done frees it */
}

static void drop_deferred(opg_worker *w) {
    for (int i = 0; i < w->n_deferred; i++) opg_frame_free(&w->deferred[i]);
    w->n_deferred = 0;
}

/* Drops every job (the coordinator re-queues them). */
static void drop_all(opg_worker *w) {
    wjob *j, *t;
    HASH_ITER(hh, w->jobs, j, t) {
        if (j->tokenizing) { /* as on_cancel: not in the scheduler */
            metric_add(w, w->m_cancelled, 1);
            wjob_free(w, j);
            continue;
        }
        j->cancelled = 1;
        opg_sched_cancel(w->models[j->model].sched, j->id);
    }
}

/* ---- the link ---------------------------------------------------------------------- */
static void send_heartbeat(opg_worker *w, int64_t now);

static opg_status connect_link(opg_worker *w) {
    w->sock = zmq_socket(w->zctx, ZMQ_DEALER);
    if (!w->sock) return opg__fail(OPG_ERR_IO, "socket: %s", zmq_strerror(zmq_errno()));
    opg_status st = opg_sock_setup(w->sock, 0, 100000, 100000, 0);
    if (st) return st;
    if (w->cfg.server_key && (st = opg_sock_curve_client(w->sock, &w->key, w->cfg.server_key))) return st;
    opg_sock_ipv6_for(w->sock, w->cfg.coordinator);
    if (zmq_connect(w->sock, w->cfg.coordinator) != 0)
        return opg__fail(OPG_ERR_IO, "cannot connect to %s: %s", w->cfg.coordinator, zmq_strerror(zmq_errno()));
    w->last_heard = opg_now_ms();
    w->peer_hb_ms = 0;
    send_ready(w);
    send_heartbeat(w, w->last_heard); /* our period, before the coordinator's window for us runs out */
    LOG(OPG_LOG_INFO, "connecting", "coordinator=%s slots=%d", w->cfg.coordinator, w->cfg.slots);
    return OPG_OK;
}

static void close_link(opg_worker *w) {
    if (w->sock) zmq_close(w->sock);
    w->sock = NULL;
}

/* Sleeps ms, waking early when stop is set. */
static void nap(int ms, volatile sig_atomic_t *stop) {
    while (ms > 0 && !(stop && *stop)) {
        int d = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)d * 1000000L};
        nanosleep(&ts, NULL);
        ms -= d;
    }
}

static opg_status reconnect(opg_worker *w, const char *why, volatile sig_atomic_t *stop) {
    LOG(OPG_LOG_WARN, "link_lost", "why=\"%s\" jobs_dropped=%d retry_ms=%d", why, w->n_jobs, w->backoff_ms);
    drop_all(w);
    drop_deferred(w);
    if (w->sock) { /* a coordinator that still hears us re-queues the jobs now, not a liveness window later */
        Opg__V1__Disconnect d = OPG__V1__DISCONNECT__INIT;
        d.reason = (char *)why;
        send_msg(w, T(DISCONNECT), &d.base);
        int linger = 100;
        zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger);
    }
    close_link(w);
    metric_add(w, w->m_reconnects, 1);
    nap(w->backoff_ms, stop);
    w->backoff_ms = w->backoff_ms * 2 > w->cfg.reconnect_max_ms ? w->cfg.reconnect_max_ms : w->backoff_ms * 2;
    return connect_link(w);
}

static void send_heartbeat(opg_worker *w, int64_t now) {
    Opg__V1__Heartbeat hb = OPG__V1__HEARTBEAT__INIT;
    hb.seq = ++w->hb_seq;
    hb.time_unix_ms = (uint64_t)opg_wall_ms();
    hb.interval_ms = (uint32_t)w->cfg.heartbeat_ms;
    send_msg(w, T(HEARTBEAT), &hb.base);
    w->next_hb = now + w->cfg.heartbeat_ms;
}

/* The next message from the coordinator: NULL when none is waiting. Any
 * message is a sign of life. */
static opg_frame *recv_link(opg_worker *w) {
    for (;;) {
        opg_frame *f = NULL;
        opg_status st = opg_sock_recv(w->sock, 0, NULL, &f);
        if (st == OPG_ERR_TIMEOUT) return NULL;
        if (st) {
            LOG(OPG_LOG_WARN, "frame_rejected", "code=%d error=\"%s\"", st, opg_last_error());
            continue;
        }
        w->last_heard = opg_now_ms();
        w->backoff_ms = w->cfg.reconnect_ms; /* the link works */
        return f;
    }
}

static void note_heartbeat(opg_worker *w, const Opg__V1__Heartbeat *hb) { w->peer_hb_ms = hb->interval_ms; }

/* Called after each layer of a step's forward pass (opg_sched_options.poll,
 * on this thread, inside opg_sched_step): a step
 * can take seconds (a long prefill, a big model on a CPU), and a worker
 * silent for the liveness window is dropped with all its jobs. So the
 * coordinator's messages are read (its heartbeats count) and ours are sent
 * when due; any other message waits for the step's end, since handling it
 * would change the scheduler the step is running. */
static void poll_link(void *ctx) {
    opg_worker *w = ctx;
    if (!w->sock) return;
    opg_frame *f;
    while ((f = recv_link(w))) {
        if (f->type == T(HEARTBEAT)) {
            note_heartbeat(w, (const Opg__V1__Heartbeat *)f->msg);
            opg_frame_free(&f);
            continue;
        }
        if (w->n_deferred == w->cap_deferred) {
            int cap = w->cap_deferred ? 2 * w->cap_deferred : 16;
            opg_frame **d = realloc(w->deferred, (size_t)cap * sizeof *d);
            if (!d) { /* lost: a Job stays with this worker at the coordinator until the link is given up */
                LOG(OPG_LOG_ERROR, "frame_dropped", "type=%s why=\"out of memory\"", opg_frame_type_name(f->type));
                opg_frame_free(&f);
                continue;
            }
            w->deferred = d;
            w->cap_deferred = cap;
        }
        w->deferred[w->n_deferred++] = f;
    }
    int64_t now = opg_now_ms();
    if (now >= w->next_hb) send_heartbeat(w, now);
}

/* Handles one message of the coordinator. Returns 1 when the link must be reset. */
static int handle_frame(opg_worker *w, const opg_frame *f) {
    switch (f->type) {
    case T(JOB):
        OPG_LT(((Opg__V1__Job *)f->msg)->job_id, OPG_LT_W_JOB, 0);
        on_job(w, (Opg__V1__Job *)f->msg);
        return 0;
    case T(CANCEL): on_cancel(w, ((Opg__V1__Cancel *)f->msg)->job_id); return 0;
    case T(HEARTBEAT): note_heartbeat(w, (const Opg__V1__Heartbeat *)f->msg); return 0;
    case T(DISCONNECT): return 1;
    case T(ERROR): {
        char msg[600];
        LOG(OPG_LOG_WARN, "coordinator_error", "message=%s",
            opg_log_q(msg, sizeof msg, ((Opg__V1__Error *)f->msg)->message));
        return 0;
    }
    default: LOG(OPG_LOG_WARN, "unexpected_message", "type=%s", opg_frame_type_name(f->type)); return 0;
    }
}

/* Our heartbeat when due: between messages too, since a long burst of
 * them takes a while. */
static void heartbeat_if_due(opg_worker *w) {
    int64_t now = opg_now_ms();
    if (now >= w->next_hb) send_heartbeat(w, now);
}

/* Handles the messages read during the last step, then every waiting one.
 * Returns 1 when the link must be reset. */
static int read_link(opg_worker *w) {
    for (int i = 0; i < w->n_deferred; i++) {
        heartbeat_if_due(w);
        int reset = handle_frame(w, w->deferred[i]);
        opg_frame_free(&w->deferred[i]);
        if (reset) { /* the rest came on a link now given up */
            for (int k = i + 1; k < w->n_deferred; k++) opg_frame_free(&w->deferred[k]);
            w->n_deferred = 0;
            return 1;
        }
    }
    w->n_deferred = 0;
    opg_frame *f;
    while ((f = recv_link(w))) {
        heartbeat_if_due(w);
        int reset = handle_frame(w, f);
        opg_frame_free(&f);
        if (reset) return 1;
    }
    return 0;
}

opg_status opg_worker_run(opg_worker *w, volatile sig_atomic_t *stop) {
    opg_status st = connect_link(w);
    if (st) return st;
    int forced = 0;
    while (!w->fatal) {
        int64_t now = opg_now_ms();
        if (stop && *stop && !w->draining) {
            w->draining = 1;
            send_ready(w); /* no free slots: the coordinator sends nothing new */
            LOG(OPG_LOG_INFO, "draining", "jobs=%d", w->n_jobs);
        }
        if (stop && *stop >= 2) { /* asked again: the jobs go back instead of finishing here */
            forced = 1;
            LOG(OPG_LOG_WARN, "stop_now", "jobs_given_back=%d", w->n_jobs);
            Opg__V1__Disconnect d = OPG__V1__DISCONNECT__INIT;
            d.reason = "stopped at once (second stop request): jobs given back";
            send_msg(w, T(DISCONNECT), &d.base);
            break;
        }
        if (w->draining && w->n_jobs == 0) {
            Opg__V1__Disconnect d = OPG__V1__DISCONNECT__INIT;
            d.reason = "draining (stop requested)";
            send_msg(w, T(DISCONNECT), &d.base);
            break;
        }
        int stepping = w->n_jobs > w->n_tokenizing;
        long timeout = stepping || w->n_deferred ? 0 : (long)(w->next_hb > now ? w->next_hb - now : 0);
        zmq_pollitem_t it[2] = {{w->sock, 0, ZMQ_POLLIN, 0}, {NULL, opg_tokq_fd(w->tokq), ZMQ_POLLIN, 0}};
        /* with jobs running, no wait: read_link's non-blocking reads and
           take_tokenized suffice (a zero-timeout zmq_poll would cost a
           poll(2) per step for nothing); idle, a prompt whose tokens are
           ready wakes it as a message does */
        if (timeout > 0 && zmq_poll(it, 2, timeout) < 0 && zmq_errno() != EINTR)
            return opg__fail(OPG_ERR_IO, "poll: %s", zmq_strerror(zmq_errno()));
        if (read_link(w)) {
            if (w->draining || w->fatal) break;
            if ((st = reconnect(w, "coordinator said disconnect", stop))) return st;
            continue;
        }
        take_tokenized(w);
        if (w->fatal) break; /* a Job's cache met a broken backend */
        for (int i = 0; i < w->cfg.n_models; i++) {
            if (!opg_sched_active(w->models[i].sched)) continue;
            int64_t t0 = opg_now_ms();
            OPG_LT(0, OPG_LT_W_STEP0, (uint32_t)w->n_jobs);
            if ((st = opg_sched_step(w->models[i].sched))) {
                char why[512];
                snprintf(why, sizeof why, "%s", opg_last_error());
                if (st == OPG_ERR_STATE) {
                    fail_worker(w, st, why);
                    break;
                }
                /* the model's jobs fail (out of memory: the coordinator
                   re-queues them), the worker stays */
                LOG(OPG_LOG_ERROR, "step_failed", "error=\"%s\"", why);
                wjob *j, *t;
                HASH_ITER(hh, w->jobs, j, t) if (j->model == i && !j->tokenizing) {
                    send_error(w, j->id, st == OPG_ERR_NOMEM ? OPG_ERR_NOMEM : OPG_ERR_STATE, why);
                    j->cancelled = 1;
                    metric_add(w, w->m_failed, 1);
                    opg_sched_cancel(w->models[i].sched, j->id);
                }
            }
            OPG_LT(0, OPG_LT_W_STEP1, 0);
            if (w->cfg.metrics && w->m_step >= 0)
                opg_metrics_observe(w->cfg.metrics, w->m_step, (double)(opg_now_ms() - t0) / 1000.0);
        }
        if (w->fatal) break;
        now = opg_now_ms();
        wjob *j, *t;
        HASH_ITER(hh, w->jobs, j, t) if (now - j->last_flush >= w->cfg.stream_ms) flush_tokens(w, j);
        if (now >= w->next_hb) send_heartbeat(w, now);
        if (now - w->last_heard > opg_proto_silence_ms(w->cfg.heartbeat_ms, w->peer_hb_ms, w->cfg.liveness)) {
            if (w->draining) break; /* nobody to drain to */
            if ((st = reconnect(w, "heartbeat timeout", stop))) return st;
        }
    }
    drop_all(w);
    drop_deferred(w);
    if (w->sock) {
        if (w->fatal) { /* the coordinator re-queues what this worker held */
            char reason[OPG_PROTO_MAX_SHORT_STRING + 1];
            snprintf(reason, sizeof reason, "backend failed: %s", w->fatal_msg);
            Opg__V1__Disconnect d = OPG__V1__DISCONNECT__INIT;
            d.reason = reason;
            d.backend_failed = 1;
            send_msg(w, T(DISCONNECT), &d.base);
        }
        /* the last Result and the Disconnect get up to a second to leave */
        int linger = 1000;
        zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger);
    }
    close_link(w);
    LOG(OPG_LOG_INFO, "stopped", "why=%s",
        w->fatal ? "backend_failed" : forced ? "stopped_at_once" : w->draining ? "drained" : "error");
    if (w->fatal) return opg__fail(w->fatal, "backend failed: %s", w->fatal_msg);
    return OPG_OK;
}

/* ---- setup ------------------------------------------------------------------------- */
static void register_metrics(opg_worker *w) {
    opg_metrics *m = w->cfg.metrics;
    w->m_done = w->m_failed = w->m_cancelled = w->m_tokens = w->m_running = w->m_reconnects = w->m_step = -1;
    if (!m) return;
    w->m_done = opg_metrics_counter(m, "opg_worker_jobs_total", "result=\"done\"", "Jobs ended, by result.");
    w->m_failed = opg_metrics_counter(m, "opg_worker_jobs_total", "result=\"failed\"", "Jobs ended, by result.");
    w->m_cancelled = opg_metrics_counter(m, "opg_worker_jobs_total", "result=\"dropped\"", "Jobs ended, by result.");
    w->m_refused = opg_metrics_counter(m, "opg_worker_jobs_total", "result=\"refused\"", "Jobs ended, by result.");
    w->m_tokens = opg_metrics_counter(m, "opg_worker_tokens_total", NULL, "Output tokens generated.");
    w->m_running = opg_metrics_gauge(m, "opg_worker_jobs_running", NULL, "Jobs taken: in the batch or being tokenized.");
    w->m_reconnects = opg_metrics_counter(m, "opg_worker_reconnects_total", NULL, "Coordinator links reset.");
    w->m_step = opg_metrics_histogram(m, "opg_worker_step_seconds", NULL, "One forward step over the batch.",
                                      opg_metrics_latency_bounds, opg_metrics_n_latency_bounds);
}

opg_status opg_worker_new(const opg_worker_config *cfg, opg_worker **out) {
    *out = NULL;
    if (!cfg || !cfg->coordinator || !cfg->models || cfg->n_models < 1)
        return opg__fail(OPG_ERR_ARG, "worker: a coordinator endpoint and at least one model are required");
    opg_lt_init("worker");
    opg_status est = opg_endpoint_check(cfg->coordinator);
    if (est) return est;
    if (!cfg->server_key && !opg_endpoint_is_local(cfg->coordinator))
        return opg__fail(OPG_ERR_DENIED,
                         "coordinator %s is not on this machine: CurveZMQ is required (its public key)",
                         cfg->coordinator);
    opg_worker *w = calloc(1, sizeof *w);
    if (!w) return opg__fail(OPG_ERR_NOMEM, "worker: out of memory");
    w->cfg = *cfg;
    if (w->cfg.slots <= 0) w->cfg.slots = 8;
    if (w->cfg.heartbeat_ms <= 0) w->cfg.heartbeat_ms = 1000;
    if (w->cfg.liveness <= 0) w->cfg.liveness = 3;
    if (w->cfg.reconnect_ms <= 0) w->cfg.reconnect_ms = 250;
    if (w->cfg.reconnect_max_ms < w->cfg.reconnect_ms) w->cfg.reconnect_max_ms = 8000;
    if (w->cfg.stream_ms <= 0) w->cfg.stream_ms = 50;
    w->backoff_ms = w->cfg.reconnect_ms;
    if (cfg->name && cfg->name[0]) snprintf(w->name, sizeof w->name, "%s", cfg->name);
    else if (gethostname(w->name, sizeof w->name - 1) != 0) snprintf(w->name, sizeof w->name, "worker");
    register_metrics(w);
    opg_status st = cfg->key ? (w->key = *cfg->key, OPG_OK) : opg_keypair_generate(&w->key);
    if (st) goto fail;
    if ((st = opg_tokq_new(cfg->tokenize_hook, cfg->tokenize_hook_ctx, &w->tokq))) goto fail;
    w->models = calloc((size_t)cfg->n_models, sizeof *w->models);
    if (!w->models) {
        st = opg__fail(OPG_ERR_NOMEM, "worker: out of memory");
        goto fail;
    }
    opg_sched_options so = {cfg->n_ctx, 0, poll_link, w}; /* the link is served during long steps */
    opg_sched_events ev = {on_token, on_done, w};
    for (int i = 0; i < cfg->n_models; i++) {
        wmodel *wm = &w->models[i];
        wm->m = cfg->models[i];
        opg_model_id(wm->m, wm->id);
        /* a model without a vocabulary still serves token prompts */
        if (opg_tokenizer_from_gguf(opg_model_gguf(wm->m), &wm->tok) != OPG_OK) wm->tok = NULL;
        int32_t nv = wm->tok ? opg_tokenizer_n_vocab(wm->tok) : 0;
        wm->stop = malloc((size_t)(nv > 0 ? nv : 1) * sizeof *wm->stop);
        if (!wm->stop) {
            st = opg__fail(OPG_ERR_NOMEM, "worker: out of memory");
            goto fail;
        }
        for (int32_t t = 0; t < nv; t++)
            if (opg_tokenizer_is_eog(wm->tok, t)) wm->stop[wm->n_stop++] = t;
        if ((st = opg_sched_new(wm->m, &so, &ev, &wm->sched))) goto fail;
    }
    if (!(w->zctx = zmq_ctx_new())) {
        st = opg__fail(OPG_ERR_IO, "zmq context: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    *out = w;
    return OPG_OK;
fail:
    opg_worker_free(w);
    return st;
}

void opg_worker_free(opg_worker *w) {
    if (!w) return;
    opg_tokq_free(w->tokq); /* first: its thread reads the tokenizers */
    w->tokq = NULL;
    for (int i = 0; w->models && i < w->cfg.n_models; i++) {
        opg_sched_free(w->models[i].sched);
        w->models[i].sched = NULL;
    }
    wjob *j, *t;
    HASH_ITER(hh, w->jobs, j, t) wjob_free(w, j);
    for (int i = 0; w->models && i < w->cfg.n_models; i++) {
        opg_tokenizer_free(w->models[i].tok);
        free(w->models[i].stop);
    }
    free(w->models);
    drop_deferred(w);
    free(w->deferred);
    close_link(w);
    if (w->zctx) zmq_ctx_term(w->zctx);
    opg_keypair_wipe(&w->key);
    free(w);
}
