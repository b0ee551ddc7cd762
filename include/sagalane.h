/*
 * sagalane.h — the C API of sagalane, an embeddable durable saga runtime.
 *
 * A runtime owns one event loop, one SQLite log, one event bus, a saga coordinator and a pool
 * of lanes. The host opens it, registers saga types, triggers and command targets, starts it,
 * and from then on publishes events, starts sagas and submits lane jobs.
 *
 * Conventions
 *   - Every function returning int returns 0 on success or a negative SL_E* code. The detail
 *     of the last failure is in sl_runtime_errmsg(). Besides the codes each function lists,
 *     any call answers SL_EINVAL for a NULL handle or a NULL required pointer, SL_ECLOSED for
 *     a closed handle, and SL_EUTF8 for a string that is not valid UTF-8.
 *   - Strings passed in are NUL-terminated UTF-8, borrowed for the duration of the call only.
 *     JSON text must be strict RFC 8259 JSON (sagalane's parser rejects everything else).
 *   - Strings and buffers handed out (char **out parameters) are allocated by sagalane and
 *     must be freed with sl_free().
 *   - Structs passed in start with a `size` field: set it to sizeof(the struct), or call the
 *     matching *_init function, so the struct can grow without breaking the ABI.
 *   - Every callback receives the `void *userdata` given with it. Its documentation says which
 *     thread calls it. "The loop thread" is the runtime's event loop thread: sagalane's own
 *     thread (SL_LOOP_THREAD, the default), or the host thread that calls sl_runtime_run()
 *     (SL_LOOP_HOST).
 *   - When a call that takes a callback fails, that callback is never called and its userdata
 *     stays the caller's.
 *   - Functions are safe to call from any thread unless their documentation says otherwise.
 *   - JSON handed to callbacks (payloads, commands, inputs) is compact, with object keys
 *     sorted by their UTF-8 bytes, so equal values always read the same. Of a name repeated
 *     in one object, the last wins.
 *   - Names (saga types, targets, lanes, event types, job ids) compare byte for byte, never
 *     by Unicode equivalence: "caf\u00e9" and "cafe\u0301" are two names.
 *   - Close and free functions accept NULL.
 *   - SQLite: the first log sagalane opens in a process that has not yet initialized SQLite
 *     turns SQLite's memory statistics off (SQLITE_CONFIG_MEMSTATUS), which cost a global
 *     mutex on every allocation; sqlite3_memory_used() then reads 0. A host that wants them
 *     calls sqlite3_initialize() before its first sl_runtime_open() (tests/c/sqlite_memstatus.c).
 *   - Forks: a child process forked from a process that loaded sagalane may call nothing of it
 *     before exec (the parent's threads are gone, and the locks they held stay held). Every
 *     call in such a child fails at once with SL_EFORKED (close and unsubscribe do nothing,
 *     sl_runtime_errmsg() returns a static text), but for the plain-C sl_strerror,
 *     sl_err_name and sl_free and for sl_version and sl_version_hex, which only read
 *     constants. Use posix_spawn, or fork and exec.
 *
 * Versioning: the same SL_VERSION_MAJOR means the same ABI.
 */
#ifndef SAGALANE_H
#define SAGALANE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SL_EXPORT __attribute__((visibility("default")))
#else
#define SL_EXPORT
#endif

/* ------------------------------------------------------------------------------------------ */
/* Versions                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define SL_VERSION_MAJOR 0
#define SL_VERSION_MINOR 1
#define SL_VERSION_PATCH 0
#define SL_VERSION_HEX ((SL_VERSION_MAJOR << 16) | (SL_VERSION_MINOR << 8) | SL_VERSION_PATCH)

/** The library's version as "MAJOR.MINOR.PATCH". A static string: never free it. */
SL_EXPORT const char *sl_version(void);

/** The library's version as SL_VERSION_HEX computes it, to compare with the header's. */
SL_EXPORT unsigned int sl_version_hex(void);

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Every error code, once: XX(NAME, value, description). Codes are appended, never renumbered. */
#define SL_ERRNO_MAP(XX)                                                                   \
    XX(INVAL, -1, "invalid argument")                                                      \
    XX(NOMEM, -2, "out of memory")                                                         \
    XX(JSON, -3, "malformed JSON")                                                         \
    XX(UTF8, -4, "invalid UTF-8")                                                          \
    XX(NOTFOUND, -5, "no such name or id")                                                 \
    XX(EXIST, -6, "name or id already in use")                                             \
    XX(CLOSED, -7, "runtime closed, or its open failed")                                   \
    XX(STATE, -8, "call not valid in this state")                                          \
    XX(REFUSED, -9, "refused")                                                             \
    XX(LOG, -10, "log (SQLite) error")                                                     \
    XX(BUSY, -11, "database locked by another connection")                                 \
    XX(READONLY, -12, "read-only database or read-only open")                              \
    XX(CORRUPT, -13, "not a sagalane database, or corrupt")                                \
    XX(FULL, -14, "disk full")                                                             \
    XX(UNHEALTHY, -15, "the log could not record a saga's end: new sagas are refused")     \
    XX(NOTQUEUED, -16, "the job is not queued (it is running or waits out a retry)")      \
    XX(CANCELED, -17, "cancelled")                                                         \
    XX(JOBFAILED, -18, "the job failed")                                                   \
    XX(LOOP, -19, "event loop (libuv) error")                                              \
    XX(CANTOPEN, -20, "cannot open the database file")                                     \
    XX(THREAD, -21, "cannot start a thread (a process or user thread limit)")                \
    XX(AGAIN, -22, "too much is waiting already: try again later")                         \
    XX(TIMEDOUT, -23, "timed out")                                                         \
    XX(FORKED, -24, "called in a child forked without exec: exec first")                   \
    XX(LOCKED, -25, "the log is open for writing by another runtime")

enum {
#define SL_ERRNO_ENUM_(name, value, text) SL_E##name = value,
    SL_ERRNO_MAP(SL_ERRNO_ENUM_)
#undef SL_ERRNO_ENUM_
};

/** A description of `code` ("unknown error" for codes not in SL_ERRNO_MAP). Static string. */
SL_EXPORT const char *sl_strerror(int code);

/** The name of `code`, e.g. "SL_EINVAL" ("SL_EUNKNOWN" for others). Static string. */
SL_EXPORT const char *sl_err_name(int code);

/** Frees memory sagalane handed out (strings from char ** parameters). NULL is a no-op. */
SL_EXPORT void sl_free(void *ptr);

/* ------------------------------------------------------------------------------------------ */
/* The runtime                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct sl_runtime sl_runtime;

enum {
    /** synchronous=FULL: every group commit is fsynced; survives power loss. The default. */
    SL_DURABILITY_FULL = 0,
    /** synchronous=NORMAL (WAL): survives a crash of the process, not of the machine. */
    SL_DURABILITY_NORMAL = 1
};

enum {
    /** sagalane runs the event loop on a thread of its own (the default). */
    SL_LOOP_THREAD = 0,
    /** The host runs the loop: sl_runtime_start() and sl_runtime_run() on one host thread,
        which is then the loop thread. For hosts with a poll loop of their own. */
    SL_LOOP_HOST = 1
};

enum {
    /** Monotonic system time (the default). */
    SL_CLOCK_SYSTEM = 0,
    /** Time moves only with sl_runtime_advance_time(): for tests of deadlines and back-off. */
    SL_CLOCK_MANUAL = 1
};

typedef struct sl_runtime_options {
    size_t size;             /* sizeof(sl_runtime_options) */
    /** The log's SQLite file, created if missing or empty. NULL or "" keeps the log in memory.
        A file that is not a sagalane log (another application's database) is refused, never
        adopted. The writing runtime keeps a lock file beside it, "<db_path>-lock". */
    const char *db_path;
    int durability;          /* SL_DURABILITY_*; default FULL */
    int busy_timeout_ms;     /* how long to wait for a locked database; 0 means 5000 */
    int loop_mode;           /* SL_LOOP_*; default THREAD */
    int clock;               /* SL_CLOCK_*; default SYSTEM */
    /** Non-zero: open the log read-only for diagnostics (sl_log_* reads only). No migration,
        no write, no lock, no file created beside the log; works while another process owns
        the database, and in a folder this user cannot write. */
    int read_only;
} sl_runtime_options;

