/* gemma4.c: the Gemma 4 model and its forward pass.
 *
 * Read it top to bottom against ../shared/spec/gemma4-architecture.md:
 *   load:     §2 hyperparameters (gemma4.* keys) and §3 tensors, bound by name
 *             with their expected shapes;
 *   forward:  §4.1 token embedding, §4.2 per-layer embeddings, then per layer
 *             §4.4 attention, §4.5/§4.6 feed-forward (dense or MoE), §4.7 PLE
 *             injection and layer scale, and §4.8 the output head.
 * All matmuls go through kernels/ (g4_matmul); this file never sees an ISA.
 * GEMMA4_DUMP=1 prints every intermediate vector under the name llama.cpp
 * gives the same graph node (spec §8.2b), to locate a mismatch.
 */
#include "gemma4.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kvcache.h"

#define G4_MAX_LAYERS 512

typedef struct layer {
    /* derived properties (§2.2) */
    bool swa;          /* sliding-window layer */
    bool has_kv;       /* owns a KV cache (not in the shared tail) */
    int32_t kv_src;    /* layer whose cache it reads */
    int32_t head_dim, n_head_kv, n_rot, n_ff;
    float rope_base;
    bool moe;
    /* attention */
    const float *attn_norm, *attn_q_norm, *attn_k_norm, *post_attention_norm;
    g4_weight attn_q, attn_k, attn_v, attn_output; /* attn_v.data NULL: V = raw K */
    /* dense FFN (the always-on shared MLP on MoE layers) */
    const float *ffn_norm, *post_ffw_norm;
    g4_weight ffn_gate, ffn_up, ffn_down;
    /* MoE */
    g4_weight ffn_gate_inp;
    const float *ffn_gate_inp_scale, *pre_ffw_norm_2, *post_ffw_norm_1, *post_ffw_norm_2;
    const float *down_exps_scale;      /* NULL: every expert scale 1 */
    g4_weight gate_exps, up_exps;      /* one expert's matrix; data of expert 0 */
    g4_weight down_exps;
    size_t gate_exps_stride, up_exps_stride, down_exps_stride; /* bytes per expert */
    /* per-layer embedding input */
    g4_weight inp_gate, proj;
    const float *post_norm;
    float out_scale;
} layer;

struct gemma4_model {
    gguf_file *gguf;
    g4_vocab *vocab;
    char *path;
    /* hyperparameters (§2.1) */
    int32_t n_layer, n_embd, n_head, n_vocab, n_ctx_train;
    int32_t n_swa, n_kv_from_start, n_embd_per_layer;
    int32_t n_expert, n_expert_used, n_ff_exp;
    float rms_eps, softcap;
    layer layers[G4_MAX_LAYERS];
    /* global tensors */
    g4_weight token_embd, output, per_layer_token_embd, per_layer_model_proj;
    const float *output_norm, *per_layer_proj_norm, *rope_freqs;
    /* 1-D tensors are converted to f32 once; they are tiny */
    void **owned; /* heap blocks freed with the model: converted vectors, interleaved weights */
    size_t n_owned;
};

/* ---------------------------------------------------------------- loading */

/* A u32 key; absent keys take def when not required. */
static int key_u32(const gemma4_model *m, const char *key, bool required, uint32_t def, int32_t *out, char *err) {
    uint32_t v = def;
    int rc = gguf_get_u32(m->gguf, key, &v, err);
    if (rc == GGUF_ETYPE) return -1;
    if (rc == GGUF_ENOKEY && required) return g4_error(err, NULL, "%s: missing key '%s'", m->path, key);
    if (v > INT32_MAX) return g4_error(err, NULL, "%s: key '%s' = %u is out of range", m->path, key, v);
    *out = (int32_t)v;
    return 0;
}

static int key_f32(const gemma4_model *m, const char *key, bool required, float def, float *out, char *err) {
    *out = def;
    int rc = gguf_get_f32(m->gguf, key, out, err);
    if (rc == GGUF_ETYPE) return -1;
    if (rc == GGUF_ENOKEY && required) return g4_error(err, NULL, "%s: missing key '%s'", m->path, key);
    return 0;
}

/* A key that is either a u32 scalar (same value for every layer) or an array
 * of block_count INT32/UINT32/BOOL values (llama.cpp's get_key_or_arr). */
static int key_per_layer(const gemma4_model *m, const char *key, bool required, int32_t def, int32_t *out,
                         char *err) {
    const gguf_kv *kv = gguf_find_kv(m->gguf, key);
    if (!kv) {
        if (required) return g4_error(err, NULL, "%s: missing key '%s'", m->path, key);
        for (int32_t l = 0; l < m->n_layer; l++) out[l] = def;
        return 0;
    }
    if (kv->type == GGUF_TYPE_ARRAY) {
        if (kv->arr_n != (uint64_t)m->n_layer)
            return g4_error(err, NULL, "%s: key '%s' has %llu elements, expected block_count = %d", m->path, key,
                        (unsigned long long)kv->arr_n, m->n_layer);
        for (int32_t l = 0; l < m->n_layer; l++) {
            if (kv->arr_type == GGUF_TYPE_INT32) out[l] = ((const int32_t *)kv->arr_data)[l];
            else if (kv->arr_type == GGUF_TYPE_UINT32) out[l] = (int32_t)((const uint32_t *)kv->arr_data)[l];
            else if (kv->arr_type == GGUF_TYPE_BOOL) out[l] = ((const bool *)kv->arr_data)[l];
            else
                return g4_error(err, NULL, "%s: key '%s' is an array of %s, expected i32, u32 or bool", m->path, key,
                            gguf_type_name(kv->arr_type));
            if (out[l] < 0) return g4_error(err, NULL, "%s: key '%s'[%d] = %d is negative", m->path, key, l, out[l]);
        }
        return 0;
    }
    uint32_t v;
    if (kv->type == GGUF_TYPE_BOOL) v = kv->val.b;
    else if (gguf_get_u32(m->gguf, key, &v, err) != GGUF_OK) return -1;
    if (v > INT32_MAX) return g4_error(err, NULL, "%s: key '%s' = %u is out of range", m->path, key, v);
    for (int32_t l = 0; l < m->n_layer; l++) out[l] = (int32_t)v;
    return 0;
}

static const char *dims_str(char *buf, size_t cap, const int64_t *ne, int n) {
    int k = snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < (int)cap; i++) k += snprintf(buf + k, cap - (size_t)k, i ? ", %lld" : "%lld", (long long)ne[i]);
    if (k < (int)cap) snprintf(buf + k, cap - (size_t)k, "]");
    return buf;
}

/* Finds tensor `name` and checks its shape against ne[0..n_dims). */
static const gguf_tensor *find_shaped(const gemma4_model *m, const char *name, bool required, int n_dims,
                                      const int64_t *ne, char *err, int *rc) {
    *rc = 0;
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) *rc = g4_error(err, NULL, "%s: missing tensor '%s'", m->path, name);
        return NULL;
    }
    bool ok = true;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) ok &= t->ne[i] == (i < n_dims ? ne[i] : 1);
    if (!ok) {
        char a[96], b[96];
        *rc = g4_error(err, NULL, "%s: tensor '%s' has shape %s, expected %s", m->path, name, dims_str(a, sizeof a, t->ne, (int)t->n_dims),
                   dims_str(b, sizeof b, ne, n_dims));
        return NULL;
    }
    const g4_type_traits *tr = g4_type_info(t->type);
    if (!tr || !tr->weights) {
        *rc = g4_error(err, NULL, "%s: tensor '%s' has type %s, which gemma4 cannot run", m->path, name, g4_type_name(t->type));
        return NULL;
    }
    return t;
}

