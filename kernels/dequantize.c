/* Scalar dequantization of every weight format, with ggml's exact float
 * semantics: each value is computed with the same operations in the same
 * order as ggml's dequantize_row_*, so results are bit-identical. */
#include <string.h>

#include "kernels/formats.h"
#include "kernels/kquant_scales.h"

#if defined(__clang__)
/* bit-exactness needs every product rounded on its own, as ggml does */
#pragma STDC FP_CONTRACT OFF
#endif

const int8_t g4_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

static void deq_f16(const g4_fp16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g4_fp16_to_fp32(x[i]);
}

static void deq_bf16(const g4_bf16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g4_bf16_to_fp32(x[i]);
}

static void deq_q8_0(const block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += G4_QK) {
        const float d = g4_fp16_to_fp32(x[i].d);
        for (int j = 0; j < G4_QK; j++) y[j] = x[i].qs[j] * d;
    }
}

/* 32-wide 4/5-bit formats: value j is in the low nibble of qs[j], value
 * j+16 in the high nibble; the 5th bits are bit j / j+16 of qh. */
static void deq_q4_0(const block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += G4_QK) {
        const float d = g4_fp16_to_fp32(x[i].d);
        for (int j = 0; j < G4_QK / 2; j++) {
            y[j] = ((x[i].qs[j] & 0xf) - 8) * d;
            y[j + G4_QK / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += G4_QK) {
        const float d = g4_fp16_to_fp32(x[i].d), m = g4_fp16_to_fp32(x[i].m);
        for (int j = 0; j < G4_QK / 2; j++) {
            y[j] = (x[i].qs[j] & 0xf) * d + m;
            y[j + G4_QK / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* The 5-bit codes of a Q5_0/Q5_1 block, 0..31. */
static void q5_codes(const uint8_t qh_bytes[4], const uint8_t qs[G4_QK / 2], int q[G4_QK]) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, sizeof qh); /* little-endian bit field */
    for (int j = 0; j < G4_QK / 2; j++) {
        q[j] = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
        q[j + G4_QK / 2] = (qs[j] >> 4) | (int)(((qh >> (j + G4_QK / 2)) & 1) << 4);
    }
}

static void deq_q5_0(const block_q5_0 *x, float *y, int64_t nb) {
    int q[G4_QK];
    for (int64_t i = 0; i < nb; i++, y += G4_QK) {
        const float d = g4_fp16_to_fp32(x[i].d);
        q5_codes(x[i].qh, x[i].qs, q);
        for (int j = 0; j < G4_QK; j++) y[j] = (q[j] - 16) * d;
    }
}

static void deq_q5_1(const block_q5_1 *x, float *y, int64_t nb) {
    int q[G4_QK];
    for (int64_t i = 0; i < nb; i++, y += G4_QK) {
        const float d = g4_fp16_to_fp32(x[i].d), m = g4_fp16_to_fp32(x[i].m);
        q5_codes(x[i].qh, x[i].qs, q);
        for (int j = 0; j < G4_QK; j++) y[j] = q[j] * d + m;
    }
}

/* Q2_K and Q3_K: each 128 values share 32 bytes of 2-bit codes; value
 * 32*s + l of the group is bits 2s..2s+1 of byte l. 16 values per scale. */
static void deq_q2_K(const block_q2_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(x[i].d), dmin = g4_fp16_to_fp32(x[i].dmin);
        for (int k = 0; k < G4_QK_K; k++) {
            const int q = (x[i].qs[32 * (k / 128) + k % 32] >> (2 * (k % 128 / 32))) & 3;
            const uint8_t sc = x[i].scales[k / 16];
            y[k] = d * (sc & 0xf) * q - dmin * (sc >> 4);
        }
        y += G4_QK_K;
    }
}

/* The 16 signed 6-bit scales of Q3_K: low 4 bits in the nibbles of bytes
 * 0-7, top 2 bits in bytes 8-11 (2 bits per scale, four scales a byte). */
static int q3_K_scale(const uint8_t s[12], int j) {
    const int lo = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Q3_K: the 3rd bit is in hmask, bit k/32 of byte k%32; a clear bit
 * means the code is 4 lower. */
static void deq_q3_K(const block_q3_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(x[i].d);
        for (int k = 0; k < G4_QK_K; k++) {
            const int q = (x[i].qs[32 * (k / 128) + k % 32] >> (2 * (k % 128 / 32))) & 3;
            const int high = (x[i].hmask[k % 32] >> (k / 32)) & 1;
            const float dl = d * q3_K_scale(x[i].scales, k / 16);
            y[k] = dl * (q - (high ? 0 : 4));
        }
        y += G4_QK_K;
    }
}

/* Q4_K and Q5_K: each 64 values share 32 bytes, the first 32 values in the
 * low nibbles, the next 32 in the high ones; 32 values per scale/min. */
static void deq_q4_K(const block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(x[i].d), dmin = g4_fp16_to_fp32(x[i].dmin);
        for (int s = 0; s < G4_QK_K / 32; s++) {
            uint8_t sc, m;
            g4_kquant_scale_min(s, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (s / 2);
            const int shift = 4 * (s % 2);
            for (int l = 0; l < 32; l++) y[l] = dl * ((q[l] >> shift) & 0xf) - ml;
            y += 32;
        }
    }
}

/* Q5_K: the 5th bit of value 32*s + l is bit s of qh[l]. */
static void deq_q5_K(const block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(x[i].d), dmin = g4_fp16_to_fp32(x[i].dmin);
        for (int s = 0; s < G4_QK_K / 32; s++) {
            uint8_t sc, m;
            g4_kquant_scale_min(s, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (s / 2);
            const int shift = 4 * (s % 2);
            for (int l = 0; l < 32; l++) {
                const int code = ((q[l] >> shift) & 0xf) + (((x[i].qh[l] >> s) & 1) ? 16 : 0);
                y[l] = dl * code - ml;
            }
            y += 32;
        }
    }
}

/* Q6_K: per 128 values, 64 bytes of low nibbles (value 32*s + l: byte
 * l + 32*(s%2), nibble s/2) and 32 bytes of high 2-bit pairs (bits 2s of
 * byte l); 16 values per int8 scale. */
static void deq_q6_K(const block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(x[i].d);
        for (int k = 0; k < G4_QK_K; k++) {
            const int half = k / 128, s = k % 128 / 32, l = k % 32;
            const int lo = (x[i].ql[64 * half + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0xf;
            const int hi = (x[i].qh[32 * half + l] >> (2 * s)) & 3;
            const int q = (lo | (hi << 4)) - 32;
            y[k] = d * x[i].scales[k / 16] * q;
        }
        y += G4_QK_K;
    }
}

static void deq_q8_K(const block_q8_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += G4_QK_K)
        for (int k = 0; k < G4_QK_K; k++) y[k] = x[i].d * x[i].qs[k];
}

static void deq_iq4_nl(const block_iq4_nl *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += G4_QK) {
        const float d = g4_fp16_to_fp32(x[i].d);
        for (int j = 0; j < G4_QK / 2; j++) {
            y[j] = d * g4_iq4nl_values[x[i].qs[j] & 0xf];
            y[j + G4_QK / 2] = d * g4_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* IQ4_XS: 8 groups of 32 laid out like IQ4_NL blocks, each with a 6-bit
 * scale (low 4 bits in scales_l nibbles, top 2 bits in scales_h) biased by 32. */
static void deq_iq4_xs(const block_iq4_xs *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(x[i].d);
        for (int g = 0; g < G4_QK_K / 32; g++) {
            const int ls = ((x[i].scales_l[g / 2] >> (4 * (g % 2))) & 0xf) |
                           (((x[i].scales_h >> (2 * g)) & 3) << 4);
            const float dl = d * (ls - 32);
            const uint8_t *q = x[i].qs + 16 * g;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * g4_iq4nl_values[q[j] & 0xf];
                y[j + 16] = dl * g4_iq4nl_values[q[j] >> 4];
            }
            y += 32;
        }
    }
}

void g4_dequantize_row(enum g4_type type, const void *src, float *dst, int64_t n) {
    const int64_t nb32 = n / G4_QK, nbk = n / G4_QK_K;
    switch (type) {
    case G4_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case G4_TYPE_F16: deq_f16(src, dst, n); break;
    case G4_TYPE_BF16: deq_bf16(src, dst, n); break;
    case G4_TYPE_Q8_0: deq_q8_0(src, dst, nb32); break;
    case G4_TYPE_Q4_0: deq_q4_0(src, dst, nb32); break;
    case G4_TYPE_Q4_1: deq_q4_1(src, dst, nb32); break;
    case G4_TYPE_Q5_0: deq_q5_0(src, dst, nb32); break;
    case G4_TYPE_Q5_1: deq_q5_1(src, dst, nb32); break;
    case G4_TYPE_Q2_K: deq_q2_K(src, dst, nbk); break;
    case G4_TYPE_Q3_K: deq_q3_K(src, dst, nbk); break;
    case G4_TYPE_Q4_K: deq_q4_K(src, dst, nbk); break;
    case G4_TYPE_Q5_K: deq_q5_K(src, dst, nbk); break;
    case G4_TYPE_Q6_K: deq_q6_K(src, dst, nbk); break;
    case G4_TYPE_Q8_K: deq_q8_K(src, dst, nbk); break;
    case G4_TYPE_IQ4_NL: deq_iq4_nl(src, dst, nb32); break;
    case G4_TYPE_IQ4_XS: deq_iq4_xs(src, dst, nbk); break;
    default: assert(!"g4_dequantize_row: type without a dequantizer"); break;
    }
}
