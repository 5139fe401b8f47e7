/* test_proto.c: the protocol frames (proto/frame.h): a round trip of every
 * message, and hostile frames (truncated at every byte, oversized, wrong
 * version, unknown type, garbage, fields out of range, unknown fields, a
 * spent decode budget) each rejected with the right status and a message,
 * never a crash (run under the Asan build too). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define T(name) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##name

/* ---- helpers ------------------------------------------------------------------ */
static uint8_t g_id_a[32], g_id_b[32], g_root[32];
static uint32_t g_toks[5] = {1, 15043, 3186, 0, 4294967295u};
static uint8_t g_receipt[200]; /* also the source of over-long byte fields */

static void fill_ids(void) {
    for (int i = 0; i < 32; i++) {
        g_id_a[i] = (uint8_t)(i * 7 + 1);
        g_id_b[i] = (uint8_t)(255 - i);
        g_root[i] = (uint8_t)(i * 13 + 5);
    }
    for (int i = 0; i < 200; i++) g_receipt[i] = (uint8_t)(i ^ 0x5a);
}

static ProtobufCBinaryData bin(const void *p, size_t n) {
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

/* Encodes and fails the test on error; caller frees. */
static uint8_t *encode_ok(opg_msg_type type, const ProtobufCMessage *m, size_t *n) {
    uint8_t *buf = NULL;
    opg_status st = opg_frame_encode(type, m, &buf, n);
    if (st != OPG_OK) {
        print_error("encode %s: %s: %s\n", opg_frame_type_name(type), opg_strerror(st), opg_last_error());
        fail();
    }
    assert_non_null(buf);
    return buf;
}

/* Decodes a private exact-size copy (ASan sees any read past the end). */
static opg_status decode_copy(const uint8_t *buf, size_t n, opg_frame **f) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n) memcpy(copy, buf, n);
    opg_status st = opg_frame_decode(copy, n, f);
    free(copy);
    return st;
}

static opg_frame *decode_ok(const uint8_t *buf, size_t n) {
    opg_frame *f = NULL;
    opg_status st = decode_copy(buf, n, &f);
    if (st != OPG_OK) {
        print_error("decode: %s: %s\n", opg_strerror(st), opg_last_error());
        fail();
    }
    assert_non_null(f);
    return f;
}

#define expect_fail(buf, n, want, needle) expect_fail_(buf, n, want, needle, __LINE__)
static void expect_fail_(const uint8_t *buf, size_t n, opg_status want, const char *needle, int line) {
    opg_frame *f = (opg_frame *)1;
    opg_status st = decode_copy(buf, n, &f);
    const char *msg = opg_last_error();
    if (st != want || f != NULL || !msg[0] || (needle && !strstr(msg, needle))) {
        print_error("line %d: expected %s with \"%s\", got %s: \"%s\"\n", line, opg_strerror(want),
                    needle ? needle : "", opg_strerror(st), msg);
        if (st == OPG_OK) opg_frame_free(&f);
        fail();
    }
}

/* A frame built straight with protobuf-c, bypassing opg_frame_encode's checks. */
static uint8_t *raw_frame(uint32_t version, int type, const ProtobufCMessage *m, size_t *n) {
    size_t plen = m ? protobuf_c_message_get_packed_size(m) : 0;
    uint8_t *payload = malloc(plen + 1);
    assert_non_null(payload);
    if (m) protobuf_c_message_pack(m, payload);
    Opg__V1__Envelope env = OPG__V1__ENVELOPE__INIT;
    env.version = version;
    env.type = (Opg__V1__MessageType)type;
    env.payload = bin(payload, plen);
    *n = protobuf_c_message_get_packed_size(&env.base);
    uint8_t *buf = malloc(*n + 1);
    assert_non_null(buf);
    protobuf_c_message_pack(&env.base, buf);
    free(payload);
    return buf;
}

/* Checks the re-encoding of a decoded frame is byte-identical. */
static void assert_reencodes(opg_frame *f, const uint8_t *buf, size_t n) {
    size_t n2;
    uint8_t *b2 = encode_ok(f->type, f->msg, &n2);
    assert_int_equal(n2, n);
    tu_assert_bytes(b2, buf, n, "re-encoded frame");
    free(b2);
}

/* ---- sample messages (one of each type, all fields set) ----------------------- */
static Opg__V1__SamplingParams g_samp = OPG__V1__SAMPLING_PARAMS__INIT;
static Opg__V1__TokenList g_tl = OPG__V1__TOKEN_LIST__INIT;
static Opg__V1__Usage g_usage = OPG__V1__USAGE__INIT;
static ProtobufCBinaryData g_models[2];
static uint32_t g_contexts[2] = {8192, 4294967295u};

