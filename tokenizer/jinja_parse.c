/* Jinja source -> syntax tree. The lexer applies whitespace control as
 * Jinja's own lexer does with trim_blocks and lstrip_blocks (Hugging Face's
 * settings); the parser follows Jinja's operator precedence:
 *   a if c else b < or < and < not < comparisons / in < + - < ~ < * / // %
 *   < ** < unary - + < primary with .attr [sub] (call) | filter  is test
 * Node layouts (jnode.kids):
 *   LIST: items; DICT: k0 v0 k1 v1 ...; ATTR: obj (name); INDEX: obj index;
 *   SLICE: obj start stop step (any may be NULL); CALL: callee args...;
 *   FILTER / TEST: operand args... (name, kw[i] names keyword argument i);
 *   COND: then cond else(NULL); IF: cond body cond body ... [NULL body];
 *   FOR: iter filter(NULL) body else(NULL), targets in names; SET: target
 *   value; SET_BLOCK: target body; MACRO: body defaults... (kw: params);
 *   CALL_BLOCK: call body (names: the caller's params). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

typedef enum ttype {
    TK_EOF,
    TK_TEXT,
    TK_VAR_BEGIN,
    TK_VAR_END,
    TK_BLOCK_BEGIN,
    TK_BLOCK_END,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP,
} ttype;

typedef struct token {
    ttype type;
    int line;
    const char *s; /* NAME / OP text, STRING / TEXT value (arena, NUL-terminated) */
    size_t len;
    int64_t i;
    double f;
} token;

typedef struct parser {
    jarena *a;
    token *toks;
    size_t n, cap, at;
    int depth;
} parser;

/* ---- lexer ------------------------------------------------------------ */

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static void push(parser *p, token t) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        token *g = realloc(p->toks, cap * sizeof *g);
        if (!g) g4_ja_error(p->a, t.line, "out of memory lexing the template");
        p->toks = g;
        p->cap = cap;
    }
    p->toks[p->n++] = t;
}

/* Jinja reads the source split into lines and joined with "\n": every line
 * break Python's splitlines knows becomes "\n", and one trailing newline is
 * dropped (keep_trailing_newline off). */
static char *normalize_newlines(jarena *a, const char *src, size_t len, size_t *out_len) {
    char *o = g4_ja_alloc(a, len + 1);
    size_t n = 0;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)src[k];
        if (c == '\r') {
            if (k + 1 < len && src[k + 1] == '\n') k++;
            o[n++] = '\n';
        } else if (c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) {
            o[n++] = '\n';
        } else if (c == 0xc2 && k + 1 < len && (unsigned char)src[k + 1] == 0x85) {
            o[n++] = '\n';
            k++;
        } else if (c == 0xe2 && k + 2 < len && (unsigned char)src[k + 1] == 0x80 &&
                   ((unsigned char)src[k + 2] == 0xa8 || (unsigned char)src[k + 2] == 0xa9)) {
            o[n++] = '\n';
            k += 2;
        } else {
            o[n++] = (char)c;
        }
    }
    if (n && o[n - 1] == '\n') n--;
    o[n] = '\0';
    *out_len = n;
    return o;
}

typedef struct lexer {
    parser *p;
    const char *s;
    size_t len, pos;
    int line;
} lexer;

static void advance(lexer *L, size_t to) {
    for (; L->pos < to; L->pos++)
        if (L->s[L->pos] == '\n') L->line++;
}

