/* gemma4 convert HF_DIR -o OUT.gguf [--type T] [--qat]: a Hugging Face
 * Gemma 4 checkpoint (config.json, safetensors, tokenizer files) to a GGUF
 * llama.cpp and gemma4 load. Names and shapes follow docs/architecture.md §3; tensors are
 * streamed a row at a time, so memory stays at one row whatever the size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/safetensors.h"
#include "tools/commands.h"
#include "tools/convert/convert.h"

/* Symbolic sizes for the shape check (ggml order). */
enum dim { ONE = 1, D, V, Q, KV, HD, FF, E, FE, FE2, P, PL, END = 0 };

typedef struct mapping {
    const char *hf;   /* after the language-model prefix (and "layers.N." for per-layer) */
    const char *gguf; /* after "blk.N." for per-layer */
    enum dim ne[3];
} mapping;

/* In the order tensors are written (that of llama.cpp's converter output). */
static const mapping global_map[] = {
    {"embed_tokens.weight", "token_embd.weight", {D, V}},
    {"embed_tokens_per_layer.weight", "per_layer_token_embd.weight", {PL, END}}, /* rows: vocab incl. multimodal */
    {"per_layer_model_projection.weight", "per_layer_model_proj.weight", {D, PL}},
    {"per_layer_projection_norm.weight", "per_layer_proj_norm.weight", {P}},
    {"norm.weight", "output_norm.weight", {D}},
};

static const mapping layer_map[] = {
    {"input_layernorm.weight", "attn_norm.weight", {D}},
    {"self_attn.q_proj.weight", "attn_q.weight", {D, Q}},
    {"self_attn.k_proj.weight", "attn_k.weight", {D, KV}},
    {"self_attn.v_proj.weight", "attn_v.weight", {D, KV}},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", {HD}},
    {"self_attn.o_proj.weight", "attn_output.weight", {Q, D}},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", {HD}},
    {"post_attention_layernorm.weight", "post_attention_norm.weight", {D}},
    {"layer_scalar", "layer_output_scale.weight", {ONE}},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight", {D}},
    {"mlp.gate_proj.weight", "ffn_gate.weight", {D, FF}},
    {"mlp.up_proj.weight", "ffn_up.weight", {D, FF}},
    {"mlp.down_proj.weight", "ffn_down.weight", {FF, D}},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", {D}},
    {"router.proj.weight", "ffn_gate_inp.weight", {D, E}},
    {"router.scale", "ffn_gate_inp.scale", {D}},
    {"pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight", {D}},
    {"post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight", {D}},
    {"post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight", {D}},
    {"experts.gate_up_proj", "ffn_gate_up_exps.weight", {D, FE2, E}}, /* gate rows, then up rows */
    {"experts.down_proj", "ffn_down_exps.weight", {FE, D, E}},
    {"router.per_expert_scale", "ffn_down_exps.scale", {E}},
    {"per_layer_input_gate.weight", "inp_gate.weight", {D, P}},
    {"per_layer_projection.weight", "proj.weight", {P, D}},
    {"post_per_layer_input_norm.weight", "post_norm.weight", {D}},
};

static const char *lm_prefixes[] = {"model.language_model.", "model."};

static int64_t dim_size(enum dim d, const convert_config *c, int32_t il, int32_t n_vocab) {
    bool swa = il >= 0 && c->swa[il];
    int64_t hd = swa ? c->head_dim : c->head_dim_full;
    int64_t hkv = swa || c->n_head_kv_full < 0 ? c->n_head_kv : c->n_head_kv_full;
    switch (d) {
    case ONE: return 1;
    case D: return c->n_embd;
    case V: return n_vocab;
    case Q: return c->n_head * hd;
    case KV: return hkv * hd;
    case HD: return hd;
    case FF: return il >= 0 ? convert_layer_n_ff(c, il) : 0;
    case E: return c->n_expert;
    case FE: return c->n_ff_exp;
    case FE2: return 2 * (int64_t)c->n_ff_exp;
    case P: return c->n_embd_per_layer;
    case PL: return (int64_t)c->n_embd_per_layer * c->n_layer;
    case END: break;
    }
    return 0;
}

typedef struct out_tensor {
    char name[GGUF_MAX_NAME + 1];
    const g4_safetensors_tensor *src; /* NULL: generated (rope_freqs) */
    uint32_t n_dims;
    int64_t ne[4];
    enum g4_type type;
} out_tensor;

typedef struct source_rows {
    const g4_safetensors_tensor *t;
    const float *generated;
    int64_t ne0;
} source_rows;

static const float *read_row(void *ctx, int64_t row, float *buf) {
    source_rows *s = ctx;
    if (s->generated) return s->generated + row * s->ne0;
    g4_safetensors_read_f32(s->t, row * s->ne0, s->ne0, buf);
    return buf;
}

