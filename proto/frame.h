/* frame.h: one opg protocol message on the wire (docs/protocol.md).
 *
 * A frame is the protobuf encoding of opg.v1.Envelope {version, type,
 * payload}, where payload is the encoding of the message named by type
 * (proto/opg.proto). No length prefix: the transport (ZeroMQ) delimits
 * messages. Decoding is strict: the frame size is checked before any
 * parsing, every allocation made while unpacking is charged to a byte
 * budget, the version must be OPG_PROTO_VERSION, the type must be known, and
 * every message is checked field by field (ids of the right length, bounds on
 * counts and lengths, enum values known, a prompt present ...) and must be
 * in canonical encoding (it re-encodes to the same bytes: no string with a
 * NUL byte, no field twice, no default written out). Encoding runs
 * the same checks, so a peer never sends what it would itself reject.
 *
 * Return codes (runtime/status.h), with opg_last_error() naming the problem:
 *   OPG_ERR_LIMIT        frame larger than OPG_FRAME_MAX, or the decode budget spent
 *   OPG_ERR_UNSUPPORTED  envelope version other than OPG_PROTO_VERSION
 *   OPG_ERR_FORMAT       not protobuf, unknown type, a field out of range
 *   OPG_ERR_ARG          bad arguments from the caller (encode: message of the
 *                        wrong type or failing the checks)
 *   OPG_ERR_NOMEM        allocation failed */
#ifndef OPG_FRAME_H
#define OPG_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "opg.pb-c.h"
#include "status.h"

#define OPG_PROTO_VERSION 1u
/* Largest frame accepted or produced, in bytes. */
#define OPG_FRAME_MAX (16u << 20)
/* Default byte budget of everything protobuf-c allocates while decoding one
 * frame (envelope and payload together). */
#define OPG_FRAME_DECODE_BUDGET (64u << 20)
/* Field bounds checked on encode and decode. */
#define OPG_PROTO_ID_BYTES 32u            /* model ids, trace roots (SHA-256) */
#define OPG_PROTO_MAX_NEW_TOKENS 65536u   /* max_tokens of Job, SubmitJob */
#define OPG_PROTO_MAX_PROMPT_TOKENS (1u << 20)
#define OPG_PROTO_MAX_HEARTBEAT_MS 600000u  /* Heartbeat.interval_ms counted at most (--heartbeat-ms' range) */
#define OPG_PROTO_MAX_PROMPT_TEXT (1u << 20) /* bytes of a text prompt: a worker tokenizes it on a
                                                thread of its own (0.1-0.6 s for 1 MiB on one core),
                                                and no context holds more */
#define OPG_PROTO_MAX_MODELS 1024u        /* Ready.models */
#define OPG_PROTO_MAX_CLIENT_ID 64u
#define OPG_PROTO_MAX_SIGNATURE 128u
#define OPG_PROTO_MAX_RECEIPT (64u << 10)
#define OPG_PROTO_MAX_NAME 64u             /* Ready.name */
#define OPG_PROTO_MAX_SHORT_STRING 4096u  /* gpu_name, Error.message, Disconnect.reason */

typedef Opg__V1__MessageType opg_msg_type;

/* A decoded frame. msg points to the message struct of type (for example
 * (Opg__V1__Job *)f->msg when type is OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_JOB).
 * Owned by the frame; freed by opg_frame_free. */
typedef struct opg_frame {
    uint32_t version;
    opg_msg_type type;
    ProtobufCMessage *msg;
} opg_frame;

/* Descriptor of the message carried by type, NULL for an unknown type. */
const ProtobufCMessageDescriptor *opg_frame_descriptor(opg_msg_type type);
/* Short name of type ("Job"), "unknown" when unknown. */
const char *opg_frame_type_name(opg_msg_type type);

/* Checks msg (of the type's descriptor) field by field. OPG_ERR_FORMAT with a
 * message naming the field when a check fails. */
opg_status opg_frame_check(opg_msg_type type, const ProtobufCMessage *msg);

/* The field checks Job, SubmitJob and Receipt share (msg names the message
 * in the error): sampling NULL (all zero) or temperature finite in 0..100 and
 * top_p in 0..1; max_tokens 1..OPG_PROTO_MAX_NEW_TOKENS. OPG_ERR_FORMAT. */
opg_status opg_proto_check_sampling(const Opg__V1__SamplingParams *s, const char *msg);
opg_status opg_proto_check_max_tokens(uint32_t n, const char *msg);
/* How long a node waits on a silent peer before giving it up: liveness x the
 * longer of its own heartbeat period and the peer's Heartbeat.interval_ms
 * (0: not said; counted at most OPG_PROTO_MAX_HEARTBEAT_MS), so two ends
 * with other periods agree (docs/protocol.md, "Liveness"). */
int64_t opg_proto_silence_ms(int own_heartbeat_ms, uint32_t peer_interval_ms, int liveness);
/* 1 when a and b ask for the same sampler: the same bits in every field
 * (NULL is all zero, as protobuf reads an absent message). */
int opg_proto_sampling_equal(const Opg__V1__SamplingParams *a, const Opg__V1__SamplingParams *b);

/* Encodes msg, of type, into a new frame. On success *out (caller owns, free
 * with free()) holds *out_len bytes; on failure *out is NULL. */
opg_status opg_frame_encode(opg_msg_type type, const ProtobufCMessage *msg, uint8_t **out,
                            size_t *out_len);

/* Decodes buf[0..len). On success *out is a new frame (caller owns, free with
 * opg_frame_free); on failure *out is NULL. */
opg_status opg_frame_decode(const uint8_t *buf, size_t len, opg_frame **out);
/* Same with an explicit allocation budget in bytes. */
opg_status opg_frame_decode_budget(const uint8_t *buf, size_t len, size_t budget, opg_frame **out);

/* Frees *f and sets it to NULL; NULL or *f NULL is a no-op. */
void opg_frame_free(opg_frame **f);

#endif
