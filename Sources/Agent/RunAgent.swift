import CUV
import Glibc
import SagaLane

/// Calls `body` on the loop thread whenever the process receives `signal` (a libuv
/// `uv_signal_t`, so the handler itself only wakes the loop). Loop thread.
final class SignalWatcher: @unchecked Sendable {
    private let loop: EventLoop
    private let handle = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
    private let body: (Int32) -> Void
    private var hook: UInt64?
    private var open = false

    init(loop: EventLoop, signal: Int32, _ body: @escaping (Int32) -> Void) throws(SagaLaneError) {
        self.loop = loop
        self.body = body
        guard uv_signal_init(loop.uvLoopPointer, handle) == 0 else {
            handle.deallocate()
            throw SagaLaneError(.loop, "cannot watch signal \(signal)")
        }
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        open = true
        let rc = uv_signal_start(handle, { handle, signum in
            Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data!).takeUnretainedValue().body(signum)
        }, signal)
        hook = loop.addShutdownHook { [unowned self] in close() }
        if rc != 0 || hook == nil {
            close()
            throw SagaLaneError(.loop, "cannot watch signal \(signal): \(String(cString: uv_strerror(rc)))")
        }
    }

    func close() {
        guard open else { return }
        open = false
        if let hook { loop.removeShutdownHook(hook) }
        hook = nil
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let raw = UnsafeMutableRawPointer(handle!)
            Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data!).release()
            raw.deallocate()
        }
    }
}

/// What `runAgent` returns: 0 after a clean stop, 1 when the agent could not start (another
/// agent holds the data directory, the log or the socket cannot be opened), 2 for a bad
/// configuration (saga types that do not load).
public enum AgentExit {
    public static let ok: Int32 = 0
    public static let failed: Int32 = 1
    public static let badConfiguration: Int32 = 2
}

/// Reads the saga file again and registers the sagas it defines that are new; a saga type
/// already registered keeps its definition (sagas in flight were started from it). A file
/// with mistakes changes nothing and says why.
private func reloadSagas(_ path: String, into runtime: Runtime, say: Diagnostics) {
    do {
        let file = try SagaFile(contentsOf: path)
        let added = try runtime.register(file, onlyNew: true)
        let kept = file.definitions.count - added.count
        say.info("agent: reloaded \(path) (SIGHUP): \(added.isEmpty ? "no new saga types" : "added " + added.joined(separator: ", "))"
                 + (kept > 0 ? "; \(kept) already registered, unchanged" : ""))
    } catch let error as SagaFileError {
        say.error("agent: SIGHUP: \(path) is not valid, nothing changed:\n\(error)")
    } catch {
        say.error("agent: SIGHUP: cannot reload \(path): \((error as? SagaLaneError)?.message ?? "\(error)")")
    }
}

