/* 1,500 positions against llama.cpp, on models of the real widths: the
 * short fixtures stop at 80 positions with a window of 8, so nothing there
 * reaches a 512 or 1024 window edge, a page table of hundreds of pages, or a
 * position past 1023 (a RoPE that wrapped positions at 1024 passed every
 * other test).
 *
 * tests/data/long/NAME.json records how its model is written (mkmodel
 * preset, --set overrides, type, seed), the 1,500 tokens and which rows of
 * llama.cpp's logits NAME.rows.f32 keeps (window edges, the last position,
 * every 20th); tests/data/long/README.md says how they were made. Here each
 * model is written again with the same arguments into a temporary folder,
 * the whole sequence goes through one session in ubatches of 512, and the
 * kept rows are compared with llama.cpp's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gemma4.h"
#include "gguf/json.h"
#include "tests/fixtures.h"
#include "tests/harness.h"
#include "tools/synth/mkmodel.h"
#include "tools/synth/model_shapes.h"

/* Bars, about twice the worst figure measured, with our AVX2 and scalar
 * kernels against llama.cpp v0.5.0 on its AVX2 CPU variant, over all 1,500
 * rows as well as over the kept ones (so that which rows are kept does not
 * matter); the measured value after each. Never loosen them to pass.
 * row_max: the largest |diff| in any kept row; mean: mean |diff| over the
 * kept rows; kld: mean KL(llama.cpp || ours) per kept row (0: not checked).
 * For scale: with RoPE positions wrapped at 1024, rows from 1024 on differ
 * by up to 11-16 (mean 0.56-0.90 over the kept rows) in all four.
 * F32 weights: float rounding only, like the short fixtures' F32 bars;
 * llama.cpp's own x64 variant is as far from its AVX2 one (e2b 1.0e-2 /
 * 1.6e-4, moe 3.5e-3 / 1.7e-5).
 * Q8_0 weights: activation-quantisation noise, and in moe a few positions
 * whose expert choice flips; llama.cpp's x64 variant is further from its
 * AVX2 one than we are (e2b 1.4 / 0.082, moe 2.8 / 0.017). */
static const struct sequence {
    const char *name;
    bool f32_weights; /* scalar F32 matmuls: left out under sanitizers */
    double row_max, mean, kld;
} sequences[] = {
    {"e2b_f32", true, 2e-2 /* 1.0e-2 */, 3.5e-4 /* 1.6e-4 */, 0},
    {"moe_f32", true, 8e-3 /* 3.5e-3 */, 6e-5 /* 2.8e-5 */, 0},
    {"e2b_q8_0", false, 1.8 /* 0.88 */, 0.12 /* 0.059 */, 2.1e-8 /* 1.05e-8 */},
    {"moe_q8_0", false, 4.5 /* 2.24 */, 2.5e-2 /* 1.1e-2 */, 2.5e-9 /* 1.2e-9 */},
};

/* Under ASan + UBSan at -O1 the F32 sequences take minutes (F32 matmuls are
 * scalar dot products summed in double, about 15 core-seconds per sequence
 * even at -O2, where the whole test takes about 35); the Q8_0 ones go
 * through the same positions, windows and pages in under a minute. */

/* tests/data/long as linked into the fixture root, else from the
 * repository root the tests run in. */
static void data_path(char *buf, size_t n, const char *name, const char *ext) {
    snprintf(buf, n, "%s/long/%s%s", test_fixtures_dir(), name, ext);
    if (access(buf, R_OK) == 0) return;
    snprintf(buf, n, "tests/data/long/%s%s", name, ext);
}

/* Integers of a JSON array (at most max; -1 when not an array of ints). */
static int json_ints(const g4_json *doc, const char *key, int32_t *out, int max) {
    const g4_json *a = g4_json_get_type(doc, key, G4_JSON_ARRAY);
    if (!a || a->len > (size_t)max) return -1;
    for (size_t i = 0; i < a->len; i++) {
        if (!a->items[i].is_int) return -1;
        out[i] = (int32_t)a->items[i].integer;
    }
    return (int)a->len;
}

/* The model of the sidecar's "mkmodel" object, written to path. */
static int write_model(const g4_json *doc, const char *path, char *err) {
    const g4_json *mk = g4_json_get_type(doc, "mkmodel", G4_JSON_OBJECT);
    const g4_json *preset = g4_json_get_type(mk, "preset", G4_JSON_STRING),
                  *type = g4_json_get_type(mk, "type", G4_JSON_STRING),
                  *seed = g4_json_get_type(mk, "seed", G4_JSON_NUMBER),
                  *sets = g4_json_get_type(mk, "set", G4_JSON_ARRAY);
    if (!preset || !type || !seed || !seed->is_int || seed->integer < 0 || !sets) {
        snprintf(err, G4_ERR_LEN, "\"mkmodel\" needs preset, type, seed and set");
        return -1;
    }
    const enum g4_type t = !strcmp(type->str, "f32") ? G4_TYPE_F32 : !strcmp(type->str, "q8_0") ? G4_TYPE_Q8_0 : G4_TYPE_COUNT;
    if (t == G4_TYPE_COUNT) {
        snprintf(err, G4_ERR_LEN, "weight type %s is not f32 or q8_0", type->str);
        return -1;
    }
    g4_shape s;
    if (g4_shape_preset(preset->str, &s, err)) return -1;
    for (size_t i = 0; i < sets->len; i++) {
        if (sets->items[i].type != G4_JSON_STRING) {
            snprintf(err, G4_ERR_LEN, "\"set\" holds a non-string");
            return -1;
        }
        if (g4_shape_set(&s, sets->items[i].str, err)) return -1;
    }
    if (g4_shape_finalize(&s, err)) return -1;
    return g4_mkmodel_write(&s, t, (uint64_t)seed->integer, path, false, err);
}

