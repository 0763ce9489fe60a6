/* gemma4 bench --draft-max: tokens per second of greedy decoding with and
 * without speculation, on the same prompt, checking the tokens are the same.
 *
 * The prompt is a block of 64 random ids (BOS first) said four times, the
 * case prompt lookup is for. The draft sources: prompt lookup
 * (gemma4_draft_lookup), an oracle that guesses the plain run's own
 * continuation, so every guess is kept (the ceiling the verification pass
 * allows), and an MTP drafter given with -md (gemma4_draft_mtp). Each timing covers the generated tokens only (the prompt is fed
 * before the clock starts); the best of the repetitions is reported, as the
 * least disturbed by other work on the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/bench/cmd_bench_spec.h"

enum { BLOCK = 64, REPEATS = 4, N_PROMPT = BLOCK * REPEATS };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct oracle {
    const int32_t *truth; /* the plain run: truth[g] is generated token g */
    int32_t n_truth;
} oracle;

static int32_t oracle_draft(void *user, gemma4_session *s, int32_t seq, int32_t last, const float *hidden, int32_t max,
                            int32_t *draft) {
    (void)last, (void)hidden;
    const oracle *o = user;
    const int32_t g = gemma4_seq_pos(s, seq) - N_PROMPT;
    int32_t k = 0;
    for (; k < max && g + 1 + k < o->n_truth; k++) draft[k] = o->truth[g + 1 + k];
    return k;
}

/* The prompt fed, the first token picked greedily from its logits. */
static int32_t start(gemma4_session *s, const int32_t *prompt, float *logits, gemma4_sampler *smp, char *err) {
    gemma4_session_truncate(s, 0);
    if (gemma4_eval(s, prompt, N_PROMPT, logits, false, err)) return -1;
    return gemma4_sample(smp, logits);
}

/* Seconds for n tokens of plain greedy decoding into out, or -1. */
static double plain(gemma4_session *s, const int32_t *prompt, float *logits, gemma4_sampler *smp, int32_t *out,
                    int32_t n, char *err) {
    if ((out[0] = start(s, prompt, logits, smp, err)) < 0) return -1;
    const double t0 = now_s();
    for (int32_t i = 1; i < n; i++) {
        if (gemma4_eval(s, &out[i - 1], 1, logits, false, err)) return -1;
        out[i] = gemma4_sample(smp, logits);
    }
    return now_s() - t0;
}

/* The same with speculation through sp; -1 on error. */
static double speculative(gemma4_session *s, gemma4_spec *sp, const int32_t *prompt, float *logits,
                          gemma4_sampler *smp, int32_t *out, int32_t n, char *err) {
    if ((out[0] = start(s, prompt, logits, smp, err)) < 0) return -1;
    int32_t count = 1, got[GEMMA4_DRAFT_CAP + 1], n_got, seq = 0;
    const double t0 = now_s();
    while (count < n) {
        if (gemma4_spec_step(sp, 1, &seq, &out[count - 1], &smp, got, &n_got, err)) return -1;
        for (int32_t k = 0; k < n_got && count < n; k++) out[count++] = got[k];
    }
    return now_s() - t0;
}

int bench_spec_run(const gemma4_model *m, const char *path, const int32_t *threads, int n_threads,
                   const bench_spec_opts *o) {
    char err[GEMMA4_ERR_LEN] = "";
    const int32_t n_vocab = gemma4_n_vocab(m), n = o->n_gen;
    int32_t prompt[N_PROMPT];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < BLOCK; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        prompt[i] = i == 0 && gemma4_token_bos(m) >= 0 ? gemma4_token_bos(m) : (int32_t)(x % (uint64_t)n_vocab);
    }
    for (int r = 1; r < REPEATS; r++) memcpy(prompt + r * BLOCK, prompt, sizeof(int32_t) * BLOCK);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int32_t *truth = malloc((size_t)n * sizeof *truth), *out = malloc((size_t)n * sizeof *out);
    gemma4_sampler *smp = gemma4_sampler_new(&(gemma4_sampling){.temperature = 0}, n_vocab);
    if (!logits || !truth || !out || !smp) {
        fprintf(stderr, "%s: out of memory\n", path);
        free(logits), free(truth), free(out), gemma4_sampler_free(smp);
        return 1;
    }
    int status = 0;
    gemma4_drafter *mtp = o->drafter ? gemma4_drafter_load(o->drafter, m, err) : NULL;
    if (o->drafter && !mtp) status = 1;
    else {
        printf("| threads | draft source | draft max | t/s | speedup | passes | guesses kept | same tokens |\n");
        printf("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    }
    for (int ti = 0; ti < n_threads && !status; ti++) {
        gemma4_session *s = gemma4_session_new(
            m, &(gemma4_session_params){.n_ctx = N_PROMPT + n + GEMMA4_DRAFT_CAP + 1, .n_threads = threads[ti]}, err);
        status = !s;
        double best = 0;
        for (int r = 0; r <= o->reps && !status; r++) { /* r = 0 warms up */
            const double dt = plain(s, prompt, logits, smp, truth, n, err);
            status = dt < 0;
            if (r && !status && (best == 0 || dt < best)) best = dt;
        }
        if (!status) printf("| %d | none | 0 | %.2f | 1.00 | %d | | yes |\n", threads[ti], n / best, n - 1);
        const double plain_ts = n / best;
        oracle orc = {truth, n};
        static const char *names[] = {"lookup", "oracle", "mtp"};
        const bool use[] = {o->lookup, o->oracle, mtp != NULL};
        const gemma4_draft_fn fns[] = {gemma4_draft_lookup, oracle_draft, gemma4_draft_mtp};
        void *users[] = {NULL, &orc, mtp};
        for (int src = 0; src < 3 && !status; src++) {
            if (!use[src]) continue;
            for (int li = 0; li < o->n_lens && !status; li++) {
                const gemma4_spec_params prm = {.draft_max = o->draft_max[li], .ignore_eog = true, .hidden = src == 2};
                gemma4_spec *sp = gemma4_spec_new(s, fns[src], users[src], &prm, err);
                status = !sp;
                double fastest = 0;
                bool same = true;
                gemma4_spec_stats st = {0};
                for (int r = 0; r <= o->reps && !status; r++) {
                    const double dt = speculative(s, sp, prompt, logits, smp, out, n, err);
                    status = dt < 0;
                    if (r && !status && (fastest == 0 || dt < fastest)) fastest = dt;
                    same = same && !status && !memcmp(out, truth, (size_t)n * sizeof *out);
                }
                if (!status) {
                    gemma4_spec_stats_get(sp, 0, &st);
                    const int runs = o->reps + 1;
                    printf("| %d | %s | %d | %.2f | %.2f | %lld | %.1f%% | %s |\n", threads[ti], names[src],
                           o->draft_max[li], n / fastest, n / fastest / plain_ts, (long long)(st.steps / runs),
                           st.drafted ? 100.0 * (double)st.accepted / (double)st.drafted : 0.0, same ? "yes" : "NO");
                    fflush(stdout);
                }
                gemma4_spec_free(sp);
            }
        }
        gemma4_session_free(s);
    }
    if (status) fprintf(stderr, "%s\n", err);
    gemma4_drafter_free(mtp);
    free(logits), free(truth), free(out);
    gemma4_sampler_free(smp);
    return status;
}
