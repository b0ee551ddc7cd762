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

/// A declared argument and how it stores a word of the command line in `Root`.
struct DeclaredArgument<Root> {
    var info: ArgumentInfo
    /// Parses `word` (ignored for a flag) into its property. Throws `ValidationError` with
    /// the value's own complaint, or `InvalidValue` when the word is not of the value's type.
    var apply: (inout Root, String) throws -> Void
}

/// A word that is not a value of the argument's type (not a number, not one of the choices).
struct InvalidValue: Error {}

/// What a command or a group takes, in the order help lists it, each bound to the property
/// the parser sets. A command's `declare` fills it:
///
///     static func declare(_ arguments: inout Declarations<Self>) {
///         arguments.group(\.log)
///         arguments.option("--limit", \.limit, valueName: "count", help: "…", transform: validLimit)
///     }
///
/// An option's default is its property's initial value; help says it in its text.
struct Declarations<Root> {
    private(set) var arguments: [DeclaredArgument<Root>] = []
    /// The groups' `validate`, then the command's own, in that order.
    fileprivate(set) var validators: [(Root) throws -> Void] = []

    private mutating func add(_ info: ArgumentInfo, _ apply: @escaping (inout Root, String) throws -> Void) {
        assert(info.kind == .positional || !arguments.contains { $0.info.name == info.name }, "\(info.name) is declared twice")
        arguments.append(DeclaredArgument(info: info, apply: apply))
    }

    // MARK: Positional arguments

    /// A positional argument the command needs.
    mutating func argument<Value: ArgumentValue>(_ key: WritableKeyPath<Root, Value>, valueName: String, help: String) {
        add(ArgumentInfo(kind: .positional, name: "", valueName: valueName, help: help, isRequired: true,
                         choices: Value.choices)) { root, word in
            root[keyPath: key] = try parsed(word, as: Value.self)
        }
    }

    /// A positional argument the command can go without (nil then).
    mutating func argument<Value: ArgumentValue>(_ key: WritableKeyPath<Root, Value?>, valueName: String, help: String) {
        add(ArgumentInfo(kind: .positional, name: "", valueName: valueName, help: help, choices: Value.choices)) { root, word in
            root[keyPath: key] = try parsed(word, as: Value.self)
        }
    }

    // MARK: Options

    /// `--name VALUE`, nil when absent; given twice, the last one counts.
    mutating func option<Value: ArgumentValue>(_ name: String, _ key: WritableKeyPath<Root, Value?>, valueName: String,
                                               help: String) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help, choices: Value.choices)) { root, word in
            root[keyPath: key] = try parsed(word, as: Value.self)
        }
    }

    /// `--name VALUE` read by `transform`, nil when absent.
    mutating func option<Value>(_ name: String, _ key: WritableKeyPath<Root, Value?>, valueName: String, help: String,
                                transform: @escaping (String) throws -> Value) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help)) { root, word in
            root[keyPath: key] = try transform(word)
        }
    }

    /// `--name VALUE`, the property's initial value when absent, or a usage error when
    /// `required` (the initial value is then a placeholder).
    mutating func option<Value: ArgumentValue>(_ name: String, _ key: WritableKeyPath<Root, Value>, valueName: String,
                                               help: String, required: Bool = false) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help, isRequired: required,
                         choices: Value.choices)) { root, word in
            root[keyPath: key] = try parsed(word, as: Value.self)
        }
    }

    /// `--name VALUE` read by `transform`, the property's initial value when absent.
    mutating func option<Value>(_ name: String, _ key: WritableKeyPath<Root, Value>, valueName: String, help: String,
                                transform: @escaping (String) throws -> Value) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help)) { root, word in
            root[keyPath: key] = try transform(word)
        }
    }

    /// `--name VALUE`, as often as the user likes: each adds a value, in order.
    mutating func option<Value: ArgumentValue>(_ name: String, _ key: WritableKeyPath<Root, [Value]>, valueName: String,
                                               help: String) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help, repeats: true,
                         choices: Value.choices)) { root, word in
            root[keyPath: key].append(try parsed(word, as: Value.self))
        }
    }

    /// `--name VALUE` read by `transform`, as often as the user likes.
    mutating func option<Value>(_ name: String, _ key: WritableKeyPath<Root, [Value]>, valueName: String, help: String,
                                transform: @escaping (String) throws -> Value) {
        add(ArgumentInfo(kind: .option, name: name, valueName: valueName, help: help, repeats: true)) { root, word in
            root[keyPath: key].append(try transform(word))
        }
    }

    // MARK: Flags and groups

    /// `--name` alone sets the property to true.
    mutating func flag(_ name: String, _ key: WritableKeyPath<Root, Bool>, help: String, hidden: Bool = false) {
        add(ArgumentInfo(kind: .flag, name: name, valueName: "", help: help, hidden: hidden)) { root, _ in
            root[keyPath: key] = true
        }
    }

    /// The arguments of a group, in its order, at this place; its `validate` runs before the
    /// command's.
    mutating func group<Group: ArgumentGroup>(_ key: WritableKeyPath<Root, Group>) {
        let inner = Group.declarations
        for argument in inner.arguments {
            let apply = argument.apply
            add(argument.info) { root, word in try apply(&root[keyPath: key], word) }
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
