import Glibc
import SagaLaneTestSupport
import Testing
@testable import SagaLaneJSON
@testable import SagaLaneSupport

/// The JSONTestSuite parsing cases live in ../shared beside the repository; a user's clone
/// without them reports the suite skipped.
private let suiteDirectory: String? = {
    var dir = String(#filePath)
    while let slash = dir.lastIndex(of: "/") {
        dir = String(dir[..<slash])
        if access(dir + "/Package.swift", F_OK) == 0 {
            let candidate = dir + "/../shared/testdata/json-test-suite/test_parsing"
            return access(candidate, F_OK) == 0 ? candidate : nil
        }
    }
    return nil
}()

private func listFiles(_ dir: String) -> [String] {
    guard let d = opendir(dir) else { return [] }
    defer { closedir(d) }
    var names: [String] = []
    while let entry = readdir(d) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name.hasSuffix(".json") { names.append(name) }
    }
    return names.sorted()
}

private func readBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
}

@Suite struct JSONTests {
    @Test(.enabled(if: suiteDirectory != nil, "JSONTestSuite not found at ../shared/testdata (only present next to the project's steering repo)"))
    func jsonTestSuite() throws {
        let dir = try #require(suiteDirectory)
        let files = listFiles(dir)
        #expect(files.count == 318)
        var accepted = 0, rejected = 0, either = 0
        for name in files {
            let bytes = readBytes(dir + "/" + name)
            let result = Result { () throws(JSONError) in try JSON(parsing: bytes) }
            switch name.first {
            case "y":
                if case .failure(let error) = result { Issue.record("\(name) must parse: \(error)") } else { accepted += 1 }
                if case .success(let value) = result {
                    let text = value.serialized
                    let again = try JSON(parsing: text)
                    #expect(again == value, "\(name) round-trips")
                    #expect(Array(again.serialized.utf8) == Array(text.utf8), "\(name) serializes to a fixed point")
                }
            case "n":
                if case .success(let value) = result { Issue.record("\(name) must be rejected, parsed as \(value)") } else { rejected += 1 }
            default:
                either += 1
                // Either answer is fine, but an accepted one must round-trip like any other.
                if case .success(let value) = result {
                    #expect(try JSON(parsing: value.serialized) == value, "\(name) round-trips")
                }
            }
        }
        #expect(accepted == 95)
        #expect(rejected == 188)
        #expect(either == 35)
    }

    @Test func serializedFormIsCompactSortedAndEscaped() throws {
        let value: JSON = ["b": [1, 2.5, "x"], "a": nil, "c": ["d": true, "e": false], "s": "quote\" back\\ nl\n tab\t bell\u{7} é😀"]
        #expect(value.serialized == #"{"a":null,"b":[1,2.5,"x"],"c":{"d":true,"e":false},"s":"quote\" back\\ nl\n tab\t bell\u0007 é😀"}"#)
        #expect(JSON.double(.infinity).serialized == "null")
        #expect(JSON.double(-0.0).serialized == "-0.0")
        #expect(JSON.int(.min).serialized == "-9223372036854775808")
    }

    @Test(arguments: [
        JSON.null, true, false, 0, -1, .int(.max), .int(.min), 0.1, -0.0, 1e300, 5e-324, 123.456e-7,
        "", "plain", "esc\"aped\\\u{0}\u{1f}\r\n\t", "unicode ✓ 😀 \u{10FFFF}",
        [], [[], [[]]], [:], ["k": ["nested": [1, "two", nil]]],
    ] as [JSON])
    func roundTrips(_ value: JSON) throws {
        #expect(try JSON(parsing: value.serialized) == value)
    }

    @Test func parsesEscapesNumbersAndWhitespace() throws {
        #expect(try JSON(parsing: #" "\uD83D\uDE00 \u00e9 \/" "#) == "😀 é /")
        #expect(try JSON(parsing: "9223372036854775807") == .int(.max))
        #expect(try JSON(parsing: "9223372036854775808") == .double(9223372036854775808))
        #expect(try JSON(parsing: "-0") == .int(0))
        #expect(try JSON(parsing: "1E2") == .double(100))
        #expect(try JSON(parsing: " \t\r\n[ 1 , { \"a\" : 2 } ]\n") == [1, ["a": 2]])
        #expect(try JSON(parsing: #"{"a":1,"a":2}"#) == ["a": 2])
    }

