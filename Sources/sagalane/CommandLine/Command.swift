// The command line's own small parser: commands are plain structs that declare their
// positional arguments, options and flags once (Declarations.swift); the parser
// (Parser.swift) and the help (Help.swift) both read that one declaration, so what --help
// says is what the parser takes. It uses no reflection and no Foundation: the binary starts
// by parsing only the command it runs.

/// Arguments that several commands share (the log's path, --format, the time filters): a
/// struct whose properties the parser sets from what `declare` lists.
protocol ArgumentGroup {
    /// Every property at its default; a required argument's placeholder is replaced before
    /// the command sees it.
    init()
    /// Lists the group's arguments, in the order help shows them.
    static func declare(_ arguments: inout Declarations<Self>)
    /// Checks the arguments together once all are read; a `ValidationError` is a usage error.
    func validate() throws
}

extension ArgumentGroup {
    func validate() throws {}
}

/// A command of the tool: its arguments, what help says of it, and what it does. (Its type
/// is Sendable, so that a table of commands and a usage error naming one are.)
protocol Command: ArgumentGroup, SendableMetatype {
    static var about: CommandInfo { get }
    /// Does the command's work. A `CommandFailure` ends the process with its status; a
    /// `ValidationError` is a usage error (status 2, with the command's usage line).
    func run() async throws
}

/// What help says of a command, and the commands under it.
struct CommandInfo: Sendable {
    /// The word that selects it on the command line.
    var name: String
    /// One line, for OVERVIEW and for its parent's list of subcommands.
    var abstract: String
    /// Paragraphs after the overview. A line that starts with a space (an example) is
    /// printed as it is; any other is wrapped.
    var discussion: String = ""
    /// What `--version` prints (the root's; every command answers --version with it).
    var version: String? = nil
    /// Hidden commands work but are not listed in their parent's help.
    var hidden = false
    var subcommands: [any Command.Type] = []
}

/// A value that does not suit the command: exit status 2 with the command's usage. Thrown
/// by a value's parser, by `validate`, or by `run` itself.
struct ValidationError: Error, CustomStringConvertible {
    var message: String

    init(_ message: String) { self.message = message }

    var description: String { message }
}

/// A type the parser reads from one word of the command line by itself.
protocol ArgumentValue {
    /// Nil when `argument` is not a value of the type (the parser says which word and where).
    init?(argument: String)
    /// The only words allowed, when there is such a list: help shows them, and an error lists them.
    static var choices: [String]? { get }
}

extension ArgumentValue {
    static var choices: [String]? { nil }
}

extension String: ArgumentValue {
    init?(argument: String) { self = argument }
}

extension Int: ArgumentValue {
    init?(argument: String) { self.init(argument, radix: 10) }
}

extension UInt64: ArgumentValue {
    init?(argument: String) { self.init(argument, radix: 10) }
}

extension UInt32: ArgumentValue {
    init?(argument: String) { self.init(argument, radix: 10) }
}

/// An enumeration whose raw values are its words (as --format's table, json and jsonl).
protocol ArgumentChoice: ArgumentValue, CaseIterable, RawRepresentable where RawValue == String {}

extension ArgumentChoice {
    init?(argument: String) { self.init(rawValue: argument) }
    static var choices: [String]? { allCases.map(\.rawValue) }
}
