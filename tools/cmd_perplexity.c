/* gemma4 perplexity -m FILE -f TEXT [-c N] [--chunks N] [-t N]
 *                   [--kl-divergence-base OUT [--kl-divergence]]
 *
 * Perplexity as llama-perplexity measures it, so the numbers compare with
 * llama.cpp's: the text is tokenized once with BOS in front; it is cut into
 * chunks of n_ctx tokens (the remainder dropped); each chunk is evaluated
 * from an empty cache with its first token replaced by BOS; only the second
 * half of each chunk is scored (positions n_ctx/2 .. n_ctx-2 predicting the
 * token after them), so every scored token has at least n_ctx/2 tokens of
 * context. PPL = exp(mean NLL), its error the standard error of the mean
 * NLL times PPL.
 *
 * KL-divergence mode: --kl-divergence-base OUT alone writes the tokens and,
 * for every scored position, the log-probabilities of the whole vocabulary
 * (f32) to OUT; with --kl-divergence the tokens are read back from OUT, the
 * model under test is run on the same chunks, and the mean KL divergence
 * from the base distribution, its 99th percentile and maximum, and the share
 * of positions whose most likely token is the base's ("Same top p") are
 * reported. The base file is ours (magic "G4KLDB01"), not llama.cpp's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4.h"
#include "tools/cli.h"
#include "tools/cmd_perplexity.h"
#include "tools/commands.h"

static const char KLD_MAGIC[8] = {'G', '4', 'K', 'L', 'D', 'B', '0', '1'};

/* log-softmax of one row in double (llama-perplexity sums exp in double
 * too), into lp; returns nothing, lp[i] = l[i] - max - log(sum exp). */
static void log_softmax(const float *l, int32_t n, double *lp) {
    float mx = l[0];
    for (int32_t i = 1; i < n; i++)
        if (l[i] > mx) mx = l[i];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)l[i] - mx);
    double ls = log(sum);
    for (int32_t i = 0; i < n; i++) lp[i] = (double)l[i] - mx - ls;
}

