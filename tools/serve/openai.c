/* OpenAI request bodies -> oai_request, and results -> OpenAI JSON.
 *
 * Chat messages map onto tokenizer/chat.h: roles system, developer, user,
 * assistant (= model) and tool; assistant tool_calls (arguments given as a
 * JSON string, as OpenAI sends them, or as an object) become g4_chat_tool_call;
 * a tool message's content becomes the tool response, as a value when it
 * is a JSON object, else as text. Content may be a string or an array of
 * text parts. tool_choice "none" hides the tools from the model; "auto"
 * lets it choose; "required" and a named function (then the only tool
 * shown) force a call: the model's turn is started with "<|tool_call>call:"
 * (and the name and "{"), and the server keeps the rest well formed with
 * oai_call_guard. */
#include "tools/serve/openai.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat.h"
#include "tokenizer/grammar.h"
#include "tokenizer/tokenizer.h"

#define G4_QUOTE "<|\"|>" /* the string quote token of Gemma 4 arguments */

void oai_error_set(oai_error *e, int status, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 503 ? "unavailable_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void oai_write_error(jw *w, const oai_error *e) {
    jw_printf(w, "{\"error\":{\"code\":%d,\"message\":", e->status);
    jw_qstr(w, e->message);
    jw_cstr(w, ",\"type\":");
    jw_qstr(w, e->type);
    jw_cstr(w, "}}");
}

/* ---------------------------------------------------------------- values */

void oai_write_value(jw *w, const g4_chat_value *v) {
    switch (v->type) {
    case G4_CHAT_NULL: jw_cstr(w, "null"); return;
    case G4_CHAT_BOOL: jw_cstr(w, v->b ? "true" : "false"); return;
    case G4_CHAT_INT: jw_printf(w, "%lld", (long long)v->i); return;
    case G4_CHAT_FLOAT: jw_num(w, v->f); return;
    case G4_CHAT_STRING: jw_str(w, v->str, v->len); return;
    case G4_CHAT_ARRAY:
    case G4_CHAT_OBJECT:
        jw_cstr(w, v->type == G4_CHAT_ARRAY ? "[" : "{");
        for (size_t i = 0; i < v->len; i++) {
            if (i) jw_cstr(w, ",");
            if (v->type == G4_CHAT_OBJECT) jw_qstr(w, v->keys[i]), jw_cstr(w, ":");
            oai_write_value(w, v->items[i]);
        }
        jw_cstr(w, v->type == G4_CHAT_ARRAY ? "]" : "}");
        return;
    }
}

/* ---------------------------------------------------------------- typed fields */

/* Each returns 0 when the member is absent or null (out untouched) or valid,
 * -1 with e set when it has the wrong type or range. */
static int get_number(const g4_json *o, const char *key, double lo, double hi, double *out, oai_error *e) {
    const g4_json *v = g4_json_get(o, key);
    if (!v || v->type == G4_JSON_NULL) return 0;
    if (v->type != G4_JSON_NUMBER) return oai_error_set(e, 400, "'%s' must be a number", key), -1;
    if (!(v->number >= lo && v->number <= hi))
        return oai_error_set(e, 400, "'%s' must be between %g and %g", key, lo, hi), -1;
    *out = v->number;
    return 0;
}

static int get_int(const g4_json *o, const char *key, int64_t lo, int64_t hi, int64_t *out, oai_error *e) {
    const g4_json *v = g4_json_get(o, key);
    if (!v || v->type == G4_JSON_NULL) return 0;
    if (v->type != G4_JSON_NUMBER || !v->is_int) return oai_error_set(e, 400, "'%s' must be an integer", key), -1;
    if (v->integer < lo || v->integer > hi)
        return oai_error_set(e, 400, "'%s' must be between %lld and %lld", key, (long long)lo, (long long)hi), -1;
    *out = v->integer;
    return 0;
}

static int get_bool(const g4_json *o, const char *key, bool *out, oai_error *e) {
    const g4_json *v = g4_json_get(o, key);
    if (!v || v->type == G4_JSON_NULL) return 0;
    if (v->type != G4_JSON_BOOL) return oai_error_set(e, 400, "'%s' must be a boolean", key), -1;
    *out = v->boolean;
    return 0;
}

/* A member that must have one type when present: NULL (e unset) when absent
 * or null, NULL with e set when of another type. */
static const g4_json *get_typed(const g4_json *o, const char *key, enum g4_json_type t, oai_error *e) {
    const g4_json *v = g4_json_get(o, key);
    if (!v || v->type == G4_JSON_NULL) return NULL;
    if (v->type == t) return v;
    oai_error_set(e, 400, "'%s' must be %s %s", key, t == G4_JSON_ARRAY || t == G4_JSON_OBJECT ? "an" : "a",
                  g4_json_type_name(t));
    return NULL;
}

/* ---------------------------------------------------------------- chat */

/* What the g4_chat_msg array points into, freed together. */
typedef struct conv {
    g4_chat_msg *msgs;
    size_t n_msgs;
    g4_chat_tool *tools;
    size_t n_tools;
    char **strs;
    g4_chat_value **vals;
    g4_chat_tool_call **calls;
    size_t n_strs, n_vals, n_calls;
} conv;

static void conv_free(conv *c) {
    for (size_t i = 0; i < c->n_strs; i++) free(c->strs[i]);
    for (size_t i = 0; i < c->n_vals; i++) g4_chat_value_free(c->vals[i]);
    for (size_t i = 0; i < c->n_calls; i++) free(c->calls[i]);
    free(c->strs), free(c->vals), free(c->calls), free(c->msgs), free(c->tools);
}

/* Takes ownership of p (freed on failure); p itself, or NULL. */
static void *keep(void ***list, size_t *n, void *p) {
    void **g = p ? realloc(*list, (*n + 1) * sizeof *g) : NULL;
    if (!g) return NULL;
    *list = g;
    return g[(*n)++] = p;
}
static char *keep_str(conv *c, char *s) {
    char *k = keep((void ***)&c->strs, &c->n_strs, s);
    if (!k) free(s);
    return k;
}
static g4_chat_value *keep_val(conv *c, g4_chat_value *v) {
    g4_chat_value *k = keep((void ***)&c->vals, &c->n_vals, v);
    if (!k) g4_chat_value_free(v);
    return k;
}

#define OOM(e) (oai_error_set(e, 500, "out of memory"), -1)

/* Message content: a string, null, or an array of {"type":"text","text":...}
 * parts (joined). */
