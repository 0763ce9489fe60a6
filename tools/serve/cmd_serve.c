/* gemma4 serve: an OpenAI-compatible HTTP server (llama-server's endpoints).
 *
 * Threads: one accepts connections, one per connection reads requests and
 * writes responses, and the scheduler (tools/serve/server.c) runs the model. The
 * socket is open before the model is loaded, so /health can answer 503
 * meanwhile. SIGINT / SIGTERM stop accepting, end the requests in flight
 * (their clients get a 503 error) and exit 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gemma4_internal.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/serve/http.h"
#include "tools/serve/openai.h"
#include "tools/serve/server.h"

#define MAX_BODY (4u << 20)  /* request bytes */
#define MAX_CONN 256         /* connections at once (see accept_one) */
#define IDLE_SECONDS 60      /* a keep-alive connection with no request is closed */
#define HEAD_SECONDS 10      /* a request line and headers, from their first byte (bodies: http.h) */
#define POLL_MS 50           /* how often a waiting request checks its client */

/* One connection. While it waits for a request or reads one, it holds
 * nothing but its slot, so when every slot is taken the one that has
 * waited longest is closed to make room: clients that trickle bytes to
 * hold slots cannot keep a newcomer out. */
typedef struct conn_slot {
    int fd;       /* -1: free */
    bool waiting; /* for a request, or reading one */
    double since; /* when it began to wait */
} conn_slot;

typedef struct server {
    const char *model_name; /* --alias, else the file name: /v1/models and every response */
    gemma4_model *m;
    srv *s;
    oai_model om;
    char **api_keys;         /* any of them is accepted; none: no key needed */
    int n_api_keys;
    const char *cors_origin; /* Access-Control-Allow-Origin; NULL: the request's Origin */
    bool special_in_content; /* control-token text in messages is parsed (llama.cpp's way) */
    atomic_bool ready;
    uint64_t id_key;         /* random per process: ids and seeds differ across restarts */
    atomic_ullong n_ids;     /* response ids and seeds */
    int sig_pipe[2];         /* the signal handler writes here */
    pthread_mutex_t mu;
    pthread_cond_t idle;     /* n_conn fell to 0 */
    conn_slot conn[MAX_CONN];
    int n_conn;              /* connection threads running */
} server;

static int sig_fd = -1;
static void on_signal(int sig) {
    char c = (char)sig;
    if (write(sig_fd, &c, 1) < 0) { /* nothing else is safe here */
    }
}

/* ---------------------------------------------------------------- responses */

/* One request's answer: the connection, the header lines every response to
 * it carries (CORS), and what its log line reports. */
typedef struct reply {
    int fd;
    bool ka;      /* keep the connection open after it */
    char headers[1200];
    int status;   /* the status sent */
    int32_t n_prompt, n_gen;
} reply;

/* Each returns whether the connection goes on (sent, and keep-alive). */
static bool send_body(reply *rp, int status, const char *type, const char *body, size_t len, const char *more) {
    char extra[sizeof rp->headers + 64];
    snprintf(extra, sizeof extra, "%s%s", rp->headers, more ? more : "");
    rp->status = status;
    return http_respond(rp->fd, status, type, body, len, rp->ka, extra) == 0 && rp->ka;
}

static bool send_json(reply *rp, int status, const jw *body) {
    if (body->oom) return rp->ka = false, send_body(rp, 500, "application/json", "{}", 2, NULL);
    return send_body(rp, status, "application/json", body->s, body->len, NULL);
}

static bool send_error(reply *rp, const oai_error *e) {
    jw w = {0};
    oai_write_error(&w, e);
    bool ok = !w.oom && send_body(rp, e->status, "application/json", w.s, w.len,
                                  e->status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL);
    rp->status = e->status;
    jw_free(&w);
    return ok;
}

static bool fail(reply *rp, int status, const char *fmt, const char *arg) {
    oai_error e;
    oai_error_set(&e, status, fmt, arg);
    return send_error(rp, &e);
}

/* ---------------------------------------------------------------- endpoints */

static bool do_models(server *sv, reply *rp) {
    jw w = {0};
    jw_cstr(&w, "{\"object\":\"list\",\"data\":[{\"id\":");
    jw_qstr(&w, sv->model_name);
    jw_printf(&w, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"gemma4.c\",\"meta\":{\"n_vocab\":%d,"
                  "\"n_ctx_train\":%d,\"n_ctx\":%d,\"variant\":",
              (long long)time(NULL), gemma4_n_vocab(sv->m), gemma4_n_ctx_train(sv->m), srv_n_ctx(sv->s));
    jw_qstr(&w, gemma4_variant(sv->m));
    jw_cstr(&w, "}}]}");
    bool r = send_json(rp, 200, &w);
    jw_free(&w);
    return r;
}

/* The body as a JSON object, or NULL after answering 400 (*ka: whether the
 * connection goes on). */
static g4_json *body_object(const http_req *q, reply *rp, bool *ka) {
    char err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse(q->body ? q->body : "", q->body_len, "body", err);
    if (doc && doc->type == G4_JSON_OBJECT) return doc;
    *ka = fail(rp, 400, "%s", doc ? "the body must be a JSON object" : err);
    g4_json_free(doc);
    return NULL;
}

