/* The two sagas of the terminal-pool launcher sagalane grew out of, answered by a C target:
 *
 *   pool_respawn_on_promote  PoolWindowPromoted -> spawn a pool window -> PoolWindowAdded.
 *   window_cleanup_cascade   WindowClosed (clean closes only) -> reap panes -> PanesReaped ->
 *                            drain the pool if last -> PoolDrained | PoolNotLast.
 *
 * Triggers start them (the predicate keeps crash-flagged closes out), the target answers each
 * command by publishing the echo the saga waits for, every saga ends in exactly one terminal
 * event, and the log shows each saga's steps with the commands and outputs.
 */
#include "check.h"

static sl_runtime *rt;
static int target_calls;

struct cleanup_state {
    int reaped;
    int destroyed_check;
};
static int created, destroyed;

static int respawn_create(void *userdata, const char *input, void **state) {
    (void)userdata;
    EXPECT_CONTAINS(input, "\"label\":");
    *state = NULL;
    mon_lock();
    created++;
    mon_unlock();
    return 0;
}
static void respawn_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state;
    EXPECT_STREQ(ctx->type_name, "pool_respawn_on_promote");
    EXPECT_EQ_INT(ctx->next_step, 0);
    CHECK(sl_action_issue(action, "host", "{\"cmd\":\"spawn_pool_window\"}"));
}
static void respawn_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                             sl_action *action) {
    (void)userdata, (void)state;
    EXPECT_EQ_INT(event->saga_id, ctx->saga_id); /* it has no interests: only its echoes */
    EXPECT_EQ_INT(ctx->next_step, 1);
    if (strcmp(event->type, "PoolWindowAdded") == 0) CHECK(sl_action_done(action));
}
static void respawn_destroy(void *userdata, void *state) {
    (void)userdata, (void)state;
    mon_lock();
    destroyed++;
    mon_unlock();
}

static int cleanup_create(void *userdata, const char *input, void **state) {
    (void)userdata, (void)input;
    *state = calloc(1, sizeof(struct cleanup_state));
    mon_lock();
    created++;
    mon_unlock();
    return *state ? 0 : SL_ENOMEM;
}
static void cleanup_destroy(void *userdata, void *state) {
    (void)userdata;
    free(state);
    mon_lock();
    destroyed++;
    mon_unlock();
}
static void cleanup_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_issue(action, "host", "{\"cmd\":\"reap_panes\"}"));
}
static void cleanup_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                             sl_action *action) {
    struct cleanup_state *s = state;
    (void)userdata;
    if (event->saga_id != ctx->saga_id) return;
    if (!s->reaped && strcmp(event->type, "PanesReaped") == 0) {
        EXPECT_EQ_INT(ctx->next_step, 1);
        s->reaped = 1;
        CHECK(sl_action_issue(action, "host", "{\"cmd\":\"drain_pool_if_last\"}"));
    } else if (s->reaped && (strcmp(event->type, "PoolDrained") == 0 || strcmp(event->type, "PoolNotLast") == 0)) {
        EXPECT_EQ_INT(ctx->next_step, 2);
        CHECK(sl_action_done(action));
    }
}

/* Clean closes only. Payloads arrive compact, with keys sorted. */
static int predicate_calls;
static int clean_close(void *userdata, const char *payload) {
    EXPECT(userdata == &predicate_calls);
    predicate_calls++;
    return strstr(payload, "\"crash_detected\":true") == NULL;
}

