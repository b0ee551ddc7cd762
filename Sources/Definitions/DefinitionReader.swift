import SagaLaneCoordinator
import SagaLaneJSON
import SagaLaneSupport

/// Turns a parsed saga file into definitions, collecting every problem with its place
/// instead of stopping at the first.
struct DefinitionReader {
    let locator: SourceLocator
    private(set) var problems: [SagaFileError.Problem] = []

    init(locator: SourceLocator) { self.locator = locator }

    /// The longest timeout a file may give: a year (timers far beyond overflow the clocks).
    static let maxTimeoutMilliseconds: Int64 = 365 * 24 * 3_600_000

    mutating func problem(_ path: String, _ context: String, _ message: String) {
        let (line, column) = locator.location(of: path)
        problems.append(.init(line: line, column: column, context: context, message: message))
    }

    /// Reports members of `object` at `path` that are not in `known`.
    mutating func checkMembers(_ object: JSONObject, at path: String, known: [String], context: String, what: String) {
        for (key, _) in object where !known.contains(where: { $0.isExactly(key) }) {
            problem(join(path, key), context, "unknown field \"\(key)\" in \(what) (known: \(known.joined(separator: ", ")))")
        }
    }

    func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }

    mutating func file(_ json: JSON) -> [SagaDefinition] {
        guard let object = json.objectValue else {
            problem("", "", "a saga file is a JSON object: {\"version\": 1, \"sagas\": [...]}")
            return []
        }
        checkMembers(object, at: "", known: ["version", "sagas"], context: "", what: "the file")
        if let version = object["version"] {
            if version.int64Value != SagaFile.version {
                problem("version", "", "field \"version\": this build reads version \(SagaFile.version), the file says \(version.serialized)")
            }
        }
        guard let sagas = object["sagas"] else {
            problem("", "", "the file has no \"sagas\" (an array of saga definitions)")
            return []
        }
        guard let list = sagas.arrayValue else {
            problem("sagas", "", "field \"sagas\" must be an array of saga definitions")
            return []
        }
        if list.isEmpty { problem("sagas", "", "field \"sagas\" is empty: a saga file defines at least one saga") }
        var definitions: [SagaDefinition] = []
        var names: [ExactName: Int] = [:]
        for (i, element) in list.enumerated() {
            let path = "sagas[\(i)]"
            let definition = saga(element, at: path, index: i)
            // Checked for every named saga, valid or not, so that one pass finds it all.
            if let name = element["name"]?.stringValue, !name.isEmpty {
                if let first = names[ExactName(name)] {
                    problem(path + ".name", "saga \"\(name)\"", "the name is already used by saga \(first + 1) of the file")
                } else {
                    names[ExactName(name)] = i
                }
            }
            if let definition { definitions.append(definition) }
        }
        return definitions
    }

    private mutating func saga(_ json: JSON, at path: String, index: Int) -> SagaDefinition? {
        guard let object = json.objectValue else {
            problem(path, "saga \(index + 1)", "a saga definition must be a JSON object")
            return nil
        }
        let name = object["name"]?.stringValue ?? ""
        let context = name.isEmpty ? "saga \(index + 1)" : "saga \"\(name)\""
        checkMembers(object, at: path, known: ["name", "description", "trigger", "input", "steps", "timeout_ms", "recovery",
                                               "compensation_timeout_ms"],
                     context: context, what: "a saga")
        var ok = true
        if name.isEmpty {
            problem(path + (object["name"] == nil ? "" : ".name"), context, "field \"name\" must be a non-empty string")
            ok = false
        }
        var summary: String?
        if let value = object["description"] {
            summary = value.stringValue
            if summary == nil { problem(path + ".description", context, "field \"description\" must be a string") }
        }
        let inputFields = names(object["input"], at: path + ".input", context: context, field: "input", allowEmpty: true)
        var trigger: TriggerDefinition?
        if let value = object["trigger"] {
            trigger = self.trigger(value, at: path + ".trigger", context: context)
            if trigger == nil { ok = false }
        }
        let timeout = milliseconds(object["timeout_ms"], at: path + ".timeout_ms", context: context, field: "timeout_ms")
        let compensationTimeout = milliseconds(object["compensation_timeout_ms"], at: path + ".compensation_timeout_ms",
                                               context: context, field: "compensation_timeout_ms")
        var recovery = RecoveryPolicy.markFailed
        if let value = object["recovery"] {
            if let policy = value.stringValue.flatMap(RecoveryPolicy.init(rawValue:)) {
                recovery = policy
            } else {
                problem(path + ".recovery", context, "field \"recovery\" must be \"mark_failed\", \"compensate\" or \"resume\"")
                ok = false
            }
        }
        var steps: [StepDefinition] = []
        if let value = object["steps"] {
            if let list = value.arrayValue, !list.isEmpty {
                for (i, element) in list.enumerated() {
                    if let step = step(element, at: "\(path).steps[\(i)]", index: i, saga: context, earlier: steps,
                                       inputFields: inputFields ?? nil) {
                        steps.append(step)
                    } else {
                        ok = false
                    }
                }
            } else {
                problem(path + ".steps", context, "field \"steps\" must be a non-empty array of steps")
                ok = false
            }
        } else {
            problem(path, context, "the saga has no \"steps\"")
            ok = false
        }
        guard ok, let inputFields, let timeout, let compensationTimeout else { return nil }
        return SagaDefinition(name: name, summary: summary, triggerDefinition: trigger, inputFields: inputFields,
                              steps: steps, timeout: timeout, recovery: recovery, compensationTimeout: compensationTimeout)
    }

    private mutating func trigger(_ json: JSON, at path: String, context: String) -> TriggerDefinition? {
        guard let object = json.objectValue else {
            problem(path, context, "field \"trigger\" must be an object: {\"event\": TYPE, \"when\": {...}, \"unless\": {...}}")
            return nil
        }
        checkMembers(object, at: path, known: ["event", "when", "unless"], context: context + ", trigger", what: "a trigger")
        guard let event = object["event"]?.stringValue, !event.isEmpty else {
            problem(path + (object["event"] == nil ? "" : ".event"), context + ", trigger", "field \"event\" must be a non-empty event type")
            return nil
        }
        let when = conditions(object["when"], at: path + ".when", context: context + ", trigger", field: "when")
        let unless = conditions(object["unless"], at: path + ".unless", context: context + ", trigger", field: "unless")
        guard let when, let unless else { return nil }
        return TriggerDefinition(eventType: event, when: when, unless: unless)
    }

    /// `{"crash_detected": true, "window.kind": "pool"}`: payload members by dotted path, and values.
    private mutating func conditions(_ json: JSON?, at path: String, context: String, field: String) -> [TriggerDefinition.Condition]? {
        guard let json else { return [] }
        guard let object = json.objectValue else {
            problem(path, context, "field \"\(field)\" must be an object of payload members and the values they must\(field == "unless" ? " not" : "") equal")
            return nil
        }
        var out: [TriggerDefinition.Condition] = []
        for (key, value) in object {
            let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            if parts.contains(where: \.isEmpty) {
                problem(join(path, key), context, "field \"\(field)\": \"\(key)\" is not a member path (names joined by dots)")
                return nil
            }
            out.append(.init(path: parts, value: value))
        }
        return out
    }

    private mutating func step(_ json: JSON, at path: String, index: Int, saga: String, earlier: [StepDefinition],
                               inputFields: [String]?) -> StepDefinition? {
        guard let object = json.objectValue else {
            problem(path, "\(saga), step \(index + 1)", "a step must be a JSON object")
            return nil
        }
        let name = object["name"]?.stringValue ?? "\(index + 1)"
        let context = object["name"] == nil ? "\(saga), step \(index + 1)" : "\(saga), step \(index + 1) (\"\(name)\")"
        checkMembers(object, at: path, known: ["name", "target", "command", "completes_on", "fails_on", "compensation", "timeout_ms",
                                               "idempotent", "retry"], context: context, what: "a step")
        var ok = true
        if let value = object["name"] {
            if value.stringValue?.isEmpty ?? true {
                problem(path + ".name", context, "field \"name\" must be a non-empty string")
                ok = false
            } else if name.utf8.contains(UInt8(ascii: ".")) {
                problem(path + ".name", context, "field \"name\" must not contain \".\" (templates refer to ${steps.NAME.FIELD})")
                ok = false
            } else if earlier.contains(where: { $0.name.isExactly(name) }) {
                problem(path + ".name", context, "the name \"\(name)\" is already used by an earlier step")
                ok = false
            }
        }
        let target = object["target"]?.stringValue ?? ""
        if target.isEmpty {
            problem(path + (object["target"] == nil ? "" : ".target"), context,
                    "field \"target\" must be a non-empty string: a target a host registers, \"lane:NAME\" or \"self\"")
            ok = false
        }
        var command: Template?
        if let value = object["command"] {
            var templateProblems: [(String, String)] = []
            let scope = Template.Scope(earlierSteps: earlier.map(\.name), inputFields: inputFields)
            command = Template(value, scope: scope) { templateProblems.append(($0, $1)) }
            for (sub, message) in templateProblems {
                let subPath = path + ".command" + sub
                problem(subPath, context, "field \"command\"\(sub.isEmpty ? "" : " at \"\(sub.hasPrefix(".") ? String(sub.dropFirst()) : sub)\""): \(message)")
                ok = false
            }
        } else {
            problem(path, context, "the step has no \"command\"")
            ok = false
        }
        let completes = eventTypes(object["completes_on"], at: path + ".completes_on", context: context, field: "completes_on")
        if object["completes_on"] == nil {
            problem(path, context, "the step has no \"completes_on\": the event type (or types) tagged with the saga's id that complete it")
            ok = false
        }
        let fails = eventTypes(object["fails_on"], at: path + ".fails_on", context: context, field: "fails_on")
        if let completes, let fails, let overlap = completes.first(where: { c in fails.contains { $0.isExactly(c) } }) {
            problem(path + ".fails_on", context, "\"\(overlap)\" both completes and fails the step")
            ok = false
        }
        let scope = Template.Scope(earlierSteps: earlier.map(\.name), inputFields: inputFields)
        let stepTimeout = milliseconds(object["timeout_ms"], at: path + ".timeout_ms", context: context, field: "timeout_ms")
        var idempotent = false
        if let value = object["idempotent"] {
            if let flag = value.boolValue { idempotent = flag } else {
                problem(path + ".idempotent", context, "field \"idempotent\" must be true or false")
                ok = false
            }
        }
        let retry = self.retry(object["retry"], at: path + ".retry", context: context)
        if object["retry"] != nil && !idempotent {
            problem(path + ".retry", context, "a step with \"retry\" must be declared \"idempotent\": true (its target must recognise a repeat by saga id and step)")
            ok = false
        }
        let compensation = self.compensation(object["compensation"], at: path + ".compensation", context: context, scope: scope)
        guard ok, let command, let completes, !completes.isEmpty, let fails, let stepTimeout, let retry, let compensation else { return nil }
        return StepDefinition(name: name, target: target, command: command, completesOn: completes, failsOn: fails,
                              compensation: compensation, timeout: stepTimeout, idempotent: idempotent, retry: retry)
    }

    /// `{"command", "target", "timeout_ms", "retry"}`: what undoes a step. `.some(nil)` when absent.
    private mutating func compensation(_ json: JSON?, at path: String, context: String,
                                       scope: Template.Scope) -> CompensationDefinition?? {
        guard let json else { return .some(nil) }
        let context = context + ", compensation"
        guard let object = json.objectValue else {
            problem(path, context, "field \"compensation\" must be an object: {\"command\": ..., \"target\": ..., \"timeout_ms\": ..., \"retry\": {...}}")
            return nil
        }
        checkMembers(object, at: path, known: ["command", "target", "timeout_ms", "retry"], context: context, what: "a compensation")
        var ok = true
        var target: String?
        if let value = object["target"] {
            if let name = value.stringValue, !name.isEmpty { target = name } else {
                problem(path + ".target", context, "field \"target\" must be a non-empty string (leave it out for the step's own target)")
                ok = false
            }
        }
        var command: Template?
        if let value = object["command"] {
            var templateProblems: [(String, String)] = []
            command = Template(value, scope: scope) { templateProblems.append(($0, $1)) }
            for (sub, message) in templateProblems {
                problem(path + ".command" + sub, context, "field \"command\": \(message)")
                ok = false
            }
        } else {
            problem(path, context, "the compensation has no \"command\"")
            ok = false
        }
        let timeout = milliseconds(object["timeout_ms"], at: path + ".timeout_ms", context: context, field: "timeout_ms")
        let retry = self.retry(object["retry"], at: path + ".retry", context: context)
        guard ok, let command, let timeout, let retry else { return nil }
        return .some(CompensationDefinition(target: target, command: command, timeout: timeout, retry: retry))
    }

    /// `{"max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier", "jitter"}`, each
    /// optional. `.some(nil)` when absent.
    private mutating func retry(_ json: JSON?, at path: String, context: String) -> RetryPolicy?? {
        guard let json else { return .some(nil) }
        guard let object = json.objectValue else {
            problem(path, context, "field \"retry\" must be an object: {\"max_attempts\": 3, \"initial_backoff_ms\": 100, ...}")
            return nil
        }
        checkMembers(object, at: path, known: ["max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier", "jitter"],
                     context: context + ", retry", what: "a retry policy")
        do {
            return .some(try RetryPolicy(json: json))
        } catch {
            // The policy's own check names the member; place it on the member it names.
            let member = ["max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier", "jitter"]
                .first { error.message.containsExactly("\"\($0)\"") }
            problem(member.map { path + "." + $0 } ?? path, context + ", retry", error.message)
            return nil
        }
    }

    /// A string or an array of strings.
    private mutating func eventTypes(_ json: JSON?, at path: String, context: String, field: String) -> [String]? {
        guard let json else { return [] }
        if let one = json.stringValue, !one.isEmpty { return [one] }
        return names(json, at: path, context: context, field: field, allowEmpty: false) ?? nil
    }

    /// An array of distinct non-empty strings; `.some(nil)` when absent, `nil` when invalid.
    private mutating func names(_ json: JSON?, at path: String, context: String, field: String, allowEmpty: Bool) -> [String]?? {
        guard let json else { return .some(nil) }
        guard let list = json.arrayValue, allowEmpty || !list.isEmpty else {
            problem(path, context, "field \"\(field)\" must be \(allowEmpty ? "" : "a non-empty string or ")an array of non-empty strings")
            return nil
        }
        var out: [String] = []
        for (i, element) in list.enumerated() {
            guard let s = element.stringValue, !s.isEmpty else {
                problem("\(path)[\(i)]", context, "field \"\(field)\": element \(i + 1) must be a non-empty string")
                return nil
            }
            if out.contains(where: { $0.isExactly(s) }) {
                problem("\(path)[\(i)]", context, "field \"\(field)\": \"\(s)\" is listed twice")
                return nil
            }
            out.append(s)
        }
        return .some(out)
    }

    /// A positive whole number of milliseconds up to a year; `.some(nil)` when absent.
    private mutating func milliseconds(_ json: JSON?, at path: String, context: String, field: String) -> Duration?? {
        guard let json else { return .some(nil) }
        guard let ms = json.int64Value, ms > 0, ms <= DefinitionReader.maxTimeoutMilliseconds else {
            problem(path, context, "field \"\(field)\" must be a whole number of milliseconds from 1 to \(DefinitionReader.maxTimeoutMilliseconds) (a year)")
            return nil
        }
        return .some(.milliseconds(ms))
    }
}
