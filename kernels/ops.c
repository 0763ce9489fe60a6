#include "kernels/ops.h"

#include <math.h>
#include <pthread.h>

#include "kernels/formats.h"

void g4_rms_norm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0.0; /* ggml sums the f32 squares in double */
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale;
    if (w)
        for (int64_t i = 0; i < n; i++) y[i] *= w[i];
}

/* ggml evaluates GELU on the CPU as a table indexed by the f16 bits of the
 * input, holding f16(gelu(f16 value)); matching it matters at the 1e-3 level. */
static g4_fp16 gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static float gelu_exact(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
}

static void gelu_table_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++)
        gelu_table[i] = g4_fp32_to_fp16(gelu_exact(g4_fp16_to_fp32((g4_fp16)i)));
}

float g4_gelu(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    pthread_once(&gelu_once, gelu_table_init);
    return g4_fp16_to_fp32(gelu_table[g4_fp32_to_fp16(x)]);
}

void g4_geglu(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g4_gelu(g[i]) * u[i];
}

void g4_softmax(float *x, int64_t n) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = x[i] == -INFINITY ? 0.0f : expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void g4_rope_neox(float *v, int32_t n_rot, int32_t pos, float base, const float *freq_factors) {
    const int32_t half = n_rot / 2;
    const float step = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int32_t k = 0; k < half; k++) {
        const float a = freq_factors ? theta / freq_factors[k] : theta;
        const float c = cosf(a), s = sinf(a);
        const float x0 = v[k], x1 = v[k + half];
        v[k] = x0 * c - x1 * s;
        v[k + half] = x0 * s + x1 * c;
        theta *= step;
    }
}

void g4_rope_neox_move(float *v, int32_t n_rot, int32_t from, int32_t to, float base, const float *freq_factors) {
    /* -from gives each pair exactly the negated angle of from: the f32
     * products of the angle recurrence only change sign */
    g4_rope_neox(v, n_rot, -from, base, freq_factors);
    g4_rope_neox(v, n_rot, to, base, freq_factors);
}
