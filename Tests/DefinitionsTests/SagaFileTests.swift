import SagaLaneCoordinator
import SagaLaneJSON
import SagaLaneSupport
import Testing
@testable import SagaLaneDefinitions

/// The seed's two sagas, as the example file writes them.
private let seedFile: String = {
    // #filePath is <repo>/Tests/DefinitionsTests/SagaFileTests.swift.
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/") + "/examples/sagas/terminal-pool.json"
}()

/// The problems loading `text` reports, as `LINE:COLUMN: message` (without the file name).
private func problems(_ text: String) -> [String] {
    do {
        _ = try SagaFile(text: text)
        return []
    } catch {
        return error.problems.map { "\($0.line):\($0.column): \($0.description)" }
    }
}

/// A one-saga file around `saga`'s members.
private func file(_ saga: String) -> String { "{\"version\": 1, \"sagas\": [{\(saga)}]}" }

private let okStep = #"{"target": "host", "command": {"cmd": "go"}, "completes_on": "Went"}"#

@Suite struct SagaFileTests {
    @Test func theSeedSagasLoad() throws {
        let file = try SagaFile(contentsOf: seedFile)
        #expect(file.definitions.map(\.name) == ["pool_respawn_on_promote", "window_cleanup_cascade"])
        #expect(file.triggers.map(\.eventType) == ["PoolWindowPromoted", "WindowClosed"])
        let cleanup = file.definitions[1]
        #expect(cleanup.steps.map(\.name) == ["reap", "drain"])
        #expect(cleanup.steps[1].completesOn == ["PoolDrained", "PoolNotLast"])
        #expect(cleanup.timeout == .seconds(30))
        // Crash-flagged closes start nothing; clean ones, flagged or not, do.
        #expect(file.triggers[1].matches(Event(type: "WindowClosed", payload: ["label": "a", "crash_detected": true])) == false)
        #expect(file.triggers[1].matches(Event(type: "WindowClosed", payload: ["label": "a", "crash_detected": false])))
        #expect(file.triggers[1].matches(Event(type: "WindowClosed", payload: ["label": "a"])))
        #expect(file.triggers[0].matches(Event(type: "PoolWindowPromoted", sagaID: nil, payload: [:])))
    }

