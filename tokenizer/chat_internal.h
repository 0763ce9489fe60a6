/* Pieces shared by the chat formatter and the output parser (not public). */
#ifndef G4_CHAT_INTERNAL_H
#define G4_CHAT_INTERNAL_H

#include "tokenizer/chat.h"

/* Gemma 4 wraps every string literal of its tool syntax in this token. */
#define G4_CHAT_QUOTE "<|\"|>"
#define G4_CHAT_QUOTE_LEN 5

/* A growing NUL-terminated string; after a failed allocation oom is set and
 * further appends do nothing, so callers check once at the end. */
typedef struct g4_chat_buf {
    char *s;
    size_t len, cap;
    bool oom;
    g4_chat_span *marks; /* where g4_chat_buf_mark wrote template markers */
    size_t n_marks, marks_cap;
} g4_chat_buf;

void g4_chat_buf_add(g4_chat_buf *b, const char *s, size_t n);
void g4_chat_buf_str(g4_chat_buf *b, const char *s);
/* Appends one of the template's own markers ("<|turn>", G4_CHAT_QUOTE, ...)
 * and records where it went: only these become control tokens. */
void g4_chat_buf_mark(g4_chat_buf *b, const char *marker);

/* Object member order of Jinja's dictsort: keys compared without ASCII case,
 * ties kept in insertion order. Returns a malloc'd permutation of
 * 0..obj->len-1, or NULL (b->oom set) when out of memory or empty. */
size_t *g4_chat_sorted_keys(const g4_chat_value *obj, g4_chat_buf *b);

/* Jinja truthiness: null, false, 0, "" and empty containers are false. */
bool g4_chat_truthy(const g4_chat_value *v);

/* Python's repr of a float (what Jinja prints): the shortest digits that
 * read back to the same double, positional for exponents -4..15 with at
 * least one decimal, else d.ddde+XX; nan, inf, -inf. */
void g4_chat_write_float(g4_chat_buf *b, double f);

/* A value in Gemma 4 syntax (the template's format_argument): strings in
 * <|"|>, numbers as Python prints them, objects with sorted keys, quoted
 * with <|"|> only when quote_keys. */
void g4_chat_write_value(g4_chat_buf *b, const g4_chat_value *v, bool quote_keys);
/* The members of an object without braces, "k:v,k:v" in dictsort order:
 * also the body of a tool call or a tool response (keys unquoted). */
void g4_chat_write_members(g4_chat_buf *b, const g4_chat_value *obj, bool quote_keys);

#endif
