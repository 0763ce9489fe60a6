/* Gemma 4 shapes: presets, overrides, validation and the tensor list.
 * Real sizes follow docs/architecture.md §2 and §3; the tiny
 * presets are the configs of the fixture models (fixtures/manifest.json). */
#include "tools/synth/model_shapes.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h" /* G4_ERR_LEN */

/* What every released size shares (docs/architecture.md §2.1). */
#define REAL_COMMON                                                                     \
    .vocab_size = 262144, .head_dim_swa = 256, .head_dim_full = 512,                    \
    .rope_base_full = 1e6f, .rope_base_swa = 1e4f, .partial_rotary_full = 0.25f,        \
    .partial_rotary_swa = 1.0f, .final_logit_softcapping = 30.0f, .rms_eps = 1e-6f,     \
    .layer_out_scale = true, .fast_weights = true, .seed = 1

/* What the fixture shapes share (fixtures/README.md, "The models"). */
#define TINY_COMMON                                                                     \
    .vocab_size = 512, .n_embd = 256, .context_length = 8192, .n_head = 4,              \
    .head_dim_swa = 64, .head_dim_full = 128, .n_swa = 8, .rope_base_full = 1e6f,       \
    .rope_base_swa = 1e4f, .partial_rotary_full = 0.25f, .partial_rotary_swa = 1.0f,    \
    .final_logit_softcapping = 30.0f, .rms_eps = 1e-6f, .layer_out_scale = true

static const g4_shape presets[] = {
    {.name = "e2b", REAL_COMMON, .n_embd = 1536, .n_layer = 35, .full_period = 5, .n_kv_shared = 20,
     .n_head = 8, .n_head_kv_swa = 1, .n_head_kv_full = 1, .n_ff = 6144, .double_wide_mlp = true,
     .n_embd_per_layer = 256, .n_swa = 512, .context_length = 131072},
    {.name = "e4b", REAL_COMMON, .n_embd = 2560, .n_layer = 42, .full_period = 6, .n_kv_shared = 18,
     .n_head = 8, .n_head_kv_swa = 2, .n_head_kv_full = 2, .n_ff = 10240, .n_embd_per_layer = 256,
     .n_swa = 512, .context_length = 131072},
    {.name = "26b-a4b", REAL_COMMON, .n_embd = 2816, .n_layer = 30, .full_period = 6, .n_head = 16,
     .n_head_kv_swa = 8, .n_head_kv_full = 2, .n_ff = 2112, .k_eq_v_full = true, .n_expert = 128,
     .n_expert_used = 8, .n_ff_exp = 704, .n_swa = 1024, .context_length = 262144},
    {.name = "31b", REAL_COMMON, .n_embd = 5376, .n_layer = 60, .full_period = 6, .n_head = 32,
     .n_head_kv_swa = 16, .n_head_kv_full = 4, .n_ff = 21504, .k_eq_v_full = true, .n_swa = 1024,
     .context_length = 262144},
    /* 12B "Unified": the 31B's layer at 3840 wide, 8 full layers with one
     * KV head (docs/architecture.md §2; its config is known from copies
     * only). Its generation config suppresses some tokens, which the
     * converter writes as tokenizer.ggml.suppress_tokens; the real list is
     * not published with the shape, so pad, unknown and mask (0, 3, 4),
     * which no text should contain, stand in for it. */
    {.name = "12b", REAL_COMMON, .n_embd = 3840, .n_layer = 48, .full_period = 6, .n_head = 16,
     .n_head_kv_swa = 8, .n_head_kv_full = 1, .n_ff = 15360, .k_eq_v_full = true, .n_swa = 1024,
     .context_length = 262144, .suppress_tokens = {0, 3, 4}, .n_suppress = 3},
    {.name = "tiny-e2b", TINY_COMMON, .n_layer = 5, .layer_types = "SSFSF", .full_period = 3,
     .n_kv_shared = 2, .n_head_kv_swa = 1, .n_head_kv_full = 1, .n_ff = 256, .double_wide_mlp = true,
     .n_embd_per_layer = 32, .seed = 1001},
    {.name = "tiny-moe", TINY_COMMON, .n_layer = 4, .layer_types = "SSSF", .full_period = 4,
     .n_head_kv_swa = 2, .n_head_kv_full = 1, .n_ff = 128, .k_eq_v_full = true, .n_expert = 8,
     .n_expert_used = 2, .n_ff_exp = 32, .seed = 2002},
    {.name = "tiny-dense", TINY_COMMON, .n_layer = 4, .layer_types = "SSSF", .full_period = 4,
     .n_head_kv_swa = 2, .n_head_kv_full = 1, .n_ff = 256, .k_eq_v_full = true, .seed = 3003},
};

