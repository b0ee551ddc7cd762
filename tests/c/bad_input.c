/* Arguments that are there but wrong: invalid UTF-8 (SL_EUTF8), JSON that is not strict RFC
   8259 (SL_EJSON), empty or ':'-holding names, struct size 0, out-of-range enums and counts
   (SL_EINVAL). None of these registers anything or calls a callback. */
#include "check.h"

#define BAD_UTF8 "\xff"

static int calls;

static void on_event(void *userdata, const sl_event *event) { (void)userdata, (void)event; }
static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    return 0;
}
static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}
static void job_done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata, (void)outcome;
    mon_lock();
    calls++;
    mon_unlock_signal();
}
static int reject_bad_result(void *userdata, sl_job_ctx *ctx) {
    int *rc = userdata;
    *rc = sl_job_set_result(ctx, "bad " BAD_UTF8);
    return 0;
}
static void counted_release(void *userdata) {
    (void)userdata;
    mon_lock();
    calls++;
    mon_unlock_signal();
}

/* sl_runtime_open with `options`: returns `code` and a handle to close. */
static void expect_open_fails(const sl_runtime_options *options, int code) {
    sl_runtime *rt = NULL;
    check_rt = NULL;
    int rc = sl_runtime_open(options, &rt);
    check_rt = rt;
    EXPECT(rt != NULL);
    EXPECT_RC(rc, code);
    EXPECT_ERRMSG(rt);
    sl_runtime_close(rt);
}

/* Saga-side arguments checked inside start, where an sl_action exists. */
static int action_rcs[16];
static int action_calls;

static void bad_actions_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state;
    int *rc = action_rcs;
    /* Each failing call turns the action into a failure; the saga ends failed either way.
       What matters here is the code each one returns. */
    switch (ctx->saga_id % 6) {
    case 0: rc[0] = sl_action_issue(action, BAD_UTF8, "{}"); break;
    case 1: rc[1] = sl_action_issue(action, "host", "{\"s\":\"" BAD_UTF8 "\"}"); break;
    case 2: rc[2] = sl_action_issue(action, "host", "{\"a\":1,}"); break;
    case 3: rc[3] = sl_action_issue(action, "", "{}"); break;
    case 4: rc[4] = sl_action_fail(action, BAD_UTF8); break;
    case 5: rc[5] = sl_action_issue(action, NULL, "{}"); break;
    }
    mon_lock();
    action_calls++;
    mon_unlock_signal();
}

