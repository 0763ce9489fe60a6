/* AVX2 activation quantizers, Q8_0 and Q8_K, with the scalar ones' bits:
 * the same float operations per value (x * id, then round to nearest even,
 * which cvtps2dq does in the default rounding mode), only done 8 at a time. */
#include <immintrin.h>
#include <string.h>

#include "kernels/formats.h"
#include "kernels/x86/avx2.h"

/* |v| of 8 floats: the sign bit cleared. */
static inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float max_lanes(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 32 int32 codes (4 vectors) -> 32 int8 in order. packs works within
 * 128-bit halves, so the packed dwords come out as 0 2 4 6 1 3 5 7. */
static inline void store_codes32(int8_t *q, const __m256i c[4]) {
    const __m256i w01 = _mm256_packs_epi32(c[0], c[1]), w23 = _mm256_packs_epi32(c[2], c[3]);
    const __m256i b = _mm256_packs_epi16(w01, w23);
    _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

void g4_avx2_quantize_q8_0(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / G4_QK; b++, x += G4_QK) {
        __m256 v[4], amax8 = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            amax8 = _mm256_max_ps(amax8, abs8(v[i]));
        }
        const float amax = max_lanes(amax8);
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m256i c[4];
        for (int i = 0; i < 4; i++) c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
        store_codes32(y[b].qs, c);
        y[b].d = g4_fp32_to_fp16(amax / 127.0f);
    }
}

void g4_avx2_quantize_q8_K(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / G4_QK_K; b++, x += G4_QK_K) {
        __m256 amax8 = _mm256_setzero_ps();
        for (int i = 0; i < G4_QK_K; i += 8) amax8 = _mm256_max_ps(amax8, abs8(_mm256_loadu_ps(x + i)));
        const float amax = max_lanes(amax8);
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
        const __m256 is = _mm256_set1_ps(iscale);
        for (int i = 0; i < G4_QK_K; i += 32) {
            __m256i c[4];
            for (int k = 0; k < 4; k++)
                c[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + i + 8 * k))),
                                        _mm256_set1_epi32(127));
            store_codes32(y[b].qs + i, c);
        }
        /* sums of 16 codes: pairs by maddubs against 1, then fold */
        for (int i = 0; i < G4_QK_K; i += 32) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(y[b].qs + i));
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
            /* p: 8 sums of 4 codes; lanes 0-3 the first 16 codes, 4-7 the next */
            const __m128i h = _mm_hadd_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
            const __m128i s = _mm_hadd_epi32(h, h);
            y[b].bsums[i / 16] = (int16_t)_mm_cvtsi128_si32(s);
            y[b].bsums[i / 16 + 1] = (int16_t)_mm_extract_epi32(s, 1);
        }
        y[b].d = 1 / iscale;
    }
}
