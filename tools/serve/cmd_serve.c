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
    const char *model_name; /* file name, as /v1/models shows it */
    gemma4_model *m;
    srv *s;
    oai_model om;
    const char *api_key;
    bool special_in_content; /* control-token text in messages is parsed (llama.cpp's way) */
    atomic_bool ready;
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

static bool send_json(int fd, int status, const jw *body, bool keep_alive) {
    if (body->oom) return http_respond(fd, 500, "application/json", "{}", 2, false, NULL), false;
    return http_respond(fd, status, "application/json", body->s, body->len, keep_alive, NULL) == 0 && keep_alive;
}

static bool send_error(int fd, const oai_error *e, bool keep_alive) {
    jw w = {0};
    oai_write_error(&w, e);
    const char *extra = e->status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL;
    bool ok = !w.oom && http_respond(fd, e->status, "application/json", w.s, w.len, keep_alive, extra) == 0;
    jw_free(&w);
    return ok && keep_alive;
}

static bool fail(int fd, bool keep_alive, int status, const char *fmt, const char *arg) {
    oai_error e;
    oai_error_set(&e, status, fmt, arg);
    return send_error(fd, &e, keep_alive);
}

/* ---------------------------------------------------------------- endpoints */

static bool do_models(server *sv, int fd, bool ka) {
    jw w = {0};
    jw_cstr(&w, "{\"object\":\"list\",\"data\":[{\"id\":");
    jw_qstr(&w, sv->model_name);
    jw_printf(&w, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"gemma4.c\",\"meta\":{\"n_vocab\":%d,"
                  "\"n_ctx_train\":%d,\"n_ctx\":%d,\"variant\":",
              (long long)time(NULL), gemma4_n_vocab(sv->m), gemma4_n_ctx_train(sv->m), srv_n_ctx(sv->s));
    jw_qstr(&w, gemma4_variant(sv->m));
    jw_cstr(&w, "}}]}");
    bool r = send_json(fd, 200, &w, ka);
    jw_free(&w);
    return r;
}

/* The body as a JSON object, or NULL after answering 400. */
static g4_json *body_object(const http_req *q, int fd, bool *ka) {
    char err[G4_ERR_LEN];
    g4_json *doc = g4_json_parse(q->body ? q->body : "", q->body_len, "body", err);
    if (doc && doc->type == G4_JSON_OBJECT) return doc;
    *ka = fail(fd, *ka, 400, "%s", doc ? "the body must be a JSON object" : err);
    g4_json_free(doc);
    return NULL;
}

static bool do_tokenize(server *sv, const http_req *q, int fd, bool ka) {
    g4_json *doc = body_object(q, fd, &ka);
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
    if (e.status) return send_error(fd, &e, ka);
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
    bool r = send_json(fd, 200, &w, ka);
    jw_free(&w);
    return r;
}

static bool do_detokenize(server *sv, const http_req *q, int fd, bool ka) {
    g4_json *doc = body_object(q, fd, &ka);
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
        r = send_error(fd, &e, ka);
    } else {
        jw w = {0};
        jw_cstr(&w, "{\"content\":");
        jw_str(&w, text.s ? text.s : "", text.len);
        jw_cstr(&w, "}");
        r = send_json(fd, 200, &w, ka);
        jw_free(&w);
    }
    jw_free(&text);
    return r;
}

/* llama-server's /apply-template: the prompt a chat request renders to. */
static bool do_apply_template(server *sv, const http_req *q, int fd, bool ka) {
    g4_json *doc = body_object(q, fd, &ka);
    if (!doc) return ka;
    oai_error e = {0};
    oai_request req = {0};
    int rc = oai_render_chat(doc, &sv->om, &req, &e);
    g4_json_free(doc);
    if (rc) return oai_request_free(&req), send_error(fd, &e, ka);
    jw w = {0};
    jw_cstr(&w, "{\"prompt\":");
    jw_qstr(&w, req.prompt);
    jw_cstr(&w, "}");
    oai_request_free(&req);
    bool r = send_json(fd, 200, &w, ka);
    jw_free(&w);
    return r;
}

static bool do_metrics(server *sv, int fd, bool ka) {
    jw w = {0};
    srv_metrics(sv->s, &w);
    bool ok = !w.oom && http_respond(fd, 200, "text/plain; version=0.0.4", w.s, w.len, ka, NULL) == 0;
    jw_free(&w);
    return ok && ka;
}

