/* Loading a Gemma 4 GGUF: hyperparameters from the gemma4.* keys, every
 * tensor bound by name with the shape the architecture implies, 1-D tensors
 * converted to f32, and the matrices the chosen kernels want interleaved
 * repacked. Also the read-only views of what was loaded (gemma4_model_info). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/repack.h"
#include "model.h"
#include "tokenizer/grammar.h"


/* A u32 key; absent keys take def when not required. */
static int key_u32(const gemma4_model *m, const char *key, bool required, uint32_t def, int32_t *out, char *err) {
    uint32_t v = def;
    int rc = g4_gguf_get_u32(m->gguf, key, &v, err);
    if (rc == GGUF_ETYPE) return -1;
    if (rc == GGUF_ENOKEY && required) return g4_error(err, NULL, "%s: missing key '%s'", m->path, key);
    if (v > INT32_MAX) return g4_error(err, NULL, "%s: key '%s' = %u is out of range", m->path, key, v);
    *out = (int32_t)v;
    return 0;
}

static int key_f32(const gemma4_model *m, const char *key, bool required, float def, float *out, char *err) {
    *out = def;
    int rc = g4_gguf_get_f32(m->gguf, key, out, err);
    if (rc == GGUF_ETYPE) return -1;
    if (rc == GGUF_ENOKEY && required) return g4_error(err, NULL, "%s: missing key '%s'", m->path, key);
    return 0;
}

/* A key that is either a u32 scalar (same value for every layer) or an array
 * of block_count INT32/UINT32/BOOL values (llama.cpp's get_key_or_arr). */
static int key_per_layer(const gemma4_model *m, const char *key, bool required, int32_t def, int32_t *out,
                         char *err) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(m->gguf, key);
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
                            g4_gguf_type_name(kv->arr_type));
            if (out[l] < 0) return g4_error(err, NULL, "%s: key '%s'[%d] = %d is negative", m->path, key, l, out[l]);
        }
        return 0;
    }
    uint32_t v;
    if (kv->type == GGUF_TYPE_BOOL) v = kv->val.b;
    else if (g4_gguf_get_u32(m->gguf, key, &v, err) != GGUF_OK) return -1;
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
static const g4_gguf_tensor *find_shaped(const gemma4_model *m, const char *name, bool required, int n_dims,
                                      const int64_t *ne, char *err, int *rc) {
    *rc = 0;
    const g4_gguf_tensor *t = g4_gguf_find_tensor(m->gguf, name);
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
    const g4_gguf_tensor *t = find_shaped(m, name, required, 1, &n, err, &rc);
    if (!t) return rc;
    float *v = malloc((size_t)n * sizeof *v);
    if ((rc = own(m, v, err))) return rc;
    g4_dequantize_row(t->type, t->data, v, n);
    for (int64_t i = 0; i < n; i++) /* norm weights, scales, RoPE factors: a NaN here poisons every logit */
        if (!isfinite(v[i])) return g4_error(err, NULL, "%s: tensor %s: value %lld is not finite", m->path, name, (long long)i);
    *out = v;
    return 0;
}

/* A matrix {n_in, n_out} (or an expert stack {n_in, n_out, n_exp}). */
static int bind_mat(gemma4_model *m, const char *name, bool required, int64_t n_in, int64_t n_out, int64_t n_exp,
                    g4_weight *w, size_t *expert_stride, char *err) {
    int rc;
    const int64_t ne[3] = {n_in, n_out, n_exp};
    memset(w, 0, sizeof *w);
    const g4_gguf_tensor *t = find_shaped(m, name, required, n_exp ? 3 : 2, ne, err, &rc);
    if (!t) return rc;
    w->type = (enum g4_type)t->type;
    w->data = t->data;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = g4_row_size(w->type, n_in);
    if (expert_stride) *expert_stride = w->row_bytes * (size_t)n_out;
    return 0;
}

/* With --mlock the file bytes are locked from the open (gguf.c); the
 * whole pages of a matrix about to be interleaved are unlocked first, so
 * that g4_repack can hand them back, and its interleaved copy is locked
 * instead. The partial pages at its ends hold neighbouring tensors too and
 * stay locked. */
static void unlock_inner_pages(const void *p, size_t size) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1), end = ((uintptr_t)p + size) & ~(page - 1);
    if (end > start) munlock((void *)start, end - start);
}

/* Interleaves one matrix, or a stack of n_stack matrices of stack_rows rows
 * each (experts), for kernel table k (kernels/repack.h). A stack is
 * interleaved whole only when every matrix in it, and w's own rows, are
 * whole groups, so that expert e still starts at e * stride. Rows wider
 * than the interleaved kernels take stay plain: they would be unpacked on
 * every product. lock: the model is mlock'ed (see unlock_inner_pages). */
