/* frame.c: encoding and strict decoding of opg protocol frames (frame.h).
 *
 * protobuf-c does the wire parsing; what it allocates goes through a
 * ProtobufCAllocator that charges a per-frame byte budget, so a small hostile
 * frame cannot make the decoder allocate without bound. What protobuf-c
 * accepts but the protocol does not (unknown fields, ids of the wrong
 * length, unknown enum values, missing prompts ...) is rejected here. */
#include "frame.h"

#include "pb_budget.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- message table --------------------------------------------------------------- */
typedef opg_status (*check_fn)(const ProtobufCMessage *m);

static opg_status check_ready(const ProtobufCMessage *m);
static opg_status check_heartbeat(const ProtobufCMessage *m);
static opg_status check_job(const ProtobufCMessage *m);
static opg_status check_tokens(const ProtobufCMessage *m);
static opg_status check_result(const ProtobufCMessage *m);
static opg_status check_error(const ProtobufCMessage *m);
static opg_status check_disconnect(const ProtobufCMessage *m);
static opg_status check_submit_job(const ProtobufCMessage *m);
static opg_status check_job_id_only(const ProtobufCMessage *m);
static opg_status check_status_reply(const ProtobufCMessage *m);
static opg_status check_job_request(const ProtobufCMessage *m);

static const struct {
    const char *name;
    const ProtobufCMessageDescriptor *desc;
    check_fn check;
} msg_table[] = {
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_READY] = {"Ready", &opg__v1__ready__descriptor, check_ready},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_HEARTBEAT] = {"Heartbeat", &opg__v1__heartbeat__descriptor, check_heartbeat},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_JOB] = {"Job", &opg__v1__job__descriptor, check_job},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_TOKENS] = {"Tokens", &opg__v1__tokens__descriptor, check_tokens},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_RESULT] = {"Result", &opg__v1__result__descriptor, check_result},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_ERROR] = {"Error", &opg__v1__error__descriptor, check_error},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_DISCONNECT] = {"Disconnect", &opg__v1__disconnect__descriptor, check_disconnect},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_SUBMIT_JOB] = {"SubmitJob", &opg__v1__submit_job__descriptor, check_submit_job},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_SUBMIT_ACK] = {"SubmitAck", &opg__v1__submit_ack__descriptor, check_job_id_only},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_STATUS] = {"Status", &opg__v1__status__descriptor, check_job_id_only},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_STATUS_REPLY] = {"StatusReply", &opg__v1__status_reply__descriptor, check_status_reply},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_GET_RESULT] = {"GetResult", &opg__v1__get_result__descriptor, check_job_id_only},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_CANCEL] = {"Cancel", &opg__v1__cancel__descriptor, check_job_id_only},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_STREAM] = {"Stream", &opg__v1__stream__descriptor, check_job_id_only},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_GET_REQUEST] = {"GetRequest", &opg__v1__get_request__descriptor, check_job_id_only},
    [OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_JOB_REQUEST] = {"JobRequest", &opg__v1__job_request__descriptor, check_job_request},
};
#define N_TYPES ((int)(sizeof msg_table / sizeof msg_table[0]))

static int type_known(opg_msg_type t) { return (int)t > 0 && (int)t < N_TYPES && msg_table[t].desc; }

const ProtobufCMessageDescriptor *opg_frame_descriptor(opg_msg_type type) {
    return type_known(type) ? msg_table[type].desc : NULL;
}

const char *opg_frame_type_name(opg_msg_type type) {
    return type_known(type) ? msg_table[type].name : "unknown";
}

/* ---- field checks --------------------------------------------------------------- */
#define FAIL(...) opg__fail(OPG_ERR_FORMAT, __VA_ARGS__)
#define TRY(x)                           \
    do {                                 \
        opg_status st_ = (x);            \
        if (st_ != OPG_OK) return st_;   \
    } while (0)

static opg_status check_id(const ProtobufCBinaryData *d, const char *msg, const char *field) {
    if (d->len != OPG_PROTO_ID_BYTES)
        return FAIL("%s.%s: %zu bytes, expected %u", msg, field, d->len, OPG_PROTO_ID_BYTES);
    return OPG_OK;
}

