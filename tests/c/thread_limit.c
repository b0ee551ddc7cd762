/* A host at its thread limit (RLIMIT_NPROC, as a container's pids limit would set it): every
   call that needs a new thread fails with SL_ETHREAD and a message naming the thread, and
   nothing else breaks. A runtime opened earlier keeps running sagas' lanes with the workers
   it has; a lane raised past them says so and starts the missing workers once threads can be
   had again, at the next queued job; a start that failed can be retried.

   The limit is real: root is exempt from RLIMIT_NPROC, so as root the test first becomes an
   unprivileged user. The soft limit goes down to 1 and back up to the hard limit. */
#define _DEFAULT_SOURCE /* setgroups */
#include "check.h"

#include <grp.h>
#include <sys/resource.h>

static struct rlimit saved;

static void threads_refused(int refused) {
    struct rlimit limit = saved;
    if (refused) limit.rlim_cur = 1;
    EXPECT(setrlimit(RLIMIT_NPROC, &limit) == 0);
}

/* Holds its worker until `want` jobs hold theirs: proof that that many workers exist. */
static int together;
static int want;
static int meet(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    together++;
    pthread_cond_broadcast(&mon_cond);
    WAIT_FOR_LOCKED(together >= want);
    mon_unlock_signal();
    return 0;
}
static int quick(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    return sl_job_set_result(ctx, "done");
}

static void ignore_event(void *userdata, const sl_event *event) { (void)userdata, (void)event; }

static void run_quick(sl_lane *lane) {
    sl_job job;
    sl_job_init(&job);
    job.run = quick;
    char *text = NULL;
    CHECK(sl_lane_submit_wait(lane, &job, &text));
    EXPECT_STREQ(text, "done");
    sl_free(text);
}

static void run_together(sl_lane *lane, int n) {
    mon_lock();
    together = 0;
    want = n;
    mon_unlock();
    for (int i = 0; i < n; i++) {
        sl_job job;
        sl_job_init(&job);
        job.run = meet;
        CHECK(sl_lane_submit(lane, &job, NULL));
    }
    WAIT_FOR(together == n);
}

static void *nothing(void *arg) { return arg; }

/* Exit status that ctest reports as "skipped" (SKIP_RETURN_CODE). */
#define SKIPPED 77

int main(void) {
    if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) {
        printf("skipped: cannot become an unprivileged user (%s)\n", strerror(errno));
        return SKIPPED;
    }
    EXPECT(getrlimit(RLIMIT_NPROC, &saved) == 0);
    if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < 64) {
        printf("skipped: the hard RLIMIT_NPROC (%lu) is too low to run the test\n", (unsigned long)saved.rlim_max);
        return SKIPPED;
    }
    /* Some sandboxes do not enforce the limit (a capability kept): nothing to test there. */
    threads_refused(1);
    pthread_t probe;
    int probe_rc = pthread_create(&probe, NULL, nothing, NULL);
    threads_refused(0);
    if (probe_rc == 0) {
        pthread_join(probe, NULL);
        printf("skipped: RLIMIT_NPROC is not enforced for this process\n");
        return SKIPPED;
    }

    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.persisted = 0;
    options.max_concurrent = 2;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", &options, &lane));
    CHECK(sl_runtime_start(rt));
    sl_runtime *later = open_runtime(NULL, SL_CLOCK_SYSTEM);

    threads_refused(1);

    /* Whatever needs a new thread fails cleanly and says which thread. */
    sl_subscription *sub = NULL;
    EXPECT_RC(sl_subscribe(rt, 0, NULL, NULL, &sub), SL_EINVAL); /* arguments are checked first */
    EXPECT_RC(sl_subscribe(rt, 0, ignore_event, NULL, &sub), SL_ETHREAD);
    EXPECT(sub == NULL);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "sagalane-delivery");
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "thread limit");
    sl_lane *starved = NULL;
    EXPECT_RC(sl_lane_create(rt, "starved", &options, &starved), SL_ETHREAD);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "lane 'starved'");
    EXPECT_RC(sl_runtime_start(later), SL_ETHREAD);
    EXPECT_CONTAINS(sl_runtime_errmsg(later), "sagalane-loop");
    sl_runtime *refused = NULL;
    sl_runtime_options open_options;
    sl_runtime_options_init(&open_options);
    EXPECT_RC(sl_runtime_open(&open_options, &refused), SL_ETHREAD);
    EXPECT_CONTAINS(sl_runtime_errmsg(refused), "cannot start thread");
    sl_runtime_close(refused);

    /* The running runtime goes on with the threads it has. Raising the lane's bound cannot
       start workers now: the lane keeps its two (and says so on standard error). */
    run_quick(lane);
    CHECK(sl_lane_set_max_concurrent(lane, 4));
    run_together(lane, 2);
    sl_lane_stats stats;
    stats.size = sizeof stats;
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.max_concurrent, 4);
    for (int i = 0; stats.running > 0 && i < 2000; i++) {
        sleep_ms(1);
        CHECK(sl_lane_get_stats(lane, &stats));
    }
    EXPECT_EQ_INT(stats.running, 0);

    threads_refused(0);

    /* Threads can be had again: the next queued jobs bring the lane up to four workers, and
       the calls that failed work. */
    run_together(lane, 4);
    CHECK(sl_subscribe(rt, 0, ignore_event, NULL, &sub));
    CHECK(sl_lane_create(rt, "starved", &options, &starved));
    run_quick(starved);
    CHECK(sl_runtime_start(later));
    sl_runtime_close(later);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    return 0;
}
