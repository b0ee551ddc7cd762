/* Retries: a job with max_attempts N runs up to N times while it fails, sl_job_attempt()
   counting 1, 2, ...; the outcome reports the runs made ("attempts") and the last error, or
   the result of the run that succeeded. max_attempts 0 or 1 runs once. On a persisted and an
   in-memory lane. */
#include "check.h"

struct plan {
    int fail_until; /* attempts up to this one fail */
    int attempts_seen[8];
    int runs;
    /* the outcome */
    int done, state, attempts;
    char text[64];
};

static int planned(void *userdata, sl_job_ctx *ctx) {
    struct plan *p = userdata;
    int attempt = sl_job_attempt(ctx);
    mon_lock();
    if (p->runs < 8) p->attempts_seen[p->runs] = attempt;
    p->runs++;
    mon_unlock();
    char text[32];
    if (attempt <= p->fail_until) {
        snprintf(text, sizeof text, "try %d failed", attempt);
        CHECK(sl_job_set_result(ctx, text));
        return 1;
    }
    snprintf(text, sizeof text, "ok on try %d", attempt);
    CHECK(sl_job_set_result(ctx, text));
    return 0;
}
static void planned_done(void *userdata, const sl_job_outcome *outcome) {
    struct plan *p = userdata;
    mon_lock();
    p->done++;
    p->state = outcome->state;
    p->attempts = outcome->attempts;
    snprintf(p->text, sizeof p->text, "%s", outcome->text);
    mon_unlock_signal();
}

static void run(sl_lane *lane, struct plan *p, int max_attempts) {
    sl_job job;
    sl_job_init(&job);
    job.run = planned;
    job.done = planned_done;
    job.userdata = p;
    job.max_attempts = max_attempts;
    job.retry_backoff_ms = 1;
    CHECK(sl_lane_submit(lane, &job, NULL));
    WAIT_FOR(p->done == 1);
    for (int i = 0; i < p->runs && i < 8; i++) EXPECT_EQ_INT(p->attempts_seen[i], i + 1);
}

static void scenario(sl_lane *lane, int *flaky_attempts) {
    /* Fails every time: two runs, failed, the last error. */
    struct plan always = {.fail_until = 100};
    run(lane, &always, 2);
    EXPECT_EQ_INT(always.runs, 2);
    EXPECT_EQ_INT(always.state, SL_JOB_FAILED);
    EXPECT_EQ_INT(always.attempts, 2);
    EXPECT_STREQ(always.text, "try 2 failed");

    /* No retries asked for: one run. */
    struct plan once = {.fail_until = 100};
    run(lane, &once, 0);
    EXPECT_EQ_INT(once.runs, 1);
    EXPECT_EQ_INT(once.state, SL_JOB_FAILED);
    EXPECT_EQ_INT(once.attempts, 1);
    struct plan one = {.fail_until = 100};
    run(lane, &one, 1);
    EXPECT_EQ_INT(one.runs, 1);
    EXPECT_EQ_INT(one.attempts, 1);

    /* Succeeds at once: one run. */
    struct plan first = {.fail_until = 0};
    run(lane, &first, 3);
    EXPECT_EQ_INT(first.runs, 1);
    EXPECT_EQ_INT(first.state, SL_JOB_FINISHED);
    EXPECT_EQ_INT(first.attempts, 1);
    EXPECT_STREQ(first.text, "ok on try 1");

    /* Fails twice, then succeeds: three runs, finished with the third run's result. */
    struct plan flaky = {.fail_until = 2};
    run(lane, &flaky, 5);
    EXPECT_EQ_INT(flaky.runs, 3);
    EXPECT_EQ_INT(flaky.state, SL_JOB_FINISHED);
    EXPECT_STREQ(flaky.text, "ok on try 3");
    *flaky_attempts = flaky.attempts; /* checked last, for both lanes */
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "lane_retries.db");
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_lane *persisted = NULL, *memory = NULL;
    CHECK(sl_lane_create(rt, "persisted", NULL, &persisted));
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.persisted = 0;
    CHECK(sl_lane_create(rt, "memory", &options, &memory));
    CHECK(sl_runtime_start(rt));
    int memory_attempts = 0, persisted_attempts = 0;
    scenario(memory, &memory_attempts);
    scenario(persisted, &persisted_attempts);
    sl_runtime_close(rt);
    /* "runs made": three, though only the last one succeeded. */
    EXPECT_EQ_INT(memory_attempts, 3);
    EXPECT_EQ_INT(persisted_attempts, 3);
    return 0;
}
