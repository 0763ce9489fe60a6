/* Loading a Gemma 4 MTP drafter (GGUF architecture gemma4-assistant) for a
 * loaded target: its gemma4-assistant.* keys, its tensors bound by name and
 * shape, and every property it must share with the target checked, so that
 * the forward pass (drafter.c) can read the target's cache and embeddings
 * without further checks. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drafter.h"

#define ARCH "gemma4-assistant"
#define KEY(k) ARCH "." k

typedef struct loader {
    gemma4_drafter *d;
    const char *path;
    char *err;
} loader;

static int fail(loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(loader *ld, const char *fmt, ...) {
    char why[G4_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return g4_error(ld->err, NULL, "%s: %s", ld->path, why);
}

/* A u32 key (absent: def, or an error when required). */
static int key_u32(loader *ld, const char *key, bool required, int32_t def, int32_t *out) {
    uint32_t v = (uint32_t)def;
    const int rc = g4_gguf_get_u32(ld->d->gguf, key, &v, ld->err);
    if (rc == GGUF_ETYPE) return -1;
    if (rc == GGUF_ENOKEY && required) return fail(ld, "missing key '%s'", key);
    if (v > INT32_MAX) return fail(ld, "key '%s' = %u is out of range", key, v);
    *out = (int32_t)v;
    return 0;
}

static int key_f32(loader *ld, const char *key, float def, float *out) {
    *out = def;
    return g4_gguf_get_f32(ld->d->gguf, key, out, ld->err) == GGUF_ETYPE ? -1 : 0;
}

/* A key holding one value for every layer: a u32 (or bool) scalar, or an
 * array of n_layer i32/u32/bool. */
static int key_per_layer(loader *ld, const char *key, bool required, int32_t def, int32_t *out) {
    const int32_t n = ld->d->n_layer;
    const g4_gguf_kv *kv = g4_gguf_find_kv(ld->d->gguf, key);
    if (!kv) {
        if (required) return fail(ld, "missing key '%s'", key);
        for (int32_t l = 0; l < n; l++) out[l] = def;
        return 0;
    }
    if (kv->type == GGUF_TYPE_ARRAY) {
        if (kv->arr_n != (uint64_t)n)
            return fail(ld, "key '%s' has %llu elements, expected block_count = %d", key, (unsigned long long)kv->arr_n, n);
        for (int32_t l = 0; l < n; l++) {
            if (kv->arr_type == GGUF_TYPE_INT32) out[l] = ((const int32_t *)kv->arr_data)[l];
            else if (kv->arr_type == GGUF_TYPE_UINT32) out[l] = (int32_t)((const uint32_t *)kv->arr_data)[l];
            else if (kv->arr_type == GGUF_TYPE_BOOL) out[l] = ((const bool *)kv->arr_data)[l];
            else return fail(ld, "key '%s' is an array of %s, expected i32, u32 or bool", key, g4_gguf_type_name(kv->arr_type));
            if (out[l] < 0) return fail(ld, "key '%s'[%d] = %d is negative", key, l, out[l]);
        }
        return 0;
    }
    uint32_t v;
    if (kv->type == GGUF_TYPE_BOOL) v = kv->val.b;
    else if (g4_gguf_get_u32(ld->d->gguf, key, &v, ld->err) != GGUF_OK) return -1;
    if (v > INT32_MAX) return fail(ld, "key '%s' = %u is out of range", key, v);
    for (int32_t l = 0; l < n; l++) out[l] = (int32_t)v;
    return 0;
}

/* Tensor name with shape {ne0, ne1} (ne1 0: a vector) of a type the
 * kernels run; NULL with *rc = -1 when wrong, or absent and required. */
static const g4_gguf_tensor *find(loader *ld, const char *name, bool required, int64_t ne0, int64_t ne1, int *rc) {
    *rc = 0;
    const g4_gguf_tensor *t = g4_gguf_find_tensor(ld->d->gguf, name);
    if (!t) {
        if (required) *rc = fail(ld, "missing tensor '%s'", name);
        return NULL;
    }
    const int64_t want[GGUF_MAX_DIMS] = {ne0, ne1 ? ne1 : 1, 1, 1};
    bool ok = true;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) ok &= t->ne[i] == want[i];
    if (!ok) {
        *rc = fail(ld, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name, (long long)t->ne[0],
                   (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], (long long)ne0, (long long)want[1]);
        return NULL;
    }
    return t;
}

