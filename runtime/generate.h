/* generate.h: text generation over a model: continuous batching of several
 * sequences, greedy or seeded sampling, stop tokens, max tokens, context
 * limit, and the per-token trace; plus teacher-forced replay, which
 * recomputes a finished job's trace in prefill passes (what validators run).
 *
 * A sequence's tokens and trace never depend on the other sequences in the
 * batch, on the prefill chunk size or on the thread count. */
#ifndef OPG_GENERATE_H
#define OPG_GENERATE_H

#include <stdint.h>

#include "model.h"
#include "sample.h"
#include "status.h"
#include "trace.h"

typedef enum {
    OPG_STOP_NONE = 0,
    OPG_STOP_EOG = 1,        /* a stop token was generated (it is part of the output) */
    OPG_STOP_MAX_TOKENS = 2,
    OPG_STOP_CONTEXT = 3,    /* the context filled up */
    OPG_STOP_NAN = 4,        /* the next logits were all NaN (the model overflowed): no token to
                                sample; the tokens before it are kept. Every backend stops there. */
} opg_stop_reason;

/* Called for every generated token, in order per sequence. Return non-zero
 * to stop that sequence (OPG_STOP_NONE is then its reason). */
typedef int (*opg_token_fn)(void *ctx, int seq, int32_t token);

typedef struct {
    const int32_t *prompt;     /* n_prompt >= 1 tokens */
    int64_t n_prompt;
    int64_t max_tokens;        /* >= 0 */
    opg_sample_params sampling;
    const int32_t *stop;       /* stop token ids (may be NULL) */
    int n_stop;
} opg_gen_request;

typedef struct {
    int32_t *tokens;           /* output tokens, owned: opg_gen_result_clear */
    int64_t n_tokens;
    opg_stop_reason stop;
    opg_trace *trace;          /* owned: opg_gen_result_clear */
} opg_gen_result;

typedef struct {
    int64_t n_ctx;             /* cache positions per sequence; 0: the model's training context */
    int64_t step_tokens;       /* tokens per forward step (prefill chunking); 0: 256 */
    opg_token_fn on_token;     /* may be NULL */
    void *ctx;
    /* filled in: */
    int64_t prefill_tokens, decode_tokens;
    double prefill_seconds, decode_seconds;
} opg_gen_options;

/* Generates for all requests together. results[i] receives request i's
 * output. OPG_ERR_LIMIT (nothing generated) when a prompt does not fit the
 * context. On any error every result is left cleared. */
opg_status opg_generate(opg_model *m, const opg_gen_request *reqs, int n_reqs,
                        opg_gen_result *results, opg_gen_options *opt);
void opg_gen_result_clear(opg_gen_result *r);

/* Teacher-forced re-execution: prefill over prompt + output (chunks of
 * step_tokens, 0: 256) computing the trace of every output token, and
 * re-sampling each step with `sampling`. *trace_out (caller owns) gets the
 * trace; *first_bad gets the first output index whose claimed token differs
 * from what the sampler picks, or -1. */
opg_status opg_replay(opg_model *m, const int32_t *prompt, int64_t n_prompt,
                      const int32_t *output, int64_t n_output,
                      const opg_sample_params *sampling, int64_t step_tokens,
                      opg_trace **trace_out, int64_t *first_bad);

#endif
