/*
 * The child: a host that uses sagalane the way a real one does, on a file log with
 * SL_DURABILITY_FULL, and writes down every acknowledgement the API gives it (soak.h lists
 * the lines). It is killed with SIGKILL at a random moment or right after one of its
 * acknowledgements; the parent then holds the log to them. Two threads drive it at once, one
 * sagas and one jobs.
 *
 * Sagas of type "soak": step 0 goes to the host target "host", which hands the command to a
 * host thread; that thread answers after a short random delay with sl_publish, or fails the
 * step with sl_step_fail, or never answers (the saga's 200 ms deadline then ends it). Step 1
 * goes to "lane:steps", whose command handler runs it as a lane job; its outcome ends the
 * saga. Each saga's input carries a unique nonce, so the parent can tell which saga a log row
 * belongs to.
 *
 * Sagas of types "resume" (SL_RECOVERY_RESUME) and "compensate" (SL_RECOVERY_COMPENSATE): two
 * to four steps to the host target "ledger", each declaring a compensation to the target
 * "refund". The input plans each saga's fate: a step the target fails, a step it never answers
 * (the saga's deadline then fails it), a compensation that fails or is never answered; so
 * they compensate in runs that are not killed too. Both targets write a "dispatch" line for
 * every command they receive, and the host thread an "answer" line before each answer it
 * gives, so the parent knows every dispatch and every success a step or compensation had.
 *
 * Lane jobs on the persisted lane "work": priorities, 2 to 4 at a time, some idempotent with
 * retries whose first attempt fails, cancelled at random while queued. The lane's reconstruct
 * callback rebuilds queued rows found at creation from their metadata, so jobs outlive the
 * process that submitted them; their ids carry the cycle number, so they are unique across
 * all cycles.
 *
 * Every API error other than the answers the header documents for a race (SL_ENOTFOUND for a
 * saga that already ended, SL_ESTATE for one compensating already, SL_ENOTQUEUED for a job
 * that started) ends the child with a
 * message and a non-zero status: under this load none is expected, and the parent reports a
 * child that exits.
 */
#include "soak.h"

#include <sagalane.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAGA_TIMEOUT_MS 200
/* The sagas of many steps: long enough for four steps answered within 30 ms each, short enough
   that one left unanswered fails soon. A compensation waits less than the default 30 s. */
#define MULTI_TIMEOUT_MS 600
#define MULTI_COMPENSATION_TIMEOUT_MS 250
#define MULTI_STEPS_MAX 4
#define MAX_SAGAS_IN_FLIGHT 24
#define MAX_JOBS_QUEUED 24
/* Cancels pick among the most recent ids: old ones have ended, so cancelling them would only
   give SL_ENOTFOUND. */
#define RECENT 8
/* What the clean run does before it waits for everything to end. */
#define CLEAN_SAGAS 60
#define CLEAN_JOBS 60
#define CLEAN_GUARD_MS 30000

static sl_runtime *rt;
static sl_lane *work_lane;
static int ack_fd = -1;
static const child_args *args;

/* Counters the clean run waits on, under `counts_mutex`. */
static pthread_mutex_t counts_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t counts_cond = PTHREAD_COND_INITIALIZER;
static uint64_t sagas_started, sagas_ended, jobs_accepted, jobs_done;

static void counts_add(uint64_t *counter, uint64_t n) {
    pthread_mutex_lock(&counts_mutex);
    *counter += n;
    pthread_cond_broadcast(&counts_cond);
    pthread_mutex_unlock(&counts_mutex);
}

/* Ends the child over an unexpected API answer. */
static void fail_call(const char *call, int rc) __attribute__((noreturn));
static void fail_call(const char *call, int rc) {
    fprintf(stderr, "soak child (cycle %d): %s returned %d %s: %s\n", args->cycle, call, rc, sl_err_name(rc),
            sl_runtime_errmsg(rt));
    fflush(stderr);
    _exit(2);
}

/* One acknowledgement: one write(2) of the whole line, then fdatasync. Many threads call it;
   O_APPEND makes the kernel place each write whole at the end, so lines never interleave, and
   a SIGKILL leaves each line either complete or absent. */
static void ack(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ack(const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line - 1) soak_die("ack line too long: %.80s", line);
    line[n++] = '\n';
    ssize_t written = write(ack_fd, line, (size_t)n);
    if (written != n) soak_die("cannot write the ack file: %s", strerror(errno));
    if (fdatasync(ack_fd) != 0) soak_die("cannot fdatasync the ack file: %s", strerror(errno));
}

