/* Run-time choice of the kernel table: which ISAs this CPU and OS support,
 * the table a load asked for, and the completion of SIMD tables with the
 * scalar kernels they leave out. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kernels/isa.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#endif

enum g4_type g4_vec_dot_type(enum g4_type t) {
    switch (t) {
    case G4_TYPE_Q4_0:
    case G4_TYPE_Q5_0:
    case G4_TYPE_Q8_0:
    case G4_TYPE_IQ4_NL: return G4_TYPE_Q8_0;
    case G4_TYPE_Q4_1:
    case G4_TYPE_Q5_1: return G4_TYPE_Q8_1;
    case G4_TYPE_Q2_K:
    case G4_TYPE_Q3_K:
    case G4_TYPE_Q4_K:
    case G4_TYPE_Q5_K:
    case G4_TYPE_Q6_K:
    case G4_TYPE_IQ4_XS: return G4_TYPE_Q8_K;
    case G4_TYPE_F16: return G4_TYPE_F16;
    case G4_TYPE_BF16: return G4_TYPE_BF16;
    default: return G4_TYPE_F32;
    }
}

/* ---- CPU features ---- */

static bool cpu_any(void) { return true; }

#if defined(__x86_64__)
/* Register bits from the Intel SDM, spelled out because older compilers'
 * <cpuid.h> lack some of the names. */
#define ECX1_FMA (1u << 12)
#define ECX1_OSXSAVE (1u << 27)
#define ECX1_AVX (1u << 28)
#define ECX1_F16C (1u << 29)
#define EBX7_AVX2 (1u << 5)
#define EBX7_AVX512F (1u << 16)
#define EBX7_AVX512DQ (1u << 17)
#define EBX7_AVX512BW (1u << 30)
#define EBX7_AVX512VL (1u << 31)
#define ECX7_AVX512VNNI (1u << 11)
#define XCR0_YMM 0x06u /* SSE and AVX state saved by the OS */
#define XCR0_ZMM 0xe0u /* opmask, upper ZMM0-15 and ZMM16-31 state */

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

/* The registers of leaves 1 and 7 plus XCR0 (0 when the OS does not use
 * XSAVE, i.e. saves no AVX state). */
typedef struct {
    uint32_t ecx1, ebx7, ecx7;
    uint64_t xcr0;
} x86_features;

static x86_features x86_probe(void) {
    x86_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f.ecx1 = c;
    if (c & ECX1_OSXSAVE) f.xcr0 = read_xcr0();
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.ebx7 = b;
        f.ecx7 = c;
    }
    return f;
}

static bool cpu_avx2(void) {
    const x86_features f = x86_probe();
    const uint32_t ecx1 = ECX1_FMA | ECX1_OSXSAVE | ECX1_AVX | ECX1_F16C;
    return (f.ecx1 & ecx1) == ecx1 && (f.ebx7 & EBX7_AVX2) && (f.xcr0 & XCR0_YMM) == XCR0_YMM;
}

static bool cpu_avx512(void) {
    const x86_features f = x86_probe();
    const uint32_t ebx7 = EBX7_AVX512F | EBX7_AVX512DQ | EBX7_AVX512BW | EBX7_AVX512VL;
    return cpu_avx2() && (f.ebx7 & ebx7) == ebx7 && (f.ecx7 & ECX7_AVX512VNNI) &&
           (f.xcr0 & (XCR0_YMM | XCR0_ZMM)) == (XCR0_YMM | XCR0_ZMM);
}
#elif defined(__aarch64__)
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif

static bool cpu_neon_dotprod(void) {
    const unsigned long hw = getauxval(AT_HWCAP);
    return (hw & HWCAP_ASIMD) && (hw & HWCAP_ASIMDDP);
}
#endif

/* ---- the tables ---- */

/* Best first. A NULL table is an ISA whose kernel file does not exist yet:
 * when it lands, put its getter here (kernels/isa.h declares it). */
static const struct isa {
    const char *name;
    bool (*cpu_can_run)(void);
    const g4_kernels *(*table)(void);
} isas[] = {
#if defined(__x86_64__)
    {"avx512", cpu_avx512, g4_kernels_avx512},
    {"avx2", cpu_avx2, g4_kernels_avx2},
#elif defined(__aarch64__)
    {"neon", cpu_neon_dotprod, g4_kernels_neon},
#endif
    {"scalar", cpu_any, g4_kernels_scalar},
};
#define N_ISAS (sizeof isas / sizeof isas[0])

/* Completed copies of the tables this CPU can run (usable[i]). */
static g4_kernels completed[N_ISAS];
static bool usable[N_ISAS];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    const g4_kernels *scalar = g4_kernels_scalar();
    for (size_t i = 0; i < N_ISAS; i++) {
        if (!isas[i].table || !isas[i].cpu_can_run()) continue;
        g4_kernels k = *isas[i].table();
        for (int t = 0; t < G4_TYPE_COUNT; t++) {
            if (!k.vec_dot[t]) k.vec_dot[t] = scalar->vec_dot[t];
            if (!k.quantize_act[t]) k.quantize_act[t] = scalar->quantize_act[t];
            if (!k.kv_scores[t]) k.kv_scores[t] = scalar->kv_scores[t];
            if (!k.kv_accum[t]) k.kv_accum[t] = scalar->kv_accum[t];
        }
        completed[i] = k;
        usable[i] = true;
    }
}

const g4_kernels *g4_kernels_by_name(const char *isa) {
    pthread_once(&tables_once, build_tables);
    for (size_t i = 0; i < N_ISAS; i++)
        if (usable[i] && isa && strcmp(isas[i].name, isa) == 0) return &completed[i];
    return NULL;
}

const g4_kernels *g4_kernels_select(const char *request) {
    pthread_once(&tables_once, build_tables);
    const g4_kernels *best = NULL;
    for (size_t i = 0; i < N_ISAS && !best; i++)
        if (usable[i]) best = &completed[i];
    if (!request || !*request) return best;
    const g4_kernels *k = g4_kernels_by_name(request);
    if (k) return k;
    fprintf(stderr, "GEMMA4_ISA=%s: unknown or not available on this CPU (scalar, avx2, avx512, neon); using %s\n",
            request, best->isa);
    return best;
}

/* NULL until g4_kernels_use names a table: the best one is used meanwhile.
 * Atomic, since a load may choose while another model decodes. */
static _Atomic(const g4_kernels *) active;

const g4_kernels *g4_kernels_active(void) {
    const g4_kernels *k = atomic_load(&active);
    return k ? k : g4_kernels_select(NULL);
}

int g4_kernels_use(const char *isa) {
    const g4_kernels *k = g4_kernels_by_name(isa);
    if (!k) return -1;
    atomic_store(&active, k);
    return 0;
}
