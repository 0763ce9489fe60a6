/* Tensor formats: fp16/bf16 conversion (exhaustive), hand-derived quantized
 * blocks, byte-for-byte agreement with the ggml-quantized fixture models,
 * round-trip error bounds, and dequantization of every format checked
 * against the format's formula written out element by element. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "kernels/formats.h"
#include "tests/harness.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rand_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float rand_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rand_u32() >> 8) * 0x1p-24);
}

static float rand_normal(void) {
    const double u = ((rand_u32() >> 8) + 0.5) * 0x1p-24, v = (rand_u32() >> 8) * 0x1p-24;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The value of an fp16 bit pattern from the definition of binary16. */
static double fp16_value(uint16_t h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    const double mag = e == 31 ? INFINITY : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -mag : mag;
}

static bool fp16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static bool bf16_is_nan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

/* ---- fp16 ----------------------------------------------------------------- */

static void test_fp16_exhaustive(void) {
    int bad_value = 0, bad_trip = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = g4_fp16_to_fp32((g4_fp16)h);
        const g4_fp16 back = g4_fp32_to_fp16(f);
        if (fp16_is_nan((uint16_t)h)) {
            if (!isnan(f) || (bits_of(f) >> 31) != (h >> 15)) bad_value++;
            if (!fp16_is_nan(back) || (back & 0x8000) != (h & 0x8000)) bad_trip++;
            continue;
        }
        if ((double)f != fp16_value((uint16_t)h) || !!signbit(f) != !!(h & 0x8000)) {
            if (!bad_value) fprintf(stderr, "fp16 0x%04x -> %g\n", h, f);
            bad_value++;
        }
        if (back != h) {
            if (!bad_trip) fprintf(stderr, "fp16 0x%04x -> %g -> 0x%04x\n", h, f, back);
            bad_trip++;
        }
    }
    CHECK(bad_value == 0, "%d of 65536 fp16 patterns decode wrong", bad_value);
    CHECK(bad_trip == 0, "%d of 65536 fp16 patterns do not round trip", bad_trip);
}

/* Every midpoint between adjacent finite fp16 values rounds to the even one;
 * one float ulp either side rounds to the nearer one. */
static void test_fp16_ties(void) {
    int bad = 0;
    for (uint16_t h = 0; h < 0x7bff; h++) {
        const float mid = (float)((fp16_value(h) + fp16_value(h + 1)) / 2); /* exact: 12 bits */
        const uint16_t even = (h & 1) ? h + 1 : h;
        for (int s = 0; s < 2; s++) {
            const float sm = s ? -mid : mid;
            const uint16_t sign = s ? 0x8000 : 0;
            if (g4_fp32_to_fp16(sm) != (sign | even)) bad++;
            if (g4_fp32_to_fp16(nextafterf(sm, s ? -INFINITY : INFINITY)) != (sign | (h + 1))) bad++;
            if (g4_fp32_to_fp16(nextafterf(sm, 0)) != (sign | h)) bad++;
        }
    }
    CHECK(bad == 0, "%d fp16 midpoint roundings wrong", bad);
    /* 65520 is halfway between 65504 (odd mantissa) and the next step, 2^16 */
    CHECK(g4_fp32_to_fp16(65520.f) == 0x7c00, "65520 -> 0x%04x", g4_fp32_to_fp16(65520.f));
    CHECK(g4_fp32_to_fp16(nextafterf(65520.f, 0)) == 0x7bff, "below 65520 must give 65504");
    CHECK(g4_fp32_to_fp16(65504.f) == 0x7bff, "65504");
    CHECK(g4_fp32_to_fp16(-1e6f) == 0xfc00, "-1e6 must overflow to -inf");
    CHECK(g4_fp32_to_fp16(FLT_MAX) == 0x7c00, "FLT_MAX must overflow to inf");
    CHECK(g4_fp32_to_fp16(INFINITY) == 0x7c00 && g4_fp32_to_fp16(-INFINITY) == 0xfc00, "inf");
    CHECK(fp16_is_nan(g4_fp32_to_fp16(NAN)), "NaN must stay NaN");
    CHECK(fp16_is_nan(g4_fp32_to_fp16(float_of(0xff800001u))), "signalling NaN must stay NaN");
    CHECK(g4_fp32_to_fp16(-0.0f) == 0x8000, "-0");
    CHECK(g4_fp32_to_fp16(1.0f) == 0x3c00, "1.0");
    /* subnormals: units of 2^-24 */
    CHECK(g4_fp32_to_fp16(0x1p-25f) == 0, "2^-25 is a tie with 0 and 2^-24: goes to even 0");
    CHECK(g4_fp32_to_fp16(nextafterf(0x1p-25f, 1)) == 1, "just above 2^-25 rounds up to 2^-24");
    CHECK(g4_fp32_to_fp16(3 * 0x1p-25f) == 2, "1.5 * 2^-24 ties to even 2");
    CHECK(g4_fp32_to_fp16(-5 * 0x1p-25f) == 0x8002, "-2.5 * 2^-24 ties to even -2");
    CHECK(g4_fp32_to_fp16(0x1p-30f) == 0, "2^-30 underflows to 0");
    CHECK(g4_fp32_to_fp16(1023 * 0x1p-24f) == 0x3ff, "largest subnormal");
    CHECK(g4_fp32_to_fp16(1023.5f * 0x1p-24f) == 0x400, "largest subnormal + half rounds to 2^-14");
    CHECK(g4_fp32_to_fp16(0x1p-14f) == 0x400, "smallest normal");
}

