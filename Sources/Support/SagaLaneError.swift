/// Every error sagalane reports: a code callers switch on, a message for people, and the
/// error underneath when there is one (SQLite's, libuv's, the JSON parser's, a host's).
///
/// The code is a struct around a private name rather than an enum, so new codes can be added
/// without breaking a caller's `switch`. The C API maps each code to one `SL_E*` value.
public struct SagaLaneError: Error, Sendable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }

        /// An argument is out of range, empty, or not what the call takes.
        public static let invalidArgument = Code("invalid argument")
        /// Memory could not be allocated.
        public static let noMemory = Code("out of memory")
        /// A text is not acceptable JSON.
        public static let json = Code("malformed JSON")
        /// A text is not valid UTF-8.
        public static let utf8 = Code("invalid UTF-8")
        /// No such name or id: a saga type, saga, target, lane, job or row.
        public static let notFound = Code("not found")
        /// A name or id is already in use.
        public static let exists = Code("already exists")
        /// The object was closed (or shut down) before or during the call.
        public static let closed = Code("closed")
        /// The call is not valid in the object's state or on the calling thread.
        public static let state = Code("invalid state")
        /// The callee refused (a saga type's factory refused its input, a target a command).
        public static let refused = Code("refused")
        /// The log failed for a reason none of the more precise codes names.
        public static let log = Code("log error")
        /// The database stayed locked by another connection past the busy timeout.
        public static let busy = Code("database busy")
        /// The database, its folder or the open is read-only.
        public static let readOnly = Code("read-only")
        /// The file is not a sagalane log, or is damaged.
        public static let corrupt = Code("corrupt or not a sagalane log")
        /// The disk is full.
        public static let full = Code("disk full")
        /// The log could not record a saga's end: new sagas are refused.
        public static let unhealthy = Code("log unhealthy")
        /// The job is not queued (it runs, waits out a retry, or is being recorded).
        public static let notQueued = Code("not queued")
        /// The work was cancelled.
        public static let cancelled = Code("cancelled")
        /// A job failed.
        public static let jobFailed = Code("job failed")
        /// The event loop (libuv) failed.
        public static let loop = Code("event loop error")
        /// The database file cannot be opened.
        public static let cantOpen = Code("cannot open")
        /// The system refused a thread (a process or user thread limit, or memory).
        public static let thread = Code("thread refused")
        /// Too much is waiting already (e.g. sagas to launch); try again later.
        public static let again = Code("try again")
        /// A wait ended before what it waited for happened.
        public static let timedOut = Code("timed out")
        /// The log is open for writing by another runtime (in another process, or this one):
        /// one log has one writer.
        public static let locked = Code("log locked by another writer")

        public var description: String { name }
    }

    public var code: Code
    public var message: String
    /// The error this one reports, when it comes from below (e.g. a `SQLiteError`).
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "\(code): \(message)" }
}
