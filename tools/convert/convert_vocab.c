/* tokenizer.json + tokenizer_config.json -> tokenizer.ggml.*, with the
 * token types llama.cpp's converter assigns for Gemma 4 (LlamaHfVocab plus
 * Gemma4Model.set_vocab): <0xHH> byte tokens BYTE; the tokens the chat
 * parser must see USER_DEFINED; tokens tokenizer_config.json names as
 * special CONTROL; added tokens beyond the base vocabulary USER_DEFINED;
 * everything else NORMAL. Scores are the -1000 placeholder BPE ignores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/convert/convert.h"

enum { TYPE_NORMAL = 1, TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4, TYPE_BYTE = 6 };

static const char *visible_tokens[] = {"<|channel>",       "<channel|>",       "<|tool_call>", "<tool_call|>",
                                       "<|tool_response>", "<tool_response|>", "<|\"|>"};

/* A special-token entry of tokenizer_config.json: "text" or {"content": "text"}. */
static const char *token_text(const g4_json *v) {
    if (v && v->type == G4_JSON_OBJECT) v = g4_json_get_type(v, "content", G4_JSON_STRING);
    return v && v->type == G4_JSON_STRING ? v->str : NULL;
}

static bool is_byte_token(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && strchr("0123456789ABCDEFabcdef", s[3]) &&
           strchr("0123456789ABCDEFabcdef", s[4]) && s[5] == '>';
}

/* Whether tokenizer_config.json names text as a special token: any
 * "*_token" entry, or an element of additional/extra_special_tokens. */
static bool is_special(const g4_json *tc, const char *text) {
    for (size_t i = 0; tc && tc->type == G4_JSON_OBJECT && i < tc->len; i++) {
        const g4_json_key *k = &tc->keys[i];
        const g4_json *v = &tc->items[i];
        if (k->len > 6 && !strcmp(k->str + k->len - 6, "_token")) {
            const char *t = token_text(v);
            if (t && !strcmp(t, text)) return true;
        }
        if ((!strcmp(k->str, "additional_special_tokens") || !strcmp(k->str, "extra_special_tokens")) &&
            (v->type == G4_JSON_ARRAY || v->type == G4_JSON_OBJECT))
            for (size_t j = 0; j < v->len; j++) {
                const char *t = token_text(&v->items[j]);
                if (t && !strcmp(t, text)) return true;
            }
    }
    return false;
}

typedef struct vocab {
    int32_t n;
    const char **tokens; /* into the parsed tokenizer.json */
    int32_t *types;
    float *scores;
    bool *in_base;       /* in model.vocab (not only in added_tokens) */
    int64_t n_merges;
    char **merges;
} vocab;

static void vocab_free(vocab *v) {
    for (int64_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->merges);
    free(v->tokens);
    free(v->types);
    free(v->scores);
    free(v->in_base);
}

static int place(vocab *v, int64_t id, const char *text, const char *path, char *err) {
    if (id < 0 || id >= v->n) {
        snprintf(err, G4_ERR_LEN, "%.300s: token id %lld out of range", path, (long long)id);
        return -1;
    }
    if (v->tokens[id] && strcmp(v->tokens[id], text)) {
        snprintf(err, G4_ERR_LEN, "%.300s: id %lld is both \"%.40s\" and \"%.40s\"", path, (long long)id, v->tokens[id], text);
        return -1;
    }
    v->tokens[id] = text;
    return 0;
}