static int argmax_d(const double *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Linear interpolation between the sorted values around q * (n - 1). */
static double percentile(const double *sorted, int64_t n, double q) {
    if (n <= 0) return 0;
    double at = q * (double)(n - 1);
    int64_t lo = (int64_t)at;
    if (lo >= n - 1) return sorted[n - 1];
    return sorted[lo] + (at - (double)lo) * (sorted[lo + 1] - sorted[lo]);
}

static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n ? 0 : -1; }
static int wr(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

int g4_perplexity(const g4_ppl_params *p, g4_ppl_result *r, FILE *out, char *err) {
    memset(r, 0, sizeof *r);
    gemma4_model *m = cli_load(p->model, err);
    if (!m) return -1;
    const int32_t n_vocab = gemma4_n_vocab(m);
    int32_t *toks = NULL, n_ctx = p->n_ctx;
    int64_t n_tok = 0;
    int rc = -1;
    FILE *base = NULL;
    gemma4_session *s = NULL;
    float *logits = NULL;
    double *lp = NULL, *lpb = NULL, *kl = NULL;
    float *row = NULL;

    if (p->kld) { /* the base file fixes the tokens and the chunking */
        uint32_t hdr[4];
        char magic[8];
        if (!p->kld_base || !(base = fopen(p->kld_base, "rb"))) {
            snprintf(err, GEMMA4_ERR_LEN, "perplexity: cannot read the KL base file %s", p->kld_base ? p->kld_base : "(none)");
            goto done;
        }
        if (rd(base, magic, 8) || memcmp(magic, KLD_MAGIC, 8) || rd(base, hdr, sizeof hdr) || hdr[1] != (uint32_t)n_vocab ||
            hdr[0] < 4 || hdr[3] > (1u << 28)) {
            snprintf(err, GEMMA4_ERR_LEN, "%s: not a KL base file of a %d-token vocabulary", p->kld_base, n_vocab);
            goto done;
        }
        n_ctx = (int32_t)hdr[0];
        n_tok = hdr[3];
        toks = malloc((size_t)n_tok * sizeof *toks);
        if (!toks || rd(base, toks, (size_t)n_tok * sizeof *toks)) {
            snprintf(err, GEMMA4_ERR_LEN, "%s: truncated", p->kld_base);
            goto done;
        }
        r->n_chunk = (int32_t)hdr[2];
    } else {
        size_t len;
        char *text = p->text ? cli_read_input(p->text, &len) : NULL;
        if (!text) {
            snprintf(err, GEMMA4_ERR_LEN, "perplexity: no text (-f FILE)");
            goto done;
        }
        int32_t n = gemma4_tokenize(m, text, len, true, false, NULL, 0, err);
        if (n > 0 && (toks = malloc((size_t)n * sizeof *toks)))
            n = gemma4_tokenize(m, text, len, true, false, toks, n, err);
        free(text);
        if (n <= 0 || !toks) {
            if (n == 0) snprintf(err, GEMMA4_ERR_LEN, "perplexity: the text has no tokens");
            goto done;
        }
        n_tok = n;
        if (n_ctx <= 0) {
            n_ctx = gemma4_n_ctx_train(m);
            if (n_ctx <= 0 || n_ctx > 512) n_ctx = 512;
        }
        if (n_tok < 2 * (int64_t)n_ctx) {
            snprintf(err, GEMMA4_ERR_LEN, "perplexity: %lld tokens; at least %d (2 x -c) are needed", (long long)n_tok, 2 * n_ctx);
            goto done;
        }
        r->n_chunk = (int32_t)(n_tok / n_ctx);
    }
    if (p->n_chunks > 0 && p->n_chunks < r->n_chunk) r->n_chunk = p->n_chunks;
    r->n_ctx = n_ctx;
    const int32_t first = n_ctx / 2;

    if (p->kld_base && !p->kld) {
        if (!(base = fopen(p->kld_base, "wb"))) {
            snprintf(err, GEMMA4_ERR_LEN, "perplexity: cannot write %s", p->kld_base);
            goto done;
        }
        uint32_t hdr[4] = {(uint32_t)n_ctx, (uint32_t)n_vocab, (uint32_t)r->n_chunk, (uint32_t)((int64_t)r->n_chunk * n_ctx)};
        if (wr(base, KLD_MAGIC, 8) || wr(base, hdr, sizeof hdr) || wr(base, toks, (size_t)hdr[3] * sizeof *toks)) {
            snprintf(err, GEMMA4_ERR_LEN, "perplexity: write to %s failed", p->kld_base);
            goto done;
        }
    }

    gemma4_session_params sp = {.n_ctx = n_ctx, .n_threads = p->n_threads};
    cli_session_env(&sp);
    s = gemma4_session_new(m, &sp, err);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    logits = malloc((size_t)n_ctx * n_vocab * sizeof *logits);
    lp = malloc((size_t)n_vocab * sizeof *lp);
    lpb = malloc((size_t)n_vocab * sizeof *lpb);
    row = malloc((size_t)n_vocab * sizeof *row);
    kl = malloc(((size_t)r->n_chunk * (n_ctx - first - 1) + 1) * sizeof *kl);
    if (!s || !chunk || !logits || !lp || !lpb || !row || !kl) {
        if (s) snprintf(err, GEMMA4_ERR_LEN, "perplexity: out of memory");
        free(chunk);
        goto done;
    }
    const int32_t bos = gemma4_token_bos(m);
    double nll = 0, nll2 = 0, nll_b = 0, nll2_b = 0, kl_sum = 0, kl_sum2 = 0;
    int64_t count = 0, same = 0;
    if (out) fprintf(out, "perplexity: %d chunks of %d tokens, %d scored per chunk\n", r->n_chunk, n_ctx, n_ctx - first - 1);
    for (int32_t c = 0; c < r->n_chunk; c++) {
        const int32_t *src = toks + (int64_t)c * n_ctx;
        memcpy(chunk, src, (size_t)n_ctx * sizeof *chunk);
        if (bos >= 0) chunk[0] = bos; /* every chunk starts as a fresh text would */
        gemma4_session_truncate(s, 0);
        if (gemma4_eval(s, chunk, n_ctx, logits, true, err)) {
            free(chunk);
            goto done;
        }
        for (int32_t j = first; j < n_ctx - 1; j++) {
            const int32_t next = src[j + 1];
            log_softmax(logits + (size_t)j * n_vocab, n_vocab, lp);
            nll -= lp[next];
            nll2 += lp[next] * lp[next];
            if (p->kld) {
                if (rd(base, row, (size_t)n_vocab * sizeof *row)) {
                    snprintf(err, GEMMA4_ERR_LEN, "%s: truncated", p->kld_base);
                    free(chunk);
                    goto done;
                }
                double d = 0;
                for (int32_t i = 0; i < n_vocab; i++) {
                    lpb[i] = row[i];
                    d += exp(lpb[i]) * (lpb[i] - lp[i]);
                }
                kl[count] = d;
                kl_sum += d;
                kl_sum2 += d * d;
                same += argmax_d(lp, n_vocab) == argmax_d(lpb, n_vocab);
                nll_b -= lpb[next];
                nll2_b += lpb[next] * lpb[next];
            } else if (base) {
                for (int32_t i = 0; i < n_vocab; i++) row[i] = (float)lp[i];
                if (wr(base, row, (size_t)n_vocab * sizeof *row)) {
                    snprintf(err, GEMMA4_ERR_LEN, "perplexity: write to %s failed", p->kld_base);
                    free(chunk);
                    goto done;
                }
            }
            count++;
        }
        if (out) fprintf(out, "[%d]%.4f,%s", c + 1, exp(nll / (double)count), c + 1 == r->n_chunk ? "\n" : ""), fflush(out);
    }
    free(chunk);
    r->n_scored = count;
    const double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
    r->ppl = exp(mean);
    r->ppl_err = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) * r->ppl : 0;
    if (out) fprintf(out, "Final estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_err);
    if (p->kld) {
        const double mb = nll_b / (double)count, vb = nll2_b / (double)count - mb * mb;
        r->ppl_base = exp(mb);
        r->kld_mean = kl_sum / (double)count;
        const double kv = kl_sum2 / (double)count - r->kld_mean * r->kld_mean;
        r->kld_err = kv > 0 && count > 1 ? sqrt(kv / (double)(count - 1)) : 0;
        qsort(kl, (size_t)count, sizeof *kl, cmp_double);
        r->kld_max = kl[count - 1];
        r->kld_p99 = percentile(kl, count, 0.99);
        r->kld_median = percentile(kl, count, 0.5);
        r->same_top = (double)same / (double)count;
        r->same_top_err = count > 1 ? sqrt(r->same_top * (1 - r->same_top) / (double)(count - 1)) : 0;
        if (out) {
            fprintf(out, "Mean PPL(Q)    : %10.6f +/- %.6f\n", r->ppl, r->ppl_err);
            fprintf(out, "Mean PPL(base) : %10.6f +/- %.6f\n", r->ppl_base,
                    vb > 0 && count > 1 ? sqrt(vb / (double)(count - 1)) * r->ppl_base : 0);
            fprintf(out, "Mean    KLD    : %10.6f +/- %.6f\n", r->kld_mean, r->kld_err);
            fprintf(out, "Maximum KLD    : %10.6f\n", r->kld_max);
            fprintf(out, "99.0%%   KLD    : %10.6f\n", r->kld_p99);
            fprintf(out, "Median  KLD    : %10.6f\n", r->kld_median);
            fprintf(out, "Same top p     : %6.3f +/- %.3f %%\n", 100 * r->same_top, 100 * r->same_top_err);
        }
    }
    rc = 0;
done:
    if (base && fclose(base) && !rc && p->kld_base && !p->kld) {
        snprintf(err, GEMMA4_ERR_LEN, "perplexity: write to %s failed", p->kld_base);
        rc = -1;
    }
    free(toks);
    free(logits);
    free(lp);
    free(lpb);
    free(row);
    free(kl);
    gemma4_session_free(s);
    gemma4_model_free(m);
    return rc;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 perplexity -m FILE -f TEXT [-c N] [--chunks N] [-t N]\n"
            "                         [--kl-divergence-base OUT [--kl-divergence]]\n"
            "  Perplexity of TEXT as llama-perplexity computes it: chunks of N tokens (default\n"
            "  min(512, model context)), each started with BOS, the second half of each scored.\n"
            "  --kl-divergence-base OUT   write the scored log-probabilities (f32) to OUT\n"
            "  --kl-divergence            instead read OUT (its tokens; -f not needed) and report\n"
            "                             mean KL divergence, its 99th percentile and the share of\n"
            "                             positions with the same most likely token (Same top p)\n"
            "  --chunks N                 only the first N chunks\n"
            "  --no-mmap, --mlock         read the model into memory; lock it in RAM\n");
}

