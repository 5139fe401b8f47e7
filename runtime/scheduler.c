/* scheduler.c: continuous batching one step at a time (scheduler.h). */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fpenv.h"

typedef struct {
    uint64_t tag;
    opg_gen_request req;   /* prompt and stop arrays owned */
    int64_t prompt_cap, stop_cap; /* their allocated lengths (kept when recycled) */
    opg_kv *kv;
    int64_t fed;           /* prompt tokens fed so far */
    int done;
    int32_t last;          /* last sampled token, fed next step */
    int64_t sampled;       /* the backend's pick of this step */
    int64_t cap;           /* capacity of res.tokens */
    opg_gen_result res;
    uint64_t *layer_fp;
    uint64_t logits_fp;
} seq;

struct opg_sched {
    opg_model *m;
    opg_sched_events ev;
    int64_t n_ctx, step_tokens;
    void (*poll)(void *ctx);   /* opg_sched_options.poll */
    void *poll_ctx;
    seq **seqs;            /* active sequences, in the order they were added */
    int n, cap;
    opg_batch_seq *batch;  /* cap entries */
    int *idx;
    opg_sched_stats stats;
    /* Finished sequences kept for reuse (their KV cache, layer
     * fingerprints and prompt buffers): a worker runs thousands of short jobs
     * a second, and a fresh sequence costs ~15 allocations and a zeroed KV
     * cache. Bounded in count and in KV bytes. */
    seq **pool;
    int n_pool;
    size_t pool_kv_bytes;
};

enum { POOL_MAX = 64 };
#define POOL_KV_BYTES_MAX ((size_t)64 << 20)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void seq_free(seq *q) {
    if (!q) return;
    opg_kv_free(q->kv);
    free((void *)q->req.prompt);
    free((void *)q->req.stop);
    opg_gen_result_clear(&q->res);
    free(q->layer_fp);
    free(q);
}

opg_status opg_sched_new(opg_model *m, const opg_sched_options *opt, const opg_sched_events *ev, opg_sched **out) {
    *out = NULL;
    if (!m || !ev || !ev->on_done) return opg__fail(OPG_ERR_ARG, "sched: a model and an on_done callback are required");
    const opg_hparams *hp = opg_model_hparams(m);
    opg_sched *s = calloc(1, sizeof *s);
    if (!s) return opg__fail(OPG_ERR_NOMEM, "sched: out of memory");
    s->m = m;
    s->ev = *ev;
    s->n_ctx = opt && opt->n_ctx > 0 ? opt->n_ctx : hp->n_ctx_train;
    s->step_tokens = opt && opt->step_tokens > 0 ? opt->step_tokens : 256;
    s->poll = opt ? opt->poll : NULL;
    s->poll_ctx = opt ? opt->poll_ctx : NULL;
    s->pool = malloc(POOL_MAX * sizeof *s->pool);
    if (!s->pool) {
        free(s);
        return opg__fail(OPG_ERR_NOMEM, "sched: out of memory");
    }
    *out = s;
    return OPG_OK;
}

/* Bytes of a KV cache of n_ctx positions (keys and values). */
static size_t kv_bytes(const opg_hparams *hp, int64_t n_ctx) {
    return 2 * (size_t)hp->n_layer * (size_t)n_ctx * (size_t)hp->n_head_kv * (size_t)hp->head_dim * sizeof(float);
}

/* A finished sequence (its result already handed over) back to the pool, or
 * freed when the pool is full. */
static void seq_recycle(opg_sched *s, seq *q) {
    size_t kb = kv_bytes(opg_model_hparams(s->m), opg_kv_capacity(q->kv));
    if (s->n_pool >= POOL_MAX || s->pool_kv_bytes + kb > POOL_KV_BYTES_MAX) {
        seq_free(q);
        return;
    }
    opg_gen_result_clear(&q->res);
    s->pool_kv_bytes += kb;
    s->pool[s->n_pool++] = q;
}

/* A pooled sequence whose KV cache holds exactly n_ctx positions (the
 * capacity decides when a sequence stops with OPG_STOP_CONTEXT, so it must be
 * the same as a fresh one's), emptied; NULL when none. */
static seq *seq_reuse(opg_sched *s, int64_t n_ctx) {
    for (int i = s->n_pool - 1; i >= 0; i--) {
        seq *q = s->pool[i];
        if (opg_kv_capacity(q->kv) != n_ctx) continue;
        s->pool[i] = s->pool[--s->n_pool];
        s->pool_kv_bytes -= kv_bytes(opg_model_hparams(s->m), n_ctx);
        opg_kv_truncate(q->kv, 0); /* positions past len are never read */
        return q;
    }
    return NULL;
}

void opg_sched_free(opg_sched *s) {
    if (!s) return;
    for (int i = 0; i < s->n_pool; i++) seq_free(s->pool[i]);
    free(s->pool);
    for (int i = 0; i < s->n; i++) seq_free(s->seqs[i]);
    free(s->seqs);
    free(s->batch);
    free(s->idx);
    free(s);
}

int opg_sched_active(const opg_sched *s) {
    int a = 0;
    for (int i = 0; i < s->n; i++) a += !s->seqs[i]->done;
    return a;
}

