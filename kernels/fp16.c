/* IEEE binary16 and bfloat16 <-> binary32, done on the bits so the result
 * does not depend on the compiler or on F16C/NEON being present. */
#include <string.h>

#include "kernels/formats.h"

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float g4_fp16_to_fp32(g4_fp16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000 | (mant << 13)); /* inf, NaN payload kept */
    if (exp != 0) return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (mant << 13));
    /* zero or subnormal: mant * 2^-24 is exact in binary32 */
    const float v = (float)mant * 0x1p-24f;
    return sign ? -v : v;
}

/* Rounds m >> shift to nearest, ties to even (shift >= 1). */
static uint32_t shift_round_even(uint32_t m, unsigned shift) {
    const uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

g4_fp16 g4_fp32_to_fp16(float f) {
    const uint32_t u = f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000;
    const uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return (g4_fp16)(sign | 0x7e00 | ((a >> 13) & 0x3ff)); /* NaN: quiet, top payload kept */
    if (a >= 0x47800000) return (g4_fp16)(sign | 0x7c00);          /* >= 2^16 (and inf): inf */
    if (a >= 0x38800000) {
        /* normal in fp16: rebias the exponent; a carry out of the mantissa
         * bumps the exponent, and past 65504 lands exactly on inf */
        return (g4_fp16)(sign | shift_round_even(a - ((127u - 15) << 23), 13));
    }
    if (a <= 0x33000000) return (g4_fp16)sign; /* <= 2^-25: rounds to zero (the tie goes to even 0) */
    /* subnormal in fp16: count units of 2^-24; rounding up to 0x400 gives
     * the smallest normal, which is the right encoding */
    const uint32_t exp = a >> 23;
    const uint32_t mant = (a & 0x7fffff) | 0x800000;
    return (g4_fp16)(sign | shift_round_even(mant, 126 - exp));
}

float g4_bf16_to_fp32(g4_bf16 h) {
    return f32_from_bits((uint32_t)h << 16);
}

/* As ggml's GGML_FP32_TO_BF16: round to nearest even (overflow goes to inf,
 * subnormals are kept), NaN forced quiet. */
g4_bf16 g4_fp32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (g4_bf16)((u >> 16) | 0x40);
    return (g4_bf16)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
