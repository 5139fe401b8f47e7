/* receipt.c: signing and strict verification of job receipts (receipt.h).
 *
 * Decoding follows frame.c: protobuf-c parses through an allocator that
 * charges a byte budget, and what protobuf-c accepts but the protocol does
 * not is refused here (pb_budget.h). */
#include "receipt.h"

#include "pb_budget.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTX_LEN (sizeof OPG_RECEIPT_SIG_CONTEXT - 1)
#define FAIL(...) opg__fail(OPG_ERR_FORMAT, __VA_ARGS__)

/* ---- checks ----------------------------------------------------------------------- */
static opg_status check_id(const ProtobufCBinaryData *d, const char *field) {
    if (d->len != OPG_PROTO_ID_BYTES) return FAIL("Receipt.%s: %zu bytes, expected %u", field, d->len, OPG_PROTO_ID_BYTES);
    return OPG_OK;
}

opg_status opg_receipt_check(const Opg__V1__Receipt *r) {
    if (!r || r->base.descriptor != &opg__v1__receipt__descriptor)
        return opg__fail(OPG_ERR_ARG, "opg_receipt_check: not a Receipt");
    if (r->base.n_unknown_fields)
        return FAIL("Receipt: %u unknown field(s), first number %u", r->base.n_unknown_fields,
                    r->base.unknown_fields[0].tag);
    if (r->job_id == 0) return FAIL("Receipt.job_id: missing (0)");
    opg_status st;
    if ((st = check_id(&r->model_id, "model_id")) != OPG_OK) return st;
    if ((st = check_id(&r->prompt_hash, "prompt_hash")) != OPG_OK) return st;
    if ((st = check_id(&r->output_hash, "output_hash")) != OPG_OK) return st;
    if ((st = check_id(&r->trace_root, "trace_root")) != OPG_OK) return st;
    if ((st = check_id(&r->worker_key, "worker_key")) != OPG_OK) return st;
    if (r->contract_version < 1) return FAIL("Receipt.contract_version: missing (0)");
    if (!r->usage) return FAIL("Receipt.usage: missing");
    if (r->usage->base.n_unknown_fields)
        return FAIL("Usage: %u unknown field(s), first number %u", r->usage->base.n_unknown_fields,
                    r->usage->base.unknown_fields[0].tag);
    if (!r->sampling) return FAIL("Receipt.sampling: missing");
    if (r->sampling->base.n_unknown_fields)
        return FAIL("SamplingParams: %u unknown field(s), first number %u", r->sampling->base.n_unknown_fields,
                    r->sampling->base.unknown_fields[0].tag);
    if ((st = opg_proto_check_sampling(r->sampling, "Receipt")) != OPG_OK) return st;
    if ((st = opg_proto_check_max_tokens(r->max_tokens, "Receipt")) != OPG_OK) return st;
    if (r->stop_reason == OPG__V1__STOP_REASON__STOP_REASON_UNSPECIFIED) return FAIL("Receipt.stop_reason: missing (0)");
    if (r->stop_reason < 0 || r->stop_reason > OPG__V1__STOP_REASON__STOP_REASON_CONTEXT)
        return FAIL("Receipt.stop_reason: %d is no stop reason", (int)r->stop_reason);
    /* what the scheduler allows (runtime/scheduler.c): a prompt shorter than
       the context, at most max_tokens out, every token but the last cached */
    uint64_t p = r->usage->prompt_tokens, c = r->usage->completion_tokens;
    if (c > r->max_tokens)
        return FAIL("Receipt: %llu completion tokens, more than max_tokens %u", (unsigned long long)c,
                    r->max_tokens);
    if (p >= r->context_size)
        return FAIL("Receipt: %llu prompt tokens do not fit context_size %u", (unsigned long long)p,
                    r->context_size);
    if (p + c > (uint64_t)r->context_size + 1)
        return FAIL("Receipt: %llu prompt + %llu completion tokens exceed context_size %u + 1",
                    (unsigned long long)p, (unsigned long long)c, r->context_size);
    return OPG_OK;
}

/* "opg-receipt-v1" || bytes, the signed message (caller frees). */
static uint8_t *signed_message(const uint8_t *bytes, size_t n, size_t *mlen) {
    uint8_t *m = malloc(CTX_LEN + n);
    if (!m) return NULL;
    memcpy(m, OPG_RECEIPT_SIG_CONTEXT, CTX_LEN);
    if (n) memcpy(m + CTX_LEN, bytes, n);
    *mlen = CTX_LEN + n;
    return m;
}

