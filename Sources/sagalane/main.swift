// sagalane: the operator's tool for a sagalane log. Reads are done through a read-only open,
// so they work while the owning process runs and never change the file.
//
//   sagalane recent DB [--limit N]     the most recent sagas, most recent first (JSON)
//   sagalane unresolved DB [--limit N] sagas to look at (running, compensating,
//                                      failed_compensation), with steps
//   sagalane saga DB ID                one saga with its steps
//   sagalane stats DB                  sagas and lane jobs counted by state, file sizes
//   sagalane jobs DB [--lane NAME] [--state STATE] [--limit N]
//                                      lane jobs, most recent activity first (JSON)
//   sagalane vacuum DB --older-than D  delete final sagas that ended over D ago (30s, 15m,
//                                      12h, 7d); prints how many. Opens the log for writing:
//                                      refused while a runtime writes it, and never creates one
//   sagalane agent [--data-dir DIR] [--socket PATH] [--sagas FILE] [--allow-uid UID]...
//                  [--lane NAME=N]... [--max-frame BYTES] [--buffer-expiry D] [--reservation D]
//                                      serve a runtime over a Unix socket (docs/protocol.md)
//   sagalane agent-stats [--data-dir DIR] [--socket PATH]
//                                      a running agent's counters (JSON)
//   sagalane version
import Glibc
import SagaLaneAgent
import SagaLaneJSON
import SagaLaneLog
import SagaLanePipes
import SagaLaneSupport
import SagaLaneWire

private let usage = """
    usage: sagalane recent DB [--limit N]
           sagalane unresolved DB [--limit N]
           sagalane saga DB ID
           sagalane stats DB
           sagalane jobs DB [--lane NAME] [--state queued|running|finished|cancelled|failed] [--limit N]
           sagalane vacuum DB --older-than DURATION   (e.g. 30s, 15m, 12h, 7d)
           sagalane agent [--data-dir DIR] [--socket PATH] [--sagas FILE] [--allow-uid UID]...
                          [--lane NAME=N]... [--max-frame BYTES] [--buffer-expiry DURATION]
                          [--reservation DURATION] [--exit-when-ready]
           sagalane agent-stats [--data-dir DIR] [--socket PATH]
           sagalane version

    Reads open the log read-only: safe while the process that owns it runs, and from a
    folder this user cannot write. Vacuum writes: it needs the log's owner stopped.
    """

private func fail(_ message: String, status: Int32 = 2) -> Never {
    writeStandardError("sagalane: \(message)\n")
    exit(status)
}

/// "7d" → 7 days, "250ms" → 250 milliseconds; a bare number is seconds.
private func duration(_ text: String) -> Duration? {
    if text.hasSuffix("ms"), let value = Int64(text.dropLast(2)), value >= 0, value <= Int64.max / 1_000_000 {
        return .milliseconds(value)
    }
    let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var digits = Substring(text)
    var scale: Int64 = 1
    if let last = text.last, let unit = units[last] {
        scale = unit
        digits = digits.dropLast()
    }
    guard let value = Int64(digits), value >= 0, value <= Int64.max / scale / 1000 else { return nil }
    return .seconds(value * scale)
}

/// `sagalane agent ...`: the options, or a usage failure.
private func agentOptions(_ arguments: [String]) -> (AgentOptions, exitWhenReady: Bool) {
    var options = AgentOptions(dataDirectory: AgentOptions.defaultDataDirectory)
    var exitWhenReady = false
    var rest = arguments[...]
    while let option = rest.popFirst() {
        if option == "--exit-when-ready" { exitWhenReady = true; continue }
        guard let value = rest.popFirst() else { fail("\(option) needs a value\n\(usage)") }
        switch option {
        case "--data-dir": options.dataDirectory = value
        case "--socket": options.socketPath = value
        case "--sagas": options.sagasFile = value
        case "--allow-uid":
            guard let uid = UInt32(value) else { fail("--allow-uid takes a numeric user id, not '\(value)'") }
            options.allowedUIDs.insert(uid)
        case "--lane":
            let parts = value.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, let bound = Int(parts[1]), (1...1024).contains(bound) else {
                fail("--lane takes NAME=N with N from 1 to 1024, not '\(value)'")
            }
            options.lanes.append((String(parts[0]), bound))
        case "--max-frame":
            guard let bytes = Int(value), bytes >= 64, bytes <= 1 << 30 else { fail("--max-frame takes 64 to 1073741824 bytes, not '\(value)'") }
            options.maxFrameSize = bytes
        case "--buffer-expiry":
            guard let expiry = duration(value) else { fail("--buffer-expiry takes a duration (250ms, 30s, 5m), not '\(value)'") }
            options.bufferExpiry = expiry
        case "--reservation":
            guard let reservation = duration(value), reservation > .zero else { fail("--reservation takes a duration (500ms, 60s, 5m), not '\(value)'") }
            options.reservation = reservation
        default:
            fail("agent does not take '\(option)'\n\(usage)")
        }
    }
    return (options, exitWhenReady)
}

