/* NEON + dot product kernels for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K.
 *
 * The same lanes as the scalar reference (ggml's x86 AVX2 structure): sdot
 * sums exactly the four products of values 4k..4k+3 into int32 lane k, so
 * the 8 lanes of a 32-value block are two sdot results; one fused
 * multiply-add per block into two float32x4 accumulators; the final sum in
 * the reference's order. The results are the scalar kernels' bits. */
#include <arm_neon.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/arm/dotprod.h"
#include "kernels/isa.h"
#include "kernels/kquant_scales.h"
#include "kernels/tiles.h"

static float fp16_at(const uint8_t *p) {
    g4_fp16 h;
    memcpy(&h, p, sizeof h);
    return g4_fp16_to_fp32(h);
}

/* 8 float lanes as lo = lanes 0-3, hi = lanes 4-7. */
typedef struct {
    float32x4_t lo, hi;
} lanes8;

/* ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), as the scalar sum_lanes8. */
INLINE float sum_lanes(lanes8 v) {
    const float32x4_t r = vaddq_f32(v.lo, v.hi);
    const float32x2_t p = vadd_f32(vget_low_f32(r), vget_high_f32(r));
    return vget_lane_f32(p, 0) + vget_lane_f32(p, 1);
}

/* lanes += d * (float)sum, fused, for the two halves of one block. */
INLINE lanes8 fma_lanes(lanes8 acc, float d, int32x4_t lo, int32x4_t hi) {
    const float32x4_t vd = vdupq_n_f32(d);
    acc.lo = vfmaq_f32(acc.lo, vcvtq_f32_s32(lo), vd);
    acc.hi = vfmaq_f32(acc.hi, vcvtq_f32_s32(hi), vd);
    return acc;
}

/* ---- 32-value blocks against Q8_0 ---- */

/* The 32 signed codes of a Q4_0 or Q8_0 block in value order, and its scale. */
INLINE int8x16x2_t codes32(enum g4_type type, const uint8_t *blk, float *d) {
    *d = fp16_at(blk);
    int8x16x2_t q;
    if (type == G4_TYPE_Q8_0) {
        q.val[0] = vld1q_s8((const int8_t *)blk + offsetof(block_q8_0, qs));
        q.val[1] = vld1q_s8((const int8_t *)blk + offsetof(block_q8_0, qs) + 16);
        return q;
    }
    const uint8x16_t b = vld1q_u8(blk + offsetof(block_q4_0, qs));
    const int8x16_t eight = vdupq_n_s8(8);
    q.val[0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(15))), eight);
    q.val[1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), eight);
    return q;
}

INLINE void tile_q32(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes,
                     const uint8_t *act, size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    const int32x4_t zero = vdupq_n_s32(0);
    lanes8 acc[TILE_R][TILE_T];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t].lo = acc[r][t].hi = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / G4_QK; b++) {
        int8x16x2_t a[TILE_T];
        float da[TILE_T];
        for (int t = 0; t < T; t++) {
            const uint8_t *blk = act + t * act_bytes + b * sizeof(block_q8_0);
            da[t] = fp16_at(blk);
            a[t].val[0] = vld1q_s8((const int8_t *)blk + offsetof(block_q8_0, qs));
            a[t].val[1] = vld1q_s8((const int8_t *)blk + offsetof(block_q8_0, qs) + 16);
        }
        for (int r = 0; r < R; r++) {
            float dw;
            const int8x16x2_t q = codes32(type, w + r * row_bytes + b * wsize, &dw);
            for (int t = 0; t < T; t++)
                acc[r][t] = fma_lanes(acc[r][t], dw * da[t], vdotq_s32(zero, q.val[0], a[t].val[0]),
                                      vdotq_s32(zero, q.val[1], a[t].val[1]));
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[t * out_stride + r] = sum_lanes(acc[r][t]);
}

/* ---- K formats against Q8_K ---- */

/* One super-block of one row, unpacked: the signed codes of value i in
 * q[i / 16] (Q6_K's offset of 32 removed), the scale of values 16j..16j+15
 * in sc[j], and for Q4_K/Q5_K the eight mins. */
typedef struct {
    int8x16_t q[16];
    int32_t sc[16], mins[8];
    float d, dmin;
} k_block;

INLINE void unpack_k(enum g4_type type, const uint8_t *blk, k_block *u) {
    const uint8x16_t m4 = vdupq_n_u8(15), m2 = vdupq_n_u8(3);
    if (type == G4_TYPE_Q6_K) {
        const uint8_t *ql = blk + offsetof(block_q6_K, ql), *qh = blk + offsetof(block_q6_K, qh);
        const int8_t *scales = (const int8_t *)blk + offsetof(block_q6_K, scales);
        const int8x16_t m32 = vdupq_n_s8(32);
        /* value 128c + 32r + l: nibble r/2 of ql[64c + 32(r%2) + l], bits 2r of qh[32c + l] */
        for (int c = 0; c < 2; c++)
            for (int half = 0; half < 2; half++) {
                const uint8x16_t l0 = vld1q_u8(ql + 64 * c + 16 * half), l1 = vld1q_u8(ql + 64 * c + 32 + 16 * half);
                const uint8x16_t h = vld1q_u8(qh + 32 * c + 16 * half);
                const uint8x16_t v[4] = {
                    vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(h, m2), 4)),
                    vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 2), m2), 4)),
                    vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 4), m2), 4)),
                    vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(h, 6), 4)),
                };
                for (int r = 0; r < 4; r++) u->q[8 * c + 2 * r + half] = vsubq_s8(vreinterpretq_s8_u8(v[r]), m32);
            }
        for (int j = 0; j < 16; j++) u->sc[j] = scales[j];
        u->d = fp16_at(blk + offsetof(block_q6_K, d));
        return;
    }
    /* Q4_K and Q5_K share the head: d, dmin, 12 bytes of scales and mins */
    const uint8_t *packed = blk + offsetof(block_q4_K, scales);
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        g4_kquant_scale_min(s, packed, &sc, &m);
        u->sc[2 * s] = u->sc[2 * s + 1] = sc;
        u->mins[s] = m;
    }
    u->d = fp16_at(blk + offsetof(block_q4_K, d));
    u->dmin = fp16_at(blk + offsetof(block_q4_K, dmin));
    const uint8_t *qs = blk + (type == G4_TYPE_Q5_K ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs));
    const uint8_t *qh = blk + offsetof(block_q5_K, qh);
    /* value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l the high;
     * for Q5_K bit s of qh[l] is the fifth bit of value 32s + l */
    for (int j = 0; j < 4; j++)
        for (int half = 0; half < 2; half++) {
            const uint8x16_t bits = vld1q_u8(qs + 32 * j + 16 * half);
            uint8x16_t lo = vandq_u8(bits, m4), hi = vshrq_n_u8(bits, 4);
            if (type == G4_TYPE_Q5_K) {
                const uint8x16_t h = vld1q_u8(qh + 16 * half), sixteen = vdupq_n_u8(16);
                lo = vorrq_u8(lo, vandq_u8(vtstq_u8(h, vdupq_n_u8((uint8_t)(1u << (2 * j)))), sixteen));
                hi = vorrq_u8(hi, vandq_u8(vtstq_u8(h, vdupq_n_u8((uint8_t)(1u << (2 * j + 1)))), sixteen));
            }
            u->q[4 * j + half] = vreinterpretq_s8_u8(lo);
            u->q[4 * j + 2 + half] = vreinterpretq_s8_u8(hi);
        }
}

