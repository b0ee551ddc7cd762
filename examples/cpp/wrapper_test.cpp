// Tests of sagalane.hpp itself: failed calls throw sagalane::error with the right code, an
// exception in any callback stays on the C++ side (failing the job, the saga or the command),
// and every std::function handed to sagalane is freed exactly once. Built with
// AddressSanitizer and UBSan, so a leak, a double free or a use after free fails it too.
//
// Usage: sagalane-wrapper-test SCRATCH_DIR
#include <sagalane.hpp>

#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sl = sagalane;
using namespace std::chrono_literals;

namespace {

int failures = 0;

#define EXPECT(cond)                                                                  \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                               \
        }                                                                             \
    } while (0)

// Runs `body`, expecting a sagalane::error with `code`; returns it.
std::optional<sl::error> expect_throws(int code, const std::function<void()> &body, const char *text, int line) {
    try {
        body();
    } catch (const sl::error &e) {
        if (e.code() != code) {
            std::fprintf(stderr, "%s:%d: %s threw %s, expected %s: %s\n", __FILE__, line, text, e.name(), sl_err_name(code),
                         e.what());
            failures++;
        }
        return e;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s:%d: %s threw a non-sagalane exception: %s\n", __FILE__, line, text, e.what());
        failures++;
        return std::nullopt;
    }
    std::fprintf(stderr, "%s:%d: %s did not throw (expected %s)\n", __FILE__, line, text, sl_err_name(code));
    failures++;
    return std::nullopt;
}
#define EXPECT_THROWS(code, ...) expect_throws(code, [&] { __VA_ARGS__; }, #__VA_ARGS__, __LINE__)

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// Counts its live copies: captured in callbacks, it shows whether the wrapper freed them.
std::atomic<int> live_trackers{0};
struct tracker {
    tracker() { live_trackers++; }
    tracker(const tracker &) { live_trackers++; }
    tracker &operator=(const tracker &) = default;
    ~tracker() { live_trackers--; }
};

struct recorded {
    std::string type;
    std::uint64_t saga_id;
    std::string payload;
};

// Keeps every event it is given, and waits for one.
class recorder {
public:
    void operator()(const sl::event &ev) {
        std::lock_guard<std::mutex> lock(mutex_);
        events_.push_back({std::string(ev.type), ev.saga_id, std::string(ev.payload)});
        changed_.notify_all();
    }

    // The first event of `type` about saga `saga_id` (0: any), waiting up to 10 s for it.
    std::optional<recorded> wait(std::string_view type, std::uint64_t saga_id = 0) {
        std::unique_lock<std::mutex> lock(mutex_);
        std::optional<recorded> found;
        changed_.wait_for(lock, 10s, [&] {
            for (const recorded &e : events_)
                if (e.type == type && (saga_id == 0 || e.saga_id == saga_id)) return (found = e).has_value();
            return false;
        });
        return found;
    }

