/* gemma4 info: what the loader derived from a model file, layer by layer,
 * and the memory a session of -c positions needs. */
#include <stdio.h>
#include <string.h>

#include "gemma4_internal.h"
#include "tools/cli.h"
#include "tools/commands.h"

static void usage(FILE *out) {
    fprintf(out, "usage: gemma4 info -m FILE [-c CTX] [-ctk TYPE] [-ctv TYPE]\n"
                 "  -m FILE   model (GGUF)\n"
                 "  -c CTX    context positions to size the KV cache for (default: the model's)\n"
                 "  -ctk TYPE KV cache type of K: f32, f16, q8_0 (default: f16, as run and chat)\n"
                 "  -ctv TYPE KV cache type of V (default: f16)\n"
                 "  --no-mmap, --mlock  read the model into memory; lock it in RAM\n");
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

/* llama.cpp's cache for one sequence (llama-kv-cache-iswa.cpp, default
 * n_ubatch 512): full layers get n_ctx cells, sliding layers window +
 * n_ubatch, both padded to 256. */
static uint64_t llama_cpp_bytes(const gemma4_kv_plan *p, int64_t n_ctx) {
    const int64_t pad = 256, full = (n_ctx + pad - 1) / pad * pad;
    int64_t swa = p->n_swa + 512 < n_ctx ? p->n_swa + 512 : n_ctx;
    swa = (swa + pad - 1) / pad * pad;
    return (uint64_t)full * p->bytes_per_token[G4_KV_FULL] + (uint64_t)swa * p->bytes_per_token[G4_KV_SWA];
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    int32_t n_ctx = 0;
    gemma4_session_params sp = {.type_k = GEMMA4_KV_F16, .type_v = GEMMA4_KV_F16};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout), 0;
        if (cli_load_option(argv[i])) continue; /* --no-mmap, --mlock */
        if (i + 1 >= argc) return fprintf(stderr, "gemma4 info: %s needs a value\n", argv[i]), 2;
        if (!strcmp(argv[i], "-m")) model = argv[++i];
        else if (!strcmp(argv[i], "-c")) { if (cli_int(argv[++i], 1, INT32_MAX, &n_ctx, "-c")) return 2; }
        else if (!strcmp(argv[i], "-ctk") || !strcmp(argv[i], "-ctv")) {
            const char *name = argv[i], *v = argv[++i];
            if (gemma4_kv_type_from_name(v, name[3] == 'k' ? &sp.type_k : &sp.type_v))
                return fprintf(stderr, "gemma4: bad value for %s: '%s' (f32, f16, q8_0)\n", name, v), 2;
        }
        else return fprintf(stderr, "gemma4 info: unknown option '%s'\n", argv[i]), usage(stderr), 2;
    }
    if (!model) return usage(stderr), 2;
    char err[G4_ERR_LEN];
    gemma4_model *m = cli_load(model, err);
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
    gemma4_kv_plan kp;
    if (gemma4_kv_plan_get(m, &sp, n_ctx, &kp, err)) return fprintf(stderr, "%s\n", err), gemma4_model_free(m), 1;
    const uint64_t kv = kp.seq_bytes, llama = llama_cpp_bytes(&kp, n_ctx);
    printf("\nweights      %.3f GiB (mapped from the file)\n", gib(in.weight_bytes));
    printf("KV cache     %s K, %s V; pages of %d positions: %llu bytes sliding, %llu bytes global\n",
           g4_type_name(sp.type_k), g4_type_name(sp.type_v), kp.page_size,
           (unsigned long long)kp.page_bytes[G4_KV_SWA], (unsigned long long)kp.page_bytes[G4_KV_FULL]);
    printf("  per token  %llu bytes in the global layers (every position), %llu in the sliding layers\n"
           "             (the window of %d and up to two pages are held)\n",
           (unsigned long long)kp.bytes_per_token[G4_KV_FULL], (unsigned long long)kp.bytes_per_token[G4_KV_SWA], kp.n_swa);
    printf("  at -c %-5d %.3f GiB per sequence (llama.cpp allocates %.3f GiB)\n", n_ctx, gib(kv), gib(llama));
    printf("total        %.3f GiB + activations\n", gib(in.weight_bytes + kv));
    gemma4_model_free(m);
    return 0;
}
