/* Grammar-constrained decoding cost on a real vocabulary: building the
 * matcher's trie, g4_grammar_mask, g4_grammar_allows and
 * g4_grammar_accept for a JSON Schema grammar, at several points of a
 * document (start, inside a string, inside a number, ...), cold (first
 * time the matcher meets that state) and warm (its transitions cached).
 *
 *   bench_grammar [VOCAB.gguf]   (default build/fixtures/tokenizer/ggml-vocab-gemma-4.gguf)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "tokenizer/grammar.h"
#include "tokenizer/tokenizer.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static const char schema[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
    "\"score\":{\"type\":\"number\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"zip\":{\"type\":\"string\"}},"
    "\"required\":[\"city\",\"zip\"]}},\"required\":[\"name\",\"age\",\"score\",\"tags\",\"address\"],"
    "\"additionalProperties\":false}";

static const char document[] =
    "{\"name\": \"Ada Lovelace, née Byron — 数学者\", \"age\": 36, \"score\": -1234.5678e3, "
    "\"tags\": [\"analytical engine\", \"notes\", \"Bernoulli numbers\"], "
    "\"address\": {\"city\": \"London\", \"zip\": \"W1\"}}";

/* Points of the document where masks are timed: the bytes before them. */
static const struct {
    const char *name;
    size_t len;
} points[] = {
    {"start", 0},
    {"after {", 1},
    {"inside a key", 4},
    {"inside a string", 20},
    {"inside a number", 70},
    {"inside an array", 90},
};

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "build/fixtures/tokenizer/ggml-vocab-gemma-4.gguf";
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: bench_grammar [VOCAB.gguf]\n");
        return 2;
    }
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open(path, err);
    g4_vocab *v = f ? g4_vocab_load(f, err) : NULL;
    g4_gguf_close(f);
    if (!v) {
        fprintf(stderr, "bench_grammar: %s (sh tests/fixtures.sh build/fixtures unpacks it)\n", err);
        return 1;
    }
    int32_t n_vocab = g4_vocab_size(v);

    double build = INFINITY;
    g4_grammar_vocab *gv = NULL;
    for (int r = 0; r < 3; r++) {
        g4_grammar_vocab_free(gv);
        double t0 = now_ms();
        gv = g4_grammar_vocab_new(v, err);
        build = fmin(build, now_ms() - t0);
        if (!gv) return fprintf(stderr, "bench_grammar: %s\n", err), 1;
    }
    char *gbnf = g4_json_schema_to_gbnf(schema, sizeof schema - 1, err);
    g4_grammar *g = gbnf ? g4_grammar_parse(gbnf, strlen(gbnf), NULL, err) : NULL;
    if (!g) return fprintf(stderr, "bench_grammar: %s\n", err), 1;

    int32_t *ids = NULL;
    int64_t n_ids = g4_tokenize(v, document, sizeof document - 1, false, false, &ids, err);
    if (n_ids <= 0) return fprintf(stderr, "bench_grammar: %s\n", err), 1;
    float *logits = malloc((size_t)n_vocab * sizeof *logits);

    printf("grammar matcher, %d-token vocabulary (%s)\n", n_vocab, path);
    printf("  trie build: %.1f ms (best of 3)\n\n", build);
    printf("  %-18s %7s %12s %12s %10s %12s\n", "point", "tokens", "mask cold", "mask warm", "allowed", "allows");
    for (size_t p = 0; p < sizeof points / sizeof *points; p++) {
        /* the tokens whose bytes lie before the point, fed to a fresh state */
        g4_grammar_state *st = g4_grammar_state_new(g, err);
        size_t bytes = 0;
        int64_t k = 0;
        char piece[256];
        while (k < n_ids && bytes < points[p].len) {
            bytes += g4_token_to_piece(v, ids[k], false, piece, sizeof piece);
            if (g4_grammar_accept(st, gv, ids[k++], err)) return fprintf(stderr, "bench_grammar: %s\n", err), 1;
        }
        for (int32_t t = 0; t < n_vocab; t++) logits[t] = 0;
        double t0 = now_ms();
        g4_grammar_mask(st, gv, logits);
        double cold = now_ms() - t0;
        int allowed = 0;
        for (int32_t t = 0; t < n_vocab; t++) allowed += logits[t] == 0;
        int reps = 20;
        t0 = now_ms();
        for (int r = 0; r < reps; r++) g4_grammar_mask(st, gv, logits);
        double warm = (now_ms() - t0) / reps;
        t0 = now_ms();
        int yes = 0;
        for (int32_t t = 0; t < n_vocab; t++) yes += g4_grammar_allows(st, gv, t);
        if (yes != allowed) fprintf(stderr, "bench_grammar: %d tokens allowed one by one, %d by the mask\n", yes, allowed);
        double allows_us = (now_ms() - t0) * 1e3 / n_vocab;
        printf("  %-18s %7lld %9.3f ms %9.3f ms %10d %9.3f us\n", points[p].name, (long long)k, cold, warm, allowed, allows_us);
        g4_grammar_state_free(st);
    }

    /* a whole document as generation meets it: mask, then accept, per token */
    double masked = 0, accepted = 0;
    int runs = 5;
    for (int r = 0; r < runs; r++) {
        g4_grammar_state *st = g4_grammar_state_new(g, err);
        for (int64_t i = 0; i < n_ids; i++) {
            double t0 = now_ms();
            g4_grammar_mask(st, gv, logits);
            double t1 = now_ms();
            if (g4_grammar_accept(st, gv, ids[i], err)) return fprintf(stderr, "bench_grammar: %s\n", err), 1;
            masked += t1 - t0, accepted += now_ms() - t1;
        }
        g4_grammar_state_free(st);
    }
    printf("\n  whole document, %lld tokens, first run cold, mean of %d runs:\n", (long long)n_ids, runs);
    printf("    mask %.3f ms/token, accept %.4f ms/token\n", masked / (runs * n_ids), accepted / (runs * n_ids));

    free(logits);
    free(ids);
    free(gbnf);
    g4_grammar_free(g);
    g4_grammar_vocab_free(gv);
    g4_vocab_free(v);
    return 0;
}
