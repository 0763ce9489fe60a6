/* Model loading: what the loader derives from the fixture files (per-layer
 * table, KV sharing), and every inconsistency it must refuse with one line.
 * Broken models are fixture files rewritten with one change. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemma4.h"
#include "gguf/gguf_writer.h"
#include "tests/harness.h"

/* One change applied while copying a GGUF file. */
typedef struct edit {
    const char *drop_key;    /* leave this key out */
    const char *drop_tensor; /* leave this tensor out */
    const char *nan_tensor;  /* write NaN over the first value of this F32 tensor */
    const char *key;         /* replace this key's value ... */
    enum g4_gguf_value_type type; /* ... by a scalar of this type */
    double value;            /* numbers */
    const char *str;         /* strings */
} edit;

static int set_edited(g4_gguf_writer *w, const edit *e, char *err) {
    switch (e->type) {
    case GGUF_TYPE_UINT32: return g4_gguf_writer_set_u32(w, e->key, (uint32_t)e->value, err);
    case GGUF_TYPE_INT32: return g4_gguf_writer_set_i32(w, e->key, (int32_t)e->value, err);
    case GGUF_TYPE_FLOAT32: return g4_gguf_writer_set_f32(w, e->key, (float)e->value, err);
    case GGUF_TYPE_STRING: return g4_gguf_writer_set_str(w, e->key, e->str, err);
    default: return -1;
    }
}

/* Copies src to dst with edit e applied. */
static int rewrite(const char *src, const char *dst, const edit *e) {
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open(src, err);
    g4_gguf_writer *w = f ? g4_gguf_writer_new(dst, 0, err) : NULL;
    int rc = w ? 0 : -1;
    for (int64_t i = 0; !rc && i < g4_gguf_n_kv(f); i++) { /* f is NULL when rc is set */
        const g4_gguf_kv *kv = g4_gguf_kv_at(f, i);
        if (!strcmp(kv->key, "general.alignment") || (e->drop_key && !strcmp(kv->key, e->drop_key))) continue;
        rc = e->key && !strcmp(kv->key, e->key) ? set_edited(w, e, err) : g4_gguf_writer_copy_kv(w, kv, err);
    }
    for (int64_t i = 0; !rc && i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        if (e->drop_tensor && !strcmp(t->name, e->drop_tensor)) continue;
        rc = g4_gguf_writer_add_tensor(w, t->name, (enum g4_type)t->type, t->n_dims, t->ne, err);
    }
    rc = rc ? rc : g4_gguf_writer_begin(w, err);
    for (int64_t i = 0; !rc && i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        if (e->drop_tensor && !strcmp(t->name, e->drop_tensor)) continue;
        if (e->nan_tensor && !strcmp(t->name, e->nan_tensor)) {
            float *poisoned = malloc(t->nbytes);
            if (!poisoned) return -1;
            memcpy(poisoned, t->data, t->nbytes);
            poisoned[0] = NAN;
            rc = g4_gguf_writer_write(w, poisoned, t->nbytes, err);
            free(poisoned);
            continue;
        }
        rc = g4_gguf_writer_write(w, t->data, t->nbytes, err);
    }
    rc = rc ? rc : g4_gguf_writer_finish(w, err);
    if (rc) fprintf(stderr, "rewrite %s: %s\n", src, err);
    g4_gguf_writer_free(w);
    g4_gguf_close(f);
    return rc;
}

/* Loading the edited copy of fixture `model` must fail with `expect` in the
 * message (which must also name the file and be one line). */
static void expect_refused(const char *model, const edit *e, const char *expect) {
    char src[1024], dst[] = "/tmp/g4_test_model_XXXXXX", err[G4_ERR_LEN] = "";
    snprintf(src, sizeof src, "%s/models/%s.gguf", test_fixtures_dir(), model);
    int fd = mkstemp(dst);
    if (fd >= 0) close(fd);
    if (fd < 0 || rewrite(src, dst, e)) { /* rewrite printed why */
        CHECK(0, "%s: cannot rewrite it into %s", src, dst);
        remove(dst);
        return;
    }
    gemma4_model *m = gemma4_load(dst, err);
    CHECK(m == NULL, "%s with %s loaded but must be refused", model, expect);
    CHECK(strstr(err, expect) != NULL, "error '%s' does not say '%s'", err, expect);
    CHECK(strncmp(err, dst, strlen(dst)) == 0 && !strchr(err, '\n'), "error '%s' must be one line naming the file", err);
    gemma4_model_free(m);
    remove(dst);
}

