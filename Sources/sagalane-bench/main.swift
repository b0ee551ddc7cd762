// sagalane-bench: prints throughput and memory figures, each beside a baseline measured in the
// same run (these machines are shared and noisy: compare ratios, not absolute numbers).
//
//   sagalane-bench [log|saga|recovery|lane|burst|latency|agent|all] [--sagas N] [--burst N] [--dir PATH]
//                  [--commands N] [--terminal-sagas N]
//   sagalane-bench counted --sagas N      exactly N sagas and nothing else (for callgrind)
//   sagalane-bench recovery-only [--policy mark_failed|resume]   the recovery figures alone (for perf)
//   sagalane-bench wire [--commands N]    the protocol's figures alone (no log)
//   sagalane-bench wire-counted --op OP --frames N   one frame operation N times (for callgrind)
//   sagalane-bench latency [--durability full|normal]   open-loop latency alone (default normal)
//   sagalane-bench memory [--sagas N]     resident memory per in-flight saga alone (default 100,000)
//   sagalane-bench agent-peer ...         the other process of the agent benchmarks
import Glibc
import SagaLane

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "agent-peer" { runAgentPeer(Array(arguments.dropFirst())) }
var what = "all"
var sagas = 5_000
var sawSagasArgument = false
var burst = 1_000_000
var commands = 1_000_000
var terminalSagas = 1_000_000
var directory = ".build"
var policies: [RecoveryPolicy] = [.markFailed, .resume]
var latencyDurability = Durability.normal
var wireOperation = WireCountedOperation.commandParse
var frames = 10_000
var index = 0
/// Reads the next argument as a count of at least 1 into `value` (kept when it is not one).
@MainActor func readCount(_ value: inout Int) {
    index += 1
    value = max(1, Int(arguments[index]) ?? value)
}
while index < arguments.count {
    switch arguments[index] {
    case "log", "saga", "sequential", "recovery", "recovery-only", "lane", "burst", "latency", "agent", "wire", "wire-counted", "memory", "counted", "all":
        what = arguments[index]
    case "--policy" where index + 1 < arguments.count:
        index += 1
        guard let policy = RecoveryPolicy(rawValue: arguments[index]) else {
            writeStandardError("sagalane-bench: --policy takes mark_failed, compensate or resume\n")
            exit(2)
        }
        policies = [policy]
    case "--durability" where index + 1 < arguments.count:
        index += 1
        guard let durability = Durability(rawValue: arguments[index]) else {
            writeStandardError("sagalane-bench: --durability takes full or normal\n")
            exit(2)
        }
        latencyDurability = durability
    case "--commands" where index + 1 < arguments.count: readCount(&commands)
    case "--frames" where index + 1 < arguments.count: readCount(&frames)
    case "--op" where index + 1 < arguments.count:
        index += 1
        guard let operation = WireCountedOperation(rawValue: arguments[index]) else {
            let names = WireCountedOperation.allCases.map(\.rawValue).joined(separator: ", ")
            writeStandardError("sagalane-bench: --op takes \(names)\n")
            exit(2)
        }
        wireOperation = operation
    case "--terminal-sagas" where index + 1 < arguments.count: readCount(&terminalSagas)
    case "--burst" where index + 1 < arguments.count: readCount(&burst)
    case "--sagas" where index + 1 < arguments.count:
        readCount(&sagas)
        sawSagasArgument = true
    case "--dir" where index + 1 < arguments.count:
        index += 1
        directory = arguments[index]
    case "-h", "--help":
        print("usage: sagalane-bench [log|saga|sequential|recovery|lane|burst|latency|agent|all] [--sagas N] [--burst N] [--dir PATH] [--durability full|normal]")
        print("                      [--commands N] [--terminal-sagas N]   (agent: command frames; log size for start-up)")
        print("       sagalane-bench counted --sagas N   (exactly N sagas, for scripts/callgrind-saga)")
        print("       sagalane-bench recovery-only [--policy mark_failed|resume]   (the recovery figures alone, for perf)")
        print("       sagalane-bench wire [--commands N]   (the protocol's figures alone, no log)")
        print("       sagalane-bench wire-counted --op OP --frames N   (one frame operation N times, for scripts/callgrind-wire)")
        print("       sagalane-bench memory [--sagas N]   (RSS per in-flight saga alone; default 100,000 sagas)")
        print("  Databases are written in --dir (default .build; not tmpfs, where fsync costs nothing).")
        exit(0)
    default:
        writeStandardError("sagalane-bench: unknown argument '\(arguments[index])' (try --help)\n")
        exit(2)
    }
    index += 1
}
mkdir(directory, 0o755)

/// The benchmarks, run as a task while the main thread waits for it. (An asynchronous main
/// would park the main thread in libdispatch's main loop, which valgrind cannot follow; the
/// task is detached because top-level code runs on the main actor, which that thread holds.)
let finished = Completion<Int32>()
Task.detached { [what, directory, sagas, sawSagasArgument, burst, commands, terminalSagas, policies, wireOperation, frames, latencyDurability] in
    do {
        if what == "wire-counted" {
            runWireCounted(operation: wireOperation, frames: frames)
        }
        if what == "log" || what == "all" {
            try runLogBench(directory: directory, sagas: sagas, baselineSagas: max(50, sagas / 20))
        }
        if what == "saga" || what == "all" {
            try await runSagaBench(directory: directory, sagas: sagas)
        }
        if what == "recovery" || what == "all" {
            try await runRecoveryBench(directory: directory, sagas: sagas)
        }
        if what == "lane" || what == "all" {
            try runLaneBench(directory: directory, jobs: sagas * 4)
            try runLaneSubmitBench(directory: directory, jobs: sagas * 4)
        }
        if what == "latency" || what == "all" {
            try await runLatencyBench(directory: directory, load: 0.5, seconds: 5, durability: latencyDurability)
        }
        if what == "burst" || what == "all" {
            try await runBurstBench(directory: directory, sagas: burst)
        }
        if what == "agent" || what == "all" {
            try await runAgentBench(directory: directory, commands: commands, sagas: sagas, terminalSagas: terminalSagas)
        }
        if what == "wire" {
            try runWireBench(directory: directory, commands: commands)
        }
        if what == "memory" {
            try await runMemoryBench(directory: directory, sagas: sawSagasArgument ? sagas : 100_000)
        }
        if what == "sequential" {
            try await runSequentialSagas(directory: directory, sagas: sawSagasArgument ? sagas : 200)
        }
        if what == "recovery-only" {
            try await runInterruptedRecoveryBench(directory: directory, policies: policies)
        }
        if what == "counted" {
            try await runCountedSagas(directory: directory, sagas: sagas)
        }
        finished.set(0)
    } catch {
        writeStandardError("sagalane-bench: \(error)\n")
        finished.set(1)
    }
}
exit(finished.wait())
