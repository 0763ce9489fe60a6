/* Running a parsed Jinja template: statements, expressions, and the
 * filters, tests, methods and global functions chat templates use, with
 * Python's semantics where Jinja borrows them (truthiness, "and"/"or"
 * returning an operand, floor division, negative indices, slices).
 *
 * Undefined follows Jinja's default Undefined: it prints as "", is false,
 * iterates as empty and has length 0; reading an attribute or item of it,
 * or doing arithmetic with it, is an error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/jinja_internal.h"

const g4_jinja_limits g4_jinja_default_limits = {20000000, 64u << 20, 256u << 20};

struct jscope {
    jscope *parent;
    jval *vars; /* a dict */
};

typedef enum flow { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE } flow;

typedef struct jctx {
    jarena *a;
    jbuf *out;
    uint64_t steps, max_steps;
    size_t max_output;
    int depth, calls;
} jctx;

/* Global functions and methods, by jval.i of BUILTIN / METHOD values. */
enum {
    B_RANGE,
    B_NAMESPACE,
    B_RAISE,
    B_STRFTIME,
    B_DICT,
    M_STARTSWITH,
    M_ENDSWITH,
    M_SPLIT,
    M_RSPLIT,
    M_STRIP,
    M_LSTRIP,
    M_RSTRIP,
    M_UPPER,
    M_LOWER,
    M_REPLACE,
    M_TITLE,
    M_CAPITALIZE,
    M_FIND,
    M_JOIN,
    M_COUNT,
    M_ITEMS,
    M_KEYS,
    M_VALUES,
    M_GET,
    M_CYCLE,
};

