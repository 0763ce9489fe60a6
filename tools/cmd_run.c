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
 * thought channel too, because the template drops thoughts from history. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gemma4_internal.h"
#include "tokenizer/chat.h"
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

typedef struct opts {
    const char *model, *prompt, *prompt_file, *system;
    int32_t n_predict, n_ctx, n_threads;
    gemma4_kv_type type_k, type_v;
    bool ignore_eos, raw, special, think, show_thinking, color;
    /* sampling overrides; the rest comes from the model */
    float temp, top_p, min_p;
    int32_t top_k;
    bool has_temp, has_top_k, has_top_p, has_min_p, has_seed;
    uint64_t seed;
} opts;

static void usage_common(FILE *out) {
    fprintf(out,
            "  -m, --model FILE       model (GGUF)\n"
            "  -c, --ctx-size N       context size in tokens (default: min(model context, 4096))\n"
            "  -t, --threads N        threads (default: number of cores)\n"
            "  -ctk, --cache-type-k T KV cache type of K: f32, f16, q8_0 (default: f16)\n"
            "  -ctv, --cache-type-v T KV cache type of V (default: f16)\n"
            "  --temp T         temperature; 0 = greedy (default: model's general.sampling.temp, else 1.0)\n"
            "  --top-k K        keep the K most likely tokens; 0 = off (default: model's, else 64)\n"
            "  --top-p P        keep the smallest set reaching probability P; 1 = off (default: model's, else 0.95)\n"
            "  --min-p P        drop tokens below P * the top probability; 0 = off (default: model's, else 0)\n"
            "  -s, --seed S     random seed (default: from the clock; the seed used is printed)\n"
            "  --ignore-eos     never stop at an end-of-generation token (they are not sampled)\n"
            "  --color          generated text in colour when stdout is a terminal\n"
            "  -ngl N, -fa [on|off|auto]  accepted for llama.cpp scripts and ignored (CPU only;\n"
            "                   attention is always exact)\n"
            "  -h, --help       this help\n");
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
            "  --raw            prompt is plain text: no BOS, special-token text not parsed\n"
            "  --special        print special tokens (e.g. <turn|>) in the output\n");
    usage_common(out);
}

static void usage_chat(FILE *out) {
    fprintf(out,
            "usage: gemma4 chat -m FILE [options]\n"
            "Reads one user message per line from stdin (a terminal or a pipe) until EOF or\n"
            "\"/exit\", answering each with the chat template of Gemma 4.\n"
            "  -sys, --system TEXT  system prompt\n"
            "  --think          let the model think before answering\n"
            "  --no-think       answer directly (default)\n"
            "  --show-thinking  print the thoughts too (between [thinking] and [/thinking])\n"
            "  -n, --n-predict N  tokens per answer at most; -1 = no limit (default: -1)\n");
    usage_common(out);
}

/* llama.cpp's spellings of our options, mapped onto the names used below,
 * so that scripts written for llama-cli / llama-completion run unchanged. */
static const char *const aliases[][2] = {
    {"--model", "-m"},      {"--prompt", "-p"},     {"--file", "-f"},           {"--n-predict", "-n"},
    {"--predict", "-n"},    {"--ctx-size", "-c"},   {"--threads", "-t"},        {"-s", "--seed"},
    {"--cache-type-k", "-ctk"}, {"--cache-type-v", "-ctv"}, {"-sys", "--system"}, {"--system-prompt", "--system"},
};

static const char *canonical(const char *a) {
    for (size_t k = 0; k < sizeof aliases / sizeof aliases[0]; k++)
        if (!strcmp(a, aliases[k][0])) return aliases[k][1];
    return a;
}

/* Options of llama.cpp that have no meaning here (GPU offload; flash
 * attention, which changes nothing: attention is computed exactly in f32
 * either way). Accepted, with one note on stderr, so scripts keep working. */
