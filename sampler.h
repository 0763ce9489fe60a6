/* Sampler pieces below the public API of gemma4.h, exposed so that tests can
 * reach them without loading a whole model. */
#ifndef G4_SAMPLER_H
#define G4_SAMPLER_H

#include "gemma4_internal.h"

/* Sampling defaults from the general.sampling.temp / top_k / top_p / min_p
 * keys of f (any numeric type; f may be NULL), each absent key falling back
 * to Gemma 4's recommendation (1.0, 64, 0.95, 0.0). seed is 0; the
 * penalties are llama.cpp's defaults (a window of 64, all neutral). */
gemma4_sampling g4_sampling_from_gguf(const g4_gguf_file *f);

/* The logit edits of s's chain before truncation, in place on l (n_vocab
 * floats): logit bias, suppressed tokens, then the penalties of the tokens
 * in s's current window. What gemma4_sample draws from (before any grammar
 * mask). */
void g4_sampler_edit_logits(const gemma4_sampler *s, float *l);

/* log(sum of exp(l[i])) over n finite or -inf logits, computed in double
 * without overflow: log-softmax(l)[i] = l[i] - this. */
double g4_log_sum_exp(const float *l, int32_t n);

#endif