static const struct {
    const char *name;
    int id;
} str_methods[] =
    {
        {"startswith", M_STARTSWITH},
        {"endswith", M_ENDSWITH},
        {"split", M_SPLIT},
        {"rsplit", M_RSPLIT},
        {"strip", M_STRIP},
        {"lstrip", M_LSTRIP},
        {"rstrip", M_RSTRIP},
        {"upper", M_UPPER},
        {"lower", M_LOWER},
        {"replace", M_REPLACE},
        {"title", M_TITLE},
        {"capitalize", M_CAPITALIZE},
        {"find", M_FIND},
        {"join", M_JOIN},
        {"count", M_COUNT},
},
  dict_methods[] = {{"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"get", M_GET}};

static jval *eval(jctx *c, const jnode *n, jscope *s);
static flow exec(jctx *c, const jnode *n, jscope *s);

static void step(jctx *c, int line) {
    if (++c->steps > c->max_steps)
        g4_ja_error(c->a, line, "template ran more than %llu steps", (unsigned long long)c->max_steps);
}

/* ---- scopes -------------------------------------------------------------- */

static jscope *scope_new(jctx *c, jscope *parent) {
    jscope *s = g4_ja_alloc(c->a, sizeof *s);
    s->parent = parent;
    s->vars = g4_jv_dict(c->a);
    return s;
}

static jval *lookup(jscope *s, const char *name) {
    size_t len = strlen(name);
    for (; s; s = s->parent) {
        jval *v = g4_jv_dict_get(s->vars, name, len);
        if (v) return v;
    }
    return &g4_jv_undefined;
}

static void bind(jctx *c, jscope *s, const char *name, jval *v) {
    jval *d = s->vars;
    size_t len = strlen(name);
    for (size_t k = 0; k < d->n; k++)
        if (d->keys[k]->len == len && !memcmp(d->keys[k]->s, name, len)) {
            d->items[k] = v; /* no new key: loops rebind every iteration */
            return;
        }
    g4_jv_dict_set(c->a, d, g4_jv_cstr(c->a, name), v);
}

/* ---- helpers ------------------------------------------------------------- */

static jval *str_slice(jctx *c, const jval *v, size_t from, size_t to) {
    return g4_jv_str(c->a, v->s + from, to - from, v->taint ? v->taint + from : NULL);
}

static jval *concat(jctx *c, const jval *x, const jval *y) {
    jbuf b;
    g4_jb_init(&b, c->max_output);
    g4_jv_write_str(c->a, &b, x);
    g4_jv_write_str(c->a, &b, y);
    return g4_jb_value(c->a, &b);
}

static jval *dict_find(const jval *d, const jval *key) {
    for (size_t k = 0; k < d->n; k++)
        if (g4_jv_equal(d->keys[k], key)) return d->items[k];
    return NULL;
}

static jval *pair(jctx *c, jval *x, jval *y) {
    jval *p = g4_jv_list(c->a, 2);
    g4_jv_push(c->a, p, x);
    g4_jv_push(c->a, p, y);
    return p;
}

/* The items a for loop, list() or a filter walks: list items, dict keys,
 * string characters; nothing for undefined. */
static jval *iterate(jctx *c, jval *v, int line) {
    switch (v->type) {
    case JV_LIST: return v;
    case JV_UNDEF: return g4_jv_list(c->a, 0);
    case JV_DICT: {
        jval *l = g4_jv_list(c->a, v->n);
        for (size_t k = 0; k < v->n; k++) g4_jv_push(c->a, l, v->keys[k]);
        return l;
    }
    case JV_STR: {
        jval *l = g4_jv_list(c->a, v->len);
        for (size_t k = 0; k < v->len;) {
            size_t e = k + 1;
            while (e < v->len && ((unsigned char)v->s[e] & 0xc0) == 0x80) e++;
            g4_jv_push(c->a, l, str_slice(c, v, k, e));
            k = e;
        }
        return l;
    }
    default: g4_ja_error(c->a, line, "a %s is not iterable", g4_jv_type_name(v));
    }
}

static bool is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* strip / lstrip / rstrip: whitespace, or any byte of chars. */
static jval *strip(jctx *c, const jval *v, const jval *chars, bool left, bool right) {
    size_t from = 0, to = v->len;
    bool custom = chars && chars->type == JV_STR;
#define STRIPPED(ch) (custom ? memchr(chars->s, (ch), chars->len) != NULL : is_space(ch))
    while (left && from < to && STRIPPED(v->s[from])) from++;
    while (right && to > from && STRIPPED(v->s[to - 1])) to--;
#undef STRIPPED
    return str_slice(c, v, from, to);
}

static jval *change_case(jctx *c, const jval *v, int mode) {
    /* 0 upper, 1 lower, 2 capitalize, 3 title (ASCII letters only) */
    jval *r = str_slice(c, v, 0, v->len);
    char *s = (char *)r->s;
    bool start = true;
    for (size_t k = 0; k < r->len; k++) {
        char ch = s[k];
        bool upper = mode == 0 || (mode == 2 && k == 0) || (mode == 3 && start);
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (upper && ch >= 'a' && ch <= 'z') s[k] = (char)(ch - 32);
        if (!upper && ch >= 'A' && ch <= 'Z') s[k] = (char)(ch + 32);
        start = !alpha && ((unsigned char)ch < 0x80);
    }
    return r;
}

static jval *replace(jctx *c, const jval *v, const jval *old, const jval *new, int64_t count) {
    jbuf b;
    g4_jb_init(&b, c->max_output);
    size_t k = 0, done = 0;
    if (!old->len) {
        /* Python puts new before every character and at the end */
        jval *chars = iterate(c, (jval *)v, 0);
        for (size_t i = 0; i < chars->n; i++) {
            if (count < 0 || (int64_t)done < count) g4_jv_write_str(c->a, &b, new), done++;
            g4_jv_write_str(c->a, &b, chars->items[i]);
        }
        if (count < 0 || (int64_t)done < count) g4_jv_write_str(c->a, &b, new);
        return g4_jb_value(c->a, &b);
    }
    while (k < v->len) {
        const char *hit = (count < 0 || (int64_t)done < count) && v->len - k >= old->len
                              ? memmem(v->s + k, v->len - k, old->s, old->len)
                              : NULL;
        size_t end = hit ? (size_t)(hit - v->s) : v->len;
        g4_jb_add(c->a, &b, v->s + k, end - k, v->taint ? v->taint + k : NULL);
        if (!hit) break;
        g4_jv_write_str(c->a, &b, new);
        k = end + old->len;
        done++;
        step(c, 0);
    }
    return g4_jb_value(c->a, &b);
}

static jval *split(jctx *c, const jval *v, const jval *sep, int64_t max, bool from_right, int line) {
    jval *l = g4_jv_list(c->a, 4);
    if (sep && sep->type != JV_NONE) {
        if (sep->type != JV_STR || !sep->len)
            g4_ja_error(c->a, line, "split: the separator must be a non-empty string");
        if (from_right && max >= 0) {
            /* rsplit with a limit: cut from the end, then put in order */
            size_t to = v->len;
            jval *rev = g4_jv_list(c->a, 4);
            while (max-- > 0) {
                size_t k = to;
                bool found = false;
                while (k >= sep->len) {
                    k--;
                    if (k + sep->len <= to && !memcmp(v->s + k, sep->s, sep->len)) {
                        found = true;
                        break;
                    }
                }
                if (!found) break;
                g4_jv_push(c->a, rev, str_slice(c, v, k + sep->len, to));
                to = k;
            }
            g4_jv_push(c->a, l, str_slice(c, v, 0, to));
            for (size_t k = rev->n; k-- > 0;) g4_jv_push(c->a, l, rev->items[k]);
            return l;
        }
        size_t k = 0;
        for (;;) {
            const char *hit = max != 0 && v->len >= k ? memmem(v->s + k, v->len - k, sep->s, sep->len) : NULL;
            size_t end = hit ? (size_t)(hit - v->s) : v->len;
            g4_jv_push(c->a, l, str_slice(c, v, k, end));
            step(c, line);
            if (!hit) break;
            k = end + sep->len;
            if (max > 0) max--;
        }
        return l;
    }
    /* no separator: runs of whitespace, empty pieces dropped */
    size_t k = 0;
    while (k < v->len) {
        while (k < v->len && is_space(v->s[k])) k++;
        if (k == v->len) break;
        size_t end = k;
        if (max == 0) {
            end = v->len;
            while (end > k && is_space(v->s[end - 1])) end--;
        } else {
            while (end < v->len && !is_space(v->s[end])) end++;
        }
        g4_jv_push(c->a, l, str_slice(c, v, k, end));
        step(c, line);
        if (max > 0) max--;
        k = end;
    }
    return l;
}

static jval *join(jctx *c, jval *seq, const jval *sep, int line) {
    jval *items = iterate(c, seq, line);
    jbuf b;
    g4_jb_init(&b, c->max_output);
    for (size_t k = 0; k < items->n; k++) {
        if (k && sep) g4_jv_write_str(c->a, &b, sep);
        g4_jv_write_str(c->a, &b, items->items[k]);
    }
    return g4_jb_value(c->a, &b);
}

/* Python's slice of n items: the indices it visits. */
static jval *slice(jctx *c, jval *obj, jval *start, jval *stop, jval *stepv, int line) {
    int64_t n, st = 1;
    if (obj->type == JV_STR)
        n = (int64_t)g4_utf8_count(obj->s, obj->len);
    else if (obj->type == JV_LIST)
        n = (int64_t)obj->n;
    else
        g4_ja_error(c->a, line, "a %s cannot be sliced", g4_jv_type_name(obj));
    jval *bounds[3] = {start, stop, stepv};
    for (int k = 0; k < 3; k++)
        if (bounds[k] && bounds[k]->type != JV_NONE && bounds[k]->type != JV_INT)
            g4_ja_error(c->a, line, "slice indices must be integers");
    if (stepv && stepv->type == JV_INT) st = stepv->i;
    if (st == 0) g4_ja_error(c->a, line, "slice step cannot be zero");
    int64_t lo, hi;
    if (start && start->type == JV_INT) {
        lo = start->i < 0 ? start->i + n : start->i;
        lo = st > 0 ? (lo < 0 ? 0 : lo > n ? n : lo) : (lo < 0 ? -1 : lo >= n ? n - 1 : lo);
    } else {
        lo = st > 0 ? 0 : n - 1;
    }
    if (stop && stop->type == JV_INT) {
        hi = stop->i < 0 ? stop->i + n : stop->i;
        hi = st > 0 ? (hi < 0 ? 0 : hi > n ? n : hi) : (hi < -1 ? -1 : hi >= n ? n - 1 : hi);
    } else {
        hi = st > 0 ? n : -1;
    }
    jval *chars = obj->type == JV_STR ? iterate(c, obj, line) : obj;
    jval *l = g4_jv_list(c->a, 0);
    for (int64_t k = lo; st > 0 ? k < hi : k > hi; k += st) {
        g4_jv_push(c->a, l, chars->items[k]);
        step(c, line);
    }
    return obj->type == JV_STR ? join(c, l, NULL, line) : l;
}

static jval *index_of(jctx *c, jval *obj, jval *key, int line) {
    switch (obj->type) {
    case JV_DICT: {
        jval *v = dict_find(obj, key);
        return v ? v : &g4_jv_undefined;
    }
    case JV_LIST:
    case JV_STR: {
        if (key->type != JV_INT) return &g4_jv_undefined;
        int64_t n = obj->type == JV_LIST ? (int64_t)obj->n : (int64_t)g4_utf8_count(obj->s, obj->len);
        int64_t i = key->i < 0 ? key->i + n : key->i;
        if (i < 0 || i >= n) return &g4_jv_undefined;
        if (obj->type == JV_LIST) return obj->items[i];
        size_t from = g4_utf8_offset(obj->s, obj->len, (size_t)i), to = g4_utf8_offset(obj->s, obj->len, (size_t)i + 1);
        return str_slice(c, obj, from, to);
    }
    case JV_UNDEF: g4_ja_error(c->a, line, "cannot take an item of an undefined value");
    default: return &g4_jv_undefined;
    }
}

static jval *method(jctx *c, jval *self, int id) {
    jval *m = g4_jv_new(c->a, JV_METHOD);
    m->self = self;
    m->i = id;
    return m;
}

static jval *loop_attr(jctx *c, jval *lv, const char *name) {
    const jloop *L = lv->loop;
    const int64_t n = (int64_t)L->items->n, i = (int64_t)L->index0;
    if (!strcmp(name, "index")) return g4_jv_int(c->a, i + 1);
    if (!strcmp(name, "index0")) return g4_jv_int(c->a, i);
    if (!strcmp(name, "revindex")) return g4_jv_int(c->a, n - i);
    if (!strcmp(name, "revindex0")) return g4_jv_int(c->a, n - i - 1);
    if (!strcmp(name, "first")) return g4_jv_bool(i == 0);
    if (!strcmp(name, "last")) return g4_jv_bool(i == n - 1);
    if (!strcmp(name, "length")) return g4_jv_int(c->a, n);
    if (!strcmp(name, "depth")) return g4_jv_int(c->a, 1);
    if (!strcmp(name, "depth0")) return g4_jv_int(c->a, 0);
    if (!strcmp(name, "previtem")) return i > 0 ? L->items->items[i - 1] : &g4_jv_undefined;
    if (!strcmp(name, "nextitem")) return i + 1 < n ? L->items->items[i + 1] : &g4_jv_undefined;
    if (!strcmp(name, "cycle")) return method(c, lv, M_CYCLE);
    return &g4_jv_undefined;
}

static jval *attribute(jctx *c, jval *obj, const char *name, int line) {
    switch (obj->type) {
    case JV_UNDEF: g4_ja_error(c->a, line, "cannot read attribute '%s' of an undefined value", name);
    case JV_LOOP: return loop_attr(c, obj, name);
    case JV_STR:
        for (size_t k = 0; k < sizeof str_methods / sizeof str_methods[0]; k++)
            if (!strcmp(name, str_methods[k].name)) return method(c, obj, str_methods[k].id);
        return &g4_jv_undefined;
    case JV_DICT: {
        if (!obj->ns)
            for (size_t k = 0; k < sizeof dict_methods / sizeof dict_methods[0]; k++)
                if (!strcmp(name, dict_methods[k].name)) return method(c, obj, dict_methods[k].id);
        jval *v = g4_jv_dict_get(obj, name, strlen(name));
        return v ? v : &g4_jv_undefined;
    }
    default: return &g4_jv_undefined;
    }
}

/* ---- arguments ----------------------------------------------------------- */

typedef struct args {
    jval *pos[8];
    size_t n_pos;
    const char *kw_name[8];
    jval *kw[8];
    size_t n_kw;
} args;

/* Evaluates kids[first..] of a CALL / FILTER / TEST node. */
static void eval_args(jctx *c, const jnode *n, size_t first, jscope *s, args *a) {
    a->n_pos = a->n_kw = 0;
    for (size_t k = first; k < n->n_kids; k++) {
        if (a->n_pos == 8 || a->n_kw == 8) g4_ja_error(c->a, n->line, "more than 8 arguments");
        jval *v = eval(c, n->kids[k], s);
        if (n->kw && n->kw[k])
            a->kw_name[a->n_kw] = n->kw[k], a->kw[a->n_kw++] = v;
        else
            a->pos[a->n_pos++] = v;
    }
}

static jval *kwarg(const args *a, const char *name) {
    for (size_t k = 0; name && k < a->n_kw; k++)
        if (!strcmp(a->kw_name[k], name)) return a->kw[k];
    return NULL;
}

/* Argument i (positional) or name (keyword), else NULL. */
static jval *arg(const args *a, size_t i, const char *name) { return i < a->n_pos ? a->pos[i] : kwarg(a, name); }

static const jval *want_str(jctx *c, jval *v, const char *what, int line) {
    if (!v || v->type != JV_STR)
        g4_ja_error(c->a, line, "%s must be a string, not %s", what, v ? g4_jv_type_name(v) : "missing");
    return v;
}

static int64_t want_int(jctx *c, jval *v, int64_t fallback, const char *what, int line) {
    if (!v || v->type == JV_NONE) return fallback;
    if (v->type == JV_INT) return v->i;
    if (v->type == JV_BOOL) return v->b;
    g4_ja_error(c->a, line, "%s must be an integer, not %s", what, g4_jv_type_name(v));
}

/* ---- macros ---------------------------------------------------------------- */

static jval *call_macro(jctx *c, jval *m, const args *a, jval *caller, int line) {
    const jnode *def = m->macro;
    const bool is_caller = def->kind == JS_CALL_BLOCK;
    const size_t n_params = is_caller ? def->n_names : def->n_kids - 1;
    if (++c->calls > JINJA_MAX_CALLS) g4_ja_error(c->a, line, "macro calls nested deeper than %d", JINJA_MAX_CALLS);
    if (a->n_pos > n_params)
        g4_ja_error(c->a, line, "macro '%s' takes %zu arguments, got %zu", is_caller ? "caller" : def->name, n_params,
                    a->n_pos);
    jscope *s = scope_new(c, m->closure);
    for (size_t k = 0; k < a->n_kw; k++) {
        bool known = false;
        for (size_t p = 0; p < n_params; p++)
            known |= !strcmp(a->kw_name[k], is_caller ? def->names[p] : def->kw[p + 1]);
        if (!known)
            g4_ja_error(c->a, line, "macro '%s' has no parameter '%s'", is_caller ? "caller" : def->name,
                        a->kw_name[k]);
    }
    for (size_t p = 0; p < n_params; p++) {
        const char *name = is_caller ? def->names[p] : def->kw[p + 1];
        jval *v = arg(a, p, name);
        if (!v) v = !is_caller && def->kids[p + 1] ? eval(c, def->kids[p + 1], s) : &g4_jv_undefined;
        bind(c, s, name, v);
    }
    if (caller) bind(c, s, "caller", caller);
    jbuf out, *saved = c->out;
    g4_jb_init(&out, c->max_output);
    c->out = &out;
    exec(c, is_caller ? def->kids[1] : def->kids[0], s);
    c->out = saved;
    c->calls--;
    return g4_jb_value(c->a, &out);
}

/* ---- global functions and methods ------------------------------------------ */

static jval *builtin(jctx *c, int id, const args *a, int line) {
    switch (id) {
    case B_RANGE: {
        int64_t lo = 0, hi, st = 1;
        if (a->n_pos == 1)
            hi = want_int(c, a->pos[0], 0, "range()", line);
        else if (a->n_pos == 2 || a->n_pos == 3) {
            lo = want_int(c, a->pos[0], 0, "range()", line);
            hi = want_int(c, a->pos[1], 0, "range()", line);
            if (a->n_pos == 3) st = want_int(c, a->pos[2], 1, "range()", line);
        } else {
            g4_ja_error(c->a, line, "range() takes 1 to 3 arguments");
        }
        if (st == 0) g4_ja_error(c->a, line, "range() step cannot be zero");
        if ((hi - lo) / st > 100000) g4_ja_error(c->a, line, "range() of more than 100000 numbers");
        jval *l = g4_jv_list(c->a, 0);
        for (int64_t k = lo; st > 0 ? k < hi : k > hi; k += st) g4_jv_push(c->a, l, g4_jv_int(c->a, k));
        return l;
    }
    case B_NAMESPACE:
    case B_DICT: {
        jval *d = g4_jv_dict(c->a);
        d->ns = id == B_NAMESPACE;
        for (size_t k = 0; k < a->n_pos; k++) {
            if (a->pos[k]->type != JV_DICT)
                g4_ja_error(c->a, line, "%s() takes keyword arguments or a dict", id == B_DICT ? "dict" : "namespace");
            for (size_t j = 0; j < a->pos[k]->n; j++) g4_jv_dict_set(c->a, d, a->pos[k]->keys[j], a->pos[k]->items[j]);
        }
        for (size_t k = 0; k < a->n_kw; k++) g4_jv_dict_set(c->a, d, g4_jv_cstr(c->a, a->kw_name[k]), a->kw[k]);
        return d;
    }
    case B_RAISE: {
        jval *msg = g4_jv_to_str(c->a, a->n_pos ? a->pos[0] : &g4_jv_undefined);
        g4_ja_error(c->a, line, "%.*s", (int)(msg->len > 400 ? 400 : msg->len), msg->s);
    }
    case B_STRFTIME: {
        const jval *fmt = want_str(c, arg(a, 0, NULL), "strftime_now's format", line);
        time_t now = time(NULL);
        struct tm tm;
        char buf[256];
        size_t n = gmtime_r(&now, &tm) ? strftime(buf, sizeof buf, fmt->s, &tm) : 0;
        return g4_jv_str(c->a, buf, n, NULL);
    }
    }
    g4_ja_error(c->a, line, "unknown function");
}

static jval *call_method(jctx *c, jval *m, const args *a, int line) {
    jval *self = m->self;
    switch (m->i) {
    case M_STARTSWITH:
    case M_ENDSWITH: {
        jval *p = arg(a, 0, NULL);
        jval *options = p && p->type == JV_LIST ? p : NULL;
        for (size_t k = 0; k < (options ? options->n : 1); k++) {
            const jval *x = want_str(c, options ? options->items[k] : p, "the prefix", line);
            if (x->len > self->len) continue;
            size_t at = m->i == M_STARTSWITH ? 0 : self->len - x->len;
            if (!memcmp(self->s + at, x->s, x->len)) return &g4_jv_true;
        }
        return &g4_jv_false;
    }
    case M_SPLIT:
    case M_RSPLIT:
        return split(c, self, arg(a, 0, "sep"), want_int(c, arg(a, 1, "maxsplit"), -1, "maxsplit", line),
                     m->i == M_RSPLIT, line);
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: return strip(c, self, arg(a, 0, "chars"), m->i != M_RSTRIP, m->i != M_LSTRIP);
    case M_UPPER: return change_case(c, self, 0);
    case M_LOWER: return change_case(c, self, 1);
    case M_CAPITALIZE: return change_case(c, change_case(c, self, 1), 2);
    case M_TITLE: return change_case(c, self, 3);
    case M_REPLACE:
        return replace(c, self, want_str(c, arg(a, 0, "old"), "replace's old", line),
                       want_str(c, arg(a, 1, "new"), "replace's new", line),
                       want_int(c, arg(a, 2, "count"), -1, "count", line));
    case M_FIND:
    case M_COUNT: {
        const jval *x = want_str(c, arg(a, 0, NULL), "the substring", line);
        int64_t count = 0;
        for (size_t k = 0; k + x->len <= self->len; k++) {
            if (memcmp(self->s + k, x->s, x->len)) continue;
            if (m->i == M_FIND) return g4_jv_int(c->a, (int64_t)g4_utf8_count(self->s, k));
            count++;
            if (x->len) k += x->len - 1;
        }
        return g4_jv_int(c->a, m->i == M_FIND ? -1 : count);
    }
    case M_JOIN: return join(c, arg(a, 0, NULL) ? arg(a, 0, NULL) : &g4_jv_undefined, self, line);
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        jval *l = g4_jv_list(c->a, self->n);
        for (size_t k = 0; k < self->n; k++)
            g4_jv_push(c->a, l,
                       m->i == M_ITEMS  ? pair(c, self->keys[k], self->items[k])
                       : m->i == M_KEYS ? self->keys[k]
                                        : self->items[k]);
        return l;
    }
    case M_GET: {
        jval *key = arg(a, 0, NULL), *v = key ? dict_find(self, key) : NULL;
        return v ? v : arg(a, 1, "default") ? arg(a, 1, "default") : &g4_jv_none;
    }
    case M_CYCLE:
        if (!a->n_pos) g4_ja_error(c->a, line, "loop.cycle() needs arguments");
        return a->pos[self->loop->index0 % a->n_pos];
    }
    g4_ja_error(c->a, line, "unknown method");
}

static jval *call(jctx *c, const jnode *n, jscope *s, jval *caller) {
    jval *f = eval(c, n->kids[0], s);
    args a;
    eval_args(c, n, 1, s, &a);
    switch (f->type) {
    case JV_MACRO: return call_macro(c, f, &a, caller, n->line);
    case JV_BUILTIN: return builtin(c, (int)f->i, &a, n->line);
    case JV_METHOD: return call_method(c, f, &a, n->line);
    default:
        if (n->kids[0]->kind == JX_NAME)
            g4_ja_error(c->a, n->line, "'%s' is undefined or not callable", n->kids[0]->name);
        g4_ja_error(c->a, n->line, "a %s is not callable", g4_jv_type_name(f));
    }
}

/* ---- tests ------------------------------------------------------------------ */

static bool contains(jctx *c, jval *container, jval *item, int line) {
    switch (container->type) {
    case JV_STR: {
        const jval *x = want_str(c, item, "the left side of 'in' a string", line);
        return !x->len || (container->len >= x->len && memmem(container->s, container->len, x->s, x->len));
    }
    case JV_LIST:
        for (size_t k = 0; k < container->n; k++)
            if (g4_jv_equal(container->items[k], item)) return true;
        return false;
    case JV_DICT: return dict_find(container, item) != NULL;
    case JV_UNDEF: return false;
    default:
        g4_ja_error(c->a, line, "'in' needs a string, list or dict on its right, not %s", g4_jv_type_name(container));
    }
}

static bool test(jctx *c, const char *name, jval *v, const args *a, int line) {
    const jtype t = v->type;
    jval *x = arg(a, 0, NULL);
    if (!strcmp(name, "defined")) return t != JV_UNDEF;
    if (!strcmp(name, "undefined")) return t == JV_UNDEF;
    if (!strcmp(name, "none")) return t == JV_NONE;
    if (!strcmp(name, "string")) return t == JV_STR;
    if (!strcmp(name, "mapping")) return t == JV_DICT;
    if (!strcmp(name, "iterable")) return t == JV_STR || t == JV_LIST || t == JV_DICT || t == JV_UNDEF;
    if (!strcmp(name, "sequence")) return t == JV_STR || t == JV_LIST || t == JV_DICT || t == JV_UNDEF;
    if (!strcmp(name, "number")) return t == JV_INT || t == JV_FLOAT || t == JV_BOOL;
    if (!strcmp(name, "integer")) return t == JV_INT;
    if (!strcmp(name, "float")) return t == JV_FLOAT;
    if (!strcmp(name, "boolean")) return t == JV_BOOL;
    if (!strcmp(name, "true")) return t == JV_BOOL && v->b;
    if (!strcmp(name, "false")) return t == JV_BOOL && !v->b;
    if (!strcmp(name, "callable")) return t == JV_MACRO || t == JV_BUILTIN || t == JV_METHOD;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (t != JV_STR) return false;
        for (size_t k = 0; k < v->len; k++)
            if (name[0] == 'l' ? (v->s[k] >= 'A' && v->s[k] <= 'Z') : (v->s[k] >= 'a' && v->s[k] <= 'z')) return false;
        return true;
    }
    if (!x) g4_ja_error(c->a, line, "test '%s' is unknown or needs an argument", name);
    if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==") || !strcmp(name, "sameas"))
        return g4_jv_equal(v, x);
    if (!strcmp(name, "ne")) return !g4_jv_equal(v, x);
    if (!strcmp(name, "in")) return contains(c, x, v, line);
    if (!strcmp(name, "lt") || !strcmp(name, "gt") || !strcmp(name, "le") || !strcmp(name, "ge")) {
        int r = g4_jv_compare(c->a, line, v, x);
        return name[0] == 'l' ? (name[1] == 't' ? r < 0 : r <= 0) : (name[1] == 't' ? r > 0 : r >= 0);
    }
    if (!strcmp(name, "divisibleby")) {
        int64_t d = want_int(c, x, 1, "divisibleby", line);
        return d && t == JV_INT && v->i % d == 0;
    }
    g4_ja_error(c->a, line, "unknown test '%s'", name);
}

