/* libFuzzer target: encode then decode arbitrary bytes with the synthetic
 * Gemma 4 vocabulary. No crash, and decode(encode(s)) == s when special
 * tokens are not added (the first input byte picks parse_special, with
 * control tokens rendered back in that mode). Run from the repository root:
 * the vocabulary is $GEMMA4_FIXTURES/tokenizer/synthetic-vocab.gguf, or
 * tests/data/tokenizer/synthetic-vocab.gguf without the variable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static g4_vocab *vocab(void) {
    static g4_vocab *v;
    if (v) return v;
    const char *dir = getenv("GEMMA4_FIXTURES");
    char path[4096], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/tokenizer/synthetic-vocab.gguf", dir && *dir ? dir : "tests/data");
    g4_gguf_file *f = g4_gguf_open(path, err);
    v = f ? g4_vocab_load(f, err) : NULL;
    g4_gguf_close(f);
    if (!v) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        abort();
    }
    return v;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    const g4_vocab *v = vocab();
    if (size == 0) return 0;
    bool parse_special = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char err[G4_ERR_LEN];

    int32_t *ids;
    int64_t n = g4_tokenize(v, text, len, true, parse_special, &ids, err);
    if (n < 1 || ids[0] != g4_vocab_bos(v)) abort();
    free(ids);

    n = g4_tokenize(v, text, len, false, parse_special, &ids, err);
    if (n < 0) abort();
    size_t cap = g4_vocab_max_piece(v) + G4_DETOK_HELD, whole_n = 0, stream_n = 0;
    char *whole = malloc(4 * len + cap), *stream = malloc(4 * len + cap), *chunk = malloc(cap);
    g4_detok d;
    g4_detok_init(&d, v, parse_special);
    for (int64_t i = 0; i < n; i++) {
        size_t k = g4_token_to_piece(v, ids[i], parse_special, whole + whole_n, cap);
        if (k > cap || whole_n + k > 4 * len) abort(); /* pieces never outgrow their text */
        whole_n += k;
        k = g4_detok_push(&d, ids[i], chunk, cap);
        if (k > cap) abort();
        memcpy(stream + stream_n, chunk, k);
        stream_n += k;
    }
    stream_n += g4_detok_flush(&d, stream + stream_n, cap);
    /* U+2581 in the input decodes to ' ', so only such inputs may differ */
    bool exact = !memmem(text, len, "\xe2\x96\x81", 3);
    if (exact && (whole_n != len || memcmp(whole, text, len))) abort();
    if (stream_n != whole_n || memcmp(stream, whole, whole_n)) abort();
    free(whole);
    free(stream);
    free(chunk);
    free(ids);
    return 0;
}
