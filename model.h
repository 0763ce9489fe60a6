/* The model and session structures shared by the loader (load.c), the
 * session and sequence API (session.c) and the forward pass (gemma4.c).
 * Internal: embedders see only gemma4.h. */
#ifndef G4_MODEL_H
#define G4_MODEL_H

#include "gemma4_internal.h"
#include "kernels/kernels.h"

#define G4_MAX_LAYERS 512
/* Bounds on the router, well above the released models (26B-A4B: 128
 * experts, 8 used): the loader refuses files beyond them, so the per-token
 * routing scratch stays small and its cost bounded. */
#define G4_MAX_EXPERTS 1024
#define G4_MAX_EXPERTS_USED 64
typedef struct layer {
    /* derived properties (docs/architecture.md §2.2) */
    bool swa;          /* sliding-window layer */
    bool has_kv;       /* owns a KV cache (not in the shared tail) */
    int32_t kv_src;    /* layer whose cache it reads */
    int32_t head_dim, n_head_kv, n_rot, n_ff;
    float rope_base;
    bool moe;
    /* attention */
    const float *attn_norm, *attn_q_norm, *attn_k_norm, *post_attention_norm;
    g4_weight attn_q, attn_k, attn_v, attn_output; /* attn_v.data NULL: V = raw K */
    /* dense FFN (the always-on shared MLP on MoE layers) */
    const float *ffn_norm, *post_ffw_norm;
    g4_weight ffn_gate, ffn_up, ffn_down;
    /* MoE */
    g4_weight ffn_gate_inp;
    const float *ffn_gate_inp_scale, *pre_ffw_norm_2, *post_ffw_norm_1, *post_ffw_norm_2;
    const float *down_exps_scale;      /* NULL: every expert scale 1 */
    g4_weight gate_exps, up_exps;      /* one expert's matrix; data of expert 0 */
    g4_weight down_exps;
    size_t gate_exps_stride, up_exps_stride, down_exps_stride; /* bytes per expert */
    /* per-layer embedding input */
    g4_weight inp_gate, proj;
    const float *post_norm;
    float out_scale;
} layer;

struct gemma4_model {
    g4_gguf_file *gguf;
    g4_vocab *vocab;
    char *path;
    /* hyperparameters (docs/architecture.md §3.1) */
    int32_t n_layer, n_embd, n_head, n_vocab, n_ctx_train;
    int32_t n_swa, n_kv_from_start, n_embd_per_layer;
    int32_t n_expert, n_expert_used, n_ff_exp;
    float rms_eps, softcap;
    layer layers[G4_MAX_LAYERS];
    /* global tensors */
    g4_weight token_embd, output, per_layer_token_embd, per_layer_model_proj;
    const float *output_norm, *per_layer_proj_norm, *rope_freqs;
    /* 1-D tensors are converted to f32 once; they are tiny */
    void **owned; /* heap blocks freed with the model: converted vectors, interleaved weights */
    size_t n_owned;
    /* the vocabulary as grammars see it: built by the first sampler with a
     * grammar (sampler.c, under its lock), NULL until then */
    struct g4_grammar_vocab *grammar_vocab;
};

/* Tokens an MoE layer routes at a time: bounds its expert batch buffers
 * (MOE_CHUNK * experts used rows) while still giving each expert a batch. */
#define MOE_CHUNK 64

struct gemma4_session {
    const gemma4_model *m;
    int32_t n_ubatch;
    enum g4_type type_k, type_v;
    gemma4_dump_fn dump; /* gemma4_session_params.dump, NULL: none */
    void *dump_user;
    g4_pool *pool;
    /* K (after norm and RoPE) and V (after its unweighted norm) of every
     * sequence, in pages (kvcache.h) */
    g4_kv_cache *kv;
    /* the ubatch being evaluated: each token's sequence and position */
    int32_t *tok_seq, *tok_pos, *out_rows;
    int32_t *seq_n; /* per sequence: tokens of the call (validation) */
    /* Activations for one ubatch of up to n_ubatch tokens (T rows each; d =
     * n_embd, qd = n_head * the widest head, ff = the widest FFN):
     *   x      [T][d]  the residual stream h; inside an MoE FFN block, while r
     *                  holds the stream, x collects the experts' weighted sum
     *   a      [T][d]  the RMS-normed input of the block being run (attention,
     *                  FFN, router, output head)
     *   r      [T][d]  the stream after the attention block's residual add
     *   q, k, v, o [T][qd]  queries, keys, values, attention output
     *   gate, up   [T][ff]  the MLP's gate and up projections (gate then holds
     *                  gelu(gate) * up); gate also serves the per-layer
     *                  embedding gate [T][P] and one dequantized per-layer
     *                  embedding row [n_layer * P]
     *   branch [T][d]  a block's output before its residual add; while the
     *                  token embeddings are looked up, one interleaved row
     *                  unpacked
     *   ple    [T][n_layer * P]  the per-layer inputs of every layer */
    float *x, *a, *r, *q, *k, *v, *o, *gate, *up, *branch, *ple;
    float *scores; /* per thread: attention scores, grown with the longest sequence */
    size_t scores_per_thread;
    /* MoE layers, per chunk of MOE_CHUNK tokens: each (token, choice)'s
     * expert and weight, and its row in the expert batches below */
    int32_t *moe_sel, *moe_row;
    float *moe_w;
    float *moe_x, *moe_g, *moe_u, *moe_y; /* expert inputs, gate, up, outputs: rows grouped by expert */
    int32_t *moe_first;     /* n_expert + 1: where each expert's rows start (counting sort) */
    g4_weight *moe_mats;    /* 3 * n_expert: the gate, up and down matrices of the experts used */
    g4_matmul_job *moe_jobs; /* 3 * n_expert: their gate/up jobs, then their down jobs */
    float *router_in, *router_probs; /* one token's router input [d] and expert probabilities [n_expert] */
    /* Non-NULL during gemma4_decode_hidden (drafter.c): the forward pass
     * also writes here the final-normed hidden state (d floats) of each row
     * it writes logits for, and moves the pointer past them. */
    float *hidden_out;
};

/* One ubatch through every layer (gemma4.c): token t goes to sequence
 * s->tok_seq[t] at position s->tok_pos[t], its K and V are stored in the
 * cache, and the logits of rows out_rows[0..n_out) are written to out
 * (n_vocab floats each). The caller has reserved the cache pages and sized
 * s->scores for the longest sequence. */
void g4_forward(gemma4_session *s, const int32_t *tokens, int32_t n_tok, const int32_t *out_rows, int32_t n_out,
                float *out);

/* The session whose dump callback receives the forward pass running on this
 * thread (NULL: none). Set by decode around g4_forward: the forward pass's
 * dump points have no session at hand, and a session decodes on the
 * calling thread only. */
extern _Thread_local const gemma4_session *g4_dumping;

#endif
