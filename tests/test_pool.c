/* test_pool.c: the kernel thread pool (kernels/pool.c): every task of every
 * run runs exactly once and its writes are visible when opg_pool_run
 * returns, whether the workers are spinning (runs back to back), asleep
 * (runs further apart than the spin) or the caller has to sleep too (a task
 * longer than the spin); and a pool frees cleanly in either state. ctest
 * also runs it over kernels/pool.c built with SPIN_NS=0 (every wait blocks:
 * a lost wakeup hangs it) and under ThreadSanitizer (test_pool_nospin,
 * test_pool_tsan; both caught the mutations tried: an unlocked done signal,
 * relaxed atomics). */
#include "testutil.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "pool.h"

enum { MAX_TASKS = 257 };

typedef struct {
    _Atomic int hits[MAX_TASKS];
    int plain[MAX_TASKS]; /* non-atomic writes: visible after the run (acquire) */
    int64_t slow_task;    /* this task sleeps sleep_us first; -1 none */
    long sleep_us;
    int round;
} run_ctx;

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void task(void *arg, int64_t t) {
    run_ctx *c = arg;
    if (t == c->slow_task) sleep_us(c->sleep_us);
    atomic_fetch_add(&c->hits[t], 1);
    c->plain[t] = c->round;
}

/* One run of n tasks, checked. */
static void run_once(opg_pool *p, run_ctx *c, int64_t n, int round) {
    for (int64_t t = 0; t < MAX_TASKS; t++) atomic_store(&c->hits[t], 0);
    c->round = round;
    opg_pool_run(p, task, c, n);
    for (int64_t t = 0; t < MAX_TASKS; t++) {
        int want = t < n ? 1 : 0;
        if (atomic_load(&c->hits[t]) != want)
            fail_msg("round %d, %lld tasks: task %lld ran %d times", round, (long long)n,
                     (long long)t, atomic_load(&c->hits[t]));
        if (t < n && c->plain[t] != round)
            fail_msg("round %d: task %lld's write not visible", round, (long long)t);
    }
}

static void test_back_to_back(void **state) {
    (void)state;
    static run_ctx c;
    c.slow_task = -1;
    for (int threads = 1; threads <= 4; threads++) {
        opg_pool *p = opg_pool_new(threads);
        assert_non_null(p);
        assert_int_equal(opg_pool_threads(p), threads);
        for (int round = 1; round <= 20000; round++) run_once(p, &c, round % MAX_TASKS, round);
        opg_pool_free(p); /* workers still spinning */
    }
}

static void test_sleeping_workers(void **state) {
    (void)state;
    static run_ctx c;
    c.slow_task = -1;
    opg_pool *p = opg_pool_new(3);
    assert_non_null(p);
    /* gaps past the 100 us spin: the workers block and must be woken */
    for (int round = 1; round <= 40; round++) {
        run_once(p, &c, 1 + round % 50, round);
        sleep_us(round % 4 == 0 ? 2000 : 300);
    }
    opg_pool_free(p); /* workers asleep */
}

static void test_sleeping_caller(void **state) {
    (void)state;
    static run_ctx c;
    opg_pool *p = opg_pool_new(2);
    assert_non_null(p);
    /* one task outlasts the spin, whichever thread takes it: the other side
     * blocks and must be woken by the last one out */
    for (int round = 1; round <= 20; round++) {
        c.slow_task = round % 3;
        c.sleep_us = 400;
        run_once(p, &c, 3 + round % 5, round);
    }
    opg_pool_free(p);
    /* NULL pool and empty runs */
    c.slow_task = -1;
    run_once(NULL, &c, 5, 99);
    opg_pool_run(NULL, task, &c, 0);
    assert_int_equal(opg_pool_threads(NULL), 1);
    opg_pool_free(NULL);
}

#if defined(__x86_64__)
#include <pthread.h>
#include <xmmintrin.h>

/* Each task: the MXCSR control bits the contract fixes (FTZ, rounding, DAZ,
 * exception masks) as the task sees them, and which thread ran it; it waits so both threads take some. */
typedef struct {
    unsigned int csr[64];
    pthread_t who[64];
} fp_ctx;

static void fp_task(void *arg, int64_t t) {
    fp_ctx *c = arg;
    c->csr[t] = _mm_getcsr() & 0xFFC0u; /* the control bits: 0x1F80 under the contract */
    c->who[t] = pthread_self();
    sleep_us(200);
}

/* A pool created by a thread whose environment breaks the contract (FTZ,
 * DAZ, round toward zero: what a -ffast-math library sets; a trap unmasked) runs every task
 * under the contract's, on its workers (which inherited the creator's) and
 * on the caller, and gives the caller its own back. */
static void test_fp_environment(void **state) {
    (void)state;
    /* and the invalid-operation trap unmasked (bit 7 clear) */
    const unsigned int normal = _mm_getcsr(), bad = (normal | 0xE040u) & ~0x0080u;
    _mm_setcsr(bad);
    opg_pool *p = opg_pool_new(2);
    static fp_ctx c;
    int workers = 0;
    for (int round = 0; round < 20 && !workers; round++) {
        memset(&c, 0xff, sizeof c.csr);
        opg_pool_run(p, fp_task, &c, 64);
        for (int t = 0; t < 64; t++) workers += !pthread_equal(c.who[t], pthread_self());
        for (int t = 0; t < 64; t++)
            if (c.csr[t] != 0x1F80u) {
                _mm_setcsr(normal);
                fail_msg("task %d ran with MXCSR bits %#x (%s)", t, c.csr[t],
                         pthread_equal(c.who[t], pthread_self()) ? "the caller" : "a worker");
            }
    }
    opg_pool_run(NULL, fp_task, &c, 3);
    unsigned int after = _mm_getcsr();
    _mm_setcsr(normal);
    opg_pool_free(p);
    assert_true(workers > 0); /* the worker took tasks: its environment was tested */
    for (int t = 0; t < 3; t++) assert_int_equal(c.csr[t], 0x1F80u);
    assert_int_equal(after, bad);
}
#else
static void test_fp_environment(void **state) {
    (void)state;
    skip();
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_back_to_back),
        cmocka_unit_test(test_sleeping_workers),
        cmocka_unit_test(test_sleeping_caller),
        cmocka_unit_test(test_fp_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
