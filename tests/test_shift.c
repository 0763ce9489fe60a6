/* Context shift (gemma4_seq_shift, docs/architecture.md §11): the moved keys
 * against a rotation computed here in double precision (every layer, f32,
 * f16 and q8_0 caches) and, on layer 0 where a key depends on its token
 * alone, against keys computed afresh at the new positions; V and the kept
 * rows unchanged; the sliding layers' pages and, on a model of sliding
 * layers only, the logits after a shift against a fresh run (attention
 * depends on relative positions only); generation going on past many shifts;
 * forked sequences; truncating after a shift; bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemma4.h"
#include "model.h"
#include "tests/harness.h"
#include "tools/synth/mkmodel.h"

/* ---------------------------------------------------------------- models */

/* A small synthetic f32 model: tiny-dense with the settings given. */
static gemma4_model *synth_model(const char *const *sets, size_t n_sets, uint64_t seed) {
    char err[G4_ERR_LEN] = "", path[] = "/tmp/g4_test_shift_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0, "temporary file");
    if (fd < 0) return NULL;
    close(fd);
    g4_shape sh;
    int rc = g4_shape_preset("tiny-dense", &sh, err);
    for (size_t i = 0; i < n_sets && !rc; i++) rc = g4_shape_set(&sh, sets[i], err);
    rc = rc ? rc : g4_shape_finalize(&sh, err);
    rc = rc ? rc : g4_mkmodel_write(&sh, G4_TYPE_F32, seed, path, false, err);
    gemma4_model *m = rc ? NULL : gemma4_load(path, err);
    remove(path);
    CHECK(m != NULL, "synthetic model (%s): %s", sets[0], err);
    return m;
}

static gemma4_model *fixture_model(const char *name) {
    char path[1024], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/models/%s.gguf", test_fixtures_dir(), name);
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "%s: %s", name, err);
    return m;
}

static gemma4_session *session(const gemma4_model *m, int32_t n_ctx, int32_t page, gemma4_kv_type type, int32_t n_seq,
                               int32_t n_ubatch) {
    char err[G4_ERR_LEN];
    const gemma4_session_params sp = {.n_ctx = n_ctx, .n_threads = 1, .n_ubatch = n_ubatch, .page_size = page,
                                      .type_k = type, .type_v = type, .n_seq = n_seq};
    gemma4_session *s = gemma4_session_new(m, &sp, err);
    CHECK(s != NULL, "session: %s", err);
    return s;
}

/* Some token ids of the model's vocabulary, the same for a given i. */
static int32_t token(const gemma4_model *m, int i) { return 3 + (int32_t)((i * 131 + 17) % (gemma4_n_vocab(m) - 3)); }

static bool feed(gemma4_session *s, int32_t seq, const int32_t *ids, int n, float *logits) {
    char err[G4_ERR_LEN];
    const bool want[1] = {true};
    for (int i = 0; i < n; i++) /* one at a time: the same arithmetic for every run */
        if (gemma4_decode(s, 1, ids + i, &seq, i == n - 1 && logits ? want : NULL, logits, err)) {
            CHECK(0, "decode: %s", err);
            return false;
        }
    return true;
}

/* ---------------------------------------------------------------- cache rows */

static int32_t row_width(const layer *L) { return L->n_head_kv * L->head_dim; }

/* The K (v false) or V row of layer il at pos, as f32. */
static void read_row(const gemma4_session *s, int32_t seq, int32_t il, int32_t pos, bool v, float *out) {
    int32_t n;
    size_t stride;
    const void *r = g4_kv_rows(s->kv, seq, il, pos, v, &n, &stride);
    g4_dequantize_row(v ? s->type_v : s->type_k, r, out, row_width(&s->m->layers[il]));
}

static const void *raw_row(const gemma4_session *s, int32_t seq, int32_t il, int32_t pos, bool v, size_t *bytes) {
    int32_t n;
    const void *r = g4_kv_rows(s->kv, seq, il, pos, v, &n, bytes);
    return r;
}

