/* The GGUF writer and the synthetic model writer (gemma4 mkmodel).
 *
 * Independent references: the fixture models (tests/data/manifest.json) were
 * written by a separate Python generator with the same seeds, so a tiny
 * preset must reproduce their tensor list (manifest.json), their model
 * metadata, and -- the float stream and reference quantizers being the same
 * -- their tensor bytes; the real shapes' tensor counts come from docs/architecture.md §2.3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "kernels/formats.h"
#include "tests/harness.h"
#include "gguf/json.h"
#include "tokenizer/tokenizer.h"
#include "tools/commands.h"
#include "tools/synth/mkmodel.h"
#include "tools/synth/model_shapes.h"
#include "tools/synth/synth_vocab.h"
#include "tools/synth/synth_weights.h"

static char tmp_dir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/test_mkmodel_%d_%s", tmp_dir, (int)getpid(), name);
    return p;
}

static char *read_file(const char *path, size_t *n) {
    char err[G4_ERR_LEN];
    return g4_read_file(path, n, err);
}

static bool str_eq(g4_gguf_str s, const char *c) { return s.len == strlen(c) && !memcmp(s.ptr, c, s.len); }

/* Same type and value (arrays: element type, count and elements). */
static bool kv_equal(const g4_gguf_kv *a, const g4_gguf_kv *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_TYPE_STRING: return a->val.str.len == b->val.str.len && !memcmp(a->val.str.ptr, b->val.str.ptr, a->val.str.len);
    case GGUF_TYPE_BOOL: return a->val.b == b->val.b;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: return a->val.f64 == b->val.f64;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: return a->val.i64 == b->val.i64;
    case GGUF_TYPE_ARRAY:
        if (a->arr_type != b->arr_type || a->arr_n != b->arr_n) return false;
        if (a->arr_type != GGUF_TYPE_STRING) return !memcmp(a->arr_data, b->arr_data, a->arr_n * g4_gguf_value_size(a->arr_type));
        for (uint64_t i = 0; i < a->arr_n; i++) {
            g4_gguf_str x = ((const g4_gguf_str *)a->arr_data)[i], y = ((const g4_gguf_str *)b->arr_data)[i];
            if (x.len != y.len || memcmp(x.ptr, y.ptr, x.len)) return false;
        }
        return true;
    default: return a->val.u64 == b->val.u64;
    }
}

/* ---------------------------------------------------------------- writer */

