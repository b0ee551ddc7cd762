/// The commands from the root to the one a command line selected (`sagalane sagas list`).
struct CommandPath {
    private(set) var commands: [any Command.Type]

    init(_ root: any Command.Type) { commands = [root] }

    var root: any Command.Type { commands[0] }
    var last: any Command.Type { commands[commands.count - 1] }
    /// "sagalane sagas list".
    var words: String { commands.map { $0.about.name }.joined(separator: " ") }

    mutating func append(_ command: any Command.Type) { commands.append(command) }

    /// The visible or hidden subcommand of the last command that `word` names.
    func subcommand(_ word: String) -> (any Command.Type)? {
        last.about.subcommands.first { $0.about.name == word }
    }
}

/// A mistake on the command line: exit status 2, with the message, the command's usage
/// line and where its help is.
struct UsageError: Error {
    var message: String
    /// The argument the message is about, whose help the error repeats.
    var argument: ArgumentInfo?
    /// The command whose usage to show; the dispatcher fills it in.
    var path: CommandPath?

    init(_ message: String, argument: ArgumentInfo? = nil, path: CommandPath? = nil) {
        self.message = message
        self.argument = argument
        self.path = path
    }
}

/// What a command line asks for.
enum Invocation {
    /// A command, its arguments read and checked.
    case run(any Command, CommandPath)
    /// A command's help, for standard output.
    case help(String)
    /// The root's version line.
    case version(String)
}

extension Command {
    /// Reads `words` (the command line without the program's name), this command being the
    /// root: subcommand names first, then the last one's arguments. `-h`, `--help` or
    /// `--version` anywhere before `--` asks for that instead; `help COMMAND…` is --help's
    /// other spelling.
    static func parseAsRoot(_ words: [String]) throws(UsageError) -> Invocation {
        var path = CommandPath(Self.self)
        var index = 0
        if words.first == "help" {
            for word in words.dropFirst() {
                guard let command = path.subcommand(word) else {
                    throw UsageError("Unknown command '\(word)'", path: path)
                }
                path.append(command)
            }
            return .help(helpText(path))
        }
        while index < words.count, let command = path.subcommand(words[index]) {
            path.append(command)
            index += 1
        }
        let rest = words[index...]
        for word in rest {
            if word == "--" { break }
            if word == "-h" || word == "--help" { return .help(helpText(path)) }
            if word == "--version", let version = about.version { return .version(version) }
        }
        do throws(UsageError) {
            return .run(try parseArguments(path.last, rest), path)
        } catch {
            var error = error
            error.path = path
            throw error
        }
    }

    /// The help of `command`, one of the commands under this root (or the root itself).
    static func helpMessage(for command: any Command.Type) -> String {
        func find(_ path: CommandPath) -> CommandPath? {
            if ObjectIdentifier(path.last) == ObjectIdentifier(command) { return path }
            for sub in path.last.about.subcommands {
                var deeper = path
                deeper.append(sub)
                if let found = find(deeper) { return found }
            }
            return nil
        }
        return helpText(find(CommandPath(Self.self)) ?? CommandPath(command))
    }
}

/// Reads a command's own arguments from `words`: options and flags in any order, as
/// `--name value` or `--name=value`; the other words are its positional arguments, in their
/// order; after `--` every word is positional. A word after an option is its value unless it
/// looks like an option itself. Mistakes are reported in the order of their words; a missing
/// argument, once all words are read.
func parseArguments<C: Command>(_ type: C.Type, _ words: ArraySlice<String>) throws(UsageError) -> C {
    let declared = C.declarations
    let plan = plan(words, for: declared.arguments)
    var command = C()
    // Indices rather than collection algorithms: this function runs unspecialized (its
    // command type is only known at run time), and those would look up conformances.
    for (index, word) in plan.values {
        let info = declared.arguments[index]
        do {
            try declared.setters[index](&command, word)
        } catch let invalid as ValidationError {
            throw UsageError("The value '\(word)' is invalid for '\(info.label)': \(invalid.message)", argument: info)
        } catch {
            var message = "The value '\(word)' is invalid for '\(info.label)'"
            if let choices = info.choices {
                message += ". Please provide one of " + listed(choices.map { "'\($0)'" }, or: true) + "."
            }
            throw UsageError(message, argument: info)
        }
    }
    if let mistake = plan.mistake { throw mistake }
    for index in declared.validators.indices {
        do {
            try declared.validators[index](command)
        } catch {
            throw UsageError((error as? ValidationError)?.message ?? "\(error)")
        }
    }
    return command
}

