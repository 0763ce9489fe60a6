/* Sampler: greedy, truncation (top-k, top-p, min-p), temperature, seeding,
 * the defaults read from general.sampling.* GGUF keys, logit bias,
 * penalties, suppressed tokens, cloning and log-probabilities. Expected
 * sets, probabilities and edited logits are written out by hand from the
 * distributions below, or computed by slow obvious versions in this file,
 * not by the code under test. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf_writer.h"
#include "model.h"
#include "sampler.h"
#include "tests/harness.h"
#include "tokenizer/grammar.h"

static gemma4_sampling params(float temp, int32_t top_k, float top_p, float min_p, uint64_t seed) {
    return (gemma4_sampling){.temperature = temp, .top_k = top_k, .top_p = top_p, .min_p = min_p, .seed = seed};
}

/* a test-local generator, independent of the sampler's */
static uint32_t lcg(uint32_t *x) { return (*x = *x * 1664525u + 1013904223u) >> 8; }

static void test_greedy(void) {
    float l[6] = {-3.0f, -1.5f, -0.5f, -2.0f, -0.5f, -9.0f}; /* tie at 2 and 4, all negative */
    float t[] = {0.0f, -1.0f};
    for (int i = 0; i < 2; i++) {
        gemma4_sampling p = params(t[i], 64, 0.95f, 0.0f, 7);
        gemma4_sampler *s = gemma4_sampler_new(&p, 6);
        CHECK(s != NULL, "sampler_new failed");
        if (!s) return;
        CHECK(gemma4_sample(s, l) == 2, "temp %g: got %d, want 2 (lowest id of the tie)", t[i], gemma4_sample(s, l));
        float one_max[4] = {0.1f, 0.2f, 7.0f, 6.9f};
        gemma4_sampler_free(s);
        s = gemma4_sampler_new(&p, 4);
        CHECK(gemma4_sample(s, one_max) == 2, "temp %g: argmax of one_max", t[i]);
        gemma4_sampler_free(s);
    }
}

/* top-k = 1 leaves only the argmax, whatever the temperature */
static void test_top_k_one(void) {
    enum { N = 1000 };
    static float l[N];
    uint32_t x = 1;
    gemma4_sampling p = params(5.0f, 1, 1.0f, 0.0f, 3);
    gemma4_sampler *s = gemma4_sampler_new(&p, N);
    int mismatches = 0;
    for (int rep = 0; rep < 20; rep++) {
        int32_t want = 0;
        for (int i = 0; i < N; i++) {
            l[i] = (float)(lcg(&x) % 2000) / 100.0f - 10.0f;
            if (l[i] > l[want]) want = i;
        }
        if (gemma4_sample(s, l) != want) mismatches++;
    }
    CHECK(mismatches == 0, "top-k 1 differed from the argmax %d times out of 20", mismatches);
    gemma4_sampler_free(s);
}

static void draw_ids(uint64_t seed, const float *l, int n, int32_t *out, int count) {
    gemma4_sampling p = params(1.0f, 0, 1.0f, 0.0f, seed);
    gemma4_sampler *s = gemma4_sampler_new(&p, n);
    for (int i = 0; i < count; i++) out[i] = gemma4_sample(s, l);
    gemma4_sampler_free(s);
}

static void test_seed(void) {
    enum { N = 300, DRAWS = 200 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)(i % 7) * 0.1f; /* nearly flat */
    int32_t a[DRAWS], b[DRAWS], c[DRAWS];
    draw_ids(42, l, N, a, DRAWS);
    draw_ids(42, l, N, b, DRAWS);
    draw_ids(43, l, N, c, DRAWS);
    CHECK(!memcmp(a, b, sizeof a), "same seed gave different draws");
    int same = 0;
    for (int i = 0; i < DRAWS; i++) same += a[i] == c[i];
    /* two independent streams over ~300 tokens agree at ~1 of 300 draws */
    CHECK(same < 20, "seeds 42 and 43 agree at %d of %d draws", same, DRAWS);
}

/* The distribution every frequency test draws from: token ids in shuffled
 * order so that sorting matters. prob[id] is the untempered probability. */
enum { NT = 8 };
static const float prob[NT] = {0.03f, 0.25f, 0.0f, 0.10f, 0.40f, 0.02f, 0.15f, 0.05f};

/* Draws `draws` times and compares the counts with want[] (zero outside the
 * kept set) by Pearson's chi-square; the bound is about 6 standard deviations
 * above the mean of the statistic. */
