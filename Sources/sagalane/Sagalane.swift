// sagalane: the operator's tool for a sagalane log. Each command is a type here, with its own
// --help; what they share (opening the log, output formats, times) is in Options.swift and
// Output.swift.
import ArgumentParser
import Glibc
import SagaLaneSupport

@main
struct Sagalane: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sagalane",
        abstract: "Run the sagalane agent; look into a sagalane log, and look after it.",
        discussion: """
            Reads open the log read-only: they work while the program that owns the log is \
            writing it, start no thread and create no file beside it. vacuum writes: it needs \
            the log to itself.

            Output is an aligned table on a terminal and JSON otherwise; --format table, json or \
            jsonl chooses. Progress of long operations goes to standard error when it is a \
            terminal.

            Exit status: 0 when done; 1 when the operation failed (a log another process \
            writes, a saga that is not there); 2 when a file is not a log or an argument is not \
            what the command takes.

            Examples:
              sagalane agent --data-dir /var/lib/sagalane
              sagalane sagas list app.db --state failed --since 1h
              sagalane sagas show app.db 42
              sagalane sagas unresolved app.db
              sagalane jobs app.db --lane gpu --state queued
              sagalane vacuum app.db --older-than 30d --dry-run
              sagalane stats app.db --socket /var/lib/sagalane/agent.sock
              sagalane validate sagas.json
            """,
        version: "sagalane \(SagaLaneVersion.string)",
        subcommands: [AgentCommand.self, Sagas.self, Jobs.self, Lanes.self, Stats.self, Vacuum.self, Recover.self, Validate.self, Version.self,
                      RecentAlias.self, UnresolvedAlias.self, SagaAlias.self, AgentStatsAlias.self])

    /// Runs the command, with sagalane's exit statuses: 2 for a usage error (which
    /// swift-argument-parser reports as 64), a command's own failure as it says.
    static func main() async {
        do {
            var command = try parseAsRoot()
            // The agent runs here, before any suspension: on the main thread, as it must.
            if let agent = command as? AgentCommand { try agent.run() }
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            flushOutput()
            writeStandardError("sagalane: \(failure.message)\n")
            Glibc.exit(failure.status)
        } catch {
            if exitCode(for: error) == .validationFailure {
                flushOutput()
                writeStandardError(fullMessage(for: error) + "\n")
                Glibc.exit(2)
            }
            flushOutput()
            exit(withError: error)
        }
        flushOutput()
        Glibc.exit(0)
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print sagalane's version.")

    func run() {
        emit("sagalane \(SagaLaneVersion.string)\n")
    }
}