/* The host: answers each command with its echo, from the loop thread. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    EXPECT(userdata == &target_calls);
    mon_lock();
    target_calls++;
    mon_unlock_signal();
    char expected[64];
    snprintf(expected, sizeof expected, "\"saga_id\":%llu", (unsigned long long)saga_id);
    EXPECT_CONTAINS(command, expected);
    snprintf(expected, sizeof expected, "\"step\":%u", step);
    EXPECT_CONTAINS(command, expected);
    if (strstr(command, "\"cmd\":\"spawn_pool_window\"")) return sl_publish(rt, "PoolWindowAdded", saga_id, "{\"label\":\"pool-new\"}");
    if (strstr(command, "\"cmd\":\"reap_panes\"")) return sl_publish(rt, "PanesReaped", saga_id, "{\"panes\":3}");
    if (strstr(command, "\"cmd\":\"drain_pool_if_last\"")) return sl_publish(rt, "PoolDrained", saga_id, NULL);
    return SL_EINVAL;
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "seed_sagas.db");
    rt = open_runtime(path, SL_CLOCK_SYSTEM);

    sl_saga_type respawn;
    sl_saga_type_init(&respawn);
    respawn.name = "pool_respawn_on_promote";
    respawn.create = respawn_create;
    respawn.destroy = respawn_destroy;
    respawn.start = respawn_start;
    respawn.on_event = respawn_on_event;
    CHECK(sl_saga_type_register(rt, &respawn, NULL));

    sl_saga_type cleanup;
    sl_saga_type_init(&cleanup);
    cleanup.name = "window_cleanup_cascade";
    cleanup.create = cleanup_create;
    cleanup.destroy = cleanup_destroy;
    cleanup.start = cleanup_start;
    cleanup.on_event = cleanup_on_event;
    cleanup.timeout_ms = 30000;
    CHECK(sl_saga_type_register(rt, &cleanup, NULL));

    CHECK(sl_trigger_add(rt, "PoolWindowPromoted", "pool_respawn_on_promote", NULL, NULL, NULL));
    CHECK(sl_trigger_add(rt, "WindowClosed", "window_cleanup_cascade", clean_close, &predicate_calls, NULL));
    CHECK(sl_target_register(rt, "host", host_target, &target_calls, NULL));

    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));

    /* Published before the start: handled, in order, once the runtime starts. */
    CHECK(sl_publish(rt, "PoolWindowPromoted", 0, "{\"label\":\"pool-1\"}"));
    CHECK(sl_runtime_start(rt));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"label\":\"main\",\"crash_detected\":false}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"crash_detected\":true,\"label\":\"logs\"}"));
    CHECK(sl_publish(rt, "PoolWindowPromoted", 0, "{\"label\":\"pool-2\"}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"label\":\"side\"}"));
    uint64_t direct = 0;
    CHECK(sl_saga_start(rt, "window_cleanup_cascade", "{\"label\":\"direct\"}", &direct));

    /* Five sagas: the predicate saw three closes and refused the crash-flagged one, which
       never reached create (counted at the end). */
    mon_lock();
    WAIT_FOR_LOCKED(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, 0) + rec_count_locked(&rec, SL_EVENT_SAGA_FAILED, 0) == 5);
    mon_unlock();
    uint64_t ids[5];
    mon_lock();
    size_t n = 0;
    for (size_t i = 0; i < rec.count; i++)
        if (strcmp(rec.events[i].type, SL_EVENT_SAGA_STARTED) == 0) ids[n++] = rec.events[i].saga_id;
    EXPECT_EQ_INT(n, 5);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_FAILED, 0), 0);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, 0), 5);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, 0), 5);
    for (size_t i = 0; i < n; i++) {
        EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, ids[i]), 1);
        EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, ids[i]), 1);
        const rec_event *started = rec_find_locked(&rec, SL_EVENT_SAGA_STARTED, ids[i]);
        const rec_event *completed = rec_find_locked(&rec, SL_EVENT_SAGA_COMPLETED, ids[i]);
        EXPECT(started->version < completed->version);
        EXPECT_CONTAINS(completed->payload, "\"name\":\"");
    }
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, direct), 1);
    EXPECT_EQ_INT(rec_count_locked(&rec, "PoolWindowAdded", 0), 2);
    EXPECT_EQ_INT(rec_count_locked(&rec, "PanesReaped", 0), 3);
    EXPECT_EQ_INT(rec_count_locked(&rec, "PoolDrained", 0), 3);
    EXPECT_EQ_INT(target_calls, 2 + 3 * 2);
    EXPECT_EQ_INT(predicate_calls, 3);
    mon_unlock();

    /* The log: every saga completed, with its steps, commands (ids injected) and outputs. */
    char *json = NULL;
    CHECK(sl_log_saga(rt, direct, &json));
    EXPECT_CONTAINS(json, "\"name\":\"window_cleanup_cascade\"");
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    EXPECT_CONTAINS(json, "\"input\":{\"label\":\"direct\"}");
    EXPECT_CONTAINS(json, "\"command\":{\"cmd\":\"reap_panes\",\"saga_id\":");
    EXPECT_CONTAINS(json, "\"command\":{\"cmd\":\"drain_pool_if_last\",\"saga_id\":");
    EXPECT_CONTAINS(json, "\"index\":1");
    EXPECT_CONTAINS(json, "\"target\":\"host\"");
    EXPECT_CONTAINS(json, "\"state\":\"succeeded\"");
    EXPECT_CONTAINS(json, "\"panes\":3");
    EXPECT_NOT_CONTAINS(json, "\"state\":\"pending\"");
    sl_free(json);
    CHECK(sl_log_recent(rt, 10, &json));
    EXPECT_NOT_CONTAINS(json, "\"state\":\"running\"");
    EXPECT_NOT_CONTAINS(json, "\"label\":\"logs\"");
    sl_free(json);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    /* Each saga's state was destroyed once it ended. */
    EXPECT_EQ_INT(created, 5);
    EXPECT_EQ_INT(destroyed, 5);
    rec_free(&rec);
    return 0;
}
