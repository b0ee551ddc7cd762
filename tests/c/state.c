/* Calls made in the wrong state, SL_ESTATE: sagas before the start, a second start, host-mode
   calls on a thread-mode runtime, moving the system clock, sl_lane_submit_wait on the loop
   thread, a second action in one callback, sl_runtime_run before the start or with a bad mode. */
#include "check.h"

static sl_runtime *rt;
static sl_lane *lane;

/* sl_lane_submit_wait from the loop thread (a target). */
static int loop_rc = 1, target_calls;

static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}
static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step, (void)command;
    sl_job job;
    sl_job_init(&job);
    job.run = job_ok;
    int rc = sl_lane_submit_wait(lane, &job, NULL);
    mon_lock();
    loop_rc = rc;
    target_calls++;
    mon_unlock_signal();
    return sl_publish(rt, "Answered", saga_id, NULL);
}
static void on_answer(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx, (void)event;
    sl_action_done(action);
}
static void issue(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    sl_action_issue(action, "host", "{}");
}
static void twice(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    int first = sl_action_done(action);
    int second = sl_action_fail(action, "second");
    int third = sl_action_issue(action, "host", "{}");
    mon_lock();
    loop_rc = first == 0 && second == SL_ESTATE && third == SL_ESTATE ? 0 : -100;
    mon_unlock_signal();
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = issue;
    type.on_event = on_answer;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    type.name = "twice";
    type.start = twice;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", target, NULL, NULL));
    CHECK(sl_lane_create(rt, "work", NULL, &lane));

    /* Before the start. */
    EXPECT_RC(sl_saga_start(rt, "t", NULL, NULL), SL_ESTATE);
    EXPECT_ERRMSG(rt);
    EXPECT_RC(sl_saga_cancel(rt, 1, "r"), SL_ESTATE);
    /* A thread-mode runtime has no loop for the host to run or poll. */
    EXPECT_RC(sl_runtime_run(rt, SL_RUN_NOWAIT), SL_ESTATE);
    EXPECT(sl_runtime_backend_fd(rt) < 0);
    EXPECT(sl_runtime_backend_timeout(rt) < -1);
    /* The system clock cannot be moved. */
    EXPECT_RC(sl_runtime_advance_time(rt, 10), SL_ESTATE);

    CHECK(sl_runtime_start(rt));
    EXPECT_RC(sl_runtime_start(rt), SL_ESTATE);
    EXPECT_RC(sl_runtime_run(rt, SL_RUN_DEFAULT), SL_ESTATE);
    EXPECT_RC(sl_runtime_health(rt), 0);

    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "t", NULL, &id));
    char *end = rec_wait_terminal(&rec, id);
    EXPECT_CONTAINS(end, SL_EVENT_SAGA_COMPLETED);
    free(end);
    WAIT_FOR(target_calls == 1);
    EXPECT_RC(loop_rc, SL_ESTATE); /* sl_lane_submit_wait on the loop thread */

    /* A second action in one callback: SL_ESTATE, and the action becomes a failure. */
    CHECK(sl_saga_start(rt, "twice", NULL, &id));
    end = rec_wait_terminal(&rec, id);
    EXPECT_CONTAINS(end, SL_EVENT_SAGA_FAILED);
    free(end);
    EXPECT_RC(loop_rc, 0);

    /* Host mode: sl_runtime_run before the start, and with a bad mode. */
    sl_runtime_options host_options;
    sl_runtime_options_init(&host_options);
    host_options.loop_mode = SL_LOOP_HOST;
    sl_runtime *host = NULL;
    CHECK(sl_runtime_open(&host_options, &host));
    check_rt = host;
    EXPECT_RC(sl_runtime_run(host, SL_RUN_NOWAIT), SL_ESTATE);
    EXPECT(sl_runtime_backend_fd(host) >= 0);
    CHECK(sl_runtime_start(host));
    EXPECT_RC(sl_runtime_run(host, 42), SL_EINVAL);
    EXPECT_RC(sl_runtime_run(host, -1), SL_EINVAL);
    CHECK(sl_runtime_run(host, SL_RUN_NOWAIT));
    sl_runtime_close(host);

    check_rt = rt;
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
