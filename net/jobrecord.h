/* jobrecord.h: a job as its client saw it, kept to be verified later.
 *
 * `opg submit --save FILE` writes one; `opg verify FILE` re-checks it
 * offline: the worker's signed receipt against the request and the result,
 * and the trace root by re-executing the job (docs/protocol.md, "Job
 * records").
 *
 * The file is one JSON object:
 *   {"opg_job_record": 1,             format version
 *    "coordinator": "tcp://...",      where the job ran (informative)
 *    "job_id": 17,                    the coordinator's id
 *    "request": "<base64>",           the SubmitJob frame the client sent
 *    "result": "<base64>"}            the Result frame it got (with the receipt)
 * Both frames are protocol frames (proto/frame.h: envelope, version, type),
 * base64 with padding (RFC 4648, the standard alphabet), so any protobuf
 * implementation can read them. Parsing is as strict as frame decoding: a
 * record from someone else is untrusted input (tests/fuzz/fuzz_jobrecord.c).
 *
 * Errors (runtime/status.h) with opg_last_error(): OPG_ERR_FORMAT for a
 * malformed record (not JSON, a key missing or of the wrong type, bad
 * base64, a frame that does not decode or is not of its type),
 * OPG_ERR_UNSUPPORTED for another format version (a numeric
 * "opg_job_record" other than 1), OPG_ERR_LIMIT for a record over 64 MiB, OPG_ERR_NOT_FOUND for
 * no such file, OPG_ERR_IO for other file errors (no regular file, e.g. a
 * FIFO; save never overwrites: an existing path is OPG_ERR_STATE),
 * OPG_ERR_NOMEM. */
#ifndef OPG_JOBRECORD_H
#define OPG_JOBRECORD_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "status.h"

#define OPG_JOBRECORD_VERSION 1
#define OPG_JOBRECORD_MAX (64u << 20) /* bytes of a record file */

typedef struct {
    char *coordinator;  /* "" when the record names none */
    uint64_t job_id;
    opg_frame *request; /* type SUBMIT_JOB: (Opg__V1__SubmitJob *)request->msg */
    opg_frame *result;  /* type RESULT: (Opg__V1__Result *)result->msg */
} opg_jobrecord;

/* The record's JSON text (caller frees with free()). request and result are
 * checked as opg_frame_encode does; result->job_id is the record's. */
opg_status opg_jobrecord_format(const char *coordinator, const Opg__V1__SubmitJob *request,
                                const Opg__V1__Result *result, char **out);

/* Writes text to path, which must not exist yet (created 0644, flushed to
 * disk before OPG_OK). */
opg_status opg_jobrecord_save(const char *path, const char *text);

/* Parses a record (text[0..len), need not be NUL-terminated). On success
 * *out is the record (caller frees with opg_jobrecord_free); else NULL.
 * A well-formed record whose job_id is not its result's parses: that is a
 * record that does not hold (opg verify says so), not one it cannot read. */
opg_status opg_jobrecord_parse(const char *text, size_t len, opg_jobrecord **out);

/* Reads and parses the record file at path. */
opg_status opg_jobrecord_load(const char *path, opg_jobrecord **out);

/* Frees r; NULL is a no-op. */
void opg_jobrecord_free(opg_jobrecord *r);

#endif
