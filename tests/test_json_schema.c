/* JSON Schema -> GBNF (tokenizer/json_schema.c): unsupported keywords are
 * named; hand-picked JSON texts are accepted or refused; and a property
 * test generates ~200 documents by drawing random allowed tokens of a
 * made-up vocabulary under the mask, each of which must parse as JSON
 * (gguf/json.c) and pass a small validator written here from the JSON
 * Schema specification, with the mask compared to g4_grammar_accept on
 * every token at every step of the first runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/json.h"
#include "tests/harness.h"
#include "tokenizer/grammar_impl.h"

static char *convert(const char *schema, char *err) { return g4_json_schema_to_gbnf(schema, strlen(schema), err); }

static void test_errors(void) {
    static const struct {
        const char *schema, *want;
    } bad[] = {
        {"{\"type\":\"string\",\"pattern\":\"^a+$\"}", "keyword 'pattern' is not supported"},
        {"{\"type\":\"integer\",\"minimum\":3}", "keyword 'minimum' is not supported"},
        {"{\"type\":\"object\",\"patternProperties\":{}}", "keyword 'patternProperties' is not supported"},
        {"{\"type\":\"string\",\"format\":\"email\"}", "'format' \"email\" is not supported"},
        {"{\"type\":\"strin\"}", "unknown type \"strin\""},
        {"{\"$ref\":\"http://example.com/s.json\"}", "'$ref' \"http://example.com/s.json\" is not supported"},
        {"{\"$ref\":\"#/$defs/missing\"}", "'$ref' \"#/$defs/missing\" points to nothing"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required property \"b\" is not among"},
        {"false", "the schema false matches nothing"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "'maxItems' 2 is below 'minItems' 3"},
        {"{\"type\":\"string\",\"maxLength\":-1}", "'maxLength' must be a non-negative integer"},
        {"{\"type\":\"array\",\"items\":{\"not\":{}}}", "keyword 'not' is not supported"},
        {"{\"allOf\":[{\"type\":\"string\"}]}", "'allOf' is supported only over object schemas"},
        {"{\"enum\":[]}", "'enum' must be a non-empty array"},
        {"{\"type\":\"object\"", "json schema: line 1"},
        {"[1]", "a schema must be an object or a boolean, not array"},
    };
    char err[G4_ERR_LEN];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcpy(err, "(none)");
        char *g = convert(bad[i].schema, err);
        CHECK(!g && strstr(err, bad[i].want) && !strchr(err, '\n'), "schema %s: got \"%s\", want \"%s\"", bad[i].schema, err,
              bad[i].want);
        free(g);
    }
    /* nesting is capped */
    char deep[4096] = "";
    for (int i = 0; i < 100; i++) strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 100; i++) strcat(deep, "}");
    char *g = convert(deep, err);
    CHECK(!g && strstr(err, "nested deeper than 64"), "100 nested schemas: %s", err);
    free(g);
    /* annotations are ignored, not refused */
    g = convert("{\"title\":\"t\",\"description\":\"d\",\"$schema\":\"x\",\"default\":1,\"examples\":[1],\"type\":\"integer\"}", err);
    CHECK(g != NULL, "annotations: %s", err);
    free(g);
}

/* A vocabulary of the 256 single bytes and an end-of-generation token. */
static g4_grammar_vocab *byte_vocab(void) {
    const char *tok[257];
    size_t len[257];
    uint8_t kind[257];
    static char bytes[256];
    for (int i = 0; i < 256; i++) bytes[i] = (char)i, tok[i] = &bytes[i], len[i] = 1, kind[i] = G4_GTOK_TEXT;
    tok[256] = "", len[256] = 0, kind[256] = G4_GTOK_EOG;
    char err[G4_ERR_LEN];
    return g4_grammar_vocab_from_pieces(tok, len, kind, 257, err);
}

static bool matches(const g4_grammar *g, const g4_grammar_vocab *gv, const char *text) {
    char err[G4_ERR_LEN];
    g4_grammar_state *st = g4_grammar_state_new(g, err);
    bool ok = st != NULL;
    for (const char *p = text; ok && *p; p++) ok = g4_grammar_accept(st, gv, (unsigned char)*p, err) == 0;
    ok = ok && g4_grammar_allows(st, gv, 256);
    g4_grammar_state_free(st);
    return ok;
}