static opg_status check_job_id(uint64_t id, const char *msg) {
    return id == 0 ? FAIL("%s.job_id: missing (0)", msg) : OPG_OK;
}

static opg_status check_bytes_max(const ProtobufCBinaryData *d, size_t max, const char *msg, const char *field) {
    if (d->len > max) return FAIL("%s.%s: %zu bytes, at most %zu allowed", msg, field, d->len, max);
    return OPG_OK;
}

/* protobuf-c strings are NUL-terminated copies; NULL means empty. */
static opg_status check_str_max(const char *s, size_t max, const char *msg, const char *field) {
    size_t n = s ? strlen(s) : 0;
    if (n > max) return FAIL("%s.%s: %zu bytes, at most %zu allowed", msg, field, n, max);
    return OPG_OK;
}

opg_status opg_proto_check_sampling(const Opg__V1__SamplingParams *s, const char *msg) {
    if (!s) return OPG_OK; /* absent: all zero, greedy */
    if (!isfinite(s->temperature) || s->temperature < 0.0f || s->temperature > 100.0f)
        return FAIL("%s.sampling.temperature: %g, expected 0..100", msg, (double)s->temperature);
    if (!isfinite(s->top_p) || s->top_p < 0.0f || s->top_p > 1.0f)
        return FAIL("%s.sampling.top_p: %g, expected 0..1", msg, (double)s->top_p);
    return OPG_OK;
}

static opg_status check_prompt(int is_text, int is_tokens, const char *text, const Opg__V1__TokenList *tokens,
                               const char *msg) {
    if (is_text) {
        if (!text || !text[0]) return FAIL("%s.text: empty prompt", msg);
        return check_str_max(text, OPG_PROTO_MAX_PROMPT_TEXT, msg, "text");
    }
    if (is_tokens) {
        size_t n = tokens ? tokens->n_ids : 0;
        if (n == 0) return FAIL("%s.tokens: empty prompt", msg);
        if (n > OPG_PROTO_MAX_PROMPT_TOKENS)
            return FAIL("%s.tokens: %zu tokens, at most %u allowed", msg, n, OPG_PROTO_MAX_PROMPT_TOKENS);
        return OPG_OK;
    }
    return FAIL("%s: prompt missing (neither text nor tokens)", msg);
}

int opg_proto_sampling_equal(const Opg__V1__SamplingParams *a, const Opg__V1__SamplingParams *b) {
    static const Opg__V1__SamplingParams zero = OPG__V1__SAMPLING_PARAMS__INIT;
    if (!a) a = &zero;
    if (!b) b = &zero;
    return !memcmp(&a->temperature, &b->temperature, sizeof a->temperature) && a->top_k == b->top_k &&
           !memcmp(&a->top_p, &b->top_p, sizeof a->top_p) && a->seed == b->seed;
}

int64_t opg_proto_silence_ms(int own_heartbeat_ms, uint32_t peer_interval_ms, int liveness) {
    int64_t peer = peer_interval_ms < OPG_PROTO_MAX_HEARTBEAT_MS ? peer_interval_ms : OPG_PROTO_MAX_HEARTBEAT_MS;
    return (peer > own_heartbeat_ms ? peer : own_heartbeat_ms) * (int64_t)liveness;
}

opg_status opg_proto_check_max_tokens(uint32_t n, const char *msg) {
    if (n < 1 || n > OPG_PROTO_MAX_NEW_TOKENS)
        return FAIL("%s.max_tokens: %u, expected 1..%u", msg, n, OPG_PROTO_MAX_NEW_TOKENS);
    return OPG_OK;
}