static void check_frequencies(const char *what, gemma4_sampling p, const double want[NT]) {
    enum { DRAWS = 200000 };
    float l[NT];
    for (int i = 0; i < NT; i++) l[i] = prob[i] > 0 ? logf(prob[i]) : -INFINITY;
    gemma4_sampler *s = gemma4_sampler_new(&p, NT);
    long count[NT] = {0};
    for (int i = 0; i < DRAWS; i++) {
        int32_t id = gemma4_sample(s, l);
        if (id >= 0 && id < NT) count[id]++;
    }
    gemma4_sampler_free(s);
    double chi2 = 0;
    int df = -1, stray = 0;
    for (int i = 0; i < NT; i++) {
        if (want[i] == 0) {
            stray += count[i] != 0;
            continue;
        }
        double e = want[i] * DRAWS;
        chi2 += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    CHECK(stray == 0, "%s: drew %d token(s) outside the kept set", what, stray);
    double bound = df + 6.0 * sqrt(2.0 * df);
    CHECK(df > 0 && chi2 < bound, "%s: chi-square %.2f over %d degrees of freedom (bound %.2f)", what, chi2, df, bound);
}

static void test_frequencies(void) {
    /* untruncated: the distribution itself */
    double full[NT];
    for (int i = 0; i < NT; i++) full[i] = prob[i];
    check_frequencies("plain", params(1.0f, 0, 1.0f, 0.0f, 11), full);

    /* top-k 3 keeps 0.40, 0.25, 0.15 (ids 4, 1, 6), renormalised by 0.80 */
    double k3[NT] = {[4] = 0.40 / 0.80, [1] = 0.25 / 0.80, [6] = 0.15 / 0.80};
    check_frequencies("top-k 3", params(1.0f, 3, 1.0f, 0.0f, 12), k3);

    /* top-p: running sums 0.40, 0.65, 0.80: p = 0.64 keeps two, 0.66 three */
    double p2[NT] = {[4] = 0.40 / 0.65, [1] = 0.25 / 0.65};
    check_frequencies("top-p 0.64", params(1.0f, 0, 0.64f, 0.0f, 13), p2);
    check_frequencies("top-p 0.66", params(1.0f, 0, 0.66f, 0.0f, 14), k3);

    /* min-p 0.2: floor 0.2 * 0.40 = 0.08 keeps 0.40 0.25 0.15 0.10 (sum 0.90) */
    double m4[NT] = {[4] = 0.40 / 0.90, [1] = 0.25 / 0.90, [6] = 0.15 / 0.90, [3] = 0.10 / 0.90};
    check_frequencies("min-p 0.2", params(1.0f, 0, 1.0f, 0.2f, 15), m4);

    /* temperature 0.5 squares the probabilities of the top 4 */
    double sq = 0.16 + 0.0625 + 0.0225 + 0.01;
    double t4[NT] = {[4] = 0.16 / sq, [1] = 0.0625 / sq, [6] = 0.0225 / sq, [3] = 0.01 / sq};
    check_frequencies("top-k 4, temp 0.5", params(0.5f, 4, 1.0f, 0.0f, 16), t4);

    /* the whole chain: top-k 5 (sum 0.95), top-p 0.9 on the renormalised
     * 0.421 0.684 0.842 0.947 keeps four, min-p 0.3 (floor 0.12) drops 0.10,
     * temperature 2 takes square roots of what is left */
    double r = sqrt(0.40) + sqrt(0.25) + sqrt(0.15);
    double chain[NT] = {[4] = sqrt(0.40) / r, [1] = sqrt(0.25) / r, [6] = sqrt(0.15) / r};
    check_frequencies("top-k 5, top-p 0.9, min-p 0.3, temp 2", params(2.0f, 5, 0.9f, 0.3f, 17), chain);
}

/* A full-size vocabulary: the heap selection keeps exactly the true top k. */
static void test_large_vocab_top_k(void) {
    enum { N = 262144, K = 64, LEVELS = 1000000, DRAWS = 2000 };
    float *l = malloc(N * sizeof *l);
    int32_t *q = malloc(N * sizeof *q), *hist = calloc(LEVELS, sizeof *hist);
    uint32_t x = 99;
    for (int i = 0; i < N; i++) {
        q[i] = (int32_t)(lcg(&x) % LEVELS); /* some levels repeat: ties */
        l[i] = (float)q[i] / 50000.0f;
        hist[q[i]]++;
    }
    int32_t qk = LEVELS - 1; /* the K-th largest level */
    for (int above = hist[qk]; above < K;) above += hist[--qk];

    gemma4_sampling p = params(1.0f, K, 1.0f, 0.0f, 5);
    gemma4_sampler *s = gemma4_sampler_new(&p, N);
    int outside = 0, distinct = 0;
    char *seen = calloc(N, 1);
    for (int i = 0; i < DRAWS; i++) {
        int32_t id = gemma4_sample(s, l);
        if (q[id] < qk) outside++;
        if (!seen[id]) distinct++, seen[id] = 1;
    }
    CHECK(outside == 0, "%d draws fell outside the top %d", outside, K);
    /* the top levels lie within ~0.005 of each other, so all K are about
     * equally likely and 2000 draws see every one of them */
    CHECK(distinct == K, "%d distinct ids drawn, want %d", distinct, K);
    free(seen);
    free(hist);
    free(q);
    free(l);
    gemma4_sampler_free(s);
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

/* Full vocabulary, top-k off, top-p 0.5: every draw lies in the nucleus,
 * found here by sorting all the probabilities. */
static void test_large_vocab_top_p(void) {
    enum { N = 262144, DRAWS = 200 };
    float *l = malloc(N * sizeof *l);
    double *prob_sorted = malloc(N * sizeof *prob_sorted), sum = 0;
    uint32_t x = 7;
    for (int i = 0; i < N; i++) {
        l[i] = (float)(lcg(&x) % 1000) / 40.0f; /* 0..25: a long flat tail */
        sum += prob_sorted[i] = exp(l[i]);
    }
    qsort(prob_sorted, N, sizeof *prob_sorted, cmp_desc);
    double cum = 0, floor_p = 0;
    int kept = 0;
    while (cum < 0.5 * sum) cum += floor_p = prob_sorted[kept++];
    gemma4_sampling p = params(1.0f, 0, 0.5f, 0.0f, 9);
    gemma4_sampler *s = gemma4_sampler_new(&p, N);
    int outside = 0;
    for (int i = 0; i < DRAWS; i++) outside += exp(l[gemma4_sample(s, l)]) < floor_p;
    CHECK(outside == 0, "%d of %d draws outside the nucleus of %d tokens", outside, DRAWS, kept);
    CHECK(kept > 100, "the nucleus has only %d tokens: the test distribution is too peaked", kept);
    gemma4_sampler_free(s);
    free(prob_sorted);
    free(l);
}

static void test_rejects(void) {
    gemma4_sampling q = params(1.0f, 64, -0.5f, 0.0f, 0);
    CHECK(gemma4_sampler_new(&q, 10) == NULL, "negative top_p accepted");
    gemma4_sampling p = params(1.0f, 64, 0.95f, 1.5f, 0);
    CHECK(gemma4_sampler_new(&p, 10) == NULL, "min_p 1.5 accepted");
    p = params(NAN, 64, 0.95f, 0.0f, 0);
    CHECK(gemma4_sampler_new(&p, 10) == NULL, "NaN temperature accepted");
    p = params(1.0f, 64, 0.95f, 0.0f, 0);
    CHECK(gemma4_sampler_new(&p, 0) == NULL, "empty vocabulary accepted");
}

/* ---- a GGUF in memory: header, then key/value pairs, no tensors ---- */

typedef struct buf {
    unsigned char b[1024];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) {
    unsigned char c[4] = {v, v >> 8, v >> 16, v >> 24};
    put(b, c, 4);
}
static void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_key(buf *b, const char *key, uint32_t type) {
    put_u64(b, strlen(key));
    put(b, key, strlen(key));
    put_u32(b, type);
}
static void put_f32(buf *b, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_key(b, key, GGUF_TYPE_FLOAT32);
    put_u32(b, u);
}
static void header(buf *b, uint64_t n_kv) {
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, 0);
    put_u64(b, n_kv);
}
static g4_gguf_file *finish(buf *b, char *err) {
    while (b->n % 32) b->b[b->n++] = 0;
    return g4_gguf_open_memory(b->b, b->n, "mem.gguf", err);
}

static void test_defaults(void) {
    char err[G4_ERR_LEN] = "";
    buf b;
    header(&b, 5);
    put_key(&b, "general.architecture", GGUF_TYPE_STRING);
    put_u64(&b, 6);
    put(&b, "gemma4", 6);
    put_f32(&b, "general.sampling.temp", 0.7f);
    put_key(&b, "general.sampling.top_k", GGUF_TYPE_INT32);
    put_u32(&b, 40);
    put_f32(&b, "general.sampling.top_p", 0.8f);
    put_f32(&b, "general.sampling.min_p", 0.05f);
    g4_gguf_file *f = finish(&b, err);
    CHECK(f != NULL, "in-memory GGUF: %s", err);
    gemma4_sampling d = g4_sampling_from_gguf(f);
    CHECK(d.temperature == 0.7f && d.top_k == 40 && d.top_p == 0.8f && d.min_p == 0.05f,
          "from keys: temp %g top_k %d top_p %g min_p %g", d.temperature, d.top_k, d.top_p, d.min_p);
    g4_gguf_close(f);

    /* only top_k, stored as u32: the rest fall back */
    header(&b, 1);
    put_key(&b, "general.sampling.top_k", GGUF_TYPE_UINT32);
    put_u32(&b, 20);
    f = finish(&b, err);
    CHECK(f != NULL, "in-memory GGUF: %s", err);
    d = g4_sampling_from_gguf(f);
    CHECK(d.temperature == 1.0f && d.top_k == 20 && d.top_p == 0.95f && d.min_p == 0.0f,
          "partial keys: temp %g top_k %d top_p %g min_p %g", d.temperature, d.top_k, d.top_p, d.min_p);
    g4_gguf_close(f);

    d = g4_sampling_from_gguf(NULL);
    CHECK(d.temperature == 1.0f && d.top_k == 64 && d.top_p == 0.95f && d.min_p == 0.0f,
          "no keys: temp %g top_k %d top_p %g min_p %g", d.temperature, d.top_k, d.top_p, d.min_p);
    d = gemma4_sampling_defaults(NULL);
    CHECK(d.temperature == 1.0f && d.top_k == 64 && d.top_p == 0.95f && d.min_p == 0.0f,
          "no model: temp %g top_k %d top_p %g min_p %g", d.temperature, d.top_k, d.top_p, d.min_p);
    /* llama.cpp's penalty defaults: a window of 64, every penalty neutral */
    CHECK(d.penalty_last_n == 64 && d.repeat_penalty == 1.0f && d.frequency_penalty == 0 && d.presence_penalty == 0 &&
              !d.logit_bias && !d.n_logit_bias && !d.grammar && !d.grammar_root,
          "penalty defaults: last_n %d repeat %g freq %g presence %g", d.penalty_last_n, d.repeat_penalty,
          d.frequency_penalty, d.presence_penalty);
}

/* Logits that no model should produce are refused (-1) by every chain,
 * never sampled: NaN made top-p with top-k off, and min-p, keep an empty
 * set and read before their array. */
static void test_non_finite(void) {
    const gemma4_sampling chains[] = {
        params(0.0f, 64, 0.95f, 0.0f, 1), /* greedy */
        params(1.0f, 0, 0.9f, 0.0f, 1),   /* top-p with top-k off */
        params(1.0f, 0, 1.0f, 0.05f, 1),  /* min-p alone */
        params(1.0f, 3, 0.95f, 0.1f, 1),  /* top-k, top-p and min-p */
        params(0.7f, 0, 1.0f, 0.0f, 1),   /* temperature alone */
    };
    float all_nan[5], one_nan[5] = {1.0f, 2.0f, NAN, 0.5f, 1.5f}, pos_inf[5] = {1.0f, INFINITY, 0.0f, 0.0f, 0.0f};
    float all_ruled_out[5];
    for (int i = 0; i < 5; i++) all_nan[i] = NAN, all_ruled_out[i] = -INFINITY;
    const float *bad[] = {all_nan, one_nan, pos_inf, all_ruled_out};
    const char *what[] = {"all NaN", "one NaN", "+inf", "all -inf"};
    for (size_t c = 0; c < sizeof chains / sizeof chains[0]; c++) {
        gemma4_sampler *s = gemma4_sampler_new(&chains[c], 5);
        for (int b = 0; b < 4 && s; b++)
            CHECK(gemma4_sample(s, bad[b]) == -1, "chain %zu, %s logits: sampled %d, want -1", c, what[b], gemma4_sample(s, bad[b]));
        /* -inf on some tokens only rules them out */
        float some_ruled_out[5] = {-INFINITY, 3.0f, -INFINITY, 1.0f, -INFINITY};
        for (int k = 0; k < 20 && s; k++) {
            const int32_t id = gemma4_sample(s, some_ruled_out);
            CHECK(id == 1 || id == 3, "chain %zu: sampled %d, a ruled-out token", c, id);
        }
        gemma4_sampler_free(s);
    }
}

/* ---- logit edits: penalties, bias ---- */

static gemma4_sampling greedy_with(int32_t last_n, float rep, float freq, float pres) {
    gemma4_sampling p = params(0.0f, 64, 0.95f, 0.0f, 1);
    p.penalty_last_n = last_n, p.repeat_penalty = rep, p.frequency_penalty = freq, p.presence_penalty = pres;
    return p;
}

/* greedy pick of l (n tokens) after history hist[0..n_hist) */
static int32_t pick_after(gemma4_sampling p, const float *l, int n, const int32_t *hist, int n_hist) {
    gemma4_sampler *s = gemma4_sampler_new(&p, n);
    CHECK(s != NULL, "sampler_new refused valid penalties");
    if (!s) return -2;
    gemma4_sampler_accept(s, hist, n_hist);
    int32_t id = gemma4_sample(s, l);
    gemma4_sampler_free(s);
    return id;
}

/* llama.cpp's definitions on a 6-token vocabulary, worked out by hand */
static void test_penalty_values(void) {
    const float l[6] = {2.0f, 1.0f, -1.0f, 0.5f, 1.8f, -0.5f};
    const int32_t hist[4] = {0, 0, 2, 4};
    gemma4_sampling p = greedy_with(64, 1.5f, 0.1f, 0.2f);
    gemma4_sampler *s = gemma4_sampler_new(&p, 6);
    CHECK(s != NULL, "sampler_new refused valid penalties");
    if (!s) return;
    gemma4_sampler_accept(s, hist, 4);
    float e[6];
    memcpy(e, l, sizeof e);
    g4_sampler_edit_logits(s, e);
    /* 0 (twice): 2 / 1.5 - 2 * 0.1 - 0.2 = 0.9333; 2 (once, negative):
     * -1 * 1.5 - 0.1 - 0.2 = -1.8; 4: 1.8 / 1.5 - 0.3 = 0.9; others as they were */
    const float want[6] = {0.93333333f, 1.0f, -1.8f, 0.5f, 0.9f, -0.5f};
    for (int i = 0; i < 6; i++) CHECK(fabsf(e[i] - want[i]) < 1e-6f, "token %d: edited logit %.7g, want %.7g", i, e[i], want[i]);
    CHECK(gemma4_sample(s, l) == 1, "greedy after penalties picked %d, want 1", gemma4_sample(s, l));
    gemma4_sampler_free(s);
    CHECK(pick_after(greedy_with(64, 1.0f, 0, 0), l, 6, hist, 4) == 0, "neutral penalties changed the argmax");
}

/* Token 0 (logit 2) against token 1 (logit 1): each penalty flips the
 * greedy choice exactly where the hand-computed threshold lies. */
static void test_penalty_thresholds(void) {
    const float l[4] = {2.0f, 1.0f, 0.0f, -3.0f};
    const int32_t once[1] = {0}, thrice[3] = {0, 0, 0};
    /* repeat: 2 / r < 1 iff r > 2; at r = 2 the tie goes to the lower id */
    CHECK(pick_after(greedy_with(64, 1.999f, 0, 0), l, 4, once, 1) == 0, "repeat 1.999 flipped");
    CHECK(pick_after(greedy_with(64, 2.0f, 0, 0), l, 4, once, 1) == 0, "repeat 2: the tie must keep token 0");
    CHECK(pick_after(greedy_with(64, 2.001f, 0, 0), l, 4, once, 1) == 1, "repeat 2.001 did not flip");
    /* the repeat penalty counts presence, not occurrences */
    CHECK(pick_after(greedy_with(64, 1.999f, 0, 0), l, 4, thrice, 3) == 0, "repeat 1.999 flipped after three");
    /* frequency: 2 - 3 f < 1 iff f > 1/3; once: 2 - f < 1 iff f > 1 */
    CHECK(pick_after(greedy_with(64, 1.0f, 0.33f, 0), l, 4, thrice, 3) == 0, "frequency 0.33 x3 flipped");
    CHECK(pick_after(greedy_with(64, 1.0f, 0.34f, 0), l, 4, thrice, 3) == 1, "frequency 0.34 x3 did not flip");
    CHECK(pick_after(greedy_with(64, 1.0f, 0.34f, 0), l, 4, once, 1) == 0, "frequency 0.34 x1 flipped");
    /* presence: 2 - p < 1 iff p > 1, however often the token was seen */
    CHECK(pick_after(greedy_with(64, 1.0f, 0, 0.99f), l, 4, thrice, 3) == 0, "presence 0.99 flipped");
    CHECK(pick_after(greedy_with(64, 1.0f, 0, 1.01f), l, 4, once, 1) == 1, "presence 1.01 x1 did not flip");
    CHECK(pick_after(greedy_with(64, 1.0f, 0, 1.01f), l, 4, thrice, 3) == 1, "presence 1.01 x3 did not flip");
    /* off: a window of 0, or no history */
    CHECK(pick_after(greedy_with(0, 3.0f, 1.0f, 1.0f), l, 4, thrice, 3) == 0, "window 0 still penalised");
    CHECK(pick_after(greedy_with(64, 3.0f, 1.0f, 1.0f), l, 4, NULL, 0) == 0, "empty history penalised");
    /* a negative logit is multiplied: -1 * 1.5 = -1.5 falls below -1.4,
     * -1 * 1.3 does not (dividing would have raised it to -0.67) */
    const float neg[3] = {-1.0f, -1.4f, -5.0f};
    CHECK(pick_after(greedy_with(64, 1.5f, 0, 0), neg, 3, once, 1) == 1, "negative logit, repeat 1.5 did not flip");
    CHECK(pick_after(greedy_with(64, 1.3f, 0, 0), neg, 3, once, 1) == 0, "negative logit, repeat 1.3 flipped");
}

/* Greedy decoding where every token seen in the window loses 10: the
 * period of the output is the window length plus one. */
static void test_penalty_window(void) {
    const float l[6] = {5, 4, 3, 2, 1, 0};
    const struct {
        int32_t last_n;
        int32_t want[10];
    } cases[] = {
        {3, {0, 1, 2, 3, 0, 1, 2, 3, 0, 1}},
        {4, {0, 1, 2, 3, 4, 0, 1, 2, 3, 4}},
        {1, {0, 1, 0, 1, 0, 1, 0, 1, 0, 1}},
        /* all seen: once every token carries the same -10, token 0 leads again and stays */
        {-1, {0, 1, 2, 3, 4, 5, 0, 0, 0, 0}},
        {0, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gemma4_sampling p = greedy_with(cases[c].last_n, 1.0f, 0, 10.0f);
        gemma4_sampler *s = gemma4_sampler_new(&p, 6);
        CHECK(s != NULL, "window %d refused", cases[c].last_n);
        for (int i = 0; s && i < 10; i++) {
            int32_t id = gemma4_sample(s, l);
            CHECK(id == cases[c].want[i], "window %d, step %d: %d, want %d", cases[c].last_n, i, id, cases[c].want[i]);
        }
        gemma4_sampler_free(s);
    }
    /* the prompt fed through accept fills the window too */
    const int32_t prompt[2] = {0, 1};
    CHECK(pick_after(greedy_with(3, 1.0f, 0, 10.0f), l, 6, prompt, 2) == 2, "prompt tokens not penalised");
    gemma4_sampling p = greedy_with(-2, 1.0f, 0, 1.0f);
    CHECK(gemma4_sampler_new(&p, 6) == NULL, "penalty_last_n -2 accepted");
    p = greedy_with(8, -1.0f, 0, 0);
    CHECK(gemma4_sampler_new(&p, 6) == NULL, "negative repeat_penalty accepted");
    p = greedy_with(8, 1.0f, INFINITY, 0);
    CHECK(gemma4_sampler_new(&p, 6) == NULL, "infinite frequency_penalty accepted");
}

/* Long histories against a recount from scratch: the window slides over
 * thousands of tokens (the history array compacts and grows) and the edited
 * logits must equal the definitions applied to the last last_n tokens. */
static void test_penalty_long_history(void) {
    enum { NV = 50, STEPS = 6000 };
    static int32_t all[STEPS];
    const int32_t windows[] = {1, 37, 64, 1000, -1};
    float l[NV], e[NV];
    for (int i = 0; i < NV; i++) l[i] = (float)((i * 7) % 11) - 4.0f; /* positive, zero and negative */
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        gemma4_sampling p = greedy_with(windows[w], 1.3f, 0.5f, 0.25f);
        gemma4_sampler *s = gemma4_sampler_new(&p, NV);
        CHECK(s != NULL, "window %d refused", windows[w]);
        if (!s) continue;
        uint32_t x = 5 + (uint32_t)w;
        int bad = 0, n = 0;
        while (n < STEPS) {
            int chunk = 1 + (int)(lcg(&x) % 97);
            if (n + chunk > STEPS) chunk = STEPS - n;
            for (int i = 0; i < chunk; i++) all[n + i] = (int32_t)(lcg(&x) % NV);
            gemma4_sampler_accept(s, all + n, chunk);
            n += chunk;
            int count[NV] = {0}, from = windows[w] < 0 || windows[w] > n ? 0 : n - windows[w];
            for (int i = from; i < n; i++) count[all[i]]++;
            memcpy(e, l, sizeof e);
            g4_sampler_edit_logits(s, e);
            for (int t = 0; t < NV; t++) {
                float want = l[t];
                if (count[t]) want = (want > 0 ? want / 1.3f : want * 1.3f) - (count[t] * 0.5f + 0.25f);
                bad += fabsf(e[t] - want) > 1e-4f;
            }
        }
        CHECK(bad == 0, "window %d: %d edited logits differ from a recount", windows[w], bad);
        gemma4_sampler_free(s);
    }
}

static void test_logit_bias(void) {
    const float l[3] = {3.0f, 1.0f, 2.0f};
    gemma4_logit_bias ban[1] = {{0, -INFINITY}}, force[2] = {{1, 50.0f}, {2, -1.0f}};
    gemma4_sampling p = params(0.0f, 64, 0.95f, 0.0f, 3);
    p.logit_bias = ban, p.n_logit_bias = 1;
    gemma4_sampler *g = gemma4_sampler_new(&p, 3);
    p.temperature = 1.0f;
    gemma4_sampler *t = gemma4_sampler_new(&p, 3);
    ban[0].token = 2; /* the samplers keep their own copy */
    p.logit_bias = force, p.n_logit_bias = 2;
    gemma4_sampler *f = gemma4_sampler_new(&p, 3);
    CHECK(g && t && f, "valid biases refused");
    if (!g || !t || !f) return;
    CHECK(gemma4_sample(g, l) == 2, "greedy with token 0 banned: %d, want 2", gemma4_sample(g, l));
    int banned = 0, not_forced = 0;
    for (int i = 0; i < 2000; i++) {
        banned += gemma4_sample(t, l) == 0;
        not_forced += gemma4_sample(f, l) != 1; /* e^-49 against the rest */
    }
    CHECK(banned == 0, "a -inf bias was drawn %d times", banned);
    CHECK(not_forced == 0, "a +50 bias lost %d times", not_forced);
    float e[3] = {3.0f, 1.0f, 2.0f};
    g4_sampler_edit_logits(f, e);
    CHECK(e[0] == 3.0f && e[1] == 51.0f && e[2] == 1.0f, "biased logits %g %g %g, want 3 51 1", e[0], e[1], e[2]);
    gemma4_sampler_free(g);
    gemma4_sampler_free(t);
    gemma4_sampler_free(f);

    /* everything banned: nothing to pick */
    gemma4_logit_bias all[3] = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}};
    p.logit_bias = all, p.n_logit_bias = 3;
    for (int temp = 0; temp < 2; temp++) {
        p.temperature = (float)temp;
        gemma4_sampler *s = gemma4_sampler_new(&p, 3);
        CHECK(s && gemma4_sample(s, l) == -1, "temperature %d, all banned: want -1", temp);
        gemma4_sampler_free(s);
    }
    const gemma4_logit_bias bad[] = {{3, 1.0f}, {-1, 1.0f}, {0, NAN}, {0, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p.logit_bias = &bad[i], p.n_logit_bias = 1;
        CHECK(gemma4_sampler_new(&p, 3) == NULL, "bias {%d, %g} accepted", bad[i].token, bad[i].bias);
    }
    p.logit_bias = NULL, p.n_logit_bias = 1;
    CHECK(gemma4_sampler_new(&p, 3) == NULL, "n_logit_bias 1 without an array accepted");
    p.n_logit_bias = 0, p.grammar = "root ::= \"a\"";
    CHECK(gemma4_sampler_new(&p, 3) == NULL, "a grammar without a model accepted");
}