/** Fills `options` with the defaults, `size` included. */
SL_EXPORT void sl_runtime_options_init(sl_runtime_options *options);

/**
 * Opens a runtime: creates its loop (not yet running) and opens (creating and migrating) its
 * log. Register saga types, triggers and targets next, then call sl_runtime_start().
 *
 * `*out` receives a handle even when the open fails (unless `out` is NULL or memory ran out),
 * so that sl_runtime_errmsg() can say why; close it with sl_runtime_close() either way.
 *
 * A log has one writing runtime: a read-write open takes the log's writer lock, and a second
 * one (from any process, this one included) fails with SL_ELOCKED, naming the holder's pid,
 * until the holder closes or dies. A refused open leaves the file as it was.
 * @param options NULL for the defaults (an in-memory log).
 * @return 0, or SL_EINVAL, SL_ECANTOPEN (missing folder; read-only: missing file),
 *         SL_ECORRUPT (not a sagalane log, a newer one, or one that cannot be migrated),
 *         SL_EREADONLY (read-write open of a file or folder this user cannot write),
 *         SL_ELOCKED (another runtime has the log open for writing), SL_EBUSY (another
 *         connection kept the database locked past busy_timeout_ms), SL_ELOG, SL_ELOOP,
 *         SL_ETHREAD (no thread could be started: a process or user thread limit).
 */
SL_EXPORT int sl_runtime_open(const sl_runtime_options *options, sl_runtime **out);

/**
 * Starts the runtime: seeds saga ids from the log (after every id it ever held, deleted ones
 * included), runs start-up recovery, then takes events. Recovery deals with every saga the log
 * shows unfinished (running or compensating: a runtime stopped or was killed while it ran) by
 * its type's `recovery` policy (SL_RECOVERY_*; a type not registered yet counts as
 * SL_RECOVERY_MARK_FAILED); final sagas are left as they are. Then it carries out the
 * operators' requests (cancel, resume, retry compensation) a tool recorded in the log while the
 * runtime was stopped.
 * Register saga types and targets, and create the lanes sagas send commands to, before this
 * call: a saga resumed or compensated here is dispatched to them at once.
 * When it returns, every decision of recovery is durable: a saga marked failed reads so after
 * another crash, a step dispatched again has its attempt counted in its row first.
 * Events published before the start are handled, in order, once recovery is done.
 *
 * SL_LOOP_THREAD: starts the loop thread and returns once recovery is done.
 * SL_LOOP_HOST: runs the loop on the calling thread until recovery is done; that thread is the
 * loop thread from then on and must call sl_runtime_run().
 * @return 0, SL_ESTATE (already started), SL_EREADONLY (opened read-only), SL_ECLOSED,
 * SL_ETHREAD (the loop thread could not start; the call may be retried), or the log's error.
 */
SL_EXPORT int sl_runtime_start(sl_runtime *rt);

enum {
    SL_RUN_DEFAULT = 0, /* run until sl_runtime_stop() */
    SL_RUN_ONCE = 1,    /* wait for and process one round of events */
    SL_RUN_NOWAIT = 2   /* process what is ready without waiting */
};

/**
 * SL_LOOP_HOST only: runs the loop on the calling thread (the thread that called
 * sl_runtime_start()) in `mode`, like uv_run().
 *
 * A blocking call made on that thread outside sl_runtime_run() (sl_lane_submit_wait,
 * sl_saga_cancel, sl_lane_create, ...) runs the loop itself while it waits, so a host with a
 * single thread never deadlocks; callbacks then run inside that call.
 * @return 0, SL_EINVAL (unknown mode), SL_ESTATE (not started, another thread, from inside a
 * callback, or an SL_LOOP_THREAD runtime).
 */
SL_EXPORT int sl_runtime_run(sl_runtime *rt, int mode);

/** SL_LOOP_HOST: makes an SL_RUN_DEFAULT sl_runtime_run() return soon. Any thread. */
SL_EXPORT int sl_runtime_stop(sl_runtime *rt);

/**
 * The loop's backend file descriptor (epoll), for hosts that poll it in their own loop and
 * call sl_runtime_run(rt, SL_RUN_NOWAIT) when it is readable. Negative: an SL_E* code
 * (SL_ESTATE for an SL_LOOP_THREAD runtime).
 */
SL_EXPORT int sl_runtime_backend_fd(sl_runtime *rt);

/** How long the host's poll may sleep before calling sl_runtime_run() again, in
    milliseconds; -1: no timer pending. Negative below -1: an SL_E* code. */
SL_EXPORT int sl_runtime_backend_timeout(sl_runtime *rt);

/** SL_CLOCK_MANUAL: moves loop time forward by `ms`, firing every timer that falls due
    (saga deadlines, retry back-offs), and returns once they ran. From a callback on the loop
    thread it fires them at once. @return 0, SL_ESTATE (system clock), SL_EINVAL. */
SL_EXPORT int sl_runtime_advance_time(sl_runtime *rt, uint64_t ms);

/**
 * Whether the log can still record sagas' ends. 0 when healthy; SL_EUNHEALTHY (with the
 * reason in sl_runtime_errmsg()) once a terminal row could not be written, after which new
 * sagas are refused.
 */
SL_EXPORT int sl_runtime_health(sl_runtime *rt);

/**
 * Closes the runtime: stops taking events, stops every subscription, shuts down every lane
 * (queued jobs end cancelled, running jobs see sl_job_cancelled() and are waited for), closes
 * the loop and the log, calls every `release` callback given with registrations, and frees
 * the handle. Sagas in flight stay `running` in the log: the next start's recovery handles
 * them. A closed log is one self-contained file: the close moves the write-ahead log into the
 * database file (waiting up to busy_timeout_ms for other processes' readers), so db_path
 * alone, copied without its -wal, holds the whole log; it also releases the writer lock. Lane, subscription and runtime handles are invalid afterwards: calls on them give
 * SL_ECLOSED. Once it returns (called from a host thread), no callback runs again. NULL is a
 * no-op.
 *
 * Any thread. Called from a callback (or any sagalane thread), it returns at once and the
 * close completes on a sagalane thread once the callback returned; the release callbacks then
 * run there. SL_LOOP_HOST: a sl_runtime_run() in progress returns, and the closing thread
 * runs the loop until everything is closed.
 */
SL_EXPORT void sl_runtime_close(sl_runtime *rt);

/**
 * The message of the most recent failed call on `rt` (or on one of its lanes or
 * subscriptions) made by the calling thread; "" when there is none. Valid until the calling
 * thread's next failing call on `rt`, or sl_runtime_close(). With NULL, the calling thread's
 * last failure on a NULL or closed handle; for a closed `rt`, a static text saying so.
 */
SL_EXPORT const char *sl_runtime_errmsg(sl_runtime *rt);

/* ------------------------------------------------------------------------------------------ */
/* Events                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/** An event on the bus. Borrowed: valid only during the callback that receives it. */
typedef struct sl_event {
    const char *type;          /* e.g. "PoolWindowAdded" */
    uint64_t saga_id;          /* the saga it answers; 0: untagged */
    const char *payload_json;  /* the payload as JSON text ("null" when there is none) */
    uint64_t version;          /* position in the bus's publication order, from 1 */
} sl_event;

/* Event types the runtime publishes. Lifecycle events (the six SL_EVENT_SAGA_* but
   SL_EVENT_SAGA_ACTION_FAILED) are never fed to sagas nor matched by triggers; each is written
   to the log's lifecycle stream (sl_lifecycle_subscribe) in the transaction of the change it
   announces, and published after that commit. A saga has exactly one terminal event,
   SagaCompleted or SagaFailed, whose "state" says how it ended. Payloads:
     SagaStarted        {"name"}
     SagaCompensating   {"name", "reason"}: it failed and its compensations begin
                        ("by": "operator", "note" when an operator asked for it again)
     SagaResumed        {"name", "by": "recovery"|"operator", "phase": "running"|"compensating"}
     SagaCompleted      {"name", "state": "completed"}
     SagaFailed         {"name", "state": "failed"|"compensated"|"failed_compensation",
                        "reason"}; "durable": false when its terminal row could not be written
                        (then on the bus only), "recovered": "mark_failed" when start-up
                        recovery ended it
     SagaOperatorAction {"name", "action", "note"}: an operator resolved the saga, or left a
                        request for the next start ("request_cancel", ...)
   An operator's retry or resume reopens a failed_compensation saga, which then ends again,
   with one more terminal event. */
