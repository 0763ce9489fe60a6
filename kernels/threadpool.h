/* A persistent pthreads pool: the caller and n-1 workers run one task
 * function together, each with its own index, and the call returns when all
 * are done. */
#ifndef G4_THREADPOOL_H
#define G4_THREADPOOL_H

typedef struct g4_pool g4_pool;
typedef void (*g4_task_fn)(void *arg, int ith, int nth);

g4_pool *g4_pool_create(int n_threads); /* n_threads <= 0: number of cores */
void g4_pool_free(g4_pool *pool);
int g4_pool_size(const g4_pool *pool); /* 1 for NULL */
/* Runs fn(arg, ith, nth) for ith = 0..nth-1, ith 0 on the calling thread.
 * pool may be NULL: fn(arg, 0, 1). */
void g4_pool_run(g4_pool *pool, g4_task_fn fn, void *arg);

#endif
