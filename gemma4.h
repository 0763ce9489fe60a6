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
    /* false (default): the file is mapped and pages come in as read; true:
     * it is read into memory at load (llama.cpp's --no-mmap). */
    bool no_mmap;
    /* Lock the weights in RAM (mlock) so the kernel never pages them out
     * (llama.cpp's --mlock); a refusal (RLIMIT_MEMLOCK) fails the load. */
    bool mlock;
} gemma4_load_params;

gemma4_model *gemma4_load(const char *path, char *err); /* = gemma4_load_ex(path, NULL, err) */
gemma4_model *gemma4_load_ex(const char *path, const gemma4_load_params *p, char *err);
void gemma4_model_free(gemma4_model *m);

int32_t gemma4_n_vocab(const gemma4_model *m);
int32_t gemma4_n_ctx_train(const gemma4_model *m);
/* "E2B", "E4B", "26B-A4B", "31B", "12B" or "unknown", by block count as
 * llama.cpp names them (llama.cpp itself still says "unknown" for the 12B's 48) */
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
/* Context shift, as llama.cpp does it when a sequence fills its n_ctx:
 * keeps positions [0, n_keep), drops the n_discard positions after them and
 * moves the rest down by n_discard, re-rotating their cached keys to the new
 * positions (docs/architecture.md §11). Returns the new length, or -1 with
 * err set and the sequence unchanged: bad arguments, out of memory, or a
 * sliding window that would reach kept positions whose rows were already
 * recycled (err names the largest n_discard that works). */
int32_t gemma4_seq_shift(gemma4_session *s, int32_t seq, int32_t n_keep, int32_t n_discard, char *err);
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
 * top_p 0.95, min_p 0, no penalties. temperature 0 means greedy (argmax).
 * The chain, in llama.cpp's order: logit bias, suppressed tokens, grammar,
 * penalties, then top-k, top-p, min-p, temperature and one draw. */
typedef struct gemma4_logit_bias {
    int32_t token;
    float bias; /* added to the token's logit; -INFINITY bans it */
} gemma4_logit_bias;

typedef struct gemma4_sampling {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    uint64_t seed;
    /* Penalties (llama.cpp's definitions) over the last penalty_last_n
     * tokens the sampler has seen: 0 turns them off, -1 means all of them.
     * repeat_penalty divides a positive logit (multiplies a negative one) of
     * each token seen; 1.0 or 0 is off. frequency_penalty is subtracted once
     * per occurrence, presence_penalty once per token seen; 0 is off. */
    int32_t penalty_last_n;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    const gemma4_logit_bias *logit_bias; /* copied by the sampler */
    int32_t n_logit_bias;
    /* A GBNF grammar (llama.cpp's format) the output must follow, NULL for
     * none; end-of-generation tokens are allowed only where the grammar can
     * end. Needs gemma4_sampler_init (the model's vocabulary). */
    const char *grammar;
    const char *grammar_root; /* the start rule; NULL = "root" */
    /* Never sample an end-of-generation token (llama.cpp's ignore_eos):
     * they join the suppressed tokens. Needs gemma4_sampler_init. */
    bool ignore_eos;
} gemma4_sampling;

gemma4_sampling gemma4_sampling_defaults(const gemma4_model *m);
typedef struct gemma4_sampler gemma4_sampler;
/* Without a model: no grammar, no ignore_eos (NULL if either is set), no
 * suppressed tokens. NULL for settings no chain can honour. */
gemma4_sampler *gemma4_sampler_new(const gemma4_sampling *p, int32_t n_vocab);
/* With the model: a grammar, and the model's tokenizer.ggml.suppress_tokens,
 * which are never sampled. NULL with err set (a grammar error names its
 * line and column; a bias for a token out of range names it). */
gemma4_sampler *gemma4_sampler_init(const gemma4_model *m, const gemma4_sampling *p, char *err);
/* An independent copy in the same state (history, grammar, random state).
 * With a grammar, the copy shares its source's cache of grammar states:
 * use the two from one thread at a time. */
gemma4_sampler *gemma4_sampler_clone(const gemma4_sampler *s);
void gemma4_sampler_free(gemma4_sampler *s);
/* Picks a token from logits and accepts it (penalty history, grammar).
 * -1 when none can be picked: NaN or +inf in logits, every token banned
 * (bias, suppressed), or nothing the grammar allows. */
int32_t gemma4_sample(gemma4_sampler *s, const float *logits);
/* Adds tokens to the penalty history without advancing the grammar: the
 * prompt, as llama.cpp's server does. */
void gemma4_sampler_accept(gemma4_sampler *s, const int32_t *ids, int32_t n);

/* Log-probabilities of the model's distribution (log-softmax of logits,
 * before any sampler setting): returns that of token, and writes the k
 * most likely tokens (at most n_vocab), most likely first (ties: lower
 * id), to top. NaN for a token out of range, and for logits holding NaN or
 * +inf or only -inf (then each entry written has token -1). */
