/// Which long operation a progress report is about.
public enum LongOperation: String, Sendable {
    /// Migrating the log's schema when it opens; counted in schema versions.
    case migration
    /// Start-up recovery of the unfinished sagas; counted in sagas.
    case recovery
}

/// Told how far a long operation has got: `done` of `total` (in the operation's unit). The
/// first call has `done` 0, each later one a `done` no smaller than the last, and the last one
/// `done == total`; an operation with nothing to do makes no call. It runs on the thread doing
/// the work and must return quickly. The library shows nothing itself: what to show, and
/// where, is the caller's (a command-line tool draws a line on a terminal).
public typealias ProgressHandler = @Sendable (_ operation: LongOperation, _ done: Int, _ total: Int) -> Void
