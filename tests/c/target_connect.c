/* sl_target_connect: a host process's Unix socket as a saga target. This test plays the host
   itself over plain POSIX sockets, as a C host would: it answers the runtime's hello, reads
   command frames and answers them with step.done. Then the host goes away and comes back:
   the commands issued meanwhile reach it in order. A target whose host never comes fails its
   saga once, "host unreachable", after buffer_expiry_ms. And the options are checked. */
#include "check.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

static sl_runtime *rt;
static char sock_dir[64];
static char sock_path[128];

/* ---- The host's side: frames over a blocking socket --------------------------------------- */

typedef struct host {
    int listen_fd;
    int fd;
    char buffer[65536];
    size_t used;
} host;

static void host_listen(host *h) {
    h->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    EXPECT(h->listen_fd >= 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, sock_path);
    unlink(sock_path);
    EXPECT(bind(h->listen_fd, (struct sockaddr *)&address, sizeof address) == 0);
    EXPECT(listen(h->listen_fd, 4) == 0);
    h->fd = -1;
    h->used = 0;
}

static void host_close(host *h) {
    if (h->fd >= 0) close(h->fd);
    close(h->listen_fd);
    unlink(sock_path);
    h->fd = h->listen_fd = -1;
}

/* The next line from the runtime (NUL-terminated in place), or NULL after `timeout_ms`. */
static char *host_read_line(host *h, int timeout_ms) {
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

static void host_send(host *h, const char *text) {
    size_t length = strlen(text);
    EXPECT(write(h->fd, text, length) == (ssize_t)length);
    EXPECT(write(h->fd, "\n", 1) == 1);
}

/* Accepts the runtime's connection and answers its hello naming target "host". */
static void host_accept(host *h) {
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
static long long last_int(const char *line, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *found = NULL;
    for (const char *at = strstr(line, pattern); at; at = strstr(at + 1, pattern)) found = at;
    EXPECT(found != NULL);
    return strtoll(found + strlen(pattern), NULL, 10);
}

/* Reads one command and answers it with step.done "Done"; returns its "n". */
static long long host_answer(host *h) {
    char *command = host_read_line(h, WAIT_GUARD_SECONDS * 1000);
    EXPECT(command != NULL);
    EXPECT_CONTAINS(command, "\"type\":\"command\"");
    EXPECT_CONTAINS(command, "\"target\":\"host\"");
    long long n = strstr(command, "\"n\":") ? last_int(command, "n") : -1;
    long long saga = last_int(command, "saga_id"), step = last_int(command, "step");
    char reply[256];
    snprintf(reply, sizeof reply, "{\"type\":\"step.done\",\"saga_id\":%lld,\"step\":%lld,\"event\":\"Done\",\"payload\":null}",
             saga, step);
    host_send(h, reply);
    return n;
}

/* ---- The saga: one command to its input's target, done on "Done" --------------------------- */

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    const char *input = state;
    CHECK(sl_action_issue(action, strstr(input, "nobody") ? "nobody" : "host", input));
}

static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (strcmp(event->type, "Done") == 0) CHECK(sl_action_done(action));
}

static int connected(const char *name) {
    sl_target_status status;
    memset(&status, 0, sizeof status);
    status.size = sizeof status;
    CHECK(sl_target_get_status(rt, name, &status));
    return status.connected;
}

static uint64_t buffered(const char *name) {
    sl_target_status status;
    memset(&status, 0, sizeof status);
    status.size = sizeof status;
    CHECK(sl_target_get_status(rt, name, &status));
    return status.buffered;
}