/* An acknowledgement without the fdatasync, for the loop thread. */
static void ack_nosync(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ack_nosync(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line - 1) soak_die("ack line too long: %.80s", line);
    line[n++] = '\n';
    if (write(ack_fd, line, (size_t)n) != n) soak_die("cannot write the ack file: %s", strerror(errno));
}

/* ---- Sagas ---------------------------------------------------------------------------------- */

typedef struct saga_state {
    char nonce[64];
} saga_state;

static int saga_create(void *userdata, const char *input, void **state) {
    (void)userdata;
    const char *at = strstr(input, "\"nonce\":\"");
    if (!at) return 1; /* refused: every saga here carries a nonce */
    saga_state *s = calloc(1, sizeof *s);
    if (!s) return SL_ENOMEM;
    at += strlen("\"nonce\":\"");
    size_t length = strcspn(at, "\"");
    if (length >= sizeof s->nonce) length = sizeof s->nonce - 1;
    memcpy(s->nonce, at, length);
    *state = s;
    return 0;
}

static void saga_destroy(void *userdata, void *state) {
    (void)userdata;
    free(state);
}

static void saga_begin(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    saga_state *s = state;
    char command[128];
    snprintf(command, sizeof command, "{\"nonce\":\"%s\"}", s->nonce);
    int rc = sl_action_issue(action, "host", command);
    if (rc != 0) fail_call("sl_action_issue(host)", rc);
}

static void saga_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata;
    saga_state *s = state;
    int rc = 0;
    if (strcmp(event->type, "Answer") == 0 && ctx->next_step == 1) {
        char command[128];
        snprintf(command, sizeof command, "{\"nonce\":\"%s\"}", s->nonce);
        rc = sl_action_issue(action, "lane:steps", command);
    } else if (strcmp(event->type, SL_EVENT_LANE_JOB_FINISHED) == 0) {
        rc = sl_action_done(action);
    } else if (strcmp(event->type, SL_EVENT_LANE_JOB_FAILED) == 0) {
        rc = sl_action_fail(action, "the lane step failed");
    } else if (strcmp(event->type, SL_EVENT_LANE_JOB_CANCELLED) == 0) {
        rc = sl_action_fail(action, "the lane step was cancelled");
    }
    if (rc != 0) fail_call("a saga action", rc);
}

/* The host target hands each command to the host thread through this queue. */
typedef struct answer {
    uint64_t saga_id;
    uint32_t step;
    int64_t due_ms;
    int fail;   /* sl_step_fail rather than the echo */
    int ledger; /* a step or compensation of a saga of many steps: "Done", with an answer line */
} answer;

#define ANSWERS_MAX 4096
static pthread_mutex_t answers_mutex = PTHREAD_MUTEX_INITIALIZER;
static answer answers[ANSWERS_MAX];
static size_t answer_count;
static int answers_stop;
static soak_rng target_rng; /* used on the loop thread only */

/* Returns what a target returns: a refusal fails the saga (or its compensation) at once,
   which the checks accept. */
static int queue_answer(const answer *a) {
    pthread_mutex_lock(&answers_mutex);
    int full = answer_count == ANSWERS_MAX;
    if (!full) answers[answer_count++] = *a;
    pthread_mutex_unlock(&answers_mutex);
    return full ? 1 : 0;
}

/* Loop thread: decides the command's fate and returns at once. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)command;
    uint64_t fate = rng_below(&target_rng, 100);
    if (fate >= 85) return 0; /* never answered: the saga's deadline ends it */
    answer a = {saga_id, step, soak_now_ms() + (int64_t)rng_below(&target_rng, 30), fate >= 72, 0};
    return queue_answer(&a);
}

