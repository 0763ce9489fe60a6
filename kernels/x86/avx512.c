/* AVX-512 (F, BW, VL, DQ, VNNI) kernels for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K
 * rows, and F16 and BF16 rows, with the scalar kernels' bits.
 *
 * Each (weight row, token) output keeps the 8 float lanes of the scalar
 * reference (ggml's AVX2 structure, kernels/dot_scalar.c): per block an
 * exact integer sum for every group of four values, one fused multiply-add
 * per lane, the lanes added in ggml's order at the end. A 512-bit register
 * holds two such outputs, one per 256-bit half: two rows against one token
 * where the tile has rows to pair, else one row against two tokens, so the
 * unpacking, conversion and scaling of every block are done for two outputs
 * at once. The integer sums take one VNNI instruction where AVX2 takes two
 * or three: vpdpbusd gives each 4-value group its sum of products directly
 * (Q4_0, Q8_0), vpdpwssd scales and adds the K formats' pair sums.
 *
 * Tiles are TILE_R rows by TILE_T tokens (kernels/tiles.h); 32 registers
 * hold the tile's 8 accumulators and its tokens' blocks. */
#include <stddef.h>
#include <string.h>

#include "kernels/isa.h"
#include "kernels/x86/avx512.h"
#include "kernels/x86/simd.h"

#define TILE_R 4
#define TILE_T 4
#include "kernels/tiles.h"

/* How a tile of R rows by T tokens fills its registers (R and T are 1 or
 * even): with R >= 2, NW row pairs against NA tokens, each token in both
 * halves; with one row, that row in both halves against token pairs (or
 * one token in both halves, whose second copy of the output is dropped).
 * Output (iw, ia) half h is row ROW_OF, token TOK_OF. */
#define PAIR_ROWS(R) ((R) >= 2)
#define NW(R) (PAIR_ROWS(R) ? (R) / 2 : 1)
#define NA(R, T) (PAIR_ROWS(R) || (T) == 1 ? (T) : (T) / 2)
#define ROW_OF(R, iw, h) (PAIR_ROWS(R) ? 2 * (iw) + (h) : 0)
#define TOK_OF(R, T, ia, h) (PAIR_ROWS(R) ? (ia) : (T) == 1 ? 0 : 2 * (ia) + (h))
static_assert(TILE_R % 2 == 0 && TILE_T % 2 == 0, "outputs pair up in registers");

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

/* 32 bytes at lo in the low half, 32 at hi in the high half. */
INLINE __m512i load_pair(const uint8_t *lo, const uint8_t *hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

/* 32 bytes in both halves: one broadcast load. */
INLINE __m512i load_both(const uint8_t *p) { return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p)); }

INLINE __m512i load_halves(bool same, const uint8_t *lo, const uint8_t *hi) {
    return same ? load_both(lo) : load_pair(lo, hi);
}

/* a in the 8 low lanes, b in the 8 high ones. */
INLINE __m512 float_halves(float a, float b) {
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

/* The lanes of each half added as ggml's hsum_float_8 adds 8 lanes,
 * ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)): the low half's sum in *lo, the
 * high half's in *hi. */
INLINE void sum_halves(__m512 v, float *lo, float *hi) {
    __m512 s = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm512_add_ps(s, _mm512_movehdup_ps(s));
    *lo = _mm512_cvtss_f32(s);
    *hi = _mm_cvtss_f32(_mm512_extractf32x4_ps(s, 2));
}

/* Writes the two outputs of register pair (iw, ia); a single output
 * (one row, one token) has its copy in the high half dropped. */
INLINE void store_pair(int R, int T, int iw, int ia, float lo, float hi, float *out, int64_t out_stride) {
    out[TOK_OF(R, T, ia, 0) * out_stride + ROW_OF(R, iw, 0)] = lo;
    if (PAIR_ROWS(R) || T > 1) out[TOK_OF(R, T, ia, 1) * out_stride + ROW_OF(R, iw, 1)] = hi;
}

/* ---- 32-value blocks against Q8_0 ---- */

/* Two rows' Q4_0 code bytes (16 each) as unsigned nibbles in value order,
 * a row per half: low nibbles (values 0-15), then high (values 16-31). */
INLINE __m512i q4_0_codes(const uint8_t *qs0, const uint8_t *qs1) {
    const __m512i b = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qs0)), 0xff00,
                                                  _mm_loadu_si128((const __m128i *)qs1));
    return _mm512_and_si512(_mm512_srlv_epi64(b, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)), _mm512_set1_epi8(15));
}

