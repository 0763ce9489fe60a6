/* JSON Schema -> GBNF. Each schema becomes an expression that matches the
 * JSON text of the values it accepts, each value followed by the optional
 * whitespace llama.cpp's converter allows (`space`: nothing, one blank, or
 * one or two line breaks and up to 20 blanks or tabs). Objects list their
 * declared properties in declaration order, each required one present and
 * each optional one present or not; strings, numbers and literals follow
 * RFC 8259 (numbers with at most 16 digits per part, as llama.cpp).
 *
 * Supported: type (one or a list), properties, required,
 * additionalProperties (absent = no other members when properties are
 * declared, any members otherwise), items, prefixItems, minItems,
 * maxItems, minLength, maxLength, enum, const, anyOf, oneOf (as anyOf),
 * allOf of object schemas (merged), $ref to #/$defs/... or
 * #/definitions/... (recursive references become recursive rules), and
 * format date, time, date-time and uuid. Annotations are ignored; any
 * other keyword is an error naming it, never silently dropped. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/json.h"
#include "tokenizer/grammar.h"

#define MAX_DEPTH 64        /* nested schemas */
#define MAX_REPEAT 1000     /* the grammar's own bound on {m,n} */

typedef struct strbuf {
    char *s;
    size_t n, cap;
    bool oom;
} strbuf;

typedef struct ref_rule {
    const char *path; /* the "$ref" text (points into the parsed schema) */
    int id;
} ref_rule;

typedef struct conv {
    const g4_json *doc;
    strbuf out; /* the rules written so far */
    int n_rules;
    ref_rule *refs;
    int n_refs;
    int depth;
    char *err;
    bool failed;
} conv;

static void put(strbuf *b, const char *s, size_t n) {
    if (b->oom || !n) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->s, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->s = q, b->cap = c;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void puts_(strbuf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(strbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static bool fail(conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(conv *c, const char *fmt, ...) {
    if (c->failed) return false;
    c->failed = true;
    va_list ap;
    va_start(ap, fmt);
    g4_verror(c->err, "json schema", fmt, ap);
    va_end(ap);
    for (char *p = c->err; *p; p++) /* names from the schema may hold line breaks: keep one line */
        if ((unsigned char)*p < 0x20) *p = '?';
    return false;
}

/* A GBNF literal matching exactly the n bytes of s. */
static void put_literal(strbuf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') putf(b, "\\%c", c);
        else if (c == '\n') put(b, "\\n", 2);
        else if (c < 0x20 || c == 0x7f) putf(b, "\\x%02X", c);
        else put(b, (const char *)&c, 1);
    }
    put(b, "\"", 1);
}

/* The compact JSON text of a value (keys in document order). */
static void put_json(strbuf *b, const g4_json *v) {
    switch (v->type) {
    case G4_JSON_NULL: put(b, "null", 4); break;
    case G4_JSON_BOOL: v->boolean ? put(b, "true", 4) : put(b, "false", 5); break;
    case G4_JSON_NUMBER:
        if (v->is_int) putf(b, "%lld", (long long)v->integer);
        else {
            char tmp[40];
            for (int prec = 15; prec <= 17; prec++) { /* the shortest text that reads back the same */
                snprintf(tmp, sizeof tmp, "%.*g", prec, v->number);
                if (strtod(tmp, NULL) == v->number) break;
            }
            put(b, tmp, strlen(tmp));
        }
        break;
    case G4_JSON_STRING:
        put(b, "\"", 1);
        for (size_t i = 0; i < v->len; i++) {
            unsigned char c = (unsigned char)v->str[i];
            if (c == '"' || c == '\\') putf(b, "\\%c", c);
            else if (c == '\n') put(b, "\\n", 2);
            else if (c == '\t') put(b, "\\t", 2);
            else if (c < 0x20) putf(b, "\\u%04x", c);
            else put(b, (const char *)&c, 1);
        }
        put(b, "\"", 1);
        break;
    case G4_JSON_ARRAY:
    case G4_JSON_OBJECT:
        put(b, v->type == G4_JSON_ARRAY ? "[" : "{", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) put(b, ",", 1);
            if (v->type == G4_JSON_OBJECT) {
                g4_json key = {.type = G4_JSON_STRING, .str = v->keys[i].str, .len = v->keys[i].len};
                put_json(b, &key);
                put(b, ":", 1);
            }
            put_json(b, &v->items[i]);
        }
        put(b, v->type == G4_JSON_ARRAY ? "]" : "}", 1);
        break;
    }
}

/* Writes "sN ::= body" and returns N. */
static int add_rule(conv *c, const strbuf *body) {
    int id = ++c->n_rules;
    putf(&c->out, "s%d ::= ", id);
    put(&c->out, body->n ? body->s : "\"\"", body->n ? body->n : 2); /* an empty line would continue the rule */
    put(&c->out, "\n", 1);
    if (body->oom) c->out.oom = true;
    return id;
}

static bool visit(conv *c, const g4_json *s, strbuf *expr);

static const char *const annotations[] = {"title", "description", "$schema", "$id", "$comment", "default", "examples",
                                          "$defs", "definitions", "readOnly", "writeOnly", "deprecated", NULL};
static const char *const keywords[] = {"type", "properties", "required", "additionalProperties", "items",
                                       "prefixItems", "minItems", "maxItems", "minLength", "maxLength", "enum",
                                       "const", "anyOf", "oneOf", "allOf", "$ref", "format", NULL};

static bool listed(const char *const *list, const char *key) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], key)) return true;
    return false;
}

