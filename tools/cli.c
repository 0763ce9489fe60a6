#include "tools/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_int(const char *v, long lo, long hi, int32_t *out, const char *name) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "gemma4: bad value for %s: '%s' (expected an integer in %ld..%ld)\n", name, v, lo, hi);
        return -1;
    }
    *out = (int32_t)x;
    return 0;
}

int cli_float(const char *v, double lo, double hi, float *out, const char *name) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "gemma4: bad value for %s: '%s' (expected a number in %g..%g)\n", name, v, lo, hi);
        return -1;
    }
    *out = (float)x;
    return 0;
}
