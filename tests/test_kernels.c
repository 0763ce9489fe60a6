/* Kernels: the scalar activation quantizers against hand-worked blocks,
 * every weight type's vec_dot and g4_matmul against a double-precision
 * reference built from the dequantized operands, thread-count independence,
 * the thread pool itself, ISA dispatch, and every ISA table this CPU can
 * run against the scalar one. Built with G4_SIMDE (test_kernels_simde),
 * only the AVX-512 table, from its kernel files compiled against SIMDe's
 * portable intrinsics, so that it is checked on CPUs without AVX-512. */
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "tests/harness.h"

#define N_IN 768 /* three K super-blocks, 24 blocks of 32 */
#define N_OUT 7
#define N_TOK 3

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(rnd() >> 8) / 8388608.0f - 1.0f; } /* [-1, 1) */

static const enum g4_type weight_types[] = {
    G4_TYPE_F32,  G4_TYPE_F16,  G4_TYPE_BF16, G4_TYPE_Q4_0, G4_TYPE_Q4_1, G4_TYPE_Q5_0,   G4_TYPE_Q5_1,   G4_TYPE_Q8_0,
    G4_TYPE_Q2_K, G4_TYPE_Q3_K, G4_TYPE_Q4_K, G4_TYPE_Q5_K, G4_TYPE_Q6_K, G4_TYPE_IQ4_NL, G4_TYPE_IQ4_XS,
};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])
static const enum g4_type act_types[] = {G4_TYPE_Q8_0, G4_TYPE_Q8_1, G4_TYPE_Q8_K, G4_TYPE_F16, G4_TYPE_BF16};

static g4_pool *pools[4]; /* 1, 2, 3 and 7 threads */
static const int pool_threads[4] = {1, 2, 3, 7};

/* Byte offsets of a block's fp16 scale and of its fp16 min (SIZE_MAX: none). */
static void scale_fields(enum g4_type t, size_t *d, size_t *m) {
    *m = SIZE_MAX;
    switch (t) {
    case G4_TYPE_Q4_1: *d = offsetof(block_q4_1, d), *m = offsetof(block_q4_1, m); break;
    case G4_TYPE_Q5_1: *d = offsetof(block_q5_1, d), *m = offsetof(block_q5_1, m); break;
    case G4_TYPE_Q2_K: *d = offsetof(block_q2_K, d), *m = offsetof(block_q2_K, dmin); break;
    case G4_TYPE_Q3_K: *d = offsetof(block_q3_K, d); break;
    case G4_TYPE_Q4_K: *d = offsetof(block_q4_K, d), *m = offsetof(block_q4_K, dmin); break;
    case G4_TYPE_Q5_K: *d = offsetof(block_q5_K, d), *m = offsetof(block_q5_K, dmin); break;
    case G4_TYPE_Q6_K: *d = offsetof(block_q6_K, d); break;
    case G4_TYPE_IQ4_XS: *d = offsetof(block_iq4_xs, d); break;
    default: *d = 0; break; /* Q4_0 Q5_0 Q8_0 IQ4_NL: d first */
    }
}

static void put_fp16(uint8_t *p, float v) {
    const g4_fp16 h = g4_fp32_to_fp16(v);
    memcpy(p, &h, sizeof h);
}

enum block_kind { NORMAL, ZERO, HUGE_SCALE, TINY_SCALE };

/* Row 0 is all zero; row 1 starts with a huge-scale and a tiny-scale block;
 * every fifth block of the other rows is zero. */
static enum block_kind kind_of(int64_t row, int64_t block) {
    if (row == 0) return ZERO;
    if (row == 1 && block < 2) return block == 0 ? HUGE_SCALE : TINY_SCALE;
    return block % 5 == 3 ? ZERO : NORMAL;
}

static void fill_float_row(enum g4_type t, uint8_t *row, int64_t r) {
    for (int64_t i = 0; i < N_IN; i++) {
        const enum block_kind k = kind_of(r, i / 32);
        float v = k == ZERO ? 0.0f : frand();
        if (k == HUGE_SCALE) v *= t == G4_TYPE_F16 ? 60000.0f : 1e30f;
        if (k == TINY_SCALE) v *= t == G4_TYPE_F16 ? 1e-6f : 1e-30f;
        if (t == G4_TYPE_F32) memcpy(row + 4 * i, &v, 4);
        if (t == G4_TYPE_F16) put_fp16(row + 2 * i, v);
        if (t == G4_TYPE_BF16) {
            const g4_bf16 b = g4_fp32_to_bf16(v);
            memcpy(row + 2 * i, &b, 2);
        }
    }
}

/* Random codes with chosen scales: all byte patterns are valid codes. */
static void fill_block_row(enum g4_type t, uint8_t *row, int64_t r) {
    const g4_type_traits *tr = g4_type_info(t);
    size_t d_off, m_off;
    scale_fields(t, &d_off, &m_off);
    for (int64_t b = 0; b < N_IN / tr->blck_size; b++) {
        uint8_t *blk = row + b * tr->type_size;
        for (size_t i = 0; i < tr->type_size; i++) blk[i] = (uint8_t)rnd();
        float d = (0.001f + 0.1f * fabsf(frand())) * (rnd() & 1 ? 1.0f : -1.0f);
        float m = 0.05f * frand();
        switch (kind_of(r, b)) {
        case ZERO: memset(blk, 0, tr->type_size); continue;
        case HUGE_SCALE: d = m = 65504.0f; break;
        case TINY_SCALE: d = m = 0x1p-24f; break; /* smallest fp16 subnormal */
        case NORMAL: break;
        }
        put_fp16(blk + d_off, d);
        if (m_off != SIZE_MAX) put_fp16(blk + m_off, m);
    }
}

/* ---- the scalar kernels, the pool and dispatch (test_kernels only; the
 * emulated build, test_kernels_simde, checks one SIMD table) ---- */
#ifndef G4_SIMDE

/* Absolute rounding error bound of f32 -> f16 (normal and subnormal range). */
static double fp16_err(double v) { return fmax(fabs(v) * 0x1p-11, 0x1p-25); }

