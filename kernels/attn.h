/* The scalar attention kernels (kv_scores / kv_accum in kernels.h), one pair
 * per cache row type, for the scalar table and the SIMD files' fallbacks. */
#ifndef G4_ATTN_H
#define G4_ATTN_H

#include "kernels/kernels.h"

#define G4_KV_KERNELS(suffix)                                                                                        \
    void g4_kv_scores_##suffix(const char *rows, size_t stride, int32_t n, int32_t hd, const float *q, int32_t nq,     \
                               float *scores, int32_t s_stride);                                                     \
    void g4_kv_accum_##suffix(const char *rows, size_t stride, int32_t n, int32_t hd, const float *p, int32_t nq,     \
                              int32_t p_stride, float *o);
G4_KV_KERNELS(f32)
G4_KV_KERNELS(f16)
G4_KV_KERNELS(q8_0)
#undef G4_KV_KERNELS

#endif