static int read_vocab(const g4_json *tj, const g4_json *tc, vocab *v, const char *path, char *err) {
    const g4_json *model = g4_json_get_type(tj, "model", G4_JSON_OBJECT);
    const g4_json *type = g4_json_get_type(model, "type", G4_JSON_STRING);
    const g4_json *base = g4_json_get_type(model, "vocab", G4_JSON_OBJECT);
    const g4_json *merges = g4_json_get_type(model, "merges", G4_JSON_ARRAY);
    const g4_json *added = g4_json_get_type(tj, "added_tokens", G4_JSON_ARRAY);
    if (!type || strcmp(type->str, "BPE") || !base || !merges) {
        snprintf(err, G4_ERR_LEN, "%.300s: expected a BPE model with \"vocab\" and \"merges\"", path);
        return -1;
    }
    int64_t max_id = -1;
    for (size_t i = 0; i < base->len; i++) {
        const g4_json *id = &base->items[i];
        if (id->type != G4_JSON_NUMBER || !id->is_int || id->integer < 0 || id->integer >= INT32_MAX) {
            snprintf(err, G4_ERR_LEN, "%.300s: vocab entry \"%.40s\" has no valid id", path, base->keys[i].str);
            return -1;
        }
        if (id->integer > max_id) max_id = id->integer;
    }
    for (size_t i = 0; added && i < added->len; i++) {
        const g4_json *id = g4_json_get_type(&added->items[i], "id", G4_JSON_NUMBER);
        if (!id || !id->is_int || id->integer < 0 || id->integer >= INT32_MAX || !token_text(&added->items[i])) {
            snprintf(err, G4_ERR_LEN, "%.300s: added_tokens[%zu] needs an \"id\" and a \"content\"", path, i);
            return -1;
        }
        if (id->integer > max_id) max_id = id->integer;
    }
    v->n = (int32_t)(max_id + 1);
    v->tokens = calloc((size_t)v->n + 1, sizeof *v->tokens);
    v->types = malloc(((size_t)v->n + 1) * sizeof *v->types);
    v->scores = malloc(((size_t)v->n + 1) * sizeof *v->scores);
    v->in_base = calloc((size_t)v->n + 1, sizeof *v->in_base);
    v->merges = calloc(merges->len + 1, sizeof *v->merges);
    if (!v->tokens || !v->types || !v->scores || !v->in_base || !v->merges) {
        snprintf(err, G4_ERR_LEN, "%.300s: out of memory", path);
        return -1;
    }
    for (size_t i = 0; i < base->len; i++) {
        if (place(v, base->items[i].integer, base->keys[i].str, path, err)) return -1;
        v->in_base[base->items[i].integer] = true;
    }
    for (size_t i = 0; added && i < added->len; i++)
        if (place(v, g4_json_get(&added->items[i], "id")->integer, token_text(&added->items[i]), path, err)) return -1;
    for (int32_t id = 0; id < v->n; id++) {
        const char *t = v->tokens[id];
        if (!t) {
            snprintf(err, G4_ERR_LEN, "%.300s: no token has id %d (ids must be 0..%d without gaps)", path, id, v->n - 1);
            return -1;
        }
        bool visible = false;
        for (size_t k = 0; k < sizeof visible_tokens / sizeof visible_tokens[0]; k++) visible |= !strcmp(t, visible_tokens[k]);
        v->types[id] = is_byte_token(t)       ? TYPE_BYTE
                       : visible              ? TYPE_USER_DEFINED
                       : is_special(tc, t)    ? TYPE_CONTROL
                       : !v->in_base[id]      ? TYPE_USER_DEFINED
                                              : TYPE_NORMAL;
        v->scores[id] = -1000.0f;
    }
    /* merges are "left right" strings, or [left, right] pairs in newer files */
    for (size_t i = 0; i < merges->len; i++, v->n_merges++) {
        const g4_json *m = &merges->items[i];
        const char *l = NULL, *r = NULL;
        if (m->type == G4_JSON_ARRAY && m->len == 2 && m->items[0].type == G4_JSON_STRING &&
            m->items[1].type == G4_JSON_STRING)
            l = m->items[0].str, r = m->items[1].str;
        size_t n = m->type == G4_JSON_STRING ? m->len + 1 : l ? strlen(l) + strlen(r) + 2 : 0;
        if (!n || (m->type == G4_JSON_STRING && !strchr(m->str, ' '))) {
            snprintf(err, G4_ERR_LEN, "%.300s: merges[%zu] is not \"left right\" or [left, right]", path, i);
            return -1;
        }
        if (!(v->merges[i] = malloc(n))) {
            snprintf(err, G4_ERR_LEN, "%.300s: out of memory", path);
            return -1;
        }
        if (l) snprintf(v->merges[i], n, "%s %s", l, r);
        else memcpy(v->merges[i], m->str, n);
    }
    return 0;
}

