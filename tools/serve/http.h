/* Just enough HTTP/1.1 for an API server: requests with Content-Length or
 * chunked bodies on keep-alive connections, responses with a known length or
 * streamed in chunks (Server-Sent Events). Everything a client sends is
 * bounded: the request head by HTTP_MAX_HEAD, the body by the cap the
 * caller gives, and both in time (a client that trickles bytes cannot hold
 * a connection longer than its deadlines). Lines may end in CRLF or in a
 * bare LF, as most servers accept. */
#ifndef G4_HTTP_H
#define G4_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD 16384  /* request line and headers */
#define HTTP_BODY_RATE 65536 /* bytes a second a body is given time for, beyond head_ms */

typedef struct http_conn {
    int fd;
    char *buf; /* bytes received and not yet consumed (a pipelined request) */
    size_t len, cap;
    /* Deadlines in ms, 0 for none: the first byte of a request must come
     * within idle_ms; from then the request line and headers within
     * head_ms; from then a body of n bytes within head_ms + 1000 n /
     * HTTP_BODY_RATE. */
    int idle_ms, head_ms;
} http_conn;

typedef struct http_req {
    char method[16];
    char path[1024];     /* without the query string */
    char auth[512];      /* Authorization header, "" if none */
    char api_key[512];   /* x-api-key header, "" if none */
    char origin[512];    /* Origin header (CORS), "" if none */
    bool keep_alive;
    char *body;          /* NUL-terminated (malloc'd), body_len bytes; NULL if none */
    size_t body_len;
} http_req;

/* Reads the next request. 1: a request; 0: the peer closed (or idled out)
 * between requests; -1: a bad request, *status is the code to answer
 * with (400, 408: a deadline passed, 413, 431, 501) before closing.
 * max_body caps the body, Content-Length or chunked (the sum of the
 * chunks; a chunked body gets the deadline of a Content-Length body of the
 * chunk sizes declared so far). Both framings at once, a transfer coding
 * other than chunked, or a malformed chunk size: 400 (501 for an unknown
 * coding). Answers "Expect: 100-continue" itself. */
int http_read(http_conn *c, http_req *r, size_t max_body, int *status);
void http_req_free(http_req *r);
void http_conn_free(http_conn *c);

/* Whole response. extra: more header lines, each ending in "\r\n" (or NULL).
 * 0, or -1 when the peer is gone. */
int http_respond(int fd, int status, const char *content_type, const char *body, size_t len, bool keep_alive,
                 const char *extra);
/* A streamed response: the head (extra as for http_respond), then chunks,
 * then the end. */
int http_stream_begin(int fd, int status, const char *content_type, bool keep_alive, const char *extra);
int http_stream_chunk(int fd, const char *data, size_t len);
int http_stream_end(int fd);

/* Whether the peer has closed its end or reset (checked without blocking). */
bool http_peer_gone(int fd);

const char *http_reason(int status);

#endif
