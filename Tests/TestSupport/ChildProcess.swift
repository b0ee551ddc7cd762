import Glibc
import Testing

/// A child process of the test, with its standard output on a pipe; used to crash real
/// processes with SIGKILL.
public final class ChildProcess {
    public let pid: pid_t
    private let stdoutFD: Int32
    private var buffer: [UInt8] = []
    private var reaped = false

    /// The `sagalane-testchild` executable built next to the test bundle.
    public static var testChildPath: String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        var dir = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "."
        if let slash = dir.lastIndex(of: "/") { dir = String(dir[..<slash]) }
        return dir + "/sagalane-testchild"
    }

    public init(_ path: String, _ arguments: [String]) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ChildError(message: "pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, environ)
        posix_spawn_file_actions_destroy(&actions)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw ChildError(message: "posix_spawn \(path) failed: \(String(cString: strerror(rc)))")
        }
        pid = child
        stdoutFD = fds[0]
    }

    /// The next line of the child's output; `nil` at end of output.
    public func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeFirst(newline + 1)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(stdoutFD, &chunk, chunk.count)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return nil
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Kills the child with SIGKILL and reaps it; returns the signal that ended it.
    @discardableResult
    public func kill9() -> Int32 {
        kill(pid, SIGKILL)
        return wait()
    }

    @discardableResult
    public func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        return status & 0x7F
    }

    /// Waits for the child to exit: its exit status, or 128 + the signal that killed it.
    public func waitExitStatus() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    /// Sends `signal` to the child.
    public func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// The path of an executable built next to the test bundle (`sagalane`, say).
    public static func siblingPath(_ name: String) -> String {
        let child = testChildPath
        return String(child[..<child.lastIndex(of: "/")!]) + "/" + name
    }

    deinit {
        if !reaped {
            kill(pid, SIGKILL)
            _ = wait()
        }
        close(stdoutFD)
    }
}

public struct ChildError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
