/* Pieces shared by `gemma4 convert` (Hugging Face checkpoint -> GGUF) and
 * `gemma4 quantize` (GGUF -> GGUF): output type rules, the QAT-aware Q4_0
 * quantizer, streaming one tensor into a g4_gguf_writer, and the two halves of
 * a conversion (config.json keys, tokenizer files). */
#ifndef G4_CONVERT_H
#define G4_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf_writer.h"
#include "gguf/json.h"
#include "kernels/formats.h"

/* --type names: f32 f16 bf16 q8_0 q4_0 q4_k q6_k. -1 if unknown. */
int convert_parse_type(const char *s, enum g4_type *type);
/* general.file_type (llama_ftype) of a file whose weights are `type`. */
uint32_t convert_file_type(enum g4_type type);
/* Type of one tensor in a file of weight type file_type, llama-quantize
 * style: 1-D tensors F32; float file types as asked; quantized types per
 * g4_shape_tensor_type (router and PLE projection F16, Q4_K -> Q4_0 where a
 * row is not a multiple of 256). */
enum g4_type convert_tensor_type(const char *name, uint32_t n_dims, const int64_t *ne, enum g4_type file_type);

/* QAT-aware Q4_0. A group of 32 on a Q4_0 grid (value = k * s, k integer in
 * [-8, 7], s one scale per group, as QAT checkpoints store them in BF16) is
 * stored with exactly that s and those k. Which grid: positive s before
 * negative, then the finest (largest |k| for the largest value); a value
 * counts as on the grid when k * s rounded to the source dtype gives it back
 * bit for bit. An s that FP16 cannot hold exactly (subnormal, too large),
 * and every group on no grid, gets the lowest-error block among ggml's own
 * choice and a few other scales (ggml's wins ties). An all-zero group is
 * ggml's block (d = 0 / -8 = -0, codes 8), as in any llama.cpp file. */
typedef struct g4_qat_stats {
    int64_t blocks;
    int64_t on_grid;       /* stored exactly on their grid (all-zero groups included) */
    int64_t naive_exact;   /* of those, how many ggml's max/-8 would have got byte-exact too */
    int64_t fp16_fallback; /* on a grid whose scale FP16 cannot hold */
    int64_t off_grid;      /* on no grid */
} g4_qat_stats;

/* n values (a multiple of 32) read from a tensor of dtype src (F32, F16 or
 * BF16) -> n / 32 blocks; counts into *st. */
void g4_qat_quantize_q4_0(const float *x, int64_t n, enum g4_type src, block_q4_0 *out, g4_qat_stats *st);
void g4_qat_stats_add(g4_qat_stats *sum, const g4_qat_stats *st);

/* Source of one tensor's values, a row (ne[0] values) at a time: returns the
 * row's floats, either a pointer into the source or buf (ne[0] floats). */
typedef const float *(*convert_row_fn)(void *ctx, int64_t row, float *buf);

/* Streams a tensor of type `type` and shape ne (4 entries, unused 1) whose
 * rows come from row(); src (F32/F16/BF16) is the dtype the floats were
 * stored in, used by the QAT quantizer when qat is set and type is Q4_0
 * (stats then counted into *st). */
int convert_write_tensor(g4_gguf_writer *w, enum g4_type type, const int64_t *ne, convert_row_fn row, void *ctx,
                         enum g4_type src, bool qat, g4_qat_stats *st, char *err);

/* config.json of Gemma4ForConditionalGeneration (hparams in "text_config")
 * or Gemma4ForCausalLM (at the top level). */
typedef struct convert_config {
    int32_t n_layer, n_embd, n_vocab, n_head, n_head_kv, n_head_kv_full; /* n_head_kv_full -1: not given */
    int32_t head_dim, head_dim_full, n_ff, n_embd_per_layer, n_kv_shared, n_swa, n_ctx;
    int32_t n_expert, n_expert_used, n_ff_exp;
    bool double_wide_mlp;
    bool swa[4096];
    float rms_eps, softcap, rope_base, rope_base_swa, partial_rotary_full, partial_rotary_swa;
    bool has_softcap;
} convert_config;

#define CONVERT_MAX_LAYERS 4096

/* Reads and checks the hparams of the parsed config.json at path; 0, or -1
 * with err naming path. */
int convert_read_config(const g4_json *root, const char *path, convert_config *c, char *err);
/* All gemma4.* keys, llama.cpp's converter style. */
int convert_write_config_keys(const convert_config *c, g4_gguf_writer *w, char *err);
/* The rope_freqs values for full layers (head_dim_full / 2 of them). */
void convert_rope_freqs(const convert_config *c, float *out);
int32_t convert_layer_n_ff(const convert_config *c, int32_t il);

/* tokenizer.json + tokenizer_config.json (+ chat_template.jinja) in dir ->
 * tokenizer.ggml.* and tokenizer.chat_template; config (may be NULL) is the
 * parsed config.json, the fallback for special token ids. *n_vocab gets the
 * token count. */
int convert_write_vocab(const char *dir, const g4_json *config, g4_gguf_writer *w, int32_t *n_vocab, char *err);

/* The whole conversion behind `gemma4 convert`: HF checkpoint directory ->
 * GGUF of weight type `type` (convert_parse_type names). With qat, Q4_0
 * tensors use g4_qat_quantize_q4_0 and *total (if not NULL) gets the sums;
 * verbose prints progress, notes and the per-tensor QAT shares to stderr. */
int g4_convert(const char *hf_dir, const char *out, enum g4_type type, bool qat, bool verbose, g4_qat_stats *total,
               char *err);

/* `gemma4 quantize`: GGUF with float weights -> GGUF of weight type `type`
 * (metadata copied, general.file_type updated). */
int g4_quantize_gguf(const char *in, const char *out, enum g4_type type, bool qat, bool verbose, g4_qat_stats *total,
                     char *err);

/* Prints one "NAME: N blocks, X% byte-exact on a grid ..." line to stderr. */
void g4_qat_stats_print(const char *name, const g4_qat_stats *st);

#endif