/* A non-negative integer member (absent: dflt), at most MAX_REPEAT. */
static bool count_of(conv *c, const g4_json *s, const char *key, long long dflt, long long *v) {
    const g4_json *m = g4_json_get(s, key);
    *v = dflt;
    if (!m) return true;
    if (m->type != G4_JSON_NUMBER || !m->is_int || m->integer < 0) return fail(c, "'%s' must be a non-negative integer", key);
    if (m->integer > MAX_REPEAT) return fail(c, "'%s' of %lld is above the supported %d", key, (long long)m->integer, MAX_REPEAT);
    *v = m->integer;
    return true;
}

/* "{m,n}" after an item that may repeat between lo and hi (hi < 0: no bound) times. */
static void put_bounds(strbuf *b, long long lo, long long hi) {
    if (hi < 0) putf(b, "{%lld,}", lo);
    else if (lo == hi) putf(b, "{%lld}", lo);
    else putf(b, "{%lld,%lld}", lo, hi);
}

static bool visit_enum(conv *c, const g4_json *values, strbuf *expr) {
    if (values->type != G4_JSON_ARRAY || !values->len) return fail(c, "'enum' must be a non-empty array");
    put(expr, "(", 1);
    for (size_t i = 0; i < values->len; i++) {
        strbuf text = {0};
        put_json(&text, &values->items[i]);
        if (i) put(expr, " | ", 3);
        put_literal(expr, text.s ? text.s : "", text.n);
        if (text.oom) expr->oom = true;
        free(text.s);
    }
    put(expr, ") space", 7);
    return true;
}

static bool visit_string(conv *c, const g4_json *s, strbuf *expr) {
    const g4_json *format = g4_json_get(s, "format");
    if (format) {
        static const char *const formats[][2] = {
            {"date", "\"\\\"\" date \"\\\"\" space"},
            {"time", "\"\\\"\" time \"\\\"\" space"},
            {"date-time", "\"\\\"\" date \"T\" time \"\\\"\" space"},
            {"uuid", "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12} \"\\\"\" space"},
        };
        for (size_t i = 0; format->type == G4_JSON_STRING && i < sizeof formats / sizeof *formats; i++)
            if (!strcmp(format->str, formats[i][0])) {
                if (g4_json_get(s, "minLength") || g4_json_get(s, "maxLength"))
                    return fail(c, "'format' together with 'minLength' or 'maxLength' is not supported");
                put(expr, formats[i][1], strlen(formats[i][1]));
                return true;
            }
        return fail(c, "'format' %s%s%s is not supported (date, time, date-time, uuid are)",
                    format->type == G4_JSON_STRING ? "\"" : "", format->type == G4_JSON_STRING ? format->str : "of this type",
                    format->type == G4_JSON_STRING ? "\"" : "");
    }
    long long lo, hi;
    if (!count_of(c, s, "minLength", 0, &lo) || !count_of(c, s, "maxLength", -1, &hi)) return false;
    if (hi >= 0 && hi < lo) return fail(c, "'maxLength' %lld is below 'minLength' %lld", hi, lo);
    if (lo == 0 && hi < 0) {
        put(expr, "string", 6);
        return true;
    }
    put(expr, "\"\\\"\" char", 9);
    put_bounds(expr, lo, hi);
    put(expr, " \"\\\"\" space", 11);
    return true;
}