int cmd_perplexity(int argc, char **argv) {
    g4_ppl_params p = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        if (!strcmp(a, "--kl-divergence")) {
            p.kld = true;
            continue;
        }
        if (cli_load_option(a)) continue; /* --no-mmap, --mlock */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return fprintf(stderr, "gemma4 perplexity: %s needs a value\n", a), usage(stderr), 2;
        i++;
        if (!strcmp(a, "-m")) p.model = v;
        else if (!strcmp(a, "-f")) p.text = v;
        else if (!strcmp(a, "--kl-divergence-base")) p.kld_base = v;
        else if (!strcmp(a, "-c")) { if (cli_int(v, 4, 1 << 20, &p.n_ctx, "-c")) return 2; }
        else if (!strcmp(a, "--chunks")) { if (cli_int(v, 1, 1 << 30, &p.n_chunks, "--chunks")) return 2; }
        else if (!strcmp(a, "-t")) { if (cli_int(v, 1, 1024, &p.n_threads, "-t")) return 2; }
        else return fprintf(stderr, "gemma4 perplexity: unknown option '%s'\n", a), usage(stderr), 2;
    }
    if (!p.model || (!p.text && !p.kld) || (p.kld && !p.kld_base))
        return fprintf(stderr, "gemma4 perplexity: need -m and -f (or --kl-divergence with --kl-divergence-base)\n"),
               usage(stderr), 2;
    char err[GEMMA4_ERR_LEN];
    g4_ppl_result r;
    if (g4_perplexity(&p, &r, stdout, err)) return fprintf(stderr, "%s\n", err), 1;
    return 0;
}