/* Random floats against a nearest-value search over the table of all
 * finite fp16 values (ties to the even pattern). */
static void test_fp16_random(void) {
    static double table[0x7c00];
    for (int h = 0; h < 0x7c00; h++) table[h] = fp16_value((uint16_t)h);
    int bad = 0;
    for (int it = 0; it < 300000; it++) {
        /* exponents 2^-37 .. 2^16 cover underflow, subnormals, normals, overflow */
        const uint32_t u = ((rand_u32() % 54 + 90) << 23) | (rand_u32() & 0x7fffff) | (rand_u32() & 0x80000000u);
        const float f = float_of(u);
        const double a = fabs((double)f);
        int lo = 0, hi = 0x7bff; /* largest h with table[h] <= a */
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (table[mid] <= a) lo = mid;
            else hi = mid - 1;
        }
        uint16_t want;
        if (a >= 65520.0) want = 0x7c00;
        else if (lo == 0x7bff) want = 0x7bff;
        else {
            const double dlo = a - table[lo], dhi = table[lo + 1] - a;
            want = (uint16_t)(dlo < dhi ? lo : dhi < dlo ? lo + 1 : (lo & 1) ? lo + 1 : lo);
        }
        want |= (uint16_t)((u >> 16) & 0x8000);
        if (g4_fp32_to_fp16(f) != want) {
            if (!bad) fprintf(stderr, "fp16(%a) = 0x%04x, want 0x%04x\n", f, g4_fp32_to_fp16(f), want);
            bad++;
        }
    }
    CHECK(bad == 0, "%d of 300000 random fp32 -> fp16 roundings differ from the nearest search", bad);
}

/* ---- bf16 ----------------------------------------------------------------- */

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = g4_bf16_to_fp32((g4_bf16)h);
        const g4_bf16 back = g4_fp32_to_bf16(f);
        if (bits_of(f) != h << 16) bad++;
        if (bf16_is_nan((uint16_t)h) ? !bf16_is_nan(back) || (back & 0x8000) != (h & 0x8000) : back != h) bad++;
    }
    CHECK(bad == 0, "%d bf16 decode / round trip failures over all 65536 patterns", bad);

    /* random non-NaN floats (a quarter of them exact ties) against the
     * nearer of the two neighbouring bf16 values; past the largest finite
     * value the next step is 2^128, i.e. inf */
    bad = 0;
    for (int it = 0; it < 300000; it++) {
        uint32_t u = rand_u32() ^ (rand_u32() << 16);
        if (it % 4 == 0) u = (u & 0xffff0000u) | 0x8000;
        if ((u & 0x7fffffff) > 0x7f800000) continue;
        const float f = float_of(u);
        const uint32_t lo = (u >> 16) & 0x7fff;
        const double a = fabs((double)f);
        const double vlo = fabs((double)float_of(lo << 16));
        const double vhi = lo == 0x7f7f ? ldexp(1, 128) : fabs((double)float_of((lo + 1) << 16));
        uint32_t want = lo == 0x7f80 ? lo : a - vlo < vhi - a ? lo : vhi - a < a - vlo ? lo + 1 : (lo & 1) ? lo + 1 : lo;
        want |= (u >> 16) & 0x8000;
        if (g4_fp32_to_bf16(f) != want) {
            if (!bad) fprintf(stderr, "bf16(0x%08x) = 0x%04x, want 0x%04x\n", u, g4_fp32_to_bf16(f), want);
            bad++;
        }
    }
    CHECK(bad == 0, "%d random fp32 -> bf16 roundings wrong", bad);
    CHECK(g4_fp32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "1 + 2^-8 ties to even 1.0");
    CHECK(g4_fp32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "1 + 3*2^-8 ties to even 1 + 2^-6");
    CHECK(g4_fp32_to_bf16(FLT_MAX) == 0x7f80, "FLT_MAX rounds to inf");
    CHECK(g4_fp32_to_bf16(-INFINITY) == 0xff80, "-inf");
    CHECK(g4_fp32_to_bf16(float_of(0x00018000u)) == 0x0002, "subnormal tie goes to even, not flushed");
    CHECK(g4_fp32_to_bf16(float_of(0x80008001u)) == 0x8001, "negative subnormal kept");
    CHECK(g4_fp32_to_bf16(float_of(0x7f800001u)) == 0x7fc0, "signalling NaN becomes quiet NaN 0x7fc0");
    CHECK(g4_fp32_to_bf16(float_of(0xffc00000u)) == 0xffc0, "negative quiet NaN");
}

/* ---- hand-derived blocks ---------------------------------------------------- */

/* Q8_0 with amax = 127/16: d = 1/16 exactly (fp16 0x2c00), codes = 16x,
 * halves rounded away from zero. */
