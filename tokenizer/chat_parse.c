/* Splits Gemma 4 output into thought, answer and tool calls. Generation can
 * stop anywhere (max tokens), so running out of text is told apart from
 * text that is wrong: the first is kept as far as it goes, the second is an
 * error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_internal.h"

#define MAX_DEPTH 64

typedef enum scan { SCAN_OK, SCAN_BAD, SCAN_EOF } scan;

typedef struct cursor {
    const char *p, *end;
    const char *why; /* what was wrong, for SCAN_BAD */
} cursor;

/* strchr would also match the terminating NUL. */
static bool in_set(char ch, const char *set) { return ch != '\0' && strchr(set, ch); }

/* Function names and bare keys end at syntax, space or a NUL (they become
 * C strings). */
static bool ends_name(char ch) { return ch == '\0' || strchr(":,{}[]<\" \t\r\n", ch); }

static bool at_space(const cursor *c) {
    return c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r');
}

static void skip_space(cursor *c) {
    while (at_space(c)) c->p++;
}

static scan bad(cursor *c, const char *why) {
    c->why = why;
    return SCAN_BAD;
}

/* Consumes lit; SCAN_EOF if the text ends partway through it. */
static scan expect(cursor *c, const char *lit, const char *why) {
    size_t n = strlen(lit), avail = (size_t)(c->end - c->p);
    if (avail < n) return memcmp(c->p, lit, avail) ? bad(c, why) : SCAN_EOF;
    if (memcmp(c->p, lit, n)) return bad(c, why);
    c->p += n;
    return SCAN_OK;
}

static bool at(const cursor *c, const char *lit) {
    size_t n = strlen(lit);
    return (size_t)(c->end - c->p) >= n && !memcmp(c->p, lit, n);
}

/* <|"|>raw text<|"|>: no escapes, the text runs to the next quote token. */
static scan scan_quoted(cursor *c, const char **s, size_t *len, const char *why) {
    scan st = expect(c, G4_CHAT_QUOTE, why);
    if (st != SCAN_OK) return st;
    const char *close = memmem(c->p, (size_t)(c->end - c->p), G4_CHAT_QUOTE, G4_CHAT_QUOTE_LEN);
    if (!close) return SCAN_EOF;
    *s = c->p;
    *len = (size_t)(close - c->p);
    c->p = close + G4_CHAT_QUOTE_LEN;
    return SCAN_OK;
}

static scan scan_number(cursor *c, g4_chat_value **out) {
    const char *start = c->p;
    bool integral = true;
    while (c->p < c->end && in_set(*c->p, "+-0123456789.eE")) {
        if (*c->p == '.' || *c->p == 'e' || *c->p == 'E') integral = false;
        c->p++;
    }
    if (c->p == c->end) return SCAN_EOF; /* more digits may follow */
    char tmp[64];
    size_t n = (size_t)(c->p - start);
    if (n >= sizeof tmp) return bad(c, "number too long");
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    char *stop;
    errno = 0;
    if (integral) {
        long long i = strtoll(tmp, &stop, 10);
        if (*stop == '\0' && errno == 0) {
            *out = g4_chat_int(i);
            return *out ? SCAN_OK : bad(c, "out of memory");
        }
    }
    double f = strtod(tmp, &stop); /* also integers too large for int64 */
    if (n == 0 || *stop != '\0') return bad(c, "bad number");
    *out = g4_chat_float(f);
    return *out ? SCAN_OK : bad(c, "out of memory");
}

static scan scan_value(cursor *c, g4_chat_value **out, int depth);

/* KEY: with the key bare or in <|"|>; *key is malloc'd. */
static scan scan_key(cursor *c, char **key) {
    const char *k = c->p;
    size_t klen = 0;
    scan st;
    if (*c->p == '<') {
        if ((st = scan_quoted(c, &k, &klen, "expected a key")) != SCAN_OK) return st;
        if (memchr(k, '\0', klen)) return bad(c, "NUL byte in a key");
    } else {
        while (c->p < c->end && !ends_name(*c->p)) c->p++;
        klen = (size_t)(c->p - k);
        if (c->p == c->end) return SCAN_EOF;
        if (!klen) return bad(c, "expected a key");
    }
    skip_space(c);
    if ((st = expect(c, ":", "expected ':' after a key")) != SCAN_OK) return st;
    *key = strndup(k, klen);
    return *key ? SCAN_OK : bad(c, "out of memory");
}

