// A launcher that embeds sagalane through sagalane.hpp, re-creating the two sagas of the
// terminal-pool launcher sagalane grew out of (the same scenario as examples/c/launcher.c):
//
//   pool_respawn_on_promote  When a pool window is promoted, spawn a replacement pool window
//                            and finish once the host reports it added.
//   window_cleanup_cascade   When a window closes cleanly, reap its panes, then drain the pool
//                            if it was the last window. Crash-flagged closes start nothing:
//                            no host is left to answer. 30 s timeout.
//
// The host answers the sagas' commands: spawning a window is slow work, so it runs as a job on
// a persisted lane whose completion publishes the echo the saga waits for.
//
// Usage: sagalane-launcher-cpp [DATABASE]   (default: an in-memory log)
// Exits 0 when every saga ended as expected, 1 otherwise.
#include <sagalane.hpp>

#include <chrono>
#include <condition_variable>
#include <future>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace sl = sagalane;
using namespace std::chrono_literals;

namespace {

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// window_cleanup_cascade, as a class: its state is which step it reached. The input is kept by
// sagalane in the log.
class window_cleanup : public sl::saga {
public:
    explicit window_cleanup(std::string_view /*input_json*/) {}

    sl::action start(const sl::saga_context &) override { return sl::action::issue("host", R"({"cmd":"reap_panes"})"); }

    sl::action on_event(const sl::saga_context &ctx, const sl::event &ev) override {
        if (ev.saga_id != ctx.saga_id) return sl::action::wait();
        if (!reaped_ && ev.type == "PanesReaped") {
            reaped_ = true;
            return sl::action::issue("host", R"({"cmd":"drain_pool_if_last"})");
        }
        if (reaped_ && (ev.type == "PoolDrained" || ev.type == "PoolNotLast")) return sl::action::done();
        return sl::action::wait();
    }

private:
    bool reaped_ = false;
};

// pool_respawn_on_promote, as functions: it needs no state.
struct no_state {};

sl::saga_functions<no_state> respawn_on_promote() {
    sl::saga_functions<no_state> f;
    f.start = [](no_state &, const sl::saga_context &) {
        return sl::action::issue("host", R"({"cmd":"spawn_pool_window"})");
    };
    f.on_event = [](no_state &, const sl::saga_context &ctx, const sl::event &ev) {
        if (ev.saga_id == ctx.saga_id && ev.type == "PoolWindowAdded") return sl::action::done();
        return sl::action::wait();
    };
    return f;
}

// Spawning a window takes a while: a lane job, off the loop thread.
std::string spawn_window(sl::job_context &ctx) {
    std::this_thread::sleep_for(2ms);
    if (ctx.cancelled()) throw sl::job_cancelled();
    return R"({"label":"pool-new"})";
}

// Counts the sagas' lifecycle events.
class watcher {
public:
    void operator()(const sl::event &ev) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (ev.type == "SagaStarted") started_++;
        if (ev.type == "SagaCompleted") completed_++;
        if (ev.type == "SagaFailed") {
            failed_++;
            std::cerr << "launcher: saga " << ev.saga_id << " failed: " << ev.payload << "\n";
        }
        changed_.notify_all();
    }

    void wait_for_ends(int n) {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return completed_ + failed_ >= n; });
    }

    int started() {
        std::lock_guard<std::mutex> lock(mutex_);
        return started_;
    }
    int completed() {
        std::lock_guard<std::mutex> lock(mutex_);
        return completed_;
    }
    int failed() {
        std::lock_guard<std::mutex> lock(mutex_);
        return failed_;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    int started_ = 0, completed_ = 0, failed_ = 0;
};

