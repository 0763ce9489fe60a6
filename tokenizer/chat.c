/* Gemma 4 prompt rendering: the rules of Google's chat template, written
 * out in C (see tokenizer/chat.h for the decisions taken). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_internal.h"
#include "tokenizer/tokenizer.h"

static bool is_model(const char *role) { return !strcmp(role, "model") || !strcmp(role, "assistant"); }
static bool is_system(const char *role) { return !strcmp(role, "system") || !strcmp(role, "developer"); }
static bool is_tool(const char *role) { return !strcmp(role, "tool"); }
static bool is_known(const char *role) { return is_model(role) || is_system(role) || is_tool(role) || !strcmp(role, "user"); }

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Appends s[0..n) without leading and trailing whitespace (Jinja's trim);
 * returns whether anything was left. */
static bool write_trimmed(g4_chat_buf *b, const char *s, size_t n) {
    while (n && is_space(*s)) s++, n--;
    while (n && is_space(s[n - 1])) n--;
    g4_chat_buf_add(b, s, n);
    return n != 0;
}

/* Earlier model output re-rendered: every "<|channel>...<channel|>" span is
 * dropped (an unclosed one to the end), as are stray "<channel|>" markers;
 * the rest is trimmed. */
static bool write_model_content(g4_chat_buf *b, const char *s) {
    static const char open[] = "<|channel>", close[] = "<channel|>";
    g4_chat_buf kept = {0};
    g4_chat_buf_add(&kept, "", 0);
    for (;;) {
        const char *end = strstr(s, close);
        size_t part = end ? (size_t)(end - s) : strlen(s);
        const char *o = strstr(s, open);
        g4_chat_buf_add(&kept, s, o && o < s + part ? (size_t)(o - s) : part);
        if (!end) break;
        s = end + sizeof close - 1;
    }
    bool any = write_trimmed(b, kept.s ? kept.s : "", kept.len);
    b->oom |= kept.oom;
    free(kept.s);
    return any;
}

/* ---- tool declarations ------------------------------------------------ */

typedef struct decl_ctx {
    g4_chat_buf *b;
    char *err;
    size_t tool;
} decl_ctx;

static int decl_error(decl_ctx *c, const char *key, const char *what) {
    snprintf(c->err, G4_ERR_LEN, "tools[%zu]: %s%s%s", c->tool, key ? key : "", key ? ": " : "", what);
    return -1;
}

static void write_upper(g4_chat_buf *b, const char *s) {
    for (; *s; s++) {
        char c = *s >= 'a' && *s <= 'z' ? (char)(*s - 32) : *s;
        g4_chat_buf_add(b, &c, 1);
    }
}

/* [<|"|>a<|"|>,...] from a list of strings. */
static int write_string_list(decl_ctx *c, const char *key, const g4_chat_value *v, bool upper) {
    if (v->type != G4_CHAT_ARRAY) return decl_error(c, key, "must be a list of strings");
    g4_chat_buf_str(c->b, "[");
    for (size_t k = 0; k < v->len; k++) {
        if (v->items[k]->type != G4_CHAT_STRING) return decl_error(c, key, "must be a list of strings");
        if (k) g4_chat_buf_str(c->b, ",");
        g4_chat_buf_mark(c->b, G4_CHAT_QUOTE);
        if (upper)
            write_upper(c->b, v->items[k]->str);
        else
            g4_chat_buf_str(c->b, v->items[k]->str);
        g4_chat_buf_mark(c->b, G4_CHAT_QUOTE);
    }
    g4_chat_buf_str(c->b, "]");
    return 0;
}

/* The type name the template compares and prints: the string upper-cased,
 * or for a list of types what Jinja's upper makes of it ("['STRING',
 * 'NULL']"), or "" when absent. */
