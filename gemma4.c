/* gemma4.c: the Gemma 4 forward pass, one ubatch of tokens through every
 * layer, in the order docs/architecture.md §4 describes it: token embedding
 * (§4.1), per-layer inputs (§4.2), then per layer attention (§4.4, with RoPE
 * §4.3 and KV sharing §4.5), feed-forward (dense §4.6, or the shared MLP
 * beside the routed experts §4.7), per-layer embedding injection and the
 * layer scale (§4.8), and finally the soft-capped output head (§4.9).
 * Every §N in this file is a section of docs/architecture.md; the float
 * operations keep llama.cpp's order (§5).
 * Loading lives in load.c, sessions and batching in session.c; the scratch
 * buffers used here are described where model.h declares them. All matmuls
 * go through kernels/ (g4_matmul); this file never sees an ISA.
 * With dumping on, every intermediate vector is printed under the name
 * llama.cpp gives the same graph node, to locate a mismatch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "model.h"


/* Hands n_tok rows of n values to the running session's dump callback
 * (gemma4_session_params.dump), if any, under GGML-style node names:
 * "Qcur-3" for layer 3, "inp_scaled" for globals. */
static void dump(const char *name, int32_t il, const float *x, int64_t n_tok, int64_t n) {
    const gemma4_session *s = g4_dumping;
    if (!s) return;
    char nm[64];
    if (il >= 0) snprintf(nm, sizeof nm, "%s-%d", name, il);
    else snprintf(nm, sizeof nm, "%s", name);
    for (int64_t t = 0; t < n_tok; t++) s->dump(s->dump_user, nm, (int32_t)t, x + t * n, n);
}


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

/* §4.4 steps 4-6 (§4.5: reads layer kv_src's cache).
 * Causal attention over the token's own sequence, one (token, KV head) pair
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

/* §4.4 (RoPE §4.3, KV-shared layers §4.5): attention block; reads s->x,
 * leaves r = x + post_attention_norm(attn). */
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

    matmul(s, &L->attn_output, s->o, n_tok, s->branch);
    rms_norm_rows(s->branch, s->branch, L->post_attention_norm, n_tok, d, eps);
    dump("attn_post_norm", il, s->branch, n_tok, d);
    for (int64_t i = 0; i < n_tok * d; i++) s->r[i] = s->x[i] + s->branch[i];
    dump("attn_out", il, s->r, n_tok, d);
}

/* §4.6 GELU-gated MLP: out = down(gelu(gate x) * up x), for n_tok rows of x. */
static void gated_mlp(gemma4_session *s, const g4_weight *gate, const g4_weight *up, const g4_weight *down,
                      const float *x, int64_t n_tok, float *out) {
    const int64_t f = gate->n_out;
    const g4_matmul_job gate_up[2] = {{gate, x, n_tok, s->gate}, {up, x, n_tok, s->up}};
    g4_matmul_many(gate_up, 2, s->pool);
    geglu(s, s->gate, s->gate, s->up, n_tok * f);
    matmul(s, down, s->gate, n_tok, out);
}

static g4_weight expert(const g4_weight *w, size_t stride, int32_t e) {
    g4_weight x = *w;
    x.data = (const char *)w->data + (size_t)e * stride;
    return x;
}

static bool expert_beats(const float *probs, int32_t a, int32_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
}

/* Restores the heap order below slot i: sel[0] is the weakest kept expert. */
static void expert_sift(const float *probs, int32_t *sel, int64_t K, int64_t i) {
    for (;;) {
        int64_t weakest = i, l = 2 * i + 1, r = l + 1;
        if (l < K && expert_beats(probs, sel[weakest], sel[l])) weakest = l;
        if (r < K && expert_beats(probs, sel[weakest], sel[r])) weakest = r;
        if (weakest == i) return;
        const int32_t t = sel[i];
        sel[i] = sel[weakest];
        sel[weakest] = t;
        i = weakest;
    }
}

/* §4.7 router for one token: on the post-attention residual r, softmax over
 * all experts, top-k, renormalised weights. */
