/* The matmul driver, as ggml's CPU mul_mat: convert every activation row
 * once to the weight type's partner format, then the dots, output rows split
 * over the pool's threads in groups of ROW_GROUP. Each output value is
 * computed the same way whatever the thread count and the tiling. */
#include <stdlib.h>

#include "error.h"
#include "kernels/kernels.h"
#include "kernels/repack.h"

/* Rows a thread's share is rounded to: an interleaved group. */
#define ROW_GROUP G4_REPACK_ROWS
/* Tokens served by one pass over a thread's rows: their converted
 * activations (about 2 KB per 2048 inputs) stay in L2 meanwhile. */
#define TOKEN_BLOCK 32

/* One product of a call, with its activations converted to act_type
 * (F32: act is the job's x itself). */
typedef struct {
    g4_matmul_job job;
    enum g4_type act_type;
    const char *act;
    size_t act_row_bytes;
} product;

typedef struct {
    const g4_kernels *k;
    product *p;
    int n;
    char *converted;
    /* per thread, unpacked_bytes each: one row of an interleaved weight
     * that k has no interleaved kernel for */
    char *unpacked;
    size_t unpacked_bytes;
} call;

/* The bytes of the last allocation that failed on this thread, until
 * g4_matmul_failed reports it. */
static _Thread_local size_t failed_bytes;

int g4_matmul_failed(const char *path, char *err) {
    const size_t bytes = failed_bytes;
    failed_bytes = 0;
    if (!bytes) return 0;
    return g4_error(err, path, "out of memory for a matrix product's converted activations (%zu bytes)", bytes);
}

/* Whether table k runs interleaved weight w directly, else row by row unpacked. */
static bool runs_interleaved(const g4_kernels *k, const g4_weight *w) {
    return k->mul_rows_x8[w->type] && w->n_in <= G4_X8_MAX_IN;
}

/* Converting: the (product, token) pairs in turn over the threads. */
static void convert_rows(void *arg, int ith, int nth) {
    const call *c = arg;
    int64_t pair = 0;
    for (int i = 0; i < c->n; i++) {
        const product *p = &c->p[i];
        for (int64_t t = 0; t < p->job.n_tok; t++, pair++) {
            if (pair % nth != ith || p->act_type == G4_TYPE_F32) continue;
            c->k->quantize_act[p->act_type](p->job.x + t * p->job.w->n_in, (char *)p->act + (size_t)t * p->act_row_bytes, p->job.w->n_in);
        }
    }
}

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
 * every table on one weight, rows can be too wide for it): each row
 * unpacked into scratch, then the plain kernels. */
static void unpacked_rows(const g4_kernels *k, const g4_weight *w, int64_t first, int64_t end, const char *act,
                          size_t act_bytes, int64_t n_tok, float *out, char *scratch) {
    for (int64_t r = first; r < end; r++)
        plain_rows(k, w, g4_weight_row(w, r, scratch), 1, act, act_bytes, n_tok, out + (r - first));
}

/* Rows [first, end) of one product on thread ith: interleaved groups with
 * their kernel (or unpacked into the thread's scratch), the plain tail rows
 * with the plain kernels. */
static void product_rows(const call *c, const product *p, int64_t first, int64_t end, int ith) {
    const g4_kernels *k = c->k;
    const g4_weight *w = p->job.w;
    const int64_t grouped = w->interleaved ? w->n_out / G4_REPACK_ROWS * G4_REPACK_ROWS : 0;
    const int64_t mid = end < grouped ? end : grouped > first ? grouped : first;
    const char *rows = (const char *)w->data + (size_t)first * w->row_bytes;
    for (int64_t t0 = 0; t0 < p->job.n_tok; t0 += TOKEN_BLOCK) {
        const int64_t nt = p->job.n_tok - t0 < TOKEN_BLOCK ? p->job.n_tok - t0 : TOKEN_BLOCK;
        const char *act = p->act + (size_t)t0 * p->act_row_bytes;
        float *out = p->job.y + t0 * w->n_out + first;
        if (mid > first && runs_interleaved(k, w))
            k->mul_rows_x8[w->type](w->n_in, rows, w->row_bytes, mid - first, act, p->act_row_bytes, nt, out, w->n_out);
        else if (mid > first)
            unpacked_rows(k, w, first, mid, act, p->act_row_bytes, nt, out, c->unpacked + (size_t)ith * c->unpacked_bytes);
        if (end > mid)
            plain_rows(k, w, rows + (size_t)(mid - first) * w->row_bytes, end - mid, act, p->act_row_bytes, nt,
                       out + (mid - first));
    }
}