/* The host thread: answers commands once they are due. */
static void *answer_thread(void *unused) {
    (void)unused;
    for (;;) {
        answer due[64];
        size_t n = 0;
        int64_t now = soak_now_ms();
        pthread_mutex_lock(&answers_mutex);
        if (answers_stop) {
            pthread_mutex_unlock(&answers_mutex);
            return NULL;
        }
        for (size_t i = 0; i < answer_count && n < 64;) {
            if (answers[i].due_ms <= now) {
                due[n++] = answers[i];
                answers[i] = answers[--answer_count];
            } else {
                i++;
            }
        }
        pthread_mutex_unlock(&answers_mutex);
        for (size_t i = 0; i < n; i++) {
            int rc;
            if (due[i].ledger) {
                /* Written before the answer: a success the runtime may act on is always here. */
                ack("answer %llu %u %s", (unsigned long long)due[i].saga_id, due[i].step, due[i].fail ? "fail" : "ok");
                char payload[48];
                snprintf(payload, sizeof payload, "{\"step\":%u}", due[i].step);
                rc = due[i].fail ? sl_step_fail(rt, due[i].saga_id, due[i].step, "the ledger said no")
                                 : sl_publish(rt, "Done", due[i].saga_id, payload);
            } else {
                rc = due[i].fail ? sl_step_fail(rt, due[i].saga_id, due[i].step, "the host said no")
                                 : sl_publish(rt, "Answer", due[i].saga_id, "{\"ok\":true}");
            }
            if (rc != 0) fail_call(due[i].fail ? "sl_step_fail" : "sl_publish", rc);
        }
        soak_sleep_ms(1);
    }
}

/* The subscription: every terminal event is an acknowledgement of how the saga ended. Ends
   that start-up recovery gave sagas of an earlier process ("recovered" in the payload) are
   acknowledged too, but do not count against this process's sagas in flight. */
static void on_lifecycle(void *userdata, const sl_event *event) {
    (void)userdata;
    /* Sagas of many steps are counted by their `ended` callback: those of an earlier process
       that recovery resumed or compensated end here without "recovered" in the payload. */
    int ours = strstr(event->payload_json, "\"recovered\":") == NULL &&
               strstr(event->payload_json, "\"name\":\"soak\"") != NULL;
    if (strcmp(event->type, SL_EVENT_SAGA_COMPLETED) == 0) {
        ack("saga-end %llu completed %s", (unsigned long long)event->saga_id, event->payload_json);
        if (ours) counts_add(&sagas_ended, 1);
    } else if (strcmp(event->type, SL_EVENT_SAGA_FAILED) == 0) {
        ack("saga-end %llu failed %s", (unsigned long long)event->saga_id, event->payload_json);
        if (ours) counts_add(&sagas_ended, 1);
    } else if (strcmp(event->type, SL_EVENT_LAGGED) == 0) {
        ack("lagged %s", event->payload_json);
    }
}

/* The lane:steps handler: a short piece of work that sometimes fails. Its fate comes from the
   command (the nonce), so it is the same however often it would run. */
static int step_job(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    size_t length = 0;
    const char *command = sl_job_metadata(ctx, &length);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < length; i++) h = (h ^ (unsigned char)command[i]) * 1099511628211ull;
    soak_sleep_ms((int64_t)(h % 8));
    if ((h >> 8) % 10 == 0) {
        sl_job_set_result(ctx, "the step failed");
        return 1;
    }
    return sl_job_set_result(ctx, "{\"ok\":true}");
}

/* ---- Sagas of many steps: resume and compensate ---------------------------------------------- */

/* A saga's plan, all in its input so that a saga rebuilt from it after a crash decides the
   same commands: "steps" in all, and the step (or -1) whose command the ledger fails
   ("fail_at"), never answers ("silent_at"), whose compensation the refund target fails
   ("undo_fail") or never answers ("undo_silent"). */
typedef struct multi_plan {
    char nonce[64];
    int steps, fail_at, silent_at, undo_fail, undo_silent;
} multi_plan;

static int json_int(const char *json, const char *key, int *out) {
    char needle[32];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *at = strstr(json, needle);
    if (!at) return -1;
    char *end = NULL;
    long value = strtol(at + strlen(needle), &end, 10);
    if (end == at + strlen(needle)) return -1;
    *out = (int)value;
    return 0;
}

static int multi_create(void *userdata, const char *input, void **state) {
    (void)userdata;
    const char *at = strstr(input, "\"nonce\":\"");
    multi_plan plan;
    memset(&plan, 0, sizeof plan);
    if (!at || json_int(input, "steps", &plan.steps) || json_int(input, "fail_at", &plan.fail_at) ||
        json_int(input, "silent_at", &plan.silent_at) || json_int(input, "undo_fail", &plan.undo_fail) ||
        json_int(input, "undo_silent", &plan.undo_silent) || plan.steps < 1 || plan.steps > MULTI_STEPS_MAX)
        return 1;
    at += strlen("\"nonce\":\"");
    size_t length = strcspn(at, "\"");
    if (length >= sizeof plan.nonce) length = sizeof plan.nonce - 1;
    memcpy(plan.nonce, at, length);
    multi_plan *s = malloc(sizeof *s);
    if (!s) return SL_ENOMEM;
    *s = plan;
    *state = s;
    return 0;
}

