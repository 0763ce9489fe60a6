/* Strict JSON parser: recursive descent over a bounded buffer. Each value
 * is parsed into a caller-provided node; containers grow their item arrays
 * geometrically and sort an index of their keys once complete (which is also
 * how duplicate keys are found). */
#include "gguf/json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct parser {
    const char *start, *p, *end;
    const char *name;
    char *err;
    bool failed;
} parser;

static void fail(parser *ps, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = true;
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < ps->p; q++) {
        if (*q == '\n') line++, col = 1;
        else col++;
    }
    int k = snprintf(ps->err, G4_ERR_LEN, "%s: line %zu, column %zu: ", ps->name, line, col);
    va_list ap;
    va_start(ap, fmt);
    if (k > 0 && k < G4_ERR_LEN) vsnprintf(ps->err + k, G4_ERR_LEN - (size_t)k, fmt, ap);
    va_end(ap);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static bool literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n)) return false;
    ps->p += n;
    return true;
}

static void free_value(g4_json *v) {
    if (v->type == G4_JSON_STRING) free(v->str);
    if (v->type == G4_JSON_ARRAY || v->type == G4_JSON_OBJECT) {
        for (size_t i = 0; i < v->len; i++) free_value(&v->items[i]);
        if (v->keys)
            for (size_t i = 0; i < v->len; i++) free(v->keys[i].str);
        free(v->items);
        free(v->keys);
        free(v->sorted);
    }
}

/* Length of the UTF-8 sequence at p (1..4), or 0 if it is not valid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_valid(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (!n || c > 0xf4 || (size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && p[1] < 0xa0) return 0;  /* overlong */
    if (c == 0xed && p[1] >= 0xa0) return 0; /* surrogate */
    if (c == 0xf0 && p[1] < 0x90) return 0;  /* overlong */
    if (c == 0xf4 && p[1] >= 0x90) return 0; /* > U+10FFFF */
    return n;
}

static int hex4(parser *ps, unsigned *out) {
    if (ps->end - ps->p < 4) return -1;
    unsigned u = 0;
    for (int i = 0; i < 4; i++) {
        char h = ps->p[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return -1;
        u = u * 16 + (unsigned)d;
    }
    ps->p += 4;
    *out = u;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 63)), o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)), o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* A string starting at the opening quote. The decoded form is never longer
 * than the source, so one allocation of the source length suffices. */
