/* Inside of the grammar engine, shared by grammar_parse.c, grammar_match.c
 * and grammar_vocab.c (and the tests, which build small vocabularies).
 *
 * A parsed grammar is one flat array of elements. Each rule is a run of
 * alternatives, each alternative a sequence of CHARS / RULE elements ended
 * by ALT (another alternative follows) or END (the rule ends). Repetitions
 * and groups have already been rewritten into extra rules, so matching only
 * ever sees sequences, alternatives and references. */
#ifndef G4_GRAMMAR_IMPL_H
#define G4_GRAMMAR_IMPL_H

#include "tokenizer/grammar.h"

/* Limits that keep hostile grammars and inputs bounded. */
#define G4_GRAMMAR_MAX_NESTING 64      /* parentheses inside one rule */
#define G4_GRAMMAR_MAX_REPEAT 1000     /* m and n of {m,n} */
#define G4_GRAMMAR_MAX_ELEMS (1 << 20) /* elements after expansion */
#define G4_GRAMMAR_MAX_STACKS 4096     /* parse stacks alive after one character */

enum g4_gelem_type { G4_GE_END, G4_GE_ALT, G4_GE_RULE, G4_GE_CHARS };

typedef struct g4_gelem {
    uint32_t type;  /* g4_gelem_type */
    uint32_t value; /* RULE: rule id; CHARS: class id */
} g4_gelem;

/* A set of code points: the union of [lo, hi] ranges, or its complement. */
typedef struct g4_grange { uint32_t lo, hi; } g4_grange;
typedef struct g4_gclass {
    uint32_t first, n; /* ranges[first .. first + n) */
    bool negated;      /* "." is a negated class with no ranges */
} g4_gclass;

struct g4_grammar {
    g4_gelem *elems;
    uint32_t n_elems;
    uint32_t *rule_start; /* index of each rule's first element */
    uint32_t n_rules, root;
    g4_gclass *classes;
    uint32_t n_classes;
    g4_grange *ranges;
};

bool g4_gclass_has(const g4_grammar *g, uint32_t cls, uint32_t cp);
/* Whether some code point in [lo, hi] belongs to the class. */
bool g4_gclass_meets(const g4_grammar *g, uint32_t cls, uint32_t lo, uint32_t hi);

/* The matcher's view of a vocabulary, built from each token's bytes.
 * kind: how a token takes part (below). The tokens of normal kind form a
 * byte trie, laid out in depth-first order so that a whole subtree is a
 * contiguous run of nodes and of tokens. */
enum { G4_GTOK_TEXT, G4_GTOK_NEVER, G4_GTOK_EOG };

typedef struct g4_gnode {
    uint32_t skip;  /* index of the first node after this subtree */
    uint16_t depth; /* bytes from the root (1 for a first byte) */
    uint8_t byte;
} g4_gnode;

struct g4_grammar_vocab {
    uint64_t serial;       /* unique per vocabulary built, names it in caches */
    int32_t n_tokens;
    uint8_t *kind;         /* G4_GTOK_* per token */
    char *pool;            /* every token's bytes back to back */
    size_t *off;           /* n_tokens + 1 offsets into pool */
    g4_gnode *nodes;       /* the trie without its root */
    uint32_t n_nodes;
    uint32_t *node_tok;    /* n_nodes + 1: first position in `order` of the tokens ending at or after node i */
    int32_t *order;        /* text tokens in trie (sorted byte) order */
    int32_t *eog;          /* end-of-generation tokens (the others outside the trie match nothing) */
    int32_t n_eog;
    uint32_t max_depth;
};

/* A vocabulary from explicit pieces: tokens[i] has lens[i] bytes and kind
 * kinds[i] (G4_GTOK_*). g4_grammar_vocab_new uses it with each token's
 * decoded bytes; tests use it with made-up pieces. */
g4_grammar_vocab *g4_grammar_vocab_from_pieces(const char *const *tokens, const size_t *lens, const uint8_t *kinds,
                                               int32_t n, char *err);

#endif
