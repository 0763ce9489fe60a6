/* Values of the Jinja interpreter: the arena they live in, strings with
 * their from-data marks, and the ways Python prints them (str, repr,
 * json.dumps), since templates render exactly those texts. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_internal.h"
#include "tokenizer/jinja_internal.h"

jval g4_jv_undefined = {.type = JV_UNDEF}, g4_jv_none = {.type = JV_NONE};
jval g4_jv_true = {.type = JV_BOOL, .b = true}, g4_jv_false = {.type = JV_BOOL, .b = false};

/* ---- arena ------------------------------------------------------------ */

struct jchunk {
    jchunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

void g4_ja_error(jarena *a, int line, const char *fmt, ...) {
    char msg[G4_ERR_LEN - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(a->err, G4_ERR_LEN, "line %d: %s", line, msg);
    else
        snprintf(a->err, G4_ERR_LEN, "%s", msg);
    longjmp(*a->fail, 1);
}

int g4_ja_try(jarena *a, void (*fn)(void *), void *ctx) {
    jmp_buf fail;
    a->fail = &fail;
    if (setjmp(fail)) {
        a->fail = NULL;
        return -1;
    }
    fn(ctx);
    a->fail = NULL;
    return 0;
}

void *g4_ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n > a->cap || a->used > a->cap - n) g4_ja_error(a, 0, "template needs more than %zu bytes of memory", a->cap);
    jchunk *c = a->chunks;
    if (!c || c->size - c->used < n) {
        size_t size = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + size);
        if (!c) g4_ja_error(a, 0, "out of memory (%zu bytes)", size);
        c->used = 0;
        c->size = size;
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void g4_ja_free(jarena *a) {
    for (jchunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->chunks = NULL;
    a->used = 0;
}

char *g4_ja_strdup(jarena *a, const char *s, size_t n) {
    char *d = g4_ja_alloc(a, n + 1);
    if (n) memcpy(d, s, n);
    return d;
}

/* ---- values ----------------------------------------------------------- */

jval *g4_jv_new(jarena *a, jtype t) {
    jval *v = g4_ja_alloc(a, sizeof *v);
    v->type = t;
    return v;
}

jval *g4_jv_int(jarena *a, int64_t i) {
    jval *v = g4_jv_new(a, JV_INT);
    v->i = i;
    return v;
}

jval *g4_jv_float(jarena *a, double f) {
    jval *v = g4_jv_new(a, JV_FLOAT);
    v->f = f;
    return v;
}

jval *g4_jv_bool(bool b) { return b ? &g4_jv_true : &g4_jv_false; }

jval *g4_jv_str(jarena *a, const char *s, size_t n, const uint8_t *taint) {
    jval *v = g4_jv_new(a, JV_STR);
    v->s = g4_ja_strdup(a, s, n);
    v->len = n;
    for (size_t k = 0; taint && k < n; k++)
        if (taint[k]) {
            uint8_t *t = g4_ja_alloc(a, n);
            memcpy(t, taint, n);
            v->taint = t;
            break;
        }
    return v;
}

jval *g4_jv_cstr(jarena *a, const char *s) { return g4_jv_str(a, s, strlen(s), NULL); }

jval *g4_jv_data_str(jarena *a, const char *s, size_t n) {
    jval *v = g4_jv_str(a, s, n, NULL);
    if (n) {
        uint8_t *t = g4_ja_alloc(a, n);
        memset(t, 1, n);
        v->taint = t;
    }
    return v;
}

jval *g4_jv_list(jarena *a, size_t cap) {
    jval *v = g4_jv_new(a, JV_LIST);
    v->cap = cap;
    if (cap) v->items = g4_ja_alloc(a, cap * sizeof *v->items);
    return v;
}

jval *g4_jv_dict(jarena *a) { return g4_jv_new(a, JV_DICT); }

static void grow(jarena *a, jval *c) {
    size_t cap = c->cap ? 2 * c->cap : 8;
    jval **items = g4_ja_alloc(a, cap * sizeof *items);
    if (c->n) memcpy(items, c->items, c->n * sizeof *items);
    c->items = items;
    if (c->type == JV_DICT) {
        jval **keys = g4_ja_alloc(a, cap * sizeof *keys);
        if (c->n) memcpy(keys, c->keys, c->n * sizeof *keys);
        c->keys = keys;
    }
    c->cap = cap;
}

void g4_jv_push(jarena *a, jval *list, jval *item) {
    if (list->n == list->cap) grow(a, list);
    list->items[list->n++] = item;
}

jval *g4_jv_dict_get(const jval *d, const char *key, size_t len) {
    for (size_t k = 0; k < d->n; k++)
        if (d->keys[k]->len == len && !memcmp(d->keys[k]->s, key, len)) return d->items[k];
    return NULL;
}

void g4_jv_dict_set(jarena *a, jval *d, jval *key, jval *v) {
    for (size_t k = 0; k < d->n; k++)
        if (g4_jv_equal(d->keys[k], key)) {
            d->items[k] = v;
            return;
        }
    if (d->n == d->cap) grow(a, d);
    d->keys[d->n] = key;
    d->items[d->n++] = v;
}

static jval *from_chat(jarena *a, const g4_chat_value *v, bool tainted, int depth) {
    if (!v) return &g4_jv_none;
    if (depth > JINJA_MAX_NESTING) g4_ja_error(a, 0, "a variable is nested deeper than %d levels", JINJA_MAX_NESTING);
    switch (v->type) {
    case G4_CHAT_NULL: return &g4_jv_none;
    case G4_CHAT_BOOL: return g4_jv_bool(v->b);
    case G4_CHAT_INT: return g4_jv_int(a, v->i);
    case G4_CHAT_FLOAT: return g4_jv_float(a, v->f);
    case G4_CHAT_STRING: return tainted ? g4_jv_data_str(a, v->str, v->len) : g4_jv_str(a, v->str, v->len, NULL);
    case G4_CHAT_ARRAY: {
        jval *l = g4_jv_list(a, v->len);
        for (size_t k = 0; k < v->len; k++) g4_jv_push(a, l, from_chat(a, v->items[k], tainted, depth + 1));
        return l;
    }
    case G4_CHAT_OBJECT: {
        jval *d = g4_jv_dict(a);
        for (size_t k = 0; k < v->len; k++) {
            const char *key = v->keys[k];
            jval *kv = tainted ? g4_jv_data_str(a, key, strlen(key)) : g4_jv_cstr(a, key);
            g4_jv_dict_set(a, d, kv, from_chat(a, v->items[k], tainted, depth + 1));
        }
        return d;
    }
    }
    return &g4_jv_none;
}

jval *g4_jv_from_chat(jarena *a, const g4_chat_value *v, bool tainted) { return from_chat(a, v, tainted, 0); }

bool g4_jv_truthy(const jval *v) {
    switch (v->type) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v->b;
    case JV_INT: return v->i != 0;
    case JV_FLOAT: return v->f != 0;
    case JV_STR: return v->len != 0;
    case JV_LIST:
    case JV_DICT: return v->n != 0;
    default: return true;
    }
}

bool g4_jv_is_number(const jval *v) { return v->type == JV_INT || v->type == JV_FLOAT || v->type == JV_BOOL; }

double g4_jv_number(const jval *v) {
    return v->type == JV_FLOAT ? v->f : v->type == JV_INT ? (double)v->i : v->type == JV_BOOL ? v->b : 0;
}

/* Values nest at most JINJA_MAX_NESTING deep for the recursive walks below
 * (a namespace can even hold itself): deeper counts as unequal, tainted,
 * or an error. */
static bool equal(const jval *a, const jval *b, int depth) {
    if (depth > JINJA_MAX_NESTING) return false;
    if (g4_jv_is_number(a) && g4_jv_is_number(b)) {
        if (a->type != JV_FLOAT && b->type != JV_FLOAT)
            return (a->type == JV_INT ? a->i : a->b) == (b->type == JV_INT ? b->i : b->b);
        return g4_jv_number(a) == g4_jv_number(b);
    }
    if (a->type != b->type) return false;
    switch (a->type) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a->len == b->len && !memcmp(a->s, b->s, a->len);
    case JV_LIST:
        if (a->n != b->n) return false;
        for (size_t k = 0; k < a->n; k++)
            if (!equal(a->items[k], b->items[k], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a->n != b->n) return false;
        for (size_t k = 0; k < a->n; k++) {
            jval *o = g4_jv_dict_get(b, a->keys[k]->s, a->keys[k]->len);
            if (!o || !equal(a->items[k], o, depth + 1)) return false;
        }
        return true;
    default: return a == b;
    }
}

bool g4_jv_equal(const jval *a, const jval *b) { return equal(a, b, 0); }

const char *g4_jv_type_name(const jval *v) {
    static const char *const names[] = {"Undefined", "NoneType", "bool",  "int",      "float",  "str",
                                        "list",      "dict",     "macro", "function", "method", "LoopContext"};
    return v->type == JV_DICT && v->ns ? "Namespace" : names[v->type];
}

static int compare(jarena *a, int line, const jval *x, const jval *y, int depth) {
    if (depth > JINJA_MAX_NESTING)
        g4_ja_error(a, line, "cannot compare values nested deeper than %d levels", JINJA_MAX_NESTING);
    if (g4_jv_is_number(x) && g4_jv_is_number(y)) {
        double p = g4_jv_number(x), q = g4_jv_number(y);
        if (x->type != JV_FLOAT && y->type != JV_FLOAT) {
            int64_t i = x->type == JV_INT ? x->i : x->b, j = y->type == JV_INT ? y->i : y->b;
            return (i > j) - (i < j);
        }
        return (p > q) - (p < q);
    }
    if (x->type == JV_STR && y->type == JV_STR) {
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->s, y->s, n);
        return c ? (c > 0) - (c < 0) : (x->len > y->len) - (x->len < y->len);
    }
    if (x->type == JV_LIST && y->type == JV_LIST) {
        for (size_t k = 0; k < x->n && k < y->n; k++) {
            if (equal(x->items[k], y->items[k], depth + 1)) continue;
            return compare(a, line, x->items[k], y->items[k], depth + 1);
        }
        return (x->n > y->n) - (x->n < y->n);
    }
    g4_ja_error(a, line, "cannot compare %s with %s", g4_jv_type_name(x), g4_jv_type_name(y));
}

