/* The type table: which ggml type ids exist, which we can run, block sizes. */
#include "gguf/types.h"

static const char *const all_names[G4_TYPE_COUNT] = {
    [0] = "f32", [1] = "f16", [2] = "q4_0", [3] = "q4_1", [6] = "q5_0", [7] = "q5_1",
    [8] = "q8_0", [9] = "q8_1", [10] = "q2_k", [11] = "q3_k", [12] = "q4_k", [13] = "q5_k",
    [14] = "q6_k", [15] = "q8_k", [16] = "iq2_xxs", [17] = "iq2_xs", [18] = "iq3_xxs",
    [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s", [22] = "iq2_s", [23] = "iq4_xs",
    [24] = "i8", [25] = "i16", [26] = "i32", [27] = "i64", [28] = "f64", [29] = "iq1_m",
    [30] = "bf16", [34] = "tq1_0", [35] = "tq2_0", [39] = "mxfp4",
};

/* Q8_1 and Q8_K are activation formats: they never appear as weights. */
static const g4_type_traits traits[G4_TYPE_COUNT] = {
    [G4_TYPE_F32] = {"f32", 1, 4, true},
    [G4_TYPE_F16] = {"f16", 1, 2, true},
    [G4_TYPE_BF16] = {"bf16", 1, 2, true},
    [G4_TYPE_Q4_0] = {"q4_0", G4_QK, sizeof(block_q4_0), true},
    [G4_TYPE_Q4_1] = {"q4_1", G4_QK, sizeof(block_q4_1), true},
    [G4_TYPE_Q5_0] = {"q5_0", G4_QK, sizeof(block_q5_0), true},
    [G4_TYPE_Q5_1] = {"q5_1", G4_QK, sizeof(block_q5_1), true},
    [G4_TYPE_Q8_0] = {"q8_0", G4_QK, sizeof(block_q8_0), true},
    [G4_TYPE_Q8_1] = {"q8_1", G4_QK, sizeof(block_q8_1), false},
    [G4_TYPE_Q2_K] = {"q2_k", G4_QK_K, sizeof(block_q2_K), true},
    [G4_TYPE_Q3_K] = {"q3_k", G4_QK_K, sizeof(block_q3_K), true},
    [G4_TYPE_Q4_K] = {"q4_k", G4_QK_K, sizeof(block_q4_K), true},
    [G4_TYPE_Q5_K] = {"q5_k", G4_QK_K, sizeof(block_q5_K), true},
    [G4_TYPE_Q6_K] = {"q6_k", G4_QK_K, sizeof(block_q6_K), true},
    [G4_TYPE_Q8_K] = {"q8_k", G4_QK_K, sizeof(block_q8_K), false},
    [G4_TYPE_IQ4_NL] = {"iq4_nl", G4_QK, sizeof(block_iq4_nl), true},
    [G4_TYPE_IQ4_XS] = {"iq4_xs", G4_QK_K, sizeof(block_iq4_xs), true},
};

const g4_type_traits *g4_type_info(uint32_t type) {
    if (type >= G4_TYPE_COUNT || !traits[type].name) return 0;
    return &traits[type];
}

const char *g4_type_name(uint32_t type) {
    if (type >= G4_TYPE_COUNT || !all_names[type]) return "?";
    return all_names[type];
}

size_t g4_row_size(enum g4_type type, int64_t n) {
    const g4_type_traits *t = g4_type_info(type);
    return (size_t)(n / t->blck_size) * t->type_size;
}
