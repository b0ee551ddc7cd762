// A frame's top-level members read straight from its text, for readers (the wire's) that
// look fields up by name without building the object.

/// A member of a document's top-level object, as `JSON.topLevelMembers` gives it: the name is
/// left in the text, `nameCount` bytes from `nameStart`.
package struct JSONRawMember {
    package var nameStart: Int
    package var nameCount: Int
    package var value: JSON

    package init(nameStart: Int, nameCount: Int, value: JSON) {
        (self.nameStart, self.nameCount, self.value) = (nameStart, nameCount, value)
    }
}

extension JSON {
    /// For a reader that takes an object's members straight from the text (the wire's
    /// frames) rather than from a `JSONObject`: when `bytes` is one valid JSON document (as
    /// `init(parsing:maxDepth:)` accepts it) whose value is an object with no escape in its
    /// names, its members in the order written, names as ranges of `bytes` (valid UTF-8, the
    /// name's exact bytes), values parsed; repeated names are all there. `nil` otherwise:
    /// not an object, a name with an escape, more than 64 members, or anything
    /// `init(parsing:)` refuses; that initializer then says what.
    package static func topLevelMembers(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = JSON.defaultMaxDepth) -> [JSONRawMember]? {
        withUnsafeTemporaryAllocation(of: JSONRawMember.self, capacity: 64) { space in
            guard let count = topLevelMembers(bytes, maxDepth: maxDepth, into: space) else { return nil }
            let members = Array(space[..<count])
            space.baseAddress!.deinitialize(count: count)
            return members
        }
    }

    /// `topLevelMembers` written into `space`, which the caller lends (stack space, say): the
    /// count of members, initialized at the start of `space` (the caller deinitializes them);
    /// `nil`, leaving `space` uninitialized, when there are none to give or more than `space`
    /// holds.
    package static func topLevelMembers(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = JSON.defaultMaxDepth,
                                        into space: UnsafeMutableBufferPointer<JSONRawMember>) -> Int? {
        JSONParser.with(bytes, maxDepth: maxDepth) { parser in
            var members = TemporaryStack(space)
            guard parser.parseTopLevelMembers(into: &members), !members.isOnHeap else {
                members.release()
                return nil
            }
            return members.count
        }
    }
}

extension JSONParser {
    /// See `JSON.topLevelMembers`: the same steps as `parseDocument` and `parseObject`, with
    /// `nil` where those would throw or a name has an escape.
    mutating func parseTopLevelMembers(into members: inout TemporaryStack<JSONRawMember>) -> Bool {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == UInt8(ascii: "{"), maxDepth >= 1 else { return false }
        depth = 1
        position += 1
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
        } else {
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { return false }
                guard let (nameStart, nameCount) = rawName() else { return false }
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { return false }
                position += 1
                skipWhitespace()
                guard let value = try? parseValue() else { return false }
                members.append(JSONRawMember(nameStart: nameStart, nameCount: nameCount, value: value))
                skipWhitespace()
                guard position < bytes.count else { return false }
                if bytes[position] == UInt8(ascii: ",") {
                    position += 1
                } else if bytes[position] == UInt8(ascii: "}") {
                    position += 1
                    break
                } else {
                    return false
                }
            }
        }
        depth = 0
        skipWhitespace()
        return position == bytes.count
    }

    /// The bytes of the string at `position` when it has no escape (and is valid, as
    /// `parseString` checks it), past its closing quote; `nil` otherwise.
    mutating func rawName() -> (start: Int, count: Int)? {
        let start = position + 1
        let end = scanPlainString(from: start)
        position = end
        guard end < bytes.count, bytes[end] == UInt8(ascii: "\"") else { return nil }
        position += 1
        return (start, end - start)
    }
}