#define SL_EVENT_SAGA_STARTED "SagaStarted"
#define SL_EVENT_SAGA_COMPENSATING "SagaCompensating"
#define SL_EVENT_SAGA_RESUMED "SagaResumed"
#define SL_EVENT_SAGA_COMPLETED "SagaCompleted"
#define SL_EVENT_SAGA_FAILED "SagaFailed"
#define SL_EVENT_SAGA_OPERATOR_ACTION "SagaOperatorAction"
/** Published by sl_step_fail(): tagged with the saga, payload {"reason", "step"}. A step
    with retries is sent again; otherwise the saga fails. */
#define SL_EVENT_SAGA_ACTION_FAILED "SagaActionFailed"
/** Lane-target outcomes, tagged with the saga: payload {"lane", "job_id", "step"} plus
    "result" (parsed when it is JSON), or "error" and "attempts". For a compensation or a step
    with retries a failed or cancelled job is reported as the step's failure instead (retried,
    or ending the saga). Each attempt of a step is a job of its own:
    "saga-<id>-step-<n>", then "saga-<id>-step-<n>-attempt-<k>". */
#define SL_EVENT_LANE_JOB_FINISHED "LaneJobFinished"
#define SL_EVENT_LANE_JOB_FAILED "LaneJobFailed"
#define SL_EVENT_LANE_JOB_CANCELLED "LaneJobCancelled"
/** Delivered to a subscriber (never published) when its buffer overflowed: payload
    {"missed": N}, saga_id 0, version 0, placed exactly where the N events went missing. */
#define SL_EVENT_LAGGED "sagalane.Lagged"

/**
 * Publishes an event. Safe from any thread, including the loop thread and callbacks.
 * @param saga_id 0 for an untagged event; else the saga whose command this answers.
 * @param payload_json JSON text, or NULL for null.
 * @return 0, SL_EINVAL (empty type), SL_EUTF8, SL_EJSON, SL_ECLOSED.
 */
SL_EXPORT int sl_publish(sl_runtime *rt, const char *type, uint64_t saga_id, const char *payload_json);

typedef struct sl_subscription sl_subscription;

/** Receives events in publication order, on the subscription's own delivery thread. */
typedef void (*sl_event_fn)(void *userdata, const sl_event *event);

/**
 * Subscribes to every event published from now on. Each subscription has a delivery thread
 * that calls `fn` with one event at a time, in publication order. A subscriber that falls
 * more than `buffer` events behind loses the newest ones instead of slowing the runtime down,
 * and then receives one SL_EVENT_LAGGED event saying how many it missed.
 * @param buffer events held for a slow subscriber; 0 means 4096.
 * @return 0, SL_EINVAL, SL_ECLOSED, SL_ETHREAD (its delivery thread could not start).
 */
SL_EXPORT int sl_subscribe(sl_runtime *rt, size_t buffer, sl_event_fn fn, void *userdata, sl_subscription **out);

/**
 * Ends a subscription. Once it returns, `fn` is never called again and its userdata is the
 * caller's (when called from inside `fn`, after `fn` returns). Events still buffered are
 * dropped. NULL is a no-op. Not after sl_runtime_close() (which ends every subscription).
 */
SL_EXPORT void sl_unsubscribe(sl_subscription *sub);

/* ---- The lifecycle stream --------------------------------------------------------------------- */

/** One lifecycle event of the log's stream. Borrowed: valid only during the callback. */
typedef struct sl_lifecycle_event {
    uint64_t position;         /* its place in the stream: one more than the event before it */
    uint64_t saga_id;
    const char *type;          /* SL_EVENT_SAGA_STARTED, ... (the lifecycle types only) */
    const char *payload_json;  /* as the bus carries it */
    int64_t at_ms;             /* when its transaction committed, milliseconds since the epoch */
} sl_lifecycle_event;

/** Receives lifecycle events in position order, on the subscription's own thread. */
typedef void (*sl_lifecycle_fn)(void *userdata, const sl_lifecycle_event *event);

/**
 * Subscribes to the log's lifecycle stream from a position: `fn` gets every lifecycle event
 * after `after` (0: every one the log holds), in order, exactly once each, then each new one
 * as it is committed. Events the subscriber was away for (in an earlier process, before a
 * crash, or because `fn` is slow) are read back from the log: a lifecycle subscriber never
 * lags and never loses an event, and costs the runtime nothing while it is behind. Nothing is
 * delivered before it is durable. Store the position of the last event handled to resume
 * from it next time. Events of sagas a vacuum deleted are gone: the stream goes on after them.
 *
 * Allowed before sl_runtime_start(), to see recovery's events too. End it with
 * sl_unsubscribe(); sl_runtime_close() ends it as well, before the log closes.
 * @return 0, SL_EINVAL, SL_ECLOSED, SL_ETHREAD.
 */
SL_EXPORT int sl_lifecycle_subscribe(sl_runtime *rt, uint64_t after, sl_lifecycle_fn fn, void *userdata,
                                     sl_subscription **out);

/** The position of the latest lifecycle event the log committed (0: none yet): durable, so
    a subscriber that stores it loses nothing after a crash by resuming from it. */
SL_EXPORT int sl_lifecycle_position(sl_runtime *rt, uint64_t *position);

/* ------------------------------------------------------------------------------------------ */
/* Sagas                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** What a saga knows about itself. Borrowed for the callback. */
typedef struct sl_saga_ctx {
    uint64_t saga_id;
    const char *type_name;
    uint32_t next_step;  /* the index the next issued step will get */
    /** 1 while start-up recovery replays the saga's recorded history (SL_RECOVERY_RESUME):
        the actions set are checked against the log, not carried out. */
    int replaying;
} sl_saga_ctx;

/** A saga's next action, set during start/on_event with one sl_action_* call. Setting none
    means "wait". Valid only during the callback. */
typedef struct sl_action sl_action;

/**
 * Sends `command_json` to the target named `target`: "self" (published as an event tagged
 * with the saga, its type from the command's "type" or "cmd" field), "lane:<name>", or a
 * target registered with sl_target_register(). The step row is written and durable before
 * the command is dispatched; "saga_id" and "step" are injected into an object command.
 * @return 0, or SL_EINVAL / SL_EUTF8 / SL_EJSON / SL_ESTATE (an action was already set),
 * in which case the action becomes a failure that ends the saga with that error.
 */
SL_EXPORT int sl_action_issue(sl_action *action, const char *target, const char *command_json);
/** The saga succeeded. */
SL_EXPORT int sl_action_done(sl_action *action);
/** The saga failed for `reason` (NULL: "failed"). */
SL_EXPORT int sl_action_fail(sl_action *action, const char *reason);

/**
 * What a step declares beyond its command (sl_action_issue_ex).
 *
 * Compensation: when the saga later fails (its own sl_action_fail, a target's failure, its
 * deadline, a cancel) after this step succeeded, it moves to compensating and the
 * compensations of its succeeded steps are dispatched in reverse order, each written to the
 * log as a step of its own (its "compensates" field naming the step it undoes) before it is
 * dispatched, each awaiting its echo with a timeout of its own; the saga ends compensated,
 * or failed_compensation when one fails or times out. An echo of a compensation is any event
 * tagged with the saga; one whose payload has a "step" other than the compensation's is taken
 * for a late answer to an earlier step and passed over, so answer with the injected "step".
 *
 * Retries: an idempotent step with max_attempts > 1 is dispatched again, under the same saga
 * id and step index, after sl_step_fail, a refusing target or its timeout, with exponential
 * back-off and jitter; each attempt is counted in the step's row before it is dispatched.
 */
typedef struct sl_step_options {
    size_t size;                      /* sizeof(sl_step_options) */
    /** The compensating command (JSON text, "saga_id", "step" and "compensates" injected into
        an object); NULL: nothing undoes this step. */
    const char *compensation_json;
    /** Where the compensation goes; NULL: the step's own target. */
    const char *compensation_target;
    /** How long each attempt waits for its answer; 0: only the saga's deadline. */
    uint32_t timeout_ms;
    /** How long each attempt of the compensation waits; 0: the saga type's. */
    uint32_t compensation_timeout_ms;
    /** Non-zero: the step may be dispatched more than once (its target recognises a repeat by
        saga id and step). Needed for retries. */
    int idempotent;
    /** Dispatches in all for an idempotent step, the first included; 0 or 1: no retry. */
    int max_attempts;
    /** The first back-off before a retry, doubled each time, with jitter; 0 means 100. */
    uint32_t retry_backoff_ms;
    /** The longest back-off; 0 means 30000. */
    uint32_t retry_max_backoff_ms;
    /** Dispatches in all for the compensation; 0 or 1: no retry. */
    int compensation_max_attempts;
} sl_step_options;

