/* Tokenizer tests: the llama.cpp fixtures (synthetic and real Gemma 4
 * vocabularies, four modes each), llama.cpp's own Gemma 4 vectors, round
 * trips on random text, the streaming detokenizer, a SentencePiece ("llama")
 * vocabulary built here, malformed vocabularies, and a speed figure that is
 * printed, not asserted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "tests/harness.h"
#include "gguf/json.h"
#include "tokenizer/tokenizer.h"

/* A fixture file's bytes; NULL (reported by the caller) if unreadable. */
static char *read_all(const char *path, size_t *len) {
    char err[G4_ERR_LEN];
    return g4_read_file(path, len, err);
}

static const struct {
    const char *name;
    bool add_special, parse_special;
} modes[4] = {
    {"special_parse", true, true},
    {"special_noparse", true, false},
    {"nospecial_parse", false, true},
    {"nospecial_noparse", false, false},
};

static bool same_ids(const int32_t *ids, int64_t n, const g4_json *want) {
    if (!want || want->type != G4_JSON_ARRAY || (size_t)n != want->len) return false;
    for (int64_t i = 0; i < n; i++)
        if (!want->items[i].is_int || want->items[i].integer != ids[i]) return false;
    return true;
}

/* Every case of a *.tokens.json file in all four modes; prints the counts. */
static void run_fixture(const g4_vocab *v, const char *path, const char *label, size_t want_cases) {
    size_t len;
    char *text = read_all(path, &len);
    CHECK(text != NULL, "cannot read %s", path);
    if (!text) return;
    char err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse(text, len, path, err);
    bool ok = doc != NULL;
    CHECK(ok, "%s", err);
    const g4_json *cases = g4_json_get(doc, "cases");
    CHECK(cases && cases->type == G4_JSON_ARRAY && cases->len == want_cases, "%s: expected %zu cases", path, want_cases);
    if (ok && cases && cases->type == G4_JSON_ARRAY) {
        size_t matched[4] = {0}, pieces_ok = 0;
        for (size_t c = 0; c < cases->len; c++) {
            const g4_json *tc = &cases->items[c], *t = g4_json_get(tc, "text"), *ids = g4_json_get(tc, "ids");
            if (!t || t->type != G4_JSON_STRING) continue;
            for (int m = 0; m < 4; m++) {
                int32_t *got;
                char err[G4_ERR_LEN];
                int64_t n = g4_tokenize(v, t->str, t->len, modes[m].add_special, modes[m].parse_special, &got, err);
                bool same = n >= 0 && same_ids(got, n, g4_json_get(ids, modes[m].name));
                CHECK(same, "%s case %zu mode %s: ids differ", label, c, modes[m].name);
                matched[m] += same;
                if (m == 0 && n >= 0) { /* pieces are the token texts of special_parse */
                    const g4_json *pieces = g4_json_get(tc, "pieces");
                    bool pok = pieces && pieces->type == G4_JSON_ARRAY && pieces->len == (size_t)n;
                    for (int64_t i = 0; pok && i < n; i++) {
                        size_t tl;
                        const char *tt = g4_vocab_text(v, got[i], &tl);
                        pok = tt && pieces->items[i].len == tl && !memcmp(pieces->items[i].str, tt, tl);
                    }
                    CHECK(pok, "%s case %zu: token texts differ from pieces", label, c);
                    pieces_ok += pok;
                }
                free(got);
            }
        }
        for (int m = 0; m < 4; m++)
            printf("%s %-17s %zu/%zu cases match\n", label, modes[m].name, matched[m], cases->len);
        printf("%s pieces            %zu/%zu cases match\n", label, pieces_ok, cases->len);
    }
    g4_json_free(doc);
    free(text);
}

/* llama.cpp's test-tokenizer-0 vectors: texts separated by a marker line,
 * one line of ids per text (no BOS, parse_special off). */
