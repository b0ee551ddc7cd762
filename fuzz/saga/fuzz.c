/*
 * Fuzz target: saga inputs and event payloads through the C API, from the host's text to the
 * saga's `create`, the target's command, the saga's `on_event`, a trigger's predicate and the
 * log.
 *
 * The input is split at its first NUL byte (C strings end there anyway): the part before is a
 * saga's input JSON, the part after an event payload (no NUL: the same text is both). One
 * runtime serves every input: an in-memory log, a manual clock (no deadline ever fires), a
 * saga type "fuzz" whose saga issues its input to the host target "echo", which answers with
 * the payload; a trigger on "Probe" events that records its payload and starts nothing.
 *
 * Checks, for every input:
 *   - sl_saga_start answers 0, SL_EUTF8 exactly when the text is not UTF-8, or SL_EJSON, with
 *     a message; sl_publish the same;
 *   - what `create` receives is a fixed point: starting a saga with it hands `create` the same
 *     bytes;
 *   - the command the target receives is the input, with "saga_id" and "step" injected when it
 *     is an object;
 *   - the saga completes, and `on_event` sees the payload as a trigger's predicate sees it when
 *     the same text is published untagged, which is again a fixed point;
 *   - the log's view of the saga holds the input, the command and the payload as those exact
 *     texts (equal values serialize to equal text, nested or not), and says "completed".
 * A failed check prints what differs and aborts, which libFuzzer reports as a crash.
 */
#include <sagalane.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static sl_runtime *rt;

/* What the callbacks saw, under `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static char *created;     /* the input text `create` got last */
static int refuse;        /* `create` refuses (the fixed-point probe) */
static char *command;     /* the command the target got */
static char *payload;     /* the payload `on_event` got */
static char *predicate;   /* the payload the trigger's predicate got */
static int answer_rc;     /* sl_publish's answer in the target */
static int ended;         /* the saga's state was destroyed */
static const char *payload_text; /* what the target answers with (borrowed for the input) */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    fputs("saga fuzz: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static char *copy(const char *s) {
    char *c = strdup(s);
    if (!c) die("out of memory");
    return c;
}

static void replace(char **slot, const char *text) {
    free(*slot);
    *slot = text ? copy(text) : NULL;
}

/* RFC 3629 UTF-8: what the runtime must accept as text. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) { len = 3; lo = 0xA0; }
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
        else if (c == 0xED) { len = 3; hi = 0x9F; }
        else if (c == 0xF0) { len = 4; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) { len = 4; hi = 0x8F; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            unsigned char d = s[i + k];
            if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return 0;
        }
        i += len;
    }
    return 1;
}

/* Waits (generously: a hang is a finding) until `*flag` or `*text` is set. */
static void wait_for(const int *flag, char *const *text, const char *what) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    pthread_mutex_lock(&lock);
    while (!(flag ? *flag : *text != NULL)) {
        if (pthread_cond_timedwait(&changed, &lock, &deadline) != 0) die("no %s within 20 s", what);
    }
    pthread_mutex_unlock(&lock);
}

static void check_refusal(int rc, const char *call, const char *text) {
    int utf8 = valid_utf8((const unsigned char *)text, strlen(text));
    if (rc != SL_EJSON && rc != SL_EUTF8) die("%s: %s (%s)", call, sl_err_name(rc), sl_runtime_errmsg(rt));
    if ((rc == SL_EUTF8) != !utf8) die("%s: %s for %s UTF-8", call, sl_err_name(rc), utf8 ? "valid" : "invalid");
    if (sl_runtime_errmsg(rt)[0] == '\0') die("%s refused with no message", call);
}

/* `haystack` holds `prefix` followed by `text`. */
static void expect_within(const char *haystack, const char *prefix, const char *text, const char *what) {
    size_t np = strlen(prefix), nt = strlen(text);
    char *needle = malloc(np + nt + 1);
    if (!needle) die("out of memory");
    memcpy(needle, prefix, np);
    memcpy(needle + np, text, nt + 1);
    if (!strstr(haystack, needle)) die("the log lacks %s %s: %s", what, needle, haystack);
    free(needle);
}

