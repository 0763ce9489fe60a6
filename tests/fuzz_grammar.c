/* libFuzzer target for the GBNF engine. The input is a grammar, then
 * optionally a NUL byte and text to feed it one byte per token: any grammar
 * must parse or be refused with one line, and for a parsed one, at each of
 * the first 16 steps the mask, g4_grammar_allows and g4_grammar_accept must
 * agree on every token of a small vocabulary (single bytes, a few longer
 * pieces and an end-of-generation token). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/grammar_impl.h"

enum { N_LONG = 6, N_TOK = 256 + N_LONG + 1, EOG = N_TOK - 1 };
static const char *const longer[N_LONG] = {"ab", "\"a\"", "\xc3\xa9", "\xe4\xb8", "12", "{\""};

static void check_err(const char *err) {
    if (!memchr(err, 0, G4_ERR_LEN) || strchr(err, '\n') || !*err) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static g4_grammar_vocab *gv;
    char err[G4_ERR_LEN];
    if (!gv) {
        static char bytes[256];
        const char *tok[N_TOK];
        size_t len[N_TOK];
        uint8_t kind[N_TOK];
        for (int i = 0; i < 256; i++) bytes[i] = (char)i, tok[i] = &bytes[i], len[i] = 1, kind[i] = G4_GTOK_TEXT;
        for (int i = 0; i < N_LONG; i++) tok[256 + i] = longer[i], len[256 + i] = strlen(longer[i]), kind[256 + i] = G4_GTOK_TEXT;
        tok[EOG] = "", len[EOG] = 0, kind[EOG] = G4_GTOK_EOG;
        gv = g4_grammar_vocab_from_pieces(tok, len, kind, N_TOK, err);
        if (!gv) __builtin_trap();
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    g4_grammar *g = g4_grammar_parse((const char *)data, glen, NULL, err);
    if (!g) {
        check_err(err);
        return 0;
    }
    g4_grammar_state *st = g4_grammar_state_new(g, err);
    if (!st) check_err(err);
    float logits[N_TOK];
    const uint8_t *text = nul ? nul + 1 : data + size;
    size_t n_text = nul ? size - glen - 1 : 0;
    for (size_t i = 0; st && i <= n_text && i < 16; i++) {
        for (int t = 0; t < N_TOK; t++) logits[t] = 0;
        g4_grammar_mask(st, gv, logits);
        for (int t = 0; t < N_TOK; t++) {
            g4_grammar_state *c = g4_grammar_state_clone(st);
            if (!c) break;
            bool accepted = g4_grammar_accept(c, gv, t, err) == 0;
            if (!accepted) check_err(err);
            /* a refusal for too many stacks is an error, not a rule: the mask may differ only then */
            if (accepted != (logits[t] == 0) && !strstr(err, "parse stacks")) __builtin_trap();
            if (g4_grammar_allows(st, gv, t) != (logits[t] == 0) && !strstr(err, "parse stacks")) __builtin_trap();
            g4_grammar_state_free(c);
        }
        if (i < n_text && g4_grammar_accept(st, gv, text[i], err) != 0) check_err(err);
        (void)g4_grammar_finished(st);
    }
    g4_grammar_state_free(st);
    g4_grammar_free(g);
    return 0;
}