int run(const std::string &database) {
    sl::runtime_options options;
    options.db_path = database;
    options.durability = sl::durability_mode::normal;
    sl::runtime rt(options);

    sl::saga_type respawn{"pool_respawn_on_promote", {}, {}};
    rt.register_saga_type(respawn, respawn_on_promote());
    sl::saga_type cleanup{"window_cleanup_cascade", {}, 30s};
    rt.register_saga_type<window_cleanup>(cleanup);

    rt.add_trigger("PoolWindowPromoted", "pool_respawn_on_promote");
    // Clean closes only. sagalane hands payloads over in compact form, so the flag reads as
    // "crash_detected":true exactly when it is set.
    rt.add_trigger("WindowClosed", "window_cleanup_cascade",
                   [](std::string_view payload) { return !contains(payload, R"("crash_detected":true)"); });

    sl::lane_options lane_options;
    lane_options.max_concurrent = 2;
    sl::lane windows = rt.create_lane("windows", lane_options);

    // Every command the sagas send to "host". Runs on the loop thread: hand off and return.
    rt.register_target("host", [&rt, windows](std::uint64_t saga_id, std::uint32_t step, std::string_view command) {
        if (contains(command, R"("cmd":"spawn_pool_window")")) {
            sl::job job;
            job.caller = "launcher";
            job.run = spawn_window;
            // Once the window exists, tell the saga that asked for it.
            job.done = [&rt, saga_id, step](const sl::job_outcome &outcome) {
                if (outcome.state == sl::job_state::finished) {
                    rt.publish("PoolWindowAdded", saga_id, std::string(outcome.text));
                } else {
                    rt.step_fail(saga_id, step, outcome.state == sl::job_state::failed ? std::string(outcome.text) : "cancelled");
                }
            };
            windows.submit(std::move(job));
        } else if (contains(command, R"("cmd":"reap_panes")")) {
            rt.publish("PanesReaped", saga_id, R"({"panes":3})");
        } else if (contains(command, R"("cmd":"drain_pool_if_last")")) {
            rt.publish("PoolDrained", saga_id);
        } else {
            throw std::invalid_argument("unknown command " + std::string(command));
        }
    });

    watcher watch;
    sl::subscription sub = rt.subscribe([&watch](const sl::event &ev) { watch(ev); });
    rt.start();

    // What the terminal reports. The crash-flagged close must start nothing.
    rt.publish("PoolWindowPromoted", R"({"label":"pool-1"})");
    rt.publish("WindowClosed", R"({"label":"main","crash_detected":false})");
    rt.publish("WindowClosed", R"({"label":"logs","crash_detected":true})");
    rt.publish("PoolWindowPromoted", R"({"label":"pool-2"})");
    rt.publish("WindowClosed", R"({"label":"side"})");

    // A saga started directly, whose end the launcher awaits itself, and some lane work of
    // its own.
    sl::started_saga direct = rt.start_saga_future("window_cleanup_cascade", R"({"label":"direct"})");
    sl::job warm_up;
    warm_up.caller = "launcher";
    warm_up.run = spawn_window;
    std::cout << "launcher: warm-up job answered " << windows.submit_and_wait(std::move(warm_up)) << "\n";

    if (direct.end.wait_for(30s) != std::future_status::ready) {
        std::cerr << "launcher: saga " << direct.id << " did not end\n";
        return 1;
    }
    sl::saga_end direct_end = direct.end.get();
    std::cout << "launcher: saga " << direct.id << " (direct) ended " << sl::to_string(direct_end.state) << "\n";

    const int expected = 5;
    watch.wait_for_ends(expected);
    // Anything the crash-flagged close might have started would show by now.
    std::this_thread::sleep_for(50ms);

    std::cout << "launcher: recent sagas: " << rt.log_recent(10) << "\n";
    sl::lane_stats stats = windows.stats();
    std::cout << "launcher: " << watch.started() << " sagas started, " << watch.completed() << " completed, "
              << watch.failed() << " failed; lane 'windows' ran " << stats.completed << " jobs\n";

    sub.reset();
    rt.close();
    bool ok = direct_end.state == sl::saga_state::completed && watch.started() == expected && watch.completed() == expected && watch.failed() == 0 && stats.completed == 3;
    if (!ok) std::cerr << "launcher: expected " << expected << " sagas completed and 3 lane jobs\n";
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        return run(argc > 1 ? argv[1] : "");
    } catch (const sl::error &e) {
        std::cerr << "launcher: " << e.what() << "\n";
        return 1;
    }
}
