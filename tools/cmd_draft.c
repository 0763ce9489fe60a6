/* gemma4 draft: what an MTP drafter proposes after a prompt, for comparison
 * with llama.cpp (`llamacpp-bench mtp`): the target reads the prompt, its
 * greedy next token t0 and its hidden state at the last position start the
 * drafter, which runs K greedy steps. Writes the drafter's logits of every
 * step, little-endian f32 [K][n_vocab], and prints t0 and the drafted ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4_internal.h"
#include "tools/cli.h"
#include "tools/commands.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 draft -m TARGET -md DRAFTER --tokens ID,ID,... --k K -o OUT.f32 [options]\n"
            "  -m FILE          target model (GGUF)\n"
            "  -md, --model-draft FILE  its MTP drafter (GGUF, architecture gemma4-assistant)\n"
            "  --tokens LIST    the prompt: comma-separated token ids, fed as given (no BOS added)\n"
            "  --k K            draft steps (default 4)\n"
            "  -o OUT           drafter logits, [K][n_vocab] f32; '-' for stdout\n"
            "  -t N             threads (default: number of cores)\n"
            "  -ctk TYPE, -ctv TYPE  KV cache types: f32 (default), f16, q8_0\n"
            "  --no-mmap, --mlock  read the model into memory; lock it in RAM\n"
            "prints \"t0 T\" and \"drafted D1,D2,...\" on stderr.\n");
}

int cmd_draft(int argc, char **argv) {
    const char *model = NULL, *drafter = NULL, *tokens = NULL, *out_path = NULL;
    int32_t k = 4, threads = 0;
    gemma4_kv_type type_k = GEMMA4_KV_F32, type_v = GEMMA4_KV_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        if (cli_load_option(a)) continue; /* --no-mmap, --mlock */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return fprintf(stderr, "gemma4 draft: %s needs a value\n", a), 2;
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "-md") || !strcmp(a, "--model-draft")) drafter = v;
        else if (!strcmp(a, "--tokens")) tokens = v;
        else if (!strcmp(a, "-o")) out_path = v;
        else if (!strcmp(a, "--k")) { if (cli_int(v, 1, GEMMA4_DRAFT_CAP, &k, "--k")) return 2; }
        else if (!strcmp(a, "-t")) { if (cli_int(v, 1, 1024, &threads, "-t")) return 2; }
        else if (!strcmp(a, "-ctk") || !strcmp(a, "-ctv")) {
            if (gemma4_kv_type_from_name(v, a[3] == 'k' ? &type_k : &type_v))
                return fprintf(stderr, "gemma4 draft: bad value for %s: '%s' (f32, f16, q8_0)\n", a, v), 2;
        }
        else return fprintf(stderr, "gemma4 draft: unknown option '%s'\n", a), usage(stderr), 2;
    }
    if (!model || !drafter || !tokens || !out_path)
        return fprintf(stderr, "gemma4 draft: need -m, -md, --tokens and -o\n"), usage(stderr), 2;

    char err[G4_ERR_LEN];
    int rc = 1;
    int32_t *ids = NULL, *draft = NULL;
    float *logits = NULL, *hidden = NULL, *out = NULL;
    gemma4_session *s = NULL;
    gemma4_drafter *d = NULL;
    FILE *f = NULL;
    gemma4_model *m = cli_load(model, err);
    if (!m || !(d = gemma4_drafter_load(drafter, m, err))) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    const int64_t n = cli_parse_ids(tokens, &ids);
    if (n <= 0) {
        fprintf(stderr, "gemma4 draft: --tokens must be a comma-separated list of ids\n");
        goto done;
    }
    gemma4_info info;
    gemma4_model_info(m, &info);
    const size_t V = (size_t)info.n_vocab;
    gemma4_session_params sp = {.n_ctx = (int32_t)n + 1, .n_threads = threads, .type_k = type_k, .type_v = type_v};
    cli_session_env(&sp);
    s = gemma4_session_new(m, &sp, err);
    logits = malloc(V * sizeof *logits);
    hidden = malloc((size_t)info.n_embd * sizeof *hidden);
    out = malloc((size_t)k * V * sizeof *out);
    draft = malloc((size_t)k * sizeof *draft);
    if (!s || !logits || !hidden || !out || !draft) {
        fprintf(stderr, "%s\n", s ? "gemma4 draft: out of memory" : err);
        goto done;
    }
    /* the prompt, with the logits and hidden state of its last position */
    bool *want = calloc((size_t)n, sizeof *want);
    if (want) want[n - 1] = true;
    const int dec = want ? gemma4_decode_hidden(s, (int32_t)n, ids, NULL, want, logits, hidden, err) : -1;
    free(want);
    if (dec) {
        fprintf(stderr, "%s\n", want ? err : "gemma4 draft: out of memory");
        goto done;
    }
    int32_t t0 = 0; /* greedy: the first of equal maxima, as llama.cpp's reference driver */
    for (size_t i = 1; i < V; i++)
        if (logits[i] > logits[t0]) t0 = (int32_t)i;
    if (gemma4_drafter_draft(d, s, 0, t0, hidden, k, draft, out, err) < 0) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    fprintf(stderr, "t0 %d\ndrafted ", t0);
    for (int32_t i = 0; i < k; i++) fprintf(stderr, i ? ",%d" : "%d", draft[i]);
    fputc('\n', stderr);
    f = strcmp(out_path, "-") ? fopen(out_path, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "gemma4 draft: cannot write %s\n", out_path);
        goto done;
    }
    /* f32 is stored as is: every supported target is little-endian */
    rc = fwrite(out, sizeof *out, (size_t)k * V, f) == (size_t)k * V && fflush(f) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "gemma4 draft: write to %s failed\n", out_path);
done:
    if (f && f != stdout) fclose(f);
    free(ids);
    free(draft);
    free(logits);
    free(hidden);
    free(out);
    gemma4_session_free(s);
    gemma4_drafter_free(d);
    gemma4_model_free(m);
    return rc;
}
