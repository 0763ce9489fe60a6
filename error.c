/* g4_error and g4_verror: see error.h. */
#include "error.h"

#include <stdio.h>

int g4_verror(char *err, const char *path, const char *fmt, va_list ap) {
    int n = path ? snprintf(err, G4_ERR_LEN, "%s: ", path) : 0;
    if (n >= 0 && n < G4_ERR_LEN) vsnprintf(err + n, G4_ERR_LEN - (size_t)n, fmt, ap);
    return -1;
}

int g4_error(char *err, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    g4_verror(err, path, fmt, ap);
    va_end(ap);
    return -1;
}
