/* A host's side of a pipe target, for tests that play the host a runtime dials: a Unix
   socket listener and frames over a blocking socket, as a C host would write them. */
#ifndef SAGALANE_TEST_HOST_H
#define SAGALANE_TEST_HOST_H

#include "check.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef struct host {
    const char *path;
    int listen_fd;
    int fd;
    char buffer[65536];
    size_t used;
} host;

/* Listens on `path` (removed first). */
static inline void host_listen(host *h, const char *path) {
    h->path = path;
    h->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    EXPECT(h->listen_fd >= 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, path);
    unlink(path);
    EXPECT(bind(h->listen_fd, (struct sockaddr *)&address, sizeof address) == 0);
    EXPECT(listen(h->listen_fd, 4) == 0);
    h->fd = -1;
    h->used = 0;
}

/* Drops the runtime's connection (the listener stays). */
static inline void host_drop(host *h) {
    if (h->fd >= 0) close(h->fd);
    h->fd = -1;
    h->used = 0;
}

static inline void host_close(host *h) {
    if (h->fd >= 0) close(h->fd);
    close(h->listen_fd);
    unlink(h->path);
    h->fd = h->listen_fd = -1;
}

/* The next line from the runtime (NUL-terminated in place), or NULL after `timeout_ms`. */
static inline char *host_read_line(host *h, int timeout_ms) {
    static char line[65536];
    for (;;) {
        char *newline = memchr(h->buffer, '\n', h->used);
        if (newline) {
            size_t length = (size_t)(newline - h->buffer);
            memcpy(line, h->buffer, length);
            line[length] = '\0';
            memmove(h->buffer, newline + 1, h->used - length - 1);
            h->used -= length + 1;
            return line;
        }
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0) return NULL;
        ssize_t n = read(h->fd, h->buffer + h->used, sizeof h->buffer - h->used);
        if (n <= 0) return NULL;
        h->used += (size_t)n;
    }
}

static inline void host_send(host *h, const char *text) {
    size_t length = strlen(text);
    EXPECT(write(h->fd, text, length) == (ssize_t)length);
    EXPECT(write(h->fd, "\n", 1) == 1);
}

/* Accepts the runtime's connection and answers its hello naming target "host". */
static inline void host_accept(host *h) {
    struct pollfd p = {.fd = h->listen_fd, .events = POLLIN};
    EXPECT(poll(&p, 1, WAIT_GUARD_SECONDS * 1000) == 1);
    h->fd = accept(h->listen_fd, NULL, NULL);
    EXPECT(h->fd >= 0);
    char *hello = host_read_line(h, WAIT_GUARD_SECONDS * 1000);
    EXPECT(hello != NULL);
    EXPECT_CONTAINS(hello, "\"type\":\"hello\"");
    EXPECT_CONTAINS(hello, "\"targets\":[\"host\"]");
    EXPECT_CONTAINS(hello, "\"version\":1");
    host_send(h, "{\"type\":\"welcome\",\"version\":1,\"server\":\"c host\",\"max_frame\":1048576}");
}

/* The integer after the last `"key":` in `line` (the top-level one: keys are sorted, and the
   command object, which repeats saga_id and step, comes first). */
static inline long long last_int(const char *line, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *found = NULL;
    for (const char *at = strstr(line, pattern); at; at = strstr(at + 1, pattern)) found = at;
    EXPECT(found != NULL);
    return strtoll(found + strlen(pattern), NULL, 10);
}

#endif
