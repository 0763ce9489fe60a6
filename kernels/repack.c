#include "kernels/repack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

bool g4_repack_supported(const g4_kernels *k, const g4_weight *w) {
    return !w->interleaved && k->mul_rows_x4[w->type] && w->n_out >= G4_REPACK_ROWS;
}

/* Tells the kernel the mapped file pages wholly inside [p, p + size) are not
 * needed now; the partial pages at the ends may hold neighbouring tensors. */
static void drop_pages(const void *p, size_t size) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1), end = ((uintptr_t)p + size) & ~(page - 1);
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}

bool g4_repack(g4_weight *w, bool drop_file_pages) {
    const size_t block = g4_type_info(w->type)->type_size, blocks = w->row_bytes / block;
    const size_t size = w->row_bytes * (size_t)w->n_out;
    uint8_t *dst = malloc(size);
    if (!dst) return false;
    const uint8_t *src = w->data;
    const int64_t grouped = w->n_out / G4_REPACK_ROWS * G4_REPACK_ROWS;
    for (int64_t g = 0; g < grouped; g += G4_REPACK_ROWS) {
        uint8_t *out = dst + (size_t)g * w->row_bytes;
        for (size_t b = 0; b < blocks; b++)
            for (int r = 0; r < G4_REPACK_ROWS; r++, out += block)
                memcpy(out, src + (size_t)(g + r) * w->row_bytes + b * block, block);
    }
    memcpy(dst + (size_t)grouped * w->row_bytes, src + (size_t)grouped * w->row_bytes,
           (size_t)(w->n_out - grouped) * w->row_bytes);
    if (drop_file_pages) drop_pages(src, size);
    w->data = dst;
    w->interleaved = 1;
    return true;
}

void g4_repack_free(g4_weight *w) {
    if (w->interleaved) free((void *)w->data);
    w->data = NULL;
    w->interleaved = 0;
}
