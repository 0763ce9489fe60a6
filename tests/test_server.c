/* The server's pieces without a socket listener or a model: JSON writing,
 * request validation, chat rendering of OpenAI messages, the response side
 * of tool calls and reasoning (whole and streamed), and the HTTP parser and
 * its deadlines over a socket pair. tests/test_server.sh runs the real
 * server end to end, and this program's --slow-clients mode against it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gguf/json.h"
#include "tests/harness.h"
#include "tools/serve/http.h"
#include "tools/serve/openai.h"
#include "tools/serve/server.h"

#define Q "<|\"|>"

static const oai_model model = {.sampling = {.temperature = 1.0f, .top_k = 64, .top_p = 0.95f}, .n_vocab = 512};

static void test_json_write(void) {
    jw w = {0};
    jw_str(&w, "a\"b\\c\n\x01\xc3\xa9\xff\xe2\x82", 12);
    CHECK(w.s && !strcmp(w.s, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""), "escaped: %s", w.s);
    char err[G4_ERR_LEN];
    g4_json *back = g4_json_parse(w.s, w.len, "w", err);
    CHECK(back && back->type == G4_JSON_STRING && back->len == 18, "the output parses back: %s", back ? "" : err);
    g4_json_free(back);
    jw_free(&w);
    jw_num(&w, 3), jw_cstr(&w, " "), jw_num(&w, 0.5), jw_cstr(&w, " "), jw_num(&w, 1.0 / 0.0);
    CHECK(!strcmp(w.s, "3 0.5 null"), "numbers: %s", w.s);
    jw_free(&w);
}

/* status of parsing body (0 when accepted) */
static int parse_status(const char *body, bool chat) {
    oai_request r;
    oai_error e;
    int rc = oai_parse_request(body, strlen(body), chat, &model, &r, &e);
    oai_request_free(&r);
    return rc ? e.status : 0;
}

