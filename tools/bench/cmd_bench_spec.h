/* gemma4 bench --draft-max: decode speed with speculative decoding against
 * plain greedy decoding (tools/bench/cmd_bench_spec.c). */
#ifndef G4_CMD_BENCH_SPEC_H
#define G4_CMD_BENCH_SPEC_H

#include "gemma4.h"

#define BENCH_SPEC_MAX_LENS 8

typedef struct bench_spec_opts {
    int32_t n_gen, reps;
    int32_t draft_max[BENCH_SPEC_MAX_LENS]; /* the draft lengths to compare */
    int n_lens;
    bool lookup, oracle; /* the draft sources */
    const char *drafter;  /* an MTP drafter GGUF (-md), a third source; NULL: none */
} bench_spec_opts;

/* For each thread count: plain greedy decoding of n_gen tokens after a
 * repetitive prompt, then the same with each draft source and length; a
 * markdown table on stdout, progress on stderr. 0, or 1 after an error. */
int bench_spec_run(const gemma4_model *m, const char *path, const int32_t *threads, int n_threads,
                   const bench_spec_opts *o);

#endif