static void add_text(lexer *L, size_t from, size_t to, int line) {
    if (to <= from) return;
    token t = {.type = TK_TEXT, .line = line, .len = to - from};
    t.s = g4_ja_strdup(L->p->a, L->s + from, to - from);
    push(L->p, t);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A quoted string literal at L->pos, with Python's backslash escapes. */
static token lex_string(lexer *L) {
    const char q = L->s[L->pos];
    const int line = L->line;
    size_t k = L->pos + 1;
    while (k < L->len && L->s[k] != q) k += L->s[k] == '\\' && k + 1 < L->len ? 2 : 1;
    if (k >= L->len) g4_ja_error(L->p->a, line, "unterminated string literal");
    char *o = g4_ja_alloc(L->p->a, k - L->pos + 4);
    size_t n = 0;
    for (size_t j = L->pos + 1; j < k; j++) {
        char c = L->s[j];
        if (c != '\\') {
            o[n++] = c;
            continue;
        }
        char e = L->s[++j];
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t cp = 0;
            for (int d = 1; d <= digits; d++) {
                int h = j + (size_t)d < k ? hexval(L->s[j + (size_t)d]) : -1;
                if (h < 0) g4_ja_error(L->p->a, line, "bad \\%c escape in a string literal", e);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
                g4_ja_error(L->p->a, line, "escape \\%c names no Unicode character", e);
            n += put_utf8(o + n, cp);
            j += (size_t)digits;
            continue;
        }
        const char *from = "nrtbfva0\\'\"\n", *to = "\n\r\t\b\f\v\a\0\\'\"";
        const char *at = strchr(from, e);
        if (at && *at && at - from < 11) {
            o[n++] = to[at - from];
        } else if (e == '\n') {
            /* a backslash-newline continues the line */
        } else {
            o[n++] = '\\';
            o[n++] = e;
        }
    }
    o[n] = '\0';
    advance(L, k + 1);
    return (token){.type = TK_STRING, .line = line, .s = o, .len = n};
}

static token lex_number(lexer *L) {
    const int line = L->line;
    size_t k = L->pos;
    bool is_float = false;
    while (k < L->len && ((L->s[k] >= '0' && L->s[k] <= '9') || L->s[k] == '_')) k++;
    if (k + 1 < L->len && L->s[k] == '.' && L->s[k + 1] >= '0' && L->s[k + 1] <= '9') {
        is_float = true;
        for (k++; k < L->len && ((L->s[k] >= '0' && L->s[k] <= '9') || L->s[k] == '_');) k++;
    }
    if (k < L->len && (L->s[k] == 'e' || L->s[k] == 'E')) {
        size_t e = k + 1;
        if (e < L->len && (L->s[e] == '+' || L->s[e] == '-')) e++;
        if (e < L->len && L->s[e] >= '0' && L->s[e] <= '9') {
            is_float = true;
            for (k = e; k < L->len && L->s[k] >= '0' && L->s[k] <= '9';) k++;
        }
    }
    char buf[64];
    size_t n = 0;
    for (size_t j = L->pos; j < k; j++)
        if (L->s[j] != '_') {
            if (n + 1 >= sizeof buf) g4_ja_error(L->p->a, line, "number literal too long");
            buf[n++] = L->s[j];
        }
    buf[n] = '\0';
    advance(L, k);
    token t = {.type = is_float ? TK_FLOAT : TK_INT, .line = line};
    if (is_float) {
        t.f = strtod(buf, NULL);
    } else {
        char *end;
        unsigned long long v = strtoull(buf, &end, 10);
        (void)end;
        if (n > 19 || v > INT64_MAX) g4_ja_error(L->p->a, line, "integer literal %s is too large", buf);
        t.i = (int64_t)v;
    }
    return t;
}

/* The tokens of one tag's inside, up to its end ("}}" or "%}", with an
 * optional "-" or "+" in front); returns the end's whitespace sign. */
static char lex_tag(lexer *L, const char *end) {
    static const char *const ops[] = {"**", "//", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%",
                                      "~",  "|",  ".",  ",",  ":",  "(",  ")", "[", "]", "{", "}", "="};
    int balance = 0;
    const int start_line = L->line;
    for (;;) {
        while (L->pos < L->len && is_ws(L->s[L->pos])) advance(L, L->pos + 1);
        if (L->pos >= L->len) g4_ja_error(L->p->a, start_line, "tag opened here is never closed (missing '%s')", end);
        const char *c = L->s + L->pos;
        const size_t left = L->len - L->pos;
        if (balance == 0) {
            for (int sign = 0; sign < 3; sign++) {
                size_t skip = sign ? 1 : 0;
                if (sign && *c != (sign == 1 ? '-' : '+')) continue;
                if (left >= skip + 2 && !memcmp(c + skip, end, 2)) {
                    advance(L, L->pos + skip + 2);
                    return sign == 1 ? '-' : sign == 2 ? '+' : 0;
                }
            }
        }
        if (*c == '\'' || *c == '"') {
            push(L->p, lex_string(L));
        } else if (*c >= '0' && *c <= '9') {
            push(L->p, lex_number(L));
        } else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_') {
            size_t k = L->pos;
            while (k < L->len && ((L->s[k] >= 'a' && L->s[k] <= 'z') || (L->s[k] >= 'A' && L->s[k] <= 'Z') ||
                                  (L->s[k] >= '0' && L->s[k] <= '9') || L->s[k] == '_'))
                k++;
            token t = {.type = TK_NAME, .line = L->line, .len = k - L->pos};
            t.s = g4_ja_strdup(L->p->a, c, k - L->pos);
            push(L->p, t);
            advance(L, k);
        } else {
            size_t o = 0;
            while (o < sizeof ops / sizeof ops[0] && strncmp(c, ops[o], strlen(ops[o]))) o++;
            if (o == sizeof ops / sizeof ops[0]) g4_ja_error(L->p->a, L->line, "unexpected character '%c'", *c);
            if (*c == '(' || *c == '[' || *c == '{') balance++;
            if ((*c == ')' || *c == ']' || *c == '}') && balance > 0) balance--;
            push(L->p, (token){.type = TK_OP, .line = L->line, .s = ops[o], .len = strlen(ops[o])});
            advance(L, L->pos + strlen(ops[o]));
        }
    }
}

