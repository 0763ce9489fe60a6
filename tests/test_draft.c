/* The MTP drafter (drafter.c, drafter_load.c, `gemma4 draft`) against
 * llama.cpp v0.5.0's own MTP path on the fixture targets (tests/data/mtp,
 * README there): the drafter's logits of every step within the F32 bars of
 * the target's logits, and the same drafted ids. Then the centroid-masked
 * head against its definition, the loader's refusals of drafters that do
 * not fit the target, and damaged files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemma4_internal.h"
#include "gguf/gguf_writer.h"
#include "gguf/json.h"
#include "tests/harness.h"

#define N_VOCAB 512
#define N_EMBD 256
/* The bars of the target's F32 logits (tests/test_logits.c); measured
 * worst after each: the drafter's output inherits the target's hidden
 * state, so it cannot be held closer than the target. */
#define F32_MAX_ABS 1e-2  /* 9.2e-4, e2b_rand */
#define F32_MEAN_ABS 1e-3 /* 1.2e-4, e2b_rand */
#define HIDDEN_MAX_ABS 1e-2 /* the target's final-normed state: 3.3e-3, e2b position 6 */

static const char *const REFS[] = {"e2b_rand", "e2b_align", "moe_rand", "moe_align", "dense_rand", "dense_align"};

static char *path_of(char *buf, size_t cap, const char *fmt, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, fmt, name);
    snprintf(buf, cap, "%s/%s", test_fixtures_dir(), rel);
    return buf;
}

/* The target of a reference: the fixture model of its shape, in F32. */
static char *target_of(char *buf, size_t cap, const char *ref) {
    char shape[32];
    snprintf(shape, sizeof shape, "%.*s", (int)strcspn(ref, "_"), ref);
    return path_of(buf, cap, "models/%s_f32.gguf", shape);
}

static float *read_f32(const char *path, size_t n) {
    char err[G4_ERR_LEN];
    size_t len = 0;
    float *x = (float *)g4_read_file(path, &len, err);
    if (!x) CHECK(0, "%s", err);
    else if (len != n * sizeof *x) {
        CHECK(0, "%s: %zu bytes, expected %zu floats", path, len, n);
        free(x), x = NULL;
    }
    return x;
}

typedef struct {
    int32_t prompt[64], drafted[16], n_prompt, k, t0;
} reference;

static int int_array(const g4_json *a, int32_t *out, int max) {
    if (!a || a->type != G4_JSON_ARRAY || a->len > (size_t)max) return -1;
    for (size_t i = 0; i < a->len; i++) {
        if (!a->items[i].is_int) return -1;
        out[i] = (int32_t)a->items[i].integer;
    }
    return (int)a->len;
}

static int read_reference(const char *ref, reference *r) {
    char path[1024], err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse_file(path_of(path, sizeof path, "mtp/%s.json", ref), err);
    if (!doc) {
        CHECK(0, "%s", err);
        return -1;
    }
    const g4_json *t0 = g4_json_get(doc, "t0"), *k = g4_json_get(doc, "K");
    r->n_prompt = int_array(g4_json_get(doc, "prompt"), r->prompt, 64);
    const int n_draft = int_array(g4_json_get(doc, "drafted"), r->drafted, 16);
    const bool ok = t0 && t0->is_int && k && k->is_int && r->n_prompt > 0 && n_draft == k->integer;
    if (ok) r->t0 = (int32_t)t0->integer, r->k = (int32_t)k->integer;
    g4_json_free(doc);
    CHECK(ok, "%s: malformed (prompt, t0, K, drafted)", path);
    return ok ? 0 : -1;
}

typedef struct {
    double max_abs, mean_abs;
} diff;

static diff compare(const float *a, const float *b, size_t n) {
    diff d = {0, 0};
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]);
        if (!(e <= d.max_abs)) d.max_abs = e; /* NaN propagates */
        d.mean_abs += e;
    }
    d.mean_abs /= (double)n;
    return d;
}

