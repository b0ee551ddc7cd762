/* Every pointer argument the header requires, passed as NULL: SL_EINVAL (NULL handles too),
   with a message in sl_runtime_errmsg(); the optional ones (NULL documented as allowed)
   work. Close and free functions accept NULL. */
#include "check.h"

static void on_event(void *userdata, const sl_event *event) { (void)userdata, (void)event; }
static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    return 0;
}
static int job_ok(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}

/* The job context's accessors with a NULL context, seen from inside a job (any thread). */
static int job_probe(void *userdata, sl_job_ctx *ctx) {
    int *failures = userdata;
    size_t length = 123;
    if (sl_job_id(NULL) != NULL) (*failures)++;
    if (sl_job_metadata(NULL, &length) != NULL) (*failures)++;
    if (sl_job_attempt(NULL) >= 1) (*failures)++;
    if (sl_job_set_result(NULL, "x") != SL_EINVAL) (*failures)++;
    if (sl_job_set_result(ctx, NULL) != SL_EINVAL) (*failures)++;
    /* length may be NULL when the caller does not want it; metadata is "" here. */
    const char *metadata = sl_job_metadata(ctx, NULL);
    if (metadata == NULL || metadata[0] != '\0') (*failures)++;
    if (sl_job_metadata(ctx, &length) == NULL || length != 0) (*failures)++;
    return 0;
}

/* A call on a NULL handle, or with a NULL required pointer: SL_EINVAL and a message. */
#define EXPECT_NULL_ARG(rt, call)                                                                   \
    do {                                                                                           \
        check_rt = (rt);                                                                           \
        EXPECT_RC(call, SL_EINVAL);                                                                \
        EXPECT_ERRMSG(rt);                                                                         \
    } while (0)

