/* fuzz_jobrecord.c: libFuzzer target for the job record parser
 * (net/jobrecord.h), the JSON a validator is handed by anyone.
 *
 * A rejected input must give a known code and a message. An accepted
 * record must hold a SubmitJob and a Result of its job id, and format back
 * into a record that parses to the same job, request and result frames
 * (byte for byte re-encoded). Violations are __builtin_trap(). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jobrecord.h"

#define CHECK(c)                        \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)
#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x

static volatile uint64_t g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The frame bytes of m as type (NULL when it does not encode). */
static uint8_t *bytes_of(opg_msg_type type, const ProtobufCMessage *m, size_t *n) {
    uint8_t *b = NULL;
    return opg_frame_encode(type, m, &b, n) == OPG_OK ? b : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    opg_jobrecord *r = NULL;
    opg_status st = opg_jobrecord_parse((const char *)data, size, &r);
    if (st != OPG_OK) {
        CHECK(r == NULL);
        CHECK(st == OPG_ERR_FORMAT || st == OPG_ERR_LIMIT || st == OPG_ERR_UNSUPPORTED || st == OPG_ERR_NOMEM);
        CHECK(opg_last_error()[0] != 0);
        g_sink += strlen(opg_last_error());
        return 0;
    }
    CHECK(r->request->type == T(SUBMIT_JOB) && r->result->type == T(RESULT));
    const Opg__V1__Result *res = (const Opg__V1__Result *)r->result->msg;
    CHECK(r->coordinator != NULL); /* r->job_id may differ from res->job_id: opg verify's to judge */
    char *text = NULL;
    st = opg_jobrecord_format(r->coordinator, (const Opg__V1__SubmitJob *)r->request->msg, res, &text);
    CHECK(st == OPG_OK && text);
    opg_jobrecord *again = NULL;
    CHECK(opg_jobrecord_parse(text, strlen(text), &again) == OPG_OK);
    CHECK(again->job_id == res->job_id && strcmp(again->coordinator, r->coordinator) == 0);
    size_t n1, n2, n3, n4;
    uint8_t *a = bytes_of(T(SUBMIT_JOB), r->request->msg, &n1), *b = bytes_of(T(SUBMIT_JOB), again->request->msg, &n2);
    uint8_t *c = bytes_of(T(RESULT), r->result->msg, &n3), *d = bytes_of(T(RESULT), again->result->msg, &n4);
    CHECK(a && b && c && d && n1 == n2 && n3 == n4 && !memcmp(a, b, n1) && !memcmp(c, d, n3));
    free(a);
    free(b);
    free(c);
    free(d);
    free(text);
    opg_jobrecord_free(again);
    opg_jobrecord_free(r);
    return 0;
}
