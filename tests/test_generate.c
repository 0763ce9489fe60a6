/* Generation. On the fixture models: a fixed seed reproduces the same
 * tokens (and another seed does not). On the trained KJV model in models/
 * (whose greedy text is real text, where a random model only repeats a
 * token): greedy decoding token by token picks, at every step, the argmax
 * of the logits the prefill path computes for the whole generated sequence
 * at once; it continues formulas the KJV repeats with their word; and it
 * predicts a third or more of the next tokens of a verse it was trained
 * on, the expected tokens being the verse's own (tokenized), not the
 * model's. */
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

    gemma4_model_free(m);
}

/* The trained model, from the repository (tests run at its root). */
#define KJV_MODEL "models/kjv-dense-q8_0.gguf"

/* Greedy text after prompt, n tokens, into out (NUL-terminated); the ids
 * into ids. 0 or -1. */
static int greedy_text(const gemma4_model *m, const char *prompt, int n, int32_t *ids, char *out, size_t cap,
                       char *err) {
    int32_t p[64];
    int32_t n_p = gemma4_tokenize(m, prompt, strlen(prompt), true, false, p, 64, err);
    gemma4_sampling greedy = {.temperature = 0.0f, .top_k = 1, .top_p = 1.0f, .seed = 1};
    gemma4_sampler *smp = gemma4_sampler_new(&greedy, gemma4_n_vocab(m));
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 128, .n_threads = 2}, err);
    float *logits = malloc((size_t)gemma4_n_vocab(m) * sizeof *logits);
    int rc = -1, i = 0;
    if (n_p > 0 && n_p <= 64 && smp && s && logits && !gemma4_eval(s, p, n_p, logits, false, err)) {
        for (; i < n; i++) {
            ids[i] = gemma4_sample(smp, logits);
            if (ids[i] < 0 || (i + 1 < n && gemma4_eval(s, &ids[i], 1, logits, false, err))) break;
        }
        rc = i == n ? 0 : -1;
    }
    if (rc == 0) gemma4_detokenize(m, ids, n, false, out, cap);
    free(logits);
    gemma4_session_free(s);
    gemma4_sampler_free(smp);
    return rc;
}

static void test_trained(void) {
    char err[G4_ERR_LEN] = "";
    gemma4_model *m = gemma4_load(KJV_MODEL, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;

    /* Formulas the KJV repeats dozens of times ("And the LORD spake unto
     * Moses, saying", "Verily, verily, I say unto you"): the greedy text
     * has the formula's word within 8 tokens. (Genesis 1:3's "Let there
     * be" -> "light" is past this 7.4M-parameter model: it says " no more
     * than the way of the LORD".) */
    static const struct {
        const char *prompt, *word;
    } formulas[] = {{"And the LORD spake unto", "Moses"}, {"Verily, verily, I say unto", "you"}};
    for (size_t k = 0; k < sizeof formulas / sizeof formulas[0]; k++) {
        int32_t ids[8];
        char text[1024] = "";
        int rc = greedy_text(m, formulas[k].prompt, 8, ids, text, sizeof text, err);
        CHECK(rc == 0, "greedy: %s", err);
        CHECK(rc == 0 && strstr(text, formulas[k].word), "'%s' went on as '%s', without '%s'", formulas[k].prompt, text,
              formulas[k].word);
        printf("kjv: %s|%s\n", formulas[k].prompt, text);
    }

    /* Greedy on its own output, checked against one prefill; the prompt is
     * the fixture one, so the BOS-led ids are the model's own vocabulary */
    gemma4_sampling greedy = {.temperature = 0.0f, .top_k = 64, .top_p = 0.95f, .seed = 1};
    int32_t g[N_GEN];
    if (generate(m, &greedy, NULL, g, N_GEN, err) == 0) check_against_prefill(m, "kjv", "greedy", g, g);
    else CHECK(0, "kjv: greedy generation: %s", err);
    /* and greedy along a sampled sequence (teacher forcing) */
    gemma4_sampling hot = {.temperature = 1.5f, .top_k = 0, .top_p = 1.0f, .seed = 99};
    int32_t a[N_GEN];
    if (generate(m, &hot, NULL, a, N_GEN, err) == 0 && generate(m, &greedy, a, g, N_GEN, err) == 0)
        check_against_prefill(m, "kjv", "forced", a, g);
    else CHECK(0, "kjv: forced greedy generation: %s", err);

    /* Teacher-forced top-1 on Leviticus 1:1-2 as printed in the KJV: the
     * model's argmax after each prefix against the verse's next token (the
     * tokenizer's, not the model's). A random model is right about 1 time
     * in 4096; this one was measured at 23 of 58 (it is at 10 of 33 on
     * Genesis 1:1-2, 12 of 18 on the formula "And the LORD spake unto
     * Moses, saying, Speak unto the children of Israel, and say unto
     * them,"; held-out perplexity 57, models/README.md) */
    static const char verse[] = "And the LORD called unto Moses, and spake unto him out of the tabernacle of the "
                                "congregation, saying, Speak unto the children of Israel, and say unto them, If any "
                                "man of you bring an offering unto the LORD, ye shall bring your offering of the "
                                "cattle, even of the herd, and of the flock.";
    int32_t v[96];
    int32_t n = gemma4_tokenize(m, verse, strlen(verse), true, false, v, 96, err);
    CHECK(n > 40 && n <= 96, "the verse is %d tokens: %s", n, err);
    const int32_t n_vocab = gemma4_n_vocab(m);
    float *all = n > 40 && n <= 96 ? malloc((size_t)n * (size_t)n_vocab * sizeof *all) : NULL;
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 128, .n_threads = 2}, err);
    if (all && s && !gemma4_eval(s, v, n, all, true, err)) {
        int hits = 0;
        for (int32_t i = 0; i + 1 < n; i++) hits += argmax_row(all + (size_t)i * (size_t)n_vocab, n_vocab) == v[i + 1];
        const double rate = (double)hits / (n - 1);
        CHECK(rate >= 1.0 / 3, "kjv: top-1 matches the verse at %d of %d positions (%.0f%%, need a third)", hits,
              n - 1, 100 * rate);
        printf("kjv: top-1 matches Leviticus 1:1-2 at %d of %d positions (%.0f%%)\n", hits, n - 1, 100 * rate);
    } else {
        CHECK(0, "kjv: verse prefill: %s", err);
    }
    free(all);
    gemma4_session_free(s);
    gemma4_model_free(m);
}

int main(void) {
    test_model("e2b_q8_0");
    test_model("dense_f32");
    test_trained();
    return test_summary("test_generate");
}