static float get_fp16(const uint8_t *p) {
    g4_fp16 h;
    memcpy(&h, p, sizeof h);
    return g4_fp16_to_fp32(h);
}

/* Token 0 is plain, token 1 has a zero, a large and a tiny 256-value segment,
 * token 2 is plain times 10. */
static void fill_acts(float *x) {
    for (int64_t t = 0; t < N_TOK; t++)
        for (int64_t i = 0; i < N_IN; i++) {
            float v = frand();
            if (t == 1) v *= (float[]){0.0f, 1e3f, 1e-6f}[i / 256];
            if (t == 2) v *= 10.0f;
            x[t * N_IN + i] = v;
        }
}

/* One weight type prepared for checking: weights, activations converted to
 * the partner format by the scalar quantizer, and both dequantized. */
typedef struct {
    enum g4_type type, act_type;
    int64_t wblock; /* values per weight block (32 for the float types) */
    size_t row_bytes, act_row_bytes;
    uint8_t *w;
    float x[N_TOK * N_IN];
    uint8_t *act;
    float wf[N_OUT * N_IN], af[N_TOK * N_IN];
} dot_case;

static void dequantize_act(const dot_case *c, const uint8_t *a, const float *x, float *out) {
    if (c->act_type == G4_TYPE_F32) {
        memcpy(out, x, N_IN * sizeof(float));
    } else if (c->act_type == G4_TYPE_Q8_1) { /* not a weight type, so not in g4_dequantize_row */
        for (int64_t b = 0; b < N_IN / G4_QK; b++) {
            block_q8_1 blk;
            memcpy(&blk, a + b * sizeof blk, sizeof blk);
            for (int i = 0; i < G4_QK; i++) out[b * G4_QK + i] = g4_fp16_to_fp32(blk.d) * blk.qs[i];
        }
    } else {
        g4_dequantize_row(c->act_type, a, out, N_IN);
    }
}

static dot_case *prepare(enum g4_type t) {
    dot_case *c = calloc(1, sizeof *c);
    c->type = t;
    c->act_type = g4_vec_dot_type(t);
    const bool is_float = t == G4_TYPE_F32 || t == G4_TYPE_F16 || t == G4_TYPE_BF16;
    c->wblock = is_float ? 32 : g4_type_info(t)->blck_size;
    c->row_bytes = g4_row_size(t, N_IN);
    c->w = malloc(c->row_bytes * N_OUT);
    for (int64_t r = 0; r < N_OUT; r++) {
        uint8_t *row = c->w + r * c->row_bytes;
        if (is_float) fill_float_row(t, row, r);
        else fill_block_row(t, row, r);
        g4_dequantize_row(t, row, c->wf + r * N_IN, N_IN);
    }
    fill_acts(c->x);
    c->act_row_bytes = c->act_type == G4_TYPE_F32 ? N_IN * sizeof(float) : g4_row_size(c->act_type, N_IN);
    c->act = malloc(c->act_row_bytes * N_TOK);
    for (int64_t k = 0; k < N_TOK; k++) {
        uint8_t *a = c->act + k * c->act_row_bytes;
        if (c->act_type == G4_TYPE_F32) memcpy(a, c->x + k * N_IN, N_IN * sizeof(float));
        else g4_kernels_scalar()->quantize_act[c->act_type](c->x + k * N_IN, a, N_IN);
        dequantize_act(c, a, c->x + k * N_IN, c->af + k * N_IN);
    }
    return c;
}

static void release(dot_case *c) {
    free(c->w);
    free(c->act);
    free(c);
}

/* Scale of the float rounding in a dot: sum of |activation| times the largest
 * |weight| of its block (covers K-quant scale and min parts that cancel). */
static double magnitude(const dot_case *c, int64_t r, int64_t k) {
    const float *wf = c->wf + r * N_IN, *af = c->af + k * N_IN, *x = c->x + k * N_IN;
    double mag = 0.0;
    for (int64_t b = 0; b < N_IN / c->wblock; b++) {
        double wmax = 0.0;
        for (int64_t i = b * c->wblock; i < (b + 1) * c->wblock; i++) wmax = fmax(wmax, fabs(wf[i]));
        for (int64_t i = b * c->wblock; i < (b + 1) * c->wblock; i++) mag += fmax(fabs(af[i]), fabs(x[i])) * wmax;
    }
    return mag;
}

/* Bound on |x_i - dequantized activation_i| from the quantization step. */
static void act_errors(enum g4_type at, const float *x, double *e) {
    const int64_t blk = at == G4_TYPE_Q8_K ? G4_QK_K : G4_QK;
    for (int64_t b = 0; b < N_IN / blk; b++) {
        double amax = 0.0;
        for (int64_t i = b * blk; i < (b + 1) * blk; i++) amax = fmax(amax, fabs(x[i]));
        for (int64_t i = b * blk; i < (b + 1) * blk; i++) {
            switch (at) {
            case G4_TYPE_Q8_0:
            case G4_TYPE_Q8_1: e[i] = 0.5001 * amax / 127 + 127 * fp16_err(amax / 127); break;
            case G4_TYPE_Q8_K: e[i] = 0.5001 * amax / 127; break;
            case G4_TYPE_F16: e[i] = fp16_err(x[i]); break;
            case G4_TYPE_BF16: e[i] = fmax(fabs(x[i]) * 0x1p-8, 1e-38); break;
            default: e[i] = 0.0; break;
            }
        }
    }
}

/* |error| / bound, 0 when both are 0. */
static double ratio(double err, double bound) { return err == 0.0 ? 0.0 : bound > 0.0 ? err / bound : INFINITY; }

/* Q4_1/Q5_1 dots use the stored s = fp16(d*sum q) for the min term; returns
 * what that adds over the dequantized product, and the extra float-vs-exact
 * error bound of the min term in *tol. */
