/* Speculative decoding: a draft source guesses a few tokens, one batched
 * forward pass evaluates the pending token and the guesses together, and
 * the sampler walks the rows in order, keeping guesses while it picks them.
 *
 * Why sampling and comparing is the whole verification: the guesses are
 * deterministic (q one-hot on d), so speculative sampling accepts d with
 * min(1, p(d) / 1) = p(d) and otherwise draws from p with d removed and
 * renormalised. Drawing x from p and keeping d when x == d does both at
 * once: x == d with probability p(d), and given x != d, x is distributed
 * as that residual. So each token is drawn from the target's final
 * distribution (after every sampler stage) by the sampler itself, with the
 * same calls in the same order as plain decoding: a seeded run gives the
 * same tokens with or without drafts, as long as a row of the batched pass
 * has the same logits as the single-token step (tests/test_speculative.c
 * measures that).
 *
 * Rolling back: the guesses after the first miss were written into the KV
 * cache and are cut off with gemma4_seq_truncate. The sliding-window pages
 * keep one page of slack, so cutting back up to a page size of positions
 * right after a pass always works; beyond that (a draft longer than a page,
 * or small pages), truncate may stop at an older checkpoint, and the
 * tokens from there are fed again. */
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define DEFAULT_DRAFT_MAX 8

typedef struct seq_state {
    int32_t draft_len;
    gemma4_spec_stats st;
    /* The target's hidden state at the row that produced the pending
     * token, valid while the sequence is still at hidden_pos with that
     * token pending (a caller may rewrite the sequence between steps). */
    float *hidden;
    int32_t hidden_pos, hidden_token;
} seq_state;

struct gemma4_spec {
    gemma4_session *s;
    gemma4_draft_fn draft;
    void *user;
    gemma4_spec_params p;
    seq_state *seqs;
    /* the batch of a step: rows, their sequences, all wanted, their logits */
    int32_t *tokens, *row_seq;
    int32_t *first_row, *n_draft, *pos0; /* per sequence of the step */
    bool *want;
    float *logits;
    float *hidden; /* rows of hidden states, with p.hidden */
    int32_t rows_cap, seqs_cap;
    /* the tokens of a sequence to feed again after a short truncate */
    int32_t *refeed;
    int32_t refeed_cap;
};

static int32_t clamp(int32_t x, int32_t lo, int32_t hi) { return x < lo ? lo : x > hi ? hi : x; }

gemma4_spec *gemma4_spec_new(gemma4_session *s, gemma4_draft_fn draft, void *user, const gemma4_spec_params *p,
                             char *err) {
    const char *path = s->m->path;
    gemma4_spec_params q = p ? *p : (gemma4_spec_params){0};
    if (!draft) return g4_error(err, NULL, "%s: speculative decoding needs a draft source", path), NULL;
    if (q.draft_max < 0 || q.draft_max > GEMMA4_DRAFT_CAP || q.draft_min < 0)
        return g4_error(err, NULL, "%s: draft length %d..%d: the most is %d guesses per step", path, q.draft_min,
                        q.draft_max, GEMMA4_DRAFT_CAP), NULL;
    if (!q.draft_max) q.draft_max = DEFAULT_DRAFT_MAX;
    if (!q.draft_min) q.draft_min = 1;
    if (q.draft_min > q.draft_max)
        return g4_error(err, NULL, "%s: draft-min %d is above draft-max %d", path, q.draft_min, q.draft_max), NULL;
    gemma4_spec *sp = calloc(1, sizeof *sp);
    const int32_t n_seq = gemma4_session_n_seq(s);
    if (!sp || !(sp->seqs = calloc((size_t)n_seq, sizeof *sp->seqs))) {
        gemma4_spec_free(sp);
        return g4_error(err, NULL, "%s: out of memory", path), NULL;
    }
    *sp = (gemma4_spec){.s = s, .draft = draft, .user = user, .p = q, .seqs = sp->seqs};
    for (int32_t i = 0; i < n_seq; i++) {
        seq_state *st = &sp->seqs[i];
        st->draft_len = q.draft_max;
        st->hidden_pos = -1;
        if (q.hidden && !(st->hidden = malloc((size_t)s->m->n_embd * sizeof *st->hidden))) {
            gemma4_spec_free(sp);
            return g4_error(err, NULL, "%s: out of memory", path), NULL;
        }
    }
    return sp;
}