/* The dots: every product's groups split evenly over the threads, all in
 * one dispatch, so several small products (experts, gate and up) cost one
 * wake-up and keep every thread busy, and the threads stream each matrix
 * side by side as they would for a lone product. */
static void dot_rows(void *arg, int ith, int nth) {
    const call *c = arg;
    for (int i = 0; i < c->n; i++) {
        const product *p = &c->p[i];
        const int64_t groups = (p->job.w->n_out + ROW_GROUP - 1) / ROW_GROUP;
        const int64_t first = groups * ith / nth * ROW_GROUP;
        int64_t end = groups * (ith + 1) / nth * ROW_GROUP;
        if (end > p->job.w->n_out) end = p->job.w->n_out;
        if (first < end) product_rows(c, p, first, end, ith);
    }
}

void g4_matmul(const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool) {
    g4_matmul_isa(g4_kernels_active(), w, x, n_tok, y, pool);
}

void g4_matmul_isa(const g4_kernels *k, const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool) {
    const g4_matmul_job job = {w, x, n_tok, y};
    g4_matmul_many_isa(k, &job, 1, pool);
}

void g4_matmul_many(const g4_matmul_job *jobs, int n_jobs, g4_pool *pool) {
    g4_matmul_many_isa(g4_kernels_active(), jobs, n_jobs, pool);
}

void g4_matmul_many_isa(const g4_kernels *k, const g4_matmul_job *jobs, int n_jobs, g4_pool *pool) {
    product *p = calloc((size_t)(n_jobs > 0 ? n_jobs : 1), sizeof *p);
    size_t bytes = 0;
    int64_t tokens = 0;
    call c = {k, p, 0, NULL, NULL, 0};
    if (!p) {
        failed_bytes = (size_t)(n_jobs > 0 ? n_jobs : 1) * sizeof *p;
        return;
    }
    for (int i = 0; i < n_jobs; i++) {
        if (jobs[i].n_tok <= 0) continue;
        product *q = &p[c.n++];
        const enum g4_type at = g4_vec_dot_type(jobs[i].w->type);
        q->job = jobs[i];
        q->act_type = at;
        q->act_row_bytes = at == G4_TYPE_F32 ? (size_t)jobs[i].w->n_in * sizeof(float) : g4_row_size(at, jobs[i].w->n_in);
        if (at != G4_TYPE_F32) bytes += q->act_row_bytes * (size_t)jobs[i].n_tok;
        tokens += jobs[i].n_tok;
        if (jobs[i].w->interleaved && !runs_interleaved(k, jobs[i].w) && jobs[i].w->row_bytes > c.unpacked_bytes)
            c.unpacked_bytes = jobs[i].w->row_bytes;
    }
    const size_t unpacked = c.unpacked_bytes * (size_t)g4_pool_size(pool);
    if ((bytes || unpacked) && !(c.converted = malloc(bytes + unpacked))) {
        failed_bytes = bytes + unpacked;
        free(p);
        return;
    }
    c.unpacked = unpacked ? c.converted + bytes : NULL;
    bytes = 0;
    for (int i = 0; i < c.n; i++) {
        if (p[i].act_type == G4_TYPE_F32) {
            p[i].act = (const char *)p[i].job.x;
            continue;
        }
        p[i].act = c.converted + bytes;
        bytes += p[i].act_row_bytes * (size_t)p[i].job.n_tok;
    }
    if (c.n) {
        g4_pool_run(tokens > 1 ? pool : NULL, convert_rows, &c);
        g4_pool_run(pool, dot_rows, &c);
    }
    free(c.converted);
    free(p);
}
