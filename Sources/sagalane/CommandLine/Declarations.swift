/// One declared argument as help and error messages describe it.
struct ArgumentInfo {
    enum Kind {
        /// A word in its place (`<db>`, `<id>`).
        case positional
        /// `--name VALUE` or `--name=VALUE`.
        case option
        /// `--name` alone.
        case flag
    }

    var kind: Kind
    /// "--limit" for an option or a flag; empty for a positional argument.
    var name: String
    /// What help calls its value ("count" shows as `<count>`); empty for a flag.
    var valueName: String
    var help: String
    var isRequired = false
    /// Each occurrence adds a value (`--lane gpu=2 --lane cpu=8`).
    var repeats = false
    /// Accepted, but left out of help and usage.
    var hidden = false
    /// The only values allowed, when the value's type has such a list.
    var choices: [String]? = nil

    /// How help and errors name it: `<db>`, `--limit <count>`, `--dry-run`.
    var label: String {
        switch kind {
        case .positional: "<\(valueName)>"
        case .option: "\(name) <\(valueName)>"
        case .flag: name
        }
    }
}

/// A word that is not a value of the argument's type (not a number, not one of the choices).
struct InvalidValue: Error {}

/// What a command or a group takes, in the order help lists it, each with the closure that
/// stores its value. A command's `declare` fills it:
///
///     static func declare(_ arguments: inout Declarations<Self>) {
///         arguments.group(\.log)
///         arguments.option("--limit", valueName: "count", help: "…", transform: validLimit) { $0.limit = $1 }
///     }
///
/// An option's default is its property's initial value; help says it in its text. (Closures
/// rather than key paths for the values: each key path is made at run time, some 40,000
/// instructions apiece. A group keeps its key path: a command has a few at most.)
struct Declarations<Root> {
    /// What help and the parser know of each argument. (Apart from `setters`, so that most of
    /// the parser's work is on concrete types, without generic metadata to make at run time.)
    private(set) var arguments: [ArgumentInfo] = []
    /// For each argument, at the same index: parses a word (ignored for a flag) into its
    /// property. Throws `ValidationError` with the value's own complaint, or `InvalidValue`
    /// when the word is not of the value's type.
    private(set) var setters: [(inout Root, String) throws -> Void] = []
    /// The groups' `validate`, then the command's own, in that order.
    fileprivate(set) var validators: [(Root) throws -> Void] = []

    private mutating func add(_ info: ArgumentInfo, _ setter: @escaping (inout Root, String) throws -> Void) {
        assert(info.kind == .positional || !arguments.contains { $0.name == info.name }, "\(info.name) is declared twice")
        arguments.append(info)
        setters.append(setter)
    }

    // MARK: Positional arguments

    /// A word in its place, needed unless `required` is false; `set` stores its value.
    mutating func argument<Value: ArgumentValue>(valueName: String, help: String, required: Bool = true,
                                                 _ set: @escaping (inout Root, Value) -> Void) {
        add(ArgumentInfo(kind: .positional, name: "", valueName: valueName, help: help, isRequired: required,
                         choices: Value.choices)) { root, word in
            set(&root, try parsed(word, as: Value.self))
        }
    }

    // MARK: Options

    /// `--name VALUE`; `set` stores the value. Absent, the property keeps its initial value
    /// (a usage error when `required`, the initial value being a placeholder). Given twice,
    /// the last one counts, unless it `repeats`: then `set` adds each value in turn.
    mutating func option<Value: ArgumentValue>(_ name: String, valueName: String, help: String, required: Bool = false,
                                               repeats: Bool = false, _ set: @escaping (inout Root, Value) -> Void) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help, isRequired: required, repeats: repeats,
                         choices: Value.choices)) { root, word in
            set(&root, try parsed(word, as: Value.self))
        }
    }

    /// `--name VALUE` read by `transform`, which throws `ValidationError` for a value it
    /// refuses; otherwise as above.
    mutating func option<Value>(_ name: String, valueName: String, help: String, repeats: Bool = false,
                                transform: @escaping (String) throws -> Value, _ set: @escaping (inout Root, Value) -> Void) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help, repeats: repeats)) { root, word in
            set(&root, try transform(word))
        }
    }

    // MARK: Flags and groups

    /// `--name` alone; `set` records it.
    mutating func flag(_ name: String, help: String, hidden: Bool = false, _ set: @escaping (inout Root) -> Void) {
        add(ArgumentInfo(kind: .flag, name: name, valueName: "", help: help, hidden: hidden)) { root, _ in set(&root) }
    }

    /// The arguments of a group, in its order, at this place; its `validate` runs before the
    /// command's.
    mutating func group<Group: ArgumentGroup>(_ key: WritableKeyPath<Root, Group>) {
        let inner = Group.declarations
        for (info, setter) in zip(inner.arguments, inner.setters) {
            add(info) { root, word in try setter(&root[keyPath: key], word) }
        }
        for validate in inner.validators {
            validators.append { root in try validate(root[keyPath: key]) }
        }
    }
}

extension ArgumentGroup {
    /// What `declare` lists, with the group's own `validate` last.
    static var declarations: Declarations<Self> {
        var declarations = Declarations<Self>()
        declare(&declarations)
        declarations.validators.append { try $0.validate() }
        return declarations
    }
}

private func parsed<Value: ArgumentValue>(_ word: String, as: Value.Type) throws -> Value {
    guard let value = Value(argument: word) else { throw InvalidValue() }
    return value
}
