@testable import sagalane
import Testing

// The command line's parser and help on commands of their own, without running the binary.

/// A command with every kind of argument.
private struct Fetch: Command {
    static let about = CommandInfo(
        name: "fetch",
        abstract: "Fetch what a source holds into a target, as often as it takes.",
        discussion: """
            Each try reads the whole source again; --retries says how many tries there are at most, and a \
            source that cannot be read at all stops the command at once.

            Examples:
              tool fetch a.db
              tool fetch a.db b.db --retries 3 --tag first --tag second --timeout 30s --format json --verbose
            """)

    var source = ""
    var target: String?
    var retries = 1
    var tags: [String] = []
    var timeout: Duration?
    var format: OutputFormat?
    var verbose = false
    var secret = false
    var limits = Limits()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.argument(valueName: "source", help: "Where to read from.") { $0.source = $1 }
        arguments.argument(valueName: "target", help: "Where to write to (default: standard output).", required: false) {
            $0.target = $1
        }
        arguments.option("--retries", valueName: "count", help: "Try at most this many times (default 1).",
                         transform: validLimit) { $0.retries = $1 }
        arguments.option("--tag", valueName: "name", help: "Mark what is fetched with NAME; repeat it for more.",
                         repeats: true) { $0.tags.append($1) }
        arguments.option("--timeout-for-each-single-try", valueName: "duration",
                         help: "How long one try may take before it counts as failed: 250ms, 30s, 5m.",
                         transform: durationArgument) { $0.timeout = $1 }
        arguments.option("--format", valueName: "format", help: "How to print.") { $0.format = $1 }
        arguments.flag("--verbose", help: "Say what each try did.") { $0.verbose = true }
        arguments.flag("--secret", help: "Not for help.", hidden: true) { $0.secret = true }
        arguments.group(\.limits)
    }

    func validate() throws {
        if verbose && format == .jsonl { throw ValidationError("--verbose does not go with --format jsonl") }
    }

    func run() {}
}

/// A group whose check runs before its command's.
private struct Limits: ArgumentGroup {
    var most: Int?

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.option("--most", valueName: "n", help: "At most N.") { $0.most = $1 }
    }

    func validate() throws {
        if let most, most < 0 { throw ValidationError("--most takes 0 or more") }
    }
}

private struct Sign: Command {
    static let about = CommandInfo(name: "sign", abstract: "Sign a file.")
    var file = ""
    var key = ""

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.argument(valueName: "file", help: "The file.") { $0.file = $1 }
        arguments.option("--key", valueName: "key", help: "The key to sign with.", required: true) { $0.key = $1 }
    }

    func run() {}
}

private struct Old: Command {
    static let about = CommandInfo(name: "old", abstract: "Now 'fetch'.", hidden: true)
    static func declare(_: inout Declarations<Self>) {}
    func run() {}
}

private struct Tool: Command {
    static let about = CommandInfo(name: "tool", abstract: "Fetch and sign.", version: "tool 1.2.3",
                                   subcommands: [Fetch.self, Sign.self, Old.self])
    static func declare(_: inout Declarations<Self>) {}
    func run() {}
}

/// Parses `words` as `fetch`'s arguments, or returns the usage error's message.
private func fetch(_ words: [String]) -> Result<Fetch, UsageError> {
    do throws(UsageError) { return .success(try parseArguments(Fetch.self, words[...])) } catch { return .failure(error) }
}

/// Lines, for a comparison that shows the line that differs.
private func lines(_ text: String) -> [Substring] {
    text.split(separator: "\n", omittingEmptySubsequences: false)
}

private func message(_ result: Result<Fetch, UsageError>) -> String? {
    guard case .failure(let error) = result else { return nil }
    return error.message
}