static bool do_tokenize(server *sv, const http_req *q, reply *rp) {
    bool ka;
    g4_json *doc = body_object(q, rp, &ka);
    if (!doc) return ka;
    const g4_json *content = g4_json_get_type(doc, "content", G4_JSON_STRING);
    const g4_json *add = g4_json_get(doc, "add_special"), *parse = g4_json_get(doc, "parse_special"),
                  *pieces = g4_json_get(doc, "with_pieces");
    oai_error e = {0};
    if (!content) oai_error_set(&e, 400, "'content' must be a string");
    for (const g4_json *const *b = (const g4_json *const[]){add, parse, pieces, NULL}; *b && !e.status; b++)
        if ((*b)->type != G4_JSON_BOOL) oai_error_set(&e, 400, "add_special, parse_special and with_pieces must be booleans");
    int32_t *ids = NULL;
    int64_t n = 0;
    char err[G4_ERR_LEN];
    const g4_vocab *v = g4_model_vocab(sv->m);
    if (!e.status && (n = g4_tokenize(v, content->str, content->len, add && add->boolean, !parse || parse->boolean,
                                      &ids, err)) < 0)
        oai_error_set(&e, 400, "%s", err);
    const bool with_pieces = !e.status && pieces && pieces->boolean;
    g4_json_free(doc);
    if (e.status) return send_error(rp, &e);
    jw w = {0};
    jw_cstr(&w, "{\"tokens\":[");
    for (int64_t i = 0; i < n; i++) {
        if (i) jw_cstr(&w, ",");
        if (!with_pieces) {
            jw_printf(&w, "%d", ids[i]);
            continue;
        }
        size_t len;
        const char *text = g4_vocab_text(v, ids[i], &len);
        jw_printf(&w, "{\"id\":%d,\"piece\":", ids[i]);
        jw_str(&w, text ? text : "", text ? len : 0);
        jw_cstr(&w, "}");
    }
    jw_cstr(&w, "]}");
    free(ids);
    bool r = send_json(rp, 200, &w);
    jw_free(&w);
    return r;
}

static bool do_detokenize(server *sv, const http_req *q, reply *rp) {
    bool ka;
    g4_json *doc = body_object(q, rp, &ka);
    if (!doc) return ka;
    const g4_json *tokens = g4_json_get_type(doc, "tokens", G4_JSON_ARRAY);
    const g4_vocab *v = g4_model_vocab(sv->m);
    oai_error e = {0};
    if (!tokens) oai_error_set(&e, 400, "'tokens' must be an array of token ids");
    jw text = {0};
    jw_cstr(&text, "");
    g4_detok d;
    g4_detok_init(&d, v, true);
    const size_t cap = g4_vocab_max_piece(v) + G4_DETOK_HELD;
    char *piece = malloc(cap);
    if (!piece) oai_error_set(&e, 500, "out of memory");
    for (size_t i = 0; !e.status && i < tokens->len; i++) {
        const g4_json *t = &tokens->items[i];
        if (t->type != G4_JSON_NUMBER || !t->is_int || t->integer < 0 || t->integer >= gemma4_n_vocab(sv->m)) {
            oai_error_set(&e, 400, "tokens[%zu] is not a token id", i);
            break;
        }
        jw_raw(&text, piece, g4_detok_push(&d, (int32_t)t->integer, piece, cap));
    }
    if (piece) jw_raw(&text, piece, g4_detok_flush(&d, piece, cap));
    free(piece);
    g4_json_free(doc);
    bool r;
    if (e.status) {
        r = send_error(rp, &e);
    } else {
        jw w = {0};
        jw_cstr(&w, "{\"content\":");
        jw_str(&w, text.s ? text.s : "", text.len);
        jw_cstr(&w, "}");
        r = send_json(rp, 200, &w);
        jw_free(&w);
    }
    jw_free(&text);
    return r;
}

/* llama-server's /apply-template: the prompt a chat request renders to. */
static bool do_apply_template(server *sv, const http_req *q, reply *rp) {
    bool ka;
    g4_json *doc = body_object(q, rp, &ka);
    if (!doc) return ka;
    oai_error e = {0};
    oai_request req = {0};
    int rc = oai_render_chat(doc, &sv->om, &req, &e);
    g4_json_free(doc);
    if (rc) return oai_request_free(&req), send_error(rp, &e);
    jw w = {0};
    jw_cstr(&w, "{\"prompt\":");
    jw_qstr(&w, req.prompt);
    jw_cstr(&w, "}");
    oai_request_free(&req);
    bool r = send_json(rp, 200, &w);
    jw_free(&w);
    return r;
}

static bool do_metrics(server *sv, reply *rp) {
    jw w = {0};
    srv_metrics(sv->s, &w);
    bool ok = !w.oom && send_body(rp, 200, "text/plain; version=0.0.4", w.s, w.len, NULL);
    jw_free(&w);
    return ok;
}

/* One choice of a request as it arrives. */
typedef struct answer {
    srv_job *job;
    jw text;
    oai_logprobs lp;
    oai_stream st;
    oai_usage u;
    oai_error e;
    const char *finish;
    bool done;
} answer;

/* Takes what choice a has new, waiting up to timeout_ms; true when it has
 * changed (or ended). */
static bool take_news(answer *a, const oai_request *r, int timeout_ms) {
    size_t had = a->text.len, had_lp = a->lp.n;
    a->done = srv_job_wait(a->job, &a->text, r->logprobs ? &a->lp : NULL, timeout_ms, &a->finish, &a->u, &a->e);
    return a->done || a->text.len > had || a->lp.n > had_lp;
}

static oai_choice choice_of(const answer *a) {
    return (oai_choice){.text = a->text.s, .len = a->text.len, .finish = a->finish, .lp = &a->lp};
}

