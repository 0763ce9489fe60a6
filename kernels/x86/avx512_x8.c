/* AVX-512 kernels for interleaved Q4_0 and Q4_K groups (kernels/repack.h).
 *
 * The layout is the 8-row groups every ISA shares; these kernels take two
 * groups at a time. One 512-bit register holds 4 code bytes of each of 16
 * rows, group g's rows in the low half and group g + 1's in the high half,
 * and one vpdpbusd multiplies them by 4 broadcast activation bytes and adds
 * the 4 products into each row's 32-bit lane, where AVX2 needs maddubs and
 * a widening madd. A lone last group goes into both halves, and the low
 * half is stored. (A 16-row layout would spare one insert per 64 bytes,
 * but would make the group width differ per ISA for the load-time
 * repacking, the matmul driver and the expert stacks, whose row counts
 * need only be multiples of 8: a cost for a gain that could not be
 * measured where these kernels were written, a CPU without AVX-512.)
 *
 * As in AVX2's kernels, lanes stay rows up to the output, so the float sums
 * run in another order than vec_dot's (kernels.h), and what depends only
 * on a token is prepared once per call as side terms (x8_groups.h). */
#include <string.h>

#include "kernels/tiles.h"
#include "kernels/x86/avx512.h"
#include "kernels/x86/simd.h"
#include "kernels/x8_groups.h"

/* Software prefetch about 2 KB ahead in each group's stream (as AVX2). */
#define PREFETCH_Q4_0 12
#define PREFETCH_Q4_K 2
/* Tokens per pass over a pair of groups. */
#define X_TOKENS 4

/* 4 activation bytes in every 32-bit lane. */
INLINE __m512i act4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* 32 bytes of group g0 in the low half and of g1 in the high half (G == 2),
 * or of g0 in both (G == 1). */
INLINE __m512i groups32(int G, const void *p0, const void *p1) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)p0);
    if (G == 1) return _mm512_broadcast_i64x4(lo);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* The 16 (G == 2) or 8 (twice) rows' fp16 scales as float lanes. */
INLINE __m512 groups_fp16(int G, const g4_fp16 *d0, const g4_fp16 *d1) {
    const __m128i lo = _mm_loadu_si128((const __m128i *)d0);
    if (G == 1) return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(lo));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_loadu_si128((const __m128i *)d1), 1));
}

INLINE void store_rows(int G, float *out, __m512 v) {
    if (G == 2) _mm512_storeu_ps(out, v);
    else _mm256_storeu_ps(out, _mm512_castps512_ps256(v));
}

/* The driver, as g4_x8_run (x8_groups.h) but over pairs of groups: side
 * terms for a chunk of tokens on the stack, then each pair of groups (or
 * the lone last one) meets the chunk's tokens X_TOKENS at a time, staying
 * in L1 while they pass. tiles[G - 1] serves G groups. */
typedef void pair_tile(int T, int64_t nb, const uint8_t *g0, const uint8_t *g1, const uint8_t *act, size_t act_bytes,
                       const g4_side_term *side, float *out, int64_t out_stride);

static void run_pairs(pair_tile *const tiles[2], g4_x8_side *make_side, int64_t per_block, int64_t nb, const void *w,
                      size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes, int64_t n_tok, float *out,
                      int64_t out_stride) {
    g4_side_term side[G4_X8_SIDE_TERMS];
    const int64_t per_token = nb * per_block;
    int64_t chunk = G4_X8_SIDE_TERMS / per_token; /* >= 1 for rows up to G4_X8_MAX_IN */
    if (chunk > X_TOKENS) chunk -= chunk % X_TOKENS;
    for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
        const int64_t n = n_tok - t0 < chunk ? n_tok - t0 : chunk;
        const uint8_t *a = (const uint8_t *)act + (size_t)t0 * act_bytes;
        make_side(nb, a, act_bytes, n, side);
        for (int64_t r = 0; r < n_rows;) {
            const int G = n_rows - r >= 2 * G4_REPACK_ROWS ? 2 : 1;
            const uint8_t *g0 = (const uint8_t *)w + (size_t)r * row_bytes;
            const uint8_t *g1 = g0 + (size_t)(G - 1) * G4_REPACK_ROWS * row_bytes;
            for (int64_t t = 0; t < n; t += X_TOKENS) {
                const int T = (int)(n - t < X_TOKENS ? n - t : X_TOKENS);
                tiles[G - 1](T, nb, g0, g1, a + (size_t)t * act_bytes, act_bytes, side + t * per_token,
                             out + (t0 + t) * out_stride + r, out_stride);
            }
            r += G * G4_REPACK_ROWS;
        }
    }
}

