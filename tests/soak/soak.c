/*
 * sagalane-soak: a crash soak of the promises the C API makes.
 *
 *   sagalane-soak run [--cycles N] [--seed S] [--dir D] [--max-kill-ms M] [--verbose]
 *       N times: start the child, kill it with SIGKILL, check the log against every
 *       acknowledgement so far. One kill in three comes after a random time (from 0 ms, so
 *       some land during open, start-up recovery and lane creation), the others right after
 *       the child wrote its n-th acknowledgement of a chosen kind (inotify wakes the parent
 *       at every line). Then one clean run (the child closes and exits
 *       0) and the same checks, with everything required to have ended. Prints the figures
 *       and each violation (the ack lines and log rows behind the first three of each kind;
 *       of all with --verbose); exits 1 if there was one.
 *   sagalane-soak selftest [--seed S] [--dir D]
 *       Shows that each check fires: a clean run must give no violation; forged lines that
 *       contradict it, appended to a copy of its ack file, must each be reported; so must a
 *       copy of its log with a zeroed index page, one where an ended saga was rewritten as
 *       recovery would, one left with a saga running and a job queued, and one whose sagas of
 *       many steps ended wrong (a step left undone, a terminal event doubled or missing, a
 *       determinism error); and a child that exits or aborts instead of being killed, and a
 *       clean child that aborts.
 *   sagalane-soak child --db P --acks P --cycle N --seed S [--mode run|clean|exit|abort]
 *       The child (child.c). The parent starts it with fork and exec, never fork alone: a
 *       forked copy of a process must not call sagalane before it execs.
 *
 * The seed (printed; --seed replays it) fixes the kill times and the child's choices; thread
 * timing still differs from run to run, so a replay repeats the shape of a run, not its
 * every interleaving.
 */
#include "soak.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t soak_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void soak_sleep_ms(int64_t ms) {
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
    }
}

void soak_die(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "soak: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(2);
}

/* ---- Files ---------------------------------------------------------------------------------- */

typedef struct paths {
    char dir[PATH_MAX / 2];
    char db[PATH_MAX];
    char acks[PATH_MAX];
    char child_stderr[PATH_MAX];
} paths;

static void paths_make(paths *p, const char *dir, const char *name) {
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) soak_die("cannot create %s: %s", dir, strerror(errno));
    snprintf(p->db, sizeof p->db, "%s/%s.db", dir, name);
    snprintf(p->acks, sizeof p->acks, "%s/%s.acks", dir, name);
    snprintf(p->child_stderr, sizeof p->child_stderr, "%s/%s.child-stderr", dir, name);
    /* A fresh start: the log with its WAL and shared memory, and the acks. */
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char file[PATH_MAX + 16];
        snprintf(file, sizeof file, "%s%s", p->db, suffixes[i]);
        unlink(file);
    }
    unlink(p->acks);
}

/* The parent's own lines in the ack file, written as the child writes its own. */
static void parent_ack(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void parent_ack(const char *path, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || fdatasync(fd) != 0) soak_die("cannot write %s: %s", path, strerror(errno));
    close(fd);
}

static void print_file(const char *path, const char *indent) {
    FILE *file = fopen(path, "r");
    if (!file) return;
    char line[1024];
    int any = 0;
    while (fgets(line, sizeof line, file)) {
        printf("%s%s", indent, line);
        any = 1;
    }
    if (!any) printf("%s(nothing)\n", indent);
    fclose(file);
}

/* ---- Starting and ending children ----------------------------------------------------------- */

static char self_exe[PATH_MAX]; /* the child's argv[0] */

static const char *const mode_names[] = {"run", "clean", "exit", "abort"};

