import SagaLaneLog
import SagaLaneSupport

/// `sagas resolve|retry|resume ID`: an operator's hand on a saga a crash or a failed
/// compensation left for them. Written to the log with their note (each shows in the saga's
/// history); the log must not be open by another writer (its owner stopped: only then is a
/// saga in failed_compensation not in its hands).
struct SagasResolve: Command {
    static let about = CommandInfo(
        name: "resolve",
        abstract: "Close a saga in failed_compensation by hand: it becomes failed, with your note.",
        discussion: """
            For a saga whose compensation failed (or that recovery left for an operator) once \
            you have put right by hand what its steps did. Its reason ends "resolved by an \
            operator: NOTE". Writes the log: its owner (a host, or sagalane agent) must be \
            stopped.

            Examples:
              sagalane sagas resolve app.db 42 --note "refunded by hand, ticket 7"
            """)

    var log = LogArgument()
    var id: UInt64 = 0
    var note = ""

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.argument(valueName: "id", help: "The saga's id.") { $0.id = $1 }
        arguments.option("--note", valueName: "text", help: "What was done, for the saga's history.", required: true) {
            $0.note = $1
        }
    }

    func run() async throws {
        let log = try self.log.openForWriting()
        defer { log.close() }
        do {
            let record = try await log.resolveSaga(id: id, note: note)
            emit("saga \(id) resolved: \(record.state.rawValue) (\(record.failureReason ?? ""))\n")
            flushOutput()
        } catch {
            throw operatorFailure(error)
        }
    }
}

struct SagasRetry: Command {
    static let about = CommandInfo(
        name: "retry",
        abstract: "Ask the log's owner to run a failed_compensation saga's compensations again.",
        discussion: """
            Leaves a request in the log that the next start of its owner carries out after its \
            recovery: the compensations of the saga's succeeded steps that are not undone yet \
            are sent again, latest first. Writes the log: its owner must be stopped.

            Examples:
              sagalane sagas retry app.db 42 --note "billing is back"
            """)

    var request = SagaRequestOptions()

    static func declare(_ arguments: inout Declarations<Self>) { arguments.group(\.request) }

    func run() async throws { try await request.leave(.retryCompensation, "its compensations will run again") }
}

struct SagasResume: Command {
    static let about = CommandInfo(
        name: "resume",
        abstract: "Ask the log's owner to take a failed_compensation saga up where it stopped.",
        discussion: """
            For a saga recovery left in failed_compensation (its type's policy was mark_failed) \
            that never began compensating: at the next start its owner rebuilds it from its \
            input, replays its recorded step results and sends its pending step again under the \
            same saga id and index. Writes the log: its owner must be stopped.

            Examples:
              sagalane sagas resume app.db 42
            """)

    var request = SagaRequestOptions()

    static func declare(_ arguments: inout Declarations<Self>) { arguments.group(\.request) }

    func run() async throws { try await request.leave(.resume, "it will be resumed") }
}

/// The saga an operator's request is for, and why.
struct SagaRequestOptions: ArgumentGroup {
    var log = LogArgument()
    var id: UInt64 = 0
    var note: String?

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.argument(valueName: "id", help: "The saga's id.") { $0.id = $1 }
        arguments.option("--note", valueName: "text", help: "Why, for the saga's history.") { $0.note = $1 }
    }

    /// Records the request in the log for its owner's next start, which then does `outcome`.
    func leave(_ action: SagaRequestAction, _ outcome: String) async throws {
        let log = try self.log.openForWriting()
        defer { log.close() }
        do {
            try await log.request(action, sagaID: id, note: note)
            emit("saga \(id): request recorded; at the next start of the log's owner \(outcome)\n")
            flushOutput()
        } catch {
            throw operatorFailure(error)
        }
    }
}

/// The library's refusal, in the command's terms: a saga in the wrong state or not there is
/// the operation failing (1).
private func operatorFailure(_ error: any Error) -> CommandFailure {
    CommandFailure.operation((error as? SagaLaneError)?.message ?? "\(error)")
}