/* Penalties and bias that change nothing leave the draws alone: the same
 * seed gives the same sequence as a plain sampler, and the distribution
 * passes the same chi-square. */
static void test_neutral_settings(void) {
    enum { N = 40, DRAWS = 500 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)((i * 13) % 17) * 0.2f;
    gemma4_sampling plain = params(0.8f, 20, 0.9f, 0.02f, 77), neutral = plain;
    gemma4_logit_bias zero[1] = {{5, 0.0f}};
    neutral.penalty_last_n = -1, neutral.repeat_penalty = 1.0f, neutral.logit_bias = zero, neutral.n_logit_bias = 1;
    gemma4_sampler *a = gemma4_sampler_new(&plain, N), *b = gemma4_sampler_new(&neutral, N);
    int differ = 0;
    for (int i = 0; a && b && i < DRAWS; i++) differ += gemma4_sample(a, l) != gemma4_sample(b, l);
    CHECK(a && b && differ == 0, "neutral settings changed %d of %d draws", differ, DRAWS);
    gemma4_sampler_free(a);
    gemma4_sampler_free(b);

    gemma4_sampling d = gemma4_sampling_defaults(NULL);
    d.seed = 21, d.top_k = 3, d.top_p = 1.0f; /* llama.cpp's penalty defaults: on but neutral */
    double k3[NT] = {[4] = 0.40 / 0.80, [1] = 0.25 / 0.80, [6] = 0.15 / 0.80};
    check_frequencies("top-k 3, default penalties", d, k3);
    d.penalty_last_n = 0, d.repeat_penalty = 1.5f, d.frequency_penalty = 1.0f, d.presence_penalty = 1.0f;
    check_frequencies("top-k 3, penalties with window 0", d, k3);
}

