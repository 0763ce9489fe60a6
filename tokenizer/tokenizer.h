/* Tokenizer: the vocabulary stored in a GGUF file, text -> token ids and
 * token ids -> text, matching llama.cpp's llama_tokenize / token_to_piece.
 *
 * Two vocabulary models are supported:
 *   "gemma4": BPE by merge rank over raw UTF-8 characters, spaces escaped to
 *             U+2581, input split only into newline / non-newline runs,
 *             <0xHH> byte fallback, BOS always added with add_special.
 *   "llama":  SentencePiece by score (Gemma 3 style vocabularies).
 * A loaded vocabulary owns copies of everything it needs; the g4_gguf_file may
 * be closed afterwards.
 */
#ifndef G4_TOKENIZER_H
#define G4_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

typedef struct g4_vocab g4_vocab;

/* NULL with err = "PATH: what is wrong" for missing or malformed keys. */
g4_vocab *g4_vocab_load(const g4_gguf_file *f, char *err);
void g4_vocab_free(g4_vocab *v);

int32_t g4_vocab_size(const g4_vocab *v);
int32_t g4_vocab_bos(const g4_vocab *v); /* -1 if none */
int32_t g4_vocab_eos(const g4_vocab *v); /* -1 if none */
bool g4_vocab_is_eog(const g4_vocab *v, int32_t id);
bool g4_vocab_is_control(const g4_vocab *v, int32_t id);
/* exact token text -> id, or -1 */
int32_t g4_vocab_find(const g4_vocab *v, const char *text, size_t len);
/* raw token string (not NUL-terminated), NULL for an id out of range */
const char *g4_vocab_text(const g4_vocab *v, int32_t id, size_t *len);
/* longest piece g4_token_to_piece can produce */
size_t g4_vocab_max_piece(const g4_vocab *v);

/* Encodes len bytes of text. add_special: prepend BOS (and append EOS when
 * the vocabulary asks for it); parse_special: control-token text becomes
 * that token (user-defined tokens are always matched). Returns the number
 * of ids and a malloc'd array in *ids (free it; NULL when 0), or -1 with
 * err set. */
int64_t g4_tokenize(const g4_vocab *v, const char *text, size_t len, bool add_special,
                    bool parse_special, int32_t **ids, char *err);

/* The bytes of one token: NORMAL with U+2581 -> ' ', BYTE -> its raw byte,
 * CONTROL/UNKNOWN only if render_special, USER_DEFINED always, others
 * nothing. Returns the piece length; writes it only when it fits in cap
 * (like snprintf, without a terminator). 0 for an id out of range. */
size_t g4_token_to_piece(const g4_vocab *v, int32_t id, bool render_special, char *buf, size_t cap);

/* Streaming detokenizer: holds back bytes of an incomplete UTF-8 sequence
 * until a later token completes it, so the output only ever splits text at
 * character boundaries. Bytes that cannot start or continue a valid
 * sequence are passed through unchanged as soon as that is certain. */
#define G4_DETOK_HELD 4
typedef struct g4_detok {
    const g4_vocab *vocab;
    bool render_special;
    unsigned char held[G4_DETOK_HELD]; /* start of an incomplete sequence */
    size_t n_held;
} g4_detok;

void g4_detok_init(g4_detok *d, const g4_vocab *v, bool render_special);
/* Appends token id and writes the bytes that became complete to out;
 * returns their count. If the held bytes plus the piece do not fit in cap,
 * nothing is written, the token is not consumed and the return value is the
 * cap needed (> cap); cap >= g4_vocab_max_piece(v) + G4_DETOK_HELD always
 * suffices. */
size_t g4_detok_push(g4_detok *d, int32_t id, char *out, size_t cap);
/* Writes whatever is still held (an incomplete sequence, as raw bytes);
 * cap >= G4_DETOK_HELD suffices. */
size_t g4_detok_flush(g4_detok *d, char *out, size_t cap);

#endif
