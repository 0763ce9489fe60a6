/* Small helpers shared by the subcommands' option parsing. */
#ifndef G4_CLI_H
#define G4_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gemma4.h"

/* Parses a whole decimal integer in [lo, hi]; prints "gemma4: bad value for
 * NAME: 'v'" and returns -1 otherwise. */
int cli_int(const char *v, long lo, long hi, int32_t *out, const char *name);
int cli_float(const char *v, double lo, double hi, float *out, const char *name);

/* Text inputs (prompt files, files to tokenize) are capped: a path such as
 * /dev/zero or a runaway pipe would otherwise grow the buffer until memory
 * runs out. 64 MiB is some 15M tokens, far beyond any context. */
#define CLI_MAX_INPUT_BYTES ((size_t)64 << 20)

/* The whole of path ("-" is standard input), NUL-terminated, its length in
 * *len; NULL after printing "PATH: why" (unreadable, or over
 * CLI_MAX_INPUT_BYTES). */
char *cli_read_input(const char *path, size_t *len);

/* The library reads no environment; the commands that load a model map
 * these variables onto its parameters:
 *   GEMMA4_ISA=scalar|avx2|avx512|neon  kernels (an unusable name prints one
 *                                       line and the best table is used)
 *   GEMMA4_REPACK=0                     keep weights zero-copy in the mapping
 *   GEMMA4_DUMP=1 (not 0)               every intermediate vector to stderr */
gemma4_model *cli_load(const char *path, char *err);
/* "1,2,3" -> token ids (malloc'd): the count, or -1 (and *ids NULL) for
 * anything but a comma-separated list of non-negative 32-bit integers. */
int64_t cli_parse_ids(const char *list, int32_t **ids);
/* llama.cpp's --no-mmap and --mlock, which every command that loads a model
 * takes (gemma4_load_params.no_mmap, .mlock): true when arg is one of them,
 * and cli_load honours it from then on. */
bool cli_load_option(const char *arg);
/* "gemma4 VERSION" and how it was built, on stdout (--version). */
void cli_print_version(void);
/* Sets sp->dump to the stderr printer when GEMMA4_DUMP asks for it. */
void cli_session_env(gemma4_session_params *sp);

#endif
