/* AVX2 + FMA + F16C kernels for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K.
 *
 * Each (weight row, token) output keeps the lanes of the scalar reference
 * (ggml's AVX2 structure): per block an exact integer sum for every group of
 * four values, one fused multiply-add into 8 float lanes, the horizontal sum
 * in ggml's order. Only integer work is rearranged, so the results are the
 * scalar kernels' bits.
 *
 * Speed comes from tiles: TILE_R weight rows and TILE_T tokens per pass.
 * Per block, what depends only on a token (its codes, their per-pair sums,
 * its scale) is prepared once for all rows, what depends only on a row (its
 * unpacked codes and scales) once for all tokens; the accumulators of the
 * tile stay in registers. */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kernels/isa.h"
#include "kernels/x86/avx2.h"

/* Decode runs one token against 4 rows; prefill 4 x 4 tiles (the lowest
 * instruction count per block and token of the shapes tried: 4x2, 2x4, 3x4,
 * 4x3, 6x2), spilling a few token values to the stack. */
#define TILE_R 4
#define TILE_T 4
#include "kernels/tiles.h"

static float fp16_at(const uint8_t *p) {
    g4_fp16 h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

static float f32_at(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* An fp16 scale in all 8 lanes: one broadcast load and one conversion. */
INLINE __m256 fp16_lanes(const uint8_t *p) {
    int16_t h;
    memcpy(&h, p, sizeof h);
    return _mm256_cvtph_ps(_mm_set1_epi16(h));
}

/* ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), as ggml's hsum_float_8. */
INLINE float sum_lanes(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* int16 pairs -> int32 lane k = sum of pairs 2k and 2k+1. */
INLINE __m256i pairs_to_lanes(__m256i p) { return _mm256_madd_epi16(p, _mm256_set1_epi16(1)); }

/* ---- 32-value blocks against Q8_0 ---- */

/* A Q4_0 block's 16 code bytes as 32 unsigned nibbles in value order: the
 * bytes in both halves, the high half shifted down by 4. */
INLINE __m256i q4_nibbles(const uint8_t *qs) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(15));
}

/* One token's share of a block: its codes, 8 * its pair sums (Q4_0 codes
 * are stored +8, so the row side subtracts these), its scale in all lanes. */
typedef struct {
    __m256i a, a8;
    __m256 d;
} q8_0_token;

INLINE void tile_q32(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes,
                     const uint8_t *act, size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    __m256 acc[TILE_R][TILE_T];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / G4_QK; b++) {
        q8_0_token tok[TILE_T];
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *blk = act + t * act_bytes + b * sizeof(block_q8_0);
            tok[t].d = fp16_lanes(blk);
            tok[t].a = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q8_0, qs)));
            if (type == G4_TYPE_Q4_0) tok[t].a8 = _mm256_maddubs_epi16(_mm256_set1_epi8(8), tok[t].a);
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * row_bytes + b * wsize;
            const __m256 dw = fp16_lanes(blk);
            __m256i q;
            if (type == G4_TYPE_Q4_0) q = q4_nibbles(blk + offsetof(block_q4_0, qs));
            else q = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q8_0, qs)));
            /* maddubs needs an unsigned left operand: Q4_0 has one (the
             * stored nibble), Q8_0 moves its signs to the activations */
            const __m256i qabs = type == G4_TYPE_Q8_0 ? _mm256_sign_epi8(q, q) : q;
            UNROLL for (int t = 0; t < T; t++) {
                __m256i p;
                if (type == G4_TYPE_Q4_0)
                    p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, tok[t].a), tok[t].a8);
                else
                    p = _mm256_maddubs_epi16(qabs, _mm256_sign_epi8(tok[t].a, q));
                const __m256 s = _mm256_cvtepi32_ps(pairs_to_lanes(p));
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, tok[t].d), s, acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) out[t * out_stride + r] = sum_lanes(acc[r][t]);
}

/* ---- K formats against Q8_K ---- */

