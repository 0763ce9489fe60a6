/* A growing text buffer for writing JSON (and the other text the server
 * sends). After a failed allocation oom is set and later writes do nothing,
 * so a writer checks once at the end. */
#ifndef G4_JSON_WRITE_H
#define G4_JSON_WRITE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct jw {
    char *s; /* NUL-terminated while not oom */
    size_t len, cap;
    bool oom;
} jw;

void jw_raw(jw *w, const char *s, size_t n);
void jw_cstr(jw *w, const char *s);
void jw_printf(jw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..n) as a quoted JSON string. Invalid UTF-8 bytes become U+FFFD, so
 * the output is valid JSON whatever the model generated. */
void jw_str(jw *w, const char *s, size_t n);
/* A C string quoted; NULL writes null. */
void jw_qstr(jw *w, const char *s);
/* A finite double as a JSON number (null for NaN / inf). */
void jw_num(jw *w, double x);
void jw_free(jw *w);

#endif
