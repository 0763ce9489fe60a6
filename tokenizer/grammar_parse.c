/* GBNF text -> rules (grammar_impl.h), as llama.cpp reads it:
 *
 *   name ::= alternative | alternative ...      # comment
 *
 * An alternative is a sequence of "literals" (escapes \n \r \t \" \\ \[ \]
 * \- \^ \xHH \uHHHH \UHHHHHHHH), [character classes], [^negated ones], ".",
 * rule names and ( groups ), each optionally followed by * + ? {m} {m,} or
 * {m,n}. A rule ends at the end of its line, except right after "::=" or
 * "|" and inside parentheses. Groups and repetitions become rules of their
 * own, so the matcher sees only sequences, alternatives and references.
 * Left recursion is refused: the matcher expands rules eagerly and would
 * never stop. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/grammar_impl.h"

typedef struct elemvec {
    g4_gelem *e;
    uint32_t n, cap;
} elemvec;

typedef struct symbol {
    const char *name; /* into the source; NULL for a generated rule */
    size_t len;
    const char *where; /* first reference, for "undefined rule" */
    bool defined;
    uint32_t owner; /* the named rule a generated one belongs to */
} symbol;

typedef struct parser {
    const char *src, *p, *end;
    char *err;
    bool failed;
    symbol *syms;
    elemvec *rules; /* parallel to syms */
    uint32_t n_rules, cap_rules;
    uint32_t current; /* named rule being defined */
    uint32_t *names;  /* open addressing over named rules: id + 1, 0 = empty */
    uint32_t names_mask, n_named;
    g4_gclass *classes;
    uint32_t n_classes, cap_classes;
    g4_grange *ranges;
    uint32_t n_ranges, cap_ranges;
    size_t total; /* elements in all rules */
    int depth;
} parser;