static bool test_odd_even(const char *name, const jval *v, bool *result) {
    if (strcmp(name, "odd") && strcmp(name, "even")) return false;
    *result = v->type == JV_INT && ((v->i % 2 != 0) == (name[0] == 'o'));
    return true;
}

/* ---- filters --------------------------------------------------------------- */

static jval *attr_path(jctx *c, jval *v, const jval *path, int line) {
    /* "a.b" walks nested keys; an integer part indexes a list */
    size_t from = 0;
    for (size_t k = 0; k <= path->len; k++) {
        if (k < path->len && path->s[k] != '.') continue;
        jval *key = g4_jv_str(c->a, path->s + from, k - from, NULL);
        char *end;
        long long i = strtoll(key->s, &end, 10);
        if (key->len && !*end && v->type == JV_LIST)
            v = index_of(c, v, g4_jv_int(c->a, i), line);
        else if (v->type == JV_UNDEF)
            return v;
        else
            v = v->type == JV_DICT ? index_of(c, v, key, line) : attribute(c, v, key->s, line);
        from = k + 1;
    }
    return v;
}

static int compare_sort(jctx *c, jval *x, jval *y, bool case_sensitive, int line) {
    if (!case_sensitive && x->type == JV_STR && y->type == JV_STR) {
        x = change_case(c, x, 1);
        y = change_case(c, y, 1);
    }
    return g4_jv_compare(c->a, line, x, y);
}

