/* QAT-aware Q4_0 (see tools/convert/convert.h). ggml's reference quantizer picks
 * d = (signed value of largest magnitude) / -8 from the data, which equals
 * the trained scale only when that value happens to sit at code -8; a QAT
 * group whose largest value is, say, +7s comes out with d = -7s/8 and every
 * code moves. Here the scale is searched among the few that put the largest
 * value on an integer code and accepted only if every value of the group
 * lands on the grid. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/convert/convert.h"

#define FP16_MAX 65504.0f

/* x rounded to the dtype the checkpoint stored it in. */
static float round_to(enum g4_type src, double x) {
    if (src == G4_TYPE_BF16) return g4_bf16_to_fp32(g4_fp32_to_bf16((float)x));
    if (src == G4_TYPE_F16) return g4_fp16_to_fp32(g4_fp32_to_fp16((float)x));
    return (float)x;
}

/* Codes of x on the grid of scale s, or false if some value is not exactly
 * k * s (after rounding to src) for an integer k in [-8, 7]. */
static bool on_grid(const float *x, float s, enum g4_type src, int8_t *k) {
    if (!(s != 0) || !isfinite(s)) return false;
    for (int i = 0; i < G4_QK; i++) {
        double q = nearbyint((double)x[i] / s);
        if (q < -8 || q > 7 || round_to(src, q * (double)s) != x[i]) return false;
        k[i] = (int8_t)q;
    }
    return true;
}

static void pack(g4_fp16 d, const int8_t *k, block_q4_0 *b) {
    b->d = d;
    for (int j = 0; j < G4_QK / 2; j++) b->qs[j] = (uint8_t)((k[j] + 8) | (k[j + G4_QK / 2] + 8) << 4);
}

static double block_error(const float *x, const block_q4_0 *b) {
    float y[G4_QK];
    g4_dequantize_row(G4_TYPE_Q4_0, b, y, G4_QK);
    double e = 0;
    for (int i = 0; i < G4_QK; i++) e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

/* Codes for an FP16 scale, rounded to nearest and clamped. */
static void block_for_scale(const float *x, float scale, block_q4_0 *b) {
    float d = fminf(fmaxf(scale, -FP16_MAX), FP16_MAX);
    g4_fp16 h = g4_fp32_to_fp16(d);
    float dd = g4_fp16_to_fp32(h);
    int8_t k[G4_QK];
    for (int i = 0; i < G4_QK; i++) {
        double q = dd != 0 ? nearbyint((double)x[i] / dd) : 0;
        k[i] = (int8_t)(q < -8 ? -8 : q > 7 ? 7 : q);
    }
    pack(h, k, b);
}

/* Lowest squared error among ggml's block and those of the given scales
 * plus a sweep of divisors of the largest value. */
static void best_block(const float *x, float amax_signed, const float *extra, int n_extra, block_q4_0 *out) {
    static const float divisors[] = {-7.5f, -7.0f, -6.5f, -6.0f, 7.0f, 6.5f, 6.0f, 5.5f};
    g4_quantize_row(G4_TYPE_Q4_0, x, out, G4_QK);
    double best = block_error(x, out);
    int n = n_extra + (int)(sizeof divisors / sizeof divisors[0]);
    for (int c = 0; c < n; c++) {
        block_q4_0 b;
        block_for_scale(x, c < n_extra ? extra[c] : amax_signed / divisors[c - n_extra], &b);
        double e = block_error(x, &b);
        if (e < best || isnan(best)) best = e, *out = b; /* ggml's own scale may overflow FP16 */
    }
}

/* The grid scale of one group, searched as tools/convert/convert.h describes;
 * false if there is none. */
static bool find_grid(const float *x, float m, enum g4_type src, float *scale, int8_t *k) {
    for (int sign = 1; sign >= -1; sign -= 2) {
        /* code of m for a scale of this sign: same sign as m when s > 0 */
        int k_hi = (m > 0) == (sign > 0) ? 7 : 8;
        for (int km = k_hi; km >= 1; km--) {
            float f = (float)((double)m / (sign * ((m > 0) ? km : -km)));
            /* m itself was rounded to src, so a BF16 scale is f rounded to
             * BF16 or one of its neighbours; these come first, as rounding
             * to src also accepts scales a little off the true one */
            g4_bf16 b = g4_fp32_to_bf16(f);
            float cand[4] = {g4_bf16_to_fp32(b), g4_bf16_to_fp32((g4_bf16)(b + 1)), g4_bf16_to_fp32((g4_bf16)(b - 1)), f};
            for (int c = 0; c < 4; c++)
                if (on_grid(x, cand[c], src, k)) {
                    *scale = cand[c];
                    return true;
                }
        }
    }
    return false;
}

void g4_qat_quantize_q4_0(const float *x, int64_t n, enum g4_type src, block_q4_0 *out, g4_qat_stats *st) {
    for (int64_t g = 0; g < n / G4_QK; g++, x += G4_QK, out++) {
        st->blocks++;
        float m = 0;
        for (int i = 0; i < G4_QK; i++)
            if (fabsf(x[i]) > fabsf(m)) m = x[i];
        int8_t k[G4_QK];
        float s;
        if (m == 0) { /* all zero: ggml's block (d = 0, codes 8) is the grid */
            g4_quantize_row(G4_TYPE_Q4_0, x, out, G4_QK);
            st->on_grid++, st->naive_exact++;
            continue;
        }
        if (!find_grid(x, m, src, &s, k)) {
            best_block(x, m, NULL, 0, out);
            st->off_grid++;
            continue;
        }
        g4_fp16 h = g4_fp32_to_fp16(s);
        if (g4_fp16_to_fp32(h) != s) {
            best_block(x, m, &s, 1, out);
            st->fp16_fallback++;
            continue;
        }
        pack(h, k, out);
        block_q4_0 naive;
        g4_quantize_row(G4_TYPE_Q4_0, x, &naive, G4_QK);
        st->on_grid++;
        st->naive_exact += !memcmp(&naive, out, sizeof naive);
    }
}

void g4_qat_stats_add(g4_qat_stats *sum, const g4_qat_stats *st) {
    sum->blocks += st->blocks;
    sum->on_grid += st->on_grid;
    sum->naive_exact += st->naive_exact;
    sum->fp16_fallback += st->fp16_fallback;
    sum->off_grid += st->off_grid;
}

void g4_qat_stats_print(const char *name, const g4_qat_stats *st) {
    double n = st->blocks ? (double)st->blocks : 1;
    fprintf(stderr, "%s: %lld blocks, %.2f%% byte-exact on their grid (ggml max/-8 would get %.2f%%), %lld FP16 scale fallbacks, %lld off grid\n",
            name, (long long)st->blocks, 100 * st->on_grid / n, 100 * st->naive_exact / n, (long long)st->fp16_fallback,
            (long long)st->off_grid);
}