int main(void) {
    /* The *_init functions and the close/free functions with NULL do nothing. */
    sl_runtime_options_init(NULL);
    sl_saga_type_init(NULL);
    sl_job_init(NULL);
    sl_lane_options_init(NULL);
    sl_runtime_close(NULL);
    sl_unsubscribe(NULL);
    sl_free(NULL);

    /* Opening: out is required, options is not. */
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    EXPECT_NULL_ARG(NULL, sl_runtime_open(&options, NULL));
    EXPECT_NULL_ARG(NULL, sl_runtime_open(NULL, NULL));
    sl_runtime *rt = NULL;
    CHECK(sl_runtime_open(NULL, &rt));
    EXPECT(rt != NULL);
    check_rt = rt;

    /* Runtime calls on a NULL runtime. */
    EXPECT_NULL_ARG(NULL, sl_runtime_start(NULL));
    EXPECT_NULL_ARG(NULL, sl_runtime_run(NULL, SL_RUN_NOWAIT));
    EXPECT_NULL_ARG(NULL, sl_runtime_stop(NULL));
    EXPECT_NULL_ARG(NULL, sl_runtime_backend_fd(NULL));
    EXPECT_NULL_ARG(NULL, sl_runtime_backend_timeout(NULL));
    EXPECT_NULL_ARG(NULL, sl_runtime_advance_time(NULL, 1));
    EXPECT_NULL_ARG(NULL, sl_runtime_health(NULL));
    EXPECT_NULL_ARG(NULL, sl_publish(NULL, "E", 0, NULL));
    EXPECT_NULL_ARG(NULL, sl_subscribe(NULL, 0, on_event, NULL, &(sl_subscription *){NULL}));
    EXPECT_NULL_ARG(NULL, sl_saga_start(NULL, "t", NULL, NULL));
    EXPECT_NULL_ARG(NULL, sl_saga_cancel(NULL, 1, "r"));
    EXPECT_NULL_ARG(NULL, sl_step_fail(NULL, 1, 0, "r"));
    EXPECT_NULL_ARG(NULL, sl_target_register(NULL, "host", target, NULL, NULL));
    EXPECT_NULL_ARG(NULL, sl_trigger_add(NULL, "E", "t", NULL, NULL, NULL));
    EXPECT_NULL_ARG(NULL, sl_lane_create(NULL, "l", NULL, &(sl_lane *){NULL}));
    EXPECT_NULL_ARG(NULL, sl_lane_find(NULL, "l", &(sl_lane *){NULL}));
    EXPECT_NULL_ARG(NULL, sl_log_recent(NULL, 1, &(char *){NULL}));
    EXPECT_NULL_ARG(NULL, sl_log_unresolved(NULL, &(char *){NULL}));
    EXPECT_NULL_ARG(NULL, sl_log_saga(NULL, 1, &(char *){NULL}));
    EXPECT_NULL_ARG(NULL, sl_log_vacuum(NULL, 0, NULL));
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = test_wait_start;
    type.on_event = test_wait_event;
    EXPECT_NULL_ARG(NULL, sl_saga_type_register(NULL, &type, NULL));
    EXPECT_NULL_ARG(NULL, sl_action_issue(NULL, "host", "{}"));
    EXPECT_NULL_ARG(NULL, sl_action_done(NULL));
    EXPECT_NULL_ARG(NULL, sl_action_fail(NULL, "r"));

    /* Required pointers on a live runtime. */
    EXPECT_NULL_ARG(rt, sl_saga_type_register(rt, NULL, NULL));
    type.name = NULL;
    EXPECT_NULL_ARG(rt, sl_saga_type_register(rt, &type, NULL));
    type.name = "t";
    type.create = NULL;
    EXPECT_NULL_ARG(rt, sl_saga_type_register(rt, &type, NULL));
    type.create = test_no_state;
    type.start = NULL;
    EXPECT_NULL_ARG(rt, sl_saga_type_register(rt, &type, NULL));
    type.start = test_wait_start;
    type.on_event = NULL;
    EXPECT_NULL_ARG(rt, sl_saga_type_register(rt, &type, NULL));
    type.on_event = test_wait_event;
    type.interest_count = 1; /* and interests NULL */
    EXPECT_NULL_ARG(rt, sl_saga_type_register(rt, &type, NULL));
    const char *interests[] = {"A", NULL};
    type.interests = interests;
    type.interest_count = 2;
    EXPECT_NULL_ARG(rt, sl_saga_type_register(rt, &type, NULL));
    type.interest_count = 1;
    CHECK(sl_saga_type_register(rt, &type, NULL)); /* nothing above registered it */

    EXPECT_NULL_ARG(rt, sl_trigger_add(rt, NULL, "t", NULL, NULL, NULL));
    EXPECT_NULL_ARG(rt, sl_trigger_add(rt, "E", NULL, NULL, NULL, NULL));
    CHECK(sl_trigger_add(rt, "E", "t", NULL, NULL, NULL)); /* predicate and release may be NULL */
    EXPECT_NULL_ARG(rt, sl_target_register(rt, NULL, target, NULL, NULL));
    EXPECT_NULL_ARG(rt, sl_target_register(rt, "host", NULL, NULL, NULL));
    CHECK(sl_target_register(rt, "host", target, NULL, NULL));
    EXPECT_NULL_ARG(rt, sl_subscribe(rt, 0, NULL, NULL, &(sl_subscription *){NULL}));
    EXPECT_NULL_ARG(rt, sl_subscribe(rt, 0, on_event, NULL, NULL));
    EXPECT_NULL_ARG(rt, sl_publish(rt, NULL, 0, "{}"));

    EXPECT_NULL_ARG(rt, sl_lane_create(rt, NULL, NULL, &(sl_lane *){NULL}));
    EXPECT_NULL_ARG(rt, sl_lane_create(rt, "work", NULL, NULL));
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane)); /* options may be NULL */
    EXPECT_NULL_ARG(rt, sl_lane_find(rt, NULL, &(sl_lane *){NULL}));
    EXPECT_NULL_ARG(rt, sl_lane_find(rt, "work", NULL));

    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    EXPECT_NULL_ARG(rt, sl_saga_start(rt, NULL, "{}", NULL));
    uint64_t saga_id = 0;
    CHECK(sl_saga_start(rt, "t", NULL, NULL)); /* input and saga_id may be NULL */
    CHECK(sl_saga_start(rt, "t", NULL, &saga_id));
    EXPECT(saga_id != 0);
    WAIT_FOR(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, saga_id) == 1);
    CHECK(sl_saga_cancel(rt, saga_id, NULL)); /* reason NULL (the header does not say; accepted) */
    char *end = rec_wait_terminal(&rec, saga_id);
    EXPECT_CONTAINS(end, "SagaFailed");
    EXPECT_CONTAINS(end, "cancelled: ");
    free(end);
    CHECK(sl_publish(rt, "E2", 0, NULL));     /* payload NULL is null */

    EXPECT_NULL_ARG(rt, sl_log_recent(rt, 5, NULL));
    EXPECT_NULL_ARG(rt, sl_log_unresolved(rt, NULL));
    EXPECT_NULL_ARG(rt, sl_log_saga(rt, saga_id, NULL));
    CHECK(sl_log_vacuum(rt, 60000, NULL)); /* deleted may be NULL */

    /* Lanes. */
    sl_job job;
    sl_job_init(&job);
    job.run = job_ok;
    sl_lane_stats stats = {.size = sizeof stats};
    EXPECT_NULL_ARG(rt, sl_lane_submit(NULL, &job, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_submit_wait(NULL, &job, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_cancel(NULL, "j"));
    EXPECT_NULL_ARG(rt, sl_lane_set_max_concurrent(NULL, 2));
    EXPECT_NULL_ARG(rt, sl_lane_get_stats(NULL, &stats));
    EXPECT_NULL_ARG(rt, sl_lane_set_command_handler(NULL, job_ok, NULL, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_submit(lane, NULL, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_submit_wait(lane, NULL, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_cancel(lane, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_get_stats(lane, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_set_command_handler(lane, NULL, NULL, NULL));
    job.run = NULL;
    EXPECT_NULL_ARG(rt, sl_lane_submit(lane, &job, NULL));
    EXPECT_NULL_ARG(rt, sl_lane_submit_wait(lane, &job, NULL));
    job.run = job_ok;
    job.metadata_length = 4; /* and metadata NULL */
    EXPECT_NULL_ARG(rt, sl_lane_submit(lane, &job, NULL));
    job.metadata_length = 0;
    CHECK(sl_lane_submit(lane, &job, NULL)); /* out may be NULL */
    CHECK(sl_lane_submit_wait(lane, &job, NULL)); /* text may be NULL */

    int failures = 0;
    job.run = job_probe;
    job.userdata = &failures;
    CHECK(sl_lane_submit_wait(lane, &job, NULL));
    EXPECT_EQ_INT(failures, 0);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
