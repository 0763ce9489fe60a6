/* GGUF v3 writer: collect metadata and tensor infos, then stream the tensor
 * data in the order the tensors were added, so a model of any size is
 * written with only one chunk of it in memory.
 *
 *   gguf_writer *w = gguf_writer_new("out.gguf", 0, err);   // alignment 32
 *   gguf_writer_set_u32(w, "gemma4.block_count", 35, err);
 *   gguf_writer_add_tensor(w, "token_embd.weight", G4_TYPE_Q4_0, 2, ne, err);
 *   gguf_writer_begin(w, err);                  // header + tensor infos
 *   gguf_writer_write(w, bytes, n, err);        // any chunking; padding between
 *   gguf_writer_finish(w, err);                 //   tensors is inserted here
 *   gguf_writer_free(w);
 *
 * Every function returns 0, or -1 with a one-line "PATH: what is wrong" in err
 * (G4_ERR_LEN bytes). After a failed call only gguf_writer_free is useful.
 * The file is written as PATH.partial-PID and renamed to PATH by a successful
 * finish, so PATH never holds a half-written model (and a reader that has
 * the old PATH mapped keeps its data); gguf_writer_free removes an unfinished
 * partial file.
 */
#ifndef G4_GGUF_WRITER_H
#define G4_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/formats.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 63 /* longest tensor name llama.cpp accepts (GGML_MAX_NAME - 1) */

typedef struct gguf_writer gguf_writer;

/* alignment 0 means 32; any other power of two is recorded as
 * general.alignment (u32). Nothing touches the file before gguf_writer_begin. */
gguf_writer *gguf_writer_new(const char *path, uint32_t alignment, char *err);
void gguf_writer_free(gguf_writer *w);

/* Scalar metadata. val points at one value of the C type matching `type`
 * (uint8_t for GGUF_TYPE_UINT8, ..., bool, double); for GGUF_TYPE_STRING it is
 * the NUL-terminated string itself. Keys must be non-empty and unique. */
int gguf_writer_set(gguf_writer *w, const char *key, enum gguf_value_type type, const void *val, char *err);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, char *err);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, char *err);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v, char *err);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, char *err);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, char *err);
/* Array metadata: n packed elements of type elem (not ARRAY); for
 * GGUF_TYPE_STRING, data is `const char *const *` (NUL-terminated strings). */
int gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_value_type elem, const void *data,
                        uint64_t n, char *err);

/* Declares the next tensor: ne in ggml order (ne[0] contiguous), every ne > 0,
 * ne[0] a multiple of the type's block size. Names unique, 1..63 bytes. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, enum g4_type type, uint32_t n_dims,
                           const int64_t *ne, char *err);
int64_t gguf_writer_n_tensors(const gguf_writer *w);
uint64_t gguf_writer_tensor_nbytes(const gguf_writer *w, int64_t i); /* data bytes, unpadded */

/* Creates the file and writes the header and tensor infos; metadata and
 * tensors can no longer be added. */
int gguf_writer_begin(gguf_writer *w, char *err);
/* Appends the next n bytes of tensor data (tensors in the order added; a
 * call may span tensors). Writing more than was declared is an error. */
int gguf_writer_write(gguf_writer *w, const void *data, size_t n, char *err);
/* Checks that every tensor got all its bytes, then flushes and closes. */
int gguf_writer_finish(gguf_writer *w, char *err);

#endif