static gemma4_model *load_fixture(const char *model) {
    char path[1024], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/models/%s.gguf", test_fixtures_dir(), model);
    gemma4_model *m = gemma4_load(path, err);
    CHECK(m != NULL, "loading %s: %s", path, err);
    return m;
}

/* The per-layer table of the three fixture shapes (fixtures README). */
static void test_derived_layers(void) {
    const struct {
        const char *model, *types;
        int n_kv_shared, kv_src[5], head_kv[5], ff[5];
        bool has_v_full, moe;
    } cases[] = {
        {"e2b_q4_0", "SSFSF", 2, {0, 1, 2, 1, 2}, {1, 1, 1, 1, 1}, {256, 256, 256, 512, 512}, true, false},
        {"moe_q4_k", "SSSF", 0, {0, 1, 2, 3}, {2, 2, 2, 1}, {128, 128, 128, 128}, false, true},
        {"dense_f32", "SSSF", 0, {0, 1, 2, 3}, {2, 2, 2, 1}, {256, 256, 256, 256}, false, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gemma4_model *m = load_fixture(cases[c].model);
        if (!m) continue;
        gemma4_info in;
        gemma4_model_info(m, &in);
        const int n_layer = (int)strlen(cases[c].types);
        CHECK(in.n_layer == n_layer && in.n_embd == 256 && in.n_head == 4 && in.n_vocab == 512 && in.n_swa == 8,
              "%s: hyperparameters", cases[c].model);
        CHECK(in.n_kv_shared == cases[c].n_kv_shared, "%s: shared KV layers %d", cases[c].model, in.n_kv_shared);
        uint64_t kv_bytes = 0;
        for (int l = 0; l < n_layer; l++) {
            gemma4_layer_info li;
            gemma4_layer_info_get(m, l, &li);
            const bool swa = cases[c].types[l] == 'S';
            CHECK(li.swa == swa, "%s layer %d: sliding", cases[c].model, l);
            CHECK(li.head_dim == (swa ? 64 : 128) && li.n_rot == li.head_dim, "%s layer %d: head dim %d", cases[c].model, l, li.head_dim);
            CHECK(li.rope_base == (swa ? 1e4f : 1e6f), "%s layer %d: rope base %g", cases[c].model, l, li.rope_base);
            CHECK(li.kv_src == cases[c].kv_src[l] && li.has_kv == (li.kv_src == l), "%s layer %d: KV from %d", cases[c].model, l, li.kv_src);
            CHECK(li.n_head_kv == cases[c].head_kv[l], "%s layer %d: %d KV heads", cases[c].model, l, li.n_head_kv);
            CHECK(li.n_ff == cases[c].ff[l], "%s layer %d: FFN %d", cases[c].model, l, li.n_ff);
            CHECK(li.moe == cases[c].moe, "%s layer %d: MoE", cases[c].model, l);
            CHECK(li.has_v == (swa || cases[c].has_v_full), "%s layer %d: own V", cases[c].model, l);
            kv_bytes += li.has_kv ? 2u * (uint64_t)li.n_head_kv * (uint64_t)li.head_dim * 4u : 0;
        }
        CHECK(in.kv_bytes_per_token == kv_bytes, "%s: KV bytes per token %llu", cases[c].model, (unsigned long long)in.kv_bytes_per_token);
        CHECK(gemma4_empty_thought_channel(m) == (strcmp(cases[c].model, "e2b_q4_0") != 0), "%s: thought channel", cases[c].model);
        gemma4_model_free(m);
    }
}

static void test_eval_errors(void) {
    gemma4_model *m = load_fixture("dense_q4_0");
    if (!m) return;
    char err[G4_ERR_LEN];
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 4, .n_threads = 1}, err);
    CHECK(s != NULL, "session: %s", err);
    if (s) {
        const int32_t bad[] = {2, 512};
        CHECK(gemma4_eval(s, bad, 2, NULL, false, err) == -1 && strstr(err, "outside the vocabulary"), "id 512: %s", err);
        CHECK(gemma4_session_pos(s) == 0, "a refused batch must not advance the position");
        const int32_t ok[] = {2, 10, 20, 30, 40};
        CHECK(gemma4_eval(s, ok, 5, NULL, false, err) == -1 && strstr(err, "do not fit"), "5 tokens in 4: %s", err);
        CHECK(gemma4_eval(s, ok, 4, NULL, false, err) == 0, "4 tokens in 4: %s", err);
        CHECK(gemma4_eval(s, ok, 1, NULL, false, err) == -1, "a full context refuses one more token");
        gemma4_session_truncate(s, 2);
        CHECK(gemma4_session_pos(s) == 2 && gemma4_eval(s, ok, 2, NULL, false, err) == 0, "truncate then refill");
    }
    gemma4_session_free(s);
    gemma4_model_free(m);
}