/* Keeps a heap block until the model is freed (frees p on failure). */
static int own(gemma4_model *m, void *p, char *err) {
    void **grown = p ? realloc(m->owned, (m->n_owned + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(p);
        return g4_error(err, NULL, "%s: out of memory", m->path);
    }
    m->owned = grown;
    m->owned[m->n_owned++] = p;
    return 0;
}

/* A 1-D tensor of n values as f32 (converted once if stored otherwise). */
static int bind_vec(gemma4_model *m, const char *name, bool required, int64_t n, const float **out, char *err) {
    int rc;
    *out = NULL;
    const gguf_tensor *t = find_shaped(m, name, required, 1, &n, err, &rc);
    if (!t) return rc;
    float *v = malloc((size_t)n * sizeof *v);
    if ((rc = own(m, v, err))) return rc;
    g4_dequantize_row(t->type, t->data, v, n);
    *out = v;
    return 0;
}

/* A matrix {n_in, n_out} (or an expert stack {n_in, n_out, n_exp}). */
static int bind_mat(gemma4_model *m, const char *name, bool required, int64_t n_in, int64_t n_out, int64_t n_exp,
                    g4_weight *w, size_t *expert_stride, char *err) {
    int rc;
    const int64_t ne[3] = {n_in, n_out, n_exp};
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = find_shaped(m, name, required, n_exp ? 3 : 2, ne, err, &rc);
    if (!t) return rc;
    w->type = (enum g4_type)t->type;
    w->data = t->data;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = g4_row_size(w->type, n_in);
    if (expert_stride) *expert_stride = w->row_bytes * (size_t)n_out;
    return 0;
}

/* Interleaves one matrix, or a stack of n_stack matrices of stack_rows rows
 * each (experts), for the active kernels (kernels/repack.h). A stack is
 * interleaved whole only when every matrix in it, and w's own rows, are
 * whole groups, so that expert e still starts at e * stride. */
static int repack(gemma4_model *m, g4_weight *w, int64_t stack_rows, int64_t n_stack, char *err) {
    g4_weight all = *w;
    all.n_out = stack_rows * n_stack;
    if (n_stack > 1 && (w->n_out % G4_REPACK_ROWS || stack_rows % G4_REPACK_ROWS)) return 0;
    if (!w->data || !g4_repack_supported(g4_kernels_active(), &all)) return 0;
    if (!g4_repack(&all, true)) return g4_error(err, NULL, "%s: out of memory interleaving weights", m->path);
    w->data = all.data;
    w->interleaved = 1;
    return own(m, (void *)(uintptr_t)all.data, err);
}

/* Load-time interleaving of every matrix the active kernels have an
 * interleaved kernel for, as llama.cpp's CPU repacking: decode then streams
 * each matrix once with 8 rows per SIMD vector. GEMMA4_REPACK=0 keeps the
 * zero-copy mapping. per_layer_token_embd stays plain: it is only gathered
 * by token, never multiplied; token_embd is both (its rows are unpacked for
 * the lookup). */
static int repack_weights(gemma4_model *m, char *err) {
    const char *env = getenv("GEMMA4_REPACK");
    if (env && !strcmp(env, "0")) return 0;
    const bool tied = m->output.data == m->token_embd.data;
    int rc = repack(m, &m->token_embd, m->token_embd.n_out, 1, err);
    if (tied) m->output = m->token_embd;
    else rc = rc ? rc : repack(m, &m->output, m->output.n_out, 1, err);
    rc = rc ? rc : repack(m, &m->per_layer_model_proj, m->per_layer_model_proj.n_out, 1, err);
    for (int32_t l = 0; l < m->n_layer && !rc; l++) {
        layer *L = &m->layers[l];
        g4_weight *mats[] = {&L->attn_q, &L->attn_k, &L->attn_v, &L->attn_output, &L->ffn_gate, &L->ffn_up,
                             &L->ffn_down, &L->ffn_gate_inp, &L->inp_gate, &L->proj};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0] && !rc; i++) rc = repack(m, mats[i], mats[i]->n_out, 1, err);
        if (!L->moe || rc) continue;
        const int64_t E = m->n_expert;
        /* fused gate_up: an expert's stride holds its gate rows and then its up rows */
        const bool fused = L->gate_exps_stride == 2 * (size_t)L->gate_exps.n_out * L->gate_exps.row_bytes;
        rc = repack(m, &L->down_exps, (int64_t)(L->down_exps_stride / L->down_exps.row_bytes), E, err);
        rc = rc ? rc : repack(m, &L->gate_exps, (int64_t)(L->gate_exps_stride / L->gate_exps.row_bytes), E, err);
        if (fused && L->gate_exps.interleaved) {
            L->up_exps.data = (const char *)L->gate_exps.data + (size_t)L->gate_exps.n_out * L->gate_exps.row_bytes;
            L->up_exps.interleaved = 1;
        } else if (!fused) {
            rc = rc ? rc : repack(m, &L->up_exps, (int64_t)(L->up_exps_stride / L->up_exps.row_bytes), E, err);
        }
    }
    return rc;
}

static int load_hparams(gemma4_model *m, int32_t *n_ff, int32_t *n_head_kv, int32_t *swa_pattern, char *err) {
    gguf_str arch;
    if (gguf_get_str(m->gguf, "general.architecture", &arch, err) != GGUF_OK) {
        if (!gguf_find_kv(m->gguf, "general.architecture")) g4_error(err, NULL, "%s: missing key 'general.architecture'", m->path);
        return -1;
    }
    if (arch.len != 6 || memcmp(arch.ptr, "gemma4", 6))
        return g4_error(err, NULL, "%s: architecture '%.*s' is not gemma4", m->path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);

    int32_t head_dim_full, head_dim_swa, v_full, v_swa, n_rot_full, n_rot_swa;
    if (key_u32(m, "gemma4.block_count", true, 0, &m->n_layer, err) ||
        key_u32(m, "gemma4.embedding_length", true, 0, &m->n_embd, err) ||
        key_u32(m, "gemma4.context_length", true, 0, &m->n_ctx_train, err) ||
        key_u32(m, "gemma4.attention.sliding_window", true, 0, &m->n_swa, err) ||
        key_u32(m, "gemma4.embedding_length_per_layer_input", true, 0, &m->n_embd_per_layer, err) ||
        key_u32(m, "gemma4.expert_count", false, 0, &m->n_expert, err) ||
        key_u32(m, "gemma4.expert_used_count", false, 0, &m->n_expert_used, err) ||
        key_u32(m, "gemma4.expert_feed_forward_length", false, 0, &m->n_ff_exp, err) ||
        key_f32(m, "gemma4.attention.layer_norm_rms_epsilon", true, 0, &m->rms_eps, err) ||
        key_f32(m, "gemma4.final_logit_softcapping", false, 30.0f, &m->softcap, err))
        return -1;
    if (m->n_layer < 1 || m->n_layer > G4_MAX_LAYERS)
        return g4_error(err, NULL, "%s: block_count %d is outside 1..%d", m->path, m->n_layer, G4_MAX_LAYERS);
    if (key_per_layer(m, "gemma4.attention.head_count", true, 0, n_ff, err)) return -1;
    m->n_head = n_ff[0];
    for (int32_t l = 1; l < m->n_layer; l++)
        if (n_ff[l] != m->n_head) return g4_error(err, NULL, "%s: head_count differs between layers", m->path);
    if (key_per_layer(m, "gemma4.feed_forward_length", true, 0, n_ff, err) ||
        key_per_layer(m, "gemma4.attention.head_count_kv", false, m->n_head, n_head_kv, err) ||
        key_per_layer(m, "gemma4.attention.sliding_window_pattern", true, 0, swa_pattern, err))
        return -1;
    if (key_u32(m, "gemma4.attention.key_length", false, m->n_head ? (uint32_t)(m->n_embd / m->n_head) : 0, &head_dim_full, err) ||
        key_u32(m, "gemma4.attention.value_length", false, (uint32_t)head_dim_full, &v_full, err) ||
        key_u32(m, "gemma4.attention.key_length_swa", true, 0, &head_dim_swa, err) ||
        key_u32(m, "gemma4.attention.value_length_swa", true, 0, &v_swa, err) ||
        key_u32(m, "gemma4.rope.dimension_count", false, (uint32_t)head_dim_full, &n_rot_full, err) ||
        key_u32(m, "gemma4.rope.dimension_count_swa", false, (uint32_t)n_rot_full, &n_rot_swa, err))
        return -1;
    float base_full, base_swa;
    int32_t shared_kv;
    if (key_f32(m, "gemma4.rope.freq_base", false, 10000.0f, &base_full, err) ||
        key_f32(m, "gemma4.rope.freq_base_swa", false, 10000.0f, &base_swa, err) ||
        key_u32(m, "gemma4.attention.shared_kv_layers", false, 0, &shared_kv, err))
        return -1;

    if (m->n_embd < 1 || m->n_head < 1) return g4_error(err, NULL, "%s: embedding_length and head_count must be positive", m->path);
    if (head_dim_full != v_full || head_dim_swa != v_swa)
        return g4_error(err, NULL, "%s: key_length and value_length differ (%d/%d full, %d/%d sliding)", m->path, head_dim_full,
                    v_full, head_dim_swa, v_swa);
    if (head_dim_full < 2 || head_dim_swa < 2 || head_dim_full % 2 || head_dim_swa % 2)
        return g4_error(err, NULL, "%s: head dims %d/%d must be even and positive", m->path, head_dim_swa, head_dim_full);
    if (n_rot_full != head_dim_full || n_rot_swa != head_dim_swa)
        return g4_error(err, NULL, "%s: rope dimension counts %d/%d differ from the head dims %d/%d", m->path, n_rot_swa,
                    n_rot_full, head_dim_swa, head_dim_full);
    if (m->n_swa < 1) return g4_error(err, NULL, "%s: sliding_window must be positive", m->path);
    if (shared_kv >= m->n_layer) return g4_error(err, NULL, "%s: shared_kv_layers %d >= block_count %d", m->path, shared_kv, m->n_layer);
    if (m->n_expert && (m->n_expert_used < 1 || m->n_expert_used > m->n_expert || m->n_ff_exp < 1))
        return g4_error(err, NULL, "%s: expert_used_count %d / expert_count %d / expert_feed_forward_length %d are inconsistent",
                    m->path, m->n_expert_used, m->n_expert, m->n_ff_exp);
    m->n_kv_from_start = m->n_layer - shared_kv;

    for (int32_t l = 0; l < m->n_layer; l++) {
        layer *L = &m->layers[l];
        L->swa = swa_pattern[l] != 0;
        L->head_dim = L->swa ? head_dim_swa : head_dim_full;
        L->n_rot = L->swa ? n_rot_swa : n_rot_full;
        L->rope_base = L->swa ? base_swa : base_full;
        L->n_head_kv = n_head_kv[l];
        L->n_ff = n_ff[l];
        L->has_kv = l < m->n_kv_from_start;
        L->kv_src = l;
        if (!L->has_kv) {
            /* llama.cpp: the shared tail reads the last sliding (n_kv-2) or
             * full (n_kv-1) layer that owns a cache. */
            L->kv_src = m->n_kv_from_start - (L->swa ? 2 : 1);
            if (L->kv_src < 0 || m->layers[L->kv_src].swa != L->swa)
                return g4_error(err, NULL, "%s: KV-shared layer %d needs layer %d to be a %s layer that owns a cache", m->path,
                            l, L->kv_src, L->swa ? "sliding" : "full");
            if (m->layers[L->kv_src].n_head_kv != L->n_head_kv)
                return g4_error(err, NULL, "%s: KV-shared layer %d has %d KV heads, its cache layer %d has %d", m->path, l,
                            L->n_head_kv, L->kv_src, m->layers[L->kv_src].n_head_kv);
        }
        if (L->n_head_kv < 1 || m->n_head % L->n_head_kv)
            return g4_error(err, NULL, "%s: layer %d: head_count_kv %d does not divide head_count %d", m->path, l, L->n_head_kv, m->n_head);
        if (L->n_ff < 1) return g4_error(err, NULL, "%s: layer %d: feed_forward_length must be positive", m->path, l);
    }
    return 0;
}

