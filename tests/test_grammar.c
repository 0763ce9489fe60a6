/* The GBNF engine (tokenizer/grammar_*.c): located parse errors, refused
 * left recursion, strings each grammar must and must not match (fed byte
 * by byte, through multi-byte made-up tokens, and as the real Gemma 4
 * vocabulary tokenizes them), end of generation only when complete, UTF-8
 * characters split across tokens, exploding grammars stopped, and the
 * trie-walking mask equal to a token-by-token check on the real
 * vocabulary. Expected answers are written by hand. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tests/harness.h"
#include "tokenizer/grammar_impl.h"
#include "tokenizer/tokenizer.h"

static g4_grammar *parse(const char *text, char *err) { return g4_grammar_parse(text, strlen(text), NULL, err); }

static void test_parse_errors(void) {
    static const struct {
        const char *text, *want; /* want: a piece of the message, with its line and column */
    } bad[] = {
        {"root ::= \"abc", "line 1, column 10: unterminated string literal"},
        {"root ::= [a-z", "line 1, column 10: unterminated character class"},
        {"root ::= (\"a\" | \"b\"", "line 1, column 10: '(' is never closed"},
        {"root ::= \"a\"\nb ::= c", "line 2, column 7: undefined rule 'c'"},
        {"root = \"a\"", "line 1, column 6: expected '::='"},
        {"root ::= * \"a\"", "line 1, column 10: '*' follows nothing it could repeat"},
        {"root ::= \"a\"{3,1}", "line 1, column 13: repetition {3,1} has its maximum below"},
        {"root ::= \"a\"{2", "line 1, column 15: expected '}'"},
        {"root ::= \"\\q\"", "line 1, column 11: unknown escape '\\q'"},
        {"root ::= \"\\x4\"", "line 1, column 11: \\x needs 2 hex digits"},
        {"root ::= [z-a]", "line 1, column 12: range end below its start"},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice"},
        {"root ::= \"a\" )", "line 1, column 14: unexpected ')'"},
        {"root ::= \"\xff\"", "line 1, column 11: invalid UTF-8"},
        {"root ::= \"a\"{1001}", "line 1, column 14: repetition count above 1000"},
        {"# only a comment\n  ::= \"a\"", "line 2, column 3: expected a rule name"},
        {"root ::= \"\\U00110000\"", "line 1, column 11: code point 0x110000 is beyond U+10FFFF"},
        {"a ::= \"x\"", "no rule named 'root'"},
        {"root ::= root \"a\" | \"b\"", "rule 'root' is left-recursive"},
        {"root ::= a\na ::= b \"x\"\nb ::= a | \"y\"", "is left-recursive"},
        {"root ::= e root \"x\" | \"y\"\ne ::= \"z\" |", "rule 'root' is left-recursive"},
        {"root ::= (\"a\"?)*", "rule 'root' is left-recursive"},
        {"root ::= \"a\"{1000}{1000}{1000}", "expands to more than"},
    };
    char err[G4_ERR_LEN];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcpy(err, "(none)");
        g4_grammar *g = parse(bad[i].text, err);
        CHECK(!g && strstr(err, bad[i].want) && !strchr(err, '\n'), "grammar %zu (%s): got \"%s\", want \"%s\"", i,
              bad[i].text, err, bad[i].want);
        g4_grammar_free(g);
    }
    /* nesting is capped, not recursed into without bound */
    char deep[400] = "root ::= ";
    for (int i = 0; i < 100; i++) strcat(deep, "(");
    g4_grammar *g = parse(deep, err);
    CHECK(!g && strstr(err, "nested deeper than 64"), "100 open parentheses: %s", err);
    g4_grammar_free(g);
}

/* A vocabulary of the 256 single bytes (ids 0..255), a few longer pieces,
 * one end-of-generation token and one control token. */
enum { EOG_ID = 256 + 12, CTRL_ID = EOG_ID + 1, N_SMALL = CTRL_ID + 1 };
static const char *const longer[12] = {"ab", "abc", "true", "fal", "se", "\"na", "me\":", "12", "3.5", "\xc3\xa9t", "\xe4\xb8", "\xad\xe6\x96\x87"};

