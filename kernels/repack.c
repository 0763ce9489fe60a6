#include "kernels/repack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Moves block b of the 8 plain rows to and from an interleaved block: one
 * function per type serves both directions, so packing and unpacking cannot
 * disagree. to_group: plain -> group. A NULL row is skipped. */
typedef void swap_fn(uint8_t *group_block, uint8_t *const rows[G4_REPACK_ROWS], size_t b, bool to_group);

static void move(void *to_group_side, void *row_side, size_t n, bool to_group) {
    if (to_group) memcpy(to_group_side, row_side, n);
    else memcpy(row_side, to_group_side, n);
}

static void swap_q4_0(uint8_t *gb, uint8_t *const rows[G4_REPACK_ROWS], size_t b, bool to_group) {
    block_q4_0x8 *g = (block_q4_0x8 *)gb;
    for (int r = 0; r < G4_REPACK_ROWS; r++) {
        if (!rows[r]) continue;
        block_q4_0 *blk = (block_q4_0 *)rows[r] + b;
        move(&g->d[r], &blk->d, sizeof blk->d, to_group);
        for (int k = 0; k < 4; k++) move(g->qs[k][r], blk->qs + 4 * k, 4, to_group);
    }
}

static void swap_q4_K(uint8_t *gb, uint8_t *const rows[G4_REPACK_ROWS], size_t b, bool to_group) {
    block_q4_Kx8 *g = (block_q4_Kx8 *)gb;
    for (int r = 0; r < G4_REPACK_ROWS; r++) {
        if (!rows[r]) continue;
        block_q4_K *blk = (block_q4_K *)rows[r] + b;
        move(&g->d[r], &blk->d, sizeof blk->d, to_group);
        move(&g->dmin[r], &blk->dmin, sizeof blk->dmin, to_group);
        for (int i = 0; i < 3; i++) move(g->scales[i][r], blk->scales + 4 * i, 4, to_group);
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < 8; k++) move(g->qs[c][k][r], blk->qs + 32 * c + 4 * k, 4, to_group);
    }
}

static swap_fn *swapper(enum g4_type t) {
    switch (t) {
    case G4_TYPE_Q4_0: return swap_q4_0;
    case G4_TYPE_Q4_K: return swap_q4_K;
    default: return NULL;
    }
}

bool g4_repack_supported(const g4_kernels *k, const g4_weight *w) {
    return !w->interleaved && swapper(w->type) && k->mul_rows_x8[w->type] && w->n_out >= G4_REPACK_ROWS;
}

/* Tells the kernel the mapped file pages wholly inside [p, p + size) are not
 * needed now; the partial pages at the ends may hold neighbouring tensors. */
static void drop_pages(const void *p, size_t size) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1), end = ((uintptr_t)p + size) & ~(page - 1);
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}

/* Weights are streamed once per token: 2 MB pages spare a TLB miss every
 * 4 KB. Only a hint; memory that stays in small pages works the same. */
static void *alloc_weights(size_t size) {
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (size < huge) return malloc(size);
    if (posix_memalign(&p, huge, size)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

/* The 8 plain rows of group g; interleaved block b of the group is at
 * group + b * G4_REPACK_ROWS * type_size. */
static void group_rows(uint8_t *base, const g4_weight *w, int64_t g, uint8_t *rows[G4_REPACK_ROWS]) {
    for (int r = 0; r < G4_REPACK_ROWS; r++) rows[r] = base + (size_t)(g + r) * w->row_bytes;
}

bool g4_repack(g4_weight *w, bool drop_file_pages) {
    swap_fn *swap = swapper(w->type);
    const size_t block = g4_type_info(w->type)->type_size, blocks = w->row_bytes / block;
    const size_t size = w->row_bytes * (size_t)w->n_out;
    uint8_t *dst = swap ? alloc_weights(size) : NULL;
    if (!dst) return false;
    uint8_t *src = (uint8_t *)(uintptr_t)w->data; /* only read: swap copies towards the group */
    const int64_t grouped = w->n_out / G4_REPACK_ROWS * G4_REPACK_ROWS;
    for (int64_t g = 0; g < grouped; g += G4_REPACK_ROWS) {
        uint8_t *rows[G4_REPACK_ROWS];
        group_rows(src, w, g, rows);
        uint8_t *out = dst + (size_t)g * w->row_bytes;
        for (size_t b = 0; b < blocks; b++) swap(out + b * G4_REPACK_ROWS * block, rows, b, true);
    }
    memcpy(dst + (size_t)grouped * w->row_bytes, src + (size_t)grouped * w->row_bytes,
           (size_t)(w->n_out - grouped) * w->row_bytes);
    if (drop_file_pages) drop_pages(src, size);
    w->data = dst;
    w->interleaved = 1;
    return true;
}

const void *g4_weight_row(const g4_weight *w, int64_t row, void *scratch) {
    const uint8_t *base = w->data;
    const int64_t g = row / G4_REPACK_ROWS * G4_REPACK_ROWS;
    if (!w->interleaved || g + G4_REPACK_ROWS > w->n_out) return base + (size_t)row * w->row_bytes;
    swap_fn *swap = swapper(w->type);
    const size_t block = g4_type_info(w->type)->type_size, blocks = w->row_bytes / block;
    uint8_t *rows[G4_REPACK_ROWS] = {0};
    rows[row - g] = scratch;
    uint8_t *group = (uint8_t *)(uintptr_t)(base + (size_t)g * w->row_bytes); /* only read: swap copies towards rows */
    for (size_t b = 0; b < blocks; b++) swap(group + b * G4_REPACK_ROWS * block, rows, b, false);
    return scratch;
}

void g4_repack_free(g4_weight *w) {
    if (w->interleaved) free((void *)(uintptr_t)w->data);
    w->data = NULL;
    w->interleaved = 0;
}