static int type_name(decl_ctx *c, const char *key, const g4_chat_value *type, g4_chat_buf *out) {
    g4_chat_buf_add(out, "", 0);
    if (!type) return 0;
    if (type->type == G4_CHAT_STRING) {
        write_upper(out, type->str);
        return 0;
    }
    if (type->type != G4_CHAT_ARRAY) return decl_error(c, key, "type must be a string or a list of strings");
    g4_chat_buf_str(out, "[");
    for (size_t k = 0; k < type->len; k++) {
        if (type->items[k]->type != G4_CHAT_STRING)
            return decl_error(c, key, "type must be a string or a list of strings");
        g4_chat_buf_str(out, k ? ", '" : "'");
        write_upper(out, type->items[k]->str);
        g4_chat_buf_str(out, "'");
    }
    g4_chat_buf_str(out, "]");
    return 0;
}

static void comma_unless_first(g4_chat_buf *b, bool *first) {
    if (!*first) g4_chat_buf_str(b, ",");
    *first = false;
}

static int write_properties(decl_ctx *c, const g4_chat_value *props, bool skip_schema_keys);

/* The "items" schema of an array property: its keys in order, each in the
 * form the template gives it. */
static int write_items(decl_ctx *c, const char *key, const g4_chat_value *items) {
    size_t *order = g4_chat_sorted_keys(items, c->b);
    bool first = true;
    int rc = 0;
    for (size_t k = 0; order && k < items->len && rc == 0; k++) {
        const char *ik = items->keys[order[k]];
        const g4_chat_value *iv = items->items[order[k]];
        if (iv->type == G4_CHAT_NULL) continue;
        comma_unless_first(c->b, &first);
        if (!strcmp(ik, "properties")) {
            g4_chat_buf_str(c->b, "properties:{");
            if (iv->type == G4_CHAT_OBJECT) rc = write_properties(c, iv, false);
            g4_chat_buf_str(c->b, "}");
        } else if (!strcmp(ik, "required")) {
            g4_chat_buf_str(c->b, "required:");
            rc = write_string_list(c, key, iv, false);
        } else if (!strcmp(ik, "type")) {
            g4_chat_buf_str(c->b, "type:");
            if (iv->type == G4_CHAT_STRING) {
                g4_chat_buf_mark(c->b, G4_CHAT_QUOTE);
                write_upper(c->b, iv->str);
                g4_chat_buf_mark(c->b, G4_CHAT_QUOTE);
            } else {
                rc = write_string_list(c, key, iv, true);
            }
        } else {
            g4_chat_buf_str(c->b, ik);
            g4_chat_buf_str(c->b, ":");
            g4_chat_write_value(c->b, iv, true);
        }
    }
    free(order);
    return rc;
}

/* One property schema "KEY:{description,enum|items,nullable,properties,
 * required,type}" in the template's order. A non-object schema reads as
 * one with no fields, as a Jinja lookup on it would. */
static int write_property(decl_ctx *c, const char *key, const g4_chat_value *v) {
    g4_chat_buf *b = c->b;
    g4_chat_buf tn = {0};
    if (type_name(c, key, g4_chat_object_get(v, "type"), &tn)) {
        free(tn.s);
        return -1;
    }
    const char *type = tn.s ? tn.s : "";
    int rc = 0;
    bool first = true;
    g4_chat_buf_str(b, key);
    g4_chat_buf_str(b, ":{");
    const g4_chat_value *desc = g4_chat_object_get(v, "description");
    if (g4_chat_truthy(desc)) {
        if (desc->type != G4_CHAT_STRING) {
            free(tn.s);
            return decl_error(c, key, "description must be a string");
        }
        comma_unless_first(b, &first);
        g4_chat_buf_str(b, "description:");
        g4_chat_buf_mark(b, G4_CHAT_QUOTE);
        g4_chat_buf_add(b, desc->str, desc->len);
        g4_chat_buf_mark(b, G4_CHAT_QUOTE);
    }
    const g4_chat_value *items = g4_chat_object_get(v, "items");
    if (!strcmp(type, "STRING") && g4_chat_truthy(g4_chat_object_get(v, "enum"))) {
        comma_unless_first(b, &first);
        g4_chat_buf_str(b, "enum:");
        g4_chat_write_value(b, g4_chat_object_get(v, "enum"), true);
    } else if (!strcmp(type, "ARRAY") && items && items->type == G4_CHAT_OBJECT && items->len) {
        comma_unless_first(b, &first);
        g4_chat_buf_str(b, "items:{");
        rc = write_items(c, key, items);
        g4_chat_buf_str(b, "}");
    }
    if (rc == 0 && g4_chat_truthy(g4_chat_object_get(v, "nullable"))) {
        comma_unless_first(b, &first);
        g4_chat_buf_str(b, "nullable:true");
    }
    if (rc == 0 && !strcmp(type, "OBJECT")) {
        const g4_chat_value *props = g4_chat_object_get(v, "properties");
        comma_unless_first(b, &first);
        g4_chat_buf_str(b, "properties:{");
        /* without a properties object the template lists the schema's own
         * non-schema keys as properties */
        if (props && props->type == G4_CHAT_OBJECT)
            rc = write_properties(c, props, false);
        else
            rc = write_properties(c, v, true);
        g4_chat_buf_str(b, "}");
        const g4_chat_value *req = g4_chat_object_get(v, "required");
        if (rc == 0 && g4_chat_truthy(req)) {
            comma_unless_first(b, &first);
            g4_chat_buf_str(b, "required:");
            rc = write_string_list(c, key, req, false);
        }
    }
    comma_unless_first(b, &first);
    g4_chat_buf_str(b, "type:");
    g4_chat_buf_mark(b, G4_CHAT_QUOTE);
    g4_chat_buf_str(b, type);
    g4_chat_buf_mark(b, G4_CHAT_QUOTE);
    g4_chat_buf_str(b, "}");
    free(tn.s);
    return rc;
}