static g4_grammar_vocab *small_vocab(void) {
    const char *tok[N_SMALL];
    size_t len[N_SMALL];
    uint8_t kind[N_SMALL];
    static char bytes[256];
    for (int i = 0; i < 256; i++) bytes[i] = (char)i, tok[i] = &bytes[i], len[i] = 1, kind[i] = G4_GTOK_TEXT;
    for (int i = 0; i < 12; i++) tok[256 + i] = longer[i], len[256 + i] = strlen(longer[i]), kind[256 + i] = G4_GTOK_TEXT;
    tok[EOG_ID] = "<eos>", len[EOG_ID] = 5, kind[EOG_ID] = G4_GTOK_EOG;
    tok[CTRL_ID] = "<ctrl>", len[CTRL_ID] = 6, kind[CTRL_ID] = G4_GTOK_NEVER;
    char err[G4_ERR_LEN];
    g4_grammar_vocab *gv = g4_grammar_vocab_from_pieces(tok, len, kind, N_SMALL, err);
    CHECK(gv != NULL, "small vocabulary: %s", err);
    return gv;
}

/* Feeds n token ids to a clone of base (clones share the matcher's cache,
 * so one grammar's strings exercise it together); 1 if all were accepted
 * and the grammar may end then. */
static int feed(const g4_grammar_state *base, const g4_grammar_vocab *gv, const int32_t *ids, size_t n, int32_t eog) {
    char err[G4_ERR_LEN];
    g4_grammar_state *st = g4_grammar_state_clone(base);
    if (!st) return -1;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        bool allowed = g4_grammar_allows(st, gv, ids[i]);
        ok = g4_grammar_accept(st, gv, ids[i], err) == 0;
        if (allowed != ok) ok = -2; /* allows and accept disagree */
    }
    if (ok == 1) ok = g4_grammar_allows(st, gv, eog);
    g4_grammar_state_free(st);
    return ok;
}

/* The string byte by byte, and greedily with the longer pieces too. */
static int feed_small(const g4_grammar_state *g, const g4_grammar_vocab *gv, const char *s, bool greedy) {
    size_t n = strlen(s), k = 0;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < n;) {
        int32_t best = (unsigned char)s[i];
        size_t best_len = 1;
        for (int j = 0; greedy && j < 12; j++) {
            size_t l = strlen(longer[j]);
            if (l > best_len && i + l <= n && !memcmp(s + i, longer[j], l)) best = 256 + j, best_len = l;
        }
        ids[k++] = best;
        i += best_len;
    }
    int r = feed(g, gv, ids, k, EOG_ID);
    free(ids);
    return r;
}

typedef struct acceptance_case {
    const char *grammar;
    const char *yes[8], *no[8];
} acceptance_case;

static const acceptance_case cases[] = {
    {"root ::= \"a\" | \"b\" \"c\"*", {"a", "b", "bccc", NULL}, {"", "ab", "c", "bcb", NULL}},
    {"root ::= [0-9]{2,4} (\".\" [0-9]+)?  # a number\n", {"12", "1234", "12.5", "999.000", NULL},
     {"1", "12345", "12.", ".5", "1a", NULL}},
    {"root ::= [^a-c\\n]+", {"xyz", "d", "\xc3\xa9t\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87", NULL}, {"a", "xa", "x\ny", "", NULL}},
    {"root ::= \"x\"{3} | \"y\"{0,2} \"z\" | \"w\"{2,}", {"xxx", "z", "yyz", "ww", "wwwww", NULL},
     {"xx", "xxxx", "yyyz", "w", NULL}},
    {"root ::= \"\\u00e9\\U0001F600\" . [\\x41-\\x43]", {"\xc3\xa9\xf0\x9f\x98\x80qA", "\xc3\xa9\xf0\x9f\x98\x80\xe4\xb8\xad" "C", NULL},
     {"\xc3\xa9\xf0\x9f\x98\x80qD", "e\xf0\x9f\x98\x80qA", NULL}},
    {"root ::= obj\nobj ::= \"{\" ws (kv (\",\" ws kv)*)? \"}\"\nkv ::= str ws \":\" ws (str | obj | \"true\" | \"false\") ws\n"
     "str ::= \"\\\"\" [a-z]* \"\\\"\"\nws ::= [ \\t\\n]*",
     {"{}", "{\"name\":true}", "{ \"a\" : {\"b\": \"c\"} , \"d\":false}", "{\"x\":{\"y\":{\"z\":{}}}}", NULL},
     {"{", "{\"a\"}", "{\"a\":tru}", "{\"A\":true}", "{} ", "{\"a\":true,}", NULL}},
    {"root ::= (\n  \"ab\" |\n  \"abc\" \"d\"?\n)\n", {"ab", "abc", "abcd", NULL}, {"a", "abd", "abcdd", NULL}},
    {"root ::= \"a\" \"\"* \"b\"{0,2} \"\"", {"a", "ab", "abb", NULL}, {"abbb", "b", NULL}},
};