static int get_content(conv *c, const g4_json *msg, const char **out, size_t im, oai_error *e) {
    const g4_json *v = g4_json_get(msg, "content");
    *out = NULL;
    if (!v || v->type == G4_JSON_NULL) return 0;
    if (v->type == G4_JSON_STRING) return *out = v->str, 0;
    if (v->type != G4_JSON_ARRAY)
        return oai_error_set(e, 400, "messages[%zu].content must be a string or an array of parts", im), -1;
    jw text = {0};
    jw_cstr(&text, "");
    for (size_t i = 0; i < v->len; i++) {
        const g4_json *part = &v->items[i];
        const g4_json *type = g4_json_get_type(part, "type", G4_JSON_STRING);
        const g4_json *t = g4_json_get_type(part, "text", G4_JSON_STRING);
        if (!type || strcmp(type->str, "text") || !t) {
            jw_free(&text);
            return oai_error_set(e, 400, "messages[%zu].content[%zu]: only parts of type \"text\" with a \"text\" string are supported", im, i), -1;
        }
        jw_raw(&text, t->str, t->len);
    }
    if (text.oom || !keep_str(c, text.s)) return OOM(e);
    *out = text.s;
    return 0;
}

static int get_tool_calls(conv *c, const g4_json *msg, g4_chat_msg *out, size_t im, oai_error *e) {
    const g4_json *tc = get_typed(msg, "tool_calls", G4_JSON_ARRAY, e);
    if (!tc) return e->status ? -1 : 0;
    if (!tc->len) return 0;
    g4_chat_tool_call *calls = calloc(tc->len, sizeof *calls);
    if (!calls || !keep((void ***)&c->calls, &c->n_calls, calls)) return free(calls), OOM(e);
    for (size_t k = 0; k < tc->len; k++) {
        const g4_json *fn = g4_json_get_type(&tc->items[k], "function", G4_JSON_OBJECT);
        const g4_json *name = g4_json_get_type(fn, "name", G4_JSON_STRING);
        const g4_json *id = g4_json_get_type(&tc->items[k], "id", G4_JSON_STRING);
        const g4_json *args = g4_json_get(fn, "arguments");
        if (!name) return oai_error_set(e, 400, "messages[%zu].tool_calls[%zu] needs function.name", im, k), -1;
        calls[k].name = name->str;
        calls[k].id = id ? id->str : NULL;
        g4_json *parsed = NULL;
        if (args && args->type == G4_JSON_STRING) { /* OpenAI sends the arguments as JSON text */
            char jerr[G4_ERR_LEN];
            if (!(parsed = g4_json_parse(args->str, args->len, "arguments", jerr)))
                return oai_error_set(e, 400, "messages[%zu].tool_calls[%zu].function.%s", im, k, jerr), -1;
            args = parsed;
        }
        if (args && args->type != G4_JSON_OBJECT && args->type != G4_JSON_NULL) {
            g4_json_free(parsed);
            return oai_error_set(e, 400, "messages[%zu].tool_calls[%zu].function.arguments must be an object", im, k), -1;
        }
        if (args && args->type == G4_JSON_OBJECT && !(calls[k].args = keep_val(c, g4_chat_value_from_json(args)))) {
            g4_json_free(parsed);
            return OOM(e);
        }
        g4_json_free(parsed);
    }
    out->tool_calls = calls;
    out->n_tool_calls = tc->len;
    return 0;
}

static int get_message(conv *c, const g4_json *msg, g4_chat_msg *out, size_t im, oai_error *e) {
    if (msg->type != G4_JSON_OBJECT) return oai_error_set(e, 400, "messages[%zu] must be an object", im), -1;
    const g4_json *role = g4_json_get_type(msg, "role", G4_JSON_STRING);
    if (!role) return oai_error_set(e, 400, "messages[%zu].role must be a string", im), -1;
    if (strlen(role->str) != role->len) return oai_error_set(e, 400, "messages[%zu].role contains a NUL byte", im), -1;
    static const char *const roles[] = {"system", "developer", "user", "assistant", "model", "tool"};
    size_t r = 0;
    while (r < sizeof roles / sizeof roles[0] && strcmp(role->str, roles[r])) r++;
    if (r == sizeof roles / sizeof roles[0])
        return oai_error_set(e, 400, "messages[%zu]: unknown role '%.64s'", im, role->str), -1;
    out->role = roles[r];
    if (get_content(c, msg, &out->content, im, e)) return -1;
    if (!strcmp(out->role, "assistant") || !strcmp(out->role, "model")) {
        const g4_json *rc = get_typed(msg, "reasoning_content", G4_JSON_STRING, e);
        if (e->status) return -1;
        out->reasoning = rc ? rc->str : NULL;
        return get_tool_calls(c, msg, out, im, e);
    }
    if (strcmp(out->role, "tool")) return 0;
    const g4_json *id = get_typed(msg, "tool_call_id", G4_JSON_STRING, e);
    const g4_json *name = e->status ? NULL : get_typed(msg, "name", G4_JSON_STRING, e);
    if (e->status) return -1;
    out->tool_call_id = id ? id->str : NULL;
    out->name = name ? name->str : NULL;
    char jerr[G4_ERR_LEN];
    g4_json *parsed = out->content ? g4_json_parse(out->content, strlen(out->content), "content", jerr) : NULL;
    if (parsed && parsed->type == G4_JSON_OBJECT && !(out->response = keep_val(c, g4_chat_value_from_json(parsed)))) {
        g4_json_free(parsed);
        return OOM(e);
    }
    g4_json_free(parsed);
    return 0;
}

/* tool_choice: *forced set for "required" or a named function (*only). */
static int get_tool_choice(const g4_json *body, bool *forced, const char **only, bool *hide, oai_error *e) {
    const g4_json *choice = g4_json_get(body, "tool_choice");
    *forced = *hide = false;
    *only = NULL;
    if (!choice || choice->type == G4_JSON_NULL) return 0;
    if (choice->type == G4_JSON_STRING) {
        *hide = !strcmp(choice->str, "none");
        *forced = !strcmp(choice->str, "required");
        if (!*hide && !*forced && strcmp(choice->str, "auto"))
            return oai_error_set(e, 400, "'tool_choice' must be \"none\", \"auto\", \"required\" or a function"), -1;
        return 0;
    }
    if (choice->type != G4_JSON_OBJECT) return oai_error_set(e, 400, "'tool_choice' must be a string or an object"), -1;
    const g4_json *name = g4_json_get_type(g4_json_get_type(choice, "function", G4_JSON_OBJECT), "name", G4_JSON_STRING);
    if (!name) return oai_error_set(e, 400, "'tool_choice' object needs function.name"), -1;
    *only = name->str;
    *forced = true;
    return 0;
}

