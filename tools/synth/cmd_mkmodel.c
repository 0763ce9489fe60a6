/* gemma4 mkmodel: writes a synthetic Gemma 4 GGUF (random weights, synthetic
 * vocabulary) in any of the real shapes or a small one. Real weights cannot
 * be downloaded everywhere; these files exercise the same code paths and,
 * at full size, the same memory traffic, so they serve tests and benchmarks
 * (they also load in llama.cpp, which the benchmarks compare against). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf_writer.h"
#include "kernels/formats.h"
#include "tools/commands.h"
#include "tools/synth/mkmodel.h"
#include "tools/synth/model_shapes.h"
#include "tools/synth/synth_vocab.h"
#include "tools/synth/synth_weights.h"

#define CHUNK_BYTES (8u << 20)          /* tensor data generated per write */
#define PROGRESS_ALWAYS (1ull << 30)    /* files this big always report progress */

static const struct {
    const char *name;
    enum g4_type type;
    uint32_t file_type; /* llama_ftype: what llama-quantize records */
} file_types[] = {
    {"f32", G4_TYPE_F32, 0}, {"f16", G4_TYPE_F16, 1}, {"q8_0", G4_TYPE_Q8_0, 7},
    {"q4_0", G4_TYPE_Q4_0, 2}, {"q4_k", G4_TYPE_Q4_K, 14},
};

static int file_type_index(enum g4_type type) {
    for (int i = 0; i < (int)(sizeof file_types / sizeof file_types[0]); i++)
        if (file_types[i].type == type) return i;
    return -1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The gemma4.* and general.* keys llama.cpp reads (docs/architecture.md §3.1); per-layer
 * values are written as arrays only when they differ between layers, as the
 * converter does. */
static int set_model_keys(g4_gguf_writer *w, const g4_shape *s, int ti, uint64_t seed, const char *given_name,
                          char *err) {
    const int L = s->n_layer;
    int32_t ff[G4_SHAPE_MAX_LAYERS], kv[G4_SHAPE_MAX_LAYERS];
    bool swa[G4_SHAPE_MAX_LAYERS], ff_same = true, kv_same = true;
    for (int il = 0; il < L; il++) {
        ff[il] = g4_shape_layer_n_ff(s, il);
        kv[il] = g4_shape_layer_n_head_kv(s, il);
        swa[il] = g4_shape_layer_is_swa(s, il);
        ff_same = ff_same && ff[il] == ff[0];
        kv_same = kv_same && kv[il] == kv[0];
    }
    char name[96], key[96];
    snprintf(name, sizeof name, "gemma4-synthetic-%s-%s-s%" PRIu64, s->name, file_types[ti].name, seed);
#define K(k) (snprintf(key, sizeof key, "gemma4.%s", k), key)
    int rc = g4_gguf_writer_set_str(w, "general.architecture", "gemma4", err) ||
             g4_gguf_writer_set_str(w, "general.type", "model", err) ||
             g4_gguf_writer_set_str(w, "general.name", given_name ? given_name : name, err) ||
             g4_gguf_writer_set_u32(w, "general.file_type", file_types[ti].file_type, err) ||
             g4_gguf_writer_set_u32(w, "general.quantization_version", 2, err) ||
             g4_gguf_writer_set_u32(w, K("block_count"), (uint32_t)L, err) ||
             g4_gguf_writer_set_u32(w, K("context_length"), (uint32_t)s->context_length, err) ||
             g4_gguf_writer_set_u32(w, K("embedding_length"), (uint32_t)s->n_embd, err) ||
             (ff_same ? g4_gguf_writer_set_u32(w, K("feed_forward_length"), (uint32_t)ff[0], err)
                      : g4_gguf_writer_set_arr(w, K("feed_forward_length"), GGUF_TYPE_INT32, ff, (uint64_t)L, err)) ||
             g4_gguf_writer_set_u32(w, K("attention.head_count"), (uint32_t)s->n_head, err) ||
             (kv_same ? g4_gguf_writer_set_u32(w, K("attention.head_count_kv"), (uint32_t)kv[0], err)
                      : g4_gguf_writer_set_arr(w, K("attention.head_count_kv"), GGUF_TYPE_INT32, kv, (uint64_t)L, err)) ||
             g4_gguf_writer_set_f32(w, K("rope.freq_base"), s->rope_base_full, err) ||
             g4_gguf_writer_set_f32(w, K("rope.freq_base_swa"), s->rope_base_swa, err) ||
             g4_gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), s->rms_eps, err) ||
             g4_gguf_writer_set_u32(w, K("attention.key_length"), (uint32_t)s->head_dim_full, err) ||
             g4_gguf_writer_set_u32(w, K("attention.value_length"), (uint32_t)s->head_dim_full, err) ||
             g4_gguf_writer_set_u32(w, K("attention.key_length_swa"), (uint32_t)s->head_dim_swa, err) ||
             g4_gguf_writer_set_u32(w, K("attention.value_length_swa"), (uint32_t)s->head_dim_swa, err) ||
             (s->final_logit_softcapping != 0 &&
              g4_gguf_writer_set_f32(w, K("final_logit_softcapping"), s->final_logit_softcapping, err)) ||
             g4_gguf_writer_set_u32(w, K("attention.sliding_window"), (uint32_t)s->n_swa, err) ||
             g4_gguf_writer_set_u32(w, K("attention.shared_kv_layers"), (uint32_t)s->n_kv_shared, err) ||
             g4_gguf_writer_set_u32(w, K("embedding_length_per_layer_input"), (uint32_t)s->n_embd_per_layer, err) ||
             g4_gguf_writer_set_arr(w, K("attention.sliding_window_pattern"), GGUF_TYPE_BOOL, swa, (uint64_t)L, err) ||
             g4_gguf_writer_set_u32(w, K("rope.dimension_count"), (uint32_t)s->head_dim_full, err) ||
             g4_gguf_writer_set_u32(w, K("rope.dimension_count_swa"),
                                 (uint32_t)((double)s->head_dim_swa * s->partial_rotary_swa), err);
    if (!rc && s->n_suppress)
        rc = g4_gguf_writer_set_arr(w, "tokenizer.ggml.suppress_tokens", GGUF_TYPE_INT32, s->suppress_tokens,
                                    (uint64_t)s->n_suppress, err);
    if (!rc && s->n_expert)
        rc = g4_gguf_writer_set_u32(w, K("expert_count"), (uint32_t)s->n_expert, err) ||
             g4_gguf_writer_set_u32(w, K("expert_used_count"), (uint32_t)s->n_expert_used, err) ||
             g4_gguf_writer_set_u32(w, K("expert_feed_forward_length"), (uint32_t)s->n_ff_exp, err);