/* The figures of the request: the prompt once, the tokens of every choice. */
static oai_usage usage_of(const answer *a, int n) {
    oai_usage u = a[0].u;
    for (int i = 1; i < n; i++) {
        u.n_gen += a[i].u.n_gen;
        if (a[i].u.t_gen_ms > u.t_gen_ms) u.t_gen_ms = a[i].u.t_gen_ms;
    }
    return u;
}

/* Streams the choices' events until they end; false when the client is gone. */
static bool stream_job(answer *a, int n, const oai_request *r, const oai_meta *meta, reply *rp) {
    rp->status = 200;
    if (http_stream_begin(rp->fd, 200, "text/event-stream", rp->ka, rp->headers)) return false;
    jw sse = {0};
    bool alive = true, over = false, failed = false;
    while (!over && alive) {
        sse.len = 0;
        over = true;
        int wait_ms = POLL_MS; /* on the first choice still running; the others are only looked at */
        for (int i = 0; i < n && !sse.oom; i++) {
            if (a[i].done) continue;
            bool news = take_news(&a[i], r, wait_ms);
            wait_ms = 0;
            if (a[i].done && a[i].e.status) { /* the request fails as a whole */
                sse.len = 0;
                jw_cstr(&sse, "data: ");
                oai_write_error(&sse, &a[i].e);
                jw_cstr(&sse, "\n\ndata: [DONE]\n\n");
                over = failed = true;
                break;
            }
            if (news || !a[i].st.started) {
                oai_choice c = choice_of(&a[i]);
                oai_write_stream(&sse, &a[i].st, r, meta, &c, &a[i].u);
            }
            over &= a[i].done;
            if (a[i].text.oom || a[i].lp.oom) sse.oom = true;
        }
        if (sse.oom) break;
        if (over && !failed) {
            oai_usage u = usage_of(a, n);
            oai_write_stream_end(&sse, r, meta, &u);
        }
        if (sse.len) alive = http_stream_chunk(rp->fd, sse.s, sse.len) == 0;
        else alive = !http_peer_gone(rp->fd);
    }
    oai_usage u = usage_of(a, n);
    rp->n_prompt = u.n_prompt, rp->n_gen = u.n_gen;
    jw_free(&sse);
    return alive && over && http_stream_end(rp->fd) == 0 && rp->ka;
}

static bool whole_job(answer *a, int n, const oai_request *r, const oai_meta *meta, reply *rp) {
    oai_error e = {0};
    for (int i = 0; i < n; i++) {
        while (!a[i].done)
            if (!take_news(&a[i], r, POLL_MS) && http_peer_gone(rp->fd)) return rp->status = 499, false; /* nginx's "client closed" */
        if (a[i].e.status && !e.status) e = a[i].e;
        if ((a[i].text.oom || a[i].lp.oom) && !e.status) oai_error_set(&e, 500, "out of memory");
    }
    oai_usage u = usage_of(a, n);
    rp->n_prompt = u.n_prompt, rp->n_gen = u.n_gen;
    if (e.status) return send_error(rp, &e);
    oai_choice c[OAI_MAX_N];
    for (int i = 0; i < n; i++) c[i] = choice_of(&a[i]);
    jw w = {0};
    oai_write_response(&w, r, meta, c, n, &u);
    bool rc = send_json(rp, 200, &w);
    jw_free(&w);
    return rc;
}

/* splitmix64: one step of a counter-based generator (ids, default seeds) */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* prefix-XXXXXXXXXXXXXXXXXXXXXXXX: 24 base-62 characters (142 bits) from the
 * process's random key and the request's number, as OpenAI's ids look. */
static void make_id(char *out, size_t cap, const char *prefix, uint64_t key, uint64_t n) {
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    char rnd[25];
    uint64_t x = mix64(key ^ mix64(n)), y = mix64(x), z = mix64(y);
    for (int i = 0; i < 24; i++) {
        uint64_t *w = i < 10 ? &x : i < 20 ? &y : &z; /* 62^10 < 2^64: each word gives 10 digits */
        rnd[i] = digits[*w % 62];
        *w /= 62;
    }
    rnd[24] = 0;
    snprintf(out, cap, "%s-%s", prefix, rnd);
}

static bool do_generate(server *sv, const http_req *q, reply *rp, bool chat) {
    oai_model om = sv->om;
    unsigned long long n = atomic_fetch_add(&sv->n_ids, 1);
    om.sampling.seed = mix64(sv->id_key + 2 * n + 1); /* when the request gives none */
    oai_request r;
    oai_error e;
    if (oai_parse_request(q->body, q->body_len, chat, &om, &r, &e)) return oai_request_free(&r), send_error(rp, &e);
    int32_t *ids = r.ids;
    int64_t n_ids = r.n_ids;
    char err[G4_ERR_LEN];
    if (r.prompt) {
        const g4_vocab *v = g4_model_vocab(sv->m);
        ids = NULL;
        n_ids = chat && !sv->special_in_content
                    ? g4_chat_tokenize(v, r.prompt, strlen(r.prompt), r.marks, r.n_marks, true, &ids, err)
                    : g4_tokenize(v, r.prompt, strlen(r.prompt), true, true, &ids, err);
        if (n_ids < 0) oai_error_set(&e, 400, "%s", err);
    }
    answer a[OAI_MAX_N] = {0};
    srv_job *jobs[OAI_MAX_N];
    const int n_choices = r.n_choices > 0 ? r.n_choices : 1;
    int submitted = -1;
    if (n_ids >= 0) {
        rp->n_prompt = n_ids > INT32_MAX ? INT32_MAX : (int32_t)n_ids;
        submitted = srv_submit(sv->s, &r, ids, rp->n_prompt, jobs, &e);
    }
    if (ids != r.ids) free(ids);
    if (submitted) return oai_request_free(&r), send_error(rp, &e);
    oai_meta meta = {.created = (long long)time(NULL), .model = sv->model_name, .vocab = g4_model_vocab(sv->m)};
    make_id(meta.id, sizeof meta.id, chat ? "chatcmpl" : "cmpl", sv->id_key, n);
    for (int i = 0; i < n_choices; i++) {
        a[i] = (answer){.job = jobs[i], .st = {.index = i}};
        jw_cstr(&a[i].text, r.forced ? r.forced : ""); /* a forced call is part of the answer */
    }
    bool rc = r.stream ? stream_job(a, n_choices, &r, &meta, rp) : whole_job(a, n_choices, &r, &meta, rp);
    for (int i = 0; i < n_choices; i++) {
        srv_job_release(jobs[i]);
        jw_free(&a[i].text);
        oai_logprobs_free(&a[i].lp);
    }
    oai_request_free(&r);
    return rc;
}