static bool visit_array(conv *c, const g4_json *s, strbuf *expr) {
    const g4_json *items = g4_json_get(s, "items"), *prefix = g4_json_get(s, "prefixItems");
    long long lo, hi;
    if (!count_of(c, s, "minItems", 0, &lo) || !count_of(c, s, "maxItems", -1, &hi)) return false;
    if (hi >= 0 && hi < lo) return fail(c, "'maxItems' %lld is below 'minItems' %lld", hi, lo);
    strbuf body = {0};
    put(&body, "\"[\" space ", 10);
    bool ok = true;
    if (prefix && prefix->type == G4_JSON_ARRAY && !prefix->len) prefix = NULL;
    if (prefix) { /* a tuple: exactly these items, then more of `items` if it is a schema */
        if (prefix->type != G4_JSON_ARRAY) ok = fail(c, "'prefixItems' must be an array");
        else if (g4_json_get(s, "minItems") || g4_json_get(s, "maxItems"))
            ok = fail(c, "'minItems' or 'maxItems' with 'prefixItems' is not supported");
        for (size_t i = 0; ok && i < prefix->len; i++) {
            if (i) put(&body, "\",\" space ", 10);
            ok = visit(c, &prefix->items[i], &body);
            put(&body, " ", 1);
        }
        bool more = items && !(items->type == G4_JSON_BOOL && !items->boolean);
        if (ok && more) {
            put(&body, "(\",\" space ", 11);
            ok = visit(c, items, &body);
            put(&body, ")* ", 3);
        }
    } else {
        strbuf item = {0};
        if (items && items->type == G4_JSON_BOOL && !items->boolean) hi = 0;
        else if (items) ok = visit(c, items, &item);
        else put(&item, "value", 5);
        if (ok && hi != 0) { /* item ("," space item){lo-1,hi-1}, optional when lo = 0 */
            put(&body, "(", 1);
            put(&body, item.s, item.n);
            put(&body, " (\",\" space ", 12);
            put(&body, item.s, item.n);
            put(&body, ")", 1);
            put_bounds(&body, lo ? lo - 1 : 0, hi < 0 ? -1 : hi - 1);
            put(&body, lo ? ") " : ")? ", lo ? 2 : 3);
        } else if (ok && lo > 0) {
            ok = fail(c, "'minItems' %lld with no items allowed", lo);
        }
        if (item.oom) body.oom = true;
        free(item.s);
    }
    put(&body, "\"]\" space", 9);
    if (ok) putf(expr, "s%d", add_rule(c, &body));
    free(body.s);
    return ok;
}

/* Properties gathered from an object schema and the object schemas of
 * its allOf, in order. */
typedef struct member {
    const char *name;
    size_t len;
    const g4_json *schema;
    bool required;
} member;

static const g4_json *resolve(conv *c, const g4_json *s);

