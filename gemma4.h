/* gemma4.c public API: load a Gemma 4 GGUF, run the forward pass, sample.
 *
 * Typical use:
 *   char err[G4_ERR_LEN];
 *   gemma4_model *m = gemma4_load("model.gguf", err);
 *   gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 4096}, err);
 *   gemma4_eval(s, ids, n, logits, false, err);     // logits of the last position
 *   id = gemma4_sample(sampler, logits);
 * Every function that can fail returns NULL or -1 and writes one line,
 * naming the file or object and what is wrong, to err (G4_ERR_LEN bytes).
 */
#ifndef GEMMA4_H
#define GEMMA4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"          /* G4_ERR_LEN, gguf_file */
#include "tokenizer/tokenizer.h" /* g4_vocab, g4_tokenize, ... */

typedef struct gemma4_model gemma4_model;
typedef struct gemma4_session gemma4_session;

gemma4_model *gemma4_load(const char *path, char *err);
void gemma4_model_free(gemma4_model *m);

const g4_vocab *gemma4_model_vocab(const gemma4_model *m);
const gguf_file *gemma4_model_gguf(const gemma4_model *m);
int32_t gemma4_n_vocab(const gemma4_model *m);
int32_t gemma4_n_ctx_train(const gemma4_model *m);
/* "E2B", "E4B", "26B-A4B", "31B" or "unknown" (by block count, as llama.cpp) */
const char *gemma4_variant(const gemma4_model *m);
/* true for the sizes whose chat template opens an empty thought channel when
 * thinking is off (26B-A4B, 31B: no per-layer embeddings) */
bool gemma4_empty_thought_channel(const gemma4_model *m);

/* What the loader derived from the file (spec §2.2), for `gemma4 info`. */
typedef struct gemma4_info {
    int32_t n_layer, n_embd, n_head, n_vocab, n_ctx_train, n_swa, n_embd_per_layer;
    int32_t n_expert, n_expert_used, n_ff_exp, n_kv_shared;
    float rms_eps, softcap;
    uint64_t weight_bytes;       /* all tensor data, mapped from the file */
    uint64_t kv_bytes_per_token; /* K and V of every layer that owns a cache */
} gemma4_info;

typedef struct gemma4_layer_info {
    bool swa, has_kv, moe, has_v; /* has_v false: the cache it reads holds V = raw K */
    int32_t kv_src;               /* layer whose cache it reads */
    int32_t head_dim, n_head_kv, n_rot, n_ff;
    float rope_base, out_scale;
    uint64_t kv_bytes_per_token;
} gemma4_layer_info;

void gemma4_model_info(const gemma4_model *m, gemma4_info *info);
void gemma4_layer_info_get(const gemma4_model *m, int32_t il, gemma4_layer_info *info);

typedef struct gemma4_session_params {
    int32_t n_ctx;     /* positions the session can hold; 0 = min(model, 4096) */
    int32_t n_threads; /* 0 = number of cores */
    int32_t n_ubatch;  /* tokens per forward call; 0 = all at once (prefill) */
} gemma4_session_params;

gemma4_session *gemma4_session_new(const gemma4_model *m, const gemma4_session_params *p, char *err);
void gemma4_session_free(gemma4_session *s);
int32_t gemma4_session_pos(const gemma4_session *s); /* tokens already in the cache */
int32_t gemma4_session_n_ctx(const gemma4_session *s);
void gemma4_session_truncate(gemma4_session *s, int32_t n_keep); /* drop positions >= n_keep */

/* Feeds n tokens at the next positions. Writes n rows of n_vocab logits to
 * logits when all_logits, else only the last row (logits may be NULL to skip
 * the output head). Returns 0, or -1 with err set (context full, bad id). */
int gemma4_eval(gemma4_session *s, const int32_t *tokens, int32_t n, float *logits, bool all_logits, char *err);

/* Sampling. Defaults come from the model's general.sampling.* keys when
 * present, else Gemma 4's recommendation: temperature 1.0, top_k 64,
 * top_p 0.95, min_p 0. temperature 0 means greedy (argmax). */
typedef struct gemma4_sampling {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    uint64_t seed;
} gemma4_sampling;

gemma4_sampling gemma4_sampling_defaults(const gemma4_model *m);
typedef struct gemma4_sampler gemma4_sampler;
gemma4_sampler *gemma4_sampler_new(const gemma4_sampling *p, int32_t n_vocab);
void gemma4_sampler_free(gemma4_sampler *s);
int32_t gemma4_sample(gemma4_sampler *s, const float *logits);

#endif
