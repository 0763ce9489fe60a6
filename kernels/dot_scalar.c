/* Scalar reference kernels: the activation quantizers and one dot product
 * per weight type. They repeat ggml's CPU numerics operation by operation
 * (the x86 activation quantizers; the x86 AVX2 kernels' lanes for Q4_0,
 * Q8_0, Q4_K, Q5_K and Q6_K; the generic vec_dot_* functions for the rest),
 * so every float rounding happens where ggml's happens. SIMD tables must
 * give the same bits as these. */
#include <math.h>
#include <string.h>

#include "kernels/attn.h"
#include "kernels/kernels.h"
#include "kernels/kquant_scales.h"

/* ggml's order of float operations is part of the result: never let the
 * compiler fuse a multiply and an add. (GCC already does not in ISO C mode.) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define FP16(h) g4_fp16_to_fp32(h)

/* ---- activation quantizers ---- */

/* One 32-value block with the x86 rule: d = amax/127, codes rne(x*127/amax).
 * Returns the unrounded d and the sum of the codes (Q8_1 needs both). */
static float quantize_block_q8(const float *x, int8_t *q, int *sum) {
    float amax = 0.0f;
    for (int i = 0; i < G4_QK; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int s = 0;
    for (int i = 0; i < G4_QK; i++) {
        q[i] = (int8_t)lrintf(x[i] * id);
        s += q[i];
    }
    *sum = s;
    return amax / 127.0f;
}

static void quantize_q8_0(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / G4_QK; b++) {
        int sum;
        y[b].d = g4_fp32_to_fp16(quantize_block_q8(x + b * G4_QK, y[b].qs, &sum));
    }
}

static void quantize_q8_1(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / G4_QK; b++) {
        int sum;
        const float d = quantize_block_q8(x + b * G4_QK, y[b].qs, &sum);
        y[b].d = g4_fp32_to_fp16(d);
        y[b].s = g4_fp32_to_fp16(d * (float)sum);
    }
}

/* ggml's quantize_row_q8_K_ref (x86 uses it too): the scale comes from the
 * signed value of largest magnitude, d = 1/iscale stays a float. */
static void quantize_q8_K(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / G4_QK_K; b++, x += G4_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < G4_QK_K; i++) {
            if (fabsf(x[i]) > amax) {
                amax = fabsf(x[i]);
                max = x[i];
            }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (amax == 0.0f) continue;
        const float iscale = -127.0f / max;
        for (int i = 0; i < G4_QK_K; i++) {
            const long v = lrintf(iscale * x[i]);
            y[b].qs[i] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < G4_QK_K / 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += y[b].qs[16 * j + i];
            y[b].bsums[j] = (int16_t)s;
        }
        y[b].d = 1.0f / iscale;
    }
}

static void quantize_f16(const float *x, void *vy, int64_t n) {
    g4_fp16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = g4_fp32_to_fp16(x[i]);
}

static void quantize_bf16(const float *x, void *vy, int64_t n) {
    g4_bf16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = g4_fp32_to_bf16(x[i]);
}

/* ---- float dot products: f32 products summed in double ---- */

static float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(w[i] * a[i]);
    return (float)sum;
}

static float dot_f16(int64_t n, const void *vw, const void *va) {
    const g4_fp16 *w = vw, *a = va;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(FP16(w[i]) * FP16(a[i]));
    return (float)sum;
}

static float dot_bf16(int64_t n, const void *vw, const void *va) {
    const g4_bf16 *w = vw, *a = va;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(g4_bf16_to_fp32(w[i]) * g4_bf16_to_fp32(a[i]));
    return (float)sum;
}

/* ---- 32-value formats: integer block sums times the two scales ---- */

/* ggml's x86 kernels for the 32-wide formats keep 8 float lanes: lane k
 * gets d_w*d_a times the integer sum of elements 4k..4k+3 of each block (one
 * fused multiply-add), and the lanes are added up at the end in the order
 * of its horizontal sum. Doing the same keeps our logits on llama.cpp's. */
static float sum_lanes8(const float l[8]) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

static void block_into_lanes(float lane[8], float d, const int8_t w[G4_QK], const int8_t a[G4_QK]) {
    for (int k = 0; k < 8; k++) {
        int s = 0;
        for (int j = 4 * k; j < 4 * k + 4; j++) s += w[j] * a[j];
        lane[k] = fmaf(d, (float)s, lane[k]);
    }
}

