/* drafter.c: the forward pass of a Gemma 4 MTP drafter (loaded by
 * drafter_load.c), one draft step at a time, in llama.cpp v0.5.0's order
 * (src/models/gemma4-assistant.cpp):
 *
 *   xh = [target token_embd(token) * sqrt(W), h]     W = the target's width
 *   x  = pre_projection xh                           the drafter's width d
 *   per layer: attention with queries only over the target's cache, then
 *              the GELU-gated MLP, each wrapped in pre/post RMS norms and a
 *              residual add, then the layer's output scale
 *   a  = output_norm(x)
 *   logits = token_embd a (tied, no soft-cap), or the centroid-masked head
 *   h' = post_projection a                           the next step's h
 *
 * Step 0 takes the target's token and its final-normed hidden state of the
 * last position; step k > 0 the previous draft and h'. Every step sits at
 * the same position, the sequence's length: the drafter writes nothing
 * into the cache, so it sees exactly the target's positions before it.
 * Also here: gemma4_decode_hidden, the decode variant that hands out the
 * hidden state step 0 needs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "drafter.h"
#include "kernels/ops.h"

int gemma4_decode_hidden(gemma4_session *s, int32_t n, const int32_t *tokens, const int32_t *seq, const bool *want,
                         float *logits, float *hidden, char *err) {
    if (hidden && !logits)
        return g4_error(err, NULL, "%s: hidden states come with the logits of the same rows: pass a logits buffer", s->m->path);
    s->hidden_out = hidden;
    const int rc = gemma4_decode(s, n, tokens, seq, want, logits, err);
    s->hidden_out = NULL;
    return rc;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void rms_norm_rows(float *y, const float *x, const float *w, int64_t n_rows, int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) g4_rms_norm(y + r * n, x + r * n, w, n, eps);
}

/* The layer's queries (d->q, RoPE'd at pos) against the target's cached K
 * and V of seq at positions [lo, pos), one KV head and its group of query
 * heads at a time; scale 1, as in the target (the norms replace it). */
static void attention(gemma4_drafter *d, const gemma4_session *s, const drafter_layer *L, int32_t seq, int32_t pos) {
    const g4_kernels *k = g4_kernels_active();
    const int32_t hd = L->head_dim, group = d->n_head / L->n_head_kv;
    const int32_t lo = L->swa && pos - d->n_swa + 1 > 0 ? pos - d->n_swa + 1 : 0, span = pos - lo;
    for (int32_t g = 0; g < L->n_head_kv; g++) {
        const float *q = d->q + (size_t)g * group * hd;
        const size_t k_off = g4_row_size(s->type_k, (int64_t)g * hd), v_off = g4_row_size(s->type_v, (int64_t)g * hd);
        int32_t n;
        size_t stride;
        for (int32_t p = lo; p < pos; p += n) {
            const char *rows = g4_kv_rows(s->kv, seq, L->kv_src, p, false, &n, &stride);
            if (n > pos - p) n = pos - p;
            k->kv_scores[s->type_k](rows + k_off, stride, n, hd, q, group, d->scores + (p - lo), span);
        }
        for (int32_t h = 0; h < group; h++) g4_softmax(d->scores + (size_t)h * span, span);
        float *o = d->o + (size_t)g * group * hd;
        memset(o, 0, (size_t)group * hd * sizeof *o);
        for (int32_t p = lo; p < pos; p += n) {
            const char *rows = g4_kv_rows(s->kv, seq, L->kv_src, p, true, &n, &stride);
            if (n > pos - p) n = pos - p;
            k->kv_accum[s->type_v](rows + v_off, stride, n, hd, d->scores + (p - lo), group, span, o);
        }
    }
}

