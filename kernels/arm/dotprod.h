/* NEON + dot product kernels of other files that the NEON table in
 * kernels/arm/dotprod.c lists: mul_rows_x8 (kernels.h) for Q4_0 and Q4_K
 * (dotprod_x8.c). */
#ifndef G4_ARM_DOTPROD_H
#define G4_ARM_DOTPROD_H

#include <stddef.h>
#include <stdint.h>

void g4_neon_q4_0_rows_x8(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes,
                          int64_t n_tok, float *out, int64_t out_stride);
void g4_neon_q4_K_rows_x8(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes,
                          int64_t n_tok, float *out, int64_t out_stride);

#endif