/* Whether a equals the key k, in time that does not depend on where they differ. */
static bool same_key(const char *a, const char *k) {
    size_t na = strlen(a), nk = strlen(k);
    unsigned diff = na != nk;
    for (size_t i = 0; i < na && i < nk; i++) diff |= (unsigned char)(a[i] ^ k[i]);
    return diff == 0;
}

/* "Authorization: Bearer KEY" or "x-api-key: KEY" with one of the keys. */
static bool authorized(const server *sv, const http_req *q) {
    if (!sv->n_api_keys) return true;
    const char *bearer = strncmp(q->auth, "Bearer ", 7) ? NULL : q->auth + 7;
    bool ok = false;
    for (int i = 0; i < sv->n_api_keys; i++)
        if ((bearer && same_key(bearer, sv->api_keys[i])) || (*q->api_key && same_key(q->api_key, sv->api_keys[i]))) ok = true;
    return ok;
}

/* The CORS lines of every response: the allowed origin (--cors-origin, or
 * as llama.cpp's server does, the origin the request came from). */
static void cors_headers(const server *sv, const http_req *q, reply *rp) {
    rp->headers[0] = 0;
    if (sv->cors_origin)
        snprintf(rp->headers, sizeof rp->headers, "Access-Control-Allow-Origin: %s\r\n", sv->cors_origin);
    else if (*q->origin && !strpbrk(q->origin, "\r\n"))
        snprintf(rp->headers, sizeof rp->headers, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", q->origin);
}

/* A CORS preflight: what a browser may send from the allowed origin. */
static bool preflight(reply *rp) {
    static const char allow[] = "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                                "Access-Control-Allow-Headers: Authorization, Content-Type, X-Api-Key\r\n"
                                "Access-Control-Max-Age: 86400\r\n";
    return send_body(rp, 204, "text/plain", "", 0, allow);
}

/* Answers one request; false when the connection is to be closed. */
static bool handle(server *sv, const http_req *q, reply *rp) {
    const char *p = q->path;
    cors_headers(sv, q, rp);
    if (!strcmp(q->method, "OPTIONS")) return preflight(rp);
    bool get = !strcmp(q->method, "GET"), post = !strcmp(q->method, "POST");
    static const char *const paths[] = {"/health", "/v1/health", "/v1/models", "/models", "/metrics",
                                        "/v1/chat/completions", "/chat/completions", "/v1/completions",
                                        "/completions", "/tokenize", "/detokenize", "/apply-template"};
    size_t k = 0;
    while (k < sizeof paths / sizeof paths[0] && strcmp(p, paths[k])) k++;
    if (k == sizeof paths / sizeof paths[0]) return fail(rp, 404, "no endpoint %.200s", p);
    if (k < 5 ? !get : !post) return fail(rp, 405, "%s is not allowed here", q->method);
    if (k < 2) {
        if (!atomic_load(&sv->ready)) return fail(rp, 503, "%s", "Loading model");
        static const char ok[] = "{\"status\":\"ok\"}";
        return send_body(rp, 200, "application/json", ok, sizeof ok - 1, NULL);
    }
    if (k >= 4 && !authorized(sv, q))
        return fail(rp, 401, "%s", "invalid or missing API key (Authorization: Bearer KEY, or x-api-key: KEY)");
    if (!atomic_load(&sv->ready)) return fail(rp, 503, "%s", "Loading model");
    switch (k) {
    case 2: case 3: return do_models(sv, rp);
    case 4: return do_metrics(sv, rp);
    case 5: case 6: return do_generate(sv, q, rp, true);
    case 7: case 8: return do_generate(sv, q, rp, false);
    case 9: return do_tokenize(sv, q, rp);
    case 10: return do_detokenize(sv, q, rp);
    default: return do_apply_template(sv, q, rp);
    }
}

/* The request's line in the log: "POST /v1/completions 200 prompt=12 gen=64 812 ms". */
static void log_request(const http_req *q, const reply *rp, double ms) {
    fprintf(stderr, "%s %s %d prompt=%d gen=%d %.0f ms\n", *q->method ? q->method : "-", *q->path ? q->path : "-",
            rp->status, rp->n_prompt, rp->n_gen, ms);
}

/* ---------------------------------------------------------------- connections */

typedef struct conn_arg {
    server *sv;
    int slot, fd;
} conn_arg;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Marks connection fd as waiting for a request or not; false when it has
 * been closed meanwhile to make room (its slot is another's now). */
static bool set_waiting(server *sv, const conn_arg *a, bool waiting) {
    pthread_mutex_lock(&sv->mu);
    conn_slot *s = &sv->conn[a->slot];
    const bool mine = s->fd == a->fd;
    if (mine) s->waiting = waiting, s->since = now_s();
    pthread_mutex_unlock(&sv->mu);
    return mine;
}

static void *connection(void *arg) {
    conn_arg a = *(conn_arg *)arg;
    free(arg);
    server *sv = a.sv;
    http_conn c = {.fd = a.fd, .idle_ms = IDLE_SECONDS * 1000, .head_ms = HEAD_SECONDS * 1000};
    struct timeval tv = {.tv_sec = IDLE_SECONDS};
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    for (;;) {
        http_req q;
        int status = 0;
        int rc = http_read(&c, &q, MAX_BODY, &status);
        if (!set_waiting(sv, &a, false)) { /* closed to make room: nobody to answer */
            if (rc == 1) http_req_free(&q);
            break;
        }
        if (rc == 0) break;
        const double t0 = now_s();
        reply rp = {.fd = c.fd, .ka = rc == 1 && q.keep_alive};
        bool ka = false;
        if (rc < 0) fail(&rp, status, "%s", http_reason(status));
        else ka = handle(sv, &q, &rp);
        log_request(&q, &rp, 1e3 * (now_s() - t0));
        http_req_free(&q);
        if (rc < 0) break;
        if (!ka || !set_waiting(sv, &a, true)) break;
    }
    http_conn_free(&c);
    pthread_mutex_lock(&sv->mu);
    if (sv->conn[a.slot].fd == a.fd) sv->conn[a.slot].fd = -1; /* checked before close: fd numbers are reused */
    close(a.fd);
    if (--sv->n_conn == 0) pthread_cond_broadcast(&sv->idle);
    pthread_mutex_unlock(&sv->mu);
    return NULL;
}

/* Takes a new connection into a free slot; with none free, into the slot of
 * the connection that has waited longest for a request or while reading
 * one (it is closed), and only when every connection is busy answering a
 * request is the newcomer answered 503. */
static void accept_one(server *sv, int lfd) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) return;
    pthread_mutex_lock(&sv->mu);
    int slot = -1, oldest = -1;
    for (int i = 0; i < MAX_CONN && slot < 0; i++) {
        const conn_slot *s = &sv->conn[i];
        if (s->fd < 0) slot = i;
        else if (s->waiting && (oldest < 0 || s->since < sv->conn[oldest].since)) oldest = i;
    }
    if (slot < 0 && oldest >= 0) {
        shutdown(sv->conn[oldest].fd, SHUT_RDWR); /* its thread wakes, sees the slot gone and closes it */
        slot = oldest;
    }
    conn_arg *a = slot >= 0 ? malloc(sizeof *a) : NULL;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (a) {
        *a = (conn_arg){sv, slot, fd};
        sv->conn[slot] = (conn_slot){fd, true, now_s()};
        sv->n_conn++;
        if (pthread_create(&t, &attr, connection, a)) {
            free(a), a = NULL;
            sv->conn[slot].fd = -1;
            sv->n_conn--;
        }
    }
    pthread_attr_destroy(&attr);
    pthread_mutex_unlock(&sv->mu);
    if (!a) {
        reply rp = {.fd = fd};
        fail(&rp, 503, "%s", "too many connections");
        close(fd);
    }
}