/** Fills `options` with the defaults (nothing declared), `size` included. */
SL_EXPORT void sl_step_options_init(sl_step_options *options);

/**
 * sl_action_issue with what the step declares (NULL options: sl_action_issue). What it
 * declares is written to the step's row with its command, before the command is dispatched:
 * after a SIGKILL, start-up recovery compensates, retries or resumes the step with exactly
 * this declaration (tests/c/saga_compensation_crash.c, Tests/RuntimeTests/SagaCrashTests.swift).
 * @return as sl_action_issue; SL_EINVAL also for retries on a step not declared idempotent.
 */
SL_EXPORT int sl_action_issue_ex(sl_action *action, const char *target, const char *command_json,
                                 const sl_step_options *options);

/**
 * sl_action_issue with the step described as JSON, the form declarative sagas use:
 *   {"target", "command", "timeout_ms", "idempotent", "retry", "compensation"}
 * where "retry" is {"max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier",
 * "jitter"} and "compensation" {"command", "target", "timeout_ms", "retry"}; only "target"
 * and "command" are required. Stored, and so recovered after a crash, as sl_action_issue_ex's.
 * @return as sl_action_issue_ex.
 */
SL_EXPORT int sl_action_issue_step(sl_action *action, const char *step_json);

/* What start-up recovery does with a saga of a type that a stopped runtime left unfinished. */
enum {
    /** Mark it failed_compensation ("interrupted: ..." appended to its reason) for an operator;
        nothing is dispatched. The default. */
    SL_RECOVERY_MARK_FAILED = 0,
    /** Undo it: its pending step is marked failed and the compensations of its succeeded steps
        run in reverse order; it ends compensated (failed_compensation if one fails, failed if
        none of its steps has one). A saga interrupted while compensating goes on compensating. */
    SL_RECOVERY_COMPENSATE = 1,
    /** Go on: the saga is rebuilt with `create` from its stored input, `start` and `on_event`
        are called again with its steps' recorded results (ctx->replaying is 1), each replayed
        action checked against the recorded step (target and command: a mismatch fails the saga
        with "determinism error: replaying step N, ..."), the pending step is dispatched again
        under the same saga id and step index, and what is left of its deadline is armed. A
        saga interrupted while compensating goes on compensating. */
    SL_RECOVERY_RESUME = 2
};

/**
 * A saga type defined in C. Every callback gets the type's userdata and, but for `create`,
 * the saga's own state pointer.
 *
 * With SL_RECOVERY_RESUME, `create`, `start` and `on_event` are called again after a crash,
 * with the stored input and each step's recorded result: they must decide the same actions
 * from the same events and do nothing else (no I/O, no clock, no randomness). The events
 * replayed are those that moved the saga on; events answered with "wait" are not.
 */
typedef struct sl_saga_type {
    size_t size;        /* sizeof(sl_saga_type) */
    const char *name;   /* unique; stored in the log */
    /**
     * Builds a saga from its input JSON ("null" when none): set `*state` and return 0, or
     * return non-zero to refuse the input (sl_saga_start() then fails with SL_EREFUSED).
     * Called on the thread that starts the saga: the caller of sl_saga_start(), or the loop
     * thread for a trigger. It may run concurrently with other callbacks of the same type.
     */
    int (*create)(void *userdata, const char *input_json, void **state);
    /** Frees a saga's state once it ended, or at close for sagas in flight. May be NULL.
        Loop thread (or the closing thread). */
    void (*destroy)(void *userdata, void *state);
    /** The first action. Called just before the saga's running row is written, so that the
        step it issues goes into the same commit; that step is dispatched, and SagaStarted
        published, once the commit is durable. Loop thread. */
    void (*start)(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action);
    /** The next action after `event`: the echoes of its commands (events tagged with its
        id) and untagged events whose type is in `interests`. Loop thread. */
    void (*on_event)(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                     sl_action *action);
    /** Not called: the log stores every saga's input exactly as given to `create`, because
        recovery rebuilds sagas from it. Keep secrets out of inputs (pass a reference the
        host resolves instead). Set it to NULL. */
    const char *(*input_snapshot)(void *userdata, void *state);
    /** Untagged event types these sagas want besides their echoes. May be NULL/0. */
    const char *const *interests;
    size_t interest_count;
    /** How long a saga may run before it fails with "saga timeout"; 0 means 5000. */
    uint32_t timeout_ms;
    /** Called once with userdata when the runtime closes. May be NULL. */
    void (*release)(void *userdata);
    /** What start-up recovery does with a saga of this type left unfinished: SL_RECOVERY_*;
        0 is SL_RECOVERY_MARK_FAILED. */
    int recovery;
    /** How long a compensation waits for its answer unless its step says; 0 means 30000. The
        saga's deadline does not cover its compensations. */
    uint32_t compensation_timeout_ms;
} sl_saga_type;

/** Fills `type` with zeros and sets `size`. */
SL_EXPORT void sl_saga_type_init(sl_saga_type *type);

/**
 * Registers a saga type (the struct and its strings are copied). Before or after start.
 * @return 0, SL_EINVAL (no name, no create/start/on_event, an unknown recovery), SL_EEXIST,
 * SL_ECLOSED.
 */
SL_EXPORT int sl_saga_type_register(sl_runtime *rt, const sl_saga_type *type, void *userdata);

/**
 * Decides whether an event starts a saga: non-zero starts it. Loop thread.
 * @param payload_json the event's payload, borrowed.
 */
typedef int (*sl_trigger_predicate)(void *userdata, const char *payload_json);

/**
 * Starts a saga of type `saga_type` for every published event of type `event_type` that
 * `predicate` accepts (NULL: every one), with the event's payload as its input.
 * `release(userdata)` (may be NULL) is called when the runtime closes.
 * @return 0, SL_EINVAL (empty event type, or a lifecycle event, which never starts sagas),
 * SL_ENOTFOUND (saga type not registered), SL_ECLOSED.
 */
SL_EXPORT int sl_trigger_add(sl_runtime *rt, const char *event_type, const char *saga_type,
                             sl_trigger_predicate predicate, void *userdata, void (*release)(void *userdata));

/**
 * Registers the saga types a saga file defines, with their triggers: the JSON text of a file
 * in the format of docs/sagas-file.md (`{"version": 1, "sagas": [...]}`), the same files
 * `sagalane agent --sagas FILE` loads and `sagalane validate FILE` checks. Each saga issues
 * its steps' commands in turn to the targets they name, which the host registers as usual.
 *
 * All or nothing: the whole text is checked first, and every problem is reported at once in
 * sl_runtime_errmsg, one a line, as `<sagas>:LINE:COLUMN: saga "NAME", step N ("STEP"): what`;
 * then either every saga type is registered or, when one name is already registered, none
 * is. Before or after start. Registration lives in memory only, and a SIGKILL leaves nothing
 * of it: a host loads its file again each time it opens the runtime (before sl_runtime_start,
 * so that recovery rebuilds the log's unfinished sagas of those types; the steps they issued,
 * with their compensations, are in the log already).
 * @param json_text UTF-8, at most SL_MAX_VALUE_BYTES bytes.
 * @param loaded set to the number of saga types registered (may be NULL).
 * @return 0, SL_EINVAL (not a valid saga file, malformed JSON included: see the message), SL_EUTF8,
 * SL_EEXIST (a saga type of that name is registered), SL_ECLOSED.
 */
SL_EXPORT int sl_saga_types_load(sl_runtime *rt, const char *json_text, int *loaded);