/* Step k and its compensation, as the plan says. Same plan, same commands: a replay after a
   crash issues exactly what the log recorded. */
static int multi_issue(const multi_plan *plan, int k, sl_action *action) {
    char command[192], compensation[192];
    const char *fate = k == plan->fail_at ? "fail" : k == plan->silent_at ? "silent" : "ok";
    const char *undo = k == plan->undo_fail ? "fail" : k == plan->undo_silent ? "silent" : "ok";
    snprintf(command, sizeof command, "{\"nonce\":\"%s\",\"do\":%d,\"fate\":\"%s\"}", plan->nonce, k, fate);
    snprintf(compensation, sizeof compensation, "{\"nonce\":\"%s\",\"undo\":%d,\"fate\":\"%s\"}", plan->nonce, k, undo);
    sl_step_options options;
    sl_step_options_init(&options);
    options.compensation_json = compensation;
    options.compensation_target = "refund";
    return sl_action_issue_ex(action, "ledger", command, &options);
}

static void multi_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    int rc = multi_issue(state, 0, action);
    if (rc != 0) fail_call("sl_action_issue_ex(ledger)", rc);
}

/* The ledger's "Done" for the step issued last moves the saga on; anything else (a late echo
   of an earlier attempt) is waited past. */
static void multi_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata;
    const multi_plan *plan = state;
    int step = -1, rc = 0;
    if (strcmp(event->type, "Done") != 0 || json_int(event->payload_json, "step", &step) != 0) return;
    if (step + 1 != (int)ctx->next_step) return;
    if (step + 1 < plan->steps)
        rc = multi_issue(plan, step + 1, action);
    else
        rc = sl_action_done(action);
    if (rc != 0) fail_call("a saga action", rc);
}

static void multi_ended(void *userdata, const sl_saga_end *end) {
    (void)userdata, (void)end;
    counts_add(&sagas_ended, 1);
}

/* "ledger" (steps) and "refund" (compensations), on the loop thread. Each writes down the
   command it received before anything can answer it: "dispatch <saga> <step> <target> do <k>
   <fate>" or "... undo <k> <fate> <compensates>", with "compensates" as the runtime injected
   it. The line is one write(2): once it returns the line outlives a SIGKILL (the page cache
   belongs to the kernel); an fdatasync here would stall the loop for every command. */
static int ledger_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    const char *target = userdata;
    int k = -1, compensates = -1, undo = json_int(command, "undo", &k) == 0;
    if (!undo && json_int(command, "do", &k) != 0) return 1;
    const char *fate_at = strstr(command, "\"fate\":\"");
    char fate[16] = "?";
    if (fate_at) snprintf(fate, sizeof fate, "%.*s", (int)strcspn(fate_at + 8, "\""), fate_at + 8);
    if (undo) {
        if (json_int(command, "compensates", &compensates) != 0) compensates = -1;
        ack_nosync("dispatch %llu %u %s undo %d %s %d", (unsigned long long)saga_id, step, target, k, fate, compensates);
    } else {
        ack_nosync("dispatch %llu %u %s do %d %s", (unsigned long long)saga_id, step, target, k, fate);
    }
    if (strcmp(fate, "silent") == 0) return 0; /* never answered: a deadline or timeout ends it */
    answer a = {saga_id, step, soak_now_ms() + 1 + (int64_t)rng_below(&target_rng, 20), strcmp(fate, "fail") == 0, 1};
    return queue_answer(&a);
}

static const char *const multi_types[2] = {"resume", "compensate"};

static void register_multi_types(void) {
    static const int policies[2] = {SL_RECOVERY_RESUME, SL_RECOVERY_COMPENSATE};
    for (int i = 0; i < 2; i++) {
        sl_saga_type type;
        sl_saga_type_init(&type);
        type.name = multi_types[i];
        type.create = multi_create;
        type.destroy = saga_destroy;
        type.start = multi_start;
        type.on_event = multi_on_event;
        type.timeout_ms = MULTI_TIMEOUT_MS;
        type.compensation_timeout_ms = MULTI_COMPENSATION_TIMEOUT_MS;
        type.recovery = policies[i];
        int rc = sl_saga_type_register(rt, &type, NULL);
        if (rc != 0) fail_call("sl_saga_type_register", rc);
    }
    int rc = sl_target_register(rt, "ledger", ledger_target, (void *)"ledger", NULL);
    if (rc == 0) rc = sl_target_register(rt, "refund", ledger_target, (void *)"refund", NULL);
    if (rc != 0) fail_call("sl_target_register", rc);
}