static void route(gemma4_session *s, const layer *L, int32_t il, const float *r, int32_t *sel, float *w) {
    const gemma4_model *m = s->m;
    const int64_t d = m->n_embd, E = m->n_expert, K = m->n_expert_used;
    float *z = s->router_in, *probs = s->router_probs;
    g4_rms_norm(z, r, NULL, d, m->rms_eps);
    const float inv_sqrt_d = 1.0f / sqrtf((float)d);
    for (int64_t i = 0; i < d; i++) z[i] = z[i] * inv_sqrt_d * L->ffn_gate_inp_scale[i];
    g4_matmul(&L->ffn_gate_inp, z, 1, probs, NULL);
    dump("ffn_moe_logits", il, probs, 1, E);
    g4_softmax(probs, E);
    dump("ffn_moe_probs", il, probs, 1, E);
    /* top-k in O(E log K): a heap of the K best so far, weakest on top; then
     * the K in descending probability, lowest index first on ties (the order
     * the weighted sum is accumulated in) */
    for (int32_t e = 0; e < K; e++) sel[e] = e;
    for (int64_t i = K / 2 - 1; i >= 0; i--) expert_sift(probs, sel, K, i);
    for (int32_t e = (int32_t)K; e < E; e++)
        if (expert_beats(probs, e, sel[0])) sel[0] = e, expert_sift(probs, sel, K, 0);
    for (int64_t k = 1; k < K; k++) /* K <= G4_MAX_EXPERTS_USED: insertion sort is fine */
        for (int64_t j = k; j > 0 && expert_beats(probs, sel[j], sel[j - 1]); j--) {
            const int32_t t = sel[j];
            sel[j] = sel[j - 1];
            sel[j - 1] = t;
        }
    float wsum = 0.0f;
    for (int64_t k = 0; k < K; k++) wsum += w[k] = probs[sel[k]];
    if (wsum < 6.103515625e-5f) wsum = 6.103515625e-5f;
    for (int64_t k = 0; k < K; k++) w[k] /= wsum;
    dump("ffn_moe_weights_norm", il, w, 1, K);
}

/* §4.7 expert branch for tokens [t0, t0 + n), n <= MOE_CHUNK: routes each
 * token, runs every chosen expert once on the batch of tokens routed to it
 * (all experts' gate and up in one dispatch, their down in another), then
 * acc[t] = sum over the token's choices, in choice order, of
 * weight * expert scale * expert output. */