static double min_term(const dot_case *c, int64_t r, int64_t k, const double *e, double *tol) {
    *tol = 0.0;
    if (c->act_type != G4_TYPE_Q8_1) return 0.0;
    size_t d_off, m_off;
    scale_fields(c->type, &d_off, &m_off);
    const size_t bsize = g4_type_info(c->type)->type_size;
    double extra = 0.0;
    for (int64_t b = 0; b < N_IN / G4_QK; b++) {
        const double m = get_fp16(c->w + r * c->row_bytes + b * bsize + m_off);
        block_q8_1 a;
        memcpy(&a, c->act + k * c->act_row_bytes + b * sizeof a, sizeof a);
        double qsum = 0.0, esum = 0.0;
        for (int i = 0; i < G4_QK; i++) qsum += a.qs[i], esum += e[b * G4_QK + i];
        const double s = g4_fp16_to_fp32(a.s);
        extra += m * (s - g4_fp16_to_fp32(a.d) * qsum);
        *tol += fabs(m) * (2 * esum + fp16_err(s));
    }
    return extra;
}

static void test_weight_type(enum g4_type t) {
    const char *name = g4_type_name(t);
    const g4_kernels *k = g4_kernels_scalar();
    dot_case *c = prepare(t);
    const g4_weight w = {t, c->w, N_IN, N_OUT, c->row_bytes, 0};
    float y[N_TOK * N_OUT];
    g4_matmul(&w, c->x, N_TOK, y, pools[0]);

    int mismatched = 0;
    double worst_ref = 0.0, worst_float = 0.0;
    for (int64_t r = 0; r < N_OUT; r++)
        for (int64_t j = 0; j < N_TOK; j++) {
            const float got = k->vec_dot[t](N_IN, c->w + r * c->row_bytes, c->act + j * c->act_row_bytes);
            if (memcmp(&got, &y[j * N_OUT + r], sizeof got) != 0) mismatched++;
            double e[N_IN];
            act_errors(c->act_type, c->x + j * N_IN, e);
            double ref = 0.0, exact = 0.0, tol = 0.0, min_tol;
            for (int64_t i = 0; i < N_IN; i++) {
                const double wi = c->wf[r * N_IN + i];
                ref += wi * c->af[j * N_IN + i];
                exact += wi * c->x[j * N_IN + i];
                tol += fabs(wi) * e[i];
            }
            ref += min_term(c, r, j, e, &min_tol);
            const double mag = magnitude(c, r, j);
            worst_ref = fmax(worst_ref, ratio(fabs(got - ref), 1e-5 * mag));
            worst_float = fmax(worst_float, ratio(fabs(got - exact), tol + min_tol + 1e-5 * mag));
        }
    CHECK(mismatched == 0, "%s: g4_matmul differs from vec_dot in %d of %d outputs", name, mismatched, N_OUT * N_TOK);
    CHECK(worst_ref <= 1.0, "%s: vec_dot vs double dot of the dequantized operands: %.3g x the 1e-5 bound", name, worst_ref);
    CHECK(worst_float <= 1.0, "%s: vec_dot vs the float activations: %.3g x the quantization-step bound", name, worst_float);
    bool zero_row = true;
    for (int64_t j = 0; j < N_TOK; j++) zero_row &= y[j * N_OUT] == 0.0f;
    CHECK(zero_row, "%s: an all-zero weight row gives %g %g %g", name, y[0], y[N_OUT], y[2 * N_OUT]);

    for (int p = 1; p < 4; p++) {
        float yp[N_TOK * N_OUT];
        g4_matmul(&w, c->x, N_TOK, yp, pools[p]);
        CHECK(memcmp(y, yp, sizeof y) == 0, "%s: g4_matmul with %d threads differs from 1 thread", name, pool_threads[p]);
    }
    release(c);
}

