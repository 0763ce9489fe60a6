/* AVX2 kernels for interleaved Q4_0 and Q4_K groups (kernels/repack.h).
 *
 * One 32-byte load holds 4 code bytes of each of 8 rows, row r in 32-bit
 * lane r. Against 4 activation bytes broadcast to every lane, one
 * maddubs gives each row its products, and the lanes stay rows all the way
 * to the output: the nibble unpacking, the int -> float conversion and the
 * scaling are done once for 8 rows, where the plain-layout kernels do them
 * per row. The codes are unsigned (Q4_0 stores value + 8), so the integer
 * sums are corrected by the activation sums, which depend only on the token
 * and are prepared once per call ("side terms", with anything else per
 * token and block that is cheaper read than recomputed per group).
 *
 * int16 headroom: a maddubs lane is at most 2 * 15 * 127 = 3810, and at
 * most 8 of them are added before madd widens to int32. */
#include <immintrin.h>
#include <string.h>

#include "kernels/tiles.h"
#include "kernels/x86/avx2.h"
#include "kernels/x8_groups.h"

/* Software prefetch about 2 KB ahead of the loads (12 Q4_0 blocks, 2 Q4_K
 * super-blocks): one thread's single stream reaches 10-20% more bandwidth
 * than with the hardware prefetcher alone (measured on a 150 MB matrix).
 * Prefetches past the end are harmless hints. */
#define PREFETCH_Q4_0 12
#define PREFETCH_Q4_K 2
/* Tokens per pass over a group: the group's blocks are unpacked once for
 * them, and their accumulators still fit the 16 vector registers. */
#define X8_TOKENS 4

/* 4 activation bytes in every 32-bit lane. */
INLINE __m256i act4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* The 8 rows' fp16 scales as 8 float lanes. */
INLINE __m256 rows_fp16(const g4_fp16 *d) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)); }

/* ---- Q4_0 against Q8_0 ----
 * Side terms, 2 per block: 8 * (sum of the block's activation codes), and
 * its scale as a float (stored as fp16, converting it per group costs more
 * than the group's whole scaling). */

static void q4_0_side(int64_t nb, const uint8_t *act, size_t act_bytes, int64_t n_tok, g4_side_term *side) {
    for (int64_t t = 0; t < n_tok; t++) {
        const block_q8_0 *a = (const block_q8_0 *)(act + (size_t)t * act_bytes);
        for (int64_t b = 0; b < nb; b++) {
            int32_t s = 0;
            for (int j = 0; j < G4_QK; j++) s += a[b].qs[j];
            side[(t * nb + b) * 2].i = 8 * s;
            side[(t * nb + b) * 2 + 1].f = g4_fp16_to_fp32(a[b].d);
        }
    }
}

INLINE void tile_q4_0_x8(int T, int64_t nb, const block_q4_0x8 *g, const uint8_t *act, size_t act_bytes,
                         const g4_side_term *side, float *out, int64_t out_stride) {
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256 acc[X8_TOKENS];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_0x8 *gb = g + b;
        _mm_prefetch((const char *)(gb + PREFETCH_Q4_0), _MM_HINT_T0);
        _mm_prefetch((const char *)(gb + PREFETCH_Q4_0) + 64, _MM_HINT_T0);
        const block_q8_0 *a[X8_TOKENS];
        __m256i s[X8_TOKENS];
        UNROLL for (int t = 0; t < T; t++) {
            a[t] = (const block_q8_0 *)(act + (size_t)t * act_bytes) + b;
            s[t] = _mm256_setzero_si256();
        }
        UNROLL for (int k = 0; k < 4; k++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)gb->qs[k]);
            const __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
            UNROLL for (int t = 0; t < T; t++) {
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(lo, act4(a[t]->qs + 4 * k)));
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(hi, act4(a[t]->qs + 16 + 4 * k)));
            }
        }
        const __m256 dw = rows_fp16(gb->d);
        UNROLL for (int t = 0; t < T; t++) {
            const g4_side_term *st = side + (t * nb + b) * 2;
            const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(s[t], ones), _mm256_set1_epi32(st[0].i));
            const __m256 d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&st[1].f));
            acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

