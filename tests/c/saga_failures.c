/* How sagas end other than by sl_action_done, each with exactly one SagaFailed and the
   reason the header gives: sl_step_fail (from another thread and from the target itself),
   a target returning non-zero, an unknown target, sl_action_fail (with a reason and NULL),
   and create refusing the input. Also the "self" target and interests. */
#include "check.h"

static sl_runtime *rt;

static int held_commands;

/* The command says what the host does with it. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata;
    if (strstr(command, "\"do\":\"refuse\"")) return SL_EREFUSED;
    if (strstr(command, "\"do\":\"fail_here\"")) return sl_step_fail(rt, saga_id, step, "disk on fire");
    mon_lock();
    held_commands++;
    mon_unlock_signal();
    return 0; /* "hold": the test answers */
}

/* The input names the first command's target and body. */
struct plan {
    char target[32];
    char command[64];
};
static int plan_create(void *userdata, const char *input, void **state) {
    (void)userdata;
    if (strstr(input, "\"refuse\":true")) return 1;
    struct plan *plan = calloc(1, sizeof *plan);
    if (!plan) return SL_ENOMEM;
    const char *t = strstr(input, "\"target\":\"");
    const char *c = strstr(input, "\"do\":\"");
    if (t) sscanf(t + 10, "%31[^\"]", plan->target);
    if (c) snprintf(plan->command, sizeof plan->command, "{\"do\":\"%.*s\"}", (int)strcspn(c + 6, "\""), c + 6);
    *state = plan;
    return 0;
}
static void plan_destroy(void *userdata, void *state) {
    (void)userdata;
    free(state);
}
static void plan_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    struct plan *plan = state;
    (void)userdata, (void)ctx;
    if (strcmp(plan->target, "fail") == 0) {
        CHECK(sl_action_fail(action, "because"));
    } else if (strcmp(plan->target, "fail_null") == 0) {
        CHECK(sl_action_fail(action, NULL));
    } else if (strcmp(plan->target, "self") == 0) {
        CHECK(sl_action_issue(action, "self", "{\"type\":\"Ping\",\"n\":1}"));
    } else {
        CHECK(sl_action_issue(action, plan->target, plan->command));
    }
}
static void plan_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                          sl_action *action) {
    (void)userdata, (void)state;
    if (strcmp(event->type, "Ping") == 0) {
        EXPECT_EQ_INT(event->saga_id, ctx->saga_id);
        EXPECT_CONTAINS(event->payload_json, "\"n\":1");
        CHECK(sl_action_done(action));
    } else if (strcmp(event->type, "Tick") == 0) {
        EXPECT_EQ_INT(event->saga_id, 0); /* an interest: untagged */
        CHECK(sl_action_done(action));
    } else if (strcmp(event->type, "Answer") == 0) {
        CHECK(sl_action_done(action));
    }
}

static int creates;
static int counting_refuse(void *userdata, const char *input, void **state) {
    (void)userdata, (void)input, (void)state;
    mon_lock();
    creates++;
    mon_unlock_signal();
    return -1;
}

static recorder rec;

static uint64_t start_plan(const char *input) {
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "plan", input, &id));
    EXPECT(id != 0);
    return id;
}