/* vpdpbusd multiplies unsigned by signed bytes: the weight codes go in
 * biased (Q4_0 stores value + 8; Q8_0's sign bit flipped is value + 128),
 * and the sums start at -bias * (the activations' sums of four), which
 * depend only on the token. */
INLINE void tile_q32(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes,
                     const uint8_t *act, size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    const size_t wqs = type == G4_TYPE_Q8_0 ? offsetof(block_q8_0, qs) : offsetof(block_q4_0, qs);
    const __m512i bias = _mm512_set1_epi8(type == G4_TYPE_Q8_0 ? (char)0x80 : 8);
    const int nw = NW(R), na = NA(R, T); /* computed apart: GCC unrolls only loops with plain bounds */
    __m512 acc[TILE_R / 2][TILE_T];
    UNROLL for (int iw = 0; iw < nw; iw++) UNROLL for (int ia = 0; ia < na; ia++) acc[iw][ia] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / G4_QK; b++) {
        __m512i a[TILE_T], start[TILE_T];
        __m512 da[TILE_T];
        UNROLL for (int ia = 0; ia < na; ia++) {
            const uint8_t *b0 = act + TOK_OF(R, T, ia, 0) * act_bytes + b * sizeof(block_q8_0);
            const uint8_t *b1 = act + TOK_OF(R, T, ia, 1) * act_bytes + b * sizeof(block_q8_0);
            const size_t qs = offsetof(block_q8_0, qs);
            a[ia] = load_halves(PAIR_ROWS(R) || T == 1, b0 + qs, b1 + qs);
            start[ia] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, a[ia]));
            da[ia] = float_halves(fp16_at(b0), fp16_at(b1));
        }
        UNROLL for (int iw = 0; iw < nw; iw++) {
            const uint8_t *r0 = w + ROW_OF(R, iw, 0) * row_bytes + b * wsize;
            const uint8_t *r1 = w + ROW_OF(R, iw, 1) * row_bytes + b * wsize;
            const __m512i q = type == G4_TYPE_Q4_0 ? q4_0_codes(r0 + wqs, r1 + wqs)
                                                   : _mm512_xor_si512(load_halves(!PAIR_ROWS(R), r0 + wqs, r1 + wqs), bias);
            const __m512 dw = float_halves(fp16_at(r0), fp16_at(r1));
            UNROLL for (int ia = 0; ia < na; ia++) {
                const __m512i s = _mm512_dpbusd_epi32(start[ia], q, a[ia]);
                acc[iw][ia] = _mm512_fmadd_ps(_mm512_mul_ps(dw, da[ia]), _mm512_cvtepi32_ps(s), acc[iw][ia]);
            }
        }
    }
    UNROLL for (int iw = 0; iw < nw; iw++) UNROLL for (int ia = 0; ia < na; ia++) {
        float lo, hi;
        sum_halves(acc[iw][ia], &lo, &hi);
        store_pair(R, T, iw, ia, lo, hi, out, out_stride);
    }
}

/* ---- K formats against Q8_K ---- */

/* The sub-block scales of one row's super-block as int16: the 8 of Q4_K
 * and Q5_K (*sc, in both 128-bit halves) and their 8 mins (*mins); Q6_K's
 * 16 (one per 16 values), the first 8 in *sc and the rest in *sc_hi.
 * Q4_K/Q5_K packing (kquant_scales.h) read four pairs at a time: bytes 0-3
 * scales 0-3, 4-7 mins 0-3, low/high nibbles of 8-11 the low bits of
 * scales/mins 4-7, whose top bits are bits 6-7 of bytes 0-3/4-7. */