static void test_hand_q8_0(void) {
    float x[32];
    int8_t want[32];
    for (int j = 0; j < 32; j++) {
        const int q = (j * 29) % 253 - 126; /* -126..126 */
        want[j] = (int8_t)q;
        x[j] = q / 16.0f;
    }
    x[5] = -127 / 16.0f, want[5] = -127;
    x[7] = 2.5f / 16, want[7] = 3;   /* half away from zero */
    x[8] = -2.5f / 16, want[8] = -3;
    x[9] = 0.5f / 16, want[9] = 1;
    block_q8_0 b;
    CHECK(g4_quantize_row(G4_TYPE_Q8_0, x, &b, 32) == 34, "q8_0 row size");
    uint8_t expect[34] = {0x00, 0x2c};
    for (int j = 0; j < 32; j++) expect[2 + j] = (uint8_t)want[j];
    CHECK(memcmp(&b, expect, 34) == 0, "q8_0 hand block bytes");
    float y[32];
    g4_dequantize_row(G4_TYPE_Q8_0, &b, y, 32);
    int bad = 0;
    for (int j = 0; j < 32; j++) bad += y[j] != want[j] / 16.0f;
    CHECK(bad == 0, "q8_0 hand block: %d values wrong", bad);
}

/* Q4_0: the value of largest magnitude, m, sets d = m / -8. With m = -1,
 * d = 1/8 (fp16 0x3000) and code = 8x + 8 rounded half up; with m = +1,
 * d = -1/8 (0xb000) and code = 8 - 8x. */
static void test_hand_q4_0(void) {
    float x[64];
    uint8_t codes[64];
    for (int j = 0; j < 32; j++) {
        const int q = (j * 7) % 15 + 1; /* 1..15 */
        codes[j] = (uint8_t)q;
        x[j] = (q - 8) / 8.0f;
        codes[32 + j] = (uint8_t)(16 - q); /* second block: d negative */
        x[32 + j] = (q - 8) / 8.0f;
    }
    x[3] = -1.0f, codes[3] = 0;           /* sets d = 1/8 */
    x[4] = 0.5f / 8, codes[4] = 9;        /* 8.5 + 0.5 truncates to 9: half up */
    x[5] = -0.5f / 8, codes[5] = 8;       /* 8.5 - 0.5 = 8 */
    x[32 + 10] = 1.0f, codes[32 + 10] = 0; /* sets d = -1/8 */
    x[32 + 11] = -1.0f, codes[32 + 11] = 15; /* 16 clamps to 15 */
    block_q4_0 b[2];
    CHECK(g4_quantize_row(G4_TYPE_Q4_0, x, b, 64) == 36, "q4_0 row size");
    uint8_t expect[36] = {0x00, 0x30};
    expect[18] = 0x00, expect[19] = 0xb0;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 16; j++) expect[18 * k + 2 + j] = (uint8_t)(codes[32 * k + j] | codes[32 * k + j + 16] << 4);
    CHECK(memcmp(b, expect, 36) == 0, "q4_0 hand blocks bytes");
    float y[64];
    g4_dequantize_row(G4_TYPE_Q4_0, b, y, 64);
    int bad = 0;
    for (int j = 0; j < 64; j++) bad += y[j] != (codes[j] - 8) * (j < 32 ? 0.125f : -0.125f);
    CHECK(bad == 0, "q4_0 hand blocks: %d values wrong", bad);
    CHECK(y[32 + 11] == -0.875f, "clamped code dequantizes to -7/8, got %g", y[32 + 11]);
}

/* The 12 bytes holding 8 six-bit scales and mins of Q4_K / Q5_K, from the
 * layout: pairs 0-3 in the low 6 bits of bytes 0-3 / 4-7; pairs 4-7 with
 * low 4 bits in the nibbles of bytes 8-11 and top 2 bits in bits 6-7 of
 * bytes 0-3 (scales) and 4-7 (mins). */
static void pack_k4_scales(const int sc[8], const int mn[8], uint8_t out[12]) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        out[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

static void unpack_k4_scales(const uint8_t s[12], int sc[8], int mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 15) | (s[j] >> 6) << 4;
        mn[j + 4] = (s[j + 8] >> 4) | (s[j + 4] >> 6) << 4;
    }
}

/* Q4_K / Q5_K on sub-blocks x = l*s_j - m_j (l = 0..nmax, s_j and m_j powers
 * of two): the min/max fit is exact (zero error, so no other candidate
 * wins), giving scale s_j and min m_j. Against the maxima S = 2^-4 and
 * M = 2^-5 the 6-bit values are round(63 * 2^-k) = 63, 32, 16, 8 for
 * k = 0..3; d = fp16(S/63) = 2^-10 * 1040/1024 = 0x1410 and
 * dmin = fp16(M/63) = 0x1010 (64/63 - 1 = 16.25/1024 rounds to 16/1024).
 * The requantized codes stay l: with these scales l moves by < 0.5. */
