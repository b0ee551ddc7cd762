// A child process for crash tests: the tests start it, let it write through the real code
// paths, and kill it with SIGKILL mid-stream. Each scenario is one subcommand.
import Glibc
import SagaLane

let arguments = Array(CommandLine.arguments.dropFirst())
guard let scenario = arguments.first else {
    writeStandardError("usage: sagalane-testchild <scenario> [args…]\n")
    exit(2)
}
switch scenario {
case "lane-run":
    runLaneRun(Array(arguments.dropFirst()))
case "lane-cancel":
    runLaneCancel(Array(arguments.dropFirst()))
case "saga-crash":
    runSagaCrash(Array(arguments.dropFirst()))
case "lifecycle-crash":
    runLifecycleCrash(Array(arguments.dropFirst()))
case "log-append":
    runLogAppend(Array(arguments.dropFirst()))
case "agent":
    runAgentChild(Array(arguments.dropFirst()))
case "foreign-peer":
    runForeignPeer(Array(arguments.dropFirst()))
default:
    writeStandardError("sagalane-testchild: unknown scenario '\(scenario)'\n")
    exit(2)
}