static void test_requests(void) {
    oai_request r;
    oai_error e;
    const char *ok = "{\"messages\":[{\"role\":\"developer\",\"content\":\"S\"},{\"role\":\"user\",\"content\":"
                     "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],\"max_completion_tokens\":7,"
                     "\"temperature\":0,\"top_k\":5,\"seed\":42,\"stop\":[\"x\",\"yz\"],\"stream\":true}";
    CHECK(oai_parse_request(ok, strlen(ok), true, &model, &r, &e) == 0, "valid chat: %s", e.message);
    CHECK(r.prompt && !strcmp(r.prompt, "<|turn>system\nS<turn|>\n<|turn>user\nab<turn|>\n<|turn>model\n"),
          "rendered: %s", r.prompt);
    CHECK(r.max_tokens == 7 && r.sampling.temperature == 0 && r.sampling.top_k == 5 && r.sampling.seed == 42 &&
          r.sampling.top_p == 0.95f, "sampling taken, defaults kept");
    CHECK(r.n_stop == 2 && !strcmp(r.stop[1], "yz") && r.stream && !r.starts_in_thought, "stop and stream");
    oai_request_free(&r);
    CHECK(oai_parse_request("{\"prompt\":[2,5,7]}", 18, false, &model, &r, &e) == 0 && r.n_ids == 3 && r.ids[2] == 7 &&
          r.max_tokens == -1, "completion from ids");
    oai_request_free(&r);

    static const char *const bad[][2] = {
        {"{", "c"}, {"[]", "c"}, {"{}", "c"}, {"{\"messages\":{}}", "c"},
        {"{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", "c"},
        {"{\"messages\":[{\"content\":\"x\"}]}", "c"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "c"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"system\",\"content\":\"late\"}]}", "c"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"function\":{}}]}", "c"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"maybe\",\"tools\":[]}", "c"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":{\"enable_thinking\":1}}", "c"},
        {"{\"prompt\":\"x\",\"max_tokens\":0}", "p"}, {"{\"prompt\":\"x\",\"max_tokens\":2.5}", "p"},
        {"{\"prompt\":\"x\",\"max_tokens\":99999999999}", "p"}, {"{\"prompt\":\"x\",\"top_p\":1.5}", "p"},
        {"{\"prompt\":\"x\",\"min_p\":-1}", "p"}, {"{\"prompt\":\"x\",\"seed\":-2}", "p"},
        {"{\"prompt\":\"x\",\"stop\":[\"\"]}", "p"}, {"{\"prompt\":\"x\",\"stop\":5}", "p"},
        {"{\"prompt\":\"x\",\"logprobs\":true}", "p"}, {"{\"prompt\":[]}", "p"}, {"{\"prompt\":[512]}", "p"},
        {"{\"prompt\":null}", "p"}, {"{\"prompt\":\"x\",\"stream_options\":[]}", "p"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = parse_status(bad[i][0], bad[i][1][0] == 'c');
        CHECK(st == 400, "%s -> %d, want 400", bad[i][0], st);
    }
    /* a NUL would end the role early ("user\0x" read as "user") */
    const char *nul_role = "{\"messages\":[{\"role\":\"user\\u0000x\",\"content\":\"x\"}]}";
    int rc = oai_parse_request(nul_role, strlen(nul_role), true, &model, &r, &e);
    CHECK(rc == -1 && e.status == 400 && strstr(e.message, "messages[0].role"), "NUL in role: %d %s", e.status, e.message);
    oai_request_free(&r);
    oai_error_set(&e, 400, "bad %s", "thing");
    jw w = {0};
    oai_write_error(&w, &e);
    CHECK(!strcmp(w.s, "{\"error\":{\"code\":400,\"message\":\"bad thing\",\"type\":\"invalid_request_error\"}}"), "%s", w.s);
    jw_free(&w);
}

static void test_chat_render(void) {
    char err[G4_ERR_LEN];
    const char *body =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":2}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"{\\\"temp\\\":21}\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"plain\"}],"
        "\"chat_template_kwargs\":{\"enable_thinking\":true}}";
    g4_json *doc = g4_json_parse(body, strlen(body), "b", err);
    oai_error e = {0};
    oai_request r = {0};
    char *p = doc && !oai_render_chat(doc, &model, &r, &e) ? r.prompt : NULL;
    const bool in_thought = r.starts_in_thought;
    const char *want = "<|turn>system\n<|think|>\n<turn|>\n<|turn>user\nWeather?<turn|>\n<|turn>model\n"
                       "<|tool_call>call:get_weather{city:" Q "Paris" Q ",days:2}<tool_call|>"
                       "<|tool_response>response:get_weather{temp:21}<tool_response|>"
                       "<|tool_response>response:get_weather{value:" Q "plain" Q "}<tool_response|>"
                       "<|channel>thought\n";
    CHECK(p && !strcmp(p, want), "tool round trip rendered:\n%s\nwant\n%s", p ? p : e.message, want);
    CHECK(in_thought, "the prompt ends in an open thought channel");
    oai_request_free(&r);
    g4_json_free(doc);
}

/* The answer of a chat response, parsed back from its JSON. */
static g4_json *respond(const char *text, const char *finish) {
    oai_request r = {.chat = true};
    oai_meta meta = {.id = "x", .created = 1, .model = "m"};
    oai_usage u = {.n_prompt = 10, .n_cached = 4, .n_gen = 3, .t_prompt_ms = 6, .t_gen_ms = 30};
    jw w = {0};
    oai_write_response(&w, &r, &meta, text, strlen(text), finish, &u);
    char err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse(w.s, w.len, "response", err);
    CHECK(doc != NULL, "response is JSON: %s", err);
    jw_free(&w);
    return doc;
}

static const g4_json *at(const g4_json *v, size_t i) { return v && v->type == G4_JSON_ARRAY && i < v->len ? &v->items[i] : NULL; }
static const char *str_of(const g4_json *v) { return v && v->type == G4_JSON_STRING ? v->str : "(none)"; }

static const char *tool_text = "<|channel>thought\nCheck it.<channel|>Sure.<|tool_call>call:get_weather{city:" Q "Paris" Q
                               ",days:2}<tool_call|>";

static void test_response(void) {
    g4_json *doc = respond(tool_text, "stop");
    const g4_json *choice = at(g4_json_get(doc, "choices"), 0), *msg = g4_json_get(choice, "message");
    CHECK(!strcmp(str_of(g4_json_get(msg, "content")), "Sure."), "content %s", str_of(g4_json_get(msg, "content")));
    CHECK(!strcmp(str_of(g4_json_get(msg, "reasoning_content")), "Check it."), "reasoning");
    CHECK(!strcmp(str_of(g4_json_get(choice, "finish_reason")), "tool_calls"), "finish_reason tool_calls");
    const g4_json *call = at(g4_json_get(msg, "tool_calls"), 0), *fn = g4_json_get(call, "function");
    CHECK(!strcmp(str_of(g4_json_get(fn, "name")), "get_weather") && !strcmp(str_of(g4_json_get(call, "type")), "function"),
          "tool call name");
    const char *args = str_of(g4_json_get(fn, "arguments"));
    char err[G4_ERR_LEN];
    g4_json *a = g4_json_parse(args, strlen(args), "arguments", err);
    const g4_json *days = g4_json_get(a, "days");
    CHECK(a && !strcmp(str_of(g4_json_get(a, "city")), "Paris") && days && days->is_int && days->integer == 2,
          "arguments are JSON text: %s", args);
    const g4_json *t = g4_json_get(doc, "timings"), *usage = g4_json_get(doc, "usage");
    CHECK(t && g4_json_get(t, "prompt_n")->integer == 6 && g4_json_get(t, "predicted_per_second")->number == 100.0 &&
              g4_json_get(usage, "total_tokens")->integer == 13,
          "usage and timings");
    g4_json_free(a);
    g4_json_free(doc);

    doc = respond("<|tool_call>call:f{a:}<tool_call|>", "length"); /* bad syntax: the text as it came */
    msg = g4_json_get(at(g4_json_get(doc, "choices"), 0), "message");
    CHECK(!strcmp(str_of(g4_json_get(msg, "content")), "<|tool_call>call:f{a:}<tool_call|>") &&
              !g4_json_get(msg, "tool_calls"),
          "unparsable output is returned as content");
    g4_json_free(doc);
}

/* Streams text token by token (split at every byte) and reassembles what a
 * client would see. */
static void test_stream(void) {
    oai_request r = {.chat = true, .include_usage = true};
    oai_meta meta = {.id = "s", .created = 1, .model = "m"};
    oai_usage u = {.n_prompt = 3, .n_gen = 9};
    oai_stream st = {0};
    jw all = {0};
    const size_t n = strlen(tool_text);
    for (size_t k = 0; k <= n; k++) oai_write_stream(&all, &st, &r, &meta, tool_text, k, k == n ? "stop" : NULL, &u);
    jw content = {0}, reasoning = {0};
    jw_cstr(&content, ""), jw_cstr(&reasoning, "");
    int events = 0, calls = 0, done = 0, usage = 0;
    const char *finish = NULL;
    g4_json *docs[512];
    int n_docs = 0;
    char err[G4_ERR_LEN];
    for (char *line = strtok(all.s, "\n"); line; line = strtok(NULL, "\n")) {
        CHECK(!strncmp(line, "data: ", 6), "SSE line: %s", line);
        events++;
        if (!strcmp(line + 6, "[DONE]")) {
            done++;
            continue;
        }
        g4_json *d = g4_json_parse(line + 6, strlen(line + 6), "event", err);
        CHECK(d != NULL, "event JSON: %s", err);
        if (!d || n_docs == 512) continue;
        docs[n_docs++] = d;
        if (g4_json_get(d, "usage")) usage++;
        const g4_json *c = at(g4_json_get(d, "choices"), 0), *delta = g4_json_get(c, "delta");
        const g4_json *x;
        if ((x = g4_json_get_type(delta, "content", G4_JSON_STRING))) jw_raw(&content, x->str, x->len);
        if ((x = g4_json_get_type(delta, "reasoning_content", G4_JSON_STRING))) jw_raw(&reasoning, x->str, x->len);
        if (g4_json_get(delta, "tool_calls")) {
            calls++;
            x = g4_json_get(at(g4_json_get(delta, "tool_calls"), 0), "function");
            CHECK(!strcmp(str_of(g4_json_get(x, "name")), "get_weather"), "streamed call name");
        }
        if ((x = g4_json_get_type(c, "finish_reason", G4_JSON_STRING))) {
            finish = x->str;
            CHECK(g4_json_get(d, "timings") != NULL, "timings on the finish chunk");
        }
    }
    CHECK(!strcmp(content.s, "Sure.") && !strcmp(reasoning.s, "Check it."), "streamed parts '%s' '%s'", content.s, reasoning.s);
    CHECK(calls == 1 && done == 1 && usage == 1 && finish && !strcmp(finish, "tool_calls"),
          "one tool-call delta (%d), one usage chunk (%d), [DONE] (%d)", calls, usage, done);
    CHECK(events > 10, "events as the text grew: %d", events);
    for (int i = 0; i < n_docs; i++) g4_json_free(docs[i]);
    jw_free(&content), jw_free(&reasoning), jw_free(&all);
}

#define TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"," \
              "\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}}}}}," \
              "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]"
#define ASK "\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"}]"

/* tool_choice "required" and a named function start the answer with the call. */
static void test_forced_call(void) {
    static const struct { const char *choice, *forced; } cases[] = {
        {"\"required\"", "<|tool_call>call:"},
        {"{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}", "<|tool_call>call:get_time{"},
        {"\"auto\"", NULL},
        {"\"none\"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body, "{" ASK "," TOOLS ",\"tool_choice\":%s}", cases[i].choice);
        oai_request r;
        oai_error e;
        int rc = oai_parse_request(body, strlen(body), true, &model, &r, &e);
        CHECK(rc == 0, "%s: %s", cases[i].choice, e.message);
        const char *want = cases[i].forced;
        size_t np = r.prompt ? strlen(r.prompt) : 0, nf = want ? strlen(want) : 0;
        CHECK(want ? r.forced && !strcmp(r.forced, want) && np > nf && !strcmp(r.prompt + np - nf, want) : !r.forced,
              "%s: forced '%s'", cases[i].choice, r.forced ? r.forced : "(none)");
        const bool shown = r.prompt && strstr(r.prompt, "declaration:get_weather");
        CHECK(shown == (i == 0 || i == 2), "%s: get_weather %s", cases[i].choice, shown ? "shown" : "hidden");
        CHECK(r.n_call_fns == (i == 0 ? 2 : i == 1 ? 1 : 0), "%s: %d callable functions", cases[i].choice, r.n_call_fns);
        if (i == 0) CHECK(!strcmp(r.call_fns[0], "get_weather\ncity\ndays\n") && !strcmp(r.call_fns[1], "get_time\n"),
                          "functions and their keys: %s", r.call_fns[0]);
        oai_request_free(&r);
    }
    /* after tool results with thinking on, the open thought is closed first */
    const char *thinking = "{\"messages\":[{\"role\":\"user\",\"content\":\"W\"},{\"role\":\"assistant\",\"tool_calls\":"
                           "[{\"function\":{\"name\":\"get_time\",\"arguments\":{}}}]},{\"role\":\"tool\",\"content\":\"1\"}],"
                           TOOLS ",\"tool_choice\":\"required\",\"chat_template_kwargs\":{\"enable_thinking\":true}}";
    oai_request r;
    oai_error e;
    CHECK(oai_parse_request(thinking, strlen(thinking), true, &model, &r, &e) == 0 && r.starts_in_thought && r.forced &&
              !strcmp(r.forced, "<channel|><|tool_call>call:"),
          "forced call after an open thought: %s", r.forced ? r.forced : e.message);
    /* the forced start's markers are the template's: marked like the rest */
    const size_t np = r.prompt ? strlen(r.prompt) : 0;
    const g4_chat_span *last = r.n_marks >= 2 ? &r.marks[r.n_marks - 2] : NULL;
    CHECK(last && last[0].at == np - 27 && last[0].len == 10 && last[1].at == np - 17 && last[1].len == 12,
          "forced start marked: %zu marks in %zu bytes", r.n_marks, np);
    oai_request_free(&r);
    CHECK(parse_status("{" ASK ",\"tools\":[],\"tool_choice\":\"required\"}", true) == 400, "required without tools");
    CHECK(parse_status("{" ASK ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}", true) == 400,
          "named function without tools");

    /* the answer is parsed with the forced start in front */
    jw text = {0};
    jw_cstr(&text, "<|tool_call>call:get_time{");
    jw_cstr(&text, "}<tool_call|>");
    g4_json *doc = respond(text.s, "stop");
    const g4_json *choice = at(g4_json_get(doc, "choices"), 0), *msg = g4_json_get(choice, "message");
    const g4_json *fn = g4_json_get(at(g4_json_get(msg, "tool_calls"), 0), "function");
    CHECK(!strcmp(str_of(g4_json_get(fn, "name")), "get_time") && !strcmp(str_of(g4_json_get(fn, "arguments")), "{}") &&
              !strcmp(str_of(g4_json_get(choice, "finish_reason")), "tool_calls"),
          "forced call answered as tool_calls");
    g4_json_free(doc);
    jw_free(&text);
}

/* The guard over a call being generated, token by token. */
static void test_call_guard(void) {
    const char *body = "{" ASK "," TOOLS ",\"tool_choice\":\"required\"}";
    oai_request r;
    oai_error e;
    CHECK(oai_parse_request(body, strlen(body), true, &model, &r, &e) == 0, "%s", e.message);
    oai_call_guard g;
    CHECK(oai_call_guard_init(&g, &r) == 0 && !strcmp(g.text.s, "<|tool_call>call:") && g.n_fns == 2, "guard set up");
    static const struct { const char *piece; int want; } steps[] = {
        {"get_", OAI_CALL_OPEN}, {"x", OAI_CALL_BAD}, {"weather{", OAI_CALL_OPEN}, {"zip", OAI_CALL_BAD},
        {" ", OAI_CALL_BAD},     {"<turn|>", OAI_CALL_BAD}, {"ci", OAI_CALL_OPEN}, {"ty:", OAI_CALL_OPEN},
        {"<|\"|>", OAI_CALL_OPEN}, {"a{b:c,", OAI_CALL_OPEN}, {"<|\"|>", OAI_CALL_OPEN}, {",day", OAI_CALL_OPEN},
        {"x:", OAI_CALL_BAD},     {"s:", OAI_CALL_OPEN}, {"{", OAI_CALL_OPEN}, {"free:1}", OAI_CALL_OPEN},
        {",}", OAI_CALL_BAD},    {"}", OAI_CALL_OPEN}, {"}", OAI_CALL_BAD}, {"<tool_call|>", OAI_CALL_DONE},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const char *p = steps[i].piece;
        int st = oai_call_guard_check(&g, p, strlen(p));
        CHECK(st == steps[i].want, "after '%s', '%s': %d, want %d", g.text.s, p, st, steps[i].want);
        if (st != OAI_CALL_BAD) oai_call_guard_push(&g, p, strlen(p));
    }
    CHECK(!strcmp(g.text.s, "<|tool_call>call:get_weather{city:<|\"|>a{b:c,<|\"|>,days:{free:1}}<tool_call|>"),
          "the call: %s", g.text.s);
    oai_call_guard_free(&g);
    oai_call_guard_free(&g); /* safe twice: left empty */
    oai_request_free(&r);
    CHECK(oai_call_guard_init(&g, &r) == 0 && g.text.len == 0, "no forced call: no guard");
    oai_call_guard_free(&g);
}

/* A step's batch: a decoding slot advances every step while long prompts
 * share the rest evenly. */
static void test_share_batch(void) {
    int32_t need[3] = {0, 1000, 100}, take[3], fed[3] = {0};
    bool gen[3] = {true, false, false};
    int steps = 0, short_done = 0, bounded = 1, decoded = 0;
    while (need[1] > 0 || need[2] > 0) {
        int32_t n = srv_share_batch(need, gen, 3, 64, steps % 3, take);
        bounded &= n == take[0] + take[1] + take[2] && n == (1 + need[1] + need[2] < 64 ? 1 + need[1] + need[2] : 64);
        decoded += take[0];
        for (int i = 1; i < 3; i++) need[i] -= take[i], fed[i] += take[i];
        steps++;
        if (!short_done && need[2] == 0) short_done = steps;
        if (steps > 100) break;
    }
    CHECK(bounded, "each step as full as the prompts allow, within n_batch");
    CHECK(decoded == steps, "the decoder got a token in each of %d steps (%d)", steps, decoded);
    CHECK(short_done == 4, "the short prompt shared the room: done after %d steps, want 4", short_done);
    CHECK(fed[1] == 1000 && fed[2] == 100 && steps == 18, "all fed (%d, %d) in %d steps, want 18", fed[1], fed[2], steps);
    /* less room than prompts: each still advances as the first slot rotates */
    int32_t need4[4] = {0, 50, 50, 50}, take4[4], got[4] = {0};
    bool gen4[4] = {true, false, false, false};
    for (int st = 0; st < 4; st++) {
        srv_share_batch(need4, gen4, 4, 3, st, take4);
        for (int i = 0; i < 4; i++) got[i] += take4[i];
    }
    CHECK(got[0] == 4 && got[1] == 3 && got[2] == 3 && got[3] == 2, "rotation: %d %d %d %d", got[0], got[1], got[2], got[3]);
}

/* Writes raw bytes to one end of a socket pair and reads requests at the other. */
static int read_raw(const char *raw, size_t max_body, http_req *q, int *status, int n_requests) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return -2;
    if (write(sv[0], raw, strlen(raw)) < 0) return -2;
    shutdown(sv[0], SHUT_WR);
    http_conn c = {.fd = sv[1]};
    int rc = 0;
    for (int i = 0; i < n_requests; i++) {
        if (i) http_req_free(q);
        if ((rc = http_read(&c, q, max_body, status)) != 1) break;
    }
    http_conn_free(&c);
    close(sv[0]), close(sv[1]);
    return rc;
}

static void test_http(void) {
    http_req q;
    int status = 0;
    int rc = read_raw("POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\nAuthorization: Bearer k\r\n\r\nhello"
                      "GET /health HTTP/1.0\r\n\r\n", 100, &q, &status, 1);
    CHECK(rc == 1 && !strcmp(q.method, "POST") && !strcmp(q.path, "/v1/completions") && q.body_len == 5 &&
              !strcmp(q.body, "hello") && q.keep_alive && !strcmp(q.auth, "Bearer k"),
          "POST parsed (rc %d)", rc);
    http_req_free(&q);
    rc = read_raw("POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /health HTTP/1.0\r\n\r\n", 100, &q, &status, 2);
    CHECK(rc == 1 && !strcmp(q.path, "/health") && !q.keep_alive && !q.body, "pipelined HTTP/1.0 request");
    http_req_free(&q);
    /* bare LF line ends are taken as line ends, not waited past */
    rc = read_raw("GET /health HTTP/1.1\nHost: a\n\nPOST /b HTTP/1.1\nContent-Length: 2\r\n\nhi", 100, &q, &status, 2);
    CHECK(rc == 1 && !strcmp(q.path, "/b") && q.body_len == 2 && !strcmp(q.body, "hi"), "bare LF heads (rc %d)", rc);
    http_req_free(&q);
    static const struct { const char *raw; int status; } bad[] = {
        {"POST /a HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413},
        {"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nContent-Length: +2\r\n\r\nab", 400},
        {"POST /a HTTP/1.1\r\nContent-Length: 0x2\r\n\r\nab", 400},
        {"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"NONSENSE\r\n\r\n", 400},
        {"GET / SPDY/3\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", 408},
        {"GET / HTTP/1.1\r\nHost: x", 408},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        status = 0;
        rc = read_raw(bad[i].raw, 100, &q, &status, 1);
        CHECK(rc == -1 && status == bad[i].status, "case %zu: rc %d status %d, want %d", i, rc, status, bad[i].status);
        http_req_free(&q);
    }
    char *huge = malloc(HTTP_MAX_HEAD + 100);
    memset(huge, 'a', HTTP_MAX_HEAD + 99);
    memcpy(huge, "GET / HTTP/1.1\r\nX: ", 19);
    huge[HTTP_MAX_HEAD + 99] = 0;
    rc = read_raw(huge, 100, &q, &status, 1);
    CHECK(rc == -1 && status == 431, "oversize head: %d", status);
    http_req_free(&q);
    free(huge);
    CHECK(read_raw("", 100, &q, &status, 1) == 0, "closed idle connection");
}

static int64_t elapsed_ms(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A client sending bytes[] one at a time, 10 ms apart, that stays for 3 s
 * (unless the reader goes first) and then closes its end. */
typedef struct dribble {
    int fd;
    const char *bytes;
} dribble;

static void *dribbler(void *arg) {
    const dribble *d = arg;
    const char *next = d->bytes;
    for (int tick = 0; tick < 300; tick++) {
        if (*next && send(d->fd, next++, 1, MSG_NOSIGNAL) != 1) break;
        struct pollfd p = {.fd = d->fd}; /* the 10 ms wait, which also sees the reader hang up */
        if (poll(&p, 1, 10) == 1) break;
    }
    shutdown(d->fd, SHUT_WR);
    return NULL;
}

/* A client that keeps sending, a byte every 10 ms, is cut off at its
 * deadline all the same: the head's, or for a body the head's plus its
 * share by size. An idle connection is let go after idle_ms. */
static void test_http_deadlines(void) {
    char slow_head[320] = "GET /health HTTP/1.1\r\nX-Slow: ", slow_body[320] = "";
    memset(slow_head + strlen(slow_head), 'a', 250);
    memset(slow_body, 'b', 300);
    static const char body_head[] = "POST /a HTTP/1.1\r\nContent-Length: 6400\r\n\r\n";
    static const struct { int idle_ms, head_ms, lo_ms, hi_ms, rc, status; bool body; } cases[] = {
        /* bounds leave room for clock and poll rounding below, and for a
         * loaded machine above; without deadlines each read lasts until the
         * dribbler stops, after 3 s */
        {0, 300, 250, 2500, -1, 408, false},   /* the head trickles */
        {0, 300, 340, 2500, -1, 408, true},    /* the body trickles: 300 + 97 ms for 6400 bytes at 64 KiB/s */
        {200, 5000, 150, 2500, 0, 0, false},   /* nothing comes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) continue;
        if (cases[i].body && write(sv[0], body_head, sizeof body_head - 1) < 0) continue;
        dribble d = {sv[0], cases[i].body ? slow_body : i == 0 ? slow_head : ""};
        pthread_t t;
        pthread_create(&t, NULL, dribbler, &d);
        http_conn c = {.fd = sv[1], .idle_ms = cases[i].idle_ms, .head_ms = cases[i].head_ms};
        http_req q;
        int status = 0;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = http_read(&c, &q, 1 << 20, &status);
        int64_t ms = elapsed_ms(&t0);
        close(sv[1]); /* the dribbler's next byte fails */
        pthread_join(t, NULL);
        close(sv[0]);
        CHECK(rc == cases[i].rc && status == cases[i].status && ms >= cases[i].lo_ms && ms < cases[i].hi_ms,
              "deadline case %zu: rc %d status %d after %lld ms, want %d %d after %d..%d ms", i, rc, status,
              (long long)ms, cases[i].rc, cases[i].status, cases[i].lo_ms, cases[i].hi_ms);
        http_req_free(&q);
        http_conn_free(&c);
    }
}

/* Run by tests/test_server.sh against a live server: n loopback
 * connections that trickle a request head (a byte each per 100 ms), then,
 * while they hold every slot, one ordinary request, which must be answered
 * 200 within 3 s. Everything is closed after about 2 s of trickling. */
static int slow_clients(int port, int n) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char head[] = "GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int *fd = malloc((size_t)n * sizeof *fd), open_n = 0, closed = 0;
    if (!fd) return 1;
    for (int i = 0; i < n; i++) {
        fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fd[i] >= 0 && connect(fd[i], (struct sockaddr *)&a, sizeof a) == 0 && send(fd[i], head, 1, MSG_NOSIGNAL) == 1)
            open_n++;
    }
    for (int round = 1; round < 20; round++) { /* trickle; the ordinary request comes after 1 s */
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
        for (int i = 0; i < n; i++) send(fd[i], head + round, 1, MSG_NOSIGNAL);
        if (round != 10) continue;
        int c = socket(AF_INET, SOCK_STREAM, 0);
        static const char req[] = "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        char resp[256] = "";
        size_t got = 0;
        if (c >= 0 && connect(c, (struct sockaddr *)&a, sizeof a) == 0 && send(c, req, sizeof req - 1, MSG_NOSIGNAL) > 0) {
            struct pollfd p = {.fd = c, .events = POLLIN};
            while (got < sizeof resp - 1 && poll(&p, 1, 3000) == 1) {
                ssize_t k = recv(c, resp + got, sizeof resp - 1 - got, 0);
                if (k <= 0) break;
                got += (size_t)k;
            }
        }
        const int64_t ms = elapsed_ms(&t0);
        if (c >= 0) close(c);
        int status = 0;
        sscanf(resp, "HTTP/1.1 %d", &status);
        CHECK(status == 200 && ms < 3000, "with %d trickling connections a request got %d after %lld ms", open_n, status,
              (long long)ms);
    }
    for (int i = 0; i < n; i++) { /* the ones the server closed read as ended */
        char ch;
        struct pollfd p = {.fd = fd[i], .events = POLLIN};
        closed += fd[i] >= 0 && poll(&p, 1, 0) == 1 && recv(fd[i], &ch, 1, MSG_DONTWAIT) <= 0;
        if (fd[i] >= 0) close(fd[i]);
    }
    CHECK(open_n == n && closed == n - 256 + 1, "%d of %d trickling connections opened, %d closed by the server, want %d",
          open_n, n, closed, n - 256 + 1);
    free(fd);
    return test_summary("test_server_slow_clients");
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--slow-clients")) return slow_clients(atoi(argv[2]), atoi(argv[3]));
    test_json_write();
    test_requests();
    test_chat_render();
    test_response();
    test_stream();
    test_forced_call();
    test_call_guard();
    test_share_batch();
    test_http();
    test_http_deadlines();
    return test_summary("test_server");
}