/* Whether "WORD %}" (blanks around WORD, "-" or "+" before "%}") starts at
 * at; returns the offset after "%}" and its sign, or 0. */
static size_t match_tag(const lexer *L, size_t at, const char *word, char *sign) {
    const size_t n = strlen(word);
    while (at < L->len && is_ws(L->s[at])) at++;
    if (L->len - at < n || memcmp(L->s + at, word, n)) return 0;
    at += n;
    while (at < L->len && is_ws(L->s[at])) at++;
    *sign = at < L->len && (L->s[at] == '-' || L->s[at] == '+') ? L->s[at] : 0;
    at += *sign != 0;
    return L->len - at >= 2 && L->s[at] == '%' && L->s[at + 1] == '}' ? at + 2 : 0;
}

/* {% raw %}...{% endraw %} at L->pos (just after "{%" and its sign): the
 * text between, as is. false when the tag is not raw. */
static bool lex_raw(lexer *L, char *end_sign) {
    char sign;
    size_t from = match_tag(L, L->pos, "raw", &sign);
    if (!from) return false;
    const int line = L->line;
    if (sign == '-')
        while (from < L->len && is_ws(L->s[from])) from++;
    for (size_t k = from; k + 1 < L->len; k++) {
        if (L->s[k] != '{' || L->s[k + 1] != '%') continue;
        char open_sign = k + 2 < L->len ? L->s[k + 2] : 0, close_sign;
        size_t end = match_tag(L, k + 2 + (open_sign == '-' || open_sign == '+'), "endraw", &close_sign);
        if (!end) continue;
        size_t to = k;
        if (open_sign == '-')
            while (to > from && is_ws(L->s[to - 1])) to--;
        advance(L, from);
        add_text(L, from, to, L->line);
        advance(L, end);
        *end_sign = close_sign;
        return true;
    }
    g4_ja_error(L->p->a, line, "raw block opened here is never closed (missing '{%% endraw %%}')");
}

static void lex(parser *p, const char *src, size_t len) {
    lexer L = {.p = p, .line = 1};
    L.s = normalize_newlines(p->a, src, len, &L.len);
    while (L.pos < L.len) {
        /* the next tag opening */
        size_t k = L.pos;
        const char *open = NULL;
        for (; k + 1 < L.len; k++)
            if (L.s[k] == '{' && (L.s[k + 1] == '{' || L.s[k + 1] == '%' || L.s[k + 1] == '#')) {
                open = L.s + k;
                break;
            }
        if (!open) {
            add_text(&L, L.pos, L.len, L.line);
            break;
        }
        const char kind = open[1];
        const char sign = k + 2 < L.len ? L.s[k + 2] : 0;
        size_t text_end = k;
        if (sign == '-') {
            while (text_end > L.pos && is_ws(L.s[text_end - 1])) text_end--;
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: blanks between a line start and a block tag go */
            size_t ls = text_end;
            while (ls > L.pos && (L.s[ls - 1] == ' ' || L.s[ls - 1] == '\t' || L.s[ls - 1] == '\r' ||
                                  L.s[ls - 1] == '\v' || L.s[ls - 1] == '\f'))
                ls--;
            if (ls < text_end &&
                ((ls > L.pos && L.s[ls - 1] == '\n') || (ls == L.pos && (ls == 0 || L.s[ls - 1] == '\n'))))
                text_end = ls;
        }
        add_text(&L, L.pos, text_end, L.line);
        advance(&L, k + 2 + (sign == '-' || sign == '+'));
        char end_sign;
        if (kind == '%' && lex_raw(&L, &end_sign)) {
            /* the raw text is a token of its own */
        } else if (kind == '#') {
            const int line = L.line;
            const char *close = NULL;
            for (size_t j = L.pos; j + 1 < L.len; j++)
                if (L.s[j] == '#' && L.s[j + 1] == '}') {
                    close = L.s + j;
                    break;
                }
            if (!close) g4_ja_error(p->a, line, "comment opened here is never closed (missing '#}')");
            size_t at = (size_t)(close - L.s);
            end_sign = at > L.pos && close[-1] == '-' ? '-' : at > L.pos && close[-1] == '+' ? '+' : 0;
            advance(&L, at + 2);
        } else {
            const int line = L.line;
            push(p, (token){.type = kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, .line = line});
            end_sign = lex_tag(&L, kind == '{' ? "}}" : "%}");
            push(p, (token){.type = kind == '{' ? TK_VAR_END : TK_BLOCK_END, .line = L.line});
        }
        if (end_sign == '-') {
            size_t j = L.pos;
            while (j < L.len && is_ws(L.s[j])) j++;
            advance(&L, j);
        } else if (end_sign != '+' && kind != '{' && L.pos < L.len && L.s[L.pos] == '\n') {
            advance(&L, L.pos + 1); /* trim_blocks */
        }
    }
    push(p, (token){.type = TK_EOF, .line = L.line});
}

