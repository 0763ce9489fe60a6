/* libFuzzer target for the JSON parser, and through it the safetensors
 * header checks: any input must parse or be refused with one line, and
 * every value of a parsed tree must be reachable and consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "gguf/json.h"
#include "gguf/safetensors.h"

/* Walks the tree, reading every string byte (volatile: ASan sees each read)
 * and checking that every object key finds its own value. */
static void walk(const g4_json *v) {
    if (v->type == G4_JSON_STRING) {
        const volatile char *s = v->str;
        for (size_t i = 0; i <= v->len; i++) (void)s[i];
        if (v->str[v->len]) __builtin_trap();
    }
    if (v->type != G4_JSON_ARRAY && v->type != G4_JSON_OBJECT) return;
    for (size_t i = 0; i < v->len; i++) {
        walk(&v->items[i]);
        if (v->type == G4_JSON_OBJECT && strlen(v->keys[i].str) == v->keys[i].len &&
            g4_json_get(v, v->keys[i].str) != &v->items[i])
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[G4_ERR_LEN];
    g4_json *j = g4_json_parse((const char *)data, size, "fuzz", err);
    if (j) walk(j);
    else if (!memchr(err, 0, sizeof err) || strchr(err, '\n')) __builtin_trap();
    g4_json_free(j);

    /* the same bytes as a safetensors header (length prefix added) */
    uint8_t *file = malloc(size + 8 + 64);
    if (!file) return 0;
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)size >> (8 * i));
    memcpy(file + 8, data, size);
    memset(file + 8 + size, 0x3c, 64);
    safetensors *st = g4_safetensors_open_memory(file, size + 8 + 64, "fuzz", err);
    for (int64_t i = 0; st && i < g4_safetensors_n_tensors(st); i++) {
        const g4_safetensors_tensor *t = g4_safetensors_tensor_at(st, i);
        const volatile uint8_t *p = t->data;
        for (uint64_t b = 0; b < t->nbytes; b++) (void)p[b];
        if (g4_safetensors_find(st, t->name) != t) __builtin_trap();
    }
    if (!st && (!memchr(err, 0, sizeof err) || strchr(err, '\n'))) __builtin_trap();
    g4_safetensors_close(st);
    free(file);
    return 0;
}