static void test_writer(void) {
    char err[G4_ERR_LEN];
    const char *path = tmp_path("writer.gguf");
    CHECK(g4_gguf_writer_new(path, 48, err) == NULL && strstr(err, "power of two"), "alignment 48: %s", err);

    g4_gguf_writer *w = g4_gguf_writer_new(path, 64, err);
    CHECK(w != NULL, "%s", err);
    if (!w) return;
    uint8_t u8 = 200; int8_t i8 = -100; uint16_t u16 = 60000; int16_t i16 = -30000;
    uint64_t u64 = (1ull << 40) + 3; int64_t i64 = -(1ll << 40); double f64 = 0.1; bool b = true;
    CHECK(!g4_gguf_writer_set(w, "t.u8", GGUF_TYPE_UINT8, &u8, err), "%s", err);
    CHECK(!g4_gguf_writer_set(w, "t.i8", GGUF_TYPE_INT8, &i8, err), "%s", err);
    CHECK(!g4_gguf_writer_set(w, "t.u16", GGUF_TYPE_UINT16, &u16, err), "%s", err);
    CHECK(!g4_gguf_writer_set(w, "t.i16", GGUF_TYPE_INT16, &i16, err), "%s", err);
    CHECK(!g4_gguf_writer_set_u32(w, "t.u32", 4000000000u, err), "%s", err);
    CHECK(!g4_gguf_writer_set_i32(w, "t.i32", -2000000000, err), "%s", err);
    CHECK(!g4_gguf_writer_set_f32(w, "t.f32", 1.5f, err), "%s", err);
    CHECK(!g4_gguf_writer_set(w, "t.bool", GGUF_TYPE_BOOL, &b, err), "%s", err);
    CHECK(!g4_gguf_writer_set(w, "t.u64", GGUF_TYPE_UINT64, &u64, err), "%s", err);
    CHECK(!g4_gguf_writer_set(w, "t.i64", GGUF_TYPE_INT64, &i64, err), "%s", err);
    CHECK(!g4_gguf_writer_set(w, "t.f64", GGUF_TYPE_FLOAT64, &f64, err), "%s", err);
    CHECK(!g4_gguf_writer_set_str(w, "t.str", "h\xC3\xA9llo \xE2\x96\x81 world", err), "%s", err);
    const char *strs[] = {"a", "", "\xC3\xBCn\xC3\xAF", "x y"};
    const int32_t ints[] = {7, -8, 2147483647};
    const bool bools[] = {true, false, true, true, false};
    const float floats[] = {-1000.0f, 0.25f};
    CHECK(!g4_gguf_writer_set_arr(w, "t.astr", GGUF_TYPE_STRING, strs, 4, err), "%s", err);
    CHECK(!g4_gguf_writer_set_arr(w, "t.ai32", GGUF_TYPE_INT32, ints, 3, err), "%s", err);
    CHECK(!g4_gguf_writer_set_arr(w, "t.abool", GGUF_TYPE_BOOL, bools, 5, err), "%s", err);
    CHECK(!g4_gguf_writer_set_arr(w, "t.af32", GGUF_TYPE_FLOAT32, floats, 2, err), "%s", err);
    CHECK(!g4_gguf_writer_set_arr(w, "t.aempty", GGUF_TYPE_UINT8, NULL, 0, err), "%s", err);

    /* refused: duplicate / empty keys, nested arrays */
    CHECK(g4_gguf_writer_set_u32(w, "t.u32", 1, err) == -1 && strstr(err, "duplicate key 't.u32'") && strstr(err, path),
          "duplicate key: %s", err);
    CHECK(g4_gguf_writer_set_arr(w, "t.ai32", GGUF_TYPE_INT32, ints, 1, err) == -1 && strstr(err, "duplicate"), "%s", err);
    CHECK(g4_gguf_writer_set_str(w, "", "x", err) == -1 && strstr(err, "empty"), "%s", err);
    CHECK(g4_gguf_writer_set_arr(w, "t.nested", GGUF_TYPE_ARRAY, ints, 1, err) == -1, "nested array accepted");

    /* tensors: sizes that need padding at alignment 64 */
    const int64_t ne_a[] = {3}, ne_b[] = {32, 2}, ne_c[] = {5, 1, 2}, ne_bad[] = {33, 2}, ne_neg[] = {4, -1};
    CHECK(!g4_gguf_writer_add_tensor(w, "a", G4_TYPE_F32, 1, ne_a, err), "%s", err);
    CHECK(!g4_gguf_writer_add_tensor(w, "b", G4_TYPE_Q8_0, 2, ne_b, err), "%s", err);
    CHECK(!g4_gguf_writer_add_tensor(w, "c", G4_TYPE_F16, 3, ne_c, err), "%s", err);
    CHECK(g4_gguf_writer_add_tensor(w, "b", G4_TYPE_F32, 1, ne_a, err) == -1 && strstr(err, "duplicate tensor 'b'"),
          "duplicate tensor: %s", err);
    CHECK(g4_gguf_writer_add_tensor(w, "q", G4_TYPE_Q4_0, 2, ne_bad, err) == -1 && strstr(err, "block size"), "%s", err);
    CHECK(g4_gguf_writer_add_tensor(w, "q", G4_TYPE_F32, 2, ne_neg, err) == -1 && strstr(err, "not positive"), "%s", err);
    CHECK(g4_gguf_writer_add_tensor(w, "q", G4_TYPE_F32, 5, ne_a, err) == -1, "5 dims accepted");
    CHECK(g4_gguf_writer_add_tensor(w, "q", G4_TYPE_Q8_K, 1, ne_a, err) == -1, "q8_k weight accepted");
    char long_name[80];
    memset(long_name, 'x', 64);
    long_name[64] = 0;
    CHECK(g4_gguf_writer_add_tensor(w, long_name, G4_TYPE_F32, 1, ne_a, err) == -1, "64-byte name accepted");
    CHECK(g4_gguf_writer_n_tensors(w) == 3, "n_tensors %lld", (long long)g4_gguf_writer_n_tensors(w));
    CHECK(g4_gguf_writer_tensor_nbytes(w, 1) == 68, "q8_0 [32,2] bytes %llu", (unsigned long long)g4_gguf_writer_tensor_nbytes(w, 1));

    /* data in uneven pieces that straddle tensor boundaries */
    uint8_t data[12 + 68 + 20];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 37 + 11);
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial-%d", path, (int)getpid());
    CHECK(!g4_gguf_writer_begin(w, err), "%s", err);
    CHECK(access(partial, F_OK) == 0 && access(path, F_OK) != 0, "written under a partial name until finished");
    CHECK(g4_gguf_writer_set_u32(w, "late", 1, err) == -1, "key accepted after begin");
    CHECK(!g4_gguf_writer_write(w, data, 7, err) && !g4_gguf_writer_write(w, data + 7, 70, err) &&
              !g4_gguf_writer_write(w, data + 77, sizeof data - 77, err),
          "%s", err);
    CHECK(g4_gguf_writer_write(w, data, 1, err) == -1 && strstr(err, "more than declared"), "%s", err);
    g4_gguf_writer_free(w);
    CHECK(access(partial, F_OK) != 0 && access(path, F_OK) != 0, "a failed file was left behind");

    /* again, cleanly */
    w = g4_gguf_writer_new(path, 64, err);
    g4_gguf_writer_set_arr(w, "t.astr", GGUF_TYPE_STRING, strs, 4, err);
    g4_gguf_writer_set(w, "t.u8", GGUF_TYPE_UINT8, &u8, err);
    g4_gguf_writer_set(w, "t.i8", GGUF_TYPE_INT8, &i8, err);
    g4_gguf_writer_set(w, "t.u16", GGUF_TYPE_UINT16, &u16, err);
    g4_gguf_writer_set(w, "t.i16", GGUF_TYPE_INT16, &i16, err);
    g4_gguf_writer_set_u32(w, "t.u32", 4000000000u, err);
    g4_gguf_writer_set_i32(w, "t.i32", -2000000000, err);
    g4_gguf_writer_set_f32(w, "t.f32", 1.5f, err);
    g4_gguf_writer_set(w, "t.bool", GGUF_TYPE_BOOL, &b, err);
    g4_gguf_writer_set(w, "t.u64", GGUF_TYPE_UINT64, &u64, err);
    g4_gguf_writer_set(w, "t.i64", GGUF_TYPE_INT64, &i64, err);
    g4_gguf_writer_set(w, "t.f64", GGUF_TYPE_FLOAT64, &f64, err);
    g4_gguf_writer_set_str(w, "t.str", "h\xC3\xA9llo \xE2\x96\x81 world", err);
    g4_gguf_writer_set_arr(w, "t.ai32", GGUF_TYPE_INT32, ints, 3, err);
    g4_gguf_writer_set_arr(w, "t.abool", GGUF_TYPE_BOOL, bools, 5, err);
    g4_gguf_writer_set_arr(w, "t.af32", GGUF_TYPE_FLOAT32, floats, 2, err);
    g4_gguf_writer_add_tensor(w, "a", G4_TYPE_F32, 1, ne_a, err);
    g4_gguf_writer_add_tensor(w, "b", G4_TYPE_Q8_0, 2, ne_b, err);
    g4_gguf_writer_add_tensor(w, "c", G4_TYPE_F16, 3, ne_c, err);
    CHECK(!g4_gguf_writer_begin(w, err) && !g4_gguf_writer_write(w, data, 50, err), "%s", err);
    CHECK(g4_gguf_writer_finish(w, err) == -1 && strstr(err, "tensor 'b' got 38 of its 68 bytes"), "short: %s", err);
    g4_gguf_writer_free(w);
    CHECK(access(partial, F_OK) != 0 && access(path, F_OK) != 0, "an unfinished file was left behind");

    w = g4_gguf_writer_new(path, 64, err);
    g4_gguf_writer_set_arr(w, "t.astr", GGUF_TYPE_STRING, strs, 4, err);
    g4_gguf_writer_set(w, "t.u8", GGUF_TYPE_UINT8, &u8, err);
    g4_gguf_writer_set(w, "t.i8", GGUF_TYPE_INT8, &i8, err);
    g4_gguf_writer_set(w, "t.u16", GGUF_TYPE_UINT16, &u16, err);
    g4_gguf_writer_set(w, "t.i16", GGUF_TYPE_INT16, &i16, err);
    g4_gguf_writer_set_u32(w, "t.u32", 4000000000u, err);
    g4_gguf_writer_set_i32(w, "t.i32", -2000000000, err);
    g4_gguf_writer_set_f32(w, "t.f32", 1.5f, err);
    g4_gguf_writer_set(w, "t.bool", GGUF_TYPE_BOOL, &b, err);
    g4_gguf_writer_set(w, "t.u64", GGUF_TYPE_UINT64, &u64, err);
    g4_gguf_writer_set(w, "t.i64", GGUF_TYPE_INT64, &i64, err);
    g4_gguf_writer_set(w, "t.f64", GGUF_TYPE_FLOAT64, &f64, err);
    g4_gguf_writer_set_str(w, "t.str", "h\xC3\xA9llo \xE2\x96\x81 world", err);
    g4_gguf_writer_set_arr(w, "t.ai32", GGUF_TYPE_INT32, ints, 3, err);
    g4_gguf_writer_set_arr(w, "t.abool", GGUF_TYPE_BOOL, bools, 5, err);
    g4_gguf_writer_set_arr(w, "t.af32", GGUF_TYPE_FLOAT32, floats, 2, err);
    g4_gguf_writer_add_tensor(w, "a", G4_TYPE_F32, 1, ne_a, err);
    g4_gguf_writer_add_tensor(w, "b", G4_TYPE_Q8_0, 2, ne_b, err);
    g4_gguf_writer_add_tensor(w, "c", G4_TYPE_F16, 3, ne_c, err);
    CHECK(!g4_gguf_writer_begin(w, err) && !g4_gguf_writer_write(w, data, sizeof data, err) && !g4_gguf_writer_finish(w, err),
          "%s", err);
    g4_gguf_writer_free(w);
    CHECK(access(partial, F_OK) != 0, "partial file left after finish");

    g4_gguf_file *f = g4_gguf_open(path, err);
    CHECK(f != NULL, "read back: %s", err);
    if (!f) return;
    CHECK(g4_gguf_n_kv(f) == 17, "n_kv %lld (16 + general.alignment)", (long long)g4_gguf_n_kv(f));
    CHECK(g4_gguf_alignment(f) == 64, "alignment %llu", (unsigned long long)g4_gguf_alignment(f));
    uint32_t u32v = 0;
    int32_t i32v = 0;
    float f32v = 0;
    bool bv = false;
    g4_gguf_str sv = {0};
    CHECK(!g4_gguf_get_u32(f, "general.alignment", &u32v, err) && u32v == 64, "general.alignment %u", u32v);
    CHECK(!g4_gguf_get_u32(f, "t.u32", &u32v, err) && u32v == 4000000000u, "u32 %u", u32v);
    CHECK(!g4_gguf_get_i32(f, "t.i32", &i32v, err) && i32v == -2000000000, "i32 %d", i32v);
    CHECK(!g4_gguf_get_f32(f, "t.f32", &f32v, err) && f32v == 1.5f, "f32 %g", f32v);
    CHECK(!g4_gguf_get_bool(f, "t.bool", &bv, err) && bv, "bool");
    CHECK(!g4_gguf_get_str(f, "t.str", &sv, err) && str_eq(sv, "h\xC3\xA9llo \xE2\x96\x81 world"), "str");
    CHECK(g4_gguf_get_u32(f, "t.i32", &u32v, err) == GGUF_ETYPE, "i32 read as u32");
    const g4_gguf_kv *kv;
    CHECK((kv = g4_gguf_find_kv(f, "t.u8")) && kv->type == GGUF_TYPE_UINT8 && kv->val.u64 == 200, "u8");
    CHECK((kv = g4_gguf_find_kv(f, "t.i8")) && kv->type == GGUF_TYPE_INT8 && kv->val.i64 == -100, "i8");
    CHECK((kv = g4_gguf_find_kv(f, "t.u16")) && kv->type == GGUF_TYPE_UINT16 && kv->val.u64 == 60000, "u16");
    CHECK((kv = g4_gguf_find_kv(f, "t.i16")) && kv->type == GGUF_TYPE_INT16 && kv->val.i64 == -30000, "i16");
    CHECK((kv = g4_gguf_find_kv(f, "t.u64")) && kv->type == GGUF_TYPE_UINT64 && kv->val.u64 == u64, "u64");
    CHECK((kv = g4_gguf_find_kv(f, "t.i64")) && kv->type == GGUF_TYPE_INT64 && kv->val.i64 == i64, "i64");
    CHECK((kv = g4_gguf_find_kv(f, "t.f64")) && kv->type == GGUF_TYPE_FLOAT64 && kv->val.f64 == 0.1, "f64");
    CHECK(g4_gguf_kv_at(f, 0) && !strcmp(g4_gguf_kv_at(f, 0)->key, "general.alignment"), "alignment key first");
    const void *arr;
    uint64_t n = 0;
    CHECK(!g4_gguf_get_arr(f, "t.astr", GGUF_TYPE_STRING, &arr, &n, err) && n == 4, "string array n %llu", (unsigned long long)n);
    for (uint64_t i = 0; i < n && i < 4; i++) CHECK(str_eq(((const g4_gguf_str *)arr)[i], strs[i]), "string %llu", (unsigned long long)i);
    CHECK(!g4_gguf_get_arr(f, "t.ai32", GGUF_TYPE_INT32, &arr, &n, err) && n == 3 && !memcmp(arr, ints, sizeof ints), "i32 array");
    CHECK(!g4_gguf_get_arr(f, "t.af32", GGUF_TYPE_FLOAT32, &arr, &n, err) && n == 2 && !memcmp(arr, floats, sizeof floats), "f32 array");
    CHECK(!g4_gguf_get_arr(f, "t.abool", GGUF_TYPE_BOOL, &arr, &n, err) && n == 5, "bool array");
    for (uint64_t i = 0; i < n && i < 5; i++) CHECK(((const uint8_t *)arr)[i] == bools[i], "bool %llu", (unsigned long long)i);

    /* layout: data section and every tensor at a multiple of 64, zero padding,
     * the file ends padded after the last tensor */
    const uint64_t expect_off[] = {0, 64, 192}, expect_bytes[] = {12, 68, 20};
    size_t fsize = 0;
    uint8_t *raw = (uint8_t *)read_file(path, &fsize);
    uint64_t base = g4_gguf_data_offset(f);
    CHECK(base % 64 == 0, "data offset %llu", (unsigned long long)base);
    CHECK(g4_gguf_n_tensors(f) == 3 && fsize == base + 192 + 64, "tensors %lld, size %zu", (long long)g4_gguf_n_tensors(f), fsize);
    const uint8_t *src = data;
    for (int64_t i = 0; i < g4_gguf_n_tensors(f) && i < 3 && raw; i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        CHECK(t->offset == expect_off[i] && t->nbytes == expect_bytes[i], "%s at %llu, %llu bytes", t->name,
              (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        CHECK(!memcmp(t->data, src, t->nbytes), "%s data", t->name);
        uint64_t end = base + t->offset + t->nbytes, pad_end = base + (t->offset + t->nbytes + 63) / 64 * 64;
        bool zero = true;
        for (uint64_t p = end; p < pad_end && p < fsize; p++) zero = zero && raw[p] == 0;
        CHECK(zero, "padding after %s not zero", t->name);
        src += t->nbytes;
    }
    const g4_gguf_tensor *c = g4_gguf_find_tensor(f, "c");
    CHECK(c && c->n_dims == 3 && c->ne[0] == 5 && c->ne[1] == 1 && c->ne[2] == 2 && c->type == G4_TYPE_F16, "c shape");
    free(raw);
    g4_gguf_close(f);
    unlink(path);
}

/* ---------------------------------------------------------------- models */

static const struct {
    const char *preset, *fixture; /* fixture file prefix */
} tiny[] = {{"tiny-e2b", "e2b"}, {"tiny-moe", "moe"}, {"tiny-dense", "dense"}};
static const struct {
    enum g4_type type;
    const char *name;
} types[] = {{G4_TYPE_F32, "f32"}, {G4_TYPE_Q8_0, "q8_0"}, {G4_TYPE_Q4_0, "q4_0"}, {G4_TYPE_Q4_K, "q4_k"}};

/* Every tensor: shape and type as the shape's rule says, bytes as the
 * generator produces them again in memory. */
static void check_tensors_regenerate(const g4_gguf_file *f, const g4_shape *s, enum g4_type type, uint64_t seed,
                                     const char *what) {
    int n = 0;
    g4_tensor_spec *ts = g4_shape_tensors(s, &n);
    CHECK(g4_gguf_n_tensors(f) == n, "%s: %lld tensors, shape says %d", what, (long long)g4_gguf_n_tensors(f), n);
    int bad = 0;
    for (int i = 0; i < n && i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        enum g4_type tt = g4_shape_tensor_type(&ts[i], type);
        bool same = !strcmp(t->name, ts[i].name) && t->n_dims == ts[i].n_dims && t->type == (uint32_t)tt;
        for (int d = 0; d < 4; d++) same = same && t->ne[d] == ts[i].ne[d];
        int64_t rows = ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3];
        size_t nbytes = (size_t)rows * g4_row_size(tt, ts[i].ne[0]);
        uint8_t *buf = malloc(nbytes);
        float *scratch = malloc((size_t)ts[i].ne[0] * sizeof(float));
        g4_synth_rows(&ts[i], tt, seed, s->fast_weights, 0, rows, buf, scratch);
        same = same && t->nbytes == nbytes && !memcmp(t->data, buf, nbytes);
        if (!same && bad++ < 3) CHECK(same, "%s: tensor %d '%s' differs from the shape / regenerated bytes", what, i, t->name);
        free(buf);
        free(scratch);
    }
    CHECK(bad == 0, "%s: %d tensors differ", what, bad);
    free(ts);
}