static bool gather(conv *c, const g4_json *s, member **m, size_t *n, const g4_json **extra, int depth) {
    if (depth > MAX_DEPTH) return fail(c, "'allOf' nested deeper than %d", MAX_DEPTH);
    const g4_json *all = g4_json_get(s, "allOf");
    if (all) {
        if (all->type != G4_JSON_ARRAY) return fail(c, "'allOf' must be an array");
        for (size_t i = 0; i < all->len; i++) {
            const g4_json *sub = resolve(c, &all->items[i]);
            if (!sub) return false;
            const g4_json *t = g4_json_get(sub, "type");
            if (sub->type != G4_JSON_OBJECT || (t && !(t->type == G4_JSON_STRING && !strcmp(t->str, "object"))) ||
                g4_json_get(sub, "anyOf") || g4_json_get(sub, "oneOf") || g4_json_get(sub, "enum") || g4_json_get(sub, "const"))
                return fail(c, "'allOf' is supported only over object schemas with properties");
            if (!gather(c, sub, m, n, extra, depth + 1)) return false;
        }
    }
    const g4_json *props = g4_json_get(s, "properties"), *req = g4_json_get(s, "required");
    const g4_json *add = g4_json_get(s, "additionalProperties");
    if (props && props->type != G4_JSON_OBJECT) return fail(c, "'properties' must be an object");
    if (req && req->type != G4_JSON_ARRAY) return fail(c, "'required' must be an array of names");
    if (add && add->type != G4_JSON_BOOL && add->type != G4_JSON_OBJECT)
        return fail(c, "'additionalProperties' must be a boolean or a schema");
    if (add) *extra = add;
    for (size_t i = 0; props && i < props->len; i++) {
        size_t k = 0;
        while (k < *n && !((*m)[k].len == props->keys[i].len && !memcmp((*m)[k].name, props->keys[i].str, (*m)[k].len))) k++;
        if (k == *n) {
            member *q = realloc(*m, (*n + 1) * sizeof *q);
            if (!q) return fail(c, "out of memory");
            *m = q;
            (*n)++;
            (*m)[k] = (member){props->keys[i].str, props->keys[i].len, &props->items[i], false};
        } else if ((*m)[k].schema != &props->items[i]) {
            return fail(c, "property \"%s\" is declared twice under 'allOf'", props->keys[i].str);
        }
    }
    for (size_t i = 0; req && i < req->len; i++) {
        const g4_json *r = &req->items[i];
        if (r->type != G4_JSON_STRING) return fail(c, "'required' must be an array of names");
        size_t k = 0;
        while (k < *n && !((*m)[k].len == r->len && !memcmp((*m)[k].name, r->str, r->len))) k++;
        if (k == *n) return fail(c, "required property \"%s\" is not among the 'properties'", r->str);
        (*m)[k].required = true;
    }
    return true;
}

/* Code points of a UTF-8 name (valid: it came through the JSON parser). */
static size_t decode(const char *s, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        uint32_t v = len == 1 ? c : c & (0x7f >> len);
        for (size_t j = 1; j < len && i + j < n; j++) v = v << 6 | ((unsigned char)s[i + j] & 0x3f);
        out[k] = v;
        i += len;
    }
    return k;
}

/* The rest of a key string, after a prefix shared by the names idx[0..m)
 * (depth code points long), that ends up none of those names: a rule per
 * node of the names' trie. */
static int key_rest(conv *c, uint32_t *const *names, const size_t *lens, const size_t *idx, size_t m, size_t depth) {
    strbuf b = {0}, other = {0};
    size_t *sub = malloc((m + 1) * sizeof *sub);
    bool is_name = false;
    puts_(&other, "[^\"\\\\\\x7F\\x00-\\x1F");
    for (size_t i = 0; sub && i < m && !c->failed; i++) {
        size_t k = idx[i];
        if (lens[k] == depth) {
            is_name = true;
            continue;
        }
        uint32_t cp = names[k][depth];
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = lens[idx[j]] > depth && names[idx[j]][depth] == cp;
        if (seen) continue;
        size_t n_sub = 0;
        for (size_t j = i; j < m; j++)
            if (lens[idx[j]] > depth && names[idx[j]][depth] == cp) sub[n_sub++] = idx[j];
        int child = key_rest(c, names, lens, sub, n_sub, depth + 1);
        char utf8[5] = {0};
        g4_json one = {.type = G4_JSON_STRING, .str = utf8, .len = 0};
        if (cp < 0x80) utf8[one.len++] = (char)cp;
        else if (cp < 0x800) utf8[one.len++] = (char)(0xc0 | cp >> 6), utf8[one.len++] = (char)(0x80 | (cp & 0x3f));
        else if (cp < 0x10000)
            utf8[one.len++] = (char)(0xe0 | cp >> 12), utf8[one.len++] = (char)(0x80 | (cp >> 6 & 0x3f)),
            utf8[one.len++] = (char)(0x80 | (cp & 0x3f));
        else
            utf8[one.len++] = (char)(0xf0 | cp >> 18), utf8[one.len++] = (char)(0x80 | (cp >> 12 & 0x3f)),
            utf8[one.len++] = (char)(0x80 | (cp >> 6 & 0x3f)), utf8[one.len++] = (char)(0x80 | (cp & 0x3f));
        strbuf text = {0}; /* the character as JSON writes it, quotes cut off */
        put_json(&text, &one);
        if (b.n) put(&b, " | ", 3);
        if (text.n >= 2) put_literal(&b, text.s + 1, text.n - 2);
        putf(&b, " s%d", child);
        putf(&other, "\\U%08X", (unsigned)cp);
        free(text.s);
    }
    puts_(&other, "] char* \"\\\"\" | escape char* \"\\\"\"");
    if (b.n) put(&b, " | ", 3);
    put(&b, other.s, other.n);
    if (!is_name) puts_(&b, " | \"\\\"\""); /* the string may end here */
    int id = c->failed || !sub ? 0 : add_rule(c, &b);
    if (!sub) fail(c, "out of memory");
    free(sub), free(b.s), free(other.s);
    return id;
}