/* Accepts until a signal arrives. */
static void *acceptor(void *arg) {
    server *sv = ((void **)arg)[0];
    int lfd = *(int *)((void **)arg)[1];
    struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = sv->sig_pipe[0], .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        if (p[0].revents & POLLIN) accept_one(sv, lfd);
    }
    return NULL;
}

static int listen_on(const char *host, int32_t port, char *err) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc) return snprintf(err, G4_ERR_LEN, "%s: %s", host, gai_strerror(rc)), -1;
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 128)) {
        snprintf(err, G4_ERR_LEN, "%s:%d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage a;
    socklen_t n = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &n)) return -1;
    return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port : ((struct sockaddr_in *)&a)->sin_port);
}

/* ---------------------------------------------------------------- command */

static void usage(FILE *out) {
    fprintf(out,
            "usage: gemma4 serve -m FILE [options]\n"
            "OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models,\n"
            "/tokenize, /detokenize, /apply-template, /health, /metrics. Options take llama-server's\n"
            "spellings; one log line per request goes to stderr.\n"
            "  -m, --model FILE        model (GGUF)\n"
            "  --host ADDR             address to listen on (default: 127.0.0.1)\n"
            "  --port N                port; 0 = any free one, printed at start (default: 8080)\n"
            "  -c, --ctx-size N        context per request in tokens (default: min(model context, 4096))\n"
            "  -t, --threads N         threads (default: number of cores)\n"
            "  -np, --parallel N       requests generated at once (default: 4)\n"
            "  --queue N               requests waiting for a slot at most; more get 503 (default: 64)\n"
            "  -b, --batch-size N      tokens per forward step at most, shared evenly by the prompts\n"
            "                          being processed (default: 512)\n"
            "  --kv-max MB             cap on KV cache memory; requests wait until theirs fits (default: none)\n"
            "  --alias NAME            the model id /v1/models and every response report (default: the\n"
            "                          file name)\n"
            "  --api-key KEY[,KEY...]  require \"Authorization: Bearer KEY\" or \"x-api-key: KEY\" (not for\n"
            "                          /health, /v1/models); a key must not be empty\n"
            "  --api-key-file FILE     more keys, one a line\n"
            "  --cors-origin ORIGIN    Access-Control-Allow-Origin of every response; by default, as\n"
            "                          llama-server, a browser request's own Origin is allowed (any site)\n"
            "  --jinja                 render chat prompts with the model's own template\n"
            "                          (tokenizer.chat_template); the default when it has one\n"
            "  --no-jinja              use the built-in Gemma 4 renderer even so\n"
            "  --chat-template-file FILE\n"
            "                          a Jinja chat template to use instead of the model's\n"
            "  --chat-template-kwargs JSON\n"
            "                          extra template variables (e.g. {\"enable_thinking\":true}); a\n"
            "                          request's chat_template_kwargs override them\n"
            "  --context-shift         when a request fills its context, keep the first --keep tokens,\n"
            "                          drop half of the rest and go on (default: off: it ends there)\n"
            "  --no-context-shift      the default\n"
            "  --keep N                tokens kept after BOS by a context shift; -1: the whole prompt\n"
            "                          (default: 0)\n"
            "  -md, --model-draft FILE speculative decoding with this MTP drafter (gemma4-assistant GGUF)\n"
            "                          made for the model; the output stays the same. Requests asking\n"
            "                          for logprobs or forcing a tool call are decoded plainly\n"
            "  --draft-max N           most tokens drafted per step (default: 8; the length adapts to\n"
            "                          acceptance)\n"
            "  --draft-min N           fewest tokens drafted per step (default: 1)\n"
            "  --no-mmap               read the model into memory instead of mapping it\n"
            "  --mlock                 lock the weights in RAM\n"
            "  -ngl, --n-gpu-layers N  accepted and ignored: gemma4.c runs on the CPU\n"
            "  --special-in-content\n"
            "                          parse control-token text inside chat messages (\"<turn|>\", \"<|turn>\")\n"
            "                          as control tokens, so a message can close its turn and open one of\n"
            "                          another role. By default only the chat template's own markers are\n"
            "                          control tokens and message content is text. llama.cpp always\n"
            "                          parses them and has no such switch; this restores its behaviour\n"
            "  --version               the version\n"
            "  -h, --help              this help\n");
}

