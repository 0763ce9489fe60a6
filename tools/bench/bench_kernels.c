/* Kernel microbenchmark (`make bench-kernels`, never part of `make test`):
 * g4_matmul_isa for every weight type with SIMD kernels, every ISA table
 * this CPU runs and each thread count, on a weight matrix well beyond the
 * last-level cache. Matvec (1 token) is reported as GB/s of weights
 * streamed, next to the machine's read bandwidth from the probe `gemma4
 * bench` uses; matmul (64 tokens) as GFLOP/s. Types the table can
 * interleave (kernels/repack.h) get a second row in that layout.
 *
 * The plain matrix lives in ordinary malloc'd pages, as a mapped file's
 * weights do; the interleaved copy is g4_repack's own memory, so each row
 * measures the layout as the engine would run it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kernels/kernels.h"
#include "tools/bench/membw.h"

#define N_IN 4096       /* inputs per row: a Gemma 4 hidden size */
#define MM_TOKENS 64    /* tokens of the matmul (prefill-like) */
#define ROW_ALIGN 64    /* rows rounded to whole thread shares and 8-row groups */
#define MAX_THREADS 16  /* thread counts in one -t list */
#define PROBE_BYTES ((size_t)512 << 20)
#define PROBE_PASSES 5

/* The SIMD kernels' weight types; the matrix of each is sized in bytes, so
 * wider types get fewer rows and every matvec streams the same amount. */
static const enum g4_type types[] = {G4_TYPE_Q4_0, G4_TYPE_Q8_0, G4_TYPE_Q4_K, G4_TYPE_Q5_K,
                                     G4_TYPE_Q6_K, G4_TYPE_F16, G4_TYPE_BF16};
static const char *const isas[] = {"scalar", "avx2", "avx512", "neon"};

/* The scalar table is one to two orders slower: its matmul covers a slice
 * of the rows and it repeats less, or it alone would take minutes. */
#define SCALAR_MM_DIV 64
#define SCALAR_REPS 2
#define SIMD_REPS 5

typedef struct options {
    int threads[MAX_THREADS], n_threads;
    const char *isa, *type; /* NULL: all */
    double mib;             /* bytes of each weight matrix, in MiB */
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_kernels [-t LIST] [--isa NAME] [--type NAME] [--mib N]\n"
            "Times g4_matmul_isa for each weight type (q4_0 q8_0 q4_k q5_k q6_k f16 bf16) and ISA table\n"
            "(scalar avx2 avx512 neon, those this CPU runs), plain and interleaved (x8) where the\n"
            "table can interleave the type. Prints a markdown table: matvec (1 token) as GB/s of\n"
            "weights streamed, matmul (%d tokens) as GFLOP/s; best of %d runs after a warm-up\n"
            "(scalar: %d runs, matmul over 1/%d of the rows).\n"
            "  -t LIST      thread counts, comma-separated [1,2]\n"
            "  --isa NAME   only this ISA table\n"
            "  --type NAME  only this weight type\n"
            "  --mib N      size of each weight matrix in MiB, %d inputs per row [72: 32768 q4_0 rows]\n"
            "  -h, --help   this text\n",
            MM_TOKENS, SIMD_REPS, SCALAR_REPS, SCALAR_MM_DIV, N_IN);
}

/* "1,2,4" -> counts; false on anything else. */
static bool parse_threads(const char *s, options *o) {
    o->n_threads = 0;
    while (*s) {
        char *end;
        const long n = strtol(s, &end, 10);
        if (end == s || n < 1 || n > 1024 || o->n_threads == MAX_THREADS || (*end && *end != ',')) return false;
        o->threads[o->n_threads++] = (int)n;
        s = *end ? end + 1 : end;
    }
    return o->n_threads > 0;
}