static int get_tools(conv *c, const g4_json *body, bool *forced, const char **only, oai_error *e) {
    bool hide;
    if (get_tool_choice(body, forced, only, &hide, e)) return -1;
    const g4_json *tools = get_typed(body, "tools", G4_JSON_ARRAY, e);
    if (e->status) return -1;
    if (*forced && (!tools || !tools->len)) return oai_error_set(e, 400, "'tool_choice' asks for a call but 'tools' is empty"), -1;
    if (!tools || hide) return 0;
    if (tools->len && !(c->tools = calloc(tools->len, sizeof *c->tools))) return OOM(e);
    for (size_t k = 0; k < tools->len; k++) {
        const g4_json *fn = g4_json_get_type(&tools->items[k], "function", G4_JSON_OBJECT);
        const g4_json *name = g4_json_get_type(fn, "name", G4_JSON_STRING);
        const g4_json *desc = g4_json_get_type(fn, "description", G4_JSON_STRING);
        const g4_json *params = g4_json_get(fn, "parameters");
        if (!name) return oai_error_set(e, 400, "tools[%zu] needs function.name", k), -1;
        if (params && params->type != G4_JSON_OBJECT && params->type != G4_JSON_NULL)
            return oai_error_set(e, 400, "tools[%zu].function.parameters must be an object", k), -1;
        if (*only && strcmp(*only, name->str)) continue;
        g4_chat_tool *t = &c->tools[c->n_tools++];
        t->name = name->str;
        t->description = desc ? desc->str : NULL;
        if (params && params->type == G4_JSON_OBJECT && !(t->parameters = keep_val(c, g4_chat_value_from_json(params)))) return OOM(e);
    }
    if (*only && !c->n_tools) return oai_error_set(e, 400, "'tool_choice' names '%.64s', which is not in tools", *only), -1;
    return 0;
}

/* "name\nkey\n...": what a forced call of tool t may write. */
static char *call_fn(const g4_chat_tool *t) {
    jw w = {0};
    jw_cstr(&w, t->name);
    jw_cstr(&w, "\n");
    const g4_chat_value *props = g4_chat_object_get(t->parameters, "properties");
    for (size_t k = 0; props && props->type == G4_CHAT_OBJECT && k < props->len; k++)
        jw_cstr(&w, props->keys[k]), jw_cstr(&w, "\n");
    if (w.oom) jw_free(&w);
    return w.s;
}

/* Starts the model's answer with a tool call: closes a thought channel the
 * prompt left open (no thinking before a forced call), then the call up to
 * the name, or through "{" when the name is given. */
static int force_call(const conv *c, const char *only, oai_request *r, oai_error *e) {
    static const char close[] = "<channel|>", call[] = "<|tool_call>";
    const size_t n = strlen(r->prompt), n_close = r->starts_in_thought ? sizeof close - 1 : 0;
    jw w = {0};
    jw_cstr(&w, r->starts_in_thought ? close : "");
    jw_cstr(&w, call);
    jw_cstr(&w, "call:");
    if (only) jw_cstr(&w, only), jw_cstr(&w, "{");
    char *prompt = w.oom ? NULL : malloc(n + w.len + 1);
    r->forced = w.s;
    r->call_fns = calloc(c->n_tools, sizeof *r->call_fns);
    g4_chat_span *marks = realloc(r->marks, (r->n_marks + 2) * sizeof *marks);
    if (marks) r->marks = marks;
    if (!prompt || !r->call_fns || !marks) return free(prompt), OOM(e);
    if (n_close) r->marks[r->n_marks++] = (g4_chat_span){n, n_close}; /* markers of the template, as the rest */
    r->marks[r->n_marks++] = (g4_chat_span){n + n_close, sizeof call - 1};
    strcpy(stpcpy(prompt, r->prompt), w.s);
    free(r->prompt);
    r->prompt = prompt;
    for (; (size_t)r->n_call_fns < c->n_tools; r->n_call_fns++)
        if (!(r->call_fns[r->n_call_fns] = call_fn(&c->tools[r->n_call_fns]))) return OOM(e);
    return 0;
}

/* The prompt by the model's own template, with the server's kwargs and the
 * request's over them; control-token text counts as a marker only where
 * the template itself wrote it. 0, or -1 with e set. */
static int render_template(const conv *c, const oai_model *m, const g4_json *kwargs, const g4_chat_opts *opts,
                           oai_request *r, oai_error *e) {
    g4_chat_value *all = g4_chat_object();
    const g4_json *layers[2] = {m->kwargs, kwargs};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; all && layers[l] && i < layers[l]->len; i++)
            if (g4_chat_object_set(all, layers[l]->keys[i].str, g4_chat_value_from_json(&layers[l]->items[i])))
                g4_chat_value_free(all), all = NULL;
    jw text = {0};
    if (all) oai_write_value(&text, all);
    g4_chat_value_free(all);
    if (!all || text.oom) return jw_free(&text), OOM(e);
    char err[G4_ERR_LEN];
    g4_chat_span *data = NULL;
    size_t n_data = 0;
    r->prompt = g4_chat_template_render(m->tmpl, c->msgs, c->n_msgs, opts, text.s, &data, &n_data, err);
    jw_free(&text);
    int rc = 0;
    if (!r->prompt) rc = -1, oai_error_set(e, 400, "%s", err);
    else if (m->vocab && g4_chat_control_marks(m->vocab, r->prompt, strlen(r->prompt), data, n_data, &r->marks,
                                               &r->n_marks, err))
        rc = -1, oai_error_set(e, 500, "%s", err);
    free(data);
    return rc;
}

int oai_render_chat(const g4_json *body, const oai_model *m, oai_request *r, oai_error *e) {
    conv c = {0};
    int rc = -1;
    const g4_json *msgs = get_typed(body, "messages", G4_JSON_ARRAY, e);
    if (!msgs) {
        if (!e->status) oai_error_set(e, 400, "'messages' is required");
        return -1;
    }
    if (!msgs->len) return oai_error_set(e, 400, "'messages' must not be empty"), -1;
    g4_chat_opts opts = {.add_generation_prompt = true, .empty_thought_channel = m->empty_thought_channel};
    const g4_json *kwargs = get_typed(body, "chat_template_kwargs", G4_JSON_OBJECT, e);
    if (e->status) return -1;
    /* the server's kwargs, then the request's over them */
    const g4_json *think = g4_json_get_type(m->kwargs, "enable_thinking", G4_JSON_BOOL);
    if (think) opts.enable_thinking = think->boolean;
    if (get_bool(kwargs, "enable_thinking", &opts.enable_thinking, e)) return -1;
    if (!(c.msgs = calloc(msgs->len, sizeof *c.msgs))) return OOM(e);
    for (c.n_msgs = 0; c.n_msgs < msgs->len; c.n_msgs++)
        if (get_message(&c, &msgs->items[c.n_msgs], &c.msgs[c.n_msgs], c.n_msgs, e)) goto done;
    bool forced;
    const char *only;
    if (get_tools(&c, body, &forced, &only, e)) goto done;
    opts.tools = c.tools;
    opts.n_tools = c.n_tools;
    char err[G4_ERR_LEN];
    if (m->tmpl ? render_template(&c, m, kwargs, &opts, r, e)
                : !(r->prompt = g4_chat_format_marked(c.msgs, c.n_msgs, &opts, &r->marks, &r->n_marks, err))) {
        if (!e->status) oai_error_set(e, 400, "%s", err);
        goto done;
    }
    static const char open_thought[] = "<|channel>thought\n";
    size_t n = strlen(r->prompt), k = sizeof open_thought - 1;
    r->starts_in_thought = n >= k && !strcmp(r->prompt + n - k, open_thought);
    rc = forced ? force_call(&c, only, r, e) : 0;
done:
    conv_free(&c);
    return rc;
}