enum serve_opt {
    OPT_MODEL, OPT_HOST, OPT_PORT, OPT_CTX, OPT_THREADS, OPT_PARALLEL, OPT_QUEUE, OPT_BATCH, OPT_KV_MAX, OPT_ALIAS,
    OPT_API_KEY, OPT_API_KEY_FILE, OPT_CORS, OPT_NGL, OPT_NO_MMAP, OPT_MLOCK, OPT_SPECIAL, OPT_VERSION, OPT_HELP,
    OPT_JINJA, OPT_NO_JINJA, OPT_TEMPLATE_FILE, OPT_TEMPLATE_KWARGS, OPT_SHIFT, OPT_NO_SHIFT, OPT_KEEP,
    OPT_DRAFT_MODEL, OPT_DRAFT_MAX, OPT_DRAFT_MIN,
};

/* Every spelling of every option (llama-server's, and ours). */
static const struct {
    const char *name;
    enum serve_opt id;
    bool value;
} serve_opts[] = {
    {"-m", OPT_MODEL, 1}, {"--model", OPT_MODEL, 1}, {"--host", OPT_HOST, 1}, {"--port", OPT_PORT, 1},
    {"-c", OPT_CTX, 1}, {"--ctx-size", OPT_CTX, 1}, {"-t", OPT_THREADS, 1}, {"--threads", OPT_THREADS, 1},
    {"-np", OPT_PARALLEL, 1}, {"--parallel", OPT_PARALLEL, 1}, {"--queue", OPT_QUEUE, 1},
    {"-b", OPT_BATCH, 1}, {"--batch-size", OPT_BATCH, 1}, {"--kv-max", OPT_KV_MAX, 1}, {"--alias", OPT_ALIAS, 1},
    {"-a", OPT_ALIAS, 1}, {"--api-key", OPT_API_KEY, 1}, {"--api-key-file", OPT_API_KEY_FILE, 1},
    {"--cors-origin", OPT_CORS, 1}, {"-ngl", OPT_NGL, 1}, {"--n-gpu-layers", OPT_NGL, 1},
    {"--gpu-layers", OPT_NGL, 1}, {"--no-mmap", OPT_NO_MMAP, 0}, {"--mlock", OPT_MLOCK, 0},
    {"--special-in-content", OPT_SPECIAL, 0}, {"--version", OPT_VERSION, 0}, {"-h", OPT_HELP, 0},
    {"--help", OPT_HELP, 0}, {"--jinja", OPT_JINJA, 0}, {"--no-jinja", OPT_NO_JINJA, 0},
    {"--chat-template-file", OPT_TEMPLATE_FILE, 1}, {"--chat-template-kwargs", OPT_TEMPLATE_KWARGS, 1},
    {"--context-shift", OPT_SHIFT, 0}, {"--no-context-shift", OPT_NO_SHIFT, 0}, {"--keep", OPT_KEEP, 1},
    {"-md", OPT_DRAFT_MODEL, 1}, {"--model-draft", OPT_DRAFT_MODEL, 1}, {"--draft-max", OPT_DRAFT_MAX, 1},
    {"--draft", OPT_DRAFT_MAX, 1}, {"--draft-n", OPT_DRAFT_MAX, 1}, {"--draft-min", OPT_DRAFT_MIN, 1},
    {"--draft-n-min", OPT_DRAFT_MIN, 1},
};

