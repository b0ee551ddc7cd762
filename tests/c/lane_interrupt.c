/* sl_lane_interrupt gives up on a job: a queued one is cancelled (it never runs, done says
   cancelled), a running one sees sl_job_cancelled() and may stop (SL_ECANCELED: cancelled)
   or finish anyway; an sl_lane_submit_wait on the job returns SL_ECANCELED. Unknown ids:
   SL_ENOTFOUND. */
#include "check.h"

static sl_lane *lane;
static int gate_open, gate_running;
static int polite_running, stubborn_running, queued_ran;
static int outcomes[3], outcome_count;

static int gate(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    gate_running = 1;
    pthread_cond_broadcast(&mon_cond);
    WAIT_FOR_LOCKED(gate_open);
    gate_running = 0;
    mon_unlock_signal();
    return 0;
}
/* Stops once asked to. */
static int polite(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    mon_lock();
    polite_running = 1;
    mon_unlock_signal();
    while (!sl_job_cancelled(ctx)) sleep_ms(1);
    return SL_ECANCELED;
}
/* Sees the flag but finishes its work. */
static int stubborn(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    mon_lock();
    stubborn_running = 1;
    mon_unlock_signal();
    while (!sl_job_cancelled(ctx)) sleep_ms(1);
    return sl_job_set_result(ctx, "finished anyway");
}
static int never(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    queued_ran++;
    mon_unlock();
    return 0;
}
static void done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata;
    mon_lock();
    outcomes[outcome->state]++;
    outcome_count++;
    mon_unlock_signal();
}

static void submit(const char *id, sl_job_fn run) {
    sl_job job;
    sl_job_init(&job);
    job.id = id;
    job.run = run;
    job.done = done;
    CHECK(sl_lane_submit(lane, &job, NULL));
}
static int queued(void) {
    sl_lane_stats stats = {.size = sizeof stats};
    CHECK(sl_lane_get_stats(lane, &stats));
    return stats.queued;
}

struct waiter {
    const char *id;
    sl_job_fn run;
    int rc;
};
static void *wait_in_thread(void *arg) {
    struct waiter *w = arg;
    sl_job job;
    sl_job_init(&job);
    job.id = w->id;
    job.run = w->run;
    char *text = NULL;
    w->rc = sl_lane_submit_wait(lane, &job, &text);
    sl_free(text);
    return NULL;
}

int main(void) {
    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    CHECK(sl_runtime_start(rt));

    EXPECT_RC(sl_lane_interrupt(lane, "nobody"), SL_ENOTFOUND);
    EXPECT_ERRMSG(rt);
    EXPECT_RC(sl_lane_interrupt(NULL, "x"), SL_EINVAL);
    EXPECT_RC(sl_lane_interrupt(lane, NULL), SL_EINVAL);
    EXPECT_RC(sl_lane_interrupt(lane, "\xff"), SL_EUTF8);

    /* Queued: cancelled, never runs. */
    submit("gate", gate);
    WAIT_FOR(gate_running);
    submit("queued", never);
    CHECK(sl_lane_interrupt(lane, "queued"));
    WAIT_FOR(outcomes[SL_JOB_CANCELLED] == 1);
    EXPECT_RC(sl_lane_interrupt(lane, "queued"), SL_ENOTFOUND);
    /* A waiter on a queued job. */
    struct waiter w = {"waited-queued", never, 1};
    pthread_t thread;
    pthread_create(&thread, NULL, wait_in_thread, &w);
    POLL_UNTIL(queued() == 1);
    CHECK(sl_lane_interrupt(lane, "waited-queued"));
    pthread_join(thread, NULL);
    EXPECT_RC(w.rc, SL_ECANCELED);
    mon_lock();
    gate_open = 1;
    mon_unlock_signal();
    WAIT_FOR(outcomes[SL_JOB_FINISHED] == 1);

    /* Running: the flag goes up; the job decides. */
    submit("polite", polite);
    WAIT_FOR(polite_running);
    CHECK(sl_lane_interrupt(lane, "polite"));
    WAIT_FOR(outcomes[SL_JOB_CANCELLED] == 2);
    submit("stubborn", stubborn);
    WAIT_FOR(stubborn_running);
    CHECK(sl_lane_interrupt(lane, "stubborn"));
    WAIT_FOR(outcomes[SL_JOB_FINISHED] == 2);
    /* A waiter on a running job. */
    mon_lock();
    polite_running = 0;
    mon_unlock();
    struct waiter r = {"waited-running", polite, 1};
    pthread_create(&thread, NULL, wait_in_thread, &r);
    WAIT_FOR(polite_running);
    CHECK(sl_lane_interrupt(lane, "waited-running"));
    pthread_join(thread, NULL);
    EXPECT_RC(r.rc, SL_ECANCELED);

    EXPECT_EQ_INT(queued_ran, 0);
    EXPECT_EQ_INT(outcome_count, 4);
    sl_runtime_close(rt);
    EXPECT_RC(sl_lane_interrupt(lane, "polite"), SL_ECLOSED);
    return 0;
}
