import Glibc
import SagaLaneAgent
import SagaLaneJSON
import SagaLanePipes
import SagaLaneSupport
import SagaLaneWire

struct AgentCommand: Command {
    static let about = CommandInfo(
        name: "agent",
        abstract: "Run the agent: a runtime other processes use over a Unix socket.",
        discussion: """
            The agent owns a data directory: its log (sagalane.db), its lock, and by default its \
            socket (agent.sock). It recovers the log's unfinished sagas, creates the lanes named \
            with --lane, listens, and says so in one line on standard error. SIGTERM or SIGINT \
            stops it cleanly (exit 0); sagas in flight stay in the log for the next start. The \
            protocol is in docs/protocol.md.

            A second agent on the same data directory is refused. The read-only commands \
            (sagas, jobs, lanes, stats) work on its log while it runs; stats --socket shows its \
            counters.

            Exit status: 0 after a clean stop, 1 when it failed while running, 2 for a bad \
            option or a data directory it cannot use.

            Examples:
              sagalane agent
              sagalane agent --sagas examples/sagas/terminal-pool.json
              sagalane agent --data-dir /var/lib/sagalane --lane gpu=2 --lane cpu=8
              sagalane agent --socket /run/sagalane.sock --allow-uid 1001
            """)

    var dataDirectory: String?
    var socket: String?
    var sagas: String?
    var allowedUIDs: [UInt32] = []
    var lane: [LaneBound] = []
    var maxFrame: Int?
    var bufferExpiry: Duration?
    var reservation: Duration?
    var exitWhenReady = false

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.option("--data-dir", valueName: "dir",
                         help: "Where the log and the lock live, made (mode 0700) when missing. Default: "
                             + "\(AgentOptions.defaultDataDirectory).") { $0.dataDirectory = $1 }
        arguments.option("--socket", valueName: "path",
                         help: "The socket to listen on. Default: agent.sock in the data directory.") { $0.socket = $1 }
        arguments.option("--sagas", valueName: "file",
                         help: "A saga file (docs/sagas-file.md) whose saga types to register before recovery; read again "
                             + "on SIGHUP for new sagas. A file with mistakes stops the agent with exit status 2.") { $0.sagas = $1 }
        arguments.option("--allow-uid", valueName: "uid",
                         help: "Accept connections from this user id too (repeat it for more); the agent's own user is "
                             + "always accepted.",
                         repeats: true) { $0.allowedUIDs.append($1) }
        arguments.option("--lane", valueName: "name=n",
                         help: "Create the lane NAME running at most N jobs at once (1 to 1024) before listening; repeat it "
                             + "for more lanes.",
                         repeats: true, transform: laneArgument) { $0.lane.append($1) }
        arguments.option("--max-frame", valueName: "bytes",
                         help: "The largest frame either way, in bytes (64 to 1073741824).") { $0.maxFrame = $1 }
        arguments.option("--buffer-expiry", valueName: "duration",
                         help: "How long a command for a target with no connection waits before its saga fails: 250ms, 30s, 5m.",
                         transform: durationArgument) { $0.bufferExpiry = $1 }
        arguments.option("--reservation", valueName: "duration",
                         help: "How long a remote worker may hold a job without answering: 500ms, 60s, 5m.",
                         transform: durationArgument) { $0.reservation = $1 }
        arguments.flag("--exit-when-ready", help: "Stop as soon as the agent listens (to check a configuration).",
                       hidden: true) { $0.exitWhenReady = true }
    }

    func validate() throws {
        if let maxFrame, !(64...(1 << 30)).contains(maxFrame) {
            throw ValidationError("--max-frame takes 64 to 1073741824 bytes, not \(maxFrame)")
        }
        if let reservation, reservation <= .zero {
            throw ValidationError("--reservation takes a duration above zero (500ms, 60s, 5m)")
        }
    }

    var options: AgentOptions {
        var options = AgentOptions(dataDirectory: dataDirectory ?? AgentOptions.defaultDataDirectory)
        options.socketPath = socket
        options.sagasFile = sagas
        options.allowedUIDs.formUnion(allowedUIDs)
        options.lanes = lane.map { ($0.name, $0.bound) }
        if let maxFrame { options.maxFrameSize = maxFrame }
        if let bufferExpiry { options.bufferExpiry = bufferExpiry }
        if let reservation { options.reservation = reservation }
        options.progress = LongOperationProgress(log: options.databasePath).handler
        return options
    }

    /// `Sagalane.main` runs the agent itself, on the main thread, as `runAgent` requires.
    func run() throws {
        Glibc.exit(runAgent(options, exitWhenReady: exitWhenReady))
    }
}

struct LaneBound {
    var name: String
    var bound: Int
}