/* The tensor list of the fixture in manifest.json: names, ne, and (f32) type. */
static void check_manifest(const g4_gguf_file *f, const g4_json *manifest, const char *fixture_name, bool f32,
                           const char *what) {
    const g4_json *models = g4_json_get(manifest, "models"), *m = NULL;
    for (size_t i = 0; models && i < models->len; i++) {
        const g4_json *name = g4_json_get(&models->items[i], "name");
        if (name && name->str && !strcmp(name->str, fixture_name)) m = &models->items[i];
    }
    const g4_json *list = g4_json_get(m, "tensors");
    CHECK(list && list->type == G4_JSON_ARRAY && (int64_t)list->len == g4_gguf_n_tensors(f), "%s: manifest has %zu tensors",
          what, list ? list->len : 0);
    int bad = 0;
    for (size_t i = 0; list && i < list->len && (int64_t)i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, (int64_t)i);
        const g4_json *name = g4_json_get(&list->items[i], "name"), *ne = g4_json_get(&list->items[i], "ne"),
                         *ty = g4_json_get(&list->items[i], "type");
        bool same = name && name->str && !strcmp(name->str, t->name) && ne && ne->len == t->n_dims;
        for (size_t d = 0; same && d < ne->len; d++) same = ne->items[d].is_int && ne->items[d].integer == t->ne[d];
        if (f32) same = same && ty && ty->str && !strcmp(ty->str, "F32") && t->type == G4_TYPE_F32;
        if (!same && bad++ < 3) CHECK(same, "%s: tensor %zu '%s' differs from manifest.json", what, i, t->name);
    }
    CHECK(bad == 0, "%s: %d tensors differ from manifest.json", what, bad);
}