/* Waits for the saga's end and checks it is `type` with `reason_part` in the payload. */
static void expect_end(uint64_t id, const char *type, const char *reason_part) {
    char *end = rec_wait_terminal(&rec, id);
    EXPECT_CONTAINS(end, type);
    if (reason_part) EXPECT_CONTAINS(end, reason_part);
    EXPECT_CONTAINS(end, "\"name\":\"plan\"");
    free(end);
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "plan";
    type.create = plan_create;
    type.destroy = plan_destroy;
    type.start = plan_start;
    type.on_event = plan_on_event;
    const char *interests[] = {"Tick"};
    type.interests = interests;
    type.interest_count = 1;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    sl_saga_type refusing;
    sl_saga_type_init(&refusing);
    refusing.name = "refusing";
    refusing.create = counting_refuse;
    refusing.start = test_wait_start;
    refusing.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &refusing, NULL));
    CHECK(sl_trigger_add(rt, "StartRefusing", "refusing", NULL, NULL, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    /* sl_step_fail from this thread, once the command is out. */
    uint64_t held = start_plan("{\"target\":\"host\",\"do\":\"hold\"}");
    WAIT_FOR(held_commands == 1);
    char *json = NULL;
    CHECK(sl_log_saga(rt, held, &json)); /* the step row is durable before dispatch */
    EXPECT_CONTAINS(json, "\"state\":\"pending\"");
    sl_free(json);
    CHECK(sl_step_fail(rt, held, 0, "out of windows"));
    expect_end(held, SL_EVENT_SAGA_FAILED, "\"reason\":\"action failed: out of windows\"");
    mon_lock();
    const rec_event *action_failed = rec_find_locked(&rec, SL_EVENT_SAGA_ACTION_FAILED, held);
    EXPECT(action_failed != NULL);
    EXPECT_CONTAINS(action_failed->payload, "\"reason\":\"out of windows\"");
    EXPECT_CONTAINS(action_failed->payload, "\"step\":0");
    mon_unlock();
    CHECK(sl_log_saga(rt, held, &json));
    EXPECT_CONTAINS(json, "\"state\":\"failed\"");
    EXPECT_CONTAINS(json, "out of windows");
    sl_free(json);
    /* A late answer and a second failure change nothing. */
    CHECK(sl_publish(rt, "Answer", held, NULL));
    CHECK(sl_step_fail(rt, held, 0, "again"));

    /* sl_step_fail from inside the target, on the loop thread. */
    uint64_t here = start_plan("{\"target\":\"host\",\"do\":\"fail_here\"}");
    expect_end(here, SL_EVENT_SAGA_FAILED, "action failed: disk on fire");

    /* A target that returns non-zero. */
    uint64_t refused = start_plan("{\"target\":\"host\",\"do\":\"refuse\"}");
    expect_end(refused, SL_EVENT_SAGA_FAILED, "refused");

    /* A target nobody registered. */
    uint64_t unknown = start_plan("{\"target\":\"nowhere\",\"do\":\"x\"}");
    expect_end(unknown, SL_EVENT_SAGA_FAILED, "nowhere");

    /* sl_action_fail. */
    uint64_t failed = start_plan("{\"target\":\"fail\"}");
    expect_end(failed, SL_EVENT_SAGA_FAILED, "\"reason\":\"because\"");
    uint64_t failed_null = start_plan("{\"target\":\"fail_null\"}");
    expect_end(failed_null, SL_EVENT_SAGA_FAILED, "\"reason\":\"failed\"");

    /* create refusing the input: no id, no saga. */
    uint64_t none = 12345;
    EXPECT_RC(sl_saga_start(rt, "plan", "{\"refuse\":true}", &none), SL_EREFUSED);
    EXPECT_ERRMSG(rt);
    EXPECT_EQ_INT(none, 12345);
    /* ... and from a trigger: create is asked, nothing starts. */
    CHECK(sl_publish(rt, "StartRefusing", 0, "{}"));
    WAIT_FOR(creates == 1);

    /* The "self" target: the command comes back as an event of its "type", tagged. */
    uint64_t self = start_plan("{\"target\":\"self\"}");
    expect_end(self, SL_EVENT_SAGA_COMPLETED, NULL);

    /* Interests: an untagged Tick reaches a waiting saga; a Tock does not. */
    uint64_t waiting = start_plan("{\"target\":\"host\",\"do\":\"hold\"}");
    WAIT_FOR(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, waiting) == 1);
    CHECK(sl_publish(rt, "Tock", 0, NULL));
    CHECK(sl_publish(rt, "Tick", 0, NULL));
    expect_end(waiting, SL_EVENT_SAGA_COMPLETED, NULL);

    /* Exactly one terminal event each, and no saga from the refused inputs. */
    uint64_t all[] = {held, here, refused, unknown, failed, failed_null, self, waiting};
    mon_lock();
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) EXPECT_EQ_INT(rec_terminals_locked(&rec, all[i]), 1);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, 0), 8);
    mon_unlock();

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
