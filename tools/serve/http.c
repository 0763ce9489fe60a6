#include "tools/serve/http.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The deadline ms from now, or -1 (none) when ms is 0. */
static int64_t deadline_in(int64_t ms) { return ms ? now_ms() + ms : -1; }

/* Receives more bytes into c->buf before deadline (-1: none). 1, 0
 * (closed), -1 (error, or the deadline passed). */
static int fill(http_conn *c, int64_t deadline) {
    if (c->len + 4096 > c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8192;
        char *g = realloc(c->buf, cap);
        if (!g) return -1;
        c->buf = g, c->cap = cap;
    }
    for (;;) {
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            int k = left > 0 ? poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) : 0;
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) return -1;
        }
        ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return k == 0 ? 0 : -1;
        c->len += (size_t)k;
        return 1;
    }
}

/* Length of the head at the start of buf[0..len), through the empty line
 * that ends it (lines ending in CRLF or LF), or 0 while it is incomplete. */
static size_t head_end(const char *buf, size_t len) {
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))); p++) {
        const size_t i = (size_t)(p - buf) + 1;
        if (i < len && buf[i] == '\n') return i + 1;
        if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') return i + 2;
    }
    return 0;
}

static void consume(http_conn *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Case-insensitive "name:" match at the start of a header line. */
static const char *header_value(const char *line, const char *name) {
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) || line[n] != ':') return NULL;
    line += n + 1;
    while (*line == ' ' || *line == '\t') line++;
    return line;
}

/* Copies a header value into a field of the request; false when too long. */
static bool copy_value(char *dst, size_t cap, const char *v) {
    size_t n = strlen(v);
    if (n >= cap) return false;
    memcpy(dst, v, n + 1);
    return true;
}

/* Parses the head in c->buf[0..head_len) (NUL-terminated there). */
static int parse_head(char *head, http_req *r, long long *content_length, bool *chunked, bool *expect_continue,
                      int *status) {
    *status = 400;
    char *save = NULL, *line = strtok_r(head, "\r\n", &save);
    if (!line) return -1;
    char version[16];
    char target[sizeof r->path];
    if (sscanf(line, "%15s %1023s %15s", r->method, target, version) != 3 || strncmp(version, "HTTP/1.", 7)) return -1;
    target[strcspn(target, "?#")] = 0;
    memcpy(r->path, target, strlen(target) + 1);
    r->keep_alive = strcmp(version, "HTTP/1.0") != 0;
    *content_length = -1;
    *chunked = false;
    while ((line = strtok_r(NULL, "\r\n", &save))) {
        const char *v;
        if ((v = header_value(line, "Content-Length"))) {
            char *end;
            errno = 0;
            long long n = strtoll(v, &end, 10);
            /* digits only: strtoll would also take a sign or spaces */
            if (*v < '0' || *v > '9' || errno || *end || (*content_length >= 0 && n != *content_length)) return -1;
            *content_length = n;
        } else if ((v = header_value(line, "Transfer-Encoding"))) {
            /* only "chunked" alone: a request with another coding (gzip, ...)
             * cannot be read, and a second Transfer-Encoding line is one */
            if (strcasecmp(v, "chunked")) return *status = strcasestr(v, "chunked") ? 400 : 501, -1;
            if (*chunked) return -1;
            *chunked = true;
        } else if ((v = header_value(line, "Connection"))) {
            if (!strcasecmp(v, "close")) r->keep_alive = false;
            if (!strcasecmp(v, "keep-alive")) r->keep_alive = true;
        } else if ((v = header_value(line, "Authorization"))) {
            if (!copy_value(r->auth, sizeof r->auth, v)) return -1;
        } else if ((v = header_value(line, "X-Api-Key"))) {
            if (!copy_value(r->api_key, sizeof r->api_key, v)) return -1;
        } else if ((v = header_value(line, "Origin"))) {
            if (!copy_value(r->origin, sizeof r->origin, v)) return -1;
        } else if ((v = header_value(line, "Expect"))) {
            *expect_continue = !strcasecmp(v, "100-continue");
        } else if (!strchr(line, ':')) {
            return -1;
        }
    }
    /* both framings: which one a proxy in between believed is unknown
     * (request smuggling), so neither is trusted */
    if (*chunked && *content_length >= 0) return -1;
    return 0;
}

