import SagaLaneTestSupport
import Testing
@testable import SagaLaneJSON

/// The parser's fast paths against the general ones: strings made in place (short, ASCII,
/// no escape) against the same text escaped, which takes the general path, and against
/// `String(decoding:)`.
@Suite struct JSONFastPathTests {
    static func parsedString(_ text: [UInt8]) -> String? {
        guard case .string(let s)? = try? JSON(parsing: text) else { return nil }
        return s
    }

    /// Each byte written as a `\u00XX` escape: the same string through the escape path.
    static func escaped(_ s: String) -> [UInt8] {
        var out = Array("\"".utf8)
        for scalar in s.unicodeScalars {
            if scalar.value < 0x80 {
                let hex = String(scalar.value, radix: 16)
                out += Array(("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).utf8)
            } else {
                out += Array(String(scalar).utf8)
            }
        }
        return out + Array("\"".utf8)
    }

    @Test func shortStringsAreTheSameAsDecoded() {
        var random = SplitMix(state: 31)
        let alphabet: [String] = ["a", "Z", "0", " ", "~", "_", ".", "\u{7F}", "\u{E9}", "e\u{301}", "\u{1F600}", "\u{FFFF}", "\u{10FFFF}"]
        var samples: [String] = ["", "a", "type", "saga_id", "step.done", "r-0000001", String(repeating: "x", count: 15),
                                 String(repeating: "x", count: 16), String(repeating: "x", count: 14) + "\u{E9}"]
        for _ in 0..<2000 {
            samples.append(String((0..<random.next(20)).map { _ in alphabet[random.next(random.next(2) == 0 ? 7 : alphabet.count)] }.joined()))
        }
        for s in samples {
            let plain = Array("\"".utf8) + Array(s.utf8) + Array("\"".utf8)
            guard let fast = Self.parsedString(plain), let general = Self.parsedString(Self.escaped(s)) else {
                Issue.record("\(s) did not parse")
                continue
            }
            let decoded = String(decoding: Array(s.utf8), as: UTF8.self)
            #expect(Array(fast.utf8) == Array(s.utf8))
            #expect(Array(general.utf8) == Array(s.utf8))
            #expect(fast == decoded && fast == general)
            #expect(fast.count == decoded.count && fast.unicodeScalars.count == decoded.unicodeScalars.count)
            #expect(fast.hashValue == decoded.hashValue)
            #expect(JSON.string(fast) == JSON.string(general))
            #expect(JSON.string(fast).serialized == JSON.string(decoded).serialized)
            // As an object's name too.
            let object = Array("{".utf8) + plain + Array(":1}".utf8)
            #expect((try? JSON(parsing: object))?[decoded] == .int(1), "\(s)")
        }
    }

    @Test func invalidBytesInShortStringsAreRefused() {
        for bad: [UInt8] in [[0x80], [0xFF], [0xC0, 0x80], [0xC3], [0xE0, 0x9F, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                             [0x61, 0xC3], [0x00], [0x1F]] {
            let text = Array("\"a".utf8) + bad + Array("b\"".utf8)
            #expect(Self.parsedString(text) == nil, "\(bad)")
        }
    }
}

/// The serializer's direct writes against plain reference implementations.
@Suite struct JSONSerializerFastPathTests {
    /// RFC 8259 quoting as the serializer does it: '"', '\' and C0 controls escaped (the
    /// short forms where there are some), everything else as it is.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    @Test func integersAreWrittenAsDescribed() {
        var values: [Int64] = [0, 1, -1, 9, 10, -9, -10, 99, 100, Int64.max, Int64.min, Int64.max - 1, Int64.min + 1]
        var power: Int64 = 1
        for _ in 0..<18 {
            power *= 10
            values += [power - 1, power, power + 1, -power + 1, -power, -power - 1]
        }
        var random = SplitMix(state: 41)
        for _ in 0..<2000 { values.append(Int64(bitPattern: UInt64(random.next(Int.max)) &* 3 &+ UInt64(random.next(1000)))) }
        for value in values {
            #expect(JSON.int(value).serialized == String(value))
            var writer = JSONObjectWriter()
            writer.member("n", int: value)
            #expect(writer.finish() == "{\"n\":\(value)}")
        }
    }

    @Test func stringsAreQuotedAsTheReferenceQuotesThem() {
        var random = SplitMix(state: 43)
        let alphabet: [String] = ["a", "Z", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{08}", "\u{0C}", "\u{0}", "\u{1F}", "\u{7F}",
                                  "\u{E9}", "e\u{301}", "\u{2028}", "\u{1F600}", "\u{FFFF}"]
        var samples = ["", "a", "plain ascii", String(repeating: "y", count: 15), String(repeating: "y", count: 16),
                       String(repeating: "z", count: 300), "\u{1F600}", "\"", "\\"]
        for _ in 0..<3000 {
            let length = random.next(4) == 0 ? random.next(200) : random.next(20)
            samples.append((0..<length).map { _ in alphabet[random.next(random.next(3) == 0 ? alphabet.count : 3)] }.joined())
        }
        for s in samples {
            #expect(JSON.string(s).serialized == Self.quoted(s), "\(Array(s.utf8))")
            // A string made from a substring, and one built up by appending (native, not small).
            let sub = String(("<" + s + ">").dropFirst().dropLast())
            #expect(JSON.string(sub).serialized == Self.quoted(s))
            var built = String(repeating: "q", count: 20)
            built += s
            #expect(JSON.string(built).serialized == Self.quoted(built))
            let object: JSON = .object(JSONObject([(s, .int(1))]))
            #expect(object.serialized == "{" + Self.quoted(s) + ":1}")
        }
    }
}

/// Short integers read in one pass, and objects whose plain names the parser saw in order,
/// against references: `Int64(_:)`, `Double(_:)` and objects built from pairs.
@Suite struct JSONParserFastPathTests {
    @Test func numbersReadAsTheirText() throws {
        var random = SplitMix(state: 47)
        var texts = ["0", "-0", "1", "-1", "9", "10", "123456789012345678", "-123456789012345678", "999999999999999999",
                     "1234567890123456789", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                     "-9223372036854775809", "00", "01", "-01", "-", "--1", "0.5", "-0.0", "1e3", "1E3", "0e0", "1.", ".5",
                     "1e", "1e+", "12a", "0x1", "+1", "1 ", " 1", "[1,-2,03]", "[0,-0,100]", "{\"a\":12,\"b\":-0}"]
        for _ in 0..<3000 {
            var text = random.next(3) == 0 ? "-" : ""
            let digits = 1 + random.next(21)
            for i in 0..<digits { text += String(i == 0 && random.next(4) != 0 ? 1 + random.next(9) : random.next(10)) }
            switch random.next(6) {
            case 0: text += "." + String(random.next(100))
            case 1: text += "e" + String(random.next(30))
            default: break
            }
            texts.append(text)
        }
        for text in texts {
            let parsed = try? JSON(parsing: text)
            let trimmed = text.trimmingSpaces
            if let i = Int64(trimmed), !trimmed.hasPrefix("+"), validJSONNumber(trimmed), !trimmed.contains(".") && !trimmed.lowercased().contains("e") {
                #expect(parsed == .int(i), "\(text)")
            } else if validJSONNumber(trimmed), let d = Double(trimmed) {
                #expect(parsed == (d.isFinite ? .double(d) : nil), "\(text)")
            } else if trimmed.first != "[" && trimmed.first != "{" {
                #expect(parsed == nil, "\(text)")
            }
        }
        #expect(try JSON(parsing: "[0,-0,100]") == [0, 0, 100])
        #expect(try JSON(parsing: "{\"a\":12,\"b\":-0}") == ["a": 12, "b": 0])
        #expect((try? JSON(parsing: "[1,-2,03]")) == nil)
    }

    /// RFC 8259's number grammar.
    func validJSONNumber(_ text: String) -> Bool {
        var bytes = Array(text.utf8)[...]
        if bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        func digits() -> Int {
            let n = bytes.prefix { $0 >= 0x30 && $0 <= 0x39 }.count
            bytes = bytes.dropFirst(n)
            return n
        }
        guard let first = bytes.first else { return false }
        if first == UInt8(ascii: "0") { bytes = bytes.dropFirst() } else if digits() == 0 { return false }
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            if digits() == 0 { return false }
        }
        if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
            if digits() == 0 { return false }
        }
        return bytes.isEmpty
    }

