/* gemma4 dump FILE: the metadata and tensor table of a GGUF file, in the
 * spirit of gguf-py's gguf-dump. Arrays and long strings are abbreviated so
 * a whole vocabulary does not flood the terminal. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "kernels/formats.h"
#include "tools/commands.h"

#define SHOW_ELEMS 5    /* array elements shown */
#define SHOW_CHARS 60   /* string bytes shown */

static void usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 dump FILE\n"
            "  Prints the GGUF header, every metadata key (arrays abbreviated to their first\n"
            "  %d elements) and the tensor table: name, type, shape, offset in the data\n"
            "  section, bytes. Exits 1 with a one-line error if the file is not valid.\n",
            SHOW_ELEMS);
}

/* Quoted, control bytes escaped, cut after SHOW_CHARS bytes. */
static void print_str(g4_gguf_str s) {
    putchar('"');
    uint64_t n = s.len < SHOW_CHARS ? s.len : SHOW_CHARS;
    while (n < s.len && n > 0 && ((unsigned char)s.ptr[n] & 0xc0) == 0x80) n--; /* whole UTF-8 characters */
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n < s.len) printf("... (%" PRIu64 " bytes)", s.len);
}

/* One element of a numeric array, read from its aligned copy. */
static void print_elem(enum g4_gguf_value_type t, const void *data, uint64_t i) {
    switch (t) {
    case GGUF_TYPE_UINT8: printf("%u", ((const uint8_t *)data)[i]); break;
    case GGUF_TYPE_INT8: printf("%d", ((const int8_t *)data)[i]); break;
    case GGUF_TYPE_UINT16: printf("%u", ((const uint16_t *)data)[i]); break;
    case GGUF_TYPE_INT16: printf("%d", ((const int16_t *)data)[i]); break;
    case GGUF_TYPE_UINT32: printf("%" PRIu32, ((const uint32_t *)data)[i]); break;
    case GGUF_TYPE_INT32: printf("%" PRId32, ((const int32_t *)data)[i]); break;
    case GGUF_TYPE_FLOAT32: printf("%g", ((const float *)data)[i]); break;
    case GGUF_TYPE_BOOL: fputs(((const bool *)data)[i] ? "true" : "false", stdout); break;
    case GGUF_TYPE_UINT64: printf("%" PRIu64, ((const uint64_t *)data)[i]); break;
    case GGUF_TYPE_INT64: printf("%" PRId64, ((const int64_t *)data)[i]); break;
    case GGUF_TYPE_FLOAT64: printf("%g", ((const double *)data)[i]); break;
    case GGUF_TYPE_STRING: print_str(((const g4_gguf_str *)data)[i]); break;
    default: break;
    }
}

static void print_value(const g4_gguf_kv *kv) {
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        printf("%" PRIu64, kv->val.u64);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        printf("%" PRId64, kv->val.i64);
        break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: printf("%g", kv->val.f64); break;
    case GGUF_TYPE_BOOL: fputs(kv->val.b ? "true" : "false", stdout); break;
    case GGUF_TYPE_STRING: print_str(kv->val.str); break;
    case GGUF_TYPE_ARRAY:
        putchar('[');
        for (uint64_t i = 0; i < kv->arr_n && i < SHOW_ELEMS; i++) {
            if (i) fputs(", ", stdout);
            print_elem(kv->arr_type, kv->arr_data, i);
        }
        if (kv->arr_n > SHOW_ELEMS) printf(", ... %" PRIu64 " more", kv->arr_n - SHOW_ELEMS);
        putchar(']');
        break;
    default: break;
    }
}

static void print_tensor(int64_t i, const g4_gguf_tensor *t) {
    char shape[96];
    int n = snprintf(shape, sizeof shape, "[");
    for (uint32_t j = 0; j < t->n_dims; j++)
        n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, j ? ", " : "", t->ne[j]);
    snprintf(shape + n, sizeof shape - (size_t)n, "]");
    printf("%5" PRId64 "  %-40s %-7s %-24s %12" PRIu64 " %12" PRIu64 "\n", i, t->name, g4_type_name(t->type), shape,
           t->offset, t->nbytes);
}

int cmd_dump(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open(argv[1], err);
    if (!f) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%s: GGUF v%" PRIu32 ", %" PRIu64 " bytes, %" PRId64 " keys, %" PRId64 " tensors, alignment %" PRIu64
           ", data section at %" PRIu64 "\n",
           g4_gguf_path(f), g4_gguf_version(f), g4_gguf_file_size(f), g4_gguf_n_kv(f), g4_gguf_n_tensors(f), g4_gguf_alignment(f),
           g4_gguf_data_offset(f));
    printf("\nmetadata:\n");
    for (int64_t i = 0; i < g4_gguf_n_kv(f); i++) {
        const g4_gguf_kv *kv = g4_gguf_kv_at(f, i);
        char type[32];
        if (kv->type == GGUF_TYPE_ARRAY)
            snprintf(type, sizeof type, "%s[%" PRIu64 "]", g4_gguf_type_name(kv->arr_type), kv->arr_n);
        else
            snprintf(type, sizeof type, "%s", g4_gguf_type_name(kv->type));
        printf("%5" PRId64 "  %-48s %-14s ", i, kv->key, type);
        print_value(kv);
        putchar('\n');
    }
    printf("\ntensors:\n%5s  %-40s %-7s %-24s %12s %12s\n", "#", "name", "type", "shape", "offset", "bytes");
    for (int64_t i = 0; i < g4_gguf_n_tensors(f); i++) print_tensor(i, g4_gguf_tensor_at(f, i));
    g4_gguf_close(f);
    return 0;
}
