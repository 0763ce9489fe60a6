/* Loading and validating the vocabulary of a GGUF file: token texts, types,
 * scores, merges, special ids, the end-of-generation set, and the lookup
 * tables the encoder needs (text -> id, merge pair -> rank, special-token
 * trie). Everything is copied out of the file. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/vocab_impl.h"

/* Token types as the GGUF converter writes them. */
enum { TYPE_UNDEFINED, TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE };

/* llama.cpp decides "end of generation" by token text; these are its
 * strings (the Gemma 4 ones are <eos>, <turn|> and <|tool_response>). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    ("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"), "[e~[",
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static size_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = (uint64_t)(uint32_t)a * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uint32_t)b * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 29));
}

static size_t table_size(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

int32_t g4_vocab_find(const g4_vocab *v, const char *text, size_t len) {
    for (size_t i = hash_bytes(text, len) & v->index_mask;; i = (i + 1) & v->index_mask) {
        int32_t id = v->index[i];
        if (id < 0) return -1;
        size_t n;
        const char *t = g4_text_of(v, id, &n);
        if (n == len && memcmp(t, text, len) == 0) return id;
    }
}

const g4_merge *g4_merge_find(const g4_vocab *v, int32_t left, int32_t right) {
    for (size_t i = hash_pair(left, right) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const g4_merge *m = &v->merges[i];
        if (m->left < 0) return NULL;
        if (m->left == left && m->right == right) return m;
    }
}

/* Up to 40 bytes of a token text for an error message, kept on one line. */
static const char *shown(char out[48], const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k < 40; i++) out[k++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (k < n) memcpy(out + k, "...", 3), k += 3;
    out[k] = 0;
    return out;
}

static g4_vocab *fail(g4_vocab *v, char *err, const g4_gguf_file *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    g4_verror(err, g4_gguf_path(f), fmt, ap);
    va_end(ap);
    g4_vocab_free(v);
    return NULL;
}

/* The array under key with element type elem: NULL with *n = 0 if absent,
 * NULL with *bad set if the key has another type. */
static const void *find_array(const g4_gguf_file *f, const char *key, enum g4_gguf_value_type elem,
                              uint64_t *n, const char **bad) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    *n = 0;
    *bad = NULL;
    if (!kv) return NULL;
    if (kv->type != GGUF_TYPE_ARRAY) {
        *bad = g4_gguf_type_name(kv->type);
        return NULL;
    }
    if (kv->arr_type != elem) {
        *bad = g4_gguf_type_name(kv->arr_type);
        return NULL;
    }
    *n = kv->arr_n;
    return kv->arr_data;
}

/* Optional u32 token id: keeps *id when absent; err when not u32 or out of range. */
static bool read_id(const g4_gguf_file *f, const char *key, int32_t n, int32_t *id, char *err) {
    uint32_t u;
    int rc = g4_gguf_get_u32(f, key, &u, err);
    if (rc == GGUF_ENOKEY) return true;
    if (rc != GGUF_OK) return false;
    if (u >= (uint32_t)n) {
        snprintf(err, G4_ERR_LEN, "%s: %s = %u is out of range (vocabulary has %d tokens)", g4_gguf_path(f), key, u, n);
        return false;
    }
    *id = (int32_t)u;
    return true;
}

static bool read_flag(const g4_gguf_file *f, const char *key, bool *out, char *err) {
    int rc = g4_gguf_get_bool(f, key, out, err);
    return rc == GGUF_OK || rc == GGUF_ENOKEY;
}

static bool is_byte_text(const char *s, size_t n) {
    static const char hex[] = "0123456789abcdefABCDEF";
    return n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && s[3] && strchr(hex, s[3]) && s[4] &&
           strchr(hex, s[4]);
}

static uint8_t attr_of_type(int32_t t) {
    switch (t) {
    case TYPE_NORMAL: return G4_ATTR_NORMAL;
    case TYPE_UNKNOWN: return G4_ATTR_UNKNOWN;
    case TYPE_CONTROL: return G4_ATTR_CONTROL;
    case TYPE_USER_DEFINED: return G4_ATTR_USER_DEFINED;
    case TYPE_UNUSED: return G4_ATTR_UNUSED;
    case TYPE_BYTE: return G4_ATTR_BYTE;
    default: return 0;
    }
}

/* End-of-generation set and the attribute changes that come with it, in
 * llama.cpp's order: listed texts become EOG and CONTROL, EOS joins, and
 * "</s>" leaves again (as a NORMAL token) when <|tool_response> is EOG. */
