import CSQLite
import Glibc
import SagaLane
import SagaLaneAgent
import SagaLaneScriptSaga

// The agent's figures: commands over the socket beside a raw stream of the same bytes, sagas
// through the agent with the host in another process beside sagas in process, and the
// agent's start-up. The other process is this executable again (`agent-peer ...`).

/// The command frames the agent writes to a host, and the host's answers: the same texts in
/// every mode, so the modes differ only in what reads and writes them.
func commandFrame(_ n: Int) -> String {
    commandFrame(n, command: command(n))
}

/// The command of frame `n`, as a saga's step holds it before a pipe target sends it.
func command(_ n: Int) -> JSON {
    ["op": "charge", "cents": .int(Int64(n % 1000)), "saga_id": .int(Int64(n)), "step": 0]
}

func commandFrame(_ n: Int, command: JSON) -> String {
    WireFrame(.command(target: "host", sagaID: UInt64(n), step: 0, command: command)).serialized
}

/// The answer's payload, as a host holds it before it answers.
private let answerPayload: JSON = ["receipt": "r-0000001"]

func answerFrame(sagaID: UInt64, step: UInt32) -> String {
    WireFrame(.stepDone(sagaID: sagaID, step: step, event: "Charged", payload: answerPayload)).serialized
}

// MARK: Spawning

/// A child process with one of its descriptors (1 or 2) on a pipe.
private final class Spawned {
    let pid: pid_t
    let fd: Int32
    private var buffer: [UInt8] = []

    init(_ path: String, _ arguments: [String], capture: Int32 = 1) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw BenchError("pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[1], capture)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, environ)
        posix_spawn_file_actions_destroy(&actions)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw BenchError("cannot run \(path): \(String(cString: strerror(rc)))")
        }
        pid = child
        fd = fds[0]
    }

    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                defer { buffer.removeFirst(newline + 1) }
                return String(decoding: buffer[..<newline], as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            buffer += chunk[0..<n]
        }
    }

    @discardableResult
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        close(fd)
        return status
    }
}

private func executableDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let path = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "./sagalane-bench"
    return String(path[..<path.lastIndex(of: "/")!])
}

private func selfPath() -> String { executableDirectory() + "/sagalane-bench" }

// MARK: Commands over the socket

/// The agent's side of a command stream: a libuv listener and connection on an event loop,
/// sending `n` command frames pipelined within the write queue's bound and reading the
/// answers, each parsed as a message when `parse` (as the agent does).
private final class CommandStream: @unchecked Sendable {
    let loop: EventLoop
    let n: Int
    let parse: Bool
    let done = Completion<Result<Double, BenchError>>()
    var listener: PipeListener?
    var connection: PipeConnection?
    var sent = 0
    var answered = 0
    var begin = ContinuousClock.now
    /// Framing only: the frames' texts, made up front as the raw stream's are.
    let prepared: [[UInt8]]
    /// With `parse`: the commands, made up front as a saga's steps hold them; each frame is
    /// serialized as it is sent, as a pipe target does at dispatch.
    let commands: [JSON]

    init(loop: EventLoop, n: Int, parse: Bool) {
        self.loop = loop
        self.n = n
        self.parse = parse
        prepared = parse ? [] : (1...n).map { Array(commandFrame($0).utf8) }
        commands = parse ? (1...n).map { command($0) } : []
    }

    func listen(path: String) throws(SagaLaneError) {
        let listener = try PipeListener(loop: loop, path: path)
        listener.onAccept = { [unowned self] connection in
            self.connection = connection
            connection.onFrame = { [unowned self] frame in received(frame) }
            connection.onWritable = { [unowned self] in pump() }
            connection.onClose = { [unowned self] reason in
                if answered < n { done.set(.failure(BenchError("the peer went away after \(answered) answers: \(reason)"))) }
            }
            connection.startReading()
            begin = ContinuousClock.now
            pump()
        }
        self.listener = listener
    }

    private func pump() {
        guard let connection else { return }
        connection.batch {
            while sent < n && connection.canSend() {
                sent += 1
                let queued: Bool
                if parse {
                    queued = (try? connection.send(commandFrame(sent, command: commands[sent - 1]))) != nil
                } else {
                    queued = prepared[sent - 1].withUnsafeBytes { bytes in (try? connection.send(bytes)) != nil }
                }
                if !queued {
                    sent -= 1
                    return
                }
            }
        }
    }

