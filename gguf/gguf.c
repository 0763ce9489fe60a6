/* GGUF reader. Every count, length, type and offset in the file is checked
 * against the bytes actually present before it is used, so a hostile or cut
 * file yields one error line instead of a crash or an out-of-bounds read.
 *
 * Layout (v2 and v3 are identical on disk; v3 only added big-endian files):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x   { string key, u32 type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   padding to the alignment, then the data section
 * A string is a u64 length and that many bytes; an array value is a u32
 * element type, a u64 count and the packed elements.
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/types.h"

/* Scalars and numeric arrays are copied straight from the file's bytes. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

/* Caps, checked before anything is allocated. Real models have well under a
 * hundred keys and a few thousand tensors; 2^20 of either leaves room for any
 * plausible file while bounding the tables to tens of megabytes. Each count is
 * also bounded by the bytes left divided by the smallest possible entry, so a
 * tiny file cannot make us allocate for a large claimed count. */
#define MAX_KV ((uint64_t)1 << 20)
#define MAX_TENSORS ((uint64_t)1 << 20)
/* The longest real string is a chat template of some kilobytes; 1 GiB keeps
 * lengths far away from any overflow in size arithmetic. */
#define MAX_STRING ((uint64_t)1 << 30)
/* ggml's GGML_MAX_NAME: names are stored in 64 bytes including the NUL. */
#define MAX_TENSOR_NAME 64
/* Alignment beyond a large page only wastes file space; 1 MiB is generous. */
#define MAX_ALIGNMENT ((uint64_t)1 << 20)
#define DEFAULT_ALIGNMENT 32

/* Smallest encodings: a key is a length and at least one byte, then a type
 * and at least a one-byte value; a tensor info is a name length, n_dims, one
 * dimension, a type and an offset. */
#define MIN_KV_BYTES (8 + 1 + 4 + 1)
#define MIN_TENSOR_INFO_BYTES (8 + 4 + 8 + 4 + 8)

struct g4_gguf_file {
    char *path;
    const uint8_t *base; /* whole file (mapping or caller buffer) */
    uint64_t size;
    bool mapped; /* ours to munmap: the file's mapping, or anonymous memory it was read into */
    bool locked; /* mlock'ed by g4_gguf_open_ex */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    int64_t n_kv, n_tensors;
    g4_gguf_kv *kv;
    g4_gguf_tensor *tensors;
    /* sorted by name, for lookup by bsearch and for finding duplicates */
    const void **kv_by_name, **tensor_by_name;
};

/* Lookup by name works on g4_gguf_kv and g4_gguf_tensor alike because both start
 * with their NUL-terminated name; a pointer to a struct is also a pointer to
 * its first member. */
static_assert(offsetof(g4_gguf_kv, key) == 0, "g4_gguf_kv starts with its name");
static_assert(offsetof(g4_gguf_tensor, name) == 0, "g4_gguf_tensor starts with its name");

static const char *name_of(const void *item) { return *(const char *const *)item; }

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(name_of(*(const void *const *)a), name_of(*(const void *const *)b));
}

/* Names quoted in messages come from the file and may hold any byte; control
 * bytes become '?' so the message stays one printable line. */
