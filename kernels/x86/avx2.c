/* AVX2 + FMA + F16C kernels for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K.
 *
 * Each (weight row, token) output keeps the lanes of the scalar reference
 * (ggml's AVX2 structure): per block an exact integer sum for every group of
 * four values, one fused multiply-add into 8 float lanes, the horizontal sum
 * in ggml's order. Only integer work is rearranged, so the results are the
 * scalar kernels' bits.
 *
 * Speed comes from tiles: up to TILE_R weight rows are unpacked once per
 * block and used for TILE_T tokens, so decode reads each activation block
 * once per TILE_R rows and prefill unpacks each weight block once per
 * TILE_T tokens. */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kernels/isa.h"
#include "kernels/kquant_scales.h"
#include "kernels/tiles.h"


static float fp16_at(const uint8_t *p) {
    g4_fp16 h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), as ggml's hsum_float_8. */
INLINE float sum_lanes(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* ---- 32-value blocks against Q8_0 ---- */

/* Lane k: sum of w[i]*a[i] over bytes 4k..4k+3 of two signed vectors.
 * maddubs needs an unsigned left operand, so the signs move to a; exact
 * while no code is -128 on both sides (quantizers never make -128). */
INLINE __m256i dot_i8(__m256i w, __m256i a) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* The 32 signed codes of a Q4_0 or Q8_0 block in value order, and its scale. */
INLINE __m256i codes32(enum g4_type type, const uint8_t *blk, float *d) {
    *d = fp16_at(blk);
    if (type == G4_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q8_0, qs)));
    const __m128i q = _mm_loadu_si128((const __m128i *)(blk + offsetof(block_q4_0, qs)));
    const __m128i m4 = _mm_set1_epi8(15);
    const __m256i u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
    return _mm256_sub_epi8(u, _mm256_set1_epi8(8));
}

INLINE void tile_q32(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes,
                     const uint8_t *act, size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    __m256 acc[TILE_R][TILE_T];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / G4_QK; b++) {
        __m256i a[TILE_T];
        float da[TILE_T];
        for (int t = 0; t < T; t++) {
            const uint8_t *blk = act + t * act_bytes + b * sizeof(block_q8_0);
            da[t] = fp16_at(blk);
            a[t] = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q8_0, qs)));
        }
        for (int r = 0; r < R; r++) {
            float dw;
            const __m256i q = codes32(type, w + r * row_bytes + b * wsize, &dw);
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da[t]), _mm256_cvtepi32_ps(dot_i8(q, a[t])), acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[t * out_stride + r] = sum_lanes(acc[r][t]);
}

/* ---- K formats against Q8_K ---- */

/* One super-block of one row, unpacked: unsigned codes of sub-block s in
 * q[s], the int16 scale of each of its values in sc[s], and for Q4_K/Q5_K
 * the eight mins. */
typedef struct {
    __m256i q[8], sc[8];
    __m128i mins;
    float d, dmin;
} k_block;

INLINE void unpack_k(enum g4_type type, const uint8_t *blk, k_block *u) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    if (type == G4_TYPE_Q6_K) {
        const uint8_t *ql = blk + offsetof(block_q6_K, ql), *qh = blk + offsetof(block_q6_K, qh);
        const int8_t *scales = (const int8_t *)blk + offsetof(block_q6_K, scales);
        /* value 128c + 32r + l: nibble r/2 of ql[64c + 32(r%2) + l], bits 2r of qh[32c + l] */
        for (int c = 0; c < 2; c++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(ql + 64 * c));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 64 * c + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)(qh + 32 * c));
            u->q[4 * c + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m2), 4));
            u->q[4 * c + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4));
            u->q[4 * c + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4));
            u->q[4 * c + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4));
        }
        for (int s = 0; s < 8; s++)
            u->sc[s] = _mm256_set_m128i(_mm_set1_epi16(scales[2 * s + 1]), _mm_set1_epi16(scales[2 * s]));
        u->d = fp16_at(blk + offsetof(block_q6_K, d));
        return;
    }
    /* Q4_K and Q5_K share the head: d, dmin, 12 bytes of scales and mins */
    const uint8_t *packed = blk + offsetof(block_q4_K, scales);
    int16_t mins[8];
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        g4_kquant_scale_min(s, packed, &sc, &m);
        u->sc[s] = _mm256_set1_epi16(sc);
        mins[s] = m;
    }
    u->mins = _mm_loadu_si128((const __m128i *)mins);
    u->d = fp16_at(blk + offsetof(block_q4_K, d));
    u->dmin = fp16_at(blk + offsetof(block_q4_K, dmin));
    const uint8_t *qs = blk + (type == G4_TYPE_Q5_K ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs));
    /* value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l the high */
    for (int j = 0; j < 4; j++) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        u->q[2 * j] = _mm256_and_si256(bits, m4);
        u->q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
    }
    if (type == G4_TYPE_Q5_K) { /* bit s of qh[l] is the fifth bit of value 32s + l */
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q5_K, qh)));
        for (int s = 0; s < 8; s++) {
            const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(s)), one);
            u->q[s] = _mm256_or_si256(u->q[s], _mm256_slli_epi16(bit, 4));
        }
    }
}

