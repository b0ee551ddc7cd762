import SagaLaneJSON
import SagaLaneSupport
import SagaLaneTestSupport
import Testing
@testable import SagaLaneWire

/// `WireFrame.parse(_: UnsafeRawBufferPointer)` reads the usual frame straight from its text
/// (`JSON.topLevelMembers`), and everything else through a JSON tree. These compare the two on
/// input meant to find where they could differ, so the fast path cannot drift.
@Suite struct WireFastPathTests {
    /// What `parse(bytes)` gives.
    static func fast(_ bytes: [UInt8]) -> Result<WireFrame, WireError> {
        bytes.withUnsafeBytes { raw in
            do throws(WireError) { return .success(try WireFrame.parse(raw)) } catch { return .failure(error) }
        }
    }

    /// What the general path gives: the whole JSON tree, then the message read from it.
    static func general(_ bytes: [UInt8]) -> Result<WireFrame, WireError> {
        let value: JSON
        do { value = try JSON(parsing: bytes) } catch { return .failure(WireError(.malformedJSON, "\(error)")) }
        do throws(WireError) { return .success(try WireFrame.parse(value)) } catch { return .failure(error) }
    }

    static func nested(_ depth: Int) -> String {
        "{\"type\":\"step.done\",\"saga_id\":1,\"step\":0,\"event\":\"E\",\"payload\":"
            + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
    }