/* The 8 sub-block scales of one row's super-block as int16, and for
 * Q4_K/Q5_K the 8 mins. Q6_K has 16 scales (one per 16 values): sc holds
 * the first 8, sc_hi the rest. */
typedef struct {
    __m256i sc, sc_hi; /* the 8 int16 values in both 128-bit halves */
    __m128i mins;
    float d, dmin;
} k_head;

/* Q4_K/Q5_K packing (see kquant_scales.h) read four pairs at a time:
 * bytes 0-3 scales 0-3, 4-7 mins 0-3, low/high nibbles of 8-11 the low
 * bits of scales/mins 4-7, whose top bits are bits 6-7 of bytes 0-3/4-7. */
INLINE void k_scales_mins(const uint8_t *packed, __m256i *sc, __m128i *mins) {
    uint32_t u[3];
    memcpy(u, packed, sizeof u);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    const uint32_t sc_lo = u[0] & m6, min_lo = u[1] & m6;
    const uint32_t sc_hi = (u[2] & m4) | ((u[0] >> 6) & m2) << 4;
    const uint32_t min_hi = ((u[2] >> 4) & m4) | ((u[1] >> 6) & m2) << 4;
    const __m128i bytes = _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)min_lo, (int)min_hi);
    *sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(bytes));
    *mins = _mm_cvtepu8_epi16(_mm_srli_si128(bytes, 8));
}

INLINE void k_unpack_head(enum g4_type type, const uint8_t *blk, k_head *h) {
    if (type == G4_TYPE_Q6_K) {
        const __m128i s8 = _mm_loadu_si128((const __m128i *)(blk + offsetof(block_q6_K, scales)));
        h->sc = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8));
        h->sc_hi = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(s8, 8)));
        h->d = fp16_at(blk + offsetof(block_q6_K, d));
        return;
    }
    k_scales_mins(blk + offsetof(block_q4_K, scales), &h->sc, &h->mins);
    h->d = fp16_at(blk + offsetof(block_q4_K, d));
    h->dmin = fp16_at(blk + offsetof(block_q4_K, dmin));
}

/* The int16 scale of every value of sub-block s (32 values) in one vector.
 * Q4_K/Q5_K: scale s everywhere; Q6_K: scale 2s in the low half, 2s+1 in
 * the high half. Shuffles within the halves pick the int16 wanted. */
INLINE __m256i k_sub_scale(enum g4_type type, const k_head *h, int s) {
    if (type == G4_TYPE_Q6_K) {
        const int j = 2 * (s % 4); /* int16 index inside sc or sc_hi */
        const __m256i pick = _mm256_setr_epi8(2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j,
                                              2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j + 2,
                                              2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3,
                                              2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2,
                                              2 * j + 3);
        return _mm256_shuffle_epi8(s < 4 ? h->sc : h->sc_hi, pick);
    }
    const __m256i pick = _mm256_set1_epi16((short)(2 * s | (2 * s + 1) << 8));
    return _mm256_shuffle_epi8(h->sc, pick);
}

/* Unsigned codes of sub-block s (32 values) of one row's super-block. */
INLINE __m256i k_codes(enum g4_type type, const uint8_t *blk, int s) {
    const __m256i m4 = _mm256_set1_epi8(15);
    if (type == G4_TYPE_Q6_K) {
        /* value 128c + 32r + l: nibble r/2 of ql[64c + 32(r%2) + l], bits 2r of qh[32c + l] */
        const int c = s / 4, r = s % 4;
        const __m256i l = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q6_K, ql) + 64 * c + 32 * (r % 2)));
        const __m256i h = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q6_K, qh) + 32 * c));
        const __m256i lo = _mm256_and_si256(r < 2 ? l : _mm256_srli_epi16(l, 4), m4);
        /* bits 2r..2r+1 of each byte moved to bits 4..5 */
        const __m256i hi2 = 2 * r <= 4 ? _mm256_slli_epi16(h, 4 - 2 * r) : _mm256_srli_epi16(h, 2 * r - 4);
        return _mm256_or_si256(lo, _mm256_and_si256(hi2, _mm256_set1_epi8(0x30)));
    }
    /* value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l the high */
    const size_t qs = type == G4_TYPE_Q5_K ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m256i bits = _mm256_loadu_si256((const __m256i *)(blk + qs + 32 * (s / 2)));
    __m256i q = _mm256_and_si256(s % 2 ? _mm256_srli_epi16(bits, 4) : bits, m4);
    if (type == G4_TYPE_Q5_K) { /* bit s of qh[l] is the fifth bit of value 32s + l */
        const __m256i hb = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q5_K, qh))),
                                            _mm256_set1_epi8((char)(1 << s)));
        q = _mm256_or_si256(q, s <= 4 ? _mm256_slli_epi16(hb, 4 - s) : _mm256_srli_epi16(hb, s - 4));
    }
    return q;
}

