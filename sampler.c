/* Token sampling: the chain llama.cpp applies by default, restricted to the
 * samplers Gemma 4 uses: top-k, top-p, min-p, temperature, then one draw.
 *
 * As in llama.cpp, top-p and min-p look at the untempered distribution and
 * temperature only reshapes what survives them. The vocabulary is large
 * (262144), so top-k selects with a k-sized heap instead of sorting all
 * logits; the full sort happens only when top-k is off and top-p needs an
 * order. Ties are broken towards the lower token id everywhere, so a result
 * depends only on the logits and the seed. */
#include <math.h>
#include <stdlib.h>

#include "sampler.h"

typedef struct candidate {
    float logit;
    int32_t id;
} candidate;

struct gemma4_sampler {
    gemma4_sampling p;
    int32_t n_vocab;
    uint64_t rng[4]; /* xoshiro256** state */
    candidate *cand; /* n_vocab slots of scratch */
    double *w;       /* and their softmax weights */
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
    gemma4_sampling s = {.temperature = 1.0f, .top_k = 64, .top_p = 0.95f, .min_p = 0.0f, .seed = 0};
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

/* ---- sampler ---- */

/* NULL for settings no chain can honour (NaN, negative top_p, min_p
 * outside 0..1) */
gemma4_sampler *gemma4_sampler_new(const gemma4_sampling *p, int32_t n_vocab) {
    if (!p || n_vocab <= 0 || isnan(p->temperature) || !(p->top_p >= 0) || !(p->min_p >= 0 && p->min_p <= 1))
        return NULL;
    gemma4_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->w = malloc((size_t)n_vocab * sizeof *s->w);
    if (!s->cand || !s->w) {
        gemma4_sampler_free(s);
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    return s;
}

void gemma4_sampler_free(gemma4_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->w);
    free(s);
}

static bool better(candidate a, candidate b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); }

static int32_t argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
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

/* the k best logits into c[0..k), best first */
static void select_top_k(candidate *c, const float *logits, int32_t n, int32_t k) {
    for (int32_t i = 0; i < k; i++) c[i] = (candidate){logits[i], i};
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        candidate x = {logits[i], i};
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
    for (int32_t i = 0; i < n; i++) sum += w[i] = exp(((double)c[i].logit - max) / temp);
    return sum;
}

static float max_logit(const candidate *c, int32_t n) {
    float m = c[0].logit;
    for (int32_t i = 1; i < n; i++)
        if (c[i].logit > m) m = c[i].logit;
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

int32_t gemma4_sample(gemma4_sampler *s, const float *logits) {
    const gemma4_sampling *p = &s->p;
    int32_t n = s->n_vocab;
    if (!logits_usable(logits, n)) return -1;
    if (p->temperature <= 0 || p->top_k == 1) return argmax(logits, n);

    candidate *c = s->cand;
    bool sorted = p->top_k > 0 && p->top_k < n;
    if (sorted) {
        select_top_k(c, logits, n, p->top_k);
        n = p->top_k;
    } else {
        for (int32_t i = 0; i < n; i++) c[i] = (candidate){logits[i], i};
    }
    float top = max_logit(c, n);
    if (top == -INFINITY) return -1; /* top-k kept only ruled-out tokens */

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
            if (c[i].logit >= floor_logit) c[kept++] = c[i];
        n = kept; /* never 0 with finite logits: the max itself passes */
        if (n == 0) return -1;
    }

    /* the draw: walk the tempered weights until the uniform point is passed */
    double total = softmax_weights(c, n, top, p->temperature, s->w);
    double u = uniform01(s->rng) * total, cum = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->w[i];
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id; /* u landed in the rounding gap at the very end */
}