/* Hand-worked blocks: round-half-even codes and the scale rules. */
static void test_quantizers(void) {
    const g4_kernels *k = g4_kernels_scalar();
    float x[3 * G4_QK_K] = {0};
    /* Q8_0/Q8_1: amax 127 -> id 1, d 1; amax 254 -> id 0.5, d 2; a zero block */
    const float b0[] = {127, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.5f};
    memcpy(x, b0, sizeof b0);
    x[64] = -254, x[65] = 5, x[66] = 7;
    block_q8_0 q0[3];
    k->quantize_act[G4_TYPE_Q8_0](x, q0, 3 * G4_QK);
    const int8_t want0[] = {127, 2, 4, -2, 0, 0, 2, 0};
    CHECK(memcmp(q0[0].qs, want0, sizeof want0) == 0, "q8_0 codes %d %d %d %d %d %d %d", q0[0].qs[0], q0[0].qs[1],
          q0[0].qs[2], q0[0].qs[3], q0[0].qs[4], q0[0].qs[5], q0[0].qs[6]);
    CHECK(g4_fp16_to_fp32(q0[0].d) == 1.0f, "q8_0 d %g, want 1", g4_fp16_to_fp32(q0[0].d));
    CHECK(q0[1].d == 0 && q0[1].qs[0] == 0 && q0[1].qs[31] == 0, "q8_0 zero block: d %04x", q0[1].d);
    CHECK(g4_fp16_to_fp32(q0[2].d) == 2.0f && q0[2].qs[0] == -127 && q0[2].qs[1] == 2 && q0[2].qs[2] == 4,
          "q8_0 amax 254: d %g codes %d %d %d", g4_fp16_to_fp32(q0[2].d), q0[2].qs[0], q0[2].qs[1], q0[2].qs[2]);

    block_q8_1 q1[3];
    k->quantize_act[G4_TYPE_Q8_1](x, q1, 3 * G4_QK);
    CHECK(memcmp(q1[0].qs, want0, sizeof want0) == 0 && g4_fp16_to_fp32(q1[0].d) == 1.0f, "q8_1 block 0 differs");
    CHECK(g4_fp16_to_fp32(q1[0].s) == 133.0f && g4_fp16_to_fp32(q1[2].s) == 2.0f * -121, "q8_1 s %g %g, want 133 -242",
          g4_fp16_to_fp32(q1[0].s), g4_fp16_to_fp32(q1[2].s));

    /* Q8_K: the signed max sets the sign of d; codes are capped at 127 */
    memset(x, 0, sizeof x);
    x[0] = -127, x[1] = 2.5f, x[2] = 3.5f, x[3] = -0.5f, x[17] = 100;
    x[256] = 127, x[257] = 2.5f, x[258] = -3.5f;
    block_q8_K qk[3];
    k->quantize_act[G4_TYPE_Q8_K](x, qk, 3 * G4_QK_K);
    CHECK(qk[0].d == 1.0f && qk[0].qs[0] == -127 && qk[0].qs[1] == 2 && qk[0].qs[2] == 4 && qk[0].qs[3] == 0 &&
              qk[0].qs[17] == 100,
          "q8_K negative max: d %g codes %d %d %d %d %d", qk[0].d, qk[0].qs[0], qk[0].qs[1], qk[0].qs[2], qk[0].qs[3],
          qk[0].qs[17]);
    CHECK(qk[0].bsums[0] == -121 && qk[0].bsums[1] == 100 && qk[0].bsums[2] == 0, "q8_K bsums %d %d %d", qk[0].bsums[0],
          qk[0].bsums[1], qk[0].bsums[2]);
    CHECK(qk[1].d == -1.0f && qk[1].qs[0] == -127 && qk[1].qs[1] == -2 && qk[1].qs[2] == 4 && qk[1].bsums[0] == -125,
          "q8_K positive max: d %g codes %d %d %d bsum %d", qk[1].d, qk[1].qs[0], qk[1].qs[1], qk[1].qs[2], qk[1].bsums[0]);
    CHECK(qk[2].d == 0.0f && qk[2].qs[5] == 0 && qk[2].bsums[3] == 0, "q8_K zero block: d %g", qk[2].d);

    const float fx[] = {1.0f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65520.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
    g4_fp16 h[6];
    k->quantize_act[G4_TYPE_F16](fx, h, 6);
    CHECK(h[0] == 0x3c00 && h[1] == 0x3c00 && h[2] == 0x3c02 && h[3] == 0x7c00, "f16 act %04x %04x %04x %04x", h[0], h[1],
          h[2], h[3]);
    g4_bf16 bf[6];
    k->quantize_act[G4_TYPE_BF16](fx, bf, 6);
    CHECK(bf[0] == 0x3f80 && bf[4] == 0x3f80 && bf[5] == 0x3f82, "bf16 act %04x %04x %04x", bf[0], bf[4], bf[5]);

    /* one Q4_0 block of +1s (nibble 9) with d 1 against q8_0 ones with d 1 */
    block_q4_0 w4 = {0x3c00, {0}};
    memset(w4.qs, 0x99, sizeof w4.qs);
    block_q8_0 a8 = {0x3c00, {0}};
    memset(a8.qs, 1, sizeof a8.qs);
    CHECK(k->vec_dot[G4_TYPE_Q4_0](G4_QK, &w4, &a8) == 32.0f, "q4_0 . q8_0 of ones: %g",
          k->vec_dot[G4_TYPE_Q4_0](G4_QK, &w4, &a8));
}

/* ---- thread pool ---- */

typedef struct {
    atomic_int count[8];
    atomic_uint mask;
    int want_nth;
    atomic_int bad_nth;
    pthread_t caller;
    atomic_int ith0_elsewhere;
    int slow_ith; /* this thread naps in the task, so the caller must sleep in the join */
} pool_probe;

static void probe_task(void *arg, int ith, int nth) {
    pool_probe *p = arg;
    atomic_fetch_add(&p->count[ith], 1);
    atomic_fetch_or(&p->mask, 1u << ith);
    if (nth != p->want_nth) atomic_fetch_add(&p->bad_nth, 1);
    if (ith == 0 && !pthread_equal(pthread_self(), p->caller)) atomic_fetch_add(&p->ith0_elsewhere, 1);
    if (ith == p->slow_ith) usleep(2000);
}

static void test_pool(void) {
    g4_pool *all = g4_pool_create(0);
    CHECK(g4_pool_size(all) == (int)sysconf(_SC_NPROCESSORS_ONLN), "g4_pool_create(0) gave %d threads",
          g4_pool_size(all));
    g4_pool_free(all);
    CHECK(g4_pool_size(NULL) == 1, "size of the NULL pool %d", g4_pool_size(NULL));

    static pool_probe probe; /* zero-initialized atomics */
    probe.caller = pthread_self();
    probe.want_nth = 1;
    probe.slow_ith = -1;
    g4_pool_run(NULL, probe_task, &probe);
    CHECK(atomic_load(&probe.count[0]) == 1 && atomic_load(&probe.mask) == 1, "NULL pool ran ith 0 %d times",
          atomic_load(&probe.count[0]));

    for (int p = 1; p < 4; p++) {
        const int n = pool_threads[p], runs = 3000;
        int bad_runs = 0;
        probe.want_nth = n;
        for (int i = 0; i < 8; i++) atomic_store(&probe.count[i], 0);
        for (int r = 0; r < runs; r++) {
            atomic_store(&probe.mask, 0);
            g4_pool_run(pools[p], probe_task, &probe);
            if (atomic_load(&probe.mask) != (1u << n) - 1) bad_runs++;
            if (r % 500 == 0) usleep(3000); /* let the workers fall asleep */
            probe.slow_ith = r % 100 == 0 ? n - 1 : -1;
        }
        probe.slow_ith = -1;
        bool each_once = true;
        for (int i = 0; i < 8; i++) each_once &= atomic_load(&probe.count[i]) == (i < n ? runs : 0);
        CHECK(bad_runs == 0 && each_once, "%d threads: %d runs missed an ith; ith 0 ran %d of %d times", n, bad_runs,
              atomic_load(&probe.count[0]), runs);
    }
    CHECK(atomic_load(&probe.bad_nth) == 0 && atomic_load(&probe.ith0_elsewhere) == 0,
          "wrong nth %d times, ith 0 off the calling thread %d times", atomic_load(&probe.bad_nth),
          atomic_load(&probe.ith0_elsewhere));

    /* fewer output rows than threads: some threads get none */
    dot_case *c = prepare(G4_TYPE_Q8_0);
    const g4_weight w = {G4_TYPE_Q8_0, c->w, N_IN, 2, c->row_bytes, 0};
    float y1[N_TOK * 2], y7[N_TOK * 2];
    g4_matmul(&w, c->x, N_TOK, y1, NULL);
    g4_matmul(&w, c->x, N_TOK, y7, pools[3]);
    CHECK(memcmp(y1, y7, sizeof y1) == 0, "2 output rows on 7 threads differ from 1 thread");
    release(c);
}

/* ---- dispatch ---- */

/* Runs g4_kernels_select(request) and returns the lines it wrote to stderr. */
static const g4_kernels *select_capturing(const char *request, int *lines, char *first, size_t first_len) {
    fflush(stderr);
    const int saved = dup(2);
    FILE *tmp = tmpfile();
    dup2(fileno(tmp), 2);
    const g4_kernels *k = g4_kernels_select(request);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    *lines = 0;
    first[0] = 0;
    char buf[512];
    while (fgets(buf, sizeof buf, tmp))
        if ((*lines)++ == 0) snprintf(first, first_len, "%s", buf);
    fclose(tmp);
    return k;
}

static void test_dispatch(void) {
    const g4_kernels *scalar = g4_kernels_by_name("scalar");
    CHECK(g4_kernels_active() == scalar && strcmp(g4_kernels_active()->isa, "scalar") == 0,
          "g4_kernels_use(\"scalar\") left %s active", g4_kernels_active()->isa);
    bool same = scalar != NULL;
    for (int t = 0; same && t < G4_TYPE_COUNT; t++)
        same = scalar->vec_dot[t] == g4_kernels_scalar()->vec_dot[t] &&
               scalar->quantize_act[t] == g4_kernels_scalar()->quantize_act[t];
    CHECK(same, "the dispatched scalar table differs from g4_kernels_scalar()");
    CHECK(g4_kernels_by_name("bogus") == NULL && g4_kernels_by_name(NULL) == NULL, "unknown ISA names give a table");

    const char *preference[] = {"avx512", "avx2", "neon", "scalar"};
    const g4_kernels *best = NULL;
    for (int i = 0; i < 4 && !best; i++) best = g4_kernels_by_name(preference[i]);
    int lines;
    char line[512];
    CHECK(select_capturing(NULL, &lines, line, sizeof line) == best && lines == 0, "no override: got another table or %d lines",
          lines);
    CHECK(select_capturing("bogus", &lines, line, sizeof line) == best && lines == 1 && strstr(line, "GEMMA4_ISA=bogus"),
          "unknown name: %d lines: %s", lines, line);
#if defined(__x86_64__)
    const char *foreign = "neon";
#else
    const char *foreign = "avx2";
#endif
    CHECK(select_capturing(foreign, &lines, line, sizeof line) == best && lines == 1, "ISA of another architecture: %d lines",
          lines);
}

#endif

/* ---- every SIMD table this machine can run gives the scalar bits ---- */

#define SIMD_ROWS 37 /* not a multiple of any row tile; row 0 zero, row 1 extreme scales */
#define SIMD_TOK 64

/* Activations of SIMD_TOK tokens at scales from 1e-6 to 1e6; token 5 is
 * all zero, token 6 has one zero 256-value segment. */
static void fill_many_acts(float *x) {
    static const float scale[] = {1.0f, 10.0f, 1e-3f, 1e3f, 1e-6f, 0.0f, 1.0f, 1e6f};
    for (int64_t t = 0; t < SIMD_TOK; t++)
        for (int64_t i = 0; i < N_IN; i++) x[t * N_IN + i] = frand() * (t == 6 && i / 256 == 1 ? 0.0f : scale[t % 8]);
}

/* Outputs (n_tok x n_rows) of one table, checked bit for bit against want
 * (SIMD_TOK x SIMD_ROWS, from scalar vec_dot); returns mismatches. */
static int count_mismatches(const float *got, int64_t first_row, int64_t n_rows, int64_t n_tok, int64_t stride,
                            const float *want) {
    int bad = 0;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n_rows; r++)
            bad += memcmp(&got[t * stride + r], &want[t * SIMD_ROWS + first_row + r], sizeof(float)) != 0;
    return bad;
}