    private func received(_ frame: UnsafeRawBufferPointer) {
        if parse {
            guard let message = try? WireFrame.parse(frame), case .stepDone = message.message else {
                return done.set(.failure(BenchError("an answer that is not step.done")))
            }
        }
        answered += 1
        if answered == n {
            let seconds = Double((ContinuousClock.now - begin) / .microseconds(1)) / 1e6
            done.set(.success(Double(n) / seconds))
            connection?.close()
            listener?.close()
        }
    }
}

/// Commands per second with the agent's connection (libuv, framing, each answer parsed and
/// each command serialized when `parse`) against a peer that parses and answers each too.
private func measurePipeCommands(directory: String, n: Int, parse: Bool) throws -> Double {
    let path = directory + "/bench-commands.sock"
    let loop = try EventLoop()
    try loop.startThread()
    let stream = CommandStream(loop: loop, n: n, parse: parse)
    // The loop's callbacks hold the stream unowned: it must outlive the loop.
    defer { withExtendedLifetime(stream) { loop.shutdown() } }
    let listening = Completion<Result<Void, SagaLaneError>>()
    loop.execute {
        do throws(SagaLaneError) { try stream.listen(path: path); listening.set(.success(())) } catch { listening.set(.failure(error)) }
    }
    try listening.wait().get()
    let peer = try Spawned(selfPath(), ["agent-peer", parse ? "protocol" : "raw", path, "\(n)"])
    let result = stream.done.wait()
    peer.wait()
    return try result.get()
}

/// The same bytes both ways over a plain Unix socket: one thread writes the command frames
/// (made up front, written 64 KiB at a time), another counts the answers' newlines. No event
/// loop, no framing, no JSON: the transport's ceiling on this machine.
private func measureRawStream(directory: String, n: Int) throws -> Double {
    let path = directory + "/bench-raw.sock"
    let listener = try BlockingListener(path: path)
    defer { listener.close() }
    let peer = try Spawned(selfPath(), ["agent-peer", "raw", path, "\(n)"])
    guard let socket = try listener.accept(timeoutMilliseconds: 10_000) else { throw BenchError("the raw peer did not connect") }
    var bytes: [UInt8] = []
    for i in 1...n { bytes += Array(commandFrame(i).utf8); bytes.append(10) }
    let stream = bytes
    let fd = socket.fd
    let begin = ContinuousClock.now
    let writer = try OSThread(name: "bench raw writer") {
        var offset = 0
        while offset < stream.count {
            let size = min(1 << 16, stream.count - offset)
            let written = stream.withUnsafeBytes { send(fd, $0.baseAddress! + offset, size, Int32(MSG_NOSIGNAL)) }
            if written < 0 { if errno == EINTR { continue }; return }
            offset += written
        }
    }
    var newlines = 0
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while newlines < n {
        let got = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if got < 0 && errno == EINTR { continue }
        guard got > 0 else { throw BenchError("the raw peer went away after \(newlines) answers") }
        chunk.withUnsafeBytes { bytes in
            var at = bytes.baseAddress!
            var left = got
            while left > 0, let found = memchr(at, 10, left) {
                newlines += 1
                let skip = UnsafeRawPointer(found) - at + 1
                at += skip
                left -= skip
            }
        }
    }
    let seconds = Double((ContinuousClock.now - begin) / .microseconds(1)) / 1e6
    writer.join()
    peer.wait()
    return Double(n) / seconds
}

/// Nanoseconds per message operation, each done `n` times in a row on this thread.
private func measureMessageCosts(n: Int) -> (serialize: Int, parse: Int, answerSerialize: Int, answerParse: Int) {
    func time(_ body: () -> Int) -> Int {
        let begin = ContinuousClock.now
        var sink = 0
        sink &+= body()
        let elapsed = ContinuousClock.now - begin
        if sink == -1 { print("") }
        return Int(elapsed / .nanoseconds(1)) / n
    }
    let commandText = Array(commandFrame(12345).utf8)
    let answer = Array(answerFrame(sagaID: 12345, step: 0).utf8)
    let commands = (1...n).map { command($0) }
    let serialize = time { (1...n).reduce(0) { $0 &+ commandFrame($1, command: commands[$1 - 1]).utf8.count } }
    let parse = time {
        commandText.withUnsafeBytes { bytes in (0..<n).reduce(0) { total, _ in total &+ ((try? WireFrame.parse(bytes)) != nil ? 1 : 0) } }
    }
    let answerSerialize = time { (1...n).reduce(0) { $0 &+ answerFrame(sagaID: UInt64($1), step: 0).utf8.count } }
    let answerParse = time {
        answer.withUnsafeBytes { bytes in (0..<n).reduce(0) { total, _ in total &+ ((try? WireFrame.parse(bytes)) != nil ? 1 : 0) } }
    }
    return (serialize, parse, answerSerialize, answerParse)
}

