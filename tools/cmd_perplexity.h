/* gemma4 perplexity: the measurement behind the command, callable from tests. */
#ifndef G4_CMD_PERPLEXITY_H
#define G4_CMD_PERPLEXITY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct g4_ppl_params {
    const char *model;     /* GGUF */
    const char *text;      /* text file; not needed when reading a KL base */
    const char *kld_base;  /* --kl-divergence-base FILE, or NULL */
    bool kld;              /* --kl-divergence: compare with kld_base instead of writing it */
    int32_t n_ctx;         /* -c: chunk length; 0 = min(512, model context) */
    int32_t n_chunks;      /* --chunks: at most this many; 0 = all */
    int32_t n_threads;     /* -t; 0 = all cores */
} g4_ppl_params;

typedef struct g4_ppl_result {
    int32_t n_ctx, n_chunk;
    int64_t n_scored;           /* tokens scored: n_chunk * (n_ctx - n_ctx/2 - 1) */
    double ppl, ppl_err;        /* exp(mean NLL) and its standard error, as llama-perplexity */
    /* KL-divergence mode only */
    double ppl_base;
    double kld_mean, kld_err, kld_max, kld_p99, kld_median;
    double same_top, same_top_err; /* share of positions whose argmax equals the base's */
} g4_ppl_result;

/* Runs the measurement, printing llama-perplexity's progress and summary
 * lines to out (may be NULL). 0, or -1 with err (GEMMA4_ERR_LEN bytes). */
int g4_perplexity(const g4_ppl_params *p, g4_ppl_result *r, FILE *out, char *err);

#endif
