/* The bandwidth probe. Each pass every thread folds its slice into xor
 * accumulators, one 64-byte cache line per step spread over four
 * independent 16-byte lanes, so the loads never wait on each other and the
 * hardware prefetchers see a plain forward stream. 16-byte vectors are the
 * widest every x86-64 and aarch64 CPU has without extra target flags; two
 * of them per cycle already exceed what one core gets from DRAM. */
#include "tools/bench/membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/threadpool.h"

typedef uint64_t lane __attribute__((vector_size(16)));

#define LINE 64 /* bytes per step: four lanes */

typedef struct probe {
    const unsigned char *buf;
    size_t lines;        /* whole buffer, in LINE units */
    volatile uint64_t sink; /* keeps the reads from being optimised away */
} probe;

static void read_slice(void *arg, int ith, int nth) {
    probe *p = arg;
    const size_t lo = p->lines * (size_t)ith / (size_t)nth, hi = p->lines * (size_t)(ith + 1) / (size_t)nth;
    lane a = {0}, b = {0}, c = {0}, d = {0};
    for (size_t i = lo; i < hi; i++) {
        const lane *q = (const lane *)(const void *)(p->buf + i * LINE);
        a ^= q[0];
        b ^= q[1];
        c ^= q[2];
        d ^= q[3];
    }
    lane x = a ^ b ^ c ^ d;
    p->sink ^= x[0] ^ x[1]; /* a benign race: only the last writer's value survives, and none is read */
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double g4_membw_read_gbps(int n_threads, size_t bytes, int passes) {
    probe p = {.lines = bytes / LINE};
    void *buf = NULL;
    if (p.lines == 0 || posix_memalign(&buf, 4096, p.lines * LINE)) return -1;
    /* Written, not just allocated: untouched pages all map the one zero
     * page, which would be read from cache. */
    memset(buf, 0x5a, p.lines * LINE);
    p.buf = buf;
    g4_pool *pool = g4_pool_create(n_threads);
    if (!pool) return free(buf), -1;
    g4_pool_run(pool, read_slice, &p); /* wakes the workers and warms the TLB */
    double best = 0;
    for (int k = 0; k < passes; k++) {
        const double t0 = now_s();
        g4_pool_run(pool, read_slice, &p);
        const double dt = now_s() - t0;
        if (best == 0 || dt < best) best = dt;
    }
    g4_pool_free(pool);
    free(buf);
    return (double)(p.lines * LINE) / best / 1e9;
}