/* Reports the first error only, as "line L, column C: what". */
static bool fail(parser *P, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(parser *P, const char *at, const char *fmt, ...) {
    if (P->failed) return false;
    P->failed = true;
    int line = 1, col = 1;
    for (const char *q = P->src; q < at && q < P->end; q++) {
        if (*q == '\n') line++, col = 1;
        else if (((unsigned char)*q & 0xc0) != 0x80) col++; /* columns count characters */
    }
    char msg[G4_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* a quoted character of the input may be a control one */
        if ((unsigned char)*p < 0x20) *p = '?';
    g4_error(P->err, "grammar", "line %d, column %d: %s", line, col, msg);
    return false;
}

static bool grow(void **p, uint32_t *cap, uint32_t need, size_t size) {
    if (need <= *cap) return true;
    uint32_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool push(parser *P, uint32_t rule, uint32_t type, uint32_t value) {
    elemvec *v = &P->rules[rule];
    if (++P->total > G4_GRAMMAR_MAX_ELEMS)
        return fail(P, P->p, "the grammar expands to more than %d elements (repetitions too large?)", G4_GRAMMAR_MAX_ELEMS);
    if (!grow((void **)&v->e, &v->cap, v->n + 1, sizeof *v->e)) return fail(P, P->p, "out of memory");
    v->e[v->n++] = (g4_gelem){type, value};
    return true;
}

static bool new_rule(parser *P, const char *name, size_t len, uint32_t *id) {
    uint32_t cap = P->cap_rules;
    if (!grow((void **)&P->syms, &P->cap_rules, P->n_rules + 1, sizeof *P->syms)) return fail(P, P->p, "out of memory");
    if (cap != P->cap_rules) { /* rules grows in step with syms */
        void *r = realloc(P->rules, (size_t)P->cap_rules * sizeof *P->rules);
        if (!r) return fail(P, P->p, "out of memory");
        P->rules = r;
    }
    P->syms[P->n_rules] = (symbol){name, len, NULL, name == NULL, P->current};
    P->rules[P->n_rules] = (elemvec){0};
    *id = P->n_rules++;
    return true;
}

static uint32_t name_hash(const char *name, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 16777619u;
    return h;
}

/* The rule called name (created, undefined, on first sight). */
static bool symbol_of(parser *P, const char *name, size_t len, uint32_t *id) {
    uint32_t h = name_hash(name, len);
    for (uint32_t i = h & P->names_mask, k; P->names && (k = P->names[i]) != 0; i = (i + 1) & P->names_mask)
        if (P->syms[k - 1].len == len && !memcmp(P->syms[k - 1].name, name, len)) return *id = k - 1, true;
    if (!P->names || (P->n_named + 1) * 2 > P->names_mask + 1) { /* grow, re-inserting the named rules */
        uint32_t size = P->names ? (P->names_mask + 1) * 2 : 64;
        uint32_t *t = calloc(size, sizeof *t);
        if (!t) return fail(P, name, "out of memory");
        for (uint32_t r = 0; r < P->n_rules; r++) {
            if (!P->syms[r].name) continue;
            uint32_t i = name_hash(P->syms[r].name, P->syms[r].len) & (size - 1);
            while (t[i]) i = (i + 1) & (size - 1);
            t[i] = r + 1;
        }
        free(P->names);
        P->names = t, P->names_mask = size - 1;
    }
    if (!new_rule(P, name, len, id)) return false;
    uint32_t i = h & P->names_mask;
    while (P->names[i]) i = (i + 1) & P->names_mask;
    P->names[i] = *id + 1;
    P->n_named++;
    P->syms[*id].where = name;
    return true;
}

/* Registers a class of code point ranges; ranges come from P->ranges[first..]. */
static bool add_class(parser *P, uint32_t first, bool negated, uint32_t *id) {
    if (!grow((void **)&P->classes, &P->cap_classes, P->n_classes + 1, sizeof *P->classes))
        return fail(P, P->p, "out of memory");
    P->classes[P->n_classes] = (g4_gclass){first, P->n_ranges - first, negated};
    *id = P->n_classes++;
    return true;
}

static bool add_range(parser *P, uint32_t lo, uint32_t hi) {
    if (!grow((void **)&P->ranges, &P->cap_ranges, P->n_ranges + 1, sizeof *P->ranges))
        return fail(P, P->p, "out of memory");
    P->ranges[P->n_ranges++] = (g4_grange){lo, hi};
    return true;
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Blanks and comments; line ends only where a rule may continue. */
static void skip_space(parser *P, bool newline_ok) {
    while (P->p < P->end) {
        char c = *P->p;
        if (c == ' ' || c == '\t') P->p++;
        else if (c == '#')
            while (P->p < P->end && *P->p != '\n' && *P->p != '\r') P->p++;
        else if (newline_ok && (c == '\n' || c == '\r')) P->p++;
        else break;
    }
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
}

/* One code point of a literal or class: an escape or a UTF-8 character. */
static bool parse_char(parser *P, uint32_t *cp) {
    const char *at = P->p;
    if (at >= P->end) return fail(P, at, "unexpected end of grammar");
    unsigned char c = (unsigned char)*at;
    if (c == '\\') {
        if (at + 1 >= P->end) return fail(P, at, "unexpected end of grammar after '\\'");
        char e = at[1];
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                int d = at + 2 + i < P->end ? hex_digit(at[2 + i]) : -1;
                if (d < 0) return fail(P, at, "\\%c needs %d hex digits", e, digits);
                v = v * 16 + (uint32_t)d;
            }
            if (v > 0x10ffff) return fail(P, at, "code point 0x%X is beyond U+10FFFF", (unsigned)v);
            *cp = v;
            P->p = at + 2 + digits;
            return true;
        }
        static const char plain[] = "\\\"[]-^/'";
        if (e == 'n') *cp = '\n';
        else if (e == 'r') *cp = '\r';
        else if (e == 't') *cp = '\t';
        else if (e && strchr(plain, e)) *cp = (uint32_t)e;
        else return fail(P, at, "unknown escape '\\%c'", e);
        P->p = at + 2;
        return true;
    }
    if (c == '\n' || c == '\r') return fail(P, at, "line break inside a literal or class (write \\n)");
    size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!n || at + n > P->end) return fail(P, at, "invalid UTF-8");
    uint32_t v = n == 1 ? c : c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        unsigned char b = (unsigned char)at[i];
        if ((b & 0xc0) != 0x80) return fail(P, at, "invalid UTF-8");
        v = v << 6 | (b & 0x3f);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) || (v >= 0xd800 && v <= 0xdfff))
        return fail(P, at, "invalid UTF-8");
    *cp = v;
    P->p = at + n;
    return true;
}