static int32_t argmax(const float *x) {
    int32_t b = 0;
    for (int32_t i = 1; i < N_VOCAB; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Prefills the prompt; logits and hidden state of its last position. */
static gemma4_session *prefill(gemma4_model *m, const reference *r, float *logits, float *hidden) {
    char err[G4_ERR_LEN];
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 64, .n_threads = 2}, err);
    if (!s) {
        CHECK(0, "%s", err);
        return NULL;
    }
    bool want[64] = {0};
    want[r->n_prompt - 1] = true;
    const int rc = gemma4_decode_hidden(s, r->n_prompt, r->prompt, NULL, want, logits, hidden, err);
    CHECK(rc == 0, "%s", err);
    if (rc) gemma4_session_free(s), s = NULL;
    return s;
}

/* The API on every reference: t0, the target's hidden state, the drafter's
 * logits and ids. */
static void test_reference(const char *ref, const char *drafter) {
    char tpath[1024], dpath[1024], path[1024], err[G4_ERR_LEN];
    reference r;
    if (read_reference(ref, &r)) return;
    gemma4_model *m = gemma4_load(target_of(tpath, sizeof tpath, ref), err);
    if (!m) {
        CHECK(0, "%s", err);
        return;
    }
    gemma4_drafter *d = gemma4_drafter_load(drafter ? drafter : path_of(dpath, sizeof dpath, "mtp/%s.gguf", ref), m, err);
    CHECK(d != NULL, "%s", err);
    float *want_h = read_f32(path_of(path, sizeof path, "mtp/%s.target_h.f32", ref), (size_t)r.n_prompt * N_EMBD);
    float *want_l = read_f32(path_of(path, sizeof path, "mtp/%s.drafter_logits.f32", ref), (size_t)r.k * N_VOCAB);
    float logits[N_VOCAB], hidden[N_EMBD], *got = malloc((size_t)r.k * N_VOCAB * sizeof *got);
    int32_t draft[16];
    gemma4_session *s = d && want_h && want_l && got ? prefill(m, &r, logits, hidden) : NULL;
    if (s) {
        CHECK(argmax(logits) == r.t0, "%s: target's next token %d, llama.cpp's %d", ref, argmax(logits), r.t0);
        const diff h = compare(hidden, want_h + (size_t)(r.n_prompt - 1) * N_EMBD, N_EMBD);
        printf("%s: target hidden state max |d| %.3g\n", ref, h.max_abs);
        CHECK(h.max_abs <= HIDDEN_MAX_ABS, "%s: hidden state max |d| %g > %g", ref, h.max_abs, HIDDEN_MAX_ABS);
        const int32_t n = gemma4_drafter_draft(d, s, 0, r.t0, hidden, r.k, draft, got, err);
        CHECK(n == r.k, "%s: %s", ref, err);
        if (n == r.k) {
            const diff l = compare(got, want_l, (size_t)r.k * N_VOCAB);
            printf("%s: drafter logits max |d| %.3g, mean %.3g\n", ref, l.max_abs, l.mean_abs);
            CHECK(l.max_abs <= F32_MAX_ABS, "%s: drafter logits max |d| %g > %g", ref, l.max_abs, F32_MAX_ABS);
            CHECK(l.mean_abs <= F32_MEAN_ABS, "%s: drafter logits mean |d| %g > %g", ref, l.mean_abs, F32_MEAN_ABS);
            for (int32_t i = 0; i < r.k; i++) CHECK(draft[i] == r.drafted[i], "%s: draft %d is %d, llama.cpp's %d", ref, i, draft[i], r.drafted[i]);
        }
        /* drafting reads the cache and writes nothing: a second run gives the same bits */
        float *again = malloc((size_t)r.k * N_VOCAB * sizeof *again);
        int32_t draft2[16];
        if (again && gemma4_drafter_draft(d, s, 0, r.t0, hidden, r.k, draft2, again, err) == r.k)
            CHECK(!memcmp(got, again, (size_t)r.k * N_VOCAB * sizeof *got) && gemma4_seq_pos(s, 0) == r.n_prompt,
                  "%s: a second draft differs, or the sequence moved", ref);
        else CHECK(0, "%s: second draft: %s", ref, err);
        free(again);
    }
    gemma4_session_free(s);
    free(got);
    free(want_h);
    free(want_l);
    gemma4_drafter_free(d);
    gemma4_model_free(m);
}