static Opg__V1__Ready s_ready = OPG__V1__READY__INIT;
static Opg__V1__Heartbeat s_hb = OPG__V1__HEARTBEAT__INIT;
static Opg__V1__Job s_job = OPG__V1__JOB__INIT;
static Opg__V1__Tokens s_tokens = OPG__V1__TOKENS__INIT;
static Opg__V1__Result s_result = OPG__V1__RESULT__INIT;
static Opg__V1__Error s_error = OPG__V1__ERROR__INIT;
static Opg__V1__Disconnect s_disc = OPG__V1__DISCONNECT__INIT;
static Opg__V1__SubmitJob s_submit = OPG__V1__SUBMIT_JOB__INIT;
static Opg__V1__SubmitAck s_ack = OPG__V1__SUBMIT_ACK__INIT;
static Opg__V1__Status s_status = OPG__V1__STATUS__INIT;
static Opg__V1__StatusReply s_reply = OPG__V1__STATUS_REPLY__INIT;
static Opg__V1__GetResult s_get = OPG__V1__GET_RESULT__INIT;
static Opg__V1__Cancel s_cancel = OPG__V1__CANCEL__INIT;
static Opg__V1__Stream s_stream = OPG__V1__STREAM__INIT;
static Opg__V1__GetRequest s_getreq = OPG__V1__GET_REQUEST__INIT;
static Opg__V1__JobRequest s_jobreq = OPG__V1__JOB_REQUEST__INIT;

static void make_samples(void) {
    fill_ids();
    g_samp.temperature = 0.7f;
    g_samp.top_k = 40;
    g_samp.top_p = 0.95f;
    g_samp.seed = 0xfedcba9876543210ull;
    g_tl.n_ids = 5;
    g_tl.ids = g_toks;
    g_usage.prompt_tokens = 12;
    g_usage.completion_tokens = 5;
    g_models[0] = bin(g_id_a, 32);
    g_models[1] = bin(g_id_b, 32);

    s_ready.n_models = 2;
    s_ready.models = g_models;
    s_ready.backend = OPG__V1__BACKEND__BACKEND_CUDA;
    s_ready.gpu_name = "NVIDIA H100 80GB HBM3";
    s_ready.free_slots = 8;
    s_ready.price_per_token = 1234567;
    s_ready.name = "gpu-node-7";
    s_ready.worker_key = bin(g_id_b, 32);
    s_ready.n_model_contexts = 2;
    s_ready.model_contexts = g_contexts;

    s_hb.seq = 42;
    s_hb.time_unix_ms = 1764072000123ull;

    s_job.job_id = 77;
    s_job.model_id = bin(g_id_a, 32);
    s_job.prompt_case = OPG__V1__JOB__PROMPT_TEXT;
    s_job.text = "Hello, world \xc3\xa9";
    s_job.sampling = &g_samp;
    s_job.max_tokens = 256;
    s_job.client_id = bin(g_id_b, 20);
    s_job.contract_version = 1;
    s_job.min_tokens = 200;

    s_tokens.job_id = 77;
    s_tokens.index = 3;
    s_tokens.n_token_ids = 2;
    s_tokens.token_ids = g_toks + 1;
    s_tokens.text = " world";

    s_result.job_id = 77;
    s_result.n_output_tokens = 5;
    s_result.output_tokens = g_toks;
    s_result.usage = &g_usage;
    s_result.trace_root = bin(g_root, 32);
    s_result.stop_reason = OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS;
    s_result.receipt = bin(g_receipt, sizeof g_receipt);

    s_error.job_id = 77;
    s_error.code = OPG_ERR_NOT_FOUND;
    s_error.message = "model not loaded";

    s_disc.reason = "draining (SIGTERM)";

    s_submit.model_id = bin(g_id_b, 32);
    s_submit.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TOKENS;
    s_submit.tokens = &g_tl;
    s_submit.sampling = &g_samp;
    s_submit.max_tokens = OPG_PROTO_MAX_NEW_TOKENS;
    s_submit.max_price = 99999;
    s_submit.client_id = bin(g_id_a, 32);
    s_submit.client_signature = bin(g_receipt, 64);
    s_submit.contract_version = 1;

    s_ack.job_id = 1;
    s_status.job_id = 2;
    s_reply.job_id = 2;
    s_reply.state = OPG__V1__JOB_STATE__JOB_STATE_RUNNING;
    s_reply.tokens_done = 17;
    s_get.job_id = 3;
    s_get.wait = 1;
    s_cancel.job_id = UINT64_MAX;
    s_stream.job_id = 4;
    s_getreq.job_id = 5;
    s_jobreq.job_id = 5;
    s_jobreq.request = &s_submit;
}

