/* AVX-512 kernels of other files that the AVX-512 table in
 * kernels/x86/avx512.c lists: mul_rows_x8 (kernels.h) for Q4_0 and Q4_K
 * (avx512_x8.c), the Q8_0 and Q8_K activation quantizers (avx512_act.c),
 * attention over F32 and F16 cache rows (avx512_attn.c). */
#ifndef G4_X86_AVX512_H
#define G4_X86_AVX512_H

#include <stddef.h>
#include <stdint.h>

void g4_avx512_q4_0_rows_x8(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act,
                            size_t act_bytes, int64_t n_tok, float *out, int64_t out_stride);
void g4_avx512_q4_K_rows_x8(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act,
                            size_t act_bytes, int64_t n_tok, float *out, int64_t out_stride);
void g4_avx512_quantize_q8_0(const float *x, void *y, int64_t n);
void g4_avx512_quantize_q8_K(const float *x, void *y, int64_t n);
void g4_avx512_kv_scores_f32(const char *rows, size_t stride, int32_t n, int32_t hd, const float *q, int32_t nq,
                             float *scores, int32_t s_stride);
void g4_avx512_kv_scores_f16(const char *rows, size_t stride, int32_t n, int32_t hd, const float *q, int32_t nq,
                             float *scores, int32_t s_stride);
void g4_avx512_kv_accum_f32(const char *rows, size_t stride, int32_t n, int32_t hd, const float *p, int32_t nq,
                            int32_t p_stride, float *o);
void g4_avx512_kv_accum_f16(const char *rows, size_t stride, int32_t n, int32_t hd, const float *p, int32_t nq,
                            int32_t p_stride, float *o);

#endif