int g4_jv_compare(jarena *a, int line, const jval *x, const jval *y) { return compare(a, line, x, y, 0); }

size_t g4_utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t k = 0; k < n; k++) c += ((unsigned char)s[k] & 0xc0) != 0x80;
    return c;
}

size_t g4_utf8_offset(const char *s, size_t n, size_t k) {
    size_t at = 0;
    for (; at < n; at++)
        if (((unsigned char)s[at] & 0xc0) != 0x80 && k-- == 0) return at;
    return n;
}

/* ---- byte buffers --------------------------------------------------- */

void g4_jb_init(jbuf *b, size_t max) { *b = (jbuf){.max = max}; }

static void g4_jb_reserve(jarena *a, jbuf *b, size_t n) {
    if (n > b->max || b->len > b->max - n) g4_ja_error(a, 0, "output is longer than %zu bytes", b->max);
    if (b->len + n + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    char *s = g4_ja_alloc(a, cap);
    if (b->len) memcpy(s, b->s, b->len);
    b->s = s;
    if (b->tainted) {
        uint8_t *t = g4_ja_alloc(a, cap);
        memcpy(t, b->taint, b->len);
        b->taint = t;
    }
    b->cap = cap;
}

void g4_jb_add(jarena *a, jbuf *b, const char *s, size_t n, const uint8_t *taint) {
    g4_jb_reserve(a, b, n);
    if (n) memcpy(b->s + b->len, s, n);
    if (taint && !b->tainted) {
        for (size_t k = 0; k < n && !b->tainted; k++) b->tainted = taint[k] != 0;
        if (b->tainted) b->taint = g4_ja_alloc(a, b->cap);
    }
    if (b->tainted) {
        if (taint)
            memcpy(b->taint + b->len, taint, n);
        else
            memset(b->taint + b->len, 0, n);
    }
    b->len += n;
    b->s[b->len] = '\0';
}

void g4_jb_str(jarena *a, jbuf *b, const char *s) { g4_jb_add(a, b, s, strlen(s), NULL); }

void g4_jb_taint_all(jarena *a, jbuf *b) {
    if (!b->len) return;
    if (!b->tainted) {
        b->taint = g4_ja_alloc(a, b->cap);
        b->tainted = true;
    }
    memset(b->taint, 1, b->len);
}

jval *g4_jb_value(jarena *a, jbuf *b) {
    jval *v = g4_jv_new(a, JV_STR);
    v->s = b->s ? b->s : "";
    v->len = b->len;
    v->taint = b->tainted ? b->taint : NULL;
    g4_jb_init(b, b->max);
    return v;
}

/* ---- printing ----------------------------------------------------------- */

static bool any_taint(const jval *v, int depth) {
    if (depth > JINJA_MAX_NESTING) return true;
    if (v->type == JV_STR) return v->taint != NULL;
    if (v->type == JV_LIST || v->type == JV_DICT)
        for (size_t k = 0; k < v->n; k++)
            if (any_taint(v->items[k], depth + 1) || (v->type == JV_DICT && any_taint(v->keys[k], depth + 1)))
                return true;
    return false;
}

static void write_number(jarena *a, jbuf *b, const jval *v) {
    char num[32];
    if (v->type == JV_FLOAT) {
        g4_chat_buf cb = {0};
        g4_chat_write_float(&cb, v->f);
        if (cb.oom) g4_ja_error(a, 0, "out of memory");
        g4_jb_add(a, b, cb.s, cb.len, NULL);
        free(cb.s);
        return;
    }
    snprintf(num, sizeof num, "%lld", (long long)v->i);
    g4_jb_str(a, b, num);
}

/* A string as Python's repr writes it. */
static void write_quoted(jarena *a, jbuf *b, const jval *v) {
    const bool has_single = memchr(v->s, '\'', v->len) != NULL, has_double = memchr(v->s, '"', v->len) != NULL;
    const char q = has_single && !has_double ? '"' : '\'';
    jbuf t;
    g4_jb_init(&t, b->max);
    g4_jb_add(a, &t, &q, 1, NULL);
    for (size_t k = 0; k < v->len; k++) {
        unsigned char c = (unsigned char)v->s[k];
        char esc[8];
        if (c == '\\' || c == (unsigned char)q) {
            esc[0] = '\\', esc[1] = (char)c;
            g4_jb_add(a, &t, esc, 2, NULL);
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\', esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            g4_jb_add(a, &t, esc, 2, NULL);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            g4_jb_add(a, &t, esc, 4, NULL);
        } else if (c == 0xc2 && k + 1 < v->len &&
                   ((unsigned char)v->s[k + 1] <= 0xa0 || (unsigned char)v->s[k + 1] == 0xad)) {
            /* C1 controls, no-break space and soft hyphen are not printable */
            snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)v->s[++k]);
            g4_jb_add(a, &t, esc, 4, NULL);
        } else {
            g4_jb_add(a, &t, (const char *)&c, 1, NULL);
        }
    }
    g4_jb_add(a, &t, &q, 1, NULL);
    if (v->taint) {
        uint8_t *all = g4_ja_alloc(a, t.len);
        memset(all, 1, t.len);
        g4_jb_add(a, b, t.s, t.len, all);
    } else {
        g4_jb_add(a, b, t.s, t.len, NULL);
    }
}

