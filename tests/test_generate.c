/* Generation on the fixture models: a fixed seed reproduces the same tokens
 * (and another seed does not), and greedy decoding token by token picks, at
 * every step, the argmax of the logits the prefill path computes for the
 * whole generated sequence at once. */
#include <stdlib.h>
#include <string.h>

#include "gemma4_internal.h"
#include "tests/harness.h"

enum { N_GEN = 24 };

/* BOS and a few ids from the fixture sequences: the generated tokens run
 * well past the sliding window (8) of the fixture models */
static const int32_t prompt[] = {2, 170, 37, 401, 288, 9, 77};
enum { N_PROMPT = sizeof prompt / sizeof prompt[0] };

/* Feeds the prompt, then samples n tokens one decode step at a time. With
 * force, token i fed back is force[i] instead of the sampled out[i]. */
static int generate(const gemma4_model *m, const gemma4_sampling *p, const int32_t *force, int32_t *out, int n,
                    char *err) {
    int32_t n_vocab = gemma4_n_vocab(m);
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 64, .n_threads = 2}, err);
    gemma4_sampler *smp = gemma4_sampler_new(p, n_vocab);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int rc = -1;
    if (s && smp && logits && !gemma4_eval(s, prompt, N_PROMPT, logits, false, err)) {
        int i = 0;
        for (; i < n; i++) {
            out[i] = gemma4_sample(smp, logits);
            if (i + 1 < n && gemma4_eval(s, force ? &force[i] : &out[i], 1, logits, false, err)) break;
        }
        rc = i == n ? 0 : -1;
    }
    free(logits);
    gemma4_sampler_free(smp);
    gemma4_session_free(s);
    return rc;
}

static int32_t argmax_row(const float *row, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* picked[i] must be the argmax of the prefill row that follows prompt +
 * fed[0..i), all of it evaluated in one call with every row's logits. */
static void check_against_prefill(const gemma4_model *m, const char *name, const char *what, const int32_t *fed,
                                  const int32_t *picked) {
    char err[G4_ERR_LEN] = "";
    int32_t n_vocab = gemma4_n_vocab(m), seq[N_PROMPT + N_GEN];
    memcpy(seq, prompt, sizeof prompt);
    memcpy(seq + N_PROMPT, fed, N_GEN * sizeof *fed);
    const int32_t n_seq = N_PROMPT + N_GEN - 1; /* the last token is never fed */
    float *all = malloc((size_t)n_seq * (size_t)n_vocab * sizeof *all);
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 64, .n_threads = 2}, err);
    int ok = all && s && !gemma4_eval(s, seq, n_seq, all, true, err);
    CHECK(ok, "%s %s: prefill of the generated sequence: %s", name, what, err);
    int mismatch = -1, changes = 0;
    for (int i = 0; ok && i < N_GEN; i++) {
        int32_t want = argmax_row(all + (size_t)(N_PROMPT - 1 + i) * (size_t)n_vocab, n_vocab);
        if (want != picked[i] && mismatch < 0) mismatch = i;
        changes += i > 0 && picked[i] != picked[i - 1];
    }
    CHECK(ok && mismatch < 0, "%s %s: step %d picked %d, not the prefill argmax", name, what, mismatch,
          mismatch >= 0 ? picked[mismatch] : -1);
    printf("%s %s: %d greedy steps, %d changes of token\n", name, what, N_GEN, changes);
    free(all);
    gemma4_session_free(s);
}

static void test_model(const char *name) {
    char path[1024], err[G4_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/models/%s.gguf", test_fixtures_dir(), name);
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;

    /* a hot temperature and no truncation, so that the seed decides a lot */
    gemma4_sampling hot = {.temperature = 4.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 1234};
    int32_t a[N_GEN], b[N_GEN], c[N_GEN];
    int ra = generate(m, &hot, NULL, a, N_GEN, err);
    CHECK(ra == 0, "%s: %s", name, err);
    int rb = generate(m, &hot, NULL, b, N_GEN, err);
    CHECK(rb == 0, "%s: %s", name, err);
    hot.seed = 4321;
    int rc = generate(m, &hot, NULL, c, N_GEN, err);
    CHECK(rc == 0, "%s: %s", name, err);
    if (ra == 0 && rb == 0 && rc == 0) {
        CHECK(!memcmp(a, b, sizeof a), "%s: the same seed gave two different sequences", name);
        CHECK(memcmp(a, c, sizeof a) != 0, "%s: seeds 1234 and 4321 gave the same %d tokens", name, N_GEN);
    }

    /* Greedy on its own output, and greedy along the sampled sequence a
     * (teacher forcing: the random-weight models repeat their last token
     * under greedy decoding, so this is what visits varied contexts). */
    gemma4_sampling greedy = {.temperature = 0.0f, .top_k = 64, .top_p = 0.95f, .seed = 1};
    int32_t g[N_GEN];
    if (generate(m, &greedy, NULL, g, N_GEN, err) == 0) check_against_prefill(m, name, "greedy", g, g);
    else CHECK(0, "%s: greedy generation: %s", name, err);
    if (ra == 0 && generate(m, &greedy, a, g, N_GEN, err) == 0) check_against_prefill(m, name, "forced", a, g);
    else CHECK(0, "%s: forced greedy generation: %s", name, err);
    gemma4_model_free(m);
}

int main(void) {
    test_model("e2b_q8_0");
    test_model("dense_f32");
    return test_summary("test_generate");
}