static void test_refusals(void) {
    expect_refused("dense_q4_0", &(edit){.drop_tensor = "blk.2.attn_q.weight"}, "missing tensor 'blk.2.attn_q.weight'");
    expect_refused("moe_q8_0", &(edit){.drop_tensor = "blk.0.ffn_gate_inp.scale"}, "missing tensor 'blk.0.ffn_gate_inp.scale'");
    expect_refused("e2b_q4_0", &(edit){.drop_tensor = "per_layer_proj_norm.weight"}, "missing tensor 'per_layer_proj_norm.weight'");
    expect_refused("dense_q4_0", &(edit){.drop_key = "gemma4.attention.sliding_window"}, "missing key 'gemma4.attention.sliding_window'");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.block_count", .type = GGUF_TYPE_INT32, .value = 4}, "gemma4.block_count");
    expect_refused("dense_q4_0", &(edit){.key = "general.architecture", .type = GGUF_TYPE_STRING, .str = "llama"},
                   "architecture 'llama' is not gemma4");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.attention.key_length_swa", .type = GGUF_TYPE_UINT32, .value = 32},
                   "key_length and value_length differ");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.embedding_length", .type = GGUF_TYPE_UINT32, .value = 128},
                   "has shape [256, 512], expected [128, 512]");
    expect_refused("e2b_q4_0", &(edit){.key = "gemma4.attention.shared_kv_layers", .type = GGUF_TYPE_UINT32, .value = 4},
                   "KV-shared layer");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.attention.head_count", .type = GGUF_TYPE_UINT32, .value = 3},
                   "does not divide head_count");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.block_count", .type = GGUF_TYPE_UINT32, .value = 5},
                   "has 4 elements, expected block_count = 5");
    expect_refused("moe_q4_0", &(edit){.key = "gemma4.expert_used_count", .type = GGUF_TYPE_UINT32, .value = 9},
                   "are inconsistent");
    /* values no model can have: each would make every logit NaN, or (experts)
     * the routing scratch and its cost unbounded */
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.attention.layer_norm_rms_epsilon", .type = GGUF_TYPE_FLOAT32, .value = -1e-6},
                   "layer_norm_rms_epsilon -1e-06 must be positive");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.attention.layer_norm_rms_epsilon", .type = GGUF_TYPE_FLOAT32, .value = NAN},
                   "layer_norm_rms_epsilon nan must be positive");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.rope.freq_base", .type = GGUF_TYPE_FLOAT32, .value = 0},
                   "rope.freq_base 0 / freq_base_swa 10000 must be positive");
    expect_refused("dense_q4_0", &(edit){.key = "gemma4.final_logit_softcapping", .type = GGUF_TYPE_FLOAT32, .value = INFINITY},
                   "final_logit_softcapping inf must be finite");
    expect_refused("moe_q4_0", &(edit){.key = "gemma4.expert_count", .type = GGUF_TYPE_UINT32, .value = 65536},
                   "expert_count 65536 / expert_used_count 2 exceed this engine's bounds (1024 / 64)");
    expect_refused("moe_q4_0", &(edit){.key = "gemma4.expert_used_count", .type = GGUF_TYPE_UINT32, .value = 4096},
                   "expert_count 8 / expert_used_count 4096 exceed");
    expect_refused("dense_q4_0", &(edit){.nan_tensor = "blk.1.attn_norm.weight"}, "tensor blk.1.attn_norm.weight: value 0 is not finite");
}