/* Streams the job's events until it ends; false when the client is gone. */
static bool stream_job(server *sv, srv_job *job, const oai_request *r, const oai_meta *meta, int fd, bool ka) {
    (void)sv;
    if (http_stream_begin(fd, 200, "text/event-stream", ka)) return false;
    jw text = {0}, sse = {0};
    jw_cstr(&text, r->forced ? r->forced : ""); /* a forced call is part of the answer */
    oai_stream st = {0};
    oai_usage u = {0};
    oai_error e = {0};
    const char *finish = NULL;
    bool alive = true;
    for (int done = 0; !done && alive;) {
        size_t had = text.len;
        done = srv_job_wait(job, &text, POLL_MS, &finish, &u, &e);
        sse.len = 0;
        if (done && e.status) {
            jw_cstr(&sse, "data: ");
            oai_write_error(&sse, &e);
            jw_cstr(&sse, "\n\ndata: [DONE]\n\n");
        } else if (done || text.len > had || !st.started) {
            oai_write_stream(&sse, &st, r, meta, text.s, text.len, done ? finish : NULL, &u);
        }
        if (sse.oom || text.oom) break;
        if (sse.len) alive = http_stream_chunk(fd, sse.s, sse.len) == 0;
        else alive = !http_peer_gone(fd);
    }
    jw_free(&text);
    jw_free(&sse);
    return alive && http_stream_end(fd) == 0 && ka;
}

static bool whole_job(srv_job *job, const oai_request *r, const oai_meta *meta, int fd, bool ka) {
    jw text = {0};
    jw_cstr(&text, r->forced ? r->forced : ""); /* a forced call is part of the answer */
    oai_usage u = {0};
    oai_error e = {0};
    const char *finish = NULL;
    while (!srv_job_wait(job, &text, POLL_MS, &finish, &u, &e))
        if (http_peer_gone(fd)) return jw_free(&text), false;
    bool rc;
    if (e.status || text.oom) {
        if (!e.status) oai_error_set(&e, 500, "out of memory");
        rc = send_error(fd, &e, ka);
    } else {
        jw w = {0};
        oai_write_response(&w, r, meta, text.s, text.len, finish, &u);
        rc = send_json(fd, 200, &w, ka);
        jw_free(&w);
    }
    jw_free(&text);
    return rc;
}

static bool do_generate(server *sv, const http_req *q, int fd, bool ka, bool chat) {
    oai_model om = sv->om;
    unsigned long long n = atomic_fetch_add(&sv->n_ids, 1);
    om.sampling.seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull + n; /* when the request gives none */
    oai_request r;
    oai_error e;
    if (oai_parse_request(q->body, q->body_len, chat, &om, &r, &e)) return oai_request_free(&r), send_error(fd, &e, ka);
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
    srv_job *job = NULL;
    if (n_ids >= 0) job = srv_submit(sv->s, &r, ids, n_ids > INT32_MAX ? INT32_MAX : (int32_t)n_ids, &e);
    if (ids != r.ids) free(ids);
    if (!job) return oai_request_free(&r), send_error(fd, &e, ka);
    oai_meta meta = {.created = (long long)time(NULL), .model = sv->model_name};
    snprintf(meta.id, sizeof meta.id, "%s-%llu", chat ? "chatcmpl" : "cmpl", n);
    bool rc = r.stream ? stream_job(sv, job, &r, &meta, fd, ka) : whole_job(job, &r, &meta, fd, ka);
    srv_job_release(job);
    oai_request_free(&r);
    return rc;
}

static bool authorized(const server *sv, const http_req *q) {
    if (!sv->api_key) return true;
    if (strncmp(q->auth, "Bearer ", 7)) return false;
    const char *a = q->auth + 7, *k = sv->api_key;
    size_t na = strlen(a), nk = strlen(k);
    unsigned diff = na != nk;
    for (size_t i = 0; i < na && i < nk; i++) diff |= (unsigned char)(a[i] ^ k[i]);
    return diff == 0;
}

