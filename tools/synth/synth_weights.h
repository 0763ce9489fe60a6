/* Deterministic random weights for synthetic models.
 *
 * Exact weights: every value is a pure function of (seed, tensor name, flat
 * index) -- a splitmix64 counter stream, as in the fixture generator -- drawn
 * in the tensor's init range and then quantized with g4_quantize_row, so the
 * same seed gives the same floats in every weight type (and the tiny presets
 * with the fixture seeds reproduce the fixture models' tensor data).
 *
 * Fast weights (the full-size presets): 2-D/3-D tensors are written directly
 * as random blocks of the target type -- random codes, a per-block scale of
 * random sign chosen so each weight has the variance of the exact init -- from
 * a xoshiro256** stream per row, so rows can be produced in any order or in
 * parallel. 1-D tensors are always exact.
 */
#ifndef G4_SYNTH_WEIGHTS_H
#define G4_SYNTH_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/formats.h"
#include "tools/synth/model_shapes.h"

/* Writes rows [row0, row0 + n_rows) of tensor t (a row = ne[0] values; rows
 * run over ne[1..3]) in `type` to dst, g4_row_size(type, ne[0]) bytes per
 * row. scratch holds ne[0] floats. */
void g4_synth_rows(const g4_tensor_spec *t, enum g4_type type, uint64_t seed, bool fast, int64_t row0,
                   int64_t n_rows, void *dst, float *scratch);

#endif
