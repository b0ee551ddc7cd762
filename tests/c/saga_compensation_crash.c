/* A C saga type with compensations (sl_action_issue_ex) and SL_RECOVERY_RESUME, in a process
   killed with SIGKILL while its second step is out: the next start rebuilds it through
   `create` from the stored input, replays its first step's result, dispatches the second step
   again under the same saga id and step, and completes; the idempotency key of its start
   still answers its id; a lifecycle subscriber from position 0 gets every event once, in
   order, the dead process's included. Then a saga whose compensation fails ends
   failed_compensation, and an operator's sl_saga_retry_compensation runs it again to
   compensated. */
#include "check.h"

static sl_runtime *rt;
static int fail_release;  /* the parent fails the first "release" compensation */
static int hold_charges;  /* the child never answers a charge that says "hold" */

typedef struct {
    uint64_t saga_id;
    uint32_t step;
    char command[256];
} dispatch;
static dispatch sent[32];
static int sent_count;

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata;
    mon_lock();
    if (sent_count < 32) {
        sent[sent_count].saga_id = saga_id;
        sent[sent_count].step = step;
        snprintf(sent[sent_count].command, sizeof sent[sent_count].command, "%s", command);
        sent_count++;
    }
    mon_unlock_signal();
    char payload[64];
    snprintf(payload, sizeof payload, "{\"step\":%u}", step);
    if (hold_charges && strstr(command, "\"hold\":true")) return 0;
    if (strstr(command, "\"cmd\":\"release\"") && fail_release) {
        fail_release = 0;
        return sl_step_fail(rt, saga_id, step, "the stock service is down");
    }
    if (strstr(command, "\"cmd\":\"charge\"") && strstr(command, "\"decline\":true")) return sl_publish(rt, "No", saga_id, payload);
    return sl_publish(rt, "Ok", saga_id, payload);
}

/* The state is the input: {"hold": bool, "decline": bool}, copied into the charge command. */
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    /* The step in the JSON form declarative sagas use. */
    CHECK(sl_action_issue_step(action, "{\"target\":\"host\",\"command\":{\"cmd\":\"reserve\"},"
                                       "\"compensation\":{\"command\":{\"cmd\":\"release\"}}}"));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata;
    if (strcmp(event->type, "No") == 0) {
        CHECK(sl_action_fail(action, "the card was declined"));
    } else if (strcmp(event->type, "Ok") == 0 && ctx->next_step == 1) {
        const char *input = state;
        char command[128];
        snprintf(command, sizeof command, "{\"cmd\":\"charge\",\"hold\":%s,\"decline\":%s}",
                 strstr(input, "\"hold\":true") ? "true" : "false", strstr(input, "\"decline\":true") ? "true" : "false");
        sl_step_options options;
        sl_step_options_init(&options);
        options.compensation_json = "{\"cmd\":\"refund\"}";
        CHECK(sl_action_issue_ex(action, "host", command, &options));
    } else if (strcmp(event->type, "Ok") == 0) {
        CHECK(sl_action_done(action));
    }
}

static void open_and_register(const char *path) {
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "pay";
    type.create = test_input_state;
    type.destroy = test_free_state;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 600000;
    type.recovery = SL_RECOVERY_RESUME;
    type.compensation_timeout_ms = 30000;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
}

static uint64_t start_keyed(const char *input, const char *key) {
    sl_saga_start_options options;
    sl_saga_start_options_init(&options);
    options.idempotency_key = key;
    uint64_t id = 0;
    CHECK(sl_saga_start_ex(rt, "pay", input, &options, &id));
    return id;
}

static void child(const char *path, int ready_fd) {
    hold_charges = 1;
    open_and_register(path);
    CHECK(sl_runtime_start(rt));
    uint64_t id = start_keyed("{\"hold\":true}", "order-1");
    WAIT_FOR(sent_count == 2); /* the charge's step row is durable before it goes out */
    if (write(ready_fd, &id, sizeof id) != (ssize_t)sizeof id) _exit(2);
    for (;;) pause();
}

/* What the lifecycle subscriber got. */
static char stream[64][48];
static uint64_t positions[64];
static int stream_count;
static void on_lifecycle(void *userdata, const sl_lifecycle_event *event) {
    (void)userdata;
    mon_lock();
    if (stream_count < 64) {
        positions[stream_count] = event->position;
        snprintf(stream[stream_count], sizeof stream[0], "%s %llu", event->type, (unsigned long long)event->saga_id);
        stream_count++;
    }
    mon_unlock_signal();
}