/* "a key string that is none of the n declared names". */
static int other_key(conv *c, const member *m, size_t n) {
    uint32_t **names = calloc(n + 1, sizeof *names);
    size_t *lens = calloc(n + 1, sizeof *lens), *idx = calloc(n + 1, sizeof *idx);
    bool ok = names && lens && idx;
    for (size_t i = 0; ok && i < n; i++) {
        if (m[i].len > MAX_REPEAT) ok = fail(c, "property names beside 'additionalProperties' are limited to %d bytes", MAX_REPEAT);
        else if (!(names[i] = malloc((m[i].len + 1) * sizeof **names))) ok = fail(c, "out of memory");
        else lens[i] = decode(m[i].name, m[i].len, names[i]), idx[i] = i;
    }
    int id = ok ? key_rest(c, names, lens, idx, n, 0) : 0;
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    free(names), free(lens), free(idx);
    return id;
}

/* Members in order, each required one present: rules first_i (nothing
 * written before) and rest_i (a comma before each member written). */
static bool visit_object(conv *c, const g4_json *s, strbuf *expr) {
    member *m = NULL;
    size_t n = 0;
    const g4_json *extra = NULL;
    bool ok = gather(c, s, &m, &n, &extra, 0);
    if (ok && !extra && !n && !g4_json_get(s, "properties")) extra = &(g4_json){.type = G4_JSON_BOOL, .boolean = true};
    strbuf kv_extra = {0};
    if (ok && extra && !(extra->type == G4_JSON_BOOL && !extra->boolean)) {
        if (n) { /* a key of none of the declared properties */
            int key = other_key(c, m, n);
            putf(&kv_extra, "\"\\\"\" s%d space \":\" space ", key);
            ok = !c->failed;
        } else {
            put(&kv_extra, "string \":\" space ", 17);
        }
        if (extra->type == G4_JSON_BOOL) put(&kv_extra, "value", 5);
        else ok = ok && visit(c, extra, &kv_extra);
    }
    int first_next = 0, rest_next = 0; /* rules for the members after i */
    if (ok) {
        strbuf b = {0};
        if (kv_extra.n) { /* members beyond the declared ones, after them */
            put(&b, "(", 1), put(&b, kv_extra.s, kv_extra.n), put(&b, " (\",\" space ", 12);
            put(&b, kv_extra.s, kv_extra.n), put(&b, ")*)?", 4);
        }
        first_next = add_rule(c, &b);
        b.n = 0;
        if (kv_extra.n) put(&b, "(\",\" space ", 11), put(&b, kv_extra.s, kv_extra.n), put(&b, ")*", 2);
        rest_next = add_rule(c, &b);
        if (kv_extra.oom) c->out.oom = true;
        free(b.s);
    }
    for (size_t i = n; ok && i-- > 0;) {
        strbuf kv = {0}, key = {0}, first = {0}, rest = {0};
        put_json(&key, &(g4_json){.type = G4_JSON_STRING, .str = (char *)m[i].name, .len = m[i].len});
        put_literal(&kv, key.s ? key.s : "", key.n); /* the key in quotes, JSON-escaped, as one GBNF literal */
        put(&kv, " space \":\" space ", 17);
        ok = visit(c, m[i].schema, &kv) && !key.oom;
        put(&first, kv.s, kv.n);
        putf(&first, " s%d", rest_next);
        if (!m[i].required) putf(&first, " | s%d", first_next);
        put(&rest, "\",\" space ", 10);
        put(&rest, kv.s, kv.n);
        putf(&rest, " s%d", rest_next);
        if (!m[i].required) putf(&rest, " | s%d", rest_next);
        if (kv.oom) first.oom = true;
        if (ok) first_next = add_rule(c, &first), rest_next = add_rule(c, &rest);
        free(kv.s), free(key.s), free(first.s), free(rest.s);
    }
    if (ok) putf(expr, "\"{\" space s%d \"}\" space", first_next);
    free(kv_extra.s);
    free(m);
    return ok;
}

