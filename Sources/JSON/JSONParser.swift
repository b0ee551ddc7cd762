extension JSON {
    /// The nesting depth `init(parsing:)` accepts by default. Parsing recurses once per level,
    /// so the bound is what keeps a hostile `[[[[…` from overflowing a thread's stack. It
    /// counts the text's nesting (`[]` is one level), including members a repeated name drops.
    public static let defaultMaxDepth = 256

    /// Parses UTF-8 bytes strictly per RFC 8259: one value, optional surrounding whitespace,
    /// nothing else. Rejects invalid UTF-8, a byte-order mark, unescaped control characters,
    /// lone surrogate escapes, and numbers JSON does not allow or that overflow a `Double`.
    /// Of a name repeated in one object the last member wins (see `JSONObject`).
    /// - Throws: `JSONError` with the position and the reason.
    public init(parsing bytes: some Collection<UInt8>, maxDepth: Int = JSON.defaultMaxDepth) throws(JSONError) {
        let result: Result<JSON, JSONError>? = bytes.withContiguousStorageIfAvailable { buffer in
            JSONParser.parseDocument(buffer, maxDepth: maxDepth)
        }
        if let result {
            self = try result.get()
        } else {
            let copy = Array(bytes)
            self = try copy.withUnsafeBufferPointer { buffer in JSONParser.parseDocument(buffer, maxDepth: maxDepth) }.get()
        }
    }

    /// Parses `text` (see `init(parsing:maxDepth:)` for bytes).
    public init(parsing text: String, maxDepth: Int = JSON.defaultMaxDepth) throws(JSONError) {
        var text = text
        let result = text.withUTF8 { buffer in JSONParser.parseDocument(buffer, maxDepth: maxDepth) }
        self = try result.get()
    }
}

struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var position = 0
    var depth = 0
    /// The members of the objects being parsed, innermost last: each object's are moved out
    /// once into an array of exactly their count, instead of growing one array per object.
    /// They start in stack space (see `with`).
    var pendingMembers: TemporaryStack<JSONObject.Member>

    private init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, pending: UnsafeMutableBufferPointer<JSONObject.Member>) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        pendingMembers = TemporaryStack(pending)
    }

    /// How many pending members (and top-level members) fit in stack space: a frame's few
    /// then need no heap storage besides the objects' own arrays.
    static let stackCapacity = 16

    /// Runs `body` with a parser of `bytes`, its pending members in stack space.
    static func with<R>(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, _ body: (inout JSONParser) -> R) -> R {
        withUnsafeTemporaryAllocation(of: JSONObject.Member.self, capacity: stackCapacity) { space in
            var parser = JSONParser(bytes, maxDepth: maxDepth, pending: space)
            defer { parser.pendingMembers.release() }
            return body(&parser)
        }
    }

    static func parseDocument(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) -> Result<JSON, JSONError> {
        with(bytes, maxDepth: maxDepth) { parser in Result { () throws(JSONError) in try parser.parseDocument() } }
    }

    mutating func parseDocument() throws(JSONError) -> JSON {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        if position < bytes.count { throw error("unexpected \(describe(position)) after the value") }
        return value
    }

    /// From `start`, past bytes that a string holds as they are: up to a quote, a backslash,
    /// a control character, invalid UTF-8 or the end; where it stopped. `ascii` says whether
    /// every byte passed was ASCII.
    @inline(__always)
    mutating func scanPlainString(from start: Int, ascii: inout Bool) -> Int {
        guard let base = bytes.baseAddress else { return start }
        let end = bytes.count
        var i = start
        while i < end {
            // Eight bytes at a time while eight remain: the first that is a quote, a
            // backslash, a control character or not ASCII is found with a few word operations
            // (the lowest byte a `(x - 0x01…) & ~x & 0x80…` test flags is exact).
            while i + 8 <= end {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
                let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                let quote = word ^ (ones &* 0x22), backslash = word ^ (ones &* 0x5C)
                let flags = ((word &- ones &* 0x20) & ~word & highs)
                    | ((quote &- ones) & ~quote & highs)
                    | ((backslash &- ones) & ~backslash & highs)
                    | (word & highs)
                if flags == 0 {
                    i += 8
                } else {
                    i += flags.trailingZeroBitCount >> 3
                    break
                }
            }
            guard i < end else { break }
            let b = base[i]
            if b < 0x80 {
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 { return i }
                i += 1
            } else {
                position = i
                guard let count = try? utf8SequenceLength() else { return i }
                ascii = false
                i += count
            }
        }
        return i
    }

    mutating func scanPlainString(from start: Int) -> Int {
        var ascii = true
        return scanPlainString(from: start, ascii: &ascii)
    }

    func error(_ message: String, at offset: Int? = nil) -> JSONError {
        let offset = min(offset ?? position, bytes.count)
        var line = 1
        var lineStart = 0
        for i in 0..<offset where bytes[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        return JSONError(offset: offset, line: line, column: offset - lineStart + 1, message: message)
    }

    func describe(_ offset: Int) -> String {
        guard offset < bytes.count else { return "end of input" }
        let b = bytes[offset]
        if b >= 0x21 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16))"
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws(JSONError) -> JSON {
        guard position < bytes.count else { throw error("expected a value, found end of input") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("expected a value, found \(describe(position))")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let start = position
        let utf8 = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for expected in utf8 {
            guard position < bytes.count, bytes[position] == expected else {
                throw error("invalid literal; expected '\(literal)'", at: start)
            }
            position += 1
        }
    }

    mutating func enter() throws(JSONError) {
        depth += 1
        if depth > maxDepth { throw error("nesting deeper than \(maxDepth) levels") }
    }

    mutating func parseArray() throws(JSONError) -> JSON {
        try enter()
        position += 1
        var elements: [JSON] = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard position < bytes.count else { throw error("unterminated array: expected ',' or ']'") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                depth -= 1
                return .array(elements)
            default: throw error("expected ',' or ']' in an array, found \(describe(position))")
            }
        }
    }

    /// The usual number, an integer of 1 to 18 digits, read in one pass; `nil` (and nothing
    /// read) for anything else, which `parseNumber` reads or refuses the general way.
    @inline(__always)
    mutating func parseShortInteger() -> JSON? {
        guard let base = bytes.baseAddress else { return nil }
        let end = bytes.count
        var p = position
        let negative = base[p] == UInt8(ascii: "-")
        if negative { p += 1 }
        let digitsStart = p
        var magnitude: Int64 = 0
        if p < end && base[p] == UInt8(ascii: "0") {
            p += 1
        } else {
            while p < end && base[p] &- 0x30 < 10 {
                magnitude = magnitude &* 10 &+ Int64(base[p] &- 0x30)
                p += 1
            }
        }
        let digits = p - digitsStart
        guard digits >= 1 && digits <= 18 else { return nil }
        if p < end {
            // A fraction, an exponent or a digit after a leading zero: the general way.
            let b = base[p]
            if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") || b &- 0x30 < 10 { return nil }
        }
        position = p
        return .int(negative ? -magnitude : magnitude)
    }

    /// Whether the name just parsed, from the quote at `start` to `position`, was written
    /// without escapes (then its text is its bytes) and sorts after the previous plain one.
    /// An escape makes the raw text longer than the name.
    @inline(__always)
    func plainNameFollows(_ previous: (start: Int, count: Int)?, start: Int, name: String) -> (start: Int, count: Int)? {
        let current = (start: start + 1, count: position - start - 2)
        guard current.count == name.utf8.count else { return nil }
        guard let previous else { return current }
        let a = bytes.baseAddress! + previous.start, b = bytes.baseAddress! + current.start
        let common = min(previous.count, current.count)
        var i = 0
        while i < common && a[i] == b[i] { i += 1 }
        if i < common { return a[i] < b[i] ? current : nil }
        return previous.count < current.count ? current : nil
    }

    mutating func parseObject() throws(JSONError) -> JSON {
        try enter()
        position += 1
        // Members in the order written; `JSONObject(unsorted:)` sorts them by name and keeps the
        // last of a repeated name.
        let base = pendingMembers.count
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return .object(JSONObject())
        }
        // While every name so far is plain and greater than the one before, the previous
        // name: the members are then known to be sorted, each name once.
        var sortedSoFar: (start: Int, count: Int)?
        var sorted = true
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw error("expected a string key in an object, found \(describe(position))")
            }
            let keyStart = position
            let key = try parseString()
            if sorted {
                sortedSoFar = plainNameFollows(sortedSoFar, start: keyStart, name: key)
                sorted = sortedSoFar != nil
            }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                throw error("expected ':' after an object key, found \(describe(position))")
            }
            position += 1
            skipWhitespace()
            let value = try parseValue()
            pendingMembers.append(JSONObject.Member(key: key, value: value))
            skipWhitespace()
            guard position < bytes.count else { throw error("unterminated object: expected ',' or '}'") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                depth -= 1
                let members = pendingMembers.removeAll(from: base)
                return .object(sorted ? JSONObject(sortedUnique: members) : JSONObject(unsorted: members))
            default: throw error("expected ',' or '}' in an object, found \(describe(position))")
            }
        }
    }

    mutating func parseString() throws(JSONError) -> String {
        let start = position
        position += 1
        // Fast path: up to the closing quote with no escape, the bytes (once validated) are
        // the string's UTF-8 and are copied in one go.
        var ascii = true
        position = scanPlainString(from: start + 1, ascii: &ascii)
        if position < bytes.count && bytes[position] == UInt8(ascii: "\"") {
            let s = JSONParser.makeString(UnsafeBufferPointer(rebasing: bytes[start + 1..<position]), ascii: ascii)
            position += 1
            return s
        }
        var out: [UInt8] = Array(bytes[start + 1..<position])
        while true {
            guard position < bytes.count else { throw error("unterminated string", at: start) }
            let b = bytes[position]
            switch b {
            case UInt8(ascii: "\""):
                position += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            case 0..<0x20:
                throw error("unescaped control character 0x\(String(b, radix: 16)) in a string")
            case 0x80...:
                let count = try utf8SequenceLength()
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[position..<position + count]))
                position += count
            default:
                out.append(b)
                position += 1
            }
        }
    }

    /// The string of `utf8`, bytes already checked to be valid UTF-8. A short ASCII one is
    /// made in place, without `String(decoding:)` checking the bytes again.
    @inline(__always)
    static func makeString(_ utf8: UnsafeBufferPointer<UInt8>, ascii: Bool) -> String {
        // 15 bytes fit in a small string, which is then made without checking ASCII bytes.
        guard ascii && utf8.count <= 15, let source = utf8.baseAddress else { return String(decoding: utf8, as: UTF8.self) }
        return String(unsafeUninitializedCapacity: utf8.count) { target in
            target.baseAddress!.update(from: source, count: utf8.count)
            return utf8.count
        }
    }

    /// The length of the multi-byte UTF-8 sequence at `position`, once it is checked to be
    /// valid (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
    func utf8SequenceLength() throws(JSONError) -> Int {
        let lead = bytes[position]
        let count: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: count = 2
        case 0xE0: count = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: count = 3
        case 0xED: count = 3; high = 0x9F
        case 0xF0: count = 4; low = 0x90
        case 0xF1...0xF3: count = 4
        case 0xF4: count = 4; high = 0x8F
        default: throw error("invalid UTF-8 byte 0x\(String(lead, radix: 16)) in a string")
        }
        guard position + count <= bytes.count else { throw error("truncated UTF-8 sequence in a string") }
        for i in 1..<count {
            let c = bytes[position + i]
            let (lo, hi) = i == 1 ? (low, high) : (UInt8(0x80), UInt8(0xBF))
            guard c >= lo && c <= hi else { throw error("invalid UTF-8 sequence in a string", at: position + i) }
        }
        return count
    }

    mutating func parseEscape(into out: inout [UInt8]) throws(JSONError) {
        position += 1
        guard position < bytes.count else { throw error("unterminated escape sequence") }
        let c = bytes[position]
        position += 1
        switch c {
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "/"): out.append(0x2F)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try parseHex4()
            if (0xD800...0xDBFF).contains(scalar) {
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                    throw error("a high surrogate escape must be followed by a low surrogate escape")
                }
                position += 2
                let low = try parseHex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw error("a high surrogate escape must be followed by a low surrogate escape") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw error("lone low surrogate escape")
            }
            // Surrogates were paired above or refused, so `scalar` is a Unicode scalar value.
            JSONParser.appendUTF8(scalar, to: &out)
        default:
            throw error("invalid escape '\\\(describe(position - 1))'", at: position - 2)
        }
    }

    static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(truncatingIfNeeded: scalar))
        case 0x80..<0x800:
            out.append(0xC0 | UInt8(truncatingIfNeeded: scalar >> 6))
            out.append(0x80 | UInt8(truncatingIfNeeded: scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(0xE0 | UInt8(truncatingIfNeeded: scalar >> 12))
            out.append(0x80 | UInt8(truncatingIfNeeded: (scalar >> 6) & 0x3F))
            out.append(0x80 | UInt8(truncatingIfNeeded: scalar & 0x3F))
        default:
            out.append(0xF0 | UInt8(truncatingIfNeeded: scalar >> 18))
            out.append(0x80 | UInt8(truncatingIfNeeded: (scalar >> 12) & 0x3F))
            out.append(0x80 | UInt8(truncatingIfNeeded: (scalar >> 6) & 0x3F))
            out.append(0x80 | UInt8(truncatingIfNeeded: scalar & 0x3F))
        }
    }

    mutating func parseHex4() throws(JSONError) -> UInt32 {
        guard position + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[position]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in a \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    mutating func parseNumber() throws(JSONError) -> JSON {
        if let value = parseShortInteger() { return value }
        let start = position
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard isDigit(position) else { throw error("a number needs digits after '-'", at: start) }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if isDigit(position) { throw error("numbers may not have leading zeros", at: start) }
        } else {
            while isDigit(position) { position += 1 }
        }
        var integral = true
        if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
            integral = false
            position += 1
            guard isDigit(position) else { throw error("a number needs digits after '.'") }
            while isDigit(position) { position += 1 }
        }
        if position < bytes.count && (bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E")) {
            integral = false
            position += 1
            if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) { position += 1 }
            guard isDigit(position) else { throw error("a number needs digits in its exponent") }
            while isDigit(position) { position += 1 }
        }
        if integral {
            // Up to 18 digits cannot overflow an Int64: no need to go through text.
            let negative = bytes[start] == UInt8(ascii: "-")
            let digitsStart = negative ? start + 1 : start
            if position - digitsStart <= 18 {
                var magnitude: Int64 = 0
                for i in digitsStart..<position { magnitude = magnitude &* 10 &+ Int64(bytes[i] &- 0x30) }
                return .int(negative ? -magnitude : magnitude)
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        if integral, let i = Int64(text) { return .int(i) }
        guard let d = Double(text), d.isFinite else { throw error("number \(text) is out of range", at: start) }
        return .double(d)
    }
}
