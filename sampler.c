/* Token sampling: the chain llama.cpp's common sampler applies, restricted
 * to the samplers Gemma 4 uses: logit bias, suppressed tokens, grammar,
 * repetition / frequency / presence penalties, then top-k, top-p, min-p,
 * temperature and one draw.
 *
 * The first four edit logits; they work on a copy (the sampler's scratch)
 * and touch only the tokens they name, so a call costs O(window), not
 * O(vocabulary), beyond the one copy. As in llama.cpp, top-p and min-p look
 * at the untempered distribution and temperature only reshapes what
 * survives them. The vocabulary is large (262144), so top-k selects with a
 * k-sized heap instead of sorting all logits; the full sort happens only
 * when top-k is off and top-p needs an order. Ties are broken towards the
 * lower token id everywhere, so a result depends only on the logits, the
 * history and the seed. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "sampler.h"
#include "tokenizer/grammar.h"

#define SUPPRESS_KEY "tokenizer.ggml.suppress_tokens"

/* A token and its score: the logit while sampling, the log-probability in
 * what gemma4_logprobs hands out (one type, so both share the heap). */
typedef gemma4_logprob candidate;

/* The parsed rules, shared by a sampler and its clones: their grammar
 * states point into them. */
typedef struct shared_grammar {
    g4_grammar *g;
    atomic_int refs;
} shared_grammar;

struct gemma4_sampler {
    gemma4_sampling p; /* p.logit_bias points at bias below; no grammar text kept */
    int32_t n_vocab;
    uint64_t rng[4]; /* xoshiro256** state */
    candidate *cand; /* n_vocab slots of scratch */
    double *w;       /* and their softmax weights */
    float *edited;   /* n_vocab: the logits after bias, suppression, penalties; NULL when none applies */
    gemma4_logit_bias *bias;
    int32_t *suppress, n_suppress;
    /* Penalties: count[t] is how often t occurs in the window, seen[] lists
     * the tokens with count > 0 (at index where[t]), so applying them visits
     * only those. The window is hist[start, n_hist) when penalty_last_n > 0;
     * with -1 nothing ever leaves it and hist is not kept. */
    bool penalize;
    int32_t *count, *where, *seen, n_seen;
    int32_t *hist;
    size_t start, n_hist, cap_hist;
    /* grammar (NULL: none): where this generation stands in it */
    shared_grammar *grammar;
    g4_grammar_state *gs;
    const g4_grammar_vocab *gv; /* the model's, built once (model_grammar_vocab) */
};

/* ---- random numbers: xoshiro256**, seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* uniform in [0, 1) with 53 random bits: exact in any IEEE double */
static double uniform01(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

/* ---- defaults ---- */

/* A numeric scalar of any GGUF type as a double; false if absent or not a
 * number (llama.cpp reads these keys through their string form, so it
 * accepts whatever numeric type a converter wrote). */
static bool kv_number(const g4_gguf_file *f, const char *key, double *out) {
    const g4_gguf_kv *kv = f ? g4_gguf_find_kv(f, key) : NULL;
    if (!kv) return false;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        *out = (double)kv->val.u64;
        return true;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        *out = (double)kv->val.i64;
        return true;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
        *out = kv->val.f64;
        return true;
    default:
        return false;
    }
}

gemma4_sampling g4_sampling_from_gguf(const g4_gguf_file *f) {
    /* the penalty settings are llama.cpp's defaults: a 64-token window with
     * every penalty neutral */
    gemma4_sampling s = {.temperature = 1.0f, .top_k = 64, .top_p = 0.95f, .min_p = 0.0f, .seed = 0,
                         .penalty_last_n = 64, .repeat_penalty = 1.0f};
    double v;
    if (kv_number(f, "general.sampling.temp", &v)) s.temperature = (float)v;
    if (kv_number(f, "general.sampling.top_k", &v)) s.top_k = v > INT32_MAX ? INT32_MAX : (int32_t)v;
    if (kv_number(f, "general.sampling.top_p", &v)) s.top_p = (float)v;
    if (kv_number(f, "general.sampling.min_p", &v)) s.min_p = (float)v;
    return s;
}

gemma4_sampling gemma4_sampling_defaults(const gemma4_model *m) {
    return g4_sampling_from_gguf(m ? g4_model_gguf(m) : NULL);
}