/* ---- Q4_K against Q8_K ----
 * Side terms, 4 per super-block: the activation sums B[s] of its 8
 * sub-blocks as int16 pairs (B0,B2) (B1,B3) (B4,B6) (B5,B7), the order in
 * which the unpacked mins pair up below. */

static void q4_K_side(int64_t nb, const uint8_t *act, size_t act_bytes, int64_t n_tok, g4_side_term *side) {
    static const int order[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};
    for (int64_t t = 0; t < n_tok; t++) {
        const block_q8_K *a = (const block_q8_K *)(act + (size_t)t * act_bytes);
        for (int64_t b = 0; b < nb; b++)
            for (int j = 0; j < 4; j++) {
                const int16_t *bs = a[b].bsums;
                const uint16_t lo = (uint16_t)(bs[2 * order[j][0]] + bs[2 * order[j][0] + 1]);
                const uint16_t hi = (uint16_t)(bs[2 * order[j][1]] + bs[2 * order[j][1] + 1]);
                side[(t * nb + b) * 4 + j].i = (int32_t)((uint32_t)lo | (uint32_t)hi << 16);
            }
    }
}

/* The 6-bit scales and mins of the 8 rows (kquant_scales.h packing), lane r
 * holding row r's four values: sc[0] scales 0-3, sc[1] scales 4-7, mn[0]
 * mins 0-3, mn[1] mins 4-7. Bytes 0-3 hold scales 0-3 and the top bits of
 * scales 4-7, bytes 4-7 the same for mins, bytes 8-11 the low bits of
 * scales 4-7 (low nibbles) and mins 4-7 (high nibbles). */
INLINE void q4_K_scales(const block_q4_Kx8 *gb, __m256i sc[2], __m256i mn[2]) {
    const __m256i w0 = _mm256_loadu_si256((const __m256i *)gb->scales[0]);
    const __m256i w1 = _mm256_loadu_si256((const __m256i *)gb->scales[1]);
    const __m256i w2 = _mm256_loadu_si256((const __m256i *)gb->scales[2]);
    const __m256i m6 = _mm256_set1_epi8(0x3f), m4 = _mm256_set1_epi8(15), top = _mm256_set1_epi8(0x30);
    sc[0] = _mm256_and_si256(w0, m6);
    mn[0] = _mm256_and_si256(w1, m6);
    /* (byte >> 6) << 4 is (byte >> 2) & 0x30; the 16-bit shift only brings
     * the neighbour's bits into bits 6-7, which the mask drops */
    sc[1] = _mm256_or_si256(_mm256_and_si256(w2, m4), _mm256_and_si256(_mm256_srli_epi16(w0, 2), top));
    mn[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(w2, 4), m4), _mm256_and_si256(_mm256_srli_epi16(w1, 2), top));
}

/* Scale of sub-block s (byte s % 4 of sc[s / 4]) as an int16 pair in every
 * lane, for madd against the pair sums of maddubs. s may vary at run time:
 * the shuffle's zeroing indices (0x80) stay negative with s % 4 added. */
INLINE __m256i q4_K_sub_scale(const __m256i sc[2], int s) {
    const char z = (char)0x80;
    const __m256i pick = _mm256_setr_epi8(0, z, 0, z, 4, z, 4, z, 8, z, 8, z, 12, z, 12, z, 0, z, 0, z, 4, z, 4, z, 8, z, 8,
                                          z, 12, z, 12, z);
    return _mm256_shuffle_epi8(sc[s / 4], _mm256_add_epi8(pick, _mm256_set1_epi8((char)(s % 4))));
}

