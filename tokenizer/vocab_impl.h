/* Inside of g4_vocab, shared by vocab.c, encode.c and decode.c only. */
#ifndef G4_VOCAB_IMPL_H
#define G4_VOCAB_IMPL_H

#include "tokenizer/tokenizer.h"

/* Token attributes as bit flags, as llama.cpp keeps them: the EOG rules add
 * CONTROL to a token of another type. */
enum {
    G4_ATTR_UNKNOWN = 1 << 0,
    G4_ATTR_UNUSED = 1 << 1,
    G4_ATTR_NORMAL = 1 << 2,
    G4_ATTR_CONTROL = 1 << 3,
    G4_ATTR_USER_DEFINED = 1 << 4,
    G4_ATTR_BYTE = 1 << 5,
};

enum g4_vocab_model { G4_MODEL_BPE, G4_MODEL_SPM };

/* One merge of the BPE table, found by the ids of its two halves. */
typedef struct g4_merge {
    int32_t left, right; /* left = -1: empty slot */
    int32_t rank;        /* index in tokenizer.ggml.merges */
    int32_t result;      /* id of left+right, -1 if not a token */
} g4_merge;

/* Trie of the special tokens, for the partition pass. */
typedef struct g4_trie_node {
    int32_t child, sibling; /* node indices, -1 = none */
    int32_t token;          /* token ending here, -1 = none */
    int32_t priority;       /* order in which llama.cpp tries it (longest first) */
    unsigned char byte;
} g4_trie_node;

struct g4_vocab {
    enum g4_vocab_model model;
    int32_t n;
    char *pool;          /* all token texts, back to back */
    size_t *text_off;    /* n + 1 offsets into pool */
    uint8_t *attr;       /* G4_ATTR_* per token */
    uint8_t *eog;        /* 1 if end of generation */
    float *score;        /* SentencePiece scores (0 when absent) */
    size_t max_len;      /* longest token text */

    int32_t bos, eos, unk, pad;
    bool add_bos, add_eos, add_space_prefix;

    int32_t *index;      /* open addressing: text -> id, -1 empty */
    size_t index_mask;

    g4_merge *merges;    /* open addressing on (left, right) */
    size_t merge_mask;

    int32_t byte_token[256]; /* <0xHH> ids, -1 if absent */

    g4_trie_node *trie;  /* node 0 is the root */
    int32_t n_trie;
};

static inline const char *g4_text_of(const g4_vocab *v, int32_t id, size_t *len) {
    *len = v->text_off[id + 1] - v->text_off[id];
    return v->pool + v->text_off[id];
}

/* The merge of ids (left, right), or NULL. */
const g4_merge *g4_merge_find(const g4_vocab *v, int32_t left, int32_t right);

/* Byte count of the UTF-8 sequence that this lead byte announces, as
 * llama.cpp's unicode_len_utf8 (continuation and invalid bytes count 1). */
static inline size_t g4_utf8_len(unsigned char c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

#endif