/* The schema $ref names (only local #/$defs/... and #/definitions/...). */
static const g4_json *lookup_ref(conv *c, const char *ref) {
    const char *p = NULL;
    if (!strncmp(ref, "#/$defs/", 8)) p = ref + 8;
    else if (!strncmp(ref, "#/definitions/", 14)) p = ref + 14;
    if (!p) {
        fail(c, "'$ref' \"%s\" is not supported (only #/$defs/NAME and #/definitions/NAME)", ref);
        return NULL;
    }
    const g4_json *defs = g4_json_get(c->doc, ref[2] == '$' ? "$defs" : "definitions");
    char name[256];
    size_t n = 0;
    for (; *p && *p != '/' && n + 1 < sizeof name; p++) { /* JSON pointer escapes ~0 ~1 */
        if (*p == '~' && (p[1] == '0' || p[1] == '1')) name[n++] = p[1] == '0' ? '~' : '/', p++;
        else name[n++] = *p;
    }
    name[n] = 0;
    const g4_json *t = *p ? NULL : g4_json_get(defs, name);
    if (!t) fail(c, "'$ref' \"%s\" points to nothing", ref);
    return t;
}

/* A schema with its $ref followed (for allOf), NULL with the error set. */
static const g4_json *resolve(conv *c, const g4_json *s) {
    for (int hops = 0; s && s->type == G4_JSON_OBJECT && g4_json_get(s, "$ref"); hops++) {
        const g4_json *r = g4_json_get_type(s, "$ref", G4_JSON_STRING);
        if (!r) return fail(c, "'$ref' must be a string"), NULL;
        if (hops > MAX_DEPTH) return fail(c, "'$ref' chain longer than %d", MAX_DEPTH), NULL;
        s = lookup_ref(c, r->str);
    }
    return s;
}

static bool visit_ref(conv *c, const g4_json *ref, strbuf *expr) {
    if (ref->type != G4_JSON_STRING) return fail(c, "'$ref' must be a string");
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].path, ref->str)) { /* already written, or being written: recursion */
            putf(expr, "s%d", c->refs[i].id);
            return true;
        }
    const g4_json *target = lookup_ref(c, ref->str);
    if (!target) return false;
    ref_rule *q = realloc(c->refs, (size_t)(c->n_refs + 1) * sizeof *q);
    if (!q) return fail(c, "out of memory");
    c->refs = q;
    int id = ++c->n_rules; /* reserved now so that the target may refer to itself */
    c->refs[c->n_refs++] = (ref_rule){ref->str, id};
    strbuf body = {0};
    bool ok = visit(c, target, &body);
    if (ok) {
        putf(&c->out, "s%d ::= ", id);
        put(&c->out, body.s, body.n);
        put(&c->out, "\n", 1);
        putf(expr, "s%d", id);
    }
    if (body.oom) c->out.oom = true;
    free(body.s);
    return ok;
}

static bool visit_type(conv *c, const g4_json *s, const char *type, strbuf *expr) {
    if (!strcmp(type, "string")) return visit_string(c, s, expr);
    if (!strcmp(type, "object")) return visit_object(c, s, expr);
    if (!strcmp(type, "array")) return visit_array(c, s, expr);
    if (!strcmp(type, "number") || !strcmp(type, "integer") || !strcmp(type, "boolean") || !strcmp(type, "null")) {
        put(expr, type, strlen(type));
        return true;
    }
    return fail(c, "unknown type \"%s\"", type);
}

