/* The bus as a subscriber sees it: every event published after sl_subscribe, in publication
   order with versions counting up by one; payloads as compact JSON ("null" for none); the
   lifecycle events SagaStarted / SagaCompleted / SagaFailed with {"name"} (and "reason"),
   tagged with the saga; exactly one terminal event per saga when many run at once. */
#include "check.h"

#define SAGAS 60

static sl_runtime *rt;

/* Even sagas are answered, odd ones failed by the host; both from the loop thread. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)command;
    if (saga_id % 2 == 0) return sl_publish(rt, "Answer", saga_id, "{\"v\":[1,2.5,\"x\",true,null]}");
    return sl_step_fail(rt, saga_id, step, "odd");
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_issue(action, "host", "{}"));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state;
    if (strcmp(event->type, "Answer") == 0) {
        EXPECT_EQ_INT(event->saga_id, ctx->saga_id);
        EXPECT_STREQ(event->payload_json, "{\"v\":[1,2.5,\"x\",true,null]}");
        EXPECT(event->version > 0);
        CHECK(sl_action_done(action));
    }
}

struct starter {
    uint64_t ids[SAGAS / 2];
};
static void *start_half(void *arg) {
    struct starter *s = arg;
    for (int i = 0; i < SAGAS / 2; i++) CHECK(sl_saga_start(rt, "t", NULL, &s->ids[i]));
    return NULL;
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
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));

    CHECK(sl_publish(rt, "Unseen", 0, NULL)); /* before any subscription */
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_publish(rt, "Plain", 0, NULL));
    CHECK(sl_publish(rt, "Tagged", 77, "  { \"b\" : 1 , \"a\" : \"\\u00e9\\n\" }  "));
    CHECK(sl_publish(rt, "Scalar", 0, "-0.5e3"));
    CHECK(sl_runtime_start(rt));

    /* Sagas started from two threads at once. */
    struct starter a, b;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, start_half, &a);
    pthread_create(&tb, NULL, start_half, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(sl_publish(rt, "Last", 0, "[]"));

    mon_lock();
    WAIT_FOR_LOCKED(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, 0) + rec_count_locked(&rec, SL_EVENT_SAGA_FAILED, 0) == SAGAS);
    WAIT_FOR_LOCKED(rec_count_locked(&rec, "Last", 0) == 1);

    /* Order and versions. */
    EXPECT_EQ_INT(rec_count_locked(&rec, "Unseen", 0), 0);
    EXPECT_STREQ(rec.events[0].type, "Plain");
    EXPECT_EQ_INT(rec.events[0].saga_id, 0);
    EXPECT_STREQ(rec.events[0].payload, "null");
    EXPECT_EQ_INT(rec.events[0].version, 2); /* "Unseen" was 1 */
    EXPECT_STREQ(rec.events[1].type, "Tagged");
    EXPECT_EQ_INT(rec.events[1].saga_id, 77);
    EXPECT_STREQ(rec.events[1].payload, "{\"a\":\"\xc3\xa9\\n\",\"b\":1}");
    EXPECT_STREQ(rec.events[2].type, "Scalar");
    EXPECT_EQ_INT(rec.events[2].payload[0], '-');
    for (size_t i = 1; i < rec.count; i++) EXPECT_EQ_INT(rec.events[i].version, rec.events[i - 1].version + 1);

    /* One SagaStarted and one terminal event per saga, in that order, with the right payload. */
    uint64_t ids[SAGAS];
    memcpy(ids, a.ids, sizeof a.ids);
    memcpy(ids + SAGAS / 2, b.ids, sizeof b.ids);
    for (int i = 0; i < SAGAS; i++) {
        uint64_t id = ids[i];
        for (int j = 0; j < i; j++) EXPECT(ids[j] != id);
        EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, id), 1);
        EXPECT_EQ_INT(rec_terminals_locked(&rec, id), 1);
        const rec_event *started = rec_find_locked(&rec, SL_EVENT_SAGA_STARTED, id);
        EXPECT_STREQ(started->payload, "{\"name\":\"t\"}");
        if (id % 2 == 0) {
            const rec_event *end = rec_find_locked(&rec, SL_EVENT_SAGA_COMPLETED, id);
            EXPECT(end != NULL);
            EXPECT_STREQ(end->payload, "{\"name\":\"t\",\"state\":\"completed\"}");
            EXPECT(started->version < end->version);
        } else {
            const rec_event *end = rec_find_locked(&rec, SL_EVENT_SAGA_FAILED, id);
            EXPECT(end != NULL);
            EXPECT_STREQ(end->payload, "{\"name\":\"t\",\"reason\":\"action failed: odd\",\"state\":\"failed\"}");
            EXPECT(started->version < end->version);
            const rec_event *action = rec_find_locked(&rec, SL_EVENT_SAGA_ACTION_FAILED, id);
            EXPECT(action != NULL);
            EXPECT_STREQ(action->payload, "{\"reason\":\"odd\",\"step\":0}");
        }
    }
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, 0), SAGAS);
    mon_unlock();

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