    static let tricky: [[UInt8]] = {
        var texts: [String] = [
            // Plain, sorted, as our serializer writes them.
            "{\"command\":{\"cents\":345,\"op\":\"charge\",\"saga_id\":12345,\"step\":0},\"saga_id\":12345,\"step\":0,\"target\":\"host\",\"type\":\"command\"}",
            "{\"event\":\"Charged\",\"payload\":{\"receipt\":\"r-0000001\"},\"saga_id\":12345,\"step\":0,\"type\":\"step.done\"}",
            // Whitespace, empty objects, trailing bytes.
            "  {\"type\" : \"ping\" , \"id\" : 1 }\n\t", "{}", "{ }", "{\"type\":\"ping\"}x", "{\"type\":\"ping\"},",
            "{\"type\":\"ping\",}", "{\"type\" \"ping\"}", "{\"type\":\"ping\"", "{\"type\":", "{", "", " ", "[]", "3", "null",
            "\u{FEFF}{\"type\":\"ping\"}", "{\"type\":\"ping\"}{}", "{,}", "{\"type\"}", "{1:2}",
            // Names with escapes: the same names as plain ones.
            "{\"typ\\u0065\":\"ping\"}", "{\"type\":\"ping\",\"i\\u0064\":3}", "{\"type\":\"ping\",\"\\u0069d\":\"a\\\"b\"}",
            "{\"type\":\"ping\",\"x\\ny\":1}", "{\"type\":\"ping\",\"\\ud83d\\ude00\":1}", "{\"type\":\"ping\",\"\\ud83d\":1}",
            "{\"type\":\"ping\",\"\\q\":1}",
            // Repeated names: the last wins, wherever they are.
            "{\"type\":\"ping\",\"type\":\"ping\"}", "{\"type\":\"hello\",\"version\":1,\"version\":2}",
            "{\"type\":\"saga.get\",\"saga_id\":1,\"saga_id\":\"x\"}", "{\"type\":\"saga.get\",\"saga_id\":\"x\",\"saga_id\":1}",
            "{\"id\":1,\"type\":\"ping\",\"id\":null}", "{\"type\":\"ping\",\"type\":\"pong\"}", "{\"type\":\"ping\",\"typ\\u0065\":\"saga.get\"}",
            // Out of order.
            "{\"type\":\"step.done\",\"step\":1,\"saga_id\":7,\"event\":\"E\",\"payload\":{\"b\":1,\"a\":2}}",
            "{\"target\":\"h\",\"type\":\"command\",\"step\":2,\"command\":null,\"saga_id\":3}",
            "{\"zz\":1,\"type\":\"ping\",\"aa\":2}", "{\"type\":\"ping\",\"zz\":1,\"\":2}",
            // Names that are prefixes of each other, empty, non-ASCII, decomposed.
            "{\"type\":\"ping\",\"typ\":1}", "{\"type\":\"ping\",\"types\":1}", "{\"\":1,\"type\":\"ping\"}",
            "{\"type\":\"ping\",\"caf\u{E9}\":1}", "{\"type\":\"ping\",\"cafe\u{301}\":1}", "{\"type\":\"ping\",\"\u{1F600}\":1}",
            "{\"type\":\"ok\",\"id\":3,\"a\":1,\"caf\u{E9}\":\"x\",\"cafe\u{301}\":2,\"z\":[true,null]}",
            "{\"type\":\"ok\",\"cafe\u{301}\":2,\"caf\u{E9}\":1}", "{\"type\":\"ok\"}",
            "{\"type\":\"t\u{E9}\"}", "{\"type\":\"ping\",\"id\":\"\u{1F600}\"}",
            // Values: escapes, surrogate pairs, non-ASCII.
            "{\"type\":\"step.done\",\"saga_id\":1,\"step\":0,\"event\":\"\\ud83d\\ude00\",\"payload\":\"\\u00e9\\n\\\\\"}",
            "{\"type\":\"step.done\",\"saga_id\":1,\"step\":0,\"event\":\"\\udc00\"}",
            "{\"type\":\"step.done\",\"saga_id\":1,\"step\":0,\"event\":\"\"}",
            "{\"type\":\"command\",\"target\":\"h\\u0000\",\"saga_id\":1,\"step\":0}",
            // Numbers at the edges.
            "{\"type\":\"saga.get\",\"saga_id\":9223372036854775807}", "{\"type\":\"saga.get\",\"saga_id\":9223372036854775808}",
            "{\"type\":\"saga.get\",\"saga_id\":-9223372036854775808}", "{\"type\":\"saga.get\",\"saga_id\":-0}",
            "{\"type\":\"saga.get\",\"saga_id\":1e2}", "{\"type\":\"saga.get\",\"saga_id\":1.0}", "{\"type\":\"saga.get\",\"saga_id\":0}",
            "{\"type\":\"saga.get\",\"saga_id\":01}", "{\"type\":\"saga.get\",\"saga_id\":1e400}", "{\"type\":\"saga.get\",\"saga_id\":-}",
            "{\"type\":\"step.failed\",\"saga_id\":1,\"step\":4294967295}", "{\"type\":\"step.failed\",\"saga_id\":1,\"step\":4294967296}",
            "{\"type\":\"ping\",\"id\":123456789012345678901234567890}", "{\"type\":\"ping\",\"id\":-0.0}",
            // Ids and types of the wrong kind.
            "{\"type\":\"ping\",\"id\":1.5}", "{\"type\":\"ping\",\"id\":{\"a\":1}}", "{\"type\":3,\"id\":1}", "{\"id\":[1]}",
            "{\"type\":\"launch\",\"id\":\"r\"}", "{\"type\":\"\",\"id\":2}",
            // A nested object read as fields.
            "{\"type\":\"lane.submit\",\"lane\":\"l\",\"retry\":{\"max_attempts\":2,\"backoff_ms\":1}}",
            "{\"type\":\"lane.submit\",\"lane\":\"l\",\"retry\":{\"backoff_ms\":1,\"max_attempts\":2,\"max_attempts\":3}}",
            "{\"type\":\"lane.submit\",\"lane\":\"l\",\"retry\":{\"max_attempts\":2,\"backof_ms\":1}}",
            "{\"type\":\"lane.submit\",\"lane\":\"l\",\"retry\":[]}",
            "{\"type\":\"subscribe\",\"events\":[\"A\",\"A\",\"B\"]}", "{\"type\":\"subscribe\",\"events\":\"*\"}",
            // Depth: the frame is one level.
            nested(254), nested(255), nested(256), nested(10_000),
        ]
        // More members than the fast path holds in stack space (16), plain and repeated.
        texts.append("{\"type\":\"ok\",\"id\":1," + (0..<20).map { "\"a\($0)\":\($0)" }.joined(separator: ",") + "}")
        texts.append("{\"type\":\"ok\",\"id\":1," + (0..<20).map { "\"a\($0 % 7)\":\($0)" }.joined(separator: ",") + "}")
        texts.append("{\"type\":\"ping\"," + (0..<15).map { "\"a\($0)\":\($0)" }.joined(separator: ",") + "}")
        texts.append("{\"type\":\"ping\"," + (0..<16).map { "\"a\($0)\":\($0)" }.joined(separator: ",") + "}")
        // Ids at their length bound.
        texts.append("{\"type\":\"ping\",\"id\":\"\(String(repeating: "x", count: 256))\"}")
        texts.append("{\"type\":\"ping\",\"id\":\"\(String(repeating: "x", count: 257))\"}")
        var frames = texts.map { Array($0.utf8) }
        // Invalid UTF-8 in names and values, and raw control bytes.
        let prefix = Array("{\"type\":\"ping\",\"".utf8), suffix = Array("\":1}".utf8)
        for bad: [UInt8] in [[0xFF], [0xC0, 0xAF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82],
                             [0xC3], [0x01], [0x1F], [0x7F], [0xC3, 0xA9], [0xF0, 0x9F, 0x98, 0x80]] {
            frames.append(prefix + bad + suffix)
            frames.append(Array("{\"type\":\"step.done\",\"saga_id\":1,\"step\":0,\"event\":\"".utf8) + bad + Array("\"}".utf8))
        }
        frames.append(Array("{\"type\":\"step.done\",\"saga_id\":1,\"step\":0,\"event\":\"".utf8) + [0xF0, 0x9F])
        return frames
    }()