/**
 * Starts a saga: runs the type's `create` on the calling thread, writes the saga's running
 * row, and returns once that row is durable, with the saga's id. When it returns 0 the saga
 * exists in the log under that id, also after a crash at the next instruction: no id is ever
 * handed out twice (a vacuum included). The saga's `start` runs on the loop before the row is
 * durable, so that the first step it issues is written in the same commit (a crash before
 * that commit leaves neither); SagaStarted and that step's dispatch follow the commit.
 * tests/c/saga_recovery_crash.c kills a process with SIGKILL after such returns: every saga
 * whose id was handed out is in the log with its step, and new ids continue after them.
 *
 * At most a bounded number of sagas wait for their running row at once (1024); past that it
 * fails at once with SL_EAGAIN rather than let a burst pile up (sl_saga_start_ex can wait for
 * room). A saga's deadline counts from when its running row is durable.
 *
 * Host threads only: on the loop thread (in a callback) it cannot wait, and answers
 * SL_ESTATE; use sl_saga_start_ex with a `started` callback there. SL_LOOP_HOST: on the
 * thread that runs the loop it runs the loop while it waits; on any other thread it waits for
 * that thread to run the loop.
 * @param input_json JSON text, or NULL for null. The log stores it as given.
 * @param saga_id receives the new saga's id (may be NULL).
 * @return 0, SL_ENOTFOUND (no such type), SL_EREFUSED (create refused the input), SL_EJSON,
 * SL_EUTF8, SL_EAGAIN (too many sagas waiting to launch), SL_ESTATE (not started, or on the
 * loop thread), SL_EUNHEALTHY, SL_ECLOSED, or the log's error (the saga then never started).
 */
SL_EXPORT int sl_saga_start(sl_runtime *rt, const char *type_name, const char *input_json, uint64_t *saga_id);

/* A saga's state, as sl_saga_wait() and end callbacks report it. The states, once:
 *   SL_SAGA_RUNNING, SL_SAGA_COMPENSATING   unfinished (start-up recovery acts on these);
 *   SL_SAGA_COMPLETED, SL_SAGA_COMPENSATED  final, succeeded or undone;
 *   SL_SAGA_FAILED                          final: failed with nothing left to compensate;
 *   SL_SAGA_FAILED_COMPENSATION             final, but needs an operator: a compensation
 *                                           failed, or the saga was interrupted under the
 *                                           mark-failed recovery policy. */
enum {
    SL_SAGA_RUNNING = 0,
    SL_SAGA_COMPENSATING = 1,
    SL_SAGA_COMPLETED = 2,
    SL_SAGA_FAILED = 3,
    SL_SAGA_FAILED_COMPENSATION = 4,
    SL_SAGA_COMPENSATED = 5
};

/** How a saga ended. Borrowed for the callback that receives it. */
typedef struct sl_saga_end {
    uint64_t saga_id;
    int state;           /* SL_SAGA_*: a final state */
    const char *reason;  /* why it failed; NULL for a saga that completed */
    int durable;         /* 0 when its terminal row could not be written (sl_runtime_health) */
} sl_saga_end;

/** A saga's running row is durable (rc 0, with its id), or it never started (rc < 0). */
typedef void (*sl_saga_started_fn)(void *userdata, int rc, uint64_t saga_id);
/** A saga ended; called once, after its terminal event was published. */
typedef void (*sl_saga_ended_fn)(void *userdata, const sl_saga_end *end);

typedef struct sl_saga_start_options {
    size_t size;               /* sizeof(sl_saga_start_options) */
    /** How long to wait for room when too many sagas wait to launch: 0 (the default) fails
        at once with SL_EAGAIN, -1 waits as long as it takes. Not on the loop thread. */
    int room_timeout_ms;
    /** Non-NULL: return as soon as the saga is accepted, without waiting for its running row;
        `started` then gets the id, or the error, on the loop thread. Allowed on the loop
        thread. `*saga_id` is not set. */
    sl_saga_started_fn started;
    /** Non-NULL: called once when the saga ended, on the loop thread (never for a saga that
        did not start). */
    sl_saga_ended_fn ended;
    void *userdata;            /* given to started, ended and release */
    /** Called once after the last of `started` and `ended` (may be NULL), also for a saga
        still in flight when the runtime closes (its `ended` then never comes); never when the
        call fails. On a sagalane thread, or the closing thread. */
    void (*release)(void *userdata);
    /** Non-NULL, non-empty: while a saga row holding this key exists (started by this runtime
        or an earlier one, until a vacuum deletes it), the call starts nothing (`create` is not
        called) and answers that saga's id, through `*saga_id` or `started`, and its end
        through `ended`. Two threads racing with one key get one saga. Kept in the saga's row;
        at most SL_MAX_VALUE_BYTES. */
    const char *idempotency_key;
} sl_saga_start_options;

/** Fills `options` with the defaults (no callbacks, no wait for room), `size` included. */
SL_EXPORT void sl_saga_start_options_init(sl_saga_start_options *options);

/**
 * sl_saga_start with options: wait for room in the launch queue, don't wait for the running
 * row (`started`), be told when the saga ends (`ended`). NULL options: sl_saga_start.
 * @return as sl_saga_start; SL_EAGAIN once `room_timeout_ms` passed without room. On failure
 * no callback is called, `release` included.
 */
SL_EXPORT int sl_saga_start_ex(sl_runtime *rt, const char *type_name, const char *input_json,
                               const sl_saga_start_options *options, uint64_t *saga_id);

/**
 * Blocks until saga `saga_id` ends, or `timeout_ms` passed (-1: no limit), and says how it
 * ended: from memory for a saga in flight, from the log for one that already ended (so it
 * works for any saga of the log, and never misses an end that happened before the call).
 * Host threads only (SL_ESTATE on the loop thread).
 * @param state receives SL_SAGA_* (may be NULL).
 * @param reason receives why it failed, or NULL when it completed (may be NULL); sl_free().
 * @return 0, SL_ETIMEDOUT, SL_ENOTFOUND (the log has no such saga), SL_ESTATE (unfinished
 * but not running here: it waits for the next start-up's recovery), SL_ECLOSED.
 */
SL_EXPORT int sl_saga_wait(sl_runtime *rt, uint64_t saga_id, int timeout_ms, int *state, char **reason);

/**
 * Ends saga `saga_id` as failed with reason "cancelled: <reason>" (NULL: "no reason given").
 * From a host thread it returns once that end is durable: after a crash the saga reads
 * failed, cancelled. From the loop thread (a callback), where it cannot wait, the end is
 * claimed at once (no other outcome can win once it returns) and written right after the
 * callback; a crash in between leaves the saga to start-up recovery.
 * @return 0, SL_ENOTFOUND (no such saga in flight, or it already ended), SL_ESTATE,
 * SL_ECLOSED.
 */
SL_EXPORT int sl_saga_cancel(sl_runtime *rt, uint64_t saga_id, const char *reason);

/*
 * Operators' actions on a saga in failed_compensation (one that waits for an operator). Each
 * is written to the log with its lifecycle event before anything is dispatched, shows in the
 * saga's history (sl_log_saga's "history"), and returns once it is durable. Host threads
 * only (SL_ESTATE on the loop thread). `note` may be NULL. With the runtime stopped, a tool can
 * record the same requests in the log (its saga_request table) for the next start.
 */

/** Runs the saga's compensations again: the one that failed (or was interrupted), then those
    of the other succeeded steps not yet undone, last first. When it returns the saga is
    compensating again; it ends compensated or failed_compensation, with a terminal event.
    @return 0, SL_ENOTFOUND, SL_ESTATE (not failed_compensation, in flight, its type not
    registered, or nothing left to compensate), the log's error. */
SL_EXPORT int sl_saga_retry_compensation(sl_runtime *rt, uint64_t saga_id, const char *note);

/** Sends the saga forward again, as SL_RECOVERY_RESUME does after a crash (rebuilt, replayed,
    its pending step dispatched again under the same saga id and step), with a whole deadline:
    for a saga interrupted under SL_RECOVERY_MARK_FAILED. When it returns the saga is running.
    @return 0, SL_ENOTFOUND, SL_ESTATE (not failed_compensation, in flight, it began
    compensating, or its type is not registered), the log's error. */
SL_EXPORT int sl_saga_resume(sl_runtime *rt, uint64_t saga_id, const char *note);

/** Marks the saga resolved by hand: it becomes failed (final, nothing left to compensate),
    its reason ending "resolved by an operator: <note>". @return 0, SL_ENOTFOUND, SL_ESTATE
    (not failed_compensation), the log's error. */
