extension JSON {
    /// Compact RFC 8259 text: object members in the order of their names' UTF-8 bytes (the
    /// order `JSONObject` keeps), non-ASCII written as UTF-8, control characters escaped,
    /// integers exact, doubles in their shortest round-trip form. Non-finite doubles (which
    /// JSON cannot express) are written as `null`.
    ///
    /// Equal values (see `==`) give equal text, in any process.
    public var serialized: String {
        // The text is written in stack space first (and moves to the heap only if it outgrows it).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: JSONWriter.stackCapacity) { space in
            var out = JSONWriter(space: space)
            serialize(into: &out)
            return out.finish()
        }
    }

    package func serialize(into out: inout JSONWriter) {
        switch self {
        case .null:
            JSON.append("null", to: &out)
        case .bool(let b):
            JSON.append(b ? "true" : "false", to: &out)
        case .int(let i):
            JSON.writeInteger(i, to: &out)
        case .double(let d):
            if d.isFinite {
                var text = d.description
                text.withUTF8 { out.append($0) }
            } else {
                JSON.append("null", to: &out)
            }
        case .string(let s):
            JSON.writeString(s, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                element.serialize(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in members {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSON.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value.serialize(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    @inline(__always)
    package static func append(_ literal: StaticString, to out: inout JSONWriter) {
        out.append(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    package static func writeInteger(_ value: Int64, to out: inout JSONWriter) {
        if value >= 0 && value < 10 {
            out.append(0x30 &+ UInt8(truncatingIfNeeded: value))
            return
        }
        if value < 0 { out.append(UInt8(ascii: "-")) }
        out.appendDecimal(value.magnitude)
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    package static func writeString(_ s: String, to out: inout JSONWriter) {
        // Without copying `s` first, as `withUTF8` (which is mutating) would need.
        let done: Void? = s.utf8.withContiguousStorageIfAvailable { writeQuoted($0, to: &out) }
        if done == nil {
            var s = s
            s.withUTF8 { writeQuoted($0, to: &out) }
        }
    }

    @inline(__always)
    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    /// `bytes` in quotes. Most strings need no escape: those are found by one scan and copied
    /// in one go.
    private static func writeQuoted(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout JSONWriter) {
        var clean = 0
        while clean < bytes.count && !needsEscape(bytes[clean]) { clean += 1 }
        if clean == bytes.count {
            out.appendQuoted(bytes)
            return
        }
        out.reserve(bytes.count + 2)
        out.appendReserved(UInt8(ascii: "\""))
        writeEscaped(bytes, from: clean, to: &out)
        out.append(UInt8(ascii: "\""))
    }

    /// Copies runs of bytes that need no escape in one go; only '"', '\' and C0 controls do.
    /// The bytes before `start` need none.
    private static func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to out: inout JSONWriter) {
        var runStart = 0
        var i = start
        while i < bytes.count {
            let byte = bytes[i]
            if !needsEscape(byte) {
                i += 1
                continue
            }
            if runStart < i { out.append(UnsafeBufferPointer(rebasing: bytes[runStart..<i])) }
            out.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            default:
                out.append(UInt8(ascii: "u"))
                out.append(UInt8(ascii: "0"))
                out.append(UInt8(ascii: "0"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 15)])
            }
            i += 1
            runStart = i
        }
        if runStart < bytes.count { out.append(UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count])) }
    }
}

/// A growable byte buffer without the uniqueness check `Array.append` makes on every byte.
package struct JSONWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    package private(set) var count = 0
    /// Whether `base` is this writer's to deallocate (rather than space it was lent).
    private var owned: Bool

    /// The stack space a writer of a frame or a value is usually lent: most fit in it.
    package static let stackCapacity = 512

    package init() { self.init(space: UnsafeMutableBufferPointer(start: nil, count: 0)) }

    /// A writer that starts in `space` (stack space, say), which must outlive it, and moves
    /// to the heap only when the text outgrows it; with no space, on the heap from the start.
    package init(space: UnsafeMutableBufferPointer<UInt8>) {
        if let start = space.baseAddress, space.count > 0 {
            base = start
            capacity = space.count
            owned = false
        } else {
            capacity = 256
            base = .allocate(capacity: capacity)
            owned = true
        }
    }

    deinit { if owned { base.deallocate() } }

    @inline(__always)
    package mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private mutating func grow(_ needed: Int) {
        (base, capacity) = moveToLargerRoom(base, count: count, capacity: capacity, needed: needed, onHeap: owned)
        owned = true
    }

    @inline(__always)
    package mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    /// After `reserve`.
    @inline(__always)
    package mutating func appendReserved(_ byte: UInt8) {
        base[count] = byte
        count += 1
    }

    @inline(__always)
    package mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    /// `bytes` between quotes, as they are (they need no escape): one reservation, and a
    /// short run copied byte by byte rather than through a call to `memcpy`.
    @inline(__always)
    package mutating func appendQuoted(_ bytes: UnsafeBufferPointer<UInt8>) {
        let n = bytes.count
        reserve(n + 2)
        let start = base + count
        start.pointee = UInt8(ascii: "\"")
        if let source = bytes.baseAddress {
            if n <= 16 {
                for i in 0..<n { start[1 + i] = source[i] }
            } else {
                (start + 1).update(from: source, count: n)
            }
        }
        start[n + 1] = UInt8(ascii: "\"")
        count += n + 2
    }

    /// `magnitude` in decimal digits, most significant first: counted by comparisons, then
    /// written from the last two at a time, with no intermediate String.
    package mutating func appendDecimal(_ magnitude: UInt64) {
        var digits = 1
        var power: UInt64 = 10
        while digits < 20 && magnitude >= power {
            digits += 1
            power = power &* 10
        }
        reserve(digits)
        let pairs = JSONWriter.digitPairs.utf8Start
        var at = base + count + digits
        var rest = magnitude
        while rest >= 100 {
            let pair = Int(truncatingIfNeeded: rest % 100) &* 2
            rest /= 100
            at -= 2
            at[0] = pairs[pair]
            at[1] = pairs[pair + 1]
        }
        if rest >= 10 {
            let pair = Int(truncatingIfNeeded: rest) &* 2
            at -= 2
            at[0] = pairs[pair]
            at[1] = pairs[pair + 1]
        } else {
            at -= 1
            at.pointee = 0x30 &+ UInt8(truncatingIfNeeded: rest)
        }
        count += digits
    }

    /// "00" to "99", for writing decimal digits two at a time.
    private static let digitPairs: StaticString =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

    package consuming func finish() -> String {
        if count == 0 { return "" }
        return String(unsafeUninitializedCapacity: count) { target in
            target.baseAddress!.update(from: base, count: count)
            return count
        }
    }
}
