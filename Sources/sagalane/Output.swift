import Glibc
import SagaLaneJSON
import SagaLaneSupport
import Synchronization

/// Writes `text` to standard output, through a buffer `flushOutput` empties (as it does
/// whenever the buffer holds 64 kB).
func emit(_ text: String) {
    standardOutput.withLock { buffer in
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 65536 { writeOut(&buffer) }
    }
}

/// Writes what `emit` buffered.
func flushOutput() {
    standardOutput.withLock { writeOut(&$0) }
}

private let standardOutput = Mutex<[UInt8]>([])

private func writeOut(_ buffer: inout [UInt8]) {
    var offset = 0
    while offset < buffer.count {
        let n = buffer.withUnsafeBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        // A reader that went away (EPIPE with SIGPIPE ignored) gets no more.
        if n <= 0 { break }
        offset += n
    }
    buffer.removeAll(keepingCapacity: true)
}

/// A listing as it is printed: a JSON array or JSON lines as the values come (so a long one
/// never sits in memory), or a table once every row is in (its columns need their widths).
struct Listing {
    let format: OutputFormat
    private var table: Table
    private var count = 0

    init(_ format: OutputFormat, columns: [Table.Column]) {
        self.format = format
        table = Table(columns)
    }

    /// Adds one value: `json` for the JSON formats, `row` (built only for a table) for a table.
    mutating func add(_ json: @autoclosure () -> JSON, row: @autoclosure () -> [String]) {
        switch format {
        case .json:
            emit(count == 0 ? "[" : ",")
            emit(json().serialized)
        case .jsonl:
            emit(json().serialized + "\n")
        case .table:
            table.add(row())
        }
        count += 1
    }

    /// Ends the listing. A table shows `empty` when it has no row, and `footer` under it.
    mutating func finish(empty: String, footer: String? = nil) {
        switch format {
        case .json:
            emit(count == 0 ? "[]\n" : "]\n")
        case .jsonl:
            break
        case .table:
            if count == 0 {
                emit(empty + "\n")
            } else {
                emit(table.render())
            }
            if let footer { emit(footer + "\n") }
        }
        flushOutput()
    }
}

/// Columns aligned for a terminal: left-aligned text, right-aligned numbers, two spaces
/// between. One column may be marked to shrink (its cells cut with "…") so a row fits the
/// terminal's width.
struct Table {
    struct Column {
        var title: String
        var alignRight = false
        /// Cut to fit the terminal when rows are too wide.
        var shrinks = false
        /// Never wider than this.
        var maxWidth = 60

        init(_ title: String, right: Bool = false, shrinks: Bool = false, maxWidth: Int = 60) {
            self.title = title
            alignRight = right
            self.shrinks = shrinks
            self.maxWidth = maxWidth
        }
    }

    var columns: [Column]
    private var rows: [[String]] = []

    init(_ columns: [Column]) { self.columns = columns }

    mutating func add(_ row: [String]) { rows.append(row.map(printable)) }

    func render() -> String {
        var widths = columns.map { $0.title.count }
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], min(cell.count, columns[i].maxWidth))
            }
        }
        for i in widths.indices { widths[i] = min(widths[i], max(columns[i].maxWidth, columns[i].title.count)) }
        if let terminal = terminalWidth(), let flexible = columns.firstIndex(where: \.shrinks) {
            let total = widths.reduce(0, +) + 2 * (widths.count - 1)
            if total > terminal { widths[flexible] = max(columns[flexible].title.count, widths[flexible] - (total - terminal), 8) }
        }
        var out = line(columns.map(\.title), widths)
        for row in rows { out += line(row, widths) }
        return out
    }

    private func line(_ cells: [String], _ widths: [Int]) -> String {
        var parts: [String] = []
        for (i, width) in widths.enumerated() {
            let cell = fitted(i < cells.count ? cells[i] : "", to: width)
            let pad = String(repeating: " ", count: width - cell.count)
            let last = i == widths.count - 1
            parts.append(columns[i].alignRight ? pad + cell : (last ? cell : cell + pad))
        }
        var text = parts.joined(separator: "  ")
        while text.last == " " { text.removeLast() }
        return text + "\n"
    }
}

