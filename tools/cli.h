/* Small helpers shared by the subcommands' option parsing. */
#ifndef G4_CLI_H
#define G4_CLI_H

#include <stdint.h>

/* Parses a whole decimal integer in [lo, hi]; prints "gemma4: bad value for
 * NAME: 'v'" and returns -1 otherwise. */
int cli_int(const char *v, long lo, long hi, int32_t *out, const char *name);
int cli_float(const char *v, double lo, double hi, float *out, const char *name);

#endif
