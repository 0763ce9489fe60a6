/* Synthetic vocabulary builder: fixed tokens first (at their ids), then the
 * content tokens at the lowest free ids. Strings live in one arena addressed
 * by offset (it grows while building); a hash of the strings keeps every
 * token unique, since the tokenizer looks tokens up by text. At the end:
 * copying the tokenizer of an existing GGUF instead (mkmodel --vocab). */
#include "tools/synth/synth_vocab.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPACE "\xE2\x96\x81" /* U+2581, how the vocabulary spells ' ' */

enum { N = G4_TOKEN_NORMAL, C = G4_TOKEN_CONTROL, U = G4_TOKEN_USER_DEFINED };

typedef struct {
    int32_t id;
    const char *text;
    int type;
} fixed_token;

/* The special tokens of the real vocabulary at their real ids (docs/architecture.md §6.2). */
static const fixed_token real_specials[] = {
    {0, "<pad>", C}, {1, "<eos>", C}, {2, "<bos>", C}, {3, "<unk>", C}, {4, "<mask>", C},
    {5, "[multimodal]", N}, {46, "<|tool>", C}, {47, "<tool|>", C}, {48, "<|tool_call>", U},
    {49, "<tool_call|>", U}, {50, "<|tool_response>", U}, {51, "<tool_response|>", U}, {52, "<|\"|>", U},
    {98, "<|think|>", C}, {100, "<|channel>", U}, {101, "<channel|>", U}, {105, "<|turn>", C},
    {106, "<turn|>", C}, {236743, SPACE, N}, {255999, "<|image>", C}, {256000, "<|audio>", C},
    {258880, "<|image|>", C}, {258881, "<|audio|>", C}, {258882, "<image|>", C}, {258883, "<audio|>", C},
    {258884, "<|video|>", C},
};
/* Where the real vocabulary keeps its runs of one character and its bytes. */
enum { REAL_NEWLINES = 107, REAL_SPACES = 138, REAL_BYTES = 238, REAL_TABS = 255968, REAL_RUNS = 31 };
/* <unusedN> fill whatever is free in these id ranges, numbered in id order. */
static const int32_t real_unused[][2] = {{0, 107}, {256001, 258880}, {258885, INT32_MAX}};

/* The compact layout (fixture generator): the same texts and types, packed. */
static const fixed_token compact_specials[] = {
    {0, "<pad>", C}, {0, "<eos>", C}, {0, "<bos>", C}, {0, "<unk>", C}, {0, "<mask>", C},
    {0, "[multimodal]", N}, {0, "<|tool>", C}, {0, "<tool|>", C}, {0, "<|tool_call>", U},
    {0, "<tool_call|>", U}, {0, "<|tool_response>", U}, {0, "<tool_response|>", U}, {0, "<|\"|>", U},
    {0, "<unused0>", N}, {0, "<unused1>", N}, {0, "<|think|>", C}, {0, "<|channel>", U},
    {0, "<channel|>", U}, {0, "<|turn>", C}, {0, "<turn|>", C}, {0, "<|image>", C}, {0, "<|audio>", C},
    {0, "<|image|>", C}, {0, "<|audio|>", C}, {0, "<image|>", C}, {0, "<audio|>", C}, {0, "<|video|>", C},
    {0, "\n", N}, {0, "\n\n", N}, {0, "\n\n\n\n", N}, {0, "\t", N}, {0, "\t\t", N},
};

/* Most frequent English words first: a small vocabulary gets the first few. */
static const char *const words[] = {
    "the", "of", "and", "to", "in", "is", "it", "that", "for", "on", "was", "with", "he", "as", "you",
    "I", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what",
    "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she",
    "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then", "them", "these",
    "so", "some", "her", "would", "make", "like", "him", "into", "time", "has", "look", "two", "more",
    "write", "go", "see", "number", "no", "way", "could", "people", "my", "than", "first", "water",
    "been", "call", "who", "its", "now", "find", "long", "down", "day", "did", "get", "come", "made",
    "may", "part", "The", "It", "In", "This", "We", "Hello", "world", "model", "user", "text", "ing",
    "ed", "er", "ly", "tion", "es",
};

/* Pseudo-word syllables for the filler tokens. */
static const char consonants[] = "bdfgklmnprstvz", vowels[] = "aeiou";