/* ---- sign ----------------------------------------------------------------------------- */
opg_status opg_receipt_sign(const Opg__V1__Receipt *r, const uint8_t sign_sk[64], uint8_t **out, size_t *out_len) {
    if (!out || !out_len) return opg__fail(OPG_ERR_ARG, "opg_receipt_sign: NULL output");
    *out = NULL;
    *out_len = 0;
    if (!sign_sk) return opg__fail(OPG_ERR_ARG, "opg_receipt_sign: NULL key");
    if (sodium_init() < 0) return opg__fail(OPG_ERR_UNSUPPORTED, "libsodium failed to initialise");
    opg_status st = opg_receipt_check(r);
    if (st != OPG_OK) {
        char why[400];
        snprintf(why, sizeof why, "%s", opg_last_error());
        return opg__fail(OPG_ERR_ARG, "opg_receipt_sign: %s", why);
    }
    uint8_t pk[32];
    crypto_sign_ed25519_sk_to_pk(pk, sign_sk);
    if (memcmp(pk, r->worker_key.data, 32) != 0)
        return opg__fail(OPG_ERR_ARG, "opg_receipt_sign: Receipt.worker_key is not the signing key's public key");

    size_t rlen = protobuf_c_message_get_packed_size(&r->base);
    if (rlen > OPG_PROTO_MAX_RECEIPT)
        return opg__fail(OPG_ERR_LIMIT, "receipt of %zu bytes exceeds %u", rlen, OPG_PROTO_MAX_RECEIPT);
    uint8_t *rbytes = malloc(rlen ? rlen : 1);
    if (!rbytes) return opg__fail(OPG_ERR_NOMEM, "receipt of %zu bytes", rlen);
    protobuf_c_message_pack(&r->base, rbytes);
    size_t mlen;
    uint8_t *m = signed_message(rbytes, rlen, &mlen);
    if (!m) {
        free(rbytes);
        return opg__fail(OPG_ERR_NOMEM, "receipt of %zu bytes", rlen);
    }
    uint8_t sig[OPG_RECEIPT_SIG_BYTES];
    crypto_sign_detached(sig, NULL, m, mlen, sign_sk);
    free(m);

    Opg__V1__SignedReceipt sr = OPG__V1__SIGNED_RECEIPT__INIT;
    sr.receipt.data = rbytes;
    sr.receipt.len = rlen;
    sr.signature.data = sig;
    sr.signature.len = sizeof sig;
    size_t n = protobuf_c_message_get_packed_size(&sr.base);
    if (n > OPG_PROTO_MAX_RECEIPT) {
        free(rbytes);
        return opg__fail(OPG_ERR_LIMIT, "signed receipt of %zu bytes exceeds %u", n, OPG_PROTO_MAX_RECEIPT);
    }
    uint8_t *buf = malloc(n);
    if (!buf) {
        free(rbytes);
        return opg__fail(OPG_ERR_NOMEM, "signed receipt of %zu bytes", n);
    }
    protobuf_c_message_pack(&sr.base, buf);
    free(rbytes);
    *out = buf;
    *out_len = n;
    return OPG_OK;
}

/* ---- verify --------------------------------------------------------------------------- */
/* Whether m packs to exactly bytes[0..n). */
static opg_status check_canonical(const ProtobufCMessage *m, const uint8_t *bytes, size_t n, const char *what) {
    size_t pn = protobuf_c_message_get_packed_size(m);
    if (pn != n) return FAIL("%s: not in canonical encoding (%zu bytes, canonically %zu)", what, n, pn);
    uint8_t *p = malloc(pn ? pn : 1);
    if (!p) return opg__fail(OPG_ERR_NOMEM, "%s: %zu bytes", what, pn);
    protobuf_c_message_pack(m, p);
    int same = pn == 0 || memcmp(p, bytes, pn) == 0;
    free(p);
    return same ? OPG_OK : FAIL("%s: not in canonical encoding", what);
}

void opg_receipt_free(Opg__V1__Receipt *r) {
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
}

static opg_status receipt_open(const uint8_t *buf, size_t len, int check_signature, Opg__V1__Receipt **out);