static int load_tensors(gemma4_model *m, char *err) {
    const int64_t d = m->n_embd, V = m->n_vocab, P = m->n_embd_per_layer, NL = m->n_layer;
    int rc = 0;
    rc = rc ? rc : bind_mat(m, "token_embd.weight", true, d, V, 0, &m->token_embd, NULL, err);
    rc = rc ? rc : bind_mat(m, "output.weight", false, d, V, 0, &m->output, NULL, err);
    if (!m->output.data) m->output = m->token_embd; /* tied head, unscaled */
    rc = rc ? rc : bind_vec(m, "output_norm.weight", true, d, &m->output_norm, err);
    bool any_full = false;
    int64_t full_head_dim = 0;
    for (int32_t l = 0; l < m->n_layer; l++)
        if (!m->layers[l].swa) any_full = true, full_head_dim = m->layers[l].head_dim;
    if (any_full) rc = rc ? rc : bind_vec(m, "rope_freqs.weight", true, full_head_dim / 2, &m->rope_freqs, err);
    if (P) {
        rc = rc ? rc : bind_mat(m, "per_layer_token_embd.weight", true, P * NL, V, 0, &m->per_layer_token_embd, NULL, err);
        rc = rc ? rc : bind_mat(m, "per_layer_model_proj.weight", true, d, P * NL, 0, &m->per_layer_model_proj, NULL, err);
        rc = rc ? rc : bind_vec(m, "per_layer_proj_norm.weight", true, P, &m->per_layer_proj_norm, err);
    }
    for (int32_t l = 0; l < m->n_layer && !rc; l++) {
        layer *L = &m->layers[l];
        const int64_t q_dim = (int64_t)m->n_head * L->head_dim, kv_dim = (int64_t)L->n_head_kv * L->head_dim;
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
        rc = rc ? rc : bind_vec(m, NAME("attn_norm.weight"), true, d, &L->attn_norm, err);
        rc = rc ? rc : bind_mat(m, NAME("attn_q.weight"), true, d, q_dim, 0, &L->attn_q, NULL, err);
        rc = rc ? rc : bind_vec(m, NAME("attn_q_norm.weight"), true, L->head_dim, &L->attn_q_norm, err);
        if (L->has_kv) { /* the shared tail's K/V tensors, if an old file has them, are ignored */
            rc = rc ? rc : bind_mat(m, NAME("attn_k.weight"), true, d, kv_dim, 0, &L->attn_k, NULL, err);
            rc = rc ? rc : bind_mat(m, NAME("attn_v.weight"), false, d, kv_dim, 0, &L->attn_v, NULL, err);
            rc = rc ? rc : bind_vec(m, NAME("attn_k_norm.weight"), true, L->head_dim, &L->attn_k_norm, err);
        }
        rc = rc ? rc : bind_mat(m, NAME("attn_output.weight"), true, q_dim, d, 0, &L->attn_output, NULL, err);
        rc = rc ? rc : bind_vec(m, NAME("post_attention_norm.weight"), true, d, &L->post_attention_norm, err);
        rc = rc ? rc : bind_vec(m, NAME("ffn_norm.weight"), true, d, &L->ffn_norm, err);
        rc = rc ? rc : bind_mat(m, NAME("ffn_gate.weight"), true, d, L->n_ff, 0, &L->ffn_gate, NULL, err);
        rc = rc ? rc : bind_mat(m, NAME("ffn_up.weight"), true, d, L->n_ff, 0, &L->ffn_up, NULL, err);
        rc = rc ? rc : bind_mat(m, NAME("ffn_down.weight"), true, L->n_ff, d, 0, &L->ffn_down, NULL, err);
        rc = rc ? rc : bind_vec(m, NAME("post_ffw_norm.weight"), true, d, &L->post_ffw_norm, err);
        const float *out_scale = NULL;
        rc = rc ? rc : bind_vec(m, NAME("layer_output_scale.weight"), false, 1, &out_scale, err);
        L->out_scale = out_scale ? out_scale[0] : 1.0f;
        L->moe = gguf_find_tensor(m->gguf, NAME("ffn_gate_inp.weight")) != NULL;
        if (L->moe && !rc) {
            const int64_t E = m->n_expert, Fe = m->n_ff_exp;
            if (!E) return g4_error(err, NULL, "%s: layer %d has a router but expert_count is 0", m->path, l);
            rc = rc ? rc : bind_mat(m, NAME("ffn_gate_inp.weight"), true, d, E, 0, &L->ffn_gate_inp, NULL, err);
            rc = rc ? rc : bind_vec(m, NAME("ffn_gate_inp.scale"), true, d, &L->ffn_gate_inp_scale, err);
            rc = rc ? rc : bind_vec(m, NAME("pre_ffw_norm_2.weight"), true, d, &L->pre_ffw_norm_2, err);
            rc = rc ? rc : bind_vec(m, NAME("post_ffw_norm_1.weight"), true, d, &L->post_ffw_norm_1, err);
            rc = rc ? rc : bind_vec(m, NAME("post_ffw_norm_2.weight"), true, d, &L->post_ffw_norm_2, err);
            rc = rc ? rc : bind_vec(m, NAME("ffn_down_exps.scale"), false, E, &L->down_exps_scale, err);
            rc = rc ? rc : bind_mat(m, NAME("ffn_down_exps.weight"), true, Fe, d, E, &L->down_exps, &L->down_exps_stride, err);
            if (gguf_find_tensor(m->gguf, NAME("ffn_gate_up_exps.weight"))) {
                /* fused: each expert's first Fe rows are the gate, the next Fe the up projection */
                rc = rc ? rc : bind_mat(m, n, true, d, 2 * Fe, E, &L->gate_exps, &L->gate_exps_stride, err);
                if (!rc) {
                    L->gate_exps.n_out = Fe;
                    L->up_exps = L->gate_exps;
                    L->up_exps.data = (const char *)L->gate_exps.data + (size_t)Fe * L->gate_exps.row_bytes;
                    L->up_exps_stride = L->gate_exps_stride;
                }
            } else {
                rc = rc ? rc : bind_mat(m, NAME("ffn_gate_exps.weight"), true, d, Fe, E, &L->gate_exps, &L->gate_exps_stride, err);
                rc = rc ? rc : bind_mat(m, NAME("ffn_up_exps.weight"), true, d, Fe, E, &L->up_exps, &L->up_exps_stride, err);
            }
        }
        if (P) {
            rc = rc ? rc : bind_mat(m, NAME("inp_gate.weight"), true, d, P, 0, &L->inp_gate, NULL, err);
            rc = rc ? rc : bind_mat(m, NAME("proj.weight"), true, P, d, 0, &L->proj, NULL, err);
            rc = rc ? rc : bind_vec(m, NAME("post_norm.weight"), true, d, &L->post_norm, err);
        }
#undef NAME
    }
    return rc;
}

