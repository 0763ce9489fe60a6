/* The public API of gemma4.h beyond loading and decoding (which the other
 * tests drive): load parameters, tokenizing and detokenizing, special
 * tokens, the chat template, the dump callback, KV usage and type names,
 * and the library's failure paths that must reach the caller instead of
 * ending the process: a matmul that cannot get its memory fails the
 * decode, and the interleaved kernels run any width without allocating. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model.h"
#include "tests/harness.h"
#include "tokenizer/chat.h"

/* The huge request below must come back as NULL under ASan too. */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static gemma4_model *load(const char *name, const gemma4_load_params *p) {
    char path[1024], err[GEMMA4_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/models/%s.gguf", test_fixtures_dir(), name);
    gemma4_model *m = gemma4_load_ex(path, p, err);
    CHECK(m != NULL, "load %s: %s", name, err);
    return m;
}

/* Logits of the last of n ids fed to a fresh session (NULL on failure). */
static float *last_logits(const gemma4_model *m, const gemma4_session_params *sp, const int32_t *ids, int32_t n) {
    char err[GEMMA4_ERR_LEN] = "";
    gemma4_session *s = gemma4_session_new(m, sp, err);
    float *logits = malloc((size_t)gemma4_n_vocab(m) * sizeof *logits);
    const bool ok = s && logits && !gemma4_eval(s, ids, n, logits, false, err);
    CHECK(ok, "eval: %s", err);
    gemma4_session_free(s);
    if (!ok) free(logits);
    return ok ? logits : NULL;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static const int32_t ids[] = {2, 170, 37, 401, 288, 9, 77};
enum { N_IDS = sizeof ids / sizeof ids[0] };

static int count_interleaved(const gemma4_model *m) {
    int n = 0;
    for (int32_t l = 0; l < m->n_layer; l++) n += m->layers[l].attn_q.interleaved + m->layers[l].ffn_down.interleaved;
    return n;
}

static void test_load_params(void) {
    char err[GEMMA4_ERR_LEN] = "";
    const g4_kernels *before = g4_kernels_active();
    char path[1024];
    snprintf(path, sizeof path, "%s/models/e2b_q4_0.gguf", test_fixtures_dir());
    CHECK(!gemma4_load_ex(path, &(gemma4_load_params){.isa = "bogus"}, err) && strstr(err, "kernels 'bogus' are unknown") &&
              !strncmp(err, path, strlen(path)),
          "an unknown ISA fails the load, naming the file: %s", err);
    CHECK(g4_kernels_active() == before, "a failed load leaves the kernels as they were");

    /* default: the best kernels; Q4_0 interleaved where they have interleaved kernels */
    gemma4_model *best = load("e2b_q4_0", NULL);
    gemma4_model *mapped = load("e2b_q4_0", &(gemma4_load_params){.no_repack = true});
    if (!best || !mapped) goto done;
    const bool x8 = before->mul_rows_x8[G4_TYPE_Q4_0] != NULL;
    CHECK(count_interleaved(best) == (x8 ? 2 * best->n_layer : 0), "%s: %d of %d matrices interleaved", before->isa,
          count_interleaved(best), 2 * best->n_layer);
    CHECK(count_interleaved(mapped) == 0, "no_repack: %d matrices interleaved", count_interleaved(mapped));
    float *a = last_logits(best, NULL, ids, N_IDS), *b = last_logits(mapped, NULL, ids, N_IDS);
    /* the interleaved kernels sum in another order: equal within rounding */
    const double d = a && b ? max_abs_diff(a, b, gemma4_n_vocab(best)) : 1e9;
    printf("no_repack vs interleaved: max |d logit| %.3g\n", d);
    CHECK(d < 1e-4, "no_repack changes the logits by %g", d);
    free(b);

    /* a named table becomes the process's, and its weights are laid out for it */
    gemma4_model *scalar = load("e2b_q4_0", &(gemma4_load_params){.isa = "scalar"});
    CHECK(scalar && !strcmp(g4_kernels_active()->isa, "scalar"), "isa = scalar selects %s", g4_kernels_active()->isa);
    CHECK(scalar && count_interleaved(scalar) == 0, "the scalar table has no interleaved kernel: nothing interleaved");
    b = scalar ? last_logits(scalar, NULL, ids, N_IDS) : NULL;
    const double ds = a && b ? max_abs_diff(a, b, gemma4_n_vocab(best)) : 1e9;
    printf("scalar vs %s: max |d logit| %.3g\n", before->isa, ds);
    CHECK(ds < 1e-4, "scalar kernels change the logits by %g", ds);
    gemma4_model *again = load("e2b_q4_0", &(gemma4_load_params){.isa = before->isa});
    CHECK(g4_kernels_active() == before, "naming %s again restores it", before->isa);
    free(a);
    free(b);
    gemma4_model_free(scalar);
    gemma4_model_free(again);
done:
    gemma4_model_free(best);
    gemma4_model_free(mapped);
}

static void test_text(const gemma4_model *m) {
    char err[GEMMA4_ERR_LEN] = "", buf[256];
    const char *text = "Hello world, this is gemma4.";
    int32_t out[64], few[3] = {-7, -7, -7};
    const int32_t n = gemma4_tokenize(m, text, strlen(text), true, false, out, 64, err);
    CHECK(n > 3 && n < 64 && out[0] == gemma4_token_bos(m), "tokenize: %d ids, first %d: %s", n, out[0], err);
    int32_t *ref = NULL;
    const int64_t n_ref = g4_tokenize(g4_model_vocab(m), text, strlen(text), true, false, &ref, err);
    CHECK(n_ref == n && ref && !memcmp(ref, out, (size_t)n * sizeof *out), "the ids are the tokenizer's own");
    free(ref);
    CHECK(gemma4_tokenize(m, text, strlen(text), true, false, few, 2, err) == n && few[0] == out[0] && few[1] == out[1] &&
              few[2] == -7,
          "cap 2: the count, the first 2 ids and nothing past them");
    CHECK(gemma4_tokenize(m, text, strlen(text), false, false, NULL, 0, err) == n - 1, "without BOS: one id fewer");

    /* ids back to text, BOS (a control token) rendered as nothing */
    const size_t len = gemma4_detokenize(m, out, n, false, NULL, 0);
    CHECK(len == strlen(text), "detokenize measures %zu bytes, expected %zu", len, strlen(text));
    CHECK(gemma4_detokenize(m, out, n, false, buf, sizeof buf) == len && !strcmp(buf, text), "round trip: '%s'", buf);
    CHECK(gemma4_detokenize(m, out, n, false, buf, len) == len && buf[0] == 0, "one byte short: an empty string");
    const size_t with_bos = gemma4_detokenize(m, out, 1, true, buf, sizeof buf);
    CHECK(with_bos == 5 && !strcmp(buf, "<bos>"), "render_special shows BOS: '%s'", buf);
    size_t at = 0;
    for (int32_t i = 1; i < n; i++) at += gemma4_token_to_piece(m, out[i], false, buf + at, sizeof buf - at);
    CHECK(at == len && !memcmp(buf, text, len), "the pieces concatenate to the text");
    CHECK(gemma4_token_to_piece(m, gemma4_n_vocab(m), false, buf, sizeof buf) == 0, "an id out of range has no piece");

    const int32_t eot = g4_vocab_find(g4_model_vocab(m), "<turn|>", 7), eos = gemma4_token_eos(m);
    CHECK(eot >= 0 && gemma4_token_is_eog(m, eot) && eos >= 0 && gemma4_token_is_eog(m, eos), "<turn|> %d and EOS %d end generation",
          eot, eos);
    CHECK(!gemma4_token_is_eog(m, out[1]) && !gemma4_token_is_eog(m, -1), "a word or a bad id does not");
}

static void test_chat(const gemma4_model *m, const char *gen_prompt) {
    char err[GEMMA4_ERR_LEN] = "", want[256];
    const gemma4_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi <turn|>"}};
    char *text = gemma4_chat_format(m, msgs, 2, &(gemma4_chat_params){.add_generation_prompt = true}, err);
    snprintf(want, sizeof want, "<|turn>system\nBe brief.<turn|>\n<|turn>user\nHi <turn|><turn|>\n%s", gen_prompt);
    CHECK(text && !strcmp(text, want), "chat prompt:\n%s\nexpected:\n%s (%s)", text ? text : "(null)", want, err);
    free(text);
    text = gemma4_chat_format(m, msgs + 1, 1, NULL, err);
    CHECK(text && !strcmp(text, "<|turn>user\nHi <turn|><turn|>\n"), "no generation prompt: '%s'", text ? text : err);
    free(text);
    const gemma4_chat_message bad[] = {{"user", "a"}, {"system", "late"}};
    CHECK(!gemma4_chat_format(m, bad, 2, NULL, err) && strstr(err, "system"), "a late system message is refused: %s", err);

    /* as ids: only the template's markers are control tokens, so the
     * "<turn|>" typed in the message is text */
    int32_t t[128];
    const int32_t n = gemma4_chat_tokenize(m, msgs, 2, &(gemma4_chat_params){.add_generation_prompt = true}, t, 128, err);
    const int32_t eot = g4_vocab_find(g4_model_vocab(m), "<turn|>", 7);
    int n_eot = 0;
    for (int32_t i = 0; i < n && i < 128; i++) n_eot += t[i] == eot;
    CHECK(n > 0 && n < 128 && t[0] == gemma4_token_bos(m) && n_eot == 2, "chat ids: %d, BOS %d, %d end-of-turn ids (2 turns)", n,
          t[0], n_eot);
    CHECK(gemma4_chat_tokenize(m, bad, 2, NULL, t, 128, err) == -1, "chat_tokenize refuses what chat_format refuses");
}

/* Counts what the dump callback received. */
typedef struct {
    int calls, inp_scaled, attn_norm_0, result_output;
    int64_t result_n;
    int32_t max_token;
} dump_seen;

static void on_dump(void *user, const char *name, int32_t token, const float *x, int64_t n) {
    dump_seen *d = user;
    d->calls++;
    d->inp_scaled += !strcmp(name, "inp_scaled");
    d->attn_norm_0 += !strcmp(name, "attn_norm-0");
    if (!strcmp(name, "result_output")) d->result_output++, d->result_n = n;
    if (token > d->max_token) d->max_token = token;
    (void)x;
}

static void test_dump(const gemma4_model *m) {
    dump_seen d = {0};
    float *plain = last_logits(m, NULL, ids, N_IDS);
    float *dumped = last_logits(m, &(gemma4_session_params){.dump = on_dump, .dump_user = &d}, ids, N_IDS);
    CHECK(d.inp_scaled == N_IDS && d.attn_norm_0 == N_IDS && d.max_token == N_IDS - 1,
          "each token of the ubatch is dumped: inp_scaled %d, attn_norm-0 %d, tokens 0..%d", d.inp_scaled, d.attn_norm_0,
          d.max_token);
    CHECK(d.result_output == 1 && d.result_n == gemma4_n_vocab(m), "one output row of %lld logits dumped",
          (long long)d.result_n);
    CHECK(d.calls > 20 * N_IDS, "%d vectors dumped", d.calls);
    CHECK(plain && dumped && !memcmp(plain, dumped, (size_t)gemma4_n_vocab(m) * sizeof *plain), "dumping changes no logit");
    const int before = d.calls;
    free(last_logits(m, NULL, ids, N_IDS));
    CHECK(d.calls == before, "a session without dump does not reach another's callback");
    free(plain);
    free(dumped);
}

static void test_kv(const gemma4_model *m) {
    char err[GEMMA4_ERR_LEN] = "";
    gemma4_kv_type t = GEMMA4_KV_F32;
    CHECK(!gemma4_kv_type_from_name("q8_0", &t) && t == GEMMA4_KV_Q8_0 && !gemma4_kv_type_from_name("f16", &t) &&
              t == GEMMA4_KV_F16,
          "q8_0 and f16 are KV types");
    CHECK(gemma4_kv_type_from_name("q4_0", &t) == -1 && t == GEMMA4_KV_F16, "q4_0 is not, and leaves *type alone");
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.page_size = 4, .type_k = GEMMA4_KV_F16}, err);
    CHECK(s && !gemma4_eval(s, ids, N_IDS, NULL, false, err), "eval 7 tokens: %s", err);
    gemma4_kv_usage u;
    gemma4_kv_plan plan;
    if (s) gemma4_kv_usage_get(s, &u);
    CHECK(s && !gemma4_kv_plan_get(m, &(gemma4_session_params){.page_size = 4, .type_k = GEMMA4_KV_F16}, N_IDS, &plan, err),
          "plan: %s", err);
    /* 7 positions in pages of 4: two pages of each kind */
    CHECK(s && u.pages_used[GEMMA4_KV_FULL] == 2 && u.pages_used[GEMMA4_KV_SWA] == 2, "pages used %d full, %d sliding",
          u.pages_used[GEMMA4_KV_FULL], u.pages_used[GEMMA4_KV_SWA]);
    CHECK(s && u.page_bytes[GEMMA4_KV_FULL] == plan.page_bytes[GEMMA4_KV_FULL] &&
              u.bytes_used == 2 * (u.page_bytes[GEMMA4_KV_FULL] + u.page_bytes[GEMMA4_KV_SWA]) && u.bytes_used == plan.seq_bytes,
          "usage %llu bytes, plan %llu", (unsigned long long)u.bytes_used, (unsigned long long)plan.seq_bytes);
    gemma4_session_free(s);
}

