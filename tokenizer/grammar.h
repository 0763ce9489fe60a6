/* Constrained decoding: a GBNF grammar (the format llama.cpp reads) that
 * decides, step by step, which tokens may come next. The sampler masks the
 * logits of the others to -INFINITY before it draws (sampler.c).
 *
 * Three objects:
 *  - g4_grammar: the parsed, immutable rules of one grammar text;
 *  - g4_grammar_vocab: what the matcher needs of a vocabulary (each token's
 *    bytes, arranged so that tokens sharing a prefix are tested once),
 *    built once per model;
 *  - g4_grammar_state: where one generation stands in the grammar; cloned
 *    for n > 1 and for speculative decoding. A state carries a cache of the
 *    matcher's transitions (a lazily built automaton, grammar_match.c) that
 *    its clones share: states cloned from one another must not be used
 *    from two threads at once; states made by separate
 *    g4_grammar_state_new calls are independent.
 * The grammar and the vocabulary must outlive the states that use them.
 */
#ifndef G4_GRAMMAR_H
#define G4_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct g4_grammar g4_grammar;
typedef struct g4_grammar_vocab g4_grammar_vocab;
typedef struct g4_grammar_state g4_grammar_state;
struct g4_vocab;

/* Parses len bytes of GBNF; root names the start rule (NULL = "root").
 * NULL with err naming the line, column and what is wrong; left recursion
 * is refused, as in llama.cpp. */
g4_grammar *g4_grammar_parse(const char *text, size_t len, const char *root, char *err);
void g4_grammar_free(g4_grammar *g);

/* The vocabulary as the matcher sees it: control tokens match nothing
 * (the grammar constrains text); end-of-generation ids are kept apart and
 * allowed only where the grammar can end. */
g4_grammar_vocab *g4_grammar_vocab_new(const struct g4_vocab *v, char *err);
void g4_grammar_vocab_free(g4_grammar_vocab *gv);

g4_grammar_state *g4_grammar_state_new(const g4_grammar *g, char *err);
g4_grammar_state *g4_grammar_state_clone(const g4_grammar_state *st);
void g4_grammar_state_free(g4_grammar_state *st);

/* Whether one token may come next (cheap: one cached table look-up per
 * byte of the token, so a sampler may draw first, check, and mask the
 * whole vocabulary only when the draw is refused). */
bool g4_grammar_allows(const g4_grammar_state *st, const g4_grammar_vocab *gv, int32_t token);
/* Sets logits[t] = -INFINITY for every token t the grammar forbids next
 * (after an accepted end-of-generation token, every token but those). */
void g4_grammar_mask(const g4_grammar_state *st, const g4_grammar_vocab *gv, float *logits);
/* Advances past token. -1 with err set if the grammar forbids it, or if
 * the grammar is too ambiguous (more than 4096 parse stacks after one
 * character); the state is then unchanged. */
int g4_grammar_accept(g4_grammar_state *st, const g4_grammar_vocab *gv, int32_t token, char *err);
/* An end-of-generation token was accepted, or the grammar has matched a
 * complete sentence and nothing more may follow. */
bool g4_grammar_finished(const g4_grammar_state *st);

/* JSON Schema (draft 2020-12 subset, as OpenAI's structured outputs use it)
 * to GBNF text (malloc'd; free()), whose root rule matches exactly the JSON
 * values the schema accepts. NULL with err naming the unsupported keyword
 * or the malformed part. An empty object schema "{}" gives any JSON value;
 * json_object mode uses g4_json_schema_to_gbnf("{\"type\":\"object\"}"). */
char *g4_json_schema_to_gbnf(const char *schema, size_t len, char *err);

#endif