static void verr(char *err, const char *path, const char *fmt, va_list ap) {
    if (!err) return;
    g4_verror(err, path, fmt, ap);
    for (char *c = err; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
}

static void set_err(char *err, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(err, path, fmt, ap);
    va_end(ap);
}

/* A cursor over the file bytes. `what` in the reads below names the field
 * for the error message ("key 3", "tensor 'x' dimensions", ...). */
typedef struct {
    const uint8_t *buf;
    uint64_t size, pos;
    const char *path;
    char *err;
} reader;

static bool fail(reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(r->err, r->path, fmt, ap);
    va_end(ap);
    return false;
}

static uint64_t bytes_left(const reader *r) { return r->size - r->pos; }

static bool take(reader *r, uint64_t n, const char *what, const uint8_t **out) {
    /* set on failure too (keeps -Wmaybe-uninitialized quiet); an empty file
     * has no mapping, and NULL + 0 is undefined */
    *out = r->buf ? r->buf + r->pos : NULL;
    if (n > bytes_left(r))
        return fail(r, "file truncated: %s needs %" PRIu64 " bytes at offset %" PRIu64 ", only %" PRIu64 " left",
                    what, n, r->pos, bytes_left(r));
    r->pos += n;
    return true;
}

static bool read_u32(reader *r, const char *what, uint32_t *v) {
    const uint8_t *p;
    if (!take(r, 4, what, &p)) return false;
    memcpy(v, p, 4);
    return true;
}

static bool read_u64(reader *r, const char *what, uint64_t *v) {
    const uint8_t *p;
    if (!take(r, 8, what, &p)) return false;
    memcpy(v, p, 8);
    return true;
}

static bool read_str(reader *r, const char *what, g4_gguf_str *s) {
    uint64_t len;
    if (!read_u64(r, what, &len)) return false;
    if (len > MAX_STRING) return fail(r, "%s: string length %" PRIu64 " is over the cap %" PRIu64, what, len, MAX_STRING);
    if (len > bytes_left(r))
        return fail(r, "%s: string of %" PRIu64 " bytes at offset %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes left)",
                    what, len, r->pos, bytes_left(r));
    const uint8_t *p;
    take(r, len, what, &p);
    s->ptr = (const char *)p;
    s->len = len;
    return true;
}

/* A name (key or tensor name) as a NUL-terminated copy; an embedded NUL would
 * make two different names compare equal. */
static bool copy_name(reader *r, const char *what, g4_gguf_str s, const char **out) {
    if (memchr(s.ptr, 0, s.len)) return fail(r, "%s contains a NUL byte", what);
    char *c = malloc(s.len + 1);
    if (!c) return fail(r, "out of memory");
    memcpy(c, s.ptr, s.len);
    c[s.len] = 0;
    *out = c;
    return true;
}

size_t g4_gguf_value_size(enum g4_gguf_value_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *g4_gguf_type_name(enum g4_gguf_value_type t) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "?";
}

/* Any byte but 0 or 1 would be an invalid bool once read as one. */
static bool check_bools(reader *r, const char *what, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1) return fail(r, "%s: bool value %u is not 0 or 1", what, p[i]);
    return true;
}

static bool read_scalar(reader *r, g4_gguf_kv *kv, const char *what) {
    const uint8_t *p;
    if (!take(r, g4_gguf_value_size(kv->type), what, &p)) return false;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: kv->val.u64 = p[0]; break;
    case GGUF_TYPE_INT8: kv->val.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL:
        if (!check_bools(r, what, p, 1)) return false;
        kv->val.b = p[0];
        break;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); kv->val.u64 = v; break; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); kv->val.i64 = v; break; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); kv->val.u64 = v; break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); kv->val.i64 = v; break; }
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, p, 4); kv->val.f64 = v; break; }
    case GGUF_TYPE_UINT64: memcpy(&kv->val.u64, p, 8); break;
    case GGUF_TYPE_INT64: memcpy(&kv->val.i64, p, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(&kv->val.f64, p, 8); break;
    default: break;
    }
    return true;
}