/* A product whose activations cannot be allocated fails the decode it is
 * part of, with one line, and the session goes on as if it had not run. */
static void test_matmul_failure(const gemma4_model *m) {
    char err[GEMMA4_ERR_LEN] = "";
    float x[32] = {1}, y[4] = {0};
    block_q8_0 rows[4] = {{0}};
    const g4_weight w = {G4_TYPE_Q8_0, rows, 32, 4, sizeof rows[0], 0};
    CHECK(g4_matmul_failed("x", err) == 0, "no failure noted at the start");
    g4_matmul(&w, x, (int64_t)1 << 43, y, NULL); /* 34 bytes per token: 2^48 bytes, beyond any address space */
    CHECK(g4_matmul_failed("model.gguf", err) == -1 &&
              !strcmp(err, "model.gguf: out of memory for a matrix product's converted activations (299067162755072 bytes)"),
          "the failure is reported once: %s", err);
    CHECK(g4_matmul_failed("x", err) == 0 && y[0] == 0, "then forgotten; y left as it was");

    float *ref = last_logits(m, NULL, ids, N_IDS), *logits = malloc((size_t)gemma4_n_vocab(m) * sizeof *logits);
    gemma4_session *s = gemma4_session_new(m, NULL, err);
    g4_matmul(&w, x, (int64_t)1 << 43, y, NULL); /* noted on this thread: the next decode ends in it */
    CHECK(s && gemma4_eval(s, ids, N_IDS, logits, false, err) == -1 && strstr(err, "out of memory for a matrix product") &&
              !strchr(err, '\n'),
          "the decode fails with one line: %s", err);
    CHECK(s && gemma4_session_pos(s) == 0, "and keeps none of its tokens (%d)", s ? gemma4_session_pos(s) : -1);
    CHECK(s && !gemma4_eval(s, ids, N_IDS, logits, false, err) && ref &&
              !memcmp(ref, logits, (size_t)gemma4_n_vocab(m) * sizeof *ref),
          "the same call then gives the logits of a fresh session: %s", err);
    gemma4_session_free(s);
    free(ref);
    free(logits);
}