INLINE void k_row_scales(enum g4_type type, const uint8_t *blk, __m256i *sc, __m256i *sc_hi, __m128i *mins) {
    if (type == G4_TYPE_Q6_K) {
        const __m128i s8 = _mm_loadu_si128((const __m128i *)(blk + offsetof(block_q6_K, scales)));
        *sc = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8));
        *sc_hi = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(s8, 8)));
        return;
    }
    uint32_t u[3];
    memcpy(u, blk + offsetof(block_q4_K, scales), sizeof u);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    const uint32_t sc_lo = u[0] & m6, min_lo = u[1] & m6;
    const uint32_t sc_top = (u[2] & m4) | ((u[0] >> 6) & m2) << 4;
    const uint32_t min_top = ((u[2] >> 4) & m4) | ((u[1] >> 6) & m2) << 4;
    const __m128i bytes = _mm_setr_epi32((int)sc_lo, (int)sc_top, (int)min_lo, (int)min_top);
    *sc = *sc_hi = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(bytes));
    *mins = _mm_cvtepu8_epi16(_mm_srli_si128(bytes, 8));
}

/* Two 256-bit values as the halves of one register. */
INLINE __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* The int16 scale of every value of sub-block s (32 values) in each half.
 * Q4_K/Q5_K: scale s everywhere; Q6_K: scale 2s in the low 128 bits of a
 * half, 2s+1 in the high 128 bits. Shuffles within 128 bits pick them. */
INLINE __m512i k_sub_scale(enum g4_type type, __m512i sc, __m512i sc_hi, int s) {
    if (type == G4_TYPE_Q6_K) {
        const int j = 2 * (s % 4); /* int16 index inside sc or sc_hi */
        const __m256i pick = _mm256_setr_epi8(2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j,
                                              2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j + 2,
                                              2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3,
                                              2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2, 2 * j + 3, 2 * j + 2,
                                              2 * j + 3);
        return _mm512_shuffle_epi8(s < 4 ? sc : sc_hi, _mm512_broadcast_i64x4(pick));
    }
    return _mm512_shuffle_epi8(sc, _mm512_set1_epi16((short)(2 * s | (2 * s + 1) << 8)));
}

/* Unsigned codes of sub-block s (32 values) of two rows' super-blocks, a
 * row per half (the same row in both when same). */
INLINE __m512i k_codes(enum g4_type type, bool same, const uint8_t *b0, const uint8_t *b1, int s) {
    const __m512i m4 = _mm512_set1_epi8(15);
    if (type == G4_TYPE_Q6_K) {
        /* value 128c + 32r + l: nibble r/2 of ql[64c + 32(r%2) + l], bits 2r of qh[32c + l] */
        const int c = s / 4, r = s % 4;
        const size_t lo_at = offsetof(block_q6_K, ql) + 64 * c + 32 * (r % 2), hi_at = offsetof(block_q6_K, qh) + 32 * c;
        const __m512i l = load_halves(same, b0 + lo_at, b1 + lo_at), h = load_halves(same, b0 + hi_at, b1 + hi_at);
        const __m512i lo = _mm512_and_si512(r < 2 ? l : _mm512_srli_epi16(l, 4), m4);
        /* bits 2r..2r+1 of each byte moved to bits 4..5 (shift counts
         * spelled out: SIMDe under clang takes literal immediates only) */
        __m512i hi2;
        switch (r) {
        case 0: hi2 = _mm512_slli_epi16(h, 4); break;
        case 1: hi2 = _mm512_slli_epi16(h, 2); break;
        case 2: hi2 = h; break;
        default: hi2 = _mm512_srli_epi16(h, 2); break;
        }
        return _mm512_or_si512(lo, _mm512_and_si512(hi2, _mm512_set1_epi8(0x30)));
    }
    /* value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l the high */
    const size_t qs = (type == G4_TYPE_Q5_K ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs)) + 32 * (s / 2);
    const __m512i bits = load_halves(same, b0 + qs, b1 + qs);
    __m512i q = _mm512_and_si512(s % 2 ? _mm512_srli_epi16(bits, 4) : bits, m4);
    if (type == G4_TYPE_Q5_K) { /* bit s of qh[l] is the fifth bit of value 32s + l: 16 added where set */
        const size_t qh = offsetof(block_q5_K, qh);
        const __mmask64 high = _mm512_test_epi8_mask(load_halves(same, b0 + qh, b1 + qh), _mm512_set1_epi8((char)(1 << s)));
        q = _mm512_mask_add_epi8(q, high, q, _mm512_set1_epi8(16));
    }
    return q;
}

