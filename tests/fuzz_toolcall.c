/* libFuzzer target for the output parser (tokenizer/chat_parse.c): the
 * first byte's bit 0 says whether the prompt left a thought channel open,
 * the rest is generated text. It parses into trimmed reasoning and content
 * and calls with a name and object arguments, or is refused with one line
 * and an empty result; every prefix of it (as a stream sees it) parses the
 * same way, and is refused only if the whole is (a stream stops at the
 * first refusal); and the calls parsed go back into a prompt, as chat.h
 * promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat.h"

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static bool trimmed(const char *s) {
    const size_t n = strlen(s);
    return !n || (!is_space(s[0]) && !is_space(s[n - 1]));
}

/* Reads every byte of the tree (ASan sees each) and checks its shape. */
static void walk(const g4_chat_value *v) {
    if (v->type == G4_CHAT_STRING) {
        const volatile char *s = v->str;
        for (size_t i = 0; i <= v->len; i++) (void)s[i];
        if (v->str[v->len]) __builtin_trap();
    }
    if (v->type != G4_CHAT_ARRAY && v->type != G4_CHAT_OBJECT) return;
    for (size_t i = 0; i < v->len; i++) {
        if (v->type == G4_CHAT_OBJECT && g4_chat_object_get(v, v->keys[i]) != v->items[i]) __builtin_trap();
        walk(v->items[i]);
    }
}

/* Whether text[0..len) parses. */
static bool parse(const char *text, size_t len, bool in_thought, bool whole) {
    g4_chat_output out;
    char err[G4_ERR_LEN] = "";
    if (g4_chat_parse_output(text, len, in_thought, &out, err)) {
        if (!memchr(err, 0, sizeof err) || !*err || strchr(err, '\n') || out.content || out.reasoning || out.calls ||
            out.n_calls)
            __builtin_trap();
        return false;
    }
    if (!out.content || !out.reasoning || !trimmed(out.content) || !trimmed(out.reasoning)) __builtin_trap();
    for (size_t k = 0; k < out.n_calls; k++) {
        const g4_chat_tool_call *c = &out.calls[k];
        if (!c->name || !*c->name || strpbrk(c->name, ":,{}[]<\" \t\r\n") || c->id ||
            (c->args && c->args->type != G4_CHAT_OBJECT))
            __builtin_trap();
        if (c->args) walk(c->args);
    }
    if (whole && out.n_calls) { /* parsed calls can be put back into history */
        g4_chat_msg m = {.role = "model", .tool_calls = out.calls, .n_tool_calls = out.n_calls};
        char *prompt = g4_chat_format(&m, 1, NULL, err);
        if (!prompt) __builtin_trap();
        free(prompt);
    }
    g4_chat_output_free(&out);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > 4096) return 0; /* every prefix is parsed: quadratic */
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    const bool in_thought = data[0] & 1;
    const bool ok = parse(text, len, in_thought, true);
    for (size_t n = 0; n < len; n++)
        if (!parse(text, n, in_thought, false) && ok) __builtin_trap();
    return 0;
}
