/* Sampler: greedy, truncation (top-k, top-p, min-p), temperature, seeding,
 * and the defaults read from general.sampling.* GGUF keys. Expected sets and
 * probabilities are written out by hand from the distributions below, not
 * computed by the code under test. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "tests/harness.h"

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
    return test_summary("test_sampler");
}