int main(void) {
    sl_runtime_options options;

    /* ---- Runtime options ---- */
    sl_runtime_options_init(&options);
    EXPECT_EQ_INT(options.size, sizeof options);
    EXPECT(options.db_path == NULL);
    EXPECT_EQ_INT(options.durability, SL_DURABILITY_FULL);
    EXPECT_EQ_INT(options.loop_mode, SL_LOOP_THREAD);
    EXPECT_EQ_INT(options.clock, SL_CLOCK_SYSTEM);
    EXPECT_EQ_INT(options.read_only, 0);
    options.size = 0;
    expect_open_fails(&options, SL_EINVAL);
    sl_runtime_options_init(&options);
    options.db_path = BAD_UTF8;
    expect_open_fails(&options, SL_EUTF8);
    sl_runtime_options_init(&options);
    options.durability = 7;
    expect_open_fails(&options, SL_EINVAL);
    sl_runtime_options_init(&options);
    options.loop_mode = 9;
    expect_open_fails(&options, SL_EINVAL);
    sl_runtime_options_init(&options);
    options.clock = -1;
    expect_open_fails(&options, SL_EINVAL);
    sl_runtime_options_init(&options);
    options.busy_timeout_ms = -5;
    expect_open_fails(&options, SL_EINVAL);
    sl_runtime_options_init(&options);
    options.read_only = 1; /* read-only needs a file */
    expect_open_fails(&options, SL_EINVAL);

    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);

    /* ---- Saga types ---- */
    sl_saga_type type;
    memset(&type, 0xab, sizeof type);
    sl_saga_type_init(&type);
    EXPECT_EQ_INT(type.size, sizeof type);
    EXPECT(type.name == NULL && type.create == NULL && type.release == NULL && type.timeout_ms == 0);
    type.name = "t";
    type.create = test_no_state;
    type.start = bad_actions_start;
    type.on_event = test_wait_event;
    type.release = counted_release;
    type.size = 0;
    EXPECT_RC(sl_saga_type_register(rt, &type, NULL), SL_EINVAL);
    type.size = sizeof type;
    type.name = "";
    EXPECT_RC(sl_saga_type_register(rt, &type, NULL), SL_EINVAL);
    type.name = BAD_UTF8;
    EXPECT_RC(sl_saga_type_register(rt, &type, NULL), SL_EUTF8);
    const char *bad_interests[] = {"ok", BAD_UTF8};
    type.name = "t";
    type.interests = bad_interests;
    type.interest_count = 2;
    EXPECT_RC(sl_saga_type_register(rt, &type, NULL), SL_EUTF8);
    type.interests = NULL;
    type.interest_count = 0;
    CHECK(sl_saga_type_register(rt, &type, NULL));

    /* ---- Triggers and targets ---- */
    EXPECT_RC(sl_trigger_add(rt, "", "t", NULL, NULL, NULL), SL_EINVAL);
    EXPECT_RC(sl_trigger_add(rt, BAD_UTF8, "t", NULL, NULL, counted_release), SL_EUTF8);
    EXPECT_RC(sl_trigger_add(rt, "E", BAD_UTF8, NULL, NULL, counted_release), SL_EUTF8);
    EXPECT_RC(sl_target_register(rt, "", target, NULL, counted_release), SL_EINVAL);
    EXPECT_RC(sl_target_register(rt, "a:b", target, NULL, counted_release), SL_EINVAL);
    EXPECT_RC(sl_target_register(rt, "lane:x", target, NULL, counted_release), SL_EINVAL);
    EXPECT_RC(sl_target_register(rt, BAD_UTF8, target, NULL, counted_release), SL_EUTF8);
    CHECK(sl_target_register(rt, "host", target, NULL, NULL));

    /* ---- Events ---- */
    EXPECT_RC(sl_publish(rt, "", 0, NULL), SL_EINVAL);
    EXPECT_RC(sl_publish(rt, BAD_UTF8, 0, NULL), SL_EUTF8);
    EXPECT_RC(sl_publish(rt, "E", 0, "\"" BAD_UTF8 "\""), SL_EUTF8);
    const char *malformed[] = {
        "",            /* no value at all */
        "{",           /* unterminated */
        "{'a':1}",     /* single quotes */
        "{a:1}",       /* bare key */
        "[1,]",        /* trailing comma */
        "01",          /* leading zero */
        "NaN",         /* not JSON */
        "{} {}",       /* two values */
        "\"a\tb\"",    /* raw control character in a string */
        "[1] // c",    /* comment */
        "\"\\x41\"",   /* unknown escape */
        "1.",          /* no digit after the point */
        "tru",         /* truncated literal */
    };
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        int rc = sl_publish(rt, "E", 0, malformed[i]);
        if (rc != SL_EJSON) {
            fprintf(stderr, "payload '%s': ", malformed[i]);
            EXPECT_RC(rc, SL_EJSON);
        }
        EXPECT_ERRMSG(rt);
    }
    EXPECT_RC(sl_subscribe(rt, 0, on_event, NULL, NULL), SL_EINVAL);

    /* ---- Lanes ---- */
    sl_lane_options lane_options;
    sl_lane_options_init(&lane_options);
    EXPECT_EQ_INT(lane_options.size, sizeof lane_options);
    EXPECT_EQ_INT(lane_options.persisted, 1);
    EXPECT_EQ_INT(lane_options.max_concurrent, 1);
    sl_lane *lane = NULL;
    EXPECT_RC(sl_lane_create(rt, "", NULL, &lane), SL_EINVAL);
    EXPECT_RC(sl_lane_create(rt, BAD_UTF8, NULL, &lane), SL_EUTF8);
    lane_options.size = 0;
    EXPECT_RC(sl_lane_create(rt, "work", &lane_options, &lane), SL_EINVAL);
    sl_lane_options_init(&lane_options);
    lane_options.max_concurrent = -1;
    EXPECT_RC(sl_lane_create(rt, "work", &lane_options, &lane), SL_EINVAL);
    sl_lane_options_init(&lane_options);
    CHECK(sl_lane_create(rt, "work", &lane_options, &lane));
    EXPECT_RC(sl_lane_find(rt, BAD_UTF8, &(sl_lane *){NULL}), SL_EUTF8);

    sl_job job;
    memset(&job, 0xab, sizeof job);
    sl_job_init(&job);
    EXPECT_EQ_INT(job.size, sizeof job);
    EXPECT(job.id == NULL && job.run == NULL && job.done == NULL && job.max_attempts == 0 && job.priority == 0);
    job.run = job_ok;
    job.done = job_done;
    job.size = 0;
    EXPECT_RC(sl_lane_submit(lane, &job, NULL), SL_EINVAL);
    EXPECT_RC(sl_lane_submit_wait(lane, &job, NULL), SL_EINVAL);
    job.size = sizeof job;
    job.id = BAD_UTF8;
    EXPECT_RC(sl_lane_submit(lane, &job, NULL), SL_EUTF8);
    job.id = "j";
    job.caller = BAD_UTF8;
    EXPECT_RC(sl_lane_submit(lane, &job, NULL), SL_EUTF8);
    job.caller = NULL;
    job.max_attempts = -1;
    EXPECT_RC(sl_lane_submit(lane, &job, NULL), SL_EINVAL);
    job.max_attempts = 0;
    sl_submission submission = {.size = 0};
    EXPECT_RC(sl_lane_submit(lane, &job, &submission), SL_EINVAL);
    EXPECT_RC(sl_lane_cancel(lane, BAD_UTF8), SL_EUTF8);
    EXPECT_RC(sl_lane_set_max_concurrent(lane, 0), SL_EINVAL);
    EXPECT_RC(sl_lane_set_max_concurrent(lane, -3), SL_EINVAL);
    sl_lane_stats stats = {.size = 0};
    EXPECT_RC(sl_lane_get_stats(lane, &stats), SL_EINVAL);
    EXPECT_RC(sl_lane_set_command_handler(lane, NULL, NULL, counted_release), SL_EINVAL);

    /* None of the refused submissions ran; "j" is still free. */
    stats.size = sizeof stats;
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.completed + stats.failed + stats.cancelled + (uint64_t)stats.queued + (uint64_t)stats.running, 0);
    int result_rc = 1;
    job.run = reject_bad_result;
    job.userdata = &result_rc;
    job.done = NULL;
    CHECK(sl_lane_submit_wait(lane, &job, NULL));
    EXPECT_RC(result_rc, SL_EUTF8);

    /* ---- Sagas ---- */
    CHECK(sl_runtime_start(rt));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    EXPECT_RC(sl_saga_start(rt, BAD_UTF8, NULL, NULL), SL_EUTF8);
    EXPECT_RC(sl_saga_start(rt, "t", "{\"s\":\"" BAD_UTF8 "\"}", NULL), SL_EUTF8);
    EXPECT_RC(sl_saga_start(rt, "t", "{", NULL), SL_EJSON);
    EXPECT_RC(sl_saga_start(rt, "t", "[1,]", NULL), SL_EJSON);
    EXPECT_RC(sl_saga_cancel(rt, 1, BAD_UTF8), SL_EUTF8);
    EXPECT_RC(sl_step_fail(rt, 1, 0, BAD_UTF8), SL_EUTF8);
    EXPECT_RC(sl_log_recent(rt, -1, &(char *){NULL}), SL_EINVAL);

    /* sl_action_* with bad arguments, from a saga's start: one saga per case. */
    uint64_t ids[6];
    for (int i = 0; i < 6; i++) CHECK(sl_saga_start(rt, "t", NULL, &ids[i]));
    for (int i = 0; i < 6; i++) {
        char *end = rec_wait_terminal(&rec, ids[i]);
        EXPECT_CONTAINS(end, "SagaFailed");
        free(end);
    }
    WAIT_FOR(action_calls == 6);
    EXPECT_RC(action_rcs[0], SL_EUTF8);
    EXPECT_RC(action_rcs[1], SL_EUTF8);
    EXPECT_RC(action_rcs[2], SL_EJSON);
    EXPECT_RC(action_rcs[3], SL_EINVAL);
    EXPECT_RC(action_rcs[4], SL_EUTF8);
    EXPECT_RC(action_rcs[5], SL_EINVAL);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    /* Only the saga type that registered is released; the refused registrations never are. */
    EXPECT_EQ_INT(calls, 1);
    return 0;
}
