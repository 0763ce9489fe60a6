/* The server's pieces without a socket listener or a model: JSON writing,
 * request validation, chat rendering of OpenAI messages, the response side
 * of tool calls and reasoning (whole and streamed), and the HTTP parser and
 * its deadlines over a socket pair. tests/test_server.sh runs the real
 * server end to end, and this program's --slow-clients mode against it. */
#include <arpa/inet.h>
#include <math.h>
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

static const g4_json *at(const g4_json *v, size_t i) { return v && v->type == G4_JSON_ARRAY && i < v->len ? &v->items[i] : NULL; }
static const char *str_of(const g4_json *v) { return v && v->type == G4_JSON_STRING ? v->str : "(none)"; }

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
        {"{\"prompt\":\"x\",\"logprobs\":\"yes\"}", "p"}, {"{\"prompt\":\"x\",\"logprobs\":21}", "p"},
        {"{\"prompt\":\"x\",\"top_logprobs\":2}", "p"}, {"{\"prompt\":\"x\",\"n\":17}", "p"},
        {"{\"prompt\":\"x\",\"n\":0}", "p"}, {"{\"prompt\":\"x\",\"repeat_penalty\":-1}", "p"},
        {"{\"prompt\":\"x\",\"presence_penalty\":3}", "p"}, {"{\"prompt\":\"x\",\"repeat_last_n\":-2}", "p"},
        {"{\"prompt\":\"x\",\"logit_bias\":{\"5\":101}}", "p"}, {"{\"prompt\":\"x\",\"logit_bias\":{\"512\":1}}", "p"},
        {"{\"prompt\":\"x\",\"logit_bias\":{\"-1\":1}}", "p"}, {"{\"prompt\":\"x\",\"logit_bias\":{\"a\":1}}", "p"},
        {"{\"prompt\":\"x\",\"logit_bias\":[[1]]}", "p"}, {"{\"prompt\":\"x\",\"logit_bias\":5}", "p"},
        {"{\"prompt\":\"x\",\"response_format\":{\"type\":\"xml\"}}", "p"},
        {"{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_schema\"}}", "p"},
        {"{\"prompt\":\"x\",\"grammar\":\"root ::= \\\"a\\\"\",\"json_schema\":{}}", "p"},
        {"{\"prompt\":\"x\",\"echo\":true}", "p"}, {"{\"prompt\":\"x\",\"best_of\":2}", "p"},
        {"{\"prompt\":\"x\",\"mirostat\":2}", "p"}, {"{\"prompt\":[]}", "p"}, {"{\"prompt\":[512]}", "p"},
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

