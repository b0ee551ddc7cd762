/* sl_runtime_close called from inside callbacks: a target (loop thread), a subscriber
   (delivery thread), a job (worker thread), and a target of an SL_LOOP_HOST runtime whose
   SL_RUN_DEFAULT run is in progress. Each returns at once; the close completes on a
   sagalane thread once the callback returned, and calls every release callback there,
   once. A saga left in flight stays running in the log, for the next start to recover. */
#include "check.h"

enum { FROM_TARGET, FROM_SUBSCRIBER, FROM_JOB, FROM_HOST_TARGET };

static sl_runtime *rt;
static pthread_t main_thread;
static int closed_returned, release_count, release_on_main;

static void release(void *userdata) {
    (void)userdata;
    mon_lock();
    release_count++;
    if (pthread_equal(pthread_self(), main_thread)) release_on_main++;
    mon_unlock_signal();
}
static void close_here(void) {
    sl_runtime_close(rt);
    mon_lock();
    closed_returned++;
    mon_unlock_signal();
}
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    close_here();
    return 0;
}
static void subscriber(void *userdata, const sl_event *event) {
    (void)userdata;
    if (strcmp(event->type, "CloseNow") == 0) close_here();
}
static int closing_job(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    close_here();
    return 0;
}
static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_issue(action, "host", "{}"));
}

/* Runs one case on a runtime on `path`; returns the id of the saga it left in flight (or 0). */
static uint64_t run_case(int how, const char *path) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.durability = SL_DURABILITY_NORMAL;
    options.loop_mode = how == FROM_HOST_TARGET ? SL_LOOP_HOST : SL_LOOP_THREAD;
    rt = NULL;
    CHECK(sl_runtime_open(&options, &rt));
    check_rt = rt;
    mon_lock();
    closed_returned = 0;
    release_count = 0;
    release_on_main = 0;
    mon_unlock();

    /* One of each registration that has a release callback. */
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = how == FROM_TARGET || how == FROM_HOST_TARGET ? start : test_wait_start;
    type.on_event = test_wait_event;
    type.release = release;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_trigger_add(rt, "Never", "t", NULL, NULL, release));
    CHECK(sl_target_register(rt, "host", host_target, NULL, release));
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    CHECK(sl_lane_set_command_handler(lane, job_ok, NULL, release));
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, subscriber, NULL, &sub));
    CHECK(sl_runtime_start(rt));

    uint64_t id = 0;
    switch (how) {
    case FROM_TARGET:
        CHECK(sl_saga_start(rt, "t", NULL, &id));
        break;
    case FROM_SUBSCRIBER:
        CHECK(sl_publish(rt, "CloseNow", 0, NULL));
        break;
    case FROM_JOB: {
        sl_job job;
        sl_job_init(&job);
        job.run = closing_job;
        CHECK(sl_lane_submit(lane, &job, NULL));
        break;
    }
    case FROM_HOST_TARGET:
        CHECK(sl_saga_start(rt, "t", NULL, &id));
        /* The close makes the run return. */
        EXPECT(sl_runtime_run(rt, SL_RUN_DEFAULT) <= 0);
        break;
    }
    /* Four registrations with a release: the saga type, the trigger, the target and the
       command handler. */
    WAIT_FOR(closed_returned == 1 && release_count == 4);
    EXPECT_EQ_INT(release_on_main, 0);
    check_rt = NULL;
    return id;
}

int main(void) {
    main_thread = pthread_self();
    char path[512];
    scratch_path(path, sizeof path, "close_in_callback.db");
    uint64_t left[4];
    for (int how = FROM_TARGET; how <= FROM_HOST_TARGET; how++) left[how] = run_case(how, path);
    /* Nothing was released twice. */
    sleep_ms(50);
    EXPECT_EQ_INT(release_count, 4);

    /* The sagas the closes left in flight were recovered by the next start. */
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    CHECK(sl_runtime_start(rt));
    char *json = NULL;
    int cases[] = {FROM_TARGET, FROM_HOST_TARGET};
    for (int i = 0; i < 2; i++) {
        CHECK(sl_log_saga(rt, left[cases[i]], &json));
        EXPECT_CONTAINS(json, "\"state\":\"failed_compensation\",\"steps\"");
        sl_free(json);
    }
    sl_runtime_close(rt);
    return 0;
}