/* gemma4_decode_hidden over several ubatches, some rows wanted: each
 * wanted row's hidden state is llama.cpp's of that position, in order,
 * next to its logits. */
static void test_hidden_rows(void) {
    const char *ref = "e2b_rand";
    char tpath[1024], path[1024], err[G4_ERR_LEN];
    reference r;
    if (read_reference(ref, &r)) return;
    gemma4_model *m = gemma4_load(target_of(tpath, sizeof tpath, ref), err);
    gemma4_session *s = m ? gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 64, .n_ubatch = 3}, err) : NULL;
    float *want = read_f32(path_of(path, sizeof path, "mtp/%s.target_h.f32", ref), (size_t)r.n_prompt * N_EMBD);
    float *hidden = calloc((size_t)r.n_prompt * N_EMBD, sizeof *hidden), *logits = malloc((size_t)r.n_prompt * N_VOCAB * sizeof *logits);
    bool wanted[64] = {0};
    int rows[64], n = 0;
    for (int i = 0; i < r.n_prompt; i++)
        if (i % 3 != 1) wanted[i] = true, rows[n++] = i; /* every ubatch of 3 has 2 rows out */
    if (!s || !want || !hidden || !logits || gemma4_decode_hidden(s, r.n_prompt, r.prompt, NULL, wanted, logits, hidden, err)) {
        CHECK(0, "hidden rows: %s", err);
    } else {
        double worst = 0;
        for (int j = 0; j < n; j++) worst = fmax(worst, compare(hidden + (size_t)j * N_EMBD, want + (size_t)rows[j] * N_EMBD, N_EMBD).max_abs);
        CHECK(worst <= HIDDEN_MAX_ABS, "hidden rows: max |d| %g over %d rows", worst, n);
        CHECK(hidden[(size_t)n * N_EMBD - 1] != 0.0f, "hidden rows: the last row was not written");
    }
    free(want);
    free(hidden);
    free(logits);
    gemma4_session_free(s);
    gemma4_model_free(m);
}

/* A Q4_0 drafter, which the kernels run interleaved: dense_align.gguf
 * quantized by `gemma4 quantize` (ggml's reference quantizer, bit for bit),
 * against llama.cpp on the same file (sha256 in tests/data/mtp/README.md). */
static void test_quantized(void) {
    const char *bin = getenv("GEMMA4_BIN") ? getenv("GEMMA4_BIN") : "build/gemma4";
    const char *run = getenv("RUN") ? getenv("RUN") : "";
    char src[1024], cmd[4096], out[] = "/tmp/g4_test_draft_q4_XXXXXX";
    const int fd = mkstemp(out);
    if (fd < 0) {
        CHECK(0, "mkstemp failed");
        return;
    }
    close(fd);
    snprintf(cmd, sizeof cmd, "%s %s quantize %s %s q4_0 > /dev/null 2>&1", run, bin,
             path_of(src, sizeof src, "mtp/%s.gguf", "dense_align"), out);
    const int rc = system(cmd);
    CHECK(rc == 0, "%s: exit %d", cmd, rc);
    if (rc == 0) test_reference("dense_align_q4_0", out);
    remove(out);
}

/* The cache read in small pages, from another sequence than 0, after the
 * sliding pages before the window were recycled (pages of 4 positions,
 * window 8, 20 positions): the same logits and ids as llama.cpp. */
