/* tokq.c: text prompts tokenized on a thread of their own (tokq.h). */
#include "tokq.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utlist.h>

#include "chat.h"

typedef struct req {
    uint64_t seq, tag;
    const opg_tokenizer *tok;
    const opg_gguf *g;
    char *text;
    int chat;
    opg_tokq_result res;
    struct req *prev, *next; /* utlist */
} req;

struct opg_tokq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    req *todo, *done;        /* oldest first */
    req *busy;               /* being encoded, or NULL */
    int busy_dropped;        /* drop came while busy: its result is thrown away */
    atomic_int n_done;       /* length of done: take's lock-free look */
    int quit;
    uint64_t next_seq;
    int wake[2];             /* a byte per result; [0] is opg_tokq_fd */
    opg_tokq_hook hook;
    void *hook_ctx;
};

static void req_free(req *r) {
    if (!r) return;
    free(r->text);
    free(r->res.ids);
    free(r);
}

/* Under mu (the encoding thread writes under it too): readable iff done is not empty. */
static void drain_wake(opg_tokq *q) {
    char buf[64];
    while (read(q->wake[0], buf, sizeof buf) > 0) {
    }
}

static void *encode_main(void *arg) {
    opg_tokq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->quit && !q->todo) pthread_cond_wait(&q->cv, &q->mu);
        if (q->quit) break;
        req *r = q->todo;
        DL_DELETE(q->todo, r);
        q->busy = r;
        q->busy_dropped = 0;
        pthread_mutex_unlock(&q->mu);

        if (q->hook) q->hook(q->hook_ctx, r->tag);
        r->res.st = opg_chat_encode_prompt(r->tok, r->g, r->text, r->chat, &r->res.ids, &r->res.n);
        if (r->res.st) snprintf(r->res.error, sizeof r->res.error, "%s", opg_last_error());
        free(r->text);
        r->text = NULL;

        pthread_mutex_lock(&q->mu);
        q->busy = NULL;
        if (q->busy_dropped) {
            req_free(r);
            continue;
        }
        DL_APPEND(q->done, r);
        atomic_fetch_add(&q->n_done, 1);
        /* full pipe: it is readable already, which is all the byte is for */
        ssize_t k = write(q->wake[1], "", 1);
        (void)k;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

opg_status opg_tokq_new(opg_tokq_hook hook, void *hook_ctx, opg_tokq **out) {
    *out = NULL;
    opg_tokq *q = calloc(1, sizeof *q);
    if (!q) return opg__fail(OPG_ERR_NOMEM, "tokenizing queue: out of memory");
    q->hook = hook;
    q->hook_ctx = hook_ctx;
    q->next_seq = 1;
    atomic_init(&q->n_done, 0);
    if (pipe2(q->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        opg_status st = opg__fail(OPG_ERR_IO, "tokenizing queue: pipe: %s", strerror(errno));
        free(q);
        return st;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits it */
    int e = pthread_create(&q->thread, NULL, encode_main, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        close(q->wake[0]);
        close(q->wake[1]);
        free(q);
        return opg__fail(OPG_ERR_IO, "tokenizing queue: cannot start its thread: %s", strerror(e));
    }
    *out = q;
    return OPG_OK;
}

void opg_tokq_free(opg_tokq *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->quit = 1;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    req *r, *t;
    DL_FOREACH_SAFE(q->todo, r, t) req_free(r);
    DL_FOREACH_SAFE(q->done, r, t) req_free(r);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    close(q->wake[0]);
    close(q->wake[1]);
    free(q);
}

int opg_tokq_fd(const opg_tokq *q) { return q->wake[0]; }

opg_status opg_tokq_submit(opg_tokq *q, const opg_tokenizer *tok, const opg_gguf *g, const char *text, int chat,
                           uint64_t tag, uint64_t *seq) {
    req *r = calloc(1, sizeof *r);
    if (r) r->text = strdup(text);
    if (!r || !r->text) {
        free(r);
        return opg__fail(OPG_ERR_NOMEM, "out of memory queueing a prompt to tokenize");
    }
    r->tok = tok;
    r->g = g;
    r->chat = chat;
    r->tag = tag;
    r->res.tag = tag;
    pthread_mutex_lock(&q->mu);
    r->seq = r->res.seq = q->next_seq++;
    DL_APPEND(q->todo, r);
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    *seq = r->seq;
    return OPG_OK;
}

int opg_tokq_take(opg_tokq *q, opg_tokq_result *out) {
    if (atomic_load(&q->n_done) == 0) return 0; /* the worker's hot loop asks every step */
    pthread_mutex_lock(&q->mu);
    req *r = q->done;
    if (r) {
        DL_DELETE(q->done, r);
        atomic_fetch_sub(&q->n_done, 1);
    }
    if (!q->done) drain_wake(q);
    pthread_mutex_unlock(&q->mu);
    if (!r) return 0;
    *out = r->res;
    r->res.ids = NULL;
    req_free(r);
    return 1;
}

void opg_tokq_drop(opg_tokq *q, uint64_t seq) {
    req *r, *found = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->busy && q->busy->seq == seq) {
        q->busy_dropped = 1;
    } else {
        DL_FOREACH(q->todo, r) if (r->seq == seq) found = r;
        if (found) {
            DL_DELETE(q->todo, found);
        } else {
            DL_FOREACH(q->done, r) if (r->seq == seq) found = r;
            if (found) {
                DL_DELETE(q->done, found);
                atomic_fetch_sub(&q->n_done, 1);
                if (!q->done) drain_wake(q);
            }
        }
    }
    pthread_mutex_unlock(&q->mu);
    req_free(found);
}