/* The sampling fields land in gemma4_sampling as the library defines them. */
static void test_sampling_fields(void) {
    oai_request r;
    oai_error e;
    const char *body = "{\"prompt\":\"x\",\"logit_bias\":{\"5\":-100,\"7\":2.5,\"9\":100},\"repeat_penalty\":1.3,"
                       "\"presence_penalty\":0.5,\"frequency_penalty\":-0.25,\"repeat_last_n\":32,\"n\":3,\"seed\":9,"
                       "\"logprobs\":4}";
    CHECK(oai_parse_request(body, strlen(body), false, &model, &r, &e) == 0, "sampling fields: %s", e.message);
    const gemma4_sampling *sp = &r.sampling;
    CHECK(sp->n_logit_bias == 3 && sp->logit_bias[0].token == 5 && sp->logit_bias[0].bias == -INFINITY &&
              sp->logit_bias[1].token == 7 && sp->logit_bias[1].bias == 2.5f && sp->logit_bias[2].bias == 100.0f,
          "logit_bias: -100 bans, others added");
    CHECK(sp->repeat_penalty == 1.3f && sp->presence_penalty == 0.5f && sp->frequency_penalty == -0.25f &&
              sp->penalty_last_n == 32 && sp->seed == 9,
          "penalties and seed");
    CHECK(r.n_choices == 3 && r.logprobs && r.top_logprobs == 4 && !sp->grammar, "n and completions logprobs");
    oai_request_free(&r);
    body = "{\"prompt\":\"x\",\"logit_bias\":[[3,false],[4,-1.5]]}";
    CHECK(oai_parse_request(body, strlen(body), false, &model, &r, &e) == 0 && r.sampling.n_logit_bias == 2 &&
              r.sampling.logit_bias[0].bias == -INFINITY && r.sampling.logit_bias[1].token == 4 &&
              r.sampling.logit_bias[1].bias == -1.5f,
          "llama.cpp's [id, bias] pairs, false bans: %s", e.message);
    oai_request_free(&r);
    body = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":2}";
    CHECK(oai_parse_request(body, strlen(body), true, &model, &r, &e) == 0 && r.logprobs && r.top_logprobs == 2 &&
              r.n_choices == 1,
          "chat logprobs: %s", e.message);
    oai_request_free(&r);
    /* the neutral values clients send by default are accepted */
    body = "{\"prompt\":\"x\",\"echo\":false,\"best_of\":1,\"parallel_tool_calls\":true,\"response_format\":{\"type\":\"text\"}}";
    CHECK(oai_parse_request(body, strlen(body), false, &model, &r, &e) == 0 && !r.grammar, "neutral fields: %s", e.message);
    oai_request_free(&r);
    body = "{\"prompt\":\"x\",\"echo\":true}";
    CHECK(oai_parse_request(body, strlen(body), false, &model, &r, &e) == -1 && strstr(e.message, "'echo'"),
          "an unsupported field is named: %s", e.message);
    oai_request_free(&r);

    /* constraints become a GBNF grammar */
    body = "{\"prompt\":\"x\",\"grammar\":\"root ::= [ab]+\"}";
    CHECK(oai_parse_request(body, strlen(body), false, &model, &r, &e) == 0 && r.sampling.grammar &&
              !strcmp(r.sampling.grammar, "root ::= [ab]+"),
          "grammar passed through: %s", e.message);
    oai_request_free(&r);
    static const char *const constrained[] = {
        "{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_object\"}}",
        ("{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"strict\":true,"
         "\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}}}}"),
        "{\"prompt\":\"x\",\"json_schema\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}",
    };
    for (size_t i = 0; i < sizeof constrained / sizeof constrained[0]; i++) {
        CHECK(oai_parse_request(constrained[i], strlen(constrained[i]), false, &model, &r, &e) == 0 && r.sampling.grammar &&
                  strstr(r.sampling.grammar, "root"),
              "constraint %zu gives a grammar: %s", i, e.message);
        oai_request_free(&r);
    }
    body = "{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\","
           "\"schema\":{\"type\":\"object\",\"not\":{\"type\":\"string\"}}}}}";
    CHECK(oai_parse_request(body, strlen(body), false, &model, &r, &e) == -1 && e.status == 400 &&
              strstr(e.message, "response_format.json_schema.schema") && strstr(e.message, "not"),
          "a schema the converter refuses: 400 naming it: %s", e.message);
    oai_request_free(&r);
}

/* Logprobs in responses: chat's content[] with bytes and alternatives, the
 * completions' parallel arrays with text offsets. */
