/* The log's diagnostics: sl_log_recent (most recent first, up to the limit, steps counted),
   sl_log_unresolved (what an operator should look at: the running saga, with its steps; not
   the failed one, which is final), sl_log_saga (one saga with
   its steps: command with ids injected, output, states, ISO 8601 UTC times with
   milliseconds), sl_log_stats (sagas counted by state), and sl_log_vacuum (terminal sagas
   older than the cutoff; never running ones).
   The log keeps each saga's input as given, even for a type with an input_snapshot
   callback: recovery rebuilds sagas from it. */
#include "check.h"

static sl_runtime *rt;
static int held;

static int host_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    if (strstr(command, "\"do\":\"answer\"")) return sl_publish(rt, "Answer", saga_id, "{\"echo\":\"hi\"}");
    mon_lock();
    held++;
    mon_unlock_signal();
    return 0;
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)ctx;
    if (strstr(state, "\"do\":\"fail\"")) CHECK(sl_action_fail(action, "refused by policy"));
    else CHECK(sl_action_issue(action, "host", state));
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (strcmp(event->type, "Answer") == 0) CHECK(sl_action_done(action));
}

/* What the log keeps of an input: secrets redacted; other inputs as given (NULL result). */
static const char *snapshot(void *userdata, void *state) {
    (void)userdata;
    return strstr(state, "\"password\"") ? "{\"password\":\"***\"}" : NULL;
}