/* fork + exec of this same program in child mode, its standard error to a file. */
static pid_t spawn_child(const paths *p, int cycle, uint64_t seed, int mode) {
    char cycle_text[16], seed_text[32];
    snprintf(cycle_text, sizeof cycle_text, "%d", cycle);
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    char *argv[] = {self_exe, "child", "--db", (char *)p->db, "--acks", (char *)p->acks, "--cycle", cycle_text,
                    "--seed", seed_text, "--mode", (char *)mode_names[mode], NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) soak_die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. The child dies with the parent,
           so an interrupted soak leaves no child writing to the log. */
        int err = open(p->child_stderr, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDWR);
        if (err >= 0) dup2(err, 2);
        if (null >= 0) dup2(null, 1), dup2(null, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        /* This very program, even if a build replaced the file meanwhile. */
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    return pid;
}

static void describe_status(int status, char *out, size_t size) {
    if (WIFEXITED(status))
        snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, size, "died of signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, size, "status 0x%x", status);
}

/* When to kill: after `delay_ms`, or, with a `trigger`, as soon as the child's `nth` ack line
   of that kind appears (or after `delay_ms` at the latest). A kill right after the API
   answered is the moment its promise is most exposed: a random time rarely falls in the
   millisecond or two between an answer and the commit that makes it true. */
typedef struct kill_plan {
    int64_t delay_ms;
    const char *trigger; /* NULL: at delay_ms */
    int nth;
} kill_plan;

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Reads the ack file from `offset` each time it grows (inotify wakes this at every write)
   until the plan's line appears or its time is up. Returns whether the line appeared. */
static int wait_for_trigger(const char *acks, int64_t offset, const kill_plan *plan, int64_t started) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s ", plan->trigger);
    size_t prefix_length = strlen(prefix);
    int seen = 0, found = 0;
    char partial[4096];
    size_t partial_length = 0;
    int watch = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (watch < 0 || inotify_add_watch(watch, acks, IN_MODIFY) < 0) soak_die("inotify on %s: %s", acks, strerror(errno));
    int fd = open(acks, O_RDONLY | O_CLOEXEC);
    if (fd < 0) soak_die("cannot read %s: %s", acks, strerror(errno));
    for (;;) {
        /* Read first, then wait: a write between the two still wakes the poll. */
        char buffer[65536];
        ssize_t n;
        while (!found && (n = pread(fd, buffer, sizeof buffer, offset)) > 0) {
            offset += n;
            for (ssize_t i = 0; i < n && !found; i++) {
                if (buffer[i] != '\n') {
                    if (partial_length < sizeof partial) partial[partial_length++] = buffer[i];
                    continue;
                }
                found = partial_length >= prefix_length && memcmp(partial, prefix, prefix_length) == 0 && ++seen == plan->nth;
                partial_length = 0;
            }
        }
        int64_t left = plan->delay_ms - (soak_now_ms() - started);
        if (found || left <= 0) break;
        struct pollfd ready = {watch, POLLIN, 0};
        if (poll(&ready, 1, (int)left) > 0) {
            char events[4096];
            while (read(watch, events, sizeof events) > 0) {
            }
        }
    }
    close(fd);
    close(watch);
    return found;
}

/* Kills the child as `plan` says and checks it died of that SIGKILL and nothing else: a
   child that exited or crashed first is a violation. Returns the phase it reached; `*hit`
   says whether a trigger line fired the kill. */
static int kill_cycle(const paths *p, ack_model *model, int cycle, uint64_t seed, int mode, const kill_plan *plan,
                      int *hit, violation_list *found) {
    parent_ack(p->acks, "cycle %d %s %llu", cycle, mode_names[mode], (unsigned long long)seed);
    int64_t offset = file_size(p->acks);
    int64_t started = soak_now_ms();
    pid_t pid = spawn_child(p, cycle, seed, mode);
    *hit = 0;
    if (plan->trigger)
        *hit = wait_for_trigger(p->acks, offset, plan, started);
    else
        soak_sleep_ms(plan->delay_ms);
    int64_t delay_ms = soak_now_ms() - started;
    /* A child that already ended is a zombie until reaped: the kill still succeeds, and the
       status below says how it really ended. */
    if (kill(pid, SIGKILL) != 0) soak_die("kill: %s", strerror(errno));
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) soak_die("waitpid: %s", strerror(errno));
    model_read(model, p->acks);
    int phase = model_cycle_phase(model, cycle);
    static const char *const phases[] = {"before-open-ok", "before-start-ok", "before-lane-ok", "running"};
    if (*hit)
        parent_ack(p->acks, "kill %d %lld %s after-%s-%d", cycle, (long long)delay_ms, phases[phase], plan->trigger, plan->nth);
    else
        parent_ack(p->acks, "kill %d %lld %s", cycle, (long long)delay_ms, phases[phase]);
    model_read(model, p->acks);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
        char how[128];
        describe_status(status, how, sizeof how);
        char subject[32];
        snprintf(subject, sizeof subject, "cycle-%d", cycle);
        violations_add(found, V_CHILD_NOT_KILLED, subject, NULL, 0, "the child of cycle %d %s before the kill at %lld ms",
                       cycle, how, (long long)delay_ms);
        printf("  child of cycle %d %s; its standard error:\n", cycle, how);
        print_file(p->child_stderr, "    | ");
    }
    return phase;
}

/* The clean run: the child (`mode` CHILD_CLEAN, or another for the self-test) must finish
   its work, close and exit 0 within the guard. */
static void clean_cycle(const paths *p, ack_model *model, int cycle, uint64_t seed, int mode, violation_list *found) {
    parent_ack(p->acks, "cycle %d clean %llu", cycle, (unsigned long long)seed);
    pid_t pid = spawn_child(p, cycle, seed, mode);
    int64_t until = soak_now_ms() + 90000;
    int status = 0;
    pid_t done;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0) {
        if (soak_now_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            done = -2;
            break;
        }
        soak_sleep_ms(5);
    }
    model_read(model, p->acks);
    if (done != -2 && WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    char how[128];
    if (done == -2)
        snprintf(how, sizeof how, "did not finish within 90 s");
    else
        describe_status(status, how, sizeof how);
    violations_add(found, V_CLEAN_RUN_FAILED, "clean", NULL, 0, "the clean child %s", how);
    printf("  the clean child %s; its standard error:\n", how);
    print_file(p->child_stderr, "    | ");
}

