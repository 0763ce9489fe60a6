/* libFuzzer target for the model loader: hyperparameters, the tensor table
 * and their agreement. Any file either loads or is refused with one line
 * naming it; a model that loads must run two tokens through a session
 * without a fault (NaN logits are allowed: the sampler refuses them). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gemma4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the loader maps a path, so the input becomes an in-memory file */
    const int fd = memfd_create("fuzz_model", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) __builtin_trap();
    char path[64], err[GEMMA4_ERR_LEN];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gemma4_model *m = gemma4_load(path, err);
    if (!m) {
        if (!memchr(err, 0, sizeof err) || strchr(err, '\n') || strncmp(err, path, strlen(path))) __builtin_trap();
        close(fd);
        return 0;
    }
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 8, .n_threads = 1}, err);
    float *logits = malloc((size_t)gemma4_n_vocab(m) * sizeof *logits);
    const int32_t tokens[2] = {0, gemma4_n_vocab(m) - 1};
    if (s && logits) gemma4_eval(s, tokens, 2, logits, false, err);
    free(logits);
    gemma4_session_free(s);
    gemma4_model_free(m);
    close(fd);
    return 0;
}
