import Glibc
import SagaLane
import SagaLaneAgent
import SagaLaneScriptSaga

/// `agent --data-dir D [--socket S] [--saga-timeout-ms N] [--buffer-expiry-ms N]
/// [--reservation-ms N] [--lane NAME=N]... [--sagas FILE]`: a real agent whose saga types are
/// `script` (see ScriptSaga) and those of the saga file, for end-to-end tests that kill it with SIGKILL and start it again. Prints
/// "ready" on standard output once it listens; exits with runAgent's status.
func runAgentChild(_ arguments: [String]) -> Never {
    var options = AgentOptions(dataDirectory: "")
    var sagaTimeout = Duration.seconds(30)
    var rest = arguments[...]
    while let option = rest.popFirst() {
        guard let value = rest.popFirst() else { childFail("\(option) needs a value") }
        switch option {
        case "--data-dir": options.dataDirectory = value
        case "--socket": options.socketPath = value
        case "--saga-timeout-ms": sagaTimeout = .milliseconds(Int64(value) ?? 30_000)
        case "--buffer-expiry-ms": options.bufferExpiry = .milliseconds(Int64(value) ?? 30_000)
        case "--reservation-ms": options.reservation = .milliseconds(Int64(value) ?? 60_000)
        case "--sagas": options.sagasFile = value
        case "--lane":
            let parts = value.split(separator: "=")
            guard parts.count == 2, let bound = Int(parts[1]) else { childFail("--lane takes NAME=N") }
            options.lanes.append((String(parts[0]), bound))
        default: childFail("agent: unknown option \(option)")
        }
    }
    guard !options.dataDirectory.isEmpty else { childFail("agent needs --data-dir") }
    let timeout = sagaTimeout
    options.prepare = { runtime in
        try runtime.register(ScriptSaga.type(timeout: timeout))
        return 1
    }
    options.onReady = {
        // Unbuffered: the test reads it from a pipe while the agent runs on.
        _ = "ready\n".withCString { write(1, $0, 6) }
    }
    exit(runAgent(options))
}

func childFail(_ message: String) -> Never {
    writeStandardError("sagalane-testchild: \(message)\n")
    exit(2)
}
