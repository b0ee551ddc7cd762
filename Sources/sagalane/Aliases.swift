import SagaLaneLog
import SagaLaneSupport

// The commands' old names, kept hidden so that scripts written for them go on working: each
// says its new name on standard error, then runs the new command with the words it was given
// (and the old command's default limit).

private func announce(_ old: String, _ new: String) {
    writeStandardError("sagalane: '\(old)' is now '\(new)'; the old name will go in a later version\n")
}

struct RecentAlias: Command {
    static let about = CommandInfo(name: "recent", abstract: "Now 'sagas list'.", hidden: true)
    /// The old command's default limit.
    var renamed = SagasList(limit: 20)

    static func declare(_ arguments: inout Declarations<Self>) { arguments.group(\.renamed) }
    func run() throws { announce("recent", "sagas list"); try renamed.run() }
}

struct UnresolvedAlias: Command {
    static let about = CommandInfo(name: "unresolved", abstract: "Now 'sagas unresolved'.", hidden: true)
    var renamed = SagasUnresolved(limit: 1000)

    static func declare(_ arguments: inout Declarations<Self>) { arguments.group(\.renamed) }
    func run() throws { announce("unresolved", "sagas unresolved"); try renamed.run() }
}

struct SagaAlias: Command {
    static let about = CommandInfo(name: "saga", abstract: "Now 'sagas show'.", hidden: true)
    var renamed = SagasShow()

    static func declare(_ arguments: inout Declarations<Self>) { arguments.group(\.renamed) }
    func run() throws { announce("saga", "sagas show"); try renamed.run() }
}
