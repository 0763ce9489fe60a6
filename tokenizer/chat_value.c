/* The chat value tree and its Gemma 4 text form. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/json.h"
#include "tokenizer/chat_internal.h"

static g4_chat_value *value_new(g4_chat_value_type type) {
    g4_chat_value *v = calloc(1, sizeof *v);
    if (v) v->type = type;
    return v;
}

g4_chat_value *g4_chat_null(void) { return value_new(G4_CHAT_NULL); }
g4_chat_value *g4_chat_array(void) { return value_new(G4_CHAT_ARRAY); }
g4_chat_value *g4_chat_object(void) { return value_new(G4_CHAT_OBJECT); }

g4_chat_value *g4_chat_bool(bool b) {
    g4_chat_value *v = value_new(G4_CHAT_BOOL);
    if (v) v->b = b;
    return v;
}

g4_chat_value *g4_chat_int(int64_t i) {
    g4_chat_value *v = value_new(G4_CHAT_INT);
    if (v) v->i = i;
    return v;
}

g4_chat_value *g4_chat_float(double f) {
    g4_chat_value *v = value_new(G4_CHAT_FLOAT);
    if (v) v->f = f;
    return v;
}

g4_chat_value *g4_chat_string(const char *s, size_t len) {
    g4_chat_value *v = value_new(G4_CHAT_STRING);
    if (!v) return NULL;
    v->str = malloc(len + 1);
    if (!v->str) {
        free(v);
        return NULL;
    }
    if (len) memcpy(v->str, s, len);
    v->str[len] = '\0';
    v->len = len;
    return v;
}

void g4_chat_value_free(g4_chat_value *v) {
    if (!v) return;
    for (size_t k = 0; k < v->len && v->items; k++) {
        g4_chat_value_free(v->items[k]);
        if (v->keys) free(v->keys[k]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

/* Room for one more element (and key, for objects). */
static int reserve_one(g4_chat_value *c) {
    if (c->len < c->cap) return 0;
    size_t cap = c->cap ? c->cap * 2 : 4;
    g4_chat_value **items = realloc(c->items, cap * sizeof *items);
    if (!items) return -1;
    c->items = items;
    if (c->type == G4_CHAT_OBJECT) {
        char **keys = realloc(c->keys, cap * sizeof *keys);
        if (!keys) return -1;
        c->keys = keys;
    }
    c->cap = cap;
    return 0;
}

int g4_chat_array_push(g4_chat_value *array, g4_chat_value *item) {
    if (!array || array->type != G4_CHAT_ARRAY || !item || reserve_one(array)) {
        g4_chat_value_free(item);
        return -1;
    }
    array->items[array->len++] = item;
    return 0;
}

int g4_chat_object_set(g4_chat_value *object, const char *key, g4_chat_value *item) {
    if (!object || object->type != G4_CHAT_OBJECT || !key || !item) {
        g4_chat_value_free(item);
        return -1;
    }
    for (size_t k = 0; k < object->len; k++) {
        if (strcmp(object->keys[k], key) == 0) {
            g4_chat_value_free(object->items[k]);
            object->items[k] = item;
            return 0;
        }
    }
    char *copy = strdup(key);
    if (!copy || reserve_one(object)) {
        free(copy);
        g4_chat_value_free(item);
        return -1;
    }
    object->keys[object->len] = copy;
    object->items[object->len++] = item;
    return 0;
}

const g4_chat_value *g4_chat_object_get(const g4_chat_value *v, const char *key) {
    if (!v || v->type != G4_CHAT_OBJECT) return NULL;
    for (size_t k = 0; k < v->len; k++)
        if (strcmp(v->keys[k], key) == 0) return v->items[k];
    return NULL;
}

bool g4_chat_truthy(const g4_chat_value *v) {
    if (!v) return false;
    switch (v->type) {
    case G4_CHAT_NULL: return false;
    case G4_CHAT_BOOL: return v->b;
    case G4_CHAT_INT: return v->i != 0;
    case G4_CHAT_FLOAT: return v->f != 0;
    default: return v->len != 0; /* strings, arrays, objects */
    }
}

