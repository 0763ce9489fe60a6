/* Reading the reference fixtures (logits/ of the fixture root, from
 * tests/data): the token ids of a sidecar and the llama.cpp logits they
 * produced. Test-only helpers; an unreadable or malformed file is a failed
 * check naming its path. */
#ifndef G4_TEST_FIXTURES_H
#define G4_TEST_FIXTURES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf/gguf.h" /* G4_ERR_LEN */
#include "gguf/json.h"
#include "tests/harness.h"

/* The "tokens" of logits/NAME.json (e.g. "dense_f32.long"); at most max,
 * -1 when unreadable or malformed. */
static inline int fixture_tokens(const char *name, int32_t *ids, int max) {
    char path[1024], err[G4_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/logits/%s.json", test_fixtures_dir(), name);
    g4_json *doc = g4_json_parse_file(path, err);
    const g4_json *t = g4_json_get_type(doc, "tokens", G4_JSON_ARRAY);
    int n = t && t->len <= (size_t)max ? (int)t->len : -1;
    for (int i = 0; i < n; i++) {
        if (!t->items[i].is_int) n = -1;
        else ids[i] = (int32_t)t->items[i].integer;
    }
    g4_json_free(doc);
    if (doc) CHECK(n > 0, "%s: \"tokens\" is not an array of 1..%d integers", path, max);
    else CHECK(0, "%s", err);
    return n;
}

/* logits/NAME.logits.f32: n_tok rows of n_vocab little-endian floats
 * (malloc'd), NULL when missing or of another size. */
static inline float *fixture_logits(const char *name, int n_tok, int n_vocab) {
    char path[1024], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/logits/%s.logits.f32", test_fixtures_dir(), name);
    size_t len = 0, want = (size_t)n_tok * (size_t)n_vocab * sizeof(float);
    char *buf = g4_read_file(path, &len, err);
    if (!buf) CHECK(0, "%s", err);
    else CHECK(len == want, "%s: %zu bytes, expected %zu (%d rows of %d floats)", path, len, want, n_tok, n_vocab);
    if (buf && len != want) free(buf), buf = NULL;
    return (float *)buf;
}

/* Sum over n_tok positions of KL(softmax(p) || softmax(q)), in double: the
 * quantity llama.cpp's KL-divergence tool averages. */
static inline double logits_kld_sum(const float *p, const float *q, int n_tok, int n_vocab) {
    double total = 0;
    for (int t = 0; t < n_tok; t++) {
        const float *a = p + (size_t)t * n_vocab, *b = q + (size_t)t * n_vocab;
        double ma = a[0], mb = b[0], za = 0, zb = 0;
        for (int i = 1; i < n_vocab; i++) ma = fmax(ma, a[i]), mb = fmax(mb, b[i]);
        for (int i = 0; i < n_vocab; i++) za += exp(a[i] - ma), zb += exp(b[i] - mb);
        for (int i = 0; i < n_vocab; i++) {
            const double la = a[i] - ma - log(za), lb = b[i] - mb - log(zb);
            total += exp(la) * (la - lb);
        }
    }
    return total;
}

#endif