static int ignored_option(const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers") || !strcmp(a, "--gpu-layers")) {
        if (*i + 1 >= argc) return fprintf(stderr, "gemma4 %s: %s needs a value\n", cmd, a), -1;
        fprintf(stderr, "gemma4 %s: %s %s ignored: this engine runs on the CPU only\n", cmd, a, argv[++*i]);
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

/* 1 = option taken (*i advanced past its value), 0 = not an option of
 * this command, -1 = bad or missing value (message printed) */
static int parse_option(const char *cmd, int argc, char **argv, int *i, opts *o) {
    const char *a = canonical(argv[*i]);
    static const char *const flags[] = {"--ignore-eos", "--raw", "--special", "--think", "--no-think", "--show-thinking", "--color"};
    bool *const flag_dst[] = {&o->ignore_eos, &o->raw, &o->special, &o->think, &o->think, &o->show_thinking, &o->color};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
        if (!strcmp(a, flags[k])) {
            *flag_dst[k] = strcmp(a, "--no-think") != 0;
            return 1;
        }
    static const char *const with_value[] = {"-m", "-p", "-f", "--system", "-n", "-c", "-t", "-ctk", "-ctv",
                                             "--temp", "--top-k", "--top-p", "--min-p", "--seed"};
    size_t k = 0;
    while (k < sizeof with_value / sizeof with_value[0] && strcmp(a, with_value[k])) k++;
    if (k == sizeof with_value / sizeof with_value[0]) return ignored_option(cmd, argc, argv, i);
    if (*i + 1 >= argc) return fprintf(stderr, "gemma4 %s: %s needs a value\n", cmd, argv[*i]), -1;
    const char *v = argv[++*i];
    int bad = 0;
    if (!strcmp(a, "-m")) o->model = v;
    else if (!strcmp(a, "-p")) o->prompt = v;
    else if (!strcmp(a, "-f")) o->prompt_file = v;
    else if (!strcmp(a, "--system")) o->system = v;
    else if (!strcmp(a, "-n")) bad = cli_int(v, -1, INT32_MAX, &o->n_predict, a);
    else if (!strcmp(a, "-c")) bad = cli_int(v, 1, INT32_MAX, &o->n_ctx, a);
    else if (!strcmp(a, "-t")) bad = cli_int(v, 1, 1024, &o->n_threads, a);
    else if (!strcmp(a, "-ctk") || !strcmp(a, "-ctv")) {
        bad = gemma4_kv_type_from_name(v, a[3] == 'k' ? &o->type_k : &o->type_v);
        if (bad) fprintf(stderr, "gemma4: bad value for %s: '%s' (f32, f16, q8_0)\n", a, v);
    }
    else if (!strcmp(a, "--temp")) bad = cli_float(v, 0, 1e6, &o->temp, a), o->has_temp = true;
    else if (!strcmp(a, "--top-k")) bad = cli_int(v, 0, INT32_MAX, &o->top_k, a), o->has_top_k = true;
    else if (!strcmp(a, "--top-p")) bad = cli_float(v, 0, 1, &o->top_p, a), o->has_top_p = true;
    else if (!strcmp(a, "--min-p")) bad = cli_float(v, 0, 1, &o->min_p, a), o->has_min_p = true;
    else {
        char *end;
        o->seed = strtoull(v, &end, 10);
        o->has_seed = true;
        if (end == v || *end || *v == '-') bad = -1, fprintf(stderr, "gemma4: bad value for --seed: '%s'\n", v);
    }
    return bad ? -1 : 1;
}

/* 0 to go on, else the exit status (help printed, or a usage error) */
static int parse_args(const char *cmd, int argc, char **argv, opts *o, void (*usage)(FILE *),
                      bool (*allowed)(const char *)) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout), -1;
        int r = allowed(argv[i]) ? parse_option(cmd, argc, argv, &i, o) : 0;
        if (r < 0) return 2;
        if (r == 0) return fprintf(stderr, "gemma4 %s: unknown option '%s' (gemma4 %s --help lists them)\n", cmd, argv[i], cmd), 2;
    }
    if (!o->model) return fprintf(stderr, "gemma4 %s: -m FILE is required (gemma4 %s --help)\n", cmd, cmd), 2;
    return 0;
}

static bool run_only(const char *arg) {
    const char *a = canonical(arg);
    return strcmp(a, "--system") && strcmp(a, "--think") && strcmp(a, "--no-think") && strcmp(a, "--show-thinking");
}
static bool chat_only(const char *arg) {
    const char *a = canonical(arg);
    return strcmp(a, "-p") && strcmp(a, "-f") && strcmp(a, "--raw") && strcmp(a, "--special");
}

/* ---------------------------------------------------------------- the engine */

typedef struct engine {
    gemma4_model *m;
    const g4_vocab *v;
    gemma4_session *s;
    gemma4_sampler *smp;
    int32_t n_vocab;
    float *logits;           /* of the last position fed */
    int32_t *eog;            /* every end-of-generation id, masked by --ignore-eos */
    int32_t n_eog;
    bool ignore_eos;
    bool color;              /* generated text in colour (--color on a terminal) */
    int64_t n_prompt, n_gen; /* totals, for the speeds */
    double t_prompt, t_gen;
} engine;

static void engine_close(engine *e) {
    gemma4_sampler_free(e->smp);
    gemma4_session_free(e->s);
    gemma4_model_free(e->m);
    free(e->logits);
    free(e->eog);
}