/* The interleaved layout (kernels/repack.h): every row unpacks to its
 * plain bytes; a table without an interleaved kernel (the scalar one) gives
 * the plain bits; one with it (rows in SIMD lanes, its float sums in
 * another order) the plain values within 1e-6 of max|w of the row| *
 * sum|x of the token|: that product bounds every block term (for Q4_K both
 * the scaled codes and the mins), and 1e-6 is about the worst float
 * rounding of N_IN / 32 such terms. Row counts with every tail length
 * (n_out % 8 = 0..7), any token and thread count. */
static void check_interleaved(const char *isa, const g4_kernels *k, const g4_weight *plain, const float *x,
                              const float *want) {
    static float got[SIMD_TOK * SIMD_ROWS], wmax[SIMD_ROWS], xsum[SIMD_TOK], row[N_IN];
    static uint8_t scratch[N_IN * 2];
    static const int64_t toks[] = {1, 2, 3, 4, 5, 33, SIMD_TOK};
    const bool exact = k->mul_rows_x8[plain->type] == NULL;
    for (int64_t r = 0; r < SIMD_ROWS; r++) {
        g4_dequantize_row(plain->type, (const uint8_t *)plain->data + r * plain->row_bytes, row, N_IN);
        wmax[r] = 0.0f;
        for (int64_t i = 0; i < N_IN; i++) wmax[r] = fmaxf(wmax[r], fabsf(row[i]));
    }
    for (int64_t t = 0; t < SIMD_TOK; t++) {
        xsum[t] = 0.0f;
        for (int64_t i = 0; i < N_IN; i++) xsum[t] += fabsf(x[t * N_IN + i]);
    }
    int bad = 0, bad_rows = 0;
    double worst = 0.0;
    for (int64_t n_out = SIMD_ROWS - 7; n_out <= SIMD_ROWS; n_out++) {
        g4_weight wt = *plain;
        wt.n_out = n_out;
        wt.interleaved = 0;
        CHECK(g4_repack(&wt, false) && wt.interleaved, "%s: g4_repack[%s] failed", isa, g4_type_name(wt.type));
        if (!wt.interleaved) return;
        for (int64_t r = 0; r < n_out; r++)
            bad_rows += memcmp(g4_weight_row(&wt, r, scratch), (const uint8_t *)plain->data + r * plain->row_bytes,
                               plain->row_bytes) != 0;
        for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++)
            for (int p = 0; p < 4; p++) {
                memset(got, 0xff, sizeof got);
                g4_matmul_isa(k, &wt, x, toks[ti], got, pools[p]);
                if (exact) {
                    bad += count_mismatches(got, 0, n_out, toks[ti], n_out, want);
                    continue;
                }
                for (int64_t t = 0; t < toks[ti]; t++)
                    for (int64_t r = 0; r < n_out; r++) {
                        const double err = fabs((double)got[t * n_out + r] - want[t * SIMD_ROWS + r]);
                        const double tol = 1e-6 * wmax[r] * xsum[t];
                        if (tol > 0 && err / tol > worst) worst = err / tol;
                        bad += !(err <= tol);
                    }
            }
        g4_repack_free(&wt);
        CHECK(wt.data == NULL && !wt.interleaved, "%s: g4_repack_free left the weight bound", isa);
    }
    CHECK(bad_rows == 0, "%s: %d rows of interleaved %s do not unpack to their plain bytes", isa, bad_rows,
          g4_type_name(plain->type));
    CHECK(bad == 0, "%s: interleaved g4_matmul_isa[%s] (30-37 rows, 1-64 tokens, 1-7 threads) differs from scalar in %d outputs%s",
          isa, g4_type_name(plain->type), bad, exact ? " (bits)" : " beyond the rounding bound");
    if (!exact) printf("%s: interleaved %s: worst error %.3g of the bound\n", isa, g4_type_name(plain->type), worst);
}

