/* The driver the ISA files share for their interleaved-group kernels
 * (kernels/repack.h): what depends only on the activations (the "side
 * terms") is prepared once for a chunk of tokens, then every group meets
 * the chunk's tokens a few at a time, so a group stays in L1 while they
 * pass. The side terms live on the stack: the kernels allocate nothing, so
 * they cannot fail. */
#ifndef G4_X8_GROUPS_H
#define G4_X8_GROUPS_H

#include "kernels/repack.h"

/* Side terms a call holds: G4_X8_MAX_IN values at up to one term per 8
 * (G4_X8_ENTRY checks its kernel's rate), so one token always fits. 32 KiB,
 * a quarter of a musl thread's stack. E2B's 12288-wide FFN rows take 8
 * tokens per chunk with AVX2's Q4_0 terms, where a group is past L1 anyway:
 * measured, no slower than the terms of all 32 tokens of a matmul pass. */
#define G4_X8_SIDE_TERMS (G4_X8_MAX_IN / 8)

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
    g4_side_term side[G4_X8_SIDE_TERMS];
    const int64_t per_token = nb * per_block;
    int64_t chunk = G4_X8_SIDE_TERMS / per_token; /* >= 1 for rows up to G4_X8_MAX_IN */
    if (chunk > per_pass) chunk -= chunk % per_pass;
    for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
        const int64_t n = n_tok - t0 < chunk ? n_tok - t0 : chunk;
        const uint8_t *a = (const uint8_t *)act + (size_t)t0 * act_bytes;
        make_side(nb, a, act_bytes, n, side);
        for (int64_t r = 0; r < n_rows; r += G4_REPACK_ROWS)
            for (int64_t t = 0; t < n; t += per_pass) {
                const int T = (int)(n - t < per_pass ? n - t : per_pass);
                tile(T, nb, (const uint8_t *)w + (size_t)r * row_bytes, a + (size_t)t * act_bytes, act_bytes,
                     side + t * per_token, out + (t0 + t) * out_stride + r, out_stride);
            }
    }
}

/* An ISA file's mul_rows_x8 entry `name` for one format: its tile body
 * (which needs T as a constant to keep its accumulators in registers, so
 * one specialisation per token count up to 4), its side terms (per_block
 * per block of qk values) and its tokens per pass. */
#define G4_X8_ENTRY(name, tile, block_t, side_fn, per_block, qk, per_pass)                                           \
    static_assert((per_block) * 8 <= (qk), #name ": more side terms per value than G4_X8_SIDE_TERMS allows");        \
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