/* The fixture model written by the reference generator: same model keys,
 * same tokenizer keys (types, special ids, the fixed ids 0..287), and
 * bit-identical tensor data. */
static void check_against_fixture(const g4_gguf_file *f, const g4_gguf_file *fx, const char *what) {
    int n_model_keys = 0, n_fixture_model_keys = 0;
    for (int64_t i = 0; i < g4_gguf_n_kv(fx); i++) {
        const g4_gguf_kv *a = g4_gguf_kv_at(fx, i), *b = g4_gguf_find_kv(f, a->key);
        if (!strcmp(a->key, "general.name")) continue;
        if (strncmp(a->key, "tokenizer.", 10)) {
            n_fixture_model_keys++;
            CHECK(b && kv_equal(a, b), "%s: key %s differs from the fixture", what, a->key);
        } else if (strstr(a->key, "_id") || strstr(a->key, "add_") || !strcmp(a->key, "tokenizer.ggml.model")) {
            CHECK(b && kv_equal(a, b), "%s: key %s differs from the fixture", what, a->key);
        } else {
            CHECK(b && b->type == a->type && b->arr_type == a->arr_type, "%s: key %s type differs", what, a->key);
        }
    }
    for (int64_t i = 0; i < g4_gguf_n_kv(f); i++)
        n_model_keys += strncmp(g4_gguf_kv_at(f, i)->key, "tokenizer.", 10) && strcmp(g4_gguf_kv_at(f, i)->key, "general.name");
    CHECK(n_model_keys == n_fixture_model_keys, "%s: %d model keys, fixture %d", what, n_model_keys, n_fixture_model_keys);

    const void *ta, *tb, *ya, *yb;
    uint64_t na = 0, nb = 0;
    char err[G4_ERR_LEN];
    if (!g4_gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &ta, &na, err) &&
        !g4_gguf_get_arr(fx, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tb, &nb, err) &&
        !g4_gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &ya, &na, err) &&
        !g4_gguf_get_arr(fx, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &yb, &nb, err)) {
        CHECK(na == nb, "%s: %llu tokens, fixture %llu", what, (unsigned long long)na, (unsigned long long)nb);
        bool same = na >= G4_SYNTH_VOCAB_MIN && nb >= G4_SYNTH_VOCAB_MIN;
        for (int i = 0; same && i < G4_SYNTH_VOCAB_MIN; i++) {
            g4_gguf_str x = ((const g4_gguf_str *)ta)[i], y = ((const g4_gguf_str *)tb)[i];
            same = x.len == y.len && !memcmp(x.ptr, y.ptr, x.len) && ((const int32_t *)ya)[i] == ((const int32_t *)yb)[i];
        }
        CHECK(same, "%s: tokens 0..%d differ from the fixture vocabulary", what, G4_SYNTH_VOCAB_MIN - 1);
    } else {
        CHECK(0, "%s: token arrays: %s", what, err);
    }

    int bad = 0;
    for (int64_t i = 0; i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i), *u = g4_gguf_find_tensor(fx, t->name);
        bool same = u && u->type == t->type && u->nbytes == t->nbytes && !memcmp(u->data, t->data, t->nbytes);
        if (!same && bad++ < 3) CHECK(same, "%s: tensor '%s' bytes differ from the fixture", what, t->name);
    }
    CHECK(bad == 0, "%s: %d tensors differ from the fixture", what, bad);
}

