/* client.c: the coordinator's client API over one DEALER socket (client.h). */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

#include "sock.h"

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x

struct opg_client {
    void *zctx, *sock;
};

opg_status opg_client_new(const char *endpoint, const opg_keypair *key, const uint8_t *server_key, opg_client **out) {
    *out = NULL;
    if (!endpoint) return opg__fail(OPG_ERR_ARG, "client: no endpoint");
    if (!server_key && !opg_endpoint_is_local(endpoint))
        return opg__fail(OPG_ERR_DENIED, "coordinator %s is not on this machine: CurveZMQ is required (its public key)",
                         endpoint);
    if (server_key && !key) return opg__fail(OPG_ERR_ARG, "client: CurveZMQ needs this client's key");
    opg_client *c = calloc(1, sizeof *c);
    if (!c) return opg__fail(OPG_ERR_NOMEM, "client: out of memory");
    opg_status st = OPG_OK;
    if (!(c->zctx = zmq_ctx_new()) || !(c->sock = zmq_socket(c->zctx, ZMQ_DEALER))) {
        st = opg__fail(OPG_ERR_IO, "client socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if ((st = opg_sock_setup(c->sock, 0, 0, 0, 0))) goto fail;
    if (server_key && (st = opg_sock_curve_client(c->sock, key, server_key))) goto fail;
    if (zmq_connect(c->sock, endpoint) != 0) {
        st = opg__fail(OPG_ERR_IO, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    *out = c;
    return OPG_OK;
fail:
    opg_client_free(c);
    return st;
}

void opg_client_free(opg_client *c) {
    if (!c) return;
    if (c->sock) zmq_close(c->sock);
    if (c->zctx) zmq_ctx_term(c->zctx);
    free(c);
}

/* The job id an answer is about (0 for SubmitAck/Error about no job). */
static uint64_t answer_job(const opg_frame *f) {
    switch (f->type) {
    case T(SUBMIT_ACK): return ((Opg__V1__SubmitAck *)f->msg)->job_id;
    case T(STATUS_REPLY): return ((Opg__V1__StatusReply *)f->msg)->job_id;
    case T(RESULT): return ((Opg__V1__Result *)f->msg)->job_id;
    case T(TOKENS): return ((Opg__V1__Tokens *)f->msg)->job_id;
    case T(ERROR): return ((Opg__V1__Error *)f->msg)->job_id;
    default: return UINT64_MAX;
    }
}

/* Waits for the next message about job_id (of any type), at most timeout_ms. */
static opg_status await(opg_client *c, uint64_t job_id, int timeout_ms, opg_frame **out) {
    *out = NULL;
    int64_t deadline = opg_now_ms() + timeout_ms;
    for (;;) {
        opg_frame *f = NULL;
        opg_status st = opg_sock_recv(c->sock, 0, NULL, &f);
        if (st == OPG_OK) {
            if (answer_job(f) == job_id) {
                *out = f;
                return OPG_OK;
            }
            opg_frame_free(&f); /* a late answer to an earlier call */
            continue;
        }
        if (st != OPG_ERR_TIMEOUT) continue; /* malformed: dropped */
        int64_t left = deadline - opg_now_ms();
        if (left <= 0) return opg__fail(OPG_ERR_TIMEOUT, "no answer from the coordinator in %d ms", timeout_ms);
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, (long)left);
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
    opg_status st = opg_sock_send(c->sock, NULL, T(SUBMIT_JOB), &job->base);
    if (st) return st;
    /* the SubmitAck names the new id: the answer is the next SubmitAck, or an Error about no job */
    int64_t deadline = opg_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - opg_now_ms());
        opg_frame *f = NULL;
        if (left <= 0) return opg__fail(OPG_ERR_TIMEOUT, "no answer from the coordinator in %d ms", timeout_ms);
        opg_status ws = OPG_OK;
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, left) <= 0) continue;
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
    opg_status st = opg_sock_send(c->sock, NULL, T(STATUS), &m.base);
    opg_frame *f = NULL;
    if (st || (st = await(c, job_id, timeout_ms, &f))) return st;
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
    opg_status st = opg_sock_send(c->sock, NULL, T(GET_RESULT), &m.base);
    opg_frame *f = NULL;
    if (st || (st = await(c, job_id, timeout_ms, &f))) return st;
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
    opg_status st = opg_sock_send(c->sock, NULL, T(STREAM), &m.base);
    if (st) return st;
    for (;;) {
        opg_frame *f = NULL;
        if ((st = await(c, job_id, timeout_ms, &f))) return st;
        if (f->type == T(TOKENS)) {
            const Opg__V1__Tokens *t = (const Opg__V1__Tokens *)f->msg;
            if (on_tokens) on_tokens(ctx, t->index, t->token_ids, t->n_token_ids);
            opg_frame_free(&f);
            continue;
        }
        if (f->type == T(ERROR)) return from_error(f);
        if (f->type != T(RESULT)) return unexpected(f);
        *out = f;
        return OPG_OK;
    }
}

opg_status opg_client_cancel(opg_client *c, uint64_t job_id, int timeout_ms, int *state) {
    Opg__V1__Cancel m = OPG__V1__CANCEL__INIT;
    m.job_id = job_id;
    opg_status st = opg_sock_send(c->sock, NULL, T(CANCEL), &m.base);
    opg_frame *f = NULL;
    if (st || (st = await(c, job_id, timeout_ms, &f))) return st;
    if (f->type == T(ERROR)) return from_error(f);
    if (f->type != T(STATUS_REPLY)) return unexpected(f);
    *state = ((Opg__V1__StatusReply *)f->msg)->state;
    opg_frame_free(&f);
    return OPG_OK;
}