static const struct {
    opg_msg_type type;
    const ProtobufCMessage *msg;
} samples[] = {
    {T(READY), &s_ready.base},       {T(HEARTBEAT), &s_hb.base},        {T(JOB), &s_job.base},
    {T(TOKENS), &s_tokens.base},     {T(RESULT), &s_result.base},       {T(ERROR), &s_error.base},
    {T(DISCONNECT), &s_disc.base},   {T(SUBMIT_JOB), &s_submit.base},   {T(SUBMIT_ACK), &s_ack.base},
    {T(STATUS), &s_status.base},     {T(STATUS_REPLY), &s_reply.base},  {T(GET_RESULT), &s_get.base},
    {T(CANCEL), &s_cancel.base},     {T(STREAM), &s_stream.base},       {T(GET_REQUEST), &s_getreq.base},
    {T(JOB_REQUEST), &s_jobreq.base},
};
#define N_SAMPLES (sizeof samples / sizeof samples[0])

static int setup(void **state) {
    (void)state;
    make_samples();
    return 0;
}

/* ---- round trips ----------------------------------------------------------------- */
/* Liveness: liveness x the longer period; a peer's period of 0 is not said,
 * and one over 600000 ms counts as 600000. */
static void test_silence(void **state) {
    (void)state;
    assert_true(opg_proto_silence_ms(1000, 0, 3) == 3000);
    assert_true(opg_proto_silence_ms(200, 1000, 3) == 3000);
    assert_true(opg_proto_silence_ms(1000, 200, 3) == 3000);
    assert_true(opg_proto_silence_ms(50, UINT32_MAX, 100) == (int64_t)OPG_PROTO_MAX_HEARTBEAT_MS * 100);
}

static void test_every_type_has_a_sample(void **state) {
    (void)state;
    /* every known type (1..16) is covered; 0 and 17 are unknown */
    assert_null(opg_frame_descriptor(OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_UNSPECIFIED));
    assert_null(opg_frame_descriptor((opg_msg_type)17));
    assert_int_equal(N_SAMPLES, 16);
    for (size_t i = 0; i < N_SAMPLES; i++) {
        assert_int_equal((int)samples[i].type, (int)i + 1);
        assert_ptr_equal(opg_frame_descriptor(samples[i].type), samples[i].msg->descriptor);
        assert_string_not_equal(opg_frame_type_name(samples[i].type), "unknown");
    }
}

static void test_round_trip_all(void **state) {
    (void)state;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        size_t n;
        uint8_t *buf = encode_ok(samples[i].type, samples[i].msg, &n);
        assert_true(n <= OPG_FRAME_MAX);
        opg_frame *f = decode_ok(buf, n);
        assert_int_equal(f->version, OPG_PROTO_VERSION);
        assert_int_equal(f->type, samples[i].type);
        assert_ptr_equal(f->msg->descriptor, samples[i].msg->descriptor);
        /* the decoded message packs to exactly the original payload */
        size_t a = protobuf_c_message_get_packed_size(f->msg), b = protobuf_c_message_get_packed_size(samples[i].msg);
        assert_int_equal(a, b);
        uint8_t *pa = malloc(a + 1), *pb = malloc(b + 1);
        protobuf_c_message_pack(f->msg, pa);
        protobuf_c_message_pack(samples[i].msg, pb);
        tu_assert_bytes(pa, pb, a, opg_frame_type_name(samples[i].type));
        free(pa);
        free(pb);
        assert_reencodes(f, buf, n);
        opg_frame_free(&f);
        assert_null(f);
        opg_frame_free(&f); /* NULL: no-op */
        opg_frame_free(NULL);
        free(buf);
    }
}

