/* NEON + dot product kernels for interleaved Q4_0 and Q4_K groups
 * (kernels/repack.h).
 *
 * A 16-byte load holds 4 code bytes of each of 4 rows, row r in 32-bit lane
 * r, so one sdot by element (4 activation bytes taken from a lane of another
 * register) adds 4 products to each of 4 rows: the two halves of a group
 * (rows 0-3, 4-7) keep one int32x4 and one float32x4 accumulator per token,
 * and the lanes stay rows all the way to the output. Unpacking, scaling and
 * the int -> float conversion are done once for 4 rows, and the group's
 * codes once for X8_TOKENS tokens.
 *
 * The codes are kept unsigned (0..15, valid int8 sdot operands); what their
 * offsets and the Q4_K mins contribute depends only on the activations, so
 * those "side terms" are prepared once per call for every token.
 *
 * int32 headroom: a Q4_K sub-block sum is at most 32 * 15 * 127, times a
 * 6-bit scale, 8 sub-blocks: about 3.1e7. */
#include <arm_neon.h>
#include <string.h>

#include "kernels/arm/dotprod.h"
#include "kernels/repack.h"
#include "kernels/tiles.h"
#include "kernels/x8_groups.h"

/* Tokens per pass over a group: its blocks are unpacked once for them.
 * With 4, Q4_K's inner loop runs from registers and Q4_0 spills only a few
 * float accumulators per block (GCC 12, -O2). */
#define X8_TOKENS 4

/* Lane r of the result: acc + the dot of lane r of w[k] with bytes
 * 4k..4k+3 of a, summed over k < 4. The lanes are written out because sdot
 * by element needs a constant lane, whatever the optimisation level. */
INLINE int32x4_t dot4(int32x4_t acc, const int8x16_t w[4], int8x16_t a) {
    acc = vdotq_laneq_s32(acc, w[0], a, 0);
    acc = vdotq_laneq_s32(acc, w[1], a, 1);
    acc = vdotq_laneq_s32(acc, w[2], a, 2);
    return vdotq_laneq_s32(acc, w[3], a, 3);
}

/* The fp16 scales of 4 rows as float lanes. */
INLINE float32x4_t rows_fp16(const g4_fp16 *d) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d))); }

INLINE float fp16_scalar(g4_fp16 h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return f;
}

/* Byte j of every 32-bit lane of v, as int32 lanes. */
INLINE int32x4_t byte_of_lanes(uint8x16_t v, int j) {
    const uint32x4_t w = vshlq_u32(vreinterpretq_u32_u8(v), vdupq_n_s32(-8 * j));
    return vreinterpretq_s32_u32(vandq_u32(w, vdupq_n_u32(0xff)));
}

/* ---- Q4_0 against Q8_0: codes are value + 8, so the side term of a block
 * is -8 * (sum of its activations), the start of each accumulator ---- */

static void q4_0_side(int64_t nb, const uint8_t *act, size_t act_bytes, int64_t n_tok, g4_side_term *side) {
    for (int64_t t = 0; t < n_tok; t++) {
        const block_q8_0 *a = (const block_q8_0 *)(act + (size_t)t * act_bytes);
        for (int64_t b = 0; b < nb; b++)
            side[t * nb + b].i = -8 * (vaddlvq_s8(vld1q_s8(a[b].qs)) + vaddlvq_s8(vld1q_s8(a[b].qs + 16)));
    }
}

