/*
 * A launcher that embeds sagalane, re-creating the two sagas of the terminal-pool launcher
 * sagalane grew out of:
 *
 *   pool_respawn_on_promote  When a pool window is promoted, spawn a replacement pool window
 *                            and finish once the host reports it added.
 *   window_cleanup_cascade   When a window closes cleanly, reap its panes, then drain the pool
 *                            if it was the last window. Crash-flagged closes start nothing:
 *                            no host is left to answer. 30 s timeout.
 *
 * The host side answers the sagas' commands: spawning a window is slow work, so it runs as a
 * job on a persisted lane whose completion publishes the echo the saga waits for.
 *
 * Usage: sagalane-launcher [DATABASE]   (default: an in-memory log)
 * Exits 0 when every saga ended as expected, 1 otherwise.
 */
#include <sagalane.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                          \
    do {                                                                                     \
        int rc_ = (call);                                                                    \
        if (rc_ != 0) {                                                                      \
            fprintf(stderr, "launcher: %s failed: %s (%s): %s\n", #call, sl_err_name(rc_),   \
                    sl_strerror(rc_), sl_runtime_errmsg(rt));                                \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* ---- The sagas ------------------------------------------------------------------------- */

/* A saga's state: which step it reached. The input is kept by sagalane in the log. */
struct cleanup_state {
    int reaped;
};

static int no_state(void *userdata, const char *input, void **state) {
    (void)userdata;
    (void)input;
    *state = NULL;
    return 0;
}

static void respawn_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata;
    (void)state;
    (void)ctx;
    sl_action_issue(action, "host", "{\"cmd\":\"spawn_pool_window\"}");
}

static void respawn_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                             sl_action *action) {
    (void)userdata;
    (void)state;
    if (event->saga_id == ctx->saga_id && strcmp(event->type, "PoolWindowAdded") == 0) sl_action_done(action);
}

static int cleanup_create(void *userdata, const char *input, void **state) {
    (void)userdata;
    (void)input;
    *state = calloc(1, sizeof(struct cleanup_state));
    return *state ? 0 : SL_ENOMEM;
}

static void cleanup_destroy(void *userdata, void *state) {
    (void)userdata;
    free(state);
}

static void cleanup_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata;
    (void)state;
    (void)ctx;
    sl_action_issue(action, "host", "{\"cmd\":\"reap_panes\"}");
}

static void cleanup_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                             sl_action *action) {
    struct cleanup_state *s = state;
    (void)userdata;
    if (event->saga_id != ctx->saga_id) return;
    if (!s->reaped && strcmp(event->type, "PanesReaped") == 0) {
        s->reaped = 1;
        sl_action_issue(action, "host", "{\"cmd\":\"drain_pool_if_last\"}");
    } else if (s->reaped && (strcmp(event->type, "PoolDrained") == 0 || strcmp(event->type, "PoolNotLast") == 0)) {
        sl_action_done(action);
    }
}

/* Clean closes only. sagalane hands payloads over in compact form, so the flag reads as
   "crash_detected":true exactly when it is set. */
static int clean_close(void *userdata, const char *payload) {
    (void)userdata;
    return strstr(payload, "\"crash_detected\":true") == NULL;
}

/* ---- The host side ---------------------------------------------------------------------- */

static sl_runtime *rt;
static sl_lane *windows;

struct spawn {
    uint64_t saga_id;
};

/* Spawning a window takes a while: a lane job, off the loop thread. */
static int spawn_window(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    usleep(2000);
    if (sl_job_cancelled(ctx)) return SL_ECANCELED;
    sl_job_set_result(ctx, "{\"label\":\"pool-new\"}");
    return 0;
}

/* Once the window exists, tell the saga that asked for it. */
static void window_spawned(void *userdata, const sl_job_outcome *outcome) {
    struct spawn *spawn = userdata;
    if (outcome->state == SL_JOB_FINISHED) {
        sl_publish(rt, "PoolWindowAdded", spawn->saga_id, outcome->text);
    } else {
        sl_step_fail(rt, spawn->saga_id, 0, outcome->text);
    }
    free(spawn);
}

/* Every command the sagas send to "host". Runs on the loop thread: hand off and return. */
static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata;
    (void)step;
    if (strstr(command, "\"cmd\":\"spawn_pool_window\"")) {
        struct spawn *spawn = malloc(sizeof *spawn);
        if (!spawn) return SL_ENOMEM;
        spawn->saga_id = saga_id;
        sl_job job;
        sl_job_init(&job);
        job.caller = "launcher";
        job.run = spawn_window;
        job.done = window_spawned;
        job.userdata = spawn;
        int rc = sl_lane_submit(windows, &job, NULL);
        if (rc != 0) free(spawn);
        return rc;
    }
    if (strstr(command, "\"cmd\":\"reap_panes\"")) return sl_publish(rt, "PanesReaped", saga_id, "{\"panes\":3}");
    if (strstr(command, "\"cmd\":\"drain_pool_if_last\"")) return sl_publish(rt, "PoolDrained", saga_id, NULL);
    return SL_EINVAL;
}