/* A stable sort of l (merge sort: Python's sort is stable). key: which part
 * of an item is compared, -1 for the item, 0/1 for a pair's key/value. */
static void sort_items(jctx *c, jval **v, size_t n, jval **tmp, int key, const jval *attr, bool cs, bool rev,
                       int line) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_items(c, v, h, tmp, key, attr, cs, rev, line);
    sort_items(c, v + h, n - h, tmp, key, attr, cs, rev, line);
    size_t i = 0, j = h, o = 0;
    while (i < h || j < n) {
        bool take_left = j == n;
        if (i < h && j < n) {
            jval *x = v[i], *y = v[j];
            if (key >= 0) x = x->items[key], y = y->items[key];
            if (attr) x = attr_path(c, x, attr, line), y = attr_path(c, y, attr, line);
            int r = compare_sort(c, x, y, cs, line);
            take_left = rev ? r >= 0 : r <= 0;
            step(c, line);
        }
        tmp[o++] = take_left ? v[i++] : v[j++];
    }
    memcpy(v, tmp, n * sizeof *v);
}

static jval *sorted(jctx *c, jval *l, int key, const jval *attr, bool cs, bool rev, int line) {
    jval *r = g4_jv_list(c->a, l->n);
    for (size_t k = 0; k < l->n; k++) g4_jv_push(c->a, r, l->items[k]);
    jval **tmp = g4_ja_alloc(c->a, (l->n + 1) * sizeof *tmp);
    sort_items(c, r->items, r->n, tmp, key, attr, cs, rev, line);
    return r;
}

