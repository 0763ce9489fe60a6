/* The Jinja interpreter's insides, shared by its parser (jinja_parse.c),
 * its values (jinja_value.c) and its evaluator (jinja_eval.c). Not public.
 *
 * Memory: everything a template or a render makes lives in an arena freed
 * at once, so errors can leave by longjmp without leaking. */
#ifndef G4_JINJA_INTERNAL_H
#define G4_JINJA_INTERNAL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tokenizer/jinja.h"

/* Deepest nesting of blocks or expressions the parser accepts, and of macro
 * calls the evaluator runs. */
#define JINJA_MAX_NESTING 256
#define JINJA_MAX_EVAL_DEPTH 1000 /* nested expression evaluations */
#define JINJA_MAX_CALLS 64

/* ---- arena and errors ---------------------------------------------- */

typedef struct jchunk jchunk;
typedef struct jarena {
    jchunk *chunks;
    size_t used, cap; /* bytes handed out, and the most allowed */
    jmp_buf *fail;    /* where an allocation failure jumps */
    char *err;
} jarena;

/* Runs fn(ctx) with a's errors jumping back here: 0, or -1 with a->err set. */
int g4_ja_try(jarena *a, void (*fn)(void *), void *ctx);
void *g4_ja_alloc(jarena *a, size_t n); /* zeroed; longjmps on failure */
void g4_ja_free(jarena *a);
char *g4_ja_strdup(jarena *a, const char *s, size_t n); /* NUL-terminated copy */
/* Sets a->err to "line N: ..." and longjmps to a->fail. */
_Noreturn void g4_ja_error(jarena *a, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- values --------------------------------------------------------- */

typedef enum jtype {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_MACRO,   /* a {% macro %}, or the caller of a {% call %} */
    JV_BUILTIN, /* a global function: range, namespace, raise_exception... */
    JV_METHOD,  /* a method bound to its receiver: "a b".split */
    JV_LOOP,    /* the loop variable of a for */
} jtype;

typedef struct jnode jnode;
typedef struct jval jval;
typedef struct jloop jloop;
typedef struct jscope jscope;

struct jval {
    jtype type;
    bool b;        /* BOOL */
    bool ns;       /* DICT: a namespace() (attributes may be assigned) */
    int64_t i;     /* INT; BUILTIN / METHOD: which one */
    double f;      /* FLOAT */
    const char *s; /* STR: bytes (NUL-terminated), len of them */
    size_t len;
    const uint8_t *taint; /* STR: 1 per byte from data; NULL = none */
    jval **items;         /* LIST items; DICT values */
    jval **keys;          /* DICT keys (strings, in insertion order) */
    size_t n, cap;
    const jnode *macro; /* MACRO */
    jscope *closure;    /* MACRO: the scope a caller body runs in */
    jval *self;         /* METHOD: its receiver; MACRO: the caller of a call block */
    jloop *loop;        /* LOOP */
};

struct jloop {
    jval *items; /* the list iterated */
    size_t index0;
};

/* Growing bytes with their taint, for output and string building. */
typedef struct jbuf {
    char *s;
    uint8_t *taint;
    size_t len, cap, max;
    bool tainted; /* some byte is from data */
} jbuf;

extern jval g4_jv_undefined, g4_jv_none, g4_jv_true, g4_jv_false;

jval *g4_jv_new(jarena *a, jtype t);
jval *g4_jv_int(jarena *a, int64_t i);
jval *g4_jv_float(jarena *a, double f);
jval *g4_jv_bool(bool b);
/* A string of s[0..n) copied; taint (may be NULL) copied likewise. */
jval *g4_jv_str(jarena *a, const char *s, size_t n, const uint8_t *taint);
jval *g4_jv_cstr(jarena *a, const char *s); /* untainted */
jval *g4_jv_list(jarena *a, size_t cap);
jval *g4_jv_dict(jarena *a);
void g4_jv_push(jarena *a, jval *list, jval *item);
jval *g4_jv_dict_get(const jval *d, const char *key, size_t len); /* NULL if absent */
void g4_jv_dict_set(jarena *a, jval *d, jval *key, jval *v);
/* A string value from data: every byte tainted. */
jval *g4_jv_data_str(jarena *a, const char *s, size_t n);
/* A g4_chat_value tree as values; tainted: its strings count as data. */
jval *g4_jv_from_chat(jarena *a, const g4_chat_value *v, bool tainted);

bool g4_jv_truthy(const jval *v);
bool g4_jv_equal(const jval *a, const jval *b);
/* -1, 0, 1 for numbers and strings; longjmps (line) for other types. */
int g4_jv_compare(jarena *a, int line, const jval *x, const jval *y);
const char *g4_jv_type_name(const jval *v);
bool g4_jv_is_number(const jval *v);
double g4_jv_number(const jval *v);

void g4_jb_init(jbuf *b, size_t max);
void g4_jb_add(jarena *a, jbuf *b, const char *s, size_t n, const uint8_t *taint);
void g4_jb_str(jarena *a, jbuf *b, const char *s); /* untainted */
void g4_jb_taint_all(jarena *a, jbuf *b);          /* marks every byte so far as data */
jval *g4_jb_value(jarena *a, jbuf *b);             /* the bytes as a string (b is reset) */

/* str(v) as Python/Jinja prints it (None, True, 1.0, ['a', 1], ...). */
void g4_jv_write_str(jarena *a, jbuf *b, const jval *v);
/* repr(v): strings quoted as Python does. */
void g4_jv_write_repr(jarena *a, jbuf *b, const jval *v);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0 = none),
 * separators, sort_keys). line: for errors (not serializable). */