static bool visit(conv *c, const g4_json *s, strbuf *expr) {
    if (s->type == G4_JSON_BOOL) {
        if (!s->boolean) return fail(c, "the schema false matches nothing");
        put(expr, "value", 5);
        return true;
    }
    if (s->type != G4_JSON_OBJECT) return fail(c, "a schema must be an object or a boolean, not %s", g4_json_type_name(s->type));
    if (++c->depth > MAX_DEPTH) return fail(c, "schemas nested deeper than %d", MAX_DEPTH);
    for (size_t i = 0; i < s->len; i++)
        if (!listed(keywords, s->keys[i].str) && !listed(annotations, s->keys[i].str))
            return fail(c, "keyword '%s' is not supported", s->keys[i].str);
    const g4_json *t = g4_json_get(s, "type"), *any = g4_json_get(s, "anyOf");
    if (!any) any = g4_json_get(s, "oneOf");
    bool ok = true;
    if (g4_json_get(s, "$ref")) {
        if (s->len > 1 && (t || any || g4_json_get(s, "properties") || g4_json_get(s, "enum")))
            ok = fail(c, "'$ref' beside other constraints is not supported");
        else ok = visit_ref(c, g4_json_get(s, "$ref"), expr);
    } else if (g4_json_get(s, "const")) {
        g4_json one = {.type = G4_JSON_ARRAY, .len = 1, .items = (g4_json *)g4_json_get(s, "const")};
        ok = visit_enum(c, &one, expr);
    } else if (g4_json_get(s, "enum")) {
        ok = visit_enum(c, g4_json_get(s, "enum"), expr);
    } else if (any) {
        if (any->type != G4_JSON_ARRAY || !any->len) ok = fail(c, "'anyOf' / 'oneOf' must be a non-empty array");
        put(expr, "(", 1);
        for (size_t i = 0; ok && i < any->len; i++) {
            if (i) put(expr, " | ", 3);
            ok = visit(c, &any->items[i], expr);
        }
        put(expr, ")", 1);
    } else if (t && t->type == G4_JSON_STRING) {
        ok = visit_type(c, s, t->str, expr);
    } else if (t && t->type == G4_JSON_ARRAY) {
        put(expr, "(", 1);
        for (size_t i = 0; ok && i < t->len; i++) {
            if (i) put(expr, " | ", 3);
            if (t->items[i].type != G4_JSON_STRING) ok = fail(c, "'type' must be a name or an array of names");
            else ok = visit_type(c, s, t->items[i].str, expr);
        }
        put(expr, ")", 1);
        if (ok && !t->len) ok = fail(c, "'type' is an empty array");
    } else if (t) {
        ok = fail(c, "'type' must be a name or an array of names");
    } else if (g4_json_get(s, "properties") || g4_json_get(s, "allOf") || g4_json_get(s, "additionalProperties")) {
        ok = visit_object(c, s, expr);
    } else if (g4_json_get(s, "items") || g4_json_get(s, "prefixItems")) {
        ok = visit_array(c, s, expr);
    } else {
        put(expr, "value", 5);
    }
    c->depth--;
    return ok;
}

static const char builtins[] =
    "space ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\n"
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | escape\n"
    "escape ::= \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CeEfF] [0-9a-fA-F]{3}"
    " | [dD] [0-7] [0-9a-fA-F]{2} | [dD] [89abAB] [0-9a-fA-F]{2} \"\\\\u\" [dD] [c-fC-F] [0-9a-fA-F]{2}))\n"
    "string ::= \"\\\"\" char* \"\\\"\" space\n"
    "integral-part ::= \"0\" | [1-9] [0-9]{0,15}\n"
    "number ::= \"-\"? integral-part (\".\" [0-9]{1,16})? ([eE] [-+]? integral-part)? space\n"
    "integer ::= \"-\"? integral-part space\n"
    "boolean ::= (\"true\" | \"false\") space\n"
    "null ::= \"null\" space\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" space (string \":\" space value (\",\" space string \":\" space value)*)? \"}\" space\n"
    "array ::= \"[\" space (value (\",\" space value)*)? \"]\" space\n"
    "date ::= [0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])\n"
    "time ::= ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{3})?"
    " (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])\n";

char *g4_json_schema_to_gbnf(const char *schema, size_t len, char *err) {
    g4_json *doc = g4_json_parse(schema, len, "json schema", err);
    if (!doc) return NULL;
    conv c = {.doc = doc, .err = err};
    strbuf root = {0};
    put(&c.out, builtins, sizeof builtins - 1);
    bool ok = visit(&c, doc, &root) && !c.failed; /* the first error stands, whatever came after it */
    put(&c.out, "root ::= ", 9);
    put(&c.out, root.s ? root.s : "", root.n);
    put(&c.out, "\n", 1);
    if (ok && (c.out.oom || root.oom)) ok = fail(&c, "out of memory");
    free(root.s);
    free(c.refs);
    g4_json_free(doc);
    if (!ok) {
        free(c.out.s);
        return NULL;
    }
    return c.out.s;
}