// MARK: Sagas through the agent

/// Two-step sagas per second started and answered by a host process through an agent (this
/// process: a runtime, the agent on it, its log in `directory`).
private func measureAgentSagas(directory: String, durability: Durability, sagas n: Int, window: Int) throws -> (rate: Double, failed: Int) {
    let dataDirectory = directory + "/bench-agent"
    mkdir(dataDirectory, 0o700)
    let database = dataDirectory + "/sagalane.db"
    removeDatabase(database)
    defer { removeDatabase(database) }
    let runtime = try Runtime(options: RuntimeOptions(databasePath: database, durability: durability, diagnostics: .discard))
    try runtime.register(ScriptSaga.type(timeout: .seconds(3600)))
    try runtime.start()
    let agent = Agent(runtime: runtime, options: AgentOptions(dataDirectory: dataDirectory, durability: durability, diagnostics: .discard))
    // Its connections' callbacks hold it unowned until the runtime closes.
    defer { withExtendedLifetime(agent) { runtime.close() } }
    try agent.start()
    let peer = try Spawned(selfPath(), ["agent-peer", "host", agent.options.resolvedSocketPath, "\(n)", "\(window)"])
    let line = peer.readLine()
    let status = peer.wait()
    let stopped = Completion<Bool>()
    agent.stop { stopped.set(true) }
    _ = stopped.wait()
    let parts = line?.split(separator: " ") ?? []
    guard status == 0, parts.count == 2, let rate = Double(parts[0]), let failed = Int(parts[1]) else {
        throw BenchError("the host process failed (status \(status), said \(line ?? "nothing"))")
    }
    return (rate, failed)
}

// MARK: Start-up

/// Milliseconds from spawning `sagalane agent` to its ready line, the best of `runs`.
private func measureAgentStartup(sagalane: String, dataDirectory: String, runs: Int) throws -> Double {
    var best = Double.infinity
    for _ in 0..<runs {
        let begin = ContinuousClock.now
        let agent = try Spawned(sagalane, ["agent", "--data-dir", dataDirectory], capture: 2)
        var ready = false
        while let line = agent.readLine() {
            if line.contains(" ready: ") { ready = true; break }
        }
        let elapsed = Double((ContinuousClock.now - begin) / .microseconds(1)) / 1000
        kill(agent.pid, SIGTERM)
        let status = agent.wait()
        guard ready, status == 0 else { throw BenchError("sagalane agent did not start and stop cleanly (status \(status))") }
        best = min(best, elapsed)
    }
    return best
}

/// Milliseconds from spawning `sagalane version` to its exit: a process of the same binary
/// doing nothing, the floor under the agent's start-up.
private func measureProcessFloor(sagalane: String, runs: Int) throws -> Double {
    var best = Double.infinity
    for _ in 0..<runs {
        let begin = ContinuousClock.now
        let child = try Spawned(sagalane, ["version"])
        while child.readLine() != nil {}
        child.wait()
        best = min(best, Double((ContinuousClock.now - begin) / .microseconds(1)) / 1000)
    }
    return best
}

/// A log holding `n` completed one-step sagas, written straight into SQLite (through the
/// runtime it would take minutes): the schema from a real open first.
private func makeLogOfTerminalSagas(_ path: String, count n: Int) throws {
    removeDatabase(path)
    try SagaLog.open(path: path, durability: .normal).close()
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw BenchError("cannot open \(path)") }
    defer { sqlite3_close(db) }
    let at = Timestamp.now().iso8601
    let sql = """
        PRAGMA journal_mode = WAL;
        BEGIN;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(n))
        INSERT INTO saga (id, name, state, input_json, failure_reason, started_at, ended_at)
            SELECT i, 'bench', 'completed', '{"label":"bench"}', NULL, '\(at)', '\(at)' FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(n))
        INSERT INTO saga_step (saga_id, step_index, name, target, command_json, state, output_json, failure_reason, started_at, ended_at)
            SELECT i, 0, 'issue_host', 'host', '{"cmd":"a"}', 'succeeded', '{"type":"A"}', NULL, '\(at)', '\(at)' FROM n;
        INSERT OR REPLACE INTO meta (key, value) VALUES ('saga_id_high_water', \(n));
        COMMIT;
        PRAGMA wal_checkpoint(TRUNCATE);
        """
    guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw BenchError(String(cString: sqlite3_errmsg(db))) }
}

// MARK: The benchmark

func runAgentBench(directory: String, commands: Int, sagas: Int, terminalSagas: Int) async throws {
    try runWireBench(directory: directory, commands: commands)
    try await runAgentSagaBench(directory: directory, sagas: sagas, terminalSagas: terminalSagas)
}

