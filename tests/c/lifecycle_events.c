/* The lifecycle events (SagaStarted, SagaCompleted, SagaFailed) are never matched by triggers
   nor fed to sagas, even as interests, while other events are. Events are handled in order,
   so a marker event published after them shows they were all looked at. */
#include "check.h"

static sl_runtime *rt;
static int watcher_creates, watcher_events, marker_started;

static int watcher_create(void *userdata, const char *input, void **state) {
    (void)userdata, (void)input, (void)state;
    mon_lock();
    watcher_creates++;
    mon_unlock_signal();
    return 0;
}
static void watcher_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx, (void)action;
    mon_lock();
    if (strncmp(event->type, "Saga", 4) == 0) watcher_events++;
    mon_unlock_signal();
    if (strcmp(event->type, "Done") == 0) CHECK(sl_action_done(action));
}
static void quick_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state;
    if (strcmp(ctx->type_name, "marker") == 0) {
        mon_lock();
        marker_started++;
        mon_unlock_signal();
    }
    if (ctx->saga_id % 2) CHECK(sl_action_done(action));
    else CHECK(sl_action_fail(action, "even"));
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    const char *lifecycle[] = {SL_EVENT_SAGA_STARTED, SL_EVENT_SAGA_COMPLETED, SL_EVENT_SAGA_FAILED, "Done"};
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "watcher";
    type.create = watcher_create;
    type.start = test_wait_start;
    type.on_event = watcher_event;
    type.interests = lifecycle;
    type.interest_count = 4;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    sl_saga_type_init(&type);
    type.name = "quick";
    type.create = test_no_state;
    type.start = quick_start;
    type.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    type.name = "marker";
    CHECK(sl_saga_type_register(rt, &type, NULL));
    /* A trigger on a lifecycle event could never fire: it is refused outright. */
    for (int i = 0; i < 3; i++) EXPECT_RC(sl_trigger_add(rt, lifecycle[i], "watcher", NULL, NULL, NULL), SL_EINVAL);
    CHECK(sl_trigger_add(rt, "Marker", "marker", NULL, NULL, NULL));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    /* One watcher, started directly: it hears only what is not lifecycle. */
    uint64_t watcher = 0;
    CHECK(sl_saga_start(rt, "watcher", NULL, &watcher));
    WAIT_FOR(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, watcher) == 1);
    EXPECT_EQ_INT(watcher_creates, 1);

    /* Sagas that start and end, and lifecycle-named events published by hand. */
    for (int i = 0; i < 6; i++) CHECK(sl_saga_start(rt, "quick", NULL, NULL));
    WAIT_FOR(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, 0) + rec_count_locked(&rec, SL_EVENT_SAGA_FAILED, 0) == 6);
    CHECK(sl_publish(rt, SL_EVENT_SAGA_COMPLETED, 0, "{\"name\":\"fake\"}"));
    CHECK(sl_publish(rt, SL_EVENT_SAGA_STARTED, watcher, "{\"name\":\"fake\"}"));
    CHECK(sl_publish(rt, "Marker", 0, NULL));
    WAIT_FOR(marker_started == 1);
    mon_lock();
    EXPECT_EQ_INT(watcher_creates, 1);
    EXPECT_EQ_INT(watcher_events, 0);
    mon_unlock();

    /* An ordinary interest still reaches it. */
    CHECK(sl_publish(rt, "Done", 0, NULL));
    char *end = rec_wait_terminal(&rec, watcher);
    EXPECT_STREQ(end, "SagaCompleted {\"name\":\"watcher\",\"state\":\"completed\"}");
    free(end);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