/* Sums of 8 activations per sub-block (bsums folded in pairs) of a
 * token's super-block, as 8 int16: what the mins multiply. */
INLINE __m128i q8_K_sub_sums(const uint8_t *blk) {
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q8_K, bsums)));
    return _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
}

/* The min terms of the scalar kernel, per output: Q4_K keeps 4 float
 * lanes (one per pair of sub-blocks), Q5_K one float; both in a 256-bit
 * register per output pair, the low output in lanes 0-3, the high in 4-7
 * (Q5_K: lanes 0 and 4). */
INLINE __m256 k_min_terms(enum g4_type type, __m256i mins, __m256i sub_sums, __m256 dmin, __m256 macc) {
    const __m256i pair = _mm256_madd_epi16(mins, sub_sums);
    if (type == G4_TYPE_Q4_K) return _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(pair), macc);
    const __m256i two = _mm256_hadd_epi32(pair, pair);
    return _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(_mm256_hadd_epi32(two, two)), macc);
}

/* The min terms' share of each output: Q4_K's lanes added as the scalar
 * kernel adds them, (m0+m2)+(m1+m3). */
INLINE void k_min_halves(enum g4_type type, __m256 macc, float *lo, float *hi) {
    if (type == G4_TYPE_Q4_K) {
        macc = _mm256_add_ps(macc, _mm256_permute_ps(macc, _MM_SHUFFLE(1, 0, 3, 2)));
        macc = _mm256_add_ps(macc, _mm256_movehdup_ps(macc));
    }
    *lo = _mm256_cvtss_f32(macc);
    *hi = _mm_cvtss_f32(_mm256_extractf128_ps(macc, 1));
}

/* Per super-block: the scales of the tile's row pairs, then for each
 * sub-block its codes for every row pair against each token's activations
 * (loaded once for all row pairs), then the float work per output. */
