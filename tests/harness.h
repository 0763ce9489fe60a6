/* A minimal test harness: CHECK records a pass or a failure (printing where
 * and why), and test_summary() prints "NAME: N passed, M failed" and gives the
 * exit status. tests/run.sh adds up the lines of every test program. */
#ifndef G4_TEST_HARNESS_H
#define G4_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>

static int test_passed_, test_failed_;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            test_passed_++;                                                  \
        } else {                                                             \
            test_failed_++;                                                  \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* Root of the shared fixtures: $GEMMA4_FIXTURES or ../shared/fixtures. */
static inline const char *test_fixtures_dir(void) {
    const char *d = getenv("GEMMA4_FIXTURES");
    return d && *d ? d : "../shared/fixtures";
}

static inline int test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

#endif