static opg_status check_ready(const ProtobufCMessage *m) {
    const Opg__V1__Ready *r = (const Opg__V1__Ready *)m;
    if (r->n_models > OPG_PROTO_MAX_MODELS)
        return FAIL("Ready.models: %zu, at most %u allowed", r->n_models, OPG_PROTO_MAX_MODELS);
    for (size_t i = 0; i < r->n_models; i++)
        if (r->models[i].len != OPG_PROTO_ID_BYTES)
            return FAIL("Ready.models[%zu]: %zu bytes, expected %u", i, r->models[i].len, OPG_PROTO_ID_BYTES);
    if (r->backend != OPG__V1__BACKEND__BACKEND_CPU && r->backend != OPG__V1__BACKEND__BACKEND_CUDA)
        return FAIL("Ready.backend: unknown value %d", (int)r->backend);
    TRY(check_str_max(r->name, OPG_PROTO_MAX_NAME, "Ready", "name"));
    if (r->worker_key.len != 0 && r->worker_key.len != OPG_PROTO_ID_BYTES)
        return FAIL("Ready.worker_key: %zu bytes, expected 0 or %u", r->worker_key.len, OPG_PROTO_ID_BYTES);
    if (r->n_model_contexts != r->n_models)
        return FAIL("Ready.model_contexts: %zu, expected one per model (%zu)", r->n_model_contexts, r->n_models);
    for (size_t i = 0; i < r->n_model_contexts; i++)
        if (r->model_contexts[i] < 2)
            return FAIL("Ready.model_contexts[%zu]: %u, at least 2 (a prompt token and one to generate)", i,
                        r->model_contexts[i]);
    return check_str_max(r->gpu_name, OPG_PROTO_MAX_SHORT_STRING, "Ready", "gpu_name");
}

static opg_status check_heartbeat(const ProtobufCMessage *m) { (void)m; return OPG_OK; }

static opg_status check_job(const ProtobufCMessage *m) {
    const Opg__V1__Job *j = (const Opg__V1__Job *)m;
    TRY(check_job_id(j->job_id, "Job"));
    TRY(check_id(&j->model_id, "Job", "model_id"));
    TRY(check_prompt(j->prompt_case == OPG__V1__JOB__PROMPT_TEXT, j->prompt_case == OPG__V1__JOB__PROMPT_TOKENS,
                     j->prompt_case == OPG__V1__JOB__PROMPT_TEXT ? j->text : NULL,
                     j->prompt_case == OPG__V1__JOB__PROMPT_TOKENS ? j->tokens : NULL, "Job"));
    TRY(opg_proto_check_sampling(j->sampling, "Job"));
    TRY(opg_proto_check_max_tokens(j->max_tokens, "Job"));
    TRY(check_bytes_max(&j->client_id, OPG_PROTO_MAX_CLIENT_ID, "Job", "client_id"));
    if (j->contract_version < 1) return FAIL("Job.contract_version: missing (0)");
    if (j->min_tokens > j->max_tokens)
        return FAIL("Job.min_tokens: %u, above max_tokens %u", j->min_tokens, j->max_tokens);
    return OPG_OK;
}

static opg_status check_tokens(const ProtobufCMessage *m) {
    const Opg__V1__Tokens *t = (const Opg__V1__Tokens *)m;
    TRY(check_job_id(t->job_id, "Tokens"));
    if (t->n_token_ids == 0) return FAIL("Tokens.token_ids: empty");
    if (t->n_token_ids > OPG_PROTO_MAX_NEW_TOKENS || t->index > OPG_PROTO_MAX_NEW_TOKENS - t->n_token_ids)
        return FAIL("Tokens: index %u + %zu tokens exceeds %u", t->index, t->n_token_ids, OPG_PROTO_MAX_NEW_TOKENS);
    return OPG_OK;
}

