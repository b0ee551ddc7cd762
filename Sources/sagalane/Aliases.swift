import SagaLaneLog
import SagaLaneSupport

// The commands' old names, kept hidden so that scripts written for them go on working: each
// says its new name on standard error, then does what the new command does.

private func renamed(_ old: String, _ new: String) {
    writeStandardError("sagalane: '\(old)' is now '\(new)'; the old name will go in a later version\n")
}

struct RecentAlias: Command {
    static let about = CommandInfo(name: "recent", abstract: "Now 'sagas list'.", hidden: true)

    var log = LogArgument()
    var limit = 20
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.option("--limit", valueName: "limit", help: "Show at most this many sagas.", transform: validLimit) {
            $0.limit = $1
        }
        arguments.group(\.output)
    }

    func run() throws {
        renamed("recent", "sagas list")
        try listSagas(log, filter: SagaFilter(), limit: limit, format: output.resolved)
    }
}

struct UnresolvedAlias: Command {
    static let about = CommandInfo(name: "unresolved", abstract: "Now 'sagas unresolved'.",
                                                    hidden: true)

    var log = LogArgument()
    var limit = 1000
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.option("--limit", valueName: "limit", help: "Show at most this many sagas.", transform: validLimit) {
            $0.limit = $1
        }
        arguments.group(\.output)
    }

    func run() throws {
        renamed("unresolved", "sagas unresolved")
        try listUnresolved(log, filter: SagaFilter(states: SagaState.unresolved), limit: limit, format: output.resolved)
    }
}

struct SagaAlias: Command {
    static let about = CommandInfo(name: "saga", abstract: "Now 'sagas show'.", hidden: true)

    var log = LogArgument()
    var id: UInt64 = 0
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.argument(valueName: "id", help: "The saga's id.") { $0.id = $1 }
        arguments.group(\.output)
    }

    func run() throws {
        renamed("saga", "sagas show")
        try showSaga(log, id: id, format: output.resolved)
    }
}
