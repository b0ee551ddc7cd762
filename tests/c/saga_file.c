/* The seed's two sagas from the example saga file (examples/sagas/terminal-pool.json), loaded
 * with sl_saga_types_load: the same outcomes as the hand-written saga types of seed_sagas.c.
 * Then the load's refusals: every problem of a bad file in one message, all or nothing when
 * a name is taken, bad arguments.
 */
#include "check.h"

static sl_runtime *rt;
static int target_calls;
static char drained_panes[8][32];

/* The host: answers each command with its echo, from the loop thread. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    mon_lock();
    int call = target_calls++;
    if (strstr(command, "\"cmd\":\"drain_pool_if_last\"") && call < 8) {
        const char *panes = strstr(command, "\"panes\":");
        snprintf(drained_panes[call], sizeof drained_panes[call], "%.9s", panes ? panes : "none");
    }
    mon_unlock_signal();
    if (strstr(command, "\"cmd\":\"spawn_pool_window\"")) return sl_publish(rt, "PoolWindowAdded", saga_id, "{\"label\":\"pool-new\"}");
    if (strstr(command, "\"cmd\":\"reap_panes\"")) return sl_publish(rt, "PanesReaped", saga_id, "{\"panes\":3}");
    if (strstr(command, "\"cmd\":\"drain_pool_if_last\"")) return sl_publish(rt, "PoolDrained", saga_id, NULL);
    return SL_EINVAL;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    EXPECT(f != NULL);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "saga_file.db");
    rt = open_runtime(path, SL_CLOCK_SYSTEM);

    /* Refusals first: nothing of a refused file is registered. */
    EXPECT_RC(sl_saga_types_load(rt, NULL, NULL), SL_EINVAL);
    EXPECT_RC(sl_saga_types_load(rt, "{\"sagas\": [1,]}", NULL), SL_EINVAL);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "<sagas>:1:14: not valid JSON");
    EXPECT_RC(sl_saga_types_load(rt, "\xff", NULL), SL_EUTF8);
    int loaded = -1;
    EXPECT_RC(sl_saga_types_load(rt,
                                 "{\"sagas\": [\n"
                                 "  {\"name\": \"a\", \"steps\": [{\"target\": \"\", \"command\": 1, \"completes_on\": \"E\"}]},\n"
                                 "  {\"name\": \"b\", \"steps\": [{\"target\": \"h\", \"command\": 1, \"completes_on\": \"E\", \"wait\": 1}]}\n"
                                 "]}",
                                 &loaded),
              SL_EINVAL);
    EXPECT_EQ_INT(loaded, -1);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "<sagas>:2:38: saga \"a\", step 1: field \"target\" must be a non-empty string");
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "\n<sagas>:3:86: saga \"b\", step 1: unknown field \"wait\" in a step");

    const char *file = read_file(SL_TEST_SOURCE_DIR "/examples/sagas/terminal-pool.json");
    CHECK(sl_saga_types_load(rt, file, &loaded));
    EXPECT_EQ_INT(loaded, 2);
    /* Loading it again registers nothing: the names are taken. */
    EXPECT_RC(sl_saga_types_load(rt, file, &loaded), SL_EEXIST);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "pool_respawn_on_promote");
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));

    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    uint64_t none = 0;
    EXPECT_RC(sl_saga_start(rt, "a", NULL, &none), SL_ENOTFOUND); /* the refused file registered nothing */
    CHECK(sl_publish(rt, "PoolWindowPromoted", 0, "{\"label\":\"pool-1\"}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"label\":\"main\",\"crash_detected\":false}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"crash_detected\":true,\"label\":\"logs\"}"));
    CHECK(sl_publish(rt, "PoolWindowPromoted", 0, "{\"label\":\"pool-2\"}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"label\":\"side\"}"));
    uint64_t direct = 0;
    CHECK(sl_saga_start(rt, "window_cleanup_cascade", "{\"label\":\"direct\"}", &direct));

    mon_lock();
    WAIT_FOR_LOCKED(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, 0) + rec_count_locked(&rec, SL_EVENT_SAGA_FAILED, 0) == 5);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_STARTED, 0), 5);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, 0), 5);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_FAILED, 0), 0);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_SAGA_COMPLETED, direct), 1);
    EXPECT_EQ_INT(target_calls, 2 + 3 * 2);
    /* The drain's command carries the reap's result. */
    int drains = 0;
    for (int i = 0; i < 8; i++)
        if (drained_panes[i][0]) {
            EXPECT_STREQ(drained_panes[i], "\"panes\":3");
            drains++;
        }
    EXPECT_EQ_INT(drains, 3);
    mon_unlock();

    char *json = NULL;
    CHECK(sl_log_saga(rt, direct, &json));
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    EXPECT_CONTAINS(json, "\"command\":{\"cmd\":\"reap_panes\",\"saga_id\":");
    EXPECT_CONTAINS(json, "\"window\":\"direct\"");
    sl_free(json);
    CHECK(sl_log_recent(rt, 10, &json));
    EXPECT_NOT_CONTAINS(json, "\"label\":\"logs\"");
    sl_free(json);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
