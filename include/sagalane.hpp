/*
 * sagalane.hpp — a header-only C++17 wrapper over sagalane.h.
 *
 * Errors are exceptions. A failed call throws sagalane::error, carrying the SL_E* code, its
 * name and the runtime's message. Exceptions rather than an expected-style result, because:
 * the runtime is opened in a constructor, which cannot return a result; std::expected is
 * C++23, and a home-made one would be one more type every host must learn; and nearly every
 * failure here (malformed JSON, an unknown name, a closed runtime, a full disk) is one the
 * caller cannot repair where it happens. Outcomes that are ordinary results are returned, not
 * thrown: a job's outcome (job_outcome), healthy().
 *
 * Exceptions never cross into C. Every callback the wrapper gives sagalane catches everything
 * and turns it into what C expects: a saga whose create throws is refused (start_saga then
 * throws SL_EREFUSED with the exception's text), a saga callback that throws fails the saga
 * with the exception's text, a job that throws fails with it (or ends cancelled if it threw
 * job_cancelled), a target that throws refuses the command (failing the saga), a trigger
 * predicate that throws starts nothing. Subscription, done, and saga started and end
 * callbacks have no way to fail: what they throw is written to stderr and dropped.
 *
 * Ownership. Every std::function (and saga factory) lives in a heap object whose pointer is
 * the C userdata. sagalane's release callback deletes it when the runtime closes (or, for a
 * command handler, when another replaces it); a submitted job's is deleted after its done
 * callback; a subscription's by the subscription; a saga start's (on_end, the started
 * callback, start_saga_future's promise) after its last callback, or, for a saga still in
 * flight, at the end of the runtime's close, a future still waiting then getting
 * SL_ECLOSED. When a C call fails sagalane never calls back, and the wrapper deletes the
 * object itself. submit_and_wait keeps its job on the caller's stack: sl_lane_submit_wait
 * returns only after the job's last run. What a callback captures is destroyed on the thread
 * that frees it: the closing thread (or a sagalane thread when the close was called from a
 * callback) for registrations and sagas left in flight, a sagalane thread for jobs and
 * sagas that ended.
 *
 * Threads are as sagalane.h says; each callback's comment below repeats which thread runs
 * it. Callbacks run concurrently with the host's own threads, so what they capture must be
 * safe to share. Destroy a runtime from a host thread, not from one of its own callbacks.
 */
#ifndef SAGALANE_HPP
#define SAGALANE_HPP

#include "sagalane.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sagalane {

/** A failed call. what() reads "<C function>: <name> (<description>): <detail>". */
class error : public std::runtime_error {
public:
    error(int code, const char *call, const char *detail)
        : std::runtime_error(std::string(call) + ": " + sl_err_name(code) + " (" + sl_strerror(code) + ")" +
                             (detail && *detail ? std::string(": ") + detail : std::string())),
          code_(code), detail_(detail ? detail : "") {}
    /** The SL_E* code. */
    int code() const noexcept { return code_; }
    /** The code's name, e.g. "SL_EJSON". */
    const char *name() const noexcept { return sl_err_name(code_); }
    /** sagalane's message for the failure (sl_runtime_errmsg at the time). */
    const char *detail() const noexcept { return detail_.what(); }

private:
    int code_;
    std::runtime_error detail_;  // a string whose copy cannot throw
};

/** Thrown by a job that stopped because job_context::cancelled(): it ends cancelled. */
class job_cancelled : public std::exception {
public:
    const char *what() const noexcept override { return "job cancelled"; }
};

inline std::string_view version() noexcept { return sl_version(); }

/** An event. Its views are borrowed: valid only during the callback that receives it. */
struct event {
    std::string_view type;
    std::uint64_t saga_id;    // the saga it answers; 0: untagged
    std::string_view payload;  // JSON ("null" when there is none)
    std::uint64_t version;    // position in the bus's publication order, from 1
};

/** What a saga knows about itself. Borrowed for the callback. */
struct saga_context {
    std::uint64_t saga_id;
    std::string_view type_name;
    std::uint32_t next_step;  // the index the next issued step will get
};

namespace detail {
struct glue;

inline std::string_view view(const char *text) noexcept { return text ? text : ""; }

inline void check(int rc, sl_runtime *rt, const char *call) {
    if (rc != 0) throw error(rc, call, sl_runtime_errmsg(rt));
}

/** Checks `rc`, then copies and frees the string sagalane handed out (freed either way). */
inline std::string take(int rc, char *text, sl_runtime *rt, const char *call) {
    std::unique_ptr<char, void (*)(void *)> owned(text, sl_free);
    check(rc, rt, call);
    return owned ? std::string(owned.get()) : std::string();
}

/** The text of the exception being handled. Call it only inside a catch block. */
inline const char *current_message() noexcept {
    try {
        throw;
    } catch (const std::exception &e) {
        return e.what();
    } catch (...) {
        return "unknown exception";
    }
}

/** For callbacks that cannot report a failure to sagalane. Call only inside a catch block. */
inline void drop_exception(const char *where) noexcept {
    std::fprintf(stderr, "sagalane: %s threw: %s\n", where, current_message());
}

template <class T> void release(void *userdata) noexcept { delete static_cast<T *>(userdata); }

inline event to_event(const sl_event *e) noexcept {
    return {view(e->type), e->saga_id, view(e->payload_json), e->version};
}
}  // namespace detail

struct step_options;

/** A saga's next action, returned by start and on_event. */
class action {
public:
    /** Sends `command_json` to `target`: "self", "lane:<name>", or a registered target. An
        invalid command (bad JSON, empty target) fails the saga. */
    static action issue(std::string target, std::string command_json) {
        return action(kind::issue, std::move(target), std::move(command_json));
    }
    /** Sends `command_json` to `target` with what the step declares beyond it: a
        compensation, a timeout, retries (see sl_step_options). Invalid options fail the saga. */
    static action issue(std::string target, std::string command_json, const step_options &options);
    /** Sends the step described as JSON, the form declarative sagas use (sl_action_issue_step):
        {"target", "command", "timeout_ms", "idempotent", "retry", "compensation"}. */
    static action issue_step(std::string step_json) { return action(kind::issue_step, {}, std::move(step_json)); }
    /** The saga succeeded. */
    static action done() { return action(kind::done, {}, {}); }
    /** The saga failed for `reason`. */
    static action fail(std::string reason) { return action(kind::fail, {}, std::move(reason)); }
    /** Nothing to do until the next event. */
    static action wait() { return action(kind::wait, {}, {}); }

private:
    friend struct detail::glue;
    enum class kind { wait, issue, issue_ex, issue_step, done, fail };
    action(kind k, std::string target, std::string text) : kind_(k), target_(std::move(target)), text_(std::move(text)) {}
    kind kind_;
    std::string target_, text_;
    std::shared_ptr<const step_options> options_;
};

/** What a step declares beyond its command (sl_step_options). A compensation runs, in reverse
    order of the steps, when the saga fails after this step succeeded; retries need
    `idempotent` (the target recognises a repeat by saga id and step). */
struct step_options {
    std::optional<std::string> compensation_json;   // what undoes the step; nullopt: nothing
    std::optional<std::string> compensation_target; // nullopt: the step's own target
    std::chrono::milliseconds timeout{0};              // each attempt's; 0: the saga's deadline only
    std::chrono::milliseconds compensation_timeout{0}; // 0: the saga type's
    bool idempotent = false;
    int max_attempts = 0;                              // dispatches in all; 0 or 1: no retry
    std::chrono::milliseconds retry_backoff{0};        // first back-off, doubled, with jitter; 0: 100 ms
    std::chrono::milliseconds retry_max_backoff{0};    // 0: 30 s
    int compensation_max_attempts = 0;
};

inline action action::issue(std::string target, std::string command_json, const step_options &options) {
    action a(kind::issue_ex, std::move(target), std::move(command_json));
    a.options_ = std::make_shared<const step_options>(options);
    return a;
}

/** What start-up recovery does with a saga of a type a stopped runtime left unfinished
    (SL_RECOVERY_*; see sagalane.h and the README). */
enum class recovery_policy {
    mark_failed = SL_RECOVERY_MARK_FAILED,  // failed_compensation, for an operator
    compensate = SL_RECOVERY_COMPENSATE,    // undo the succeeded steps, last first
    resume = SL_RECOVERY_RESUME             // replay, then dispatch the pending step again
};