/* ---------------------------------------------------------------- requests */

static int get_stop(const g4_json *body, oai_request *r, oai_error *e) {
    const g4_json *stop = g4_json_get(body, "stop");
    if (!stop || stop->type == G4_JSON_NULL) return 0;
    const g4_json *items = stop->type == G4_JSON_ARRAY ? stop->items : stop;
    size_t n = stop->type == G4_JSON_ARRAY ? stop->len : 1;
    if (stop->type != G4_JSON_ARRAY && stop->type != G4_JSON_STRING)
        return oai_error_set(e, 400, "'stop' must be a string or an array of strings"), -1;
    if (n > OAI_MAX_STOP) return oai_error_set(e, 400, "'stop' has more than %d strings", OAI_MAX_STOP), -1;
    for (size_t i = 0; i < n; i++) {
        if (items[i].type != G4_JSON_STRING || !items[i].len || strlen(items[i].str) != items[i].len)
            return oai_error_set(e, 400, "'stop' strings must be non-empty strings"), -1;
        if (!(r->stop[r->n_stop++] = strdup(items[i].str))) return OOM(e);
    }
    return 0;
}

static int get_prompt(const g4_json *body, const oai_model *m, oai_request *r, oai_error *e) {
    const g4_json *p = g4_json_get(body, "prompt");
    if (p && p->type == G4_JSON_ARRAY && p->len == 1 && p->items[0].type == G4_JSON_STRING) p = &p->items[0];
    if (p && p->type == G4_JSON_STRING) return (r->prompt = strdup(p->str)) ? 0 : OOM(e);
    if (!p || p->type != G4_JSON_ARRAY || !p->len)
        return oai_error_set(e, 400, "'prompt' must be a string or a non-empty array of token ids"), -1;
    if (p->len > INT32_MAX || !(r->ids = malloc(p->len * sizeof *r->ids))) return OOM(e);
    for (size_t i = 0; i < p->len; i++) {
        const g4_json *t = &p->items[i];
        if (t->type != G4_JSON_NUMBER || !t->is_int || t->integer < 0 || t->integer >= m->n_vocab)
            return oai_error_set(e, 400, "prompt[%zu] is not a token id (0..%d)", i, m->n_vocab - 1), -1;
        r->ids[i] = (int32_t)t->integer;
    }
    r->n_ids = (int32_t)p->len;
    return 0;
}

/* logit_bias: OpenAI's object {"token id": bias}, or llama.cpp's array of
 * [id, bias] pairs where a bias of false bans the token. Biases are
 * -100..100 as OpenAI's; -100 bans (the logit becomes -inf). */
static int get_logit_bias(const g4_json *body, const oai_model *m, oai_request *r, oai_error *e) {
    const g4_json *lb = g4_json_get(body, "logit_bias");
    if (!lb || lb->type == G4_JSON_NULL) return 0;
    if (lb->type != G4_JSON_OBJECT && lb->type != G4_JSON_ARRAY)
        return oai_error_set(e, 400, "'logit_bias' must be an object of token id -> bias"), -1;
    if (lb->len > OAI_MAX_LOGIT_BIAS) return oai_error_set(e, 400, "'logit_bias' has more than %d entries", OAI_MAX_LOGIT_BIAS), -1;
    if (lb->len && !(r->bias = calloc(lb->len, sizeof *r->bias))) return OOM(e);
    for (size_t i = 0; i < lb->len; i++) {
        const g4_json *id_v = NULL, *bias_v = &lb->items[i];
        long long id = -1;
        char *end = NULL;
        if (lb->type == G4_JSON_OBJECT) {
            const char *k = lb->keys[i].str;
            if (*k >= '0' && *k <= '9') id = strtoll(k, &end, 10);
            if (!end || *end || id >= m->n_vocab)
                return oai_error_set(e, 400, "logit_bias: '%.40s' is not a token id (0..%d)", k, m->n_vocab - 1), -1;
        } else {
            const g4_json *pair = &lb->items[i];
            id_v = pair->type == G4_JSON_ARRAY && pair->len == 2 ? &pair->items[0] : NULL;
            bias_v = id_v ? &pair->items[1] : NULL;
            if (!id_v || id_v->type != G4_JSON_NUMBER || !id_v->is_int || id_v->integer < 0 || id_v->integer >= m->n_vocab)
                return oai_error_set(e, 400, "logit_bias[%zu] must be [token id (0..%d), bias]", i, m->n_vocab - 1), -1;
            id = id_v->integer;
        }
        float bias;
        if (bias_v->type == G4_JSON_BOOL && !bias_v->boolean) bias = -INFINITY;
        else if (bias_v->type == G4_JSON_NUMBER && bias_v->number >= -100 && bias_v->number <= 100)
            bias = bias_v->number <= -100 ? -INFINITY : (float)bias_v->number;
        else return oai_error_set(e, 400, "logit_bias for token %lld must be a number from -100 to 100", id), -1;
        r->bias[i] = (gemma4_logit_bias){(int32_t)id, bias};
    }
    r->sampling.logit_bias = r->bias;
    r->sampling.n_logit_bias = (int32_t)lb->len;
    return 0;
}

/* logprobs: chat {"logprobs": true, "top_logprobs": N}; completions
 * {"logprobs": N} (N alternatives, 0 for the picked token alone). */
static int get_logprobs(const g4_json *body, bool chat, oai_request *r, oai_error *e) {
    const g4_json *lp = g4_json_get(body, "logprobs");
    int64_t top = 0;
    if (lp && lp->type == G4_JSON_BOOL) r->logprobs = lp->boolean;
    else if (!chat && lp && lp->type == G4_JSON_NUMBER) {
        if (get_int(body, "logprobs", 0, OAI_MAX_TOP_LOGPROBS, &top, e)) return -1;
        r->logprobs = true;
    } else if (lp && lp->type != G4_JSON_NULL) {
        return oai_error_set(e, 400, chat ? "'logprobs' must be a boolean" : "'logprobs' must be an integer"), -1;
    }
    const g4_json *tl = g4_json_get(body, "top_logprobs");
    if (tl && tl->type != G4_JSON_NULL) {
        if (get_int(body, "top_logprobs", 0, OAI_MAX_TOP_LOGPROBS, &top, e)) return -1;
        if (!r->logprobs) return oai_error_set(e, 400, "'top_logprobs' needs 'logprobs' set"), -1;
    }
    r->top_logprobs = (int32_t)top;
    return 0;
}

/* The grammar of a JSON Schema (text of the schema object). */
static int schema_grammar(const g4_json *schema, const char *where, oai_request *r, oai_error *e) {
    jw text = {0};
    g4_chat_value *v = g4_chat_value_from_json(schema);
    if (v) oai_write_value(&text, v);
    g4_chat_value_free(v);
    if (!v || text.oom) return jw_free(&text), OOM(e);
    char err[G4_ERR_LEN];
    r->grammar = g4_json_schema_to_gbnf(text.s, text.len, err);
    jw_free(&text);
    if (!r->grammar) return oai_error_set(e, 400, "%s: %s", where, err), -1;
    return 0;
}