static float dot_q4_0(int64_t n, const void *vw, const void *va) {
    const block_q4_0 *w = vw;
    const block_q8_0 *a = va;
    float lane[8] = {0};
    for (int64_t b = 0; b < n / G4_QK; b++) {
        int8_t q[G4_QK];
        for (int j = 0; j < G4_QK / 2; j++) {
            q[j] = (int8_t)((w[b].qs[j] & 15) - 8);
            q[j + G4_QK / 2] = (int8_t)((w[b].qs[j] >> 4) - 8);
        }
        block_into_lanes(lane, FP16(w[b].d) * FP16(a[b].d), q, a[b].qs);
    }
    return sum_lanes8(lane);
}

static float dot_q4_1(int64_t n, const void *vw, const void *va) {
    const block_q4_1 *w = vw;
    const block_q8_1 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / G4_QK; b++) {
        int s = 0;
        for (int j = 0; j < G4_QK / 2; j++) {
            s += (w[b].qs[j] & 15) * a[b].qs[j];
            s += (w[b].qs[j] >> 4) * a[b].qs[j + G4_QK / 2];
        }
        sum += FP16(w[b].d) * FP16(a[b].d) * (float)s + FP16(w[b].m) * FP16(a[b].s);
    }
    return sum;
}

/* The fifth bits of a Q5 block: bit j belongs to value j. */
static uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static float dot_q5_0(int64_t n, const void *vw, const void *va) {
    const block_q5_0 *w = vw;
    const block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / G4_QK; b++) {
        const uint32_t qh = q5_high_bits(w[b].qh);
        int s = 0;
        for (int j = 0; j < G4_QK / 2; j++) {
            const int lo = (w[b].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (w[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            s += (lo - 16) * a[b].qs[j] + (hi - 16) * a[b].qs[j + G4_QK / 2];
        }
        sum += FP16(w[b].d) * FP16(a[b].d) * (float)s;
    }
    return sum;
}

static float dot_q5_1(int64_t n, const void *vw, const void *va) {
    const block_q5_1 *w = vw;
    const block_q8_1 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / G4_QK; b++) {
        const uint32_t qh = q5_high_bits(w[b].qh);
        int s = 0;
        for (int j = 0; j < G4_QK / 2; j++) {
            const int lo = (w[b].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (w[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            s += lo * a[b].qs[j] + hi * a[b].qs[j + G4_QK / 2];
        }
        sum += FP16(w[b].d) * FP16(a[b].d) * (float)s + FP16(w[b].m) * FP16(a[b].s);
    }
    return sum;
}

static float dot_q8_0(int64_t n, const void *vw, const void *va) {
    const block_q8_0 *w = vw;
    const block_q8_0 *a = va;
    float lane[8] = {0};
    for (int64_t b = 0; b < n / G4_QK; b++) block_into_lanes(lane, FP16(w[b].d) * FP16(a[b].d), w[b].qs, a[b].qs);
    return sum_lanes8(lane);
}

/* Integer dot of 16 IQ4 codes (two per byte, low nibbles first) with the
 * 32 activations they cover. */
static int iq4_dot32(const uint8_t qs[16], const int8_t q8[32]) {
    int s = 0;
    for (int j = 0; j < 16; j++)
        s += g4_iq4nl_values[qs[j] & 15] * q8[j] + g4_iq4nl_values[qs[j] >> 4] * q8[j + 16];
    return s;
}

static float dot_iq4_nl(int64_t n, const void *vw, const void *va) {
    const block_iq4_nl *w = vw;
    const block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / G4_QK; b++)
        sum += FP16(a[b].d) * FP16(w[b].d) * (float)iq4_dot32(w[b].qs, a[b].qs);
    return sum;
}

/* ---- K formats against Q8_K ----
 * Q3_K follows ggml's generic kernel: eight integer lanes (value i goes to
 * lane i % 8), each scaled by the super-block scale separately and added
 * only at the very end. */

typedef struct {
    float lane[8];
} lane_sums;

/* Adds one super-block: w8[i] are the weight codes, scale(i/group) their
 * sub-block scales, d the combined super-block scale. */
static void lanes_add(lane_sums *acc, const int8_t w8[G4_QK_K], const int scales[], int group, const int8_t q8[G4_QK_K],
                      float d) {
    int32_t lane[8] = {0};
    for (int i = 0; i < G4_QK_K; i++) lane[i % 8] += scales[i / group] * (w8[i] * q8[i]);
    for (int l = 0; l < 8; l++) acc->lane[l] += d * (float)lane[l];
}

static float lanes_total(float sum, const lane_sums *acc) {
    for (int l = 0; l < 8; l++) sum += acc->lane[l];
    return sum;
}

static float dot_q2_K(int64_t n, const void *vw, const void *va) {
    const block_q2_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        const uint8_t *sc = w[b].scales;
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += a[b].bsums[j] * (sc[j] >> 4);
        /* value i = 128k + 32j + l sits in bits 2j of byte 32k + l */
        int isum = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) {
                const int i = 16 * g + l;
                s += a[b].qs[i] * ((w[b].qs[32 * (i / 128) + i % 32] >> (2 * ((i / 32) % 4))) & 3);
            }
            isum += (sc[g] & 15) * s;
        }
        const float dall = a[b].d * FP16(w[b].d);
        const float dmin = a[b].d * FP16(w[b].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    return sum;
}

/* The 16 6-bit Q3_K scales (offset 32): low nibbles in bytes 0-7, top two
 * bits in bytes 8-11, four scales per byte. */
static int q3_K_scale(const uint8_t s[12], int j) {
    const int low = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | high << 4) - 32;
}

static float dot_q3_K(int64_t n, const void *vw, const void *va) {
    const block_q3_K *w = vw;
    const block_q8_K *a = va;
    lane_sums acc = {{0}};
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        int8_t w8[G4_QK_K];
        /* value i = 128k + 32j + l: bits 2j of qs[32k + l], high bit 4k + j of hmask[l] */
        for (int i = 0; i < G4_QK_K; i++) {
            const int k = i / 128, j = (i / 32) % 4, l = i % 32;
            const int low = (w[b].qs[32 * k + l] >> (2 * j)) & 3;
            w8[i] = (int8_t)(low - ((w[b].hmask[l] >> (4 * k + j)) & 1 ? 0 : 4));
        }
        int scales[16];
        for (int j = 0; j < 16; j++) scales[j] = q3_K_scale(w[b].scales, j);
        lanes_add(&acc, w8, scales, 16, a[b].qs, FP16(w[b].d) * a[b].d);
    }
    return lanes_total(0.0f, &acc);
}

