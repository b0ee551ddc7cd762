/* Unknown names and ids (SL_ENOTFOUND) and names or ids already in use (SL_EEXIST). Names
   compare byte for byte: "caf\u00e9" (one scalar) and "cafe\u0301" (e plus a combining
   accent), canonically equivalent, are two names everywhere. */
#include "check.h"

static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    return 0;
}

/* A job that holds its lane until the test opens the gate. */
static int gate_open, gate_entered;
static int gate_job(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    mon_lock();
    gate_entered++;
    pthread_cond_broadcast(&mon_cond);
    WAIT_FOR_LOCKED(gate_open);
    mon_unlock();
    return 0;
}
static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}
static int dones;
static void job_done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata, (void)outcome;
    mon_lock();
    dones++;
    mon_unlock_signal();
}

/* Submits a gate job, the job "dup" behind it, and checks that a second "dup" is refused
   while the first is queued. */
static void duplicate_job_ids(sl_runtime *rt, sl_lane *lane) {
    sl_job job;
    sl_job_init(&job);
    job.run = gate_job;
    job.done = job_done;
    mon_lock();
    gate_open = 0;
    gate_entered = 0;
    dones = 0;
    mon_unlock();
    CHECK(sl_lane_submit(lane, &job, NULL));
    WAIT_FOR(gate_entered == 1);
    job.run = job_ok;
    job.id = "dup";
    CHECK(sl_lane_submit(lane, &job, NULL));
    EXPECT_RC(sl_lane_submit(lane, &job, NULL), SL_EEXIST);
    EXPECT_ERRMSG(rt);
    EXPECT_RC(sl_lane_submit_wait(lane, &job, NULL), SL_EEXIST);
    EXPECT_RC(sl_lane_cancel(lane, "no-such-job"), SL_ENOTFOUND);
    EXPECT_ERRMSG(rt);
    mon_lock();
    gate_open = 1;
    mon_unlock_signal();
    /* Two done calls: the refused submissions have none. */
    WAIT_FOR(dones == 2);
    EXPECT_RC(sl_lane_cancel(lane, "dup"), SL_ENOTFOUND); /* ended */
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "names.db");
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);

    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = test_wait_start;
    type.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    EXPECT_RC(sl_saga_type_register(rt, &type, NULL), SL_EEXIST);
    EXPECT_ERRMSG(rt);
    EXPECT_RC(sl_trigger_add(rt, "E", "no_such_type", NULL, NULL, NULL), SL_ENOTFOUND);
    EXPECT_ERRMSG(rt);
    CHECK(sl_trigger_add(rt, "E", "t", NULL, NULL, NULL));
    CHECK(sl_trigger_add(rt, "E", "t", NULL, NULL, NULL)); /* triggers have no name to clash */

    CHECK(sl_target_register(rt, "host", target, NULL, NULL));
    EXPECT_RC(sl_target_register(rt, "host", target, NULL, NULL), SL_EEXIST);
    /* "self" is built in. */
    EXPECT_RC(sl_target_register(rt, "self", target, NULL, NULL), SL_EEXIST);

    sl_lane *lane = NULL, *found = NULL;
    sl_lane_options memory_lane;
    sl_lane_options_init(&memory_lane);
    memory_lane.persisted = 0;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    EXPECT_RC(sl_lane_create(rt, "work", NULL, &found), SL_EEXIST);
    EXPECT_RC(sl_lane_create(rt, "work", &memory_lane, &found), SL_EEXIST);
    EXPECT_RC(sl_lane_find(rt, "nope", &found), SL_ENOTFOUND);
    EXPECT_ERRMSG(rt);
    CHECK(sl_lane_find(rt, "work", &found));
    EXPECT(found == lane);
    sl_lane *memory = NULL;
    CHECK(sl_lane_create(rt, "memory", &memory_lane, &memory));
    CHECK(sl_lane_find(rt, "memory", &found));
    EXPECT(found == memory);

    CHECK(sl_runtime_start(rt));
    EXPECT_RC(sl_saga_start(rt, "no_such_type", NULL, NULL), SL_ENOTFOUND);
    EXPECT_ERRMSG(rt);
    EXPECT_RC(sl_saga_cancel(rt, 424242, "r"), SL_ENOTFOUND);
    EXPECT_RC(sl_log_saga(rt, 424242, &(char *){NULL}), SL_ENOTFOUND);

    duplicate_job_ids(rt, lane);
    duplicate_job_ids(rt, memory);


    /* Ids are unique in the log too: a persisted lane refuses an id that already ended. */
    sl_job job;
    sl_job_init(&job);
    job.run = job_ok;
    job.id = "once";
    CHECK(sl_lane_submit_wait(lane, &job, NULL));
    EXPECT_RC(sl_lane_submit_wait(lane, &job, NULL), SL_EEXIST);

    /* Byte for byte: the composed and the decomposed spelling are different names. */
    const char *composed = "caf\xc3\xa9", *decomposed = "cafe\xcc\x81";
    type.name = composed;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    EXPECT_RC(sl_saga_start(rt, decomposed, NULL, NULL), SL_ENOTFOUND);
    type.name = decomposed;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, composed, target, NULL, NULL));
    CHECK(sl_target_register(rt, decomposed, target, NULL, NULL));
    sl_lane *composed_lane = NULL, *decomposed_lane = NULL;
    CHECK(sl_lane_create(rt, composed, &memory_lane, &composed_lane));
    CHECK(sl_lane_create(rt, decomposed, &memory_lane, &decomposed_lane));
    EXPECT(composed_lane != decomposed_lane);
    CHECK(sl_lane_find(rt, decomposed, &found));
    EXPECT(found == decomposed_lane);
    job.id = composed;
    CHECK(sl_lane_submit_wait(memory, &job, NULL));
    job.id = decomposed;
    CHECK(sl_lane_submit_wait(memory, &job, NULL));
    job.id = NULL;

    sl_runtime_close(rt);
    return 0;
}