/* response_format ({"type": "text" | "json_object" | "json_schema"}), and
 * llama.cpp's "grammar" (GBNF) and "json_schema" fields: at most one. */
static int get_constraint(const g4_json *body, oai_request *r, oai_error *e) {
    const g4_json *rf = get_typed(body, "response_format", G4_JSON_OBJECT, e);
    const g4_json *gbnf = e->status ? NULL : get_typed(body, "grammar", G4_JSON_STRING, e);
    const g4_json *js = e->status ? NULL : get_typed(body, "json_schema", G4_JSON_OBJECT, e);
    if (e->status) return -1;
    const g4_json *type = rf ? g4_json_get_type(rf, "type", G4_JSON_STRING) : NULL;
    if (rf && !type) return oai_error_set(e, 400, "'response_format.type' must be a string"), -1;
    const bool text = !type || !strcmp(type->str, "text");
    if (!text + !!gbnf + !!js > 1)
        return oai_error_set(e, 400, "give one of 'response_format', 'grammar' and 'json_schema'"), -1;
    if (gbnf) {
        if (strlen(gbnf->str) != gbnf->len) return oai_error_set(e, 400, "'grammar' contains a NUL byte"), -1;
        return (r->grammar = strdup(gbnf->str)) ? 0 : OOM(e);
    }
    if (js) return schema_grammar(js, "json_schema", r, e);
    if (text) return 0;
    if (!strcmp(type->str, "json_object")) {
        const g4_json *schema = get_typed(rf, "schema", G4_JSON_OBJECT, e); /* llama.cpp's extension */
        if (e->status) return -1;
        if (schema) return schema_grammar(schema, "response_format.schema", r, e);
        char err[G4_ERR_LEN];
        static const char object[] = "{\"type\":\"object\",\"additionalProperties\":true}";
        if (!(r->grammar = g4_json_schema_to_gbnf(object, sizeof object - 1, err)))
            return oai_error_set(e, 500, "json_object: %s", err), -1;
        return 0;
    }
    if (!strcmp(type->str, "json_schema")) {
        const g4_json *spec = g4_json_get_type(rf, "json_schema", G4_JSON_OBJECT);
        const g4_json *schema = spec ? g4_json_get_type(spec, "schema", G4_JSON_OBJECT) : NULL;
        if (!schema) return oai_error_set(e, 400, "'response_format.json_schema.schema' must be an object"), -1;
        return schema_grammar(schema, "response_format.json_schema.schema", r, e);
    }
    return oai_error_set(e, 400, "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\""), -1;
}

static int get_sampling(const g4_json *body, bool chat, const oai_model *m, oai_request *r, oai_error *e) {
    double temp = r->sampling.temperature, top_p = r->sampling.top_p, min_p = r->sampling.min_p;
    double presence = r->sampling.presence_penalty, frequency = r->sampling.frequency_penalty,
           repeat = r->sampling.repeat_penalty;
    int64_t top_k = r->sampling.top_k, seed = -1, max_tokens = -1, n = 1, last_n = r->sampling.penalty_last_n;
    if (get_number(body, "temperature", 0, 2, &temp, e) || get_number(body, "top_p", 0, 1, &top_p, e) ||
        get_number(body, "min_p", 0, 1, &min_p, e) || get_int(body, "top_k", 0, INT32_MAX, &top_k, e) ||
        get_int(body, "seed", -1, INT64_MAX, &seed, e) || get_int(body, "n", 1, OAI_MAX_N, &n, e) ||
        get_number(body, "presence_penalty", -2, 2, &presence, e) ||
        get_number(body, "frequency_penalty", -2, 2, &frequency, e) ||
        get_number(body, "repeat_penalty", 0, 10, &repeat, e) ||
        get_int(body, "repeat_last_n", -1, INT32_MAX, &last_n, e) ||
        get_int(body, "max_tokens", 1, INT32_MAX, &max_tokens, e) ||
        get_int(body, "max_completion_tokens", 1, INT32_MAX, &max_tokens, e) || get_logit_bias(body, m, r, e) ||
        get_logprobs(body, chat, r, e) || get_constraint(body, r, e))
        return -1;
    r->sampling.temperature = (float)temp;
    r->sampling.top_p = (float)top_p;
    r->sampling.min_p = (float)min_p;
    r->sampling.top_k = (int32_t)top_k;
    r->sampling.presence_penalty = (float)presence;
    r->sampling.frequency_penalty = (float)frequency;
    r->sampling.repeat_penalty = (float)repeat;
    r->sampling.penalty_last_n = (int32_t)last_n;
    r->sampling.grammar = r->grammar;
    r->n_choices = (int32_t)n;
    if (seed >= 0) r->sampling.seed = (uint64_t)seed; /* else the caller's: random */
    r->max_tokens = (int32_t)max_tokens;
    return 0;
}

/* Fields of OpenAI's and llama-server's APIs this server does not honour:
 * a request that sets one is refused, never answered as if it had. */
static int refuse_unsupported(const g4_json *body, oai_error *e) {
    static const char *const fields[] = {"echo", "best_of", "suffix", "logit_bias_tokens", "functions", "function_call",
                                         "audio", "modalities", "prediction", "web_search_options", "n_probs",
                                         "mirostat", "typical_p", "dry_multiplier", "xtc_probability",
                                         "tfs_z", "dynatemp_range", "parallel_tool_calls"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const g4_json *v = g4_json_get(body, fields[i]);
        /* the neutral values clients send by default are fine */
        if (!v || v->type == G4_JSON_NULL || (v->type == G4_JSON_BOOL && !v->boolean) ||
            (v->type == G4_JSON_NUMBER && v->number == 0 && strcmp(fields[i], "best_of")) ||
            (!strcmp(fields[i], "best_of") && v->type == G4_JSON_NUMBER && v->number == 1) ||
            (!strcmp(fields[i], "parallel_tool_calls") && v->type == G4_JSON_BOOL))
            continue;
        return oai_error_set(e, 400, "'%s' is not supported", fields[i]), -1;
    }
    return 0;
}

int oai_parse_request(const char *body, size_t len, bool chat, const oai_model *m, oai_request *r, oai_error *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    r->chat = chat;
    r->sampling = m->sampling;
    char err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse(body ? body : "", body ? len : 0, "body", err);
    if (!doc) return oai_error_set(e, 400, "%s", err), -1;
    int rc = -1;
    if (doc->type != G4_JSON_OBJECT) {
        oai_error_set(e, 400, "the body must be a JSON object");
        goto done;
    }
    const g4_json *opts = get_typed(doc, "stream_options", G4_JSON_OBJECT, e);
    if (e->status || get_bool(doc, "stream", &r->stream, e) || get_bool(opts, "include_usage", &r->include_usage, e) ||
        get_bool(doc, "ignore_eos", &r->ignore_eos, e) || refuse_unsupported(doc, e) || get_sampling(doc, chat, m, r, e) ||
        get_stop(doc, r, e))
        goto done;
    if (chat ? oai_render_chat(doc, m, r, e) : get_prompt(doc, m, r, e)) goto done;
    if (r->forced && r->grammar) { /* the call has its own syntax, which a grammar for the answer would break */
        oai_error_set(e, 400, "a forced tool call ('tool_choice') cannot be combined with 'response_format', "
                              "'grammar' or 'json_schema'");
        goto done;
    }
    rc = 0;
done:
    g4_json_free(doc);
    return rc;
}