opg_status opg_receipt_verify(const uint8_t *buf, size_t len, Opg__V1__Receipt **out) {
    return receipt_open(buf, len, 1, out);
}

opg_status opg_receipt_decode(const uint8_t *buf, size_t len, Opg__V1__Receipt **out) {
    return receipt_open(buf, len, 0, out);
}

static opg_status receipt_open(const uint8_t *buf, size_t len, int check_signature, Opg__V1__Receipt **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "opg_receipt_verify: NULL output");
    *out = NULL;
    if (!buf && len) return opg__fail(OPG_ERR_ARG, "opg_receipt_verify: NULL buffer of %zu bytes", len);
    if (len > OPG_PROTO_MAX_RECEIPT)
        return opg__fail(OPG_ERR_LIMIT, "signed receipt of %zu bytes exceeds the limit of %u", len, OPG_PROTO_MAX_RECEIPT);
    if (sodium_init() < 0) return opg__fail(OPG_ERR_UNSUPPORTED, "libsodium failed to initialise");
    static const uint8_t empty[1];
    if (!buf) buf = empty;

    opg_pb_budget b;
    opg_pb_budget_init(&b, OPG_RECEIPT_DECODE_BUDGET);
    ProtobufCAllocator *alloc = &b.alloc;
    Opg__V1__Receipt *r = NULL;
    opg_status st = OPG_OK;
    Opg__V1__SignedReceipt *sr = opg__v1__signed_receipt__unpack(alloc, len, buf);
    if (!sr) return opg_pb_budget_fail(&b, "SignedReceipt");
    if (sr->base.n_unknown_fields) {
        st = FAIL("SignedReceipt: %u unknown field(s), first number %u", sr->base.n_unknown_fields,
                  sr->base.unknown_fields[0].tag);
        goto done;
    }
    if (sr->signature.len != OPG_RECEIPT_SIG_BYTES) {
        st = FAIL("SignedReceipt.signature: %zu bytes, expected %u", sr->signature.len, OPG_RECEIPT_SIG_BYTES);
        goto done;
    }
    if ((st = check_canonical(&sr->base, buf, len, "SignedReceipt")) != OPG_OK) goto done;
    r = opg__v1__receipt__unpack(alloc, sr->receipt.len, sr->receipt.data ? sr->receipt.data : empty);
    if (!r) {
        st = opg_pb_budget_fail(&b, "Receipt");
        goto done;
    }
    if ((st = opg_receipt_check(r)) != OPG_OK) goto done;
    if ((st = check_canonical(&r->base, sr->receipt.data, sr->receipt.len, "Receipt")) != OPG_OK) goto done;

    if (!check_signature) goto done;
    size_t mlen;
    uint8_t *m = signed_message(sr->receipt.data, sr->receipt.len, &mlen);
    if (!m) {
        st = opg__fail(OPG_ERR_NOMEM, "receipt of %zu bytes", sr->receipt.len);
        goto done;
    }
    int bad = crypto_sign_verify_detached(sr->signature.data, m, mlen, r->worker_key.data);
    free(m);
    if (bad) {
        char kh[17];
        sodium_bin2hex(kh, sizeof kh, r->worker_key.data, 8);
        st = opg__fail(OPG_ERR_DENIED, "receipt of job %llu: signature does not verify with worker_key %s...",
                       (unsigned long long)r->job_id, kh);
        goto done;
    }

done:
    opg__v1__signed_receipt__free_unpacked(sr, alloc);
    if (st != OPG_OK) {
        if (r) opg__v1__receipt__free_unpacked(r, alloc);
        return st;
    }
    *out = r;
    return OPG_OK;
}

/* ---- token hashes --------------------------------------------------------------------- */
void opg_receipt_hash_tokens(const uint32_t *tokens, size_t n, uint8_t out[32]) {
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    uint8_t chunk[1024];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t t = tokens[i];
        chunk[k++] = (uint8_t)t;
        chunk[k++] = (uint8_t)(t >> 8);
        chunk[k++] = (uint8_t)(t >> 16);
        chunk[k++] = (uint8_t)(t >> 24);
        if (k == sizeof chunk) {
            crypto_hash_sha256_update(&h, chunk, k);
            k = 0;
        }
    }
    if (k) crypto_hash_sha256_update(&h, chunk, k);
    crypto_hash_sha256_final(&h, out);
}
