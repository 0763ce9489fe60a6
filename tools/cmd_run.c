/* gemma4 run: continue a prompt; gemma4 chat: multi-turn chat.
 *
 * Both stream text as tokens arrive and share one loop: process the prompt
 * in chunks (with progress on stderr), then sample, print, and feed back one
 * token at a time. `run` sends the prompt text as is, like llama.cpp's
 * llama-simple / llama-completion: the tokenizer adds BOS and turns the text
 * of special tokens into those tokens, and no chat template is applied.
 * `chat` re-renders the whole conversation with the chat template every
 * turn and feeds only what differs from the tokens already in the KV cache:
 * normally just the new user turn, but everything after an earlier answer's
 * thought channel too, because the template drops thoughts from history.
 * The conversation is tokenized with gemma4_chat_tokenize: only the
 * template's own markers become control tokens, never text the user typed.
 * A full context stops generation, or with --context-shift is shifted as
 * llama.cpp does it (gemma4_seq_shift): the first --keep tokens stay, the
 * older half of the rest goes, and the conversation goes on. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gemma4_internal.h"
#include "gguf/json.h"
#include "tokenizer/chat.h"
#include "tokenizer/grammar.h"
#include "tools/cli.h"
#include "tools/commands.h"

/* tokens per forward call while processing a prompt: the unit of progress */
#define PROMPT_CHUNK 512

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- options */

/* Sampling settings a command line may override; the rest come from the
 * model (gemma4_sampling_defaults). */
enum { S_TEMP, S_TOP_K, S_TOP_P, S_MIN_P, S_REPEAT_PENALTY, S_REPEAT_LAST_N, S_PRESENCE, S_FREQUENCY, S_COUNT };
static const struct {
    const char *name;
    bool is_int;
    double lo, hi;
} sampling_opts[S_COUNT] = {
    [S_TEMP] = {"--temp", false, 0, 1e6},
    [S_TOP_K] = {"--top-k", true, 0, INT32_MAX},
    [S_TOP_P] = {"--top-p", false, 0, 1},
    [S_MIN_P] = {"--min-p", false, 0, 1},
    [S_REPEAT_PENALTY] = {"--repeat-penalty", false, 0, 1e6},
    [S_REPEAT_LAST_N] = {"--repeat-last-n", true, -1, INT32_MAX},
    [S_PRESENCE] = {"--presence-penalty", false, -1e6, 1e6},
    [S_FREQUENCY] = {"--frequency-penalty", false, -1e6, 1e6},
};

/* Reverse prompts: enough for llama.cpp scripts ("User:", "###"); each is
 * looked for in the last bytes of the output, so it is bounded too. */
#define MAX_REVERSE 16
#define MAX_REVERSE_LEN 256
#define MAX_LOGIT_BIAS 1024

typedef struct opts {
    const char *model, *prompt, *prompt_file, *system;
    int32_t n_predict, n_ctx, n_threads, n_batch, n_ubatch, n_keep;
    gemma4_kv_type type_k, type_v;
    bool ignore_eos, raw, special, think, show_thinking, color, context_shift, verbose_prompt, no_cnv, cnv;
    /* sampling overrides */
    float fval[S_COUNT];  /* the float ones */
    int32_t ival[S_COUNT]; /* the integer ones */
    bool sset[S_COUNT];
    bool has_seed;
    uint64_t seed;
    gemma4_logit_bias bias[MAX_LOGIT_BIAS];
    int32_t n_bias;
    const char *grammar, *grammar_file, *json_schema, *json_schema_file;
    const char *chat_template_file, *chat_template_kwargs;
    bool no_jinja;
    const char *reverse[MAX_REVERSE];
    int n_reverse;
    /* speculative decoding: an MTP drafter and its draft lengths */
    const char *draft_model;
    int32_t draft_max, draft_min;
} opts;

static void usage_common(FILE *out) {
    fprintf(out,
            "  -m, --model FILE       model (GGUF)\n"
            "  -c, --ctx-size N       context size in tokens (default: min(model context, 4096))\n"
            "  -t, --threads N        threads (default: number of cores)\n"
            "  -b, --batch-size N     prompt tokens per evaluation call (default: 512)\n"
            "  -ub, --ubatch-size N   tokens per forward pass (default: 512)\n"
            "  -ctk, --cache-type-k T KV cache type of K: f32, f16, q8_0 (default: f16)\n"
            "  -ctv, --cache-type-v T KV cache type of V (default: f16)\n"
            "  --no-mmap              read the model into memory instead of mapping it\n"
            "  --mlock                lock the model in RAM (fails if RLIMIT_MEMLOCK, ulimit -l, is too low)\n"
            "  --context-shift        when the context is full, drop the older half of it (after --keep) and go on\n"
            "  --no-context-shift     stop when the context is full (default)\n"
            "  --keep N               tokens after BOS that a context shift keeps (default: 0; -1 = the whole\n"
            "                         prompt, for chat the system turn)\n"
            "  --temp T               temperature; 0 = greedy (default: model's general.sampling.temp, else 1.0)\n"
            "  --top-k K              keep the K most likely tokens; 0 = off (default: model's, else 64)\n"
            "  --top-p P              keep the smallest set reaching probability P; 1 = off (default: model's, else 0.95)\n"
            "  --min-p P              drop tokens below P * the top probability; 0 = off (default: model's, else 0)\n"
            "  --repeat-penalty F     penalise the tokens of the last --repeat-last-n; 1 = off (default: 1)\n"
            "  --repeat-last-n N      tokens the penalties look back on; 0 = off, -1 = all (default: 64)\n"
            "  --presence-penalty F   subtracted from every token seen there; 0 = off (default)\n"
            "  --frequency-penalty F  subtracted once per occurrence there; 0 = off (default)\n"
            "  -l, --logit-bias ID(+|-)BIAS  add BIAS to token ID's logit (e.g. 15043+1, 15043-inf bans it); repeatable\n"
            "  -s, --seed S           random seed; -1 = from the clock (default; the seed used is printed)\n"
            "  -r, --reverse-prompt TEXT  stop when the output shows TEXT; repeatable\n"
            "  --grammar GBNF         constrain the output to a GBNF grammar (llama.cpp's format)\n"
            "  --grammar-file FILE    the grammar from FILE\n"
            "  -j, --json-schema JSON constrain the output to JSON that a JSON Schema accepts\n"
            "  -jf, --json-schema-file FILE  the schema from FILE\n"
            "  --ignore-eos           never stop at an end-of-generation token (they are not sampled)\n"
            "  -md, --model-draft FILE  speculative decoding with this MTP drafter (gemma4-assistant GGUF):\n"
            "                         the same output, several tokens per pass over the weights\n"
            "  --draft-max N          most tokens drafted per step (default: 8; the length adapts to acceptance)\n"
            "  --draft-min N          fewest tokens drafted per step (default: 1)\n"
            "  -co, --color           generated text in colour when stdout is a terminal\n"
            "  --verbose-prompt       print the prompt's tokens (id -> 'piece') on stderr before generating\n"
            "  -ngl, -fa, -sm, -mg, -ts, -nkvo, -dev (and their long names)  accepted for llama.cpp scripts and\n"
            "                         ignored with a note: this engine runs on the CPU, attention is always exact\n"
            "  --version              version and build\n"
            "  -h, --help             this help\n");
}