static char *parse_string(parser *ps, size_t *len) {
    const char *q = ps->p + 1;
    while (q < ps->end && *q != '"') q += *q == '\\' && q + 1 < ps->end ? 2 : 1;
    if (q >= ps->end) {
        fail(ps, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(q - ps->p) + 1);
    if (!out) {
        fail(ps, "out of memory");
        return NULL;
    }
    size_t n = 0;
    ps->p++;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) {
            fail(ps, "control character 0x%02x in string", c);
            break;
        }
        if (c != '\\') {
            size_t k = utf8_valid((const unsigned char *)ps->p, (const unsigned char *)ps->end);
            if (!k) {
                fail(ps, "invalid UTF-8 in string");
                break;
            }
            memcpy(out + n, ps->p, k);
            n += k, ps->p += k;
            continue;
        }
        char e = ps->p[1];
        ps->p += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            out[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || hex4(ps, &cp)) {
            ps->p -= 2;
            fail(ps, "bad escape sequence");
            break;
        }
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            fail(ps, "unpaired low surrogate \\u%04x", cp);
            break;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (!literal(ps, "\\u") || hex4(ps, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                fail(ps, "high surrogate \\u%04x not followed by a low surrogate", cp);
                break;
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        n += put_utf8(out + n, cp);
    }
    if (ps->failed) {
        free(out);
        return NULL;
    }
    ps->p++; /* closing quote */
    out[n] = 0;
    *len = n;
    return out;
}

/* number = [-] int [frac] [exp]; the span is checked here, converted by
 * strtod from a NUL-terminated copy. */
static void parse_number(parser *ps, g4_json *v) {
    const char *s = ps->p, *q = s;
    bool integral = true;
    if (q < ps->end && *q == '-') q++;
    if (q < ps->end && *q == '0') {
        q++;
    } else if (q < ps->end && *q >= '1' && *q <= '9') {
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    } else {
        fail(ps, "invalid number");
        return;
    }
    if (q < ps->end && *q == '.') {
        integral = false;
        if (++q >= ps->end || *q < '0' || *q > '9') { fail(ps, "invalid number: digit expected after '.'"); return; }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integral = false;
        if (++q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') { fail(ps, "invalid number: digit expected in exponent"); return; }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    size_t n = (size_t)(q - s);
    char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) { fail(ps, "out of memory"); return; }
    memcpy(buf, s, n);
    buf[n] = 0;
    errno = 0;
    v->type = G4_JSON_NUMBER;
    v->number = strtod(buf, NULL);
    bool overflow = errno == ERANGE && (v->number > 1 || v->number < -1);
    if (integral) {
        errno = 0;
        long long i = strtoll(buf, NULL, 10);
        v->is_int = errno == 0;
        v->integer = v->is_int ? (int64_t)i : 0;
    }
    if (buf != small) free(buf);
    if (overflow) { fail(ps, "number out of range"); return; }
    ps->p = q;
}

static int key_cmp(const g4_json_key *a, const g4_json_key *b) {
    int c = memcmp(a->str, b->str, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Bottom-up merge sort of member indices by key (qsort has no context
 * argument in C11, and parsing must stay thread-safe). */
static bool sort_by_key(size_t *idx, size_t n, const g4_json_key *keys) {
    size_t *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return false;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) tmp[o++] = key_cmp(&keys[idx[b]], &keys[idx[a]]) < 0 ? idx[b++] : idx[a++];
            while (a < mid) tmp[o++] = idx[a++];
            while (b < hi) tmp[o++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
    free(tmp);
    return true;
}

static void parse_value(parser *ps, g4_json *v, int depth);

/* Arrays and objects: items (and keys) grow by doubling. */
static void parse_container(parser *ps, g4_json *v, int depth) {
    bool object = *ps->p == '{';
    char close = object ? '}' : ']';
    v->type = object ? G4_JSON_OBJECT : G4_JSON_ARRAY;
    if (depth >= G4_JSON_MAX_DEPTH) { fail(ps, "nesting deeper than %d", G4_JSON_MAX_DEPTH); return; }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return;
    }
    size_t cap = 0;
    for (;;) {
        skip_ws(ps);
        if (v->len == cap) {
            cap = cap ? 2 * cap : 4;
            g4_json *items = realloc(v->items, cap * sizeof *items);
            if (items) v->items = items;
            g4_json_key *keys = object ? realloc(v->keys, cap * sizeof *keys) : NULL;
            if (keys) v->keys = keys;
            if (!items || (object && !keys)) { fail(ps, "out of memory"); return; }
        }
        g4_json *item = &v->items[v->len];
        memset(item, 0, sizeof *item);
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"') { fail(ps, "object key (a string) expected"); return; }
            g4_json_key *k = &v->keys[v->len];
            k->str = parse_string(ps, &k->len);
            if (!k->str) return;
            v->len++; /* counted now so the key is freed on any later error */
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') { fail(ps, "':' expected after object key"); return; }
            ps->p++;
            skip_ws(ps);
        } else {
            v->len++;
        }
        parse_value(ps, item, depth + 1);
        if (ps->failed) return;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        { fail(ps, "',' or '%c' expected", close); return; }
    }
    if (!object) return;
    v->sorted = malloc(v->len * sizeof *v->sorted);
    if (v->sorted)
        for (size_t i = 0; i < v->len; i++) v->sorted[i] = i;
    if (!v->sorted || !sort_by_key(v->sorted, v->len, v->keys)) { fail(ps, "out of memory"); return; }
    for (size_t i = 1; i < v->len; i++)
        if (!key_cmp(&v->keys[v->sorted[i - 1]], &v->keys[v->sorted[i]]))
            { fail(ps, "duplicate key \"%.100s\" in object", v->keys[v->sorted[i]].str); return; }
}

static void parse_value(parser *ps, g4_json *v, int depth) {
    skip_ws(ps);
    if (ps->p >= ps->end) { fail(ps, "unexpected end of input, value expected"); return; }
    switch (*ps->p) {
    case '{':
    case '[': parse_container(ps, v, depth); return;
    case '"':
        v->str = parse_string(ps, &v->len);
        if (v->str) v->type = G4_JSON_STRING;
        return;
    case 't':
    case 'f':
        v->type = G4_JSON_BOOL;
        v->boolean = *ps->p == 't';
        if (!literal(ps, v->boolean ? "true" : "false")) fail(ps, "invalid literal");
        return;
    case 'n':
        if (!literal(ps, "null")) fail(ps, "invalid literal");
        return;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) parse_number(ps, v);
        else fail(ps, "unexpected character '%c'", *ps->p >= 0x20 && *ps->p < 0x7f ? *ps->p : '?');
    }
}

g4_json *g4_json_parse(const char *text, size_t len, const char *name, char *err) {
    parser ps = {text, text, text + len, name, err, false};
    g4_json *root = calloc(1, sizeof *root);
    if (!root) {
        snprintf(err, G4_ERR_LEN, "%s: out of memory", name);
        return NULL;
    }
    parse_value(&ps, root, 0);
    skip_ws(&ps);
    if (!ps.failed && ps.p < ps.end) fail(&ps, "unexpected data after the JSON value");
    if (ps.failed) {
        g4_json_free(root);
        return NULL;
    }
    return root;
}

char *g4_read_file(const char *path, size_t *len, char *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, G4_ERR_LEN, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (n >= 0 && fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, fp) == (size_t)n) {
        buf[n] = 0;
        *len = (size_t)n;
    } else {
        snprintf(err, G4_ERR_LEN, "%s: cannot read", path);
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    return buf;
}

g4_json *g4_json_parse_file(const char *path, char *err) {
    size_t len;
    char *text = g4_read_file(path, &len, err);
    g4_json *v = text ? g4_json_parse(text, len, path, err) : NULL;
    free(text);
    return v;
}

void g4_json_free(g4_json *root) {
    if (!root) return;
    free_value(root);
    free(root);
}

const g4_json *g4_json_get(const g4_json *v, const char *key) {
    if (!v || v->type != G4_JSON_OBJECT) return NULL;
    g4_json_key k = {(char *)key, strlen(key)};
    size_t lo = 0, hi = v->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(&v->keys[v->sorted[mid]], &k);
        if (!c) return &v->items[v->sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const g4_json *g4_json_get_type(const g4_json *v, const char *key, enum g4_json_type type) {
    const g4_json *m = g4_json_get(v, key);
    return m && m->type == type ? m : NULL;
}

const char *g4_json_type_name(enum g4_json_type t) {
    static const char *names[] = {"null", "boolean", "number", "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}
