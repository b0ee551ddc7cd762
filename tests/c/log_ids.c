/* A saga id is never handed out twice, even after a vacuum deleted every saga and the
   runtime restarted; a log whose saga table holds an id past INT64_MAX (stored negative) is
   refused at start with a message naming the row, and is left as it was. */
#include "files.h"

#include <sqlite3.h>

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_done(action));
}

static sl_runtime *open_started(const char *path) {
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "quick";
    type.create = test_no_state;
    type.start = start;
    type.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_runtime_start(rt));
    return rt;
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "log_ids.db");
    sl_runtime *rt = open_started(path);
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    uint64_t last = 0;
    for (int i = 0; i < 3; i++) {
        CHECK(sl_saga_start(rt, "quick", NULL, &last));
        free(rec_wait_terminal(&rec, last));
    }
    EXPECT_EQ_INT(last, 3);
    int64_t ended = wall_ms();
    while (wall_ms() <= ended) sleep_ms(1);
    uint64_t deleted = 0;
    CHECK(sl_log_vacuum(rt, 0, &deleted));
    EXPECT_EQ_INT(deleted, 3);
    char *json = NULL;
    CHECK(sl_log_recent(rt, 10, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);

    /* The restart continues after the deleted ids. */
    rt = open_started(path);
    uint64_t next = 0;
    CHECK(sl_saga_start(rt, "quick", NULL, &next));
    EXPECT_EQ_INT(next, 4);
    sl_runtime_close(rt);

    /* Ids past INT64_MAX are stored negative; -1 would read as UINT64_MAX. */
    sqlite3 *db = NULL;
    EXPECT(sqlite3_open(path, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "INSERT INTO saga (id, name, state, input_json, started_at) "
                            "VALUES (-1, 'x', 'running', 'null', '2026-01-01T00:00:00.000Z')",
                        NULL, NULL, NULL) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    uint64_t before = file_hash(path);
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    int rc = sl_runtime_start(rt);
    EXPECT(rc != 0);
    printf("start: %s: %s\n", sl_err_name(rc), sl_runtime_errmsg(rt));
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "corrupt");
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "saga id -1");
    EXPECT_RC(sl_saga_start(rt, "quick", NULL, &next), SL_ESTATE);
    /* Operators can still read it. */
    CHECK(sl_log_recent(rt, 10, &json));
    EXPECT_CONTAINS(json, "\"id\":-1,");
    sl_free(json);
    sl_runtime_close(rt);
    EXPECT(file_hash(path) == before);
    return 0;
}