/* The reference: a cached key of layer il rotated for position from is
 * rotated back (angle -from) and then to position to, in double, with the
 * angles of §4.3 computed directly: pos * base^(-2k/n) / rope_freqs[k]. */
static void ref_move(const gemma4_model *m, int32_t il, const float *k, int32_t from, int32_t to, double *out) {
    const layer *L = &m->layers[il];
    const int32_t hd = L->head_dim, half = L->n_rot / 2;
    for (int32_t i = 0; i < row_width(L); i++) out[i] = k[i];
    for (int32_t h = 0; h < L->n_head_kv; h++)
        for (int32_t p = 0; p < half; p++) {
            const double f = pow((double)L->rope_base, -2.0 * p / L->n_rot) / (L->swa ? 1.0 : (double)m->rope_freqs[p]);
            const double a = ((double)to - (double)from) * f; /* rotate by -from·f, then by to·f */
            double *x = out + (size_t)h * hd;
            const double x0 = x[p], x1 = x[p + half];
            x[p] = x0 * cos(a) - x1 * sin(a);
            x[p + half] = x0 * sin(a) + x1 * cos(a);
        }
}

/* ---------------------------------------------------------------- 1, 2: keys */

/* How far a moved key may be from the expected one, relative to the largest
 * value of its row. Against the reference (which starts from the cached key
 * as stored) only the rounding back to the type counts: f32, the f32
 * angles' rounding (~1e-6 measured); f16, half an ulp, 2^-11 of a value;
 * q8_0, half a step of its block, max/127/2, plus the f16 rounding of the
 * block scale (127 * 2^-11 of a step). Against a key computed afresh (which
 * was rounded once, at the new position) the moved key was rounded twice
 * more, the first error rotated with it: three roundings in all. Measured
 * figures are printed. */
static double key_bar(gemma4_kv_type t, bool fresh) {
    if (t == GEMMA4_KV_F32) return 1e-5;
    if (t == GEMMA4_KV_F16) return fresh ? 3 * 0.5 * 0x1p-10 : 0x1p-11 * 1.2;
    return fresh ? 3 * 0.5 / 127 * 1.07 : 0.5 / 127 * 1.07;
}
static const char *type_name(gemma4_kv_type t) { return t == GEMMA4_KV_F32 ? "f32" : t == GEMMA4_KV_F16 ? "f16" : "q8_0"; }

static double rel_diff(const float *a, const double *b, int32_t n) {
    double d = 0, mx = 0;
    for (int32_t i = 0; i < n; i++) {
        const double e = fabs(a[i] - b[i]);
        if (!(e <= d)) d = e;
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
    }
    return mx > 0 ? d / mx : d;
}

/* A sequence of N tokens shifted (keep K, discard D): every layer's moved
 * keys are the reference rotation of the keys before, V and the kept rows
 * are byte for byte what they were, the tokens are kept then moved. */