void gemma4_spec_free(gemma4_spec *sp) {
    if (!sp) return;
    for (int32_t i = 0; sp->seqs && i < gemma4_session_n_seq(sp->s); i++) free(sp->seqs[i].hidden);
    free(sp->seqs);
    free(sp->hidden);
    free(sp->tokens);
    free(sp->row_seq);
    free(sp->first_row);
    free(sp->n_draft);
    free(sp->pos0);
    free(sp->want);
    free(sp->logits);
    free(sp->refeed);
    free(sp);
}

/* Room for n sequences and their rows (each its pending token and up to
 * draft_max guesses). */
static int fit(gemma4_spec *sp, int32_t n, char *err) {
    const int32_t rows = n * (sp->p.draft_max + 1);
    if (n > sp->seqs_cap) {
        int32_t *f = realloc(sp->first_row, (size_t)n * sizeof *f);
        if (f) sp->first_row = f;
        int32_t *d = f ? realloc(sp->n_draft, (size_t)n * sizeof *d) : NULL;
        if (d) sp->n_draft = d;
        int32_t *p0 = d ? realloc(sp->pos0, (size_t)n * sizeof *p0) : NULL;
        if (p0) sp->pos0 = p0;
        if (!p0) return g4_error(err, NULL, "%s: out of memory", sp->s->m->path);
        sp->seqs_cap = n;
    }
    if (rows > sp->rows_cap) {
        free(sp->tokens), free(sp->row_seq), free(sp->want), free(sp->logits), free(sp->hidden);
        sp->hidden = NULL;
        sp->tokens = malloc((size_t)rows * sizeof *sp->tokens);
        sp->row_seq = malloc((size_t)rows * sizeof *sp->row_seq);
        sp->want = malloc((size_t)rows * sizeof *sp->want);
        sp->logits = malloc((size_t)rows * (size_t)sp->s->m->n_vocab * sizeof *sp->logits);
        if (sp->p.hidden) sp->hidden = malloc((size_t)rows * (size_t)sp->s->m->n_embd * sizeof *sp->hidden);
        sp->rows_cap = sp->tokens && sp->row_seq && sp->want && sp->logits && (sp->hidden || !sp->p.hidden) ? rows : 0;
        if (!sp->rows_cap) return g4_error(err, NULL, "%s: out of memory for %d rows of logits", sp->s->m->path, rows);
    }
    return 0;
}

/* Cuts seq back to keep positions, feeding again what truncate could not
 * keep (its sliding pages were recycled). */
static int roll_back(gemma4_spec *sp, int32_t seq, int32_t keep, char *err) {
    gemma4_session *s = sp->s;
    if (gemma4_seq_pos(s, seq) <= keep) return 0;
    if (keep > sp->refeed_cap) {
        int32_t *r = realloc(sp->refeed, 2 * (size_t)keep * sizeof *r);
        if (!r) return g4_error(err, NULL, "%s: out of memory", s->m->path);
        sp->refeed = r, sp->refeed_cap = keep;
    }
    int32_t *toks = sp->refeed, *ids = sp->refeed + keep;
    /* copied first: truncate promises nothing about the tokens it drops */
    memcpy(toks, gemma4_seq_tokens(s, seq), (size_t)keep * sizeof *toks);
    const int32_t got = gemma4_seq_truncate(s, seq, keep);
    if (got == keep) return 0;
    sp->seqs[seq].st.refed += keep - got;
    for (int32_t i = got; i < keep; i++) ids[i] = seq;
    return gemma4_decode(s, keep - got, toks + got, ids + got, NULL, NULL, err);
}