static void test_round_trip_fields(void **state) {
    (void)state;
    size_t n;
    uint8_t *buf = encode_ok(T(JOB), &s_job.base, &n);
    opg_frame *f = decode_ok(buf, n);
    const Opg__V1__Job *j = (const Opg__V1__Job *)f->msg;
    assert_int_equal(j->job_id, 77);
    tu_assert_bytes(j->model_id.data, g_id_a, 32, "model_id");
    assert_int_equal(j->prompt_case, OPG__V1__JOB__PROMPT_TEXT);
    assert_string_equal(j->text, s_job.text);
    assert_non_null(j->sampling);
    assert_true(j->sampling->temperature == 0.7f && j->sampling->top_p == 0.95f);
    assert_int_equal(j->sampling->top_k, 40);
    assert_true(j->sampling->seed == 0xfedcba9876543210ull);
    assert_int_equal(j->max_tokens, 256);
    assert_int_equal(j->client_id.len, 20);
    assert_int_equal(j->contract_version, 1);
    opg_frame_free(&f);
    free(buf);

    buf = encode_ok(T(RESULT), &s_result.base, &n);
    f = decode_ok(buf, n);
    const Opg__V1__Result *r = (const Opg__V1__Result *)f->msg;
    assert_int_equal(r->n_output_tokens, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(r->output_tokens[i], g_toks[i]);
    assert_int_equal(r->usage->prompt_tokens, 12);
    tu_assert_bytes(r->trace_root.data, g_root, 32, "trace_root");
    assert_int_equal(r->stop_reason, OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS);
    assert_int_equal(r->receipt.len, sizeof g_receipt);
    tu_assert_bytes(r->receipt.data, g_receipt, sizeof g_receipt, "receipt");
    opg_frame_free(&f);
    free(buf);

    buf = encode_ok(T(SUBMIT_JOB), &s_submit.base, &n);
    f = decode_ok(buf, n);
    const Opg__V1__SubmitJob *s = (const Opg__V1__SubmitJob *)f->msg;
    assert_int_equal(s->prompt_case, OPG__V1__SUBMIT_JOB__PROMPT_TOKENS);
    assert_int_equal(s->tokens->n_ids, 5);
    assert_int_equal(s->tokens->ids[4], 4294967295u);
    assert_int_equal(s->max_price, 99999);
    opg_frame_free(&f);
    free(buf);

    buf = encode_ok(T(READY), &s_ready.base, &n);
    f = decode_ok(buf, n);
    const Opg__V1__Ready *rd = (const Opg__V1__Ready *)f->msg;
    assert_int_equal(rd->n_models, 2);
    tu_assert_bytes(rd->models[1].data, g_id_b, 32, "models[1]");
    assert_string_equal(rd->gpu_name, s_ready.gpu_name);
    assert_int_equal(rd->price_per_token, 1234567);
    assert_int_equal(rd->n_model_contexts, 2);
    assert_int_equal(rd->model_contexts[1], 4294967295u);
    opg_frame_free(&f);
    free(buf);
}

/* ---- hostile frames -------------------------------------------------------------- */
static void test_truncated_every_byte(void **state) {
    (void)state;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        size_t n;
        uint8_t *buf = encode_ok(samples[i].type, samples[i].msg, &n);
        for (size_t k = 0; k < n; k++) {
            opg_frame *f = (opg_frame *)1;
            opg_status st = decode_copy(buf, k, &f);
            if (st == OPG_OK) {
                /* only an empty payload can be valid: Heartbeat and Disconnect */
                assert_true(samples[i].type == T(HEARTBEAT) || samples[i].type == T(DISCONNECT));
                assert_non_null(f);
                opg_frame_free(&f);
                continue;
            }
            assert_null(f);
            assert_true(opg_last_error()[0] != 0);
            assert_true(st == OPG_ERR_FORMAT || (k == 0 && st == OPG_ERR_UNSUPPORTED));
        }
        free(buf);
    }
    /* the empty frame: version 0 */
    expect_fail(NULL, 0, OPG_ERR_UNSUPPORTED, "version 0");
}

static void test_oversized(void **state) {
    (void)state;
    /* rejected before parsing: the bytes are not even a valid envelope */
    size_t n = (size_t)OPG_FRAME_MAX + 1;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    memset(big, 0xff, n);
    opg_frame *f = (opg_frame *)1;
    assert_int_equal(opg_frame_decode(big, n, &f), OPG_ERR_LIMIT);
    assert_null(f);
    assert_non_null(strstr(opg_last_error(), "exceeds"));
    free(big);

    /* encode refuses a message whose frame would be too large */
    n = (size_t)OPG_FRAME_MAX;
    char *text = malloc(n + 1);
    assert_non_null(text);
    memset(text, 'a', n);
    text[n] = 0;
    Opg__V1__Tokens t = s_tokens;
    t.text = text;
    uint8_t *out = (uint8_t *)1;
    size_t len = 1;
    assert_int_equal(opg_frame_encode(T(TOKENS), &t.base, &out, &len), OPG_ERR_LIMIT);
    assert_null(out);
    assert_int_equal(len, 0);
    /* the same message, built raw: the frame is over the limit */
    uint8_t *raw = raw_frame(1, T(TOKENS), &t.base, &len);
    assert_true(len > OPG_FRAME_MAX);
    expect_fail(raw, len, OPG_ERR_LIMIT, "exceeds");
    free(raw);
    free(text);
}

