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

char *gemma4_chat_format(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                         const gemma4_chat_params *p, char *err) {
    g4_chat_opts opts;
    g4_chat_msg *cm = chat_msgs(m, msgs, n, p, &opts, err);
    char *text = cm ? g4_chat_format(cm, n, &opts, err) : NULL;
    free(cm);
    return text;
}

int32_t gemma4_chat_tokenize(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                             const gemma4_chat_params *p, int32_t *ids, int32_t cap, char *err) {
    g4_chat_opts opts;
    g4_chat_span *marks = NULL;
    size_t n_marks = 0;
    int32_t *got = NULL;
    g4_chat_msg *cm = chat_msgs(m, msgs, n, p, &opts, err);
    char *text = cm ? g4_chat_format_marked(cm, n, &opts, &marks, &n_marks, err) : NULL;
    const int64_t count = text ? g4_chat_tokenize(m->vocab, text, strlen(text), marks, n_marks, true, &got, err) : -1;
    free(cm);
    free(text);
    free(marks);
    return count < 0 ? -1 : hand_over(m, count, got, ids, cap, err);
}