typedef struct {
    char *arena;
    size_t len, cap;
    int64_t *tok;       /* arena offset per id, -1 = free */
    int32_t *type;
    int32_t n, n_free, lowest_free;
    int64_t *merge;     /* arena offsets */
    int32_t n_merges, cap_merges;
    int32_t *hash;      /* ids, -1 = empty slot */
    uint32_t hash_mask;
    bool oom;
} builder;

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Slot of text in the hash: where it is, or the empty slot it would take. */
static uint32_t slot_of(const builder *b, const char *text) {
    uint32_t i = hash_str(text) & b->hash_mask;
    while (b->hash[i] >= 0 && strcmp(b->arena + b->tok[b->hash[i]], text)) i = (i + 1) & b->hash_mask;
    return i;
}

static bool has(const builder *b, const char *text) { return b->hash[slot_of(b, text)] >= 0; }

static int64_t intern(builder *b, const char *s) {
    size_t n = strlen(s) + 1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->arena, cap);
        if (!p) {
            b->oom = true;
            return -1;
        }
        b->arena = p;
        b->cap = cap;
    }
    memcpy(b->arena + b->len, s, n);
    b->len += n;
    return (int64_t)(b->len - n);
}

/* Puts a new (not yet present) text at a free id. */
static void place(builder *b, int32_t id, const char *text, int type) {
    int64_t off = intern(b, text);
    if (off < 0) return;
    b->tok[id] = off;
    b->type[id] = type;
    b->hash[slot_of(b, text)] = id;
    b->n_free--;
}

/* At the lowest free id; false when the vocabulary is full. */
static bool append(builder *b, const char *text, int type) {
    if (has(b, text)) return true;
    while (b->lowest_free < b->n && b->tok[b->lowest_free] >= 0) b->lowest_free++;
    if (b->lowest_free == b->n) return false;
    place(b, b->lowest_free, text, type);
    return true;
}

static void add_merge(builder *b, const char *left, const char *right) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s %s", left, right);
    if (b->n_merges == b->cap_merges) {
        int32_t cap = b->cap_merges ? 2 * b->cap_merges : 256;
        int64_t *p = realloc(b->merge, (size_t)cap * sizeof *p);
        if (!p) {
            b->oom = true;
            return;
        }
        b->merge = p;
        b->cap_merges = cap;
    }
    int64_t off = intern(b, buf);
    if (off >= 0) b->merge[b->n_merges++] = off;
}

static void byte_token(char *buf, int byte) { snprintf(buf, 8, "<0x%02X>", byte); }

static void place_real_layout(builder *b) {
    char buf[4 * (REAL_RUNS + 1) + 1]; /* the longest run: 32 "▁" */
    for (size_t i = 0; i < sizeof real_specials / sizeof real_specials[0]; i++)
        place(b, real_specials[i].id, real_specials[i].text, real_specials[i].type);
    for (int r = 0; r < REAL_RUNS; r++) {
        memset(buf, '\n', (size_t)r + 1);
        buf[r + 1] = 0;
        place(b, REAL_NEWLINES + r, buf, N);
        memset(buf, '\t', (size_t)r + 1);
        place(b, REAL_TABS + r, buf, N);
        buf[0] = 0;
        for (int k = 0; k < r + 2; k++) strcat(buf, SPACE); /* runs of 2.. */
        place(b, REAL_SPACES + r, buf, N);
    }
    for (int i = 0; i < 256; i++) {
        byte_token(buf, i);
        place(b, REAL_BYTES + i, buf, G4_TOKEN_BYTE);
    }
    int unused = 0;
    for (size_t r = 0; r < sizeof real_unused / sizeof real_unused[0]; r++)
        for (int32_t id = real_unused[r][0]; id < real_unused[r][1] && id < b->n; id++)
            if (b->tok[id] < 0) {
                snprintf(buf, sizeof buf, "<unused%d>", unused++);
                place(b, id, buf, N);
            }
}

static void place_compact_layout(builder *b) {
    char buf[8];
    for (size_t i = 0; i < sizeof compact_specials / sizeof compact_specials[0]; i++)
        append(b, compact_specials[i].text, compact_specials[i].type);
    for (int i = 0; i < 256; i++) {
        byte_token(buf, i);
        append(b, buf, G4_TOKEN_BYTE);
    }
}

