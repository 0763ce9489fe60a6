/* Synthetic weights: exact (splitmix stream + reference quantizers) and fast
 * (random blocks). See tools/synth/synth_weights.h. */
#include "tools/synth/synth_weights.h"

#include <math.h>
#include <string.h>

/* Uniform ranges [lo, hi] of the 1-D tensors, as in the fixtures' "init". */
static const struct {
    double lo, hi;
} ranges[] = {
    [G4_INIT_NORM] = {0.8, 1.2},        [G4_INIT_POST_NORM] = {0.15, 0.35},
    [G4_INIT_Q_NORM] = {0.15, 0.35},    [G4_INIT_K_NORM] = {0.8, 1.2},
    [G4_INIT_OUTPUT_NORM] = {4.0, 8.0}, [G4_INIT_OUT_SCALE] = {0.85, 1.0},
    [G4_INIT_ROUTER_SCALE] = {0.5, 1.5}, [G4_INIT_EXPERT_SCALE] = {0.5, 1.5},
};
/* router weights are this many times a unit-variance linear layer, so the
 * top-k choice is clear-cut */
#define ROUTER_GAIN 4.0

static uint64_t splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t tensor_key(uint64_t seed, const char *name) { return seed * 0x9E3779B97F4A7C15ull ^ fnv1a64(name); }

/* Element i of the counter stream: uniform in [-1, 1) with 24 random bits. */
static float uniform_at(uint64_t key, uint64_t i) {
    uint64_t z = splitmix64(i * 0xD1B54A32D192ED03ull + key);
    return (float)(2.0 * ((double)(z >> 40) * (1.0 / 16777216.0)) - 1.0);
}

/* Half-width of the uniform linear init: variance 1/fan_in. */
static double linear_amplitude(const g4_tensor_spec *t) {
    double a = sqrt(3.0 / (double)t->arg);
    return t->init == G4_INIT_ROUTER ? ROUTER_GAIN * a : a;
}

/* n exact values starting at flat index i0. The float operations and their
 * order are those of the fixture generator, so the results are bit-equal;
 * the multiply and the add are separate statements so that no compiler
 * fuses them into one differently rounded multiply-add. */
static void exact_values(const g4_tensor_spec *t, uint64_t key, int64_t i0, int64_t n, float *out) {
    if (t->init == G4_INIT_ROPE_FREQS) {
        for (int64_t i = 0; i < n; i++) out[i] = i0 + i < t->arg ? 1.0f : 1e30f;
        return;
    }
    if (t->init == G4_INIT_EMBED || t->init == G4_INIT_LINEAR || t->init == G4_INIT_ROUTER) {
        const float a = (float)linear_amplitude(t);
        for (int64_t i = 0; i < n; i++) out[i] = uniform_at(key, (uint64_t)(i0 + i)) * a;
        return;
    }
    const float lo = (float)ranges[t->init].lo;
    const float half = (float)((ranges[t->init].hi - ranges[t->init].lo) / 2);
    for (int64_t i = 0; i < n; i++) {
        float u1 = uniform_at(key, (uint64_t)(i0 + i)) + 1.0f;
        float scaled = u1 * half;
        out[i] = lo + scaled;
    }
}

/* ---- fast weights ---- */

typedef struct {
    uint64_t s[4];
} xoshiro;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(xoshiro *r) {
    uint64_t res = rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = rotl(r->s[3], 45);
    return res;
}

static xoshiro row_stream(uint64_t key, int64_t row) {
    xoshiro r;
    uint64_t x = key ^ ((uint64_t)row * 0xD6E8FEB86659FD93ull);
    for (int i = 0; i < 4; i++) r.s[i] = x = splitmix64(x);
    return r;
}

static void random_bytes(xoshiro *r, uint8_t *dst, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = next(r);
        memcpy(dst + i, &v, n - i < 8 ? n - i : 8);
    }
}

/* A block scale of the given magnitude and random sign, so that blocks with
 * a biased code distribution (Q4_0's -8..7) still average to zero. */