    @Test func trickyFramesReadTheSameBothWays() {
        for frame in Self.tricky {
            let fast = Self.fast(frame), general = Self.general(frame)
            #expect(fast == general, "\(String(decoding: frame.prefix(200), as: UTF8.self))")
        }
    }

    /// The samples' texts and the tricky frames, mutated at random: bytes replaced, inserted
    /// and removed, names and values swapped in.
    @Test func mutatedFramesReadTheSameBothWays() {
        var random = SplitMix(state: 17)
        var seeds = WireTests.samples.map { Array($0.serialized.utf8) } + Self.tricky.filter { $0.count < 400 }
        seeds.append(Array("{\"type\":\"ok\",\"id\":1,\"b\":2}".utf8))
        let pieces = ["\"", "\\", "\\u0065", "\\ud83d\\ude00", ":", ",", "{", "}", "[", "]", "\"type\"", "\"id\"", "\"saga_id\"",
                      "\"step\"", "0", "-1", "1e2", "null", "true", " ", "\u{E9}", "\"command\"", "\"step.done\""].map { Array($0.utf8) }
        var differ = 0
        for _ in 0..<20_000 {
            var frame = seeds[random.next(seeds.count)]
            for _ in 0...random.next(3) {
                let at = frame.isEmpty ? 0 : random.next(frame.count + 1)
                switch random.next(4) {
                case 0 where at < frame.count: frame[at] = UInt8(truncatingIfNeeded: random.next(256))
                case 1: frame.insert(contentsOf: pieces[random.next(pieces.count)], at: at)
                case 2 where at < frame.count: frame.remove(at: at)
                default:
                    // Swap two members' places: names out of order.
                    if let comma = frame.firstIndex(of: UInt8(ascii: ",")), let last = frame.lastIndex(of: UInt8(ascii: ",")), comma < last {
                        let a = Array(frame[(comma + 1)..<last])
                        frame.replaceSubrange((comma + 1)..<last, with: a.reversed())
                    }
                }
            }
            let fast = Self.fast(frame), general = Self.general(frame)
            if fast != general {
                differ += 1
                if differ <= 5 { Issue.record("differ on \(String(decoding: frame, as: UTF8.self)): \(fast) vs \(general)") }
            }
        }
        #expect(differ == 0)
    }

