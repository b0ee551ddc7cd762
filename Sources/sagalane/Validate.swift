import SagaLaneDefinitions
import SagaLaneJSON
import SagaLaneSupport

struct Validate: Command {
    static let about = CommandInfo(
        name: "validate",
        abstract: "Check a saga file: every problem at once, with its line and column.",
        discussion: """
            Reads a file of declarative sagas (docs/sagas-file.md) as sagalane agent --sagas \
            and sl_saga_types_load do, and either lists the sagas it defines (name, trigger, \
            steps) or every problem in it, one a line, as FILE:LINE:COLUMN: saga "NAME", step N: \
            what is wrong. Nothing is started and no log is touched.

            Exit status: 0 when the file is valid, 2 when it is not (or cannot be read).

            Examples:
              sagalane validate examples/sagas/terminal-pool.json
              sagalane validate sagas.json --format json
            """)

    var file = ""
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.argument(valueName: "file", help: "The saga file.") { $0.file = $1 }
        arguments.group(\.output)
    }

    func run() throws {
        let sagas: SagaFile
        do { sagas = try SagaFile(contentsOf: file) } catch {
            throw CommandFailure.usage("\(file) is not a valid saga file (\(error.problems.count) problem\(error.problems.count == 1 ? "" : "s")):\n\(error)")
        }
        var listing = Listing(output.resolved, columns: [
            .init("NAME", maxWidth: 40), .init("TRIGGER", maxWidth: 40), .init("STEPS", shrinks: true, maxWidth: 100),
            .init("TIMEOUT", right: true),
        ])
        for definition in sagas.definitions {
            let trigger = definition.triggerDefinition?.eventType
            let timeout = definition.timeout.map { "\($0.wholeMilliseconds) ms" }
            let steps = definition.steps.map { "\($0.name) → \($0.target)" }
            listing.add([
                "name": .string(definition.name),
                "trigger": trigger.map { .string($0) } ?? .null,
                "steps": .array(definition.steps.map { ["name": .string($0.name), "target": .string($0.target),
                                                         "completes_on": .array($0.completesOn.map { .string($0) })] }),
                "timeout_ms": definition.timeout.map { .int($0.wholeMilliseconds) } ?? .null,
            ], row: [definition.name, trigger ?? "(started by name)", steps.joined(separator: ", "), timeout ?? "default"])
        }
        listing.finish(empty: "", footer: "\(file): valid, \(sagas.definitions.count) saga type\(sagas.definitions.count == 1 ? "" : "s")")
    }
}
