// Compensation, operators' actions, idempotency keys and the lifecycle stream through the C++
// wrapper: steps declared with step_options and as JSON (action::issue_step), a saga whose last
// step is refused compensating the two before it in reverse order, a compensation that fails
// (failed_compensation) run again with retry_compensation, a start with an idempotency key
// answered with the existing saga, and a lifecycle subscriber that gets every event once, in
// order, from position 0.
#include "check.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sl = sagalane;
using namespace std::chrono_literals;

namespace {

struct order {
    bool refuse_last;
};

std::mutex mutex;
std::vector<std::string> sent;  // "cmd#step"
bool fail_undo_first = false;

}  // namespace

int main() {
    sl::runtime rt;
    sl::saga_type type{"order", {}, 10s};
    type.recovery = sl::recovery_policy::compensate;
    type.compensation_timeout = 5s;
    rt.register_saga_type(type, sl::saga_functions<order>{
        [](std::string_view input) { return order{input.find("\"refuse\":true") != std::string_view::npos}; },
        [](order &, const sl::saga_context &) {
            return sl::action::issue_step(
                R"({"target":"host","command":{"cmd":"reserve"},"compensation":{"command":{"cmd":"release"}}})");
        },
        [](order &o, const sl::saga_context &ctx, const sl::event &ev) {
            if (ev.type == "No") return sl::action::fail("the card was declined");
            if (ev.type != "Ok") return sl::action::wait();
            if (ctx.next_step == 1) {
                sl::step_options options;
                options.compensation_json = R"({"cmd":"refund"})";
                options.timeout = 5s;
                return sl::action::issue("host", R"({"cmd":"charge"})", options);
            }
            if (ctx.next_step == 2) return sl::action::issue("host", o.refuse_last ? R"({"cmd":"ship","refuse":true})" : R"({"cmd":"ship"})");
            return sl::action::done();
        }});
    rt.register_target("host", [&rt](std::uint64_t saga_id, std::uint32_t step, std::string_view command) {
        std::string cmd(command.substr(command.find("\"cmd\":\"") + 7));
        cmd = cmd.substr(0, cmd.find('"'));
        bool fail = false;
        {
            std::lock_guard<std::mutex> lock(mutex);
            sent.push_back(cmd + "#" + std::to_string(step));
            if (cmd == "release" && fail_undo_first) {
                fail_undo_first = false;
                fail = true;
            }
        }
        std::string payload = "{\"step\":" + std::to_string(step) + "}";
        if (fail) {
            rt.step_fail(saga_id, step, "the stock service is down");
        } else {
            rt.publish(command.find("\"refuse\":true") != std::string_view::npos ? "No" : "Ok", saga_id, payload);
        }
    });

    std::mutex stream_mutex;
    std::vector<std::pair<std::uint64_t, std::string>> stream;
    auto lifecycle = rt.subscribe_lifecycle(0, [&](const sl::lifecycle_event &e) {
        std::lock_guard<std::mutex> lock(stream_mutex);
        stream.emplace_back(e.position, std::string(e.type));
    });
    rt.start();

    // Refused at its last step: the two steps before are undone, last first.
    sl::saga_start_options keyed;
    keyed.idempotency_key = "order-7";
    std::uint64_t id = rt.start_saga("order", R"({"refuse":true})", keyed);
    sl::saga_end end = rt.wait_saga(id, 10s);
    EXPECT(end.state == sl::saga_state::compensated);
    EXPECT(end.reason && *end.reason == "the card was declined");
    {
        std::lock_guard<std::mutex> lock(mutex);
        EXPECT((sent == std::vector<std::string>{"reserve#0", "charge#1", "ship#2", "refund#3", "release#4"}));
        sent.clear();
    }
    // The key still names that saga.
    EXPECT(rt.start_saga("order", "{}", keyed) == id);
    EXPECT(rt.log_saga(id).find("\"idempotency_key\":\"order-7\"") != std::string::npos);
    EXPECT_THROWS(SL_ESTATE, rt.retry_compensation(id));

    // A compensation that fails leaves the saga for an operator, who runs it again.
    fail_undo_first = true;
    std::uint64_t stuck = rt.start_saga("order", R"({"refuse":true})");
    EXPECT(rt.wait_saga(stuck, 10s).state == sl::saga_state::failed_compensation);
    rt.retry_compensation(stuck, std::string("the stock service is back"));
    EXPECT(rt.wait_saga(stuck, 10s).state == sl::saga_state::compensated);
    {
        std::lock_guard<std::mutex> lock(mutex);
        EXPECT((sent == std::vector<std::string>{"reserve#0", "charge#1", "ship#2", "refund#3", "release#4", "release#5"}));
    }

    // Every lifecycle event once, in order: 3 for the first saga, 5 for the second (started,
    // compensating, failed_compensation, compensating again, compensated).
    std::uint64_t last = rt.lifecycle_position();
    for (int i = 0; i < 1000; i++) {
        {
            std::lock_guard<std::mutex> lock(stream_mutex);
            if (stream.size() >= last) break;
        }
        std::this_thread::sleep_for(10ms);
    }
    {
        std::lock_guard<std::mutex> lock(stream_mutex);
        EXPECT(stream.size() == last && last == 8);
        for (std::size_t i = 0; i < stream.size(); i++) EXPECT(stream[i].first == i + 1);
        EXPECT(stream[0].second == "SagaStarted" && stream[1].second == "SagaCompensating" && stream[2].second == "SagaFailed");
        EXPECT(stream[6].second == "SagaCompensating" && stream[7].second == "SagaFailed");
    }
    EXPECT(rt.log_lifecycle(0, 100).find("\"position\":8") != std::string::npos);
    lifecycle.reset();
    return 0;
}
