/* Speculative decoding (speculative.c) against plain decoding, one token per
 * forward pass, written out here:
 *   - a row of a batched pass has the bits of the same token fed alone (the
 *     premise of exact equality), measured per weight type;
 *   - greedy decoding of the trained model, and seeded sampling of the
 *     fixture models (their greedy output repeats one token), give exactly
 *     the tokens plain decoding gives over 320 tokens, with drafters that are
 *     always right (the true continuation, computed beforehand), always
 *     wrong, right half the time, and prompt lookup; draft lengths 1, 2, 4,
 *     8 and adaptive; F32, F16 and Q8_0 KV; pages smaller than a draft
 *     (truncate falls short and the tokens are fed again); three sequences
 *     in one batch, one of them without drafts;
 *   - the joint distribution of the first two tokens under speculation is
 *     the target's (chi-square over 4000 seeded runs, p > 1e-4: the seeds
 *     are fixed, so the outcome is too), for drafters that are right, wrong
 *     and random;
 *   - the MTP drafters of tests/data/mtp as the draft source (hidden states
 *     passed along): greedy and seeded sampling equal plain decoding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4_internal.h"
#include "tests/harness.h"

enum { N_GEN = 320, MAX_SEQ = 3, MAX_PROMPT = 64 };

/* xorshift64*, for the test's own random choices */
static uint64_t next_rand(uint64_t *x) {
    *x ^= *x >> 12, *x ^= *x << 25, *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}
static double rand01(uint64_t *x) { return (double)(next_rand(x) >> 11) * 0x1.0p-53; }

static int32_t argmax_row(const float *row, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

static gemma4_model *load(const char *path) {
    char err[G4_ERR_LEN] = "";
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "%s", err);
    return m;
}

typedef struct prompt {
    int32_t ids[MAX_PROMPT];
    int32_t n;
} prompt;

/* Feeds p to sequence seq with the last row's logits wanted. */
static int feed_prompt(gemma4_session *s, int32_t seq, const prompt *p, float *logits, char *err) {
    int32_t seqs[MAX_PROMPT];
    bool want[MAX_PROMPT] = {0};
    for (int32_t i = 0; i < p->n; i++) seqs[i] = seq;
    want[p->n - 1] = true;
    return gemma4_decode(s, p->n, p->ids, seqs, want, logits, err);
}

/* ---- plain decoding: the reference ---- */

/* n tokens after prompt p in a fresh session: out[0] sampled from the
 * prompt's logits, each then fed alone. */
static int plain_generate(const gemma4_model *m, const gemma4_session_params *sprm, const prompt *p,
                          const gemma4_sampling *sa, int32_t *out, int32_t n) {
    char err[G4_ERR_LEN] = "";
    const int32_t n_vocab = gemma4_n_vocab(m);
    gemma4_session *s = gemma4_session_new(m, sprm, err);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    gemma4_sampler *smp = gemma4_sampler_new(sa, n_vocab);
    int rc = s && logits && smp && !feed_prompt(s, 0, p, logits, err) ? 0 : -1;
    for (int32_t i = 0; i < n && !rc; i++) {
        out[i] = gemma4_sample(smp, logits);
        if (out[i] < 0) rc = -1;
        else if (i + 1 < n) rc = gemma4_eval(s, &out[i], 1, logits, false, err);
    }
    CHECK(rc == 0, "plain generation: %s", err);
    free(logits);
    gemma4_sampler_free(smp);
    gemma4_session_free(s);
    return rc;
}

/* ---- drafters ---- */

/* Per sequence: guesses from the true continuation, each right with
 * probability p_right (1: always, 0: never), else another token; or
 * prompt lookup; or none. */
typedef struct drafter {
    enum { TRUTH, LOOKUP, NONE } kind;
    const int32_t *truth; /* the plain run's tokens; truth[g] is generated token g */
    int32_t n_prompt;
    double p_right;
    uint64_t rng;
    int32_t n_vocab;
    int32_t off_track; /* calls whose last_token was not the true one */
} drafter;

