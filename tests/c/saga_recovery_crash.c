/* Sagas left running by a process killed with SIGKILL: the log keeps them running until the
   next sl_runtime_start, whose recovery marks them failed_compensation with the reason, while
   sagas that had ended stay as they were; new saga ids continue after the old ones. */
#include "check.h"


static sl_runtime *rt;
static int held;

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    if (strstr(command, "\"answer\":true")) return sl_publish(rt, "Answer", saga_id, NULL);
    mon_lock();
    held++;
    mon_unlock_signal();
    return 0;
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    CHECK(sl_action_issue(action, "host", state));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (strcmp(event->type, "Answer") == 0) CHECK(sl_action_done(action));
}

static void open_and_register(const char *path) {
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_input_state;
    type.destroy = test_free_state;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 600000;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
}

static void child(const char *path, int ready_fd) {
    open_and_register(path);
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    uint64_t ids[3];
    CHECK(sl_saga_start(rt, "t", "{\"answer\":true}", &ids[0]));
    CHECK(sl_saga_start(rt, "t", "{\"answer\":false}", &ids[1]));
    CHECK(sl_saga_start(rt, "t", "{\"answer\":false}", &ids[2]));
    char *end = rec_wait_terminal(&rec, ids[0]);
    free(end);
    WAIT_FOR(held == 2); /* their step rows are durable before the commands go out */
    if (write(ready_fd, ids, sizeof ids) != (ssize_t)sizeof ids) _exit(2);
    for (;;) pause();
}

static void expect_saga(uint64_t id, const char *part) {
    char *json = NULL;
    CHECK(sl_log_saga(rt, id, &json));
    EXPECT_CONTAINS(json, part);
    sl_free(json);
}

int main(int argc, char **argv) {
    RUN_READY_CHILD(argc, argv, child);
    char path[512];
    scratch_path(path, sizeof path, "saga_recovery_crash.db");
    uint64_t ids[3];
    kill9(spawn_ready_child(path, ids, sizeof ids));

    open_and_register(path);
    /* Before the start, the log still says what the dead process left. */
    expect_saga(ids[0], "\"state\":\"completed\"");
    expect_saga(ids[1], "\"state\":\"running\",\"steps\"");
    char *json = NULL;
    CHECK(sl_log_unresolved(rt, &json));
    char part[32];
    snprintf(part, sizeof part, "\"id\":%llu,", (unsigned long long)ids[1]);
    EXPECT_CONTAINS(json, part);
    snprintf(part, sizeof part, "\"id\":%llu,", (unsigned long long)ids[0]);
    EXPECT_NOT_CONTAINS(json, part);
    sl_free(json);

    CHECK(sl_runtime_start(rt));
    for (int i = 1; i <= 2; i++) {
        expect_saga(ids[i], "\"state\":\"failed_compensation\",\"steps\"");
        expect_saga(ids[i], "\"failure_reason\":\"interrupted");
        expect_saga(ids[i], "pending step 0");
        expect_saga(ids[i], "\"ended_at\":\"");
    }
    expect_saga(ids[0], "\"state\":\"completed\"");

    uint64_t next = 0;
    CHECK(sl_saga_start(rt, "t", "{\"answer\":true}", &next));
    EXPECT(next > ids[2]);
    sl_runtime_close(rt);

    /* A second start has nothing left to recover. */
    open_and_register(path);
    CHECK(sl_runtime_start(rt));
    expect_saga(ids[1], "\"state\":\"failed_compensation\",\"steps\"");
    sl_runtime_close(rt);
    return 0;
}