static void run_llama_vectors(const g4_vocab *v, const char *inp_path, const char *out_path) {
    size_t ni, no;
    char *inp = read_all(inp_path, &ni), *out = read_all(out_path, &no);
    CHECK(inp && out, "cannot read %s / %s", inp_path, out_path);
    if (!inp || !out) {
        free(inp);
        free(out);
        return;
    }
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t n_sep = strlen(sep), n_cases = 0, matched = 0;
    char *p = inp, *line = out;
    for (char *q = p; q; p = q + n_sep) { /* the last text has no separator after it */
        q = strstr(p, sep);
        char *end = q ? q : inp + ni;
        char *eol = strchr(line, '\n');
        CHECK(eol != NULL, "%s: fewer lines than texts", out_path);
        if (!eol) break;
        *eol = 0;
        int32_t *ids;
        char err[G4_ERR_LEN];
        int64_t n = g4_tokenize(v, p, (size_t)(end - p), false, false, &ids, err);
        bool same = n >= 0;
        char *s = line;
        for (int64_t i = 0; same && i < n; i++) {
            char *e;
            long want = strtol(s, &e, 10);
            same = e != s && want == ids[i];
            s = e;
        }
        while (*s == ' ') s++;
        same = same && *s == 0;
        CHECK(same, "llama.cpp vector %zu ('%.*s'): ids differ", n_cases, (int)(end - p), p);
        matched += same;
        n_cases++;
        free(ids);
        line = eol + 1;
        if (!q) break;
    }
    CHECK(n_cases == 46, "expected 46 llama.cpp vectors, found %zu", n_cases);
    printf("llama.cpp ggml-vocab-gemma-4 vectors (nospecial_noparse): %zu/%zu match\n", matched, n_cases);
    free(inp);
    free(out);
}

