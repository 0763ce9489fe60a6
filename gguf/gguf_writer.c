/* GGUF writer. Metadata is serialized into a byte buffer as it is set (so a
 * vocabulary of 262144 strings costs one buffer, not 262144 allocations);
 * tensor infos are kept as structs until begin() lays out the data section. */
#include "gguf/gguf_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_VERSION 3

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

typedef struct {
    char name[GGUF_MAX_NAME + 1];
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t offset, nbytes;
} tensor_info;

struct g4_gguf_writer {
    char *path;
    char *tmp_path;     /* written here, renamed to path when finished */
    uint32_t alignment;
    bytes kv;           /* serialized key/value pairs */
    int64_t n_kv;
    char **keys;        /* for the duplicate check */
    tensor_info *tensors;
    int64_t n_tensors, cap_tensors;
    uint64_t data_size; /* data section, padded */
    FILE *fp;
    bool begun, finished, failed;
    int64_t cur;        /* tensor receiving data */
    uint64_t cur_done;  /* its bytes written so far */
};

static int fail(g4_gguf_writer *w, char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    g4_verror(err, w->path, fmt, ap);
    va_end(ap);
    return -1;
}

/* Once the file exists, any failure leaves it unusable. */
static int fail_io(g4_gguf_writer *w, char *err, const char *what) {
    w->failed = true;
    return fail(w, err, "%s: %s", what, errno ? strerror(errno) : "write error");
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ---- little-endian serialization into a growing buffer ---- */

static bool put(bytes *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n); /* src may be NULL when n is 0 */
    b->len += n;
    return true;
}

