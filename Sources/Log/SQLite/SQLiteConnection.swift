import CSQLite
import Glibc
import SagaLaneSupport
import Synchronization

/// A value bound to or read from a statement.
enum SQLValue {
    case int(Int64)
    case text(String)
    case blob([UInt8])
    case null

    static func optional(_ text: String?) -> SQLValue { text.map(SQLValue.text) ?? .null }
}

/// One SQLite connection with a cache of prepared statements. Not thread-safe: each connection
/// has one owner (the writer thread, or whoever holds the read lock).
final class SQLiteConnection: @unchecked Sendable {
    private(set) var db: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    /// Statements whose SQL is a literal, by the address of its text: found without hashing
    /// the text (the writer's hot path runs several per saga).
    private var literalStatements: [UnsafeRawPointer: OpaquePointer] = [:]
    /// Where `run` copies its text arguments, so SQLite can take them as static text: bound
    /// with SQLITE_TRANSIENT, each text argument costs SQLite a free of the last run's copy, an
    /// allocation and a copy. Statements may keep pointers into it between runs (bindings
    /// outlive a reset); every run binds all its parameters again before stepping, and the
    /// space is only freed or moved after every cached statement's bindings are cleared.
    private var scratch: UnsafeMutableRawPointer?
    private var scratchCapacity = 0
    /// Past this size the space is given back after the run that needed it.
    private static let scratchKept = 1 << 20