static void test_keys_rotated(const gemma4_model *m, const char *name, gemma4_kv_type type, int32_t page) {
    enum { N = 45, K = 5, D = 17 };
    char err[G4_ERR_LEN];
    gemma4_session *s = session(m, 64, page, type, 1, 1);
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = token(m, i);
    if (!s || !feed(s, 0, ids, N, NULL)) return gemma4_session_free(s);
    /* the window's rows (and the full layers' all) before the shift, as f32 and as bytes */
    const int32_t n_layer = m->n_layer;
    const size_t W = 1024;
    float *kb = calloc((size_t)n_layer * N * W, sizeof *kb);
    unsigned char *vb = calloc((size_t)n_layer * N * W * 4, 1), *kk = calloc((size_t)n_layer * N * W * 4, 1);
    const int32_t lo_swa = N - m->n_swa + 1; /* sliding rows held for sure: the window of the next token */
    for (int32_t il = 0; il < n_layer; il++) {
        const layer *L = &m->layers[il];
        if (!L->has_kv) continue;
        for (int32_t p = L->swa ? lo_swa : 0; p < N; p++) {
            size_t bytes;
            read_row(s, 0, il, p, false, kb + ((size_t)il * N + p) * W);
            const void *v = raw_row(s, 0, il, p, true, &bytes);
            memcpy(vb + ((size_t)il * N + p) * W * 4, v, bytes);
            const void *k = raw_row(s, 0, il, p, false, &bytes);
            memcpy(kk + ((size_t)il * N + p) * W * 4, k, bytes);
        }
    }
    const int32_t n = gemma4_seq_shift(s, 0, K, D, err);
    CHECK(n == N - D && gemma4_seq_pos(s, 0) == N - D, "%s %s: shift returned %d (%s), pos %d", name, type_name(type), n,
          n < 0 ? err : "", gemma4_seq_pos(s, 0));
    const int32_t *tok = gemma4_seq_tokens(s, 0);
    bool tokens_ok = tok != NULL;
    for (int i = 0; tokens_ok && i < N - D; i++) tokens_ok = tok[i] == ids[i < K ? i : i + D];
    CHECK(tokens_ok, "%s: tokens after the shift are the kept then the moved ones", name);
    double worst = 0;
    int bad_v = 0, bad_kept = 0, checked = 0;
    double ref[1024];
    float got[1024];
    for (int32_t il = 0; n == N - D && il < n_layer; il++) {
        const layer *L = &m->layers[il];
        if (!L->has_kv) continue;
        for (int32_t q = L->swa ? lo_swa - D : 0; q < N - D; q++) {
            const int32_t from = q < K ? q : q + D;
            if (L->swa && from < lo_swa) continue;
            size_t bytes;
            const void *v = raw_row(s, 0, il, q, true, &bytes);
            bad_v += memcmp(v, vb + ((size_t)il * N + from) * W * 4, bytes) != 0;
            if (q < K) {
                const void *k = raw_row(s, 0, il, q, false, &bytes);
                bad_kept += memcmp(k, kk + ((size_t)il * N + from) * W * 4, bytes) != 0;
                continue;
            }
            read_row(s, 0, il, q, false, got);
            ref_move(m, il, kb + ((size_t)il * N + from) * W, from, q, ref);
            const double d = rel_diff(got, ref, row_width(L));
            if (!(d <= worst)) worst = d;
            checked++;
        }
    }
    printf("%s, %s cache: moved keys vs the reference rotation: max |diff| / row max %.3g over %d rows\n", name,
           type_name(type), worst, checked);
    CHECK(checked > 30 && worst <= key_bar(type, false), "%s %s: moved keys differ from the reference rotation by %g (bar %g)",
          name, type_name(type), worst, key_bar(type, false));
    CHECK(bad_v == 0, "%s %s: %d moved V rows changed", name, type_name(type), bad_v);
    CHECK(bad_kept == 0, "%s %s: %d kept K rows changed", name, type_name(type), bad_kept);
    free(kb);
    free(vb);
    free(kk);
    gemma4_session_free(s);
}

/* Layer 0's key depends on its token alone: after the shift it must be the
 * key a sequence fed the kept then the moved tokens computes afresh. */