static bool put_le(bytes *b, uint64_t v, size_t n) {
    uint8_t tmp[8];
    for (size_t i = 0; i < n; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    return put(b, tmp, n);
}

static bool put_str(bytes *b, const char *s) {
    size_t n = strlen(s);
    return put_le(b, n, 8) && put(b, s, n);
}

/* One element from its C representation (native layout) to little-endian. */
static bool put_scalar(bytes *b, enum g4_gguf_value_type t, const void *val) {
    size_t n = g4_gguf_value_size(t);
    if (t == GGUF_TYPE_BOOL) {
        bool v;
        memcpy(&v, val, sizeof v);
        return put_le(b, v ? 1 : 0, 1);
    }
    uint64_t bits = 0;
    switch (n) {
    case 1: { uint8_t v; memcpy(&v, val, 1); bits = v; break; }
    case 2: { uint16_t v; memcpy(&v, val, 2); bits = v; break; }
    case 4: { uint32_t v; memcpy(&v, val, 4); bits = v; break; }
    case 8: memcpy(&bits, val, 8); break;
    }
    return put_le(b, bits, n);
}

static size_t c_size(enum g4_gguf_value_type t) { return t == GGUF_TYPE_BOOL ? sizeof(bool) : g4_gguf_value_size(t); }

/* ---- metadata ---- */

g4_gguf_writer *g4_gguf_writer_new(const char *path, uint32_t alignment, char *err) {
    if (alignment == 0) alignment = GGUF_DEFAULT_ALIGNMENT;
    if (alignment & (alignment - 1)) {
        snprintf(err, G4_ERR_LEN, "%s: alignment %" PRIu32 " is not a power of two", path, alignment);
        return NULL;
    }
    g4_gguf_writer *w = calloc(1, sizeof *w);
    if (w) {
        w->path = strdup(path);
        w->tmp_path = malloc(strlen(path) + 32);
    }
    if (!w || !w->path || !w->tmp_path) {
        if (w) free(w->path);
        free(w);
        snprintf(err, G4_ERR_LEN, "%s: out of memory", path);
        return NULL;
    }
    w->alignment = alignment;
    if (alignment != GGUF_DEFAULT_ALIGNMENT && g4_gguf_writer_set_u32(w, "general.alignment", alignment, err)) {
        g4_gguf_writer_free(w);
        return NULL;
    }
    return w;
}

void g4_gguf_writer_free(g4_gguf_writer *w) {
    if (!w) return;
    if (w->fp) fclose(w->fp);
    if (w->begun && !w->finished) unlink(w->tmp_path);
    for (int64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    free(w->kv.p);
    free(w->tensors);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

/* Checks and records the key, and serializes it with its type tag. */
static int begin_kv(g4_gguf_writer *w, const char *key, enum g4_gguf_value_type type, char *err) {
    if (w->begun) return fail(w, err, "key '%s' set after the header was written", key);
    if (!key || !*key) return fail(w, err, "empty metadata key");
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return fail(w, err, "duplicate key '%s'", key);
    if (w->n_kv % 64 == 0) {
        char **k = realloc(w->keys, (size_t)(w->n_kv + 64) * sizeof *k);
        if (!k) return fail(w, err, "out of memory");
        w->keys = k;
    }
    char *copy = strdup(key);
    if (!copy) return fail(w, err, "out of memory");
    if (!put_str(&w->kv, key) || !put_le(&w->kv, (uint64_t)type, 4)) {
        free(copy);
        return fail(w, err, "out of memory");
    }
    w->keys[w->n_kv++] = copy;
    return 0;
}

int g4_gguf_writer_set(g4_gguf_writer *w, const char *key, enum g4_gguf_value_type type, const void *val, char *err) {
    if (type != GGUF_TYPE_STRING && !g4_gguf_value_size(type))
        return fail(w, err, "key '%s': %d is not a scalar type", key, (int)type);
    if (begin_kv(w, key, type, err)) return -1;
    bool ok = type == GGUF_TYPE_STRING ? put_str(&w->kv, val) : put_scalar(&w->kv, type, val);
    return ok ? 0 : fail(w, err, "out of memory");
}

int g4_gguf_writer_set_u32(g4_gguf_writer *w, const char *key, uint32_t v, char *err) {
    return g4_gguf_writer_set(w, key, GGUF_TYPE_UINT32, &v, err);
}
int g4_gguf_writer_set_i32(g4_gguf_writer *w, const char *key, int32_t v, char *err) {
    return g4_gguf_writer_set(w, key, GGUF_TYPE_INT32, &v, err);
}
int g4_gguf_writer_set_f32(g4_gguf_writer *w, const char *key, float v, char *err) {
    return g4_gguf_writer_set(w, key, GGUF_TYPE_FLOAT32, &v, err);
}
int g4_gguf_writer_set_bool(g4_gguf_writer *w, const char *key, bool v, char *err) {
    return g4_gguf_writer_set(w, key, GGUF_TYPE_BOOL, &v, err);
}
int g4_gguf_writer_set_str(g4_gguf_writer *w, const char *key, const char *s, char *err) {
    return g4_gguf_writer_set(w, key, GGUF_TYPE_STRING, s, err);
}

int g4_gguf_writer_set_arr(g4_gguf_writer *w, const char *key, enum g4_gguf_value_type elem, const void *data,
                        uint64_t n, char *err) {
    if (elem != GGUF_TYPE_STRING && !g4_gguf_value_size(elem))
        return fail(w, err, "key '%s': arrays of type %d are not supported", key, (int)elem);
    if (begin_kv(w, key, GGUF_TYPE_ARRAY, err)) return -1;
    bool ok = put_le(&w->kv, (uint64_t)elem, 4) && put_le(&w->kv, n, 8);
    for (uint64_t i = 0; ok && i < n; i++)
        ok = elem == GGUF_TYPE_STRING ? put_str(&w->kv, ((const char *const *)data)[i])
                                      : put_scalar(&w->kv, elem, (const uint8_t *)data + i * c_size(elem));
    return ok ? 0 : fail(w, err, "out of memory");
}

/* ---- tensors ---- */

int g4_gguf_writer_add_tensor(g4_gguf_writer *w, const char *name, enum g4_type type, uint32_t n_dims,
                           const int64_t *ne, char *err) {
    if (w->begun) return fail(w, err, "tensor '%s' added after the header was written", name);
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > GGUF_MAX_NAME)
        return fail(w, err, "tensor name '%s' must be 1..%d bytes", name ? name : "", GGUF_MAX_NAME);
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return fail(w, err, "duplicate tensor '%s'", name);
    const g4_type_traits *tr = g4_type_info(type);
    if (!tr || !tr->weights) return fail(w, err, "tensor '%s': type %s cannot be stored", name, g4_type_name(type));
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return fail(w, err, "tensor '%s': %" PRIu32 " dimensions (1..%d)", name, n_dims, GGUF_MAX_DIMS);
    tensor_info t = {.type = (uint32_t)type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    memcpy(t.name, name, len + 1);
    int64_t n_rows = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0) return fail(w, err, "tensor '%s': ne[%" PRIu32 "] = %" PRId64 " is not positive", name, d, ne[d]);
        t.ne[d] = ne[d];
        if (d > 0) {
            if (n_rows > INT64_MAX / ne[d]) return fail(w, err, "tensor '%s': too many elements", name);
            n_rows *= ne[d];
        }
    }
    if (ne[0] % tr->blck_size)
        return fail(w, err, "tensor '%s': ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                    name, ne[0], tr->name, tr->blck_size);
    uint64_t row = g4_row_size(type, ne[0]);
    if ((uint64_t)n_rows > (UINT64_MAX / 2 - w->data_size) / row)
        return fail(w, err, "tensor '%s': size overflows", name);
    t.nbytes = row * (uint64_t)n_rows;
    t.offset = w->data_size;
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 256;
        tensor_info *p = realloc(w->tensors, (size_t)cap * sizeof *p);
        if (!p) return fail(w, err, "out of memory");
        w->tensors = p;
        w->cap_tensors = cap;
    }
    w->tensors[w->n_tensors++] = t;
    w->data_size = align_up(t.offset + t.nbytes, w->alignment);
    return 0;
}

int64_t g4_gguf_writer_n_tensors(const g4_gguf_writer *w) { return w->n_tensors; }

uint64_t g4_gguf_writer_tensor_nbytes(const g4_gguf_writer *w, int64_t i) {
    return i >= 0 && i < w->n_tensors ? w->tensors[i].nbytes : 0;
}

/* The header (magic .. tensor infos) plus padding, serialized into b. */
static bool build_header(const g4_gguf_writer *w, bytes *b) {
    bool ok = put(b, "GGUF", 4) && put_le(b, GGUF_VERSION, 4) && put_le(b, (uint64_t)w->n_tensors, 8) &&
              put_le(b, (uint64_t)w->n_kv, 8) && put(b, w->kv.p, w->kv.len);
    for (int64_t i = 0; ok && i < w->n_tensors; i++) {
        const tensor_info *t = &w->tensors[i];
        ok = put_str(b, t->name) && put_le(b, t->n_dims, 4);
        for (uint32_t d = 0; ok && d < t->n_dims; d++) ok = put_le(b, (uint64_t)t->ne[d], 8);
        ok = ok && put_le(b, t->type, 4) && put_le(b, t->offset, 8);
    }
    static const uint8_t zeros[256];
    size_t pad = (size_t)(align_up(b->len, w->alignment) - b->len);
    while (ok && pad) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        ok = put(b, zeros, n);
        pad -= n;
    }
    return ok;
}

