/* Scalar attention over cached K/V rows: the reference the SIMD tables are
 * tested against, in plain f32 arithmetic in position and element order. */
#include "kernels/attn.h"

/* Rows are converted 32 values at a time (a Q8_0 block; F16 and F32 take
 * any length), so no buffer depends on the head size. */
#define CHUNK 32

/* Values [i, i + len) of a cached row as floats. */
static const float *kv_chunk(enum g4_type type, const char *row, int32_t i, int32_t len, float *buf) {
    if (type == G4_TYPE_F32) return (const float *)row + i;
    g4_dequantize_row(type, row + g4_row_size(type, i), buf, len);
    return buf;
}

static void kv_scores(enum g4_type type, const char *rows, size_t stride, int32_t n, int32_t hd, const float *q,
                      int32_t nq, float *scores, int32_t s_stride) {
    float buf[CHUNK];
    for (int32_t h = 0; h < nq; h++)
        for (int32_t r = 0; r < n; r++) {
            float dot = 0.0f;
            for (int32_t i = 0; i < hd; i += CHUNK) {
                const int32_t len = hd - i < CHUNK ? hd - i : CHUNK;
                const float *k = kv_chunk(type, rows + (size_t)r * stride, i, len, buf);
                for (int32_t j = 0; j < len; j++) dot += q[h * hd + i + j] * k[j];
            }
            scores[h * s_stride + r] = dot;
        }
}

static void kv_accum(enum g4_type type, const char *rows, size_t stride, int32_t n, int32_t hd, const float *p,
                     int32_t nq, int32_t p_stride, float *o) {
    float buf[CHUNK];
    for (int32_t h = 0; h < nq; h++)
        for (int32_t r = 0; r < n; r++) {
            const float w = p[h * p_stride + r];
            for (int32_t i = 0; i < hd; i += CHUNK) {
                const int32_t len = hd - i < CHUNK ? hd - i : CHUNK;
                const float *v = kv_chunk(type, rows + (size_t)r * stride, i, len, buf);
                for (int32_t j = 0; j < len; j++) o[h * hd + i + j] += w * v[j];
            }
        }
}

#define KV_TYPE(suffix, type)                                                                                        \
    void g4_kv_scores_##suffix(const char *rows, size_t stride, int32_t n, int32_t hd, const float *q, int32_t nq,     \
                               float *scores, int32_t s_stride) {                                                    \
        kv_scores(type, rows, stride, n, hd, q, nq, scores, s_stride);                                               \
    }                                                                                                                \
    void g4_kv_accum_##suffix(const char *rows, size_t stride, int32_t n, int32_t hd, const float *p, int32_t nq,     \
                              int32_t p_stride, float *o) {                                                          \
        kv_accum(type, rows, stride, n, hd, p, nq, p_stride, o);                                                     \
    }

KV_TYPE(f32, G4_TYPE_F32)
KV_TYPE(f16, G4_TYPE_F16)
KV_TYPE(q8_0, G4_TYPE_Q8_0)
