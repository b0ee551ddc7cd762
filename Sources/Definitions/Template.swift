import SagaLaneJSON
import SagaLaneSupport

/// A command written as data: a JSON value whose strings may refer to the saga's input, the
/// results of its earlier steps and the saga itself.
///
/// - `"${input}"`, `"${input.label}"`, `"${input.items.0}"`: the saga's input, or a member of it.
/// - `"${steps.spawn}"`, `"${steps.spawn.label}"`: the payload of the event that completed
///   the earlier step named `spawn`, or a member of it.
/// - `"${saga.id}"`, `"${saga.name}"`.
///
/// A string that is exactly one reference becomes the value referred to, whatever its type;
/// references inside longer text are spliced in as text (a string as itself, anything else as
/// its JSON). `$${` writes a literal `${`. Object names are never templates.
struct Template: Sendable {
    private let root: Node

    /// A value referred to that does not exist when the command is made.
    struct Missing: Error { let reference: String }

    indirect enum Node: Sendable {
        case literal(JSON)
        case reference(Reference)
        case text([Piece])
        case array([Node])
        case object([(String, Node)])
    }

    enum Piece: Sendable {
        case text(String)
        case reference(Reference)
    }

    struct Reference: Sendable {
        enum Root: Sendable { case input, step(Int), sagaID, sagaName }
        let root: Root
        let path: [String]
        /// As written, for messages: `input.label`.
        let source: String
    }

    /// What a template may refer to where it is written.
    struct Scope {
        /// The steps before this one, by name, in order.
        var earlierSteps: [String]
        /// The input's declared members; `nil`: the input is not declared, anything goes.
        var inputFields: [String]?
    }

    /// Reads `json` as a template; each reference that cannot work is reported with the path
    /// of its string below `json` (`""` for `json` itself, `.cmd`, `[2]`) and why.
    init(_ json: JSON, scope: Scope, report: (String, String) -> Void) {
        root = Template.node(json, at: "", scope: scope, report: report)
    }

    /// Whether the template is a plain value with no reference in it.
    var isLiteral: Bool { if case .literal = root { return true } else { return false } }

    private static func node(_ json: JSON, at path: String, scope: Scope, report: (String, String) -> Void) -> Node {
        switch json {
        case .string(let s):
            let pieces = parse(s, at: path, scope: scope, report: report)
            if pieces.count == 1, case .reference(let r) = pieces[0] { return .reference(r) }
            if pieces.allSatisfy({ if case .text = $0 { return true } else { return false } }) {
                return .literal(.string(pieces.map { if case .text(let t) = $0 { return t } else { return "" } }.joined()))
            }
            return .text(pieces)
        case .array(let elements):
            let nodes = elements.enumerated().map { node($1, at: path + "[\($0)]", scope: scope, report: report) }
            if nodes.allSatisfy({ if case .literal = $0 { return true } else { return false } }) { return .literal(json) }
            return .array(nodes)
        case .object(let members):
            let nodes = members.map { (key, value) in (key, node(value, at: path + "." + key, scope: scope, report: report)) }
            if nodes.allSatisfy({ if case .literal = $0.1 { return true } else { return false } }) { return .literal(json) }
            return .object(nodes)
        default:
            return .literal(json)
        }
    }

