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
//   sagalane version
import Glibc
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

private let usage = """
    usage: sagalane recent DB [--limit N]
           sagalane unresolved DB [--limit N]
           sagalane saga DB ID
           sagalane stats DB
           sagalane jobs DB [--lane NAME] [--state queued|running|finished|cancelled|failed] [--limit N]
           sagalane vacuum DB --older-than DURATION   (e.g. 30s, 15m, 12h, 7d)
           sagalane version

    Reads open the log read-only: safe while the process that owns it runs, and from a
    folder this user cannot write. Vacuum writes: it needs the log's owner stopped.
    """

private func fail(_ message: String, status: Int32 = 2) -> Never {
    writeStandardError("sagalane: \(message)\n")
    exit(status)
}

/// "7d" → 7 days; a bare number is seconds.
private func duration(_ text: String) -> Duration? {
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