static int repack(gemma4_model *m, const g4_kernels *k, g4_weight *w, int64_t stack_rows, int64_t n_stack, bool lock,
                  char *err) {
    g4_weight all = *w;
    all.n_out = stack_rows * n_stack;
    if (n_stack > 1 && (w->n_out % G4_REPACK_ROWS || stack_rows % G4_REPACK_ROWS)) return 0;
    if (!w->data || w->n_in > G4_X8_MAX_IN || !g4_repack_supported(k, &all)) return 0;
    const size_t size = all.row_bytes * (size_t)all.n_out;
    if (lock) unlock_inner_pages(all.data, size);
    if (!g4_repack(&all, true)) return g4_error(err, NULL, "%s: out of memory interleaving weights", m->path);
    w->data = all.data;
    w->interleaved = 1;
    if (own(m, (void *)(uintptr_t)all.data, err)) return -1;
    if (lock && mlock(all.data, size) != 0)
        return g4_error(err, NULL, "%s: cannot lock %zu bytes of interleaved weights in memory (mlock: %s): the limit "
                        "is RLIMIT_MEMLOCK (ulimit -l); raise it or load without locking", m->path, size, strerror(errno));
    return 0;
}

/* Load-time interleaving of every matrix kernel table k has an interleaved
 * kernel for, as llama.cpp's CPU repacking: decode then streams each matrix
 * once with 8 rows per SIMD vector (gemma4_load_params.no_repack keeps the
 * zero-copy mapping instead). per_layer_token_embd stays plain: it is only
 * gathered by token, never multiplied; token_embd is both (its rows are
 * unpacked for the lookup). */
static int repack_weights(gemma4_model *m, const g4_kernels *k, bool lock, char *err) {
    const bool tied = m->output.data == m->token_embd.data;
    int rc = repack(m, k, &m->token_embd, m->token_embd.n_out, 1, lock, err);
    if (tied) m->output = m->token_embd;
    else rc = rc ? rc : repack(m, k, &m->output, m->output.n_out, 1, lock, err);
    rc = rc ? rc : repack(m, k, &m->per_layer_model_proj, m->per_layer_model_proj.n_out, 1, lock, err);
    for (int32_t l = 0; l < m->n_layer && !rc; l++) {
        layer *L = &m->layers[l];
        g4_weight *mats[] = {&L->attn_q, &L->attn_k, &L->attn_v, &L->attn_output, &L->ffn_gate, &L->ffn_up,
                             &L->ffn_down, &L->ffn_gate_inp, &L->inp_gate, &L->proj};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0] && !rc; i++) rc = repack(m, k, mats[i], mats[i]->n_out, 1, lock, err);
        if (!L->moe || rc) continue;
        const int64_t E = m->n_expert;
        /* fused gate_up: an expert's stride holds its gate rows and then its up rows */
        const bool fused = L->gate_exps_stride == 2 * (size_t)L->gate_exps.n_out * L->gate_exps.row_bytes;
        rc = repack(m, k, &L->down_exps, (int64_t)(L->down_exps_stride / L->down_exps.row_bytes), E, lock, err);
        rc = rc ? rc : repack(m, k, &L->gate_exps, (int64_t)(L->gate_exps_stride / L->gate_exps.row_bytes), E, lock, err);
        if (fused && L->gate_exps.interleaved) {
            L->up_exps.data = (const char *)L->gate_exps.data + (size_t)L->gate_exps.n_out * L->gate_exps.row_bytes;
            L->up_exps.interleaved = 1;
        } else if (!fused) {
            rc = rc ? rc : repack(m, k, &L->up_exps, (int64_t)(L->up_exps_stride / L->up_exps.row_bytes), E, lock, err);
        }
    }
    return rc;
}

