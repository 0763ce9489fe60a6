/* Load-time "rows in lanes" interleaving of Q4_0 and Q4_K weights.
 *
 * Rows are taken in groups of 8. For every block position a group stores the
 * 8 rows' blocks together, arranged so that one 32-byte load holds 4 code
 * bytes of each of the 8 rows, row r in 32-bit lane r: a SIMD kernel then
 * multiplies all 8 rows by the same 4 broadcast activation bytes and keeps
 * one output row per lane, so unpacking, scaling and accumulation are shared
 * by 8 rows instead of repeated per row.
 *
 * A group is exactly as large as its 8 plain rows, so group g starts at
 * 8g * row_bytes, expert stacks keep their strides, and the n_out % 8 tail
 * rows follow in the plain layout. */
#ifndef G4_REPACK_H
#define G4_REPACK_H

#include "kernels.h"

/* Q4_0, per 32-value block: the 8 scales, then qs[k][r][j] = byte 4k + j of
 * row r's block (low nibble: value 4k + j, high nibble: value 16 + 4k + j). */
typedef struct {
    g4_fp16 d[G4_REPACK_ROWS];
    uint8_t qs[4][G4_REPACK_ROWS][4];
} block_q4_0x8;

/* Q4_K, per 256-value super-block: the 8 rows' d and dmin; scales[i][r][j] =
 * packed scale byte 4i + j of row r (the three 4-byte words of the K-quant
 * scale packing, kquant_scales.h, each as 8 lanes); qs[c][k][r][j] = code
 * byte 32c + 4k + j of row r (low nibble: value 64c + 4k + j of sub-block
 * 2c, high nibble: value 64c + 32 + 4k + j of sub-block 2c + 1). */
typedef struct {
    g4_fp16 d[G4_REPACK_ROWS], dmin[G4_REPACK_ROWS];
    uint8_t scales[3][G4_REPACK_ROWS][4];
    uint8_t qs[4][8][G4_REPACK_ROWS][4];
} block_q4_Kx8;

static_assert(sizeof(block_q4_0x8) == G4_REPACK_ROWS * sizeof(block_q4_0), "block_q4_0x8 layout");
static_assert(sizeof(block_q4_Kx8) == G4_REPACK_ROWS * sizeof(block_q4_K), "block_q4_Kx8 layout");

#endif
