/* A runtime that dials its host (sl_target_connect), killed with SIGKILL while the host holds
   the second step's command unanswered. The next start, under SL_RECOVERY_RESUME, replays the
   first step's result from the log and sends the second step's command again, the same text
   under the same saga id and step, to the host it dials again; the host's answer completes
   the saga; the first step is never sent twice, and the log shows the second one sent twice. */
#include "host.h"

static sl_runtime *rt;

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_issue(action, "host", "{\"op\":\"reserve\"}"));
}

static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state;
    if (strcmp(event->type, "Done") != 0) return;
    if (ctx->next_step == 1) {
        CHECK(sl_action_issue(action, "host", "{\"op\":\"charge\",\"cents\":1250}"));
    } else {
        CHECK(sl_action_done(action));
    }
}

/* A runtime on the log at `path` whose target "host" dials the socket the test names. */
static void open_and_connect(const char *path) {
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "checkout";
    type.create = test_no_state;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 600000;
    type.recovery = SL_RECOVERY_RESUME;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    sl_target_connect_options options;
    sl_target_connect_options_init(&options);
    options.reconnect_min_ms = 10;
    options.reconnect_max_ms = 50;
    CHECK(sl_target_connect(rt, "host", getenv("SL_TEST_HOST_SOCKET"), &options));
}

static void child(const char *path, int ready_fd) {
    open_and_connect(path);
    CHECK(sl_runtime_start(rt));
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "checkout", "{}", &id));
    if (write(ready_fd, &id, sizeof id) != (ssize_t)sizeof id) _exit(2);
    for (;;) pause();
}

/* The next command from the runtime: checked to be for `saga_id` and `step`, copied out. */
static char *expect_command(host *h, uint64_t saga_id, long long step) {
    char *line = host_read_line(h, WAIT_GUARD_SECONDS * 1000);
    EXPECT(line != NULL);
    EXPECT_CONTAINS(line, "\"type\":\"command\"");
    EXPECT(last_int(line, "saga_id") == (long long)saga_id);
    EXPECT(last_int(line, "step") == step);
    return check_strdup(line);
}

static void answer(host *h, uint64_t saga_id, long long step) {
    char reply[256];
    snprintf(reply, sizeof reply, "{\"type\":\"step.done\",\"saga_id\":%llu,\"step\":%lld,\"event\":\"Done\",\"payload\":null}",
             (unsigned long long)saga_id, step);
    host_send(h, reply);
}

int main(int argc, char **argv) {
    RUN_READY_CHILD(argc, argv, child);
    watchdog(60, "target_connect_crash");
    char sock_dir[64] = "/tmp/sl-target-crash-XXXXXX";
    EXPECT(mkdtemp(sock_dir) != NULL);
    char sock_path[128];
    snprintf(sock_path, sizeof sock_path, "%s/host.sock", sock_dir);
    EXPECT(setenv("SL_TEST_HOST_SOCKET", sock_path, 1) == 0);
    host h;
    host_listen(&h, sock_path);

    char path[512];
    scratch_path(path, sizeof path, "target_connect_crash.db");
    uint64_t id = 0;
    pid_t pid = spawn_ready_child(path, &id, sizeof id);
    watchdog(60, "target_connect_crash");
    host_accept(&h);
    free(expect_command(&h, id, 0));
    answer(&h, id, 0);
    /* The second step's row was durable before its command was written: kill the process
       with the command unanswered. */
    char *before = expect_command(&h, id, 1);
    EXPECT_CONTAINS(before, "\"op\":\"charge\"");
    kill9(pid);
    host_drop(&h);

    open_and_connect(path);
    char *json = NULL;
    CHECK(sl_log_saga(rt, id, &json));
    EXPECT_CONTAINS(json, "\"state\":\"running\"");
    sl_free(json);
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    host_accept(&h);
    /* The first command to arrive is the second step's again, byte for byte. */
    char *again = expect_command(&h, id, 1);
    EXPECT_STREQ(again, before);
    answer(&h, id, 1);
    char *end = rec_wait_terminal(&rec, id);
    EXPECT_CONTAINS(end, "SagaCompleted");
    free(end);
    /* Nothing else is sent. */
    EXPECT(host_read_line(&h, 300) == NULL);

    CHECK(sl_log_saga(rt, id, &json));
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    EXPECT_CONTAINS(json, "\"attempts\":2,");
    EXPECT_NOT_CONTAINS(json, "\"attempts\":3,");
    sl_free(json);
    sl_target_status status;
    memset(&status, 0, sizeof status);
    status.size = sizeof status;
    CHECK(sl_target_get_status(rt, "host", &status));
    EXPECT_EQ_INT(status.sent, 1);

    free(before);
    free(again);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    host_close(&h);
    rmdir(sock_dir);
    return 0;
}
