/* The driver the ISA files share for their interleaved-group kernels
 * (kernels/repack.h): what depends only on the activations (the "side
 * terms") is prepared once per call for every token, then every group
 * meets the tokens a few at a time, so a group stays in L1 while they pass. */
#ifndef G4_X8_GROUPS_H
#define G4_X8_GROUPS_H

#include <stdio.h>
#include <stdlib.h>

#include "kernels/repack.h"

/* One side term of a token's block: an integer correction or a float. */
typedef union {
    int32_t i;
    float f;
} g4_side_term;

/* T tokens (1..the file's tokens per pass) against one group. */
typedef void g4_x8_tile(int T, int64_t nb, const uint8_t *group, const uint8_t *act, size_t act_bytes,
                        const g4_side_term *side, float *out, int64_t out_stride);
/* The side terms of n_tok tokens, the kernel's fixed number per block. */
typedef void g4_x8_side(int64_t nb, const uint8_t *act, size_t act_bytes, int64_t n_tok, g4_side_term *side);

static inline void g4_x8_run(g4_x8_tile *tile, int64_t per_pass, g4_x8_side *make_side, int64_t per_block, int64_t nb,
                             const void *w, size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes,
                             int64_t n_tok, float *out, int64_t out_stride) {
    g4_side_term *side = malloc((size_t)(n_tok * nb * per_block) * sizeof *side);
    if (!side) {
        fprintf(stderr, "interleaved kernel: out of memory for %lld side terms\n", (long long)(n_tok * nb * per_block));
        exit(EXIT_FAILURE);
    }
    make_side(nb, act, act_bytes, n_tok, side);
    for (int64_t r = 0; r < n_rows; r += G4_REPACK_ROWS)
        for (int64_t t = 0; t < n_tok; t += per_pass) {
            const int T = (int)(n_tok - t < per_pass ? n_tok - t : per_pass);
            tile(T, nb, (const uint8_t *)w + (size_t)r * row_bytes, (const uint8_t *)act + (size_t)t * act_bytes,
                 act_bytes, side + t * nb * per_block, out + t * out_stride + r, out_stride);
        }
    free(side);
}

/* An ISA file's mul_rows_x8 entry `name` for one format: its tile body
 * (which needs T as a constant to keep its accumulators in registers, so
 * one specialisation per token count up to 4), its side terms (per_block
 * per block of qk values) and its tokens per pass. */
#define G4_X8_ENTRY(name, tile, block_t, side_fn, per_block, qk, per_pass)                                           \
    static void name##_tile(int T, int64_t nb, const uint8_t *group, const uint8_t *act, size_t act_bytes,           \
                            const g4_side_term *side, float *out, int64_t out_stride) {                              \
        const block_t *g = (const block_t *)group;                                                                   \
        switch (T) {                                                                                                 \
        case 1: tile(1, nb, g, act, act_bytes, side, out, out_stride); break;                                        \
        case 2: tile(2, nb, g, act, act_bytes, side, out, out_stride); break;                                        \
        case 3: tile(3, nb, g, act, act_bytes, side, out, out_stride); break;                                        \
        default: tile(4, nb, g, act, act_bytes, side, out, out_stride); break;                                       \
        }                                                                                                            \
    }                                                                                                                \
    void name(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes,          \
              int64_t n_tok, float *out, int64_t out_stride) {                                                       \
        g4_x8_run(name##_tile, per_pass, side_fn, per_block, n / (qk), w, row_bytes, n_rows, act, act_bytes, n_tok,   \
                  out, out_stride);                                                                                  \
    }

#endif