static void test_keys_fresh(const gemma4_model *m, const char *name, gemma4_kv_type type) {
    enum { N = 40, K = 4, D = 13 };
    char err[G4_ERR_LEN];
    const layer *L = &m->layers[0];
    gemma4_session *a = session(m, 64, 4, type, 1, 1), *b = session(m, 64, 4, type, 1, 1);
    int32_t ids[N], moved[N];
    for (int i = 0; i < N; i++) ids[i] = token(m, i);
    for (int i = 0; i < N - D; i++) moved[i] = ids[i < K ? i : i + D];
    bool ok = a && b && feed(a, 0, ids, N, NULL) && feed(b, 0, moved, N - D, NULL);
    ok = ok && gemma4_seq_shift(a, 0, K, D, err) == N - D;
    CHECK(ok, "%s: %s", name, err);
    double worst = 0;
    int bad_v = 0, checked = 0;
    const int32_t lo = L->swa ? N - D - m->n_swa + 1 : 0;
    for (int32_t q = lo > 0 ? lo : 0; ok && q < N - D; q++) {
        float ka[1024], kb[1024];
        double kbd[1024];
        read_row(a, 0, 0, q, false, ka);
        read_row(b, 0, 0, q, false, kb);
        for (int32_t i = 0; i < row_width(L); i++) kbd[i] = kb[i];
        const double d = rel_diff(ka, kbd, row_width(L));
        if (!(d <= worst)) worst = d;
        size_t bytes;
        const void *va = raw_row(a, 0, 0, q, true, &bytes), *vb = raw_row(b, 0, 0, q, true, &bytes);
        bad_v += memcmp(va, vb, bytes) != 0;
        checked++;
    }
    printf("%s, %s cache: layer 0 (%s) keys after the shift vs afresh: max |diff| / row max %.3g over %d rows\n", name,
           type_name(type), L->swa ? "sliding" : "full", worst, checked);
    CHECK(ok && checked >= 7 && worst <= key_bar(type, true), "%s %s: shifted keys differ from fresh ones by %g (bar %g)", name,
          type_name(type), worst, key_bar(type, true));
    CHECK(bad_v == 0, "%s %s: %d V rows differ from fresh ones", name, type_name(type), bad_v);
    gemma4_session_free(a);
    gemma4_session_free(b);
}

/* ---------------------------------------------------------------- 3: the window */

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}

/* Sliding layers only (window 4, three layers): a token's keys and values
 * depend on the 3 * 3 tokens before it at most and attention on relative
 * positions only, so after dropping the first D tokens (keep 0) the next
 * token's logits are those of a sequence that never had them; and the
 * sliding pages held are those of that sequence. The bar: the moved keys'
 * rounding (1e-7 of a value) grows through this random model's three layers
 * to 3.2e-4 on logits of up to 30 (measured; two shifts of 10 and 11 instead
 * of one of 21 move them by 3e-6); a rotation to the wrong position by one
 * gives 1.75. */
static void test_window(void) {
    const char *sets[] = {"n_layer=3", "layer_types=SSS", "n_swa=4"};
    gemma4_model *m = synth_model(sets, 3, 11);
    if (!m) return;
    enum { N = 50, D = 21 };
    char err[G4_ERR_LEN];
    const size_t V = (size_t)gemma4_n_vocab(m);
    int32_t ids[N + 1];
    for (int i = 0; i <= N; i++) ids[i] = token(m, i);
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb);
    for (int32_t page = 1; page <= 5; page += 2) {
        gemma4_session *a = session(m, 64, page, GEMMA4_KV_F32, 1, 1), *b = session(m, 64, page, GEMMA4_KV_F32, 1, 1);
        bool ok = a && b && la && lb && feed(a, 0, ids, N, NULL) && gemma4_seq_shift(a, 0, 0, D, err) == N - D &&
                  feed(b, 0, ids + D, N - D, NULL);
        CHECK(ok, "window, page %d: %s", page, err);
        if (ok) {
            gemma4_kv_usage ua, ub;
            gemma4_kv_usage_get(a, &ua);
            gemma4_kv_usage_get(b, &ub);
            CHECK(ua.pages_used[GEMMA4_KV_SWA] == ub.pages_used[GEMMA4_KV_SWA] && ua.pages_used[GEMMA4_KV_FULL] == 0,
                  "window, page %d: %d sliding pages after the shift, a fresh sequence holds %d", page,
                  ua.pages_used[GEMMA4_KV_SWA], ub.pages_used[GEMMA4_KV_SWA]);
            /* at most the window plus a page of slack, plus the page being filled */
            CHECK(ua.pages_used[GEMMA4_KV_SWA] <= (4 + 2 * page) / page + 1, "window, page %d: %d sliding pages", page,
                  ua.pages_used[GEMMA4_KV_SWA]);
            ok = feed(a, 0, ids + N, 1, la) && feed(b, 0, ids + N, 1, lb);
            const double d = ok ? max_abs_diff(la, lb, V) : -1;
            printf("window, page %d: next-token logits after dropping %d tokens vs a run without them: max |diff| %.3g\n",
                   page, D, d);
            CHECK(ok && d <= 1e-3, "window, page %d: logits after the shift differ by %g", page, d);
        }
        gemma4_session_free(a);
        gemma4_session_free(b);
    }
    free(la);
    free(lb);
    gemma4_model_free(m);
}