gemma4_model *gemma4_load(const char *path, char *err) {
    gemma4_model *m = calloc(1, sizeof *m);
    if (!m) return g4_error(err, NULL, "%s: out of memory", path), NULL;
    m->path = strdup(path);
    m->gguf = gguf_open(path, err);
    if (!m->path || !m->gguf) goto fail;
    m->vocab = g4_vocab_load(m->gguf, err);
    if (!m->vocab) goto fail;
    m->n_vocab = g4_vocab_size(m->vocab);
    int32_t *tmp = malloc(3 * G4_MAX_LAYERS * sizeof *tmp);
    if (!tmp) goto fail;
    int rc = load_hparams(m, tmp, tmp + G4_MAX_LAYERS, tmp + 2 * G4_MAX_LAYERS, err);
    free(tmp);
    if (rc || load_tensors(m, err) || repack_weights(m, err)) goto fail;
    return m;
fail:
    gemma4_model_free(m);
    return NULL;
}

void gemma4_model_free(gemma4_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    g4_vocab_free(m->vocab);
    gguf_close(m->gguf);
    free(m->path);
    free(m);
}

const g4_vocab *gemma4_model_vocab(const gemma4_model *m) { return m->vocab; }
const gguf_file *gemma4_model_gguf(const gemma4_model *m) { return m->gguf; }
int32_t gemma4_n_vocab(const gemma4_model *m) { return m->n_vocab; }
int32_t gemma4_n_ctx_train(const gemma4_model *m) { return m->n_ctx_train; }

const char *gemma4_variant(const gemma4_model *m) {
    switch (m->n_layer) { /* llama.cpp names the type by block count */
    case 35: return "E2B";
    case 42: return "E4B";
    case 30: return "26B-A4B";
    case 60: return "31B";
    default: return "unknown";
    }
}

bool gemma4_empty_thought_channel(const gemma4_model *m) { return m->n_embd_per_layer == 0; }

void gemma4_model_info(const gemma4_model *m, gemma4_info *info) {
    *info = (gemma4_info){
        .n_layer = m->n_layer, .n_embd = m->n_embd, .n_head = m->n_head, .n_vocab = m->n_vocab,
        .n_ctx_train = m->n_ctx_train, .n_swa = m->n_swa, .n_embd_per_layer = m->n_embd_per_layer,
        .n_expert = m->n_expert, .n_expert_used = m->n_expert_used, .n_ff_exp = m->n_ff_exp,
        .n_kv_shared = m->n_layer - m->n_kv_from_start, .rms_eps = m->rms_eps, .softcap = m->softcap,
    };
    for (int64_t i = 0; i < gguf_n_tensors(m->gguf); i++) info->weight_bytes += gguf_tensor_at(m->gguf, i)->nbytes;
    for (int32_t l = 0; l < m->n_layer; l++) {
        gemma4_layer_info li;
        gemma4_layer_info_get(m, l, &li);
        info->kv_bytes_per_token += li.kv_bytes_per_token;
    }
}

void gemma4_layer_info_get(const gemma4_model *m, int32_t il, gemma4_layer_info *info) {
    const layer *L = &m->layers[il];
    *info = (gemma4_layer_info){
        .swa = L->swa, .has_kv = L->has_kv, .moe = L->moe, .has_v = m->layers[L->kv_src].attn_v.data != NULL, .kv_src = L->kv_src,
        .head_dim = L->head_dim, .n_head_kv = L->n_head_kv, .n_rot = L->n_rot, .n_ff = L->n_ff, .rope_base = L->rope_base,
        .out_scale = L->out_scale,
        .kv_bytes_per_token = L->has_kv ? 2 * (uint64_t)L->n_head_kv * (uint64_t)L->head_dim * sizeof(float) : 0,
    };
}

/* ---------------------------------------------------------------- session */

/* Tokens an MoE layer routes at a time: bounds its expert batch buffers
 * (MOE_CHUNK * experts used rows) while still giving each expert a batch. */
#define MOE_CHUNK 64

struct gemma4_session {
    const gemma4_model *m;
    int32_t n_ubatch;
    enum g4_type type_k, type_v;
    g4_pool *pool;
    /* K (after norm and RoPE) and V (after its unweighted norm) of every
     * sequence, in pages (kvcache.h) */
    g4_kv_cache *kv;
    /* the ubatch being evaluated: each token's sequence and position */
    int32_t *tok_seq, *tok_pos, *out_rows;
    int32_t *seq_n; /* per sequence: tokens of the call (validation) */
    /* activations for one ubatch of up to n_ubatch tokens */
    float *x, *a, *r, *q, *k, *v, *o, *t0, *t1, *t3, *ple;
    float *scores; /* per thread: attention scores, grown with the longest sequence */
    size_t scores_per_thread;
    /* MoE layers, per chunk of MOE_CHUNK tokens: each (token, choice)'s
     * expert and weight, and its row in the expert batches below */
    int32_t *moe_sel, *moe_row;
    float *moe_w;
    float *moe_x, *moe_g, *moe_u, *moe_y; /* expert inputs, gate, up, outputs: rows grouped by expert */
};

static int64_t max_q_dim(const gemma4_model *m) {
    int64_t q = 0;
    for (int32_t l = 0; l < m->n_layer; l++)
        if ((int64_t)m->n_head * m->layers[l].head_dim > q) q = (int64_t)m->n_head * m->layers[l].head_dim;
    return q;
}

static int64_t max_ff(const gemma4_model *m) {
    int64_t f = 2 * (int64_t)m->n_ff_exp;
    for (int32_t l = 0; l < m->n_layer; l++)
        if (m->layers[l].n_ff > f) f = m->layers[l].n_ff;
    return f;
}

#define DEFAULT_PAGE_SIZE 32

/* The cache geometry of a model: every layer that owns a cache gets rows of
 * n_head_kv * head_dim values; the KV-shared tail gets none. */