static void test_wrong_version_and_type(void **state) {
    (void)state;
    size_t n;
    uint8_t *b = raw_frame(2, T(HEARTBEAT), &s_hb.base, &n);
    expect_fail(b, n, OPG_ERR_UNSUPPORTED, "version 2");
    free(b);
    b = raw_frame(0, T(HEARTBEAT), &s_hb.base, &n);
    expect_fail(b, n, OPG_ERR_UNSUPPORTED, "version 0");
    free(b);
    b = raw_frame(0xffffffffu, T(JOB), &s_job.base, &n);
    expect_fail(b, n, OPG_ERR_UNSUPPORTED, "version 4294967295");
    free(b);
    /* a version 2 envelope with a field version 1 does not know: still "another version" */
    b = raw_frame(2, T(HEARTBEAT), &s_hb.base, &n);
    uint8_t *ext = malloc(n + 2);
    assert_non_null(ext);
    memcpy(ext, b, n);
    ext[n] = 4 << 3; /* envelope field 4, varint 1 */
    ext[n + 1] = 1;
    expect_fail(ext, n + 2, OPG_ERR_UNSUPPORTED, "version 2");
    /* the same field with version 1: an unknown field */
    free(b);
    b = raw_frame(1, T(HEARTBEAT), &s_hb.base, &n);
    memcpy(ext, b, n);
    expect_fail(ext, n + 2, OPG_ERR_FORMAT, "envelope: 1 unknown field");
    free(ext);
    free(b);
    b = raw_frame(1, 0, &s_hb.base, &n);
    expect_fail(b, n, OPG_ERR_FORMAT, "unknown message type 0");
    free(b);
    b = raw_frame(1, 17, &s_hb.base, &n);
    expect_fail(b, n, OPG_ERR_FORMAT, "unknown message type 17");
    free(b);
    b = raw_frame(1, -3, &s_hb.base, &n);
    expect_fail(b, n, OPG_ERR_FORMAT, "unknown message type -3");
    free(b);
    /* payload of another type: Job bytes as a Cancel is a format error */
    b = raw_frame(1, T(CANCEL), &s_job.base, &n);
    opg_frame *f = (opg_frame *)1;
    assert_int_equal(decode_copy(b, n, &f), OPG_ERR_FORMAT);
    assert_null(f);
    free(b);
}

static void test_garbage(void **state) {
    (void)state;
    static const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_fail(bad_varint, sizeof bad_varint, OPG_ERR_FORMAT, "envelope");
    static const uint8_t bad_wire[] = {0x0f, 0x01};
    expect_fail(bad_wire, sizeof bad_wire, OPG_ERR_FORMAT, "envelope");
    static const uint8_t long_payload[] = {0x08, 0x01, 0x10, 0x02, 0x1a, 0x7f, 0x00};
    expect_fail(long_payload, sizeof long_payload, OPG_ERR_FORMAT, "envelope");
    /* valid envelope, garbage payload */
    static const uint8_t bad_payload[] = {0x08, 0x01, 0x10, 0x03, 0x1a, 0x02, 0x12, 0x05};
    expect_fail(bad_payload, sizeof bad_payload, OPG_ERR_FORMAT, "Job");
    /* unknown field in the envelope */
    static const uint8_t env_unknown[] = {0x08, 0x01, 0x10, 0x02, 0x1a, 0x00, 0x20, 0x01};
    expect_fail(env_unknown, sizeof env_unknown, OPG_ERR_FORMAT, "unknown field");
    /* random bytes: never a crash, always a clean status */
    tu_rng r = {12345};
    for (int it = 0; it < 20000; it++) {
        uint8_t buf[64];
        size_t n = (size_t)tu_int(&r, 0, 64);
        for (size_t k = 0; k < n; k++) buf[k] = (uint8_t)tu_u64(&r);
        if (n > 2 && it % 2) { /* half of them behind a valid envelope head */
            buf[0] = 0x08, buf[1] = 0x01, buf[2] = 0x10;
        }
        opg_frame *f = NULL;
        opg_status st = decode_copy(buf, n, &f);
        assert_true(st == OPG_OK || st == OPG_ERR_FORMAT || st == OPG_ERR_UNSUPPORTED);
        assert_true((st == OPG_OK) == (f != NULL));
        opg_frame_free(&f);
    }
}