static void test_isa_type(const char *isa, const g4_kernels *k, enum g4_type t, const float *x) {
    const char *name = g4_type_name(t);
    const enum g4_type at = g4_vec_dot_type(t);
    const bool is_float = t == G4_TYPE_F32 || t == G4_TYPE_F16 || t == G4_TYPE_BF16;
    const size_t rb = g4_row_size(t, N_IN), ab = at == G4_TYPE_F32 ? N_IN * sizeof(float) : g4_row_size(at, N_IN);
    uint8_t *w = malloc(rb * SIMD_ROWS), *act = malloc(ab * SIMD_TOK);
    for (int64_t r = 0; r < SIMD_ROWS; r++) {
        if (is_float) fill_float_row(t, w + r * rb, r);
        else fill_block_row(t, w + r * rb, r);
    }
    for (int64_t j = 0; j < SIMD_TOK; j++) {
        if (at == G4_TYPE_F32) memcpy(act + j * ab, x + j * N_IN, ab);
        else g4_kernels_scalar()->quantize_act[at](x + j * N_IN, act + j * ab, N_IN);
    }
    static float want[SIMD_TOK * SIMD_ROWS], got[SIMD_TOK * (SIMD_ROWS + 3)];
    int bad = 0;
    for (int64_t j = 0; j < SIMD_TOK; j++)
        for (int64_t r = 0; r < SIMD_ROWS; r++) {
            want[j * SIMD_ROWS + r] = g4_kernels_scalar()->vec_dot[t](N_IN, w + r * rb, act + j * ab);
            got[j * SIMD_ROWS + r] = k->vec_dot[t](N_IN, w + r * rb, act + j * ab);
        }
    bad = count_mismatches(got, 0, SIMD_ROWS, SIMD_TOK, SIMD_ROWS, want);
    CHECK(bad == 0, "%s: vec_dot[%s] differs from scalar in %d of %d outputs", isa, name, bad, SIMD_ROWS * SIMD_TOK);

    if (k->mul_rows[t]) {
        /* row blocks starting anywhere, token counts around the tile sizes */
        static const int64_t rows[][2] = {{0, SIMD_ROWS}, {0, 1}, {1, 3}, {2, 5}, {3, 8}, {30, 7}};
        static const int64_t toks[] = {1, 2, 3, 8, 9, SIMD_TOK};
        int bad_rows = 0;
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
            for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
                memset(got, 0xff, sizeof got);
                k->mul_rows[t](N_IN, w + rows[ri][0] * rb, rb, rows[ri][1], act, ab, toks[ti], got, SIMD_ROWS + 3);
                bad_rows += count_mismatches(got, rows[ri][0], rows[ri][1], toks[ti], SIMD_ROWS + 3, want);
            }
        CHECK(bad_rows == 0, "%s: mul_rows[%s] differs from scalar vec_dot in %d outputs", isa, name, bad_rows);
    }

    /* the driver: any token count, any thread count */
    const g4_weight wt = {t, w, N_IN, SIMD_ROWS, rb, 0};
    static const int64_t toks[] = {1, 3, 8, 33, SIMD_TOK};
    int bad_mm = 0;
    for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++)
        for (int p = 0; p < 4; p++) {
            memset(got, 0xff, sizeof got);
            g4_matmul_isa(k, &wt, x, toks[ti], got, pools[p]);
            bad_mm += count_mismatches(got, 0, SIMD_ROWS, toks[ti], SIMD_ROWS, want);
        }
    CHECK(bad_mm == 0, "%s: g4_matmul_isa[%s] over 1-64 tokens and 1-7 threads differs from scalar in %d outputs", isa,
          name, bad_mm);
    CHECK(!g4_repack_supported(g4_kernels_scalar(), &wt), "scalar: g4_repack_supported[%s] without a kernel", name);
    if (g4_repack_supported(k, &wt)) {
        check_interleaved(isa, k, &wt, x, want);
        check_interleaved("scalar", g4_kernels_scalar(), &wt, x, want);
    }
    free(w);
    free(act);
}