static int32_t test_draft(void *user, gemma4_session *s, int32_t seq, int32_t last, const float *hidden, int32_t max,
                          int32_t *draft) {
    drafter *d = &((drafter *)user)[seq];
    if (d->kind == NONE) return 0;
    if (d->kind == LOOKUP) return gemma4_draft_lookup(NULL, s, seq, last, hidden, max, draft);
    const int32_t g = gemma4_seq_pos(s, seq) - d->n_prompt; /* last is generated token g */
    if (g < 0 || g >= N_GEN || d->truth[g] != last) {
        d->off_track++;
        return 0;
    }
    int32_t k = 0;
    for (; k < max && g + 1 + k < N_GEN; k++) {
        const int32_t t = d->truth[g + 1 + k];
        const bool right = d->p_right >= 1 || (d->p_right > 0 && rand01(&d->rng) < d->p_right);
        draft[k] = right ? t : (int32_t)((t + 1 + next_rand(&d->rng) % (uint64_t)(d->n_vocab - 1)) % d->n_vocab);
    }
    return k;
}

/* ---- speculative decoding ---- */

/* n (at most N_GEN) tokens after prompts[q] for sequences 0..n_seq-1 of
 * one session, all advancing together, one gemma4_spec_step per round. */
static int spec_generate(const gemma4_model *m, const gemma4_session_params *sprm, int32_t n_seq, const prompt *prompts,
                         const gemma4_sampling *sa, drafter *d, const gemma4_spec_params *pp, int32_t out[][N_GEN],
                         int32_t n_gen, gemma4_spec_stats *st) {
    char err[G4_ERR_LEN] = "";
    const int32_t n_vocab = gemma4_n_vocab(m);
    gemma4_session *s = gemma4_session_new(m, sprm, err);
    gemma4_spec *sp = s ? gemma4_spec_new(s, test_draft, d, pp, err) : NULL;
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    gemma4_sampler *smp[MAX_SEQ] = {0};
    int32_t count[MAX_SEQ] = {0}, got[MAX_SEQ][GEMMA4_DRAFT_CAP + 1], n_got[MAX_SEQ];
    int rc = sp && logits ? 0 : -1;
    for (int32_t q = 0; q < n_seq && !rc; q++) {
        smp[q] = gemma4_sampler_new(sa, n_vocab);
        rc = smp[q] && !feed_prompt(s, q, &prompts[q], logits, err) ? 0 : -1;
        if (!rc) out[q][count[q]++] = gemma4_sample(smp[q], logits);
    }
    for (int rounds = 0; !rc && rounds < n_gen; rounds++) {
        int32_t ids[MAX_SEQ], tok[MAX_SEQ], n = 0;
        gemma4_sampler *sm[MAX_SEQ];
        for (int32_t q = 0; q < n_seq; q++)
            if (count[q] < n_gen) ids[n] = q, tok[n] = out[q][count[q] - 1], sm[n++] = smp[q];
        if (!n) break;
        rc = gemma4_spec_step(sp, n, ids, tok, sm, &got[0][0], n_got, err);
        for (int32_t i = 0; i < n && !rc; i++)
            for (int32_t k = 0; k < n_got[i] && count[ids[i]] < n_gen; k++) out[ids[i]][count[ids[i]]++] = got[i][k];
    }
    for (int32_t q = 0; q < n_seq; q++) CHECK(rc || count[q] == n_gen, "sequence %d: %d tokens", q, count[q]);
    CHECK(rc == 0, "speculative generation: %s", err);
    if (sp) gemma4_spec_stats_get(sp, -1, st);
    for (int32_t q = 0; q < n_seq; q++) gemma4_sampler_free(smp[q]);
    free(logits);
    gemma4_spec_free(sp);
    gemma4_session_free(s);
    return rc;
}

static int first_diff(const int32_t *a, const int32_t *b, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return -1;
}

/* ---- a batched row against the same token fed alone ---- */

/* Rows of a 9-token pass after prompt p whose logits have exactly the bits
 * of the same tokens fed one at a time; *max_diff their largest gap. */