typedef struct gemma4_logprob {
    int32_t token;
    float logprob;
} gemma4_logprob;
float gemma4_logprobs(const float *logits, int32_t n_vocab, int32_t token, int32_t k, gemma4_logprob *top);

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

/* Chat. Messages are rendered with the model's own chat template (the
 * Jinja text of its tokenizer.chat_template, run by a small interpreter as
 * Hugging Face transformers runs it), or with another template given as
 * text, or with the built-in Gemma 4 renderer (written out in C) when the
 * model has none or builtin_template is set. Roles: "system" (first only),
 * "user", "model" or "assistant". Tool calls and their answers need the
 * internal chat API (tokenizer/chat.h) that `gemma4 serve` uses. */
typedef struct gemma4_chat_message {
    const char *role;
    const char *content; /* NULL = empty */
} gemma4_chat_message;
typedef struct gemma4_chat_params {
    bool add_generation_prompt; /* end by opening the model's turn, for it to answer */
    bool enable_thinking;       /* ask for its reasoning first, in a thought channel */
    bool builtin_template;      /* the built-in Gemma 4 renderer, whatever the model carries */
    const char *template_source;      /* Jinja text to use instead of the model's template; NULL: the model's */
    const char *template_kwargs_json; /* a JSON object of extra template variables
                                         (chat_template_kwargs, e.g. {"enable_thinking": true}); NULL: none.
                                         Not used by the built-in renderer. */
} gemma4_chat_params;
/* The prompt text (malloc'd, NUL-terminated; free() it) or NULL with err
 * set (also for a template error, such as the template's own
 * raise_exception). It has no leading "<bos>": gemma4_tokenize(...,
 * add_special = true, parse_special = true) adds BOS and turns the
 * template's markers into control tokens, but also any marker text inside a
 * message. */
char *gemma4_chat_format(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                         const gemma4_chat_params *p, char *err);
/* The prompt's ids, BOS first, where only the template's own markers become
 * control tokens: message text cannot forge a turn. The first cap ids are
 * written; returns the count, or -1 with err set. */
int32_t gemma4_chat_tokenize(const gemma4_model *m, const gemma4_chat_message *msgs, size_t n,
                             const gemma4_chat_params *p, int32_t *ids, int32_t cap, char *err);

/* Speculative decoding. A draft source guesses the next few tokens of a
 * sequence; one batched forward pass checks all of them, the sampler picks
 * each position's token from the target's own logits in order, and the
 * guesses are kept up to the first one it did not pick, followed by the
 * token it picked there (or after the last guess). The rest is rolled back
 * out of the KV cache. Each token is drawn exactly as plain decoding draws
 * it (same logits, same sampler calls), so greedy output is the same, and
 * with a seeded sampler the sampled output too: the drafts only decide how
 * many positions one pass covers. Drafts are deterministic guesses (a
 * one-hot q: accepting d with probability p(d) and resampling from p
 * without d is what sampling from p and comparing does). */

/* Writes up to max guesses for the tokens after last_token to draft and
 * returns their count (0: none this step), or -1 to fail the step.
 * Sequence seq holds the tokens before last_token (gemma4_seq_tokens);
 * last_token is sampled but not yet fed. hidden: the target's final-normed
 * hidden state (n_embd floats) at the position that produced last_token,
 * for drafters that continue the target's state; NULL unless
 * gemma4_spec_params.hidden asks for it and it is known. */
typedef int32_t (*gemma4_draft_fn)(void *user, gemma4_session *s, int32_t seq, int32_t last_token,
                                   const float *hidden, int32_t max, int32_t *draft);

/* A draft source needing no model: prompt lookup (n-gram matching, as
 * llama.cpp's "lookup"). The longest suffix of the sequence (tokens and
 * last_token), from ngram_max down to ngram_min tokens, that occurred
 * before: the tokens that followed its latest earlier occurrence.
 * user: a gemma4_lookup_params, or NULL for {1, 4}. */
typedef struct gemma4_lookup_params {
    int32_t ngram_min, ngram_max;
} gemma4_lookup_params;
int32_t gemma4_draft_lookup(void *user, gemma4_session *s, int32_t seq, int32_t last_token, const float *hidden,
                            int32_t max, int32_t *draft);

#define GEMMA4_DRAFT_CAP 64 /* most guesses per step */
typedef struct gemma4_spec_params {
    int32_t draft_max; /* guesses per step: 0 = 8, at most GEMMA4_DRAFT_CAP */
    int32_t draft_min; /* the adaptive length's floor: 0 = 1 */
    bool fixed;        /* always ask for draft_max (no adaptation) */
    bool ignore_eog;   /* go on past end-of-generation tokens (benchmarks) */
    /* Verify with gemma4_decode_hidden and hand the draft source the hidden
     * state of the row that produced the pending token (gemma4_draft_mtp
     * needs it). A sequence's first step, and any step after the caller
     * changed the sequence, has none: the source may guess nothing then. */
    bool hidden;
} gemma4_spec_params;
typedef struct gemma4_spec gemma4_spec;
/* Speculative state for session s: the draft source, per sequence the
 * adaptive draft length (starts at draft_max; +2 after a step whose
 * guesses were all kept, -1 otherwise, within draft_min..draft_max) and
 * counters. NULL with err set. */