/// The protocol's figures alone (`sagalane-bench wire`): no log, no runtime.
func runWireBench(directory: String, commands: Int) throws {
    print("agent: \(commands) command frames to a process over a Unix socket, answered with step.done, pipelined;")
    print("       baseline: the same bytes both ways over a plain socket (no event loop, framing or JSON), same run;")
    print("       raw and framing best of 3")
    // Best of three for the fast two, taken in turns, so that a burst of load from other
    // processes skews neither more than the other.
    var raw = 0.0, framed = 0.0
    for _ in 0..<3 {
        raw = max(raw, try measureRawStream(directory: directory, n: commands))
        framed = max(framed, try measurePipeCommands(directory: directory, n: commands, parse: false))
    }
    let parsed = try measurePipeCommands(directory: directory, n: commands, parse: true)
    print(pad("  raw stream", 28) + "\(format(raw)) commands/s")
    print(pad("  libuv + framing", 28) + pad("\(format(framed)) commands/s", 24) + "\(format(100 * framed / raw)) % of raw")
    print(pad("  protocol (both parse)", 28) + pad("\(format(parsed)) commands/s", 24) + "\(format(100 * parsed / raw)) % of raw")
    let costs = measureMessageCosts(n: min(commands, 200_000))
    print("  where the protocol's time goes, per frame in one process: command serialized \(costs.serialize) ns, "
          + "parsed \(costs.parse) ns; answer serialized \(costs.answerSerialize) ns, parsed \(costs.answerParse) ns")
}

private func runAgentSagaBench(directory: String, sagas: Int, terminalSagas: Int) async throws {
    print("agent: \(sagas) two-step sagas started by a host process through the agent and answered by it, 256 in flight;")
    print("       baseline: the same sagas in process with an echoing callback target, same run")
    for durability in Durability.allCases {
        let inProcess = try await measureSagaThroughput(path: freshDatabase(directory, "bench-agent-baseline.db"),
                                                        durability: durability, sagas: sagas, concurrency: 256)
        let through = try measureAgentSagas(directory: directory, durability: durability, sagas: sagas, window: 256)
        print(pad("  \(durability.rawValue)", 10) + pad("through the agent \(format(through.rate)) sagas/s", 38)
              + pad("in process \(format(inProcess)) sagas/s", 30) + "ratio \(format(through.rate / inProcess))"
              + (through.failed > 0 ? "  (\(through.failed) failed!)" : ""))
    }

    // The product is the static binary CMake links (build/bin/sagalane); SwiftPM's own, beside
    // this one, loads the Swift runtime's shared libraries and starts some 5 ms later.
    let sagalane = getenv("SAGALANE_BINARY").map { String(cString: $0) } ?? executableDirectory() + "/sagalane"
    guard access(sagalane, X_OK) == 0 else {
        print("agent start-up: skipped (no \(sagalane); build the sagalane product too, or name one in SAGALANE_BINARY)")
        return
    }
    print("agent start-up: spawn of `\(sagalane) agent` to its ready line, best of 10;")
    print("       baseline: spawn of `sagalane version` to its exit (the same binary doing nothing), same run")
    let floor = try measureProcessFloor(sagalane: sagalane, runs: 10)
    let empty = directory + "/bench-startup-empty"
    mkdir(empty, 0o700)
    removeDatabase(empty + "/sagalane.db")
    let emptyStart = try measureAgentStartup(sagalane: sagalane, dataDirectory: empty, runs: 10)
    let full = directory + "/bench-startup-full"
    mkdir(full, 0o700)
    let makeBegin = ContinuousClock.now
    try makeLogOfTerminalSagas(full + "/sagalane.db", count: terminalSagas)
    let made = Double((ContinuousClock.now - makeBegin) / .milliseconds(1)) / 1000
    var info = stat()
    stat(full + "/sagalane.db", &info)
    let fullStart = try measureAgentStartup(sagalane: sagalane, dataDirectory: full, runs: 10)
    print(pad("  process floor", 28) + "\(format3(floor)) ms")
    print(pad("  empty log", 28) + pad("\(format3(emptyStart)) ms", 14) + "(\(format3(emptyStart - floor)) ms over the floor)")
    print(pad("  \(terminalSagas) terminal sagas", 28) + pad("\(format3(fullStart)) ms", 14)
          + "(\(format3(fullStart - floor)) ms over the floor; log \(Int(info.st_size) >> 20) MiB, written in \(format(made)) s)")
    removeDatabase(full + "/sagalane.db")
    removeDatabase(empty + "/sagalane.db")
}