/// Runs an agent until SIGTERM or SIGINT (or, with `exitWhenReady`, until it is ready):
/// takes the data directory's lock, opens the log, loads the saga types (`options.prepare`),
/// runs start-up recovery, creates the lanes, listens, and says so in one line on standard
/// error. On the signal it stops accepting, fails remote jobs in flight, lets connections take
/// what was queued for them, closes the log cleanly and returns 0; sagas in flight stay in the
/// log for the next start's recovery. Call it from the process's main thread.
/// - Returns: The exit status (see `AgentExit`).
public func runAgent(_ options: AgentOptions, exitWhenReady: Bool = false) -> Int32 {
    let say = options.diagnostics
    // A peer that goes away must never kill the agent with SIGPIPE.
    signal(SIGPIPE, SIG_IGN)
    // A parent may have started the agent with SIGTERM, SIGINT and SIGHUP blocked (the mask is
    // inherited across exec): unblock them here, before any thread starts (threads inherit
    // this thread's mask), or the stop signals would never arrive.
    var stopSignals = sigset_t()
    sigemptyset(&stopSignals)
    sigaddset(&stopSignals, SIGTERM)
    sigaddset(&stopSignals, SIGINT)
    sigaddset(&stopSignals, SIGHUP)
    pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
    signal(SIGTERM, SIG_DFL)
    signal(SIGINT, SIG_DFL)
    let lock: DataDirectoryLock
    do { lock = try DataDirectoryLock(directory: options.dataDirectory) } catch {
        say.error("agent: \(error.message)")
        return AgentExit.failed
    }
    defer { lock.release() }
    // The saga file is read before the log is opened: a file with mistakes stops the agent
    // with every mistake listed, before anything is recovered under the wrong definitions.
    var sagaFile: SagaFile?
    if let path = options.sagasFile {
        do { sagaFile = try SagaFile(contentsOf: path) } catch {
            say.error("agent: the saga file is not valid:\n\(error)")
            return AgentExit.badConfiguration
        }
    }
    let runtime: Runtime
    do {
        var runtimeOptions = RuntimeOptions(databasePath: options.databasePath, durability: options.durability,
                                            diagnostics: options.diagnostics)
        runtimeOptions.progress = options.progress
        runtime = try Runtime(options: runtimeOptions)
    } catch {
        say.error("agent: cannot open the log \(options.databasePath): \(error.message)")
        return AgentExit.failed
    }
    defer { runtime.close() }
    var sagaTypes = 0
    if let sagaFile {
        do { sagaTypes += try runtime.register(sagaFile).count } catch {
            say.error("agent: cannot register the sagas of \(options.sagasFile ?? ""): \(error.message)")
            return AgentExit.badConfiguration
        }
    }
    if let prepare = options.prepare {
        do { sagaTypes += try prepare(runtime) } catch {
            say.error("agent: cannot load saga types: \((error as? SagaLaneError)?.message ?? "\(error)")")
            return AgentExit.badConfiguration
        }
    }
    let recovered: Int
    do { recovered = try runtime.start() } catch {
        say.error("agent: cannot start: \(error.message)")
        return AgentExit.failed
    }
    let agent = Agent(runtime: runtime, options: options)
    // The runtime closes (its lanes' workers stopped) while the agent, whose remote lanes the
    // workers' jobs run through, still exists; the earlier `defer` then finds it closed.
    defer { withExtendedLifetime(agent) { runtime.close() } }
    let lanes: [String]
    do { lanes = try agent.start() } catch {
        say.error("agent: cannot start: \(error.message)")
        return AgentExit.failed
    }
    let stopped = Completion<Int32>()
    let watchers = agent.onLoop { () -> Result<[SignalWatcher], SagaLaneError> in
        do throws(SagaLaneError) {
            var watchers = try [SIGTERM, SIGINT].map { (number) throws(SagaLaneError) in
                try SignalWatcher(loop: runtime.loop, signal: number) { signum in
                    say.info("agent: stopping (\(signum == SIGTERM ? "SIGTERM" : "SIGINT"))")
                    agent.stop { stopped.set(AgentExit.ok) }
                }
            }
            if let path = options.sagasFile {
                watchers.append(try SignalWatcher(loop: runtime.loop, signal: SIGHUP) { _ in
                    reloadSagas(path, into: runtime, say: say)
                })
            }
            return .success(watchers)
        } catch {
            return .failure(error)
        }
    }
    guard case .success(let signalWatchers) = watchers else {
        say.error("agent: cannot watch SIGTERM and SIGINT")
        return AgentExit.failed
    }
    writeStandardError("sagalane: agent \(SagaLaneVersion.string) ready: data dir \(options.dataDirectory), socket \(options.resolvedSocketPath), "
                       + "\(sagaTypes) saga type\(sagaTypes == 1 ? "" : "s") loaded, \(recovered) unfinished saga\(recovered == 1 ? "" : "s") recovered, "
                       + "lanes: \(lanes.isEmpty ? "none" : lanes.joined(separator: ", ")), protocol \(WireVersion.current)\n")
    options.onReady?()
    if exitWhenReady { agent.stop { stopped.set(AgentExit.ok) } }
    let status = stopped.wait()
    agent.onLoop { for watcher in signalWatchers { watcher.close() } }
    return status
}