static int wait_state(uint64_t id) {
    int state = -1;
    char *reason = NULL;
    CHECK(sl_saga_wait(rt, id, 20000, &state, &reason));
    sl_free(reason);
    return state;
}

int main(int argc, char **argv) {
    RUN_READY_CHILD(argc, argv, child);
    char path[512];
    scratch_path(path, sizeof path, "saga_compensation_crash.db");
    uint64_t id = 0;
    kill9(spawn_ready_child(path, &id, sizeof id));

    open_and_register(path);
    sl_subscription *sub = NULL;
    CHECK(sl_lifecycle_subscribe(rt, 0, on_lifecycle, NULL, &sub));
    CHECK(sl_runtime_start(rt));
    EXPECT_EQ_INT(wait_state(id), SL_SAGA_COMPLETED);
    mon_lock();
    /* Only the charge went out again: the reserve was replayed from the log. */
    EXPECT_EQ_INT(sent_count, 1);
    EXPECT(sent[0].saga_id == id && sent[0].step == 1);
    EXPECT_CONTAINS(sent[0].command, "\"cmd\":\"charge\"");
    char part[96];
    snprintf(part, sizeof part, "\"saga_id\":%llu,\"step\":1", (unsigned long long)id);
    EXPECT_CONTAINS(sent[0].command, part);
    mon_unlock();

    char *json = NULL;
    CHECK(sl_log_saga(rt, id, &json));
    EXPECT_CONTAINS(json, "\"idempotency_key\":\"order-1\"");
    EXPECT_CONTAINS(json, "\"attempts\":2,");
    EXPECT_CONTAINS(json, "\"spec\":{\"compensation\":{\"command\":{\"cmd\":\"refund\"}}}");
    sl_free(json);
    /* The key still names the saga: nothing new starts. */
    EXPECT(start_keyed("{}", "order-1") == id);

    /* Every event once, in order, from the first: the dead process's too. */
    WAIT_FOR(stream_count >= 3);
    mon_lock();
    EXPECT_EQ_INT(stream_count, 3);
    for (int i = 0; i < stream_count; i++) EXPECT(positions[i] == (uint64_t)i + 1);
    char expected[48];
    snprintf(expected, sizeof expected, "SagaStarted %llu", (unsigned long long)id);
    EXPECT_STREQ(stream[0], expected);
    snprintf(expected, sizeof expected, "SagaResumed %llu", (unsigned long long)id);
    EXPECT_STREQ(stream[1], expected);
    snprintf(expected, sizeof expected, "SagaCompleted %llu", (unsigned long long)id);
    EXPECT_STREQ(stream[2], expected);
    sent_count = 0;
    mon_unlock();
    uint64_t position = 0;
    CHECK(sl_lifecycle_position(rt, &position));
    EXPECT(position == 3);

    /* A declined charge: the reserve is undone, but its compensation fails. */
    fail_release = 1;
    uint64_t declined = start_keyed("{\"decline\":true}", "order-2");
    EXPECT_EQ_INT(wait_state(declined), SL_SAGA_FAILED_COMPENSATION);
    CHECK(sl_log_saga(rt, declined, &json));
    EXPECT_CONTAINS(json, "\"failure_reason\":\"the card was declined; the compensation of step 0 failed: action failed: the stock service is down\"");
    EXPECT_CONTAINS(json, "\"compensates\":0");
    sl_free(json);
    /* Refused while it is not waiting for an operator; then run again. */
    EXPECT_RC(sl_saga_retry_compensation(rt, id, NULL), SL_ESTATE);
    CHECK(sl_saga_retry_compensation(rt, declined, "the stock service is back"));
    EXPECT_EQ_INT(wait_state(declined), SL_SAGA_COMPENSATED);
    mon_lock();
    int releases = 0;
    for (int i = 0; i < sent_count; i++) releases += strstr(sent[i].command, "\"cmd\":\"release\"") != NULL;
    EXPECT_EQ_INT(releases, 2);
    mon_unlock();
    CHECK(sl_log_saga(rt, declined, &json));
    EXPECT_CONTAINS(json, "\"state\":\"compensated\"");
    EXPECT_CONTAINS(json, "\"note\":\"the stock service is back\"");
    sl_free(json);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    return 0;
}