static jval *filter(jctx *c, const char *name, jval *v, const args *a, int line, jscope *s);

/* select / reject / selectattr / rejectattr / map over the items of v. */
static jval *select_items(jctx *c, const char *name, jval *v, const args *a, int line, jscope *s) {
    const bool by_attr = !strcmp(name, "selectattr") || !strcmp(name, "rejectattr");
    const bool keep = name[0] == 's';
    jval *items = iterate(c, v, line), *out = g4_jv_list(c->a, items->n);
    const jval *attr = by_attr ? want_str(c, arg(a, 0, "attribute"), "the attribute", line) : NULL;
    size_t first = by_attr ? 1 : 0;
    jval *tname = arg(a, first, NULL);
    args rest = {0};
    for (size_t k = first + 1; k < a->n_pos; k++) rest.pos[rest.n_pos++] = a->pos[k];
    for (size_t k = 0; k < items->n; k++) {
        jval *x = attr ? attr_path(c, items->items[k], attr, line) : items->items[k];
        bool r;
        if (!tname)
            r = g4_jv_truthy(x);
        else if (!test_odd_even(want_str(c, tname, "the test name", line)->s, x, &r))
            r = test(c, tname->s, x, &rest, line);
        if (r == keep) g4_jv_push(c->a, out, items->items[k]);
        step(c, line);
    }
    (void)s;
    return out;
}

static jval *map_items(jctx *c, jval *v, const args *a, int line, jscope *s) {
    jval *items = iterate(c, v, line), *out = g4_jv_list(c->a, items->n);
    jval *attr = kwarg(a, "attribute"), *dflt = kwarg(a, "default");
    jval *fname = attr ? NULL : arg(a, 0, NULL);
    if (!attr) want_str(c, fname, "map's filter name", line);
    args rest = {0};
    for (size_t k = 1; k < a->n_pos; k++) rest.pos[rest.n_pos++] = a->pos[k];
    for (size_t k = 0; k < items->n; k++) {
        jval *x;
        if (attr) {
            x = attr_path(c, items->items[k], want_str(c, attr, "map's attribute", line), line);
            if (x->type == JV_UNDEF && dflt) x = dflt;
        } else {
            x = filter(c, fname->s, items->items[k], &rest, line, s);
        }
        g4_jv_push(c->a, out, x);
    }
    return out;
}

static jval *to_number(jctx *c, jval *v, jval *dflt, bool want_float) {
    if (v->type == JV_INT || v->type == JV_BOOL) {
        int64_t i = v->type == JV_INT ? v->i : v->b;
        return want_float ? g4_jv_float(c->a, (double)i) : g4_jv_int(c->a, i);
    }
    if (v->type == JV_FLOAT) return want_float ? v : g4_jv_int(c->a, (int64_t)v->f);
    if (v->type == JV_STR) {
        char *end;
        jval *t = strip(c, v, NULL, true, true);
        if (t->len) {
            if (!want_float) {
                long long i = strtoll(t->s, &end, 10);
                if (!*end) return g4_jv_int(c->a, i);
            }
            double f = strtod(t->s, &end);
            if (!*end) return want_float ? g4_jv_float(c->a, f) : g4_jv_int(c->a, (int64_t)f);
        }
    }
    return dflt ? dflt : want_float ? g4_jv_float(c->a, 0) : g4_jv_int(c->a, 0);
}