/* ---------------------------------------------------------------- 4: generation */

static int32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* 500 tokens greedily in a context of 64: whenever it is full, keep 4 and
 * drop half of the rest (llama.cpp's rule); the session's tokens follow the
 * same bookkeeping done here. */
static void test_generation(const gemma4_model *m, gemma4_kv_type type) {
    enum { CTX = 64, KEEP = 4, STEPS = 500 };
    char err[G4_ERR_LEN] = "";
    gemma4_session *s = session(m, CTX, 32, type, 1, 0);
    const size_t V = (size_t)gemma4_n_vocab(m);
    float *logits = malloc(V * sizeof *logits);
    int32_t mine[CTX + 1], n_mine = 0, shifts = 0, max_pos = 0;
    bool ok = s && logits, finite = true;
    int32_t tok = token(m, 0);
    for (int step = 0; ok && step < STEPS; step++) {
        const int32_t pos = gemma4_seq_pos(s, 0);
        if (pos + 1 > CTX) {
            const int32_t n_discard = (pos - KEEP) / 2;
            ok = gemma4_seq_shift(s, 0, KEEP, n_discard, err) == pos - n_discard;
            memmove(mine + KEEP, mine + KEEP + n_discard, (size_t)(n_mine - KEEP - n_discard) * sizeof *mine);
            n_mine -= n_discard;
            shifts++;
            if (!ok) break;
        }
        ok = !gemma4_eval(s, &tok, 1, logits, false, err);
        mine[n_mine++] = tok;
        if (gemma4_seq_pos(s, 0) > max_pos) max_pos = gemma4_seq_pos(s, 0);
        for (size_t i = 0; ok && i < V; i++) finite = finite && isfinite(logits[i]);
        tok = argmax(logits, V);
    }
    const int32_t *t = s ? gemma4_seq_tokens(s, 0) : NULL;
    const bool same = ok && t && gemma4_seq_pos(s, 0) == n_mine && !memcmp(t, mine, (size_t)n_mine * sizeof *t);
    printf("generation, %s cache: %d tokens in a context of %d, %d shifts\n", type_name(type), STEPS, CTX, shifts);
    CHECK(ok && shifts >= 10 && max_pos <= CTX, "generation %s: %s (%d shifts, max position %d)", type_name(type), err,
          shifts, max_pos);
    CHECK(finite, "generation %s: logits not finite", type_name(type));
    CHECK(same, "generation %s: the session's tokens are not the kept and moved ones", type_name(type));
    gemma4_kv_usage u;
    if (s) gemma4_kv_usage_get(s, &u);
    /* full layers: the context's pages; sliding: the window (8) and slack in two pages */
    CHECK(s && u.pages_used[GEMMA4_KV_FULL] <= 2 && u.pages_used[GEMMA4_KV_SWA] <= 2, "generation %s: pages %d / %d",
          type_name(type), s ? u.pages_used[0] : -1, s ? u.pages_used[1] : -1);
    free(logits);
    gemma4_session_free(s);
}

/* ---------------------------------------------------------------- 5: forks */

/* Sequence 1 forked from 0; shifting 0 leaves 1's rows, length and logits
 * alone (its pages were shared: copy on write). */
static void test_fork(const gemma4_model *m) {
    enum { N = 41, K = 4, D = 18 };
    char err[G4_ERR_LEN] = "";
    gemma4_session *s = session(m, 64, 4, GEMMA4_KV_F32, 2, 1), *alone = session(m, 64, 4, GEMMA4_KV_F32, 1, 1);
    int32_t ids[N + 1];
    for (int i = 0; i <= N; i++) ids[i] = token(m, i);
    bool ok = s && alone && feed(s, 0, ids, N, NULL) && !gemma4_seq_fork(s, 0, 1, err) && feed(alone, 0, ids, N, NULL);
    CHECK(ok, "fork: %s", err);
    if (!ok) return gemma4_session_free(s), gemma4_session_free(alone);
    const int32_t n_layer = m->n_layer;
    size_t total = 0;
    for (int32_t il = 0; il < n_layer; il++) total += (size_t)2 * N * 1024 * 4;
    unsigned char *before = malloc(total);
    size_t at = 0, bytes;
    const int32_t lo_swa = N - m->n_swa + 1;
    for (int32_t il = 0; il < n_layer; il++)
        for (int32_t p = m->layers[il].swa ? lo_swa : 0; m->layers[il].has_kv && p < N; p++)
            for (int v = 0; v < 2; v++) {
                const void *r = raw_row(s, 1, il, p, v, &bytes);
                memcpy(before + at, r, bytes);
                at += bytes;
            }
    ok = gemma4_seq_shift(s, 0, K, D, err) == N - D;
    CHECK(ok && gemma4_seq_pos(s, 1) == N, "fork: shift %s, other sequence at %d", err, gemma4_seq_pos(s, 1));
    at = 0;
    int changed = 0;
    for (int32_t il = 0; il < n_layer; il++)
        for (int32_t p = m->layers[il].swa ? lo_swa : 0; m->layers[il].has_kv && p < N; p++)
            for (int v = 0; v < 2; v++) {
                const void *r = raw_row(s, 1, il, p, v, &bytes);
                changed += memcmp(before + at, r, bytes) != 0;
                at += bytes;
            }
    CHECK(changed == 0, "fork: %d rows of the other sequence changed", changed);
    const size_t V = (size_t)gemma4_n_vocab(m);
    float *l1 = malloc(V * sizeof *l1), *l2 = malloc(V * sizeof *l2);
    ok = l1 && l2 && feed(s, 1, ids + N, 1, l1) && feed(alone, 0, ids + N, 1, l2);
    CHECK(ok && !memcmp(l1, l2, V * sizeof *l1), "fork: the other sequence's logits changed by %g",
          ok ? max_abs_diff(l1, l2, V) : -1.0);
    free(l1);
    free(l2);
    free(before);
    gemma4_session_free(s);
    gemma4_session_free(alone);
}

/* ---------------------------------------------------------------- truncate after a shift */

/* Checkpoints above the kept positions are gone after a shift (their rows
 * moved); one within them still holds. Truncating back to it and feeding
 * the tokens again gives the logits of a sequence fed them from the start. */
static void test_truncate(void) {
    const char *sets[] = {"n_layer=3", "layer_types=SSF", "n_swa=6"};
    gemma4_model *m = synth_model(sets, 3, 12);
    if (!m) return;
    enum { N = 40, K = 4, D = 18 };
    char err[G4_ERR_LEN] = "";
    const size_t V = (size_t)gemma4_n_vocab(m);
    int32_t ids[N + 1], list[N + 1];
    for (int i = 0; i <= N; i++) ids[i] = token(m, i);
    gemma4_session *s = session(m, 64, 4, GEMMA4_KV_F32, 1, 1), *b = session(m, 64, 4, GEMMA4_KV_F32, 1, 1);
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb);
    bool ok = s && b && la && lb && feed(s, 0, ids, K, NULL);
    gemma4_seq_checkpoint(s, 0);
    ok = ok && feed(s, 0, ids + K, 10 - K, NULL);
    gemma4_seq_checkpoint(s, 0);
    ok = ok && feed(s, 0, ids + 10, N - 10, NULL) && gemma4_seq_shift(s, 0, K, D, err) == N - D;
    CHECK(ok, "truncate: %s", err);
    if (ok) {
        memcpy(list, gemma4_seq_tokens(s, 0), (N - D) * sizeof *list);
        /* the window before 20 (new positions 15..19) was moved whole */
        CHECK(gemma4_seq_truncate(s, 0, 20) == 20, "truncate: within the window");
        /* before 12 the rows are gone; checkpoint 10 was above the kept 4 */
        const int32_t back = gemma4_seq_truncate(s, 0, 12);
        CHECK(back == K, "truncate: back to %d, expected the checkpoint at %d", back, K);
        list[N - D] = ids[N];
        ok = back >= 0 && feed(s, 0, list + back, N - D + 1 - back, la) && feed(b, 0, list, N - D + 1, lb);
        const double d = ok ? max_abs_diff(la, lb, V) : -1;
        CHECK(ok && d <= 1e-5, "truncate: logits after feeding again differ by %g from a fresh run", d);
    }
    free(la);
    free(lb);
    gemma4_session_free(s);
    gemma4_session_free(b);
    gemma4_model_free(m);
}

