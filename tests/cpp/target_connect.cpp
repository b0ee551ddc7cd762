// runtime::connect_target and runtime::get_target_status: the C++ form of sl_target_connect.
// The test plays the host itself over a plain POSIX socket: it answers the runtime's hello,
// answers two sagas' commands with step.done, goes away while a third saga's command waits,
// comes back and receives it. Bad options and unknown names throw sagalane::error.
#include "check.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

namespace sl = sagalane;
using namespace std::chrono_literals;

namespace {

/** The host's end: a listening socket and the connection the runtime dials. */
class host {
public:
    explicit host(std::string path) : path_(std::move(path)) {
        listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
        EXPECT(listen_fd_ >= 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
        ::unlink(path_.c_str());
        EXPECT(::bind(listen_fd_, reinterpret_cast<sockaddr *>(&address), sizeof address) == 0);
        EXPECT(::listen(listen_fd_, 4) == 0);
    }
    ~host() { stop(); }

    void stop() {
        if (fd_ >= 0) ::close(fd_);
        if (listen_fd_ >= 0) ::close(listen_fd_);
        fd_ = listen_fd_ = -1;
        buffer_.clear();
        ::unlink(path_.c_str());
    }

    /** Accepts the runtime's connection and answers its hello. */
    void accept() {
        pollfd p{listen_fd_, POLLIN, 0};
        EXPECT(::poll(&p, 1, 10000) == 1);
        fd_ = ::accept(listen_fd_, nullptr, nullptr);
        EXPECT(fd_ >= 0);
        std::string hello = line();
        EXPECT(hello.find("\"type\":\"hello\"") != std::string::npos);
        EXPECT(hello.find("\"targets\":[\"host\"]") != std::string::npos);
        send(R"({"type":"welcome","version":1,"server":"c++ host","max_frame":1048576})");
    }

    std::string line() {
        for (;;) {
            auto newline = buffer_.find('\n');
            if (newline != std::string::npos) {
                std::string text = buffer_.substr(0, newline);
                buffer_.erase(0, newline + 1);
                return text;
            }
            pollfd p{fd_, POLLIN, 0};
            EXPECT(::poll(&p, 1, 10000) == 1);
            char chunk[4096];
            ssize_t n = ::read(fd_, chunk, sizeof chunk);
            EXPECT(n > 0);
            buffer_.append(chunk, static_cast<size_t>(n));
        }
    }

    void send(const std::string &text) {
        std::string frame = text + "\n";
        EXPECT(::write(fd_, frame.data(), frame.size()) == static_cast<ssize_t>(frame.size()));
    }

    /** Reads one command and answers it with step.done "Done"; returns the command's "n". */
    long answer() {
        std::string command = line();
        EXPECT(command.find("\"type\":\"command\"") != std::string::npos);
        // Keys are sorted: the command object (which repeats saga_id and step) comes first,
        // so the envelope's are the last ones.
        auto last = [&](const char *key) {
            std::string pattern = std::string("\"") + key + "\":";
            auto at = command.rfind(pattern);
            EXPECT(at != std::string::npos);
            return std::strtol(command.c_str() + at + pattern.size(), nullptr, 10);
        };
        long n = last("n"), saga = last("saga_id"), step = last("step");
        send("{\"type\":\"step.done\",\"saga_id\":" + std::to_string(saga) + ",\"step\":" + std::to_string(step) +
             ",\"event\":\"Done\",\"payload\":{\"n\":" + std::to_string(n) + "}}");
        return n;
    }

private:
    std::string path_;
    int listen_fd_ = -1, fd_ = -1;
    std::string buffer_;
};

struct one_command {
    std::string input;
};

template <class F> void until(F condition) {
    for (int i = 0; i < 2000 && !condition(); ++i) std::this_thread::sleep_for(5ms);
    EXPECT(condition());
}

}  // namespace

int main() {
    char dir[] = "/tmp/sl-cpp-target-XXXXXX";
    EXPECT(::mkdtemp(dir) != nullptr);
    const std::string path = std::string(dir) + "/host.sock";

    sl::runtime rt;
    rt.register_saga_type({"one_command", {}, 10s}, sl::saga_functions<one_command>{
        [](std::string_view input) { return one_command{std::string(input)}; },
        [](one_command &s, const sl::saga_context &) { return sl::action::issue("host", s.input); },
        [](one_command &, const sl::saga_context &, const sl::event &ev) {
            return ev.type == "Done" ? sl::action::done() : sl::action::wait();
        }});

    // Options are checked before anything is registered.
    sl::target_connect_options bad;
    bad.buffer_expiry = 0ms;
    EXPECT_THROWS(SL_EINVAL, rt.connect_target("host", path, bad));
    bad = sl::target_connect_options();
    bad.reconnect_min = 2s;
    bad.reconnect_max = 1s;
    EXPECT_THROWS(SL_EINVAL, rt.connect_target("host", path, bad));
    bad = sl::target_connect_options();
    bad.max_frame = 10;
    EXPECT_THROWS(SL_EINVAL, rt.connect_target("host", path, bad));
    EXPECT_THROWS(SL_EINVAL, rt.connect_target("a:b", path));
    EXPECT_THROWS(SL_EINVAL, rt.connect_target("host", std::string(200, 'x')));
    EXPECT_THROWS(SL_ENOTFOUND, rt.get_target_status("host"));

    host h(path);
    sl::target_connect_options options;
    options.reconnect_min = 10ms;
    options.reconnect_max = 50ms;
    rt.connect_target("host", path, options);
    EXPECT_THROWS(SL_EEXIST, rt.connect_target("host", path, options));
    rt.start();
    h.accept();
    until([&] { return rt.get_target_status("host").connected; });

    // Two sagas answered over the socket.
    auto first = rt.start_saga("one_command", R"({"n":1})");
    auto second = rt.start_saga("one_command", R"({"n":2})");
    EXPECT(h.answer() == 1);
    EXPECT(h.answer() == 2);
    EXPECT(rt.wait_saga(first, 10s).state == sl::saga_state::completed);
    EXPECT(rt.wait_saga(second, 10s).state == sl::saga_state::completed);
    sl::target_status status = rt.get_target_status("host");
    EXPECT(status.sent == 2 && status.awaiting == 0 && status.connections == 1 && status.bad_frames == 0);

    // The host goes away; a command issued meanwhile waits, then reaches it when it is back.
    h.stop();
    until([&] { return !rt.get_target_status("host").connected; });
    auto third = rt.start_saga("one_command", R"({"n":3})");
    until([&] { return rt.get_target_status("host").buffered == 1; });
    host again(path);
    again.accept();
    EXPECT(again.answer() == 3);
    EXPECT(rt.wait_saga(third, 10s).state == sl::saga_state::completed);
    status = rt.get_target_status("host");
    EXPECT(status.connected && status.buffered == 0 && status.sent == 3 && status.connections == 2 && status.expired == 0);

    // A frame the runtime does not take is answered with an error and counted.
    again.send(R"({"type":"saga.start","saga":"one_command"})");
    std::string refusal = again.line();
    EXPECT(refusal.find("\"code\":\"unexpected_type\"") != std::string::npos);
    EXPECT(rt.get_target_status("host").bad_frames == 1);

    rt.close();
    again.stop();
    ::rmdir(dir);
    std::puts("cpp target_connect: ok");
    return 0;
}