static void build_eog(g4_vocab *v) {
    int32_t tool_response = -1, end_s = -1;
    for (int32_t id = 0; id < v->n; id++) {
        size_t n;
        const char *t = g4_text_of(v, id, &n);
        for (size_t k = 0; k < sizeof eog_texts / sizeof eog_texts[0]; k++) {
            if (strlen(eog_texts[k]) == n && memcmp(eog_texts[k], t, n) == 0) {
                v->eog[id] = 1;
                v->attr[id] |= G4_ATTR_CONTROL;
            }
        }
    }
    if (v->eos >= 0) v->eog[v->eos] = 1;
    for (int32_t id = 0; id < v->n; id++) {
        size_t n;
        const char *t = g4_text_of(v, id, &n);
        if (!v->eog[id]) continue;
        if (n == 16 && memcmp(t, "<|tool_response>", 16) == 0) tool_response = id;
        if (n == 4 && memcmp(t, "</s>", 4) == 0) end_s = id;
    }
    if (tool_response >= 0 && end_s >= 0) {
        v->eog[end_s] = 0;
        v->attr[end_s] = G4_ATTR_NORMAL;
    }
}

/* A special token and the length that decides its priority. */
typedef struct special_entry {
    size_t len;
    int32_t id;
} special_entry;

/* Longest text first (llama.cpp's order); equal lengths by id so the order
 * is deterministic. */
static int by_priority(const void *a, const void *b) {
    const special_entry *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool build_trie(g4_vocab *v) {
    int32_t n_special = 0;
    size_t n_nodes = 1;
    for (int32_t id = 0; id < v->n; id++) {
        if (v->attr[id] & (G4_ATTR_CONTROL | G4_ATTR_USER_DEFINED | G4_ATTR_UNKNOWN)) {
            n_special++;
            n_nodes += v->text_off[id + 1] - v->text_off[id];
        }
    }
    if (n_nodes > INT32_MAX) return false;
    special_entry *order = malloc(((size_t)n_special + 1) * sizeof *order);
    v->trie = malloc(n_nodes * sizeof *v->trie);
    if (!order || !v->trie) {
        free(order);
        return false;
    }
    n_special = 0;
    for (int32_t id = 0; id < v->n; id++)
        if (v->attr[id] & (G4_ATTR_CONTROL | G4_ATTR_USER_DEFINED | G4_ATTR_UNKNOWN))
            order[n_special++] = (special_entry){v->text_off[id + 1] - v->text_off[id], id};
    qsort(order, (size_t)n_special, sizeof *order, by_priority);

    v->trie[0] = (g4_trie_node){-1, -1, -1, 0, 0};
    v->n_trie = 1;
    for (int32_t p = 0; p < n_special; p++) {
        size_t len;
        const char *t = g4_text_of(v, order[p].id, &len);
        int32_t node = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)t[i];
            int32_t ch = v->trie[node].child;
            while (ch >= 0 && v->trie[ch].byte != c) ch = v->trie[ch].sibling;
            if (ch < 0) {
                ch = v->n_trie++;
                v->trie[ch] = (g4_trie_node){-1, v->trie[node].child, -1, 0, c};
                v->trie[node].child = ch;
            }
            node = ch;
        }
        v->trie[node].token = order[p].id;
        v->trie[node].priority = p;
    }
    free(order);
    return true;
}

/* Reads tokenizer.ggml.merges into the pair table. */
static g4_vocab *load_merges(g4_vocab *v, const g4_gguf_file *f, char *err) {
    const char *bad;
    uint64_t n_merges;
    const g4_gguf_str *merges = find_array(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &n_merges, &bad);
    if (bad) return fail(v, err, f, "tokenizer.ggml.merges is %s, expected an array of strings", bad);
    if (!merges) return fail(v, err, f, "tokenizer.ggml.merges is missing (required by the gemma4 tokenizer)");
    if (n_merges > INT32_MAX) return fail(v, err, f, "tokenizer.ggml.merges has too many entries");
    size_t size = table_size(n_merges);
    v->merges = malloc(size * sizeof *v->merges);
    if (!v->merges) return fail(v, err, f, "out of memory for %llu merges", (unsigned long long)n_merges);
    v->merge_mask = size - 1;
    for (size_t i = 0; i < size; i++) v->merges[i].left = -1;

    char *joined = malloc(v->max_len * 2 + 1);
    if (!joined) return fail(v, err, f, "out of memory");
    for (uint64_t r = 0; r < n_merges; r++) {
        const char *s = merges[r].ptr;
        size_t len = merges[r].len, sp = 1;
        char show[48];
        while (sp < len && s[sp] != ' ') sp++;
        if (sp >= len) {
            free(joined);
            return fail(v, err, f, "merge %llu ('%s') has no space between its two parts",
                        (unsigned long long)r, shown(show, s, len));
        }
        int32_t left = g4_vocab_find(v, s, sp), right = g4_vocab_find(v, s + sp + 1, len - sp - 1);
        if (left < 0 || right < 0) {
            free(joined);
            return fail(v, err, f, "merge %llu ('%s') names a token that is not in the vocabulary",
                        (unsigned long long)r, shown(show, s, len));
        }
        /* both halves are tokens, so the joined text fits in 2 * max_len */
        memcpy(joined, s, sp);
        memcpy(joined + sp, s + sp + 1, len - sp - 1);
        size_t i = hash_pair(left, right) & v->merge_mask;
        while (v->merges[i].left >= 0 && !(v->merges[i].left == left && v->merges[i].right == right))
            i = (i + 1) & v->merge_mask;
        if (v->merges[i].left >= 0) continue; /* repeated pair: the first rank counts */
        v->merges[i] = (g4_merge){left, right, (int32_t)r, g4_vocab_find(v, joined, len - 1)};
    }
    free(joined);
    return v;
}