static jval *filter(jctx *c, const char *name, jval *v, const args *a, int line, jscope *s) {
    step(c, line);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jval *dflt = arg(a, 0, "default_value");
        jval *boolean = arg(a, 1, "boolean");
        bool use = v->type == JV_UNDEF || (boolean && g4_jv_truthy(boolean) && !g4_jv_truthy(v));
        return use ? (dflt ? dflt : g4_jv_str(c->a, "", 0, NULL)) : v;
    }
    if (!strcmp(name, "safe")) return v;
    if (!strcmp(name, "string")) return g4_jv_to_str(c->a, v);
    if (!strcmp(name, "trim")) return strip(c, g4_jv_to_str(c->a, v), arg(a, 0, "chars"), true, true);
    if (!strcmp(name, "upper")) return change_case(c, g4_jv_to_str(c->a, v), 0);
    if (!strcmp(name, "lower")) return change_case(c, g4_jv_to_str(c->a, v), 1);
    if (!strcmp(name, "capitalize")) return change_case(c, change_case(c, g4_jv_to_str(c->a, v), 1), 2);
    if (!strcmp(name, "title")) return change_case(c, g4_jv_to_str(c->a, v), 3);
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v->type == JV_STR) return g4_jv_int(c->a, (int64_t)g4_utf8_count(v->s, v->len));
        if (v->type == JV_LIST || v->type == JV_DICT) return g4_jv_int(c->a, (int64_t)v->n);
        if (v->type == JV_UNDEF) return g4_jv_int(c->a, 0);
        g4_ja_error(c->a, line, "a %s has no length", g4_jv_type_name(v));
    }
    if (!strcmp(name, "replace")) {
        jval *str = g4_jv_to_str(c->a, v);
        return replace(c, str, want_str(c, arg(a, 0, "old"), "replace's old", line),
                       g4_jv_to_str(c->a, arg(a, 1, "new") ? arg(a, 1, "new") : &g4_jv_undefined),
                       want_int(c, arg(a, 2, "count"), -1, "count", line));
    }
    if (!strcmp(name, "join")) {
        jval *attr = arg(a, 1, "attribute");
        if (attr) v = map_items(c, v, &(args){.kw_name = {"attribute"}, .kw = {attr}, .n_kw = 1}, line, s);
        jval *sep = arg(a, 0, "d");
        return join(c, v, sep ? g4_jv_to_str(c->a, sep) : NULL, line);
    }
    if (!strcmp(name, "list")) {
        jval *items = iterate(c, v, line), *l = g4_jv_list(c->a, items->n);
        for (size_t k = 0; k < items->n; k++) g4_jv_push(c->a, l, items->items[k]);
        return l;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jval *items = iterate(c, v, line);
        if (!items->n) return &g4_jv_undefined;
        return items->items[name[0] == 'f' ? 0 : items->n - 1];
    }
    if (!strcmp(name, "reverse")) {
        if (v->type == JV_STR) return slice(c, v, NULL, NULL, g4_jv_int(c->a, -1), line);
        jval *items = iterate(c, v, line), *l = g4_jv_list(c->a, items->n);
        for (size_t k = items->n; k-- > 0;) g4_jv_push(c->a, l, items->items[k]);
        return l;
    }
    if (!strcmp(name, "items")) {
        if (v->type == JV_UNDEF) return g4_jv_list(c->a, 0);
        if (v->type != JV_DICT) g4_ja_error(c->a, line, "items needs a dict, not %s", g4_jv_type_name(v));
        return call_method(c, method(c, v, M_ITEMS), a, line);
    }
    if (!strcmp(name, "dictsort")) {
        if (v->type != JV_DICT) g4_ja_error(c->a, line, "dictsort needs a dict, not %s", g4_jv_type_name(v));
        jval *pairs = call_method(c, method(c, v, M_ITEMS), &(args){0}, line);
        jval *by = arg(a, 1, "by");
        bool by_value = by && by->type == JV_STR && !strcmp(by->s, "value");
        return sorted(c, pairs, by_value ? 1 : 0, NULL,
                      g4_jv_truthy(arg(a, 0, "case_sensitive") ? arg(a, 0, "case_sensitive") : &g4_jv_false),
                      g4_jv_truthy(arg(a, 2, "reverse") ? arg(a, 2, "reverse") : &g4_jv_false), line);
    }
    if (!strcmp(name, "sort")) {
        jval *rev = arg(a, 0, "reverse"), *cs = arg(a, 1, "case_sensitive"), *attr = arg(a, 2, "attribute");
        return sorted(c, iterate(c, v, line), -1, attr ? want_str(c, attr, "sort's attribute", line) : NULL,
                      cs && g4_jv_truthy(cs), rev && g4_jv_truthy(rev), line);
    }
    if (!strcmp(name, "unique")) {
        /* strings compare without case by default, the first one kept */
        jval *cs = arg(a, 0, "case_sensitive");
        jval *items = iterate(c, v, line), *l = g4_jv_list(c->a, items->n), *seen = g4_jv_list(c->a, items->n);
        for (size_t k = 0; k < items->n; k++) {
            jval *x = items->items[k];
            jval *key = x->type == JV_STR && !(cs && g4_jv_truthy(cs)) ? change_case(c, x, 1) : x;
            if (contains(c, seen, key, line)) continue;
            g4_jv_push(c->a, seen, key);
            g4_jv_push(c->a, l, x);
        }
        return l;
    }
    if (!strcmp(name, "tojson")) {
        jval *indent = arg(a, 1, "indent"), *seps = arg(a, 3, "separators"), *sort = arg(a, 4, "sort_keys");
        int ind = indent && indent->type != JV_NONE ? (int)want_int(c, indent, 0, "indent", line) : -1;
        if (ind > 64) ind = 64;
        const char *item_sep = ind >= 0 ? "," : ", ", *key_sep = ": ";
        if (seps && seps->type == JV_LIST && seps->n == 2) {
            item_sep = want_str(c, seps->items[0], "separators", line)->s;
            key_sep = want_str(c, seps->items[1], "separators", line)->s;
        }
        jbuf b;
        g4_jb_init(&b, c->max_output);
        g4_jv_write_json(c->a, &b, v, ind, item_sep, key_sep, sort && g4_jv_truthy(sort), line, 0);
        if (g4_jv_any_taint(v)) g4_jb_taint_all(c->a, &b);
        return g4_jb_value(c->a, &b);
    }
    if (!strcmp(name, "int") || !strcmp(name, "float")) return to_number(c, v, arg(a, 0, "default"), name[0] == 'f');
    if (!strcmp(name, "abs")) {
        if (v->type == JV_INT) return g4_jv_int(c->a, v->i < 0 ? -v->i : v->i);
        if (v->type == JV_FLOAT) return g4_jv_float(c->a, fabs(v->f));
        g4_ja_error(c->a, line, "abs needs a number, not %s", g4_jv_type_name(v));
    }
    if (!strcmp(name, "round")) {
        if (!g4_jv_is_number(v)) g4_ja_error(c->a, line, "round needs a number, not %s", g4_jv_type_name(v));
        int64_t digits = want_int(c, arg(a, 0, "precision"), 0, "precision", line);
        double m = pow(10, (double)(digits > 15 ? 15 : digits < -15 ? -15 : digits));
        return g4_jv_float(c->a, nearbyint(g4_jv_number(v) * m) / m);
    }
    if (!strcmp(name, "select") || !strcmp(name, "reject") || !strcmp(name, "selectattr") ||
        !strcmp(name, "rejectattr"))
        return select_items(c, name, v, a, line, s);
    if (!strcmp(name, "map")) return map_items(c, v, a, line, s);
    g4_ja_error(c->a, line, "unknown filter '%s'", name);
}

/* ---- expressions --------------------------------------------------------- */

