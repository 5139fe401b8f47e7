/* pool.h: a fixed-size CPU thread pool running indexed tasks.
 *
 * Why the bits never depend on the thread count: a kernel cuts its output into
 * tasks, and every output element is computed entirely inside one task, by the
 * canonical operation sequence. Which thread runs a task changes nothing. */
#ifndef OPG_POOL_H
#define OPG_POOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct opg_pool opg_pool;
typedef void (*opg_task_fn)(void *ctx, int64_t task);

/* A pool of n_threads workers (the calling thread counts as one of them);
 * n_threads <= 0 means one per online CPU. NULL when threads cannot be
 * created. Caller owns the pool and frees it with opg_pool_free. */
opg_pool *opg_pool_new(int n_threads);
/* Stops and joins the workers; NULL is a no-op. */
void opg_pool_free(opg_pool *pool);
/* Threads of the pool; 1 for NULL. */
int opg_pool_threads(const opg_pool *pool);
/* Runs fn(ctx, t) for t in [0, n_tasks) and returns when all are done.
 * pool == NULL runs them on the calling thread. Not reentrant: one run at a
 * time per pool. */
void opg_pool_run(opg_pool *pool, opg_task_fn fn, void *ctx, int64_t n_tasks);

#ifdef __cplusplus
}
#endif

#endif
