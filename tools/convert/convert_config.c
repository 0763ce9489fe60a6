/* config.json -> gemma4.* keys, as llama.cpp's converter (Gemma4Model in
 * conversion/gemma.py) writes them: per-layer arrays only where a size
 * really varies (double-wide MLP, separate KV head count of full layers). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tools/convert/convert.h"

#define REQUIRED INT64_MIN

/* A non-negative integer member; absent or null gives def, or an error when
 * def is REQUIRED. */
static int get_int(const g4_json *o, const char *key, int64_t def, int32_t *out, const char *path, char *err) {
    const g4_json *v = g4_json_get(o, key);
    if (!v || v->type == G4_JSON_NULL) {
        if (def == REQUIRED) snprintf(err, G4_ERR_LEN, "%.300s: \"%s\" missing", path, key);
        *out = def == REQUIRED ? 0 : (int32_t)def;
        return def == REQUIRED ? -1 : 0;
    }
    if (v->type != G4_JSON_NUMBER || !v->is_int || v->integer < 0 || v->integer > INT32_MAX) {
        snprintf(err, G4_ERR_LEN, "%.300s: \"%s\" is not a non-negative 32-bit integer", path, key);
        return -1;
    }
    *out = (int32_t)v->integer;
    return 0;
}

static int get_num(const g4_json *o, const char *key, double def, float *out, bool *present, const char *path,
                   char *err) {
    const g4_json *v = g4_json_get(o, key);
    if (present) *present = v && v->type != G4_JSON_NULL;
    if (!v || v->type == G4_JSON_NULL) {
        *out = (float)def;
        return 0;
    }
    if (v->type != G4_JSON_NUMBER || !isfinite((float)v->number)) {
        snprintf(err, G4_ERR_LEN, "%.300s: \"%s\" is not a number", path, key);
        return -1;
    }
    *out = (float)v->number;
    return 0;
}