    int count(std::string_view type) {
        std::lock_guard<std::mutex> lock(mutex_);
        int n = 0;
        for (const recorded &e : events_) n += e.type == type;
        return n;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<recorded> events_;
};

sl::job job_of(sl::job_fn run) {
    sl::job j;
    j.run = std::move(run);
    return j;
}

// A saga of functions with no state.
struct nothing {};
sl::saga_functions<nothing> saga_of(std::function<sl::action(const sl::saga_context &)> start,
                                    std::function<sl::action(const sl::saga_context &, const sl::event &)> on_event = {}) {
    sl::saga_functions<nothing> f;
    f.start = [start](nothing &, const sl::saga_context &ctx) { return start(ctx); };
    f.on_event = [on_event](nothing &, const sl::saga_context &ctx, const sl::event &ev) {
        return on_event ? on_event(ctx, ev) : sl::action::wait();
    };
    return f;
}

void test_errors() {
    sl::runtime rt;
    if (auto e = EXPECT_THROWS(SL_EJSON, rt.publish("Thing", R"({"a":)"))) {
        EXPECT(std::string_view(e->name()) == "SL_EJSON");
        EXPECT(contains(e->what(), "sl_publish"));
        EXPECT(*e->detail() != '\0');
    }
    EXPECT_THROWS(SL_EUTF8, rt.publish("Thing", "\"\xff\""));
    EXPECT_THROWS(SL_EINVAL, rt.publish("", "null"));

    rt.register_saga_type({"quick", {}, {}}, saga_of([](const sl::saga_context &) { return sl::action::done(); }));
    EXPECT_THROWS(SL_EEXIST, rt.register_saga_type({"quick", {}, {}}, saga_of([](auto &) { return sl::action::done(); })));
    EXPECT_THROWS(SL_ESTATE, rt.start_saga("quick"));
    EXPECT_THROWS(SL_ENOTFOUND, rt.add_trigger("Thing", "no_such_saga"));
    rt.register_target("t", [](std::uint64_t, std::uint32_t, std::string_view) {});
    EXPECT_THROWS(SL_EEXIST, rt.register_target("t", [](std::uint64_t, std::uint32_t, std::string_view) {}));

    sl::lane work = rt.create_lane("work");
    EXPECT_THROWS(SL_EEXIST, rt.create_lane("work"));
    EXPECT(rt.find_lane("work").handle() == work.handle());
    EXPECT_THROWS(SL_ENOTFOUND, rt.find_lane("no_such_lane"));
    EXPECT_THROWS(SL_ENOTFOUND, work.cancel("no_such_job"));
    EXPECT_THROWS(SL_EINVAL, work.set_max_concurrent(0));
    EXPECT_THROWS(SL_EINVAL, work.submit(sl::job()));

    rt.start();
    EXPECT_THROWS(SL_ESTATE, rt.start());
    EXPECT_THROWS(SL_ENOTFOUND, rt.start_saga("no_such_saga"));
    EXPECT_THROWS(SL_EJSON, rt.start_saga("quick", "{nope}"));
    EXPECT_THROWS(SL_ENOTFOUND, rt.log_saga(424242));
    EXPECT_THROWS(SL_ENOTFOUND, rt.cancel_saga(424242, "test"));
    EXPECT(rt.healthy());
    rt.check_health();

    // A moved-from runtime is an empty handle; the moved-to one works.
    sl::runtime moved = std::move(rt);
    EXPECT_THROWS(SL_EINVAL, rt.publish("Thing"));
    moved.publish("Thing");

    sl::runtime_options bad;
    bad.db_path = "/nonexistent-sagalane-dir/log.db";
    EXPECT_THROWS(SL_ECANTOPEN, sl::runtime broken(bad));
}

// publish takes C's order of arguments (type, saga_id, payload), with untagged and null
// payload forms; subscribe takes the buffer first, as sl_subscribe does.
void test_publish() {
    recorder events;
    sl::runtime rt;
    sl::subscription sub = rt.subscribe(16, [&events](const sl::event &ev) { events(ev); });
    rt.start();
    rt.publish("Tagged", 7, R"({"n":1})");
    rt.publish("TaggedNull", 7);
    rt.publish("Untagged", R"({"n":2})");
    rt.publish("UntaggedNull");
    rt.publish("Zero", 0);  // 0 is saga id 0, untagged, not a null payload pointer
    std::optional<recorded> tagged = events.wait("Tagged");
    EXPECT(tagged && tagged->saga_id == 7 && tagged->payload == R"({"n":1})");
    std::optional<recorded> tagged_null = events.wait("TaggedNull");
    EXPECT(tagged_null && tagged_null->saga_id == 7 && tagged_null->payload == "null");
    std::optional<recorded> untagged = events.wait("Untagged");
    EXPECT(untagged && untagged->saga_id == 0 && untagged->payload == R"({"n":2})");
    std::optional<recorded> untagged_null = events.wait("UntaggedNull");
    EXPECT(untagged_null && untagged_null->saga_id == 0 && untagged_null->payload == "null");
    std::optional<recorded> zero = events.wait("Zero");
    EXPECT(zero && zero->saga_id == 0 && zero->payload == "null");
    EXPECT_THROWS(SL_EJSON, rt.publish("Tagged", 7, "{nope"));
}

void test_jobs() {
    sl::runtime rt;
    sl::lane_options options;
    options.max_concurrent = 2;
    sl::lane work = rt.create_lane("jobs", options);
    rt.start();

    EXPECT(work.submit_and_wait(job_of([](sl::job_context &ctx) { return "ran " + std::string(ctx.id()); })) != "");
    if (auto e = EXPECT_THROWS(SL_EJOBFAILED, work.submit_and_wait(job_of([](sl::job_context &) -> std::string {
                                   throw std::runtime_error("boom");
                               }))))
        EXPECT(contains(e->detail(), "boom"));
    if (auto e = EXPECT_THROWS(SL_EJOBFAILED, work.submit_and_wait(job_of([](sl::job_context &) -> std::string { throw 42; }))))
        EXPECT(contains(e->detail(), "unknown exception"));
    EXPECT_THROWS(SL_ECANCELED, work.submit_and_wait(job_of([](sl::job_context &) -> std::string { throw sl::job_cancelled(); })));
    // A result that is not UTF-8 cannot be handed over: the job fails.
    EXPECT_THROWS(SL_EJOBFAILED, work.submit_and_wait(job_of([](sl::job_context &) { return std::string("\xff"); })));

    // Asynchronously, with retries: the done callback sees the failure and the attempts.
    auto outcome = std::make_shared<std::promise<std::pair<sl::job_state, std::string>>>();
    sl::job retried = job_of([](sl::job_context &ctx) -> std::string {
        throw std::runtime_error("failed attempt " + std::to_string(ctx.attempt()));
    });
    retried.id = "retried";
    retried.max_attempts = 3;
    retried.retry_backoff = 1ms;
    std::atomic<int> attempts{0};
    retried.done = [outcome, &attempts](const sl::job_outcome &o) {
        attempts = o.attempts;
        outcome->set_value({o.state, std::string(o.text)});
    };
    sl::submission s = work.submit(std::move(retried));
    EXPECT(s.job_id == "retried");
    auto ended = outcome->get_future();
    EXPECT(ended.wait_for(10s) == std::future_status::ready);
    auto [state, text] = ended.get();
    EXPECT(state == sl::job_state::failed);
    EXPECT(text == "failed attempt 3");
    EXPECT(attempts == 3);
    // The log shows the retried job failed, with its attempts and last error.
    std::string failed = rt.log_jobs("jobs", "failed", 10);
    EXPECT(contains(failed, R"("attempts":3,)") && contains(failed, R"("error":"failed attempt 3")") &&
           contains(failed, R"("id":"retried")"));
    EXPECT(rt.log_jobs("other-lane", "", 10) == "[]");
    EXPECT(contains(rt.log_stats(), R"("failed":)") && contains(rt.log_stats(), R"("jobs":{"jobs":{)"));
    EXPECT_THROWS(SL_EINVAL, rt.log_jobs("", "finished-ish", 10));

    // A done callback that throws is contained.
    auto finished = std::make_shared<std::promise<void>>();
    sl::job noisy = job_of([](sl::job_context &) { return std::string("fine"); });
    noisy.done = [finished](const sl::job_outcome &) {
        finished->set_value();
        throw std::runtime_error("done callback threw on purpose");
    };
    work.submit(std::move(noisy));
    EXPECT(finished->get_future().wait_for(10s) == std::future_status::ready);

    // Ids are unique in the lane and its log.
    sl::job first = job_of([](sl::job_context &) { return std::string(); });
    first.id = "once";
    work.submit_and_wait(std::move(first));
    sl::job again = job_of([](sl::job_context &) { return std::string(); });
    again.id = "once";
    EXPECT_THROWS(SL_EEXIST, work.submit_and_wait(std::move(again)));

    sl::lane_stats stats = work.stats();
    EXPECT(stats.max_concurrent == 2);
    EXPECT(stats.failed >= 4);
    work.set_max_concurrent(3);
    EXPECT(work.stats().max_concurrent == 3);
}

// A class saga that finishes at once and counts its instances.
class redacting : public sl::saga {
public:
    explicit redacting(std::string_view input) : input_(input) {}
    sl::action start(const sl::saga_context &) override { return sl::action::done(); }
    sl::action on_event(const sl::saga_context &, const sl::event &) override { return sl::action::wait(); }

private:
    std::string input_;
    tracker t_;
};

void test_sagas() {
    recorder events;
    sl::runtime rt;
    sl::subscription sub = rt.subscribe([&events](const sl::event &ev) { events(ev); });

    sl::saga_functions<nothing> refusing;
    refusing.create = [](std::string_view) -> nothing { throw std::invalid_argument("bad input"); };
    refusing.start = [](nothing &, const sl::saga_context &) { return sl::action::done(); };
    refusing.on_event = [](nothing &, const sl::saga_context &, const sl::event &) { return sl::action::wait(); };
    rt.register_saga_type({"refusing", {}, {}}, refusing);
    rt.register_saga_type({"throws_in_start", {}, {}}, saga_of([](const sl::saga_context &) -> sl::action {
                              throw std::runtime_error("start exploded");
                          }));
    rt.register_saga_type({"throws_in_event", {}, {}},
                          saga_of([](const sl::saga_context &) { return sl::action::issue("self", R"({"type":"Ping"})"); },
                                  [](const sl::saga_context &, const sl::event &) -> sl::action {
                                      throw std::runtime_error("event exploded");
                                  }));
    rt.register_saga_type({"bad_command", {}, {}},
                          saga_of([](const sl::saga_context &) { return sl::action::issue("self", "{not json"); }));
    rt.register_saga_type({"refused", {}, {}},
                          saga_of([](const sl::saga_context &) { return sl::action::issue("thrower", "{}"); }));
    rt.register_saga_type({"failing", {}, {}},
                          saga_of([](const sl::saga_context &) { return sl::action::fail("on purpose"); }));
    rt.register_saga_type({"waiting", {}, {}}, saga_of([](const sl::saga_context &) { return sl::action::wait(); }));
    rt.register_saga_type<redacting>({"redacting", {}, {}});
    rt.register_target("thrower", [](std::uint64_t, std::uint32_t, std::string_view) {
        throw std::runtime_error("target threw on purpose");
    });
    rt.add_trigger("Go", "redacting", [](std::string_view) -> bool { throw std::runtime_error("predicate threw"); });
    rt.add_trigger("Go2", "redacting", [](std::string_view payload) { return contains(payload, R"("yes":true)"); });
    rt.start();

    if (auto e = EXPECT_THROWS(SL_EREFUSED, rt.start_saga("refusing"))) EXPECT(contains(e->detail(), "bad input"));

    auto failed_with = [&](const char *type, std::string_view reason) {
        std::uint64_t id = rt.start_saga(type);
        std::optional<recorded> end = events.wait("SagaFailed", id);
        EXPECT(end.has_value());
        if (end && !contains(end->payload, reason)) {
            std::fprintf(stderr, "saga %s failed with %s; expected it to mention '%s'\n", type, end->payload.c_str(),
                         std::string(reason).c_str());
            failures++;
        }
    };
    failed_with("throws_in_start", "start exploded");
    failed_with("throws_in_event", "event exploded");
    failed_with("bad_command", "command_json");
    failed_with("refused", "refused");
    failed_with("failing", "on purpose");

    std::uint64_t redacted = rt.start_saga("redacting", R"({"secret":"hunter2"})");
    EXPECT(events.wait("SagaCompleted", redacted).has_value());
    // The log keeps the input as given: recovery rebuilds sagas from it.
    std::string log = rt.log_saga(redacted);
    EXPECT(contains(log, "hunter2"));

    // The predicate that throws starts nothing; events are handled in order, so once Go2's
    // saga started, Go's would have.
    int started = events.count("SagaStarted");
    rt.publish("Go", "{}");
    rt.publish("Go2", R"({"yes":true})");
    EXPECT(events.wait("SagaCompleted", redacted + 1).has_value());
    EXPECT(events.count("SagaStarted") == started + 1);

    std::uint64_t waiting = rt.start_saga("waiting");
    EXPECT(events.wait("SagaStarted", waiting).has_value());
    rt.cancel_saga(waiting, "by the test");
    std::optional<recorded> cancelled = events.wait("SagaFailed", waiting);
    EXPECT(cancelled && contains(cancelled->payload, "cancelled: by the test"));

    EXPECT(rt.log_recent(3).front() == '[');
    EXPECT(rt.log_unresolved().front() == '[');
    rt.vacuum(24h);
}

void test_lane_target() {
    recorder events;
    sl::runtime rt;
    sl::subscription sub = rt.subscribe([&events](const sl::event &ev) { events(ev); });
    sl::lane_options options;
    options.persisted = false;
    sl::lane work = rt.create_lane("work", options);
    work.set_command_handler([](sl::job_context &ctx) -> std::string {
        if (contains(ctx.metadata(), R"("fail":true)")) throw std::runtime_error("handler failed on purpose");
        return R"({"ok":true})";
    });
    sl::saga_functions<std::string> uses_lane;
    uses_lane.create = [](std::string_view input) { return std::string(input); };
    uses_lane.start = [](std::string &input, const sl::saga_context &) { return sl::action::issue("lane:work", input); };
    uses_lane.on_event = [](std::string &, const sl::saga_context &ctx, const sl::event &ev) {
        if (ev.saga_id != ctx.saga_id) return sl::action::wait();
        if (ev.type == "LaneJobFinished") return sl::action::done();
        return sl::action::fail(std::string(ev.payload));
    };
    rt.register_saga_type({"uses_lane", {}, {}}, uses_lane);
    rt.start();

    EXPECT(events.wait("SagaCompleted", rt.start_saga("uses_lane", R"({"fail":false})")).has_value());
    std::optional<recorded> failed = events.wait("SagaFailed", rt.start_saga("uses_lane", R"({"fail":true})"));
    EXPECT(failed && contains(failed->payload, "handler failed on purpose"));
}

void test_manual_clock() {
    recorder events;
    sl::runtime_options options;
    options.clock = sl::clock_mode::manual;
    sl::runtime rt(options);
    sl::subscription sub = rt.subscribe([&events](const sl::event &ev) { events(ev); });
    rt.register_saga_type({"slow", {}, 1000ms}, saga_of([](const sl::saga_context &) { return sl::action::wait(); }));
    rt.start();
    std::uint64_t id = rt.start_saga("slow");
    EXPECT(events.wait("SagaStarted", id).has_value());
    rt.advance_time(500ms);
    EXPECT(events.count("SagaFailed") == 0);
    rt.advance_time(600ms);
    std::optional<recorded> failed = events.wait("SagaFailed", id);
    EXPECT(failed && contains(failed->payload, "timeout"));
}

// A type whose sagas wait for a "Go" event tagged with them (then done) or "Fail" (failed).
sl::saga_functions<nothing> answered() {
    return saga_of([](const sl::saga_context &) { return sl::action::wait(); },
                   [](const sl::saga_context &ctx, const sl::event &ev) {
                       if (ev.saga_id != ctx.saga_id) return sl::action::wait();
                       if (ev.type == "Go") return sl::action::done();
                       if (ev.type == "Fail") return sl::action::fail(std::string(ev.payload));
                       return sl::action::wait();
                   });
}

void test_saga_file() {
    sl::runtime rt;
    if (auto e = EXPECT_THROWS(SL_EINVAL, rt.load_saga_types(R"({"sagas": [{"name": "a", "steps": []}]})")))
        EXPECT(contains(e->detail(), R"(<sagas>:1:35: saga "a": field "steps" must be a non-empty array)"));
    const char *file = R"({"sagas": [{"name": "ping", "input": ["n"],
        "steps": [{"target": "host", "command": {"cmd": "ping", "n": "${input.n}"}, "completes_on": "Pong"}]}]})";
    EXPECT(rt.load_saga_types(file) == 1);
    EXPECT_THROWS(SL_EEXIST, rt.load_saga_types(file));
    std::string told;
    rt.register_target("host", [&rt, &told](std::uint64_t saga_id, std::uint32_t, std::string_view command) {
        told = std::string(command);
        rt.publish("Pong", saga_id, "null");
    });
    rt.start();
    std::uint64_t id = rt.start_saga("ping", R"({"n": 7})");
    EXPECT(rt.wait_saga(id, 10s).state == sl::saga_state::completed);
    EXPECT(contains(told, R"("n":7)"));
}

