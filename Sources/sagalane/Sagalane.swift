// sagalane: the operator's tool for a sagalane log. Each command is a type here, with its own
// --help; what they share (opening the log, output formats, times) is in Options.swift and
// Output.swift; the command line's parser is in CommandLine/.
import Glibc
import SagaLaneSupport

@main
struct Sagalane: Command {
    static let about = CommandInfo(
        name: "sagalane",
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

    static func declare(_: inout Declarations<Self>) {}

    /// `sagalane` alone shows its help.
    func run() {
        emit(Self.helpMessage(for: Self.self))
    }

    /// Runs the command line's command, with sagalane's exit statuses: 2 for a usage error, a
    /// command's own failure as it says.
    static func main() async {
        let command: any Command
        let path: CommandPath
        do throws(UsageError) {
            switch try parseAsRoot(Array(CommandLine.arguments.dropFirst())) {
            case .help(let text):
                emit(text)
                flushOutput()
                Glibc.exit(0)
            case .version(let line):
                emit(line + "\n")
                flushOutput()
                Glibc.exit(0)
            case .run(let parsed, let selected):
                command = parsed
                path = selected
            }
        } catch {
            writeStandardError(errorText(error))
            Glibc.exit(2)
        }
        do {
            // The agent runs here, before any suspension: on the main thread, as it must.
            if let agent = command as? AgentCommand { try agent.run() }
            try await command.run()
        } catch let failure as CommandFailure {
            flushOutput()
            writeStandardError("sagalane: \(failure.message)\n")
            Glibc.exit(failure.status)
        } catch let invalid as ValidationError {
            flushOutput()
            writeStandardError(errorText(UsageError(invalid.message, path: path)))
            Glibc.exit(2)
        } catch {
            flushOutput()
            writeStandardError("sagalane: \(error)\n")
            Glibc.exit(1)
        }
        flushOutput()
        Glibc.exit(0)
    }
}

struct Version: Command {
    static let about = CommandInfo(name: "version", abstract: "Print sagalane's version.")

    static func declare(_: inout Declarations<Self>) {}

    func run() {
        emit("sagalane \(SagaLaneVersion.string)\n")
    }
}
