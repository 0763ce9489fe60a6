/* The 12B ("Unified") shape: a reduced-width model of its layer computes
 * llama.cpp's logits (tests/data/12b, F32 within the bars test_logits uses
 * for the fixture models), the loader derives the 12B's layer table, and
 * generation never picks the tokens the file's
 * tokenizer.ggml.suppress_tokens names. The models are written here by the
 * mkmodel preset "12b" with the width overridden. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemma4.h"
#include "gguf/json.h"
#include "tests/harness.h"
#include "tools/synth/mkmodel.h"

/* test_logits.c's F32 bars (worst seen there: 4.8e-3 and 4.4e-4) */
#define F32_MAX_ABS 1e-2
#define F32_MEAN_ABS 1e-3

enum { N_VOCAB = 512, MAX_TOKENS = 64 };

/* The width the reference was made at (tests/data/12b/reduced_f32.json):
 * the 12B's head counts and K = V full layers, narrow and short. */
static const char *const reduced[] = {
    "n_embd=128",      "n_ff=256",         "n_head=16",      "n_head_kv_swa=8",       "n_head_kv_full=1",
    "head_dim_swa=32", "head_dim_full=64", "vocab_size=512", "n_swa=8", "context_length=8192", "fast_weights=false",
};

static char tmp_dir[512];

/* Writes preset 12b with the reduced width and n_layer blocks to path. */
static int write_12b(const char *path, int n_layer, uint64_t seed) {
    char err[G4_ERR_LEN] = "", set[32];
    g4_shape s;
    int rc = g4_shape_preset("12b", &s, err);
    for (size_t i = 0; !rc && i < sizeof reduced / sizeof reduced[0]; i++) rc = g4_shape_set(&s, reduced[i], err);
    snprintf(set, sizeof set, "n_layer=%d", n_layer);
    rc = rc ? rc : g4_shape_set(&s, set, err);
    rc = rc ? rc : g4_shape_finalize(&s, err);
    rc = rc ? rc : g4_mkmodel_write(&s, G4_TYPE_F32, seed, path, false, err);
    CHECK(rc == 0, "writing the reduced 12b (%d blocks): %s", n_layer, err);
    return rc;
}

/* Against llama.cpp: every logit of the 24-token sequence. */
static void test_logits(void) {
    char dir[1024], path[1100], model[600], err[G4_ERR_LEN] = "";
    snprintf(dir, sizeof dir, "%s/12b", test_fixtures_dir());
    snprintf(path, sizeof path, "%s/reduced_f32.json", dir);
    g4_json *doc = g4_json_parse_file(path, err);
    CHECK(doc != NULL, "%s", err);
    const g4_json *t = g4_json_get_type(doc, "tokens", G4_JSON_ARRAY);
    int32_t ids[MAX_TOKENS];
    int n = t && t->len <= MAX_TOKENS ? (int)t->len : 0;
    for (int i = 0; i < n; i++) ids[i] = t->items[i].is_int ? (int32_t)t->items[i].integer : -1;
    g4_json_free(doc);
    CHECK(n == 24, "%s: %d tokens, expected 24", path, n);
    if (n != 24) return;
    snprintf(path, sizeof path, "%s/reduced_f32.logits.f32", dir);
    size_t len = 0;
    float *want = (float *)g4_read_file(path, &len, err);
    CHECK(want && len == (size_t)n * N_VOCAB * sizeof(float), "%s: %s (%zu bytes)", path, want ? "size" : err, len);
    snprintf(model, sizeof model, "%s/test_12b_%d_reduced.gguf", tmp_dir, (int)getpid());
    float *got = malloc((size_t)n * N_VOCAB * sizeof *got);
    gemma4_model *m = NULL;
    gemma4_session *s = NULL;
    if (want && len == (size_t)n * N_VOCAB * sizeof(float) && got && !write_12b(model, 12, 12)) {
        m = gemma4_load(model, err);
        CHECK(m != NULL, "%s", err);
        s = m ? gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 64, .n_threads = 2}, err) : NULL;
        CHECK(!m || s, "%s", err);
    }
    if (s && !gemma4_eval(s, ids, n, got, true, err)) {
        double max_abs = 0, sum_abs = 0;
        int argmax_agree = 0;
        for (int r = 0; r < n; r++) {
            const float *a = want + (size_t)r * N_VOCAB, *b = got + (size_t)r * N_VOCAB;
            int ia = 0, ib = 0;
            for (int v = 0; v < N_VOCAB; v++) {
                double d = fabs((double)a[v] - b[v]);
                max_abs = d > max_abs ? d : max_abs;
                sum_abs += d;
                if (a[v] > a[ia]) ia = v;
                if (b[v] > b[ib]) ib = v;
            }
            argmax_agree += ia == ib;
        }
        const double mean_abs = sum_abs / ((double)n * N_VOCAB);
        CHECK(max_abs <= F32_MAX_ABS, "12b reduced: max |diff| %g over %g", max_abs, F32_MAX_ABS);
        CHECK(mean_abs <= F32_MEAN_ABS, "12b reduced: mean |diff| %g over %g", mean_abs, F32_MEAN_ABS);
        CHECK(argmax_agree == n, "12b reduced: argmax agrees at %d of %d positions", argmax_agree, n);
        printf("12b reduced F32 vs llama.cpp: max |d| %.3g, mean |d| %.3g, argmax %d/%d\n", max_abs, mean_abs,
               argmax_agree, n);
    } else if (s) {
        CHECK(0, "eval: %s", err);
    }
    gemma4_session_free(s);
    gemma4_model_free(m);
    free(got);
    free(want);
    unlink(model);
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* All 48 blocks at the reduced width: what the loader derives, and greedy
 * generation, with the suppressed ids (0, 3, 4) pushed up by a bias. */
