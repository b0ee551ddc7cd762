import Glibc

/// The members of a JSON object: names mapped to values, each name at most once.
///
/// Names are compared and ordered by their UTF-8 bytes, which is the same as comparing their
/// Unicode scalars one by one. This is not how `String` compares: Swift's `==` and `<` treat
/// canonically equivalent strings as equal, so "\u{E9}" (é) and "e\u{301}" (e and a combining
/// acute) would be one key in a `[String: JSON]`, while RFC 8259 (§8.3) makes them two
/// different names. Here they are two members.
///
/// The members are kept sorted by name, so iteration, equality, hashing and serialization all
/// see them in the same order whatever order they were inserted in: equal objects serialize
/// to the same text in every process.
///
/// Setting a name that is already present replaces its value: the last one wins, in a
/// dictionary literal, in `init(_:)` and when parsing text with a name given twice (RFC 8259
/// allows this choice; JavaScript's `JSON.parse`, Go's `encoding/json` and Python's `json`
/// make the same one).
///
/// Storage is one sorted array, which suits the small objects payloads and commands are made
/// of: finding a name is a binary search, serializing a walk. Setting a new name shifts the
/// members after it, so building a large object one member at a time in random order is
/// quadratic; build it from a sequence of pairs instead (`init(_:)` sorts once), or in
/// increasing order of names (each one then goes at the end).
public struct JSONObject: Sendable {
    public typealias Element = (key: String, value: JSON)

    /// A struct rather than `Element`: arrays of tuples copy and destroy through generic code.
    struct Member {
        var key: String
        var value: JSON
    }

    /// Sorted by `key` (UTF-8 bytes), keys unique.
    private var members: [Member]

    /// An empty object.
    public init() { members = [] }

    /// An object from `pairs`, in any order; for a name given more than once the last value wins.
    public init<S: Sequence>(_ pairs: S) where S.Element == (String, JSON) {
        self.init(unsorted: pairs.map { Member(key: $0.0, value: $0.1) })
    }

    /// An object with the members of `dictionary`. (Its keys have already been merged by
    /// `String`'s canonical equivalence; build a `JSONObject` directly to keep both of two
    /// equivalent names.)
    public init(_ dictionary: [String: JSON]) {
        self.init(unsorted: dictionary.map { Member(key: $0.key, value: $0.value) })
    }

    /// Takes members in any order, possibly with repeated keys: sorts them and keeps the last
    /// value of each key. Text from our own serializer is already sorted, which costs one pass.
    init(unsorted members: [Member]) {
        self.members = members
        var sortedAndUnique = true
        if members.count > 1 {
            for i in 1..<members.count where JSONKey.compare(members[i - 1].key, members[i].key) >= 0 {
                sortedAndUnique = false
                break
            }
        }
        if !sortedAndUnique { sortKeepingTheLast() }
    }

    /// Members the parser found sorted by name, each name once (checked in debug builds).
    init(sortedUnique members: [Member]) {
        self.members = members
        #if DEBUG
        for i in members.indices.dropFirst() {
            precondition(JSONKey.compare(members[i - 1].key, members[i].key) < 0, "JSONObject(sortedUnique:): not sorted")
        }
        #endif
    }

    private mutating func sortKeepingTheLast() {
        if members.count <= 16 {
            // Insertion sort, stable: of equal keys the last given stays last of its run. Few
            // members (the usual object) move less this way than through a general sort.
            for i in 1..<members.count {
                var j = i
                while j > 0 && JSONKey.compare(members[j - 1].key, members[j].key) > 0 {
                    members.swapAt(j - 1, j)
                    j -= 1
                }
            }
        } else {
            // Sort positions by (key, position), so that of equal keys the last given ends its
            // run, whatever the sort's stability.
            let order = members.indices.sorted { a, b in
                let c = JSONKey.compare(members[a].key, members[b].key)
                return c < 0 || (c == 0 && a < b)
            }
            members = order.map { members[$0] }
        }
        var kept = 0
        for i in members.indices {
            if i + 1 < members.count && JSONKey.equal(members[i].key, members[i + 1].key) { continue }
            if kept != i { members.swapAt(kept, i) }
            kept += 1
        }
        members.removeLast(members.count - kept)
    }

    /// Where `key` is, or where it would be inserted.
    private func search(_ key: String) -> (index: Int, found: Bool) {
        var low = 0
        var high = members.count
        while low < high {
            let mid = (low + high) >> 1
            let c = JSONKey.compare(members[mid].key, key)
            if c == 0 { return (mid, true) }
            if c < 0 { low = mid + 1 } else { high = mid }
        }
        return (low, false)
    }

