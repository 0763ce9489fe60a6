#include "tools/json_write.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(jw *w, size_t n) {
    if (w->oom) return false;
    if (w->len + n + 1 <= w->cap) return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n + 1) cap *= 2;
    char *g = realloc(w->s, cap);
    if (!g) return !(w->oom = true);
    w->s = g, w->cap = cap;
    return true;
}

void jw_raw(jw *w, const char *s, size_t n) {
    if (!grow(w, n)) return;
    memcpy(w->s + w->len, s, n);
    w->s[w->len += n] = 0;
}

void jw_cstr(jw *w, const char *s) { jw_raw(w, s, strlen(s)); }

void jw_printf(jw *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !grow(w, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(w->s + w->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    w->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid:
 * no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (!len || len > n || s[0] > 0xf4) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (len == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
    if (len == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return len;
}

void jw_str(jw *w, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    jw_raw(w, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed in one go */
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(p + i, n - i);
        const char *esc = NULL;
        char u[8];
        if (k == 1 && (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')) {
            switch (p[i]) {
            case '"': esc = "\\\""; break;
            case '\\': esc = "\\\\"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            default: snprintf(u, sizeof u, "\\u%04x", p[i]), esc = u;
            }
        } else if (k == 0) {
            esc = "\xef\xbf\xbd";
        }
        if (!esc) {
            run += k, i += k;
            continue;
        }
        jw_raw(w, (const char *)p + i - run, run);
        jw_cstr(w, esc);
        run = 0, i += k ? k : 1;
    }
    jw_raw(w, (const char *)p + n - run, run);
    jw_raw(w, "\"", 1);
}

void jw_qstr(jw *w, const char *s) {
    if (s) jw_str(w, s, strlen(s));
    else jw_cstr(w, "null");
}

void jw_num(jw *w, double x) {
    if (!isfinite(x)) jw_cstr(w, "null");
    else if (x == (double)(int64_t)x && fabs(x) < 1e15) jw_printf(w, "%lld", (long long)x);
    else jw_printf(w, "%.17g", x);
}

void jw_free(jw *w) {
    free(w->s);
    *w = (jw){0};
}
