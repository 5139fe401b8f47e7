/* trace.h: the execution trace a worker commits to (docs/determinism.md, "Trace").
 *
 * Per generated token: an XXH3 fingerprint of the hidden state after every
 * layer and of the logits; the job's trace root is a BLAKE2b Merkle root over
 * per-token leaves. Validators recompute it by teacher-forced prefill. */
#ifndef OPG_TRACE_H
#define OPG_TRACE_H

#include <stdint.h>

#include "status.h"

#define OPG_TRACE_LEAF_FLOATS 1024 /* fingerprint leaf: 4096 bytes of f32 */

/* Fingerprint of n f32 values: XXH3-64 of each 1024-value leaf (the last may
 * be shorter), then XXH3-64 of the little-endian leaf hashes. */
uint64_t opg_trace_fingerprint(const float *x, int64_t n);

typedef struct opg_trace opg_trace;

typedef struct {
    int32_t token;        /* the output token these logits produced */
    int64_t pos;          /* position whose forward pass produced it */
    uint64_t logits_fp;
    const uint64_t *layer_fp; /* n_layers fingerprints, owned by the trace */
} opg_trace_entry;

/* A trace for a model of n_layers layers. Caller owns: opg_trace_free. */
opg_status opg_trace_new(int n_layers, opg_trace **out);
void opg_trace_free(opg_trace *t);
opg_status opg_trace_add(opg_trace *t, int32_t token, int64_t pos, const uint64_t *layer_fp,
                         uint64_t logits_fp);
int64_t opg_trace_count(const opg_trace *t);
int opg_trace_layers(const opg_trace *t);
/* Entry i (0 <= i < count); pointers valid until the next add or free. */
opg_trace_entry opg_trace_get(const opg_trace *t, int64_t i);
/* Merkle root over the entries (32 zero bytes for an empty trace). */
void opg_trace_root(const opg_trace *t, uint8_t root[32]);
/* Index of the first entry where a and b differ (token, position, a layer
 * fingerprint or the logits), or -1 when identical; *layer gets the first
 * differing layer (n_layers for the logits, -1 for token/position). */
int64_t opg_trace_first_diff(const opg_trace *a, const opg_trace *b, int *layer);

/* Lower-case hex of n bytes into out (2n+1 chars). */
void opg_hex(char *out, const uint8_t *bytes, int n);

#endif
