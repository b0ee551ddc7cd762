/* sl_runtime_errmsg: "" until a call fails; then the message of the calling thread's last
   failed call on that runtime (or its lanes), kept through successful calls until the next
   failure; other threads have their own. With NULL: the thread's last failure on a NULL or
   closed handle. */
#include "check.h"

static sl_runtime *rt;

struct probe {
    char before[256], after[256], null_before[256];
};
static void *other_thread(void *arg) {
    struct probe *p = arg;
    snprintf(p->null_before, sizeof p->null_before, "%s", sl_runtime_errmsg(NULL));
    snprintf(p->before, sizeof p->before, "%s", sl_runtime_errmsg(rt));
    EXPECT_RC(sl_saga_start(rt, "zzz-type", NULL, NULL), SL_ENOTFOUND);
    snprintf(p->after, sizeof p->after, "%s", sl_runtime_errmsg(rt));
    return NULL;
}

int main(void) {
    rt = open_runtime(NULL, SL_CLOCK_SYSTEM);
    EXPECT_STREQ(sl_runtime_errmsg(rt), "");
    CHECK(sl_runtime_start(rt));
    EXPECT_STREQ(sl_runtime_errmsg(rt), "");

    sl_lane *lane = NULL;
    EXPECT_RC(sl_lane_find(rt, "nope-lane", &lane), SL_ENOTFOUND);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "nope-lane");
    CHECK(sl_publish(rt, "Fine", 0, NULL)); /* a success keeps it */
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "nope-lane");

    /* A lane's failures go to its runtime. */
    CHECK(sl_lane_create(rt, "work", NULL, &lane));
    EXPECT_RC(sl_lane_cancel(lane, "ghost-job"), SL_ENOTFOUND);
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "ghost-job");

    /* Another thread: its own message, and this one's unchanged. */
    struct probe p;
    pthread_t thread;
    pthread_create(&thread, NULL, other_thread, &p);
    pthread_join(thread, NULL);
    EXPECT_STREQ(p.before, "");
    EXPECT_CONTAINS(p.after, "zzz-type");
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "ghost-job");
    EXPECT_NOT_CONTAINS(sl_runtime_errmsg(rt), "zzz-type");

    /* NULL handles. */
    EXPECT_RC(sl_publish(NULL, "E", 0, NULL), SL_EINVAL);
    const char *null_message = sl_runtime_errmsg(NULL);
    EXPECT(null_message != NULL && null_message[0] != '\0');
    EXPECT_CONTAINS(sl_runtime_errmsg(rt), "ghost-job"); /* not a failure on rt */
    pthread_create(&thread, NULL, other_thread, &p);
    pthread_join(thread, NULL);
    EXPECT_STREQ(p.null_before, "");

    sl_runtime_close(rt);
    /* The closed runtime's pointer: a static text saying so. */
    const char *closed = sl_runtime_errmsg(rt);
    EXPECT(closed != NULL && closed[0] != '\0');
    EXPECT_NOT_CONTAINS(closed, "ghost-job");
    return 0;
}