int convert_read_config(const g4_json *root, const char *path, convert_config *c, char *err) {
    const g4_json *t = g4_json_get_type(root, "text_config", G4_JSON_OBJECT);
    if (!t) t = root;
    memset(c, 0, sizeof *c);
    const g4_json *rope = g4_json_get_type(t, "rope_parameters", G4_JSON_OBJECT);
    const g4_json *rf = g4_json_get_type(rope, "full_attention", G4_JSON_OBJECT);
    const g4_json *rs = g4_json_get_type(rope, "sliding_attention", G4_JSON_OBJECT);
    const g4_json *types = g4_json_get_type(t, "layer_types", G4_JSON_ARRAY);
    const g4_json *dw = g4_json_get_type(t, "use_double_wide_mlp", G4_JSON_BOOL);
    const g4_json *rtype = g4_json_get_type(rf, "rope_type", G4_JSON_STRING);
    int32_t ff_exp_alt = 0;
    int rc = get_int(t, "num_hidden_layers", REQUIRED, &c->n_layer, path, err) ||
             get_int(t, "hidden_size", REQUIRED, &c->n_embd, path, err) ||
             get_int(t, "vocab_size", 0, &c->n_vocab, path, err) ||
             get_int(t, "num_attention_heads", REQUIRED, &c->n_head, path, err) ||
             get_int(t, "num_key_value_heads", REQUIRED, &c->n_head_kv, path, err) ||
             get_int(t, "num_global_key_value_heads", -1, &c->n_head_kv_full, path, err) ||
             get_int(t, "head_dim", REQUIRED, &c->head_dim, path, err) ||
             get_int(t, "global_head_dim", c->head_dim, &c->head_dim_full, path, err) ||
             get_int(t, "intermediate_size", REQUIRED, &c->n_ff, path, err) ||
             get_int(t, "hidden_size_per_layer_input", 0, &c->n_embd_per_layer, path, err) ||
             get_int(t, "num_kv_shared_layers", 0, &c->n_kv_shared, path, err) ||
             get_int(t, "sliding_window", REQUIRED, &c->n_swa, path, err) ||
             get_int(t, "max_position_embeddings", REQUIRED, &c->n_ctx, path, err) ||
             get_int(t, "num_experts", 0, &c->n_expert, path, err) ||
             get_int(t, "top_k_experts", 0, &c->n_expert_used, path, err) ||
             get_int(t, "moe_intermediate_size", 0, &ff_exp_alt, path, err) ||
             get_int(t, "expert_intermediate_size", ff_exp_alt, &c->n_ff_exp, path, err) ||
             get_num(t, "rms_norm_eps", 1e-6, &c->rms_eps, NULL, path, err) ||
             get_num(t, "final_logit_softcapping", 0, &c->softcap, &c->has_softcap, path, err) ||
             get_num(rf, "rope_theta", 1e6, &c->rope_base, NULL, path, err) ||
             get_num(rs, "rope_theta", 1e4, &c->rope_base_swa, NULL, path, err) ||
             get_num(rf, "partial_rotary_factor", 1.0, &c->partial_rotary_full, NULL, path, err) ||
             get_num(rs, "partial_rotary_factor", 1.0, &c->partial_rotary_swa, NULL, path, err)
                 ? -1
                 : 0;
    c->double_wide_mlp = dw && dw->boolean;
    if (!rc && (c->n_layer < 1 || c->n_layer > CONVERT_MAX_LAYERS || c->n_embd < 1 || c->n_head < 1 ||
                c->n_head_kv < 1 || c->head_dim < 2 || c->head_dim_full < 2 || c->n_kv_shared >= c->n_layer)) {
        snprintf(err, G4_ERR_LEN, "%.300s: implausible sizes (layers %d, hidden %d, heads %d/%d, head dims %d/%d, shared %d)",
                 path, c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->head_dim, c->head_dim_full, c->n_kv_shared);
        rc = -1;
    }
    if (!rc && (!types || types->len != (size_t)c->n_layer)) {
        snprintf(err, G4_ERR_LEN, "%.300s: \"layer_types\" must list all %d layers", path, c->n_layer);
        rc = -1;
    }
    bool any_full = false;
    for (int32_t il = 0; !rc && il < c->n_layer; il++) {
        const g4_json *lt = &types->items[il];
        bool swa = lt->type == G4_JSON_STRING && !strcmp(lt->str, "sliding_attention");
        if (!swa && (lt->type != G4_JSON_STRING || strcmp(lt->str, "full_attention"))) {
            snprintf(err, G4_ERR_LEN, "%.300s: layer_types[%d] is not \"sliding_attention\" or \"full_attention\"", path, il);
            rc = -1;
        }
        c->swa[il] = swa;
        any_full |= !swa;
    }
    /* llama.cpp models the full layers' partial rotation only in the
     * "proportional" form, through rope_freqs */
    if (!rc && any_full && (!rtype || strcmp(rtype->str, "proportional") || !(c->partial_rotary_full > 0) ||
                            c->partial_rotary_full > 1)) {
        snprintf(err, G4_ERR_LEN, "%.300s: full_attention RoPE must be \"proportional\" with 0 < partial_rotary_factor <= 1",
                 path);
        rc = -1;
    }
    return rc;
}

int32_t convert_layer_n_ff(const convert_config *c, int32_t il) {
    return c->double_wide_mlp && il >= c->n_layer - c->n_kv_shared ? 2 * c->n_ff : c->n_ff;
}

void convert_rope_freqs(const convert_config *c, float *out) {
    int32_t n_pairs = c->head_dim_full / 2, n_rot = (int32_t)(c->head_dim_full * c->partial_rotary_full / 2);
    for (int32_t i = 0; i < n_pairs; i++) out[i] = i < n_rot ? 1.0f : 1e30f;
}

