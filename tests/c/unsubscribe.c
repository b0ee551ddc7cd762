/* sl_unsubscribe from inside the subscription's own callback: the callback is never called
   again once it returns, while other subscriptions go on. sl_unsubscribe from another thread
   while the callback runs waits for it. The runtime's close ends the subscriptions left. */
#include "check.h"

static sl_runtime *rt;
static sl_subscription *self_sub;
static int self_calls;

static void unsubscribes_itself(void *userdata, const sl_event *event) {
    (void)userdata, (void)event;
    mon_lock();
    self_calls++;
    mon_unlock_signal();
    sl_unsubscribe(self_sub);
}

/* A callback that is inside its call while the test unsubscribes it. */
static int busy_entered, busy_left, busy_release;
static void busy(void *userdata, const sl_event *event) {
    (void)userdata, (void)event;
    mon_lock();
    if (busy_entered) {
        mon_unlock();
        return;
    }
    busy_entered = 1;
    pthread_cond_broadcast(&mon_cond);
    WAIT_FOR_LOCKED(busy_release);
    busy_left = 1;
    mon_unlock();
}
static sl_subscription *busy_sub;
static void *unsubscribe_busy(void *arg) {
    (void)arg;
    sl_unsubscribe(busy_sub);
    /* Once it returns the callback has returned. */
    mon_lock();
    EXPECT(busy_left);
    mon_unlock();
    return NULL;
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    recorder rec = {0}, left_open = {0};
    sl_subscription *sub = NULL, *open_sub = NULL;
    CHECK(sl_subscribe(rt, 0, unsubscribes_itself, NULL, &self_sub));
    CHECK(sl_subscribe(rt, 0, rec_on_event, &rec, &sub));
    CHECK(sl_subscribe(rt, 0, busy, NULL, &busy_sub));
    CHECK(sl_subscribe(rt, 0, rec_on_event, &left_open, &open_sub));
    CHECK(sl_runtime_start(rt));

    for (int i = 0; i < 20; i++) CHECK(sl_publish(rt, "E", 0, NULL));
    WAIT_FOR(rec.count == 20);
    WAIT_FOR(self_calls >= 1);

    WAIT_FOR(busy_entered);
    pthread_t thread;
    pthread_create(&thread, NULL, unsubscribe_busy, NULL);
    /* The unsubscribing thread must wait for the callback, which waits for this thread. The
       pause gives an sl_unsubscribe that does not wait the time to return too early, which
       unsubscribe_busy would then see. */
    sleep_ms(20);
    mon_lock();
    busy_release = 1;
    mon_unlock_signal();
    pthread_join(thread, NULL);

    for (int i = 0; i < 20; i++) CHECK(sl_publish(rt, "F", 0, NULL));
    WAIT_FOR(rec.count == 40);
    mon_lock();
    EXPECT_EQ_INT(self_calls, 1);
    mon_unlock();

    sl_unsubscribe(sub);
    sl_runtime_close(rt); /* ends open_sub */
    mon_lock();
    EXPECT_EQ_INT(self_calls, 1);
    mon_unlock();
    rec_free(&rec);
    rec_free(&left_open);
    return 0;
}