int main(void) {
    watchdog(60, "target_connect");
    strcpy(sock_dir, "/tmp/sl-target-XXXXXX");
    EXPECT(mkdtemp(sock_dir) != NULL);
    snprintf(sock_path, sizeof sock_path, "%s/host.sock", sock_dir);

    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "one";
    type.create = test_input_state;
    type.destroy = test_free_state;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 60000;
    CHECK(sl_saga_type_register(rt, &type, NULL));

    /* Options are checked before anything is registered. */
    sl_target_connect_options options;
    sl_target_connect_options_init(&options);
    EXPECT_EQ_INT(options.size, sizeof options);
    options.max_frame = 10;
    EXPECT_RC(sl_target_connect(rt, "host", sock_path, &options), SL_EINVAL);
    sl_target_connect_options_init(&options);
    options.reconnect_min_ms = 500;
    options.reconnect_max_ms = 100;
    EXPECT_RC(sl_target_connect(rt, "host", sock_path, &options), SL_EINVAL);
    char long_path[300];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    EXPECT_RC(sl_target_connect(rt, "host", long_path, NULL), SL_EINVAL);
    EXPECT_RC(sl_target_connect(rt, "a:b", sock_path, NULL), SL_EINVAL);
    EXPECT_RC(sl_target_connect(rt, NULL, sock_path, NULL), SL_EINVAL);

    host h;
    host_listen(&h);
    sl_target_connect_options_init(&options);
    options.reconnect_min_ms = 10;
    options.reconnect_max_ms = 50;
    CHECK(sl_target_connect(rt, "host", sock_path, &options));
    EXPECT_RC(sl_target_connect(rt, "host", sock_path, &options), SL_EEXIST);
    sl_target_connect_options_init(&options);
    options.buffer_expiry_ms = 200;
    options.reconnect_min_ms = 10;
    options.reconnect_max_ms = 50;
    char nowhere[160];
    snprintf(nowhere, sizeof nowhere, "%s/nobody.sock", sock_dir);
    CHECK(sl_target_connect(rt, "nobody", nowhere, &options));
    sl_target_status status;
    memset(&status, 0, sizeof status);
    status.size = sizeof status;
    EXPECT_RC(sl_target_get_status(rt, "nonesuch", &status), SL_ENOTFOUND);

    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    /* The host answers: the saga completes. */
    host_accept(&h);
    POLL_UNTIL(connected("host"));
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "one", "{\"n\":0}", &id));
    EXPECT_EQ_INT(host_answer(&h), 0);
    char *end = rec_wait_terminal(&rec, id);
    EXPECT_STREQ(end, "SagaCompleted {\"name\":\"one\",\"state\":\"completed\"}");
    free(end);

    /* The host goes away; three sagas' commands wait for it and reach it in order. */
    host_close(&h);
    POLL_UNTIL(!connected("host"));
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        char input[32];
        snprintf(input, sizeof input, "{\"n\":%d}", i + 1);
        CHECK(sl_saga_start(rt, "one", input, &ids[i]));
    }
    POLL_UNTIL(buffered("host") == 3);
    host_listen(&h);
    host_accept(&h);
    for (int i = 0; i < 3; i++) EXPECT_EQ_INT(host_answer(&h), i + 1);
    for (int i = 0; i < 3; i++) {
        end = rec_wait_terminal(&rec, ids[i]);
        EXPECT_CONTAINS(end, "SagaCompleted");
        free(end);
    }
    memset(&status, 0, sizeof status);
    status.size = sizeof status;
    CHECK(sl_target_get_status(rt, "host", &status));
    EXPECT_EQ_INT(status.sent, 4);
    EXPECT_EQ_INT(status.connections, 2);
    EXPECT_EQ_INT(status.buffered, 0);

    /* Nobody ever listens for "nobody": its saga fails once, host unreachable. */
    CHECK(sl_saga_start(rt, "one", "{\"to\":\"nobody\"}", &id));
    end = rec_wait_terminal(&rec, id);
    EXPECT_CONTAINS(end, "SagaFailed");
    EXPECT_CONTAINS(end, "host unreachable");
    free(end);
    sleep_ms(300);
    mon_lock();
    EXPECT_EQ_INT(rec_terminals_locked(&rec, id), 1);
    mon_unlock();
    memset(&status, 0, sizeof status);
    status.size = sizeof status;
    CHECK(sl_target_get_status(rt, "nobody", &status));
    EXPECT_EQ_INT(status.expired, 1);
    EXPECT_EQ_INT(status.connected, 0);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    host_close(&h);
    rmdir(sock_dir);
    return 0;
}