/* ---- parser ----------------------------------------------------------- */

static token *cur(parser *p) { return &p->toks[p->at]; }
static token *next(parser *p) { return &p->toks[p->at++]; }

static bool is_op(parser *p, const char *op) {
    token *t = cur(p);
    return t->type == TK_OP && !strcmp(t->s, op);
}
static bool is_name(parser *p, const char *name) {
    token *t = cur(p);
    return t->type == TK_NAME && !strcmp(t->s, name);
}
static bool skip_op(parser *p, const char *op) { return is_op(p, op) ? (p->at++, true) : false; }
static bool skip_name(parser *p, const char *name) { return is_name(p, name) ? (p->at++, true) : false; }

static const char *describe(token *t) {
    switch (t->type) {
    case TK_EOF: return "end of template";
    case TK_TEXT: return "text";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "'}}'";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "'%}'";
    case TK_STRING: return "a string";
    case TK_INT:
    case TK_FLOAT: return "a number";
    default: return t->s;
    }
}

static void expect_op(parser *p, const char *op) {
    if (!skip_op(p, op)) g4_ja_error(p->a, cur(p)->line, "expected '%s', found %s", op, describe(cur(p)));
}
static const char *expect_name(parser *p, const char *what) {
    if (cur(p)->type != TK_NAME) g4_ja_error(p->a, cur(p)->line, "expected %s, found %s", what, describe(cur(p)));
    return next(p)->s;
}
static void expect_type(parser *p, ttype type) {
    if (cur(p)->type != type) {
        token want = {.type = type};
        g4_ja_error(p->a, cur(p)->line, "expected %s, found %s", describe(&want), describe(cur(p)));
    }
    p->at++;
}

static jnode *node(parser *p, jkind kind, int line, size_t n_kids) {
    jnode *n = g4_ja_alloc(p->a, sizeof *n);
    n->kind = kind;
    n->line = line;
    n->n_kids = n_kids;
    if (n_kids) n->kids = g4_ja_alloc(p->a, n_kids * sizeof *n->kids);
    return n;
}

/* A growing list of children while parsing. */
typedef struct kids {
    jnode **v;
    const char **kw;
    size_t n, cap;
} kids;

static void kids_add(parser *p, kids *k, jnode *n, const char *kw) {
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 8;
        jnode **v = g4_ja_alloc(p->a, cap * sizeof *v);
        const char **w = g4_ja_alloc(p->a, cap * sizeof *w);
        if (k->n) memcpy(v, k->v, k->n * sizeof *v), memcpy(w, k->kw, k->n * sizeof *w);
        k->v = v;
        k->kw = w;
        k->cap = cap;
    }
    k->kw[k->n] = kw;
    k->v[k->n++] = n;
}

static jnode *node_from(parser *p, jkind kind, int line, kids *k) {
    jnode *n = node(p, kind, line, 0);
    n->kids = k->v;
    n->kw = k->kw;
    n->n_kids = k->n;
    return n;
}

static void enter(parser *p) {
    if (++p->depth > JINJA_MAX_NESTING)
        g4_ja_error(p->a, cur(p)->line, "nesting deeper than %d levels", JINJA_MAX_NESTING);
}

static jnode *parse_expr(parser *p, bool with_cond);
static jnode *parse_or(parser *p);
static jnode *parse_unary(parser *p, bool with_filter);
static jnode *parse_primary(parser *p);
static jnode *parse_postfix(parser *p, jnode *n);

static jnode *binary(parser *p, jkind kind, int op, int line, jnode *l, jnode *r) {
    jnode *n = node(p, kind, line, 2);
    n->op = op;
    n->kids[0] = l;
    n->kids[1] = r;
    return n;
}

/* "(a, b=c, ...)" after the callee / filter / test: appended to k. */
static void parse_args(parser *p, kids *k) {
    expect_op(p, "(");
    bool keywords = false;
    while (!is_op(p, ")")) {
        const char *kw = NULL;
        if (cur(p)->type == TK_NAME && p->toks[p->at + 1].type == TK_OP && !strcmp(p->toks[p->at + 1].s, "=")) {
            kw = next(p)->s;
            p->at++;
            keywords = true;
        } else if (keywords) {
            g4_ja_error(p->a, cur(p)->line, "positional argument after a keyword argument");
        }
        kids_add(p, k, parse_expr(p, true), kw);
        if (!skip_op(p, ",")) break;
    }
    expect_op(p, ")");
}