static bool read_array(reader *r, g4_gguf_kv *kv, const char *what) {
    uint32_t t;
    if (!read_u32(r, what, &t) || !read_u64(r, what, &kv->arr_n)) return false;
    if (t >= GGUF_TYPE_COUNT) return fail(r, "%s: unknown array element type %" PRIu32, what, t);
    if (t == GGUF_TYPE_ARRAY) return fail(r, "%s: nested arrays are not supported", what);
    kv->arr_type = (enum g4_gguf_value_type)t;
    uint64_t n = kv->arr_n;
    /* Divide rather than multiply: n * element size may overflow. A string
     * element takes at least its 8-byte length. */
    uint64_t esz = t == GGUF_TYPE_STRING ? 8 : g4_gguf_value_size(kv->arr_type);
    if (n > bytes_left(r) / esz)
        return fail(r, "%s: array of %" PRIu64 " %s needs more than the %" PRIu64 " bytes left in the file",
                    what, n, g4_gguf_type_name(kv->arr_type), bytes_left(r));
    if (t == GGUF_TYPE_STRING) {
        g4_gguf_str *s = malloc(n ? n * sizeof *s : 1);
        if (!s) return fail(r, "out of memory");
        kv->arr_data = s;
        for (uint64_t i = 0; i < n; i++)
            if (!read_str(r, what, &s[i])) return false;
        return true;
    }
    const uint8_t *p;
    take(r, n * esz, what, &p);
    if (t == GGUF_TYPE_BOOL && !check_bools(r, what, p, n)) return false;
    /* malloc's alignment suits every element type, the mapping's does not */
    void *copy = malloc(n ? n * esz : 1);
    if (!copy) return fail(r, "out of memory");
    if (n) memcpy(copy, p, n * esz);
    kv->arr_data = copy;
    return true;
}

static bool read_kv(reader *r, int64_t i, g4_gguf_kv *kv) {
    char what[192]; /* a hostile key may be long: the message keeps its start */
    snprintf(what, sizeof what, "key %" PRId64, i);
    g4_gguf_str key;
    if (!read_str(r, what, &key)) return false;
    if (key.len == 0) return fail(r, "key %" PRId64 " is empty", i);
    if (!copy_name(r, what, key, &kv->key)) return false;
    snprintf(what, sizeof what, "key '%.160s'", kv->key);
    uint32_t t;
    if (!read_u32(r, what, &t)) return false;
    if (t >= GGUF_TYPE_COUNT) return fail(r, "%s: unknown value type %" PRIu32, what, t);
    kv->type = (enum g4_gguf_value_type)t;
    if (t == GGUF_TYPE_STRING) return read_str(r, what, &kv->val.str);
    if (t == GGUF_TYPE_ARRAY) return read_array(r, kv, what);
    return read_scalar(r, kv, what);
}

/* Sorts the name index and reports the first name that occurs twice. */
static bool index_names(reader *r, const void **index, const void *items, size_t item_size, int64_t n,
                        const char *kind) {
    for (int64_t i = 0; i < n; i++) index[i] = (const char *)items + (size_t)i * item_size;
    qsort(index, (size_t)n, sizeof *index, cmp_by_name);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(name_of(index[i - 1]), name_of(index[i])))
            return fail(r, "duplicate %s '%s'", kind, name_of(index[i]));
    return true;
}

static bool read_alignment(reader *r, g4_gguf_file *f) {
    f->alignment = DEFAULT_ALIGNMENT;
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, "general.alignment");
    if (!kv) return true;
    if (kv->type != GGUF_TYPE_UINT32)
        return fail(r, "key 'general.alignment' is %s, expected u32", g4_gguf_type_name(kv->type));
    uint64_t a = kv->val.u64;
    if (a == 0 || (a & (a - 1))) return fail(r, "general.alignment %" PRIu64 " is not a power of two", a);
    if (a > MAX_ALIGNMENT) return fail(r, "general.alignment %" PRIu64 " is over the cap %" PRIu64, a, MAX_ALIGNMENT);
    f->alignment = a;
    return true;
}

/* x rounded up to a multiple of the (power of two) alignment, or false when
 * that does not fit in 64 bits. */
static bool pad_up(uint64_t x, uint64_t align, uint64_t *out) {
    if (x > UINT64_MAX - (align - 1)) return false;
    *out = (x + align - 1) & ~(align - 1);
    return true;
}

/* Type, shape and byte size of one tensor (its placement is checked later,
 * once the data section is known). */
