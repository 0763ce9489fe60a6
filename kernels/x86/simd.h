/* The intrinsics of the AVX-512 kernel files (kernels/x86/avx512*.c).
 *
 * The shipped build takes them from <immintrin.h> and compiles each file
 * for AVX-512. The test-only build (make test: build/.../tests/
 * test_kernels_simde) defines G4_SIMDE and compiles the same sources for
 * plain x86-64 against SIMDe (SIMD Everywhere, Debian's libsimde-dev):
 * header-only portable C versions of the same intrinsics, so the kernels'
 * bit-exactness tests against the scalar reference run on any CPU. */
#ifndef G4_X86_SIMD_H
#define G4_X86_SIMD_H

#ifndef G4_SIMDE
#include <immintrin.h>
#else
#ifndef SIMDE_ENABLE_NATIVE_ALIASES
#define SIMDE_ENABLE_NATIVE_ALIASES
#endif
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>

/* What SIMDe 0.7.4 (Debian 12) lacks or gets wrong for these kernels,
 * defined lane by lane after Intel's definitions (the emulated build is a
 * test, never timed). Defined over SIMDe's own names when a newer release
 * has them, so every SIMDe version computes the same. */

/* Its emulated multiply-adds round twice (a * b, then + c) unless the
 * compiler has a fast fmaf; the kernels' bits depend on one rounding. */
#define G4_SIMDE_FMA(name, vec, n, sign)                                                                             \
    static inline vec name(vec a, vec b, vec c) {                                                                    \
        float x[n], y[n], z[n];                                                                                      \
        memcpy(x, &a, sizeof x), memcpy(y, &b, sizeof y), memcpy(z, &c, sizeof z);                                   \
        for (int i = 0; i < n; i++) z[i] = fmaf(sign x[i], y[i], z[i]);                                              \
        memcpy(&c, z, sizeof z);                                                                                     \
        return c;                                                                                                    \
    }
G4_SIMDE_FMA(g4_simde_fmadd_ps512, __m512, 16, +)
G4_SIMDE_FMA(g4_simde_fnmadd_ps512, __m512, 16, -)
G4_SIMDE_FMA(g4_simde_fmadd_ps256, __m256, 8, +)
#undef G4_SIMDE_FMA
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps(a, b, c) g4_simde_fmadd_ps512(a, b, c)
#undef _mm512_fnmadd_ps
#define _mm512_fnmadd_ps(a, b, c) g4_simde_fnmadd_ps512(a, b, c)
#undef _mm256_fmadd_ps
#define _mm256_fmadd_ps(a, b, c) g4_simde_fmadd_ps256(a, b, c)

/* Its alias takes the arguments of the masked form. */
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)

typedef simde__mmask16 __mmask16;
typedef simde__mmask64 __mmask64;

/* Lane-wise conversions between vectors of 16 (or 8) lanes. */
#define G4_SIMDE_MAP(name, to_t, to_e, from_t, from_e, n, expr)                                                      \
    static inline to_t name(from_t v) {                                                                              \
        from_e a[n];                                                                                                 \
        to_e r[n];                                                                                                   \
        memcpy(a, &v, sizeof a);                                                                                     \
        for (int i = 0; i < n; i++) r[i] = (expr);                                                                   \
        to_t out;                                                                                                    \
        memcpy(&out, r, sizeof r);                                                                                   \
        return out;                                                                                                  \
    }

/* vcvtps2dq: round to nearest even (the default rounding mode), the
 * "integer indefinite" INT32_MIN when out of range. */
static inline int32_t g4_simde_cvt_rne(float f) {
    return f >= -2147483648.0f && f < 2147483648.0f ? (int32_t)nearbyintf(f) : INT32_MIN;
}

static inline float g4_simde_half(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16((short)h))); }