/* ---- Watching the outcome ------------------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int started, completed, failed;

static void watch(void *userdata, const sl_event *event) {
    (void)userdata;
    pthread_mutex_lock(&lock);
    if (strcmp(event->type, SL_EVENT_SAGA_STARTED) == 0) started++;
    if (strcmp(event->type, SL_EVENT_SAGA_COMPLETED) == 0) completed++;
    if (strcmp(event->type, SL_EVENT_SAGA_FAILED) == 0) {
        failed++;
        fprintf(stderr, "launcher: saga %llu failed: %s\n", (unsigned long long)event->saga_id, event->payload_json);
    }
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = argc > 1 ? argv[1] : NULL;
    options.durability = SL_DURABILITY_NORMAL;
    CHECK(sl_runtime_open(&options, &rt));

    sl_saga_type respawn;
    sl_saga_type_init(&respawn);
    respawn.name = "pool_respawn_on_promote";
    respawn.create = no_state;
    respawn.start = respawn_start;
    respawn.on_event = respawn_on_event;
    CHECK(sl_saga_type_register(rt, &respawn, NULL));

    sl_saga_type cleanup;
    sl_saga_type_init(&cleanup);
    cleanup.name = "window_cleanup_cascade";
    cleanup.create = cleanup_create;
    cleanup.destroy = cleanup_destroy;
    cleanup.start = cleanup_start;
    cleanup.on_event = cleanup_on_event;
    cleanup.timeout_ms = 30000;
    CHECK(sl_saga_type_register(rt, &cleanup, NULL));

    CHECK(sl_trigger_add(rt, "PoolWindowPromoted", "pool_respawn_on_promote", NULL, NULL, NULL));
    CHECK(sl_trigger_add(rt, "WindowClosed", "window_cleanup_cascade", clean_close, NULL, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));

    sl_lane_options lane_options;
    sl_lane_options_init(&lane_options);
    lane_options.max_concurrent = 2;
    CHECK(sl_lane_create(rt, "windows", &lane_options, &windows));

    sl_subscription *sub;
    CHECK(sl_subscribe(rt, 0, watch, NULL, &sub));
    CHECK(sl_runtime_start(rt));

    /* What the terminal reports. The crash-flagged close must start nothing. */
    CHECK(sl_publish(rt, "PoolWindowPromoted", 0, "{\"label\":\"pool-1\"}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"label\":\"main\",\"crash_detected\":false}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"label\":\"logs\",\"crash_detected\":true}"));
    CHECK(sl_publish(rt, "PoolWindowPromoted", 0, "{\"label\":\"pool-2\"}"));
    CHECK(sl_publish(rt, "WindowClosed", 0, "{\"label\":\"side\"}"));

    /* A saga started directly, and some lane work of the launcher's own. */
    uint64_t direct;
    CHECK(sl_saga_start(rt, "window_cleanup_cascade", "{\"label\":\"direct\"}", &direct));
    sl_job job;
    sl_job_init(&job);

    job.caller = "launcher";
    job.run = spawn_window;
    char *result = NULL;
    CHECK(sl_lane_submit_wait(windows, &job, &result));
    printf("launcher: warm-up job answered %s\n", result);
    sl_free(result);

    const int expected = 5;
    pthread_mutex_lock(&lock);
    while (completed + failed < expected) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    /* A marker round trip: anything the crash-flagged close might have started would show. */
    usleep(50000);

    char *recent = NULL;
    CHECK(sl_log_recent(rt, 10, &recent));
    printf("launcher: recent sagas: %s\n", recent);
    sl_free(recent);

    sl_lane_stats stats = {.size = sizeof stats};
    CHECK(sl_lane_get_stats(windows, &stats));
    printf("launcher: %d sagas started, %d completed, %d failed; lane 'windows' ran %llu jobs\n", started,
           completed, failed, (unsigned long long)stats.completed);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    int ok = started == expected && completed == expected && failed == 0 && stats.completed == 3;
    if (!ok) fprintf(stderr, "launcher: expected %d sagas completed and 3 lane jobs\n", expected);
    fflush(stdout);
    return ok ? 0 : 1;
}