/* Q4_K, Q5_K and Q6_K follow ggml's x86 AVX2 kernels, which keep 8 float
 * lanes like the 32-wide formats: per super-block, lane k gets the integer
 * sum over the eight 32-value sub-blocks of scale times the products of
 * values 4k..4k+3 of the sub-block, then one fused multiply-add with
 * d_a*d_w. scale16[i/16] is the scale of value i. */
static void k_block_into_lanes(float lane[8], float d, const int8_t w8[G4_QK_K], const int scale16[16],
                               const int8_t q8[G4_QK_K]) {
    for (int k = 0; k < 8; k++) {
        int32_t s = 0;
        for (int sb = 0; sb < 8; sb++)
            for (int i = 32 * sb + 4 * k; i < 32 * sb + 4 * k + 4; i++) s += scale16[i / 16] * (w8[i] * q8[i]);
        lane[k] = fmaf(d, (float)s, lane[k]);
    }
}

/* Q4_K and Q5_K share everything but the codes: 8 sub-blocks of 32 with a
 * 6-bit scale and a 6-bit min each. Unpacks the scales per 16 values and
 * returns the min terms as ggml's AVX2 code pairs them: pair m is
 * min(2m)*bsum(sub-block 2m) + min(2m+1)*bsum(sub-block 2m+1). */
static void k_scales_mins(const block_q8_K *a, const uint8_t packed[12], int scale16[16], int32_t pair[4]) {
    int mins[8];
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        g4_kquant_scale_min(j, packed, &sc, &m);
        scale16[2 * j] = scale16[2 * j + 1] = sc;
        mins[j] = m;
    }
    for (int m = 0; m < 4; m++)
        pair[m] = mins[2 * m] * (a->bsums[4 * m] + a->bsums[4 * m + 1]) +
                  mins[2 * m + 1] * (a->bsums[4 * m + 2] + a->bsums[4 * m + 3]);
}

static float dot_q4_K(int64_t n, const void *vw, const void *va) {
    const block_q4_K *w = vw;
    const block_q8_K *a = va;
    float lane[8] = {0}, min_lane[4] = {0};
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        int8_t w8[G4_QK_K];
        /* value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l the high */
        for (int i = 0; i < G4_QK_K; i++) {
            const uint8_t q = w[b].qs[32 * (i / 64) + i % 32];
            w8[i] = (int8_t)((i % 64) < 32 ? q & 15 : q >> 4);
        }
        int scale16[16];
        int32_t pair[4];
        k_scales_mins(&a[b], w[b].scales, scale16, pair);
        const float dmin = -a[b].d * FP16(w[b].dmin);
        for (int m = 0; m < 4; m++) min_lane[m] = fmaf(dmin, (float)pair[m], min_lane[m]);
        k_block_into_lanes(lane, a[b].d * FP16(w[b].d), w8, scale16, a[b].qs);
    }
    return sum_lanes8(lane) + ((min_lane[0] + min_lane[2]) + (min_lane[1] + min_lane[3]));
}

/* As Q4_K, but the min terms go to one float; ggml writes that
 * `summs += dmin * summ`, which its compiler (fp-contract=fast, FMA on)
 * turns into a fused multiply-add. */