void test_saga_wait() {
    sl::runtime rt;
    rt.register_saga_type({"quick", {}, {}}, saga_of([](const sl::saga_context &) { return sl::action::done(); }));
    rt.register_saga_type({"answered", {}, 60s}, answered());
    rt.start();

    std::uint64_t quick = rt.start_saga("quick");
    // start_saga returned, so the saga's row is in the log already.
    EXPECT(contains(rt.log_saga(quick), R"("id":)" + std::to_string(quick)));
    sl::saga_end end = rt.wait_saga(quick, 10s);
    EXPECT(end.saga_id == quick && end.state == sl::saga_state::completed && !end.reason && end.durable);
    // Once it ended, the answer comes from the log, even with no time to wait.
    EXPECT(rt.wait_saga(quick, 0ms).state == sl::saga_state::completed);
    EXPECT(rt.wait_saga(quick).state == sl::saga_state::completed);

    std::uint64_t held = rt.start_saga("answered");
    if (auto e = EXPECT_THROWS(SL_ETIMEDOUT, rt.wait_saga(held, 50ms))) EXPECT(contains(e->what(), "sl_saga_wait"));
    EXPECT_THROWS(SL_ETIMEDOUT, rt.wait_saga(held, -5ms));  // a negative timeout does not wait
    rt.cancel_saga(held, "by the test");
    // cancel_saga returned once the end was durable: no time to wait is needed either.
    end = rt.wait_saga(held, 0ms);
    EXPECT(end.state == sl::saga_state::failed && end.reason == std::optional<std::string>("cancelled: by the test"));

    std::uint64_t failing = rt.start_saga("answered");
    std::thread answer([&rt, failing] {
        std::this_thread::sleep_for(20ms);
        rt.publish("Fail", failing, R"("no luck")");
    });
    end = rt.wait_saga(failing, 10s);
    answer.join();
    EXPECT(end.state == sl::saga_state::failed && end.reason && contains(*end.reason, "no luck"));

    EXPECT_THROWS(SL_ENOTFOUND, rt.wait_saga(424242, 0ms));
    EXPECT(sl::to_string(sl::saga_state::failed_compensation) == "failed_compensation");
    EXPECT(sl::to_string(sl::saga_state::completed) == "completed");

}

