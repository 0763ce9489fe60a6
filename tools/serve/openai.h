/* The OpenAI-compatible API in terms of the engine: request bodies parsed
 * and checked into oai_request, and the JSON of responses, stream chunks
 * and errors (shapes of OpenAI's API, plus llama-server's "timings").
 * Nothing here touches sockets or the scheduler, so it is tested directly. */
#ifndef G4_OPENAI_H
#define G4_OPENAI_H

#include <stdbool.h>
#include <stdint.h>

#include "gemma4_internal.h"
#include "gguf/json.h"
#include "tokenizer/chat.h"
#include "tools/json_write.h"

#define OAI_MAX_STOP 16        /* stop strings per request */
#define OAI_MAX_N 16           /* choices per request ("n") */
#define OAI_MAX_TOP_LOGPROBS 20 /* alternatives per token, as OpenAI allows */
#define OAI_MAX_LOGIT_BIAS 1024 /* logit_bias entries */

typedef struct oai_error {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", ... */
    char message[G4_ERR_LEN];
} oai_error;

/* A generation request, chat or plain completion. */
typedef struct oai_request {
    bool chat;
    bool stream, include_usage;
    int32_t max_tokens;         /* -1: until end of generation or a full context */
    gemma4_sampling sampling;   /* the model's defaults overridden by the request */
    char *stop[OAI_MAX_STOP];
    int n_stop;
    bool ignore_eos;            /* extension (llama-server): never stop at end of generation */
    int32_t n_choices;          /* "n": answers sampled from the one prompt (seeds seed, seed + 1, ...) */
    bool logprobs;              /* report each generated token's log-probability */
    int32_t top_logprobs;       /* and that many of the most likely tokens at its step */
    gemma4_logit_bias *bias;    /* what sampling.logit_bias points to (owned) */
    char *grammar;              /* what sampling.grammar points to (owned): GBNF */
    char *prompt;               /* chat: the rendered conversation; completion: the text (NULL with ids) */
    g4_chat_span *marks;        /* chat: where the template's own markers lie in prompt (g4_chat_tokenize) */
    size_t n_marks;
    int32_t *ids;               /* completion given as token ids */
    int32_t n_ids;
    bool starts_in_thought;     /* chat: the prompt ends inside an open thought channel */
    /* tool_choice "required" or a named function: the prompt ends with the
     * start of the tool call (forced), which the answer is parsed after. The
     * functions it may call: per function, its name and its parameters'
     * names, one a line ("name\nkey\nkey\n"). NULL / 0 otherwise. */
    char *forced;
    char **call_fns;
    int n_call_fns;
} oai_request;

/* What a model contributes to parsing: defaults and limits. */
typedef struct oai_model {
    gemma4_sampling sampling;
    bool empty_thought_channel;
    int32_t n_vocab;
    const g4_vocab *vocab; /* token text for logprobs; the template's markers (NULL: ids only, in tests) */
    /* The model's own chat template (tokenizer.chat_template, or
     * --chat-template-file), NULL for the built-in Gemma 4 renderer; and
     * --chat-template-kwargs (an object, or NULL), which a request's
     * chat_template_kwargs override key by key. */
    const g4_chat_template *tmpl;
    const g4_json *kwargs;
} oai_model;

/* Parses a /v1/chat/completions (chat) or /v1/completions body. 0, or -1
 * with e filled (4xx). Free r with oai_request_free either way. */
int oai_parse_request(const char *body, size_t len, bool chat, const oai_model *m, oai_request *r, oai_error *e);
void oai_request_free(oai_request *r);

/* The conversation of a chat body (messages, tools, tool_choice,
 * chat_template_kwargs) rendered into r->prompt (no <bos>) and r->marks,
 * with r->starts_in_thought and the forced tool call: for chat completions
 * and /apply-template. 0, or -1 with e filled; free r with oai_request_free. */