static g4_kv_cache *kv_new(const gemma4_model *m, const gemma4_session_params *p, int32_t n_ctx, char *err) {
    int32_t width[G4_MAX_LAYERS];
    bool swa[G4_MAX_LAYERS];
    const enum g4_type tk = p ? p->type_k : G4_TYPE_F32, tv = p ? p->type_v : G4_TYPE_F32;
    for (int32_t l = 0; l < m->n_layer; l++) {
        const layer *L = &m->layers[l];
        width[l] = L->has_kv ? L->n_head_kv * L->head_dim : 0;
        swa[l] = L->swa;
        /* attention converts one head at a time, so a head must be whole blocks */
        const g4_type_traits *tr[] = {g4_type_info(tk), g4_type_info(tv)};
        for (int i = 0; i < 2; i++)
            if (tr[i] && L->head_dim % tr[i]->blck_size)
                return g4_error(err, NULL, "%s: layer %d: head dim %d is not a multiple of the %s block (%lld)", m->path, l,
                            L->head_dim, tr[i]->name, (long long)tr[i]->blck_size), NULL;
    }
    const g4_kv_params kp = {
        .n_layer = m->n_layer, .width = width, .swa = swa, .n_swa = m->n_swa,
        .page_size = p && p->page_size > 0 ? p->page_size : DEFAULT_PAGE_SIZE, .type_k = tk, .type_v = tv,
        .n_seq = p && p->n_seq > 0 ? p->n_seq : 1, .n_ctx = n_ctx, .max_bytes = p ? p->kv_max_bytes : 0,
    };
    g4_kv_cache *kv = g4_kv_new(&kp, err);
    if (!kv) {
        char why[G4_ERR_LEN];
        snprintf(why, sizeof why, "%s", err);
        g4_error(err, NULL, "%s: %s", m->path, why);
    }
    return kv;
}

int gemma4_kv_plan_get(const gemma4_model *m, const gemma4_session_params *p, int64_t n_pos, gemma4_kv_plan *plan,
                       char *err) {
    g4_kv_cache *kv = kv_new(m, p, n_pos > INT32_MAX ? INT32_MAX : (int32_t)(n_pos > 0 ? n_pos : 1), err);
    if (!kv) return -1;
    g4_kv_usage u;
    g4_kv_usage_get(kv, &u);
    *plan = (gemma4_kv_plan){.page_size = p && p->page_size > 0 ? p->page_size : DEFAULT_PAGE_SIZE, .n_swa = m->n_swa,
                             .seq_bytes = g4_kv_seq_bytes(kv, n_pos)};
    for (int k = 0; k < G4_KV_KINDS; k++) plan->bytes_per_token[k] = g4_kv_bytes_per_token(kv, k), plan->page_bytes[k] = u.page_bytes[k];
    g4_kv_free(kv);
    return 0;
}

gemma4_session *gemma4_session_new(const gemma4_model *m, const gemma4_session_params *p, char *err) {
    gemma4_session *s = calloc(1, sizeof *s);
    if (!s) return g4_error(err, NULL, "%s: out of memory", m->path), NULL;
    s->m = m;
    const int32_t n_ctx = p && p->n_ctx > 0 ? p->n_ctx : (m->n_ctx_train < 4096 ? m->n_ctx_train : 4096);
    s->n_ubatch = p && p->n_ubatch > 0 ? p->n_ubatch : 512;
    if (s->n_ubatch > n_ctx) s->n_ubatch = n_ctx;
    s->type_k = p ? p->type_k : G4_TYPE_F32;
    s->type_v = p ? p->type_v : G4_TYPE_F32;
    if (!(s->kv = kv_new(m, p, n_ctx, err))) return gemma4_session_free(s), NULL;
    s->pool = g4_pool_create(p ? p->n_threads : 0);
    const size_t T = (size_t)s->n_ubatch, d = (size_t)m->n_embd, qd = (size_t)max_q_dim(m), ff = (size_t)max_ff(m);
    const size_t ple = (size_t)m->n_embd_per_layer * (size_t)m->n_layer;
    bool ok = s->pool != NULL;
    float **bufs[] = {&s->x, &s->a, &s->r, &s->q, &s->k, &s->v, &s->o, &s->t0, &s->t1, &s->t3, &s->ple};
    size_t wide = ff > d ? ff : d; /* t0 and t1 hold FFN rows and a per-layer embedding row */
    if (ple > wide) wide = ple;
    const size_t sizes[] = {d, d, d, qd, qd, qd, qd, wide, wide, d, ple ? ple : 1};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0] && ok; i++) ok = (*bufs[i] = malloc(T * sizes[i] * sizeof(float))) != NULL;
    if (m->n_expert && ok) {
        const size_t slots = (size_t)MOE_CHUNK * (size_t)m->n_expert_used, fe = (size_t)m->n_ff_exp;
        ok = (s->moe_sel = malloc(slots * sizeof *s->moe_sel)) && (s->moe_row = malloc(slots * sizeof *s->moe_row)) &&
             (s->moe_w = malloc(slots * sizeof *s->moe_w)) && (s->moe_x = malloc(slots * d * sizeof(float))) &&
             (s->moe_g = malloc(slots * fe * sizeof(float))) && (s->moe_u = malloc(slots * fe * sizeof(float))) &&
             (s->moe_y = malloc(slots * d * sizeof(float)));
    }
    ok = ok && (s->tok_seq = malloc(T * sizeof *s->tok_seq)) && (s->tok_pos = malloc(T * sizeof *s->tok_pos)) &&
         (s->out_rows = malloc(T * sizeof *s->out_rows)) &&
         (s->seq_n = malloc((size_t)g4_kv_n_seq(s->kv) * sizeof *s->seq_n));
    if (!ok) {
        gemma4_session_free(s);
        return g4_error(err, NULL, "%s: out of memory for a session", m->path), NULL;
    }
    return s;
}

void gemma4_session_free(gemma4_session *s) {
    if (!s) return;
    g4_kv_free(s->kv);
    float *bufs[] = {s->x,     s->a,     s->r,     s->q,     s->k,     s->v,     s->o,    s->t0,
                     s->t1,    s->t3,    s->ple,   s->scores, s->moe_w, s->moe_x, s->moe_g, s->moe_u,
                     s->moe_y};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->tok_seq);
    free(s->tok_pos);
    free(s->out_rows);
    free(s->seq_n);
    free(s->moe_sel);
    free(s->moe_row);
    g4_pool_free(s->pool);
    free(s);
}

int32_t gemma4_session_n_ctx(const gemma4_session *s) { return g4_kv_n_ctx(s->kv); }
int32_t gemma4_session_n_seq(const gemma4_session *s) { return g4_kv_n_seq(s->kv); }
int32_t gemma4_session_pos(const gemma4_session *s) { return g4_kv_len(s->kv, 0); }
int32_t gemma4_session_truncate(gemma4_session *s, int32_t n_keep) { return g4_kv_truncate(s->kv, 0, n_keep); }

static bool bad_seq(const gemma4_session *s, int32_t seq) { return seq < 0 || seq >= g4_kv_n_seq(s->kv); }

int32_t gemma4_seq_pos(const gemma4_session *s, int32_t seq) { return bad_seq(s, seq) ? -1 : g4_kv_len(s->kv, seq); }
const int32_t *gemma4_seq_tokens(const gemma4_session *s, int32_t seq) {
    return bad_seq(s, seq) ? NULL : g4_kv_tokens(s->kv, seq);
}
int32_t gemma4_seq_common_prefix(const gemma4_session *s, int32_t seq, const int32_t *tokens, int32_t n) {
    return bad_seq(s, seq) ? -1 : g4_kv_common_prefix(s->kv, seq, tokens, n);
}
int32_t gemma4_seq_truncate(gemma4_session *s, int32_t seq, int32_t n_keep) {
    return bad_seq(s, seq) ? -1 : g4_kv_truncate(s->kv, seq, n_keep);
}
int gemma4_seq_remove(gemma4_session *s, int32_t seq) { return bad_seq(s, seq) ? -1 : (g4_kv_truncate(s->kv, seq, 0), 0); }
int gemma4_seq_checkpoint(gemma4_session *s, int32_t seq) { return bad_seq(s, seq) ? -1 : (g4_kv_checkpoint(s->kv, seq), 0); }
int gemma4_seq_fork(gemma4_session *s, int32_t src, int32_t dst, char *err) {
    if (bad_seq(s, src) || bad_seq(s, dst))
        return g4_error(err, NULL, "%s: fork %d -> %d: sequence ids are 0..%d", s->m->path, src, dst, g4_kv_n_seq(s->kv) - 1);
    return g4_kv_fork(s->kv, src, dst, err);
}
void gemma4_kv_usage(const gemma4_session *s, g4_kv_usage *u) { g4_kv_usage_get(s->kv, u); }

/* ---------------------------------------------------------------- debugging aid */

static int dump_enabled = -1;

