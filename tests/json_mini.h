/* A small JSON reader for the test fixtures (not part of the library):
 * parses a whole document into a tree of json_value. Strings are decoded to
 * UTF-8 (\u escapes, surrogate pairs); numbers are doubles. */
#ifndef G4_JSON_MINI_H
#define G4_JSON_MINI_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct json_value {
    enum json_type type;
    double number;             /* JSON_NUMBER, JSON_BOOL (0/1) */
    char *str;                 /* JSON_STRING (NUL-terminated, may hold NULs) */
    size_t len;                /* string bytes, or item count */
    struct json_value *items;  /* JSON_ARRAY / JSON_OBJECT values */
    char **keys;               /* JSON_OBJECT keys */
} json_value;

typedef struct json_cursor {
    const char *p, *end;
    bool bad;
} json_cursor;

static void json_skip_ws(json_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static unsigned json_hex4(json_cursor *c) {
    unsigned u = 0;
    for (int i = 0; i < 4; i++, c->p++) {
        char h = c->p < c->end ? *c->p : 0;
        int d = h >= '0' && h <= '9' ? h - '0' : (h | 0x20) >= 'a' && (h | 0x20) <= 'f' ? (h | 0x20) - 'a' + 10 : -1;
        if (d < 0) c->bad = true;
        u = u * 16 + (unsigned)(d < 0 ? 0 : d);
    }
    return u;
}

static size_t json_put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 63)), o[2] = (char)(0x80 | (cp & 63)), 3;
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)), o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Reads a string after its opening quote; the decoded form is never longer. */
static char *json_string(json_cursor *c, size_t *len) {
    char *out = malloc((size_t)(c->end - c->p) + 1);
    size_t n = 0;
    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if (ch != '\\') {
            out[n++] = ch;
            continue;
        }
        char e = c->p < c->end ? *c->p++ : 0;
        switch (e) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case '"': case '\\': case '/': out[n++] = e; break;
        case 'u': {
            unsigned cp = json_hex4(c);
            if (cp >= 0xd800 && cp < 0xdc00 && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
                const char *save = c->p;
                c->p += 2;
                unsigned lo = json_hex4(c);
                if (lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                else c->p = save;
            }
            n += json_put_utf8(out + n, cp);
            break;
        }
        default: c->bad = true;
        }
    }
    if (c->p >= c->end) c->bad = true;
    else c->p++;
    out[n] = 0;
    *len = n;
    return out;
}

static void json_parse_value(json_cursor *c, json_value *v);

static void json_append(json_cursor *c, json_value *v, char *key) {
    json_value *items = realloc(v->items, (v->len + 1) * sizeof *items);
    items[v->len] = (json_value){0};
    v->items = items;
    if (v->type == JSON_OBJECT) {
        v->keys = realloc(v->keys, (v->len + 1) * sizeof *v->keys);
        v->keys[v->len] = key;
    }
    json_parse_value(c, &v->items[v->len++]);
}

static void json_parse_value(json_cursor *c, json_value *v) {
    json_skip_ws(c);
    if (c->p >= c->end) {
        c->bad = true;
        return;
    }
    char ch = *c->p;
    if (ch == '"') {
        c->p++;
        v->type = JSON_STRING;
        v->str = json_string(c, &v->len);
    } else if (ch == '[' || ch == '{') {
        v->type = ch == '[' ? JSON_ARRAY : JSON_OBJECT;
        c->p++;
        json_skip_ws(c);
        char close = ch == '[' ? ']' : '}';
        while (!c->bad && c->p < c->end && *c->p != close) {
            char *key = NULL;
            if (v->type == JSON_OBJECT) {
                size_t kl;
                if (*c->p != '"') { c->bad = true; break; }
                c->p++;
                key = json_string(c, &kl);
                json_skip_ws(c);
                if (c->p >= c->end || *c->p != ':') { free(key); c->bad = true; break; }
                c->p++;
            }
            json_append(c, v, key);
            json_skip_ws(c);
            if (c->p < c->end && *c->p == ',') c->p++, json_skip_ws(c);
        }
        if (c->p < c->end && *c->p == close) c->p++;
        else c->bad = true;
    } else if (!strncmp(c->p, "true", 4) || !strncmp(c->p, "false", 5) || !strncmp(c->p, "null", 4)) {
        v->type = ch == 'n' ? JSON_NULL : JSON_BOOL;
        v->number = ch == 't';
        c->p += ch == 'f' ? 5 : 4;
    } else {
        char *e;
        v->type = JSON_NUMBER;
        v->number = strtod(c->p, &e);
        if (e == c->p) c->bad = true;
        c->p = e;
    }
}

static void json_free(json_value *v) {
    if (!v) return;
    for (size_t i = 0; v->type >= JSON_ARRAY && i < v->len; i++) {
        json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

/* Parses text (which must stay NUL-terminated past end); false if malformed. */
static bool json_parse(const char *text, size_t n, json_value *out) {
    json_cursor c = {text, text + n, false};
    *out = (json_value){0};
    json_parse_value(&c, out);
    return !c.bad;
}

static const json_value *json_get(const json_value *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

#endif
