/* libFuzzer target for the Jinja interpreter: the input is a template, then
 * optionally a NUL byte and a JSON object of variables (the seeds put a
 * conversation there). Any template must parse or be refused with one
 * line, and render or fail with one line, within small limits; the data
 * spans of an output must be in order and inside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/json.h"
#include "tokenizer/chat.h"
#include "tokenizer/jinja.h"

static void check_err(const char *err) {
    if (!memchr(err, 0, G4_ERR_LEN) || strchr(err, '\n') || !err[0]) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[G4_ERR_LEN] = "";
    const char *text = (const char *)data;
    const char *nul = memchr(text, 0, size);
    size_t src_len = nul ? (size_t)(nul - text) : size;
    g4_jinja *t = g4_jinja_parse(text, src_len, err);
    if (!t) {
        check_err(err);
        return 0;
    }
    g4_chat_value *vars = NULL, *trusted = g4_chat_object();
    if (nul) {
        g4_json *j = g4_json_parse(nul + 1, size - src_len - 1, "vars", err);
        if (j && j->type == G4_JSON_OBJECT) vars = g4_chat_value_from_json(j);
        g4_json_free(j);
    }
    g4_chat_object_set(trusted, "bos_token", g4_chat_string("<bos>", 5));
    g4_chat_object_set(trusted, "add_generation_prompt", g4_chat_bool(true));
    const g4_jinja_limits limits = {200000, 1u << 20, 64u << 20};
    size_t len = 0, n_spans = 0;
    g4_chat_span *spans = NULL;
    err[0] = 0;
    char *out = g4_jinja_render(t, vars, trusted, &limits, &len, &spans, &n_spans, err);
    if (!out) {
        check_err(err);
    } else {
        const volatile char *o = out;
        for (size_t k = 0; k <= len; k++) (void)o[k];
        if (out[len] || len > limits.max_output) __builtin_trap();
        for (size_t k = 0; k < n_spans; k++)
            if (!spans[k].len || spans[k].at + spans[k].len > len ||
                (k && spans[k].at <= spans[k - 1].at + spans[k - 1].len))
                __builtin_trap();
    }
    free(out);
    free(spans);
    g4_chat_value_free(vars);
    g4_chat_value_free(trusted);
    g4_jinja_free(t);
    return 0;
}
