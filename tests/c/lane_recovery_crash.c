/* Persisted lanes across a real crash. A child process opens a runtime on a file, fills two
 * persisted lanes with jobs that run forever and jobs queued behind them, tells the parent
 * through a pipe, and is killed with SIGKILL. The parent reopens the file:
 *
 *   - creating lane "crash" with a reconstruct callback calls it, before sl_lane_create
 *     returns, once for each queued job (with its id, caller, priority and metadata) and
 *     never for the jobs that were running; the rebuilt jobs run exactly once; one the
 *     callback refuses never runs;
 *   - creating lane "plain" without one runs none of its jobs;
 *   - a third open finds nothing left to rebuild: the running jobs were marked failed
 *     ("lost on restart") and the others ended; their ids stay taken in the log.
 */
#include "check.h"


/* ---- The child ----------------------------------------------------------------------------- */

static int forever_started;

static int forever(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    forever_started++;
    mon_unlock_signal();
    for (;;) pause();
    return 0;
}

static void child_submit(sl_lane *lane, const char *id, int priority, sl_job_fn run) {
    char metadata[32];
    snprintf(metadata, sizeof metadata, "meta:%s", id);
    sl_job job;
    sl_job_init(&job);
    job.id = id;
    job.caller = "the child";
    job.priority = priority;
    job.metadata = metadata;
    job.metadata_length = strlen(metadata) + 1; /* binary-safe: the NUL goes along */
    job.run = run;
    CHECK(sl_lane_submit(lane, &job, NULL)); /* returns once the queued row is durable */
}

static void child(const char *path, int ready_fd) {
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM); /* SL_DURABILITY_NORMAL: survives a process crash */
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.max_concurrent = 2;
    sl_lane *crash = NULL, *plain = NULL;
    CHECK(sl_lane_create(rt, "crash", &options, &crash));
    CHECK(sl_lane_create(rt, "plain", NULL, &plain));
    CHECK(sl_runtime_start(rt));
    child_submit(crash, "run-1", 9, forever);
    child_submit(crash, "run-2", 9, forever);
    child_submit(plain, "plain-run", 9, forever);
    WAIT_FOR(forever_started == 3); /* their running rows are durable before they run */
    child_submit(crash, "q-1", 1, forever);
    child_submit(crash, "q-2", 2, forever);
    child_submit(crash, "q-refused", 3, forever);
    child_submit(plain, "plain-q", 0, forever);
    char ready = 'Y';
    if (write(ready_fd, &ready, 1) != 1) _exit(2);
    for (;;) pause();
}

/* ---- The parent ---------------------------------------------------------------------------- */

static int reconstructed, reconstructed_bad;
static int runs_q1, runs_q2, runs_other, dones, done_bad;

static int rebuilt_run(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    const char *id = sl_job_id(ctx);
    mon_lock();
    if (strcmp(id, "q-1") == 0) runs_q1++;
    else if (strcmp(id, "q-2") == 0) runs_q2++;
    else runs_other++;
    mon_unlock();
    return 0;
}
static void rebuilt_done(void *userdata, const sl_job_outcome *outcome) {
    mon_lock();
    if (strcmp(outcome->job_id, userdata) != 0 || outcome->state != SL_JOB_FINISHED) done_bad++;
    dones++;
    mon_unlock_signal();
}

static int reconstruct(void *userdata, const sl_job_record *record, sl_job *job) {
    EXPECT(userdata == &reconstructed);
    reconstructed++;
    char metadata[32];
    snprintf(metadata, sizeof metadata, "meta:%s", record->job_id);
    if (strcmp(record->caller, "the child") != 0) reconstructed_bad++;
    if (record->metadata_length != strlen(metadata) + 1 || memcmp(record->metadata, metadata, record->metadata_length) != 0)
        reconstructed_bad++;
    if (record->attempts != 0) reconstructed_bad++;
    if (strcmp(record->job_id, "q-1") == 0) {
        if (record->priority != 1) reconstructed_bad++;
        job->userdata = "q-1";
    } else if (strcmp(record->job_id, "q-2") == 0) {
        if (record->priority != 2) reconstructed_bad++;
        job->userdata = "q-2";
    } else if (strcmp(record->job_id, "q-refused") == 0) {
        return 1; /* marked failed, never run */
    } else {
        reconstructed_bad++; /* a running job, or another lane's, must not come here */
        return 1;
    }
    EXPECT_EQ_INT(job->size, sizeof *job);
    job->run = rebuilt_run;
    job->done = rebuilt_done;
    return 0;
}

