/* Values over SL_MAX_VALUE_BYTES (a saga's input, a lane job's metadata) are refused with a
   message that names the limit without echoing the value, and nothing is stored: the call
   fails with SL_EINVAL, or (a saga) it fails, SagaFailed saying why. A value of exactly the
   limit is not refused for its size. */
#include "files.h"

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_done(action));
}
static int quick(void *userdata, sl_job_ctx *ctx) {
    (void)userdata;
    return sl_job_set_result(ctx, "done");
}

/* A JSON string of `total` bytes, quotes included: "xxx...x". */
static char *json_string(size_t total) {
    char *text = malloc(total + 1);
    EXPECT(text != NULL);
    memset(text, 'x', total);
    text[0] = '"';
    text[total - 1] = '"';
    text[total] = '\0';
    return text;
}

static void expect_names_the_limit(const char *message) {
    printf("refused: %s\n", message);
    char limit[32];
    snprintf(limit, sizeof limit, "%d", SL_MAX_VALUE_BYTES);
    EXPECT_CONTAINS(message, limit);
    EXPECT(strlen(message) < 400);
    EXPECT_NOT_CONTAINS(message, "xxxxxxxx");
}

int main(void) {
    EXPECT_EQ_INT(SL_MAX_VALUE_BYTES, 16 * 1024 * 1024);
    char path[512];
    scratch_path(path, sizeof path, "log_huge_values.db");
    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = start;
    type.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    sl_lane *lane = NULL;
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    CHECK(sl_runtime_start(rt));

    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    char *huge = json_string((size_t)SL_MAX_VALUE_BYTES + 1);
    uint64_t id = 0;
    int rc = sl_saga_start(rt, "t", huge, &id);
    free(huge);
    if (rc == 0) {
        char *end = rec_wait_terminal(&rec, id);
        EXPECT_CONTAINS(end, SL_EVENT_SAGA_FAILED);
        EXPECT_CONTAINS(end, "\"durable\":false");
        expect_names_the_limit(end);
        free(end);
    } else {
        EXPECT_EQ_INT(rc, SL_EINVAL);
        expect_names_the_limit(sl_runtime_errmsg(rt));
    }

    sl_job job;
    sl_job_init(&job);
    job.id = "big";
    job.run = quick;
    job.metadata_length = (size_t)SL_MAX_VALUE_BYTES + 1;
    void *metadata = calloc(1, job.metadata_length);
    EXPECT(metadata != NULL);
    job.metadata = metadata;
    EXPECT(sl_lane_submit(lane, &job, NULL) != 0);
    expect_names_the_limit(sl_runtime_errmsg(rt));
    free(metadata);

    char *json = NULL;
    CHECK(sl_log_recent(rt, 10, &json));
    EXPECT_NOT_CONTAINS(json, "\"name\":\"t\"");
    sl_free(json);
    CHECK(sl_log_jobs(rt, NULL, NULL, 10, &json));
    EXPECT_STREQ(json, "[]");
    sl_free(json);

    /* Exactly the limit is a value like any other. */
    job.metadata_length = SL_MAX_VALUE_BYTES;
    metadata = malloc(job.metadata_length);
    EXPECT(metadata != NULL);
    /* Not UTF-8: listed as its size alone, not as a 16 MiB string. */
    memset(metadata, 0xFF, job.metadata_length);
    job.metadata = metadata;
    char *text = NULL;
    CHECK(sl_lane_submit_wait(lane, &job, &text));
    EXPECT_STREQ(text, "done");
    sl_free(text);
    free(metadata);
    CHECK(sl_log_jobs(rt, NULL, NULL, 10, &json));
    char size[64];
    snprintf(size, sizeof size, "\"metadata_size\":%d", SL_MAX_VALUE_BYTES);
    EXPECT_CONTAINS(json, size);
    sl_free(json);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
