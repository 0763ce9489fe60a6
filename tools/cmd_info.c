/* gemma4 info: what the loader derived from a model file, layer by layer,
 * and the memory a session of -c positions needs. */
#include <stdio.h>
#include <string.h>

#include "gemma4.h"
#include "tools/cli.h"
#include "tools/commands.h"

static void usage(FILE *out) {
    fprintf(out, "usage: gemma4 info -m FILE [-c CTX]\n"
                 "  -m FILE   model (GGUF)\n"
                 "  -c CTX    context positions to size the KV cache for (default: the model's)\n");
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    int32_t n_ctx = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout), 0;
        if (i + 1 >= argc) return fprintf(stderr, "gemma4 info: %s needs a value\n", argv[i]), 2;
        if (!strcmp(argv[i], "-m")) model = argv[++i];
        else if (!strcmp(argv[i], "-c")) { if (cli_int(argv[++i], 1, INT32_MAX, &n_ctx, "-c")) return 2; }
        else return fprintf(stderr, "gemma4 info: unknown option '%s'\n", argv[i]), usage(stderr), 2;
    }
    if (!model) return usage(stderr), 2;
    char err[G4_ERR_LEN];
    gemma4_model *m = gemma4_load(model, err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    gemma4_info in;
    gemma4_model_info(m, &in);
    if (!n_ctx) n_ctx = in.n_ctx_train;

    printf("model        %s\nvariant      %s\n", model, gemma4_variant(m));
    printf("n_embd %d, n_layer %d, n_head %d, n_vocab %d, context %d, sliding window %d\n", in.n_embd, in.n_layer,
           in.n_head, in.n_vocab, in.n_ctx_train, in.n_swa);
    printf("per-layer embedding %d, KV-shared tail %d layers, rms eps %g, final softcap %g\n", in.n_embd_per_layer,
           in.n_kv_shared, in.rms_eps, in.softcap);
    if (in.n_expert) printf("experts %d, used %d, expert FFN %d\n", in.n_expert, in.n_expert_used, in.n_ff_exp);
    printf("\nlayer type  head_dim kv_heads n_rot rope_base  kv_from  V     ffn          out_scale\n");
    for (int32_t l = 0; l < in.n_layer; l++) {
        gemma4_layer_info li;
        gemma4_layer_info_get(m, l, &li);
        char kv[16], ffn[32];
        snprintf(kv, sizeof kv, li.has_kv ? "own" : "L%d", li.kv_src);
        if (li.moe) snprintf(ffn, sizeof ffn, "%d+moe", li.n_ff);
        else snprintf(ffn, sizeof ffn, "%d", li.n_ff);
        printf("%5d %-5s %8d %8d %5d %9g  %-7s  %-5s %-12s %.4f\n", l, li.swa ? "swa" : "full", li.head_dim,
               li.n_head_kv, li.n_rot, li.rope_base, kv, li.has_v ? "own" : "=K", ffn, li.out_scale);
    }
    const uint64_t kv = in.kv_bytes_per_token * (uint64_t)n_ctx;
    printf("\nweights      %.3f GiB (mapped from the file)\n", gib(in.weight_bytes));
    printf("KV cache     %llu bytes/token (f32), %.3f GiB at -c %d\n", (unsigned long long)in.kv_bytes_per_token,
           gib(kv), n_ctx);
    printf("total        %.3f GiB + activations\n", gib(in.weight_bytes + kv));
    gemma4_model_free(m);
    return 0;
}
