/* Files that are not sagalane logs are refused and left byte for byte as they were, with
   nothing created beside them:
     - another application's SQLite database (read-write and read-only opens: SL_ECORRUPT,
       "not a sagalane log"; it is neither switched to WAL nor given sagalane's tables);
     - a sagalane log whose migration fails: SL_ECORRUPT with a short message, not pages of
       migration SQL;
     - `sagalane vacuum` on a missing path (no log is created), an empty file, or another
       application's database.
   A new, empty file does become a log. */
#include "files.h"

#include <sqlite3.h>

static void sql(const char *path, const char *text) {
    sqlite3 *db = NULL;
    EXPECT(sqlite3_open(path, &db) == SQLITE_OK);
    char *error = NULL;
    if (sqlite3_exec(db, text, NULL, NULL, &error) != SQLITE_OK) check_fail_(__FILE__, __LINE__, "%s: %s", text, error);
    sqlite3_close(db);
}

static void expect_refused(const char *path, int read_only, const char *what) {
    uint64_t before = file_hash(path);
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.read_only = read_only;
    sl_runtime *rt = NULL;
    int rc = sl_runtime_open(&options, &rt);
    check_rt = rt;
    EXPECT_RC(rc, SL_ECORRUPT);
    const char *message = sl_runtime_errmsg(rt);
    printf("%s: %s\n", path, message);
    EXPECT_CONTAINS(message, what);
    EXPECT(strlen(message) < 300);
    sl_runtime_close(rt);
    EXPECT(file_hash(path) == before);
    EXPECT(!file_exists(companion(path, "-wal")));
    EXPECT(!file_exists(companion(path, "-shm")));
    EXPECT(!file_exists(companion(path, "-lock")));
}

int main(void) {
    char foreign[512], empty[512], failing[512], missing[512];
    scratch_path(foreign, sizeof foreign, "foreign.db");
    scratch_path(empty, sizeof empty, "empty.db");
    scratch_path(failing, sizeof failing, "failing-migration.db");
    scratch_path(missing, sizeof missing, "missing.db");

    /* Another application's database, in the default rollback-journal mode. */
    sql(foreign, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO accounts VALUES (1, 'ann');");
    expect_refused(foreign, 0, "not a sagalane log");
    expect_refused(foreign, 1, "not a sagalane log");

    /* A sagalane log of schema version 3 that cannot be migrated: it already has a table by
       the name version 4 creates. */
    sl_runtime *rt = open_runtime(failing, SL_CLOCK_SYSTEM);
    sl_runtime_close(rt);
    sql(failing, "DROP TABLE meta; CREATE TABLE meta (x); PRAGMA user_version = 3; PRAGMA application_id = 0; "
                 "PRAGMA wal_checkpoint(TRUNCATE);");
    expect_refused(failing, 0, "schema version 4");

#ifdef SL_TEST_CLI
    char out[4096];
    char *vacuum_missing[] = {"", "vacuum", missing, "--older-than", "7d", NULL};
    EXPECT(run_cli(0, vacuum_missing, out, sizeof out) != 0);
    EXPECT(!file_exists(missing));
    EXPECT(!file_exists(companion(missing, "-lock")));
    FILE *f = fopen(empty, "w");
    EXPECT(f != NULL);
    fclose(f);
    char *vacuum_empty[] = {"", "vacuum", empty, "--older-than", "7d", NULL};
    EXPECT(run_cli(0, vacuum_empty, out, sizeof out) != 0);
    EXPECT_EQ_INT(file_size(empty), 0);
    uint64_t before = file_hash(foreign);
    char *vacuum_foreign[] = {"", "vacuum", foreign, "--older-than", "7d", NULL};
    EXPECT(run_cli(0, vacuum_foreign, out, sizeof out) != 0);
    EXPECT(file_hash(foreign) == before);
    EXPECT(!file_exists(companion(foreign, "-wal")));
#endif

    /* A new, empty file becomes a log. */
    FILE *e = fopen(empty, "w");
    EXPECT(e != NULL);
    fclose(e);
    rt = open_runtime(empty, SL_CLOCK_SYSTEM);
    CHECK(sl_runtime_start(rt));
    char *json = NULL;
    CHECK(sl_log_stats(rt, &json));
    EXPECT_CONTAINS(json, "\"schema_version\":7");
    sl_free(json);
    sl_runtime_close(rt);
    return 0;
}
