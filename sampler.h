/* Sampler pieces below the public API of gemma4.h, exposed so that tests can
 * reach them without loading a whole model. */
#ifndef G4_SAMPLER_H
#define G4_SAMPLER_H

#include "gemma4_internal.h"

/* Sampling defaults from the general.sampling.temp / top_k / top_p / min_p
 * keys of f (any numeric type; f may be NULL), each absent key falling back
 * to Gemma 4's recommendation (1.0, 64, 0.95, 0.0). seed is 0. */
gemma4_sampling g4_sampling_from_gguf(const g4_gguf_file *f);

#endif