/* The interleaved kernels keep their per-token terms on the stack and take
 * the tokens of a call in chunks that fit: every output has the bits it
 * has when computed one token at a time. Rows too wide for them run
 * unpacked, with the bits of the plain layout. */
static void test_x8_widths(void) {
    const g4_kernels *k = g4_kernels_active();
    if (!k->mul_rows_x8[G4_TYPE_Q4_0]) {
        SKIP("x8 widths", "the %s kernels have no interleaved Q4_0 kernel", k->isa);
        return;
    }
    const int64_t widths[] = {12288, G4_X8_MAX_IN + 32 * 8};
    enum { ROWS = 16, TOK = 40 };
    for (int i = 0; i < 2; i++) {
        const int64_t n_in = widths[i];
        const size_t rb = g4_row_size(G4_TYPE_Q4_0, n_in);
        char *data = malloc(rb * ROWS);
        float *x = malloc((size_t)(TOK * n_in) * sizeof *x), *row = malloc((size_t)n_in * sizeof *row);
        float *all = malloc(TOK * ROWS * sizeof *all), *one = malloc(TOK * ROWS * sizeof *one), *plain = malloc(TOK * ROWS * sizeof *plain);
        for (int64_t r = 0; r < ROWS; r++) {
            for (int64_t j = 0; j < n_in; j++) row[j] = (float)((r * 131 + j * 7919) % 199 - 99) / 64.0f;
            g4_quantize_row(G4_TYPE_Q4_0, row, data + (size_t)r * rb, n_in);
        }
        for (int64_t j = 0; j < TOK * n_in; j++) x[j] = (float)((j * 104729) % 211 - 105) / 50.0f;
        g4_weight w = {G4_TYPE_Q4_0, data, n_in, ROWS, rb, 0};
        g4_matmul(&w, x, TOK, plain, NULL);
        CHECK(g4_repack(&w, false) && w.interleaved, "width %lld: interleaved", (long long)n_in);
        g4_matmul(&w, x, TOK, all, NULL);
        for (int t = 0; t < TOK; t++) g4_matmul(&w, x + t * n_in, 1, one + t * ROWS, NULL);
        CHECK(!g4_matmul_failed("x8", (char[GEMMA4_ERR_LEN]){0}), "width %lld: no allocation failed", (long long)n_in);
        CHECK(!memcmp(all, one, TOK * ROWS * sizeof *all), "width %lld: %d tokens at once differ from one at a time",
              (long long)n_in, TOK);
        if (n_in > G4_X8_MAX_IN)
            CHECK(!memcmp(all, plain, TOK * ROWS * sizeof *all), "width %lld: unpacked rows differ from the plain layout",
                  (long long)n_in);
        else
            CHECK(max_abs_diff(all, plain, TOK * ROWS) < 1e-3 * sqrt((double)n_in), "width %lld: interleaved differs by %g",
                  (long long)n_in, max_abs_diff(all, plain, TOK * ROWS));
        g4_repack_free(&w);
        free(data);
        free(x);
        free(row);
        free(all);
        free(one);
        free(plain);
    }
}

int main(void) {
    test_load_params();
    gemma4_model *e2b = load("e2b_q8_0", NULL), *moe = load("moe_q8_0", NULL);
    if (e2b) {
        test_text(e2b);
        test_chat(e2b, "<|turn>model\n");
        test_dump(e2b);
        test_kv(e2b);
        test_matmul_failure(e2b);
    }
    /* the large models' template opens an empty thought channel */
    if (moe) test_chat(moe, "<|turn>model\n<|channel>thought\n<channel|>");
    test_x8_widths();
    gemma4_model_free(e2b);
    gemma4_model_free(moe);
    return test_summary("test_api");
}