static jval *arith(jctx *c, int op, jval *x, jval *y, int line) {
    if (x->type == JV_UNDEF || y->type == JV_UNDEF) g4_ja_error(c->a, line, "arithmetic on an undefined value");
    if (op == JOP_ADD && x->type == JV_STR && y->type == JV_STR) return concat(c, x, y);
    if (op == JOP_ADD && x->type == JV_LIST && y->type == JV_LIST) {
        jval *l = g4_jv_list(c->a, x->n + y->n);
        for (size_t k = 0; k < x->n; k++) g4_jv_push(c->a, l, x->items[k]);
        for (size_t k = 0; k < y->n; k++) g4_jv_push(c->a, l, y->items[k]);
        return l;
    }
    if (op == JOP_MUL && (x->type == JV_STR || x->type == JV_LIST) && y->type == JV_INT) {
        jval *l = g4_jv_list(c->a, 0);
        for (int64_t k = 0; k < y->i; k++) {
            if (x->type == JV_STR)
                g4_jv_push(c->a, l, x);
            else
                for (size_t j = 0; j < x->n; j++) g4_jv_push(c->a, l, x->items[j]);
            step(c, line);
        }
        return x->type == JV_STR ? join(c, l, NULL, line) : l;
    }
    if (!g4_jv_is_number(x) || !g4_jv_is_number(y)) {
        static const char *const sym[] = {"+", "-", "*", "/", "//", "%", "**"};
        g4_ja_error(c->a, line, "unsupported operand types for %s: %s and %s", sym[op], g4_jv_type_name(x),
                    g4_jv_type_name(y));
    }
    const bool ints = x->type != JV_FLOAT && y->type != JV_FLOAT;
    const int64_t i = x->type == JV_INT ? x->i : x->b, j = y->type == JV_INT ? y->i : y->b;
    const double p = g4_jv_number(x), q = g4_jv_number(y);
    int64_t r;
    switch (op) {
    case JOP_ADD:
        if (ints && !__builtin_add_overflow(i, j, &r)) return g4_jv_int(c->a, r);
        return g4_jv_float(c->a, p + q);
    case JOP_SUB:
        if (ints && !__builtin_sub_overflow(i, j, &r)) return g4_jv_int(c->a, r);
        return g4_jv_float(c->a, p - q);
    case JOP_MUL:
        if (ints && !__builtin_mul_overflow(i, j, &r)) return g4_jv_int(c->a, r);
        return g4_jv_float(c->a, p * q);
    case JOP_DIV:
        if (q == 0) g4_ja_error(c->a, line, "division by zero");
        return g4_jv_float(c->a, p / q);
    case JOP_FLOORDIV:
    case JOP_MOD:
        if (q == 0) g4_ja_error(c->a, line, "division by zero");
        if (ints && !(i == INT64_MIN && j == -1)) {
            int64_t d = i / j, m = i % j;
            if (m && ((m < 0) != (j < 0))) d--, m += j;
            return g4_jv_int(c->a, op == JOP_MOD ? m : d);
        } else {
            double m = fmod(p, q);
            if (m && ((m < 0) != (q < 0))) m += q;
            return g4_jv_float(c->a, op == JOP_MOD ? m : floor(p / q));
        }
    case JOP_POW:
        if (ints && j >= 0) {
            int64_t acc = 1, base = i;
            bool overflow = false;
            for (int64_t e = j; e > 0 && !overflow; e >>= 1) {
                if (e & 1) overflow |= __builtin_mul_overflow(acc, base, &acc);
                if (e > 1) overflow |= __builtin_mul_overflow(base, base, &base);
            }
            if (!overflow) return g4_jv_int(c->a, acc);
        }
        return g4_jv_float(c->a, pow(p, q));
    }
    g4_ja_error(c->a, line, "unknown operator");
}

static jval *eval_inner(jctx *c, const jnode *n, jscope *s) {
    switch (n->kind) {
    case JX_LIT: return n->lit;
    case JX_NAME: return lookup(s, n->name);
    case JX_LIST: {
        jval *l = g4_jv_list(c->a, n->n_kids);
        for (size_t k = 0; k < n->n_kids; k++) g4_jv_push(c->a, l, eval(c, n->kids[k], s));
        return l;
    }
    case JX_DICT: {
        jval *d = g4_jv_dict(c->a);
        for (size_t k = 0; k + 1 < n->n_kids; k += 2)
            g4_jv_dict_set(c->a, d, eval(c, n->kids[k], s), eval(c, n->kids[k + 1], s));
        return d;
    }
    case JX_ATTR: return attribute(c, eval(c, n->kids[0], s), n->name, n->line);
    case JX_INDEX: {
        jval *obj = eval(c, n->kids[0], s);
        return index_of(c, obj, eval(c, n->kids[1], s), n->line);
    }
    case JX_SLICE: {
        jval *obj = eval(c, n->kids[0], s), *part[3];
        for (int k = 0; k < 3; k++) part[k] = n->kids[k + 1] ? eval(c, n->kids[k + 1], s) : NULL;
        if (obj->type == JV_UNDEF) g4_ja_error(c->a, n->line, "cannot slice an undefined value");
        return slice(c, obj, part[0], part[1], part[2], n->line);
    }
    case JX_CALL: return call(c, n, s, NULL);
    case JX_FILTER: {
        jval *v = eval(c, n->kids[0], s);
        args a;
        eval_args(c, n, 1, s, &a);
        return filter(c, n->name, v, &a, n->line, s);
    }
    case JX_TEST: {
        jval *v = eval(c, n->kids[0], s);
        args a;
        eval_args(c, n, 1, s, &a);
        bool r;
        if (!test_odd_even(n->name, v, &r)) r = test(c, n->name, v, &a, n->line);
        return g4_jv_bool(r != n->negate);
    }
    case JX_NOT: return g4_jv_bool(!g4_jv_truthy(eval(c, n->kids[0], s)));
    case JX_NEG:
    case JX_POS: {
        jval *v = eval(c, n->kids[0], s);
        if (!g4_jv_is_number(v))
            g4_ja_error(c->a, n->line, "bad operand type for unary %c: %s", n->kind == JX_NEG ? '-' : '+',
                        g4_jv_type_name(v));
        if (n->kind == JX_POS) return v;
        if (v->type == JV_FLOAT) return g4_jv_float(c->a, -v->f);
        int64_t i = v->type == JV_INT ? v->i : v->b;
        return i == INT64_MIN ? g4_jv_float(c->a, -(double)i) : g4_jv_int(c->a, -i);
    }
    case JX_BINARY: {
        jval *x = eval(c, n->kids[0], s), *y = eval(c, n->kids[1], s);
        if (n->op == JOP_CONCAT) return concat(c, x, y);
        return arith(c, n->op, x, y, n->line);
    }
    case JX_COMPARE: {
        jval *x = eval(c, n->kids[0], s), *y = eval(c, n->kids[1], s);
        switch (n->op) {
        case JOP_EQ: return g4_jv_bool(g4_jv_equal(x, y));
        case JOP_NE: return g4_jv_bool(!g4_jv_equal(x, y));
        case JOP_IN: return g4_jv_bool(contains(c, y, x, n->line));
        case JOP_NOT_IN: return g4_jv_bool(!contains(c, y, x, n->line));
        default: {
            int r = g4_jv_compare(c->a, n->line, x, y);
            return g4_jv_bool(n->op == JOP_LT ? r < 0 : n->op == JOP_LE ? r <= 0 : n->op == JOP_GT ? r > 0 : r >= 0);
        }
        }
    }
    case JX_AND: {
        jval *x = eval(c, n->kids[0], s);
        return g4_jv_truthy(x) ? eval(c, n->kids[1], s) : x;
    }
    case JX_OR: {
        jval *x = eval(c, n->kids[0], s);
        return g4_jv_truthy(x) ? x : eval(c, n->kids[1], s);
    }
    case JX_COND:
        if (g4_jv_truthy(eval(c, n->kids[1], s))) return eval(c, n->kids[0], s);
        return n->kids[2] ? eval(c, n->kids[2], s) : &g4_jv_undefined;
    default: g4_ja_error(c->a, n->line, "not an expression");
    }
}

static jval *eval(jctx *c, const jnode *n, jscope *s) {
    step(c, n->line);
    if (++c->depth > JINJA_MAX_EVAL_DEPTH)
        g4_ja_error(c->a, n->line, "expression nested deeper than %d", JINJA_MAX_EVAL_DEPTH);
    jval *v = eval_inner(c, n, s);
    c->depth--;
    return v;
}

/* ---- statements ------------------------------------------------------------ */