INLINE void tile_k(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes, const uint8_t *act,
                   size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q4_K ? sizeof(block_q4_K)
                         : type == G4_TYPE_Q5_K ? sizeof(block_q5_K)
                                                : sizeof(block_q6_K);
    const size_t d_at = type == G4_TYPE_Q6_K ? offsetof(block_q6_K, d) : offsetof(block_q4_K, d);
    const bool same_tok = PAIR_ROWS(R) || T == 1;
    const int nw = NW(R), na = NA(R, T);
    __m512 acc[TILE_R / 2][TILE_T];
    __m256 macc[TILE_R / 2][TILE_T];
    UNROLL for (int iw = 0; iw < nw; iw++) UNROLL for (int ia = 0; ia < na; ia++) {
        acc[iw][ia] = _mm512_setzero_ps();
        macc[iw][ia] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        const uint8_t *ab[TILE_T][2], *wb[TILE_R / 2][2];
        UNROLL for (int ia = 0; ia < na; ia++) UNROLL for (int h = 0; h < 2; h++)
            ab[ia][h] = act + TOK_OF(R, T, ia, h) * act_bytes + b * sizeof(block_q8_K);
        __m512i sc[TILE_R / 2], sc_hi[TILE_R / 2], isum[TILE_R / 2][TILE_T];
        __m256i mins[TILE_R / 2];
        UNROLL for (int iw = 0; iw < nw; iw++) {
            __m256i s0, s0_hi, s1, s1_hi;
            __m128i m0, m1;
            UNROLL for (int h = 0; h < 2; h++) wb[iw][h] = w + ROW_OF(R, iw, h) * row_bytes + b * wsize;
            k_row_scales(type, wb[iw][0], &s0, &s0_hi, &m0);
            k_row_scales(type, wb[iw][1], &s1, &s1_hi, &m1);
            sc[iw] = join(s0, s1);
            sc_hi[iw] = join(s0_hi, s1_hi);
            if (type != G4_TYPE_Q6_K) mins[iw] = _mm256_inserti128_si256(_mm256_castsi128_si256(m0), m1, 1);
            UNROLL for (int ia = 0; ia < na; ia++) isum[iw][ia] = _mm512_setzero_si512();
        }
        UNROLL for (int s = 0; s < 8; s++) {
            __m512i q[TILE_R / 2], scale[TILE_R / 2];
            UNROLL for (int iw = 0; iw < nw; iw++) {
                q[iw] = k_codes(type, !PAIR_ROWS(R), wb[iw][0], wb[iw][1], s);
                scale[iw] = k_sub_scale(type, sc[iw], sc_hi[iw], s);
            }
            UNROLL for (int ia = 0; ia < na; ia++) {
                const size_t at = offsetof(block_q8_K, qs) + 32 * s;
                const __m512i a = load_halves(same_tok, ab[ia][0] + at, ab[ia][1] + at);
                /* Q6_K codes are stored +32 */
                const __m512i a32 = type == G4_TYPE_Q6_K ? _mm512_maddubs_epi16(_mm512_set1_epi8(32), a) : a;
                UNROLL for (int iw = 0; iw < nw; iw++) {
                    __m512i p = _mm512_maddubs_epi16(q[iw], a);
                    if (type == G4_TYPE_Q6_K) p = _mm512_sub_epi16(p, a32);
                    isum[iw][ia] = _mm512_dpwssd_epi32(isum[iw][ia], scale[iw], p);
                }
            }
        }
        UNROLL for (int ia = 0; ia < na; ia++) {
            const float d0 = f32_at(ab[ia][0] + offsetof(block_q8_K, d)), d1 = f32_at(ab[ia][1] + offsetof(block_q8_K, d));
            const __m512 da = float_halves(d0, d1);
            __m256 nda = _mm256_setzero_ps();
            __m256i sub_sums = _mm256_setzero_si256();
            if (type != G4_TYPE_Q6_K) {
                nda = _mm256_blend_ps(_mm256_set1_ps(-d0), _mm256_set1_ps(-d1), 0xf0);
                sub_sums = _mm256_inserti128_si256(_mm256_castsi128_si256(q8_K_sub_sums(ab[ia][0])), q8_K_sub_sums(ab[ia][1]), 1);
            }
            UNROLL for (int iw = 0; iw < nw; iw++) {
                const __m512 dw = float_halves(fp16_at(wb[iw][0] + d_at), fp16_at(wb[iw][1] + d_at));
                acc[iw][ia] = _mm512_fmadd_ps(_mm512_mul_ps(da, dw), _mm512_cvtepi32_ps(isum[iw][ia]), acc[iw][ia]);
                if (type == G4_TYPE_Q6_K) continue;
                const size_t dmin_at = offsetof(block_q4_K, dmin);
                const __m256 dmin = _mm256_mul_ps(
                    nda, _mm256_blend_ps(_mm256_set1_ps(fp16_at(wb[iw][0] + dmin_at)), _mm256_set1_ps(fp16_at(wb[iw][1] + dmin_at)), 0xf0));
                macc[iw][ia] = k_min_terms(type, mins[iw], sub_sums, dmin, macc[iw][ia]);
            }
        }
    }
    UNROLL for (int iw = 0; iw < nw; iw++) UNROLL for (int ia = 0; ia < na; ia++) {
        float lo, hi, mlo = 0.0f, mhi = 0.0f;
        sum_halves(acc[iw][ia], &lo, &hi);
        if (type != G4_TYPE_Q6_K) {
            k_min_halves(type, macc[iw][ia], &mlo, &mhi);
            lo += mlo;
            hi += mhi;
        }
        store_pair(R, T, iw, ia, lo, hi, out, out_stride);
    }
}

