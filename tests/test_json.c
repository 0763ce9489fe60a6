/* gguf/json.c: values, escapes, numbers, lookup, and every kind of input it
 * must refuse with a located message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "gguf/json.h"
#include "tests/harness.h"

static g4_json *parse(const char *s, char *err) { return g4_json_parse(s, strlen(s), "t.json", err); }

static void test_values(void) {
    char err[G4_ERR_LEN];
    g4_json *j = parse(" {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"b\": {\"c\": {}}, \"d\": [] } \n", err);
    CHECK(j && j->type == G4_JSON_OBJECT && j->len == 3, "object parsed: %s", j ? "" : err);
    const g4_json *a = g4_json_get_type(j, "a", G4_JSON_ARRAY);
    CHECK(a && a->len == 6, "array of 6");
    if (a && a->len == 6) {
        CHECK(a->items[0].type == G4_JSON_NUMBER && a->items[0].is_int && a->items[0].integer == 1, "1");
        CHECK(a->items[1].number == -2500.0 && !a->items[1].is_int, "-2.5e3 = %g", a->items[1].number);
        CHECK(a->items[2].type == G4_JSON_BOOL && a->items[2].boolean && !a->items[3].boolean, "booleans");
        CHECK(a->items[4].type == G4_JSON_NULL, "null");
        CHECK(a->items[5].type == G4_JSON_STRING && !strcmp(a->items[5].str, "x"), "string");
    }
    const g4_json *c = g4_json_get(g4_json_get(j, "b"), "c");
    CHECK(c && c->type == G4_JSON_OBJECT && c->len == 0, "nested empty object");
    CHECK(g4_json_get(j, "zz") == NULL && g4_json_get(a, "a") == NULL, "absent key, non-object lookup");
    CHECK(g4_json_get_type(j, "a", G4_JSON_OBJECT) == NULL, "typed lookup refuses another type");
    g4_json_free(j);

    /* lookup in a large object (binary search over sorted keys), order kept */
    char *big = malloc(200000);
    size_t n = (size_t)sprintf(big, "{");
    for (int i = 0; i < 5000; i++) n += (size_t)sprintf(big + n, "%s\"k%d\":%d", i ? "," : "", 4999 - i, i);
    sprintf(big + n, "}");
    j = parse(big, err);
    int ok = j && j->len == 5000;
    for (int i = 0; ok && i < 5000; i += 7) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        const g4_json *v = g4_json_get(j, key);
        ok = v && v->integer == 4999 - i;
    }
    CHECK(ok, "5000-key object lookups");
    CHECK(j && !strcmp(j->keys[0].str, "k4999") && j->items[0].integer == 0, "document order kept");
    g4_json_free(j);
    free(big);
}

static void test_strings(void) {
    char err[G4_ERR_LEN];
    g4_json *j = parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\\u0000z\"", err);
    const char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z";
    CHECK(j && j->type == G4_JSON_STRING && j->len == sizeof want - 1 && !memcmp(j->str, want, sizeof want - 1),
          "escapes decoded: %s", j ? "" : err);
    g4_json_free(j);
    j = parse("\"\xe2\x96\x81the \xf0\x9f\x98\x80\"", err);
    CHECK(j && !strcmp(j->str, "\xe2\x96\x81the \xf0\x9f\x98\x80"), "raw UTF-8 kept");
    g4_json_free(j);
    /* keys with escapes and embedded NUL are distinct keys */
    j = parse("{\"a\\u0000b\":1,\"a\":2}", err);
    CHECK(j && j->len == 2 && g4_json_get(j, "a")->integer == 2 && j->keys[0].len == 3, "NUL inside a key");
    g4_json_free(j);
}

