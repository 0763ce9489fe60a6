/* gemma4 bench: prompt processing and generation speed, llama-bench style,
 * set against what this machine can do at most.
 *
 * As llama-bench: pp is one gemma4_eval of -p random token ids (BOS first)
 * on an empty cache; tg is -n single-token evals starting from an empty
 * cache; each test runs once to warm up (tg: one token) and then -r timed
 * times, the cache emptied before each. The limits are measured first, with
 * the model not yet mapped: read bandwidth from tools/bench/membw.c for every
 * thread count, and the clock for the FP32 peak estimate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gemma4_internal.h"
#include "kernels/kernels.h"
#include "tools/bench/bench_report.h"
#include "tools/bench/cmd_bench_spec.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/bench/membw.h"

#define MAX_THREAD_COUNTS 16
#define PROBE_BYTES ((size_t)512 << 20) /* far beyond any last-level cache */
#define PROBE_PASSES 10

typedef struct opts {
    const char *model;
    int32_t n_prompt, n_gen, reps;
    int32_t threads[MAX_THREAD_COUNTS];
    int n_threads;
    bool json;
    bench_spec_opts spec; /* n_lens > 0: the speculative comparison instead */
} opts;

static void usage(FILE *out) {
    fprintf(out, "usage: gemma4 bench -m FILE [-p 512] [-n 128] [-r 5] [-t N[,N...]] [-o md|json]\n"
                 "  -m FILE   model (GGUF)\n"
                 "  -p N      prompt tokens of the pp test, one eval (default 512; 0 = skip)\n"
                 "  -n N      tokens of the tg test, one eval each (default 128; 0 = skip)\n"
                 "  -r N      timed repetitions after one warm-up (default 5, at most %d)\n"
                 "  -t LIST   thread counts, e.g. 1,2 (default: number of cores)\n"
                 "  --no-mmap, --mlock  read the model into memory; lock it in RAM\n"
                 "  -o FMT    md (table, default) or json (array of llama-bench style objects)\n"
                 "  --draft-max LIST  instead: greedy decoding of -n tokens with speculation,\n"
                 "            these draft lengths (e.g. 2,4,8), against plain decoding\n"
                 "  --draft SRC  lookup (prompt lookup), oracle (always right) or all (default)\n"
                 "  -md FILE  also an MTP drafter (--model-draft)\n"
                 "GEMMA4_ISA=scalar|avx2|avx512|neon picks the kernels.\n",
            BENCH_MAX_REPS);
}

/* "2,4,8" into the draft lengths */
static int parse_lens(const char *v, bench_spec_opts *o) {
    for (o->n_lens = 0; o->n_lens < BENCH_SPEC_MAX_LENS;) {
        char num[16];
        size_t len = strcspn(v, ",");
        if (len >= sizeof num) len = sizeof num - 1;
        memcpy(num, v, len);
        num[len] = 0;
        if (cli_int(num, 1, GEMMA4_DRAFT_CAP, &o->draft_max[o->n_lens++], "--draft-max")) return -1;
        v += strcspn(v, ",");
        if (!*v++) return 0;
    }
    fprintf(stderr, "gemma4 bench: --draft-max: at most %d lengths\n", BENCH_SPEC_MAX_LENS);
    return -1;
}

static int parse_threads(const char *v, opts *o) {
    const char *p = v;
    for (o->n_threads = 0; o->n_threads < MAX_THREAD_COUNTS;) {
        char num[16];
        size_t len = strcspn(p, ",");
        if (len >= sizeof num) len = sizeof num - 1; /* too long for a valid count: cli_int rejects it */
        memcpy(num, p, len);
        num[len] = 0;
        if (cli_int(num, 1, 1024, &o->threads[o->n_threads++], "-t")) return -1;
        p += strcspn(p, ",");
        if (!*p) return 0;
        p++;
    }
    fprintf(stderr, "gemma4 bench: -t: at most %d thread counts\n", MAX_THREAD_COUNTS);
    return -1;
}