/* ---- clones ---- */

static void draws(gemma4_sampler *s, const float *l, int32_t *out, int n) {
    for (int i = 0; i < n; i++) out[i] = gemma4_sample(s, l);
}

static void test_clone(void) {
    enum { N = 30, A = 7, B = 40 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)(i % 5) * 0.3f;
    gemma4_logit_bias bias[1] = {{3, 2.0f}};
    gemma4_sampling p = params(1.0f, 0, 1.0f, 0.0f, 1234);
    p.penalty_last_n = 16, p.frequency_penalty = 0.4f, p.presence_penalty = 0.3f, p.repeat_penalty = 1.2f;
    p.logit_bias = bias, p.n_logit_bias = 1;
    gemma4_sampler *s = gemma4_sampler_new(&p, N);
    CHECK(s != NULL, "sampler_new");
    if (!s) return;
    const int32_t prompt[5] = {4, 9, 4, 14, 29};
    gemma4_sampler_accept(s, prompt, 5);
    int32_t warm[10], x[A + B], y[A + B], z[B];
    draws(s, l, warm, 10);
    gemma4_sampler *c1 = gemma4_sampler_clone(s);
    CHECK(c1 != NULL, "clone");
    if (!c1) return;
    /* c1 goes ahead A draws, then is cloned: the clone of the clone continues
     * where c1 does, and s, which never moved, repeats c1's whole stream */
    draws(c1, l, x, A);
    gemma4_sampler *c2 = gemma4_sampler_clone(c1);
    draws(c1, l, x + A, B);
    draws(c2, l, z, B);
    draws(s, l, y, A + B);
    CHECK(!memcmp(x, y, sizeof x), "the clone's stream differs from the original's");
    CHECK(!memcmp(x + A, z, sizeof z), "the clone of the clone differs from its source");
    /* the history counts: a sampler with the same seed but no prompt or
     * warm-up history gives another stream */
    gemma4_sampler_free(s);
    gemma4_sampler_free(c1); /* c2 must stand alone */
    int32_t w1[B], w2[B];
    gemma4_sampler *c3 = gemma4_sampler_clone(c2);
    draws(c2, l, w1, B);
    draws(c3, l, w2, B);
    CHECK(c3 && !memcmp(w1, w2, sizeof w1), "clone after its source was freed differs");
    gemma4_sampler_free(c2);
    gemma4_sampler_free(c3);
}

