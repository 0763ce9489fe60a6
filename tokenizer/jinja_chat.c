/* The chat API over a model's own Jinja template (tokenizer/chat.h): the
 * conversation as the variables transformers gives a chat template, the
 * rendered prompt without its "<bos>", and the control-token marks that
 * let only the template's own text make control tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "gguf/json.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

struct g4_chat_template {
    g4_jinja *jinja;
};

g4_chat_template *g4_chat_template_new(const char *source, size_t len, char *err) {
    char jerr[G4_ERR_LEN];
    g4_chat_template *t = calloc(1, sizeof *t);
    if (!t) return snprintf(err, G4_ERR_LEN, "chat template: out of memory"), NULL;
    if (!(t->jinja = g4_jinja_parse(source, len, jerr))) {
        snprintf(err, G4_ERR_LEN, "chat template: %.480s", jerr);
        free(t);
        return NULL;
    }
    return t;
}

void g4_chat_template_free(g4_chat_template *t) {
    if (!t) return;
    g4_jinja_free(t->jinja);
    free(t);
}

int g4_chat_template_from_gguf(const g4_gguf_file *f, g4_chat_template **t, char *err) {
    g4_gguf_str s = {0};
    char gerr[G4_ERR_LEN];
    *t = NULL;
    if (g4_gguf_get_str(f, "tokenizer.chat_template", &s, gerr) != GGUF_OK || !s.len) return 0;
    *t = g4_chat_template_new(s.ptr, (size_t)s.len, err);
    return *t ? 0 : -1;
}

/* ---- the variables ------------------------------------------------------ */

/* Builds values; after a failed allocation ok is false and the rest are
 * skipped (the tree is freed as a whole). */
typedef struct builder {
    bool ok;
} builder;

static g4_chat_value *clone(builder *b, const g4_chat_value *v) {
    if (!b->ok) return NULL;
    g4_chat_value *c = NULL;
    switch (v->type) {
    case G4_CHAT_NULL: c = g4_chat_null(); break;
    case G4_CHAT_BOOL: c = g4_chat_bool(v->b); break;
    case G4_CHAT_INT: c = g4_chat_int(v->i); break;
    case G4_CHAT_FLOAT: c = g4_chat_float(v->f); break;
    case G4_CHAT_STRING: c = g4_chat_string(v->str, v->len); break;
    case G4_CHAT_ARRAY:
        c = g4_chat_array();
        for (size_t k = 0; c && k < v->len && b->ok; k++) {
            g4_chat_value *item = clone(b, v->items[k]);
            if (!item || g4_chat_array_push(c, item)) b->ok = false;
        }
        break;
    case G4_CHAT_OBJECT:
        c = g4_chat_object();
        for (size_t k = 0; c && k < v->len && b->ok; k++) {
            g4_chat_value *item = clone(b, v->items[k]);
            if (!item || g4_chat_object_set(c, v->keys[k], item)) b->ok = false;
        }
        break;
    }
    if (!c) b->ok = false;
    return c;
}

static void set(builder *b, g4_chat_value *obj, const char *key, g4_chat_value *v) {
    if (!v)
        b->ok = false;
    else if (!b->ok || !obj)
        g4_chat_value_free(v);
    else if (g4_chat_object_set(obj, key, v))
        b->ok = false;
}

static void set_str(builder *b, g4_chat_value *obj, const char *key, const char *s) {
    if (s) set(b, obj, key, g4_chat_string(s, strlen(s)));
}

static void push(builder *b, g4_chat_value *list, g4_chat_value *v) {
    if (!v)
        b->ok = false;
    else if (!b->ok || !list)
        g4_chat_value_free(v);
    else if (g4_chat_array_push(list, v))
        b->ok = false;
}