static bool is_schema_key(const char *k) {
    return !strcmp(k, "description") || !strcmp(k, "type") || !strcmp(k, "properties") ||
           !strcmp(k, "required") || !strcmp(k, "nullable");
}

static int write_properties(decl_ctx *c, const g4_chat_value *props, bool skip_schema_keys) {
    size_t *order = g4_chat_sorted_keys(props, c->b);
    bool first = true;
    int rc = 0;
    for (size_t k = 0; order && k < props->len && rc == 0; k++) {
        const char *key = props->keys[order[k]];
        if (skip_schema_keys && is_schema_key(key)) continue;
        comma_unless_first(c->b, &first);
        rc = write_property(c, key, props->items[order[k]]);
    }
    free(order);
    return rc;
}

/* <|tool>declaration:NAME{description:<|"|>...<|"|>,parameters:{...}}<tool|> */
static int write_declaration(decl_ctx *c, const g4_chat_tool *t) {
    g4_chat_buf *b = c->b;
    if (!t->name || !*t->name) return decl_error(c, NULL, "tool has no name");
    g4_chat_buf_mark(b, "<|tool>");
    g4_chat_buf_str(b, "declaration:");
    g4_chat_buf_str(b, t->name);
    g4_chat_buf_str(b, "{description:");
    g4_chat_buf_mark(b, G4_CHAT_QUOTE);
    g4_chat_buf_str(b, t->description ? t->description : "");
    g4_chat_buf_mark(b, G4_CHAT_QUOTE);
    const g4_chat_value *params = t->parameters;
    if (params && params->type != G4_CHAT_OBJECT && params->type != G4_CHAT_NULL)
        return decl_error(c, "parameters", "must be an object");
    if (g4_chat_truthy(params)) {
        bool first = true;
        g4_chat_buf_str(b, ",parameters:{");
        const g4_chat_value *props = g4_chat_object_get(params, "properties");
        if (g4_chat_truthy(props)) {
            if (props->type != G4_CHAT_OBJECT) return decl_error(c, "properties", "must be an object");
            comma_unless_first(b, &first);
            g4_chat_buf_str(b, "properties:{");
            if (write_properties(c, props, false)) return -1;
            g4_chat_buf_str(b, "}");
        }
        const g4_chat_value *req = g4_chat_object_get(params, "required");
        if (g4_chat_truthy(req)) {
            comma_unless_first(b, &first);
            g4_chat_buf_str(b, "required:");
            if (write_string_list(c, "required", req, false)) return -1;
        }
        const g4_chat_value *type = g4_chat_object_get(params, "type");
        if (g4_chat_truthy(type)) {
            if (type->type != G4_CHAT_STRING) return decl_error(c, "type", "must be a string");
            comma_unless_first(b, &first);
            g4_chat_buf_str(b, "type:");
            g4_chat_buf_mark(b, G4_CHAT_QUOTE);
            write_upper(b, type->str);
            g4_chat_buf_mark(b, G4_CHAT_QUOTE);
        }
        g4_chat_buf_str(b, "}");
    }
    g4_chat_buf_str(b, "}");
    g4_chat_buf_mark(b, "<tool|>");
    return 0;
}