/* ---- random text and round trips ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11) % n;
}

static size_t put_cp(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 63)), o[2] = (char)(0x80 | (cp & 63)), 3;
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)), o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Strict UTF-8 check, written independently of the detokenizer. */
static bool valid_utf8(const char *s, size_t n) {
    const unsigned char *b = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k;
        if (b[i] < 0x80) cp = b[i], k = 1;
        else if ((b[i] & 0xe0) == 0xc0) cp = b[i] & 0x1f, k = 2;
        else if ((b[i] & 0xf0) == 0xe0) cp = b[i] & 0x0f, k = 3;
        else if ((b[i] & 0xf8) == 0xf0) cp = b[i] & 0x07, k = 4;
        else return false;
        if (i + k > n) return false;
        for (size_t j = 1; j < k; j++) {
            if ((b[i + j] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (b[i + j] & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[k] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return false;
        i += k;
    }
    return true;
}

/* Random text of up to ~300 bytes: ASCII, whitespace runs, control
 * characters, emoji, CJK, Hangul, combining marks, special-token texts and,
 * if invalid, broken UTF-8. U+2581 is left out: it decodes to a space. */
static size_t random_text(char *o, const g4_vocab *v, bool invalid) {
    static const char *const specials[] = {"<bos>", "<eos>", "<|turn>", "<turn|>", "<|\"|>", "<|tool_call>",
                                           "<|tool_response>", "<|channel>", "<pad>", "<0x41>", "</s>"};
    size_t n = 0, parts = 1 + rnd(24);
    (void)v;
    for (size_t p = 0; p < parts; p++) {
        switch (rnd(invalid ? 12 : 10)) {
        case 0: for (uint32_t k = 1 + rnd(20); k--;) o[n++] = ' '; break;
        case 1: for (uint32_t k = 1 + rnd(6); k--;) o[n++] = "\n\t\r"[rnd(3)]; break;
        case 2: o[n++] = (char)(rnd(2) ? 1 + rnd(31) : 0x7f); break;
        case 3: n += put_cp(o + n, 0x1f600 + rnd(80)); break;
        case 4: n += put_cp(o + n, 0x4e00 + rnd(0x5000)); break;
        case 5: n += put_cp(o + n, 0xac00 + rnd(11172)); break;
        case 6: n += put_cp(o + n, 'a' + rnd(26)), n += put_cp(o + n, 0x300 + rnd(0x70)); break;
        case 7: {
            const char *s = specials[rnd(sizeof specials / sizeof specials[0])];
            memcpy(o + n, s, strlen(s));
            n += strlen(s);
            break;
        }
        case 8: n += put_cp(o + n, 0x80 + rnd(0x2000 - 0x80)); break;
        case 9: for (uint32_t k = 1 + rnd(12); k--;) o[n++] = (char)(0x21 + rnd(94)); break;
        case 10: o[n++] = (char)(0x80 + rnd(128)); break;          /* stray byte */
        default: n += put_cp(o + n, 0x800 + rnd(0xc000)) - 1; break; /* cut-off sequence */
        }
    }
    return n;
}

/* decode(encode(s)) == s, by whole pieces and by the streaming decoder. */
static bool round_trip(const g4_vocab *v, const char *s, size_t n, bool parse_special, bool check_chunks) {
    int32_t *ids;
    char err[G4_ERR_LEN];
    int64_t k = g4_tokenize(v, s, n, false, parse_special, &ids, err);
    if (k < 0) return false;
    size_t cap = g4_vocab_max_piece(v) + G4_DETOK_HELD;
    char *whole = malloc(4 * n + 16), *stream = malloc(4 * n + 16 + cap), *chunk = malloc(cap);
    size_t nw = 0, ns = 0;
    bool ok = true;
    g4_detok d;
    g4_detok_init(&d, v, parse_special);
    for (int64_t i = 0; i < k && nw <= 4 * n; i++) {
        nw += g4_token_to_piece(v, ids[i], parse_special, whole + nw, 4 * n + 16 - nw);
        size_t c = g4_detok_push(&d, ids[i], chunk, cap);
        ok = ok && c <= cap && (!check_chunks || valid_utf8(chunk, c));
        if (c <= cap) memcpy(stream + ns, chunk, c), ns += c;
    }
    ns += g4_detok_flush(&d, stream + ns, cap);
    ok = ok && nw == n && !memcmp(whole, s, n) && ns == n && !memcmp(stream, s, n);
    free(ids);
    free(whole);
    free(stream);
    free(chunk);
    return ok;
}

static void test_round_trips(const g4_vocab *v, const char *label) {
    char text[2048];
    int fails_valid = 0, fails_invalid = 0, fails_parse = 0;
    for (int i = 0; i < 400; i++) {
        size_t n = random_text(text, v, false);
        fails_valid += !round_trip(v, text, n, false, true);
        fails_parse += !round_trip(v, text, n, true, true);
        do /* U+2581 made of stray bytes would decode to ' ' */
            n = random_text(text, v, true);
        while (memmem(text, n, "\xe2\x96\x81", 3));
        fails_invalid += !round_trip(v, text, n, false, false);
    }
    CHECK(fails_valid == 0, "%s: %d of 400 valid UTF-8 texts do not round-trip (noparse)", label, fails_valid);
    CHECK(fails_parse == 0, "%s: %d of 400 valid UTF-8 texts do not round-trip (parse, rendered)", label, fails_parse);
    CHECK(fails_invalid == 0, "%s: %d of 400 texts with invalid bytes do not round-trip", label, fails_invalid);
    static const char *const fixed[] = {"", " ", "\n\n\n\n\n", ("a\xff\xfe" "b"), "\xe2\x82", "\xf0\x9f\x98",
                                        "caf\xc3\xa9\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9",
                                        "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80", "                                        x"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        CHECK(round_trip(v, fixed[i], strlen(fixed[i]), false, false), "%s: fixed text %zu does not round-trip", label, i);
}

/* ---- streaming detokenizer on pieces split inside characters ---- */

static void test_detok(const g4_vocab *v) {
    int32_t e2 = g4_vocab_find(v, "<0xE2>", 6), x82 = g4_vocab_find(v, "<0x82>", 6), xac = g4_vocab_find(v, "<0xAC>", 6);
    int32_t ff = g4_vocab_find(v, "<0xFF>", 6), a = g4_vocab_find(v, "<0x41>", 6);
    CHECK(e2 >= 0 && x82 >= 0 && xac >= 0 && ff >= 0 && a >= 0, "byte tokens missing");
    char out[256];
    g4_detok d;
    g4_detok_init(&d, v, false);
    CHECK(g4_detok_push(&d, e2, out, sizeof out) == 0, "a lead byte alone must be held");
    CHECK(g4_detok_push(&d, x82, out, sizeof out) == 0, "two bytes of three must be held");
    size_t n = g4_detok_push(&d, xac, out, sizeof out);
    CHECK(n == 3 && !memcmp(out, "\xe2\x82\xac", 3), "euro sign not assembled (%zu bytes)", n);
    n = g4_detok_push(&d, ff, out, sizeof out);
    CHECK(n == 1 && (unsigned char)out[0] == 0xff, "0xFF can never be valid and must pass at once");
    CHECK(g4_detok_push(&d, e2, out, sizeof out) == 0, "lead byte held again");
    n = g4_detok_push(&d, a, out, sizeof out);
    CHECK(n == 2 && !memcmp(out, "\xe2" "A", 2), "broken sequence passed through with the next byte");
    CHECK(g4_detok_push(&d, e2, out, sizeof out) == 0 && g4_detok_flush(&d, out, sizeof out) == 1 &&
              (unsigned char)out[0] == 0xe2, "flush writes the held byte");
    n = g4_detok_push(&d, e2, out, 0);
    CHECK(n == 1, "too small a buffer reports the size needed");
    CHECK(g4_detok_flush(&d, out, sizeof out) == 0, "a refused push leaves nothing held");
}

/* ---- GGUF vocabularies built in memory ---- */

typedef struct gbuf {
    unsigned char *b;
    size_t n, cap;
    uint64_t n_kv;
} gbuf;

static void put(gbuf *g, const void *p, size_t n) {
    if (g->n + n > g->cap) g->b = realloc(g->b, g->cap = 2 * (g->n + n) + 256);
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void put_u32(gbuf *g, uint32_t v) { put(g, &v, 4); }
static void put_u64(gbuf *g, uint64_t v) { put(g, &v, 8); }
static void put_str(gbuf *g, const char *s) { put_u64(g, strlen(s)), put(g, s, strlen(s)); }
static void kv_head(gbuf *g, const char *key, uint32_t type) { put_str(g, key), put_u32(g, type), g->n_kv++; }
static void kv_str(gbuf *g, const char *key, const char *s) { kv_head(g, key, GGUF_TYPE_STRING), put_str(g, s); }
static void kv_u32(gbuf *g, const char *key, uint32_t v) { kv_head(g, key, GGUF_TYPE_UINT32), put_u32(g, v); }
static void kv_strs(gbuf *g, const char *key, const char *const *s, size_t n) {
    kv_head(g, key, GGUF_TYPE_ARRAY), put_u32(g, GGUF_TYPE_STRING), put_u64(g, n);
    for (size_t i = 0; i < n; i++) put_str(g, s[i]);
}
static void kv_nums(gbuf *g, const char *key, uint32_t elem, const void *data, size_t n) {
    kv_head(g, key, GGUF_TYPE_ARRAY), put_u32(g, elem), put_u64(g, n), put(g, data, 4 * n);
}

/* The finished file: header, then the key-values, no tensors. */
static unsigned char *g4_gguf_bytes(gbuf *g, size_t *size) {
    gbuf f = {0};
    put(&f, "GGUF", 4), put_u32(&f, 3), put_u64(&f, 0), put_u64(&f, g->n_kv), put(&f, g->b, g->n);
    free(g->b);
    *size = f.n;
    return f.b;
}

/* A tiny vocabulary description; the malformed cases change one thing. */
typedef struct vspec {
    const char *model;
    const char *const *tokens;
    size_t n_tokens;
    const int32_t *types;
    size_t n_types;
    const float *scores;
    size_t n_scores;
    const char *const *merges;
    size_t n_merges;
    uint32_t bos;          /* UINT32_MAX: key absent */
    bool types_as_f32, tokens_as_i32;
} vspec;

static g4_vocab *load_spec(const vspec *s, char *err) {
    gbuf g = {0};
    if (s->model) kv_str(&g, "tokenizer.ggml.model", s->model);
    if (s->tokens_as_i32) kv_nums(&g, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, s->types, s->n_types);
    else if (s->tokens) kv_strs(&g, "tokenizer.ggml.tokens", s->tokens, s->n_tokens);
    if (s->types)
        kv_nums(&g, "tokenizer.ggml.token_type", s->types_as_f32 ? GGUF_TYPE_FLOAT32 : GGUF_TYPE_INT32, s->types, s->n_types);
    if (s->scores) kv_nums(&g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, s->scores, s->n_scores);
    if (s->merges) kv_strs(&g, "tokenizer.ggml.merges", s->merges, s->n_merges);
    if (s->bos != UINT32_MAX) kv_u32(&g, "tokenizer.ggml.bos_token_id", s->bos);
    size_t size;
    unsigned char *bytes = g4_gguf_bytes(&g, &size);
    g4_gguf_file *f = g4_gguf_open_memory(bytes, size, "mem.gguf", err);
    g4_vocab *v = f ? g4_vocab_load(f, err) : NULL;
    g4_gguf_close(f);
    free(bytes);
    return v;
}

static const char *const bpe_tokens[] = {"<pad>", "<eos>", "<bos>", "a", "b", "ab", "\xe2\x96\x81", "<0x41>"};
static const int32_t bpe_types[] = {3, 3, 3, 1, 1, 1, 1, 6};
static const float bpe_scores[] = {0, 0, 0, 0, 0, 0, 0, 0};
static const char *const bpe_merges[] = {"a b"};

static vspec good_bpe(void) {
    return (vspec){"gemma4", bpe_tokens, 8, bpe_types, 8, bpe_scores, 8, bpe_merges, 1, 2, false, false};
}

static void expect_refused(vspec s, const char *what, const char *needle) {
    char err[G4_ERR_LEN] = "";
    g4_vocab *v = load_spec(&s, err);
    CHECK(v == NULL, "%s: malformed vocabulary was accepted", what);
    CHECK(!strncmp(err, "mem.gguf: ", 10) && strstr(err, needle) && !strchr(err, '\n'),
          "%s: error should name the file and '%s', got '%s'", what, needle, err);
    g4_vocab_free(v);
}

static void test_malformed(void) {
    char err[G4_ERR_LEN];
    vspec s = good_bpe();
    g4_vocab *v = load_spec(&s, err);
    CHECK(v != NULL, "the well-formed base vocabulary must load: %s", err);
    if (v) {
        int32_t *ids;
        int64_t n = g4_tokenize(v, "ab aA", 5, true, true, &ids, err);
        CHECK(n == 5 && ids[0] == 2 && ids[1] == 5 && ids[2] == 6 && ids[3] == 3 && ids[4] == 7,
              "base vocabulary: 'ab aA' should be 2 5 6 3 7");
        free(ids);
    }
    g4_vocab_free(v);

    s = good_bpe(), s.tokens = NULL, s.n_tokens = 0;
    expect_refused(s, "missing tokens", "tokenizer.ggml.tokens");
    s = good_bpe(), s.model = NULL;
    expect_refused(s, "missing model", "tokenizer.ggml.model");
    s = good_bpe(), s.model = "bert";
    expect_refused(s, "unknown model", "bert");
    s = good_bpe(), s.n_types = 7;
    expect_refused(s, "types shorter than tokens", "token_type");
    s = good_bpe(), s.n_scores = 5;
    expect_refused(s, "scores shorter than tokens", "scores");
    s = good_bpe(), s.types_as_f32 = true;
    expect_refused(s, "token_type of f32", "token_type");
    s = good_bpe(), s.tokens_as_i32 = true;
    expect_refused(s, "tokens of i32", "tokenizer.ggml.tokens");
    static const char *const unknown_merge[] = {"a b", "ab c"};
    s = good_bpe(), s.merges = unknown_merge, s.n_merges = 2;
    expect_refused(s, "merge with unknown token", "merge 1");
    static const char *const spaceless[] = {"ab"};
    s = good_bpe(), s.merges = spaceless;
    expect_refused(s, "merge without space", "no space");
    s = good_bpe(), s.merges = NULL, s.n_merges = 0;
    expect_refused(s, "gemma4 without merges", "merges");
    s = good_bpe(), s.bos = 8;
    expect_refused(s, "bos out of range", "bos_token_id");
    static const char *const dup[] = {"<pad>", "<eos>", "<bos>", "a", "b", "a", "\xe2\x96\x81", "<0x41>"};
    s = good_bpe(), s.tokens = dup;
    expect_refused(s, "duplicate token", "duplicates");
    static const int32_t bad_byte[] = {3, 3, 3, 1, 1, 6, 1, 6};
    s = good_bpe(), s.types = bad_byte;
    expect_refused(s, "byte token not <0xHH>", "<0xHH>");
    static const int32_t bad_type[] = {3, 3, 3, 1, 9, 1, 1, 6};
    s = good_bpe(), s.types = bad_type;
    expect_refused(s, "token type 9", "token_type 9");
}

/* A SentencePiece vocabulary: merging goes by score, highest first, and a
 * space is put in front of text that follows BOS or a special token. */
static void test_spm(void) {
    static const char *const tokens[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "c", "ab", "bc",
                                         ("\xe2\x96\x81" "a"), "<0x41>"};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6};
    static const float scores[] = {0, 0, 0, -1, -1, -1, -1, -3, -2, -2.5f, 0};
    vspec s = {"llama", tokens, 11, types, 11, scores, 11, NULL, 0, UINT32_MAX, false, false};
    char err[G4_ERR_LEN];
    g4_vocab *v = load_spec(&s, err);
    CHECK(v != NULL, "llama vocabulary: %s", err);
    if (!v) return;
    CHECK(g4_vocab_bos(v) == 1 && g4_vocab_eos(v) == 2, "llama defaults: bos 1, eos 2");
    CHECK(g4_vocab_is_eog(v, 2) && !g4_vocab_is_eog(v, 1), "</s> is EOG without <|tool_response>");
    static const struct {
        const char *text;
        bool add_special, parse_special;
        int32_t ids[8];
        int64_t n;
    } cases[] = {
        /* "▁abc": bc (-2) first, then ▁a (-2.5); abc is not a token */
        {"abc", true, true, {1, 9, 8}, 3},
        /* "▁ab": ▁a (-2.5) beats ab (-3), leaving b */
        {"ab", true, true, {1, 9, 5}, 3},
        {"ab", false, true, {9, 5}, 2},
        /* byte fallback for A; Z has no byte token and is dropped */
        {"A", true, true, {1, 3, 10}, 3},
        {"Z", true, true, {1, 3}, 2},
        /* after a special token the space prefix comes back */
        {"<s>ab", true, true, {1, 1, 9, 5}, 4},
        {"b c", false, false, {3, 5, 3, 6}, 4},
        {"", true, true, {1}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *ids;
        int64_t n = g4_tokenize(v, cases[i].text, strlen(cases[i].text), cases[i].add_special,
                                cases[i].parse_special, &ids, err);
        bool same = n == cases[i].n && (n == 0 || !memcmp(ids, cases[i].ids, (size_t)n * sizeof *ids));
        CHECK(same, "llama vocabulary case %zu ('%s'): got %lld ids", i, cases[i].text, (long long)n);
        free(ids);
    }
    char piece[16];
    size_t n = g4_token_to_piece(v, 9, false, piece, sizeof piece);
    CHECK(n == 2 && !memcmp(piece, " a", 2), "llama piece of token 9 is ' a'");
    g4_vocab_free(v);
}

/* ---- pieces and end-of-generation on the real vocabulary ---- */

static void test_real_details(const g4_vocab *v) {
    int n_eog = 0;
    for (int32_t id = 0; id < g4_vocab_size(v); id++) n_eog += g4_vocab_is_eog(v, id);
    CHECK(n_eog == 3 && g4_vocab_is_eog(v, 1) && g4_vocab_is_eog(v, 106) && g4_vocab_is_eog(v, 50),
          "EOG set should be {1, 50, 106}, has %d ids", n_eog);
    CHECK(g4_vocab_find(v, "</s>", 4) == 212 && !g4_vocab_is_eog(v, 212) && !g4_vocab_is_control(v, 212),
          "</s> (212) is in the vocabulary but neither EOG nor control");
    CHECK(g4_vocab_is_control(v, 50), "<|tool_response> is forced to control");
    CHECK(g4_vocab_size(v) == 262144 && g4_vocab_bos(v) == 2 && g4_vocab_eos(v) == 1, "size/bos/eos");
    static const struct {
        int32_t id;
        bool special;
        const char *piece;
    } pieces[] = {
        {2, false, ""},           {2, true, "<bos>"},     {48, false, "<|tool_call>"}, {50, false, ""},
        {50, true, "<|tool_response>"}, {106, false, ""}, {236743, false, " "},      {138, false, "  "},
        {107, false, "\n"},       {9259, false, "Hello"}, {26352, false, " Hello"},   {-1, true, ""},
        {262144, true, ""},
    };
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        char buf[64];
        size_t n = g4_token_to_piece(v, pieces[i].id, pieces[i].special, buf, sizeof buf);
        CHECK(n == strlen(pieces[i].piece) && !memcmp(buf, pieces[i].piece, n), "piece of %d (special %d)",
              pieces[i].id, pieces[i].special);
    }
    int32_t b41 = g4_vocab_find(v, "<0x41>", 6);
    char c;
    CHECK(b41 >= 0 && g4_token_to_piece(v, b41, false, &c, 1) == 1 && c == 'A', "byte token <0x41> is 'A'");
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Tokenizes >= 1 MB built from the fixture texts; prints MB/s. The decoded
 * ids must give back the text (a correctness check, not a timing one). */
static void measure_speed(const g4_vocab *v, const char *fixture_json) {
    size_t len;
    char *js = read_all(fixture_json, &len);
    char err[G4_ERR_LEN] = "";
    g4_json *doc = js ? g4_json_parse(js, len, fixture_json, err) : NULL;
    if (!doc) {
        CHECK(0, "cannot read %s", fixture_json);
        free(js);
        return;
    }
    const g4_json *cases = g4_json_get(doc, "cases");
    size_t cap = (2u << 20) + 4096, n = 0;
    char *text = malloc(cap);
    while (n < (1u << 20) && cases && cases->len) {
        for (size_t c = 0; c < cases->len; c++) {
            const g4_json *t = g4_json_get(&cases->items[c], "text");
            if (!t || strstr(t->str, "\xe2\x96\x81") || n + t->len + 1 > cap) continue; /* U+2581 decodes to ' ' */
            memcpy(text + n, t->str, t->len);
            n += t->len;
            text[n++] = c % 3 ? ' ' : '\n';
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) /* one line of >= 1 MB: the worst case for merging */
            for (size_t i = 0; i < n; i++) text[i] = text[i] == '\n' ? ' ' : text[i];
        int32_t *ids;
        char err[G4_ERR_LEN];
        double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
        int64_t k = g4_tokenize(v, text, n, true, true, &ids, err);
        double wall = seconds(CLOCK_MONOTONIC) - w0, cpu = seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
        CHECK(k > 0, "tokenizing %zu bytes failed: %s", n, err);
        printf("speed (%s): %zu bytes -> %lld tokens: %.1f MB/s by CPU time (%.3f s), %.1f MB/s by wall clock\n",
               pass ? "one line" : "multi-line", n, (long long)k, n / cpu / 1e6, cpu, n / wall / 1e6);
        size_t piece_cap = 4 * n, m = 0;
        char *back = malloc(piece_cap);
        for (int64_t i = 1; i < k && m < piece_cap; i++) m += g4_token_to_piece(v, ids[i], true, back + m, piece_cap - m);
        CHECK(m == n && !memcmp(back, text, n), "the 1 MB text does not decode back to itself");
        free(back);
        free(ids);
    }
    free(text);
    g4_json_free(doc);
    free(js);
}

int main(void) {
    const char *fx = test_fixtures_dir();
    char path[4096], path2[4096], err[G4_ERR_LEN];

    snprintf(path, sizeof path, "%s/tokenizer/synthetic-vocab.gguf", fx);
    g4_gguf_file *f = g4_gguf_open(path, err);
    g4_vocab *syn = f ? g4_vocab_load(f, err) : NULL;
    g4_gguf_close(f); /* the vocabulary keeps its own copies */
    CHECK(syn != NULL, "synthetic vocabulary: %s", err);
    if (syn) {
        snprintf(path, sizeof path, "%s/tokenizer/synthetic.tokens.json", fx);
        run_fixture(syn, path, "synthetic", 42);
        test_round_trips(syn, "synthetic");
        test_detok(syn);
        CHECK(g4_vocab_is_eog(syn, 1) && g4_vocab_is_eog(syn, 19) && g4_vocab_is_eog(syn, 10) && !g4_vocab_is_eog(syn, 2),
              "synthetic EOG: <eos> 1, <turn|> 19, <|tool_response> 10");
    }

    /* the real vocabulary, stored gzipped, unpacked by tests/fixtures.sh */
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-gemma-4.gguf", fx);
    f = g4_gguf_open(path, err);
    g4_vocab *real = f ? g4_vocab_load(f, err) : NULL;
    g4_gguf_close(f);
    CHECK(real != NULL, "real vocabulary: %s", err);
    if (real) {
        snprintf(path, sizeof path, "%s/tokenizer/gemma4-real.tokens.json", fx);
        run_fixture(real, path, "gemma4-real", 88);
        snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-gemma-4.gguf.inp", fx);
        snprintf(path2, sizeof path2, "%s/tokenizer/ggml-vocab-gemma-4.gguf.out", fx);
        run_llama_vectors(real, path, path2);
        test_real_details(real);
        test_round_trips(real, "gemma4-real");
        snprintf(path, sizeof path, "%s/tokenizer/gemma4-real.tokens.json", fx);
        measure_speed(real, path);
    }
    test_spm();
    test_malformed();
    g4_vocab_free(syn);
    g4_vocab_free(real);
    return test_summary("test_tokenizer");
}