static g4_chat_value *message(builder *b, const g4_chat_msg *m) {
    g4_chat_value *d = g4_chat_object();
    set_str(b, d, "role", m->role ? m->role : "");
    set_str(b, d, "content", m->content ? m->content : "");
    set_str(b, d, "reasoning_content", m->reasoning);
    if (m->n_tool_calls && m->tool_calls) {
        g4_chat_value *calls = g4_chat_array();
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            const g4_chat_tool_call *tc = &m->tool_calls[k];
            g4_chat_value *call = g4_chat_object(), *fn = g4_chat_object();
            set_str(b, call, "id", tc->id);
            set_str(b, call, "type", "function");
            set_str(b, fn, "name", tc->name ? tc->name : "");
            set(b, fn, "arguments", tc->args ? clone(b, tc->args) : g4_chat_object());
            set(b, call, "function", fn);
            push(b, calls, call);
        }
        set(b, d, "tool_calls", calls);
    }
    set_str(b, d, "tool_call_id", m->tool_call_id);
    set_str(b, d, "name", m->name);
    if (!d) b->ok = false;
    return d;
}

static g4_chat_value *variables(builder *b, const g4_chat_msg *msgs, size_t n, const g4_chat_opts *o,
                                const g4_json *kwargs) {
    g4_chat_value *vars = g4_chat_object(), *list = g4_chat_array();
    for (size_t i = 0; i < n; i++) push(b, list, message(b, &msgs[i]));
    set(b, vars, "messages", list);
    if (o->n_tools && o->tools) {
        g4_chat_value *tools = g4_chat_array();
        for (size_t k = 0; k < o->n_tools; k++) {
            const g4_chat_tool *t = &o->tools[k];
            g4_chat_value *tool = g4_chat_object(), *fn = g4_chat_object();
            set_str(b, tool, "type", "function");
            set_str(b, fn, "name", t->name ? t->name : "");
            set_str(b, fn, "description", t->description);
            if (t->parameters) set(b, fn, "parameters", clone(b, t->parameters));
            set(b, tool, "function", fn);
            push(b, tools, tool);
        }
        set(b, vars, "tools", tools);
    } else {
        set(b, vars, "tools", g4_chat_null());
    }
    set(b, vars, "enable_thinking", g4_chat_bool(o->enable_thinking));
    for (size_t k = 0; kwargs && k < kwargs->len; k++)
        set(b, vars, kwargs->keys[k].str, g4_chat_value_from_json(&kwargs->items[k]));
    if (!vars) b->ok = false;
    return vars;
}

char *g4_chat_template_render(const g4_chat_template *t, const g4_chat_msg *msgs, size_t n, const g4_chat_opts *opts,
                              const char *kwargs_json, g4_chat_span **data, size_t *n_data, char *err) {
    static const g4_chat_opts defaults = {0};
    if (data) *data = NULL, *n_data = 0;
    if (!opts) opts = &defaults;
    if (n && !msgs) return snprintf(err, G4_ERR_LEN, "messages: NULL with %zu messages", n), NULL;
    g4_json *kwargs = NULL;
    if (kwargs_json) {
        char jerr[G4_ERR_LEN];
        if (!(kwargs = g4_json_parse(kwargs_json, strlen(kwargs_json), "chat_template_kwargs", jerr)))
            return snprintf(err, G4_ERR_LEN, "%s", jerr), NULL;
        if (kwargs->type != G4_JSON_OBJECT) {
            g4_json_free(kwargs);
            return snprintf(err, G4_ERR_LEN, "chat_template_kwargs: must be a JSON object"), NULL;
        }
    }
    builder b = {true};
    g4_chat_value *vars = variables(&b, msgs, n, opts, kwargs);
    g4_chat_value *trusted = g4_chat_object();
    set_str(&b, trusted, "bos_token", "<bos>");
    set_str(&b, trusted, "eos_token", "<eos>");
    set(&b, trusted, "add_generation_prompt", g4_chat_bool(opts->add_generation_prompt));
    g4_json_free(kwargs);
    char *text = NULL;
    size_t len = 0, n_spans = 0;
    g4_chat_span *spans = NULL;
    if (!b.ok || !trusted) {
        snprintf(err, G4_ERR_LEN, "chat: out of memory for %zu messages", n);
    } else {
        char jerr[G4_ERR_LEN];
        text = g4_jinja_render(t->jinja, vars, trusted, NULL, &len, &spans, &n_spans, jerr);
        if (!text) snprintf(err, G4_ERR_LEN, "chat template: %.480s", jerr);
    }
    g4_chat_value_free(vars);
    g4_chat_value_free(trusted);
    if (!text) return NULL;
    /* the BOS the template writes is the tokenizer's to add */
    static const char bos[] = "<bos>";
    const size_t nb = sizeof bos - 1;
    if (len >= nb && !memcmp(text, bos, nb) && !(n_spans && spans[0].at < nb)) {
        memmove(text, text + nb, len - nb + 1);
        for (size_t k = 0; k < n_spans; k++) spans[k].at -= nb;
    }
    if (data)
        *data = spans, *n_data = n_spans;
    else
        free(spans);
    return text;
}

