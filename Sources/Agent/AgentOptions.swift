import Glibc
import SagaLane

/// How an agent is set up.
public struct AgentOptions: Sendable {
    /// How long a remote worker may hold a job without answering, unless the job says.
    public static let defaultReservation = Duration.seconds(60)
    /// A lane created without a bound (one found in the log at start-up) runs this many jobs
    /// at once, until a `lane.create` sets its bound.
    public static let defaultLaneBound = 16

    /// Where the log and the lock live (created, mode 0700, if missing).
    public var dataDirectory: String
    /// The listening socket; `nil`: `agent.sock` in the data directory.
    public var socketPath: String?
    /// User ids accepted besides the agent's own. When there are any, the socket is created
    /// mode 0666 so they can reach it, and each peer is still checked by its uid.
    public var allowedUIDs: Set<UInt32>
    /// The largest frame either way.
    public var maxFrameSize: Int
    /// Bytes queued for one connection past which the agent stops reading from it (and
    /// waits to send it more commands) until it drains.
    public var maxQueuedBytes: Int
    /// How long a command for a target with no connection waits before its saga fails.
    public var bufferExpiry: Duration
    /// How long a remote worker may hold a job without answering.
    public var reservation: Duration
    /// Lanes to create before listening: name and bound.
    public var lanes: [(name: String, maxConcurrent: Int)]
    public var durability: Durability
    public var diagnostics: Diagnostics
    /// A saga file (see `SagaFile`) whose saga types and triggers the agent registers before
    /// it starts, and reloads on SIGHUP for new sagas only. An invalid file stops the agent
    /// at start-up with `AgentExit.badConfiguration`.
    public var sagasFile: String?
    /// Registers the agent's saga types and triggers on the runtime before it starts (so
    /// recovery knows them); returns how many saga types it loaded.
    public var prepare: (@Sendable (Runtime) throws -> Int)?
    /// How long connections get to take what was queued for them when the agent stops.
    public var stopGrace: Duration
    /// Called once the agent listens (after its ready line), from `runAgent`'s thread.
    public var onReady: (@Sendable () -> Void)?
    /// Told how far opening the log (a migration) and start-up recovery have got (see
    /// `RuntimeOptions.progress`); the agent itself shows nothing.
    public var progress: ProgressHandler?

    public init(dataDirectory: String, socketPath: String? = nil, allowedUIDs: Set<UInt32> = [],
                maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                maxQueuedBytes: Int = PipeConnectionOptions.defaultMaxQueuedBytes,
                bufferExpiry: Duration = PipeTargetOptions.defaultBufferExpiry,
                reservation: Duration = AgentOptions.defaultReservation,
                lanes: [(name: String, maxConcurrent: Int)] = [], durability: Durability = .full,
                diagnostics: Diagnostics = .standardError, prepare: (@Sendable (Runtime) throws -> Int)? = nil,
                stopGrace: Duration = .seconds(5)) {
        self.dataDirectory = dataDirectory
        self.socketPath = socketPath
        self.allowedUIDs = allowedUIDs
        self.maxFrameSize = maxFrameSize
        self.maxQueuedBytes = maxQueuedBytes
        self.bufferExpiry = bufferExpiry
        self.reservation = reservation
        self.lanes = lanes
        self.durability = durability
        self.diagnostics = diagnostics
        self.prepare = prepare
        self.stopGrace = stopGrace
    }

    /// The data directory unless one is given: `$XDG_STATE_HOME/sagalane`, else
    /// `~/.local/state/sagalane`.
    public static var defaultDataDirectory: String {
        if let state = getenv("XDG_STATE_HOME").map({ String(cString: $0) }), state.hasPrefix("/") {
            return state + "/sagalane"
        }
        var home = getenv("HOME").map { String(cString: $0) } ?? ""
        if home.isEmpty, let entry = getpwuid(getuid()), let dir = entry.pointee.pw_dir { home = String(cString: dir) }
        return (home.isEmpty ? "." : home) + "/.local/state/sagalane"
    }

    /// The log's file in the data directory.
    public var databasePath: String { dataDirectory + "/sagalane.db" }

    /// The socket the agent listens on.
    public var resolvedSocketPath: String { socketPath ?? dataDirectory + "/agent.sock" }
}

/// The data directory's lock: one agent per data directory, held for the agent's life by an
/// exclusive `flock` on `agent.lock`, which names the holder's pid.
final class DataDirectoryLock {
    let path: String
    private var fd: Int32

    /// Creates the directory (mode 0700, parents included) if needed and takes its lock.
    /// - Throws: `.exists` when another agent holds it; `.cantOpen` when the directory or the
    ///   lock file cannot be made.
    init(directory: String) throws(SagaLaneError) {
        try DataDirectoryLock.makeDirectory(directory)
        path = directory + "/agent.lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SagaLaneError(.cantOpen, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = DataDirectoryLock.readHolder(fd)
            close(fd)
            fd = -1
            throw SagaLaneError(.exists, "another agent uses the data directory \(directory)\(holder.map { " (pid \($0))" } ?? "")")
        }
        let text = Array("\(getpid())\n".utf8)
        ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit { release() }

    func release() {
        guard fd >= 0 else { return }
        ftruncate(fd, 0)
        close(fd)
        fd = -1
    }

    private static func readHolder(_ fd: Int32) -> Int? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int(String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n").first ?? "")
    }

    private static func makeDirectory(_ path: String) throws(SagaLaneError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw SagaLaneError(.cantOpen, "\(path) is not a directory") }
            return
        }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectory(String(path[..<slash]))
        }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw SagaLaneError(.cantOpen, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }
}
