/*
 * What the C tests share: checks that print file:line, the call, the SL_E* name and the
 * runtime's message and then abort; a monitor (one mutex and condition) that callbacks
 * update and tests wait on with a generous guard; an event recorder; a watchdog for
 * scenarios whose likely failure is a hang; scratch file paths.
 *
 * Each test is one scenario in one main(), as in libuv's tests. A check that fails aborts at
 * once, so a failing run ends at the first wrong answer, with its location.
 */
#ifndef SAGALANE_TEST_CHECK_H
#define SAGALANE_TEST_CHECK_H

#include <sagalane.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The runtime whose sl_runtime_errmsg() a failed check prints (NULL: the orphan message). */
static sl_runtime *check_rt __attribute__((unused));

static void check_fail_(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, unused, format(printf, 3, 4)));
static void check_fail_(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

/* `call` returns `code` (0 for CHECK). */
#define EXPECT_RC(call, code)                                                                       \
    do {                                                                                           \
        int want_ = (code);                                                                        \
        int rc_ = (call);                                                                          \
        if (rc_ != want_)                                                                          \
            check_fail_(__FILE__, __LINE__, "%s returned %d %s, expected %d %s; errmsg: \"%s\"", #call, \
                        rc_, sl_err_name(rc_), want_, sl_err_name(want_), sl_runtime_errmsg(check_rt)); \
    } while (0)

#define CHECK(call) EXPECT_RC(call, 0)

#define EXPECT(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) check_fail_(__FILE__, __LINE__, "expected %s", #cond);                          \
    } while (0)

#define EXPECT_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) check_fail_(__FILE__, __LINE__, "expected %s == %s, got %lld and %lld", #a, #b, a_, b_); \
    } while (0)

#define EXPECT_STREQ(a, b)                                                                          \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            check_fail_(__FILE__, __LINE__, "expected %s == %s, got \"%s\" and \"%s\"", #a, #b,    \
                        a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                   \
    } while (0)

#define EXPECT_CONTAINS(haystack, needle)                                                           \
    do {                                                                                           \
        const char *h_ = (haystack), *n_ = (needle);                                               \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                  \
            check_fail_(__FILE__, __LINE__, "expected %s to contain \"%s\", got \"%s\"", #haystack, n_, \
                        h_ ? h_ : "(null)");                                                       \
    } while (0)

#define EXPECT_NOT_CONTAINS(haystack, needle)                                                       \
    do {                                                                                           \
        const char *h_ = (haystack), *n_ = (needle);                                               \
        if (h_ == NULL || strstr(h_, n_) != NULL)                                                  \
            check_fail_(__FILE__, __LINE__, "expected %s not to contain \"%s\", got \"%s\"", #haystack, \
                        n_, h_ ? h_ : "(null)");                                                   \
    } while (0)

/* The last failure's message is there and says something. */
#define EXPECT_ERRMSG(rt) EXPECT(sl_runtime_errmsg(rt) != NULL && sl_runtime_errmsg(rt)[0] != '\0')

/* ---- The monitor ------------------------------------------------------------------------ */

/* Callbacks change shared counters under mon_lock() and call mon_unlock_signal(); tests wait
   with WAIT_FOR. The guard only keeps a broken run from hanging: nothing here is timed. */
static pthread_mutex_t mon_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mon_cond = PTHREAD_COND_INITIALIZER;
#define WAIT_GUARD_SECONDS 20

static inline void mon_lock(void) { pthread_mutex_lock(&mon_mutex); }
static inline void mon_unlock(void) { pthread_mutex_unlock(&mon_mutex); }
static inline void mon_unlock_signal(void) {
    pthread_cond_broadcast(&mon_cond);
    pthread_mutex_unlock(&mon_mutex);
}

