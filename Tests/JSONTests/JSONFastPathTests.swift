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
