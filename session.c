/* Sessions and sequences: the scratch buffers of a session, its paged KV
 * cache, and gemma4_decode, which checks a batch, splits it into ubatches
 * and hands each to the forward pass (gemma4.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model.h"

_Thread_local const gemma4_session *g4_dumping;


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
    const enum g4_type tk = p ? (enum g4_type)p->type_k : G4_TYPE_F32, tv = p ? (enum g4_type)p->type_v : G4_TYPE_F32;
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
    s->type_k = p ? (enum g4_type)p->type_k : G4_TYPE_F32;
    s->type_v = p ? (enum g4_type)p->type_v : G4_TYPE_F32;
    s->dump = p ? p->dump : NULL;
    s->dump_user = p ? p->dump_user : NULL;
    if (!(s->kv = kv_new(m, p, n_ctx, err))) return gemma4_session_free(s), NULL;
    s->pool = g4_pool_create(p ? p->n_threads : 0);
    const size_t T = (size_t)s->n_ubatch, d = (size_t)m->n_embd, qd = (size_t)max_q_dim(m), ff = (size_t)max_ff(m);
    const size_t ple = (size_t)m->n_embd_per_layer * (size_t)m->n_layer;
    bool ok = s->pool != NULL;
    float **bufs[] = {&s->x, &s->a, &s->r, &s->q, &s->k, &s->v, &s->o, &s->gate, &s->up, &s->branch, &s->ple};
    size_t wide = ff > d ? ff : d; /* t0 and t1 hold FFN rows and a per-layer embedding row */
    if (ple > wide) wide = ple;
    const size_t sizes[] = {d, d, d, qd, qd, qd, qd, wide, wide, d, ple ? ple : 1};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0] && ok; i++) ok = (*bufs[i] = malloc(T * sizes[i] * sizeof(float))) != NULL;
    if (m->n_expert && ok) {
        const size_t slots = (size_t)MOE_CHUNK * (size_t)m->n_expert_used, fe = (size_t)m->n_ff_exp;
        ok = (s->moe_sel = malloc(slots * sizeof *s->moe_sel)) && (s->moe_row = malloc(slots * sizeof *s->moe_row)) &&
             (s->moe_w = malloc(slots * sizeof *s->moe_w)) && (s->moe_x = malloc(slots * d * sizeof(float))) &&
             (s->moe_g = malloc(slots * fe * sizeof(float))) && (s->moe_u = malloc(slots * fe * sizeof(float))) &&
             (s->moe_y = malloc(slots * d * sizeof(float))) &&
             (s->moe_first = malloc(((size_t)m->n_expert + 1) * sizeof *s->moe_first)) &&
             (s->moe_mats = malloc(3 * (size_t)m->n_expert * sizeof *s->moe_mats)) &&
             (s->moe_jobs = malloc(3 * (size_t)m->n_expert * sizeof *s->moe_jobs)) &&
             (s->router_in = malloc(d * sizeof(float))) && (s->router_probs = malloc((size_t)m->n_expert * sizeof(float)));
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
    float *bufs[] = {s->x,     s->a,     s->r,     s->q,     s->k,     s->v,     s->o,    s->gate,
                     s->up,    s->branch,    s->ple,   s->scores, s->moe_w, s->moe_x, s->moe_g, s->moe_u,
                     s->moe_y, s->router_in, s->router_probs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->tok_seq);
    free(s->tok_pos);
    free(s->out_rows);
    free(s->seq_n);
    free(s->moe_sel);
    free(s->moe_row);
    free(s->moe_first);
    free(s->moe_mats);
    free(s->moe_jobs);
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
/* Moves the K row of layer il (its KV heads side by side) from position
 * from to position to with the rotation the forward pass gave it (§4.3):
 * the layer's n_rot and base, and on full layers the rope_freqs divisors. */
static void rotate_k_row(void *user, int32_t il, float *k, int32_t from, int32_t to) {
    const gemma4_model *m = user;
    const layer *L = &m->layers[il];
    const float *ff = L->swa ? NULL : m->rope_freqs;
    for (int32_t h = 0; h < L->n_head_kv; h++) g4_rope_neox_move(k + (size_t)h * L->head_dim, L->n_rot, from, to, L->rope_base, ff);
}

int32_t gemma4_seq_shift(gemma4_session *s, int32_t seq, int32_t n_keep, int32_t n_discard, char *err) {
    if (bad_seq(s, seq))
        return g4_error(err, NULL, "%s: context shift: sequence %d is outside 0..%d", s->m->path, seq, g4_kv_n_seq(s->kv) - 1);
    const int32_t len = g4_kv_len(s->kv, seq);
    if (n_keep < 0 || n_discard <= 0 || (int64_t)n_keep + n_discard > len)
        return g4_error(err, NULL, "%s: context shift of sequence %d: keep %d and discard %d do not fit its %d positions "
                        "(need keep >= 0, discard >= 1, keep + discard <= %d)", s->m->path, seq, n_keep, n_discard, len, len);
    char why[G4_ERR_LEN];
    const int32_t n = g4_kv_shift(s->kv, seq, n_keep, n_discard, rotate_k_row, (void *)s->m, why);
    if (n < 0) g4_error(err, NULL, "%s: %s", s->m->path, why);
    return n;
}
int gemma4_seq_remove(gemma4_session *s, int32_t seq) { return bad_seq(s, seq) ? -1 : (g4_kv_truncate(s->kv, seq, 0), 0); }
int gemma4_seq_checkpoint(gemma4_session *s, int32_t seq) { return bad_seq(s, seq) ? -1 : (g4_kv_checkpoint(s->kv, seq), 0); }
int gemma4_seq_fork(gemma4_session *s, int32_t src, int32_t dst, char *err) {
    if (bad_seq(s, src) || bad_seq(s, dst))
        return g4_error(err, NULL, "%s: fork %d -> %d: sequence ids are 0..%d", s->m->path, src, dst, g4_kv_n_seq(s->kv) - 1);
    return g4_kv_fork(s->kv, src, dst, err);
}
/* The public KV names are the cache's own values. */
static_assert((int)GEMMA4_KV_F32 == G4_TYPE_F32 && (int)GEMMA4_KV_F16 == G4_TYPE_F16 &&
                  (int)GEMMA4_KV_Q8_0 == G4_TYPE_Q8_0,
              "gemma4_kv_type values are GGUF type ids");
static_assert((int)GEMMA4_KV_SWA == G4_KV_SWA && (int)GEMMA4_KV_FULL == G4_KV_FULL &&
                  (int)GEMMA4_KV_KINDS == G4_KV_KINDS,
              "page kinds");
static_assert(GEMMA4_KV_CHECKPOINTS == G4_KV_CHECKPOINTS, "checkpoints per sequence");

int gemma4_kv_type_from_name(const char *name, gemma4_kv_type *type) {
    enum g4_type t;
    if (g4_kv_type_from_name(name, &t)) return -1;
    *type = (gemma4_kv_type)t;
    return 0;
}

void gemma4_kv_usage_get(const gemma4_session *s, gemma4_kv_usage *u) {
    g4_kv_usage k;
    g4_kv_usage_get(s->kv, &k);
    *u = (gemma4_kv_usage){.bytes_used = k.bytes_used, .bytes_allocated = k.bytes_allocated, .max_bytes = k.max_bytes};
    for (int i = 0; i < G4_KV_KINDS; i++) {
        u->pages_used[i] = k.pages_used[i];
        u->pages_allocated[i] = k.pages_allocated[i];
        u->page_bytes[i] = k.page_bytes[i];
    }
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
        if (!rc) {
            g4_dumping = s->dump ? s : NULL;
            g4_forward(s, tokens + done, n_tok, s->out_rows, n_out, out);
            g4_dumping = NULL;
            rc = g4_matmul_failed(m->path, err); /* the ubatch is then not kept */
        }
        if (rc) {
            for (int32_t sq = 0; sq < n_seq; sq++) g4_kv_unreserve(s->kv, sq);
            return -1;
        }
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