/* ---- penalty history ---- */

static void seen_add(gemma4_sampler *s, int32_t t) {
    if (s->count[t]++ == 0) {
        s->where[t] = s->n_seen;
        s->seen[s->n_seen++] = t;
    }
}

static void seen_remove(gemma4_sampler *s, int32_t t) {
    if (--s->count[t] == 0) {
        int32_t last = s->seen[--s->n_seen];
        s->seen[s->where[t]] = last;
        s->where[last] = s->where[t];
    }
}

/* Makes room for one more token in hist: slides the window to the front
 * when tokens before it take space, else doubles the array up to twice the
 * window (so the slide, O(window), happens once per window of tokens).
 * Out of memory, the oldest token leaves the window early. */
static void hist_make_room(gemma4_sampler *s) {
    if (s->n_hist < s->cap_hist) return;
    size_t want = s->cap_hist ? 2 * s->cap_hist : 64, max = 2 * (size_t)s->p.penalty_last_n;
    if (want > max) want = max;
    int32_t *h = want > s->cap_hist ? realloc(s->hist, want * sizeof *h) : NULL;
    if (h) {
        s->hist = h;
        s->cap_hist = want;
        return;
    }
    if (s->n_hist == 0) return;
    if (s->start == 0) seen_remove(s, s->hist[s->start++]);
    memmove(s->hist, s->hist + s->start, (s->n_hist - s->start) * sizeof *s->hist);
    s->n_hist -= s->start;
    s->start = 0;
}

static void history_push(gemma4_sampler *s, int32_t t) {
    if (!s->penalize || t < 0 || t >= s->n_vocab) return;
    /* the oldest leaves first, so the window never lists more than
     * penalty_last_n distinct tokens */
    if (s->p.penalty_last_n > 0 && s->n_hist - s->start == (size_t)s->p.penalty_last_n)
        seen_remove(s, s->hist[s->start++]);
    seen_add(s, t);
    if (s->p.penalty_last_n < 0) return; /* -1: every token stays in the window */
    hist_make_room(s);
    if (s->n_hist < s->cap_hist) s->hist[s->n_hist++] = t;
    else seen_remove(s, t); /* no room even for the window: forget this one */
}

void gemma4_sampler_accept(gemma4_sampler *s, const int32_t *ids, int32_t n) {
    for (int32_t i = 0; s && ids && i < n; i++) history_push(s, ids[i]);
}

/* llama.cpp's penalties on the tokens of the window: the repetition penalty
 * divides a positive logit and multiplies one <= 0 (dividing a negative one
 * would make the token more likely), then the frequency penalty is taken
 * once per occurrence and the presence penalty once. */
static void apply_penalties(const gemma4_sampler *s, float *l) {
    const float rep = s->p.repeat_penalty, freq = s->p.frequency_penalty, pres = s->p.presence_penalty;
    const bool use_rep = rep != 1.0f && rep != 0.0f;
    for (int32_t i = 0; i < s->n_seen; i++) {
        int32_t t = s->seen[i];
        float x = l[t];
        if (use_rep) x = x > 0 ? x / rep : x * rep;
        l[t] = fminf(x - ((float)s->count[t] * freq + pres), FLT_MAX); /* a tiny repeat_penalty may overflow */
    }
}

void g4_sampler_edit_logits(const gemma4_sampler *s, float *l) {
    for (int32_t i = 0; i < s->p.n_logit_bias; i++) {
        float *x = &l[s->bias[i].token];
        *x = fminf(*x + s->bias[i].bias, FLT_MAX); /* +inf would break the softmax: the largest float forces as well */
    }
    for (int32_t i = 0; i < s->n_suppress; i++) l[s->suppress[i]] = -INFINITY;
    if (s->penalize) apply_penalties(s, l);
}

/* ---- construction ---- */

