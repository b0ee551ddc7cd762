/*
 * The crash soak: what its three parts share.
 *
 *   child.c   drives sagas and persisted lane jobs through the C API on a file log and writes
 *             every acknowledgement the API gives it to an ack file, until it is killed;
 *   check.c   reads the ack file and the log (with SQLite, not with sagalane) and lists every
 *             acknowledgement the log contradicts;
 *   soak.c    the parent: starts the child (fork + exec), kills it with SIGKILL at a random
 *             moment or right after an acknowledgement, checks, again and again; and the
 *             self-test of the checks.
 *
 * The ack file is plain text, one event per line, each line one write(2) on an O_APPEND
 * descriptor followed by fdatasync, so a line is either there whole or not at all:
 *
 *   cycle <n> <mode> <seed>          (parent) a child of cycle n starts
 *   kill <n> <ms> <phase> [after-<kind>-<k>]   (parent) it was killed after ms milliseconds,
 *                                    in phase, right after its k-th line of that kind
 *   open-ok | start-ok <recovered> | lane-ok <rebuilt> | clean-done | closed
 *   saga-start <id> <nonce> <type>   sl_saga_start returned 0 with this id
 *   saga-cancel-ok <id>              sl_saga_cancel returned 0
 *   saga-end <id> <completed|failed> <payload JSON>   SagaCompleted / SagaFailed delivered
 *   job-submit <id> <idempotent 0|1> sl_lane_submit returned 0
 *   job-cancel-ok <id>               sl_lane_cancel returned 0
 *   job-start <id> <attempt>         the first thing a job body does
 *   job-fail <id> <attempt>          the last thing a body that fails does
 *   job-end <id> <finished|failed|cancelled> <attempts>   the job's done callback
 *   job-rebuilt <id> <attempts>      the lane's reconstruct callback rebuilt a queued row
 *   lagged <payload JSON>            the subscription missed events (its acks are missing)
 *   dispatch <saga> <step> <target> do <k> <fate>   a target got step k of a saga of many
 *                                    steps under that step index; fate ok, fail or silent
 *   dispatch <saga> <step> <target> undo <k> <fate> <compensates>   ... the compensation of
 *                                    step k, with the "compensates" the runtime injected
 *   answer <saga> <step> <ok|fail>   the host is about to answer that dispatch
 *
 * The dispatch lines are written on the loop thread without fdatasync: a line written is in
 * the page cache, which a SIGKILL of the child does not lose.
 */
#ifndef SAGALANE_SOAK_H
#define SAGALANE_SOAK_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* ---- Small things every part uses ----------------------------------------------------------- */

/* splitmix64: small, fast, good enough to scatter timings; one state per thread. */
typedef struct soak_rng {
    uint64_t state;
} soak_rng;