/* Adds the keys of text (separated by sep characters, each trimmed of
 * spaces); -1 after printing why (an empty key, out of memory). */
static int add_keys(server *sv, const char *text, const char *sep, const char *from) {
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, sep);
        const char *k = p, *end = p + n;
        p = *end ? end + 1 : end;
        while (k < end && (*k == ' ' || *k == '\t' || *k == '\r')) k++;
        while (end > k && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
        if (k == end) {
            if (strchr(sep, '\n')) continue; /* a blank line of a key file */
            return fprintf(stderr, "gemma4 serve: %s must not be empty\n", from), -1;
        }
        char **g = realloc(sv->api_keys, (size_t)(sv->n_api_keys + 1) * sizeof *g);
        if (!g || !(g[sv->n_api_keys] = strndup(k, (size_t)(end - k))))
            return sv->api_keys = g ? g : sv->api_keys, fprintf(stderr, "gemma4 serve: out of memory\n"), -1;
        sv->api_keys = g;
        sv->n_api_keys++;
    }
    return 0;
}

/* Random bits for ids and seeds: getrandom, else the clock and pid. */
static uint64_t process_key(void) {
    uint64_t k = 0;
    if (getrandom(&k, sizeof k, 0) == (ssize_t)sizeof k) return k;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return mix64((uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec) ^ mix64((uint64_t)getpid());
}

/* The chat template of file path, or else model m's tokenizer.chat_template;
 * NULL with err empty when m has none, NULL with err set on an error. */
static g4_chat_template *load_template(const char *path, const gemma4_model *m, char *err) {
    *err = 0;
    if (path) {
        size_t len;
        char *src = g4_read_file(path, &len, err);
        g4_chat_template *t = src ? g4_chat_template_new(src, len, err) : NULL;
        if (src && !t) {
            char why[G4_ERR_LEN];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, G4_ERR_LEN, "%.80s: %.400s", path, why);
        }
        free(src);
        return t;
    }
    const g4_gguf_kv *kv = g4_gguf_find_kv(g4_model_gguf(m), "tokenizer.chat_template");
    if (!kv || kv->type != GGUF_TYPE_STRING) return NULL;
    return g4_chat_template_new(kv->val.str.ptr, kv->val.str.len, err);
}