static bool penalties_on(const gemma4_sampling *p) {
    return p->penalty_last_n != 0 && ((p->repeat_penalty != 1.0f && p->repeat_penalty != 0.0f) ||
                                      p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

/* Settings no chain can honour: NaN, negative top_p or repeat_penalty,
 * min_p outside 0..1, a window below -1, infinite penalties, a bias of NaN
 * or +inf. A token out of range is reported separately (it names the id). */
static bool settings_valid(const gemma4_sampling *p) {
    if (isnan(p->temperature) || !(p->top_p >= 0) || !(p->min_p >= 0 && p->min_p <= 1)) return false;
    if (p->penalty_last_n < -1 || !(p->repeat_penalty >= 0) || isinf(p->repeat_penalty) ||
        !isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return false;
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias)) return false;
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (isnan(p->logit_bias[i].bias) || p->logit_bias[i].bias == INFINITY) return false;
    return true;
}

/* The first bias entry whose token is out of range, or -1. */
static int32_t bad_bias(const gemma4_sampling *p, int32_t n_vocab) {
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= n_vocab) return i;
    return -1;
}

/* A sampler for valid settings p (the grammar left to the caller), with
 * the given suppressed tokens (copied); NULL when out of memory. */
static gemma4_sampler *sampler_create(const gemma4_sampling *p, int32_t n_vocab, const int32_t *suppress,
                                      int32_t n_suppress, bool grammar) {
    gemma4_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->p.grammar = s->p.grammar_root = NULL;
    s->n_vocab = n_vocab;
    s->penalize = penalties_on(p);
    s->n_suppress = n_suppress;
    size_t nv = (size_t)n_vocab;
    bool ok = (s->cand = malloc(nv * sizeof *s->cand)) && (s->w = malloc(nv * sizeof *s->w));
    if (ok && (p->n_logit_bias || n_suppress || s->penalize || grammar)) ok = (s->edited = malloc(nv * sizeof *s->edited));
    if (ok && p->n_logit_bias) {
        ok = (s->bias = malloc((size_t)p->n_logit_bias * sizeof *s->bias));
        if (ok) memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *s->bias);
    }
    s->p.logit_bias = s->bias;
    if (ok && n_suppress) {
        ok = (s->suppress = malloc((size_t)n_suppress * sizeof *s->suppress));
        if (ok) memcpy(s->suppress, suppress, (size_t)n_suppress * sizeof *s->suppress);
    }
    if (ok && s->penalize) {
        size_t n_seen = p->penalty_last_n > 0 && p->penalty_last_n < n_vocab ? (size_t)p->penalty_last_n : nv;
        ok = (s->count = calloc(nv, sizeof *s->count)) && (s->where = malloc(nv * sizeof *s->where)) &&
             (s->seen = malloc(n_seen * sizeof *s->seen));
    }
    if (!ok) {
        gemma4_sampler_free(s);
        return NULL;
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    return s;
}

gemma4_sampler *gemma4_sampler_new(const gemma4_sampling *p, int32_t n_vocab) {
    if (!p || n_vocab <= 0 || p->grammar || p->ignore_eos || !settings_valid(p) || bad_bias(p, n_vocab) >= 0) return NULL;
    return sampler_create(p, n_vocab, NULL, 0, false);
}

/* The model's tokenizer.ggml.suppress_tokens (absent: none), checked. */
static int read_suppress(const gemma4_model *m, const int32_t **ids, int32_t *n, char *err) {
    const g4_gguf_file *f = g4_model_gguf(m);
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, SUPPRESS_KEY);
    *ids = NULL;
    *n = 0;
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_INT32)
        return g4_error(err, g4_gguf_path(f), "%s is %s, expected an array of i32", SUPPRESS_KEY,
                        g4_gguf_type_name(kv->type == GGUF_TYPE_ARRAY ? kv->arr_type : kv->type));
    if (kv->arr_n > (uint64_t)INT32_MAX)
        return g4_error(err, g4_gguf_path(f), "%s has %llu entries", SUPPRESS_KEY, (unsigned long long)kv->arr_n);
    const int32_t *a = kv->arr_data;
    for (uint64_t i = 0; i < kv->arr_n; i++)
        if (a[i] < 0 || a[i] >= gemma4_n_vocab(m))
            return g4_error(err, g4_gguf_path(f), "%s[%llu] = %d is not a token id (vocabulary of %d)", SUPPRESS_KEY,
                            (unsigned long long)i, a[i], gemma4_n_vocab(m));
    *ids = a;
    *n = (int32_t)kv->arr_n;
    return 0;
}

/* The model's vocabulary as the grammar matcher sees it. Building it walks
 * every token (262144 for Gemma 4), so it is built once per model, by the
 * first sampler that needs it, kept in the model and freed with it
 * (gemma4_model_free). The lock makes concurrent first users wait for the
 * one build. */
