/* fuzz_frame.c: libFuzzer target for the protocol frame decoder.
 *
 * Decodes the input with opg_frame_decode. A rejected input must leave a NULL
 * frame, a known status and a message. An accepted one must pass
 * opg_frame_check, re-encode, and decode again to the same type and the same
 * bytes (encoding is canonical, so encode(decode(encode(m))) is a fixed
 * point). Also decodes under a small budget, which must fail cleanly or
 * succeed. Violations are __builtin_trap() so the fuzzer keeps them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define CHECK(c)                        \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)

static volatile uint64_t g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    opg_frame *f = (opg_frame *)1;
    opg_status st = opg_frame_decode(data, size, &f);
    if (st != OPG_OK) {
        CHECK(f == NULL);
        CHECK(st == OPG_ERR_FORMAT || st == OPG_ERR_UNSUPPORTED || st == OPG_ERR_LIMIT);
        CHECK(opg_last_error()[0] != 0);
        g_sink += strlen(opg_last_error());
    } else {
        CHECK(f && f->msg && f->version == OPG_PROTO_VERSION);
        CHECK(opg_frame_descriptor(f->type) == f->msg->descriptor);
        CHECK(opg_frame_check(f->type, f->msg) == OPG_OK);
        uint8_t *enc = NULL;
        size_t n = 0;
        CHECK(opg_frame_encode(f->type, f->msg, &enc, &n) == OPG_OK);
        opg_frame *g = NULL;
        CHECK(opg_frame_decode(enc, n, &g) == OPG_OK);
        CHECK(g->type == f->type);
        uint8_t *enc2 = NULL;
        size_t n2 = 0;
        CHECK(opg_frame_encode(g->type, g->msg, &enc2, &n2) == OPG_OK);
        CHECK(n2 == n && memcmp(enc, enc2, n) == 0);
        free(enc2);
        opg_frame_free(&g);
        free(enc);
        opg_frame_free(&f);
        CHECK(f == NULL);
    }
    /* a tight budget: fails with LIMIT (or as above) or succeeds */
    st = opg_frame_decode_budget(data, size, 64, &f);
    CHECK((st == OPG_OK) == (f != NULL));
    opg_frame_free(&f);
    return 0;
}