void oai_request_free(oai_request *r) {
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->bias);
    free(r->grammar);
    for (int i = 0; i < r->n_call_fns; i++) free(r->call_fns[i]);
    free(r->call_fns);
    free(r->forced);
    free(r->prompt);
    free(r->marks);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- responses */

static void write_usage(jw *w, const oai_usage *u) {
    jw_printf(w, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":%d}}",
              u->n_prompt, u->n_gen, u->n_prompt + u->n_gen, u->n_cached);
}

/* llama-server's figures: prompt tokens processed (not cached) and generated */
static void write_timings(jw *w, const oai_usage *u) {
    const int32_t fed = u->n_prompt - u->n_cached;
    jw_printf(w, "\"timings\":{\"cache_n\":%d,\"prompt_n\":%d,\"prompt_ms\":%.3f,\"prompt_per_token_ms\":%.3f,"
                 "\"prompt_per_second\":%.3f,\"predicted_n\":%d,\"predicted_ms\":%.3f,\"predicted_per_token_ms\":%.3f,"
                 "\"predicted_per_second\":%.3f}",
              u->n_cached, fed, u->t_prompt_ms, fed ? u->t_prompt_ms / fed : 0.0,
              u->t_prompt_ms > 0 ? 1e3 * fed / u->t_prompt_ms : 0.0, u->n_gen, u->t_gen_ms,
              u->n_gen ? u->t_gen_ms / u->n_gen : 0.0, u->t_gen_ms > 0 ? 1e3 * u->n_gen / u->t_gen_ms : 0.0);
}

/* The fields every object of a response starts with. */
static void write_head(jw *w, const oai_request *r, const oai_meta *meta, bool chunk) {
    jw_cstr(w, "{\"id\":");
    jw_qstr(w, meta->id);
    jw_printf(w, ",\"object\":\"%s\",\"created\":%lld,\"model\":",
              r->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion", meta->created);
    jw_qstr(w, meta->model);
}

static void write_tool_calls(jw *w, const oai_meta *meta, const g4_chat_output *out, bool with_index) {
    jw_cstr(w, "\"tool_calls\":[");
    for (size_t k = 0; k < out->n_calls; k++) {
        if (k) jw_cstr(w, ",");
        jw_cstr(w, "{");
        if (with_index) jw_printf(w, "\"index\":%zu,", k);
        jw_printf(w, "\"id\":\"call_%s_%zu\",\"type\":\"function\",\"function\":{\"name\":", meta->id, k);
        jw_qstr(w, out->calls[k].name);
        jw_cstr(w, ",\"arguments\":");
        jw arguments = {0};
        if (out->calls[k].args) oai_write_value(&arguments, out->calls[k].args);
        else jw_cstr(&arguments, "{}");
        jw_str(w, arguments.s ? arguments.s : "{}", arguments.len);
        jw_free(&arguments);
        jw_cstr(w, "}}");
    }
    jw_cstr(w, "]");
}

void oai_logprobs_push(oai_logprobs *l, const oai_token_logprob *t, size_t n) {
    if (l->oom || !n) return;
    if (l->n + n > l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        while (cap < l->n + n) cap *= 2;
        oai_token_logprob *g = realloc(l->v, cap * sizeof *g);
        if (!g) return (void)(l->oom = true);
        l->v = g, l->cap = cap;
    }
    memcpy(l->v + l->n, t, n * sizeof *t);
    l->n += n;
}

void oai_logprobs_free(oai_logprobs *l) {
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The text of token id as the answer shows it (chat: with control tokens). */
typedef struct piece_buf {
    char *s;
    size_t cap, len;
} piece_buf;

static void piece_of(const oai_request *r, const oai_meta *meta, int32_t id, piece_buf *b) {
    b->len = 0;
    if (!meta->vocab) return;
    if (!b->s) b->cap = g4_vocab_max_piece(meta->vocab) + 1, b->s = malloc(b->cap);
    size_t n = b->s ? g4_token_to_piece(meta->vocab, id, r->chat, b->s, b->cap) : 0;
    b->len = n <= b->cap ? n : 0;
}

/* {"token":..,"logprob":..,"bytes":[..]} of OpenAI's chat logprobs */
static void write_chat_token(jw *w, const oai_request *r, const oai_meta *meta, const gemma4_logprob *t, piece_buf *b) {
    piece_of(r, meta, t->token, b);
    jw_cstr(w, "{\"id\":");
    jw_printf(w, "%d,\"token\":", t->token);
    jw_str(w, b->s ? b->s : "", b->len);
    jw_cstr(w, ",\"logprob\":");
    jw_num(w, t->logprob);
    jw_cstr(w, ",\"bytes\":[");
    for (size_t i = 0; i < b->len; i++) jw_printf(w, i ? ",%u" : "%u", (unsigned char)b->s[i]);
    jw_cstr(w, "]");
}

/* The logprobs of tokens [from, to) of lp: chat's {"content":[...]}, or
 * the completions' parallel arrays (text_offset counted from *offset, the
 * bytes of the answer before token from). */
static void write_logprobs(jw *w, const oai_request *r, const oai_meta *meta, const oai_logprobs *lp, size_t from,
                           size_t to, size_t *offset) {
    piece_buf b = {0};
    if (r->chat) {
        jw_cstr(w, "{\"content\":[");
        for (size_t i = from; i < to; i++) {
            const oai_token_logprob *t = &lp->v[i];
            if (i > from) jw_cstr(w, ",");
            write_chat_token(w, r, meta, &t->tok, &b);
            jw_cstr(w, ",\"top_logprobs\":[");
            for (int32_t k = 0; k < t->n_top; k++) {
                if (k) jw_cstr(w, ",");
                write_chat_token(w, r, meta, &t->top[k], &b);
                jw_cstr(w, "}");
            }
            jw_cstr(w, "]}");
        }
        jw_cstr(w, "],\"refusal\":null}");
    } else {
        jw_cstr(w, "{\"tokens\":[");
        for (size_t i = from; i < to; i++) {
            piece_of(r, meta, lp->v[i].tok.token, &b);
            if (i > from) jw_cstr(w, ",");
            jw_str(w, b.s ? b.s : "", b.len);
        }
        jw_cstr(w, "],\"token_logprobs\":[");
        for (size_t i = from; i < to; i++) {
            if (i > from) jw_cstr(w, ",");
            jw_num(w, lp->v[i].tok.logprob);
        }
        jw_cstr(w, "],\"top_logprobs\":[");
        for (size_t i = from; i < to; i++) {
            const oai_token_logprob *t = &lp->v[i];
            jw_cstr(w, i > from ? ",{" : "{");
            for (int32_t k = 0; k < t->n_top; k++) {
                piece_of(r, meta, t->top[k].token, &b);
                if (k) jw_cstr(w, ",");
                jw_str(w, b.s ? b.s : "", b.len);
                jw_cstr(w, ":");
                jw_num(w, t->top[k].logprob);
            }
            jw_cstr(w, "}");
        }
        jw_cstr(w, "],\"text_offset\":[");
        for (size_t i = from; i < to; i++) {
            piece_of(r, meta, lp->v[i].tok.token, &b);
            jw_printf(w, i > from ? ",%zu" : "%zu", *offset);
            *offset += b.len;
        }
        jw_cstr(w, "]}");
    }
    free(b.s);
}

/* Where a tool call that max_tokens cut off begins in text[0..len), or NULL:
 * the parser drops it, so the answer says so instead of losing it quietly. */
static const char *cut_call(const char *text, size_t len, const char *finish) {
    static const char open[] = "<|tool_call>", close[] = "<tool_call|>";
    if (!finish || strcmp(finish, "length")) return NULL;
    const char *last = NULL;
    for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), open, sizeof open - 1)); p += sizeof open - 1)
        last = p;
    if (!last || memmem(last, len - (size_t)(last - text), close, sizeof close - 1)) return NULL;
    return last;
}

