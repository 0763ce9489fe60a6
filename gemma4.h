/* gemma4.c public API: load a Gemma 4 GGUF, tokenize, run the forward pass,
 * sample, detokenize. This header is all an embedder includes; link with
 * -lgemma4 (pkg-config gemma4). examples/simple.c is a complete program.
 *
 * Typical use:
 *   char err[GEMMA4_ERR_LEN];
 *   gemma4_model *m = gemma4_load("model.gguf", err);
 *   gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 4096}, err);
 *   n = gemma4_tokenize(m, text, strlen(text), true, false, ids, cap, err);
 *   gemma4_eval(s, ids, n, logits, false, err);     // logits of the last position
 *   id = gemma4_sample(sampler, logits);             // then eval that one id, and so on
 * A session holds one or more sequences in a paged KV cache (gemma4_decode
 * and gemma4_seq_*): a server keeps one per request, forks a common prefix
 * instead of recomputing it, and advances all of them in one batch.
 * Every function that can fail returns NULL or -1 and writes one line,
 * naming the file or object and what is wrong, to err (GEMMA4_ERR_LEN
 * bytes). The library never exits and reads no environment variable.
 * How the model computes: docs/architecture.md.
 */
#ifndef GEMMA4_H
#define GEMMA4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GEMMA4_ERR_LEN 512

typedef struct gemma4_model gemma4_model;
typedef struct gemma4_session gemma4_session;

/* How to load. A zeroed struct (or NULL) gives the defaults. */
typedef struct gemma4_load_params {
    /* Kernels: "scalar", "avx2", "avx512" or "neon"; NULL or "" keeps the
     * current choice (initially the best this CPU runs). The choice is
     * process-wide: every model's forward pass uses it. A name this CPU
     * cannot run fails the load. */
    const char *isa;
    /* false (default): Q4_0 and Q4_K matrices are interleaved at load for
     * the kernels (8 rows per SIMD group) and their file pages released;
     * true: every weight stays zero-copy in the file mapping (instant
     * start, slower decode). */
    bool no_repack;
} gemma4_load_params;

gemma4_model *gemma4_load(const char *path, char *err); /* = gemma4_load_ex(path, NULL, err) */
gemma4_model *gemma4_load_ex(const char *path, const gemma4_load_params *p, char *err);
void gemma4_model_free(gemma4_model *m);

int32_t gemma4_n_vocab(const gemma4_model *m);
int32_t gemma4_n_ctx_train(const gemma4_model *m);
/* "E2B", "E4B", "26B-A4B", "31B" or "unknown" (by block count, as llama.cpp) */
const char *gemma4_variant(const gemma4_model *m);
/* true for the sizes whose chat template opens an empty thought channel when
 * thinking is off (26B-A4B, 31B: no per-layer embeddings) */
bool gemma4_empty_thought_channel(const gemma4_model *m);

/* What the loader derived from the file (docs/architecture.md §2.2), for `gemma4 info`. */
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

/* KV cache element types; the values are the GGUF type ids. */
typedef enum gemma4_kv_type {
    GEMMA4_KV_F32 = 0,  /* exact */
    GEMMA4_KV_F16 = 1,  /* half the memory; what `gemma4 run` and `chat` use */
    GEMMA4_KV_Q8_0 = 8, /* about a quarter */
} gemma4_kv_type;
/* "f32", "f16" or "q8_0" (llama.cpp's -ctk / -ctv names): 0 and *type set,
 * else -1. */
int gemma4_kv_type_from_name(const char *name, gemma4_kv_type *type);

/* Debugging: receives every intermediate vector of the forward pass, one
 * token (index within its ubatch) at a time, under the name llama.cpp gives
 * the same graph node ("attn_norm-0", "Qcur_normed-3", ..., "result_output"),
 * to locate a mismatch against it. */
typedef void (*gemma4_dump_fn)(void *user, const char *name, int32_t token, const float *x, int64_t n);