/* ---- log-probabilities ---- */

/* slow reference: log p_i = -log sum_j exp(l_j - l_i), in long double */
static double ref_logprob(const float *l, int n, int i) {
    long double sum = 0;
    for (int j = 0; j < n; j++) sum += expl((long double)l[j] - l[i]);
    return (double)-logl(sum);
}

static void test_logprobs(void) {
    enum { N = 1000 };
    static float l[N];
    uint32_t x = 3;
    for (int i = 0; i < N; i++) l[i] = (float)(lcg(&x) % 400) / 25.0f - 8.0f; /* 400 levels: many ties */
    l[17] = l[900] = -INFINITY;
    double worst = 0;
    for (int i = 0; i < N; i += 7) {
        if (i == 17) continue;
        worst = fmax(worst, fabs(gemma4_logprobs(l, N, i, 0, NULL) - ref_logprob(l, N, i)));
    }
    CHECK(worst < 2e-6, "logprob differs from the reference by %g", worst);
    CHECK(gemma4_logprobs(l, N, 17, 0, NULL) == -INFINITY, "a -inf logit must have logprob -inf");
    CHECK(isnan(gemma4_logprobs(l, N, N, 0, NULL)) && isnan(gemma4_logprobs(l, N, -1, 0, NULL)),
          "a token out of range must give NaN");

    /* top k against a selection by repeated scans: largest, ties to the lower id */
    const int32_t ks[] = {0, 1, 5, 20, 64, N, N + 50};
    static gemma4_logprob top[N + 51];
    static char taken[N];
    for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
        int32_t k = ks[c], kk = k < N ? k : N;
        for (int i = 0; i < N + 51; i++) top[i] = (gemma4_logprob){-7, 7.0f};
        float lp = gemma4_logprobs(l, N, 3, k, top);
        CHECK(fabs(lp - ref_logprob(l, N, 3)) < 2e-6, "k %d: logprob of token 3 %g", k, lp);
        memset(taken, 0, sizeof taken);
        int wrong = 0;
        for (int r = 0; r < kk; r++) {
            int best = -1;
            for (int i = 0; i < N; i++)
                if (!taken[i] && (best < 0 || l[i] > l[best])) best = i;
            taken[best] = 1;
            wrong += top[r].token != best;
            if (top[r].token == best && l[best] != -INFINITY)
                wrong += fabs(top[r].logprob - ref_logprob(l, N, best)) > 2e-6;
        }
        CHECK(wrong == 0, "k %d: %d of the top entries are wrong", k, wrong);
        CHECK(top[kk].token == -7, "k %d: wrote past the %d entries it may", k, kk);
    }

    /* far from zero: no overflow, and exact values known by hand */
    const float big[3] = {1000.0f, 999.0f, -1000.0f};
    double want = -log1p(exp(-1.0)) /* -log(1 + e^-1) */;
    CHECK(fabs(gemma4_logprobs(big, 3, 0, 0, NULL) - want) < 1e-6, "logprob at 1000: %g, want %g",
          gemma4_logprobs(big, 3, 0, 0, NULL), want);
    CHECK(fabs(gemma4_logprobs(big, 3, 2, 0, NULL) - (-2000.0 + want)) < 1e-3, "logprob at -1000");
    const float bad[3] = {1.0f, NAN, 0.0f};
    gemma4_logprob t1[1];
    CHECK(isnan(gemma4_logprobs(bad, 3, 0, 1, t1)) && t1[0].token == -1, "NaN logits must give NaN and no token");
}