int convert_write_config_keys(const convert_config *c, g4_gguf_writer *w, char *err) {
    int32_t per_layer[CONVERT_MAX_LAYERS];
    int rc = g4_gguf_writer_set_u32(w, "gemma4.block_count", (uint32_t)c->n_layer, err) ||
             g4_gguf_writer_set_u32(w, "gemma4.context_length", (uint32_t)c->n_ctx, err) ||
             g4_gguf_writer_set_u32(w, "gemma4.embedding_length", (uint32_t)c->n_embd, err);
    if (!rc && c->double_wide_mlp) {
        for (int32_t il = 0; il < c->n_layer; il++) per_layer[il] = convert_layer_n_ff(c, il);
        rc = g4_gguf_writer_set_arr(w, "gemma4.feed_forward_length", GGUF_TYPE_INT32, per_layer, (uint64_t)c->n_layer, err);
    } else if (!rc) {
        rc = g4_gguf_writer_set_u32(w, "gemma4.feed_forward_length", (uint32_t)c->n_ff, err);
    }
    rc = rc || g4_gguf_writer_set_u32(w, "gemma4.attention.head_count", (uint32_t)c->n_head, err);
    if (!rc && c->n_head_kv_full >= 0) {
        for (int32_t il = 0; il < c->n_layer; il++) per_layer[il] = c->swa[il] ? c->n_head_kv : c->n_head_kv_full;
        rc = g4_gguf_writer_set_arr(w, "gemma4.attention.head_count_kv", GGUF_TYPE_INT32, per_layer, (uint64_t)c->n_layer, err);
    } else if (!rc) {
        rc = g4_gguf_writer_set_u32(w, "gemma4.attention.head_count_kv", (uint32_t)c->n_head_kv, err);
    }
    rc = rc || g4_gguf_writer_set_f32(w, "gemma4.rope.freq_base", c->rope_base, err) ||
         g4_gguf_writer_set_f32(w, "gemma4.rope.freq_base_swa", c->rope_base_swa, err) ||
         g4_gguf_writer_set_f32(w, "gemma4.attention.layer_norm_rms_epsilon", c->rms_eps, err) ||
         g4_gguf_writer_set_u32(w, "gemma4.attention.key_length", (uint32_t)c->head_dim_full, err) ||
         g4_gguf_writer_set_u32(w, "gemma4.attention.value_length", (uint32_t)c->head_dim_full, err) ||
         g4_gguf_writer_set_u32(w, "gemma4.attention.key_length_swa", (uint32_t)c->head_dim, err) ||
         g4_gguf_writer_set_u32(w, "gemma4.attention.value_length_swa", (uint32_t)c->head_dim, err) ||
         (c->has_softcap && g4_gguf_writer_set_f32(w, "gemma4.final_logit_softcapping", c->softcap, err)) ||
         g4_gguf_writer_set_u32(w, "gemma4.attention.sliding_window", (uint32_t)c->n_swa, err) ||
         g4_gguf_writer_set_u32(w, "gemma4.attention.shared_kv_layers", (uint32_t)c->n_kv_shared, err) ||
         g4_gguf_writer_set_u32(w, "gemma4.embedding_length_per_layer_input", (uint32_t)c->n_embd_per_layer, err) ||
         g4_gguf_writer_set_arr(w, "gemma4.attention.sliding_window_pattern", GGUF_TYPE_BOOL, c->swa, (uint64_t)c->n_layer,
                             err) ||
         g4_gguf_writer_set_u32(w, "gemma4.rope.dimension_count", (uint32_t)c->head_dim_full, err) ||
         g4_gguf_writer_set_u32(w, "gemma4.rope.dimension_count_swa", (uint32_t)(c->head_dim * c->partial_rotary_swa), err);
    if (!rc && c->n_expert > 0)
        rc = g4_gguf_writer_set_u32(w, "gemma4.expert_count", (uint32_t)c->n_expert, err) ||
             g4_gguf_writer_set_u32(w, "gemma4.expert_used_count", (uint32_t)c->n_expert_used, err) ||
             g4_gguf_writer_set_u32(w, "gemma4.expert_feed_forward_length", (uint32_t)c->n_ff_exp, err);
    return rc ? -1 : 0;
}