static int create(void *userdata, const char *input_json, void **state) {
    (void)userdata;
    pthread_mutex_lock(&lock);
    replace(&created, input_json);
    int no = refuse;
    pthread_mutex_unlock(&lock);
    *state = NULL;
    return no;
}

static void destroy(void *userdata, void *state) {
    (void)userdata, (void)state;
    pthread_mutex_lock(&lock);
    ended = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    (void)userdata, (void)state, (void)ctx;
    pthread_mutex_lock(&lock);
    char *input = copy(created);
    pthread_mutex_unlock(&lock);
    int rc = sl_action_issue(action, "echo", input);
    if (rc != 0) die("sl_action_issue refused the saga's own input: %s (%s): %s", sl_err_name(rc), sl_runtime_errmsg(rt), input);
    free(input);
}

static void on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event, sl_action *action) {
    (void)userdata, (void)state;
    if (strcmp(event->type, "Echo") != 0 || event->saga_id != ctx->saga_id) die("unexpected event %s", event->type);
    pthread_mutex_lock(&lock);
    replace(&payload, event->payload_json);
    pthread_mutex_unlock(&lock);
    if (sl_action_done(action) != 0) die("sl_action_done failed");
}

static int echo(void *userdata, uint64_t saga_id, uint32_t step, const char *command_json) {
    (void)userdata, (void)step;
    pthread_mutex_lock(&lock);
    replace(&command, command_json);
    const char *text = payload_text;
    pthread_mutex_unlock(&lock);
    int rc = sl_publish(rt, "Echo", saga_id, text);
    if (rc != 0) {
        check_refusal(rc, "sl_publish (tagged)", text);
        rc = sl_publish(rt, "Echo", saga_id, NULL);
        if (rc != 0) die("sl_publish with a null payload: %s", sl_err_name(rc));
        rc = 1;
    }
    pthread_mutex_lock(&lock);
    answer_rc = rc;
    pthread_mutex_unlock(&lock);
    return 0;
}

static int probe(void *userdata, const char *payload_json) {
    (void)userdata;
    pthread_mutex_lock(&lock);
    replace(&predicate, payload_json);
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sl_runtime_options options;
    sl_runtime_options_init(&options);
    options.durability = SL_DURABILITY_NORMAL;
    options.clock = SL_CLOCK_MANUAL;
    if (sl_runtime_open(&options, &rt) != 0) die("sl_runtime_open: %s", sl_runtime_errmsg(rt));
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = "fuzz";
    type.create = create;
    type.destroy = destroy;
    type.start = start;
    type.on_event = on_event;
    type.timeout_ms = 3600 * 1000;
    if (sl_saga_type_register(rt, &type, NULL) != 0) die("sl_saga_type_register: %s", sl_runtime_errmsg(rt));
    if (sl_target_register(rt, "echo", echo, NULL, NULL) != 0) die("sl_target_register: %s", sl_runtime_errmsg(rt));
    if (sl_trigger_add(rt, "Probe", "fuzz", probe, NULL, NULL) != 0) die("sl_trigger_add: %s", sl_runtime_errmsg(rt));
    if (sl_runtime_start(rt) != 0) die("sl_runtime_start: %s", sl_runtime_errmsg(rt));
    return 0;
}

