import SagaLaneSupport
import SagaLaneTestSupport
import Testing
@testable import SagaLanePipes

@Suite struct FrameDecoderTests {
    /// Feeds `stream` in chunks of the sizes `sizes` gives, collecting frames.
    private func decode(_ stream: [UInt8], maxFrameSize: Int = 64, chunks sizes: (Int) -> Int) -> (frames: [[UInt8]], error: FramingError?) {
        var decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        var frames: [[UInt8]] = []
        var offset = 0
        var round = 0
        while offset < stream.count {
            let size = max(1, min(sizes(round), stream.count - offset))
            round += 1
            do {
                frames += try decoder.decode(Array(stream[offset..<offset + size]))
            } catch {
                return (frames, error)
            }
            #expect(decoder.bufferedBytes <= maxFrameSize, "the decoder holds at most one frame's worth")
            offset += size
        }
        return (frames, nil)
    }

    @Test func framesSplitAnywhereComeOutWhole() {
        var random = SplitMix(state: 7)
        var expected: [[UInt8]] = []
        var stream: [UInt8] = []
        for _ in 0..<500 {
            let frame = (0..<random.next(64) + 1).map { _ in UInt8(32 + random.next(90)) }
            expected.append(frame)
            stream += frame + [10]
        }
        for seed in 0..<20 {
            var sizes = SplitMix(state: UInt64(seed))
            let (frames, error) = decode(stream) { _ in sizes.next(200) + 1 }
            #expect(error == nil)
            #expect(frames == expected)
        }
        // One byte at a time, and the whole stream at once.
        #expect(decode(stream) { _ in 1 }.frames == expected)
        #expect(decode(stream) { _ in stream.count }.frames == expected)
    }

    @Test func carriageReturnsBeforeNewlinesAndBlankLinesAreDropped() throws {
        var decoder = FrameDecoder()
        let frames = try decoder.decode(Array("a\r\n\n\r\nbc\n\n".utf8))
        #expect(frames == [Array("a".utf8), Array("bc".utf8)])
    }

    @Test func onlyOneCarriageReturnIsDroppedWhereverTheChunksAreCut() throws {
        // "\r\r\n" ends the frame "x\r": the frame's own bytes stay as sent.
        let stream = Array("x\r\r\ny\r\n".utf8)
        for cut in 0...stream.count {
            var decoder = FrameDecoder()
            let frames = try decoder.decode(Array(stream[..<cut])) + decoder.decode(Array(stream[cut...]))
            #expect(frames == [Array("x\r".utf8), Array("y".utf8)], "cut at \(cut)")
        }
    }

    @Test func aFrameOfExactlyTheMaximumPassesAndOneByteMoreFails() throws {
        var decoder = FrameDecoder(maxFrameSize: 8)
        #expect(try decoder.decode(Array("12345678\n".utf8)) == [Array("12345678".utf8)])
        #expect(throws: FramingError.self) { try decoder.decode(Array("123456789\n".utf8)) }
    }

    @Test func anOversizedFrameFailsBeforeItsNewlineArrives() {
        var decoder = FrameDecoder(maxFrameSize: 100)
        // No newline ever: the decoder must not wait for one to notice.
        #expect(throws: FramingError(frameBytes: 101, maxFrameSize: 100)) {
            for _ in 0..<101 { _ = try decoder.decode([65]) }
        }
        #expect(decoder.hasFailed)
        #expect(decoder.bufferedBytes == 0, "a failed decoder lets its buffer go")
    }

    @Test func framesBeforeAnOversizedOneAreDeliveredAndEverythingAfterFails() {
        var decoder = FrameDecoder(maxFrameSize: 4)
        var got: [[UInt8]] = []
        var chunk = Array("ok\nyes\n".utf8) + Array(repeating: 66, count: 10) + Array("\nlate\n".utf8)
        let thrown = chunk.withUnsafeMutableBytes { bytes -> FramingError? in
            do throws(FramingError) {
                try decoder.decode(UnsafeRawBufferPointer(bytes)) { got.append(Array($0)); return true }
                return nil
            } catch { return error }
        }
        #expect(thrown != nil)
        #expect(got == [Array("ok".utf8), Array("yes".utf8)])
        #expect(throws: FramingError.self) { try decoder.decode(Array("a\n".utf8)) }
    }

    @Test func aConsumerCanStopMidChunk() throws {
        var decoder = FrameDecoder()
        var got = 0
        try Array("a\nb\nc\n".utf8).withUnsafeBytes { bytes in
            try decoder.decode(bytes) { _ in got += 1; return got < 2 }
        }
        #expect(got == 2)
    }

    /// Hostile streams (random bytes, NULs, invalid UTF-8, floods without newlines): the
    /// decoder never crashes, never holds more than one frame, and delivers only frames within
    /// the bound.
    @Test func hostileBytesNeverCrashNorGrowTheBuffer() {
        var random = SplitMix(state: 99)
        for round in 0..<300 {
            let max = random.next(300) + 1
            var decoder = FrameDecoder(maxFrameSize: max)
            for _ in 0..<20 {
                let count = random.next(2000)
                let newlineOdds = random.next(50) + 1
                let chunk = (0..<count).map { _ in random.next(newlineOdds) == 0 ? UInt8(10) : UInt8(truncatingIfNeeded: random.next(256)) }
                do {
                    for frame in try decoder.decode(chunk) {
                        #expect(frame.count <= max && !frame.isEmpty && !frame.contains(10), "round \(round)")
                    }
                } catch {
                    #expect(decoder.hasFailed)
                    break
                }
                #expect(decoder.bufferedBytes <= max)
            }
        }
    }

    @Test func theEncoderRefusesWhatWouldNotReadAsOneFrame() throws {
        var buffer: [UInt8] = []
        try Array("{}".utf8).withUnsafeBytes { try FrameEncoder.append($0, maxFrameSize: 2, to: &buffer) }
        #expect(buffer == Array("{}\n".utf8))
        #expect(throws: SagaLaneError.self) {
            try Array("a\nb".utf8).withUnsafeBytes { try FrameEncoder.append($0, to: &buffer) }
        }
        #expect(throws: SagaLaneError.self) {
            try Array("abc".utf8).withUnsafeBytes { try FrameEncoder.append($0, maxFrameSize: 2, to: &buffer) }
        }
    }
}