    @Test func objectsAreTheSameWhateverOrderTheirNamesCameIn() throws {
        let cases: [(String, JSONObject)] = [
            ("{\"a\":1,\"b\":2}", ["a": 1, "b": 2]),
            ("{\"b\":2,\"a\":1}", ["a": 1, "b": 2]),
            ("{\"a\":1,\"a\":2}", ["a": 2]),
            ("{\"a\":1,\"\\u0061\":2}", ["a": 2]),
            ("{\"\\u0061\":1,\"a\":2}", ["a": 2]),
            ("{\"a\":1,\"b\":2,\"a\":3}", ["a": 3, "b": 2]),
            ("{\"a\":1,\"ab\":2}", ["a": 1, "ab": 2]),
            ("{\"ab\":1,\"a\":2}", ["a": 2, "ab": 1]),
            ("{\"\":1,\"a\":2}", ["": 1, "a": 2]),
            ("{\"a\":1,\"\":2}", ["": 2, "a": 1]),
            ("{\"z\":1,\"\u{E9}\":2}", JSONObject([("z", 1), ("\u{E9}", 2)])),
            ("{\"\u{E9}\":1,\"z\":2}", JSONObject([("z", 2), ("\u{E9}", 1)])),
            ("{\"cafe\u{301}\":1,\"caf\u{E9}\":2}", JSONObject([("cafe\u{301}", 1), ("caf\u{E9}", 2)])),
            ("{\"a\\n\":1,\"a\":2}", ["a\n": 1, "a": 2]),
            ("{\"x\":{\"b\":1,\"a\":2},\"w\":[{\"d\":1,\"c\":2}]}", ["x": ["a": 2, "b": 1], "w": [["c": 2, "d": 1]]]),
        ]
        for (text, expected) in cases {
            let parsed = try JSON(parsing: text)
            #expect(parsed == .object(expected), "\(text)")
            #expect(parsed.objectValue.map { Array($0.keys) } == Array(expected.keys), "\(text)")
        }
        // Many orders of the same names: one object, its names in increasing byte order.
        var random = SplitMix(state: 53)
        let names = ["a", "b", "ab", "ba", "", "\u{E9}", "e\u{301}", "z", "aa", "a\u{0}"]
        for _ in 0..<500 {
            let chosen = (0..<random.next(8)).map { _ in names[random.next(names.count)] }
            let pairs = chosen.enumerated().map { (JSON.string($0.element).serialized, $0.offset) }
            let text = "{" + pairs.map { "\($0.0):\($0.1)" }.joined(separator: ",") + "}"
            let object = JSONObject(chosen.enumerated().map { ($0.element, JSON.int(Int64($0.offset))) })
            #expect(try JSON(parsing: text) == .object(object), "\(text)")
            let keys = Array(object.keys)
            for i in keys.indices.dropFirst() { #expect(JSONKey.compare(keys[i - 1], keys[i]) < 0) }
        }
    }
}

private extension String {
    var trimmingSpaces: String { String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}

/// The string scan reads eight bytes at a time while eight remain in the text: every special
/// byte at every offset of a word, and near the end of the text, against what it means.
@Suite struct JSONStringScanTests {
    @Test func specialBytesAreFoundAtEveryOffset() {
        // The text inside the quotes, and the string it means (`nil`: refused).
        let specials: [([UInt8], String?)] = [
            (Array("\\\"".utf8), "\""), (Array("\\\\".utf8), "\\"), (Array("\\n".utf8), "\n"), (Array("\\u00e9".utf8), "\u{E9}"),
            (Array("\u{E9}".utf8), "\u{E9}"), (Array("\u{1F600}".utf8), "\u{1F600}"), (Array("\u{7F}".utf8), "\u{7F}"),
            (Array(" ".utf8), " "), (Array("!".utf8), "!"), (Array("#".utf8), "#"), (Array("[".utf8), "["), (Array("]".utf8), "]"),
            ([0x01], nil), ([0x1F], nil), ([0x00], nil), ([0x0A], nil), ([0xFF], nil), ([0xC3], nil), ([0xED, 0xA0, 0x80], nil),
        ]
        for before in 0..<20 {
            for after in 0..<10 {
                for (special, meaning) in specials {
                    let text = Array("[\"".utf8) + Array(repeating: UInt8(ascii: "x"), count: before) + special
                        + Array(repeating: UInt8(ascii: "y"), count: after) + Array("\"]".utf8)
                    let expected = meaning.map { JSON.array([.string(String(repeating: "x", count: before) + $0 + String(repeating: "y", count: after))]) }
                    #expect((try? JSON(parsing: text)) == expected, "\(before) \(special) \(after)")
                    // As a name, and at the very end of the text (no closing bracket).
                    let name = Array("{\"".utf8) + Array(repeating: UInt8(ascii: "x"), count: before) + special + Array("\":1}".utf8)
                    #expect(((try? JSON(parsing: name)) != nil) == (meaning != nil), "\(before) \(special)")
                    let last = Array("\"".utf8) + Array(repeating: UInt8(ascii: "x"), count: before) + special
                        + Array(repeating: UInt8(ascii: "y"), count: after) + Array("\"".utf8)
                    #expect((try? JSON(parsing: last)) == expected?[0], "\(before) \(special) \(after)")
                    #expect((try? JSON(parsing: last.dropLast())) == nil, "unterminated")
                }
            }
        }
    }
}