static void test_paged(const char *ref) {
    char tpath[1024], dpath[1024], path[1024], err[G4_ERR_LEN];
    reference r;
    if (read_reference(ref, &r)) return;
    gemma4_model *m = gemma4_load(target_of(tpath, sizeof tpath, ref), err);
    gemma4_drafter *d = m ? gemma4_drafter_load(path_of(dpath, sizeof dpath, "mtp/%s.gguf", ref), m, err) : NULL;
    gemma4_session *s = d ? gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 64, .n_seq = 3, .page_size = 4}, err) : NULL;
    float *want = read_f32(path_of(path, sizeof path, "mtp/%s.drafter_logits.f32", ref), (size_t)r.k * N_VOCAB);
    float *got = malloc((size_t)r.k * N_VOCAB * sizeof *got), logits[N_VOCAB], hidden[N_EMBD];
    int32_t seq[64], draft[16];
    bool wanted[64] = {0};
    for (int i = 0; i < r.n_prompt; i++) seq[i] = 2;
    wanted[r.n_prompt - 1] = true;
    if (!s || !want || !got || gemma4_decode_hidden(s, r.n_prompt, r.prompt, seq, wanted, logits, hidden, err) ||
        gemma4_drafter_draft(d, s, 2, r.t0, hidden, r.k, draft, got, err) != r.k) {
        CHECK(0, "%s paged: %s", ref, err);
    } else {
        gemma4_kv_usage u;
        gemma4_kv_usage_get(s, &u);
        CHECK(u.pages_used[GEMMA4_KV_SWA] < (r.n_prompt + 3) / 4, "%s paged: no sliding page was recycled (%d in use)", ref,
              u.pages_used[GEMMA4_KV_SWA]);
        const diff l = compare(got, want, (size_t)r.k * N_VOCAB);
        CHECK(l.max_abs <= F32_MAX_ABS && l.mean_abs <= F32_MEAN_ABS, "%s paged: max |d| %g, mean %g", ref, l.max_abs, l.mean_abs);
        for (int32_t i = 0; i < r.k; i++) CHECK(draft[i] == r.drafted[i], "%s paged: draft %d is %d, llama.cpp's %d", ref, i, draft[i], r.drafted[i]);
    }
    free(want);
    free(got);
    gemma4_session_free(s);
    gemma4_drafter_free(d);
    gemma4_model_free(m);
}

/* `gemma4 draft` on one reference: the file it writes is llama.cpp's
 * [K][n_vocab] within the bars. */
static void test_cli(const char *ref) {
    const char *bin = getenv("GEMMA4_BIN") ? getenv("GEMMA4_BIN") : "build/gemma4";
    const char *run = getenv("RUN") ? getenv("RUN") : "";
    char tpath[1024], dpath[1024], path[1024], out[] = "/tmp/g4_test_draft_XXXXXX";
    reference r;
    if (read_reference(ref, &r)) return;
    const int fd = mkstemp(out);
    if (fd < 0) {
        CHECK(0, "mkstemp failed");
        return;
    }
    close(fd);
    char cmd[4096];
    int k = snprintf(cmd, sizeof cmd, "%s %s draft -m %s -md %s --k %d -o %s -t 2 --tokens ", run, bin,
                     target_of(tpath, sizeof tpath, ref), path_of(dpath, sizeof dpath, "mtp/%s.gguf", ref), r.k, out);
    for (int i = 0; i < r.n_prompt; i++) k += snprintf(cmd + k, sizeof cmd - (size_t)k, i ? ",%d" : "%d", r.prompt[i]);
    snprintf(cmd + k, sizeof cmd - (size_t)k, " 2> /dev/null");
    const int rc = system(cmd);
    CHECK(rc == 0, "%s: exit %d", cmd, rc);
    float *got = rc == 0 ? read_f32(out, (size_t)r.k * N_VOCAB) : NULL;
    float *want = read_f32(path_of(path, sizeof path, "mtp/%s.drafter_logits.f32", ref), (size_t)r.k * N_VOCAB);
    if (got && want) {
        const diff l = compare(got, want, (size_t)r.k * N_VOCAB);
        CHECK(l.max_abs <= F32_MAX_ABS && l.mean_abs <= F32_MEAN_ABS, "gemma4 draft %s: max |d| %g, mean %g", ref, l.max_abs, l.mean_abs);
        for (int32_t i = 0; i < r.k; i++) CHECK(argmax(got + (size_t)i * N_VOCAB) == r.drafted[i], "gemma4 draft %s: step %d", ref, i);
    }
    remove(out);
    free(got);
    free(want);
}

/* ---- drafters written here: a reference drafter with some keys or
 * tensors replaced or added ---- */

