import SagaLaneSupport

/// What an operator's tool asks of a storage beyond what the runtime needs: listings filtered
/// and counted, the lanes at a glance, the file's use of space, and maintenance that reports
/// as it goes (a vacuum in counted batches, compaction).
///
/// A separate protocol so that a storage can leave it out: `SagaLog`'s methods of the same
/// names then fail with `.state`. `SQLiteStorage` implements all of it.
///
/// The reads run on any thread, like `LogStorage`'s; `deleteTerminalSagas` and `compact` run
/// on the writer thread only (through `SagaLog.withWriter`).
public protocol LogAdministration: LogStorage {
    /// Up to `limit` sagas `filter` selects, in `order`, from the first past `after` (the last
    /// saga of the page before), with their step counts; the steps themselves are not read.
    func sagas(matching filter: SagaFilter, order: SagaOrder, after: SagaRecord?, limit: Int) throws(SagaLaneError) -> [SagaSummary]
    /// How many sagas `filter` selects.
    func countSagas(matching filter: SagaFilter) throws(SagaLaneError) -> Int
    /// Up to `limit` lane jobs `filter` selects, most recent activity first.
    func jobs(matching filter: JobFilter, limit: Int) throws(SagaLaneError) -> [JobRecord]
    /// How many lane jobs `filter` selects.
    func countJobs(matching filter: JobFilter) throws(SagaLaneError) -> Int
    /// Every lane that has jobs in the log, by name (byte order), with its jobs counted.
    func laneSummaries() throws(SagaLaneError) -> [LaneSummary]
    /// What `deleteTerminalSagas` would delete with this cutoff, counted; nothing is changed.
    func vacuumEstimate(endedBefore cutoff: Timestamp) throws(SagaLaneError) -> VacuumEstimate
    /// How the file uses its space.
    func fileUsage() throws(SagaLaneError) -> LogFileUsage

    /// Writer thread. Deletes at most `limit` final sagas that ended before `cutoff`, with
    /// their steps, in one transaction of its own; their ids stay used (`maxSagaID`).
    /// - Returns: What was deleted; fewer sagas than `limit` means none is left.
    func deleteTerminalSagas(endedBefore cutoff: Timestamp, limit: Int) throws(SagaLaneError) -> VacuumCounts
    /// Writer thread. Rewrites the file without its free space, in one transaction (a crash
    /// meanwhile leaves the file as it was), then empties the write-ahead log.
    /// - Throws: `.full` when the disk has too little room for the rewritten copy.
    func compact() throws(SagaLaneError)
}

/// Which sagas a listing selects. Every condition given must hold; an empty filter selects
/// every saga.
public struct SagaFilter: Sendable, Equatable {
    /// The states selected; empty selects every state.
    public var states: [SagaState]
    /// The saga type's name, compared byte for byte.
    public var name: String?
    /// Only sagas whose last activity (their end, or their start while unfinished) is at or
    /// after this instant.
    public var activeSince: Timestamp?
    /// Only sagas whose last activity is before this instant.
    public var activeBefore: Timestamp?

    public init(states: [SagaState] = [], name: String? = nil, activeSince: Timestamp? = nil, activeBefore: Timestamp? = nil) {
        self.states = states
        self.name = name
        self.activeSince = activeSince
        self.activeBefore = activeBefore
    }
}

/// The order of a saga listing.
public enum SagaOrder: Sendable, Equatable {
    /// Most recent activity first (their end, or their start while unfinished), then highest
    /// id: what happened last.
    case recentFirst
    /// Lowest id first: the oldest first, as an operator's to-do list.
    case byID
}

/// Which lane jobs a listing selects. Every condition given must hold.
public struct JobFilter: Sendable, Equatable {
    /// The lane, compared byte for byte.
    public var lane: String?
    /// The states selected; empty selects every state.
    public var states: [JobState]
    /// Only jobs whose last activity (the latest of their timestamps) is at or after this.
    public var activeSince: Timestamp?
    /// Only jobs whose last activity is before this.
    public var activeBefore: Timestamp?
    /// The caller that submitted the job, compared byte for byte.
    public var caller: String?

    public init(lane: String? = nil, states: [JobState] = [], activeSince: Timestamp? = nil, activeBefore: Timestamp? = nil,
                caller: String? = nil) {
        self.lane = lane
        self.states = states
        self.activeSince = activeSince
        self.activeBefore = activeBefore
        self.caller = caller
    }
}

/// One lane's jobs in the log, counted.
public struct LaneSummary: Sendable, Equatable {
    public var lane: String
    /// Jobs by state; states with none are absent.
    public var jobs: [JobState: Int]
    /// When the longest-waiting queued job was queued.
    public var oldestQueued: Timestamp?
    /// The latest timestamp of any of its jobs.
    public var lastActivity: Timestamp?

    public init(lane: String, jobs: [JobState: Int] = [:], oldestQueued: Timestamp? = nil, lastActivity: Timestamp? = nil) {
        self.lane = lane
        self.jobs = jobs
        self.oldestQueued = oldestQueued
        self.lastActivity = lastActivity
    }

    /// Every job of the lane, whatever its state.
    public var total: Int { jobs.values.reduce(0, +) }
}

/// Sagas and steps deleted (or to delete) by a vacuum.
public struct VacuumCounts: Sendable, Equatable {
    public var sagas: Int
    public var steps: Int

    public init(sagas: Int = 0, steps: Int = 0) {
        self.sagas = sagas
        self.steps = steps
    }
}

/// What a vacuum would delete (`SagaLog.vacuumEstimate`).
public struct VacuumEstimate: Sendable, Equatable {
    public var counts: VacuumCounts
    /// When the first and the last of those sagas ended.
    public var oldestEnd: Timestamp?
    public var newestEnd: Timestamp?

    public init(counts: VacuumCounts = VacuumCounts(), oldestEnd: Timestamp? = nil, newestEnd: Timestamp? = nil) {
        self.counts = counts
        self.oldestEnd = oldestEnd
        self.newestEnd = newestEnd
    }
}

/// How a log's file uses its space.
public struct LogFileUsage: Sendable, Equatable {
    public var pageSize: Int
    /// Pages in the database, free ones included.
    public var pages: Int
    /// Pages that hold nothing (freed by deletes): room the file keeps until it is compacted.
    public var freePages: Int
    /// The database file's size on disk; `nil` in memory.
    public var fileBytes: Int?
    /// The write-ahead log's size on disk; `nil` in memory, 0 when there is none.
    public var walBytes: Int?

    public init(pageSize: Int, pages: Int, freePages: Int, fileBytes: Int?, walBytes: Int?) {
        self.pageSize = pageSize
        self.pages = pages
        self.freePages = freePages
        self.fileBytes = fileBytes
        self.walBytes = walBytes
    }

    /// The database's size in pages, free ones included.
    public var databaseBytes: Int { pages * pageSize }
    /// Room inside the file that compaction would give back.
    public var freeBytes: Int { freePages * pageSize }
    /// What the pages in use take: about what a compacted file is.
    public var usedBytes: Int { (pages - freePages) * pageSize }
    /// The database file and its write-ahead log together, on disk.
    public var bytesOnDisk: Int { (fileBytes ?? databaseBytes) + (walBytes ?? 0) }
}
