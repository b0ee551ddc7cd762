/* Opens that fail still hand out a handle whose sl_runtime_errmsg says why, on which every
   call answers SL_ECLOSED, and which sl_runtime_close takes: a file in a missing folder
   (SL_ECANTOPEN), a file that is not a database or a log whose schema is newer than this
   sagalane (SL_ECORRUPT), a log to migrate whose write lock another connection holds
   (SL_EBUSY), a read-only open of a file that does not exist (SL_ECANTOPEN). */
#include "check.h"

#include <sqlite3.h>

static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)saga_id, (void)step, (void)command;
    return 0;
}
static int releases;
static void counted_release(void *userdata) {
    (void)userdata;
    releases++;
}

static sl_runtime *open_fails(const char *path, int read_only, int code) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.read_only = read_only;
    options.busy_timeout_ms = 1;
    sl_runtime *rt = NULL;
    check_rt = NULL;
    int rc = sl_runtime_open(&options, &rt);
    check_rt = rt;
    EXPECT(rt != NULL);
    EXPECT_RC(rc, code);
    EXPECT_ERRMSG(rt);
    printf("%s: %s\n", path, sl_runtime_errmsg(rt));
    return rt;
}

static void expect_unusable(sl_runtime *rt) {
    check_rt = rt;
    EXPECT_RC(sl_runtime_start(rt), SL_ECLOSED);
    EXPECT_RC(sl_publish(rt, "E", 0, NULL), SL_ECLOSED);
    EXPECT_RC(sl_target_register(rt, "host", target, NULL, counted_release), SL_ECLOSED);
    EXPECT_RC(sl_trigger_add(rt, "E", "t", NULL, NULL, counted_release), SL_ECLOSED);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = test_wait_start;
    type.on_event = test_wait_event;
    type.release = counted_release;
    EXPECT_RC(sl_saga_type_register(rt, &type, NULL), SL_ECLOSED);
    sl_lane *lane = NULL;
    EXPECT_RC(sl_lane_create(rt, "work", NULL, &lane), SL_ECLOSED);
    EXPECT(lane == NULL);
    sl_subscription *sub = NULL;
    EXPECT_RC(sl_subscribe(rt, 0, rec_on_event, NULL, &sub), SL_ECLOSED);
    EXPECT_RC(sl_saga_start(rt, "t", NULL, NULL), SL_ECLOSED);
    EXPECT_RC(sl_runtime_health(rt), SL_ECLOSED);
    char *json = NULL;
    EXPECT_RC(sl_log_recent(rt, 1, &json), SL_ECLOSED);
    EXPECT_RC(sl_log_unresolved(rt, &json), SL_ECLOSED);
    EXPECT_RC(sl_log_saga(rt, 1, &json), SL_ECLOSED);
    EXPECT_RC(sl_log_vacuum(rt, 0, NULL), SL_ECLOSED);
    EXPECT(json == NULL);
    EXPECT_ERRMSG(rt);
    sl_runtime_close(rt);
    EXPECT_EQ_INT(releases, 0);
}

int main(void) {
    char path[512];

    /* A folder that does not exist. */
    scratch_path(path, sizeof path, "no-such-folder/open_failed.db");
    sl_runtime *rt = open_fails(path, 0, SL_ECANTOPEN);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "no-such-folder");
    expect_unusable(rt);

    /* A text file is not a database. */
    scratch_path(path, sizeof path, "open_failed-not-a-db.txt");
    FILE *f = fopen(path, "w");
    EXPECT(f != NULL);
    for (int i = 0; i < 512; i++) fputs("this is not a sagalane database\n", f);
    fclose(f);
    rt = open_fails(path, 0, SL_ECORRUPT);
    expect_unusable(rt);
    rt = open_fails(path, 1, SL_ECORRUPT);
    expect_unusable(rt);

    /* A log from a newer sagalane (a schema version it does not know). */
    scratch_path(path, sizeof path, "open_failed-newer.db");
    sl_runtime_close(open_runtime(path, SL_CLOCK_SYSTEM));
    sqlite3 *db = NULL;
    EXPECT(sqlite3_open(path, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "PRAGMA user_version = 9999;", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    rt = open_fails(path, 0, SL_ECORRUPT);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "newer");
    expect_unusable(rt);

    /* A log of an older schema, to migrate, whose write lock another connection holds. */
    scratch_path(path, sizeof path, "open_failed-locked.db");
    sl_runtime_close(open_runtime(path, SL_CLOCK_SYSTEM));
    EXPECT(sqlite3_open(path, &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "DROP TABLE meta; PRAGMA user_version = 3; PRAGMA application_id = 0; "
                            "BEGIN EXCLUSIVE; DELETE FROM saga;", NULL, NULL, NULL) == SQLITE_OK);
    rt = open_fails(path, 0, SL_EBUSY);
    expect_unusable(rt);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);

    /* Read-only creates nothing. */
    scratch_path(path, sizeof path, "open_failed-missing.db");
    rt = open_fails(path, 1, SL_ECANTOPEN);
    expect_unusable(rt);
    EXPECT(access(path, F_OK) != 0);
    return 0;
}