static jnode *parse_filter_expr(parser *p, jnode *n) {
    for (;;) {
        if (skip_op(p, "|")) {
            int line = cur(p)->line;
            const char *name = expect_name(p, "a filter name");
            kids k = {0};
            kids_add(p, &k, n, NULL);
            if (is_op(p, "(")) parse_args(p, &k);
            n = node_from(p, JX_FILTER, line, &k);
            n->name = name;
        } else if (is_name(p, "is")) {
            int line = next(p)->line;
            bool negate = skip_name(p, "not");
            const char *name = expect_name(p, "a test name");
            kids k = {0};
            kids_add(p, &k, n, NULL);
            token *t = cur(p);
            if (is_op(p, "(")) {
                parse_args(p, &k);
            } else if ((t->type == TK_NAME || t->type == TK_STRING || t->type == TK_INT || t->type == TK_FLOAT ||
                        is_op(p, "[") || is_op(p, "{")) &&
                       !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) {
                if (is_name(p, "is")) g4_ja_error(p->a, t->line, "tests cannot be chained with 'is'");
                kids_add(p, &k, parse_postfix(p, parse_primary(p)), NULL);
            }
            n = node_from(p, JX_TEST, line, &k);
            n->name = name;
            n->negate = negate;
        } else if (is_op(p, "(")) {
            kids k = {0};
            int line = cur(p)->line;
            kids_add(p, &k, n, NULL);
            parse_args(p, &k);
            n = node_from(p, JX_CALL, line, &k);
        } else {
            return n;
        }
    }
}

static jnode *parse_subscript(parser *p, jnode *obj, int line) {
    jnode *part[3] = {NULL, NULL, NULL};
    int colons = 0;
    for (;;) {
        if (is_op(p, "]")) break;
        if (skip_op(p, ":")) {
            if (++colons > 2) g4_ja_error(p->a, line, "a slice has at most two ':'");
            continue;
        }
        if (part[colons]) g4_ja_error(p->a, cur(p)->line, "expected ':' or ']' in a subscript");
        part[colons] = parse_expr(p, true);
    }
    expect_op(p, "]");
    if (!colons) {
        if (!part[0]) g4_ja_error(p->a, line, "empty subscript");
        return binary(p, JX_INDEX, 0, line, obj, part[0]);
    }
    jnode *n = node(p, JX_SLICE, line, 4);
    n->kids[0] = obj;
    for (int k = 0; k < 3; k++) n->kids[k + 1] = part[k];
    return n;
}

static jnode *parse_postfix(parser *p, jnode *n) {
    for (;;) {
        int line = cur(p)->line;
        if (skip_op(p, ".")) {
            token *t = next(p);
            if (t->type == TK_INT) {
                jnode *idx = node(p, JX_LIT, line, 0);
                idx->lit = g4_jv_int(p->a, t->i);
                n = binary(p, JX_INDEX, 0, line, n, idx);
            } else if (t->type == TK_NAME) {
                jnode *at = node(p, JX_ATTR, line, 1);
                at->kids[0] = n;
                at->name = t->s;
                n = at;
            } else {
                g4_ja_error(p->a, line, "expected an attribute name after '.', found %s", describe(t));
            }
        } else if (skip_op(p, "[")) {
            enter(p);
            n = parse_subscript(p, n, line);
            p->depth--;
        } else if (is_op(p, "(")) {
            kids k = {0};
            kids_add(p, &k, n, NULL);
            parse_args(p, &k);
            n = node_from(p, JX_CALL, line, &k);
        } else {
            return n;
        }
    }
}

static jnode *parse_primary(parser *p) {
    token *t = cur(p);
    int line = t->line;
    jnode *n;
    enter(p);
    if (t->type == TK_NAME) {
        p->at++;
        n = node(p, JX_LIT, line, 0);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True"))
            n->lit = &g4_jv_true;
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False"))
            n->lit = &g4_jv_false;
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None"))
            n->lit = &g4_jv_none;
        else
            n->kind = JX_NAME, n->name = t->s;
    } else if (t->type == TK_STRING) {
        /* adjacent literals join, as in Python */
        jbuf b;
        g4_jb_init(&b, SIZE_MAX);
        while (cur(p)->type == TK_STRING) g4_jb_add(p->a, &b, cur(p)->s, cur(p)->len, NULL), p->at++;
        n = node(p, JX_LIT, line, 0);
        n->lit = g4_jb_value(p->a, &b);
    } else if (t->type == TK_INT || t->type == TK_FLOAT) {
        p->at++;
        n = node(p, JX_LIT, line, 0);
        n->lit = t->type == TK_INT ? g4_jv_int(p->a, t->i) : g4_jv_float(p->a, t->f);
    } else if (skip_op(p, "(")) {
        kids k = {0};
        bool tuple = false;
        while (!is_op(p, ")")) {
            kids_add(p, &k, parse_expr(p, true), NULL);
            if (!skip_op(p, ",")) break;
            tuple = true;
        }
        expect_op(p, ")");
        if (k.n == 1 && !tuple)
            n = k.v[0];
        else
            n = node_from(p, JX_LIST, line, &k);
    } else if (skip_op(p, "[")) {
        kids k = {0};
        while (!is_op(p, "]")) {
            kids_add(p, &k, parse_expr(p, true), NULL);
            if (!skip_op(p, ",")) break;
        }
        expect_op(p, "]");
        n = node_from(p, JX_LIST, line, &k);
    } else if (skip_op(p, "{")) {
        kids k = {0};
        while (!is_op(p, "}")) {
            kids_add(p, &k, parse_expr(p, true), NULL);
            expect_op(p, ":");
            kids_add(p, &k, parse_expr(p, true), NULL);
            if (!skip_op(p, ",")) break;
        }
        expect_op(p, "}");
        n = node_from(p, JX_DICT, line, &k);
    } else {
        g4_ja_error(p->a, line, "expected an expression, found %s", describe(t));
    }
    p->depth--;
    return n;
}