/* ---- Reporting ------------------------------------------------------------------------------ */

/* The violations reported so far, by kind and subject, so each is printed once: a broken
   promise stays broken in every later check. */
typedef struct seen_set {
    strmap keys;
    size_t by_kind[V_COUNT];
} seen_set;

static int seen_add(seen_set *seen, const violation *v) {
    char key[512];
    snprintf(key, sizeof key, "%d|%s", (int)v->kind, v->subject);
    if (strmap_get(&seen->keys, key, &(size_t){0})) return 0;
    strmap_slot(&seen->keys, key, 1);
    seen->by_kind[v->kind]++;
    return 1;
}

/* Prints the violations not seen before: the first few of each kind with the ack lines and
   rows behind them, the next ones with their first line, then (unless `verbose`) only the
   counts in the summary. */
#define DETAILS_PER_KIND 3
#define LINES_PER_KIND 20
static int verbose;

static void report_new(seen_set *seen, const violation_list *list, const char *when) {
    for (size_t i = 0; i < list->count; i++) {
        const violation *v = &list->items[i];
        if (!seen_add(seen, v)) continue;
        size_t nth = seen->by_kind[v->kind];
        if (verbose || nth <= DETAILS_PER_KIND) {
            printf("VIOLATION %s (%s, found %s): %s\n", violation_name(v->kind), v->subject, when, v->detail);
        } else if (nth <= LINES_PER_KIND) {
            const char *newline = strchr(v->detail, '\n');
            int length = newline ? (int)(newline - v->detail) : (int)strlen(v->detail);
            printf("VIOLATION %s (%s, found %s): %.*s\n", violation_name(v->kind), v->subject, when, length, v->detail);
            if (nth == LINES_PER_KIND) printf("  (more %s violations are counted, not printed: --verbose prints them)\n", violation_name(v->kind));
        }
    }
    fflush(stdout);
}

/* ---- run ------------------------------------------------------------------------------------ */

typedef struct options {
    int cycles;
    uint64_t seed;
    const char *dir;
    int max_kill_ms;
} options;

/* Most kills fall anywhere in the child's first few hundred milliseconds; one in five falls
   in its first 40, where it is still opening the log, recovering or creating its lanes
   (which takes it some 15 to 35 ms, more when recovery has work). */
static int64_t pick_delay(soak_rng *rng, int max_kill_ms) {
    if (rng_below(rng, 5) == 0) return (int64_t)rng_below(rng, 40);
    return (int64_t)rng_below(rng, (uint64_t)max_kill_ms + 1);
}

/* The acknowledgements a kill may follow, each a promise that must already be on disk. The
   answers that return before their work is done (a start, a cancel) come up twice as often:
   the kinds take turns in this order, from a random start, so even a short run kills after
   each of them. */
static const char *const triggers[] = {"saga-start", "saga-cancel-ok", "job-cancel-ok", "job-submit",
                                       "saga-end",   "job-end",        "dispatch",      "answer"};
#define TRIGGER_COUNT (sizeof triggers / sizeof *triggers)
/* A dispatch is the moment its step row must be durable already; an answer the one where a
   step's success is not yet. */
static const int trigger_turns[] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 6};
#define TURN_COUNT (sizeof trigger_turns / sizeof *trigger_turns)

/* One cycle in three is killed at a random time, the others right after an ack. */
static kill_plan pick_plan(soak_rng *rng, int max_kill_ms, uint64_t *turn) {
    kill_plan plan = {pick_delay(rng, max_kill_ms), NULL, 0};
    if (rng_below(rng, 3) != 0) {
        plan.trigger = triggers[trigger_turns[(*turn)++ % TURN_COUNT]];
        plan.nth = 1 + (int)rng_below(rng, 12);
        plan.delay_ms = 2000; /* at the latest */
    }
    return plan;
}