const opg_sched_stats *opg_sched_stats_get(const opg_sched *s) { return &s->stats; }

int64_t opg_sched_n_ctx(const opg_sched *s) { return s->n_ctx; }

opg_status opg_sched_add(opg_sched *s, const opg_gen_request *req, uint64_t tag) {
    const opg_hparams *hp = opg_model_hparams(s->m);
    if (!req || req->n_prompt < 1 || !req->prompt || req->max_tokens < 0 || req->n_stop < 0)
        return opg__fail(OPG_ERR_ARG, "sched: a request needs a prompt and max_tokens >= 0");
    if (req->n_prompt >= s->n_ctx)
        return opg__fail(OPG_ERR_LIMIT, "prompt too long: %lld tokens, the context holds %lld",
                         (long long)req->n_prompt, (long long)s->n_ctx);
    for (int64_t i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= hp->n_vocab)
            return opg__fail(OPG_ERR_ARG, "prompt token %lld: token id %d outside the vocabulary [0, %lld)",
                             (long long)i, req->prompt[i], (long long)hp->n_vocab);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        seq **sq = realloc(s->seqs, (size_t)cap * sizeof *sq);
        if (sq) s->seqs = sq;
        opg_batch_seq *b = realloc(s->batch, (size_t)cap * sizeof *b);
        if (b) s->batch = b;
        int *ix = realloc(s->idx, (size_t)cap * sizeof *ix);
        if (ix) s->idx = ix;
        if (!sq || !b || !ix) return opg__fail(OPG_ERR_NOMEM, "sched: out of memory");
        s->cap = cap;
    }
    int64_t need = req->n_prompt + req->max_tokens;
    if (need > s->n_ctx) need = s->n_ctx;
    opg_status st = OPG_OK;
    seq *q = seq_reuse(s, need);
    if (q) {
        /* everything but the buffers back to what calloc gave */
        seq keep = *q;
        memset(q, 0, sizeof *q);
        q->kv = keep.kv;
        q->layer_fp = keep.layer_fp;
        q->req.prompt = keep.req.prompt;
        q->req.stop = keep.req.stop;
        q->prompt_cap = keep.prompt_cap;
        q->stop_cap = keep.stop_cap;
    } else {
        q = calloc(1, sizeof *q);
        if (!q) return opg__fail(OPG_ERR_NOMEM, "sched: out of memory");
        q->layer_fp = malloc((size_t)hp->n_layer * sizeof(uint64_t));
        if (!q->layer_fp) {
            st = opg__fail(OPG_ERR_NOMEM, "sched: out of memory");
            goto fail;
        }
        if ((st = opg_kv_new(s->m, need, &q->kv))) goto fail;
    }
    q->tag = tag;
    int32_t *prompt = (int32_t *)q->req.prompt, *stop = (int32_t *)q->req.stop;
    q->req = *req;
    q->req.prompt = prompt;
    q->req.stop = stop;
    if (req->n_prompt > q->prompt_cap) {
        free(prompt);
        q->req.prompt = prompt = malloc((size_t)req->n_prompt * sizeof *prompt);
        q->prompt_cap = prompt ? req->n_prompt : 0;
    }
    if (req->n_stop > q->stop_cap) {
        free(stop);
        q->req.stop = stop = malloc((size_t)req->n_stop * sizeof *stop);
        q->stop_cap = stop ? req->n_stop : 0;
    }
    if (!prompt || (req->n_stop && !stop)) {
        st = opg__fail(OPG_ERR_NOMEM, "sched: out of memory");
        goto fail;
    }
    memcpy(prompt, req->prompt, (size_t)req->n_prompt * sizeof *prompt);
    if (req->n_stop) memcpy(stop, req->stop, (size_t)req->n_stop * sizeof *stop);
    if ((st = opg_trace_new(hp->n_layer, &q->res.trace))) goto fail;
    s->seqs[s->n++] = q;
    return OPG_OK;
fail:
    seq_free(q);
    return st;
}

/* Hands finished sequences to on_done and drops them. */
static void reap(opg_sched *s) {
    int k = 0;
    for (int i = 0; i < s->n; i++) {
        seq *q = s->seqs[i];
        if (!q->done) {
            s->seqs[k++] = q;
            continue;
        }
        opg_gen_result r = q->res;
        memset(&q->res, 0, sizeof q->res);
        s->ev.on_done(s->ev.ctx, q->tag, &r);
        seq_recycle(s, q);
    }
    s->n = k;
}

int opg_sched_cancel(opg_sched *s, uint64_t tag) {
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->seqs[i]->tag == tag && !s->seqs[i]->done) {
            s->seqs[i]->done = 1;
            s->seqs[i]->res.stop = OPG_STOP_NONE;
            n++;
        }
    reap(s);
    return n;
}

static int is_stop(const opg_gen_request *q, int32_t t) {
    for (int i = 0; i < q->n_stop; i++)
        if (q->stop[i] == t) return 1;
    return 0;
}