@Suite struct ParserTests {
    @Test func optionsTakeTheirValueAfterThemOrAfterAnEqualsSign() throws {
        let spaced = try fetch(["a.db", "--retries", "3", "--format", "json"]).get()
        let joined = try fetch(["--retries=3", "a.db", "--format=json"]).get()
        for parsed in [spaced, joined] {
            #expect(parsed.source == "a.db" && parsed.target == nil && parsed.retries == 3 && parsed.format == .json)
        }
        // After "=" a value may start with a dash or hold another "=".
        #expect(try fetch(["a.db", "--tag=-x=y"]).get().tags == ["-x=y"])
        // Absent options keep their defaults.
        let bare = try fetch(["a.db", "b.db"]).get()
        #expect(bare.target == "b.db" && bare.retries == 1 && bare.tags.isEmpty && bare.format == nil && !bare.verbose)
        #expect(try fetch(["a.db", "--timeout-for-each-single-try", "250ms"]).get().timeout == .milliseconds(250))
    }

    @Test func aRepeatedOptionAddsEachValueAndASingleOneKeepsTheLast() throws {
        let parsed = try fetch(["a.db", "--tag", "one", "--retries", "2", "--tag", "two", "--tag=three", "--retries", "4"]).get()
        #expect(parsed.tags == ["one", "two", "three"])
        #expect(parsed.retries == 4)
    }

    @Test func doubleDashEndsTheOptions() throws {
        let parsed = try fetch(["--verbose", "--", "--retries", "-"]).get()
        #expect(parsed.verbose && parsed.source == "--retries" && parsed.target == "-" && parsed.retries == 1)
        #expect(message(fetch(["--", "a.db", "b.db", "--verbose"])) == "Unexpected argument '--verbose'")
    }