static void test_logprobs_response(void) {
    oai_token_logprob t[2] = {{.tok = {3, -0.5f}, .n_top = 2, .top = {{3, -0.5f}, {4, -1.25f}}},
                              {.tok = {4, -2.0f}, .n_top = 2, .top = {{5, -0.75f}, {4, -2.0f}}}};
    oai_logprobs lp = {0};
    oai_logprobs_push(&lp, t, 2);
    oai_meta meta = {.id = "x", .created = 1, .model = "m"};
    oai_usage u = {.n_prompt = 2, .n_gen = 2};
    oai_choice c[2] = {{.text = "ab", .len = 2, .finish = "length", .lp = &lp}, {.text = "cd", .len = 2, .finish = "stop", .lp = &lp}};
    char err[G4_ERR_LEN];
    for (int chat = 0; chat < 2; chat++) {
        oai_request r = {.chat = chat, .logprobs = true, .top_logprobs = 2, .n_choices = 2};
        jw w = {0};
        oai_write_response(&w, &r, &meta, c, 2, &u);
        /* without a vocabulary every token's text is "": the completions'
         * top_logprobs objects repeat the key, so they are checked as text */
        if (!chat) {
            CHECK(w.s && strstr(w.s, "{\"index\":1,\"text\":\"cd\",\"logprobs\":{\"tokens\":[\"\",\"\"],"
                                     "\"token_logprobs\":[-0.5,-2],\"top_logprobs\":[{\"\":-0.5,\"\":-1.25},"
                                     "{\"\":-0.75,\"\":-2}],\"text_offset\":[0,0]},\"finish_reason\":\"stop\"}"),
                  "completion logprobs: %s", w.s);
            jw_free(&w);
            continue;
        }
        g4_json *doc = g4_json_parse(w.s, w.len, "response", err);
        const g4_json *ch = g4_json_get(doc, "choices"), *l = g4_json_get(at(ch, 1), "logprobs");
        CHECK(ch && ch->len == 2 && g4_json_get(at(ch, 1), "index")->integer == 1 &&
                  !strcmp(str_of(g4_json_get(at(ch, 1), "finish_reason")), "stop"),
              "chat: two choices");
        const g4_json *content = g4_json_get(l, "content"), *t1 = at(content, 1);
        const g4_json *top = g4_json_get(t1, "top_logprobs");
        CHECK(content && content->len == 2 && g4_json_get(t1, "logprob")->number == -2.0 &&
                  g4_json_get(t1, "id")->integer == 4 && top && top->len == 2 &&
                  g4_json_get(at(top, 0), "id")->integer == 5 && g4_json_get(at(top, 0), "logprob")->number == -0.75 &&
                  g4_json_get_type(t1, "bytes", G4_JSON_ARRAY) != NULL,
              "chat logprobs: %s", w.s);
        g4_json_free(doc);
        jw_free(&w);
    }
    oai_logprobs_free(&lp);
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
    oai_choice c = {.text = text, .len = strlen(text), .finish = finish};
    oai_write_response(&w, &r, &meta, &c, 1, &u);
    char err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse(w.s, w.len, "response", err);
    CHECK(doc != NULL, "response is JSON: %s", err);
    jw_free(&w);
    return doc;
}


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

    /* a call cut off by max_tokens is reported, not dropped */
    doc = respond("<|tool_call>call:get_weather{city:" Q "Par", "length");
    choice = at(g4_json_get(doc, "choices"), 0), msg = g4_json_get(choice, "message");
    CHECK(g4_json_get(msg, "content") && g4_json_get(msg, "content")->type == G4_JSON_NULL &&
              !strcmp(str_of(g4_json_get(msg, "partial_tool_call")), "<|tool_call>call:get_weather{city:" Q "Par") &&
              strstr(str_of(g4_json_get(msg, "notice")), "incomplete") &&
              !strcmp(str_of(g4_json_get(choice, "finish_reason")), "length") && !g4_json_get(msg, "tool_calls"),
          "a cut-off call: notice and partial text");
    g4_json_free(doc);
    doc = respond("<|tool_call>call:f{}<tool_call|>", "length"); /* complete: no notice */
    msg = g4_json_get(at(g4_json_get(doc, "choices"), 0), "message");
    CHECK(!g4_json_get(msg, "notice") && g4_json_get(msg, "tool_calls"), "a complete call before the limit: no notice");
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
    for (size_t k = 0; k <= n; k++) {
        oai_choice c = {.text = tool_text, .len = k, .finish = k == n ? "stop" : NULL};
        oai_write_stream(&all, &st, &r, &meta, &c, &u);
    }
    oai_write_stream_end(&all, &r, &meta, &u);
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
    CHECK(parse_status("{" ASK "," TOOLS ",\"tool_choice\":\"required\",\"grammar\":\"root ::= \\\"a\\\"\"}", true) == 400,
          "a forced call with a grammar");
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

/* Runs a completion body through the scheduler; the choices' texts, token
 * logprobs and finish reasons. 0, or the error status. */
typedef struct run_out {
    jw text[OAI_MAX_N];
    oai_logprobs lp[OAI_MAX_N];
    const char *finish[OAI_MAX_N];
    int n;
} run_out;

static int run_request(srv *sv, const oai_model *om, const char *body, run_out *o) {
    oai_request r;
    oai_error e;
    memset(o, 0, sizeof *o);
    if (oai_parse_request(body, strlen(body), false, om, &r, &e)) return oai_request_free(&r), e.status;
    srv_job *jobs[OAI_MAX_N];
    if (srv_submit(sv, &r, r.ids, r.n_ids, jobs, &e)) return oai_request_free(&r), e.status;
    o->n = r.n_choices;
    for (int i = 0; i < o->n; i++) {
        oai_usage u;
        jw_cstr(&o->text[i], "");
        while (!srv_job_wait(jobs[i], &o->text[i], &o->lp[i], 100, &o->finish[i], &u, &e)) {
        }
        srv_job_release(jobs[i]);
    }
    oai_request_free(&r);
    return e.status;
}

static void run_free(run_out *o) {
    for (int i = 0; i < OAI_MAX_N; i++) jw_free(&o->text[i]), oai_logprobs_free(&o->lp[i]);
}

/* The scheduler with the e2b fixture model: logprobs equal a direct
 * computation (gemma4_eval, then log-softmax by hand in double), n = 3
 * greedy choices equal the single choice, logit_bias bans and forces. */