/* Waits, with the monitor locked, until `cond` holds; aborts after the guard. */
#define WAIT_FOR_LOCKED(cond)                                                                        \
    do {                                                                                           \
        struct timespec deadline_;                                                                 \
        clock_gettime(CLOCK_REALTIME, &deadline_);                                                 \
        deadline_.tv_sec += WAIT_GUARD_SECONDS;                                                    \
        while (!(cond)) {                                                                          \
            if (pthread_cond_timedwait(&mon_cond, &mon_mutex, &deadline_) == ETIMEDOUT && !(cond)) \
                check_fail_(__FILE__, __LINE__, "gave up after %d s waiting for %s", WAIT_GUARD_SECONDS, #cond); \
        }                                                                                          \
    } while (0)

#define WAIT_FOR(cond)                                                                              \
    do {                                                                                           \
        mon_lock();                                                                                \
        WAIT_FOR_LOCKED(cond);                                                                     \
        mon_unlock();                                                                              \
    } while (0)

/* ---- An event recorder -------------------------------------------------------------------- */

typedef struct rec_event {
    char *type;
    uint64_t saga_id;
    char *payload;
    uint64_t version;
} rec_event;

typedef struct recorder {
    rec_event *events;
    size_t count, capacity;
} recorder;

static inline char *check_strdup(const char *s) {
    char *copy = strdup(s);
    if (!copy) abort();
    return copy;
}

/* An sl_event_fn: keeps a copy of every event (userdata: the recorder). */
static inline void rec_on_event(void *userdata, const sl_event *event) {
    recorder *rec = userdata;
    mon_lock();
    if (rec->count == rec->capacity) {
        rec->capacity = rec->capacity ? rec->capacity * 2 : 64;
        rec->events = realloc(rec->events, rec->capacity * sizeof *rec->events);
        if (!rec->events) abort();
    }
    rec_event *e = &rec->events[rec->count++];
    e->type = check_strdup(event->type);
    e->saga_id = event->saga_id;
    e->payload = check_strdup(event->payload_json);
    e->version = event->version;
    mon_unlock_signal();
}

static inline void rec_free(recorder *rec) {
    for (size_t i = 0; i < rec->count; i++) {
        free(rec->events[i].type);
        free(rec->events[i].payload);
    }
    free(rec->events);
    memset(rec, 0, sizeof *rec);
}

/* Events of `type` (NULL: any) tagged with `saga_id` (0: any). Monitor locked. */
static inline size_t rec_count_locked(const recorder *rec, const char *type, uint64_t saga_id) {
    size_t n = 0;
    for (size_t i = 0; i < rec->count; i++) {
        if (type && strcmp(rec->events[i].type, type) != 0) continue;
        if (saga_id && rec->events[i].saga_id != saga_id) continue;
        n++;
    }
    return n;
}

/* The first event of `type` tagged with `saga_id` (0: any), or NULL. Monitor locked. */
static inline const rec_event *rec_find_locked(const recorder *rec, const char *type, uint64_t saga_id) {
    for (size_t i = 0; i < rec->count; i++) {
        if (strcmp(rec->events[i].type, type) != 0) continue;
        if (saga_id && rec->events[i].saga_id != saga_id) continue;
        return &rec->events[i];
    }
    return NULL;
}

/* Terminal events (SagaCompleted or SagaFailed) of saga `saga_id`. Monitor locked. */
static inline size_t rec_terminals_locked(const recorder *rec, uint64_t saga_id) {
    return rec_count_locked(rec, SL_EVENT_SAGA_COMPLETED, saga_id) + rec_count_locked(rec, SL_EVENT_SAGA_FAILED, saga_id);
}

/* Waits for the terminal event of `saga_id` and returns a copy of its payload, prefixed
   with the event type and a space ("SagaFailed {...}"). Free it. */
static inline char *rec_wait_terminal(recorder *rec, uint64_t saga_id) {
    mon_lock();
    WAIT_FOR_LOCKED(rec_terminals_locked(rec, saga_id) > 0);
    const rec_event *e = rec_find_locked(rec, SL_EVENT_SAGA_COMPLETED, saga_id);
    if (!e) e = rec_find_locked(rec, SL_EVENT_SAGA_FAILED, saga_id);
    size_t length = strlen(e->type) + 1 + strlen(e->payload) + 1;
    char *text = malloc(length);
    if (!text) abort();
    snprintf(text, length, "%s %s", e->type, e->payload);
    mon_unlock();
    return text;
}

/* ---- A watchdog, for scenarios whose likely failure is a hang ------------------------------ */

static const char *watchdog_what;
static inline void watchdog_fired(int sig) {
    (void)sig;
    static const char head[] = "watchdog: still waiting for ";
    ssize_t ignored = write(2, head, sizeof head - 1);
    ignored = write(2, watchdog_what, strlen(watchdog_what));
    ignored = write(2, "\n", 1);
    (void)ignored;
    _exit(3);
}

/* Ends the process with a message if it is still running after `seconds`. */
static inline void watchdog(unsigned seconds, const char *what) {
    watchdog_what = what;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = watchdog_fired;
    sigaction(SIGALRM, &action, NULL);
    alarm(seconds);
}

/* ---- Small things ------------------------------------------------------------------------ */

/* A scratch file in the test build folder, prefixed with the test's name (the static and
   shared builds of a scenario may run at once); removed first, with its WAL and
   shared-memory files. */
static inline void scratch_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s-%s", SL_TEST_SCRATCH_DIR, SL_TEST_NAME, name);
    char extra[1024];
    unlink(out);
    snprintf(extra, sizeof extra, "%s-wal", out);
    unlink(extra);
    snprintf(extra, sizeof extra, "%s-shm", out);
    unlink(extra);
    snprintf(extra, sizeof extra, "%s-journal", out);
    unlink(extra);
}