static void test_hand_kx(enum g4_type type) {
    const int nmax = type == G4_TYPE_Q4_K ? 15 : 31;
    static const int ks[8] = {0, 1, 2, 3, 1, 0, 3, 2};      /* s_j = 2^-(4+ks) */
    static const int km[8] = {0, -1, 1, 1, 0, 2, 3, -1};    /* m_j = 2^-(5+km), -1: m_j = 0 */
    static const int six[4] = {63, 32, 16, 8};
    float x[256];
    int sc[8], mn[8], L[256];
    for (int j = 0; j < 8; j++) {
        const float s = ldexpf(1, -4 - ks[j]), m = km[j] < 0 ? 0 : ldexpf(1, -5 - km[j]);
        sc[j] = six[ks[j]];
        mn[j] = km[j] < 0 ? 0 : six[km[j]];
        for (int i = 0; i < 32; i++) {
            L[32 * j + i] = i % (nmax + 1);
            x[32 * j + i] = L[32 * j + i] * s - m;
        }
    }
    uint8_t blk[176], expect[176] = {0x10, 0x14, 0x10, 0x10};
    pack_k4_scales(sc, mn, expect + 4);
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            const int lo = L[64 * g + l], hi = L[64 * g + 32 + l];
            if (type == G4_TYPE_Q4_K) {
                expect[16 + 32 * g + l] = (uint8_t)(lo | hi << 4);
            } else { /* qh[32] then qs[128]; bit 2g / 2g+1 of qh[l] are the 5th bits */
                expect[48 + 32 * g + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                expect[16 + l] |= (uint8_t)((lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1));
            }
        }
    const size_t size = g4_row_size(type, 256);
    CHECK(g4_quantize_row(type, x, blk, 256) == size, "%s row size", g4_type_name(type));
    CHECK(memcmp(blk, expect, size) == 0, "%s hand block bytes", g4_type_name(type));
    for (size_t i = 0; i < size; i++)
        if (blk[i] != expect[i]) {
            fprintf(stderr, "  %s byte %zu: 0x%02x, want 0x%02x\n", g4_type_name(type), i, blk[i], expect[i]);
            break;
        }
    float y[256];
    g4_dequantize_row(type, expect, y, 256);
    const float d = (float)fp16_value(0x1410), dmin = (float)fp16_value(0x1010);
    int bad = 0, far = 0;
    for (int k = 0; k < 256; k++) {
        bad += y[k] != d * sc[k / 32] * L[k] - dmin * mn[k / 32];
        far += fabsf(y[k] - x[k]) > 0.5f * ldexpf(1, -4 - ks[k / 32]);
    }
    CHECK(bad == 0, "%s hand block: %d dequantized values differ from the formula", g4_type_name(type), bad);
    CHECK(far == 0, "%s hand block: %d values off by more than half a step", g4_type_name(type), far);
}

/* Q6_K on sub-blocks x = l*s_j with integer l in -32..31, -32 first, and
 * s_j = 2^-(5+k): the first fit is exact, and by Cauchy-Schwarz none of
 * the 18 other scales can beat it, so the sub-block scale is s_j. The
 * largest, S = 2^-5, maps to int8 -128: d = -S/128 = -2^-12 (fp16 0x8c00)
 * and the int8 scales are -128 * 2^-k; d * scale = s_j, codes l + 32. */
static void test_hand_q6_K(void) {
    float x[256];
    int L[256], sc[16];
    for (int j = 0; j < 16; j++) {
        const int k = (j * 3) % 4;
        sc[j] = -128 >> k;
        for (int i = 0; i < 16; i++) {
            L[16 * j + i] = i == 0 ? -32 : (i * 7 + j * 3) % 63 - 31;
            x[16 * j + i] = ldexpf((float)L[16 * j + i], -5 - k);
        }
    }
    /* layout: per 128 values, value 32*s + l has its low nibble in
     * ql[l + 32*(s%2)] (low nibble for s < 2, high for s >= 2) and its top
     * 2 bits at bits 2s of qh[l]; then 16 int8 scales; then d */
    uint8_t expect[210] = {0};
    for (int k = 0; k < 256; k++) {
        const int q = L[k] + 32, half = k / 128, s = k % 128 / 32, l = k % 32;
        expect[64 * half + 32 * (s % 2) + l] |= (uint8_t)((q & 15) << (4 * (s / 2)));
        expect[128 + 32 * half + l] |= (uint8_t)((q >> 4) << (2 * s));
    }
    for (int j = 0; j < 16; j++) expect[192 + j] = (uint8_t)(int8_t)sc[j];
    expect[208] = 0x00, expect[209] = 0x8c;
    block_q6_K b;
    CHECK(g4_quantize_row(G4_TYPE_Q6_K, x, &b, 256) == 210, "q6_K row size");
    CHECK(memcmp(&b, expect, 210) == 0, "q6_K hand block bytes");
    float y[256];
    g4_dequantize_row(G4_TYPE_Q6_K, expect, y, 256);
    int bad = 0;
    for (int k = 0; k < 256; k++) bad += y[k] != x[k];
    CHECK(bad == 0, "q6_K hand block: %d values not reproduced exactly", bad);
}

/* Q8_K: max = -127/32 gives iscale = 32 and d = 1/32 exactly; codes are
 * rounded to nearest even (unlike Q8_0); bsums add up each 16 codes. */
