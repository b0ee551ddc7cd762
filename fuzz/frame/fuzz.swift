// Fuzz target: the agent's frame decoder (SagaLanePipes.FrameDecoder).
//
// The first two bytes choose the maximum frame size (1 to 256) and the seed of the chunking;
// the rest is the byte stream. Checked against a plain model of the framing:
//   - fed in chunks of arbitrary sizes, the decoder gives exactly the model's frames: the
//     lines before each "\n", without the one "\r" just before it (a second one stays part
//     of the frame), blank ones skipped;
//   - a line longer than the maximum ("\r" included) fails the decoder, with the frames before
//     it delivered and nothing after; so does a last line without a newline that is already
//     longer than the maximum (no waiting for a newline that may never come);
//   - once failed, the decoder keeps failing; it never holds more than the maximum;
//   - fed all at once, it agrees with itself fed in chunks.
import SagaLanePipes

private func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    fatalError("frame fuzz: \(what); input (\(input.count) bytes): \(Array(input.prefix(256)))")
}

/// The frames the model reads from `stream`, and whether it fails.
private func model(_ stream: ArraySlice<UInt8>, max: Int) -> (frames: [[UInt8]], fails: Bool) {
    var frames: [[UInt8]] = []
    var line: [UInt8] = []
    for byte in stream {
        if byte == 10 {
            if line.count > max { return (frames, true) }
            if line.last == 13 { line.removeLast() }
            if !line.isEmpty { frames.append(line) }
            line.removeAll()
        } else {
            line.append(byte)
            if line.count > max { return (frames, true) }
        }
    }
    return (frames, false)
}

/// The decoder fed `stream` in chunks whose sizes `next` picks.
private func decode(_ stream: ArraySlice<UInt8>, max: Int, _ input: UnsafeBufferPointer<UInt8>,
                    chunk next: () -> Int) -> (frames: [[UInt8]], fails: Bool) {
    var decoder = FrameDecoder(maxFrameSize: max)
    var frames: [[UInt8]] = []
    var offset = stream.startIndex
    while offset < stream.endIndex {
        let size = Swift.min(Swift.max(1, next()), stream.endIndex - offset)
        let chunk = Array(stream[offset..<offset + size])
        offset += size
        do {
            try chunk.withUnsafeBytes { bytes in
                try decoder.decode(bytes) { frame in
                    if frame.isEmpty || frame.count > max || frame.contains(10) {
                        fail("a frame out of shape: \(Array(frame))", input)
                    }
                    frames.append(Array(frame))
                    return true
                }
            }
        } catch {
            if !decoder.hasFailed || decoder.bufferedBytes != 0 { fail("a failure that leaves the decoder holding bytes", input) }
            if (try? [UInt8(65), 10].withUnsafeBytes { try decoder.decode($0) { _ in true } }) != nil {
                fail("a failed decoder took more bytes", input)
            }
            return (frames, true)
        }
        if decoder.bufferedBytes > max { fail("holds \(decoder.bufferedBytes) bytes, over the maximum \(max)", input) }
    }
    return (frames, false)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard size >= 2 else { return 0 }
    let max = Int(input[0]) + 1
    var state = UInt64(input[1]) &* 0x9E37_79B9_7F4A_7C15 | 1
    let stream = Array(input)[2...]
    let expected = model(stream, max: max)
    let chunked = decode(stream, max: max, input) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Int(state % 64) + 1
    }
    if chunked.frames != expected.frames || chunked.fails != expected.fails {
        fail("chunked: \(chunked.frames.count) frames, fails \(chunked.fails); model: \(expected.frames.count) frames, fails \(expected.fails)", input)
    }
    let whole = decode(stream, max: max, input) { stream.count }
    if whole.frames != expected.frames || whole.fails != expected.fails { fail("fed at once it disagrees", input) }
    return 0
}