/* Waits until c->buf holds at least n bytes (growing it); 0, or -1 with
 * *status set (408: the deadline passed or the peer left). */
static int need_bytes(http_conn *c, size_t n, int64_t deadline, int *status) {
    while (c->len < n) {
        if (n + 4096 + 1 > c->cap) { /* room for what is awaited at once */
            char *g = realloc(c->buf, n + 4096 + 1);
            if (!g) return *status = 413, -1;
            c->buf = g, c->cap = n + 4096 + 1;
        }
        if (fill(c, deadline) <= 0) return *status = 408, -1;
    }
    return 0;
}

#define CHUNK_LINE_MAX 1024 /* a chunk-size line with its extensions, or a trailer line */

/* Waits for a whole line at c->buf + at and returns its length through the
 * LF (CRLF or bare LF), or -1 with *status set (400: longer than
 * CHUNK_LINE_MAX, or a NUL). */
static long chunk_line(http_conn *c, size_t at, int64_t deadline, int *status) {
    for (;;) {
        const char *nl = c->len > at ? memchr(c->buf + at, '\n', c->len - at) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + at)) + 1;
            if (n > CHUNK_LINE_MAX || memchr(c->buf + at, 0, n)) return *status = 400, -1;
            return (long)n;
        }
        if (c->len - at > CHUNK_LINE_MAX) return *status = 400, -1;
        if (need_bytes(c, c->len + 1, deadline, status)) return -1;
    }
}

/* Removes c->buf[from..to). */
static void drop(http_conn *c, size_t from, size_t to) {
    memmove(c->buf + from, c->buf + to, c->len - to);
    c->len -= to - from;
}

/* Decodes a chunked body (RFC 9112 7.1) in place at the start of c->buf:
 * the framing is removed as it is read, so c->buf[0..body) is the data so
 * far and what follows it is unparsed (the buffer never holds more than
 * the body and one read). The deadline grows with the sizes declared, as
 * a Content-Length body's. */
static int read_chunked(http_conn *c, http_req *r, size_t max_body, int64_t start, int head_ms, int *status) {
    size_t body = 0;
    for (;;) {
        const int64_t deadline = head_ms ? start + head_ms + (int64_t)body * 1000 / HTTP_BODY_RATE : -1;
        long n_line = chunk_line(c, body, deadline, status);
        if (n_line < 0) return -1;
        const char *p = c->buf + body;
        size_t size = 0, digits = 0;
        for (; digits < (size_t)n_line; digits++) {
            const char ch = p[digits];
            int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
            if (d < 0) break;
            if (size > max_body) return *status = 413, -1; /* before it can overflow */
            size = size * 16 + (size_t)d;
        }
        const char after = p[digits];
        /* at least one hex digit, then the line's end or an extension */
        if (!digits || !(after == ';' || after == '\r' || after == '\n' || after == ' ' || after == '\t'))
            return *status = 400, -1;
        if (size > max_body - body) return *status = 413, -1;
        drop(c, body, body + (size_t)n_line);
        if (!size) break;
        const int64_t until = head_ms ? start + head_ms + (int64_t)(body + size) * 1000 / HTTP_BODY_RATE : -1;
        if (need_bytes(c, body + size + 1, until, status)) return -1;
        body += size;
        /* the data ends with CRLF (or LF) */
        size_t end = c->buf[body] == '\r' ? 2 : 1;
        if (end == 2 && need_bytes(c, body + 2, until, status)) return -1;
        if (c->buf[body + end - 1] != '\n') return *status = 400, -1;
        drop(c, body, body + end);
    }
    for (size_t trailers = 0;;) { /* trailer lines, ignored, up to the empty line */
        const int64_t deadline = head_ms ? start + head_ms + (int64_t)body * 1000 / HTTP_BODY_RATE : -1;
        long n_line = chunk_line(c, body, deadline, status);
        if (n_line < 0) return -1;
        const bool empty = n_line == 1 || (n_line == 2 && c->buf[body] == '\r');
        drop(c, body, body + (size_t)n_line);
        if (empty) break;
        if ((trailers += (size_t)n_line) > HTTP_MAX_HEAD) return *status = 431, -1;
    }
    if (!body) return 1; /* only the last chunk: no body, as Content-Length: 0 */
    if (!(r->body = malloc(body + 1))) return *status = 413, -1;
    memcpy(r->body, c->buf, body);
    r->body[body] = 0;
    r->body_len = body;
    consume(c, body);
    return 1;
}