static int occurrences(const char *text, const char *part) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, part)) != NULL; p += strlen(part)) n++;
    return n;
}

/* What an operator sees of the recovery through sl_log_jobs. */
static void expect_job_rows(sl_runtime *rt) {
    char *json = NULL;
    CHECK(sl_log_jobs(rt, "crash", "failed", 100, &json));
    EXPECT_EQ_INT(occurrences(json, "\"state\":\"failed\""), 3);
    EXPECT_EQ_INT(occurrences(json, "\"error\":\"lost on restart\""), 2);
    EXPECT_CONTAINS(json, "\"id\":\"run-1\"");
    EXPECT_CONTAINS(json, "\"id\":\"run-2\"");
    EXPECT_CONTAINS(json, "\"id\":\"q-refused\"");
    EXPECT_CONTAINS(json, "\"metadata\":\"meta:q-refused\\u0000\",\"metadata_size\":15");
    sl_free(json);
    CHECK(sl_log_jobs(rt, "crash", "finished", 100, &json));
    EXPECT_EQ_INT(occurrences(json, "\"state\":\"finished\""), 2);
    EXPECT_CONTAINS(json, "\"id\":\"q-1\"");
    EXPECT_CONTAINS(json, "\"id\":\"q-2\"");
    sl_free(json);
    /* Every lane: all seven rows, or as many as the limit asks for. */
    CHECK(sl_log_jobs(rt, NULL, NULL, 100, &json));
    EXPECT_EQ_INT(occurrences(json, "\"lane\":"), 7);
    EXPECT_CONTAINS(json, "\"id\":\"plain-q\"");
    sl_free(json);
    CHECK(sl_log_jobs(rt, NULL, NULL, 2, &json));
    EXPECT_EQ_INT(occurrences(json, "\"lane\":"), 2);
    sl_free(json);
    CHECK(sl_log_jobs(rt, "no-such-lane", NULL, 10, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);
    json = NULL;
    EXPECT_RC(sl_log_jobs(rt, NULL, "done", 10, &json), SL_EINVAL);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "unknown job state 'done'");
    EXPECT(json == NULL);
    EXPECT_RC(sl_log_jobs(rt, NULL, NULL, -1, &json), SL_EINVAL);
    EXPECT_RC(sl_log_jobs(rt, NULL, NULL, 1, NULL), SL_EINVAL);
}

static void open_lanes(const char *path, int expected_reconstructed) {
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    reconstructed = 0;
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.max_concurrent = 2;
    options.reconstruct = reconstruct;
    options.reconstruct_userdata = &reconstructed;
    sl_lane *crash = NULL, *plain = NULL;
    CHECK(sl_lane_create(rt, "crash", &options, &crash));
    EXPECT_EQ_INT(reconstructed, expected_reconstructed); /* during sl_lane_create */
    EXPECT_EQ_INT(reconstructed_bad, 0);
    CHECK(sl_lane_create(rt, "plain", NULL, &plain));
    EXPECT_EQ_INT(reconstructed, expected_reconstructed);
    CHECK(sl_runtime_start(rt));
    if (expected_reconstructed > 0) {
        WAIT_FOR(dones == 2);
        mon_lock();
        EXPECT_EQ_INT(done_bad, 0);
        mon_unlock();
        expect_job_rows(rt);
    }
    /* Every id stays taken in the log, ended or lost. */
    const char *ids[] = {"run-1", "run-2", "q-1", "q-2", "q-refused"};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        sl_job job;
        sl_job_init(&job);
        job.id = ids[i];
        job.run = rebuilt_run;
        EXPECT_RC(sl_lane_submit(crash, &job, NULL), SL_EEXIST);
    }
    sl_job job;
    sl_job_init(&job);
    job.id = "plain-q";
    job.run = rebuilt_run;
    EXPECT_RC(sl_lane_submit(plain, &job, NULL), SL_EEXIST);
    sl_runtime_close(rt);
}

int main(int argc, char **argv) {
    RUN_READY_CHILD(argc, argv, child);
    char path[512];
    crash_ready_child(path, sizeof path, "lane_recovery_crash.db");

    open_lanes(path, 3);
    mon_lock();
    EXPECT_EQ_INT(runs_q1, 1);
    EXPECT_EQ_INT(runs_q2, 1);
    EXPECT_EQ_INT(runs_other, 0);
    mon_unlock();

    open_lanes(path, 0);
    EXPECT_EQ_INT(runs_q1, 1);
    EXPECT_EQ_INT(runs_q2, 1);
    EXPECT_EQ_INT(runs_other, 0);
    return 0;
}