/** A saga type defined by a class: derive from it, and register the class with
    runtime::register_saga_type<T>(), T being constructible from the input JSON. A saga is
    destroyed once it ended, or at close if still in flight: on the loop thread (or the
    closing thread). */
class saga {
public:
    virtual ~saga() = default;
    /** The first action, called just before the saga's running row is written (the step it
        issues shares that commit, and is dispatched once it is durable). Loop thread. */
    virtual action start(const saga_context &ctx) = 0;
    /** The next action after `ev`: the echoes of its commands (events tagged with its id) and
        untagged events whose type is in the type's interests. Loop thread. */
    virtual action on_event(const saga_context &ctx, const event &ev) = 0;
    // The log stores every saga's input as given (recovery rebuilds sagas from it): keep
    // secrets out of inputs.
};

/** Builds a saga from its input JSON ("null" when none); throw, or return null, to refuse
    it. Runs on the thread that starts the saga (the caller of start_saga, or the loop thread
    for a trigger), possibly concurrently with other callbacks of the same type. */
using saga_factory = std::function<std::unique_ptr<saga>(std::string_view input_json)>;

/** A saga type defined by functions over a State value, which create builds from the input
    (an empty create default-constructs it). Threads as for saga and saga_factory. */
template <class State> struct saga_functions {
    std::function<State(std::string_view input_json)> create;
    std::function<action(State &, const saga_context &)> start;
    std::function<action(State &, const saga_context &, const event &)> on_event;
};

/** A saga type's name and settings. */
struct saga_type {
    std::string name;                    // unique; stored in the log
    std::vector<std::string> interests;  // untagged event types these sagas want
    std::chrono::milliseconds timeout{0};  // how long a saga may run; 0 means 5000
    recovery_policy recovery = recovery_policy::mark_failed;
    /** How long a compensation waits for its answer unless its step says; 0 means 30000. */
    std::chrono::milliseconds compensation_timeout{0};
};

/** A running job's view of itself. Valid only while the job function runs. */
class job_context {
public:
    explicit job_context(sl_job_ctx *ctx) noexcept : ctx_(ctx) {}
    std::string_view id() const noexcept { return detail::view(sl_job_id(ctx_)); }
    /** 1 for the first run, 2 for the first retry, ... */
    int attempt() const noexcept { return sl_job_attempt(ctx_); }
    /** True once the lane shuts down or a waiter gave up: stop early (throw job_cancelled). */
    bool cancelled() const noexcept { return sl_job_cancelled(ctx_) != 0; }
    /** The job's metadata; for a command handler, the command JSON. */
    std::string_view metadata() const noexcept {
        size_t length = 0;
        const void *bytes = sl_job_metadata(ctx_, &length);
        return bytes ? std::string_view(static_cast<const char *>(bytes), length) : std::string_view();
    }

private:
    sl_job_ctx *ctx_;
};

/** A job's work: returns its result text, or throws to fail (job_cancelled: cancelled). Runs
    on one of the lane's worker threads, never the loop thread; it may block. */
using job_fn = std::function<std::string(job_context &)>;

enum class job_state { finished = SL_JOB_FINISHED, failed = SL_JOB_FAILED, cancelled = SL_JOB_CANCELLED };

/** How a job ended. Borrowed for the callback. */
struct job_outcome {
    std::string_view job_id;
    job_state state;
    std::string_view text;  // the result (finished) or the error (failed); "" when cancelled
    int attempts;           // runs made
};

/** A job to submit. */
struct job {
    job_fn run;  // required
    /** Called once per accepted job, once its terminal row is durable (persisted lanes), on a
        sagalane thread (a worker, the log writer, or the loop). Must return quickly. Not used
        by submit_and_wait. */
    std::function<void(const job_outcome &)> done;
    std::string id;        // unique in the lane (and the log); empty: generated
    std::string caller;    // who submitted it, for operators
    int priority = 0;      // higher first; FIFO within a priority
    std::string metadata;  // opaque bytes kept in the log to rebuild the job on restart
    int max_attempts = 1;  // runs in all, for a job safe to run again
    std::chrono::milliseconds retry_backoff{0};  // first back-off, doubled each time; 0 means 100
};

/** Where a submitted job stands. */
struct submission {
    int position;  // jobs ahead of it
    std::chrono::milliseconds estimated_wait;
    std::string job_id;
};

/** One job's result in lane::submit_batch: `code` 0 (taken; `queued` says where it stands) or
    the SL_E* code that refused it. */
struct batch_result {
    int code;
    submission queued;
};

/** A queued job's row found in the log at lane creation. Borrowed for the call. */
struct job_record {
    std::string_view job_id, caller;
    int priority;
    std::string_view metadata;
    int attempts;
};

struct lane_options {
    int max_concurrent = 1;  // jobs running at once
    /** Every job's rows go to the log, the queued row durable before the job can run. */
    bool persisted = true;
    /** Persisted lanes: rebuilds a job left queued by a previous process (its id is the
        record's); nullopt, or a throw, marks it failed. Empty: every such job is marked
        failed. Called during create_lane, on a sagalane thread, before it returns. */
    std::function<std::optional<job>(const job_record &)> reconstruct;
};

/** One event of the log's lifecycle stream (sl_lifecycle_event). Borrowed for the callback. */
struct lifecycle_event {
    std::uint64_t position;  // one more than the event before it; store it to resume after it
    std::uint64_t saga_id;
    std::string_view type;   // "SagaStarted", "SagaCompensating", "SagaResumed", ...
    std::string_view payload_json;
    std::int64_t at_ms;      // when its transaction committed, ms since the epoch
};

/** A saga's state, as the log and the end of a saga report it (SL_SAGA_*). */
enum class saga_state {
    running = SL_SAGA_RUNNING,            // unfinished: start-up recovery acts on these
    compensating = SL_SAGA_COMPENSATING,  // unfinished
    completed = SL_SAGA_COMPLETED,        // final: succeeded
    failed = SL_SAGA_FAILED,              // final: failed with nothing left to compensate
    failed_compensation = SL_SAGA_FAILED_COMPENSATION,  // final, but needs an operator
    compensated = SL_SAGA_COMPENSATED     // final: undone
};

/** The state's name as the log's JSON writes it: "running", ..., "failed_compensation". */
inline std::string_view to_string(saga_state state) noexcept {
    switch (state) {
    case saga_state::running: return "running";
    case saga_state::compensating: return "compensating";
    case saga_state::completed: return "completed";
    case saga_state::failed: return "failed";
    case saga_state::failed_compensation: return "failed_compensation";
    case saga_state::compensated: return "compensated";
    }
    return "unknown";
}

/** How a saga ended. */
struct saga_end {
    std::uint64_t saga_id = 0;
    saga_state state = saga_state::running;  // a final state
    std::optional<std::string> reason;       // why it failed; nullopt when it completed
    /** Whether the log holds this end. False from an end callback when the terminal row
        could not be written (the runtime is then unhealthy). wait_saga cannot tell for one
        saga: it says true while the runtime is healthy (a row that could not be written
        makes it unhealthy before any waiter hears of the end), false once it is not. */
    bool durable = true;
};

/** A timeout that never runs out (wait_saga, saga_start_options::room_timeout). */
inline constexpr std::chrono::milliseconds forever = std::chrono::milliseconds::max();

/** How to start a saga (start_saga, start_saga_future, start_saga_async). */
struct saga_start_options {
    /** How long to wait for room when too many sagas (1024) wait for their running rows:
        0 throws SL_EAGAIN at once; `forever` waits as long as it takes; a negative value is
        0. Only 0 is allowed on the loop thread (in a callback). */
    std::chrono::milliseconds room_timeout{0};
    /** Called once the saga ended, on the loop thread: it must return quickly, and what it
        throws is written to stderr and dropped. Never called for a saga that did not start,
        nor for one still in flight when the runtime closes. */
    std::function<void(const saga_end &)> on_end;
    /** While a saga row holding this key exists (also from an earlier run, until a vacuum),
        the start starts nothing and answers that saga's id (and its end). */
    std::optional<std::string> idempotency_key;
};

