/* sl_saga_cancel right after sl_saga_start returned: the id is the saga's (its running row
   and start "follow on the loop"), so the cancel takes it, and the saga ends with one
   SagaFailed "cancelled: early". */
#include "check.h"

int main(void) {
    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "t";
    type.create = test_no_state;
    type.start = test_wait_start;
    type.on_event = test_wait_event;
    CHECK(sl_saga_type_register(rt, &type, NULL));
    recorder rec = {0};
    sl_subscription *sub = NULL;
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_runtime_start(rt));

    for (int i = 0; i < 10; i++) {
        uint64_t id = 0;
        CHECK(sl_saga_start(rt, "t", NULL, &id));
        CHECK(sl_saga_cancel(rt, id, "early"));
        char *end = rec_wait_terminal(&rec, id);
        EXPECT_STREQ(end, "SagaFailed {\"name\":\"t\",\"reason\":\"cancelled: early\",\"state\":\"failed\"}");
        free(end);
        mon_lock();
        EXPECT_EQ_INT(rec_terminals_locked(&rec, id), 1);
        mon_unlock();
    }

    sl_unsubscribe(sub);
    sl_runtime_close(rt);
    rec_free(&rec);
    return 0;
}