/* 0, 1 for --help, 2 for a usage error */
static int parse(int argc, char **argv, opts *o) {
    *o = (opts){.n_prompt = 512, .n_gen = 128, .reps = 5, .spec = {.lookup = true, .oracle = true}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 1;
        if (cli_load_option(a)) continue; /* --no-mmap, --mlock */
        if (i + 1 >= argc) return fprintf(stderr, "gemma4 bench: %s needs a value\n", a), 2;
        const char *v = argv[++i];
        if (!strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "-p")) { if (cli_int(v, 0, 1 << 20, &o->n_prompt, "-p")) return 2; }
        else if (!strcmp(a, "-n")) { if (cli_int(v, 0, 1 << 20, &o->n_gen, "-n")) return 2; }
        else if (!strcmp(a, "-r")) { if (cli_int(v, 1, BENCH_MAX_REPS, &o->reps, "-r")) return 2; }
        else if (!strcmp(a, "-t")) { if (parse_threads(v, o)) return 2; }
        else if (!strcmp(a, "--draft-max")) { if (parse_lens(v, &o->spec)) return 2; }
        else if (!strcmp(a, "-md") || !strcmp(a, "--model-draft")) o->spec.drafter = v;
        else if (!strcmp(a, "--draft")) {
            if (strcmp(v, "lookup") && strcmp(v, "oracle") && strcmp(v, "all"))
                return fprintf(stderr, "gemma4 bench: bad value for --draft: '%s' (expected lookup, oracle or all)\n", v), 2;
            o->spec.lookup = strcmp(v, "oracle") != 0;
            o->spec.oracle = strcmp(v, "lookup") != 0;
        }
        else if (!strcmp(a, "-o")) {
            if (strcmp(v, "md") && strcmp(v, "json"))
                return fprintf(stderr, "gemma4: bad value for -o: '%s' (expected md or json)\n", v), 2;
            o->json = !strcmp(v, "json");
        } else return fprintf(stderr, "gemma4 bench: unknown option '%s'\n", a), 2;
    }
    if (!o->model) return fprintf(stderr, "gemma4 bench: -m FILE is required\n"), 2;
    if (o->n_prompt + o->n_gen == 0) return fprintf(stderr, "gemma4 bench: -p and -n are both 0\n"), 2;
    if (!o->n_threads) o->threads[o->n_threads++] = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o->spec.n_lens && o->n_gen < 2) return fprintf(stderr, "gemma4 bench: --draft-max needs -n 2 or more\n"), 2;
    o->spec.n_gen = o->n_gen, o->spec.reps = o->reps;
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* splitmix64: the prompt ids, seeded so every run feeds the same ones */
static int32_t random_token(uint64_t *state, int32_t n_vocab) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (int32_t)((z ^ (z >> 31)) % (uint64_t)n_vocab);
}

typedef struct runner {
    gemma4_session *s;
    int32_t *tokens; /* n_prompt of them */
    float *logits;   /* one row */
    int32_t n_vocab, bos;
    uint64_t rng;
    char *err;
} runner;

/* One pp run: seconds for one eval of n fresh random ids on an empty cache,
 * or -1 with err set. */
static double run_pp(runner *r, int32_t n) {
    for (int32_t i = 0; i < n; i++) r->tokens[i] = i == 0 && r->bos >= 0 ? r->bos : random_token(&r->rng, r->n_vocab);
    gemma4_session_truncate(r->s, 0);
    const double t0 = now_s();
    if (gemma4_eval(r->s, r->tokens, n, r->logits, false, r->err)) return -1;
    return now_s() - t0;
}

/* One tg run: seconds for n single-token evals from an empty cache. */
static double run_tg(runner *r, int32_t n) {
    gemma4_session_truncate(r->s, 0);
    int32_t tok = r->bos >= 0 ? r->bos : random_token(&r->rng, r->n_vocab);
    const double t0 = now_s();
    for (int32_t i = 0; i < n; i++) {
        if (gemma4_eval(r->s, &tok, 1, r->logits, false, r->err)) return -1;
        tok = random_token(&r->rng, r->n_vocab);
    }
    return now_s() - t0;
}

/* Warm-up and timed repetitions of one test into res; -1 with err set. */
static int run_test(runner *r, const opts *o, bool pp, bench_result *res) {
    const int32_t n = pp ? o->n_prompt : o->n_gen;
    if ((pp ? run_pp(r, n) : run_tg(r, 1)) < 0) return -1;
    for (int k = 0; k < o->reps; k++) {
        const double dt = pp ? run_pp(r, n) : run_tg(r, n);
        if (dt < 0) return -1;
        res->samples_ts[k] = n / dt;
        fprintf(stderr, "gemma4 bench: t=%d %s%d rep %d/%d: %.2f t/s\n", res->n_threads, pp ? "pp" : "tg", n, k + 1,
                o->reps, res->samples_ts[k]);
    }
    res->n_samples = o->reps;
    return 0;
}