static void check_vocab(const g4_gguf_file *f, const char *what) {
    char err[G4_ERR_LEN];
    g4_vocab *v = g4_vocab_load(f, err);
    CHECK(v != NULL, "%s: vocab: %s", what, err);
    if (!v) return;
    CHECK(g4_vocab_bos(v) == 2 && g4_vocab_eos(v) == 1, "%s: bos %d eos %d", what, g4_vocab_bos(v), g4_vocab_eos(v));
    const char *text = "Hello world, the model said: <|turn>user\nhow are you? \xC3\x9F\xE2\x82\xAC 42";
    int32_t *ids = NULL;
    int64_t n = g4_tokenize(v, text, strlen(text), true, true, &ids, err);
    CHECK(n > 2 && ids[0] == 2, "%s: tokenize: %lld %s", what, (long long)n, n < 0 ? err : "");
    char out[256];
    size_t len = 0;
    bool turn = false;
    for (int64_t i = 1; i < n; i++) {
        size_t k = g4_token_to_piece(v, ids[i], true, out + len, sizeof out - len);
        len += k < sizeof out - len ? k : 0;
        turn = turn || ids[i] == g4_vocab_find(v, "<|turn>", 7);
    }
    CHECK(len == strlen(text) && !memcmp(out, text, len), "%s: detokenized text differs (%zu bytes)", what, len);
    CHECK(turn, "%s: <|turn> not parsed as a special token", what);
    free(ids);
    /* a word built by the merge chains is one token */
    n = g4_tokenize(v, " the", 4, false, false, &ids, err);
    CHECK(n == 1 && ids[0] == g4_vocab_find(v, "\xE2\x96\x81the", 6), "%s: ' the' -> %lld tokens", what, (long long)n);
    free(ids);
    g4_vocab_free(v);
}

static void test_tiny_models(void) {
    char err[G4_ERR_LEN], fx_path[512];
    snprintf(fx_path, sizeof fx_path, "%s/manifest.json", test_fixtures_dir());
    g4_json *manifest = g4_json_parse_file(fx_path, err);
    CHECK(manifest != NULL, "%s", err);
    for (size_t p = 0; p < sizeof tiny / sizeof tiny[0]; p++) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            char what[64], fixture_name[32];
            snprintf(what, sizeof what, "%s %s", tiny[p].preset, types[k].name);
            snprintf(fixture_name, sizeof fixture_name, "%s_%s", tiny[p].fixture, types[k].name);
            g4_shape s;
            CHECK(!g4_shape_preset(tiny[p].preset, &s, err) && !g4_shape_finalize(&s, err), "%s: %s", what, err);
            const char *path = tmp_path("tiny.gguf");
            if (g4_mkmodel_write(&s, types[k].type, s.seed, path, false, err)) {
                CHECK(0, "%s: %s", what, err);
                continue;
            }
            g4_gguf_file *f = g4_gguf_open(path, err);
            CHECK(f != NULL, "%s: read back: %s", what, err);
            if (!f) continue;
            check_tensors_regenerate(f, &s, types[k].type, s.seed, what);
            check_manifest(f, manifest, fixture_name, types[k].type == G4_TYPE_F32, what);
            snprintf(fx_path, sizeof fx_path, "%s/models/%s.gguf", test_fixtures_dir(), fixture_name);
            g4_gguf_file *fx = g4_gguf_open(fx_path, err);
            CHECK(fx != NULL, "%s: fixture: %s", what, err);
            if (fx) check_against_fixture(f, fx, what);
            if (types[k].type == G4_TYPE_Q4_0) check_vocab(f, what);
            g4_gguf_close(fx);
            g4_gguf_close(f);
            unlink(path);
        }
    }
    g4_json_free(manifest);
}