    @Test func errorsSayWhereAndWhat() {
        func error(_ text: String) -> JSONError? {
            do { _ = try JSON(parsing: text); return nil } catch { return error }
        }
        let e1 = error("{\"a\": 1,\n  \"b\": }")
        #expect(e1?.line == 2)
        #expect(e1?.column == 8)
        #expect(e1?.message.contains("expected a value") == true)
        #expect(error("[1, 2")?.message.contains("unterminated array") == true)
        #expect(error("01")?.message.contains("leading zeros") == true)
        #expect(error("\"\\uDC00\"")?.message.contains("surrogate") == true)
        #expect(error("1e400")?.message.contains("out of range") == true)
        #expect(error("[] x")?.message.contains("after the value") == true)
        #expect(error("")?.message.contains("end of input") == true)
        #expect(error("\u{FEFF}{}") != nil)
        #expect(error("\"a\u{1}\"")?.message.contains("control character") == true)
        #expect(error("[NaN]") != nil)
        #expect(error("{\"a\" 1}")?.message.contains("':'") == true)
        #expect((try? JSON(parsing: [0x22, 0xC3, 0x28, 0x22] as [UInt8])) == nil, "invalid UTF-8 is rejected")
        #expect(error("[1]")?.description == nil)
    }

    @Test func deepNestingIsAnErrorNotACrash() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONError.self) { try JSON(parsing: deep) }
        let ok = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
        #expect(throws: Never.self) { try JSON(parsing: ok) }
        #expect(throws: JSONError.self) { try JSON(parsing: ok, maxDepth: 255) }
        let objects = String(repeating: "{\"a\":", count: 300) + "1" + String(repeating: "}", count: 300)
        #expect(throws: JSONError.self) { try JSON(parsing: objects) }
        // The bound is on the text: a member dropped for a repeated name was nested all the same.
        let dropped = #"{"c":[1,2,{"b":null}],"c":-0.5e3}"#
        #expect(try JSON(parsing: dropped, maxDepth: 3) == ["c": -500.0])
        #expect(throws: JSONError.self) { try JSON(parsing: dropped, maxDepth: 2) }
    }

    @Test func accessorsAndSetting() throws {
        let v: JSON = ["s": "x", "i": 3, "d": 2.0, "h": 2.5, "b": true, "a": [1, 2], "n": nil]
        #expect(v["s"]?.stringValue == "x")
        #expect(v["i"]?.int64Value == 3)
        #expect(v["d"]?.int64Value == 2)
        #expect(v["h"]?.int64Value == nil)
        #expect(v["i"]?.doubleValue == 3)
        #expect(v["b"]?.boolValue == true)
        #expect(v["a"]?[1] == 2)
        #expect(v["a"]?[5] == nil)
        #expect(v["n"]?.isNull == true)
        #expect(v["missing"] == nil)
        #expect(v["s"]?["x"] == nil)
        #expect(v.setting("i", to: 4)["i"] == 4)
        #expect(JSON.array([1]).setting("k", to: 1) == [1])
    }

    /// Random bytes and random mutations of valid documents: never a crash, and whatever parses
    /// re-serializes to text that parses to the same value.
    @Test func fuzzNeverCrashesAndRoundTrips() {
        var rng = SplitMix(state: 0x5EED)
        func next(_ bound: Int) -> Int { rng.next(bound) }
        let seeds = [#"{"a":[1,2,{"b":null}],"c":"d\u00e9","e":-1.5e3}"#, "[true,false,null,0,\"\"]", #""\ud83d\ude00""#]
        let alphabet = Array(#"{}[]:,"\\ 0123456789.eE+-truefalsn\u"#.utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xE2, 0xF0, 0xFF]
        var parsed = 0
        for i in 0..<5_000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = []
                for _ in 0..<next(40) { bytes.append(alphabet[next(alphabet.count)]) }
            } else {
                bytes = Array(seeds[next(seeds.count)].utf8)
                for _ in 0..<(1 + next(3)) {
                    let at = next(bytes.count + 1)
                    switch next(3) {
                    case 0: bytes.insert(alphabet[next(alphabet.count)], at: at)
                    case 1: if at < bytes.count { bytes.remove(at: at) }
                    default: if at < bytes.count { bytes[at] = alphabet[next(alphabet.count)] }
                    }
                }
            }
            if let value = try? JSON(parsing: bytes) {
                parsed += 1
                #expect((try? JSON(parsing: value.serialized)) == value, "re-parse of \(value.serialized)")
            }
        }
        #expect(parsed > 0)
    }
}