/* {key:value,...} or [value,...] */
static scan scan_container(cursor *c, g4_chat_value **out, int depth) {
    bool object = *c->p == '{';
    char close = object ? '}' : ']';
    if (depth >= MAX_DEPTH) return bad(c, "nested too deeply");
    c->p++;
    g4_chat_value *v = object ? g4_chat_object() : g4_chat_array();
    if (!v) return bad(c, "out of memory");
    scan st = SCAN_OK;
    for (bool first = true; st == SCAN_OK; first = false) {
        skip_space(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            break;
        }
        if (!first && (st = expect(c, ",", object ? "expected ',' or '}'" : "expected ',' or ']'")) != SCAN_OK)
            break;
        skip_space(c);
        if (c->p == c->end) {
            st = SCAN_EOF;
            break;
        }
        char *key = NULL;
        g4_chat_value *item = NULL;
        if (object && (st = scan_key(c, &key)) != SCAN_OK) break;
        st = scan_value(c, &item, depth + 1);
        if (st == SCAN_OK && (object ? g4_chat_object_set(v, key, item) : g4_chat_array_push(v, item)))
            st = bad(c, "out of memory");
        free(key);
    }
    if (st != SCAN_OK) {
        g4_chat_value_free(v);
        return st;
    }
    *out = v;
    return SCAN_OK;
}

static scan scan_value(cursor *c, g4_chat_value **out, int depth) {
    skip_space(c);
    if (c->p == c->end) return SCAN_EOF;
    if (*c->p == '{' || *c->p == '[') return scan_container(c, out, depth);
    if (*c->p == '<') {
        const char *s;
        size_t len;
        scan st = scan_quoted(c, &s, &len, "expected a value");
        if (st != SCAN_OK) return st;
        *out = g4_chat_string(s, len);
        return *out ? SCAN_OK : bad(c, "out of memory");
    }
    if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) return scan_number(c, out);
    static const char *const words[] = {"true", "false", "null"};
    for (int w = 0; w < 3; w++) {
        if (*c->p != words[w][0]) continue;
        scan st = expect(c, words[w], "expected a value");
        if (st != SCAN_OK) return st;
        *out = w == 2 ? g4_chat_null() : g4_chat_bool(w == 0);
        return *out ? SCAN_OK : bad(c, "out of memory");
    }
    return bad(c, "expected a value");
}

/* call:NAME{args}<tool_call|> (after "<|tool_call>") */
static scan scan_call(cursor *c, g4_chat_tool_call *call) {
    scan st = expect(c, "call:", "expected 'call:'");
    if (st != SCAN_OK) return st;
    const char *name = c->p;
    while (c->p < c->end && !ends_name(*c->p)) c->p++;
    if (c->p == c->end) return SCAN_EOF;
    if (c->p == name || *c->p != '{') return bad(c, "expected a function name and '{'");
    if (!(call->name = strndup(name, (size_t)(c->p - name)))) return bad(c, "out of memory");
    return scan_container(c, &call->args, 0);
}

/* Markers that end or structure the output, matched where a '<' starts. */
enum { M_CHANNEL, M_TOOL_CALL, M_TURN_END, M_TOOL_RESPONSE, M_EOS, M_COUNT };
static const char *const markers[M_COUNT] = {"<|channel>", "<|tool_call>", "<turn|>", "<|tool_response>", "<eos>"};

static const char *next_marker(const char *p, const char *end, int *which) {
    for (; p < end; p++) {
        if (*p != '<') continue;
        for (int m = 0; m < M_COUNT; m++) {
            size_t n = strlen(markers[m]);
            if ((size_t)(end - p) >= n && !memcmp(p, markers[m], n)) {
                *which = m;
                return p;
            }
        }
    }
    return end;
}

