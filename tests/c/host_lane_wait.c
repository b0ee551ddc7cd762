/* SL_LOOP_HOST: the host thread that called sl_runtime_start runs the loop; a blocking call
   it makes outside sl_runtime_run runs the loop itself while it waits. Here the job fails once
   and its retry waits on a loop timer: the wait could only end if the host thread ran the
   loop meanwhile. */
#include "check.h"

static int job_ok_second_time(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    if (sl_job_attempt(ctx) == 1) {
        sl_job_set_result(ctx, "not yet");
        return -1;
    }
    return sl_job_set_result(ctx, "done");
}

int main(void) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.loop_mode = SL_LOOP_HOST;
    sl_runtime *rt = NULL;
    CHECK(sl_runtime_open(&options, &rt));
    check_rt = rt;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    CHECK(sl_runtime_start(rt));
    CHECK(sl_runtime_run(rt, SL_RUN_NOWAIT));

    sl_job job;
    sl_job_init(&job);
    job.run = job_ok_second_time;
    job.max_attempts = 2;
    job.retry_backoff_ms = 20;
    char *text = NULL;
    watchdog(20, "sl_lane_submit_wait on the host loop thread to return");
    CHECK(sl_lane_submit_wait(lane, &job, &text));
    alarm(0);
    EXPECT_STREQ(text, "done");
    sl_free(text);

    sl_runtime_close(rt);
    return 0;
}