/* The notice of a cut-off call: "partial_tool_call":..,"notice":.. */
static void write_cut_call(jw *w, const char *call, const char *end) {
    jw_cstr(w, "\"partial_tool_call\":");
    jw_str(w, call, (size_t)(end - call));
    jw_cstr(w, ",\"notice\":\"max_tokens ended the answer inside a tool call: the call is incomplete, so it is not in "
               "tool_calls; its text is in partial_tool_call\"");
}

void oai_write_response(jw *w, const oai_request *r, const oai_meta *meta, const oai_choice *c, int n,
                        const oai_usage *u) {
    write_head(w, r, meta, false);
    jw_cstr(w, ",\"choices\":[");
    for (int i = 0; i < n; i++) {
        const char *text = c[i].text, *finish = c[i].finish;
        const size_t len = c[i].len;
        jw_printf(w, "%s{\"index\":%d,", i ? "," : "", i);
        if (!r->chat) {
            jw_cstr(w, "\"text\":");
            jw_str(w, text, len);
        } else {
            g4_chat_output out;
            char err[G4_ERR_LEN];
            bool parsed = g4_chat_parse_output(text, len, r->starts_in_thought, &out, err) == 0;
            const char *cut = parsed ? cut_call(text, len, finish) : NULL;
            jw_cstr(w, "\"message\":{\"role\":\"assistant\",\"content\":");
            if (!parsed) jw_str(w, text, len); /* not Gemma 4 syntax: the text as it came */
            else if ((out.n_calls || cut) && !*out.content) jw_cstr(w, "null");
            else jw_qstr(w, out.content);
            if (parsed && *out.reasoning) jw_cstr(w, ",\"reasoning_content\":"), jw_qstr(w, out.reasoning);
            if (parsed && out.n_calls) jw_cstr(w, ","), write_tool_calls(w, meta, &out, false);
            if (cut) jw_cstr(w, ","), write_cut_call(w, cut, text + len);
            jw_cstr(w, "}");
            if (parsed && out.n_calls && !strcmp(finish, "stop")) finish = "tool_calls";
            g4_chat_output_free(&out);
        }
        jw_cstr(w, ",\"logprobs\":");
        size_t offset = 0;
        if (r->logprobs && c[i].lp) write_logprobs(w, r, meta, c[i].lp, 0, c[i].lp->n, &offset);
        else jw_cstr(w, "null");
        jw_printf(w, ",\"finish_reason\":\"%s\"}", finish);
    }
    jw_cstr(w, "],");
    write_usage(w, u);
    jw_cstr(w, ",");
    write_timings(w, u);
    jw_cstr(w, "}");
}

/* One SSE event: head, the choice written by the caller, tail. */
static void chunk_begin(jw *w, const oai_request *r, const oai_meta *meta, int index) {
    jw_cstr(w, "data: ");
    write_head(w, r, meta, true);
    jw_printf(w, ",\"choices\":[{\"index\":%d,", index);
}

/* The logprobs member of a chunk: the tokens not sent yet, or null. */
static void chunk_logprobs(jw *w, oai_stream *st, const oai_request *r, const oai_meta *meta, const oai_choice *c) {
    jw_cstr(w, ",\"logprobs\":");
    if (!r->logprobs || !c->lp || c->lp->n == st->sent_logprobs) return jw_cstr(w, "null");
    write_logprobs(w, r, meta, c->lp, st->sent_logprobs, c->lp->n, &st->lp_offset);
    st->sent_logprobs = c->lp->n;
}

static void delta(jw *w, oai_stream *st, const oai_request *r, const oai_meta *meta, const oai_choice *c,
                  const char *field, const char *s, size_t n) {
    if (!n) return;
    chunk_begin(w, r, meta, st->index);
    if (r->chat) jw_printf(w, "\"delta\":{\"%s\":", field);
    else jw_cstr(w, "\"text\":");
    jw_str(w, s, n);
    if (r->chat) jw_cstr(w, "}");
    chunk_logprobs(w, st, r, meta, c);
    jw_cstr(w, ",\"finish_reason\":null}]}\n\n");
}

/* Text up to a tail that may be the start of a Gemma 4 marker, which would
 * move text from the answer into a thought or a tool call once complete. */
static size_t stable_len(const char *text, size_t len) {
    static const char *const markers[] = {"<|channel>thought\n", "<channel|>", "<|tool_call>", "<turn|>",
                                          "<|tool_response>", "<eos>"};
    size_t hold = 0;
    for (size_t m = 0; m < sizeof markers / sizeof markers[0]; m++)
        for (size_t k = strlen(markers[m]) - 1; k > hold; k--)
            if (k <= len && !memcmp(text + len - k, markers[m], k)) {
                hold = k;
                break;
            }
    return len - hold;
}