/* Id of the special token `role` ("bos", ...): tokenizer_config.json's
 * "<role>_token" text looked up in the vocabulary, else config.json's
 * "<role>_token_id" (text_config first). -1 if neither. */
static int64_t special_id(const vocab *v, const g4_json *tc, const g4_json *config, const char *role) {
    char key[32];
    snprintf(key, sizeof key, "%s_token", role);
    const char *text = token_text(g4_json_get(tc, key));
    for (int32_t id = 0; text && id < v->n; id++)
        if (!strcmp(v->tokens[id], text)) return id;
    snprintf(key, sizeof key, "%s_token_id", role);
    const g4_json *tcfg = g4_json_get_type(config, "text_config", G4_JSON_OBJECT);
    const g4_json *id = g4_json_get_type(tcfg, key, G4_JSON_NUMBER);
    if (!id) id = g4_json_get_type(config, key, G4_JSON_NUMBER);
    return id && id->is_int && id->integer >= 0 && id->integer < v->n ? id->integer : -1;
}

/* chat_template.jinja if present, else tokenizer_config.json's
 * chat_template (a string, or a list of {name, template}: "default"). */
static char *chat_template(const char *dir, const g4_json *tc) {
    char path[4096], err[G4_ERR_LEN];
    size_t len;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    char *t = g4_read_file(path, &len, err);
    if (t) return t;
    const g4_json *ct = g4_json_get(tc, "chat_template");
    for (size_t i = 0; ct && ct->type == G4_JSON_ARRAY && i < ct->len; i++) {
        const g4_json *name = g4_json_get_type(&ct->items[i], "name", G4_JSON_STRING);
        if (name && !strcmp(name->str, "default")) ct = g4_json_get(&ct->items[i], "template");
    }
    return ct && ct->type == G4_JSON_STRING ? strdup(ct->str) : NULL;
}

int convert_write_vocab(const char *dir, const g4_json *config, g4_gguf_writer *w, int32_t *n_vocab, char *err) {
    char path[4096], tc_path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(tc_path, sizeof tc_path, "%s/tokenizer_config.json", dir);
    g4_json *tj = g4_json_parse_file(path, err);
    if (!tj) return -1;
    char tc_err[G4_ERR_LEN];
    size_t len;
    char *tc_text = g4_read_file(tc_path, &len, tc_err); /* optional */
    g4_json *tc = tc_text ? g4_json_parse(tc_text, len, tc_path, err) : NULL;
    bool tc_bad = tc_text && !tc;
    free(tc_text);
    vocab v = {0};
    int rc = tc_bad ? -1 : read_vocab(tj, tc, &v, path, err);
    char *tmpl = rc ? NULL : chat_template(dir, tc);
    static const char *roles[] = {"bos", "eos", "unknown", "padding", "mask"};
    static const char *hf_roles[] = {"bos", "eos", "unk", "pad", "mask"};
    rc = rc || g4_gguf_writer_set_str(w, "tokenizer.ggml.model", "gemma4", err) ||
         g4_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, v.tokens, (uint64_t)v.n, err) ||
         g4_gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v.scores, (uint64_t)v.n, err) ||
         g4_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.types, (uint64_t)v.n, err) ||
         g4_gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_TYPE_STRING, v.merges, (uint64_t)v.n_merges, err);
    for (int i = 0; i < 5 && !rc; i++) {
        int64_t id = special_id(&v, tc, config, hf_roles[i]);
        char key[64];
        snprintf(key, sizeof key, "tokenizer.ggml.%s_token_id", roles[i]);
        if (id >= 0) rc = g4_gguf_writer_set_u32(w, key, (uint32_t)id, err);
    }
    const g4_json *add_eos = g4_json_get_type(tc, "add_eos_token", G4_JSON_BOOL);
    /* llama.cpp forces BOS on for gemma4 and its converter writes true */
    rc = rc || g4_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false, err) ||
         g4_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true, err) ||
         (add_eos && g4_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos->boolean, err)) ||
         (tmpl && g4_gguf_writer_set_str(w, "tokenizer.chat_template", tmpl, err));
    *n_vocab = v.n;
    free(tmpl);
    vocab_free(&v);
    g4_json_free(tc);
    g4_json_free(tj);
    return rc ? -1 : 0;
}
