/* gemma4: one binary, one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"
#include "tools/commands.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *usage;
} commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "interactive multi-turn chat"},
    {"logits", cmd_logits, "write raw logits of every position"},
    {"draft", cmd_draft, "an MTP drafter's logits after a prompt (compare with llama.cpp)"},
    {"info", cmd_info, "per-layer table and memory a model needs"},
    {"tokenize", cmd_tokenize, "text -> token ids"},
    {"detokenize", cmd_detokenize, "token ids -> text"},
    {"dump", cmd_dump, "print GGUF metadata and tensor table"},
    {"mkmodel", cmd_mkmodel, "write a synthetic Gemma 4 GGUF"},
    {"bench", cmd_bench, "prompt and generation speed, llama-bench style"},
    {"convert", cmd_convert, "Hugging Face checkpoint -> GGUF (QAT-exact Q4_0 with --qat)"},
    {"quantize", cmd_quantize, "re-quantise a float GGUF to another weight type"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"perplexity", cmd_perplexity, "perplexity and KL divergence of a text, as llama-perplexity"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: gemma4 COMMAND [options]   (gemma4 COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].usage);
}

int main(int argc, char **argv) {
    /* --version alone, or as a command's only option (the commands that
     * parse options themselves also take it anywhere) */
    if ((argc == 2 || argc == 3) && !strcmp(argv[argc - 1], "--version"))
        return cli_print_version(), 0;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gemma4: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
