/* The matmul driver, as ggml's CPU mul_mat: convert every activation row
 * once to the weight type's partner format, then the dots, output rows split
 * over the pool's threads in groups of ROW_GROUP. Each output value is
 * computed the same way whatever the thread count and the tiling. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/repack.h"

/* Rows a thread's share is rounded to: an interleaved group. */
#define ROW_GROUP G4_REPACK_ROWS
/* Tokens served by one pass over a thread's rows: their converted
 * activations (about 2 KB per 2048 inputs) stay in L2 meanwhile. */
#define TOKEN_BLOCK 32

typedef struct {
    void (*quantize)(const float *x, void *y, int64_t n);
    const float *x;
    int64_t n_in, n_tok;
    char *dst;
    size_t dst_row_bytes;
} convert_job;

static void convert_rows(void *arg, int ith, int nth) {
    const convert_job *j = arg;
    for (int64_t t = ith; t < j->n_tok; t += nth) j->quantize(j->x + t * j->n_in, j->dst + (size_t)t * j->dst_row_bytes, j->n_in);
}

typedef struct {
    const g4_kernels *k;
    const g4_weight *w;
    const char *act;
    size_t act_row_bytes;
    int64_t n_tok;
    float *y;
} dot_job;

/* What a table without mul_rows[type] gets: one vec_dot per output. */
static void rows_by_vec_dot(float (*dot)(int64_t, const void *, const void *), int64_t n, const char *w, size_t row_bytes,
                            int64_t n_rows, const char *act, size_t act_bytes, int64_t n_tok, float *out,
                            int64_t out_stride) {
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t t = 0; t < n_tok; t++)
            out[t * out_stride + r] = dot(n, w + (size_t)r * row_bytes, act + (size_t)t * act_bytes);
}

/* Plain rows with table k: its mul_rows, else one vec_dot per output. */
static void plain_rows(const g4_kernels *k, const g4_weight *w, const char *rows, int64_t n_rows, const char *act,
                       size_t act_bytes, int64_t n_tok, float *out) {
    if (k->mul_rows[w->type])
        k->mul_rows[w->type](w->n_in, rows, w->row_bytes, n_rows, act, act_bytes, n_tok, out, w->n_out);
    else
        rows_by_vec_dot(k->vec_dot[w->type], w->n_in, rows, w->row_bytes, n_rows, act, act_bytes, n_tok, out, w->n_out);
}

/* Interleaved rows for a table without an interleaved kernel (tests run
 * every table on one weight): each row unpacked, then the plain kernels. */
static void unpacked_rows(const g4_kernels *k, const g4_weight *w, int64_t first, int64_t end, const char *act,
                          size_t act_bytes, int64_t n_tok, float *out) {
    char *scratch = malloc(w->row_bytes);
    if (!scratch) {
        fprintf(stderr, "g4_matmul: out of memory for a %zu-byte row\n", w->row_bytes);
        exit(EXIT_FAILURE);
    }
    for (int64_t r = first; r < end; r++)
        plain_rows(k, w, g4_weight_row(w, r, scratch), 1, act, act_bytes, n_tok, out + (r - first));
    free(scratch);
}

static void dot_rows(void *arg, int ith, int nth) {
    const dot_job *j = arg;
    const g4_weight *w = j->w;
    const int64_t groups = (w->n_out + ROW_GROUP - 1) / ROW_GROUP;
    const int64_t first = groups * ith / nth * ROW_GROUP;
    int64_t end = groups * (ith + 1) / nth * ROW_GROUP;
    if (end > w->n_out) end = w->n_out;
    if (first >= end) return;
    /* interleaved weights: the 8-row groups, then the plain tail rows */
    const int64_t grouped = w->interleaved ? w->n_out / G4_REPACK_ROWS * G4_REPACK_ROWS : 0;
    const int64_t mid = end < grouped ? end : grouped > first ? grouped : first;
    const char *rows = (const char *)w->data + (size_t)first * w->row_bytes;
    for (int64_t t0 = 0; t0 < j->n_tok; t0 += TOKEN_BLOCK) {
        const int64_t nt = j->n_tok - t0 < TOKEN_BLOCK ? j->n_tok - t0 : TOKEN_BLOCK;
        const char *act = j->act + (size_t)t0 * j->act_row_bytes;
        float *out = j->y + t0 * w->n_out + first;
        if (mid > first && j->k->mul_rows_x8[w->type])
            j->k->mul_rows_x8[w->type](w->n_in, rows, w->row_bytes, mid - first, act, j->act_row_bytes, nt, out, w->n_out);
        else if (mid > first)
            unpacked_rows(j->k, w, first, mid, act, j->act_row_bytes, nt, out);
        if (end > mid)
            plain_rows(j->k, w, rows + (size_t)(mid - first) * w->row_bytes, end - mid, act, j->act_row_bytes, nt,
                       out + (mid - first));
    }
}

void g4_matmul(const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool) {
    g4_matmul_isa(g4_kernels_active(), w, x, n_tok, y, pool);
}

void g4_matmul_isa(const g4_kernels *k, const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool) {
    if (n_tok <= 0) return;
    const enum g4_type act_type = g4_vec_dot_type(w->type);
    dot_job job = {k, w, (const char *)x, (size_t)w->n_in * sizeof(float), n_tok, y};
    char *converted = NULL;
    if (act_type != G4_TYPE_F32) {
        job.act_row_bytes = g4_row_size(act_type, w->n_in);
        converted = malloc(job.act_row_bytes * (size_t)n_tok);
        if (!converted) {
            /* the API has no error path; a model that loaded has far larger buffers than this */
            fprintf(stderr, "g4_matmul: out of memory for %lld activation rows\n", (long long)n_tok);
            exit(EXIT_FAILURE);
        }
        convert_job conv = {k->quantize_act[act_type], x, w->n_in, n_tok, converted, job.act_row_bytes};
        g4_pool_run(n_tok > 1 ? pool : NULL, convert_rows, &conv);
        job.act = converted;
    }
    g4_pool_run(pool, dot_rows, &job);
    free(converted);
}