static inline uint64_t rng_next(soak_rng *rng) {
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A number in [0, n). */
static inline uint64_t rng_below(soak_rng *rng, uint64_t n) { return n ? rng_next(rng) % n : 0; }

/* A seed derived from another one and a tag, so each cycle and thread has its own stream. */
static inline uint64_t seed_mix(uint64_t seed, uint64_t tag) {
    soak_rng rng = {seed ^ (tag * 0xD1B54A32D192ED03ull)};
    return rng_next(&rng);
}

int64_t soak_now_ms(void); /* monotonic */
void soak_sleep_ms(int64_t ms);
/* Prints "soak: <message>" on standard error and exits with status 2: the harness itself
   could not go on (as opposed to a violation it found). */
void soak_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* A map from strings to indexes (open addressing), for the checks and the parent. */
typedef struct strmap {
    char **keys;
    size_t *values;
    size_t capacity, count;
} strmap;

/* The value slot of `key`, or NULL when it is absent and `create` is 0 (a new slot holds 0). */
size_t *strmap_slot(strmap *map, const char *key, int create);
int strmap_get(const strmap *map, const char *key, size_t *value);
void strmap_free(strmap *map);

/* ---- The child ------------------------------------------------------------------------------ */

enum {
    CHILD_RUN = 0,   /* work until killed */
    CHILD_CLEAN = 1, /* a bounded amount of work, then wait for it all, close and exit 0 */
    CHILD_EXIT = 2,  /* self-test: exit(0) right after open-ok, as a broken child might */
    CHILD_ABORT = 3  /* self-test: abort() right after open-ok */
};

typedef struct child_args {
    const char *db_path;
    const char *ack_path;
    int cycle;
    uint64_t seed;
    int mode;
} child_args;

int child_main(const child_args *args);

/* ---- The checks ----------------------------------------------------------------------------- */

/* Every way the log can contradict what the API acknowledged, and the process-level
   failures the parent sees. */
typedef enum {
    V_LOG_INTEGRITY,      /* PRAGMA integrity_check is not ok, or the log cannot be read */
    V_SAGA_ID_REUSED,     /* two saga-start lines with one id */
    V_SAGA_MISSING,       /* an acknowledged saga id has no row */
    V_SAGA_FOREIGN,       /* its row holds another saga's input (another nonce) */
    V_SAGA_END_MISMATCH,  /* saga-end says completed/failed, the row says otherwise */
    V_SAGA_END_TWICE,     /* two terminal events for one saga */
    V_SAGA_CANCEL_LOST,   /* saga-cancel-ok, yet the saga ended other than cancelled */
    V_SAGA_END_REWRITTEN, /* an end was acknowledged, and a restart's recovery rewrote it */
    V_SAGA_NEVER_ENDED,   /* after the clean run, a saga row still running */
    V_JOB_SUBMIT_TWICE,   /* two job-submit lines with one id */
    V_JOB_MISSING,        /* an acknowledged job has no row */
    V_JOB_CANCEL_RAN,     /* job-cancel-ok, and the job started */
    V_JOB_CANCEL_ROW,     /* job-cancel-ok, and its row is not cancelled */
    V_JOB_RAN_TWICE,      /* more runs than the job allows, or attempts not increasing */
    V_JOB_END_MISMATCH,   /* job-end's state differs from the row's */
    V_JOB_END_TWICE,      /* two done callbacks for one job */
    V_JOB_NEVER_ENDED,    /* after the clean run, a job row still queued or running */
    V_STEP_NOT_DURABLE,   /* a step was dispatched, and the log has no row of it (or another) */
    V_STEP_KEY_CONFLICT,  /* one (saga id, step) dispatched as two different steps */
    V_STEP_TWO_KEYS,      /* one step of a saga dispatched under two (saga id, step) keys */
    V_STEP_ORDER,         /* a forward step dispatched before the one before it succeeded */
    V_UNDO_UNSUCCEEDED,   /* a compensation dispatched for a step that had not succeeded */
    V_UNDO_ORDER,         /* compensations not in reverse order of their steps, one at a time */
    V_UNDO_INCOMPLETE,    /* it ended compensated (or failed) with a succeeded step not undone */
    V_TERMINAL_COUNT,     /* the lifecycle table has no or two terminal events for an ended saga */
    V_DETERMINISM,        /* a saga failed with a determinism error: its replay diverged */
    V_CHILD_NOT_KILLED,   /* the child exited or died of something other than our SIGKILL */
    V_CLEAN_RUN_FAILED,   /* the clean child did not exit 0 */
    V_COUNT
} violation_kind;

const char *violation_name(violation_kind kind);

#define VIOLATION_MAX_LINES 8

typedef struct violation {
    violation_kind kind;
    char *subject;                       /* the saga or job id (with the kind: the dedup key) */
    char *detail;                        /* what contradicts what: ack lines, rows, timing */
    size_t lines[VIOLATION_MAX_LINES];   /* ack file line numbers behind it (1-based) */
    int line_count;
} violation;

typedef struct violation_list {
    violation *items;
    size_t count, capacity;
} violation_list;

void violations_add(violation_list *list, violation_kind kind, const char *subject, const size_t *lines,
                    int line_count, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void violations_clear(violation_list *list);

/* What the ack file says, read incrementally: each call reads the lines added since. */
typedef struct ack_model ack_model;

ack_model *model_new(void);
void model_free(ack_model *model);
/* Reads the lines appended to `path` since the last call. A line without its newline (never
   expected: each is one write) is left for later and counted by model_torn_tail(). */
void model_read(ack_model *model, const char *path);
int model_torn_tail(const ack_model *model);

/* The phase the latest cycle's child reached: 0 nothing, 1 open-ok, 2 start-ok, 3 lane-ok. */
int model_cycle_phase(const ack_model *model, int cycle);
/* Line `number` (1-based) of the ack file, or NULL. */
const char *model_line(const ack_model *model, size_t number);
size_t model_line_count(const ack_model *model);

typedef struct model_totals {
    size_t saga_starts, saga_cancels, saga_completed, saga_failed;
    size_t job_submits, job_cancels, job_starts, job_ends, job_rebuilt;
    size_t lagged;
    /* Sagas of many steps, by type (0 resume, 1 compensate): started, dispatches of steps and
       of compensations. */
    size_t multi_starts[2], step_dispatches, undo_dispatches;
} model_totals;
model_totals model_get_totals(const ack_model *model);

/* The figures the self-test forges its lines from: ids that exist in the run. */
typedef struct model_picks {
    uint64_t saga_ids[4];        /* sagas of the last cycle that ended completed (acked) */
    int saga_count;
    char first_saga_line[256];   /* a real saga-start line */
    char started_job[128];       /* a job with one job-start, not idempotent */
    char started_job2[128];      /* another job that started */
    char finished_job[128];      /* a job whose job-end says finished */
    uint64_t failed_saga;        /* a saga of the last cycle that ended failed, not cancelled */
    size_t failed_saga_end_line; /* its saga-end line */
    uint64_t multi_saga;         /* a saga of many steps whose steps 0 and 1 were dispatched */
} model_picks;
model_picks model_pick(const ack_model *model);

/* Holds `db_path` to every acknowledgement in `model`. `final`: the clean run is over, so
   everything acknowledged must have ended. Adds what it finds to `out`. */
void check_log(const ack_model *model, const char *db_path, int final, violation_list *out);
/* Prints the log's sagas by type and state. */
void log_summary(const char *db_path, FILE *out);

#endif /* SAGALANE_SOAK_H */
