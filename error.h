/* The one error convention of the project: a function that fails writes one
 * line, "PATH: what is wrong", into the caller's buffer of G4_ERR_LEN bytes
 * and returns -1 (or NULL). Every layer uses it, so it sits below them all. */
#ifndef G4_ERROR_H
#define G4_ERROR_H

#include <stdarg.h>

#define G4_ERR_LEN 512

/* Writes "PATH: message" (just the message when path is NULL) to err and
 * returns -1. */
int g4_error(char *err, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int g4_verror(char *err, const char *path, const char *fmt, va_list ap);

#endif