static float dot_q5_K(int64_t n, const void *vw, const void *va) {
    const block_q5_K *w = vw;
    const block_q8_K *a = va;
    float lane[8] = {0}, summs = 0.0f;
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        int8_t w8[G4_QK_K];
        /* as Q4_K, plus bit i/32 of qh[i % 32] as the fifth bit */
        for (int i = 0; i < G4_QK_K; i++) {
            const uint8_t q = w[b].qs[32 * (i / 64) + i % 32];
            const int low = (i % 64) < 32 ? q & 15 : q >> 4;
            w8[i] = (int8_t)(low + ((w[b].qh[i % 32] >> (i / 32)) & 1 ? 16 : 0));
        }
        int scale16[16];
        int32_t pair[4];
        k_scales_mins(&a[b], w[b].scales, scale16, pair);
        summs = fmaf(-a[b].d * FP16(w[b].dmin), (float)(pair[0] + pair[1] + pair[2] + pair[3]), summs);
        k_block_into_lanes(lane, a[b].d * FP16(w[b].d), w8, scale16, a[b].qs);
    }
    return sum_lanes8(lane) + summs;
}

static float dot_q6_K(int64_t n, const void *vw, const void *va) {
    const block_q6_K *w = vw;
    const block_q8_K *a = va;
    float lane[8] = {0};
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        int8_t w8[G4_QK_K];
        /* value 128c + 32r + l: nibble r/2 of ql[64c + 32(r%2) + l], bits 2r of qh[32c + l] */
        for (int i = 0; i < G4_QK_K; i++) {
            const int c = i / 128, r = (i / 32) % 4, l = i % 32;
            const uint8_t ql = w[b].ql[64 * c + 32 * (r % 2) + l];
            const int low = r < 2 ? ql & 15 : ql >> 4;
            const int high = (w[b].qh[32 * c + l] >> (2 * r)) & 3;
            w8[i] = (int8_t)((low | high << 4) - 32);
        }
        int scale16[16];
        for (int j = 0; j < 16; j++) scale16[j] = w[b].scales[j];
        k_block_into_lanes(lane, a[b].d * FP16(w[b].d), w8, scale16, a[b].qs);
    }
    return sum_lanes8(lane);
}

static float dot_iq4_xs(int64_t n, const void *vw, const void *va) {
    const block_iq4_xs *w = vw;
    const block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / G4_QK_K; b++) {
        const float d = FP16(w[b].d) * a[b].d;
        for (int j = 0; j < 8; j++) {
            const int ls = ((w[b].scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((w[b].scales_h >> (2 * j)) & 3) << 4;
            sum += d * (float)(ls - 32) * (float)iq4_dot32(w[b].qs + 16 * j, a[b].qs + 32 * j);
        }
    }
    return sum;
}

static const g4_kernels scalar = {
    .isa = "scalar",
    .vec_dot =
        {
            [G4_TYPE_F32] = dot_f32,
            [G4_TYPE_F16] = dot_f16,
            [G4_TYPE_BF16] = dot_bf16,
            [G4_TYPE_Q4_0] = dot_q4_0,
            [G4_TYPE_Q4_1] = dot_q4_1,
            [G4_TYPE_Q5_0] = dot_q5_0,
            [G4_TYPE_Q5_1] = dot_q5_1,
            [G4_TYPE_Q8_0] = dot_q8_0,
            [G4_TYPE_Q2_K] = dot_q2_K,
            [G4_TYPE_Q3_K] = dot_q3_K,
            [G4_TYPE_Q4_K] = dot_q4_K,
            [G4_TYPE_Q5_K] = dot_q5_K,
            [G4_TYPE_Q6_K] = dot_q6_K,
            [G4_TYPE_IQ4_NL] = dot_iq4_nl,
            [G4_TYPE_IQ4_XS] = dot_iq4_xs,
        },
    .quantize_act =
        {
            [G4_TYPE_Q8_0] = quantize_q8_0,
            [G4_TYPE_Q8_1] = quantize_q8_1,
            [G4_TYPE_Q8_K] = quantize_q8_K,
            [G4_TYPE_F16] = quantize_f16,
            [G4_TYPE_BF16] = quantize_bf16,
        },
    .kv_scores = {[G4_TYPE_F32] = g4_kv_scores_f32, [G4_TYPE_F16] = g4_kv_scores_f16, [G4_TYPE_Q8_0] = g4_kv_scores_q8_0},
    .kv_accum = {[G4_TYPE_F32] = g4_kv_accum_f32, [G4_TYPE_F16] = g4_kv_accum_f16, [G4_TYPE_Q8_0] = g4_kv_accum_q8_0},
};

const g4_kernels *g4_kernels_scalar(void) { return &scalar; }
