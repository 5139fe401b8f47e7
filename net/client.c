/* client.c: the coordinator's client API over one DEALER socket (client.h).
 *
 * The protocol carries no request ids, so a call that timed out could get
 * its answer later, during another call (a SubmitAck names only the new job:
 * it would pass for the next submit's). After a timeout the socket is
 * replaced (the Lazy Pirate pattern): the coordinator sees a new peer, and
 * whatever it still sends to the old one is dropped.
 *
 * A request that waits on a job (Stream, GetResult with wait) lives in the
 * coordinator's memory only: a coordinator restarted meanwhile restores the
 * job but not who waited on it. So the socket is monitored, and when its
 * link comes back after it was lost, the waiting call asks again; the
 * coordinator keeps one such request per client and job, and a stream
 * delivers each token position once (a restarted job streams from 0). */
#include "client.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sock.h"

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x
#define BIT(x) (1u << T(x))

struct opg_client {
    void *zctx, *sock;
    void *mon;                 /* PAIR: the socket's connect/disconnect events */
    unsigned n_socks;          /* sockets made: names each monitor's endpoint */
    int link_down;             /* a disconnect seen, no connect since */
    char *endpoint;
    opg_keypair key;           /* with has_curve: for a new socket after a timeout */
    uint8_t server_key[32];
    int has_curve;
};

static void close_sock(opg_client *c) {
    if (c->sock) zmq_close(c->sock); /* ends its monitor too */
    if (c->mon) zmq_close(c->mon);
    c->sock = c->mon = NULL;
    c->link_down = 0;
}

