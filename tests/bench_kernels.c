/* Kernel microbenchmark (not part of `make test`): for each SIMD weight type
 * and each ISA table this CPU runs, g4_matmul_isa over a weight matrix
 * larger than the caches: matvec (1 token) as GB/s of weights streamed,
 * matmul (64 tokens) as GFLOP/s, with 1 and 2 threads.
 * Usage: bench_kernels [n_in n_out] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best of a few runs of g4_matmul_isa, in seconds. */
static double best_time(const g4_kernels *k, const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool) {
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        const double t0 = now();
        g4_matmul_isa(k, w, x, n_tok, y, pool);
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    const int64_t n_in = argc > 2 ? atoll(argv[1]) : 2048, n_out = argc > 2 ? atoll(argv[2]) : 16384, n_tok = 64;
    static const enum g4_type types[] = {G4_TYPE_Q4_0, G4_TYPE_Q8_0, G4_TYPE_Q4_K, G4_TYPE_Q5_K, G4_TYPE_Q6_K};
    static const char *isas[] = {"scalar", "avx2", "avx512", "neon"};
    float *x = malloc(sizeof(float) * (size_t)(n_in * n_tok)), *y = malloc(sizeof(float) * (size_t)(n_out * n_tok));
    srand(1);
    for (int64_t i = 0; i < n_in * n_tok; i++) x[i] = (float)(rand() % 65536) / 65536.0f - 0.5f;
    g4_pool *pools[2] = {g4_pool_create(1), g4_pool_create(2)};
    printf("%-6s %-6s %3s %12s %14s\n", "type", "isa", "thr", "matvec GB/s", "matmul GFLOP/s");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const size_t rb = g4_row_size(types[ti], n_in);
        char *data = malloc(rb * (size_t)n_out);
        g4_quantize_row(types[ti], x, data, n_in); /* one real row, repeated */
        for (int64_t r = 1; r < n_out; r++) memcpy(data + (size_t)r * rb, data, rb);
        const g4_weight w = {types[ti], data, n_in, n_out, rb, 0};
        for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
            const g4_kernels *k = g4_kernels_by_name(isas[i]);
            if (!k) continue;
            for (int p = 0; p < 2; p++) {
                const double tv = best_time(k, &w, x, 1, y, pools[p]);
                const double tm = best_time(k, &w, x, n_tok, y, pools[p]);
                printf("%-6s %-6s %3d %12.2f %14.2f\n", g4_type_name(types[ti]), isas[i], p + 1,
                       (double)(rb * (size_t)n_out) / tv * 1e-9, 2.0 * (double)(n_in * n_out * n_tok) / tm * 1e-9);
            }
        }
        free(data);
    }
    for (int p = 0; p < 2; p++) g4_pool_free(pools[p]);
    free(x);
    free(y);
    return 0;
}