/* Declares HF tensor `hf` as GGUF tensor `gguf`, shape-checked against the
 * config; absent tensors are left to the loader to require. */
static int add_mapped(out_tensor *outs, int *n_out, const safetensors *st, const char *hf, const char *gguf,
                      const enum dim *dims, const convert_config *c, int32_t il, int32_t n_vocab, bool *used,
                      enum g4_type file_type, char *err) {
    const g4_safetensors_tensor *t = g4_safetensors_find(st, hf);
    if (!t) return 0;
    used[t - g4_safetensors_tensor_at(st, 0)] = true;
    out_tensor *o = &outs[(*n_out)++];
    snprintf(o->name, sizeof o->name, "%s", gguf);
    o->src = t;
    o->n_dims = t->n_dims;
    for (int i = 0; i < 4; i++) o->ne[i] = 1;
    bool ok = t->is_float && t->n_dims >= 1 && t->n_dims <= 3;
    for (uint32_t i = 0; ok && i < t->n_dims; i++) o->ne[i] = t->shape[t->n_dims - 1 - i];
    if (!strcmp(gguf, "token_embd.weight") && ok && o->ne[1] > n_vocab) o->ne[1] = n_vocab; /* rows past the vocab */
    for (uint32_t i = 0; ok && i < 3 && dims[i] != END; i++) ok = i < t->n_dims && o->ne[i] == dim_size(dims[i], c, il, n_vocab);
    if (ok && dims[0] != END && dims[1] == END && dims[0] != PL) ok = t->n_dims == 1 || (t->n_dims == 2 && o->ne[1] == 1);
    if (!ok) {
        char shape[128] = "";
        for (uint32_t i = 0; i < t->n_dims && i < SAFETENSORS_MAX_DIMS; i++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        snprintf(err, G4_ERR_LEN, "%.300s: tensor '%s' (%s [%s]) does not have the shape config.json implies for %s", t->file,
                 hf, t->dtype, shape, gguf);
        return -1;
    }
    if (o->n_dims == 2 && o->ne[1] == 1 && dims[1] == END) o->n_dims = 1; /* [1, d] stored vectors */
    o->type = convert_tensor_type(o->name, o->n_dims, o->ne, file_type);
    return 0;
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    static char buf[256];
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(buf, sizeof buf, "%.*s", (int)(n - b), path + b);
    return buf;
}

int g4_convert(const char *hf_dir, const char *out, enum g4_type type, bool qat, bool verbose, g4_qat_stats *total,
               char *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", hf_dir);
    g4_json *config = g4_json_parse_file(path, err);
    convert_config *c = calloc(1, sizeof *c);
    safetensors *st = NULL;
    g4_gguf_writer *w = NULL;
    out_tensor *outs = NULL;
    bool *used = NULL;
    float *rope = NULL;
    int rc = config && c ? 0 : -1;
    if (!rc) rc = convert_read_config(config, path, c, err);
    if (!rc && !(st = g4_safetensors_open(hf_dir, err))) rc = -1;
    if (!rc && !(w = g4_gguf_writer_new(out, 0, err))) rc = -1;
    int32_t n_vocab = 0;
    rc = rc || g4_gguf_writer_set_str(w, "general.architecture", "gemma4", err) ||
         g4_gguf_writer_set_str(w, "general.type", "model", err) ||
         g4_gguf_writer_set_str(w, "general.name", base_name(hf_dir), err) ||
         g4_gguf_writer_set_u32(w, "general.file_type", convert_file_type(type), err) ||
         g4_gguf_writer_set_u32(w, "general.quantization_version", 2, err) || convert_write_config_keys(c, w, err) ||
         convert_write_vocab(hf_dir, config, w, &n_vocab, err);

    /* map every language-model tensor; the rest (vision and audio towers,
     * the tied lm_head) is reported and skipped */
    int64_t n_src = rc ? 0 : g4_safetensors_n_tensors(st);
    int n_out = 0;
    const char *prefix = lm_prefixes[1];
    for (int64_t i = 0; i < n_src; i++)
        if (!strncmp(g4_safetensors_tensor_at(st, i)->name, lm_prefixes[0], strlen(lm_prefixes[0]))) prefix = lm_prefixes[0];
    if (!rc) {
        outs = calloc((size_t)n_src + 1, sizeof *outs);
        used = calloc((size_t)n_src + 1, sizeof *used);
        rope = malloc((size_t)c->head_dim_full / 2 * sizeof *rope);
        if (!outs || !used || !rope) snprintf(err, G4_ERR_LEN, "out of memory"), rc = -1;
    }
    char hf[512], gg[128];
    for (size_t i = 0; !rc && i < sizeof global_map / sizeof global_map[0]; i++) {
        snprintf(hf, sizeof hf, "%s%s", prefix, global_map[i].hf);
        rc = add_mapped(outs, &n_out, st, hf, global_map[i].gguf, global_map[i].ne, c, -1, n_vocab, used, type, err);
    }
    if (!rc) { /* proportional RoPE of the full layers, as a divisor per pair */
        convert_rope_freqs(c, rope);
        out_tensor *o = &outs[n_out++];
        snprintf(o->name, sizeof o->name, "rope_freqs.weight");
        o->n_dims = 1;
        o->ne[0] = c->head_dim_full / 2, o->ne[1] = o->ne[2] = o->ne[3] = 1;
        o->type = G4_TYPE_F32;
    }
    for (int32_t il = 0; !rc && il < c->n_layer; il++)
        for (size_t i = 0; !rc && i < sizeof layer_map / sizeof layer_map[0]; i++) {
            snprintf(hf, sizeof hf, "%slayers.%d.%s", prefix, il, layer_map[i].hf);
            snprintf(gg, sizeof gg, "blk.%d.%s", il, layer_map[i].gguf);
            rc = add_mapped(outs, &n_out, st, hf, gg, layer_map[i].ne, c, il, n_vocab, used, type, err);
        }
    int64_t skipped = 0;
    for (int64_t i = 0; !rc && i < n_src; i++) {
        const char *name = g4_safetensors_tensor_at(st, i)->name;
        if (used[i]) continue;
        if (!strncmp(name, prefix, strlen(prefix)) && strncmp(name, "model.vision", 12) && strncmp(name, "model.audio", 11) &&
            strncmp(name, "model.embed_vision", 18) && strncmp(name, "model.embed_audio", 17)) {
            snprintf(err, G4_ERR_LEN, "%.300s: tensor '%s' has no GGUF counterpart (layer index past %d or unknown name)", hf_dir,
                     name, c->n_layer);
            rc = -1;
        }
        skipped++;
    }
    if (!rc && verbose && skipped)
        fprintf(stderr, "convert: skipped %lld tensors outside the language model (vision/audio towers belong in an "
                        "mmproj file; lm_head is tied to token_embd)\n", (long long)skipped);
    for (int i = 0; !rc && i < n_out; i++) rc = g4_gguf_writer_add_tensor(w, outs[i].name, outs[i].type, outs[i].n_dims, outs[i].ne, err);
    rc = rc || g4_gguf_writer_begin(w, err);
    g4_qat_stats sum = {0};
    for (int i = 0; !rc && i < n_out; i++) {
        const out_tensor *o = &outs[i];
        source_rows s = {o->src, o->src ? NULL : rope, o->ne[0]};
        g4_qat_stats ts = {0};
        if (verbose) fprintf(stderr, "\rconvert: [%d/%d] %-40s", i + 1, n_out, o->name);
        rc = convert_write_tensor(w, o->type, o->ne, read_row, &s, o->src ? o->src->type : G4_TYPE_F32, qat, &ts, err);
        if (verbose && ts.blocks) fputc('\n', stderr), g4_qat_stats_print(o->name, &ts);
        g4_qat_stats_add(&sum, &ts);
    }
    rc = rc || g4_gguf_writer_finish(w, err);
    if (!rc && verbose) {
        fprintf(stderr, "\nconvert: wrote %s (%d tensors, %s)\n", out, n_out, g4_type_name(type));
        if (qat) g4_qat_stats_print("overall", &sum);
    }
    if (total) *total = sum;
    g4_gguf_writer_free(w);
    g4_safetensors_close(st);
    g4_json_free(config);
    free(c);
    free(outs);
    free(used);
    free(rope);
    return rc ? -1 : 0;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 convert HF_DIR -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k] [--qat]\n"
            "  Converts a Hugging Face Gemma 4 checkpoint (config.json, *.safetensors or a sharded\n"
            "  model.safetensors.index.json, tokenizer.json, tokenizer_config.json) to GGUF.\n"
            "  --type  weight type (default bf16); 1-D tensors stay f32, the router and the PLE\n"
            "          projection f16, q4_k falls back to q4_0 where a row is not a multiple of 256\n"
            "  --qat   for Q4_0 tensors, recover the 4-bit grid a QAT checkpoint was trained on\n"
            "          (exact scales and codes) instead of ggml's max/-8 scale; prints per tensor\n"
            "          and overall the share of blocks stored byte-exactly on their grid\n"
            "  Vision and audio towers are skipped (they belong in a separate mmproj file).\n");
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    enum g4_type type = G4_TYPE_BF16;
    bool qat = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            if (convert_parse_type(argv[++i], &type)) {
                fprintf(stderr, "gemma4: unknown --type '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--qat")) {
            qat = true;
        } else if (argv[i][0] != '-' && !in) {
            in = argv[i];
        } else {
            fprintf(stderr, "gemma4: convert: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!in || !out) {
        usage(stderr);
        return 2;
    }
    char err[G4_ERR_LEN];
    if (g4_convert(in, out, type, qat, true, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}
