/* sl_saga_wait and the start options: waiting for a saga that ends later, one that already
   ended, one the log holds from an earlier runtime, an unknown id and a timeout; the ended
   callback of sl_saga_start_ex and its release; a start with a `started` callback from inside
   a target callback, on the loop thread, where sl_saga_start itself refuses to wait. */
#include "check.h"

static sl_runtime *rt;

/* Answers the first command at once; "hold" commands never. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    if (strstr(command, "\"hold\"") == NULL) CHECK(sl_publish(rt, "Done", saga_id, NULL));
    return 0;
}

static int from_target_rc = 1, loop_start_rc = 1;
static uint64_t from_target_id;

static void started_from_loop(void *userdata, int rc, uint64_t saga_id) {
    (void)userdata;
    mon_lock();
    from_target_rc = rc;
    from_target_id = saga_id;
    mon_unlock_signal();
}

/* On the loop thread: sl_saga_start cannot wait there; sl_saga_start_ex with `started` can. */
static int spawning_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step, (void)command;
    uint64_t id = 0;
    int rc = sl_saga_start(rt, "t", "{\"cmd\":\"quick\"}", &id);
    sl_saga_start_options options;
    sl_saga_start_options_init(&options);
    options.started = started_from_loop;
    int rc2 = sl_saga_start_ex(rt, "t", "{\"cmd\":\"quick\"}", &options, NULL);
    mon_lock();
    loop_start_rc = rc == SL_ESTATE && rc2 == 0 ? 0 : -1;
    mon_unlock_signal();
    return sl_publish(rt, "Done", saga_id, NULL);
}

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    const char *input = state;
    const char *target = strstr(input, "spawn") ? "spawner" : "host";
    CHECK(sl_action_issue(action, target, input));
}

static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (strcmp(event->type, "Done") == 0) CHECK(sl_action_done(action));
}

static int ended_calls, released;
static sl_saga_end last_end;
static void on_ended(void *userdata, const sl_saga_end *end) {
    mon_lock();
    EXPECT(userdata == &ended_calls);
    ended_calls++;
    last_end = *end;
    last_end.reason = NULL; /* borrowed */
    mon_unlock_signal();
}
static void on_release(void *userdata) {
    mon_lock();
    EXPECT(userdata == &ended_calls);
    released++;
    mon_unlock_signal();
}

static void open_and_start(const char *path) {
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
    CHECK(sl_target_register(rt, "spawner", spawning_target, NULL, NULL));
    /* Nothing to wait with before the start. */
    EXPECT_RC(sl_saga_wait(rt, 1, 0, NULL, NULL), SL_ESTATE);
    CHECK(sl_runtime_start(rt));
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "saga_wait.db");
    open_and_start(path);

    /* One that ends later, one that already ended: both read completed. */
    uint64_t quick = 0, held = 0;
    CHECK(sl_saga_start(rt, "t", "{\"cmd\":\"quick\"}", &quick));
    int state = -1;
    char *reason = (char *)1;
    CHECK(sl_saga_wait(rt, quick, 20000, &state, &reason));
    EXPECT_EQ_INT(state, SL_SAGA_COMPLETED);
    EXPECT(reason == NULL);
    CHECK(sl_saga_wait(rt, quick, 0, &state, NULL));
    EXPECT_EQ_INT(state, SL_SAGA_COMPLETED);

    /* A saga that waits forever times out; cancelled, it reads failed with the reason. */
    CHECK(sl_saga_start(rt, "t", "{\"cmd\":\"hold\"}", &held));
    EXPECT_RC(sl_saga_wait(rt, held, 50, &state, &reason), SL_ETIMEDOUT);
    CHECK(sl_saga_cancel(rt, held, "by the test"));
    CHECK(sl_saga_wait(rt, held, 20000, &state, &reason));
    EXPECT_EQ_INT(state, SL_SAGA_FAILED);
    EXPECT_STREQ(reason, "cancelled: by the test");
    sl_free(reason);

    /* Unknown ids. */
    EXPECT_RC(sl_saga_wait(rt, 999999, 0, &state, NULL), SL_ENOTFOUND);

    /* The ended callback, then release, once each. */
    sl_saga_start_options options;
    sl_saga_start_options_init(&options);
    options.ended = on_ended;
    options.release = on_release;
    options.userdata = &ended_calls;
    uint64_t watched = 0;
    CHECK(sl_saga_start_ex(rt, "t", "{\"cmd\":\"quick\"}", &options, &watched));
    EXPECT(watched != 0);
    mon_lock();
    WAIT_FOR_LOCKED(released == 1);
    EXPECT_EQ_INT(ended_calls, 1);
    EXPECT(last_end.saga_id == watched && last_end.state == SL_SAGA_COMPLETED && last_end.durable == 1);
    mon_unlock();

    /* From a target callback on the loop thread. */
    uint64_t spawner = 0;
    CHECK(sl_saga_start(rt, "t", "{\"cmd\":\"spawn\"}", &spawner));
    mon_lock();
    WAIT_FOR_LOCKED(from_target_rc != 1 && loop_start_rc != 1);
    EXPECT_EQ_INT(loop_start_rc, 0);
    EXPECT_EQ_INT(from_target_rc, 0);
    uint64_t spawned = from_target_id;
    mon_unlock();
    CHECK(sl_saga_wait(rt, spawned, 20000, &state, NULL));
    EXPECT_EQ_INT(state, SL_SAGA_COMPLETED);
    CHECK(sl_saga_wait(rt, spawner, 20000, &state, NULL));

    /* A saga still in flight at close: its ended never comes, its release does, once. */
    uint64_t in_flight = 0;
    CHECK(sl_saga_start_ex(rt, "t", "{\"cmd\":\"hold\"}", &options, &in_flight));
    /* A timed-out wait leaves nothing behind. */
    EXPECT_RC(sl_saga_wait(rt, in_flight, 10, &state, NULL), SL_ETIMEDOUT);
    sl_runtime_close(rt);
    mon_lock();
    EXPECT_EQ_INT(released, 2);
    EXPECT_EQ_INT(ended_calls, 1);
    mon_unlock();

    /* A new runtime on the same log answers for sagas an earlier one ran. */
    open_and_start(path);
    CHECK(sl_saga_wait(rt, quick, 0, &state, NULL));
    EXPECT_EQ_INT(state, SL_SAGA_COMPLETED);
    CHECK(sl_saga_wait(rt, held, 0, &state, &reason));
    EXPECT_EQ_INT(state, SL_SAGA_FAILED);
    sl_free(reason);
    sl_runtime_close(rt);
    return 0;
}