typedef struct {
    const char *key;             /* NULL: end */
    enum g4_gguf_value_type type; /* GGUF_TYPE_UINT32 or GGUF_TYPE_ARRAY of bool */
    uint32_t u32;
    const bool *bools;
    uint64_t n;
} kv_edit;

typedef struct {
    const char *name;
    enum g4_type type;
    int64_t ne[2];
    const void *data; /* NULL: drop the tensor */
} tensor_edit;

static const tensor_edit *find_edit(const tensor_edit *e, const char *name) {
    for (; e && e->name; e++)
        if (!strcmp(e->name, name)) return e;
    return NULL;
}

/* Writes src with kv and tensor edits (tensor edits naming no tensor of
 * src are added). 0, or -1 after a failed check. */
static int write_edited(const char *src, const char *dst, const kv_edit *kv, const tensor_edit *te) {
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open(src, err);
    if (!f) {
        CHECK(0, "%s", err);
        return -1;
    }
    g4_gguf_writer *w = g4_gguf_writer_new(dst, 0, err);
    int rc = w ? 0 : -1;
    for (int64_t i = 0; i < g4_gguf_n_kv(f) && !rc; i++) {
        const g4_gguf_kv *x = g4_gguf_kv_at(f, i);
        const kv_edit *e = kv;
        while (e && e->key && strcmp(e->key, x->key)) e++;
        if (!e || !e->key) rc = g4_gguf_writer_copy_kv(w, x, err);
        else if (e->type == GGUF_TYPE_UINT32) rc = g4_gguf_writer_set_u32(w, e->key, e->u32, err);
        else rc = g4_gguf_writer_set_arr(w, e->key, GGUF_TYPE_BOOL, e->bools, e->n, err);
    }
    for (int64_t i = 0; i < g4_gguf_n_tensors(f) && !rc; i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        const tensor_edit *e = find_edit(te, t->name);
        if (e && !e->data) continue;
        if (e) rc = g4_gguf_writer_add_tensor(w, t->name, e->type, e->ne[1] ? 2 : 1, e->ne, err);
        else rc = g4_gguf_writer_add_tensor(w, t->name, (enum g4_type)t->type, t->n_dims, t->ne, err);
    }
    for (const tensor_edit *e = te; e && e->name && !rc; e++)
        if (!g4_gguf_find_tensor(f, e->name) && e->data) rc = g4_gguf_writer_add_tensor(w, e->name, e->type, e->ne[1] ? 2 : 1, e->ne, err);
    rc = rc ? rc : g4_gguf_writer_begin(w, err);
    for (int64_t i = 0; i < g4_gguf_n_tensors(f) && !rc; i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        const tensor_edit *e = find_edit(te, t->name);
        if (e && !e->data) continue;
        rc = e ? g4_gguf_writer_write(w, e->data, (size_t)(e->ne[0] * (e->ne[1] ? e->ne[1] : 1)) * sizeof(float), err)
               : g4_gguf_writer_write(w, t->data, t->nbytes, err);
    }
    for (const tensor_edit *e = te; e && e->name && !rc; e++)
        if (!g4_gguf_find_tensor(f, e->name) && e->data)
            rc = g4_gguf_writer_write(w, e->data, (size_t)(e->ne[0] * (e->ne[1] ? e->ne[1] : 1)) * sizeof(float), err);
    rc = rc ? rc : g4_gguf_writer_finish(w, err);
    CHECK(rc == 0, "writing %s: %s", dst, err);
    g4_gguf_writer_free(w);
    g4_gguf_close(f);
    return rc;
}

/* The masked head against its definition, with centroids chosen so the
 * expected clusters follow from the full head's logits: centroid j's row is
 * the embedding of the first token of cluster j, so its score is that
 * token's full logit. Clusters of 4 tokens, a random permutation of the
 * vocabulary, 128 of them, the best 32 scored. */