static void free_keys(server *sv) {
    for (int i = 0; i < sv->n_api_keys; i++) free(sv->api_keys[i]);
    free(sv->api_keys);
    sv->api_keys = NULL;
    sv->n_api_keys = 0;
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *host = "127.0.0.1", *alias = NULL, *cors = NULL, *template_file = NULL,
               *template_kwargs = NULL;
    int32_t port = 8080, kv_max_mb = 0, ngl = 0;
    bool special_in_content = false, jinja = true;
    srv_params sp = {.n_parallel = 4, .n_batch = 512, .queue_max = 64};
    static server sv;
    memset(&sv, 0, sizeof sv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t o = 0;
        while (o < sizeof serve_opts / sizeof serve_opts[0] && strcmp(a, serve_opts[o].name)) o++;
        if (o == sizeof serve_opts / sizeof serve_opts[0])
            return free_keys(&sv), fprintf(stderr, "gemma4 serve: unknown option '%s' (gemma4 serve --help lists them)\n", a), 2;
        if (serve_opts[o].value && i + 1 >= argc)
            return free_keys(&sv), fprintf(stderr, "gemma4 serve: %s needs a value\n", a), 2;
        const char *v = serve_opts[o].value ? argv[++i] : NULL;
        int bad = 0;
        switch (serve_opts[o].id) {
        case OPT_MODEL: model = v; break;
        case OPT_HOST: host = v; break;
        case OPT_PORT: bad = cli_int(v, 0, 65535, &port, a); break;
        case OPT_CTX: bad = cli_int(v, 1, INT32_MAX, &sp.n_ctx, a); break;
        case OPT_THREADS: bad = cli_int(v, 1, 1024, &sp.n_threads, a); break;
        case OPT_PARALLEL: bad = cli_int(v, 1, 256, &sp.n_parallel, a); break;
        case OPT_QUEUE: bad = cli_int(v, 0, 100000, &sp.queue_max, a); break;
        case OPT_BATCH: bad = cli_int(v, 1, 65536, &sp.n_batch, a); break;
        case OPT_KV_MAX: bad = cli_int(v, 1, 1 << 24, &kv_max_mb, a); break;
        case OPT_ALIAS: alias = v; break;
        case OPT_API_KEY: bad = add_keys(&sv, *v ? v : ",", ",", "--api-key"); break;
        case OPT_API_KEY_FILE: {
            size_t len;
            char *text = cli_read_input(v, &len);
            bad = !text || add_keys(&sv, text, "\n", "--api-key-file");
            if (!bad && !sv.n_api_keys) fprintf(stderr, "gemma4 serve: %s: no key in the file\n", v), bad = 1;
            free(text);
            break;
        }
        case OPT_CORS: cors = v; break;
        case OPT_NGL: bad = cli_int(v, -1, INT32_MAX, &ngl, a); break;
        case OPT_NO_MMAP: cli_load_option("--no-mmap"); break;
        case OPT_MLOCK: cli_load_option("--mlock"); break;
        case OPT_SPECIAL: special_in_content = true; break;
        case OPT_JINJA: jinja = true; break;
        case OPT_NO_JINJA: jinja = false; break;
        case OPT_TEMPLATE_FILE: template_file = v; break;
        case OPT_TEMPLATE_KWARGS: template_kwargs = v; break;
        case OPT_SHIFT: sp.context_shift = true; break;
        case OPT_NO_SHIFT: sp.context_shift = false; break;
        case OPT_KEEP: bad = cli_int(v, -1, INT32_MAX, &sp.n_keep, a); break;
        case OPT_DRAFT_MODEL: sp.draft_model = v; break;
        case OPT_DRAFT_MAX: bad = cli_int(v, 1, GEMMA4_DRAFT_CAP, &sp.draft_max, a); break;
        case OPT_DRAFT_MIN: bad = cli_int(v, 1, GEMMA4_DRAFT_CAP, &sp.draft_min, a); break;
        case OPT_VERSION: return free_keys(&sv), cli_print_version(), 0;
        case OPT_HELP: return free_keys(&sv), usage(stdout), 0;
        }
        if (bad) return free_keys(&sv), 2;
    }
    if (!model) return free_keys(&sv), fprintf(stderr, "gemma4 serve: -m FILE is required\n"), 2;
    if (sp.draft_min > (sp.draft_max ? sp.draft_max : 8))
        return free_keys(&sv), fprintf(stderr, "gemma4 serve: --draft-min is above --draft-max\n"), 2;
    if (cors && (!*cors || strpbrk(cors, "\r\n")))
        return free_keys(&sv), fprintf(stderr, "gemma4 serve: --cors-origin must be one origin, not empty\n"), 2;
    if (ngl) fprintf(stderr, "gemma4 serve: -ngl %d ignored: gemma4.c runs on the CPU\n", ngl);
    char err[G4_ERR_LEN];
    g4_json *kwargs = NULL;
    if (template_kwargs &&
        (!(kwargs = g4_json_parse(template_kwargs, strlen(template_kwargs), "--chat-template-kwargs", err)) ||
         kwargs->type != G4_JSON_OBJECT)) {
        fprintf(stderr, "gemma4 serve: %s\n", kwargs ? "--chat-template-kwargs must be a JSON object" : err);
        return g4_json_free(kwargs), free_keys(&sv), 2;
    }
    g4_chat_template *tmpl = NULL;
    if (template_file && !(tmpl = load_template(template_file, NULL, err))) {
        fprintf(stderr, "gemma4 serve: %s\n", err);
        return g4_json_free(kwargs), free_keys(&sv), 2;
    }
    sp.kv_max_bytes = (uint64_t)kv_max_mb << 20;

    const char *slash = strrchr(model, '/');
    sv.model_name = alias ? alias : slash ? slash + 1 : model;
    sv.cors_origin = cors;
    sv.id_key = process_key();
    sv.special_in_content = special_in_content;
    for (int i = 0; i < MAX_CONN; i++) sv.conn[i].fd = -1;
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.idle, NULL);
    int lfd = listen_on(host, port, err);
    if (lfd < 0) return free_keys(&sv), fprintf(stderr, "gemma4 serve: %s\n", err), 1;
    if (pipe(sv.sig_pipe)) return fprintf(stderr, "gemma4 serve: pipe: %s\n", strerror(errno)), close(lfd), 1;
    sig_fd = sv.sig_pipe[1];
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "gemma4 serve: listening on http://%s:%d\n", host, bound_port(lfd));

    pthread_t acc;
    void *acc_arg[2] = {&sv, &lfd};
    int rc = 1;
    if (pthread_create(&acc, NULL, acceptor, acc_arg)) {
        fprintf(stderr, "gemma4 serve: cannot start the accept thread\n");
        close(lfd);
        return 1;
    }
    if ((sv.m = cli_load(model, err)) && (sv.s = srv_new(sv.m, &sp, err))) {
        if (!tmpl && jinja && !(tmpl = load_template(NULL, sv.m, err)) && *err)
            fprintf(stderr, "gemma4 serve: the model's chat template: %s; using the built-in one\n", err);
        sv.om = (oai_model){.sampling = gemma4_sampling_defaults(sv.m), .n_vocab = gemma4_n_vocab(sv.m),
                            .vocab = g4_model_vocab(sv.m),
                            .empty_thought_channel = gemma4_empty_thought_channel(sv.m), .tmpl = tmpl,
                            .kwargs = kwargs};
        atomic_store(&sv.ready, true);
        fprintf(stderr, "gemma4 serve: %s model ready; %d slots of %d tokens; chat template: %s\n",
                gemma4_variant(sv.m), sp.n_parallel, srv_n_ctx(sv.s),
                !tmpl ? "built-in" : template_file ? template_file : "the model's");
        rc = 0;
    } else {
        fprintf(stderr, "%s\n", err);
        on_signal(SIGTERM); /* stop the acceptor */
    }
    pthread_join(acc, NULL);
    close(lfd);
    if (rc == 0) fprintf(stderr, "gemma4 serve: shutting down\n");
    /* End the running requests (their clients get an answer), then wake the
     * connections waiting for a next request. */
    if (sv.s) srv_stop(sv.s);
    pthread_mutex_lock(&sv.mu);
    for (int i = 0; i < MAX_CONN; i++)
        if (sv.conn[i].fd >= 0) shutdown(sv.conn[i].fd, SHUT_RD);
    while (sv.n_conn > 0) pthread_cond_wait(&sv.idle, &sv.mu);
    pthread_mutex_unlock(&sv.mu);
    srv_free(sv.s);
    gemma4_model_free(sv.m);
    close(sv.sig_pipe[0]);
    close(sv.sig_pipe[1]);
    sig_fd = -1;
    free_keys(&sv);
    g4_chat_template_free(tmpl);
    g4_json_free(kwargs);
    return rc;
}
