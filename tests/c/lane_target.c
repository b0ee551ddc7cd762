/* Sagas sending commands to "lane:<name>": each command becomes a job run by the lane's
   command handler on a worker thread, with the command JSON (saga_id and step injected) as
   its NUL-terminated metadata; the outcome comes back tagged with the saga as
   LaneJobFinished {"lane","job_id","step","result"} (the result parsed when it is JSON) or
   LaneJobFailed {"error","attempts"}, or LaneJobCancelled. An unknown lane, or a lane without a handler, fails the
   saga. Replacing a handler releases the old one's userdata. */
#include "check.h"

static sl_runtime *rt;
static pthread_t loop_thread;
static int handler_runs, handler_on_loop;
static int gate_running, gate_open;

static int handler(void *userdata, sl_job_ctx *ctx) {
    EXPECT_STREQ(userdata, "second handler");
    size_t length = 0;
    const char *command = sl_job_metadata(ctx, &length);
    EXPECT(command != NULL);
    EXPECT_EQ_INT(strlen(command), length);
    EXPECT_CONTAINS(command, "\"saga_id\":");
    EXPECT_CONTAINS(command, "\"step\":0");
    EXPECT_CONTAINS(sl_job_id(ctx), "-step-0"); /* ids are "saga-<id>-step-<n>" */
    mon_lock();
    handler_runs++;
    if (pthread_equal(pthread_self(), loop_thread)) handler_on_loop++;
    mon_unlock();
    if (strstr(command, "\"mode\":\"fail\"")) {
        CHECK(sl_job_set_result(ctx, "handler failed"));
        return 1;
    }
    if (strstr(command, "\"mode\":\"gate\"")) {
        mon_lock();
        gate_running = 1;
        pthread_cond_broadcast(&mon_cond);
        WAIT_FOR_LOCKED(gate_open);
        mon_unlock();
        return sl_job_set_result(ctx, "{\"ok\":1}");
    }
    if (strstr(command, "\"mode\":\"text\"")) {
        CHECK(sl_job_set_result(ctx, "plain text"));
        return 0;
    }
    CHECK(sl_job_set_result(ctx, "{\"ok\":1}"));
    return 0;
}
static int first_handler(void *userdata, sl_job_ctx *ctx) {
    (void)userdata, (void)ctx;
    EXPECT(!"the replaced handler ran");
    return 1;
}

static int releases[2];
static void release(void *userdata) {
    mon_lock();
    releases[strcmp(userdata, "first handler") == 0 ? 0 : 1]++;
    mon_unlock_signal();
}