/* ---- data ---- */

static int write_bytes(g4_gguf_writer *w, const void *p, size_t n, char *err) {
    errno = 0;
    if (n && fwrite(p, 1, n, w->fp) != n) return fail_io(w, err, "write failed");
    return 0;
}

static int write_zeros(g4_gguf_writer *w, uint64_t n, char *err) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (write_bytes(w, zeros, k, err)) return -1;
        n -= k;
    }
    return 0;
}

/* Moves past tensors that are complete, writing the padding after each (the
 * last one too, as ggml does, so the file size is a multiple of the alignment). */
static int advance(g4_gguf_writer *w, char *err) {
    while (w->cur < w->n_tensors && w->cur_done == w->tensors[w->cur].nbytes) {
        const tensor_info *t = &w->tensors[w->cur];
        if (write_zeros(w, align_up(t->offset + t->nbytes, w->alignment) - t->offset - t->nbytes, err)) return -1;
        w->cur++;
        w->cur_done = 0;
    }
    return 0;
}

int g4_gguf_writer_begin(g4_gguf_writer *w, char *err) {
    if (w->begun) return fail(w, err, "header written twice");
    bytes head = {0};
    if (!build_header(w, &head)) {
        free(head.p);
        return fail(w, err, "out of memory");
    }
    errno = 0;
    /* A reader may have the old file mapped: replacing it by rename leaves
     * that mapping intact, where truncating it in place would not. */
    sprintf(w->tmp_path, "%s.partial-%ld", w->path, (long)getpid());
    w->fp = fopen(w->tmp_path, "wb");
    if (!w->fp) {
        free(head.p);
        return fail(w, err, "cannot create: %s", strerror(errno));
    }
    w->begun = true;
    setvbuf(w->fp, NULL, _IOFBF, 1 << 20);
    int rc = write_bytes(w, head.p, head.len, err);
    free(head.p);
    return rc ? rc : advance(w, err);
}

int g4_gguf_writer_write(g4_gguf_writer *w, const void *data, size_t n, char *err) {
    if (!w->begun || w->finished) return fail(w, err, "tensor data written outside begin/finish");
    if (w->failed) return fail(w, err, "write after an earlier error");
    const uint8_t *p = data;
    while (n) {
        if (w->cur >= w->n_tensors) {
            w->failed = true;
            return fail(w, err, "%zu bytes of tensor data more than declared", n);
        }
        uint64_t left = w->tensors[w->cur].nbytes - w->cur_done;
        size_t k = n < left ? n : (size_t)left;
        if (write_bytes(w, p, k, err)) return -1;
        w->cur_done += k;
        p += k;
        n -= k;
        if (advance(w, err)) return -1;
    }
    return 0;
}