static void test_hand_q8_K(void) {
    float x[256];
    int q[256];
    for (int k = 0; k < 256; k++) {
        const double v = (k * 53) % 251 - 125 + ((k % 3 == 0) ? 0.5 : 0.0); /* halves included */
        x[k] = (float)(v / 32);
        q[k] = (int)rint(v); /* default rounding: nearest even */
    }
    x[0] = -127 / 32.0f, q[0] = -127;
    block_q8_K b;
    g4_quantize_row(G4_TYPE_Q8_K, x, &b, 256);
    int bad = 0;
    for (int k = 0; k < 256; k++) bad += b.qs[k] != q[k];
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += q[16 * j + l];
        bad += b.bsums[j] != s;
    }
    CHECK(b.d == 1 / 32.0f, "q8_K d = %g, want 1/32", b.d);
    CHECK(bad == 0, "q8_K hand block: %d codes or sums wrong", bad);
    float y[256];
    g4_dequantize_row(G4_TYPE_Q8_K, &b, y, 256);
    bad = 0;
    for (int k = 0; k < 256; k++) bad += y[k] != q[k] / 32.0f;
    CHECK(bad == 0, "q8_K hand block: %d dequantized values wrong", bad);
}

/* ---- dequantization of every format from its formula ------------------------ */

static const int8_t iq4nl_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static int nibble(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; } /* 32-wide layout */
static int bit_of(const uint8_t *bytes, int i) { return (bytes[i / 8] >> (i % 8)) & 1; }

/* Value k of one block of `type` (the bytes at b), written element by
 * element from the format description, in ggml's order of float ops. */
static float formula(enum g4_type type, const uint8_t *b, int k) {
    uint16_t h16, h16b;
    memcpy(&h16, b, 2);
    memcpy(&h16b, b + 2, 2);
    const float d = (float)fp16_value(h16), d2 = (float)fp16_value(h16b);
    switch (type) {
    case G4_TYPE_Q8_0: return (int8_t)b[2 + k] * d;
    case G4_TYPE_Q4_0: return (nibble(b + 2, k) - 8) * d;
    case G4_TYPE_Q4_1: return nibble(b + 4, k) * d + d2;
    case G4_TYPE_Q5_0: return ((nibble(b + 6, k) | bit_of(b + 2, k) << 4) - 16) * d;
    case G4_TYPE_Q5_1: return (nibble(b + 8, k) | bit_of(b + 4, k) << 4) * d + d2;
    case G4_TYPE_IQ4_NL: return d * iq4nl_grid[nibble(b + 2, k)];
    case G4_TYPE_Q2_K: { /* scales[16] qs[64] d dmin */
        memcpy(&h16, b + 80, 2), memcpy(&h16b, b + 82, 2);
        const int q = (b[16 + 32 * (k / 128) + k % 32] >> (2 * (k % 128 / 32))) & 3;
        const int sc = b[k / 16];
        return (float)fp16_value(h16) * (sc & 15) * q - (float)fp16_value(h16b) * (sc >> 4);
    }
    case G4_TYPE_Q3_K: { /* hmask[32] qs[64] scales[12] d */
        memcpy(&h16, b + 108, 2);
        const uint8_t *s = b + 96;
        const int j = k / 16;
        const int sc = ((j < 8 ? s[j] & 15 : s[j - 8] >> 4) | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        const int q = (b[32 + 32 * (k / 128) + k % 32] >> (2 * (k % 128 / 32))) & 3;
        const int hbit = (b[k % 32] >> (k / 32)) & 1;
        return (float)fp16_value(h16) * sc * (q - (hbit ? 0 : 4));
    }
    case G4_TYPE_Q4_K:
    case G4_TYPE_Q5_K: { /* d dmin scales[12] (qh[32]) qs[128] */
        int sc[8], mn[8];
        unpack_k4_scales(b + 4, sc, mn);
        const int j = k / 32;
        const uint8_t *qs = b + (type == G4_TYPE_Q4_K ? 16 : 48);
        int q = (qs[32 * (k / 64) + k % 32] >> (4 * (j % 2))) & 15;
        if (type == G4_TYPE_Q5_K) q += 16 * ((b[16 + k % 32] >> j) & 1);
        return d * sc[j] * q - d2 * mn[j];
    }
    case G4_TYPE_Q6_K: { /* ql[128] qh[64] scales[16] d */
        memcpy(&h16, b + 208, 2);
        const int half = k / 128, s = k % 128 / 32, l = k % 32;
        const int lo = (b[64 * half + 32 * (s % 2) + l] >> (4 * (s / 2))) & 15;
        const int hi = (b[128 + 32 * half + l] >> (2 * s)) & 3;
        return (float)fp16_value(h16) * (int8_t)b[192 + k / 16] * ((lo | hi << 4) - 32);
    }
    case G4_TYPE_Q8_K: { /* float d, qs[256], bsums */
        float df;
        memcpy(&df, b, 4);
        return df * (int8_t)b[4 + k];
    }
    case G4_TYPE_IQ4_XS: { /* d scales_h scales_l[4] qs[128] */
        const int g = k / 32;
        const int ls = ((b[4 + g / 2] >> (4 * (g % 2))) & 15) | ((h16b >> (2 * g)) & 3) << 4;
        return d * (ls - 32) * iq4nl_grid[nibble(b + 8 + 16 * g, k % 32)];
    }
    default: return NAN;
    }
}

/* Offsets of the fp16 fields of each block (set to finite values). */
static void fix_scales(enum g4_type type, uint8_t *b) {
    static const uint16_t vals[] = {0x3c00, 0x2e66, 0xb8cd, 0x1fff, 0x0203, 0xc1a0};
    int off[2] = {0, -1};
    switch (type) {
    case G4_TYPE_Q4_1: case G4_TYPE_Q5_1: case G4_TYPE_Q4_K: case G4_TYPE_Q5_K: off[1] = 2; break;
    case G4_TYPE_Q2_K: off[0] = 80, off[1] = 82; break;
    case G4_TYPE_Q3_K: off[0] = 108; break;
    case G4_TYPE_Q6_K: off[0] = 208; break;
    case G4_TYPE_Q8_K: { const float d = rand_uniform(-0.1f, 0.1f); memcpy(b, &d, 4); return; }
    default: break;
    }
    for (int i = 0; i < 2; i++)
        if (off[i] >= 0) memcpy(b + off[i], &vals[rand_u32() % 6], 2);
}

static void test_dequantize_formulas(void) {
    static const enum g4_type types[] = {G4_TYPE_Q8_0, G4_TYPE_Q4_0, G4_TYPE_Q4_1, G4_TYPE_Q5_0,
                                         G4_TYPE_Q5_1, G4_TYPE_Q2_K, G4_TYPE_Q3_K, G4_TYPE_Q4_K,
                                         G4_TYPE_Q5_K, G4_TYPE_Q6_K, G4_TYPE_Q8_K, G4_TYPE_IQ4_NL,
                                         G4_TYPE_IQ4_XS};
    CHECK(memcmp(g4_iq4nl_values, iq4nl_grid, 16) == 0, "g4_iq4nl_values differs from the IQ4 grid");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const g4_type_traits *tr = g4_type_info(types[t]);
        enum { NB = 3 };
        _Alignas(8) uint8_t buf[NB * 292];
        float y[NB * 256];
        for (int trial = 0; trial < 20; trial++) {
            for (size_t i = 0; i < NB * tr->type_size; i++) buf[i] = (uint8_t)rand_u32();
            for (int blk = 0; blk < NB; blk++) fix_scales(types[t], buf + blk * tr->type_size);
            g4_dequantize_row(types[t], buf, y, NB * tr->blck_size);
            int bad = 0;
            for (int blk = 0; blk < NB; blk++)
                for (int k = 0; k < tr->blck_size; k++) {
                    const float want = formula(types[t], buf + blk * tr->type_size, k);
                    const float got = y[blk * tr->blck_size + k];
                    if (bits_of(got) != bits_of(want)) {
                        if (!bad) fprintf(stderr, "  %s block %d value %d: %g, want %g\n", tr->name, blk, k, got, want);
                        bad++;
                    }
                }
            CHECK(bad == 0, "%s: %d dequantized values differ from the formula", tr->name, bad);
        }
    }

    /* the float formats */
    uint16_t h[512];
    float f[512], y[512];
    for (int i = 0; i < 512; i++) {
        do h[i] = (uint16_t)rand_u32(); while (fp16_is_nan(h[i]));
        f[i] = rand_normal() * 100;
    }
    int bad = 0;
    g4_dequantize_row(G4_TYPE_F16, h, y, 512);
    for (int i = 0; i < 512; i++) bad += (double)y[i] != fp16_value(h[i]);
    CHECK(bad == 0, "f16: %d values wrong", bad);
    bad = 0;
    g4_dequantize_row(G4_TYPE_BF16, h, y, 512);
    for (int i = 0; i < 512; i++) bad += bits_of(y[i]) != (uint32_t)h[i] << 16;
    CHECK(bad == 0, "bf16: %d values wrong", bad);
    g4_dequantize_row(G4_TYPE_F32, f, y, 512);
    CHECK(memcmp(f, y, sizeof f) == 0, "f32 dequantize must copy");
}