static pthread_mutex_t grammar_vocab_lock = PTHREAD_MUTEX_INITIALIZER;

static const g4_grammar_vocab *model_grammar_vocab(const gemma4_model *m, char *err) {
    gemma4_model *cache = (gemma4_model *)m; /* a lazily filled cache; the model itself is heap memory */
    pthread_mutex_lock(&grammar_vocab_lock);
    if (!cache->grammar_vocab) cache->grammar_vocab = g4_grammar_vocab_new(g4_model_vocab(m), err);
    const g4_grammar_vocab *gv = cache->grammar_vocab;
    pthread_mutex_unlock(&grammar_vocab_lock);
    return gv;
}

static void grammar_release(shared_grammar *sg) {
    if (sg && atomic_fetch_sub(&sg->refs, 1) == 1) {
        g4_grammar_free(sg->g);
        free(sg);
    }
}

static int add_grammar(gemma4_sampler *s, const gemma4_model *m, const char *text, const char *root, char *err) {
    if (!(s->gv = model_grammar_vocab(m, err))) return -1;
    if (!(s->grammar = calloc(1, sizeof *s->grammar))) return g4_error(err, "grammar", "out of memory");
    atomic_init(&s->grammar->refs, 1);
    if (!(s->grammar->g = g4_grammar_parse(text, strlen(text), root, err))) return -1;
    return (s->gs = g4_grammar_state_new(s->grammar->g, err)) ? 0 : -1;
}

gemma4_sampler *gemma4_sampler_init(const gemma4_model *m, const gemma4_sampling *p, char *err) {
    if (!m || !p) return g4_error(err, NULL, "sampler: no %s", m ? "settings" : "model"), NULL;
    int32_t n_vocab = gemma4_n_vocab(m), bad, n_suppress;
    const int32_t *suppress;
    if (!settings_valid(p)) {
        g4_error(err, NULL, "sampling settings out of range (NaN, top_p < 0, min_p outside 0..1, "
                            "penalty_last_n < -1, repeat_penalty < 0, a non-finite penalty, or a NaN/+inf bias)");
        return NULL;
    }
    if ((bad = bad_bias(p, n_vocab)) >= 0) {
        g4_error(err, NULL, "logit_bias: token %d is out of range (vocabulary of %d)", p->logit_bias[bad].token,
                 n_vocab);
        return NULL;
    }
    if (read_suppress(m, &suppress, &n_suppress, err)) return NULL;
    int32_t *banned = NULL; /* ignore_eos: the model's suppressed tokens and every end-of-generation one */
    if (p->ignore_eos) {
        if (!(banned = malloc(((size_t)n_suppress + (size_t)n_vocab) * sizeof *banned)))
            return g4_error(err, NULL, "sampler: out of memory for a vocabulary of %d", n_vocab), NULL;
        if (n_suppress) memcpy(banned, suppress, (size_t)n_suppress * sizeof *banned);
        for (int32_t id = 0; id < n_vocab; id++)
            if (gemma4_token_is_eog(m, id)) banned[n_suppress++] = id;
        suppress = banned;
    }
    gemma4_sampler *s = sampler_create(p, n_vocab, suppress, n_suppress, p->grammar != NULL);
    free(banned);
    if (!s) {
        g4_error(err, NULL, "sampler: out of memory for a vocabulary of %d", n_vocab);
        return NULL;
    }
    if (p->grammar && add_grammar(s, m, p->grammar, p->grammar_root, err)) {
        gemma4_sampler_free(s);
        return NULL;
    }
    return s;
}

static void *dup_array(const void *src, size_t bytes, bool *ok) {
    if (!src || !*ok) return NULL;
    void *d = malloc(bytes ? bytes : 1);
    if (!d) *ok = false;
    else memcpy(d, src, bytes);
    return d;
}