/** A saga start_saga_future started, and its end to come. */
struct started_saga {
    std::uint64_t id = 0;
    /** Ready once the saga ended. If the runtime closes first, get() throws
        sagalane::error SL_ECLOSED (the saga stays running in the log for the next start's
        recovery). The saga does not wait for this future: dropping it is fine. */
    std::future<saga_end> end;
};

/** What start_saga_async calls once the saga's running row is durable (failure null, with
    its id), or once it could not start (failure set, id 0). Loop thread; must return
    quickly; what it throws is written to stderr and dropped. */
using saga_started_fn = std::function<void(const error *failure, std::uint64_t saga_id)>;

struct lane_stats {
    int queued, running, max_concurrent;
    std::uint64_t completed, failed, cancelled;
    double mean_run_ms;  // over the last 64 runs
};

/** How a pipe target buffers and dials (sl_target_connect_options). Every duration and size must
    be positive and fit 32 bits (sagalane.h's 0-means-default is not carried over: a zero here
    throws SL_EINVAL rather than silently meaning 30 s). */
struct target_connect_options {
    /** How long a command waits for a connection before its saga fails "host unreachable". */
    std::chrono::milliseconds buffer_expiry{30000};
    /** Commands that may wait at once; past that a new one fails its saga at once. */
    std::uint32_t max_buffered = 65536;
    /** The wait after a failed attempt, doubled (with jitter) up to reconnect_max. */
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{5000};
    /** The largest frame either way, in bytes (at least 64). */
    std::uint32_t max_frame = 1u << 20;
    /** Bytes queued for the host past which commands wait instead. */
    std::uint32_t max_queued_bytes = 8u << 20;
};

/** What a pipe target has done so far (sl_target_status). */
struct target_status {
    bool connected = false;         // a handshaken connection takes its commands now
    std::uint64_t buffered = 0;     // commands waiting for a connection
    std::uint64_t awaiting = 0;     // sent and not yet answered
    std::uint64_t sent = 0;         // written to a connection
    std::uint64_t expired = 0;      // whose wait ran out (their sagas failed "host unreachable")
    std::uint64_t purged = 0;       // waiting ones dropped because their saga ended first
    std::uint64_t connections = 0;  // connections made
    std::uint64_t bad_frames = 0;   // frames from the host answered with an error
};

namespace detail {
/** Every trampoline: C calls these with the userdata the wrapper gave it. */
struct glue {
    struct saga_box {
        std::unique_ptr<saga> instance;
    };
    using reconstruct_fn = std::function<std::optional<job>(const job_record &)>;

    static void apply(const action &a, sl_action *out) noexcept {
        switch (a.kind_) {
        case action::kind::issue: sl_action_issue(out, a.target_.c_str(), a.text_.c_str()); break;
        case action::kind::issue_step: sl_action_issue_step(out, a.text_.c_str()); break;
        case action::kind::issue_ex: {
            const step_options &o = *a.options_;
            sl_step_options c;
            sl_step_options_init(&c);
            c.compensation_json = o.compensation_json ? o.compensation_json->c_str() : nullptr;
            c.compensation_target = o.compensation_target ? o.compensation_target->c_str() : nullptr;
            c.timeout_ms = ms32(o.timeout);
            c.compensation_timeout_ms = ms32(o.compensation_timeout);
            c.idempotent = o.idempotent ? 1 : 0;
            c.max_attempts = o.max_attempts;
            c.retry_backoff_ms = ms32(o.retry_backoff);
            c.retry_max_backoff_ms = ms32(o.retry_max_backoff);
            c.compensation_max_attempts = o.compensation_max_attempts;
            sl_action_issue_ex(out, a.target_.c_str(), a.text_.c_str(), &c);
            break;
        }
        case action::kind::done: sl_action_done(out); break;
        case action::kind::fail: sl_action_fail(out, a.text_.c_str()); break;
        case action::kind::wait: break;
        }
    }

    static uint32_t ms32(std::chrono::milliseconds d) noexcept {
        return static_cast<uint32_t>(std::clamp<std::chrono::milliseconds::rep>(d.count(), 0, UINT32_MAX));
    }

    static void deliver_lifecycle(void *userdata, const sl_lifecycle_event *e) noexcept {
        try {
            (*static_cast<std::function<void(const lifecycle_event &)> *>(userdata))(
                lifecycle_event{e->position, e->saga_id, view(e->type), view(e->payload_json), e->at_ms});
        } catch (...) {
            drop_exception("a lifecycle subscriber");
        }
    }

    static saga_context context(const sl_saga_ctx *c) noexcept { return {c->saga_id, view(c->type_name), c->next_step}; }

    // The thread's last refusal by a saga factory, so start_saga can say why.
    static std::string &refusal() {
        thread_local std::string text;
        return text;
    }

    static int create(void *userdata, const char *input, void **state) noexcept {
        try {
            auto box = std::make_unique<saga_box>();
            box->instance = (*static_cast<saga_factory *>(userdata))(view(input));
            if (!box->instance) throw std::runtime_error("the factory returned no saga");
            *state = box.release();
            return 0;
        } catch (...) {
            try {
                refusal() = current_message();
            } catch (...) {
            }
            return SL_EREFUSED;
        }
    }
    static void destroy(void *, void *state) noexcept { delete static_cast<saga_box *>(state); }
    static void start(void *, void *state, const sl_saga_ctx *ctx, sl_action *out) noexcept {
        try {
            apply(static_cast<saga_box *>(state)->instance->start(context(ctx)), out);
        } catch (...) {
            sl_action_fail(out, current_message());
        }
    }
    static void on_event(void *, void *state, const sl_saga_ctx *ctx, const sl_event *e, sl_action *out) noexcept {
        try {
            apply(static_cast<saga_box *>(state)->instance->on_event(context(ctx), to_event(e)), out);
        } catch (...) {
            sl_action_fail(out, current_message());
        }
    }

    static int predicate(void *userdata, const char *payload) noexcept {
        try {
            return (*static_cast<std::function<bool(std::string_view)> *>(userdata))(view(payload)) ? 1 : 0;
        } catch (...) {
            drop_exception("a trigger predicate");
            return 0;
        }
    }

    using target_fn = std::function<void(std::uint64_t, std::uint32_t, std::string_view)>;
    static int target(void *userdata, uint64_t saga_id, uint32_t step, const char *command) noexcept {
        try {
            (*static_cast<target_fn *>(userdata))(saga_id, step, view(command));
            return 0;
        } catch (const error &e) {
            return e.code();
        } catch (...) {
            return SL_EREFUSED;
        }
    }

    static void deliver(void *userdata, const sl_event *e) noexcept {
        try {
            (*static_cast<std::function<void(const event &)> *>(userdata))(to_event(e));
        } catch (...) {
            drop_exception("a subscription callback");
        }
    }

    static int run(const job_fn &fn, sl_job_ctx *ctx) noexcept {
        try {
            job_context context(ctx);
            std::string result = fn(context);
            return sl_job_set_result(ctx, result.c_str());
        } catch (const job_cancelled &) {
            return SL_ECANCELED;
        } catch (...) {
            sl_job_set_result(ctx, current_message());
            return SL_EJOBFAILED;
        }
    }
    static int run_job(void *userdata, sl_job_ctx *ctx) noexcept { return run(static_cast<job *>(userdata)->run, ctx); }
    static int run_handler(void *userdata, sl_job_ctx *ctx) noexcept { return run(*static_cast<job_fn *>(userdata), ctx); }

    static void job_done(void *userdata, const sl_job_outcome *o) noexcept {
        std::unique_ptr<job> owned(static_cast<job *>(userdata));
        if (!owned->done) return;
        try {
            owned->done({view(o->job_id), static_cast<job_state>(o->state), view(o->text), o->attempts});
        } catch (...) {
            drop_exception("a job's done callback");
        }
    }

    /** Fills `c` (already initialized) from `j`, whose strings must outlive the C call. */
    static void fill(sl_job &c, job &j) noexcept {
        c.id = j.id.empty() ? nullptr : j.id.c_str();
        c.caller = j.caller.empty() ? nullptr : j.caller.c_str();
        c.priority = j.priority;
        c.metadata = j.metadata.data();
        c.metadata_length = j.metadata.size();
        c.run = run_job;
        c.userdata = &j;
        c.max_attempts = std::max(0, j.max_attempts);
        c.retry_backoff_ms = static_cast<uint32_t>(std::clamp<std::chrono::milliseconds::rep>(j.retry_backoff.count(), 0, UINT32_MAX));
    }