/* Unknown fields inside the payload and in a nested message are rejected. */
static void test_unknown_fields(void **state) {
    (void)state;
    size_t plen = protobuf_c_message_get_packed_size(&s_cancel.base);
    uint8_t payload[64];
    protobuf_c_message_pack(&s_cancel.base, payload);
    payload[plen++] = 0xf8; /* field 15, varint */
    payload[plen++] = 0x00;
    payload[plen++] = 0x07;
    Opg__V1__Envelope env = OPG__V1__ENVELOPE__INIT;
    env.version = 1;
    env.type = T(CANCEL);
    env.payload = bin(payload, plen);
    uint8_t buf[128];
    size_t n = protobuf_c_message_pack(&env.base, buf);
    expect_fail(buf, n, OPG_ERR_FORMAT, "Cancel: 1 unknown field");

    /* SamplingParams with an extra field 9, inside a Job */
    Opg__V1__Job j = s_job;
    j.sampling = NULL;
    size_t jl = protobuf_c_message_get_packed_size(&j.base);
    uint8_t jb[256];
    protobuf_c_message_pack(&j.base, jb);
    jb[jl++] = 0x2a; /* field 5 (sampling), length-delimited */
    jb[jl++] = 0x02;
    jb[jl++] = 0x48; /* field 9 varint */
    jb[jl++] = 0x01;
    env.type = T(JOB);
    env.payload = bin(jb, jl);
    n = protobuf_c_message_pack(&env.base, buf);
    expect_fail(buf, n, OPG_ERR_FORMAT, "SamplingParams: 1 unknown field");
}

/* Only the canonical encoding decodes: a NUL byte inside a string (which the
 * decoded C string would cut short), a field given twice, a default written
 * out. */
static void test_canonical(void **state) {
    (void)state;
    Opg__V1__SubmitJob sj = s_submit;
    sj.tokens = NULL;
    sj.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TEXT;
    sj.text = "HelloXworld";
    size_t n;
    uint8_t *b = raw_frame(1, T(SUBMIT_JOB), &sj.base, &n);
    opg_frame *f = decode_ok(b, n); /* as packed: fine */
    opg_frame_free(&f);
    uint8_t *x = memchr(b, 'X', n);
    assert_non_null(x);
    *x = 0;
    expect_fail(b, n, OPG_ERR_FORMAT, "SubmitJob: not in canonical encoding (182 bytes re-encode to 176 other");
    free(b);
    /* the same size, other bytes: Error{code -2 in a 5-byte varint (canonical:
       10), message "hello\0abcd"}: the 5 bytes cut at the NUL are made up by
       the code's longer re-encoding, so only comparing the bytes sees it */
    uint8_t cut[] = {0x10, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0x1a, 0x0a, 'h', 'e', 'l', 'l', 'o', 0, 'a', 'b', 'c', 'd'};
    Opg__V1__Envelope env = OPG__V1__ENVELOPE__INIT;
    env.version = 1;
    env.type = T(ERROR);
    env.payload = bin(cut, sizeof cut);
    uint8_t buf[64];
    n = protobuf_c_message_pack(&env.base, buf);
    expect_fail(buf, n, OPG_ERR_FORMAT, "Error: not in canonical encoding (18 bytes re-encode to 18 other");
    /* Cancel{job_id: 7} with job_id given twice (7, then 9): protobuf keeps 9 */
    uint8_t twice[] = {0x08, 0x07, 0x08, 0x09};
    env.type = T(CANCEL);
    env.payload = bin(twice, sizeof twice);
    n = protobuf_c_message_pack(&env.base, buf);
    expect_fail(buf, n, OPG_ERR_FORMAT, "Cancel: not in canonical encoding");
    /* GetResult{job_id: 7, wait: false written out} */
    uint8_t dflt[] = {0x08, 0x07, 0x10, 0x00};
    env.type = T(GET_RESULT);
    env.payload = bin(dflt, sizeof dflt);
    n = protobuf_c_message_pack(&env.base, buf);
    expect_fail(buf, n, OPG_ERR_FORMAT, "GetResult: not in canonical encoding");
    dflt[3] = 1; /* wait: true is no default */
    n = protobuf_c_message_pack(&env.base, buf);
    f = decode_ok(buf, n);
    assert_true(((Opg__V1__GetResult *)f->msg)->wait);
    opg_frame_free(&f);
}

/* One field out of range at a time: decode says FORMAT naming the field,
 * encode refuses the same message with ARG. */
#define bad_field(type, msgp, needle) bad_field_(type, &(msgp)->base, needle, __LINE__)
static void bad_field_(opg_msg_type type, const ProtobufCMessage *m, const char *needle, int line) {
    size_t n;
    uint8_t *b = raw_frame(1, type, m, &n);
    expect_fail_(b, n, OPG_ERR_FORMAT, needle, line);
    free(b);
    uint8_t *out = (uint8_t *)1;
    opg_status st = opg_frame_encode(type, m, &out, &n);
    if (st != OPG_ERR_ARG || out != NULL || !strstr(opg_last_error(), needle)) {
        print_error("line %d: encode expected ARG with \"%s\", got %s: \"%s\"\n", line, needle, opg_strerror(st),
                    opg_last_error());
        free(st == OPG_OK ? out : NULL);
        fail();
    }
}