SL_EXPORT int sl_saga_resolve(sl_runtime *rt, uint64_t saga_id, const char *note);

/**
 * Dispatches one command to a host target. Loop thread; must hand the command off and return
 * quickly. Answer later with sl_publish(rt, type, saga_id, payload) (the echo the saga waits
 * for) or sl_step_fail(). A non-zero return fails the saga at once, with the reason
 * "target '<name>' refused step <n>: ...".
 * @param command_json the command with "saga_id" and "step" injected; borrowed.
 */
typedef int (*sl_target_fn)(void *userdata, uint64_t saga_id, uint32_t step, const char *command_json);

/**
 * Registers a command target under `name` (no ':'). `release(userdata)` (may be NULL) is
 * called when the runtime closes.
 * @return 0, SL_EINVAL, SL_EEXIST, SL_ECLOSED.
 */
SL_EXPORT int sl_target_register(sl_runtime *rt, const char *name, sl_target_fn fn, void *userdata,
                                 void (*release)(void *userdata));

/** Reports that step `step` of saga `saga_id` failed: the saga ends failed with "action
    failed: <reason>" (NULL: "failed"). Any thread. @return 0, SL_EINVAL (saga_id 0). */
SL_EXPORT int sl_step_fail(sl_runtime *rt, uint64_t saga_id, uint32_t step, const char *reason);

/* ------------------------------------------------------------------------------------------ */
/* Pipe targets: hosts in other processes                                                      */
/* ------------------------------------------------------------------------------------------ */

/*
 * A pipe target sends its commands to a host process over a Unix-domain socket, as
 * newline-delimited JSON frames (the protocol is docs/protocol.md): the runtime dials the
 * host's socket, says {"type":"hello","version":1,"targets":[name]}, and once the host answers
 * {"type":"welcome","version":1,...} sends it {"type":"command","target","saga_id","step",
 * "command"} frames. The host answers each with {"type":"step.done","saga_id","step","event",
 * "payload"} (the event the saga waits for, published tagged with the saga) or
 * {"type":"step.failed","saga_id","step","reason"} (the saga fails with "action failed:
 * <reason>"), and may publish events with {"type":"event.publish","event","payload"}.
 *
 * The connection is dialled again, with back-off, whenever it is lost. A command that cannot
 * be sent (no connection, or the host reads too slowly) waits, in order, and goes out once the
 * host is back; one that waited `buffer_expiry_ms` (counted from its dispatch) fails its saga,
 * once, with "action failed: host unreachable: ...". A saga that ends first (its deadline, a
 * cancel) takes its waiting command back: it is never sent. A command already written is not
 * sent again; the host answers it on any connection, or the saga's deadline ends it.
 *
 * Writing to a host that went away must not kill the process: on sagalane's own loop thread
 * SIGPIPE is blocked; when the host runs the loop itself (SL_LOOP_HOST), the process ignores
 * SIGPIPE unless it already has a handler of its own.
 */

typedef struct sl_target_connect_options {
    size_t size;               /* sizeof(sl_target_connect_options) */
    /** How long a command waits for a connection before its saga fails; 0 means 30000. */
    uint32_t buffer_expiry_ms;
    /** Commands that may wait at once; past that a new one fails its saga at once. 0 means 65536. */
    uint32_t max_buffered;
    /** The wait after a failed attempt, doubled (with jitter) up to reconnect_max_ms; 0 means 100. */
    uint32_t reconnect_min_ms;
    /** The longest wait between attempts; 0 means 5000. */
    uint32_t reconnect_max_ms;
    /** The largest frame either way, in bytes; 0 means 1048576 (1 MiB). */
    uint32_t max_frame;
    /** Bytes queued for the host past which commands wait instead; 0 means 8388608 (8 MiB). */
    uint32_t max_queued_bytes;
} sl_target_connect_options;

/** Fills `options` with the defaults, `size` included. */
SL_EXPORT void sl_target_connect_options_init(sl_target_connect_options *options);

/**
 * Registers target `name` (no ':') as a pipe target whose host listens on the Unix socket at
 * `path` (at most 107 bytes), and starts dialling it (once the runtime's loop runs). Before or
 * after sl_runtime_start(); the connection closes with the runtime. The registration, the
 * connection and the commands waiting for it are in memory only: every command's step row is
 * durable before the command is sent or buffered, so after a SIGKILL the saga is unfinished in
 * the log and start-up recovery acts on it under its type's policy: under
 * SL_RECOVERY_RESUME the step whose command was out is sent again, the same command under the
 * same saga id and step, once the target connects again, and steps that were answered are
 * not sent again (kill test: tests/c/target_connect_crash.c; the agent's accepted form:
 * Tests/AgentTests/AgentProcessTests.swift).
 * @param options NULL for the defaults.
 * @return 0, SL_EINVAL (empty or ':' name, path empty or too long, a field out of range),
 *         SL_EUTF8, SL_EEXIST (a target of that name), SL_ECLOSED.
 */
SL_EXPORT int sl_target_connect(sl_runtime *rt, const char *name, const char *path,
                                const sl_target_connect_options *options);

/** What a pipe target has done so far. */
typedef struct sl_target_status {
    size_t size;               /* sizeof(sl_target_status), set by the caller */
    int connected;             /* 1 while a handshaken connection takes its commands */
    uint64_t buffered;         /* commands waiting for a connection */
    uint64_t awaiting;         /* commands sent and not yet answered */
    uint64_t sent;             /* commands written to a connection */
    uint64_t expired;          /* commands whose wait ran out (sagas failed "host unreachable") */
    uint64_t purged;           /* waiting commands dropped because their saga ended first */
    uint64_t connections;      /* connections made */
    uint64_t bad_frames;       /* frames from the host answered with an error */
} sl_target_status;

/** Reads pipe target `name`'s figures into `out` (its `size` must be set). Any thread; waits
    for the loop. The figures are this process's, in memory: a restart starts them at zero. @return 0, SL_EINVAL, SL_ENOTFOUND (no pipe target of that name), SL_ECLOSED. */
SL_EXPORT int sl_target_get_status(sl_runtime *rt, const char *name, sl_target_status *out);

/* ------------------------------------------------------------------------------------------ */
/* Lanes                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct sl_lane sl_lane;

/** The most jobs a lane may run at once (each runs on a worker thread of its own). */
#define SL_LANE_MAX_CONCURRENT 1024

/** A running job's view of itself. Valid only while the job function runs. */
typedef struct sl_job_ctx sl_job_ctx;

/** The job's id. Borrowed for the run. */
SL_EXPORT const char *sl_job_id(const sl_job_ctx *ctx);
/** 1 for the first run, 2 for the first retry, ... */
SL_EXPORT int sl_job_attempt(const sl_job_ctx *ctx);
/** Non-zero once the lane shuts down or a waiter gave up: stop early if you can. */
SL_EXPORT int sl_job_cancelled(const sl_job_ctx *ctx);
/** The job's metadata bytes (for a lane target's command handler: the command JSON, also
    NUL-terminated). Borrowed for the run. */
SL_EXPORT const void *sl_job_metadata(const sl_job_ctx *ctx, size_t *length);
/** Sets the job's result text (on success) or error text (on failure); copied. */
SL_EXPORT int sl_job_set_result(sl_job_ctx *ctx, const char *text);

/**
 * A job's work. Runs on one of the lane's worker threads, never the loop thread; it may
 * block. Return 0 for success, SL_ECANCELED if it stopped because sl_job_cancelled(), any
 * other value for failure (its text set with sl_job_set_result()).
 */
typedef int (*sl_job_fn)(void *userdata, sl_job_ctx *ctx);

enum {
    SL_JOB_FINISHED = 0,
    SL_JOB_FAILED = 1,
    SL_JOB_CANCELLED = 2
};

/** How a job ended. Borrowed for the callback. */
typedef struct sl_job_outcome {
    const char *job_id;
    int state;          /* SL_JOB_* */
    const char *text;   /* the result (finished) or the error (failed); "" when cancelled */
    int attempts;       /* runs made (0 when cancelled before it ran) */
} sl_job_outcome;

/** Called once per accepted job, once its terminal row is durable (persisted lanes), on the
    runtime's callback thread: one at a time, in the order jobs ended. It may call any
    sagalane function (a blocking one delays the done callbacks after it). */
typedef void (*sl_job_done_fn)(void *userdata, const sl_job_outcome *outcome);

