/* The arithmetic and printing behind `gemma4 bench`, apart from its timing
 * loop so that tests can check them: what one token costs in weight bytes
 * and multiply-adds, the machine's compute peak, mean and deviation of the
 * repetitions, and the markdown and JSON forms of the results. */
#ifndef G4_BENCH_REPORT_H
#define G4_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "gguf/gguf.h"

typedef struct bench_weights {
    uint64_t bytes;      /* all tensor data: the size column */
    uint64_t n_params;   /* all tensor elements */
    uint32_t main_type;  /* the g4_type holding the most bytes */
    /* Bytes one decoded token streams: everything but the per-layer token
     * embeddings (a few rows gathered, not streamed), and only the used
     * share of the expert tensors. llamacpp-bench's GB/s uses the same rule. */
    double tg_bytes;
    /* Multiply-adds per prompt token: the same share of experts, without the
     * two embedding tables (gathered); the output head (token_embd when tied,
     * else output.weight) runs on the last prompt row only, so apart. */
    double token_params, head_params;
} bench_weights;

void bench_weights_of(const g4_gguf_file *f, int32_t n_expert, int32_t n_expert_used, bench_weights *w);

/* Mean and sample standard deviation (n - 1; 0 for n < 2). */
void bench_mean_sd(const double *v, int n, double *mean, double *sd);

/* Estimated FP32 peak in GFLOP/s of n_threads cores at ghz running the
 * named ISA's FMA; 0 for an unknown ISA. */
double bench_peak_gflops(const char *isa, int n_threads, double ghz);
/* Clock of one busy core in GHz, measured (see bench_report.c). */
double bench_measure_ghz(void);

#define BENCH_MAX_REPS 100

/* One line of the table: a pp test (n_prompt > 0) or a tg test (n_gen > 0). */
typedef struct bench_result {
    int n_threads, n_prompt, n_gen;
    int n_samples;
    double samples_ts[BENCH_MAX_REPS]; /* tokens per second of each repetition */
    /* this machine's limits at n_threads (<= 0: unknown) */
    double membw_gbps, peak_gflops;
    /* set by bench_result_finish: mean and deviation of samples_ts, and the
     * GB/s of weights (tg) or GFLOP/s (pp) the mean reaches */
    double avg_ts, stddev_ts, rate;
} bench_result;

typedef struct bench_model {
    const char *filename, *variant, *isa;
    const bench_weights *w;
} bench_model;

/* tg: rate = avg_ts x tg_bytes / 1e9; pp: rate = 2 x (token_params x
 * n_prompt + head_params) x avg_ts / n_prompt / 1e9 (attention's own
 * products, which grow with the context, are not counted). */
void bench_result_finish(bench_result *r, const bench_weights *w);

void bench_print_md(FILE *out, const bench_model *m, const bench_result *r, int n);
void bench_print_json(FILE *out, const bench_model *m, const bench_result *r, int n);

#endif