/* Adds the prefixes of s (at UTF-8 character boundaries) that are missing,
 * each with the merge "prefix-without-last-char last-char", so BPE can build
 * s; all or nothing. The first character must already be a token. */
static bool add_word(builder *b, const char *s) {
    char prev[64], cur[64];
    size_t n = strlen(s), missing = 0, start = 0; /* start: of the last character */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t end = 1; end <= n; end++) {
            if (end < n && (s[end] & 0xC0) == 0x80) continue;
            memcpy(cur, s, end);
            cur[end] = 0;
            if (pass == 0) {
                if (!has(b, cur) && start == 0) return false;
                missing += !has(b, cur);
                start = end;
                continue;
            }
            if (!has(b, cur)) {
                add_merge(b, prev, cur + start);
                append(b, cur, N);
            }
            memcpy(prev, cur, end + 1);
            start = end;
        }
        if ((int32_t)missing > b->n_free) return false;
        start = 0;
    }
    return true;
}

static void add_content(builder *b) {
    char buf[64];
    bool room = append(b, SPACE, N);
    for (int c = 0x21; room && c < 0x7F; c++) {
        buf[0] = (char)c;
        buf[1] = 0;
        room = append(b, buf, N);
    }
    /* the whitespace runs exist as tokens in both layouts except "▁▁" */
    add_merge(b, "\n", "\n");
    add_merge(b, "\t", "\t");
    room = room && append(b, SPACE SPACE, N);
    if (room) add_merge(b, SPACE, SPACE);
    for (size_t i = 0; room && i < sizeof words / sizeof words[0]; i++) {
        snprintf(buf, sizeof buf, SPACE "%s", words[i]);
        room = add_word(b, buf) && add_word(b, words[i]);
    }
    /* fillers: "▁" + syllables of i in bijective base 70 (all distinct) */
    const int nc = (int)sizeof consonants - 1, nv = (int)sizeof vowels - 1;
    for (uint64_t i = 1; b->n_free > 0 && !b->oom; i++) {
        size_t len = strlen(SPACE);
        memcpy(buf, SPACE, len);
        for (uint64_t x = i; x > 0; x = (x - 1) / (uint64_t)(nc * nv)) {
            int d = (int)((x - 1) % (uint64_t)(nc * nv));
            buf[len++] = consonants[d / nv];
            buf[len++] = vowels[d % nv];
        }
        buf[len] = 0;
        append(b, buf, N);
    }
}

static int32_t id_of(const builder *b, const char *text) { return b->hash[slot_of(b, text)]; }

int g4_synth_vocab_build(g4_synth_vocab *v, int32_t n_tokens, char *err) {
    memset(v, 0, sizeof *v);
    if (n_tokens < G4_SYNTH_VOCAB_MIN) {
        snprintf(err, G4_ERR_LEN, "mkmodel: vocab_size %d is below the minimum %d (specials + 256 bytes)",
                 n_tokens, G4_SYNTH_VOCAB_MIN);
        return -1;
    }
    builder b = {.n = n_tokens, .n_free = n_tokens};
    uint32_t hcap = 1024;
    while (hcap < 2u * (uint32_t)n_tokens) hcap *= 2;
    b.hash_mask = hcap - 1;
    b.hash = malloc(hcap * sizeof *b.hash);
    b.tok = malloc((size_t)n_tokens * sizeof *b.tok);
    b.type = malloc((size_t)n_tokens * sizeof *b.type);
    if (b.hash && b.tok && b.type) {
        memset(b.hash, 0xFF, hcap * sizeof *b.hash);
        memset(b.tok, 0xFF, (size_t)n_tokens * sizeof *b.tok);
        if (n_tokens >= G4_SYNTH_VOCAB_REAL) place_real_layout(&b);
        else place_compact_layout(&b);
        add_content(&b);
    }
    v->tokens = malloc((size_t)n_tokens * sizeof *v->tokens);
    v->scores = malloc((size_t)n_tokens * sizeof *v->scores);
    v->merges = malloc(((size_t)b.n_merges + 1) * sizeof *v->merges);
    if (!b.hash || !b.tok || !b.type || b.oom || !v->tokens || !v->scores || !v->merges) {
        free(b.hash);
        free(b.tok);
        free(b.type);
        free(b.merge);
        free(b.arena);
        g4_synth_vocab_free(v);
        snprintf(err, G4_ERR_LEN, "mkmodel: out of memory building a %d-token vocabulary", n_tokens);
        return -1;
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        v->tokens[i] = b.arena + b.tok[i];
        v->scores[i] = -1000.0f;
    }
    for (int32_t i = 0; i < b.n_merges; i++) v->merges[i] = b.arena + b.merge[i];
    v->n_tokens = n_tokens;
    v->types = b.type;
    v->n_merges = b.n_merges;
    v->arena = b.arena;
    v->bos = (uint32_t)id_of(&b, "<bos>");
    v->eos = (uint32_t)id_of(&b, "<eos>");
    v->unk = (uint32_t)id_of(&b, "<unk>");
    v->pad = (uint32_t)id_of(&b, "<pad>");
    v->mask = (uint32_t)id_of(&b, "<mask>");
    free(b.hash);
    free(b.tok);
    free(b.merge);
    return 0;
}

