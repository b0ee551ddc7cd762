/* A child forked (without exec) from a process whose sagalane threads are busy may call
   nothing of sagalane: the parent's threads are gone and the locks they held stay held, so a
   call could wait forever. Every call in such a child fails at once with SL_EFORKED; the
   plain-C lookups still answer. 150 children, forked while the parent runs sagas and jobs on
   all its threads; each must finish within seconds. */
#include "check.h"

#include <time.h>

static sl_runtime *rt;
static volatile int stop;

static int echo_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step, (void)command;
    return sl_publish(rt, "Echo", saga_id, "{\"k\":[1,2,3]}");
}

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_issue(action, "echo", "{\"cmd\":\"x\"}"));
}

static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx, (void)event;
    CHECK(sl_action_done(action));
}

static int job_run(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    return sl_job_set_result(ctx, "{\"ok\":true}");
}

/* Keeps sagas and jobs going, so the parent's threads take their locks all the time. */
static void *driver(void *arg) {
    sl_lane *lane = arg;
    while (!stop) {
        uint64_t id = 0;
        sl_saga_start(rt, "t", "{\"n\":1}", &id);
        sl_job job;
        sl_job_init(&job);
        job.run = job_run;
        sl_lane_submit(lane, &job, NULL);
    }
    return NULL;
}

/* In the child: everything refuses at once, nothing hangs. */
static void child(void) {
    sl_runtime *mine = (sl_runtime *)1;
    if (sl_runtime_open(NULL, &mine) != SL_EFORKED || mine != NULL) _exit(10);
    if (sl_saga_start(rt, "t", NULL, NULL) != SL_EFORKED) _exit(11);
    if (sl_publish(rt, "X", 0, NULL) != SL_EFORKED) _exit(12);
    if (strcmp(sl_runtime_errmsg(rt), sl_strerror(SL_EFORKED)) != 0) _exit(13);
    if (strcmp(sl_err_name(SL_EFORKED), "SL_EFORKED") != 0) _exit(14);
    sl_runtime_close(rt); /* does nothing */
    _exit(0);
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = start;
    type.on_event = on_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "echo", echo_target, NULL, NULL));
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.persisted = 0;
    options.max_concurrent = 4;
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", &options, &lane));
    CHECK(sl_runtime_start(rt));
    pthread_t drivers[2];
    for (int i = 0; i < 2; i++) EXPECT(pthread_create(&drivers[i], NULL, driver, lane) == 0);

    for (int i = 0; i < 150; i++) {
        pid_t pid = fork();
        EXPECT(pid >= 0);
        if (pid == 0) child();
        int status = 0;
        int64_t give_up = wall_ms() + 10000;
        pid_t done = 0;
        while ((done = waitpid(pid, &status, WNOHANG)) == 0 && wall_ms() < give_up) sleep_ms(1);
        if (done == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            check_fail_(__FILE__, __LINE__, "child %d hung in a sagalane call", i);
        }
        EXPECT(WIFEXITED(status));
        EXPECT_EQ_INT(WEXITSTATUS(status), 0);
    }

    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(drivers[i], NULL);
    sl_runtime_close(rt);
    return 0;
}
