/* Tensor formats: scalar conversion of the ggml types (gguf/types.h: ids,
 * block layouts, sizes) to and from float. */
#ifndef G4_FORMATS_H
#define G4_FORMATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/types.h"

/* The 16 code points of the IQ4 formats (non-uniform 4-bit grid). */
extern const int8_t g4_iq4nl_values[16];

/* Scalar dequantization of n values (n a multiple of the block size). */
void g4_dequantize_row(enum g4_type type, const void *src, float *dst, int64_t n);

/* Scalar reference quantization of n values; bytes equal ggml's reference
 * quantizers (quantize_row_*_ref). Returns bytes written, 0 if the type has no
 * quantizer here. Supported: F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K (+ Q8_K). */
size_t g4_quantize_row(enum g4_type type, const float *src, void *dst, int64_t n);
bool g4_can_quantize(enum g4_type type);

/* fp16 / bf16 <-> f32, round to nearest even, NaN and infinities preserved. */
float g4_fp16_to_fp32(g4_fp16 h);
g4_fp16 g4_fp32_to_fp16(float f);
float g4_bf16_to_fp32(g4_bf16 h);
g4_bf16 g4_fp32_to_bf16(float f);

#endif
