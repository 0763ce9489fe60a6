/* libFuzzer target for the OpenAI request parser and the model-free half
 * of answering: input = one flag byte (bit 0: chat, bit 1: a model with an
 * empty thought channel), the request body, then after a NUL byte the
 * "model output" as pieces separated by 0x1f bytes.
 *  - A body is refused with a 4xx (or 500) and a message, or accepted well
 *    formed: a chat prompt whose marks lie in order on the template's
 *    markers, ending with the forced call if there is one; a completion
 *    with a prompt or token ids in range.
 *  - A forced call is driven through the call guard with the pieces as the
 *    model's tokens: what the guard lets through always parses, and a
 *    finished call names one of the functions with only its keys.
 *  - The pieces as generated text: the whole response and every stream
 *    event are valid JSON, and the content and reasoning streamed add up
 *    to those of the whole response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/serve/openai.h"

static const char *const markers[] = {"<|turn>", "<turn|>", "<|think|>", "<|channel>", "<channel|>", "<|tool>",
                                      "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                                      "<tool_response|>", "<|\"|>"};

static void check_request(const oai_request *r, const oai_model *m) {
    /* what the sampling fields became is within the ranges they promise */
    if (r->n_choices < 1 || r->n_choices > OAI_MAX_N || r->top_logprobs < 0 || r->top_logprobs > OAI_MAX_TOP_LOGPROBS ||
        r->sampling.n_logit_bias < 0 || r->sampling.n_logit_bias > OAI_MAX_LOGIT_BIAS ||
        (r->sampling.grammar && r->sampling.grammar != r->grammar))
        __builtin_trap();
    for (int32_t i = 0; i < r->sampling.n_logit_bias; i++)
        if (r->sampling.logit_bias[i].token < 0 || r->sampling.logit_bias[i].token >= m->n_vocab ||
            !(r->sampling.logit_bias[i].bias <= 100))
            __builtin_trap();
    if (!r->chat) {
        if (!r->prompt == !r->ids || (r->ids && r->n_ids <= 0)) __builtin_trap();
        for (int32_t i = 0; i < r->n_ids; i++)
            if (r->ids[i] < 0 || r->ids[i] >= m->n_vocab) __builtin_trap();
        return;
    }
    if (!r->prompt) __builtin_trap();
    const size_t len = strlen(r->prompt);
    for (size_t k = 0, after = 0; k < r->n_marks; k++) {
        const g4_chat_span *s = &r->marks[k];
        size_t i = 0;
        while (i < sizeof markers / sizeof markers[0] &&
               !(s->len == strlen(markers[i]) && s->at + s->len <= len && !memcmp(r->prompt + s->at, markers[i], s->len)))
            i++;
        if (s->at < after || i == sizeof markers / sizeof markers[0]) __builtin_trap();
        after = s->at + s->len;
    }
    if (r->forced && (strlen(r->forced) > len || strcmp(r->prompt + len - strlen(r->forced), r->forced)))
        __builtin_trap();
}

/* The object's keys are parameters of the function (its "name\nkey\n..." line list). */
static bool keys_listed(const char *fn, const g4_chat_value *args) {
    for (size_t k = 0; args && k < args->len; k++) {
        const size_t n = strlen(args->keys[k]);
        bool found = false;
        for (const char *l = strchr(fn, '\n') + 1; *l && !found; l = strchr(l, '\n') + 1)
            found = (size_t)(strchr(l, '\n') - l) == n && !memcmp(l, args->keys[k], n);
        if (!found) return false;
    }
    return true;
}

static void drive_guard(const oai_request *r, const char *out, size_t len) {
    oai_call_guard g;
    if (oai_call_guard_init(&g, r)) __builtin_trap();
    int st = OAI_CALL_OPEN;
    for (size_t at = 0; g.text.len && at <= len && st != OAI_CALL_DONE;) {
        const char *sep = memchr(out + at, 0x1f, len - at);
        const size_t n = (sep ? (size_t)(sep - out) : len) - at;
        st = oai_call_guard_check(&g, out + at, n);
        at += n + 1;
        if (st == OAI_CALL_BAD) continue;
        oai_call_guard_push(&g, out + at - n - 1, n);
        g4_chat_output o;
        char err[G4_ERR_LEN];
        if (g4_chat_parse_output(g.text.s, g.text.len, false, &o, err)) __builtin_trap();
        if (o.n_calls != (st == OAI_CALL_DONE)) __builtin_trap();
        bool known = st != OAI_CALL_DONE;
        for (int i = 0; !known && i < g.n_fns; i++) {
            const size_t nl = (size_t)(strchr(g.fns[i], '\n') - g.fns[i]);
            known = strlen(o.calls[0].name) == nl && !memcmp(g.fns[i], o.calls[0].name, nl) &&
                    keys_listed(g.fns[i], o.calls[0].args);
        }
        if (!known) __builtin_trap();
        g4_chat_output_free(&o);
    }
    oai_call_guard_free(&g);
}

