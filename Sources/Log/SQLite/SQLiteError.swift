import CSQLite
import SagaLaneSupport

/// An error SQLite returned: exactly its extended result code, its message, and the SQL that
/// failed. It travels as the `underlying` error of the `SagaLaneError` that reports it.
public struct SQLiteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// SQLite's extended result code (e.g. `SQLITE_CONSTRAINT_PRIMARYKEY`).
    public var extendedCode: Int32
    /// `sqlite3_errmsg` at the time of the failure.
    public var message: String
    /// The statement that failed, when one did.
    public var sql: String?

    public init(extendedCode: Int32, message: String, sql: String? = nil) {
        self.extendedCode = extendedCode
        self.message = message
        self.sql = sql
    }

    /// The primary result code (the low byte of the extended code).
    public var primaryCode: Int32 { extendedCode & 0xFF }

    public var description: String {
        var text = "SQLite error \(extendedCode) (\(String(cString: sqlite3_errstr(extendedCode)))): \(message)"
        if let sql { text += " — while executing: \(sql)" }
        return text
    }

    /// The sagalane code for this failure.
    var code: SagaLaneError.Code {
        switch primaryCode {
        case SQLITE_BUSY, SQLITE_LOCKED: return .busy
        case SQLITE_READONLY, SQLITE_PERM, SQLITE_AUTH: return .readOnly
        case SQLITE_CORRUPT, SQLITE_NOTADB: return .corrupt
        case SQLITE_FULL: return .full
        case SQLITE_CANTOPEN: return .cantOpen
        case SQLITE_NOMEM: return .noMemory
        case SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE: return .invalidArgument
        case SQLITE_CONSTRAINT:
            // The extended codes' macros are expressions Swift does not import.
            switch extendedCode >> 8 {
            case 6, 8, 10: return .exists          // PRIMARYKEY, UNIQUE, ROWID
            case 3: return .notFound               // FOREIGNKEY: the row it refers to is missing
            default: return .invalidArgument       // CHECK, NOTNULL, ...
            }
        default: return .log
        }
    }
}

extension SagaLaneError {
    /// Reports `error`, with a message saying what was being done.
    init(_ error: SQLiteError, doing what: String? = nil) {
        self.init(error.code, what.map { "\($0): \(error)" } ?? error.description, underlying: error)
    }

    /// The SQLite error underneath, when this error came from SQLite.
    public var sqlite: SQLiteError? { underlying as? SQLiteError }

    static func logClosed() -> SagaLaneError { SagaLaneError(.closed, "the log is closed") }
}