/* The guesses for one sequence, at most its draft length and what its
 * context has room for after the pending token. */
static int32_t get_drafts(gemma4_spec *sp, int32_t seq, int32_t token, int32_t *draft, char *err) {
    gemma4_session *s = sp->s;
    const int32_t room = gemma4_session_n_ctx(s) - gemma4_seq_pos(s, seq) - 1;
    int32_t max = sp->p.fixed ? sp->p.draft_max : sp->seqs[seq].draft_len;
    if (max > room) max = room;
    if (max <= 0) return 0;
    const seq_state *st = &sp->seqs[seq];
    const bool known = st->hidden && st->hidden_pos == gemma4_seq_pos(s, seq) && st->hidden_token == token;
    const int32_t nd = sp->draft(sp->user, s, seq, token, known ? st->hidden : NULL, max, draft);
    if (nd < 0 || nd > max)
        return g4_error(err, NULL, "%s: sequence %d: the draft source failed (returned %d for at most %d guesses)",
                        s->m->path, seq, nd, max);
    return nd;
}

int gemma4_spec_step(gemma4_spec *sp, int32_t n, const int32_t *seq, const int32_t *token, gemma4_sampler *const *smp,
                     int32_t *out, int32_t *n_out, char *err) {
    gemma4_session *s = sp->s;
    const gemma4_model *m = s->m;
    const int32_t n_seq = gemma4_session_n_seq(s);
    if (n <= 0) return g4_error(err, NULL, "%s: speculative step over %d sequences", m->path, n);
    for (int32_t i = 0; i < n; i++) {
        if (seq[i] < 0 || seq[i] >= n_seq)
            return g4_error(err, NULL, "%s: sequence id %d is outside 0..%d", m->path, seq[i], n_seq - 1);
        for (int32_t j = 0; j < i; j++)
            if (seq[j] == seq[i]) return g4_error(err, NULL, "%s: sequence %d appears twice in one step", m->path, seq[i]);
        if (!smp[i]) return g4_error(err, NULL, "%s: sequence %d has no sampler", m->path, seq[i]);
    }
    if (fit(sp, n, err)) return -1;

    /* the batch: per sequence its pending token, then its guesses */
    int32_t rows = 0;
    for (int32_t i = 0; i < n; i++) {
        sp->first_row[i] = rows;
        sp->pos0[i] = gemma4_seq_pos(s, seq[i]);
        sp->tokens[rows] = token[i];
        const int32_t nd = get_drafts(sp, seq[i], token[i], sp->tokens + rows + 1, err);
        if (nd < 0) return -1;
        sp->n_draft[i] = nd;
        for (int32_t j = 0; j <= nd; j++) sp->row_seq[rows + j] = seq[i], sp->want[rows + j] = true;
        rows += nd + 1;
    }
    int rc = sp->p.hidden ? gemma4_decode_hidden(s, rows, sp->tokens, sp->row_seq, sp->want, sp->logits, sp->hidden, err)
                          : gemma4_decode(s, rows, sp->tokens, sp->row_seq, sp->want, sp->logits, err);

    /* the sampler walks each sequence's rows while it picks the guesses */
    for (int32_t i = 0; i < n && !rc; i++) {
        const int32_t *draft = sp->tokens + sp->first_row[i] + 1, nd = sp->n_draft[i];
        int32_t *o = out + (size_t)i * (GEMMA4_DRAFT_CAP + 1), k = 0, matched = 0;
        for (int32_t j = 0; j <= nd; j++) {
            const float *row = sp->logits + (size_t)(sp->first_row[i] + j) * (size_t)m->n_vocab;
            const int32_t x = gemma4_sample(smp[i], row);
            if (x < 0) {
                rc = g4_error(err, NULL, "%s: sequence %d: the sampler found no token to pick", m->path, seq[i]);
                break;
            }
            o[k++] = x;
            if (j == nd || x != draft[j]) break;
            matched++;
            if (!sp->p.ignore_eog && gemma4_token_is_eog(m, x)) break;
        }
        n_out[i] = k;
        seq_state *st = &sp->seqs[seq[i]];
        if (st->hidden && !rc) { /* the row whose pick is now pending */
            const size_t d = (size_t)m->n_embd;
            memcpy(st->hidden, sp->hidden + (size_t)(sp->first_row[i] + k - 1) * d, d * sizeof *st->hidden);
            st->hidden_pos = sp->pos0[i] + k, st->hidden_token = o[k - 1];
        }
        st->st.steps++;
        st->st.drafted += nd;
        st->st.accepted += matched;
        /* HF's assisted generation rule: +2 when every guess was kept, -1 otherwise */
        if (nd > 0)
            st->draft_len = clamp(st->draft_len + (matched == nd ? 2 : -1), sp->p.draft_min, sp->p.draft_max);
    }
    /* Kept: the pending token and the guesses the sampler picked, up to the
     * last token out, which is pending in turn. After a failure: nothing. */
    for (int32_t i = 0; i < n; i++) {
        char why[G4_ERR_LEN];
        if (roll_back(sp, seq[i], sp->pos0[i] + (rc ? 0 : n_out[i]), rc ? why : err)) rc = -1;
    }
    return rc;
}