    static int reconstruct(void *userdata, const sl_job_record *r, sl_job *out) noexcept {
        try {
            std::optional<job> rebuilt = (*static_cast<reconstruct_fn *>(userdata))(
                {view(r->job_id), view(r->caller),
                 r->priority,
                 std::string_view(static_cast<const char *>(r->metadata), r->metadata ? r->metadata_length : 0),
                 r->attempts});
            if (!rebuilt || !rebuilt->run) return SL_EREFUSED;
            auto owned = std::make_unique<job>(std::move(*rebuilt));
            fill(*out, *owned);
            out->done = job_done;
            owned.release();
            return 0;
        } catch (...) {
            drop_exception("a lane's reconstruct callback");
            return SL_EREFUSED;
        }
    }
};

/** A non-waiting submit's `queued` callback, and the job it owns until `done` takes it. */
struct async_submit {
    job *owned = nullptr;
    std::function<void(int, const submission &)> queued;

    static void call(void *userdata, int rc, const sl_submission *s) noexcept {
        std::unique_ptr<async_submit> box(static_cast<async_submit *>(userdata));
        // Refused, or a duplicate: `done` never comes to free the job.
        if (rc != 0 || s->duplicate) delete box->owned;
        if (!box->queued) return;
        try {
            submission where{};
            if (rc == 0) where = {s->position, std::chrono::milliseconds(s->estimated_wait_ms), s->job_id};
            box->queued(rc, where);
        } catch (...) {
            drop_exception("a job's queued callback");
        }
    }
};

/** Whether the runtime closed, for subscriptions that outlive it. */
struct runtime_life {
    std::mutex mutex;
    bool closed = false;
};

/**
 * The callbacks of one saga start (sl_saga_start_ex). Its C userdata is a serial number,
 * not its address, found in a registry that outlives every runtime: sagalane gives nothing
 * back for a saga still in flight when the runtime closes (no end, no release), so the
 * runtime's close sweeps what is left of its own; a serial is never reused, so a release
 * arriving after that sweep finds nothing instead of a freed box.
 */
struct start_box {
    std::uint64_t owner = 0;  // the runtime's serial
    saga_started_fn on_started;
    std::function<void(const saga_end &)> on_end;
    std::optional<std::promise<saga_end>> end;  // start_saga_future's
    bool settled = false;                       // `end` has a value or an exception

    /** The box is going: a future still waiting hears that the runtime closed. */
    void finish() noexcept {
        if (end && !settled) {
            try {
                end->set_exception(std::make_exception_ptr(
                    error(SL_ECLOSED, "sl_saga_start_ex", "the runtime closed before the saga ended")));
            } catch (...) {
            }
        }
    }
};

class start_registry {
public:
    static start_registry &get() {
        // Never destroyed: a sagalane thread may still call back while the process exits.
        static start_registry *registry = new start_registry;
        return *registry;
    }

    std::uint64_t serial() {
        std::lock_guard<std::mutex> lock(mutex_);
        return next_++;
    }

    /** Files `box` and returns its C userdata. */
    void *add(std::unique_ptr<start_box> box) {
        std::lock_guard<std::mutex> lock(mutex_);
        std::uint64_t key = next_++;
        boxes_.emplace(key, std::move(box));
        return reinterpret_cast<void *>(static_cast<std::uintptr_t>(key));
    }

    /** The box filed under `userdata`, or null. It stays alive until take() or sweep(). */
    start_box *find(void *userdata) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = boxes_.find(reinterpret_cast<std::uintptr_t>(userdata));
        return it == boxes_.end() ? nullptr : it->second.get();
    }

    std::unique_ptr<start_box> take(void *userdata) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = boxes_.find(reinterpret_cast<std::uintptr_t>(userdata));
        if (it == boxes_.end()) return nullptr;
        std::unique_ptr<start_box> box = std::move(it->second);
        boxes_.erase(it);
        return box;
    }

    /** Takes every box of runtime `owner`. */
    std::vector<std::unique_ptr<start_box>> sweep(std::uint64_t owner) {
        std::vector<std::unique_ptr<start_box>> left;
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = boxes_.begin(); it != boxes_.end();) {
            if (it->second->owner == owner) {
                left.push_back(std::move(it->second));
                it = boxes_.erase(it);
            } else {
                ++it;
            }
        }
        return left;
    }

private:
    std::mutex mutex_;
    std::uintptr_t next_ = 1;
    std::unordered_map<std::uintptr_t, std::unique_ptr<start_box>> boxes_;
};

/** The C side of start_box. */
struct start_glue {
    static void started(void *userdata, int rc, uint64_t saga_id) noexcept {
        start_box *box = start_registry::get().find(userdata);
        if (!box) return;
        std::optional<error> failure;
        if (rc != 0) {
            try {
                failure.emplace(rc, "sl_saga_start_ex", "the saga was accepted but did not start");
            } catch (...) {
            }
            if (box->end && !box->settled) {
                box->settled = true;
                try {
                    box->end->set_exception(std::make_exception_ptr(*failure));
                } catch (...) {
                }
            }
        }
        if (!box->on_started) return;
        try {
            box->on_started(failure ? &*failure : nullptr, rc == 0 ? saga_id : 0);
        } catch (...) {
            drop_exception("a saga's started callback");
        }
    }

    static void ended(void *userdata, const sl_saga_end *c) noexcept {
        start_box *box = start_registry::get().find(userdata);
        if (!box) return;
        try {
            saga_end end;
            end.saga_id = c->saga_id;
            end.state = static_cast<saga_state>(c->state);
            if (c->reason) end.reason = std::string(c->reason);
            end.durable = c->durable != 0;
            if (box->on_end) {
                try {
                    box->on_end(end);
                } catch (...) {
                    drop_exception("a saga's end callback");
                }
            }
            if (box->end && !box->settled) {
                box->settled = true;
                box->end->set_value(std::move(end));
            }
        } catch (...) {
            drop_exception("a saga's end callback");
        }
    }

    static void release(void *userdata) noexcept {
        if (std::unique_ptr<start_box> box = start_registry::get().take(userdata)) box->finish();
    }

    /** The sweeper's target takes no commands. */
    static int refuse(void *, uint64_t, uint32_t, const char *) noexcept { return SL_EREFUSED; }

    /** The runtime's close is over: nothing it still holds will be called back. */
    static void sweep(void *userdata) noexcept {
        for (std::unique_ptr<start_box> &box :
             start_registry::get().sweep(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(userdata))))
            box->finish();
    }
};

/** sl_saga_*'s timeouts in ms: `forever` (and anything past INT_MAX ms) is -1, negatives 0. */
inline int timeout_ms(std::chrono::milliseconds timeout) noexcept {
    if (timeout.count() >= std::numeric_limits<int>::max()) return -1;
    return timeout.count() <= 0 ? 0 : static_cast<int>(timeout.count());
}
}  // namespace detail

/** A subscription (runtime::subscribe, runtime::subscribe_lifecycle): unsubscribes when
    destroyed. Destroy it before or after its runtime, from any thread but its own callback's. */
template <class Event>
class basic_subscription {
public:
    basic_subscription() = default;
    basic_subscription(basic_subscription &&other) noexcept { swap(other); }
    basic_subscription &operator=(basic_subscription &&other) noexcept {
        basic_subscription(std::move(other)).swap(*this);
        return *this;
    }
    ~basic_subscription() { reset(); }

    /** Ends the subscription now. Once it returns, the callback is never called again. */
    void reset() noexcept {
        if (!fn_) return;
        {
            std::lock_guard<std::mutex> lock(life_->mutex);
            // A closed runtime already ended it, and sl_unsubscribe is not allowed then.
            if (!life_->closed) sl_unsubscribe(sub_);
        }
        delete fn_;
        fn_ = nullptr;
        sub_ = nullptr;
        life_.reset();
    }

private:
    friend class runtime;
    void swap(basic_subscription &other) noexcept {
        std::swap(sub_, other.sub_);
        std::swap(fn_, other.fn_);
        std::swap(life_, other.life_);
    }
    sl_subscription *sub_ = nullptr;
    std::function<void(const Event &)> *fn_ = nullptr;
    std::shared_ptr<detail::runtime_life> life_;
};

