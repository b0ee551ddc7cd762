import SagaLaneJSON

/// Where each value of a JSON text starts, by its path: `sagas[1].steps[0].target`.
///
/// Run over text the strict parser already accepted, so it only has to find where values
/// begin: it skips strings and scalars without checking them. Errors about a saga file name
/// the line and column of the value they are about (or of the object that lacks a member).
struct SourceLocator {
    private let text: [UInt8]
    private var offsets: [String: Int] = [:]

    /// Locates every value of `text`, which must be valid JSON.
    init(_ text: [UInt8]) {
        self.text = text
        var walker = Walker(bytes: text)
        walker.value(path: "")
        offsets = walker.offsets
    }

    /// 1-based line and column (in bytes) of the value at `path`, or of the nearest enclosing
    /// value that exists (a missing member is reported where its object starts).
    func location(of path: String) -> (line: Int, column: Int) {
        var path = path
        while offsets[path] == nil && !path.isEmpty { path = SourceLocator.parent(of: path) }
        let offset = offsets[path] ?? 0
        var line = 1, lineStart = 0
        for i in 0..<min(offset, text.count) where text[i] == UInt8(ascii: "\n") {
            line += 1
            lineStart = i + 1
        }
        return (line, offset - lineStart + 1)
    }

    /// `a.b[2]` → `a.b`; `a.b` → `a`; `a` → ``.
    static func parent(of path: String) -> String {
        guard let cut = path.utf8.lastIndex(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "[") }) else { return "" }
        return String(path[..<cut])
    }

    private struct Walker {
        let bytes: [UInt8]
        var position = 0
        var offsets: [String: Int] = [:]

        mutating func skipWhitespace() {
            while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
        }

        mutating func value(path: String) {
            skipWhitespace()
            guard position < bytes.count else { return }
            // A repeated member's last occurrence wins, as it does in the parsed value.
            offsets[path] = position
            switch bytes[position] {
            case UInt8(ascii: "{"): object(path: path)
            case UInt8(ascii: "["): array(path: path)
            case UInt8(ascii: "\""): _ = string()
            default:
                while position < bytes.count, !",]} \t\r\n".utf8.contains(bytes[position]) { position += 1 }
            }
        }

        mutating func object(path: String) {
            position += 1
            while true {
                skipWhitespace()
                guard position < bytes.count else { return }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                let key = string()
                skipWhitespace()
                position += 1  // the ':'
                value(path: path.isEmpty ? key : path + "." + key)
            }
        }

        mutating func array(path: String) {
            position += 1
            var index = 0
            while true {
                skipWhitespace()
                guard position < bytes.count else { return }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                value(path: path + "[\(index)]")
                index += 1
            }
        }

        /// Skips a string and returns its text; escapes are decoded by the real parser.
        mutating func string() -> String {
            let start = position
            position += 1
            var escaped = false
            while position < bytes.count, bytes[position] != UInt8(ascii: "\"") {
                if bytes[position] == UInt8(ascii: "\\") {
                    escaped = true
                    position += 1
                }
                position += 1
            }
            position += 1
            let token = bytes[start..<min(position, bytes.count)]
            if !escaped { return String(decoding: token.dropFirst().dropLast(), as: UTF8.self) }
            return (try? JSON(parsing: token))?.stringValue ?? ""
        }
    }
}