/* ---- F16 and BF16 weights against activations of their own type ----
 * The scalar reference adds the f32 products (exact: at most 11-bit
 * significands each) to a double one element at a time, so every output's
 * additions stay in element order and the parallelism comes from rows: a
 * double lane per row, 8 rows per register, FLOAT_GROUPS registers (32
 * rows) in flight to cover the addition's latency. Eight 16-bit values of
 * each of 8 rows are transposed with two vpermt2w, so that a register half
 * holds one element of the 8 rows. vdpbf16ps is not used: it sums pairs
 * in float, which the reference does not. */
#define FLOAT_GROUPS 4

/* vpermt2w indices: output value 8k + r is element k of row r, rows 0-3
 * in the first source (row r at 8r), rows 4-7 in the second (at 32 + 8r'). */
static const uint16_t transpose_idx[2][32] = {
#define T8(k) (k), 8 + (k), 16 + (k), 24 + (k), 32 + (k), 40 + (k), 48 + (k), 56 + (k)
    {T8(0), T8(1), T8(2), T8(3)},
    {T8(4), T8(5), T8(6), T8(7)},
#undef T8
};

/* Elements i..i+7 of 8 rows, as out[k / 4] holding element k of rows 0-7
 * in 16-bit values 8(k % 4) .. 8(k % 4) + 7. */
INLINE void transpose8(const uint8_t *rows, size_t row_bytes, __m512i out[2]) {
    __m512i half[2];
    UNROLL for (int h = 0; h < 2; h++) {
        const uint8_t *r = rows + 4 * h * row_bytes;
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)r));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + row_bytes)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + 2 * row_bytes)), 2);
        half[h] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + 3 * row_bytes)), 3);
    }
    UNROLL for (int k = 0; k < 2; k++)
        out[k] = _mm512_permutex2var_epi16(half[0], _mm512_loadu_si512(transpose_idx[k]), half[1]);
}