/* Keep 5 with pages of 4, window 6, the largest discard: new positions 5..9
 * are the window, so the page of 4..7 stays for it, but kept row 4 was
 * recycled long ago. Row 4 counts as missing: a truncate whose window needs
 * it goes back to the start instead of reading it. */
static void test_partial_page(void) {
    const char *sets[] = {"n_layer=3", "layer_types=SSF", "n_swa=6"};
    gemma4_model *m = synth_model(sets, 3, 14);
    if (!m) return;
    enum { N = 40, K = 5, D = 30 };
    char err[G4_ERR_LEN] = "";
    const size_t V = (size_t)gemma4_n_vocab(m);
    int32_t ids[N + 1];
    for (int i = 0; i <= N; i++) ids[i] = token(m, i);
    gemma4_session *s = session(m, 64, 4, GEMMA4_KV_F32, 1, 1);
    float *l = malloc(V * sizeof *l);
    bool ok = s && l && feed(s, 0, ids, N, NULL);
    CHECK(ok && gemma4_seq_shift(s, 0, K, D + 1, err) == -1 && strstr(err, "discard at most 30"),
          "partial page: discarding 31 is refused: %s", err);
    ok = ok && gemma4_seq_shift(s, 0, K, D, err) == N - D;
    CHECK(ok, "partial page: %s", err);
    if (ok) {
        gemma4_kv_usage u;
        gemma4_kv_usage_get(s, &u);
        CHECK(u.pages_used[GEMMA4_KV_SWA] == 2, "partial page: %d sliding pages, expected those of 4..7 and 8..11",
              u.pages_used[GEMMA4_KV_SWA]);
        bool finite = feed(s, 0, ids + N, 1, l);
        for (size_t i = 0; finite && i < V; i++) finite = isfinite(l[i]);
        CHECK(finite, "partial page: decoding after the shift");
        CHECK(gemma4_seq_truncate(s, 0, N - D) == N - D, "partial page: the window of 10 is there");
        const int32_t back = gemma4_seq_truncate(s, 0, N - D - 1);
        CHECK(back == 0, "partial page: truncating to %d, whose window needs row 4, kept %d", N - D - 1, back);
    }
    free(l);
    gemma4_session_free(s);
    gemma4_model_free(m);
}

