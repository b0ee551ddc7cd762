import SagaLane

// `sagalane-bench wire-counted --op OP --frames N`: one protocol operation done exactly N
// times and nothing else, for counting instructions (scripts/callgrind-wire runs it at two
// sizes under callgrind, collecting only inside `wireCountedLoop`, and divides the difference).
// The frames are the ones `sagalane-bench wire` measures (`commandFrame`, `answerFrame`).

enum WireCountedOperation: String, CaseIterable {
    case commandParse = "command-parse"
    case answerParse = "answer-parse"
    case commandSerialize = "command-serialize"
    case answerSerialize = "answer-serialize"
}

/// Saga ids start here, so every frame's id has the same number of digits.
private let firstSagaID = 100_000

func runWireCounted(operation: WireCountedOperation, frames n: Int) {
    let commandText = Array(commandFrame(12345).utf8)
    let answerText = Array(answerFrame(sagaID: 12345, step: 0).utf8)
    // Made up front, outside the counted loop, as a saga's steps hold them.
    let commands = operation == .commandSerialize ? (0..<n).map { command(firstSagaID + $0) } : []
    let sink = wireCountedLoop(operation, n, commandText, answerText, commands)
    if sink == -1 { print("") }
}

/// The counted part: nothing but `n` operations.
@inline(never)
func wireCountedLoop(_ operation: WireCountedOperation, _ n: Int, _ commandText: [UInt8], _ answerText: [UInt8],
                     _ commands: [JSON]) -> Int {
    var sink = 0
    switch operation {
    case .commandParse:
        commandText.withUnsafeBytes { bytes in
            for _ in 0..<n { if (try? WireFrame.parse(bytes)) != nil { sink &+= 1 } }
        }
    case .answerParse:
        answerText.withUnsafeBytes { bytes in
            for _ in 0..<n { if (try? WireFrame.parse(bytes)) != nil { sink &+= 1 } }
        }
    case .commandSerialize:
        for i in 0..<n { sink &+= commandFrame(firstSagaID + i, command: commands[i]).utf8.count }
    case .answerSerialize:
        for i in 0..<n { sink &+= answerFrame(sagaID: UInt64(firstSagaID + i), step: 0).utf8.count }
    }
    return sink
}