enum { MAX_TOK = 4096 };

static void run_sequence(const struct sequence *q, const char *tmp_dir) {
    char path[1024], model_path[1024], err[G4_ERR_LEN] = "";
    data_path(path, sizeof path, q->name, ".json");
    g4_json *doc = g4_json_parse_file(path, err);
    CHECK(doc != NULL, "%s", err);
    if (!doc) return;
    static int32_t ids[MAX_TOK], rows[MAX_TOK];
    const int n = json_ints(doc, "tokens", ids, MAX_TOK), n_rows = json_ints(doc, "rows", rows, MAX_TOK);
    const g4_json *nv = g4_json_get_type(doc, "n_vocab", G4_JSON_NUMBER);
    const int n_vocab = nv && nv->is_int ? (int)nv->integer : -1;
    bool ok = n >= 1500 && n_rows > 0 && n_vocab > 0;
    for (int k = 0; ok && k < n_rows; k++) ok = rows[k] >= 0 && rows[k] < n && (k == 0 || rows[k] > rows[k - 1]);
    CHECK(ok, "%s: needs >= 1500 tokens, rows ascending within them and n_vocab (%d tokens, %d rows)", path, n, n_rows);

    snprintf(model_path, sizeof model_path, "%s/%s.gguf", tmp_dir, q->name);
    ok = ok && write_model(doc, model_path, err) == 0;
    CHECK(ok || !*err, "%s: writing the model: %s", q->name, err);
    gemma4_model *m = ok ? gemma4_load(model_path, err) : NULL;
    remove(model_path);
    CHECK(!ok || m, "%s: %s", q->name, err);
    CHECK(!m || gemma4_n_vocab(m) == n_vocab, "%s: model vocabulary %d, sidecar %d", q->name, gemma4_n_vocab(m), n_vocab);
    data_path(path, sizeof path, q->name, ".rows.f32");
    size_t len = 0;
    float *ref = m && gemma4_n_vocab(m) == n_vocab ? (float *)g4_read_file(path, &len, err) : NULL;
    CHECK(!m || (ref && len == (size_t)n_rows * n_vocab * sizeof *ref), "%s: %zu bytes, expected %d rows of %d floats (%s)",
          path, len, n_rows, n_vocab, ref ? "" : err);
    if (!ref || len != (size_t)n_rows * n_vocab * sizeof *ref) {
        free(ref);
        gemma4_model_free(m);
        g4_json_free(doc);
        return;
    }

    bool *want = calloc((size_t)n, sizeof *want);
    float *ours = malloc((size_t)n_rows * n_vocab * sizeof *ours);
    for (int k = 0; want && k < n_rows; k++) want[rows[k]] = true;
    /* one call, the session splitting it into ubatches of 512 (the
     * default), logits only for the kept rows */
    gemma4_session_params sp = {.n_ctx = n, .n_threads = 0}; /* every core: the F32 sequences are slow */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    gemma4_session *s = want && ours ? gemma4_session_new(m, &sp, err) : NULL;
    ok = s && gemma4_decode(s, n, ids, NULL, want, ours, err) == 0;
    gemma4_session_free(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(ok, "%s: %d positions: %s", q->name, n, err);
    if (ok) {
        double worst = 0, sum = 0;
        int worst_row = 0;
        for (int k = 0; k < n_rows; k++) {
            double row_max = 0;
            for (int v = 0; v < n_vocab; v++) {
                const double d = fabs((double)ours[(size_t)k * n_vocab + v] - ref[(size_t)k * n_vocab + v]);
                if (!(d <= row_max)) row_max = d; /* NaN propagates */
                sum += d;
            }
            if (!(row_max <= worst)) worst = row_max, worst_row = rows[k];
        }
        const double mean = sum / ((double)n_rows * n_vocab), kld = logits_kld_sum(ref, ours, n_rows, n_vocab) / n_rows;
        printf("%-8s %d rows of %d positions: max |d| %.3g (position %d), mean |d| %.3g, mean KLD %.3g (%.1f s)\n", q->name,
               n_rows, n, worst, worst_row, mean, kld, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        CHECK(worst <= q->row_max, "%s: max |diff| %g at position %d (bar %g)", q->name, worst, worst_row, q->row_max);
        CHECK(mean <= q->mean, "%s: mean |diff| %g (bar %g)", q->name, mean, q->mean);
        CHECK(!q->kld || kld <= q->kld, "%s: mean KL divergence from llama.cpp %g (bar %g)", q->name, kld, q->kld);
    }
    free(want);
    free(ours);
    free(ref);
    gemma4_model_free(m);
    g4_json_free(doc);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    char tmp_dir[512];
    snprintf(tmp_dir, sizeof tmp_dir, "%s/g4_test_long_XXXXXX", t && *t ? t : "/tmp");
    CHECK(mkdtemp(tmp_dir) != NULL, "temporary folder %s", tmp_dir);
    for (size_t i = 0; i < sizeof sequences / sizeof sequences[0]; i++) {
        if (TEST_SANITIZED && sequences[i].f32_weights)
            SKIP(sequences[i].name, "1,500 positions through scalar F32 matmuls take minutes under the sanitizers");
        else
            run_sequence(&sequences[i], tmp_dir);
    }
    rmdir(tmp_dir);
    return test_summary("test_long");
}