/* Same arguments, same bytes; another seed, other weights. */
static void test_deterministic(void) {
    char err[G4_ERR_LEN];
    g4_shape s;
    g4_shape_preset("tiny-moe", &s, err);
    CHECK(!g4_shape_set(&s, "n_layer=2", err) && !g4_shape_finalize(&s, err), "%s", err);
    const char *a = tmp_path("det_a.gguf"), *b = tmp_path("det_b.gguf"), *c = tmp_path("det_c.gguf");
    CHECK(!g4_mkmodel_write(&s, G4_TYPE_Q4_K, 7, a, false, err) && !g4_mkmodel_write(&s, G4_TYPE_Q4_K, 7, b, false, err) &&
              !g4_mkmodel_write(&s, G4_TYPE_Q4_K, 8, c, false, err),
          "%s", err);
    size_t na = 0, nb = 0, nc = 0;
    char *x = read_file(a, &na), *y = read_file(b, &nb), *z = read_file(c, &nc);
    CHECK(x && y && na == nb && !memcmp(x, y, na), "two runs differ (%zu vs %zu bytes)", na, nb);
    CHECK(z && na == nc && memcmp(x, z, na), "seed 8 gives the same file as seed 7");
    free(x);
    free(y);
    free(z);
    /* fast weights (random blocks) are deterministic too */
    CHECK(!g4_shape_set(&s, "fast_weights=true", err), "%s", err);
    CHECK(!g4_mkmodel_write(&s, G4_TYPE_Q4_0, 7, a, false, err) && !g4_mkmodel_write(&s, G4_TYPE_Q4_0, 7, b, false, err),
          "%s", err);
    x = read_file(a, &na);
    y = read_file(b, &nb);
    CHECK(x && y && na == nb && !memcmp(x, y, na), "two fast runs differ");
    g4_gguf_file *f = g4_gguf_open(a, err);
    CHECK(f != NULL, "%s", err);
    if (f) check_tensors_regenerate(f, &s, G4_TYPE_Q4_0, 7, "fast tiny-moe q4_0");
    g4_gguf_close(f);
    free(x);
    free(y);
    unlink(a);
    unlink(b);
    unlink(c);
}

/* ---------------------------------------------------------------- shapes */

static void test_real_shapes(void) {
    char err[G4_ERR_LEN];
    /* docs/architecture.md §2.3: 31B GGUF 833 tensors, 26B-A4B 658; E2B 601 with the KV
     * tensors of the 20 shared layers, which current converters drop (3 each);
     * E4B: the same count as E2B's 601 (6 + 17 per layer) for 42 layers;
     * 12B: 3 global + 14 per sliding layer (40) + 13 per full one (8, no
     * attn_v), counted as the 31B's 833 = 3 + 50 * 14 + 10 * 13 */
    const struct {
        const char *name;
        int n_tensors;
        int64_t q_full, kv_swa; /* attn_q rows of a full layer, attn_k rows of layer 0 */
    } want[] = {{"e2b", 601 - 3 * 20, 4096, 256}, {"e4b", 720 - 3 * 18, 4096, 512},
                {"26b-a4b", 658, 8192, 2048}, {"moe-full", 658, 8192, 2048}, {"31b", 833, 16384, 4096},
                {"12b", 3 + 40 * 14 + 8 * 13, 16 * 512, 8 * 256}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        g4_shape s;
        CHECK(!g4_shape_preset(want[i].name, &s, err) && !g4_shape_finalize(&s, err), "%s: %s", want[i].name, err);
        int n = 0;
        g4_tensor_spec *ts = g4_shape_tensors(&s, &n);
        CHECK(n == want[i].n_tensors, "%s: %d tensors, expected %d", want[i].name, n, want[i].n_tensors);
        int full = (int)(strchr(s.layer_types, 'F') - s.layer_types);
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", full);
        for (int k = 0; k < n; k++) {
            if (!strcmp(ts[k].name, name)) CHECK(ts[k].ne[1] == want[i].q_full, "%s: %s rows %lld", want[i].name, name, (long long)ts[k].ne[1]);
            if (!strcmp(ts[k].name, "blk.0.attn_k.weight")) CHECK(ts[k].ne[1] == want[i].kv_swa, "%s: attn_k rows", want[i].name);
            if (!strcmp(ts[k].name, "rope_freqs.weight")) CHECK(ts[k].ne[0] == 256 && ts[k].arg == 64, "%s: rope_freqs", want[i].name);
        }
        free(ts);
        CHECK(s.vocab_size == 262144 && s.fast_weights, "%s: vocab %d", want[i].name, s.vocab_size);
    }
    g4_shape s;
    /* 12B "Unified" (docs/architecture.md §2 table): 48 blocks of 5 sliding +
     * 1 full, d 3840, 16 heads, KV heads 8 / 1, head dims 256 / 512, K = V on
     * full layers, window 1024, F 15360, no PLE, no MoE, and the
     * suppress_tokens key its converter writes */
    CHECK(!g4_shape_preset("12b", &s, err) && !g4_shape_finalize(&s, err), "12b: %s", err);
    CHECK(s.n_layer == 48 && s.n_embd == 3840 && s.n_head == 16 && s.n_head_kv_swa == 8 && s.n_head_kv_full == 1 &&
              s.head_dim_swa == 256 && s.head_dim_full == 512 && s.k_eq_v_full && s.n_swa == 1024 && s.n_ff == 15360 &&
              !s.double_wide_mlp && s.n_embd_per_layer == 0 && s.n_expert == 0 && s.n_kv_shared == 0 &&
              s.context_length == 262144 && s.final_logit_softcapping == 30.0f,
          "12b shape");
    CHECK(!strcmp(s.layer_types, "SSSSSFSSSSSFSSSSSFSSSSSFSSSSSFSSSSSFSSSSSFSSSSSF"), "12b layer types %s", s.layer_types);
    CHECK(s.n_suppress == 3 && s.suppress_tokens[0] == 0 && s.suppress_tokens[1] == 3 && s.suppress_tokens[2] == 4,
          "12b suppress_tokens: %d ids", s.n_suppress);
    CHECK(!g4_shape_set(&s, "suppress_tokens=7,9", err) && s.n_suppress == 2 && s.suppress_tokens[1] == 9, "%s", err);
    CHECK(!g4_shape_set(&s, "suppress_tokens=", err) && s.n_suppress == 0, "empty suppress_tokens: %s", err);
    CHECK(g4_shape_set(&s, "suppress_tokens=1,,2", err) == -1 && strstr(err, "token ids"), "1,,2: %s", err);
    CHECK(g4_shape_set(&s, "suppress_tokens=1,", err) == -1, "trailing comma accepted");
    CHECK(g4_shape_set(&s, "suppress_tokens=-1", err) == -1, "negative id accepted");
    CHECK(g4_shape_set(&s, "suppress_tokens=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", err) == -1, "17 ids accepted");
    CHECK(!g4_shape_set(&s, "suppress_tokens=262144", err) && g4_shape_finalize(&s, err) == -1 &&
              strstr(err, "suppress_tokens"), "id past the vocabulary: %s", err);
    g4_shape_preset("e2b", &s, err);
    CHECK(!strcmp(s.layer_types, "SSSSFSSSSFSSSSFSSSSFSSSSFSSSSFSSSSF"), "e2b layer types %s", s.layer_types);
    CHECK(!g4_shape_set(&s, "n_layer=3", err) && g4_shape_finalize(&s, err) == -1 && strstr(err, "n_kv_shared"),
          "e2b with 3 layers and 20 shared: %s", err);
    CHECK(!g4_shape_set(&s, "n_kv_shared=0", err) && !g4_shape_finalize(&s, err) && !strcmp(s.layer_types, "SSF"),
          "%s %s", err, s.layer_types);
    CHECK(g4_shape_set(&s, "n_layer=x", err) == -1 && strstr(err, "n_layer"), "%s", err);
    CHECK(g4_shape_set(&s, "bogus=1", err) == -1 && strstr(err, "KEY one of"), "%s", err);
    CHECK(g4_shape_set(&s, "layer_types=SSXF", err) == -1, "layer_types with X accepted");
    CHECK(!g4_shape_set(&s, "layer_types=FFFF", err) && s.n_layer == 4 && g4_shape_finalize(&s, err) == -1,
          "no sliding layer accepted");
    CHECK(g4_shape_preset("70b", &s, err) == -1 && strstr(err, "tiny-moe"), "%s", err);

    /* type rule */
    g4_shape_preset("26b-a4b", &s, err);
    g4_shape_finalize(&s, err);
    int n = 0;
    g4_tensor_spec *ts = g4_shape_tensors(&s, &n);
    for (int k = 0; k < n; k++) {
        enum g4_type t = g4_shape_tensor_type(&ts[k], G4_TYPE_Q4_K);
        if (!strcmp(ts[k].name, "blk.0.ffn_down_exps.weight")) CHECK(t == G4_TYPE_Q4_0, "704-wide down: %s", g4_type_name(t));
        if (!strcmp(ts[k].name, "blk.0.ffn_down.weight")) CHECK(t == G4_TYPE_Q4_0, "2112-wide down: %s", g4_type_name(t));
        if (!strcmp(ts[k].name, "blk.0.ffn_gate_inp.weight")) CHECK(t == G4_TYPE_F16, "router: %s", g4_type_name(t));
        if (!strcmp(ts[k].name, "blk.0.attn_q.weight")) CHECK(t == G4_TYPE_Q4_K, "attn_q: %s", g4_type_name(t));
        if (ts[k].n_dims == 1) CHECK(t == G4_TYPE_F32, "%s: %s", ts[k].name, g4_type_name(t));
    }
    free(ts);
    g4_tensor_spec odd = {.name = "x.weight", .n_dims = 2, .ne = {48, 4, 1, 1}};
    CHECK(g4_shape_tensor_type(&odd, G4_TYPE_Q4_K) == G4_TYPE_F16 && g4_shape_tensor_type(&odd, G4_TYPE_Q8_0) == G4_TYPE_F16 &&
              g4_shape_tensor_type(&odd, G4_TYPE_F32) == G4_TYPE_F32,
          "row of 48");
}