/* GGML-style node names: "Qcur-3" for layer 3, "inp_scaled" for globals. */
static void dump(const char *name, int32_t il, const float *x, int64_t n_tok, int64_t n) {
    if (dump_enabled < 0) dump_enabled = getenv("GEMMA4_DUMP") && *getenv("GEMMA4_DUMP") != '0';
    if (!dump_enabled) return;
    for (int64_t t = 0; t < n_tok; t++) {
        const float *v = x + t * n;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < n; i++) sum += v[i], sq += (double)v[i] * v[i];
        char nm[64];
        if (il >= 0) snprintf(nm, sizeof nm, "%s-%d", name, il);
        else snprintf(nm, sizeof nm, "%s", name);
        fprintf(stderr, "%-24s t=%-4lld n=%-6lld sum=%-14.6g rms=%-12.6g [%.6g %.6g %.6g %.6g]\n", nm, (long long)t,
                (long long)n, sum, sqrt(sq / (double)n), v[0], n > 1 ? v[1] : 0, n > 2 ? v[2] : 0, n > 3 ? v[3] : 0);
    }
}

/* ---------------------------------------------------------------- forward pass */

static void matmul(gemma4_session *s, const g4_weight *w, const float *x, int64_t n_tok, float *y) {
    g4_matmul(w, x, n_tok, y, s->pool);
}

/* Element-wise work long enough to matter at decode (the GELU gate over
 * the FFN width, the soft-cap over the vocabulary) in equal slices on the
 * pool's threads, so the other threads do not idle through it. */
typedef struct {
    float *y;
    const float *a, *b;
    int64_t n;
    float cap; /* soft-cap: y = cap * tanh(y / cap) */
} elementwise_job;

static void geglu_slice(void *arg, int ith, int nth) {
    const elementwise_job *j = arg;
    const int64_t lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth;
    g4_geglu(j->y + lo, j->a + lo, j->b + lo, hi - lo);
}

static void softcap_slice(void *arg, int ith, int nth) {
    const elementwise_job *j = arg;
    const float inv = 1.0f / j->cap;
    for (int64_t i = j->n * ith / nth; i < j->n * (ith + 1) / nth; i++) j->y[i] = tanhf(j->y[i] * inv) * j->cap;
}

static void geglu(gemma4_session *s, float *y, const float *g, const float *u, int64_t n) {
    elementwise_job j = {y, g, u, n, 0.0f};
    g4_pool_run(s->pool, geglu_slice, &j);
}

static void rms_norm_rows(float *y, const float *x, const float *w, int64_t n_rows, int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) g4_rms_norm(y + r * n, x + r * n, w, n, eps);
}

typedef struct attn_job {
    gemma4_session *s;
    const layer *L;
    int32_t n_tok;
} attn_job;

/* Causal attention over the token's own sequence, one (token, KV head) pair
 * at a time, so the query heads that share the KV head read each cached row
 * once (grouped-query attention); the pairs are spread over the pool.
 * Cached rows are read a page at a time. Scale is 1: the q/k norms replace
 * it. scores holds one row of span values per query head of the group. */
static void attention_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    gemma4_session *s = j->s;
    const gemma4_model *m = s->m;
    const layer *L = j->L;
    const g4_kernels *k = g4_kernels_active();
    const int32_t H = m->n_head, Hkv = L->n_head_kv, hd = L->head_dim, group = H / Hkv;
    const int64_t q_row = (int64_t)H * hd;
    float *scores = s->scores + (size_t)ith * s->scores_per_thread;
    for (int64_t job = ith; job < (int64_t)j->n_tok * Hkv; job += nth) {
        const int32_t t = (int32_t)(job / Hkv), g = (int32_t)(job % Hkv);
        const int32_t seq = s->tok_seq[t], pos = s->tok_pos[t];
        /* sliding layers see the current token and the W-1 before it */
        const int32_t lo = L->swa && pos - m->n_swa + 1 > 0 ? pos - m->n_swa + 1 : 0, span = pos - lo + 1;
        const float *q = s->q + t * q_row + (int64_t)g * group * hd;
        const size_t k_off = g4_row_size(s->type_k, (int64_t)g * hd), v_off = g4_row_size(s->type_v, (int64_t)g * hd);
        int32_t n;
        size_t stride;
        for (int32_t p = lo; p <= pos; p += n) {
            const char *rows = g4_kv_rows(s->kv, seq, L->kv_src, p, false, &n, &stride);
            if (n > pos - p + 1) n = pos - p + 1;
            k->kv_scores[s->type_k](rows + k_off, stride, n, hd, q, group, scores + (p - lo), span);
        }
        for (int32_t h = 0; h < group; h++) g4_softmax(scores + (size_t)h * span, span);
        float *o = s->o + t * q_row + (int64_t)g * group * hd;
        memset(o, 0, (size_t)group * hd * sizeof *o);
        for (int32_t p = lo; p <= pos; p += n) {
            const char *rows = g4_kv_rows(s->kv, seq, L->kv_src, p, true, &n, &stride);
            if (n > pos - p + 1) n = pos - p + 1;
            k->kv_accum[s->type_v](rows + v_off, stride, n, hd, scores + (p - lo), group, span, o);
        }
    }
}

/* §4.4: attention block; reads s->x, leaves r = x + post_attention_norm(attn). */
static void attention_block(gemma4_session *s, int32_t il, int32_t n_tok) {
    const gemma4_model *m = s->m;
    const layer *L = &m->layers[il];
    const int64_t d = m->n_embd, hd = L->head_dim, H = m->n_head, Hkv = L->n_head_kv;
    const float eps = m->rms_eps;
    const float *ff = L->swa ? NULL : m->rope_freqs;

    rms_norm_rows(s->a, s->x, L->attn_norm, n_tok, d, eps);
    dump("attn_norm", il, s->a, n_tok, d);

    /* the Q, K and V projections in one dispatch */
    g4_matmul_job proj[3] = {{&L->attn_q, s->a, n_tok, s->q}};
    int n_proj = 1;
    if (L->has_kv) proj[n_proj++] = (g4_matmul_job){&L->attn_k, s->a, n_tok, s->k};
    if (L->has_kv && L->attn_v.data) proj[n_proj++] = (g4_matmul_job){&L->attn_v, s->a, n_tok, s->v};
    g4_matmul_many(proj, n_proj, s->pool);
    dump("Qcur", il, s->q, n_tok, H * hd);
    rms_norm_rows(s->q, s->q, L->attn_q_norm, n_tok * H, hd, eps);
    dump("Qcur_normed", il, s->q, n_tok, H * hd);
    for (int32_t t = 0; t < n_tok; t++)
        for (int64_t h = 0; h < H; h++) g4_rope_neox(s->q + (t * H + h) * hd, L->n_rot, s->tok_pos[t], L->rope_base, ff);
    dump("Qcur_pos", il, s->q, n_tok, H * hd);

    if (L->has_kv) {
        dump("Kcur", il, s->k, n_tok, Hkv * hd);
        if (!L->attn_v.data) memcpy(s->v, s->k, (size_t)n_tok * (size_t)(Hkv * hd) * sizeof(float)); /* K = V layers: raw K */
        dump("Vcur", il, s->v, n_tok, Hkv * hd);
        rms_norm_rows(s->k, s->k, L->attn_k_norm, n_tok * Hkv, hd, eps);
        dump("Kcur_normed", il, s->k, n_tok, Hkv * hd);
        rms_norm_rows(s->v, s->v, NULL, n_tok * Hkv, hd, eps);
        dump("Vcur_normed", il, s->v, n_tok, Hkv * hd);
        for (int32_t t = 0; t < n_tok; t++)
            for (int64_t h = 0; h < Hkv; h++) g4_rope_neox(s->k + (t * Hkv + h) * hd, L->n_rot, s->tok_pos[t], L->rope_base, ff);
        dump("Kcur_pos", il, s->k, n_tok, Hkv * hd);
        for (int32_t t = 0; t < n_tok; t++)
            g4_kv_store(s->kv, s->tok_seq[t], il, s->tok_pos[t], s->k + t * Hkv * hd, s->v + t * Hkv * hd);
    }

    attn_job job = {s, L, n_tok};
    g4_pool_run(s->pool, attention_task, &job);
    dump("kqv_out", il, s->o, n_tok, H * hd);

    matmul(s, &L->attn_output, s->o, n_tok, s->t3);
    rms_norm_rows(s->t3, s->t3, L->post_attention_norm, n_tok, d, eps);
    dump("attn_post_norm", il, s->t3, n_tok, d);
    for (int64_t i = 0; i < n_tok * d; i++) s->r[i] = s->x[i] + s->t3[i];
    dump("attn_out", il, s->r, n_tok, d);
}