static const struct {
    const char *alias, *name;
} aliases[] = {{"moe-full", "26b-a4b"}, {"e2b-full", "e2b"}, {"e4b-full", "e4b"}, {"dense-full", "31b"}};

const char *g4_shape_preset_names(void) {
    return "e2b e4b 26b-a4b (moe-full) 31b 12b tiny-e2b tiny-moe tiny-dense";
}

/* Layer l is full iff l % p == p-1; the last layer is always full. */
static void fill_layer_types(g4_shape *s) {
    int n = s->n_layer < 0 ? 0 : s->n_layer > G4_SHAPE_MAX_LAYERS ? G4_SHAPE_MAX_LAYERS : s->n_layer;
    int p = s->full_period > 0 ? s->full_period : 1;
    for (int il = 0; il < n; il++) s->layer_types[il] = (il % p == p - 1 || il == n - 1) ? 'F' : 'S';
    s->layer_types[n] = 0;
}

int g4_shape_preset(const char *name, g4_shape *s, char *err) {
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(name, aliases[i].alias)) name = aliases[i].name;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(name, presets[i].name)) continue;
        *s = presets[i];
        if (!s->layer_types[0]) fill_layer_types(s);
        return 0;
    }
    snprintf(err, G4_ERR_LEN, "mkmodel: unknown preset '%s' (known: %s)", name, g4_shape_preset_names());
    return -1;
}

enum field_kind { F_I32, F_F32, F_BOOL, F_TYPES, F_IDS };

static const struct {
    const char *name;
    enum field_kind kind;
    size_t off;
} fields[] = {
#define FIELD(k, f) {#f, k, offsetof(g4_shape, f)}
    FIELD(F_I32, vocab_size), FIELD(F_I32, n_embd), FIELD(F_I32, n_layer), FIELD(F_I32, context_length),
    FIELD(F_TYPES, layer_types), FIELD(F_I32, full_period), FIELD(F_I32, n_kv_shared), FIELD(F_I32, n_head),
    FIELD(F_I32, n_head_kv_swa), FIELD(F_I32, n_head_kv_full), FIELD(F_I32, head_dim_swa),
    FIELD(F_I32, head_dim_full), FIELD(F_I32, n_ff), FIELD(F_BOOL, double_wide_mlp),
    FIELD(F_I32, n_embd_per_layer), FIELD(F_BOOL, k_eq_v_full), FIELD(F_I32, n_expert),
    FIELD(F_I32, n_expert_used), FIELD(F_I32, n_ff_exp), FIELD(F_I32, n_swa), FIELD(F_F32, rope_base_full),
    FIELD(F_F32, rope_base_swa), FIELD(F_F32, partial_rotary_full), FIELD(F_F32, partial_rotary_swa),
    FIELD(F_F32, final_logit_softcapping), FIELD(F_F32, rms_eps), FIELD(F_BOOL, layer_out_scale),
    FIELD(F_BOOL, fast_weights), FIELD(F_IDS, suppress_tokens),
#undef FIELD
};

