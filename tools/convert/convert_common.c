/* Output type rules and tensor streaming shared by convert and quantize. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/convert/convert.h"
#include "tools/synth/model_shapes.h"

static const struct {
    const char *name;
    enum g4_type type;
    uint32_t ftype; /* llama_ftype */
} out_types[] = {
    {"f32", G4_TYPE_F32, 0}, {"f16", G4_TYPE_F16, 1}, {"bf16", G4_TYPE_BF16, 32}, {"q8_0", G4_TYPE_Q8_0, 7},
    {"q4_0", G4_TYPE_Q4_0, 2}, {"q4_k", G4_TYPE_Q4_K, 14}, {"q6_k", G4_TYPE_Q6_K, 18},
};
#define N_OUT_TYPES (sizeof out_types / sizeof out_types[0])

int convert_parse_type(const char *s, enum g4_type *type) {
    for (size_t i = 0; i < N_OUT_TYPES; i++)
        if (!strcmp(s, out_types[i].name)) {
            *type = out_types[i].type;
            return 0;
        }
    return -1;
}

uint32_t convert_file_type(enum g4_type type) {
    for (size_t i = 0; i < N_OUT_TYPES; i++)
        if (out_types[i].type == type) return out_types[i].ftype;
    return 0;
}

enum g4_type convert_tensor_type(const char *name, uint32_t n_dims, const int64_t *ne, enum g4_type file_type) {
    if (n_dims < 2) return G4_TYPE_F32;
    if (file_type == G4_TYPE_BF16) return file_type; /* g4_shape_tensor_type knows F32 and F16 as float types */
    g4_tensor_spec spec = {.n_dims = n_dims};
    snprintf(spec.name, sizeof spec.name, "%s", name);
    memcpy(spec.ne, ne, sizeof spec.ne);
    return g4_shape_tensor_type(&spec, file_type);
}

int convert_write_tensor(g4_gguf_writer *w, enum g4_type type, const int64_t *ne, convert_row_fn row, void *ctx,
                         enum g4_type src, bool qat, g4_qat_stats *st, char *err) {
    const int64_t n_rows = ne[1] * ne[2] * ne[3];
    const size_t row_bytes = g4_row_size(type, ne[0]);
    float *buf = malloc((size_t)ne[0] * sizeof *buf);
    void *out = malloc(row_bytes);
    int rc = buf && out ? 0 : -1;
    if (rc) snprintf(err, G4_ERR_LEN, "out of memory for a row of %lld values", (long long)ne[0]);
    for (int64_t r = 0; r < n_rows && !rc; r++) {
        const float *x = row(ctx, r, buf);
        if (qat && type == G4_TYPE_Q4_0) g4_qat_quantize_q4_0(x, ne[0], src, out, st);
        else g4_quantize_row(type, x, out, ne[0]);
        rc = g4_gguf_writer_write(w, out, row_bytes, err);
    }
    free(buf);
    free(out);
    return rc;
}