static jnode *parse_unary(parser *p, bool with_filter) {
    int line = cur(p)->line;
    jnode *n;
    enter(p);
    if (skip_op(p, "-") || skip_op(p, "+")) {
        bool neg = !strcmp(p->toks[p->at - 1].s, "-");
        n = node(p, neg ? JX_NEG : JX_POS, line, 1);
        n->kids[0] = parse_unary(p, false);
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static jnode *parse_pow(parser *p) {
    jnode *n = parse_unary(p, true);
    while (is_op(p, "**")) {
        int line = next(p)->line;
        n = binary(p, JX_BINARY, JOP_POW, line, n, parse_unary(p, true));
    }
    return n;
}

static jnode *parse_math2(parser *p) {
    jnode *n = parse_pow(p);
    for (;;) {
        int op = is_op(p, "*")    ? JOP_MUL
                 : is_op(p, "/")  ? JOP_DIV
                 : is_op(p, "//") ? JOP_FLOORDIV
                 : is_op(p, "%")  ? JOP_MOD
                                  : -1;
        if (op < 0) return n;
        int line = next(p)->line;
        n = binary(p, JX_BINARY, op, line, n, parse_pow(p));
    }
}

static jnode *parse_concat(parser *p) {
    jnode *n = parse_math2(p);
    while (is_op(p, "~")) {
        int line = next(p)->line;
        n = binary(p, JX_BINARY, JOP_CONCAT, line, n, parse_math2(p));
    }
    return n;
}

static jnode *parse_math1(parser *p) {
    jnode *n = parse_concat(p);
    for (;;) {
        int op = is_op(p, "+") ? JOP_ADD : is_op(p, "-") ? JOP_SUB : -1;
        if (op < 0) return n;
        int line = next(p)->line;
        n = binary(p, JX_BINARY, op, line, n, parse_concat(p));
    }
}

static jnode *parse_compare(parser *p) {
    jnode *n = parse_math1(p);
    for (;;) {
        static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
        static const int codes[] = {JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE};
        int op = -1, line = cur(p)->line;
        for (int k = 0; k < 6 && op < 0; k++)
            if (is_op(p, ops[k])) op = codes[k];
        if (op >= 0) {
            p->at++;
        } else if (skip_name(p, "in")) {
            op = JOP_IN;
        } else if (is_name(p, "not") && p->toks[p->at + 1].type == TK_NAME && !strcmp(p->toks[p->at + 1].s, "in")) {
            p->at += 2;
            op = JOP_NOT_IN;
        } else {
            return n;
        }
        n = binary(p, JX_COMPARE, op, line, n, parse_math1(p));
    }
}

static jnode *parse_not(parser *p) {
    if (is_name(p, "not")) {
        int line = next(p)->line;
        enter(p);
        jnode *n = node(p, JX_NOT, line, 1);
        n->kids[0] = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p) {
    jnode *n = parse_not(p);
    while (is_name(p, "and")) {
        int line = next(p)->line;
        n = binary(p, JX_AND, 0, line, n, parse_not(p));
    }
    return n;
}

static jnode *parse_or(parser *p) {
    jnode *n = parse_and(p);
    while (is_name(p, "or")) {
        int line = next(p)->line;
        n = binary(p, JX_OR, 0, line, n, parse_and(p));
    }
    return n;
}

static jnode *parse_expr(parser *p, bool with_cond) {
    enter(p);
    jnode *n = parse_or(p);
    while (with_cond && is_name(p, "if")) {
        int line = next(p)->line;
        jnode *c = node(p, JX_COND, line, 3);
        c->kids[0] = n;
        c->kids[1] = parse_or(p);
        c->kids[2] = skip_name(p, "else") ? parse_expr(p, true) : NULL;
        n = c;
    }
    p->depth--;
    return n;
}

/* "a", "a, b" or "(a, b)": assignment and loop targets. */
static jnode *parse_target(parser *p, bool allow_attr) {
    int line = cur(p)->line;
    bool paren = skip_op(p, "(");
    kids k = {0};
    do {
        jnode *n = node(p, JX_NAME, cur(p)->line, 0);
        n->name = expect_name(p, "a variable name");
        if (allow_attr && k.n == 0 && skip_op(p, ".")) {
            jnode *at = node(p, JX_ATTR, n->line, 1);
            at->kids[0] = n;
            at->name = expect_name(p, "an attribute name");
            return at;
        }
        kids_add(p, &k, n, NULL);
    } while (skip_op(p, ","));
    if (paren) expect_op(p, ")");
    return k.n == 1 && !paren ? k.v[0] : node_from(p, JX_LIST, line, &k);
}

static jnode *parse_body(parser *p, const char *const *ends, const char **found);

static void end_block(parser *p) { expect_type(p, TK_BLOCK_END); }

/* The body up to one of ends; the end tag's name is consumed. */
static jnode *body_until(parser *p, const char *const *ends, const char **found, int line, const char *what) {
    jnode *b = parse_body(p, ends, found);
    if (!*found) g4_ja_error(p->a, line, "%s opened here is never closed (missing '%s')", what, ends[0]);
    return b;
}

static jnode *parse_statement(parser *p) {
    token *t = cur(p);
    int line = t->line;
    const char *kw = expect_name(p, "a tag name");
    const char *found = NULL;
    if (!strcmp(kw, "if")) {
        static const char *const ends[] = {"endif", "elif", "else", NULL};
        kids k = {0};
        kids_add(p, &k, parse_expr(p, false), NULL);
        end_block(p);
        for (;;) {
            kids_add(p, &k, body_until(p, ends, &found, line, "if"), NULL);
            if (!strcmp(found, "endif")) break;
            if (!strcmp(found, "elif")) {
                kids_add(p, &k, parse_expr(p, false), NULL);
                end_block(p);
                continue;
            }
            static const char *const endif[] = {"endif", NULL};
            end_block(p);
            kids_add(p, &k, NULL, NULL);
            kids_add(p, &k, body_until(p, endif, &found, line, "if"), NULL);
            break;
        }
        end_block(p);
        return node_from(p, JS_IF, line, &k);
    }
    if (!strcmp(kw, "for")) {
        static const char *const ends[] = {"endfor", "else", NULL}, *const endfor[] = {"endfor", NULL};
        jnode *target = parse_target(p, false);
        jnode *n = node(p, JS_FOR, line, 4);
        if (target->kind == JX_NAME) {
            n->n_names = 1;
            n->names = g4_ja_alloc(p->a, sizeof *n->names);
            n->names[0] = target->name;
        } else {
            n->n_names = target->n_kids;
            n->names = g4_ja_alloc(p->a, target->n_kids * sizeof *n->names);
            for (size_t k = 0; k < target->n_kids; k++) n->names[k] = target->kids[k]->name;
        }
        if (!skip_name(p, "in"))
            g4_ja_error(p->a, cur(p)->line, "expected 'in' in a for tag, found %s", describe(cur(p)));
        n->kids[0] = parse_expr(p, false);
        if (skip_name(p, "if")) n->kids[1] = parse_expr(p, true);
        if (is_name(p, "recursive")) g4_ja_error(p->a, line, "recursive loops are not supported");
        end_block(p);
        n->kids[2] = body_until(p, ends, &found, line, "for");
        if (!strcmp(found, "else")) {
            end_block(p);
            n->kids[3] = body_until(p, endfor, &found, line, "for");
        }
        end_block(p);
        return n;
    }
    if (!strcmp(kw, "set")) {
        jnode *target = parse_target(p, true);
        if (skip_op(p, "=")) {
            jnode *n = node(p, JS_SET, line, 2);
            n->kids[0] = target;
            kids k = {0};
            bool tuple = false;
            do {
                kids_add(p, &k, parse_expr(p, true), NULL);
                if (!skip_op(p, ",")) break;
                tuple = true;
            } while (cur(p)->type != TK_BLOCK_END);
            n->kids[1] = tuple ? node_from(p, JX_LIST, line, &k) : k.v[0];
            end_block(p);
            return n;
        }
        static const char *const endset[] = {"endset", NULL};
        end_block(p);
        jnode *n = node(p, JS_SET_BLOCK, line, 2);
        n->kids[0] = target;
        n->kids[1] = body_until(p, endset, &found, line, "set");
        end_block(p);
        return n;
    }
    if (!strcmp(kw, "macro")) {
        static const char *const ends[] = {"endmacro", NULL};
        kids k = {0};
        const char *name = expect_name(p, "a macro name");
        kids_add(p, &k, NULL, NULL);
        expect_op(p, "(");
        while (!is_op(p, ")")) {
            const char *param = expect_name(p, "a parameter name");
            kids_add(p, &k, skip_op(p, "=") ? parse_expr(p, true) : NULL, param);
            if (!skip_op(p, ",")) break;
        }
        expect_op(p, ")");
        end_block(p);
        k.v[0] = body_until(p, ends, &found, line, "macro");
        if (cur(p)->type == TK_NAME) p->at++; /* {% endmacro name %} */
        end_block(p);
        jnode *n = node_from(p, JS_MACRO, line, &k);
        n->name = name;
        return n;
    }
    if (!strcmp(kw, "call")) {
        static const char *const ends[] = {"endcall", NULL};
        jnode *n = node(p, JS_CALL_BLOCK, line, 2);
        if (skip_op(p, "(")) {
            kids k = {0};
            while (!is_op(p, ")")) {
                kids_add(p, &k, NULL, expect_name(p, "a parameter name"));
                if (!skip_op(p, ",")) break;
            }
            expect_op(p, ")");
            n->names = k.kw;
            n->n_names = k.n;
        }
        n->kids[0] = parse_expr(p, true);
        if (n->kids[0]->kind != JX_CALL) g4_ja_error(p->a, line, "a call tag needs a macro call");
        end_block(p);
        n->kids[1] = body_until(p, ends, &found, line, "call");
        end_block(p);
        return n;
    }
    if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        end_block(p);
        return node(p, kw[0] == 'b' ? JS_BREAK : JS_CONTINUE, line, 0);
    }
    if (!strcmp(kw, "generation")) {
        /* transformers' marker of the assistant's tokens: renders its body */
        static const char *const ends[] = {"endgeneration", NULL};
        end_block(p);
        jnode *b = body_until(p, ends, &found, line, "generation");
        end_block(p);
        return b;
    }
    g4_ja_error(p->a, line, "unknown or misplaced tag '%s'", kw);
}

static jnode *parse_body(parser *p, const char *const *ends, const char **found) {
    kids k = {0};
    *found = NULL;
    enter(p);
    for (;;) {
        token *t = cur(p);
        if (t->type == TK_EOF) break;
        if (t->type == TK_TEXT) {
            jnode *n = node(p, JS_TEXT, t->line, 0);
            n->lit = g4_jv_str(p->a, t->s, t->len, NULL);
            kids_add(p, &k, n, NULL);
            p->at++;
        } else if (t->type == TK_VAR_BEGIN) {
            p->at++;
            jnode *n = node(p, JS_OUTPUT, t->line, 1);
            n->kids[0] = parse_expr(p, true);
            expect_type(p, TK_VAR_END);
            kids_add(p, &k, n, NULL);
        } else if (t->type == TK_BLOCK_BEGIN) {
            token *name = &p->toks[p->at + 1];
            bool is_end = false;
            for (size_t e = 0; ends && ends[e] && name->type == TK_NAME; e++)
                if (!strcmp(name->s, ends[e])) is_end = true, *found = ends[e];
            p->at++;
            if (is_end) {
                p->at++;
                break;
            }
            kids_add(p, &k, parse_statement(p), NULL);
        } else {
            g4_ja_error(p->a, t->line, "unexpected %s", describe(t));
        }
    }
    p->depth--;
    return node_from(p, JS_BODY, cur(p)->line, &k);
}

typedef struct parse_job {
    parser p;
    const char *src;
    size_t len;
    jnode *root;
} parse_job;

static void parse_all(void *ctx) {
    parse_job *job = ctx;
    parser *p = &job->p;
    lex(p, job->src, job->len);
    const char *found;
    job->root = parse_body(p, NULL, &found);
    if (cur(p)->type != TK_EOF) g4_ja_error(p->a, cur(p)->line, "unexpected %s", describe(cur(p)));
}

g4_jinja *g4_jinja_parse(const char *src, size_t len, char *err) {
    g4_jinja *t = calloc(1, sizeof *t);
    if (!t) return snprintf(err, G4_ERR_LEN, "out of memory for a template"), NULL;
    t->arena.err = err;
    t->arena.cap = 64 * len + (1u << 20); /* the tree is a small multiple of the source */
    parse_job job = {.p = {.a = &t->arena}, .src = src ? src : "", .len = src ? len : 0};
    int rc = g4_ja_try(&t->arena, parse_all, &job);
    free(job.p.toks);
    if (rc) {
        g4_jinja_free(t);
        return NULL;
    }
    t->root = job.root;
    return t;
}

void g4_jinja_free(g4_jinja *t) {
    if (!t) return;
    g4_ja_free(&t->arena);
    free(t);
}