/* ---- Lane jobs ------------------------------------------------------------------------------ */

/* A job's plan, kept as its metadata ("idem=1 fail_first=1 fail=0 ms=12") so that a job
   rebuilt after a restart behaves as the one submitted. */
typedef struct job_plan {
    int idempotent, fail_first, fail, ms;
} job_plan;

static int plan_parse(const void *metadata, size_t length, job_plan *plan) {
    char text[128];
    if (!metadata || length == 0 || length >= sizeof text) return -1;
    memcpy(text, metadata, length);
    text[length] = '\0';
    return sscanf(text, "idem=%d fail_first=%d fail=%d ms=%d", &plan->idempotent, &plan->fail_first, &plan->fail,
                  &plan->ms) == 4
               ? 0
               : -1;
}

static int job_run(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    int attempt = sl_job_attempt(ctx);
    /* Before anything else: the job has started, whatever happens next. */
    ack("job-start %s %d", sl_job_id(ctx), attempt);
    size_t length = 0;
    const void *metadata = sl_job_metadata(ctx, &length);
    job_plan plan;
    if (plan_parse(metadata, length, &plan) != 0) {
        sl_job_set_result(ctx, "unreadable plan");
        return 1;
    }
    soak_sleep_ms(plan.ms);
    /* A failed attempt of a job with retries goes back to the queue, where sl_lane_cancel
       may cancel it: the parent must know the earlier run had ended. */
    if (plan.fail_first && attempt == 1) {
        sl_job_set_result(ctx, "the first attempt fails");
        ack("job-fail %s %d", sl_job_id(ctx), attempt);
        return 1;
    }
    if (plan.fail) {
        sl_job_set_result(ctx, "planned failure");
        ack("job-fail %s %d", sl_job_id(ctx), attempt);
        return 1;
    }
    return sl_job_set_result(ctx, "done");
}

static void job_done(void *userdata, const sl_job_outcome *outcome) {
    (void)userdata;
    static const char *const states[] = {"finished", "failed", "cancelled"};
    const char *state = outcome->state >= 0 && outcome->state <= 2 ? states[outcome->state] : "unknown";
    ack("job-end %s %s %d", outcome->job_id, state, outcome->attempts);
    counts_add(&jobs_done, 1);
}

static void job_fill(sl_job *job, const job_plan *plan) {
    job->run = job_run;
    job->done = job_done;
    job->max_attempts = plan->idempotent ? 3 : 1;
    job->retry_backoff_ms = 5;
}

/* Lane creation, on a sagalane thread: a queued row left by an earlier process. */
static int rebuild(void *userdata, const sl_job_record *record, sl_job *job) {
    (void)userdata;
    job_plan plan;
    if (plan_parse(record->metadata, record->metadata_length, &plan) != 0) return 1; /* marked failed */
    ack("job-rebuilt %s %d", record->job_id, record->attempts);
    job->caller = record->caller;
    job->priority = record->priority;
    job->metadata = record->metadata;
    job->metadata_length = record->metadata_length;
    job_fill(job, &plan);
    counts_add(&jobs_accepted, 1);
    return 0;
}

/* ---- The drivers ---------------------------------------------------------------------------- */

/* Two threads drive the runtime at once, one sagas and one jobs, as a host's threads would;
   each owns the state below its name. Concurrent calls also keep the log writer busy, and an
   answer given while a commit is in progress waits for the next one: that is when a promise
   the API made early is exposed longest. */

/* The saga driver's. */
static soak_rng saga_rng;
static uint64_t recent_sagas[RECENT], recent_saga_count;
static uint64_t saga_counter;

/* The job driver's. */
static soak_rng job_rng;
static char recent_jobs[RECENT][48];
static uint64_t recent_job_count;
static uint64_t job_counter;

/* A random plan for a saga of many steps: most complete, a third fail at a step and undo
   the ones before it, some of those with a compensation that fails or is never answered. */