/* Fast weights: each type's random blocks dequantize to zero-mean values
 * with the variance of the exact init (1/fan_in). */
static void test_fast_weight_statistics(void) {
    const enum g4_type fast_types[] = {G4_TYPE_Q4_0, G4_TYPE_Q8_0, G4_TYPE_Q4_K, G4_TYPE_F16, G4_TYPE_F32};
    g4_tensor_spec t = {.name = "blk.0.ffn_gate.weight", .n_dims = 2, .ne = {1536, 64, 1, 1}, .init = G4_INIT_LINEAR,
                        .arg = 1536};
    const int64_t n = t.ne[0] * t.ne[1];
    float *x = malloc((size_t)n * sizeof *x);
    uint8_t *q = malloc((size_t)n * sizeof(float));
    for (size_t k = 0; k < sizeof fast_types / sizeof fast_types[0]; k++) {
        g4_synth_rows(&t, fast_types[k], 1, true, 0, t.ne[1], q, NULL);
        g4_dequantize_row(fast_types[k], q, x, n);
        double sum = 0, sum2 = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += x[i];
            sum2 += (double)x[i] * x[i];
        }
        double mean = sum / (double)n, sd = sqrt(sum2 / (double)n - mean * mean), want = sqrt(1.0 / 1536);
        CHECK(fabs(mean) < 0.03 * want && fabs(sd / want - 1) < 0.05, "%s: mean %g sd %g, want 0 and %g",
              g4_type_name(fast_types[k]), mean, sd, want);
    }
    free(x);
    free(q);
}