static void test_acceptance(const g4_grammar_vocab *gv, const g4_vocab *real, const g4_grammar_vocab *rgv) {
    char err[G4_ERR_LEN];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        g4_grammar *gram = parse(cases[c].grammar, err);
        g4_grammar_state *g = gram ? g4_grammar_state_new(gram, err) : NULL;
        CHECK(g != NULL, "case %zu parses: %s", c, err);
        if (!g) {
            g4_grammar_free(gram);
            continue;
        }
        for (int i = 0; i < 8 && cases[c].yes[i]; i++) {
            const char *s = cases[c].yes[i];
            CHECK(feed_small(g, gv, s, false) == 1, "case %zu must match \"%s\" byte by byte", c, s);
            CHECK(feed_small(g, gv, s, true) == 1, "case %zu must match \"%s\" with longer tokens", c, s);
            if (real && *s) {
                int32_t *ids = NULL;
                int64_t n = g4_tokenize(real, s, strlen(s), false, false, &ids, err);
                CHECK(n > 0 && feed(g, rgv, ids, (size_t)n, g4_vocab_eos(real)) == 1,
                      "case %zu must match \"%s\" as the real vocabulary tokenizes it (%lld tokens)", c, s, (long long)n);
                free(ids);
            }
        }
        for (int i = 0; i < 8 && cases[c].no[i]; i++) {
            const char *s = cases[c].no[i];
            CHECK(feed_small(g, gv, s, false) == 0, "case %zu must not match \"%s\" byte by byte", c, s);
            CHECK(feed_small(g, gv, s, true) == 0, "case %zu must not match \"%s\" with longer tokens", c, s);
            if (real && *s) {
                int32_t *ids = NULL;
                int64_t n = g4_tokenize(real, s, strlen(s), false, false, &ids, err);
                CHECK(n > 0 && feed(g, rgv, ids, (size_t)n, g4_vocab_eos(real)) == 0,
                      "case %zu must not match \"%s\" with real tokens", c, s);
                free(ids);
            }
        }
        g4_grammar_state_free(g);
        g4_grammar_free(gram);
    }
}

/* End of generation only where the grammar can end; control tokens never. */
static void test_eog(const g4_grammar_vocab *gv) {
    char err[G4_ERR_LEN];
    g4_grammar *g = parse("root ::= \"ab\" \"c\"?", err);
    g4_grammar_state *st = g ? g4_grammar_state_new(g, err) : NULL;
    CHECK(st != NULL, "state: %s", err);
    if (!st) return g4_grammar_free(g);
    float logits[N_SMALL];
    CHECK(!g4_grammar_allows(st, gv, EOG_ID) && !g4_grammar_finished(st), "no end before anything");
    CHECK(g4_grammar_accept(st, gv, EOG_ID, err) < 0 && strstr(err, "before the grammar is complete"), "EOG refused: %s", err);
    CHECK(!g4_grammar_allows(st, gv, CTRL_ID) && g4_grammar_accept(st, gv, CTRL_ID, err) < 0, "control token refused");
    CHECK(g4_grammar_accept(st, gv, 'a', err) == 0, "a");
    for (int i = 0; i < N_SMALL; i++) logits[i] = 1;
    g4_grammar_mask(st, gv, logits);
    CHECK(isinf(logits[EOG_ID]) && isinf(logits[CTRL_ID]) && logits['b'] == 1 && isinf(logits['a']), "after a: only b");
    CHECK(g4_grammar_accept(st, gv, 'b', err) == 0, "b");
    for (int i = 0; i < N_SMALL; i++) logits[i] = 1;
    g4_grammar_mask(st, gv, logits);
    CHECK(logits[EOG_ID] == 1 && logits['c'] == 1 && isinf(logits['b']) && isinf(logits[CTRL_ID]), "after ab: c or the end");
    CHECK(!g4_grammar_finished(st), "ab: may still take c");
    g4_grammar_state *copy = g4_grammar_state_clone(st);
    CHECK(copy && g4_grammar_accept(copy, gv, 'c', err) == 0 && g4_grammar_finished(copy), "abc: finished");
    CHECK(g4_grammar_allows(st, gv, 'c'), "the clone moved on alone");
    CHECK(g4_grammar_accept(st, gv, EOG_ID, err) == 0 && g4_grammar_finished(st), "EOG after ab ends it");
    CHECK(!g4_grammar_allows(st, gv, 'c') && g4_grammar_accept(st, gv, 'c', err) < 0, "nothing after the end");
    g4_grammar_state_free(copy);
    g4_grammar_state_free(st);
    g4_grammar_free(g);
}