static void multi_input(const char *nonce, char *input, size_t size) {
    int steps = 2 + (int)rng_below(&saga_rng, MULTI_STEPS_MAX - 1);
    int fail_at = -1, silent_at = -1, undo_fail = -1, undo_silent = -1;
    uint64_t fate = rng_below(&saga_rng, 100);
    if (fate < 25)
        fail_at = (int)rng_below(&saga_rng, (uint64_t)steps);
    else if (fate < 33)
        silent_at = (int)rng_below(&saga_rng, (uint64_t)steps);
    uint64_t undo = rng_below(&saga_rng, 100);
    if (undo < 8)
        undo_fail = (int)rng_below(&saga_rng, (uint64_t)steps);
    else if (undo < 11)
        undo_silent = (int)rng_below(&saga_rng, (uint64_t)steps);
    snprintf(input, size, "{\"nonce\":\"%s\",\"steps\":%d,\"fail_at\":%d,\"silent_at\":%d,\"undo_fail\":%d,\"undo_silent\":%d}",
             nonce, steps, fail_at, silent_at, undo_fail, undo_silent);
}

static void start_saga(void) {
    pthread_mutex_lock(&counts_mutex);
    int busy = sagas_started - sagas_ended >= MAX_SAGAS_IN_FLIGHT;
    pthread_mutex_unlock(&counts_mutex);
    if (busy) return;
    char nonce[64], input[256];
    snprintf(nonce, sizeof nonce, "%d-%llu-%08llx", args->cycle, (unsigned long long)++saga_counter,
             (unsigned long long)(rng_next(&saga_rng) & 0xffffffffu));
    /* Two in five of the default policy, the others of many steps, resume or compensate. */
    uint64_t kind = rng_below(&saga_rng, 10);
    const char *type = kind < 4 ? "soak" : multi_types[kind < 7 ? 0 : 1];
    uint64_t id = 0;
    int rc;
    if (kind < 4) {
        snprintf(input, sizeof input, "{\"nonce\":\"%s\"}", nonce);
        rc = sl_saga_start(rt, "soak", input, &id);
    } else {
        multi_input(nonce, input, sizeof input);
        sl_saga_start_options options;
        sl_saga_start_options_init(&options);
        options.ended = multi_ended;
        rc = sl_saga_start_ex(rt, type, input, &options, &id);
    }
    if (rc != 0) fail_call("sl_saga_start", rc);
    ack("saga-start %llu %s %s", (unsigned long long)id, nonce, type);
    counts_add(&sagas_started, 1);
    recent_sagas[recent_saga_count++ % RECENT] = id;
    /* Sometimes at once, while its running row may not be durable yet: the header promises
       that such a saga ends cancelled as soon as the row is. */
    if (rng_below(&saga_rng, 8) == 0) {
        rc = sl_saga_cancel(rt, id, "the soak cancelled it");
        if (rc == 0)
            ack("saga-cancel-ok %llu", (unsigned long long)id);
        else if (rc != SL_ENOTFOUND && rc != SL_ESTATE)
            fail_call("sl_saga_cancel", rc);
    }
}

static void cancel_saga(void) {
    if (recent_saga_count == 0) return;
    uint64_t id = recent_sagas[rng_below(&saga_rng, recent_saga_count < RECENT ? recent_saga_count : RECENT)];
    int rc = sl_saga_cancel(rt, id, "the soak cancelled it");
    if (rc == 0)
        ack("saga-cancel-ok %llu", (unsigned long long)id);
    else if (rc != SL_ENOTFOUND && rc != SL_ESTATE)
        fail_call("sl_saga_cancel", rc);
}

static void cancel_job(void) {
    if (recent_job_count == 0) return;
    const char *id = recent_jobs[rng_below(&job_rng, recent_job_count < RECENT ? recent_job_count : RECENT)];
    int rc = sl_lane_cancel(work_lane, id);
    if (rc == 0)
        ack("job-cancel-ok %s", id);
    else if (rc != SL_ENOTQUEUED && rc != SL_ENOTFOUND)
        fail_call("sl_lane_cancel", rc);
}

