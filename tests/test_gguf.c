/* GGUF reader: a handcrafted valid file read back field by field, one
 * handcrafted file per kind of damage (each must give its exact one-line
 * error), truncation at every header offset, and the shared fixtures checked
 * against manifest.json and the tokenizer fixture. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/json.h"
#include "kernels/formats.h"
#include "tests/harness.h"
#include "tools/commands.h"

/* ---- a tiny byte builder ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void put_key(bytes *b, const char *key, enum g4_gguf_value_type t) {
    put_str(b, key);
    put_u32(b, t);
}
static void put_array(bytes *b, const char *key, enum g4_gguf_value_type elem, uint64_t n) {
    put_key(b, key, GGUF_TYPE_ARRAY);
    put_u32(b, elem);
    put_u64(b, n);
}
static void put_tensor(bytes *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t j = 0; j < n_dims; j++) put_u64(b, (uint64_t)ne[j]);
    put_u32(b, type);
    put_u64(b, off);
}
static void put_zeros(bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) put_u8(b, 0);
}
static void put_pad(bytes *b, size_t align) { put_zeros(b, (align - b->n % align) % align); }

/* ---- opening helpers ---- */

/* Parses an exact-size heap copy, so ASan sees any read past the end. The
 * copy must outlive the result: free *keep after g4_gguf_close. */
static g4_gguf_file *open_copy(const void *p, size_t n, const char *name, char *err, void **keep) {
    *keep = malloc(n ? n : 1);
    memcpy(*keep, p, n);
    return g4_gguf_open_memory(n ? *keep : NULL, n, name, err);
}

static void close_copy(g4_gguf_file *f, void *keep) {
    g4_gguf_close(f);
    free(keep);
}

static bool one_line(const char *s) { return !strchr(s, '\n') && s[0]; }

/* The file must be refused with exactly "NAME: want". */
static void expect_bad(const bytes *b, const char *name, const char *want) {
    char err[G4_ERR_LEN] = "", full[G4_ERR_LEN];
    void *keep;
    g4_gguf_file *f = open_copy(b->p, b->n, name, err, &keep);
    CHECK(!f, "%s: accepted a bad file", name);
    close_copy(f, keep);
    snprintf(full, sizeof full, "%s: %s", name, want);
    CHECK(!strcmp(err, full) && one_line(err), "%s: got '%s', want '%s'", name, err, full);
}

static const char *tmp_path(const char *tag) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/gguf-test-%d-%s.gguf", (int)getpid(), tag);
    return path;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n) abort();
    fclose(fp);
}