static const struct {
    const char *schema;
    const char *yes[8], *no[8];
} accept_cases[] = {
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},\"required\":[\"b\"],"
     "\"additionalProperties\":false}",
     {"{\"a\":1,\"b\":\"x\"}", "{\"b\":\"\"}", "{ \"a\" : -20 , \"b\" : \"\\u00e9\\n\" }", "{\n  \"b\": \"q\"\n}", NULL},
     {"{\"a\":1}", "{\"b\":\"x\",\"a\":1}", "{\"b\":\"x\",\"c\":1}", "{\"a\":01,\"b\":\"x\"}", "{\"b\":\"x\",}", "{}", NULL}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":{\"type\":\"boolean\"}}",
     {"{}", "{\"a\":1}", "{\"a\":1,\"z\":true}", "{\"q\":false,\"r\":true}", "{\"ab\":true,\"\":false}", NULL},
     {"{\"z\":1}", "{\"a\":true}", "{\"a\":1,\"a\":true}", NULL}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":1,\"maxItems\":3}",
     {"[1]", "[1.5,-2e10,0]", "[ 0.25 , 3 ]", NULL}, {"[]", "[1,2,3,4]", "[1,]", "[.5]", "[\"1\"]", NULL}},
    {"{\"enum\":[\"a\\\"b\",1.5,null,[1,{\"k\":true}]]}", {"\"a\\\"b\"", "1.5", "null", "[1,{\"k\":true}]", NULL},
     {"\"a\"", "1.50", "[1,{\"k\":false}]", NULL}},
    {"{\"anyOf\":[{\"type\":\"string\",\"maxLength\":2},{\"const\":7},{\"type\":\"null\"}]}",
     {"\"ab\"", "\"\"", "7", "null", "\"\\\"\\\\\"", NULL}, {"\"abc\"", "8", "true", NULL}},
    {"{\"type\":\"array\",\"prefixItems\":[{\"type\":\"boolean\"},{\"type\":\"string\",\"format\":\"date\"}]}",
     {"[true,\"2024-02-29\"]", NULL}, {"[true]", "[true,\"2024-13-01\"]", "[true,\"2024-02-29\",1]", NULL}},
    {"{\"type\":\"string\",\"format\":\"uuid\"}", {"\"123e4567-e89b-12d3-a456-426614174000\"", NULL},
     {"\"123e4567e89b12d3a456426614174000\"", NULL}},
    {"{\"allOf\":[{\"properties\":{\"x\":{\"type\":\"integer\"}},\"required\":[\"x\"]},{\"$ref\":\"#/definitions/y\"}],"
     "\"definitions\":{\"y\":{\"type\":\"object\",\"properties\":{\"y\":{\"type\":\"boolean\"}},\"required\":[\"y\"]}},"
     "\"additionalProperties\":false}",
     {"{\"x\":1,\"y\":true}", NULL}, {"{\"x\":1}", "{\"y\":true}", NULL}},
    {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", {"\"ab\"", "\"\xe4\xb8\xad\xe6\x96\x87\"", "\"a\\u00e9\\n\"", "\"\\ud83d\\ude00x\"", NULL},
     {"\"a\"", "\"abcd\"", "\"\\ud83d\"", "\"a\nb\"", NULL}},
};

static void test_accept(const g4_grammar_vocab *gv) {
    char err[G4_ERR_LEN];
    for (size_t c = 0; c < sizeof accept_cases / sizeof *accept_cases; c++) {
        char *text = convert(accept_cases[c].schema, err);
        g4_grammar *g = text ? g4_grammar_parse(text, strlen(text), NULL, err) : NULL;
        CHECK(g != NULL, "schema %zu: %s", c, err);
        for (int i = 0; g && i < 8 && accept_cases[c].yes[i]; i++)
            CHECK(matches(g, gv, accept_cases[c].yes[i]), "schema %zu must accept %s", c, accept_cases[c].yes[i]);
        for (int i = 0; g && i < 8 && accept_cases[c].no[i]; i++)
            CHECK(!matches(g, gv, accept_cases[c].no[i]), "schema %zu must refuse %s", c, accept_cases[c].no[i]);
        g4_grammar_free(g);
        free(text);
    }
}

