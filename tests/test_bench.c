/* The arithmetic and output of `gemma4 bench` (tools/bench/bench_report.c): which
 * bytes and parameters a token costs, statistics, the peak estimate, and the
 * table and JSON forms. Expected values are worked out by hand from the
 * tensor shapes below; nothing here is timed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "kernels/formats.h"
#include "tests/harness.h"
#include "gguf/json.h"
#include "tools/bench/bench_report.h"

static bool near(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1.0, fabs(b)); }

/* A model-like file of zeros: the embedding tables, one attention matrix,
 * an 8-expert tensor, a norm, and optionally an untied output head. */
static g4_gguf_file *write_model(const char *path, bool untied) {
    static const struct { const char *name; enum g4_type type; uint32_t n_dims; int64_t ne[3]; } t[] = {
        {"token_embd.weight", G4_TYPE_Q4_0, 2, {64, 10, 1}},           /* 10 rows x 2 blocks x 18 = 360 B */
        {"per_layer_token_embd.weight", G4_TYPE_F32, 2, {32, 10, 1}},  /* 1280 B */
        {"blk.0.attn_q.weight", G4_TYPE_F16, 2, {64, 32, 1}},          /* 4096 B */
        {"blk.0.ffn_up_exps.weight", G4_TYPE_Q8_0, 3, {64, 16, 8}},    /* 128 rows x 2 x 34 = 8704 B */
        {"blk.0.attn_norm.weight", G4_TYPE_F32, 1, {64, 1, 1}},        /* 256 B */
        {"output.weight", G4_TYPE_F32, 2, {64, 10, 1}},                /* 2560 B */
    };
    char err[G4_ERR_LEN];
    g4_gguf_writer *w = g4_gguf_writer_new(path, 0, err);
    int ok = w && !g4_gguf_writer_set_str(w, "general.architecture", "gemma4", err);
    for (size_t i = 0; ok && i < sizeof t / sizeof t[0] - !untied; i++)
        ok = !g4_gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne, err);
    ok = ok && !g4_gguf_writer_begin(w, err);
    static const unsigned char zeros[16384];
    for (int64_t i = 0; ok && i < g4_gguf_writer_n_tensors(w); i++)
        ok = !g4_gguf_writer_write(w, zeros, g4_gguf_writer_tensor_nbytes(w, i), err);
    ok = ok && !g4_gguf_writer_finish(w, err);
    g4_gguf_writer_free(w);
    g4_gguf_file *f = ok ? g4_gguf_open(path, err) : NULL;
    CHECK(f != NULL, "%s", err);
    return f;
}

static void test_weights(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/test_bench_%d.gguf", dir, (int)getpid());

    g4_gguf_file *f = write_model(path, false);
    if (f) {
        bench_weights w;
        bench_weights_of(f, 8, 2, &w);
        CHECK(w.bytes == 360 + 1280 + 4096 + 8704 + 256, "bytes %llu", (unsigned long long)w.bytes);
        CHECK(w.n_params == 640 + 320 + 2048 + 8192 + 64, "params %llu", (unsigned long long)w.n_params);
        CHECK(w.main_type == G4_TYPE_Q8_0, "main type %u", w.main_type);
        /* no PLE table, a quarter of the experts */
        CHECK(near(w.tg_bytes, 360 + 4096 + 8704 / 4 + 256), "tg bytes %g", w.tg_bytes);
        CHECK(near(w.head_params, 640), "tied head %g", w.head_params);
        CHECK(near(w.token_params, 2048 + 8192 / 4 + 64), "token params %g", w.token_params);
        bench_weights_of(f, 0, 0, &w); /* dense: every expert row counts */
        CHECK(near(w.tg_bytes, 360 + 4096 + 8704 + 256), "dense tg bytes %g", w.tg_bytes);
        g4_gguf_close(f);
    }
    f = write_model(path, true);
    if (f) {
        bench_weights w;
        bench_weights_of(f, 8, 2, &w);
        CHECK(near(w.tg_bytes, 360 + 4096 + 8704 / 4 + 256 + 2560), "untied tg bytes %g", w.tg_bytes);
        CHECK(near(w.head_params, 640), "untied head %g", w.head_params);
        CHECK(near(w.token_params, 2048 + 8192 / 4 + 64), "untied token params %g", w.token_params);
        g4_gguf_close(f);
    }
    unlink(path);
}

static void test_stats(void) {
    const double v[] = {2, 4, 4, 4, 5, 5, 7, 9};
    double mean, sd;
    bench_mean_sd(v, 8, &mean, &sd);
    CHECK(near(mean, 5) && near(sd, sqrt(32.0 / 7)), "mean %g sd %g", mean, sd);
    bench_mean_sd(v + 6, 1, &mean, &sd);
    CHECK(mean == 7 && sd == 0, "one sample: mean %g sd %g", mean, sd);

    CHECK(near(bench_peak_gflops("avx2", 2, 3.0), 2 * 3.0 * 8 * 4), "avx2 %g", bench_peak_gflops("avx2", 2, 3.0));
    CHECK(near(bench_peak_gflops("avx512", 1, 2.0), 128), "avx512 %g", bench_peak_gflops("avx512", 1, 2.0));
    CHECK(near(bench_peak_gflops("neon", 4, 1.0), 64), "neon %g", bench_peak_gflops("neon", 4, 1.0));
    CHECK(bench_peak_gflops("mystery", 1, 3.0) == 0, "unknown isa");

    const bench_weights w = {.tg_bytes = 6888, .token_params = 4160, .head_params = 640};
    bench_result tg = {.n_gen = 16, .n_samples = 2, .samples_ts = {10, 12}};
    bench_result_finish(&tg, &w);
    CHECK(near(tg.avg_ts, 11) && near(tg.stddev_ts, sqrt(2.0)), "tg %g ± %g", tg.avg_ts, tg.stddev_ts);
    CHECK(near(tg.rate, 11 * 6888 / 1e9), "tg GB/s %g", tg.rate);
    bench_result pp = {.n_prompt = 4, .n_samples = 1, .samples_ts = {8}};
    bench_result_finish(&pp, &w);
    /* 8 t/s of 4-token evals: 2 evals a second, each 4 rows plus one head row */
    CHECK(near(pp.rate, 2 * (4160 * 4 + 640) * 2 / 1e9), "pp GFLOP/s %g", pp.rate);
}