/* GELU-gated MLP: out = down(gelu(gate x) * up x), for n_tok rows of x. */
static void gated_mlp(gemma4_session *s, const g4_weight *gate, const g4_weight *up, const g4_weight *down,
                      const float *x, int64_t n_tok, float *out) {
    const int64_t f = gate->n_out;
    const g4_matmul_job gate_up[2] = {{gate, x, n_tok, s->t0}, {up, x, n_tok, s->t1}};
    g4_matmul_many(gate_up, 2, s->pool);
    geglu(s, s->t0, s->t0, s->t1, n_tok * f);
    matmul(s, down, s->t0, n_tok, out);
}

static g4_weight expert(const g4_weight *w, size_t stride, int32_t e) {
    g4_weight x = *w;
    x.data = (const char *)w->data + (size_t)e * stride;
    return x;
}

/* §4.6 router for one token: on the post-attention residual r, softmax over
 * all experts, top-k, renormalised weights. */
static void route(const gemma4_model *m, const layer *L, int32_t il, const float *r, int32_t *sel, float *w) {
    const int64_t d = m->n_embd, E = m->n_expert, K = m->n_expert_used;
    float z[d], probs[E];
    g4_rms_norm(z, r, NULL, d, m->rms_eps);
    const float inv_sqrt_d = 1.0f / sqrtf((float)d);
    for (int64_t i = 0; i < d; i++) z[i] = z[i] * inv_sqrt_d * L->ffn_gate_inp_scale[i];
    g4_matmul(&L->ffn_gate_inp, z, 1, probs, NULL);
    dump("ffn_moe_logits", il, probs, 1, E);
    g4_softmax(probs, E);
    dump("ffn_moe_probs", il, probs, 1, E);
    float wsum = 0.0f;
    for (int64_t k = 0; k < K; k++) { /* descending probability, lowest index first on ties */
        int32_t best = -1;
        for (int32_t e = 0; e < E; e++) {
            bool taken = false;
            for (int64_t j = 0; j < k; j++) taken |= sel[j] == e;
            if (!taken && (best < 0 || probs[e] > probs[best])) best = e;
        }
        sel[k] = best;
        w[k] = probs[best];
        wsum += w[k];
    }
    if (wsum < 6.103515625e-5f) wsum = 6.103515625e-5f;
    for (int64_t k = 0; k < K; k++) w[k] /= wsum;
    dump("ffn_moe_weights_norm", il, w, 1, K);
}

/* §4.6 expert branch for tokens [t0, t0 + n), n <= MOE_CHUNK: routes each
 * token, runs every chosen expert once on the batch of tokens routed to it
 * (all experts' gate and up in one dispatch, their down in another), then
 * acc[t] = sum over the token's choices, in choice order, of
 * weight * expert scale * expert output. */
static void moe_chunk(gemma4_session *s, const layer *L, int32_t il, const float *r, const float *e_in, int32_t n,
                      float *acc) {
    const gemma4_model *m = s->m;
    const int64_t d = m->n_embd, E = m->n_expert, K = m->n_expert_used, Fe = m->n_ff_exp;
    for (int32_t t = 0; t < n; t++) route(m, L, il, r + t * d, s->moe_sel + t * K, s->moe_w + t * K);

    g4_weight gate[E], up[E], down[E];
    g4_matmul_job gate_up[2 * E], downs[E];
    int32_t n_jobs = 0, rows = 0;
    for (int32_t e = 0; e < E; e++) {
        const int32_t first = rows;
        for (int32_t i = 0; i < n * K; i++) /* gather the tokens routed to e */
            if (s->moe_sel[i] == e) {
                memcpy(s->moe_x + (size_t)rows * d, e_in + (size_t)(i / K) * d, (size_t)d * sizeof(float));
                s->moe_row[i] = rows++;
            }
        if (rows == first) continue;
        gate[n_jobs] = expert(&L->gate_exps, L->gate_exps_stride, e);
        up[n_jobs] = expert(&L->up_exps, L->up_exps_stride, e);
        down[n_jobs] = expert(&L->down_exps, L->down_exps_stride, e);
        const float *x = s->moe_x + (size_t)first * d;
        gate_up[2 * n_jobs] = (g4_matmul_job){&gate[n_jobs], x, rows - first, s->moe_g + (size_t)first * Fe};
        gate_up[2 * n_jobs + 1] = (g4_matmul_job){&up[n_jobs], x, rows - first, s->moe_u + (size_t)first * Fe};
        downs[n_jobs] = (g4_matmul_job){&down[n_jobs], s->moe_g + (size_t)first * Fe, rows - first, s->moe_y + (size_t)first * d};
        n_jobs++;
    }
    g4_matmul_many(gate_up, 2 * n_jobs, s->pool);
    geglu(s, s->moe_g, s->moe_g, s->moe_u, (int64_t)rows * Fe);
    g4_matmul_many(downs, n_jobs, s->pool);

    for (int32_t t = 0; t < n; t++)
        for (int64_t k = 0; k < K; k++) {
            const int32_t e = s->moe_sel[t * K + k];
            const float *y = s->moe_y + (size_t)s->moe_row[t * K + k] * d;
            const float scale = L->down_exps_scale ? L->down_exps_scale[e] : 1.0f, w = s->moe_w[t * K + k];
            float *a = acc + t * d;
            for (int64_t i = 0; i < d; i++) a[i] = k == 0 ? y[i] * scale * w : a[i] + y[i] * scale * w;
        }
}

/* §4.5 / §4.6: feed-forward on r; leaves x = r + post_ffw_norm(ffn). */
static void ffn_block(gemma4_session *s, int32_t il, int32_t n_tok) {
    const gemma4_model *m = s->m;
    const layer *L = &m->layers[il];
    const int64_t d = m->n_embd;
    const float eps = m->rms_eps;

    rms_norm_rows(s->a, s->r, L->ffn_norm, n_tok, d, eps);
    dump(L->moe ? "ffn_norm_1" : "ffn_norm", il, s->a, n_tok, d);
    gated_mlp(s, &L->ffn_gate, &L->ffn_up, &L->ffn_down, s->a, n_tok, s->t3);
    if (L->moe) {
        rms_norm_rows(s->t3, s->t3, L->post_ffw_norm_1, n_tok, d, eps);
        dump("ffn_mlp", il, s->t3, n_tok, d);
        rms_norm_rows(s->a, s->r, L->pre_ffw_norm_2, n_tok, d, eps);
        dump("ffn_norm_2", il, s->a, n_tok, d);
        for (int32_t t = 0; t < n_tok; t += MOE_CHUNK) { /* x is free until the residual add below */
            const int32_t n = n_tok - t < MOE_CHUNK ? n_tok - t : MOE_CHUNK;
            moe_chunk(s, L, il, s->r + t * d, s->a + t * d, n, s->x + t * d);
        }
        rms_norm_rows(s->x, s->x, L->post_ffw_norm_2, n_tok, d, eps);
        dump("ffn_moe", il, s->x, n_tok, d);
        for (int64_t i = 0; i < n_tok * d; i++) s->t3[i] += s->x[i];
        dump("ffn_moe_combined", il, s->t3, n_tok, d);
    } else {
        dump("ffn_out", il, s->t3, n_tok, d);
    }
    rms_norm_rows(s->t3, s->t3, L->post_ffw_norm, n_tok, d, eps);
    dump("ffn_post_norm", il, s->t3, n_tok, d);
    for (int64_t i = 0; i < n_tok * d; i++) s->x[i] = s->r[i] + s->t3[i];
}