/* ---- round-trip error bounds ------------------------------------------------- */

/* Largest |x - y| over the values allowed by the format's analytic bound;
 * returns the number of values outside it (and for K formats blocks whose
 * RMS error is outside). */
static int count_out_of_bounds(enum g4_type type, const float *x, const float *y, int64_t n, double *worst) {
    int out = 0;
    *worst = 0;
    const int64_t bs = type == G4_TYPE_Q8_0 || type == G4_TYPE_Q4_0 ? 32 : type == G4_TYPE_F32 || type == G4_TYPE_F16 || type == G4_TYPE_BF16 ? 1 : 256;
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
        const float *xb = x + b0, *yb = y + b0;
        double amax = 0, mx = 0, lo = 0, hi = 0;
        for (int k = 0; k < bs; k++) {
            if (fabs(xb[k]) > amax) amax = fabs(xb[k]), mx = xb[k];
            lo = fmin(lo, xb[k]), hi = fmax(hi, xb[k]);
        }
        double se = 0;
        for (int k = 0; k < bs; k++) {
            const double err = fabs((double)xb[k] - yb[k]);
            double bound;
            switch (type) {
            case G4_TYPE_F32: bound = 0; break;
            case G4_TYPE_F16: bound = fmax(fabs(xb[k]) * 0x1p-11, 0x1p-25); break;
            case G4_TYPE_BF16: bound = fabs(xb[k]) * 0x1p-8; break;
            case G4_TYPE_Q8_0: { /* half a step, plus the fp16 rounding of d times the largest code */
                const double d = amax / 127, dh = g4_fp16_to_fp32(g4_fp32_to_fp16((float)d));
                bound = 0.5 * d + 127 * fabs(d - dh) + 1e-6 * amax;
                break;
            }
            case G4_TYPE_Q4_0: { /* codes -8..7 with d = max/-8: half a step, a full step for x/d > 7.5 */
                const double d = mx / -8, dh = g4_fp16_to_fp32(g4_fp32_to_fp16((float)d));
                const double q = d != 0 ? xb[k] / d : 0;
                bound = (q > 7.49 ? 1.0 : 0.5) * fabs(d) + 8 * fabs(d - dh) + 1e-6 * amax;
                break;
            }
            case G4_TYPE_Q8_K: bound = 0.5 * amax / 127 + 1e-6 * amax; break;
            /* K formats: a step of the super-block's range over the code
             * count (sub-block scales and mins are themselves quantized to
             * 6 or 8 bits, which can cost up to another half step) */
            case G4_TYPE_Q4_K: bound = (hi - fmin(lo, 0)) / 15; break;
            case G4_TYPE_Q5_K: bound = (hi - fmin(lo, 0)) / 31; break;
            case G4_TYPE_Q6_K: bound = amax / 32; break;
            default: bound = -1; break;
            }
            se += err * err;
            if (bound > 0 && err / bound > *worst) *worst = err / bound;
            if (err > bound) out++;
        }
        /* RMS: at most half a step of the super-block range */
        const double rms = sqrt(se / bs);
        if (type == G4_TYPE_Q4_K && rms > 0.5 * (hi - fmin(lo, 0)) / 15) out++;
        if (type == G4_TYPE_Q5_K && rms > 0.5 * (hi - fmin(lo, 0)) / 31) out++;
        if (type == G4_TYPE_Q6_K && rms > 0.5 * amax / 32) out++;
    }
    return out;
}