static void test_full_depth(void) {
    char model[600], err[G4_ERR_LEN] = "";
    snprintf(model, sizeof model, "%s/test_12b_%d_48.gguf", tmp_dir, (int)getpid());
    if (write_12b(model, 48, 1)) return;
    gemma4_model *m = gemma4_load(model, err);
    CHECK(m != NULL, "%s", err);
    if (!m) return unlink(model), (void)0;
    CHECK(!strcmp(gemma4_variant(m), "12B"), "variant %s", gemma4_variant(m));
    CHECK(gemma4_empty_thought_channel(m), "no per-layer embeddings: the empty thought channel of 26B/31B");
    gemma4_info in;
    gemma4_model_info(m, &in);
    CHECK(in.n_layer == 48 && in.n_head == 16 && in.n_embd_per_layer == 0 && in.n_expert == 0 && in.n_kv_shared == 0 &&
              in.n_swa == 8 && in.softcap == 30.0f,
          "info: %d layers, %d heads, PLE %d, experts %d", in.n_layer, in.n_head, in.n_embd_per_layer, in.n_expert);
    int n_full = 0, bad = -1;
    for (int32_t l = 0; l < 48; l++) {
        gemma4_layer_info li;
        gemma4_layer_info_get(m, l, &li);
        const bool full = l % 6 == 5;
        n_full += !li.swa;
        if (li.swa == full || li.n_head_kv != (full ? 1 : 8) || li.head_dim != (full ? 64 : 32) || li.has_v == full ||
            !li.has_kv || li.kv_src != l || li.n_ff != 256)
            if (bad < 0) bad = l;
    }
    CHECK(n_full == 8 && bad < 0, "layer table: %d full layers, first wrong layer %d", n_full, bad);

    /* greedy, each suppressed id biased far above everything else */
    const gemma4_logit_bias push[] = {{0, 1000.0f}, {3, 1000.0f}, {4, 1000.0f}};
    gemma4_sampling p = gemma4_sampling_defaults(m);
    p.temperature = 0;
    p.logit_bias = push;
    p.n_logit_bias = 3;
    gemma4_sampler *smp = gemma4_sampler_init(m, &p, err);
    CHECK(smp != NULL, "sampler: %s", err);
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 64, .n_threads = 2}, err);
    float *logits = malloc(N_VOCAB * sizeof *logits), *row = malloc(N_VOCAB * sizeof *row);
    int32_t seq[40] = {2, 170, 37, 401, 288, 9, 77};
    int n_seq = 7, suppressed = 0, mismatch = -1;
    if (smp && s && logits && row && !gemma4_eval(s, seq, n_seq, logits, false, err)) {
        for (int i = 0; i < 24; i++) {
            /* the sampler's greedy pick is the argmax once the suppressed ids are out */
            memcpy(row, logits, N_VOCAB * sizeof *row);
            row[0] = row[3] = row[4] = -INFINITY;
            const int32_t id = gemma4_sample(smp, logits);
            suppressed += id == 0 || id == 3 || id == 4;
            if (id != argmax(row, N_VOCAB) && mismatch < 0) mismatch = i;
            seq[n_seq++] = id;
            if (id < 0 || gemma4_eval(s, &id, 1, logits, false, err)) break;
        }
    }
    CHECK(n_seq == 31, "generated %d of 24 tokens: %s", n_seq - 7, err);
    CHECK(suppressed == 0, "%d suppressed tokens were picked", suppressed);
    CHECK(mismatch < 0, "step %d: the greedy pick is not the argmax of the unsuppressed logits", mismatch);
    free(logits);
    free(row);
    gemma4_session_free(s);
    gemma4_sampler_free(smp);
    gemma4_model_free(m);
    unlink(model);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", t && *t ? t : "/tmp");
    test_logits();
    test_full_depth();
    return test_summary("test_12b");
}