/* 0: run; 1: help printed; 2: bad usage (message printed). */
static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.threads = {1, 2}, .n_threads = 2, .mib = 72};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 1;
        if (!v || (strcmp(a, "-t") && strcmp(a, "--isa") && strcmp(a, "--type") && strcmp(a, "--mib"))) {
            fprintf(stderr, "bench_kernels: %s: %s (try --help)\n", a, v ? "unknown option" : "missing value");
            return 2;
        }
        i++;
        if (!strcmp(a, "-t") && !parse_threads(v, o)) {
            fprintf(stderr, "bench_kernels: -t %s: expected thread counts like 1,2\n", v);
            return 2;
        }
        if (!strcmp(a, "--isa")) o->isa = v;
        if (!strcmp(a, "--type")) o->type = v;
        if (!strcmp(a, "--mib") && ((o->mib = atof(v)) <= 0 || o->mib > 65536)) {
            fprintf(stderr, "bench_kernels: --mib %s: expected a size in MiB\n", v);
            return 2;
        }
    }
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds of the fastest of reps runs, after one untimed warm-up run. */
static double best_time(const g4_kernels *k, const g4_weight *w, const float *x, int64_t n_tok, float *y,
                        g4_pool *pool, int reps) {
    g4_matmul_isa(k, w, x, n_tok, y, pool);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        g4_matmul_isa(k, w, x, n_tok, y, pool);
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

/* A plain matrix of type t, about `bytes` large: a few distinct quantized
 * rows repeated (the kernels' speed does not depend on the values). */
static bool make_weight(enum g4_type t, size_t bytes, const float *x, g4_weight *w) {
    const size_t rb = g4_row_size(t, N_IN);
    const int64_t rows = (int64_t)((bytes + rb - 1) / rb + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    char *data = malloc(rb * (size_t)rows);
    if (!data) return false;
    enum { DISTINCT = 8 };
    for (int64_t r = 0; r < rows; r++) {
        char *row = data + (size_t)r * rb;
        if (r < DISTINCT) g4_quantize_row(t, x + r * N_IN, row, N_IN);
        else memcpy(row, data + (size_t)(r % DISTINCT) * rb, rb);
    }
    *w = (g4_weight){t, data, N_IN, rows, rb, 0};
    return true;
}

/* Whether table k has a kernel of its own for type t (the scalar table
 * always: it is the baseline); without, a row would time the scalar one. */
static bool has_kernel(const g4_kernels *k, enum g4_type t) {
    const g4_kernels *scalar = g4_kernels_scalar();
    return !strcmp(k->isa, scalar->isa) || k->mul_rows[t] || k->mul_rows_x8[t] || k->vec_dot[t] != scalar->vec_dot[t];
}

/* One table row per thread count for weight w (plain or interleaved). */
static void bench_rows(const options *o, g4_pool *const *pools, const double *membw, const g4_kernels *k,
                       const g4_weight *w, const char *layout, const float *x, float *y) {
    const bool scalar = !strcmp(k->isa, "scalar");
    g4_weight mm = *w; /* a prefix of whole groups is itself a valid weight */
    if (scalar) mm.n_out = (w->n_out / SCALAR_MM_DIV + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    const int reps = scalar ? SCALAR_REPS : SIMD_REPS;
    const double bytes = (double)w->row_bytes * (double)w->n_out;
    for (int i = 0; i < o->n_threads; i++) {
        const double tv = best_time(k, w, x, 1, y, pools[i], reps);
        const double tm = best_time(k, &mm, x, MM_TOKENS, y, pools[i], reps);
        const double gbps = bytes / tv * 1e-9;
        const double gflops = 2.0 * (double)N_IN * (double)mm.n_out * MM_TOKENS / tm * 1e-9;
        char share[16] = "-";
        if (membw[i] > 0) snprintf(share, sizeof share, "%.0f%%", 100.0 * gbps / membw[i]);
        printf("| %s | %s | %s | %d | %.2f | %s | %.1f | %lldx%d %.3g MiB; mm %dx%lld |\n", g4_type_name(w->type),
               layout, k->isa, o->threads[i], gbps, share, gflops, (long long)w->n_out, N_IN, bytes / (1 << 20),
               MM_TOKENS, (long long)mm.n_out);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    options o;
    const int rc = parse_args(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;

    const g4_kernels *tables[sizeof isas / sizeof isas[0]] = {0};
    int n_tables = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (o.isa && strcasecmp(o.isa, isas[i])) continue;
        if ((tables[i] = g4_kernels_by_name(isas[i]))) n_tables++;
        else printf("%s: not available on this CPU, skipped\n", isas[i]);
    }
    int n_types = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) n_types += !o.type || !strcasecmp(o.type, g4_type_name(types[i]));
    if (!n_tables || !n_types) {
        fprintf(stderr, "bench_kernels: %s %s: nothing to run here (try --help)\n", n_tables ? "--type" : "--isa",
                n_tables ? o.type : o.isa);
        return 2;
    }

    g4_pool *pools[MAX_THREADS] = {0};
    double membw[MAX_THREADS];
    printf("read bandwidth (tools/bench/membw.c):");
    for (int i = 0; i < o.n_threads; i++) {
        membw[i] = g4_membw_read_gbps(o.threads[i], PROBE_BYTES, PROBE_PASSES);
        printf("%s %.1f GB/s at %d thread%s", i ? "," : "", membw[i], o.threads[i], o.threads[i] > 1 ? "s" : "");
        if (!(pools[i] = g4_pool_create(o.threads[i]))) {
            fprintf(stderr, "\nbench_kernels: cannot start %d threads\n", o.threads[i]);
            return 1;
        }
    }
    printf("\n\n| type | layout | isa | threads | matvec GB/s | of bw | matmul GFLOP/s | sizes (rows x inputs; mm tokens x rows) |\n"
           "|---|---|---|---:|---:|---:|---:|---|\n");
    fflush(stdout);

    /* Activations: MM_TOKENS rows of N_IN, also the source of the weights. */
    float *x = malloc(sizeof(float) * N_IN * MM_TOKENS);
    float *y = NULL;
    int status = 0;
    if (!x) goto oom;
    srand(1);
    for (int64_t i = 0; i < (int64_t)N_IN * MM_TOKENS; i++) x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        if (o.type && strcasecmp(o.type, g4_type_name(types[ti]))) continue;
        g4_weight w;
        if (!make_weight(types[ti], (size_t)(o.mib * (1 << 20)), x, &w)) goto oom;
        free(y);
        if (!(y = malloc(sizeof(float) * (size_t)w.n_out * MM_TOKENS))) {
            free((void *)w.data);
            goto oom;
        }
        for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
            if (!tables[i] || !has_kernel(tables[i], types[ti])) continue;
            bench_rows(&o, pools, membw, tables[i], &w, "plain", x, y);
            g4_weight packed = w;
            if (!g4_repack_supported(tables[i], &packed)) continue;
            if (!g4_repack(&packed, false)) {
                free((void *)w.data);
                goto oom;
            }
            bench_rows(&o, pools, membw, tables[i], &packed, "x8", x, y);
            g4_repack_free(&packed);
        }
        free((void *)w.data);
    }
    goto done;
oom:
    fprintf(stderr, "bench_kernels: out of memory for a %.0f MiB weight matrix\n", o.mib);
    status = 1;
done:
    for (int i = 0; i < o.n_threads; i++) g4_pool_free(pools[i]);
    free(x);
    free(y);
    return status;
}
