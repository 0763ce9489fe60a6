/* The smallest complete program on gemma4.h: load a model, tokenize a
 * prompt, then evaluate and sample one token at a time, printing each piece.
 *   simple MODEL.gguf PROMPT [N]
 * Build it against an installed gemma4 with:
 *   cc simple.c $(pkg-config --cflags --libs gemma4) -o simple */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4.h"

#define MAX_PROMPT 1024

int main(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "usage: %s MODEL.gguf PROMPT [N]\n", argv[0]), 2;
    const int n_predict = argc > 3 ? atoi(argv[3]) : 32;
    char err[GEMMA4_ERR_LEN] = "", piece[256];
    int32_t ids[MAX_PROMPT], n = -1;
    gemma4_model *m = gemma4_load(argv[1], err);
    gemma4_session *s = m ? gemma4_session_new(m, NULL, err) : NULL; /* NULL: default parameters */
    gemma4_sampling params = {0};
    if (s) {
        n = gemma4_tokenize(m, argv[2], strlen(argv[2]), true, false, ids, MAX_PROMPT, err);
        if (n > MAX_PROMPT) n = -1, snprintf(err, sizeof err, "the prompt is longer than %d tokens", MAX_PROMPT);
        params = gemma4_sampling_defaults(m); /* the model's own, else Gemma 4's */
    }
    /* with the model: its suppressed tokens are never sampled */
    gemma4_sampler *smp = n > 0 ? gemma4_sampler_init(m, &params, err) : NULL;
    if (smp) gemma4_sampler_accept(smp, ids, n); /* the prompt counts for the penalties, as in llama.cpp */
    float *logits = smp ? malloc((size_t)gemma4_n_vocab(m) * sizeof *logits) : NULL;
    int generated = 0, rc = logits ? 0 : 1;
    while (!rc && generated < n_predict && !(rc = gemma4_eval(s, ids, n, logits, false, err))) {
        ids[0] = gemma4_sample(smp, logits), n = 1; /* the next eval feeds just this token */
        if (gemma4_token_is_eog(m, ids[0])) break;
        const size_t len = gemma4_token_to_piece(m, ids[0], false, piece, sizeof piece);
        fwrite(piece, 1, len <= sizeof piece ? len : 0, stdout);
        fflush(stdout);
        generated++;
    }
    if (rc) fprintf(stderr, "%s\n", *err ? err : "out of memory");
    else fprintf(stderr, "\n%d tokens\n", generated);
    free(logits);
    gemma4_sampler_free(smp);
    gemma4_session_free(s);
    gemma4_model_free(m);
    return rc ? 1 : 0;
}