static void test_field_checks(void **state) {
    (void)state;
    Opg__V1__Job j = s_job;
    j.model_id = bin(g_id_a, 31);
    bad_field(T(JOB), &j, "Job.model_id: 31 bytes");
    j = s_job, j.model_id = bin(NULL, 0);
    bad_field(T(JOB), &j, "Job.model_id: 0 bytes");
    j = s_job, j.job_id = 0;
    bad_field(T(JOB), &j, "Job.job_id");
    j = s_job, j.max_tokens = 0;
    bad_field(T(JOB), &j, "Job.max_tokens: 0");
    j = s_job, j.max_tokens = OPG_PROTO_MAX_NEW_TOKENS + 1;
    bad_field(T(JOB), &j, "Job.max_tokens: 65537");
    j = s_job, j.prompt_case = OPG__V1__JOB__PROMPT__NOT_SET;
    bad_field(T(JOB), &j, "prompt missing");
    j = s_job, j.text = "";
    bad_field(T(JOB), &j, "Job.text: empty");
    Opg__V1__TokenList empty = OPG__V1__TOKEN_LIST__INIT;
    j = s_job, j.prompt_case = OPG__V1__JOB__PROMPT_TOKENS, j.tokens = &empty;
    bad_field(T(JOB), &j, "Job.tokens: empty");
    j = s_job, j.contract_version = 0;
    bad_field(T(JOB), &j, "Job.contract_version");
    j = s_job, j.min_tokens = j.max_tokens + 1;
    bad_field(T(JOB), &j, "Job.min_tokens");
    j = s_job, j.client_id = bin(g_receipt, 65);
    bad_field(T(JOB), &j, "Job.client_id: 65 bytes");
    Opg__V1__SamplingParams sp = g_samp;
    sp.temperature = NAN;
    j = s_job, j.sampling = &sp;
    bad_field(T(JOB), &j, "temperature");
    sp = g_samp, sp.temperature = -1.0f;
    bad_field(T(JOB), &j, "temperature");
    sp = g_samp, sp.top_p = 1.5f;
    bad_field(T(JOB), &j, "top_p");

    Opg__V1__SubmitJob s = s_submit;
    s.model_id = bin(g_receipt, 33);
    bad_field(T(SUBMIT_JOB), &s, "SubmitJob.model_id: 33 bytes");
    s = s_submit, s.client_signature = bin(g_receipt, 129);
    bad_field(T(SUBMIT_JOB), &s, "client_signature");
    s = s_submit, s.max_tokens = 0;
    bad_field(T(SUBMIT_JOB), &s, "SubmitJob.max_tokens");
    /* a text prompt over 1 MiB (a worker tokenizes it between steps) */
    char *huge = malloc(OPG_PROTO_MAX_PROMPT_TEXT + 2);
    assert_non_null(huge);
    memset(huge, 'a', OPG_PROTO_MAX_PROMPT_TEXT + 1);
    huge[OPG_PROTO_MAX_PROMPT_TEXT + 1] = 0;
    s = s_submit, s.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TEXT, s.text = huge;
    bad_field(T(SUBMIT_JOB), &s, "SubmitJob.text: 1048577 bytes, at most 1048576 allowed");
    huge[OPG_PROTO_MAX_PROMPT_TEXT] = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(opg_frame_encode(T(SUBMIT_JOB), &s.base, &buf, &len), OPG_OK); /* 1 MiB: fine */
    free(buf);
    free(huge);

    Opg__V1__Ready r = s_ready;
    r.backend = OPG__V1__BACKEND__BACKEND_UNSPECIFIED;
    bad_field(T(READY), &r, "Ready.backend");
    r = s_ready, r.backend = (Opg__V1__Backend)9;
    bad_field(T(READY), &r, "Ready.backend: unknown value 9");
    ProtobufCBinaryData short_models[2] = {bin(g_id_a, 32), bin(g_id_b, 16)};
    r = s_ready, r.models = short_models;
    bad_field(T(READY), &r, "Ready.models[1]: 16 bytes");
    r = s_ready, r.worker_key = bin(g_id_a, 31);
    bad_field(T(READY), &r, "Ready.worker_key: 31 bytes");
    char long_name[OPG_PROTO_MAX_NAME + 2];
    memset(long_name, 'w', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    r = s_ready, r.name = long_name;
    bad_field(T(READY), &r, "Ready.name: 65 bytes");
    r = s_ready, r.n_model_contexts = 1;
    bad_field(T(READY), &r, "Ready.model_contexts: 1, expected one per model (2)");
    uint32_t tiny_ctx[2] = {8192, 1};
    r = s_ready, r.model_contexts = tiny_ctx;
    bad_field(T(READY), &r, "Ready.model_contexts[1]: 1, at least 2");

    Opg__V1__JobRequest jr = s_jobreq;
    jr.request = NULL;
    bad_field(T(JOB_REQUEST), &jr, "JobRequest.request: missing");
    Opg__V1__SubmitJob bad_sj = s_submit;
    bad_sj.max_tokens = 0;
    jr = s_jobreq, jr.request = &bad_sj;
    bad_field(T(JOB_REQUEST), &jr, "SubmitJob.max_tokens");
    jr = s_jobreq, jr.job_id = 0;
    bad_field(T(JOB_REQUEST), &jr, "JobRequest.job_id");

    Opg__V1__Result res = s_result;
    res.trace_root = bin(g_root, 8);
    bad_field(T(RESULT), &res, "Result.trace_root: 8 bytes");
    res = s_result, res.usage = NULL;
    bad_field(T(RESULT), &res, "Result.usage");
    Opg__V1__Usage u = g_usage;
    u.completion_tokens = 4;
    res = s_result, res.usage = &u;
    bad_field(T(RESULT), &res, "completion_tokens");
    res = s_result, res.stop_reason = OPG__V1__STOP_REASON__STOP_REASON_UNSPECIFIED;
    bad_field(T(RESULT), &res, "stop_reason");
    res = s_result, res.stop_reason = (Opg__V1__StopReason)77;
    bad_field(T(RESULT), &res, "stop_reason");

    Opg__V1__Tokens t = s_tokens;
    t.n_token_ids = 0;
    bad_field(T(TOKENS), &t, "Tokens.token_ids: empty");
    t = s_tokens, t.index = OPG_PROTO_MAX_NEW_TOKENS;
    bad_field(T(TOKENS), &t, "exceeds");

    Opg__V1__Error e = s_error;
    e.code = 0;
    bad_field(T(ERROR), &e, "Error.code");
    e = s_error, e.message = "";
    bad_field(T(ERROR), &e, "Error.message");

    Opg__V1__Cancel c = OPG__V1__CANCEL__INIT;
    bad_field(T(CANCEL), &c, "Cancel.job_id");
    Opg__V1__SubmitAck a = OPG__V1__SUBMIT_ACK__INIT;
    bad_field(T(SUBMIT_ACK), &a, "SubmitAck.job_id");
    Opg__V1__StatusReply sr = s_reply;
    sr.state = (Opg__V1__JobState)6;
    bad_field(T(STATUS_REPLY), &sr, "StatusReply.state");
}

static void test_decode_budget(void **state) {
    (void)state;
    static uint32_t many[4000];
    for (int i = 0; i < 4000; i++) many[i] = (uint32_t)i * 1000u;
    Opg__V1__Tokens t = s_tokens;
    t.n_token_ids = 4000;
    t.token_ids = many;
    size_t n;
    uint8_t *buf = encode_ok(T(TOKENS), &t.base, &n);
    opg_frame *f = (opg_frame *)1;
    assert_int_equal(opg_frame_decode_budget(buf, n, 4096, &f), OPG_ERR_LIMIT);
    assert_null(f);
    assert_non_null(strstr(opg_last_error(), "budget"));
    /* enough budget: fine */
    assert_int_equal(opg_frame_decode_budget(buf, n, 1u << 20, &f), OPG_OK);
    assert_int_equal(((Opg__V1__Tokens *)f->msg)->n_token_ids, 4000);
    opg_frame_free(&f);
    free(buf);
}

static void test_bad_args(void **state) {
    (void)state;
    uint8_t b[4] = {0};
    assert_int_equal(opg_frame_decode(b, 4, NULL), OPG_ERR_ARG);
    opg_frame *f = (opg_frame *)1;
    assert_int_equal(opg_frame_decode(NULL, 4, &f), OPG_ERR_ARG);
    assert_null(f);
    uint8_t *out = (uint8_t *)1;
    size_t n;
    assert_int_equal(opg_frame_encode(T(JOB), &s_cancel.base, &out, &n), OPG_ERR_ARG); /* wrong descriptor */
    assert_null(out);
    assert_int_equal(opg_frame_encode(T(JOB), NULL, &out, &n), OPG_ERR_ARG);
    assert_int_equal(opg_frame_encode((opg_msg_type)99, &s_cancel.base, &out, &n), OPG_ERR_ARG);
    assert_int_equal(opg_frame_encode(T(CANCEL), &s_cancel.base, NULL, &n), OPG_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silence),
        cmocka_unit_test(test_every_type_has_a_sample),
        cmocka_unit_test(test_round_trip_all),
        cmocka_unit_test(test_round_trip_fields),
        cmocka_unit_test(test_truncated_every_byte),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_wrong_version_and_type),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_field_checks),
        cmocka_unit_test(test_decode_budget),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
