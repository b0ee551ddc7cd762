import Glibc

/// How much a diagnostic message matters.
public enum DiagnosticLevel: Int, Sendable, Comparable, CustomStringConvertible {
    /// Routine facts an operator may want in a log (a sweep that purged rows).
    case info = 1
    /// Something went wrong that no caller can be told of, but nothing was lost (a trigger
    /// whose saga could not start, a lane short of worker threads).
    case warning = 2
    /// Something the runtime could not do and an operator must look at (the log stopped
    /// taking sagas' ends).
    case error = 3

    public static func < (a: DiagnosticLevel, b: DiagnosticLevel) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }
}

/// Where sagalane's own messages go: the few things an operator should hear about that no
/// caller can be told. Every component that has something to say is given one of these, so a
/// host routes them all into its own logs by setting one handler (as `SQLITE_CONFIG_LOG` does
/// for SQLite). The default writes `sagalane: <message>` lines to standard error.
public struct Diagnostics: Sendable {
    private let handler: @Sendable (DiagnosticLevel, String) -> Void

    /// - Parameter handler: Called with each message, on whichever thread has it to say;
    ///   it must not block for long nor call back into the component that reports.
    public init(_ handler: @escaping @Sendable (DiagnosticLevel, String) -> Void) {
        self.handler = handler
    }

    /// Lines `sagalane: <message>` on standard error.
    public static let standardError = Diagnostics { _, message in
        writeStandardError("sagalane: \(message)\n")
    }

    /// Drops every message (for tests that provoke failures on purpose).
    public static let discard = Diagnostics { _, _ in }

    public func report(_ level: DiagnosticLevel, _ message: String) { handler(level, message) }
    public func info(_ message: String) { handler(.info, message) }
    public func warning(_ message: String) { handler(.warning, message) }
    public func error(_ message: String) { handler(.error, message) }
}

/// Writes `text` to standard error unbuffered. (Glibc's `stderr` is a mutable global, which
/// Swift 6 refuses to touch from arbitrary contexts.)
public func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
        offset += n
    }
}