static void usage_run(FILE *out) {
    fprintf(out,
            "usage: gemma4 run -m FILE (-p PROMPT | -f PROMPT_FILE) [options]\n"
            "Continues PROMPT, streaming the new text to stdout. The prompt is sent as is:\n"
            "BOS is added and special-token text (e.g. <|turn>) becomes those tokens; no\n"
            "chat template (use `gemma4 chat` for that). Speeds are printed on stderr.\n"
            "  -p, --prompt PROMPT    prompt text\n"
            "  -f, --file FILE        read the prompt from FILE (- = standard input)\n"
            "  -n, --n-predict N      tokens to generate; -1 = until end of generation or context (default: 256)\n"
            "  --raw                  prompt is plain text: no BOS, special-token text not parsed\n"
            "  -sp, --special         print special tokens (e.g. <turn|>) in the output\n"
            "  -no-cnv, --no-conversation  accepted: run never applies a chat template\n");
    usage_common(out);
}

static void usage_chat(FILE *out) {
    fprintf(out,
            "usage: gemma4 chat -m FILE [options]\n"
            "Reads one user message per line from stdin (a terminal or a pipe) until EOF or\n"
            "\"/exit\", answering each with the chat template of Gemma 4. Message text is\n"
            "tokenized as text: control-token text in it (e.g. <turn|>) cannot end a turn.\n"
            "  -sys, --system-prompt TEXT  system prompt\n"
            "  --think                let the model think before answering\n"
            "  --no-think             answer directly (default)\n"
            "  --show-thinking        print the thoughts too (between [thinking] and [/thinking])\n"
            "  --jinja                render with the model's own chat template (tokenizer.chat_template; default)\n"
            "  --no-jinja             render with the built-in Gemma 4 template instead\n"
            "  --chat-template-file FILE  render with the Jinja template in FILE\n"
            "  --chat-template-kwargs JSON  extra template variables, e.g. '{\"enable_thinking\":true}'\n"
            "  -n, --n-predict N      tokens per answer at most; -1 = no limit (default: -1)\n"
            "  -cnv, --conversation   accepted: chat always converses\n");
    usage_common(out);
}

/* llama.cpp's spellings of our options, mapped onto the names used below,
 * so that scripts written for llama-cli / llama-completion run unchanged. */
static const char *const aliases[][2] = {
    {"--model", "-m"},      {"--prompt", "-p"},     {"--file", "-f"},           {"--n-predict", "-n"},
    {"--predict", "-n"},    {"--ctx-size", "-c"},   {"--threads", "-t"},        {"-s", "--seed"},
    {"--cache-type-k", "-ctk"}, {"--cache-type-v", "-ctv"}, {"-sys", "--system"}, {"--system-prompt", "--system"},
    {"--batch-size", "-b"}, {"--ubatch-size", "-ub"}, {"--reverse-prompt", "-r"}, {"-l", "--logit-bias"},
    {"-sp", "--special"},   {"-co", "--color"},     {"--no-conversation", "-no-cnv"}, {"--conversation", "-cnv"},
    {"-j", "--json-schema"}, {"-jf", "--json-schema-file"}, {"--model-draft", "-md"}, {"--draft", "--draft-max"},
    {"--draft-n", "--draft-max"}, {"--draft-n-min", "--draft-min"},
};

static const char *canonical(const char *a) {
    for (size_t k = 0; k < sizeof aliases / sizeof aliases[0]; k++)
        if (!strcmp(a, aliases[k][0])) return aliases[k][1];
    return a;
}

/* Options of llama.cpp that have no meaning here (GPU offload and device
 * placement; flash attention, which changes nothing: attention is computed
 * exactly in f32 either way). Accepted, with one note on stderr, so scripts
 * keep working. */
static int ignored_option(const char *cmd, int argc, char **argv, int *i) {
    static const char *const gpu_with_value[] = {"-ngl", "--n-gpu-layers", "--gpu-layers", "-sm", "--split-mode",
                                                 "-mg", "--main-gpu", "-ts", "--tensor-split", "-dev", "--device"};
    static const char *const gpu_flags[] = {"-nkvo", "--no-kv-offload"};
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof gpu_with_value / sizeof gpu_with_value[0]; k++)
        if (!strcmp(a, gpu_with_value[k])) {
            if (*i + 1 >= argc) return fprintf(stderr, "gemma4 %s: %s needs a value\n", cmd, a), -1;
            fprintf(stderr, "gemma4 %s: %s %s ignored: this engine runs on the CPU only\n", cmd, a, argv[++*i]);
            return 1;
        }
    for (size_t k = 0; k < sizeof gpu_flags / sizeof gpu_flags[0]; k++)
        if (!strcmp(a, gpu_flags[k])) {
            fprintf(stderr, "gemma4 %s: %s ignored: this engine runs on the CPU only\n", cmd, a);
            return 1;
        }
    if (!strcmp(a, "-fa") || !strcmp(a, "--flash-attn")) {
        /* llama.cpp takes on|off|auto here; older versions took no value */
        if (*i + 1 < argc && (!strcmp(argv[*i + 1], "on") || !strcmp(argv[*i + 1], "off") || !strcmp(argv[*i + 1], "auto")))
            ++*i;
        fprintf(stderr, "gemma4 %s: %s ignored: attention is always computed exactly, in f32\n", cmd, a);
        return 1;
    }
    return 0;
}

