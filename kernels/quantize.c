/* Scalar reference quantizers. The bytes equal ggml's quantize_row_*_ref
 * (what llama-quantize writes without an importance matrix), so every float
 * operation below follows ggml's order: a different rounding anywhere can
 * flip a code or a search decision. */
#include <math.h>
#include <string.h>

#include "kernels/formats.h"
#include "kernels/kquant_scales.h"

#if defined(__clang__)
/* a fused multiply-add would round differently from ggml's build */
#pragma STDC FP_CONTRACT OFF
#endif

/* Below this a group counts as all zero (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, for |x| < 2^22: adding 1.5*2^23 leaves the
 * integer in the low mantissa bits. Defined for every input (no float->int
 * conversion), like ggml's nearest_int. */
static int nearest_int(float x) {
    const float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

static void quantize_f16(const float *x, g4_fp16 *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g4_fp32_to_fp16(x[i]);
}

static void quantize_bf16(const float *x, g4_bf16 *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g4_fp32_to_bf16(x[i]);
}

/* d = amax/127, codes rounded half away from zero (roundf). */
static void quantize_q8_0(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += G4_QK) {
        float amax = 0.0f;
        for (int j = 0; j < G4_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        for (int j = 0; j < G4_QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* The value of largest magnitude maps to code 0 (d = max / -8), so the
 * asymmetric range -8..7 covers it exactly; codes round half up. */
static void quantize_q4_0(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += G4_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < G4_QK; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        for (int j = 0; j < G4_QK / 2; j++) {
            const int q0 = imin(15, (int8_t)(x[j] * id + 8.5f));
            const int q1 = imin(15, (int8_t)(x[j + G4_QK / 2] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ggml's make_qkx2_quants: codes L in 0..nmax and (scale, min) with
 * x ~ scale*L - min, min >= 0. Starts from the plain min/max fit, then tries
 * nstep+1 slightly different scales, refitting scale and min by weighted
 * least squares on each code assignment and keeping the lowest weighted
 * squared error. Returns scale; *the_min gets min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L,
                              float *the_min, float rmin, float rdelta, int nstep) {
    uint8_t Laux[32];
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        const float diff = scale * L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        /* min is the best fit so far, as in ggml */
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Q4_K and Q5_K share everything but the code width and the search range:
 * per 32-value sub-block a (scale, min) fit weighted by |x| + rms(x), both
 * quantized to 6 bits against the super-block maxima, then every code
 * recomputed from the quantized scale and min. Fills the 256 codes L. */
static void quantize_kx_superblock(const float *x, int nmax, float rmin, int nstep, g4_fp16 *d_out,
                                   g4_fp16 *dmin_out, uint8_t packed[G4_K_SCALE_SIZE],
                                   uint8_t L[G4_QK_K]) {
    float scales[G4_QK_K / 32], mins[G4_QK_K / 32], w[32];
    float max_scale = 0, max_min = 0; /* the min is subtracted, so both are >= 0 */
    for (int j = 0; j < G4_QK_K / 32; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        scales[j] = make_qkx2_quants(32, nmax, xs, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }

    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < G4_QK_K / 32; j++) {
        /* ggml stores the rounded value in a uint8_t before clamping */
        const uint8_t ls = (uint8_t)imin(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        const uint8_t lm = (uint8_t)imin(63, (uint8_t)nearest_int(inv_min * mins[j]));
        if (j < 4) { /* written before pairs 4-7 OR in their top bits */
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = g4_fp32_to_fp16(max_scale / 63.f);
    *dmin_out = g4_fp32_to_fp16(max_min / 63.f);

    const float d = g4_fp16_to_fp32(*d_out), dmin = g4_fp16_to_fp32(*dmin_out);
    for (int j = 0; j < G4_QK_K / 32; j++) {
        uint8_t sc, m;
        g4_kquant_scale_min(j, packed, &sc, &m);
        const float dl = d * sc;
        if (dl == 0.0f) continue; /* keep the codes of the unquantized fit */
        const float ml = dmin * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + l] + ml) / dl)));
    }
}

static void quantize_q4_K(const float *x, block_q4_K *y, int64_t nb) {
    uint8_t L[G4_QK_K];
    for (int64_t i = 0; i < nb; i++, x += G4_QK_K) {
        quantize_kx_superblock(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* per 64 values: the first 32 in low nibbles, the next 32 in high */
        for (int j = 0; j < G4_QK_K; j += 64)
            for (int l = 0; l < 32; l++) y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void quantize_q5_K(const float *x, block_q5_K *y, int64_t nb) {
    uint8_t L[G4_QK_K];
    for (int64_t i = 0; i < nb; i++, x += G4_QK_K) {
        quantize_kx_superblock(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int j = 0; j < G4_QK_K; j += 64) {
            for (int l = 0; l < 32; l++) {
                const int l1 = L[j + l], l2 = L[j + l + 32];
                y[i].qs[j / 2 + l] = (uint8_t)((l1 & 0xf) | ((l2 & 0xf) << 4));
                y[i].qh[l] |= (uint8_t)(((l1 >> 4) << (j / 32)) | ((l2 >> 4) << (j / 32 + 1)));
            }
        }
    }
}

/* ggml's make_qx_quants with rmse_type 1 and no importance weights: signed
 * codes -nmax..nmax-1 (stored biased by nmax) with the scale fitted by
 * least squares weighted by x^2, trying 18 scales around nmax/max. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales relative to the scale of
 * largest magnitude (which maps to -128), then the codes refitted. */
static void quantize_q6_K(const float *x, block_q6_K *y, int64_t nb) {
    int8_t L[G4_QK_K];
    float scales[G4_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += G4_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < G4_QK_K / 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = g4_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < G4_QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));

        const float d = g4_fp16_to_fp32(y[i].d);
        for (int j = 0; j < G4_QK_K / 16; j++) {
            const float dl = d * y[i].scales[j];
            if (dl == 0.0f) continue; /* keep the codes of the unquantized fit */
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + l] / dl))) + 32);
        }

        /* per 128 values: low nibbles of 32*s + l in ql[l + 32*(s%2)] (nibble
         * s/2), high 2 bits in qh[l] (bits 2s) */
        for (int j = 0; j < G4_QK_K; j += 128) {
            uint8_t *ql = y[i].ql + j / 2, *qh = y[i].qh + j / 4;
            for (int l = 0; l < 32; l++) {
                const int q0 = L[j + l], q1 = L[j + l + 32], q2 = L[j + l + 64], q3 = L[j + l + 96];
                ql[l] = (uint8_t)((q0 & 0xf) | ((q2 & 0xf) << 4));
                ql[l + 32] = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
                qh[l] = (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
            }
        }
    }
}

/* Q8_K (activations): float d = max/-127, codes rounded to nearest even,
 * plus the sum of every 16 codes for the K-format dot products. */
static void quantize_q8_K(const float *x, block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += G4_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < G4_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < G4_QK_K; j++) y[i].qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < G4_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

bool g4_can_quantize(enum g4_type type) {
    switch (type) {
    case G4_TYPE_F32: case G4_TYPE_F16: case G4_TYPE_BF16: case G4_TYPE_Q8_0: case G4_TYPE_Q4_0:
    case G4_TYPE_Q4_K: case G4_TYPE_Q5_K: case G4_TYPE_Q6_K: case G4_TYPE_Q8_K:
        return true;
    default:
        return false;
    }
}

size_t g4_quantize_row(enum g4_type type, const float *src, void *dst, int64_t n) {
    if (!g4_can_quantize(type)) return 0;
    const int64_t nb32 = n / G4_QK, nbk = n / G4_QK_K;
    switch (type) {
    case G4_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case G4_TYPE_F16: quantize_f16(src, dst, n); break;
    case G4_TYPE_BF16: quantize_bf16(src, dst, n); break;
    case G4_TYPE_Q8_0: quantize_q8_0(src, dst, nb32); break;
    case G4_TYPE_Q4_0: quantize_q4_0(src, dst, nb32); break;
    case G4_TYPE_Q4_K: quantize_q4_K(src, dst, nbk); break;
    case G4_TYPE_Q5_K: quantize_q5_K(src, dst, nbk); break;
    case G4_TYPE_Q6_K: quantize_q6_K(src, dst, nbk); break;
    case G4_TYPE_Q8_K: quantize_q8_K(src, dst, nbk); break;
    default: break;
    }
    return g4_row_size(type, n);
}