INLINE void tile_k(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes, const uint8_t *act,
                   size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q4_K ? sizeof(block_q4_K)
                         : type == G4_TYPE_Q5_K ? sizeof(block_q5_K)
                                                : sizeof(block_q6_K);
    __m256 acc[TILE_R][TILE_T];
    __m128 min_acc[TILE_R][TILE_T]; /* Q4_K: 4 float lanes of min terms */
    float summs[TILE_R][TILE_T];    /* Q5_K: one float of min terms */
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            acc[r][t] = _mm256_setzero_ps();
            min_acc[r][t] = _mm_setzero_ps();
            summs[r][t] = 0.0f;
        }
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        k_block u[TILE_R];
        for (int r = 0; r < R; r++) unpack_k(type, w + r * row_bytes + b * wsize, &u[r]);
        for (int t = 0; t < T; t++) {
            const uint8_t *ablk = act + t * act_bytes + b * sizeof(block_q8_K);
            const uint8_t *aq = ablk + offsetof(block_q8_K, qs);
            float da;
            memcpy(&da, ablk + offsetof(block_q8_K, d), sizeof da);
            __m256i isum[TILE_R];
            for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
            for (int s = 0; s < 8; s++) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(aq + 32 * s));
                /* Q6_K codes are stored +32: subtract 32 * a exactly in int16 */
                const __m256i offset = _mm256_maddubs_epi16(_mm256_set1_epi8(32), a);
                for (int r = 0; r < R; r++) {
                    __m256i p = _mm256_maddubs_epi16(u[r].q[s], a);
                    if (type == G4_TYPE_Q6_K) p = _mm256_sub_epi16(p, offset);
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(u[r].sc[s], p));
                }
            }
            __m128i q8s = _mm_setzero_si128(); /* per sub-block sums of the activations */
            if (type != G4_TYPE_Q6_K) {
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)(ablk + offsetof(block_q8_K, bsums)));
                q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
            }
            for (int r = 0; r < R; r++) {
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(da * u[r].d), _mm256_cvtepi32_ps(isum[r]), acc[r][t]);
                if (type == G4_TYPE_Q6_K) continue;
                const __m128i pair = _mm_madd_epi16(u[r].mins, q8s);
                const float dmin = -da * u[r].dmin;
                if (type == G4_TYPE_Q4_K) {
                    min_acc[r][t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pair), min_acc[r][t]);
                } else {
                    const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(pair, pair), pair);
                    const __m128 m = _mm_cvtepi32_ps(h);
                    summs[r][t] = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(dmin), m, _mm_set_ss(summs[r][t])));
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float y = sum_lanes(acc[r][t]);
            if (type == G4_TYPE_Q4_K) {
                __m128 m = _mm_add_ps(min_acc[r][t], _mm_movehl_ps(min_acc[r][t], min_acc[r][t]));
                m = _mm_add_ss(m, _mm_movehdup_ps(m));
                y += _mm_cvtss_f32(m);
            } else if (type == G4_TYPE_Q5_K) {
                y += summs[r][t];
            }
            out[t * out_stride + r] = y;
        }
}

KERNELS(q4_0, tile_q32, G4_TYPE_Q4_0)
KERNELS(q8_0, tile_q32, G4_TYPE_Q8_0)
KERNELS(q4_K, tile_k, G4_TYPE_Q4_K)
KERNELS(q5_K, tile_k, G4_TYPE_Q5_K)
KERNELS(q6_K, tile_k, G4_TYPE_Q6_K)

static const g4_kernels avx2 = {
    .isa = "avx2",
    .vec_dot =
        {
            [G4_TYPE_Q4_0] = q4_0_dot,
            [G4_TYPE_Q8_0] = q8_0_dot,
            [G4_TYPE_Q4_K] = q4_K_dot,
            [G4_TYPE_Q5_K] = q5_K_dot,
            [G4_TYPE_Q6_K] = q6_K_dot,
        },
    .mul_rows =
        {
            [G4_TYPE_Q4_0] = q4_0_rows,
            [G4_TYPE_Q8_0] = q8_0_rows,
            [G4_TYPE_Q4_K] = q4_K_rows,
            [G4_TYPE_Q5_K] = q5_K_rows,
            [G4_TYPE_Q6_K] = q6_K_rows,
        },
};

const g4_kernels *g4_kernels_avx2(void) { return &avx2; }