/* ---------------------------------------------------------------- 6: refusals */

static void test_errors(void) {
    const char *sets[] = {"n_layer=3", "layer_types=SSF", "n_swa=6"};
    gemma4_model *m = synth_model(sets, 3, 13);
    if (!m) return;
    enum { N = 40 };
    gemma4_session *s = session(m, 64, 4, GEMMA4_KV_F32, 2, 1);
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = token(m, i);
    if (!s || !feed(s, 0, ids, N, NULL)) return gemma4_session_free(s), gemma4_model_free(m);
    const struct {
        int32_t seq, keep, discard;
        const char *says;
    } bad[] = {
        {2, 0, 1, "sequence 2 is outside 0..1"}, {-1, 0, 1, "sequence -1"}, {0, -1, 1, "keep -1"},
        {0, 0, 0, "discard 0"}, {0, 4, -3, "discard -3"}, {0, 30, 11, "keep 30 and discard 11"},
        {0, 0, N + 1, "discard 41"}, {1, 0, 1, "keep 0 and discard 1 do not fit its 0 positions"},
        /* keep 4, window 6: discarding 32 would need kept rows 3..3 back (recycled) */
        {0, 4, 32, "discard at most 31"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[G4_ERR_LEN] = "";
        const int32_t r = gemma4_seq_shift(s, bad[i].seq, bad[i].keep, bad[i].discard, err);
        CHECK(r == -1 && strstr(err, bad[i].says), "shift(%d, %d, %d): %d, \"%s\" does not say \"%s\"", bad[i].seq,
              bad[i].keep, bad[i].discard, r, err, bad[i].says);
    }
    const int32_t *t = gemma4_seq_tokens(s, 0);
    bool same = gemma4_seq_pos(s, 0) == N;
    for (int i = 0; same && i < N; i++) same = t[i] == ids[i];
    CHECK(same, "a refused shift leaves the sequence as it was");
    char err[G4_ERR_LEN] = "";
    CHECK(gemma4_seq_shift(s, 0, 4, 31, err) == N - 31, "the largest discard the error names works: %s", err);
    /* everything after the kept positions, on a sequence short enough to hold all its sliding rows */
    const size_t V = (size_t)gemma4_n_vocab(m);
    float *l = malloc(V * sizeof *l), *fresh = malloc(V * sizeof *fresh);
    gemma4_session *b = session(m, 64, 4, GEMMA4_KV_F32, 1, 1);
    bool ok = l && fresh && b && feed(s, 1, ids, 10, NULL) && gemma4_seq_shift(s, 1, 3, 7, err) == 3;
    ok = ok && gemma4_seq_tokens(s, 1)[2] == ids[2] && feed(s, 1, ids + 3, 1, l) && feed(b, 0, ids, 4, fresh);
    CHECK(ok && !memcmp(l, fresh, V * sizeof *l), "dropping all after the kept positions is a truncate: %s", err);
    free(l);
    free(fresh);
    gemma4_session_free(b);
    gemma4_session_free(s);
    gemma4_model_free(m);
}

int main(void) {
    /* layer 0 full (with the partial rotation of rope_freqs), then sliding */
    const char *full_first[] = {"n_layer=3", "layer_types=FSF", "n_swa=6"};
    gemma4_model *ff = synth_model(full_first, 3, 10);
    gemma4_model *e2b = fixture_model("e2b_f32"), *moe = fixture_model("moe_f32");
    const gemma4_kv_type types[] = {GEMMA4_KV_F32, GEMMA4_KV_F16, GEMMA4_KV_Q8_0};
    for (size_t t = 0; t < 3; t++) {
        if (ff) test_keys_fresh(ff, "full first", types[t]), test_keys_rotated(ff, "full first", types[t], 4);
        if (e2b) test_keys_fresh(e2b, "e2b_f32", types[t]), test_keys_rotated(e2b, "e2b_f32", types[t], 3);
        if (moe) test_keys_rotated(moe, "moe_f32", types[t], 32);
    }
    test_window();
    if (e2b) test_generation(e2b, GEMMA4_KV_F32), test_generation(e2b, GEMMA4_KV_Q8_0), test_fork(e2b);
    test_truncate();
    test_partial_page();
    test_errors();
    gemma4_model_free(ff);
    gemma4_model_free(e2b);
    gemma4_model_free(moe);
    return test_summary("test_shift");
}