static opg_status push_token(seq *q, int32_t t) {
    opg_gen_result *r = &q->res;
    if (r->n_tokens == q->cap) {
        int64_t cap = q->cap ? 2 * q->cap : 64;
        int32_t *p = realloc(r->tokens, (size_t)cap * sizeof *p);
        if (!p) return opg__fail(OPG_ERR_NOMEM, "sched: out of memory");
        r->tokens = p;
        q->cap = cap;
    }
    r->tokens[r->n_tokens++] = t;
    return OPG_OK;
}

static opg_status sched_step(opg_sched *s) {
    /* max_tokens 0: finished before any forward */
    for (int i = 0; i < s->n; i++)
        if (!s->seqs[i]->done && s->seqs[i]->req.max_tokens == 0) {
            s->seqs[i]->done = 1;
            s->seqs[i]->res.stop = OPG_STOP_MAX_TOKENS;
        }
    int nb = 0;
    int64_t budget = s->step_tokens, prompt_rows = 0;
    for (int i = 0; i < s->n; i++) {
        seq *q = s->seqs[i];
        if (q->done) continue;
        opg_batch_seq *b = &s->batch[nb];
        memset(b, 0, sizeof *b);
        b->kv = q->kv;
        if (q->fed < q->req.n_prompt) {
            if (budget <= 0) continue; /* its prompt continues next step */
            int64_t c = q->req.n_prompt - q->fed;
            if (c > budget) c = budget;
            budget -= c;
            prompt_rows += c;
            b->tokens = q->req.prompt + q->fed;
            b->n = c;
            b->out_from = q->fed + c == q->req.n_prompt ? c - 1 : c;
        } else {
            b->tokens = &q->last;
            b->n = 1;
            b->out_from = 0;
        }
        if (b->out_from < b->n) {
            /* sampled on the backend: the logits stay where they are */
            b->layer_fp = q->layer_fp;
            b->logits_fp = &q->logits_fp;
            b->sample = &q->req.sampling;
            b->sample_step = (uint64_t)q->res.n_tokens;
            b->token = &q->sampled;
        }
        s->idx[nb++] = i;
    }
    if (nb == 0) {
        reap(s);
        return OPG_OK;
    }
    double t0 = now_s();
    opg_status st = opg_model_forward_poll(s->m, s->batch, nb, s->poll, s->poll_ctx);
    if (st) return st;
    double dt = now_s() - t0;
    int64_t rows = 0;
    for (int j = 0; j < nb; j++) rows += s->batch[j].n;
    if (prompt_rows > 0) {
        s->stats.prefill_seconds += dt;
        s->stats.prefill_tokens += prompt_rows;
    } else {
        s->stats.decode_seconds += dt;
        s->stats.decode_tokens += rows;
    }
    /* A sequence whose logits are all NaN has no token to sample: it alone
     * ends (OPG_STOP_NAN; whether a value is NaN is the same on every
     * backend, so every worker ends it there), the others go on. */
    for (int j = 0; j < nb; j++) {
        seq *q = s->seqs[s->idx[j]];
        const opg_batch_seq *b = &s->batch[j];
        if (b->tokens != &q->last) q->fed += b->n;
        if (b->out_from >= b->n) continue;
        if (q->sampled < 0) {
            q->done = 1;
            q->res.stop = OPG_STOP_NAN;
            continue;
        }
        q->last = (int32_t)q->sampled;
    }
    for (int j = 0; j < nb; j++) {
        seq *q = s->seqs[s->idx[j]];
        const opg_batch_seq *b = &s->batch[j];
        if (b->out_from >= b->n || q->res.stop == OPG_STOP_NAN) continue;
        int32_t t = q->last;
        int64_t pos = opg_kv_len(q->kv) - 1;
        if ((st = push_token(q, t))) return st;
        if ((st = opg_trace_add(q->res.trace, t, pos, q->layer_fp, q->logits_fp))) return st;
        int stop_cb = s->ev.on_token ? s->ev.on_token(s->ev.ctx, q->tag, q->res.n_tokens - 1, t) : 0;
        if (is_stop(&q->req, t)) { q->done = 1; q->res.stop = OPG_STOP_EOG; }
        else if (q->res.n_tokens >= q->req.max_tokens) { q->done = 1; q->res.stop = OPG_STOP_MAX_TOKENS; }
        else if (opg_kv_len(q->kv) >= opg_kv_capacity(q->kv)) { q->done = 1; q->res.stop = OPG_STOP_CONTEXT; }
        else if (stop_cb) { q->done = 1; q->res.stop = OPG_STOP_NONE; }
    }
    reap(s);
    return OPG_OK;
}

/* Under the contract's floating-point environment (fpenv.h): it samples. */
opg_status opg_sched_step(opg_sched *s) {
    opg_fpenv saved;
    opg_fpenv_enter(&saved);
    opg_status st = sched_step(s);
    opg_fpenv_leave(&saved);
    /* A step that failed after sequences finished in it (a stop token, a
     * NaN) still delivers them: left done but unreaped, a later cancel of
     * another sequence would reap them from inside the caller's walk over
     * its own jobs (the worker frees a job in on_done). */
    if (st) reap(s);
    return st;
}
