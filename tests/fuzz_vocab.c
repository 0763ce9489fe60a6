/* libFuzzer target for the vocabulary loader: any GGUF that parses either
 * yields a vocabulary or is refused with one line, and a vocabulary that
 * loads must tokenize and detokenize a fixed text without a fault, whatever
 * its scores, types, merges and special ids say. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open_memory(data, size, "fuzz", err);
    if (!f) return 0;
    g4_vocab *v = g4_vocab_load(f, err);
    if (!v) {
        if (!memchr(err, 0, sizeof err) || strchr(err, '\n')) __builtin_trap(); /* one line, terminated */
        g4_gguf_close(f);
        return 0;
    }
    static const char text[] = "Hello <|turn>user\n w\xC3\xB6rld \xF0\x9F\x98\x80 12345 <bos>";
    int32_t *ids = NULL;
    const int64_t n = g4_tokenize(v, text, sizeof text - 1, true, true, &ids, err);
    char piece[256];
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= g4_vocab_size(v)) __builtin_trap();
        g4_token_to_piece(v, ids[i], true, piece, sizeof piece);
    }
    free(ids);
    g4_vocab_free(v);
    g4_gguf_close(f);
    return 0;
}