/* Attention kernels of one table against the scalar ones, on cache rows of
 * every type: head counts 1-9 (runs of 8, 4, 2, 1 and a remainder), head
 * sizes with and without a multiple of 8 (32 and 40 are Q8_0-compatible
 * only at 32), row counts around the page size, rows padded apart. The
 * sums run in another order, so each output may differ by 1e-5 of the sum
 * of its terms' magnitudes (float rounding of up to 256 terms is below
 * 256 * 2^-24 = 1.5e-5 of it). */
#define KV_MAX_ROWS 37
#define KV_MAX_HD 256
#define KV_MAX_Q 9
static void test_kv_kernels(const char *isa, const g4_kernels *k) {
    static const enum g4_type types[] = {G4_TYPE_F32, G4_TYPE_F16, G4_TYPE_Q8_0};
    static const int32_t hds[] = {32, 40, 256}, nqs[] = {1, 3, 8, 9}, ns[] = {1, 7, 32, KV_MAX_ROWS};
    static float vals[KV_MAX_ROWS][KV_MAX_HD], q[KV_MAX_Q * KV_MAX_HD], p[KV_MAX_Q * KV_MAX_ROWS];
    static float want[KV_MAX_Q * KV_MAX_HD], got[KV_MAX_Q * KV_MAX_HD], bound[KV_MAX_Q * KV_MAX_HD];
    static char rows[KV_MAX_ROWS * (KV_MAX_HD * 4 + 64)];
    const g4_kernels *scalar = g4_kernels_scalar();
    int bad = 0, cases = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
            const enum g4_type t = types[ti];
            const int32_t hd = hds[hi];
            if (hd % g4_type_info(t)->blck_size) continue;
            const size_t stride = g4_row_size(t, hd) + 64;
            for (int32_t r = 0; r < KV_MAX_ROWS; r++) {
                for (int32_t i = 0; i < hd; i++) vals[r][i] = 4.0f * frand();
                g4_quantize_row(t, vals[r], rows + r * stride, hd);
                g4_dequantize_row(t, rows + r * stride, vals[r], hd); /* the values the kernels see */
            }
            for (int32_t i = 0; i < KV_MAX_Q * KV_MAX_HD; i++) q[i] = frand();
            for (int32_t i = 0; i < KV_MAX_Q * KV_MAX_ROWS; i++) p[i] = fabsf(frand());
            for (size_t qi = 0; qi < sizeof nqs / sizeof nqs[0]; qi++)
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                    const int32_t nq = nqs[qi], n = ns[ni];
                    /* scores, KV_MAX_ROWS apart per head */
                    scalar->kv_scores[t](rows, stride, n, hd, q, nq, want, KV_MAX_ROWS);
                    k->kv_scores[t](rows, stride, n, hd, q, nq, got, KV_MAX_ROWS);
                    for (int32_t h = 0; h < nq; h++)
                        for (int32_t r = 0; r < n; r++) {
                            float mag = 0.0f;
                            for (int32_t i = 0; i < hd; i++) mag += fabsf(q[h * hd + i] * vals[r][i]);
                            const int32_t o = h * KV_MAX_ROWS + r;
                            bad += !(fabsf(got[o] - want[o]) <= 1e-5f * mag);
                        }
                    /* accumulation onto outputs that start non-zero */
                    for (int32_t i = 0; i < nq * hd; i++) want[i] = got[i] = bound[i] = frand();
                    for (int32_t i = 0; i < nq * hd; i++) bound[i] = fabsf(bound[i]);
                    scalar->kv_accum[t](rows, stride, n, hd, p, nq, KV_MAX_ROWS, want);
                    k->kv_accum[t](rows, stride, n, hd, p, nq, KV_MAX_ROWS, got);
                    for (int32_t h = 0; h < nq; h++)
                        for (int32_t i = 0; i < hd; i++) {
                            float mag = bound[h * hd + i];
                            for (int32_t r = 0; r < n; r++) mag += fabsf(p[h * KV_MAX_ROWS + r] * vals[r][i]);
                            bad += !(fabsf(got[h * hd + i] - want[h * hd + i]) <= 1e-5f * mag);
                        }
                    cases++;
                }
        }
    CHECK(cases == 3 * 4 * 4 + 3 * 4 * 4 + 2 * 4 * 4, "%s: %d attention kernel cases ran", isa, cases);
    CHECK(bad == 0, "%s: attention kernels differ from scalar beyond rounding in %d outputs", isa, bad);
}

/* g4_matmul_many: products of different types, shapes and token counts
 * (one interleaved, one with no tokens) in one dispatch give each y the bits
 * of its own g4_matmul, for every thread count. */
static void test_matmul_many(const char *isa, const g4_kernels *k, const float *x) {
    static const enum g4_type types[] = {G4_TYPE_Q4_0, G4_TYPE_Q4_K, G4_TYPE_F32, G4_TYPE_Q8_0};
    static const int64_t n_out[] = {SIMD_ROWS, 24, 9, 17}, n_tok[] = {1, 3, 0, 5};
    enum { N = sizeof types / sizeof types[0] };
    g4_weight w[N];
    g4_matmul_job jobs[N];
    static float want[N][SIMD_TOK * SIMD_ROWS], got[N][SIMD_TOK * SIMD_ROWS];
    for (int i = 0; i < N; i++) {
        const size_t rb = g4_row_size(types[i], N_IN);
        uint8_t *data = malloc(rb * (size_t)n_out[i]);
        for (int64_t r = 0; r < n_out[i]; r++) {
            if (types[i] == G4_TYPE_F32) fill_float_row(types[i], data + r * rb, r);
            else fill_block_row(types[i], data + r * rb, r);
        }
        w[i] = (g4_weight){types[i], data, N_IN, n_out[i], rb, 0};
        jobs[i] = (g4_matmul_job){&w[i], x + i * N_IN, n_tok[i], got[i]};
    }
    g4_weight plain0 = w[0];
    if (g4_repack_supported(k, &w[0])) CHECK(g4_repack(&w[0], false), "%s: repack for g4_matmul_many", isa);
    int bad = 0;
    for (int p = 0; p < 4; p++) {
        memset(want, 0, sizeof want);
        memset(got, 0, sizeof got);
        for (int i = 0; i < N; i++) g4_matmul_isa(k, &w[i], x + i * N_IN, n_tok[i], want[i], pools[p]);
        g4_matmul_many_isa(k, jobs, N, pools[p]);
        bad += memcmp(want, got, sizeof want) != 0;
    }
    CHECK(bad == 0, "%s: g4_matmul_many differs from one g4_matmul per product at %d thread counts", isa, bad);
    g4_repack_free(&w[0]);
    free((void *)plain0.data);
    for (int i = 1; i < N; i++) free((void *)w[i].data);
}