int http_read(http_conn *c, http_req *r, size_t max_body, int *status) {
    memset(r, 0, sizeof *r);
    /* a pipelined request has begun already; else the head's time starts
     * with its first byte */
    int64_t deadline = deadline_in(c->len ? c->head_ms : c->idle_ms);
    size_t head_len = 0;
    while (!(c->len && ((head_len = head_end(c->buf, c->len)) || memchr(c->buf, 0, c->len)))) {
        if (c->len > HTTP_MAX_HEAD) return *status = 431, -1;
        const bool first = c->len == 0;
        int k = fill(c, deadline);
        if (k <= 0) {
            if (c->len == 0) return 0; /* idle connection closed or timed out */
            return *status = 408, -1;
        }
        if (first) deadline = deadline_in(c->head_ms);
    }
    if (!head_len || memchr(c->buf, 0, head_len)) return *status = 400, -1; /* a NUL byte in the head */
    if (head_len > HTTP_MAX_HEAD) return *status = 431, -1;
    c->buf[head_len - 1] = 0;
    long long content_length;
    bool chunked, expect_continue = false;
    if (parse_head(c->buf, r, &content_length, &chunked, &expect_continue, status)) return -1;
    consume(c, head_len);
    bool has_body = content_length > 0 || chunked;
    if (content_length > (long long)max_body) return *status = 413, -1;
    if (!has_body) return 1;
    if (expect_continue && c->len == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (send_all(c->fd, cont, sizeof cont - 1)) return 0;
    }
    if (chunked) return read_chunked(c, r, max_body, now_ms(), c->head_ms, status);
    size_t n = (size_t)content_length;
    deadline = deadline_in(c->head_ms ? c->head_ms + (int64_t)n * 1000 / HTTP_BODY_RATE : 0);
    if (need_bytes(c, n, deadline, status)) return -1;
    if (!(r->body = malloc(n + 1))) return *status = 413, -1;
    memcpy(r->body, c->buf, n);
    r->body[n] = 0;
    r->body_len = n;
    consume(c, n);
    return 1;
}

void http_req_free(http_req *r) {
    free(r->body);
    r->body = NULL;
}

void http_conn_free(http_conn *c) {
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

static int send_head(int fd, int status, const char *content_type, bool keep_alive, const char *length_or_chunked,
                     const char *extra) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s\r\nConnection: %s\r\n%s\r\n", status,
                     http_reason(status), content_type, length_or_chunked, keep_alive ? "keep-alive" : "close",
                     extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    return send_all(fd, head, (size_t)n);
}

int http_respond(int fd, int status, const char *content_type, const char *body, size_t len, bool keep_alive,
                 const char *extra) {
    if (status == 204) { /* no body, so neither its type nor its length (RFC 9110 8.6) */
        char head[1024];
        int n = snprintf(head, sizeof head, "HTTP/1.1 204 No Content\r\nConnection: %s\r\n%s\r\n",
                         keep_alive ? "keep-alive" : "close", extra ? extra : "");
        return n < 0 || (size_t)n >= sizeof head ? -1 : send_all(fd, head, (size_t)n);
    }
    char length[48];
    snprintf(length, sizeof length, "Content-Length: %zu", len);
    if (send_head(fd, status, content_type, keep_alive, length, extra)) return -1;
    return len ? send_all(fd, body, len) : 0;
}

int http_stream_begin(int fd, int status, const char *content_type, bool keep_alive, const char *extra) {
    return send_head(fd, status, content_type, keep_alive, "Cache-Control: no-cache\r\nTransfer-Encoding: chunked",
                     extra);
}

int http_stream_chunk(int fd, const char *data, size_t len) {
    if (!len) return 0; /* an empty chunk would end the stream */
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    if (send_all(fd, size, (size_t)n) || send_all(fd, data, len)) return -1;
    return send_all(fd, "\r\n", 2);
}

int http_stream_end(int fd) { return send_all(fd, "0\r\n\r\n", 5); }

bool http_peer_gone(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
    /* readable: either a pipelined request (still there) or end of stream */
    char ch;
    ssize_t k = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
