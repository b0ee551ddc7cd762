/* Bounds on what a host passes to a lane: a max_concurrent above SL_LANE_MAX_CONCURRENT (up to
   INT_MAX) is refused with SL_EINVAL and a message naming the limit, at creation and at
   sl_lane_set_max_concurrent (the lane keeps its bound, and a refused lane takes no name);
   a metadata_length past what memory can hold (SIZE_MAX) is refused, not read. */
#include "check.h"

#include <limits.h>

static int nothing(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}

static void expect_limit_message(sl_runtime *rt) {
    char limit[16];
    snprintf(limit, sizeof limit, "%d", SL_LANE_MAX_CONCURRENT);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), limit);
}

int main(void) {
    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    CHECK(sl_runtime_start(rt));

    sl_lane_options options;
    sl_lane_options_init(&options);
    sl_lane *lane = NULL;
    const int too_many[] = {SL_LANE_MAX_CONCURRENT + 1, 100000, INT_MAX};
    for (size_t i = 0; i < sizeof too_many / sizeof *too_many; i++) {
        options.max_concurrent = too_many[i];
        EXPECT_RC(sl_lane_create(rt, "wide", &options, &lane), SL_EINVAL);
        expect_limit_message(rt);
        EXPECT(lane == NULL);
    }
    /* Refused lanes took no name. */
    options.max_concurrent = 2;
    CHECK(sl_lane_create(rt, "wide", &options, &lane));

    EXPECT_RC(sl_lane_set_max_concurrent(lane, INT_MAX), SL_EINVAL);
    expect_limit_message(rt);
    EXPECT_RC(sl_lane_set_max_concurrent(lane, SL_LANE_MAX_CONCURRENT + 1), SL_EINVAL);
    EXPECT_RC(sl_lane_set_max_concurrent(lane, 0), SL_EINVAL);
    EXPECT_RC(sl_lane_set_max_concurrent(lane, INT_MIN), SL_EINVAL);
    sl_lane_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.size = sizeof stats;
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.max_concurrent, 2);

    sl_job job;
    sl_job_init(&job);
    job.id = "huge-metadata";
    job.run = nothing;
    job.metadata = "x";
    job.metadata_length = SIZE_MAX;
    EXPECT_RC(sl_lane_submit(lane, &job, NULL), SL_EINVAL);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "metadata_length");
    job.metadata_length = 1;
    char *text = NULL;
    CHECK(sl_lane_submit_wait(lane, &job, &text));
    EXPECT_STREQ(text, "");
    sl_free(text);

    sl_runtime_close(rt);
    return 0;
}