/* How many sagas a JSON array of them holds: each has one "input" (steps have none). */
static int count_sagas(const char *json) {
    int n = 0;
    for (const char *p = json; (p = strstr(p, "\"input\":")) != NULL; p++) n++;
    return n;
}
static int is_digit(char c) { return c >= '0' && c <= '9'; }
/* "YYYY-MM-DDTHH:MM:SS.mmmZ" right after `key` in `json`. */
static void expect_time(const char *json, const char *key) {
    const char *p = strstr(json, key);
    EXPECT(p != NULL);
    p += strlen(key);
    const char *shape = "\"dddd-dd-ddTdd:dd:dd.dddZ\"";
    for (size_t i = 0; i < strlen(shape); i++) {
        if (shape[i] == 'd') EXPECT(is_digit(p[i]));
        else if (p[i] != shape[i]) check_fail_(__FILE__, __LINE__, "%s is not ISO 8601 UTC with ms: %.30s", key, p);
    }
}
static const char *find_id(const char *json, uint64_t id) {
    char part[32];
    snprintf(part, sizeof part, "\"id\":%llu,", (unsigned long long)id);
    return strstr(json, part);
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "log_diag.db");
    rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "diag";
    type.create = test_input_state;
    type.destroy = test_free_state;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 600000;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    type.name = "snap";
    type.input_snapshot = snapshot;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    CHECK(sl_target_register(rt, "host", host_target, NULL, NULL));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    char *json = NULL;
    CHECK(sl_log_recent(rt, 10, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);
    CHECK(sl_log_unresolved(rt, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);

    uint64_t completed = 0, failed = 0, running = 0, latest = 0;
    char *end;
    CHECK(sl_saga_start(rt, "diag", "{\"do\":\"answer\",\"n\":1}", &completed));
    end = rec_wait_terminal(&rec, completed);
    free(end);
    CHECK(sl_saga_start(rt, "diag", "{\"do\":\"fail\"}", &failed));
    end = rec_wait_terminal(&rec, failed);
    free(end);
    CHECK(sl_saga_start(rt, "diag", "{\"do\":\"hold\"}", &running));
    WAIT_FOR(held == 1);
    CHECK(sl_saga_start(rt, "diag", "{\"do\":\"answer\",\"n\":4}", &latest));
    end = rec_wait_terminal(&rec, latest);
    free(end);

    /* Recent: the two latest, latest first, steps counted. */
    CHECK(sl_log_recent(rt, 2, &json));
    EXPECT_EQ_INT(count_sagas(json), 2);
    EXPECT(find_id(json, latest) != NULL && find_id(json, running) != NULL);
    EXPECT(find_id(json, latest) < find_id(json, running));
    EXPECT(find_id(json, completed) == NULL);
    EXPECT_CONTAINS(json, "\"steps\":1");
    EXPECT_CONTAINS(json, "\"ended_at\":null");
    EXPECT_CONTAINS(json, "\"failure_reason\":null");
    EXPECT_CONTAINS(json, "\"name\":\"diag\"");
    expect_time(json, "\"started_at\":");
    sl_free(json);
    CHECK(sl_log_recent(rt, 0, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);
    CHECK(sl_log_recent(rt, 100, &json));
    EXPECT_EQ_INT(count_sagas(json), 4);
    EXPECT_CONTAINS(json, "\"steps\":0"); /* the one that failed in start */
    sl_free(json);

    /* Unresolved: the running one, with its steps; failed and completed are final. */
    CHECK(sl_log_unresolved(rt, &json));
    EXPECT(find_id(json, running) != NULL);
    EXPECT(find_id(json, failed) == NULL);
    EXPECT(find_id(json, completed) == NULL);
    EXPECT(find_id(json, latest) == NULL);
    EXPECT_CONTAINS(json, "\"steps\":[");
    EXPECT_CONTAINS(json, "\"state\":\"pending\"");
    sl_free(json);
    CHECK(sl_log_saga(rt, failed, &json));
    EXPECT_CONTAINS(json, "\"failure_reason\":\"refused by policy\"");
    sl_free(json);

    /* One saga in full. */
    CHECK(sl_log_saga(rt, completed, &json));
    EXPECT(json[0] == '{');
    char part[96];
    snprintf(part, sizeof part, "\"id\":%llu,\"idempotency_key\":null,\"input\":{\"do\":\"answer\",\"n\":1}", (unsigned long long)completed);
    EXPECT_CONTAINS(json, part);
    EXPECT_CONTAINS(json, "\"name\":\"diag\"");
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    snprintf(part, sizeof part, "\"command\":{\"do\":\"answer\",\"n\":1,\"saga_id\":%llu,\"step\":0}", (unsigned long long)completed);
    EXPECT_CONTAINS(json, part);
    EXPECT_CONTAINS(json, "\"index\":0");
    EXPECT_CONTAINS(json, "\"target\":\"host\"");
    EXPECT_CONTAINS(json, "\"state\":\"succeeded\"");
    EXPECT_CONTAINS(json, "\"echo\":\"hi\""); /* the output: the answering event */
    expect_time(json, "\"started_at\":");
    expect_time(json, "\"ended_at\":");
    sl_free(json);
    CHECK(sl_log_saga(rt, running, &json));
    EXPECT_CONTAINS(json, "\"state\":\"running\",\"steps\"");
    EXPECT_CONTAINS(json, "\"output\":null");
    sl_free(json);

    /* Stats: the four sagas counted by state, the running one's start, the file's sizes. */
    CHECK(sl_log_stats(rt, &json));
    EXPECT_CONTAINS(json, "\"sagas\":{\"compensated\":0,\"compensating\":0,\"completed\":2,\"failed\":1,"
                          "\"failed_compensation\":0,\"running\":1}");
    expect_time(json, "\"oldest_running_saga\":");
    EXPECT_CONTAINS(json, "\"jobs\":{}");
    EXPECT_NOT_CONTAINS(json, "\"wal_bytes\":null");
    sl_free(json);
    EXPECT_RC(sl_log_stats(rt, NULL), SL_EINVAL);

    /* Vacuum: nothing ended an hour ago; with 0, every terminal saga, never the running one. */
    uint64_t deleted = 99;
    CHECK(sl_log_vacuum(rt, 3600 * 1000, &deleted));
    EXPECT_EQ_INT(deleted, 0);
    /* The log's times have millisecond precision: let the clock pass the last end. */
    int64_t last_end = wall_ms();
    while (wall_ms() <= last_end) sleep_ms(1);
    CHECK(sl_log_vacuum(rt, 0, &deleted));
    EXPECT_EQ_INT(deleted, 3);
    EXPECT_RC(sl_log_saga(rt, completed, &json), SL_ENOTFOUND);
    EXPECT_RC(sl_log_saga(rt, failed, &json), SL_ENOTFOUND);
    EXPECT_RC(sl_log_saga(rt, latest, &json), SL_ENOTFOUND);
    CHECK(sl_log_saga(rt, running, &json));
    sl_free(json);
    CHECK(sl_log_recent(rt, 10, &json));
    EXPECT_EQ_INT(count_sagas(json), 1);
    sl_free(json);
    CHECK(sl_log_vacuum(rt, 0, NULL));

    /* The input itself is stored, whatever input_snapshot would have kept. */
    uint64_t secret = 0, plain = 0;
    CHECK(sl_saga_start(rt, "snap", "{\"do\":\"fail\",\"password\":\"hunter2\"}", &secret));
    CHECK(sl_saga_start(rt, "snap", "{\"do\":\"fail\",\"user\":\"ann\"}", &plain));
    end = rec_wait_terminal(&rec, secret);
    free(end);
    end = rec_wait_terminal(&rec, plain);
    free(end);
    CHECK(sl_log_saga(rt, secret, &json));
    EXPECT_CONTAINS(json, "\"input\":{\"do\":\"fail\",\"password\":\"hunter2\"}");
    sl_free(json);
    CHECK(sl_log_saga(rt, plain, &json));
    EXPECT_CONTAINS(json, "\"input\":{\"do\":\"fail\",\"user\":\"ann\"}");
    sl_free(json);

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