/// Which argument each word sets, in order, up to the first mistake (if any): the part of
/// parsing that needs no command's type.
private struct Plan {
    var values: [(argument: Int, word: String)] = []
    var mistake: UsageError?
}

private func plan(_ words: ArraySlice<String>, for arguments: [ArgumentInfo]) -> Plan {
    var plan = Plan()
    var positionals = arguments.indices.filter { arguments[$0].kind == .positional }[...]
    var given: [Int] = []
    var unexpected: [String] = []
    var index = words.startIndex
    var optionsEnded = false
    while index < words.endIndex {
        let word = words[index]
        index += 1
        if !optionsEnded && word == "--" {
            optionsEnded = true
        } else if !optionsEnded && looksLikeOption(word) {
            var name = Substring(word)
            var attached: Substring?
            if word.hasPrefix("--"), let equals = word.firstIndex(of: "=") {
                name = word[..<equals]
                attached = word[word.index(after: equals)...]
            }
            guard let argument = arguments.indices.first(where: { arguments[$0].kind != .positional && arguments[$0].name == name }) else {
                plan.mistake = UsageError("Unknown option '\(name)'" + suggestion(for: name, among: arguments))
                return plan
            }
            let info = arguments[argument]
            if info.kind == .flag {
                if let attached {
                    plan.mistake = UsageError("The option '\(name)' does not take any value, but '\(attached)' was specified.")
                    return plan
                }
                plan.values.append((argument, ""))
            } else if let attached, !attached.isEmpty {
                plan.values.append((argument, String(attached)))
            } else if attached == nil, index < words.endIndex, !looksLikeOption(words[index]) {
                plan.values.append((argument, words[index]))
                index += 1
            } else {
                plan.mistake = UsageError("Missing value for '\(info.label)'", argument: info)
                return plan
            }
            given.append(argument)
        } else if let argument = positionals.popFirst() {
            plan.values.append((argument, word))
        } else {
            unexpected.append(word)
        }
    }
    if unexpected.count == 1 {
        plan.mistake = UsageError("Unexpected argument '\(unexpected[0])'")
    } else if !unexpected.isEmpty {
        plan.mistake = UsageError("\(unexpected.count) unexpected arguments: " + unexpected.map { "'\($0)'" }.joined(separator: ", "))
    } else if let missing = positionals.first(where: { arguments[$0].isRequired })
                ?? arguments.indices.first(where: { arguments[$0].kind == .option && arguments[$0].isRequired && !given.contains($0) }) {
        plan.mistake = UsageError("Missing expected argument '\(arguments[missing].label)'", argument: arguments[missing])
    }
    return plan
}

/// `-x`, `--name`, `--name=value`; a lone `-` is a word (standard input, by custom).
private func looksLikeOption(_ word: String) -> Bool {
    word.hasPrefix("-") && word.utf8.count > 1
}

/// " Did you mean '--limit'?" when an option is near enough to the unknown `name` (at most
/// two letters added, dropped or changed), or nothing.
private func suggestion(for name: Substring, among arguments: [ArgumentInfo]) -> String {
    let candidates = arguments.filter { $0.kind != .positional && !$0.hidden }
        .map { (name: $0.name, distance: editDistance(Array(name.utf8), Array($0.name.utf8))) }
        .filter { $0.distance <= 2 }
    guard let best = candidates.min(by: { $0.distance < $1.distance }) else { return "" }
    return ". Did you mean '\(best.name)'?"
}

private func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    var previous = Array(0...b.count)
    for (i, x) in a.enumerated() {
        var current = [i + 1]
        for (j, y) in b.enumerated() {
            current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
        }
        previous = current
    }
    return previous[b.count]
}

/// "'a', 'b' or 'c'" (or "a, b, c" when `or` is false).
func listed(_ items: [String], or: Bool) -> String {
    guard or, items.count > 1 else { return items.joined(separator: ", ") }
    return items.dropLast().joined(separator: ", ") + " or " + items[items.count - 1]
}