static int32_t batch_vs_single(const gemma4_model *m, gemma4_kv_type kv, const prompt *p, float *max_diff) {
    enum { T = 9 };
    char err[G4_ERR_LEN] = "";
    const int32_t n_vocab = gemma4_n_vocab(m);
    const gemma4_session_params sprm = {.n_ctx = 256, .n_threads = 2, .type_k = kv, .type_v = kv};
    gemma4_session *a = gemma4_session_new(m, &sprm, err), *b = gemma4_session_new(m, &sprm, err);
    float *la = malloc((size_t)T * n_vocab * sizeof *la), *lb = malloc((size_t)T * n_vocab * sizeof *lb);
    int32_t toks[T];
    uint64_t r = 77;
    for (int i = 0; i < T; i++) toks[i] = (int32_t)(next_rand(&r) % (uint64_t)n_vocab);
    int rc = a && b && la && lb && !feed_prompt(a, 0, p, la, err) && !feed_prompt(b, 0, p, lb, err) &&
                     !gemma4_eval(a, toks, T, la, true, err)
                 ? 0
                 : -1;
    for (int i = 0; i < T && !rc; i++) rc = gemma4_eval(b, &toks[i], 1, lb + (size_t)i * n_vocab, false, err);
    CHECK(rc == 0, "batch against single: %s", err);
    int32_t same = 0;
    *max_diff = 0;
    for (int i = 0; i < T && !rc; i++) {
        const float *x = la + (size_t)i * n_vocab, *y = lb + (size_t)i * n_vocab;
        same += !memcmp(x, y, (size_t)n_vocab * sizeof *x);
        for (int32_t j = 0; j < n_vocab; j++) *max_diff = fmaxf(*max_diff, fabsf(x[j] - y[j]));
    }
    free(la), free(lb);
    gemma4_session_free(a), gemma4_session_free(b);
    return rc ? -1 : same;
}

/* ---- equality over drafters, lengths and KV types ---- */

typedef struct drafter_kind {
    const char *name;
    int kind;
    double p_right;
} drafter_kind;
static const drafter_kind kinds[] = {{"right", TRUTH, 1.0}, {"wrong", TRUTH, 0.0}, {"mixed", TRUTH, 0.5}, {"lookup", LOOKUP, 0}};

/* One speculative run of sequence 0 against truth; returns the stats. */
static gemma4_spec_stats check_one(const gemma4_model *m, const char *name, const gemma4_session_params *sprm,
                                   const prompt *p, const gemma4_sampling *sa, const int32_t *truth,
                                   const drafter_kind *k, const gemma4_spec_params *pp, int32_t n_gen) {
    drafter d = {.kind = k->kind, .truth = truth, .n_prompt = p->n, .p_right = k->p_right, .rng = 12345,
                 .n_vocab = gemma4_n_vocab(m)};
    static int32_t out[MAX_SEQ][N_GEN];
    gemma4_spec_stats st = {0};
    if (spec_generate(m, sprm, 1, p, sa, &d, pp, out, n_gen, &st)) return st;
    const int diff = first_diff(out[0], truth, n_gen);
    CHECK(diff < 0, "%s kv %d page %d, %s drafter, draft %d%s: token %d is %d, plain decoding gave %d", name,
          sprm->type_k, sprm->page_size, k->name, pp->draft_max, pp->fixed ? "" : " adaptive", diff,
          diff >= 0 ? out[0][diff] : 0, diff >= 0 ? truth[diff] : 0);
    CHECK(d.off_track == 0, "%s: %s drafter: %d steps started off the true sequence", name, k->name, d.off_track);
    /* the drafters are what they claim: every pass checked guesses, and the
     * right one had them all kept, the wrong one none */
    if (k->kind == TRUTH) CHECK(st.drafted > 0, "%s: %s drafter: no guesses checked", name, k->name);
    if (k->p_right == 1.0 && k->kind == TRUTH)
        CHECK(st.accepted == st.drafted, "%s: right drafter: %lld of %lld kept", name, (long long)st.accepted,
              (long long)st.drafted);
    if (k->p_right == 0.0 && k->kind == TRUTH)
        CHECK(st.accepted <= st.drafted / 50, "%s: wrong drafter: %lld of %lld kept", name, (long long)st.accepted,
              (long long)st.drafted);
    return st;
}