/* --- an independent validator for the subset the property test uses --- */

static bool json_equal(const g4_json *a, const g4_json *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case G4_JSON_NULL: return true;
    case G4_JSON_BOOL: return a->boolean == b->boolean;
    case G4_JSON_NUMBER: return a->number == b->number;
    case G4_JSON_STRING: return a->len == b->len && !memcmp(a->str, b->str, a->len);
    case G4_JSON_ARRAY:
        if (a->len != b->len) return false;
        for (size_t i = 0; i < a->len; i++)
            if (!json_equal(&a->items[i], &b->items[i])) return false;
        return true;
    case G4_JSON_OBJECT:
        if (a->len != b->len) return false;
        for (size_t i = 0; i < a->len; i++) {
            const g4_json *o = g4_json_get(b, a->keys[i].str);
            if (!o || !json_equal(&a->items[i], o)) return false;
        }
        return true;
    }
    return false;
}

static size_t code_points(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

static bool is_type(const g4_json *v, const char *t) {
    if (!strcmp(t, "integer")) return v->type == G4_JSON_NUMBER && v->number == floor(v->number);
    if (!strcmp(t, "number")) return v->type == G4_JSON_NUMBER;
    return !strcmp(t, g4_json_type_name(v->type)) || (!strcmp(t, "boolean") && v->type == G4_JSON_BOOL);
}

static bool valid(const g4_json *v, const g4_json *s, const g4_json *root, int depth) {
    if (depth > 100) return false;
    const g4_json *k;
    if ((k = g4_json_get_type(s, "$ref", G4_JSON_STRING))) {
        const char *name = strrchr(k->str, '/') + 1;
        return valid(v, g4_json_get(g4_json_get(root, "$defs"), name), root, depth + 1);
    }
    if ((k = g4_json_get(s, "const")) && !json_equal(v, k)) return false;
    if ((k = g4_json_get(s, "enum"))) {
        bool any = false;
        for (size_t i = 0; i < k->len; i++) any |= json_equal(v, &k->items[i]);
        if (!any) return false;
    }
    if ((k = g4_json_get(s, "anyOf"))) {
        bool any = false;
        for (size_t i = 0; i < k->len; i++) any |= valid(v, &k->items[i], root, depth + 1);
        if (!any) return false;
    }
    if ((k = g4_json_get(s, "type"))) {
        bool any = k->type == G4_JSON_STRING && is_type(v, k->str);
        for (size_t i = 0; k->type == G4_JSON_ARRAY && i < k->len; i++) any |= is_type(v, k->items[i].str);
        if (!any) return false;
    }
    if (v->type == G4_JSON_STRING) {
        size_t n = code_points(v->str, v->len);
        if ((k = g4_json_get(s, "minLength")) && n < (size_t)k->integer) return false;
        if ((k = g4_json_get(s, "maxLength")) && n > (size_t)k->integer) return false;
        if ((k = g4_json_get_type(s, "format", G4_JSON_STRING)) && !strcmp(k->str, "uuid")) {
            if (v->len != 36) return false;
            for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                char c = v->str[i];
                if (dash ? c != '-' : !((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'))) return false;
            }
        }
    }
    if (v->type == G4_JSON_ARRAY) {
        if ((k = g4_json_get(s, "minItems")) && v->len < (size_t)k->integer) return false;
        if ((k = g4_json_get(s, "maxItems")) && v->len > (size_t)k->integer) return false;
        const g4_json *prefix = g4_json_get(s, "prefixItems"), *items = g4_json_get(s, "items");
        for (size_t i = 0; i < v->len; i++) {
            const g4_json *sub = prefix && i < prefix->len ? &prefix->items[i] : items;
            if (sub && !valid(&v->items[i], sub, root, depth + 1)) return false;
        }
    }
    if (v->type == G4_JSON_OBJECT) {
        const g4_json *props = g4_json_get(s, "properties"), *req = g4_json_get(s, "required");
        const g4_json *add = g4_json_get(s, "additionalProperties");
        for (size_t i = 0; req && i < req->len; i++)
            if (!g4_json_get(v, req->items[i].str)) return false;
        for (size_t i = 0; i < v->len; i++) {
            const g4_json *sub = g4_json_get(props, v->keys[i].str);
            if (!sub && add && add->type == G4_JSON_BOOL && !add->boolean) return false;
            if (!sub && add && add->type == G4_JSON_OBJECT) sub = add;
            if (sub && !valid(&v->items[i], sub, root, depth + 1)) return false;
        }
    }
    return true;
}

static void test_validator(void) { /* the validator itself, on hand-made cases */
    char err[G4_ERR_LEN];
    const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":2}},"
                         "\"required\":[\"a\"],\"additionalProperties\":false}";
    g4_json *s = g4_json_parse(schema, strlen(schema), "s", err);
    const char *good = "{\"a\":\"\xc3\xa9x\"}", *bad[] = {"{\"a\":\"xyz\"}", "{}", "{\"a\":\"x\",\"b\":1}", "[]"};
    g4_json *v = g4_json_parse(good, strlen(good), "v", err);
    CHECK(s && v && valid(v, s, s, 0), "validator accepts %s", good);
    g4_json_free(v);
    for (int i = 0; i < 4; i++) {
        v = g4_json_parse(bad[i], strlen(bad[i]), "v", err);
        CHECK(s && v && !valid(v, s, s, 0), "validator refuses %s", bad[i]);
        g4_json_free(v);
    }
    g4_json_free(s);
}

/* --- random generation under the mask --------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t next_rand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

enum { N_RANDOM = 3000, N_VOCAB = 256 + N_RANDOM + 1, EOG = N_VOCAB - 1 };

/* 256 single bytes, then random pieces built of JSON-ish fragments (some
 * cut inside a UTF-8 character), then the end-of-generation token. */
static g4_grammar_vocab *random_vocab(char **pieces, size_t *len) {
    static const char *const frag[] = {"{", "}", "[", "]", "\"", ":", ",", " ", "\n", "\t", "\\", "u", "0", "1", "7", "9",
                                       "-", ".", "e", "E", "+", "a", "b", "n", "t", "r", "f", "x", "\xc3\xa9",
                                       "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "null", "true", "false", "name", "tags",
                                       "red", "green", "blue", "age", "ok", "id", "v", "kids", "\": ", "\", \"", "d8"};
    const char *tok[N_VOCAB];
    uint8_t kind[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) {
        pieces[i] = malloc(64);
        kind[i] = G4_GTOK_TEXT;
        if (i < 256) pieces[i][0] = (char)i, len[i] = 1;
        else if (i == EOG) len[i] = 0, kind[i] = G4_GTOK_EOG;
        else {
            len[i] = 0;
            for (int k = 1 + (int)(next_rand() % 4); k > 0; k--) {
                const char *f = frag[next_rand() % (sizeof frag / sizeof *frag)];
                memcpy(pieces[i] + len[i], f, strlen(f));
                len[i] += strlen(f);
            }
            if (next_rand() % 8 == 0 && len[i] > 1) len[i]--; /* maybe through a character */
        }
        tok[i] = pieces[i];
    }
    char err[G4_ERR_LEN];
    g4_grammar_vocab *gv = g4_grammar_vocab_from_pieces(tok, len, kind, N_VOCAB, err);
    CHECK(gv != NULL, "random vocabulary: %s", err);
    return gv;
}

static const char *const property_schemas[] = {
    ("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8},"
     "\"age\":{\"type\":\"integer\"},\"score\":{\"type\":\"number\"},\"ok\":{\"type\":\"boolean\"},"
     "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"red\",\"green\",\"blue\"]},\"maxItems\":3},"
     "\"nick\":{\"type\":[\"string\",\"null\"],\"maxLength\":4},\"id\":{\"type\":\"string\",\"format\":\"uuid\"}},"
     "\"required\":[\"name\",\"age\",\"ok\"],\"additionalProperties\":false}"),
    ("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
     "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":1}},\"required\":[\"v\"],"
     "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}"),
    ("{\"type\":\"array\",\"prefixItems\":[{\"const\":\"x\"},{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":3}]},"
     "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"enum\":[1,\"t\",false]}},\"required\":[\"a\"]}]}"),
};

