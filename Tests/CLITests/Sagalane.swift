import Glibc
import SagaLaneJSON

/// How the `sagalane` binary ended and what it printed.
struct Outcome: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    /// The child's peak resident set, in kilobytes (`wait4`'s `ru_maxrss`).
    var peakKilobytes: Int

    /// Standard output as JSON.
    var json: JSON? { try? JSON(parsing: stdout) }

    /// Standard output as JSON lines.
    var jsonLines: [JSON?] { stdout.split(separator: "\n").map { try? JSON(parsing: String($0)) } }

    var description: String { "exit \(status)\nstdout: \(stdout.prefix(2000))\nstderr: \(stderr.prefix(2000))" }
}

/// The `sagalane` binary SwiftPM built beside the test bundle, run as an operator would.
enum Sagalane {
    static var path: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        var folder = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "."
        if let slash = folder.lastIndex(of: "/") { folder = String(folder[..<slash]) }
        return folder + "/sagalane"
    }

    /// Where a child's standard output or error goes.
    enum Sink {
        case pipe
        /// The slave side of a new pseudo-terminal, 100 columns wide.
        case terminal
    }

    /// Runs `sagalane arguments…` and waits for it, reading both outputs as it goes.
    static func run(_ arguments: [String], stdout: Sink = .pipe, stderr: Sink = .pipe) -> Outcome {
        var readers: [Int32] = []
        var writers: [Int32] = []
        for sink in [stdout, stderr] {
            switch sink {
            case .pipe:
                var fds: [Int32] = [0, 0]
                precondition(pipe(&fds) == 0)
                readers.append(fds[0])
                writers.append(fds[1])
            case .terminal:
                let (master, slave) = openTerminal()
                readers.append(master)
                writers.append(slave)
            }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writers[0], 1)
        posix_spawn_file_actions_adddup2(&actions, writers[1], 2)
        for fd in readers + writers { posix_spawn_file_actions_addclose(&actions, fd) }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, environ)
        posix_spawn_file_actions_destroy(&actions)
        for fd in writers { close(fd) }
        guard rc == 0 else {
            for fd in readers { close(fd) }
            return Outcome(status: -1, stdout: "", stderr: "posix_spawn \(path): \(String(cString: strerror(rc)))", peakKilobytes: 0)
        }
        let (out, err) = drain(readers[0], readers[1])
        var status: Int32 = 0
        var usage = rusage()
        while wait4(child, &status, 0, &usage) < 0 && errno == EINTR {}
        let exited = status & 0x7F == 0
        return Outcome(status: exited ? (status >> 8) & 0xFF : -Int32(status & 0x7F), stdout: out, stderr: err,
                       peakKilobytes: Int(usage.ru_maxrss))
    }

    /// A pseudo-terminal: its master and slave descriptors.
    private static func openTerminal() -> (Int32, Int32) {
        // posix_openpt and its friends, through the ioctls they are made of (Glibc's module
        // leaves them out): unlock the slave (TIOCSPTLCK), then ask its number (TIOCGPTN).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        precondition(master >= 0, "no /dev/ptmx")
        var unlock: Int32 = 0
        var number: UInt32 = 0
        precondition(ioctl(master, 0x4004_5431, &unlock) == 0 && ioctl(master, 0x8004_5430, &number) == 0)
        let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY | O_CLOEXEC)
        precondition(slave >= 0, "cannot open /dev/pts/\(number)")
        var size = winsize(ws_row: 40, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(slave, UInt(TIOCSWINSZ), &size)
        // Raw: what the child writes arrives as it wrote it (no "\n" turned into "\r\n").
        var modes = termios()
        tcgetattr(slave, &modes)
        cfmakeraw(&modes)
        tcsetattr(slave, TCSANOW, &modes)
        return (master, slave)
    }

    /// Reads both descriptors to their end (a terminal's master ends with EIO once the child
    /// has closed the slave).
    private static func drain(_ first: Int32, _ second: Int32) -> (String, String) {
        var buffers: [[UInt8]] = [[], []]
        var open = [true, true]
        let fds = [first, second]
        var chunk = [UInt8](repeating: 0, count: 65536)
        while open.contains(true) {
            var polls = fds.enumerated().map { pollfd(fd: open[$0.offset] ? $0.element : -1, events: Int16(POLLIN), revents: 0) }
            if poll(&polls, 2, -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in 0..<2 where open[i] && polls[i].revents != 0 {
                let n = read(fds[i], &chunk, chunk.count)
                if n > 0 {
                    buffers[i].append(contentsOf: chunk[0..<n])
                } else if n == 0 || errno != EINTR {
                    open[i] = false
                }
            }
        }
        for fd in fds { close(fd) }
        return (String(decoding: buffers[0], as: UTF8.self), String(decoding: buffers[1], as: UTF8.self))
    }
}

/// A table's rows as the binary printed them: cells split where two or more spaces are,
/// the header first.
func tableRows(_ text: String) -> [[String]] {
    text.split(separator: "\n").map { line in
        var cells: [String] = []
        var cell = ""
        var spaces = 0
        for character in line {
            if character == " " {
                spaces += 1
                continue
            }
            if spaces >= 2 && !cell.isEmpty {
                cells.append(cell)
                cell = ""
            } else if spaces == 1 && !cell.isEmpty {
                cell += " "
            }
            spaces = 0
            cell.append(character)
        }
        if !cell.isEmpty { cells.append(cell) }
        return cells
    }
}