static void equality(const char *name, const gemma4_model *m, const prompt *p, const gemma4_sampling *sa,
                     bool full_matrix) {
    static const gemma4_kv_type kvs[] = {GEMMA4_KV_F32, GEMMA4_KV_F16, GEMMA4_KV_Q8_0};
    for (size_t ik = 0; ik < (full_matrix ? sizeof kvs / sizeof kvs[0] : 1); ik++) {
        const gemma4_session_params sprm = {.n_ctx = 512, .n_threads = 2, .type_k = kvs[ik], .type_v = kvs[ik]};
        int32_t truth[N_GEN];
        if (plain_generate(m, &sprm, p, sa, truth, N_GEN)) continue;
        int changes = 0;
        for (int i = 1; i < N_GEN; i++) changes += truth[i] != truth[i - 1];
        printf("%s kv %d: the reference has %d changes of token in %d\n", name, kvs[ik], changes, N_GEN);
        for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
            static const int32_t lens[] = {1, 2, 4, 8};
            for (size_t li = 0; li < 4; li++) {
                if ((!full_matrix || ik > 0) && lens[li] != 4) continue;
                check_one(m, name, &sprm, p, sa, truth, &kinds[ki], &(gemma4_spec_params){.draft_max = lens[li], .fixed = true, .ignore_eog = true}, N_GEN);
            }
            gemma4_spec_stats st = check_one(m, name, &sprm, p, sa, truth, &kinds[ki],
                                             &(gemma4_spec_params){.draft_max = 8, .ignore_eog = true}, N_GEN);
            if (ik == 0)
                printf("%s %s drafter, adaptive 1..8: %lld passes for %d tokens, %lld of %lld guesses kept\n", name,
                       kinds[ki].name, (long long)st.steps, N_GEN, (long long)st.accepted, (long long)st.drafted);
        }
    }
}

/* Pages of 4 positions under drafts of 8: a miss rolls back further than
 * the sliding pages' slack, truncate falls short (to 0: there is no
 * checkpoint) and the step feeds the tokens again. 96 tokens: each such
 * miss feeds the whole sequence again. */
static void small_pages(const char *name, const gemma4_model *m, const prompt *p, const gemma4_sampling *sa) {
    const gemma4_session_params sprm = {.n_ctx = 512, .n_threads = 2, .page_size = 4};
    int32_t truth[N_GEN] = {0};
    if (plain_generate(m, &sprm, p, sa, truth, 96)) return;
    gemma4_spec_stats st = check_one(m, name, &sprm, p, sa, truth, &kinds[2],
                                     &(gemma4_spec_params){.draft_max = 8, .fixed = true, .ignore_eog = true}, 96);
    CHECK(st.refed > 0, "%s: pages of 4, drafts of 8: no truncate fell short", name);
    printf("%s: pages of 4, drafts of 8: %lld positions fed again\n", name, (long long)st.refed);
}

/* Three sequences in one batch: a mixed drafter, none (plain steps inside
 * the speculative batch) and prompt lookup; each must equal its own plain
 * run. */
static void concurrent(const char *name, const gemma4_model *m, const prompt *prompts, const gemma4_sampling *sa) {
    const gemma4_session_params one = {.n_ctx = 512, .n_threads = 2}, three = {.n_ctx = 512, .n_threads = 2, .n_seq = 3};
    static int32_t truth[MAX_SEQ][N_GEN], out[MAX_SEQ][N_GEN];
    for (int q = 0; q < MAX_SEQ; q++)
        if (plain_generate(m, &one, &prompts[q], sa, truth[q], N_GEN)) return;
    drafter d[MAX_SEQ];
    const int kind[MAX_SEQ] = {TRUTH, NONE, LOOKUP};
    for (int q = 0; q < MAX_SEQ; q++)
        d[q] = (drafter){.kind = kind[q], .truth = truth[q], .n_prompt = prompts[q].n, .p_right = 0.5,
                         .rng = 99 + (uint64_t)q, .n_vocab = gemma4_n_vocab(m)};
    gemma4_spec_stats st;
    if (spec_generate(m, &three, MAX_SEQ, prompts, sa, d, &(gemma4_spec_params){.draft_max = 4, .ignore_eog = true}, out,
                      N_GEN, &st))
        return;
    for (int q = 0; q < MAX_SEQ; q++) {
        const int diff = first_diff(out[q], truth[q], N_GEN);
        CHECK(diff < 0, "%s: 3 sequences: sequence %d differs from its plain run at token %d", name, q, diff);
    }
}

/* ---- the sampled distribution ---- */

