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
 * Lane jobs on the persisted lane "work": priorities, 2 to 4 at a time, some idempotent with
 * retries whose first attempt fails, cancelled at random while queued. The lane's reconstruct
 * callback rebuilds queued rows found at creation from their metadata, so jobs outlive the
 * process that submitted them; their ids carry the cycle number, so they are unique across
 * all cycles.
 *
 * Every API error other than the answers the header documents for a race (SL_ENOTFOUND for a
 * saga that already ended, SL_ENOTQUEUED for a job that started) ends the child with a
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
#define MAX_SAGAS_IN_FLIGHT 24
#define MAX_JOBS_QUEUED 24
/* Cancels pick among the most recent ids: old ones have ended, so cancelling them would only
   give SL_ENOTFOUND. */
#define RECENT 8
/* What the clean run does before it waits for everything to end. */
#define CLEAN_SAGAS 40
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
    int fail; /* sl_step_fail rather than the echo */
} answer;

#define ANSWERS_MAX 4096
static pthread_mutex_t answers_mutex = PTHREAD_MUTEX_INITIALIZER;
static answer answers[ANSWERS_MAX];
static size_t answer_count;
static int answers_stop;
static soak_rng target_rng; /* used on the loop thread only */

/* Loop thread: decides the command's fate and returns at once. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)command;
    uint64_t fate = rng_below(&target_rng, 100);
    if (fate >= 85) return 0; /* never answered: the saga's deadline ends it */
    answer a = {saga_id, step, soak_now_ms() + (int64_t)rng_below(&target_rng, 30), fate >= 72};
    pthread_mutex_lock(&answers_mutex);
    int full = answer_count == ANSWERS_MAX;
    if (!full) answers[answer_count++] = a;
    pthread_mutex_unlock(&answers_mutex);
    return full ? 1 : 0; /* a refusal fails the saga at once, which the checks accept */
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
            int rc = due[i].fail ? sl_step_fail(rt, due[i].saga_id, due[i].step, "the host said no")
                                 : sl_publish(rt, "Answer", due[i].saga_id, "{\"ok\":true}");
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
    int ours = strstr(event->payload_json, "\"recovered\":") == NULL;
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

static void start_saga(void) {
    pthread_mutex_lock(&counts_mutex);
    int busy = sagas_started - sagas_ended >= MAX_SAGAS_IN_FLIGHT;
    pthread_mutex_unlock(&counts_mutex);
    if (busy) return;
    char nonce[64], input[128];
    snprintf(nonce, sizeof nonce, "%d-%llu-%08llx", args->cycle, (unsigned long long)++saga_counter,
             (unsigned long long)(rng_next(&saga_rng) & 0xffffffffu));
    snprintf(input, sizeof input, "{\"nonce\":\"%s\"}", nonce);
    uint64_t id = 0;
    int rc = sl_saga_start(rt, "soak", input, &id);
    if (rc != 0) fail_call("sl_saga_start", rc);
    ack("saga-start %llu %s", (unsigned long long)id, nonce);
    counts_add(&sagas_started, 1);
    recent_sagas[recent_saga_count++ % RECENT] = id;
    /* Sometimes at once, while its running row may not be durable yet: the header promises
       that such a saga ends cancelled as soon as the row is. */
    if (rng_below(&saga_rng, 8) == 0) {
        rc = sl_saga_cancel(rt, id, "the soak cancelled it");
        if (rc == 0)
            ack("saga-cancel-ok %llu", (unsigned long long)id);
        else if (rc != SL_ENOTFOUND)
            fail_call("sl_saga_cancel", rc);
    }
}

static void cancel_saga(void) {
    if (recent_saga_count == 0) return;
    uint64_t id = recent_sagas[rng_below(&saga_rng, recent_saga_count < RECENT ? recent_saga_count : RECENT)];
    int rc = sl_saga_cancel(rt, id, "the soak cancelled it");
    if (rc == 0)
        ack("saga-cancel-ok %llu", (unsigned long long)id);
    else if (rc != SL_ENOTFOUND)
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
