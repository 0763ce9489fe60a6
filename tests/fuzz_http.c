/* libFuzzer target for the HTTP request reader: the input is what a client
 * sends on one connection (then it closes its end). Every request read must
 * be well formed as http.h promises, every refusal must carry one of the
 * statuses it lists, and the reader must end: the first byte picks the
 * body cap, the rest is the byte stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/serve/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > 65536) return 0; /* the whole stream fits the socket buffer at once */
    const size_t max_body = (size_t)data[0] * 64;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) __builtin_trap();
    const int buf = 1 << 18;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (write(sv[0], data + 1, size - 1) != (ssize_t)(size - 1)) __builtin_trap();
    shutdown(sv[0], SHUT_WR);
    /* deadlines far beyond the run: the bytes are all there, but the
     * reader takes its poll path as the server does */
    http_conn c = {.fd = sv[1], .idle_ms = 60000, .head_ms = 60000};
    size_t requests = 0;
    for (;;) {
        http_req r;
        int status = 0;
        const int rc = http_read(&c, &r, max_body, &status);
        if (rc == 1) {
            requests++;
            if (!memchr(r.method, 0, sizeof r.method) || !memchr(r.path, 0, sizeof r.path) ||
                !memchr(r.auth, 0, sizeof r.auth) || !memchr(r.api_key, 0, sizeof r.api_key) ||
                !memchr(r.origin, 0, sizeof r.origin) || strpbrk(r.path, "?#") || !*r.method)
                __builtin_trap();
            if (r.body_len > max_body || (r.body_len == 0) != (r.body == NULL) || (r.body && r.body[r.body_len]))
                __builtin_trap();
            http_req_free(&r);
            continue;
        }
        http_req_free(&r);
        if (rc == 0 ? status != 0 : rc != -1 || !strcmp(http_reason(status), "Unknown") || status < 400)
            __builtin_trap();
        break;
    }
    /* each request takes at least its request line and an empty line */
    if (requests > size / 4) __builtin_trap();
    http_conn_free(&c);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
