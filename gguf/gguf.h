/* GGUF reader: maps a file read-only and private (or reads it into memory,
 * and may lock it: g4_gguf_open_ex), validates every header
 * field before trusting it, and exposes metadata and tensors as zero-copy
 * views into the mapping.
 *
 * Errors are one line, "PATH: what is wrong", written to the caller's buffer
 * of G4_ERR_LEN bytes (error.h).
 *
 * A file that opens has been checked for: version 2 or 3, little-endian;
 * unique non-empty keys; general.alignment a u32 power of two (default 32);
 * unique tensor names shorter than 64 bytes; 1..4 positive dimensions;
 * a supported weight type with ne[0] a multiple of its block size; offsets
 * aligned, non-overlapping, and each tensor plus its padding inside the file.
 * So every tensor's data[0, nbytes) may be read without further checks.
 */
#ifndef G4_GGUF_H
#define G4_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define GGUF_MAX_DIMS 4

enum g4_gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* A string inside the mapping: not NUL-terminated. */
typedef struct g4_gguf_str {
    const char *ptr;
    uint64_t len;
} g4_gguf_str;

typedef struct g4_gguf_kv {
    const char *key;           /* NUL-terminated copy */
    enum g4_gguf_value_type type;
    union {                    /* scalars, widened */
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        g4_gguf_str str;
    } val;
    /* arrays: element type, count, and the elements (in the mapping; for
     * strings, an index built at load time) */
    enum g4_gguf_value_type arr_type;
    uint64_t arr_n;
    const void *arr_data;      /* elements, aligned for their type (numeric
                                  arrays are copied out of the mapping), or
                                  g4_gguf_str[] for strings */
} g4_gguf_kv;

typedef struct g4_gguf_tensor {
    const char *name;          /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ggml order, ne[0] contiguous; unused dims 1 */
    uint32_t type;             /* enum g4_type */
    uint64_t offset;           /* from the start of the data section */
    uint64_t nbytes;
    const void *data;          /* into the mapping */
} g4_gguf_tensor;

typedef struct g4_gguf_file g4_gguf_file;

g4_gguf_file *g4_gguf_open(const char *path, char *err); /* = g4_gguf_open_ex(path, NULL, err) */
/* How the bytes are held; zeroed (or NULL): mapped, not locked. */
typedef struct g4_gguf_open_params {
    bool read; /* read the whole file into anonymous memory instead of mapping it
                  (llama.cpp's --no-mmap); still page-aligned, so tensors keep
                  their alignment and whole pages can be released */
    bool lock; /* mlock the bytes (read in now); a refusal fails the open with
                  a message naming RLIMIT_MEMLOCK */
} g4_gguf_open_params;
g4_gguf_file *g4_gguf_open_ex(const char *path, const g4_gguf_open_params *p, char *err);
/* Parse a buffer the caller owns (kept alive while the result is used);
 * name is used in error messages. For fuzzing and tests. */
g4_gguf_file *g4_gguf_open_memory(const void *buf, size_t size, const char *name, char *err);
void g4_gguf_close(g4_gguf_file *f);

const char *g4_gguf_path(const g4_gguf_file *f);
uint32_t g4_gguf_version(const g4_gguf_file *f);
uint64_t g4_gguf_alignment(const g4_gguf_file *f);
uint64_t g4_gguf_data_offset(const g4_gguf_file *f); /* file offset of the data section */
uint64_t g4_gguf_file_size(const g4_gguf_file *f);

int64_t g4_gguf_n_kv(const g4_gguf_file *f);
const g4_gguf_kv *g4_gguf_kv_at(const g4_gguf_file *f, int64_t i);
const g4_gguf_kv *g4_gguf_find_kv(const g4_gguf_file *f, const char *key); /* NULL if absent */

int64_t g4_gguf_n_tensors(const g4_gguf_file *f);
const g4_gguf_tensor *g4_gguf_tensor_at(const g4_gguf_file *f, int64_t i);
const g4_gguf_tensor *g4_gguf_find_tensor(const g4_gguf_file *f, const char *name);

const char *g4_gguf_type_name(enum g4_gguf_value_type t); /* "u32", "string", ... */
/* Bytes of one scalar of type t in a file; 0 for string and array. */
size_t g4_gguf_value_size(enum g4_gguf_value_type t);

/* Typed getters. Return GGUF_OK, GGUF_ENOKEY (err untouched) or GGUF_ETYPE
 * (err: "PATH: key 'K' is i32, expected u32"). No reinterpretation between
 * types: asking for u32 of an i32 key is an error. */
enum { GGUF_OK = 0, GGUF_ENOKEY = 1, GGUF_ETYPE = 2 };
int g4_gguf_get_u32(const g4_gguf_file *f, const char *key, uint32_t *out, char *err);
int g4_gguf_get_i32(const g4_gguf_file *f, const char *key, int32_t *out, char *err);
int g4_gguf_get_f32(const g4_gguf_file *f, const char *key, float *out, char *err);
int g4_gguf_get_bool(const g4_gguf_file *f, const char *key, bool *out, char *err);
int g4_gguf_get_str(const g4_gguf_file *f, const char *key, g4_gguf_str *out, char *err);
/* Arrays: elem must match the stored element type. *data points at n packed
 * elements (for GGUF_TYPE_STRING: n g4_gguf_str). */
int g4_gguf_get_arr(const g4_gguf_file *f, const char *key, enum g4_gguf_value_type elem,
                 const void **data, uint64_t *n, char *err);

#endif