static void write_str(jarena *a, jbuf *b, const jval *v, int depth);

static void write_repr(jarena *a, jbuf *b, const jval *v, int depth) {
    if (v->type == JV_STR)
        write_quoted(a, b, v);
    else
        write_str(a, b, v, depth);
}

void g4_jv_write_repr(jarena *a, jbuf *b, const jval *v) { write_repr(a, b, v, 0); }
void g4_jv_write_str(jarena *a, jbuf *b, const jval *v) { write_str(a, b, v, 0); }

static void write_str(jarena *a, jbuf *b, const jval *v, int depth) {
    if (depth > JINJA_MAX_NESTING)
        g4_ja_error(a, 0, "cannot print a value nested deeper than %d levels", JINJA_MAX_NESTING);
    switch (v->type) {
    case JV_UNDEF: return;
    case JV_NONE: g4_jb_str(a, b, "None"); return;
    case JV_BOOL: g4_jb_str(a, b, v->b ? "True" : "False"); return;
    case JV_INT:
    case JV_FLOAT: write_number(a, b, v); return;
    case JV_STR: g4_jb_add(a, b, v->s, v->len, v->taint); return;
    case JV_LIST:
        g4_jb_str(a, b, "[");
        for (size_t k = 0; k < v->n; k++) {
            if (k) g4_jb_str(a, b, ", ");
            write_repr(a, b, v->items[k], depth + 1);
        }
        g4_jb_str(a, b, "]");
        return;
    case JV_DICT:
        g4_jb_str(a, b, v->ns ? "<Namespace {" : "{");
        for (size_t k = 0; k < v->n; k++) {
            if (k) g4_jb_str(a, b, ", ");
            write_repr(a, b, v->keys[k], depth + 1);
            g4_jb_str(a, b, ": ");
            write_repr(a, b, v->items[k], depth + 1);
        }
        g4_jb_str(a, b, v->ns ? "}>" : "}");
        return;
    default: g4_jb_str(a, b, v->type == JV_MACRO ? "<Macro>" : v->type == JV_LOOP ? "<LoopContext>" : "<function>");
    }
}

