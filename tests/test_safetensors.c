/* gguf/safetensors.c: reading F32/F16/BF16 tensors from single and sharded
 * checkpoints, and refusing hostile files with a one-line message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/safetensors.h"
#include "tests/harness.h"

/* header (as given) + data -> one buffer; hlen_delta skews the length field */
static size_t build(uint8_t *buf, const char *header, const void *data, size_t n_data, int64_t hlen_delta) {
    size_t h = strlen(header);
    uint64_t field = (uint64_t)((int64_t)h + hlen_delta);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(field >> (8 * i));
    memcpy(buf + 8, header, h);
    memcpy(buf + 8 + h, data, n_data);
    return 8 + h + n_data;
}

static void test_read(void) {
    uint8_t buf[4096], data[64];
    /* a: F32 [2,2] = 1 2 3 4; b: BF16 [3] = 1.5 -2 0.25 (at an odd offset); c: F16 [1] = 0.5 */
    float f[4] = {1, 2, 3, 4};
    uint16_t bf[3] = {0x3fc0, 0xc000, 0x3e80}, h = 0x3800;
    memcpy(data, f, 16);
    data[16] = 0xaa; /* a hole is allowed */
    memcpy(data + 17, bf, 6);
    memcpy(data + 23, &h, 2);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[17,23]},"
                      "\"c\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[23,25]},"
                      "\"i\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[25,25]}}  ";
    size_t n = build(buf, hdr, data, 25, 0);
    char err[G4_ERR_LEN];
    safetensors *st = g4_safetensors_open_memory(buf, n, "mem", err);
    CHECK(st != NULL, "valid file: %s", st ? "" : err);
    if (!st) return;
    CHECK(g4_safetensors_n_tensors(st) == 4, "4 tensors (metadata skipped)");
    const g4_safetensors_tensor *a = g4_safetensors_find(st, "a"), *b = g4_safetensors_find(st, "b"), *c = g4_safetensors_find(st, "c");
    const g4_safetensors_tensor *i = g4_safetensors_find(st, "i");
    CHECK(a && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 2 && a->type == G4_TYPE_F32 && a->nbytes == 16, "a");
    CHECK(b && b->n_elems == 3 && b->type == G4_TYPE_BF16 && c && c->type == G4_TYPE_F16, "b, c");
    CHECK(i && !i->is_float && !strcmp(i->dtype, "I64") && i->nbytes == 0, "empty I64 tensor listed, not float");
    float out[4];
    if (a) g4_safetensors_read_f32(a, 1, 3, out);
    CHECK(out[0] == 2 && out[2] == 4, "F32 values");
    if (b) g4_safetensors_read_f32(b, 0, 3, out);
    CHECK(out[0] == 1.5f && out[1] == -2 && out[2] == 0.25f, "BF16 values, unaligned: %g %g %g", out[0], out[1], out[2]);
    if (c) g4_safetensors_read_f32(c, 0, 1, out);
    CHECK(out[0] == 0.5f, "F16 value");
    CHECK(!strcmp(g4_safetensors_tensor_at(st, 0)->name, "a") && g4_safetensors_tensor_at(st, 4) == NULL, "sorted, bounded");
    g4_safetensors_close(st);
}

