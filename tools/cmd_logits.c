/* gemma4 logits: raw logits of every position, little-endian f32,
 * n_tokens rows of n_vocab: the layout of the fixture reference files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4_internal.h"
#include "tools/cli.h"
#include "tools/commands.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 logits -m FILE (--tokens ID,ID,... | --text TEXT) -o OUT.bin [options]\n"
            "  -m FILE         model (GGUF)\n"
            "  --tokens LIST   comma-separated token ids, fed as given (no BOS added)\n"
            "  --text TEXT     tokenize TEXT first (BOS added, special tokens parsed)\n"
            "  -o OUT          output file, '-' for stdout\n"
            "  --ubatch N      tokens per forward call; 1 = the decode path (default: all at once)\n"
            "  -t N            threads (default: number of cores)\n"
            "  --no-mmap, --mlock  read the model into memory; lock it in RAM\n"
            "  -ctk TYPE       KV cache type of K: f32, f16, q8_0 (default: f32, the fixtures' setting)\n"
            "  -ctv TYPE       KV cache type of V (default: f32)\n");
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL, *text = NULL, *out_path = NULL;
    int32_t ubatch = 0, threads = 0;
    gemma4_kv_type type_k = GEMMA4_KV_F32, type_v = GEMMA4_KV_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        if (cli_load_option(a)) continue; /* --no-mmap, --mlock */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return fprintf(stderr, "gemma4 logits: %s needs a value\n", a), 2;
        i++;
        if (!strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "--tokens")) tokens = v;
        else if (!strcmp(a, "--text")) text = v;
        else if (!strcmp(a, "-o")) out_path = v;
        else if (!strcmp(a, "--ubatch")) { if (cli_int(v, 1, 1 << 20, &ubatch, "--ubatch")) return 2; }
        else if (!strcmp(a, "-t")) { if (cli_int(v, 1, 1024, &threads, "-t")) return 2; }
        else if (!strcmp(a, "-ctk") || !strcmp(a, "-ctv")) {
            if (gemma4_kv_type_from_name(v, a[3] == 'k' ? &type_k : &type_v))
                return fprintf(stderr, "gemma4: bad value for %s: '%s' (f32, f16, q8_0)\n", a, v), 2;
        }
        else return fprintf(stderr, "gemma4 logits: unknown option '%s'\n", a), usage(stderr), 2;
    }
    if (!model || !out_path || !tokens == !text)
        return fprintf(stderr, "gemma4 logits: need -m, -o and one of --tokens / --text\n"), usage(stderr), 2;

    char err[G4_ERR_LEN];
    gemma4_model *m = cli_load(model, err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    int32_t *ids = NULL;
    int64_t n = tokens ? cli_parse_ids(tokens, &ids) : g4_tokenize(g4_model_vocab(m), text, strlen(text), true, true, &ids, err);
    int rc = 1;
    gemma4_session *s = NULL;
    float *logits = NULL;
    FILE *out = NULL;
    if (n <= 0) {
        fprintf(stderr, "gemma4 logits: %s\n", tokens ? "--tokens must be a comma-separated list of ids" : n < 0 ? err : "no tokens");
        goto done;
    }
    gemma4_session_params sp = {.n_ctx = (int32_t)n, .n_threads = threads, .n_ubatch = ubatch, .type_k = type_k, .type_v = type_v};
    cli_session_env(&sp);
    s = gemma4_session_new(m, &sp, err);
    logits = malloc((size_t)n * (size_t)gemma4_n_vocab(m) * sizeof *logits);
    if (!s || !logits) {
        fprintf(stderr, "%s\n", s ? "gemma4 logits: out of memory" : err);
        goto done;
    }
    if (gemma4_eval(s, ids, (int32_t)n, logits, true, err)) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    out = strcmp(out_path, "-") ? fopen(out_path, "wb") : stdout;
    if (!out) {
        fprintf(stderr, "gemma4 logits: cannot write %s\n", out_path);
        goto done;
    }
    /* f32 is stored as is: every supported target is little-endian */
    size_t count = (size_t)n * (size_t)gemma4_n_vocab(m);
    rc = fwrite(logits, sizeof *logits, count, out) == count && fflush(out) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "gemma4 logits: write to %s failed\n", out_path);
done:
    if (out && out != stdout) fclose(out);
    free(logits);
    free(ids);
    gemma4_session_free(s);
    gemma4_model_free(m);
    return rc;
}
