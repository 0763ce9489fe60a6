/* Synthetic Gemma 4 vocabulary (tokenizer model "gemma4": BPE over raw UTF-8
 * with U+2581 for spaces and <0xHH> byte fallback) of any size.
 *
 * From 262144 tokens up (the real size) every control / user-defined token,
 * the newline, "▁" and tab runs, the <unusedN> slots and the 256 byte tokens
 * sit at their real ids (docs/architecture.md §6.2). Smaller vocabularies use the compact
 * layout of the fixture generator: the 27 special tokens at ids 0..26, "\n",
 * "\n\n", "\n\n\n\n", "\t", "\t\t", then the byte tokens (ids 32..287).
 * The remaining ids get, while they last: printable ASCII and "▁", common
 * English words (with and without a leading "▁", each built by a chain of
 * merges), then "▁"-prefixed pseudo-words that no merge produces, so that
 * random generations still read like words.
 */
#ifndef G4_SYNTH_VOCAB_H
#define G4_SYNTH_VOCAB_H

#include <stdint.h>

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"

#define G4_SYNTH_VOCAB_MIN 288        /* compact specials + whitespace + bytes */
#define G4_SYNTH_VOCAB_REAL 262144    /* from here on: the real id layout */

/* llama_token_type values */
enum { G4_TOKEN_NORMAL = 1, G4_TOKEN_CONTROL = 3, G4_TOKEN_USER_DEFINED = 4, G4_TOKEN_BYTE = 6 };

typedef struct g4_synth_vocab {
    int32_t n_tokens;
    const char **tokens; /* NUL-terminated, into arena */
    int32_t *types;
    float *scores;       /* all -1000, as the converter writes for BPE */
    int32_t n_merges;
    const char **merges; /* "left right", rank = index */
    uint32_t bos, eos, unk, pad, mask;
    char *arena;
} g4_synth_vocab;

/* 0, or -1 with err set (n_tokens < G4_SYNTH_VOCAB_MIN, out of memory). */
int g4_synth_vocab_build(g4_synth_vocab *v, int32_t n_tokens, char *err);
void g4_synth_vocab_free(g4_synth_vocab *v);
/* Adds the tokenizer.ggml.* keys (model "gemma4", tokens, scores,
 * token_type, merges, special ids, add_bos_token true, add_space_prefix false). */
int g4_synth_vocab_write(const g4_synth_vocab *v, g4_gguf_writer *w, char *err);

/* An existing vocabulary instead (mkmodel --vocab): the length of src's
 * tokenizer.ggml.tokens string array, or -1 with err set when it has none. */
int32_t g4_vocab_file_n_tokens(const g4_gguf_file *src, char *err);
/* Copies every tokenizer.* key of src to w, in src's order and with src's
 * types, so a model can carry a given tokenizer byte for byte. 0 or -1. */
int g4_vocab_file_copy(const g4_gguf_file *src, g4_gguf_writer *w, char *err);

#endif