/** A subscription to the event bus (runtime::subscribe). */
using subscription = basic_subscription<event>;
/** A subscription to the durable lifecycle stream (runtime::subscribe_lifecycle). */
using lifecycle_subscription = basic_subscription<lifecycle_event>;

/** A lane of the runtime's pool: a view, valid while the runtime is open. */
class lane {
public:
    lane() = default;
    sl_lane *handle() const noexcept { return lane_; }

    /** Submits a job; for a persisted lane, returns once the queued row is durable. On
        success `j.done` is called exactly once; on failure (an exception) never. */
    submission submit(job j) const {
        if (!j.run) throw error(SL_EINVAL, "sl_lane_submit", "job.run is empty");
        auto owned = std::make_unique<job>(std::move(j));
        sl_job c;
        sl_job_init(&c);
        detail::glue::fill(c, *owned);
        c.done = detail::glue::job_done;
        sl_submission out{};
        out.size = sizeof out;
        detail::check(sl_lane_submit(lane_, &c, &out), rt_, "sl_lane_submit");
        if (!out.duplicate) owned.release();  // job_done deletes it, maybe already has
        return {out.position, std::chrono::milliseconds(out.estimated_wait_ms), detail::take(0, out.job_id, rt_, "")};
    }

    /** Submits `jobs` in one call: for a persisted lane, the queued rows of the jobs taken go
        to the log in one group commit, and it returns once each is durable or refused (see
        sl_lane_submit_batch). Each result, in order: `code` 0 and where the job stands, or the
        SL_E* code that refused it. A taken job's `done` is called exactly once (but for a
        duplicate); a refused one's never. Throws only for a job without `run` (nothing is
        submitted then). */
    std::vector<batch_result> submit_batch(std::vector<job> jobs) const {
        std::vector<std::unique_ptr<job>> owned;
        std::vector<sl_job> c(jobs.size());
        std::vector<sl_submission> out(jobs.size());
        std::vector<const sl_job *> pointers;
        std::vector<sl_submission *> outs;
        for (size_t i = 0; i < jobs.size(); i++) {
            if (!jobs[i].run) throw error(SL_EINVAL, "sl_lane_submit_batch", ("jobs[" + std::to_string(i) + "].run is empty").c_str());
            owned.push_back(std::make_unique<job>(std::move(jobs[i])));
            sl_job_init(&c[i]);
            detail::glue::fill(c[i], *owned[i]);
            c[i].done = detail::glue::job_done;
            out[i].size = sizeof out[i];
            pointers.push_back(&c[i]);
            outs.push_back(&out[i]);
        }
        std::vector<int> codes(jobs.size(), 0);
        int rc = sl_lane_submit_batch(lane_, pointers.data(), pointers.size(), codes.data(), outs.data());
        if (rc == SL_EINVAL && std::all_of(codes.begin(), codes.end(), [](int code) { return code == 0; })) {
            detail::check(rc, rt_, "sl_lane_submit_batch");  // the arguments themselves: nothing taken
        }
        std::vector<batch_result> results;
        for (size_t i = 0; i < jobs.size(); i++) {
            if (codes[i] == 0 && !out[i].duplicate) owned[i].release();  // job_done deletes it
            std::string id = detail::take(0, codes[i] == 0 ? out[i].job_id : nullptr, rt_, "");
            results.push_back({codes[i], {out[i].position, std::chrono::milliseconds(out[i].estimated_wait_ms), std::move(id)}});
        }
        return results;
    }

    /** Submits a job and returns at once (see sl_lane_submit_async): `queued` is called once,
        on the callback thread, with 0 and where the job stands once its queued row is durable,
        or with the code that refused it (then `j.done` is never called); `j.done` comes after
        it. Throws for a job refused at once (no `run`, a closed runtime). */
    void submit_async(job j, std::function<void(int code, const submission &)> queued) const {
        if (!j.run) throw error(SL_EINVAL, "sl_lane_submit_async", "job.run is empty");
        auto box = std::make_unique<detail::async_submit>();
        box->owned = new job(std::move(j));
        box->queued = std::move(queued);
        sl_job c;
        sl_job_init(&c);
        detail::glue::fill(c, *box->owned);
        c.done = detail::glue::job_done;
        int rc = sl_lane_submit_async(lane_, &c, detail::async_submit::call, box.get());
        if (rc != 0) delete box->owned;
        detail::check(rc, rt_, "sl_lane_submit_async");
        box.release();  // async_submit::call deletes it
    }

    /** Submits a job and blocks until it ends (`j.done` is not used): returns its result, or
        throws SL_EJOBFAILED (detail: its error), SL_ECANCELED, or SL_ESTATE (on the loop
        thread or in a job). */
    std::string submit_and_wait(job j) const {
        if (!j.run) throw error(SL_EINVAL, "sl_lane_submit_wait", "job.run is empty");
        sl_job c;
        sl_job_init(&c);
        detail::glue::fill(c, j);
        char *text = nullptr;
        int rc = sl_lane_submit_wait(lane_, &c, &text);
        return detail::take(rc, text, rt_, "sl_lane_submit_wait");
    }

    /** Cancels a queued job: it never runs and ends cancelled. Throws SL_ENOTQUEUED (running,
        or between retries), SL_ENOTFOUND. */
    void cancel(const std::string &job_id) const {
        detail::check(sl_lane_cancel(lane_, job_id.c_str()), rt_, "sl_lane_cancel");
    }

    /** Gives up on a job: cancels it if queued, else raises its cancelled() flag. */
    void interrupt(const std::string &job_id) const {
        detail::check(sl_lane_interrupt(lane_, job_id.c_str()), rt_, "sl_lane_interrupt");
    }

    /** How many jobs may run at once (at least 1). */
    void set_max_concurrent(int n) const {
        detail::check(sl_lane_set_max_concurrent(lane_, n), rt_, "sl_lane_set_max_concurrent");
    }

    lane_stats stats() const {
        sl_lane_stats s{};
        s.size = sizeof s;
        detail::check(sl_lane_get_stats(lane_, &s), rt_, "sl_lane_get_stats");
        return {s.queued, s.running, s.max_concurrent, s.completed, s.failed, s.cancelled, s.mean_run_ms};
    }

    /** Lets sagas send commands to "lane:<name>": each becomes a job run by `fn` (on a worker
        thread) with the command JSON as its metadata; its outcome is published as
        LaneJobFinished / LaneJobFailed / LaneJobCancelled tagged with the saga. Replaces (and
        frees) the previous handler. */
    void set_command_handler(job_fn fn) const {
        auto owned = std::make_unique<job_fn>(std::move(fn));
        detail::check(sl_lane_set_command_handler(lane_, detail::glue::run_handler, owned.get(), detail::release<job_fn>),
                      rt_, "sl_lane_set_command_handler");
        owned.release();
    }

private:
    friend class runtime;
    lane(sl_lane *l, sl_runtime *rt) noexcept : lane_(l), rt_(rt) {}
    sl_lane *lane_ = nullptr;
    sl_runtime *rt_ = nullptr;
};

enum class durability_mode { full = SL_DURABILITY_FULL, normal = SL_DURABILITY_NORMAL };
enum class loop_mode { thread = SL_LOOP_THREAD, host = SL_LOOP_HOST };
enum class clock_mode { system = SL_CLOCK_SYSTEM, manual = SL_CLOCK_MANUAL };
enum class run_mode { until_stopped = SL_RUN_DEFAULT, once = SL_RUN_ONCE, nowait = SL_RUN_NOWAIT };

struct runtime_options {
    std::string db_path;  // the log's SQLite file, created if missing; empty: in memory
    durability_mode durability = durability_mode::full;
    std::chrono::milliseconds busy_timeout{5000};  // how long to wait for a locked database
    loop_mode loop = loop_mode::thread;
    clock_mode clock = clock_mode::system;
    bool read_only = false;  // diagnostics only: the log_* reads
};