static void fill(int dist, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        switch (dist) {
        case 0: x[i] = rand_uniform(-1, 1); break;
        case 1: x[i] = rand_normal(); break;
        case 2: x[i] = ldexpf(rand_u32() & 1 ? 1 : -1, -(int)(rand_u32() % 24)) * rand_uniform(1, 2); break; /* wide range */
        case 3: x[i] = rand_uniform(5, 6); break;     /* all positive: the K mins */
        case 4: x[i] = rand_uniform(-0.03f, -0.02f); break; /* all negative, small */
        case 5: x[i] = rand_u32() % 10 ? 0 : rand_normal(); break; /* sparse */
        case 6: x[i] = rand_normal() * 0.05f; break;
        }
    }
    if (dist == 6) x[n / 3] = 1e4f; /* one huge outlier */
}

static const char *const dist_names[] = {"uniform", "normal", "wide", "positive", "negative", "sparse", "outlier"};

static void test_round_trip(void) {
    static const enum g4_type types[] = {G4_TYPE_F32, G4_TYPE_F16, G4_TYPE_BF16, G4_TYPE_Q8_0, G4_TYPE_Q4_0,
                                         G4_TYPE_Q4_K, G4_TYPE_Q5_K, G4_TYPE_Q6_K, G4_TYPE_Q8_K};
    enum { N = 7 * 256 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const enum g4_type type = types[t];
        const g4_type_traits *tr = g4_type_info(type);
        /* odd block counts: 7 super-blocks, 55 blocks of 32, 1791 floats */
        const int64_t n = tr->blck_size == 256 ? N : tr->blck_size == 32 ? 55 * 32 : N - 1;
        CHECK(g4_can_quantize(type), "%s must be quantizable", tr->name);
        double worst_all = 0;
        for (int dist = 0; dist < 7; dist++) {
            fill(dist, x, n);
            const size_t size = g4_quantize_row(type, x, q, n);
            CHECK(size == g4_row_size(type, n), "%s: returned %zu bytes", tr->name, size);
            g4_dequantize_row(type, q, y, n);
            double worst;
            const int out = count_out_of_bounds(type, x, y, n, &worst);
            CHECK(out == 0, "%s on %s data: %d values/blocks outside the bound (worst %.3f of it)", tr->name, dist_names[dist], out, worst);
            worst_all = fmax(worst_all, worst);
        }
        /* all zero: exact zeros back; the only non-zero bytes are Q4_0's
         * (d = 0 / -8 = -0, fp16 0x8000, as in ggml; code 8 is 0) */
        memset(x, 0, sizeof x);
        const size_t size = g4_quantize_row(type, x, q, n);
        int nonzero = 0;
        for (size_t i = 0; i < size; i++) nonzero += q[i] != (type != G4_TYPE_Q4_0 ? 0 : i % 18 >= 2 ? 0x88 : i % 18 == 1 ? 0x80 : 0);
        CHECK(nonzero == 0, "%s of zeros: %d unexpected bytes", tr->name, nonzero);
        g4_dequantize_row(type, q, y, n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) bad += y[i] != 0;
        CHECK(bad == 0, "%s of zeros dequantizes to %d non-zeros", tr->name, bad);
        printf("  %-5s round trip: worst error %.3f of the bound over 7 distributions\n", tr->name, worst_all);
    }
    static const enum g4_type none[] = {G4_TYPE_Q4_1, G4_TYPE_Q5_0, G4_TYPE_Q5_1, G4_TYPE_Q2_K,
                                        G4_TYPE_Q3_K, G4_TYPE_IQ4_NL, G4_TYPE_IQ4_XS, G4_TYPE_Q8_1};
    for (size_t t = 0; t < sizeof none / sizeof none[0]; t++) {
        CHECK(!g4_can_quantize(none[t]), "%s has no quantizer", g4_type_name(none[t]));
        CHECK(g4_quantize_row(none[t], x, q, 256) == 0, "%s must return 0 bytes", g4_type_name(none[t]));
    }
}

