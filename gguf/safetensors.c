/* Safetensors reader: every header field is validated before any tensor
 * view is handed out (see safetensors.h for the list). Shards are opened
 * one mapping each; the tensor table spans them all, sorted by name. */
#include "gguf/safetensors.h"

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

#include "error.h"
#include "gguf/json.h"
#include "kernels/formats.h" /* fp16 and bf16 to f32 */

typedef struct mapped_file {
    char *path;
    const uint8_t *buf;
    size_t size;
    bool mapped; /* ours to munmap */
} mapped_file;

struct safetensors {
    mapped_file *files;
    int n_files;
    g4_safetensors_tensor *tensors;
    int64_t n_tensors, cap_tensors;
};

static void set_err(char *err, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    g4_verror(err, path, fmt, ap);
    va_end(ap);
}

static const struct {
    const char *name;
    size_t size;
    enum g4_type type; /* G4_TYPE_COUNT: not a float type we convert */
} dtypes[] = {
    {"F32", 4, G4_TYPE_F32}, {"F16", 2, G4_TYPE_F16}, {"BF16", 2, G4_TYPE_BF16}, {"F64", 8, G4_TYPE_COUNT},
    {"I64", 8, G4_TYPE_COUNT}, {"I32", 4, G4_TYPE_COUNT}, {"I16", 2, G4_TYPE_COUNT}, {"I8", 1, G4_TYPE_COUNT},
    {"U64", 8, G4_TYPE_COUNT}, {"U32", 4, G4_TYPE_COUNT}, {"U16", 2, G4_TYPE_COUNT}, {"U8", 1, G4_TYPE_COUNT},
    {"BOOL", 1, G4_TYPE_COUNT}, {"F8_E4M3", 1, G4_TYPE_COUNT}, {"F8_E5M2", 1, G4_TYPE_COUNT},
    {"F8_E8M0", 1, G4_TYPE_COUNT},
};

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const g4_safetensors_tensor *)a)->name, ((const g4_safetensors_tensor *)b)->name);
}

/* One header entry -> a tensor view, checked against the data section. */
static int parse_entry(safetensors *st, const mapped_file *f, const char *name, const g4_json *e, uint64_t data_start,
                       char *err) {
    const g4_json *dt = g4_json_get_type(e, "dtype", G4_JSON_STRING);
    const g4_json *shape = g4_json_get_type(e, "shape", G4_JSON_ARRAY);
    const g4_json *off = g4_json_get_type(e, "data_offsets", G4_JSON_ARRAY);
    if (e->type != G4_JSON_OBJECT || !dt || !shape || !off) {
        set_err(err, f->path, "tensor '%s': header entry needs \"dtype\", \"shape\" and \"data_offsets\"", name);
        return -1;
    }
    size_t di = 0, nd = sizeof dtypes / sizeof dtypes[0];
    while (di < nd && strcmp(dt->str, dtypes[di].name)) di++;
    if (di == nd) {
        set_err(err, f->path, "tensor '%s': unsupported dtype \"%.20s\"", name, dt->str);
        return -1;
    }
    if (shape->len > SAFETENSORS_MAX_DIMS) {
        set_err(err, f->path, "tensor '%s': %zu dimensions (at most %d)", name, shape->len, SAFETENSORS_MAX_DIMS);
        return -1;
    }
    if (st->n_tensors == st->cap_tensors) {
        int64_t cap = st->cap_tensors ? 2 * st->cap_tensors : 64;
        g4_safetensors_tensor *t = realloc(st->tensors, (size_t)cap * sizeof *t);
        if (!t) {
            set_err(err, f->path, "out of memory");
            return -1;
        }
        st->tensors = t, st->cap_tensors = cap;
    }
    g4_safetensors_tensor *t = &st->tensors[st->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtypes[di].name);
    t->type = dtypes[di].type;
    t->is_float = t->type != G4_TYPE_COUNT;
    t->n_dims = (uint32_t)shape->len;
    t->file = f->path;
    uint64_t n = 1;
    for (size_t i = 0; i < shape->len; i++) {
        const g4_json *d = &shape->items[i];
        if (d->type != G4_JSON_NUMBER || !d->is_int || d->integer < 0) {
            set_err(err, f->path, "tensor '%s': shape[%zu] is not a non-negative integer", name, i);
            return -1;
        }
        if (d->integer && n > (UINT64_MAX >> 4) / (uint64_t)d->integer) {
            set_err(err, f->path, "tensor '%s': element count overflows", name);
            return -1;
        }
        t->shape[i] = d->integer;
        n *= (uint64_t)d->integer;
    }
    t->n_elems = (int64_t)n;
    if (off->len != 2 || off->items[0].type != G4_JSON_NUMBER || !off->items[0].is_int ||
        off->items[1].type != G4_JSON_NUMBER || !off->items[1].is_int || off->items[0].integer < 0 ||
        off->items[1].integer < off->items[0].integer) {
        set_err(err, f->path, "tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", name);
        return -1;
    }
    uint64_t begin = (uint64_t)off->items[0].integer, end = (uint64_t)off->items[1].integer;
    t->nbytes = n * dtypes[di].size;
    if (end - begin != t->nbytes) {
        set_err(err, f->path, "tensor '%s': %" PRIu64 " bytes of data for %" PRIu64 " %s values (%" PRIu64 " bytes)", name,
                end - begin, n, dtypes[di].name, t->nbytes);
        return -1;
    }
    if (end > f->size - data_start) {
        set_err(err, f->path, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] outside the %" PRIu64 " data bytes",
                name, begin, end, (uint64_t)(f->size - data_start));
        return -1;
    }
    t->data = f->buf + data_start + begin;
    if (!(t->name = strdup(name))) {
        set_err(err, f->path, "out of memory");
        return -1;
    }
    st->n_tensors++;
    return 0;
}