/* One token's share of a super-block: for Q4_K/Q5_K the activation sums of
 * sub-block pairs as the min terms pair them, for Q6_K 32 * the pair sums
 * of each sub-block (its codes are stored +32). */
typedef struct {
    const uint8_t *q;
    float d;
    __m128i bsum2;
    __m256i a32[8];
} q8_K_token;

INLINE void tile_k(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes, const uint8_t *act,
                   size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q4_K ? sizeof(block_q4_K)
                         : type == G4_TYPE_Q5_K ? sizeof(block_q5_K)
                                                : sizeof(block_q6_K);
    __m256 acc[TILE_R][TILE_T];
    __m128 min_acc[TILE_R][TILE_T]; /* Q4_K: 4 float lanes of min terms */
    float summs[TILE_R][TILE_T];    /* Q5_K: one float of min terms */
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) {
        acc[r][t] = _mm256_setzero_ps();
        min_acc[r][t] = _mm_setzero_ps();
        summs[r][t] = 0.0f;
    }
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        q8_K_token tok[TILE_T];
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *ablk = act + t * act_bytes + b * sizeof(block_q8_K);
            tok[t].q = ablk + offsetof(block_q8_K, qs);
            tok[t].d = f32_at(ablk + offsetof(block_q8_K, d));
            if (type == G4_TYPE_Q6_K) {
                UNROLL for (int s = 0; s < 8; s++) tok[t].a32[s] = _mm256_maddubs_epi16(
                    _mm256_set1_epi8(32), _mm256_loadu_si256((const __m256i *)(tok[t].q + 32 * s)));
            } else {
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)(ablk + offsetof(block_q8_K, bsums)));
                tok[t].bsum2 = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
            }
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * row_bytes + b * wsize;
            k_head h;
            k_unpack_head(type, blk, &h);
            __m256i isum[TILE_T];
            UNROLL for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
            UNROLL for (int s = 0; s < 8; s++) {
                const __m256i q = k_codes(type, blk, s), sc = k_sub_scale(type, &h, s);
                UNROLL for (int t = 0; t < T; t++) {
                    __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(tok[t].q + 32 * s)));
                    if (type == G4_TYPE_Q6_K) p = _mm256_sub_epi16(p, tok[t].a32[s]);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(sc, p));
                }
            }
            UNROLL for (int t = 0; t < T; t++) {
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(tok[t].d * h.d), _mm256_cvtepi32_ps(isum[t]), acc[r][t]);
                if (type == G4_TYPE_Q6_K) continue;
                const __m128i pair = _mm_madd_epi16(h.mins, tok[t].bsum2);
                const float dmin = -tok[t].d * h.dmin;
                if (type == G4_TYPE_Q4_K) {
                    min_acc[r][t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pair), min_acc[r][t]);
                } else {
                    const __m128i total = _mm_hadd_epi32(_mm_hadd_epi32(pair, pair), pair);
                    const __m128 m = _mm_cvtepi32_ps(total);
                    summs[r][t] = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(dmin), m, _mm_set_ss(summs[r][t])));
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) {
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

/* ---- F16 weights against F16 activations ----
 * The scalar reference adds the f32 products (exact: two 11-bit
 * significands) to a double one element at a time, so every output's
 * additions must stay in element order. Parallelism comes from rows
 * instead (a double lane per row, two groups of four rows so that two
 * chains of dependent additions are in flight), or from tokens where
 * there are 8 (below). */
#define F16_ROWS 8

/* acc lane r += the products of elements i..i+3 of row r, in element order. */
INLINE __m256d f16_add4(__m256d acc, const uint8_t *w, size_t row_bytes, __m128 a) {
    __m256d p[4];
    UNROLL for (int r = 0; r < 4; r++) {
        const __m128 wf = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(w + r * row_bytes)));
        p[r] = _mm256_cvtps_pd(_mm_mul_ps(wf, a));
    }
    /* transpose: column k holds element i+k of the four rows */
    const __m256d lo01 = _mm256_unpacklo_pd(p[0], p[1]), hi01 = _mm256_unpackhi_pd(p[0], p[1]);
    const __m256d lo23 = _mm256_unpacklo_pd(p[2], p[3]), hi23 = _mm256_unpackhi_pd(p[2], p[3]);
    acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(lo01, lo23, 0x20));
    acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(hi01, hi23, 0x20));
    acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(lo01, lo23, 0x31));
    return _mm256_add_pd(acc, _mm256_permute2f128_pd(hi01, hi23, 0x31));
}