/* ---- prompt lookup ---- */

/* Token idx of the sequence's history h (its tokens, then last at pos),
 * continued by the guesses made so far: a match that runs into the end of
 * the history repeats itself, which is right for a periodic tail. */
static int32_t hist(const int32_t *toks, int32_t pos, int32_t last, const int32_t *draft, int32_t idx) {
    return idx < pos ? toks[idx] : idx == pos ? last : draft[idx - pos - 1];
}

int32_t gemma4_draft_lookup(void *user, gemma4_session *s, int32_t seq, int32_t last_token, const float *hidden,
                            int32_t max, int32_t *draft) {
    (void)hidden;
    const gemma4_lookup_params *p = user;
    const int32_t lo = p && p->ngram_min > 0 ? p->ngram_min : 1, hi = p && p->ngram_max > 0 ? p->ngram_max : 4;
    const int32_t *toks = gemma4_seq_tokens(s, seq), pos = gemma4_seq_pos(s, seq), len = pos + 1;
    if (pos < 0) return -1; /* toks is read below pos only */
    for (int32_t n = hi; n >= lo; n--) {
        if (n >= len) continue;
        /* the latest earlier occurrence of the last n tokens */
        for (int32_t j = len - n - 1; j >= 0; j--) {
            int32_t k = 0;
            while (k < n && hist(toks, pos, last_token, NULL, j + k) == hist(toks, pos, last_token, NULL, len - n + k)) k++;
            if (k < n) continue;
            for (int32_t i = 0; i < max; i++) draft[i] = hist(toks, pos, last_token, draft, j + n + i);
            return max;
        }
    }
    return 0;
}

void gemma4_spec_stats_get(const gemma4_spec *sp, int32_t seq, gemma4_spec_stats *st) {
    *st = (gemma4_spec_stats){0};
    const int32_t n_seq = gemma4_session_n_seq(sp->s);
    if (seq >= 0) {
        if (seq < n_seq) *st = sp->seqs[seq].st, st->draft_len = sp->seqs[seq].draft_len;
        return;
    }
    for (int32_t i = 0; i < n_seq; i++) {
        st->steps += sp->seqs[i].st.steps;
        st->drafted += sp->seqs[i].st.drafted;
        st->accepted += sp->seqs[i].st.accepted;
        st->refed += sp->seqs[i].st.refed;
    }
}