static void moe_chunk(gemma4_session *s, const layer *L, int32_t il, const float *r, const float *e_in, int32_t n,
                      float *acc) {
    const gemma4_model *m = s->m;
    const int64_t d = m->n_embd, E = m->n_expert, K = m->n_expert_used, Fe = m->n_ff_exp;
    for (int32_t t = 0; t < n; t++) route(s, L, il, r + t * d, s->moe_sel + t * K, s->moe_w + t * K);

    /* gather: each expert's tokens become consecutive rows of moe_x, in
     * token order (a counting sort over the n * K choices) */
    int32_t *first = s->moe_first;
    memset(first, 0, (size_t)(E + 1) * sizeof *first);
    for (int32_t i = 0; i < n * K; i++) first[s->moe_sel[i] + 1]++;
    for (int64_t e = 0; e < E; e++) first[e + 1] += first[e];
    for (int32_t i = 0; i < n * K; i++) {
        const int32_t row = first[s->moe_sel[i]]++;
        memcpy(s->moe_x + (size_t)row * d, e_in + (size_t)(i / K) * d, (size_t)d * sizeof(float));
        s->moe_row[i] = row;
    }
    /* first[e] is now where expert e + 1 starts; one matmul job per expert used */
    g4_weight *gate = s->moe_mats, *up = gate + E, *down = up + E;
    g4_matmul_job *gate_up = s->moe_jobs, *downs = gate_up + 2 * E;
    int32_t n_jobs = 0;
    const int32_t rows = first[E - 1];
    for (int32_t e = 0; e < E; e++) {
        const int32_t lo = e ? first[e - 1] : 0, cnt = first[e] - lo;
        if (!cnt) continue;
        gate[n_jobs] = expert(&L->gate_exps, L->gate_exps_stride, e);
        up[n_jobs] = expert(&L->up_exps, L->up_exps_stride, e);
        down[n_jobs] = expert(&L->down_exps, L->down_exps_stride, e);
        const float *x = s->moe_x + (size_t)lo * d;
        gate_up[2 * n_jobs] = (g4_matmul_job){&gate[n_jobs], x, cnt, s->moe_g + (size_t)lo * Fe};
        gate_up[2 * n_jobs + 1] = (g4_matmul_job){&up[n_jobs], x, cnt, s->moe_u + (size_t)lo * Fe};
        downs[n_jobs] = (g4_matmul_job){&down[n_jobs], s->moe_g + (size_t)lo * Fe, cnt, s->moe_y + (size_t)lo * d};
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

/* §4.6 / §4.7: feed-forward on r; leaves x = r + post_ffw_norm(ffn). */
static void ffn_block(gemma4_session *s, int32_t il, int32_t n_tok) {
    const gemma4_model *m = s->m;
    const layer *L = &m->layers[il];
    const int64_t d = m->n_embd;
    const float eps = m->rms_eps;

    rms_norm_rows(s->a, s->r, L->ffn_norm, n_tok, d, eps);
    dump(L->moe ? "ffn_norm_1" : "ffn_norm", il, s->a, n_tok, d);
    gated_mlp(s, &L->ffn_gate, &L->ffn_up, &L->ffn_down, s->a, n_tok, s->branch);
    if (L->moe) {
        rms_norm_rows(s->branch, s->branch, L->post_ffw_norm_1, n_tok, d, eps);
        dump("ffn_mlp", il, s->branch, n_tok, d);
        rms_norm_rows(s->a, s->r, L->pre_ffw_norm_2, n_tok, d, eps);
        dump("ffn_norm_2", il, s->a, n_tok, d);
        for (int32_t t = 0; t < n_tok; t += MOE_CHUNK) { /* x is free until the residual add below */
            const int32_t n = n_tok - t < MOE_CHUNK ? n_tok - t : MOE_CHUNK;
            moe_chunk(s, L, il, s->r + t * d, s->a + t * d, n, s->x + t * d);
        }
        rms_norm_rows(s->x, s->x, L->post_ffw_norm_2, n_tok, d, eps);
        dump("ffn_moe", il, s->x, n_tok, d);
        for (int64_t i = 0; i < n_tok * d; i++) s->branch[i] += s->x[i];
        dump("ffn_moe_combined", il, s->branch, n_tok, d);
    } else {
        dump("ffn_out", il, s->branch, n_tok, d);
    }
    rms_norm_rows(s->branch, s->branch, L->post_ffw_norm, n_tok, d, eps);
    dump("ffn_post_norm", il, s->branch, n_tok, d);
    for (int64_t i = 0; i < n_tok * d; i++) s->x[i] = s->r[i] + s->branch[i];
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
        float *row = s->gate; /* the token's per-layer embedding row */
        g4_dequantize_row(m->per_layer_token_embd.type,
                          (const char *)m->per_layer_token_embd.data + (size_t)tokens[t] * m->per_layer_token_embd.row_bytes,
                          row, W);
        dump("inp_per_layer_selected", -1, row, 1, W);
        for (int64_t i = 0; i < W; i++) s->ple[t * W + i] = (s->ple[t * W + i] + row[i] * sqrt_p) * inv_sqrt2;
    }
    dump("inp_per_layer", -1, s->ple, n_tok, W);
}

/* §4.8: h += post_norm(proj(gelu(inp_gate h) * S_l)). */
static void per_layer_injection(gemma4_session *s, int32_t il, int32_t n_tok) {
    const gemma4_model *m = s->m;
    const layer *L = &m->layers[il];
    const int64_t d = m->n_embd, P = m->n_embd_per_layer, W = P * m->n_layer;
    matmul(s, &L->inp_gate, s->x, n_tok, s->gate);
    for (int32_t t = 0; t < n_tok; t++)
        g4_geglu(s->gate + t * P, s->gate + t * P, s->ple + t * W + (int64_t)il * P, P);
    matmul(s, &L->proj, s->gate, n_tok, s->branch);
    rms_norm_rows(s->branch, s->branch, L->post_norm, n_tok, d, m->rms_eps);
    dump("per_layer_embd_out", il, s->branch, n_tok, d);
    for (int64_t i = 0; i < n_tok * d; i++) s->x[i] += s->branch[i];
}

/* One ubatch through the model (see model.h). */
void g4_forward(gemma4_session *s, const int32_t *tokens, int32_t n_tok, const int32_t *out_rows, int32_t n_out,
                float *out) {
    const gemma4_model *m = s->m;
    const int64_t d = m->n_embd;

    /* §4.1 token embedding, scaled by sqrt(d) in f32 */
    const float embd_scale = sqrtf((float)d);
    for (int32_t t = 0; t < n_tok; t++) {
        float *x = s->x + t * d;
        /* t3 is free until the layers: it takes an interleaved row unpacked */
        g4_dequantize_row(m->token_embd.type, g4_weight_row(&m->token_embd, tokens[t], s->branch), x, d);
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
        /* §4.8 layer output scale: the whole stream */
        for (int64_t i = 0; i < n_tok * d; i++) s->x[i] *= L->out_scale;
        dump("l_out", il, s->x, n_tok, d);
    }

    if (!n_out) return;
    /* §4.9 output head on the rows asked for */
    for (int32_t i = 0; i < n_out; i++) g4_rms_norm(s->a + i * d, s->x + (int64_t)out_rows[i] * d, m->output_norm, d, m->rms_eps);
    dump("result_norm", -1, s->a, n_out, d);
    if (s->hidden_out) { /* for an MTP drafter (gemma4_decode_hidden) */
        memcpy(s->hidden_out, s->a, (size_t)n_out * (size_t)d * sizeof *s->a);
        s->hidden_out += (size_t)n_out * (size_t)d;
    }
    matmul(s, &m->output, s->a, n_out, out);
    if (m->softcap != 0.0f) {
        elementwise_job j = {out, NULL, NULL, (int64_t)n_out * m->n_vocab, m->softcap};
        g4_pool_run(s->pool, softcap_slice, &j);
    }
    dump("result_output", -1, out, n_out, m->n_vocab);
}

