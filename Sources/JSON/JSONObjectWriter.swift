import Glibc

/// Writes one JSON object's text member by member, for an encoder that knows its members and
/// would otherwise build a `JSONObject` only to serialize it at once.
///
/// Members must be given in increasing order of name (by UTF-8 bytes, the order `JSONObject`
/// keeps), so that the text is exactly what `JSON.serialized` writes for the same members
/// (checked in debug builds). Static names are written as they are: they must need no escape.
package struct JSONObjectWriter: ~Copyable {
    private var out: JSONWriter
    private var empty = true
    #if DEBUG
    private var lastName: String?
    #endif

    package init() { self.init(space: UnsafeMutableBufferPointer(start: nil, count: 0)) }

    /// A writer that starts in `space` (see `JSONWriter.init(space:)`).
    package init(space: UnsafeMutableBufferPointer<UInt8>) {
        out = JSONWriter(space: space)
        out.append(UInt8(ascii: "{"))
    }

    /// Negative, zero or positive as `a` sorts before, equals or sorts after `b` (by bytes).
    package static func order(_ a: StaticString, _ b: StaticString) -> Int {
        // Byte by byte rather than `memcmp`: names are short and mostly differ at once.
        let common = min(a.utf8CodeUnitCount, b.utf8CodeUnitCount)
        let pa = a.utf8Start, pb = b.utf8Start
        for i in 0..<common where pa[i] != pb[i] { return Int(pa[i]) - Int(pb[i]) }
        return a.utf8CodeUnitCount - b.utf8CodeUnitCount
    }

    private mutating func checkOrder(_ name: String) {
        #if DEBUG
        if let lastName {
            precondition(JSONKey.compare(lastName, name) < 0, "JSONObjectWriter: \"\(name)\" written after \"\(lastName)\"")
        }
        lastName = name
        #endif
    }

    private mutating func name(_ name: StaticString) {
        #if DEBUG
        checkOrder("\(name)")
        precondition(!"\(name)".utf8.contains { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }, "JSONObjectWriter: \"\(name)\" needs escapes")
        #endif
        // One reservation for the comma, the quoted name and the colon.
        out.reserve(name.utf8CodeUnitCount + 4)
        if !empty { out.appendReserved(UInt8(ascii: ",")) }
        empty = false
        out.appendQuoted(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        out.appendReserved(UInt8(ascii: ":"))
    }

    package mutating func member(_ name: StaticString, _ value: JSON) {
        self.name(name)
        value.serialize(into: &out)
    }

    package mutating func member(_ name: StaticString, string: String) {
        self.name(name)
        JSON.writeString(string, to: &out)
    }

    package mutating func member(_ name: StaticString, int: Int64) {
        self.name(name)
        JSON.writeInteger(int, to: &out)
    }

    package mutating func member(_ name: StaticString, strings: [String]) {
        self.name(name)
        out.append(UInt8(ascii: "["))
        for (index, string) in strings.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSON.writeString(string, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// A member whose name is only known at run time (escaped as needed).
    package mutating func member(named name: String, _ value: JSON) {
        checkOrder(name)
        if !empty { out.append(UInt8(ascii: ",")) }
        empty = false
        JSON.writeString(name, to: &out)
        out.append(UInt8(ascii: ":"))
        value.serialize(into: &out)
    }

    /// The object's text.
    package consuming func finish() -> String {
        out.append(UInt8(ascii: "}"))
        return out.finish()
    }
}
