/* A subscriber that falls behind its buffer loses the newest events and then gets one
   SL_EVENT_LAGGED {"missed": N} (saga_id 0, version 0), placed exactly where they went
   missing; the other subscribers lose nothing. A buffer of 0 holds 4096. */
#include "check.h"

static int entered, released, default_entered;

/* Blocks inside the first event until the test lets it go. */
static void slow(void *userdata, const sl_event *event) {
    rec_on_event(userdata, event);
    mon_lock();
    if (!entered) {
        entered = 1;
        pthread_cond_broadcast(&mon_cond);
        WAIT_FOR_LOCKED(released);
    }
    mon_unlock();
}
/* The same, for the subscription with the default buffer. */
static void slow_default(void *userdata, const sl_event *event) {
    rec_on_event(userdata, event);
    mon_lock();
    if (!default_entered) {
        default_entered = 1;
        pthread_cond_broadcast(&mon_cond);
        WAIT_FOR_LOCKED(released);
    }
    mon_unlock();
}

int main(void) {
    sl_runtime *rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    recorder slow_rec = {0}, fast_rec = {0}, default_rec = {0};
    sl_subscription *slow_sub = NULL, *fast_sub = NULL, *default_sub = NULL;
    CHECK(sl_subscribe(rt, 2, slow, &slow_rec, &slow_sub));
    CHECK(sl_subscribe(rt, 0, slow_default, &default_rec, &default_sub)); /* 0: 4096 */
    CHECK(sl_subscribe(rt, 100000, rec_on_event, &fast_rec, &fast_sub)); /* room for everything */
    CHECK(sl_runtime_start(rt));

    CHECK(sl_publish(rt, "E", 0, "1"));
    WAIT_FOR(entered && default_entered); /* event 1 is in the callbacks; the buffers are empty */
    char payload[16];
    for (int i = 2; i <= 10; i++) {
        snprintf(payload, sizeof payload, "%d", i);
        CHECK(sl_publish(rt, "E", 0, payload));
    }
    WAIT_FOR(fast_rec.count == 10); /* every publication is done */
    /* The default buffer holds 4096: E2..E10 and the first 4087 of these; 13 go missing. */
    for (int i = 0; i < 4100; i++) CHECK(sl_publish(rt, "More", 0, NULL));
    mon_lock();
    released = 1;
    mon_unlock_signal();
    /* 1 delivered, 2 and 3 buffered, 4..10 and the Mores missed; once that is all out, 11
       has room. */
    WAIT_FOR(slow_rec.count == 4 && default_rec.count == 1 + 4096 + 1);
    CHECK(sl_publish(rt, "E", 0, "11"));
    WAIT_FOR(slow_rec.count == 5);
    mon_lock();
    EXPECT_STREQ(slow_rec.events[0].payload, "1");
    EXPECT_STREQ(slow_rec.events[1].payload, "2");
    EXPECT_STREQ(slow_rec.events[2].payload, "3");
    EXPECT_STREQ(slow_rec.events[3].type, SL_EVENT_LAGGED);
    EXPECT_STREQ(slow_rec.events[3].payload, "{\"missed\":4107}"); /* E4..E10 and every More */
    EXPECT_EQ_INT(slow_rec.events[3].saga_id, 0);
    EXPECT_EQ_INT(slow_rec.events[3].version, 0);
    EXPECT_STREQ(slow_rec.events[4].type, "E");
    EXPECT_STREQ(slow_rec.events[4].payload, "11");
    EXPECT_EQ_INT(slow_rec.events[4].version, slow_rec.events[2].version + 8 + 4100);
    mon_unlock();
    WAIT_FOR(fast_rec.count == 4111);
    mon_lock();
    EXPECT_EQ_INT(rec_count_locked(&fast_rec, SL_EVENT_LAGGED, 0), 0);
    mon_unlock();
    /* 1, the 4096 buffered, the notice, then 11. */
    WAIT_FOR(default_rec.count == 1 + 4096 + 1 + 1);
    mon_lock();
    EXPECT_EQ_INT(rec_count_locked(&default_rec, "More", 0), 4087);
    EXPECT_STREQ(default_rec.events[4097].type, SL_EVENT_LAGGED);
    EXPECT_STREQ(default_rec.events[4097].payload, "{\"missed\":13}");
    EXPECT_STREQ(default_rec.events[4098].payload, "11");
    mon_unlock();

    sl_unsubscribe(slow_sub);
    sl_unsubscribe(fast_sub);
    sl_unsubscribe(default_sub);
    sl_runtime_close(rt);
    rec_free(&slow_rec);
    rec_free(&fast_rec);
    rec_free(&default_rec);
    return 0;
}