static bool parse_uint(parser *P, uint32_t *v) {
    const char *at = P->p;
    uint64_t x = 0;
    while (P->p < P->end && *P->p >= '0' && *P->p <= '9') {
        x = x * 10 + (uint64_t)(*P->p++ - '0');
        if (x > G4_GRAMMAR_MAX_REPEAT) return fail(P, at, "repetition count above %d", G4_GRAMMAR_MAX_REPEAT);
    }
    if (P->p == at) return fail(P, at, "expected a number");
    *v = (uint32_t)x;
    return true;
}

/* Elements [start, end of rule) repeated min..max times (max = UINT32_MAX:
 * no limit), written as min copies followed by generated rules
 * R ::= X R | (unbounded) or R_k ::= X R_{k-1} | (bounded). */
static bool repeat(parser *P, uint32_t rule, uint32_t start, uint32_t min, uint32_t max) {
    uint32_t n = P->rules[rule].n - start;
    if (n == 0) return true; /* "" repeated is still "" */
    g4_gelem *x = malloc((size_t)n * sizeof *x + 1);
    if (!x) return fail(P, P->p, "out of memory");
    memcpy(x, P->rules[rule].e + start, (size_t)n * sizeof *x);
    P->rules[rule].n = start;
    P->total -= n;
    bool ok = true;
    for (uint32_t k = 0; ok && k < min; k++)
        for (uint32_t i = 0; ok && i < n; i++) ok = push(P, rule, x[i].type, x[i].value);
    uint32_t prev = UINT32_MAX, r;
    uint32_t optional = max == UINT32_MAX ? 1 : max - min;
    for (uint32_t k = 0; ok && k < optional; k++) {
        ok = new_rule(P, NULL, 0, &r);
        for (uint32_t i = 0; ok && i < n; i++) ok = push(P, r, x[i].type, x[i].value);
        if (ok && max == UINT32_MAX) ok = push(P, r, G4_GE_RULE, r);
        else if (ok && prev != UINT32_MAX) ok = push(P, r, G4_GE_RULE, prev);
        ok = ok && push(P, r, G4_GE_ALT, 0) && push(P, r, G4_GE_END, 0);
        prev = r;
    }
    if (ok && prev != UINT32_MAX) ok = push(P, rule, G4_GE_RULE, prev);
    free(x);
    return ok;
}

static bool parse_alternates(parser *P, uint32_t rule, bool nested);

static bool parse_sequence(parser *P, uint32_t rule, bool nested) {
    uint32_t last = UINT32_MAX; /* first element of the last item */
    while (P->p < P->end && !P->failed) {
        const char *at = P->p;
        char c = *at;
        uint32_t id;
        if (c == '"') {
            last = P->rules[rule].n;
            P->p++;
            while (P->p < P->end && *P->p != '"') {
                uint32_t cp, first = P->n_ranges;
                if (!parse_char(P, &cp) || !add_range(P, cp, cp) || !add_class(P, first, false, &id) ||
                    !push(P, rule, G4_GE_CHARS, id))
                    return false;
            }
            if (P->p >= P->end) return fail(P, at, "unterminated string literal");
            P->p++;
        } else if (c == '[') {
            last = P->rules[rule].n;
            P->p++;
            bool negated = P->p < P->end && *P->p == '^';
            if (negated) P->p++;
            uint32_t first = P->n_ranges;
            while (P->p < P->end && *P->p != ']') {
                uint32_t lo, hi;
                if (!parse_char(P, &lo)) return false;
                hi = lo;
                if (P->p + 1 < P->end && *P->p == '-' && P->p[1] != ']') {
                    const char *dash = P->p++;
                    if (!parse_char(P, &hi)) return false;
                    if (hi < lo) return fail(P, dash, "range end below its start");
                }
                if (!add_range(P, lo, hi)) return false;
            }
            if (P->p >= P->end) return fail(P, at, "unterminated character class");
            P->p++;
            if (!add_class(P, first, negated, &id) || !push(P, rule, G4_GE_CHARS, id)) return false;
        } else if (c == '.') {
            last = P->rules[rule].n;
            P->p++;
            if (!add_class(P, P->n_ranges, true, &id) || !push(P, rule, G4_GE_CHARS, id)) return false;
        } else if (is_name_char(c)) {
            last = P->rules[rule].n;
            while (P->p < P->end && is_name_char(*P->p)) P->p++;
            if (!symbol_of(P, at, (size_t)(P->p - at), &id) || !push(P, rule, G4_GE_RULE, id)) return false;
        } else if (c == '(') {
            last = P->rules[rule].n;
            if (++P->depth > G4_GRAMMAR_MAX_NESTING)
                return fail(P, at, "parentheses nested deeper than %d", G4_GRAMMAR_MAX_NESTING);
            P->p++;
            skip_space(P, true);
            if (!new_rule(P, NULL, 0, &id) || !parse_alternates(P, id, true)) return false;
            if (P->p >= P->end || *P->p != ')') return fail(P, at, "'(' is never closed");
            P->p++;
            P->depth--;
            if (!push(P, id, G4_GE_END, 0) || !push(P, rule, G4_GE_RULE, id)) return false;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last == UINT32_MAX) return fail(P, at, "'%c' follows nothing it could repeat", c);
            uint32_t min = c == '+' ? 1 : 0, max = c == '?' ? 1 : UINT32_MAX;
            P->p++;
            if (c == '{') {
                skip_space(P, nested);
                if (!parse_uint(P, &min)) return false;
                skip_space(P, nested);
                max = min;
                if (P->p < P->end && *P->p == ',') {
                    P->p++;
                    skip_space(P, nested);
                    max = UINT32_MAX;
                    if (P->p < P->end && *P->p != '}' && !parse_uint(P, &max)) return false;
                    skip_space(P, nested);
                }
                if (P->p >= P->end || *P->p != '}') return fail(P, P->p, "expected '}' to end the repetition");
                P->p++;
                if (max < min) return fail(P, at, "repetition {%u,%u} has its maximum below its minimum", min, max);
            }
            if (!repeat(P, rule, last, min, max)) return false;
        } else {
            break;
        }
        skip_space(P, nested);
    }
    return !P->failed;
}

