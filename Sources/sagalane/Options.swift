import Glibc
import SagaLaneLog
import SagaLaneSupport

/// A failed command: its message for standard error and the exit status (1 when the operation
/// failed, 2 when a file or an argument is not what the command takes).
struct CommandFailure: Error {
    var message: String
    var status: Int32

    static func operation(_ message: String) -> CommandFailure { CommandFailure(message: message, status: 1) }
    static func usage(_ message: String) -> CommandFailure { CommandFailure(message: message, status: 2) }
}

/// The log a command reads, named on the command line.
struct LogArgument: ArgumentGroup {
    var database = ""

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.argument(valueName: "db", help: "The log's file: the SQLite database the runtime writes (e.g. app.db).") {
            $0.database = $1
        }
    }

    /// Opens the log read-only: no thread, no write, no file made beside it; it works while
    /// the process that owns the log writes it.
    func openForReading() throws(CommandFailure) -> SagaLog {
        try refuseFolder()
        do {
            return try SagaLog.openReadOnly(path: database)
        } catch {
            throw explain(error, path: database, writing: false)
        }
    }

    /// Opens the log for writing, never making one: refused while another process writes it.
    /// An older log is migrated, with progress on a terminal.
    func openForWriting() throws(CommandFailure) -> SagaLog {
        try refuseFolder()
        do {
            return try SagaLog.open(path: database, create: false, progress: LongOperationProgress(log: database).handler)
        } catch {
            throw explain(error, path: database, writing: true)
        }
    }
}

extension LogArgument {
    /// A folder is never a log (and a writer would put its lock file beside it).
    private func refuseFolder() throws(CommandFailure) {
        var info = stat()
        if stat(database, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR {
            throw .usage("\(database) is a folder, not a log: name the log's file (the database the runtime writes)")
        }
    }
}

/// What to say when a log cannot be opened or read, and with which status.
func explain(_ error: SagaLaneError, path: String, writing: Bool) -> CommandFailure {
    // Most of the library's messages name the file already.
    let message = error.message.containsExactly(path) ? error.message : "\(path): \(error.message)"
    switch error.code {
    case .cantOpen:
        var info = stat()
        if stat(path, &info) != 0 {
            return .usage("there is no log at \(path): check the path (sagalane never creates a log; the program "
                          + "that writes it does)")
        }
        return .usage("\(message): is it a sagalane log?")
    case .corrupt:
        return .usage(message.containsExactly("sagalane log") ? message : "\(path) is not a sagalane log: \(error.message)")
    case .locked:
        return .operation("\(message); stop that process and run this again (--dry-run shows what a vacuum would "
                          + "delete without writing)")
    case .readOnly where writing:
        return .operation("\(message); run this as the log's owner")
    case .busy:
        return .operation("\(message); try again in a moment")
    default:
        return .operation(message)
    }
}

/// A failure while reading an open log.
func failure(_ error: SagaLaneError, _ log: SagaLog) -> CommandFailure {
    explain(error, path: log.path ?? "the log", writing: !log.isReadOnly)
}

/// `--format`: a table on a terminal, JSON otherwise.
struct OutputOptions: ArgumentGroup {
    var format: OutputFormat?

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.option("--format", valueName: "format",
                         help: "How to print: table (aligned columns), json (one JSON document) or jsonl (one JSON value a line). "
                             + "Default: table on a terminal, json otherwise.") { $0.format = $1 }
    }

    var resolved: OutputFormat { format ?? (isatty(1) == 1 ? .table : .json) }
}

enum OutputFormat: String, ArgumentChoice {
    case table, json, jsonl
}

/// `--limit`, with the listing's own default.
func validLimit(_ text: String) throws -> Int {
    guard let limit = Int(text), limit >= 1 else {
        throw ValidationError("--limit takes a count of 1 or more, not '\(text)'")
    }
    return limit
}

// MARK: Times and durations

/// "250ms", "30s", "15m", "12h", "7d", "2w"; a bare number is seconds.
func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)]
    var digits = Substring(text)
    var scale: Int64 = 1000
    for (suffix, milliseconds) in units where text.hasSuffix(suffix) {
        digits = digits.dropLast(suffix.count)
        scale = milliseconds
        break
    }
    guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let value = Int64(digits), value >= 0,
          value <= Int64.max / scale else { return nil }
    return .milliseconds(value * scale)
}

/// `--older-than`'s value.
func durationArgument(_ text: String) throws -> Duration {
    guard let duration = parseDuration(text) else {
        throw ValidationError("'\(text)' is not a duration: write a count and a unit, as in 30s, 15m, 12h, 7d or 2w")
    }
    return duration
}

/// `--since` and `--until`: an instant, or a duration before now.
func timeArgument(_ text: String) throws -> Timestamp {
    if text == "now" { return Timestamp.now() }
    if let ago = parseDuration(text) { return Timestamp.now().advanced(by: .zero - ago) }
    if text.utf8.count == 10, let day = Timestamp(iso8601: text + "T00:00:00Z") { return day }
    if let instant = Timestamp(iso8601: text) { return instant }
    throw ValidationError("'\(text)' is not a time: write a duration before now (30m, 12h, 7d), a day (2026-11-24) "
                          + "or an instant in UTC (2026-11-24T12:59:00Z)")
}

/// A `--state` value: one state or several separated by commas.
func statesArgument<State: RawRepresentable & CaseIterable>(_ text: String, kind: String) throws -> [State] where State.RawValue == String {
    var states: [State] = []
    for name in text.split(separator: ",", omittingEmptySubsequences: false) {
        guard let state = State(rawValue: String(name)) else {
            throw ValidationError("unknown \(kind) state '\(name)' (one of \(State.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if !states.contains(where: { $0.rawValue == state.rawValue }) { states.append(state) }
    }
    return states
}

/// The time filters every listing takes.
struct TimeOptions: ArgumentGroup {
    var since: Timestamp?
    var until: Timestamp?

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.option("--since", valueName: "time",
                         help: "Only what was last active at or after TIME: a duration before now (30m, 12h, 7d), "
                             + "a day (2026-11-24) or an instant in UTC (2026-11-24T12:59:00Z).",
                         transform: timeArgument) { $0.since = $1 }
        arguments.option("--until", valueName: "time", help: "Only what was last active before TIME (same forms as --since).",
                         transform: timeArgument) { $0.until = $1 }
    }

    func validate() throws {
        if let since, let until, until <= since {
            throw ValidationError("--until (\(until.iso8601)) must come after --since (\(since.iso8601))")
        }
    }
}
