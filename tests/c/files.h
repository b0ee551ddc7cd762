/*
 * What the log's file tests share: a hash of a file's bytes (to check that a refused
 * operation changed nothing), copies, sizes, folders, becoming an unprivileged user, and
 * running the sagalane binary (SL_TEST_CLI, when the build has it) as some user.
 */
#ifndef SAGALANE_TEST_FILES_H
#define SAGALANE_TEST_FILES_H

#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* setgroups */
#endif
#include "check.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>

/* Exit status that ctest reports as "skipped" (SKIP_RETURN_CODE). */
#define SKIPPED 77
/* The unprivileged user the permission scenarios run as. */
#define NOBODY 65534

/* FNV-1a of the whole file, or 0 when it cannot be read: "byte for byte unchanged". */
static inline uint64_t file_hash(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint64_t h = 1469598103934665603ULL;
    int c;
    while ((c = fgetc(f)) != EOF) h = (h ^ (uint64_t)c) * 1099511628211ULL;
    fclose(f);
    return h;
}

static inline int file_exists(const char *path) { return access(path, F_OK) == 0; }

/* A file's size; -1 when it does not exist. */
static inline long long file_size(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 ? (long long)info.st_size : -1;
}

static inline void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    EXPECT(in != NULL && out != NULL);
    char buffer[65536];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, in)) > 0) EXPECT(fwrite(buffer, 1, n, out) == n);
    fclose(in);
    EXPECT(fclose(out) == 0);
}

/* `name`-suffixed companion of `path` ("-wal", "-shm", "-lock"). */
static inline const char *companion(const char *path, const char *suffix) {
    static char buffers[4][1024];
    static int next;
    char *out = buffers[next++ % 4];
    snprintf(out, sizeof buffers[0], "%s%s", path, suffix);
    return out;
}

/* Removes a scratch folder's files (one level) and the folder, then makes it afresh. */
static inline void fresh_folder(const char *path, mode_t mode) {
    char command[1200];
    snprintf(command, sizeof command, "rm -rf '%s'", path);
    EXPECT(system(command) == 0);
    EXPECT(mkdir(path, 0755) == 0);
    EXPECT(chmod(path, mode) == 0);
}

/* Whether this process can become NOBODY (it runs as root). */
static inline int can_become_nobody(void) { return geteuid() == 0; }

/* Becomes NOBODY for good: group list, group, then user. */
static inline void become_nobody(void) {
    EXPECT(setgroups(0, NULL) == 0);
    EXPECT(setgid(NOBODY) == 0);
    EXPECT(setuid(NOBODY) == 0);
    EXPECT(geteuid() == NOBODY);
}

/* Runs this test's own program again as a child, `main` seeing argv {exe, "--child", role,
   path, fd}, and returns its pid once the child wrote `size` bytes to fd into `ready` (0:
   at once). A child that runs sagalane must be a fresh program, not a plain fork: the Swift
   runtime caches each thread's id, and a forked child's main thread keeps its parent's, so
   its locks can spin forever (FUTEX_UNLOCK_PI refuses an owner id that is not the caller). */
static inline pid_t spawn_self(const char *role, const char *path, void *ready, size_t size) {
    int fds[2];
    EXPECT(pipe(fds) == 0);
    EXPECT(fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0);
    pid_t pid = fork();
    EXPECT(pid >= 0);
    if (pid == 0) {
        char fd[16];
        snprintf(fd, sizeof fd, "%d", fds[1]);
        execl("/proc/self/exe", "child", "--child", role, path, fd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (size > 0) {
        watchdog(30, "the child's readiness");
        EXPECT_EQ_INT(read(fds[0], ready, size), (ssize_t)size);
        alarm(0);
    }
    close(fds[0]);
    return pid;
}

/* In a child spawn_self started: the role, the path and the descriptor to write to. */
static inline int spawned_as(int argc, char **argv, const char *role) {
    return argc == 5 && strcmp(argv[1], "--child") == 0 && strcmp(argv[2], role) == 0;
}

#ifdef SL_TEST_CLI
/* Runs the sagalane binary with `argv` (argv[0] is ignored), as NOBODY when `as_nobody`;
   its standard output goes into `out` (NUL-terminated, truncated to `size`), standard error
   to ours. Returns its exit status, or -1 when it did not exit. */
static inline int run_cli(int as_nobody, char *const argv[], char *out, size_t size) {
    int fds[2];
    EXPECT(pipe(fds) == 0);
    pid_t pid = fork();
    EXPECT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        close(fds[1]);
        if (as_nobody && (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)) _exit(126);
        char *args[16];
        int n = 0;
        args[n++] = (char *)SL_TEST_CLI;
        for (int i = 1; argv[i] != NULL && n < 15; i++) args[n++] = argv[i];
        args[n] = NULL;
        execv(SL_TEST_CLI, args);
        _exit(127);
    }
    close(fds[1]);
    size_t length = 0;
    ssize_t got;
    while ((got = read(fds[0], out + length, size - 1 - length)) > 0) length += (size_t)got;
    out[length] = '\0';
    close(fds[0]);
    int status = 0;
    EXPECT(waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
#endif

#endif /* SAGALANE_TEST_FILES_H */
