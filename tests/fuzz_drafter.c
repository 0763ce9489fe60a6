/* libFuzzer target for the MTP drafter loader (drafter_load.c) and its
 * forward pass (drafter.c). The target is a micro dense model written once
 * by mkmodel's code (the shape the seeds in tests/corpus/fuzz_drafter/ were
 * made for); each input is a drafter file. It either loads or is refused
 * with one line naming it; a drafter that loads must draft two steps after
 * a three-token prompt without a fault (NaN logits are allowed).
 * Seeds: micro-drafter.gguf, written by the development tool gen_assistant.py
 * for that target (`--n-embd 16 --n-layer 2 --layer-types SF --n-head 2
 * --n-ff 32 --seed 5`), and micro-drafter-masked.gguf, the same with a
 * centroid-masked head added (30 random centroids, a random ordering). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gemma4.h"
#include "tools/synth/mkmodel.h"

static gemma4_model *target;

/* tiny-dense cut to 2 layers (SF), width 64, 300 tokens: the seeds' target */
static gemma4_model *micro_target(void) {
    static const char *const set[] = {"n_layer=2", "layer_types=SF", "n_embd=64", "vocab_size=300", "n_ff=64",
                                       "n_head=2", "head_dim_swa=32", "head_dim_full=64"};
    char err[GEMMA4_ERR_LEN], path[] = "/tmp/fuzz_drafter_target_XXXXXX";
    g4_shape sh;
    const int fd = mkstemp(path);
    if (fd < 0 || g4_shape_preset("tiny-dense", &sh, err)) __builtin_trap();
    close(fd);
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        if (g4_shape_set(&sh, set[i], err)) __builtin_trap();
    if (g4_shape_finalize(&sh, err) || g4_mkmodel_write(&sh, G4_TYPE_F32, sh.seed, path, false, err)) __builtin_trap();
    gemma4_model *m = gemma4_load(path, err); /* mapped: the file can go */
    unlink(path);
    if (!m) __builtin_trap();
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!target) target = micro_target();
    const int fd = memfd_create("fuzz_drafter", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) __builtin_trap();
    char path[64], err[GEMMA4_ERR_LEN];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gemma4_drafter *d = gemma4_drafter_load(path, target, err);
    if (!d) {
        if (!memchr(err, 0, sizeof err) || strchr(err, '\n') || strncmp(err, path, strlen(path))) __builtin_trap();
        close(fd);
        return 0;
    }
    gemma4_session *s = gemma4_session_new(target, &(gemma4_session_params){.n_ctx = 8, .n_threads = 1}, err);
    gemma4_info info;
    gemma4_model_info(target, &info);
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits), *hidden = malloc((size_t)info.n_embd * sizeof *hidden);
    float *dl = malloc(2 * (size_t)info.n_vocab * sizeof *dl);
    const int32_t prompt[3] = {2, 7, info.n_vocab - 1};
    const bool want[3] = {false, false, true};
    int32_t draft[2];
    if (s && logits && hidden && dl && !gemma4_decode_hidden(s, 3, prompt, NULL, want, logits, hidden, err))
        gemma4_drafter_draft(d, s, 0, 5, hidden, 2, draft, dl, err);
    free(logits);
    free(hidden);
    free(dl);
    gemma4_session_free(s);
    gemma4_drafter_free(d);
    close(fd);
    return 0;
}