typedef struct span {
    const uint8_t *begin;
    const g4_safetensors_tensor *t;
} span;

static int cmp_by_begin(const void *a, const void *b) {
    const uint8_t *x = ((const span *)a)->begin, *y = ((const span *)b)->begin;
    return (x > y) - (x < y);
}

/* Tensors first..n_tensors all come from file f: none may overlap. */
static int check_overlap(const safetensors *st, int64_t first, const mapped_file *f, char *err) {
    int64_t n = st->n_tensors - first;
    span *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) {
        set_err(err, f->path, "out of memory");
        return -1;
    }
    for (int64_t i = 0; i < n; i++) idx[i] = (span){st->tensors[first + i].data, &st->tensors[first + i]};
    if (n) qsort(idx, (size_t)n, sizeof *idx, cmp_by_begin);
    int rc = 0;
    for (int64_t i = 1; i < n && !rc; i++) {
        const g4_safetensors_tensor *a = idx[i - 1].t, *b = idx[i].t;
        if ((const uint8_t *)a->data + a->nbytes > (const uint8_t *)b->data) {
            set_err(err, f->path, "tensors '%s' and '%s' overlap", a->name, b->name);
            rc = -1;
        }
    }
    free(idx);
    return rc;
}

static int parse_file(safetensors *st, const mapped_file *f, char *err) {
    if (f->size < 8) {
        set_err(err, f->path, "file too short for a safetensors header (%zu bytes)", f->size);
        return -1;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->buf[i];
    if (hlen > f->size - 8 || hlen > SAFETENSORS_MAX_HEADER) {
        set_err(err, f->path, "header length %" PRIu64 " runs past the end of the file (%zu bytes)", hlen, f->size);
        return -1;
    }
    char jerr[G4_ERR_LEN];
    g4_json *h = g4_json_parse((const char *)f->buf + 8, (size_t)hlen, "header", jerr);
    if (!h) {
        set_err(err, f->path, "%s", jerr);
        return -1;
    }
    int rc = 0;
    int64_t first = st->n_tensors;
    if (h->type != G4_JSON_OBJECT) {
        set_err(err, f->path, "header is a JSON %s, expected an object", g4_json_type_name(h->type));
        rc = -1;
    }
    for (size_t i = 0; h->type == G4_JSON_OBJECT && i < h->len && !rc; i++) {
        if (!strcmp(h->keys[i].str, "__metadata__")) continue;
        if (strlen(h->keys[i].str) != h->keys[i].len || !h->keys[i].len) {
            set_err(err, f->path, "tensor name is empty or contains a NUL byte");
            rc = -1;
            break;
        }
        rc = parse_entry(st, f, h->keys[i].str, &h->items[i], 8 + hlen, err);
    }
    g4_json_free(h);
    return rc ? rc : check_overlap(st, first, f, err);
}

static mapped_file *add_file(safetensors *st, const char *path, char *err) {
    mapped_file *files = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *files);
    if (!files) {
        set_err(err, path, "out of memory");
        return NULL;
    }
    st->files = files;
    mapped_file *f = &files[st->n_files];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) {
        set_err(err, path, "out of memory");
        return NULL;
    }
    st->n_files++;
    return f;
}

static int map_file(mapped_file *f, char *err) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, f->path, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        set_err(err, f->path, "not a regular file");
        close(fd);
        return -1;
    }
    f->size = (size_t)sb.st_size;
    if (f->size > 0) { /* empty files are reported as too short by the parser */
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            set_err(err, f->path, "cannot map %zu bytes: %s", f->size, strerror(errno));
            close(fd);
            return -1;
        }
        f->buf = m;
        f->mapped = true;
    }
    close(fd);
    return 0;
}