INLINE void tile_k(enum g4_type type, int R, int T, int64_t n, const uint8_t *w, size_t row_bytes, const uint8_t *act,
                   size_t act_bytes, float *out, int64_t out_stride) {
    const size_t wsize = type == G4_TYPE_Q4_K ? sizeof(block_q4_K)
                         : type == G4_TYPE_Q5_K ? sizeof(block_q5_K)
                                                : sizeof(block_q6_K);
    const int32x4_t zero = vdupq_n_s32(0);
    lanes8 acc[TILE_R][TILE_T];
    float32x4_t min_acc[TILE_R][TILE_T]; /* Q4_K: 4 float lanes of min terms */
    float summs[TILE_R][TILE_T];         /* Q5_K: one float of min terms */
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            acc[r][t].lo = acc[r][t].hi = min_acc[r][t] = vdupq_n_f32(0.0f);
            summs[r][t] = 0.0f;
        }
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        k_block u[TILE_R];
        for (int r = 0; r < R; r++) unpack_k(type, w + r * row_bytes + b * wsize, &u[r]);
        for (int t = 0; t < T; t++) {
            const uint8_t *ablk = act + t * act_bytes + b * sizeof(block_q8_K);
            const int8_t *aq = (const int8_t *)ablk + offsetof(block_q8_K, qs);
            float da;
            memcpy(&da, ablk + offsetof(block_q8_K, d), sizeof da);
            int16_t bsums[16];
            memcpy(bsums, ablk + offsetof(block_q8_K, bsums), sizeof bsums);
            for (int r = 0; r < R; r++) {
                /* lanes 0-3 take the first 16 values of each sub-block, 4-7 the second */
                int32x4_t lo = zero, hi = zero;
                for (int s = 0; s < 8; s++) {
                    const int32x4_t d0 = vdotq_s32(zero, u[r].q[2 * s], vld1q_s8(aq + 32 * s));
                    const int32x4_t d1 = vdotq_s32(zero, u[r].q[2 * s + 1], vld1q_s8(aq + 32 * s + 16));
                    lo = vmlaq_n_s32(lo, d0, u[r].sc[2 * s]);
                    hi = vmlaq_n_s32(hi, d1, u[r].sc[2 * s + 1]);
                }
                acc[r][t] = fma_lanes(acc[r][t], da * u[r].d, lo, hi);
                if (type == G4_TYPE_Q6_K) continue;
                int32_t pair[4];
                for (int m = 0; m < 4; m++)
                    pair[m] = u[r].mins[2 * m] * (bsums[4 * m] + bsums[4 * m + 1]) +
                              u[r].mins[2 * m + 1] * (bsums[4 * m + 2] + bsums[4 * m + 3]);
                const float dmin = -da * u[r].dmin;
                if (type == G4_TYPE_Q4_K)
                    min_acc[r][t] = vfmaq_f32(min_acc[r][t], vcvtq_f32_s32(vld1q_s32(pair)), vdupq_n_f32(dmin));
                else
                    summs[r][t] = fmaf(dmin, (float)(pair[0] + pair[1] + pair[2] + pair[3]), summs[r][t]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float y = sum_lanes(acc[r][t]);
            if (type == G4_TYPE_Q4_K) {
                const float32x2_t m = vadd_f32(vget_low_f32(min_acc[r][t]), vget_high_f32(min_acc[r][t]));
                y += vget_lane_f32(m, 0) + vget_lane_f32(m, 1);
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

static const g4_kernels neon = {
    .isa = "neon",
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
    .mul_rows_x8 = {[G4_TYPE_Q4_0] = g4_neon_q4_0_rows_x8, [G4_TYPE_Q4_K] = g4_neon_q4_K_rows_x8},
};

const g4_kernels *g4_kernels_neon(void) { return &neon; }