/* Prefill, 8 tokens at a time: the same additions in the same order, with
 * tokens in lanes instead, a register of 4 doubles holding 4 tokens' sums
 * of one row. A weight converted once then serves 8 tokens through one
 * broadcast and nothing is transposed per element (f16_add4 spends 8
 * shuffles on every 16 products): the activations of a chunk of elements
 * are transposed into token order once per F16_TR rows, on the stack. */
#define F16_TR 6      /* rows per pass: 12 of the 16 registers accumulate */
#define F16_CHUNK 128 /* elements per transposed chunk: 4 KB of floats */

/* 8 rows of 8 floats, transposed: out[k] holds element k of rows 0-7. */
INLINE void transpose8_ps(const __m256 in[8], __m256 out[8]) {
    __m256 a[8], b[8];
    UNROLL for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm256_unpacklo_ps(in[2 * i], in[2 * i + 1]);
        a[2 * i + 1] = _mm256_unpackhi_ps(in[2 * i], in[2 * i + 1]);
    }
    UNROLL for (int i = 0; i < 2; i++) {
        b[4 * i] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        b[4 * i + 1] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        b[4 * i + 2] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        b[4 * i + 3] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    UNROLL for (int k = 0; k < 4; k++) {
        out[k] = _mm256_permute2f128_ps(b[k], b[4 + k], 0x20);
        out[4 + k] = _mm256_permute2f128_ps(b[k], b[4 + k], 0x31);
    }
}

/* R rows (at most F16_TR) against tokens 0-7 of act; n a multiple of 8. */
INLINE void f16_tok8_rows(int R, int64_t n, const uint8_t *w, size_t row_bytes, const uint8_t *act, size_t act_bytes,
                          float *out, int64_t out_stride) {
    _Alignas(32) float at[F16_CHUNK][8], wt[F16_TR][F16_CHUNK];
    __m256d acc[F16_TR][2];
    UNROLL for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_pd();
    for (int64_t i0 = 0; i0 < n; i0 += F16_CHUNK) {
        const int len = (int)(n - i0 < F16_CHUNK ? n - i0 : F16_CHUNK);
        for (int i = 0; i < len; i += 8) {
            __m256 tok[8], el[8];
            UNROLL for (int t = 0; t < 8; t++)
                tok[t] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(act + t * act_bytes + 2 * (i0 + i))));
            transpose8_ps(tok, el);
            UNROLL for (int k = 0; k < 8; k++) _mm256_store_ps(at[i + k], el[k]);
            UNROLL for (int r = 0; r < R; r++)
                _mm256_store_ps(wt[r] + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + r * row_bytes + 2 * (i0 + i)))));
        }
        for (int i = 0; i < len; i++) {
            const __m128 a0 = _mm_load_ps(at[i]), a1 = _mm_load_ps(at[i] + 4);
            UNROLL for (int r = 0; r < R; r++) {
                const __m128 wv = _mm_broadcast_ss(&wt[r][i]);
                acc[r][0] = _mm256_add_pd(acc[r][0], _mm256_cvtps_pd(_mm_mul_ps(wv, a0)));
                acc[r][1] = _mm256_add_pd(acc[r][1], _mm256_cvtps_pd(_mm_mul_ps(wv, a1)));
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        float y[8];
        _mm_storeu_ps(y, _mm256_cvtpd_ps(acc[r][0]));
        _mm_storeu_ps(y + 4, _mm256_cvtpd_ps(acc[r][1]));
        for (int t = 0; t < 8; t++) out[t * out_stride + r] = y[t];
    }
}

