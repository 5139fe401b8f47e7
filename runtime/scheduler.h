/* scheduler.h: the continuous-batching scheduler, one forward step at a time.
 *
 * Sequences join and leave between steps: a worker adds jobs as they arrive,
 * runs opg_sched_step in its event loop and gets each token and each finished
 * result through callbacks. Each step feeds every active sequence: a prompt
 * chunk (all prompts together take at most step_tokens rows per step) or its
 * last sampled token. A sequence's tokens and trace depend only on its own
 * request: never on what else is in the batch, when it joined, the chunking
 * or the thread count (the kernels are batch invariant; docs/determinism.md).
 * opg_generate (generate.h) is this scheduler run to completion. */
#ifndef OPG_SCHEDULER_H
#define OPG_SCHEDULER_H

#include <stdint.h>

#include "generate.h"

typedef struct opg_sched opg_sched;

typedef struct {
    int64_t n_ctx;        /* cache positions per sequence at most; 0: the model's training context */
    int64_t step_tokens;  /* prompt rows per step (prefill chunking); 0: 256 */
    void (*poll)(void *ctx); /* called after each layer of a step's forward pass (opg_model_forward_poll); may be NULL */
    void *poll_ctx;
} opg_sched_options;

typedef struct {
    /* A new token of the sequence tagged `tag`; index is its position in the
     * output. Return non-zero to stop the sequence after it (stop reason
     * OPG_STOP_NONE unless the token ended it anyway). May be NULL. */
    int (*on_token)(void *ctx, uint64_t tag, int64_t index, int32_t token);
    /* The sequence finished. r is the callee's: it must opg_gen_result_clear
     * it (or take its pointers). Called once per sequence, in the step that
     * finished it, or by opg_sched_cancel. Required. */
    void (*on_done)(void *ctx, uint64_t tag, opg_gen_result *r);
    void *ctx;
} opg_sched_events;

typedef struct {
    int64_t prefill_tokens, decode_tokens;
    double prefill_seconds, decode_seconds;
} opg_sched_stats;

/* Borrows m (it must outlive the scheduler). Caller owns *out. */
opg_status opg_sched_new(opg_model *m, const opg_sched_options *opt, const opg_sched_events *ev, opg_sched **out);
/* Frees every sequence still in it without calling on_done. NULL is a no-op. */
void opg_sched_free(opg_sched *s);

/* Adds a request (copied: the caller's arrays may go away). tag is the
 * caller's name for it (a job id), passed back to the callbacks; tags need
 * not be unique but opg_sched_cancel stops every sequence with that tag.
 * OPG_ERR_ARG for an empty prompt or negative max_tokens, OPG_ERR_LIMIT when
 * the prompt does not fit the context; nothing is added on error. A request
 * with max_tokens 0 finishes in the next step with no tokens. */
opg_status opg_sched_add(opg_sched *s, const opg_gen_request *req, uint64_t tag);

/* Ends every sequence tagged tag now: on_done gets what it produced so far
 * with stop reason OPG_STOP_NONE. Returns how many were ended. Not to be
 * called from inside a callback. */
int opg_sched_cancel(opg_sched *s, uint64_t tag);

/* Sequences not finished. */
int opg_sched_active(const opg_sched *s);

/* Runs one forward pass over every active sequence and delivers its tokens
 * and finished results. A no-op when none is active. A sequence whose
 * logits are all NaN ends alone (OPG_STOP_NAN). On error (out of memory, a
 * backend failure) the sequences that finished in the step before it are
 * still delivered (on_done); the others may have got this step's token or
 * not, and their caches may have advanced: the caller ends them with
 * opg_sched_cancel or opg_sched_free; the scheduler itself stays usable. */
opg_status opg_sched_step(opg_sched *s);

const opg_sched_stats *opg_sched_stats_get(const opg_sched *s);

/* Cache positions a sequence gets at most (opg_sched_options.n_ctx, or the
 * model's training context): a prompt must be shorter, and a sequence stops
 * with OPG_STOP_CONTEXT when prompt + output tokens reach it + 1. */
int64_t opg_sched_n_ctx(const opg_sched *s);

#endif