/* ---- turns ------------------------------------------------------------ */

/* <|tool_call>call:NAME{k:v,...}<tool_call|> */
static int write_call(g4_chat_buf *b, const g4_chat_tool_call *call, size_t msg, char *err) {
    if (!call->name || !*call->name) {
        snprintf(err, G4_ERR_LEN, "messages[%zu]: tool call has no name", msg);
        return -1;
    }
    if (call->args && call->args->type != G4_CHAT_OBJECT) {
        snprintf(err, G4_ERR_LEN, "messages[%zu]: arguments of tool call %s are not an object", msg, call->name);
        return -1;
    }
    g4_chat_buf_mark(b, "<|tool_call>");
    g4_chat_buf_str(b, "call:");
    g4_chat_buf_str(b, call->name);
    g4_chat_buf_str(b, "{");
    if (call->args) g4_chat_write_members(b, call->args, false);
    g4_chat_buf_str(b, "}");
    g4_chat_buf_mark(b, "<tool_call|>");
    return 0;
}

/* <|tool_response>response:NAME{k:v,...}<tool_response|>; the name is that
 * of the call the message answers by id, else its own name. */
static void write_response(g4_chat_buf *b, const g4_chat_msg *model, const g4_chat_msg *tool) {
    const char *name = tool->name ? tool->name : "unknown";
    for (size_t k = 0; tool->tool_call_id && k < model->n_tool_calls; k++) {
        const g4_chat_tool_call *call = &model->tool_calls[k];
        if (call->id && !strcmp(call->id, tool->tool_call_id)) name = call->name;
    }
    g4_chat_buf_mark(b, "<|tool_response>");
    g4_chat_buf_str(b, "response:");
    g4_chat_buf_str(b, name);
    g4_chat_buf_str(b, "{");
    if (tool->response && tool->response->type == G4_CHAT_OBJECT) {
        g4_chat_write_members(b, tool->response, false);
    } else {
        g4_chat_buf_str(b, "value:");
        if (tool->response) {
            g4_chat_write_value(b, tool->response, false);
        } else {
            g4_chat_buf_mark(b, G4_CHAT_QUOTE);
            g4_chat_buf_str(b, tool->content ? tool->content : "");
            g4_chat_buf_mark(b, G4_CHAT_QUOTE);
        }
    }
    g4_chat_buf_str(b, "}");
    g4_chat_buf_mark(b, "<tool_response|>");
}

static int check_messages(const g4_chat_msg *msgs, size_t n, char *err) {
    for (size_t i = 0; i < n; i++) {
        const char *role = msgs[i].role;
        if (!role || !is_known(role)) {
            snprintf(err, G4_ERR_LEN, "messages[%zu]: unknown role \"%.64s\"", i, role ? role : "(null)");
            return -1;
        }
        if (i > 0 && is_system(role)) {
            snprintf(err, G4_ERR_LEN, "messages[%zu]: a %s message must be the first message", i, role);
            return -1;
        }
        if (msgs[i].n_tool_calls && (!is_model(role) || !msgs[i].tool_calls)) {
            snprintf(err, G4_ERR_LEN, "messages[%zu]: only a model message can carry tool calls", i);
            return -1;
        }
        if (is_tool(role)) {
            size_t j = i;
            while (j > 0 && is_tool(msgs[j - 1].role)) j--;
            if (j == 0 || !is_model(msgs[j - 1].role) || !msgs[j - 1].n_tool_calls) {
                snprintf(err, G4_ERR_LEN, "messages[%zu]: tool message does not follow a model tool call", i);
                return -1;
            }
        }
    }
    return 0;
}

/* What the last rendered message ended with; decides the generation prompt. */
typedef enum last_part { LAST_TEXT, LAST_TOOL_CALL, LAST_TOOL_RESPONSE } last_part;