static opg_status check_result(const ProtobufCMessage *m) {
    const Opg__V1__Result *r = (const Opg__V1__Result *)m;
    TRY(check_job_id(r->job_id, "Result"));
    if (r->n_output_tokens > OPG_PROTO_MAX_NEW_TOKENS)
        return FAIL("Result.output_tokens: %zu, at most %u allowed", r->n_output_tokens, OPG_PROTO_MAX_NEW_TOKENS);
    if (!r->usage) return FAIL("Result.usage: missing");
    if (r->usage->completion_tokens != r->n_output_tokens)
        return FAIL("Result.usage.completion_tokens: %u, but %zu output tokens", r->usage->completion_tokens,
                    r->n_output_tokens);
    TRY(check_id(&r->trace_root, "Result", "trace_root"));
    if (r->stop_reason != OPG__V1__STOP_REASON__STOP_REASON_EOS &&
        r->stop_reason != OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS &&
        r->stop_reason != OPG__V1__STOP_REASON__STOP_REASON_CANCELLED &&
        r->stop_reason != OPG__V1__STOP_REASON__STOP_REASON_CONTEXT)
        return FAIL("Result.stop_reason: unknown value %d", (int)r->stop_reason);
    return check_bytes_max(&r->receipt, OPG_PROTO_MAX_RECEIPT, "Result", "receipt");
}

static opg_status check_error(const ProtobufCMessage *m) {
    const Opg__V1__Error *e = (const Opg__V1__Error *)m;
    if (e->code >= 0) return FAIL("Error.code: %d, expected a negative opg_status", (int)e->code);
    if (!e->message || !e->message[0]) return FAIL("Error.message: empty");
    return check_str_max(e->message, OPG_PROTO_MAX_SHORT_STRING, "Error", "message");
}

static opg_status check_disconnect(const ProtobufCMessage *m) {
    const Opg__V1__Disconnect *d = (const Opg__V1__Disconnect *)m;
    return check_str_max(d->reason, OPG_PROTO_MAX_SHORT_STRING, "Disconnect", "reason");
}

static opg_status check_submit_job(const ProtobufCMessage *m) {
    const Opg__V1__SubmitJob *j = (const Opg__V1__SubmitJob *)m;
    TRY(check_id(&j->model_id, "SubmitJob", "model_id"));
    TRY(check_prompt(j->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TEXT,
                     j->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TOKENS,
                     j->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TEXT ? j->text : NULL,
                     j->prompt_case == OPG__V1__SUBMIT_JOB__PROMPT_TOKENS ? j->tokens : NULL, "SubmitJob"));
    TRY(opg_proto_check_sampling(j->sampling, "SubmitJob"));
    TRY(opg_proto_check_max_tokens(j->max_tokens, "SubmitJob"));
    TRY(check_bytes_max(&j->client_id, OPG_PROTO_MAX_CLIENT_ID, "SubmitJob", "client_id"));
    TRY(check_bytes_max(&j->client_signature, OPG_PROTO_MAX_SIGNATURE, "SubmitJob", "client_signature"));
    if (j->contract_version < 1) return FAIL("SubmitJob.contract_version: missing (0)");
    return OPG_OK;
}

static opg_status check_job_request(const ProtobufCMessage *m) {
    const Opg__V1__JobRequest *r = (const Opg__V1__JobRequest *)m;
    TRY(check_job_id(r->job_id, "JobRequest"));
    if (!r->request) return FAIL("JobRequest.request: missing");
    return check_submit_job(&r->request->base);
}

/* SubmitAck, Status, GetResult, Cancel, Stream, GetRequest: field 1 is
 * job_id (GetResult adds a bool, which needs no check). */
static opg_status check_job_id_only(const ProtobufCMessage *m) {
    const Opg__V1__Status *s = (const Opg__V1__Status *)m;
    return check_job_id(s->job_id, m->descriptor->short_name);
}

static opg_status check_status_reply(const ProtobufCMessage *m) {
    const Opg__V1__StatusReply *s = (const Opg__V1__StatusReply *)m;
    TRY(check_job_id(s->job_id, "StatusReply"));
    if ((int)s->state < OPG__V1__JOB_STATE__JOB_STATE_QUEUED || (int)s->state > OPG__V1__JOB_STATE__JOB_STATE_CANCELLED)
        return FAIL("StatusReply.state: unknown value %d", (int)s->state);
    if (s->tokens_done > OPG_PROTO_MAX_NEW_TOKENS)
        return FAIL("StatusReply.tokens_done: %u, at most %u", s->tokens_done, OPG_PROTO_MAX_NEW_TOKENS);
    return OPG_OK;
}

