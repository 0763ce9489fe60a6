/* libFuzzer target for the GGUF reader: any input must parse or be refused
 * with an error, and everything a parsed file exposes must be readable. */
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"

/* Reads every byte (volatile: the reads must happen) so ASan sees any view
 * that points outside the input. */
static void touch(const void *p, uint64_t n) {
    const volatile unsigned char *c = p;
    for (uint64_t i = 0; i < n; i++) (void)c[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open_memory(data, size, "fuzz", err);
    if (!f) {
        if (!memchr(err, 0, sizeof err) || strchr(err, '\n')) __builtin_trap(); /* one line, terminated */
        return 0;
    }
    for (int64_t i = 0; i < g4_gguf_n_kv(f); i++) {
        const g4_gguf_kv *kv = g4_gguf_kv_at(f, i);
        if (g4_gguf_find_kv(f, kv->key) != kv) __builtin_trap();
        touch(kv->key, strlen(kv->key));
        if (kv->type == GGUF_TYPE_STRING) touch(kv->val.str.ptr, kv->val.str.len);
        if (kv->type != GGUF_TYPE_ARRAY) continue;
        const void *arr;
        uint64_t n;
        if (g4_gguf_get_arr(f, kv->key, kv->arr_type, &arr, &n, err) != GGUF_OK || n != kv->arr_n) __builtin_trap();
        if (kv->arr_type != GGUF_TYPE_STRING) {
            touch(arr, n * g4_gguf_value_size(kv->arr_type));
            continue;
        }
        const g4_gguf_str *s = arr;
        for (uint64_t j = 0; j < n; j++) touch(s[j].ptr, s[j].len);
    }
    uint32_t u32;
    float f32;
    g4_gguf_get_u32(f, "general.alignment", &u32, err);
    g4_gguf_get_f32(f, "general.alignment", &f32, err);
    for (int64_t i = 0; i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        if (g4_gguf_find_tensor(f, t->name) != t) __builtin_trap();
        touch(t->name, strlen(t->name));
        /* first and last byte: reading whole tensors would only slow the search */
        touch(t->data, 1);
        touch((const uint8_t *)t->data + t->nbytes - 1, 1);
    }
    g4_gguf_close(f);
    return 0;
}