static g4_json *parse_json(const char *s, size_t n) {
    char err[G4_ERR_LEN];
    g4_json *j = g4_json_parse(s, n, "fuzz", err);
    if (!j) __builtin_trap();
    return j;
}

/* Appends the string member `field` of the first choice (of its member
 * `holder`, unless NULL). */
static void take(jw *into, const g4_json *doc, const char *holder, const char *field) {
    const g4_json *choices = g4_json_get_type(doc, "choices", G4_JSON_ARRAY);
    const g4_json *c = choices && choices->len ? &choices->items[0] : NULL;
    const g4_json *s = g4_json_get_type(holder ? g4_json_get(c, holder) : c, field, G4_JSON_STRING);
    if (s) jw_raw(into, s->str, s->len);
}

static bool same(const jw *a, const jw *b) { return a->len == b->len && !memcmp(a->s, b->s, a->len); }

static void respond(const oai_request *r, const char *out, size_t len) {
    /* the generated text: the output without the piece separators */
    jw text = {0};
    jw_cstr(&text, "");
    for (size_t i = 0; i < len; i++)
        if (out[i] != 0x1f) jw_raw(&text, out + i, 1);
    const oai_meta meta = {.id = "f", .created = 1, .model = "m"};
    const oai_usage u = {.n_prompt = 1, .n_gen = 1};
    const char *content = r->chat ? "content" : "text";
    jw whole = {0}, sse = {0}, want[2] = {{0}}, got[2] = {{0}};
    for (int k = 0; k < 2; k++) jw_cstr(&want[k], ""), jw_cstr(&got[k], "");
    const oai_choice whole_c = {.text = text.s, .len = text.len, .finish = "stop"};
    oai_write_response(&whole, r, &meta, &whole_c, 1, &u);
    g4_json *doc = parse_json(whole.s, whole.len);
    take(&want[0], doc, r->chat ? "message" : NULL, content);
    take(&want[1], doc, "message", "reasoning_content");
    g4_json_free(doc);

    /* streamed as the pieces arrive; the server's detokenizer never splits
     * a UTF-8 sequence, so only such splits may make the two differ */
    oai_stream st = {0};
    bool split_char = false;
    for (size_t i = 0, kept = 0; i <= len; i++) {
        if (i < len && out[i] != 0x1f) {
            kept++;
            continue;
        }
        split_char |= kept < text.len && ((unsigned char)text.s[kept] & 0xc0) == 0x80;
        sse.len = 0;
        const oai_choice c = {.text = text.s, .len = kept, .finish = i == len ? "stop" : NULL};
        oai_write_stream(&sse, &st, r, &meta, &c, &u);
        if (i == len) oai_write_stream_end(&sse, r, &meta, &u);
        /* events are "data: ...\n\n" (JSON escapes every newline) */
        for (const char *e = sse.s, *end; e && e < sse.s + sse.len; e = end + 2) {
            if (strncmp(e, "data: ", 6) || !(end = strstr(e, "\n\n"))) __builtin_trap();
            if (!strncmp(e + 6, "[DONE]\n", 7)) continue;
            g4_json *ev = parse_json(e + 6, (size_t)(end - e - 6));
            take(&got[0], ev, r->chat ? "delta" : NULL, content);
            take(&got[1], ev, "delta", "reasoning_content");
            g4_json_free(ev);
        }
    }
    if (!st.parse_failed && !split_char && (!same(&got[0], &want[0]) || !same(&got[1], &want[1]))) __builtin_trap();
    jw_free(&text), jw_free(&whole), jw_free(&sse);
    for (int k = 0; k < 2; k++) jw_free(&want[k]), jw_free(&got[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > 16384) return 0;
    const oai_model m = {.sampling = {.temperature = 1.0f, .top_k = 64, .top_p = 0.95f},
                         .empty_thought_channel = data[0] & 2, .n_vocab = 512};
    const char *body = (const char *)data + 1, *nul = memchr(body, 0, size - 1);
    const size_t body_len = nul ? (size_t)(nul - body) : size - 1;
    const char *out = nul ? nul + 1 : "";
    const size_t out_len = nul ? size - 1 - body_len - 1 : 0;
    oai_request r;
    oai_error e;
    if (oai_parse_request(body, body_len, data[0] & 1, &m, &r, &e)) {
        if (e.status < 400 || e.status > 500 || !e.type || !memchr(e.message, 0, sizeof e.message) || !*e.message)
            __builtin_trap();
    } else {
        check_request(&r, &m);
        if (r.forced) drive_guard(&r, out, out_len);
        respond(&r, out, out_len);
    }
    oai_request_free(&r);
    return 0;
}
