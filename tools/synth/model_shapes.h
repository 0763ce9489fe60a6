/* Gemma 4 model shapes for the synthetic model writer: the presets (the five
 * released sizes and the three small fixture shapes), "--set KEY=VALUE"
 * overrides, validation, and the tensor list a shape implies (names, ggml ne,
 * how each tensor is initialised) with the per-tensor weight type rule. */
#ifndef G4_MODEL_SHAPES_H
#define G4_MODEL_SHAPES_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/formats.h"

#define G4_SHAPE_MAX_LAYERS 256
#define G4_SHAPE_MAX_SUPPRESS 16

typedef struct g4_shape {
    char name[32];
    int32_t vocab_size, n_embd, n_layer, context_length;
    char layer_types[G4_SHAPE_MAX_LAYERS + 1]; /* one char per layer: S sliding, F full */
    int32_t full_period;  /* pattern used when n_layer changes: layer l full iff l % p == p-1 */
    int32_t n_kv_shared;  /* trailing layers that reuse an earlier layer's KV */
    int32_t n_head, n_head_kv_swa, n_head_kv_full, head_dim_swa, head_dim_full;
    int32_t n_ff;         /* dense FFN width */
    bool double_wide_mlp; /* KV-shared layers get 2 * n_ff (E2B) */
    int32_t n_embd_per_layer;
    bool k_eq_v_full;     /* full layers have no attn_v */
    int32_t n_expert, n_expert_used, n_ff_exp;
    int32_t n_swa;
    float rope_base_full, rope_base_swa, partial_rotary_full, partial_rotary_swa;
    float final_logit_softcapping, rms_eps;
    bool layer_out_scale;
    bool fast_weights;    /* random quantized blocks instead of quantized random floats */
    /* tokenizer.ggml.suppress_tokens (12B "Unified" files): ids the sampler
     * must never pick; the key is written only when there are some */
    int32_t suppress_tokens[G4_SHAPE_MAX_SUPPRESS];
    int32_t n_suppress;
    uint64_t seed;        /* default seed (the fixture's, for the small presets) */
} g4_shape;

/* Copies preset `name` into *s; -1 (err: the known names) if unknown. */
int g4_shape_preset(const char *name, g4_shape *s, char *err);
/* Space-separated preset names, for help texts. */
const char *g4_shape_preset_names(void);
/* Applies one "KEY=VALUE" (KEY a g4_shape field name, e.g. n_layer=3). */
int g4_shape_set(g4_shape *s, const char *assignment, char *err);
/* Rebuilds layer_types from full_period when its length no longer matches
 * n_layer, then checks the shape is one llama.cpp can load. */
int g4_shape_finalize(g4_shape *s, char *err);

bool g4_shape_layer_is_swa(const g4_shape *s, int il);
bool g4_shape_layer_has_kv(const g4_shape *s, int il);
int32_t g4_shape_layer_n_ff(const g4_shape *s, int il);
int32_t g4_shape_layer_n_head_kv(const g4_shape *s, int il);

/* How a tensor's values are drawn (see tools/synth/synth_weights.c). */
enum g4_init {
    G4_INIT_EMBED,        /* uniform, variance 1/arg */
    G4_INIT_LINEAR,       /* uniform, variance 1/arg (arg = fan-in) */
    G4_INIT_ROUTER,       /* linear with a gain, so routing is decisive */
    G4_INIT_NORM,
    G4_INIT_POST_NORM,
    G4_INIT_Q_NORM,
    G4_INIT_K_NORM,
    G4_INIT_OUTPUT_NORM,
    G4_INIT_OUT_SCALE,
    G4_INIT_ROUTER_SCALE,
    G4_INIT_EXPERT_SCALE,
    G4_INIT_ROPE_FREQS,   /* 1.0 for the first arg pairs, 1e30 (not rotated) after */
};

typedef struct g4_tensor_spec {
    char name[64];
    uint32_t n_dims;
    int64_t ne[4];        /* ggml order, unused dims 1 */
    enum g4_init init;
    int64_t arg;
} g4_tensor_spec;

/* The tensors of a (finalized) shape in file order; malloc'd, *n set. */
g4_tensor_spec *g4_shape_tensors(const g4_shape *s, int *n);

/* Type of a tensor in a file of weight type `file_type` (F32, F16, Q8_0,
 * Q4_0, Q4_K), llama-quantize style: 1-D tensors F32; the router and the PLE
 * model projection F16 when quantized; Q4_K falls back to Q4_0 and anything
 * to F16 when ne[0] does not fit the block size. */
enum g4_type g4_shape_tensor_type(const g4_tensor_spec *t, enum g4_type file_type);

#endif