/* An entry point from a tile body taking G and T as constants, so that
 * each (G, T) gets its own loop nest with the accumulators in registers. */
#define PAIR_ENTRY(name, tile, block_t, side_fn, per_block, qk)                                                      \
    static_assert((per_block) * 8 <= (qk), #name ": more side terms per value than G4_X8_SIDE_TERMS allows");        \
    static void name##_g1(int T, int64_t nb, const uint8_t *g0, const uint8_t *g1, const uint8_t *act,               \
                          size_t act_bytes, const g4_side_term *side, float *out, int64_t out_stride) {              \
        const block_t *b0 = (const block_t *)g0, *b1 = (const block_t *)g1;                                         \
        switch (T) {                                                                                                 \
        case 1: tile(1, 1, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                                \
        case 2: tile(1, 2, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                                \
        case 3: tile(1, 3, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                                \
        default: tile(1, 4, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                               \
        }                                                                                                            \
    }                                                                                                                \
    static void name##_g2(int T, int64_t nb, const uint8_t *g0, const uint8_t *g1, const uint8_t *act,               \
                          size_t act_bytes, const g4_side_term *side, float *out, int64_t out_stride) {              \
        const block_t *b0 = (const block_t *)g0, *b1 = (const block_t *)g1;                                         \
        switch (T) {                                                                                                 \
        case 1: tile(2, 1, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                                \
        case 2: tile(2, 2, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                                \
        case 3: tile(2, 3, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                                \
        default: tile(2, 4, nb, b0, b1, act, act_bytes, side, out, out_stride); break;                               \
        }                                                                                                            \
    }                                                                                                                \
    void name(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act, size_t act_bytes,          \
              int64_t n_tok, float *out, int64_t out_stride) {                                                       \
        static pair_tile *const tiles[2] = {name##_g1, name##_g2};                                                   \
        run_pairs(tiles, side_fn, per_block, n / (qk), w, row_bytes, n_rows, act, act_bytes, n_tok, out, out_stride); \
    }

/* ---- Q4_0 against Q8_0 ----
 * Side terms, 2 per block: 8 * (sum of the block's activation codes), which
 * the sums start from negated (the codes are stored value + 8), and its
 * scale as a float. */

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

INLINE void tile_q4_0(int G, int T, int64_t nb, const block_q4_0x8 *g0, const block_q4_0x8 *g1, const uint8_t *act,
                      size_t act_bytes, const g4_side_term *side, float *out, int64_t out_stride) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[X_TOKENS];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_0x8 *b0 = g0 + b, *b1 = g1 + b;
        _mm_prefetch((const char *)(b0 + PREFETCH_Q4_0), _MM_HINT_T0);
        _mm_prefetch((const char *)(b0 + PREFETCH_Q4_0) + 64, _MM_HINT_T0);
        if (G == 2) {
            _mm_prefetch((const char *)(b1 + PREFETCH_Q4_0), _MM_HINT_T0);
            _mm_prefetch((const char *)(b1 + PREFETCH_Q4_0) + 64, _MM_HINT_T0);
        }
        const block_q8_0 *a[X_TOKENS];
        __m512i s[X_TOKENS];
        UNROLL for (int t = 0; t < T; t++) {
            a[t] = (const block_q8_0 *)(act + (size_t)t * act_bytes) + b;
            s[t] = _mm512_set1_epi32(-side[(t * nb + b) * 2].i);
        }
        UNROLL for (int k = 0; k < 4; k++) {
            const __m512i x = groups32(G, b0->qs[k], b1->qs[k]);
            const __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
            UNROLL for (int t = 0; t < T; t++) {
                s[t] = _mm512_dpbusd_epi32(s[t], lo, act4(a[t]->qs + 4 * k));
                s[t] = _mm512_dpbusd_epi32(s[t], hi, act4(a[t]->qs + 16 + 4 * k));
            }
        }
        const __m512 dw = groups_fp16(G, b0->d, b1->d);
        UNROLL for (int t = 0; t < T; t++) {
            const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(side[(t * nb + b) * 2 + 1].f));
            acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s[t]), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) store_rows(G, out + t * out_stride, acc[t]);
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

/* The 6-bit scales and mins of the rows (kquant_scales.h packing), lane r
 * holding row r's four values: sc[0] scales 0-3, sc[1] scales 4-7, mn[0]
 * mins 0-3, mn[1] mins 4-7 (as AVX2's q4_K_scales, 16 rows wide). */
INLINE void q4_K_scales(int G, const block_q4_Kx8 *b0, const block_q4_Kx8 *b1, __m512i sc[2], __m512i mn[2]) {
    const __m512i w0 = groups32(G, b0->scales[0], b1->scales[0]);
    const __m512i w1 = groups32(G, b0->scales[1], b1->scales[1]);
    const __m512i w2 = groups32(G, b0->scales[2], b1->scales[2]);
    const __m512i m6 = _mm512_set1_epi8(0x3f), m4 = _mm512_set1_epi8(15), top = _mm512_set1_epi8(0x30);
    sc[0] = _mm512_and_si512(w0, m6);
    mn[0] = _mm512_and_si512(w1, m6);
    /* (byte >> 6) << 4 is (byte >> 2) & 0x30; the 16-bit shift only brings
     * the neighbour's bits into bits 6-7, which the mask drops */
    sc[1] = _mm512_or_si512(_mm512_and_si512(w2, m4), _mm512_and_si512(_mm512_srli_epi16(w0, 2), top));
    mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(w2, 4), m4), _mm512_and_si512(_mm512_srli_epi16(w1, 2), top));
}

/* Byte j of every 32-bit lane of v as an int32 (0 <= j < 4, known only at
 * run time in the rolled loop below): the shuffle picks byte 4d + j for
 * lane d of each 128-bit block and zeroes the rest with indices whose top
 * bit stays set with j added. */
INLINE __m512i byte_lanes(__m512i v, int j) {
    const __m512i pick = _mm512_set4_epi32((int)0x8080800c, (int)0x80808008, (int)0x80808004, (int)0x80808000);
    return _mm512_shuffle_epi8(v, _mm512_add_epi8(pick, _mm512_set1_epi8((char)j)));
}

/* Per chunk c (values 64c..64c+63: sub-blocks 2c in the low nibbles, 2c+1
 * in the high), vpdpbusd sums 16 products per row at a time (4 code bytes
 * of 4 k), at most 16 * 15 * 128 = 30720 in magnitude, so the 32-bit sum
 * is also its own low int16 and vpdpwssd against the scale (an int16 with
 * a zero partner) scales it and adds it to the row's total in one step. */
INLINE void tile_q4_K(int G, int T, int64_t nb, const block_q4_Kx8 *g0, const block_q4_Kx8 *g1, const uint8_t *act,
                      size_t act_bytes, const g4_side_term *side, float *out, int64_t out_stride) {
    const __m512i m4 = _mm512_set1_epi8(15), even = _mm512_set1_epi16(0xff);
    __m512 acc[X_TOKENS];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_Kx8 *b0 = g0 + b, *b1 = g1 + b;
        const block_q8_K *a[X_TOKENS];
        __m512i isum[X_TOKENS];
        UNROLL for (int t = 0; t < T; t++) {
            a[t] = (const block_q8_K *)(act + (size_t)t * act_bytes) + b;
            isum[t] = _mm512_setzero_si512();
        }
        _mm_prefetch((const char *)(b0 + PREFETCH_Q4_K), _MM_HINT_T0);
        _mm_prefetch((const char *)(b0 + PREFETCH_Q4_K) + 64, _MM_HINT_T0);
        if (G == 2) {
            _mm_prefetch((const char *)(b1 + PREFETCH_Q4_K), _MM_HINT_T0);
            _mm_prefetch((const char *)(b1 + PREFETCH_Q4_K) + 64, _MM_HINT_T0);
        }
        __m512i sc[2], mn[2];
        q4_K_scales(G, b0, b1, sc, mn);
        /* rolled, as AVX2's: unrolled, the compiler interleaves the chunks
         * and runs out of registers */
        _Pragma("GCC unroll 1") for (int c = 0; c < 4; c++) {
            const __m512i scv = sc[c / 2];
            const __m512i sc_lo = byte_lanes(scv, 2 * (c % 2)), sc_hi = byte_lanes(scv, 2 * (c % 2) + 1);
            UNROLL for (int k0 = 0; k0 < 8; k0 += 4) {
                __m512i s_lo[X_TOKENS], s_hi[X_TOKENS];
                UNROLL for (int t = 0; t < T; t++) s_lo[t] = s_hi[t] = _mm512_setzero_si512();
                UNROLL for (int k = k0; k < k0 + 4; k++) {
                    if (k % 2 == 0) {
                        _mm_prefetch((const char *)b0[PREFETCH_Q4_K].qs[c][k], _MM_HINT_T0);
                        if (G == 2) _mm_prefetch((const char *)b1[PREFETCH_Q4_K].qs[c][k], _MM_HINT_T0);
                    }
                    const __m512i x = groups32(G, b0->qs[c][k], b1->qs[c][k]);
                    const __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
                    UNROLL for (int t = 0; t < T; t++) {
                        const int8_t *q = a[t]->qs + 64 * c + 4 * k;
                        s_lo[t] = _mm512_dpbusd_epi32(s_lo[t], lo, act4(q));
                        s_hi[t] = _mm512_dpbusd_epi32(s_hi[t], hi, act4(q + 32));
                    }
                }
                UNROLL for (int t = 0; t < T; t++) {
                    isum[t] = _mm512_dpwssd_epi32(isum[t], s_lo[t], sc_lo);
                    isum[t] = _mm512_dpwssd_epi32(isum[t], s_hi[t], sc_hi);
                }
            }
        }
        /* mins as int16 pairs per lane: (m0,m2) (m1,m3) (m4,m6) (m5,m7) */
        const __m512i mp[4] = {_mm512_and_si512(mn[0], even), _mm512_srli_epi16(mn[0], 8), _mm512_and_si512(mn[1], even),
                               _mm512_srli_epi16(mn[1], 8)};
        const __m512 dw = groups_fp16(G, b0->d, b1->d), dmw = groups_fp16(G, b0->dmin, b1->dmin);
        UNROLL for (int t = 0; t < T; t++) {
            const g4_side_term *bp = side + (t * nb + b) * 4;
            __m512i msum = _mm512_madd_epi16(mp[0], _mm512_set1_epi32(bp[0].i));
            UNROLL for (int j = 1; j < 4; j++) msum = _mm512_dpwssd_epi32(msum, mp[j], _mm512_set1_epi32(bp[j].i));
            const __m512 da = _mm512_set1_ps(a[t]->d);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum[t]), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dmw, da), _mm512_cvtepi32_ps(msum), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) store_rows(G, out + t * out_stride, acc[t]);
}

/* ---- entry points ---- */

PAIR_ENTRY(g4_avx512_q4_0_rows_x8, tile_q4_0, block_q4_0x8, q4_0_side, 2, G4_QK)
PAIR_ENTRY(g4_avx512_q4_K_rows_x8, tile_q4_K, block_q4_Kx8, q4_K_side, 4, G4_QK_K)
