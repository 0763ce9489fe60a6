/* The thread pool. A decode step issues hundreds of small matmuls, so the
 * hand-off must be cheap: workers spin briefly on an atomic generation
 * counter before falling back to a condition variable, and the caller does
 * the same while waiting for the last worker. */
#include "kernels/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/* Polling steps (sched_yield calls, about a millisecond in all) before
 * sleeping: covers the gap between two matmuls of one layer without
 * burning a core while the model is idle. */
#define SPIN_LIMIT 2000

typedef struct worker {
    struct g4_pool *pool;
    pthread_t thread;
    int ith;
} worker;

struct g4_pool {
    int n; /* threads including the caller */
    worker *workers; /* n - 1 of them */

    /* The task of the current generation; written by the caller before it
     * publishes the new generation, read by workers after they see it. */
    g4_task_fn fn;
    void *arg;
    bool quit;

    atomic_uint generation; /* bumped once per g4_pool_run */
    atomic_int pending; /* workers still inside the current task */

    pthread_mutex_t lock; /* guards sleeping on the two conditions */
    pthread_cond_t wake; /* generation changed */
    pthread_cond_t done; /* pending reached 0 */
};

/* One polling step: hand the core to another runnable thread if there is
 * one (more threads than cores must not starve the thread being waited for). */
static inline void cpu_relax(void) { sched_yield(); }

/* Waits until the generation differs from seen and returns it. */
static unsigned wait_generation(g4_pool *p, unsigned seen) {
    unsigned g;
    for (int i = 0; i < SPIN_LIMIT; i++) {
        g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen)
        pthread_cond_wait(&p->wake, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    g4_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_generation(p, seen);
        if (p->quit) return NULL;
        p->fn(p->arg, w->ith, p->n);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

/* Publishes fn/arg/quit to the workers as a new generation. */
static void start_generation(g4_pool *p) {
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

g4_pool *g4_pool_create(int n_threads) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    g4_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 1; i < n_threads; i++) {
        worker *w = &p->workers[i - 1];
        w->pool = p;
        w->ith = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            p->n = i; /* run with the threads we got; free() joins them */
            break;
        }
    }
    return p;
}

void g4_pool_free(g4_pool *p) {
    if (!p) return;
    p->quit = true;
    start_generation(p);
    for (int i = 1; i < p->n; i++) pthread_join(p->workers[i - 1].thread, NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->workers);
    free(p);
}

int g4_pool_size(const g4_pool *p) { return p ? p->n : 1; }

void g4_pool_run(g4_pool *p, g4_task_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    start_generation(p);
    fn(arg, 0, p->n);
    for (int i = 0; i < SPIN_LIMIT; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