    @Test func mistakesAreUsageErrorsThatNameTheArgument() {
        #expect(message(fetch(["a.db", "--bogus"])) == "Unknown option '--bogus'")
        #expect(message(fetch(["a.db", "--retrie", "2"])) == "Unknown option '--retrie'. Did you mean '--retries'?")
        #expect(message(fetch(["a.db", "-r"])) == "Unknown option '-r'")
        #expect(message(fetch(["a.db", "--secret=yes"])) == "The option '--secret' does not take any value, but 'yes' was specified.")
        for missing in [["a.db", "--retries"], ["a.db", "--retries", "--verbose"], ["a.db", "--retries="], ["a.db", "--retries", "-3"]] {
            #expect(message(fetch(missing)) == "Missing value for '--retries <count>'", "\(missing)")
        }
        #expect(message(fetch([])) == "Missing expected argument '<source>'")
        #expect(message(fetch(["a", "b", "c", "d"])) == "2 unexpected arguments: 'c', 'd'")
        #expect(message(fetch(["a.db", "--retries", "0"]))
                == "The value '0' is invalid for '--retries <count>': --limit takes a count of 1 or more, not '0'")
        #expect(message(fetch(["a.db", "--format", "xml"]))
                == "The value 'xml' is invalid for '--format <format>'. Please provide one of 'table', 'json' or 'jsonl'.")
        #expect(message(fetch(["a.db", "--most", "x"])) == "The value 'x' is invalid for '--most <n>'")
        // Each error that is about one argument carries it, for its help line.
        if case .failure(let error) = fetch(["a.db", "--retries"]) { #expect(error.argument?.name == "--retries") }

        do throws(UsageError) {
            _ = try parseArguments(Sign.self, ["f"])
            Issue.record("a required option may not be left out")
        } catch {
            #expect(error.message == "Missing expected argument '--key <key>'" && error.argument?.name == "--key")
        }
    }

    @Test func groupsAreCheckedBeforeTheirCommand() {
        #expect(message(fetch(["a.db", "--verbose", "--format", "jsonl"])) == "--verbose does not go with --format jsonl")
        #expect(message(fetch(["a.db", "--verbose", "--format", "jsonl", "--most", "-1"])) == "Missing value for '--most <n>'")
        #expect(message(fetch(["a.db", "--verbose", "--format", "jsonl", "--most=-1"])) == "--most takes 0 or more")
    }

    @Test func theRootFindsTheSubcommandHelpAndVersion() throws {
        guard case .run(let command, let path) = try Tool.parseAsRoot(["fetch", "a.db", "--verbose"]) else {
            Issue.record("fetch does not run")
            return
        }
        #expect((command as? Fetch)?.verbose == true && path.words == "tool fetch")
        guard case .help(let help) = try Tool.parseAsRoot(["fetch", "a.db", "--bogus", "-h"]) else {
            Issue.record("-h is not help")
            return
        }
        guard case .help(let spelled) = try Tool.parseAsRoot(["help", "fetch"]) else { Issue.record("help fetch"); return }
        #expect(help == spelled && help.hasPrefix("OVERVIEW: Fetch what a source holds"))
        guard case .version(let version) = try Tool.parseAsRoot(["sign", "--version"]) else { Issue.record("--version"); return }
        #expect(version == "tool 1.2.3")
        // After "--", "--help" is a word like any other.
        guard case .run(let signed, _) = try Tool.parseAsRoot(["sign", "--key", "k", "--", "--help"]) else {
            Issue.record("sign -- --help")
            return
        }
        #expect((signed as? Sign)?.file == "--help")
        #expect(throws: UsageError.self) { try Tool.parseAsRoot(["help", "nothing"]) }
        do throws(UsageError) {
            _ = try Tool.parseAsRoot(["sign", "f"])
        } catch {
            #expect(error.path?.words == "tool sign")
            #expect(errorText(error) == """
                Error: Missing expected argument '--key <key>'
                Help:  --key <key>  The key to sign with.
                Usage: tool sign <file> --key <key>
                  See 'tool sign --help' for more information.

                """)
        }
    }

    @Test func helpIsMadeFromTheDeclarationsAndWrappedTo79Columns() throws {
        var path = CommandPath(Tool.self)
        path.append(Fetch.self)
        let help = helpText(path)
        #expect(lines(help) == lines("""
            OVERVIEW: Fetch what a source holds into a target, as often as it takes.

            Each try reads the whole source again; --retries says how many tries there are
            at most, and a source that cannot be read at all stops the command at once.

            Examples:
              tool fetch a.db
              tool fetch a.db b.db --retries 3 --tag first --tag second --timeout 30s \\
                  --format json --verbose

            USAGE: tool fetch <source> [<target>] [--retries <count>] [--tag <name> ...]
                              [--timeout-for-each-single-try <duration>]
                              [--format <format>] [--verbose] [--most <n>]

            ARGUMENTS:
              <source>                Where to read from.
              <target>                Where to write to (default: standard output).

            OPTIONS:
              --retries <count>       Try at most this many times (default 1).
              --tag <name>            Mark what is fetched with NAME; repeat it for more.
              --timeout-for-each-single-try <duration>
                                      How long one try may take before it counts as failed:
                                      250ms, 30s, 5m.
              --format <format>       How to print. (values: table, json, jsonl)
              --verbose               Say what each try did.
              --most <n>              At most N.
              --version               Show the version.
              -h, --help              Show help information.

            """))
        #expect(help.split(separator: "\n").allSatisfy { $0.count <= 79 })
        #expect(!help.contains("--secret"), "a hidden flag is left out")

        let root = helpText(CommandPath(Tool.self))
        #expect(root.hasSuffix("""
            USAGE: tool <subcommand>

            OPTIONS:
              --version               Show the version.
              -h, --help              Show help information.

            SUBCOMMANDS:
              fetch                   Fetch what a source holds into a target, as often as
                                      it takes.
              sign                    Sign a file.

              See 'tool help <subcommand>' for detailed help.

            """), "\(root)")
        #expect(Tool.helpMessage(for: Sign.self).contains("USAGE: tool sign <file> --key <key>\n"))
    }
}