char *g4_chat_format_marked(const g4_chat_msg *msgs, size_t n, const g4_chat_opts *opts, g4_chat_span **marks,
                            size_t *n_marks, char *err) {
    static const g4_chat_opts defaults = {0};
    if (marks) *marks = NULL, *n_marks = 0;
    if (!opts) opts = &defaults;
    if (n && !msgs) {
        snprintf(err, G4_ERR_LEN, "messages: NULL with %zu messages", n);
        return NULL;
    }
    if (check_messages(msgs, n, err)) return NULL;

    g4_chat_buf b = {0};
    g4_chat_buf_add(&b, "", 0);
    size_t first = 0;
    bool has_system = n && is_system(msgs[0].role);
    if (opts->enable_thinking || opts->n_tools || has_system) {
        g4_chat_buf_mark(&b, "<|turn>");
        g4_chat_buf_str(&b, "system\n");
        if (opts->enable_thinking) {
            g4_chat_buf_mark(&b, "<|think|>");
            g4_chat_buf_str(&b, "\n");
        }
        if (has_system && msgs[0].content) write_trimmed(&b, msgs[0].content, strlen(msgs[0].content));
        first = has_system;
        for (size_t t = 0; t < opts->n_tools; t++) {
            decl_ctx c = {&b, err, t};
            if (write_declaration(&c, &opts->tools[t])) goto fail;
        }
        g4_chat_buf_mark(&b, "<turn|>");
        g4_chat_buf_str(&b, "\n");
    }

    size_t last_user = SIZE_MAX; /* thoughts are replayed only after it */
    for (size_t i = first; i < n; i++)
        if (!strcmp(msgs[i].role, "user")) last_user = i;

    bool turn_open = false; /* a model turn left open for what follows */
    last_part last = LAST_TEXT;
    for (size_t i = first; i < n; i++) {
        const g4_chat_msg *m = &msgs[i];
        if (is_tool(m->role)) continue; /* written with its model message */
        bool model = is_model(m->role);
        if (!(model && turn_open)) {
            g4_chat_buf_mark(&b, "<|turn>");
            g4_chat_buf_str(&b, model ? "model" : m->role);
            g4_chat_buf_str(&b, "\n");
        }
        turn_open = false;
        last = LAST_TEXT;
        if (model && m->reasoning && *m->reasoning && (last_user == SIZE_MAX || i > last_user)) {
            g4_chat_buf_mark(&b, "<|channel>");
            g4_chat_buf_str(&b, "thought\n");
            g4_chat_buf_str(&b, m->reasoning);
            g4_chat_buf_str(&b, "\n");
            g4_chat_buf_mark(&b, "<channel|>");
        }
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            if (write_call(&b, &m->tool_calls[k], i, err)) goto fail;
            last = LAST_TOOL_CALL;
        }
        size_t next = i + 1;
        for (; next < n && is_tool(msgs[next].role) && m->n_tool_calls; next++) {
            write_response(&b, m, &msgs[next]);
            last = LAST_TOOL_RESPONSE;
        }
        while (next < n && is_tool(msgs[next].role)) next++;
        bool answered = last == LAST_TOOL_RESPONSE;
        const char *content = m->content ? m->content : "";
        bool has_content = model ? write_model_content(&b, content) : write_trimmed(&b, content, strlen(content));

        if (last == LAST_TOOL_CALL) {
            /* history holds a call without its answer: end it the way the
             * model did, with the end-of-generation token */
            g4_chat_buf_mark(&b, "<|tool_response>");
            turn_open = true;
        } else if (model && next < n && is_model(msgs[next].role) && (!m->n_tool_calls || answered)) {
            turn_open = true; /* the next model message continues this turn */
        } else if (answered && !has_content && next == n) {
            turn_open = true; /* the model answers the tool results next */
        } else {
            g4_chat_buf_mark(&b, "<turn|>");
            g4_chat_buf_str(&b, "\n");
        }
    }

    if (opts->add_generation_prompt) {
        if (!turn_open) {
            g4_chat_buf_mark(&b, "<|turn>");
            g4_chat_buf_str(&b, "model\n");
            if (!opts->enable_thinking && opts->empty_thought_channel) {
                g4_chat_buf_mark(&b, "<|channel>");
                g4_chat_buf_str(&b, "thought\n");
                g4_chat_buf_mark(&b, "<channel|>");
            }
        } else if (last == LAST_TOOL_RESPONSE && opts->enable_thinking) {
            g4_chat_buf_mark(&b, "<|channel>");
            g4_chat_buf_str(&b, "thought\n");
        }
    }
    if (b.oom) {
        snprintf(err, G4_ERR_LEN, "chat: out of memory formatting %zu messages", n);
        goto fail;
    }
    if (marks) *marks = b.marks, *n_marks = b.n_marks;
    else free(b.marks);
    return b.s;
