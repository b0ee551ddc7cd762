// lane::submit_batch and lane::submit_async: a batch whose refused jobs say why while the others
// run, each taken job's done called once (and a refused one's never: AddressSanitizer would
// report the job it leaked or freed twice), and non-waiting submits whose queued callback
// comes before their done.
#include "check.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sl = sagalane;
using namespace std::chrono_literals;

namespace {

std::mutex mutex;
std::condition_variable changed;
std::vector<std::string> seen;  // "queued <id>", "done <id>", in order

void note(std::string what) {
    std::lock_guard<std::mutex> lock(mutex);
    seen.push_back(std::move(what));
    changed.notify_all();
}

bool wait_for_count(size_t n) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, 20s, [&] { return seen.size() >= n; });
}

sl::job make_job(const std::string &id) {
    sl::job j;
    j.id = id;
    j.run = [](sl::job_context &) { return std::string("ok"); };
    j.done = [](const sl::job_outcome &o) { note("done " + std::string(o.job_id)); };
    return j;
}

}  // namespace

int main() {
    sl::runtime rt;
    sl::lane_options options;
    options.max_concurrent = 2;
    sl::lane lane = rt.create_lane("work", options);
    rt.start();

    std::vector<sl::job> jobs;
    for (int i = 0; i < 10; i++) jobs.push_back(make_job("b-" + std::to_string(i)));
    jobs.push_back(make_job("b-3"));  // a duplicate id: refused
    std::vector<sl::batch_result> results = lane.submit_batch(std::move(jobs));
    EXPECT(results.size() == 11);
    for (int i = 0; i < 10; i++) EXPECT(results[i].code == 0 && results[i].queued.job_id == "b-" + std::to_string(i));
    EXPECT(results[10].code == SL_EEXIST && results[10].queued.job_id.empty());
    EXPECT(wait_for_count(10));

    std::vector<sl::job> without_run{make_job("x")};
    without_run[0].run = nullptr;
    EXPECT_THROWS(SL_EINVAL, lane.submit_batch(std::move(without_run)));
    EXPECT(lane.submit_batch({}).empty());

    {
        std::lock_guard<std::mutex> lock(mutex);
        seen.clear();
    }
    for (int i = 0; i < 10; i++) {
        std::string id = "a-" + std::to_string(i);
        lane.submit_async(make_job(id), [id](int code, const sl::submission &s) {
            EXPECT(code == 0 && s.job_id == id);
            note("queued " + id);
        });
    }
    lane.submit_async(make_job("b-1"), [](int code, const sl::submission &) { note("refused " + std::to_string(code)); });
    EXPECT(wait_for_count(21));
    std::lock_guard<std::mutex> lock(mutex);
    for (int i = 0; i < 10; i++) {
        std::string id = "a-" + std::to_string(i);
        auto queued = std::find(seen.begin(), seen.end(), "queued " + id);
        auto done = std::find(seen.begin(), seen.end(), "done " + id);
        EXPECT(queued != seen.end() && done != seen.end() && queued < done);
    }
    EXPECT(std::find(seen.begin(), seen.end(), "refused " + std::to_string(SL_EEXIST)) != seen.end());
    return 0;
}