static void f16_rows(int64_t n, const void *vw, size_t row_bytes, int64_t n_rows, const void *vact, size_t act_bytes,
                     int64_t n_tok, float *out, int64_t out_stride) {
    float (*dot)(int64_t, const void *, const void *) = g4_kernels_scalar()->vec_dot[G4_TYPE_F16];
    const uint8_t *w = vw, *act = vact;
    int64_t t = 0;
    for (; t + 8 <= n_tok && n % 8 == 0; t += 8) {
        const uint8_t *a = act + t * act_bytes;
        float *y = out + t * out_stride;
        int64_t r = 0;
        for (; r + F16_TR <= n_rows; r += F16_TR) f16_tok8_rows(F16_TR, n, w + r * row_bytes, row_bytes, a, act_bytes, y + r, out_stride);
        for (; r < n_rows; r++) f16_tok8_rows(1, n, w + r * row_bytes, row_bytes, a, act_bytes, y + r, out_stride);
    }
    for (; t < n_tok; t++) {
        const uint8_t *a = act + t * act_bytes;
        float *y = out + t * out_stride;
        int64_t r = 0;
        for (; r + F16_ROWS <= n_rows && n % 4 == 0; r += F16_ROWS) {
            const uint8_t *rows = w + r * row_bytes;
            __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
            for (int64_t i = 0; i < n; i += 4) {
                const __m128 af = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(a + 2 * i)));
                acc0 = f16_add4(acc0, rows + 2 * i, row_bytes, af);
                acc1 = f16_add4(acc1, rows + 4 * row_bytes + 2 * i, row_bytes, af);
            }
            _mm_storeu_ps(y + r, _mm256_cvtpd_ps(acc0));
            _mm_storeu_ps(y + r + 4, _mm256_cvtpd_ps(acc1));
        }
        for (; r < n_rows; r++) y[r] = dot(n, w + r * row_bytes, a);
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
            [G4_TYPE_F16] = f16_rows,
            [G4_TYPE_Q4_0] = q4_0_rows,
            [G4_TYPE_Q8_0] = q8_0_rows,
            [G4_TYPE_Q4_K] = q4_K_rows,
            [G4_TYPE_Q5_K] = q5_K_rows,
            [G4_TYPE_Q6_K] = q6_K_rows,
        },
    .mul_rows_x8 = {[G4_TYPE_Q4_0] = g4_avx2_q4_0_rows_x8, [G4_TYPE_Q4_K] = g4_avx2_q4_K_rows_x8},
    .quantize_act = {[G4_TYPE_Q8_0] = g4_avx2_quantize_q8_0, [G4_TYPE_Q8_K] = g4_avx2_quantize_q8_K},
    .kv_scores = {[G4_TYPE_F32] = g4_avx2_kv_scores_f32, [G4_TYPE_F16] = g4_avx2_kv_scores_f16},
    .kv_accum = {[G4_TYPE_F32] = g4_avx2_kv_accum_f32, [G4_TYPE_F16] = g4_avx2_kv_accum_f16},
};

const g4_kernels *g4_kernels_avx2(void) { return &avx2; }