/* Upper regularised incomplete gamma Q(a, x): the chi-square p-value of
 * statistic 2x with 2a degrees of freedom. Series below a + 1, Lentz's
 * continued fraction above. */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1;
    const double lead = exp(-x + a * log(x) - lgamma(a));
    if (x < a + 1) {
        double term = 1 / a, sum = term;
        for (int n = 1; n < 10000 && fabs(term) > 1e-17 * fabs(sum); n++) sum += term *= x / (a + n);
        return 1 - sum * lead;
    }
    double b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 10000; i++) {
        const double an = -i * (i - a);
        b += 2;
        d = an * d + b, d = fabs(d) < 1e-300 ? 1e-300 : d;
        c = b + an / c, c = fabs(c) < 1e-300 ? 1e-300 : c;
        d = 1 / d;
        const double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return lead * h;
}

/* Chi-square p-value of counts against expected counts over n cells, the
 * cells expecting fewer than 5 pooled into one. A count in a cell that
 * expects nothing gives 0. */
static double chi_square_p(const double *count, const double *expect, int n) {
    double stat = 0, pool_c = 0, pool_e = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        if (expect[i] == 0 && count[i] > 0) return 0;
        if (expect[i] < 5) pool_c += count[i], pool_e += expect[i];
        else stat += (count[i] - expect[i]) * (count[i] - expect[i]) / expect[i], cells++;
    }
    if (pool_e > 0) stat += (pool_c - pool_e) * (pool_c - pool_e) / pool_e, cells++;
    return cells < 2 ? 1 : gamma_q((cells - 1) / 2.0, stat / 2);
}

enum { TOP_K = 12, RUNS = 4000 };

/* The sampler's final distribution written out: the TOP_K largest logits
 * (ties to the lower id), softmax at temperature temp. */
static void target_dist(const float *logits, int32_t n_vocab, float temp, int32_t *ids, double *prob) {
    for (int k = 0; k < TOP_K; k++) {
        int32_t best = -1;
        for (int32_t i = 0; i < n_vocab; i++) {
            bool taken = false;
            for (int j = 0; j < k; j++) taken |= ids[j] == i;
            if (!taken && (best < 0 || logits[i] > logits[best])) best = i;
        }
        ids[k] = best;
    }
    double sum = 0;
    for (int k = 0; k < TOP_K; k++) sum += prob[k] = exp((logits[ids[k]] - logits[ids[0]]) / temp);
    for (int k = 0; k < TOP_K; k++) prob[k] /= sum;
}

typedef struct dist_drafter {
    int mode; /* 0 right (the two most likely), 1 wrong (tokens the sampler cannot pick), 2 random in the top k */
    int32_t right[2], wrong[2];
    const int32_t *top; /* the first position's candidates */
    uint64_t rng;
} dist_drafter;

static int32_t dist_draft(void *user, gemma4_session *s, int32_t seq, int32_t last, const float *hidden, int32_t max,
                          int32_t *draft) {
    (void)s, (void)seq, (void)last, (void)hidden;
    dist_drafter *d = user;
    const int32_t n = max < 2 ? max : 2;
    for (int32_t i = 0; i < n; i++)
        draft[i] = d->mode == 0 ? d->right[i] : d->mode == 1 ? d->wrong[i] : d->top[next_rand(&d->rng) % TOP_K];
    return n;
}