    @Test func theTriggerKeepsOnlyTheDeclaredInputFields() throws {
        let file = try SagaFile(text: #"{"sagas": [{"name": "s", "trigger": {"event": "E", "when": {"kind.name": "pool"}}, "input": ["label", "kind"], "steps": [\#(okStep)]}]}"#)
        let trigger = try #require(file.triggers.first)
        let event = Event(type: "E", payload: ["label": "x", "kind": ["name": "pool"], "secret": 1])
        #expect(trigger.matches(event))
        #expect(trigger.input(event) == ["label": "x", "kind": ["name": "pool"]])
        #expect(!trigger.matches(Event(type: "E", payload: ["kind": ["name": "other"]])))
        #expect(!trigger.matches(Event(type: "E", payload: ["label": "x"])))
    }

    /// Each mistake is named with its place, its saga and step, and what to write instead.
    @Test(arguments: [
        ("[]", "1:1: a saga file is a JSON object"),
        (#"{"sagas": [], "extra": 1}"#, "1:24: unknown field \"extra\" in the file"),
        (#"{"sagas": []}"#, "1:11: field \"sagas\" is empty"),
        (#"{"version": 2, "sagas": [{}]}"#, "1:13: field \"version\": this build reads version 1, the file says 2"),
        (#"{"version": 1}"#, "1:1: the file has no \"sagas\""),
        (#"{"sagas": {}}"#, "1:11: field \"sagas\" must be an array"),
        (#"{"sagas": [3]}"#, "1:12: saga 1: a saga definition must be a JSON object"),
        (file(#""steps": [\#(okStep)]"#), "1:26: saga 1: field \"name\" must be a non-empty string"),
        (file(#""name": "", "steps": [\#(okStep)]"#), "1:35: saga 1: field \"name\" must be a non-empty string"),
        (file(#""name": "s""#), "1:26: saga \"s\": the saga has no \"steps\""),
        (file(#""name": "s", "steps": []"#), "1:49: saga \"s\": field \"steps\" must be a non-empty array"),
        (file(#""name": "s", "colour": 1, "steps": [\#(okStep)]"#), "1:50: saga \"s\": unknown field \"colour\" in a saga"),
        (file(#""name": "s", "description": 7, "steps": [\#(okStep)]"#), "1:55: saga \"s\": field \"description\" must be a string"),
        (file(#""name": "s", "timeout_ms": 0, "steps": [\#(okStep)]"#), "1:54: saga \"s\": field \"timeout_ms\" must be a whole number of milliseconds"),
        (file(#""name": "s", "timeout_ms": 1.5, "steps": [\#(okStep)]"#), "1:54: saga \"s\": field \"timeout_ms\" must be a whole number"),
        (file(#""name": "s", "input": "label", "steps": [\#(okStep)]"#), "1:49: saga \"s\": field \"input\" must be an array of non-empty strings"),
        (file(#""name": "s", "input": ["a", "a"], "steps": [\#(okStep)]"#), "1:55: saga \"s\": field \"input\": \"a\" is listed twice"),
        (file(#""name": "s", "trigger": "E", "steps": [\#(okStep)]"#), "1:51: saga \"s\": field \"trigger\" must be an object"),
        (file(#""name": "s", "trigger": {}, "steps": [\#(okStep)]"#), "1:51: saga \"s\", trigger: field \"event\" must be a non-empty event type"),
        (file(#""name": "s", "trigger": {"event": "E", "when": []}, "steps": [\#(okStep)]"#), "1:74: saga \"s\", trigger: field \"when\" must be an object"),
        (file(#""name": "s", "trigger": {"event": "E", "unless": {"a..b": 1}}, "steps": [\#(okStep)]"#), "1:85: saga \"s\", trigger: field \"unless\": \"a..b\" is not a member path"),
        (file(#""name": "s", "trigger": {"event": "E", "if": 1}, "steps": [\#(okStep)]"#), "1:72: saga \"s\", trigger: unknown field \"if\" in a trigger"),
        (file(#""name": "s", "steps": [7]"#), "1:50: saga \"s\", step 1: a step must be a JSON object"),
        (file(#""name": "s", "steps": [{"command": 1, "completes_on": "E"}]"#), "1:50: saga \"s\", step 1: field \"target\" must be a non-empty string"),
        (file(#""name": "s", "steps": [{"target": "h", "completes_on": "E"}]"#), "1:50: saga \"s\", step 1: the step has no \"command\""),
        (file(#""name": "s", "steps": [{"target": "h", "command": 1}]"#), "1:50: saga \"s\", step 1: the step has no \"completes_on\""),
        (file(#""name": "s", "steps": [{"target": "h", "command": 1, "completes_on": []}]"#), "1:96: saga \"s\", step 1: field \"completes_on\" must be a non-empty string or an array"),
        (file(#""name": "s", "steps": [{"target": "h", "command": 1, "completes_on": "E", "fails_on": ["E"]}]"#), "1:113: saga \"s\", step 1: \"E\" both completes and fails the step"),
        (file(#""name": "s", "steps": [{"name": "a.b", "target": "h", "command": 1, "completes_on": "E"}]"#), "1:59: saga \"s\", step 1 (\"a.b\"): field \"name\" must not contain \".\""),
        (file(#""name": "s", "steps": [\#(okStep), {"name": "1", "target": "h", "command": 1, "completes_on": "E"}]"#), "saga \"s\", step 2 (\"1\"): the name \"1\" is already used by an earlier step"),
        (file(#""name": "s", "steps": [{"target": "h", "command": 1, "completes_on": "E", "wait": 1}]"#), "saga \"s\", step 1: unknown field \"wait\" in a step"),
        (file(#""name": "s", "steps": [{"target": "h", "command": {"a": "${input.x"}, "completes_on": "E"}]"#), "1:83: saga \"s\", step 1: field \"command\" at \"a\": \"${\" is not closed by \"}\""),
        (file(#""name": "s", "steps": [{"target": "h", "command": "${nothing}", "completes_on": "E"}]"#), "1:77: saga \"s\", step 1: field \"command\": \"${nothing}\" refers to \"nothing\""),
        (file(#""name": "s", "steps": [{"target": "h", "command": ["${steps.later}"], "completes_on": "E"}]"#), "1:78: saga \"s\", step 1: field \"command\" at \"[0]\": \"${steps.later}\" refers to step \"later\", which is not an earlier step of this saga (there is no earlier step)"),
        (file(#""name": "s", "input": ["a"], "steps": [{"target": "h", "command": "${input.b}", "completes_on": "E"}]"#), "\"${input.b}\" refers to \"b\", which is not among the saga's input fields (a)"),
        (file(#""name": "s", "steps": [{"target": "h", "command": "${saga.owner}", "completes_on": "E"}]"#), "a saga offers only \"${saga.id}\" and \"${saga.name}\""),
        (file(#""name": "s", "steps": [{"target": "h", "command": "${input..x}", "completes_on": "E"}]"#), "\"${input..x}\" has an empty part"),
        (#"{"sagas": [{"name": "s", "steps": [\#(okStep)]}, {"name": "s", "steps": [\#(okStep)]}]}"#, "saga \"s\": the name is already used by saga 1 of the file"),
        ("{\"sagas\": [1,]}", "1:14: not valid JSON"),
    ])
    func eachMistakeIsNamedWithItsPlace(text: String, expected: String) {
        let found = problems(text)
        #expect(found.contains { $0.contains(expected) }, "expected a problem containing \(expected), got \(found)")
    }

    /// Compensations, retries, step timeouts and recovery policies are read into the saga type
    /// and the steps it issues.
    @Test func compensationsRetriesTimeoutsAndPoliciesAreRead() throws {
        let file = try SagaFile(text: """
        {"sagas": [{"name": "order", "recovery": "resume", "compensation_timeout_ms": 9000, "input": ["id"],
          "steps": [
            {"name": "reserve", "target": "stock", "command": {"op": "reserve", "order": "${input.id}"}, "completes_on": "Reserved",
             "compensation": {"command": {"op": "release", "order": "${input.id}"}, "timeout_ms": 2000, "retry": {"max_attempts": 2}}},
            {"name": "charge", "target": "billing", "command": {"op": "charge"}, "completes_on": "Charged", "timeout_ms": 1500,
             "idempotent": true, "retry": {"max_attempts": 4, "initial_backoff_ms": 50, "max_backoff_ms": 400, "multiplier": 3, "jitter": 0},
             "compensation": {"target": "refunds", "command": {"op": "refund", "reservation": "${steps.reserve.reservation}"}}}
          ]}]}
        """)
        let order = file.definitions[0]
        #expect(order.recovery == .resume && order.compensationTimeout == .seconds(9))
        let type = order.sagaType
        #expect(type.recovery == .resume && type.compensationTimeout == .seconds(9))
        #expect(order.steps[0].isCompensated && order.steps[0].timeout == nil && !order.steps[0].idempotent)
        #expect(order.steps[1].timeout == .milliseconds(1500) && order.steps[1].idempotent)
        #expect(order.steps[1].retry == RetryPolicy(maxAttempts: 4, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(400),
                                                    multiplier: 3, jitter: 0))
    }

    @Test(arguments: [
        (#""recovery": "retry""#, #"field "recovery" must be "mark_failed", "compensate" or "resume""#),
        (#""compensation_timeout_ms": 0"#, #"field "compensation_timeout_ms" must be a whole number"#),
    ])
    func aSagasRecoveryMembersAreChecked(member: String, expected: String) {
        let found = problems(file(#""name": "s", \#(member), "steps": [\#(okStep)]"#))
        #expect(found.count == 1 && found[0].contains(expected), "\(found)")
    }

    @Test(arguments: [
        (#""retry": {"max_attempts": 2}"#, #"a step with "retry" must be declared "idempotent": true"#),
        (#""idempotent": 1"#, #"field "idempotent" must be true or false"#),
        (#""idempotent": true, "retry": {"max_attempts": 0}"#, #"retry: "max_attempts" must be an integer from 1 to 1000000"#),
        (#""idempotent": true, "retry": {"tries": 2}"#, #"unknown field "tries" in a retry policy"#),
        (#""timeout_ms": -1"#, #"field "timeout_ms" must be a whole number of milliseconds"#),
        (#""compensation": "undo""#, #"field "compensation" must be an object"#),
        (#""compensation": {"target": "h"}"#, #"compensation: the compensation has no "command""#),
        (#""compensation": {"command": "${steps.later}"}"#, #"compensation: field "command": "${steps.later}" refers to step "later""#),
        (#""compensation": {"command": 1, "target": ""}"#, #"compensation: field "target" must be a non-empty string"#),
        (#""compensation": {"command": 1, "when": 2}"#, #"unknown field "when" in a compensation"#),
    ])
    func aStepsCompensationAndRetriesAreChecked(member: String, expected: String) {
        let found = problems(file(#""name": "s", "steps": [{"target": "h", "command": 1, "completes_on": "E", \#(member)}]"#))
        #expect(found.count == 1 && found[0].contains(expected), "\(found)")
    }

    @Test func everyProblemIsReportedAtOnceInTheOrderOfTheFile() throws {
        let text = """
        {
          "sagas": [
            {"name": "a", "steps": [{"target": "", "command": 1, "completes_on": "E"}]},
            {"name": "b", "timeout_ms": -1, "steps": [{"target": "h", "command": "${steps.x}", "completes_on": "E"}]}
          ]
        }
        """
        do {
            _ = try SagaFile(text: text, source: "orders.json")
            Issue.record("the file was accepted")
        } catch {
            #expect(error.problems.count == 3)
            let lines = error.description.split(separator: "\n").map(String.init)
            #expect(lines.count == 3)
            #expect(lines[0].hasPrefix("orders.json:3:40: saga \"a\", step 1: field \"target\""))
            #expect(lines[1].hasPrefix("orders.json:4:33: saga \"b\": field \"timeout_ms\""))
            #expect(lines[2].hasPrefix("orders.json:4:74: saga \"b\", step 1: field \"command\": \"${steps.x}\""))
        }
    }

    @Test func aFileThatCannotBeReadSaysWhy() {
        do {
            _ = try SagaFile(contentsOf: "/nonexistent/sagas.json")
            Issue.record("a missing file was accepted")
        } catch {
            #expect(error.description.hasPrefix("/nonexistent/sagas.json: cannot open /nonexistent/sagas.json: No such file or directory"))
        }
    }
}

@Suite struct TemplateTests {
    private func render(_ command: JSON, input: JSON = .null, results: [JSON] = [], steps: [String] = []) throws -> JSON {
        var problems: [String] = []
        let template = Template(command, scope: .init(earlierSteps: steps, inputFields: nil)) { problems.append($1) }
        #expect(problems.isEmpty)
        return try template.render(input: input, results: results, sagaID: 42, sagaName: "s")
    }

    @Test func aWholeReferenceKeepsItsValueAndType() throws {
        let input: JSON = ["n": 3, "list": [1, 2], "nested": ["deep": true]]
        #expect(try render("${input.n}", input: input) == 3)
        #expect(try render(["x": "${input.list}", "y": "${input.nested.deep}"], input: input) == ["x": [1, 2], "y": true])
        #expect(try render("${input.list.1}", input: input) == 2)
        #expect(try render("${input}", input: input) == input)
        #expect(try render(["id": "${saga.id}", "name": "${saga.name}"]) == ["id": 42, "name": "s"])
    }

    @Test func referencesInTextAreSplicedAsText() throws {
        let input: JSON = ["who": "ann", "n": 3, "o": ["a": 1]]
        #expect(try render("hello ${input.who}, ${input.n} times ${input.o}", input: input) == "hello ann, 3 times {\"a\":1}")
        #expect(try render("costs $${input.n} and ${input.n}$", input: input) == "costs ${input.n} and 3$")
    }

    @Test func anEarlierStepsResultIsReachable() throws {
        #expect(try render(["panes": "${steps.reap.panes}"], results: [["panes": 3]], steps: ["reap"]) == ["panes": 3])
    }

    @Test func aValueThatIsNotThereIsNamed() {
        #expect(throws: Template.Missing.self) { try render("${input.label}", input: ["other": 1]) }
        do {
            _ = try render(["a": ["b": "${input.x.y}"]], input: ["x": 1])
        } catch {
            #expect((error as? Template.Missing)?.reference == "input.x.y")
        }
    }

    @Test func aPlainValueStaysAsWritten() throws {
        let command: JSON = ["cmd": "go", "list": [1, "two", ["three": nil]], "cost": "$5"]
        var problems: [String] = []
        let template = Template(command, scope: .init(earlierSteps: [], inputFields: nil)) { problems.append($1) }
        #expect(template.isLiteral && problems.isEmpty)
        #expect(try template.render(input: .null, results: [], sagaID: 1, sagaName: "s") == command)
    }
}
