import CSQLite

/// An error from the log: the SQLite extended result code (or one of ours, negative), the
/// message, and the SQL that failed.
public struct SagaLogError: Error, Sendable, Equatable, CustomStringConvertible {
    /// SQLite's extended result code, or a negative code of sagalane's own (see the statics).
    public var code: Int32
    public var message: String
    /// The statement that failed, when one did.
    public var sql: String?

    public init(code: Int32, message: String, sql: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    /// The log was closed.
    public static let closedCode: Int32 = -1
    /// The row to update does not exist.
    public static let notFoundCode: Int32 = -2
    /// A write was attempted through a read-only open.
    public static let readOnlyOpenCode: Int32 = -3
    /// The database's schema is newer than this build understands.
    public static let schemaTooNewCode: Int32 = -4
    /// The writer thread could not be started (a thread limit).
    public static let threadStartCode: Int32 = -5

    static func closed() -> SagaLogError { SagaLogError(code: closedCode, message: "the log is closed") }

    /// The primary result code (the low byte of an extended SQLite code).
    public var primaryCode: Int32 { code >= 0 ? code & 0xFF : code }

    public var isClosed: Bool { code == Self.closedCode }
    public var isNotFound: Bool { code == Self.notFoundCode }
    public var isReadOnly: Bool { code == Self.readOnlyOpenCode || primaryCode == SQLITE_READONLY }
    public var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }
    public var isConstraint: Bool { primaryCode == SQLITE_CONSTRAINT }
    public var isCorrupt: Bool { primaryCode == SQLITE_CORRUPT || primaryCode == SQLITE_NOTADB }
    public var isFull: Bool { primaryCode == SQLITE_FULL }
    public var isCantOpen: Bool { primaryCode == SQLITE_CANTOPEN }

    /// Whether the failure is about the record itself (a broken constraint, a missing row, a
    /// value too big) rather than about the database or the machine.
    var concernsOnlyItsRecord: Bool {
        isNotFound || [SQLITE_CONSTRAINT, SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE].contains(primaryCode)
    }

    public var description: String {
        var text: String
        if code >= 0 {
            text = "SQLite error \(code) (\(String(cString: sqlite3_errstr(code)))): \(message)"
        } else {
            text = message
        }
        if let sql { text += " — while executing: \(sql)" }
        return text
    }
}