/* Appends generated text to the reasoning or the content, which are C
 * strings: a NUL byte (a <0x00> token) becomes U+FFFD, as JSON output shows
 * an invalid byte, instead of cutting off everything after it. */
static void add_text(g4_chat_buf *b, const char *p, size_t n) {
    for (const char *nul; (nul = memchr(p, '\0', n)); n -= (size_t)(nul - p) + 1, p = nul + 1) {
        g4_chat_buf_add(b, p, (size_t)(nul - p));
        g4_chat_buf_str(b, "\xEF\xBF\xBD");
    }
    g4_chat_buf_add(b, p, n);
}

static char *trimmed_copy(const g4_chat_buf *b) {
    const char *s = b->s ? b->s : "";
    size_t n = b->len;
    while (n && in_set(*s, " \t\r\n")) s++, n--;
    while (n && in_set(s[n - 1], " \t\r\n")) n--;
    return strndup(s, n);
}

void g4_chat_output_free(g4_chat_output *out) {
    if (!out) return;
    free(out->reasoning);
    free(out->content);
    for (size_t k = 0; k < out->n_calls; k++) {
        free(out->calls[k].id);
        free(out->calls[k].name);
        g4_chat_value_free(out->calls[k].args);
    }
    free(out->calls);
    memset(out, 0, sizeof *out);
}

int g4_chat_parse_output(const char *text, size_t len, bool starts_in_thought, g4_chat_output *out, char *err) {
    memset(out, 0, sizeof *out);
    g4_chat_buf reasoning = {0}, content = {0};
    const char *p = text ? text : "", *end = p + (text ? len : 0);
    bool in_thought = starts_in_thought, oom = false;
    int rc = 0;
    while (p < end) {
        if (in_thought) {
            static const char close[] = "<channel|>";
            const char *stop = memmem(p, (size_t)(end - p), close, sizeof close - 1);
            add_text(&reasoning, p, (size_t)((stop ? stop : end) - p));
            if (!stop) {
                out->truncated = true;
                break;
            }
            p = stop + sizeof close - 1;
            in_thought = false;
            continue;
        }
        int m = -1;
        const char *mark = next_marker(p, end, &m);
        add_text(&content, p, (size_t)(mark - p));
        if (mark == end || m == M_TURN_END || m == M_TOOL_RESPONSE || m == M_EOS) break;
        p = mark + strlen(markers[m]);
        if (m == M_CHANNEL) {
            cursor c = {p, end, NULL};
            if (at(&c, "thought")) c.p += 7;
            if (at(&c, "\n")) c.p++;
            p = c.p;
            in_thought = true;
            continue;
        }
        g4_chat_tool_call call = {0};
        cursor c = {p, end, NULL};
        scan st = scan_call(&c, &call);
        if (st == SCAN_OK) st = expect(&c, "<tool_call|>", "expected '<tool_call|>' after the arguments");
        if (st != SCAN_OK) {
            free(call.name);
            g4_chat_value_free(call.args);
        }
        if (st == SCAN_EOF) {
            out->truncated = true;
            break;
        }
        if (st == SCAN_BAD) {
            snprintf(err, G4_ERR_LEN, "output: tool call %zu: %s at byte %zu", out->n_calls + 1, c.why,
                     (size_t)(c.p - text));
            rc = -1;
            break;
        }
        g4_chat_tool_call *calls = realloc(out->calls, (out->n_calls + 1) * sizeof *calls);
        if (!calls) {
            free(call.name);
            g4_chat_value_free(call.args);
            oom = true;
            break;
        }
        out->calls = calls;
        out->calls[out->n_calls++] = call;
        p = c.p;
    }
    if (rc == 0) {
        out->reasoning = trimmed_copy(&reasoning);
        out->content = trimmed_copy(&content);
        oom |= reasoning.oom || content.oom || !out->reasoning || !out->content;
        if (oom) {
            snprintf(err, G4_ERR_LEN, "output: out of memory parsing %zu bytes", len);
            rc = -1;
        }
    }
    free(reasoning.s);
    free(content.s);
    if (rc) g4_chat_output_free(out);
    return rc;
}
