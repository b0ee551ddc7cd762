/* SL_LOOP_HOST: the host's main thread starts the runtime and drives its loop from a poll()
 * loop on sl_runtime_backend_fd, sleeping at most sl_runtime_backend_timeout, calling
 * sl_runtime_run(SL_RUN_NOWAIT); sagas started from this and another thread complete, with
 * their callbacks on this thread; the backend timeout follows the sagas' deadlines.
 * sl_saga_cancel from the loop thread outside a run works. sl_runtime_stop, from another
 * thread and from a callback, makes an SL_RUN_DEFAULT run return; so does sl_runtime_close
 * from another thread, which then completes the close.
 */
#include "check.h"

#include <poll.h>

#define SAGAS 20

static sl_runtime *rt;
static pthread_t main_thread;
static int wrong_thread_calls;
static pthread_t stopper;
static int stopper_started;
static int held_commands; /* the loop thread's, as drive_until runs there */

static void *stop_from_thread(void *arg) {
    (void)arg;
    CHECK(sl_runtime_stop(rt));
    return NULL;
}

static pthread_t closer;
static int closer_started;
static void *close_from_thread(void *arg) {
    (void)arg;
    sl_runtime_close(rt);
    return NULL;
}

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    if (!pthread_equal(pthread_self(), main_thread)) wrong_thread_calls++;
    if (strstr(command, "\"stop\":\"thread\"")) {
        pthread_create(&stopper, NULL, stop_from_thread, NULL);
        stopper_started = 1;
    } else if (strstr(command, "\"close\":\"thread\"")) {
        pthread_create(&closer, NULL, close_from_thread, NULL);
        closer_started = 1;
        return 0;
    } else if (strstr(command, "\"stop\":\"here\"")) {
        CHECK(sl_runtime_stop(rt));
    } else if (strstr(command, "\"hold\":true")) {
        held_commands++;
        return 0;
    }
    return sl_publish(rt, "Answer", saga_id, NULL);
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    if (!pthread_equal(pthread_self(), main_thread)) wrong_thread_calls++;
    CHECK(sl_action_issue(action, "host", state));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (!pthread_equal(pthread_self(), main_thread)) wrong_thread_calls++;
    if (strcmp(event->type, "Answer") == 0) CHECK(sl_action_done(action));
}

/* sl_saga_start returns once the saga's row is durable; from a thread that does not run the
   loop, that waits for the host to run it. */
static int starter_done;
static void *start_from_thread(void *arg) {
    uint64_t *ids = arg;
    for (int i = 0; i < SAGAS / 2; i++) CHECK(sl_saga_start(rt, "t", "{}", &ids[i]));
    mon_lock();
    starter_done = 1;
    mon_unlock_signal();
    return NULL;
}
static int starter_finished(recorder *rec, uint64_t id) {
    (void)rec, (void)id;
    return starter_done;
}
static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    return sl_job_set_result(ctx, "done");
}
static int job_finished;
static void job_done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata;
    EXPECT_EQ_INT(outcome->state, SL_JOB_FINISHED);
    EXPECT_STREQ(outcome->text, "done");
    mon_lock();
    job_finished = 1;
    mon_unlock_signal();
}

/* Runs the loop the way a host's poll loop would, until `done(rec, id)`. */
static void drive_until(int (*done)(recorder *, uint64_t), recorder *rec, uint64_t id) {
    int fd = sl_runtime_backend_fd(rt);
    EXPECT(fd >= 0);
    int64_t give_up = wall_ms() + WAIT_GUARD_SECONDS * 1000;
    for (;;) {
        mon_lock();
        int finished = done(rec, id);
        mon_unlock();
        if (finished) return;
        EXPECT(wall_ms() < give_up);
        int timeout = sl_runtime_backend_timeout(rt);
        EXPECT(timeout >= -1);
        /* Capped: what ends the wait is counted on the subscriber's thread, which the loop's
           fd says nothing about. */
        if (timeout < 0 || timeout > 20) timeout = 20;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        EXPECT(poll(&pfd, 1, timeout) >= 0);
        CHECK(sl_runtime_run(rt, SL_RUN_NOWAIT));
    }
}
static int has_held(recorder *rec, uint64_t id) {
    (void)rec, (void)id;
    return held_commands > 0;
}
static int has_ended(recorder *rec, uint64_t id) { return rec_terminals_locked(rec, id) > 0; }