/* A numeric member, NAN when absent or not a number (so a CHECK fails, never crashes). */
static double num(const g4_json *o, const char *key) {
    const g4_json *v = g4_json_get_type(o, key, G4_JSON_NUMBER);
    return v ? v->number : NAN;
}

static bool is_null(const g4_json *o, const char *key) {
    const g4_json *v = g4_json_get(o, key);
    return v && v->type == G4_JSON_NULL;
}

static char *print_to_string(bool json, const bench_model *m, const bench_result *r, int n, size_t *len) {
    char *buf = NULL;
    FILE *out = open_memstream(&buf, len);
    if (!out) return NULL;
    if (json) bench_print_json(out, m, r, n);
    else bench_print_md(out, m, r, n);
    fclose(out);
    return buf;
}

static void test_output(void) {
    const bench_weights w = {.bytes = 2630938592ull, .n_params = 4630000000ull, .main_type = G4_TYPE_Q4_K};
    const bench_model m = {.filename = "/tmp/a \"b\".gguf", .variant = "E2B", .isa = "avx2", .w = &w};
    const bench_result r[2] = {
        {.n_threads = 2, .n_prompt = 512, .n_samples = 2, .samples_ts = {30, 34}, .avg_ts = 32, .stddev_ts = 2.83,
         .rate = 120.25, .membw_gbps = 26, .peak_gflops = 160},
        {.n_threads = 2, .n_gen = 4, .n_samples = 2, .samples_ts = {10, 20}, .avg_ts = 15, .stddev_ts = 7.07,
         .rate = 13.0, .membw_gbps = 26, .peak_gflops = 0},
    };
    size_t len;
    char *md = print_to_string(false, &m, r, 2, &len);
    CHECK(md && strstr(md, "| E2B Q4_K | 2.45 GiB | 4.63 B | avx2 | 2 | pp512 | 32.00 ± 2.83 | 120.2 GFLOP/s | 75% of 160.0 |\n"),
          "md pp row in:\n%s", md ? md : "(nothing)");
    CHECK(md && strstr(md, "| E2B Q4_K | 2.45 GiB | 4.63 B | avx2 | 2 | tg4 | 15.00 ± 7.07 | 13.00 GB/s | 50% of 26.0 |\n"),
          "md tg row in:\n%s", md ? md : "(nothing)");
    free(md);

    char *js = print_to_string(true, &m, r, 2, &len);
    char err[G4_ERR_LEN] = "";
    g4_json *v = js ? g4_json_parse(js, len, "bench json", err) : NULL;
    CHECK(v && v->type == G4_JSON_ARRAY && v->len == 2, "json array of 2 (%s):\n%s", err, js ? js : "(nothing)");
    if (v && v->type == G4_JSON_ARRAY && v->len == 2) {
        const g4_json *a = &v->items[0], *b = &v->items[1];
        const g4_json *fn = g4_json_get_type(a, "model_filename", G4_JSON_STRING), *isa = g4_json_get_type(a, "isa", G4_JSON_STRING);
        CHECK(fn && !strcmp(fn->str, m.filename), "model_filename");
        CHECK(isa && !strcmp(isa->str, "avx2"), "isa");
        CHECK(num(a, "n_prompt") == 512 && num(a, "n_gen") == 0, "pp sizes");
        CHECK(num(b, "n_prompt") == 0 && num(b, "n_gen") == 4, "tg sizes");
        CHECK(num(a, "n_threads") == 2 && num(a, "model_size") == 2630938592.0, "threads, size");
        CHECK(num(a, "avg_ts") == 32 && num(b, "stddev_ts") == 7.07, "t/s");
        CHECK(is_null(a, "gbps") && near(num(a, "gflops"), 120.25), "pp rates");
        CHECK(is_null(b, "gflops") && near(num(b, "gbps"), 13.0), "tg rates");
        CHECK(is_null(b, "peak_gflops") && num(b, "membw_gbps") == 26, "limits");
        /* 4 tokens at 10 and 20 t/s: 0.4 s and 0.2 s per repetition */
        CHECK(near(num(b, "avg_ns"), 3e8) && fabs(num(b, "stddev_ns") - sqrt(2) * 1e8) < 1, "ns %g %g", num(b, "avg_ns"),
              num(b, "stddev_ns"));
        const g4_json *s = g4_json_get_type(b, "samples_ts", G4_JSON_ARRAY);
        CHECK(s && s->len == 2 && s->items[1].number == 20, "samples_ts");
    }
    g4_json_free(v);
    free(js);
}

int main(void) {
    const char *dir = getenv("TMPDIR");
    test_weights(dir && *dir ? dir : "/tmp");
    test_stats();
    test_output();
    return test_summary("test_bench");
}
