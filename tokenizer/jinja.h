/* A small Jinja interpreter: enough of the language for the chat templates
 * models carry in their GGUF (tokenizer.chat_template), rendered the way
 * Hugging Face transformers renders them (trim_blocks and lstrip_blocks on,
 * loop controls, tojson as json.dumps with ensure_ascii off,
 * raise_exception, strftime_now).
 *
 * What it knows: {{ }}, {% %}, {# #}, "-" and "+" whitespace control; if /
 * elif / else, for (loop.*, else, an inline if, unpacking k, v, break and
 * continue), set (names, tuples, namespace attributes, {% set x %} blocks),
 * macro and call/caller; the usual operators, literals, subscripts, slices,
 * attributes; the filters, tests and string / dict methods chat templates
 * use (see jinja_eval.c), {% raw %}. Not supported: template inheritance,
 * include, import, the filter block, recursive loops, tuples (they are
 * lists), string % formatting, tojson's ensure_ascii=True, autoescaping.
 *
 * Untrusted text: every string reaching the template through `data` keeps a
 * per-byte "from data" mark through concatenation, slicing, trimming and
 * macros (other transformations mark their whole result), and the output
 * reports which byte ranges came from data. A caller can then let control
 * tokens come only from the template's own text.
 *
 * Hostile templates: nesting, macro recursion, loop steps, output size and
 * memory are all capped (g4_jinja_limits); going over is a render error,
 * never a hang or a crash. Errors read "line N: what is wrong".
 */
#ifndef G4_JINJA_H
#define G4_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/chat.h"

typedef struct g4_jinja g4_jinja;

/* A parsed template (it keeps no pointer into src), or NULL with err set
 * ("line N: what is wrong"). */
g4_jinja *g4_jinja_parse(const char *src, size_t len, char *err);
void g4_jinja_free(g4_jinja *t);

typedef struct g4_jinja_limits {
    uint64_t max_steps;   /* expressions evaluated + statements run */
    size_t max_output;    /* bytes of output */
    size_t max_memory;    /* bytes of values made while rendering */
} g4_jinja_limits;

/* What the chat renderer uses: 20M steps, 64 MiB of output, 256 MiB. */
extern const g4_jinja_limits g4_jinja_default_limits;

/* Renders t with the variables of two objects (either may be NULL): data's
 * strings are untrusted (message text, tools, kwargs), trusted's are not
 * (bos_token and the like); a name in both takes data's value. Returns the
 * text (malloc'd, NUL-terminated, *len bytes; it may hold NUL bytes) and,
 * when data_spans is not NULL, the byte ranges of the text that came from
 * data (malloc'd, in order, NULL when none). NULL with err set on any
 * render error, including raise_exception(msg) (err = "line N: msg"). */
char *g4_jinja_render(const g4_jinja *t, const g4_chat_value *data, const g4_chat_value *trusted,
                      const g4_jinja_limits *limits, size_t *len, g4_chat_span **data_spans, size_t *n_spans,
                      char *err);

#endif