typedef struct gemma4_session_params {
    int32_t n_ctx;     /* positions one sequence can hold; 0 = min(model, 4096). The
                        * KV cache grows in pages as sequences do: nothing is
                        * allocated for n_ctx up front */
    int32_t n_threads; /* 0 = number of cores */
    int32_t n_ubatch;  /* tokens per forward call; 0 = 512 */
    int32_t n_seq;     /* sequences the session holds, ids 0..n_seq-1; 0 = 1 */
    gemma4_kv_type type_k, type_v; /* KV element types; 0 = GEMMA4_KV_F32 */
    int32_t page_size; /* positions per KV page; 0 = 32 */
    uint64_t kv_max_bytes; /* cap on KV page memory of all sequences; 0 = none */
    gemma4_dump_fn dump; /* NULL = none */
    void *dump_user;     /* passed to dump */
} gemma4_session_params;

/* p NULL (or zeroed): every default */
gemma4_session *gemma4_session_new(const gemma4_model *m, const gemma4_session_params *p, char *err);
void gemma4_session_free(gemma4_session *s);
int32_t gemma4_session_n_ctx(const gemma4_session *s);
int32_t gemma4_session_n_seq(const gemma4_session *s);

/* Feeds tokens[i] to sequence seq[i] (seq NULL: all to sequence 0), each at
 * the next position of its sequence, in one batched forward pass per
 * n_ubatch tokens. Logits (n_vocab floats per row) are written, in token
 * order, for the tokens with want[i] (want NULL: none). Returns 0, or -1 with
 * err set; a bad id, sequence or length refuses the whole call, a full KV
 * cache (kv_max_bytes) or a failed allocation stops at the ubatch that did
 * not fit, leaving the earlier ubatches in their sequences (see
 * gemma4_seq_pos). */
int gemma4_decode(gemma4_session *s, int32_t n, const int32_t *tokens, const int32_t *seq, const bool *want,
                  float *logits, char *err);

/* Sequence 0, for single-sequence users: feeds n tokens at its next
 * positions. Writes n rows of n_vocab logits to logits when all_logits, else
 * only the last row (logits may be NULL to skip the output head). */
int gemma4_eval(gemma4_session *s, const int32_t *tokens, int32_t n, float *logits, bool all_logits, char *err);
int32_t gemma4_session_pos(const gemma4_session *s);                  /* = gemma4_seq_pos(s, 0) */
int32_t gemma4_session_truncate(gemma4_session *s, int32_t n_keep);   /* = gemma4_seq_truncate(s, 0, n_keep) */

/* Sequences. An id out of range makes these return -1 (and do nothing). */
int32_t gemma4_seq_pos(const gemma4_session *s, int32_t seq);         /* tokens in the cache */
const int32_t *gemma4_seq_tokens(const gemma4_session *s, int32_t seq); /* those tokens; NULL for a bad id */
/* How many of tokens[0..n) the sequence already starts with: for prefix
 * reuse, truncate to it and feed only the rest. */
int32_t gemma4_seq_common_prefix(const gemma4_session *s, int32_t seq, const int32_t *tokens, int32_t n);
/* Drops positions >= n_keep and returns the length kept. That is n_keep
 * unless the sliding-window pages before n_keep were recycled (they are
 * kept for the window plus one page), in which case it is the latest
 * checkpoint at or below n_keep, else 0: the caller feeds the tokens again
 * from there. Global-layer pages are never lost. */
int32_t gemma4_seq_truncate(gemma4_session *s, int32_t seq, int32_t n_keep);
/* Empties seq, returning its pages to the pool. */
int gemma4_seq_remove(gemma4_session *s, int32_t seq);
/* dst (emptied first) becomes a copy of src that shares src's pages until
 * either writes into a shared one (copy on write). 0, or -1 with err set. */
int gemma4_seq_fork(gemma4_session *s, int32_t src, int32_t dst, char *err);
/* Keeps the sliding-window pages at seq's current length, so a later
 * truncate to any length from here on never goes back further than this
 * (e.g. call it at the end of each prompt: a chat turn that rewrites the
 * previous answer resumes here). A sequence keeps its last
 * GEMMA4_KV_CHECKPOINTS; each costs up to a window of sliding-layer rows. */
#define GEMMA4_KV_CHECKPOINTS 4
int gemma4_seq_checkpoint(gemma4_session *s, int32_t seq);

/* KV pages in use and held, for monitoring. A page holds page_size
 * positions of every layer of one kind: the sliding-window layers (whose
 * pages are recycled once the window has passed) or the full-attention ones. */