static void distribution(const char *name, const gemma4_model *m, const prompt *p) {
    char err[G4_ERR_LEN] = "";
    const int32_t n_vocab = gemma4_n_vocab(m);
    const float temp = 4.0f;
    const gemma4_sampling sa = {.temperature = temp, .top_k = TOP_K, .top_p = 1.0f};
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 256, .n_threads = 2}, err);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    if (!s || !logits || feed_prompt(s, 0, p, logits, err)) {
        CHECK(0, "%s: %s", name, err);
        free(logits), gemma4_session_free(s);
        return;
    }
    /* the pending token is fixed: the prompt's most likely next one */
    const int32_t t = argmax_row(logits, n_vocab);
    /* the target: p1 after t, p2 after t and each candidate of p1 */
    int32_t id1[TOP_K], id2[TOP_K][TOP_K];
    double p1[TOP_K], p2[TOP_K][TOP_K];
    int rc = gemma4_eval(s, &t, 1, logits, false, err);
    if (!rc) target_dist(logits, n_vocab, temp, id1, p1);
    int32_t least = 0;
    for (int32_t i = 1; i < n_vocab && !rc; i++)
        if (logits[i] < logits[least]) least = i;
    for (int k = 0; k < TOP_K && !rc; k++) {
        rc = gemma4_eval(s, &id1[k], 1, logits, false, err);
        if (!rc) target_dist(logits, n_vocab, temp, id2[k], p2[k]);
        gemma4_seq_truncate(s, 0, p->n + 1);
    }
    gemma4_seq_truncate(s, 0, p->n);
    CHECK(rc == 0, "%s: %s", name, err);
    gemma4_spec *sp = NULL;
    dist_drafter dd = {.top = id1, .rng = 5};
    dd.right[0] = id1[0], dd.right[1] = id2[0][0];
    dd.wrong[0] = dd.wrong[1] = least;
    static const char *modes[] = {"right", "wrong", "random"};
    for (int mode = 0; mode < 3 && !rc; mode++) {
        dd.mode = mode;
        sp = gemma4_spec_new(s, dist_draft, &dd, &(gemma4_spec_params){.draft_max = 2, .fixed = true, .ignore_eog = true}, err);
        double count[TOP_K * TOP_K + 1] = {0}, expect[TOP_K * TOP_K + 1] = {0}, c1[TOP_K + 1] = {0}, e1[TOP_K + 1] = {0};
        for (int r = 0; r < RUNS && sp && !rc; r++) {
            gemma4_sampling seeded = sa;
            seeded.seed = 1000 + (uint64_t)r;
            gemma4_sampler *smp = gemma4_sampler_new(&seeded, n_vocab);
            int32_t got[2][GEMMA4_DRAFT_CAP + 1], n_got = 0, x[2], nx = 0, tok = t, seq = 0;
            while (nx < 2 && !rc) {
                rc = gemma4_spec_step(sp, 1, &seq, &tok, &smp, &got[0][0], &n_got, err);
                for (int32_t k = 0; k < n_got && nx < 2 && !rc; k++) x[nx++] = got[0][k];
                tok = x[nx - 1];
            }
            gemma4_sampler_free(smp);
            gemma4_seq_truncate(s, 0, p->n);
            if (rc) break;
            int i1 = TOP_K, i2 = TOP_K;
            for (int k = 0; k < TOP_K; k++) i1 = id1[k] == x[0] ? k : i1;
            for (int k = 0; i1 < TOP_K && k < TOP_K; k++) i2 = id2[i1][k] == x[1] ? k : i2;
            c1[i1]++;
            count[i1 < TOP_K && i2 < TOP_K ? i1 * TOP_K + i2 : TOP_K * TOP_K]++;
        }
        CHECK(rc == 0 && sp, "%s: %s drafter: %s", name, modes[mode], err);
        for (int a = 0; a < TOP_K; a++) {
            e1[a] = RUNS * p1[a];
            for (int b = 0; b < TOP_K; b++) expect[a * TOP_K + b] = RUNS * p1[a] * p2[a][b];
        }
        const double pv1 = chi_square_p(c1, e1, TOP_K + 1), pv2 = chi_square_p(count, expect, TOP_K * TOP_K + 1);
        CHECK(pv1 > 1e-4, "%s: %s drafter: first token's distribution: chi-square p = %g", name, modes[mode], pv1);
        CHECK(pv2 > 1e-4, "%s: %s drafter: first two tokens' distribution: chi-square p = %g", name, modes[mode], pv2);
        printf("%s: %s drafter, %d runs: chi-square p = %.3f (first token), %.3f (first two)\n", name, modes[mode], RUNS, pv1, pv2);
        /* the test can tell: the same counts against the untempered distribution fail */
        if (mode == 0) {
            double flat[TOP_K + 1] = {0};
            for (int a = 0; a < TOP_K; a++) flat[a] = RUNS / (double)TOP_K;
            CHECK(chi_square_p(c1, flat, TOP_K + 1) < 1e-4, "%s: the chi-square test cannot tell the target from uniform", name);
        }
        gemma4_spec_free(sp);
        sp = NULL;
    }
    free(logits);
    gemma4_session_free(s);
}

/* ---- the MTP drafter as the draft source ---- */