void g4_synth_vocab_free(g4_synth_vocab *v) {
    free(v->tokens);
    free(v->types);
    free(v->scores);
    free(v->merges);
    free(v->arena);
    memset(v, 0, sizeof *v);
}

int g4_synth_vocab_write(const g4_synth_vocab *v, g4_gguf_writer *w, char *err) {
    const char *p = "tokenizer.ggml.";
    char key[64];
#define KEY(k) (snprintf(key, sizeof key, "%s%s", p, k), key)
    if (g4_gguf_writer_set_str(w, KEY("model"), "gemma4", err) ||
        g4_gguf_writer_set_arr(w, KEY("tokens"), GGUF_TYPE_STRING, v->tokens, (uint64_t)v->n_tokens, err) ||
        g4_gguf_writer_set_arr(w, KEY("scores"), GGUF_TYPE_FLOAT32, v->scores, (uint64_t)v->n_tokens, err) ||
        g4_gguf_writer_set_arr(w, KEY("token_type"), GGUF_TYPE_INT32, v->types, (uint64_t)v->n_tokens, err) ||
        g4_gguf_writer_set_arr(w, KEY("merges"), GGUF_TYPE_STRING, v->merges, (uint64_t)v->n_merges, err) ||
        g4_gguf_writer_set_u32(w, KEY("bos_token_id"), v->bos, err) ||
        g4_gguf_writer_set_u32(w, KEY("eos_token_id"), v->eos, err) ||
        g4_gguf_writer_set_u32(w, KEY("unknown_token_id"), v->unk, err) ||
        g4_gguf_writer_set_u32(w, KEY("padding_token_id"), v->pad, err) ||
        g4_gguf_writer_set_u32(w, KEY("mask_token_id"), v->mask, err) ||
        g4_gguf_writer_set_bool(w, KEY("add_space_prefix"), false, err) ||
        g4_gguf_writer_set_bool(w, KEY("add_bos_token"), true, err))
        return -1;
#undef KEY
    return 0;
}

int32_t g4_vocab_file_n_tokens(const g4_gguf_file *src, char *err) {
    const void *data;
    uint64_t n = 0;
    int rc = g4_gguf_get_arr(src, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &data, &n, err);
    if (rc == GGUF_ENOKEY) g4_error(err, g4_gguf_path(src), "no tokenizer.ggml.tokens: not a vocabulary");
    if (rc) return -1;
    if (n < 1 || n > INT32_MAX) return g4_error(err, g4_gguf_path(src), "%" PRIu64 " tokens", n);
    return (int32_t)n;
}

int g4_vocab_file_copy(const g4_gguf_file *src, g4_gguf_writer *w, char *err) {
    for (int64_t i = 0; i < g4_gguf_n_kv(src); i++) {
        const g4_gguf_kv *kv = g4_gguf_kv_at(src, i);
        if (strncmp(kv->key, "tokenizer.", 10)) continue;
        char why[G4_ERR_LEN];
        if (g4_gguf_writer_copy_kv(w, kv, why)) return g4_error(err, g4_gguf_path(src), "%s", why);
    }
    return 0;
}