INLINE void tile_q4_K_x8(int T, int64_t nb, const block_q4_Kx8 *g, const uint8_t *act, size_t act_bytes,
                         const g4_side_term *side, float *out, int64_t out_stride) {
    const __m256i m4 = _mm256_set1_epi8(15), even = _mm256_set1_epi16(0xff);
    __m256 acc[X8_TOKENS];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_Kx8 *gb = g + b;
        const block_q8_K *a[X8_TOKENS];
        __m256i isum[X8_TOKENS];
        UNROLL for (int t = 0; t < T; t++) {
            a[t] = (const block_q8_K *)(act + (size_t)t * act_bytes) + b;
            isum[t] = _mm256_setzero_si256();
        }
        __m256i sc[2], mn[2];
        _mm_prefetch((const char *)(gb + PREFETCH_Q4_K), _MM_HINT_T0);
        _mm_prefetch((const char *)(gb + PREFETCH_Q4_K) + 64, _MM_HINT_T0);
        q4_K_scales(gb, sc, mn);
        /* a rolled loop: unrolled, GCC interleaves the four chunks and spills
         * (measured 25-35% slower at 1 and 4 tokens) */
        _Pragma("GCC unroll 1") for (int c = 0; c < 4; c++) {
            __m256i s_lo[X8_TOKENS], s_hi[X8_TOKENS];
            UNROLL for (int t = 0; t < T; t++) s_lo[t] = s_hi[t] = _mm256_setzero_si256();
            UNROLL for (int k = 0; k < 8; k++) {
                if (k % 2 == 0) _mm_prefetch((const char *)gb[PREFETCH_Q4_K].qs[c][k], _MM_HINT_T0);
                const __m256i x = _mm256_loadu_si256((const __m256i *)gb->qs[c][k]);
                const __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                UNROLL for (int t = 0; t < T; t++) {
                    const int8_t *q = a[t]->qs + 64 * c + 4 * k;
                    s_lo[t] = _mm256_add_epi16(s_lo[t], _mm256_maddubs_epi16(lo, act4(q)));
                    s_hi[t] = _mm256_add_epi16(s_hi[t], _mm256_maddubs_epi16(hi, act4(q + 32)));
                }
            }
            const __m256i sc_lo = q4_K_sub_scale(sc, 2 * c), sc_hi = q4_K_sub_scale(sc, 2 * c + 1);
            UNROLL for (int t = 0; t < T; t++) {
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s_lo[t], sc_lo));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s_hi[t], sc_hi));
            }
        }
        /* mins as int16 pairs per lane: (m0,m2) (m1,m3) (m4,m6) (m5,m7) */
        const __m256i mp[4] = {_mm256_and_si256(mn[0], even), _mm256_srli_epi16(mn[0], 8), _mm256_and_si256(mn[1], even),
                               _mm256_srli_epi16(mn[1], 8)};
        const __m256 dw = rows_fp16(gb->d), dmw = rows_fp16(gb->dmin);
        UNROLL for (int t = 0; t < T; t++) {
            const g4_side_term *bp = side + (t * nb + b) * 4;
            __m256i msum = _mm256_madd_epi16(mp[0], _mm256_set1_epi32(bp[0].i));
            UNROLL for (int j = 1; j < 4; j++) msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mp[j], _mm256_set1_epi32(bp[j].i)));
            const __m256 da = _mm256_broadcast_ss(&a[t]->d);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum[t]), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dmw, da), _mm256_cvtepi32_ps(msum), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

/* ---- entry points (kernels/x8_groups.h) ---- */

G4_X8_ENTRY(g4_avx2_q4_0_rows_x8, tile_q4_0_x8, block_q4_0x8, q4_0_side, 2, G4_QK, X8_TOKENS)
G4_X8_ENTRY(g4_avx2_q4_K_rows_x8, tile_q4_K_x8, block_q4_Kx8, q4_K_side, 4, G4_QK_K, X8_TOKENS)