void test_saga_future() {
    std::optional<std::future<sl::saga_end>> in_flight;
    const int baseline = live_trackers;
    {
        tracker t;
        sl::runtime rt;
        rt.register_saga_type({"quick", {}, {}}, saga_of([](const sl::saga_context &) { return sl::action::done(); }));
        rt.register_saga_type({"failing", {}, {}}, saga_of([](const sl::saga_context &) { return sl::action::fail("on purpose"); }));
        rt.register_saga_type({"answered", {}, 60s}, answered());
        rt.start();

        sl::started_saga quick = rt.start_saga_future("quick", R"({"n":1})");
        EXPECT(quick.id != 0);
        EXPECT(quick.end.wait_for(10s) == std::future_status::ready);
        sl::saga_end end = quick.end.get();
        EXPECT(end.saga_id == quick.id && end.state == sl::saga_state::completed && !end.reason && end.durable);

        sl::started_saga failing = rt.start_saga_future("failing");
        EXPECT(failing.end.wait_for(10s) == std::future_status::ready);
        end = failing.end.get();
        EXPECT(end.state == sl::saga_state::failed && end.reason && contains(*end.reason, "on purpose"));

        // on_end, with start_saga or the future: called once, on the loop thread, and freed.
        auto ends = std::make_shared<std::atomic<int>>(0);
        auto heard = std::make_shared<std::promise<sl::saga_end>>();
        sl::saga_start_options watch;
        watch.on_end = [t, ends, heard](const sl::saga_end &e) {
            if ((*ends)++ == 0) heard->set_value(e);
        };
        std::uint64_t watched = rt.start_saga("answered", "null", watch);
        rt.publish("Go", watched);
        auto heard_end = heard->get_future();
        EXPECT(heard_end.wait_for(10s) == std::future_status::ready);
        EXPECT(heard_end.get().saga_id == watched);
        EXPECT(rt.wait_saga(watched, 10s).state == sl::saga_state::completed);

        // Dropping the future at once is fine: the end finds nobody waiting.
        sl::saga_start_options noisy;
        noisy.on_end = [t](const sl::saga_end &) { throw std::runtime_error("on_end threw on purpose"); };
        std::uint64_t dropped = rt.start_saga_future("quick", "null", noisy).id;
        EXPECT(rt.wait_saga(dropped, 10s).state == sl::saga_state::completed);

        // Failed starts free what they were given and leave no future.
        EXPECT_THROWS(SL_ENOTFOUND, rt.start_saga_future("no_such_saga", "null", watch));
        EXPECT_THROWS(SL_EJSON, rt.start_saga("quick", "{nope", watch));

        // A saga in flight at the close: its future says the runtime closed.
        sl::started_saga stuck = rt.start_saga_future("answered", "null", watch);
        in_flight = std::move(stuck.end);
        EXPECT(in_flight->wait_for(20ms) == std::future_status::timeout);
        rt.close();
        // Freed: every copy but t and those in `watch` and `noisy`, which this scope holds.
        EXPECT(live_trackers == baseline + 3);
        EXPECT(*ends == 1);
    }
    EXPECT(live_trackers == baseline);
    EXPECT(in_flight->wait_for(0s) == std::future_status::ready);
    if (auto e = EXPECT_THROWS(SL_ECLOSED, in_flight->get())) EXPECT(contains(e->what(), "closed before the saga ended"));
}