/* Logits of a few tokens from a fresh session; 0 or -1. */
static int logits_of(const gemma4_model *m, float *out, char *err) {
    static const int32_t ids[] = {2, 10, 20, 30, 40, 50, 60, 70, 80, 90};
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 16, .n_threads = 2}, err);
    int rc = s ? gemma4_eval(s, ids, 10, out, true, err) : -1;
    gemma4_session_free(s);
    return rc;
}

/* gemma4_load_params.no_mmap reads the file into memory: the same logits
 * as the mapping, and they stay the same when the file's tensor data is
 * overwritten after the load, where a mapped model (Q8_0: nothing
 * repacked, every weight read from the mapping) sees the new bytes.
 * .mlock either loads the same model or fails naming RLIMIT_MEMLOCK. */
static void test_load_options(void) {
    static const char *const models[] = {"dense_q8_0", "dense_q4_0"};
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        char src[1024], dst[] = "/tmp/g4_test_model_XXXXXX", err[G4_ERR_LEN] = "";
        snprintf(src, sizeof src, "%s/models/%s.gguf", test_fixtures_dir(), models[k]);
        int fd = mkstemp(dst);
        if (fd >= 0) close(fd);
        if (fd < 0 || rewrite(src, dst, &(edit){0})) {
            CHECK(0, "%s: cannot copy it to %s", src, dst);
            remove(dst);
            continue;
        }
        const size_t n = 10 * 512;
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
        gemma4_model *mapped = gemma4_load(dst, err);
        CHECK(mapped != NULL, "%s: %s", dst, err);
        gemma4_model *read = gemma4_load_ex(dst, &(gemma4_load_params){.no_mmap = true}, err);
        CHECK(read != NULL, "%s --no-mmap: %s", dst, err);
        gemma4_model *locked = gemma4_load_ex(dst, &(gemma4_load_params){.mlock = true, .no_mmap = k == 1}, err);
        CHECK(locked != NULL || strstr(err, "RLIMIT_MEMLOCK"), "%s mlock: %s", dst, err);
        if (a && b && c && mapped && read && !logits_of(mapped, a, err) && !logits_of(read, b, err)) {
            CHECK(!memcmp(a, b, n * sizeof *a), "%s: logits with no_mmap differ from the mapped ones", models[k]);
            CHECK(!locked || (!logits_of(locked, c, err) && !memcmp(a, c, n * sizeof *a)), "%s: logits with mlock differ",
                  models[k]);
            /* zero the tensor data in the file (the same inode the mapping reads) */
            g4_gguf_file *f = g4_gguf_open(dst, err);
            const uint64_t off = f ? g4_gguf_data_offset(f) : 0, size = f ? g4_gguf_file_size(f) : 0;
            g4_gguf_close(f);
            FILE *w = fopen(dst, "r+b");
            int wrote = w && off && !fseek(w, (long)off, SEEK_SET);
            for (uint64_t i = off; wrote && i < size; i++) wrote = fputc(0, w) != EOF;
            wrote = w && !fclose(w) && wrote;
            CHECK(wrote, "%s: cannot overwrite the tensor data", dst);
            CHECK(wrote && !logits_of(read, c, err) && !memcmp(b, c, n * sizeof *b),
                  "%s: the no_mmap model changed with the file", models[k]);
            if (k == 0)
                CHECK(wrote && (logits_of(mapped, c, err) || memcmp(a, c, n * sizeof *a)),
                      "%s: the mapped model did not see the file change (is the test still testing?)", models[k]);
        } else {
            CHECK(0, "%s: logits: %s", models[k], err);
        }
        gemma4_model_free(mapped);
        gemma4_model_free(read);
        gemma4_model_free(locked);
        free(a), free(b), free(c);
        remove(dst);
    }
}

int main(void) {
    test_load_options();
    test_derived_layers();
    test_eval_errors();
    test_refusals();
    return test_summary("test_model");
}