/** A runtime: opened by the constructor, closed by the destructor (or close()). */
class runtime {
public:
    /** Opens the runtime (its loop not yet running, its log created and migrated). Register
        saga types, triggers and targets next, then call start(). */
    explicit runtime(const runtime_options &options = runtime_options()) : life_(std::make_shared<detail::runtime_life>()) {
        sl_runtime_options c;
        sl_runtime_options_init(&c);
        c.db_path = options.db_path.empty() ? nullptr : options.db_path.c_str();
        c.durability = static_cast<int>(options.durability);
        c.busy_timeout_ms = static_cast<int>(options.busy_timeout.count());
        c.loop_mode = static_cast<int>(options.loop);
        c.clock = static_cast<int>(options.clock);
        c.read_only = options.read_only ? 1 : 0;
        sl_runtime *raw = nullptr;
        int rc = sl_runtime_open(&c, &raw);
        std::unique_ptr<sl_runtime, void (*)(sl_runtime *)> handle(raw, sl_runtime_close);  // closed even if the open failed
        detail::check(rc, raw, "sl_runtime_open");
        // Its release runs once the close is over, and frees what sagalane still holds of the
        // saga starts (see detail::start_box).
        owner_ = detail::start_registry::get().serial();
        detail::check(sl_target_register(raw, "sagalane-cpp.runtime", detail::start_glue::refuse,
                                         reinterpret_cast<void *>(static_cast<std::uintptr_t>(owner_)),
                                         detail::start_glue::sweep),
                      raw, "sl_target_register");
        rt_ = handle.release();
    }
    runtime(runtime &&other) noexcept
        : rt_(std::exchange(other.rt_, nullptr)), life_(std::move(other.life_)), owner_(other.owner_) {}
    runtime &operator=(runtime &&other) noexcept {
        if (this != &other) {
            close();
            rt_ = std::exchange(other.rt_, nullptr);
            life_ = std::move(other.life_);
            owner_ = other.owner_;
        }
        return *this;
    }
    ~runtime() { close(); }

    /** Closes the runtime: ends subscriptions, shuts lanes down (queued jobs end cancelled,
        running ones are waited for), frees every callback given to it. Sagas in flight stay
        running in the log for the next start's recovery. Lanes are invalid afterwards. */
    void close() noexcept {
        if (!rt_) return;
        // Held during the close, so that a subscription destroyed meanwhile waits for it.
        std::lock_guard<std::mutex> lock(life_->mutex);
        life_->closed = true;
        sl_runtime_close(std::exchange(rt_, nullptr));
    }

    sl_runtime *handle() const noexcept { return rt_; }

    /** Seeds saga ids, runs start-up recovery, then takes events. loop_mode::host: the calling
        thread becomes the loop thread and must call run(). */
    void start() { detail::check(sl_runtime_start(rt_), rt_, "sl_runtime_start"); }
    /** loop_mode::host only: runs the loop on the thread that called start(). */
    void run(run_mode mode = run_mode::until_stopped) {
        detail::check(sl_runtime_run(rt_, static_cast<int>(mode)), rt_, "sl_runtime_run");
    }
    /** loop_mode::host: makes run(run_mode::until_stopped) return soon. Any thread. */
    void stop() { detail::check(sl_runtime_stop(rt_), rt_, "sl_runtime_stop"); }
    /** loop_mode::host: the loop's epoll descriptor, to poll in the host's own loop. */
    int backend_fd() const { return value(sl_runtime_backend_fd(rt_), "sl_runtime_backend_fd"); }
    /** loop_mode::host: how long the host's poll may sleep, in ms; -1: no timer pending. */
    int backend_timeout() const {
        int ms = sl_runtime_backend_timeout(rt_);
        return ms == -1 ? -1 : value(ms, "sl_runtime_backend_timeout");
    }
    /** clock_mode::manual: moves time forward, firing every timer that falls due, and returns
        once they ran. Not on the loop thread. */
    void advance_time(std::chrono::milliseconds ms) {
        detail::check(sl_runtime_advance_time(rt_, static_cast<uint64_t>(std::max<std::chrono::milliseconds::rep>(0, ms.count()))),
                      rt_, "sl_runtime_advance_time");
    }
    /** False once the log could not record a saga's end (new sagas are then refused). */
    bool healthy() const { return sl_runtime_health(rt_) == 0; }
    /** Throws SL_EUNHEALTHY, with the reason, unless healthy. */
    void check_health() const { detail::check(sl_runtime_health(rt_), rt_, "sl_runtime_health"); }

    /** Publishes an event, in sl_publish's order of arguments. Any thread, callbacks included.
        @param saga_id 0 for an untagged event; else the saga whose command this answers.
        @param payload_json JSON text. */
    void publish(const std::string &type, std::uint64_t saga_id, const std::string &payload_json = "null") {
        detail::check(sl_publish(rt_, type.c_str(), saga_id, payload_json.c_str()), rt_, "sl_publish");
    }
    /** Publishes an untagged event: publish(type, 0, payload_json). */
    void publish(const std::string &type, const std::string &payload_json = "null") { publish(type, 0, payload_json); }

    /** Calls `fn` with every event published from now on, one at a time, in publication order,
        on the subscription's own delivery thread. A subscriber more than `buffer` events
        behind (0: 4096) loses the newest and then receives one "sagalane.Lagged" event. */
    subscription subscribe(size_t buffer, std::function<void(const event &)> fn) {
        subscription s;
        auto owned = std::make_unique<std::function<void(const event &)>>(std::move(fn));
        detail::check(sl_subscribe(rt_, buffer, detail::glue::deliver, owned.get(), &s.sub_), rt_, "sl_subscribe");
        s.fn_ = owned.release();
        s.life_ = life_;
        return s;
    }
    /** subscribe(0, fn): a buffer of 4096 events. */
    subscription subscribe(std::function<void(const event &)> fn) { return subscribe(0, std::move(fn)); }

    /** Calls `fn` with every lifecycle event after position `after` (0: all the log holds), in
        order, exactly once each, on a thread of its own: those the subscriber was away for are
        read back from the log, then each new one once it is durable (sl_lifecycle_subscribe).
        Allowed before start(), to see recovery's events. What `fn` throws is dropped. */
    lifecycle_subscription subscribe_lifecycle(std::uint64_t after, std::function<void(const lifecycle_event &)> fn) {
        lifecycle_subscription s;
        auto owned = std::make_unique<std::function<void(const lifecycle_event &)>>(std::move(fn));
        detail::check(sl_lifecycle_subscribe(rt_, after, detail::glue::deliver_lifecycle, owned.get(), &s.sub_), rt_,
                      "sl_lifecycle_subscribe");
        s.fn_ = owned.release();
        s.life_ = life_;
        return s;
    }

    /** The position of the latest lifecycle event the log committed (0: none yet). */
    std::uint64_t lifecycle_position() const {
        std::uint64_t position = 0;
        detail::check(sl_lifecycle_position(rt_, &position), rt_, "sl_lifecycle_position");
        return position;
    }

    /** Up to `limit` lifecycle events after `after`, as sl_log_lifecycle's JSON array. */
    std::string log_lifecycle(std::uint64_t after, int limit) const {
        char *json = nullptr;
        int rc = sl_log_lifecycle(rt_, after, limit, &json);
        return detail::take(rc, json, rt_, "sl_log_lifecycle");
    }

    /** Operators' actions on a saga in failed_compensation, each written to the log with its
        lifecycle event; host threads only. Runs its compensations again
        (sl_saga_retry_compensation). */
    void retry_compensation(std::uint64_t saga_id, const std::optional<std::string> &note = std::nullopt) {
        detail::check(sl_saga_retry_compensation(rt_, saga_id, note ? note->c_str() : nullptr), rt_, "sl_saga_retry_compensation");
    }
    /** Sends it forward again, as SL_RECOVERY_RESUME would (sl_saga_resume). */
    void resume_saga(std::uint64_t saga_id, const std::optional<std::string> &note = std::nullopt) {
        detail::check(sl_saga_resume(rt_, saga_id, note ? note->c_str() : nullptr), rt_, "sl_saga_resume");
    }
    /** Marks it resolved by hand, with `note` (sl_saga_resolve). */
    void resolve_saga(std::uint64_t saga_id, const std::string &note) {
        detail::check(sl_saga_resolve(rt_, saga_id, note.c_str()), rt_, "sl_saga_resolve");
    }

