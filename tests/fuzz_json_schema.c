/* libFuzzer target for the JSON Schema converter: any input must convert
 * or be refused with one line, and what it converts to must be a grammar
 * the GBNF parser accepts (short of its size limit) and can start. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[G4_ERR_LEN];
    char *text = g4_json_schema_to_gbnf((const char *)data, size, err);
    if (!text) {
        if (!memchr(err, 0, sizeof err) || strchr(err, '\n') || !*err) __builtin_trap();
        return 0;
    }
    g4_grammar *g = g4_grammar_parse(text, strlen(text), NULL, err);
    if (!g && !strstr(err, "expands to more than")) __builtin_trap(); /* the converter wrote bad GBNF */
    g4_grammar_state *st = g ? g4_grammar_state_new(g, err) : NULL;
    if (g && !st && !strstr(err, "parse stacks")) __builtin_trap();
    g4_grammar_state_free(st);
    g4_grammar_free(g);
    free(text);
    return 0;
}