typedef struct sl_job {
    size_t size;              /* sizeof(sl_job) */
    const char *id;           /* unique in the lane (and the log); NULL or "": generated */
    const char *caller;       /* who submitted it, for operators; may be NULL */
    int priority;             /* higher first; FIFO within a priority */
    const void *metadata;     /* opaque bytes kept in the log to rebuild the job on restart */
    size_t metadata_length;
    sl_job_fn run;            /* required */
    sl_job_done_fn done;      /* may be NULL */
    void *userdata;           /* given to run and done; the caller's again after done */
    /** Runs in all for a job that is safe to run again (idempotent); 0 or 1: run once. */
    int max_attempts;
    /** First back-off before a retry, doubled each time (with jitter); 0 means 100. */
    uint32_t retry_backoff_ms;
    /** Non-NULL, non-empty: while a job submitted to this lane with this key is in the lane
        (persisted lanes: while its row is in the log, until the sweeper purges it, also after
        a restart), a submit with it queues nothing: it returns 0 with `out->duplicate` set and
        `out->job_id` the existing job's, and `done` is never called for it. */
    const char *idempotency_key;
} sl_job;

/** Fills `job` with zeros and sets `size`. */
SL_EXPORT void sl_job_init(sl_job *job);

/** A job's row from the log, for rebuilding it after a restart. Borrowed. */
typedef struct sl_job_record {
    const char *job_id;
    const char *caller;
    int priority;
    const void *metadata;
    size_t metadata_length;
    int attempts;
} sl_job_record;

/** Rebuilds a queued job found in the log at lane creation: fill `job` (initialized with
    sl_job_init; its id is replaced by the record's) and return 0, or return non-zero to mark
    it failed. The job's pointers need to live only for the callback (they may point into
    `record`). A filled job that is invalid (no `run`, say) is marked failed, and its `done`,
    if set, is called with SL_JOB_FAILED. Called during sl_lane_create(), on a sagalane
    thread, before it returns. */
typedef int (*sl_job_reconstruct_fn)(void *userdata, const sl_job_record *record, sl_job *job);

typedef struct sl_lane_options {
    size_t size;              /* sizeof(sl_lane_options) */
    int max_concurrent;       /* jobs running at once, up to SL_LANE_MAX_CONCURRENT; 0 means 1 */
    /** Non-zero (the default): every job's rows go to the log, the queued row durable before
        the job can run; a job whose row cannot be written is refused. */
    int persisted;
    /** Persisted lanes: at creation, rows left `running` by a previous process become failed
        ("lost on restart"), and rows left `queued` are rebuilt by `reconstruct` and queued
        again (NULL: marked failed). */
    sl_job_reconstruct_fn reconstruct;
    void *reconstruct_userdata;
} sl_lane_options;

/** Fills `options` with the defaults (persisted, 1 at a time), `size` included. */
SL_EXPORT void sl_lane_options_init(sl_lane_options *options);

/**
 * Creates the lane `name` in the runtime's pool. The handle lives until sl_runtime_close().
 * @param options NULL for the defaults.
 * If the system refuses some worker threads (a thread limit), the lane runs with those it
 * got, says so on standard error, and tries again whenever a job is queued.
 * @return 0, SL_EINVAL (also max_concurrent above SL_LANE_MAX_CONCURRENT), SL_EEXIST,
 *         SL_ELOG (recovery failed), SL_EREADONLY, SL_ECLOSED,
 *         SL_ETHREAD (not even one worker thread could start).
 */
SL_EXPORT int sl_lane_create(sl_runtime *rt, const char *name, const sl_lane_options *options, sl_lane **out);

/** Finds a lane by name. @return 0, SL_ENOTFOUND, SL_ECLOSED. */
SL_EXPORT int sl_lane_find(sl_runtime *rt, const char *name, sl_lane **out);

/** Where a submitted job stands. */
typedef struct sl_submission {
    size_t size;                 /* sizeof(sl_submission), set by the caller */
    int position;                /* jobs ahead of it */
    uint64_t estimated_wait_ms;  /* from the recent mean run time; 0 until one ran */
    char *job_id;                /* the job's id (generated if none was given); sl_free() it */
    /** 1: the job's idempotency key was taken, nothing was queued, `done` is not called, and
        `job_id` is the job that holds the key. */
    int duplicate;
} sl_submission;

/**
 * Submits a job. For a persisted lane it returns once the queued row is durable. On success
 * `job->done` is called exactly once (but for a duplicate: see `idempotency_key`); on failure
 * never.
 * @param out may be NULL; else its `size` must be set.
 * @return 0, SL_EINVAL, SL_EUTF8, SL_EEXIST (duplicate id), SL_ELOG (row not written: the job
 * never runs), SL_ECLOSED.
 */
SL_EXPORT int sl_lane_submit(sl_lane *lane, const sl_job *job, sl_submission *out);

/**
 * Submits `count` jobs in one call: for a persisted lane, the queued rows of the jobs it
 * takes go to the log together, in one group commit (one fsync for the batch), and it returns
 * once each is durable or refused. Each job is taken or refused on its own, as
 * sl_lane_submit() would: a taken job's `done` is called exactly once (but for a duplicate),
 * a refused one's never. When it returns, every job it reported taken (code 0) has its queued
 * row on disk, so after a SIGKILL at the next instruction the next sl_lane_create() of this
 * lane finds it and rebuilds it; a refused job is in no row (tests/c/lane_batch_crash.c).
 * @param jobs `count` pointers to jobs.
 * @param codes NULL, or room for `count` codes: 0 (taken, or a duplicate) or the SL_E* code
 *        that refused each job.
 * @param out NULL, or `count` pointers, each NULL or an sl_submission with `size` set (its
 *        `job_id` to sl_free()), filled for each job taken.
 * @return 0 when every job was taken; else the code of the first job refused (its message,
 *         naming its index, in sl_runtime_errmsg), or SL_EINVAL for `jobs` or an `out` entry
 *         themselves, before anything was submitted.
 */
SL_EXPORT int sl_lane_submit_batch(sl_lane *lane, const sl_job *const *jobs, size_t count, int *codes,
                                   sl_submission *const *out);

/** How a job given to sl_lane_submit_async() was queued: `rc` 0 and `submission` (borrowed for
    the call: do not sl_free() its `job_id`), or the SL_E* code that refused it and NULL (its
    message in sl_runtime_errmsg() during the call). */
typedef void (*sl_queued_fn)(void *userdata, int rc, const sl_submission *submission);

/**
 * Submits a job and returns at once, without waiting for its queued row, so that one thread
 * can submit at the rate of the log's group commits instead of one fsync per job. `queued`
 * (may be NULL) is called exactly once, on the runtime's callback thread: with 0 once the
 * job's queued row is durable (an in-memory lane: once it is queued), or with the code that
 * refused the job, whose `done` is then never called; `done` always comes after `queued`.
 * Until `queued` reports 0, a crash may lose the job; once it has, after a SIGKILL at the
 * next instruction the job's row is in the log and the next sl_lane_create() of this lane
 * rebuilds it (tests/c/lane_batch_crash.c).
 * @return 0 (`queued` will be called), SL_EINVAL, SL_EUTF8 or SL_ECLOSED (refused at once:
 *         `queued` is not called).
 */
SL_EXPORT int sl_lane_submit_async(sl_lane *lane, const sl_job *job, sl_queued_fn queued, void *userdata);

/**
 * Submits a job and blocks the calling thread until it ends (`job->done` is not used): it
 * returns only once the job will not run again, so its userdata is then the caller's. A job
 * whose idempotency key is taken is not waited for: SL_EEXIST, the message naming the job.
 * Another thread can give up on it with sl_lane_interrupt(lane, job id): if the job has not
 * started (even while its queued row is being written) it never runs and this returns
 * SL_ECANCELED.
 * @param text receives the result (0) or the error (SL_EJOBFAILED); may be NULL; sl_free().
 * @return 0, SL_EJOBFAILED, SL_ECANCELED, SL_ESTATE (called from a callback on the loop
 * thread, or from a job: either could wait forever), or a submit error.
 */
SL_EXPORT int sl_lane_submit_wait(sl_lane *lane, const sl_job *job, char **text);

