/* The synthetic model writer behind `gemma4 mkmodel`, callable in-process
 * (tests): writes a Gemma 4 GGUF for a finalized shape. */
#ifndef G4_MKMODEL_H
#define G4_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/formats.h"
#include "tools/synth/model_shapes.h"

/* What a file carries besides its shape and weights. name: general.name
 * (NULL: "gemma4-synthetic-PRESET-TYPE-sSEED"). vocab: a GGUF whose
 * tokenizer.* keys are copied as they are, its token count equal to
 * s->vocab_size (NULL: the synthetic vocabulary of that size). Both let
 * mkmodel reproduce a given file byte for byte, e.g. the test fixtures. */
typedef struct g4_mkmodel_meta {
    const char *name;
    const g4_gguf_file *vocab;
} g4_mkmodel_meta;

/* type: F32, F16, Q8_0, Q4_0 or Q4_K (the weight type of the file; see
 * g4_shape_tensor_type for the per-tensor rule). progress: a status line on
 * stderr while writing. 0, or -1 with err set (a partial file is removed). */
int g4_mkmodel_write(const g4_shape *s, enum g4_type type, uint64_t seed, const char *path, bool progress,
                     char *err);
/* The same with meta (NULL: the defaults above). */
int g4_mkmodel_write_meta(const g4_shape *s, enum g4_type type, uint64_t seed, const g4_mkmodel_meta *meta,
                          const char *path, bool progress, char *err);

#endif