/* llama.cpp's TOKEN(+|-)BIAS: "15043+1", "15043-0.5", "15043-inf" */
static int parse_logit_bias(const char *v, opts *o) {
    char *end;
    errno = 0;
    long id = strtol(v, &end, 10);
    if (o->n_bias == MAX_LOGIT_BIAS)
        return fprintf(stderr, "gemma4: more than %d --logit-bias options\n", MAX_LOGIT_BIAS), -1;
    if (errno || end == v || id < 0 || id > INT32_MAX || (*end != '+' && *end != '-'))
        return fprintf(stderr, "gemma4: bad value for --logit-bias: '%s' (expected TOKEN_ID+BIAS or TOKEN_ID-BIAS)\n", v), -1;
    const char sign = *end++;
    float bias;
    if (*end == '-' || *end == '+' || cli_float(end, -INFINITY, INFINITY, &bias, "--logit-bias")) return -1;
    o->bias[o->n_bias++] = (gemma4_logit_bias){.token = (int32_t)id, .bias = sign == '-' ? -bias : bias};
    return 0;
}

/* 1 = option taken (*i advanced past its value), 0 = not an option of
 * this command, -1 = bad or missing value (message printed) */
static int parse_option(const char *cmd, int argc, char **argv, int *i, opts *o) {
    const char *a = canonical(argv[*i]);
    static const char *const flags[] = {"--ignore-eos", "--raw", "--special", "--think", "--no-think",
                                        "--show-thinking", "--color", "--context-shift", "--no-context-shift",
                                        "--verbose-prompt", "-no-cnv", "-cnv"};
    bool *const flag_dst[] = {&o->ignore_eos, &o->raw, &o->special, &o->think, &o->think,
                              &o->show_thinking, &o->color, &o->context_shift, &o->context_shift,
                              &o->verbose_prompt, &o->no_cnv, &o->cnv};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
        if (!strcmp(a, flags[k])) {
            *flag_dst[k] = strncmp(a, "--no-", 5) != 0;
            return 1;
        }
    if (cli_load_option(a)) return 1;
    if (!strcmp(a, "--jinja") || !strcmp(a, "--no-jinja")) { /* the model's template is the default */
        o->no_jinja = a[2] == 'n';
        return 1;
    }
    static const char *const with_value[] = {"-m", "-p", "-f", "--system", "-n", "-c", "-t", "-b", "-ub", "-ctk",
                                             "-ctv", "--seed", "--keep", "-r", "--logit-bias", "--grammar",
                                             "--grammar-file", "--json-schema", "--json-schema-file",
                                             "--chat-template-file", "--chat-template-kwargs", "-md", "--draft-max",
                                             "--draft-min"};
    size_t k = 0, n_with = sizeof with_value / sizeof with_value[0], ks = 0;
    while (k < n_with && strcmp(a, with_value[k])) k++;
    while (ks < S_COUNT && strcmp(a, sampling_opts[ks].name)) ks++;
    if (k == n_with && ks == S_COUNT) return ignored_option(cmd, argc, argv, i);
    if (*i + 1 >= argc) return fprintf(stderr, "gemma4 %s: %s needs a value\n", cmd, argv[*i]), -1;
    const char *v = argv[++*i];
    int bad = 0;
    if (ks < S_COUNT) {
        if (sampling_opts[ks].is_int) bad = cli_int(v, (long)sampling_opts[ks].lo, (long)sampling_opts[ks].hi, &o->ival[ks], a);
        else bad = cli_float(v, sampling_opts[ks].lo, sampling_opts[ks].hi, &o->fval[ks], a);
        o->sset[ks] = true;
    }
    else if (!strcmp(a, "-m")) o->model = v;
    else if (!strcmp(a, "-p")) o->prompt = v;
    else if (!strcmp(a, "-f")) o->prompt_file = v;
    else if (!strcmp(a, "--system")) o->system = v;
    else if (!strcmp(a, "-n")) bad = cli_int(v, -1, INT32_MAX, &o->n_predict, a);
    else if (!strcmp(a, "-c")) bad = cli_int(v, 1, INT32_MAX, &o->n_ctx, a);
    else if (!strcmp(a, "-t")) bad = cli_int(v, 1, 1024, &o->n_threads, a);
    else if (!strcmp(a, "-b")) bad = cli_int(v, 1, 1 << 20, &o->n_batch, a);
    else if (!strcmp(a, "-ub")) bad = cli_int(v, 1, 1 << 20, &o->n_ubatch, a);
    else if (!strcmp(a, "--keep")) bad = cli_int(v, -1, INT32_MAX, &o->n_keep, a);
    else if (!strcmp(a, "--logit-bias")) bad = parse_logit_bias(v, o);
    else if (!strcmp(a, "--grammar")) o->grammar = v;
    else if (!strcmp(a, "--grammar-file")) o->grammar_file = v;
    else if (!strcmp(a, "--json-schema")) o->json_schema = v;
    else if (!strcmp(a, "--json-schema-file")) o->json_schema_file = v;
    else if (!strcmp(a, "--chat-template-file")) o->chat_template_file = v;
    else if (!strcmp(a, "--chat-template-kwargs")) o->chat_template_kwargs = v;
    else if (!strcmp(a, "-md")) o->draft_model = v;
    else if (!strcmp(a, "--draft-max")) bad = cli_int(v, 1, GEMMA4_DRAFT_CAP, &o->draft_max, a);
    else if (!strcmp(a, "--draft-min")) bad = cli_int(v, 1, GEMMA4_DRAFT_CAP, &o->draft_min, a);
    else if (!strcmp(a, "-r")) {
        if (o->n_reverse == MAX_REVERSE || !*v || strlen(v) > MAX_REVERSE_LEN)
            bad = -1, fprintf(stderr, "gemma4: bad value for -r: at most %d reverse prompts of 1..%d bytes\n",
                              MAX_REVERSE, MAX_REVERSE_LEN);
        else o->reverse[o->n_reverse++] = v;
    }
    else if (!strcmp(a, "-ctk") || !strcmp(a, "-ctv")) {
        bad = gemma4_kv_type_from_name(v, a[3] == 'k' ? &o->type_k : &o->type_v);
        if (bad) fprintf(stderr, "gemma4: bad value for %s: '%s' (f32, f16, q8_0)\n", a, v);
    }
    else { /* --seed; llama.cpp's -1 means a random one */
        char *end;
        o->seed = strtoull(v, &end, 10);
        o->has_seed = strcmp(v, "-1") != 0;
        if (o->has_seed && (end == v || *end || *v == '-'))
            bad = -1, fprintf(stderr, "gemma4: bad value for --seed: '%s' (a non-negative integer, or -1)\n", v);
    }
    return bad ? -1 : 1;
}

