/* One writing runtime per log. While a process has the log open for writing, a second
   read-write open (from another process, or from the same one) fails with SL_ELOCKED and a
   message naming the holder's pid, and changes nothing; read-only opens work meanwhile. Once
   the holder is gone, even killed with SIGKILL, the log opens for writing again. */
#include "files.h"

static void holder(const char *path, int ready_fd) {
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    CHECK(sl_runtime_start(rt));
    pid_t self = getpid();
    if (write(ready_fd, &self, sizeof self) != (ssize_t)sizeof self) _exit(2);
    for (;;) pause();
}

static int open_rt(const char *path, int read_only, sl_runtime **rt) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.read_only = read_only;
    *rt = NULL;
    int rc = sl_runtime_open(&options, rt);
    check_rt = *rt;
    return rc;
}

static void expect_locked(const char *path, pid_t holder) {
    uint64_t before = file_hash(path);
    long long wal_before = file_size(companion(path, "-wal"));
    sl_runtime *rt = NULL;
    EXPECT_RC(open_rt(path, 0, &rt), SL_ELOCKED);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)holder);
    printf("%s\n", sl_runtime_errmsg(rt));
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), pid);
    sl_runtime_close(rt);
    EXPECT(file_hash(path) == before);
    EXPECT_EQ_INT(file_size(companion(path, "-wal")), wal_before);
    EXPECT(file_exists(companion(path, "-lock")));
}

int main(int argc, char **argv) {
    if (spawned_as(argc, argv, "holder")) holder(argv[3], atoi(argv[4]));
    char path[512];
    scratch_path(path, sizeof path, "log_writer_lock.db");
    unlink(companion(path, "-lock"));
    pid_t held_by = 0;
    pid_t pid = spawn_self("holder", path, &held_by, sizeof held_by);
    EXPECT_EQ_INT(held_by, pid);

    expect_locked(path, held_by);
    /* Readers are welcome. */
    sl_runtime *ro = NULL;
    CHECK(open_rt(path, 1, &ro));
    char *json = NULL;
    CHECK(sl_log_recent(ro, 10, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);
    sl_runtime_close(ro);

    kill9(pid);
    /* The kernel released the dead holder's lock; its lock file stays behind, stale. */
    sl_runtime *rt = NULL;
    CHECK(open_rt(path, 0, &rt));
    CHECK(sl_runtime_start(rt));
    /* This process holds it now: a second runtime here is refused too. */
    expect_locked(path, getpid());
    sl_runtime_close(rt);
    /* A clean close takes its lock file away. */
    EXPECT(!file_exists(companion(path, "-lock")));
    CHECK(open_rt(path, 0, &rt));
    sl_runtime_close(rt);
    return 0;
}
