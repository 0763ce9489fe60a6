/* The per-ISA kernel tables and how the dispatcher picks one. Each SIMD file
 * (kernels/x86/avx2.c, kernels/x86/avx512.c, kernels/arm/dotprod.c) defines
 * its getter, returning a g4_kernels table whose NULL entries mean "use the
 * scalar kernel"; the dispatcher fills those in before anyone sees the table.
 * A getter is only called after the CPU has been checked for its features. */
#ifndef G4_ISA_H
#define G4_ISA_H

#include "kernels/kernels.h"

#if defined(__x86_64__)
const g4_kernels *g4_kernels_avx2(void);   /* AVX2 + FMA + F16C */
const g4_kernels *g4_kernels_avx512(void); /* AVX-512 F/BW/VL/DQ/VNNI */
#elif defined(__aarch64__)
const g4_kernels *g4_kernels_neon(void); /* ASIMD + dot product */
#endif

/* The table for a GEMMA4_ISA value: the named one if this CPU can run it,
 * else (NULL, empty, unknown or unavailable name) the best one available;
 * an unusable non-empty name prints one line to stderr. */
const g4_kernels *g4_kernels_select(const char *request);

#endif