/* 0 to go on, else the exit status (help printed, or a usage error) */
static int parse_args(const char *cmd, int argc, char **argv, opts *o, void (*usage)(FILE *),
                      bool (*allowed)(const char *)) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout), -1;
        if (!strcmp(argv[i], "--version")) return cli_print_version(), -1;
        int r = allowed(argv[i]) ? parse_option(cmd, argc, argv, &i, o) : 0;
        if (r < 0) return 2;
        if (r == 0) return fprintf(stderr, "gemma4 %s: unknown option '%s' (gemma4 %s --help lists them)\n", cmd, argv[i], cmd), 2;
    }
    if (!o->model) return fprintf(stderr, "gemma4 %s: -m FILE is required (gemma4 %s --help)\n", cmd, cmd), 2;
    if (!!o->grammar + !!o->grammar_file + !!o->json_schema + !!o->json_schema_file > 1)
        return fprintf(stderr, "gemma4 %s: give one of --grammar, --grammar-file, --json-schema, --json-schema-file\n",
                       cmd), 2;
    if (o->draft_min > (o->draft_max ? o->draft_max : 8))
        return fprintf(stderr, "gemma4 %s: --draft-min is above --draft-max\n", cmd), 2;
    return 0;
}

static bool run_only(const char *arg) {
    const char *a = canonical(arg);
    static const char *const chat_opts[] = {"--system", "--think", "--no-think", "--show-thinking", "-cnv", "--jinja",
                                            "--no-jinja", "--chat-template-file", "--chat-template-kwargs"};
    for (size_t k = 0; k < sizeof chat_opts / sizeof chat_opts[0]; k++)
        if (!strcmp(a, chat_opts[k])) return false;
    return true;
}
static bool chat_only(const char *arg) {
    const char *a = canonical(arg);
    return strcmp(a, "-p") && strcmp(a, "-f") && strcmp(a, "--raw") && strcmp(a, "--special") && strcmp(a, "-no-cnv");
}

/* ---------------------------------------------------------------- the engine */

typedef struct engine {
    gemma4_model *m;
    const g4_vocab *v;
    gemma4_session *s;
    gemma4_sampler *smp;
    /* -md: the drafter and the speculative state over session s; each step
     * feeds up to draft_max + 1 tokens */
    gemma4_drafter *drafter;
    gemma4_spec *spec;
    int32_t draft_max;
    int32_t n_vocab, n_ctx, n_batch;
    float *logits;           /* of the last position fed */
    bool color;              /* generated text in colour (--color on a terminal) */
    bool verbose_prompt;
    /* Context shift: positions [0, keep) stay; each shift drops the older
     * half of the rest. The cache then holds the logical token stream
     * without the dropped tokens: cache position p >= keep is logical
     * position p + dropped. */
    bool context_shift;
    int32_t keep;
    int64_t dropped;
    int64_t n_shifts;
    const char *const *reverse; /* -r texts */
    int n_reverse;
    int64_t n_prompt, n_gen; /* totals, for the speeds */
    double t_prompt, t_gen;
} engine;

static void engine_close(engine *e) {
    gemma4_spec_free(e->spec);
    gemma4_drafter_free(e->drafter);
    gemma4_sampler_free(e->smp);
    gemma4_session_free(e->s);
    gemma4_model_free(e->m);
    free(e->logits);
}

