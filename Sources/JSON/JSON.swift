/// A JSON value: what payloads, saga inputs and commands are made of.
///
/// Numbers keep their integer-ness: a literal with no fraction or exponent that fits in
/// `Int64` is `.int`, so ids round-trip exactly; every other number is `.double`.
/// Strings and object names are sequences of Unicode scalars, compared as such (by their UTF-8
/// bytes), not by `String`'s canonical equivalence: "\u{E9}" and "e\u{301}" are different
/// strings and different names, as RFC 8259 (§8.3) has it. Objects keep their members sorted by
/// name (see `JSONObject`), so equal values serialize to equal text.
public enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

extension JSON {
    /// The member `key` of an object; `nil` for a missing key or a value that is not an object.
    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The element at `index` of an array; `nil` when out of range or not an array.
    public subscript(index: Int) -> JSON? {
        if case .array(let elements) = self, elements.indices.contains(index) { return elements[index] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The value as an integer: an `.int`, or a `.double` with an exact integral value in range.
    public var int64Value: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var isNull: Bool { self == .null }

    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// A copy of this object with member `key` set to `value`. Any other value is returned
    /// unchanged: only objects have members to set.
    public func setting(_ key: String, to value: JSON) -> JSON {
        guard case .object(var members) = self else { return self }
        members[key] = value
        return .object(members)
    }
}

extension JSON: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    /// For a name written twice the last value wins.
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(JSONObject(unsorted: elements.map { JSONObject.Member(key: $0.0, value: $0.1) }))
    }
}

extension JSON: Hashable {
    /// Equal values are the same JSON, and serialize to the same text: strings compare by
    /// their Unicode scalars (not canonical equivalence), objects member by member (names by
    /// their scalars too), `.int` never equals `.double`, and doubles compare by value except
    /// that `-0.0` differs from `0.0` (they are written differently) and a NaN equals any NaN
    /// (so equality stays reflexive; both are written `null`).
    public static func == (lhs: JSON, rhs: JSON) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.double(let a), .double(let b)): return a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN)
        case (.string(let a), .string(let b)): return JSONKey.equal(a, b)
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        // The case's tag first, so values of different kinds that hash their payload alike
        // (false and 0, an empty array and an empty object) still differ.
        switch self {
        case .null: hasher.combine(0 as UInt8)
        case .bool(let b): hasher.combine(1 as UInt8); hasher.combine(b)
        case .int(let i): hasher.combine(2 as UInt8); hasher.combine(i)
        case .double(let d): hasher.combine(3 as UInt8); hasher.combine(d.isNaN ? Double.nan.bitPattern : d.bitPattern)
        case .string(let s): hasher.combine(4 as UInt8); JSONKey.hash(s, into: &hasher)
        case .array(let a): hasher.combine(5 as UInt8); hasher.combine(a)
        case .object(let o): hasher.combine(6 as UInt8); hasher.combine(o)
        }
    }
}

extension JSON: CustomStringConvertible {
    public var description: String { serialized }
}
