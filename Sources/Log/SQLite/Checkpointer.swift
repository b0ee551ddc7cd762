import CSQLite
import Glibc
import SagaLaneSupport
import Synchronization

/// Who copies the write-ahead log into the database file while the log is open.
public enum Checkpointing: String, Sendable, CaseIterable {
    /// SQLite's own automatic checkpoint: the commit that takes the write-ahead log past 1000
    /// pages copies it into the database file and syncs both, on the writer thread, and every
    /// record queued meanwhile waits for it.
    case inline
    /// A thread with a connection of its own checkpoints after every 1000 pages written,
    /// without blocking the writer. The write-ahead log starts over only once everything in it
    /// is copied: when every commit syncs, a writer with nothing queued copies the few pages a
    /// pass left; writes that never pause allow no such moment, and when the log passes
    /// 64 MiB the writer waits while the thread copies what its last pass left and restarts it.
    case background
}

/// What the background checkpointer did, for tests and benchmarks.
package struct CheckpointStats: Sendable {
    /// Passive checkpoints run.
    package var passes = 0
    /// Times the write-ahead log was started over because it passed its bound.
    package var restarts = 0
    /// Checkpoints that failed or found the log busy (tried again at the next pass).
    package var failures = 0
    /// The longest write-ahead log a pass found, in pages.
    package var largestLogPages = 0
    /// Microseconds per passive checkpoint, and per restart (the writer waits that long).
    package var passMicros = PowerHistogram()
    package var restartMicros = PowerHistogram()
    /// Of each restart: microseconds waiting for the writer to leave its batch, and in the
    /// `RESTART` checkpoint itself; the frames that checkpoint found still to copy.
    package var restartWaitMicros = PowerHistogram()
    package var restartCheckpointMicros = PowerHistogram()
    package var restartFrames = PowerHistogram()
    /// Times the writer, with nothing queued, copied what the last pass left (so that its
    /// next batch started the log over), and microseconds each took.
    package var catchUps = 0
    package var catchUpMicros = PowerHistogram()
}

/// Checkpoints a log's write-ahead log from a thread and connection of its own, so the writer's
/// commits never pay for copying pages into the database file or for its syncs.
///
/// The write connection's WAL hook counts the pages each commit appends; every `passPages` of
/// them wake the thread for a `PASSIVE` checkpoint, which waits for no reader and no writer,
/// and then syncs the pages it copied into the database file.
/// A passive checkpoint copies what is committed, but the write-ahead log starts over (its
/// next writer writes from the top of the file) only when a write transaction begins with
/// everything in it copied; commits that keep coming while a pass syncs leave no such moment,
/// and the file grows. A writer that is idle between commits (they sync, and it has nothing
/// queued) makes that moment itself, copying the little a pass left (`writerIdle`). Under
/// steady writes, once the log is `limitPages` long the thread runs a second passive pass (so
/// little is left), syncs the database file and the log itself (so the restart's syncs find
/// only the pages copied and appended since), then has the writer wait before its next batch
/// (`giveWay`) while a `RESTART` checkpoint copies the rest and waits (up to its busy
/// timeout) for readers to leave the old frames; the writer's next transaction starts the
/// file over. The restart
/// begins once the writer is out of the batch it was in (the writer says when it enters and
/// leaves one), so it never sleeps in SQLite's busy handler while the writer waits for it.
/// Without the wait, a writer that begins batch after batch would leave the checkpoint's
/// polling for the write lock no gap to take it in. A writer that outruns the checkpoints
/// (twice the bound) waits for the next pass to end: the write-ahead log stays bounded unless
/// a reader keeps it.
final class Checkpointer: @unchecked Sendable {
    private struct State {
        var requested = false
        var stopping = false
        var restarting = false
        /// Whether the writer is inside a batch (from `giveWay` to `writerEnds`): a
        /// restart waits for it to be out rather than poll SQLite's write lock, whose busy
        /// handler sleeps 1, 2, 5, 10 ms… between tries while the writer, already done, waits.
        var writerInBatch = false
        /// Passes begun and passes finished so far.
        var started = 0
        var finished = 0
        /// How many of the write-ahead log's frames the last pass left copied.
        var copiedByLastPass = 0
    }

