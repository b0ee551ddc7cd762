/* After sl_runtime_close, the old runtime and lane pointers answer SL_ECLOSED from every
   function instead of crashing (sagalane keeps a registry of live handles), and
   sl_runtime_errmsg says why. Closing twice is harmless. */
#include "check.h"

static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    return 0;
}
static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}
static int releases;
static void counted_release(void *userdata) {
    (void)userdata;
    mon_lock();
    releases++;
    mon_unlock_signal();
}

#define EXPECT_CLOSED(call)                                                                         \
    do {                                                                                           \
        EXPECT_RC(call, SL_ECLOSED);                                                               \
        EXPECT_ERRMSG(check_rt);                                                                   \
    } while (0)

/* Every runtime and lane function on closed handles. */
static void expect_all_closed(sl_runtime *rt, sl_lane *lane) {
    check_rt = rt;
    EXPECT_CLOSED(sl_runtime_start(rt));
    EXPECT_CLOSED(sl_runtime_run(rt, SL_RUN_NOWAIT));
    EXPECT_CLOSED(sl_runtime_stop(rt));
    EXPECT_CLOSED(sl_runtime_backend_fd(rt));
    EXPECT_CLOSED(sl_runtime_backend_timeout(rt));
    EXPECT_CLOSED(sl_runtime_advance_time(rt, 5));
    EXPECT_CLOSED(sl_runtime_health(rt));
    EXPECT_CLOSED(sl_publish(rt, "E", 0, "{}"));
    sl_subscription *sub = NULL;
    EXPECT_CLOSED(sl_subscribe(rt, 0, rec_on_event, NULL, &sub));
    EXPECT(sub == NULL);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "late";
    type.create = test_no_state;
    type.start = test_wait_start;
    type.on_event = test_wait_event;
    type.release = counted_release;
    EXPECT_CLOSED(sl_saga_type_register(rt, &type, NULL));
    EXPECT_CLOSED(sl_trigger_add(rt, "E", "t", NULL, NULL, counted_release));
    EXPECT_CLOSED(sl_target_register(rt, "late", target, NULL, counted_release));
    EXPECT_CLOSED(sl_saga_start(rt, "t", NULL, NULL));
    EXPECT_CLOSED(sl_saga_cancel(rt, 1, "r"));
    EXPECT_CLOSED(sl_step_fail(rt, 1, 0, "r"));
    sl_lane *out = NULL;
    EXPECT_CLOSED(sl_lane_create(rt, "late", NULL, &out));
    EXPECT_CLOSED(sl_lane_find(rt, "work", &out));
    EXPECT(out == NULL);
    char *json = NULL;
    EXPECT_CLOSED(sl_log_recent(rt, 5, &json));
    EXPECT_CLOSED(sl_log_unresolved(rt, &json));
    EXPECT_CLOSED(sl_log_saga(rt, 1, &json));
    EXPECT(json == NULL);
    uint64_t deleted = 77;
    EXPECT_CLOSED(sl_log_vacuum(rt, 0, &deleted));
    EXPECT_EQ_INT(deleted, 77);

    if (lane) {
        sl_job job;
        sl_job_init(&job);
        job.run = job_ok;
        sl_lane_stats stats = {.size = sizeof stats};
        char *text = NULL;
        EXPECT_CLOSED(sl_lane_submit(lane, &job, NULL));
        EXPECT_CLOSED(sl_lane_submit_wait(lane, &job, &text));
        EXPECT(text == NULL);
        EXPECT_CLOSED(sl_lane_cancel(lane, "j"));
        EXPECT_CLOSED(sl_lane_set_max_concurrent(lane, 3));
        EXPECT_CLOSED(sl_lane_get_stats(lane, &stats));
        EXPECT_CLOSED(sl_lane_set_command_handler(lane, job_ok, NULL, counted_release));
    }

    /* The old pointer's message is a static text saying the runtime is closed; with NULL,
       the calling thread's last failure on a closed handle. */
    EXPECT(sl_runtime_errmsg(rt) != NULL && sl_runtime_errmsg(rt)[0] != '\0');
    EXPECT(sl_runtime_errmsg(NULL) != NULL && sl_runtime_errmsg(NULL)[0] != '\0');
    sl_runtime_close(rt); /* a second close does nothing */
}

int main(void) {
    /* A started runtime with a bit of everything. */
    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = test_wait_start;
    type.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", target, NULL, counted_release));
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "t", NULL, &id)); /* left in flight */
    WAIT_FOR(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, id) == 1);
    sl_runtime_close(rt); /* also ends the subscription */
    EXPECT_EQ_INT(releases, 1);
    expect_all_closed(rt, lane);
    rec_free(&rec);

    /* A runtime closed before it was started. */
    sl_runtime *unstarted = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_lane *lane2 = NULL;
    CHECK(sl_lane_create(unstarted, "work", NULL, &lane2));
    sl_runtime_close(unstarted);
    expect_all_closed(unstarted, lane2);

    /* The registrations tried on closed runtimes were never kept, so never released. */
    EXPECT_EQ_INT(releases, 1);
    return 0;
}