/* The committed synthetic drafters (tests/data/mtp): "align" ones copy
 * their input token, so on the fixture targets (whose greedy output repeats
 * a token) their guesses are kept; "rand" ones miss. Greedy and seeded hot
 * sampling must both equal plain decoding of the F32 target. */
static void mtp(const char *target, const char *draft_name) {
    char tpath[1024], dpath[1024], err[G4_ERR_LEN] = "";
    snprintf(tpath, sizeof tpath, "%s/models/%s.gguf", test_fixtures_dir(), target);
    snprintf(dpath, sizeof dpath, "%s/mtp/%s.gguf", test_fixtures_dir(), draft_name);
    gemma4_model *m = load(tpath);
    gemma4_drafter *d = m ? gemma4_drafter_load(dpath, m, err) : NULL;
    CHECK(d != NULL, "%s: %s", dpath, err);
    const prompt p = {{2, 170, 37, 401, 288, 9, 77}, 7};
    const gemma4_session_params sprm = {.n_ctx = 512, .n_threads = 2};
    static const gemma4_sampling modes[] = {{.temperature = 0}, {.temperature = 4.0f, .top_p = 1.0f, .seed = 4242}};
    for (int i = 0; i < 2 && d; i++) {
        static int32_t truth[N_GEN], out[MAX_SEQ][N_GEN];
        if (plain_generate(m, &sprm, &p, &modes[i], truth, N_GEN)) continue;
        for (int len = 2; len <= 8; len *= 2) {
            if (strstr(draft_name, "rand") && len != 4) continue; /* they miss at any length */
            gemma4_spec_stats st = {0};
            int rc = -1;
            gemma4_session *s = gemma4_session_new(m, &sprm, err);
            gemma4_spec *sp = s ? gemma4_spec_new(s, gemma4_draft_mtp, d, &(gemma4_spec_params){.draft_max = len, .fixed = true, .ignore_eog = true, .hidden = true}, err) : NULL;
            gemma4_sampler *smp = gemma4_sampler_new(&modes[i], gemma4_n_vocab(m));
            float *logits = malloc((size_t)gemma4_n_vocab(m) * sizeof *logits);
            if (sp && smp && logits && !feed_prompt(s, 0, &p, logits, err)) {
                int32_t count = 0, got[GEMMA4_DRAFT_CAP + 1], n_got, seq = 0;
                out[0][count++] = gemma4_sample(smp, logits);
                rc = 0;
                while (!rc && count < N_GEN) {
                    rc = gemma4_spec_step(sp, 1, &seq, &out[0][count - 1], &smp, got, &n_got, err);
                    for (int32_t k = 0; !rc && k < n_got && count < N_GEN; k++) out[0][count++] = got[k];
                }
                gemma4_spec_stats_get(sp, 0, &st);
            }
            CHECK(rc == 0, "%s with %s: %s", target, draft_name, err);
            const int diff = rc ? -1 : first_diff(out[0], truth, N_GEN);
            CHECK(diff < 0, "%s with %s, %s, draft %d: token %d is %d, plain decoding gave %d", target, draft_name,
                  i ? "sampled" : "greedy", len, diff, diff >= 0 ? out[0][diff] : 0, diff >= 0 ? truth[diff] : 0);
            CHECK(st.drafted > 0, "%s with %s: the drafter guessed nothing", target, draft_name);
            printf("%s with MTP drafter %s, %s, draft %d: %lld passes for %d tokens, %lld of %lld guesses kept\n", target,
                   draft_name, i ? "sampled" : "greedy", len, (long long)st.steps, N_GEN, (long long)st.accepted,
                   (long long)st.drafted);
            free(logits);
            gemma4_sampler_free(smp);
            gemma4_spec_free(sp);
            gemma4_session_free(s);
        }
    }
    gemma4_drafter_free(d);
    gemma4_model_free(m);
}

/* ---- the models ---- */

