/* Release callbacks: called exactly once, at sl_runtime_close (a replaced command handler's
   at its replacement), for saga types, triggers, targets and command handlers; never for a
   registration that failed. A saga type's sagas still in flight at close are destroyed,
   before the type's release. */
#include "check.h"

struct owner {
    const char *name;
    int released;
};

static int destroyed;
static int destroyed_at_type_release = -1;

static void release(void *userdata) {
    struct owner *o = userdata;
    mon_lock();
    o->released++;
    if (strcmp(o->name, "type") == 0) destroyed_at_type_release = destroyed;
    mon_unlock_signal();
}

static int create(void *userdata, const char *input, void **state) {
    (void)userdata, (void)input;
    *state = malloc(64); /* LeakSanitizer checks destroy frees it */
    return *state ? 0 : SL_ENOMEM;
}
static void destroy(void *userdata, void *state) {
    EXPECT_STREQ(((struct owner *)userdata)->name, "type");
    free(state);
    mon_lock();
    destroyed++;
    mon_unlock_signal();
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state;
    if (ctx->saga_id == 1) CHECK(sl_action_done(action)); /* the others stay in flight */
}
static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    return 0;
}
static int handler(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    return 0;
}

int main(void) {
    struct owner type_owner = {"type", 0}, trigger_owner = {"trigger", 0}, target_owner = {"target", 0},
                 handler1 = {"handler1", 0}, handler2 = {"handler2", 0}, other_lane = {"other lane", 0};
    struct owner failed[] = {{"dup type", 0}, {"type without create", 0}, {"type size 0", 0}, {"trigger of unknown type", 0},
                             {"trigger with empty event", 0}, {"dup target", 0}, {"target with colon", 0},
                             {"handler without fn", 0}, {"target after close", 0}, {"trigger after close", 0},
                             {"type after close", 0}, {"handler after close", 0}};
    const size_t failures = sizeof failed / sizeof *failed;

    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = create;
    type.destroy = destroy;
    type.start = start;
    type.on_event = test_wait_event;
    type.release = release;
    CHECK(sl_saga_type_register(rt, &type, &type_owner));
    EXPECT_RC(sl_saga_type_register(rt, &type, &failed[0]), SL_EEXIST);
    type.name = "u";
    type.create = NULL;
    EXPECT_RC(sl_saga_type_register(rt, &type, &failed[1]), SL_EINVAL);
    type.create = create;
    type.size = 0;
    EXPECT_RC(sl_saga_type_register(rt, &type, &failed[2]), SL_EINVAL);

    CHECK(sl_trigger_add(rt, "Go", "t", NULL, &trigger_owner, release));
    EXPECT_RC(sl_trigger_add(rt, "Go", "nope", NULL, &failed[3], release), SL_ENOTFOUND);
    EXPECT_RC(sl_trigger_add(rt, "", "t", NULL, &failed[4], release), SL_EINVAL);
    CHECK(sl_trigger_add(rt, "Go2", "t", NULL, NULL, NULL)); /* no release at all */

    CHECK(sl_target_register(rt, "host", target, &target_owner, release));
    EXPECT_RC(sl_target_register(rt, "host", target, &failed[5], release), SL_EEXIST);
    EXPECT_RC(sl_target_register(rt, "a:b", target, &failed[6], release), SL_EINVAL);

    sl_lane *lane = NULL, *other = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    CHECK(sl_lane_create(rt, "other", NULL, &other));
    CHECK(sl_lane_set_command_handler(lane, handler, &handler1, release));
    EXPECT_RC(sl_lane_set_command_handler(lane, NULL, &failed[7], release), SL_EINVAL);
    EXPECT_EQ_INT(handler1.released, 0); /* a failed replacement replaces nothing */
    CHECK(sl_lane_set_command_handler(lane, handler, &handler2, release));
    EXPECT_EQ_INT(handler1.released, 1);
    CHECK(sl_lane_set_command_handler(other, handler, &other_lane, release));

    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "t", NULL, &id)); /* completes */
    EXPECT_EQ_INT(id, 1);
    char *end = rec_wait_terminal(&rec, id);
    free(end);
    WAIT_FOR(destroyed == 1); /* its state went once it ended */
    CHECK(sl_saga_start(rt, "t", NULL, &id));
    CHECK(sl_publish(rt, "Go", 0, NULL));
    WAIT_FOR(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, 0) == 3);

    EXPECT_EQ_INT(type_owner.released + trigger_owner.released + target_owner.released + handler2.released, 0);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    EXPECT_EQ_INT(type_owner.released, 1);
    EXPECT_EQ_INT(trigger_owner.released, 1);
    EXPECT_EQ_INT(target_owner.released, 1);
    EXPECT_EQ_INT(handler1.released, 1);
    EXPECT_EQ_INT(handler2.released, 1);
    EXPECT_EQ_INT(other_lane.released, 1);
    EXPECT_EQ_INT(destroyed, 3); /* the two in flight at close too */
    EXPECT_EQ_INT(destroyed_at_type_release, 3);

    /* Registrations on the closed runtime fail and are never released either. */
    type.size = sizeof type;
    type.name = "late";
    EXPECT_RC(sl_target_register(rt, "late", target, &failed[8], release), SL_ECLOSED);
    EXPECT_RC(sl_trigger_add(rt, "Go", "t", NULL, &failed[9], release), SL_ECLOSED);
    EXPECT_RC(sl_saga_type_register(rt, &type, &failed[10]), SL_ECLOSED);
    EXPECT_RC(sl_lane_set_command_handler(lane, handler, &failed[11], release), SL_ECLOSED);
    for (size_t i = 0; i < failures; i++) {
        if (failed[i].released != 0) check_fail_(__FILE__, __LINE__, "%s was released", failed[i].name);
    }
    rec_free(&rec);
    return 0;
}