static int engine_open(engine *e, const char *cmd, const opts *o) {
    char err[G4_ERR_LEN];
    memset(e, 0, sizeof *e);
    fprintf(stderr, "gemma4 %s: loading %s\n", cmd, o->model);
    double t0 = now_s();
    if (!(e->m = cli_load(o->model, err))) return fprintf(stderr, "%s\n", err), -1;
    e->v = g4_model_vocab(e->m);
    e->n_vocab = gemma4_n_vocab(e->m);
    gemma4_session_params sp = {.n_ctx = o->n_ctx, .n_threads = o->n_threads, .n_ubatch = o->n_ubatch,
                                .type_k = o->type_k, .type_v = o->type_v};
    cli_session_env(&sp);
    if (!(e->s = gemma4_session_new(e->m, &sp, err))) return fprintf(stderr, "%s\n", err), -1;
    e->n_ctx = gemma4_session_n_ctx(e->s);
    e->n_batch = o->n_batch ? o->n_batch : PROMPT_CHUNK;

    gemma4_sampling p = gemma4_sampling_defaults(e->m);
    float *const dst[S_COUNT] = {[S_TEMP] = &p.temperature, [S_TOP_P] = &p.top_p, [S_MIN_P] = &p.min_p,
                                 [S_REPEAT_PENALTY] = &p.repeat_penalty, [S_PRESENCE] = &p.presence_penalty,
                                 [S_FREQUENCY] = &p.frequency_penalty};
    for (int k = 0; k < S_COUNT; k++)
        if (o->sset[k] && dst[k]) *dst[k] = o->fval[k];
    if (o->sset[S_TOP_K]) p.top_k = o->ival[S_TOP_K];
    if (o->sset[S_REPEAT_LAST_N]) p.penalty_last_n = o->ival[S_REPEAT_LAST_N];
    p.seed = o->has_seed ? o->seed : (uint64_t)time(NULL);
    p.logit_bias = o->bias;
    p.n_logit_bias = o->n_bias;
    p.ignore_eos = o->ignore_eos; /* the sampler never picks an end-of-generation token */
    /* the grammar: given, read from a file, or made from a JSON Schema */
    char *grammar_text = NULL, *schema_text = NULL;
    size_t len = 0;
    if (o->grammar_file && !(grammar_text = cli_read_input(o->grammar_file, &len))) return -1;
    if (o->json_schema_file && !(schema_text = cli_read_input(o->json_schema_file, &len))) return -1;
    const char *schema = schema_text ? schema_text : o->json_schema;
    if (schema) {
        grammar_text = g4_json_schema_to_gbnf(schema, strlen(schema), err);
        free(schema_text);
        if (!grammar_text) return fprintf(stderr, "gemma4 %s: JSON schema: %s\n", cmd, err), -1;
    }
    p.grammar = grammar_text ? grammar_text : o->grammar;
    e->smp = gemma4_sampler_init(e->m, &p, err);
    free(grammar_text);
    if (!e->smp) return fprintf(stderr, "gemma4 %s: %s\n", cmd, err), -1;

    if (o->draft_model) {
        const gemma4_spec_params spp = {.draft_max = o->draft_max, .draft_min = o->draft_min, .hidden = true};
        e->draft_max = o->draft_max ? o->draft_max : 8;
        if (!(e->drafter = gemma4_drafter_load(o->draft_model, e->m, err)) ||
            !(e->spec = gemma4_spec_new(e->s, gemma4_draft_mtp, e->drafter, &spp, err)))
            return fprintf(stderr, "gemma4 %s: %s\n", cmd, err), -1;
    }
    e->logits = malloc((size_t)e->n_vocab * sizeof *e->logits);
    if (!e->logits) return fprintf(stderr, "gemma4 %s: out of memory\n", cmd), -1;
    e->color = o->color && isatty(STDOUT_FILENO);
    e->verbose_prompt = o->verbose_prompt;
    e->context_shift = o->context_shift;
    e->reverse = o->reverse;
    e->n_reverse = o->n_reverse;
    fprintf(stderr, "gemma4 %s: %s model loaded in %.2f s; context %d, temp %g, top-k %d, top-p %g, min-p %g, seed %llu\n",
            cmd, gemma4_variant(e->m), now_s() - t0, e->n_ctx, p.temperature, p.top_k, p.top_p, p.min_p,
            (unsigned long long)p.seed);
    return 0;
}

/* Sets the positions a context shift keeps (BOS and --keep more); at
 * least half the context must stay free to shift. */
static int set_keep(engine *e, int64_t keep, char *err) {
    if (e->context_shift && keep > e->n_ctx / 2) {
        snprintf(err, G4_ERR_LEN, "--keep holds %lld tokens: a context shift needs at most half the context (%d)",
                 (long long)keep, e->n_ctx / 2);
        return -1;
    }
    e->keep = (int32_t)keep;
    return 0;
}

/* Frees room in the cache by dropping the older half of what follows the
 * kept tokens (llama.cpp's context shift), or fails when shifting is off. */
static int shift_context(engine *e, char *err) {
    const int32_t pos = gemma4_session_pos(e->s), n_discard = (pos - e->keep) / 2;
    if (!e->context_shift) {
        snprintf(err, G4_ERR_LEN, "the context of %d tokens is full (use a larger -c, or --context-shift)", e->n_ctx);
        return -1;
    }
    if (n_discard <= 0) return snprintf(err, G4_ERR_LEN, "the context is full and --keep leaves nothing to drop"), -1;
    if (gemma4_seq_shift(e->s, 0, e->keep, n_discard, err) < 0) return -1;
    e->dropped += n_discard;
    e->n_shifts++;
    return 0;
}

static void print_tokens(const engine *e, const int32_t *ids, int32_t n) {
    char piece[256];
    fprintf(stderr, "prompt: %d tokens\n", n);
    for (int32_t i = 0; i < n; i++) {
        size_t len = g4_token_to_piece(e->v, ids[i], true, piece, sizeof piece);
        fprintf(stderr, "%6d -> '%.*s'\n", ids[i], (int)(len < sizeof piece ? len : 0), piece);
    }
}

/* How much of the cache holds a prefix of the logical tokens ids[0..n)
 * (see engine.dropped), leaving at least the last token to feed (its
 * logits are needed): returns that cache length, and the logical length
 * it stands for in *logical. A difference within the kept tokens takes the
 * dropped span with it (dropped becomes 0). */
static int32_t cached_prefix(engine *e, const int32_t *ids, int64_t n, int64_t *logical) {
    const int32_t pos = gemma4_session_pos(e->s), *c = gemma4_seq_tokens(e->s, 0);
    const int32_t head = e->dropped ? e->keep : pos; /* cache positions equal to logical ones */
    int32_t p = 0;
    while (p < head && p < n - 1 && c[p] == ids[p]) p++;
    if (!e->dropped || p < e->keep || e->keep + e->dropped >= n - 1) {
        e->dropped = 0;
        return (int32_t)(*logical = p);
    }
    while (p < pos && p + e->dropped < n - 1 && c[p] == ids[p + e->dropped]) p++;
    *logical = p + e->dropped;
    return p;
}

/* Makes the cache hold the logical tokens ids[0..n): keeps the common
 * prefix with what is cached (or the checkpoint below it, when the sliding
 * window there is gone), processes the rest (at least the last token,
 * whose logits are needed) in chunks, with progress for long prompts,
 * shifting the context when it fills, and checkpoints the end of the
 * prompt: the next chat turn, which drops this answer's thoughts, resumes
 * from there. */