static void test_masked_head(void) {
    const char *ref = "dense_rand";
    char tpath[1024], dpath[1024], err[G4_ERR_LEN], out[] = "/tmp/g4_test_draft_masked_XXXXXX";
    const int C = 128, PER = N_VOCAB / C, E = 32;
    reference r;
    if (read_reference(ref, &r)) return;
    const int fd = mkstemp(out);
    if (fd < 0) {
        CHECK(0, "mkstemp failed");
        return;
    }
    close(fd);
    gemma4_model *m = gemma4_load(target_of(tpath, sizeof tpath, ref), err);
    g4_gguf_file *src = g4_gguf_open(path_of(dpath, sizeof dpath, "mtp/%s.gguf", ref), err);
    const g4_gguf_tensor *emb = src ? g4_gguf_find_tensor(src, "token_embd.weight") : NULL;
    if (!m || !emb || emb->type != G4_TYPE_F32 || emb->ne[0] != E) {
        CHECK(0, "%s / %s: cannot read (%s)", tpath, dpath, err);
        goto done;
    }
    float order[N_VOCAB], *cent = malloc((size_t)C * E * sizeof *cent);
    for (int i = 0; i < N_VOCAB; i++) order[i] = (float)i;
    uint64_t x = 12345; /* Fisher-Yates with a fixed LCG */
    for (int i = N_VOCAB - 1; i > 0; i--) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const int j = (int)((x >> 33) % (uint64_t)(i + 1));
        const float t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (int c = 0; c < C; c++) memcpy(cent + (size_t)c * E, (const float *)emb->data + (size_t)order[c * PER] * E, E * sizeof(float));
    const tensor_edit te[] = {{"masked_embd_centroids.weight", G4_TYPE_F32, {E, C}, cent},
                              {"masked_embd_ordering", G4_TYPE_F32, {N_VOCAB, 0}, order}, {NULL, 0, {0, 0}, NULL}};
    const int wrc = write_edited(dpath, out, NULL, te);
    gemma4_drafter *full = gemma4_drafter_load(dpath, m, err), *masked = wrc ? NULL : gemma4_drafter_load(out, m, err);
    CHECK(full && masked, "%s", err);
    float logits[N_VOCAB], hidden[N_EMBD], lf[N_VOCAB], lm[N_VOCAB];
    int32_t df, dm;
    gemma4_session *s = full && masked ? prefill(m, &r, logits, hidden) : NULL;
    if (s && gemma4_drafter_draft(full, s, 0, r.t0, hidden, 1, &df, lf, err) == 1 &&
        gemma4_drafter_draft(masked, s, 0, r.t0, hidden, 1, &dm, lm, err) == 1) {
        /* the expected clusters: the 32 best first-token logits, lower cluster first on ties */
        bool chosen[128] = {0};
        for (int k = 0; k < 32; k++) {
            int best = -1;
            for (int c = 0; c < C; c++)
                if (!chosen[c] && (best < 0 || lf[(int)order[c * PER]] > lf[(int)order[best * PER]])) best = c;
            chosen[best] = true;
        }
        float lowest = INFINITY;
        for (int c = 0; c < C; c++)
            for (int j = 0; chosen[c] && j < PER; j++) lowest = fminf(lowest, lf[(int)order[c * PER + j]]);
        int bad = 0, n_cand = 0;
        for (int c = 0; c < C; c++)
            for (int j = 0; j < PER; j++) {
                const int t = (int)order[c * PER + j];
                const float want = chosen[c] ? lf[t] : lowest - 1.0f;
                n_cand += chosen[c];
                if (lm[t] != want) bad++;
            }
        CHECK(n_cand == 32 * PER && bad == 0, "masked head: %d of %d logits differ from the definition", bad, N_VOCAB);
        CHECK(dm == argmax(lm), "masked head: drafted %d, the argmax of its logits is %d", dm, argmax(lm));
    } else if (s) {
        CHECK(0, "masked head: %s", err);
    }
    /* an ordering that is not a permutation is refused */
    order[1] = order[0];
    gemma4_drafter *dup = write_edited(dpath, out, NULL, te) ? NULL : gemma4_drafter_load(out, m, err);
    CHECK(!dup && strstr(err, "masked_embd_ordering[1]"), "a repeated token id in the ordering: %s", dup ? "loaded" : err);
    gemma4_drafter_free(dup);
    gemma4_session_free(s);
    gemma4_drafter_free(full);
    gemma4_drafter_free(masked);
    free(cent);
done:
    remove(out);
    g4_gguf_close(src);
    gemma4_model_free(m);
}