static void test_numbers(void) {
    char err[G4_ERR_LEN];
    struct { const char *s; double v; bool is_int; } ok[] = {
        {"0", 0, true}, {"-0", 0, true}, {"9007199254740993", 9007199254740992.0, true},
        {"1e-06", 1e-6, false}, {"1E+2", 100, false}, {"0.5", 0.5, false}, {"-12.25e-1", -1.225, false},
        {"1e-400", 0, false}, {"99999999999999999999", 1e20, false},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        g4_json *j = parse(ok[i].s, err);
        CHECK(j && j->type == G4_JSON_NUMBER && j->number == ok[i].v && j->is_int == ok[i].is_int, "%s -> %g (%s)", ok[i].s,
              j ? j->number : NAN, j ? "" : err);
        g4_json_free(j);
    }
    g4_json *j = parse("9007199254740993", err);
    CHECK(j && j->integer == 9007199254740993LL, "exact int64 beyond 2^53");
    g4_json_free(j);
}

static void test_refused(void) {
    static const struct { const char *text, *msg; } bad[] = {
        {"", "unexpected end"},
        {"{\"a\":1,}", "object key"},
        {"[1,2,]", "unexpected character ']'"},
        {"[1 2]", "',' or ']'"},
        {"{'a':1}", "object key"},
        {"{\"a\" 1}", "':'"},
        {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
        {"01", "unexpected data"},
        {"1.", "digit expected after '.'"},
        {"1e", "digit expected in exponent"},
        {"-", "invalid number"},
        {"+1", "unexpected character"},
        {"NaN", "unexpected character"},
        {"1e999", "out of range"},
        {"tru", "invalid literal"},
        {"nul", "invalid literal"},
        {"\"abc", "unterminated"},
        {"\"a\tb\"", "control character"},
        {"\"\\x\"", "bad escape"},
        {"\"\\u12g4\"", "bad escape"},
        {"\"\\ud800\"", "high surrogate"},
        {"\"\\ud800\\u0041\"", "high surrogate"},
        {"\"\\udc00\"", "low surrogate"},
        {"\"\xc0\xaf\"", "invalid UTF-8"},
        {"\"\xed\xa0\x80\"", "invalid UTF-8"},
        {"\"\xf4\x90\x80\x80\"", "invalid UTF-8"},
        {"\"\xe2\x82\"", "invalid UTF-8"},
        {"{} {}", "unexpected data"},
        {"/* c */ 1", "unexpected character"},
    };
    char err[G4_ERR_LEN];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        g4_json *j = parse(bad[i].text, err);
        CHECK(!j && strstr(err, bad[i].msg) && !strncmp(err, "t.json: line 1, column ", 23), "'%s': got \"%s\"",
              bad[i].text, err);
        g4_json_free(j);
    }
    /* location of the error */
    g4_json *j = parse("{\n  \"a\": [1,\n   x]}", err);
    CHECK(!j && strstr(err, "line 3, column 4"), "located: %s", err);
    /* depth limit, and exactly at it */
    char deep[2 * G4_JSON_MAX_DEPTH + 8];
    memset(deep, '[', G4_JSON_MAX_DEPTH);
    memset(deep + G4_JSON_MAX_DEPTH, ']', G4_JSON_MAX_DEPTH);
    deep[2 * G4_JSON_MAX_DEPTH] = 0;
    j = parse(deep, err);
    CHECK(j != NULL, "%d levels accepted: %s", G4_JSON_MAX_DEPTH, j ? "" : err);
    g4_json_free(j);
    memmove(deep + 1, deep, 2 * G4_JSON_MAX_DEPTH + 1);
    deep[0] = '[';
    strcat(deep, "]");
    j = parse(deep, err);
    CHECK(!j && strstr(err, "nesting deeper"), "%d levels refused: %s", G4_JSON_MAX_DEPTH + 1, err);
    /* never reads past len: a valid prefix of a longer buffer */
    j = g4_json_parse("[1,2]xyz", 5, "t.json", err);
    CHECK(j && j->len == 2, "bounded by len");
    g4_json_free(j);
    j = g4_json_parse("[1,2]", 4, "t.json", err);
    CHECK(!j, "truncated by len");
    CHECK(g4_json_parse_file("/nonexistent/x.json", err) == NULL && strstr(err, "/nonexistent/x.json: cannot open"),
          "missing file: %s", err);
}

int main(void) {
    test_values();
    test_strings();
    test_numbers();
    test_refused();
    return test_summary("test_json");
}
