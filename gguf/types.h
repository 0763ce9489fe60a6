/* The ggml tensor types as GGUF files store them: type ids, block layouts
 * and the table of block sizes. The GGUF reader checks tensors against it
 * and the kernels compute on these layouts, so it sits below both.
 *
 * Every quantized format stores a row as consecutive blocks of `blck_size`
 * values; a block is self-contained (its own scale(s) plus packed codes).
 * Layouts are byte-for-byte those of ggml, so GGUF tensor data is used in place.
 */
#ifndef G4_TYPES_H
#define G4_TYPES_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids as stored in GGUF tensor infos (gaps are retired ids). */
enum g4_type {
    G4_TYPE_F32 = 0,
    G4_TYPE_F16 = 1,
    G4_TYPE_Q4_0 = 2,
    G4_TYPE_Q4_1 = 3,
    G4_TYPE_Q5_0 = 6,
    G4_TYPE_Q5_1 = 7,
    G4_TYPE_Q8_0 = 8,
    G4_TYPE_Q8_1 = 9,
    G4_TYPE_Q2_K = 10,
    G4_TYPE_Q3_K = 11,
    G4_TYPE_Q4_K = 12,
    G4_TYPE_Q5_K = 13,
    G4_TYPE_Q6_K = 14,
    G4_TYPE_Q8_K = 15,
    G4_TYPE_IQ4_NL = 20,
    G4_TYPE_IQ4_XS = 23,
    G4_TYPE_BF16 = 30,
    G4_TYPE_COUNT = 40 /* one past the largest id ggml has assigned */
};

#define G4_QK 32   /* values per block of the 32-wide formats */
#define G4_QK_K 256 /* values per super-block of the K formats */
#define G4_K_SCALE_SIZE 12

typedef uint16_t g4_fp16; /* IEEE binary16 bits */
typedef uint16_t g4_bf16; /* bfloat16 bits */

typedef struct { g4_fp16 d; uint8_t qs[G4_QK / 2]; } block_q4_0;
typedef struct { g4_fp16 d, m; uint8_t qs[G4_QK / 2]; } block_q4_1;
typedef struct { g4_fp16 d; uint8_t qh[4]; uint8_t qs[G4_QK / 2]; } block_q5_0;
typedef struct { g4_fp16 d, m; uint8_t qh[4]; uint8_t qs[G4_QK / 2]; } block_q5_1;
typedef struct { g4_fp16 d; int8_t qs[G4_QK]; } block_q8_0;
typedef struct { g4_fp16 d, s; int8_t qs[G4_QK]; } block_q8_1; /* s = d * sum(qs) */
typedef struct { uint8_t scales[G4_QK_K / 16]; uint8_t qs[G4_QK_K / 4]; g4_fp16 d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[G4_QK_K / 8]; uint8_t qs[G4_QK_K / 4]; uint8_t scales[12]; g4_fp16 d; } block_q3_K;
typedef struct { g4_fp16 d, dmin; uint8_t scales[G4_K_SCALE_SIZE]; uint8_t qs[G4_QK_K / 2]; } block_q4_K;
typedef struct { g4_fp16 d, dmin; uint8_t scales[G4_K_SCALE_SIZE]; uint8_t qh[G4_QK_K / 8]; uint8_t qs[G4_QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[G4_QK_K / 2]; uint8_t qh[G4_QK_K / 4]; int8_t scales[G4_QK_K / 16]; g4_fp16 d; } block_q6_K;
typedef struct { float d; int8_t qs[G4_QK_K]; int16_t bsums[G4_QK_K / 16]; } block_q8_K; /* activations only */
typedef struct { g4_fp16 d; uint8_t qs[G4_QK / 2]; } block_iq4_nl;
typedef struct { g4_fp16 d; uint16_t scales_h; uint8_t scales_l[G4_QK_K / 64]; uint8_t qs[G4_QK_K / 2]; } block_iq4_xs;

static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 layout");
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 layout");
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 layout");
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 layout");
static_assert(sizeof(block_q2_K) == 84, "block_q2_K layout");
static_assert(sizeof(block_q3_K) == 110, "block_q3_K layout");
static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");
static_assert(sizeof(block_q5_K) == 176, "block_q5_K layout");
static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");
static_assert(sizeof(block_q8_K) == 292, "block_q8_K layout");
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl layout");
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs layout");

typedef struct {
    const char *name;  /* ggml's name: "q4_0", "f32", ... */
    int64_t blck_size; /* values per block */
    size_t type_size;  /* bytes per block */
    bool weights;      /* may appear as a model weight (can be dequantized) */
} g4_type_traits;

/* Traits of a type id, or NULL when the id is unknown or not supported here. */
const g4_type_traits *g4_type_info(uint32_t type);
/* Name of any ggml type id, including those we cannot run ("iq2_xxs", ...);
 * "?" when the id was never assigned. Used in error messages. */
const char *g4_type_name(uint32_t type);
/* Bytes of a row of n values; n must be a multiple of the block size. */
size_t g4_row_size(enum g4_type type, int64_t n);

#endif