/// `text` cut to `width` characters, the last of them "…".
func fitted(_ text: String, to width: Int) -> String {
    guard text.count > width else { return text }
    guard width > 1 else { return String(text.prefix(width)) }
    return String(text.prefix(width - 1)) + "…"
}

/// Text a terminal shows as it is: control characters (a newline in a reason, an escape
/// sequence in a name someone chose) are written as escapes instead of acting.
func printable(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: isControl) else { return text }
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case _ where isControl(scalar):
            out += "\\u{" + String(scalar.value, radix: 16) + "}"
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

private func isControl(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
}

/// Standard output's width in columns, when it is a terminal.
func terminalWidth() -> Int? {
    var size = winsize()
    guard isatty(1) == 1, ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
    return Int(size.ws_col)
}

// MARK: Numbers, sizes, times

/// 301000 → "301,000".
func grouped(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var out = ""
    for (i, digit) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
        out.append(digit)
    }
    return value < 0 ? "-" + out : out
}

/// Bytes in decimal units: "0 bytes", "512 bytes", "12.3 kB", "168.2 MB".
func byteCount(_ value: Int) -> String {
    let units = ["kB", "MB", "GB", "TB"]
    if value.magnitude < 1000 { return "\(value) bytes" }
    var scaled = Double(value)
    var unit = -1
    while abs(scaled) >= 1000 && unit < units.count - 1 {
        scaled /= 1000
        unit += 1
    }
    return decimal(scaled, places: 1) + " " + units[unit]
}

/// `value` with `places` decimals, rounded half away from zero.
func decimal(_ value: Double, places: Int) -> String {
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let rounded = (abs(value) * scale).rounded()
    let whole = Int(rounded / scale)
    let fraction = Int(rounded - Double(whole) * scale)
    var text = (value < 0 && rounded > 0 ? "-" : "") + String(whole)
    if places > 0 {
        let digits = String(fraction)
        text += "." + String(repeating: "0", count: places - digits.count) + digits
    }
    return text
}

/// A span of milliseconds for people: "0ms", "840ms", "2.8s", "3m12s", "4h05m", "3d04h".
func span(milliseconds: Int64) -> String {
    let ms = max(0, milliseconds)
    func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
    switch ms {
    case ..<1000: return "\(ms)ms"
    case ..<60_000: return decimal(Double(ms) / 1000, places: 1) + "s"
    case ..<3_600_000: return "\(ms / 60_000)m\(two(ms / 1000 % 60))s"
    case ..<86_400_000: return "\(ms / 3_600_000)h\(two(ms / 60_000 % 60))m"
    default: return "\(ms / 86_400_000)d\(two(ms / 3_600_000 % 24))h"
    }
}

func span(from start: Timestamp, to end: Timestamp) -> String {
    span(milliseconds: end.millisecondsSinceEpoch - start.millisecondsSinceEpoch)
}

/// "2026-11-24 12:59:00Z": the log's UTC instant, to the second.
func shortTime(_ time: Timestamp?) -> String {
    guard let time else { return "" }
    let text = time.iso8601
    return String(text.prefix(10)) + " " + String(text.dropFirst(11).prefix(8)) + "Z"
}

/// Seconds with a tenth, for summaries: "2.8 s".
func seconds(_ duration: Duration) -> String {
    let (whole, attoseconds) = duration.components
    return decimal(Double(whole) + Double(attoseconds) / 1e18, places: 1) + " s"
}

/// A JSON value on one line, cut for a table cell.
func compact(_ json: JSON) -> String {
    if case .string(let text) = json { return text }
    return json.serialized
}