/* Fields this version does not define are an error, in nested messages too:
 * a version 1 peer sends only version 1 fields (docs/protocol.md). */
static opg_status check_no_unknown(const ProtobufCMessage *m, int depth) {
    if (m->n_unknown_fields)
        return FAIL("%s: %u unknown field(s), first number %u", m->descriptor->short_name, m->n_unknown_fields,
                    m->unknown_fields[0].tag);
    if (depth > 8) return OPG_OK; /* the schema nests two levels deep */
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (arr[k]) TRY(check_no_unknown(arr[k], depth + 1));
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + f->offset);
        if (sub) TRY(check_no_unknown(sub, depth + 1));
    }
    return OPG_OK;
}

opg_status opg_frame_check(opg_msg_type type, const ProtobufCMessage *msg) {
    if (!type_known(type)) return opg__fail(OPG_ERR_FORMAT, "unknown message type %d", (int)type);
    if (!msg || msg->descriptor != msg_table[type].desc)
        return opg__fail(OPG_ERR_ARG, "message is not a %s", msg_table[type].name);
    TRY(check_no_unknown(msg, 0));
    return msg_table[type].check(msg);
}

/* ---- encode ---------------------------------------------------------------------- */
opg_status opg_frame_encode(opg_msg_type type, const ProtobufCMessage *msg, uint8_t **out, size_t *out_len) {
    if (!out || !out_len) return opg__fail(OPG_ERR_ARG, "opg_frame_encode: NULL output");
    *out = NULL;
    *out_len = 0;
    if (!type_known(type)) return opg__fail(OPG_ERR_ARG, "opg_frame_encode: unknown message type %d", (int)type);
    opg_status st = opg_frame_check(type, msg);
    if (st != OPG_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", opg_last_error());
        return opg__fail(OPG_ERR_ARG, "opg_frame_encode: %s", why);
    }
    size_t plen = protobuf_c_message_get_packed_size(msg);
    if (plen > OPG_FRAME_MAX)
        return opg__fail(OPG_ERR_LIMIT, "%s payload of %zu bytes exceeds the frame limit of %u", msg_table[type].name,
                         plen, OPG_FRAME_MAX);
    uint8_t *payload = malloc(plen ? plen : 1);
    if (!payload) return opg__fail(OPG_ERR_NOMEM, "payload of %zu bytes", plen);
    protobuf_c_message_pack(msg, payload);

    Opg__V1__Envelope env = OPG__V1__ENVELOPE__INIT;
    env.version = OPG_PROTO_VERSION;
    env.type = type;
    env.payload.data = payload;
    env.payload.len = plen;
    size_t elen = protobuf_c_message_get_packed_size(&env.base);
    if (elen > OPG_FRAME_MAX) {
        free(payload);
        return opg__fail(OPG_ERR_LIMIT, "%s frame of %zu bytes exceeds the frame limit of %u", msg_table[type].name,
                         elen, OPG_FRAME_MAX);
    }
    uint8_t *buf = malloc(elen ? elen : 1);
    if (!buf) {
        free(payload);
        return opg__fail(OPG_ERR_NOMEM, "frame of %zu bytes", elen);
    }
    protobuf_c_message_pack(&env.base, buf);
    free(payload);
    *out = buf;
    *out_len = elen;
    return OPG_OK;
}

/* ---- decode ---------------------------------------------------------------------- */
/* Canonical encoding (what protobuf-c, and proto3 encoders generally,
 * write): the decoded message re-encodes to the same bytes. Above all, a
 * string holding a NUL byte would otherwise pass cut short at it (decoded
 * strings are C strings): a prompt other than the one sent, a length check
 * that saw only its first part. Comparing sizes alone is not enough (an
 * int32 sent in 5 bytes re-encodes in 10 and could hide 5 cut ones). */