    private static func parse(_ s: String, at path: String, scope: Scope, report: (String, String) -> Void) -> [Piece] {
        var pieces: [Piece] = []
        var text: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "$"), i + 2 < bytes.count, bytes[i + 1] == UInt8(ascii: "$"), bytes[i + 2] == UInt8(ascii: "{") {
                text += "${".utf8
                i += 3
            } else if bytes[i] == UInt8(ascii: "$"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "{") {
                guard let close = bytes[(i + 2)...].firstIndex(of: UInt8(ascii: "}")) else {
                    report(path, "\"${\" is not closed by \"}\" (write \"$${\" for a literal \"${\")")
                    return [.text(s)]
                }
                if !text.isEmpty { pieces.append(.text(String(decoding: text, as: UTF8.self))) }
                text = []
                let source = String(decoding: bytes[(i + 2)..<close], as: UTF8.self)
                if let reference = reference(source, scope: scope, path: path, report: report) {
                    pieces.append(.reference(reference))
                }
                i = close + 1
            } else {
                text.append(bytes[i])
                i += 1
            }
        }
        if !text.isEmpty || pieces.isEmpty { pieces.append(.text(String(decoding: text, as: UTF8.self))) }
        return pieces
    }

    private static func reference(_ source: String, scope: Scope, path: String, report: (String, String) -> Void) -> Reference? {
        let parts = source.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.contains(where: \.isEmpty) {
            report(path, "\"${\(source)}\" has an empty part")
            return nil
        }
        switch parts[0] {
        case "input":
            if let fields = scope.inputFields, parts.count > 1, !fields.contains(where: { $0.isExactly(parts[1]) }) {
                report(path, "\"${\(source)}\" refers to \"\(parts[1])\", which is not among the saga's input fields (\(fields.joined(separator: ", ")))")
                return nil
            }
            return Reference(root: .input, path: Array(parts.dropFirst()), source: source)
        case "steps":
            guard parts.count >= 2 else {
                report(path, "\"${steps}\" must name a step: \"${steps.NAME}\" or \"${steps.NAME.FIELD}\"")
                return nil
            }
            guard let index = scope.earlierSteps.firstIndex(where: { $0.isExactly(parts[1]) }) else {
                let known = scope.earlierSteps.isEmpty ? "there is no earlier step" : "earlier steps: " + scope.earlierSteps.joined(separator: ", ")
                report(path, "\"${\(source)}\" refers to step \"\(parts[1])\", which is not an earlier step of this saga (\(known))")
                return nil
            }
            return Reference(root: .step(index), path: Array(parts.dropFirst(2)), source: source)
        case "saga":
            if parts.count == 2 && parts[1] == "id" { return Reference(root: .sagaID, path: [], source: source) }
            if parts.count == 2 && parts[1] == "name" { return Reference(root: .sagaName, path: [], source: source) }
            report(path, "\"${\(source)}\": a saga offers only \"${saga.id}\" and \"${saga.name}\"")
            return nil
        default:
            report(path, "\"${\(source)}\" refers to \"\(parts[0])\"; a template may refer to input, steps.NAME and saga")
            return nil
        }
    }

    /// The command for a saga with `input`, the results of its completed steps so far, its id
    /// and its type's name.
    func render(input: JSON, results: [JSON], sagaID: UInt64, sagaName: String) throws(Missing) -> JSON {
        try Template.render(root, input: input, results: results, sagaID: sagaID, sagaName: sagaName)
    }

    private static func render(_ node: Node, input: JSON, results: [JSON], sagaID: UInt64, sagaName: String) throws(Missing) -> JSON {
        func resolve(_ r: Reference) throws(Missing) -> JSON {
            var value: JSON
            switch r.root {
            case .input: value = input
            case .step(let index):
                guard index < results.count else { throw Missing(reference: r.source) }
                value = results[index]
            case .sagaID: value = sagaID <= UInt64(Int64.max) ? .int(Int64(sagaID)) : .double(Double(sagaID))
            case .sagaName: value = .string(sagaName)
            }
            for part in r.path {
                if let member = value[part] {
                    value = member
                } else if let index = Int(part), let element = value[index] {
                    value = element
                } else {
                    throw Missing(reference: r.source)
                }
            }
            return value
        }
        switch node {
        case .literal(let json): return json
        case .reference(let r): return try resolve(r)
        case .text(let pieces):
            var out = ""
            for piece in pieces {
                switch piece {
                case .text(let t): out += t
                case .reference(let r):
                    let value = try resolve(r)
                    if case .string(let s) = value { out += s } else { out += value.serialized }
                }
            }
            return .string(out)
        case .array(let nodes):
            var elements: [JSON] = []
            elements.reserveCapacity(nodes.count)
            for n in nodes { elements.append(try render(n, input: input, results: results, sagaID: sagaID, sagaName: sagaName)) }
            return .array(elements)
        case .object(let members):
            var pairs: [(String, JSON)] = []
            pairs.reserveCapacity(members.count)
            for (key, n) in members { pairs.append((key, try render(n, input: input, results: results, sagaID: sagaID, sagaName: sagaName))) }
            return .object(JSONObject(pairs))
        }
    }
}