    /** Registers a saga type built by `factory`. Before or after start. */
    void register_saga_type(const saga_type &type, saga_factory factory) {
        if (!factory) throw error(SL_EINVAL, "sl_saga_type_register", "the factory is empty");
        auto owned = std::make_unique<saga_factory>(std::move(factory));
        std::vector<const char *> interests;
        for (const std::string &name : type.interests) interests.push_back(name.c_str());
        sl_saga_type c;
        sl_saga_type_init(&c);
        c.name = type.name.c_str();
        c.create = detail::glue::create;
        c.destroy = detail::glue::destroy;
        c.start = detail::glue::start;
        c.on_event = detail::glue::on_event;
        c.interests = interests.data();
        c.interest_count = interests.size();
        c.timeout_ms = static_cast<uint32_t>(std::clamp<std::chrono::milliseconds::rep>(type.timeout.count(), 0, UINT32_MAX));
        c.recovery = static_cast<int>(type.recovery);
        c.compensation_timeout_ms = detail::glue::ms32(type.compensation_timeout);
        c.release = detail::release<saga_factory>;
        detail::check(sl_saga_type_register(rt_, &c, owned.get()), rt_, "sl_saga_type_register");
        owned.release();
    }

    /** Registers the saga class T, built as T(std::string_view input_json). */
    template <class T> void register_saga_type(const saga_type &type) {
        static_assert(std::is_base_of_v<saga, T>, "T must derive from sagalane::saga");
        register_saga_type(type, [](std::string_view input) -> std::unique_ptr<saga> { return std::make_unique<T>(input); });
    }

    /** Registers a saga type defined by functions over a State value. */
    template <class State> void register_saga_type(const saga_type &type, saga_functions<State> functions) {
        if (!functions.start || !functions.on_event)
            throw error(SL_EINVAL, "sl_saga_type_register", "saga_functions needs start and on_event");
        if (!functions.create) {
            if constexpr (std::is_default_constructible_v<State>)
                functions.create = [](std::string_view) { return State(); };
            else
                throw error(SL_EINVAL, "sl_saga_type_register", "saga_functions needs create");
        }
        struct instance : saga {
            std::shared_ptr<const saga_functions<State>> fns;
            State state;
            instance(std::shared_ptr<const saga_functions<State>> f, State s) : fns(std::move(f)), state(std::move(s)) {}
            action start(const saga_context &ctx) override { return fns->start(state, ctx); }
            action on_event(const saga_context &ctx, const event &ev) override { return fns->on_event(state, ctx, ev); }
        };
        auto fns = std::make_shared<const saga_functions<State>>(std::move(functions));
        register_saga_type(type, [fns](std::string_view input) -> std::unique_ptr<saga> {
            return std::make_unique<instance>(fns, fns->create(input));
        });
    }

    /**
     * Registers the saga types of a saga file (its JSON text; see sl_saga_types_load and
     * docs/sagas-file.md) with their triggers, all or none, and returns how many. Throws
     * sagalane::error: SL_EINVAL with every problem of the file in what(), one a line;
     * SL_EEXIST when a name is already registered.
     */
    int load_saga_types(const std::string &json_text) {
        int loaded = 0;
        detail::check(sl_saga_types_load(rt_, json_text.c_str(), &loaded), rt_, "sl_saga_types_load");
        return loaded;
    }

    /** Starts a saga of type `saga_type_name` for every published `event_type` event that
        `predicate` accepts (empty: every one), with the event's payload as its input. The
        predicate gets the payload (JSON) on the loop thread. */
    void add_trigger(const std::string &event_type, const std::string &saga_type_name,
                     std::function<bool(std::string_view payload_json)> predicate = {}) {
        const char *type = event_type.c_str(), *name = saga_type_name.c_str();
        if (!predicate) {
            detail::check(sl_trigger_add(rt_, type, name, nullptr, nullptr, nullptr), rt_, "sl_trigger_add");
            return;
        }
        using fn = std::function<bool(std::string_view)>;
        auto owned = std::make_unique<fn>(std::move(predicate));
        detail::check(sl_trigger_add(rt_, type, name, detail::glue::predicate, owned.get(),
                                     detail::release<fn>),
                      rt_, "sl_trigger_add");
        owned.release();
    }

    /** Registers the command target `name` (no ':'). `fn` runs on the loop thread and must
        hand the command off and return quickly; answer later with publish(type, saga_id,
        payload) or step_fail(). If it throws, the saga fails at once ("target refused"). */
    void register_target(const std::string &name,
                         std::function<void(std::uint64_t saga_id, std::uint32_t step, std::string_view command_json)> fn) {
        auto owned = std::make_unique<detail::glue::target_fn>(std::move(fn));
        detail::check(sl_target_register(rt_, name.c_str(), detail::glue::target, owned.get(),
                                         detail::release<detail::glue::target_fn>),
                      rt_, "sl_target_register");
        owned.release();
    }

    /** Registers target `name` (no ':') as a pipe target whose host listens on the Unix
        socket at `path` (docs/protocol.md, "Dialled targets"), and dials it once the loop runs,
        again with back-off whenever the connection is lost. Commands that cannot be sent wait,
        in order, up to options.buffer_expiry. Throws SL_EINVAL (a name or path sagalane.h
        refuses, an option out of range), SL_EEXIST, SL_ECLOSED. */
    void connect_target(const std::string &name, const std::string &path,
                        const target_connect_options &options = target_connect_options()) {
        auto ms = [](std::chrono::milliseconds value, const char *field) {
            if (value.count() < 1 || value.count() > static_cast<std::chrono::milliseconds::rep>(UINT32_MAX))
                throw error(SL_EINVAL, "sl_target_connect", (std::string("options.") + field + " must be 1 ms to 2^32-1 ms").c_str());
            return static_cast<uint32_t>(value.count());
        };
        auto count = [](std::uint32_t value, const char *field) {
            if (value == 0) throw error(SL_EINVAL, "sl_target_connect", (std::string("options.") + field + " must not be 0").c_str());
            return value;
        };
        sl_target_connect_options c;
        sl_target_connect_options_init(&c);
        c.buffer_expiry_ms = ms(options.buffer_expiry, "buffer_expiry");
        c.max_buffered = count(options.max_buffered, "max_buffered");
        c.reconnect_min_ms = ms(options.reconnect_min, "reconnect_min");
        c.reconnect_max_ms = ms(options.reconnect_max, "reconnect_max");
        c.max_frame = count(options.max_frame, "max_frame");
        c.max_queued_bytes = count(options.max_queued_bytes, "max_queued_bytes");
        detail::check(sl_target_connect(rt_, name.c_str(), path.c_str(), &c), rt_, "sl_target_connect");
    }

    /** What pipe target `name` has done so far. Any thread (waits for the loop). Throws
        SL_ENOTFOUND when there is no pipe target of that name. */
    target_status get_target_status(const std::string &name) const {
        sl_target_status c{};
        c.size = sizeof c;
        detail::check(sl_target_get_status(rt_, name.c_str(), &c), rt_, "sl_target_get_status");
        target_status s;
        s.connected = c.connected != 0;
        s.buffered = c.buffered;
        s.awaiting = c.awaiting;
        s.sent = c.sent;
        s.expired = c.expired;
        s.purged = c.purged;
        s.connections = c.connections;
        s.bad_frames = c.bad_frames;
        return s;
    }

    /** Reports that step `step` of saga `saga_id` failed: the saga fails. Any thread. */
    void step_fail(std::uint64_t saga_id, std::uint32_t step, const std::string &reason) {
        detail::check(sl_step_fail(rt_, saga_id, step, reason.c_str()), rt_, "sl_step_fail");
    }

    /** Starts a saga: builds it on the calling thread, and returns its id once its running
        row is durable (the id then names that saga in the log, also after a crash); its
        start follows on the loop. Throws SL_EREFUSED (with the factory's exception text),
        SL_ENOTFOUND, SL_EJSON, SL_EAGAIN (too many sagas waiting to launch), SL_ESTATE (not
        started, or called on the loop thread: use start_saga_async there), SL_EUNHEALTHY,
        or the log's error. */
    std::uint64_t start_saga(const std::string &type_name, const std::string &input_json = "null") {
        return start_saga(type_name, input_json, saga_start_options());
    }

