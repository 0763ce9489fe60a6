/* Safetensors reader: maps one file, or every shard of a checkpoint
 * directory, read-only, and exposes the tensors as zero-copy views.
 *
 * A file is: u64 little-endian header length N, N bytes of JSON
 * {"NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
 * ..., "__metadata__": {...}}, then the data; offsets count from the end of
 * the header. A file that opens has been checked for: N inside the file; a
 * JSON object header (parsed by gguf/json.c); known dtypes; shapes of at most
 * SAFETENSORS_MAX_DIMS non-negative sizes without overflow; end - begin equal
 * to the element count times the dtype size; every tensor inside the data;
 * no two tensors overlapping. So data[0, nbytes) may be read without further
 * checks (unaligned: read it with memcpy, or with g4_safetensors_read_f32).
 *
 * Errors: one line, "PATH: what is wrong", in a G4_ERR_LEN buffer.
 */
#ifndef G4_SAFETENSORS_H
#define G4_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/types.h"

#define SAFETENSORS_MAX_DIMS 8
#define SAFETENSORS_MAX_HEADER (100u << 20) /* the format's own limit */

typedef struct g4_safetensors_tensor {
    const char *name;
    char dtype[8];        /* as written: "BF16", "F32", "I64", ... */
    bool is_float;        /* F32, F16 or BF16: readable with g4_safetensors_read_f32 */
    enum g4_type type;    /* G4_TYPE_F32/F16/BF16 when is_float */
    uint32_t n_dims;
    int64_t shape[SAFETENSORS_MAX_DIMS]; /* as stored: shape[0] is the slowest axis */
    int64_t n_elems;
    uint64_t nbytes;
    const void *data;     /* into the mapping, any alignment */
    const char *file;     /* the file holding it */
} g4_safetensors_tensor;

typedef struct safetensors safetensors;

/* path: a .safetensors file, or a directory with model.safetensors.index.json
 * (sharded: every file its weight_map names, each tensor in the shard the map
 * says) or a single model.safetensors. */
safetensors *g4_safetensors_open(const char *path, char *err);
/* One file's bytes owned by the caller (kept alive while in use); name is
 * used in messages. For tests and fuzzing. */
safetensors *g4_safetensors_open_memory(const void *buf, size_t size, const char *name, char *err);
void g4_safetensors_close(safetensors *st);

int64_t g4_safetensors_n_tensors(const safetensors *st);
const g4_safetensors_tensor *g4_safetensors_tensor_at(const safetensors *st, int64_t i); /* sorted by name */
const g4_safetensors_tensor *g4_safetensors_find(const safetensors *st, const char *name);

/* Elements [first, first + n) of a float tensor, converted to f32 exactly
 * (F16 and BF16 widen without rounding). */
void g4_safetensors_read_f32(const g4_safetensors_tensor *t, int64_t first, int64_t n, float *dst);

#endif
