#include "tools/bench/bench_report.h"

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "kernels/formats.h"

void bench_weights_of(const g4_gguf_file *f, int32_t n_expert, int32_t n_expert_used, bench_weights *w) {
    memset(w, 0, sizeof *w);
    const double expert_share = n_expert > 0 && n_expert_used > 0 ? (double)n_expert_used / n_expert : 1.0;
    const bool tied = g4_gguf_find_tensor(f, "output.weight") == NULL;
    uint64_t type_bytes[G4_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < g4_gguf_n_tensors(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
        w->bytes += t->nbytes;
        w->n_params += n;
        if (t->type < G4_TYPE_COUNT) type_bytes[t->type] += t->nbytes;

        const bool ple = !strcmp(t->name, "per_layer_token_embd.weight");
        const bool embd = !strcmp(t->name, "token_embd.weight");
        const bool head = tied ? embd : !strcmp(t->name, "output.weight");
        const double share = strstr(t->name, "_exps.weight") ? expert_share : 1.0;
        if (!ple) w->tg_bytes += share * (double)t->nbytes;
        if (head) w->head_params += (double)n;
        else if (!ple && !embd) w->token_params += share * (double)n;
    }
    for (uint32_t k = 0; k < G4_TYPE_COUNT; k++)
        if (type_bytes[k] > type_bytes[w->main_type]) w->main_type = k;
}

void bench_mean_sd(const double *v, int n, double *mean, double *sd) {
    double m = 0, q = 0;
    for (int i = 0; i < n; i++) m += v[i];
    m = n > 0 ? m / n : 0;
    for (int i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* The estimate: every core issues two FMA instructions per cycle (two FMA
 * pipes: Intel since Haswell, AMD since Zen 2, big Arm cores), each doing
 * 2 FLOPs on every FP32 lane of the ISA's vector. Integer dot products
 * (maddubs, dpbusd, sdot) do more operations per instruction, so a quantized
 * matmul can exceed this FP32 figure. */
double bench_peak_gflops(const char *isa, int n_threads, double ghz) {
    static const struct { const char *prefix; int lanes; } widths[] = {
        {"avx512", 16}, {"avx2", 8}, {"neon", 4}, {"scalar", 1},
    };
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++)
        if (!strncmp(isa, widths[i].prefix, strlen(widths[i].prefix)))
            return n_threads * ghz * widths[i].lanes * 2.0 * 2.0;
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Timed rather than read from /proc/cpuinfo, which in a VM shows the base
 * clock, not what a busy core runs at. A dependent integer add retires one
 * per cycle on every x86-64 and aarch64 core; the empty asm statements stop
 * the compiler from folding the chain, and four adds per loop step hide the
 * loop's own branch. Best of many short runs, so that on a busy machine
 * one of them runs without being preempted. */
double bench_measure_ghz(void) {
    const long steps = 1L << 18; /* four adds each: well under a scheduler time slice */
    double best = 0;
    for (int run = 0; run < 50; run++) {
        unsigned long x = 0;
        const double t0 = now_s();
        for (long i = 0; i < steps; i++) {
            x += 1;
            __asm__ volatile("" : "+r"(x));
            x += 1;
            __asm__ volatile("" : "+r"(x));
            x += 1;
            __asm__ volatile("" : "+r"(x));
            x += 1;
            __asm__ volatile("" : "+r"(x));
        }
        const double ghz = (double)x / (now_s() - t0) / 1e9;
        if (ghz > best) best = ghz;
    }
    return best;
}

void bench_result_finish(bench_result *r, const bench_weights *w) {
    bench_mean_sd(r->samples_ts, r->n_samples, &r->avg_ts, &r->stddev_ts);
    if (r->n_prompt > 0)
        r->rate = 2.0 * (w->token_params * r->n_prompt + w->head_params) * (r->avg_ts / r->n_prompt) / 1e9;
    else
        r->rate = r->avg_ts * w->tg_bytes / 1e9;
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

/* "E2B Q4_0": the variant and the type that holds most of the weights */
static void model_type(const bench_model *m, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "%s ", m->variant);
    for (const char *s = g4_type_name(m->w->main_type); *s && k + 1 < (int)cap; s++) buf[k++] = (char)toupper(*s);
    buf[k < (int)cap ? k : (int)cap - 1] = 0;
}

void bench_print_md(FILE *out, const bench_model *m, const bench_result *r, int n) {
    char type[64];
    model_type(m, type, sizeof type);
    fprintf(out, "| model | size | params | isa | threads | test | t/s | throughput | of machine limit |\n"
                 "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |\n");
    for (int i = 0; i < n; i++) {
        const bool pp = r[i].n_prompt > 0;
        const double limit = pp ? r[i].peak_gflops : r[i].membw_gbps;
        char share[48] = "-";
        if (limit > 0) snprintf(share, sizeof share, "%.0f%% of %.1f", 100.0 * r[i].rate / limit, limit);
        fprintf(out, "| %s | %.2f GiB | %.2f B | %s | %d | %s%d | %.2f ± %.2f | %.*f %s | %s |\n", type,
                gib(m->w->bytes), (double)m->w->n_params / 1e9, m->isa, r[i].n_threads, pp ? "pp" : "tg",
                pp ? r[i].n_prompt : r[i].n_gen, r[i].avg_ts, r[i].stddev_ts, pp ? 1 : 2, r[i].rate,
                pp ? "GFLOP/s" : "GB/s", share);
    }
}

static void json_str(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
    fputc('"', out);
}

/* A number, or null where the figure does not apply or is unknown. */
static void json_num(FILE *out, const char *key, double v, bool known) {
    fprintf(out, ", \"%s\": ", key);
    if (known) fprintf(out, "%.6g", v);
    else fputs("null", out);
}

void bench_print_json(FILE *out, const bench_model *m, const bench_result *r, int n) {
    char type[64];
    model_type(m, type, sizeof type);
    fputs("[\n", out);
    for (int i = 0; i < n; i++) {
        const bool pp = r[i].n_prompt > 0;
        const int n_tok = pp ? r[i].n_prompt : r[i].n_gen;
        double ns[BENCH_MAX_REPS], avg_ns, sd_ns; /* llama-bench's: time of one repetition */
        for (int k = 0; k < r[i].n_samples; k++) ns[k] = n_tok / r[i].samples_ts[k] * 1e9;
        bench_mean_sd(ns, r[i].n_samples, &avg_ns, &sd_ns);
        fputs("  {\"model_filename\": ", out);
        json_str(out, m->filename);
        fputs(", \"model_type\": ", out);
        json_str(out, type);
        fprintf(out, ", \"model_size\": %llu, \"model_n_params\": %llu, \"isa\": ", (unsigned long long)m->w->bytes,
                (unsigned long long)m->w->n_params);
        json_str(out, m->isa);
        fprintf(out, ", \"n_threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, \"avg_ns\": %.0f, \"stddev_ns\": %.0f",
                r[i].n_threads, r[i].n_prompt, r[i].n_gen, avg_ns, sd_ns);
        fprintf(out, ", \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ts\": [", r[i].avg_ts, r[i].stddev_ts);
        for (int k = 0; k < r[i].n_samples; k++) fprintf(out, "%s%.6f", k ? ", " : "", r[i].samples_ts[k]);
        fputc(']', out);
        json_num(out, "gbps", r[i].rate, !pp);
        json_num(out, "gflops", r[i].rate, pp);
        json_num(out, "membw_gbps", r[i].membw_gbps, r[i].membw_gbps > 0);
        json_num(out, "peak_gflops", r[i].peak_gflops, r[i].peak_gflops > 0);
        fprintf(out, "}%s\n", i + 1 < n ? "," : "");
    }
    fputs("]\n", out);
}