    init(path: String, flags: Int32) throws(SagaLaneError) {
        _ = Self.configured
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX, nil)
        if rc != SQLITE_OK {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            let code = handle.map { sqlite3_extended_errcode($0) } ?? rc
            sqlite3_close_v2(handle)
            throw SagaLaneError(SQLiteError(extendedCode: code, message: message), doing: "cannot open \(path)")
        }
        db = handle
        sqlite3_extended_result_codes(handle, 1)
    }

    deinit { close() }

    /// Process-wide settings, made once before the first connection opens. SQLite's memory
    /// statistics take a global mutex on every allocation and free (the writer makes some 75 of
    /// each per saga, SQLite as Debian builds it having no lookaside memory); nothing here reads
    /// them. When the host initialized SQLite first, its settings stand (the call is refused).
    private static let configured: Void = {
        _ = sl_sqlite_config_memstatus(0)
    }()

    func close() {
        for statement in statements.values { sqlite3_finalize(statement) }
        statements.removeAll()
        for statement in literalStatements.values { sqlite3_finalize(statement) }
        literalStatements.removeAll()
        if let db { sqlite3_close_v2(db) }
        db = nil
        scratch?.deallocate()
        scratch = nil
        scratchCapacity = 0
    }

    /// Makes the scratch space hold at least `byteCount` bytes (none for 0). No statement is
    /// left bound to the old space.
    private func resizeScratch(_ byteCount: Int) {
        // Not a query whose rows are being read (the caller may be running this between
        // them): its registers may share its bindings' memory, and only `run`'s statements,
        // reset by now, are bound to the scratch space.
        for statement in statements.values where sqlite3_stmt_busy(statement) == 0 { sqlite3_clear_bindings(statement) }
        for statement in literalStatements.values where sqlite3_stmt_busy(statement) == 0 { sqlite3_clear_bindings(statement) }
        scratch?.deallocate()
        scratch = nil
        scratchCapacity = 0
        if byteCount > 0 {
            let capacity = max(byteCount, 4096)
            scratch = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
            scratchCapacity = capacity
        }
    }

    func error(_ sql: String?) -> SagaLaneError {
        guard let db else { return .logClosed() }
        return SagaLaneError(SQLiteError(extendedCode: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)), sql: sql))
    }

    /// Runs SQL text with no parameters (DDL, pragmas, transaction control).
    func execute(_ sql: String) throws(SagaLaneError) {
        guard let db else { throw .logClosed() }
        if sqlite3_exec(db, sql, nil, nil, nil) != SQLITE_OK { throw error(sql) }
    }

    /// Whether no transaction is open (SQLite rolled one back, or none was begun).
    var isAutocommit: Bool { db.map { sqlite3_get_autocommit($0) != 0 } ?? true }

    /// Whether SQLite opened the main database read-only, whatever the open asked for (a
    /// file this user cannot write opens read-only without a word).
    var isReadOnly: Bool { db.map { sqlite3_db_readonly($0, "main") == 1 } ?? true }

    /// Runs `body` in one read transaction, so its queries see one state of the database.
    func readTransaction<T>(_ body: () throws(SagaLaneError) -> T) throws(SagaLaneError) -> T {
        guard isAutocommit else { return try body() }
        try execute("BEGIN")
        do throws(SagaLaneError) {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            if !isAutocommit { try? execute("ROLLBACK") }
            throw error
        }
    }

    func setBusyTimeout(milliseconds: Int32) {
        sqlite3_busy_timeout(db, milliseconds)
    }

    /// The prepared statement for `sql`, from the cache.
    private func prepared(_ sql: String) throws(SagaLaneError) -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        let statement = try prepare(sql)
        statements[sql] = statement
        return statement
    }

    /// The prepared statement for the literal `sql`, from the cache.
    private func prepared(_ sql: StaticString) throws(SagaLaneError) -> OpaquePointer {
        let key = UnsafeRawPointer(sql.utf8Start)
        if let statement = literalStatements[key] { return statement }
        let statement = try prepare(sql.description)
        literalStatements[key] = statement
        return statement
    }

    private func prepare(_ sql: String) throws(SagaLaneError) -> OpaquePointer {
        guard let db else { throw .logClosed() }
        var statement: OpaquePointer?
        if sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) != SQLITE_OK {
            throw error(sql)
        }
        return statement!
    }

    /// Binds every parameter of `statement`: `arguments` in order, NULL for any past them (as
    /// a fresh statement has). Bindings are never cleared between runs, since each run binds
    /// them all: a text parameter's buffer inside SQLite is reused by the next run rather than
    /// freed and allocated again.
    ///
    /// With `copyingTextToScratch`, text goes into the scratch space and is bound as static
    /// text: only for a statement that is stepped to its end and reset before anything else
    /// runs on the connection (a query's rows are read in between, by code that may run
    /// other statements).
    private func bind(_ statement: OpaquePointer, _ arguments: [SQLValue], copyingTextToScratch: Bool = false,
                      sql: @autoclosure () -> String) throws(SagaLaneError) {
        let parameters = Int(sqlite3_bind_parameter_count(statement))
        guard arguments.count <= parameters else {
            throw SagaLaneError(.invalidArgument, "\(arguments.count) values for the \(parameters) parameters of: \(sql())")
        }
        for index in arguments.count..<parameters { sqlite3_bind_null(statement, Int32(index + 1)) }
        var offset = 0
        if copyingTextToScratch {
            var needed = 1
            for case .text(let v) in arguments { needed += v.utf8.count }
            if needed > scratchCapacity { resizeScratch(needed) }
        }
        for (i, argument) in arguments.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch argument {
            case .int(let v): rc = sqlite3_bind_int64(statement, index, v)
            case .text(var v) where copyingTextToScratch:
                // SQLITE_STATIC (nil): SQLite reads the text where it is until the next reset.
                let start = scratch! + offset
                let count = v.withUTF8 { bytes in
                    if let base = bytes.baseAddress { start.copyMemory(from: base, byteCount: bytes.count) }
                    return bytes.count
                }
                offset += count
                rc = sqlite3_bind_text64(statement, index, start.assumingMemoryBound(to: CChar.self), UInt64(count), nil, UInt8(SQLITE_UTF8))
            case .text(var v):
                // Straight from the string's UTF-8 (on the stack for a small string): passing
                // the String itself would copy it into a new heap array first. The 64-bit
                // length never traps; SQLite refuses what is over its limit with SQLITE_TOOBIG.
                rc = v.isEmpty
                    ? sqlite3_bind_text(statement, index, "", 0, sl_sqlite_transient())
                    : v.withUTF8 { sqlite3_bind_text64(statement, index, $0.baseAddress, UInt64($0.count), sl_sqlite_transient(), UInt8(SQLITE_UTF8)) }
            case .blob(let v):
                rc = v.withUnsafeBytes {
                    sqlite3_bind_blob64(statement, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64($0.count), sl_sqlite_transient())
                }
            case .null: rc = sqlite3_bind_null(statement, index)
            }
            if rc != SQLITE_OK { throw error(sql()) }
        }
    }

    /// Runs a statement that returns no rows.
    /// - Returns: The number of rows it changed.
    @discardableResult
    func run(_ sql: String, _ arguments: [SQLValue] = []) throws(SagaLaneError) -> Int {
        try run(prepared(sql), arguments, sql: sql)
    }

    /// As `run(_:_:)`, for SQL given as a literal: its statement is found by the literal's
    /// address, without hashing its text (the writer runs several per saga).
    /// - Returns: The number of rows it changed.
    @discardableResult
    func run(literal sql: StaticString, _ arguments: [SQLValue] = []) throws(SagaLaneError) -> Int {
        try run(prepared(sql), arguments, sql: sql.description)
    }

    private func run(_ statement: OpaquePointer, _ arguments: [SQLValue], sql: @autoclosure () -> String) throws(SagaLaneError) -> Int {
        defer {
            sqlite3_reset(statement)
            if scratchCapacity > Self.scratchKept { resizeScratch(0) }
        }
        try bind(statement, arguments, copyingTextToScratch: true, sql: sql())
        var rc = sqlite3_step(statement)
        while rc == SQLITE_ROW { rc = sqlite3_step(statement) }
        if rc != SQLITE_DONE { throw error(sql()) }
        return Int(sqlite3_changes(db))
    }

    /// Runs a query, mapping each row.
    func query<T>(_ sql: String, _ arguments: [SQLValue] = [], _ map: (Row) -> T) throws(SagaLaneError) -> [T] {
        try query(prepared(sql), arguments, sql: sql, map)
    }

    /// As `query(_:_:_:)`, for SQL given as a literal (see `run(literal:_:)`).
    func query<T>(literal sql: StaticString, _ arguments: [SQLValue] = [], _ map: (Row) -> T) throws(SagaLaneError) -> [T] {
        try query(prepared(sql), arguments, sql: sql.description, map)
    }

    private func query<T>(_ statement: OpaquePointer, _ arguments: [SQLValue], sql: @autoclosure () -> String,
                          _ map: (Row) -> T) throws(SagaLaneError) -> [T] {
        defer { sqlite3_reset(statement) }
        try bind(statement, arguments, sql: sql())
        var rows: [T] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return rows }
            if rc != SQLITE_ROW { throw error(sql()) }
            rows.append(map(Row(statement: statement)))
        }
    }

    /// One row of a query, valid only inside the mapping closure.
    struct Row {
        let statement: OpaquePointer

        func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

        func text(_ column: Int32) -> String {
            guard let p = sqlite3_column_text(statement, column) else { return "" }
            return String(cString: p)
        }

        func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }

        func optionalText(_ column: Int32) -> String? {
            sqlite3_column_type(statement, column) == SQLITE_NULL ? nil : text(column)
        }

        func blob(_ column: Int32) -> [UInt8] {
            let count = Int(sqlite3_column_bytes(statement, column))
            guard count > 0, let p = sqlite3_column_blob(statement, column) else { return [] }
            return Array(UnsafeRawBufferPointer(start: p, count: count))
        }

        func timestamp(_ column: Int32) -> Timestamp {
            Timestamp(iso8601: text(column)) ?? Timestamp(millisecondsSinceEpoch: 0)
        }

        func optionalTimestamp(_ column: Int32) -> Timestamp? {
            optionalText(column).flatMap { Timestamp(iso8601: $0) }
        }
    }
}

/// Collects the text of each statement a connection runs, for tests that check the plans of
/// the queries the log really makes (`SQLiteConnection.record(into:)`).
final class StatementRecorder: Sendable {
    private let texts = Mutex<[String]>([])

    var statements: [String] { texts.withLock { $0 } }

    fileprivate func add(_ text: String) { texts.withLock { $0.append(text) } }
}

extension SQLiteConnection {
    /// Has `recorder` collect the text of every statement this connection runs from now on,
    /// as it was prepared (`?` for each parameter); `nil` stops. The connection's owner calls
    /// it, and keeps `recorder` alive until it stops.
    func record(into recorder: StatementRecorder?) {
        guard let db else { return }
        guard let recorder else {
            sqlite3_trace_v2(db, 0, nil, nil)
            return
        }
        sqlite3_trace_v2(db, UInt32(SQLITE_TRACE_STMT), { _, context, _, text in
            guard let context, let text else { return 0 }
            Unmanaged<StatementRecorder>.fromOpaque(context).takeUnretainedValue()
                .add(String(cString: text.assumingMemoryBound(to: CChar.self)))
            return 0
        }, Unmanaged.passUnretained(recorder).toOpaque())
    }
}
