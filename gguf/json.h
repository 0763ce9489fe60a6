/* A strict JSON (RFC 8259) parser: the whole document becomes a tree of
 * g4_json values the caller walks directly.
 *
 *   g4_json *doc = g4_json_parse(text, len, "config.json", err);
 *   const g4_json *n = g4_json_get(doc, "hidden_size");
 *   if (n && n->type == G4_JSON_NUMBER && n->is_int) use(n->integer);
 *   g4_json_free(doc);
 *
 * Refused, with "NAME: line L, column C: what is wrong" in err (G4_ERR_LEN
 * bytes): anything outside the grammar (comments, trailing commas, single
 * quotes, NaN, leading zeros, control characters in strings), invalid UTF-8,
 * unpaired \u surrogates, numbers that overflow a double, duplicate keys in
 * one object, and nesting deeper than G4_JSON_MAX_DEPTH. Input need not be
 * NUL-terminated; it is never read past len.
 */
#ifndef G4_JSON_H
#define G4_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define G4_JSON_MAX_DEPTH 128

enum g4_json_type { G4_JSON_NULL, G4_JSON_BOOL, G4_JSON_NUMBER, G4_JSON_STRING, G4_JSON_ARRAY, G4_JSON_OBJECT };

typedef struct g4_json_key {
    char *str;  /* decoded UTF-8, NUL-terminated (may also contain NULs) */
    size_t len;
} g4_json_key;

typedef struct g4_json {
    enum g4_json_type type;
    bool boolean;            /* G4_JSON_BOOL */
    double number;           /* G4_JSON_NUMBER */
    bool is_int;             /* written without fraction or exponent, fits int64 */
    int64_t integer;         /*   then its exact value */
    char *str;               /* G4_JSON_STRING: decoded, NUL-terminated */
    size_t len;              /* string bytes, or array / object member count */
    struct g4_json *items;   /* array elements / object values, in document order */
    g4_json_key *keys;       /* object keys, parallel to items */
    size_t *sorted;          /* object: member indices ordered by key, for lookup */
} g4_json;

/* The document's root value (malloc'd), or NULL with err set. */
g4_json *g4_json_parse(const char *text, size_t len, const char *name, char *err);
void g4_json_free(g4_json *root);
/* The same for a whole file (path is the NAME in messages). */
g4_json *g4_json_parse_file(const char *path, char *err);
/* A whole file, NUL-terminated (malloc'd), *len bytes; NULL with err set.
 * What g4_json_parse_file reads with, for callers needing raw text too. */
char *g4_read_file(const char *path, size_t *len, char *err);

/* Member `key` of an object; NULL when v is not an object or has no such key. */
const g4_json *g4_json_get(const g4_json *v, const char *key);
/* Typed member look-ups: the member when present with the right type, else
 * NULL (absent, null, or another type). */
const g4_json *g4_json_get_type(const g4_json *v, const char *key, enum g4_json_type type);

const char *g4_json_type_name(enum g4_json_type t); /* "null", "object", ... */

#endif