fail:
    free(b.s);
    free(b.marks);
    return NULL;
}

char *g4_chat_format(const g4_chat_msg *msgs, size_t n, const g4_chat_opts *opts, char *err) {
    return g4_chat_format_marked(msgs, n, opts, NULL, NULL, err);
}

/* Appends ids[0..n) to *all (count *n_all); 0, or -1 with err set. */
static int append_ids(int32_t **all, int64_t *n_all, const int32_t *ids, int64_t n, char *err) {
    if (!n) return 0;
    int32_t *g = realloc(*all, (size_t)(*n_all + n) * sizeof *g);
    if (!g) return snprintf(err, G4_ERR_LEN, "chat: out of memory for %lld tokens", (long long)(*n_all + n)), -1;
    memcpy(g + *n_all, ids, (size_t)n * sizeof *ids);
    *all = g;
    *n_all += n;
    return 0;
}

/* Appends the ids of text[0..n) with control-token text kept as text. */
static int append_text(const g4_vocab *v, const char *text, size_t n, int32_t **all, int64_t *n_all, char *err) {
    int32_t *part;
    int64_t n_part = g4_tokenize(v, text, n, false, false, &part, err);
    int rc = n_part < 0 ? -1 : append_ids(all, n_all, part, n_part, err);
    free(part);
    return rc;
}

int64_t g4_chat_tokenize(const g4_vocab *v, const char *prompt, size_t len, const g4_chat_span *marks, size_t n_marks,
                         bool add_special, int32_t **ids, char *err) {
    *ids = NULL;
    /* what add_special puts around a text: BOS in front, and EOS behind for
     * the vocabularies that ask for it */
    int32_t *around;
    int64_t n_around = g4_tokenize(v, "", 0, add_special, false, &around, err);
    if (n_around < 0) return -1;
    const int64_t n_front = n_around && around[0] == g4_vocab_bos(v);
    int32_t *all = NULL;
    int64_t n_all = 0;
    int rc = append_ids(&all, &n_all, around, n_front, err);
    size_t at = 0, after = 0; /* start of the text not tokenized yet; end of the last mark */
    for (size_t k = 0; rc == 0 && k <= n_marks; k++) {
        /* The text runs up to the next marker that is a control token. The
         * other markers stay in it for g4_tokenize, which cuts out
         * user-defined tokens itself and keeps normal ones as text: the cuts
         * fall where parse_special would put them. */
        int32_t id = -1;
        if (k < n_marks) {
            if (marks[k].at < after || marks[k].len > len || marks[k].at > len - marks[k].len) {
                snprintf(err, G4_ERR_LEN, "chat: marker %zu is out of order or beyond the %zu-byte prompt", k, len);
                rc = -1;
                break;
            }
            after = marks[k].at + marks[k].len;
            id = g4_vocab_find(v, prompt + marks[k].at, marks[k].len);
            if (!g4_vocab_is_control(v, id)) continue;
        }
        const size_t end = k < n_marks ? marks[k].at : len;
        if (end > at) rc = append_text(v, prompt + at, end - at, &all, &n_all, err);
        if (rc == 0 && k < n_marks) {
            rc = append_ids(&all, &n_all, &id, 1, err);
            at = end + marks[k].len;
        }
    }
    if (rc == 0) rc = append_ids(&all, &n_all, around + n_front, n_around - n_front, err);
    free(around);
    if (rc) {
        free(all);
        return -1;
    }
    *ids = all;
    return n_all;
}