int g4_shape_set(g4_shape *s, const char *assignment, char *err) {
    const char *eq = strchr(assignment, '=');
    size_t klen = eq ? (size_t)(eq - assignment) : 0;
    for (size_t i = 0; eq && i < sizeof fields / sizeof fields[0]; i++) {
        if (strlen(fields[i].name) != klen || strncmp(fields[i].name, assignment, klen)) continue;
        const char *v = eq + 1;
        char *end = NULL;
        void *dst = (char *)s + fields[i].off;
        errno = 0;
        switch (fields[i].kind) {
        case F_I32: {
            long x = strtol(v, &end, 10);
            if (!*v || *end || errno || x < 0 || x > INT32_MAX) break;
            int32_t y = (int32_t)x;
            memcpy(dst, &y, sizeof y);
            /* the layer pattern follows the layer count and the period */
            if (!strcmp(fields[i].name, "n_layer") || !strcmp(fields[i].name, "full_period")) fill_layer_types(s);
            return 0;
        }
        case F_F32: {
            float x = strtof(v, &end);
            if (!*v || *end || errno) break;
            memcpy(dst, &x, sizeof x);
            return 0;
        }
        case F_BOOL: {
            bool t = !strcmp(v, "true") || !strcmp(v, "1"), f = !strcmp(v, "false") || !strcmp(v, "0");
            if (!t && !f) break;
            memcpy(dst, &t, sizeof t);
            return 0;
        }
        case F_IDS: { /* "0,3,4"; "" for none */
            int32_t ids[G4_SHAPE_MAX_SUPPRESS], n = 0;
            const char *at = v;
            while (*at && n < G4_SHAPE_MAX_SUPPRESS) {
                long x = strtol(at, &end, 10);
                if (end == at || errno || x < 0 || x > INT32_MAX || (*end && *end != ',') || (*end && !end[1])) break;
                ids[n++] = (int32_t)x;
                at = *end ? end + 1 : end;
            }
            if (*at) break;
            memcpy(s->suppress_tokens, ids, (size_t)n * sizeof *ids);
            s->n_suppress = n;
            return 0;
        }
        case F_TYPES: {
            size_t n = strlen(v);
            if (n == 0 || n > G4_SHAPE_MAX_LAYERS || strspn(v, "SF") != n) break;
            memcpy(s->layer_types, v, n + 1);
            s->n_layer = (int32_t)n;
            return 0;
        }
        }
        static const char *const want[] = {"a non-negative integer", "a number", "true or false",
                                           "a string of S and F (one per layer)",
                                           "a comma-separated list of at most 16 token ids"};
        snprintf(err, G4_ERR_LEN, "mkmodel: --set %.*s: '%s' is not %s", (int)klen, assignment, v,
                 want[fields[i].kind]);
        return -1;
    }
    int n = snprintf(err, G4_ERR_LEN, "mkmodel: --set '%s': expected KEY=VALUE with KEY one of", assignment);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0] && n > 0 && n < G4_ERR_LEN; i++)
        n += snprintf(err + n, G4_ERR_LEN - (size_t)n, " %s", fields[i].name);
    return -1;
}

static int bad(char *err, const char *msg, const g4_shape *s) {
    snprintf(err, G4_ERR_LEN, "mkmodel: shape %s: %s", s->name, msg);
    return -1;
}

int g4_shape_finalize(g4_shape *s, char *err) {
    int L = s->n_layer;
    if (L < 2 || L > G4_SHAPE_MAX_LAYERS) return bad(err, "n_layer must be 2..256", s);
    if ((int)strlen(s->layer_types) != L || strspn(s->layer_types, "SF") != (size_t)L)
        return bad(err, "layer_types must have one S or F per layer", s);
    if (!strchr(s->layer_types, 'S')) return bad(err, "gemma4 needs at least one sliding-window (S) layer", s);
    if (s->vocab_size < 1 || s->n_embd < 1 || s->context_length < 1 || s->n_swa < 1 || s->n_ff < 1)
        return bad(err, "vocab_size, n_embd, context_length, n_swa and n_ff must be positive", s);
    if (s->n_head < 1 || s->n_head_kv_swa < 1 || s->n_head_kv_full < 1)
        return bad(err, "head counts must be positive", s);
    if (s->head_dim_swa < 2 || s->head_dim_full < 2 || s->head_dim_swa % 2 || s->head_dim_full % 2)
        return bad(err, "head dims must be even and positive", s);
    if (!(s->partial_rotary_full > 0 && s->partial_rotary_full <= 1) ||
        !(s->partial_rotary_swa > 0 && s->partial_rotary_swa <= 1))
        return bad(err, "partial_rotary_* must be in (0, 1]", s);
    if (s->n_kv_shared) {
        int nkv = L - s->n_kv_shared;
        if (nkv < 2) return bad(err, "n_kv_shared leaves fewer than 2 layers with their own KV", s);
        /* llama.cpp maps shared sliding layers to layer nkv-2, shared full ones to nkv-1 */
        if (s->layer_types[nkv - 2] != 'S' || s->layer_types[nkv - 1] != 'F')
            return bad(err, "the last two layers with KV (n_layer - n_kv_shared - 2, -1) must be S and F", s);
    }
    for (int i = 0; i < s->n_suppress; i++)
        if (s->suppress_tokens[i] >= s->vocab_size) return bad(err, "suppress_tokens must be ids below vocab_size", s);
    if (s->n_expert && (s->n_expert_used < 1 || s->n_expert_used > s->n_expert || s->n_ff_exp < 1))
        return bad(err, "MoE needs 1 <= n_expert_used <= n_expert and n_ff_exp > 0", s);
    return 0;
}