/* One table against the scalar one: the activation quantizers, every
 * weight type, attention, several products at once. how: "native" or
 * "emulated (simde)". */
static void test_isa_table(const char *name, const g4_kernels *k, const float *x, const char *how) {
    const g4_kernels *scalar = g4_kernels_scalar();
    for (size_t a = 0; a < sizeof act_types / sizeof act_types[0]; a++) {
        const enum g4_type at = act_types[a];
        const size_t bytes = g4_row_size(at, N_IN) * SIMD_TOK;
        uint8_t *want = calloc(1, bytes), *got = calloc(1, bytes);
        for (int64_t j = 0; j < SIMD_TOK; j++) {
            scalar->quantize_act[at](x + j * N_IN, want + j * g4_row_size(at, N_IN), N_IN);
            k->quantize_act[at](x + j * N_IN, got + j * g4_row_size(at, N_IN), N_IN);
        }
        CHECK(memcmp(want, got, bytes) == 0, "%s: quantize_act[%s] differs from scalar", name, g4_type_name(at));
        free(want);
        free(got);
    }
    int with_simd = 0;
    for (size_t i = 0; i < N_WEIGHT_TYPES; i++) {
        with_simd += k->vec_dot[weight_types[i]] != scalar->vec_dot[weight_types[i]] || k->mul_rows[weight_types[i]];
        test_isa_type(name, k, weight_types[i], x);
    }
    printf("isa %s: %s: %d weight types with SIMD kernels checked bit for bit\n", name, how, with_simd);
    test_kv_kernels(name, k);
    test_matmul_many(name, k, x);
}

#ifdef G4_SIMDE
/* test_kernels_simde: the AVX-512 kernel files compiled against SIMDe
 * (kernels/x86/simd.h) and linked in place of the native ones, so their
 * table runs on any CPU; completed with the scalar kernels it leaves out,
 * as the dispatcher completes a table. */
int main(void) {
    g4_kernels_use("scalar");
    for (int p = 0; p < 4; p++) pools[p] = g4_pool_create(pool_threads[p]);
    static g4_kernels emulated;
    emulated = *g4_kernels_avx512();
    const g4_kernels *scalar = g4_kernels_scalar();
    for (int t = 0; t < G4_TYPE_COUNT; t++) {
        if (!emulated.vec_dot[t]) emulated.vec_dot[t] = scalar->vec_dot[t];
        if (!emulated.quantize_act[t]) emulated.quantize_act[t] = scalar->quantize_act[t];
        if (!emulated.kv_scores[t]) emulated.kv_scores[t] = scalar->kv_scores[t];
        if (!emulated.kv_accum[t]) emulated.kv_accum[t] = scalar->kv_accum[t];
    }
    static float x[SIMD_TOK * N_IN];
    fill_many_acts(x);
    test_isa_table("avx512", &emulated, x, "emulated (simde)");
    for (int p = 0; p < 4; p++) g4_pool_free(pools[p]);
    return test_summary("test_kernels_simde");
}
#else
/* Whether `make test` also builds test_kernels_simde, which checks the
 * AVX-512 table emulated (the Makefile looks for the same header). */
#if defined(__x86_64__) && defined(__has_include)
#if __has_include(<simde/x86/avx512.h>)
#define SIMDE_EMULATES_AVX512 1
#endif
#endif

static void test_isa_tables(void) {
    /* the SIMD tables this architecture builds: one this CPU cannot run is a skip */
#if defined(__x86_64__)
    const char *names[] = {"avx2", "avx512"};
#else
    const char *names[] = {"neon"};
#endif
    static float x[SIMD_TOK * N_IN];
    fill_many_acts(x);
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        const g4_kernels *k = g4_kernels_by_name(names[n]);
        if (!k && !strcmp(names[n], "avx512")) {
#ifdef SIMDE_EMULATES_AVX512
            printf("isa avx512: not native on this CPU; test_kernels_simde checks it emulated (simde)\n");
            continue;
#else
            printf("isa avx512: no emulated run either: SIMDe (libsimde-dev) is not installed\n");
#endif
        }
        if (!k) {
            char group[64];
            snprintf(group, sizeof group, "test_kernels %s", names[n]);
            SKIP(group, "this CPU lacks the %s instructions", names[n]);
            continue;
        }
        CHECK(g4_kernels_select(names[n]) == k && strcmp(k->isa, names[n]) == 0, "GEMMA4_ISA=%s does not select it",
              names[n]);
        test_isa_table(names[n], k, x, "native");
    }
    test_matmul_many("scalar", g4_kernels_scalar(), x);
}

int main(void) {
    g4_kernels_use("scalar"); /* g4_matmul must use the scalar table here */
    for (int p = 0; p < 4; p++) pools[p] = g4_pool_create(pool_threads[p]);
    test_quantizers();
    for (size_t i = 0; i < N_WEIGHT_TYPES; i++) test_weight_type(weight_types[i]);
    test_pool();
    test_dispatch();
    test_isa_tables();
    for (int p = 0; p < 4; p++) g4_pool_free(pools[p]);
    return test_summary("test_kernels");
}
#endif
