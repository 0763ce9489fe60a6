/* gemma4 quantize IN.gguf OUT.gguf TYPE [--qat]: re-quantises a GGUF whose
 * weights are F32, F16 or BF16 (a `convert --type bf16` output, say), like
 * llama-quantize: same metadata and tensor order, general.file_type
 * updated, each tensor's type by convert_tensor_type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tools/commands.h"
#include "tools/convert/convert.h"

typedef struct g4_gguf_rows {
    const g4_gguf_tensor *t;
    size_t row_bytes;
} g4_gguf_rows;

static const float *dequant_row(void *ctx, int64_t row, float *buf) {
    g4_gguf_rows *s = ctx;
    g4_dequantize_row(s->t->type, (const uint8_t *)s->t->data + (size_t)row * s->row_bytes, buf, s->t->ne[0]);
    return buf;
}

int g4_quantize_gguf(const char *in, const char *out, enum g4_type type, bool qat, bool verbose, g4_qat_stats *total,
                     char *err) {
    g4_gguf_file *f = g4_gguf_open(in, err);
    if (!f) return -1;
    g4_gguf_writer *w = g4_gguf_writer_new(out, 0, err);
    int rc = w ? 0 : -1;
    enum g4_type *types = calloc((size_t)g4_gguf_n_tensors(f) + 1, sizeof *types);
    if (!types) snprintf(err, G4_ERR_LEN, "out of memory"), rc = -1;
    for (int64_t i = 0; i < g4_gguf_n_kv(f) && !rc; i++) {
        const g4_gguf_kv *kv = g4_gguf_kv_at(f, i);
        if (!strcmp(kv->key, "general.file_type")) rc = g4_gguf_writer_set_u32(w, kv->key, convert_file_type(type), err);
        else if (strcmp(kv->key, "general.alignment")) rc = g4_gguf_writer_copy_kv(w, kv, err); /* general.alignment is the writer's business */
    }
    if (!rc && !g4_gguf_find_kv(f, "general.file_type")) rc = g4_gguf_writer_set_u32(w, "general.file_type", convert_file_type(type), err);
    for (int64_t i = 0; i < g4_gguf_n_tensors(f) && !rc; i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        types[i] = convert_tensor_type(t->name, t->n_dims, t->ne, type);
        if (t->type != types[i] && t->type != G4_TYPE_F32 && t->type != G4_TYPE_F16 && t->type != G4_TYPE_BF16) {
            snprintf(err, G4_ERR_LEN, "%.300s: tensor '%s' is %s; only F32, F16 and BF16 tensors can be re-quantised", in,
                     t->name, g4_type_name(t->type));
            rc = -1;
        }
        if (!rc) rc = g4_gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, t->ne, err);
    }
    rc = rc || g4_gguf_writer_begin(w, err);
    g4_qat_stats sum = {0};
    for (int64_t i = 0; i < g4_gguf_n_tensors(f) && !rc; i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        if (t->type == types[i]) { /* already right: bytes as they are */
            rc = g4_gguf_writer_write(w, t->data, t->nbytes, err);
            continue;
        }
        g4_gguf_rows s = {t, g4_row_size(t->type, t->ne[0])};
        g4_qat_stats ts = {0};
        if (verbose) fprintf(stderr, "\rquantize: [%lld/%lld] %-40s", (long long)i + 1, (long long)g4_gguf_n_tensors(f), t->name);
        rc = convert_write_tensor(w, types[i], t->ne, dequant_row, &s, t->type, qat, &ts, err);
        if (verbose && ts.blocks) fputc('\n', stderr), g4_qat_stats_print(t->name, &ts);
        g4_qat_stats_add(&sum, &ts);
    }
    rc = rc || g4_gguf_writer_finish(w, err);
    if (!rc && verbose) {
        fprintf(stderr, "\nquantize: wrote %s (%s)\n", out, g4_type_name(type));
        if (qat) g4_qat_stats_print("overall", &sum);
    }
    if (total) *total = sum;
    free(types);
    g4_gguf_writer_free(w);
    g4_gguf_close(f);
    return rc ? -1 : 0;
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int n_pos = 0;
    bool qat = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: gemma4 quantize IN.gguf OUT.gguf TYPE [--qat]\n"
                   "  TYPE: f32 f16 bf16 q8_0 q4_0 q4_k q6_k. Sources must hold F32/F16/BF16 weights.\n"
                   "  1-D tensors stay F32; the router and the PLE projection F16 (as llama-quantize).\n"
                   "  --qat: QAT-grid recovery for Q4_0 tensors (see gemma4 convert --help).\n");
            return 0;
        }
        if (!strcmp(argv[i], "--qat")) qat = true;
        else if (n_pos < 3) pos[n_pos++] = argv[i];
        else n_pos = 4;
    }
    enum g4_type type;
    if (n_pos != 3) {
        fprintf(stderr, "usage: gemma4 quantize IN.gguf OUT.gguf TYPE [--qat]\n");
        return 2;
    }
    if (convert_parse_type(pos[2], &type)) {
        fprintf(stderr, "gemma4: quantize: unknown type '%s'\n", pos[2]);
        return 2;
    }
    char err[G4_ERR_LEN];
    if (g4_quantize_gguf(pos[0], pos[1], type, qat, true, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}