static void fixture_model(const char *name, bool full) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", test_fixtures_dir(), name);
    gemma4_model *m = load(path);
    if (!m) return;
    const prompt p = {{2, 170, 37, 401, 288, 9, 77}, 7};
    float diff;
    const int32_t same = batch_vs_single(m, GEMMA4_KV_F32, &p, &diff);
    CHECK(same == 9, "%s: %d of 9 batched rows have the bits of single-token steps (largest gap %g)", name, same, diff);
    printf("%s: %d of 9 batched rows bit-identical to single steps, largest gap %g\n", name, same, diff);
    /* hot sampling with a fixed seed: their greedy output is one token repeated */
    const gemma4_sampling hot = {.temperature = 4.0f, .top_k = 0, .top_p = 1.0f, .seed = 4242};
    equality(name, m, &p, &hot, full);
    if (full) {
        small_pages(name, m, &p, &hot);
        const prompt three[MAX_SEQ] = {p, {{2, 11, 12, 13}, 4}, {{2, 300, 301, 302, 303, 300, 301}, 7}};
        concurrent(name, m, three, &hot);
        distribution(name, m, &p);
    }
    gemma4_model_free(m);
}

static void trained_model(void) {
    const char *path = "models/kjv-dense-q8_0.gguf";
    gemma4_model *m = load(path);
    if (!m) return;
    char err[G4_ERR_LEN] = "";
    static const char *texts[MAX_SEQ] = {"In the beginning God created the heaven and the earth.",
                                         "And the LORD spake unto Moses, saying,", "Blessed are the meek:"};
    prompt ps[MAX_SEQ];
    for (int q = 0; q < MAX_SEQ; q++) {
        ps[q].n = gemma4_tokenize(m, texts[q], strlen(texts[q]), true, false, ps[q].ids, MAX_PROMPT, err);
        CHECK(ps[q].n > 0 && ps[q].n <= MAX_PROMPT, "%s: tokenize: %s", path, err);
        if (ps[q].n <= 0 || ps[q].n > MAX_PROMPT) return gemma4_model_free(m);
    }
    float diff;
    const int32_t same = batch_vs_single(m, GEMMA4_KV_F32, &ps[0], &diff);
    CHECK(same == 9, "%s: %d of 9 batched rows have the bits of single-token steps (largest gap %g)", path, same, diff);
    printf("%s: %d of 9 batched rows bit-identical to single steps, largest gap %g\n", path, same, diff);
    const gemma4_sampling greedy = {.temperature = 0.0f};
    equality("kjv greedy", m, &ps[0], &greedy, true);
    small_pages("kjv greedy", m, &ps[0], &greedy);
    concurrent("kjv greedy", m, ps, &greedy);
    gemma4_model_free(m);
}

/* An argument runs only the models whose name contains it, or, if it is
 * "distribution", only the sampling test (for working on one part). */
/* An argument runs one part (a name below, or "distribution"). Under the
 * sanitizers the whole test takes half an hour, so that build runs one
 * quantised fixture and one MTP drafter, which cover every code path. */
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows as it comes */
    const char *only = argc > 1 ? argv[1] : "";
    bool all = !*only;
    if (all && TEST_SANITIZED) {
        SKIP("kjv, dense_f32, dense_q4_0, e2b_q8_0, e2b_q4_k, other drafters, distribution",
             "too slow under the sanitizers; moe_q4_0 and e2b_rand cover the same paths");
        fixture_model("moe_q4_0", false);
        mtp("e2b_f32", "e2b_rand");
        return test_summary("test_speculative");
    }
    if (all || !strcmp(only, "distribution")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/models/dense_f32.gguf", test_fixtures_dir());
        gemma4_model *m = load(path);
        if (m) distribution("dense_f32", m, &(prompt){{2, 170, 37, 401, 288, 9, 77}, 7});
        gemma4_model_free(m);
    }
    if (strstr("kjv", only)) trained_model();
    static const char *fixtures[] = {"dense_f32", "dense_q4_0", "e2b_q8_0", "e2b_q4_k", "moe_q4_0"};
    for (int i = 0; i < 5; i++)
        if (strstr(fixtures[i], only)) fixture_model(fixtures[i], i == 0);
    static const char *drafters[][2] = {{"dense_f32", "dense_align"}, {"dense_f32", "dense_rand"}, {"e2b_f32", "e2b_align"},
                                        {"e2b_f32", "e2b_rand"}, {"moe_f32", "moe_align"}, {"moe_f32", "moe_rand"}};
    for (int i = 0; i < 6; i++)
        if (strstr(drafters[i][1], only)) mtp(drafters[i][0], drafters[i][1]);
    return test_summary("test_speculative");
}