/* Exit status of `gemma4 dump PATH`, its output discarded. */
static int dump_quietly(const char *path) {
    fflush(stdout);
    fflush(stderr);
    int out = dup(1), err = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    char *argv[] = {"dump", (char *)path, NULL};
    int rc = cmd_dump(2, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(out, 1);
    dup2(err, 2);
    close(out);
    close(err);
    close(null);
    return rc;
}

/* Same file through g4_gguf_open (the mmap path), and `gemma4 dump` exits 1. */
static void expect_bad_file(const bytes *b, const char *tag, const char *want) {
    const char *path = tmp_path(tag);
    write_file(path, b->p, b->n);
    char err[G4_ERR_LEN] = "", full[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open(path, err);
    CHECK(!f, "%s: accepted a bad file", path);
    g4_gguf_close(f);
    snprintf(full, sizeof full, "%s: %s", path, want);
    CHECK(!strcmp(err, full) && one_line(err), "got '%s', want '%s'", err, full);
    CHECK(dump_quietly(path) == 1, "dump of bad %s should exit 1", path);
    unlink(path);
}

/* ---- a valid file with every value type ---- */

typedef struct {
    bytes b;
    size_t data_offset; /* where the builder put the data section */
} built;

/* 64 characters: one too many for a tensor name; long_name + 1 is the longest allowed */
static const char long_name[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static built build_valid(uint32_t version) {
    built v = {0};
    bytes *b = &v.b;
    put_header(b, version, 4, 18);
    put_key(b, "general.architecture", GGUF_TYPE_STRING); put_str(b, "test");
    put_key(b, "general.alignment", GGUF_TYPE_UINT32); put_u32(b, 32);
    put_key(b, "t.u8", GGUF_TYPE_UINT8); put_u8(b, 200);
    put_key(b, "t.i8", GGUF_TYPE_INT8); put_u8(b, (uint8_t)-5);
    put_key(b, "t.u16", GGUF_TYPE_UINT16); put(b, &(uint16_t){60000}, 2);
    put_key(b, "t.i16", GGUF_TYPE_INT16); put(b, &(int16_t){-30000}, 2);
    put_key(b, "t.u32", GGUF_TYPE_UINT32); put_u32(b, 4000000000u);
    put_key(b, "t.i32", GGUF_TYPE_INT32); put(b, &(int32_t){-2000000000}, 4);
    put_key(b, "t.f32", GGUF_TYPE_FLOAT32); put(b, &(float){1.5f}, 4);
    put_key(b, "t.bool", GGUF_TYPE_BOOL); put_u8(b, 1);
    put_key(b, "t.u64", GGUF_TYPE_UINT64); put_u64(b, ((uint64_t)1 << 40) + 3);
    put_key(b, "t.i64", GGUF_TYPE_INT64); put(b, &(int64_t){-((int64_t)1 << 40)}, 8);
    put_key(b, "t.f64", GGUF_TYPE_FLOAT64); put(b, &(double){-2.25}, 8);
    put_array(b, "t.strs", GGUF_TYPE_STRING, 3); put_str(b, "a"); put_str(b, ""); put_str(b, "h\xc3\xa9llo");
    put_array(b, "t.i32s", GGUF_TYPE_INT32, 3);
    put(b, (int32_t[]){1, -2, 3}, 12);
    put_array(b, "t.f64s", GGUF_TYPE_FLOAT64, 2); put(b, (double[]){0.5, -1e300}, 16);
    put_array(b, "t.bools", GGUF_TYPE_BOOL, 3); put(b, (uint8_t[]){1, 0, 1}, 3);
    put_array(b, "t.empty", GGUF_TYPE_UINT8, 0);
    put_tensor(b, "a", 2, (int64_t[]){4, 2}, G4_TYPE_F32, 0);            /* 32 bytes */
    put_tensor(b, "b", 1, (int64_t[]){64}, G4_TYPE_Q4_0, 32);            /* 36 bytes, padded 64 */
    put_tensor(b, "c", 4, (int64_t[]){3, 1, 1, 2}, G4_TYPE_F16, 96);     /* 12 bytes, padded 32 */
    put_tensor(b, long_name + 1, 1, (int64_t[]){256}, G4_TYPE_Q4_K, 128); /* 144 bytes, padded 160 */
    put_pad(b, 32);
    v.data_offset = b->n;
    for (int i = 0; i < 288; i++) put_u8(b, (uint8_t)(i * 7));
    return v;
}

static void test_valid_file(uint32_t version) {
    built v = build_valid(version);
    char err[G4_ERR_LEN] = "";
    void *keep;
    g4_gguf_file *f = open_copy(v.b.p, v.b.n, "valid", err, &keep);
    CHECK(f, "valid v%u file refused: %s", version, err);
    if (!f) { free(keep); free(v.b.p); return; }
    CHECK(g4_gguf_version(f) == version, "version %u", g4_gguf_version(f));
    CHECK(g4_gguf_alignment(f) == 32, "alignment %" PRIu64, g4_gguf_alignment(f));
    CHECK(g4_gguf_data_offset(f) == v.data_offset, "data offset %" PRIu64 " want %zu", g4_gguf_data_offset(f), v.data_offset);
    CHECK(g4_gguf_file_size(f) == v.b.n, "size %" PRIu64, g4_gguf_file_size(f));
    CHECK(g4_gguf_n_kv(f) == 18 && g4_gguf_n_tensors(f) == 4, "counts %" PRId64 " %" PRId64, g4_gguf_n_kv(f), g4_gguf_n_tensors(f));
    CHECK(!strcmp(g4_gguf_path(f), "valid"), "path %s", g4_gguf_path(f));

    uint32_t u32 = 0; int32_t i32 = 0; float f32 = 0; bool bo = false; g4_gguf_str s = {0};
    CHECK(g4_gguf_get_u32(f, "t.u32", &u32, err) == GGUF_OK && u32 == 4000000000u, "u32 %u", u32);
    CHECK(g4_gguf_get_i32(f, "t.i32", &i32, err) == GGUF_OK && i32 == -2000000000, "i32 %d", i32);
    CHECK(g4_gguf_get_f32(f, "t.f32", &f32, err) == GGUF_OK && f32 == 1.5f, "f32 %g", f32);
    CHECK(g4_gguf_get_bool(f, "t.bool", &bo, err) == GGUF_OK && bo, "bool");
    CHECK(g4_gguf_get_str(f, "general.architecture", &s, err) == GGUF_OK && s.len == 4 && !memcmp(s.ptr, "test", 4),
          "string");
    const g4_gguf_kv *kv;
    kv = g4_gguf_find_kv(f, "t.u8"); CHECK(kv && kv->type == GGUF_TYPE_UINT8 && kv->val.u64 == 200, "u8");
    kv = g4_gguf_find_kv(f, "t.i8"); CHECK(kv && kv->type == GGUF_TYPE_INT8 && kv->val.i64 == -5, "i8");
    kv = g4_gguf_find_kv(f, "t.u16"); CHECK(kv && kv->val.u64 == 60000, "u16");
    kv = g4_gguf_find_kv(f, "t.i16"); CHECK(kv && kv->val.i64 == -30000, "i16");
    kv = g4_gguf_find_kv(f, "t.u64"); CHECK(kv && kv->val.u64 == ((uint64_t)1 << 40) + 3, "u64");
    kv = g4_gguf_find_kv(f, "t.i64"); CHECK(kv && kv->val.i64 == -((int64_t)1 << 40), "i64");
    kv = g4_gguf_find_kv(f, "t.f64"); CHECK(kv && kv->type == GGUF_TYPE_FLOAT64 && kv->val.f64 == -2.25, "f64");
    CHECK(g4_gguf_kv_at(f, 17) && !strcmp(g4_gguf_kv_at(f, 17)->key, "t.empty") && g4_gguf_kv_at(f, 17)->arr_n == 0, "kv 17");
    CHECK(!g4_gguf_kv_at(f, 18) && !g4_gguf_kv_at(f, -1) && !g4_gguf_find_kv(f, "t.nope"), "out of range lookups");

    /* wrong types are errors naming both types; absent keys leave err alone */
    CHECK(g4_gguf_get_u32(f, "t.i32", &u32, err) == GGUF_ETYPE && !strcmp(err, "valid: key 't.i32' is i32, expected u32"),
          "%s", err);
    CHECK(g4_gguf_get_f32(f, "t.f64", &f32, err) == GGUF_ETYPE && !strcmp(err, "valid: key 't.f64' is f64, expected f32"),
          "%s", err);
    CHECK(g4_gguf_get_str(f, "t.strs", &s, err) == GGUF_ETYPE && !strcmp(err, "valid: key 't.strs' is array, expected string"),
          "%s", err);
    strcpy(err, "untouched");
    CHECK(g4_gguf_get_bool(f, "t.missing", &bo, err) == GGUF_ENOKEY && !strcmp(err, "untouched"), "%s", err);

    const void *data; uint64_t n;
    CHECK(g4_gguf_get_arr(f, "t.strs", GGUF_TYPE_STRING, &data, &n, err) == GGUF_OK && n == 3, "string array");
    const g4_gguf_str *strs = data;
    CHECK(strs[0].len == 1 && strs[0].ptr[0] == 'a' && strs[1].len == 0 && strs[2].len == 6 &&
          !memcmp(strs[2].ptr, "h\xc3\xa9llo", 6), "string elements");
    CHECK(g4_gguf_get_arr(f, "t.i32s", GGUF_TYPE_INT32, &data, &n, err) == GGUF_OK && n == 3, "i32 array");
    CHECK((uintptr_t)data % _Alignof(int32_t) == 0, "i32 array is aligned");
    const int32_t *ints = data;
    CHECK(ints[0] == 1 && ints[1] == -2 && ints[2] == 3, "i32 elements %d %d %d", ints[0], ints[1], ints[2]);
    CHECK(g4_gguf_get_arr(f, "t.f64s", GGUF_TYPE_FLOAT64, &data, &n, err) == GGUF_OK && n == 2 &&
          (uintptr_t)data % _Alignof(double) == 0 && ((const double *)data)[1] == -1e300, "f64 array");
    CHECK(g4_gguf_get_arr(f, "t.bools", GGUF_TYPE_BOOL, &data, &n, err) == GGUF_OK && n == 3 &&
          ((const bool *)data)[0] && !((const bool *)data)[1] && ((const bool *)data)[2], "bool array");
    CHECK(g4_gguf_get_arr(f, "t.i32s", GGUF_TYPE_UINT32, &data, &n, err) == GGUF_ETYPE &&
          !strcmp(err, "valid: key 't.i32s' is an array of i32, expected an array of u32"), "%s", err);
    CHECK(g4_gguf_get_arr(f, "t.u32", GGUF_TYPE_UINT32, &data, &n, err) == GGUF_ETYPE &&
          !strcmp(err, "valid: key 't.u32' is u32, expected array"), "%s", err);

    static const struct { const char *name; uint32_t n_dims; int64_t ne[4]; uint32_t type; uint64_t off, nbytes; } want[] = {
        {"a", 2, {4, 2, 1, 1}, G4_TYPE_F32, 0, 32},
        {"b", 1, {64, 1, 1, 1}, G4_TYPE_Q4_0, 32, 36},
        {"c", 4, {3, 1, 1, 2}, G4_TYPE_F16, 96, 12},
        {long_name + 1, 1, {256, 1, 1, 1}, G4_TYPE_Q4_K, 128, 144},
    };
    /* byte i of the data section is i * 7: the first and last byte of each
     * tensor show where its view points */
    for (int i = 0; i < 4; i++) {
        const g4_gguf_tensor *t = g4_gguf_find_tensor(f, want[i].name);
        CHECK(t && t == g4_gguf_tensor_at(f, i) && t->n_dims == want[i].n_dims && !memcmp(t->ne, want[i].ne, sizeof t->ne) &&
                  t->type == want[i].type && t->offset == want[i].off && t->nbytes == want[i].nbytes,
              "tensor %s", want[i].name);
        const uint8_t *d = t ? t->data : NULL;
        CHECK(d && d[0] == (uint8_t)(want[i].off * 7) && d[want[i].nbytes - 1] == (uint8_t)((want[i].off + want[i].nbytes - 1) * 7),
              "tensor %s data", want[i].name);
    }
    CHECK(!g4_gguf_find_tensor(f, "d") && !g4_gguf_tensor_at(f, 4), "missing tensor");
    close_copy(f, keep);

    /* the same bytes through the mmap path and the dump command */
    const char *path = tmp_path("valid");
    write_file(path, v.b.p, v.b.n);
    f = g4_gguf_open(path, err);
    CHECK(f && g4_gguf_n_tensors(f) == 4 && g4_gguf_find_kv(f, "t.bools"), "mmap open: %s", f ? "" : err);
    g4_gguf_close(f);
    CHECK(dump_quietly(path) == 0, "dump of a valid file");
    unlink(path);
    free(v.b.p);
}

/* A header with no keys and one tensor, then its data. */
static bytes one_tensor(const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off,
                        size_t data_bytes) {
    bytes b = {0};
    put_header(&b, 3, 1, 0);
    put_tensor(&b, name, n_dims, ne, type, off);
    put_pad(&b, 32);
    put_zeros(&b, data_bytes);
    return b;
}

/* A header with one key of the given type, whose value the caller appends. */
static bytes one_key(const char *key, enum g4_gguf_value_type t) {
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    put_key(&b, key, t);
    return b;
}

static void test_header_damage(void) {
    bytes b = {0};
    put(&b, "GGUX", 4); put_u32(&b, 3); put_u64(&b, 0); put_u64(&b, 0);
    expect_bad(&b, "magic", "not a GGUF file (magic 47 47 55 58)");
    expect_bad_file(&b, "magic", "not a GGUF file (magic 47 47 55 58)");
    free(b.p); b = (bytes){0};

    put_header(&b, 1, 0, 0);
    expect_bad(&b, "v1", "GGUF version 1 is not supported (only 2 and 3)");
    free(b.p); b = (bytes){0};
    put_header(&b, 4, 0, 0);
    expect_bad(&b, "v4", "GGUF version 4 is not supported (only 2 and 3)");
    free(b.p); b = (bytes){0};

    /* a big-endian file: version 3 stored most significant byte first */
    put(&b, "GGUF", 4); put(&b, "\0\0\0\3", 4); put_u64(&b, 0); put_u64(&b, 0);
    expect_bad(&b, "swapped", "byte-swapped (big-endian) file, only little-endian GGUF is supported");
    free(b.p); b = (bytes){0};

    put_header(&b, 3, 0, ((uint64_t)1 << 20) + 1);
    expect_bad(&b, "nkv", "key count 1048577 is over the cap 1048576");
    free(b.p); b = (bytes){0};
    put_header(&b, 3, UINT64_MAX, 0);
    expect_bad(&b, "ntensors", "tensor count 18446744073709551615 is over the cap 1048576");
    free(b.p); b = (bytes){0};
    /* under the caps but far more than the file could hold: refused before allocating */
    put_header(&b, 3, 1000, 1000);
    put_zeros(&b, 100);
    expect_bad(&b, "counts", "file truncated: 1000 keys and 1000 tensors cannot fit in the 100 bytes left");
    free(b.p);
}

static void test_kv_damage(void) {
    bytes b = {0};
    /* key string longer than the cap, and longer than the bytes left */
    put_header(&b, 3, 0, 1); put_u64(&b, (uint64_t)1 << 40); put_zeros(&b, 16);
    expect_bad(&b, "keycap", "key 0: string length 1099511627776 is over the cap 1073741824");
    free(b.p); b = (bytes){0};
    put_header(&b, 3, 0, 1); put_u64(&b, 100); put_zeros(&b, 20);
    expect_bad(&b, "keylen", "key 0: string of 100 bytes at offset 32 runs past the end of the file (20 bytes left)");
    free(b.p); b = (bytes){0};

    b = one_key("", GGUF_TYPE_UINT8); put_u8(&b, 0); put_zeros(&b, 8); /* past the minimum-size precheck */
    expect_bad(&b, "emptykey", "key 0 is empty");
    free(b.p); b = (bytes){0};
    put_header(&b, 3, 0, 1); put_u64(&b, 3); put(&b, "a\0b", 3); put_u32(&b, GGUF_TYPE_UINT8); put_u8(&b, 0);
    expect_bad(&b, "nulkey", "key 0 contains a NUL byte");
    free(b.p); b = (bytes){0};

    put_header(&b, 3, 0, 2);
    put_key(&b, "x.b", GGUF_TYPE_UINT8); put_u8(&b, 1);
    put_key(&b, "x.b", GGUF_TYPE_UINT32); put_u32(&b, 1);
    expect_bad(&b, "dupkey", "duplicate key 'x.b'");
    free(b.p);

    b = one_key("x.t", (enum g4_gguf_value_type)13); put_u32(&b, 0);
    expect_bad(&b, "vtype", "key 'x.t': unknown value type 13");
    free(b.p);
    /* a newline in a name from the file must not break the one-line message */
    b = one_key("x\ny", (enum g4_gguf_value_type)13); put_u32(&b, 0);
    expect_bad(&b, "ctrlkey", "key 'x?y': unknown value type 13");
    free(b.p);
    b = one_key("x.b", GGUF_TYPE_BOOL); put_u8(&b, 2);
    expect_bad(&b, "bool", "key 'x.b': bool value 2 is not 0 or 1");
    free(b.p);
    b = one_key("x.s", GGUF_TYPE_STRING); put_u64(&b, 9); put(&b, "12345678", 8);
    expect_bad(&b, "strval", "key 'x.s': string of 9 bytes at offset 47 runs past the end of the file (8 bytes left)");
    free(b.p);
    b = one_key("x.u", GGUF_TYPE_UINT64); put_u32(&b, 7);
    expect_bad(&b, "scalar", "file truncated: key 'x.u' needs 8 bytes at offset 39, only 4 left");
    free(b.p);

    /* arrays */
    b = one_key("x.a", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_ARRAY); put_u64(&b, 1); put_u32(&b, GGUF_TYPE_UINT8); put_u64(&b, 0);
    expect_bad(&b, "nested", "key 'x.a': nested arrays are not supported");
    free(b.p);
    b = one_key("x.a", GGUF_TYPE_ARRAY); put_u32(&b, 99); put_u64(&b, 0);
    expect_bad(&b, "elemtype", "key 'x.a': unknown array element type 99");
    free(b.p);
    /* (2^61 + 1) * 8 wraps to 8: exactly the bytes present */
    b = one_key("x.a", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_UINT64); put_u64(&b, ((uint64_t)1 << 61) + 1); put_u64(&b, 5);
    expect_bad(&b, "arrwrap", "key 'x.a': array of 2305843009213693953 u64 needs more than the 8 bytes left in the file");
    free(b.p);
    b = one_key("x.a", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_INT32); put_u64(&b, 3); put_u32(&b, 1); put_u32(&b, 2);
    expect_bad(&b, "arrlen", "key 'x.a': array of 3 i32 needs more than the 8 bytes left in the file");
    free(b.p);
    b = one_key("x.a", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 3); put_str(&b, "ab"); put_str(&b, "c");
    expect_bad(&b, "strarr", "key 'x.a': array of 3 string needs more than the 19 bytes left in the file");
    free(b.p);
    b = one_key("x.a", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 2); put_str(&b, "ab"); put_u64(&b, 50); put_zeros(&b, 10);
    expect_bad(&b, "strelem", "key 'x.a': string of 50 bytes at offset 69 runs past the end of the file (10 bytes left)");
    expect_bad_file(&b, "strelem", "key 'x.a': string of 50 bytes at offset 69 runs past the end of the file (10 bytes left)");
    free(b.p);
    b = one_key("x.a", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_BOOL); put_u64(&b, 2); put_u8(&b, 1); put_u8(&b, 7);
    expect_bad(&b, "boolarr", "key 'x.a': bool value 7 is not 0 or 1");
    free(b.p);

    /* general.alignment */
    b = one_key("general.alignment", GGUF_TYPE_INT32); put_u32(&b, 32);
    expect_bad(&b, "aligntype", "key 'general.alignment' is i32, expected u32");
    free(b.p);
    static const struct { uint32_t a; const char *msg; } aligns[] = {
        {0, "general.alignment 0 is not a power of two"},
        {48, "general.alignment 48 is not a power of two"},
        {(uint32_t)1 << 31, "general.alignment 2147483648 is over the cap 1048576"},
    };
    for (int i = 0; i < 3; i++) {
        b = one_key("general.alignment", GGUF_TYPE_UINT32); put_u32(&b, aligns[i].a);
        expect_bad(&b, "align", aligns[i].msg);
        free(b.p);
    }
}

static void test_tensor_damage(void) {
    bytes b;
    char msg[G4_ERR_LEN];
    b = one_tensor(long_name, 1, (int64_t[]){32}, G4_TYPE_F32, 0, 128);
    expect_bad(&b, "longname", "tensor 0: name of 64 bytes is longer than 63");
    free(b.p);

    b = (bytes){0};
    put_header(&b, 3, 2, 0);
    put_tensor(&b, "w", 1, (int64_t[]){8}, G4_TYPE_F32, 0);
    put_tensor(&b, "w", 1, (int64_t[]){8}, G4_TYPE_F32, 32);
    put_pad(&b, 32); put_zeros(&b, 64);
    expect_bad(&b, "dupname", "duplicate tensor 'w'");
    free(b.p);

    b = one_tensor("w", 0, NULL, G4_TYPE_F32, 0, 32);
    expect_bad(&b, "ndims0", "tensor 'w': n_dims 0 is outside 1..4");
    free(b.p);
    b = one_tensor("w", 5, (int64_t[]){1, 1, 1, 1, 1}, G4_TYPE_F32, 0, 32);
    expect_bad(&b, "ndims5", "tensor 'w': n_dims 5 is outside 1..4");
    free(b.p);
    b = one_tensor("w", 2, (int64_t[]){8, 0}, G4_TYPE_F32, 0, 32);
    expect_bad(&b, "dim0", "tensor 'w': dimension 1 is 0, must be positive");
    free(b.p);
    b = one_tensor("w", 1, (int64_t[]){-32}, G4_TYPE_F32, 0, 32);
    expect_bad(&b, "dimneg", "tensor 'w': dimension 0 is -32, must be positive");
    free(b.p);
    b = one_tensor("w", 3, (int64_t[]){(int64_t)1 << 32, (int64_t)1 << 30, 2}, G4_TYPE_F32, 0, 32);
    expect_bad(&b, "nelover", "tensor 'w': element count overflows 64 bits");
    free(b.p);
    /* 2^62 f32 elements fit in int64 but not their 2^64 bytes */
    b = one_tensor("w", 1, (int64_t[]){(int64_t)1 << 62}, G4_TYPE_F32, 0, 32);
    expect_bad(&b, "bytesover", "tensor 'w': byte size overflows 64 bits");
    free(b.p);
    /* (2^63 - 1) f16 elements are 2^64 - 2 bytes: padding to 32 wraps */
    b = one_tensor("w", 1, (int64_t[]){INT64_MAX}, G4_TYPE_F16, 0, 32);
    expect_bad(&b, "padwrap", "tensor 'w': padded size of 18446744073709551614 bytes overflows 64 bits");
    free(b.p);
    /* row size divide-first: 2^56 q4_k values are 2^48 blocks of 144 bytes,
     * while 2^56 * 144 would wrap */
    b = one_tensor("w", 1, (int64_t[]){(int64_t)1 << 56}, G4_TYPE_Q4_K, 0, 32);
    expect_bad(&b, "rowsize", "tensor 'w': 40532396646334464 bytes (40532396646334464 padded) at offset 0 run past the end of the data section (32 bytes)");
    free(b.p);

    b = one_tensor("blk.0.w", 1, (int64_t[]){32}, 99, 0, 32);
    expect_bad(&b, "type99", "tensor 'blk.0.w': unknown type id 99");
    free(b.p);
    b = one_tensor("blk.0.w", 1, (int64_t[]){32}, 4, 0, 32); /* a retired id */
    expect_bad(&b, "type4", "tensor 'blk.0.w': unknown type id 4");
    free(b.p);
    b = one_tensor("blk.0.w", 1, (int64_t[]){256}, 16, 0, 128);
    expect_bad(&b, "iq2xxs", "tensor 'blk.0.w': type iq2_xxs (16) is not supported");
    free(b.p);
    b = one_tensor("blk.0.w", 1, (int64_t[]){256}, G4_TYPE_Q8_K, 0, 320);
    expect_bad(&b, "q8k", "tensor 'blk.0.w': type q8_k (15) is not supported");
    free(b.p);
    b = one_tensor("blk.0.w", 2, (int64_t[]){48, 2}, G4_TYPE_Q4_0, 0, 64);
    expect_bad(&b, "block", "tensor 'blk.0.w': 48 elements per row is not a multiple of the q4_0 block size 32");
    free(b.p);

    b = one_tensor("blk.0.attn_q.weight", 1, (int64_t[]){8}, G4_TYPE_F32, 16, 64);
    expect_bad(&b, "misaligned", "tensor 'blk.0.attn_q.weight': offset 16 is not a multiple of the alignment 32");
    expect_bad_file(&b, "misaligned", "tensor 'blk.0.attn_q.weight': offset 16 is not a multiple of the alignment 32");
    free(b.p);
    b = one_tensor("w", 1, (int64_t[]){8}, G4_TYPE_F32, 1024, 64);
    expect_bad(&b, "pastend", "tensor 'w': 32 bytes (32 padded) at offset 1024 run past the end of the data section (64 bytes)");
    free(b.p);
    b = one_tensor("w", 1, (int64_t[]){8}, G4_TYPE_F32, UINT64_MAX - 31, 64);
    snprintf(msg, sizeof msg, "tensor 'w': 32 bytes (32 padded) at offset %" PRIu64 " run past the end of the data section (64 bytes)",
             UINT64_MAX - 31);
    expect_bad(&b, "offwrap", msg);
    free(b.p);
    /* the data is there but the padding after it was cut */
    b = one_tensor("w", 1, (int64_t[]){7}, G4_TYPE_F32, 0, 28);
    expect_bad(&b, "nopad", "tensor 'w': 28 bytes (32 padded) at offset 0 run past the end of the data section (28 bytes)");
    free(b.p);

    b = (bytes){0};
    put_header(&b, 3, 3, 0);
    put_tensor(&b, "first", 1, (int64_t[]){16}, G4_TYPE_F32, 0);   /* bytes [0, 64) */
    put_tensor(&b, "last", 1, (int64_t[]){8}, G4_TYPE_F32, 96);
    put_tensor(&b, "second", 1, (int64_t[]){8}, G4_TYPE_F32, 32);  /* starts inside "first" */
    put_pad(&b, 32); put_zeros(&b, 128);
    expect_bad(&b, "overlap", "tensor 'second' at offset 32 overlaps tensor 'first' (offset 0, 64 bytes)");
    free(b.p);

    /* a custom alignment is honoured for the data section and offsets */
    b = (bytes){0};
    put_header(&b, 2, 1, 1);
    put_key(&b, "general.alignment", GGUF_TYPE_UINT32); put_u32(&b, 256);
    put_tensor(&b, "w", 1, (int64_t[]){8}, G4_TYPE_F32, 0);
    size_t header_end = b.n;
    put_pad(&b, 256); put_zeros(&b, 256);
    char err[G4_ERR_LEN] = "";
    void *keep;
    g4_gguf_file *f = open_copy(b.p, b.n, "align256", err, &keep);
    CHECK(f && g4_gguf_alignment(f) == 256 && g4_gguf_data_offset(f) == 256 && header_end < 256, "alignment 256: %s",
          f ? "wrong values" : err);
    close_copy(f, keep);
    expect_bad(&(bytes){b.p, b.n - 1, 0}, "align256", "tensor 'w': 32 bytes (256 padded) at offset 0 run past the end of the data section (255 bytes)");
    free(b.p);
}

/* Every prefix of the file must be refused. Prefixes in [0, copy_below) are
 * parsed from exact-size copies (the header region, where reads happen);
 * longer ones in steps of `step` from the original buffer, plus the last 64. */
static void truncations(const uint8_t *p, size_t n, size_t copy_below, size_t step, const char *name) {
    char err[G4_ERR_LEN];
    size_t tried = 0, accepted = 0, first_bad = 0, bad_msg = 0;
    for (size_t cut = 0; cut < n; cut++) {
        bool copy = cut < copy_below;
        if (!copy && cut % step && cut + 64 < n) continue;
        err[0] = 0;
        void *keep = NULL;
        g4_gguf_file *f = copy ? open_copy(p, cut, name, err, &keep) : g4_gguf_open_memory(p, cut, name, err);
        tried++;
        if (f && !accepted++) first_bad = cut;
        if (!f && (strncmp(err, name, strlen(name)) || !one_line(err))) bad_msg++;
        close_copy(f, keep);
    }
    CHECK(accepted == 0, "%s: %zu of %zu truncations accepted, first at %zu", name, accepted, tried, first_bad);
    CHECK(bad_msg == 0, "%s: %zu truncation errors not one line naming the file", name, bad_msg);
    CHECK(tried >= (copy_below < n ? copy_below : n), "%s: only %zu truncations tried", name, tried);
}

static uint8_t *read_all(const char *path, size_t *n) {
    char err[G4_ERR_LEN];
    return (uint8_t *)g4_read_file(path, n, err);
}

static void test_truncation(void) {
    built v = build_valid(3);
    truncations(v.b.p, v.b.n, v.b.n, 1, "cut-small");
    free(v.b.p);

    char path[512];
    snprintf(path, sizeof path, "%s/models/e2b_q4_0.gguf", test_fixtures_dir());
    size_t n = 0;
    uint8_t *p = read_all(path, &n);
    CHECK(p && n > 100000, "%s: %s", path, p ? "too short for the fixture model" : "cannot read");
    char err[G4_ERR_LEN];
    g4_gguf_file *f = p && n > 100000 ? g4_gguf_open_memory(p, n, path, err) : NULL;
    if (p && n > 100000) CHECK(f, "fixture refused: %s", err);
    if (!f) { /* the cuts below are placed in a valid model */
        free(p);
        return;
    }
    size_t header = (size_t)g4_gguf_data_offset(f) + 1;
    g4_gguf_close(f);
    truncations(p, n, header, 997, "cut-e2b_q4_0");

    /* and through the file path: cut in the header and in the data */
    size_t cuts[] = {header / 2, n - 1000};
    for (int i = 0; i < 2; i++) {
        const char *tmp = tmp_path("cut");
        write_file(tmp, p, cuts[i]);
        f = g4_gguf_open(tmp, err);
        CHECK(!f && !strncmp(err, tmp, strlen(tmp)) && one_line(err), "cut file at %zu: %s", cuts[i], f ? "accepted" : err);
        g4_gguf_close(f);
        CHECK(dump_quietly(tmp) == 1, "dump of a cut file should exit 1");
        unlink(tmp);
    }
    free(p);
}

/* ---- fixtures against manifest.json ---- */

/* One model: open through mmap, compare header facts and every tensor with
 * its manifest entry m. */
static void check_model(const g4_json *m) {
    const g4_json *file = g4_json_get_type(m, "file", G4_JSON_STRING), *size = g4_json_get(m, "size");
    const g4_json *list = g4_json_get_type(m, "tensors", G4_JSON_ARRAY);
    CHECK(file && size && size->is_int && list, "manifest entry without file, size or tensors");
    if (!file || !size || !list) return;
    char path[512], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", test_fixtures_dir(), file->str);
    g4_gguf_file *f = g4_gguf_open(path, err);
    CHECK(f, "%s", err);
    if (!f) return;
    int mismatches = 0;
    const char *first_bad = "";
    for (size_t i = 0; i < list->len; i++) {
        const g4_json *name = g4_json_get_type(&list->items[i], "name", G4_JSON_STRING);
        const g4_json *ne = g4_json_get_type(&list->items[i], "ne", G4_JSON_ARRAY);
        const g4_json *type = g4_json_get_type(&list->items[i], "type", G4_JSON_STRING);
        const g4_gguf_tensor *t = name ? g4_gguf_find_tensor(f, name->str) : NULL;
        bool same = t && ne && type && t->n_dims == ne->len && !strcasecmp(g4_type_name(t->type), type->str);
        for (size_t j = 0; same && j < ne->len; j++) same = ne->items[j].is_int && t->ne[j] == ne->items[j].integer;
        if (!same && !mismatches++) first_bad = name ? name->str : "?";
    }
    CHECK(g4_gguf_version(f) == 3 && g4_gguf_alignment(f) == 32, "%s: v%u alignment %" PRIu64, file->str, g4_gguf_version(f),
          g4_gguf_alignment(f));
    CHECK(g4_gguf_n_tensors(f) == (int64_t)list->len && list->len > 0, "%s: %" PRId64 " tensors, manifest lists %zu",
          file->str, g4_gguf_n_tensors(f), list->len);
    CHECK(mismatches == 0, "%s: %d tensors differ from the manifest, first '%s'", file->str, mismatches, first_bad);
    /* the tensors tile the data section exactly, each padded to 32 */
    uint64_t end = g4_gguf_data_offset(f);
    for (int64_t i = 0; i < g4_gguf_n_tensors(f); i++) end += (g4_gguf_tensor_at(f, i)->nbytes + 31) / 32 * 32;
    CHECK((int64_t)g4_gguf_file_size(f) == size->integer && end == g4_gguf_file_size(f),
          "%s: size %" PRIu64 ", tensors end at %" PRIu64 ", manifest %" PRId64, file->str, g4_gguf_file_size(f), end,
          size->integer);
    uint64_t n_tok = 0;
    const void *tok;
    CHECK(g4_gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, &n_tok, err) == GGUF_OK && n_tok == 512,
          "%s: %" PRIu64 " tokens", file->str, n_tok);
    g4_gguf_close(f);
}

static void test_fixture_models(void) {
    char path[512], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/manifest.json", test_fixtures_dir());
    g4_json *manifest = g4_json_parse_file(path, err);
    CHECK(manifest, "%s", err);
    const g4_json *models = g4_json_get_type(manifest, "models", G4_JSON_ARRAY);
    CHECK(models && models->len == 12, "%zu models in the manifest, the README lists 12", models ? models->len : 0);
    for (size_t i = 0; models && i < models->len; i++) check_model(&models->items[i]);
    g4_json_free(manifest);
}

/* The vocabulary file against the tokenizer fixture: every (id, piece) pair
 * llama.cpp reported must be that entry of tokenizer.ggml.tokens. */
static void test_fixture_vocab(void) {
    char path[512], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/tokenizer/synthetic-vocab.gguf", test_fixtures_dir());
    g4_gguf_file *f = g4_gguf_open(path, err);
    CHECK(f, "%s", err);
    if (!f) return;
    const void *data = NULL;
    uint64_t n_tok = 0;
    CHECK(g4_gguf_version(f) == 3 && g4_gguf_n_tensors(f) == 0, "vocab header");
    CHECK(g4_gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &data, &n_tok, err) == GGUF_OK && n_tok == 512,
          "%" PRIu64 " tokens: %s", n_tok, err);
    const g4_gguf_str *tok = data;
    uint32_t bos = 0;
    int32_t bos_i = 0;
    CHECK(g4_gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &bos, err) == GGUF_OK && bos == 2, "bos %u", bos);
    CHECK(g4_gguf_get_i32(f, "tokenizer.ggml.bos_token_id", &bos_i, err) == GGUF_ETYPE &&
              strstr(err, ": key 'tokenizer.ggml.bos_token_id' is u32, expected i32") && one_line(err),
          "%s", err);

    snprintf(path, sizeof path, "%s/tokenizer/synthetic.tokens.json", test_fixtures_dir());
    g4_json *js = g4_json_parse_file(path, err);
    CHECK(js, "%s", err);
    const g4_json *cases = g4_json_get_type(js, "cases", G4_JSON_ARRAY);
    int pairs = 0, wrong = 0;
    for (size_t c = 0; cases && c < cases->len; c++) {
        const g4_json *ids = g4_json_get_type(g4_json_get(&cases->items[c], "ids"), "special_parse", G4_JSON_ARRAY);
        const g4_json *pieces = g4_json_get_type(&cases->items[c], "pieces", G4_JSON_ARRAY);
        if (!ids || !pieces || ids->len != pieces->len) { wrong++; continue; }
        for (size_t i = 0; i < ids->len; i++) {
            const g4_json *id = &ids->items[i], *piece = &pieces->items[i];
            if (!id->is_int || id->integer < 0 || (uint64_t)id->integer >= n_tok || piece->type != G4_JSON_STRING) {
                wrong++;
                continue;
            }
            pairs++;
            const g4_gguf_str *t = &tok[id->integer];
            if ((t->len != piece->len || memcmp(t->ptr, piece->str, t->len)) && !wrong++)
                fprintf(stderr, "token %" PRId64 ": file has '%.*s', fixture '%s'\n", id->integer, (int)t->len, t->ptr, piece->str);
        }
    }
    CHECK(pairs > 100 && wrong == 0, "%d (id, piece) pairs checked, %d wrong", pairs, wrong);
    g4_json_free(js);
    g4_gguf_close(f);
}

/* An empty file has nothing to map: refused as truncated, without pointer
 * arithmetic on the missing mapping (UBSan flagged NULL + 0 here). */
static void test_empty_file(void) {
    char path[] = "/tmp/g4_test_empty_XXXXXX", err[G4_ERR_LEN] = "";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    g4_gguf_file *f = g4_gguf_open(path, err);
    CHECK(f == NULL && strstr(err, path) && strstr(err, "truncated"), "empty file: '%s'", err);
    g4_gguf_close(f);
    unlink(path);
}

int main(void) {
    test_empty_file();
    test_valid_file(3);
    test_valid_file(2);
    test_header_damage();
    test_kv_damage();
    test_tensor_damage();
    test_truncation();
    test_fixture_models();
    test_fixture_vocab();
    return test_summary("test_gguf");
}
