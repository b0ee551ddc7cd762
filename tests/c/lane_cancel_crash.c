/* sl_lane_cancel's promise across a real crash. A child process queues a job behind one that
   runs forever on a persisted lane, cancels it, tells the parent the moment sl_lane_cancel
   returned 0, and is killed with SIGKILL. The parent reopens the file: the job's row is
   cancelled, recovery does not rebuild it (reconstruct is never called for it) and it never
   runs; its id stays taken. */
#include "check.h"

static int forever_started;

static int forever(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    forever_started++;
    mon_unlock_signal();
    for (;;) pause();
    return 0;
}

static int victim_runs;

static int victim(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    victim_runs++;
    mon_unlock_signal();
    return 0;
}

static void submit(sl_lane *lane, const char *id, sl_job_fn run) {
    sl_job job;
    sl_job_init(&job);
    job.id = id;
    job.metadata = id;
    job.metadata_length = strlen(id);
    job.run = run;
    CHECK(sl_lane_submit(lane, &job, NULL));
}

static void child(const char *path, int ready_fd) {
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_lane_options options;
    sl_lane_options_init(&options);
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", &options, &lane));
    CHECK(sl_runtime_start(rt));
    submit(lane, "blocker", forever);
    WAIT_FOR(forever_started == 1);
    submit(lane, "victim", victim);
    CHECK(sl_lane_cancel(lane, "victim"));
    char ready = 'Y';
    if (write(ready_fd, &ready, 1) != 1) _exit(2);
    for (;;) pause();
}

static int rebuilt_victim, rebuilt_other;

static int reconstruct(void *userdata, const sl_job_record *record, sl_job *job) {
    (void)userdata;
    mon_lock();
    if (strcmp(record->job_id, "victim") == 0) rebuilt_victim++;
    else rebuilt_other++;
    mon_unlock();
    job->run = victim;
    return 0;
}

int main(int argc, char **argv) {
    RUN_READY_CHILD(argc, argv, child);
    char path[512];
    crash_ready_child(path, sizeof path, "lane_cancel_crash.db");

    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.reconstruct = reconstruct;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", &options, &lane));
    CHECK(sl_runtime_start(rt));
    EXPECT_EQ_INT(rebuilt_victim, 0);
    EXPECT_EQ_INT(rebuilt_other, 0); /* the blocker was running: lost, not rebuilt */
    char *json = NULL;
    CHECK(sl_log_jobs(rt, "work", "cancelled", 10, &json));
    EXPECT_CONTAINS(json, "\"id\":\"victim\"");
    sl_free(json);
    CHECK(sl_log_jobs(rt, "work", "queued", 10, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);
    sleep_ms(50);
    mon_lock();
    EXPECT_EQ_INT(victim_runs, 0);
    mon_unlock();
    sl_job job;
    sl_job_init(&job);
    job.id = "victim";
    job.run = victim;
    EXPECT_RC(sl_lane_submit(lane, &job, NULL), SL_EEXIST);
    sl_runtime_close(rt);
    return 0;
}