void oai_write_stream(jw *w, oai_stream *st, const oai_request *r, const oai_meta *meta, const oai_choice *c,
                      const oai_usage *u) {
    const char *text = c->text, *finish = c->finish;
    size_t len = c->len;
    if (r->chat && !finish) len = stable_len(text, len);
    g4_chat_output out = {0};
    bool have_out = false;
    if (!r->chat) {
        delta(w, st, r, meta, c, "text", text + st->sent_content, len - st->sent_content);
        st->sent_content = len;
    } else {
        if (!st->started) {
            chunk_begin(w, r, meta, st->index);
            jw_cstr(w, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
            st->started = true;
        }
        char err[G4_ERR_LEN];
        /* The whole text is parsed again each time: the parts only grow, so
         * what is new is what lies past the lengths already sent. Output
         * that breaks the tool-call syntax stops the stream of parts. */
        if (!st->parse_failed) st->parse_failed = g4_chat_parse_output(text, len, r->starts_in_thought, &out, err) != 0;
        have_out = !st->parse_failed;
        if (have_out) {
            size_t nr = strlen(out.reasoning), nc = strlen(out.content);
            if (nr > st->sent_reasoning)
                delta(w, st, r, meta, c, "reasoning_content", out.reasoning + st->sent_reasoning, nr - st->sent_reasoning);
            if (nc > st->sent_content) delta(w, st, r, meta, c, "content", out.content + st->sent_content, nc - st->sent_content);
            if (nr > st->sent_reasoning) st->sent_reasoning = nr;
            if (nc > st->sent_content) st->sent_content = nc;
        }
    }
    if (finish) {
        bool calls = have_out && out.n_calls;
        if (calls) {
            chunk_begin(w, r, meta, st->index);
            jw_cstr(w, "\"delta\":{");
            write_tool_calls(w, meta, &out, true);
            jw_cstr(w, "}");
            chunk_logprobs(w, st, r, meta, c);
            jw_cstr(w, ",\"finish_reason\":null}]}\n\n");
        }
        chunk_begin(w, r, meta, st->index);
        const char *cut = r->chat ? cut_call(text, c->len, finish) : NULL;
        if (!r->chat) jw_cstr(w, "\"text\":\"\"");
        else if (cut) jw_cstr(w, "\"delta\":{"), write_cut_call(w, cut, text + c->len), jw_cstr(w, "}");
        else jw_cstr(w, "\"delta\":{}");
        chunk_logprobs(w, st, r, meta, c); /* those of tokens whose text was held back or cut */
        jw_printf(w, ",\"finish_reason\":\"%s\"}],", calls && !strcmp(finish, "stop") ? "tool_calls" : finish);
        write_timings(w, u); /* on the last chunk, as llama-server does */
        jw_cstr(w, "}\n\n");
    }
    g4_chat_output_free(&out);
}

void oai_write_stream_end(jw *w, const oai_request *r, const oai_meta *meta, const oai_usage *u) {
    if (r->include_usage) {
        jw_cstr(w, "data: ");
        write_head(w, r, meta, true);
        jw_cstr(w, ",\"choices\":[],");
        write_usage(w, u);
        jw_cstr(w, "}\n\n");
    }
    jw_cstr(w, "data: [DONE]\n\n");
}

/* ---------------------------------------------------------------- forced tool calls */

int oai_call_guard_init(oai_call_guard *g, const oai_request *r) {
    memset(g, 0, sizeof *g);
    const char *call = r->forced ? strstr(r->forced, "<|tool_call>") : NULL;
    if (!call) return 0;
    jw_cstr(&g->text, call);
    if (r->n_call_fns && !(g->fns = calloc((size_t)r->n_call_fns, sizeof *g->fns))) return -1;
    for (; g->n_fns < r->n_call_fns; g->n_fns++)
        if (!(g->fns[g->n_fns] = strdup(r->call_fns[g->n_fns]))) return -1;
    return g->text.oom ? -1 : 0;
}

void oai_call_guard_free(oai_call_guard *g) {
    for (int i = 0; i < g->n_fns; i++) free(g->fns[i]);
    free(g->fns);
    jw_free(&g->text);
    memset(g, 0, sizeof *g);
}

/* Whether s[0..n) is one of the lines of lines[0..end) (complete), or the
 * start of one. */
static bool is_line(const char *lines, const char *end, const char *s, size_t n, bool complete) {
    if (!n && !complete) return true;
    for (const char *l = lines; l < end; l = strchr(l, '\n') + 1) {
        size_t len = (size_t)(strchr(l, '\n') - l);
        if ((complete ? len == n : len >= n) && !memcmp(l, s, n)) return true;
    }
    return false;
}

/* Whether the top-level keys written in args[0..len) (what follows the
 * '{' of the call) are, or can still become, parameter names of fn. Values
 * are left to the parser; strings are skipped whole. */
static bool keys_allowed(const char *fn, const char *a, size_t len) {
    const char *keys = strchr(fn, '\n') + 1, *end = keys + strlen(keys);
    int depth = 1;
    bool at_key = true; /* in the top-level object, before a key's ':' */
    size_t start = 0;   /* where that key begins */
    for (size_t i = 0; i < len; i++) {
        if (a[i] == '<') { /* a quoted string (or a marker the parser judges): skipped */
            if (depth == 1 && at_key) return false;
            const size_t q = sizeof G4_QUOTE - 1;
            const char *close = len - i > q ? memmem(a + i + q, len - i - q, G4_QUOTE, q) : NULL;
            if (!close) return true;
            i = (size_t)(close - a) + q - 1;
        } else if (depth == 1 && at_key) {
            if (a[i] == '}' && i == start) depth = 0, at_key = false;
            else if (a[i] == ':' && !is_line(keys, end, a + start, i - start, true)) return false;
            else if (a[i] == ':') at_key = false;
        } else if (a[i] == '{' || a[i] == '[') {
            depth++;
        } else if (a[i] == '}' || a[i] == ']') {
            depth--;
        } else if (a[i] == ',' && depth == 1) {
            at_key = true, start = i + 1;
        }
    }
    return !(depth == 1 && at_key) || is_line(keys, end, a + start, len - start, false);
}

/* Whether the name written after "call:" is, or can still become, the name
 * of an allowed function, and its arguments use that function's keys. */
static bool call_allowed(const oai_call_guard *g, const char *text, size_t len) {
    static const char head[] = "<|tool_call>call:";
    const size_t h = sizeof head - 1;
    if (len <= h) return true;
    const char *name = text + h;
    size_t n = 0;
    while (h + n < len && !memchr(":,{}[]<\" \t\r\n", name[n], 13)) n++; /* where the parser ends a name */
    const bool complete = h + n < len;
    for (int i = 0; i < g->n_fns; i++) {
        const char *fn = g->fns[i], *nl = strchr(fn, '\n');
        if (!is_line(fn, nl + 1, name, n, complete)) continue;
        return !complete || name[n] != '{' || keys_allowed(fn, name + n + 1, len - h - n - 1);
    }
    return false;
}

int oai_call_guard_check(const oai_call_guard *g, const char *piece, size_t n) {
    jw t = {0};
    jw_raw(&t, g->text.s, g->text.len);
    jw_raw(&t, piece, n);
    int rc = OAI_CALL_BAD;
    g4_chat_output out;
    char err[G4_ERR_LEN];
    if (!t.oom && !memchr(piece, 0, n) && call_allowed(g, t.s, t.len)) {
        if (g4_chat_parse_output(t.s, t.len, false, &out, err) == 0) rc = out.n_calls ? OAI_CALL_DONE : OAI_CALL_OPEN;
        g4_chat_output_free(&out);
    }
    jw_free(&t);
    return rc;
}

void oai_call_guard_push(oai_call_guard *g, const char *piece, size_t n) { jw_raw(&g->text, piece, n); }