int oai_render_chat(const g4_json *body, const oai_model *m, oai_request *r, oai_error *e);

void oai_error_set(oai_error *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* {"error":{"code":...,"message":...,"type":...}} */
void oai_write_error(jw *w, const oai_error *e);

/* Figures of one finished request. */
typedef struct oai_usage {
    int32_t n_prompt, n_cached, n_gen;
    double t_prompt_ms, t_gen_ms;
} oai_usage;

/* What every response object of one request repeats. */
typedef struct oai_meta {
    char id[48];
    long long created;
    const char *model;
    const g4_vocab *vocab; /* token text for logprobs (NULL: empty) */
} oai_meta;

/* One generated token's log-probability (of the model's distribution,
 * before sampler settings) and the most likely tokens at its step. */
typedef struct oai_token_logprob {
    gemma4_logprob tok;
    int32_t n_top;
    gemma4_logprob top[OAI_MAX_TOP_LOGPROBS];
} oai_token_logprob;

typedef struct oai_logprobs {
    oai_token_logprob *v;
    size_t n, cap;
    bool oom;
} oai_logprobs;
void oai_logprobs_push(oai_logprobs *l, const oai_token_logprob *t, size_t n);
void oai_logprobs_free(oai_logprobs *l);

/* One answer of a request. text: the generated text (chat: with control
 * tokens, for the output parser). finish: "stop" or "length" ("stop"
 * becomes "tool_calls" when the model called tools). */
typedef struct oai_choice {
    const char *text;
    size_t len;
    const char *finish;
    const oai_logprobs *lp; /* with r->logprobs */
} oai_choice;

/* The answer as a whole: n choices (r->n_choices). */
void oai_write_response(jw *w, const oai_request *r, const oai_meta *meta, const oai_choice *c, int n,
                        const oai_usage *u);

/* Streaming: what was already sent of one choice's parts. */
typedef struct oai_stream {
    int index; /* the choice */
    size_t sent_content, sent_reasoning, sent_logprobs, lp_offset;
    bool started, parse_failed;
} oai_stream;

/* Appends to w the SSE events ("data: {...}\n\n") for choice c as
 * generated so far (c->text[0..len) as a whole, of which the part new
 * since the last call is sent, and the logprobs not sent yet). With
 * c->finish set it is the choice's last call: the rest, the tool calls and
 * its finish chunk (with u's timings). */
void oai_write_stream(jw *w, oai_stream *st, const oai_request *r, const oai_meta *meta, const oai_choice *c,
                      const oai_usage *u);
/* After every choice's last call: the usage chunk if asked for, and [DONE]. */
void oai_write_stream_end(jw *w, const oai_request *r, const oai_meta *meta, const oai_usage *u);

/* Keeps a forced tool call well formed while it is generated: the model's
 * next token is checked against the call so far (Gemma 4 syntax, the name
 * of one of the request's tools, the names of its parameters as the keys
 * of the arguments), so the answer is a call that parses. */
typedef struct oai_call_guard {
    jw text;     /* "<|tool_call>call:..." up to the last accepted token */
    char **fns;  /* as oai_request.call_fns */
    int n_fns;
} oai_call_guard;
/* From r->forced; 0, or -1 when out of memory. Free it either way. */
int oai_call_guard_init(oai_call_guard *g, const oai_request *r);
void oai_call_guard_free(oai_call_guard *g);
enum { OAI_CALL_BAD = -1, OAI_CALL_OPEN = 0, OAI_CALL_DONE = 1 };
/* What the call would be with piece[0..n) appended (OAI_CALL_DONE: it is
 * complete, through "<tool_call|>"). */
int oai_call_guard_check(const oai_call_guard *g, const char *piece, size_t n);
void oai_call_guard_push(oai_call_guard *g, const char *piece, size_t n);

/* JSON text of a chat value (tool-call arguments for the API). */
void oai_write_value(jw *w, const g4_chat_value *v);

#endif