/* A burst of jobs, so some of them wait in the queue long enough to be cancelled. */
static void submit_jobs(void) {
    sl_lane_stats stats = {.size = sizeof stats};
    int rc = sl_lane_get_stats(work_lane, &stats);
    if (rc != 0) fail_call("sl_lane_get_stats", rc);
    if (stats.queued >= MAX_JOBS_QUEUED) return;
    int burst = 2 + (int)rng_below(&job_rng, 6);
    for (int i = 0; i < burst; i++) {
        job_plan plan = {0};
        plan.idempotent = rng_below(&job_rng, 10) < 4;
        plan.fail_first = plan.idempotent && rng_below(&job_rng, 2);
        plan.fail = !plan.idempotent && rng_below(&job_rng, 10) == 0;
        plan.ms = 5 + (int)rng_below(&job_rng, 40); /* long enough for a backlog to build */
        char id[48], metadata[96];
        snprintf(id, sizeof id, "c%d-j%llu", args->cycle, (unsigned long long)++job_counter);
        snprintf(metadata, sizeof metadata, "idem=%d fail_first=%d fail=%d ms=%d", plan.idempotent, plan.fail_first,
                 plan.fail, plan.ms);
        sl_job job;
        sl_job_init(&job);
        job.id = id;
        job.caller = "soak";
        job.priority = (int)rng_below(&job_rng, 4);
        job.metadata = metadata;
        job.metadata_length = strlen(metadata);
        job_fill(&job, &plan);
        rc = sl_lane_submit(work_lane, &job, NULL);
        if (rc != 0) fail_call("sl_lane_submit", rc);
        ack("job-submit %s %d", id, plan.idempotent);
        counts_add(&jobs_accepted, 1);
        snprintf(recent_jobs[recent_job_count++ % RECENT], sizeof recent_jobs[0], "%s", id);
    }
    /* Right after a burst its last jobs are likely still queued behind the first ones. */
    if (rng_below(&job_rng, 10) < 7) cancel_job();
}

/* Saga counts in the log before the start: what recovery is about to act on. */
static long unfinished_sagas(void) {
    char *json = NULL;
    int rc = sl_log_stats(rt, &json);
    if (rc != 0) fail_call("sl_log_stats", rc);
    long total = 0;
    const char *sagas = strstr(json, "\"sagas\":{");
    const char *end = sagas ? strchr(sagas, '}') : NULL;
    static const char *const unfinished[] = {"\"running\":", "\"compensating\":"};
    for (size_t i = 0; sagas && end && i < 2; i++) {
        const char *at = strstr(sagas, unfinished[i]);
        if (at && at < end) total += strtol(at + strlen(unfinished[i]), NULL, 10);
    }
    sl_free(json);
    return total;
}

/* Waits (with a guard) until every saga started here ended and every job accepted here had
   its done callback. */
static void wait_for_everything(void) {
    int64_t until = soak_now_ms() + CLEAN_GUARD_MS;
    pthread_mutex_lock(&counts_mutex);
    while (sagas_ended < sagas_started || jobs_done < jobs_accepted) {
        if (soak_now_ms() > until) {
            fprintf(stderr, "soak child (clean): after %d ms, %llu of %llu sagas ended and %llu of %llu jobs done\n",
                    CLEAN_GUARD_MS, (unsigned long long)sagas_ended, (unsigned long long)sagas_started,
                    (unsigned long long)jobs_done, (unsigned long long)jobs_accepted);
            _exit(3);
        }
        pthread_mutex_unlock(&counts_mutex);
        soak_sleep_ms(2);
        pthread_mutex_lock(&counts_mutex);
    }
    pthread_mutex_unlock(&counts_mutex);
}

/* Then for the sagas of earlier processes that recovery resumed or set compensating: the
   log must show none unfinished before the close, or they would be left running. */
static void wait_for_recovered(void) {
    int64_t until = soak_now_ms() + CLEAN_GUARD_MS;
    long left;
    while ((left = unfinished_sagas()) > 0) {
        if (soak_now_ms() > until) {
            fprintf(stderr, "soak child (clean): after %d ms, the log still has %ld sagas running or compensating\n",
                    CLEAN_GUARD_MS, left);
            _exit(3);
        }
        soak_sleep_ms(5);
    }
}

static void *drive_sagas(void *unused) {
    (void)unused;
    int clean = args->mode == CHILD_CLEAN;
    while (!clean || saga_counter < CLEAN_SAGAS) {
        uint64_t op = rng_below(&saga_rng, 100);
        if (op < 60)
            start_saga();
        else if (op < 90)
            cancel_saga();
        soak_sleep_ms((int64_t)rng_below(&saga_rng, 4));
    }
    return NULL;
}

