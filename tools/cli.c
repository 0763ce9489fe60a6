#include "tools/cli.h"

#include <stdbool.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/isa.h"

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

char *cli_read_input(const char *path, size_t *len) {
    const bool from_stdin = !strcmp(path, "-");
    FILE *fp = from_stdin ? stdin : fopen(path, "rb");
    if (!fp) return fprintf(stderr, "%s: %s\n", path, strerror(errno)), NULL;
    size_t cap = 1 << 16, n = 0, got = 0;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n > CLI_MAX_INPUT_BYTES) break;
        if (n == cap) {
            char *b = realloc(buf, (cap *= 2) + 1);
            if (!b) free(buf);
            buf = b;
        }
    }
    const bool failed = !buf || ferror(fp), too_big = n > CLI_MAX_INPUT_BYTES;
    if (!from_stdin) fclose(fp);
    if (failed || too_big) {
        if (too_big)
            fprintf(stderr, "%s: more than %zu MiB: inputs are limited to that size\n", path, CLI_MAX_INPUT_BYTES >> 20);
        else
            fprintf(stderr, "%s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int64_t cli_parse_ids(const char *list, int32_t **ids) {
    const size_t cap = strlen(list) / 2 + 1; /* each id takes a digit and a comma */
    *ids = malloc(cap * sizeof **ids);
    int64_t n = 0;
    for (const char *p = list; *ids && *p && (size_t)n < cap;) {
        char *end;
        const long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) break;
        (*ids)[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
        if (!*p) return n;
    }
    free(*ids);
    *ids = NULL;
    return -1;
}

/* The command line's --no-mmap and --mlock: one process loads with one
 * set of options, whatever command parsed them. */
static struct {
    bool no_mmap, mlock;
} load_options;

bool cli_load_option(const char *arg) {
    bool *flag = !strcmp(arg, "--no-mmap") ? &load_options.no_mmap : !strcmp(arg, "--mlock") ? &load_options.mlock : NULL;
    if (flag) *flag = true;
    return flag != NULL;
}

gemma4_model *cli_load(const char *path, char *err) {
    const char *isa = getenv("GEMMA4_ISA"), *repack = getenv("GEMMA4_REPACK");
    /* g4_kernels_select names the fallback for a name this CPU cannot run,
     * so a typo costs speed, not the run */
    const gemma4_load_params p = {.isa = isa && *isa ? g4_kernels_select(isa)->isa : NULL,
                                  .no_repack = repack && !strcmp(repack, "0"),
                                  .no_mmap = load_options.no_mmap,
                                  .mlock = load_options.mlock};
    return gemma4_load_ex(path, &p, err);
}

#ifndef G4_VERSION
#define G4_VERSION "unknown" /* the Makefile passes its VERSION */
#endif

void cli_print_version(void) {
    printf("gemma4 %s\n", G4_VERSION);
#if defined(__clang__)
    printf("built with clang %s", __clang_version__);
#elif defined(__GNUC__)
    printf("built with gcc %s", __VERSION__);
#else
    printf("built with an unknown compiler");
#endif
    printf(" for %s; kernels: %s (the best this CPU runs)\n",
#if defined(__x86_64__)
           "x86_64",
#elif defined(__aarch64__)
           "aarch64",
#else
           "another architecture",
#endif
           g4_kernels_active()->isa);
}

/* One line per token: the node name, its size, sum, RMS and first values. */
static void dump_to_stderr(void *user, const char *name, int32_t token, const float *x, int64_t n) {
    (void)user;
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i], sq += (double)x[i] * x[i];
    fprintf(stderr, "%-24s t=%-4lld n=%-6lld sum=%-14.6g rms=%-12.6g [%.6g %.6g %.6g %.6g]\n", name, (long long)token,
            (long long)n, sum, sqrt(sq / (double)n), x[0], n > 1 ? x[1] : 0, n > 2 ? x[2] : 0, n > 3 ? x[3] : 0);
}

void cli_session_env(gemma4_session_params *sp) {
    const char *dump = getenv("GEMMA4_DUMP");
    if (dump && *dump != '0') sp->dump = dump_to_stderr;
}
