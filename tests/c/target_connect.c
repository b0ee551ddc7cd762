/* sl_target_connect: a host process's Unix socket as a saga target. This test plays the host
   itself over plain POSIX sockets, as a C host would: it answers the runtime's hello, reads
   command frames and answers them with step.done. Then the host goes away and comes back:
   the commands issued meanwhile reach it in order. A target whose host never comes fails its
   saga once, "host unreachable", after buffer_expiry_ms. And the options are checked. */
#include "host.h"

static sl_runtime *rt;
static char sock_dir[64];
static char sock_path[128];

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
    host_listen(&h, sock_path);
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
    host_listen(&h, sock_path);
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