/* The real-size layout: special tokens at their real ids, all distinct, and
 * the real tokenizer loads it. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void test_real_vocab(void) {
    char err[G4_ERR_LEN];
    g4_synth_vocab v;
    CHECK(g4_synth_vocab_build(&v, 100, err) == -1 && strstr(err, "288"), "tiny vocab: %s", err);
    if (g4_synth_vocab_build(&v, G4_SYNTH_VOCAB_REAL, err)) {
        CHECK(0, "%s", err);
        return;
    }
    const struct {
        int32_t id;
        const char *text;
        int type;
    } fixed[] = {{0, "<pad>", 3}, {1, "<eos>", 3}, {2, "<bos>", 3}, {3, "<unk>", 3}, {4, "<mask>", 3},
                 {6, "<unused0>", 1}, {46, "<|tool>", 3}, {48, "<|tool_call>", 4}, {52, "<|\"|>", 4},
                 {53, "<unused40>", 1}, {98, "<|think|>", 3}, {100, "<|channel>", 4}, {101, "<channel|>", 4},
                 {105, "<|turn>", 3}, {106, "<turn|>", 3}, {107, "\n", 1}, {108, "\n\n", 1},
                 {138, "\xE2\x96\x81\xE2\x96\x81", 1}, {238, "<0x00>", 6}, {493, "<0xFF>", 6},
                 {236743, "\xE2\x96\x81", 1}, {255968, "\t", 1}, {255999, "<|image>", 3}, {256000, "<|audio>", 3},
                 {256001, "<unused89>", 1}, {258880, "<|image|>", 3}, {258884, "<|video|>", 3},
                 {262143, "<unused6226>", 1}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        CHECK(!strcmp(v.tokens[fixed[i].id], fixed[i].text) && v.types[fixed[i].id] == fixed[i].type,
              "id %d is '%s' type %d", fixed[i].id, v.tokens[fixed[i].id], v.types[fixed[i].id]);
    CHECK(v.bos == 2 && v.eos == 1 && v.unk == 3 && v.pad == 0 && v.mask == 4, "special ids");
    const char **sorted = malloc((size_t)v.n_tokens * sizeof *sorted);
    memcpy(sorted, v.tokens, (size_t)v.n_tokens * sizeof *sorted);
    qsort(sorted, (size_t)v.n_tokens, sizeof *sorted, cmp_str);
    int dups = 0;
    for (int32_t i = 1; i < v.n_tokens; i++) dups += !strcmp(sorted[i - 1], sorted[i]);
    CHECK(dups == 0, "%d duplicate tokens", dups);
    int bad_merges = 0;
    for (int32_t i = 0; i < v.n_merges; i++) {
        char joined[128];
        const char *sp = strchr(v.merges[i] + 1, ' ');
        size_t l = sp ? (size_t)(sp - v.merges[i]) : 0;
        snprintf(joined, sizeof joined, "%.*s%s", (int)l, v.merges[i], sp ? sp + 1 : "");
        const char *key = joined;
        bad_merges += !sp || !bsearch(&key, sorted, (size_t)v.n_tokens, sizeof *sorted, cmp_str);
    }
    CHECK(v.n_merges > 300 && bad_merges == 0, "%d merges, %d produce no token", v.n_merges, bad_merges);
    free(sorted);

    const char *path = tmp_path("vocab.gguf");
    g4_gguf_writer *w = g4_gguf_writer_new(path, 0, err);
    CHECK(w && !g4_gguf_writer_set_str(w, "general.architecture", "gemma4", err) && !g4_synth_vocab_write(&v, w, err) &&
              !g4_gguf_writer_begin(w, err) && !g4_gguf_writer_finish(w, err),
          "%s", err);
    g4_gguf_writer_free(w);
    g4_synth_vocab_free(&v);
    g4_gguf_file *f = g4_gguf_open(path, err);
    CHECK(f != NULL, "%s", err);
    if (f) check_vocab(f, "real-size vocab");
    g4_gguf_close(f);
    unlink(path);
}

/* The command line: errors are one line and a non-zero status. */
static void test_cli(void) {
    const char *path = tmp_path("cli.gguf");
    char *bad_preset[] = {"mkmodel", "--preset", "nope", "-o", (char *)path, NULL};
    char *bad_type[] = {"mkmodel", "--type", "q5_1", "-o", (char *)path, NULL};
    char *no_out[] = {"mkmodel", NULL};
    char *ok[] = {"mkmodel", "--preset", "tiny-dense", "--set", "n_layer=2", "--type", "q8_0", "--seed", "5", "-o", (char *)path, NULL};
    CHECK(cmd_mkmodel(5, bad_preset) != 0 && access(path, F_OK) != 0, "bad preset");
    CHECK(cmd_mkmodel(5, bad_type) != 0, "bad type");
    CHECK(cmd_mkmodel(1, no_out) != 0, "no -o");
    CHECK(cmd_mkmodel(11, ok) == 0, "tiny-dense q8_0");
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open(path, err);
    uint32_t n_layer = 0, ftype = 0;
    CHECK(f && !g4_gguf_get_u32(f, "gemma4.block_count", &n_layer, err) && n_layer == 2 &&
              !g4_gguf_get_u32(f, "general.file_type", &ftype, err) && ftype == 7,
          "cli file: layers %u, file_type %u", n_layer, ftype);
    const g4_gguf_tensor *t = f ? g4_gguf_find_tensor(f, "blk.1.attn_q.weight") : NULL;
    CHECK(t && t->type == G4_TYPE_Q8_0, "attn_q type");
    const void *ids = NULL;
    uint64_t n_ids = 0;
    CHECK(f && g4_gguf_get_arr(f, "tokenizer.ggml.suppress_tokens", GGUF_TYPE_INT32, &ids, &n_ids, err) == GGUF_ENOKEY,
          "a shape without suppress_tokens writes no such key");
    g4_gguf_close(f);
    unlink(path);

    /* the 12B's key, written as an i32 array, at a width the test can afford */
    char *small_12b[] = {"mkmodel", "--preset", "12b", "--type", "f32", "--set", "n_layer=6", "--set", "n_embd=64",
                         "--set", "n_ff=64", "--set", "n_head=2", "--set", "n_head_kv_swa=2", "--set", "head_dim_swa=32",
                         "--set", "head_dim_full=64", "--set", "vocab_size=512", "--set", "fast_weights=false",
                         "-o", (char *)path, NULL};
    CHECK(cmd_mkmodel((int)(sizeof small_12b / sizeof small_12b[0]) - 1, small_12b) == 0, "small 12b");
    f = g4_gguf_open(path, err);
    CHECK(f && g4_gguf_get_arr(f, "tokenizer.ggml.suppress_tokens", GGUF_TYPE_INT32, &ids, &n_ids, err) == GGUF_OK &&
              n_ids == 3 && ((const int32_t *)ids)[0] == 0 && ((const int32_t *)ids)[1] == 3 && ((const int32_t *)ids)[2] == 4,
          "12b suppress_tokens: %llu ids", (unsigned long long)n_ids);
    CHECK(f && g4_gguf_find_tensor(f, "blk.0.attn_v.weight") && !g4_gguf_find_tensor(f, "blk.5.attn_v.weight") &&
              !g4_gguf_find_tensor(f, "per_layer_token_embd.weight"),
          "12b: V on sliding layers only, no per-layer embeddings");
    g4_gguf_close(f);
    unlink(path);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", t && *t ? t : "/tmp");
    test_writer();
    test_real_shapes();
    test_fast_weight_statistics();
    test_real_vocab();
    test_tiny_models();
    test_deterministic();
    test_cli();
    return test_summary("test_mkmodel");
}
