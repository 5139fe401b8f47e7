/* fuzz_receipt.c: libFuzzer target for signed-receipt verification
 * (proto/receipt.h).
 *
 * Each input is used twice:
 *  1. as a SignedReceipt, through opg_receipt_verify. A rejected input must
 *     leave a NULL receipt, a known status and a message. An accepted one
 *     must pass opg_receipt_check and be canonical: the SignedReceipt rebuilt
 *     from the decoded receipt and the input's signature is the input.
 *  2. as the bytes of a Receipt, which the harness signs with a fixed key
 *     (seed 0x42 x 32) so the decoder behind the signature check is reached
 *     too. An accepted one must name the fixed key, and opg_receipt_sign of
 *     the decoded receipt must give the same blob (canonical encoding,
 *     deterministic Ed25519).
 * Violations are __builtin_trap() so the fuzzer keeps them. */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "receipt.h"

#define CHECK(c)                        \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)

static volatile uint64_t g_sink;
static uint8_t g_pk[32], g_sk[64];

static void check_failure(opg_status st, Opg__V1__Receipt *r) {
    CHECK(r == NULL);
    CHECK(st == OPG_ERR_FORMAT || st == OPG_ERR_DENIED || st == OPG_ERR_LIMIT);
    CHECK(opg_last_error()[0] != 0);
    g_sink += strlen(opg_last_error());
}

static void check_receipt(const Opg__V1__Receipt *r) {
    CHECK(opg_receipt_check(r) == OPG_OK);
    CHECK(r->job_id != 0 && r->contract_version >= 1 && r->usage);
    CHECK(r->model_id.len == 32 && r->prompt_hash.len == 32 && r->output_hash.len == 32);
    CHECK(r->trace_root.len == 32 && r->worker_key.len == 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        uint8_t seed[32];
        memset(seed, 0x42, sizeof seed);
        CHECK(sodium_init() >= 0);
        crypto_sign_seed_keypair(g_pk, g_sk, seed);
        init = 1;
    }

    /* 1: the input as a SignedReceipt */
    Opg__V1__Receipt *r = (Opg__V1__Receipt *)1;
    opg_status st = opg_receipt_verify(data, size, &r);
    if (st != OPG_OK) {
        check_failure(st, r);
    } else {
        CHECK(r != NULL);
        check_receipt(r);
        /* canonical: the signature field (tag 0x12, length 64) comes last */
        CHECK(size >= 66 && data[size - 66] == 0x12 && data[size - 65] == 64);
        size_t rn = protobuf_c_message_get_packed_size(&r->base);
        uint8_t *rb = malloc(rn ? rn : 1);
        CHECK(rb != NULL);
        protobuf_c_message_pack(&r->base, rb);
        Opg__V1__SignedReceipt sr = OPG__V1__SIGNED_RECEIPT__INIT;
        sr.receipt.data = rb;
        sr.receipt.len = rn;
        sr.signature.data = (uint8_t *)data + size - 64;
        sr.signature.len = 64;
        size_t n = protobuf_c_message_get_packed_size(&sr.base);
        CHECK(n == size);
        uint8_t *again = malloc(n);
        CHECK(again != NULL);
        protobuf_c_message_pack(&sr.base, again);
        CHECK(memcmp(again, data, n) == 0);
        free(again);
        free(rb);
        opg_receipt_free(r);
    }

    /* 2: the input as Receipt bytes, signed here */
    if (size > OPG_PROTO_MAX_RECEIPT) return 0;
    uint8_t *m = malloc(sizeof OPG_RECEIPT_SIG_CONTEXT - 1 + size);
    CHECK(m != NULL);
    memcpy(m, OPG_RECEIPT_SIG_CONTEXT, sizeof OPG_RECEIPT_SIG_CONTEXT - 1);
    if (size) memcpy(m + sizeof OPG_RECEIPT_SIG_CONTEXT - 1, data, size);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, m, sizeof OPG_RECEIPT_SIG_CONTEXT - 1 + size, g_sk);
    free(m);
    Opg__V1__SignedReceipt sr = OPG__V1__SIGNED_RECEIPT__INIT;
    sr.receipt.data = (uint8_t *)data;
    sr.receipt.len = size;
    sr.signature.data = sig;
    sr.signature.len = 64;
    size_t n = protobuf_c_message_get_packed_size(&sr.base);
    uint8_t *blob = malloc(n);
    CHECK(blob != NULL);
    protobuf_c_message_pack(&sr.base, blob);
    r = (Opg__V1__Receipt *)1;
    st = opg_receipt_verify(blob, n, &r);
    if (st != OPG_OK) {
        check_failure(st, r);
    } else {
        CHECK(r != NULL);
        check_receipt(r);
        CHECK(memcmp(r->worker_key.data, g_pk, 32) == 0);
        uint8_t *out = NULL;
        size_t on = 0;
        CHECK(opg_receipt_sign(r, g_sk, &out, &on) == OPG_OK);
        CHECK(on == n && memcmp(out, blob, n) == 0);
        free(out);
        opg_receipt_free(r);
    }
    free(blob);
    return 0;
}
