/* sl_saga_cancel from the host's thread, from a subscriber's delivery thread, and from the
   loop thread (inside a target and inside the saga's own on_event): each ends the saga with
   one SagaFailed "cancelled: <reason>"; a saga no longer in flight gives SL_ENOTFOUND. */
#include "check.h"

static sl_runtime *rt;
static recorder rec;
static int loop_rc = 1, loop_calls;

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    if (strstr(command, "\"cancel_in_target\":true")) {
        /* On the loop thread it takes effect at once. */
        int rc = sl_saga_cancel(rt, saga_id, "from the target");
        int again = sl_saga_cancel(rt, saga_id, "twice");
        mon_lock();
        loop_rc = rc == 0 && again == SL_ENOTFOUND ? 0 : -100;
        loop_calls++;
        mon_unlock_signal();
        return 0;
    }
    mon_lock();
    loop_calls++;
    mon_unlock_signal();
    return 0;
}
static int create(void *userdata, const char *input, void **state) {
    (void)userdata;
    *state = (void *)(intptr_t)(strstr(input, "\"cancel_in_target\":true") != NULL);
    return 0;
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    CHECK(sl_action_issue(action, "host", state ? "{\"cancel_in_target\":true}" : "{}"));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state;
    if (strcmp(event->type, "CancelYourself") == 0) {
        int rc = sl_saga_cancel(rt, ctx->saga_id, "by itself");
        /* Cancelled: an action set now is not taken. */
        sl_action_done(action);
        mon_lock();
        loop_rc = rc;
        mon_unlock_signal();
    }
}

/* A subscriber that cancels the saga named in a "PleaseCancel" event's payload. */
static int sub_rc = 1;
static void canceller(void *userdata, const sl_event *event) {
    (void)userdata;
    if (strcmp(event->type, "PleaseCancel") != 0) return;
    unsigned long long id = strtoull(event->payload_json, NULL, 10);
    int rc = sl_saga_cancel(rt, id, "from a subscriber");
    mon_lock();
    sub_rc = rc;
    mon_unlock_signal();
}

static uint64_t start_saga(const char *input) {
    uint64_t id = 0;
    mon_lock();
    int calls = loop_calls;
    mon_unlock();
    CHECK(sl_saga_start(rt, "t", input, &id));
    WAIT_FOR(loop_calls == calls + 1); /* running, its command out */
    return id;
}

static void expect_cancelled(uint64_t id, const char *reason) {
    char *end = rec_wait_terminal(&rec, id);
    char expected[128];
    snprintf(expected, sizeof expected, "SagaFailed {\"name\":\"t\",\"reason\":\"cancelled: %s\",\"state\":\"failed\"}", reason);
    EXPECT_STREQ(end, expected);
    free(end);
    char *json = NULL;
    CHECK(sl_log_saga(rt, id, &json));
    EXPECT_CONTAINS(json, "\"state\":\"failed\"");
    snprintf(expected, sizeof expected, "\"failure_reason\":\"cancelled: %s\"", reason);
    EXPECT_CONTAINS(json, expected);
    sl_free(json);
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = create;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 600000;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
    sl_subscription *sub = NULL, *cancel_sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_subscribe(rt, 0, canceller, NULL, &cancel_sub));
    CHECK(sl_runtime_start(rt));

    /* From this thread: it returns once the loop took it. */
    uint64_t id = start_saga("{}");
    CHECK(sl_saga_cancel(rt, id, "host said so"));
    EXPECT_RC(sl_saga_cancel(rt, id, "again"), SL_ENOTFOUND);
    expect_cancelled(id, "host said so");
    EXPECT_RC(sl_saga_cancel(rt, id, "after the end"), SL_ENOTFOUND);

    /* From a subscriber's delivery thread. */
    id = start_saga("{}");
    char payload[32];
    snprintf(payload, sizeof payload, "%llu", (unsigned long long)id);
    CHECK(sl_publish(rt, "PleaseCancel", 0, payload));
    WAIT_FOR(sub_rc != 1);
    EXPECT_RC(sub_rc, 0);
    expect_cancelled(id, "from a subscriber");

    /* From the target, on the loop thread. */
    id = start_saga("{\"cancel_in_target\":true}");
    EXPECT_RC(loop_rc, 0);
    expect_cancelled(id, "from the target");

    /* From the saga's own on_event, on the loop thread. */
    loop_rc = 1;
    id = start_saga("{}");
    CHECK(sl_publish(rt, "CancelYourself", id, NULL));
    WAIT_FOR(loop_rc != 1);
    EXPECT_RC(loop_rc, 0);
    expect_cancelled(id, "by itself");

    mon_lock();
    for (uint64_t i = 1; i <= id; i++) EXPECT_EQ_INT(rec_terminals_locked(&rec, i), 1);
    mon_unlock();

    sl_unsubscribe(cancel_sub);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