bool g4_shape_layer_is_swa(const g4_shape *s, int il) { return s->layer_types[il] == 'S'; }
bool g4_shape_layer_has_kv(const g4_shape *s, int il) { return il < s->n_layer - s->n_kv_shared; }

int32_t g4_shape_layer_n_ff(const g4_shape *s, int il) {
    return s->double_wide_mlp && !g4_shape_layer_has_kv(s, il) ? 2 * s->n_ff : s->n_ff;
}

int32_t g4_shape_layer_n_head_kv(const g4_shape *s, int il) {
    return g4_shape_layer_is_swa(s, il) ? s->n_head_kv_swa : s->n_head_kv_full;
}

typedef struct {
    g4_tensor_spec *t;
    int n;
} tensor_list;

/* ne in ggml order: ne0 = row length (fan-in of a weight), then rows, experts. */
static void add(tensor_list *l, enum g4_init init, int64_t arg, uint32_t n_dims, int64_t ne0, int64_t ne1,
                int64_t ne2, const char *fmt, int il) {
    g4_tensor_spec *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, fmt, il);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
    t->init = init;
    t->arg = arg;
}

#define MAX_TENSORS_PER_LAYER 32

g4_tensor_spec *g4_shape_tensors(const g4_shape *s, int *n) {
    tensor_list l = {calloc((size_t)(8 + MAX_TENSORS_PER_LAYER * s->n_layer), sizeof(g4_tensor_spec)), 0};
    if (!l.t) return NULL;
    const int64_t E = s->n_embd, V = s->vocab_size, P = s->n_embd_per_layer, H = s->n_head;
    add(&l, G4_INIT_EMBED, E, 2, E, V, 1, "token_embd.weight", 0);
    if (P) {
        add(&l, G4_INIT_EMBED, P, 2, P * s->n_layer, V, 1, "per_layer_token_embd.weight", 0);
        add(&l, G4_INIT_LINEAR, E, 2, E, P * s->n_layer, 1, "per_layer_model_proj.weight", 0);
        add(&l, G4_INIT_NORM, 0, 1, P, 1, 1, "per_layer_proj_norm.weight", 0);
    }
    add(&l, G4_INIT_OUTPUT_NORM, 0, 1, E, 1, 1, "output_norm.weight", 0);
    if (strchr(s->layer_types, 'F')) {
        int64_t n_rot_pairs = (int64_t)((double)s->head_dim_full * s->partial_rotary_full / 2);
        add(&l, G4_INIT_ROPE_FREQS, n_rot_pairs, 1, s->head_dim_full / 2, 1, 1, "rope_freqs.weight", 0);
    }
    for (int il = 0; il < s->n_layer; il++) {
        bool swa = g4_shape_layer_is_swa(s, il);
        int64_t hd = swa ? s->head_dim_swa : s->head_dim_full, kv = g4_shape_layer_n_head_kv(s, il);
        int64_t F = g4_shape_layer_n_ff(s, il);
        add(&l, G4_INIT_NORM, 0, 1, E, 1, 1, "blk.%d.attn_norm.weight", il);
        add(&l, G4_INIT_LINEAR, E, 2, E, H * hd, 1, "blk.%d.attn_q.weight", il);
        if (g4_shape_layer_has_kv(s, il)) {
            add(&l, G4_INIT_LINEAR, E, 2, E, kv * hd, 1, "blk.%d.attn_k.weight", il);
            if (swa || !s->k_eq_v_full) add(&l, G4_INIT_LINEAR, E, 2, E, kv * hd, 1, "blk.%d.attn_v.weight", il);
            add(&l, G4_INIT_K_NORM, 0, 1, hd, 1, 1, "blk.%d.attn_k_norm.weight", il);
        }
        add(&l, G4_INIT_LINEAR, H * hd, 2, H * hd, E, 1, "blk.%d.attn_output.weight", il);
        add(&l, G4_INIT_Q_NORM, 0, 1, hd, 1, 1, "blk.%d.attn_q_norm.weight", il);
        add(&l, G4_INIT_POST_NORM, 0, 1, E, 1, 1, "blk.%d.post_attention_norm.weight", il);
        if (s->layer_out_scale) add(&l, G4_INIT_OUT_SCALE, 0, 1, 1, 1, 1, "blk.%d.layer_output_scale.weight", il);
        add(&l, G4_INIT_NORM, 0, 1, E, 1, 1, "blk.%d.ffn_norm.weight", il);
        add(&l, G4_INIT_LINEAR, E, 2, E, F, 1, "blk.%d.ffn_gate.weight", il);
        add(&l, G4_INIT_LINEAR, E, 2, E, F, 1, "blk.%d.ffn_up.weight", il);
        add(&l, G4_INIT_LINEAR, F, 2, F, E, 1, "blk.%d.ffn_down.weight", il);
        add(&l, G4_INIT_POST_NORM, 0, 1, E, 1, 1, "blk.%d.post_ffw_norm.weight", il);
        if (s->n_expert) {
            int64_t X = s->n_expert, FX = s->n_ff_exp;
            add(&l, G4_INIT_ROUTER, E, 2, E, X, 1, "blk.%d.ffn_gate_inp.weight", il);
            add(&l, G4_INIT_ROUTER_SCALE, 0, 1, E, 1, 1, "blk.%d.ffn_gate_inp.scale", il);
            add(&l, G4_INIT_NORM, 0, 1, E, 1, 1, "blk.%d.pre_ffw_norm_2.weight", il);
            add(&l, G4_INIT_NORM, 0, 1, E, 1, 1, "blk.%d.post_ffw_norm_1.weight", il);
            add(&l, G4_INIT_NORM, 0, 1, E, 1, 1, "blk.%d.post_ffw_norm_2.weight", il);
            add(&l, G4_INIT_LINEAR, E, 3, E, 2 * FX, X, "blk.%d.ffn_gate_up_exps.weight", il);
            add(&l, G4_INIT_LINEAR, FX, 3, FX, E, X, "blk.%d.ffn_down_exps.weight", il);
            add(&l, G4_INIT_EXPERT_SCALE, 0, 1, X, 1, 1, "blk.%d.ffn_down_exps.scale", il);
        }
        if (P) {
            add(&l, G4_INIT_LINEAR, E, 2, E, P, 1, "blk.%d.inp_gate.weight", il);
            add(&l, G4_INIT_LINEAR, P, 2, P, E, 1, "blk.%d.proj.weight", il);
            add(&l, G4_INIT_POST_NORM, 0, 1, E, 1, 1, "blk.%d.post_norm.weight", il);
        }
    }
    *n = l.n;
    return l.t;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

enum g4_type g4_shape_tensor_type(const g4_tensor_spec *t, enum g4_type file_type) {
    if (t->n_dims < 2) return G4_TYPE_F32;
    if (file_type == G4_TYPE_F32 || file_type == G4_TYPE_F16) return file_type;
    /* llama-quantize leaves these two in high precision */
    if (ends_with(t->name, "ffn_gate_inp.weight") || !strcmp(t->name, "per_layer_model_proj.weight"))
        return G4_TYPE_F16;
    if (t->ne[0] % g4_type_info(file_type)->blck_size == 0) return file_type;
    if (file_type == G4_TYPE_Q4_K && t->ne[0] % G4_QK == 0) return G4_TYPE_Q4_0;
    return G4_TYPE_F16;
}
