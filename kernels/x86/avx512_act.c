/* AVX-512 activation quantizers, Q8_0 and Q8_K, with the scalar ones' bits:
 * the same float operations per value (x * id, then round to nearest even,
 * which vcvtps2dq does in the default rounding mode), 16 at a time. A
 * register of 16 codes is also exactly one Q8_K bsum group, and vpmovsdb
 * narrows it to bytes in order (AVX2 needs packs and a permute). */
#include <string.h>

#include "kernels/formats.h"
#include "kernels/x86/avx512.h"
#include "kernels/x86/simd.h"

/* |v| of 16 floats: the sign bit cleared. */
static inline __m512 abs16(__m512 v) { return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32(INT32_MIN), _mm512_castps_si512(v))); }

/* The largest of 16 non-negative floats (order does not matter for max). */
static inline float max_lanes(__m512 v) {
    __m256 m = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* The sum of 16 int32 lanes (exact in any order). */
static inline int32_t sum_lanes(__m512i v) {
    __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

void g4_avx512_quantize_q8_0(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / G4_QK; b++, x += G4_QK) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = max_lanes(_mm512_max_ps(abs16(v0), abs16(v1)));
        const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, id))));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, id))));
        y[b].d = g4_fp32_to_fp16(amax / 127.0f);
    }
}

void g4_avx512_quantize_q8_K(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / G4_QK_K; b++, x += G4_QK_K) {
        __m512 amax16 = _mm512_setzero_ps();
        for (int i = 0; i < G4_QK_K; i += 16) amax16 = _mm512_max_ps(amax16, abs16(_mm512_loadu_ps(x + i)));
        const float amax = max_lanes(amax16);
        memset(&y[b], 0, sizeof y[b]);
        if (amax == 0.0f) continue;
        /* the scale keeps the sign of the first value of largest magnitude */
        float max = 0.0f;
        for (int i = 0; i < G4_QK_K; i++)
            if (x[i] == amax || x[i] == -amax) {
                max = x[i];
                break;
            }
        const float iscale = -127.0f / max;
        const __m512 is = _mm512_set1_ps(iscale);
        for (int i = 0; i < G4_QK_K; i += 16) {
            const __m512i c =
                _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(is, _mm512_loadu_ps(x + i))), _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(y[b].qs + i), _mm512_cvtsepi32_epi8(c));
            y[b].bsums[i / 16] = (int16_t)sum_lanes(c);
        }
        y[b].d = 1 / iscale;
    }
}
