/* sl_runtime_health: 0 while the log can record sagas' ends. When a terminal row cannot be
   written (another connection holds the database's write lock past the busy timeout), the
   saga still gets its one SagaFailed, with "durable": false; from then on sl_runtime_health
   says SL_EUNHEALTHY with the reason and sl_saga_start refuses with SL_EUNHEALTHY. */
#include "check.h"

#include <sqlite3.h>

static sl_runtime *rt;
static int held;

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    mon_lock();
    held++;
    mon_unlock_signal();
    return 0;
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_issue(action, "host", "{}"));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (strcmp(event->type, "Answer") == 0) CHECK(sl_action_done(action));
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "health.db");
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.busy_timeout_ms = 1;
    CHECK(sl_runtime_open(&options, &rt));
    check_rt = rt;
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 600000;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    CHECK(sl_runtime_health(rt));

    uint64_t id = 0;
    CHECK(sl_saga_start(rt, "t", NULL, &id));
    WAIT_FOR(held == 1);
    CHECK(sl_runtime_health(rt));

    /* Another connection takes the write lock and keeps it. */
    sqlite3 *db = NULL;
    EXPECT(sqlite3_open(path, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);

    CHECK(sl_publish(rt, "Answer", id, NULL));
    char *end = rec_wait_terminal(&rec, id);
    EXPECT_CONTAINS(end, "SagaFailed");
    EXPECT_CONTAINS(end, "\"durable\":false");
    free(end);
    mon_lock();
    EXPECT_EQ_INT(rec_terminals_locked(&rec, id), 1);
    mon_unlock();

    EXPECT_RC(sl_runtime_health(rt), SL_EUNHEALTHY);
    EXPECT_ERRMSG(rt);
    EXPECT_RC(sl_saga_start(rt, "t", NULL, NULL), SL_EUNHEALTHY);
    /* It stays unhealthy once the lock is gone: the log no longer matches what was told. */
    EXPECT(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    EXPECT_RC(sl_runtime_health(rt), SL_EUNHEALTHY);
    /* Diagnostics still read. */
    char *json = NULL;
    CHECK(sl_log_recent(rt, 5, &json));
    sl_free(json);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