/* Answers one request; false when the connection is to be closed. */
static bool handle(server *sv, const http_req *q, int fd) {
    bool ka = q->keep_alive;
    const char *p = q->path;
    bool get = !strcmp(q->method, "GET"), post = !strcmp(q->method, "POST");
    static const char *const paths[] = {"/health", "/v1/health", "/v1/models", "/models", "/metrics",
                                        "/v1/chat/completions", "/chat/completions", "/v1/completions",
                                        "/completions", "/tokenize", "/detokenize", "/apply-template"};
    size_t k = 0;
    while (k < sizeof paths / sizeof paths[0] && strcmp(p, paths[k])) k++;
    if (k == sizeof paths / sizeof paths[0]) return fail(fd, ka, 404, "no endpoint %.200s", p);
    if (k < 5 ? !get : !post) return fail(fd, ka, 405, "%s is not allowed here", q->method);
    if (k < 2) {
        if (!atomic_load(&sv->ready)) return fail(fd, ka, 503, "%s", "Loading model");
        static const char ok[] = "{\"status\":\"ok\"}";
        return http_respond(fd, 200, "application/json", ok, sizeof ok - 1, ka, NULL) == 0 && ka;
    }
    if (k >= 4 && !authorized(sv, q)) return fail(fd, ka, 401, "%s", "invalid or missing API key (Authorization: Bearer KEY)");
    if (!atomic_load(&sv->ready)) return fail(fd, ka, 503, "%s", "Loading model");
    switch (k) {
    case 2: case 3: return do_models(sv, fd, ka);
    case 4: return do_metrics(sv, fd, ka);
    case 5: case 6: return do_generate(sv, q, fd, ka, true);
    case 7: case 8: return do_generate(sv, q, fd, ka, false);
    case 9: return do_tokenize(sv, q, fd, ka);
    case 10: return do_detokenize(sv, q, fd, ka);
    default: return do_apply_template(sv, q, fd, ka);
    }
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
        if (rc < 0) {
            fail(c.fd, false, status, "%s", http_reason(status));
            break;
        }
        bool ka = handle(sv, &q, c.fd);
        http_req_free(&q);
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
        fail(fd, false, 503, "%s", "too many connections");
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
            "/tokenize, /detokenize, /apply-template, /health, /metrics.\n"
            "  -m FILE          model (GGUF)\n"
            "  --host ADDR      address to listen on (default: 127.0.0.1)\n"
            "  --port N         port; 0 = any free one, printed at start (default: 8080)\n"
            "  -c N             context per request in tokens (default: min(model context, 4096))\n"
            "  -t N             threads (default: number of cores)\n"
            "  --parallel N     requests generated at once (default: 4)\n"
            "  --queue N        requests waiting for a slot at most; more get 503 (default: 64)\n"
            "  -b N             tokens per forward step at most, shared evenly by the prompts\n"
            "                   being processed (default: 512)\n"
            "  --kv-max MB      cap on KV cache memory; requests wait until theirs fits (default: none)\n"
            "  --api-key KEY    require \"Authorization: Bearer KEY\" (not for /health, /v1/models);\n"
            "                   KEY must not be empty\n"
            "  --special-in-content\n"
            "                   parse control-token text inside chat messages (\"<turn|>\", \"<|turn>\")\n"
            "                   as control tokens, so a message can close its turn and open one of\n"
            "                   another role. By default only the chat template's own markers are\n"
            "                   control tokens and message content is text. llama.cpp always\n"
            "                   parses them and has no such switch; this restores its behaviour\n"
            "  -h, --help       this help\n");
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *host = "127.0.0.1", *api_key = NULL;
    int32_t port = 8080, kv_max_mb = 0;
    bool special_in_content = false;
    srv_params sp = {.n_parallel = 4, .n_batch = 512, .queue_max = 64};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        if (!strcmp(a, "--special-in-content")) {
            special_in_content = true;
            continue;
        }
        if (i + 1 >= argc) return fprintf(stderr, "gemma4 serve: unknown option or missing value: %s\n", a), usage(stderr), 2;
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--api-key")) api_key = v;
        else if (!strcmp(a, "--port")) bad = cli_int(v, 0, 65535, &port, a);
        else if (!strcmp(a, "-c")) bad = cli_int(v, 1, INT32_MAX, &sp.n_ctx, a);
        else if (!strcmp(a, "-t")) bad = cli_int(v, 1, 1024, &sp.n_threads, a);
        else if (!strcmp(a, "--parallel")) bad = cli_int(v, 1, 256, &sp.n_parallel, a);
        else if (!strcmp(a, "--queue")) bad = cli_int(v, 0, 100000, &sp.queue_max, a);
        else if (!strcmp(a, "-b")) bad = cli_int(v, 1, 65536, &sp.n_batch, a);
        else if (!strcmp(a, "--kv-max")) bad = cli_int(v, 1, 1 << 24, &kv_max_mb, a);
        else return fprintf(stderr, "gemma4 serve: unknown option '%s'\n", a), usage(stderr), 2;
        if (bad) return 2;
    }
    if (!model) return fprintf(stderr, "gemma4 serve: -m FILE is required\n"), usage(stderr), 2;
    if (api_key && !*api_key) return fprintf(stderr, "gemma4 serve: --api-key must not be empty\n"), 2;
    sp.kv_max_bytes = (uint64_t)kv_max_mb << 20;

    static server sv;
    memset(&sv, 0, sizeof sv);
    const char *slash = strrchr(model, '/');
    sv.model_name = slash ? slash + 1 : model;
    sv.api_key = api_key;
    sv.special_in_content = special_in_content;
    for (int i = 0; i < MAX_CONN; i++) sv.conn[i].fd = -1;
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.idle, NULL);
    char err[G4_ERR_LEN];
    int lfd = listen_on(host, port, err);
    if (lfd < 0) return fprintf(stderr, "gemma4 serve: %s\n", err), 1;
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
        sv.om = (oai_model){.sampling = gemma4_sampling_defaults(sv.m), .n_vocab = gemma4_n_vocab(sv.m),
                            .empty_thought_channel = gemma4_empty_thought_channel(sv.m)};
        atomic_store(&sv.ready, true);
        fprintf(stderr, "gemma4 serve: %s model ready; %d slots of %d tokens\n", gemma4_variant(sv.m), sp.n_parallel,
                srv_n_ctx(sv.s));
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
    return rc;
}
