// Help and usage, made from the commands' declarations: lines of at most 79 columns, so that
// an 80-column terminal never wraps them itself.

private let lineWidth = 79
/// Where an argument's help starts in its row.
private let helpColumn = 26

/// The help of the last command of `path`: OVERVIEW, the discussion, USAGE, then its
/// ARGUMENTS, OPTIONS and SUBCOMMANDS.
func helpText(_ path: CommandPath) -> String {
    let about = path.last.about
    var out = wrapped(words("OVERVIEW: " + about.abstract), first: lineWidth, rest: lineWidth).joined(separator: "\n") + "\n"
    if !about.discussion.isEmpty {
        out += "\n" + discussion(about.discussion) + "\n"
    }
    out += "\n" + usage(path, prefix: "USAGE: ") + "\n"

    let arguments = declaredInfo(path.last).filter { !$0.hidden }
    let positionals = arguments.filter { $0.kind == .positional }
    if !positionals.isEmpty {
        out += "\nARGUMENTS:\n" + positionals.map { row($0.label, $0.help) }.joined()
    }
    var options = arguments.filter { $0.kind != .positional }.map { row($0.label, describe($0)) }
    if path.root.about.version != nil { options.append(row("--version", "Show the version.")) }
    options.append(row("-h, --help", "Show help information."))
    out += "\nOPTIONS:\n" + options.joined()

    let subcommands = about.subcommands.filter { !$0.about.hidden }
    if !subcommands.isEmpty {
        out += "\nSUBCOMMANDS:\n" + subcommands.map { row($0.about.name, $0.about.abstract) }.joined()
        let below = path.commands.dropFirst().map { $0.about.name + " " }.joined()
        out += "\n  See '\(path.root.about.name) help \(below)<subcommand>' for detailed help.\n"
    }
    return out
}

/// `sagalane sagas list <db> [--state <state> ...] …` after `prefix`, wrapped with the
/// arguments aligned under the first.
func usage(_ path: CommandPath, prefix: String) -> String {
    let arguments = declaredInfo(path.last).filter { !$0.hidden }
    var tokens = arguments.map { argument -> String in
        let token = argument.label + (argument.repeats ? " ..." : "")
        return argument.isRequired ? token : "[\(token)]"
    }
    if tokens.isEmpty && !path.last.about.subcommands.isEmpty { tokens = ["<subcommand>"] }
    let head = prefix + path.words
    guard !tokens.isEmpty else { return head }
    let indent = head.count + 1 <= 40 ? head.count + 1 : 8
    let lines = wrapped([head] + tokens, first: lineWidth, rest: lineWidth - indent)
    return lines.joined(separator: "\n" + String(repeating: " ", count: indent))
}

/// What a usage error prints on standard error.
func errorText(_ error: UsageError) -> String {
    var out = "Error: \(error.message)\n"
    if let argument = error.argument {
        out += "Help:  \(argument.label)  \(argument.help)\n"
    }
    if let path = error.path {
        out += usage(path, prefix: "Usage: ") + "\n"
        out += "  See '\(path.words) --help' for more information.\n"
    }
    return out
}

/// An argument's help, with the values it allows.
private func describe(_ argument: ArgumentInfo) -> String {
    guard let choices = argument.choices else { return argument.help }
    return argument.help + " (values: \(choices.joined(separator: ", ")))"
}

/// `  label                   help…`, the help wrapped in its column; a label too wide for
/// the column has its help start on the next line.
private func row(_ label: String, _ help: String) -> String {
    let pad = String(repeating: " ", count: helpColumn)
    let lines = wrapped(words(help), first: lineWidth - helpColumn, rest: lineWidth - helpColumn)
    var out = "  " + label
    if label.count + 3 <= helpColumn {
        out += String(repeating: " ", count: helpColumn - 2 - label.count) + (lines.first ?? "") + "\n"
        for line in lines.dropFirst() { out += pad + line + "\n" }
    } else {
        out += "\n"
        for line in lines { out += pad + line + "\n" }
    }
    return out
}

/// Paragraphs wrapped. A line that starts with a space is an example command: a long one is
/// continued on the next line after a backslash, so that it still pastes into a shell.
private func discussion(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
        guard line.hasPrefix(" ") else {
            return wrapped(words(String(line)), first: lineWidth, rest: lineWidth).joined(separator: "\n")
        }
        guard line.count > lineWidth else { return String(line) }
        let indent = String(repeating: " ", count: line.prefix { $0 == " " }.count)
        let lines = wrapped(words(String(line)), first: lineWidth - indent.count - 2, rest: lineWidth - indent.count - 6)
        return indent + lines.joined(separator: " \\\n" + indent + "    ")
    }.joined(separator: "\n")
}

private func words(_ text: String) -> [String] {
    text.split(separator: " ").map(String.init)
}

/// `words` in lines of at most `first` columns, then `rest`; a word longer than a line has
/// a line of its own.
func wrapped(_ words: [String], first: Int, rest: Int) -> [String] {
    var lines: [String] = []
    var line = ""
    for word in words {
        let limit = lines.isEmpty ? first : rest
        if line.isEmpty {
            line = word
        } else if line.count + 1 + word.count <= limit {
            line += " " + word
        } else {
            lines.append(line)
            line = word
        }
    }
    if !line.isEmpty { lines.append(line) }
    return lines
}

/// The declared arguments of a command known only by its metatype.
func declaredInfo(_ command: any Command.Type) -> [ArgumentInfo] {
    func of<C: Command>(_: C.Type) -> [ArgumentInfo] { C.declarations.arguments }
    return of(command)
}