/* x = (x + post_attention_norm(attn)) then + post_ffw_norm(mlp), scaled. */
static void layer_forward(gemma4_drafter *d, gemma4_session *s, const drafter_layer *L, int32_t seq, int32_t pos) {
    const int64_t e = d->n_embd, H = d->n_head, hd = L->head_dim;
    const float eps = d->rms_eps;
    g4_rms_norm(d->a, d->x, L->attn_norm, e, eps);
    g4_matmul(&L->attn_q, d->a, 1, d->q, s->pool);
    rms_norm_rows(d->q, d->q, L->attn_q_norm, H, hd, eps);
    for (int64_t h = 0; h < H; h++)
        g4_rope_neox(d->q + h * hd, (int32_t)hd, pos, L->rope_base, L->swa ? NULL : d->rope_freqs);
    attention(d, s, L, seq, pos);
    g4_matmul(&L->attn_output, d->o, 1, d->branch, s->pool);
    g4_rms_norm(d->branch, d->branch, L->post_attention_norm, e, eps);
    for (int64_t i = 0; i < e; i++) d->r[i] = d->branch[i] + d->x[i];

    g4_rms_norm(d->a, d->r, L->ffn_norm, e, eps);
    const g4_matmul_job gate_up[2] = {{&L->ffn_gate, d->a, 1, d->gate}, {&L->ffn_up, d->a, 1, d->up}};
    g4_matmul_many(gate_up, 2, s->pool);
    g4_geglu(d->gate, d->gate, d->up, L->n_ff);
    g4_matmul(&L->ffn_down, d->gate, 1, d->branch, s->pool);
    g4_rms_norm(d->branch, d->branch, L->post_ffw_norm, e, eps);
    for (int64_t i = 0; i < e; i++) d->x[i] = (d->branch[i] + d->r[i]) * L->out_scale;
}

/* The centroid-masked head on a = the final-normed state: the clusters of
 * the G4_DRAFTER_CENTROID_TOP_K best-scoring centroids (ties: lower index)
 * are scored against their tokens' embeddings; every other token gets the
 * lowest of those logits minus 1, so it never wins. The candidates' rows
 * are gathered into one plain matrix: each logit is the product the full
 * head gives (exactly so unless the full head runs interleaved kernels). */
static void masked_head(gemma4_drafter *d, gemma4_session *s, float *logits) {
    const int32_t C = d->n_centroids, K = C < G4_DRAFTER_CENTROID_TOP_K ? C : G4_DRAFTER_CENTROID_TOP_K;
    g4_matmul(&d->centroids, d->a, 1, d->cent, s->pool);
    int32_t n_top = 0; /* d->top: the best so far, best first */
    for (int32_t c = 0; c < C; c++) {
        if (n_top == K && !(d->cent[c] > d->cent[d->top[K - 1]])) continue;
        int32_t j = n_top < K ? n_top++ : K - 1;
        for (; j > 0 && d->cent[c] > d->cent[d->top[j - 1]]; j--) d->top[j] = d->top[j - 1];
        d->top[j] = c;
    }
    const size_t rb = d->token_embd.row_bytes;
    int32_t n = 0;
    for (int32_t i = 0; i < K; i++)
        for (int32_t j = 0; j < d->per_centroid; j++, n++) {
            d->cand_ids[n] = d->ordering[(size_t)d->top[i] * d->per_centroid + j];
            char *dst = d->cand_rows + (size_t)n * rb;
            const void *row = g4_weight_row(&d->token_embd, d->cand_ids[n], dst);
            if (row != dst) memcpy(dst, row, rb);
        }
    const g4_weight rows = {.type = d->token_embd.type, .data = d->cand_rows, .n_in = d->n_embd, .n_out = n, .row_bytes = rb};
    g4_matmul(&rows, d->a, 1, d->cand_logits, s->pool);
    float lowest = d->cand_logits[0];
    for (int32_t i = 1; i < n; i++) lowest = fminf(lowest, d->cand_logits[i]);
    for (int32_t i = 0; i < d->target->n_vocab; i++) logits[i] = lowest - 1.0f;
    for (int32_t i = 0; i < n; i++) logits[d->cand_ids[i]] = d->cand_logits[i];
}

