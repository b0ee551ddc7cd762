/* sl_lane_submit_wait called inside a job returns SL_ESTATE (the header: "called on the loop
   thread or in a job"), on the job's own lane and on another. The lane has room for the
   inner job, so a missing check shows as a wrong code rather than a deadlock. */
#include "check.h"

static sl_lane *lanes[2];
static int rcs[2] = {1, 1};

static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}
static int job_waits(void *userdata, sl_job_ctx *ctx) {
    int which = *(int *)userdata;
    (void)ctx;
    sl_job inner;
    sl_job_init(&inner);
    inner.run = job_ok;
    int rc = sl_lane_submit_wait(lanes[which], &inner, NULL);
    mon_lock();
    rcs[which] = rc;
    mon_unlock_signal();
    return 0;
}

int main(void) {
    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.max_concurrent = 2;
    options.persisted = 0;
    CHECK(sl_lane_create(rt, "a", &options, &lanes[0]));
    CHECK(sl_lane_create(rt, "b", &options, &lanes[1]));
    CHECK(sl_runtime_start(rt));

    int same = 0, other = 1;
    sl_job job;
    sl_job_init(&job);
    job.run = job_waits;
    job.userdata = &same;
    CHECK(sl_lane_submit_wait(lanes[0], &job, NULL));
    job.userdata = &other;
    CHECK(sl_lane_submit_wait(lanes[0], &job, NULL));
    WAIT_FOR(rcs[0] != 1 && rcs[1] != 1);
    EXPECT_RC(rcs[0], SL_ESTATE);
    EXPECT_RC(rcs[1], SL_ESTATE);

    sl_runtime_close(rt);
    return 0;
}
