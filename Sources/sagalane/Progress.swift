import Glibc
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
