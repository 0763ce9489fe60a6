/* AVX-512 attention over F32 and F16 cache rows for a group of query heads
 * (kv_scores / kv_accum in kernels.h), as the AVX2 kernels with 16 lanes:
 * each cached value loaded (and for F16 converted) once serves every head
 * of the group, up to 8 heads keeping their accumulators in registers. A
 * head size that is a multiple of 8 but not of 16 ends in a half chunk,
 * read and written through a mask. Sums run over 16 lanes, so results
 * equal the scalar ones within float rounding, not in bits; other head
 * sizes go to the scalar kernels. */
#include "kernels/attn.h"
#include "kernels/tiles.h"
#include "kernels/x86/avx512.h"
#include "kernels/x86/simd.h"

/* The lanes of values i.. of a head that exist: 16, or 8 at the end. */
INLINE __mmask16 chunk_mask(int32_t hd, int32_t i) { return hd - i >= 16 ? (__mmask16)0xffff : (__mmask16)0x00ff; }

/* Values i..i+15 of a cached row (masked lanes 0). */
INLINE __m512 row16(enum g4_type type, const char *row, int32_t i, __mmask16 m) {
    if (type == G4_TYPE_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * (size_t)i));
    return _mm512_maskz_loadu_ps(m, (const float *)row + i);
}

INLINE float sum16(__m512 v) {
    const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

INLINE void scores_heads(enum g4_type type, int NQ, const char *rows, size_t stride, int32_t n, int32_t hd,
                         const float *q, float *scores, int32_t s_stride) {
    for (int32_t r = 0; r < n; r++) {
        const char *row = rows + (size_t)r * stride;
        __m512 acc[8];
        UNROLL for (int h = 0; h < NQ; h++) acc[h] = _mm512_setzero_ps();
        for (int32_t i = 0; i < hd; i += 16) {
            const __mmask16 m = chunk_mask(hd, i);
            const __m512 k = row16(type, row, i, m);
            UNROLL for (int h = 0; h < NQ; h++) acc[h] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + h * hd + i), k, acc[h]);
        }
        UNROLL for (int h = 0; h < NQ; h++) scores[h * s_stride + r] = sum16(acc[h]);
    }
}

INLINE void accum_heads(enum g4_type type, int NQ, const char *rows, size_t stride, int32_t n, int32_t hd,
                        const float *p, int32_t p_stride, float *o) {
    for (int32_t i = 0; i < hd; i += 16) {
        const __mmask16 m = chunk_mask(hd, i);
        __m512 acc[8];
        UNROLL for (int h = 0; h < NQ; h++) acc[h] = _mm512_maskz_loadu_ps(m, o + h * hd + i);
        for (int32_t r = 0; r < n; r++) {
            const __m512 v = row16(type, rows + (size_t)r * stride, i, m);
            UNROLL for (int h = 0; h < NQ; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(p[h * p_stride + r]), v, acc[h]);
        }
        UNROLL for (int h = 0; h < NQ; h++) _mm512_mask_storeu_ps(o + h * hd + i, m, acc[h]);
    }
}

/* Heads in runs of 8, 4, 2 and 1, each run one pass over the rows. */
#define KV_AVX512(suffix, type)                                                                                      \
    void g4_avx512_kv_scores_##suffix(const char *rows, size_t stride, int32_t n, int32_t hd, const float *q,         \
                                      int32_t nq, float *scores, int32_t s_stride) {                                 \
        if (hd % 8) {                                                                                                \
            g4_kv_scores_##suffix(rows, stride, n, hd, q, nq, scores, s_stride);                                     \
            return;                                                                                                  \
        }                                                                                                            \
        for (int32_t h = 0; h < nq;) {                                                                               \
            const float *qh = q + (size_t)h * hd;                                                                    \
            float *sh = scores + (size_t)h * s_stride;                                                               \
            const int32_t left = nq - h;                                                                             \
            if (left >= 8) scores_heads(type, 8, rows, stride, n, hd, qh, sh, s_stride), h += 8;                     \
            else if (left >= 4) scores_heads(type, 4, rows, stride, n, hd, qh, sh, s_stride), h += 4;                \
            else if (left >= 2) scores_heads(type, 2, rows, stride, n, hd, qh, sh, s_stride), h += 2;                \
            else scores_heads(type, 1, rows, stride, n, hd, qh, sh, s_stride), h += 1;                               \
        }                                                                                                            \
    }                                                                                                                \
    void g4_avx512_kv_accum_##suffix(const char *rows, size_t stride, int32_t n, int32_t hd, const float *p,          \
                                     int32_t nq, int32_t p_stride, float *o) {                                       \
        if (hd % 8) {                                                                                                \
            g4_kv_accum_##suffix(rows, stride, n, hd, p, nq, p_stride, o);                                           \
            return;                                                                                                  \
        }                                                                                                            \
        for (int32_t h = 0; h < nq;) {                                                                               \
            const float *ph = p + (size_t)h * p_stride;                                                              \
            float *oh = o + (size_t)h * hd;                                                                          \
            const int32_t left = nq - h;                                                                             \
            if (left >= 8) accum_heads(type, 8, rows, stride, n, hd, ph, p_stride, oh), h += 8;                      \
            else if (left >= 4) accum_heads(type, 4, rows, stride, n, hd, ph, p_stride, oh), h += 4;                 \
            else if (left >= 2) accum_heads(type, 2, rows, stride, n, hd, ph, p_stride, oh), h += 2;                 \
            else accum_heads(type, 1, rows, stride, n, hd, ph, p_stride, oh), h += 1;                                \
        }                                                                                                            \
    }

KV_AVX512(f32, G4_TYPE_F32)
KV_AVX512(f16, G4_TYPE_F16)