/* One step: token and d->h in, logits out, d->h replaced by h'. */
static void draft_step(gemma4_drafter *d, gemma4_session *s, int32_t seq, int32_t pos, int32_t token, float *logits) {
    const gemma4_model *t = d->target;
    const int64_t W = t->n_embd;
    /* the target's embedding, scaled as its own forward pass scales it */
    g4_dequantize_row(t->token_embd.type, g4_weight_row(&t->token_embd, token, d->embd_row), d->xh, W);
    const float scale = sqrtf((float)W);
    for (int64_t i = 0; i < W; i++) d->xh[i] *= scale;
    memcpy(d->xh + W, d->h, (size_t)W * sizeof *d->xh);
    g4_matmul(&d->pre_proj, d->xh, 1, d->x, s->pool);
    for (int32_t l = 0; l < d->n_layer; l++) layer_forward(d, s, &d->layers[l], seq, pos);
    g4_rms_norm(d->a, d->x, d->output_norm, d->n_embd, d->rms_eps);
    if (d->centroids.data) masked_head(d, s, logits);
    else g4_matmul(&d->token_embd, d->a, 1, logits, s->pool);
    g4_matmul(&d->post_proj, d->a, 1, d->h, s->pool);
}

/* Room in d->scores for the query heads of one KV head over pos positions. */
static int fit_scores(gemma4_drafter *d, int32_t pos, char *err) {
    int32_t group = 1;
    for (int32_t l = 0; l < d->n_layer; l++)
        if (d->n_head / d->layers[l].n_head_kv > group) group = d->n_head / d->layers[l].n_head_kv;
    const size_t need = (size_t)group * (size_t)pos;
    if (need <= d->scores_cap) return 0;
    const size_t cap = need > 2 * d->scores_cap ? need : 2 * d->scores_cap;
    float *g = realloc(d->scores, cap * sizeof *g);
    if (!g) return g4_error(err, NULL, "%s: out of memory for attention scores", d->path);
    d->scores = g, d->scores_cap = cap;
    return 0;
}

int32_t gemma4_drafter_draft(gemma4_drafter *d, gemma4_session *s, int32_t seq, int32_t token, const float *hidden,
                             int32_t n, int32_t *draft, float *logits, char *err) {
    const gemma4_model *t = d->target;
    if (s->m != t) return g4_error(err, NULL, "%s: the session runs %s, not the drafter's target %s", d->path, s->m->path, t->path);
    const int32_t pos = gemma4_seq_pos(s, seq);
    if (pos < 0) return g4_error(err, NULL, "%s: sequence id %d is outside 0..%d", d->path, seq, gemma4_session_n_seq(s) - 1);
    if (pos < 1) return g4_error(err, NULL, "%s: sequence %d is empty: the drafter continues the target's context", d->path, seq);
    if (token < 0 || token >= t->n_vocab)
        return g4_error(err, NULL, "%s: token id %d is outside the vocabulary (0..%d)", d->path, token, t->n_vocab - 1);
    if (!hidden) return g4_error(err, NULL, "%s: no hidden state: drafting needs the target's (gemma4_decode_hidden)", d->path);
    if (n < 0) return g4_error(err, NULL, "%s: %d draft steps", d->path, n);
    if (!n) return 0;
    float *own = NULL;
    if (!logits && !(logits = own = malloc((size_t)t->n_vocab * sizeof *own)))
        return g4_error(err, NULL, "%s: out of memory", d->path);
    if (fit_scores(d, pos, err)) return free(own), -1;
    memcpy(d->h, hidden, (size_t)t->n_embd * sizeof *d->h);
    for (int32_t k = 0; k < n; k++) {
        float *row = own ? own : logits + (size_t)k * (size_t)t->n_vocab;
        draft_step(d, s, seq, pos, k ? draft[k - 1] : token, row);
        draft[k] = argmax(row, t->n_vocab);
    }
    free(own);
    return g4_matmul_failed(d->path, err) ? -1 : n;
}

int32_t gemma4_draft_mtp(void *user, gemma4_session *s, int32_t seq, int32_t last_token, const float *hidden,
                         int32_t max, int32_t *draft) {
    char err[G4_ERR_LEN];
    if (!hidden) return 0;
    return gemma4_drafter_draft(user, s, seq, last_token, hidden, max, draft, NULL, err);
}
