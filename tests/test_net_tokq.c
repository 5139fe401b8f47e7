/* test_net_tokq.c: worker/tokq.h, the worker's tokenizing thread, alone:
 *  - results come back in submission order with the ids opg_chat_encode_prompt
 *    gives on this thread, errors with the tokenizer's message, and the fd
 *    wakes a poll while results wait;
 *  - drop: a request not yet begun is never encoded, one being encoded and
 *    one finished but not taken never come back; an unknown seq is nothing;
 *  - the fd is readable exactly while a result waits (a stale wake-up would
 *    make an idle worker's poll return at once, forever);
 *  - free with requests queued, being encoded and finished loses nothing
 *    (the ASan build checks leaks; test_net_tokq_tsan runs it all under
 *    ThreadSanitizer). */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "tokenizer.h"
#include "tokq.h"

static tu_gguf g_file; /* the gguf reads it in place */
static opg_gguf *g_gguf;
static opg_tokenizer *g_tok;

/* A byte-level BPE vocabulary: a, b, c, ab (merge "a b"). */
static int setup(void **state) {
    (void)state;
    tu_gguf *b = &g_file;
    tu_gguf_begin(b);
    static const char *const toks[] = {"a", "b", "c", "ab"};
    static const char *const merges[] = {"a b"};
    const int32_t types[] = {1, 1, 1, 1};
    tu_gguf_kv_str(b, "tokenizer.ggml.model", "gpt2");
    tu_gguf_kv_str(b, "tokenizer.ggml.pre", "gpt-2");
    tu_gguf_kv_strs(b, "tokenizer.ggml.tokens", toks, 4);
    tu_gguf_kv_i32s(b, "tokenizer.ggml.token_type", OPG_GGUF_INT32, types, 4);
    tu_gguf_kv_strs(b, "tokenizer.ggml.merges", merges, 1);
    tu_gguf_end(b);
    if (opg_gguf_open_memory(b->p, b->n, &g_gguf) || opg_tokenizer_from_gguf(g_gguf, &g_tok)) {
        print_error("vocabulary: %s\n", opg_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    opg_tokenizer_free(g_tok);
    opg_gguf_close(g_gguf);
    free(g_file.p);
    return 0;
}

/* Takes the next result, waiting on the fd (10 s at most). */
static opg_tokq_result take(opg_tokq *q) {
    opg_tokq_result r;
    for (int i = 0; i < 1000; i++) {
        if (opg_tokq_take(q, &r)) return r;
        struct pollfd p = {opg_tokq_fd(q), POLLIN, 0};
        poll(&p, 1, 10);
    }
    fail_msg("no result in 10 s");
    return r;
}

/* Whether the fd wakes a poll now. */
static int readable(opg_tokq *q) {
    struct pollfd p = {opg_tokq_fd(q), POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

static char *random_text(unsigned *seed, int max_len) {
    int n = (int)(rand_r(seed) % (unsigned)max_len) + 1;
    char *t = malloc((size_t)n + 1);
    assert_non_null(t);
    for (int i = 0; i < n; i++) t[i] = "abc"[rand_r(seed) % 3];
    t[n] = 0;
    return t;
}

static void test_order_and_results(void **state) {
    (void)state;
    opg_tokq *q = NULL;
    assert_int_equal(opg_tokq_new(NULL, NULL, &q), OPG_OK);
    enum { N = 64 };
    char *texts[N];
    uint64_t seqs[N];
    unsigned seed = 7;
    for (int i = 0; i < N; i++) {
        texts[i] = i == 10 ? strdup("abd") : random_text(&seed, i % 8 == 0 ? 20000 : 40);
        assert_non_null(texts[i]);
        assert_int_equal(opg_tokq_submit(q, g_tok, g_gguf, texts[i], 0, 1000 + (uint64_t)i, &seqs[i]), OPG_OK);
        if (i) assert_true(seqs[i] > seqs[i - 1]);
    }
    for (int i = 0; i < N; i++) {
        opg_tokq_result r = take(q);
        assert_int_equal(r.seq, seqs[i]);
        assert_int_equal(r.tag, 1000 + (uint64_t)i);
        int32_t *ids = NULL;
        int64_t n = 0;
        opg_status st = opg_chat_encode_prompt(g_tok, g_gguf, texts[i], 0, &ids, &n);
        assert_int_equal(r.st, st);
        if (st) { /* "abd": no token for d */
            assert_int_equal(i, 10);
            assert_null(r.ids);
            assert_string_equal(r.error, opg_last_error());
        } else {
            assert_int_equal(r.n, n);
            assert_memory_equal(r.ids, ids, (size_t)n * sizeof *ids);
        }
        free(ids);
        free(r.ids);
        free(texts[i]);
    }
    opg_tokq_result r;
    assert_int_equal(opg_tokq_take(q, &r), 0);
    assert_false(readable(q)); /* else an idle loop polling it would spin */
    opg_tokq_free(q);
}

/* Holds the encoding thread in the hook at each tag >= hold_from while
 * closed. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int closed, entered;
    uint64_t hold_from;
    uint64_t tags[8];
} gate;

static void gate_hook(void *ctx, uint64_t tag) {
    gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    if (g->entered < 8) g->tags[g->entered] = tag;
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (g->closed && tag >= g->hold_from) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_set(gate *g, int closed, uint64_t hold_from) {
    pthread_mutex_lock(&g->mu);
    g->closed = closed;
    g->hold_from = hold_from;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait(gate *g, int n) {
    pthread_mutex_lock(&g->mu);
    while (g->entered < n) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void test_drop(void **state) {
    (void)state;
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, 0, 0, {0}};
    opg_tokq *q = NULL;
    assert_int_equal(opg_tokq_new(gate_hook, &g, &q), OPG_OK);
    uint64_t s[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(opg_tokq_submit(q, g_tok, g_gguf, "abcab", 0, (uint64_t)i, &s[i]), OPG_OK);
    gate_wait(&g, 1);       /* 0 is being encoded (held), 1 to 4 wait */
    opg_tokq_drop(q, s[1]); /* not begun */
    opg_tokq_drop(q, s[0]); /* being encoded */
    opg_tokq_drop(q, 999);  /* unknown */
    gate_set(&g, 1, 4);     /* 0, 2, 3 go; 4 is held: 2 and 3 are then finished */
    gate_wait(&g, 4);
    opg_tokq_drop(q, s[3]); /* finished, not taken */
    assert_true(readable(q)); /* 2 waits */
    gate_set(&g, 0, 0);
    opg_tokq_result r = take(q);
    assert_int_equal(r.tag, 2);
    assert_int_equal(r.seq, s[2]);
    assert_int_equal(r.st, OPG_OK);
    free(r.ids);
    r = take(q);
    assert_int_equal(r.tag, 4);
    free(r.ids);
    assert_int_equal(g.entered, 4); /* 1 never began */
    assert_int_equal(g.tags[0], 0);
    assert_int_equal(g.tags[1], 2);
    assert_int_equal(g.tags[2], 3);
    assert_int_equal(g.tags[3], 4);
    assert_int_equal(opg_tokq_take(q, &r), 0);
    assert_false(readable(q));
    /* the only result finished, then dropped before it is taken: the fd
       must go quiet too */
    uint64_t s5;
    gate_set(&g, 1, 6);
    assert_int_equal(opg_tokq_submit(q, g_tok, g_gguf, "cab", 0, 5, &s5), OPG_OK);
    assert_int_equal(opg_tokq_submit(q, g_tok, g_gguf, "cab", 0, 6, &s[0]), OPG_OK);
    gate_wait(&g, 6); /* 6 held: 5 finished */
    assert_true(readable(q));
    opg_tokq_drop(q, s5);
    assert_false(readable(q));
    gate_set(&g, 0, 0);
    r = take(q);
    assert_int_equal(r.tag, 6);
    free(r.ids);
    assert_false(readable(q));
    opg_tokq_free(q);
}

/* Results taken while the thread adds more (as a stepping worker takes
 * them): once all are taken the fd is quiet, every time. */
static void test_fd_quiet_when_empty(void **state) {
    (void)state;
    opg_tokq *q = NULL;
    assert_int_equal(opg_tokq_new(NULL, NULL, &q), OPG_OK);
    int stale = 0;
    for (int round = 0; round < 2000; round++) {
        uint64_t s;
        assert_int_equal(opg_tokq_submit(q, g_tok, g_gguf, "abcabc", 0, (uint64_t)round, &s), OPG_OK);
        opg_tokq_result r;
        while (!opg_tokq_take(q, &r)) {
        }
        free(r.ids);
        stale += readable(q);
    }
    assert_int_equal(stale, 0);
    opg_tokq_free(q);
}

static void test_free_pending(void **state) {
    (void)state;
    opg_tokq *q = NULL;
    assert_int_equal(opg_tokq_new(NULL, NULL, &q), OPG_OK);
    unsigned seed = 11;
    for (int i = 0; i < 32; i++) {
        char *t = random_text(&seed, 5000);
        uint64_t s;
        assert_int_equal(opg_tokq_submit(q, g_tok, g_gguf, t, 0, (uint64_t)i, &s), OPG_OK);
        free(t); /* submit copied it */
    }
    opg_tokq_result r = take(q); /* some finished, one maybe under way, most queued */
    free(r.ids);
    opg_tokq_free(q);
    opg_tokq_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_results),
        cmocka_unit_test(test_drop),
        cmocka_unit_test(test_fd_quiet_when_empty),
        cmocka_unit_test(test_free_pending),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
