/* Batch and non-waiting submits across a real crash. A child process fills a persisted lane
 * behind a job that never ends: one sl_lane_submit_batch of 40 jobs (one of them invalid, one
 * a duplicate id) and 30 sl_lane_submit_async jobs; once the batch returned and every
 * `queued` callback reported 0 it tells the parent through a pipe and is killed with SIGKILL.
 * The parent reopens the file: every job reported taken is rebuilt by the lane's reconstruct
 * callback, none that was refused is in the log. Then, in the parent: the refusals the batch
 * and the non-waiting submit report, and `queued` always before `done`.
 */
#include "check.h"

enum { BATCH = 40, BAD_INDEX = 10, DUPLICATE_INDEX = 20, ASYNC = 30 };

static int forever_started;
static int queued_ok, queued_failed;

static int forever(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    forever_started++;
    mon_unlock_signal();
    for (;;) pause();
    return 0;
}

static void on_queued(void *userdata, int rc, const sl_submission *submission) {
    (void)userdata;
    mon_lock();
    if (rc == 0 && submission != NULL && submission->job_id != NULL && strncmp(submission->job_id, "a-", 2) == 0) queued_ok++;
    else queued_failed++;
    mon_unlock_signal();
}

static void child(const char *path, int ready_fd) {
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "batch", NULL, &lane)); /* persisted, one at a time */
    CHECK(sl_runtime_start(rt));
    sl_job blocker;
    sl_job_init(&blocker);
    blocker.id = "blocker";
    blocker.run = forever;
    CHECK(sl_lane_submit(lane, &blocker, NULL));
    WAIT_FOR(forever_started == 1); /* everything below stays queued */

    static char ids[BATCH][16];
    static sl_job jobs[BATCH];
    static sl_submission submissions[BATCH];
    const sl_job *pointers[BATCH];
    sl_submission *outs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        snprintf(ids[i], sizeof ids[i], "b-%d", i);
        sl_job_init(&jobs[i]);
        jobs[i].id = i == DUPLICATE_INDEX ? "b-0" : ids[i];
        jobs[i].run = i == BAD_INDEX ? NULL : forever; /* no run: refused */
        jobs[i].metadata = ids[i];
        jobs[i].metadata_length = strlen(ids[i]);
        pointers[i] = &jobs[i];
        submissions[i].size = sizeof submissions[i];
        outs[i] = &submissions[i];
    }
    int codes[BATCH];
    EXPECT_RC(sl_lane_submit_batch(lane, pointers, BATCH, codes, outs), SL_EINVAL);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "jobs[10]");
    for (int i = 0; i < BATCH; i++) {
        int expected = i == BAD_INDEX ? SL_EINVAL : i == DUPLICATE_INDEX ? SL_EEXIST : 0;
        if (codes[i] != expected) check_fail_(__FILE__, __LINE__, "codes[%d] is %d, expected %d", i, codes[i], expected);
        if (expected == 0) {
            EXPECT_STREQ(submissions[i].job_id, ids[i]);
            sl_free(submissions[i].job_id);
        }
    }
    for (int i = 0; i < ASYNC; i++) {
        char id[16], metadata[16];
        snprintf(id, sizeof id, "a-%d", i);
        snprintf(metadata, sizeof metadata, "a-%d", i);
        sl_job job;
        sl_job_init(&job);
        job.id = id;
        job.run = forever;
        job.metadata = metadata;
        job.metadata_length = strlen(metadata);
        CHECK(sl_lane_submit_async(lane, &job, on_queued, NULL)); /* the job is copied before it returns */
    }
    WAIT_FOR(queued_ok + queued_failed == ASYNC);
    mon_lock();
    EXPECT_EQ_INT(queued_ok, ASYNC);
    mon_unlock();
    char ready = 'Y';
    if (write(ready_fd, &ready, 1) != 1) _exit(2);
    for (;;) pause();
}

/* ---- The parent ---------------------------------------------------------------------------- */

static int rebuilt_batch[BATCH], rebuilt_async[ASYNC], rebuilt_other;

static int never(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}

static int reconstruct(void *userdata, const sl_job_record *record, sl_job *job) {
    (void)userdata, (void)job;
    int i = -1;
    char metadata[16] = {0};
    if (record->metadata_length < sizeof metadata) memcpy(metadata, record->metadata, record->metadata_length);
    if (sscanf(record->job_id, "b-%d", &i) == 1 && i >= 0 && i < BATCH && strcmp(metadata, record->job_id) == 0) {
        rebuilt_batch[i]++;
    } else if (sscanf(record->job_id, "a-%d", &i) == 1 && i >= 0 && i < ASYNC && strcmp(metadata, record->job_id) == 0) {
        rebuilt_async[i]++;
    } else {
        rebuilt_other++;
    }
    return 1; /* mark them failed: this test only counts them */
}