    private let connection: SQLiteConnection
    private let passPages: Int
    private let limitPages: Int
    /// Whether the writer catches up when idle (`writerIdle`): only when each commit syncs.
    private let catchUpWhenIdle: Bool
    private let state = ConditionLock(State())
    /// What the writer waits on in `giveWay` (the lock's own condition wakes the thread).
    private let writerMayGo: ConditionLock<State>.Condition
    /// What a restart waits on for the writer to leave its batch.
    private let writerLeft: ConditionLock<State>.Condition
    private var thread: OSThread?
    let stats = Mutex(CheckpointStats())

    /// The WAL hook's count, on the writer thread only: pages appended since the last wake, and
    /// the log's length in pages after the last commit (a shorter one means it started over).
    private var appendedSinceWake = 0
    private var lastLogPages = 0
    /// Set, on the writer thread, when a commit took the log to twice its bound (the writer
    /// outpaces the checkpoints): before its next batch the writer waits for the end of the
    /// pass this number counts, the next to begin, which restarts the log if readers let it.
    private var waitForPass: Int?
    /// The most a writer with nothing queued copies to catch up with a pass (`writerIdle`).
    static let catchUpPages = 128
    /// The pass after which the writer last caught up (`writerIdle`); writer thread only.
    private var caughtUpAfter = 0
    /// Set, on the checkpointer thread, when one of its own syncs failed (see `sync`).
    private var syncFailed = false