#undef K
    return rc ? -1 : 0;
}

static void report(int done, int n, uint64_t bytes, uint64_t total, double t0) {
    fprintf(stderr, "\r  %d/%d tensors, %.2f / %.2f GiB, %.1f s ", done, n, (double)bytes / (1 << 30),
            (double)total / (1 << 30), now() - t0);
    if (done == n) fputc('\n', stderr);
}

/* Streams every tensor, CHUNK_BYTES of rows at a time. */
static int write_tensors(g4_gguf_writer *w, const g4_shape *s, const g4_tensor_spec *ts, int n, enum g4_type type,
                         uint64_t seed, bool progress, char *err) {
    uint64_t total = 0, done = 0, next_report = 0;
    int64_t max_ne0 = 0;
    for (int i = 0; i < n; i++) {
        total += g4_gguf_writer_tensor_nbytes(w, i);
        if (ts[i].ne[0] > max_ne0) max_ne0 = ts[i].ne[0];
    }
    progress = progress || total >= PROGRESS_ALWAYS;
    float *scratch = malloc((size_t)max_ne0 * sizeof *scratch);
    uint8_t *buf = malloc(CHUNK_BYTES + (size_t)max_ne0 * sizeof(float));
    int rc = scratch && buf ? 0 : -1;
    if (rc) snprintf(err, G4_ERR_LEN, "mkmodel: out of memory");
    const double t0 = now();
    for (int i = 0; i < n && !rc; i++) {
        const enum g4_type tt = g4_shape_tensor_type(&ts[i], type);
        const size_t row_bytes = g4_row_size(tt, ts[i].ne[0]);
        const int64_t n_rows = ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3];
        int64_t step = (int64_t)(CHUNK_BYTES / row_bytes);
        if (step < 1) step = 1;
        for (int64_t r = 0; r < n_rows && !rc; r += step) {
            int64_t k = n_rows - r < step ? n_rows - r : step;
            g4_synth_rows(&ts[i], tt, seed, s->fast_weights, r, k, buf, scratch);
            rc = g4_gguf_writer_write(w, buf, (size_t)k * row_bytes, err);
            done += (uint64_t)k * row_bytes;
            if (progress && done >= next_report) {
                report(i, n, done, total, t0);
                next_report = done + (256u << 20);
            }
        }
    }
    if (!rc && progress) report(n, n, done, total, t0);
    free(scratch);
    free(buf);
    return rc;
}