/* A full vocabulary: the softmax sums to 1 within 1e-9 (in double, before
 * the float a caller receives), and reading the top 20 allocates nothing
 * that could fail. */
static void test_logprobs_large(void) {
    enum { N = 262144 };
    float *l = malloc(N * sizeof *l);
    uint32_t x = 11;
    for (int i = 0; i < N; i++) l[i] = (float)(lcg(&x) % 100000) / 4000.0f - 10.0f;
    double lse = g4_log_sum_exp(l, N);
    long double sum = 0;
    for (int i = 0; i < N; i++) sum += expl((long double)l[i] - lse);
    CHECK(fabsl(sum - 1) < 1e-9L, "softmax sums to 1 %+.3Lg", sum - 1);
    float fsum = 0;
    gemma4_logprob top[20];
    gemma4_logprobs(l, N, 0, 20, top);
    for (int i = 0; i < 20; i++) fsum += expf(top[i].logprob);
    int order = 1;
    for (int i = 1; i < 20; i++) order &= top[i - 1].logprob > top[i].logprob ||
                                         (top[i - 1].logprob == top[i].logprob && top[i - 1].token < top[i].token);
    CHECK(order && fsum > 0 && fsum < 1, "top 20 out of order or probabilities off (sum %g)", fsum);
    free(l);
}

/* ---- on a model: suppressed tokens, init errors ---- */

/* Copies fixture model src to dst with one more key: an array of n
 * elements of type elem. 0, or -1 after a failed check. */
static int copy_with_array(const char *src, const char *dst, const char *key, enum g4_gguf_value_type elem,
                           const void *data, uint64_t n) {
    char err[G4_ERR_LEN] = "";
    g4_gguf_file *f = g4_gguf_open(src, err);
    g4_gguf_writer *w = f ? g4_gguf_writer_new(dst, 0, err) : NULL;
    int rc = w ? 0 : -1;
    for (int64_t i = 0; !rc && i < g4_gguf_n_kv(f); i++) {
        const g4_gguf_kv *kv = g4_gguf_kv_at(f, i);
        if (strcmp(kv->key, "general.alignment")) rc = g4_gguf_writer_copy_kv(w, kv, err);
    }
    rc = rc ? rc : g4_gguf_writer_set_arr(w, key, elem, data, n, err);
    for (int64_t i = 0; !rc && i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        rc = g4_gguf_writer_add_tensor(w, t->name, (enum g4_type)t->type, t->n_dims, t->ne, err);
    }
    rc = rc ? rc : g4_gguf_writer_begin(w, err);
    for (int64_t i = 0; !rc && i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        rc = g4_gguf_writer_write(w, t->data, t->nbytes, err);
    }
    rc = rc ? rc : g4_gguf_writer_finish(w, err);
    CHECK(rc == 0, "writing %s: %s", dst, err);
    g4_gguf_writer_free(w);
    g4_gguf_close(f);
    return rc;
}

/* Loads src with the extra array key; NULL after a failed check. */
static gemma4_model *load_with_array(const char *src, const char *key, enum g4_gguf_value_type elem, const void *data,
                                     uint64_t n) {
    char dst[] = "/tmp/g4_test_sampler_XXXXXX", err[G4_ERR_LEN] = "";
    int fd = mkstemp(dst);
    if (fd >= 0) close(fd);
    gemma4_model *m = NULL;
    if (fd >= 0 && !copy_with_array(src, dst, key, elem, data, n)) {
        m = gemma4_load(dst, err);
        CHECK(m != NULL, "loading %s: %s", dst, err);
    }
    remove(dst); /* the mapping stays valid */
    return m;
}

static void test_model_settings(void) {
    char src[1024], err[G4_ERR_LEN] = "";
    snprintf(src, sizeof src, "%s/models/dense_f32.gguf", test_fixtures_dir());
    if (access(src, R_OK)) {
        SKIP("sampler on a model", "%s not found (sh tests/fixtures.sh build/fixtures)", src);
        return;
    }
    const int32_t sup[2] = {5, 7};
    gemma4_model *m = load_with_array(src, "tokenizer.ggml.suppress_tokens", GGUF_TYPE_INT32, sup, 2);
    if (!m) return;
    int32_t n = gemma4_n_vocab(m);
    float *l = malloc((size_t)n * sizeof *l);
    for (int32_t i = 0; i < n; i++) l[i] = -(float)(i % 13);
    l[5] = 9.0f, l[7] = 8.0f, l[9] = 7.0f;
    gemma4_sampling p = params(0.0f, 64, 0.95f, 0.0f, 8);
    gemma4_sampler *s = gemma4_sampler_init(m, &p, err), *plain = gemma4_sampler_new(&p, n);
    CHECK(s != NULL, "sampler_init: %s", err);
    CHECK(plain && gemma4_sample(plain, l) == 5, "without the model's list, greedy must pick 5");
    CHECK(s && gemma4_sample(s, l) == 9, "greedy picked a suppressed token: %d", s ? gemma4_sample(s, l) : -9);
    gemma4_sampler_free(s);
    gemma4_sampler_free(plain);
    /* drawing: the two suppressed tokens hold nearly all the mass, yet never come */
    p.temperature = 1.0f;
    s = gemma4_sampler_init(m, &p, err);
    int drawn = 0;
    for (int i = 0; s && i < 500; i++) {
        int32_t id = gemma4_sample(s, l);
        drawn += id == 5 || id == 7;
    }
    CHECK(s && drawn == 0, "suppressed tokens drawn %d times", drawn);
    gemma4_sampler *c = s ? gemma4_sampler_clone(s) : NULL;
    for (int i = 0; c && i < 100; i++) drawn += gemma4_sample(c, l) == 5;
    CHECK(c && drawn == 0, "the clone drew a suppressed token");
    gemma4_sampler_free(c);
    gemma4_sampler_free(s);

    /* a bias for a token past the vocabulary names it */
    gemma4_logit_bias far[1] = {{n + 5, 1.0f}};
    p.logit_bias = far, p.n_logit_bias = 1;
    char want[64];
    snprintf(want, sizeof want, "token %d", n + 5);
    s = gemma4_sampler_init(m, &p, err);
    CHECK(!s && strstr(err, want) && strstr(err, "logit_bias"), "bias out of range: '%s' must name %s", err, want);
    gemma4_sampler_free(s);
    gemma4_model_free(m);
    free(l);

    /* a broken list is one error naming the key */
    const int32_t out_of_range[2] = {3, 1 << 30};
    const float floats[1] = {3.0f};
    struct {
        enum g4_gguf_value_type elem;
        const void *data;
    } broken[] = {{GGUF_TYPE_INT32, out_of_range}, {GGUF_TYPE_FLOAT32, floats}};
    for (int b = 0; b < 2; b++) {
        m = load_with_array(src, "tokenizer.ggml.suppress_tokens", broken[b].elem, broken[b].data, 2 - (uint64_t)b);
        if (!m) continue;
        err[0] = 0;
        gemma4_sampling d = gemma4_sampling_defaults(m);
        s = gemma4_sampler_init(m, &d, err);
        CHECK(!s && strstr(err, "tokenizer.ggml.suppress_tokens") && !strchr(err, '\n'),
              "broken suppress list %d: '%s' must be one line naming the key", b, err);
        gemma4_sampler_free(s);
        gemma4_model_free(m);
    }
}

/* ---- grammar ---- */

/* Samples up to max tokens from fresh random logits each step until an
 * end-of-generation token; writes the text before it to text. Returns the
 * number of tokens before the end, -1 if a sample failed, -2 if no end came. */
