// Fuzz target: the agent's message parser (SagaLaneWire.WireFrame.parse) on one frame.
//
// Every input is refused with a WireError whose code is one of the protocol's and whose message
// says something, or parsed, and then:
//   - its text is one line (no raw newline), so it frames as one frame;
//   - parsing its text gives the same frame (fixed point), and serializing that the same text;
//   - an error frame answering a refusal, built from the error, is itself a frame that parses;
//   - the frame read straight from the text (the fast path) is the one, or the refusal, read
//     from the whole JSON tree (the general path).
import SagaLaneJSON
import SagaLaneWire

private func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    fatalError("message fuzz: \(what); input (\(input.count) bytes): \(String(decoding: input.prefix(512), as: UTF8.self))")
}

private let codes = Set(WireErrorCode.all)

private func parse(_ text: String) throws(WireError) -> WireFrame {
    var text = text
    let result = text.withUTF8 { bytes -> Result<WireFrame, WireError> in
        do throws(WireError) { return .success(try WireFrame.parse(UnsafeRawBufferPointer(bytes))) } catch { return .failure(error) }
    }
    return try result.get()
}

/// What the general path gives: the whole JSON tree, then the message read from it.
private func parseThroughTree(_ input: UnsafeBufferPointer<UInt8>) -> Result<WireFrame, WireError> {
    let value: JSON
    do { value = try JSON(parsing: input) } catch { return .failure(WireError(.malformedJSON, "\(error)")) }
    do throws(WireError) { return .success(try WireFrame.parse(value)) } catch { return .failure(error) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessages(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let direct: Result<WireFrame, WireError>
    do throws(WireError) { direct = .success(try WireFrame.parse(UnsafeRawBufferPointer(input))) } catch { direct = .failure(error) }
    let general = parseThroughTree(input)
    if direct != general { fail("the text and the tree read differently: \(direct) vs \(general)", input) }
    let frame: WireFrame
    do {
        frame = try WireFrame.parse(UnsafeRawBufferPointer(input))
    } catch {
        if !codes.contains(error.code) || error.message.isEmpty { fail("a refusal without a known code or a message: \(error)", input) }
        let answer = WireFrame.error(error).serialized
        if answer.utf8.contains(10) { fail("the error frame holds a newline", input) }
        guard let back = try? parse(answer), case .error(let code, _, _) = back.message, code == error.code.name else {
            fail("the error frame does not parse back: \(answer)", input)
        }
        return 0
    }
    let text = frame.serialized
    if text.utf8.contains(10) { fail("the frame's text holds a newline: \(text)", input) }
    let again: WireFrame
    do { again = try parse(text) } catch { fail("its own text is refused: \(error); text: \(text)", input) }
    if again != frame { fail("parse(serialize(m)) != m; text: \(text)", input) }
    if !again.serialized.utf8.elementsEqual(text.utf8) { fail("serializing twice gives different text", input) }
    return 0
}