static opg_status check_canonical(const ProtobufCMessage *msg, const uint8_t *payload, size_t plen, const char *name) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    int same = n == plen;
    if (same && n) {
        uint8_t stack[1024], *buf = n <= sizeof stack ? stack : malloc(n);
        if (!buf) return opg__fail(OPG_ERR_NOMEM, "%s: %zu bytes to re-encode", name, n);
        protobuf_c_message_pack(msg, buf);
        same = memcmp(buf, payload, n) == 0;
        if (buf != stack) free(buf);
    }
    if (!same)
        return opg__fail(OPG_ERR_FORMAT,
                         "%s: not in canonical encoding (%zu bytes re-encode to %zu other bytes: a string "
                         "holding a NUL byte, a field given twice or out of order, or a default value written "
                         "out)", name, plen, n);
    return OPG_OK;
}

typedef struct {
    opg_frame pub; /* first: opg_frame_free casts back */
    opg_pb_budget b;
} frame_impl;

void opg_frame_free(opg_frame **f) {
    if (!f || !*f) return;
    frame_impl *fi = (frame_impl *)*f;
    if (fi->pub.msg) protobuf_c_message_free_unpacked(fi->pub.msg, &fi->b.alloc);
    free(fi);
    *f = NULL;
}

opg_status opg_frame_decode_budget(const uint8_t *buf, size_t len, size_t budget, opg_frame **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "opg_frame_decode: NULL output");
    *out = NULL;
    if (!buf && len) return opg__fail(OPG_ERR_ARG, "opg_frame_decode: NULL buffer of %zu bytes", len);
    if (len > OPG_FRAME_MAX)
        return opg__fail(OPG_ERR_LIMIT, "frame of %zu bytes exceeds the limit of %u", len, OPG_FRAME_MAX);
    static const uint8_t empty[1];
    if (!buf) buf = empty;

    frame_impl *fi = calloc(1, sizeof *fi);
    if (!fi) return opg__fail(OPG_ERR_NOMEM, "frame");
    opg_pb_budget_init(&fi->b, budget);

    opg_status st = OPG_OK;
    Opg__V1__Envelope *env = opg__v1__envelope__unpack(&fi->b.alloc, len, buf);
    if (!env) {
        st = opg_pb_budget_fail(&fi->b, "envelope");
        goto fail;
    }
    /* the version first: another version's envelope may have other fields */
    if (env->version != OPG_PROTO_VERSION) {
        st = opg__fail(OPG_ERR_UNSUPPORTED, "protocol version %u not supported (this node speaks %u)", env->version,
                       OPG_PROTO_VERSION);
        goto fail;
    }
    if (env->base.n_unknown_fields) {
        st = opg__fail(OPG_ERR_FORMAT, "envelope: %u unknown field(s)", env->base.n_unknown_fields);
        goto fail;
    }
    if (!type_known(env->type)) {
        st = opg__fail(OPG_ERR_FORMAT, "unknown message type %d", (int)env->type);
        goto fail;
    }
    ProtobufCMessage *msg =
        protobuf_c_message_unpack(msg_table[env->type].desc, &fi->b.alloc, env->payload.len, env->payload.data);
    if (!msg) {
        st = opg_pb_budget_fail(&fi->b, msg_table[env->type].name);
        goto fail;
    }
    fi->pub.version = env->version;
    fi->pub.type = env->type;
    fi->pub.msg = msg;
    st = check_no_unknown(msg, 0);
    if (st == OPG_OK) st = msg_table[fi->pub.type].check(msg);
    if (st == OPG_OK) st = check_canonical(msg, env->payload.data, env->payload.len, msg_table[fi->pub.type].name);
    opg__v1__envelope__free_unpacked(env, &fi->b.alloc);
    env = NULL;
    if (st != OPG_OK) goto fail;
    *out = &fi->pub;
    return OPG_OK;

fail:
    if (env) opg__v1__envelope__free_unpacked(env, &fi->b.alloc);
    opg_frame *f = &fi->pub;
    opg_frame_free(&f);
    return st;
}

opg_status opg_frame_decode(const uint8_t *buf, size_t len, opg_frame **out) {
    return opg_frame_decode_budget(buf, len, OPG_FRAME_DECODE_BUDGET, out);
}
