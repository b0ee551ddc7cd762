/* A clean close leaves one self-contained file: after sl_runtime_close the database file
   alone, copied without its -wal, reads as the whole log, even while a read-only runtime
   (an operator's view) still has the log open; and that reader goes on reading. */
#include "files.h"

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    CHECK(sl_action_done(action));
}

static int count_sagas(const char *json) {
    int n = 0;
    for (const char *p = json; (p = strstr(p, "\"input\":")) != NULL; p++) n++;
    return n;
}

static sl_runtime *open_read_only(const char *path) {
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.db_path = path;
    options.read_only = 1;
    sl_runtime *ro = NULL;
    CHECK(sl_runtime_open(&options, &ro));
    return ro;
}

int main(void) {
    char path[512], copy[512], wal[600];
    scratch_path(path, sizeof path, "log_close_checkpoint.db");
    scratch_path(copy, sizeof copy, "log_close_checkpoint-copy.db");
    snprintf(wal, sizeof wal, "%s-wal", path);

    sl_runtime *rt = open_runtime(path, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "quick";
    type.create = test_no_state;
    type.start = start;
    type.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));
    sl_runtime *ro = open_read_only(path);
    char *json = NULL;
    check_rt = ro;
    CHECK(sl_log_recent(ro, 100, &json));
    sl_free(json);
    check_rt = rt;
    uint64_t id = 0;
    for (int i = 0; i < 20; i++) {
        CHECK(sl_saga_start(rt, "quick", "{\"n\":1}", &id));
        free(rec_wait_terminal(&rec, id));
    }
    EXPECT(file_size(wal) > 0);
    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);

    /* Everything is in the database file; its write-ahead log is empty. */
    EXPECT(file_size(wal) <= 0);
    copy_file(path, copy);
    sl_runtime *view = open_read_only(copy);
    check_rt = view;
    CHECK(sl_log_recent(view, 100, &json));
    EXPECT_EQ_INT(count_sagas(json), 20);
    sl_free(json);
    sl_runtime_close(view);

    /* The reader that was open meanwhile still reads the whole log. */
    check_rt = ro;
    CHECK(sl_log_recent(ro, 100, &json));
    EXPECT_EQ_INT(count_sagas(json), 20);
    sl_free(json);
    sl_runtime_close(ro);
    return 0;
}
