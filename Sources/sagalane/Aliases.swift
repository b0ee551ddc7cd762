import ArgumentParser
import SagaLaneLog
import SagaLaneSupport

// The commands' old names, kept hidden so that scripts written for them go on working: each
// says its new name on standard error, then does what the new command does.

private func renamed(_ old: String, _ new: String) {
    writeStandardError("sagalane: '\(old)' is now '\(new)'; the old name will go in a later version\n")
}

struct RecentAlias: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "recent", abstract: "Now 'sagas list'.", shouldDisplay: false)

    @OptionGroup var log: LogArgument
    @Option(help: "Show at most this many sagas.", transform: validLimit) var limit = 20
    @OptionGroup var output: OutputOptions

    func run() throws {
        renamed("recent", "sagas list")
        try listSagas(log, filter: SagaFilter(), limit: limit, format: output.resolved)
    }
}

struct UnresolvedAlias: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unresolved", abstract: "Now 'sagas unresolved'.",
                                                    shouldDisplay: false)

    @OptionGroup var log: LogArgument
    @Option(help: "Show at most this many sagas.", transform: validLimit) var limit = 1000
    @OptionGroup var output: OutputOptions

    func run() throws {
        renamed("unresolved", "sagas unresolved")
        try listUnresolved(log, filter: SagaFilter(states: SagaState.unresolved), limit: limit, format: output.resolved)
    }
}

struct SagaAlias: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "saga", abstract: "Now 'sagas show'.", shouldDisplay: false)

    @OptionGroup var log: LogArgument
    @Argument(help: "The saga's id.") var id: UInt64
    @OptionGroup var output: OutputOptions

    func run() throws {
        renamed("saga", "sagas show")
        try showSaga(log, id: id, format: output.resolved)
    }
}
