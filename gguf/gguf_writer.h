/* GGUF v3 writer: collect metadata and tensor infos, then stream the tensor
 * data in the order the tensors were added, so a model of any size is
 * written with only one chunk of it in memory.
 *
 *   g4_gguf_writer *w = g4_gguf_writer_new("out.gguf", 0, err);   // alignment 32
 *   g4_gguf_writer_set_u32(w, "gemma4.block_count", 35, err);
 *   g4_gguf_writer_add_tensor(w, "token_embd.weight", G4_TYPE_Q4_0, 2, ne, err);
 *   g4_gguf_writer_begin(w, err);                  // header + tensor infos
 *   g4_gguf_writer_write(w, bytes, n, err);        // any chunking; padding between
 *   g4_gguf_writer_finish(w, err);                 //   tensors is inserted here
 *   g4_gguf_writer_free(w);
 *
 * Every function returns 0, or -1 with a one-line "PATH: what is wrong" in err
 * (G4_ERR_LEN bytes). After a failed call only g4_gguf_writer_free is useful.
 * The file is written as PATH.partial-PID and renamed to PATH by a successful
 * finish, so PATH never holds a half-written model (and a reader that has
 * the old PATH mapped keeps its data); g4_gguf_writer_free removes an unfinished
 * partial file.
 */
#ifndef G4_GGUF_WRITER_H
#define G4_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "gguf/types.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 63 /* longest tensor name llama.cpp accepts (GGML_MAX_NAME - 1) */

typedef struct g4_gguf_writer g4_gguf_writer;

/* alignment 0 means 32; any other power of two is recorded as
 * general.alignment (u32). Nothing touches the file before g4_gguf_writer_begin. */
g4_gguf_writer *g4_gguf_writer_new(const char *path, uint32_t alignment, char *err);
void g4_gguf_writer_free(g4_gguf_writer *w);

/* Scalar metadata. val points at one value of the C type matching `type`
 * (uint8_t for GGUF_TYPE_UINT8, ..., bool, double); for GGUF_TYPE_STRING it is
 * the NUL-terminated string itself. Keys must be non-empty and unique. */
int g4_gguf_writer_set(g4_gguf_writer *w, const char *key, enum g4_gguf_value_type type, const void *val, char *err);
int g4_gguf_writer_set_u32(g4_gguf_writer *w, const char *key, uint32_t v, char *err);
int g4_gguf_writer_set_i32(g4_gguf_writer *w, const char *key, int32_t v, char *err);
int g4_gguf_writer_set_f32(g4_gguf_writer *w, const char *key, float v, char *err);
int g4_gguf_writer_set_bool(g4_gguf_writer *w, const char *key, bool v, char *err);
int g4_gguf_writer_set_str(g4_gguf_writer *w, const char *key, const char *s, char *err);
/* Array metadata: n packed elements of type elem (not ARRAY); for
 * GGUF_TYPE_STRING, data is `const char *const *` (NUL-terminated strings). */
int g4_gguf_writer_set_arr(g4_gguf_writer *w, const char *key, enum g4_gguf_value_type elem, const void *data,
                        uint64_t n, char *err);

/* Copies one metadata entry of a file being read, in its stored type (the
 * reader widens scalars; they are narrowed back). A string holding a NUL
 * byte cannot be passed on as a C string, so it is refused. */
int g4_gguf_writer_copy_kv(g4_gguf_writer *w, const g4_gguf_kv *kv, char *err);

/* Declares the next tensor: ne in ggml order (ne[0] contiguous), every ne > 0,
 * ne[0] a multiple of the type's block size. Names unique, 1..63 bytes. */
int g4_gguf_writer_add_tensor(g4_gguf_writer *w, const char *name, enum g4_type type, uint32_t n_dims,
                           const int64_t *ne, char *err);
int64_t g4_gguf_writer_n_tensors(const g4_gguf_writer *w);
uint64_t g4_gguf_writer_tensor_nbytes(const g4_gguf_writer *w, int64_t i); /* data bytes, unpadded */

/* Creates the file and writes the header and tensor infos; metadata and
 * tensors can no longer be added. */
int g4_gguf_writer_begin(g4_gguf_writer *w, char *err);
/* Appends the next n bytes of tensor data (tensors in the order added; a
 * call may span tensors). Writing more than was declared is an error. */
int g4_gguf_writer_write(g4_gguf_writer *w, const void *data, size_t n, char *err);
/* Checks that every tensor got all its bytes, then flushes and closes. */
int g4_gguf_writer_finish(g4_gguf_writer *w, char *err);

#endif