int cmd_bench(int argc, char **argv) {
    opts o;
    const int rc = parse(argc, argv, &o);
    if (rc == 1) return usage(stdout), 0;
    if (rc) return usage(stderr), rc;

    /* loaded first: its GEMMA4_ISA choice is the table benchmarked */
    char err[G4_ERR_LEN];
    gemma4_model *m = cli_load(o.model, err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    if (o.spec.n_lens) {
        const int status = bench_spec_run(m, o.model, o.threads, o.n_threads, &o.spec);
        gemma4_model_free(m);
        return status;
    }
    const char *isa = g4_kernels_active()->isa;
    const double ghz = bench_measure_ghz();
    double membw[MAX_THREAD_COUNTS];
    for (int i = 0; i < o.n_threads; i++) {
        membw[i] = g4_membw_read_gbps(o.threads[i], PROBE_BYTES, PROBE_PASSES);
        fprintf(stderr, "gemma4 bench: read bandwidth with %d thread%s: %.2f GB/s\n", o.threads[i],
                o.threads[i] > 1 ? "s" : "", membw[i]);
    }
    fprintf(stderr, "gemma4 bench: clock %.2f GHz (measured), %s FP32 peak %.1f GFLOP/s per core\n", ghz, isa,
            bench_peak_gflops(isa, 1, ghz));

    gemma4_info info;
    gemma4_model_info(m, &info);
    bench_weights w;
    bench_weights_of(g4_model_gguf(m), info.n_expert, info.n_expert_used, &w);
    fprintf(stderr, "gemma4 bench: a decoded token reads %.3f GB of weights; a prompt token takes %.2f GFLOP\n",
            w.tg_bytes / 1e9, 2.0 * w.token_params / 1e9);

    bench_result *res = calloc((size_t)o.n_threads * 2, sizeof *res);
    runner r = {.n_vocab = gemma4_n_vocab(m), .bos = g4_vocab_bos(g4_model_vocab(m)), .err = err};
    r.tokens = malloc(sizeof *r.tokens * (size_t)(o.n_prompt > 0 ? o.n_prompt : 1));
    r.logits = malloc(sizeof *r.logits * (size_t)r.n_vocab);
    int n_res = 0, status = 0;
    if (!res || !r.tokens || !r.logits) {
        fprintf(stderr, "%s: out of memory for the benchmark buffers\n", o.model);
        status = 1;
    }
    for (int i = 0; i < o.n_threads && !status; i++) {
        gemma4_session_params sp = {.n_ctx = o.n_prompt + o.n_gen, .n_threads = o.threads[i]};
        cli_session_env(&sp);
        r.s = gemma4_session_new(m, &sp, err);
        if (!r.s) {
            fprintf(stderr, "%s\n", err);
            status = 1;
            break;
        }
        for (int test = 0; test < 2 && !status; test++) {
            const bool pp = test == 0;
            if ((pp ? o.n_prompt : o.n_gen) == 0) continue;
            r.rng = 1; /* every test sees the same ids, as llama-bench reseeds */
            bench_result *x = &res[n_res++];
            *x = (bench_result){.n_threads = o.threads[i], .n_prompt = pp ? o.n_prompt : 0,
                                .n_gen = pp ? 0 : o.n_gen, .membw_gbps = membw[i],
                                .peak_gflops = bench_peak_gflops(isa, o.threads[i], ghz)};
            if (run_test(&r, &o, pp, x)) {
                fprintf(stderr, "%s\n", err);
                status = 1;
            }
            bench_result_finish(x, &w);
        }
        gemma4_session_free(r.s);
    }
    if (!status) {
        const bench_model bm = {.filename = o.model, .variant = gemma4_variant(m), .isa = isa, .w = &w};
        if (o.json) {
            bench_print_json(stdout, &bm, res, n_res);
        } else {
            printf("%s: %s; clock %.2f GHz; read bandwidth", o.model, isa, ghz);
            for (int i = 0; i < o.n_threads; i++) printf("%s %.2f GB/s at %d thread%s", i ? "," : "", membw[i], o.threads[i], o.threads[i] > 1 ? "s" : "");
            printf("\n\n");
            bench_print_md(stdout, &bm, res, n_res);
        }
    }
    free(r.logits);
    free(r.tokens);
    free(res);
    gemma4_model_free(m);
    return status;
}