gemma4_sampler *gemma4_sampler_clone(const gemma4_sampler *s) {
    if (!s) return NULL;
    gemma4_sampler *c = malloc(sizeof *c);
    if (!c) return NULL;
    *c = *s;
    bool ok = true;
    size_t nv = (size_t)s->n_vocab;
    c->cand = dup_array(s->cand, nv * sizeof *s->cand, &ok); /* scratch, but cheap to copy and keeps free simple */
    c->w = dup_array(s->w, nv * sizeof *s->w, &ok);
    c->edited = dup_array(s->edited, nv * sizeof *s->edited, &ok);
    c->bias = dup_array(s->bias, (size_t)s->p.n_logit_bias * sizeof *s->bias, &ok);
    c->suppress = dup_array(s->suppress, (size_t)s->n_suppress * sizeof *s->suppress, &ok);
    c->count = dup_array(s->count, nv * sizeof *s->count, &ok);
    c->where = dup_array(s->where, nv * sizeof *s->where, &ok);
    size_t n_seen = s->p.penalty_last_n > 0 && s->p.penalty_last_n < s->n_vocab ? (size_t)s->p.penalty_last_n : nv;
    c->seen = dup_array(s->seen, n_seen * sizeof *s->seen, &ok);
    c->hist = dup_array(s->hist, s->cap_hist * sizeof *s->hist, &ok);
    c->p.logit_bias = c->bias;
    c->gs = NULL;
    if (s->gs) {
        atomic_fetch_add(&c->grammar->refs, 1);
        ok = ok && (c->gs = g4_grammar_state_clone(s->gs));
    }
    if (!ok) {
        gemma4_sampler_free(c);
        return NULL;
    }
    return c;
}

void gemma4_sampler_free(gemma4_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->w);
    free(s->edited);
    free(s->bias);
    free(s->suppress);
    free(s->count);
    free(s->where);
    free(s->seen);
    free(s->hist);
    g4_grammar_state_free(s->gs); /* before the rules it points into */
    grammar_release(s->grammar);
    free(s);
}

/* ---- the chain ---- */

static bool better(candidate a, candidate b) {
    return a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token);
}

static int cmp_better_first(const void *pa, const void *pb) {
    candidate a = *(const candidate *)pa, b = *(const candidate *)pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* heap[0] is the worst of the k kept so far, so a newcomer only has to beat it */
static void sift_down(candidate *heap, int32_t n, int32_t i) {
    for (;;) {
        int32_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && better(heap[worst], heap[l])) worst = l;
        if (r < n && better(heap[worst], heap[r])) worst = r;
        if (worst == i) return;
        candidate t = heap[i];
        heap[i] = heap[worst];
        heap[worst] = t;
        i = worst;
    }
}

/* the k best logits (1 <= k <= n) into c[0..k), best first */
static void select_top_k(candidate *c, const float *logits, int32_t n, int32_t k) {
    for (int32_t i = 0; i < k; i++) c[i] = (candidate){i, logits[i]};
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        candidate x = {i, logits[i]};
        if (better(x, c[0])) {
            c[0] = x;
            sift_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_better_first);
}

/* w[i] = exp((logit_i - max) / temp) for every candidate; returns their sum */
static double softmax_weights(const candidate *c, int32_t n, float max, float temp, double *w) {
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += w[i] = exp(((double)c[i].logprob - max) / temp);
    return sum;
}

static float max_logit(const candidate *c, int32_t n) {
    float m = c[0].logprob;
    for (int32_t i = 1; i < n; i++)
        if (c[i].logprob > m) m = c[i].logprob;
    return m;
}

/* NaN or +inf anywhere means the forward pass went wrong (a broken weight
 * or hyperparameter); -inf alone is a token ruled out. The scan costs a
 * fraction of a millisecond even at a 262144-token vocabulary. */
static bool logits_usable(const float *logits, int32_t n) {
    bool any = false;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY) return false;
        any |= logits[i] != -INFINITY;
    }
    return any;
}

/* The lowest id of the largest logit; -1 when every token is ruled out. */
static int32_t argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return logits[best] == -INFINITY ? -1 : best;
}

