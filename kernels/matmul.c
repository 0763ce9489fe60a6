/* The matmul driver, as ggml's CPU mul_mat: convert every activation row
 * once to the weight type's partner format, then one vec_dot per (output
 * row, token), output rows split evenly over the pool's threads. Each output
 * value is computed the same way whatever the thread count. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"

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
    float (*dot)(int64_t n, const void *w, const void *act);
    const g4_weight *w;
    const char *act;
    size_t act_row_bytes;
    int64_t n_tok;
    float *y;
} dot_job;

static void dot_rows(void *arg, int ith, int nth) {
    const dot_job *j = arg;
    const int64_t n_out = j->w->n_out;
    const int64_t first = n_out * ith / nth, end = n_out * (ith + 1) / nth;
    /* token loop inside: the weight row stays in cache for every token */
    for (int64_t o = first; o < end; o++) {
        const char *row = (const char *)j->w->data + (size_t)o * j->w->row_bytes;
        for (int64_t t = 0; t < j->n_tok; t++)
            j->y[t * n_out + o] = j->dot(j->w->n_in, row, j->act + (size_t)t * j->act_row_bytes);
    }
}

void g4_matmul(const g4_weight *w, const float *x, int64_t n_tok, float *y, g4_pool *pool) {
    if (n_tok <= 0) return;
    const g4_kernels *k = g4_kernels_active();
    const enum g4_type act_type = g4_vec_dot_type(w->type);
    dot_job job = {k->vec_dot[w->type], w, (const char *)x, (size_t)w->n_in * sizeof(float), n_tok, y};
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