static int grammar_run(const gemma4_model *m, gemma4_sampler *s, uint32_t *x, float *l, int max, char *text,
                       size_t cap) {
    int32_t n = gemma4_n_vocab(m), ids[64];
    for (int step = 0; step < max && step < 64; step++) {
        for (int32_t i = 0; i < n; i++) l[i] = (float)(lcg(x) % 600) / 100.0f - 3.0f;
        int32_t id = gemma4_sample(s, l);
        if (id < 0) return -1;
        if (gemma4_token_is_eog(m, id)) {
            gemma4_detokenize(m, ids, step, false, text, cap);
            return step;
        }
        ids[step] = id;
    }
    return -2;
}

static void test_grammar(void) {
    char path[1024], err[G4_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/models/dense_f32.gguf", test_fixtures_dir());
    if (access(path, R_OK)) {
        SKIP("sampler grammar", "%s not found (sh tests/fixtures.sh build/fixtures)", path);
        return;
    }
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;
    int32_t n = gemma4_n_vocab(m);
    float *l = malloc((size_t)n * sizeof *l);
    const char *g = "root ::= answer \"!\"?\nanswer ::= \"yes\" | \"no\"\n";
    int seen_yes = 0, seen_no = 0, bang = 0, bad = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        /* temperature draws and greedy both; penalties on, to show they do not break the grammar */
        gemma4_sampling p = params(seed % 4 == 3 ? 0.0f : 1.0f, 0, 1.0f, 0.0f, seed);
        p.grammar = g, p.penalty_last_n = 8, p.repeat_penalty = 1.3f;
        gemma4_sampler *s = gemma4_sampler_init(m, &p, err);
        CHECK(s != NULL, "grammar sampler: %s", err);
        if (!s) break;
        char text[64] = "";
        uint32_t x = (uint32_t)seed * 7919u + 1;
        int k = grammar_run(m, s, &x, l, 12, text, sizeof text);
        bool ok = k > 0 && (!strcmp(text, "yes") || !strcmp(text, "no") || !strcmp(text, "yes!") || !strcmp(text, "no!"));
        if (!ok && bad++ < 3) {
            char hex[200] = "";
            for (size_t i = 0; text[i] && i < 60; i++) snprintf(hex + 3 * i, 4, "%02x ", (unsigned char)text[i]);
            CHECK(0, "seed %llu: %d tokens, bytes %s", (unsigned long long)seed, k, hex);
        }
        seen_yes += text[0] == 'y';
        seen_no += text[0] == 'n';
        bang += strchr(text, '!') != NULL;
        gemma4_sampler_free(s);
    }
    CHECK(bad == 0, "%d of 40 generations broke the grammar", bad);
    CHECK(seen_yes > 0 && seen_no > 0 && bang > 0, "random logits never chose yes (%d), no (%d) or '!' (%d)", seen_yes,
          seen_no, bang);

    /* a clone mid-way stands where its source does: same logits, same text */
    gemma4_sampling p = params(1.0f, 0, 1.0f, 0.0f, 5);
    p.grammar = "root ::= [a-c]{6} \".\"";
    gemma4_sampler *a = gemma4_sampler_init(m, &p, err);
    CHECK(a != NULL, "grammar sampler: %s", err);
    if (a) {
        uint32_t x = 99;
        for (int32_t i = 0; i < n; i++) l[i] = (float)(lcg(&x) % 600) / 100.0f - 3.0f;
        int32_t first = gemma4_sample(a, l);
        gemma4_sampler *b = gemma4_sampler_clone(a);
        uint32_t xa = 5, xb = 5;
        char ta[64] = "", tb[64] = "";
        int ka = grammar_run(m, a, &xa, l, 12, ta, sizeof ta), kb = b ? grammar_run(m, b, &xb, l, 12, tb, sizeof tb) : -3;
        char piece[16] = "";
        size_t len = gemma4_token_to_piece(m, first, false, piece, sizeof piece - 1);
        piece[len < sizeof piece ? len : 0] = 0;
        CHECK(ka >= 0 && ka == kb && !strcmp(ta, tb), "clone: '%s' (%d) against '%s' (%d)", ta, ka, tb, kb);
        /* first piece + the rest is six letters of a..c and a dot */
        char whole[80];
        snprintf(whole, sizeof whole, "%s%s", piece, ta);
        bool shape = strlen(whole) == 7 && whole[6] == '.' && strspn(whole, "abc") == 6;
        CHECK(shape, "'%s' does not match [a-c]{6} \".\"", whole);
        gemma4_sampler_free(b);
        gemma4_sampler_free(a);
    }

    /* errors: a bad grammar names line and column; a grammar needs a model */
    p.grammar = "root ::= \"a\"\nnext ::= (\"b\"\n";
    gemma4_sampler *s = gemma4_sampler_init(m, &p, err);
    CHECK(!s && strstr(err, "line 2") && !strchr(err, '\n'), "grammar error: '%s'", err);
    gemma4_sampler_free(s);
    p.grammar = "root ::= \"a\"", p.grammar_root = "start";
    s = gemma4_sampler_init(m, &p, err);
    CHECK(!s && strstr(err, "start"), "missing root rule: '%s'", err);
    gemma4_sampler_free(s);
    free(l);
    gemma4_model_free(m);
}

/* The grammar's vocabulary is built once per model, on first use, even when
 * several threads ask at once (a second build would leak: ASan's leak check
 * sees it), and not at all without a grammar. */
typedef struct init_job {
    const gemma4_model *m;
    gemma4_sampler *s;
    char err[G4_ERR_LEN];
} init_job;

static void *init_with_grammar(void *arg) {
    init_job *j = arg;
    gemma4_sampling p = params(0.0f, 0, 1.0f, 0.0f, 1);
    p.grammar = "root ::= [0-9]+";
    j->s = gemma4_sampler_init(j->m, &p, j->err);
    return NULL;
}

