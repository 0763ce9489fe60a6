/* gemma4 tokenize / detokenize: text <-> token ids with the vocabulary of a
 * GGUF file. Only the vocabulary is read, so vocabulary-only files work. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tools/cli.h"
#include "tools/commands.h"

static void tokenize_usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 tokenize -m FILE [options] (--file PATH | TEXT)\n"
            "prints the token ids of TEXT (or of the exact bytes of PATH), one per line\n\n"
            "  -m, --model FILE     GGUF file with a vocabulary (tensors are not needed)\n"
            "  --file PATH          tokenize the bytes of PATH instead of TEXT\n"
            "  --no-bos             do not add BOS (no special tokens added)\n"
            "  --no-parse-special   treat control-token text such as <|turn> as plain text\n"
            "  --json               print a JSON array\n"
            "  --pieces             print each id with its token text\n");
}

static void detokenize_usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 detokenize -m FILE [--special] ID...\n"
            "prints the text of the token ids (exact bytes, no newline added)\n\n"
            "  -m, --model FILE     GGUF file with a vocabulary\n"
            "  --special            also print control tokens such as <bos>\n");
}

/* The vocabulary of path; NULL after printing the one-line error. */
static g4_vocab *open_vocab(const char *path) {
    char err[G4_ERR_LEN];
    g4_gguf_file *f = g4_gguf_open(path, err);
    g4_vocab *v = f ? g4_vocab_load(f, err) : NULL;
    g4_gguf_close(f);
    if (!v) fprintf(stderr, "%s\n", err);
    return v;
}

/* Token text as the body of a JSON string (also keeps --pieces lines whole). */
static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\u%04x", c);
        else putchar(c);
    }
}

static void print_ids(const g4_vocab *v, const int32_t *ids, int64_t n, bool json, bool pieces) {
    if (json) putchar('[');
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        const char *text = g4_vocab_text(v, ids[i], &len);
        if (json && pieces) {
            printf("%s{\"id\":%d,\"piece\":\"", i ? "," : "", ids[i]);
            print_escaped(text, len);
            fputs("\"}", stdout);
        } else if (json) {
            printf("%s%d", i ? "," : "", ids[i]);
        } else if (pieces) {
            printf("%d\t", ids[i]);
            print_escaped(text, len);
            putchar('\n');
        } else {
            printf("%d\n", ids[i]);
        }
    }
    if (json) puts("]");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text = NULL;
    bool add_special = true, parse_special = true, json = false, pieces = false, options = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (options && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            tokenize_usage(stdout);
            return 0;
        } else if (options && (!strcmp(a, "-m") || !strcmp(a, "--model")) && has_value) {
            model = argv[++i];
        } else if (options && !strcmp(a, "--file") && has_value) {
            file = argv[++i];
        } else if (options && !strcmp(a, "--no-bos")) {
            add_special = false;
        } else if (options && !strcmp(a, "--no-parse-special")) {
            parse_special = false;
        } else if (options && !strcmp(a, "--json")) {
            json = true;
        } else if (options && !strcmp(a, "--pieces")) {
            pieces = true;
        } else if (options && !strcmp(a, "--")) {
            options = false;
        } else if (options && a[0] == '-' && a[1]) {
            fprintf(stderr, "gemma4 tokenize: unknown option or missing value: %s (see --help)\n", a);
            return 1;
        } else if (text) {
            fprintf(stderr, "gemma4 tokenize: more than one TEXT given (quote the text)\n");
            return 1;
        } else {
            text = a;
        }
    }
    if (!model || !!file == !!text) {
        fprintf(stderr, "gemma4 tokenize: need -m FILE and exactly one of --file PATH or TEXT (see --help)\n");
        return 1;
    }
    size_t len = text ? strlen(text) : 0;
    char *bytes = file ? cli_read_input(file, &len) : NULL;
    if (file && !bytes) return 1;
    g4_vocab *v = open_vocab(model);
    int status = 1;
    if (v) {
        int32_t *ids;
        char err[G4_ERR_LEN];
        int64_t n = g4_tokenize(v, file ? bytes : text, len, add_special, parse_special, &ids, err);
        if (n < 0) {
            fprintf(stderr, "%s\n", err);
        } else {
            print_ids(v, ids, n, json, pieces);
            status = fflush(stdout) == 0 ? 0 : 1;
        }
        free(ids);
    }
    g4_vocab_free(v);
    free(bytes);
    return status;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool special = false;
    int first_id = argc;
    for (int i = 1; i < argc && first_id == argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            detokenize_usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (a[0] == '-' && !(a[1] >= '0' && a[1] <= '9')) {
            fprintf(stderr, "gemma4 detokenize: unknown option or missing value: %s (see --help)\n", a);
            return 1;
        } else {
            first_id = i;
        }
    }
    if (!model) {
        fprintf(stderr, "gemma4 detokenize: need -m FILE (see --help)\n");
        return 1;
    }
    g4_vocab *v = open_vocab(model);
    if (!v) return 1;
    size_t cap = g4_vocab_max_piece(v) + G4_DETOK_HELD;
    char *out = malloc(cap);
    g4_detok d;
    g4_detok_init(&d, v, special);
    int status = 0;
    if (!out) {
        fprintf(stderr, "gemma4 detokenize: out of memory\n");
        status = 1;
    }
    for (int i = first_id; i < argc && status == 0; i++) {
        char *end;
        errno = 0;
        long id = strtol(argv[i], &end, 10);
        if (end == argv[i] || *end || errno || id < 0 || id >= g4_vocab_size(v)) {
            fprintf(stderr, "gemma4 detokenize: '%s' is not a token id (0..%d)\n", argv[i], g4_vocab_size(v) - 1);
            status = 1;
            break;
        }
        fwrite(out, 1, g4_detok_push(&d, (int32_t)id, out, cap), stdout);
    }
    if (status == 0) fwrite(out, 1, g4_detok_flush(&d, out, cap), stdout);
    if (fflush(stdout) != 0) status = 1;
    free(out);
    g4_vocab_free(v);
    return status;
}
