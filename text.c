/* The text half of the public API (gemma4.h): tokenizing, detokenizing,
 * special tokens and the chat template, on the model's vocabulary. The
 * work is done by tokenizer/; this file turns its malloc'd arrays into the
 * caller's buffers and its chat messages into the simple public ones. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "tokenizer/chat.h"

/* ids[0..n) (malloc'd, freed here) into the caller's buffer: the first cap
 * of them, and the count, which must fit the public int32_t. */
static int32_t hand_over(const gemma4_model *m, int64_t n, int32_t *got, int32_t *ids, int32_t cap, char *err) {
    if (n > INT32_MAX) {
        free(got);
        return g4_error(err, NULL, "%s: %lld tokens are more than one call returns", m->path, (long long)n);
    }
    if (n > 0 && cap > 0) memcpy(ids, got, (size_t)(n < cap ? n : cap) * sizeof *ids);
    free(got);
    return (int32_t)n;
}

int32_t gemma4_tokenize(const gemma4_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                        int32_t *ids, int32_t cap, char *err) {
    int32_t *got = NULL;
    const int64_t n = g4_tokenize(m->vocab, text, len, add_special, parse_special, &got, err);
    return n < 0 ? -1 : hand_over(m, n, got, ids, cap, err);
}

size_t gemma4_token_to_piece(const gemma4_model *m, int32_t id, bool render_special, char *buf, size_t cap) {
    return g4_token_to_piece(m->vocab, id, render_special, buf, cap);
}

size_t gemma4_detokenize(const gemma4_model *m, const int32_t *ids, int32_t n, bool render_special, char *buf,
                         size_t cap) {
    size_t len = 0;
    for (int32_t i = 0; i < n; i++) len += g4_token_to_piece(m->vocab, ids[i], render_special, NULL, 0);
    if (len >= cap) {
        if (cap) buf[0] = 0; /* no partial text: a cut could split a character */
        return len;
    }
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) at += g4_token_to_piece(m->vocab, ids[i], render_special, buf + at, cap - at);
    buf[at] = 0;
    return len;
}

int32_t gemma4_token_bos(const gemma4_model *m) { return g4_vocab_bos(m->vocab); }
int32_t gemma4_token_eos(const gemma4_model *m) { return g4_vocab_eos(m->vocab); }
bool gemma4_token_is_eog(const gemma4_model *m, int32_t id) { return g4_vocab_is_eog(m->vocab, id); }

/* The public messages as the chat formatter's, with the model's own
 * template variant (the empty thought channel of the large models). */
static g4_chat_msg *chat_msgs(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                              const gemma4_chat_params *p, g4_chat_opts *opts, char *err) {
    *opts = (g4_chat_opts){.add_generation_prompt = p && p->add_generation_prompt,
                           .enable_thinking = p && p->enable_thinking,
                           .empty_thought_channel = gemma4_empty_thought_channel(m)};
    g4_chat_msg *out = calloc(n ? n : 1, sizeof *out);
    if (!out) return g4_error(err, NULL, "%s: out of memory", m->path), NULL;
    for (size_t i = 0; i < n; i++) out[i] = (g4_chat_msg){.role = msgs[i].role, .content = msgs[i].content};
    return out;
}

/* The Jinja template to render with: p->template_source, else the model's
 * tokenizer.chat_template. NULL with *failed false: use the built-in
 * renderer (asked for, or no template); NULL with *failed: err is set.
 * Parsed per call: it takes well under a millisecond. */
static g4_chat_template *chat_template(const gemma4_model *m, const gemma4_chat_params *p, bool *failed, char *err) {
    g4_chat_template *t = NULL;
    *failed = false;
    if (p && p->builtin_template) return NULL;
    if (!p || !p->template_source) {
        *failed = g4_chat_template_from_gguf(m->gguf, &t, err) != 0;
        return t;
    }
    t = g4_chat_template_new(p->template_source, strlen(p->template_source), err);
    *failed = !t;
    return t;
}

/* The prompt and, when marks is not NULL, where its control tokens may be. */
static char *chat_prompt(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                         const gemma4_chat_params *p, g4_chat_span **marks, size_t *n_marks, char *err) {
    g4_chat_opts opts;
    bool failed;
    g4_chat_msg *cm = chat_msgs(m, msgs, n, p, &opts, err);
    g4_chat_template *t = cm ? chat_template(m, p, &failed, err) : NULL;
    char *text = NULL;
    if (!cm || failed) {
        /* err is set */
    } else if (!t) {
        text = marks ? g4_chat_format_marked(cm, n, &opts, marks, n_marks, err) : g4_chat_format(cm, n, &opts, err);
    } else {
        g4_chat_span *data = NULL;
        size_t n_data = 0;
        text = g4_chat_template_render(t, cm, n, &opts, p ? p->template_kwargs_json : NULL, marks ? &data : NULL,
                                       &n_data, err);
        if (text && marks && g4_chat_control_marks(m->vocab, text, strlen(text), data, n_data, marks, n_marks, err)) {
            free(text);
            text = NULL;
        }
        free(data);
    }
    g4_chat_template_free(t);
    free(cm);
    return text;
}

char *gemma4_chat_format(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                         const gemma4_chat_params *p, char *err) {
    return chat_prompt(m, msgs, n, p, NULL, NULL, err);
}

int32_t gemma4_chat_tokenize(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                             const gemma4_chat_params *p, int32_t *ids, int32_t cap, char *err) {
    g4_chat_span *marks = NULL;
    size_t n_marks = 0;
    int32_t *got = NULL;
    char *text = chat_prompt(m, msgs, n, p, &marks, &n_marks, err);
    const int64_t count = text ? g4_chat_tokenize(m->vocab, text, strlen(text), marks, n_marks, true, &got, err) : -1;
    free(text);
    free(marks);
    return count < 0 ? -1 : hand_over(m, count, got, ids, cap, err);
}