static void test_scheduler(void) {
    char path[1024], err[G4_ERR_LEN];
    snprintf(path, sizeof path, "%s/models/e2b_q8_0.gguf", test_fixtures_dir());
    gemma4_model *m = gemma4_load(path, err);
    if (!m) {
        SKIP("test_server_scheduler", "%s (sh tests/fixtures.sh)", err);
        return;
    }
    const int32_t n_vocab = gemma4_n_vocab(m);
    srv_params sp = {.n_parallel = 4, .n_ctx = 256, .n_threads = 2, .n_batch = 64, .queue_max = 8};
    srv *sv = srv_new(m, &sp, err);
    CHECK(sv != NULL, "srv_new: %s", err);
    if (!sv) return gemma4_model_free(m);
    oai_model om = {.sampling = gemma4_sampling_defaults(m), .n_vocab = n_vocab, .vocab = g4_model_vocab(m)};
    run_out o;
    int st = run_request(sv, &om, "{\"prompt\":[2,343,344,345],\"max_tokens\":5,\"temperature\":0,\"logprobs\":3}", &o);
    CHECK(st == 0 && o.lp[0].n == 5, "logprobs of 5 tokens: status %d, %zu", st, o.lp[0].n);
    const int32_t first = o.lp[0].n ? o.lp[0].v[0].tok.token : -1, second = o.lp[0].n ? o.lp[0].v[0].top[1].token : -1;
    char single[256];
    snprintf(single, sizeof single, "%s", o.text[0].s ? o.text[0].s : "");
    run_free(&o);
    /* the model is sure of its first pick (logprob near 0): with it banned
     * the tokens picked have logprobs far from 0, which a wrong one would show */
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\":[2,343,344,345],\"max_tokens\":5,\"temperature\":0,\"logprobs\":3,"
                                "\"logit_bias\":{\"%d\":-100}}", first);
    st = run_request(sv, &om, body, &o);
    CHECK(st == 0 && o.lp[0].n == 5, "logprobs of 5 tokens, one banned: status %d, %zu", st, o.lp[0].n);

    /* the same tokens fed directly, one at a time after the prompt */
    gemma4_session *s = gemma4_session_new(m, &(gemma4_session_params){.n_ctx = 256, .n_threads = 2,
                                                                        .type_k = GEMMA4_KV_F16, .type_v = GEMMA4_KV_F16},
                                           err);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int32_t prompt[4] = {2, 343, 344, 345};
    int rc = s && logits ? gemma4_eval(s, prompt, 4, logits, false, err) : -1;
    double worst = 0;
    bool order_ok = true, greedy_ok = true;
    for (size_t t = 0; rc == 0 && t < o.lp[0].n; t++) {
        const oai_token_logprob *x = &o.lp[0].v[t];
        double max = -INFINITY, sum = 0;
        for (int32_t i = 0; i < n_vocab; i++) max = logits[i] > max ? logits[i] : max;
        for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - max);
        const double lse = max + log(sum);
        int32_t best = first ? 0 : 1, top = 0; /* the argmax without the banned token, and with it */
        for (int32_t i = 0; i < n_vocab; i++) {
            if (i != first && logits[i] > logits[best]) best = i;
            if (logits[i] > logits[top]) top = i;
        }
        greedy_ok &= x->tok.token == best;
        double d = fabs(x->tok.logprob - ((double)logits[x->tok.token] - lse));
        worst = d > worst ? d : worst;
        for (int k = 0; k < x->n_top; k++) {
            d = fabs(x->top[k].logprob - ((double)logits[x->top[k].token] - lse));
            worst = d > worst ? d : worst;
            if (k && x->top[k].logprob > x->top[k - 1].logprob) order_ok = false;
        }
        order_ok &= x->n_top == 3 && x->top[0].token == top; /* the model's own alternatives */
        rc = gemma4_eval(s, &x->tok.token, 1, logits, false, err);
    }
    CHECK(rc == 0 && worst < 1e-3 && order_ok && greedy_ok,
          "logprobs = direct log-softmax (worst %.2g), top sorted (%d), greedy picks the argmax (%d): %s", worst,
          order_ok, greedy_ok, rc ? err : "");
    gemma4_session_free(s);
    free(logits);
    run_free(&o);

    st = run_request(sv, &om, "{\"prompt\":[2,343,344,345],\"max_tokens\":5,\"temperature\":0,\"n\":3}", &o);
    CHECK(st == 0 && o.n == 3 && !strcmp(o.text[0].s, single) && !strcmp(o.text[1].s, single) &&
              !strcmp(o.text[2].s, single),
          "n = 3 greedy: '%s' '%s' '%s', single '%s'", o.n > 0 ? o.text[0].s : "", o.n > 1 ? o.text[1].s : "",
          o.n > 2 ? o.text[2].s : "", single);
    run_free(&o);
    /* sampled: choice i is what a single request with seed 5 + i gives */
    static const char sampled[] = "{\"prompt\":[2,343,344,345],\"max_tokens\":8,\"temperature\":2,\"top_p\":1,"
                                  "\"top_k\":0,\"logit_bias\":{\"%d\":-100},\"seed\":%d,\"n\":%d}";
    snprintf(body, sizeof body, sampled, first, 5, 3);
    st = run_request(sv, &om, body, &o);
    for (int i = 0; i < 3 && st == 0; i++) {
        run_out one;
        snprintf(body, sizeof body, sampled, first, 5 + i, 1);
        int st1 = run_request(sv, &om, body, &one);
        CHECK(st1 == 0 && o.n == 3 && !strcmp(o.text[i].s, one.text[0].s), "n = 3 sampled: choice %d '%s' = seed %d alone '%s'",
              i, o.text[i].s, 5 + i, one.text[0].s);
        run_free(&one);
    }
    CHECK(st == 0, "n = 3 sampled: status %d", st);
    run_free(&o);

    snprintf(body, sizeof body, "{\"prompt\":[2,343,344,345],\"max_tokens\":5,\"temperature\":0,\"logprobs\":0,"
                                "\"logit_bias\":{\"%d\":-100}}", first);
    st = run_request(sv, &om, body, &o);
    bool absent = st == 0 && o.lp[0].n == 5;
    for (size_t t = 0; absent && t < o.lp[0].n; t++) absent = o.lp[0].v[t].tok.token != first;
    CHECK(absent, "logit_bias -100 bans token %d", first);
    run_free(&o);
    snprintf(body, sizeof body, "{\"prompt\":[2,343,344,345],\"max_tokens\":5,\"temperature\":0,\"logprobs\":0,"
                                "\"logit_bias\":[[%d,100]]}", second);
    st = run_request(sv, &om, body, &o);
    bool forced = st == 0 && o.lp[0].n == 5;
    for (size_t t = 0; forced && t < o.lp[0].n; t++) forced = o.lp[0].v[t].tok.token == second;
    CHECK(forced, "logit_bias +100 forces token %d at every step", second);
    run_free(&o);
    srv_free(sv);
    gemma4_model_free(m);
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
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n", 413},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n"
         "0123456789012345678901234567890123456789012345678901234567890123\r\n30\r\n", 413},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\n", 413},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 408},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 408},
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
    /* a chunked body is the same request as its Content-Length twin */
    rc = read_raw("POST /a HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nx-api-key: k2\r\nOrigin: http://o.test\r\n\r\n"
                  "5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nTrailer-Field: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                  100, &q, &status, 1);
    CHECK(rc == 1 && q.body_len == 11 && !strcmp(q.body, "hello world") && !strcmp(q.api_key, "k2") &&
              !strcmp(q.origin, "http://o.test"),
          "chunked body, x-api-key and Origin (rc %d, status %d)", rc, status);
    http_req_free(&q);
    rc = read_raw("POST /a HTTP/1.1\nTransfer-Encoding: chunked\n\nA\nhello worl\n1\nd\n0\n\nGET /next HTTP/1.1\r\n\r\n",
                  100, &q, &status, 2);
    CHECK(rc == 1 && !strcmp(q.path, "/next"), "after a chunked body (bare LFs) the next request is read (rc %d)", rc);
    http_req_free(&q);
    rc = read_raw("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0;x\r\n\r\n", 100, &q, &status, 1);
    CHECK(rc == 1 && !q.body && q.body_len == 0, "only the last chunk: no body (rc %d)", rc);
    http_req_free(&q);
    char *many = malloc(100 * 8 + 200); /* 100 one-byte chunks: exactly the cap */
    char *p = stpcpy(many, "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 100; i++) p += sprintf(p, "1\r\n%c\r\n", 'a' + i % 26);
    strcpy(p, "0\r\n\r\n");
    rc = read_raw(many, 100, &q, &status, 1);
    CHECK(rc == 1 && q.body_len == 100 && q.body[26] == 'a' && q.body[99] == 'v', "100 chunks of one byte (rc %d)", rc);
    http_req_free(&q);
    free(many);
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
    test_sampling_fields();
    test_logprobs_response();
    test_chat_render();
    test_response();
    test_stream();
    test_forced_call();
    test_call_guard();
    test_share_batch();
    test_scheduler();
    test_http();
    test_http_deadlines();
    return test_summary("test_server");
}