jval *g4_jv_to_str(jarena *a, const jval *v) {
    if (v->type == JV_STR) return (jval *)v;
    jbuf b;
    g4_jb_init(&b, SIZE_MAX);
    g4_jv_write_str(a, &b, v);
    return g4_jb_value(a, &b);
}

static void write_json_string(jarena *a, jbuf *b, const char *s, size_t n) {
    g4_jb_str(a, b, "\"");
    size_t from = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        g4_jb_add(a, b, s + from, k - from, NULL);
        char esc[8];
        const char *named = c == '"'    ? "\\\""
                            : c == '\\' ? "\\\\"
                            : c == '\n' ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                                        : NULL;
        if (!named) snprintf(esc, sizeof esc, "\\u%04x", c), named = esc;
        g4_jb_str(a, b, named);
        from = k + 1;
    }
    g4_jb_add(a, b, s + from, n - from, NULL);
    g4_jb_str(a, b, "\"");
}

static void newline_indent(jarena *a, jbuf *b, int indent, int level) {
    g4_jb_str(a, b, "\n");
    for (int k = 0; k < indent * level; k++) g4_jb_str(a, b, " ");
}

static int compare_keys(const void *x, const void *y) {
    const jval *p = *(jval *const *)x, *q = *(jval *const *)y;
    size_t n = p->len < q->len ? p->len : q->len;
    int c = memcmp(p->s, q->s, n);
    return c ? c : (p->len > q->len) - (p->len < q->len);
}