static opg_status open_sock(opg_client *c) {
    if (!(c->sock = zmq_socket(c->zctx, ZMQ_DEALER)))
        return opg__fail(OPG_ERR_IO, "client socket: %s", zmq_strerror(zmq_errno()));
    opg_status st = opg_sock_setup(c->sock, 0, 0, 0, 0);
    if (st) return st;
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://opg-client-monitor-%u", ++c->n_socks);
    int zero = 0;
    if (zmq_socket_monitor(c->sock, mon_ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
        !(c->mon = zmq_socket(c->zctx, ZMQ_PAIR)) || zmq_setsockopt(c->mon, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_connect(c->mon, mon_ep) != 0)
        return opg__fail(OPG_ERR_IO, "client socket: monitor: %s", zmq_strerror(zmq_errno()));
    /* Answers go to a routing id, and a subscription outlives the connection
       until its next delivery: an unguessable id (16 random bytes; ZeroMQ
       reserves a leading zero byte) keeps another client from connecting
       under this one's in the meantime. A new socket (after a timeout) gets
       a new one. */
    uint8_t rid[16];
    randombytes_buf(rid, sizeof rid);
    rid[0] |= 0x80;
    if (zmq_setsockopt(c->sock, ZMQ_ROUTING_ID, rid, sizeof rid) != 0)
        return opg__fail(OPG_ERR_IO, "client socket: routing id: %s", zmq_strerror(zmq_errno()));
    if (c->has_curve && (st = opg_sock_curve_client(c->sock, &c->key, c->server_key))) return st;
    opg_sock_ipv6_for(c->sock, c->endpoint);
    if (zmq_connect(c->sock, c->endpoint) != 0)
        return opg__fail(OPG_ERR_IO, "cannot connect to %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
    return OPG_OK;
}

opg_status opg_client_new(const char *endpoint, const opg_keypair *key, const uint8_t *server_key, opg_client **out) {
    *out = NULL;
    if (!endpoint) return opg__fail(OPG_ERR_ARG, "client: no endpoint");
    opg_status est = opg_endpoint_check(endpoint);
    if (est) return est;
    if (!server_key && !opg_endpoint_is_local(endpoint))
        return opg__fail(OPG_ERR_DENIED, "coordinator %s is not on this machine: CurveZMQ is required (its public key)",
                         endpoint);
    if (server_key && !key) return opg__fail(OPG_ERR_ARG, "client: CurveZMQ needs this client's key");
    if (sodium_init() < 0) return opg__fail(OPG_ERR_UNSUPPORTED, "libsodium failed to initialise"); /* routing ids */
    opg_client *c = calloc(1, sizeof *c);
    if (!c) return opg__fail(OPG_ERR_NOMEM, "client: out of memory");
    opg_status st = OPG_OK;
    if (server_key) {
        c->key = *key;
        memcpy(c->server_key, server_key, 32);
        c->has_curve = 1;
    }
    if (!(c->endpoint = strdup(endpoint))) {
        st = opg__fail(OPG_ERR_NOMEM, "client: out of memory");
        goto fail;
    }
    if (!(c->zctx = zmq_ctx_new())) {
        st = opg__fail(OPG_ERR_IO, "client socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if ((st = open_sock(c))) goto fail;
    *out = c;
    return OPG_OK;
fail:
    opg_client_free(c);
    return st;
}

void opg_client_free(opg_client *c) {
    if (!c) return;
    close_sock(c);
    if (c->zctx) zmq_ctx_term(c->zctx);
    free(c->endpoint);
    opg_keypair_wipe(&c->key);
    free(c);
}

/* A call timed out: its answer may still come, so the socket is replaced
 * before the next call. Returns st (OPG_ERR_TIMEOUT, its message kept). */
static opg_status timed_out(opg_client *c, opg_status st) {
    char why[256];
    snprintf(why, sizeof why, "%s", opg_last_error());
    close_sock(c);
    if (open_sock(c) != OPG_OK) close_sock(c); /* the next call fails for want of a socket */
    return opg__fail(st, "%s", why);
}

static int link_restored(opg_client *c);

/* Sends msg; OPG_ERR_IO when a failed reset left no socket. The monitor's
 * events so far are read first: they are about the link before this
 * request, and unread they would pile up (libzmq's I/O thread blocks when
 * the monitor's queue is full, and every socket of the client with it). */
static opg_status send_msg(opg_client *c, opg_msg_type type, const ProtobufCMessage *msg) {
    if (!c->sock) return opg__fail(OPG_ERR_IO, "client: no socket (it could not be reopened after a timeout)");
    (void)link_restored(c);
    return opg_sock_send(c->sock, NULL, type, msg);
}

/* The job id an answer is about (0 for SubmitAck/Error about no job). */
static uint64_t answer_job(const opg_frame *f) {
    switch (f->type) {
    case T(SUBMIT_ACK): return ((Opg__V1__SubmitAck *)f->msg)->job_id;
    case T(STATUS_REPLY): return ((Opg__V1__StatusReply *)f->msg)->job_id;
    case T(RESULT): return ((Opg__V1__Result *)f->msg)->job_id;
    case T(TOKENS): return ((Opg__V1__Tokens *)f->msg)->job_id;
    case T(ERROR): return ((Opg__V1__Error *)f->msg)->job_id;
    case T(JOB_REQUEST): return ((Opg__V1__JobRequest *)f->msg)->job_id;
    default: return UINT64_MAX;
    }
}

/* Reads the monitor's events; 1 when the link came back after it was lost
 * (a disconnect, then a connect). */
static int link_restored(opg_client *c) {
    int restored = 0;
    uint16_t ev;
    uint32_t val;
    while (opg_sock_monitor_event(c->mon, &ev, &val)) {
        if (ev == ZMQ_EVENT_DISCONNECTED) c->link_down = 1;
        else if (ev == ZMQ_EVENT_CONNECTED && c->link_down) {
            c->link_down = 0;
            restored = 1;
        }
    }
    return restored;
}

/* A request to send again when the link comes back (Stream, GetResult with wait). */
typedef struct {
    opg_msg_type type;
    const ProtobufCMessage *msg;
} resend;

/* Waits for the next message about job_id of one of the types in mask (an
 * Error always qualifies), at most timeout_ms; a timeout resets the socket.
 * again (may be NULL) is sent again each time the link comes back. */
static opg_status await(opg_client *c, uint64_t job_id, uint32_t mask, int timeout_ms, const resend *again,
                        opg_frame **out) {
    *out = NULL;
    int64_t deadline = opg_now_ms() + timeout_ms;
    mask |= BIT(ERROR);
    for (;;) {
        if (link_restored(c) && again) send_msg(c, again->type, again->msg);
        opg_frame *f = NULL;
        opg_status st = opg_sock_recv(c->sock, 0, NULL, &f);
        if (st == OPG_OK) {
            if (answer_job(f) == job_id && f->type < 32 && (mask & (1u << f->type))) {
                *out = f;
                return OPG_OK;
            }
            opg_frame_free(&f); /* a late answer to an earlier call */
            continue;
        }
        if (st != OPG_ERR_TIMEOUT) continue; /* malformed: dropped */
        int64_t left = deadline - opg_now_ms();
        if (left <= 0)
            return timed_out(c, opg__fail(OPG_ERR_TIMEOUT, "no answer from the coordinator in %d ms", timeout_ms));
        zmq_pollitem_t it[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, c->mon ? 2 : 1, (long)left);
    }
}

/* An Error frame as a status (message kept as the last error). */
static opg_status from_error(opg_frame *f) {
    const Opg__V1__Error *e = (const Opg__V1__Error *)f->msg;
    opg_status st = opg__fail((opg_status)e->code, "%s", e->message);
    opg_frame_free(&f);
    return st;
}

static opg_status unexpected(opg_frame *f) {
    opg_status st = opg__fail(OPG_ERR_FORMAT, "unexpected %s from the coordinator", opg_frame_type_name(f->type));
    opg_frame_free(&f);
    return st;
}

opg_status opg_client_submit(opg_client *c, const Opg__V1__SubmitJob *job, int timeout_ms, uint64_t *job_id) {
    *job_id = 0;
    opg_status st = send_msg(c, T(SUBMIT_JOB), &job->base);
    if (st) return st;
    /* the SubmitAck names the new id: the answer is the next SubmitAck, or an
       Error about no job (no earlier call's: those reset the socket) */
    int64_t deadline = opg_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - opg_now_ms());
        opg_frame *f = NULL;
        if (left <= 0)
            return timed_out(c, opg__fail(OPG_ERR_TIMEOUT, "no answer from the coordinator in %d ms", timeout_ms));
        opg_status ws = OPG_OK;
        zmq_pollitem_t it[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(it, c->mon ? 2 : 1, left) <= 0) continue;
        (void)link_restored(c); /* read, so they cannot pile up; a submit is not sent twice */
        if (!(it[0].revents & ZMQ_POLLIN)) continue;
        ws = opg_sock_recv(c->sock, 0, NULL, &f);
        if (ws) continue;
        if (f->type == T(SUBMIT_ACK)) {
            *job_id = ((Opg__V1__SubmitAck *)f->msg)->job_id;
            opg_frame_free(&f);
            return OPG_OK;
        }
        if (f->type == T(ERROR) && ((Opg__V1__Error *)f->msg)->job_id == 0) return from_error(f);
        opg_frame_free(&f);
    }
}

opg_status opg_client_status(opg_client *c, uint64_t job_id, int timeout_ms, int *state, uint32_t *tokens_done) {
    Opg__V1__Status m = OPG__V1__STATUS__INIT;
    m.job_id = job_id;
    opg_status st = send_msg(c, T(STATUS), &m.base);
    opg_frame *f = NULL;
    if (st || (st = await(c, job_id, BIT(STATUS_REPLY), timeout_ms, NULL, &f))) return st;
    if (f->type == T(ERROR)) return from_error(f);
    if (f->type != T(STATUS_REPLY)) return unexpected(f);
    *state = ((Opg__V1__StatusReply *)f->msg)->state;
    if (tokens_done) *tokens_done = ((Opg__V1__StatusReply *)f->msg)->tokens_done;
    opg_frame_free(&f);
    return OPG_OK;
}

opg_status opg_client_result(opg_client *c, uint64_t job_id, int wait, int timeout_ms, opg_frame **out) {
    *out = NULL;
    Opg__V1__GetResult m = OPG__V1__GET_RESULT__INIT;
    m.job_id = job_id;
    m.wait = wait != 0;
    opg_status st = send_msg(c, T(GET_RESULT), &m.base);
    opg_frame *f = NULL;
    const resend again = {T(GET_RESULT), &m.base};
    if (st || (st = await(c, job_id, BIT(RESULT), timeout_ms, wait ? &again : NULL, &f))) return st;
    if (f->type == T(ERROR)) return from_error(f);
    if (f->type != T(RESULT)) return unexpected(f);
    *out = f;
    return OPG_OK;
}

opg_status opg_client_stream(opg_client *c, uint64_t job_id, opg_client_tokens_fn on_tokens, void *ctx,
                             int timeout_ms, opg_frame **out) {
    *out = NULL;
    Opg__V1__Stream m = OPG__V1__STREAM__INIT;
    m.job_id = job_id;
    opg_status st = send_msg(c, T(STREAM), &m.base);
    if (st) return st;
    const resend again = {T(STREAM), &m.base};
    uint64_t next = 0; /* tokens before it were delivered: a stream asked again starts over */
    for (;;) {
        opg_frame *f = NULL;
        if ((st = await(c, job_id, BIT(TOKENS) | BIT(RESULT), timeout_ms, &again, &f))) return st;
        if (f->type == T(TOKENS)) {
            const Opg__V1__Tokens *t = (const Opg__V1__Tokens *)f->msg;
            uint64_t end = (uint64_t)t->index + t->n_token_ids;
            /* after a gap (a frame the coordinator dropped, or a later one
               before the answer to a Stream asked again): nothing, so the
               tokens delivered stay the output's first ones; the gap comes
               again from the coordinator (from 0, or at the end) */
            if (t->index <= next && end > next) {
                uint64_t skip = next > t->index ? next - t->index : 0;
                if (on_tokens) on_tokens(ctx, (uint32_t)(t->index + skip), t->token_ids + skip, t->n_token_ids - skip);
                next = end;
            }
            opg_frame_free(&f);
            continue;
        }
        if (f->type == T(ERROR)) return from_error(f);
        if (f->type != T(RESULT)) return unexpected(f);
        *out = f;
        return OPG_OK;
    }
}

opg_status opg_client_request(opg_client *c, uint64_t job_id, int timeout_ms, opg_frame **out) {
    *out = NULL;
    Opg__V1__GetRequest m = OPG__V1__GET_REQUEST__INIT;
    m.job_id = job_id;
    opg_status st = send_msg(c, T(GET_REQUEST), &m.base);
    opg_frame *f = NULL;
    if (st || (st = await(c, job_id, BIT(JOB_REQUEST), timeout_ms, NULL, &f))) return st;
    if (f->type == T(ERROR)) return from_error(f);
    if (f->type != T(JOB_REQUEST)) return unexpected(f);
    *out = f;
    return OPG_OK;
}

opg_status opg_client_cancel(opg_client *c, uint64_t job_id, int timeout_ms, int *state) {
    Opg__V1__Cancel m = OPG__V1__CANCEL__INIT;
    m.job_id = job_id;
    opg_status st = send_msg(c, T(CANCEL), &m.base);
    opg_frame *f = NULL;
    if (st || (st = await(c, job_id, BIT(STATUS_REPLY), timeout_ms, NULL, &f))) return st;
    if (f->type == T(ERROR)) return from_error(f);
    if (f->type != T(STATUS_REPLY)) return unexpected(f);
    *state = ((Opg__V1__StatusReply *)f->msg)->state;
    opg_frame_free(&f);
    return OPG_OK;
}