/* Drafters that do not fit the target, each refused with one line naming
 * the file and what differs. */
static void expect_refused(gemma4_model *m, const char *path, const char *what, const char *label) {
    char err[G4_ERR_LEN] = "";
    gemma4_drafter *d = gemma4_drafter_load(path, m, err);
    CHECK(!d && !strncmp(err, path, strlen(path)) && strstr(err, what) && !strchr(err, '\n'),
          "%s: expected a refusal naming '%s', got: %s", label, what, d ? "(loaded)" : err);
    gemma4_drafter_free(d);
}

static void test_refusals(void) {
    char tpath[1024], dpath[1024], other[1024], err[G4_ERR_LEN], out[] = "/tmp/g4_test_draft_refuse_XXXXXX";
    const int fd = mkstemp(out);
    if (fd < 0) {
        CHECK(0, "mkstemp failed");
        return;
    }
    close(fd);
    gemma4_model *m = gemma4_load(target_of(tpath, sizeof tpath, "dense"), err);
    if (!m) {
        CHECK(0, "%s", err);
        remove(out);
        return;
    }
    path_of(dpath, sizeof dpath, "mtp/%s.gguf", "dense_rand");
    /* made for the e2b target: its caches have one KV head, the dense target's sliding ones two */
    expect_refused(m, path_of(other, sizeof other, "mtp/%s.gguf", "e2b_rand"), "KV heads", "drafter of another target");
    expect_refused(m, tpath, "is not gemma4-assistant", "a target loaded as drafter");
    const kv_edit width[] = {{"gemma4-assistant.embedding_length_out", GGUF_TYPE_UINT32, 128, NULL, 0}, {NULL, 0, 0, NULL, 0}};
    if (!write_edited(dpath, out, width, NULL)) expect_refused(m, out, "embedding_length_out 128", "width");
    const kv_edit hd[] = {{"gemma4-assistant.attention.key_length_swa", GGUF_TYPE_UINT32, 32, NULL, 0},
                          {"gemma4-assistant.attention.value_length_swa", GGUF_TYPE_UINT32, 32, NULL, 0},
                          {"gemma4-assistant.rope.dimension_count_swa", GGUF_TYPE_UINT32, 32, NULL, 0}, {NULL, 0, 0, NULL, 0}};
    if (!write_edited(dpath, out, hd, NULL)) expect_refused(m, out, "head dim 32", "head size");
    const kv_edit window[] = {{"gemma4-assistant.attention.sliding_window", GGUF_TYPE_UINT32, 9, NULL, 0}, {NULL, 0, 0, NULL, 0}};
    if (!write_edited(dpath, out, window, NULL)) expect_refused(m, out, "sliding_window 9", "window");
    static const bool swapped[2] = {false, true}; /* the reference is SF */
    const kv_edit kinds[] = {{"gemma4-assistant.attention.sliding_window_pattern", GGUF_TYPE_ARRAY, 0, swapped, 2}, {NULL, 0, 0, NULL, 0}};
    if (!write_edited(dpath, out, kinds, NULL)) expect_refused(m, out, "full layer 0 has head dim 128 and 2 KV heads", "layer kinds");
    float *small = calloc(32 * 256, sizeof *small);
    const tensor_edit vocab[] = {{"token_embd.weight", G4_TYPE_F32, {32, 256}, small}, {NULL, 0, {0, 0}, NULL}};
    if (small && !write_edited(dpath, out, NULL, vocab)) expect_refused(m, out, "vocabulary 512", "vocabulary");
    const tensor_edit no_post[] = {{"nextn.post_projection.weight", G4_TYPE_F32, {0, 0}, NULL}, {NULL, 0, {0, 0}, NULL}};
    if (!write_edited(dpath, out, NULL, no_post)) expect_refused(m, out, "missing tensor 'nextn.post_projection.weight'", "missing tensor");
    free(small);
    /* every prefix of a drafter is refused without a fault */
    size_t len = 0;
    char *bytes = g4_read_file(dpath, &len, err);
    int loaded = 0;
    for (size_t cut = 0; bytes && cut < len; cut += cut < 4096 ? 97 : 40961) {
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(bytes, 1, cut, f) != cut) CHECK(0, "%s: cannot write", out);
        if (f) fclose(f);
        gemma4_drafter *d = gemma4_drafter_load(out, m, err);
        loaded += d != NULL;
        gemma4_drafter_free(d);
    }
    CHECK(bytes && !loaded, "%d truncated drafters loaded", loaded);
    free(bytes);
    remove(out);
    gemma4_model_free(m);
}