enum { GEMMA4_KV_SWA = 0, GEMMA4_KV_FULL = 1, GEMMA4_KV_KINDS = 2 };
typedef struct gemma4_kv_usage {
    int32_t pages_used[GEMMA4_KV_KINDS];      /* referenced by some sequence */
    int32_t pages_allocated[GEMMA4_KV_KINDS]; /* held: used + free for reuse */
    uint64_t page_bytes[GEMMA4_KV_KINDS];
    uint64_t bytes_used, bytes_allocated, max_bytes;
} gemma4_kv_usage;
void gemma4_kv_usage_get(const gemma4_session *s, gemma4_kv_usage *u);

/* The KV memory a session with params p would use for one sequence of n_pos
 * positions (after a decode step: the sliding layers hold their window plus
 * up to two pages), and the bytes one position takes in the sliding and the
 * full layers. 0, or -1 with err set (a type the model's head dims do not fit). */
typedef struct gemma4_kv_plan {
    uint64_t bytes_per_token[GEMMA4_KV_KINDS]; /* [GEMMA4_KV_SWA], [GEMMA4_KV_FULL] */
    uint64_t page_bytes[GEMMA4_KV_KINDS];
    int32_t page_size, n_swa;
    uint64_t seq_bytes; /* for n_pos positions */
} gemma4_kv_plan;
int gemma4_kv_plan_get(const gemma4_model *m, const gemma4_session_params *p, int64_t n_pos, gemma4_kv_plan *plan,
                       char *err);

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

/* Text. The model's vocabulary turns text into ids and back, as llama.cpp's
 * tokenizer does for the same file. */

/* Token ids of len bytes of text: the first cap of them are written to ids
 * (cap may be 0 to count), and the count is returned; -1 with err set on
 * failure. add_special: start with BOS, as a prompt must; parse_special:
 * control-token text such as "<|turn>" becomes that token (use it for
 * prompts you build, not for untrusted text). */
int32_t gemma4_tokenize(const gemma4_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                        int32_t *ids, int32_t cap, char *err);
/* The bytes of one token as generated text shows them: spaces restored,
 * byte tokens as their byte, control tokens only with render_special.
 * Like snprintf without the terminator: returns the length, writes the
 * piece only when it fits in cap. 0 for an id out of range. A multi-byte
 * character may be split over two tokens. */
size_t gemma4_token_to_piece(const gemma4_model *m, int32_t id, bool render_special, char *buf, size_t cap);
/* The text of n ids: returns its length and writes it, NUL-terminated, when
 * length < cap, else only an empty string (cap 0 to measure). */
size_t gemma4_detokenize(const gemma4_model *m, const int32_t *ids, int32_t n, bool render_special, char *buf,
                         size_t cap);
int32_t gemma4_token_bos(const gemma4_model *m); /* -1 if none */
int32_t gemma4_token_eos(const gemma4_model *m); /* -1 if none */
/* Whether generation should stop at id: EOS, end of turn ("<turn|>"), or a
 * tool call waiting for its answer ("<|tool_response>"). */
bool gemma4_token_is_eog(const gemma4_model *m, int32_t id);

/* Chat. Messages in the Gemma 4 chat template (written out in C, no
 * template engine): roles "system" (first only), "user", "model" or
 * "assistant". Tool calls and their answers need the internal chat API
 * (tokenizer/chat.h) that `gemma4 serve` uses. */
typedef struct gemma4_chat_message {
    const char *role;
    const char *content; /* NULL = empty */
} gemma4_chat_message;
typedef struct gemma4_chat_params {
    bool add_generation_prompt; /* end by opening the model's turn, for it to answer */
    bool enable_thinking;       /* ask for its reasoning first, in a thought channel */
} gemma4_chat_params;
/* The prompt text (malloc'd, NUL-terminated; free() it) or NULL with err
 * set. It has no leading "<bos>": gemma4_tokenize(..., add_special = true,
 * parse_special = true) adds BOS and turns the template's markers into
 * control tokens, but also any marker text inside a message. */
char *gemma4_chat_format(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                         const gemma4_chat_params *p, char *err);
/* The prompt's ids, BOS first, where only the template's own markers become
 * control tokens: message text cannot forge a turn. The first cap ids are
 * written; returns the count, or -1 with err set. */
int32_t gemma4_chat_tokenize(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                             const gemma4_chat_params *p, int32_t *ids, int32_t cap, char *err);

#ifdef __cplusplus
}
#endif

#endif