/* The input is {"target": ..., "mode": ...}; the saga sends {"mode": ...} to the target. */
struct plan {
    char target[32];
    char command[64];
};
static int create(void *userdata, const char *input, void **state) {
    (void)userdata;
    struct plan *p = calloc(1, sizeof *p);
    if (!p) return SL_ENOMEM;
    sscanf(strstr(input, "\"target\":\"") + 10, "%31[^\"]", p->target);
    const char *mode = strstr(input, "\"mode\":\"");
    snprintf(p->command, sizeof p->command, "{\"mode\":\"%.*s\"}", (int)strcspn(mode + 8, "\""), mode + 8);
    *state = p;
    return 0;
}
static void destroy(void *userdata, void *state) {
    (void)userdata;
    free(state);
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    struct plan *p = state;
    (void)userdata, (void)ctx;
    mon_lock();
    loop_thread = pthread_self();
    mon_unlock();
    CHECK(sl_action_issue(action, p->target, p->command));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state;
    EXPECT_EQ_INT(event->saga_id, ctx->saga_id);
    char job_id[64];
    snprintf(job_id, sizeof job_id, "\"job_id\":\"saga-%llu-step-0\"", (unsigned long long)ctx->saga_id);
    if (strcmp(event->type, SL_EVENT_LANE_JOB_FINISHED) == 0) {
        EXPECT_CONTAINS(event->payload_json, "\"lane\":\"work\"");
        EXPECT_CONTAINS(event->payload_json, job_id);
        EXPECT_CONTAINS(event->payload_json, "\"step\":0");
        if (strstr(event->payload_json, "\"result\":{\"ok\":1}") || strstr(event->payload_json, "\"result\":\"plain text\""))
            CHECK(sl_action_done(action));
        else
            CHECK(sl_action_fail(action, event->payload_json));
    } else if (strcmp(event->type, SL_EVENT_LANE_JOB_CANCELLED) == 0) {
        EXPECT_CONTAINS(event->payload_json, "\"lane\":\"work\"");
        EXPECT_CONTAINS(event->payload_json, job_id);
        CHECK(sl_action_fail(action, "the lane job was cancelled"));
    } else if (strcmp(event->type, SL_EVENT_LANE_JOB_FAILED) == 0) {
        EXPECT_CONTAINS(event->payload_json, "\"lane\":\"work\"");
        EXPECT_CONTAINS(event->payload_json, job_id);
        EXPECT_CONTAINS(event->payload_json, "\"error\":\"handler failed\"");
        EXPECT_CONTAINS(event->payload_json, "\"attempts\":1");
        CHECK(sl_action_fail(action, "the lane job failed"));
    }
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "lane_target.db");
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = create;
    type.destroy = destroy;
    type.start = start;
    type.on_event = on_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    sl_lane *lane = NULL, *bare = NULL;
    sl_lane_options options;
    sl_lane_options_init(&options);
    options.max_concurrent = 2;
    CHECK(sl_lane_create(rt, "work", &options, &lane));
    CHECK(sl_lane_create(rt, "bare", NULL, &bare));
    CHECK(sl_lane_set_command_handler(lane, first_handler, "first handler", release));
    CHECK(sl_lane_set_command_handler(lane, handler, "second handler", release));
    EXPECT_EQ_INT(releases[0], 1);
    EXPECT_EQ_INT(releases[1], 0);
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    uint64_t ok = 0, text = 0, failed = 0, unknown = 0, no_handler = 0;
    CHECK(sl_saga_start(rt, "t", "{\"target\":\"lane:work\",\"mode\":\"json\"}", &ok));
    CHECK(sl_saga_start(rt, "t", "{\"target\":\"lane:work\",\"mode\":\"text\"}", &text));
    CHECK(sl_saga_start(rt, "t", "{\"target\":\"lane:work\",\"mode\":\"fail\"}", &failed));
    CHECK(sl_saga_start(rt, "t", "{\"target\":\"lane:nope\",\"mode\":\"json\"}", &unknown));
    CHECK(sl_saga_start(rt, "t", "{\"target\":\"lane:bare\",\"mode\":\"json\"}", &no_handler));

    char *end = rec_wait_terminal(&rec, ok);
    EXPECT_STREQ(end, "SagaCompleted {\"name\":\"t\",\"state\":\"completed\"}");
    free(end);
    end = rec_wait_terminal(&rec, text);
    EXPECT_STREQ(end, "SagaCompleted {\"name\":\"t\",\"state\":\"completed\"}");
    free(end);
    end = rec_wait_terminal(&rec, failed);
    EXPECT_STREQ(end, "SagaFailed {\"name\":\"t\",\"reason\":\"the lane job failed\",\"state\":\"failed\"}");
    free(end);
    end = rec_wait_terminal(&rec, unknown);
    EXPECT_CONTAINS(end, "SagaFailed");
    EXPECT_CONTAINS(end, "nope");
    free(end);
    end = rec_wait_terminal(&rec, no_handler);
    EXPECT_CONTAINS(end, "SagaFailed");
    EXPECT_CONTAINS(end, "bare");
    free(end);

    mon_lock();
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_LANE_JOB_FINISHED, ok), 1);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_LANE_JOB_FINISHED, text), 1);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_LANE_JOB_FAILED, failed), 1);
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_LANE_JOB_FINISHED, 0) + rec_count_locked(&rec, SL_EVENT_LANE_JOB_FAILED, 0), 3);
    EXPECT_EQ_INT(handler_runs, 3);
    EXPECT_EQ_INT(handler_on_loop, 0);
    mon_unlock();
    sl_lane_stats stats = {.size = sizeof stats};
    CHECK(sl_lane_get_stats(lane, &stats));
    EXPECT_EQ_INT(stats.completed, 2);
    EXPECT_EQ_INT(stats.failed, 1);

    /* A lane job cancelled while queued: the saga hears LaneJobCancelled. */
    CHECK(sl_lane_set_max_concurrent(lane, 1));
    uint64_t gate = 0, cancelled = 0;
    CHECK(sl_saga_start(rt, "t", "{\"target\":\"lane:work\",\"mode\":\"gate\"}", &gate));
    WAIT_FOR(gate_running);
    CHECK(sl_saga_start(rt, "t", "{\"target\":\"lane:work\",\"mode\":\"json\"}", &cancelled));
    char job_id[64];
    snprintf(job_id, sizeof job_id, "saga-%llu-step-0", (unsigned long long)cancelled);
    POLL_UNTIL(sl_lane_cancel(lane, job_id) == 0);
    end = rec_wait_terminal(&rec, cancelled);
    EXPECT_STREQ(end, "SagaFailed {\"name\":\"t\",\"reason\":\"the lane job was cancelled\",\"state\":\"failed\"}");
    free(end);
    mon_lock();
    EXPECT_EQ_INT(rec_count_locked(&rec, SL_EVENT_LANE_JOB_CANCELLED, cancelled), 1);
    gate_open = 1;
    mon_unlock_signal();
    end = rec_wait_terminal(&rec, gate);
    EXPECT_STREQ(end, "SagaCompleted {\"name\":\"t\",\"state\":\"completed\"}");
    free(end);

    /* The log shows the lane step with its command and output. */
    char *json = NULL;
    CHECK(sl_log_saga(rt, ok, &json));
    EXPECT_CONTAINS(json, "\"target\":\"lane:work\"");
    EXPECT_CONTAINS(json, "\"state\":\"succeeded\"");
    sl_free(json);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    EXPECT_EQ_INT(releases[0], 1);
    EXPECT_EQ_INT(releases[1], 1);
    rec_free(&rec);
    return 0;
}