static bool parse_alternates(parser *P, uint32_t rule, bool nested) {
    for (;;) {
        if (!parse_sequence(P, rule, nested)) return false;
        if (P->p >= P->end || *P->p != '|') return true;
        if (!push(P, rule, G4_GE_ALT, 0)) return false;
        P->p++;
        skip_space(P, true);
    }
}

static bool parse_rules(parser *P) {
    skip_space(P, true);
    while (P->p < P->end) {
        const char *at = P->p;
        while (P->p < P->end && is_name_char(*P->p)) P->p++;
        if (P->p == at) return fail(P, at, "expected a rule name, found '%c'", *at);
        uint32_t id;
        if (!symbol_of(P, at, (size_t)(P->p - at), &id)) return false;
        if (P->syms[id].defined) return fail(P, at, "rule '%.*s' is defined twice", (int)(P->p - at), at);
        P->syms[id].defined = true;
        P->current = id;
        skip_space(P, false);
        if (P->end - P->p < 3 || memcmp(P->p, "::=", 3) != 0) return fail(P, P->p, "expected '::=' after the rule name");
        P->p += 3;
        skip_space(P, true);
        if (!parse_alternates(P, id, false) || !push(P, id, G4_GE_END, 0)) return false;
        if (P->p < P->end && *P->p != '\n' && *P->p != '\r') return fail(P, P->p, "unexpected '%c'", *P->p);
        skip_space(P, true);
    }
    for (uint32_t i = 0; i < P->n_rules; i++)
        if (!P->syms[i].defined)
            return fail(P, P->syms[i].where, "undefined rule '%.*s'", (int)P->syms[i].len, P->syms[i].name);
    return true;
}

/* Left recursion: a rule that can reach itself before matching any
 * character (directly, or through rules that may match nothing). */