g4_vocab *g4_vocab_load(const g4_gguf_file *f, char *err) {
    g4_gguf_str model;
    int rc = g4_gguf_get_str(f, "tokenizer.ggml.model", &model, err);
    if (rc == GGUF_ENOKEY) return fail(NULL, err, f, "tokenizer.ggml.model is missing (no vocabulary in this file)");
    if (rc != GGUF_OK) return NULL;

    g4_vocab *v = calloc(1, sizeof *v);
    if (!v) return fail(NULL, err, f, "out of memory");
    if (model.len == 6 && memcmp(model.ptr, "gemma4", 6) == 0) {
        v->model = G4_MODEL_BPE;
    } else if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) {
        v->model = G4_MODEL_SPM;
    } else {
        char show[48];
        return fail(v, err, f, "tokenizer.ggml.model '%s' is not supported (expected gemma4 or llama)",
                    shown(show, model.ptr, model.len));
    }

    const char *bad;
    uint64_t n_tokens, n_types, n_scores;
    const g4_gguf_str *tokens = find_array(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &n_tokens, &bad);
    if (bad) return fail(v, err, f, "tokenizer.ggml.tokens is %s, expected an array of strings", bad);
    if (!tokens || n_tokens == 0) return fail(v, err, f, "tokenizer.ggml.tokens is missing or empty");
    if (n_tokens >= INT32_MAX / 2) return fail(v, err, f, "tokenizer.ggml.tokens has too many entries");
    const int32_t *types = find_array(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &n_types, &bad);
    if (bad) return fail(v, err, f, "tokenizer.ggml.token_type is %s, expected an array of i32", bad);
    if (types && n_types != n_tokens)
        return fail(v, err, f, "tokenizer.ggml.token_type has %llu entries but there are %llu tokens",
                    (unsigned long long)n_types, (unsigned long long)n_tokens);
    const void *scores = find_array(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &n_scores, &bad);
    bool int_scores = false;
    if (bad) {
        scores = find_array(f, "tokenizer.ggml.scores", GGUF_TYPE_INT32, &n_scores, &bad);
        int_scores = true;
        if (bad) return fail(v, err, f, "tokenizer.ggml.scores is %s, expected an array of f32", bad);
    }
    if (scores && n_scores != n_tokens)
        return fail(v, err, f, "tokenizer.ggml.scores has %llu entries but there are %llu tokens",
                    (unsigned long long)n_scores, (unsigned long long)n_tokens);

    int32_t n = v->n = (int32_t)n_tokens;
    size_t pool_size = 0;
    for (int32_t i = 0; i < n; i++) pool_size += tokens[i].len ? tokens[i].len : 20; /* "[EMPTY_i]" */
    v->pool = malloc(pool_size + 1);
    v->text_off = malloc(((size_t)n + 1) * sizeof *v->text_off);
    v->attr = malloc((size_t)n);
    v->eog = calloc((size_t)n, 1);
    v->score = malloc((size_t)n * sizeof *v->score);
    size_t index_size = table_size((size_t)n);
    v->index = malloc(index_size * sizeof *v->index);
    if (!v->pool || !v->text_off || !v->attr || !v->eog || !v->score || !v->index)
        return fail(v, err, f, "out of memory for %d tokens", n);
    v->index_mask = index_size - 1;
    memset(v->index, 0xff, index_size * sizeof *v->index);

    size_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        v->text_off[i] = off;
        if (tokens[i].len) {
            memcpy(v->pool + off, tokens[i].ptr, tokens[i].len);
            off += tokens[i].len;
        } else { /* llama.cpp renames empty tokens so they stay distinct */
            off += (size_t)snprintf(v->pool + off, 21, "[EMPTY_%d]", i);
        }
        v->text_off[i + 1] = off;
        size_t len;
        const char *t = g4_text_of(v, i, &len);
        if (len > v->max_len) v->max_len = len;

        size_t slot = hash_bytes(t, len) & v->index_mask;
        for (; v->index[slot] >= 0; slot = (slot + 1) & v->index_mask) {
            size_t l2;
            const char *t2 = g4_text_of(v, v->index[slot], &l2);
            char show[48];
            if (l2 == len && memcmp(t, t2, len) == 0)
                return fail(v, err, f, "token %d ('%s') duplicates token %d", i, shown(show, t, len), v->index[slot]);
        }
        v->index[slot] = i;

        int32_t type = types ? types[i] : TYPE_NORMAL;
        if (type < TYPE_UNDEFINED || type > TYPE_BYTE)
            return fail(v, err, f, "token %d has token_type %d (valid: 0..6)", i, type);
        if (type == TYPE_BYTE && !is_byte_text(t, len)) {
            char show[48];
            return fail(v, err, f, "token %d ('%s') is a byte token but not of the form <0xHH>", i, shown(show, t, len));
        }
        v->attr[i] = attr_of_type(type);
        if (!scores) v->score[i] = 0.0f;
        else if (int_scores) v->score[i] = (float)((const int32_t *)scores)[i];
        else memcpy(&v->score[i], (const float *)scores + i, sizeof(float));
    }
    for (int b = 0; b < 256; b++) {
        char hex[7];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        v->byte_token[b] = g4_vocab_find(v, hex, 6);
    }

    if (v->model == G4_MODEL_BPE) {
        if (!load_merges(v, f, err)) return NULL;
        v->bos = v->eos = v->unk = v->pad = -1;
        v->add_bos = true;
        v->add_space_prefix = false;
    } else {
        v->bos = n > 1 ? 1 : -1;
        v->eos = n > 2 ? 2 : -1;
        v->unk = 0;
        v->pad = -1;
        v->add_bos = true;
        v->add_space_prefix = true;
    }
    if (!read_id(f, "tokenizer.ggml.bos_token_id", n, &v->bos, err) ||
        !read_id(f, "tokenizer.ggml.eos_token_id", n, &v->eos, err) ||
        !read_id(f, "tokenizer.ggml.unknown_token_id", n, &v->unk, err) ||
        !read_id(f, "tokenizer.ggml.padding_token_id", n, &v->pad, err) ||
        !read_flag(f, "tokenizer.ggml.add_bos_token", &v->add_bos, err) ||
        !read_flag(f, "tokenizer.ggml.add_eos_token", &v->add_eos, err) ||
        (v->model == G4_MODEL_SPM && !read_flag(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err))) {
        g4_vocab_free(v);
        return NULL;
    }
    if (v->model == G4_MODEL_BPE) v->add_bos = true; /* llama.cpp forces BOS for Gemma 4 */
    if (v->add_bos && v->bos < 0) return fail(v, err, f, "BOS is to be added but tokenizer.ggml.bos_token_id is not set");
    if (v->add_eos && v->eos < 0) return fail(v, err, f, "EOS is to be added but tokenizer.ggml.eos_token_id is not set");

    build_eog(v);
    if (!build_trie(v)) return fail(v, err, f, "out of memory for the special-token table");
    return v;
}

void g4_vocab_free(g4_vocab *v) {
    if (!v) return;
    free(v->pool);
    free(v->text_off);
    free(v->attr);
    free(v->eog);
    free(v->score);
    free(v->index);
    free(v->merges);
    free(v->trie);
    free(v);
}

int32_t g4_vocab_size(const g4_vocab *v) { return v->n; }
int32_t g4_vocab_bos(const g4_vocab *v) { return v->bos; }
int32_t g4_vocab_eos(const g4_vocab *v) { return v->eos; }
size_t g4_vocab_max_piece(const g4_vocab *v) { return v->max_len; }

bool g4_vocab_is_eog(const g4_vocab *v, int32_t id) { return id >= 0 && id < v->n && v->eog[id]; }

bool g4_vocab_is_control(const g4_vocab *v, int32_t id) {
    return id >= 0 && id < v->n && (v->attr[id] & G4_ATTR_CONTROL);
}

const char *g4_vocab_text(const g4_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n) {
        *len = 0;
        return NULL;
    }
    return g4_text_of(v, id, len);
}
