// Fuzz target: the JSON parser and serializer.
//
// Every input is either refused with a JSONError (typed throws: nothing else can come out, and
// a trap is a crash libFuzzer reports) or accepted, and then:
//   - the value reaches a fixed point at once: parse(serialize(v)) == v, and serializing that
//     gives the same bytes again;
//   - the text is no longer than the bound below (no blow-up from short input);
//   - the text's nesting is within the depth bound, and the bound is exact: one level less
//     refuses it with the nesting error, its own depth accepts it (the value may nest less:
//     a repeated name drops the earlier member);
//   - every object lists its names in strictly increasing UTF-8 order, finds each of them,
//     and rebuilding it in the reverse order gives the same object and the same text;
//   - when the input is UTF-8, parsing it as a String gives the same value as the bytes.
import SagaLaneJSON

/// Each accepted token serializes to at most 4.5 times its own length ("1e15" is
/// "1000000000000000.0"); strings, integers, literals and punctuation never grow, and
/// whitespace disappears. Five times the input is a bound with a little room.
private let expansionBound = 5

private func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    let shown = String(decoding: input.prefix(512), as: UTF8.self)
    fatalError("json fuzz: \(what); input (\(input.count) bytes): \(shown)")
}

private func sameBytes(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

/// Nesting depth of accepted text, as the parser counts it: 1 for `[]` or `{}`, 0 for a
/// scalar. This is the text's, not the value's: a member whose name comes again later is
/// dropped from the value but was nested all the same.
private func textDepth(_ input: UnsafeBufferPointer<UInt8>) -> Int {
    var depth = 0, deepest = 0
    var inString = false, escaped = false
    for byte in input {
        if inString {
            if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            continue
        }
        switch byte {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "["), UInt8(ascii: "{"): depth += 1; deepest = max(deepest, depth)
        case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
        default: break
        }
    }
    return deepest
}

/// Nesting depth of a value, counted as `textDepth` counts text.
private func depth(_ value: JSON) -> Int {
    switch value {
    case .array(let elements): return 1 + (elements.map(depth).max() ?? 0)
    case .object(let members): return 1 + (members.map { depth($0.value) }.max() ?? 0)
    default: return 0
    }
}

private func checkObjects(_ value: JSON, _ input: UnsafeBufferPointer<UInt8>) {
    switch value {
    case .array(let elements):
        for element in elements { checkObjects(element, input) }
    case .object(let members):
        var previous: String?
        for (key, member) in members {
            if let previous, !previous.utf8.lexicographicallyPrecedes(key.utf8) {
                fail("object names not in strictly increasing UTF-8 order", input)
            }
            previous = key
            guard let found = members[key], found == member else { fail("an object does not find its own member", input) }
            checkObjects(member, input)
        }
        var reversed = JSONObject()
        for (key, member) in members.reversed() { reversed[key] = member }
        if reversed != members || !sameBytes(JSON.object(reversed).serialized, JSON.object(members).serialized) {
            fail("an object built in another order differs", input)
        }
    default:
        break
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let value: JSON
    do {
        value = try JSON(parsing: input)
    } catch {
        if error.offset < 0 || error.offset > size || error.line < 1 || error.column < 1 || error.message.isEmpty {
            fail("a refusal that does not say where or why: \(error)", input)
        }
        return 0
    }

    let text = value.serialized
    if text.utf8.count > expansionBound * max(size, 1) {
        fail("\(text.utf8.count) bytes of text from \(size) bytes of input", input)
    }
    let again: JSON
    do { again = try JSON(parsing: text) } catch { fail("its own text does not parse: \(error); text: \(text)", input) }
    if again != value { fail("parse(serialize(v)) != v; text: \(text)", input) }
    if !sameBytes(again.serialized, text) { fail("serializing twice gives different text: \(text)", input) }
    if again.hashValue != value.hashValue { fail("equal values hash differently", input) }

    let levels = textDepth(input)
    if depth(value) > levels { fail("the value nests deeper (\(depth(value))) than its text (\(levels))", input) }
    if depth(again) != depth(value) { fail("the value's depth changed through its text", input) }
    if levels > JSON.defaultMaxDepth { fail("depth \(levels) accepted beyond the bound \(JSON.defaultMaxDepth)", input) }
    if levels > 0 {
        do {
            _ = try JSON(parsing: input, maxDepth: levels - 1)
            fail("depth \(levels) accepted with maxDepth \(levels - 1)", input)
        } catch {
            if !error.message.contains("nesting deeper") { fail("depth bound refused with another error: \(error)", input) }
        }
        if (try? JSON(parsing: input, maxDepth: levels)) != value { fail("depth \(levels) refused at its own bound", input) }
    }

    checkObjects(value, input)

    if let string = String(validating: input, as: UTF8.self) {
        guard let fromString = try? JSON(parsing: string), fromString == value else {
            fail("the String entry point disagrees with the bytes one", input)
        }
    }
    return 0
}
