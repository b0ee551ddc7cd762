/* SL_LOOP_HOST: sl_runtime_run from a thread other than the one that called
   sl_runtime_start returns SL_ESTATE ("wrong thread"), in every mode, and the loop stays
   the starting thread's. */
#include "check.h"

static sl_runtime *rt;

static void *run_nowait(void *arg) {
    (void)arg;
    return (void *)(intptr_t)sl_runtime_run(rt, SL_RUN_NOWAIT);
}
static void *run_once(void *arg) {
    (void)arg;
    return (void *)(intptr_t)sl_runtime_run(rt, SL_RUN_ONCE);
}

static int call_on(void *(*body)(void *)) {
    pthread_t thread;
    void *rc = NULL;
    pthread_create(&thread, NULL, body, NULL);
    pthread_join(thread, &rc);
    return (int)(intptr_t)rc;
}

int main(void) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.loop_mode = SL_LOOP_HOST;
    CHECK(sl_runtime_open(&options, &rt));
    check_rt = rt;
    CHECK(sl_runtime_start(rt));
    CHECK(sl_runtime_run(rt, SL_RUN_NOWAIT));
    EXPECT_RC(call_on(run_nowait), SL_ESTATE);
    /* SL_RUN_ONCE would wait for events: the publish gives it one, should the check be missing. */
    CHECK(sl_publish(rt, "Wake", 0, NULL));
    EXPECT_RC(call_on(run_once), SL_ESTATE);
    CHECK(sl_runtime_run(rt, SL_RUN_NOWAIT));
    sl_runtime_close(rt);
    return 0;
}