void g4_jv_write_json(jarena *a, jbuf *b, const jval *v, int indent, const char *item_sep, const char *key_sep,
                      bool sort_keys, int line, int depth);
jval *g4_jv_to_str(jarena *a, const jval *v); /* str(v) as a value, taint kept */
bool g4_jv_any_taint(const jval *v);          /* some string in v is from data */
/* Number of Unicode characters in a UTF-8 string; offset of character k. */
size_t g4_utf8_count(const char *s, size_t n);
size_t g4_utf8_offset(const char *s, size_t n, size_t k);

/* ---- syntax tree ---------------------------------------------------- */

typedef enum jkind {
    /* expressions */
    JX_LIT,
    JX_NAME,
    JX_LIST,
    JX_DICT,
    JX_ATTR,
    JX_INDEX,
    JX_SLICE,
    JX_CALL,
    JX_FILTER,
    JX_TEST,
    JX_NOT,
    JX_NEG,
    JX_POS,
    JX_BINARY,
    JX_COMPARE,
    JX_AND,
    JX_OR,
    JX_COND,
    /* statements */
    JS_BODY,
    JS_TEXT,
    JS_OUTPUT,
    JS_IF,
    JS_FOR,
    JS_SET,
    JS_SET_BLOCK,
    JS_MACRO,
    JS_CALL_BLOCK,
    JS_BREAK,
    JS_CONTINUE,
} jkind;

/* Binary operators (JX_BINARY, JX_COMPARE). */
enum {
    JOP_ADD,
    JOP_SUB,
    JOP_MUL,
    JOP_DIV,
    JOP_FLOORDIV,
    JOP_MOD,
    JOP_POW,
    JOP_CONCAT,
    JOP_EQ,
    JOP_NE,
    JOP_LT,
    JOP_LE,
    JOP_GT,
    JOP_GE,
    JOP_IN,
    JOP_NOT_IN
};

struct jnode {
    jkind kind;
    int op; /* JX_BINARY / JX_COMPARE */
    int line;
    bool negate;      /* JX_TEST: "is not" */
    const char *name; /* NAME, ATTR, FILTER, TEST, MACRO: NUL-terminated */
    jval *lit;        /* LIT; TEXT: its string */
    jnode **kids;     /* see jinja_parse.c for each kind's layout */
    size_t n_kids;
    const char **kw;    /* CALL/FILTER/TEST args, MACRO params: kw[i] names kids[i] or NULL */
    const char **names; /* FOR targets */
    size_t n_names;
};

struct g4_jinja {
    jarena arena;
    jnode *root;
};

#endif