static bool check_tensor_shape(reader *r, g4_gguf_tensor *t) {
    int64_t n = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        if (t->ne[j] <= 0) return fail(r, "tensor '%s': dimension %" PRIu32 " is %" PRId64 ", must be positive", t->name, j, t->ne[j]);
        if (t->ne[j] > INT64_MAX / n)
            return fail(r, "tensor '%s': element count overflows 64 bits", t->name);
        n *= t->ne[j];
    }
    const g4_type_traits *tt = g4_type_info(t->type);
    const char *tname = g4_type_name(t->type);
    if (!strcmp(tname, "?")) return fail(r, "tensor '%s': unknown type id %" PRIu32, t->name, t->type);
    if (!tt || !tt->weights) return fail(r, "tensor '%s': type %s (%" PRIu32 ") is not supported", t->name, tname, t->type);
    if (t->ne[0] % tt->blck_size)
        return fail(r, "tensor '%s': %" PRId64 " elements per row is not a multiple of the %s block size %" PRId64,
                    t->name, t->ne[0], tname, tt->blck_size);
    /* divide first: ne[0] * type_size could overflow where the result does not */
    uint64_t blocks = (uint64_t)(t->ne[0] / tt->blck_size), bytes;
    if (blocks > UINT64_MAX / tt->type_size) return fail(r, "tensor '%s': byte size overflows 64 bits", t->name);
    bytes = blocks * tt->type_size;
    for (uint32_t j = 1; j < t->n_dims; j++) {
        if ((uint64_t)t->ne[j] > UINT64_MAX / bytes) return fail(r, "tensor '%s': byte size overflows 64 bits", t->name);
        bytes *= (uint64_t)t->ne[j];
    }
    t->nbytes = bytes;
    return true;
}

static bool read_tensor_info(reader *r, int64_t i, g4_gguf_tensor *t) {
    char what[MAX_TENSOR_NAME + 16];
    snprintf(what, sizeof what, "tensor %" PRId64 " name", i);
    g4_gguf_str name;
    if (!read_str(r, what, &name)) return false;
    if (name.len >= MAX_TENSOR_NAME)
        return fail(r, "tensor %" PRId64 ": name of %" PRIu64 " bytes is longer than %d", i, name.len, MAX_TENSOR_NAME - 1);
    if (!copy_name(r, what, name, &t->name)) return false;
    snprintf(what, sizeof what, "tensor '%s'", t->name);
    for (int j = 0; j < GGUF_MAX_DIMS; j++) t->ne[j] = 1;
    if (!read_u32(r, what, &t->n_dims)) return false;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, "tensor '%s': n_dims %" PRIu32 " is outside 1..%d", t->name, t->n_dims, GGUF_MAX_DIMS);
    for (uint32_t j = 0; j < t->n_dims; j++) {
        uint64_t v;
        if (!read_u64(r, what, &v)) return false;
        memcpy(&t->ne[j], &v, 8); /* stored unsigned; huge values become negative and are refused */
    }
    if (!read_u32(r, what, &t->type) || !read_u64(r, what, &t->offset)) return false;
    return check_tensor_shape(r, t);
}

static int cmp_by_offset(const void *a, const void *b) {
    const g4_gguf_tensor *x = *(const g4_gguf_tensor *const *)a, *y = *(const g4_gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Every tensor aligned, inside the data section including its padding, and
 * not overlapping the next one by offset. */
static bool place_tensors(reader *r, g4_gguf_file *f) {
    uint64_t data_size = f->size - f->data_offset;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        g4_gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment)
            return fail(r, "tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                        t->name, t->offset, f->alignment);
        uint64_t padded;
        if (!pad_up(t->nbytes, f->alignment, &padded))
            return fail(r, "tensor '%s': padded size of %" PRIu64 " bytes overflows 64 bits", t->name, t->nbytes);
        /* writers pad after the last tensor too, so a file without that
         * padding has been cut */
        if (t->offset > data_size || padded > data_size - t->offset)
            return fail(r, "tensor '%s': %" PRIu64 " bytes (%" PRIu64 " padded) at offset %" PRIu64
                        " run past the end of the data section (%" PRIu64 " bytes)",
                        t->name, t->nbytes, padded, t->offset, data_size);
        t->data = f->base + f->data_offset + t->offset;
    }
    const g4_gguf_tensor **by_off = malloc((f->n_tensors ? (size_t)f->n_tensors : 1) * sizeof *by_off);
    if (!by_off) return fail(r, "out of memory");
    for (int64_t i = 0; i < f->n_tensors; i++) by_off[i] = &f->tensors[i];
    qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, cmp_by_offset);
    bool ok = true;
    for (int64_t i = 1; i < f->n_tensors && ok; i++) {
        const g4_gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (b->offset - a->offset < a->nbytes)
            ok = fail(r, "tensor '%s' at offset %" PRIu64 " overlaps tensor '%s' (offset %" PRIu64 ", %" PRIu64 " bytes)",
                      b->name, b->offset, a->name, a->offset, a->nbytes);
    }
    free(by_off);
    return ok;
}