/* ---- fixture models ------------------------------------------------------------ */

/* Every non-F32 tensor of the quantized fixtures, requantized from the
 * F32 model's weights, must come out byte for byte; its dequantization
 * must stay within the format's error bound of the float weights. */
static void test_fixtures(void) {
    static const char *const shapes[] = {"e2b", "moe", "dense"};
    static const char *const qtypes[] = {"q8_0", "q4_0", "q4_k"};
    int same[G4_TYPE_COUNT] = {0}, total[G4_TYPE_COUNT] = {0};
    char path[1024], err[G4_ERR_LEN];
    for (int s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "%s/models/%s_f32.gguf", test_fixtures_dir(), shapes[s]);
        g4_gguf_file *ff = g4_gguf_open(path, err);
        CHECK(ff != NULL, "%s", err);
        if (!ff) continue;
        for (int qt = 0; qt < 3; qt++) {
            snprintf(path, sizeof path, "%s/models/%s_%s.gguf", test_fixtures_dir(), shapes[s], qtypes[qt]);
            g4_gguf_file *fq = g4_gguf_open(path, err);
            CHECK(fq != NULL, "%s", err);
            if (!fq) continue;
            int n_quant = 0;
            for (int64_t i = 0; i < g4_gguf_n_tensors(fq); i++) {
                const g4_gguf_tensor *tq = g4_gguf_tensor_at(fq, i);
                if (tq->type == G4_TYPE_F32) continue;
                n_quant++;
                const g4_gguf_tensor *tf = g4_gguf_find_tensor(ff, tq->name);
                CHECK(tf && tf->type == G4_TYPE_F32 && !memcmp(tf->ne, tq->ne, sizeof tq->ne),
                      "%s: %s has no F32 counterpart of the same shape", path, tq->name);
                if (!tf || tf->type != G4_TYPE_F32 || memcmp(tf->ne, tq->ne, sizeof tq->ne)) continue;
                const int64_t ne0 = tq->ne[0], rows = tq->ne[1] * tq->ne[2] * tq->ne[3];
                const size_t row_size = g4_row_size(tq->type, ne0);
                uint8_t *buf = malloc(row_size);
                float *x = malloc((size_t)ne0 * sizeof *x), *y = malloc((size_t)ne0 * sizeof *y);
                int64_t bad_rows = 0, out = 0;
                double worst = 0;
                for (int64_t r = 0; r < rows; r++) {
                    memcpy(x, (const char *)tf->data + r * ne0 * 4, (size_t)ne0 * 4);
                    const uint8_t *want = (const uint8_t *)tq->data + r * row_size;
                    g4_quantize_row(tq->type, x, buf, ne0);
                    if (memcmp(buf, want, row_size)) {
                        if (!bad_rows) {
                            size_t b = 0;
                            while (buf[b] == want[b]) b++;
                            fprintf(stderr, "  %s %s (%s) row %lld byte %zu: 0x%02x, want 0x%02x\n", path, tq->name,
                                    g4_type_name(tq->type), (long long)r, b, buf[b], want[b]);
                        }
                        bad_rows++;
                    }
                    g4_dequantize_row(tq->type, want, y, ne0);
                    double w;
                    out += count_out_of_bounds(tq->type, x, y, ne0, &w);
                    worst = fmax(worst, w);
                }
                CHECK(bad_rows == 0, "%s: %s (%s): %lld of %lld rows differ from the file", path, tq->name,
                      g4_type_name(tq->type), (long long)bad_rows, (long long)rows);
                CHECK(out == 0, "%s: %s: %lld dequantized values outside the bound (worst %.3f)", path, tq->name,
                      (long long)out, worst);
                total[tq->type]++;
                same[tq->type] += bad_rows == 0;
                free(buf), free(x), free(y);
            }
            CHECK(n_quant > 0, "%s holds no quantized tensors", path);
            g4_gguf_close(fq);
        }
        g4_gguf_close(ff);
    }
    for (int t = 0; t < G4_TYPE_COUNT; t++)
        if (total[t]) printf("  %-5s fixtures: %d of %d tensors byte-identical to ggml\n", g4_type_name((uint32_t)t), same[t], total[t]);
    CHECK(total[G4_TYPE_Q8_0] > 0 && total[G4_TYPE_Q4_0] > 0 && total[G4_TYPE_Q4_K] > 0 && total[G4_TYPE_F16] > 0,
          "fixtures must exercise q8_0, q4_0, q4_k and f16");
}

int main(void) {
    test_fp16_exhaustive();
    test_fp16_ties();
    test_fp16_random();
    test_bf16();
    test_hand_q8_0();
    test_hand_q4_0();
    test_hand_kx(G4_TYPE_Q4_K);
    test_hand_kx(G4_TYPE_Q5_K);
    test_hand_q6_K();
    test_hand_q8_K();
    test_dequantize_formulas();
    test_round_trip();
    test_fixtures();
    return test_summary("test_formats");
}