    /** start_saga, waiting for room and telling `options.on_end` how the saga ended. */
    std::uint64_t start_saga(const std::string &type_name, const std::string &input_json,
                             const saga_start_options &options) {
        std::uint64_t id = 0;
        start(type_name, input_json, options, {}, false, &id);
        return id;
    }

    /** start_saga, with a future of the saga's end besides its id. Throws as start_saga. */
    started_saga start_saga_future(const std::string &type_name, const std::string &input_json = "null",
                                   const saga_start_options &options = saga_start_options()) {
        started_saga out;
        out.end = start(type_name, input_json, options, {}, true, &out.id);
        return out;
    }

    /** Starts a saga without waiting for its running row: returns once the saga is accepted,
        and `on_started` (which may be empty) later gets its id, or why it did not start, on
        the loop thread. Allowed on the loop thread, where start_saga is not (with
        options.room_timeout 0). Throws as start_saga, in which case `on_started` is never
        called. */
    void start_saga_async(const std::string &type_name, const std::string &input_json, saga_started_fn on_started,
                          const saga_start_options &options = saga_start_options()) {
        if (!on_started) on_started = [](const error *, std::uint64_t) {};
        start(type_name, input_json, options, std::move(on_started), false, nullptr);
    }

    /** Blocks until saga `saga_id` ends, or `timeout` passed, and says how it ended: from
        memory for a saga in flight, from the log for one that ended already (any saga of the
        log, so an end is never missed). Throws SL_ETIMEDOUT, SL_ENOTFOUND (the log has no
        such saga), SL_ESTATE (unfinished but not in flight: it waits for the next start's
        recovery; or called on the loop thread), SL_ECLOSED (also when the runtime closes
        during the wait). */
    saga_end wait_saga(std::uint64_t saga_id, std::chrono::milliseconds timeout = forever) {
        int state = 0;
        char *reason = nullptr;
        int rc = sl_saga_wait(rt_, saga_id, detail::timeout_ms(timeout), &state, &reason);
        std::unique_ptr<char, void (*)(void *)> owned(reason, sl_free);
        detail::check(rc, rt_, "sl_saga_wait");
        saga_end end;
        end.saga_id = saga_id;
        end.state = static_cast<saga_state>(state);
        if (owned) end.reason = std::string(owned.get());
        end.durable = sl_runtime_health(rt_) == 0;
        return end;
    }

    /** Fails saga `saga_id` with reason "cancelled: <reason>". From a host thread it returns
        once that end is durable; from the loop thread (a callback) the end is claimed at once
        and written right after the callback. Throws SL_ENOTFOUND if it is not in flight. */
    void cancel_saga(std::uint64_t saga_id, const std::string &reason) {
        detail::check(sl_saga_cancel(rt_, saga_id, reason.c_str()), rt_, "sl_saga_cancel");
    }

    /** Creates the lane `name`. Throws SL_EEXIST, SL_ELOG (recovery failed), ... */
    lane create_lane(const std::string &name, const lane_options &options = lane_options()) {
        sl_lane_options c;
        sl_lane_options_init(&c);
        c.max_concurrent = options.max_concurrent;
        c.persisted = options.persisted ? 1 : 0;
        if (options.reconstruct) {
            // Only called before sl_lane_create returns: borrowing the caller's is enough.
            c.reconstruct = detail::glue::reconstruct;
            c.reconstruct_userdata = const_cast<detail::glue::reconstruct_fn *>(&options.reconstruct);
        }
        sl_lane *l = nullptr;
        detail::check(sl_lane_create(rt_, name.c_str(), &c, &l), rt_, "sl_lane_create");
        return lane(l, rt_);
    }

    /** The lane `name`. Throws SL_ENOTFOUND. */
    lane find_lane(const std::string &name) const {
        sl_lane *l = nullptr;
        detail::check(sl_lane_find(rt_, name.c_str(), &l), rt_, "sl_lane_find");
        return lane(l, rt_);
    }

    /** Up to `limit` sagas, most recent first, as a JSON array (see sagalane.h). */
    std::string log_recent(int limit) const {
        char *json = nullptr;
        int rc = sl_log_recent(rt_, limit, &json);
        return detail::take(rc, json, rt_, "sl_log_recent");
    }
    /** Up to `limit` sagas an operator should look at (running, compensating,
        failed_compensation), each with its steps, as a JSON array. */
    std::string log_unresolved(int limit = SL_LOG_UNRESOLVED_DEFAULT_LIMIT) const {
        char *json = nullptr;
        int rc = sl_log_unresolved_limit(rt_, limit, &json);
        return detail::take(rc, json, rt_, "sl_log_unresolved_limit");
    }
    /** Saga `saga_id` with its steps, as a JSON object. Throws SL_ENOTFOUND. */
    std::string log_saga(std::uint64_t saga_id) const {
        char *json = nullptr;
        int rc = sl_log_saga(rt_, saga_id, &json);
        return detail::take(rc, json, rt_, "sl_log_saga");
    }
    /** Up to `limit` lane jobs, most recent activity first, as a JSON array (see sl_log_jobs,
        whose order of arguments this follows). An empty `lane` or `state` means every lane or
        every state. Throws SL_EINVAL for an unknown state. */
    std::string log_jobs(const std::string &lane, const std::string &state, int limit) const {
        char *json = nullptr;
        int rc = sl_log_jobs(rt_, lane.empty() ? nullptr : lane.c_str(), state.empty() ? nullptr : state.c_str(), limit, &json);
        return detail::take(rc, json, rt_, "sl_log_jobs");
    }
    /** What the log holds, counted, as a JSON object (see sl_log_stats). */
    std::string log_stats() const {
        char *json = nullptr;
        int rc = sl_log_stats(rt_, &json);
        return detail::take(rc, json, rt_, "sl_log_stats");
    }
    /** Deletes sagas that ended more than `older_than` ago, and returns how many. */
    std::uint64_t vacuum(std::chrono::milliseconds older_than) {
        std::uint64_t deleted = 0;
        detail::check(sl_log_vacuum(rt_, static_cast<uint64_t>(std::max<std::chrono::milliseconds::rep>(0, older_than.count())),
                                    &deleted),
                      rt_, "sl_log_vacuum");
        return deleted;
    }

private:
    /** sl_saga_start_ex with the wrapper's callbacks; `id` null: don't wait for the row. */
    std::future<saga_end> start(const std::string &type_name, const std::string &input_json,
                                const saga_start_options &options, saga_started_fn on_started, bool want_future,
                                std::uint64_t *id) {
        sl_saga_start_options c;
        sl_saga_start_options_init(&c);
        c.room_timeout_ms = detail::timeout_ms(options.room_timeout);
        c.idempotency_key = options.idempotency_key ? options.idempotency_key->c_str() : nullptr;
        std::future<saga_end> end;
        void *key = nullptr;
        if (on_started || options.on_end || want_future) {
            auto box = std::make_unique<detail::start_box>();
            box->owner = owner_;
            box->on_started = std::move(on_started);
            box->on_end = options.on_end;
            if (want_future) end = box->end.emplace().get_future();
            c.started = box->on_started ? detail::start_glue::started : nullptr;
            c.ended = box->on_end || want_future ? detail::start_glue::ended : nullptr;
            c.release = detail::start_glue::release;
            // Filed before the call: the saga may end, and be released, before it returns.
            key = c.userdata = detail::start_registry::get().add(std::move(box));
        }
        detail::glue::refusal().clear();
        int rc = sl_saga_start_ex(rt_, type_name.c_str(), input_json.c_str(), &c, id);
        if (rc != 0) {
            // sagalane calls nothing back for a call that failed.
            if (key) detail::start_registry::get().take(key);
            if (rc == SL_EREFUSED && !detail::glue::refusal().empty())
                throw error(rc, "sl_saga_start_ex",
                            (std::string(sl_runtime_errmsg(rt_)) + ": " + detail::glue::refusal()).c_str());
            detail::check(rc, rt_, "sl_saga_start_ex");
        }
        return end;
    }

    int value(int rc, const char *call) const {
        if (rc < 0) detail::check(rc, rt_, call);
        return rc;
    }

    sl_runtime *rt_ = nullptr;
    std::shared_ptr<detail::runtime_life> life_;
    std::uint64_t owner_ = 0;  // the runtime's serial in detail::start_registry
};

}  // namespace sagalane

#endif /* SAGALANE_HPP */
