import SagaLaneTestSupport
import Testing
@testable import SagaLaneJSON

/// Names that `String` merges or misorders: canonically equivalent pairs (precomposed and
/// decomposed é, Ångström sign and Å), a name and its prefix, the empty name, and scalars at
/// the edges of each UTF-8 length.
private let trickyKeys: [String] = [
    "\u{E9}", "e\u{301}", "e", "\u{212B}", "\u{C5}", "A\u{30A}", "", "a", "ab", "a\u{0}", "\u{7F}", "\u{80}",
    "\u{7FF}", "\u{800}", "\u{FFFF}", "\u{10000}", "\u{10FFFF}", "😀", "Z", "z", "\u{1E0A}\u{323}", "\u{1E0C}\u{307}",
]

private func utf8Precedes(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

/// Texts compared byte for byte: `String`'s `==` would call "\u{E9}" and "e\u{301}" equal.
private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct JSONObjectTests {
    @Test func canonicallyEquivalentNamesAreTwoMembers() throws {
        let parsed = try JSON(parsing: #"{"\u00e9":1,"e\u0301":2}"#)
        let members = try #require(parsed.objectValue)
        #expect(members.count == 2)
        #expect(parsed["\u{E9}"] == 1)
        #expect(parsed["e\u{301}"] == 2)
        // e (0x65) sorts before é's lead byte 0xC3, so the decomposed name comes first.
        #expect(bytes(parsed.serialized) == bytes("{\"e\u{301}\":2,\"\u{E9}\":1}"))
        #expect(try JSON(parsing: parsed.serialized) == parsed)

        let angstrom = try JSON(parsing: #"{"\u212b":"sign","\u00c5":"letter","A\u030a":"decomposed"}"#)
        #expect(angstrom.objectValue?.count == 3)
        #expect(angstrom["\u{212B}"] == "sign")
        #expect(angstrom["\u{C5}"] == "letter")
        #expect(angstrom["A\u{30A}"] == "decomposed")
        #expect(bytes(angstrom.serialized) == bytes("{\"A\u{30A}\":\"decomposed\",\"\u{C5}\":\"letter\",\"\u{212B}\":\"sign\"}"))

        // Literals and setting keep them apart too.
        let literal: JSON = ["\u{E9}": 1, "e\u{301}": 2]
        #expect(literal == parsed)
        #expect(JSON.object([:]).setting("\u{E9}", to: 1).setting("e\u{301}", to: 2) == parsed)
        var object = JSONObject()
        object["\u{212B}"] = "sign"
        object["\u{C5}"] = "letter"
        #expect(object.count == 2)
        #expect(object["A\u{30A}"] == nil)
    }

    @Test func stringsCompareByScalarsNotEquivalence() {
        let composed = JSON.string("\u{E9}"), decomposed = JSON.string("e\u{301}")
        #expect("\u{E9}" == "e\u{301}", "String itself calls them equal: this is what JSON must not do")
        #expect(composed != decomposed)
        #expect(bytes(composed.serialized) != bytes(decomposed.serialized))
        #expect(Set([composed, decomposed]).count == 2)
        #expect(JSON.array([composed]) != JSON.array([decomposed]))
        #expect(JSON(dictionaryLiteral: ("k", composed)) != JSON(dictionaryLiteral: ("k", decomposed)))
    }

    @Test func equalValuesSerializeEqually() {
        #expect(JSON.double(0.0) != JSON.double(-0.0), "they serialize as 0.0 and -0.0")
        #expect(JSON.double(.nan) == JSON.double(.nan), "equality is reflexive")
        #expect(Set([JSON.double(.nan), .double(.nan), .double(0.0), .double(-0.0)]).count == 3)
        #expect(JSON.int(1) != JSON.double(1))
        #expect(JSON.double(1.5) == JSON.double(1.5))
    }

    /// Whatever order the members arrive in, through literals, setting or parsing, the object
    /// is the same: equal, same hash, same text, names in increasing UTF-8 order.
    @Test func orderIsTheSameForAnyInsertionOrder() throws {
        var rng = SplitMix(state: 0x0BDE7)
        let reference: JSON = .object(JSONObject(trickyKeys.enumerated().map { ($0.element, JSON.int(Int64($0.offset))) }))
        let text = reference.serialized
        let names = Array(try #require(reference.objectValue).keys)
        #expect(names.count == trickyKeys.count)
        for (a, b) in zip(names, names.dropFirst()) { #expect(utf8Precedes(a, b), "\(Array(a.unicodeScalars)) before \(Array(b.unicodeScalars))") }
        for _ in 0..<200 {
            var order = Array(trickyKeys.indices)
            for i in order.indices.reversed() { order.swapAt(i, rng.next(i + 1)) }

            var bySetting = JSONObject()
            for i in order { bySetting[trickyKeys[i]] = .int(Int64(i)) }
            let byPairs = JSONObject(order.map { (trickyKeys[$0], JSON.int(Int64($0))) })
            let shuffledText = "{" + order.map { "\(JSON.string(trickyKeys[$0]).serialized):\($0)" }.joined(separator: ",") + "}"
            let byParsing = try JSON(parsing: shuffledText)

            for value in [JSON.object(bySetting), .object(byPairs), byParsing] {
                #expect(value == reference)
                #expect(value.hashValue == reference.hashValue)
                #expect(bytes(value.serialized) == bytes(text))
            }
        }
    }

    @Test func theLastOfARepeatedNameWins() throws {
        #expect(try JSON(parsing: #"{"a":1,"a":2}"#) == ["a": 2])
        #expect(try JSON(parsing: #"{"a":1,"b":0,"a":2,"a":3}"#).serialized == #"{"a":3,"b":0}"#)
        let equivalent = try JSON(parsing: #"{"\u00e9":1,"e\u0301":2,"\u00e9":3}"#)
        #expect(equivalent.objectValue?.count == 2)
        #expect(equivalent["\u{E9}"] == 3)
        #expect(equivalent["e\u{301}"] == 2)
        let literal: JSON = ["x": 1, "y": 2, "x": 3]
        #expect(literal.serialized == #"{"x":3,"y":2}"#)
        #expect(JSONObject([("k", 1), ("k", 2)]) == ["k": 2])
    }

    /// Many members, names repeated, in random order: the same result as a map keyed by the
    /// names' bytes where later values replace earlier ones.
    @Test func largeObjectsWithRepeatsKeepTheLastOfEachName() throws {
        var rng = SplitMix(state: 0x1A4E)
        var pairs: [(String, JSON)] = []
        var expected: [[UInt8]: Int64] = [:]
        for i in 0..<3_000 {
            let name = rng.next(3) == 0 ? trickyKeys[rng.next(trickyKeys.count)] : "k\(rng.next(800))"
            pairs.append((name, .int(Int64(i))))
            expected[Array(name.utf8)] = Int64(i)
        }
        let text = "{" + pairs.map { "\(JSON.string($0.0).serialized):\($0.1.serialized)" }.joined(separator: ",") + "}"
        for object in [JSONObject(pairs), try #require(try JSON(parsing: text).objectValue)] {
            #expect(object.count == expected.count)
            for (name, value) in object { #expect(value == .int(expected[Array(name.utf8)] ?? -1)) }
            let names = object.keys.map { Array($0.utf8) }
            #expect(names == names.sorted { $0.lexicographicallyPrecedes($1) })
        }
    }

    @Test func dictionaryLikeAccess() {
        var object: JSONObject = ["b": 2, "a": 1]
        #expect(Array(object.keys) == ["a", "b"])
        #expect(Array(object.values) == [1, 2])
        #expect(object.keys.map { $0.uppercased() } == ["A", "B"])
        #expect(object.map { $0.key } == ["a", "b"])
        #expect(object.updateValue(10, forKey: "a") == 1)
        #expect(object.updateValue(3, forKey: "c") == nil)
        #expect(object["a"] == 10)
        #expect(object["missing"] == nil)
        #expect(object["missing", default: 7] == 7)
        object["d", default: 0] = 4
        #expect(object.index(forKey: "c") == 2)
        #expect(object.index(forKey: "zz") == nil)
        #expect(object.removeValue(forKey: "b") == 2)
        #expect(object.removeValue(forKey: "b") == nil)
        object["c"] = nil
        #expect(object == ["a": 10, "d": 4])
        #expect(object.mapValues { .int(($0.int64Value ?? 0) + 1) } == ["a": 11, "d": 5])
        #expect(object.count == 2 && !object.isEmpty && JSONObject().isEmpty)
        #expect(object.description == #"{"a":10,"d":4}"#)
        #expect(JSONObject(["q": 1, "p": 2] as [String: JSON]).description == #"{"p":2,"q":1}"#)
        for (key, value) in object { #expect(object[key] == value) }
        if case .object(let members) = JSON.object(object) { #expect(members["d"] == 4) } else { Issue.record("not an object") }
    }

    /// Random values (names from `trickyKeys`, strings with escapes and every UTF-8 length)
    /// survive serialize → parse → serialize: the same value, the same text.
    @Test func randomValuesReachAFixedPointAtOnce() throws {
        var rng = SplitMix(state: 0xF1AED)
        func string() -> String {
            let pieces = ["a", "\"", "\\", "\u{0}", "\u{1F}", "\n", "/", "é", "e\u{301}", "\u{212B}", "😀", "\u{FFFF}", "\u{10FFFF}"]
            return (0..<rng.next(5)).map { _ in pieces[rng.next(pieces.count)] }.joined()
        }
        func value(_ depth: Int) -> JSON {
            switch rng.next(depth > 4 ? 6 : 8) {
            case 0: return .null
            case 1: return .bool(rng.next(2) == 0)
            case 2: return .int([0, 1, -1, .max, .min, 1 << 53, 1_000_000_000_000_000_000][rng.next(7)])
            case 3: return .double([0.1, -0.0, 0.0, 1e300, 5e-324, 1e16, 123.456, -2.5][rng.next(8)])
            case 4, 5: return .string(string())
            case 6: return .array((0..<rng.next(4)).map { _ in value(depth + 1) })
            default:
                return .object(JSONObject((0..<rng.next(5)).map { _ in
                    (rng.next(2) == 0 ? trickyKeys[rng.next(trickyKeys.count)] : string(), value(depth + 1))
                }))
            }
        }
        for _ in 0..<2_000 {
            let v = value(0)
            let text = v.serialized
            let parsed = try JSON(parsing: text)
            #expect(parsed == v, "\(text)")
            #expect(bytes(parsed.serialized) == bytes(text))
        }
    }

    @Test func integersAtTheEdgesOfTheFastPath() throws {
        #expect(try JSON(parsing: "999999999999999999") == .int(999_999_999_999_999_999))
        #expect(try JSON(parsing: "-999999999999999999") == .int(-999_999_999_999_999_999))
        #expect(try JSON(parsing: "1000000000000000000") == .int(1_000_000_000_000_000_000))
        #expect(try JSON(parsing: "-9223372036854775808") == .int(.min))
        #expect(try JSON(parsing: "-9223372036854775809") == .double(-9223372036854775809))
        #expect(try JSON(parsing: "18446744073709551616") == .double(18446744073709551616))
        #expect(try JSON(parsing: "-0") == .int(0))
        #expect(try JSON(parsing: "[7,-3,0,10]") == [7, -3, 0, 10])
        for i: Int64 in [0, 9, 10, -9, -10, 99, 100, .max, .min, .max - 1, .min + 1] {
            #expect(JSON.int(i).serialized == String(i))
            #expect(try JSON(parsing: String(i)) == .int(i))
        }
    }

    @Test func everyControlCharacterIsEscapedAndReadBack() throws {
        let controls = String(String.UnicodeScalarView((0..<0x20).map { Unicode.Scalar(UInt8($0)) }))
        let text = JSON.string(controls + "\"\\/\u{7F}").serialized
        #expect(text == #""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f\"\\/"# + "\u{7F}\"")
        #expect(try JSON(parsing: text) == .string(controls + "\"\\/\u{7F}"))
    }
}
