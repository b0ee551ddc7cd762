/* A read-only open serves diagnostics: the sl_log_* reads work (while another runtime owns
   the file), writes answer SL_EREADONLY, and the runtime cannot start. */
#include "check.h"

static sl_runtime *rw;

static int target_calls;
static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) {
    (void)userdata, (void)step;
    mon_lock();
    target_calls++;
    mon_unlock_signal();
    if (strstr(command, "\"answer\":true")) return sl_publish(rw, "Answered", saga_id, "{\"ok\":true}");
    return 0; /* left waiting */
}
static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    sl_action_issue(action, "host", ctx->saga_id == 1 ? "{\"answer\":true}" : "{\"answer\":false}");
}
static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    if (strcmp(event->type, "Answered") == 0) sl_action_done(action);
}

int main(void) {
    char path[512];
    scratch_path(path, sizeof path, "read_only.db");
    rw = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 600000;
    CHECK(sl_saga_type_register(rw, &type, NULL));
    CHECK(sl_target_register(rw, "host", target, NULL, NULL));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rw, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rw));
    uint64_t done_id = 0, waiting_id = 0;
    CHECK(sl_saga_start(rw, "t", "{\"n\":1}", &done_id));
    EXPECT_EQ_INT(done_id, 1);
    char *end = rec_wait_terminal(&rec, done_id);
    EXPECT_CONTAINS(end, SL_EVENT_SAGA_COMPLETED);
    free(end);
    CHECK(sl_saga_start(rw, "t", "{\"n\":2}", &waiting_id));
    /* Its step row is written before the command goes out. */
    WAIT_FOR(target_calls == 2);
    char *json = NULL;

    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.read_only = 1;
    sl_runtime *ro = NULL;
    CHECK(sl_runtime_open(&options, &ro));
    check_rt = ro;

    CHECK(sl_log_recent(ro, 10, &json));
    EXPECT(json[0] == '[');
    EXPECT_CONTAINS(json, "\"id\":1,");
    EXPECT_CONTAINS(json, "\"id\":2,");
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    EXPECT_CONTAINS(json, "\"state\":\"running\"");
    sl_free(json);
    CHECK(sl_log_saga(ro, done_id, &json));
    EXPECT_CONTAINS(json, "\"state\":\"completed\"");
    EXPECT_CONTAINS(json, "\"input\":{\"n\":1}");
    EXPECT_CONTAINS(json, "\"output\":");
    sl_free(json);
    CHECK(sl_log_unresolved(ro, &json));
    EXPECT_CONTAINS(json, "\"id\":2,");
    EXPECT_NOT_CONTAINS(json, "\"id\":1,");
    sl_free(json);
    EXPECT_RC(sl_log_saga(ro, 99, &json), SL_ENOTFOUND);

    sl_lane *lane = NULL;
    EXPECT_RC(sl_lane_create(ro, "work", NULL, &lane), SL_EREADONLY);
    EXPECT_RC(sl_log_vacuum(ro, 0, NULL), SL_EREADONLY);
    EXPECT_RC(sl_saga_start(ro, "t", NULL, NULL), SL_ESTATE);
    /* A read-only runtime serves diagnostics only: it never starts. */
    EXPECT_RC(sl_runtime_start(ro), SL_EREADONLY);
    EXPECT_ERRMSG(ro);
    sl_runtime_close(ro);

    /* The owner is unaffected. */
    check_rt = rw;
    CHECK(sl_log_vacuum(rw, 3600 * 1000, NULL));
    sl_unsubscribe(sub);
    sl_runtime_close(rw);
    rec_free(&rec);
    return 0;
}