/* Characters split across tokens, checked against what each byte allows. */
static void test_partial_utf8(const g4_grammar_vocab *gv) {
    char err[G4_ERR_LEN];
    g4_grammar *g = parse("root ::= [\\u00e0-\\u00ff] [\\u4e00-\\u9fff]* \"!\"", err);
    g4_grammar_state *st = g ? g4_grammar_state_new(g, err) : NULL;
    CHECK(st != NULL, "state: %s", err);
    if (!st) return g4_grammar_free(g);
    /* U+00E0..U+00FF are C3 A0..C3 BF: only the lead C3 may start */
    CHECK(g4_grammar_allows(st, gv, 0xc3) && !g4_grammar_allows(st, gv, 0xc2) && !g4_grammar_allows(st, gv, 0xa9) &&
              !g4_grammar_allows(st, gv, 'a'),
          "first byte: C3 only");
    CHECK(!g4_grammar_allows(st, gv, 256 + 9), "e-acute then t: t is neither CJK nor !");
    CHECK(g4_grammar_accept(st, gv, 0xc3, err) == 0, "C3 accepted");
    CHECK(g4_grammar_allows(st, gv, 0xa9) && g4_grammar_allows(st, gv, 0xbf) && !g4_grammar_allows(st, gv, 0x9f) &&
              !g4_grammar_allows(st, gv, 'x') && !g4_grammar_allows(st, gv, EOG_ID),
          "after C3: A0..BF continue it, nothing else");
    CHECK(g4_grammar_accept(st, gv, 0xa9, err) == 0, "A9 completes U+00E9");
    /* U+4E2D = E4 B8 AD arrives as "E4 B8" then "AD E6 96 87" (U+6587) */
    CHECK(g4_grammar_allows(st, gv, 256 + 10) && !g4_grammar_allows(st, gv, 0xc3) && g4_grammar_allows(st, gv, '!'),
          "a CJK lead pair or the end mark");
    CHECK(g4_grammar_accept(st, gv, 256 + 10, err) == 0 && g4_grammar_accept(st, gv, 256 + 11, err) == 0, "split CJK: %s", err);
    CHECK(!g4_grammar_allows(st, gv, EOG_ID) && g4_grammar_accept(st, gv, '!', err) == 0 && g4_grammar_allows(st, gv, EOG_ID),
          "then ! and the end");
    g4_grammar_state_free(st);
    g4_grammar_free(g);
    /* "\xc3\xa9t" ends in t, which the first grammar never allows after e-acute (CJK or !): */
    g = parse("root ::= \"\\u00e9\" [a-z]", err);
    st = g ? g4_grammar_state_new(g, err) : NULL;
    CHECK(st && g4_grammar_allows(st, gv, 256 + 9) && !g4_grammar_allows(st, gv, 0xe4), "e-acute t in one token");
    g4_grammar_state_free(st);
    g4_grammar_free(g);
}

/* r ::= "a" r "b" | "a" r "c" | "" doubles its stacks with every a. */
static void test_explosion(const g4_grammar_vocab *gv) {
    char err[G4_ERR_LEN];
    g4_grammar *g = parse("root ::= r\nr ::= \"a\" r \"b\" | \"a\" r \"c\" | \"\"", err);
    g4_grammar_state *st = g ? g4_grammar_state_new(g, err) : NULL;
    CHECK(st != NULL, "state: %s", err);
    int n = 0;
    while (st && n < 40 && g4_grammar_accept(st, gv, 'a', err) == 0) n++;
    CHECK(n >= 10 && n < 14 && strstr(err, "parse stacks") && strstr(err, "too ambiguous"),
          "stopped after %d a's with: %s", n, err);
    g4_grammar_state_free(st);
    g4_grammar_free(g);
}

/* 20000 distinct positions: the matcher's cache (16384 states) starts
 * afresh from the current state on the way, and nothing changes. */
static void test_restart(const g4_grammar_vocab *gv) {
    char err[G4_ERR_LEN];
    g4_grammar *g = parse("root ::= (\"a\"{1000}){20} \"b\"", err);
    g4_grammar_state *st = g ? g4_grammar_state_new(g, err) : NULL;
    CHECK(st != NULL, "state: %s", err);
    int n = 0;
    while (st && n < 20000 && g4_grammar_accept(st, gv, 'a', err) == 0) n++;
    CHECK(n == 20000, "accepted %d of 20000 a's: %s", n, err);
    CHECK(st && !g4_grammar_allows(st, gv, 'a') && !g4_grammar_allows(st, gv, EOG_ID) && g4_grammar_allows(st, gv, 'b'),
          "after 20000 a's: b only");
    CHECK(st && g4_grammar_accept(st, gv, 'b', err) == 0 && g4_grammar_finished(st), "then b ends it");
    g4_grammar_state_free(st);
    g4_grammar_free(g);
}