/* Calls the API refuses. */
static void test_bad_calls(void) {
    char tpath[1024], opath[1024], dpath[1024], err[G4_ERR_LEN];
    reference r;
    if (read_reference("dense_rand", &r)) return;
    gemma4_model *m = gemma4_load(target_of(tpath, sizeof tpath, "dense"), err);
    gemma4_model *other = gemma4_load(target_of(opath, sizeof opath, "moe"), err);
    gemma4_drafter *d = m ? gemma4_drafter_load(path_of(dpath, sizeof dpath, "mtp/%s.gguf", "dense_rand"), m, err) : NULL;
    if (!m || !other || !d) {
        CHECK(0, "%s", err);
    } else {
        float logits[N_VOCAB], hidden[N_EMBD] = {0};
        int32_t draft[4];
        gemma4_session *s = prefill(m, &r, logits, hidden);
        gemma4_session *so = gemma4_session_new(other, NULL, err);
        if (s && so) {
            CHECK(gemma4_drafter_draft(d, so, 0, 1, hidden, 2, draft, NULL, err) == -1 && strstr(err, "not the drafter's target"),
                  "a session of another model: %s", err);
            CHECK(gemma4_drafter_draft(d, s, 1, 1, hidden, 2, draft, NULL, err) == -1 && strstr(err, "sequence id 1"),
                  "a bad sequence: %s", err);
            CHECK(gemma4_drafter_draft(d, s, 0, N_VOCAB, hidden, 2, draft, NULL, err) == -1 && strstr(err, "token id 512"),
                  "a bad token: %s", err);
            CHECK(gemma4_drafter_draft(d, s, 0, 1, NULL, 2, draft, NULL, err) == -1, "no hidden state");
            CHECK(gemma4_draft_mtp(d, s, 0, 1, NULL, 2, draft) == 0, "the draft source without a hidden state drafts nothing");
            CHECK(gemma4_draft_mtp(d, s, 0, r.t0, hidden, 2, draft) == 2, "the draft source drafts");
            gemma4_seq_remove(s, 0);
            CHECK(gemma4_drafter_draft(d, s, 0, 1, hidden, 2, draft, NULL, err) == -1 && strstr(err, "empty"), "an empty sequence: %s", err);
            CHECK(gemma4_decode_hidden(s, 1, r.prompt, NULL, NULL, NULL, hidden, err) == -1, "hidden without logits");
        }
        gemma4_session_free(s);
        gemma4_session_free(so);
    }
    gemma4_drafter_free(d);
    gemma4_model_free(m);
    gemma4_model_free(other);
}

int main(void) {
    char probe[1024];
    if (access(path_of(probe, sizeof probe, "models/%s_f32.gguf", "dense"), R_OK) ||
        access(path_of(probe, sizeof probe, "mtp/%s.gguf", "dense_rand"), R_OK)) {
        SKIP("draft", "no fixture root at %s (tests/fixtures.sh assembles it)", test_fixtures_dir());
        return test_summary("test_draft");
    }
    for (size_t i = 0; i < sizeof REFS / sizeof REFS[0]; i++) test_reference(REFS[i], NULL);
    test_quantized();
    test_hidden_rows();
    test_paged("e2b_rand");
    test_paged("moe_rand");
    test_cli("e2b_rand");
    test_cli("moe_align");
    test_masked_head();
    test_refusals();
    test_bad_calls();
    return test_summary("test_draft");
}