static bool read_header(reader *r, g4_gguf_file *f) {
    const uint8_t *magic;
    if (!take(r, 4, "magic", &magic)) return false;
    if (memcmp(magic, "GGUF", 4))
        return fail(r, "not a GGUF file (magic %02x %02x %02x %02x)", magic[0], magic[1], magic[2], magic[3]);
    if (!read_u32(r, "version", &f->version)) return false;
    if (f->version == 0x02000000 || f->version == 0x03000000)
        return fail(r, "byte-swapped (big-endian) file, only little-endian GGUF is supported");
    if (f->version != 2 && f->version != 3)
        return fail(r, "GGUF version %" PRIu32 " is not supported (only 2 and 3)", f->version);
    uint64_t n_tensors, n_kv;
    if (!read_u64(r, "tensor count", &n_tensors) || !read_u64(r, "key count", &n_kv)) return false;
    if (n_kv > MAX_KV) return fail(r, "key count %" PRIu64 " is over the cap %" PRIu64, n_kv, MAX_KV);
    if (n_tensors > MAX_TENSORS) return fail(r, "tensor count %" PRIu64 " is over the cap %" PRIu64, n_tensors, MAX_TENSORS);
    if (n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES > bytes_left(r))
        return fail(r, "file truncated: %" PRIu64 " keys and %" PRIu64 " tensors cannot fit in the %" PRIu64 " bytes left",
                    n_kv, n_tensors, bytes_left(r));
    f->n_kv = (int64_t)n_kv;
    f->n_tensors = (int64_t)n_tensors;
    return true;
}

static bool parse(reader *r, g4_gguf_file *f) {
    if (!read_header(r, f)) return false;
    f->kv = calloc((size_t)f->n_kv + 1, sizeof *f->kv);
    f->tensors = calloc((size_t)f->n_tensors + 1, sizeof *f->tensors);
    f->kv_by_name = calloc((size_t)f->n_kv + 1, sizeof *f->kv_by_name);
    f->tensor_by_name = calloc((size_t)f->n_tensors + 1, sizeof *f->tensor_by_name);
    if (!f->kv || !f->tensors || !f->kv_by_name || !f->tensor_by_name) return fail(r, "out of memory");
    for (int64_t i = 0; i < f->n_kv; i++)
        if (!read_kv(r, i, &f->kv[i])) return false;
    if (!index_names(r, f->kv_by_name, f->kv, sizeof *f->kv, f->n_kv, "key")) return false;
    if (!read_alignment(r, f)) return false;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (!read_tensor_info(r, i, &f->tensors[i])) return false;
    if (!index_names(r, f->tensor_by_name, f->tensors, sizeof *f->tensors, f->n_tensors, "tensor")) return false;
    /* r->pos <= size <= SIZE_MAX and alignment <= 1 MiB: no wrap here */
    pad_up(r->pos, f->alignment, &f->data_offset);
    /* llama.cpp's own vocab-only files end right after the header, unpadded */
    if (f->n_tensors == 0 && f->data_offset > f->size) f->data_offset = f->size;
    if (f->data_offset > f->size)
        return fail(r, "file truncated: the header ends at %" PRIu64 ", padding to the data section at %" PRIu64
                    " goes past the end of the file (%" PRIu64 " bytes)", r->pos, f->data_offset, f->size);
    return place_tensors(r, f);
}