static void test_property(const g4_grammar_vocab *gv, char **pieces, const size_t *len) {
    char err[G4_ERR_LEN];
    int runs = 0, finished = 0, parsed = 0, validated = 0, compared_steps = 0, disagreements = 0, mask_vs_allows = 0;
    float logits[N_VOCAB];
    int32_t allowed[N_VOCAB];
    for (size_t sc = 0; sc < sizeof property_schemas / sizeof *property_schemas; sc++) {
        const char *schema_text = property_schemas[sc];
        char *text = convert(schema_text, err);
        g4_grammar *g = text ? g4_grammar_parse(text, strlen(text), NULL, err) : NULL;
        g4_json *schema = g4_json_parse(schema_text, strlen(schema_text), "schema", err);
        g4_grammar_state *base = g ? g4_grammar_state_new(g, err) : NULL;
        CHECK(base && schema, "property schema %zu: %s", sc, err);
        for (int run = 0; base && schema && run < 67; run++, runs++) {
            g4_grammar_state *st = g4_grammar_state_clone(base);
            char out[65536];
            size_t n_out = 0;
            bool done = false;
            for (int step = 0; step < 4000 && !done; step++) {
                for (int t = 0; t < N_VOCAB; t++) logits[t] = 0;
                g4_grammar_mask(st, gv, logits);
                int n_allowed = 0;
                for (int t = 0; t < EOG; t++)
                    if (logits[t] == 0) allowed[n_allowed++] = t;
                if (run < 10) { /* every token: the mask, allows and accept agree */
                    compared_steps++;
                    for (int t = 0; t < N_VOCAB; t++) {
                        g4_grammar_state *c = g4_grammar_state_clone(st);
                        bool acc = g4_grammar_accept(c, gv, t, err) == 0;
                        g4_grammar_state_free(c);
                        disagreements += acc != (logits[t] == 0);
                        mask_vs_allows += g4_grammar_allows(st, gv, t) != (logits[t] == 0);
                    }
                }
                int32_t pick;
                if (logits[EOG] == 0 && (n_allowed == 0 || next_rand() % 2)) pick = EOG;
                else if (n_allowed) pick = allowed[next_rand() % (uint32_t)n_allowed];
                else break; /* a dead end: counted as unfinished */
                if (g4_grammar_accept(st, gv, pick, err)) break;
                if (pick == EOG) done = true;
                else if (n_out + len[pick] < sizeof out) memcpy(out + n_out, pieces[pick], len[pick]), n_out += len[pick];
            }
            finished += done;
            g4_json *doc = done ? g4_json_parse(out, n_out, "generated", err) : NULL;
            parsed += doc != NULL;
            bool ok = doc && valid(doc, schema, schema, 0);
            validated += ok;
            if (done && !ok) fprintf(stderr, "schema %zu run %d: %s: %.*s\n", sc, run, doc ? "invalid" : err, (int)n_out, out);
            g4_json_free(doc);
            g4_grammar_state_free(st);
        }
        g4_grammar_state_free(base);
        g4_json_free(schema);
        g4_grammar_free(g);
        free(text);
    }
    CHECK(runs == 201 && finished == runs, "%d of %d runs ended with end-of-generation", finished, runs);
    CHECK(parsed == runs && validated == runs, "%d parsed as JSON, %d valid against the schema, of %d", parsed, validated, runs);
    CHECK(compared_steps > 100 && disagreements == 0 && mask_vs_allows == 0,
          "mask vs accept over %d steps x %d tokens: %d disagreements (%d with allows)", compared_steps, N_VOCAB, disagreements,
          mask_vs_allows);
}

int main(void) {
    test_errors();
    test_validator();
    g4_grammar_vocab *bv = byte_vocab();
    CHECK(bv != NULL, "byte vocabulary");
    if (bv) test_accept(bv);
    g4_grammar_vocab_free(bv);
    static char *pieces[N_VOCAB];
    static size_t len[N_VOCAB];
    g4_grammar_vocab *gv = random_vocab(pieces, len);
    if (gv) test_property(gv, pieces, len);
    g4_grammar_vocab_free(gv);
    for (int i = 0; i < N_VOCAB; i++) free(pieces[i]);
    return test_summary("test_json_schema");
}