static int own(loader *ld, void *p) {
    gemma4_drafter *d = ld->d;
    void **grown = p ? realloc(d->owned, (d->n_owned + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(p);
        return fail(ld, "out of memory");
    }
    d->owned = grown;
    d->owned[d->n_owned++] = p;
    return 0;
}

/* A vector of n values as f32, converted once; every value finite. */
static int bind_vec(loader *ld, const char *name, bool required, int64_t n, const float **out) {
    int rc;
    *out = NULL;
    const g4_gguf_tensor *t = find(ld, name, required, n, 0, &rc);
    if (!t) return rc;
    float *v = malloc((size_t)n * sizeof *v);
    if (own(ld, v)) return -1;
    g4_dequantize_row(t->type, t->data, v, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return fail(ld, "tensor %s: value %lld is not finite", name, (long long)i);
    *out = v;
    return 0;
}

static int bind_mat(loader *ld, const char *name, bool required, int64_t n_in, int64_t n_out, g4_weight *w) {
    int rc;
    memset(w, 0, sizeof *w);
    const g4_gguf_tensor *t = find(ld, name, required, n_in, n_out, &rc);
    if (!t) return rc;
    *w = (g4_weight){.type = (enum g4_type)t->type, .data = t->data, .n_in = n_in, .n_out = n_out,
                     .row_bytes = g4_row_size((enum g4_type)t->type, n_in)};
    return 0;
}

static int load_hparams(loader *ld, int32_t *n_head, int32_t *n_head_kv, int32_t *n_ff, int32_t *swa) {
    gemma4_drafter *d = ld->d;
    const gemma4_model *t = d->target;
    g4_gguf_str arch;
    if (g4_gguf_get_str(d->gguf, "general.architecture", &arch, ld->err) != GGUF_OK) {
        if (!g4_gguf_find_kv(d->gguf, "general.architecture")) fail(ld, "missing key 'general.architecture'");
        return -1;
    }
    if (arch.len != strlen(ARCH) || memcmp(arch.ptr, ARCH, arch.len))
        return fail(ld, "architecture '%.*s' is not " ARCH " (an MTP drafter)", (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    int32_t width_out, n_nextn, hd_full, v_full, hd_swa, v_swa, rot_full, rot_swa;
    float base_full, base_swa;
    if (key_u32(ld, KEY("block_count"), true, 0, &d->n_layer) || key_u32(ld, KEY("embedding_length"), true, 0, &d->n_embd) ||
        key_u32(ld, KEY("embedding_length_out"), true, 0, &width_out) ||
        key_u32(ld, KEY("nextn_predict_layers"), true, 0, &n_nextn) ||
        key_u32(ld, KEY("attention.sliding_window"), true, 0, &d->n_swa) ||
        key_u32(ld, KEY("attention.key_length"), true, 0, &hd_full) ||
        key_u32(ld, KEY("attention.value_length"), false, hd_full, &v_full) ||
        key_u32(ld, KEY("attention.key_length_swa"), true, 0, &hd_swa) ||
        key_u32(ld, KEY("attention.value_length_swa"), false, hd_swa, &v_swa) ||
        key_u32(ld, KEY("rope.dimension_count"), false, hd_full, &rot_full) ||
        key_u32(ld, KEY("rope.dimension_count_swa"), false, hd_swa, &rot_swa) ||
        key_f32(ld, KEY("attention.layer_norm_rms_epsilon"), NAN, &d->rms_eps) ||
        key_f32(ld, KEY("rope.freq_base"), 10000.0f, &base_full) || key_f32(ld, KEY("rope.freq_base_swa"), 10000.0f, &base_swa))
        return -1;
    if (d->n_layer < 1 || d->n_layer > G4_DRAFTER_MAX_LAYERS)
        return fail(ld, "block_count %d is outside 1..%d", d->n_layer, G4_DRAFTER_MAX_LAYERS);
    if (n_nextn != d->n_layer)
        return fail(ld, "nextn_predict_layers %d differs from block_count %d (every drafter layer drafts)", n_nextn, d->n_layer);
    if (key_per_layer(ld, KEY("attention.head_count"), true, 0, n_head) ||
        key_per_layer(ld, KEY("attention.head_count_kv"), true, 0, n_head_kv) ||
        key_per_layer(ld, KEY("feed_forward_length"), true, 0, n_ff) ||
        key_per_layer(ld, KEY("attention.sliding_window_pattern"), true, 0, swa))
        return -1;
    d->n_head = n_head[0];
    for (int32_t l = 1; l < d->n_layer; l++)
        if (n_head[l] != d->n_head) return fail(ld, "head_count differs between layers");
    if (d->n_embd < 1 || d->n_head < 1) return fail(ld, "embedding_length and head_count must be positive");
    if (!(d->rms_eps > 0 && isfinite(d->rms_eps)))
        return fail(ld, "layer_norm_rms_epsilon %g must be present, positive and finite", d->rms_eps);
    if (!(base_full > 0 && isfinite(base_full) && base_swa > 0 && isfinite(base_swa)))
        return fail(ld, "rope.freq_base %g / freq_base_swa %g must be positive and finite", base_full, base_swa);
    if (hd_full != v_full || hd_swa != v_swa)
        return fail(ld, "key_length and value_length differ (%d/%d full, %d/%d sliding)", hd_full, v_full, hd_swa, v_swa);
    if (rot_full != hd_full || rot_swa != hd_swa)
        return fail(ld, "rope dimension counts %d/%d differ from the head dims %d/%d", rot_swa, rot_full, hd_swa, hd_full);

    /* what it must share with the target */
    if (width_out != t->n_embd)
        return fail(ld, "embedding_length_out %d is not the target's width %d (%s): it was made for another model", width_out,
                    t->n_embd, t->path);
    const int32_t TL = t->n_layer;
    if (TL < 2 || !t->layers[TL - 2].swa || t->layers[TL - 1].swa)
        return fail(ld, "the target %s does not end with a sliding and a full layer, whose caches the drafter reads", t->path);
    if (d->n_swa < 1 || d->n_swa > t->n_swa)
        return fail(ld, "sliding_window %d is outside 1..%d (the target's window, all its cache keeps)", d->n_swa, t->n_swa);
    for (int32_t l = 0; l < d->n_layer; l++) {
        drafter_layer *L = &d->layers[l];
        L->swa = swa[l] != 0;
        L->head_dim = L->swa ? hd_swa : hd_full;
        L->n_head_kv = n_head_kv[l];
        L->rope_base = L->swa ? base_swa : base_full;
        L->kv_src = t->layers[TL - (L->swa ? 2 : 1)].kv_src;
        const layer *src = &t->layers[L->kv_src];
        if (L->head_dim < 2 || L->head_dim % 2) return fail(ld, "layer %d: head dim %d must be even and positive", l, L->head_dim);
        if (L->head_dim != src->head_dim || L->n_head_kv != src->n_head_kv)
            return fail(ld, "%s layer %d has head dim %d and %d KV heads, the target's cache (layer %d) %d and %d", L->swa ? "sliding" : "full",
                        l, L->head_dim, L->n_head_kv, L->kv_src, src->head_dim, src->n_head_kv);
        if (L->n_head_kv < 1 || d->n_head % L->n_head_kv)
            return fail(ld, "layer %d: head_count_kv %d does not divide head_count %d", l, L->n_head_kv, d->n_head);
        L->n_ff = n_ff[l];
        if (L->n_ff < 1) return fail(ld, "layer %d: feed_forward_length must be positive", l);
        if (L->n_ff > d->n_ff_max) d->n_ff_max = L->n_ff;
    }
    return 0;
}

/* The centroid-masked head: masked_embd_centroids.weight {d, C} and
 * masked_embd_ordering {n_vocab}, the vocabulary grouped into C clusters of
 * n_vocab / C tokens. llama.cpp's converter leaves them out, so there is no
 * convention for the ordering's type: it is read as f32 holding token ids
 * (exact below 2^24), since the GGUF reader takes no integer tensors. */
static int load_centroids(loader *ld) {
    gemma4_drafter *d = ld->d;
    const int64_t V = d->target->n_vocab;
    const g4_gguf_tensor *c = g4_gguf_find_tensor(d->gguf, "masked_embd_centroids.weight");
    const g4_gguf_tensor *o = g4_gguf_find_tensor(d->gguf, "masked_embd_ordering");
    if (!c && !o) return 0;
    if (!c || !o) return fail(ld, "has %s but not %s", c ? c->name : o->name, c ? "masked_embd_ordering" : "masked_embd_centroids.weight");
    if (c->ne[1] < 1 || c->ne[1] > V || V % c->ne[1])
        return fail(ld, "masked_embd_centroids.weight has %lld clusters, which do not divide the vocabulary of %lld", (long long)c->ne[1],
                    (long long)V);
    if (bind_mat(ld, "masked_embd_centroids.weight", true, d->n_embd, c->ne[1], &d->centroids)) return -1;
    int rc;
    if (!find(ld, "masked_embd_ordering", true, V, 0, &rc)) return rc;
    if (o->type != G4_TYPE_F32) return fail(ld, "masked_embd_ordering has type %s, expected f32 token ids", g4_type_name(o->type));
    d->n_centroids = (int32_t)c->ne[1];
    d->per_centroid = (int32_t)(V / c->ne[1]);
    d->ordering = malloc((size_t)V * sizeof *d->ordering);
    bool *seen = calloc((size_t)V, 1);
    if (own(ld, d->ordering) || !seen) return free(seen), fail(ld, "out of memory");
    const float *ids = o->data;
    for (int64_t i = 0; i < V; i++) {
        const float f = ids[i];
        if (!(f >= 0 && f < (float)V && f == floorf(f)) || seen[(int64_t)f]) {
            free(seen);
            return fail(ld, "masked_embd_ordering[%lld] = %g: the ordering must hold every token id once", (long long)i, f);
        }
        seen[(int64_t)f] = true;
        d->ordering[i] = (int32_t)f;
    }
    free(seen);
    return 0;
}

static int load_tensors(loader *ld) {
    gemma4_drafter *d = ld->d;
    const int64_t e = d->n_embd, V = d->target->n_vocab, w = d->target->n_embd;
    int rc;
    const g4_gguf_tensor *te = g4_gguf_find_tensor(d->gguf, "token_embd.weight");
    if (te && te->ne[1] != V)
        return fail(ld, "token_embd.weight has %lld tokens, the target's vocabulary %lld", (long long)te->ne[1], (long long)V);
    const g4_gguf_kv *toks = g4_gguf_find_kv(d->gguf, "tokenizer.ggml.tokens");
    if (toks && (toks->type != GGUF_TYPE_ARRAY || toks->arr_n != (uint64_t)V))
        return fail(ld, "tokenizer.ggml.tokens has %llu tokens, the target's vocabulary %lld",
                    (unsigned long long)(toks->type == GGUF_TYPE_ARRAY ? toks->arr_n : 0), (long long)V);
    if (bind_mat(ld, "token_embd.weight", true, e, V, &d->token_embd) ||
        bind_vec(ld, "output_norm.weight", true, e, &d->output_norm) ||
        bind_mat(ld, "nextn.pre_projection.weight", true, 2 * w, e, &d->pre_proj) ||
        bind_mat(ld, "nextn.post_projection.weight", true, e, w, &d->post_proj))
        return -1;
    for (int32_t l = 0; l < d->n_layer; l++)
        if (!d->layers[l].swa && !d->rope_freqs &&
            bind_vec(ld, "rope_freqs.weight", true, d->layers[l].head_dim / 2, &d->rope_freqs))
            return -1;
    for (int32_t l = 0; l < d->n_layer; l++) {
        drafter_layer *L = &d->layers[l];
        const int64_t qd = (int64_t)d->n_head * L->head_dim;
        const int64_t ff = L->n_ff;
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
        const float *scale = NULL;
        rc = bind_vec(ld, NAME("attn_norm.weight"), true, e, &L->attn_norm);
        rc = rc ? rc : bind_mat(ld, NAME("attn_q.weight"), true, e, qd, &L->attn_q);
        rc = rc ? rc : bind_vec(ld, NAME("attn_q_norm.weight"), true, L->head_dim, &L->attn_q_norm);
        rc = rc ? rc : bind_mat(ld, NAME("attn_output.weight"), true, qd, e, &L->attn_output);
        rc = rc ? rc : bind_vec(ld, NAME("post_attention_norm.weight"), true, e, &L->post_attention_norm);
        rc = rc ? rc : bind_vec(ld, NAME("layer_output_scale.weight"), true, 1, &scale);
        rc = rc ? rc : bind_vec(ld, NAME("ffn_norm.weight"), true, e, &L->ffn_norm);
        rc = rc ? rc : bind_mat(ld, NAME("ffn_gate.weight"), true, e, ff, &L->ffn_gate);
        rc = rc ? rc : bind_mat(ld, NAME("ffn_up.weight"), true, e, ff, &L->ffn_up);
        rc = rc ? rc : bind_mat(ld, NAME("ffn_down.weight"), true, ff, e, &L->ffn_down);
        rc = rc ? rc : bind_vec(ld, NAME("post_ffw_norm.weight"), true, e, &L->post_ffw_norm);
#undef NAME
        if (rc) return rc;
        L->out_scale = scale[0];
    }
    return load_centroids(ld);
}

/* Interleaves the matrices the active kernels have interleaved kernels
 * for, as the target's loader does (load.c): a step reads each once. The
 * masked head gathers token_embd rows through g4_weight_row, which unpacks
 * an interleaved row. */
static int repack_weights(loader *ld) {
    gemma4_drafter *d = ld->d;
    const g4_kernels *k = g4_kernels_active();
    g4_weight *mats[4 + 5 * G4_DRAFTER_MAX_LAYERS] = {&d->token_embd, &d->pre_proj, &d->post_proj, &d->centroids};
    int n = 4;
    for (int32_t l = 0; l < d->n_layer; l++) {
        drafter_layer *L = &d->layers[l];
        g4_weight *per[] = {&L->attn_q, &L->attn_output, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (int i = 0; i < 5; i++) mats[n++] = per[i];
    }
    for (int i = 0; i < n; i++) {
        g4_weight *w = mats[i];
        if (!w->data || w->n_in > G4_X8_MAX_IN || !g4_repack_supported(k, w)) continue;
        if (!g4_repack(w, true)) return fail(ld, "out of memory interleaving weights");
        w->interleaved = 1;
        if (own(ld, (void *)(uintptr_t)w->data)) return -1;
    }
    return 0;
}

/* The scratch of one draft step (drafter.h). */
static int alloc_scratch(loader *ld) {
    gemma4_drafter *d = ld->d;
    const size_t e = (size_t)d->n_embd, w = (size_t)d->target->n_embd, ff = (size_t)d->n_ff_max;
    size_t qd = 0;
    for (int32_t l = 0; l < d->n_layer; l++)
        if ((size_t)d->n_head * (size_t)d->layers[l].head_dim > qd) qd = (size_t)d->n_head * (size_t)d->layers[l].head_dim;
    const size_t cand = (size_t)(d->n_centroids < G4_DRAFTER_CENTROID_TOP_K ? d->n_centroids : G4_DRAFTER_CENTROID_TOP_K) *
                        (size_t)d->per_centroid;
    float **bufs[] = {&d->xh, &d->h, &d->x, &d->a, &d->r, &d->branch, &d->q, &d->o, &d->gate, &d->up, &d->cent, &d->cand_logits};
    const size_t sizes[] = {2 * w, w, e, e, e, e, qd, qd, ff, ff, (size_t)d->n_centroids + 1, cand + 1};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (own(ld, *bufs[i] = malloc(sizes[i] * sizeof(float)))) return -1;
    if (own(ld, d->cand_ids = malloc((cand + 1) * sizeof *d->cand_ids)) ||
        own(ld, d->top = malloc(((size_t)G4_DRAFTER_CENTROID_TOP_K + 1) * sizeof *d->top)) ||
        own(ld, d->cand_rows = malloc((cand + 1) * d->token_embd.row_bytes)) ||
        own(ld, d->embd_row = malloc(d->target->token_embd.row_bytes)))
        return -1;
    return 0;
}

gemma4_drafter *gemma4_drafter_load(const char *path, const gemma4_model *target, char *err) {
    gemma4_drafter *d = calloc(1, sizeof *d);
    if (!d) return g4_error(err, NULL, "%s: out of memory", path), NULL;
    loader ld = {d, path, err};
    int32_t *tmp = malloc(4 * G4_DRAFTER_MAX_LAYERS * sizeof *tmp);
    d->target = target;
    d->path = strdup(path);
    if (!tmp || !d->path) {
        g4_error(err, NULL, "%s: out of memory", path);
        goto fail;
    }
    if (!(d->gguf = g4_gguf_open(path, err))) goto fail;
    const int32_t M = G4_DRAFTER_MAX_LAYERS;
    if (load_hparams(&ld, tmp, tmp + M, tmp + 2 * M, tmp + 3 * M) || load_tensors(&ld) || repack_weights(&ld) || alloc_scratch(&ld)) goto fail;
    free(tmp);
    return d;
fail:
    free(tmp);
    gemma4_drafter_free(d);
    return NULL;
}

void gemma4_drafter_free(gemma4_drafter *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_owned; i++) free(d->owned[i]);
    free(d->owned);
    free(d->scores);
    g4_gguf_close(d->gguf);
    free(d->path);
    free(d);
}