INLINE void tile_q4_0_x8(int T, int64_t nb, const block_q4_0x8 *g, const uint8_t *act, size_t act_bytes,
                         const g4_side_term *side, float *out, int64_t out_stride) {
    const uint8x16_t m4 = vdupq_n_u8(15);
    const int32x4_t zero = vdupq_n_s32(0);
    float32x4_t acc[X8_TOKENS][2];
    UNROLL for (int t = 0; t < T; t++) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_0x8 *gb = g + b;
        int8x16_t a_lo[X8_TOKENS], a_hi[X8_TOKENS];
        float da[X8_TOKENS];
        UNROLL for (int t = 0; t < T; t++) {
            const block_q8_0 *a = (const block_q8_0 *)(act + (size_t)t * act_bytes) + b;
            a_lo[t] = vld1q_s8(a->qs);
            a_hi[t] = vld1q_s8(a->qs + 16);
            da[t] = fp16_scalar(a->d);
        }
        UNROLL for (int h = 0; h < 2; h++) {
            int8x16_t lo[4], hi[4];
            UNROLL for (int k = 0; k < 4; k++) {
                const uint8x16_t x = vld1q_u8(gb->qs[k][4 * h]);
                lo[k] = vreinterpretq_s8_u8(vandq_u8(x, m4));
                hi[k] = vreinterpretq_s8_u8(vshrq_n_u8(x, 4));
            }
            const float32x4_t dw = rows_fp16(gb->d + 4 * h);
            UNROLL for (int t = 0; t < T; t++) {
                /* two chains, so a single token still has independent sdots in flight */
                const int32x4_t s = vaddq_s32(dot4(vdupq_n_s32(side[t * nb + b].i), lo, a_lo[t]), dot4(zero, hi, a_hi[t]));
                acc[t][h] = vfmaq_f32(acc[t][h], vcvtq_f32_s32(s), vmulq_n_f32(dw, da[t]));
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) {
        vst1q_f32(out + t * out_stride, acc[t][0]);
        vst1q_f32(out + t * out_stride + 4, acc[t][1]);
    }
}

/* ---- Q4_K against Q8_K ----
 * Side terms, 16 bytes per super-block (4 int32 words): the activation sums
 * B[s] of its 8 sub-blocks, each split as B = 64 * hi + lo with lo in 0..63
 * so that both parts are int8 (|B| <= 32 * 127): hi[0..7], then lo[0..7].
 * The mins term of a row is then four sdots by element against its mins. */

static void q4_K_side(int64_t nb, const uint8_t *act, size_t act_bytes, int64_t n_tok, g4_side_term *side) {
    for (int64_t t = 0; t < n_tok; t++) {
        const block_q8_K *a = (const block_q8_K *)(act + (size_t)t * act_bytes);
        for (int64_t b = 0; b < nb; b++) {
            int8_t parts[16];
            for (int s = 0; s < 8; s++) {
                const int sum = a[b].bsums[2 * s] + a[b].bsums[2 * s + 1];
                const int lo = (int)((unsigned)sum & 63u);
                parts[s] = (int8_t)((sum - lo) / 64);
                parts[8 + s] = (int8_t)lo;
            }
            memcpy(side + (t * nb + b) * 4, parts, sizeof parts);
        }
    }
}

/* The 6-bit scales and mins of rows 4h..4h+3 (kquant_scales.h packing), lane
 * r holding its row's four values: sc[0] scales 0-3, sc[1] scales 4-7, mn[0]
 * mins 0-3, mn[1] mins 4-7. Bytes 0-3 hold scales 0-3 and the top bits of
 * scales 4-7, bytes 4-7 the same for mins, bytes 8-11 the low bits of scales
 * 4-7 (low nibbles) and mins 4-7 (high nibbles). */
INLINE void q4_K_scales(const block_q4_Kx8 *gb, int h, uint8x16_t sc[2], int8x16_t mn[2]) {
    const uint8x16_t w0 = vld1q_u8(gb->scales[0][4 * h]), w1 = vld1q_u8(gb->scales[1][4 * h]);
    const uint8x16_t w2 = vld1q_u8(gb->scales[2][4 * h]);
    const uint8x16_t m6 = vdupq_n_u8(63), m4 = vdupq_n_u8(15);
    sc[0] = vandq_u8(w0, m6);
    sc[1] = vorrq_u8(vandq_u8(w2, m4), vshlq_n_u8(vshrq_n_u8(w0, 6), 4));
    mn[0] = vreinterpretq_s8_u8(vandq_u8(w1, m6));
    mn[1] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(w2, 4), vshlq_n_u8(vshrq_n_u8(w1, 6), 4)));
}