/* §4.2: per-layer inputs S[t][l] for every layer, from the scaled embedding. */
static void per_layer_inputs(gemma4_session *s, const int32_t *tokens, int32_t n_tok) {
    const gemma4_model *m = s->m;
    const int64_t d = m->n_embd, P = m->n_embd_per_layer, NL = m->n_layer, W = P * NL;
    matmul(s, &m->per_layer_model_proj, s->x, n_tok, s->ple);
    const float inv_sqrt_d = 1.0f / sqrtf((float)d), sqrt_p = sqrtf((float)P), inv_sqrt2 = 1.0f / sqrtf(2.0f);
    for (int64_t i = 0; i < n_tok * W; i++) s->ple[i] *= inv_sqrt_d;
    dump("per_layer_proj", -1, s->ple, n_tok, W);
    rms_norm_rows(s->ple, s->ple, m->per_layer_proj_norm, n_tok * NL, P, m->rms_eps);
    for (int32_t t = 0; t < n_tok; t++) {
        float *row = s->t0; /* the token's per-layer embedding row */
        g4_dequantize_row(m->per_layer_token_embd.type,
                          (const char *)m->per_layer_token_embd.data + (size_t)tokens[t] * m->per_layer_token_embd.row_bytes,
                          row, W);
        dump("inp_per_layer_selected", -1, row, 1, W);
        for (int64_t i = 0; i < W; i++) s->ple[t * W + i] = (s->ple[t * W + i] + row[i] * sqrt_p) * inv_sqrt2;
    }
    dump("inp_per_layer", -1, s->ple, n_tok, W);
}

/* §4.7: h += post_norm(proj(gelu(inp_gate h) * S_l)). */
static void per_layer_injection(gemma4_session *s, int32_t il, int32_t n_tok) {
    const gemma4_model *m = s->m;
    const layer *L = &m->layers[il];
    const int64_t d = m->n_embd, P = m->n_embd_per_layer, W = P * m->n_layer;
    matmul(s, &L->inp_gate, s->x, n_tok, s->t0);
    for (int32_t t = 0; t < n_tok; t++)
        g4_geglu(s->t0 + t * P, s->t0 + t * P, s->ple + t * W + (int64_t)il * P, P);
    matmul(s, &L->proj, s->t0, n_tok, s->t3);
    rms_norm_rows(s->t3, s->t3, L->post_norm, n_tok, d, m->rms_eps);
    dump("per_layer_embd_out", il, s->t3, n_tok, d);
    for (int64_t i = 0; i < n_tok * d; i++) s->x[i] += s->t3[i];
}

/* One ubatch: token t goes to sequence s->tok_seq[t] at position
 * s->tok_pos[t]. The logits of rows out_rows[0..n_out) are written to out
 * (n_vocab each). */
static void forward(gemma4_session *s, const int32_t *tokens, int32_t n_tok, const int32_t *out_rows, int32_t n_out,
                    float *out) {
    const gemma4_model *m = s->m;
    const int64_t d = m->n_embd;

    /* §4.1 token embedding, scaled by sqrt(d) in f32 */
    const float embd_scale = sqrtf((float)d);
    for (int32_t t = 0; t < n_tok; t++) {
        float *x = s->x + t * d;
        /* t3 is free until the layers: it takes an interleaved row unpacked */
        g4_dequantize_row(m->token_embd.type, g4_weight_row(&m->token_embd, tokens[t], s->t3), x, d);
        for (int64_t i = 0; i < d; i++) x[i] *= embd_scale;
    }
    dump("inp_scaled", -1, s->x, n_tok, d);

    if (m->n_embd_per_layer) per_layer_inputs(s, tokens, n_tok);

    for (int32_t il = 0; il < m->n_layer; il++) {
        const layer *L = &m->layers[il];
        attention_block(s, il, n_tok);
        ffn_block(s, il, n_tok);
        dump("pe_in", il, s->x, n_tok, d);
        if (m->n_embd_per_layer) per_layer_injection(s, il, n_tok);
        for (int64_t i = 0; i < n_tok * d; i++) s->x[i] *= L->out_scale;
        dump("l_out", il, s->x, n_tok, d);
    }

    if (!n_out) return;
    /* §4.8 output head on the rows asked for */
    for (int32_t i = 0; i < n_out; i++) g4_rms_norm(s->a + i * d, s->x + (int64_t)out_rows[i] * d, m->output_norm, d, m->rms_eps);
    dump("result_norm", -1, s->a, n_out, d);
    matmul(s, &m->output, s->a, n_out, out);
    if (m->softcap != 0.0f) {
        elementwise_job j = {out, NULL, NULL, (int64_t)n_out * m->n_vocab, m->softcap};
        g4_pool_run(s->pool, softcap_slice, &j);
    }
    dump("result_output", -1, out, n_out, m->n_vocab);
}

/* Scratch for the scores of the query heads of one KV head at positions up
 * to max_pos. */
static int fit_scores(gemma4_session *s, int32_t max_pos, char *err) {
    int32_t group = 1;
    for (int32_t l = 0; l < s->m->n_layer; l++)
        if (s->m->n_head / s->m->layers[l].n_head_kv > group) group = s->m->n_head / s->m->layers[l].n_head_kv;
    const size_t need = ((size_t)max_pos + 1) * (size_t)group;
    if (need <= s->scores_per_thread) return 0;
    const size_t per = need > 2 * s->scores_per_thread ? need : 2 * s->scores_per_thread;
    float *g = realloc(s->scores, (size_t)g4_pool_size(s->pool) * per * sizeof *g);
    if (!g) return g4_error(err, NULL, "%s: out of memory for attention scores", s->m->path);
    s->scores = g;
    s->scores_per_thread = per;
    return 0;
}

/* gemma4_decode, plus the rows from first_out on among the outputs. */
static int decode(gemma4_session *s, int32_t n, const int32_t *tokens, const int32_t *seq, const bool *want,
                  int32_t first_out, float *logits, char *err) {
    const gemma4_model *m = s->m;
    const int32_t n_seq = g4_kv_n_seq(s->kv);
    if (n < 0) return g4_error(err, NULL, "%s: negative token count %d", m->path, n);
    memset(s->seq_n, 0, (size_t)n_seq * sizeof *s->seq_n);
    for (int32_t i = 0; i < n; i++) {
        const int32_t sq = seq ? seq[i] : 0;
        if (tokens[i] < 0 || tokens[i] >= m->n_vocab)
            return g4_error(err, NULL, "%s: token id %d is outside the vocabulary (0..%d)", m->path, tokens[i], m->n_vocab - 1);
        if (sq < 0 || sq >= n_seq) return g4_error(err, NULL, "%s: sequence id %d is outside 0..%d", m->path, sq, n_seq - 1);
        s->seq_n[sq]++;
    }
    for (int32_t sq = 0; sq < n_seq; sq++)
        if ((int64_t)g4_kv_len(s->kv, sq) + s->seq_n[sq] > g4_kv_n_ctx(s->kv))
            return g4_error(err, NULL, "%s: %d tokens do not fit: %d of %d context positions used", m->path, s->seq_n[sq],
                        g4_kv_len(s->kv, sq), g4_kv_n_ctx(s->kv));
    float *out = logits;
    for (int32_t done = 0; done < n;) {
        const int32_t n_tok = n - done < s->n_ubatch ? n - done : s->n_ubatch;
        int32_t n_out = 0, max_pos = 0;
        memset(s->seq_n, 0, (size_t)n_seq * sizeof *s->seq_n);
        for (int32_t t = 0; t < n_tok; t++) {
            const int32_t i = done + t, sq = seq ? seq[i] : 0;
            s->tok_seq[t] = sq;
            s->tok_pos[t] = g4_kv_len(s->kv, sq) + s->seq_n[sq]++;
            if (s->tok_pos[t] > max_pos) max_pos = s->tok_pos[t];
            if (logits && (i >= first_out || (want && want[i]))) s->out_rows[n_out++] = t;
        }
        int rc = fit_scores(s, max_pos, err);
        for (int32_t sq = 0; sq < n_seq && !rc; sq++) rc = g4_kv_reserve(s->kv, sq, s->seq_n[sq], err);
        if (rc) {
            for (int32_t sq = 0; sq < n_seq; sq++) g4_kv_unreserve(s->kv, sq);
            return -1;
        }
        forward(s, tokens + done, n_tok, s->out_rows, n_out, out);
        for (int32_t t = 0; t < n_tok; t++) g4_kv_advance(s->kv, s->tok_seq[t], tokens + done + t, 1);
        if (out) out += (size_t)n_out * (size_t)m->n_vocab;
        done += n_tok;
    }
    return 0;
}

int gemma4_decode(gemma4_session *s, int32_t n, const int32_t *tokens, const int32_t *seq, const bool *want,
                  float *logits, char *err) {
    return decode(s, n, tokens, seq, want, n, logits, err);
}

int gemma4_eval(gemma4_session *s, const int32_t *tokens, int32_t n, float *logits, bool all_logits, char *err) {
    return decode(s, n, tokens, NULL, NULL, all_logits ? 0 : n - 1, logits, err);
}