static int feed_prompt(engine *e, const int32_t *ids, int64_t n, char *err) {
    if (e->verbose_prompt) print_tokens(e, ids, (int32_t)n);
    int64_t done;
    const int32_t cache_len = cached_prefix(e, ids, n, &done);
    if (e->context_shift ? n - done > e->n_ctx - e->keep : cache_len + (n - done) > e->n_ctx) {
        snprintf(err, G4_ERR_LEN, "prompt of %lld tokens does not fit the context of %d (use -c%s)",
                 (long long)(e->context_shift ? n - done : n), e->n_ctx, e->context_shift ? "" : " or --context-shift");
        return -1;
    }
    const int32_t kept = gemma4_session_truncate(e->s, cache_len);
    if (kept < cache_len) { /* back to a checkpoint */
        if (kept < e->keep) e->dropped = 0;
        done = kept + e->dropped;
    }
    const int64_t start = done;
    double t0 = now_s();
    bool progress = n - start > e->n_batch;
    while (done < n) {
        if (gemma4_session_pos(e->s) == e->n_ctx && shift_context(e, err)) return -1;
        int64_t room = e->n_ctx - gemma4_session_pos(e->s), step = n - done < e->n_batch ? n - done : e->n_batch;
        if (step > room) step = room;
        if (gemma4_eval(e->s, ids + done, (int32_t)step, done + step == n ? e->logits : NULL, false, err)) return -1;
        done += step;
        if (progress)
            fprintf(stderr, "\rprompt: %lld/%lld tokens (%.1f t/s)", (long long)(done - start), (long long)(n - start),
                    (double)(done - start) / (now_s() - t0));
    }
    if (progress) fputc('\n', stderr);
    gemma4_sampler_accept(e->smp, ids + start, (int32_t)(n - start));
    gemma4_seq_checkpoint(e->s, 0);
    e->n_prompt += n - start;
    e->t_prompt += now_s() - t0;
    return 0;
}

/* Where generated tokens go: text shown on stdout, its last bytes for the
 * reverse prompts, and for chat the full text with special tokens for the
 * output parser. */
#define TAIL_LEN (2 * MAX_REVERSE_LEN)
typedef struct stream {
    g4_detok shown;
    char *piece; /* scratch for one token's bytes */
    size_t piece_cap;
    int32_t thought_open, thought_close; /* -1 when not hiding thoughts */
    bool in_thought, show_thinking;
    bool collect;
    char *full; /* with collect: this turn's text, NUL-terminated */
    size_t full_len, full_cap;
    char tail[TAIL_LEN]; /* the last bytes shown this turn */
    size_t tail_len, new_len; /* new_len: bytes the last token added */
} stream;

static int append(stream *st, const char *p, size_t n) {
    if (st->full_len + n + 1 > st->full_cap) {
        size_t cap = 2 * (st->full_len + n + 1);
        char *g = realloc(st->full, cap);
        if (!g) return -1;
        st->full = g, st->full_cap = cap;
    }
    memcpy(st->full + st->full_len, p, n);
    st->full[st->full_len += n] = 0;
    return 0;
}

static int stream_init(stream *st, const g4_vocab *v, bool render_special, bool collect) {
    g4_detok_init(&st->shown, v, render_special);
    st->piece_cap = g4_vocab_max_piece(v) + G4_DETOK_HELD;
    st->thought_open = st->thought_close = -1;
    st->collect = collect;
    if (!(st->piece = malloc(st->piece_cap))) return -1;
    return collect ? append(st, "", 0) : 0;
}

static void stream_restart(stream *st) {
    st->full_len = st->tail_len = st->new_len = 0;
    if (st->full) st->full[0] = 0;
    st->in_thought = false;
}

static void tail_push(stream *st, const char *p, size_t n) {
    if (n >= TAIL_LEN) p += n - TAIL_LEN, n = TAIL_LEN;
    if (st->tail_len + n > TAIL_LEN) {
        size_t drop = st->tail_len + n - TAIL_LEN;
        memmove(st->tail, st->tail + drop, st->tail_len - drop);
        st->tail_len -= drop;
    }
    memcpy(st->tail + st->tail_len, p, n);
    st->tail_len += n;
    st->new_len = n;
}

static int stream_token(stream *st, int32_t id) {
    st->new_len = 0;
    if (st->collect) {
        size_t n = g4_token_to_piece(st->shown.vocab, id, true, st->piece, st->piece_cap);
        if (n > st->piece_cap || append(st, st->piece, n)) return -1;
    }
    if (id == st->thought_open || id == st->thought_close) {
        st->in_thought = id == st->thought_open;
        if (st->show_thinking) fputs(st->in_thought ? "[thinking]\n" : "\n[/thinking]\n", stdout);
        return 0;
    }
    if (st->in_thought && !st->show_thinking) return 0;
    size_t n = g4_detok_push(&st->shown, id, st->piece, st->piece_cap);
    fwrite(st->piece, 1, n, stdout);
    fflush(stdout);
    if (!st->in_thought) tail_push(st, st->piece, n);
    return 0;
}

static void stream_end(stream *st) {
    size_t n = g4_detok_flush(&st->shown, st->piece, st->piece_cap);
    fwrite(st->piece, 1, n, stdout);
    fflush(stdout);
}

/* Whether a reverse prompt has just appeared: one that ends within the
 * bytes of the last token (a token may carry text past it, as llama.cpp
 * allows). */
static bool reverse_prompt_seen(const engine *e, const stream *st) {
    for (int r = 0; r < e->n_reverse && st->new_len; r++) {
        const size_t len = strlen(e->reverse[r]);
        const size_t from = st->tail_len >= len + st->new_len ? st->tail_len - len - st->new_len + 1 : 0;
        if (st->tail_len < len) continue;
        for (size_t at = from; at + len <= st->tail_len; at++)
            if (!memcmp(st->tail + at, e->reverse[r], len)) return true;
    }
    return false;
}

/* With -md: one speculative step for the sampled, not yet fed token id.
 * Writes the new tokens to next (the kept drafts, which are in the cache,
 * then the target's own pick, which is not) and returns their count; 0 when
 * the context has no room for a step (the caller feeds id alone), -1 with
 * err set. */
static int32_t speculate(engine *e, int32_t id, int32_t *next, char *err) {
    if (gemma4_session_pos(e->s) + 1 + e->draft_max > e->n_ctx && e->context_shift && shift_context(e, err)) return -1;
    if (gemma4_session_pos(e->s) + 1 + e->draft_max > e->n_ctx) return 0;
    const int32_t seq = 0;
    int32_t n_out = 0;
    if (gemma4_spec_step(e->spec, 1, &seq, &id, &e->smp, next, &n_out, err)) return -1;
    return n_out;
}