static void assign(jctx *c, const jnode *target, jval *v, jscope *s) {
    if (target->kind == JX_NAME) {
        bind(c, s, target->name, v);
    } else if (target->kind == JX_ATTR) {
        jval *ns = eval(c, target->kids[0], s);
        if (ns->type != JV_DICT || !ns->ns)
            g4_ja_error(c->a, target->line, "cannot set attribute '%s' of a %s (only of a namespace)", target->name,
                        g4_jv_type_name(ns));
        g4_jv_dict_set(c->a, ns, g4_jv_cstr(c->a, target->name), v);
    } else {
        jval *items = iterate(c, v, target->line);
        if (items->n != target->n_kids)
            g4_ja_error(c->a, target->line, "cannot unpack %zu values into %zu names", items->n, target->n_kids);
        for (size_t k = 0; k < target->n_kids; k++) bind(c, s, target->kids[k]->name, items->items[k]);
    }
}

static void bind_targets(jctx *c, const jnode *n, jval *item, jscope *s) {
    if (n->n_names == 1) {
        bind(c, s, n->names[0], item);
        return;
    }
    jval *parts = iterate(c, item, n->line);
    if (parts->n != n->n_names)
        g4_ja_error(c->a, n->line, "cannot unpack %zu values into %zu loop variables", parts->n, n->n_names);
    for (size_t k = 0; k < n->n_names; k++) bind(c, s, n->names[k], parts->items[k]);
}

static flow exec_for(jctx *c, const jnode *n, jscope *s) {
    jval *all = iterate(c, eval(c, n->kids[0], s), n->line);
    jscope *ls = scope_new(c, s);
    jval *items = all;
    if (n->kids[1]) {
        items = g4_jv_list(c->a, all->n);
        for (size_t k = 0; k < all->n; k++) {
            bind_targets(c, n, all->items[k], ls);
            if (g4_jv_truthy(eval(c, n->kids[1], ls))) g4_jv_push(c->a, items, all->items[k]);
        }
    }
    jloop *L = g4_ja_alloc(c->a, sizeof *L);
    L->items = items;
    jval *lv = g4_jv_new(c->a, JV_LOOP);
    lv->loop = L;
    for (size_t k = 0; k < items->n; k++) {
        L->index0 = k;
        bind_targets(c, n, items->items[k], ls);
        bind(c, ls, "loop", lv);
        if (exec(c, n->kids[2], ls) == FLOW_BREAK) break;
    }
    if (!items->n && n->kids[3]) return exec(c, n->kids[3], s);
    return FLOW_NORMAL;
}

static flow exec(jctx *c, const jnode *n, jscope *s) {
    step(c, n->line);
    switch (n->kind) {
    case JS_BODY:
        for (size_t k = 0; k < n->n_kids; k++) {
            flow f = exec(c, n->kids[k], s);
            if (f != FLOW_NORMAL) return f;
        }
        return FLOW_NORMAL;
    case JS_TEXT: g4_jb_add(c->a, c->out, n->lit->s, n->lit->len, NULL); return FLOW_NORMAL;
    case JS_OUTPUT: g4_jv_write_str(c->a, c->out, eval(c, n->kids[0], s)); return FLOW_NORMAL;
    case JS_IF:
        for (size_t k = 0; k + 1 < n->n_kids; k += 2)
            if (!n->kids[k] || g4_jv_truthy(eval(c, n->kids[k], s))) return exec(c, n->kids[k + 1], s);
        return FLOW_NORMAL;
    case JS_FOR: return exec_for(c, n, s);
    case JS_SET: assign(c, n->kids[0], eval(c, n->kids[1], s), s); return FLOW_NORMAL;
    case JS_SET_BLOCK: {
        jbuf out, *saved = c->out;
        g4_jb_init(&out, c->max_output);
        c->out = &out;
        exec(c, n->kids[1], s);
        c->out = saved;
        assign(c, n->kids[0], g4_jb_value(c->a, &out), s);
        return FLOW_NORMAL;
    }
    case JS_MACRO: {
        jval *m = g4_jv_new(c->a, JV_MACRO);
        m->macro = n;
        m->closure = s;
        bind(c, s, n->name, m);
        return FLOW_NORMAL;
    }
    case JS_CALL_BLOCK: {
        jval *caller = g4_jv_new(c->a, JV_MACRO);
        caller->macro = n;
        caller->closure = s;
        jval *v = call(c, n->kids[0], s, caller);
        g4_jv_write_str(c->a, c->out, v);
        return FLOW_NORMAL;
    }
    case JS_BREAK: return FLOW_BREAK;
    case JS_CONTINUE: return FLOW_CONTINUE;
    default: g4_jv_write_str(c->a, c->out, eval(c, n, s)); return FLOW_NORMAL;
    }
}

/* ---- entry ----------------------------------------------------------------- */

static void bind_object(jctx *c, jscope *s, const g4_chat_value *obj, bool tainted) {
    if (!obj) return;
    if (obj->type != G4_CHAT_OBJECT) g4_ja_error(c->a, 0, "template variables must be an object");
    for (size_t k = 0; k < obj->len; k++) bind(c, s, obj->keys[k], g4_jv_from_chat(c->a, obj->items[k], tainted));
}

typedef struct render_job {
    jctx c;
    const g4_jinja *t;
    const g4_chat_value *data, *trusted;
    jbuf out;
} render_job;

static void render_all(void *ctx) {
    render_job *job = ctx;
    jctx *c = &job->c;
    jscope *globals = scope_new(c, NULL);
    static const char *const fns[] = {"range", "namespace", "raise_exception", "strftime_now", "dict"};
    for (int k = 0; k < 5; k++) {
        jval *f = g4_jv_new(c->a, JV_BUILTIN);
        f->i = k;
        bind(c, globals, fns[k], f);
    }
    bind_object(c, globals, job->trusted, false);
    bind_object(c, globals, job->data, true);
    c->out = &job->out;
    exec(c, job->t->root, scope_new(c, globals));
}

char *g4_jinja_render(const g4_jinja *t, const g4_chat_value *data, const g4_chat_value *trusted,
                      const g4_jinja_limits *limits, size_t *len, g4_chat_span **data_spans, size_t *n_spans,
                      char *err) {
    if (!limits) limits = &g4_jinja_default_limits;
    if (data_spans) *data_spans = NULL, *n_spans = 0;
    *len = 0;
    jarena arena = {.err = err, .cap = limits->max_memory};
    render_job job = {.c = {.a = &arena, .max_steps = limits->max_steps, .max_output = limits->max_output},
                      .t = t,
                      .data = data,
                      .trusted = trusted};
    g4_jb_init(&job.out, limits->max_output);
    if (g4_ja_try(&arena, render_all, &job)) {
        g4_ja_free(&arena);
        return NULL;
    }
    const jbuf *out = &job.out;
    char *text = malloc(out->len + 1);
    g4_chat_span *spans = NULL;
    size_t n = 0, cap = 0;
    bool oom = !text;
    for (size_t k = 0; !oom && data_spans && out->tainted && k < out->len; k++) {
        if (!out->taint[k]) continue;
        size_t e = k;
        while (e < out->len && out->taint[e]) e++;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            g4_chat_span *g = realloc(spans, cap * sizeof *g);
            if (!g) {
                oom = true;
                break;
            }
            spans = g;
        }
        spans[n++] = (g4_chat_span){k, e - k};
        k = e;
    }
    if (oom) {
        snprintf(err, G4_ERR_LEN, "out of memory for %zu bytes of output", out->len);
        free(text);
        free(spans);
        g4_ja_free(&arena);
        return NULL;
    }
    if (out->len) memcpy(text, out->s, out->len);
    text[out->len] = '\0';
    if (data_spans) *data_spans = spans, *n_spans = n;
    *len = out->len;
    g4_ja_free(&arena);
    return text;
}