INLINE void tile_q4_K_x8(int T, int64_t nb, const block_q4_Kx8 *g, const uint8_t *act, size_t act_bytes,
                         const g4_side_term *side, float *out, int64_t out_stride) {
    const uint8x16_t m4 = vdupq_n_u8(15);
    const int32x4_t zero = vdupq_n_s32(0);
    float32x4_t acc[X8_TOKENS][2];
    UNROLL for (int t = 0; t < T; t++) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_Kx8 *gb = g + b;
        const block_q8_K *a[X8_TOKENS];
        UNROLL for (int t = 0; t < T; t++) a[t] = (const block_q8_K *)(act + (size_t)t * act_bytes) + b;
        UNROLL for (int h = 0; h < 2; h++) {
            uint8x16_t sc[2];
            int8x16_t mn[2];
            q4_K_scales(gb, h, sc, mn);
            int32x4_t scale[8], isum[X8_TOKENS];
            UNROLL for (int s = 0; s < 8; s++) scale[s] = byte_of_lanes(sc[s / 4], s % 4);
            UNROLL for (int t = 0; t < T; t++) isum[t] = zero;
            /* qs[c] holds sub-blocks 2c (low nibbles) and 2c + 1 (high).
             * A rolled loop: unrolled, GCC 12 interleaves the four bodies
             * and spills about one vector per sdot at 4 tokens. */
            _Pragma("GCC unroll 1") for (int c = 0; c < 4; c++) {
                int8x16_t lo[8], hi[8];
                UNROLL for (int k = 0; k < 8; k++) {
                    const uint8x16_t x = vld1q_u8(gb->qs[c][k][4 * h]);
                    lo[k] = vreinterpretq_s8_u8(vandq_u8(x, m4));
                    hi[k] = vreinterpretq_s8_u8(vshrq_n_u8(x, 4));
                }
                UNROLL for (int t = 0; t < T; t++) {
                    const int8_t *aq = a[t]->qs + 64 * c;
                    const int32x4_t d_lo = dot4(dot4(zero, lo, vld1q_s8(aq)), lo + 4, vld1q_s8(aq + 16));
                    const int32x4_t d_hi = dot4(dot4(zero, hi, vld1q_s8(aq + 32)), hi + 4, vld1q_s8(aq + 48));
                    isum[t] = vmlaq_s32(vmlaq_s32(isum[t], d_lo, scale[2 * c]), d_hi, scale[2 * c + 1]);
                }
            }
            const float32x4_t dw = rows_fp16(gb->d + 4 * h), dmw = rows_fp16(gb->dmin + 4 * h);
            UNROLL for (int t = 0; t < T; t++) {
                const int8x16_t parts = vld1q_s8((const int8_t *)(side + (t * nb + b) * 4));
                const int32x4_t hi = vdotq_laneq_s32(vdotq_laneq_s32(zero, mn[0], parts, 0), mn[1], parts, 1);
                const int32x4_t lo = vdotq_laneq_s32(vdotq_laneq_s32(zero, mn[0], parts, 2), mn[1], parts, 3);
                const int32x4_t msum = vaddq_s32(vshlq_n_s32(hi, 6), lo);
                acc[t][h] = vfmaq_f32(acc[t][h], vcvtq_f32_s32(isum[t]), vmulq_n_f32(dw, a[t]->d));
                acc[t][h] = vfmsq_f32(acc[t][h], vcvtq_f32_s32(msum), vmulq_n_f32(dmw, a[t]->d));
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) {
        vst1q_f32(out + t * out_stride, acc[t][0]);
        vst1q_f32(out + t * out_stride + 4, acc[t][1]);
    }
}

/* ---- entry points (kernels/x8_groups.h) ---- */

G4_X8_ENTRY(g4_neon_q4_0_rows_x8, tile_q4_0_x8, block_q4_0x8, q4_0_side, 1, G4_QK, X8_TOKENS)
G4_X8_ENTRY(g4_neon_q4_K_rows_x8, tile_q4_K_x8, block_q4_Kx8, q4_K_side, 4, G4_QK_K, X8_TOKENS)