    /// The value of member `key` (compared by UTF-8 bytes); setting `nil` removes the member.
    public subscript(key: String) -> JSON? {
        get {
            let (index, found) = search(key)
            // Not a ternary: `nil` there would be typed as `JSON` (it is nil-literal
            // expressible) and come back as `.some(.null)`.
            guard found else { return nil }
            return members[index].value
        }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    /// The value of member `key`, or `defaultValue` when there is none.
    public subscript(key: String, default defaultValue: @autoclosure () -> JSON) -> JSON {
        get { self[key] ?? defaultValue() }
        set { updateValue(newValue, forKey: key) }
    }

    /// Sets member `key` to `value`.
    /// - Returns: the value it replaced, or `nil` when the member is new.
    @discardableResult
    public mutating func updateValue(_ value: JSON, forKey key: String) -> JSON? {
        let (index, found) = search(key)
        if found {
            let old = members[index].value
            members[index].value = value
            return old
        }
        members.insert(Member(key: key, value: value), at: index)
        return nil
    }

    /// Removes member `key`.
    /// - Returns: its value, or `nil` when there was no such member.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSON? {
        let (index, found) = search(key)
        guard found else { return nil }
        return members.remove(at: index).value
    }

    /// The position of member `key`, or `nil`.
    public func index(forKey key: String) -> Int? {
        let (index, found) = search(key)
        return found ? index : nil
    }

    /// The names, in order.
    public var keys: Keys { Keys(object: self) }

    /// The values, in the order of their names.
    public var values: Values { Values(object: self) }

    /// The names of an object, in order (a view, as `Dictionary.Keys` is).
    public struct Keys: RandomAccessCollection, Sendable {
        let object: JSONObject
        public var startIndex: Int { 0 }
        public var endIndex: Int { object.members.count }
        public subscript(position: Int) -> String { object.members[position].key }
    }

    /// The values of an object, in the order of their names.
    public struct Values: RandomAccessCollection, Sendable {
        let object: JSONObject
        public var startIndex: Int { 0 }
        public var endIndex: Int { object.members.count }
        public subscript(position: Int) -> JSON { object.members[position].value }
    }

    /// The same names, each value transformed.
    public func mapValues(_ transform: (JSON) throws -> JSON) rethrows -> JSONObject {
        var copy = self
        for i in copy.members.indices { copy.members[i].value = try transform(copy.members[i].value) }
        return copy
    }
}

extension JSONObject: RandomAccessCollection {
    public var startIndex: Int { 0 }
    public var endIndex: Int { members.count }
    public subscript(position: Int) -> Element {
        let member = members[position]
        return (key: member.key, value: member.value)
    }
    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    /// For a name written twice the last value wins (a `Dictionary` literal would trap).
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self.init(unsorted: elements.map { Member(key: $0.0, value: $0.1) })
    }
}

extension JSONObject: Hashable {
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        for (l, r) in zip(lhs.members, rhs.members) where !(JSONKey.equal(l.key, r.key) && l.value == r.value) {
            return false
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(members.count)
        for member in members {
            JSONKey.hash(member.key, into: &hasher)
            hasher.combine(member.value)
        }
    }
}

extension JSONObject: CustomStringConvertible {
    /// The object as compact JSON text.
    public var description: String { JSON.object(self).serialized }
}

/// Comparisons of strings by their UTF-8 bytes (equivalently, their Unicode scalars), which
/// is what names in JSON mean; `String`'s own operators compare by canonical equivalence.
package enum JSONKey {
    /// Negative, zero or positive as `a`'s UTF-8 bytes sort before, equal or after `b`'s.
    @inline(__always)
    package static func compare(_ a: String, _ b: String) -> Int {
        let fast = a.utf8.withContiguousStorageIfAvailable { pa in
            b.utf8.withContiguousStorageIfAvailable { pb -> Int in
                let common = min(pa.count, pb.count)
                if common > 0 {
                    let c = memcmp(pa.baseAddress!, pb.baseAddress!, common)
                    if c != 0 { return Int(c) }
                }
                return pa.count - pb.count
            }
        }
        if let result = fast ?? nil { return result }
        if a.utf8.elementsEqual(b.utf8) { return 0 }
        return a.utf8.lexicographicallyPrecedes(b.utf8) ? -1 : 1
    }

    @inline(__always)
    static func equal(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && compare(a, b) == 0
    }

    static func hash(_ s: String, into hasher: inout Hasher) {
        let utf8 = s.utf8
        hasher.combine(utf8.count)
        let done: Void? = utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            for byte in utf8 { hasher.combine(byte) }
        }
    }
}