/* 16 F16 or BF16 values as floats. */
INLINE __m512 widen16(enum g4_type type, __m256i v) {
    if (type == G4_TYPE_F16) return _mm512_cvtph_ps(v);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

/* 8 F16 or BF16 values as floats. */
INLINE __m256 widen8(enum g4_type type, const uint8_t *p) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    if (type == G4_TYPE_F16) return _mm256_cvtph_ps(v);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

/* G groups of 8 rows against one token's n values (n a multiple of 8):
 * y[r] for the 8G rows. */
INLINE void float_groups(enum g4_type type, int G, int64_t n, const uint8_t *w, size_t row_bytes, const uint8_t *a,
                         float *y) {
    __m512d acc[FLOAT_GROUPS];
    UNROLL for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 8) {
        /* the activations of elements (k, k+1) as [a_k x 8 | a_k+1 x 8] */
        const __m512 a8 = _mm512_castps256_ps512(widen8(type, a + 2 * i));
        __m512 ak[4];
        UNROLL for (int k = 0; k < 4; k++)
            ak[k] = _mm512_permutexvar_ps(_mm512_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1,
                                                            2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                            2 * k + 1),
                                          a8);
        UNROLL for (int g = 0; g < G; g++) {
            __m512i t[2];
            transpose8(w + 8 * g * row_bytes + 2 * i, row_bytes, t);
            UNROLL for (int k = 0; k < 4; k++) {
                const __m256i wk = k % 2 ? _mm512_extracti64x4_epi64(t[k / 2], 1) : _mm512_castsi512_si256(t[k / 2]);
                const __m512 p = _mm512_mul_ps(widen16(type, wk), ak[k]);
                acc[g] = _mm512_add_pd(acc[g], _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
                acc[g] = _mm512_add_pd(acc[g], _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
            }
        }
    }
    UNROLL for (int g = 0; g < G; g++) _mm256_storeu_ps(y + 8 * g, _mm512_cvtpd_ps(acc[g]));
}

/* Rows in blocks of 8 * FLOAT_GROUPS (each block meets every token while
 * it is in cache), then single groups of 8, the rest with the scalar dot. */
INLINE void float_rows(enum g4_type type, int64_t n, const void *vw, size_t row_bytes, int64_t n_rows, const void *vact,
                       size_t act_bytes, int64_t n_tok, float *out, int64_t out_stride) {
    float (*dot)(int64_t, const void *, const void *) = g4_kernels_scalar()->vec_dot[type];
    const uint8_t *w = vw, *act = vact;
    int64_t r = 0;
    if (n % 8 == 0) {
        for (; r + 8 * FLOAT_GROUPS <= n_rows; r += 8 * FLOAT_GROUPS)
            for (int64_t t = 0; t < n_tok; t++)
                float_groups(type, FLOAT_GROUPS, n, w + r * row_bytes, row_bytes, act + t * act_bytes, out + t * out_stride + r);
        for (; r + 8 <= n_rows; r += 8)
            for (int64_t t = 0; t < n_tok; t++)
                float_groups(type, 1, n, w + r * row_bytes, row_bytes, act + t * act_bytes, out + t * out_stride + r);
    }
    for (; r < n_rows; r++)
        for (int64_t t = 0; t < n_tok; t++) out[t * out_stride + r] = dot(n, w + r * row_bytes, act + t * act_bytes);
}

static void f16_rows(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes,
                     int64_t n_tok, float *out, int64_t out_stride) {
    float_rows(G4_TYPE_F16, n, w, row_bytes, n_rows, act, act_bytes, n_tok, out, out_stride);
}

static void bf16_rows(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes,
                      int64_t n_tok, float *out, int64_t out_stride) {
    float_rows(G4_TYPE_BF16, n, w, row_bytes, n_rows, act, act_bytes, n_tok, out, out_stride);
}

KERNELS(q4_0, tile_q32, G4_TYPE_Q4_0)
KERNELS(q8_0, tile_q32, G4_TYPE_Q8_0)
KERNELS(q4_K, tile_k, G4_TYPE_Q4_K)
KERNELS(q5_K, tile_k, G4_TYPE_Q5_K)
KERNELS(q6_K, tile_k, G4_TYPE_Q6_K)

static const g4_kernels avx512 = {
    .isa = "avx512",
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
            [G4_TYPE_BF16] = bf16_rows,
            [G4_TYPE_Q4_0] = q4_0_rows,
            [G4_TYPE_Q8_0] = q8_0_rows,
            [G4_TYPE_Q4_K] = q4_K_rows,
            [G4_TYPE_Q5_K] = q5_K_rows,
            [G4_TYPE_Q6_K] = q6_K_rows,
        },
    .mul_rows_x8 = {[G4_TYPE_Q4_0] = g4_avx512_q4_0_rows_x8, [G4_TYPE_Q4_K] = g4_avx512_q4_K_rows_x8},
    .quantize_act = {[G4_TYPE_Q8_0] = g4_avx512_quantize_q8_0, [G4_TYPE_Q8_K] = g4_avx512_quantize_q8_K},
    .kv_scores = {[G4_TYPE_F32] = g4_avx512_kv_scores_f32, [G4_TYPE_F16] = g4_avx512_kv_scores_f16},
    .kv_accum = {[G4_TYPE_F32] = g4_avx512_kv_accum_f32, [G4_TYPE_F16] = g4_avx512_kv_accum_f16},
};

const g4_kernels *g4_kernels_avx512(void) { return &avx512; }
