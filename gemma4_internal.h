/* What the tools, tests and the server reach beyond gemma4.h: the internal
 * layers the public API is built on, and the model's pieces as their types.
 * Embedders see only gemma4.h (installed alone); names here start with g4_
 * so that the gemma4_ prefix stays the public API. */
#ifndef G4_GEMMA4_INTERNAL_H
#define G4_GEMMA4_INTERNAL_H

#include "error.h"
#include "gemma4.h"
#include "gguf/gguf.h"
#include "kernels/formats.h"
#include "kvcache.h"
#include "tokenizer/tokenizer.h"

const g4_vocab *g4_model_vocab(const gemma4_model *m);
const g4_gguf_file *g4_model_gguf(const gemma4_model *m);

#endif