static int engine_open(engine *e, const char *cmd, const opts *o) {
    char err[G4_ERR_LEN];
    memset(e, 0, sizeof *e);
    fprintf(stderr, "gemma4 %s: loading %s\n", cmd, o->model);
    double t0 = now_s();
    if (!(e->m = cli_load(o->model, err))) return fprintf(stderr, "%s\n", err), -1;
    e->v = g4_model_vocab(e->m);
    e->n_vocab = gemma4_n_vocab(e->m);
    gemma4_session_params sp = {.n_ctx = o->n_ctx, .n_threads = o->n_threads, .type_k = o->type_k, .type_v = o->type_v};
    cli_session_env(&sp);
    if (!(e->s = gemma4_session_new(e->m, &sp, err))) return fprintf(stderr, "%s\n", err), -1;

    gemma4_sampling p = gemma4_sampling_defaults(e->m);
    if (o->has_temp) p.temperature = o->temp;
    if (o->has_top_k) p.top_k = o->top_k;
    if (o->has_top_p) p.top_p = o->top_p;
    if (o->has_min_p) p.min_p = o->min_p;
    p.seed = o->has_seed ? o->seed : (uint64_t)time(NULL);
    if (!(e->smp = gemma4_sampler_new(&p, e->n_vocab)))
        return fprintf(stderr, "gemma4 %s: invalid sampling settings\n", cmd), -1;

    e->logits = malloc((size_t)e->n_vocab * sizeof *e->logits);
    e->eog = malloc((size_t)e->n_vocab * sizeof *e->eog);
    if (!e->logits || !e->eog) return fprintf(stderr, "gemma4 %s: out of memory\n", cmd), -1;
    for (int32_t id = 0; id < e->n_vocab; id++)
        if (g4_vocab_is_eog(e->v, id)) e->eog[e->n_eog++] = id;
    e->ignore_eos = o->ignore_eos;
    e->color = o->color && isatty(STDOUT_FILENO);
    fprintf(stderr, "gemma4 %s: %s model loaded in %.2f s; context %d, temp %g, top-k %d, top-p %g, min-p %g, seed %llu\n",
            cmd, gemma4_variant(e->m), now_s() - t0, gemma4_session_n_ctx(e->s), p.temperature, p.top_k, p.top_p,
            p.min_p, (unsigned long long)p.seed);
    return 0;
}

/* Makes the cache hold exactly ids[0..n): keeps the common prefix with what
 * is cached (or the checkpoint below it, when the sliding window there is
 * gone), processes the rest (at least the last token, whose logits are
 * needed) in chunks, with progress for long prompts, and checkpoints the
 * end of the prompt: the next chat turn, which drops this answer's
 * thoughts, resumes from there. */
static int feed_prompt(engine *e, const int32_t *ids, int32_t n, char *err) {
    if (n > gemma4_session_n_ctx(e->s)) {
        snprintf(err, G4_ERR_LEN, "prompt of %d tokens does not fit the context of %d (use -c)", n,
                 gemma4_session_n_ctx(e->s));
        return -1;
    }
    const int32_t keep = gemma4_session_truncate(e->s, gemma4_seq_common_prefix(e->s, 0, ids, n - 1));
    double t0 = now_s();
    bool progress = n - keep > PROMPT_CHUNK;
    for (int32_t done = keep; done < n;) {
        int32_t step = n - done < PROMPT_CHUNK ? n - done : PROMPT_CHUNK;
        if (gemma4_eval(e->s, ids + done, step, done + step == n ? e->logits : NULL, false, err)) return -1;
        done += step;
        if (progress) fprintf(stderr, "\rprompt: %d/%d tokens (%.1f t/s)", done - keep, n - keep, (done - keep) / (now_s() - t0));
    }
    if (progress) fputc('\n', stderr);
    gemma4_seq_checkpoint(e->s, 0);
    e->n_prompt += n - keep;
    e->t_prompt += now_s() - t0;
    return 0;
}

/* Where generated tokens go: text shown on stdout, and for chat the full
 * text with special tokens for the output parser. */
