/* What each saga state means, once, as the log and recovery read it: `failed` is final (a
   restart leaves it, and its reason, alone); `running` is unfinished (a restart marks it
   failed_compensation); sl_log_unresolved lists what an operator should look at (unfinished
   and failed_compensation, never failed or completed), up to a limit. A lane job that failed
   its first attempt and then succeeded has no error in its finished row. */
#include "check.h"

static sl_runtime *rt;
static int held;

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    mon_lock();
    held++;
    mon_unlock_signal();
    return 0; /* left waiting */
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    if (strstr(state, "\"do\":\"fail\"")) CHECK(sl_action_fail(action, "refused by policy"));
    else CHECK(sl_action_issue(action, "host", state));
}

static void open_and_register(const char *path) {
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_input_state;
    type.destroy = test_free_state;
    type.start = start;
    type.on_event = test_wait_event;
    type.timeout_ms = 600000;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
}

static int has_id(const char *json, uint64_t id) {
    char part[32];
    snprintf(part, sizeof part, "\"id\":%llu,", (unsigned long long)id);
    return strstr(json, part) != NULL;
}
static int count_sagas(const char *json) {
    int n = 0;
    for (const char *p = json; (p = strstr(p, "\"input\":")) != NULL; p++) n++;
    return n;
}

static int flaky_runs;
static int flaky(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    mon_lock();
    flaky_runs++;
    mon_unlock();
    if (sl_job_attempt(ctx) == 1) {
        CHECK(sl_job_set_result(ctx, "first try broke"));
        return 1;
    }
    return sl_job_set_result(ctx, "fine");
}
static int flaky_done;
static void on_flaky_done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata;
    EXPECT_EQ_INT(outcome->state, SL_JOB_FINISHED);
    mon_lock();
    flaky_done++;
    mon_unlock_signal();
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "log_states.db");
    open_and_register(path);
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    uint64_t failed = 0, running = 0, more[3];
    CHECK(sl_saga_start(rt, "t", "{\"do\":\"fail\"}", &failed));
    char *end = rec_wait_terminal(&rec, failed);
    EXPECT_CONTAINS(end, SL_EVENT_SAGA_FAILED);
    free(end);
    CHECK(sl_saga_start(rt, "t", "{\"do\":\"hold\"}", &running));
    for (int i = 0; i < 3; i++) CHECK(sl_saga_start(rt, "t", "{\"do\":\"hold\"}", &more[i]));
    WAIT_FOR(held == 4);

    /* Failed is final: not for an operator to look at. */
    char *json = NULL;
    CHECK(sl_log_unresolved(rt, &json));
    EXPECT(!has_id(json, failed));
    EXPECT(has_id(json, running));
    EXPECT_EQ_INT(count_sagas(json), 4);
    sl_free(json);

    /* A lane job whose first attempt failed and whose second succeeded. */
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    sl_job job;
    sl_job_init(&job);
    job.id = "flaky";
    job.run = flaky;
    job.done = on_flaky_done;
    job.max_attempts = 2;
    job.retry_backoff_ms = 1;
    CHECK(sl_lane_submit(lane, &job, NULL));
    WAIT_FOR(flaky_done == 1);
    EXPECT_EQ_INT(flaky_runs, 2);
    /* The finished row is written before the outcome is reported. */
    CHECK(sl_log_jobs(rt, "work", "finished", 10, &json));
    EXPECT_CONTAINS(json, "\"id\":\"flaky\"");
    EXPECT_CONTAINS(json, "\"attempts\":2");
    EXPECT_CONTAINS(json, "\"error\":null");
    EXPECT_NOT_CONTAINS(json, "first try broke");
    sl_free(json);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);

    /* The restart's recovery acts on the unfinished sagas only. */
    open_and_register(path);
    CHECK(sl_runtime_start(rt));
    CHECK(sl_log_saga(rt, failed, &json));
    EXPECT_CONTAINS(json, "\"failure_reason\":\"refused by policy\"");
    EXPECT_CONTAINS(json, "\"state\":\"failed\",\"steps\"");
    EXPECT_NOT_CONTAINS(json, "interrupted");
    sl_free(json);
    CHECK(sl_log_saga(rt, running, &json));
    EXPECT_CONTAINS(json, "\"state\":\"failed_compensation\",\"steps\"");
    EXPECT_CONTAINS(json, "interrupted: the runtime restarted while the saga was running");
    sl_free(json);

    /* Failed_compensation waits for an operator: unresolved, oldest first, up to the limit. */
    CHECK(sl_log_unresolved(rt, &json));
    EXPECT(!has_id(json, failed));
    EXPECT(has_id(json, running));
    EXPECT_EQ_INT(count_sagas(json), 4);
    EXPECT_CONTAINS(json, "\"steps\":[{");
    sl_free(json);
    CHECK(sl_log_unresolved_limit(rt, 2, &json));
    EXPECT_EQ_INT(count_sagas(json), 2);
    EXPECT(has_id(json, running) && has_id(json, more[0]) && !has_id(json, more[1]));
    sl_free(json);
    CHECK(sl_log_unresolved_limit(rt, 0, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);
    json = NULL;
    EXPECT_RC(sl_log_unresolved_limit(rt, -1, &json), SL_EINVAL);
    EXPECT_RC(sl_log_unresolved_limit(rt, 1, NULL), SL_EINVAL);
    EXPECT(json == NULL);
    sl_runtime_close(rt);
    return 0;
}
