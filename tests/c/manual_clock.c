/* SL_CLOCK_MANUAL: saga deadlines and retry back-offs move only with
   sl_runtime_advance_time. A saga with timeout_ms=1000 is still running after 999 ms and
   fails with "saga timeout" once time passes 1000; timeout_ms=0 means 5000; a saga that
   completes in time never times out. A retried job's next attempt waits for the clock. */
#include "check.h"

static sl_runtime *rt;
static recorder rec;
static int commands;

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    mon_lock();
    commands++;
    mon_unlock_signal();
    if (strstr(command, "\"answer\":true")) return sl_publish(rt, "Answer", saga_id, NULL);
    return 0;
}
static int create(void *userdata, const char *input, void **state) {
    (void)userdata;
    *state = (void *)(intptr_t)(strstr(input, "\"answer\":true") != NULL);
    return 0;
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    CHECK(sl_action_issue(action, "host", state ? "{\"answer\":true}" : "{\"answer\":false}"));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (strcmp(event->type, "Answer") == 0) CHECK(sl_action_done(action));
}

/* Starts a saga of `type` and waits until its command is out (its deadline is then armed:
   it is set in the same loop turn, right after the start's action). */
static uint64_t start_saga(const char *type, const char *input) {
    mon_lock();
    int before = commands;
    mon_unlock();
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, type, input, &id));
    WAIT_FOR(commands == before + 1);
    return id;
}

static void expect_state(uint64_t id, const char *state) {
    char *json = NULL;
    CHECK(sl_log_saga(rt, id, &json));
    char expected[64];
    snprintf(expected, sizeof expected, "\"state\":\"%s\",\"steps\"", state);
    EXPECT_CONTAINS(json, expected);
    sl_free(json);
}

/* A job that fails its first attempt. */
static int attempts_seen;
static int flaky(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    int attempt = sl_job_attempt(ctx);
    mon_lock();
    attempts_seen = attempt;
    mon_unlock_signal();
    if (attempt == 1) {
        sl_job_set_result(ctx, "first try fails");
        return 1;
    }
    sl_job_set_result(ctx, "ok");
    return 0;
}
static int job_state = -1, job_attempts;
static void job_done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata;
    mon_lock();
    job_state = outcome->state;
    job_attempts = outcome->attempts;
    mon_unlock_signal();
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_MANUAL);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "one_second";
    type.create = create;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 1000;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    type.name = "default_timeout";
    type.timeout_ms = 0;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
    sl_lane_options lane_options;
    sl_lane_options_init(&lane_options);
    lane_options.persisted = 0;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", &lane_options, &lane));
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    uint64_t short_one = start_saga("one_second", "{}");
    uint64_t long_one = start_saga("default_timeout", "{}");
    uint64_t answered = start_saga("one_second", "{\"answer\":true}");
    char *end = rec_wait_terminal(&rec, answered);
    EXPECT_STREQ(end, "SagaCompleted {\"name\":\"one_second\",\"state\":\"completed\"}");
    free(end);

    CHECK(sl_runtime_advance_time(rt, 999));
    expect_state(short_one, "running");
    expect_state(long_one, "running");
    CHECK(sl_runtime_advance_time(rt, 2));
    end = rec_wait_terminal(&rec, short_one);
    EXPECT_STREQ(end, "SagaFailed {\"name\":\"one_second\",\"reason\":\"saga timeout\",\"state\":\"failed\"}");
    free(end);
    expect_state(short_one, "failed");
    expect_state(long_one, "running");

    CHECK(sl_runtime_advance_time(rt, 3998)); /* 4999 in all */
    expect_state(long_one, "running");
    CHECK(sl_runtime_advance_time(rt, 2));
    end = rec_wait_terminal(&rec, long_one);
    EXPECT_STREQ(end, "SagaFailed {\"name\":\"default_timeout\",\"reason\":\"saga timeout\",\"state\":\"failed\"}");
    free(end);

    /* Far past every deadline: nothing ends twice. */
    CHECK(sl_runtime_advance_time(rt, 60000));
    CHECK(sl_runtime_advance_time(rt, 0));
    mon_lock();
    EXPECT_EQ_INT(rec_terminals_locked(&rec, short_one), 1);
    EXPECT_EQ_INT(rec_terminals_locked(&rec, long_one), 1);
    EXPECT_EQ_INT(rec_terminals_locked(&rec, answered), 1);
    mon_unlock();

    /* A retry's back-off is a loop timer: the second attempt needs time to move. */
    sl_job job;
    sl_job_init(&job);
    job.id = "flaky";
    job.run = flaky;
    job.done = job_done;
    job.max_attempts = 2;
    job.retry_backoff_ms = 1000;
    CHECK(sl_lane_submit(lane, &job, NULL));
    WAIT_FOR(attempts_seen == 1);
    sl_lane_stats stats = {.size = sizeof stats};
    /* The first run returns and the job is set aside. */
    POLL_UNTIL(sl_lane_get_stats(lane, &stats) == 0 && stats.running == 0);
    EXPECT_RC(sl_lane_cancel(lane, "flaky"), SL_ENOTQUEUED); /* between retries */
    mon_lock();
    EXPECT_EQ_INT(attempts_seen, 1);
    EXPECT_EQ_INT(job_state, -1);
    mon_unlock();
    /* The timer is armed on the loop shortly after the run; advance until it has fired. */
    for (int i = 0; i < 1000; i++) {
        CHECK(sl_runtime_advance_time(rt, 60000));
        mon_lock();
        int second = attempts_seen == 2;
        mon_unlock();
        if (second) break;
        sleep_ms(1);
    }
    WAIT_FOR(job_state != -1);
    EXPECT_EQ_INT(job_state, SL_JOB_FINISHED);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