/* ---- control-token marks ------------------------------------------------ */

typedef struct control {
    const char *text;
    size_t len;
} control;

static int by_length_desc(const void *x, const void *y) {
    const control *p = x, *q = y;
    return (p->len < q->len) - (p->len > q->len);
}

int g4_chat_control_marks(const g4_vocab *v, const char *prompt, size_t len, const g4_chat_span *data, size_t n_data,
                          g4_chat_span **marks, size_t *n_marks, char *err) {
    *marks = NULL;
    *n_marks = 0;
    const int32_t n_vocab = g4_vocab_size(v);
    /* control tokens by first byte, longest first */
    size_t count[257] = {0};
    for (int32_t id = 0; id < n_vocab; id++) {
        size_t tl;
        const char *t = g4_vocab_text(v, id, &tl);
        if (t && tl && g4_vocab_is_control(v, id)) count[(unsigned char)t[0] + 1]++;
    }
    for (int k = 1; k < 257; k++) count[k] += count[k - 1];
    control *ctl = malloc((count[256] + 1) * sizeof *ctl);
    size_t fill[256];
    memcpy(fill, count, sizeof fill);
    g4_chat_span *out = NULL;
    size_t n = 0, cap = 0;
    if (!ctl) goto oom;
    for (int32_t id = 0; id < n_vocab; id++) {
        size_t tl;
        const char *t = g4_vocab_text(v, id, &tl);
        if (t && tl && g4_vocab_is_control(v, id)) ctl[fill[(unsigned char)t[0]]++] = (control){t, tl};
    }
    for (int k = 0; k < 256; k++) qsort(ctl + count[k], count[k + 1] - count[k], sizeof *ctl, by_length_desc);

    size_t d = 0; /* the next data span that does not end before `at` */
    for (size_t at = 0; at < len;) {
        while (d < n_data && data[d].at + data[d].len <= at) d++;
        if (d < n_data && data[d].at <= at) {
            at = data[d].at + data[d].len;
            continue;
        }
        const size_t room = d < n_data ? data[d].at - at : len - at; /* template text from here */
        const unsigned char c = (unsigned char)prompt[at];
        size_t hit = 0;
        for (size_t k = count[c]; k < count[c + 1] && !hit; k++)
            if (ctl[k].len <= room && !memcmp(prompt + at, ctl[k].text, ctl[k].len)) hit = ctl[k].len;
        if (!hit) {
            at++;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            g4_chat_span *g = realloc(out, cap * sizeof *g);
            if (!g) goto oom;
            out = g;
        }
        out[n++] = (g4_chat_span){at, hit};
        at += hit;
    }
    free(ctl);
    *marks = out;
    *n_marks = n;
    return 0;
oom:
    free(ctl);
    free(out);
    return snprintf(err, G4_ERR_LEN, "chat: out of memory marking control tokens"), -1;
}