/**
 * Cancels a job that has not started (queued, or its queued row still being written): it
 * never runs and ends cancelled. Blocks until that is durable: when it returns 0 on a
 * persisted lane, the job's cancelled row is on disk, so the job does not run after a crash
 * and restart either; its `done` has been called (or is queued on the callback thread) with
 * SL_JOB_CANCELLED. Any thread.
 * @return 0, SL_ENOTQUEUED (running, or between retries: it may still run), SL_ENOTFOUND
 *         (no such job in the lane, or it already ended), SL_ELOG / SL_EREADONLY / SL_EFULL /
 *         ... (the cancelled row could not be written: the job stays queued, in its place).
 */
SL_EXPORT int sl_lane_cancel(sl_lane *lane, const char *job_id);

/** Gives up on a job and returns at once: one that has not started (queued, its queued row
    being written, or waiting out a retry back-off) never runs and ends cancelled (its `done`
    is called once the cancelled row is durable); a running one sees its sl_job_cancelled()
    flag. Any thread. @return 0, SL_ENOTFOUND. */
SL_EXPORT int sl_lane_interrupt(sl_lane *lane, const char *job_id);

/** Changes how many jobs may run at once (1 to SL_LANE_MAX_CONCURRENT). Raising it starts
    queued jobs at once; lowering it lets running jobs finish. @return 0, SL_EINVAL (out of
    range; nothing changes). */
SL_EXPORT int sl_lane_set_max_concurrent(sl_lane *lane, int max_concurrent);

typedef struct sl_lane_stats {
    size_t size;             /* sizeof(sl_lane_stats), set by the caller */
    int queued;
    int running;
    int max_concurrent;
    uint64_t completed;
    uint64_t failed;
    uint64_t cancelled;
    double mean_run_ms;      /* over the last 64 runs */
} sl_lane_stats;

/** Reads the lane's counters into `out` (its `size` must be set). @return 0, SL_EINVAL. */
SL_EXPORT int sl_lane_get_stats(sl_lane *lane, sl_lane_stats *out);

/**
 * Lets sagas send commands to "lane:<name>": each command becomes a job on this lane, with
 * the id "saga-<saga id>-step-<step>" (so it can be cancelled) and the command JSON as its
 * metadata, run by `fn` (on a worker thread), and whose outcome is
 * published as SL_EVENT_LANE_JOB_* tagged with the saga. `release(userdata)` (may be NULL) is
 * called once no job uses the handler any more: after it was replaced (or the runtime closed)
 * and the last job that took it ended; on whichever sagalane or closing thread that is.
 * @return 0, SL_EINVAL (fn NULL), SL_ECLOSED.
 */
SL_EXPORT int sl_lane_set_command_handler(sl_lane *lane, sl_job_fn fn, void *userdata, void (*release)(void *userdata));

/* ------------------------------------------------------------------------------------------ */
/* The log, for diagnostics                                                                    */
/* ------------------------------------------------------------------------------------------ */

/*
 * Sagas come out as JSON objects:
 *   {"id", "name", "state", "input", "failure_reason", "started_at", "ended_at",
 *    "idempotency_key", "steps"}
 * where "steps" is a count (sl_log_recent) or an array of
 *   {"index", "name", "target", "command", "state", "output", "failure_reason",
 *    "started_at", "ended_at", "attempts", "compensates", "spec", "cause"}
 * and sl_log_saga adds "history": the saga's lifecycle events (as sl_log_lifecycle lists
 * them), its operators' actions included. "attempts" counts a step's dispatches (retries,
 * re-dispatches after a restart); "compensates" is the step a compensation undoes (null for a
 * forward step); "spec" what the step declared beyond its command (sl_action_issue_step's
 * form without "target" and "command"; null when nothing); "cause" the event that led to the
 * step when it answered no earlier one. Steps: pending, succeeded, failed, compensated (a
 * succeeded step its compensation undid). Times are UTC, ISO 8601 with milliseconds.
 *
 * Saga states, each with one meaning:
 *   running, compensating   unfinished: in flight (its steps, or undoing them). Start-up
 *                           recovery acts on the sagas a stopped runtime left so.
 *   completed, compensated  final.
 *   failed                  final: failed with nothing left to compensate.
 *   failed_compensation     final, but needs an operator: a compensation failed, the saga was
 *                           interrupted (recovery's markFailed), or it failed leaving side
 *                           effects that nothing compensates.
 * "Unresolved" (sl_log_unresolved) is what an operator should look at: the unfinished sagas
 * and those in failed_compensation. Vacuum deletes final sagas only.
 */

/** Up to `limit` sagas, most recent first, as a JSON array. `*json`: sl_free().
    The sl_log_* calls return 0, SL_EINVAL, SL_ENOTFOUND (sl_log_saga), or the log's error. */
SL_EXPORT int sl_log_recent(sl_runtime *rt, int limit, char **json);

/** How many sagas sl_log_unresolved() lists. */
#define SL_LOG_UNRESOLVED_DEFAULT_LIMIT 1000

/** Up to `limit` unresolved sagas (running, compensating, failed_compensation), oldest id
    first, each with its steps, as a JSON array. `*json`: sl_free(). A negative limit is
    SL_EINVAL. */
SL_EXPORT int sl_log_unresolved_limit(sl_runtime *rt, int limit, char **json);

/** sl_log_unresolved_limit() with SL_LOG_UNRESOLVED_DEFAULT_LIMIT. */
SL_EXPORT int sl_log_unresolved(sl_runtime *rt, char **json);

/** Saga `saga_id` with its steps and history, as a JSON object. @return 0, SL_ENOTFOUND, ... */
SL_EXPORT int sl_log_saga(sl_runtime *rt, uint64_t saga_id, char **json);

/** Up to `limit` lifecycle events after position `after` (0: from the first), in order, as a
    JSON array of {"position", "saga_id", "type", "payload", "at"}. `*json`: sl_free(). Only
    committed events: each is in the log in the transaction of the change it announces, so what
    this returns is there after a SIGKILL too, at the same positions (the lifecycle-crash test
    of Tests/RuntimeTests/LifecycleStreamTests.swift reads it back after a kill). */
SL_EXPORT int sl_log_lifecycle(sl_runtime *rt, uint64_t after, int limit, char **json);

/**
 * Up to `limit` lane jobs, most recent activity first, as a JSON array of
 *   {"id", "lane", "caller", "priority", "state", "attempts", "error", "metadata",
 *    "metadata_size", "enqueued_at", "started_at", "finished_at", "cancelled_at", "failed_at"}
 * States: queued, running, finished, cancelled, failed. "metadata" is the job's metadata
 * embedded as JSON when it is JSON text, a string when it is other UTF-8, else null.
 * Rows stay until the lane sweeper purges them (terminal rows, after its retention window).
 * @param lane only this lane's jobs (a lane of an earlier process counts too); NULL: all.
 * @param state only jobs in this state; NULL: all. An unknown state is SL_EINVAL.
 */
SL_EXPORT int sl_log_jobs(sl_runtime *rt, const char *lane, const char *state, int limit, char **json);

/**
 * What the log holds, counted, as a JSON object:
 *   {"schema_version", "sagas": {state: count, ...every saga state}, "oldest_running_saga",
 *    "jobs": {lane: {state: count, ...every job state}}, "database_bytes", "wal_bytes"}
 * "oldest_running_saga" is when the longest-running saga still running started (null: none);
 * "wal_bytes" is null for a log in memory. `*json`: sl_free().
 */
SL_EXPORT int sl_log_stats(sl_runtime *rt, char **json);

/**
 * Deletes sagas that ended more than `older_than_ms` ago in a final state (never running
 * or compensating), steps included, in short batches, and waits for it. Their ids stay used:
 * no later saga gets one, even after a restart.
 * @param deleted receives how many sagas were deleted (may be NULL).
 */
SL_EXPORT int sl_log_vacuum(sl_runtime *rt, uint64_t older_than_ms, uint64_t *deleted);

/**
 * The largest value the log stores, in bytes (16 MiB): a saga's input, an event payload that
 * answers a step, a step's command, a lane job's metadata, a name or a reason. A call given a
 * larger one fails (SL_EINVAL, or the saga or job fails with that reason) with a message
 * naming the limit, and nothing of it is stored.
 */
#define SL_MAX_VALUE_BYTES (16 * 1024 * 1024)

#ifdef __cplusplus
}
#endif

#endif /* SAGALANE_H */