/* What `done` and `queued` saw of the non-waiting submits, in their order. */
static char order[4096];
static size_t order_length;

static void note(const char *what, const char *id) {
    mon_lock();
    order_length += (size_t)snprintf(order + order_length, sizeof order - order_length, "%s %s;", what, id);
    mon_unlock_signal();
}
static void noted_queued(void *userdata, int rc, const sl_submission *submission) {
    (void)userdata;
    if (rc == 0) note("queued", submission->job_id);
    else note("refused", sl_runtime_errmsg(check_rt));
}
static void noted_done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata;
    note("done", outcome->job_id);
}

static int held_started, held_released;

static int held(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    held_started = 1;
    pthread_cond_broadcast(&mon_cond);
    WAIT_FOR_LOCKED(held_released);
    mon_unlock();
    return 0;
}

static void refusals_and_order(void) {
    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.persisted = 0; /* a job can end before its submit returns */
    options.max_concurrent = 4;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "memory", &options, &lane));
    CHECK(sl_runtime_start(rt));
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "m-%d", i);
        sl_job job;
        sl_job_init(&job);
        job.id = id;
        job.run = never;
        job.done = noted_done;
        CHECK(sl_lane_submit_async(lane, &job, noted_queued, NULL));
    }
    sl_job job;
    sl_job_init(&job);
    job.id = "hold";
    job.run = held;
    CHECK(sl_lane_submit_async(lane, &job, NULL, NULL));
    WAIT_FOR(held_started);
    job.run = never; /* its id is taken while it runs: refused through `queued`, with its message */
    CHECK(sl_lane_submit_async(lane, &job, noted_queued, NULL));
    job.run = NULL; /* refused at once */
    EXPECT_RC(sl_lane_submit_async(lane, &job, noted_queued, NULL), SL_EINVAL);
    WAIT_FOR(strstr(order, "refused") != NULL);
    mon_lock();
    for (int i = 0; i < 20; i++) {
        char queued[32], done[32];
        snprintf(queued, sizeof queued, "queued m-%d;", i);
        snprintf(done, sizeof done, "done m-%d;", i);
        WAIT_FOR_LOCKED(strstr(order, done) != NULL);
        if (strstr(order, queued) == NULL || strstr(order, queued) > strstr(order, done))
            check_fail_(__FILE__, __LINE__, "m-%d: done came before queued: %s", i, order);
    }
    EXPECT_CONTAINS(order, "job 'hold' is already in lane 'memory'");
    held_released = 1;
    mon_unlock_signal();

    /* The batch's own arguments. */
    int codes[1] = {-99};
    EXPECT_RC(sl_lane_submit_batch(lane, NULL, 1, codes, NULL), SL_EINVAL);
    EXPECT_EQ_INT(codes[0], -99); /* nothing submitted, nothing reported */
    CHECK(sl_lane_submit_batch(lane, NULL, 0, NULL, NULL));
    sl_submission small = {.size = 2};
    sl_submission *outs[1] = {&small};
    const sl_job *jobs[1] = {&job};
    EXPECT_RC(sl_lane_submit_batch(lane, jobs, 1, NULL, outs), SL_EINVAL);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "out[0].size");
    sl_runtime_close(rt);
}

int main(int argc, char **argv) {
    RUN_READY_CHILD(argc, argv, child);
    char path[512];
    crash_ready_child(path, sizeof path, "lane_batch_crash.db");

    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.reconstruct = reconstruct;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "batch", &options, &lane));
    for (int i = 0; i < BATCH; i++) {
        int expected = i == BAD_INDEX || i == DUPLICATE_INDEX ? 0 : 1;
        if (rebuilt_batch[i] != expected) check_fail_(__FILE__, __LINE__, "b-%d rebuilt %d times", i, rebuilt_batch[i]);
    }
    for (int i = 0; i < ASYNC; i++) {
        if (rebuilt_async[i] != 1) check_fail_(__FILE__, __LINE__, "a-%d rebuilt %d times", i, rebuilt_async[i]);
    }
    EXPECT_EQ_INT(rebuilt_other, 0);
    char *json = NULL;
    CHECK(sl_log_jobs(rt, "batch", NULL, 1000, &json));
    EXPECT_CONTAINS(json, "\"id\":\"blocker\""); /* lost on restart */
    EXPECT(strstr(json, "\"id\":\"b-10\"") == NULL); /* refused: never written */
    sl_free(json);
    sl_runtime_close(rt);

    refusals_and_order();
    return 0;
}