void g4_gguf_close(g4_gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; f->kv && i < f->n_kv; i++) {
        free((void *)f->kv[i].key);
        if (f->kv[i].type == GGUF_TYPE_ARRAY) free((void *)f->kv[i].arr_data);
    }
    for (int64_t i = 0; f->tensors && i < f->n_tensors; i++) free((void *)f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->kv_by_name);
    free(f->tensor_by_name);
    if (f->locked) munlock(f->base, f->size);
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f->path);
    free(f);
}

/* Takes ownership of the mapping when `mapped` (released on failure too). */
static g4_gguf_file *open_bytes(const uint8_t *buf, uint64_t size, bool mapped, const char *path, char *err) {
    g4_gguf_file *f = calloc(1, sizeof *f);
    char *p = strdup(path);
    if (!f || !p) {
        if (mapped) munmap((void *)buf, size);
        free(f);
        free(p);
        set_err(err, path, "out of memory");
        return NULL;
    }
    f->path = p;
    f->base = buf;
    f->size = size;
    f->mapped = mapped;
    reader r = {buf, size, 0, path, err};
    if (!parse(&r, f)) {
        g4_gguf_close(f);
        return NULL;
    }
    return f;
}

g4_gguf_file *g4_gguf_open_memory(const void *buf, size_t size, const char *name, char *err) {
    return open_bytes(buf, size, false, name ? name : "<memory>", err);
}

/* The whole file in anonymous memory: page-aligned like a mapping, so the
 * tensors keep their alignment and repacking can still hand whole pages
 * back (madvise), and nothing depends on the file after this. */
static void *read_whole(int fd, uint64_t size, const char *path, char *err) {
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        set_err(err, path, "cannot allocate %" PRIu64 " bytes to read the file into: %s", size, strerror(errno));
        return NULL;
    }
    for (uint64_t done = 0; done < size;) {
        const size_t chunk = size - done < ((uint64_t)1 << 30) ? (size_t)(size - done) : (size_t)1 << 30;
        ssize_t got = pread(fd, (uint8_t *)m + done, chunk, (off_t)done);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            set_err(err, path, "read failed at offset %" PRIu64 ": %s", done, got < 0 ? strerror(errno) : "file shrank");
            munmap(m, size);
            return NULL;
        }
        done += (uint64_t)got;
    }
    return m;
}

g4_gguf_file *g4_gguf_open(const char *path, char *err) { return g4_gguf_open_ex(path, NULL, err); }

g4_gguf_file *g4_gguf_open_ex(const char *path, const g4_gguf_open_params *p, char *err) {
    const bool read_all = p && p->read, lock = p && p->lock;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, path, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, path, "not a regular file");
        close(fd);
        return NULL;
    }
    const uint8_t *buf = NULL;
    uint64_t size = (uint64_t)st.st_size;
    if (size > 0) { /* mmap refuses empty files; the parser reports those as truncated */
        void *m = read_all ? read_whole(fd, size, path, err) : mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (!read_all && m == MAP_FAILED) {
            set_err(err, path, "cannot map %" PRIu64 " bytes: %s", size, strerror(errno));
            m = NULL;
        }
        if (!m) {
            close(fd);
            return NULL;
        }
        buf = m;
    }
    close(fd);
    /* mlock of a mapping also reads every page in, so a locked model never
     * waits on the disk */
    if (lock && size > 0 && mlock(buf, size) != 0) {
        set_err(err, path, "cannot lock %" PRIu64 " bytes in memory (mlock: %s): the limit is RLIMIT_MEMLOCK "
                "(ulimit -l); raise it or load without locking", size, strerror(errno));
        munmap((void *)buf, size);
        return NULL;
    }
    g4_gguf_file *f = open_bytes(buf, size, size > 0, path, err); /* a failure unmaps, which unlocks */
    if (f) f->locked = lock && size > 0;
    return f;
}

const char *g4_gguf_path(const g4_gguf_file *f) { return f->path; }
uint32_t g4_gguf_version(const g4_gguf_file *f) { return f->version; }
uint64_t g4_gguf_alignment(const g4_gguf_file *f) { return f->alignment; }
uint64_t g4_gguf_data_offset(const g4_gguf_file *f) { return f->data_offset; }
uint64_t g4_gguf_file_size(const g4_gguf_file *f) { return f->size; }