// From a target callback, on the loop thread: start_saga cannot wait there, start_saga_async
// can; wait_saga refuses too.
void test_saga_async() {
    sl::runtime rt;
    rt.register_saga_type({"quick", {}, {}}, saga_of([](const sl::saga_context &) { return sl::action::done(); }));
    rt.register_saga_type({"spawner", {}, {}},
                          saga_of([](const sl::saga_context &) { return sl::action::issue("spawn", "{}"); },
                                  [](const sl::saga_context &ctx, const sl::event &ev) {
                                      return ev.saga_id == ctx.saga_id && ev.type == "Spawned" ? sl::action::done()
                                                                                                : sl::action::wait();
                                  }));
    struct seen {
        std::mutex mutex;
        std::condition_variable changed;
        std::optional<int> blocking_code, wait_code, room_code;
        std::uint64_t started_id = 0;
        bool started = false, ended = false;
        std::optional<sl::saga_end> end;
    };
    auto s = std::make_shared<seen>();
    rt.register_target("spawn", [&rt, s](std::uint64_t saga_id, std::uint32_t, std::string_view) {
        auto code_of = [](const std::function<void()> &body) -> int {
            try {
                body();
                return 0;
            } catch (const sl::error &e) {
                return e.code();
            }
        };
        int blocking = code_of([&] { rt.start_saga("quick"); });
        int waiting = code_of([&] { rt.wait_saga(saga_id, 0ms); });
        sl::saga_start_options room;
        room.room_timeout = 1s;
        int with_room = code_of([&] { rt.start_saga_async("quick", "null", {}, room); });
        sl::saga_start_options options;
        options.on_end = [s](const sl::saga_end &e) {
            std::lock_guard<std::mutex> lock(s->mutex);
            s->end = e;
            s->ended = true;
            s->changed.notify_all();
        };
        rt.start_saga_async(
            "quick", "null",
            [&rt, s, saga_id](const sl::error *failure, std::uint64_t id) {
                std::lock_guard<std::mutex> lock(s->mutex);
                s->started = true;
                s->started_id = failure ? 0 : id;
                s->changed.notify_all();
                rt.publish("Spawned", saga_id);
            },
            options);
        std::lock_guard<std::mutex> lock(s->mutex);
        s->blocking_code = blocking;
        s->wait_code = waiting;
        s->room_code = with_room;
    });
    rt.start();

    std::uint64_t spawner = rt.start_saga("spawner");
    {
        std::unique_lock<std::mutex> lock(s->mutex);
        EXPECT(s->changed.wait_for(lock, 10s, [&] { return s->started && s->ended; }));
        EXPECT(s->blocking_code == SL_ESTATE);
        EXPECT(s->wait_code == SL_ESTATE);
        EXPECT(s->room_code == SL_ESTATE);  // waiting for room would block the loop too
        EXPECT(s->started_id != 0 && s->started_id != spawner);
        EXPECT(s->end && s->end->saga_id == s->started_id && s->end->state == sl::saga_state::completed);
    }
    EXPECT(rt.wait_saga(spawner, 10s).state == sl::saga_state::completed);
    EXPECT(rt.wait_saga(s->started_id, 0ms).state == sl::saga_state::completed);

    // From a host thread too; a start that fails at once never calls back.
    auto called = std::make_shared<std::atomic<int>>(0);
    auto id = std::make_shared<std::promise<std::uint64_t>>();
    rt.start_saga_async("quick", R"({"n":2})", [id, called](const sl::error *failure, std::uint64_t saga_id) {
        (*called)++;
        id->set_value(failure ? 0 : saga_id);
    });
    auto got = id->get_future();
    EXPECT(got.wait_for(10s) == std::future_status::ready);
    std::uint64_t host_started = got.get();
    EXPECT(host_started != 0 && rt.wait_saga(host_started, 10s).state == sl::saga_state::completed);
    EXPECT_THROWS(SL_ENOTFOUND, rt.start_saga_async("no_such_saga", "null", [called](const sl::error *, std::uint64_t) { (*called)++; }));
    EXPECT_THROWS(SL_EJSON, rt.start_saga_async("quick", "{nope", {}));
    rt.close();
    EXPECT(*called == 1);
}