private func laneArgument(_ text: String) throws -> LaneBound {
    let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, let bound = Int(parts[1]), (1...1024).contains(bound) else {
        throw ValidationError("--lane takes NAME=N with N from 1 to 1024, as in gpu=2, not '\(text)'")
    }
    return LaneBound(name: String(parts[0]), bound: bound)
}

/// Asks the agent listening at `path` for its counters (`agent.stats`).
func agentCounters(socket path: String) throws(CommandFailure) -> JSON {
    try agentRequest(socket: path, .agentStats, name: "sagalane stats")["stats"] ?? .null
}

/// Sends one request to the agent listening at `path` after the handshake, and returns the
/// fields of its answer; a refusal is a failed operation with the agent's words.
func agentRequest(socket path: String, _ message: WireMessage, name: String) throws(CommandFailure) -> [String: JSON] {
    do {
        let client = try BlockingFrameSocket(path: path)
        try client.send(WireFrame(id: 1, .hello(version: WireVersion.current, name: name, targets: [])).serialized)
        try client.send(WireFrame(id: 2, message).serialized)
        while let line = try client.readFrame(timeoutMilliseconds: 5000) {
            let parsed = line.withUnsafeBytes { bytes -> Result<WireFrame, WireError> in
                do throws(WireError) { return .success(try WireFrame.parse(bytes)) } catch { return .failure(error) }
            }
            guard case .success(let frame) = parsed else {
                throw CommandFailure.operation("the agent at \(path) sent a frame that is not its protocol (\(line.count) bytes): "
                                               + "is something else listening there?")
            }
            switch frame.message {
            case .ok(let fields) where frame.id == 2:
                return fields
            case .error(let code, let message, _):
                throw CommandFailure.operation("the agent at \(path) refused: \(message) (\(code))")
            default:
                continue
            }
        }
        throw CommandFailure.operation("the agent at \(path) did not answer within 5 s")
    } catch let failure as CommandFailure {
        throw failure
    } catch {
        let message = (error as? SagaLaneError)?.message ?? "\(error)"
        throw .operation("cannot reach an agent at \(path): \(message); is `sagalane agent` running, with this socket?")
    }
}

/// `--socket` or `--data-dir`: which running agent a command talks to.
struct AgentAddress: ArgumentGroup {
    var socket: String?
    var dataDirectory: String?

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.option("--socket", valueName: "path",
                         help: "The agent's socket. Default: agent.sock in its data directory.") { $0.socket = $1 }
        arguments.option("--data-dir", valueName: "dir",
                         help: "The agent's data directory (default \(AgentOptions.defaultDataDirectory)).") { $0.dataDirectory = $1 }
    }

    var path: String {
        socket ?? AgentOptions(dataDirectory: dataDirectory ?? AgentOptions.defaultDataDirectory).resolvedSocketPath
    }
}

struct SagasCancel: Command {
    static let about = CommandInfo(
        name: "cancel",
        abstract: "Cancel a saga a running agent has in flight.",
        discussion: """
            The agent ends the saga as failed with the reason "cancelled: REASON" once that end \
            is durable, and tells the target of a step still unanswered. Only the process that \
            runs a saga can cancel it: a saga of another host's runtime is cancelled by that \
            host (sl_saga_cancel). A saga that already ended, or that is not in flight in this \
            agent, is refused (exit status 1).

            Examples:
              sagalane sagas cancel 42 --reason "customer asked"
              sagalane sagas cancel 42 --socket /run/sagalane.sock
            """)

    var id: UInt64 = 0
    var reason: String?
    var agent = AgentAddress()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.argument(valueName: "id", help: "The saga's id.") { $0.id = $1 }
        arguments.option("--reason", valueName: "text",
                         help: "Why, for the saga's failure reason (default: cancelled by sagalane).") { $0.reason = $1 }
        arguments.group(\.agent)
    }

    func run() throws {
        let path = agent.path
        _ = try agentRequest(socket: path, .sagaCancel(sagaID: id, reason: reason ?? "cancelled by sagalane"), name: "sagalane sagas cancel")
        emit("cancelled saga \(id)\n")
    }
}

/// The old `agent-stats`, kept hidden: `stats --socket` now.
struct AgentStatsAlias: Command {
    static let about = CommandInfo(name: "agent-stats", abstract: "Now 'stats --socket'.",
                                                    hidden: true)

    var dataDirectory: String?
    var socket: String?

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.option("--data-dir", valueName: "dir", help: "The agent's data directory.") { $0.dataDirectory = $1 }
        arguments.option("--socket", valueName: "path", help: "The agent's socket.") { $0.socket = $1 }
    }

    func run() throws {
        writeStandardError("sagalane: 'agent-stats' is now 'stats --socket PATH'; the old name will go in a later version\n")
        let path = socket ?? AgentOptions(dataDirectory: dataDirectory ?? AgentOptions.defaultDataDirectory).resolvedSocketPath
        emit(try agentCounters(socket: path).serialized + "\n")
    }
}
