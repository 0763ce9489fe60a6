/* Element-wise and per-row operations of the forward pass, with ggml's CPU
 * numerics (docs/architecture.md §5): RMS norm accumulates in double, GELU is read from
 * an f16 table, RoPE angles are built by repeated multiplication. */
#ifndef G4_OPS_H
#define G4_OPS_H

#include <stdint.h>

/* y = x / sqrt(mean(x^2) + eps), then * w when w is not NULL. y may be x. */
void g4_rms_norm(float *y, const float *x, const float *w, int64_t n, float eps);
/* GELU (tanh form) through ggml's f16 lookup table. */
float g4_gelu(float x);
/* y[i] = gelu(g[i]) * u[i] */
void g4_geglu(float *y, const float *g, const float *u, int64_t n);
/* In-place softmax; returns nothing, entries of -INFINITY become 0. */
void g4_softmax(float *x, int64_t n);
/* NeoX RoPE of one head vector in place: pairs (k, k + n_rot/2) for
 * k < n_rot/2, angle pos * base^(-2k/n_rot) / freq_factors[k]. */
void g4_rope_neox(float *v, int32_t n_rot, int32_t pos, float base, const float *freq_factors);
/* Moves a vector g4_rope_neox rotated to position from to position to: the
 * inverse rotation at from (the same f32 angles, negated), then the rotation
 * at to, so the angles are bit for bit those of a fresh rotation at to
 * (a single rotation by to - from would add the rounding of the angle
 * difference, which grows with the position). */
void g4_rope_neox_move(float *v, int32_t n_rot, int32_t from, int32_t to, float base, const float *freq_factors);

#endif