// Another connection holds the log's write lock: sagas pile up waiting for their rows until
// the launch queue is full, and then start_saga says SL_EAGAIN, at once or after its room
// timeout, or waits for room.
void test_launch_queue(const std::string &dir) {
    std::string db = dir + "/launch-queue.db";
    for (const char *suffix : {"", "-wal", "-shm"}) unlink((db + suffix).c_str());
    sl::runtime_options options;
    options.db_path = db;
    options.busy_timeout = 60s;
    sl::runtime rt(options);
    rt.register_saga_type({"quick", {}, {}}, saga_of([](const sl::saga_context &) { return sl::action::done(); }));
    rt.start();

    sqlite3 *lock = nullptr;
    EXPECT(sqlite3_open(db.c_str(), &lock) == SQLITE_OK);
    EXPECT(sqlite3_exec(lock, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);

    const int limit = 1024;
    struct counts {
        std::mutex mutex;
        std::condition_variable changed;
        int started = 0, failed = 0;
    };
    auto c = std::make_shared<counts>();
    int accepted = 0;
    for (int i = 0; i < limit; i++) {
        try {
            rt.start_saga_async("quick", "null", [c](const sl::error *failure, std::uint64_t) {
                std::lock_guard<std::mutex> l(c->mutex);
                (failure ? c->failed : c->started)++;
                c->changed.notify_all();
            });
            accepted++;
        } catch (const sl::error &e) {
            std::fprintf(stderr, "start %d: %s\n", i, e.what());
            break;
        }
    }
    EXPECT(accepted == limit);
    if (auto e = EXPECT_THROWS(SL_EAGAIN, rt.start_saga("quick"))) EXPECT(contains(e->what(), "sl_saga_start_ex"));
    sl::saga_start_options brief;
    brief.room_timeout = 30ms;
    auto began = std::chrono::steady_clock::now();
    EXPECT_THROWS(SL_EAGAIN, rt.start_saga("quick", "null", brief));
    EXPECT(std::chrono::steady_clock::now() - began >= 30ms);
    EXPECT_THROWS(SL_EAGAIN, rt.start_saga_future("quick", "null", brief));

    // One that waits for room as long as it takes gets it once the lock is gone.
    sl::saga_start_options patient;
    patient.room_timeout = sl::forever;
    std::atomic<bool> returned{false};
    std::uint64_t waited = 0;
    std::thread starter([&] {
        try {
            waited = rt.start_saga("quick", "null", patient);
        } catch (const sl::error &e) {
            std::fprintf(stderr, "the patient start: %s\n", e.what());
        }
        returned = true;
    });
    std::this_thread::sleep_for(50ms);
    EXPECT(!returned);  // still waiting for room
    EXPECT(sqlite3_exec(lock, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(lock);
    starter.join();
    EXPECT(waited != 0);
    if (waited) EXPECT(rt.wait_saga(waited, 20s).state == sl::saga_state::completed);
    std::unique_lock<std::mutex> l(c->mutex);
    EXPECT(c->changed.wait_for(l, 30s, [&] { return c->started + c->failed == limit; }));
    EXPECT(c->started == limit && c->failed == 0);
}

// A terminal row that cannot be written: the end callback and the future say so.
void test_end_not_durable(const std::string &dir) {
    std::string db = dir + "/not-durable.db";
    for (const char *suffix : {"", "-wal", "-shm"}) unlink((db + suffix).c_str());
    sl::runtime_options options;
    options.db_path = db;
    options.busy_timeout = 50ms;
    sl::runtime rt(options);
    rt.register_saga_type({"answered", {}, 60s}, answered());
    rt.start();
    sl::started_saga saga = rt.start_saga_future("answered");
    sqlite3 *lock = nullptr;
    EXPECT(sqlite3_open(db.c_str(), &lock) == SQLITE_OK);
    EXPECT(sqlite3_exec(lock, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    rt.publish("Go", saga.id);
    EXPECT(saga.end.wait_for(10s) == std::future_status::ready);
    sl::saga_end end = saga.end.get();
    EXPECT(end.saga_id == saga.id && !end.durable);
    EXPECT(end.reason && contains(*end.reason, "could not record"));
    EXPECT(!rt.healthy());
    EXPECT(sqlite3_exec(lock, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(lock);
}

// Every callback captures a tracker: once the runtime is closed, only the subscription that
// outlives it still holds one.
void test_ownership() {
    sl::subscription outliving;
    {
        tracker t;
        sl::runtime rt;
        outliving = rt.subscribe([t](const sl::event &) {});
        sl::saga_functions<tracker> tracked;
        tracked.create = [t](std::string_view) { return t; };
        tracked.start = [t](tracker &, const sl::saga_context &) { return sl::action::wait(); };
        tracked.on_event = [t](tracker &, const sl::saga_context &, const sl::event &) { return sl::action::wait(); };
        rt.register_saga_type({"tracked", {}, 60s}, tracked);
        rt.register_saga_type<redacting>({"redacting", {}, 60s});
        rt.add_trigger("Never", "tracked", [t](std::string_view) { return false; });
        rt.register_target("target", [t](std::uint64_t, std::uint32_t, std::string_view) {});

        // Failed calls free what they were given.
        int before = live_trackers;
        EXPECT_THROWS(SL_EEXIST, rt.register_target("target", [t](std::uint64_t, std::uint32_t, std::string_view) {}));
        EXPECT_THROWS(SL_ENOTFOUND, rt.add_trigger("Never", "no_such_saga", [t](std::string_view) { return true; }));
        EXPECT(live_trackers == before);

        sl::lane work = rt.create_lane("work");
        work.set_command_handler([t](sl::job_context &) { return std::string(); });
        before = live_trackers;
        work.set_command_handler([](sl::job_context &) { return std::string(); });
        EXPECT(live_trackers == before - 1);  // the replaced handler was freed

        rt.start();
        rt.start_saga("tracked");
        rt.start_saga("redacting");  // ends at once
        rt.start_saga("redacting");

        // One job runs until the close cancels it; the others are still queued then.
        auto running = std::make_shared<std::promise<void>>();
        sl::job blocker = job_of([t, running](sl::job_context &ctx) -> std::string {
            running->set_value();
            while (!ctx.cancelled()) std::this_thread::sleep_for(1ms);
            throw sl::job_cancelled();
        });
        auto cancelled = std::make_shared<std::atomic<int>>(0);
        blocker.done = [t, cancelled](const sl::job_outcome &o) { *cancelled += o.state == sl::job_state::cancelled; };
        work.submit(std::move(blocker));
        for (int i = 0; i < 3; i++) {
            sl::job queued = job_of([t](sl::job_context &) { return std::string(); });
            queued.done = [t, cancelled](const sl::job_outcome &o) { *cancelled += o.state == sl::job_state::cancelled; };
            work.submit(std::move(queued));
        }
        EXPECT(running->get_future().wait_for(10s) == std::future_status::ready);
        rt.close();
        EXPECT(*cancelled == 4);
    }
    EXPECT(live_trackers == 1);
    outliving.reset();
    EXPECT(live_trackers == 0);
}

// The child's half of test_reconstruct: leaves one job running and one queued in the log, and
// exits without closing anything.
int reconstruct_child(const std::string &db) {
    try {
        sl::runtime_options options;
        options.db_path = db;
        sl::runtime rt(options);
        sl::lane work = rt.create_lane("rebuild");
        auto running = std::make_shared<std::promise<void>>();
        sl::job blocker = job_of([running](sl::job_context &) -> std::string {
            running->set_value();
            for (;;) std::this_thread::sleep_for(1s);
        });
        blocker.id = "running-1";
        work.submit(std::move(blocker));
        running->get_future().wait();
        sl::job queued = job_of([](sl::job_context &) { return std::string(); });
        queued.id = "queued-1";
        queued.caller = "child";
        queued.priority = 3;
        queued.metadata = "payload-bytes";
        work.submit(std::move(queued));
        _exit(0);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        _exit(1);
    }
}

void test_reconstruct(const std::string &dir) {
    std::string db = dir + "/reconstruct.db";
    for (const char *suffix : {"", "-wal", "-shm"}) unlink((db + suffix).c_str());
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "sagalane-wrapper-test", "--reconstruct-child", db.c_str(), static_cast<char *>(nullptr));
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    sl::runtime_options options;
    options.db_path = db;
    sl::runtime rt(options);
    std::vector<std::string> seen;
    auto outcome = std::make_shared<std::promise<std::string>>();
    sl::lane_options lane_options;
    lane_options.reconstruct = [&seen, outcome](const sl::job_record &r) -> std::optional<sl::job> {
        seen.push_back(std::string(r.job_id) + "/" + std::string(r.caller) + "/" + std::to_string(r.priority) + "/" +
                       std::string(r.metadata));
        sl::job j = job_of([metadata = std::string(r.metadata)](sl::job_context &) { return "rebuilt:" + metadata; });
        j.done = [outcome](const sl::job_outcome &o) { outcome->set_value(std::string(o.job_id) + "=" + std::string(o.text)); };
        return j;
    };
    rt.create_lane("rebuild", lane_options);
    EXPECT(seen.size() == 1 && seen[0] == "queued-1/child/3/payload-bytes");
    auto done = outcome->get_future();
    EXPECT(done.wait_for(10s) == std::future_status::ready && done.get() == "queued-1=rebuilt:payload-bytes");
}

}  // namespace

int main(int argc, char **argv) {
    if (argc == 3 && std::string_view(argv[1]) == "--reconstruct-child") return reconstruct_child(argv[2]);
    std::string dir = argc > 1 ? argv[1] : "wrapper-test";
    mkdir(dir.c_str(), 0755);

    const std::pair<const char *, std::function<void()>> tests[] = {
        {"errors", test_errors},
        {"publish", test_publish},
        {"jobs", test_jobs},
        {"sagas", test_sagas},
        {"lane target", test_lane_target},
        {"manual clock", test_manual_clock},
        {"saga file", test_saga_file},
        {"saga wait", test_saga_wait},
        {"saga future", test_saga_future},
        {"saga async", test_saga_async},
        {"launch queue", [&dir] { test_launch_queue(dir); }},
        {"end not durable", [&dir] { test_end_not_durable(dir); }},
        {"ownership", test_ownership},
        {"reconstruct", [&dir] { test_reconstruct(dir); }},
    };
    for (const auto &[name, test] : tests) {
        int before = failures;
        try {
            test();
        } catch (const std::exception &e) {
            std::fprintf(stderr, "%s: unexpected exception: %s\n", name, e.what());
            failures++;
        }
        std::printf("%s: %s\n", name, failures == before ? "ok" : "FAILED");
    }
    EXPECT(live_trackers == 0);
    return failures == 0 ? 0 : 1;
}