    /// Opens the checkpointer's own connection to `path` (a log in WAL mode, already migrated)
    /// and starts its thread.
    /// - Throws: what opening the connection throws; `.thread` when no thread can start.
    init(path: String, synchronous: String, passPages: Int, limitPages: Int,
         busyTimeoutMilliseconds: Int32 = 200) throws(SagaLaneError) {
        self.passPages = passPages
        self.limitPages = limitPages
        catchUpWhenIdle = synchronous == "FULL"
        writerMayGo = state.makeCondition()
        writerLeft = state.makeCondition()
        connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE)
        do throws(SagaLaneError) {
            // Its checkpoints sync as the writer's would (a new connection's default is FULL).
            try connection.execute("PRAGMA synchronous = \(synchronous)")
            // A first read opens the connection's view of the write-ahead log.
            _ = try connection.query("SELECT COUNT(*) FROM sqlite_master") { $0.int(0) }
            // Bounds how long a restart waits, the writer waiting with it, for readers; one
            // that times out is tried again at the next pass.
            connection.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
            thread = try OSThread(name: "sagalane-checkpoint", role: .other) { [self] in run() }
        } catch {
            connection.close()
            throw error
        }
    }

    /// Makes the writer's commits wake this checkpointer instead of checkpointing themselves.
    /// Writer thread (or before the writer starts); undone by `detach`.
    func attach(to writer: SQLiteConnection) throws(SagaLaneError) {
        try writer.execute("PRAGMA wal_autocheckpoint = 0")
        // A restart reuses the file from its top; one that a reader let grow far past the
        // bound is cut back at the restart after.
        let pageBytes = try writer.query("PRAGMA page_size") { $0.int(0) }.first ?? 4096
        try writer.execute("PRAGMA journal_size_limit = \(2 * Int64(limitPages) * pageBytes)")
        sqlite3_wal_hook(writer.db, { context, _, _, pages in
            Unmanaged<Checkpointer>.fromOpaque(context!).takeUnretainedValue().logGrew(to: Int(pages))
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Removes the hook `attach` set; the writer must do so before this object goes.
    func detach(from writer: SQLiteConnection) {
        sqlite3_wal_hook(writer.db, nil, nil)
    }

    /// Writer thread, after each commit: `pages` is the write-ahead log's length.
    private func logGrew(to pages: Int) {
        appendedSinceWake += pages >= lastLogPages ? pages - lastLogPages : pages
        lastLogPages = pages
        let overrun = pages >= 2 * limitPages && waitForPass == nil
        guard appendedSinceWake >= passPages || overrun else { return }
        appendedSinceWake = 0
        let (wake, next) = state.withLock { state -> (Bool, Int) in
            defer { state.requested = true }
            return (!state.requested, state.started + 1)
        }
        if overrun { waitForPass = next }
        if wake { state.condition.signal() }
    }

    /// Writer thread, before it begins a batch: waits while a restart runs, or, when the log
    /// passed twice its bound, for the next one; then marks the writer inside a batch.
    func giveWay() {
        if let pass = waitForPass {
            waitForPass = nil
            state.withLock(waitingOn: writerMayGo, until: { $0.finished >= pass || $0.stopping }) { _ in }
        }
        state.withLock(waitingOn: writerMayGo, until: { !$0.restarting || $0.stopping }) { $0.writerInBatch = true }
    }

    /// Writer thread, with nothing queued: once a pass has copied a log at least `passPages`
    /// long, the writer copies the few pages committed while that pass ran, so that its next
    /// batch starts the log over. Its commits then overwrite blocks the file already has,
    /// where appending would have each commit's sync also write the file's new size (a
    /// sequential saga's commits took a third longer); a writer that is never idle (steady
    /// load) leaves restarts to the bound. A record that comes in meanwhile waits for a copy
    /// of a few pages and one sync of the database file.
    /// Only when each commit syncs (`FULL`): otherwise commits pay nothing for the growth,
    /// and catching up would sync all the log written since the last pass, at length. And
    /// only when the pass left at most `catchUpPages`: more means commits came fast while it
    /// ran, and the next record would wait for the copy.
    func writerIdle(_ writer: SQLiteConnection) {
        guard catchUpWhenIdle, lastLogPages >= passPages else { return }
        let (finished, passCopied) = state.withLock { ($0.finished, $0.copiedByLastPass) }
        guard finished > caughtUpAfter else { return }
        caughtUpAfter = finished
        guard lastLogPages - passCopied <= Self.catchUpPages else { return }
        let started = monotonicMicros()
        // Passive: when the thread has begun another pass, this one is busy and does nothing.
        guard checkpoint(SQLITE_CHECKPOINT_PASSIVE, on: writer) != nil else { return }
        let micros = monotonicMicros() - started
        stats.withLock { stats in
            stats.catchUps += 1
            stats.catchUpMicros.add(micros)
        }
    }

    /// Writer thread, once its batch is committed or rolled back (or did not begin).
    func writerEnds() {
        let waited = state.withLock { state -> Bool in
            defer { state.writerInBatch = false }
            return state.restarting
        }
        if waited { writerLeft.signal() }
    }

    /// Stops the thread, after the pass it is running, and closes the connection. Idempotent.
    func stop() {
        state.withLock { $0.stopping = true }
        state.condition.signal()
        writerMayGo.broadcast()
        writerLeft.broadcast()
        thread?.join()
        thread = nil
        connection.close()
    }

    private func run() {
        while true {
            let go = state.withLock(until: { $0.requested || $0.stopping }) { state -> Bool in
                state.requested = false
                if !state.stopping { state.started += 1 }
                return !state.stopping
            }
            guard go else { return }
            let copied = pass()
            state.withLock { state in
                state.finished += 1
                state.copiedByLastPass = copied
            }
            writerMayGo.broadcast()
        }
    }

    /// One passive checkpoint; a restart after it when the log is past its bound.
    /// - Returns: How many frames of the log are copied by its end (0 after a restart).
    private func pass() -> Int {
        if syncFailed {
            stats.withLock { $0.failures += 1 }
            return 0
        }
        let started = monotonicMicros()
        let passive = checkpoint(SQLITE_CHECKPOINT_PASSIVE)
        syncCopies(of: passive)
        let passed = monotonicMicros()
        var restarted: Bool?, restartMicros = 0
        if let pages = passive?.log, pages >= limitPages, !syncFailed {
            let second = checkpoint(SQLITE_CHECKPOINT_PASSIVE)
            syncCopies(of: second)
            // What the writer appended meanwhile, so the restart's own sync of the log finds
            // little left to write.
            sync(SQLITE_FCNTL_JOURNAL_POINTER)
            if !syncFailed { (restarted, restartMicros) = restart(after: second) }
        }
        stats.withLock { stats in
            stats.passes += 1
            stats.passMicros.add(passed - started)
            if let pages = passive?.log { stats.largestLogPages = max(stats.largestLogPages, pages) } else { stats.failures += 1 }
            if let restarted {
                stats.restartMicros.add(restartMicros)
                if restarted { stats.restarts += 1 } else { stats.failures += 1 }
            }
        }
        return restarted == nil ? passive?.copied ?? 0 : 0
    }

    /// Has the writer wait while a `RESTART` checkpoint copies what `second` (the pass just
    /// before) left and starts the log over.
    /// - Returns: Whether it did, and how long the writer waited, in microseconds.
    private func restart(after second: (log: Int, copied: Int)?) -> (Bool, Int) {
        let held = monotonicMicros()
        // The writer finishes the batch it is in, then waits in `giveWay`: the restart
        // finds the write lock free, with no busy sleeps.
        state.withLock { $0.restarting = true }
        state.withLock(waitingOn: writerLeft, until: { !$0.writerInBatch || $0.stopping }) { _ in }
        let writerOut = monotonicMicros()
        let restart = checkpoint(SQLITE_CHECKPOINT_RESTART)
        state.withLock { $0.restarting = false }
        writerMayGo.broadcast()
        let end = monotonicMicros()
        stats.withLock { stats in
            stats.restartWaitMicros.add(writerOut - held)
            stats.restartCheckpointMicros.add(end - writerOut)
            stats.restartFrames.add((restart?.log ?? 0) - (second?.copied ?? 0))
        }
        return (restart != nil, end - held)
    }

    /// Syncs the database file after a passive checkpoint. SQLite syncs it only when a
    /// checkpoint ends with the whole log copied, commits that came in meanwhile included;
    /// under steady writes that is only the restart's, which would then write out every page
    /// the passes copied since the last restart while the writer waits for it. (What the
    /// checkpoint reports cannot tell: it counts against the log as it was when it began.)
    private func syncCopies(of checkpoint: (log: Int, copied: Int)?) {
        guard let checkpoint, checkpoint.copied > 0 else { return }
        sync(SQLITE_FCNTL_FILE_POINTER)
    }

    /// Syncs the database file or the log through this connection's file. A failure stops
    /// this checkpointer for good: the kernel reports a failed write-back once per open file,
    /// so SQLite's next sync of the same file could succeed for pages that never reached the
    /// disk, and SQLite would then start the log over without them. The write-ahead log keeps
    /// every commit meanwhile; the checkpoint at close runs on the writer's own file, which
    /// sees the error itself.
    private func sync(_ file: Int32) {
        if sl_sqlite_sync_file(connection.db, file) != SQLITE_OK { syncFailed = true }
    }

    /// Runs one checkpoint of `mode` on `connection` (this checkpointer's own unless given).
    /// - Returns: The write-ahead log's length in pages as the checkpoint found it and how
    ///   many of them are copied by its end, or `nil` when it failed or was busy.
    private func checkpoint(_ mode: Int32, on connection: SQLiteConnection? = nil) -> (log: Int, copied: Int)? {
        var logPages: Int32 = 0, copied: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2((connection ?? self.connection).db, nil, mode, &logPages, &copied)
        return rc == SQLITE_OK ? (Int(logPages), Int(copied)) : nil
    }
}