int64_t g4_gguf_n_kv(const g4_gguf_file *f) { return f->n_kv; }
const g4_gguf_kv *g4_gguf_kv_at(const g4_gguf_file *f, int64_t i) { return i >= 0 && i < f->n_kv ? &f->kv[i] : NULL; }

int64_t g4_gguf_n_tensors(const g4_gguf_file *f) { return f->n_tensors; }
const g4_gguf_tensor *g4_gguf_tensor_at(const g4_gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

static const void *find_by_name(const void **index, int64_t n, const char *name) {
    const void *probe = &name; /* looks like an item: a pointer to its name */
    const void **hit = bsearch(&probe, index, (size_t)n, sizeof *index, cmp_by_name);
    return hit ? *hit : NULL;
}

const g4_gguf_kv *g4_gguf_find_kv(const g4_gguf_file *f, const char *key) { return find_by_name(f->kv_by_name, f->n_kv, key); }
const g4_gguf_tensor *g4_gguf_find_tensor(const g4_gguf_file *f, const char *name) {
    return find_by_name(f->tensor_by_name, f->n_tensors, name);
}

/* The key if present with exactly the wanted type; *rc says why not. */
static const g4_gguf_kv *typed_kv(const g4_gguf_file *f, const char *key, enum g4_gguf_value_type want, char *err, int *rc) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    *rc = !kv ? GGUF_ENOKEY : kv->type != want ? GGUF_ETYPE : GGUF_OK;
    if (*rc == GGUF_ETYPE)
        set_err(err, f->path, "key '%s' is %s, expected %s", key, g4_gguf_type_name(kv->type), g4_gguf_type_name(want));
    return *rc == GGUF_OK ? kv : NULL;
}

int g4_gguf_get_u32(const g4_gguf_file *f, const char *key, uint32_t *out, char *err) {
    int rc;
    const g4_gguf_kv *kv = typed_kv(f, key, GGUF_TYPE_UINT32, err, &rc);
    if (kv) *out = (uint32_t)kv->val.u64;
    return rc;
}

int g4_gguf_get_i32(const g4_gguf_file *f, const char *key, int32_t *out, char *err) {
    int rc;
    const g4_gguf_kv *kv = typed_kv(f, key, GGUF_TYPE_INT32, err, &rc);
    if (kv) *out = (int32_t)kv->val.i64;
    return rc;
}

int g4_gguf_get_f32(const g4_gguf_file *f, const char *key, float *out, char *err) {
    int rc;
    const g4_gguf_kv *kv = typed_kv(f, key, GGUF_TYPE_FLOAT32, err, &rc);
    if (kv) *out = (float)kv->val.f64;
    return rc;
}

int g4_gguf_get_bool(const g4_gguf_file *f, const char *key, bool *out, char *err) {
    int rc;
    const g4_gguf_kv *kv = typed_kv(f, key, GGUF_TYPE_BOOL, err, &rc);
    if (kv) *out = kv->val.b;
    return rc;
}

int g4_gguf_get_str(const g4_gguf_file *f, const char *key, g4_gguf_str *out, char *err) {
    int rc;
    const g4_gguf_kv *kv = typed_kv(f, key, GGUF_TYPE_STRING, err, &rc);
    if (kv) *out = kv->val.str;
    return rc;
}

int g4_gguf_get_arr(const g4_gguf_file *f, const char *key, enum g4_gguf_value_type elem, const void **data, uint64_t *n,
                 char *err) {
    int rc;
    const g4_gguf_kv *kv = typed_kv(f, key, GGUF_TYPE_ARRAY, err, &rc);
    if (!kv) return rc;
    if (kv->arr_type != elem) {
        set_err(err, f->path, "key '%s' is an array of %s, expected an array of %s", key, g4_gguf_type_name(kv->arr_type),
                g4_gguf_type_name(elem));
        return GGUF_ETYPE;
    }
    *data = kv->arr_data;
    *n = kv->arr_n;
    return GGUF_OK;
}
