/* receipt.h: signed receipts, what a worker signs for a finished job.
 *
 * A receipt (opg.v1.Receipt, proto/opg.proto) names the job, the model, the
 * prompt and output (as SHA-256 hashes of their tokens), the trace root, the
 * contract version, the usage, what the worker ran the job with (sampling
 * parameters, max_tokens, its context size) and the worker's Ed25519 public
 * key. The worker
 * signs its protobuf encoding; the wire form is opg.v1.SignedReceipt
 * {receipt bytes, 64-byte signature}, the signature being Ed25519 over
 * "opg-receipt-v1" || receipt bytes (the prefix keeps a receipt signature
 * from ever being valid for another kind of message signed with the same
 * key). It travels in Result.receipt.
 *
 * Verifying is strict like frame decoding (proto/frame.h): the size is
 * checked first, every allocation is charged to a byte budget, unknown fields
 * are refused, every field is checked, and both the SignedReceipt and the
 * receipt inside must be in canonical encoding (what protobuf-c writes), so a
 * valid receipt has exactly one byte representation.
 *
 * Return codes (runtime/status.h), with opg_last_error() naming the problem:
 *   OPG_ERR_FORMAT  malformed: not protobuf, unknown fields, a field out of
 *                   range, a signature not 64 bytes, not canonical
 *   OPG_ERR_DENIED  well formed, but the signature does not verify
 *   OPG_ERR_LIMIT   larger than OPG_PROTO_MAX_RECEIPT, or the decode budget spent
 *   OPG_ERR_ARG     bad arguments (sign: a receipt failing the checks, or a
 *                   worker_key other than the signing key's)
 *   OPG_ERR_NOMEM   allocation failed */
#ifndef OPG_RECEIPT_H
#define OPG_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "opg.pb-c.h"
#include "status.h"

/* The domain-separation prefix signed before the receipt bytes. */
#define OPG_RECEIPT_SIG_CONTEXT "opg-receipt-v1"
#define OPG_RECEIPT_SIG_BYTES 64u
/* Byte budget of everything protobuf-c allocates while verifying one receipt. */
#define OPG_RECEIPT_DECODE_BUDGET (256u << 10)

/* Checks r field by field: job_id nonzero; model_id, prompt_hash,
 * output_hash, trace_root and worker_key 32 bytes; contract_version >= 1;
 * usage and sampling present, sampling and max_tokens as in a Job
 * (frame.h); completion_tokens <= max_tokens, prompt_tokens < context_size
 * and prompt_tokens + completion_tokens <= context_size + 1; no unknown
 * fields. OPG_ERR_FORMAT naming the field. */
opg_status opg_receipt_check(const Opg__V1__Receipt *r);

/* Serializes r (checked as above, and r->worker_key must be sign_sk's public
 * key) and signs it with sign_sk (libsodium's 64-byte Ed25519 secret key,
 * opg_keypair.sign_sk in net/keys.h). On success *out (caller owns, free with
 * free()) holds the packed SignedReceipt of *out_len bytes; on failure NULL. */
opg_status opg_receipt_sign(const Opg__V1__Receipt *r, const uint8_t sign_sk[64], uint8_t **out, size_t *out_len);

/* Strictly decodes the SignedReceipt buf[0..len) and checks its signature
 * against the receipt's own worker_key. That proves only that the holder of
 * worker_key signed it: compare worker_key with the key you expect. On
 * success *out is the receipt (caller owns, free with opg_receipt_free); on
 * failure NULL. */
opg_status opg_receipt_verify(const uint8_t *buf, size_t len, Opg__V1__Receipt **out);

/* opg_receipt_verify without the signature check (about 50 us of CPU):
 * the same strict decoding and field checks. For a holder that checks the
 * signature elsewhere, or only needs the fields. */
opg_status opg_receipt_decode(const uint8_t *buf, size_t len, Opg__V1__Receipt **out);

/* Frees a receipt from opg_receipt_verify or opg_receipt_decode. NULL is a no-op. */
void opg_receipt_free(Opg__V1__Receipt *r);

/* SHA-256 over tokens[0..n) each as 4 little-endian bytes: prompt_hash and
 * output_hash. n 0 gives the hash of the empty string. */
void opg_receipt_hash_tokens(const uint32_t *tokens, size_t n, uint8_t out[32]);

#endif