G4_SIMDE_MAP(g4_simde_cvtepi32_ps, __m512, float, __m512i, int32_t, 16, (float)a[i])
G4_SIMDE_MAP(g4_simde_cvtps_epi32, __m512i, int32_t, __m512, float, 16, g4_simde_cvt_rne(a[i]))
G4_SIMDE_MAP(g4_simde_cvtepu16_epi32, __m512i, int32_t, __m256i, uint16_t, 16, (int32_t)a[i])
G4_SIMDE_MAP(g4_simde_cvtph_ps, __m512, float, __m256i, uint16_t, 16, g4_simde_half(a[i]))
G4_SIMDE_MAP(g4_simde_cvtps_pd, __m512d, double, __m256, float, 8, (double)a[i])
G4_SIMDE_MAP(g4_simde_cvtpd_ps, __m256, float, __m512d, double, 8, (float)a[i])
G4_SIMDE_MAP(g4_simde_movehdup_ps, __m512, float, __m512, float, 16, a[i | 1])
#undef G4_SIMDE_MAP
#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps(a) g4_simde_cvtepi32_ps(a)
#undef _mm512_cvtps_epi32
#define _mm512_cvtps_epi32(a) g4_simde_cvtps_epi32(a)
#undef _mm512_cvtepu16_epi32
#define _mm512_cvtepu16_epi32(a) g4_simde_cvtepu16_epi32(a)
#undef _mm512_cvtph_ps
#define _mm512_cvtph_ps(a) g4_simde_cvtph_ps(a)
#undef _mm512_cvtps_pd
#define _mm512_cvtps_pd(a) g4_simde_cvtps_pd(a)
#undef _mm512_cvtpd_ps
#define _mm512_cvtpd_ps(a) g4_simde_cvtpd_ps(a)
#undef _mm512_movehdup_ps
#define _mm512_movehdup_ps(a) g4_simde_movehdup_ps(a)

static inline float g4_simde_cvtss_f32(__m512 a) {
    float f[16];
    memcpy(f, &a, sizeof f);
    return f[0];
}
#undef _mm512_cvtss_f32
#define _mm512_cvtss_f32(a) g4_simde_cvtss_f32(a)

/* Lanes 8 imm .. 8 imm + 7. */
static inline __m256 g4_simde_extractf32x8_ps(__m512 a, int imm) {
    float f[16];
    __m256 r;
    memcpy(f, &a, sizeof f);
    memcpy(&r, f + 8 * (imm & 1), sizeof r);
    return r;
}
#undef _mm512_extractf32x8_ps
#define _mm512_extractf32x8_ps(a, imm) g4_simde_extractf32x8_ps(a, imm)

/* Within each 128-bit block, lane j takes lane (imm >> 2j) & 3. */
static inline __m512 g4_simde_permute_ps(__m512 a, int imm) {
    float f[16], r[16];
    memcpy(f, &a, sizeof f);
    for (int i = 0; i < 16; i++) r[i] = f[(i & ~3) | ((imm >> (2 * (i & 3))) & 3)];
    memcpy(&a, r, sizeof r);
    return a;
}
#undef _mm512_permute_ps
#define _mm512_permute_ps(a, imm) g4_simde_permute_ps(a, imm)

/* 128-bit blocks: the low two from a, the high two from b, block j being
 * block (imm >> 2j) & 3 of its source. */
static inline __m512 g4_simde_shuffle_f32x4(__m512 a, __m512 b, int imm) {
    float x[16], y[16], r[16];
    memcpy(x, &a, sizeof x), memcpy(y, &b, sizeof y);
    for (int j = 0; j < 4; j++) memcpy(r + 4 * j, (j < 2 ? x : y) + 4 * ((imm >> (2 * j)) & 3), 4 * sizeof(float));
    memcpy(&a, r, sizeof r);
    return a;
}
#undef _mm512_shuffle_f32x4
#define _mm512_shuffle_f32x4(a, b, imm) g4_simde_shuffle_f32x4(a, b, imm)

/* Masked loads and stores touch only the lanes whose bit is set. */
static inline __m512 g4_simde_maskz_loadu_ps(__mmask16 m, const void *p) {
    float r[16] = {0};
    for (int i = 0; i < 16; i++)
        if (m >> i & 1) memcpy(&r[i], (const char *)p + 4 * i, sizeof r[i]);
    __m512 v;
    memcpy(&v, r, sizeof r);
    return v;
}
static inline void g4_simde_mask_storeu_ps(void *p, __mmask16 m, __m512 a) {
    float f[16];
    memcpy(f, &a, sizeof f);
    for (int i = 0; i < 16; i++)
        if (m >> i & 1) memcpy((char *)p + 4 * i, &f[i], sizeof f[i]);
}
static inline __m256i g4_simde_maskz_loadu_epi16(__mmask16 m, const void *p) {
    uint16_t r[16] = {0};
    for (int i = 0; i < 16; i++)
        if (m >> i & 1) memcpy(&r[i], (const char *)p + 2 * i, sizeof r[i]);
    __m256i v;
    memcpy(&v, r, sizeof r);
    return v;
}
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps(m, p) g4_simde_maskz_loadu_ps(m, p)
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps(p, m, a) g4_simde_mask_storeu_ps(p, m, a)
#undef _mm256_maskz_loadu_epi16
#define _mm256_maskz_loadu_epi16(m, p) g4_simde_maskz_loadu_epi16(m, p)

/* F16C's scalar conversion. */
#undef _cvtsh_ss
#define _cvtsh_ss(h) g4_simde_half(h)
#endif

#endif