static bool check_left_recursion(parser *P, const g4_grammar *g) {
    uint32_t n = g->n_rules;
    bool *nullable = calloc(n, 1);
    uint8_t *color = calloc(n, 1); /* 0 unseen, 1 on the current path, 2 done */
    uint32_t *first = malloc(((size_t)n + 1) * sizeof *first);      /* edges of rule r: edge[first[r] ..] */
    uint32_t *edge = malloc(((size_t)g->n_elems + 1) * sizeof *edge); /* at most one per element */
    uint32_t *path = malloc(((size_t)n + 1) * sizeof *path), *next = malloc(((size_t)n + 1) * sizeof *next);
    bool ok = nullable && color && first && edge && path && next;
    if (!ok) fail(P, P->src, "out of memory");
    for (bool changed = ok; changed;) { /* fixpoint: some alternative is only nullable rules */
        changed = false;
        for (uint32_t r = 0; r < n; r++) {
            bool all = true;
            for (uint32_t i = g->rule_start[r]; !nullable[r]; i++) {
                const g4_gelem *e = &g->elems[i];
                if (e->type == G4_GE_END || e->type == G4_GE_ALT) {
                    if (all) nullable[r] = changed = true;
                    if (e->type == G4_GE_END) break;
                    all = true;
                } else if (e->type == G4_GE_CHARS || !nullable[e->value]) {
                    all = false;
                }
            }
        }
    }
    uint32_t n_edges = 0;
    for (uint32_t r = 0; ok && r < n; r++) { /* the rules each alternative may start with */
        first[r] = n_edges;
        bool left = true;
        for (uint32_t i = g->rule_start[r]; g->elems[i].type != G4_GE_END; i++) {
            const g4_gelem *e = &g->elems[i];
            if (e->type == G4_GE_ALT) left = true;
            else if (e->type == G4_GE_CHARS) left = false;
            else if (left) {
                edge[n_edges++] = e->value;
                left = nullable[e->value];
            }
        }
    }
    if (ok) first[n] = n_edges;
    for (uint32_t root = 0; ok && root < n; root++) { /* depth-first, with an explicit path */
        if (color[root]) continue;
        int top = 0;
        path[0] = root, next[0] = first[root], color[root] = 1;
        while (top >= 0 && ok) {
            uint32_t r = path[top];
            if (next[top] == first[r + 1]) {
                color[r] = 2;
                top--;
                continue;
            }
            uint32_t s = edge[next[top]++];
            if (color[s] == 1) {
                uint32_t named = P->syms[s].name ? s : P->syms[s].owner;
                ok = fail(P, P->syms[named].name,
                          "rule '%.*s' is left-recursive (directly, or through a repeated item that can match nothing)",
                          (int)P->syms[named].len, P->syms[named].name);
            } else if (color[s] == 0) {
                color[s] = 1;
                top++;
                path[top] = s, next[top] = first[s];
            }
        }
    }
    free(nullable), free(color), free(first), free(edge), free(path), free(next);
    return ok;
}

g4_grammar *g4_grammar_parse(const char *text, size_t len, const char *root, char *err) {
    parser P = {.src = text, .p = text, .end = text + len, .err = err};
    g4_grammar *g = calloc(1, sizeof *g);
    if (!g) {
        g4_error(err, "grammar", "out of memory");
        return NULL;
    }
    if (!root) root = "root";
    bool ok = parse_rules(&P);
    uint32_t root_id = UINT32_MAX;
    for (uint32_t i = 0; ok && i < P.n_rules; i++)
        if (P.syms[i].name && P.syms[i].len == strlen(root) && !memcmp(P.syms[i].name, root, P.syms[i].len)) root_id = i;
    if (ok && root_id == UINT32_MAX) ok = g4_error(err, "grammar", "no rule named '%s' to start from", root) == 0;
    if (ok) { /* one flat array */
        g->n_rules = P.n_rules;
        g->root = root_id;
        g->n_elems = (uint32_t)P.total;
        g->elems = malloc((P.total + 1) * sizeof *g->elems);
        g->rule_start = malloc(((size_t)P.n_rules + 1) * sizeof *g->rule_start);
        ok = g->elems && g->rule_start;
        for (uint32_t i = 0, at = 0; ok && i < P.n_rules; i++) {
            g->rule_start[i] = at;
            memcpy(g->elems + at, P.rules[i].e, (size_t)P.rules[i].n * sizeof *g->elems);
            at += P.rules[i].n;
        }
        if (!ok) g4_error(err, "grammar", "out of memory");
    }
    ok = ok && check_left_recursion(&P, g);
    for (uint32_t i = 0; i < P.n_rules; i++) free(P.rules[i].e);
    free(P.rules);
    free(P.syms);
    free(P.names);
    g->classes = P.classes;
    g->n_classes = P.n_classes;
    g->ranges = P.ranges;
    if (!ok) {
        g4_grammar_free(g);
        return NULL;
    }
    return g;
}

void g4_grammar_free(g4_grammar *g) {
    if (!g) return;
    free(g->elems);
    free(g->rule_start);
    free(g->classes);
    free(g->ranges);
    free(g);
}