static int run(const options *o) {
    paths p;
    paths_make(&p, o->dir, "soak");
    printf("soak: seed %llu, %d cycles killed after 0-%d ms, then a clean run; log %s\n", (unsigned long long)o->seed,
           o->cycles, o->max_kill_ms, p.db);
    fflush(stdout);
    soak_rng rng = {o->seed};
    ack_model *model = model_new();
    violation_list found = {0};
    seen_set seen = {0};
    size_t by_phase[4] = {0}, by_trigger[TRIGGER_COUNT] = {0}, trigger_missed = 0;
    int64_t started = soak_now_ms(), child_ms = 0, check_ms = 0;
    uint64_t turn = rng_next(&rng);

    for (int cycle = 1; cycle <= o->cycles; cycle++) {
        kill_plan plan = pick_plan(&rng, o->max_kill_ms, &turn);
        int64_t t0 = soak_now_ms();
        int hit = 0;
        by_phase[kill_cycle(&p, model, cycle, seed_mix(o->seed, (uint64_t)cycle), CHILD_RUN, &plan, &hit, &found)]++;
        for (size_t k = 0; hit && k < TRIGGER_COUNT; k++) by_trigger[k] += plan.trigger == triggers[k];
        trigger_missed += plan.trigger && !hit;
        int64_t t1 = soak_now_ms();
        check_log(model, p.db, 0, &found);
        check_ms += soak_now_ms() - t1;
        child_ms += t1 - t0;
        char when[32];
        snprintf(when, sizeof when, "after kill %d", cycle);
        report_new(&seen, &found, when);
        violations_clear(&found);
        if (cycle % 50 == 0) {
            printf("soak: %d cycles, %zu violations so far\n", cycle, seen.keys.count);
            fflush(stdout);
        }
    }
    int64_t t1 = soak_now_ms();
    clean_cycle(&p, model, o->cycles + 1, seed_mix(o->seed, (uint64_t)o->cycles + 1), CHILD_CLEAN, &found);
    int64_t clean_ms = soak_now_ms() - t1;
    check_log(model, p.db, 1, &found);
    report_new(&seen, &found, "after the clean run");
    violations_clear(&found);
    int64_t total_ms = soak_now_ms() - started;

    model_totals totals = model_get_totals(model);
    printf("\nsoak summary (seed %llu)\n", (unsigned long long)o->seed);
    printf("  cycles: %d killed + 1 clean run, %.1f s in all: %.0f ms per killed cycle (child %.0f ms, checks %.0f ms), clean run %lld ms\n",
           o->cycles, (double)total_ms / 1000, (double)(child_ms + check_ms) / o->cycles, (double)child_ms / o->cycles,
           (double)check_ms / o->cycles, (long long)clean_ms);
    printf("  kills by phase: before open-ok %zu, before start-ok %zu, before lane-ok %zu, running %zu\n", by_phase[0],
           by_phase[1], by_phase[2], by_phase[3]);
    printf("  kills right after an ack:");
    for (size_t k = 0; k < TRIGGER_COUNT; k++) printf(" %s %zu%s", triggers[k], by_trigger[k], k + 1 < TRIGGER_COUNT ? "," : "");
    printf(" (and %zu that waited in vain, killed at 2 s); the others at a random 0-%d ms\n", trigger_missed, o->max_kill_ms);
    printf("  sagas acknowledged: %zu started, %zu completed, %zu failed, %zu cancels returned 0\n", totals.saga_starts,
           totals.saga_completed, totals.saga_failed, totals.saga_cancels);
    printf("  jobs acknowledged: %zu submitted, %zu cancels returned 0, %zu starts, %zu ends, %zu rebuilt at lane creation\n",
           totals.job_submits, totals.job_cancels, totals.job_starts, totals.job_ends, totals.job_rebuilt);
    printf("  sagas of many steps acknowledged: %zu resume, %zu compensate started; %zu step dispatches, %zu compensation dispatches\n",
           totals.multi_starts[0], totals.multi_starts[1], totals.step_dispatches, totals.undo_dispatches);
    log_summary(p.db, stdout);
    if (totals.lagged) printf("  the subscription lagged %zu times (saga-end acks missing)\n", totals.lagged);
    if (model_torn_tail(model)) printf("  the ack file ends in a torn line (a write(2) was not whole)\n");
    printf("  violations: %zu\n", seen.keys.count);
    for (int k = 0; k < V_COUNT; k++)
        if (seen.by_kind[k]) printf("    %-24s %zu\n", violation_name((violation_kind)k), seen.by_kind[k]);
    printf("  files: %s, %s\n", p.db, p.acks);
    model_free(model);
    size_t total = seen.keys.count;
    strmap_free(&seen.keys);
    return total ? 1 : 0;
}

/* ---- selftest ------------------------------------------------------------------------------- */

static int selftest_failures;

static void selftest_expect(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void selftest_expect(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!ok) selftest_failures++;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out) soak_die("cannot copy %s to %s: %s", from, to, strerror(errno));
    char buffer[65536];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, in)) > 0)
        if (fwrite(buffer, 1, n, out) != n) soak_die("cannot write %s", to);
    fclose(in);
    if (fclose(out) != 0) soak_die("cannot write %s", to);
}

/* Copies the log with its WAL into `to` and checkpoints the copy, so that every page is in
   the one file (the closed log may still have its pages in the WAL). Returns an open
   read-write connection to the copy, or NULL. */
