import Glibc
import SagaLaneLog
import SagaLaneSupport
import Synchronization

/// A line of progress on standard error, rewritten in place, when standard error is a
/// terminal; nothing otherwise (a pipe or a file gets only the summary). Updates come at most
/// ten times a second; `finish` clears the line.
final class ProgressLine: Sendable {
    let enabled: Bool
    private struct State {
        var lastDraw: Int64 = 0
        var drawn = false
    }
    private let state = Mutex(State())

    init() { enabled = isatty(2) == 1 }

    /// Shows `text` unless the last update was under 100 ms ago (`force` shows it anyway).
    func update(_ text: @autoclosure () -> String, force: Bool = false) {
        guard enabled else { return }
        let now = Timestamp.now().millisecondsSinceEpoch
        let due = state.withLock { state -> Bool in
            guard force || now - state.lastDraw >= 100 else { return false }
            state.lastDraw = now
            state.drawn = true
            return true
        }
        guard due else { return }
        var line = printable(text())
        if let width = Self.width() { line = fitted(line, to: width - 1) }
        writeStandardError("\r\u{1B}[K" + line)
    }

    /// Clears the line.
    func finish() {
        guard enabled, state.withLock({ state in defer { state.drawn = false }; return state.drawn }) else { return }
        writeStandardError("\r\u{1B}[K")
    }

    private static func width() -> Int? {
        var size = winsize()
        guard ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return Int(size.ws_col)
    }
}

/// A wall-clock stopwatch.
struct Stopwatch: Sendable {
    private let start = ContinuousClock.now

    var elapsed: Duration { ContinuousClock.now - start }
}

/// Shows the library's long operations on a log (a migration when it opens, start-up
/// recovery) as a progress line on standard error when it is a terminal, and ends each with a
/// one-line summary there: a recovery's only on a terminal (elsewhere the agent's ready line
/// counts the sagas recovered), a migration's always (it changed the file).
final class LongOperationProgress: Sendable {
    private let line = ProgressLine()
    private let name: String
    private let started = Mutex<[LongOperation: Stopwatch]>([:])

    /// For the log at `name`.
    init(log name: String) { self.name = name }

    /// The handler to give the library.
    var handler: ProgressHandler { { [self] operation, done, total in report(operation, done: done, total: total) } }

    private func report(_ operation: LongOperation, done: Int, total: Int) {
        let clock = started.withLock { started in
            if done == 0 || started[operation] == nil { started[operation] = Stopwatch() }
            return started[operation]!
        }
        let finished = done >= total
        switch operation {
        case .migration:
            line.update("migrating \(name): \(done) of \(total) schema version\(total == 1 ? "" : "s") applied, \(seconds(clock.elapsed))",
                        force: done == 0 || finished)
        case .recovery:
            let percent = total == 0 ? 100 : done * 100 / total
            line.update("recovering \(name): \(grouped(done)) of \(grouped(total)) unfinished sagas (\(percent)%), \(seconds(clock.elapsed))",
                        force: done == 0 || finished)
        }
        guard finished else { return }
        line.finish()
        switch operation {
        case .migration:
            writeStandardError("sagalane: migrated \(name) to the current schema (\(total) version\(total == 1 ? "" : "s") applied) in \(seconds(clock.elapsed))\n")
        case .recovery where line.enabled:
            writeStandardError("sagalane: recovered \(grouped(total)) unfinished saga\(total == 1 ? "" : "s") of \(name) in \(seconds(clock.elapsed))\n")
        case .recovery:
            break
        }
    }
}
