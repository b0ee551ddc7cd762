import Glibc
import SagaLaneSupport

/// The one-writer rule of a log file: an exclusive `flock` on a lock file beside it
/// (`PATH-lock`), which holds the holder's pid so that a refused writer can name it.
///
/// `flock` rather than `fcntl`: its lock belongs to the open file, so a second open in the
/// same process is refused too, and closing some other descriptor of the file never drops
/// it (`fcntl` locks are per process, and SQLite's own would be at risk beside them). The
/// lock is never taken on the database file itself, which SQLite locks its own way.
///
/// The holder removes the file when it closes. A lock file is only ever removed by the one
/// holding its lock, and a writer that took the lock checks that the path still names the
/// file it locked (else it was removed meanwhile and it tries again), so two writers never
/// both hold a lock. A file left by a process that died is stale but harmless: the kernel
/// released its lock, and the next writer takes it over.
final class WriterLock: @unchecked Sendable {
    let path: String
    private var descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { release() }

    /// The lock file's path for the log at `logPath`.
    static func lockPath(for logPath: String) -> String { logPath + "-lock" }

    /// Takes the writer lock of the log at `logPath`, or fails at once.
    /// - Throws: `.locked` naming the holder's pid when another writer holds it; `.readOnly`
    ///   when this user cannot create the lock file (a folder it cannot write); `.cantOpen`
    ///   when the folder does not exist.
    static func acquire(for logPath: String) throws(SagaLaneError) -> WriterLock {
        let path = lockPath(for: logPath)
        for _ in 0..<100 {
            var descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            var writable = true
            if descriptor < 0 {
                let failure = errno
                // Left by another user: a read-only descriptor takes a lock just as well.
                if failure == EACCES { descriptor = open(path, O_RDONLY | O_CLOEXEC) }
                if descriptor < 0 { throw openError(failure, logPath: logPath, lockPath: path) }
                writable = false
            }
            if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
                let failure = errno
                let holder = holderPID(descriptor)
                close(descriptor)
                if failure == EWOULDBLOCK { throw lockedError(logPath: logPath, holder: holder) }
                throw SagaLaneError(.log, "cannot lock \(path): \(String(cString: strerror(failure)))")
            }
            // Whoever held it may have removed the file between our open and our lock.
            var opened = stat(), named = stat()
            guard fstat(descriptor, &opened) == 0, stat(path, &named) == 0,
                  opened.st_dev == named.st_dev, opened.st_ino == named.st_ino else {
                close(descriptor)
                continue
            }
            if !writable {
                // Another user's stale file cannot hold this pid: replace it (the lock is ours).
                let removed = unlink(path) == 0
                let failure = errno
                close(descriptor)
                if !removed { throw openError(failure, logPath: logPath, lockPath: path) }
                continue
            }
            let text = "\(getpid())\n"
            _ = ftruncate(descriptor, 0)
            _ = text.withCString { pwrite(descriptor, $0, strlen($0), 0) }
            return WriterLock(path: path, descriptor: descriptor)
        }
        throw SagaLaneError(.busy, "cannot take the writer lock \(path): other writers keep replacing it")
    }

    /// Removes the lock file and releases the lock. Idempotent.
    func release() {
        guard descriptor >= 0 else { return }
        unlink(path)
        close(descriptor)
        descriptor = -1
    }

    /// The pid a lock file holds, if it holds one. A holder writes it just after taking the
    /// lock, so an empty file is read again for a moment.
    private static func holderPID(_ descriptor: Int32) -> Int32? {
        for attempt in 0..<20 {
            if let pid = readPID(descriptor) { return pid }
            if attempt < 19 { usleep(1000) }
        }
        return nil
    }

    /// The pid at the start of a lock file: decimal digits, then a newline. Parsed by hand:
    /// no string is made of a file anyone may have written.
    static func readPID(_ descriptor: Int32) -> Int32? {
        var buffer = (UInt64(0), UInt64(0))
        let count = withUnsafeMutableBytes(of: &buffer) { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return withUnsafeBytes(of: &buffer) { bytes -> Int32? in
            var pid: Int32 = 0
            for byte in bytes.prefix(count) {
                if byte == UInt8(ascii: "\n") { break }
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                let (times, overflow) = pid.multipliedReportingOverflow(by: 10)
                guard !overflow else { return nil }
                pid = times &+ Int32(byte - UInt8(ascii: "0"))
                guard pid >= 0 else { return nil }
            }
            return pid > 0 ? pid : nil
        }
    }

    private static func lockedError(logPath: String, holder: Int32?) -> SagaLaneError {
        let who: String
        switch holder {
        case getpid(): who = "this process (pid \(getpid())), through another runtime"
        case let pid?: who = "process \(pid)"
        case nil: who = "another process (its pid is unknown)"
        }
        return SagaLaneError(.locked, "\(logPath) is open for writing by \(who): a log has one writer (read-only opens still work)")
    }

    private static func openError(_ failure: Int32, logPath: String, lockPath: String) -> SagaLaneError {
        let reason = String(cString: strerror(failure))
        switch failure {
        case EACCES, EPERM, EROFS:
            return SagaLaneError(.readOnly, "\(logPath) cannot be opened for writing: its folder is read-only to this user "
                                    + "(cannot create \(lockPath): \(reason))")
        default:
            return SagaLaneError(.cantOpen, "cannot open \(logPath): cannot create \(lockPath): \(reason)")
        }
    }
}