static void test_hostile(void) {
    static const struct { const char *header; size_t n_data; int64_t hlen_delta; const char *msg; } bad[] = {
        {"{}", 0, 100, "header length"},
        {"{}", 0, -1000, "header length"},
        {"not json", 0, 0, "header: line 1, column 1"},
        {"[1,2]", 0, 0, "expected an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", 16, 0, "header: line 1"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0, "outside the 8 data bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 16, 0, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[4,12]}}", 16, 0, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8]}}", 16, 0, "8 bytes of data for 4 F32 values"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, 0, "16 bytes of data for 4 BF16"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 16, 0, "unsupported dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, 0, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", 0, 0, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, 0, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16, 0, "begin <= end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 16, 0, "data_offsets must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 16, 0, "needs \"dtype\""},
        {"{\"a\":7}", 16, 0, "needs \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 16, 0, "9 dimensions"},
        {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 16, 0, "NUL"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{}}", 16, 0, "duplicate key"},
    };
    uint8_t buf[4096], zeros[64] = {0};
    char err[G4_ERR_LEN];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = build(buf, bad[i].header, zeros, bad[i].n_data, bad[i].hlen_delta);
        err[0] = 0;
        safetensors *st = g4_safetensors_open_memory(buf, n, "evil.safetensors", err);
        CHECK(!st && !strncmp(err, "evil.safetensors: ", 18) && strstr(err, bad[i].msg) && !strchr(err, '\n'),
              "case %zu: got \"%s\", want \"%s\"", i, err, bad[i].msg);
        g4_safetensors_close(st);
    }
    safetensors *st = g4_safetensors_open_memory(buf, 5, "short", err);
    CHECK(!st && strstr(err, "too short"), "5-byte file: %s", err);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) fwrite(p, 1, n, f), fclose(f);
}

static void test_sharded(void) {
    char dir[] = "/tmp/g4_test_st_XXXXXX", path[256], err[G4_ERR_LEN];
    if (!mkdtemp(dir)) return;
    uint8_t buf[1024];
    float v[2] = {3, 4};
    size_t n = build(buf, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", v, 4, 0);
    snprintf(path, sizeof path, "%s/s1.safetensors", dir);
    write_file(path, buf, n);
    n = build(buf, "{\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", v + 1, 4, 0);
    snprintf(path, sizeof path, "%s/s2.safetensors", dir);
    write_file(path, buf, n);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    const char *idx = "{\"metadata\":{},\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s2.safetensors\"}}";
    write_file(path, idx, strlen(idx));
    safetensors *st = g4_safetensors_open(dir, err);
    CHECK(st && g4_safetensors_n_tensors(st) == 2, "two shards: %s", st ? "" : err);
    float out = 0;
    if (st) g4_safetensors_read_f32(g4_safetensors_find(st, "y"), 0, 1, &out);
    CHECK(out == 4, "value from the second shard");
    g4_safetensors_close(st);
    static const char *bad_idx[][2] = {
        {"{\"weight_map\":{\"x\":\"s2.safetensors\",\"y\":\"s2.safetensors\"}}", "tensor 'x' is not in s2.safetensors"},
        {"{\"weight_map\":{\"x\":\"../s1.safetensors\"}}", "invalid shard"},
        {"{\"weight_map\":{\"x\":\"missing.safetensors\"}}", "cannot open"},
        {"{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s1.safetensors\",\"z\":\"s2.safetensors\"}}", "not in"},
        {"{\"metadata\":{}}", "no \"weight_map\""},
        {"{\"weight_map\":", "line 1"},
    };
    for (size_t i = 0; i < sizeof bad_idx / sizeof bad_idx[0]; i++) {
        write_file(path, bad_idx[i][0], strlen(bad_idx[i][0]));
        err[0] = 0;
        st = g4_safetensors_open(dir, err);
        CHECK(!st && strstr(err, bad_idx[i][1]), "index %zu: got \"%s\"", i, err);
        g4_safetensors_close(st);
    }
    /* the same tensor in two shards */
    snprintf(path, sizeof path, "%s/s2.safetensors", dir);
    n = build(buf, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", v, 4, 0);
    write_file(path, buf, n);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    idx = "{\"weight_map\":{\"x\":\"s1.safetensors\",\"w\":\"s2.safetensors\"}}";
    write_file(path, idx, strlen(idx));
    st = g4_safetensors_open(dir, err);
    CHECK(!st && strstr(err, "stored twice"), "duplicate across shards: %s", err);
    g4_safetensors_close(st);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    st = g4_safetensors_open("/nonexistent.safetensors", err);
    CHECK(!st && strstr(err, "/nonexistent.safetensors: cannot open"), "missing file: %s", err);
}

int main(void) {
    test_read();
    test_hostile();
    test_sharded();
    return test_summary("test_safetensors");
}
