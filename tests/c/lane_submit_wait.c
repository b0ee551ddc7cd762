/* sl_lane_submit_wait: the result text (0), the error text (SL_EJOBFAILED), a job stopped
   with SL_ECANCELED, a queued job cancelled by another thread with sl_lane_cancel
   (SL_ECANCELED), and sl_runtime_close while one waits: the queued job ends cancelled and the
   running one sees sl_job_cancelled() and is waited for. */
#include "check.h"

static sl_lane *lane;
static int gate_open, gate_running, gate_saw_cancel;

/* Holds the lane until the gate opens or the job is cancelled. */
static int gate(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    mon_lock();
    gate_running = 1;
    pthread_cond_broadcast(&mon_cond);
    while (!gate_open) {
        if (sl_job_cancelled(ctx)) {
            gate_saw_cancel = 1;
            gate_running = 0;
            mon_unlock_signal();
            return SL_ECANCELED;
        }
        mon_unlock();
        sleep_ms(1);
        mon_lock();
    }
    gate_running = 0;
    mon_unlock_signal();
    return 0;
}
static int says(void *userdata, sl_job_ctx *ctx) {
    const char *text = userdata;
    if (text) CHECK(sl_job_set_result(ctx, text));
    return 0;
}
static int fails(void *userdata, sl_job_ctx *ctx) {
    const char *text = userdata;
    if (text) CHECK(sl_job_set_result(ctx, text));
    return 5;
}
static int gives_up(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return SL_ECANCELED;
}

static int run_wait(sl_job_fn run, void *userdata, const char *id, char **text) {
    sl_job job;
    sl_job_init(&job);
    job.id = id;
    job.run = run;
    job.userdata = userdata;
    return sl_lane_submit_wait(lane, &job, text);
}

struct waiter {
    const char *id;
    int rc;
    char *text;
};
static void *wait_in_thread(void *arg) {
    struct waiter *w = arg;
    w->text = NULL;
    w->rc = run_wait(says, "should not run", w->id, &w->text);
    return NULL;
}
static void start_gate(void) {
    sl_job job;
    sl_job_init(&job);
    job.run = gate;
    mon_lock();
    gate_open = 0;
    mon_unlock();
    CHECK(sl_lane_submit(lane, &job, NULL));
    WAIT_FOR(gate_running);
}
static int queued(void) {
    sl_lane_stats stats = {.size = sizeof stats};
    CHECK(sl_lane_get_stats(lane, &stats));
    return stats.queued;
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "lane_submit_wait.db");
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    CHECK(sl_runtime_start(rt));

    char *text = NULL;
    CHECK(run_wait(says, "{\"answer\":42}", NULL, &text));
    EXPECT_STREQ(text, "{\"answer\":42}");
    sl_free(text);
    text = NULL;
    CHECK(run_wait(says, NULL, "quiet", &text));
    EXPECT_STREQ(text, "");
    sl_free(text);

    text = NULL;
    EXPECT_RC(run_wait(fails, "disk full", NULL, &text), SL_EJOBFAILED);
    EXPECT_STREQ(text, "disk full");
    EXPECT_ERRMSG(rt);
    sl_free(text);
    text = NULL;
    EXPECT_RC(run_wait(fails, NULL, NULL, &text), SL_EJOBFAILED);
    EXPECT(text != NULL && text[0] != '\0'); /* something says it failed */
    sl_free(text);
    EXPECT_RC(run_wait(fails, "no text wanted", NULL, NULL), SL_EJOBFAILED);

    text = NULL;
    EXPECT_RC(run_wait(gives_up, NULL, NULL, &text), SL_ECANCELED);
    sl_free(text);

    /* Cancelled while queued, by another thread. */
    start_gate();
    struct waiter w = {.id = "cancel-me"};
    pthread_t thread;
    pthread_create(&thread, NULL, wait_in_thread, &w);
    POLL_UNTIL(queued() == 1);
    CHECK(sl_lane_cancel(lane, "cancel-me"));
    pthread_join(thread, NULL);
    EXPECT_RC(w.rc, SL_ECANCELED);
    sl_free(w.text);
    mon_lock();
    gate_open = 1;
    mon_unlock_signal();
    WAIT_FOR(!gate_running);

    /* The runtime closes while a job runs and another waits behind it. */
    start_gate();
    struct waiter at_close = {.id = "queued-at-close"};
    pthread_create(&thread, NULL, wait_in_thread, &at_close);
    POLL_UNTIL(queued() == 1);
    sl_runtime_close(rt);
    pthread_join(thread, NULL);
    EXPECT_RC(at_close.rc, SL_ECANCELED);
    sl_free(at_close.text);
    EXPECT(gate_saw_cancel);
    return 0;
}