    /// `JSON.topLevelMembers` gives members exactly when the document is an object with plain
    /// names, and then the same members the tree has.
    @Test func topLevelMembersAreTheObjectsMembers() {
        var random = SplitMix(state: 23)
        var frames = Self.tricky
        for _ in 0..<5000 {
            var frame = Self.tricky[random.next(Self.tricky.count)]
            if !frame.isEmpty { frame[random.next(frame.count)] = UInt8(truncatingIfNeeded: random.next(256)) }
            frames.append(frame)
        }
        for frame in frames {
            let tree = try? JSON(parsing: frame)
            let members = frame.withUnsafeBufferPointer { JSON.topLevelMembers($0) }
            let text = String(decoding: frame.prefix(200), as: UTF8.self)
            guard let members else {
                if case .object = tree {
                    // Refused only for a name with an escape: some backslash in the text.
                    #expect(frame.contains(UInt8(ascii: "\\")), "\(text)")
                }
                continue
            }
            guard case .object(let object) = tree else {
                Issue.record("members for a document that is not an object: \(text)")
                continue
            }
            var rebuilt = JSONObject()
            for member in members {
                let name = String(decoding: frame[member.nameStart..<member.nameStart + member.nameCount], as: UTF8.self)
                #expect(Array(name.utf8) == Array(frame[member.nameStart..<member.nameStart + member.nameCount]), "\(text)")
                rebuilt[name] = member.value
            }
            #expect(rebuilt == object, "\(text)")
        }
        // The depth bound counts the object itself.
        let deep = Array(Self.nested(255).utf8), deeper = Array(Self.nested(256).utf8)
        #expect(deep.withUnsafeBufferPointer { JSON.topLevelMembers($0) } != nil)
        #expect(deeper.withUnsafeBufferPointer { JSON.topLevelMembers($0) } == nil)
        #expect(deep.withUnsafeBufferPointer { JSON.topLevelMembers($0, maxDepth: 255) } == nil)
        #expect(Array("{}".utf8).withUnsafeBufferPointer { JSON.topLevelMembers($0, maxDepth: 0) } == nil)
    }
}

/// Frames and values longer than the stack space their text starts in (512 bytes) move to the
/// heap on the way: the text is the same as that of a tree built and serialized piece by piece.
@Suite struct WireLongFrameTests {
    @Test(arguments: [0, 1, 400, 480, 500, 511, 512, 513, 600, 5000])
    func longFramesAreWrittenWhole(_ length: Int) throws {
        let payload: JSON = ["text": .string(String(repeating: "\u{E9}x\"", count: length / 4)),
                             "list": .array((0..<(length / 8)).map { .int(Int64($0)) })]
        let frame = WireFrame(.stepDone(sagaID: 7, step: 1, event: String(repeating: "E", count: length + 1), payload: payload))
        let text = frame.serialized
        let expected = "{\"event\":" + JSON.string(String(repeating: "E", count: length + 1)).serialized + ",\"payload\":" + payload.serialized
            + ",\"saga_id\":7,\"step\":1,\"type\":\"step.done\"}"
        #expect(text == expected)
        #expect(try JSON(parsing: text).serialized == text)
        let parsed = Array(text.utf8).withUnsafeBytes { raw -> WireFrame? in try? WireFrame.parse(raw) }
        #expect(parsed == frame)
        // A value alone, built up to and past the stack space.
        let array: JSON = .array((0..<length).map { _ in "ab" })
        #expect(array.serialized == "[" + Array(repeating: "\"ab\"", count: length).joined(separator: ",") + "]")
    }
}