/* top-k, top-p, min-p, temperature and the draw on finite or -inf logits */
static int32_t draw(gemma4_sampler *s, const float *logits) {
    const gemma4_sampling *p = &s->p;
    int32_t n = s->n_vocab;
    if (p->temperature <= 0 || p->top_k == 1) return argmax(logits, n);

    candidate *c = s->cand;
    bool sorted = p->top_k > 0 && p->top_k < n;
    if (sorted) {
        select_top_k(c, logits, n, p->top_k);
        n = p->top_k;
    } else {
        for (int32_t i = 0; i < n; i++) c[i] = (candidate){i, logits[i]};
    }
    float top = max_logit(c, n);
    if (top == -INFINITY) return -1; /* every token left is ruled out */

    if (p->top_p < 1.0f) {
        double total = softmax_weights(c, n, top, 1.0f, s->w), cum = 0;
        if (!sorted) {
            /* The tokens below (1 - top_p) / n hold less than 1 - top_p
             * together, so the kept prefix lies among the others: only
             * those need sorting, usually a tiny part of the vocabulary. */
            double floor_w = (1.0 - p->top_p) / n * total;
            int32_t kept = 0;
            for (int32_t i = 0; i < n; i++)
                if (s->w[i] >= floor_w) c[kept++] = c[i];
            n = kept;
            qsort(c, (size_t)n, sizeof *c, cmp_better_first);
            softmax_weights(c, n, top, 1.0f, s->w); /* in the new order; total stays */
        }
        for (int32_t i = 0; i < n; i++) {
            cum += s->w[i] / total;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
        if (n == 0) return -1; /* cannot happen with finite logits: the max passes the floor */
    }

    if (p->min_p > 0.0f) {
        /* p_i >= min_p * p_max  <=>  logit_i >= max_logit + log(min_p) */
        float floor_logit = top + logf(p->min_p);
        int32_t kept = 0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].logprob >= floor_logit) c[kept++] = c[i];
        n = kept; /* never 0 with finite logits: the max itself passes */
        if (n == 0) return -1;
    }

    /* the draw: walk the tempered weights until the uniform point is passed */
    double total = softmax_weights(c, n, top, p->temperature, s->w);
    double u = uniform01(s->rng) * total, cum = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->w[i];
        if (u < cum) return c[i].token;
    }
    return c[n - 1].token; /* u landed in the rounding gap at the very end */
}

int32_t gemma4_sample(gemma4_sampler *s, const float *logits) {
    if (!s || !logits || !logits_usable(logits, s->n_vocab)) return -1;
    const float *l = logits;
    if (s->edited) {
        memcpy(s->edited, logits, (size_t)s->n_vocab * sizeof *logits);
        g4_sampler_edit_logits(s, s->edited);
        l = s->edited;
    }
    int32_t id = draw(s, l);
    if (id >= 0 && s->gs && !g4_grammar_allows(s->gs, s->gv, id)) {
        /* As llama.cpp: the chain ran without the grammar, which is cheap;
         * only when it drew a token the grammar refuses is the vocabulary
         * masked and the chain run again. The mask comes after bias and
         * penalties here, before them in the chain's order: it only sets
         * -inf, which they leave at -inf, so the result is the same. */
        g4_grammar_mask(s->gs, s->gv, s->edited);
        id = draw(s, s->edited);
    }
    char err[G4_ERR_LEN];
    if (id >= 0 && s->gs && g4_grammar_accept(s->gs, s->gv, id, err)) return -1; /* the mask let through a refused token */
    if (id >= 0) history_push(s, id);
    return id;
}

/* ---- log-probabilities ---- */

/* max + log sum exp(l - max): no term overflows, and the sum in double
 * keeps the tail of 262144 small terms */
double g4_log_sum_exp(const float *l, int32_t n) {
    double max = -INFINITY, sum = 0;
    for (int32_t i = 0; i < n; i++)
        if (l[i] > max) max = l[i];
    for (int32_t i = 0; i < n; i++) sum += exp((double)l[i] - max);
    return max + log(sum);
}

float gemma4_logprobs(const float *logits, int32_t n_vocab, int32_t token, int32_t k, gemma4_logprob *top) {
    if (k > n_vocab) k = n_vocab;
    if (!top || k < 0) k = 0;
    if (!logits || n_vocab <= 0 || !logits_usable(logits, n_vocab)) {
        for (int32_t i = 0; i < k; i++) top[i] = (gemma4_logprob){-1, NAN};
        return NAN;
    }
    const double lse = g4_log_sum_exp(logits, n_vocab);
    if (k > 0) {
        select_top_k(top, logits, n_vocab, k);
        for (int32_t i = 0; i < k; i++) top[i].logprob = (float)((double)top[i].logprob - lse);
    }
    return token >= 0 && token < n_vocab ? (float)((double)logits[token] - lse) : NAN;
}