static size_t terminals(recorder *rec) {
    mon_lock();
    size_t n = rec_count_locked(rec, SL_EVENT_SAGA_COMPLETED, 0) + rec_count_locked(rec, SL_EVENT_SAGA_FAILED, 0);
    mon_unlock();
    return n;
}

int main(void) {
    main_thread = pthread_self();
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.loop_mode = SL_LOOP_HOST;
    CHECK(sl_runtime_open(&options, &rt));
    check_rt = rt;
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_input_state;
    type.destroy = test_free_state;
    type.start = start;
    type.on_event = on_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    int fd = sl_runtime_backend_fd(rt);
    EXPECT(fd >= 0);
    EXPECT_EQ_INT(sl_runtime_backend_timeout(rt), -1); /* no timer yet: no saga, no retry */

    uint64_t ids[SAGAS];
    pthread_t starter;
    pthread_create(&starter, NULL, start_from_thread, ids + SAGAS / 2);
    for (int i = 0; i < SAGAS / 2; i++) CHECK(sl_saga_start(rt, "t", "{}", &ids[i]));
    /* The other thread's starts need the loop: run it until they are through. */
    drive_until(starter_finished, &rec, 0);
    pthread_join(starter, NULL);

    /* The host's own poll loop. */
    int64_t give_up = wall_ms() + WAIT_GUARD_SECONDS * 1000;
    int turns = 0;
    while (terminals(&rec) < SAGAS) {
        EXPECT(wall_ms() < give_up);
        int timeout = sl_runtime_backend_timeout(rt);
        EXPECT(timeout >= -1);
        if (timeout < 0 || timeout > 50) timeout = 50; /* as in drive_until */
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        EXPECT(poll(&pfd, 1, timeout) >= 0);
        CHECK(sl_runtime_run(rt, SL_RUN_NOWAIT));
        turns++;
    }
    EXPECT(turns > 0);
    mon_lock();
    for (int i = 0; i < SAGAS; i++) {
        EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, ids[i]), 1);
        EXPECT_EQ_INT(rec_terminals_locked(&rec, ids[i]), 1);
    }
    mon_unlock();

    /* Calls that wait for the loop, made by the loop thread while nobody runs the loop. */
    uint64_t held = 0;
    CHECK(sl_saga_start(rt, "t", "{\"hold\":true}", &held));
    drive_until(has_held, &rec, held);
    /* Its deadline (the default 5000 ms), armed with its first command, is the loop's timer. */
    int timeout = sl_runtime_backend_timeout(rt);
    EXPECT(timeout >= 0 && timeout <= 5000);
    CHECK(sl_saga_cancel(rt, held, "host thread"));
    drive_until(has_ended, &rec, held);
    char *end = rec_wait_terminal(&rec, held);
    EXPECT_STREQ(end, "SagaFailed {\"name\":\"t\",\"reason\":\"cancelled: host thread\",\"state\":\"failed\"}");
    free(end);
    /* A lane job from the loop thread, with a done callback (sl_lane_submit_wait would block
       the loop thread: host_lane_wait.c). */
    sl_job job;
    sl_job_init(&job);
    job.id = "from-host";
    job.run = job_ok;
    job.done = job_done;
    CHECK(sl_lane_submit(lane, &job, NULL));
    WAIT_FOR(job_finished); /* lane jobs need no loop */

    /* SL_RUN_DEFAULT until another thread calls sl_runtime_stop (from the target, so the
       stop comes while the run is in progress). */
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "t", "{\"stop\":\"thread\"}", &id));
    CHECK(sl_runtime_run(rt, SL_RUN_DEFAULT));
    EXPECT(stopper_started);
    pthread_join(stopper, NULL);
    /* ... and until a callback on the loop thread calls it. */
    CHECK(sl_saga_start(rt, "t", "{\"stop\":\"here\"}", &id));
    CHECK(sl_runtime_run(rt, SL_RUN_DEFAULT));

    drive_until(has_ended, &rec, id);
    EXPECT_EQ_INT(wrong_thread_calls, 0);
    sl_unsubscribe(sub);

    /* Another thread closes the runtime while this one runs the loop: the run returns, and
       the closing thread finishes the close. */
    CHECK(sl_saga_start(rt, "t", "{\"close\":\"thread\"}", &id));
    int rc = sl_runtime_run(rt, SL_RUN_DEFAULT);
    EXPECT(rc == 0 || rc == SL_ECLOSED);
    EXPECT(closer_started);
    pthread_join(closer, NULL);
    rec_free(&rec);
    return 0;
}