static int load_hparams(gemma4_model *m, int32_t *n_ff, int32_t *n_head_kv, int32_t *swa_pattern, char *err) {
    g4_gguf_str arch;
    if (g4_gguf_get_str(m->gguf, "general.architecture", &arch, err) != GGUF_OK) {
        if (!g4_gguf_find_kv(m->gguf, "general.architecture")) g4_error(err, NULL, "%s: missing key 'general.architecture'", m->path);
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
    if (m->n_expert > G4_MAX_EXPERTS || m->n_expert_used > G4_MAX_EXPERTS_USED)
        return g4_error(err, NULL, "%s: expert_count %d / expert_used_count %d exceed this engine's bounds (%d / %d)", m->path,
                        m->n_expert, m->n_expert_used, G4_MAX_EXPERTS, G4_MAX_EXPERTS_USED);
    if (m->n_expert && (m->n_expert_used < 1 || m->n_expert_used > m->n_expert || m->n_ff_exp < 1))
        return g4_error(err, NULL, "%s: expert_used_count %d / expert_count %d / expert_feed_forward_length %d are inconsistent",
                    m->path, m->n_expert_used, m->n_expert, m->n_ff_exp);
    /* NaN compares false, so each test is written to fail on it */
    if (!(m->rms_eps > 0 && isfinite(m->rms_eps)))
        return g4_error(err, NULL, "%s: layer_norm_rms_epsilon %g must be positive and finite", m->path, m->rms_eps);
    if (!(m->softcap >= 0 && isfinite(m->softcap)))
        return g4_error(err, NULL, "%s: final_logit_softcapping %g must be finite and not negative", m->path, m->softcap);
    if (!(base_full > 0 && isfinite(base_full) && base_swa > 0 && isfinite(base_swa)))
        return g4_error(err, NULL, "%s: rope.freq_base %g / freq_base_swa %g must be positive and finite", m->path, base_full,
                        base_swa);
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
        L->moe = g4_gguf_find_tensor(m->gguf, NAME("ffn_gate_inp.weight")) != NULL;
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
            if (g4_gguf_find_tensor(m->gguf, NAME("ffn_gate_up_exps.weight"))) {
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

static_assert(GEMMA4_ERR_LEN == G4_ERR_LEN, "the public and internal error buffers are one size");

gemma4_model *gemma4_load(const char *path, char *err) { return gemma4_load_ex(path, NULL, err); }

/* The kernel table is chosen first, so the weights are interleaved for the
 * kernels that will run them, and made the active one only once the model
 * has loaded: a failed load changes nothing. */
gemma4_model *gemma4_load_ex(const char *path, const gemma4_load_params *p, char *err) {
    const bool named = p && p->isa && *p->isa;
    const g4_kernels *k = named ? g4_kernels_by_name(p->isa) : g4_kernels_active();
    if (!k)
        return g4_error(err, NULL, "%s: kernels '%s' are unknown or cannot run on this CPU (scalar, avx2, avx512, neon)",
                        path, p->isa), NULL;
    gemma4_model *m = calloc(1, sizeof *m);
    if (!m) return g4_error(err, NULL, "%s: out of memory", path), NULL;
    m->path = strdup(path);
    const g4_gguf_open_params op = {.read = p && p->no_mmap, .lock = p && p->mlock};
    m->gguf = g4_gguf_open_ex(path, &op, err);
    if (!m->path || !m->gguf) goto fail;
    m->vocab = g4_vocab_load(m->gguf, err);
    if (!m->vocab) goto fail;
    m->n_vocab = g4_vocab_size(m->vocab);
    int32_t *tmp = malloc(3 * G4_MAX_LAYERS * sizeof *tmp);
    if (!tmp) goto fail;
    int rc = load_hparams(m, tmp, tmp + G4_MAX_LAYERS, tmp + 2 * G4_MAX_LAYERS, err);
    free(tmp);
    if (rc || load_tensors(m, err) || (!(p && p->no_repack) && repack_weights(m, k, op.lock, err))) goto fail;
    if (named) g4_kernels_use(p->isa);
    return m;
fail:
    gemma4_model_free(m);
    return NULL;
}

void gemma4_model_free(gemma4_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    g4_grammar_vocab_free(m->grammar_vocab);
    g4_vocab_free(m->vocab);
    g4_gguf_close(m->gguf);
    free(m->path);
    free(m);
}

const g4_vocab *g4_model_vocab(const gemma4_model *m) { return m->vocab; }
const g4_gguf_file *g4_model_gguf(const gemma4_model *m) { return m->gguf; }
int32_t gemma4_n_vocab(const gemma4_model *m) { return m->n_vocab; }
int32_t gemma4_n_ctx_train(const gemma4_model *m) { return m->n_ctx_train; }

const char *gemma4_variant(const gemma4_model *m) {
    switch (m->n_layer) { /* llama.cpp names the type by block count */
    case 35: return "E2B";
    case 48: return "12B"; /* llama.cpp: "unknown" (it has no type for 48 blocks yet) */
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
    for (int64_t i = 0; i < g4_gguf_n_tensors(m->gguf); i++) info->weight_bytes += g4_gguf_tensor_at(m->gguf, i)->nbytes;
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

