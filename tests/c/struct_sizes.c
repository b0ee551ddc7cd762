/* Structs from an older header: a `size` that covers only the first fields. sagalane reads
   only what the size covers (the rest keeps its default) and writes only that much back,
   which is what lets the structs grow without breaking the ABI. */
#include "check.h"

#include <stddef.h>

static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    return sl_job_set_result(ctx, "ok");
}

int main(void) {
    /* Options that end before loop_mode: the rest are defaults (a thread-mode runtime), whatever
       the bytes past the size hold. */
    sl_runtime_options options;
    memset(&options, 0x7f, sizeof options);
    options.size = offsetof(sl_runtime_options, loop_mode);
    options.db_path = NULL;
    options.durability = SL_DURABILITY_NORMAL;
    options.busy_timeout_ms = 0;
    sl_runtime *rt = NULL;
    CHECK(sl_runtime_open(&options, &rt));
    check_rt = rt;
    CHECK(sl_runtime_start(rt));
    EXPECT_RC(sl_runtime_run(rt, SL_RUN_NOWAIT), SL_ESTATE); /* not host mode */
    EXPECT_RC(sl_runtime_advance_time(rt, 1), SL_ESTATE);  /* not the manual clock */

    /* Lane options that end before reconstruct. */
    sl_lane_options lane_options;
    memset(&lane_options, 0x7f, sizeof lane_options);
    lane_options.size = offsetof(sl_lane_options, reconstruct);
    lane_options.max_concurrent = 2;
    lane_options.persisted = 0;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", &lane_options, &lane));

    /* A job that ends before max_attempts. */
    sl_job job;
    memset(&job, 0x7f, sizeof job);
    job.size = offsetof(sl_job, max_attempts);
    job.id = "short";
    job.caller = NULL;
    job.priority = 0;
    job.metadata = NULL;
    job.metadata_length = 0;
    job.run = job_ok;
    job.done = NULL;
    job.userdata = NULL;
    char *text = NULL;
    CHECK(sl_lane_submit_wait(lane, &job, &text));
    EXPECT_STREQ(text, "ok");
    sl_free(text);

    /* A submission that ends before job_id: nothing is written there (nothing to free). */
    sl_submission submission;
    memset(&submission, 0x7f, sizeof submission);
    submission.size = offsetof(sl_submission, job_id);
    job.id = "short-2";
    CHECK(sl_lane_submit(lane, &job, &submission));
    char *sentinel;
    memset(&sentinel, 0x7f, sizeof sentinel);
    EXPECT(submission.job_id == sentinel);
    EXPECT(submission.position >= 0);

    /* Stats that end before mean_run_ms. */
    sl_lane_stats stats;
    memset(&stats, 0x7f, sizeof stats);
    double untouched = stats.mean_run_ms;
    stats.size = offsetof(sl_lane_stats, mean_run_ms);
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.max_concurrent, 2);
    EXPECT(stats.completed <= 2);
    EXPECT(memcmp(&stats.mean_run_ms, &untouched, sizeof untouched) == 0);

    /* A saga type that ends before timeout_ms (the default 5000 then applies). */
    sl_saga_type type;
    memset(&type, 0x7f, sizeof type);
    type.size = offsetof(sl_saga_type, timeout_ms);
    type.name = "short";
    type.create = test_no_state;
    type.destroy = NULL;
    type.start = test_wait_start;
    type.on_event = test_wait_event;
    type.input_snapshot = NULL;
    type.interests = NULL;
    type.interest_count = 0;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "short", NULL, &id));

    sl_runtime_close(rt); /* the 0x7f "release" past the size is never called */
    return 0;
}
