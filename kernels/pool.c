/* pool.c: pthread pool with dynamic task claiming (see pool.h for why that is safe).
 *
 * Waiting: a decode step is a few hundred runs a few microseconds apart, and
 * waking a thread blocked on a condition variable costs about as much as a
 * small run (a futex round trip, more in a VM). So both sides spin first:
 * workers watch the run generation, the caller watches the count of workers
 * still busy, for up to SPIN_NS, and only then block on the condition
 * variables. The spin is bounded, so an idle pool sleeps. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fpenv.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#ifndef SPIN_NS /* tests/test_pool builds it with 0 too: every wait then blocks */
#define SPIN_NS 100000 /* 100 us: longer than the gaps inside a forward pass */
#endif

struct opg_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    _Atomic uint64_t generation; /* bumped (release) once a run is set up */
    _Atomic int stop;
    _Atomic int active;          /* workers still inside the current run */
    opg_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    _Atomic int64_t next;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until done(p, arg) or SPIN_NS have passed; returns done's last value.
 * After the first 64 pauses each round also yields the CPU, so a pool with
 * more threads than free CPUs does not starve the threads that have work. */
static int spin_until(int (*done)(opg_pool *, uint64_t), opg_pool *p, uint64_t arg) {
    uint64_t t0 = 0;
    for (unsigned i = 0;; i++) {
        if (done(p, arg)) return 1;
        if (i < 64) {
            CPU_RELAX();
            continue;
        }
        sched_yield();
        uint64_t t = now_ns();
        if (!t0) t0 = t;
        else if (t - t0 > SPIN_NS) return done(p, arg);
    }
}

static int new_run(opg_pool *p, uint64_t seen) {
    return atomic_load_explicit(&p->stop, memory_order_relaxed) ||
           atomic_load_explicit(&p->generation, memory_order_acquire) != seen;
}

static int all_done(opg_pool *p, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&p->active, memory_order_acquire) == 0;
}

static void run_tasks(opg_pool *p) {
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks) return;
        p->fn(p->ctx, t);
    }
}

static void *worker_main(void *arg) {
    opg_pool *p = arg;
    uint64_t seen = 0;
    opg_fpenv inherited; /* the creating thread's, maybe FTZ/DAZ: never restored */
    opg_fpenv_enter(&inherited);
    for (;;) {
        if (!spin_until(new_run, p, seen)) {
            pthread_mutex_lock(&p->mu);
            while (!new_run(p, seen)) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        run_tasks(p);
        /* the last one out wakes a caller that stopped spinning (under the
         * mutex, so the wake cannot fall between its check and its wait) */
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

opg_pool *opg_pool_new(int n_threads) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    opg_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->active, 0);
    atomic_init(&p->next, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) { opg_pool_free(p); return NULL; }
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
                p->n_threads = i + 1; /* join only the ones that started */
                opg_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void opg_pool_free(opg_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->threads && i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int opg_pool_threads(const opg_pool *p) { return p ? p->n_threads : 1; }

static void run_on_pool(opg_pool *p, opg_task_fn fn, void *ctx, int64_t n_tasks);

void opg_pool_run(opg_pool *p, opg_task_fn fn, void *ctx, int64_t n_tasks) {
    if (n_tasks <= 0) return;
    opg_fpenv caller; /* the tasks this thread runs too get the contract's */
    opg_fpenv_enter(&caller);
    if (!p || p->n_threads == 1 || n_tasks == 1)
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t);
    else
        run_on_pool(p, fn, ctx, n_tasks);
    opg_fpenv_leave(&caller);
}

static void run_on_pool(opg_pool *p, opg_task_fn fn, void *ctx, int64_t n_tasks) {
    /* every worker left the previous run (its caller waited for active == 0),
     * so the run's fields are free to set before the generation publishes them */
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu); /* a worker between its check and its wait holds it */
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p);
    if (!spin_until(all_done, p, 0)) {
        pthread_mutex_lock(&p->mu);
        while (!all_done(p, 0)) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