/* Publishes `text` untagged as "Probe" and returns what the predicate saw (NULL: refused). */
static char *probe_payload(const char *text) {
    pthread_mutex_lock(&lock);
    replace(&predicate, NULL);
    pthread_mutex_unlock(&lock);
    int rc = sl_publish(rt, "Probe", 0, text);
    if (rc != 0) {
        check_refusal(rc, "sl_publish (untagged)", text);
        return NULL;
    }
    wait_for(NULL, &predicate, "trigger predicate call");
    pthread_mutex_lock(&lock);
    char *seen = predicate;
    predicate = NULL;
    pthread_mutex_unlock(&lock);
    return seen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static unsigned runs;
    char *input = malloc(size + 1);
    if (!input) die("out of memory");
    memcpy(input, data, size);
    input[size] = '\0';
    size_t cut = strlen(input);
    const char *event_text = cut < size ? input + cut + 1 : input;

    pthread_mutex_lock(&lock);
    replace(&created, NULL);
    replace(&command, NULL);
    replace(&payload, NULL);
    refuse = 0;
    ended = 0;
    answer_rc = -1;
    payload_text = event_text;
    pthread_mutex_unlock(&lock);

    /* The payload on its own, through a trigger's predicate. */
    char *probed = probe_payload(event_text);
    if (probed) {
        char *again = probe_payload(probed);
        if (!again || strcmp(again, probed) != 0) die("payload %s is not a fixed point: %s", probed, again ? again : "(refused)");
        free(again);
    }

    uint64_t id = 0;
    int rc = sl_saga_start(rt, "fuzz", input, &id);
    if (rc != 0) {
        check_refusal(rc, "sl_saga_start", input);
    } else {
        wait_for(&ended, NULL, "end of the saga");
        pthread_mutex_lock(&lock);
        char *x = created, *c = command, *p = payload;
        created = command = payload = NULL;
        int answered = answer_rc;
        refuse = 1;
        pthread_mutex_unlock(&lock);
        if (!x || !c || !p) die("the saga ended without create, command or event");

        /* The text create got, handed back: the same bytes, then refused as asked. */
        int again = sl_saga_start(rt, "fuzz", x, NULL);
        if (again != SL_EREFUSED) die("restart with create's input: %s", sl_err_name(again));
        pthread_mutex_lock(&lock);
        if (!created || strcmp(created, x) != 0) die("input %s is not a fixed point: %s", x, created ? created : "(none)");
        pthread_mutex_unlock(&lock);

        /* An object command gets "saga_id" and "step"; anything else arrives as it was. */
        if (x[0] == '{') {
            char injected[64];
            snprintf(injected, sizeof injected, "\"saga_id\":%llu", (unsigned long long)id);
            if (!strstr(c, injected) || !strstr(c, "\"step\":0")) die("command %s lacks %s or step 0", c, injected);
        } else if (strcmp(c, x) != 0) {
            die("command %s differs from input %s", c, x);
        }

        /* The tagged payload as on_event saw it is what the predicate saw for the same text. */
        if (answered == 0 && (!probed || strcmp(p, probed) != 0)) die("on_event saw %s, the predicate %s", p, probed ? probed : "(refused)");
        if (answered == 1 && strcmp(p, "null") != 0) die("a refused payload arrived as %s", p);
        if ((answered == 0) != (probed != NULL)) die("sl_publish accepted the payload tagged or untagged only");

        char *saga = NULL;
        rc = sl_log_saga(rt, id, &saga);
        if (rc != 0) die("sl_log_saga: %s (%s)", sl_err_name(rc), sl_runtime_errmsg(rt));
        expect_within(saga, "\"input\":", x, "input");
        expect_within(saga, "\"command\":", c, "command");
        expect_within(saga, "\"payload\":", p, "payload");
        expect_within(saga, "\"state\":", "\"completed\"", "state");
        sl_free(saga);
        free(x);
        free(c);
        free(p);
    }
    free(probed);
    free(input);

    /* Ended sagas would pile up in the in-memory log. */
    if (++runs % 256 == 0) {
        rc = sl_log_vacuum(rt, 0, NULL);
        if (rc != 0) die("sl_log_vacuum: %s (%s)", sl_err_name(rc), sl_runtime_errmsg(rt));
    }
    return 0;
}