/// `sagalane agent-stats ...`: asks a running agent for its counters.
private func agentStats(_ arguments: [String]) throws(SagaLaneError) {
    var dataDirectory = AgentOptions.defaultDataDirectory
    var socket: String?
    var rest = arguments[...]
    while let option = rest.popFirst() {
        guard let value = rest.popFirst() else { fail("\(option) needs a value\n\(usage)") }
        switch option {
        case "--data-dir": dataDirectory = value
        case "--socket": socket = value
        default: fail("agent-stats takes [--data-dir DIR] [--socket PATH], not '\(option)'")
        }
    }
    let path = socket ?? AgentOptions(dataDirectory: dataDirectory).resolvedSocketPath
    let client = try BlockingFrameSocket(path: path)
    try client.send(WireFrame(id: 1, .hello(version: WireVersion.current, name: "sagalane agent-stats", targets: [])).serialized)
    try client.send(WireFrame(id: 2, .agentStats).serialized)
    while let line = try client.readFrame(timeoutMilliseconds: 5000) {
        let parsed = line.withUnsafeBytes { bytes -> Result<WireFrame, WireError> in
            do throws(WireError) { return .success(try WireFrame.parse(bytes)) } catch { return .failure(error) }
        }
        guard case .success(let frame) = parsed else {
            fail("the agent at \(path) sent a frame that is not its protocol: \(line.count) bytes", status: 1)
        }
        switch frame.message {
        case .ok(let fields) where frame.id == 2:
            printJSON(fields["stats"] ?? .null)
            return
        case .error(let code, let message, _):
            fail("the agent at \(path) refused: \(code): \(message)", status: 1)
        default:
            continue
        }
    }
    fail("the agent at \(path) did not answer", status: 1)
}

/// The log at `path`. A read-only open starts no thread and writes nothing; the read-write
/// one (vacuum) never creates a log.
private func open(_ path: String, readOnly: Bool) -> SagaLog {
    do {
        return readOnly ? try SagaLog.openReadOnly(path: path) : try SagaLog.open(path: path, create: false)
    } catch {
        // Most messages name the file already.
        fail(error.message.contains(path) ? error.message : "cannot open \(path): \(error.message)", status: 1)
    }
}

private func printJSON(_ value: JSON) {
    print(value.serialized)
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("a command is needed\n\(usage)") }
arguments.removeFirst()

do {
    switch command {
    case "version", "--version":
        print("sagalane \(SagaLaneVersion.string)")
    case "-h", "--help", "help":
        print(usage)
    case "agent":
        let (options, exitWhenReady) = agentOptions(arguments)
        exit(runAgent(options, exitWhenReady: exitWhenReady))
    case "agent-stats":
        try agentStats(arguments)
    case "recent":
        guard let path = arguments.first else { fail("recent needs the database path\n\(usage)") }
        var limit = 20
        if arguments.count == 3, arguments[1] == "--limit", let n = Int(arguments[2]), n >= 0 {
            limit = n
        } else if arguments.count != 1 {
            fail("recent takes DB [--limit N]\n\(usage)")
        }
        let log = open(path, readOnly: true)
        printJSON(.array(try log.snapshotRecent(limit: limit).map(\.json)))
        log.close()
    case "unresolved":
        guard let path = arguments.first else { fail("unresolved needs the database path\n\(usage)") }
        var limit = 1000
        if arguments.count == 3, arguments[1] == "--limit", let n = Int(arguments[2]), n >= 0 {
            limit = n
        } else if arguments.count != 1 {
            fail("unresolved takes DB [--limit N]\n\(usage)")
        }
        let log = open(path, readOnly: true)
        printJSON(.array(try log.unresolvedSagas(limit: limit).map(\.json)))
        log.close()
    case "saga":
        guard arguments.count == 2, let id = UInt64(arguments[1]) else { fail("saga takes DB ID\n\(usage)") }
        let log = open(arguments[0], readOnly: true)
        guard let saga = try log.saga(id: id) else { fail("\(arguments[0]) has no saga \(id)", status: 1) }
        printJSON(saga.json)
        log.close()
    case "stats":
        guard arguments.count == 1 else { fail("stats takes DB\n\(usage)") }
        let log = open(arguments[0], readOnly: true)
        printJSON(try log.stats().json)
        log.close()
    case "jobs":
        guard let path = arguments.first else { fail("jobs needs the database path\n\(usage)") }
        var lane: String?
        var state: JobState?
        var limit = 50
        var rest = arguments.dropFirst()
        while let option = rest.popFirst() {
            guard let value = rest.popFirst() else { fail("\(option) needs a value\n\(usage)") }
            switch option {
            case "--lane": lane = value
            case "--state":
                guard let known = JobState(rawValue: value) else { fail(JobState.unknownNameMessage(value)) }
                state = known
            case "--limit":
                guard let n = Int(value), n >= 0 else { fail("--limit takes a count, not '\(value)'") }
                limit = n
            default: fail("jobs takes DB [--lane NAME] [--state STATE] [--limit N], not '\(option)'\n\(usage)")
            }
        }
        let log = open(path, readOnly: true)
        printJSON(.array(try log.recentJobs(lane: lane, state: state, limit: limit).map(\.json)))
        log.close()
    case "vacuum":
        guard arguments.count == 3, arguments[1] == "--older-than", let age = duration(arguments[2]) else {
            fail("vacuum takes DB --older-than DURATION\n\(usage)")
        }
        let log = open(arguments[0], readOnly: false)
        print(try await log.vacuum(olderThan: Timestamp.now().advanced(by: .zero - age)))
        log.close()
    default:
        fail("unknown command '\(command)'\n\(usage)")
    }
} catch let error as SagaLaneError {
    fail(error.message, status: 1)
} catch {
    fail("\(error)", status: 1)
}