static g4_fp16 signed_scale(xoshiro *r, double magnitude) {
    return (g4_fp16)(g4_fp32_to_fp16((float)magnitude) | (next(r) & 0x8000));
}

/* Q4_K: sub-block scale = sub-block min = m in 32..63 and dmin = 7.5 d, so a
 * weight is d*m*(q - 7.5): zero mean, E[(q-7.5)^2] = 21.25, E[m^2] = 2341.5. */
static void fast_q4_k(xoshiro *r, double std, block_q4_K *b) {
    const double d = std / sqrt(21.25 * 2341.5);
    uint64_t sign = next(r) & 0x8000, bits = next(r);
    b->d = (g4_fp16)(g4_fp32_to_fp16((float)d) | sign);
    b->dmin = (g4_fp16)(g4_fp32_to_fp16((float)(7.5 * d)) | sign);
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 8; j++) {
        uint8_t m = (uint8_t)(32 + ((bits >> (5 * j)) & 31));
        if (j < 4) {
            b->scales[j] = m;
            b->scales[j + 4] = m;
        } else {
            b->scales[j + 4] = (uint8_t)((m & 0xF) | ((m & 0xF) << 4));
            b->scales[j - 4] |= (uint8_t)((m >> 4) << 6);
            b->scales[j] |= (uint8_t)((m >> 4) << 6);
        }
    }
    random_bytes(r, b->qs, sizeof b->qs);
}

static void fast_row(const g4_tensor_spec *t, enum g4_type type, uint64_t key, int64_t row, void *dst) {
    xoshiro r = row_stream(key, row);
    const double std = linear_amplitude(t) / sqrt(3.0);
    const int64_t n = t->ne[0];
    switch (type) {
    case G4_TYPE_Q4_0:
        for (block_q4_0 *b = dst; b < (block_q4_0 *)dst + n / G4_QK; b++) {
            b->d = signed_scale(&r, std / sqrt(21.5)); /* E[(q-8)^2] for q in 0..15 */
            random_bytes(&r, b->qs, sizeof b->qs);
        }
        break;
    case G4_TYPE_Q8_0:
        for (block_q8_0 *b = dst; b < (block_q8_0 *)dst + n / G4_QK; b++) {
            b->d = signed_scale(&r, std / sqrt(127.0 * 128.0 / 3.0)); /* E[q^2] for q in -127..127 */
            random_bytes(&r, (uint8_t *)b->qs, sizeof b->qs);
            for (int j = 0; j < G4_QK; j++)
                if (b->qs[j] == -128) b->qs[j] = -127;
        }
        break;
    case G4_TYPE_Q4_K:
        for (block_q4_K *b = dst; b < (block_q4_K *)dst + n / G4_QK_K; b++) fast_q4_k(&r, std, b);
        break;
    default: /* F32, F16: uniform floats */
        for (int64_t i = 0; i < n; i++) {
            float v = (float)((double)(next(&r) >> 40) * (2.0 / 16777216.0) - 1.0) * (float)(std * sqrt(3.0));
            if (type == G4_TYPE_F32) memcpy((float *)dst + i, &v, sizeof v);
            else ((g4_fp16 *)dst)[i] = g4_fp32_to_fp16(v);
        }
        break;
    }
}

void g4_synth_rows(const g4_tensor_spec *t, enum g4_type type, uint64_t seed, bool fast, int64_t row0,
                   int64_t n_rows, void *dst, float *scratch) {
    const int64_t ne0 = t->ne[0];
    const size_t row_bytes = g4_row_size(type, ne0);
    const uint64_t key = tensor_key(seed, t->name);
    for (int64_t r = 0; r < n_rows; r++) {
        uint8_t *out = (uint8_t *)dst + (size_t)r * row_bytes;
        if (fast && t->n_dims >= 2) {
            fast_row(t, type, key, row0 + r, out);
        } else {
            exact_values(t, key, (row0 + r) * ne0, ne0, scratch);
            g4_quantize_row(type, scratch, out, ne0);
        }
    }
}