static void *drive_jobs(void *unused) {
    (void)unused;
    int clean = args->mode == CHILD_CLEAN;
    while (!clean || job_counter < CLEAN_JOBS) {
        uint64_t op = rng_below(&job_rng, 100);
        if (op < 45) {
            submit_jobs();
        } else if (op < 85) {
            cancel_job();
        } else if (op < 90) {
            int rc = sl_lane_set_max_concurrent(work_lane, 2 + (int)rng_below(&job_rng, 3));
            if (rc != 0) fail_call("sl_lane_set_max_concurrent", rc);
        }
        soak_sleep_ms((int64_t)rng_below(&job_rng, 4));
    }
    return NULL;
}

int child_main(const child_args *child) {
    args = child;
    saga_rng.state = seed_mix(args->seed, 1);
    job_rng.state = seed_mix(args->seed, 3);
    target_rng.state = seed_mix(args->seed, 2);
    ack_fd = open(args->ack_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (ack_fd < 0) soak_die("cannot open %s: %s", args->ack_path, strerror(errno));

    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = args->db_path;
    options.durability = SL_DURABILITY_FULL;
    int rc = sl_runtime_open(&options, &rt);
    if (rc != 0) fail_call("sl_runtime_open", rc);
    ack("open-ok");
    if (args->mode == CHILD_EXIT) exit(0);
    if (args->mode == CHILD_ABORT) abort();

    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "soak";
    type.create = saga_create;
    type.destroy = saga_destroy;
    type.start = saga_begin;
    type.on_event = saga_on_event;
    type.timeout_ms = SAGA_TIMEOUT_MS;
    if ((rc = sl_saga_type_register(rt, &type, NULL)) != 0) fail_call("sl_saga_type_register", rc);
    if ((rc = sl_target_register(rt, "host", host_target, NULL, NULL)) != 0) fail_call("sl_target_register", rc);
    register_multi_types();
    /* A large buffer: acks are slow (an fdatasync each), and a lagging subscriber would lose
       saga-end acknowledgements (it would say so with a "lagged" line). */
    sl_subscription *sub = NULL;
    if ((rc = sl_subscribe(rt, 1 << 16, on_lifecycle, NULL, &sub)) != 0) fail_call("sl_subscribe", rc);

    long recovered = unfinished_sagas();
    if ((rc = sl_runtime_start(rt)) != 0) fail_call("sl_runtime_start", rc);
    ack("start-ok %ld", recovered);

    /* The step lane's queued rows belong to sagas of earlier processes, which recovery ended:
       without a reconstruct callback they are marked failed. */
    sl_lane_options lane_options;
    sl_lane_options_init(&lane_options);
    lane_options.max_concurrent = 2;
    sl_lane *steps = NULL;
    if ((rc = sl_lane_create(rt, "steps", &lane_options, &steps)) != 0) fail_call("sl_lane_create(steps)", rc);
    if ((rc = sl_lane_set_command_handler(steps, step_job, NULL, NULL)) != 0) fail_call("sl_lane_set_command_handler", rc);
    lane_options.max_concurrent = 2 + (int)rng_below(&job_rng, 3);
    lane_options.reconstruct = rebuild;
    if ((rc = sl_lane_create(rt, "work", &lane_options, &work_lane)) != 0) fail_call("sl_lane_create(work)", rc);
    pthread_mutex_lock(&counts_mutex);
    uint64_t rebuilt = jobs_accepted;
    pthread_mutex_unlock(&counts_mutex);
    ack("lane-ok %llu", (unsigned long long)rebuilt);

    pthread_t answerer, sagas_thread, jobs_thread;
    if (pthread_create(&answerer, NULL, answer_thread, NULL) != 0) soak_die("cannot start the answer thread");
    if (pthread_create(&sagas_thread, NULL, drive_sagas, NULL) != 0) soak_die("cannot start the saga driver");
    if (pthread_create(&jobs_thread, NULL, drive_jobs, NULL) != 0) soak_die("cannot start the job driver");
    /* Until killed, or in the clean run until both drivers have done their share. */
    pthread_join(sagas_thread, NULL);
    pthread_join(jobs_thread, NULL);

    /* The clean run: everything ends, then the answer thread stops (it calls into the
       runtime, so before the close) and the runtime closes. */
    wait_for_everything();
    wait_for_recovered();
    pthread_mutex_lock(&answers_mutex);
    answers_stop = 1;
    pthread_mutex_unlock(&answers_mutex);
    pthread_join(answerer, NULL);
    ack("clean-done");
    sl_runtime_close(rt);
    ack("closed");
    close(ack_fd);
    return 0;
}
