import CSQLite
import Glibc
import SagaLaneSupport

/// How a read-only open reads a log without creating any file beside it.
///
/// A WAL database is read through its index, the `-shm` file, which SQLite creates when it is
/// missing. A reader must not create it: in a folder it cannot write that fails
/// (SQLITE_READONLY_DIRECTORY), and elsewhere the `-shm` and `-wal` it leaves, owned by the
/// reader's user, keep the log's owner from writing its own log. So:
///
/// - when the `-wal` and `-shm` exist (a writer has the log open, or left them), the reader
///   opens the database as any reader does, through them;
/// - so it does when the file is not in WAL mode (a log being made is in rollback-journal
///   mode until its schema is written): such a reader takes SQLite's locks, which wait for a
///   writer's transaction, and creates nothing;
/// - when the file is in WAL mode with no `-wal`, or an empty one, the database file holds
///   the whole log (a clean close checkpoints it), and the reader reads that file as
///   immutable, taking no lock and creating nothing. Immutable means SQLite assumes nobody
///   changes it, so each read checks the files did not change meanwhile (a writer started;
///   in WAL mode a writer changes the database file only by checkpointing its `-wal`); if
///   they did, the reader reconnects — through the writer's `-shm` by then — and reads again.
enum ReadOnlyFile {
    /// What a file looked like, to tell whether it changed.
    struct Stamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modified: timespec
        var changed: timespec

        init?(_ path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = info.st_mtim
            changed = info.st_ctim
        }

        static func == (a: Stamp, b: Stamp) -> Bool {
            a.device == b.device && a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }
    }

    /// The database file, its write-ahead log and whether its index exists.
    struct Snapshot: Equatable {
        var database: Stamp?
        var wal: Stamp?
        var hasIndex: Bool

        init(path: String) {
            database = Stamp(path)
            wal = Stamp(path + "-wal")
            hasIndex = access(path + "-shm", F_OK) == 0
        }
    }

    /// A read-only connection to the log at `path`, and the snapshot to check each read
    /// against when it reads the file as immutable (`nil` when it reads through the index).
    /// - Throws: `.cantOpen` when there is no file; `.readOnly` when the write-ahead log
    ///   holds changes but has no index, and this user cannot create one.
    static func connect(path: String, busyTimeoutMilliseconds: Int32) throws(SagaLaneError) -> (SQLiteConnection, Snapshot?) {
        let snapshot = Snapshot(path: path)
        guard snapshot.database != nil else {
            var info = stat()
            let reason = stat(path, &info) == 0 ? "it vanished" : String(cString: strerror(errno))
            throw SagaLaneError(.cantOpen, "cannot open \(path): \(reason)",
                                underlying: SQLiteError(extendedCode: SQLITE_CANTOPEN, message: "no such file"))
        }
        let walIsEmpty = (snapshot.wal?.size ?? 0) == 0
        let inWALMode = isInWALMode(path)
        if inWALMode && (snapshot.wal == nil || (walIsEmpty && !snapshot.hasIndex)) {
            return (try immutable(path), snapshot)
        }
        let connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        connection.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        do throws(SagaLaneError) {
            _ = try connection.query("PRAGMA user_version") { $0.int(0) }
            return (connection, nil)
        } catch where error.code == .readOnly || error.code == .cantOpen {
            connection.close()
            // An index this user cannot read or create: without changes in the write-ahead
            // log, the database file alone is the log.
            if walIsEmpty && inWALMode { return (try immutable(path), snapshot) }
            throw SagaLaneError(.readOnly, "\(path) has changes in its write-ahead log that this user cannot read without "
                                    + "creating its index (-shm); open it once as a user who can write its folder",
                                underlying: error.underlying)
        }
    }

    /// Whether the database header says WAL mode (its read and write versions, bytes 18 and
    /// 19, are 2).
    static func isInWALMode(_ path: String) -> Bool {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var versions: (UInt8, UInt8) = (0, 0)
        let count = withUnsafeMutableBytes(of: &versions) { pread(descriptor, $0.baseAddress, 2, 18) }
        return count == 2 && versions.0 == 2 && versions.1 == 2
    }

    /// Whether a writer holds (or is taking) the log's writer lock: its lock file names a
    /// live process, or is being written.
    static func isBeingWritten(_ path: String) -> Bool {
        let descriptor = open(WriterLock.lockPath(for: path), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var info = stat()
        if fstat(descriptor, &info) == 0 && info.st_size == 0 { return true }
        guard let pid = WriterLock.readPID(descriptor) else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    private static func immutable(_ path: String) throws(SagaLaneError) -> SQLiteConnection {
        try SQLiteConnection(path: "file:\(uriEscaped(path))?immutable=1", flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)
    }

    /// Percent-escapes the characters a URI filename cannot hold literally.
    private static func uriEscaped(_ path: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "?"), UInt8(ascii: "#"), 0..<0x21, 0x7F...:
                out += "%" + String(UnicodeScalar(hex[Int(byte >> 4)])) + String(UnicodeScalar(hex[Int(byte & 15)]))
            default:
                out.unicodeScalars.append(UnicodeScalar(byte))
            }
        }
        return out
    }
}