/* Opens a started runtime on an in-memory log (or `db_path`) with the given clock. */
static inline sl_runtime *open_runtime(const char *db_path, int clock) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = db_path;
    options.durability = SL_DURABILITY_NORMAL;
    options.clock = clock;
    sl_runtime *rt = NULL;
    int rc = sl_runtime_open(&options, &rt);
    if (rc != 0) {
        fprintf(stderr, "sl_runtime_open(%s): %s: %s\n", db_path ? db_path : "memory", sl_err_name(rc),
                sl_runtime_errmsg(rt));
        abort();
    }
    check_rt = rt;
    return rt;
}

/* A saga type's create that keeps no state. */
static inline int test_no_state(void *userdata, const char *input, void **state) {
    (void)userdata;
    (void)input;
    *state = NULL;
    return 0;
}

/* A saga type's create and destroy whose state is a copy of the input JSON. */
static inline int test_input_state(void *userdata, const char *input, void **state) {
    (void)userdata;
    *state = check_strdup(input);
    return 0;
}
static inline void test_free_state(void *userdata, void *state) {
    (void)userdata;
    free(state);
}

/* A saga type's start/on_event that waits. */
static inline void test_wait_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx, (void)action;
}
static inline void test_wait_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                            sl_action *action) {
    (void)userdata, (void)state, (void)ctx, (void)event, (void)action;
}

/* Starts this test again as a child process that runs `child(path, fd)` (see
   RUN_READY_CHILD) and writes `size` bytes to `fd` once it is ready to be killed; returns its
   pid once those bytes are in `ready`. Fork and exec, never fork alone: a child forked from a
   process that loaded sagalane may call nothing of it (SL_EFORKED). */
static inline pid_t spawn_ready_child(const char *path, void *ready, size_t size) {
    int fds[2];
    EXPECT(pipe(fds) == 0);
    pid_t pid = fork();
    EXPECT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char fd[16];
        snprintf(fd, sizeof fd, "%d", fds[1]);
        execl("/proc/self/exe", "child", "--ready-child", path, fd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    watchdog(30, "the child's readiness");
    EXPECT_EQ_INT(read(fds[0], ready, size), (ssize_t)size);
    alarm(0);
    close(fds[0]);
    return pid;
}

/* First thing in main() of a test that uses spawn_ready_child: in the child, run `child`. */
#define RUN_READY_CHILD(argc, argv, child)                                                           \
    do {                                                                                           \
        if ((argc) == 4 && strcmp((argv)[1], "--ready-child") == 0) {                              \
            child((argv)[2], atoi((argv)[3]));                                                     \
            _exit(3);                                                                              \
        }                                                                                          \
    } while (0)

/* A real crash: SIGKILL, nothing flushed, no handle closed. */
static inline void kill9(pid_t pid) {
    EXPECT(kill(pid, SIGKILL) == 0);
    int status = 0;
    EXPECT(waitpid(pid, &status, 0) == pid);
    EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* The crash tests' first act: puts the log's path for `name` in `path`, starts the child
   (RUN_READY_CHILD), waits for its one readiness byte 'Y', and kills it with SIGKILL. */
static inline void crash_ready_child(char *path, size_t size, const char *name) {
    scratch_path(path, size, name);
    char ready = 0;
    pid_t pid = spawn_ready_child(path, &ready, 1);
    EXPECT_EQ_INT(ready, 'Y');
    kill9(pid);
}

/* Milliseconds of wall-clock time (the log's timestamps). */
static inline int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms) {
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
    }
}

/* For states no callback announces (lane counters): polls `cond` every millisecond, and
   aborts after the guard. */
#define POLL_UNTIL(cond)                                                                            \
    do {                                                                                           \
        int64_t until_ = wall_ms() + WAIT_GUARD_SECONDS * 1000;                                    \
        while (!(cond)) {                                                                          \
            if (wall_ms() > until_)                                                                \
                check_fail_(__FILE__, __LINE__, "gave up after %d s polling for %s", WAIT_GUARD_SECONDS, #cond); \
            sleep_ms(1);                                                                           \
        }                                                                                          \
    } while (0)

#endif /* SAGALANE_TEST_CHECK_H */
