/* What the header says of SQLite's memory statistics, each in a fresh process (SQLite's
   configuration is per process and settles at its first use):
     - "off": the host's first SQLite use comes after sl_runtime_open, so statistics are off
       and sqlite3_memory_used() reads 0 even with a database of the host's own open;
     - "host-first": the host calls sqlite3_initialize() before sl_runtime_open, so its
       statistics stay on and count what its own database holds.
   Either way the runtime opens and writes its log. */
#include "files.h"

#include <sqlite3.h>

static void open_runtime_and_host_database(const char *path) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    sl_runtime *rt = NULL;
    EXPECT_RC(sl_runtime_open(&options, &rt), 0);
    check_rt = rt;
    EXPECT_RC(sl_runtime_start(rt), 0);
    sqlite3 *db = NULL;
    EXPECT(sqlite3_open(":memory:", &db) == SQLITE_OK);
    EXPECT(sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(100000));", NULL, NULL, NULL) == SQLITE_OK);
    printf("sqlite3_memory_used() = %lld with the host's database open\n", (long long)sqlite3_memory_used());
    if (sqlite3_memory_used() > 0) {
        sqlite3_close(db);
        sl_runtime_close(rt);
        _exit(1);
    }
    sqlite3_close(db);
    sl_runtime_close(rt);
    _exit(0);
}

static int run_child(const char *role, const char *path) {
    pid_t pid = spawn_self(role, path, NULL, 0);
    int status = 0;
    EXPECT(waitpid(pid, &status, 0) == pid);
    EXPECT(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
    if (spawned_as(argc, argv, "off")) open_runtime_and_host_database(argv[3]);
    if (spawned_as(argc, argv, "host-first")) {
        EXPECT(sqlite3_initialize() == SQLITE_OK);
        open_runtime_and_host_database(argv[3]);
    }
    char path[512];
    scratch_path(path, sizeof path, "memstatus.db");
    /* Exit 0: the statistics read 0 (off); exit 1: they counted the host's database. */
    EXPECT(run_child("off", path) == 0);
    scratch_path(path, sizeof path, "memstatus-host.db");
    EXPECT(run_child("host-first", path) == 1);
    return 0;
}