void g4_chat_buf_add(g4_chat_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void g4_chat_buf_str(g4_chat_buf *b, const char *s) { g4_chat_buf_add(b, s, strlen(s)); }

void g4_chat_buf_mark(g4_chat_buf *b, const char *marker) {
    if (b->oom) return;
    if (b->n_marks == b->marks_cap) {
        size_t cap = b->marks_cap ? 2 * b->marks_cap : 32;
        g4_chat_span *m = realloc(b->marks, cap * sizeof *m);
        if (!m) {
            b->oom = true;
            return;
        }
        b->marks = m;
        b->marks_cap = cap;
    }
    b->marks[b->n_marks++] = (g4_chat_span){b->len, strlen(marker)};
    g4_chat_buf_str(b, marker);
}

typedef struct key_slot {
    const char *key;
    size_t index;
} key_slot;

static int ascii_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int compare_slots(const void *pa, const void *pb) {
    const key_slot *a = pa, *b = pb;
    const unsigned char *x = (const unsigned char *)a->key, *y = (const unsigned char *)b->key;
    while (*x && ascii_lower(*x) == ascii_lower(*y)) x++, y++;
    int d = ascii_lower(*x) - ascii_lower(*y);
    if (d) return d;
    return a->index < b->index ? -1 : a->index > b->index;
}

size_t *g4_chat_sorted_keys(const g4_chat_value *obj, g4_chat_buf *b) {
    if (obj->len == 0) return NULL;
    key_slot *slots = malloc(obj->len * sizeof *slots);
    size_t *order = malloc(obj->len * sizeof *order);
    if (!slots || !order) {
        free(slots);
        free(order);
        b->oom = true;
        return NULL;
    }
    for (size_t k = 0; k < obj->len; k++) slots[k] = (key_slot){obj->keys[k], k};
    qsort(slots, obj->len, sizeof *slots, compare_slots);
    for (size_t k = 0; k < obj->len; k++) order[k] = slots[k].index;
    free(slots);
    return order;
}

void g4_chat_write_float(g4_chat_buf *b, double f) {
    if (isnan(f) || isinf(f)) {
        g4_chat_buf_str(b, isnan(f) ? "nan" : f < 0 ? "-inf" : "inf");
        return;
    }
    char sci[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec, f);
        if (strtod(sci, NULL) == f) break;
    }
    /* sci is "[-]d[.ddd]e[+-]XX" */
    char digits[24];
    int nd = 0;
    const char *p = sci;
    bool negative = *p == '-';
    if (negative) p++;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;

    char out[64];
    int n = 0;
    if (negative) out[n++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out[n++] = '0';
            out[n++] = '.';
            for (int z = 0; z < -exp - 1; z++) out[n++] = '0';
            for (int d = 0; d < nd; d++) out[n++] = digits[d];
        } else {
            for (int d = 0; d <= exp; d++) out[n++] = d < nd ? digits[d] : '0';
            out[n++] = '.';
            if (nd > exp + 1)
                for (int d = exp + 1; d < nd; d++) out[n++] = digits[d];
            else
                out[n++] = '0';
        }
        out[n] = '\0';
    } else {
        out[n++] = digits[0];
        if (nd > 1) {
            out[n++] = '.';
            for (int d = 1; d < nd; d++) out[n++] = digits[d];
        }
        snprintf(out + n, sizeof out - (size_t)n, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    g4_chat_buf_str(b, out);
}

void g4_chat_write_value(g4_chat_buf *b, const g4_chat_value *v, bool quote_keys) {
    char num[32];
    switch (v->type) {
    case G4_CHAT_NULL: g4_chat_buf_str(b, "null"); break;
    case G4_CHAT_BOOL: g4_chat_buf_str(b, v->b ? "true" : "false"); break;
    case G4_CHAT_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->i);
        g4_chat_buf_str(b, num);
        break;
    case G4_CHAT_FLOAT: g4_chat_write_float(b, v->f); break;
    case G4_CHAT_STRING:
        g4_chat_buf_mark(b, G4_CHAT_QUOTE);
        g4_chat_buf_add(b, v->str, v->len);
        g4_chat_buf_mark(b, G4_CHAT_QUOTE);
        break;
    case G4_CHAT_ARRAY:
        g4_chat_buf_str(b, "[");
        for (size_t k = 0; k < v->len; k++) {
            if (k) g4_chat_buf_str(b, ",");
            g4_chat_write_value(b, v->items[k], quote_keys);
        }
        g4_chat_buf_str(b, "]");
        break;
    case G4_CHAT_OBJECT:
        g4_chat_buf_str(b, "{");
        g4_chat_write_members(b, v, quote_keys);
        g4_chat_buf_str(b, "}");
        break;
    }
}

void g4_chat_write_members(g4_chat_buf *b, const g4_chat_value *obj, bool quote_keys) {
    size_t *order = g4_chat_sorted_keys(obj, b);
    for (size_t k = 0; order && k < obj->len; k++) {
        if (k) g4_chat_buf_str(b, ",");
        if (quote_keys) g4_chat_buf_mark(b, G4_CHAT_QUOTE);
        g4_chat_buf_str(b, obj->keys[order[k]]);
        if (quote_keys) g4_chat_buf_mark(b, G4_CHAT_QUOTE);
        g4_chat_buf_str(b, ":");
        g4_chat_write_value(b, obj->items[order[k]], quote_keys);
    }
    free(order);
}

g4_chat_value *g4_chat_value_from_json(const g4_json *j) {
    g4_chat_value *v = NULL;
    switch (j->type) {
    case G4_JSON_NULL: return g4_chat_null();
    case G4_JSON_BOOL: return g4_chat_bool(j->boolean);
    case G4_JSON_NUMBER: return j->is_int ? g4_chat_int(j->integer) : g4_chat_float(j->number);
    case G4_JSON_STRING: return g4_chat_string(j->str, j->len);
    case G4_JSON_ARRAY:
        if (!(v = g4_chat_array())) return NULL;
        for (size_t k = 0; k < j->len; k++) {
            g4_chat_value *item = g4_chat_value_from_json(&j->items[k]);
            if (!item || g4_chat_array_push(v, item)) return g4_chat_value_free(v), NULL;
        }
        return v;
    case G4_JSON_OBJECT:
        if (!(v = g4_chat_object())) return NULL;
        for (size_t k = 0; k < j->len; k++) {
            g4_chat_value *item = g4_chat_value_from_json(&j->items[k]);
            if (!item || g4_chat_object_set(v, j->keys[k].str, item)) return g4_chat_value_free(v), NULL;
        }
        return v;
    }
    return NULL;
}
