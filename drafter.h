/* The Gemma 4 MTP drafter ("assistant", GGUF architecture gemma4-assistant):
 * what the loader (drafter_load.c) binds and the forward pass (drafter.c)
 * runs. Internal: embedders see gemma4_drafter as an opaque type.
 *
 * The drafter has no KV cache of its own: each of its layers projects
 * queries only and attends to the target's cache of the sequence being
 * drafted (sliding layers to the cache target layer n_layer-2 reads, full
 * layers to the one target layer n_layer-1 reads), as llama.cpp v0.5.0 runs
 * it (src/models/gemma4-assistant.cpp, the MTP context sharing the target's
 * memory). */
#ifndef G4_DRAFTER_H
#define G4_DRAFTER_H

#include "model.h"

#define G4_DRAFTER_MAX_LAYERS 16
/* Clusters the centroid-masked head scores per step (Hugging Face's
 * centroid_intermediate_top_k of every released E2B/E4B drafter; the GGUF
 * carries no key for it). */
#define G4_DRAFTER_CENTROID_TOP_K 32

typedef struct drafter_layer {
    bool swa;
    int32_t head_dim, n_head_kv, n_ff, kv_src; /* kv_src: the target layer whose cache it reads */
    float rope_base, out_scale;
    const float *attn_norm, *attn_q_norm, *post_attention_norm, *ffn_norm, *post_ffw_norm;
    g4_weight attn_q, attn_output, ffn_gate, ffn_up, ffn_down;
} drafter_layer;

struct gemma4_drafter {
    g4_gguf_file *gguf;
    char *path;
    const gemma4_model *target;
    /* hyperparameters: d = n_embd (the drafter's width), the target's width
     * is target->n_embd (embedding_length_out) */
    int32_t n_layer, n_embd, n_head, n_ff_max, n_swa;
    float rms_eps;
    drafter_layer layers[G4_DRAFTER_MAX_LAYERS];
    g4_weight token_embd;      /* {d, n_vocab}: the tied output head */
    g4_weight pre_proj;        /* {2 * target width, d} */
    g4_weight post_proj;       /* {d, target width} */
    const float *output_norm, *rope_freqs;
    /* centroid-masked head (centroids.data NULL: the full head) */
    g4_weight centroids;       /* {d, n_centroids} */
    int32_t *ordering;         /* [n_vocab]: cluster c holds tokens ordering[c * per .. (c + 1) * per) */
    int32_t n_centroids, per_centroid;
    /* scratch of one draft step (a drafter drafts one sequence at a time):
     * xh [2 * target width] the step's input, h [target width] the hidden
     * state carried to the next step, x/a/r/branch [d], q/o [n_head * the
     * widest head], gate/up [widest FFN], scores [group * positions],
     * cent [n_centroids], cand_rows/cand_ids/cand_logits the masked head's
     * candidate rows, embd_row one target embedding row unpacked */
    float *xh, *h, *x, *a, *r, *branch, *q, *o, *gate, *up, *scores, *cent, *cand_logits;
    size_t scores_cap;
    int32_t *cand_ids, *top;
    char *cand_rows, *embd_row;
    void **owned;
    size_t n_owned;
};

#endif