/* Samples up to max_new tokens (-1: no limit) from e->logits onwards,
 * stopping at end of generation, a reverse prompt or a full context (which
 * --context-shift makes room in instead). With -md the tokens come from
 * speculative steps, which are the tokens plain decoding samples. Returns
 * the number of tokens generated, or -1 with err set. */
static int64_t generate(engine *e, int64_t max_new, stream *st, char *err) {
    double t0 = now_s();
    int64_t n = 0;
    int32_t next[GEMMA4_DRAFT_CAP + 1], n_next = 0, at = 0; /* a speculative step's tokens, next[at] on */
    if (e->color) fputs("\x1b[33m", stdout);
    while (max_new < 0 || n < max_new) {
        int32_t id;
        if (at < n_next) {
            id = next[at++];
        } else {
            id = gemma4_sample(e->smp, e->logits);
            n_next = at = 0;
        }
        if (id < 0)
            return snprintf(err, G4_ERR_LEN, "no token can be sampled: non-finite logits, or nothing the grammar allows"), -1;
        if (g4_vocab_is_eog(e->v, id)) break; /* never sampled with --ignore-eos */
        n++;
        if (stream_token(st, id)) return snprintf(err, G4_ERR_LEN, "out of memory"), -1;
        if ((max_new >= 0 && n == max_new) || reverse_prompt_seen(e, st)) break;
        if (at < n_next) continue; /* a kept draft: already in the cache */
        if (e->spec) { /* id is sampled but not fed: verify drafts after it */
            const int32_t got = speculate(e, id, next, err);
            if (got < 0) return -1;
            if (got > 0) {
                n_next = got, at = 0;
                continue;
            }
        }
        if (gemma4_session_pos(e->s) == e->n_ctx) {
            if (!e->context_shift) {
                fprintf(stderr, "\n[context of %d tokens is full; --context-shift goes on past it]\n", e->n_ctx);
                break;
            }
            if (shift_context(e, err)) return -1;
        }
        if (gemma4_eval(e->s, &id, 1, e->logits, false, err)) return -1;
    }
    stream_end(st);
    if (e->color) fputs("\x1b[0m", stdout), fflush(stdout);
    e->n_gen += n;
    e->t_gen += now_s() - t0;
    return n;
}

static void print_speeds(const engine *e) {
    fprintf(stderr, "prompt: %lld tokens in %.2f s (%.2f t/s)\ngenerated: %lld tokens in %.2f s (%.2f t/s)\n",
            (long long)e->n_prompt, e->t_prompt, e->t_prompt > 0 ? e->n_prompt / e->t_prompt : 0.0,
            (long long)e->n_gen, e->t_gen, e->t_gen > 0 ? e->n_gen / e->t_gen : 0.0);
    if (e->n_shifts) fprintf(stderr, "context shifts: %lld\n", (long long)e->n_shifts);
    if (e->spec) {
        gemma4_spec_stats st;
        gemma4_spec_stats_get(e->spec, 0, &st);
        fprintf(stderr, "drafts: %lld of %lld kept (%.1f%%), %lld verification passes\n", (long long)st.accepted,
                (long long)st.drafted, st.drafted ? 100.0 * st.accepted / st.drafted : 0.0, (long long)st.steps);
    }
}

/* ---------------------------------------------------------------- run */

int cmd_run(int argc, char **argv) {
    opts o = {.n_predict = 256, .type_k = GEMMA4_KV_F16, .type_v = GEMMA4_KV_F16};
    int rc = parse_args("run", argc, argv, &o, usage_run, run_only);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.prompt == !o.prompt_file)
        return fprintf(stderr, "gemma4 run: give exactly one of -p PROMPT and -f FILE (gemma4 run --help)\n"), 2;
    char *file_text = NULL;
    size_t file_len = 0;
    if (o.prompt_file && !(file_text = cli_read_input(o.prompt_file, &file_len))) return 1;
    const char *prompt = o.prompt ? o.prompt : file_text;

    char err[G4_ERR_LEN];
    engine e;
    stream st = {0};
    int32_t *ids = NULL;
    rc = 1;
    if (engine_open(&e, "run", &o) || stream_init(&st, e.v, o.special, false)) goto done;
    int64_t n = g4_tokenize(e.v, prompt, strlen(prompt), !o.raw, !o.raw, &ids, err);
    if (n < 0) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    if (n == 0 || n > INT32_MAX) {
        fprintf(stderr, "gemma4 run: the prompt has %s tokens\n", n ? "too many" : "no");
        goto done;
    }
    /* llama.cpp: --keep counts after BOS; -1, or more than the prompt, keeps all of it */
    const int64_t keep = o.n_keep < 0 || o.n_keep + !o.raw > n ? n : o.n_keep + !o.raw;
    if (set_keep(&e, keep, err) || feed_prompt(&e, ids, n, err) || generate(&e, o.n_predict, &st, err) < 0) {
        fprintf(stderr, "\ngemma4 run: %s\n", err);
        goto done;
    }
    fputc('\n', stdout);
    print_speeds(&e);
    rc = 0;
done:
    free(st.piece);
    free(ids);
    engine_close(&e);
    free(file_text);
    return rc;
}

/* ---------------------------------------------------------------- chat */

/* The conversation so far; texts[i] owns msgs[i].content. */
typedef struct history {
    gemma4_chat_message *msgs;
    char **texts;
    size_t n, cap;
} history;

static int history_add(history *h, const char *role, const char *text) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 16;
        gemma4_chat_message *m = realloc(h->msgs, cap * sizeof *m);
        if (m) h->msgs = m;
        char **t = realloc(h->texts, cap * sizeof *t);
        if (t) h->texts = t;
        if (!m || !t) return -1;
        h->cap = cap;
    }
    if (!(h->texts[h->n] = strdup(text))) return -1;
    h->msgs[h->n] = (gemma4_chat_message){.role = role, .content = h->texts[h->n]};
    h->n++;
    return 0;
}

static void history_free(history *h) {
    for (size_t i = 0; i < h->n; i++) free(h->texts[i]);
    free(h->texts);
    free(h->msgs);
}