/* The trie walk against g4_grammar_allows for every token of the real
 * vocabulary, at several points of a JSON text. */
static void test_mask_real(const g4_grammar_vocab *rgv, const g4_vocab *real) {
    char err[G4_ERR_LEN];
    const char *json =
        "root ::= value\nvalue ::= obj | arr | str | num | \"true\" | \"false\" | \"null\"\n"
        "obj ::= \"{\" ws (str ws \":\" ws value ws (\",\" ws str ws \":\" ws value ws)*)? \"}\"\n"
        "arr ::= \"[\" ws (value ws (\",\" ws value ws)*)? \"]\"\n"
        "str ::= \"\\\"\" ([^\"\\\\\\x00-\\x1f] | \"\\\\\" [\"\\\\/bfnrt])* \"\\\"\"\n"
        "num ::= \"-\"? [0-9]+ (\".\" [0-9]+)?\nws ::= [ \\t\\n]*";
    g4_grammar *g = parse(json, err);
    CHECK(g != NULL, "json grammar: %s", err);
    if (!g) return;
    static const char *const prefixes[] = {"", "{\"ke", "[1, -12.", "{\"a\": [tr", "\"\xe4\xb8\xad"};
    int32_t n_vocab = g4_vocab_size(real);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
        g4_grammar_state *st = g4_grammar_state_new(g, err);
        int32_t *ids = NULL;
        int64_t n = *prefixes[p] ? g4_tokenize(real, prefixes[p], strlen(prefixes[p]), false, false, &ids, err) : 0;
        for (int64_t i = 0; i < n; i++) g4_grammar_accept(st, rgv, ids[i], err);
        free(ids);
        for (int32_t t = 0; t < n_vocab; t++) logits[t] = 0;
        g4_grammar_mask(st, rgv, logits);
        int32_t mismatch = -1, allowed = 0, refused_accepted = -1;
        for (int32_t t = 0; t < n_vocab; t++) {
            bool mask_ok = logits[t] == 0;
            allowed += mask_ok;
            if (mask_ok != g4_grammar_allows(st, rgv, t) && mismatch < 0) mismatch = t;
            if (t % 97 == 0) { /* and an independent path: accept on a clone */
                g4_grammar_state *c = g4_grammar_state_clone(st);
                if ((g4_grammar_accept(c, rgv, t, err) == 0) != mask_ok && refused_accepted < 0) refused_accepted = t;
                g4_grammar_state_free(c);
            }
        }
        CHECK(mismatch < 0 && refused_accepted < 0, "prefix \"%s\": mask and allows differ at token %d, accept at %d",
              prefixes[p], mismatch, refused_accepted);
        CHECK(allowed > 0 && allowed < n_vocab, "prefix \"%s\": %d tokens allowed", prefixes[p], allowed);
        if (p == 0) { /* at the start: a value begins; hand-checked tokens */
            int32_t brace = g4_vocab_find(real, "{", 1), letter = g4_vocab_find(real, "x", 1);
            CHECK(brace >= 0 && logits[brace] == 0 && letter >= 0 && isinf(logits[letter]), "'{' allowed, 'x' not at the start");
            CHECK(isinf(logits[g4_vocab_eos(real)]), "no end of generation at the start");
        }
        g4_grammar_state_free(st);
    }
    free(logits);
    g4_grammar_free(g);
}

int main(void) {
    char path[4096], err[G4_ERR_LEN];
    test_parse_errors();
    g4_grammar_vocab *gv = small_vocab();
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-gemma-4.gguf", test_fixtures_dir());
    g4_gguf_file *f = g4_gguf_open(path, err);
    g4_vocab *real = f ? g4_vocab_load(f, err) : NULL;
    g4_gguf_close(f);
    g4_grammar_vocab *rgv = real ? g4_grammar_vocab_new(real, err) : NULL;
    if (real) CHECK(rgv != NULL, "grammar vocabulary of the real one: %s", err);
    else SKIP("real vocabulary", "%s (run tests/fixtures.sh)", err);
    if (gv) {
        test_acceptance(gv, rgv ? real : NULL, rgv);
        test_eog(gv);
        test_partial_utf8(gv);
        test_explosion(gv);
        test_restart(gv);
    }
    if (rgv) test_mask_real(rgv, real);
    g4_grammar_vocab_free(rgv);
    g4_vocab_free(real);
    g4_grammar_vocab_free(gv);
    return test_summary("test_grammar");
}