/* Sorts the table and refuses a name that occurs twice (across shards). */
static int finish(safetensors *st, const char *path, char *err) {
    if (st->n_tensors) qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_by_name);
    for (int64_t i = 1; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i - 1].name, st->tensors[i].name)) {
            set_err(err, path, "tensor '%s' is stored twice (%s and %s)", st->tensors[i].name, st->tensors[i - 1].file,
                    st->tensors[i].file);
            return -1;
        }
    return 0;
}

/* model.safetensors.index.json: open every shard its weight_map names and
 * check each listed tensor is where the map says. */
static int open_sharded(safetensors *st, const char *dir, const char *index_path, char *err) {
    char path[4096];
    g4_json *idx = g4_json_parse_file(index_path, err);
    if (!idx) return -1;
    const g4_json *map = g4_json_get_type(idx, "weight_map", G4_JSON_OBJECT);
    int rc = map ? 0 : -1;
    if (!map) set_err(err, index_path, "no \"weight_map\" object");
    for (size_t i = 0; map && i < map->len && !rc; i++) {
        const g4_json *shard = &map->items[i];
        if (shard->type != G4_JSON_STRING || !shard->len || strchr(shard->str, '/') || shard->str[0] == '.' ||
            strlen(shard->str) != shard->len) {
            set_err(err, index_path, "weight_map: '%s' names an invalid shard file", map->keys[i].str);
            rc = -1;
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, shard->str);
        bool seen = false;
        for (int k = 0; k < st->n_files && !seen; k++) seen = !strcmp(st->files[k].path, path);
        if (seen) continue;
        mapped_file *f = add_file(st, path, err);
        rc = !f || map_file(f, err) || parse_file(st, f, err) ? -1 : 0;
    }
    if (!rc) rc = finish(st, index_path, err);
    for (size_t i = 0; map && i < map->len && !rc; i++) {
        const g4_safetensors_tensor *t = g4_safetensors_find(st, map->keys[i].str);
        snprintf(path, sizeof path, "%s/%s", dir, map->items[i].str);
        if (!t || strcmp(t->file, path)) {
            set_err(err, index_path, "tensor '%s' is not in %s", map->keys[i].str, map->items[i].str);
            rc = -1;
        }
    }
    g4_json_free(idx);
    return rc;
}

safetensors *g4_safetensors_open(const char *path, char *err) {
    safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        set_err(err, path, "out of memory");
        return NULL;
    }
    struct stat sb;
    char sub[4096];
    int rc;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(sub, sizeof sub, "%s/model.safetensors.index.json", path);
        if (access(sub, F_OK) == 0) {
            rc = open_sharded(st, path, sub, err);
        } else {
            snprintf(sub, sizeof sub, "%s/model.safetensors", path);
            mapped_file *f = add_file(st, sub, err);
            rc = !f || map_file(f, err) || parse_file(st, f, err) || finish(st, sub, err) ? -1 : 0;
        }
    } else {
        mapped_file *f = add_file(st, path, err);
        rc = !f || map_file(f, err) || parse_file(st, f, err) || finish(st, path, err) ? -1 : 0;
    }
    if (rc) {
        g4_safetensors_close(st);
        return NULL;
    }
    return st;
}

safetensors *g4_safetensors_open_memory(const void *buf, size_t size, const char *name, char *err) {
    safetensors *st = calloc(1, sizeof *st);
    mapped_file *f = st ? add_file(st, name, err) : NULL;
    if (f) {
        f->buf = buf;
        f->size = size;
    }
    if (!f || parse_file(st, f, err) || finish(st, name, err)) {
        if (!st) set_err(err, name, "out of memory");
        g4_safetensors_close(st);
        return NULL;
    }
    return st;
}

void g4_safetensors_close(safetensors *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].mapped) munmap((void *)st->files[i].buf, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->tensors);
    free(st->files);
    free(st);
}

int64_t g4_safetensors_n_tensors(const safetensors *st) { return st->n_tensors; }

const g4_safetensors_tensor *g4_safetensors_tensor_at(const safetensors *st, int64_t i) {
    return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const g4_safetensors_tensor *g4_safetensors_find(const safetensors *st, const char *name) {
    g4_safetensors_tensor key = {.name = name};
    if (!st->n_tensors) return NULL;
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, cmp_by_name);
}

void g4_safetensors_read_f32(const g4_safetensors_tensor *t, int64_t first, int64_t n, float *dst) {
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        if (t->type == G4_TYPE_F32) {
            memcpy(&dst[i], p + 4 * (first + i), 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * (first + i), 2);
            dst[i] = t->type == G4_TYPE_F16 ? g4_fp16_to_fp32(h) : g4_bf16_to_fp32(h);
        }
    }
}
