/* The first open of a new log, raced. Four processes open the same new log for writing at
   the same instant, and two open it read-only, fifty times: each writer either gets the log
   or is told another holds it (SL_ELOCKED), never SL_EBUSY, however short its busy timeout;
   each reader reads the finished schema (or finds no file yet), never a half-made one; and
   the file is a sound log. A new file another program holds a write transaction on is
   waited for within the busy timeout, not failed at once. */
#include "files.h"

#include <sqlite3.h>

#define ROUNDS 50
#define WRITERS 4
#define READERS 2

static int open_rt(const char *path, int read_only, int busy_ms, sl_runtime **rt) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.read_only = read_only;
    options.busy_timeout_ms = busy_ms;
    *rt = NULL;
    int rc = sl_runtime_open(&options, rt);
    check_rt = *rt;
    return rc;
}

/* Says it is ready, waits for the start signal (its standard input closing), opens, and
   exits with the negated SL_E* code. */
static void racer(const char *path, int ready_fd, int read_only) {
    char byte = 1;
    if (write(ready_fd, &byte, 1) != 1) _exit(101);
    close(ready_fd);
    if (read(0, &byte, 1) != 0) _exit(100);
    sl_runtime *rt = NULL;
    int rc = open_rt(path, read_only, read_only ? 2000 : 1, &rt);
    if (rc == 0 && read_only) {
        char *json = NULL;
        rc = sl_log_stats(rt, &json);
        if (rc == 0 && strstr(json, "\"schema_version\":7") == NULL) rc = -99;
        sl_free(json);
    } else if (rc == 0) {
        rc = sl_runtime_start(rt);
    }
    if (rc != 0) fprintf(stderr, "%s open: %s: %s\n", read_only ? "read-only" : "read-write", sl_err_name(rc), sl_runtime_errmsg(rt));
    sl_runtime_close(rt);
    _exit(-rc);
}

static void round_of(const char *path) {
    /* The racers' standard input is the start signal: every one of them is ready and blocked
       reading it when it closes. */
    int go[2], saved = dup(0);
    EXPECT(pipe(go) == 0 && saved >= 0);
    EXPECT(fcntl(go[1], F_SETFD, FD_CLOEXEC) == 0);
    EXPECT(dup2(go[0], 0) == 0);
    close(go[0]);
    pid_t pids[WRITERS + READERS];
    for (int i = 0; i < WRITERS + READERS; i++) {
        char ready;
        pids[i] = spawn_self(i < WRITERS ? "writer" : "reader", path, &ready, 1);
    }
    EXPECT(dup2(saved, 0) == 0);
    close(saved);
    close(go[1]);
    int writers_in = 0;
    for (int i = 0; i < WRITERS + READERS; i++) {
        int status = 0;
        EXPECT(waitpid(pids[i], &status, 0) == pids[i]);
        EXPECT(WIFEXITED(status));
        int rc = -WEXITSTATUS(status);
        if (i < WRITERS) {
            if (rc != 0 && rc != SL_ELOCKED) check_fail_(__FILE__, __LINE__, "a writer got %s", sl_err_name(rc));
            writers_in += rc == 0;
        } else if (rc != 0 && rc != SL_ECANTOPEN) {
            check_fail_(__FILE__, __LINE__, "a reader got %s", rc == -99 ? "another schema" : sl_err_name(rc));
        }
    }
    EXPECT(writers_in >= 1);
}

/* Holds a write transaction on a new, empty file for `hold_ms`, in another process. */
static void holder(const char *path, int ready_fd) {
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) _exit(2);
    if (sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK) _exit(3);
    char ready = 1;
    if (write(ready_fd, &ready, 1) != 1) _exit(4);
    int hold_ms = 0;
    const char *hold = getenv("SL_TEST_HOLD_MS");
    if (hold) hold_ms = atoi(hold);
    sleep_ms(hold_ms);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    _exit(0);
}

int main(int argc, char **argv) {
    RUN_READY_CHILD(argc, argv, holder);
    if (spawned_as(argc, argv, "writer")) racer(argv[3], atoi(argv[4]), 0);
    if (spawned_as(argc, argv, "reader")) racer(argv[3], atoi(argv[4]), 1);
    char paths[ROUNDS][512];
    for (int r = 0; r < ROUNDS; r++) {
        char name[64];
        snprintf(name, sizeof name, "race-%d.db", r);
        scratch_path(paths[r], sizeof paths[r], name);
        unlink(companion(paths[r], "-lock"));
        round_of(paths[r]);
    }

    /* A new file under another program's write transaction: waited for. */
    char held[512];
    scratch_path(held, sizeof held, "held.db");
    char ready;
    setenv("SL_TEST_HOLD_MS", "300", 1);
    pid_t pid = spawn_ready_child(held, &ready, 1);
    EXPECT_EQ_INT(file_size(held), 0);
    sl_runtime *rt = NULL;
    CHECK(open_rt(held, 0, 5000, &rt));
    sl_runtime_close(rt);
    int status = 0;
    EXPECT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* ...but only for as long as the busy timeout says; the file stays as it was. */
    char busy[512];
    scratch_path(busy, sizeof busy, "busy.db");
    setenv("SL_TEST_HOLD_MS", "3000", 1);
    pid = spawn_ready_child(busy, &ready, 1);
    EXPECT_RC(open_rt(busy, 0, 50, &rt), SL_EBUSY);
    sl_runtime_close(rt);
    EXPECT_EQ_INT(file_size(busy), 0);
    EXPECT(!file_exists(companion(busy, "-lock")));
    kill9(pid);

    /* Every raced file is a sound log. */
    for (int r = 0; r < ROUNDS; r++) {
        CHECK(open_rt(paths[r], 1, 1000, &rt));
        char *json = NULL;
        CHECK(sl_log_stats(rt, &json));
        EXPECT_CONTAINS(json, "\"schema_version\":7");
        sl_free(json);
        sl_runtime_close(rt);
    }
    CHECK(open_rt(held, 1, 1000, &rt));
    sl_runtime_close(rt);
    return 0;
}