static sqlite3 *checkpointed_copy(const char *from, const char *to) {
    char from_wal[PATH_MAX + 16], to_wal[PATH_MAX + 32];
    snprintf(from_wal, sizeof from_wal, "%s-wal", from);
    snprintf(to_wal, sizeof to_wal, "%s-wal", to);
    copy_file(from, to);
    unlink(to_wal);
    if (access(from_wal, F_OK) == 0) copy_file(from_wal, to_wal);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(to, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* A forged line and the check that must name it. */
typedef struct forgery {
    char line[512];
    violation_kind kind;
    size_t number; /* its line number once appended */
} forgery;

static int reported(const violation_list *list, violation_kind kind, size_t line) {
    for (size_t i = 0; i < list->count; i++) {
        if (list->items[i].kind != kind) continue;
        for (int k = 0; k < list->items[i].line_count; k++)
            if (list->items[i].lines[k] == line) return 1;
    }
    return 0;
}

static int reported_subject(const violation_list *list, violation_kind kind, const char *subject) {
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].kind == kind && strcmp(list->items[i].subject, subject) == 0) return 1;
    return 0;
}

static int selftest(const options *o) {
    printf("soak selftest: seed %llu\n", (unsigned long long)o->seed);

    /* 1. A clean run, no kill: nothing to report. A checker that reports what is not there
          would fail here. */
    paths p;
    paths_make(&p, o->dir, "selftest");
    ack_model *model = model_new();
    violation_list found = {0};
    clean_cycle(&p, model, 1, seed_mix(o->seed, 1), CHILD_CLEAN, &found);
    check_log(model, p.db, 1, &found);
    for (size_t i = 0; i < found.count; i++)
        printf("  unexpected: %s (%s): %s\n", violation_name(found.items[i].kind), found.items[i].subject, found.items[i].detail);
    model_totals totals = model_get_totals(model);
    selftest_expect(found.count == 0, "a clean run (%zu sagas, %zu jobs) gives no violation (%zu found)", totals.saga_starts,
                    totals.job_submits, found.count);
    violations_clear(&found);

    /* 2. Forged acknowledgements that contradict the run, each of which must be reported. */
    model_picks picks = model_pick(model);
    selftest_expect(picks.saga_count >= 4 && picks.first_saga_line[0] && picks.started_job[0] && picks.started_job2[0] &&
                        picks.finished_job[0],
                    "the clean run gave ids to forge from (%d completed sagas, jobs '%s' '%s' '%s')", picks.saga_count,
                    picks.started_job, picks.started_job2, picks.finished_job);
    if (picks.saga_count < 4) picks.saga_count = 0;
    forgery forged[32];
    int n = 0;
    /* the same saga-start again: one id acknowledged twice */
    snprintf(forged[n].line, sizeof forged[n].line, "%s", picks.first_saga_line);
    forged[n++].kind = V_SAGA_ID_REUSED;
    if (picks.saga_count >= 4) {
        /* an id handed out for a saga whose nonce is not in the row */
        snprintf(forged[n].line, sizeof forged[n].line, "saga-start %llu forged-nonce", (unsigned long long)picks.saga_ids[0]);
        forged[n++].kind = V_SAGA_FOREIGN;
        /* a terminal event the log contradicts */
        snprintf(forged[n].line, sizeof forged[n].line, "saga-end %llu failed {\"name\":\"soak\",\"reason\":\"forged\"}",
                 (unsigned long long)picks.saga_ids[1]);
        forged[n++].kind = V_SAGA_END_MISMATCH;
        /* a second terminal event that agrees with the log */
        snprintf(forged[n].line, sizeof forged[n].line, "saga-end %llu completed {\"name\":\"soak\"}",
                 (unsigned long long)picks.saga_ids[3]);
        forged[n++].kind = V_SAGA_END_TWICE;
        /* a cancel that "returned 0" for a saga that completed */
        snprintf(forged[n].line, sizeof forged[n].line, "saga-cancel-ok %llu", (unsigned long long)picks.saga_ids[2]);
        forged[n++].kind = V_SAGA_CANCEL_LOST;
    }
    /* an id no row holds */
    snprintf(forged[n].line, sizeof forged[n].line, "saga-start 987654321 forged-missing");
    forged[n++].kind = V_SAGA_MISSING;
    /* a job the log never heard of */
    snprintf(forged[n].line, sizeof forged[n].line, "job-submit forged-job 0");
    forged[n++].kind = V_JOB_MISSING;
    if (picks.started_job2[0]) {
        /* a cancel that "returned 0" for a job that ran */
        snprintf(forged[n].line, sizeof forged[n].line, "job-cancel-ok %s", picks.started_job2);
        forged[n++].kind = V_JOB_CANCEL_RAN;
        snprintf(forged[n].line, sizeof forged[n].line, "job-cancel-ok %s", picks.started_job2);
        forged[n++].kind = V_JOB_CANCEL_ROW;
    }
    if (picks.started_job[0]) {
        /* a second run of a job that may run once */
        snprintf(forged[n].line, sizeof forged[n].line, "job-start %s 1", picks.started_job);
        forged[n++].kind = V_JOB_RAN_TWICE;
        /* a second acceptance of one id */
        snprintf(forged[n].line, sizeof forged[n].line, "job-submit %s 0", picks.started_job);
        forged[n++].kind = V_JOB_SUBMIT_TWICE;
    }
    /* Sagas of many steps: a dispatch with no step row; one (saga id, step) sent as another
       step, one step sent under another index (of a saga whose steps 0 and 1 went out); a
       step 1 with no step 0 before it; a compensation of a step never sent; compensations
       in the order of their steps. The sagas 98765400x have no rows. */
    snprintf(forged[n].line, sizeof forged[n].line, "dispatch 987654001 0 ledger do 0 ok");
    forged[n++].kind = V_STEP_NOT_DURABLE;
    if (picks.multi_saga) {
        snprintf(forged[n].line, sizeof forged[n].line, "dispatch %llu 1 refund undo 0 ok 0", (unsigned long long)picks.multi_saga);
        forged[n++].kind = V_STEP_KEY_CONFLICT;
        snprintf(forged[n].line, sizeof forged[n].line, "dispatch %llu 7 ledger do 1 ok", (unsigned long long)picks.multi_saga);
        forged[n++].kind = V_STEP_TWO_KEYS;
    }
    snprintf(forged[n].line, sizeof forged[n].line, "dispatch 987654002 1 ledger do 1 ok");
    forged[n++].kind = V_STEP_ORDER;
    snprintf(forged[n].line, sizeof forged[n].line, "dispatch 987654003 2 refund undo 0 ok 0");
    forged[n++].kind = V_UNDO_UNSUCCEEDED;
    snprintf(forged[n].line, sizeof forged[n].line, "dispatch 987654003 3 refund undo 1 ok 1");
    forged[n++].kind = V_UNDO_ORDER;
    if (picks.finished_job[0]) {
        /* a done callback the row contradicts */
        snprintf(forged[n].line, sizeof forged[n].line, "job-end %s cancelled 0", picks.finished_job);
        forged[n++].kind = V_JOB_END_MISMATCH;
        snprintf(forged[n].line, sizeof forged[n].line, "job-end %s cancelled 0", picks.finished_job);
        forged[n++].kind = V_JOB_END_TWICE;
    }

    char forged_acks[PATH_MAX + 16];
    snprintf(forged_acks, sizeof forged_acks, "%s.forged", p.acks);
    copy_file(p.acks, forged_acks);
    size_t base = model_line_count(model);
    size_t appended = 0;
    for (int i = 0; i < n; i++) {
        /* Two forgeries may share one line (a cancel of a job that ran breaks two promises). */
        if (i > 0 && strcmp(forged[i].line, forged[i - 1].line) == 0) {
            forged[i].number = forged[i - 1].number;
            continue;
        }
        parent_ack(forged_acks, "%s", forged[i].line);
        forged[i].number = base + ++appended;
    }
    ack_model *forged_model = model_new();
    model_read(forged_model, forged_acks);
    check_log(forged_model, p.db, 1, &found);
    for (int i = 0; i < n; i++)
        selftest_expect(reported(&found, forged[i].kind, forged[i].number), "%s reports forged line %zu: %s",
                        violation_name(forged[i].kind), forged[i].number, forged[i].line);
    violations_clear(&found);
    model_free(forged_model);

    /* 3. A damaged log: zeros over the root page of an index. Queries of the tables do not
          read it; only PRAGMA integrity_check can tell. */
    char damaged[PATH_MAX + 16];
    snprintf(damaged, sizeof damaged, "%s.damaged", p.db);
    long long root = 0, page_size = 0;
    sqlite3 *db = checkpointed_copy(p.db, damaged);
    sqlite3_stmt *stmt = NULL;
    if (db &&
        sqlite3_prepare_v2(db,
                           "SELECT (SELECT rootpage FROM sqlite_master WHERE type = 'index' AND name = 'saga_ended'),"
                           " page_size FROM pragma_page_size",
                           -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        root = sqlite3_column_int64(stmt, 0);
        page_size = sqlite3_column_int64(stmt, 1);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    int fd = open(damaged, O_WRONLY);
    char zeros[65536] = {0};
    int wrote = fd >= 0 && root > 1 && page_size > 0 && page_size <= (long long)sizeof zeros &&
                pwrite(fd, zeros, (size_t)page_size, (off_t)((root - 1) * page_size)) == (ssize_t)page_size;
    if (fd >= 0) close(fd);
    check_log(model, damaged, 1, &found);
    int integrity = 0;
    for (size_t i = 0; i < found.count; i++) integrity |= found.items[i].kind == V_LOG_INTEGRITY;
    selftest_expect(wrote && integrity, "log-integrity reports a log whose index saga_ended (page %lld) is zeroed (%s)",
                    root, found.count ? found.items[0].detail : "nothing reported");
    violations_clear(&found);

    /* 4. A log that rewrote an ended saga, as start-up recovery would: the failed saga's row
          becomes failed_compensation with "; interrupted: ..." appended. */
    char rewritten[PATH_MAX + 16];
    snprintf(rewritten, sizeof rewritten, "%s.rewritten", p.db);
    db = checkpointed_copy(p.db, rewritten);
    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE saga SET state = 'failed_compensation', failure_reason = failure_reason || '; interrupted: forged'"
             " WHERE id = %llu",
             (unsigned long long)picks.failed_saga);
    int updated = db && picks.failed_saga && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK && sqlite3_changes(db) == 1;
    sqlite3_close(db);
    check_log(model, rewritten, 1, &found);
    selftest_expect(updated && reported(&found, V_SAGA_END_REWRITTEN, picks.failed_saga_end_line),
                    "saga-end-rewritten reports saga %llu, whose end (line %zu) the forged log rewrote",
                    (unsigned long long)picks.failed_saga, picks.failed_saga_end_line);
    violations_clear(&found);

    /* 5. A log left with unfinished rows after the clean run: a saga still running, a job
          still queued. */
    char unfinished[PATH_MAX + 16];
    snprintf(unfinished, sizeof unfinished, "%s.unfinished", p.db);
    db = checkpointed_copy(p.db, unfinished);
    int changed = db && picks.saga_count > 0 && picks.finished_job[0];
    if (changed) {
        snprintf(sql, sizeof sql, "UPDATE saga SET state = 'running', ended_at = NULL WHERE id = %llu",
                 (unsigned long long)picks.saga_ids[0]);
        changed = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK && sqlite3_changes(db) == 1;
        snprintf(sql, sizeof sql, "UPDATE lane_job SET state = 'queued' WHERE id = '%s'", picks.finished_job);
        changed = changed && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK && sqlite3_changes(db) == 1;
    }
    sqlite3_close(db);
    check_log(model, unfinished, 1, &found);
    char saga_subject[32];
    snprintf(saga_subject, sizeof saga_subject, "%llu", (unsigned long long)picks.saga_ids[0]);
    selftest_expect(changed && reported_subject(&found, V_SAGA_NEVER_ENDED, saga_subject),
                    "saga-never-ended reports saga %s, left running in the forged log", saga_subject);
    selftest_expect(changed && reported_subject(&found, V_JOB_NEVER_ENDED, picks.finished_job),
                    "job-never-ended reports job %s, left queued in the forged log", picks.finished_job);
    violations_clear(&found);

    /* 5b. A log whose sagas of many steps ended wrong: a compensated saga with a succeeded
          step left as it was, a saga with a second terminal event and one with none, a saga
          failed with a determinism error. */
    char multi_db[PATH_MAX + 16];
    snprintf(multi_db, sizeof multi_db, "%s.multi", p.db);
    db = checkpointed_copy(p.db, multi_db);
    long long undone = 0, twice = 0, none = 0, diverged = 0;
    static const char *const picks_sql[4] = {
        "SELECT s.saga_id FROM saga_step s JOIN saga g ON g.id = s.saga_id WHERE g.state = 'compensated'"
        " AND s.state = 'compensated' ORDER BY s.saga_id LIMIT 1",
        "SELECT id FROM saga WHERE state = 'completed' ORDER BY id LIMIT 1",
        "SELECT id FROM saga WHERE state = 'completed' ORDER BY id LIMIT 1 OFFSET 1",
        "SELECT id FROM saga WHERE name IN ('resume', 'compensate') AND state <> 'completed' ORDER BY id DESC LIMIT 1"};
    long long *picked[4] = {&undone, &twice, &none, &diverged};
    for (int i = 0; db && i < 4; i++) {
        stmt = NULL;
        if (sqlite3_prepare_v2(db, picks_sql[i], -1, &stmt, NULL) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW)
            *picked[i] = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
    }
    changed = db && undone && twice && none && diverged;
    if (changed) {
        snprintf(sql, sizeof sql,
                 "UPDATE saga_step SET state = 'succeeded' WHERE saga_id = %lld AND state = 'compensated' AND compensates IS NULL",
                 undone);
        changed = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK && sqlite3_changes(db) >= 1;
        snprintf(sql, sizeof sql,
                 "INSERT INTO saga_event (saga_id, type, payload_json, at) SELECT saga_id, type, payload_json, at FROM saga_event"
                 " WHERE saga_id = %lld AND type = 'SagaCompleted'",
                 twice);
        changed = changed && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK && sqlite3_changes(db) == 1;
        snprintf(sql, sizeof sql, "DELETE FROM saga_event WHERE saga_id = %lld AND type = 'SagaCompleted'", none);
        changed = changed && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK && sqlite3_changes(db) == 1;
        snprintf(sql, sizeof sql, "UPDATE saga SET failure_reason = 'determinism error: replaying step 1, forged' WHERE id = %lld",
                 diverged);
        changed = changed && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK && sqlite3_changes(db) == 1;
    }
    sqlite3_close(db);
    check_log(model, multi_db, 1, &found);
    char multi_subject[4][32];
    for (int i = 0; i < 4; i++) snprintf(multi_subject[i], sizeof multi_subject[i], "%lld", *picked[i]);
    selftest_expect(changed && reported_subject(&found, V_UNDO_INCOMPLETE, multi_subject[0]),
                    "undo-incomplete reports saga %s, compensated with a step the forged log says succeeded", multi_subject[0]);
    selftest_expect(changed && reported_subject(&found, V_TERMINAL_COUNT, multi_subject[1]),
                    "terminal-event-count reports saga %s, given a second SagaCompleted", multi_subject[1]);
    selftest_expect(changed && reported_subject(&found, V_TERMINAL_COUNT, multi_subject[2]),
                    "terminal-event-count reports saga %s, its SagaCompleted deleted", multi_subject[2]);
    selftest_expect(changed && reported_subject(&found, V_DETERMINISM, multi_subject[3]),
                    "determinism-error reports saga %s, failed with one in the forged log", multi_subject[3]);
    violations_clear(&found);
    model_free(model);

    /* 6. Children that end before the kill, by exit and by abort. */
    static const int modes[] = {CHILD_EXIT, CHILD_ABORT};
    for (size_t i = 0; i < 2; i++) {
        paths q;
        paths_make(&q, o->dir, mode_names[modes[i]]);
        ack_model *m = model_new();
        kill_plan plan = {1500, NULL, 0};
        int hit = 0;
        kill_cycle(&q, m, 1, seed_mix(o->seed, 100 + i), modes[i], &plan, &hit, &found);
        int named = found.count == 1 && found.items[0].kind == V_CHILD_NOT_KILLED;
        selftest_expect(named, "child-not-killed reports a child that %s before the kill (%s)",
                        modes[i] == CHILD_EXIT ? "exits" : "aborts", found.count ? found.items[0].detail : "nothing");
        violations_clear(&found);
        model_free(m);
    }

    /* 7. A clean run whose child does not exit 0. */
    paths q;
    paths_make(&q, o->dir, "clean-abort");
    ack_model *m = model_new();
    clean_cycle(&q, m, 1, seed_mix(o->seed, 200), CHILD_ABORT, &found);
    selftest_expect(found.count == 1 && found.items[0].kind == V_CLEAN_RUN_FAILED,
                    "clean-run-failed reports a clean child that aborts (%s)", found.count ? found.items[0].detail : "nothing");
    violations_clear(&found);
    model_free(m);

    printf("soak selftest: %s\n", selftest_failures ? "FAILED" : "passed");
    return selftest_failures ? 1 : 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(void) __attribute__((noreturn));
static void usage(void) {
    fprintf(stderr,
            "usage: sagalane-soak run [--cycles N] [--seed S] [--dir D] [--max-kill-ms M] [--verbose]\n"
            "       sagalane-soak selftest [--seed S] [--dir D]\n"
            "       sagalane-soak child --db P --acks P --cycle N --seed S [--mode run|clean|exit|abort]\n");
    exit(2);
}

static long long number_arg(const char *text) {
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || !end || *end || value < 0) {
        fprintf(stderr, "soak: not a number: '%s'\n", text);
        usage();
    }
    return value;
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    ssize_t length = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (length <= 0) soak_die("cannot find this program through /proc/self/exe: %s", strerror(errno));
    self_exe[length] = '\0';
    setvbuf(stdout, NULL, _IOLBF, 0);

    const char *command = argv[1];
    options o = {.cycles = 500, .dir = "soak-scratch", .max_kill_ms = 400};
    o.seed = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    child_args child = {.cycle = 0, .mode = CHILD_RUN};
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--verbose") == 0) {
            verbose = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *value = argv[++i];
        if (strcmp(arg, "--cycles") == 0) o.cycles = (int)number_arg(value);
        else if (strcmp(arg, "--seed") == 0) o.seed = child.seed = (uint64_t)strtoull(value, NULL, 10);
        else if (strcmp(arg, "--dir") == 0) o.dir = value;
        else if (strcmp(arg, "--max-kill-ms") == 0) o.max_kill_ms = (int)number_arg(value);
        else if (strcmp(arg, "--db") == 0) child.db_path = value;
        else if (strcmp(arg, "--acks") == 0) child.ack_path = value;
        else if (strcmp(arg, "--cycle") == 0) child.cycle = (int)number_arg(value);
        else if (strcmp(arg, "--mode") == 0) {
            child.mode = -1;
            for (int m = 0; m < 4; m++)
                if (strcmp(value, mode_names[m]) == 0) child.mode = m;
            if (child.mode < 0) usage();
        } else {
            usage();
        }
    }
    if (strcmp(command, "child") == 0) {
        if (!child.db_path || !child.ack_path) usage();
        return child_main(&child);
    }
    if (strcmp(command, "run") == 0) {
        if (o.cycles < 1) usage();
        return run(&o);
    }
    if (strcmp(command, "selftest") == 0) return selftest(&o);
    usage();
}