int g4_gguf_writer_finish(g4_gguf_writer *w, char *err) {
    if (!w->begun || w->finished || w->failed) return fail(w, err, "finish without a complete header");
    if (w->cur < w->n_tensors) {
        w->failed = true;
        return fail(w, err, "tensor '%s' got %" PRIu64 " of its %" PRIu64 " bytes", w->tensors[w->cur].name,
                    w->cur_done, w->tensors[w->cur].nbytes);
    }
    errno = 0;
    bool ok = fflush(w->fp) == 0 && !ferror(w->fp);
    ok = fclose(w->fp) == 0 && ok;
    w->fp = NULL;
    if (!ok) return fail_io(w, err, "close failed");
    errno = 0;
    if (rename(w->tmp_path, w->path)) return fail_io(w, err, "cannot rename the finished file into place");
    w->finished = true;
    return 0;
}

/* ---- copying metadata from a file being read ---- */

/* A mapped string as a C string; the writer takes NUL-terminated strings,
 * so one with a NUL inside could not be copied faithfully. */
static char *c_string(const char *key, g4_gguf_str s, char *err) {
    if (memchr(s.ptr, 0, s.len)) {
        g4_error(err, NULL, "key '%s' holds a string with a NUL byte", key);
        return NULL;
    }
    char *c = strndup(s.ptr, s.len);
    if (!c) g4_error(err, NULL, "out of memory copying '%s'", key);
    return c;
}

static int copy_array(g4_gguf_writer *w, const g4_gguf_kv *kv, char *err) {
    if (kv->arr_type != GGUF_TYPE_STRING) return g4_gguf_writer_set_arr(w, kv->key, kv->arr_type, kv->arr_data, kv->arr_n, err);
    const g4_gguf_str *s = kv->arr_data;
    char **strs = calloc(kv->arr_n ? kv->arr_n : 1, sizeof *strs);
    int rc = strs ? 0 : g4_error(err, NULL, "out of memory copying '%s'", kv->key);
    for (uint64_t i = 0; i < kv->arr_n && !rc; i++)
        if (!(strs[i] = c_string(kv->key, s[i], err))) rc = -1;
    if (!rc) rc = g4_gguf_writer_set_arr(w, kv->key, GGUF_TYPE_STRING, (const char *const *)strs, kv->arr_n, err);
    for (uint64_t i = 0; strs && i < kv->arr_n; i++) free(strs[i]);
    free(strs);
    return rc;
}

int g4_gguf_writer_copy_kv(g4_gguf_writer *w, const g4_gguf_kv *kv, char *err) {
    if (kv->type == GGUF_TYPE_ARRAY) return copy_array(w, kv, err);
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        uint64_t u64; int64_t i64; float f32; double f64; bool b;
    } v;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: v.u8 = (uint8_t)kv->val.u64; break;
    case GGUF_TYPE_INT8: v.i8 = (int8_t)kv->val.i64; break;
    case GGUF_TYPE_UINT16: v.u16 = (uint16_t)kv->val.u64; break;
    case GGUF_TYPE_INT16: v.i16 = (int16_t)kv->val.i64; break;
    case GGUF_TYPE_UINT32: v.u32 = (uint32_t)kv->val.u64; break;
    case GGUF_TYPE_INT32: v.i32 = (int32_t)kv->val.i64; break;
    case GGUF_TYPE_UINT64: v.u64 = kv->val.u64; break;
    case GGUF_TYPE_INT64: v.i64 = kv->val.i64; break;
    case GGUF_TYPE_FLOAT32: v.f32 = (float)kv->val.f64; break;
    case GGUF_TYPE_FLOAT64: v.f64 = kv->val.f64; break;
    case GGUF_TYPE_BOOL: v.b = kv->val.b; break;
    case GGUF_TYPE_STRING: {
        char *c = c_string(kv->key, kv->val.str, err);
        int rc = c ? g4_gguf_writer_set_str(w, kv->key, c, err) : -1;
        free(c);
        return rc;
    }
    default: return g4_error(err, NULL, "key '%s' has type %d", kv->key, (int)kv->type);
    }
    return g4_gguf_writer_set(w, kv->key, kv->type, &v, err);
}
