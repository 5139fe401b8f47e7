/* tokq.h: text prompts tokenized on a thread of their own.
 *
 * Encoding a text prompt takes up to about half a second per MiB (the
 * SentencePiece vocabularies; docs/benchmarks.md). On the worker's event
 * loop that would stall every running job's next step for as long, so a
 * Job with a text prompt goes here and joins the batch when its ids are
 * ready; the loop goes on stepping meanwhile.
 *
 * One thread encodes the requests one at a time, oldest first, with
 * opg_chat_encode_prompt. Results wait in a list until taken; a file
 * descriptor (opg_tokq_fd) turns readable when one is added, so an idle loop
 * can sleep in poll on it beside its socket.
 *
 * Thread safety: every function but the hook is called from one thread (the
 * worker's). The tokenizer and GGUF passed to submit are only read, on the
 * encoding thread, and must outlive the queue (or the request: drop it
 * first). The encoding thread starts with every signal blocked, so the
 * caller's signal handlers (SIGTERM: drain) run on the caller's threads. */
#ifndef OPG_TOKQ_H
#define OPG_TOKQ_H

#include <stdint.h>

#include "gguf.h"
#include "status.h"
#include "tokenizer.h"

typedef struct opg_tokq opg_tokq;

/* Called on the encoding thread just before a request is encoded, with its
 * tag (tests: holding a prompt back to see that the loop goes on). */
typedef void (*opg_tokq_hook)(void *ctx, uint64_t tag);

typedef struct {
    uint64_t seq;    /* the request's, from submit */
    uint64_t tag;    /* the caller's, from submit */
    opg_status st;   /* opg_chat_encode_prompt's */
    char error[512]; /* its message when st != OPG_OK */
    int32_t *ids;    /* the prompt (NULL on error); the caller frees it with free() */
    int64_t n;
} opg_tokq_result;

/* Starts the encoding thread. hook may be NULL. On error *out is NULL
 * (OPG_ERR_NOMEM, or OPG_ERR_IO when no thread or pipe can be made). */
opg_status opg_tokq_new(opg_tokq_hook hook, void *hook_ctx, opg_tokq **out);
/* Stops the thread (waiting for the prompt being encoded, if any) and frees
 * every request and result not taken. NULL is a no-op. */
void opg_tokq_free(opg_tokq *q);

/* Readable while results may wait (drained by opg_tokq_take). */
int opg_tokq_fd(const opg_tokq *q);

/* Queues text (copied; NUL-terminated) for opg_chat_encode_prompt(tok, g,
 * text, chat) and sets *seq, unique for this queue. OPG_ERR_NOMEM: nothing
 * was queued. */
opg_status opg_tokq_submit(opg_tokq *q, const opg_tokenizer *tok, const opg_gguf *g, const char *text, int chat,
                           uint64_t tag, uint64_t *seq);

/* Moves the oldest finished result into *r (the caller then owns r->ids)
 * and returns 1; 0 when none waits. */
int opg_tokq_take(opg_tokq *q, opg_tokq_result *r);

/* Forgets a request: not yet begun, it never will be; being encoded, its
 * result is thrown away; finished and not taken, its result is freed. After
 * it, take never returns that seq. An unknown seq is a no-op. */
void opg_tokq_drop(opg_tokq *q, uint64_t seq);

#endif
