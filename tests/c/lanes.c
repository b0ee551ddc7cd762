/* A lane's queue, on a persisted and an in-memory lane: higher priority first and FIFO
   within a priority; submission positions; sl_lane_cancel of a queued job (done says
   cancelled, it never runs), of a running one (SL_ENOTQUEUED) and of an unknown one
   (SL_ENOTFOUND); sl_lane_get_stats counters; sl_lane_set_max_concurrent letting more run at
   once; generated job ids; the job context (id, attempt, metadata) inside the job; what
   sl_runtime_close does to running and queued jobs. */
#include "check.h"

#define MAX_ORDER 32

static char order[MAX_ORDER][16];
static int order_count;
static int gate_open, running_gates, max_running_gates;
static int done_states[3], done_calls;

/* Holds its worker until the gate opens. */
static int gate(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    running_gates++;
    if (running_gates > max_running_gates) max_running_gates = running_gates;
    pthread_cond_broadcast(&mon_cond);
    WAIT_FOR_LOCKED(gate_open);
    running_gates--;
    mon_unlock_signal();
    return 0;
}
/* Holds its worker until the job is cancelled. */
static int cancellable_gate(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    mon_lock();
    running_gates++;
    mon_unlock_signal();
    while (!sl_job_cancelled(ctx)) sleep_ms(1);
    return SL_ECANCELED;
}

/* Records the order jobs ran in, and checks what the context says. */
static int recorded(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    const char *id = sl_job_id(ctx);
    EXPECT(id != NULL);
    EXPECT_EQ_INT(sl_job_attempt(ctx), 1);
    EXPECT_EQ_INT(sl_job_cancelled(ctx), 0);
    size_t length = 0;
    const char *metadata = sl_job_metadata(ctx, &length);
    EXPECT(metadata != NULL);
    EXPECT_EQ_INT(length, strlen(id) + 5);
    EXPECT(memcmp(metadata, "meta:", 5) == 0 && memcmp(metadata + 5, id, strlen(id)) == 0);
    EXPECT_EQ_INT(metadata[length], '\0');
    mon_lock();
    EXPECT(order_count < MAX_ORDER);
    snprintf(order[order_count++], sizeof order[0], "%s", id);
    mon_unlock_signal();
    char result[32];
    snprintf(result, sizeof result, "ran %s", id);
    CHECK(sl_job_set_result(ctx, result));
    return 0;
}
static void done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata;
    mon_lock();
    EXPECT(outcome->state >= 0 && outcome->state <= 2);
    done_states[outcome->state]++;
    done_calls++;
    if (outcome->state == SL_JOB_CANCELLED) {
        EXPECT_STREQ(outcome->text, "");
    } else {
        EXPECT_EQ_INT(outcome->attempts, 1);
    }
    if (outcome->state == SL_JOB_FINISHED && outcome->job_id[0] == 'p' && !strchr(outcome->job_id, '-')) {
        char expected[32];
        snprintf(expected, sizeof expected, "ran %s", outcome->job_id);
        EXPECT_STREQ(outcome->text, expected);
    }
    mon_unlock_signal();
}

static uint64_t last_estimate;

static void submit(sl_lane *lane, const char *id, int priority, sl_job_fn run, int expected_position) {
    char metadata[32];
    snprintf(metadata, sizeof metadata, "meta:%s", id ? id : "");
    sl_job job;
    sl_job_init(&job);
    job.id = id;
    job.caller = "lanes test";
    job.priority = priority;
    job.metadata = metadata;
    job.metadata_length = strlen(metadata);
    job.run = run;
    job.done = done;
    sl_submission submission = {.size = sizeof submission};
    CHECK(sl_lane_submit(lane, &job, &submission));
    EXPECT(submission.job_id != NULL);
    if (id) EXPECT_STREQ(submission.job_id, id);
    else EXPECT(submission.job_id[0] != '\0');
    if (expected_position >= 0) EXPECT_EQ_INT(submission.position, expected_position);
    last_estimate = submission.estimated_wait_ms;
    sl_free(submission.job_id);
}

static void reset(void) {
    mon_lock();
    order_count = 0;
    gate_open = 0;
    running_gates = max_running_gates = 0;
    memset(done_states, 0, sizeof done_states);
    done_calls = 0;
    mon_unlock();
}