int g4_mkmodel_write(const g4_shape *s, enum g4_type type, uint64_t seed, const char *path, bool progress,
                     char *err) {
    return g4_mkmodel_write_meta(s, type, seed, NULL, path, progress, err);
}

int g4_mkmodel_write_meta(const g4_shape *s, enum g4_type type, uint64_t seed, const g4_mkmodel_meta *meta,
                          const char *path, bool progress, char *err) {
    const g4_mkmodel_meta none = {0};
    if (!meta) meta = &none;
    int ti = file_type_index(type);
    if (ti < 0) {
        snprintf(err, G4_ERR_LEN, "mkmodel: weight type %s is not one of f32 f16 q8_0 q4_0 q4_k", g4_type_name(type));
        return -1;
    }
    if (meta->vocab) {
        int32_t n_vocab = g4_vocab_file_n_tokens(meta->vocab, err);
        if (n_vocab < 0) return -1;
        if (n_vocab != s->vocab_size)
            return g4_error(err, g4_gguf_path(meta->vocab), "%d tokens, the shape has vocab_size %d", n_vocab,
                            s->vocab_size);
    }
    int n = 0;
    g4_tensor_spec *ts = g4_shape_tensors(s, &n);
    g4_synth_vocab v = {0};
    g4_gguf_writer *w = NULL;
    int rc = -1;
    if (!ts) {
        snprintf(err, G4_ERR_LEN, "mkmodel: out of memory");
        return -1;
    }
    if (!meta->vocab && g4_synth_vocab_build(&v, s->vocab_size, err)) goto out;
    w = g4_gguf_writer_new(path, 0, err);
    if (!w || set_model_keys(w, s, ti, seed, meta->name, err) ||
        (meta->vocab ? g4_vocab_file_copy(meta->vocab, w, err) : g4_synth_vocab_write(&v, w, err)))
        goto out;
    for (int i = 0; i < n; i++)
        if (g4_gguf_writer_add_tensor(w, ts[i].name, g4_shape_tensor_type(&ts[i], type), ts[i].n_dims, ts[i].ne, err))
            goto out;
    if (g4_gguf_writer_begin(w, err) || write_tensors(w, s, ts, n, type, seed, progress, err) ||
        g4_gguf_writer_finish(w, err))
        goto out;
    rc = 0;
out:
    g4_gguf_writer_free(w);
    g4_synth_vocab_free(&v);
    free(ts);
    return rc;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 mkmodel [--preset NAME] [--type T] [--seed N] [--set KEY=VALUE ...] [--name NAME]\n"
            "                      [--vocab FILE.gguf] -o OUT.gguf [--progress]\n"
            "  Writes a Gemma 4 GGUF with deterministic random weights and a synthetic byte-fallback\n"
            "  vocabulary (same arguments -> same bytes). It loads in llama.cpp too.\n"
            "  --preset  %s\n"
            "            (default tiny-e2b; the real shapes have vocab 262144)\n"
            "  --type    f32 f16 q8_0 q4_0 q4_k (default: q4_0 for real shapes, f32 for tiny ones);\n"
            "            1-D tensors stay f32, the router and PLE projection f16 when quantized,\n"
            "            q4_k falls back to q4_0 (or f16) where a row is not a multiple of 256\n"
            "  --seed    weight seed (default: 1; the tiny presets use their fixture's seed)\n"
            "  --set     override a shape field, e.g. n_layer=3, vocab_size=1024, layer_types=SSF,\n"
            "            fast_weights=false (quantized random floats instead of random blocks)\n"
            "  --name    general.name (default gemma4-synthetic-PRESET-TYPE-sSEED)\n"
            "  --vocab   take the tokenizer (every tokenizer.* key, in its order) from this GGUF;\n"
            "            vocab_size becomes its token count\n"
            "  --progress  status on stderr (always on for files over 1 GiB)\n",
            g4_shape_preset_names());
}