static void test_grammar_vocab_once(void) {
    char path[1024], err[G4_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/models/e2b_f32.gguf", test_fixtures_dir());
    if (access(path, R_OK)) {
        SKIP("sampler grammar vocabulary", "%s not found (sh tests/fixtures.sh build/fixtures)", path);
        return;
    }
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;
    gemma4_sampling plain = params(1.0f, 64, 0.95f, 0.0f, 1);
    gemma4_sampler *s = gemma4_sampler_init(m, &plain, err);
    CHECK(s && !m->grammar_vocab, "a sampler without a grammar built the grammar vocabulary");
    gemma4_sampler_free(s);
    enum { THREADS = 4 };
    pthread_t t[THREADS];
    init_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (init_job){.m = m};
        CHECK(!pthread_create(&t[i], NULL, init_with_grammar, &jobs[i]), "pthread_create");
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    const struct g4_grammar_vocab *gv = m->grammar_vocab;
    CHECK(gv != NULL, "no grammar vocabulary after the grammar samplers");
    for (int i = 0; i < THREADS; i++) {
        CHECK(jobs[i].s != NULL, "thread %d: %s", i, jobs[i].err);
        gemma4_sampler_free(jobs[i].s);
    }
    init_job again = {.m = m};
    init_with_grammar(&again);
    CHECK(again.s && m->grammar_vocab == gv, "a later grammar sampler rebuilt the vocabulary");
    gemma4_sampler_free(again.s);
    gemma4_model_free(m); /* frees the vocabulary (the leak check would see it otherwise) */
}

/* Under a grammar, with no truncation, the draws follow the model's
 * distribution renormalised over the tokens the grammar allows (drawing
 * first and masking only after a refusal must not bias it), and greedy
 * picks the best allowed token. The allowed set comes from the grammar API
 * itself, asked token by token; the probabilities are computed here. */
static void test_grammar_distribution(void) {
    char path[1024], err[G4_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/models/dense_f32.gguf", test_fixtures_dir());
    if (access(path, R_OK)) {
        SKIP("sampler grammar distribution", "%s not found (sh tests/fixtures.sh build/fixtures)", path);
        return;
    }
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;
    const char *text = "root ::= [a-z]*"; /* the same tokens are allowed at every step */
    gemma4_sampling p = params(1.0f, 0, 1.0f, 0.0f, 3);
    p.grammar = text;
    gemma4_sampler *s = gemma4_sampler_init(m, &p, err);
    g4_grammar *g = g4_grammar_parse(text, strlen(text), NULL, err);
    g4_grammar_state *st = g ? g4_grammar_state_new(g, err) : NULL;
    CHECK(s && st, "grammar: %s", err);
    int32_t n = gemma4_n_vocab(m), pick[4], bad_tok[3], n_pick = 0, n_bad = 0;
    float *l = malloc((size_t)n * sizeof *l);
    char *allowed = calloc((size_t)n, 1);
    for (int32_t t = 0; s && st && t < n; t++) {
        allowed[t] = g4_grammar_allows(st, m->grammar_vocab, t);
        l[t] = gemma4_token_is_eog(m, t) ? -INFINITY : -20.0f;
        if (gemma4_token_is_eog(m, t)) continue;
        if (allowed[t] && n_pick < 4) pick[n_pick++] = t;
        else if (!allowed[t] && n_bad < 3) bad_tok[n_bad++] = t;
    }
    CHECK(n_pick == 4 && n_bad == 3, "the fixture vocabulary lacks allowed (%d) or refused (%d) tokens", n_pick, n_bad);
    if (n_pick == 4 && n_bad == 3) {
        const float lp[4] = {2.0f, 1.0f, 0.5f, 0.0f};
        for (int i = 0; i < 4; i++) l[pick[i]] = lp[i];
        for (int i = 0; i < 3; i++) l[bad_tok[i]] = 3.0f; /* most of the unmasked mass: most first draws are refused */
        double z = 0, want[5] = {0};
        for (int32_t t = 0; t < n; t++)
            if (allowed[t] && l[t] != -INFINITY) z += exp(l[t]);
        for (int i = 0; i < 4; i++) want[i] = exp(lp[i]) / z;
        want[4] = 1 - want[0] - want[1] - want[2] - want[3]; /* the other allowed tokens, at -20 each */
        enum { DRAWS = 20000 };
        long count[5] = {0};
        int refused = 0;
        for (int i = 0; i < DRAWS; i++) {
            int32_t id = gemma4_sample(s, l), b = 4;
            if (id < 0 || !allowed[id]) {
                refused++;
                continue;
            }
            for (int k = 0; k < 4; k++)
                if (id == pick[k]) b = k;
            count[b]++;
        }
        CHECK(refused == 0, "%d draws were refused tokens or failed", refused);
        double chi2 = 0;
        for (int k = 0; k < 4; k++) chi2 += (count[k] - want[k] * DRAWS) * (count[k] - want[k] * DRAWS) / (want[k] * DRAWS);
        /* 3 degrees of freedom (the tiny fifth bucket is checked on its own) */
        CHECK(chi2 < 3 + 6 * sqrt(6.0) && count[4] <= 5, "grammar draws: chi-square %.2f, %ld others (want ~%.2g)", chi2,
              count[4], want[4] * DRAWS);

        /* greedy: the best allowed token, found by a scan over the allowed set */
        gemma4_sampling gp = params(0.0f, 64, 0.95f, 0.0f, 1);
        gp.grammar = text;
        gemma4_sampler *gs = gemma4_sampler_init(m, &gp, err);
        uint32_t x = 17;
        int wrong = 0;
        for (int rep = 0; gs && rep < 30; rep++) {
            for (int32_t t = 0; t < n; t++) l[t] = gemma4_token_is_eog(m, t) ? -INFINITY : (float)(lcg(&x) % 1000) / 100.0f;
            int32_t best = -1;
            for (int32_t t = 0; t < n; t++)
                if (allowed[t] && l[t] != -INFINITY && (best < 0 || l[t] > l[best])) best = t;
            int32_t got = gemma4_sample(gs, l);
            if (got != best && wrong++ < 3)
                CHECK(0, "greedy step %d under the grammar: token %d (logit %g), want %d (logit %g)", rep, got,
                      got >= 0 ? l[got] : 0.0, best, l[best]);
        }
        CHECK(gs && wrong == 0, "greedy under the grammar missed the best allowed token %d times of 30", wrong);
        /* the mask and the single-token check must agree (the sampler relies on both) */
        for (int32_t t = 0; t < n; t++) l[t] = 0.0f;
        g4_grammar_mask(st, m->grammar_vocab, l);
        int disagree = 0;
        for (int32_t t = 0; t < n; t++) disagree += (l[t] == 0.0f) != (allowed[t] != 0);
        CHECK(disagree == 0, "g4_grammar_mask and g4_grammar_allows disagree on %d tokens", disagree);
        gemma4_sampler_free(gs);
    }
    free(allowed);
    free(l);
    g4_grammar_state_free(st);
    g4_grammar_free(g);
    gemma4_sampler_free(s);
    gemma4_model_free(m);
}

/* ignore_eos bans every end-of-generation token, however likely: here each
 * in turn holds all the probability, and the draw must still avoid it. */
static void test_ignore_eos(void) {
    char path[1024], err[G4_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/models/dense_f32.gguf", test_fixtures_dir());
    if (access(path, R_OK)) {
        SKIP("sampler ignore_eos", "%s not found (sh tests/fixtures.sh build/fixtures)", path);
        return;
    }
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;
    const int32_t n = gemma4_n_vocab(m);
    float *l = calloc((size_t)n, sizeof *l);
    int n_eog = 0, picked_eog = 0;
    gemma4_sampling p = gemma4_sampling_defaults(m);
    p.ignore_eos = true;
    CHECK(gemma4_sampler_new(&p, n) == NULL, "ignore_eos needs the model: gemma4_sampler_new refuses it");
    for (int32_t id = 0; l && id < n; id++) {
        if (!gemma4_token_is_eog(m, id)) continue;
        n_eog++;
        l[id] = 1e4f;
        for (int greedy = 0; greedy < 2; greedy++) {
            p.temperature = greedy ? 0.0f : 1.0f;
            gemma4_sampler *s = gemma4_sampler_init(m, &p, err);
            CHECK(s != NULL, "%s", err);
            const int32_t got = s ? gemma4_sample(s, l) : -1;
            picked_eog += got < 0 || gemma4_token_is_eog(m, got);
            gemma4_sampler_free(s);
        }
        l[id] = 0;
    }
    CHECK(n_eog >= 2, "the model has %d end-of-generation tokens", n_eog);
    CHECK(picked_eog == 0, "%d draws picked an end-of-generation token (or none) under ignore_eos", picked_eog);
    free(l);
    gemma4_model_free(m);
}

int main(void) {
    test_non_finite();
    test_greedy();
    test_top_k_one();
    test_seed();
    test_frequencies();
    test_large_vocab_top_k();
    test_large_vocab_top_p();
    test_rejects();
    test_defaults();
    test_penalty_values();
    test_penalty_thresholds();
    test_penalty_window();
    test_penalty_long_history();
    test_logit_bias();
    test_neutral_settings();
    test_clone();
    test_logprobs();
    test_logprobs_large();
    test_model_settings();
    test_grammar();
    test_grammar_vocab_once();
    test_grammar_distribution();
    test_ignore_eos();
    return test_summary("test_sampler");
}