void g4_jv_write_json(jarena *a, jbuf *b, const jval *v, int indent, const char *item_sep, const char *key_sep,
                      bool sort_keys, int line, int depth) {
    if (depth > JINJA_MAX_NESTING)
        g4_ja_error(a, line, "tojson: value nested deeper than %d levels", JINJA_MAX_NESTING);
    switch (v->type) {
    case JV_NONE: g4_jb_str(a, b, "null"); return;
    case JV_BOOL: g4_jb_str(a, b, v->b ? "true" : "false"); return;
    case JV_INT: write_number(a, b, v); return;
    case JV_FLOAT:
        if (isnan(v->f) || isinf(v->f))
            g4_jb_str(a, b, isnan(v->f) ? "NaN" : v->f < 0 ? "-Infinity" : "Infinity");
        else
            write_number(a, b, v);
        return;
    case JV_STR: write_json_string(a, b, v->s, v->len); return;
    case JV_LIST:
    case JV_DICT: {
        const bool dict = v->type == JV_DICT;
        if (!v->n) {
            g4_jb_str(a, b, dict ? "{}" : "[]");
            return;
        }
        jval **order = v->keys;
        if (dict && sort_keys) {
            order = g4_ja_alloc(a, v->n * sizeof *order);
            memcpy(order, v->keys, v->n * sizeof *order);
            for (size_t k = 0; k < v->n; k++)
                if (order[k]->type != JV_STR) g4_ja_error(a, line, "tojson: sort_keys needs string keys");
            qsort(order, v->n, sizeof *order, compare_keys);
        }
        g4_jb_str(a, b, dict ? "{" : "[");
        for (size_t k = 0; k < v->n; k++) {
            if (k) g4_jb_str(a, b, item_sep);
            if (indent >= 0) newline_indent(a, b, indent, depth + 1);
            if (dict) {
                const jval *key = order[k];
                if (key->type == JV_STR)
                    write_json_string(a, b, key->s, key->len);
                else {
                    g4_jb_str(a, b, "\"");
                    g4_jv_write_json(a, b, key, -1, item_sep, key_sep, sort_keys, line, depth + 1);
                    g4_jb_str(a, b, "\"");
                }
                g4_jb_str(a, b, key_sep);
                g4_jv_write_json(a, b, order == v->keys ? v->items[k] : g4_jv_dict_get(v, key->s, key->len), indent,
                                 item_sep, key_sep, sort_keys, line, depth + 1);
            } else {
                g4_jv_write_json(a, b, v->items[k], indent, item_sep, key_sep, sort_keys, line, depth + 1);
            }
        }
        if (indent >= 0) newline_indent(a, b, indent, depth);
        g4_jb_str(a, b, dict ? "}" : "]");
        return;
    }
    default: g4_ja_error(a, line, "tojson: a %s is not JSON serializable", g4_jv_type_name(v));
    }
}

bool g4_jv_any_taint(const jval *v) { return any_taint(v, 0); }