/* The token ids of msgs[0..n) in the chat template (the model's own, the
 * --chat-template-file one or the built-in one), BOS first, where only the
 * template's own markers become control tokens: a user typing "<turn|>"
 * writes text, not the end of the turn. Counted first, then written. */
static int64_t chat_ids(const engine *e, const gemma4_chat_message *msgs, size_t n, const gemma4_chat_params *cp,
                        int32_t **ids, char *err) {
    int32_t count = gemma4_chat_tokenize(e->m, msgs, n, cp, NULL, 0, err);
    *ids = count > 0 ? malloc((size_t)count * sizeof **ids) : NULL;
    if (count > 0 && !*ids) return snprintf(err, G4_ERR_LEN, "out of memory"), -1;
    return count > 0 ? gemma4_chat_tokenize(e->m, msgs, n, cp, *ids, count, err) : count;
}

/* One exchange: render, feed what is new, stream the answer, keep it. */
static int chat_turn(engine *e, history *h, const opts *o, const gemma4_chat_params *cp, stream *st, char *err) {
    int32_t *ids = NULL;
    int64_t n = chat_ids(e, h->msgs, h->n, cp, &ids, err);
    int rc = -1;
    if (n > 0 && !feed_prompt(e, ids, n, err)) {
        stream_restart(st);
        if (generate(e, o->n_predict, st, err) >= 0) rc = 0;
    }
    free(ids);
    if (rc) return -1;
    fputc('\n', stdout);
    fflush(stdout);

    /* the answer without its thoughts: that is what the template keeps */
    g4_chat_output out;
    const char *answer = st->full;
    if (g4_chat_parse_output(st->full, st->full_len, false, &out, err) == 0) answer = out.content;
    rc = history_add(h, "assistant", answer); /* the role every template knows */
    g4_chat_output_free(&out);
    if (rc) snprintf(err, G4_ERR_LEN, "out of memory");
    return rc;
}

/* --chat-template-kwargs: a JSON object of template variables. Its
 * enable_thinking sets --think (both renderers read that); the built-in
 * renderer has no other variables, so any other key is named as ignored
 * when it is the one in use. 0, or -1 after printing why not. */
static int check_kwargs(const char *json, const gemma4_model *m, bool builtin, opts *o) {
    char err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse(json, strlen(json), "--chat-template-kwargs", err);
    if (!doc || doc->type != G4_JSON_OBJECT) {
        fprintf(stderr, "gemma4 chat: %s\n", doc ? "--chat-template-kwargs: not a JSON object" : err);
        return g4_json_free(doc), -1;
    }
    const bool has_template = g4_gguf_find_kv(g4_model_gguf(m), "tokenizer.chat_template") != NULL;
    for (size_t i = 0; i < doc->len; i++) {
        if (!strcmp(doc->keys[i].str, "enable_thinking") && doc->items[i].type == G4_JSON_BOOL)
            o->think = doc->items[i].boolean;
        else if (builtin || !has_template)
            fprintf(stderr, "gemma4 chat: --chat-template-kwargs: '%s' ignored: the built-in template has no such "
                            "variable\n", doc->keys[i].str);
    }
    g4_json_free(doc);
    return 0;
}

/* What a context shift keeps in chat: BOS and --keep tokens; -1 keeps the
 * system turn (llama.cpp keeps the whole first prompt). */
static int chat_keep(engine *e, const history *h, int32_t n_keep, const gemma4_chat_params *cp, char *err) {
    if (n_keep >= 0) return set_keep(e, (int64_t)n_keep + 1, err);
    int64_t n = 1;
    if (h->n) { /* only the system message is in the history yet */
        gemma4_chat_params sys = *cp;
        sys.add_generation_prompt = false;
        n = gemma4_chat_tokenize(e->m, h->msgs, h->n, &sys, NULL, 0, err);
        if (n < 0) return -1;
    }
    return set_keep(e, n, err);
}

int cmd_chat(int argc, char **argv) {
    opts o = {.n_predict = -1, .type_k = GEMMA4_KV_F16, .type_v = GEMMA4_KV_F16};
    int rc = parse_args("chat", argc, argv, &o, usage_chat, chat_only);
    if (rc) return rc < 0 ? 0 : rc;

    char err[G4_ERR_LEN];
    engine e;
    stream st = {0};
    history h = {0};
    char *line = NULL, *template_text = NULL;
    size_t line_cap = 0, template_len = 0;
    rc = 1;
    if (o.chat_template_file && !(template_text = cli_read_input(o.chat_template_file, &template_len))) return 1;
    const bool builtin = o.no_jinja && !template_text;
    if (engine_open(&e, "chat", &o) || stream_init(&st, e.v, false, true) ||
        (o.chat_template_kwargs && check_kwargs(o.chat_template_kwargs, e.m, builtin, &o)))
        goto done;
    const gemma4_chat_params cp = {.add_generation_prompt = true, .enable_thinking = o.think,
                                   .builtin_template = builtin, .template_source = template_text,
                                   .template_kwargs_json = o.chat_template_kwargs};
    st.thought_open = g4_vocab_find(e.v, "<|channel>", strlen("<|channel>"));
    st.thought_close = g4_vocab_find(e.v, "<channel|>", strlen("<channel|>"));
    st.show_thinking = o.show_thinking;
    if (o.system && history_add(&h, "system", o.system)) goto done;
    if (chat_keep(&e, &h, o.n_keep, &cp, err)) {
        fprintf(stderr, "gemma4 chat: %s\n", err);
        goto done;
    }

    bool tty = isatty(STDIN_FILENO);
    for (;;) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!strcmp(line, "/exit")) break;
        if (len == 0) continue;
        if (history_add(&h, "user", line)) {
            fprintf(stderr, "gemma4 chat: out of memory\n");
            goto done;
        }
        if (chat_turn(&e, &h, &o, &cp, &st, err)) {
            fprintf(stderr, "\ngemma4 chat: %s\n", err);
            goto done;
        }
    }
    print_speeds(&e);
    rc = 0;
done:
    free(line);
    free(template_text);
    free(st.piece);
    free(st.full);
    history_free(&h);
    engine_close(&e);
    return rc;
}