int cmd_mkmodel(int argc, char **argv) {
    const char *preset = "tiny-e2b", *type_name = NULL, *out = NULL, *seed_arg = NULL, *vocab_path = NULL;
    g4_mkmodel_meta meta = {0};
    g4_gguf_file *vocab = NULL;
    bool progress = false;
    char err[G4_ERR_LEN];
    int n_sets = 0;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--progress")) {
            progress = true;
        } else if (has_value && !strcmp(a, "--preset")) {
            preset = argv[++i];
        } else if (has_value && !strcmp(a, "--type")) {
            type_name = argv[++i];
        } else if (has_value && !strcmp(a, "--seed")) {
            seed_arg = argv[++i];
        } else if (has_value && !strcmp(a, "--name")) {
            meta.name = argv[++i];
        } else if (has_value && !strcmp(a, "--vocab")) {
            vocab_path = argv[++i];
        } else if (has_value && !strcmp(a, "--set")) {
            sets[n_sets++] = argv[++i];
        } else if (has_value && (!strcmp(a, "-o") || !strcmp(a, "--output"))) {
            out = argv[++i];
        } else {
            fprintf(stderr, "gemma4 mkmodel: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            free(sets);
            return 2;
        }
    }
    g4_shape s;
    int rc = 1;
    if (!out) {
        snprintf(err, sizeof err, "mkmodel: -o OUT.gguf is required");
        goto fail;
    }
    if (g4_shape_preset(preset, &s, err)) goto fail;
    if (vocab_path) {
        if (!(vocab = g4_gguf_open(vocab_path, err))) goto fail;
        if ((s.vocab_size = g4_vocab_file_n_tokens(vocab, err)) < 0) goto fail;
        meta.vocab = vocab;
    }
    for (int i = 0; i < n_sets; i++)
        if (g4_shape_set(&s, sets[i], err)) goto fail;
    if (g4_shape_finalize(&s, err)) goto fail;
    uint64_t seed = s.seed;
    if (seed_arg) {
        char *end;
        seed = strtoull(seed_arg, &end, 10);
        if (!*seed_arg || *end || *seed_arg == '-') {
            snprintf(err, sizeof err, "mkmodel: --seed '%s' is not a non-negative integer", seed_arg);
            goto fail;
        }
    }
    if (!type_name) type_name = s.fast_weights ? "q4_0" : "f32";
    int ti = -1;
    for (int i = 0; i < (int)(sizeof file_types / sizeof file_types[0]); i++)
        if (!strcmp(type_name, file_types[i].name)) ti = i;
    if (ti < 0) {
        snprintf(err, sizeof err, "mkmodel: --type '%s' is not one of f32 f16 q8_0 q4_0 q4_k", type_name);
        goto fail;
    }
    double t0 = now();
    if (g4_mkmodel_write_meta(&s, file_types[ti].type, seed, &meta, out, progress, err)) goto fail;
    printf("wrote %s: preset %s, %s, seed %" PRIu64 ", %d layers, vocab %d, %.1f s\n", out, s.name, type_name,
           seed, s.n_layer, s.vocab_size, now() - t0);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "%s\n", err);
done:
    g4_gguf_close(vocab);
    free(sets);
    return rc;
}
