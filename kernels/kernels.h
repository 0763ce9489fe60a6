/* The compute interface the model code uses. It never sees an intrinsic:
 * each ISA fills a g4_kernels table, the best one for the CPU's features is
 * used unless a load names another (gemma4_load_params.isa).
 *
 * Matmul numerics follow ggml's CPU backend: the activation row is first
 * converted to the weight type's partner format (g4_vec_dot_type), and the dot
 * product runs per block on integers, scaled by the two block scales.
 */
#ifndef G4_KERNELS_H
#define G4_KERNELS_H

#include "formats.h"
#include "threadpool.h"

/* The format activations are converted to before a dot with a weight row of
 * type t: Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for the K
 * formats and IQ4_XS, F16 for F16, BF16 for BF16, F32 for F32. */
enum g4_type g4_vec_dot_type(enum g4_type t);

typedef struct g4_kernels {
    const char *isa; /* "scalar", "avx2", "avx512", "neon", ... */
    /* dot of n values: weight row of type t with an activation row already
     * converted to g4_vec_dot_type(t). NULL where the ISA has nothing better
     * than scalar (the dispatcher then falls back to the scalar entry). */
    float (*vec_dot[G4_TYPE_COUNT])(int64_t n, const void *w, const void *act);
    /* The same dots for a block of weight rows and activation rows:
     * out[t * out_stride + r] = vec_dot(n, row r, activation row t) for
     * r < n_rows, t < n_tok, weight rows row_bytes apart, activation rows
     * act_bytes apart. One pass over a few weight rows serves several tokens;
     * every output has the bits vec_dot gives it. NULL where the ISA has no
     * such kernel (g4_matmul then loops over vec_dot). */
    void (*mul_rows[G4_TYPE_COUNT])(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act,
                                    size_t act_bytes, int64_t n_tok, float *out, int64_t out_stride);
    /* mul_rows for weights in the interleaved layout (kernels/repack.h):
     * w is the start of a run of 8-row groups, n_rows a multiple of 8,
     * n <= G4_X8_MAX_IN (g4_matmul runs wider rows unpacked).
     * These kernels keep one output row per SIMD lane, so their float sums
     * run in another order than vec_dot's: equal within rounding, not in
     * bits. NULL where the ISA has none; then weights stay plain for it. */
    void (*mul_rows_x8[G4_TYPE_COUNT])(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *act,
                                       size_t act_bytes, int64_t n_tok, float *out, int64_t out_stride);
    /* Attention over cached K/V rows (F32, F16 or Q8_0, kvcache.h) for the
     * nq query heads that share one KV head, so each cached row is read
     * once for all of them (grouped-query attention). Rows are stride bytes
     * apart, hd values each; queries and outputs hd floats apart:
     *   kv_scores: scores[h * s_stride + r] = dot(q[h], row r)
     *   kv_accum:  o[h] += sum over r of p[h * p_stride + r] * row r
     * NULL where the ISA has nothing better than scalar. */
    void (*kv_scores[G4_TYPE_COUNT])(const char *rows, size_t stride, int32_t n, int32_t hd, const float *q, int32_t nq,
                                     float *scores, int32_t s_stride);
    void (*kv_accum[G4_TYPE_COUNT])(const char *rows, size_t stride, int32_t n, int32_t hd, const float *p, int32_t nq,
                                    int32_t p_stride, float *o);
    /* f32 -> activation format (indexed by the activation type). Integer
     * formats round to nearest even with d = amax/127, as ggml's x86 path. */
    void (*quantize_act[G4_TYPE_COUNT])(const float *x, void *y, int64_t n);
} g4_kernels;

const g4_kernels *g4_kernels_scalar(void);
/* The table in use, process-wide: the best this CPU runs, or the last one
 * g4_kernels_use chose. */
const g4_kernels *g4_kernels_active(void);
/* Makes the named table the active one: 0, or -1 (nothing changed) when
 * this CPU cannot run it or the name is unknown. */
int g4_kernels_use(const char *isa);
/* A named table if this CPU can run it, else NULL. */
const g4_kernels *g4_kernels_by_name(const char *isa);

/* A weight matrix: n_out rows of n_in values, rows row_bytes apart, or, if
 * interleaved, the layout of kernels/repack.h (data then owned by the
 * weight's holder, released with g4_repack_free). */
typedef struct g4_weight {
    enum g4_type type;
    const void *data;
    int64_t n_in, n_out;
    size_t row_bytes;
    int interleaved;
} g4_weight;

/* y[t][o] = sum_i W[o][i] * x[t][i] for t < n_tok (x rows n_in floats apart,
 * y rows n_out floats apart). pool may be NULL (single thread).
 * The activations are converted into memory allocated per call. When that
 * allocation fails, y is left as it was and the failure is noted for the
 * calling thread (see g4_matmul_failed): the forward pass runs hundreds of
 * products per ubatch and checks once. */
void g4_matmul(const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool);
/* 0 if every product this thread ran since the last call had its memory;
 * else -1 with "PATH: out of memory ..." in err (G4_ERR_LEN bytes). Resets
 * the note either way. */
int g4_matmul_failed(const char *path, char *err);
/* The same with a chosen table (tests and benchmarks compare ISAs). */
void g4_matmul_isa(const g4_kernels *k, const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool);
/* Several independent products in one dispatch (gate and up, the experts
 * of a token): the threads share their rows, so small products keep every
 * thread busy. Each y gets what g4_matmul gives it. */
typedef struct g4_matmul_job {
    const g4_weight *w;
    const float *x;
    int64_t n_tok;
    float *y;
} g4_matmul_job;
void g4_matmul_many(const g4_matmul_job *jobs, int n_jobs, g4_pool *pool);
void g4_matmul_many_isa(const g4_kernels *k, const g4_matmul_job *jobs, int n_jobs, g4_pool *pool);

/* Rows per interleaved group (kernels/repack.h). */
#define G4_REPACK_ROWS 8
/* The widest rows the interleaved kernels take: they keep per-block terms
 * of the activations on the stack (kernels/x8_groups.h) rather than
 * allocate. Three times the widest Gemma 4 matrix (21504). */
#define G4_X8_MAX_IN 65536
/* Load-time interleaving of a weight's rows (kernels/repack.h). Whether w
 * can be interleaved for table k: a plain weight of at least 8 rows whose
 * type has a mul_rows_x8 there. */
bool g4_repack_supported(const g4_kernels *k, const g4_weight *w);
/* Copies w's rows into interleaved anonymous memory and points w at the
 * copy; with drop_file_pages (only for a read-only file mapping, which
 * refaults them) the source's whole pages leave memory, so the weights are
 * not resident twice. Returns false (w unchanged) when out of memory. */
bool g4_repack(g4_weight *w, bool drop_file_pages);
/* The plain bytes of one row: in place for a plain weight, else unpacked
 * into scratch (row_bytes). */
const void *g4_weight_row(const g4_weight *w, int64_t row, void *scratch);
/* Frees the copy of an interleaved weight; plain weights are left alone. */
void g4_repack_free(g4_weight *w);

#endif