gemma4_spec *gemma4_spec_new(gemma4_session *s, gemma4_draft_fn draft, void *user, const gemma4_spec_params *p,
                             char *err);
void gemma4_spec_free(gemma4_spec *sp);
/* One step of n distinct sequences in one forward pass. Sequence seq[i]
 * holds its context; token[i] is its next token, sampled but not fed. The
 * draft source's guesses for it (none: a plain decode step) are fed after
 * token[i], and smp[i] samples. Writes to out + i *
 * (GEMMA4_DRAFT_CAP + 1) the n_out[i] >= 1 new tokens: the kept guesses,
 * then the sampler's own pick, which is the new "sampled but not fed"
 * token (unless ignore_eog is off and an end-of-generation token came
 * first: the tokens end with it, and nothing after it is in the cache).
 * 0, or -1 with err set (the sequences are then as before the call, unless
 * a sampler failed after the pass). */
int gemma4_spec_step(gemma4_spec *sp, int32_t n, const int32_t *seq, const int32_t *token, gemma4_sampler *const *smp,
                     int32_t *out, int32_t *n_out, char *err);
typedef struct gemma4_spec_stats {
    int64_t steps;    /* verification passes a sequence took part in */
    int64_t drafted;  /* guesses checked */
    int64_t accepted; /* guesses kept */
    int64_t refed;    /* positions fed again after a truncate fell short */
    int32_t draft_len; /* current adaptive length */
} gemma4_spec_stats;
/* Counters of one sequence, or of all with seq -1 (draft_len then 0). */
void gemma4_spec_stats_get(const gemma4_spec *sp, int32_t seq, gemma4_spec_stats *st);

/* Speculative decoding: the drafter. Google's Gemma 4 "assistant" MTP
 * drafters (GGUF architecture gemma4-assistant, as llama.cpp v0.5.0 runs
 * them): a few layers that continue the target's own state. A step takes
 * the target's embedding of a token and a hidden state, attends with
 * queries only to the target's KV cache of the sequence (no cache of its
 * own), and gives logits over the vocabulary and the hidden state of the
 * next step. Drafters of the E2B/E4B sizes may score only the tokens of
 * their best centroid clusters (masked_embd_centroids / _ordering, the
 * latter as f32 token ids); the others then get the lowest candidate logit
 * minus 1. */
typedef struct gemma4_drafter gemma4_drafter;

/* Loads a drafter for target, which must stay loaded while it is used.
 * Refuses, with a line naming what differs, a drafter made for another
 * model: width (embedding_length_out), vocabulary, the head size and KV
 * head count of the target caches it reads, a window wider than the
 * target's. NULL with err set. */
gemma4_drafter *gemma4_drafter_load(const char *path, const gemma4_model *target, char *err);
void gemma4_drafter_free(gemma4_drafter *d);

/* gemma4_decode that also writes, for each row it writes logits for, the
 * target's final-normed hidden state (after output_norm, before the output
 * head; n_embd floats of gemma4_model_info) to hidden: what a drafter
 * continues from. hidden needs logits (non-NULL). */
int gemma4_decode_hidden(gemma4_session *s, int32_t n, const int32_t *tokens, const int32_t *seq, const bool *want,
                         float *logits, float *hidden, char *err);

/* n greedy draft steps for sequence seq of s (a session of the drafter's
 * target), all at position gemma4_seq_pos(s, seq): token is the target's
 * next token (sampled, not fed) and hidden the target's hidden state at the
 * last position of seq, the one whose logits gave token
 * (gemma4_decode_hidden). Writes the n drafted ids to draft and, unless
 * logits is NULL, the drafter's logits of each step ([n][n_vocab]). Returns
 * n, or -1 with err set. Uses the session's threads; one call at a time per
 * drafter (it keeps its scratch). */
int32_t gemma4_drafter_draft(gemma4_drafter *d, gemma4_session *s, int32_t seq, int32_t token, const float *hidden,
                             int32_t n, int32_t *draft, float *logits, char *err);

/* The drafter as a draft source for gemma4_spec_new: user is the
 * gemma4_drafter. Drafts max tokens after last_token, or none (0) when
 * hidden is NULL; -1 when drafting fails. */
int32_t gemma4_draft_mtp(void *user, gemma4_session *s, int32_t seq, int32_t last_token, const float *hidden,
                         int32_t max, int32_t *draft);

#ifdef __cplusplus
}
#endif

#endif
