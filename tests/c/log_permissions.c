/* A log the user may read but not write, as an operator meets it: another user's log in a
   folder this user cannot write, and one in a folder anyone can write.
     - A read-only open works in both (sl_runtime_open with read_only, and every read of the
       sagalane binary), and creates no file beside the log: a -shm left by another user
       would keep the owner from writing its own log.
     - A read-write open fails at once with SL_EREADONLY, rather than "succeeding" and
       failing every write later.
   Nothing changes the log's bytes. Root may write anything, so the scenarios run as an
   unprivileged user; root prepares the files first. */
#include "files.h"

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    if (strstr(state, "\"done\":true")) CHECK(sl_action_done(action));
    else CHECK(sl_action_issue(action, "host", state));
}
static int held;
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    mon_lock();
    held++;
    mon_unlock_signal();
    return 0;
}
static int quick(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    return sl_job_set_result(ctx, "done");
}

/* A log with a completed saga, one left running, and a finished lane job; closed. */
static void make_log(const char *path) {
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
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
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "t", "{\"done\":true}", &id));
    free(rec_wait_terminal(&rec, id));
    CHECK(sl_saga_start(rt, "t", "{\"done\":false}", &id));
    WAIT_FOR(held == 1);
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    sl_job job;
    sl_job_init(&job);
    job.id = "job-1";
    job.run = quick;
    char *text = NULL;
    CHECK(sl_lane_submit_wait(lane, &job, &text));
    sl_free(text);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
}

static int open_rt(const char *path, int read_only, sl_runtime **rt) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.read_only = read_only;
    options.busy_timeout_ms = 200;
    *rt = NULL;
    int rc = sl_runtime_open(&options, rt);
    check_rt = *rt;
    return rc;
}

static void expect_no_companions(const char *path) {
    EXPECT(!file_exists(companion(path, "-wal")));
    EXPECT(!file_exists(companion(path, "-shm")));
    EXPECT(!file_exists(companion(path, "-lock")));
}

static void read_only_reads(const char *path) {
    uint64_t before = file_hash(path);
    sl_runtime *ro = NULL;
    CHECK(open_rt(path, 1, &ro));
    char *json = NULL;
    CHECK(sl_log_recent(ro, 10, &json));
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    EXPECT_CONTAINS(json, "\"state\":\"running\"");
    sl_free(json);
    CHECK(sl_log_unresolved(ro, &json));
    EXPECT_CONTAINS(json, "\"id\":2,");
    EXPECT_NOT_CONTAINS(json, "\"id\":1,");
    sl_free(json);
    CHECK(sl_log_saga(ro, 1, &json));
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    sl_free(json);
    CHECK(sl_log_stats(ro, &json));
    EXPECT_CONTAINS(json, "\"completed\":1");
    sl_free(json);
    CHECK(sl_log_jobs(ro, "work", NULL, 10, &json));
    EXPECT_CONTAINS(json, "\"id\":\"job-1\"");
    sl_free(json);
    EXPECT_RC(sl_log_vacuum(ro, 0, NULL), SL_EREADONLY);
    sl_runtime_close(ro);
    EXPECT(file_hash(path) == before);
    expect_no_companions(path);
}

static void read_write_refused(const char *path) {
    uint64_t before = file_hash(path);
    sl_runtime *rw = NULL;
    EXPECT_RC(open_rt(path, 0, &rw), SL_EREADONLY);
    printf("%s: %s\n", path, sl_runtime_errmsg(rw));
    EXPECT_CONTAINS(sl_runtime_errmsg(rw), "read-only");
    sl_runtime_close(rw);
    EXPECT(file_hash(path) == before);
    expect_no_companions(path);
}

#ifdef SL_TEST_CLI
static void cli_reads(const char *path) {
    uint64_t before = file_hash(path);
    char out[65536];
    char *recent[] = {"", "sagas", "list", (char *)path, NULL};
    EXPECT_EQ_INT(run_cli(1, recent, out, sizeof out), 0);
    EXPECT_CONTAINS(out, "\"state\":\"running\"");
    char *unresolved[] = {"", "sagas", "unresolved", (char *)path, NULL};
    EXPECT_EQ_INT(run_cli(1, unresolved, out, sizeof out), 0);
    EXPECT_CONTAINS(out, "\"id\":2,");
    char *saga[] = {"", "sagas", "show", (char *)path, "1", NULL};
    EXPECT_EQ_INT(run_cli(1, saga, out, sizeof out), 0);
    EXPECT_CONTAINS(out, "\"state\":\"completed\"");
    char *stats[] = {"", "stats", (char *)path, NULL};
    EXPECT_EQ_INT(run_cli(1, stats, out, sizeof out), 0);
    EXPECT_CONTAINS(out, "\"schema_version\":");
    char *jobs[] = {"", "jobs", (char *)path, "--lane", "work", NULL};
    EXPECT_EQ_INT(run_cli(1, jobs, out, sizeof out), 0);
    EXPECT_CONTAINS(out, "\"id\":\"job-1\"");
    char *vacuum[] = {"", "vacuum", (char *)path, "--older-than", "0s", NULL};
    EXPECT(run_cli(1, vacuum, out, sizeof out) != 0);
    EXPECT(file_hash(path) == before);
    expect_no_companions(path);
}
#endif

int main(void) {
    if (!can_become_nobody()) {
        printf("skipped: needs root to prepare another user's files\n");
        return SKIPPED;
    }
    char closed_dir[512], open_dir[512], closed_log[600], open_log[600];
    scratch_path(closed_dir, sizeof closed_dir, "closed-folder");
    scratch_path(open_dir, sizeof open_dir, "open-folder");
    fresh_folder(closed_dir, 0755);
    fresh_folder(open_dir, 0777);
    snprintf(closed_log, sizeof closed_log, "%s/app.db", closed_dir);
    snprintf(open_log, sizeof open_log, "%s/app.db", open_dir);
    make_log(closed_log);
    expect_no_companions(closed_log);
    copy_file(closed_log, open_log);
    EXPECT(chmod(closed_log, 0644) == 0 && chmod(open_log, 0644) == 0);

#ifdef SL_TEST_CLI
    /* The binary's reads, before this process drops root for good. */
    cli_reads(closed_log);
    cli_reads(open_log);
#endif
    become_nobody();
    read_only_reads(closed_log);
    read_only_reads(open_log);
    read_write_refused(closed_log);
    read_write_refused(open_log);
    /* A read-only open after the refused ones still works: they left nothing behind. */
    read_only_reads(open_log);
    return 0;
}