typedef struct stream {
    g4_detok shown;
    char *piece; /* scratch for one token's bytes */
    size_t piece_cap;
    int32_t thought_open, thought_close; /* -1 when not hiding thoughts */
    bool in_thought, show_thinking;
    bool collect;
    char *full; /* with collect: this turn's text, NUL-terminated */
    size_t full_len, full_cap;
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

static int stream_token(stream *st, int32_t id) {
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
    return 0;
}

static void stream_end(stream *st) {
    size_t n = g4_detok_flush(&st->shown, st->piece, st->piece_cap);
    fwrite(st->piece, 1, n, stdout);
    fflush(stdout);
}

/* Samples up to max_new tokens (-1: no limit) from e->logits onwards,
 * stopping at end of generation or a full context. Returns the number of
 * tokens generated, or -1 with err set. */
static int64_t generate(engine *e, int64_t max_new, stream *st, char *err) {
    double t0 = now_s();
    int64_t n = 0;
    if (e->color) fputs("\x1b[33m", stdout);
    while (max_new < 0 || n < max_new) {
        if (e->ignore_eos)
            for (int32_t i = 0; i < e->n_eog; i++) e->logits[e->eog[i]] = -INFINITY;
        int32_t id = gemma4_sample(e->smp, e->logits);
        if (id < 0) return snprintf(err, G4_ERR_LEN, "the model produced non-finite logits (NaN or infinity)"), -1;
        if (!e->ignore_eos && g4_vocab_is_eog(e->v, id)) break;
        n++;
        if (stream_token(st, id)) return snprintf(err, G4_ERR_LEN, "out of memory"), -1;
        if (max_new >= 0 && n == max_new) break;
        int32_t pos = gemma4_session_pos(e->s);
        if (pos == gemma4_session_n_ctx(e->s)) {
            fprintf(stderr, "\n[context of %d tokens is full]\n", pos);
            break;
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
    if (feed_prompt(&e, ids, (int32_t)n, err) || generate(&e, o.n_predict, &st, err) < 0) {
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
    g4_chat_msg *msgs;
    char **texts;
    size_t n, cap;
} history;

static int history_add(history *h, const char *role, const char *text) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 16;
        g4_chat_msg *m = realloc(h->msgs, cap * sizeof *m);
        if (m) h->msgs = m;
        char **t = realloc(h->texts, cap * sizeof *t);
        if (t) h->texts = t;
        if (!m || !t) return -1;
        h->cap = cap;
    }
    if (!(h->texts[h->n] = strdup(text))) return -1;
    h->msgs[h->n] = (g4_chat_msg){.role = role, .content = h->texts[h->n]};
    h->n++;
    return 0;
}

static void history_free(history *h) {
    for (size_t i = 0; i < h->n; i++) free(h->texts[i]);
    free(h->texts);
    free(h->msgs);
}

/* One exchange: render, feed what is new, stream the answer, keep it. */
static int chat_turn(engine *e, history *h, const opts *o, stream *st, char *err) {
    g4_chat_opts co = {.add_generation_prompt = true, .enable_thinking = o->think,
                       .empty_thought_channel = gemma4_empty_thought_channel(e->m)};
    char *prompt = g4_chat_format(h->msgs, h->n, &co, err);
    if (!prompt) return -1;
    int32_t *ids = NULL;
    int64_t n = g4_tokenize(e->v, prompt, strlen(prompt), true, true, &ids, err);
    free(prompt);
    int rc = -1;
    if (n > INT32_MAX) snprintf(err, G4_ERR_LEN, "the conversation is too long");
    if (n > 0 && n <= INT32_MAX && !feed_prompt(e, ids, (int32_t)n, err)) {
        st->full_len = 0;
        st->full[0] = 0;
        st->in_thought = false;
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
    rc = history_add(h, "model", answer);
    g4_chat_output_free(&out);
    if (rc) snprintf(err, G4_ERR_LEN, "out of memory");
    return rc;
}

int cmd_chat(int argc, char **argv) {
    opts o = {.n_predict = -1, .type_k = GEMMA4_KV_F16, .type_v = GEMMA4_KV_F16};
    int rc = parse_args("chat", argc, argv, &o, usage_chat, chat_only);
    if (rc) return rc < 0 ? 0 : rc;

    char err[G4_ERR_LEN];
    engine e;
    stream st = {0};
    history h = {0};
    char *line = NULL;
    size_t line_cap = 0;
    rc = 1;
    if (engine_open(&e, "chat", &o) || stream_init(&st, e.v, false, true)) goto done;
    st.thought_open = g4_vocab_find(e.v, "<|channel>", strlen("<|channel>"));
    st.thought_close = g4_vocab_find(e.v, "<channel|>", strlen("<channel|>"));
    st.show_thinking = o.show_thinking;
    if (o.system && history_add(&h, "system", o.system)) goto done;

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
        if (chat_turn(&e, &h, &o, &st, err)) {
            fprintf(stderr, "\ngemma4 chat: %s\n", err);
            goto done;
        }
    }
    print_speeds(&e);
    rc = 0;
done:
    free(line);
    free(st.piece);
    free(st.full);
    history_free(&h);
    engine_close(&e);
    return rc;
}