static void scenario(sl_runtime *rt, sl_lane *lane) {
    (void)rt;
    reset();
    sl_lane_stats stats = {.size = sizeof stats};
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.max_concurrent, 1);
    EXPECT_EQ_INT(stats.queued, 0);
    EXPECT_EQ_INT(stats.running, 0);

    /* Hold the lane, then queue behind the gate. */
    submit(lane, "gate-1", 100, gate, -1);
    EXPECT_EQ_INT(last_estimate, 0); /* no job ran yet */
    WAIT_FOR(running_gates == 1);
    submit(lane, "p1", 1, recorded, 0);
    submit(lane, "p5a", 5, recorded, 0); /* ahead of p1 */
    submit(lane, "p3", 3, recorded, 1);
    submit(lane, "p5b", 5, recorded, 1); /* behind p5a, ahead of p3 */
    submit(lane, "pneg", -7, recorded, 4);
    submit(lane, "doomed", 4, recorded, -1);
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.queued, 6);
    EXPECT_EQ_INT(stats.running, 1);

    CHECK(sl_lane_cancel(lane, "doomed"));
    EXPECT_RC(sl_lane_cancel(lane, "doomed"), SL_ENOTFOUND);
    EXPECT_RC(sl_lane_cancel(lane, "gate-1"), SL_ENOTQUEUED);
    EXPECT_ERRMSG(check_rt);
    EXPECT_RC(sl_lane_cancel(lane, "never-submitted"), SL_ENOTFOUND);
    WAIT_FOR(done_states[SL_JOB_CANCELLED] == 1);
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.queued, 5);
    EXPECT_EQ_INT(stats.cancelled, 1);

    mon_lock();
    gate_open = 1;
    mon_unlock_signal();
    WAIT_FOR(done_calls == 7);
    mon_lock();
    EXPECT_EQ_INT(order_count, 5);
    EXPECT_STREQ(order[0], "p5a");
    EXPECT_STREQ(order[1], "p5b");
    EXPECT_STREQ(order[2], "p3");
    EXPECT_STREQ(order[3], "p1");
    EXPECT_STREQ(order[4], "pneg");
    EXPECT_EQ_INT(done_states[SL_JOB_FINISHED], 6);
    mon_unlock();
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.completed, 6);
    EXPECT_EQ_INT(stats.failed, 0);
    EXPECT_EQ_INT(stats.cancelled, 1);
    EXPECT_EQ_INT(stats.queued, 0);
    EXPECT_EQ_INT(stats.running, 0);
    EXPECT(stats.mean_run_ms >= 0);

    /* Raising max_concurrent starts queued jobs at once. */
    reset();
    submit(lane, NULL, 0, gate, -1);
    WAIT_FOR(running_gates == 1);
    submit(lane, NULL, 0, gate, 0);
    submit(lane, NULL, 0, gate, 1);
    CHECK(sl_lane_set_max_concurrent(lane, 3));
    WAIT_FOR(running_gates == 3);
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.max_concurrent, 3);
    EXPECT_EQ_INT(stats.running, 3);
    EXPECT_EQ_INT(stats.queued, 0);
    /* Lowering it lets the running ones finish. */
    CHECK(sl_lane_set_max_concurrent(lane, 1));
    submit(lane, "after", 0, recorded, 0);
    mon_lock();
    gate_open = 1;
    mon_unlock_signal();
    WAIT_FOR(done_calls == 4);
    EXPECT_EQ_INT(max_running_gates, 3);
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.max_concurrent, 1);
    EXPECT_EQ_INT(stats.completed, 10);
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "lanes.db");
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_lane *persisted = NULL, *memory = NULL;
    CHECK(sl_lane_create(rt, "persisted", NULL, &persisted));
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.persisted = 0;
    options.max_concurrent = 0; /* means 1 */
    CHECK(sl_lane_create(rt, "memory", &options, &memory));
    /* Lanes work before the start too; the saga side is not needed. */
    scenario(rt, persisted);
    CHECK(sl_runtime_start(rt));
    scenario(rt, memory);

    /* The runtime's close: running jobs see sl_job_cancelled() and are waited for, queued ones
       end cancelled without running; every done call comes before it returns. */
    reset();
    submit(persisted, "holder-1", 0, cancellable_gate, -1);
    submit(memory, "holder-2", 0, cancellable_gate, -1);
    WAIT_FOR(running_gates == 2);
    submit(persisted, "queued-at-close-1", 0, recorded, 0);
    submit(memory, "queued-at-close-2", 0, recorded, 0);
    sl_runtime_close(rt);
    EXPECT_EQ_INT(done_calls, 4);
    EXPECT_EQ_INT(done_states[SL_JOB_CANCELLED], 4);
    EXPECT_EQ_INT(order_count, 0);
    return 0;
}
